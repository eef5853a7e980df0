"""The MLflow Model Registry as a trigger, git as the truth (issue 13).

Two use cases over small ports, driven by the bot's MLflow webhook handler
(:mod:`mlgate.bot.handlers.registry`) and its periodic check:

- :func:`guard_alias`: an environment's alias holds a version git does not deploy (moved by
  hand in the MLflow UI): put it back on the version the GitOps repository deploys (read from
  the environment's manifest at the branch head and mapped back to a version through the value
  template, :func:`mlgate.core.registry_events.deploys`), tag the moved-to version with the
  reason; with ``protect_aliases: false`` only tag and report.
- :func:`registry_promotion`: a registry event fired an environment's ``trigger``: check the
  version with :func:`mlgate.core.promotion.eligibility` (the checks of ``/promote`` and
  ``mlgate promote``) and open the promotion PR/MR through :func:`mlgate.flows.promote.write_promotion`
  (always a PR/MR: its merge is the approval, and the alias moves on merge as for every
  promotion PR); a version that is not eligible gets no PR and a ``mlgate.refused.<env>`` tag.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Protocol

from mlgate.core.config import Config, Environment
from mlgate.core.errors import UsageError
from mlgate.core.promotion import Promotion, Trigger, eligibility, gate_summary, gates_fingerprint, template_values
from mlgate.core.registry_events import (
    REFUSED_TAG,
    REQUESTED_TAG,
    REVERTED_TAG,
    RegistryEvent,
    candidate_order,
    deploys,
    eligibility_table,
    refusal_text,
)
from mlgate.core.urls import redact_url
from mlgate.edge.git import PromotionWriter
from mlgate.flows.promote import write_promotion

#: Versions, besides those with a landed promotion, compared with the manifest (newest first).
MAX_CANDIDATES = 25


class Registry(Protocol):
    """What these flows need of the MLflow Model Registry (:class:`mlgate.edge.registry.Registry`)."""

    def get_version(self, model: str, version: str) -> Any: ...
    def get_by_alias(self, model: str, alias: str) -> Any: ...
    def versions(self, model: str) -> list[Any]: ...
    def set_alias(self, model: str, alias: str, version: str) -> None: ...
    def set_tags(self, model: str, version: str, tags: Mapping[str, str]) -> None: ...


#: Reads a file of the GitOps repository: (repository setting, branch, path) → text or None.
Reader = Callable[[str, str, str], "str | None"]


@dataclass(frozen=True)
class Outcome:
    """What a flow did: ``state`` (``in step``, ``put back``, ``drift reported``, ``undecided``,
    ``not guarded``, ``refused``, ``promotion PR``, ``nothing to do``, ``moved on``), a one-line
    ``text``, and ``record``: the audit record's fields."""

    state: str
    text: str
    record: dict[str, Any] = field(default_factory=dict)


def deployed_version(reader: Reader, registry: Registry, model: str, env: Environment,
                     prefer: str | None = None, landed_only: bool = False) -> tuple[str | None, str]:
    """The version git deploys to ``env`` now, and where that was read (or why it is unknown).

    Reads ``env.gitops.path`` at the head of ``env.gitops.branch`` and compares it with the
    versions of ``model`` (those with a landed promotion to ``env`` first, then the
    :data:`MAX_CANDIDATES` newest): the first whose values the manifest already holds. ``prefer``
    (the version the alias holds) is tried first: two versions of the same artifact render the same
    value, and then the alias is in step whichever of them it holds. ``landed_only``: only the
    versions a promotion of mlgate landed in ``env`` (tag ``mlgate.promoted.<env>.at``).
    """
    g = env.gitops
    # the text goes into an MLflow tag that every registry reader sees: never a URL's credentials
    where = f"{redact_url(g.repository)} {g.branch}:{g.path}"
    text = reader(g.repository, g.branch, g.path)
    if text is None:
        return None, f"{where} does not exist"
    ordered = candidate_order(env.name, registry.versions(model))
    key = f"mlgate.promoted.{env.name}.at"
    landed = [v.version for v in ordered if key in v.tags]
    tried = landed if landed_only else landed + [v.version for v in ordered if key not in v.tags][:MAX_CANDIDATES]
    if prefer is not None:
        tried = [prefer] + [v for v in tried if v != prefer]
    for version in tried:
        try:
            info = registry.get_version(model, version)
        except UsageError:
            continue
        values = template_values(model, info.version, storage_uri=info.storage_uri or info.source, run_id=info.run_id)
        if deploys(text, env, values):
            return info.version, where
    return None, f"{where} holds a value no version of {model} maps to (through the value template {g.target.value!r})"


