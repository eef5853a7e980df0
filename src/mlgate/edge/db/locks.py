"""Named locks with an owner and an expiry (taken over once expired)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from mlgate.edge.db.deliveries import _ts
from mlgate.edge.db.tables import locks


class Locks:
    """The locks part of :class:`mlgate.edge.db.store.Store`."""

    engine: sa.Engine
    _insert: Any  # the dialect's ``insert`` (it has ``on_conflict_do_nothing``)

    def acquire_lock(self, name: str, owner: str, ttl_seconds: float, now: datetime) -> bool:
        """Take (or renew, or take over an expired) lock ``name`` for ``ttl_seconds``.

        Returns True when ``owner`` holds the lock afterwards.
        """
        t = _ts(now)
        with self.engine.begin() as conn:
            res = conn.execute(
                self._insert(locks)
                .values(name=name, owner=owner, expires_at=t + ttl_seconds)
                .on_conflict_do_nothing(index_elements=["name"])
            )
            if res.rowcount == 1:
                return True
            res = conn.execute(
                locks.update()
                .where(locks.c.name == name, sa.or_(locks.c.expires_at <= t, locks.c.owner == owner))
                .values(owner=owner, expires_at=t + ttl_seconds)
            )
            return res.rowcount == 1

    def release_lock(self, name: str, owner: str) -> None:
        """Release ``name`` if ``owner`` holds it (no-op otherwise)."""
        with self.engine.begin() as conn:
            conn.execute(locks.delete().where(locks.c.name == name, locks.c.owner == owner))
