"""``/promote``, ``/rollback`` and ``/status``: read the policy, decide, promote, reply, audit.

The policy is read from ``.mlgate.yml`` on the repository's **default branch** (named by the
signed payload), never from the PR head: a PR cannot lower its own gates. One promotion per
(model, environment) at a time: a lock in the store; a second ``/promote`` for that target while
one runs gets a reply saying so. Every decision, allowed or refused, is appended to the audit
table. A promotion is a push to the GitOps branch (the alias moves at once) or a promotion PR
(the alias moves when it merges: :mod:`mlgate.bot.handlers.merged`); an environment with a
``canary:`` section starts a canary instead (:mod:`mlgate.bot.handlers.canary`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import structlog

from mlgate.core import commands as cmdparse
from mlgate.core.commands import Command
from mlgate.core.config import Config, Environment
from mlgate.core.policy import Decision, decide
from mlgate.bot import promotion as promo
from mlgate.bot.handlers import canary
from mlgate.bot.handlers.common import Job, canary_store
from mlgate.bot.handlers.merged import move_alias
from mlgate.bot.handlers.snapshot import snapshot
from mlgate.core.promotion import template_values
from mlgate.edge import metrics
from mlgate.edge.db import fencing
from mlgate.edge.db.replies import PromotionOpenings
from mlgate.edge.forges import ForgeWriter
from mlgate.edge.forges.base import repo_path
from mlgate.flows.promote import write_promotion

log = structlog.get_logger("mlgate.bot.handlers")


def _target(job: Job, cmd: Command) -> tuple[Command, Config, str, Environment] | str:
    """The policy and the (model, environment) ``cmd`` names; else, replied and audited, the outcome."""
    cfg = job.config()
    if isinstance(cfg, str):
        return f"{cmd.name}: {job.no_policy(cmd.text, cfg)}"
    if cmd.name == "rollback":
        cmd = cmdparse.resolve_rollback_word(cmd, cfg.model, [e.name for e in cfg.environments])
        if cmd.environment is None and (cmd.model is None or cmd.model == cfg.model):
            mine = canary.canaries_from_this_pr(job, cfg.model)
            if len(mine) == 1:  # `/rollback` on the PR that started a canary rolls that canary back
                cmd = replace(cmd, environment=mine[0].environment)
    target = promo.resolve_target(cmd, cfg)
    if isinstance(target, str):
        job.say(promo.reply(f"`{cmd.text}`", target))
        job.audit(command=cmd.text, allowed=False, reasons=[target], outcome="bad target")
        return f"{cmd.name}: {target}"
    model, env = target
    return cmd, cfg, model, env


def on_status(job: Job, cmd: Command) -> str:
    """``/status``: whether the head commit's version may be promoted (no lock, no change)."""
    found = _target(job, cmd)
    if isinstance(found, str):
        return found
    cmd, cfg, model, env = found
    snap, version, _cand = snapshot(job, cfg, env, model, "status", None, cmd.version)
    decision = decide(promo.facts_for(job.ev.forge, "status", job.ev.actor, model, env, version, snap))
    held = ", ".join(f"`{k}`: version {v}" for k, v in sorted(snap.aliases.items())) or "no environment holds a version yet"
    head = f"version {snap.head_candidate.version}" if snap.head_candidate else "no version registered"
    body = f"Head commit `{(snap.head_sha or '?')[:7]}`: {head}. Environments: {held}."
    verdict = "ready to promote" if decision.allowed else "not ready"
    job.say(promo.reply(f"status for `{env.name}`: {verdict}", body, decision))
    job.set_gates_status(decision, snap.head_sha)
    return f"status: {verdict}"


def on_promote(job: Job, cmd: Command) -> str:
    """``/promote [MODEL][@VERSION] [to ENV]``."""
    found = _target(job, cmd)
    if isinstance(found, str):
        return found
    cmd, cfg, model, env = found
    return _locked(job, cmd, model, env, lambda: promote(job, cmd, cfg, model, env))


def on_rollback(job: Job, cmd: Command) -> str:
    """``/rollback [MODEL] [ENV]``: roll back the environment's running canary, else promote the
    version the environment held before."""
    found = _target(job, cmd)
    if isinstance(found, str):
        return found
    cmd, cfg, model, env = found

    def run() -> str:
        if canary_store(job.ctx).find_active(model, env.name) is not None:
            with job.canary_lock(model, env.name):
                running = canary_store(job.ctx).find_active(model, env.name)
                if running is not None:
                    outcome, text = canary.stop_canary(job, "rollback", running, env)
                    job.say(text)
                    return outcome
        return promote(job, cmd, cfg, model, env)

    return _locked(job, cmd, model, env, run)


