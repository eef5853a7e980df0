"""Webhook payload → :class:`Event` (or :class:`Ignored` with a reason).

Pure core: takes the forge name, the event name (GitHub ``X-GitHub-Event``, GitLab
``X-Gitlab-Event``) and the decoded JSON body; no I/O, no clock.

Payload shapes follow GitHub's webhook documentation as machine-checked by npm
``@octokit/webhooks-schemas`` (events ``issue_comment``, ``pull_request_review``,
``pull_request``, ``push``) and GitLab's "Webhook events" page
(``doc/user/project/integrations/webhook_events.md``: ``Note Hook``, ``Merge Request Hook``,
``Push Hook``).

What is ignored, and why (each reason is logged and shown by ``mlgate bot explain``):

- events mlgate does not use (any other event name, or an action it does not act on);
- GitHub ``issue_comment`` that is ``edited``/``deleted`` or not on a pull request
  (``issue.pull_request`` absent);
- GitLab notes with ``action: update``, system notes, or notes on an Issue, Commit or Snippet;
- comments by bot accounts: GitHub ``user.type == "Bot"`` or a login ending in ``[bot]``;
  GitLab project/group access-token bots (``project_<id>_bot...``, ``group_<id>_bot...``);
  and the configured bot login (so the bot's own help text never triggers it);
- payloads of the wrong shape: every field read is type-checked, and a missing required field
  or a value of another JSON type gives ``malformed payload: <field> is <type>, expected <type>``
  (the worker marks such a delivery failed at once: retrying cannot change it);
- repository names the forge could not have sent (they end up in API paths): GitHub
  ``repository.full_name`` and GitLab ``project.path_with_namespace`` are checked against the
  forges' naming rules (:func:`github_repo_problem`, :func:`gitlab_path_problem`), so
  ``acme/../../orgs/acme`` is refused as a malformed payload before any request.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

Forge = Literal["github", "gitlab"]
Kind = Literal["comment", "review", "pull_request", "push"]

_GITLAB_BOT = re.compile(r"^(project|group)_\d+_bot(_[0-9a-f]+)?\d*$")
#: GitLab service accounts (bot users): ``service_account_<hex>`` or ``service_account_group_<id>_<hex>``
#: (GitLab docs, "Service accounts": default username).
_GITLAB_SERVICE_ACCOUNT = re.compile(r"^service_account_(group_\d+_|project_\d+_)?[0-9a-z_]+$")


@dataclass(frozen=True)
class Event:
    """The parts of a delivery mlgate acts on, the same for both forges.

    Fields:
        forge: "github" or "gitlab".
        kind: "comment", "review", "pull_request" or "push".
        action: the forge's action ("created", "submitted", "dismissed", "opened",
            "synchronize", "merged", "closed", "approved", "unapproved", "push"...).
        repo: GitHub ``owner/name``; GitLab ``path_with_namespace``.
        repo_id: GitLab project id (None on GitHub).
        default_branch: the repository's default branch as the payload states it.
        installation_id: GitHub App installation id, if the delivery came through an app.
        number: PR number (GitLab: the merge request ``iid``); None for pushes.
        actor: who caused the event (comment author, reviewer, pusher, sender).
        actor_id: numeric id of the actor when the payload has it.
        author: the PR/MR author's login (GitLab: may be None; ``author_id`` is set instead).
        author_id: numeric id of the PR/MR author.
        head_sha: the PR head commit (push: the new tip ``after``).
        head_ref / base_ref: branch names (push: ``head_ref`` is the pushed branch).
        comment_id: the comment/note id (the once-only key of commands).
        body: comment text (comments), review body (reviews), PR body (pull requests).
        review_state: "approved", "changes_requested", "commented", "dismissed" (lower case).
        review_commit: the commit a review was given on.
        merged: True when a PR/MR was merged (action "merged").
        url: the web address of the comment/PR, for replies and audit.
        labels: label names on the PR/MR.
    """

    forge: Forge
    kind: Kind
    action: str
    repo: str
    repo_id: int | None = None
    default_branch: str | None = None
    installation_id: int | None = None
    number: int | None = None
    actor: str = ""
    actor_id: int | None = None
    author: str | None = None
    author_id: int | None = None
    head_sha: str | None = None
    head_ref: str | None = None
    base_ref: str | None = None
    comment_id: int | None = None
    body: str = ""
    review_state: str | None = None
    review_commit: str | None = None
    merged: bool = False
    url: str | None = None
    labels: tuple[str, ...] = field(default_factory=tuple)

    @property
    def comment_key(self) -> str | None:
        """``"<forge>:<repo>:comment:<id>"``: the same comment through any hook gives the same key."""
        if self.comment_id is None:
            return None
        return f"{self.forge}:{self.repo}:comment:{self.comment_id}"


@dataclass(frozen=True)
class Ignored:
    """A delivery mlgate acknowledges and drops; ``reason`` says why (one line)."""

    reason: str


def is_bot(login: str | None, user_type: str | None = None, bot_login: str | None = None) -> bool:
    """Whether an account is a bot.

    GitHub: ``user.type == "Bot"`` or a login ending in ``[bot]`` (GitHub Apps act as
    ``<app-slug>[bot]``). GitLab: project/group access-token bot users
    (``project_<id>_bot_<hex>``), service accounts (``service_account_...``) and users whose
    API/payload ``bot`` flag is true (pass ``user_type="Bot"``). Either: the configured ``bot_login``.
    """
    if not login:
        return False
    if user_type and user_type.lower() == "bot":
        return True
    low = login.lower()
    if low.endswith("[bot]") or _GITLAB_BOT.match(low) or _GITLAB_SERVICE_ACCOUNT.match(low):
        return True
    if bot_login and low in {bot_login.lower(), bot_login.lower().removesuffix("[bot]")}:
        return True
    return False


def normalize(forge: str, event_name: str, payload: dict[str, Any], *, bot_login: str | None = None) -> Event | Ignored:
    """Normalise one webhook delivery.

    Args:
        forge: "github" or "gitlab".
        event_name: GitHub ``X-GitHub-Event`` (e.g. "issue_comment"); GitLab ``X-Gitlab-Event``
            (e.g. "Note Hook"). GitLab's ``object_kind`` is used when the header is missing.
        payload: the decoded JSON body.
        bot_login: the bot's own account name, whose comments are ignored.

    Returns:
        An :class:`Event`, or :class:`Ignored` with the reason. Never raises, whatever the
        payload's shape: every field read is type-checked, and a payload missing a field the
        event needs, or holding one of the wrong JSON type, is
        ``Ignored("malformed payload: <field> is <type>, expected <type>")`` (e.g.
        ``comment.body is integer, expected string``). The fields of a returned Event have
        the types :class:`Event` declares.
    """
    if not isinstance(payload, dict):
        return Ignored(f"malformed payload: (root) is {_json_type(payload)}, expected object")
    try:
        if forge == "github":
            return _github(event_name if isinstance(event_name, str) else "", _Obj(payload, ""), bot_login)
        if forge == "gitlab":
            return _gitlab(event_name if isinstance(event_name, str) else "", _Obj(payload, ""), bot_login)
    except Malformed as e:
        return Ignored(f"malformed payload: {e}")
    return Ignored(f"unknown forge {forge!r}")


# --------------------------------------------------------------------------- typed reading


class Malformed(Exception):
    """A payload field is missing, of the wrong JSON type (``str()``: "<field> is <type>, expected
    <type>"), or a value the forge itself could never have sent (``message`` says why)."""

    def __init__(self, field: str, got: str, expected: str, message: str | None = None):
        super().__init__(message or f"{field} is {got}, expected {expected}")
        self.field, self.got, self.expected = field, got, expected


# --------------------------------------------------------------------------- repository names
#
# A repository name from a payload ends up in API paths (``/repos/{owner}/{repo}/...``,
# ``/projects/{path}/...``): ``acme/../../orgs/acme`` would make the bot call another endpoint.
# Names are checked against the forges' own rules before any request is made.

#: GitHub login (user or organisation): letters, digits and hyphens, at most 39, not starting with
#: a hyphen (GitHub's sign-up form; older accounts may hold double or trailing hyphens). ``_`` is
#: allowed too: Enterprise Managed Users are ``<handle>_<shortcode>`` (GitHub docs, "Username
#: considerations for external authentication").
_GH_OWNER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,38}")
#: GitHub repository name: letters, digits, ``.``, ``_``, ``-``, at most 100 (GitHub replaces every
#: other character with ``-`` when a repository is created); never ``.`` or ``..``.
_GH_REPO = re.compile(r"[A-Za-z0-9._-]{1,100}")
#: GitLab path segment (GitLab docs, "Reserved project and group names" and the path rules of
#: "Create a project"/"Create a group"): letters, digits, ``_``, ``-``, ``.``; not starting with
#: ``-`` or ``.``; at most 255; not ending in ``.git`` or ``.atom``; no ``..``.
_GL_SEGMENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,254}")
#: GitLab nests subgroups at most 20 deep (GitLab docs, "Subgroups"): 21 group levels + the project.
_GL_MAX_DEPTH = 22


