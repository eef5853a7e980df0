"""Fencing: an attempt whose claim (a delivery's lease, or a lock) was taken over does nothing more.

A worker that stalls (GC pause, SIGSTOP, a slow call) past its lease loses the delivery to
another worker or replica. Every claim of a delivery gives it a new token (the ``fence`` column,
one more at each claim); every lock has an owner unique to its holder (``<delivery>#<token>``
for a delivery's attempt, ``tick:<uuid>`` for the periodic tick). A thread announces what it
holds with :func:`fenced`; then

- every write of the store (effects, locks, audit records) runs :meth:`Fence.guard` first, in the
  same transaction: an ``UPDATE ... WHERE fence = :token`` (or ``owner = :owner``) that matches
  no row rolls the write back and raises :class:`LeaseLost` (on PostgreSQL the guard's row lock
  orders it against a concurrent claim; on SQLite writes are serialised);
- before every external call (forge, registry, Argo) the caller runs :func:`check`, which reads
  the claim and raises :class:`LeaseLost` when it was taken over or has lapsed.

:class:`LeaseLost` means "lost: do nothing more": the worker stops the attempt without recording
an outcome or a failure (the new holder records them).
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from mlgate.edge.db.tables import deliveries, locks


class LeaseLost(Exception):
    """This attempt's claim (a delivery's lease or a lock) was taken over, or lapsed: stop now,
    before the next external call or write. Never a failure of the delivery."""


def _now() -> datetime:
    return datetime.now(UTC)


class Fence:
    """What a thread holds (a delivery attempt or a lock), checked before its writes and calls."""

    what: str = ""

    def __init__(self, engine: sa.Engine, clock: Callable[[], datetime] = _now):
        self.engine = engine
        self.clock = clock
        #: set by a heartbeat that found the claim gone: :meth:`check` raises without asking the database
        self.lost = False

    def _held(self, t: float) -> Any:  # the WHERE clause "this holder still holds it at time t"
        raise NotImplementedError

    def _table(self) -> sa.Table:
        raise NotImplementedError

    def guard(self, conn: sa.Connection) -> None:
        """Inside a write's transaction: lock the claim's row if it is still held, else raise :class:`LeaseLost`."""
        table = self._table()
        where = self._held(self.clock().timestamp())
        first = next(iter(table.primary_key.columns))
        res = conn.execute(table.update().where(where).values({first.name: first}))
        if self.lost or res.rowcount != 1:
            self.lost = True
            raise LeaseLost(f"{self.what} was taken over or lapsed; this attempt stops")

    def check(self) -> None:
        """Before an external call: raise :class:`LeaseLost` when the claim is no longer held."""
        if not self.lost:
            table = self._table()
            with self.engine.connect() as conn:
                held = conn.execute(sa.select(sa.func.count()).select_from(table)
                                    .where(self._held(self.clock().timestamp()))).scalar()
            self.lost = held != 1
        if self.lost:
            raise LeaseLost(f"{self.what} was taken over or lapsed; this attempt stops before its next call")


class AttemptFence(Fence):
    """One attempt at a delivery: ``token`` is what :meth:`DeliveryQueue.claim_next` returned.

    Held while the delivery is ``running`` with this token and an unexpired lease.
    """

    def __init__(self, engine: sa.Engine, delivery_id: str, token: int, clock: Callable[[], datetime] = _now):
        super().__init__(engine, clock)
        self.delivery_id, self.token = delivery_id, token
        self.what = f"delivery {delivery_id} (attempt token {token})"

    def _table(self) -> sa.Table:
        return deliveries

    def _held(self, t: float) -> Any:
        d = deliveries.c
        return sa.and_(d.id == self.delivery_id, d.fence == self.token, d.status == "running", d.lease_expires_at > t)


class LockFence(Fence):
    """A lock held by ``owner`` (see :meth:`mlgate.edge.db.locks.Locks.acquire_lock`): held while
    the lock names this owner and has not expired."""

    def __init__(self, engine: sa.Engine, name: str, owner: str, clock: Callable[[], datetime] = _now):
        super().__init__(engine, clock)
        self.name, self.owner = name, owner
        self.what = f"lock {name} (owner {owner})"

    def _table(self) -> sa.Table:
        return locks

    def _held(self, t: float) -> Any:
        c = locks.c
        return sa.and_(c.name == self.name, c.owner == self.owner, c.expires_at > t)


_ACTIVE: contextvars.ContextVar[tuple[Fence, ...]] = contextvars.ContextVar("mlgate_fences", default=())


@contextmanager
def fenced(fence: Fence) -> Iterator[Fence]:
    """Hold ``fence`` in this thread (context) for the block: the store's writes guard on it and
    :func:`check` checks it. Fences nest (an attempt holding a lock holds both)."""
    token = _ACTIVE.set((*_ACTIVE.get(), fence))
    try:
        yield fence
    finally:
        _ACTIVE.reset(token)


def active() -> tuple[Fence, ...]:
    """The fences this thread holds now (innermost last)."""
    return _ACTIVE.get()


def guard_writes(conn: sa.Connection) -> None:
    """Run every active fence's :meth:`Fence.guard` in ``conn``'s transaction (raises :class:`LeaseLost`)."""
    for f in _ACTIVE.get():
        f.guard(conn)


def check() -> None:
    """Before an external call: raise :class:`LeaseLost` if any claim this thread holds was lost."""
    for f in _ACTIVE.get():
        f.check()