def guard_alias(reader: Reader, registry: Registry, cfg: Config, env: Environment, *, cause: str,
                dry: bool = False) -> Outcome:
    """Compare the alias ``env`` holds with what git deploys; put it back when they differ.

    Args:
        cause: how the drift was found, for the tag and the record (``alias 'champion' set on
            fraud version 4 at ...`` or ``periodic check``).
        dry: only look: a drift is returned as state ``drift`` (``text`` names held and deployed
            versions as ``<held>-><deployed>`` in ``record["pair"]``) and nothing is written.

    An alias that holds no version is drift only when git deploys a version mlgate promoted to
    ``env`` (its ``mlgate.promoted.<env>.at`` tag: the alias was set, then deleted); an environment
    mlgate never promoted to is left alone.

    Returns:
        An :class:`Outcome`: ``in step``, ``put back`` (``cfg.protect_aliases``), ``drift reported``,
        ``undecided`` (git does not say which version runs: nothing is moved) or ``not guarded``
        (a canary environment: its canary moves the alias step by step).

    Raises:
        InfraError: the registry or the forge is unreachable.
    """
    model, alias = cfg.model, env.registry_alias
    base = {"model": model, "environment": env.name, "alias": alias}
    if env.canary is not None:
        return Outcome("not guarded", f"{env.name}: alias {alias!r} is moved by the environment's canary", {})
    holder = registry.get_by_alias(model, alias)
    held = holder.version if holder is not None else None
    if held is None:
        deployed, where = deployed_version(reader, registry, model, env, landed_only=True)
        if deployed is None:  # git deploys no version mlgate promoted here: not mlgate's alias to set
            return Outcome("in step", f"{env.name}: alias {alias!r} holds no version", {})
        why = f"alias {alias!r} holds no version ({cause}), but git deploys version {deployed} ({where})"
    else:
        deployed, where = deployed_version(reader, registry, model, env, prefer=held)
        if deployed is None:
            return Outcome("undecided", f"{env.name}: git does not say which version runs ({where}); alias {alias!r} "
                           f"left on version {held}", {**base, "version": held, "event": "alias drift",
                                                         "allowed": False, "reasons": [where], "outcome": "undecided"})
        if deployed == held:
            return Outcome("in step", f"{env.name}: alias {alias!r} holds version {held}, which git deploys", {})
        why = f"alias {alias!r} was moved to version {held} ({cause}), but git deploys version {deployed} ({where})"
    if dry:
        return Outcome("drift", f"{env.name}: {why}", {"pair": f"{held or 'none'}->{deployed}"})
    if cfg.protect_aliases:
        registry.set_alias(model, alias, deployed)
        note = f"{why}; mlgate put it back on version {deployed}. Promote through git (mlgate promote, /promote)."
        state, outcome = "put back", "alias put back"
    else:
        note = f"{why}; not put back (protect_aliases: false). Promote through git to deploy it."
        state, outcome = "drift reported", "drift reported"
    if held is not None:  # the version the alias was moved to says why it left (a deleted alias held none)
        registry.set_tags(model, held, {REVERTED_TAG.format(env=env.name): note[:1000]})
    record = {**base, "version": held, "deployed": deployed, "event": "alias drift", "allowed": False,
              "reasons": [why], "outcome": outcome, "cause": cause}
    return Outcome(state, f"{env.name}: {note}", record)


def registry_promotion(registry: Registry, writer: PromotionWriter, cfg: Config, env: Environment,
                       ev: RegistryEvent, *, source: Trigger, links: tuple[str, ...] = (),
                       delivery: str = "") -> Outcome:
    """Open the promotion PR/MR a registry event asks for, or refuse and tag the version.

    Args:
        writer: a pull-request writer (:class:`mlgate.edge.forges.ForgeWriter` in ``pull-request``
            mode): the PR's merge is the environment's approval.
        source: the trigger (``kind="registry"``, the model repository as ``repo``/``forge``,
            the MLflow page as ``url``): the merge handler reads the policy from ``repo``.
        links: Markdown links to the version in the MLflow UI.

    Raises:
        InfraError/ForgeError: the registry or the forge failed (the delivery is retried);
        ManifestError/UsageError: the manifest cannot be edited.
    """
    model, version = cfg.model, ev.version
    info = registry.get_version(model, version)
    base = {"model": model, "version": version, "environment": env.name, "event": "registry trigger",
            "trigger": ev.describe()}
    if ev.alias is not None:
        holder = registry.get_by_alias(model, ev.alias)
        if holder is None or holder.version != version:
            now = f"version {holder.version}" if holder is not None else "no version"
            return Outcome("moved on", f"{env.name}: alias {ev.alias!r} now holds {now}, not {version}; nothing done",
                           {})
    elif ev.key is not None and info.tags.get(ev.key) != ev.value:
        return Outcome("moved on", f"{env.name}: tag {ev.key} of version {version} changed since; nothing done", {})
    required = None
    if env.requires:
        holder = registry.get_by_alias(model, cfg.environment(env.requires).registry_alias)
        required = holder.version if holder is not None else None
    checks = eligibility(model, version, env, status=str(info.status or "READY"), tags=info.tags,
                         expected_fingerprint=gates_fingerprint(cfg), required_holder=required,
                         governing="the default branch's")
    reasons = [c.detail for c in checks if not c.ok]
    if env.canary is not None:
        reasons.append(f"{env.name} promotes through a canary: start it with /promote in a pull request")
    if reasons:
        registry.set_tags(model, version, {REFUSED_TAG.format(env=env.name): refusal_text(env.name, reasons)})
        return Outcome("refused", f"{env.name}: version {version} refused: {'; '.join(reasons)}",
                       {**base, "allowed": False, "reasons": reasons, "outcome": "refused"})
    p = Promotion(model, version, env.name, env.registry_alias, trigger=source, gates=gate_summary(info.tags),
                  run_id=info.run_id, model_uri=f"models:/{model}/{version}", links=links)
    details = (f"**Registry event:** {ev.describe()} (MLflow delivery `{delivery}`; MLflow's webhooks do not "
               f"name the user who set it)\n\n{eligibility_table(checks)}\n\n**Approval:** merging this PR/MR")
    values = template_values(model, version, storage_uri=info.storage_uri or info.source, run_id=info.run_id)
    result = write_promotion(p, env, values, writer, body=p.body(details))
    if not result.changed and result.url is None:
        return Outcome("nothing to do", f"{env.name} already runs version {version}",
                       {**base, "allowed": True, "reasons": [], "outcome": "already deployed"})
    registry.set_tags(model, version, {REQUESTED_TAG.format(env=env.name): result.url or ""})
    return Outcome("promotion PR", f"{env.name}: promotion PR {result.url}",
                   {**base, "allowed": True, "reasons": [], "outcome": "promotion PR opened",
                    "promotion_pr": result.url, "created": result.created, "number": result.number})
