"""A merged PR/MR on the GitOps repository: the promotion landed, the environment's alias follows.

A promotion PR is named by its branch (``mlgate/promote/<model>/<env>/v<version>``) and names
its source repository in the hidden mlgate block of its body; the alias moves only when that
repository's ``.mlgate.yml`` (default branch) configures the model and the environment. The
merge acts once (an effect keyed on the PR). A canary step's PR is handed to
:func:`mlgate.bot.handlers.canary.on_canary_merged`.
"""

from __future__ import annotations

from typing import Any

from mlgate.core.promotion import is_canary_branch
from mlgate.bot import promotion as promo
from mlgate.bot.handlers import canary
from mlgate.bot.handlers.canary import merge_commit
from mlgate.bot.handlers.common import CONFIG_FILE, Job
from mlgate.bot.ports import ModelRegistry
from mlgate.core.config import Config
from mlgate.core.promotion import Promotion, parse_branch, parse_hidden
from mlgate.flows.promote import land


def move_alias(job: Job, promotion: Promotion, *, commit: str | None, url: str | None, reg: ModelRegistry) -> str | None:
    """The promotion landed: :func:`mlgate.flows.promote.land` (the code ``mlgate reconcile``
    runs) moves the alias and tags the version; audited. Returns the previous version."""
    landing = land(reg, promotion, commit=commit, url=url, now=lambda: job.now().timestamp())
    job.audit(event="alias moved", model=promotion.model, version=promotion.version,
              environment=promotion.environment, alias=promotion.alias, previous=landing.previous,
              where=url or commit, allowed=True, reasons=[], outcome="alias moved")
    return landing.previous


def on_merged(job: Job) -> str:
    """``pull_request`` merged: move the alias a promotion PR named; a canary step goes live."""
    ev = job.ev
    if is_canary_branch(ev.head_ref):
        return canary.on_canary_merged(job)
    parsed = parse_branch(ev.head_ref)
    if parsed is None:
        return f"merged PR #{ev.number} is not a promotion PR"
    model, env_name, version = parsed
    if not job.store.claim_effect(f"{ev.forge}:{ev.repo}:merged:{ev.number}", job.delivery.id):
        return f"merge of #{ev.number} already handled"
    hidden = parse_hidden(ev.body) or {}
    found = _source_config(job, hidden.get("source_repo"), model, env_name, version)
    if isinstance(found, str):
        return found
    source_repo, cfg = found
    env = cfg.environment(env_name)
    promotion = Promotion(model, version, env.name, env.registry_alias, action=hidden.get("command") or "promote")
    moved = move_alias(job, promotion, commit=merge_commit(job.delivery), url=ev.url, reg=job.registry(cfg))
    number = hidden.get("source_number")
    if number:
        job.say(promo.reply(
            f"`{model}` version {version} is live in `{env.name}`",
            f"Promotion PR {ev.url or ev.number} was merged; alias `{env.registry_alias}` now points to version {version}"
            + (f" (was {moved})." if moved else "."),
        ), number=int(number), repo=source_repo)
    return f"merged #{ev.number}: alias {env.registry_alias} of {model} -> {version}"


def _source_config(job: Job, source_repo: Any, model: str, env_name: str, version: str) -> tuple[str, Config] | str:
    """The source repository's policy when it configures (model, environment); else, audited, the outcome."""
    number = job.ev.number

    def refuse(reason: str) -> None:
        job.audit(event="merged", model=model, version=version, environment=env_name, allowed=False,
                  reasons=[reason], outcome="alias not moved")

    if not source_repo:
        refuse("the promotion PR body has no mlgate block naming its source repository")
        return f"merged #{number}: no source repository recorded; alias not moved"
    cfg = job.config(repo=source_repo)
    if isinstance(cfg, str):
        refuse(cfg.splitlines()[0])
        return f"merged #{number}: {cfg.splitlines()[0]}"
    if cfg.model != model or env_name not in [e.name for e in cfg.environments]:
        reason = f"{source_repo}'s {CONFIG_FILE} does not configure {model} / {env_name}"
        refuse(reason)
        return f"merged #{number}: {reason}"
    return source_repo, cfg
