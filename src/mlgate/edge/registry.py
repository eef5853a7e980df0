"""MLflow adapter: runs, logged models, model versions, aliases and tags.

Thin edge over ``mlflow.MlflowClient`` (MLflow 3 REST API / Python client docs:
https://mlflow.org/docs/latest/api_reference/python_api/mlflow.client.html). mlflow is
imported lazily so the CLI starts fast.

Error mapping: an MLflow ``RESOURCE_DOES_NOT_EXIST`` answer is "not there" (None or
UsageError, as documented per method); anything else that fails to reach or satisfy the
server (connection refused, timeout, 5xx) is :class:`~mlgate.core.errors.InfraError` (exit 3)
naming the tracking URI, never a pass.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, TypeVar
from contextlib import contextmanager
from urllib.parse import urlparse

from mlgate.core.errors import InfraError, MlgateError, Unreachable, UsageError
from mlgate.core.urls import redact_url

T = TypeVar("T")

READY = "READY"
PENDING = "PENDING_REGISTRATION"
FAILED = "FAILED_REGISTRATION"


@dataclass(frozen=True)
class VersionInfo:
    """One model version as mlgate uses it.

    ``version`` is MLflow's version number as a string ("12"); ``source`` is the version's
    source URI (``models:/m-...`` for MLflow 3 logged models); ``storage_uri`` is where its
    artifacts can be downloaded from (what a serving runtime such as KServe fetches).
    """

    model: str
    version: str
    run_id: str | None
    status: str
    tags: dict[str, str] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()
    source: str = ""
    storage_uri: str = ""

    @property
    def model_uri(self) -> str:
        """``models:/NAME/VERSION``, MLflow's registry URI of this version."""
        return f"models:/{self.model}/{self.version}"


def resolve_tracking_uri(configured: str, base_dir: Path, environ: Mapping[str, str] | None = None,
                         *, create: bool = True) -> str:
    """The tracking URI to use: ``$MLFLOW_TRACKING_URI`` if set, else ``configured``.

    A relative ``sqlite:///path`` is made absolute against ``base_dir`` (the directory of
    ``.mlgate.yml``), so the embedded store is the same whatever the working directory. With
    ``create`` its directory is created (``mlgate train``); without, a store file that does
    not exist is a UsageError (a typo must not read as an empty registry).

    Raises:
        UsageError: a URI MLflow cannot use (scheme), or a missing store when ``create`` is False.
    """
    env = os.environ if environ is None else environ
    uri = (env.get("MLFLOW_TRACKING_URI") or configured).strip()
    if uri in ("databricks", "databricks-uc") or uri.startswith(("databricks://", "databricks-uc://")):
        return uri
    try:
        scheme = urlparse(uri).scheme.split("+")[0] if "://" in uri else ""
    except ValueError as e:
        raise UsageError(f"tracking URI {redact_url(uri)!r} is not a valid URL: {e}") from None
    if scheme not in SUPPORTED_SCHEMES:
        raise UsageError(f"tracking URI {redact_url(uri)!r} is not one MLflow can use here "
                         f"(supported: {', '.join(s + '://' for s in SUPPORTED_SCHEMES)})")
    require_store_support(uri)
    if scheme == "sqlite":
        raw = uri[len("sqlite:///") :] if uri.startswith("sqlite:///") else ""
        if not raw:
            raise UsageError(f"tracking URI {uri!r}: give a file, e.g. sqlite:///.mlgate/mlflow.db")
        path = Path(raw) if uri.startswith("sqlite:////") else (base_dir / raw)
        path = path.resolve()
        if create:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise UsageError(f"cannot create the MLflow store directory {path.parent}: {e.strerror}") from None
        elif not path.is_file():
            raise UsageError(f"no MLflow store at {path} (tracking URI {uri}): run 'mlgate train' first, "
                             "or fix tracking_uri / MLFLOW_TRACKING_URI")
        return f"sqlite:///{path}"
    return uri


