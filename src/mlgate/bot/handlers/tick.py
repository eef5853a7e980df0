"""The canary tick: a worker-pool thread, every ``canary_tick_seconds``, moves the bot's canaries on.

One bot replica at a time runs it (a lock in the store); each canary is acted on under its
canary lock, so a delivery acting on the same canary (``/rollback``, a step merged) waits for it.
Both locks are leases of ``lease_seconds``, renewed while the pass works and fenced
(:mod:`mlgate.edge.db.fencing`): after a replica dies mid-pass, the next pass (of a restarted
process or another replica) takes them over within one lease and writes what was decided but
not written (a rollback PR of a canary left ``rolling_back``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

import structlog

from mlgate.core.canary import CanaryRecord
from mlgate.core.errors import ManifestError
from mlgate.bot.handlers.canary import audit_canary, canary_notify, canary_tools, close_unmerged_steps
from mlgate.bot.handlers.common import HandlerContext, canary_lock_name, canary_store, with_periodic_lock
from mlgate.bot.ports import Forge
from mlgate.edge.db import fencing
from mlgate.edge.forges.base import pr_number_from_url
from mlgate.edge.metrics import CANARY_HELD
from mlgate.flows import canary as runner

log = structlog.get_logger("mlgate.bot.handlers")

#: A step PR not reported merged by a webhook within this many seconds is looked for on the
#: GitOps branch by the periodic tick (a lost webhook delays a canary, it does not stall it).
MERGE_FALLBACK_SECONDS = 120.0


def merge_reader(forge: Forge, repo: str, record: CanaryRecord, now: float) -> Callable[[str, str, str], str] | None:
    """A reader of the GitOps branch, for a step (or rollback) PR whose merge webhook has not come
    within :data:`MERGE_FALLBACK_SECONDS`; None while the webhook may still come."""
    pending = record.rollback if record.status == "rolling_back" else record.current
    if pending is None or pending.live_at is not None or pending.written_at is None:
        return None
    if now - pending.written_at < MERGE_FALLBACK_SECONDS:
        return None

    def read(_repository: str, branch: str, path: str) -> str:
        text = forge.read_file(repo, path, branch)
        if text is None:
            raise ManifestError(f"{path}: no such file in {repo} (branch {branch})")
        return text

    return read


def pr_state(forge: Forge, repo: str) -> Callable[[str], str]:
    """The state of a step PR/MR of ``repo`` by its address (``open``, ``closed`` or ``merged``),
    asked of the forge: a step PR closed without merging stops its canary at the last safe state."""

    def state(url: str) -> str:
        number = pr_number_from_url(url)
        return forge.pull_request(repo, number).state if number is not None else "open"

    return state


def held_seconds(rec: CanaryRecord, now: float) -> float:
    """How long Prometheus errors have held ``rec`` (0 when they do not): ``mlgate_canary_held_seconds``."""
    return max(0.0, now - rec.held_since) if rec.held_since is not None and rec.active else 0.0


def _after_tick(ctx: HandlerContext, forge: Forge, rec: CanaryRecord, changed: bool, base: dict) -> None:
    """Export the held time; close the step PRs a rollback decided by this pass left open (a step
    PR past twice merge_timeout), each with a comment saying why."""
    now = ctx.clock().timestamp()
    CANARY_HELD.labels(model=rec.model, environment=rec.environment).set(held_seconds(rec, now))
    if changed and rec.status in ("rolling_back", "rolled_back", "aborted"):
        close_unmerged_steps(ctx, forge, rec, f"stopped by mlgate: {rec.reason}", base)


def _tick_one(ctx: HandlerContext, rec: CanaryRecord, done: list[str]) -> None:
    """One canary's pass, under its lock; what changed is appended to ``done``. Never raises."""
    cstore = canary_store(ctx)
    src = rec.source
    base = {"forge": src["forge"], "repo": src.get("repo"), "pr": src.get("number"), "delivery": None}
    lock, owner = canary_lock_name(rec.model, rec.environment), f"tick:{uuid.uuid4().hex}"
    # renewed while this pass works on it; a tick killed here blocks the canary for one lease at most
    if not ctx.store.acquire_lock(lock, owner, ctx.lock_ttl, ctx.clock(), keep=True):
        return  # a delivery is acting on this canary; the next pass looks again
    lost = False
    try:
        with fencing.fenced(fencing.LockFence(ctx.store.engine, lock, owner)):
            forge, reg, writer = canary_tools(ctx, rec)
            reader = merge_reader(forge, src["gitops_repo"], rec, ctx.clock().timestamp())
            results = runner.tick(cstore, reg, writer, ctx.clock, canary_id=rec.id, reader=reader, actor="bot",
                                  notify=canary_notify(ctx, forge, src), pr_state=pr_state(forge, src["gitops_repo"]))
            for r in results:
                _after_tick(ctx, forge, r.canary, r.canary.revision != rec.revision, base)
    except fencing.LeaseLost:
        lost = True
        raise  # this replica stalled past its lock: do nothing more (the new holder goes on)
    except Exception as e:  # one canary's trouble never stops the others
        log.error("canary tick failed", canary=rec.id, error=f"{type(e).__name__}: {e}")
        done.append(f"canary {rec.id}: {type(e).__name__}")
        return
    finally:
        ctx.store.release_lock(lock, owner)
        try:
            after = None if lost else cstore.get(rec.id)  # lost: the new holder audits what changed
            if after is not None and after.revision != rec.revision:
                audit_canary(ctx, rec.id, base)
        except Exception as e:
            log.error("canary audit failed", canary=rec.id, error=f"{type(e).__name__}: {e}")
    for r in results:
        if r.action not in ("nothing_due", "awaiting_merge"):
            done.append(f"canary {r.canary.id} {r.action}: {r.message}")


def tick_canaries(ctx: HandlerContext) -> str:
    """One pass over the running canaries the bot started (:func:`mlgate.flows.canary.tick` each):
    write pending steps, measure what is due, advance, roll back, promote; post each report on
    its source PR; audit every transition. Canaries started by the CLI are left to the CLI.

    Returns a short text of what changed ("" when nothing did). Never raises for one canary's
    trouble (it is logged, reported by the runner, and tried again at the next pass).
    """

    def run() -> str:
        done: list[str] = []
        for rec in canary_store(ctx).list(active_only=True, limit=1000):
            src = rec.source
            if not src.get("forge") or not src.get("gitops_repo") or not src.get("tracking_uri"):
                continue
            _tick_one(ctx, rec, done)
        return "; ".join(done)

    return with_periodic_lock(ctx, "periodic:canary-tick", run)