def _locked(job: Job, cmd: Command, model: str, env: Environment, run: Callable[[], str]) -> str:
    """``run()`` under the (model, environment) promotion lock; a "busy" reply when another holds it."""
    lock = f"promote:{model}:{env.name}"
    if not job.acquire(lock):  # this attempt's, renewed while it runs; an earlier attempt's is taken over
        msg = (f"a promotion of `{model}` to `{env.name}` is already running; this `/{cmd.name}` was not run. "
               "Comment again when it has finished.")
        job.say(promo.reply(f"`{cmd.text}`: busy", msg))
        job.audit(command=cmd.text, model=model, environment=env.name, allowed=False, reasons=[msg], outcome="busy")
        return f"{cmd.name}: busy ({model} to {env.name} is already being promoted)"
    try:
        with fencing.fenced(fencing.LockFence(job.store.engine, lock, job.owner)):
            return run()
    finally:
        job.release(lock)


def promote(job: Job, cmd: Command, cfg: Config, model: str, env: Environment) -> str:
    """Decide ``/promote`` or ``/rollback``; when allowed, start the canary or write the promotion."""
    ev = job.ev
    snap, version, cand = snapshot(job, cfg, env, model, cmd.name, ev.actor, cmd.version)
    facts = promo.facts_for(ev.forge, cmd.name, ev.actor, model, env, version, snap)
    decision = decide(facts)
    record = dict(command=cmd.text, model=model, version=version, environment=env.name,
                  head_sha=snap.head_sha, allowed=decision.allowed, reasons=decision.reasons,
                  approvers=decision.approvers, not_counted=decision.not_counted)
    job.set_gates_status(decide(replace(facts, command="status")), snap.head_sha)
    if not decision.allowed:
        job.say(promo.refusal(cmd.text, decision))
        job.audit(**record, outcome="refused")
        log.info("command refused", delivery=job.delivery.id, command=cmd.text, reasons=decision.reasons)
        return f"{cmd.name}: refused ({decision.reasons[0]})"
    if env.canary is not None and cmd.name == "promote":
        with job.canary_lock(model, env.name):
            return canary.start_canary(job, cmd, cfg, model, env, version, decision, record)
    return _write(job, cmd, cfg, model, env, version, cand, decision, record)


def _write(job: Job, cmd: Command, cfg: Config, model: str, env: Environment, version: Any, cand: Any,
           decision: Decision, record: dict[str, Any]) -> str:
    """Write the allowed promotion through the engine (a push, or a promotion PR) and reply what happened."""
    ev = job.ev
    pr = job.pr()
    p = promo.promotion_for(model=model, version=version, env=env, command=cmd.name, forge=ev.forge, actor=ev.actor,
                            source_repo=ev.repo, source_number=ev.number, source_url=pr.url,
                            tracking_uri=job.tracking_uri(cfg), candidate=cand)
    values = template_values(model, version, storage_uri=cand.storage_uri or cand.source, run_id=cand.run_id)
    writer = ForgeWriter(lambda _repository: job.forge, mode=env.gitops.mode)
    openings = PromotionOpenings(job.store.engine)  # a retry whose create-PR call went through still says "opened"
    opening = openings.begin(ev.forge, repo_path(env.gitops.repository), p.branch, job.delivery.id)
    result = write_promotion(p, env, values, writer, body=p.body(promo.promotion_details(decision)))
    try:
        metrics.PROMOTION_API_CALLS.labels(forge=ev.forge).observe(result.api_calls)
    except Exception:  # metrics are optional outside the server
        pass
    if not result.changed and result.url is None:
        msg = f"`{env.name}` already runs `{model}` version {version} (`{env.gitops.path}` holds it); nothing to do"
        job.say(promo.reply(f"`{cmd.text}`: nothing to do", msg, decision))
        job.audit(**record, outcome="already deployed", api_calls=result.api_calls)
        return f"{cmd.name}: nothing to do ({env.name} already holds version {version})"
    if result.landed:
        repo = repo_path(env.gitops.repository)
        move_alias(job, p, commit=result.commit, url=None, reg=job.registry(cfg))
        msg = (f"Committed to `{repo}` branch `{env.gitops.branch}` ({(result.commit or '')[:7]}); "
               f"alias `{env.registry_alias}` moved.")
        job.say(promo.reply(f"`{model}` version {version} promoted to `{env.name}`", msg, decision))
        job.audit(**record, outcome="pushed", commit=result.commit, api_calls=result.api_calls)
        return f"{cmd.name}: pushed {result.commit}"
    verb = "opened" if openings.finish(opening, result.number, result.created) else "updated"
    msg = f"Promotion PR {verb}: {result.url}\n\nMerging it moves alias `{env.registry_alias}` to version {version}."
    job.say(promo.reply(f"promotion of `{model}` version {version} to `{env.name}`", msg, decision))
    job.audit(**record, outcome=f"promotion PR {verb}", promotion_pr=result.url, api_calls=result.api_calls)
    return f"{cmd.name}: promotion PR {verb} {result.url}"