#: Tracking URI schemes mlgate supports (MLflow "Where runs are recorded").
SUPPORTED_SCHEMES = ("http", "https", "sqlite", "postgresql", "mysql", "mssql", "databricks", "file")

#: Schemes MLflow serves in-process with its database store (SQLAlchemy + alembic): only full
#: MLflow ships that store's dependencies; mlflow-skinny reaches a tracking server over HTTP
#: (and reads a file:// store, which needs nothing more).
DATABASE_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")

#: What to install for the database store (pyproject.toml's extras).
LOCAL_EXTRA = "mlgate[local]"


def full_mlflow_installed() -> bool:
    """Whether the full ``mlflow`` distribution is installed, not only ``mlflow-skinny`` (the base
    dependency). Reads installed package metadata only: no import, milliseconds."""
    from importlib import metadata

    try:
        metadata.version("mlflow")
    except metadata.PackageNotFoundError:
        return False
    return True


def require_full_mlflow(what: str, extra: str, alternative: str = "") -> None:
    """Refuse, in one line, a use of MLflow that mlflow-skinny cannot serve.

    Args:
        what: the use, as the sentence's subject ("the embedded MLflow store (sqlite:///...)").
        extra: the packaging extra that brings full MLflow (``mlgate[local]``, ``mlgate[evaluate]``).
        alternative: another way out, appended after "or" (may be empty).

    Raises:
        UsageError: (exit 2) full MLflow is not installed; the message names ``extra``.
    """
    if full_mlflow_installed():
        return
    raise UsageError(f"{what} needs full MLflow, and only mlflow-skinny is installed: pip install '{extra}'"
                     + (f", or {alternative}" if alternative else ""))


def require_store_support(uri: str) -> None:
    """Raise :class:`UsageError` (exit 2) naming ``mlgate[local]`` when ``uri`` is MLflow's database
    store (``sqlite:///``, ``postgresql://``...) and full MLflow is not installed."""
    scheme = urlparse(uri).scheme.split("+")[0] if "://" in uri else ""
    if scheme in DATABASE_SCHEMES:
        store = "the embedded MLflow store" if scheme == "sqlite" else "MLflow's database store"
        require_full_mlflow(f"{store} ({redact_url(uri)})", LOCAL_EXTRA,
                            "set MLFLOW_TRACKING_URI (or tracking_uri) to a tracking server's http(s):// URL")


def _is_not_found(exc: BaseException) -> bool:
    code = getattr(exc, "error_code", None)
    return code == "RESOURCE_DOES_NOT_EXIST" or "RESOURCE_DOES_NOT_EXIST" in str(code or "")


