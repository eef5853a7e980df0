"""The forge adapters against the fakes: API calls per promotion, retries, races, pagination, app tokens.

In-process (no bot server): :class:`GitHubForge` (PyGithub) and :class:`GitLabForge`
(python-gitlab) talk to the spec-checked fakes over HTTP on loopback.
"""

from __future__ import annotations

import time

import httpx
import pytest

from mlgate.edge.forges.base import FileEdit, ForgeBusy, PromotionRequest
from mlgate.edge.forges.github import GitHubForge, use_contents_api
from mlgate.edge.forges.gitlab import GitLabForge
from tests.fakes.github_server import FakeGitHub, app_keypair
from tests.fakes.gitlab_server import FakeGitLab

TOKEN = "ghp_forgetest"
VALUES = "models:\n  iris:\n    uri: s3://m/iris/1\n  wine:\n    uri: s3://m/wine/1\n"


@pytest.fixture
def gh(tmp_path):
    fake = FakeGitHub(tmp_path, tokens={TOKEN: "mlgate-bot"}).start()
    fake.user("mlgate-bot")
    yield fake
    fake.stop()
    assert fake.errors == [], fake.errors


@pytest.fixture
def gl(tmp_path):
    fake = FakeGitLab(tmp_path, tokens={"glpat-x": "mlgate-bot"}).start()
    fake.user("mlgate-bot")
    yield fake
    fake.stop()
    assert fake.errors == [], fake.errors


def forge(fake: FakeGitHub, api: str = "graphql") -> GitHubForge:
    """The GitHub forge; ``api="rest"`` for the REST promotion path (GHES without createCommitOnBranch)."""
    return GitHubForge(fake.url, token=TOKEN, write_interval=0, request_interval=0, bot_login="mlgate-bot", api=api)


def set_uri(model: str, uri: str):
    def apply(text: str) -> str:
        out, inside = [], False
        for line in text.splitlines(keepends=True):
            if line.strip() == f"{model}:":
                inside = True
            elif inside and line.strip().startswith("uri:"):
                line = line.split("uri:")[0] + f"uri: {uri}\n"
                inside = False
            out.append(line)
        return "".join(out)

    return apply


def request(repo: str, model: str, uri: str, mode: str = "pull-request", files=("values.yaml",)) -> PromotionRequest:
    return PromotionRequest(repo=repo, base="main", branch=f"mlgate/promote/{model}/prod/v2",
                            edits=tuple(FileEdit(f, set_uri(model, uri)) for f in files),
                            message=f"promote {model}", title=f"Promote {model}", body="**Change:** {{mlgate:change}}",
                            mode=mode)


def test_contents_api_is_chosen_when_it_needs_fewer_calls():
    assert use_contents_api(1) and use_contents_api(2) and not use_contents_api(3)


@pytest.mark.parametrize("api,calls", [("rest", 6), ("graphql", 3)])
def test_github_promotion_takes_six_rest_or_three_graphql_calls_and_is_idempotent(gh, api, calls):
    gh.add_repo("acme/deploy", {"values.yaml": VALUES})
    f = forge(gh, api)
    r = f.open_promotion(request("acme/deploy", "iris", "s3://m/iris/2"))
    assert r.created and r.changed and r.api_calls == calls
    assert gh.pulls("acme/deploy")[0].body == "**Change:** `values.yaml` line 3: `uri: s3://m/iris/1` → `uri: s3://m/iris/2`"
    again = forge(gh, api).open_promotion(request("acme/deploy", "iris", "s3://m/iris/2"))
    assert not again.created and not again.changed and again.url == r.url
    assert len(gh.pulls("acme/deploy")) == 1
    already = forge(gh, api).open_promotion(request("acme/deploy", "iris", "s3://m/iris/1"))
    assert already.url is None and not already.changed  # main already holds it: nothing written


