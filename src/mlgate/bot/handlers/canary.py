"""Canaries from the PR (issue 5): start on ``/promote``, stop on ``/rollback`` or ``/abort``, go live on merge.

``/promote`` to an environment with a ``canary:`` section starts a canary
(:func:`mlgate.flows.canary.start_canary`) after the same policy checks as any promotion; each
step is written through the forge (:class:`mlgate.edge.forges.ForgeWriter`); the merge of a
step's PR (``pull_request`` closed+merged on the GitOps repository) makes it live
(:func:`mlgate.flows.canary.on_step_live`); ``/rollback`` and ``/abort`` stop a running canary.
The periodic tick (:mod:`mlgate.bot.handlers.tick`) measures, advances and rolls back. The
canary's report is the source PR's one mlgate comment, edited in place; every canary
transition is appended to the audit table (:func:`audit_canary`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import structlog

from mlgate.core.promotion import parse_canary_branch
from mlgate.edge.forges import ForgeWriter
from mlgate.core import canary as core
from mlgate.core.canary import CanaryRecord
from mlgate.core.commands import Command
from mlgate.core.config import Config, Environment, Promoters
from mlgate.core.errors import InfraError, MlgateError, Refused
from mlgate.core.policy import Decision
from mlgate.bot import promotion as promo
from mlgate.bot.handlers.common import HandlerContext, Job, canary_store, kv_update, post_comment, utcnow
from mlgate.bot.ports import Forge, ModelRegistry
from mlgate.edge.db.store import Delivery
from mlgate.edge.forges.base import repo_path
from mlgate.flows import canary as runner

log = structlog.get_logger("mlgate.bot.handlers")


# --------------------------------------------------------------------------- shared with the periodic tick


def _iso(ts: float | None) -> str | None:
    return datetime.fromtimestamp(ts, UTC).isoformat() if ts is not None else None


def audit_canary(ctx: HandlerContext, canary_id: int | None, base: dict[str, Any]) -> int:
    """Append one audit record per canary transition not audited yet; returns how many."""
    if canary_id is None:
        return 0
    cstore = canary_store(ctx)
    added = 0

    def change(done: Any) -> int:
        nonlocal added
        done = int(done or 0)
        transitions = cstore.transitions(canary_id)
        rec = cstore.get(canary_id)
        for t in transitions[done:]:
            ctx.store.audit({
                **base, "at": _iso(t.at), "actor": t.actor, "event": "canary", "canary": canary_id,
                "model": rec.model if rec else None, "environment": rec.environment if rec else None,
                "version": rec.version if rec else None, "from_status": t.from_status, "status": t.to_status,
                "step": t.step + 1, "percent": t.percent, "action": t.action, "reason": t.reason,
                "allowed": True, "reasons": [], "outcome": f"canary {t.action}",
            })
            added += 1
        return len(transitions)

    kv_update(ctx, f"canary:audited:{canary_id}", change)
    return added


def canary_title(record: CanaryRecord) -> str:
    return (f"canary of `{record.model}` version {record.version} to `{record.environment}`: "
            f"{record.status.replace('_', ' ')}")


def canary_tools(ctx: HandlerContext, record: CanaryRecord) -> tuple[Forge, ModelRegistry, ForgeWriter]:
    """(forge, registry, writer) for a canary the bot started, from what its ``source`` recorded."""
    src = record.source
    forge = ctx.forges(src["forge"], src.get("installation_id"))  # type: ignore[misc]
    reg = ctx.registry_factory(src["tracking_uri"])  # type: ignore[misc]
    writer = ForgeWriter(lambda _repository: forge, mode=record.settings.mode)
    return forge, reg, writer


def canary_notify(ctx: HandlerContext, forge: Forge, source: dict[str, Any]) -> Callable[[Any, str], None]:
    """``notify`` for the runner: the report becomes the source PR's one mlgate comment."""

    def notify(record: Any, report: str) -> None:
        post_comment(ctx, forge, source["forge"], source["repo"], int(source["number"]),
                     promo.canary_comment(canary_title(record), report))

    return notify


