"""The policy snapshot: every fact :func:`mlgate.core.policy.decide` looks at, gathered for one PR/MR.

Read from the forge (the commenter's permission and teams, reviews or GitLab approvals, the
PR's committers, reviewers' permissions and teams, and, with ``approvals.keep_on_base_merge``,
comparisons of each approved older commit with the head and the base branch) and the registry
(the version the PR head trained, the versions each environment's alias holds, the candidate),
and from the bot's own store (the commits approvals were given on, when the bot last saw a push,
the versions the audit history shows an environment served).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from mlgate.core.config import Config, Environment
from mlgate.core.errors import UsageError
from mlgate.core.freshness import BaseMerge, github_approved_commit
from mlgate.core.policy import Review, VersionFacts, latest_states, permission_rank
from mlgate.bot import promotion as promo
from mlgate.bot.handlers.common import Job
from mlgate.bot.ports import ModelRegistry
from mlgate.edge.forges.base import CommittersUnresolved, ForgeError
from mlgate.edge.registry import VersionInfo
from mlgate.core.promotion import gates_fingerprint


def _vfacts(info: VersionInfo | None) -> VersionFacts | None:
    if info is None:
        return None
    return VersionFacts(model=info.model, version=str(info.version), tags=dict(info.tags or {}),
                        status=str(info.status or "READY"), run_id=info.run_id)


@dataclass(frozen=True)
class _Reviews:
    """Who reviewed or approved, and what the forge says of it."""

    reviews: tuple[Review, ...] = ()
    approved_by: tuple[str, ...] | None = None
    approval_commits: dict[str, str] | None = None
    flagged_bots: frozenset[str] = frozenset()
    users: frozenset[str] = frozenset()
    review_commits: dict[int, str] | None = None
    synchronized_at: str | None = None

    def approved_commits(self) -> set[str]:
        """The commits the approvals seen were given on (as far as they are known)."""
        if self.approved_by is not None:
            return set((self.approval_commits or {}).values())
        out = set()
        for r in latest_states(self.reviews).values():
            if r.state.upper() == "APPROVED":
                out.add(github_approved_commit(r.id, r.commit_id, r.submitted_at, self.review_commits or {},
                                               self.synchronized_at)[0])
        return {c for c in out if c}


@dataclass(frozen=True)
class _Versions:
    """What the registry holds: the head's version, the aliases of the environments checked,
    the version to promote and its registry record."""

    head: VersionInfo | None
    aliases: dict[str, str]
    version: str | None
    candidate: VersionInfo | None


def _actor_access(job: Job, env: Environment, actor: str | None, command: str) -> tuple[str, frozenset[str]]:
    """The commenter's permission on the repository and the promoter teams they are in."""
    f, ev = job.forge, job.ev
    perm, teams = "none", frozenset[str]()
    if actor and command != "status":
        perm = f.permission(ev.repo, actor, ev.actor_id if actor == ev.actor else None)
        p = env.promoters
        if actor not in p.users and permission_rank(perm) < permission_rank(p.min_permission) and p.teams:
            teams = frozenset(t for t in p.teams if f.in_team(t, actor, ev.actor_id))
    return perm, teams


def _reviews(job: Job) -> _Reviews:
    """GitHub reviews, or GitLab approvals with the commit each approval was given on (kept by the bot)."""
    f, ev = job.forge, job.ev
    if ev.forge != "gitlab":
        reviews = tuple(f.reviews(ev.repo, ev.number))  # type: ignore[arg-type]
        latest = latest_states(reviews)
        recorded: dict[int, str] = {}
        for r in latest.values():
            approved = r.state.upper() == "APPROVED"
            seen = job.store.kv_get(f"github:approval:{ev.repo}:{ev.number}:{r.id}") if approved else None
            if seen:
                recorded[r.id] = seen
        raw = job.store.kv_get(f"github:synchronized:{ev.repo}:{ev.number}")
        synced = json.loads(raw) if raw else None
        return _Reviews(reviews=reviews, users=frozenset(latest), review_commits=recorded,
                        synchronized_at=synced if isinstance(synced, str) else None)
    appr = f.approvals(ev.repo, ev.number)  # type: ignore[arg-type]
    approved_by = appr.approved_by if appr else ()
    commits: dict[str, str] = {}
    for u in set(approved_by):
        seen = job.store.kv_get(f"gitlab:approval:{ev.repo}:{ev.number}:{u}")
        if seen:
            commits[u] = seen
    return _Reviews(approved_by=approved_by, approval_commits=commits,
                    flagged_bots=frozenset(getattr(appr, "bots", ()) or ()), users=frozenset(approved_by))


#: Approved older commits compared with the head per snapshot (two compare calls each), at most.
MAX_COMPARED = 5