def test_two_promotions_of_different_models_in_one_repository_both_land(gh):
    """Push mode, same file: the branch moves between read and write (409); re-read, re-apply, retry."""
    gh.add_repo("acme/deploy", {"values.yaml": VALUES})
    f = forge(gh, "rest")
    other = request("acme/deploy", "wine", "s3://m/wine/9", mode="push")
    gh.on_request("PUT", r"/contents/values\.yaml$", lambda: forge(gh, "rest").open_promotion(other))
    r = f.open_promotion(request("acme/deploy", "iris", "s3://m/iris/2", mode="push"))
    assert r.changed
    g = gh.repos["acme/deploy"].git
    text = g.read(g.branch("main"), "values.yaml").decode()
    assert "s3://m/iris/2" in text and "s3://m/wine/9" in text
    # wine's write (inside the hook), iris's write refused as stale, iris's write re-applied
    assert [c[2] for c in gh.calls("PUT", "values.yaml")] == [200, 409, 200]


def test_git_data_api_for_three_files_retries_when_not_a_fast_forward(gh):
    files = ("a.yaml", "b.yaml", "c.yaml")
    gh.add_repo("acme/deploy", {f: VALUES for f in files})
    gh.on_request("PATCH", r"/git/refs/heads/main$",
                  lambda: gh.commit("acme/deploy", "main", {"README.md": "moved under the bot\n"}))
    r = forge(gh, "rest").open_promotion(request("acme/deploy", "iris", "s3://m/iris/3", mode="push", files=files))
    assert r.changed
    assert [c[2] for c in gh.calls("PATCH", "git/refs")] == [422, 200]
    g = gh.repos["acme/deploy"].git
    tip = g.branch("main")
    assert all("s3://m/iris/3" in g.read(tip, f).decode() for f in files)
    assert g.read(tip, "README.md") == b"moved under the bot\n"
    # one commit for three files; in PR mode the same path opens the PR
    pr = forge(gh, "rest").open_promotion(request("acme/deploy", "wine", "s3://m/wine/3", files=files))
    assert pr.created and pr.api_calls == 4 + len(files) + 2  # branch, reads, tree, commit, ref + PR, label


def test_github_retries_server_errors_and_honours_retry_after(gh):
    gh.add_repo("acme/model", {".mlgate.yml": "model: iris\n"})
    gh.fail_next("GET", r"/contents/", 502, count=2)
    assert forge(gh).read_file("acme/model", ".mlgate.yml", "main") == "model: iris\n"
    gh.fail_next("GET", r"/contents/", 403, headers={"Retry-After": "1"},
                 message="You have exceeded a secondary rate limit. Please wait a few minutes before you try again.")
    started = time.monotonic()
    assert forge(gh).read_file("acme/model", ".mlgate.yml", "main") == "model: iris\n"
    assert time.monotonic() - started >= 1.0
    gh.fail_next("GET", r"/contents/", 429, headers={"Retry-After": "120"}, message="API rate limit exceeded")
    with pytest.raises(ForgeBusy) as e:
        forge(gh).read_file("acme/model", ".mlgate.yml", "main")
    assert e.value.retry_after == 120


def test_github_reads_every_page_of_reviews(gh):
    gh.add_repo("acme/model", {"x": "1"})
    sha = gh.commit("acme/model", "f", {"x": "2"}, author="alice")
    pr = gh.open_pr("acme/model", "f", user="alice")
    for i in range(104):
        gh.add_review("acme/model", pr.number, "bob", "COMMENTED", commit_id=sha, at=f"2024-01-01T00:{i // 60:02d}:{i % 60:02d}Z")
    gh.add_review("acme/model", pr.number, "carol", "APPROVED", commit_id=sha, at="2024-01-02T00:00:00Z")
    f = forge(gh)
    reviews = f.reviews("acme/model", pr.number)
    assert len(reviews) == 105 and reviews[-1].user == "carol"
    assert f.api_calls == 2


def test_one_comment_per_pr_updated_in_place(gh):
    gh.add_repo("acme/model", {"x": "1"})
    gh.commit("acme/model", "f", {"x": "2"})
    pr = gh.open_pr("acme/model", "f")
    # someone quoting mlgate's comment, marker included: not ours, never edited
    human = GitHubForge(gh.url, token="ghp_human", write_interval=0, request_interval=0)
    gh.tokens["ghp_human"] = ("alice", None)
    human.upsert_comment("acme/model", pr.number, "> <!-- mlgate -->\n> quoted")
    cid, _ = forge(gh).upsert_comment("acme/model", pr.number, "first")
    cid2, _ = forge(gh).upsert_comment("acme/model", pr.number, "second")  # found by the marker
    cid3, _ = forge(gh).upsert_comment("acme/model", pr.number, "third", known_id=cid)
    assert cid == cid2 == cid3
    bodies = [(c.user, c.body) for c in gh.comments("acme/model", pr.number)]
    assert bodies == [("alice", "> <!-- mlgate -->\n> quoted"), ("mlgate-bot", "<!-- mlgate -->\nthird")]