class Registry:
    """The MLflow tracking server / Model Registry at one tracking URI.

    Args:
        tracking_uri: an MLflow tracking URI (``http(s)://``, ``sqlite:///``, ``databricks``...).
        timeout: seconds for the reachability probe and each HTTP request.

    Raises (from every method): :class:`InfraError` when the server cannot be reached or
    answers with a server error.
    """

    def __init__(self, tracking_uri: str, *, timeout: float = 10.0):
        self.tracking_uri = tracking_uri
        self.shown_uri = redact_url(tracking_uri)  # for messages: no credentials
        self.timeout = timeout
        self._client: Any = None

    # ------------------------------------------------------------------ plumbing

    @property
    def client(self) -> Any:
        if self._client is None:
            require_store_support(self.tracking_uri)
            self._probe()
            # Fail fast instead of MLflow's default 7 retries with backoff (minutes).
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(int(max(self.timeout, 1) * 3)))
            import logging

            from mlflow import MlflowClient

            # MLflow's INFO lines ("Creating initial MLflow database tables...") are noise here.
            logging.getLogger("mlflow").setLevel(logging.WARNING)

            self._client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)
        return self._client

    def _probe(self) -> None:
        """Check an HTTP tracking server answers ``/health`` before any MLflow call."""
        parsed = urlparse(self.tracking_uri)
        if parsed.scheme not in ("http", "https"):
            return
        import httpx

        url = self.tracking_uri.rstrip("/") + "/health"
        try:
            r = httpx.get(url, timeout=self.timeout)
        except httpx.HTTPError as e:
            raise InfraError(f"MLflow tracking server {self.shown_uri} is unreachable: {type(e).__name__}: {e}") from None
        if r.status_code >= 500:
            raise InfraError(f"MLflow tracking server {self.shown_uri} answered {r.status_code} on /health")

    @contextmanager
    def _calls(self, what: str) -> Iterator[None]:
        from mlflow.exceptions import MlflowException

        try:
            yield
        except MlgateError:
            raise
        except MlflowException as e:
            if _is_not_found(e):
                raise
            code = getattr(e, "error_code", "")
            if code in ("INVALID_PARAMETER_VALUE", "BAD_REQUEST", "RESOURCE_ALREADY_EXISTS"):
                raise UsageError(f"MLflow at {self.shown_uri} refused to {what}: {e.message}") from None
            raise InfraError(f"MLflow at {self.shown_uri} failed to {what}: {_short(e)}") from None
        except (OSError, ConnectionError) as e:
            raise InfraError(f"MLflow at {self.shown_uri} is unreachable ({what}): {_short(e)}") from None
        except Exception as e:  # requests/urllib3 errors surface as various types
            if type(e).__module__.split(".")[0] in ("requests", "urllib3"):
                raise InfraError(f"MLflow at {self.shown_uri} is unreachable ({what}): {_short(e)}") from None
            raise

    def _info(self, mv: Any, storage: bool = False) -> VersionInfo:
        storage_uri = ""
        if storage:
            try:
                storage_uri = self.client.get_model_version_download_uri(mv.name, mv.version)
            except Exception:
                storage_uri = mv.source
        return VersionInfo(
            model=mv.name,
            version=str(mv.version),
            run_id=mv.run_id or None,
            status=str(mv.status),
            tags=dict(mv.tags or {}),
            aliases=tuple(getattr(mv, "aliases", None) or ()),
            source=mv.source or "",
            storage_uri=storage_uri,
        )

    # ------------------------------------------------------------------ experiments and runs

    def ensure_experiment(self, name: str, artifact_location: str | None = None) -> str:
        """Id of experiment ``name``, created (with ``artifact_location``) when missing."""
        with self._calls(f"find experiment {name!r}"):
            exp = self.client.get_experiment_by_name(name)
            if exp is not None:
                if exp.lifecycle_stage == "deleted":
                    self.client.restore_experiment(exp.experiment_id)
                return exp.experiment_id
            return self.client.create_experiment(name, artifact_location=artifact_location)

    def create_run(self, experiment_id: str, tags: Mapping[str, str], run_name: str | None = None) -> str:
        """Start a run (status RUNNING) and return its id."""
        with self._calls("create a run"):
            run = self.client.create_run(experiment_id, tags=dict(tags), run_name=run_name)
            return run.info.run_id

    def run_status(self, run_id: str) -> str:
        with self._calls(f"read run {run_id}"):
            return self.client.get_run(run_id).info.status

    def end_run(self, run_id: str, status: str) -> None:
        """Mark a run FINISHED, FAILED or KILLED."""
        with self._calls(f"end run {run_id}"):
            self.client.set_terminated(run_id, status)

    def run_metrics(self, run_id: str) -> dict[str, float]:
        """The latest value of every metric the run logged."""
        with self._calls(f"read metrics of run {run_id}"):
            return dict(self.client.get_run(run_id).data.metrics)

    def logged_models(self, experiment_id: str, run_id: str) -> list[Any]:
        """MLflow 3 LoggedModels whose source run is ``run_id`` (oldest first)."""
        with self._calls(f"find models logged by run {run_id}"):
            found = self.client.search_logged_models(
                experiment_ids=[experiment_id], filter_string=f"source_run_id = '{run_id}'"
            )
            return sorted(found, key=lambda m: m.creation_timestamp or 0)

    # ------------------------------------------------------------------ model versions

    def register(
        self, model: str, *, source: str, run_id: str, model_id: str | None, tags: Mapping[str, str]
    ) -> VersionInfo:
        """Create a new version of registered model ``model`` (created when missing)."""
        from mlflow.exceptions import MlflowException

        with self._calls(f"register a version of {model!r}"):
            try:
                self.client.get_registered_model(model)
            except MlflowException as e:
                if not _is_not_found(e):
                    raise
                self.client.create_registered_model(model, tags={"mlgate.managed": "true"})
            mv = self.client.create_model_version(
                model, source=source, run_id=run_id, tags=dict(tags), model_id=model_id, await_creation_for=0
            )
            return self._info(mv)

    def get_version(self, model: str, version: str) -> VersionInfo:
        """Version ``version`` of ``model``; UsageError when it does not exist."""
        from mlflow.exceptions import MlflowException

        try:
            with self._calls(f"read {model} version {version}"):
                return self._info(self.client.get_model_version(model, str(version)), storage=True)
        except MlflowException as e:
            if _is_not_found(e):
                raise UsageError(f"{model} has no version {version} at {self.shown_uri}") from None
            raise

    def get_by_alias(self, model: str, alias: str) -> VersionInfo | None:
        """The version holding ``alias``, via the alias API (search results may omit aliases).

        Returns None only when MLflow answers that the alias (or model) does not exist.
        Raises UsageError when the alias points to a deleted version.
        """
        from mlflow.exceptions import MlflowException

        client = self.client
        try:
            with self._calls(f"read alias {alias!r} of {model}"):
                try:
                    mv = client.get_model_version_by_alias(model, alias)
                except MlflowException as e:
                    kind = _not_found_kind(e)
                    if kind == "version":
                        raise UsageError(
                            f"alias {alias!r} of {model} points to a model version that no longer exists: "
                            f"move it with 'mlgate promote' or delete it"
                        ) from None
                    if kind is not None:
                        return None
                    raise
        except UsageError:
            raise
        return self._info(mv, storage=True)

    def latest_version(self, model: str) -> VersionInfo | None:
        """The newest version, comparing version numbers as integers (12 is newer than 9)."""
        versions = self.versions(model)
        if not versions:
            return None
        return max(versions, key=lambda v: int(v.version))

    def versions(self, model: str) -> list[VersionInfo]:
        """Every version of ``model`` (all pages)."""
        from mlflow.exceptions import MlflowException

        out: list[VersionInfo] = []
        token = None
        try:
            with self._calls(f"list versions of {model}"):
                while True:
                    page = self.client.search_model_versions(f"name = '{_q(model)}'", page_token=token)
                    out.extend(self._info(mv) for mv in page)
                    token = page.token
                    if not token:
                        break
        except MlflowException as e:
            if _is_not_found(e):
                return []
            raise
        return out

    def find_by_commit(self, model: str, git_commit: str) -> VersionInfo | None:
        """The newest version tagged ``mlgate.git_commit=<git_commit>``, or None."""
        matches = [v for v in self.versions(model) if v.tags.get("mlgate.git_commit") == git_commit]
        if not matches:
            return None
        best = max(matches, key=lambda v: int(v.version))
        return self.get_version(model, best.version)

    def find_by_tag(self, model: str, key: str, value: str) -> VersionInfo | None:
        """The newest version tagged ``key=value`` (e.g. ``mlgate.retrain_id``), or None."""
        matches = [v for v in self.versions(model) if v.tags.get(key) == value]
        if not matches:
            return None
        return self.get_version(model, max(matches, key=lambda v: int(v.version)).version)

    def model_tags(self, model: str) -> dict[str, str]:
        """The registered model's own tags ({} when the model does not exist)."""
        from mlflow.exceptions import MlflowException

        try:
            with self._calls(f"read registered model {model}"):
                return dict(self.client.get_registered_model(model).tags or {})
        except MlflowException as e:
            if _is_not_found(e):
                return {}
            raise

    def set_model_tag(self, model: str, key: str, value: str) -> None:
        """Set one tag on the registered model itself (not a version)."""
        with self._calls(f"tag registered model {model}"):
            self.client.set_registered_model_tag(model, key, value)

    def wait_ready(self, model: str, version: str, timeout: float, poll: float = 0.5,
                   sleep: Callable[[float], None] = time.sleep) -> VersionInfo:
        """Wait until the version is READY (``timeout`` seconds).

        Raises:
            MlgateError (exit 3): FAILED_REGISTRATION, or still pending after ``timeout``.
        """
        start = time.monotonic()
        while True:
            info = self.get_version(model, version)
            verdict = registration_verdict(info.status, time.monotonic() - start, timeout)
            if verdict == "ready":
                return info
            if verdict == "failed":
                raise InfraError(f"{model} version {version} failed to register (FAILED_REGISTRATION); "
                                 "nothing was gated or promoted")
            if verdict == "timeout":
                raise InfraError(
                    f"{model} version {version} is still {info.status} after {timeout:g} s; nothing was gated or promoted"
                )
            sleep(poll)

    def set_alias(self, model: str, alias: str, version: str) -> None:
        with self._calls(f"set alias {alias!r} of {model} to version {version}"):
            self.client.set_registered_model_alias(model, alias, str(version))

    def set_tags(self, model: str, version: str, tags: Mapping[str, str]) -> None:
        with self._calls(f"tag {model} version {version}"):
            for k, v in tags.items():
                self.client.set_model_version_tag(model, str(version), k, str(v))


