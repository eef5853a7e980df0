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
  ``GET /repos/{o}/{r}/compare/{base}...{head}``,
  ``GET /repos/{o}/{r}/pulls?head=&state=open``, ``POST /repos/{o}/{r}/pulls``,
  ``PATCH /repos/{o}/{r}/pulls/{n}`` (body, or ``state: closed``)
- ``GET /repos/{o}/{r}/collaborators/{u}/permission``, ``GET /orgs/{org}/teams/{slug}/memberships/{u}``
- ``GET/POST /repos/{o}/{r}/issues/{n}/comments``, ``PATCH /repos/{o}/{r}/issues/comments/{id}``,
  ``POST /repos/{o}/{r}/issues/{n}/labels``, ``POST /repos/{o}/{r}/statuses/{sha}``

Promotion PRs (``api="graphql"``, the default): 3 round trips for any number of files through
``POST /graphql`` (:class:`~mlgate.edge.forges.github_graphql.GitHubGraphQLPromotions`).
With ``api="rest"``: the contents API needs 2 + 2·n calls for n files (branch read, n reads,
ref create, n writes); the git data API needs 4 + n (branch read with its tree, n reads,
tree, commit, ref). :func:`use_contents_api` picks the cheaper one
(:class:`~mlgate.edge.forges.github_promotion.GitHubPromotions`).

