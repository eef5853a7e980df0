"""Small pieces of state by key (e.g. the id of the bot's comment on a PR)."""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa

from mlgate.edge.db.tables import kv


class KeyValues:
    """The key-value part of :class:`mlgate.edge.db.store.Store`."""

    engine: sa.Engine
    _insert: Any  # the dialect's ``insert`` (it has ``on_conflict_do_update``)

    def kv_get(self, key: str) -> str | None:
        """A small piece of state (e.g. the id of the bot's comment on a PR), or None."""
        with self.engine.connect() as conn:
            return conn.execute(sa.select(kv.c.value).where(kv.c.key == key)).scalar()

    def kv_set(self, key: str, value: str) -> None:
        """Set (insert or replace) a small piece of state; ``updated_at`` (UNIX seconds) is when,
        for :mod:`mlgate.edge.db.retention`."""
        stmt = self._insert(kv).values(key=key, value=value, updated_at=time.time())
        stmt = stmt.on_conflict_do_update(index_elements=["key"],
                                          set_={"value": stmt.excluded.value, "updated_at": stmt.excluded.updated_at})
        with self.engine.begin() as conn:
            conn.execute(stmt)