class TrackingProbe(Registry):
    """Read-only checks of a tracking URI for ``mlgate doctor``: what answers there, and whether a
    registered model exists (a :class:`Registry` with two more reads)."""

    def server_version(self) -> str:
        """What answers at the tracking URI: ``MLflow 3.1.0`` for a tracking server (``GET /health``,
        then ``GET /version``, both unauthenticated on ``mlflow server``); otherwise the kind of store
        (``embedded store (sqlite)``, ``database store (postgresql)``, ``Databricks``) and the MLflow
        client installed here (the store itself answers to :meth:`model_exists`). Nothing is written.

        Raises:
            Unreachable: the connection was refused or the host name does not resolve.
            InfraError: a timeout or a 5xx.
        """
        scheme = urlparse(self.tracking_uri).scheme.split("+")[0] or ("databricks" if "databricks" in
                                                                       self.tracking_uri else "file")
        if scheme not in ("http", "https"):
            from importlib.metadata import PackageNotFoundError, version

            local = "not installed"
            for dist in ("mlflow", "mlflow-skinny"):  # the base install has the skinny client only
                try:
                    local = version(dist)
                    break
                except PackageNotFoundError:
                    continue
            kind = {"sqlite": "embedded store (sqlite)", "file": "file store", "databricks": "Databricks"}.get(
                scheme, f"database store ({scheme})")
            return f"{kind}, read through MLflow {local} here"
        import httpx

        base = self.tracking_uri.rstrip("/")
        try:
            health = httpx.get(f"{base}/health", timeout=self.timeout)
            answer = httpx.get(f"{base}/version", timeout=self.timeout) if health.status_code < 400 else None
        except httpx.ConnectError as e:
            raise Unreachable(f"MLflow tracking server {self.shown_uri} is unreachable: {_short(e)}") from None
        except httpx.HTTPError as e:
            raise InfraError(f"MLflow tracking server {self.shown_uri} did not answer: {type(e).__name__}: "
                             f"{_short(e)}") from None
        if health.status_code >= 400:
            raise InfraError(f"MLflow tracking server {self.shown_uri} answered {health.status_code} on /health")
        text = answer.text.strip() if answer is not None and answer.status_code == 200 else ""
        return f"MLflow {text}" if text and len(text) < 40 else "MLflow (version not shown)"

    def model_exists(self, model: str) -> bool:
        """Whether registered model ``model`` exists (read only).

        A tracking server is asked over its REST API (``GET /api/2.0/mlflow/registered-models/get``,
        MLflow REST API "Get RegisteredModel") with the credentials MLflow's client takes from the
        environment (``MLFLOW_TRACKING_TOKEN`` as a bearer token, else ``MLFLOW_TRACKING_USERNAME``
        and ``MLFLOW_TRACKING_PASSWORD``; ``MLFLOW_TRACKING_INSECURE_TLS``,
        ``MLFLOW_TRACKING_SERVER_CERT_PATH``), without importing mlflow (seconds); another store
        through ``MlflowClient.get_registered_model``.

        Raises:
            InfraError: the registry cannot be reached, answers 5xx or refuses the credentials
                (the message names the status)."""
        if urlparse(self.tracking_uri).scheme in ("http", "https"):
            return self._model_exists_rest(model)
        from mlflow.exceptions import MlflowException

        try:
            with self._calls(f"read registered model {model}"):
                self.client.get_registered_model(model)
        except MlflowException as e:
            if _is_not_found(e):
                return False
            raise
        return True

    def _model_exists_rest(self, model: str) -> bool:
        import httpx

        env = os.environ
        auth: Any = None
        headers = {}
        if env.get("MLFLOW_TRACKING_TOKEN"):
            headers["Authorization"] = f"Bearer {env['MLFLOW_TRACKING_TOKEN']}"
        elif env.get("MLFLOW_TRACKING_USERNAME"):
            auth = (env["MLFLOW_TRACKING_USERNAME"], env.get("MLFLOW_TRACKING_PASSWORD", ""))
        verify: Any = env.get("MLFLOW_TRACKING_SERVER_CERT_PATH") or (
            env.get("MLFLOW_TRACKING_INSECURE_TLS", "").lower() != "true")
        url = self.tracking_uri.rstrip("/") + "/api/2.0/mlflow/registered-models/get"
        try:
            r = httpx.get(url, params={"name": model}, headers=headers, auth=auth, verify=verify, timeout=self.timeout)
        except httpx.ConnectError as e:
            raise Unreachable(f"MLflow at {self.shown_uri} is unreachable: {_short(e)}") from None
        except httpx.HTTPError as e:
            raise InfraError(f"MLflow at {self.shown_uri} did not answer: {type(e).__name__}") from None
        if r.status_code == 200:
            return True
        try:
            code = r.json().get("error_code", "")
        except ValueError:
            code = ""
        if code == "RESOURCE_DOES_NOT_EXIST":
            return False
        raise InfraError(f"MLflow at {self.shown_uri} answered {r.status_code} {code} to read registered model "
                         f"{model}".rstrip())


