"""What the bot's handlers need of the outside world, as small :class:`typing.Protocol` s.

- :class:`mlgate.edge.forges.base.Forge`: GitHub or GitLab (re-exported here as ``Forge``).
- :class:`BotStore`: the bot's database (:class:`mlgate.edge.db.store.Store` satisfies it).
- :class:`ModelRegistry`: the MLflow Model Registry (:class:`mlgate.edge.registry.Registry`).
- :class:`Settings`: the settings the handlers read (:class:`mlgate.bot.settings.BotSettings`).

Handlers read optional settings with ``getattr(settings, name, default)``, so a custom
``handler`` module's own settings object may leave some out.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol

from mlgate.edge.forges.base import Forge  # noqa: F401  (re-exported port)
from mlgate.edge.registry import VersionInfo


class BotStore(Protocol):
    """The bot's database as the handlers use it: effects, locks, audit, key/value state."""

    engine: Any  # the SQLAlchemy engine the canary store shares

    def claim_effect(self, key: str, delivery_id: str) -> bool:
        """True for the first delivery that claims ``key`` (and for a retry of that delivery)."""

    def acquire_lock(self, name: str, owner: str, ttl_seconds: float, now: datetime) -> bool: ...

    def release_lock(self, name: str, owner: str) -> None: ...

    def audit(self, record: dict) -> None:
        """Append one audit record (secrets redacted by the store)."""

    def audit_records(self) -> list[dict]: ...

    def kv_get(self, key: str) -> str | None: ...

    def kv_set(self, key: str, value: str) -> None: ...


class ModelRegistry(Protocol):
    """The registry calls of the policy snapshot and of alias moves."""

    def get_version(self, model: str, version: str) -> VersionInfo:
        """Raises UsageError when there is no such version."""

    def get_by_alias(self, model: str, alias: str) -> VersionInfo | None: ...

    def find_by_commit(self, model: str, git_commit: str) -> VersionInfo | None:
        """The version trained from ``git_commit``, or None."""

    def set_alias(self, model: str, alias: str, version: str) -> None: ...

    def set_tags(self, model: str, version: str, tags: Mapping[str, str]) -> None: ...


class Settings(Protocol):
    """The bot settings the handlers read (all in :class:`mlgate.bot.settings.BotSettings`)."""

    bot_login: str | None
    tracking_uri: str | None
    argo_token_envs: list[str]
    argo_servers: list[str] | None
    canary_tick_seconds: float
    train_poll_seconds: float
