"""GitLab through python-gitlab: merge requests, approvals, notes, statuses, promotion MRs.

Edge adapter over GitLab REST API v4 (docs.gitlab.com/api: merge_requests, merge_request_approvals,
members, notes, commits, repository_files, repositories#compare-branches-tags-or-commits,
commits#set-the-pipeline-status-of-a-commit).
Shapes checked against the documented examples kept in ``tests/fixtures/gitlab/``.

Retries: python-gitlab sleeps ``Retry-After`` on 429 (``obey_rate_limit``, at most 3 times);
5xx and connection errors are retried by stamina (:func:`call_with_retries`).

A promotion takes 3 calls: read the file on the target branch, one ``POST
/repository/commits`` that creates the branch (``start_branch``) and the commit for any
number of files, and ``POST /merge_requests`` with the label
(:class:`~mlgate.edge.forges.gitlab_promotion.GitLabPromotions`).

python-gitlab is imported at the top: this module is imported only when a forge is built
(:func:`mlgate.edge.forges.make_forge`), never at CLI start-up.
"""

from __future__ import annotations

import base64
import re
from typing import Any
from urllib.parse import quote

import gitlab
import requests
from gitlab.exceptions import GitlabHttpError

from mlgate.core.doctor import GITLAB_DEVELOPER, gitlab_level, gitlab_level_name
from mlgate.core.freshness import Comparison, FileChange
from mlgate.core.errors import UsageError
from mlgate.core.policy import Review, gitlab_permission
from mlgate.edge.forges.base import (
    MARKER,
    STATUS_CONTEXT,
    CommittersUnresolved,
    ForgeError,
    GitLabApprovals,
    PullRequest,
    RepoAccess,
    forge_call,
    safe_path,
)
from mlgate.edge.forges.comments import Comment, upsert_marked_comment
from mlgate.edge.forges.gitlab_promotion import GitLabPromotions, enc_project

PER_PAGE = 100
#: GitLab's private commit e-mail: ``<user id>-<username>@users.noreply.<host>`` (docs: "Use an
#: automatically generated private commit email").
_NOREPLY = re.compile(r"^\d+-([A-Za-z0-9_.-]+)@users\.noreply\.")
_STATE = {"pending": "pending", "success": "success", "failure": "failed", "error": "failed"}


def _classify(exc: BaseException) -> bool:
    if isinstance(exc, GitlabHttpError):
        return (exc.response_code or 0) >= 500 or exc.response_code == 429
    return isinstance(exc, (requests.ConnectionError, requests.Timeout, ConnectionError))


class GitLabProbes:
    """Read-only checks for ``mlgate doctor`` (part of :class:`GitLabForge`)."""

    # from GitLabForge: _api(verb, path, query, body), _code(e)
    _api: Any
    _code: Any

    def repository_access(self, repo: str) -> RepoAccess:
        """Whether the token sees project ``repo`` and may open a promotion MR there (Developer,
        access level 30, or higher), reading only.

        ``GET /projects/:id`` (docs "Get a single project"): the higher of ``permissions.project_access``
        and ``permissions.group_access``. GitLab leaves both null for access inherited from a parent
        group or through a shared group; then ``GET /user`` and ``GET /projects/:id/members/all/:user_id``
        (docs "Get a member of a group or project, including inherited and invited members") give the
        effective level (404: not a member). A 404 for the project is ``exists=False``.

        Raises:
            ForgeError: GitLab refused the token (401/403); ForgeBusy: see the class.
        """
        enc = enc_project(repo)
        try:
            d = self._api("get", f"/projects/{enc}")
            level = gitlab_level((d or {}).get("permissions"))
            if level is None:
                me = self._api("get", "/user") or {}
                if me.get("is_admin") is True:
                    return RepoAccess(True, str(d.get("default_branch") or ""), True, "administrator")
                try:
                    level = int((self._api("get", f"/projects/{enc}/members/all/{int(me['id'])}") or {})
                                .get("access_level") or 0)
                except GitlabHttpError as e:
                    if self._code(e) != 404:
                        raise
                    level = 0
        except GitlabHttpError as e:
            if self._code(e) == 404:
                return RepoAccess(False)
            raise ForgeError(f"GitLab refused to read project {repo}: {e.response_code} {e.error_message}",
                             self._code(e)) from None
        return RepoAccess(True, str(d.get("default_branch") or ""), level >= GITLAB_DEVELOPER,
                          f"access level {gitlab_level_name(level)}")

    def whoami(self) -> str:
        """Whom the token authenticates (``GET /user``, docs "Get the current user"): its username.

        Raises:
            ForgeError: GitLab refused the token (401/403); ForgeBusy: see the class."""
        try:
            d = self._api("get", "/user") or {}
        except GitlabHttpError as e:
            raise ForgeError(f"GitLab refused the token: {e.response_code} {e.error_message}", self._code(e)) from None
        return str(d.get("username") or "")

    def branch_exists(self, repo: str, branch: str) -> bool:
        """``GET /projects/:id/repository/branches/:branch`` (docs "Get single repository branch"):
        200 True, 404 False; ForgeError for another refusal."""
        try:
            self._api("get", f"/projects/{enc_project(repo)}/repository/branches/{quote(branch, safe='')}")
        except GitlabHttpError as e:
            if self._code(e) == 404:
                return False
            raise ForgeError(f"GitLab refused to read branch {branch} of {repo}: {e.response_code} "
                             f"{e.error_message}", self._code(e)) from None
        return True


