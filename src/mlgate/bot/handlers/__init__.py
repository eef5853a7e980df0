"""The worker's delivery handler: normalise → route → gather facts → decide → promote → reply → audit.

The worker imports ``mlgate.bot.handlers:handle`` (settings ``handler``) with this package's
:func:`make_context` and :func:`periodic_tasks`. :func:`handle` routes each event through the
table of :mod:`mlgate.bot.dispatch` to one module per feature:

- :mod:`.promote`: ``/promote``, ``/rollback``, ``/status`` (the policy from :mod:`.snapshot`);
- :mod:`.merged`: a promotion PR merged, the environment's alias follows;
- :mod:`.canary`: canaries started, stopped, and made live from the PR; :mod:`.tick` moves them on;
- :mod:`.train`: ``/train``, ``/abort`` and the poll of running workflows;
- :mod:`.reviews`: reviews and PR updates refresh the ``mlgate/gates`` status;
- :mod:`.retrain`: Alertmanager alerts start retrains; :mod:`.retrain_follow` gates and promotes them;
- :mod:`.registry`: MLflow registry webhooks (registry-driven promotion, protected aliases)
  and the periodic check of the registry against git;
- :mod:`.common`: the context, the per-delivery :class:`~.common.Job`, store helpers.

Edge: talks to the forge (through :mod:`mlgate.edge.forges`), the registry
(:class:`mlgate.edge.registry.Registry`) and the store, typed by the Protocols of
:mod:`mlgate.bot.ports`. Decisions are made by the pure :func:`mlgate.core.policy.decide` over
facts gathered here.

Safety properties (issue 3):

- The policy is read from ``.mlgate.yml`` on the repository's **default branch** (named by
  the signed payload), never from the PR head: a PR cannot lower its own gates.
- Each command acts once: its effect key is the comment id (``<forge>:<repo>:comment:<id>:<n>:<name>``),
  claimed in the store, so the same comment through two hooks (organisation and
  repository, two delivery ids) or a redelivery acts once; a retry of the same delivery
  continues its own claim.
- One promotion per (model, environment) at a time: a lock in the store; a second
  ``/promote`` for that target while one runs gets a reply saying so.
- One mlgate comment per PR/MR, found by a hidden marker (its id is kept in the store) and
  updated in place; the ``mlgate/gates`` commit status follows reviews and pushes.
- Every decision, allowed or refused, is appended to the audit table.

Canaries (issue 5) and training (issue 6): see :mod:`.canary`, :mod:`.tick` and :mod:`.train`.

Errors: forge rate limits/outages and an unreachable registry raise :class:`Retryable`
(the worker retries the delivery later); a refusal, a bad config or a manifest that cannot
be edited is answered in the PR and ends the delivery.
"""

from __future__ import annotations

from collections.abc import Callable

from mlgate.bot.handlers.canary import audit_canary, close_unmerged_steps
from mlgate.bot.handlers.common import (
    CANARY_LOCK_WAIT,
    CONFIG_FILE,
    LOCK_TTL,
    PERIODIC_LOCK_TTL,
    HandlerContext,
    Job,
    MalformedPayload,
    Retryable,
    canary_lock_name,
    canary_store,
    make_context,
    post_comment,
    set_commit_status,
    with_periodic_lock,
)
from mlgate.bot.handlers.registry import check_registry
from mlgate.bot.handlers.retrain_follow import poll_retrains
from mlgate.bot.handlers.tick import MERGE_FALLBACK_SECONDS, tick_canaries
from mlgate.bot.handlers.train import TRAIN_CONTEXT, TRAIN_INDEX, poll_trains
from mlgate.bot.ports import Settings

# Last: mlgate.bot.dispatch imports the feature modules above (importing it first works too).
from mlgate.bot import dispatch as _dispatch
from mlgate.edge.db.store import Delivery

__all__ = [
    "CANARY_LOCK_WAIT", "CONFIG_FILE", "LOCK_TTL", "MERGE_FALLBACK_SECONDS", "PERIODIC_LOCK_TTL", "TRAIN_CONTEXT",
    "TRAIN_INDEX", "HandlerContext", "Job", "MalformedPayload", "Retryable", "audit_canary", "canary_lock_name",
    "canary_store", "check_registry", "close_unmerged_steps", "handle", "make_context", "periodic_tasks", "poll_trains",
    "post_comment", "prune_finished", "set_commit_status", "tick_canaries",
]


def handle(delivery: Delivery, ctx: HandlerContext) -> str:
    """Process one stored delivery through the route table (:func:`mlgate.bot.dispatch.handle`);
    returns the outcome text shown by ``mlgate bot deliveries``.

    Raises:
        Retryable: the forge or the registry is temporarily unavailable.
        MalformedPayload: the payload is not one the event can have (failed at once, never retried).
        MlgateError: a problem retrying will not fix (the worker marks the delivery failed).
    """
    return _dispatch.handle(delivery, ctx)


def periodic_tasks(settings: Settings) -> list[tuple[str, float, Callable[[HandlerContext], str]]]:
    """The worker pool's background tasks: (name, interval in seconds, fn(ctx)); 0 disables one."""
    keep = float(getattr(settings, "retention_days", 30.0) or 0)
    return [
        ("canary tick", float(getattr(settings, "canary_tick_seconds", 15.0) or 0), tick_canaries),
        ("train status", float(getattr(settings, "train_poll_seconds", 15.0) or 0), poll_trains),
        ("retrain follow-up", float(getattr(settings, "retrain_poll_seconds", 15.0) or 0), poll_retrains),
        ("retention", float(getattr(settings, "retention_interval_seconds", 3600.0) or 0) if keep > 0 else 0.0,
         prune_finished),
        ("registry check", float(getattr(settings, "reconcile_interval_seconds", 300.0) or 0)
         if getattr(settings, "tracking_uri", None) else 0.0, check_registry),
    ]


def prune_finished(ctx: HandlerContext) -> str:
    """One retention pass (:func:`mlgate.edge.db.retention.prune` with ``retention_days``), by one
    bot replica at a time (lock ``periodic:retention``); returns what was deleted ("" for nothing)."""
    from mlgate.edge.db.retention import prune

    keep = float(getattr(ctx.settings, "retention_days", 30.0) or 0)
    if keep <= 0:
        return ""

    def run() -> str:
        report = prune(ctx.store.engine, ctx.clock().timestamp(), keep)
        return report.summary() if report.total else ""

    return with_periodic_lock(ctx, "periodic:retention", run)