def close_unmerged_steps(ctx: HandlerContext, forge: Forge, record: CanaryRecord, why: str,
                         audit_base: dict[str, Any]) -> list[str]:
    """Close the step PRs/MRs of a stopped canary that were never merged (merging one later would
    send traffic to the canary version while mlgate treats the canary as finished), each with a
    comment saying why (:func:`mlgate.bot.promotion.close_unmerged_steps`); audit each.
    Returns one Markdown line per step PR for the canary's report.

    Never raises: a step PR that cannot be closed is reported ("close it by hand") and logged.
    """
    lines: list[str] = []
    for step, outcome, line in promo.close_unmerged_steps(forge, record.source.get("gitops_repo"), record, why):
        lines.append(line)
        if outcome == "failed":
            log.error("step PR not closed", canary=record.id, pr=step.url, line=line)
        ctx.store.audit({
            **audit_base, "at": utcnow().isoformat(), "actor": "bot", "event": "step PR closed", "canary": record.id,
            "model": record.model, "version": record.version, "environment": record.environment,
            "step": step.index + 1, "percent": step.percent, "url": step.url, "allowed": outcome != "failed",
            "reasons": [line] if outcome == "failed" else [], "outcome": outcome,
        })
    return lines


# --------------------------------------------------------------------------- commands


def canaries_from_this_pr(job: Job, model: str) -> list[CanaryRecord]:
    """Running canaries of ``model`` that were started from this PR/MR."""
    ev = job.ev
    return [r for r in canary_store(job.ctx).list(active_only=True, model=model, limit=1000)
            if r.source.get("forge") == ev.forge and r.source.get("repo") == ev.repo
            and r.source.get("number") == ev.number]


def _source(job: Job, gitops_repo: str, tracking: str | None) -> dict[str, Any]:
    """What a canary records of where it came from (the periodic tick acts on it with this)."""
    ev = job.ev
    return {
        "forge": ev.forge, "repo": ev.repo, "number": ev.number, "url": job.pr().url, "comment": ev.url,
        "comment_id": ev.comment_id, "installation_id": ev.installation_id, "gitops_repo": gitops_repo,
        "tracking_uri": tracking, "actor": ev.actor, "delivery": job.delivery.id,
    }


def start_canary(job: Job, cmd: Command, cfg: Config, model: str, env: Environment, version: str | None,
                 decision: Decision, record: dict[str, Any]) -> str:
    """The policy allowed ``/promote`` to an environment with a canary: start it (step 1)."""
    cstore = canary_store(job.ctx)
    running = cstore.find_active(model, env.name)
    if running is not None and running.source.get("delivery") == job.delivery.id:
        # this delivery started it in an attempt that did not finish: report it, start nothing
        job.say(promo.canary_comment(canary_title(running), runner.report(cstore, running)))
        return f"{cmd.name}: canary {running.id} already started by this comment ({running.status})"
    gitops_repo = repo_path(env.gitops.repository)
    tracking = job.tracking_uri(cfg)
    reg = job.registry(cfg)
    source = _source(job, gitops_repo, tracking)
    # the runner keeps the GitOps repository as a URL (a bare owner/name would be taken for a local path)
    web_env = env.model_copy(update={"gitops": env.gitops.model_copy(
        update={"repository": job.forge.web_url(gitops_repo)})})
    run_cfg = cfg.model_copy(update={"environments": [web_env if e.name == env.name else e
                                                      for e in cfg.environments]})
    writer = ForgeWriter(lambda _repository: job.forge, mode=env.gitops.mode)
    base = job.audit_base()
    try:
        res = runner.start_canary(cstore, reg, writer, job.ctx.clock, config=run_cfg, environment=env.name,
                                  version=version or "", source=source, actor=job.ev.actor, check_policy=False,
                                  notify=None)
    except InfraError as e:
        return _stored_not_written(job, cmd, model, env, record, base, e)
    except MlgateError as e:
        _abort_unwritten(job, model, env, base, e)
        raise
    rec = res.canary
    audit_canary(job.ctx, rec.id, base)
    job.say(promo.canary_comment(canary_title(rec), res.report))
    cur = rec.current
    where = (cur.url or cur.commit) if cur is not None else None
    job.audit(**record, outcome=f"canary {res.action}", canary=rec.id, step_change=where)
    return f"{cmd.name}: canary {rec.id} {res.action} ({rec.status}, step {rec.step + 1} at {rec.percent} %: {where})"


def _stored_not_written(job: Job, cmd: Command, model: str, env: Environment, record: dict[str, Any],
                        base: dict[str, Any], e: InfraError) -> str:
    """The canary was stored but step 1 could not be written yet (the tick writes it): report it.
    Re-raises ``e`` when this delivery stored no canary."""
    cstore = canary_store(job.ctx)
    stored = cstore.find_active(model, env.name)
    if stored is None or stored.source.get("delivery") != job.delivery.id:
        raise e
    audit_canary(job.ctx, stored.id, base)
    msg = f"{e}"
    job.say(promo.canary_comment(canary_title(stored), msg + "\n\n" + runner.report(cstore, stored)))
    job.audit(**record, outcome="canary started, step 1 pending", canary=stored.id)
    return f"{cmd.name}: canary {stored.id} stored; step 1 not written yet ({msg.splitlines()[0]})"


