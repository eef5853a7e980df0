"""Audit records: append-only (triggers refuse updates and deletes, see :data:`tables.APPEND_ONLY`)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import sqlalchemy as sa

from mlgate.edge.db.deliveries import _dt
from mlgate.edge.db.fencing import guard_writes
from mlgate.core.redact import SHAPES_ONLY, Redactor
from mlgate.edge.db.tables import audit_table


class AuditLog:
    """The audit part of :class:`mlgate.edge.db.store.Store`."""

    engine: sa.Engine
    #: masks secrets in every record before it is written (a record can never be changed later)
    redactor: Redactor = SHAPES_ONLY

    def audit(self, record: dict) -> None:
        """Append one audit record (a JSON-serialisable dict). Records cannot be changed or deleted.

        Raises:
            LeaseLost: the attempt or lock this thread holds (:func:`mlgate.edge.db.fencing.fenced`)
                was taken over; nothing was appended (its new holder records what happens).
        """
        now = datetime.now(UTC).timestamp()
        with self.engine.begin() as conn:
            guard_writes(conn)
            conn.execute(
                audit_table.insert().values(recorded_at=now, record=json.dumps(self.redactor.value(record), sort_keys=True, default=str))
            )

    def audit_records(self, after: int = 0, newest: int | None = None) -> list[dict]:
        """Every audit record, oldest first, each with ``id`` and ``recorded_at`` (ISO 8601) added.

        Args:
            after: only records whose id is greater (records are append-only, so a reader that
                keeps what it read asks for the new ones only; the dashboard does).
            newest: at most this many, the newest of them (still oldest first).
        """
        query = sa.select(audit_table).where(audit_table.c.id > after)
        with self.engine.connect() as conn:
            if newest is None:
                rows = conn.execute(query.order_by(audit_table.c.id)).all()
            else:
                rows = conn.execute(query.order_by(audit_table.c.id.desc()).limit(newest)).all()[::-1]
        out = []
        for r in rows:
            rec = json.loads(r.record)
            rec.setdefault("id", r.id)
            rec.setdefault("recorded_at", _dt(r.recorded_at).isoformat())  # type: ignore[union-attr]
            out.append(rec)
        return out
