"""Security review of the bot's core (issue 3: "Approval gates", "Commands", "Cases from real-world reports").

Two classes:

- :class:`TestFixed`: each test states what the policy/parser/normaliser *should* do; each failed when
  the review was written (a real hole: a promotion the policy should refuse went ahead, or a legitimate
  one was refused) and passes since the fixes.
- :class:`TestHolds`: attacks that were tried and are already refused (or legitimate cases that already
  work); they pass and pin the behaviour.

Pure core where possible (Facts / Event / comment text built directly). Where the hole is in how
facts are gathered, tests drive the forge clients with a stubbed ``_api`` (no network), or the handler
in process against the OpenAPI-checked fake GitHub (real git) and an in-memory registry (``world``).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from mlgate.core import config as cfgmod
from mlgate.bot import promotion as promo
from mlgate.core.commands import Command, CommandMistake, parse
from mlgate.core.events import Event, Ignored, normalize
from mlgate.core.policy import Facts, count_approvals, decide, promoter_check
from tests.fixtures.github import octokit

HEAD = "a" * 40
OLD = "b" * 40
GL = Path(__file__).resolve().parents[1] / "fixtures" / "gitlab"

CONFIG = """
model: iris
tracking_uri: http://mlflow.example
validate:
  gates:
    - {metric: accuracy, min: 0.9}
environments:
  - name: staging
    gitops: {repository: org/deploy, path: staging/isvc.yaml, mode: pull-request, target: {kind: kserve}}
    approvals: {required: 1}
  - name: production
    requires: staging
    gitops: {repository: org/deploy, path: prod/isvc.yaml, mode: pull-request, target: {kind: kserve}}
    promoters: {min_permission: maintain, users: [OnCall], teams: [org/release]}
    approvals: {required: 2, reviewers: [rita, sam], teams: [org/ml-leads]}
"""
CFG = cfgmod.parse(CONFIG)
STAGING = CFG.environment("staging")
PROD = CFG.environment("production")


from tests.core.test_policy import approve as review, cand  # noqa: E402  (shared fact builders)


def facts(**kw) -> Facts:
    base = dict(
        forge="github", command="promote", environment=STAGING, configured_model="iris", model="iris",
        version="7", actor="alice", actor_permission="write", pr_author="alice", head_sha=HEAD,
        head_candidate="7", candidate=cand(), reviews=(review("bob"),),
        user_permissions={"bob": "write", "carol": "write", "Bob": "write", "mallory2": "write"},
    )
    base.update(kw)
    return Facts(**base)


def gl_facts(**kw) -> Facts:
    return facts(forge="gitlab", reviews=(), **kw)


def commands(body: str) -> list[Command]:
    return [c for c in parse(body) if isinstance(c, Command)]


def gh_comment(body="/promote", login="carol", user_type="User", comment_id=4242, **repo_extra) -> dict:
    p = octokit.load("issue_comment.pr.promote.json")
    p["comment"]["body"] = body
    p["comment"]["id"] = comment_id
    p["comment"]["user"].update(login=login, type=user_type)
    p["repository"].update(repo_extra)
    return p


def gl_note(body="/promote", username="carol", note_id=1244) -> dict:
    p = json.loads((GL / "note-merge-request.json").read_text())
    p["object_attributes"]["note"] = body
    p["object_attributes"]["id"] = note_id
    p["user"]["username"] = username
    return p


# =====================================================================================================
# Helpers for the handler-level tests (where the facts are gathered): in process, the OpenAPI-checked fake GitHub backed by
# real git, and an in-memory registry. No network beyond loopback.
# =====================================================================================================

ISVC = """apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: iris
spec:
  predictor:
    model:
      modelFormat: {name: sklearn}
      storageUri: "s3://models/iris/bootstrap"
"""

MODEL_YML = """model: iris
tracking_uri: https://mlflow.example.com
environments:
  - name: staging
    gitops: {repository: acme/deploy, path: staging/isvc.yaml, mode: pull-request, target: {kind: kserve}}
    approvals: {required: 1}
