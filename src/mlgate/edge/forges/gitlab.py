"""GitLab through python-gitlab: merge requests, approvals, notes, statuses, promotion MRs.

Edge adapter over GitLab REST API v4 (docs.gitlab.com/api: merge_requests, merge_request_approvals,
members, notes, commits, repository_files, commits#set-the-pipeline-status-of-a-commit).
Shapes checked against the documented examples kept in ``tests/fixtures/gitlab/``.

Retries: python-gitlab sleeps ``Retry-After`` on 429 (``obey_rate_limit``, at most 3 times);
5xx and connection errors are retried by stamina (:func:`call_with_retries`).

A promotion takes 3 calls: read the file on the target branch, one ``POST
/repository/commits`` that creates the branch (``start_branch``) and the commit for any
number of files, and ``POST /merge_requests`` with the label.
"""

from __future__ import annotations

import base64
import re
from typing import Any
from urllib.parse import quote

from mlgate.edge.forges.base import (
    MARKER,
    STATUS_CONTEXT,
    ForgeError,
    GitLabApprovals,
    PromotionRequest,
    PromotionResult,
    PullRequest,
    forge_call,
    fill_body,
)
from mlgate.core.policy import Review, gitlab_permission

MOVE_RETRIES = 5
PER_PAGE = 100
#: GitLab's private commit e-mail: ``<user id>-<username>@users.noreply.<host>`` (docs: "Use an
#: automatically generated private commit email").
_NOREPLY = re.compile(r"^\d+-([A-Za-z0-9_.-]+)@users\.noreply\.")
_STATE = {"pending": "pending", "success": "success", "failure": "failed", "error": "failed"}


def _classify(exc: BaseException) -> bool:
    import requests
    from gitlab.exceptions import GitlabHttpError

    if isinstance(exc, GitlabHttpError):
        return (exc.response_code or 0) >= 500 or exc.response_code == 429
    return isinstance(exc, (requests.ConnectionError, requests.Timeout, ConnectionError))


def _enc(project: str | int) -> str:
    return str(project) if isinstance(project, int) or str(project).isdigit() else quote(str(project), safe="")