def test_github_app_installation_token_is_refreshed_before_it_expires(tmp_path):
    private, public = app_keypair()
    fake = FakeGitHub(tmp_path, app=(4242, public), token_ttl=21.5).start()
    try:
        fake.add_repo("acme/model", {".mlgate.yml": "model: iris\n"})
        f = GitHubForge(fake.url, app_id=4242, private_key=private, installation_id=77, write_interval=0,
                        request_interval=0)
        assert f.read_file("acme/model", ".mlgate.yml", "main") == "model: iris\n"
        time.sleep(2)  # the token is now within PyGithub's 20 s refresh margin of its expiry
        assert f.read_file("acme/model", ".mlgate.yml", "main") == "model: iris\n"
        assert len(fake.minted) == 2
        assert not [r for r in fake.requests if r[2] == 401]
        assert fake.errors == []
    finally:
        fake.stop()


def test_the_fake_rejects_what_github_would_reject(gh):
    gh.add_repo("acme/model", {"x": "1"})
    auth = {"Authorization": f"token {TOKEN}"}
    r = httpx.post(f"{gh.url}/repos/acme/model/pulls", json={"title": 5, "head": "f"}, headers=auth)
    assert r.status_code == 422
    r = httpx.get(f"{gh.url}/repos/acme/model/pullz", headers=auth)
    assert r.status_code == 404
    r = httpx.get(f"{gh.url}/repos/acme/model/pulls", params={"state": "merged"}, headers=auth)
    assert r.status_code == 422
    assert len(gh.errors) == 3 and "base" in gh.errors[0] and "no such operation" in gh.errors[1]
    gh.errors.clear()


def test_gitlab_promotion_takes_three_calls_and_is_idempotent(gl):
    gl.add_project("grp/deploy", {"values.yaml": VALUES})
    f = GitLabForge(gl.url, token="glpat-x", bot_login="mlgate-bot")
    r = f.open_promotion(request("grp/deploy", "iris", "s3://m/iris/2"))
    assert r.created and r.changed and r.api_calls == 3
    again = GitLabForge(gl.url, token="glpat-x").open_promotion(request("grp/deploy", "iris", "s3://m/iris/2"))
    assert not again.created and again.number == r.number and len(gl.projects["grp/deploy"].mrs) == 1


def test_gitlab_push_mode_rereads_when_the_file_changed(gl):
    gl.add_project("grp/deploy", {"values.yaml": VALUES})
    f = GitLabForge(gl.url, token="glpat-x")
    original = f._file

    def racing(repo, path, ref):  # another promotion lands between our read and our commit
        got = original(repo, path, ref)
        if not racing.done:
            racing.done = True
            gl.commit("grp/deploy", "main", {"values.yaml": set_uri("wine", "s3://m/wine/9")(VALUES)})
        return got

    racing.done = False
    f._file = racing  # type: ignore[method-assign]
    r = f.open_promotion(request("grp/deploy", "iris", "s3://m/iris/2", mode="push"))
    assert r.changed
    p = gl.projects["grp/deploy"]
    text = p.git.read(p.git.branch("main"), "values.yaml").decode()
    assert "s3://m/iris/2" in text and "s3://m/wine/9" in text
    assert [c[2] for c in gl.requests if c[0] == "POST"] == [400, 201]


