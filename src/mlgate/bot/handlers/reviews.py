"""Reviews, approvals and PR updates keep the head commit's ``mlgate/gates`` status in step with the policy.

Approvals are remembered with the commit they were given on, for the policy's "approved the head
commit" check (:mod:`mlgate.core.freshness`, issue 10):

- GitLab: ``gitlab:approval:<repo>:<iid>:<username>`` → the head when the approval event arrived
  (the approvals API does not say which commit was approved).
- GitHub: ``github:approval:<repo>:<number>:<review id>`` → ``review.commit_id`` of the
  ``pull_request_review`` ``submitted`` delivery (cleared when it is dismissed or is no approval):
  GitHub later moves a review's ``commit_id`` forward across a merge of the base branch, so the
  reviews API alone cannot tell what was approved. ``github:synchronized:<repo>:<number>`` holds the
  latest ``pull_request.updated_at`` (GitHub's clock) of a ``synchronize`` delivery: an unrecorded
  review submitted before it may have been moved by that push.

Promotion and canary PRs are not checked (they change manifests, not the model).
"""

from __future__ import annotations

from mlgate.core.promotion import is_canary_branch, parse_branch
from mlgate.core.policy import decide
from mlgate.bot import promotion as promo
from mlgate.bot.handlers.common import Job, kv_update
from mlgate.bot.handlers.snapshot import snapshot


def _github_review_id(job: Job) -> int | None:
    """``review.id`` of a ``pull_request_review`` delivery (webhook payload, @octokit/webhooks
    ``pull_request_review``); None when absent or not an integer."""
    review = job.delivery.payload.get("review") if isinstance(job.delivery.payload, dict) else None
    rid = review.get("id") if isinstance(review, dict) else None
    return rid if isinstance(rid, int) and not isinstance(rid, bool) else None


def _pr_updated_at(job: Job) -> str:
    """``pull_request.updated_at`` of a ``pull_request`` delivery (GitHub's time of the push), else the
    time the bot received it."""
    pr = job.delivery.payload.get("pull_request") if isinstance(job.delivery.payload, dict) else None
    stamp = pr.get("updated_at") if isinstance(pr, dict) else None
    return stamp if isinstance(stamp, str) and stamp else job.delivery.received_at.strftime("%Y-%m-%dT%H:%M:%SZ")


def record_approval_facts(job: Job) -> None:
    """Remember what a review approved, and which heads arrived by a push (see the module docstring)."""
    ev, kv = job.ev, job.store.kv_set
    if ev.forge == "gitlab" and ev.kind == "review" and ev.actor:
        approved = ev.review_state == "approved"
        kv(f"gitlab:approval:{ev.repo}:{ev.number}:{ev.actor}", (ev.head_sha or "") if approved else "")
    elif ev.forge == "github" and ev.kind == "review":
        rid = _github_review_id(job)
        if rid is not None:
            approved = ev.action == "submitted" and ev.review_state == "approved"
            commit = ev.review_commit or ev.head_sha or ""
            kv(f"github:approval:{ev.repo}:{ev.number}:{rid}", commit if approved else "")
    elif ev.forge == "github" and ev.kind == "pull_request" and ev.action == "synchronize":
        stamp = _pr_updated_at(job)
        kv_update(job.ctx, f"github:synchronized:{ev.repo}:{ev.number}",
                  lambda old: max(old, stamp) if isinstance(old, str) else stamp)


def refresh_status(job: Job) -> str:
    """``review`` or ``pull_request`` (not merged): record the approval facts, then set ``mlgate/gates``
    of the head commit for the first environment."""
    ev = job.ev
    record_approval_facts(job)
    if parse_branch(ev.head_ref) or is_canary_branch(ev.head_ref):
        return f"{ev.kind} {ev.action} on a promotion PR: nothing to check"
    cfg = job.config()
    if isinstance(cfg, str):
        return f"{ev.kind} {ev.action}: {cfg.splitlines()[0]}"
    if not cfg.environments:
        return f"{ev.kind} {ev.action}: no environments configured"
    env = cfg.environments[0]
    snap, version, _cand = snapshot(job, cfg, env, cfg.model, "status", None, None)
    decision = decide(promo.facts_for(ev.forge, "status", ev.actor, cfg.model, env, version, snap))
    job.set_gates_status(decision, snap.head_sha)
    return f"{ev.kind} {ev.action}: mlgate/gates {'success' if decision.allowed else 'pending'} ({decision.summary()})"


def on_push(job: Job) -> str:
    """``push``: nothing to do here."""
    return "push: nothing to do (pull request updates arrive as pull_request / merge request events)"
