"""mlgate's one reply per PR/MR, written by one worker at a time; and which delivery opened a promotion PR.

Replies (table ``mlgate_replies``, one row per (forge, repository, number)): a worker that is
about to write the bot's comment claims the row first: an insert-if-absent, or an update of a
row nobody holds (or whose hold lapsed), so every worker and replica on the same database
agrees. The holder reads the stored comment id, creates or updates the comment, and stores
the id as it lets go. Concurrent commands on one PR therefore take turns, and the first
POST of a comment happens once (GitHub REST "Create an issue comment" / GitLab "Create new
merge request note" are not idempotent). A hold lives ``ttl`` seconds (:data:`REPLY_HOLD_SECONDS`
unless the caller says); with ``keep=True`` it is a lease renewed every third of that while its
block runs (the bot: ``lease_seconds``), so a holder that died (SIGKILL) is taken over within
one short lease, and a slow forge call keeps its hold.

Promotion openings (table ``mlgate_promotion_openings``, one row per (forge, GitOps repository,
promotion branch)): ``writing`` names the delivery writing that branch's promotion now,
``opener``/``number`` the delivery that opened the PR/MR ``number``. A retry of a delivery
whose earlier attempt may have sent the create-PR request (it was killed, or the answer was
lost) finds the PR already open; :meth:`PromotionOpenings.finish` then says that this
delivery opened it, unless the bot recorded another delivery as the opener of that PR.

Times are UNIX seconds (float, UTC), as in :mod:`.tables`.
"""

from __future__ import annotations

import os
import random
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from mlgate.core.errors import InfraError
from mlgate.edge.db.tables import promotion_openings, replies

#: Seconds a worker holds a PR's reply; a holder that died is taken over after that.
REPLY_HOLD_SECONDS = 30.0
#: Seconds a worker waits for a PR's reply to be free before giving up (:class:`ReplyBusy`).
REPLY_WAIT_SECONDS = 120.0


class ReplyBusy(InfraError):
    """Another worker held the PR's reply for longer than the wait (the delivery is retried later)."""


def _insert(engine: sa.Engine) -> Any:
    return sqlite.insert if engine.dialect.name == "sqlite" else postgresql.insert


@dataclass
class Hold:
    """The reply of one PR/MR while this worker holds it. ``comment_id``: the bot's comment id
    stored so far (None: none yet); set it to the id written, and it is stored on release."""

    forge: str
    repository: str
    number: int
    holder: str
    comment_id: str | None


class Replies:
    """The ``mlgate_replies`` table on the bot's database engine (thread-safe, any replica)."""

    def __init__(self, engine: sa.Engine):
        self.engine = engine
        self._insert = _insert(engine)

    @contextmanager
    def hold(self, forge: str, repository: str, number: int, *, wait: float = REPLY_WAIT_SECONDS,
             ttl: float = REPLY_HOLD_SECONDS, keep: bool = False) -> Iterator[Hold]:
        """Hold the reply of PR/MR ``number`` while the block writes it.

        Args:
            forge: "github" or "gitlab"; repository: ``owner/name`` or the GitLab project path;
            number: the PR/MR number (iid). wait: seconds to wait for a holder to let go.
            ttl: seconds the hold lives (taken over by another worker after that).
            keep: renew the hold every ``ttl``/3 while the block runs (a thread), so ``ttl`` can be
                short: it bounds how long a holder that died blocks the reply.

        Yields:
            :class:`Hold` with the stored comment id; its ``comment_id`` as the block leaves
            it is stored when the block ends without an exception.

        Raises:
            ReplyBusy: the reply stayed held for ``wait`` seconds.
            sqlalchemy.exc.SQLAlchemyError: the database failed.
        """
        holder = f"{os.getpid()}:{threading.get_ident()}:{uuid.uuid4().hex[:8]}"
        deadline = time.monotonic() + wait
        pause = 0.02
        while (got := self._acquire(forge, repository, number, holder, ttl)) is None:
            if time.monotonic() > deadline:
                raise ReplyBusy(f"the reply on {forge} {repository}#{number} stayed busy for {wait:.0f} s")
            time.sleep(pause * (0.5 + random.random()))
            pause = min(pause * 1.5, 0.25)
        h = Hold(forge, repository, number, holder, got[0])
        stop = threading.Event()
        if keep:
            threading.Thread(target=self._renew, args=(h, ttl, stop), name="mlgate-reply-renewal", daemon=True).start()
        ok = False
        try:
            yield h
            ok = True
        finally:
            stop.set()
            self._release(h, ok)

    def _renew(self, h: Hold, ttl: float, stop: threading.Event) -> None:
        """Extend ``h`` every ``ttl``/3 until ``stop`` is set or the hold is found taken over."""
        while not stop.wait(max(0.05, ttl / 3)):
            try:
                with self.engine.begin() as conn:
                    res = conn.execute(replies.update()
                                       .where(*self._key(h.forge, h.repository, h.number), replies.c.holder == h.holder)
                                       .values(held_until=time.time() + ttl))
                if res.rowcount != 1:
                    return  # taken over (this holder stalled past its hold): nothing to renew
            except sa.exc.SQLAlchemyError:
                continue  # the database failed for a moment: the next period tries again

    def comment_id(self, forge: str, repository: str, number: int) -> str | None:
        """The stored id of the bot's comment on PR/MR ``number``, or None."""
        with self.engine.connect() as conn:
            return conn.execute(sa.select(replies.c.comment_id).where(*self._key(forge, repository, number))).scalar()

    @staticmethod
    def _key(forge: str, repository: str, number: int) -> tuple[Any, ...]:
        return replies.c.forge == forge, replies.c.repository == repository, replies.c.number == number

    def _acquire(self, forge: str, repository: str, number: int, holder: str, ttl: float) -> tuple[str | None] | None:
        """(stored comment id,) when ``holder`` now holds the row; None when another worker does."""
        t = time.time()
        with self.engine.begin() as conn:  # the write comes first: SQLite takes its write lock at once
            res = conn.execute(
                self._insert(replies)
                .values(forge=forge, repository=repository, number=number, comment_id=None, holder=holder,
                        held_until=t + ttl, updated_at=t)
                .on_conflict_do_nothing(index_elements=["forge", "repository", "number"])
                .returning(replies.c.forge)  # an INSERT's rowcount is not reported on every driver (psycopg: -1)
            )
            if res.first() is None:
                res = conn.execute(
                    replies.update()
                    .where(*self._key(forge, repository, number),
                           sa.or_(replies.c.holder.is_(None), replies.c.held_until <= t))
                    .values(holder=holder, held_until=t + ttl, updated_at=t)
                )
                if res.rowcount != 1:
                    return None
            cid = conn.execute(sa.select(replies.c.comment_id).where(*self._key(forge, repository, number))).scalar()
        return (cid,)

    def _release(self, h: Hold, store: bool) -> None:
        values: dict[str, Any] = {"holder": None, "held_until": None, "updated_at": time.time()}
        if store:
            values["comment_id"] = h.comment_id
        with self.engine.begin() as conn:
            conn.execute(replies.update().where(*self._key(h.forge, h.repository, h.number),
                                                replies.c.holder == h.holder).values(**values))