PyGithub is imported at the top: this module is imported only when a forge is built
(:func:`mlgate.edge.forges.make_forge`), never at CLI start-up.
"""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import quote

import requests
from github import Auth, Github, GithubException

from mlgate.core.doctor import github_app_missing, github_can_open_pr
from mlgate.core.freshness import Comparison, FileChange
from mlgate.core.errors import UsageError
from mlgate.core.policy import PERMISSIONS, Review
from mlgate.edge.forges.base import (
    MARKER,
    STATUS_CONTEXT,
    ForgeBusy,
    ForgeError,
    GitLabApprovals,
    PullRequest,
    RepoAccess,
    forge_call,
    retry_after_seconds,
    safe_path,
)
from mlgate.edge.forges.comments import Comment, upsert_marked_comment
from mlgate.edge.forges.github_graphql import APIS, GitHubGraphQLPromotions
from mlgate.edge.forges.github_promotion import use_contents_api


PER_PAGE = 100
#: REST "Compare two commits" lists at most this many changed files for a comparison.
COMPARE_MAX_FILES = 300


def _classify(exc: BaseException) -> float | bool:
    if isinstance(exc, GithubException):
        status = exc.status
        wait = retry_after_seconds(exc.headers)
        msg = str(exc.data if exc.data is not None else exc).lower()
        if status == 429 or status >= 500 or (status == 403 and ("secondary rate limit" in msg or wait is not None)):
            return wait if wait is not None else True
        return False
    return isinstance(exc, (requests.ConnectionError, requests.Timeout, ConnectionError))


class GitHubForge(GitHubGraphQLPromotions):
    """GitHub REST API (and GraphQL for promotion PRs) for one installation (or token).

    Args:
        base_url: API root, ``https://api.github.com`` (or GHES ``https://host/api/v3``, or a test fake).
        token: a personal/installation token (used when no app is given).
        app_id / private_key / installation_id: GitHub App credentials (preferred).
        write_interval / request_interval: seconds PyGithub waits between writes / requests
            (GitHub recommends >= 1 s between content-creating requests).
        bot_login: the bot's own login, to find its comment when no comment id is known.
        api: "graphql" (default): :meth:`open_promotion` takes 3 GraphQL round trips for any number
            of files (:mod:`~mlgate.edge.forges.github_graphql`); "rest": the REST path
            (:mod:`~mlgate.edge.forges.github_promotion`), for servers without ``createCommitOnBranch``.

    Raises (from every method): :class:`ForgeBusy` when GitHub keeps failing or rate
    limiting (retry the delivery later), :class:`ForgeError` for a refusal.
    """

    name = "github"
    _classify = staticmethod(_classify)  # for the GraphQL transport (github_graphql)

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
        api: str = "graphql",
    ):
        if api not in APIS:
            raise UsageError(f"github_api must be one of {', '.join(APIS)}, not {api!r}")
        self.api = api
        if app_id and private_key and installation_id:
            auth: Any = Auth.AppAuth(app_id, private_key).get_installation_auth(int(installation_id))
        elif token:
            auth = Auth.Token(token)
        else:
            raise UsageError(  # configuration, not the forge: exit 2
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
        #: App credentials, for the installation's permissions (``mlgate doctor``): (app id, key)
        self._app = (app_id, private_key) if app_id and private_key and installation_id else None

    # ------------------------------------------------------------------ plumbing

    def _api(self, verb: str, path: str, params: dict[str, Any] | None = None, body: Any = None) -> tuple[dict, Any]:
        """One REST call with retries; returns (headers, json). GithubException is re-raised as is.

        Raises ForgeError (nothing sent) for a path with a dot segment (:func:`~.base.safe_path`)."""
        safe_path(path)
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

    def web_url(self, repo: str) -> str:
        host = self.base_url
        if host == "https://api.github.com":
            return f"https://github.com/{repo}"
        return f"{host.removesuffix('/api/v3')}/{repo}"

    # ------------------------------------------------------------------ reads

    def default_branch(self, repo: str) -> str:
        _, data = self._api("GET", f"/repos/{repo}")
        return data["default_branch"]

    def repository_access(self, repo: str) -> RepoAccess:
        """Whether the credentials see ``repo`` and may open a promotion PR there, reading only.

        A token: REST "Get a repository" (``GET /repos/{o}/{r}``), whose ``permissions`` (sent for
        an authenticated caller) must have ``push``. A GitHub App installation: REST "Get a
        repository installation for the authenticated app" (``GET /repos/{o}/{r}/installation``,
        with the App's JWT), whose ``permissions`` must hold ``contents: write`` and
        ``pull_requests: write``. A 404 is ``exists=False``.

        Raises:
            ForgeError: GitHub refused the credentials (401/403); ForgeBusy: see the class.
        """
        try:
            _, d = self._api("GET", f"/repos/{repo}")
        except GithubException as e:
            if self._status(e) == 404:
                return RepoAccess(False)
            raise ForgeError(f"GitHub refused to read {repo}: {self._status(e)} {self._message(e)}",
                             self._status(e)) from None
        branch = str(d.get("default_branch") or "")
        if self._app is None:
            can = github_can_open_pr(d.get("permissions"))
            role = "" if can is None else f"permissions.push: {str(bool(can)).lower()}"
            return RepoAccess(True, branch, can, role)
        missing = github_app_missing(self._installation_permissions(repo))
        return RepoAccess(True, branch, not missing,
                          "installation lacks " + ", ".join(missing) if missing else
                          "installation has contents: write, pull_requests: write")

    def _installation_permissions(self, repo: str) -> dict[str, str]:
        """``permissions`` of the App's installation on ``repo`` (a JWT-authenticated read)."""
        assert self._app is not None
        app = Github(auth=Auth.AppAuth(*self._app), base_url=self.base_url, retry=None, lazy=True)
        path = safe_path(f"/repos/{repo}/installation")
        try:
            _, d = forge_call("github", self.base_url, f"GitHub GET {path}",
                              lambda: app.requester.requestJsonAndCheck("GET", path),
                              http_error=GithubException, status_of=lambda e: e.status, classify=_classify,
                              on_attempt=self._count)
        except GithubException as e:
            raise ForgeError(f"GitHub refused to read the App installation of {repo}: {self._status(e)} "
                             f"{self._message(e)}", self._status(e)) from None
        return dict(d.get("permissions") or {})

    def _count(self) -> None:
        self.api_calls += 1

    def whoami(self) -> str:
        """Whom the token authenticates (REST "Get the authenticated user", ``GET /user``): its login.

        Raises:
            ForgeError: GitHub refused the token (401/403); ForgeBusy: see the class."""
        try:
            _, d = self._api("GET", "/user")
        except GithubException as e:
            raise ForgeError(f"GitHub refused the token: {self._status(e)} {self._message(e)}", self._status(e)) from None
        return str(d.get("login") or "")

    def branch_exists(self, repo: str, branch: str) -> bool:
        """REST "Get a branch" answers 200 (True) or 404 (False); ForgeError for another refusal."""
        try:
            return self._branch(repo, branch) is not None
        except GithubException as e:
            raise ForgeError(f"GitHub refused to read branch {branch} of {repo}: {self._status(e)} "
                             f"{self._message(e)}", self._status(e)) from None

    def _contents(self, repo: str, path: str, ref: str) -> tuple[str, str] | None:
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

    def compare(self, repo: str, base: str, head: str) -> Comparison:
        """``GET /repos/{o}/{r}/compare/{base}...{head}`` (REST "Compare two commits", first page: it
        holds the file list, at most :data:`COMPARE_MAX_FILES` files). ``contains_base``: ``status`` is
        "ahead" or "identical"; a file without ``patch`` (binary, too large) has ``patch`` None.
        Raises :class:`ForgeError` when GitHub does not know either side (404)."""
        basehead = f"{quote(base, safe='/')}...{quote(head, safe='/')}"
        try:
            _, d = self._api("GET", f"/repos/{repo}/compare/{basehead}", {"per_page": 1})
        except GithubException as e:
            if self._status(e) in (404, 422):
                raise ForgeError(f"GitHub cannot compare {repo} {base[:12]}...{head[:12]}: {self._status(e)} "
                                 f"{self._message(e)}", self._status(e)) from None
            raise
        files = d.get("files") or []
        return Comparison(
            base=base, head=head, contains_base=d.get("status") in ("ahead", "identical"),
            files=tuple(FileChange(path=f["filename"], status=f.get("status") or "modified",
                                   patch=f.get("patch") or None, previous_path=f.get("previous_filename"))
                        for f in files),
            complete=len(files) < COMPARE_MAX_FILES,
        )

    def permission(self, repo: str, user: str, user_id: int | None = None) -> str:
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
        role = str(d.get("role_name") or "").lower()
        if role in PERMISSIONS:
            return role
        legacy = str(d.get("permission") or "none").lower()
        return {"pull": "read", "push": "write"}.get(legacy, legacy if legacy in PERMISSIONS else "none")

    def in_team(self, team: str, user: str, user_id: int | None = None) -> bool:
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
        """Create or update mlgate's one comment (found by :data:`MARKER` on a comment of a bot, or
        of ``bot_login``); (comment id, url). See :func:`~mlgate.edge.forges.comments.upsert_marked_comment`."""
        text = body if MARKER in body else f"{MARKER}\n{body}"

        def ours(c: Comment) -> bool:
            user = c.get("user") or {}
            mine = user.get("type") == "Bot" or (self.bot_login and user.get("login") == self.bot_login)
            return bool(MARKER in (c.get("body") or "") and mine)

        _, d = upsert_marked_comment(_IssueComments(self, repo, number), text, ours, known_id=known_id)
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


