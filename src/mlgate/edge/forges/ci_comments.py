"""The gate report's comment, published by ``mlgate report publish`` from a CI job.

ONE comment on the GitHub pull request (REST "Issue comments", through httpx, retried with
stamina on 5xx/429/secondary rate limit) or ONE note on the GitLab merge request (REST "Notes",
through httpx too, so a base install without python-gitlab publishes it), found by
:data:`~mlgate.core.report.COMMENT_MARKER` and its key (:func:`mlgate.core.ci_report.find_comment`)
and upserted by the shared :func:`mlgate.edge.forges.comments.upsert_marked_comment`.

Errors are exit codes: the token refused (401/403/404) is a :class:`UsageError`; 5xx/429 after
the retries, or the forge unreachable, an :class:`InfraError`. No message holds the token.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import httpx
import stamina

from mlgate import __version__
from mlgate.core.ci_report import find_comment, retry_after
from mlgate.core.errors import InfraError, UsageError
from mlgate.edge.forges.comments import Comment, upsert_marked_comment

USER_AGENT = "mlgate-report"
#: Retry budget for forge calls: attempts and total seconds (stamina).
ATTEMPTS = 5
TIMEOUT = 120.0


def _ours(key: str | None) -> Callable[[Comment], bool]:
    """The report's comment: :data:`COMMENT_MARKER`, and the key's marker (none without a key)."""
    return lambda c: find_comment([(c["id"], c.get("body") or "")], key) is not None


# --------------------------------------------------------------------------- GitHub (httpx)


class _Retryable(Exception):
    """A forge answer worth retrying; carries the wait the forge asked for (seconds, 0 = default)."""

    def __init__(self, what: str, wait: float):
        super().__init__(what)
        self.wait = wait


def _retry_hook(exc: Exception) -> bool | float:
    if isinstance(exc, _Retryable):
        return exc.wait if exc.wait > 0 else True
    return isinstance(exc, httpx.TransportError)


def _github_call(client: httpx.Client, method: str, url: str, **kwargs: Any) -> httpx.Response:
    """One GitHub REST call, retried on 5xx, 429, the secondary rate limit and transport errors."""
    try:
        for attempt in stamina.retry_context(on=_retry_hook, attempts=ATTEMPTS, timeout=TIMEOUT,
                                             wait_initial=1.0, wait_max=30.0):
            with attempt:
                resp = client.request(method, url, **kwargs)
                wait = retry_after(resp.status_code, resp.headers)
                if wait is not None:
                    raise _Retryable(f"{method} {url} answered {resp.status_code}", wait)
                return resp
    except _Retryable as e:
        raise InfraError(f"GitHub API: {e} after {ATTEMPTS} attempts") from None
    except httpx.TransportError as e:
        raise InfraError(f"GitHub API unreachable at {url}: {type(e).__name__}: {e}") from None
    raise AssertionError("unreachable")  # pragma: no cover


def _github_check(resp: httpx.Response, what: str) -> None:
    if resp.status_code < 400:
        return
    try:
        message = resp.json().get("message", "")
    except ValueError:
        message = resp.text[:200]
    hint = ""
    if resp.status_code in (401, 403, 404):
        hint = " (the token needs pull-requests: write on this repository; fork PRs get a read-only token)"
        raise UsageError(f"GitHub refused to {what}: {resp.status_code} {message}{hint}")
    raise InfraError(f"GitHub failed to {what}: {resp.status_code} {message}")


class GitHubIssueComments:
    """The comments of one GitHub pull request over httpx (a :class:`~.comments.CommentThread`)."""

    def __init__(self, client: httpx.Client, target: Any):
        self.client = client
        self.number = target.number
        self.base = f"{target.api_url}/repos/{target.repository}"

    def comments(self) -> list[Comment]:
        out: list[Comment] = []
        url: str | None = f"{self.base}/issues/{self.number}/comments"
        params: dict[str, Any] | None = {"per_page": 100}
        while url:
            resp = _github_call(self.client, "GET", url, params=params)
            _github_check(resp, f"list the comments of #{self.number}")
            out.extend(resp.json())
            url = resp.links.get("next", {}).get("url")
            params = None  # the next link carries its own query
        return out

    def create(self, body: str) -> Comment:
        resp = _github_call(self.client, "POST", f"{self.base}/issues/{self.number}/comments", json={"body": body})
        _github_check(resp, f"comment on #{self.number}")
        return resp.json()

    def update(self, comment_id: Any, body: str, *, missing_ok: bool = False) -> Comment | None:
        resp = _github_call(self.client, "PATCH", f"{self.base}/issues/comments/{comment_id}", json={"body": body})
        if missing_ok and resp.status_code in (404, 410):
            return None
        _github_check(resp, f"update comment {comment_id} on #{self.number}")
        return resp.json()


def publish_github(target: Any, body: str, key: str | None) -> tuple[str, str]:
    """Create or update the one mlgate comment on a GitHub pull request.

    Args:
        target: a :class:`mlgate.core.ci_report.GitHubTarget`.
        body: the full comment text (markers included).
        key: the comment key (see :func:`mlgate.core.ci_report.find_comment`).

    Returns:
        ``("created" | "updated", html_url)``.

    Raises:
        UsageError: the token was refused (401/403/404).
        InfraError: 5xx/429 after the retries, or GitHub unreachable.
    """
    headers = {
        "Accept": "application/vnd.github+json",
        "Authorization": f"Bearer {target.token}",
        "X-GitHub-Api-Version": "2022-11-28",
        "User-Agent": f"{USER_AGENT}/{__version__}",
    }
    with httpx.Client(headers=headers, timeout=30.0) as client:
        action, comment = upsert_marked_comment(GitHubIssueComments(client, target), body, _ours(key))
    return action, comment.get("html_url", "")


# --------------------------------------------------------------------------- GitLab (httpx)
# Over httpx like GitHub, not python-gitlab: python-gitlab comes with the bot extra, and a CI job's
# base install (mlflow-skinny, no extras) must publish its note too (issue 12).


def _gitlab_call(client: httpx.Client, method: str, url: str, **kwargs: Any) -> httpx.Response:
    """One GitLab REST call, retried on 5xx, 429 and transport errors (as :func:`_github_call`)."""
    try:
        return _github_call(client, method, url, **kwargs)
    except InfraError as e:
        raise InfraError(str(e).replace("GitHub API", "GitLab API", 1)) from None


def _gitlab_check(resp: httpx.Response, target: Any, what: str) -> None:
    """GitLab REST errors ("Merge request notes API"): 401/403/404 are the token's, the rest GitLab's."""
    if resp.status_code < 400:
        return
    try:
        message = resp.json().get("message", "")
    except ValueError:
        message = resp.text[:200]
    if resp.status_code in (401, 403, 404):
        raise UsageError(f"GitLab refused to {what} on {target}: {resp.status_code} {message} "
                         "(MLGATE_GITLAB_TOKEN needs the api scope and at least the Reporter role)")
    raise InfraError(f"GitLab failed to {what} on {target}: {resp.status_code} {message}")


class GitLabMergeRequestNotes:
    """The notes of one GitLab merge request over httpx (a :class:`~.comments.CommentThread`),
    GitLab's "Merge request notes API": ``/projects/:id/merge_requests/:iid/notes``."""

    def __init__(self, client: httpx.Client, target: Any):
        self.client = client
        self.target = target
        project = quote(str(target.project), safe="")
        self.base = f"{target.server_url.rstrip('/')}/api/v4/projects/{project}/merge_requests/{target.iid}/notes"

    def comments(self) -> list[Comment]:
        out: list[Comment] = []
        url: str | None = self.base
        params: dict[str, Any] | None = {"per_page": 100, "sort": "asc", "order_by": "created_at"}
        while url:
            resp = _gitlab_call(self.client, "GET", url, params=params)
            _gitlab_check(resp, self.target, "list the notes")
            out.extend({"id": n["id"], "body": n.get("body") or ""} for n in resp.json())
            url = resp.links.get("next", {}).get("url")
            params = None  # the next link carries its own query
        return out

    def create(self, body: str) -> Comment:
        resp = _gitlab_call(self.client, "POST", self.base, json={"body": body})
        _gitlab_check(resp, self.target, "add the note")
        return {"id": resp.json()["id"], "body": body}

    def update(self, comment_id: Any, body: str, *, missing_ok: bool = False) -> Comment | None:
        resp = _gitlab_call(self.client, "PUT", f"{self.base}/{comment_id}", json={"body": body})
        if missing_ok and resp.status_code == 404:
            return None
        _gitlab_check(resp, self.target, f"update note {comment_id}")
        return {"id": comment_id, "body": body}


def publish_gitlab(target: Any, body: str, key: str | None) -> tuple[str, str]:
    """Create or update the one mlgate note on a GitLab merge request.

    Args:
        target: a :class:`mlgate.core.ci_report.GitLabTarget`.
        body: the full note text (markers included).
        key: the note key (see :func:`mlgate.core.ci_report.find_comment`).

    Returns:
        ``("created" | "updated", note reference)``.

    Raises:
        UsageError: the token was refused (401/403/404).
        InfraError: 5xx/429 after the retries, or GitLab unreachable.
    """
    headers = {"PRIVATE-TOKEN": target.token, "User-Agent": f"{USER_AGENT}/{__version__}"}
    with httpx.Client(headers=headers, timeout=30.0) as client:
        action, note = upsert_marked_comment(GitLabMergeRequestNotes(client, target), body, _ours(key))
    return action, target.note_url(note["id"])
