"""Which pip extras of mlgate a repository's ``.mlgate.yml`` needs (``mlgate config extras``).

The base install (``pip install mlgate``) carries ``mlflow-skinny``: the MLflow client and the
Model Registry over HTTP. Full MLflow comes with two extras (pyproject.toml):

- ``local``: MLflow's own stores, served in-process: the embedded SQLite store (the default
  ``tracking_uri``, ``sqlite:///.mlgate/mlflow.db``), a database URI (``postgresql://``...) or a
  file store (``file:``, a plain path).
- ``evaluate``: ``validate.evaluation`` (``mlflow.models.evaluate`` with pandas, scikit-learn).

The CI setup (``actions/setup``, the GitLab templates) installs the base, asks this, then adds the
extras, so a job that talks to a tracking server over HTTP without evaluation installs the small
set. Pure: plain data in, a tuple of names out.
"""

from __future__ import annotations

from mlgate.core.config.models import Config

#: Extras, in the order ``mlgate config extras`` prints them.
LOCAL = "local"
EVALUATE = "evaluate"

#: URI schemes MLflow serves in-process, which only full MLflow can (MLflow "Backend Stores":
#: database stores through SQLAlchemy, and the file store).
IN_PROCESS_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql", "file")


def store_needs_local(tracking_uri: str) -> bool:
    """Whether ``tracking_uri`` names a store MLflow runs in-process (needs the ``local`` extra).

    Args:
        tracking_uri: an MLflow tracking URI as MLflow takes it ("Where Runs Are Recorded"):
            ``http(s)://`` (a tracking server), ``databricks[-uc][://profile]``, a database URI
            (``sqlite:///``, ``postgresql+psycopg://``...), ``file:`` or a plain path (file store).

    Returns:
        True for database URIs, ``file:`` and plain paths; False for a server (``http``, ``https``)
        and Databricks. An empty string is not a store: callers fall back to the configured URI.
    """
    uri = tracking_uri.strip()
    if uri.startswith(("databricks", "http://", "https://")):
        return False
    scheme, sep, _ = uri.partition(":")
    if not sep or len(scheme) == 1 or "/" in scheme or "\\" in scheme:
        return True  # a plain path (C:\\ is a drive, not a scheme): MLflow's file store
    return scheme.split("+")[0].lower() in IN_PROCESS_SCHEMES


def needed_extras(cfg: Config, env_tracking_uri: str | None = None) -> tuple[str, ...]:
    """The extras of mlgate that running the pipeline with ``cfg`` needs.

    Args:
        cfg: the parsed ``.mlgate.yml``.
        env_tracking_uri: ``$MLFLOW_TRACKING_URI`` of the job, which overrides ``tracking_uri``
            as in every mlgate command; None or empty: the configured URI (default: the embedded
            SQLite store).

    Returns:
        ``("local",)`` when the tracking URI is a store MLflow runs in-process
        (:func:`store_needs_local`), ``("evaluate",)`` when ``validate.evaluation`` is set, both in
        that order, or ``()``: the base install is enough.
    """
    uri = (env_tracking_uri or "").strip() or cfg.tracking_uri
    extras: list[str] = []
    if store_needs_local(uri):
        extras.append(LOCAL)
    if cfg.validate_.evaluation is not None:
        extras.append(EVALUATE)
    return tuple(extras)
