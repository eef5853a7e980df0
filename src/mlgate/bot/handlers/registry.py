"""MLflow registry webhooks (``POST /webhooks/mlflow``): registry-driven promotion and protected aliases.

A stored MLflow delivery is normalised (:func:`mlgate.core.registry_events.normalize`); the
model's repository is found (bot.yml ``models:``, else the version's ``mlgate.source_forge`` /
``mlgate.source_repo`` tags that ``mlgate train`` writes in CI) and its ``.mlgate.yml`` read
from the **default branch**, as for every command. Then, under the (model, environment)
promotion lock:

- an alias an environment holds (``champion``...) → :func:`mlgate.flows.registry_sync.guard_alias`
  (put back on what git deploys, or report with ``protect_aliases: false``);
- an environment whose ``trigger`` the event fires → :func:`mlgate.flows.registry_sync.registry_promotion`
  (a promotion PR/MR through the one promotion engine, or a refusal tag).

Every outcome that decides something is appended to the audit table (``forge: mlflow``). MLflow's
payloads name no user, so ``actor`` says so. :func:`check_registry` is the periodic task that runs
the same guard for every model the bot knows (``reconcile_interval_seconds``).
"""

from __future__ import annotations

import fnmatch
import json
from typing import Any

import structlog

from mlgate.core import config as cfgmod
from mlgate.core.config import Config
from mlgate.core.errors import ConfigError, MlgateError, UsageError
from mlgate.core.events import Ignored, github_repo_problem, gitlab_path_problem
from mlgate.core.promotion import Trigger
from mlgate.core.registry_events import ALIAS_DELETED, RegistryEvent, guarded, normalize, triggered
from mlgate.bot import promotion as promo
from mlgate.bot.handlers.common import (
    CONFIG_FILE,
    HandlerContext,
    MalformedPayload,
    Retryable,
    kv_update,
    with_periodic_lock,
)
from mlgate.bot.ports import Forge, ModelRegistry
from mlgate.edge.db import fencing
from mlgate.edge.db.replies import PromotionOpenings
from mlgate.edge.db.store import Delivery
from mlgate.edge.forges import ForgeWriter, github_installation_id
from mlgate.edge.forges.base import repo_path
from mlgate.flows.registry_sync import Outcome, guard_alias, registry_promotion

log = structlog.get_logger("mlgate.bot.handlers")

#: The bot's state key listing the models MLflow webhooks named: {model: "forge:repo"}.
KNOWN_MODELS = "registry:models"
#: What audit records say of the actor: MLflow 3.17's webhook payloads carry no user.
UNKNOWN_ACTOR = "unknown (MLflow webhooks do not name the user)"


def _source(ctx: HandlerContext, model: str, tags: dict[str, str]) -> tuple[str, str] | str:
    """(forge, repository) whose ``.mlgate.yml`` governs ``model``: bot.yml ``models``, else the
    tags, when bot.yml ``source_repositories`` allows the repository they name; else why not."""
    mapped = (getattr(ctx.settings, "models", None) or {}).get(model)
    if mapped:
        forge, _, repo = mapped.partition(":")
        return forge, repo
    forge, repo = tags.get("mlgate.source_forge"), tags.get("mlgate.source_repo")
    if forge not in ("github", "gitlab") or not repo:
        return (f"no repository governs {model} (add it to models: in bot.yml, or train it with mlgate train in "
                "CI, which tags mlgate.source_repo)")
    # a tag goes into API paths: only a name the forge could have (acme/../../orgs/x is no repository)
    if github_repo_problem(repo) if forge == "github" else gitlab_path_problem(repo):
        return f"the version's mlgate.source_repo {repo[:100]!r} is no {forge} repository name"
    if not _allowed(ctx, forge, repo):
        return (f"the version's tags name {forge}:{repo}, which bot.yml source_repositories does not allow "
                f"(add the model to models: in bot.yml, or the repository to source_repositories)")
    return forge, repo


def _forge(ctx: HandlerContext, forge: str, repo: str) -> Forge:
    """A forge client for ``repo``: a registry event names no GitHub App installation, so the bot
    looks it up for the repository (with App credentials; a ``github_token`` needs none)."""
    installation = github_installation_id(ctx.settings, repo) if forge == "github" else None
    return ctx.forges(forge, installation)  # type: ignore[misc]


def _registry(ctx: HandlerContext) -> ModelRegistry:
    uri = getattr(ctx.settings, "tracking_uri", None)
    if not uri:
        raise UsageError("MLflow webhooks need the tracking server the bot reads: set tracking_uri in bot.yml "
                         "(the server that sends the webhooks)")
    return ctx.registry_factory(uri)  # type: ignore[misc]


