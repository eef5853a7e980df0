"""Named locks: leases with an owner and an expiry, renewed while their holder works.

A lock is a lease like a delivery's: short (the bot's ``lease_seconds``), renewed by a keeper
thread every third of its length while its holder works (``keep=True``), and taken over by
anyone as soon as it lapses, so a process that died (SIGKILL) holds nothing for long. The owner
string is unique to the holder (a delivery's attempt ``<delivery>#<token>``, ``tick:<uuid>``),
so it is the lock's fencing token: see :class:`mlgate.edge.db.fencing.LockFence`.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
import structlog

from mlgate.edge.db.deliveries import _ts
from mlgate.edge.db.fencing import guard_writes
from mlgate.edge.db.tables import locks

log = structlog.get_logger("mlgate.bot.locks")


class _Keeper:
    """One daemon thread per store renewing the locks acquired with ``keep=True`` every third of their ttl."""

    def __init__(self, store: Locks):
        self.store = store
        self.kept: dict[tuple[str, str], float] = {}  # (name, owner) -> ttl seconds
        self.guard = threading.Lock()
        self.wake = threading.Event()
        self.thread: threading.Thread | None = None

    def add(self, name: str, owner: str, ttl: float) -> None:
        with self.guard:
            self.kept[name, owner] = ttl
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._run, name="mlgate-lock-renewal", daemon=True)
                self.thread.start()
        self.wake.set()

    def remove(self, name: str, owner: str) -> None:
        with self.guard:
            self.kept.pop((name, owner), None)

    def _run(self) -> None:
        while True:
            with self.guard:
                kept = dict(self.kept)
            period = min(kept.values(), default=3.0) / 3
            self.wake.wait(max(0.05, period))
            self.wake.clear()
            for (name, owner), ttl in kept.items():
                with self.guard:
                    if (name, owner) not in self.kept:
                        continue  # released meanwhile
                try:
                    if not self.store.renew_lock(name, owner, ttl, datetime.now(UTC)):
                        log.warning("lock lost while held", lock=name, owner=owner)
                        self.remove(name, owner)
                except Exception as e:  # database trouble: the next pass tries again
                    log.error("cannot renew lock", lock=name, error=f"{type(e).__name__}: {str(e)[:200]}")


class Locks:
    """The locks part of :class:`mlgate.edge.db.store.Store`."""

    engine: sa.Engine
    _insert: Any  # the dialect's ``insert`` (it has ``on_conflict_do_nothing``)

    def _keeper(self) -> _Keeper:
        keeper = self.__dict__.get("_lock_keeper")
        if keeper is None:
            keeper = self.__dict__.setdefault("_lock_keeper", _Keeper(self))
        return keeper

    def acquire_lock(self, name: str, owner: str, ttl_seconds: float, now: datetime, *, keep: bool = False,
                     supersedes: str | None = None) -> bool:
        """Take (or renew, or take over a lapsed) lock ``name`` for ``ttl_seconds`` seconds from ``now``.

        Args:
            name: the lock (``promote:<model>:<env>``, ``canary:<model>:<env>``, ``periodic:<task>``).
            owner: who holds it; unique to the holder (it fences the holder's writes).
            keep: renew it every ``ttl_seconds``/3 from a keeper thread until :meth:`release_lock`
                (or until it is found taken over); so a short ttl bounds how long a dead holder blocks.
            supersedes: an owner prefix (``<delivery>#``) whose holders are superseded by ``owner``:
                a lock still held by an earlier attempt of the same delivery is taken over at once.

        Returns:
            True when ``owner`` holds the lock afterwards.

        Raises:
            LeaseLost: the attempt or lock this thread already holds was taken over (nothing taken).
        """
        t = _ts(now)
        c = locks.c
        with self.engine.begin() as conn:
            guard_writes(conn)
            res = conn.execute(
                self._insert(locks)
                .values(name=name, owner=owner, expires_at=t + ttl_seconds)
                .on_conflict_do_nothing(index_elements=["name"])
            )
            held = res.rowcount == 1
            if not held:
                free = [c.expires_at <= t, c.owner == owner]
                if supersedes:
                    free.append(sa.func.substr(c.owner, 1, len(supersedes)) == supersedes)
                res = conn.execute(
                    locks.update().where(c.name == name, sa.or_(*free)).values(owner=owner, expires_at=t + ttl_seconds)
                )
                held = res.rowcount == 1
        if held and keep:
            self._keeper().add(name, owner, ttl_seconds)
        return held

    def renew_lock(self, name: str, owner: str, ttl_seconds: float, now: datetime) -> bool:
        """Extend lock ``name`` to ``now`` + ``ttl_seconds`` if ``owner`` still holds it (a lapsed
        lock nobody took yet is renewed too); False when another owner has it, or nobody."""
        c = locks.c
        with self.engine.begin() as conn:
            res = conn.execute(locks.update().where(c.name == name, c.owner == owner)
                               .values(expires_at=_ts(now) + ttl_seconds))
            return res.rowcount == 1

    def release_lock(self, name: str, owner: str) -> None:
        """Release ``name`` if ``owner`` holds it (no-op otherwise) and stop renewing it."""
        keeper = self.__dict__.get("_lock_keeper")
        if keeper is not None:
            keeper.remove(name, owner)
        with self.engine.begin() as conn:
            conn.execute(locks.delete().where(locks.c.name == name, locks.c.owner == owner))

    def lock_owner(self, name: str) -> tuple[str, float] | None:
        """(owner, expiry in UNIX seconds) of lock ``name``, or None when nobody holds it."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(locks.c.owner, locks.c.expires_at).where(locks.c.name == name)).first()
        return None if row is None else (row.owner, row.expires_at)