def test_mlgate_promote_pull_request_mode_writer(gh):
    """``mlgate promote`` (GitOps mode pull-request) gets its writer from MLGATE_* variables; the
    branch, title, body and label come from the typed promotion, not from the message text."""
    from mlgate.core.promotion import Change, Promotion, parse_hidden, parse_message
    from mlgate.edge.forges import writer_from_env

    gh.add_repo("acme/deploy", {"values.yaml": VALUES})
    writer = writer_from_env({"MLGATE_GITHUB_TOKEN": TOKEN, "MLGATE_GITHUB_API_URL": gh.url,
                              "MLGATE_GITHUB_WRITE_INTERVAL": "0"})
    p = Promotion("iris", "2", "prod", "champion")
    change = Change(repository="https://github.com/acme/deploy.git", branch="main", path="values.yaml",
                    message=p.message(), edit=set_uri("iris", "s3://m/iris/2"), promotion=p)
    res = writer.write(change)
    assert res.changed and res.created and res.url and "s3://m/iris/2" in res.diff and not res.landed
    pr = gh.pulls("acme/deploy")[0]
    assert pr.head == "mlgate/promote/iris/prod/v2" and pr.title == "Promote iris to version 2 in prod"
    assert parse_hidden(pr.body)["alias"] == "champion" and "mlgate-promotion" in pr.labels
    g = gh.repos["acme/deploy"].git
    assert parse_message(g.commit_info(g.branch(pr.head))["message"]) == p


# ---------------------------------------------------------------- closing PRs, status contexts, forks


def test_github_close_pull_request_comments_then_closes_once(gh):
    gh.add_repo("acme/deploy", {"values.yaml": VALUES})
    f = forge(gh)
    step = f.open_promotion(request("acme/deploy", "iris", "s3://m/iris/2"))
    assert f.close_pull_request("acme/deploy", step.number, "the canary was rolled back") is True
    pr = gh.repos["acme/deploy"].pulls[step.number]
    assert pr.state == "closed" and not pr.merged
    assert [(c.user, c.body) for c in gh.comments("acme/deploy", step.number)] == [
        ("mlgate-bot", "the canary was rolled back")]
    assert [c[2] for c in gh.calls("PATCH", rf"/pulls/{step.number}$")] == [200]
    # already closed, or merged: nothing written
    assert f.close_pull_request("acme/deploy", step.number, "again") is False
    other = f.open_promotion(request("acme/deploy", "wine", "s3://m/wine/2"))
    gh.merge_pr("acme/deploy", other.number)
    assert f.close_pull_request("acme/deploy", other.number, "too late") is False
    assert len(gh.comments("acme/deploy", step.number)) == 1 and gh.comments("acme/deploy", other.number) == []
    assert len(gh.calls("PATCH", r"/pulls/\d+$")) == 1


def test_github_fake_refuses_to_change_the_state_of_a_merged_pr(gh):
    gh.add_repo("acme/deploy", {"values.yaml": VALUES})
    pr = forge(gh).open_promotion(request("acme/deploy", "iris", "s3://m/iris/2"))
    gh.merge_pr("acme/deploy", pr.number)
    r = httpx.patch(f"{gh.url}/repos/acme/deploy/pulls/{pr.number}", json={"state": "closed"},
                    headers={"Authorization": f"token {TOKEN}"})
    assert r.status_code == 422 and "merged" in r.text
    assert gh.repos["acme/deploy"].pulls[pr.number].merged


def test_gitlab_close_merge_request_notes_then_closes_once(gl):
    gl.add_project("grp/deploy", {"values.yaml": VALUES})
    f = GitLabForge(gl.url, token="glpat-x", bot_login="mlgate-bot")
    step = f.open_promotion(request("grp/deploy", "iris", "s3://m/iris/2"))
    assert f.close_pull_request("grp/deploy", step.number, "the canary was aborted") is True
    p = gl.projects["grp/deploy"]
    assert p.mrs[step.number].state == "closed"
    assert [(n.author, n.body) for n in p.notes.values()] == [("mlgate-bot", "the canary was aborted")]
    assert f.close_pull_request("grp/deploy", step.number, "again") is False
    p.mrs[step.number].state = "merged"
    assert f.close_pull_request("grp/deploy", step.number, "merged") is False
    assert len(p.notes) == 1 and p.mrs[step.number].state == "merged"
    r = httpx.put(f"{gl.url}/api/v4/projects/grp%2Fdeploy/merge_requests/{step.number}",
                  json={"state_event": "shut"}, headers={"PRIVATE-TOKEN": "glpat-x"})
    assert r.status_code == 400 and "state_event" in gl.errors[-1]
    gl.errors.clear()


