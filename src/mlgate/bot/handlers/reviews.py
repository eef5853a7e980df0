"""Reviews, approvals and PR updates keep the head commit's ``mlgate/gates`` status in step with the policy.

GitLab approvals are remembered with the commit they were given on (the approval event names it;
the approvals API does not), for the policy's "approved the head commit" check. Promotion and
canary PRs are not checked (they change manifests, not the model).
"""

from __future__ import annotations

from mlgate.core.promotion import is_canary_branch, parse_branch
from mlgate.core.policy import decide
from mlgate.bot import promotion as promo
from mlgate.bot.handlers.common import Job
from mlgate.bot.handlers.snapshot import snapshot


def refresh_status(job: Job) -> str:
    """``review`` or ``pull_request`` (not merged): set ``mlgate/gates`` of the head commit for the
    first environment."""
    ev = job.ev
    if ev.forge == "gitlab" and ev.kind == "review" and ev.actor:
        key = f"gitlab:approval:{ev.repo}:{ev.number}:{ev.actor}"
        job.store.kv_set(key, (ev.head_sha or "") if ev.review_state == "approved" else "")
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
