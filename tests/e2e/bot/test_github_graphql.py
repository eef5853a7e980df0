"""Issue 12: a promotion PR on GitHub in 3 GraphQL round trips, against the fake's ``POST /graphql``,
which validates every document and its variables against GitHub's published schema
(``@octokit/graphql-schema``) and runs them on the same git-backed state as its REST side.

Races and crashes borrow the cases of peers that commit through ``createCommitOnBranch``
(e.g. DataDog/dd-trace-rb's signed-commit action: a rerun finds the branch it left and must
reset it; a stale ``expectedHeadOid`` is the one benign refusal).
"""

from __future__ import annotations

import httpx
import pytest

from mlgate.edge.forges.base import ForgeError
from mlgate.edge.forges.github import GitHubForge
from tests.e2e.bot.test_forges import TOKEN, VALUES, forge, request
from tests.fakes.github_server import FakeGitHub

REPO = "acme/deploy"


@pytest.fixture
def gh(tmp_path):
    fake = FakeGitHub(tmp_path, tokens={TOKEN: "mlgate-bot"}).start()
    fake.user("mlgate-bot")
    yield fake
    fake.stop()
    assert fake.errors == [], fake.errors


def files(n: int) -> tuple[str, ...]:
    return tuple(f"env{i}/values.yaml" for i in range(n))


def text(gh: FakeGitHub, branch: str, path: str) -> str:
    g = gh.repos[REPO].git
    return g.read(g.branch(branch), path).decode()


@pytest.mark.parametrize("n", [1, 2, 3, 10])
def test_a_promotion_pr_takes_three_round_trips_for_any_number_of_files(gh, n):
    gh.add_repo(REPO, {f: VALUES for f in files(n)})
    gh.add_label(REPO, "mlgate-promotion")
    r = forge(gh).open_promotion(request(REPO, "iris", "s3://m/iris/2", files=files(n)))
    assert r.created and r.changed and r.api_calls == 3
    assert [c[1] for c in gh.requests] == [f"/graphql#repository@{REPO}",
                                           f"/graphql#createRef,createCommitOnBranch,createPullRequest@{REPO}",
                                           f"/graphql#addLabelsToLabelable@{REPO}"]
    (pr,) = gh.pulls(REPO)
    assert pr.labels == ["mlgate-promotion"] and pr.title == "Promote iris" and r.number == pr.number
    g = gh.repos[REPO].git
    head = g.branch(pr.head)
    assert head == r.commit and g.commit_info(head)["parents"] == [g.branch("main")]  # one commit, all files
    assert all("s3://m/iris/2" in text(gh, pr.head, f) for f in files(n))
    assert g.commit_info(head)["message"] == "promote iris"


def test_a_label_the_repository_lacks_is_created_by_the_rest_label_call(gh):
    """GraphQL labels by id, so a label that does not exist yet goes through REST "Add labels to an
    issue" (which creates it): still one call; the next promotion finds it and uses GraphQL."""
    gh.add_repo(REPO, {"values.yaml": VALUES})
    r = forge(gh).open_promotion(request(REPO, "iris", "s3://m/iris/2"))
    assert r.api_calls == 3 and gh.calls("POST", rf"^/repos/{REPO}/issues/\d+/labels$")
    other = forge(gh).open_promotion(request(REPO, "wine", "s3://m/wine/2"))
    assert other.api_calls == 3 and len(gh.graphql_calls("addLabelsToLabelable")) == 1
    assert all(p.labels == ["mlgate-promotion"] for p in gh.pulls(REPO))


