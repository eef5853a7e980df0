"""One comment client: mlgate's comment on a pull/merge request, found by its hidden marker, then
updated in place, or created when there is none.

Two callers keep one comment each, with their own marker:

- the bot's forges (:mod:`.github`, :mod:`.gitlab`): :data:`~mlgate.edge.forges.base.MARKER`, on
  a comment the bot wrote;
- ``mlgate report publish`` (:mod:`.ci_comments`): :data:`~mlgate.core.report.COMMENT_MARKER`
  plus an optional key marker (:func:`mlgate.core.ci_report.find_comment`), on any author's comment.

Each brings a small :class:`CommentThread` transport over its own HTTP client (PyGithub and
python-gitlab for the bot, whose retries and errors are the forge's; httpx for
the CI job, whose errors are exit codes), and a predicate saying which comment is its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal, Protocol

Comment = Mapping[str, Any]


class CommentThread(Protocol):
    """The comments of one pull/merge request, as the forge's REST API returns them (JSON objects
    with at least ``id`` and ``body``)."""

    def comments(self) -> Iterable[Comment]:
        """Every comment, oldest first."""
        ...

    def create(self, body: str) -> Comment:
        """Add a comment; the created comment."""
        ...

    def update(self, comment_id: Any, body: str, *, missing_ok: bool = False) -> Comment | None:
        """Replace a comment's text; the updated comment. With ``missing_ok``, None when the
        comment is gone (deleted since its id was stored) instead of the transport's error."""
        ...


def upsert_marked_comment(
    thread: CommentThread,
    body: str,
    ours: Callable[[Comment], bool],
    *,
    known_id: Any = None,
) -> tuple[Literal["created", "updated"], Comment]:
    """Update the first comment of ``thread`` that ``ours`` accepts to ``body``, or create one.

    Args:
        thread: the pull/merge request's comments (see :class:`CommentThread`).
        body: the whole new text (its hidden marker included).
        ours: tells the caller's comment by its marker (and author, or key).
        known_id: the id stored from an earlier call: updated first, without listing; when that
            comment is gone the thread is searched as without it.

    Returns:
        ``("created" | "updated", the comment as the forge returned it)``.

    Raises:
        Whatever the transport raises for a refused or failed call.
    """
    if known_id:
        got = thread.update(known_id, body, missing_ok=True)
        if got is not None:
            return "updated", got
    for comment in thread.comments():
        if ours(comment):
            return "updated", thread.update(comment["id"], body)  # type: ignore[return-value]
    return "created", thread.create(body)