class GitLabForge(GitLabPromotions, GitLabProbes):
    """GitLab REST API v4 with a token.

    Args:
        url: GitLab base URL (``https://gitlab.com`` or a test fake).
        token: a project/group access token or personal access token (``api`` scope).
        bot_login: the bot's username, to find its note when no note id is known.

    Raises (from every method): :class:`ForgeBusy` (retry later), :class:`ForgeError` (refusal).
    """

    name = "gitlab"

    def __init__(self, url: str = "https://gitlab.com", *, token: str | None = None, bot_login: str | None = None,
                 timeout: float = 15.0):
        if not token:
            raise UsageError("no GitLab credentials: set MLGATE_GITLAB_TOKEN")  # configuration: exit 2
        self.url = url.rstrip("/")
        self._gl = gitlab.Gitlab(self.url, private_token=token, timeout=timeout, per_page=PER_PAGE)
        self.api_calls = 0
        self.bot_login = bot_login
        self._me: str | None = None

    # ------------------------------------------------------------------ plumbing

    def _api(self, verb: str, path: str, query: dict[str, Any] | None = None, body: dict[str, Any] | None = None) -> Any:
        safe_path(path)  # ForgeError, nothing sent, for a dot segment (also inside an encoded project path)

        def send() -> Any:
            r = self._gl.http_request(verb, path, query_data=query, post_data=body, obey_rate_limit=True,
                                      retry_transient_errors=False, max_retries=3)
            return r.json() if r.content else None

        def count() -> None:
            self.api_calls += 1

        return forge_call(
            "gitlab", self.url, f"GitLab {verb.upper()} {path}", send,
            http_error=GitlabHttpError, status_of=lambda e: e.response_code, classify=_classify, on_attempt=count,
        )

    def _pages(self, path: str, query: dict[str, Any] | None = None) -> list[Any]:
        out: list[Any] = []
        page = 1
        while True:
            data = self._api("get", path, {**(query or {}), "per_page": PER_PAGE, "page": page})
            out.extend(data or [])
            if len(data or []) < PER_PAGE:
                return out
            page += 1

    def web_url(self, repo: str) -> str:
        return f"{self.url}/{repo}"

    def _user_id(self, username: str) -> int | None:
        users = self._api("get", "/users", {"username": username}) or []
        return users[0]["id"] if users else None

    # ------------------------------------------------------------------ reads

    def default_branch(self, repo: str) -> str:
        return self._api("get", f"/projects/{enc_project(repo)}")["default_branch"]

    def _file(self, repo: str, path: str, ref: str) -> tuple[str, str] | None:
        """(text, last_commit_id) of a file at ``ref``; None when it does not exist."""
        try:
            d = self._api("get", f"/projects/{enc_project(repo)}/repository/files/{quote(path, safe='')}", {"ref": ref})
        except GitlabHttpError as e:
            if self._code(e) == 404:
                return None
            raise ForgeError(f"GitLab refused to read {repo}/{path}@{ref}: {e.response_code} {e.error_message}",
                             self._code(e)) from None
        return base64.b64decode(d.get("content") or "").decode("utf-8"), d.get("last_commit_id") or ""

    def read_file(self, repo: str, path: str, ref: str) -> str | None:
        got = self._file(repo, path, ref)
        return None if got is None else got[0]

    def pull_request(self, repo: str, number: int) -> PullRequest:
        """``GET /projects/:id/merge_requests/:iid``, then ``GET /projects/:source_project_id`` for the
        source project's ``http_url_to_repo`` (a fork's, for an MR from a fork; None when the
        bot cannot see that project)."""
        d = self._api("get", f"/projects/{enc_project(repo)}/merge_requests/{number}")
        author = d.get("author") or {}
        state = {"opened": "open", "merged": "merged"}.get(d.get("state", ""), "closed")
        return PullRequest(
            number=int(d["iid"]), author=author.get("username") or "", author_id=author.get("id"),
            head_sha=d.get("sha") or "", head_ref=d.get("source_branch") or "", base_ref=d.get("target_branch") or "",
            state=state, url=d.get("web_url") or "", title=d.get("title") or "", body=d.get("description") or "",
            head_repo_url=self._clone_url(d.get("source_project_id") or d.get("project_id") or repo),
        )

    def _clone_url(self, project: str | int) -> str | None:
        """A project's ``http_url_to_repo``; None when it is gone or hidden from the bot (403/404)."""
        try:
            d = self._api("get", f"/projects/{enc_project(project)}")
        except GitlabHttpError as e:
            if self._code(e) in (403, 404):
                return None
            raise
        url = (d or {}).get("http_url_to_repo")
        return url if isinstance(url, str) and url else None

    def reviews(self, repo: str, number: int) -> list[Review]:
        return []

    def approvals(self, repo: str, number: int) -> GitLabApprovals:
        d = self._api("get", f"/projects/{enc_project(repo)}/merge_requests/{number}/approvals")
        users = tuple(
            ((a.get("user") or a).get("username") or "") for a in d.get("approved_by") or []
        )
        bots = tuple(
            ((a.get("user") or a).get("username") or "") for a in d.get("approved_by") or []
            if (a.get("user") or a).get("bot") is True
        )
        return GitLabApprovals(
            approved_by=tuple(u for u in users if u),
            approvals_left=d.get("approvals_left"),
            approvals_required=d.get("approvals_required"),
            bots=tuple(b for b in bots if b),
        )

    def committers(self, repo: str, number: int) -> set[str]:
        """Usernames of the people who authored or committed the MR's commits.

        GitLab's MR commits (``GET /projects/:id/merge_requests/:iid/commits``) carry names and
        e-mails, not usernames. Each author/committer e-mail is resolved to a username by, in
        order: GitLab's private commit e-mail ``<id>-<username>@users.noreply.<host>``; a project
        member whose ``email`` the members API shows (``GET /projects/:id/members/all``); the users
        API ``GET /users?search=<email>`` (matches public e-mails, and any e-mail for admins).
        People who pushed to the source branch (project events ``action=pushed``,
        ``push_data.ref``) are added too.

        Raises:
            CommittersUnresolved: some commit e-mail matches no GitLab user (the policy then
                fails closed when ``approvals.committers_count`` is false).
        """
        enc = enc_project(repo)
        mr = self._api("get", f"/projects/{enc}/merge_requests/{number}")
        mr = mr if isinstance(mr, dict) else {}
        commits = self._pages(f"/projects/{enc}/merge_requests/{number}/commits")
        emails: set[str] = set()
        for c in commits:
            for k in ("author_email", "committer_email"):
                e = (c.get(k) or "").strip().lower()
                if e:
                    emails.add(e)
        found: set[str] = set()
        unresolved: set[str] = set()
        members: list[Any] | None = None
        for email in sorted(emails):
            m = _NOREPLY.match(email)
            if m:
                found.add(m.group(1))
                continue
            if members is None:
                members = self._pages(f"/projects/{enc}/members/all")
            hit = {u.get("username") for u in members if (u.get("email") or "").lower() == email and u.get("username")}
            if not hit:
                users = self._api("get", "/users", {"search": email}) or []
                exact = {u.get("username") for u in users
                         if email in ((u.get("public_email") or "").lower(), (u.get("email") or "").lower())}
                hit = exact or ({users[0].get("username")} if len(users) == 1 else set())
                hit.discard(None)
            if hit:
                found |= hit  # type: ignore[arg-type]
            else:
                unresolved.add(email)
        branch = mr.get("source_branch")
        source = mr.get("source_project_id") or repo
        if branch:
            for ev in self._pages(f"/projects/{enc_project(source)}/events", {"action": "pushed"}):
                push = ev.get("push_data") or {}
                if push.get("ref") == branch and ev.get("author_username"):
                    found.add(ev["author_username"])
        if unresolved:
            raise CommittersUnresolved(
                f"{len(unresolved)} commit e-mail(s) of merge request !{number} match no GitLab user", found)
        return found

    def compare(self, repo: str, base: str, head: str) -> Comparison:
        """``GET /projects/:id/repository/compare?from=base&to=head`` ("Compare branches, tags or
        commits", merge-base comparison ``from...to``), then the reverse: ``head`` descends from
        ``base`` when the reverse lists no commits. A diff that is empty (GitLab's diff limits,
        binary files) has ``patch`` None; ``compare_timeout`` makes the comparison incomplete.
        Raises :class:`ForgeError` when GitLab does not know either side (404)."""
        path = f"/projects/{enc_project(repo)}/repository/compare"
        try:
            d = self._api("get", path, {"from": base, "to": head})
            back = self._api("get", path, {"from": head, "to": base})
        except GitlabHttpError as e:
            if self._code(e) in (400, 404):
                raise ForgeError(f"GitLab cannot compare {repo} {base[:12]}...{head[:12]}: {e.response_code} "
                                 f"{e.error_message}", self._code(e)) from None
            raise

        def status(f: dict[str, Any]) -> str:
            return ("added" if f.get("new_file") else "removed" if f.get("deleted_file")
                    else "renamed" if f.get("renamed_file") else "modified")

        return Comparison(
            base=base, head=head, contains_base=not (back or {}).get("commits"),
            files=tuple(FileChange(path=f.get("new_path") or f.get("old_path") or "", status=status(f),
                                   patch=f.get("diff") or None,
                                   previous_path=f.get("old_path") if f.get("renamed_file") else None)
                        for f in (d or {}).get("diffs") or []),
            complete=not (d or {}).get("compare_timeout"),
        )

    def permission(self, repo: str, user: str, user_id: int | None = None) -> str:
        uid = user_id or self._user_id(user)
        if uid is None:
            return "none"
        try:
            d = self._api("get", f"/projects/{enc_project(repo)}/members/all/{uid}")
        except GitlabHttpError as e:
            if self._code(e) == 404:
                return "none"
            raise
        if d.get("state") not in (None, "active"):
            return "none"
        return gitlab_permission(d.get("access_level"))

    def in_team(self, team: str, user: str, user_id: int | None = None) -> bool:
        uid = user_id or self._user_id(user)
        if uid is None:
            return False
        try:
            d = self._api("get", f"/groups/{enc_project(team)}/members/all/{uid}")
        except GitlabHttpError as e:
            if self._code(e) == 404:
                return False
            raise
        return d.get("state") in (None, "active")

    # ------------------------------------------------------------------ writes on the source MR

    def upsert_comment(self, repo: str, number: int, body: str, known_id: int | None = None) -> tuple[int, str]:
        """Create or update mlgate's one note (found by :data:`MARKER` on a note of ``bot_login``, or
        of anyone without one); (note id, ""). See :func:`~mlgate.edge.forges.comments.upsert_marked_comment`."""
        text = body if MARKER in body else f"{MARKER}\n{body}"

        def ours(n: Comment) -> bool:
            author = (n.get("author") or {}).get("username")
            return MARKER in (n.get("body") or "") and (self.bot_login is None or author == self.bot_login)

        _, d = upsert_marked_comment(_MergeRequestNotes(self, repo, number), text, ours, known_id=known_id)
        return int(d["id"]), ""

    def set_status(self, repo: str, sha: str, state: str, description: str, target_url: str | None = None,
                   context: str = STATUS_CONTEXT) -> None:
        """``POST /projects/:id/statuses/:sha`` with ``name`` = ``context`` ("failure" is sent as "failed")."""
        body: dict[str, Any] = {"state": _STATE.get(state, state), "name": context,
                                "description": description[:255]}
        if target_url:
            body["target_url"] = target_url
        self._api("post", f"/projects/{enc_project(repo)}/statuses/{sha}", body=body)

    def close_pull_request(self, repo: str, number: int, comment: str) -> bool:
        """Add a note, then ``PUT /projects/:id/merge_requests/:iid`` with ``state_event=close``
        (docs "Update MR"). False when the MR is not open (closed or merged): nothing is written."""
        base = f"/projects/{enc_project(repo)}/merge_requests/{number}"
        d = self._api("get", base)
        if (d or {}).get("state") != "opened":
            return False
        self._api("post", f"{base}/notes", body={"body": comment})
        self._api("put", base, body={"state_event": "close"})
        return True


class _MergeRequestNotes:
    """The notes of one merge request through :meth:`GitLabForge._api` (a
    :class:`~mlgate.edge.forges.comments.CommentThread`)."""

    def __init__(self, forge: GitLabForge, repo: str, number: int):
        self.forge = forge
        self.base = f"/projects/{enc_project(repo)}/merge_requests/{number}/notes"

    def comments(self) -> list[Comment]:
        # oldest first: GitLab lists notes newest first unless asked (docs notes "List all merge request notes")
        return self.forge._pages(self.base, {"sort": "asc", "order_by": "created_at"})

    def create(self, body: str) -> Comment:
        return self.forge._api("post", self.base, body={"body": body})

    def update(self, comment_id: Any, body: str, *, missing_ok: bool = False) -> Comment | None:
        try:
            return self.forge._api("put", f"{self.base}/{comment_id}", body={"body": body})
        except GitlabHttpError as e:
            if missing_ok and self.forge._code(e) == 404:
                return None
            raise


__all__ = ["GitLabForge"]