def test_a_concurrent_promotion_between_read_and_write_retries_once_and_leaves_one_pr(gh):
    """Another attempt of the same promotion opens the PR between our read and our write: our
    createRef, createCommitOnBranch (stale expectedHeadOid) and createPullRequest fail cleanly,
    the promotion reads again, finds the PR in its end state and writes nothing more."""
    gh.add_repo(REPO, {f: VALUES for f in files(2)})
    gh.add_label(REPO, "mlgate-promotion")
    req = request(REPO, "iris", "s3://m/iris/2", files=files(2))
    gh.on_request("POST", r"^/graphql#createRef", lambda: forge(gh).open_promotion(req))
    r = forge(gh).open_promotion(req)
    writes = gh.graphql_calls("createCommitOnBranch")
    assert len(writes) == 2  # the other attempt's, ours (refused: nothing retried blindly)
    reads = [c for c in gh.requests if c[1].startswith("/graphql#repository")]
    assert len(reads) == 3  # ours, the other attempt's, our one retry
    (pr,) = gh.pulls(REPO)
    assert r.number == pr.number and pr.labels == ["mlgate-promotion"]
    assert all("s3://m/iris/2" in text(gh, pr.head, f) for f in files(2))
    g = gh.repos[REPO].git
    assert len(g.log(g.branch("main"), g.branch(pr.head))) == 1  # one promotion commit, not two


def test_a_push_to_the_promotion_branch_between_read_and_write_is_kept(gh):
    """A human pushes to the open promotion PR's branch after our read: createCommitOnBranch refuses
    the stale expectedHeadOid (STALE_DATA), and the retry commits on top of the push."""
    gh.add_repo(REPO, {"values.yaml": VALUES})
    first = forge(gh).open_promotion(request(REPO, "iris", "s3://m/iris/2"))
    branch = gh.pulls(REPO)[0].head
    gh.on_request("POST", r"^/graphql#createCommitOnBranch",
                  lambda: gh.commit(REPO, branch, {"NOTES.md": "by hand\n"}, author="carol"))
    again = forge(gh).open_promotion(request(REPO, "iris", "s3://m/iris/3"))
    assert [c[2] for c in gh.graphql_calls("createCommitOnBranch")] == [200, 200, 200]
    assert again.number == first.number and not again.created and len(gh.pulls(REPO)) == 1
    assert again.api_calls == 4  # read, refused commit, read, commit (the PR has its label)
    assert text(gh, branch, "NOTES.md") == "by hand\n" and "s3://m/iris/3" in text(gh, branch, "values.yaml")


def test_push_mode_commits_every_file_on_the_base_in_two_round_trips_and_retries_a_move(gh):
    gh.add_repo(REPO, {f: VALUES for f in files(3)})
    gh.on_request("POST", r"^/graphql#createCommitOnBranch",
                  lambda: gh.commit(REPO, "main", {"README.md": "moved under the bot\n"}))
    r = forge(gh).open_promotion(request(REPO, "iris", "s3://m/iris/3", mode="push", files=files(3)))
    assert r.changed and r.url is None and r.api_calls == 4  # read, stale commit, read, commit
    assert all("s3://m/iris/3" in text(gh, "main", f) for f in files(3))
    assert text(gh, "main", "README.md") == "moved under the bot\n"


def test_a_branch_left_without_a_pr_is_reset_and_finished_in_three_round_trips(gh):
    """An attempt that died after createRef (or whose commit failed) left the branch at an old base
    head; a closed PR leaves its branch too. The next attempt resets it to the base head, commits,
    opens the PR: one PR, one commit on top of today's base."""
    gh.add_repo(REPO, {"values.yaml": VALUES})
    branch = "mlgate/promote/iris/prod/v2"
    gh.commit(REPO, branch, {"stale.txt": "old attempt\n"}, base="main")
    gh.commit(REPO, "main", {"README.md": "base moved\n"})
    r = forge(gh).open_promotion(request(REPO, "iris", "s3://m/iris/2"))
    assert r.created and r.api_calls == 3
    assert gh.graphql_calls(r"updateRef,createCommitOnBranch,createPullRequest")
    g = gh.repos[REPO].git
    assert g.commit_info(g.branch(branch))["parents"] == [g.branch("main")]
    assert g.read(g.branch(branch), "stale.txt") is None and len(gh.pulls(REPO)) == 1


