"""Repository names from payloads are checked against the forges' naming rules before any request
(issue 10: ``acme/../../orgs/acme`` made the bot call ``GET /orgs/acme/contents/.mlgate.yml``)."""

from __future__ import annotations

import pytest

from mlgate.core.events import Ignored, github_repo_problem, gitlab_path_problem, normalize
from mlgate.edge.forges.base import ForgeError, repo_path, safe_path

GOOD_GH = ["acme/app", "Codertocat/Hello-World", "a/b", "octo-org/.github", "o/x.y_z-1", "a" * 39 + "/" + "b" * 100,
           "user_shortcode/repo"]
BAD_GH = ["acme/../../orgs/acme", "acme/..", "acme/.", "../acme", "acme", "acme/app/x", "-acme/app",
          "acme/app?x=1", "acme/app#x", "acme/ap p", "acme/app%2F..", "a" * 40 + "/b", "a/" + "b" * 101,
          "acme/app\n", "acme/app\x00", "/acme/app", "acme/", "", "acme\\..\\x/y"]
GOOD_GL = ["gitlabhq/gitlab-test", "group/sub/project", "a_b/c.d", "jsmith/example", "g/" * 20 + "p"]
BAD_GL = ["group/../other/x", "group/..", "group/.hidden", "group/-x", "group/x.git", "group/x.atom", "project",
          "group//x", "group/x y", "group/a..b", "g/" * 22 + "p", "group/x%2f..", ""]


@pytest.mark.parametrize("name", GOOD_GH)
def test_github_names_that_exist(name: str) -> None:
    assert github_repo_problem(name) is None


@pytest.mark.parametrize("name", BAD_GH)
def test_github_names_github_never_sends(name: str) -> None:
    assert github_repo_problem(name)


@pytest.mark.parametrize("name", GOOD_GL)
def test_gitlab_paths_that_exist(name: str) -> None:
    assert gitlab_path_problem(name) is None


@pytest.mark.parametrize("name", BAD_GL)
def test_gitlab_paths_gitlab_never_sends(name: str) -> None:
    assert gitlab_path_problem(name)


def _gh_comment(full_name: str) -> dict:
    return {"action": "created", "issue": {"number": 1, "pull_request": {}, "user": {"login": "a"}},
            "comment": {"id": 5, "body": "/promote", "user": {"login": "carol", "type": "User"}},
            "repository": {"full_name": full_name, "default_branch": "main"}}


def _gl_note(path: str) -> dict:
    return {"object_kind": "note", "user": {"username": "carol", "id": 3},
            "project": {"id": 7, "path_with_namespace": path, "default_branch": "main"},
            "object_attributes": {"id": 9, "note": "/promote", "noteable_type": "MergeRequest", "action": "create"},
            "merge_request": {"iid": 2}}


@pytest.mark.parametrize("name", BAD_GH)
def test_a_github_delivery_with_a_bad_full_name_is_malformed(name: str) -> None:
    got = normalize("github", "issue_comment", _gh_comment(name))
    assert isinstance(got, Ignored) and got.reason.startswith("malformed payload: repository.full_name")


@pytest.mark.parametrize("name", BAD_GL)
def test_a_gitlab_delivery_with_a_bad_path_is_malformed(name: str) -> None:
    got = normalize("gitlab", "Note Hook", _gl_note(name))
    assert isinstance(got, Ignored) and got.reason.startswith("malformed payload: project.path_with_namespace")


def test_good_names_still_normalise() -> None:
    assert normalize("github", "issue_comment", _gh_comment("acme/app")).repo == "acme/app"  # type: ignore[union-attr]
    assert normalize("gitlab", "Note Hook", _gl_note("g/sub/p")).repo == "g/sub/p"  # type: ignore[union-attr]


@pytest.mark.parametrize("path", ["/repos/a/../../orgs/a/contents/x", "/repos/a/b/contents/%2e%2e/x",
                                  "/projects/a%2F..%2Fb/repository/files/x", "/repos/a/./b", "/repos/a/b/\x00",
                                  "/repos/a/b/contents/..%5Cx"])
def test_the_forge_clients_refuse_dot_segments_before_sending(path: str) -> None:
    with pytest.raises(ForgeError) as e:
        safe_path(path)
    assert e.value.status == 400


@pytest.mark.parametrize("path", ["/repos/a/b/contents/ml%2Fx.yaml", "/projects/g%2Fsub%2Fp/merge_requests/3",
                                  "/repos/a/b/compare/main...feature", "/repos/o/.github/pulls/1"])
def test_ordinary_paths_pass(path: str) -> None:
    assert safe_path(path) == path


@pytest.mark.parametrize("repository", ["acme/../x", "https://github.com/acme/../orgs/x.git",
                                        "git@github.com:acme/../x.git", "acme/-x"])
def test_a_gitops_repository_with_a_bad_segment_is_refused(repository: str) -> None:
    with pytest.raises(ForgeError):
        repo_path(repository)


def test_gitops_repositories_that_work() -> None:
    assert repo_path("git@github.com:acme/deployments.git") == "acme/deployments"
    assert repo_path("https://gitlab.example/g/sub/deploy.git") == "g/sub/deploy"
    assert repo_path("acme/.github") == "acme/.github"