class GitLabForge:
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
        import gitlab

        if not token:
            raise ForgeError("no GitLab credentials: set MLGATE_GITLAB_TOKEN")
        self.url = url.rstrip("/")
        self._gl = gitlab.Gitlab(self.url, private_token=token, timeout=timeout, per_page=PER_PAGE)
        self.api_calls = 0
        self.bot_login = bot_login
        self._me: str | None = None

    # ------------------------------------------------------------------ plumbing

    def _api(self, verb: str, path: str, query: dict[str, Any] | None = None, body: dict[str, Any] | None = None) -> Any:
        from gitlab.exceptions import GitlabHttpError

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

    @staticmethod
    def _code(e: Exception) -> int:
        return int(getattr(e, "response_code", 0) or 0)

    def web_url(self, repo: str) -> str:
        return f"{self.url}/{repo}"

    def _user_id(self, username: str) -> int | None:
        users = self._api("get", "/users", {"username": username}) or []
        return users[0]["id"] if users else None

    # ------------------------------------------------------------------ reads

    def default_branch(self, repo: str) -> str:
        return self._api("get", f"/projects/{_enc(repo)}")["default_branch"]

    def _file(self, repo: str, path: str, ref: str) -> tuple[str, str] | None:
        """(text, last_commit_id) of a file at ``ref``; None when it does not exist."""
        from gitlab.exceptions import GitlabHttpError

        try:
            d = self._api("get", f"/projects/{_enc(repo)}/repository/files/{quote(path, safe='')}", {"ref": ref})
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
        d = self._api("get", f"/projects/{_enc(repo)}/merge_requests/{number}")
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
        from gitlab.exceptions import GitlabHttpError

        try:
            d = self._api("get", f"/projects/{_enc(project)}")
        except GitlabHttpError as e:
            if self._code(e) in (403, 404):
                return None
            raise
        url = (d or {}).get("http_url_to_repo")
        return url if isinstance(url, str) and url else None

    def reviews(self, repo: str, number: int) -> list[Review]:
        return []

    def approvals(self, repo: str, number: int) -> GitLabApprovals:
        d = self._api("get", f"/projects/{_enc(repo)}/merge_requests/{number}/approvals")
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
        from mlgate.edge.forges.base import CommittersUnresolved

        enc = _enc(repo)
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
            for ev in self._pages(f"/projects/{_enc(source)}/events", {"action": "pushed"}):
                push = ev.get("push_data") or {}
                if push.get("ref") == branch and ev.get("author_username"):
                    found.add(ev["author_username"])
        if unresolved:
            raise CommittersUnresolved(
                f"{len(unresolved)} commit e-mail(s) of merge request !{number} match no GitLab user", found)
        return found

    def permission(self, repo: str, user: str, user_id: int | None = None) -> str:
        from gitlab.exceptions import GitlabHttpError

        uid = user_id or self._user_id(user)
        if uid is None:
            return "none"
        try:
            d = self._api("get", f"/projects/{_enc(repo)}/members/all/{uid}")
        except GitlabHttpError as e:
            if self._code(e) == 404:
                return "none"
            raise
        if d.get("state") not in (None, "active"):
            return "none"
        return gitlab_permission(d.get("access_level"))

    def in_team(self, team: str, user: str, user_id: int | None = None) -> bool:
        from gitlab.exceptions import GitlabHttpError

        uid = user_id or self._user_id(user)
        if uid is None:
            return False
        try:
            d = self._api("get", f"/groups/{_enc(team)}/members/all/{uid}")
        except GitlabHttpError as e:
            if self._code(e) == 404:
                return False
            raise
        return d.get("state") in (None, "active")

    # ------------------------------------------------------------------ writes on the source MR

    def upsert_comment(self, repo: str, number: int, body: str, known_id: int | None = None) -> tuple[int, str]:
        from gitlab.exceptions import GitlabHttpError

        text = body if MARKER in body else f"{MARKER}\n{body}"
        base = f"/projects/{_enc(repo)}/merge_requests/{number}/notes"
        if known_id:
            try:
                d = self._api("put", f"{base}/{known_id}", body={"body": text})
                return int(d["id"]), ""
            except GitlabHttpError as e:
                if self._code(e) != 404:
                    raise
        for n in self._pages(base):
            author = (n.get("author") or {}).get("username")
            if MARKER in (n.get("body") or "") and (self.bot_login is None or author == self.bot_login):
                d = self._api("put", f"{base}/{n['id']}", body={"body": text})
                return int(d["id"]), ""
        d = self._api("post", base, body={"body": text})
        return int(d["id"]), ""

    def set_status(self, repo: str, sha: str, state: str, description: str, target_url: str | None = None,
                   context: str = STATUS_CONTEXT) -> None:
        """``POST /projects/:id/statuses/:sha`` with ``name`` = ``context`` ("failure" is sent as "failed")."""
        body: dict[str, Any] = {"state": _STATE.get(state, state), "name": context,
                                "description": description[:255]}
        if target_url:
            body["target_url"] = target_url
        self._api("post", f"/projects/{_enc(repo)}/statuses/{sha}", body=body)

    def close_pull_request(self, repo: str, number: int, comment: str) -> bool:
        """Add a note, then ``PUT /projects/:id/merge_requests/:iid`` with ``state_event=close``
        (docs "Update MR"). False when the MR is not open (closed or merged): nothing is written."""
        base = f"/projects/{_enc(repo)}/merge_requests/{number}"
        d = self._api("get", base)
        if (d or {}).get("state") != "opened":
            return False
        self._api("post", f"{base}/notes", body={"body": comment})
        self._api("put", base, body={"state_event": "close"})
        return True

    # ------------------------------------------------------------------ promotion

    def _commit(self, repo: str, branch: str, message: str, files: dict[str, tuple[str, str]],
                start_branch: str | None) -> str:
        actions = [
            {"action": "update", "file_path": path, "content": new, **({"last_commit_id": last} if last else {})}
            for path, (new, last) in files.items()
        ]
        body: dict[str, Any] = {"branch": branch, "commit_message": message, "actions": actions}
        if start_branch:
            body["start_branch"] = start_branch
        return self._api("post", f"/projects/{_enc(repo)}/repository/commits", body=body)["id"]

    def _apply_on(self, repo: str, branch: str, req: PromotionRequest, diff: dict[str, tuple[str, str]],
                  start_branch: str | None = None,
                  reads: dict[str, tuple[str, str]] | None = None) -> str | None:
        """Commit the edits on ``branch`` (read at ``start_branch or branch``), retrying on conflicts."""
        from gitlab.exceptions import GitlabHttpError

        for attempt in range(MOVE_RETRIES):
            changes: dict[str, tuple[str, str]] = {}
            for edit in req.edits:
                got = (reads or {}).get(edit.path) or self._file(repo, edit.path, start_branch or branch)
                if got is None:
                    raise ForgeError(f"{repo}: {edit.path} does not exist on {start_branch or branch}")
                old, last = got
                new = edit.apply(old)
                diff[edit.path] = (diff.get(edit.path, (old, new))[0], new)
                if new != old:
                    changes[edit.path] = (new, last)
            reads = None
            if not changes:
                return None
            try:
                return self._commit(repo, branch, req.message, changes, start_branch)
            except GitlabHttpError as e:
                msg = str(e.error_message).lower()
                if self._code(e) == 400 and "already exists" in msg and start_branch:
                    start_branch = None  # the promotion branch exists: reuse it, re-read its files
                    continue
                if self._code(e) in (400, 409) and attempt + 1 < MOVE_RETRIES:
                    continue  # the file changed since we read it: re-read, re-apply
                raise ForgeError(f"GitLab refused the commit on {branch}: {e.error_message}", self._code(e)) from None
        raise ForgeError(f"{repo}: {branch} kept changing; gave up after {MOVE_RETRIES} attempts")

    def open_promotion(self, req: PromotionRequest) -> PromotionResult:
        """Commit the edits and open (or reuse) the promotion merge request.

        Idempotent: an existing branch ("A branch called ... already exists") is reused; an
        existing open MR (409 "Another open merge request already exists") is updated.
        """
        from gitlab.exceptions import GitlabHttpError

        start = self.api_calls
        diff: dict[str, tuple[str, str]] = {}
        reads: dict[str, tuple[str, str]] = {}
        for edit in req.edits:
            got = self._file(req.repo, edit.path, req.base)
            if got is None:
                raise ForgeError(f"{req.repo}: {edit.path} does not exist on {req.base}")
            reads[edit.path] = got
            diff[edit.path] = (got[0], edit.apply(got[0]))

        def result(url=None, number=None, created=False, commit=None, branch=req.branch):
            return PromotionResult(url=url, number=number, created=created, changed=commit is not None,
                                   commit=commit, api_calls=self.api_calls - start, branch=branch, diff=diff)

        if all(o == n for o, n in diff.values()):
            return result(branch=req.base)
        if req.mode == "push":
            return result(commit=self._apply_on(req.repo, req.base, req, diff, None, reads), branch=req.base)

        commit = self._apply_on(req.repo, req.branch, req, diff, req.base, reads)
        base = f"/projects/{_enc(req.repo)}/merge_requests"
        created = True
        try:
            mr = self._api("post", base, body={
                "source_branch": req.branch, "target_branch": req.base, "title": req.title,
                "description": fill_body(req.body, diff), "labels": ",".join(req.labels), "remove_source_branch": True,
            })
        except GitlabHttpError as e:
            if self._code(e) != 409:
                raise ForgeError(f"GitLab refused to open the promotion MR: {e.error_message}", self._code(e)) from None
            found = self._api("get", base, {"source_branch": req.branch, "target_branch": req.base, "state": "opened"})
            if not found:
                raise ForgeError(f"GitLab says an MR for {req.branch} exists but none is open", 409) from None
            mr = self._api("put", f"{base}/{found[0]['iid']}", body={"description": fill_body(req.body, diff)})
            created = False
        return result(url=mr.get("web_url"), number=int(mr["iid"]), created=created, commit=commit)


__all__ = ["GitLabForge"]
