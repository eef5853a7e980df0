"""The dashboard's use case: read what the bot knows and build the pages' data.

Reads through small ports (the bot's store for audit records, canaries and failed deliveries;
the model repository's ``.mlgate.yml`` on its default branch through the forge; the MLflow
Model Registry) and hands plain data to :mod:`mlgate.core.dashboard`. Registry and policy reads
are cached for ``cache_seconds`` (the clock is handed in), so a page costs database reads only
while the cache is warm. Nothing here writes anywhere.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from mlgate.core import dashboard as view
from mlgate.core.canary.records import CanaryRecord
from mlgate.core.config import Config


class VersionLike(Protocol):
    version: Any
    tags: Mapping[str, str]


class Registry(Protocol):
    def get_by_alias(self, model: str, alias: str) -> VersionLike | None: ...


class Sources(Protocol):
    """What the dashboard reads. Every method is read-only."""

    def audit_records(self) -> list[dict]: ...

    def canaries(self) -> list[CanaryRecord]: ...

    def failed_deliveries(self) -> list[view.FailedDelivery]: ...

    def policy(self, forge: str, repo: str) -> Config | str:
        """``.mlgate.yml`` of model repository ``repo`` on ``forge`` at its default branch, or why not."""

    def registry(self, cfg: Config) -> Registry | str:
        """The MLflow Model Registry of ``cfg`` (or the bot's ``tracking_uri``), or why not."""


class _Cache:
    """A small time-bounded cache (``seconds`` after the value was read), thread-safe."""

    def __init__(self, clock: Callable[[], float], seconds: float):
        self.clock, self.seconds = clock, seconds
        self._data: dict[Any, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def get(self, key: Any, read: Callable[[], Any]) -> Any:
        now = self.clock()
        with self._lock:
            hit = self._data.get(key)
            if hit is not None and now - hit[0] < self.seconds:
                return hit[1]
        value = read()
        with self._lock:
            self._data[key] = (now, value)
        return value


@dataclass
class Overview:
    """The front page: every model seen, what is in flight, failed deliveries."""

    models: list[tuple[str, tuple[str, str] | None]]
    in_flight: list[view.InFlight]
    failed: list[view.FailedDelivery]
    canaries: list[view.CanaryView]


class Dashboard:
    """Builds the dashboard's pages from ``sources``.

    Args:
        sources: the read ports.
        clock: UNIX seconds now (for the cache only).
        cache_seconds: how long registry and ``.mlgate.yml`` reads are reused (0: never).
        audit_rows: how many audit records a model page lists.
    """

    def __init__(self, sources: Sources, clock: Callable[[], float], cache_seconds: float = 10.0,
                 audit_rows: int = 50):
        self.sources = sources
        self.cache = _Cache(clock, cache_seconds)
        self.audit_rows = audit_rows

    def overview(self) -> Overview:
        records = self.sources.audit_records()
        canaries = self.sources.canaries()
        models = view.models_seen(records, canaries)
        return Overview(
            models=sorted(models.items()), in_flight=view.in_flight(records), failed=self.sources.failed_deliveries(),
            canaries=[view.canary_view(c) for c in canaries if c.active],
        )

    def model_page(self, model: str) -> view.ModelPage | None:
        """The page of ``model``; None when the bot has never seen it."""
        records = self.sources.audit_records()
        canaries = [c for c in self.sources.canaries() if c.model == model]
        seen = view.models_seen(records, canaries)
        if model not in seen:
            return None
        repo = seen[model]
        envs, problem = self._environments(model, repo, records)
        return view.ModelPage(
            model=model, repository=repo, environments=tuple(envs),
            in_flight=tuple(view.in_flight(records, model)),
            canaries=tuple(view.canary_view(c) for c in sorted(canaries, key=lambda c: c.created_at, reverse=True)),
            audit=tuple(view.filter_audit(records, model, limit=self.audit_rows)), problem=problem,
        )

    def canary(self, canary_id: int) -> view.CanaryView | None:
        for c in self.sources.canaries():
            if c.id == canary_id:
                return view.canary_view(c)
        return None

    def audit(self, model: str | None = None, environment: str | None = None, limit: int | None = None) -> list[Mapping[str, Any]]:
        return view.filter_audit(self.sources.audit_records(), model, environment, limit)

    def _environments(self, model: str, repo: tuple[str, str] | None,
                      records: Sequence[Mapping[str, Any]]) -> tuple[list[view.EnvironmentView], str | None]:
        if repo is None:
            return [], "no command was given for this model on a model repository yet, so its .mlgate.yml is unknown"
        cfg = self.cache.get(("policy", repo), lambda: self.sources.policy(*repo))
        if isinstance(cfg, str):
            return [], cfg
        reg = self.cache.get(("registry", repo), lambda: self.sources.registry(cfg))
        if isinstance(reg, str):
            return [], reg
        drift = _drift(records, model)
        by_name = {e.name: e for e in cfg.environments}
        out = []
        for name in view.pipeline_order([(e.name, e.requires) for e in cfg.environments]):
            env = by_name[name]
            try:
                info = self.cache.get(("alias", model, env.registry_alias),
                                      lambda: reg.get_by_alias(model, env.registry_alias))  # noqa: B023
            except Exception as e:  # the registry is down: say so on the page, never a 500
                return [], f"the MLflow Model Registry cannot be read: {type(e).__name__}: {e}"
            out.append(view.environment_view(name, env.registry_alias, env.requires,
                                             str(info.version) if info is not None else None,
                                             dict(info.tags or {}) if info is not None else None, drift.get(name)))
        return out, None


def _drift(records: Sequence[Mapping[str, Any]], model: str) -> dict[str, str]:
    """Per environment, the latest drift between registry and git that the bot recorded
    (``event`` mentioning drift or a restored alias; records of ``mlgate reconcile --check``
    and of alias protection), unless a later landing of that environment settled it."""
    out: dict[str, str] = {}
    for r in records:
        if r.get("model") != model or not r.get("environment"):
            continue
        env, event = str(r["environment"]), str(r.get("event") or "")
        if "drift" in event or "alias restored" in event or event == "alias protected":
            out[env] = str(r.get("reason") or r.get("outcome") or event)
        elif event in ("alias moved", "merged") or r.get("outcome") == "pushed":
            out.pop(env, None)
    return out