def github_repo_problem(full_name: str) -> str | None:
    """Why ``full_name`` is not a GitHub ``owner/name`` (None when it is one).

    Rules: exactly one ``/``; owner ``[A-Za-z0-9_-]{1,39}`` not starting with ``-`` or ``_``; name
    ``[A-Za-z0-9._-]{1,100}``, not ``.`` or ``..``.
    """
    owner, sep, name = full_name.partition("/")
    if not sep or "/" in name:
        return "expected exactly one '/' between owner and name"
    if not _GH_OWNER.fullmatch(owner):
        return "the owner must be 1 to 39 letters, digits, '-' or '_', not starting with '-' or '_'"
    if not _GH_REPO.fullmatch(name) or name in (".", ".."):
        return "the name must be 1 to 100 letters, digits, '.', '_' or '-', and not '.' or '..'"
    return None


def gitlab_path_problem(path: str) -> str | None:
    """Why ``path`` is not a GitLab project path ``namespace/.../project`` (None when it is one).

    Rules: 2 to 22 segments separated by ``/``; each ``[A-Za-z0-9_.-]{1,255}``, not starting with
    ``-`` or ``.``, holding no ``..``, not ending in ``.git`` or ``.atom``.
    """
    parts = path.split("/")
    if not 2 <= len(parts) <= _GL_MAX_DEPTH:
        return f"expected a namespace and a project (2 to {_GL_MAX_DEPTH} segments separated by '/')"
    for seg in parts:
        if not _GL_SEGMENT.fullmatch(seg) or ".." in seg or seg.endswith((".git", ".atom")):
            return (f"segment {seg!r}: letters, digits, '_', '-' and '.' only, not starting with '-' or '.', "
                    "no '..', not ending in '.git' or '.atom'")
    return None