def test_set_status_takes_a_context_on_both_forges(gh, gl):
    gh.add_repo("acme/model", {"x": "1"})
    sha = gh.repos["acme/model"].git.branch("main")
    forge(gh).set_status("acme/model", sha, "pending", "Argo workflow train-abc: Running", "https://argo/wf",
                         context="mlgate/train")
    forge(gh).set_status("acme/model", sha, "success", "all gates passed")
    assert [(s["context"], s["state"]) for s in gh.statuses("acme/model", sha)] == [
        ("mlgate/train", "pending"), ("mlgate/gates", "success")]
    p = gl.add_project("grp/model", {"x": "1"})
    sha = p.git.branch("main")
    f = GitLabForge(gl.url, token="glpat-x")
    f.set_status("grp/model", sha, "failure", "Argo workflow failed", context="mlgate/train")
    f.set_status("grp/model", sha, "success", "all gates passed")
    assert [(s["name"], s["status"]) for s in p.statuses[sha]] == [
        ("mlgate/train", "failed"), ("mlgate/gates", "success")]


def test_github_pull_request_from_a_fork_names_the_forks_clone_url(gh):
    gh.add_repo("acme/model", {"train.py": "x = 1\n"})
    gh.fork("acme/model", "mallory")
    sha = gh.commit("mallory/model", "feature", {"train.py": "x = 2\n"}, author="mallory")
    fork_pr = gh.open_pr("acme/model", "feature", user="mallory", head_repo="mallory/model")
    gh.commit("acme/model", "inside", {"train.py": "x = 3\n"}, author="alice")
    own_pr = gh.open_pr("acme/model", "inside", user="alice")
    f = forge(gh)
    got = f.pull_request("acme/model", fork_pr.number)
    assert got.head_sha == sha and got.head_ref == "feature" and got.author == "mallory"
    assert got.head_repo_url == f"{gh.url}/mallory/model.git"
    assert f.pull_request("acme/model", own_pr.number).head_repo_url == f"{gh.url}/acme/model.git"
    assert f.committers("acme/model", fork_pr.number) == {"mallory"}
    # the fake's repositories carry their own clone addresses
    r = httpx.get(f"{gh.url}/repos/acme/model", headers={"Authorization": f"token {TOKEN}"}).json()
    assert r["clone_url"] == f"{gh.url}/acme/model.git" and r["ssh_url"] == "git@127.0.0.1:acme/model.git"


def test_gitlab_merge_request_from_a_fork_names_the_source_projects_clone_url(gl):
    gl.add_project("grp/model", {"train.py": "x = 1\n"})
    gl.fork("grp/model", "mallory")
    sha = gl.commit("mallory/model", "feature", {"train.py": "x = 2\n"}, author="mallory")
    mr = gl.open_mr("grp/model", "feature", author="mallory", source_project="mallory/model")
    f = GitLabForge(gl.url, token="glpat-x")
    got = f.pull_request("grp/model", mr.iid)
    assert got.head_sha == sha and got.head_repo_url == f"{gl.url}/mallory/model.git"
    gl.commit("grp/model", "inside", {"train.py": "x = 3\n"})
    own = gl.open_mr("grp/model", "inside")
    assert f.pull_request("grp/model", own.iid).head_repo_url == f"{gl.url}/grp/model.git"


# ---------------------------------------------------------------------- issue 10: a PR that lost its label


def test_github_create_pr_whose_answer_was_lost_is_opened_once_and_labelled(gh):
    """The create-PR POST went through but its connection dropped: the retry finds the PR open,
    reports it as opened by this call (this call created its branch), and labels it."""
    gh.add_repo("acme/deploy", {"values.yaml": VALUES})
    gh.drop_answer("POST", r"^/repos/acme/deploy/pulls$")
    r = forge(gh, "rest").open_promotion(request("acme/deploy", "iris", "s3://m/iris/2"))
    assert [c for c in gh.calls("POST", r"/pulls$")] == [("POST", "/repos/acme/deploy/pulls", 0),
                                                          ("POST", "/repos/acme/deploy/pulls", 422)]
    prs = gh.pulls("acme/deploy")
    assert len(prs) == 1 and r.created and r.number == prs[0].number
    assert prs[0].labels == ["mlgate-promotion"] and prs[0].title == "Promote iris"