@dataclass(frozen=True)
class Opening:
    """What :meth:`PromotionOpenings.begin` found. ``retry``: an earlier attempt of this delivery
    began writing this branch's promotion (it may have sent the create-PR request).
    ``opener``/``number``: the delivery recorded as having opened PR/MR ``number`` (None: none)."""

    forge: str
    repository: str
    branch: str
    delivery: str
    retry: bool
    opener: str | None
    number: int | None


class PromotionOpenings:
    """The ``mlgate_promotion_openings`` table: who opened the promotion PR/MR of a branch."""

    def __init__(self, engine: sa.Engine):
        self.engine = engine
        self._insert = _insert(engine)

    @staticmethod
    def _key(forge: str, repository: str, branch: str) -> tuple[Any, ...]:
        t = promotion_openings.c
        return t.forge == forge, t.repository == repository, t.branch == branch

    def begin(self, forge: str, repository: str, branch: str, delivery: str) -> Opening:
        """Record that ``delivery`` is about to write the promotion of ``branch`` (before any
        forge call), and return what was recorded before.

        Args:
            forge: "github" or "gitlab"; repository: the GitOps repository (``owner/name`` or
            project path); branch: the promotion branch; delivery: the delivery id.

        Raises:
            sqlalchemy.exc.SQLAlchemyError: the database failed.
        """
        t = time.time()
        with self.engine.begin() as conn:  # the write comes first: SQLite takes its write lock at once
            res = conn.execute(
                self._insert(promotion_openings)
                .values(forge=forge, repository=repository, branch=branch, writing=delivery, updated_at=t)
                .on_conflict_do_nothing(index_elements=["forge", "repository", "branch"])
                .returning(promotion_openings.c.forge)
            )
            if res.first() is not None:
                return Opening(forge, repository, branch, delivery, False, None, None)
            row = conn.execute(sa.select(promotion_openings).where(*self._key(forge, repository, branch))).one()
            conn.execute(promotion_openings.update().where(*self._key(forge, repository, branch))
                         .values(writing=delivery, updated_at=t))
        return Opening(forge, repository, branch, delivery, row.writing == delivery, row.opener, row.number)

    def finish(self, opening: Opening, number: int | None, created: bool) -> bool:
        """Whether ``opening.delivery`` opened PR/MR ``number``; recorded when it did.

        True when the forge says this write created it (``created``), when the bot recorded this
        delivery as its opener, or, for a PR/MR nobody is recorded as having opened, when an
        earlier attempt of this delivery began writing (its create-PR request went through, its
        answer did not). False when another delivery is recorded as the opener of ``number``,
        or for a first attempt that found the PR/MR open.

        Raises:
            sqlalchemy.exc.SQLAlchemyError: the database failed.
        """
        if created:
            opened = True
        elif number is not None and opening.number == number and opening.opener is not None:
            opened = opening.opener == opening.delivery
        else:
            opened = opening.retry and number is not None
        values: dict[str, Any] = {"writing": None, "updated_at": time.time()}
        if opened:
            values.update(opener=opening.delivery, number=number)
        with self.engine.begin() as conn:
            conn.execute(promotion_openings.update()
                         .where(*self._key(opening.forge, opening.repository, opening.branch))
                         .values(**values))
        return opened