"""

BOT = "mlgate-bot"
TOKEN = "ghp_policyreview"


class _Registry:
    """The few registry calls the handler makes, over a dict of versions."""

    def __init__(self):
        from mlgate.edge.registry import VersionInfo

        self._vi = VersionInfo
        self.versions_: dict[str, object] = {}
        self.aliases: dict[str, str] = {}
        self.moved: list[tuple[str, str]] = []

    def add(self, version: str, commit: str, gates: str = "passed"):
        # as `mlgate validate` records it: the gates fingerprint of the default branch's .mlgate.yml
        from mlgate.core.promotion import gates_fingerprint

        fp = gates_fingerprint(cfgmod.parse(MODEL_YML))
        self.versions_[version] = self._vi(model="iris", version=version, run_id=f"run{version}", status="READY",
                                           tags={"mlgate.git_commit": commit, "mlgate.gates": gates,
                                                 "mlgate.gates.fingerprint": fp},
                                           source=f"s3://models/iris/{version}", storage_uri=f"s3://models/iris/{version}")

    def versions(self, model):
        return list(self.versions_.values())

    def find_by_commit(self, model, sha):
        m = [v for v in self.versions_.values() if v.tags.get("mlgate.git_commit") == sha]
        return max(m, key=lambda v: int(v.version)) if m else None

    def get_version(self, model, version):
        from mlgate.core.errors import UsageError

        if version not in self.versions_:
            raise UsageError(f"no version {version}")
        return self.versions_[version]

    def get_by_alias(self, model, alias):
        v = self.aliases.get(alias)
        return self.versions_[v] if v else None

    def set_alias(self, model, alias, version):
        self.aliases[alias] = version
        self.moved.append((alias, version))

    def set_tags(self, model, version, tags):
        self.versions_[version].tags.update(tags)


@pytest.fixture
def world(tmp_path):
    from mlgate.bot import handlers
    from mlgate.bot.settings import BotSettings
    from mlgate.edge.db.store import Store
    from tests.fakes.github_server import FakeGitHub

    gh = FakeGitHub(tmp_path / "gh", tokens={TOKEN: BOT}).start()
    gh.user(BOT)
    settings = BotSettings(github_api_url=gh.url, github_token=TOKEN, bot_login=BOT, github_write_interval=0,
                           database_url=f"sqlite:///{tmp_path}/bot.db", workers=1, max_attempts=5,
                           tracking_uri="https://mlflow.example.com")
    store = Store(settings.database_url)
    ctx = handlers.make_context(settings, store)
    reg = _Registry()
    ctx.registry_factory = lambda uri: reg
    gh.add_repo("acme/model", {".mlgate.yml": MODEL_YML, "train.py": "x = 1\n"})
    gh.add_repo("acme/deploy", {"staging/isvc.yaml": ISVC})
    gh.set_permission("acme/model", "carol", "maintain")
    gh.set_permission("acme/model", "bob", "write")
    gh.set_permission("acme/model", "mallory", "write")
    yield gh, ctx, reg
    gh.stop()
    assert gh.errors == [], "the handler sent requests GitHub's OpenAPI description rejects"


def _delivery(event, payload, did):
    from datetime import UTC, datetime

    from mlgate.edge.db.store import Delivery

    return Delivery(id=did, forge="github", event=event, payload=payload, headers={},
                    received_at=datetime.now(UTC), attempts=1)


def _comment(gh, number, who, body, comment_id=None, state="open"):
    from tests.e2e.bot.deliveries import github_comment

    p = github_comment(gh, "acme/model", number, who, body, comment_id=comment_id)
    p["issue"]["state"] = state
    return p


# =====================================================================================================
# Fixed holes: each of these failed before the fixes (kept, assertions unchanged)
# =====================================================================================================


class TestFixed:
    # ------------------------------------------------------------------ GitLab approvals and staleness

    def test_gitlab_approval_whose_commit_is_unknown_is_not_counted(self):
        """GitLab's approvals API says *who* approved, not on which commit. The bot only learns the commit
        from the approval webhook (kv ``gitlab:approval:...``). An approval the bot never saw a webhook for
        (given before the hook was installed, a lost/failed delivery, approvals not reset on push on GitLab
        Free) has no entry, and ``count_approvals`` then counts it whatever the head is: approve commit A,
        push B, /promote -> allowed. Fail closed: unknown commit == stale."""
        f = gl_facts(gitlab_approved_by=("bob",), gitlab_approval_commits={})
        d = decide(f)
        assert not d.allowed, "an approval on an unknown commit was counted for head " + HEAD[:7]

    def test_gitlab_service_account_approval_does_not_count(self):
        """GitLab service accounts (bot users; default username ``service_account_group_<id>_<hex>`` or
        ``service_account_<hex>``; e.g. AI review bots post as them) are not recognised as bots by
        ``events.is_bot``; with Developer access their approval counts as a human review."""
        sa = "service_account_group_345_6018816a18e515214e0c34c2b33523fc"
        d = decide(gl_facts(gitlab_approved_by=(sa,), user_permissions={sa: "write"}))
        assert not d.allowed and any("bot" in n for n in d.not_counted), d.approvers

    def test_gitlab_note_by_a_service_account_bot_is_ignored(self):
        """Same gap at intake: a comment by a GitLab service-account bot (e.g. a review bot that echoes
        the conversation, including a ``/promote`` line) is not ignored, and would run with the bot
        account's own (often Developer) permission. The issue: "any comment by a bot account" is ignored."""
        p = gl_note("Summary of the discussion:\n\n/promote to staging", username="service_account_group_42_0a1b2c3d4e5f6a7b")
        assert isinstance(normalize("gitlab", "Note Hook", p), Ignored)

    def test_gitlab_committers_are_gathered(self):
        """``approvals.committers_count: false`` (default) is never enforced on GitLab:
        ``GitLabForge.committers`` returns ``set()`` unconditionally, so a second account that pushed
        commits to the MR approves it and counts. (Stubbed API: the MR's commits are authored by a
        project member whose username the users API resolves.)"""
        from mlgate.edge.forges.gitlab import GitLabForge

        f = GitLabForge("https://gitlab.invalid", token="glpat-x")
        commits = [{"id": HEAD, "author_name": "Mallory Two", "author_email": "m2@example.com",
                    "committer_name": "Mallory Two", "committer_email": "m2@example.com"}]

        def api(verb, path, query=None, body=None):
            if path.endswith("/commits"):
                return commits if (query or {}).get("page", 1) == 1 else []
            if path == "/users" or path.startswith("/users"):
                return [{"id": 77, "username": "mallory2", "public_email": "m2@example.com"}]
            if "/members" in path:
                return [{"id": 77, "username": "mallory2", "access_level": 30, "email": "m2@example.com"}]
            if "/events" in path:  # project push events name the pusher
                return [{"action_name": "pushed to", "author_username": "mallory2",
                         "push_data": {"ref": "feature", "commit_to": HEAD}}] if (query or {}).get("page", 1) == 1 else []
            return []

        f._api = api  # type: ignore[method-assign]
        assert "mallory2" in f.committers("grp/proj", 1)

    # ------------------------------------------------------------------ what is promoted

    def test_gates_passed_under_weaker_gates_than_the_default_branch(self):
        """``mlgate.gates=passed`` is trusted as a bare string: nothing binds it to the gates of
        ``.mlgate.yml`` on the default branch. A PR that lowers ``validate.gates`` in its own
        ``.mlgate.yml`` gets ``passed`` from its own CI run; the bot reads approvals from the default
        branch but never re-checks the gates. Here the default branch needs accuracy >= 0.9 and the
        version's own tags record accuracy 0.42 -> still allowed."""
        version = cand(**{"mlgate.gate.accuracy": "passed (0.42)", "mlgate.gates.source": "logged"})
        snap = promo.Snapshot(config=CFG, head_sha=HEAD, pr_author="alice", actor_permission="write",
                              reviews=(review("bob"),), user_permissions={"bob": "write"},
                              head_candidate=version, candidate=version)
        d = decide(promo.facts_for("github", "promote", "alice", "iris", STAGING, "7", snap))
        assert not d.allowed, "a version whose recorded accuracy (0.42) fails the default branch's gate (>= 0.9) was allowed"

    def test_rollback_to_a_version_that_never_served_the_environment_is_refused(self):
        """``/rollback`` needs no review: the policy's premise is "a rollback returns to a version that
        already served this environment". ``decide`` does not check that premise: the rollback target
        comes from the registry tag ``mlgate.previous.<env>`` on the current version (writable by any CI
        job with registry access), and ``decide`` accepts any version: one that never served production,
        whose gates failed, and that staging (``requires``) never held."""
        f = facts(command="rollback", environment=PROD, actor="alice", actor_permission="maintain", version="9",
                  candidate=cand("9", gates="failed"), head_candidate="9", reviews=(), current_env_version="8",
                  required_env_version="8")
        d = decide(f)
        assert not d.allowed, "rollback to an unreviewed, gate-failing version that never served production was allowed"

    # ------------------------------------------------------------------ identities (logins are case-insensitive)

    def test_named_promoter_matches_case_insensitively(self):
        """``promoters.users: [OnCall]`` and the comment's login ``oncall`` are the same GitHub account,
        but ``promoter_check`` compares exactly (reviewers and the author are compared case-insensitively):
        the on-call engineer's legitimate /promote to production is refused."""
        check = promoter_check("promote", "oncall", PROD.promoters, "read", frozenset(), "promoters of production")
        assert check.ok, check.detail

    def test_one_person_counts_once_whatever_the_case_of_the_login(self):
        """``latest_states`` keys reviewers by the exact login: "Bob" and "bob" (one account) are two
        approvals. Only reachable when facts mix sources with different casing (e.g. ``bot explain --facts``
        or a future forge adapter); GitHub's REST answers use one canonical spelling."""
        rs = (review("Bob", i=1), review("bob", i=2))
        env = STAGING.model_copy(update={"approvals": STAGING.approvals.model_copy(update={"required": 2})})
        d = decide(facts(environment=env, reviews=rs))
        assert not d.allowed and len(d.approvers) == 1, d.approvers

    def test_committer_exclusion_is_case_insensitive(self):
        """The author rule lower-cases logins, the committer rule does not: committer "Bob" approving as
        "bob" counts. (Same reachability caveat as above.)"""
        d = decide(facts(committers=frozenset({"Bob"}), reviews=(review("bob"),)))
        assert not d.allowed, d.approvers

    # ------------------------------------------------------------------ forge facts: permissions

    def test_custom_repository_role_based_on_write_may_promote(self):
        """GitHub Enterprise custom repository roles: "Get repository permissions for a user" answers
        ``role_name: <custom name>`` and ``permission: write`` (the legacy base role). ``GitHubForge.permission``
        prefers ``role_name``, which ``permission_rank`` does not know -> "none": every member of a custom
        role (e.g. "ml-deployer" based on write) is refused /promote and their approvals never count."""
        from mlgate.edge.forges.github import GitHubForge
        from mlgate.core.policy import permission_rank

        f = GitHubForge("https://api.github.invalid", token="ghp_x")
        f._api = lambda verb, path, params=None, body=None: ({}, {"permission": "write", "role_name": "ml-deployer",  # type: ignore[method-assign]
                                                                  "user": {"login": "dana"}})
        assert permission_rank(f.permission("org/model", "dana")) >= permission_rank("write")

    # ------------------------------------------------------------------ comment parser: hidden commands

    @pytest.mark.parametrize("body", [
        "Thanks!\n<!--\n/promote to production\n-->",
        "<!-- note to self:\n/promote\n-->\nLooks good, will check tomorrow.",
    ], ids=["html-comment", "html-comment-with-text"])
    def test_command_inside_an_html_comment_is_not_a_command(self, body):
        """An HTML comment is not rendered: a ``/promote`` line inside one is invisible to every reader of
        the PR (and of a comment pasted from elsewhere) yet runs with the commenter's authority."""
        assert commands(body) == []

    def test_lazy_blockquote_continuation_is_quoted(self):
        """CommonMark lazy continuation: a line right after a ``>`` line without a blank line in between is
        part of the quote (GitHub renders it inside the quote). Only ``> ``-prefixed lines are skipped."""
        assert commands("> @carol wrote: please run\n/promote to production") == []

    # ------------------------------------------------------------------ handler level (fake GitHub + registry)

    def test_promote_on_a_closed_unmerged_pr_is_refused(self, world):
        """A PR that was closed without merging (rejected, abandoned, superseded) still promotes: neither
        ``decide`` nor the handler looks at the PR's state, so the approval it once got and the version its
        head registered go to staging from code that never reached the default branch."""
        from mlgate.bot import handlers

        gh, ctx, reg = world
        sha = gh.commit("acme/model", "feat", {"train.py": "x = 2\n"}, author="mallory")
        pr = gh.open_pr("acme/model", "feat", user="mallory")
        reg.add("7", sha)
        gh.add_review("acme/model", pr.number, "bob", "APPROVED", commit_id=sha)
        gh.repos["acme/model"].pulls[pr.number].state = "closed"  # closed, not merged
        out = handlers.handle(_delivery("issue_comment", _comment(gh, pr.number, "carol", "/promote", state="closed"),
                                        "d-closed"), ctx)
        assert gh.pulls("acme/deploy") == [], f"a promotion PR was opened from a closed PR: {out}"
        assert "refused" in out, out