def _abort_unwritten(job: Job, model: str, env: Environment, base: dict[str, Any], e: MlgateError) -> None:
    """Step 1 was refused (e.g. the forge refused the step's branch): nothing was written, so the
    canary this delivery stored is aborted now rather than left to the tick; audit it."""
    cstore = canary_store(job.ctx)
    latest = cstore.latest(model, env.name)
    if latest is not None and latest.source.get("delivery") == job.delivery.id:
        if latest.status == "started":
            why = f"could not write step 1, nothing was changed: {str(e).splitlines()[0]}"
            cstore.save(core.to_aborted(latest, now=job.now().timestamp(), reason=why), expected=latest,
                        actor=job.ev.actor, action="abort")
        audit_canary(job.ctx, latest.id, base)


def stop_canary(job: Job, kind: str, rec: CanaryRecord, env: Environment | None) -> tuple[str, str]:
    """``/rollback`` or ``/abort`` of a running canary; returns (outcome, comment text)."""
    ev = job.ev
    promoters = env.promoters if env is not None else Promoters()
    decision = job.permission_for(kind, promoters, f"promoters of {rec.environment}")
    record = dict(command=f"/{kind}", model=rec.model, version=rec.version, environment=rec.environment,
                  canary=rec.id, allowed=decision.allowed, reasons=decision.reasons)
    if not decision.allowed:
        job.audit(**record, outcome="refused")
        return f"{kind}: refused ({decision.reasons[0]})", promo.refusal(f"/{kind}", decision)
    forge, reg, writer = canary_tools(job.ctx, rec)
    fn = runner.rollback if kind == "rollback" else runner.abort
    where = ev.url or job.pr().url
    try:
        res = fn(canary_store(job.ctx), reg, writer, job.ctx.clock, rec.id, reason=f"/{kind} on {where}",
                 actor=ev.actor, notify=canary_notify(job.ctx, forge, rec.source))
    finally:
        audit_canary(job.ctx, rec.id, job.audit_base())
    job.audit(**record, outcome=f"canary {res.action}")
    why = {"rollback": "rolled back", "abort": "aborted"}[kind] + f" by @{ev.actor} with `/{kind}` on {where}"
    closed = close_unmerged_steps(job.ctx, forge, res.canary, why, job.audit_base())
    text = promo.canary_comment(canary_title(res.canary), res.report)
    if closed:
        text += "\n\n**Step pull requests that were not merged:**\n" + "\n".join(closed)
    return f"{kind}: canary {rec.id} {res.canary.status} ({res.message})", text


def on_continue(job: Job, cmd: Command) -> str:
    """``/continue``: a person decides on the paused canaries started from this PR (an
    inconclusive analysis, query errors past their limit, or a ``confirm: true`` step).

    Only a promoter of the canary's environment may (the environment's ``promoters``, as for
    ``/promote``); anyone else is refused with the reason. The next step is written at once
    (:func:`mlgate.flows.canary.continue_canary`), under the canary's lock.
    """
    cfg = job.config()
    if isinstance(cfg, str):
        return f"continue: {job.no_policy(cmd.text, cfg)}"
    paused = [r for r in canaries_from_this_pr(job, cfg.model) if r.status == "paused"]
    if not paused:
        running = canaries_from_this_pr(job, cfg.model)
        what = (f"the canary of this PR is {running[0].status.replace('_', ' ')}, not paused" if running
                else "no canary started from this PR is running")
        job.say(promo.reply(f"`{cmd.text}`", f"nothing to continue: {what}"))
        job.audit(command=cmd.text, model=cfg.model, allowed=True, reasons=[], outcome="nothing to continue")
        return "continue: nothing to continue"
    outcomes, texts = [], []
    for rec in paused:
        env = next((e for e in cfg.environments if e.name == rec.environment), None)
        with job.canary_lock(rec.model, rec.environment):
            out, text = _continue_one(job, cmd, rec, env)
        outcomes.append(out)
        texts.append(text)
    job.say("\n\n---\n\n".join(texts))
    return "; ".join(outcomes)


def _continue_one(job: Job, cmd: Command, rec: CanaryRecord, env: Environment | None) -> tuple[str, str]:
    ev = job.ev
    decision = job.permission_for("continue", env.promoters if env is not None else Promoters(),
                                  f"promoters of {rec.environment}")
    record = dict(command=cmd.text, model=rec.model, version=rec.version, environment=rec.environment,
                  canary=rec.id, allowed=decision.allowed, reasons=decision.reasons)
    if not decision.allowed:
        job.audit(**record, outcome="refused")
        return f"continue: refused ({decision.reasons[0]})", promo.refusal(cmd.text, decision)
    forge, reg, writer = canary_tools(job.ctx, rec)
    try:
        res = runner.continue_canary(canary_store(job.ctx), reg, writer, job.ctx.clock, rec.id, actor=ev.actor,
                                     notify=None)
    finally:
        audit_canary(job.ctx, rec.id, job.audit_base())
    job.audit(**record, outcome=f"canary {res.action}")
    return (f"continue: canary {rec.id} {res.action} ({res.canary.status}, step {res.canary.step + 1})",
            promo.canary_comment(canary_title(res.canary), res.report))


