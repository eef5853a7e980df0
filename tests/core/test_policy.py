"""Approval gates (issue 3, "Approval gates" and "Cases from real-world reports": who counts, reviews)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from mlgate.core import config as cfgmod
from mlgate.core.policy import (
    Facts,
    Review,
    VersionFacts,
    count_approvals,
    decide,
    gitlab_permission,
    latest_states,
    permission_rank,
)

HEAD = "a" * 40
OLD = "b" * 40

CONFIG = """
model: iris
tracking_uri: http://mlflow.example
environments:
  - name: staging
    gitops: {repository: org/deploy, path: staging/isvc.yaml, mode: pull-request, target: {kind: kserve}}
    approvals: {required: 1}
  - name: production
    requires: staging
    gitops: {repository: org/deploy, path: prod/isvc.yaml, mode: pull-request, target: {kind: kserve}}
    promoters: {min_permission: maintain, users: [oncall], teams: [org/release]}
    approvals: {required: 2, reviewers: [rita, sam], teams: [org/ml-leads]}
"""
CFG = cfgmod.parse(CONFIG)
STAGING = CFG.environment("staging")
PROD = CFG.environment("production")


def cand(version="7", gates="passed", status="READY", **extra):
    tags = {"mlgate.git_commit": HEAD, **extra}
    if gates is not None:
        tags["mlgate.gates"] = gates
    return VersionFacts(model="iris", version=version, tags=tags, status=status)


def approve(user, commit=HEAD, at="2024-05-01T10:00:00Z", i=1, state="APPROVED", user_type="User"):
    return Review(user=user, state=state, commit_id=commit, submitted_at=at, id=i, user_type=user_type)


def facts(**kw) -> Facts:
    base = dict(
        forge="github", command="promote", environment=STAGING, configured_model="iris", model="iris",
        version="7", actor="alice", actor_permission="write", pr_author="alice", head_sha=HEAD,
        head_candidate="7", candidate=cand(), reviews=(approve("bob"),),
        user_permissions={"bob": "write", "carol": "write", "dave": "write", "rita": "read", "sam": "read"},
    )
    base.update(kw)
    return Facts(**base)


def reasons(f: Facts) -> str:
    return " | ".join(decide(f).reasons)


def test_allowed_with_one_fresh_approval():
    d = decide(facts())
    assert d.allowed, d.reasons
    assert d.approvers == ["bob"]
    assert {c.name for c in d.checks} >= {"permission", "metric gates", "approvals"}


# ---------------------------------------------------------------- who may promote

@pytest.mark.parametrize("perm,allowed", [("none", False), ("read", False), ("triage", False), ("write", True),
                                          ("maintain", True), ("admin", True)])
def test_promoter_permission_levels(perm, allowed):
    d = decide(facts(actor_permission=perm))
    assert d.allowed is allowed
    if not allowed:
        assert f"@alice has {perm} permission" in d.reasons[0] and "needs write or higher" in d.reasons[0]


def test_production_needs_maintain_unless_named_user_or_team():
    prod = dict(environment=PROD, required_env_version="7",
                reviews=(approve("rita", i=1), approve("sam", i=2)))
    assert "needs maintain or higher" in reasons(facts(**prod))
    assert "users oncall" in reasons(facts(**prod))  # the reason says who else may
    assert decide(facts(**prod, actor="oncall", pr_author="alice")).allowed
    assert decide(facts(**prod, actor_teams=frozenset({"org/release"}))).allowed
    assert decide(facts(**prod, actor_permission="maintain")).allowed


@pytest.mark.parametrize("level,perm", [(None, "none"), (0, "none"), (5, "none"), (10, "read"), (15, "read"),
                                        (20, "triage"), (30, "write"), (40, "maintain"), (50, "admin"), (60, "admin")])
def test_gitlab_access_levels(level, perm):
    assert gitlab_permission(level) == perm


def test_legacy_permission_names():
    assert permission_rank("push") == permission_rank("write")
    assert permission_rank("pull") == permission_rank("read")
    assert permission_rank("bogus") == 0


# ---------------------------------------------------------------- reviews

def test_approval_on_an_older_commit_is_stale():
    d = decide(facts(reviews=(approve("bob", commit=OLD),)))
    assert not d.allowed
    assert "0/1 approvals" in d.reasons[0]
    assert any("stale" in n and "bob" in n for n in d.not_counted)


def test_author_approval_never_counts_and_lgtm_comments_are_not_approvals():
    # the author "approving" (COMMENTED "LGTM" reviews and an approval) counts for nothing
    rs = (approve("alice", i=1), approve("alice", i=2, state="COMMENTED"))
    d = decide(facts(reviews=rs))
    assert not d.allowed
    assert any("author" in n for n in d.not_counted)


def test_author_counts_only_when_configured():
    env = STAGING.model_copy(update={"approvals": STAGING.approvals.model_copy(update={"author_counts": True})})
    d = decide(facts(environment=env, reviews=(approve("alice"),), user_permissions={"alice": "write"}))
    assert d.allowed, d.reasons


@pytest.mark.parametrize("login,user_type", [("renovate[bot]", "Bot"), ("ci-helper", "Bot"), ("mlgate[bot]", "User"),
                                             ("project_12_bot_3f9a", "User")])
def test_bots_never_count(login, user_type):
    d = decide(facts(reviews=(approve(login, user_type=user_type),), user_permissions={login: "admin"}))
    assert not d.allowed
    assert any("bot" in n for n in d.not_counted)


def test_configured_bot_login_never_counts():
    d = decide(facts(reviews=(approve("deploy-robot"),), user_permissions={"deploy-robot": "admin"},
                     bots=frozenset({"deploy-robot"})))
    assert not d.allowed


def test_committers_do_not_count_by_default():
    d = decide(facts(committers=frozenset({"bob"})))
    assert not d.allowed
    assert any("pushed commits" in n for n in d.not_counted)
    env = STAGING.model_copy(update={"approvals": STAGING.approvals.model_copy(update={"committers_count": True})})
    assert decide(facts(committers=frozenset({"bob"}), environment=env)).allowed


def test_reviewer_without_write_permission_does_not_count():
    d = decide(facts(reviews=(approve("eve"),), user_permissions={"eve": "read"}))
    assert not d.allowed and any("eve" in n and "read permission" in n for n in d.not_counted)


def test_latest_state_per_reviewer_across_pages():
    # 35 reviews (more than a default page of 30): bob approves early, comments a lot, then
    # requests changes on page 2; carol approves last
    rs = [approve("bob", i=1, at="2024-05-01T00:00:01Z")]
    rs += [approve("bob", i=k, state="COMMENTED", at=f"2024-05-01T00:{k:02d}:00Z") for k in range(2, 33)]
    rs += [approve("bob", i=33, state="CHANGES_REQUESTED", at="2024-05-01T01:00:00Z"),
           approve("carol", i=34, at="2024-05-01T02:00:00Z")]
    # pages concatenated out of order must not matter
    shuffled = tuple(rs[30:] + rs[:30])
    assert latest_states(shuffled)["bob"].state == "CHANGES_REQUESTED"
    d = decide(facts(reviews=shuffled))
    assert not d.allowed
    assert "changes requested by @bob" in d.reasons[0]


def test_commented_does_not_revoke_an_approval():
    rs = (approve("bob", i=1, at="2024-05-01T10:00:00Z"),
          approve("bob", i=2, state="COMMENTED", at="2024-05-01T11:00:00Z"),
          approve("bob", i=3, state="PENDING", at="2024-05-01T12:00:00Z"))
    assert decide(facts(reviews=rs)).allowed


def test_changes_requested_blocks_even_with_enough_approvals_and_on_an_old_commit():
    rs = (approve("bob", i=1), approve("carol", i=2, commit=OLD, state="CHANGES_REQUESTED"))
    d = decide(facts(reviews=rs))
    assert not d.allowed
    assert any("changes requested by @carol" in r for r in d.reasons)
    # superseded by a later approval from the same reviewer
    rs2 = rs + (approve("carol", i=3, at="2024-05-02T00:00:00Z"),)
    assert decide(facts(reviews=rs2)).allowed


def test_dismissing_a_change_request_does_not_resurrect_an_older_approval():
    rs = (approve("carol", i=1, at="2024-05-01T09:00:00Z"),
          approve("carol", i=2, state="DISMISSED", at="2024-05-01T10:00:00Z"))  # was CHANGES_REQUESTED
    f = facts(reviews=rs)
    approvers, _, blocking = count_approvals(f)
    assert approvers == [] and blocking == []
    assert not decide(f).allowed
    # with bob's approval it goes ahead: the dismissed review no longer blocks
    assert decide(facts(reviews=rs + (approve("bob", i=3),))).allowed


def test_changes_requested_by_an_ineligible_reviewer_does_not_block():
    rs = (approve("bob", i=1), approve("eve", i=2, state="CHANGES_REQUESTED"))
    assert decide(facts(reviews=rs, user_permissions={"bob": "write", "eve": "read"})).allowed


def test_named_reviewers_and_teams():
    base = dict(environment=PROD, required_env_version="7", actor_permission="admin")
    # rita + sam are named reviewers
    assert decide(facts(**base, reviews=(approve("rita", i=1), approve("sam", i=2)))).allowed
    # bob (write permission, but not named and not in org/ml-leads) does not count
    d = decide(facts(**base, reviews=(approve("rita", i=1), approve("bob", i=2))))
    assert not d.allowed and any("not an eligible reviewer" in n for n in d.not_counted)
    # dave is in org/ml-leads
    ok = facts(**base, reviews=(approve("rita", i=1), approve("dave", i=2)),
               user_teams={"dave": frozenset({"org/ml-leads"})})
    assert decide(ok).allowed


# ---------------------------------------------------------------- GitLab

def gl(**kw) -> Facts:
    return facts(forge="gitlab", reviews=(), **kw)


def test_gitlab_counts_approved_by_minus_author_and_bots():
    d = decide(gl(gitlab_approved_by=("alice", "project_5_bot_1a2b", "bob"), gitlab_approval_commits={"bob": HEAD}))
    assert d.allowed and d.approvers == ["bob"]
    # an approval whose commit the bot never learned (no approval webhook) is stale: fail closed
    d = decide(gl(gitlab_approved_by=("bob",)))
    assert not d.allowed and any("re-approve on the current head" in n for n in d.not_counted)


def test_gitlab_approvals_left_zero_with_empty_approved_by_is_not_an_approval():
    d = decide(gl(gitlab_approved_by=()))
    assert not d.allowed
    assert "0/1 approvals" in d.reasons[0]


def test_gitlab_approval_recorded_on_an_older_head_is_stale():
    d = decide(gl(gitlab_approved_by=("bob",), gitlab_approval_commits={"bob": OLD}))
    assert not d.allowed and any("stale" in n for n in d.not_counted)
    assert decide(gl(gitlab_approved_by=("bob",), gitlab_approval_commits={"bob": HEAD})).allowed


# ---------------------------------------------------------------- what is promoted

def test_approval_is_bound_to_the_version_of_the_head_commit():
    # reviews on this PR cover version 7; /promote iris@9 to production is not covered
    d = decide(facts(version="9", candidate=cand("9"), environment=PROD, required_env_version="9",
                     actor_permission="admin", reviews=(approve("rita", i=1), approve("sam", i=2))))
    assert not d.allowed
    assert any("version 9 was not reviewed here" in r for r in d.reasons)


def test_approval_for_staging_does_not_satisfy_production():
    # bob's approval is enough for staging, not for production (named reviewers, 2 needed)
    assert decide(facts()).allowed
    d = decide(facts(environment=PROD, required_env_version="7", actor_permission="admin"))
    assert not d.allowed and any("for production" in r for r in d.reasons)


def test_no_version_for_head_commit():
    d = decide(facts(version=None, head_candidate=None, candidate=None))
    assert not d.allowed and "mlgate train" in d.reasons[-1]


@pytest.mark.parametrize("gates,word", [(None, "no mlgate.gates tag"), ("failed", "mlgate.gates=failed")])
def test_metric_gates_must_have_passed(gates, word):
    d = decide(facts(candidate=cand(gates=gates)))
    assert not d.allowed and any(word in r and "mlgate validate" in r for r in d.reasons)


def test_version_must_be_ready():
    assert any("PENDING_REGISTRATION" in r for r in decide(facts(candidate=cand(status="PENDING_REGISTRATION"))).reasons)


def test_requires_previous_environment_to_hold_the_version():
    base = dict(environment=PROD, actor_permission="admin", reviews=(approve("rita", i=1), approve("sam", i=2)))
    d = decide(facts(**base, required_env_version="6"))
    assert not d.allowed and any("staging holds version 6" in r and "/promote iris@7 to staging" in r for r in d.reasons)
    assert any("holds no version" in r for r in decide(facts(**base, required_env_version=None)).reasons)
    assert decide(facts(**base, required_env_version="7")).allowed


def test_unknown_model_is_refused():
    assert "not configured" in reasons(facts(model="other"))


def test_rollback_needs_only_permission():
    served = VersionFacts(model="iris", version="6",
                          tags={**cand("6").tags, "mlgate.promoted.staging.at": "2024-05-01T10:00:00Z"})
    f = facts(command="rollback", version="6", candidate=served, reviews=(), current_env_version="7")
    assert decide(f).allowed
    # the target must have served this environment (tag or the bot's audit history) and passed its gates
    assert "never served staging" in reasons(replace(f, candidate=cand("6")))
    assert decide(replace(f, candidate=cand("6"), served_versions=frozenset({"6"}))).allowed
    assert not decide(replace(f, candidate=VersionFacts(model="iris", version="6",
                                                        tags={**served.tags, "mlgate.gates": "failed"}))).allowed
    assert not decide(replace(f, actor_permission="read")).allowed
    assert "already runs" in reasons(replace(f, current_env_version="6"))


def test_status_does_not_check_the_actor():
    d = decide(facts(command="status", actor_permission="none"))
    assert d.allowed and "permission" not in {c.name for c in d.checks}


def test_every_refusal_reason_is_a_sentence_with_something_to_do():
    f = facts(actor_permission="read", candidate=cand(gates="failed"), reviews=(approve("bob", commit=OLD),))
    d = decide(f)
    assert len(d.reasons) == 3
    for r in d.reasons:
        assert len(r) > 30
    assert d.summary() == d.reasons[0][:140] or d.summary().endswith("...")


# ---------------------------------------------------------------- one promoter check for every command

_PERMS = ("none", "read", "triage", "write", "maintain", "admin")


@pytest.mark.parametrize("command", ["promote", "train", "abort"])
@pytest.mark.parametrize("perm", _PERMS)
@pytest.mark.parametrize("actor,teams", [("alice", frozenset()), ("oncall", frozenset()),
                                         ("alice", frozenset({"org/release"})), ("alice", frozenset({"org/other"}))])
def test_promote_and_the_no_review_commands_share_one_promoter_check(command, perm, actor, teams):
    """``decide`` (``/promote``) and ``permission_decision`` (``/train``, ``/abort``) give the same
    permission verdict and the same words for the same promoters, actor, permission and teams."""
    from mlgate.bot.promotion import permission_decision
    from mlgate.core.policy import promoter_check

    scope = "promoters of production"
    check = promoter_check(command, actor, PROD.promoters, perm, teams, scope)
    by_policy = next(c for c in decide(facts(command=command, environment=PROD, actor=actor, actor_permission=perm,
                                             actor_teams=teams)).checks if c.name == "permission")
    by_bot = permission_decision(command, actor, PROD.promoters, perm, teams, scope)
    assert by_policy == check == by_bot.checks[0]
    assert by_bot.allowed is check.ok
    assert check.ok is (actor == "oncall" or "org/release" in teams or perm in ("maintain", "admin"))
    if not check.ok:
        assert f"@{actor} has {perm} permission" in check.detail and f"/{command} needs maintain or higher" in check.detail
        assert "users oncall" in check.detail and "teams org/release" in check.detail


# ---------------------------------------------------------------- approvals re-pointed by GitHub (issue 10)
#
# Reviewer bob approves commit A (=OLD); the author merges main into the PR: head B (=HEAD). GitHub
# moves bob's review's commit_id forward to B, so the listing shows an approval "on the head". The
# bot recorded A from the pull_request_review delivery and decides from that record.

from mlgate.core.freshness import BaseMerge, Comparison, FileChange, only_base_merge  # noqa: E402

BASE_HUNK = "@@ -1 +1 @@\n-lr = 0.1\n+lr = 0.2\n"
TRAIN_HUNK = "@@ -1 +1 @@\n-depth = 3\n+depth = 9\n"


def merge_facts(*head_files: FileChange, base_files=(FileChange("params.py", "modified", BASE_HUNK),),
                contains=True, complete=True) -> BaseMerge:
    return BaseMerge(to_head=Comparison(OLD, HEAD, contains, tuple(head_files), complete),
                     to_base=Comparison(OLD, "main", False, tuple(base_files)))


ONLY_MAIN = merge_facts(FileChange("params.py", "modified", BASE_HUNK))
MAIN_AND_MORE = merge_facts(FileChange("params.py", "modified", BASE_HUNK), FileChange("train.py", "modified", TRAIN_HUNK))
REPOINTED = (approve("bob", commit=HEAD, i=41),)  # what GitHub lists after the merge of main


def keep(on: bool = True):
    return STAGING.model_copy(update={"approvals": STAGING.approvals.model_copy(update={"keep_on_base_merge": on})})


def test_repointed_approval_is_stale_by_default_even_when_the_merge_only_brought_main():
    d = decide(facts(reviews=REPOINTED, review_commits={41: OLD}, base_merges={OLD: ONLY_MAIN}))
    assert not d.allowed
    assert any(f"stale: approved {OLD[:7]}, head is now {HEAD[:7]}" in n and "keep_on_base_merge is off" in n
               for n in d.not_counted), d.not_counted


def test_keep_on_base_merge_keeps_an_approval_when_only_base_files_changed():
    d = decide(facts(environment=keep(), reviews=REPOINTED, review_commits={41: OLD}, base_merges={OLD: ONLY_MAIN}))
    assert d.allowed, d.reasons
    assert d.approvers == ["bob"]


def test_keep_on_base_merge_is_stale_when_the_merge_also_changed_other_files():
    d = decide(facts(environment=keep(), reviews=REPOINTED, review_commits={41: OLD}, base_merges={OLD: MAIN_AND_MORE}))
    assert not d.allowed
    assert any("train.py" in n and "beyond what the base branch changed" in n for n in d.not_counted), d.not_counted


def test_keep_on_base_merge_without_the_comparison_is_stale():
    d = decide(facts(environment=keep(), reviews=REPOINTED, review_commits={41: OLD}))
    assert not d.allowed and any("could not compare" in n for n in d.not_counted)


def test_recorded_commit_equal_to_the_head_counts():
    assert decide(facts(reviews=REPOINTED, review_commits={41: HEAD})).allowed


@pytest.mark.parametrize("synchronized_at,allowed", [
    (None, True),                     # no push seen since the bot watches: GitHub's commit_id
    ("2024-05-01T09:00:00Z", True),   # the last push seen came before the review
    ("2024-05-01T10:00:00Z", False),  # the same second: cannot tell, fail closed
    ("2024-05-01T11:00:00Z", False),  # a push after the review: GitHub may have moved it
    ("not a time", False),
])
def test_review_with_no_record_falls_back_to_commit_id_unless_a_push_was_seen_after_it(synchronized_at, allowed):
    # no record: given before the bot was installed (or its delivery was lost). A push the bot saw
    # after the review (GitHub's clock on both sides) may have moved it: unknown, stale.
    d = decide(facts(reviews=REPOINTED, synchronized_at=synchronized_at))
    assert d.allowed is allowed
    if not allowed:
        assert any("commit approved is unknown" in n for n in d.not_counted)


def test_a_record_of_another_review_does_not_vouch_for_this_one():
    d = decide(facts(reviews=REPOINTED, review_commits={7: HEAD}, synchronized_at="2024-05-01T11:00:00Z"))
    assert not d.allowed


def test_gitlab_keep_on_base_merge_uses_the_same_rule():
    base = dict(forge="gitlab", reviews=(), gitlab_approved_by=("bob",), gitlab_approval_commits={"bob": OLD})
    assert not decide(facts(**base, base_merges={OLD: ONLY_MAIN})).allowed
    assert decide(facts(**base, environment=keep(), base_merges={OLD: ONLY_MAIN})).allowed
    assert not decide(facts(**base, environment=keep(), base_merges={OLD: MAIN_AND_MORE})).allowed


@pytest.mark.parametrize("merge,word", [
    (ONLY_MAIN, None),
    (merge_facts(), None),  # the head's tree equals the approved commit's
    (MAIN_AND_MORE, "train.py"),
    (merge_facts(FileChange("params.py", "modified", BASE_HUNK), contains=False), "rewritten"),
    (merge_facts(FileChange("params.py", "modified", BASE_HUNK), complete=False), "too many files"),
    # a conflict resolved by hand: the same file, another change than the base's
    (merge_facts(FileChange("params.py", "modified", BASE_HUNK + "+extra = 1\n")), "params.py"),
    # a diff the forge does not show (binary, too large) cannot be checked
    (merge_facts(FileChange("model.bin", "modified", None), base_files=(FileChange("model.bin", "modified", None),)),
     "model.bin"),
    (merge_facts(FileChange("params.py", "removed", BASE_HUNK)), "params.py"),
    (merge_facts(FileChange("new.py", "renamed", BASE_HUNK, "old.py"),
                 base_files=(FileChange("new.py", "renamed", BASE_HUNK, "old.py"),)), None),
    (merge_facts(FileChange("new.py", "renamed", None, "old.py"),  # moved, content unchanged (no diff)
                 base_files=(FileChange("new.py", "renamed", None, "old.py"),)), None),
    (merge_facts(FileChange("new.py", "renamed", BASE_HUNK, "other.py"),
                 base_files=(FileChange("new.py", "renamed", BASE_HUNK, "old.py"),)), "new.py"),
    (None, "could not compare"),
])
def test_only_base_merge(merge, word):
    why = only_base_merge(merge)
    assert (why is None) is (word is None), why
    if word:
        assert word in why
