"""Approval gates: facts about a PR and a model version in, a :class:`Decision` out.

Pure core: no network, no clock. The bot gathers :class:`Facts` through the forge and
the registry (policy from ``.mlgate.yml`` on the repository's *default branch*, never the
PR head), calls :func:`decide`, and acts on the answer. Every "no" carries reasons a
person can act on; the same checks render the gates table of a promotion PR and the
``mlgate/gates`` commit status.

Rules (issue 3, "Approval gates" and "Cases from real-world reports"):

- Who may ``/promote``: the environment's ``promoters`` (GitHub repository permission at
  least ``min_permission`` — read < triage < write < maintain < admin; GitLab access levels
  mapped by :func:`gitlab_permission`; or a named user; or a member of a named team/group).
- Approvals (GitHub reviews): each reviewer's *latest* state across all pages of reviews,
  in submission order. ``COMMENTED`` and ``PENDING`` change nothing; ``APPROVED`` and
  ``CHANGES_REQUESTED`` replace the previous state; ``DISMISSED`` clears it (dismissing a
  changes-request does not bring back an older approval by the same reviewer).
- An approval counts only when the commit approved is the PR's head commit (any new head commit,
  merges of the base branch included, makes it stale, unless ``approvals.keep_on_base_merge`` and
  the head only merges the base: :mod:`mlgate.core.freshness`, issue 10), by
  an eligible reviewer (``approvals.reviewers``/``teams``; when both are empty, anyone with
  write permission or more), never by a bot, never by the PR author unless
  ``author_counts``, and not by someone who pushed commits to the PR unless
  ``committers_count`` (default: no — a committer reviewing their own code is not an
  independent review). Comments such as "LGTM" are never approvals.
- A ``CHANGES_REQUESTED`` latest state from an eligible reviewer blocks, on any commit,
  until it is dismissed or superseded by an approval.
- GitLab: approvals are ``approved_by`` of the merge request approvals API minus the author,
  bots and (by default) committers; ``approvals_left: 0`` with an empty ``approved_by`` is
  not an approval. An approval recorded on an older head commit is stale (the same
  :func:`mlgate.core.freshness.staleness` rule).
- An approval is bound to what is promoted: the PR's reviews cover the version registered
  for its head commit (tag ``mlgate.git_commit``) and the environment whose policy was
  checked; ``/promote A@9`` on a PR whose head commit registered version 7 is refused.
- The version must have passed its metric gates (tag ``mlgate.gates=passed``) and, when the
  environment ``requires`` another one, that environment's alias must hold the version.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Literal, Mapping

from mlgate.core.config import Environment, Promoters
from mlgate.core.events import is_bot
from mlgate.core.freshness import BaseMerge, github_approved_commit, staleness
from mlgate.core.promotion import FINGERPRINT_TAG, GATES_TAG, eligibility  # noqa: F401  (tags re-exported)

#: GitHub repository permission levels, weakest first (REST "Get repository permissions
#: for a user": ``role_name``).
PERMISSIONS = ("none", "read", "triage", "write", "maintain", "admin")

COMMIT_TAG = "mlgate.git_commit"


def served_tags(environment: str) -> tuple[str, ...]:
    """Registry tags that show a version served ``environment``: ``mlgate.promoted.<env>.at``
    (``mlgate promote``/canary) and ``mlgate.env.<env>`` (the bot's alias move)."""
    return (f"mlgate.promoted.{environment}.at", f"mlgate.env.{environment}")


def permission_rank(level: str | None) -> int:
    """Index of a permission in :data:`PERMISSIONS`; unknown or None counts as "none" (0)."""
    try:
        return PERMISSIONS.index((level or "none").lower())
    except ValueError:
        # GitHub's legacy ``permission`` field says "pull"/"push" in some answers
        return {"pull": 1, "push": 3}.get((level or "").lower(), 0)


def gitlab_permission(access_level: int | None) -> str:
    """GitLab access level (members API: 10 Guest, 20 Reporter, 30 Developer, 40 Maintainer,
    50 Owner, 60 Admin) → the GitHub-style level used in ``.mlgate.yml``:
    Developer=write, Maintainer=maintain, Owner/Admin=admin, Reporter=triage, Guest=read."""
    if access_level is None:
        return "none"
    if access_level >= 50:
        return "admin"
    if access_level >= 40:
        return "maintain"
    if access_level >= 30:
        return "write"
    if access_level >= 20:
        return "triage"
    if access_level >= 10:
        return "read"
    return "none"


@dataclass(frozen=True)
class Review:
    """One pull request review as GitHub's REST API lists it (``GET /pulls/{n}/reviews``).

    ``state``: APPROVED, CHANGES_REQUESTED, COMMENTED, DISMISSED or PENDING (any case:
    webhooks send lower case). ``commit_id``: the commit the review was given on.
    ``submitted_at``: ISO 8601 text; reviews are ordered by it, then by ``id``.
    """

    user: str
    state: str
    commit_id: str | None = None
    submitted_at: str | None = None
    id: int = 0
    user_type: str | None = None


@dataclass(frozen=True)
class VersionFacts:
    """What the registry says about the version being promoted."""

    model: str
    version: str
    tags: Mapping[str, str] = field(default_factory=dict)
    status: str = "READY"
    run_id: str | None = None


@dataclass(frozen=True)
class Facts:
    """Everything :func:`decide` looks at. Build it from forge and registry answers.

    Attributes:
        forge: "github" or "gitlab".
        command: "promote", "rollback", "status" (status: the actor is not checked) or "train".
        environment: the environment's policy, from ``.mlgate.yml`` on the default branch.
        configured_model: ``model`` of that ``.mlgate.yml``.
        model / version: what would be promoted (version None: none could be determined).
        actor: who ran the command; actor_permission: their level (see :data:`PERMISSIONS`);
            actor_teams: "org/slug" (GitLab: group paths) they belong to, among those asked about.
        pr_author: the PR/MR author; committers: logins/usernames who pushed commits to it.
        head_sha: the PR head commit; head_candidate: the version registered for it (or None).
        reviews: GitHub reviews, all pages (order does not matter: sorted here).
        review_commits: GitHub review id → the commit approved, recorded from its review delivery;
            synchronized_at: ``pull_request.updated_at`` of the latest ``synchronize`` delivery seen
            (see :func:`mlgate.core.freshness.github_approved_commit`).
        base_merges: approved commit → :class:`mlgate.core.freshness.BaseMerge` (gathered with
            ``approvals.keep_on_base_merge`` for approvals of an older commit).
        gitlab_approved_by: GitLab ``approved_by`` usernames (None on GitHub);
            gitlab_approval_commits: username → head commit seen when they approved (if known).
        user_teams: reviewer → teams/groups they belong to (for ``approvals.teams``).
        user_permissions: reviewer → permission level (for "anyone with write").
        bots: logins known to be bots (besides the ``[bot]``/type rules).
        candidate: the registry's view of ``version`` (None: not found).
        required_env_version: the version holding the ``requires`` environment's alias.
        current_env_version: the version holding this environment's alias now.
        train_promoters: who may run ``/train`` (default: this environment's promoters).
        pr_state: "open", "closed" (closed without merging) or "merged" (None: unknown, as open).
            ``/promote`` from a PR closed without merging is refused.
        committers_resolved: False when the forge could not tell who pushed commits (then, with
            ``approvals.committers_count`` false, no approval counts: fail closed).
        expected_gates_fingerprint: :func:`mlgate.core.promotion.gates_fingerprint` of the default branch's
            ``.mlgate.yml`` (None: not checked). The version's tag ``mlgate.gates.fingerprint`` must equal it.
        served_versions: versions the bot's audit history shows held this environment's alias
            (besides the :func:`served_tags` on the version); a ``/rollback`` target must be one.
    """

    forge: Literal["github", "gitlab"]
    command: str
    environment: Environment
    configured_model: str
    model: str
    version: str | None
    actor: str
    actor_permission: str = "none"
    actor_teams: frozenset[str] = frozenset()
    pr_author: str | None = None
    committers: frozenset[str] = frozenset()
    head_sha: str | None = None
    head_candidate: str | None = None
    reviews: tuple[Review, ...] = ()
    review_commits: Mapping[int, str] = field(default_factory=dict)
    synchronized_at: str | None = None
    base_merges: Mapping[str, BaseMerge] = field(default_factory=dict)
    gitlab_approved_by: tuple[str, ...] | None = None
    gitlab_approval_commits: Mapping[str, str] = field(default_factory=dict)
    user_teams: Mapping[str, frozenset[str]] = field(default_factory=dict)
    user_permissions: Mapping[str, str] = field(default_factory=dict)
    bots: frozenset[str] = frozenset()
    candidate: VersionFacts | None = None
    required_env_version: str | None = None
    current_env_version: str | None = None
    pr_state: str | None = None
    committers_resolved: bool = True
    expected_gates_fingerprint: str | None = None
    served_versions: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Check:
    """One row of the gates table: ``name``, whether it passed, and a one-line ``detail``."""

    name: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class Decision:
    """The policy's answer.

    ``allowed``: every check passed. ``reasons``: the details of the failed checks, each
    telling a person what to do. ``checks``: every check (the gates table).
    ``approvers``: whose approvals counted. ``not_counted``: approvals seen but not counted,
    each with why (stale, author, bot, committer, not an eligible reviewer).
    """

    allowed: bool
    reasons: list[str]
    checks: list[Check]
    approvers: list[str] = field(default_factory=list)
    not_counted: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line: "allowed" or the first reason (for commit statuses, max 140 chars)."""
        text = "all gates passed" if self.allowed else self.reasons[0]
        return text if len(text) <= 140 else text[:137] + "..."


# --------------------------------------------------------------------------- helpers


def _short(sha: str | None) -> str:
    return (sha or "?")[:7]


def _is_bot(login: str, facts: Facts, user_type: str | None = None) -> bool:
    return is_bot(login, user_type) or login.lower() in {b.lower() for b in facts.bots}


def latest_states(reviews: Iterable[Review]) -> dict[str, Review]:
    """Each reviewer's latest *effective* review (APPROVED or CHANGES_REQUESTED).

    COMMENTED/PENDING reviews are skipped; a DISMISSED review removes the reviewer's entry,
    so an older approval is not resurrected. Reviews are ordered by ``submitted_at`` then
    ``id`` (GitHub lists them in that order; pages may be concatenated in any order).
    Logins are case-insensitive (one account, whatever the case): the key is the spelling of
    the reviewer's latest effective review.
    """
    ordered = sorted(reviews, key=lambda r: (r.submitted_at or "", r.id))
    latest: dict[str, Review] = {}
    for r in ordered:
        state = r.state.upper()
        key = r.user.lower()
        if state in ("APPROVED", "CHANGES_REQUESTED"):
            latest[key] = r
        elif state == "DISMISSED":
            latest.pop(key, None)
    return {r.user: r for r in latest.values()}


def _eligible_reviewer(user: str, facts: Facts) -> tuple[bool, str]:
    a = facts.environment.approvals
    if a.reviewers or a.teams:
        if user in a.reviewers or user.lower() in {r.lower() for r in a.reviewers}:
            return True, ""
        teams = facts.user_teams.get(user)
        if teams is None:
            teams = next((v for k, v in facts.user_teams.items() if k.lower() == user.lower()), frozenset())
        if any(t in teams for t in a.teams):
            return True, ""
        who = ", ".join([*a.reviewers, *(f"team {t}" for t in a.teams)])
        return False, f"not an eligible reviewer for {facts.environment.name} (eligible: {who})"
    perm = facts.user_permissions.get(user)
    if perm is None:
        perm = next((v for k, v in facts.user_permissions.items() if k.lower() == user.lower()), None)
    if permission_rank(perm) >= permission_rank("write"):
        return True, ""
    return False, f"has {perm or 'no'} permission; approvals count from write or higher"


def promoter_check(command: str, actor: str, promoters: Promoters, permission: str | None,
                   teams: Iterable[str], scope: str) -> Check:
    """Whether ``actor`` may run ``command`` under ``promoters`` (pure): the ``permission`` row of
    the gates table, used by :func:`decide` and by the commands that need no review
    (``/train``, a canary's ``/rollback``/``/abort``).

    Args:
        command: the command name without the slash (``promote``, ``train``, ``abort``...).
        actor: who ran it.
        promoters: :class:`mlgate.core.config.Promoters` (``min_permission``, ``users``, ``teams``).
        permission: the actor's level on the repository, one of :data:`PERMISSIONS` (None: none).
        teams: the teams/groups (``org/slug``, GitLab group paths) the actor belongs to, among
            those asked about.
        scope: what grants the permission, for the message (``promoters of production``,
            ``train_permission``).

    Returns:
        A :class:`Check` named ``permission``: passed when the actor is named in
        ``promoters.users``, is in one of ``promoters.teams``, or has at least
        ``promoters.min_permission``; else a detail saying what is needed.
    """
    level = (permission or "none").lower()
    if actor.lower() in {u.lower() for u in promoters.users}:
        return Check("permission", True, f"@{actor} is named in {scope}")
    member = sorted(set(promoters.teams) & set(teams))
    if member:
        return Check("permission", True, f"@{actor} is in team {member[0]}")
    if permission_rank(level) >= permission_rank(promoters.min_permission):
        return Check("permission", True, f"@{actor} has {level} permission")
    extra = []
    if promoters.users:
        extra.append("users " + ", ".join(promoters.users))
    if promoters.teams:
        extra.append("teams " + ", ".join(promoters.teams))
    alt = f" or be one of {'; '.join(extra)}" if extra else ""
    return Check(
        "permission",
        False,
        f"@{actor} has {level} permission on this repository; /{command} needs {promoters.min_permission} or "
        f"higher ({scope}){alt}: ask a maintainer to run it or to grant access",
    )


def count_approvals(facts: Facts) -> tuple[list[str], list[str], list[str]]:
    """(counted approvers, not-counted approvals with why, blocking change requests with who).

    See the module docstring for the rules; GitHub uses ``reviews``, GitLab ``gitlab_approved_by``.
    """
    a = facts.environment.approvals
    counted: list[str] = []
    ignored: list[str] = []
    blocking: list[str] = []
    author = (facts.pr_author or "").lower()
    committers = {c.lower() for c in facts.committers}

    def exclusion(user: str, user_type: str | None = None) -> str | None:
        if _is_bot(user, facts, user_type):
            return "bot accounts never count"
        if user.lower() == author and not a.author_counts:
            return "the PR author's own approval does not count"
        if user.lower() in committers and not a.committers_count and user.lower() != author:
            return "pushed commits to this PR (approvals.committers_count is false)"
        if not facts.committers_resolved and not a.committers_count:
            return ("who pushed commits to this PR could not be resolved, so an independent review cannot be "
                    "told apart (approvals.committers_count is false): fix the forge access or set committers_count")
        ok, why = _eligible_reviewer(user, facts)
        return None if ok else why

    if facts.gitlab_approved_by is not None:
        seen_users: set[str] = set()
        commits = {k.lower(): v for k, v in facts.gitlab_approval_commits.items()}
        for user in facts.gitlab_approved_by:
            if user.lower() in seen_users:
                continue
            seen_users.add(user.lower())
            why = exclusion(user)
            seen = facts.gitlab_approval_commits.get(user) or commits.get(user.lower())
            if why is None and not seen:
                # the bot never saw the approval webhook: the commit approved is unknown (fail closed)
                why = (f"stale: the commit approved is unknown (no approval webhook was received): "
                       f"re-approve on the current head {_short(facts.head_sha)}")
            elif why is None:
                why = staleness(seen, facts.head_sha, keep_on_base_merge=a.keep_on_base_merge,
                                base_merges=facts.base_merges)
            if why is None:
                counted.append(user)
            else:
                ignored.append(f"@{user}: {why}")
        return counted, ignored, blocking

    for user, r in sorted(latest_states(facts.reviews).items()):
        why = exclusion(user, r.user_type)
        if r.state.upper() == "CHANGES_REQUESTED":
            if why is None or why.startswith("pushed commits"):
                blocking.append(user)
            continue
        if why is None:
            approved, why = github_approved_commit(r.id, r.commit_id, r.submitted_at, facts.review_commits,
                                                   facts.synchronized_at)
        if why is None:
            why = staleness(approved, facts.head_sha, keep_on_base_merge=a.keep_on_base_merge,
                            base_merges=facts.base_merges)
        if why is None:
            counted.append(user)
        else:
            ignored.append(f"@{user}: {why}")
    return counted, ignored, blocking


def decide(facts: Facts) -> Decision:
    """Decide whether ``facts.command`` may go ahead.

    Args:
        facts: see :class:`Facts`.

    Returns:
        A :class:`Decision`; never raises for any combination of facts.
    """
    env = facts.environment
    checks = _model_checks(facts)
    if facts.command != "status":
        checks.append(promoter_check(facts.command, facts.actor, env.promoters, facts.actor_permission,
                                     facts.actor_teams, f"promoters of {env.name}"))
    if facts.command == "train":
        return _finish(checks, [], [])
    missing = _missing_version(facts)
    if missing is not None:
        checks.append(missing)
        return _finish(checks, [], [])
    if facts.command == "rollback":
        return _finish(checks + _rollback_checks(facts), [], [])
    # ---- promote / status
    checks += _pull_request_checks(facts)
    checks += _eligibility_checks(facts)
    approvers, not_counted, approval_checks = _approval_checks(facts)
    return _finish(checks + approval_checks, approvers, not_counted)


def _model_checks(facts: Facts) -> list[Check]:
    """The model is the one ``.mlgate.yml`` on the default branch configures."""
    checks: list[Check] = []
    if facts.model != facts.configured_model:
        checks.append(
            Check(
                "model",
                False,
                f"model {facts.model!r} is not configured in .mlgate.yml on the default branch "
                f"(this repository promotes {facts.configured_model!r})",
            )
        )
    return checks


def _missing_version(facts: Facts) -> Check | None:
    """A failed ``version`` check when no version is named or registered, else None."""
    if facts.version is None:
        return Check(
            "version",
            False,
            f"no model version of {facts.model} is registered for head commit {_short(facts.head_sha)}: "
            "run `mlgate train` for this commit (or name one: /promote MODEL@VERSION)",
        )
    if facts.candidate is None:
        return Check("version", False, f"{facts.model} has no version {facts.version} in the registry")
    return None


def _rollback_checks(facts: Facts) -> list[Check]:
    """``/rollback``: a different version that passed its gates and served the environment before."""
    env = facts.environment
    cand = facts.candidate
    assert cand is not None
    checks: list[Check] = []
    # a rollback returns to a version that already served this environment: no new
    # review is asked for, only the promoter's permission
    if facts.current_env_version == facts.version:
        checks.append(Check("version", False, f"{env.name} already runs {facts.model} version {facts.version}"))
    else:
        checks.append(Check("version", True, f"roll {env.name} back to version {facts.version}"))
    if cand.tags.get(GATES_TAG) != "passed":
        gates = cand.tags.get(GATES_TAG)
        state = f"{GATES_TAG}={gates}" if gates else f"no {GATES_TAG} tag"
        checks.append(Check("metric gates", False,
                            f"rollback target version {facts.version} has {state}: only a version that passed "
                            f"its gates can be rolled back to; use /promote {facts.model}@VERSION instead"))
    served = facts.version in facts.served_versions or any(cand.tags.get(t) for t in served_tags(env.name))
    if served:
        checks.append(Check("served", True, f"version {facts.version} served {env.name} before"))
    else:
        checks.append(Check("served", False,
                            f"version {facts.version} never served {env.name} (no {served_tags(env.name)[0]} tag, "
                            f"no alias move in the bot's history): a rollback returns to a version that served "
                            f"this environment; use /promote {facts.model}@{facts.version} to {env.name} with reviews"))
    return checks


def _pull_request_checks(facts: Facts) -> list[Check]:
    """The PR is not closed unmerged, and its reviews cover the version (``approval scope``)."""
    checks: list[Check] = []
    if facts.pr_state == "closed":
        checks.append(Check("pull request", False,
                            "this PR/MR was closed without merging: its code never reached the default branch; "
                            "reopen it (or promote from a merged one)"))

    if facts.head_candidate is not None and facts.version != facts.head_candidate:
        checks.append(
            Check(
                "approval scope",
                False,
                f"the reviews on this PR cover {facts.model} version {facts.head_candidate} (registered for head "
                f"commit {_short(facts.head_sha)}); version {facts.version} was not reviewed here: "
                f"promote {facts.model}@{facts.head_candidate} or review the PR that registered version {facts.version}",
            )
        )
    elif facts.head_candidate is None:
        checks.append(
            Check(
                "approval scope",
                False,
                f"no version of {facts.model} is registered for head commit {_short(facts.head_sha)}, so no review on "
                f"this PR covers version {facts.version}: push the commit that registered it or run `mlgate train`",
            )
        )
    return checks


def _eligibility_checks(facts: Facts) -> list[Check]:
    """Registered and READY, metric gates passed under the default branch's gates, the required
    environment holds it: :func:`mlgate.core.promotion.eligibility`, the checks ``mlgate promote`` runs."""
    cand = facts.candidate
    assert cand is not None
    found = eligibility(facts.model, str(facts.version), facts.environment, status=cand.status, tags=cand.tags,
                        expected_fingerprint=facts.expected_gates_fingerprint,
                        required_holder=facts.required_env_version, governing="the default branch's",
                        comment=True)
    return [Check(c.name, c.ok, c.detail) for c in found]


def _approval_checks(facts: Facts) -> tuple[list[str], list[str], list[Check]]:
    """(counted approvers, not-counted approvals, the ``changes requested`` and ``approvals`` checks)."""
    env = facts.environment
    checks: list[Check] = []
    approvers, not_counted, blocking = count_approvals(facts)
    need = env.approvals.required
    if blocking:
        checks.append(
            Check(
                "changes requested",
                False,
                "changes requested by " + ", ".join(f"@{u}" for u in blocking)
                + ": address them and ask for a new review, or have the review dismissed",
            )
        )
    if len(approvers) >= need:
        who = ", ".join(f"@{u}" for u in approvers) or "none needed"
        checks.append(Check("approvals", True, f"{len(approvers)}/{need} on {_short(facts.head_sha)}: {who}"))
    else:
        missing = need - len(approvers)
        extra = f" (not counted: {'; '.join(not_counted)})" if not_counted else ""
        checks.append(
            Check(
                "approvals",
                False,
                f"{len(approvers)}/{need} approvals on head commit {_short(facts.head_sha)} for {env.name}: "
                f"{missing} more needed from an eligible reviewer{extra}",
            )
        )
    return approvers, not_counted, checks


def _finish(checks: list[Check], approvers: list[str], not_counted: list[str]) -> Decision:
    reasons = [c.detail for c in checks if not c.ok]
    return Decision(allowed=not reasons, reasons=reasons, checks=checks, approvers=approvers, not_counted=not_counted)
