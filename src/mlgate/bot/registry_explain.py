"""``mlgate bot explain`` for a saved MLflow delivery: what the bot would do with a registry event, and why.

No network and no writes: the payload goes through the worker's own
:func:`mlgate.core.registry_events.normalize`, :func:`~mlgate.core.registry_events.guarded`,
:func:`~mlgate.core.registry_events.triggered` and, given facts, :func:`mlgate.core.promotion.eligibility`.

Facts file (JSON; every key optional)::

    {
      "config": "<text of .mlgate.yml on the model repository's default branch>",
      "registry": {
        "versions": {"7": {"tags": {"mlgate.gates": "passed", ...}, "status": "READY"}},
        "aliases": {"staging": "6"}          # environment name -> version holding its alias
      },
      "deployed": {"production": "5"}          # environment name -> version git deploys
    }
"""

from __future__ import annotations

from typing import Any

from mlgate.core.events import Ignored
from mlgate.core.promotion import eligibility, gates_fingerprint
from mlgate.core.registry_events import ALIAS_DELETED, guarded, normalize, triggered


def explain_registry(payload: dict[str, Any], *, event: str, facts: dict[str, Any] | None = None) -> str:
    """A plain-text account of what the bot would do with this MLflow delivery.

    Args:
        payload: the delivery's JSON body (``entity``, ``action``, ``timestamp``, ``data``).
        event: ``<entity>.<action>``.
        facts: the config, registry state and what git deploys (see the module docstring).

    Returns:
        Text, one finding per line. Never performs I/O.

    Raises:
        UsageError / ConfigError: the facts are unusable.
    """
    out = [f"delivery: mlflow {event}"]
    ev = normalize(event, payload)
    if isinstance(ev, Ignored):
        return "\n".join([*out, f"ignored: {ev.reason}", "would: acknowledge and do nothing"])
    out.append(f"event: {ev.describe()} (MLflow's payload names no user)")
    out.append("would: find the repository governing the model (bot.yml models:, else the version's tags "
               "mlgate.source_forge / mlgate.source_repo) and read its .mlgate.yml from the default branch")
    if facts is None:
        return "\n".join([*out, "(pass --facts FILE with the config to see which environments it concerns)"])
    return "\n".join(out + _with_facts(ev, facts))


def _with_facts(ev: Any, facts: dict[str, Any]) -> list[str]:
    from mlgate.core import config as cfgmod
    from mlgate.core.errors import ConfigError, UsageError

    try:
        raw = facts["config"]
        cfg = cfgmod.parse(raw, ".mlgate.yml (facts)") if isinstance(raw, str) else cfgmod.Config.model_validate(raw)
        reg = facts.get("registry") or {}
        versions = {str(k): _version_facts(str(k), v) for k, v in (reg.get("versions") or {}).items()}
        aliases = {str(k): str(v) for k, v in (reg.get("aliases") or {}).items()}
        deployed = {str(k): str(v) for k, v in (facts.get("deployed") or {}).items()}
    except ConfigError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise UsageError(f"facts file: unusable ({type(e).__name__}: {e}); see `mlgate bot explain --help`") from None
    if cfg.model != ev.model:
        return [f"would: nothing (the config governs {cfg.model}, not {ev.model})"]
    lines: list[str] = []
    env = guarded(cfg, ev.alias)
    if env is not None:
        git = deployed.get(env.name)
        if env.canary is not None:
            lines.append(f"alias {ev.alias!r} belongs to {env.name}, whose canary moves it: would not guard it")
        elif ev.event == ALIAS_DELETED:
            promoted = git is not None and f"mlgate.promoted.{env.name}.at" in (versions.get(git) or {}).get("tags", {})
            act = (f"put it back on version {git}" if cfg.protect_aliases else
                   "only record and report it (protect_aliases: false)")
            lines.append(f"alias {ev.alias!r} of {env.name} was deleted: " + (
                f"git deploys version {git}, which mlgate promoted there: would {act} and write an audit record"
                if promoted else "would leave it unset (git deploys no version mlgate promoted there; give "
                                 "deployed: {env: version} and that version's mlgate.promoted.<env>.at tag in the facts)"))
        elif git is None:
            lines.append(f"alias {ev.alias!r} belongs to {env.name}: would compare it with the version its manifest "
                         "deploys (give deployed: {env: version} in the facts)")
        elif git == ev.version:
            lines.append(f"alias {ev.alias!r} belongs to {env.name} and git deploys version {git}: in step, nothing to do")
        else:
            act = (f"put it back on version {git}" if cfg.protect_aliases else
                   "only record and report it (protect_aliases: false)")
            lines.append(f"alias {ev.alias!r} belongs to {env.name}, git deploys version {git}, not {ev.version}: would "
                         f"{act}, tag version {ev.version} mlgate.alias_drift.{env.name} and write an audit record")
    for env in triggered(cfg, ev):
        info = versions.get(ev.version) or {"status": "READY", "tags": {}}
        required = aliases.get(env.requires) if env.requires else None
        checks = eligibility(cfg.model, ev.version, env, status=info["status"],
                             tags=info["tags"], expected_fingerprint=gates_fingerprint(cfg),
                             required_holder=required, governing="the default branch's")
        ok = all(c.ok for c in checks)
        lines.append(f"trigger of {env.name}: version {ev.version} " + ("eligible" if ok else "not eligible"))
        lines += [f"  {'ok ' if c.ok else 'NO '} {c.name}: {c.detail}" for c in checks]
        lines.append(f"would: open a promotion PR/MR into {env.gitops.repository} {env.gitops.branch} (its merge moves "
                     f"alias {env.registry_alias!r})" if ok else
                     f"would: open no PR; tag version {ev.version} mlgate.refused.{env.name} with the reasons and "
                     "write an audit record")
    return lines or [f"would: nothing ({ev.describe()} is no environment's trigger or alias)"]


def _version_facts(version: str, v: Any) -> dict[str, Any]:
    """``registry.versions.<version>`` of the facts as ``{"status": str, "tags": {str: str}}``.

    Raises:
        TypeError: not an object, or tags that are not a mapping of names to strings (MLflow tags
            are strings), so a facts file of the wrong shape is a usage error, never a crash.
    """
    if not isinstance(v, dict):
        raise TypeError(f"registry.versions.{version} is {type(v).__name__}, expected an object")
    tags, status = v.get("tags") or {}, v.get("status") or "READY"
    if not isinstance(tags, dict) or not all(isinstance(t, str) for t in tags.values()):
        raise TypeError(f"registry.versions.{version}.tags must map tag names to strings")
    if not isinstance(status, str):
        raise TypeError(f"registry.versions.{version}.status is {type(status).__name__}, expected a string")
    return {"status": status, "tags": {str(k): t for k, t in tags.items()}}