# =====================================================================================================
# Holds: tried, and already refused (or, for legitimate cases, already allowed)
# =====================================================================================================


class TestHolds:
    # ------------------------------------------------------------------ who counts as an approver

    def test_baseline_one_fresh_eligible_approval_is_allowed(self):
        d = decide(facts())
        assert d.allowed and d.approvers == ["bob"], d.reasons

    @pytest.mark.parametrize("login", ["alice", "Alice", "ALICE"])
    def test_author_never_approves_own_pr_in_any_case(self, login):
        d = decide(facts(reviews=(review(login),), user_permissions={login: "admin"}))
        assert not d.allowed and any("author" in n for n in d.not_counted)

    def test_second_account_that_pushed_commits_does_not_count_but_still_blocks(self):
        f = facts(committers=frozenset({"mallory2"}), reviews=(review("mallory2"),))
        assert not decide(f).allowed
        # a committer's change request still blocks (it is an eligible reviewer otherwise)
        f2 = facts(committers=frozenset({"mallory2"}),
                   reviews=(review("bob", i=1), review("mallory2", i=2, state="CHANGES_REQUESTED")))
        assert any("changes requested by @mallory2" in r for r in decide(f2).reasons)

    @pytest.mark.parametrize("login,user_type", [("Renovate[BOT]", "User"), ("deployer", "Bot"),
                                                 ("project_12_bot_9f3a", None), ("group_3_bot", None)])
    def test_bots_never_count(self, login, user_type):
        d = decide(facts(reviews=(review(login, user_type=user_type),), user_permissions={login: "admin"}))
        assert not d.allowed and any("bot" in n for n in d.not_counted)

    def test_lgtm_comment_reviews_are_not_approvals(self):
        d = decide(facts(reviews=(review("bob", state="COMMENTED"),)))
        assert not d.allowed

    def test_named_reviewer_matches_case_insensitively(self):
        f = facts(environment=PROD, actor_permission="admin", required_env_version="7",
                  reviews=(review("RITA", i=1), review("Sam", i=2)))
        assert decide(f).allowed, decide(f).reasons

    def test_team_membership_is_matched_exactly(self):
        # a look-alike team (prefix/suffix, other org) does not make a reviewer or promoter eligible
        f = facts(environment=PROD, actor_permission="admin", required_env_version="7",
                  reviews=(review("rita", i=1), review("eve", i=2)),
                  user_teams={"eve": frozenset({"org/ml-leads-bots", "evil/ml-leads", "org/ml"})})
        assert not decide(f).allowed
        check = promoter_check("promote", "eve", PROD.promoters, "write",
                               frozenset({"org/release-candidates", "other/release"}), "promoters of production")
        assert not check.ok

    def test_reviewer_without_write_does_not_count(self):
        # on a public repository anyone may submit an APPROVED review
        d = decide(facts(reviews=(review("stranger"),), user_permissions={"stranger": "read"}))
        assert not d.allowed

    # ------------------------------------------------------------------ staleness, dismissals, changes requested

    def test_approval_then_force_push_is_stale(self):
        d = decide(facts(reviews=(review("bob", commit=OLD),)))
        assert not d.allowed and any("stale" in n for n in d.not_counted)

    def test_approval_with_no_commit_id_is_stale(self):
        assert not decide(facts(reviews=(review("bob", commit=None),))).allowed

    def test_dismissed_approval_does_not_count(self):
        rs = (review("bob", i=1, state="DISMISSED"),)
        assert not decide(facts(reviews=rs)).allowed

    def test_dismissed_change_request_does_not_resurrect_older_approval(self):
        rs = (review("bob", i=1, at="2024-05-01T09:00:00Z"),
              review("bob", i=2, at="2024-05-01T10:00:00Z", state="DISMISSED"))
        assert count_approvals(facts(reviews=rs))[0] == []

    def test_later_changes_requested_revokes_and_blocks(self):
        rs = (review("bob", i=1, at="2024-05-01T09:00:00Z"), review("carol", i=2, at="2024-05-01T09:30:00Z"),
              review("bob", i=3, at="2024-05-01T10:00:00Z", state="CHANGES_REQUESTED"))
        d = decide(facts(reviews=rs))
        assert not d.allowed and any("changes requested by @bob" in r for r in d.reasons)

    def test_author_changes_request_does_not_block(self):
        # the author cannot veto their own PR's promotion through a self-review either way
        rs = (review("bob", i=1), review("alice", i=2, state="CHANGES_REQUESTED"))
        assert decide(facts(reviews=rs)).allowed

    # ------------------------------------------------------------------ GitLab approvals

    def test_gitlab_author_in_approved_by_does_not_count_in_any_case(self):
        d = decide(gl_facts(gitlab_approved_by=("Alice",), user_permissions={"Alice": "admin"}))
        assert not d.allowed

    def test_gitlab_empty_approved_by_is_not_an_approval(self):
        assert not decide(gl_facts(gitlab_approved_by=())).allowed

    def test_gitlab_approval_recorded_on_older_head_is_stale(self):
        assert not decide(gl_facts(gitlab_approved_by=("bob",), gitlab_approval_commits={"bob": OLD})).allowed
        assert decide(gl_facts(gitlab_approved_by=("bob",), gitlab_approval_commits={"bob": HEAD})).allowed

    def test_gitlab_project_bot_never_counts(self):
        d = decide(gl_facts(gitlab_approved_by=("project_5_bot_1a2b3c",), user_permissions={"project_5_bot_1a2b3c": "write"}))
        assert not d.allowed

    # ------------------------------------------------------------------ version binding, gates, requires

    def test_named_version_from_another_commit_is_refused(self):
        d = decide(facts(version="9", candidate=cand("9")))
        assert not d.allowed and any("version 9 was not reviewed here" in r for r in d.reasons)

    def test_named_version_when_head_registered_nothing_is_refused(self):
        d = decide(facts(version="9", candidate=cand("9"), head_candidate=None))
        assert not d.allowed and any("approval scope" == c.name and not c.ok for c in d.checks)

    @pytest.mark.parametrize("gates", [None, "failed", "PASSED", "passed ", "pass"])
    def test_gates_tag_must_be_exactly_passed(self, gates):
        assert not decide(facts(candidate=cand(gates=gates))).allowed

    def test_requires_cannot_be_bypassed(self):
        base = dict(environment=PROD, actor_permission="admin", reviews=(review("rita", i=1), review("sam", i=2)))
        assert not decide(facts(**base, required_env_version=None)).allowed
        assert not decide(facts(**base, required_env_version="6")).allowed
        assert decide(facts(**base, required_env_version="7")).allowed

    def test_unconfigured_model_is_refused(self):
        assert not decide(facts(model="other")).allowed

    # ------------------------------------------------------------------ who may run commands

    @pytest.mark.parametrize("command", ["promote", "train", "rollback"])
    def test_unprivileged_user_cannot_run_commands(self, command):
        f = facts(command=command, actor="stranger", actor_permission="read", current_env_version="6",
                  reviews=(review("bob"),))
        d = decide(f)
        assert not d.allowed and any("needs write or higher" in r for r in d.reasons)

    def test_status_runs_nothing_and_needs_no_permission(self):
        d = decide(facts(command="status", actor_permission="none"))
        assert "permission" not in {c.name for c in d.checks}

    # ------------------------------------------------------------------ comment parser

    @pytest.mark.parametrize("body", [
        "\u200b/promote", "\ufeff/promote", "/\u200bpromote", "/promote\u200b",
        "\u2215promote", "\uff0fpromote", "\u2044promote", "/ｐromote",
        "| /promote | to production |", "|/promote|",
        "> /promote", ">/promote", "   > /promote", "> > /promote", "- > /promote",
        "```\n/promote\n```", "~~~\n/promote\n~~~", "````\n```\n/promote\n````", "    /promote", "\t/promote",
        "<!-- /promote -->", "`/promote`", "text /promote", "/promotions/2024 folder", "/promote-all",
    ])
    def test_not_a_command(self, body):
        assert commands(body) == []

    @pytest.mark.parametrize("body", ["/promote\r\n", "\n\n  /promote  ", "/promote\u00a0", "\u00a0/promote"])
    def test_clean_command_variants_still_parse(self, body):
        [c] = commands(body)
        assert c.name == "promote" and c.model is None and c.version is None

    def test_unknown_flag_runs_nothing(self):
        [e] = parse("/promote --force")
        assert isinstance(e, CommandMistake)

    def test_version_must_be_ascii_digits(self):
        # Arabic-Indic / fullwidth digits are not versions (no "\d" lookalikes)
        for body in ("/promote iris@\u0667", "/promote iris@\uff17"):
            assert not commands(body)

    # ------------------------------------------------------------------ event normalisation

    @pytest.mark.parametrize("action", ["edited", "deleted"])
    def test_edited_comment_is_ignored(self, action):
        p = gh_comment()
        p["action"] = action
        assert isinstance(normalize("github", "issue_comment", p), Ignored)

    @pytest.mark.parametrize("login,user_type", [("mlgate[bot]", "User"), ("Dependabot[BOT]", "User"),
                                                 ("some-app", "Bot"), ("MLGATE-BOT", "User")])
    def test_bot_comments_are_ignored(self, login, user_type):
        p = gh_comment("/promote to production", login=login, user_type=user_type)
        assert isinstance(normalize("github", "issue_comment", p, bot_login="mlgate-bot"), Ignored)

    def test_same_github_comment_through_org_and_repo_hooks_has_one_key(self):
        a = gh_comment(comment_id=99)
        b = copy.deepcopy(a)
        b["installation"] = {"id": 123456}  # delivered through the organisation's app/hook
        ea, eb = normalize("github", "issue_comment", a), normalize("github", "issue_comment", b)
        assert isinstance(ea, Event) and isinstance(eb, Event) and ea.comment_key == eb.comment_key

    def test_same_gitlab_note_through_project_and_group_hooks_has_one_key(self):
        a, b = gl_note(note_id=555), gl_note(note_id=555)
        b["object_attributes"]["url"] = b["object_attributes"]["url"] + "?via=group-hook"
        ea, eb = normalize("gitlab", "Note Hook", a), normalize("gitlab", "Note Hook", b)
        assert isinstance(ea, Event) and isinstance(eb, Event) and ea.comment_key == eb.comment_key

    @pytest.mark.parametrize("name", ["note-commit.json", "note-issue.json", "note-snippet.json"])
    def test_gitlab_notes_outside_merge_requests_are_ignored(self, name):
        p = json.loads((GL / name).read_text())
        p["object_attributes"]["note"] = "/promote"
        p.setdefault("merge_request", json.loads((GL / "note-merge-request.json").read_text())["merge_request"])
        assert isinstance(normalize("gitlab", "Note Hook", p), Ignored)

    @pytest.mark.parametrize("change", [{"action": "update"}, {"system": True}])
    def test_gitlab_note_edits_and_system_notes_are_ignored(self, change):
        p = gl_note()
        p["object_attributes"].update(change)
        assert isinstance(normalize("gitlab", "Note Hook", p), Ignored)

    # ------------------------------------------------------------------ handler level (fake GitHub + registry)

    def test_fork_pr_that_lowers_its_own_gates_still_needs_the_default_branch_approvals(self, world):
        from mlgate.bot import handlers

        gh, ctx, reg = world
        gh.fork("acme/model", "mallory")
        lowered = MODEL_YML.replace("required: 1", "required: 0")
        sha = gh.commit("mallory/model", "lower", {".mlgate.yml": lowered, "train.py": "x = 3\n"}, author="mallory")
        pr = gh.open_pr("acme/model", "lower", user="mallory", head_repo="mallory/model")
        reg.add("7", sha)
        gh.add_review("acme/model", pr.number, "mallory", "APPROVED", commit_id=sha)  # self-approval
        out = handlers.handle(_delivery("issue_comment", _comment(gh, pr.number, "mallory", "/promote"), "d-fork"), ctx)
        assert "refused (0/1 approvals" in out and gh.pulls("acme/deploy") == [], out

    def test_approval_then_push_is_stale_and_named_version_from_old_commit_is_refused(self, world):
        from mlgate.bot import handlers

        gh, ctx, reg = world
        old = gh.commit("acme/model", "feat", {"train.py": "x = 2\n"}, author="mallory")
        pr = gh.open_pr("acme/model", "feat", user="mallory")
        reg.add("7", old)
        gh.add_review("acme/model", pr.number, "bob", "APPROVED", commit_id=old)
        new = gh.commit("acme/model", "feat", {"train.py": "evil = 1\n"}, author="mallory")
        reg.add("8", new)
        out1 = handlers.handle(_delivery("issue_comment", _comment(gh, pr.number, "mallory", "/promote"), "d-a"), ctx)
        out2 = handlers.handle(_delivery("issue_comment", _comment(gh, pr.number, "mallory", "/promote iris@7"), "d-b"), ctx)
        # the new head registered version 8: bob's approval of the old commit is stale
        assert "refused (0/1 approvals" in out1, out1
        # naming the approved commit's version 7 does not help: reviews on this PR now cover 8 only
        assert "refused" in out2 and "version 7 was not reviewed here" in out2, out2
        assert gh.pulls("acme/deploy") == []

    def test_same_comment_through_two_hooks_acts_once(self, world):
        from mlgate.bot import handlers

        gh, ctx, reg = world
        sha = gh.commit("acme/model", "feat", {"train.py": "x = 2\n"}, author="mallory")
        pr = gh.open_pr("acme/model", "feat", user="mallory")
        reg.add("7", sha)
        gh.add_review("acme/model", pr.number, "bob", "APPROVED", commit_id=sha)
        payload = _comment(gh, pr.number, "carol", "/promote", comment_id=8_888_001)
        out1 = handlers.handle(_delivery("issue_comment", payload, "repo-hook-1"), ctx)
        out2 = handlers.handle(_delivery("issue_comment", copy.deepcopy(payload), "org-hook-2"), ctx)
        assert "promotion PR opened" in out1, out1
        assert "already handled" in out2, out2
        assert len(gh.pulls("acme/deploy")) == 1

    def test_promote_after_the_pr_was_merged_still_works(self, world):
        # legitimate flow: approve, merge, then /promote; the merged PR's head is the approved commit
        from mlgate.bot import handlers

        gh, ctx, reg = world
        sha = gh.commit("acme/model", "feat", {"train.py": "x = 2\n"}, author="mallory")
        pr = gh.open_pr("acme/model", "feat", user="mallory")
        reg.add("7", sha)
        gh.add_review("acme/model", pr.number, "bob", "APPROVED", commit_id=sha)
        gh.merge_pr("acme/model", pr.number)
        out = handlers.handle(_delivery("issue_comment", _comment(gh, pr.number, "carol", "/promote", state="closed"),
                                        "d-merged"), ctx)
        assert "promotion PR opened" in out, out
