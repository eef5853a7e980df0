"""Normalisation of real webhook payloads, and ``explain`` over tables of them.

GitHub: every example of ``issue_comment``, ``pull_request_review``, ``pull_request`` and
``push`` in npm ``@octokit/webhooks-examples`` goes through :func:`normalize` without
error; the derived payloads (PR comments, approvals) validate against
``@octokit/webhooks-schemas``. GitLab: the documented examples in tests/fixtures/gitlab/.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from mlgate.bot.explain import explain
from mlgate.core.commands import help_text
from mlgate.core.events import Event, Ignored, normalize
from tests.fixtures.github import octokit

GL = Path(__file__).resolve().parents[1] / "fixtures" / "gitlab"
USED = ("issue_comment", "pull_request_review", "pull_request", "push")


def gl(name: str) -> dict:
    return json.loads((GL / name).read_text())


def gh(name: str) -> dict:
    return octokit.load(name)


# ---------------------------------------------------------------- GitHub: real examples

def _all_examples():
    ex = octokit.examples()
    return [pytest.param(ev, p, id=f"{ev}-{i}-{p.get('action', 'push')}") for ev in USED for i, p in enumerate(ex[ev])]


@pytest.mark.parametrize("event,payload", _all_examples())
def test_every_octokit_example_normalizes_without_error(event, payload):
    out = normalize("github", event, payload)
    assert isinstance(out, (Event, Ignored))
    if isinstance(out, Ignored):
        assert "malformed" not in out.reason, out.reason
    else:
        assert out.repo == payload["repository"]["full_name"]


def test_octokit_examples_cover_the_used_events():
    ex = octokit.examples()
    assert all(len(ex[e]) >= 1 for e in USED)


@pytest.mark.parametrize("name", sorted(octokit.derive_all()))
def test_derived_payloads_are_valid_and_committed(name):
    derived = octokit.derive_all()[name]
    octokit.validate_webhook(name.split(".")[0], derived)
    assert octokit.load(name) == derived, f"{name} drifted: run python tests/fixtures/github/octokit.py"


def test_schema_check_rejects_an_impossible_payload():
    import jsonschema

    p = gh("issue_comment.pr.promote.json")
    p["comment"]["id"] = "not a number"
    with pytest.raises(jsonschema.ValidationError):
        octokit.validate_webhook("issue_comment", p)


# ---------------------------------------------------------------- GitHub: the cases

def test_pr_comment_becomes_a_comment_event():
    p = gh("issue_comment.pr.promote.json")
    ev = normalize("github", "issue_comment", p)
    assert isinstance(ev, Event)
    assert (ev.kind, ev.number, ev.body, ev.comment_id) == ("comment", p["issue"]["number"], "/promote", p["comment"]["id"])
    assert ev.actor == p["comment"]["user"]["login"] and ev.default_branch == p["repository"]["default_branch"]
    assert ev.comment_key == f"github:{p['repository']['full_name']}:comment:{p['comment']['id']}"


@pytest.mark.parametrize("action", ["edited", "deleted"])
def test_edited_and_deleted_comments_are_ignored(action):
    p = gh("issue_comment.pr.edited.json")
    p["action"] = action
    out = normalize("github", "issue_comment", p)
    assert isinstance(out, Ignored) and action in out.reason


def test_comment_on_an_issue_is_ignored():
    ex = next(e for e in octokit.examples()["issue_comment"] if e["action"] == "created")
    out = normalize("github", "issue_comment", ex)
    assert isinstance(out, Ignored) and "not on a pull request" in out.reason


def test_the_bots_own_help_text_is_ignored():
    p = gh("issue_comment.pr.bot.json")
    out = normalize("github", "issue_comment", p)
    assert isinstance(out, Ignored) and "bot" in out.reason


@pytest.mark.parametrize("login,user_type", [("renovate[bot]", "User"), ("dependabot", "Bot"), ("mlgate-ci", "User")])
def test_comments_by_bots_and_by_the_configured_login_are_ignored(login, user_type):
    p = gh("issue_comment.pr.promote.json")
    p["comment"]["user"].update(login=login, type=user_type)
    p["comment"]["body"] = help_text()
    out = normalize("github", "issue_comment", p, bot_login="mlgate-ci")
    assert isinstance(out, Ignored)


@pytest.mark.parametrize("state", ["approved", "changes_requested"])
def test_reviews(state):
    p = gh(f"pull_request_review.{state}.json")
    ev = normalize("github", "pull_request_review", p)
    assert isinstance(ev, Event) and ev.kind == "review" and ev.review_state == state
    assert ev.review_commit == p["review"]["commit_id"] and ev.head_sha == p["pull_request"]["head"]["sha"]


def test_closed_pull_request_merged_or_not():
    ex = [e for e in octokit.examples()["pull_request"] if e["action"] == "closed"]
    for p in ex:
        out = normalize("github", "pull_request", p)
        if p["pull_request"]["merged"]:
            assert isinstance(out, Event) and out.action == "merged" and out.merged
        else:
            assert isinstance(out, Ignored) and "without merging" in out.reason
    merged = copy.deepcopy(ex[0])
    merged["pull_request"]["merged"] = True
    out = normalize("github", "pull_request", merged)
    assert isinstance(out, Event) and out.action == "merged"


def test_synchronize_and_push():
    sync = next(e for e in octokit.examples()["pull_request"] if e["action"] == "synchronize")
    ev = normalize("github", "pull_request", sync)
    assert isinstance(ev, Event) and ev.action == "synchronize" and ev.head_sha == sync["pull_request"]["head"]["sha"]
    for p in octokit.examples()["push"]:
        out = normalize("github", "push", p)
        if p["ref"].startswith("refs/heads/") and not p.get("deleted"):
            assert isinstance(out, Event) and out.head_sha == p["after"]
        else:
            assert isinstance(out, Ignored)


def test_unused_events_and_malformed_payloads_are_ignored():
    assert isinstance(normalize("github", "star", {"action": "created"}), Ignored)
    out = normalize("github", "issue_comment", {"action": "created", "issue": {"pull_request": {}}})
    assert isinstance(out, Ignored) and "malformed" in out.reason
    assert isinstance(normalize("github", "issue_comment", []), Ignored)  # type: ignore[arg-type]
    assert isinstance(normalize("bitbucket", "push", {}), Ignored)


# ---------------------------------------------------------------- GitLab

def test_gitlab_note_on_a_merge_request():
    p = gl("note-merge-request.json")
    p["object_attributes"]["note"] = "/promote"
    ev = normalize("gitlab", "Note Hook", p)
    assert isinstance(ev, Event)
    assert (ev.kind, ev.repo, ev.repo_id, ev.number, ev.comment_id) == ("comment", "gitlab-org/gitlab-test", 5, 1, 1244)
    assert ev.head_sha == p["merge_request"]["last_commit"]["id"] and ev.actor == "root"


@pytest.mark.parametrize("name,word", [("note-issue.json", "Issue"), ("note-commit.json", "Commit"),
                                       ("note-snippet.json", "Snippet")])
def test_gitlab_notes_not_on_merge_requests_are_ignored(name, word):
    out = normalize("gitlab", "Note Hook", gl(name))
    assert isinstance(out, Ignored) and word in out.reason


def test_gitlab_note_update_system_and_bot_are_ignored():
    p = gl("note-merge-request.json")
    p["object_attributes"]["action"] = "update"
    assert "update" in normalize("gitlab", "Note Hook", p).reason  # type: ignore[union-attr]
    p = gl("note-merge-request.json")
    p["object_attributes"]["system"] = True
    assert isinstance(normalize("gitlab", "Note Hook", p), Ignored)
    p = gl("note-merge-request.json")
    p["user"]["username"] = "project_5_bot_8c1e2f"
    assert "bot" in normalize("gitlab", "Note Hook", p).reason  # type: ignore[union-attr]
    p = gl("note-merge-request.json")
    assert isinstance(normalize("gitlab", "Note Hook", p, bot_login="root"), Ignored)


@pytest.mark.parametrize("action,kind,norm", [("open", "pull_request", "opened"), ("merge", "pull_request", "merged"),
                                              ("approval", "review", "approval"), ("unapproval", "review", "unapproval"),
                                              ("approved", "review", "approved")])
def test_gitlab_merge_request_actions(action, kind, norm):
    p = gl("merge-request.json")
    p["object_attributes"]["action"] = action
    ev = normalize("gitlab", "Merge Request Hook", p)
    assert isinstance(ev, Event) and (ev.kind, ev.action) == (kind, norm)
    assert ev.head_sha == p["object_attributes"]["last_commit"]["id"]


def test_gitlab_update_without_new_commits_is_ignored_with_new_commits_is_a_push():
    p = gl("merge-request.json")
    p["object_attributes"]["action"] = "update"
    assert isinstance(normalize("gitlab", "Merge Request Hook", p), Ignored)
    p["object_attributes"]["oldrev"] = "0" * 39 + "1"
    ev = normalize("gitlab", "Merge Request Hook", p)
    assert isinstance(ev, Event) and ev.action == "synchronize"


def test_gitlab_push_and_object_kind_fallback():
    p = gl("push.json")
    ev = normalize("gitlab", "Push Hook", p)
    assert isinstance(ev, Event) and ev.head_ref == "master" and ev.head_sha == p["after"]
    assert isinstance(normalize("gitlab", "", p), Event)  # no header: object_kind decides


# ---------------------------------------------------------------- explain over real payloads

FACTS = {
    "config": "model: iris\ntracking_uri: http://mlflow.example\nenvironments:\n"
              "  - name: staging\n    gitops: {repository: org/deploy, path: staging.yaml, mode: pull-request,"
              " target: {kind: kserve}}\n",
    "pull_request": {"author": "alice", "head_sha": "c" * 40},
    "permissions": {"Codertocat": "write", "bob": "write"},
    "reviews": [{"user": "bob", "state": "APPROVED", "commit_id": "c" * 40, "submitted_at": "2024-01-01T00:00:00Z"}],
    "registry": {"versions": {"7": {"tags": {"mlgate.gates": "passed", "mlgate.git_commit": "c" * 40}}}},
}


def _record_gates_fingerprint(facts):
    """As ``mlgate validate`` does: tag the version with the gates fingerprint of its config."""
    from mlgate.core.config import parse as parse_config
    from mlgate.core.promotion import gates_fingerprint

    fp = gates_fingerprint(parse_config(facts["config"]))
    facts["registry"]["versions"]["7"]["tags"]["mlgate.gates.fingerprint"] = fp


_record_gates_fingerprint(FACTS)


def _edited(name, **changes):
    p = gh(name)
    for path, value in changes.items():
        node = p
        keys = path.split("__")
        for k in keys[:-1]:
            node = node[k]
        node[keys[-1]] = value
    return p


EXPLAIN = [
    ("promote allowed", "github", "issue_comment", gh("issue_comment.pr.promote.json"), FACTS,
     ["line 1: /promote", "allowed", "would: open a promotion PR from branch mlgate/promote/iris/staging/v7"]),
    ("edited comment", "github", "issue_comment", gh("issue_comment.pr.edited.json"), None,
     ["ignored: issue_comment action 'edited'", "do nothing"]),
    ("bot help text", "github", "issue_comment", gh("issue_comment.pr.bot.json"), None, ["ignored: comment by bot"]),
    ("quoted command", "github", "issue_comment", _edited("issue_comment.pr.promote.json", comment__body="> /promote"),
     None, ["commands: none"]),
    ("unknown flag", "github", "issue_comment", _edited("issue_comment.pr.promote.json", comment__body="/promote --force"),
     None, ["usage error: unknown flag '--force'", "run nothing"]),
    ("no permission", "github", "issue_comment", gh("issue_comment.pr.promote.json"),
     {**FACTS, "permissions": {"bob": "write", "Codertocat": "read"}},
     ["refused", "@Codertocat has read permission", "needs write or higher"]),
    ("validated under other gates", "github", "issue_comment", gh("issue_comment.pr.promote.json"),
     {**FACTS, "registry": {"versions": {"7": {"tags": {"mlgate.gates": "passed", "mlgate.git_commit": "c" * 40,
                                                        "mlgate.gates.fingerprint": "0123456789abcdef"}}}}},
     ["refused", "validated under other gates than the default branch's"]),
    ("stale approval", "github", "issue_comment", gh("issue_comment.pr.promote.json"),
     {**FACTS, "reviews": [{"user": "bob", "state": "APPROVED", "commit_id": "d" * 40}]}, ["refused", "stale"]),
    ("continue a canary", "github", "issue_comment", _edited("issue_comment.pr.promote.json", comment__body="/continue"),
     FACTS, ["line 1: /continue", "paused canary", "promoter of its environment"]),
    ("doctor", "github", "issue_comment", _edited("issue_comment.pr.promote.json", comment__body="/doctor"),
     FACTS, ["line 1: /doctor", "mlgate doctor's checks"]),
    ("approved review", "github", "pull_request_review", gh("pull_request_review.approved.json"), None,
     ["review approved", "mlgate/gates"]),
    ("gitlab note", "gitlab", "Note Hook", gl("note-merge-request.json"), None,
     ["comment 1244 on gitlab-org/gitlab-test#1 by @root", "commands: none"]),
    ("gitlab issue note", "gitlab", "Note Hook", gl("note-issue.json"), None, ["ignored: note on noteable type Issue"]),
]


@pytest.mark.parametrize("name,forge,event,payload,facts,expected", EXPLAIN, ids=[e[0] for e in EXPLAIN])
def test_explain_table(name, forge, event, payload, facts, expected):
    text = explain(payload, event=event, forge=forge, facts=facts)
    for phrase in expected:
        assert phrase in text, f"{phrase!r} not in:\n{text}"


def test_explain_guesses_event_and_forge():
    assert "delivery: github issue_comment" in explain(gh("issue_comment.pr.promote.json"))
    assert "delivery: gitlab Note Hook" in explain(gl("note-merge-request.json"))


# ---------------------------------------------------------------- payloads of the wrong shape

def test_wrongly_typed_fields_are_ignored_as_malformed_naming_the_field():
    p = gh("issue_comment.pr.promote.json")
    p["comment"]["body"] = 1
    assert normalize("github", "issue_comment", p) == Ignored(
        "malformed payload: comment.body is integer, expected string")
    p = gh("pull_request_review.approved.json")
    p["review"]["commit_id"] = 1
    assert normalize("github", "pull_request_review", p) == Ignored(
        "malformed payload: review.commit_id is integer, expected string")
    p = gh("issue_comment.pr.promote.json")
    del p["comment"]["id"]
    assert normalize("github", "issue_comment", p) == Ignored(
        "malformed payload: comment.id is missing, expected integer")
    p = gl("note-merge-request.json")
    p["merge_request"]["iid"] = None
    assert normalize("gitlab", "Note Hook", p) == Ignored(
        "malformed payload: merge_request.iid is null, expected integer")
    p = gl("merge-request.json")
    p["object_attributes"]["labels"] = [{"title": "a"}, "b"]
    assert normalize("gitlab", "Merge Request Hook", p) == Ignored(
        "malformed payload: object_attributes.labels[1] is string, expected object")
    assert normalize("github", "push", []) == Ignored(  # type: ignore[arg-type]
        "malformed payload: (root) is array, expected object")


def _seeds() -> list[tuple[str, str, dict]]:
    """(forge, event, payload) of real deliveries mlgate acts on."""
    ex = octokit.examples()
    out = [("github", "issue_comment", gh("issue_comment.pr.promote.json")),
           ("github", "pull_request_review", gh("pull_request_review.approved.json")),
           ("github", "pull_request_review", gh("pull_request_review.changes_requested.json"))]
    out += [("github", "pull_request", p) for p in ex["pull_request"]
            if p.get("action") in ("opened", "synchronize") or p["pull_request"].get("merged")][:4]
    out += [("github", "push", p) for p in ex["push"]][:2]
    note = gl("note-merge-request.json")
    note["object_attributes"]["note"] = "/promote"
    out += [("gitlab", "Note Hook", note), ("gitlab", "Push Hook", gl("push.json"))]
    for action in ("open", "merge", "approved", "update"):
        p = gl("merge-request.json")
        p["object_attributes"]["action"] = action
        p["object_attributes"]["oldrev"] = "1" * 40
        out.append(("gitlab", "Merge Request Hook", p))
    return out


SEEDS = _seeds()
#: Fields normalisation reads (mutating these is what could break it); other paths are sampled too.
READ = [
    "action", "repository", "repository.full_name", "repository.default_branch", "installation", "installation.id",
    "issue", "issue.number", "issue.pull_request", "issue.user", "issue.user.login", "issue.labels",
    "comment", "comment.id", "comment.body", "comment.user", "comment.user.login", "comment.user.type",
    "comment.user.id", "comment.html_url", "review", "review.state", "review.commit_id", "review.user",
    "review.body", "pull_request", "pull_request.number", "pull_request.head", "pull_request.head.sha",
    "pull_request.head.ref", "pull_request.base", "pull_request.base.ref", "pull_request.merged",
    "pull_request.user", "pull_request.labels", "pull_request.body", "sender", "sender.login", "ref", "after",
    "deleted", "pusher", "pusher.name", "object_kind", "user", "user.username", "user.id", "user.bot", "project",
    "project.path_with_namespace", "project.id", "project_id", "object_attributes", "object_attributes.id",
    "object_attributes.iid", "object_attributes.note", "object_attributes.noteable_type", "object_attributes.action",
    "object_attributes.system", "object_attributes.last_commit", "object_attributes.last_commit.id",
    "object_attributes.labels", "object_attributes.oldrev", "merge_request", "merge_request.iid",
    "merge_request.last_commit", "merge_request.last_commit.id", "merge_request.labels", "labels", "user_username",
]


def _paths(node, prefix=()):
    if isinstance(node, dict):
        for k, v in node.items():
            yield prefix + (k,)
            yield from _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node[:3]):
            yield prefix + (i,)
            yield from _paths(v, prefix + (i,))


def _mutate(payload, path, how, value):
    node = payload
    for k in path[:-1]:
        if isinstance(node, dict) and k in node:
            node = node[k]
        elif isinstance(node, list) and isinstance(k, int) and k < len(node):
            node = node[k]
        else:
            return
    last = path[-1]
    if isinstance(node, dict):
        if how == "delete":
            node.pop(last, None)
        else:
            node[last] = value
    elif isinstance(node, list) and isinstance(last, int) and last < len(node):
        node[last] = value


def _check_types(ev: Event) -> None:
    opt = lambda v, t: v is None or (isinstance(v, t) and not isinstance(v, bool))  # noqa: E731
    assert ev.forge in ("github", "gitlab") and ev.kind in ("comment", "review", "pull_request", "push")
    assert isinstance(ev.action, str) and isinstance(ev.repo, str) and isinstance(ev.actor, str)
    assert isinstance(ev.body, str) and isinstance(ev.merged, bool)
    assert all(isinstance(x, str) for x in ev.labels)
    for name in ("repo_id", "installation_id", "number", "actor_id", "author_id", "comment_id"):
        assert opt(getattr(ev, name), int), (name, getattr(ev, name))
    for name in ("default_branch", "author", "head_sha", "head_ref", "base_ref", "review_state", "review_commit",
                 "url"):
        assert opt(getattr(ev, name), str), (name, getattr(ev, name))


def test_normalize_never_raises_on_mutated_real_payloads():
    """Real payloads with fields deleted, nulled or replaced by another JSON type: normalisation
    returns an Event whose fields have their declared types, or Ignored; so do the command parser
    and ``explain`` downstream."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from mlgate.core.commands import parse

    json_values = st.one_of(
        st.none(), st.booleans(), st.integers(-2, 2**40), st.floats(allow_nan=False), st.text(max_size=8),
        st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
        st.just([{"name": 1}]), st.just({"login": 5, "id": "x"}),
    )

    @settings(max_examples=400, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(st.data())
    def run(data):
        forge, event, seed = data.draw(st.sampled_from(SEEDS))
        payload = copy.deepcopy(seed)
        for _ in range(data.draw(st.integers(1, 3))):
            path = data.draw(st.one_of(
                st.sampled_from(READ).map(lambda p: tuple(p.split("."))),
                st.sampled_from(sorted(_paths(payload), key=str) or [("x",)]),
            ))
            how = data.draw(st.sampled_from(["delete", "null", "value"]))
            _mutate(payload, path, how, None if how == "null" else copy.deepcopy(data.draw(json_values)))
        out = normalize(forge, event, payload)
        assert isinstance(out, (Event, Ignored))
        if isinstance(out, Event):
            _check_types(out)
            parse(out.body)
        else:
            assert isinstance(out.reason, str) and out.reason
        assert isinstance(explain(payload, event=event, forge=forge), str)

    run()