def registration_verdict(status: str, elapsed: float, timeout: float) -> str:
    """What to do with a model version in ``status`` after ``elapsed`` of ``timeout`` seconds.

    Returns "ready" (READY), "failed" (FAILED_REGISTRATION), "timeout" (still pending, or an
    unknown status, at or past the timeout) or "wait". MLflow model version statuses:
    PENDING_REGISTRATION, FAILED_REGISTRATION, READY (MLflow REST API, ModelVersionStatus).
    """
    if status == READY:
        return "ready"
    if status == FAILED:
        return "failed"
    if elapsed >= timeout:
        return "timeout"
    return "wait"


def _not_found_kind(exc: BaseException) -> str | None:
    """What a "does not exist" answer is about: "alias", "model", "version", or None when the
    error is not a "does not exist" answer at all (then it is an infrastructure problem).

    MLflow answers a missing alias with INVALID_PARAMETER_VALUE "Registered model alias X not
    found" and a missing model with RESOURCE_DOES_NOT_EXIST (SqlAlchemyStore and REST store).
    """
    msg = str(getattr(exc, "message", exc)).lower()
    code = str(getattr(exc, "error_code", ""))
    if "alias" in msg and "not found" in msg:
        return "alias"
    if "model version" in msg and ("not found" in msg or "does not exist" in msg):
        return "version"
    if code == "RESOURCE_DOES_NOT_EXIST" or ("registered model" in msg and "not found" in msg):
        return "model"
    return None


def _q(s: str) -> str:
    return s.replace("'", "\\'")


def _short(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    first = text[0] if text else type(e).__name__
    return first[:300]