# --------------------------------------------------------------------------- a step's PR merged


def merge_commit(delivery: Delivery) -> str | None:
    """The merge commit of a merged PR/MR delivery (GitHub ``pull_request.merge_commit_sha``,
    GitLab ``object_attributes.merge_commit_sha``), when the payload has it."""
    p = delivery.payload if isinstance(delivery.payload, dict) else {}
    sha = (p.get("pull_request") or {}).get("merge_commit_sha") or (p.get("object_attributes") or {}).get("merge_commit_sha")
    return sha if isinstance(sha, str) and sha else None


def on_canary_merged(job: Job) -> str:
    """A canary step's (or rollback's) PR/MR was merged: the change is live.

    The canary is named by the PR's branch (:func:`mlgate.core.promotion.parse_canary_branch`) and
    must have recorded this PR's address (the forge's web URL, as the webhook or the API
    gives it). Read under the canary's lock (:meth:`~mlgate.bot.handlers.common.Job.canary_lock`),
    so a step the periodic tick is writing right now is seen complete.
    """
    ev = job.ev
    cstore = canary_store(job.ctx)
    parsed = parse_canary_branch(ev.head_ref)
    cid = parsed[2] if parsed else None
    named = cstore.get(cid) if cid is not None else (cstore.find_by_url(ev.url) if ev.url else None)
    if named is None:
        return f"merged canary PR #{ev.number}: no canary wrote it (not opened by mlgate)"
    if not named.active:  # finished: it changes no more; a step merged now must not advance anything
        return _canary_merged(job, named)
    with job.canary_lock(named.model, named.environment):
        return _canary_merged(job, named)


def _merged_urls(job: Job, rec: CanaryRecord) -> set[str]:
    """The addresses this PR is known by (the webhook's, and the API's when the webhook's is not
    one the canary recorded)."""
    urls = {u for u in (job.ev.url,) if u}
    if promo.canary_merge_verdict(rec, urls)[0] == "unknown":
        urls.add(job.pr().url)
    return urls


def _canary_merged(job: Job, named: CanaryRecord) -> str:
    ev = job.ev
    cstore = canary_store(job.ctx)
    try:
        rec = cstore.get(named.id) or named
        verdict, change = promo.canary_merge_verdict(rec, _merged_urls(job, rec))
        if verdict == "unknown":
            return f"merged canary PR #{ev.number}: not a change canary {named.id} wrote"
        if verdict == "done":
            return f"merged canary PR #{ev.number}: already live for canary {rec.id} ({rec.status})"
        if not job.store.claim_effect(f"{ev.forge}:{ev.repo}:merged:{ev.number}", job.delivery.id):
            return f"merge of #{ev.number} already handled"
        if verdict == "stale":
            return _stale_merge(job, rec, change)
        forge, reg, writer = canary_tools(job.ctx, rec)
        res = runner.on_step_live(cstore, reg, writer, job.ctx.clock, rec.id, commit=merge_commit(job.delivery),
                                  actor=ev.actor or "bot", notify=canary_notify(job.ctx, forge, rec.source))
    except Refused as e:
        return f"merged canary PR #{ev.number}: {e}"
    finally:
        audit_canary(job.ctx, named.id, job.audit_base())
    return f"merged canary PR #{ev.number}: canary {rec.id} {res.action} ({res.canary.status})"


def _stale_merge(job: Job, rec: CanaryRecord, change: Any) -> str:
    """A step merged after its canary stopped waiting for it: reply and audit, change nothing."""
    ev = job.ev
    why = (f"step {change.index + 1} ({change.percent} %) merged after canary {rec.id} stopped waiting "
           f"for it (canary {rec.status})")
    job.audit(event="merged", canary=rec.id, model=rec.model, version=rec.version,
              environment=rec.environment, step=change.index + 1, percent=change.percent,
              allowed=False, reasons=[why], outcome="ignored: canary no longer waits for this step")
    job.say(promo.stale_merge_reply(rec, change))
    log.warning("stale canary step merged", canary=rec.id, status=rec.status, pr=ev.url or ev.number)
    return f"merged canary PR #{ev.number}: ignored ({why})"
