"""GitHub through PyGithub: reviews, permissions, comments, statuses, promotion PRs.

Edge adapter. Authentication: a GitHub App installation (PyGithub ``Auth.AppAuth`` →
``AppInstallationAuth``, which mints an installation token on first use and mints a new
one before the old one's ``expires_at`` — tokens live one hour, GitHub docs "Generating an
installation access token") or a plain token. A :class:`GitHubForge` is built per delivery,
so no token outlives a job by long.

Every request goes through PyGithub's ``Requester`` (its auth, throttling and error
types) with exactly one HTTP request per :meth:`GitHubForge._api` call, which is how
``api_calls`` is counted. PyGithub's own urllib3 retry is off; :func:`call_with_retries`
(stamina) retries 5xx, 429 and secondary rate limits, honouring ``Retry-After``.

Endpoints used (GitHub REST API, api.github.com OpenAPI description in npm
``@octokit/openapi``):

- ``GET /repos/{o}/{r}/contents/{path}?ref=``, ``PUT /repos/{o}/{r}/contents/{path}``
- ``GET /repos/{o}/{r}/branches/{branch}``, ``POST /repos/{o}/{r}/git/refs``,
  ``PATCH /repos/{o}/{r}/git/refs/heads/{branch}``, ``POST /repos/{o}/{r}/git/trees``,
  ``POST /repos/{o}/{r}/git/commits``
- ``GET /repos/{o}/{r}/pulls/{n}``, ``GET .../pulls/{n}/reviews``, ``GET .../pulls/{n}/commits``,
  ``GET /repos/{o}/{r}/pulls?head=&state=open``, ``POST /repos/{o}/{r}/pulls``,
  ``PATCH /repos/{o}/{r}/pulls/{n}`` (body, or ``state: closed``)
- ``GET /repos/{o}/{r}/collaborators/{u}/permission``, ``GET /orgs/{org}/teams/{slug}/memberships/{u}``
- ``GET/POST /repos/{o}/{r}/issues/{n}/comments``, ``PATCH /repos/{o}/{r}/issues/comments/{id}``,
  ``POST /repos/{o}/{r}/issues/{n}/labels``, ``POST /repos/{o}/{r}/statuses/{sha}``

Promotion commits: the contents API needs 2 + 2·n calls for n files (branch read, n reads,
ref create, n writes); the git data API needs 4 + n (branch read with its tree, n reads,
tree, commit, ref). :func:`use_contents_api` picks the cheaper one.
"""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import quote

from mlgate.edge.forges.base import (
    MARKER,
    STATUS_CONTEXT,
    ForgeBusy,
    ForgeError,
    GitLabApprovals,
    PromotionRequest,
    PromotionResult,
    PullRequest,
    forge_call,
    fill_body,
    retry_after_seconds,
)
from mlgate.core.policy import Review

#: Bounded re-read/re-apply/retry when the branch moved under us (409 / not fast-forward).
MOVE_RETRIES = 5
PER_PAGE = 100


def use_contents_api(files: int) -> bool:
    """True when the contents API needs no more calls than the git data API for ``files`` files."""
    return 2 + 2 * files <= 4 + files


def _classify(exc: BaseException) -> float | bool:
    from github import GithubException
    import requests

    if isinstance(exc, GithubException):
        status = exc.status
        wait = retry_after_seconds(exc.headers)
        msg = str(exc.data if exc.data is not None else exc).lower()
        if status == 429 or status >= 500 or (status == 403 and ("secondary rate limit" in msg or wait is not None)):
            return wait if wait is not None else True
        return False
    return isinstance(exc, (requests.ConnectionError, requests.Timeout, ConnectionError))


