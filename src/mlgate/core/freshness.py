"""Is an approval still on the PR's head? The commit approved, and head commits that only merge the base.

Pure core: no network, no clock. The bot gathers the facts (its own records of review
deliveries, and the forge's comparisons of commits) and :func:`mlgate.core.policy.count_approvals`
asks :func:`staleness` about each approval.

The rule (issue 10, "Approvals re-pointed by GitHub"; README "The bot", approvals):

- **The commit approved** is the head the reviewer approved, recorded by the bot when the review
  event arrived: GitHub ``pull_request_review`` ``submitted`` (``review.commit_id`` of that
  delivery, kept per review id); GitLab the merge request ``approved`` event (the head then).
  GitHub moves a review's ``commit_id`` forward when the new head is a merge of the base
  branch (REST "List reviews for a pull request" then shows the new head), so the listing alone
  cannot tell an approval of the head from an approval of an older commit.
- **A GitHub review with no record** (given before the bot was installed, or its delivery was
  lost) falls back to its ``commit_id`` only when no push was seen after it: no ``pull_request``
  ``synchronize`` delivery whose ``pull_request.updated_at`` is at or after the review's
  ``submitted_at`` (both stamped by GitHub's clock, never the bot's). A push after the review may
  have moved it (GitHub re-points reviews across a merge of the base branch), so the commit
  approved is unknown and the approval is stale (fail closed: re-approve). A review submitted after
  the last push the bot saw was given on a head GitHub had already shown the reviewer.
- **Stale by default**: an approval counts only when the commit approved is the head. Any new
  head commit makes it stale, merges of the base branch included.
- **``approvals.keep_on_base_merge: true``** keeps an approval across head commits whose only
  change is a merge of the base branch, verified by comparing trees (:func:`only_base_merge`):
  the head contains the approved commit, and every file that differs between the approved commit
  and the head carries exactly the change the base branch made to it since the approved commit
  forked from it (same path, same kind of change, the same non-empty diff, or the same rename with
  no change of content). A file the base did
  not change, a conflict resolved by hand, a rewritten branch, or a diff the forge does not show
  (binary, too large, a cut file list) makes the approval stale.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Mapping


@dataclass(frozen=True)
class FileChange:
    """One file of a :class:`Comparison`.

    GitHub "Compare two commits" ``files[]``: ``filename``, ``previous_filename``, ``status``,
    ``patch``; GitLab "Compare branches, tags or commits" ``diffs[]``: ``new_path``, ``old_path``,
    ``new_file``/``deleted_file``/``renamed_file``, ``diff``.

    ``status``: added, removed, modified, renamed (or the forge's other words, compared as they are).
    ``patch``: the diff's hunks; None when the forge does not show it (binary, too large, empty).
    """

    path: str
    status: str = "modified"
    patch: str | None = None
    previous_path: str | None = None


@dataclass(frozen=True)
class Comparison:
    """``base...head`` as the forge compares it: the changes from their merge base to ``head``.

    ``contains_base``: ``head`` descends from ``base`` (GitHub ``status`` "ahead" or "identical").
    ``complete``: False when the forge cut the file list (GitHub lists at most 300 files).
    """

    base: str
    head: str
    contains_base: bool
    files: tuple[FileChange, ...] = ()
    complete: bool = True


@dataclass(frozen=True)
class BaseMerge:
    """What :func:`only_base_merge` weighs for one approved commit: ``to_head`` compares the approved
    commit with the PR head, ``to_base`` with the base branch (what the base changed since the
    approved commit forked from it)."""

    to_head: Comparison
    to_base: Comparison


def _short(sha: str | None) -> str:
    return (sha or "?")[:7]


def _same_change(f: FileChange, g: FileChange | None) -> bool:
    if g is None or f.status != g.status:
        return False
    if (f.previous_path or f.path) != (g.previous_path or g.path):
        return False
    if f.status == "renamed" and not f.patch and not g.patch:
        return True  # the same file moved to the same name, its content unchanged on both sides
    return bool(f.patch) and f.patch == g.patch


def only_base_merge(merge: BaseMerge | None) -> str | None:
    """Whether the head differs from the approved commit only by a merge of the base branch.

    Args:
        merge: the two comparisons (None: they could not be made).

    Returns:
        None when every file that differs between the approved commit and the head carries exactly
        the base branch's change to it; else why not (a clause for "stale: ...").
    """
    if merge is None:
        return "the forge could not compare it with the head"
    head, base = merge.to_head, merge.to_base
    if not head.contains_base:
        return f"the head {_short(head.head)} does not contain the approved commit (the branch was rewritten)"
    if not (head.complete and base.complete):
        return "the comparison lists too many files to check"
    on_base = {f.path: f for f in base.files}
    other = sorted(f.path for f in head.files if not _same_change(f, on_base.get(f.path)))
    if other:
        more = f" and {len(other) - 3} more" if len(other) > 3 else ""
        return f"the new commits also change {', '.join(other[:3])}{more} beyond what the base branch changed"
    return None


def _when(text: str | None) -> datetime | None:
    """An ISO 8601 time as GitHub writes it (``2024-05-01T10:00:00Z``); None when absent or unreadable."""
    try:
        return datetime.fromisoformat((text or "").replace("Z", "+00:00")) if text else None
    except ValueError:
        return None


def github_approved_commit(review_id: int, commit_id: str | None, submitted_at: str | None,
                           recorded: Mapping[int, str], synchronized_at: str | None) -> tuple[str | None, str | None]:
    """The commit a GitHub review approved: (commit, None), or (None, why it is unknown).

    Args:
        review_id / commit_id / submitted_at: the review as REST "List reviews for a pull request" shows it now.
        recorded: review id → the commit approved, recorded from its ``pull_request_review`` delivery.
        synchronized_at: ``pull_request.updated_at`` of the latest ``synchronize`` delivery the bot saw
            for this PR (None: none seen).
    """
    seen = recorded.get(review_id)
    if seen:
        return seen, None
    pushed, given = _when(synchronized_at), _when(submitted_at)
    after_review = synchronized_at is not None and (pushed is None or given is None or pushed >= given)
    if commit_id and not after_review:
        return commit_id, None
    return None, (f"stale: the commit approved is unknown (the bot has no record of this review and saw a push "
                  f"after it; GitHub may have moved it to {_short(commit_id)}): re-approve on the current head")


def staleness(approved: str | None, head: str | None, *, keep_on_base_merge: bool = False,
              base_merges: Mapping[str, BaseMerge] | None = None) -> str | None:
    """Why an approval of commit ``approved`` does not count on ``head`` (None: it counts).

    Args:
        approved: the commit approved (see the module docstring); head: the PR head (None: not checked).
        keep_on_base_merge: ``approvals.keep_on_base_merge`` of the environment.
        base_merges: approved commit → :class:`BaseMerge` (gathered only with ``keep_on_base_merge``).

    Returns:
        None, or a reason starting with "stale:".
    """
    if not head or approved == head:
        return None
    moved = f"stale: approved {_short(approved)}, head is now {_short(head)}"
    if not keep_on_base_merge:
        return f"{moved}: re-approve on the current head (approvals.keep_on_base_merge is off)"
    why = only_base_merge((base_merges or {}).get(approved or ""))
    if why is None:
        return None
    return f"{moved} and {why}: re-approve on the current head"
