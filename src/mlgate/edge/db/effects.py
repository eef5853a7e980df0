"""Once-only side effects: a key (e.g. ``github:comment:123:promote``) claimed by one delivery."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from mlgate.edge.db.fencing import guard_writes
from mlgate.edge.db.tables import effects


class Effects:
    """The once-only effects part of :class:`mlgate.edge.db.store.Store`."""

    engine: sa.Engine
    _insert: Any  # the dialect's ``insert`` (it has ``on_conflict_do_nothing``)

    def claim_effect(self, key: str, delivery_id: str) -> bool:
        """Claim a once-only side effect (e.g. ``github:comment:123:promote``).

        Returns:
            True when the key is new, or was claimed by this same delivery (a retry of an
            attempt that stopped half-way continues its own effect); False when another
            delivery claimed it (the same comment arriving through a second hook).

        Raises:
            LeaseLost: the attempt or lock this thread holds (:func:`mlgate.edge.db.fencing.fenced`)
                was taken over; nothing was claimed.
        """
        with self.engine.begin() as conn:
            guard_writes(conn)
            res = conn.execute(
                self._insert(effects)
                .values(key=key, delivery_id=delivery_id, created_at=datetime.now(UTC).timestamp())
                .on_conflict_do_nothing(index_elements=["key"])
            )
            if res.rowcount == 1:
                return True
            owner = conn.execute(sa.select(effects.c.delivery_id).where(effects.c.key == key)).scalar()
            return owner == delivery_id
