"""``mlgate status``: for each environment, the version holding its alias, its gate result and
the promotion commit that put it there; and, where the bot retrains on alerts, the last alert, the
retrain it started and where it stands (the registered model's tag ``mlgate.retrain.<environment>``,
written by the bot: README "Retrain on alerts")."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from mlgate.flows.project import Project

@dataclass(frozen=True)
class EnvironmentStatus:
    environment: str
    alias: str
    version: str | None
    gates: str | None
    commit: str | None
    promoted_at: str | None
    #: the last alert, its retrain and where it stands ({"alert", "alert_started_at", "retrain", "state",
    #: "version", "promotion_pr", "at"}), or None when no alert reached the bot for this environment
    retrain: dict[str, Any] | None = None


def _retrains(reg: Any, model: str) -> dict[str, dict[str, Any]]:
    """Environment → the bot's retrain status from the registered model's tags ({} without any)."""
    read = getattr(reg, "model_tags", None)
    tags = read(model) if read is not None else {}
    out = {}
    for key, value in tags.items():
        if key.startswith("mlgate.retrain."):
            try:
                out[key[len("mlgate.retrain."):]] = json.loads(value)
            except ValueError:
                continue
    return out


def status(project: Project) -> list[EnvironmentStatus]:
    """For each environment: the version holding its alias, its gate result and promotion commit."""
    cfg, reg = project.config, project.registry
    retrains = _retrains(reg, cfg.model)
    out = []
    for env in cfg.environments:
        info = reg.get_by_alias(cfg.model, env.registry_alias)
        if info is None:
            out.append(EnvironmentStatus(env.name, env.registry_alias, None, None, None, None, retrains.get(env.name)))
            continue
        out.append(EnvironmentStatus(
            env.name, env.registry_alias, info.version, info.tags.get("mlgate.gates"),
            info.tags.get(f"mlgate.promoted.{env.name}.commit"), info.tags.get(f"mlgate.promoted.{env.name}.at"),
            retrains.get(env.name),
        ))
    return out