def app_identity(base_url: str, app_id: int, private_key: str, timeout: int = 15) -> str:
    """The GitHub App the id and key authenticate (REST "Get the authenticated app", ``GET /app``
    with the App's JWT): its slug. Read only; used by the bot's start-up checks.

    Raises:
        ForgeError: GitHub refused the JWT (401: wrong id or key); ForgeBusy: unreachable, 5xx."""
    gh = Github(auth=Auth.AppAuth(app_id, private_key), base_url=base_url.rstrip("/"), retry=None, lazy=True,
                timeout=timeout)
    try:
        _, d = forge_call("github", base_url, "GitHub GET /app", lambda: gh.requester.requestJsonAndCheck("GET", "/app"),
                          http_error=GithubException, status_of=lambda e: e.status, classify=_classify)
    except GithubException as e:
        raise ForgeError(f"GitHub refused the App's JWT (app id {app_id}): {e.status}", e.status) from None
    return str(d.get("slug") or d.get("name") or app_id)


class _IssueComments:
    """The comments of one pull request through :meth:`GitHubForge._api` (a
    :class:`~mlgate.edge.forges.comments.CommentThread`)."""

    def __init__(self, forge: GitHubForge, repo: str, number: int):
        self.forge, self.repo, self.number = forge, repo, number

    def comments(self) -> list[Comment]:
        return self.forge._pages(f"/repos/{self.repo}/issues/{self.number}/comments")

    def create(self, body: str) -> Comment:
        return self.forge._api("POST", f"/repos/{self.repo}/issues/{self.number}/comments", body={"body": body})[1]

    def update(self, comment_id: Any, body: str, *, missing_ok: bool = False) -> Comment | None:
        try:
            return self.forge._api("PATCH", f"/repos/{self.repo}/issues/comments/{comment_id}", body={"body": body})[1]
        except GithubException as e:
            if missing_ok and self.forge._status(e) in (404, 410):
                return None
            raise


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
