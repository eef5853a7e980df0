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
  and the configured bot login (so the bot's own help text never triggers it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

Forge = Literal["github", "gitlab"]
Kind = Literal["comment", "review", "pull_request", "push"]

_GITLAB_BOT = re.compile(r"^(project|group)_\d+_bot(_[0-9a-f]+)?\d*$")


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
    (``project_<id>_bot_<hex>``). Either: the configured ``bot_login``.
    """
    if not login:
        return False
    if user_type and user_type.lower() == "bot":
        return True
    low = login.lower()
    if low.endswith("[bot]") or _GITLAB_BOT.match(low):
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
        An :class:`Event`, or :class:`Ignored` with the reason. Never raises on odd but
        valid payloads; a payload missing the fields an event needs is :class:`Ignored`
        ("malformed ...").
    """
    if not isinstance(payload, dict):
        return Ignored(f"payload is a {type(payload).__name__}, not a JSON object")
    try:
        if forge == "github":
            return _github(event_name, payload, bot_login)
        if forge == "gitlab":
            return _gitlab(event_name, payload, bot_login)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        return Ignored(f"malformed {forge} {event_name or 'event'} payload: missing or wrong field {e}")
    return Ignored(f"unknown forge {forge!r}")


# --------------------------------------------------------------------------- GitHub


def _gh_repo(p: dict[str, Any]) -> dict[str, Any]:
    repo = p.get("repository") or {}
    inst = p.get("installation") or {}
    return {
        "repo": repo["full_name"],
        "default_branch": repo.get("default_branch") or repo.get("master_branch"),
        "installation_id": inst.get("id"),
    }


def _login(user: dict[str, Any] | None) -> tuple[str, str | None, int | None]:
    user = user or {}
    return user.get("login") or "", user.get("type"), user.get("id")


def _github(event: str, p: dict[str, Any], bot_login: str | None) -> Event | Ignored:
    action = p.get("action") or ""
    if event == "issue_comment":
        if action != "created":
            return Ignored(f"issue_comment action {action!r}: only new comments are read (edits of old comments are ignored)")
        issue = p["issue"]
        if issue.get("pull_request") is None:
            return Ignored(f"comment on issue #{issue.get('number')} is not on a pull request")
        comment = p["comment"]
        login, utype, uid = _login(comment.get("user"))
        if is_bot(login, utype, bot_login):
            return Ignored(f"comment by bot account {login!r}")
        author, _, author_id = _login(issue.get("user"))
        return Event(
            forge="github", kind="comment", action=action, number=issue["number"], actor=login, actor_id=uid,
            author=author or None, author_id=author_id, comment_id=comment["id"], body=comment.get("body") or "",
            url=comment.get("html_url"), labels=tuple(lb["name"] for lb in issue.get("labels") or [] if "name" in lb),
            **_gh_repo(p),
        )
    if event == "pull_request_review":
        if action not in ("submitted", "dismissed"):
            return Ignored(f"pull_request_review action {action!r} does not change approvals")
        review = p["review"]
        pr = p["pull_request"]
        login, utype, uid = _login(review.get("user"))
        author, _, author_id = _login(pr.get("user"))
        return Event(
            forge="github", kind="review", action=action, number=pr["number"], actor=login, actor_id=uid,
            author=author or None, author_id=author_id, head_sha=pr["head"]["sha"], head_ref=pr["head"].get("ref"),
            base_ref=pr["base"].get("ref"), body=review.get("body") or "", review_state=(review.get("state") or "").lower(),
            review_commit=review.get("commit_id"), url=review.get("html_url") or pr.get("html_url"),
            **_gh_repo(p),
        )
    if event == "pull_request":
        pr = p["pull_request"]
        if action == "closed":
            if not pr.get("merged"):
                return Ignored(f"pull request #{pr['number']} was closed without merging")
            action = "merged"
        elif action not in ("opened", "synchronize", "reopened"):
            return Ignored(f"pull_request action {action!r} does not change what mlgate checks")
        sender, stype, sid = _login(p.get("sender"))
        author, _, author_id = _login(pr.get("user"))
        return Event(
            forge="github", kind="pull_request", action=action, number=pr["number"], actor=sender, actor_id=sid,
            author=author or None, author_id=author_id, head_sha=pr["head"]["sha"], head_ref=pr["head"].get("ref"),
            base_ref=pr["base"].get("ref"), body=pr.get("body") or "", merged=bool(pr.get("merged")),
            url=pr.get("html_url"), labels=tuple(lb["name"] for lb in pr.get("labels") or [] if "name" in lb),
            **_gh_repo(p),
        )
    if event == "push":
        ref = p["ref"]
        if not ref.startswith("refs/heads/"):
            return Ignored(f"push to {ref}: not a branch")
        if p.get("deleted"):
            return Ignored(f"push deleted {ref}")
        pusher = (p.get("pusher") or {}).get("name") or _login(p.get("sender"))[0]
        return Event(
            forge="github", kind="push", action="push", actor=pusher, head_sha=p["after"],
            head_ref=ref[len("refs/heads/"):], **_gh_repo(p),
        )
    return Ignored(f"GitHub event {event!r} is not used by mlgate")


# --------------------------------------------------------------------------- GitLab

_GITLAB_KINDS = {"note": "Note Hook", "merge_request": "Merge Request Hook", "push": "Push Hook"}


def _gl_project(p: dict[str, Any]) -> dict[str, Any]:
    project = p.get("project") or {}
    return {
        "repo": project["path_with_namespace"],
        "repo_id": project.get("id") if project.get("id") is not None else p.get("project_id"),
        "default_branch": project.get("default_branch"),
    }


def _gitlab(event: str, p: dict[str, Any], bot_login: str | None) -> Event | Ignored:
    if not event:
        event = _GITLAB_KINDS.get(str(p.get("object_kind")), "")
    user = p.get("user") or {}
    login = user.get("username") or ""
    if event == "Note Hook":
        attrs = p["object_attributes"]
        noteable = attrs.get("noteable_type")
        if noteable != "MergeRequest":
            return Ignored(f"note on noteable type {noteable or 'unknown'}, not on a merge request")
        action = attrs.get("action") or "create"
        if action != "create":
            return Ignored(f"note action {action!r}: only new notes are read (edits of old notes are ignored)")
        if attrs.get("system"):
            return Ignored("system note (written by GitLab itself)")
        if is_bot(login, "Bot" if user.get("bot") else None, bot_login):
            return Ignored(f"note by bot account {login!r}")
        mr = p["merge_request"]
        last = mr.get("last_commit") or {}
        return Event(
            forge="gitlab", kind="comment", action="created", number=mr["iid"], actor=login, actor_id=user.get("id"),
            author_id=mr.get("author_id"), head_sha=last.get("id"), head_ref=mr.get("source_branch"),
            base_ref=mr.get("target_branch"), comment_id=attrs["id"], body=attrs.get("note") or "",
            url=attrs.get("url"), labels=tuple(lb.get("title", "") for lb in mr.get("labels") or []),
            **_gl_project(p),
        )
    if event == "Merge Request Hook":
        attrs = p["object_attributes"]
        action = attrs.get("action") or ""
        last = attrs.get("last_commit") or {}
        common = dict(
            forge="gitlab", number=attrs["iid"], actor=login, actor_id=user.get("id"), author_id=attrs.get("author_id"),
            head_sha=last.get("id"), head_ref=attrs.get("source_branch"), base_ref=attrs.get("target_branch"),
            body=attrs.get("description") or "", url=attrs.get("url"),
            labels=tuple(lb.get("title", "") for lb in attrs.get("labels") or p.get("labels") or []),
            **_gl_project(p),
        )
        if action == "merge":
            return Event(kind="pull_request", action="merged", merged=True, **common)
        if action in ("open", "reopen"):
            return Event(kind="pull_request", action="opened", **common)
        if action == "update":
            if not attrs.get("oldrev"):
                return Ignored("merge request update without new commits (title, labels, ...)")
            return Event(kind="pull_request", action="synchronize", **common)
        if action in ("approved", "approval", "unapproved", "unapproval"):
            state = "approved" if action in ("approved", "approval") else "dismissed"
            return Event(kind="review", action=action, review_state=state, review_commit=last.get("id"), **common)
        return Ignored(f"merge request action {action!r} does not change what mlgate checks")
    if event == "Push Hook":
        ref = p["ref"]
        if not ref.startswith("refs/heads/"):
            return Ignored(f"push to {ref}: not a branch")
        if set(str(p.get("after", ""))) == {"0"}:
            return Ignored(f"push deleted {ref}")
        return Event(
            forge="gitlab", kind="push", action="push", actor=p.get("user_username") or login,
            actor_id=p.get("user_id"), head_sha=p["after"], head_ref=ref[len("refs/heads/"):], **_gl_project(p),
        )
    return Ignored(f"GitLab event {event!r} is not used by mlgate")