class GitHubForge:
    """GitHub REST API for one installation (or token).

    Args:
        base_url: API root, ``https://api.github.com`` (or GHES ``https://host/api/v3``, or a test fake).
        token: a personal/installation token (used when no app is given).
        app_id / private_key / installation_id: GitHub App credentials (preferred).
        write_interval / request_interval: seconds PyGithub waits between writes / requests
            (GitHub recommends >= 1 s between content-creating requests).
        bot_login: the bot's own login, to find its comment when no comment id is known.

    Raises (from every method): :class:`ForgeBusy` when GitHub keeps failing or rate
    limiting (retry the delivery later), :class:`ForgeError` for a refusal.
    """

    name = "github"

    def __init__(
        self,
        base_url: str = "https://api.github.com",
        *,
        token: str | None = None,
        app_id: int | None = None,
        private_key: str | None = None,
        installation_id: int | None = None,
        write_interval: float = 1.0,
        request_interval: float = 0.25,
        bot_login: str | None = None,
        timeout: int = 15,
    ):
        from github import Auth, Github

        if app_id and private_key and installation_id:
            auth: Any = Auth.AppAuth(app_id, private_key).get_installation_auth(int(installation_id))
        elif token:
            auth = Auth.Token(token)
        else:
            raise ForgeError(
                "no GitHub credentials: set MLGATE_GITHUB_APP_ID + MLGATE_GITHUB_PRIVATE_KEY (and install the app) "
                "or MLGATE_GITHUB_TOKEN"
            )
        self.base_url = base_url.rstrip("/")
        self._gh = Github(
            auth=auth,
            base_url=self.base_url,
            retry=None,
            per_page=PER_PAGE,
            timeout=timeout,
            seconds_between_requests=request_interval or None,
            seconds_between_writes=write_interval or None,
            lazy=True,
        )
        self.api_calls = 0
        self.bot_login = bot_login

    # ------------------------------------------------------------------ plumbing

    def _api(self, verb: str, path: str, params: dict[str, Any] | None = None, body: Any = None) -> tuple[dict, Any]:
        """One REST call with retries; returns (headers, json). GithubException is re-raised as is."""
        from github import GithubException

        req = self._gh.requester

        def count() -> None:
            self.api_calls += 1

        return forge_call(
            "github", self.base_url, f"GitHub {verb} {path}",
            lambda: req.requestJsonAndCheck(verb, path, parameters=params, input=body),
            http_error=GithubException, status_of=lambda e: e.status, classify=_classify,
            retry_after_of=lambda e: retry_after_seconds(e.headers), on_attempt=count,
        )

    def _pages(self, path: str, params: dict[str, Any] | None = None) -> list[Any]:
        """Every item of a paginated list (``per_page=100``, following pages until a short one)."""
        out: list[Any] = []
        page = 1
        while True:
            _, data = self._api("GET", path, {**(params or {}), "per_page": PER_PAGE, "page": page})
            out.extend(data)
            if len(data) < PER_PAGE:
                return out
            page += 1

    @staticmethod
    def _status(e: Exception) -> int:
        return int(getattr(e, "status", 0) or 0)

    @staticmethod
    def _message(e: Exception) -> str:
        data = getattr(e, "data", None)
        parts = []
        if isinstance(data, dict):
            parts.append(str(data.get("message", "")))
            for err in data.get("errors") or []:
                parts.append(str(err.get("message", "")) if isinstance(err, dict) else str(err))
        return " ".join(parts) or str(e)

    def web_url(self, repo: str) -> str:
        host = self.base_url
        if host == "https://api.github.com":
            return f"https://github.com/{repo}"
        return f"{host.removesuffix('/api/v3')}/{repo}"

    # ------------------------------------------------------------------ reads

    def default_branch(self, repo: str) -> str:
        _, data = self._api("GET", f"/repos/{repo}")
        return data["default_branch"]

    def _contents(self, repo: str, path: str, ref: str) -> tuple[str, str] | None:
        from github import GithubException

        try:
            _, data = self._api("GET", f"/repos/{repo}/contents/{quote(path)}", {"ref": ref})
        except GithubException as e:
            if self._status(e) == 404:
                return None
            raise ForgeError(f"GitHub refused to read {repo}/{path}@{ref}: {self._status(e)} {self._message(e)}",
                             self._status(e)) from None
        if not isinstance(data, dict) or data.get("type") != "file":
            raise ForgeError(f"{repo}/{path} is not a file")
        text = base64.b64decode(data.get("content") or "").decode("utf-8")
        return text, data["sha"]

    def read_file(self, repo: str, path: str, ref: str) -> str | None:
        got = self._contents(repo, path, ref)
        return None if got is None else got[0]

    def pull_request(self, repo: str, number: int) -> PullRequest:
        _, d = self._api("GET", f"/repos/{repo}/pulls/{number}")
        return _pull(d)

    def reviews(self, repo: str, number: int) -> list[Review]:
        return [
            Review(
                user=(r.get("user") or {}).get("login") or "",
                state=r.get("state") or "",
                commit_id=r.get("commit_id"),
                submitted_at=r.get("submitted_at"),
                id=int(r.get("id") or 0),
                user_type=(r.get("user") or {}).get("type"),
            )
            for r in self._pages(f"/repos/{repo}/pulls/{number}/reviews")
        ]

    def approvals(self, repo: str, number: int) -> GitLabApprovals | None:
        return None

    def committers(self, repo: str, number: int) -> set[str]:
        out: set[str] = set()
        for c in self._pages(f"/repos/{repo}/pulls/{number}/commits"):
            for role in ("author", "committer"):
                login = (c.get(role) or {}).get("login")
                if login and login != "web-flow":  # web-flow commits merges made in the web UI
                    out.add(login)
        return out

    def permission(self, repo: str, user: str, user_id: int | None = None) -> str:
        from github import GithubException

        try:
            _, d = self._api("GET", f"/repos/{repo}/collaborators/{quote(user, safe='')}/permission")
        except GithubException as e:
            if self._status(e) in (403, 404):
                return "none"
            raise
        # ``role_name`` is the precise base role (read/triage/write/maintain/admin); a custom
        # repository role (Enterprise, e.g. "ml-deployer") has its own name there, and then the
        # legacy ``permission`` field holds the base role it inherits (REST "Get repository
        # permissions for a user"; "About custom repository roles").
        from mlgate.core.policy import PERMISSIONS

        role = str(d.get("role_name") or "").lower()
        if role in PERMISSIONS:
            return role
        legacy = str(d.get("permission") or "none").lower()
        return {"pull": "read", "push": "write"}.get(legacy, legacy if legacy in PERMISSIONS else "none")

    def in_team(self, team: str, user: str, user_id: int | None = None) -> bool:
        from github import GithubException

        org, _, slug = team.partition("/")
        if not slug:
            return False
        try:
            _, d = self._api("GET", f"/orgs/{org}/teams/{slug}/memberships/{quote(user, safe='')}")
        except GithubException as e:
            if self._status(e) in (403, 404):
                return False
            raise
        return d.get("state") == "active"

    # ------------------------------------------------------------------ writes on the source PR

    def upsert_comment(self, repo: str, number: int, body: str, known_id: int | None = None) -> tuple[int, str]:
        from github import GithubException

        text = body if MARKER in body else f"{MARKER}\n{body}"
        if known_id:
            try:
                _, d = self._api("PATCH", f"/repos/{repo}/issues/comments/{known_id}", body={"body": text})
                return int(d["id"]), d.get("html_url") or ""
            except GithubException as e:
                if self._status(e) not in (404, 410):
                    raise
        for c in self._pages(f"/repos/{repo}/issues/{number}/comments"):
            user = c.get("user") or {}
            mine = user.get("type") == "Bot" or (self.bot_login and user.get("login") == self.bot_login)
            if MARKER in (c.get("body") or "") and mine:
                _, d = self._api("PATCH", f"/repos/{repo}/issues/comments/{c['id']}", body={"body": text})
                return int(d["id"]), d.get("html_url") or ""
        _, d = self._api("POST", f"/repos/{repo}/issues/{number}/comments", body={"body": text})
        return int(d["id"]), d.get("html_url") or ""

    def set_status(self, repo: str, sha: str, state: str, description: str, target_url: str | None = None,
                   context: str = STATUS_CONTEXT) -> None:
        """``POST /repos/{o}/{r}/statuses/{sha}`` ("Create a commit status"; ``description`` cut to 140)."""
        body: dict[str, Any] = {"state": state, "description": description[:140], "context": context}
        if target_url:
            body["target_url"] = target_url
        self._api("POST", f"/repos/{repo}/statuses/{sha}", body=body)

    def close_pull_request(self, repo: str, number: int, comment: str) -> bool:
        """Comment, then ``PATCH /repos/{o}/{r}/pulls/{n}`` with ``state: closed`` (REST "Update a
        pull request"). False when the PR is not open (closed or merged): nothing is written."""
        if self.pull_request(repo, number).state != "open":
            return False
        self._api("POST", f"/repos/{repo}/issues/{number}/comments", body={"body": comment})
        self._api("PATCH", f"/repos/{repo}/pulls/{number}", body={"state": "closed"})
        return True

    # ------------------------------------------------------------------ promotion

    def _branch(self, repo: str, branch: str) -> tuple[str, str] | None:
        """(commit sha, tree sha) of a branch tip; None when the branch does not exist."""
        from github import GithubException

        try:
            _, d = self._api("GET", f"/repos/{repo}/branches/{quote(branch, safe='')}")
        except GithubException as e:
            if self._status(e) == 404:
                return None
            raise
        return d["commit"]["sha"], d["commit"]["commit"]["tree"]["sha"]

    def _create_ref(self, repo: str, branch: str, sha: str) -> bool:
        """Create ``refs/heads/<branch>``; False when it already exists (422)."""
        from github import GithubException

        try:
            self._api("POST", f"/repos/{repo}/git/refs", body={"ref": f"refs/heads/{branch}", "sha": sha})
            return True
        except GithubException as e:
            if self._status(e) == 422 and "already exists" in self._message(e).lower():
                return False
            raise ForgeError(f"GitHub refused to create branch {branch} in {repo}: {self._message(e)}",
                             self._status(e)) from None

    def _put_file(self, repo: str, branch: str, edit: Any, message: str, known: tuple[str, str] | None,
                  diff: dict[str, tuple[str, str]]) -> str | None:
        """Write one edited file with ``PUT contents`` on ``branch``; re-read and re-apply on 409.

        ``known``: (text, blob sha) already read for this branch's tip, saving a read.
        Returns the new commit sha, or None when the file already held the new text.
        """
        from github import GithubException

        for attempt in range(MOVE_RETRIES):
            got = known if known is not None else self._contents(repo, edit.path, branch)
            known = None
            if got is None:
                raise ForgeError(f"{repo}: {edit.path} does not exist on {branch}")
            old, blob = got
            new = edit.apply(old)
            diff[edit.path] = (diff.get(edit.path, (old, new))[0], new)
            if new == old:
                return None
            try:
                _, d = self._api(
                    "PUT",
                    f"/repos/{repo}/contents/{quote(edit.path)}",
                    body={"message": message, "content": base64.b64encode(new.encode()).decode(),
                          "sha": blob, "branch": branch},
                )
                return d["commit"]["sha"]
            except GithubException as e:
                if self._status(e) in (409, 422) and attempt + 1 < MOVE_RETRIES:
                    continue  # the file changed under us: re-read, re-apply
                raise ForgeError(f"GitHub refused to update {edit.path} on {branch}: {self._message(e)}",
                                 self._status(e)) from None
        raise ForgeError(f"{repo}: {edit.path} on {branch} kept changing; gave up after {MOVE_RETRIES} attempts")

    def _git_data_commit(self, repo: str, parent: str, tree: str, req: PromotionRequest,
                         diff: dict[str, tuple[str, str]], reads: dict[str, tuple[str, str]] | None = None) -> str | None:
        """Create (not yet referenced) one commit holding every edit on top of ``parent``."""
        entries = []
        for edit in req.edits:
            got = (reads or {}).get(edit.path) or self._contents(repo, edit.path, parent)
            if got is None:
                raise ForgeError(f"{repo}: {edit.path} does not exist at {parent[:7]}")
            old = got[0]
            new = edit.apply(old)
            diff[edit.path] = (diff.get(edit.path, (old, new))[0], new)
            if new != old:
                entries.append({"path": edit.path, "mode": "100644", "type": "blob", "content": new})
        if not entries:
            return None
        _, t = self._api("POST", f"/repos/{repo}/git/trees", body={"base_tree": tree, "tree": entries})
        _, c = self._api("POST", f"/repos/{repo}/git/commits",
                         body={"message": req.message, "tree": t["sha"], "parents": [parent]})
        return c["sha"]

    def _advance(self, repo: str, branch: str, req: PromotionRequest, diff: dict[str, tuple[str, str]]) -> str | None:
        """Commit the edits on an existing ``branch`` (git data API), retrying when it moves."""
        from github import GithubException

        for attempt in range(MOVE_RETRIES):
            tip = self._branch(repo, branch)
            if tip is None:
                raise ForgeError(f"{repo}: branch {branch} does not exist")
            sha = self._git_data_commit(repo, tip[0], tip[1], req, diff)
            if sha is None:
                return None
            try:
                self._api("PATCH", f"/repos/{repo}/git/refs/heads/{quote(branch, safe='/')}",
                          body={"sha": sha, "force": False})
                return sha
            except GithubException as e:
                if self._status(e) in (409, 422) and attempt + 1 < MOVE_RETRIES:
                    continue  # not a fast-forward: the branch moved; re-read and re-apply
                raise ForgeError(f"GitHub refused to move {branch}: {self._message(e)}", self._status(e)) from None
        raise ForgeError(f"{repo}: {branch} kept moving; gave up after {MOVE_RETRIES} attempts")

    def _find_open_pr(self, repo: str, branch: str) -> dict | None:
        owner = repo.split("/")[0]
        _, prs = self._api("GET", f"/repos/{repo}/pulls", {"head": f"{owner}:{branch}", "state": "open"})
        return prs[0] if prs else None

    def open_promotion(self, req: PromotionRequest) -> PromotionResult:
        """Commit the edits and open (or reuse) the promotion PR; see the module docstring.

        Idempotent: an existing branch (422 "Reference already exists") is reused and its
        file re-checked; an existing open PR (422 "A pull request already exists") is
        updated. In ``push`` mode the commit goes straight to ``req.base``. When a branch
        moved under us (409 / not a fast-forward) the files are re-read, the edits
        re-applied and the write retried, at most :data:`MOVE_RETRIES` times.
        When ``req.base`` already holds the new values nothing is written
        (``changed=False``, ``url=None``).
        """
        from github import GithubException

        start = self.api_calls
        diff: dict[str, tuple[str, str]] = {}
        contents = use_contents_api(len(req.edits))

        def result(url=None, number=None, created=False, commit=None, branch=req.branch):
            return PromotionResult(url=url, number=number, created=created, changed=commit is not None,
                                   commit=commit, api_calls=self.api_calls - start, branch=branch, diff=diff)

        base = self._branch(req.repo, req.base)
        if base is None:
            raise ForgeError(f"{req.repo}: branch {req.base} does not exist")
        reads: dict[str, tuple[str, str]] = {}
        for edit in req.edits:
            got = self._contents(req.repo, edit.path, base[0])
            if got is None:
                raise ForgeError(f"{req.repo}: {edit.path} does not exist on {req.base}")
            reads[edit.path] = got
            diff[edit.path] = (got[0], edit.apply(got[0]))
        if all(old == new for old, new in diff.values()):
            return result(branch=req.base)

        if req.mode == "push":
            if contents:
                commit = None
                for edit in req.edits:
                    commit = self._put_file(req.repo, req.base, edit, req.message, reads[edit.path], diff) or commit
            else:
                sha = self._git_data_commit(req.repo, base[0], base[1], req, diff, reads)
                try:
                    self._api("PATCH", f"/repos/{req.repo}/git/refs/heads/{quote(req.base, safe='/')}",
                              body={"sha": sha, "force": False})
                    commit = sha
                except GithubException as e:
                    if self._status(e) not in (409, 422):
                        raise ForgeError(f"GitHub refused to move {req.base}: {self._message(e)}",
                                         self._status(e)) from None
                    commit = self._advance(req.repo, req.base, req, diff)
            return result(commit=commit, branch=req.base)

        if contents:
            if self._create_ref(req.repo, req.branch, base[0]):
                commit = None
                for edit in req.edits:
                    commit = self._put_file(req.repo, req.branch, edit, req.message, reads[edit.path], diff) or commit
            else:  # the branch exists (an earlier attempt or promotion): re-check its files
                commit = None
                for edit in req.edits:
                    commit = self._put_file(req.repo, req.branch, edit, req.message, None, diff) or commit
        else:
            sha = self._git_data_commit(req.repo, base[0], base[1], req, diff, reads)
            if sha is not None and self._create_ref(req.repo, req.branch, sha):
                commit = sha
            else:
                commit = self._advance(req.repo, req.branch, req, diff)

        created = True
        try:
            _, pr = self._api("POST", f"/repos/{req.repo}/pulls",
                              body={"title": req.title, "head": req.branch, "base": req.base, "body": fill_body(req.body, diff)})
        except GithubException as e:
            msg = self._message(e).lower()
            if self._status(e) == 422 and "already exists" in msg:
                pr = self._find_open_pr(req.repo, req.branch)
                if pr is None:
                    raise ForgeError(f"GitHub says a PR for {req.branch} exists but none is open", 422) from None
                created = False
                self._api("PATCH", f"/repos/{req.repo}/pulls/{pr['number']}", body={"body": fill_body(req.body, diff)})
            else:
                raise ForgeError(f"GitHub refused to open the promotion PR: {self._message(e)}", self._status(e)) from None
        if created and req.labels:
            self._api("POST", f"/repos/{req.repo}/issues/{pr['number']}/labels", body={"labels": list(req.labels)})
        return result(url=pr.get("html_url"), number=int(pr["number"]), created=created, commit=commit)


def _pull(d: dict[str, Any]) -> PullRequest:
    """A :class:`PullRequest` from REST "Get a pull request". ``head.repo`` is the fork for a PR
    from a fork, and null when that fork was deleted (then ``head_repo_url`` is None)."""
    state = "merged" if d.get("merged") or d.get("merged_at") else d.get("state", "open")
    user = d.get("user") or {}
    head_repo = d["head"].get("repo") or {}
    return PullRequest(
        number=int(d["number"]), author=user.get("login") or "", author_id=user.get("id"),
        head_sha=d["head"]["sha"], head_ref=d["head"]["ref"], base_ref=d["base"]["ref"], state=state,
        url=d.get("html_url") or "", title=d.get("title") or "", body=d.get("body") or "",
        head_repo_url=head_repo.get("clone_url") or None,
    )


__all__ = ["GitHubForge", "use_contents_api", "ForgeBusy", "ForgeError"]