def _checked_name(obj: "_Obj", key: str, forge: str) -> str:
    """The repository name at ``key``, checked against the forge's naming rules (:class:`Malformed` if not)."""
    value = obj.str(key, required=True)
    why = github_repo_problem(value) if forge == "github" else gitlab_path_problem(value)
    if why is not None:
        where = obj._where(key)
        kind = "GitHub repository (owner/name)" if forge == "github" else "GitLab project path"
        shown = value if len(value) <= 200 else value[:200] + "..."
        raise Malformed(where, "string", kind, f"{where} {shown!r} is not a {kind}: {why}")
    return value


def _json_type(value: Any) -> str:
    """The JSON type name of a decoded value: object, array, string, integer, number, boolean, null."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


_MISSING = object()


class _Obj:
    """A JSON object with type-checked reads; ``path`` names it in error messages (``comment.user``).

    ``required`` reads raise :class:`Malformed` for a missing key or null; optional reads give
    None for both; a present value of another type always raises.
    """

    def __init__(self, data: dict[str, Any], path: str):
        self.data, self.path = data, path

    def _where(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def _get(self, key: str, expected: str, check: Any, required: bool) -> Any:
        value = self.data.get(key, _MISSING)
        if value is _MISSING or value is None:
            if required:
                raise Malformed(self._where(key), "missing" if value is _MISSING else "null", expected)
            return None
        if not check(value):
            raise Malformed(self._where(key), _json_type(value), expected)
        return value

    def has(self, key: str) -> bool:
        return self.data.get(key) is not None

    def obj(self, key: str, required: bool = False) -> "_Obj":
        """The object at ``key``; an absent optional object reads as an empty one."""
        value = self._get(key, "object", lambda v: isinstance(v, dict), required)
        return _Obj(value if value is not None else {}, self._where(key))

    def str(self, key: str, required: bool = False) -> str | None:
        return self._get(key, "string", lambda v: isinstance(v, str), required)

    def int(self, key: str, required: bool = False) -> int | None:
        return self._get(key, "integer", lambda v: isinstance(v, int) and not isinstance(v, bool), required)

    def bool(self, key: str) -> bool:
        return bool(self._get(key, "boolean", lambda v: isinstance(v, bool), False))

    def objects(self, key: str) -> list["_Obj"]:
        """The objects of the array at ``key`` (absent: none)."""
        value = self._get(key, "array", lambda v: isinstance(v, list), False) or []
        out = []
        for i, item in enumerate(value):
            if not isinstance(item, dict):
                raise Malformed(f"{self._where(key)}[{i}]", _json_type(item), "object")
            out.append(_Obj(item, f"{self._where(key)}[{i}]"))
        return out


# --------------------------------------------------------------------------- GitHub


def _gh_repo(p: _Obj) -> dict[str, Any]:
    repo = p.obj("repository", required=True)
    return {
        "repo": _checked_name(repo, "full_name", "github"),
        "default_branch": repo.str("default_branch") or repo.str("master_branch"),
        "installation_id": p.obj("installation").int("id"),
    }


def _login(user: _Obj) -> tuple[str, str | None, int | None]:
    return user.str("login") or "", user.str("type"), user.int("id")


def _labels(obj: _Obj, key: str, name: str) -> tuple[str, ...]:
    return tuple(n for lb in obj.objects(key) if (n := lb.str(name)) is not None)


def _github(event: str, p: _Obj, bot_login: str | None) -> Event | Ignored:
    action = p.str("action") or ""
    if event == "issue_comment":
        if action != "created":
            return Ignored(f"issue_comment action {action!r}: only new comments are read (edits of old comments are ignored)")
        issue = p.obj("issue", required=True)
        if not issue.has("pull_request"):
            return Ignored(f"comment on issue #{issue.int('number')} is not on a pull request")
        issue.obj("pull_request")
        comment = p.obj("comment", required=True)
        login, utype, uid = _login(comment.obj("user"))
        if is_bot(login, utype, bot_login):
            return Ignored(f"comment by bot account {login!r}")
        author, _, author_id = _login(issue.obj("user"))
        return Event(
            forge="github", kind="comment", action=action, number=issue.int("number", required=True), actor=login,
            actor_id=uid, author=author or None, author_id=author_id, comment_id=comment.int("id", required=True),
            body=comment.str("body") or "", url=comment.str("html_url"), labels=_labels(issue, "labels", "name"),
            **_gh_repo(p),
        )
    if event == "pull_request_review":
        if action not in ("submitted", "dismissed"):
            return Ignored(f"pull_request_review action {action!r} does not change approvals")
        review = p.obj("review", required=True)
        pr = p.obj("pull_request", required=True)
        login, utype, uid = _login(review.obj("user"))
        author, _, author_id = _login(pr.obj("user"))
        head, base = pr.obj("head", required=True), pr.obj("base", required=True)
        return Event(
            forge="github", kind="review", action=action, number=pr.int("number", required=True), actor=login,
            actor_id=uid, author=author or None, author_id=author_id, head_sha=head.str("sha", required=True),
            head_ref=head.str("ref"), base_ref=base.str("ref"), body=review.str("body") or "",
            review_state=(review.str("state") or "").lower(), review_commit=review.str("commit_id"),
            url=review.str("html_url") or pr.str("html_url"), **_gh_repo(p),
        )
    if event == "pull_request":
        pr = p.obj("pull_request", required=True)
        merged = pr.bool("merged")
        if action == "closed":
            if not merged:
                return Ignored(f"pull request #{pr.int('number')} was closed without merging")
            action = "merged"
        elif action not in ("opened", "synchronize", "reopened"):
            return Ignored(f"pull_request action {action!r} does not change what mlgate checks")
        sender, _stype, sid = _login(p.obj("sender"))
        author, _, author_id = _login(pr.obj("user"))
        head, base = pr.obj("head", required=True), pr.obj("base", required=True)
        return Event(
            forge="github", kind="pull_request", action=action, number=pr.int("number", required=True), actor=sender,
            actor_id=sid, author=author or None, author_id=author_id, head_sha=head.str("sha", required=True),
            head_ref=head.str("ref"), base_ref=base.str("ref"), body=pr.str("body") or "", merged=merged,
            url=pr.str("html_url"), labels=_labels(pr, "labels", "name"), **_gh_repo(p),
        )
    if event == "push":
        ref = p.str("ref", required=True)
        if not ref.startswith("refs/heads/"):
            return Ignored(f"push to {ref}: not a branch")
        if p.bool("deleted"):
            return Ignored(f"push deleted {ref}")
        pusher = p.obj("pusher").str("name") or _login(p.obj("sender"))[0]
        return Event(
            forge="github", kind="push", action="push", actor=pusher, head_sha=p.str("after", required=True),
            head_ref=ref[len("refs/heads/"):], **_gh_repo(p),
        )
    return Ignored(f"GitHub event {event!r} is not used by mlgate")


# --------------------------------------------------------------------------- GitLab

_GITLAB_KINDS = {"note": "Note Hook", "merge_request": "Merge Request Hook", "push": "Push Hook"}


def _gl_project(p: _Obj) -> dict[str, Any]:
    project = p.obj("project", required=True)
    pid = project.int("id")
    return {
        "repo": _checked_name(project, "path_with_namespace", "gitlab"),
        "repo_id": pid if pid is not None else p.int("project_id"),
        "default_branch": project.str("default_branch"),
    }


def _gitlab(event: str, p: _Obj, bot_login: str | None) -> Event | Ignored:
    if not event:
        kind = p.data.get("object_kind")
        event = _GITLAB_KINDS.get(kind, "") if isinstance(kind, str) else ""
    user = p.obj("user")
    login = user.str("username") or ""
    if event == "Note Hook":
        attrs = p.obj("object_attributes", required=True)
        noteable = attrs.str("noteable_type")
        if noteable != "MergeRequest":
            return Ignored(f"note on noteable type {noteable or 'unknown'}, not on a merge request")
        action = attrs.str("action") or "create"
        if action != "create":
            return Ignored(f"note action {action!r}: only new notes are read (edits of old notes are ignored)")
        if attrs.bool("system"):
            return Ignored("system note (written by GitLab itself)")
        if is_bot(login, "Bot" if user.bool("bot") else None, bot_login):
            return Ignored(f"note by bot account {login!r}")
        mr = p.obj("merge_request", required=True)
        return Event(
            forge="gitlab", kind="comment", action="created", number=mr.int("iid", required=True), actor=login,
            actor_id=user.int("id"), author_id=mr.int("author_id"), head_sha=mr.obj("last_commit").str("id"),
            head_ref=mr.str("source_branch"), base_ref=mr.str("target_branch"),
            comment_id=attrs.int("id", required=True), body=attrs.str("note") or "", url=attrs.str("url"),
            labels=_labels(mr, "labels", "title"), **_gl_project(p),
        )
    if event == "Merge Request Hook":
        attrs = p.obj("object_attributes", required=True)
        action = attrs.str("action") or ""
        last = attrs.obj("last_commit")
        labels = _labels(attrs, "labels", "title") or _labels(p, "labels", "title")
        common = dict(
            forge="gitlab", number=attrs.int("iid", required=True), actor=login, actor_id=user.int("id"),
            author_id=attrs.int("author_id"), head_sha=last.str("id"), head_ref=attrs.str("source_branch"),
            base_ref=attrs.str("target_branch"), body=attrs.str("description") or "", url=attrs.str("url"),
            labels=labels, **_gl_project(p),
        )
        if action == "merge":
            return Event(kind="pull_request", action="merged", merged=True, **common)
        if action in ("open", "reopen"):
            return Event(kind="pull_request", action="opened", **common)
        if action == "update":
            if not attrs.str("oldrev"):
                return Ignored("merge request update without new commits (title, labels, ...)")
            return Event(kind="pull_request", action="synchronize", **common)
        if action in ("approved", "approval", "unapproved", "unapproval"):
            state = "approved" if action in ("approved", "approval") else "dismissed"
            return Event(kind="review", action=action, review_state=state, review_commit=last.str("id"), **common)
        return Ignored(f"merge request action {action!r} does not change what mlgate checks")
    if event == "Push Hook":
        ref = p.str("ref", required=True)
        if not ref.startswith("refs/heads/"):
            return Ignored(f"push to {ref}: not a branch")
        after = p.str("after", required=True)
        if set(after) == {"0"}:
            return Ignored(f"push deleted {ref}")
        return Event(
            forge="gitlab", kind="push", action="push", actor=p.str("user_username") or login,
            actor_id=p.int("user_id"), head_sha=after, head_ref=ref[len("refs/heads/"):], **_gl_project(p),
        )
    return Ignored(f"GitLab event {event!r} is not used by mlgate")