def _base_merges(job: Job, env: Environment, rv: _Reviews, head: str | None, base_ref: str) -> dict[str, BaseMerge]:
    """With ``approvals.keep_on_base_merge``: for each approved commit other than the head, the forge's
    comparisons approved...head and approved...base branch. A commit the forge cannot compare (gone
    after a force push) is left out: its approvals are stale."""
    if not env.approvals.keep_on_base_merge or not head:
        return {}
    out: dict[str, BaseMerge] = {}
    for commit in sorted(rv.approved_commits() - {head})[:MAX_COMPARED]:
        try:
            out[commit] = BaseMerge(to_head=job.forge.compare(job.ev.repo, commit, head),
                                    to_base=job.forge.compare(job.ev.repo, commit, base_ref))
        except ForgeError:
            continue
    return out


def _committers(job: Job, env: Environment) -> tuple[frozenset[str], bool]:
    """The PR's committers (when the policy does not count them as approvers) and whether all resolved."""
    if env.approvals.committers_count:
        return frozenset(), True
    try:
        return frozenset(job.forge.committers(job.ev.repo, job.ev.number)), True  # type: ignore[arg-type]
    except CommittersUnresolved as e:
        return frozenset(e.found), False


def _reviewer_access(job: Job, env: Environment, users: frozenset[str],
                     author: str) -> tuple[dict[str, str], dict[str, frozenset[str]]]:
    """Each reviewer's permission (no reviewers or teams named) or approver teams (teams named)."""
    f, a = job.forge, env.approvals
    user_permissions: dict[str, str] = {}
    user_teams: dict[str, frozenset[str]] = {}
    for u in sorted(users):
        if u == author or u.endswith("[bot]"):
            continue
        if not a.reviewers and not a.teams:
            user_permissions[u] = f.permission(job.ev.repo, u)
        elif a.teams and u not in a.reviewers:
            user_teams[u] = frozenset(t for t in a.teams if f.in_team(t, u))
    return user_permissions, user_teams


def _versions(reg: ModelRegistry, cfg: Config, env: Environment, model: str, command: str,
              version_hint: str | None, head_sha: str | None) -> _Versions:
    """The registry's side: ``/rollback`` goes to the version the environment held before."""
    head = reg.find_by_commit(model, head_sha) if head_sha else None
    aliases: dict[str, str] = {}
    for e in cfg.environments:
        if e.name in (env.name, env.requires):
            held = reg.get_by_alias(model, e.registry_alias)
            if held is not None:
                aliases[e.name] = held.version
    version = version_hint
    if command == "rollback":
        current = aliases.get(env.name)
        version = None
        if current:
            cur = reg.get_version(model, current)
            version = cur.tags.get(f"mlgate.previous.{env.name}") or None
    elif version is None and head is not None:
        version = head.version
    cand = None
    if version is not None:
        if head is not None and head.version == version:
            cand = head
        else:
            try:
                cand = reg.get_version(model, version)
            except UsageError:
                cand = None
    return _Versions(head=head, aliases=aliases, version=version, candidate=cand)


def served_versions(job: Job, model: str, environment: str) -> frozenset[str]:
    """Versions the bot's audit history shows held ``environment``'s alias (the moved-to
    version of each "alias moved" record, and the version it replaced)."""
    out: set[str] = set()
    for rec in job.store.audit_records():
        if rec.get("event") == "alias moved" and rec.get("model") == model and rec.get("environment") == environment:
            out.update(str(v) for v in (rec.get("version"), rec.get("previous")) if v)
    return frozenset(out)


def snapshot(job: Job, cfg: Config, env: Environment, model: str, command: str, actor: str | None,
             version_hint: str | None) -> tuple[promo.Snapshot, str | None, VersionInfo | None]:
    """Gather everything the policy looks at; returns (snapshot, version to promote, its registry record)."""
    pr = job.pr()
    perm, teams = _actor_access(job, promo.environment_for_command(cfg, env, command), actor, command)
    rv = _reviews(job)
    committers, committers_resolved = _committers(job, env)
    user_permissions, user_teams = _reviewer_access(job, env, rv.users, pr.author)
    v = _versions(job.registry(cfg), cfg, env, model, command, version_hint, pr.head_sha)
    bot = getattr(job.ctx.settings, "bot_login", None)
    snap = promo.Snapshot(
        config=cfg, head_sha=pr.head_sha, pr_author=pr.author, actor_permission=perm, actor_teams=teams,
        reviews=rv.reviews, gitlab_approved_by=rv.approved_by, gitlab_approval_commits=rv.approval_commits or {},
        committers=committers, user_permissions=user_permissions, user_teams=user_teams,
        head_candidate=_vfacts(v.head), candidate=_vfacts(v.candidate), aliases=v.aliases,
        bots=frozenset({b for b in [bot] if b} | rv.flagged_bots),
        pr_state=getattr(pr, "state", None), committers_resolved=committers_resolved,
        gates_fingerprint=gates_fingerprint(cfg),
        served_versions={env.name: served_versions(job, model, env.name)} if command == "rollback" else {},
        review_commits=rv.review_commits or {}, synchronized_at=rv.synchronized_at,
        base_merges=_base_merges(job, env, rv, pr.head_sha, pr.base_ref),
    )
    return snap, v.version, v.candidate