def test_a_branch_with_an_open_pr_into_another_base_is_never_reset(gh):
    gh.add_repo(REPO, {"values.yaml": VALUES})
    branch = "mlgate/promote/iris/prod/v2"
    gh.commit(REPO, "release", {"x.txt": "release\n"}, base="main")
    kept = gh.commit(REPO, branch, {"notes.txt": "someone's work\n"}, base="main")
    other = gh.open_pr(REPO, branch, base="release")
    r = forge(gh).open_promotion(request(REPO, "iris", "s3://m/iris/2"))
    assert r.created and r.number != other.number and r.api_calls == 3
    g = gh.repos[REPO].git
    assert g.commit_info(g.branch(branch))["parents"] == [kept]  # committed on top, nothing lost
    assert not gh.graphql_calls("updateRef")


def test_a_pr_left_without_its_label_or_title_is_finished_and_then_nothing_is_written(gh):
    gh.add_repo(REPO, {"values.yaml": VALUES})
    gh.add_label(REPO, "mlgate-promotion")
    first = forge(gh).open_promotion(request(REPO, "iris", "s3://m/iris/2"))
    pr = gh.pulls(REPO)[0]
    pr.labels[:] = ["keep-me"]
    pr.title = "edited"
    again = forge(gh).open_promotion(request(REPO, "iris", "s3://m/iris/2"))
    assert again.number == first.number and not again.created and not again.changed and again.api_calls == 3
    assert gh.calls("POST", rf"^/graphql#updatePullRequest@{REPO}$") and sorted(pr.labels) == ["keep-me", "mlgate-promotion"]
    before = len(gh.requests)
    settled = forge(gh).open_promotion(request(REPO, "iris", "s3://m/iris/2"))
    assert settled.api_calls == 1 and [c[1] for c in gh.requests[before:]] == [f"/graphql#repository@{REPO}"]


def test_a_mutation_whose_answer_was_lost_converges_to_one_labelled_pr(gh):
    """The mutation went through, the connection dropped: the same mutation is sent again (refused
    everywhere: the work is done), the promotion reads again and only labels."""
    gh.add_repo(REPO, {"values.yaml": VALUES})
    gh.drop_answer("POST", r"^/graphql#createRef")
    r = forge(gh).open_promotion(request(REPO, "iris", "s3://m/iris/2"))
    (pr,) = gh.pulls(REPO)
    assert [c[2] for c in gh.graphql_calls("createPullRequest")] == [0, 200]
    assert r.created and r.changed and r.number == pr.number and pr.labels == ["mlgate-promotion"]
    assert r.commit == gh.repos[REPO].git.branch(pr.head)


def test_a_refusal_that_is_no_race_is_a_forge_error(gh):
    gh.add_repo(REPO, {"values.yaml": VALUES})
    with pytest.raises(ForgeError, match="does not exist on main"):
        forge(gh).open_promotion(request(REPO, "iris", "s3://m/iris/2", files=("missing.yaml",)))
    with pytest.raises(ForgeError, match="NOT_FOUND"):
        forge(gh).open_promotion(request("acme/nothing", "iris", "s3://m/iris/2"))
    assert gh.pulls(REPO) == []


def test_a_server_without_the_mutations_is_told_to_use_rest(gh, monkeypatch):
    """An older GitHub Enterprise Server refuses the whole mutation document (as the fake does for
    any field its schema lacks): nothing is written and the error names the setting."""
    import mlgate.edge.forges.github_graphql as gql

    gh.add_repo(REPO, {"values.yaml": VALUES})
    real = gql.write_document
    monkeypatch.setattr(gql, "write_document", lambda fields: real(fields).replace(
        "createCommitOnBranch(", "createCommitOnBranchV2("))
    with pytest.raises(ForgeError, match="github_api: rest"):
        forge(gh).open_promotion(request(REPO, "iris", "s3://m/iris/2"))
    assert gh.pulls(REPO) == [] and gh.repos[REPO].git.branches() == ["main"]
    assert len(gh.errors) == 1 and "createCommitOnBranchV2" in gh.errors[0]
    gh.errors.clear()