def _config(forge: Forge, repo: str) -> Config | str:
    """``.mlgate.yml`` of ``repo``'s default branch, or why it cannot be used."""
    branch = forge.default_branch(repo)
    text = forge.read_file(repo, CONFIG_FILE, branch)
    if text is None:
        return f"there is no {CONFIG_FILE} on the default branch {branch} of {repo}"
    try:
        return cfgmod.parse(text, CONFIG_FILE)
    except ConfigError as e:
        return f"{CONFIG_FILE} on the default branch {branch} of {repo} is invalid: {str(e).splitlines()[0]}"


def _reader(forge: Forge) -> Any:
    def read(repository: str, branch: str, path: str) -> str | None:
        return forge.read_file(repo_path(repository), path, branch)

    return read


def _audit(ctx: HandlerContext, delivery: str | None, forge: str, repo: str, out: Outcome) -> None:
    if out.record:
        ctx.store.audit({"at": ctx.clock().isoformat(), "forge": "mlflow", "repo": f"{forge}:{repo}", "pr": None,
                         "delivery": delivery, "actor": UNKNOWN_ACTOR, **out.record})


def _locked(ctx: HandlerContext, owner: str, model: str, env: str, run: Any) -> Outcome:
    """``run()`` under the (model, environment) promotion lock that ``/promote`` takes."""
    lock = f"promote:{model}:{env}"
    if not ctx.store.acquire_lock(lock, owner, ctx.lock_ttl, ctx.clock(), keep=True, supersedes=owner.split("#")[0] + "#"):
        raise Retryable(f"a promotion of {model} to {env} is running; the registry event is handled after it", 2.0)
    try:
        with fencing.fenced(fencing.LockFence(ctx.store.engine, lock, owner)):
            return run()
    finally:
        ctx.store.release_lock(lock, owner)


def _allowed(ctx: HandlerContext, forge: str, repo: str) -> bool:
    """Whether bot.yml ``source_repositories`` (shell-style patterns of ``FORGE:PATH``; unset: any)
    lets a version's tags name this repository."""
    patterns = getattr(ctx.settings, "source_repositories", None)
    return patterns is None or any(fnmatch.fnmatchcase(f"{forge}:{repo}", p) for p in patterns)


def _known(ctx: HandlerContext) -> dict[str, str]:
    """Model -> ``forge:repository`` for every model the bot knows: those earlier registry events
    named (:func:`_remember`) that ``source_repositories`` still allows, and bot.yml ``models``."""
    known = {m: str(w) for m, w in (json.loads(ctx.store.kv_get(KNOWN_MODELS) or "{}") or {}).items()
             if _allowed(ctx, *str(w).partition(":")[::2])}
    known.update(getattr(ctx.settings, "models", None) or {})
    return known


def _known_source(ctx: HandlerContext, model: str) -> tuple[str, str] | None:
    """(forge, repository) of ``model`` among :func:`_known`, or None."""
    forge, _, repo = _known(ctx).get(model, "").partition(":")
    return (forge, repo) if forge in ("github", "gitlab") and repo else None


def _remember(ctx: HandlerContext, model: str, forge: str, repo: str) -> None:
    """Keep (model → repository) for the periodic check."""
    def change(known: Any) -> Any:
        known = dict(known or {})
        known[model] = f"{forge}:{repo}"
        return known

    if (json.loads(ctx.store.kv_get(KNOWN_MODELS) or "{}") or {}).get(model) != f"{forge}:{repo}":
        kv_update(ctx, KNOWN_MODELS, change)


def handle_mlflow(delivery: Delivery, ctx: HandlerContext) -> str:
    """Process one stored MLflow delivery; returns the outcome shown by ``mlgate bot deliveries``.

    Raises:
        MalformedPayload: the payload is not the shape MLflow sends (failed at once).
        Retryable: the promotion lock is held, or the registry/forge is unreachable (via the dispatcher).
        MlgateError: no tracking_uri in bot.yml (the delivery fails with that message).
    """
    ev = normalize(delivery.event, delivery.payload)
    if isinstance(ev, Ignored):
        if ev.reason.startswith("malformed payload"):
            raise MalformedPayload(ev.reason)
        return f"ignored: {ev.reason}"
    reg = _registry(ctx)
    if ev.event == ALIAS_DELETED:  # no version to read the mlgate.source_* tags of: the models the bot knows
        src = _known_source(ctx, ev.model)
    else:
        try:
            info = reg.get_version(ev.model, ev.version)
        except UsageError as e:
            return f"ignored: {e}"
        src = _source(ctx, ev.model, dict(info.tags or {}))
    if src is None:
        return f"ignored: no repository governs {ev.model} that the bot knows (add it to models: in bot.yml)"
    if isinstance(src, str):
        return f"ignored: {src}"
    forge_name, repo = src
    forge = _forge(ctx, forge_name, repo)
    cfg = _config(forge, repo)
    if isinstance(cfg, str):
        ctx.store.audit({"at": ctx.clock().isoformat(), "forge": "mlflow", "repo": f"{forge_name}:{repo}",
                         "delivery": delivery.id, "actor": UNKNOWN_ACTOR, "model": ev.model, "version": ev.version,
                         "event": "registry event", "allowed": False, "reasons": [cfg], "outcome": "no policy"})
        return f"no policy: {cfg}"
    if cfg.model != ev.model:
        return f"ignored: {repo}'s {CONFIG_FILE} configures {cfg.model}, not {ev.model}"
    _remember(ctx, ev.model, forge_name, repo)
    owner = f"{delivery.id}#{delivery.token}"
    done: list[str] = []
    env = guarded(cfg, ev.alias)
    if env is not None:
        out = _locked(ctx, owner, cfg.model, env.name,
                      lambda: guard_alias(_reader(forge), reg, cfg, env, cause=ev.describe()))
        _audit(ctx, delivery.id, forge_name, repo, out)
        done.append(out.text)
    for env in triggered(cfg, ev):
        out = _locked(ctx, owner, cfg.model, env.name, lambda env=env: _promote(ctx, delivery, forge, forge_name, repo,
                                                                                 reg, cfg, env, ev))
        _audit(ctx, delivery.id, forge_name, repo, out)
        done.append(out.text)
    return "; ".join(done) or f"nothing to do: {ev.describe()} is no trigger and no environment's alias"


