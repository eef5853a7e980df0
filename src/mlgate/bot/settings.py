"""Bot settings: ``bot.yml`` plus ``MLGATE_*`` environment variables → :class:`BotSettings`.

Every field can be set in ``bot.yml`` (keys as below) or in the environment as ``MLGATE_``
followed by the field name in upper case (``MLGATE_GITHUB_WEBHOOK_SECRET``,
``MLGATE_DATABASE_URL``, ``MLGATE_WORKERS``...); the environment wins. Keep secrets in the
environment (or a Kubernetes Secret mapped to it), not in ``bot.yml``.

``schemas/bot.schema.json`` is generated from :class:`BotSettings` (:func:`json_schema`);
``tests/bot/test_settings.py`` fails when the committed file drifts.

Pure apart from :func:`load_settings` reading the file it is given.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from mlgate.core.errors import ConfigError, Problem
from mlgate.core.redact import Redactor

SCHEMA_ID = "https://mlgate.dev/schemas/bot.schema.json"
ENV_PREFIX = "MLGATE_"

#: Fields whose values are secrets: never echoed in an error message, a response or a log.
SECRET_FIELDS = (
    "github_webhook_secret",
    "gitlab_webhook_token",
    "github_private_key",
    "github_token",
    "gitlab_token",
    "alertmanager_token",
    "mlflow_webhook_secret",
    "ui_token",
)
#: Environment variables outside the settings whose values are secrets the bot may use (MLflow's
#: documented credentials for a tracking server, "MLflow Tracking" → "Logging to a Tracking Server").
ENV_SECRETS = ("MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_PASSWORD")


class BotSettings(BaseModel):
    """Settings of ``mlgate bot serve`` (and of ``mlgate bot deliveries/retry``, ``mlgate audit``).

    Durations are in seconds, sizes in bytes. A secret that is configured but empty is an
    error (it would accept every request); a forge whose secret is not configured at all
    answers 404 on its webhook route.
    """

    model_config = ConfigDict(extra="forbid", title="mlgate bot settings (bot.yml)", hide_input_in_errors=True)

    # ---- webhook secrets
    github_webhook_secret: SecretStr | None = Field(
        None,
        description="GitHub webhook secret (HMAC-SHA256 key of X-Hub-Signature-256). Env: MLGATE_GITHUB_WEBHOOK_SECRET.",
    )
    gitlab_webhook_token: SecretStr | None = Field(
        None, description="GitLab webhook secret token (compared with X-Gitlab-Token). Env: MLGATE_GITLAB_WEBHOOK_TOKEN."
    )
    mlflow_webhook_secret: SecretStr | None = Field(
        None,
        description=(
            "MLflow webhook secret (HMAC-SHA256 key of X-MLflow-Signature; give the same to "
            "`mlgate bot register-mlflow-webhook`). Env: MLGATE_MLFLOW_WEBHOOK_SECRET."
        ),
    )
    alertmanager_token: SecretStr | None = Field(
        None,
        description=(
            "Bearer token Alertmanager sends (webhook_config http_config.authorization.credentials); unset: "
            "POST /webhooks/alertmanager answers 404. Env: MLGATE_ALERTMANAGER_TOKEN."
        ),
    )
    alert_model_label: str = Field("mlgate_model", min_length=1, description="Alert label naming the registered model.")
    alert_environment_label: str = Field(
        "mlgate_environment", min_length=1, description="Alert label naming the environment."
    )
    retrain_poll_seconds: float = Field(
        15.0, ge=0,
        description=(
            "Seconds between two passes over the retrains in flight (backend state, the registered version, "
            "gates, promotion PR); 0 disables the follow-up."
        ),
    )
    # ---- GitHub API
    github_app_id: int | None = Field(None, gt=0, description="GitHub App id (with github_private_key). Env: MLGATE_GITHUB_APP_ID.")
    github_private_key: SecretStr | None = Field(
        None, description="GitHub App private key, PEM text. Env: MLGATE_GITHUB_PRIVATE_KEY."
    )
    github_token: SecretStr | None = Field(
        None, description="A GitHub token to use instead of an App (PAT or fine-grained token). Env: MLGATE_GITHUB_TOKEN."
    )
    github_api_url: str = Field("https://api.github.com", description="GitHub REST API base URL (GitHub Enterprise: https://HOST/api/v3).")
    github_api: Literal["graphql", "rest"] = Field(
        "graphql",
        description=(
            "How promotion PRs are written on GitHub: graphql (3 round trips for any number of files: "
            "createCommitOnBranch, on github.com and GitHub Enterprise Server 3.3+) or rest (older servers)."
        ),
    )
    # ---- GitLab API
    gitlab_url: str = Field("https://gitlab.com", description="GitLab instance URL.")
    gitlab_token: SecretStr | None = Field(None, description="GitLab access token (api scope). Env: MLGATE_GITLAB_TOKEN.")
    # ---- storage and processing
    database_url: str = Field(
        "sqlite:///.mlgate/bot.db",
        description=(
            "SQLAlchemy database URL: sqlite:///PATH (relative to the working directory) or "
            "postgresql+psycopg://USER@HOST/DB. Env: MLGATE_DATABASE_URL."
        ),
    )
    workers: int = Field(2, ge=0, le=64, description="Worker threads that process deliveries (0: accept and store only).")
    max_body_bytes: int = Field(25 * 1024 * 1024, gt=0, description="Largest webhook body accepted, in bytes (GitHub caps payloads at 25 MB).")
    max_attempts: int = Field(5, ge=1, description="Attempts per delivery before it is marked failed.")
    retry_base_seconds: float = Field(5.0, gt=0, description="Backoff before the second attempt, in seconds; doubles per attempt.")
    retry_max_seconds: float = Field(900.0, gt=0, description="Longest backoff between two attempts, in seconds.")
    lease_seconds: float = Field(
        6.0, gt=0, le=3600,
        description=(
            "Length of a lease, in seconds: a worker's lease on a delivery and the bot's locks (promotion, canary, "
            "periodic tasks), renewed every third of it while the work runs. A replica that dies (crash, SIGKILL) "
            "is replaced once its leases lapse, within this many seconds; a worker stalled longer loses its "
            "delivery and stops before its next call."
        ),
    )
    poll_interval: float = Field(1.0, gt=0, description="Seconds an idle worker waits before looking at the queue again.")
    retention_days: float = Field(
        30.0, ge=0,
        description=(
            "Days a finished delivery (done or failed) is kept, with its once-only effects, expired locks, "
            "finished /train records and the small state that only it used; a periodic task and "
            "`mlgate bot prune` delete older ones. Audit records are never deleted. 0 disables the pruning."
        ),
    )
    retention_interval_seconds: float = Field(
        3600.0, ge=0, description="Seconds between two passes of the retention task (0: only `mlgate bot prune`)."
    )
    handler: str = Field(
        "mlgate.bot.handlers:handle",
        pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$",
        description="module:function that processes one delivery; the module may define make_context(settings, store).",
    )
    # ---- identity and MLflow
    bot_login: str | None = Field(None, description="The bot's own account name, so that its own comments are ignored.")
    tracking_uri: str | None = Field(None, description="MLflow tracking URI (default: the model repository's .mlgate.yml).")
    models: dict[str, Annotated[str, Field(pattern=r"^(github|gitlab):[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)+$")]] = Field(
        default_factory=dict,
        description=(
            "Registered model -> the repository whose .mlgate.yml governs it, as github:OWNER/NAME or "
            "gitlab:GROUP/PROJECT, for MLflow webhooks; a model not listed is found through the tags "
            "mlgate.source_forge and mlgate.source_repo that `mlgate train` writes in CI."
        ),
    )
    source_repositories: list[Annotated[str, Field(pattern=r"^(github|gitlab):\S+$")]] | None = Field(
        None,
        description=(
            "Which repositories a model version's mlgate.source_forge / mlgate.source_repo tags may name "
            "(anyone who may tag a version in MLflow can write them): shell-style patterns of FORGE:PATH "
            "(Python fnmatch: * also matches /), e.g. github:acme/* or gitlab:ml/*; a version naming any "
            "other is ignored. Unset: any "
            "repository the bot's credentials reach. bot.yml models entries are always used."
        ),
    )
    reconcile_interval_seconds: float = Field(
        300.0, ge=0,
        description=(
            "Seconds between two checks of the registry against git for the models the bot knows (bot.yml "
            "models and those MLflow webhooks named): an environment alias moved while the bot was down is "
            "put back (or reported, with protect_aliases: false). 0 disables the check."
        ),
    )
    github_write_interval: float = Field(
        1.0, ge=0, description="Seconds between content-creating GitHub requests (GitHub asks for at least 1)."
    )
    # ---- the dashboard (mlgate bot serve --ui-port; a listener of its own, never the webhook port)
    ui_token: SecretStr | None = Field(
        None,
        description=(
            "Token of the dashboard: requests need 'Authorization: Bearer TOKEN' or HTTP Basic with TOKEN as the "
            "password. Without it the dashboard listens on loopback only. Env: MLGATE_UI_TOKEN."
        ),
    )
    ui_cache_seconds: float = Field(
        10.0, ge=0, description="Seconds the dashboard reuses registry and .mlgate.yml reads (0: read every time)."
    )
    ui_audit_records: int = Field(
        20000, ge=100, le=1_000_000,
        description=(
            "How many of the newest audit records the dashboard keeps in memory and shows (its pages, "
            "in-flight promotions and exports); `mlgate audit` exports them all."
        ),
    )
    # ---- background follow-up (a thread beside the workers; never on the event loop)
    canary_tick_seconds: float = Field(
        15.0, ge=0,
        description=(
            "Seconds between two passes over the running canaries (measure, advance, roll back, report); "
            "0 disables canary ticks."
        ),
    )
    train_poll_seconds: float = Field(
        15.0, ge=0,
        description=(
            "Seconds between two reads of the Argo workflows started with /train (to update the "
            "mlgate/train commit status); 0 disables the follow-up."
        ),
    )
    argo_token_envs: list[str] = Field(
        default_factory=lambda: ["ARGO_TOKEN"],
        description=(
            "Environment variables of the bot that a repository's train.argo.token_env may name as the "
            "Argo token (never an MLGATE_* variable; train.argo.token_file is not read by the bot)."
        ),
    )
    argo_servers: list[str] | None = Field(
        None,
        description=(
            "Argo Server URLs the bot may send its Argo token to (train.argo.server must start with one); "
            "unset: any server a repository's .mlgate.yml names."
        ),
    )
    # ---- logging
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="Lowest level written to the JSON log.")
    access_log: bool = Field(False, description="Write one uvicorn access-log line per HTTP request.")

    @field_validator(*SECRET_FIELDS)
    @classmethod
    def _not_blank(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and not v.get_secret_value().strip():
            raise ValueError("is empty: set a non-empty secret or leave the key out (an empty secret would accept every request)")
        return v

    @field_validator("argo_token_envs", "argo_servers", mode="before")
    @classmethod
    def _comma_list(cls, v: Any) -> Any:
        """An environment variable gives a list as comma-separated text."""
        if isinstance(v, str):
            return [p.strip() for p in v.split(",") if p.strip()]
        return v

    @model_validator(mode="after")
    def _app_credentials_pair(self) -> "BotSettings":
        if (self.github_app_id is None) != (self.github_private_key is None):
            raise ValueError("github_app_id and github_private_key go together: set both or neither")
        return self

    def secret_values(self) -> list[str]:
        """Every configured secret as plain text (for log redaction), longest first.

        Includes the password of ``database_url`` when it has one.
        """
        out = [getattr(self, f).get_secret_value() for f in SECRET_FIELDS if getattr(self, f) is not None]
        password = _url_password(self.database_url)
        if password:
            out.append(password)
        return sorted(set(out), key=len, reverse=True)

    def secrets(self, environ: Mapping[str, str] | None = None) -> list[str]:
        """Every secret value the bot holds: :meth:`secret_values` plus the values of the
        environment variables it may send somewhere (each of ``argo_token_envs``,
        ``MLFLOW_TRACKING_TOKEN``, ``MLFLOW_TRACKING_PASSWORD``) when set in ``environ``.

        Args:
            environ: the process environment (None: no environment variable is read).

        Returns:
            Plain-text values, longest first, without duplicates or empty values.
        """
        out = set(self.secret_values())
        for name in (*self.argo_token_envs, *ENV_SECRETS):
            value = (environ or {}).get(name)
            if value and value.strip():
                out.add(value)
        return sorted(out, key=len, reverse=True)

    def redactor(self, environ: Mapping[str, str] | None = None) -> Redactor:
        """The bot's one :class:`mlgate.core.redact.Redactor`, built from :meth:`secrets`: used for
        replies, delivery outcomes and errors, audit records, logs and ``--output json``."""
        return Redactor(self.secrets(environ))

    def safe_database_url(self) -> str:
        """``database_url`` with its password replaced by ``***`` (for messages and logs)."""
        return redact_url(self.database_url)


def _url_password(url: str) -> str | None:
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).password  # type: ignore[return-value]
    except Exception:
        return None


def redact_url(url: str) -> str:
    """A database URL with its password hidden; unparsable URLs come back as ``<unparsable URL>``."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparsable URL>"


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of ``bot.yml``, generated from :class:`BotSettings`."""
    schema = BotSettings.model_json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, **schema}


def env_name(field: str) -> str:
    """The environment variable of a field: ``github_token`` → ``MLGATE_GITHUB_TOKEN``."""
    return ENV_PREFIX + field.upper()


def _error_message(err: dict[str, Any], loc: tuple[Any, ...]) -> str:
    """One line for a pydantic error; never repeats the input of a secret field."""
    from mlgate.core.config import _message

    if loc and loc[0] in SECRET_FIELDS:
        err = {**err, "input": {}}  # a dict input is never echoed by _message
    return _message(err, loc)


def load_settings(path: str | Path | None, environ: Mapping[str, str]) -> BotSettings:
    """Build :class:`BotSettings` from an optional ``bot.yml`` and the environment.

    Args:
        path: the YAML file, or None for environment and defaults only.
        environ: usually ``os.environ``; ``MLGATE_<FIELD>`` overrides the file's key.

    Returns:
        The validated settings.

    Raises:
        ConfigError: every problem as ``file:line:col: message`` (for an environment variable
            the "file" is the variable's name): YAML errors, unknown keys, wrong types, a
            secret that is set but empty, an App id without a private key. Secret values are
            never part of the message.
    """
    from mlgate.core.config import _clean_loc, _plain, _position, _value_position, load_yaml_mapping, locate, read_user_file

    filename = str(path) if path is not None else "bot.yml"
    data: Any = {}
    if path is not None:
        data = load_yaml_mapping(read_user_file(path), filename)
        if data is None:
            data = {}

    problems: list[Problem] = []
    # A secret key that is present but null is "configured empty", not "not configured".
    for field in SECRET_FIELDS:
        if field in data and (data[field] is None or data[field] == ""):
            line, col = (_value_position(data, (field,)) if data[field] is not None else None) or _position(data, (field,))
            problems.append(Problem(filename, line + 1, col + 1, f"{field}: is empty: set a non-empty secret or leave the key out"))

    merged: dict[str, Any] = _plain(data) if data else {}
    from_env: dict[str, str] = {}
    for field in BotSettings.model_fields:
        name = env_name(field)
        if name in environ:
            from_env[field] = name
            merged[field] = environ[name]
    if problems:
        # report the blank-secret problems only (validation would repeat them less precisely)
        raise ConfigError(problems)
    try:
        return BotSettings.model_validate(merged)
    except ValidationError as exc:
        seen: set[tuple[Any, ...]] = set()
        for err in exc.errors(include_url=False):
            loc = tuple(err["loc"])
            if loc and loc[0] in from_env:
                if loc in seen:
                    continue
                seen.add(loc)
                problems.append(Problem(from_env[loc[0]], 1, 1, _error_message(err, loc)))
                continue
            loc = _clean_loc(loc, data) if data else loc
            if loc in seen:
                continue
            seen.add(loc)
            if not data:
                problems.append(Problem(filename, 1, 1, _error_message(err, loc)))
                continue
            problems.append(locate(err, loc, data, filename, _error_message))
        problems.sort(key=lambda p: (p.file, p.line, p.col))
        raise ConfigError(problems) from None


def check_servable(settings: BotSettings) -> None:
    """Refuse to serve without any webhook secret (there would be nothing to verify).

    Raises:
        ConfigError: when neither ``github_webhook_secret`` nor ``gitlab_webhook_token`` is set.
    """
    if settings.github_webhook_secret is None and settings.gitlab_webhook_token is None and settings.mlflow_webhook_secret is None:
        raise ConfigError(
            [
                Problem(
                    env_name("github_webhook_secret"),
                    1,
                    1,
                    "no webhook secret configured: set MLGATE_GITHUB_WEBHOOK_SECRET and/or MLGATE_GITLAB_WEBHOOK_TOKEN "
                    "(the bot never accepts unverified deliveries)",
                )
            ]
        )