def test_rest_stays_available_by_setting(gh):
    from mlgate.edge.forges import forge_from_env

    gh.add_repo(REPO, {"values.yaml": VALUES})
    env = {"MLGATE_GITHUB_TOKEN": TOKEN, "MLGATE_GITHUB_API_URL": gh.url, "MLGATE_GITHUB_WRITE_INTERVAL": "0"}
    rest = forge_from_env(REPO, {**env, "MLGATE_GITHUB_API": "rest"})
    assert rest.open_promotion(request(REPO, "iris", "s3://m/iris/2")).api_calls == 6
    assert not gh.graphql_calls()
    assert forge_from_env(REPO, env).api == "graphql"
    with pytest.raises(Exception, match="github_api"):
        GitHubForge(gh.url, token=TOKEN, api="soap")


# ---------------------------------------------------------------------- the fake refuses what GitHub refuses


def post(gh: FakeGitHub, query: str, variables: dict | None = None) -> httpx.Response:
    return httpx.post(f"{gh.url}/graphql", json={"query": query, "variables": variables or {}},
                      headers={"Authorization": f"bearer {TOKEN}"})


@pytest.mark.parametrize("query,variables,says", [
    ('{ repository(owner: "acme", name: "deploy") { id defaultBranchOid } }', None,
     "Cannot query field 'defaultBranchOid' on type 'Repository'"),
    ('{ repository(owner: "acme", name: "deploy", branch: "main") { id } }', None,
     "Unknown argument 'branch' on field 'Query.repository'"),
    ("mutation($i: CreateRefInput!) { createRef(input: $i) { ref { id } } }",
     {"i": {"repositoryId": "R_1", "name": "refs/heads/x", "oid": "0" * 40, "sha": "x"}}, "Field 'sha' is not defined"),
    ("mutation($i: CreateCommitOnBranchInput!) { createCommitOnBranch(input: $i) { commit { oid } } }",
     {"i": {"branch": {"branchName": "x"}, "message": {"headline": "m"}}}, "expectedHeadOid"),
    ("mutation { createPullRequest(input: {repositoryId: \"R_1\", baseRefName: \"main\"}) { pullRequest { id } } }", None,
     "headRefName"),
])
def test_the_fake_refuses_documents_and_variables_the_schema_does_not_allow(gh, query, variables, says):
    gh.add_repo(REPO, {"values.yaml": VALUES})
    r = post(gh, query, variables)
    assert r.status_code == 200 and "data" not in r.json()  # GitHub: 200 with errors, nothing run
    assert says in " ".join(e["message"] for e in r.json()["errors"])
    assert len(gh.errors) == 1 and says in gh.errors[0]
    gh.errors.clear()
    assert gh.repos[REPO].git.branches() == ["main"]


def test_the_fake_answers_a_valid_document_with_githubs_shape_and_typed_refusals(gh):
    gh.add_repo(REPO, {"values.yaml": VALUES})
    r = post(gh, 'query($e: String!) { repository(owner: "acme", name: "deploy") { id f: object(expression: $e) '
                 '{ ... on Blob { text } } nope: label(name: "none") { id } } }', {"e": "main:values.yaml"})
    assert r.json() == {"data": {"repository": {"id": f"R_{gh.repos[REPO].id}", "f": {"text": VALUES}, "nope": None}}}
    r = post(gh, "mutation($i: CreateCommitOnBranchInput!) { createCommitOnBranch(input: $i) { commit { oid } } }",
             {"i": {"branch": {"repositoryNameWithOwner": REPO, "branchName": "main"}, "expectedHeadOid": "1" * 40,
                    "message": {"headline": "m"}, "fileChanges": {"additions": [{"path": "x", "contents": "eA=="}]}}})
    (err,) = r.json()["errors"]
    assert err["type"] == "STALE_DATA" and err["path"] == ["createCommitOnBranch"] and "Pull and try again" in err["message"]
    assert r.json()["data"] == {"createCommitOnBranch": None}
    assert httpx.post(f"{gh.url}/graphql", json={"nope": 1}, headers={"Authorization": f"bearer {TOKEN}"}).status_code == 400
    assert gh.errors == ["POST /graphql: the body has no query string"]
    gh.errors.clear()
