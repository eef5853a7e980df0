"""Webhook deliveries for the end-to-end tests, built from real payloads.

GitHub: from the payloads derived from ``@octokit/webhooks-examples`` (tests/fixtures/github),
with repository, numbers, users, commit ids and bodies replaced; every one is validated
against ``@octokit/webhooks-schemas`` before it is sent. GitLab: from the documented
examples in tests/fixtures/gitlab.
"""

from __future__ import annotations

import copy
import itertools
import json
from pathlib import Path
from typing import Any

from tests.fixtures.github import octokit

GL = Path(__file__).resolve().parents[2] / "fixtures" / "gitlab"
_ids = itertools.count(7_000_000)


def _user(base: dict[str, Any], login: str, uid: int, type_: str = "User") -> dict[str, Any]:
    u = copy.deepcopy(base)
    u.update(login=login, id=uid, node_id=f"U_{uid}", type=type_, url=f"https://api.github.com/users/{login}",
             html_url=f"https://github.com/{login}")
    return u


def _repo(p: dict[str, Any], full_name: str, fake_users: dict[str, Any]) -> None:
    owner, name = full_name.split("/")
    r = p["repository"]
    r.update(full_name=full_name, name=name, default_branch="main", html_url=f"https://github.com/{full_name}",
             url=f"https://api.github.com/repos/{full_name}")
    r["owner"] = _user(r["owner"], owner, fake_users.get(owner, {}).get("id", 1))


def github_comment(fake: Any, repo: str, number: int, commenter: str, body: str, *, author: str | None = None,
                   comment_id: int | None = None, action: str = "created", user_type: str = "User") -> dict[str, Any]:
    """An ``issue_comment`` on pull request ``number`` of ``repo`` (schema-checked)."""
    p = octokit.load("issue_comment.pr.edited.json" if action == "edited" else "issue_comment.pr.promote.json")
    pr = fake.repos[repo].pulls[number]
    author = author or pr.user
    _repo(p, repo, fake.users)
    issue = p["issue"]
    issue.update(number=number, title=pr.title, state="open", url=f"https://api.github.com/repos/{repo}/issues/{number}",
                 html_url=f"https://github.com/{repo}/pull/{number}")
    issue["user"] = _user(issue["user"], author, fake.user(author)["id"])
    issue["pull_request"].update(url=f"https://api.github.com/repos/{repo}/pulls/{number}",
                                 html_url=f"https://github.com/{repo}/pull/{number}")
    c = p["comment"]
    cid = comment_id or next(_ids)
    c.update(id=cid, node_id=f"IC_{cid}", body=body, html_url=f"https://github.com/{repo}/pull/{number}#issuecomment-{cid}")
    c["user"] = _user(c["user"], commenter, fake.user(commenter, user_type)["id"], user_type)
    p["sender"] = _user(p["sender"], commenter, fake.user(commenter, user_type)["id"], user_type)
    octokit.validate_webhook("issue_comment", p)
    return p


def github_review(fake: Any, repo: str, number: int, reviewer: str, state: str, commit_id: str) -> dict[str, Any]:
    """A ``pull_request_review`` submitted event (schema-checked)."""
    p = octokit.load("pull_request_review.approved.json")
    pr = fake.repos[repo].pulls[number]
    _repo(p, repo, fake.users)
    p["review"].update(state=state.lower(), commit_id=commit_id)
    p["review"]["user"] = _user(p["review"]["user"], reviewer, fake.user(reviewer)["id"])
    p["sender"] = _user(p["sender"], reviewer, fake.user(reviewer)["id"])
    p["pull_request"].update(number=number, title=pr.title)
    p["pull_request"]["user"] = _user(p["pull_request"]["user"], pr.user, fake.user(pr.user)["id"])
    p["pull_request"]["head"].update(sha=fake.repos[repo].git.branch(pr.head), ref=pr.head)
    p["pull_request"]["base"].update(ref=pr.base)
    octokit.validate_webhook("pull_request_review", p)
    return p


def github_merged(fake: Any, repo: str, number: int) -> dict[str, Any]:
    """A ``pull_request`` closed event with ``merged: true`` for a PR the fake merged (schema-checked)."""
    ex = next(e for e in octokit.examples()["pull_request"]
              if e["action"] == "closed" and octokit.is_valid("pull_request", e))
    p = copy.deepcopy(ex)
    pr = fake.repos[repo].pulls[number]
    _repo(p, repo, fake.users)
    p["number"] = number
    d = p["pull_request"]
    d.update(number=number, title=pr.title, body=pr.body, merged=True, state="closed",
             merge_commit_sha=pr.merge_commit, html_url=f"https://github.com/{repo}/pull/{number}",
             merged_at="2024-05-01T12:00:00Z", closed_at="2024-05-01T12:00:00Z")
    d["head"].update(ref=pr.head, sha=pr.merged_head)
    d["base"].update(ref=pr.base)
    octokit.validate_webhook("pull_request", p)
    return p


def github_pull_request(fake: Any, repo: str, number: int, action: str) -> dict[str, Any]:
    """A ``pull_request`` event (``synchronize``, ``opened``) for an open PR (schema-checked)."""
    ex = next(e for e in octokit.examples()["pull_request"]
              if e["action"] == action and octokit.is_valid("pull_request", e))
    p = copy.deepcopy(ex)
    pr = fake.repos[repo].pulls[number]
    _repo(p, repo, fake.users)
    p["number"] = number
    d = p["pull_request"]
    d.update(number=number, title=pr.title, body=pr.body or None, html_url=f"https://github.com/{repo}/pull/{number}")
    d["user"] = _user(d["user"], pr.user, fake.user(pr.user)["id"])
    d["head"].update(ref=pr.head, sha=fake.repos[repo].git.branch(pr.head))
    d["base"].update(ref=pr.base)
    octokit.validate_webhook("pull_request", p)
    return p


def gitlab_note(project: Any, iid: int, username: str, user_id: int, body: str, head_sha: str,
                note_id: int | None = None) -> dict[str, Any]:
    """A ``Note Hook`` on merge request ``iid`` (from the documented example)."""
    p = json.loads((GL / "note-merge-request.json").read_text())
    p["user"].update(username=username, id=user_id, name=username.title())
    p["project_id"] = project.id
    p["project"].update(id=project.id, path_with_namespace=project.path, default_branch=project.default_branch)
    nid = note_id or next(_ids)
    p["object_attributes"].update(id=nid, note=body, project_id=project.id, author_id=user_id)
    mr = project.mrs[iid]
    p["merge_request"].update(iid=iid, id=mr.id, source_branch=mr.source_branch, target_branch=mr.target_branch)
    p["merge_request"]["last_commit"]["id"] = head_sha
    return p
