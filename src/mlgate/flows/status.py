"""``mlgate status``: for each environment, the version holding its alias, its gate result and
the promotion commit that put it there."""

from __future__ import annotations

from dataclasses import dataclass

from mlgate.flows.project import Project

@dataclass(frozen=True)
class EnvironmentStatus:
    environment: str
    alias: str
    version: str | None
    gates: str | None
    commit: str | None
    promoted_at: str | None


def status(project: Project) -> list[EnvironmentStatus]:
    """For each environment: the version holding its alias, its gate result and promotion commit."""
    cfg, reg = project.config, project.registry
    out = []
    for env in cfg.environments:
        info = reg.get_by_alias(cfg.model, env.registry_alias)
        if info is None:
            out.append(EnvironmentStatus(env.name, env.registry_alias, None, None, None, None))
            continue
        out.append(EnvironmentStatus(
            env.name, env.registry_alias, info.version, info.tags.get("mlgate.gates"),
            info.tags.get(f"mlgate.promoted.{env.name}.commit"), info.tags.get(f"mlgate.promoted.{env.name}.at"),
        ))
    return out