def test_github_open_pr_found_again_converges_to_the_promotions_title_body_and_label(gh):
    """An attempt killed after its create-PR call left the PR without its label (and a human may
    have edited it): the next write restores title, body and label, keeps other labels, and does
    not claim it opened the PR (the branch was there already)."""
    gh.add_repo("acme/deploy", {"values.yaml": VALUES})
    first = forge(gh).open_promotion(request("acme/deploy", "iris", "s3://m/iris/2"))
    pr = gh.pulls("acme/deploy")[0]
    pr.labels[:] = ["keep-me"]
    pr.title, pr.body = "edited", "edited"
    again = forge(gh).open_promotion(request("acme/deploy", "iris", "s3://m/iris/2"))
    assert not again.created and again.number == first.number and len(gh.pulls("acme/deploy")) == 1
    assert sorted(pr.labels) == ["keep-me", "mlgate-promotion"] and pr.title == "Promote iris"
    assert pr.body.startswith("**Change:** `values.yaml` line 3")
    calls = len(gh.requests)
    forge(gh).open_promotion(request("acme/deploy", "iris", "s3://m/iris/2"))  # in its end state: no write
    assert not [c for c in gh.requests[calls:] if c[0] == "PATCH" or c[1].endswith("/labels")]


def test_gitlab_create_mr_whose_answer_was_lost_is_opened_once_and_labelled(gl):
    gl.add_project("grp/deploy", {"values.yaml": VALUES})
    gl.drop_answer("POST", r"/projects/[^/]+/merge_requests$")
    r = GitLabForge(gl.url, token="glpat-x", bot_login="mlgate-bot").open_promotion(
        request("grp/deploy", "iris", "s3://m/iris/2"))
    mrs = gl.projects["grp/deploy"].mrs
    assert len(mrs) == 1 and r.created and r.number == next(iter(mrs))
    assert [s for m, p, s in gl.requests if m == "POST" and p.endswith("/merge_requests")] == [0, 409]
    mr = next(iter(mrs.values()))
    assert mr.labels == ["mlgate-promotion"] and mr.title == "Promote iris"


def test_gitlab_open_mr_found_again_converges_to_the_promotions_title_description_and_label(gl):
    gl.add_project("grp/deploy", {"values.yaml": VALUES})
    f = lambda: GitLabForge(gl.url, token="glpat-x", bot_login="mlgate-bot")  # noqa: E731
    first = f().open_promotion(request("grp/deploy", "iris", "s3://m/iris/2"))
    mr = gl.projects["grp/deploy"].mrs[first.number]
    mr.labels, mr.title, mr.description = ["keep-me"], "edited", "edited"
    again = f().open_promotion(request("grp/deploy", "iris", "s3://m/iris/2"))
    assert not again.created and again.number == first.number and len(gl.projects["grp/deploy"].mrs) == 1
    assert mr.labels == ["keep-me", "mlgate-promotion"] and mr.title == "Promote iris"
    assert mr.description.startswith("**Change:** `values.yaml` line 3")
    calls = len(gl.requests)
    f().open_promotion(request("grp/deploy", "iris", "s3://m/iris/2"))  # in its end state: no write
    assert not [c for c in gl.requests[calls:] if c[0] == "PUT"]


def test_gitlab_note_found_by_marker_is_the_oldest_of_the_bots(gl):
    """GitLab lists notes newest first unless asked: the bot asks oldest first, so with two old
    mlgate notes on an MR (left by an earlier version) it keeps updating the first one."""
    gl.add_project("grp/model", {"x": "1"})
    gl.commit("grp/model", "f", {"x": "2"})
    mr = gl.open_mr("grp/model", "f")
    f = GitLabForge(gl.url, token="glpat-x", bot_login="mlgate-bot")
    first, _ = f.upsert_comment("grp/model", mr.iid, "one")
    f._api("post", f"/projects/grp%2Fmodel/merge_requests/{mr.iid}/notes", body={"body": "<!-- mlgate -->\ntwo"})
    again, _ = f.upsert_comment("grp/model", mr.iid, "three")
    assert again == first
    assert gl.projects["grp/model"].notes[first].body == "<!-- mlgate -->\nthree"