def _promote(ctx: HandlerContext, delivery: Delivery, forge: Forge, forge_name: str, repo: str, reg: ModelRegistry,
             cfg: Config, env: Any, ev: RegistryEvent) -> Outcome:
    uri = getattr(ctx.settings, "tracking_uri", None)
    links = tuple(promo.mlflow_links(uri, cfg.model, ev.version, None))
    page = promo._safe_url(uri)
    source = Trigger("registry", actor=None, repo=repo, forge=forge_name,
                     url=f"{page}/#/models/{cfg.model}/versions/{ev.version}" if page else None)
    writer = ForgeWriter(lambda _repository: forge, mode="pull-request")  # the PR's merge is the approval
    openings = PromotionOpenings(ctx.store.engine)
    branch = f"mlgate/promote/{cfg.model}/{env.name}/v{ev.version}"
    opening = openings.begin(forge_name, repo_path(env.gitops.repository), branch, delivery.id)
    out = registry_promotion(reg, writer, cfg, env, ev, source=source, links=links, delivery=delivery.id)
    if out.state == "promotion PR":
        verb = "opened" if openings.finish(opening, out.record.get("number"), bool(out.record.get("created"))) else "updated"
        out = Outcome(out.state, out.text.replace("promotion PR", f"promotion PR {verb}", 1),
                      {**out.record, "outcome": f"promotion PR {verb}"})
    return out


def _debounced(ctx: HandlerContext, model: str, env: str, guard: Any) -> Outcome:
    """Act on a drift the periodic check sees at two passes in a row (the same held and deployed
    versions): between a promotion PR's merge and its webhook, the alias lags git for a moment,
    and that is no hand move. A drift only reported (``protect_aliases: false``) is reported once
    while it lasts, not at every other pass."""
    key = f"registry:drift:{model}:{env}"
    seen = guard(True)
    mark = ctx.store.kv_get(key)
    if seen.state != "drift":
        if mark:
            ctx.store.kv_set(key, "")
        return seen
    pair = seen.record["pair"]
    if mark == f"reported {pair}":
        return seen
    if mark != pair:
        ctx.store.kv_set(key, pair)
        return seen
    out = guard(False)
    ctx.store.kv_set(key, f"reported {pair}" if out.state == "drift reported" else "")
    return out


def check_registry(ctx: HandlerContext) -> str:
    """The periodic check (``reconcile_interval_seconds``): for every model the bot knows (bot.yml
    ``models`` and those MLflow webhooks named), :func:`~mlgate.flows.registry_sync.guard_alias`
    each environment, so drift made while the bot was down (or a lost webhook) is found too.
    One replica at a time (lock ``periodic:registry-check``); one model's trouble never stops the others.
    Returns what changed ("" when nothing did)."""

    def run() -> str:
        known = _known(ctx)
        if not known:
            return ""
        reg = _registry(ctx)
        done: list[str] = []
        for model, where in sorted(known.items()):
            forge_name, _, repo = where.partition(":")
            try:
                forge = _forge(ctx, forge_name, repo)
                cfg = _config(forge, repo)
                if isinstance(cfg, str) or cfg.model != model:
                    continue
                for env in cfg.environments:
                    out = _debounced(ctx, model, env.name, lambda dry, env=env: guard_alias(
                        _reader(forge), reg, cfg, env, cause="found by the bot's periodic check", dry=dry))
                    if out.state in ("put back", "drift reported"):
                        _audit(ctx, None, forge_name, repo, out)
                        done.append(f"{model} {out.text}")
            except fencing.LeaseLost:
                raise
            except MlgateError as e:
                log.warning("registry check failed", model=model, error=str(e).splitlines()[0] if str(e) else "")
        return "; ".join(done)

    return with_periodic_lock(ctx, "periodic:registry-check", run)
