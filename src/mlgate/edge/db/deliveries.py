"""The deliveries queue: a delivery moves ``queued`` → ``running`` (a worker holds a lease until
``lease_expires_at``) → ``done`` | ``queued`` again (retry at ``next_attempt_at``) | ``failed``.
A lease that expires (the process died) makes the delivery claimable again, so accepted work is
never lost. Times are stored as UNIX seconds (float, UTC).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import sqlalchemy as sa

from mlgate.core import intake
from mlgate.core.redact import SHAPES_ONLY, Redactor
from mlgate.edge.db.tables import deliveries

STATUSES = ("queued", "running", "done", "failed")


@dataclass(frozen=True)
class Delivery:
    """One stored webhook delivery, as a worker receives it.

    ``payload`` is the decoded JSON object; ``headers`` the kept request headers (lower-case
    names; never a token or signature); ``attempts`` counts this one (1 on the first run);
    ``token`` is this claim's fencing token (one more at every claim of the delivery, never reset:
    see :mod:`mlgate.edge.db.fencing`; 0 for a delivery loaded without claiming it).
    """

    id: str
    forge: Literal["github", "gitlab"]
    event: str
    payload: dict
    headers: dict[str, str]
    received_at: datetime
    attempts: int
    token: int = 0


@dataclass(frozen=True)
class DeliveryInfo:
    """A delivery's state for listings (``mlgate bot deliveries``); times are UTC datetimes."""

    id: str
    forge: str
    event: str
    status: str
    attempts: int
    received_at: datetime
    next_attempt_at: datetime | None
    finished_at: datetime | None
    outcome: str | None
    error: str | None

    def as_json(self) -> dict[str, Any]:
        """JSON-ready dict (times as ISO 8601 strings)."""
        out: dict[str, Any] = {}
        for k, v in self.__dict__.items():
            out[k] = v.isoformat() if isinstance(v, datetime) else v
        return out


def _ts(dt: datetime) -> float:
    """UNIX seconds of a datetime; a naive datetime is taken as UTC."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def _held(delivery_id: str, worker_id: str | None, token: int | None) -> list[Any]:
    """WHERE conditions of a write by the attempt that holds the delivery: its lease owner and
    (when given) the current fencing token."""
    d = deliveries.c
    cond = [d.id == delivery_id]
    if worker_id is not None:
        cond.append(d.lease_owner == worker_id)
    if token is not None:
        cond.append(d.fence == token)
    return cond


def _dt(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC)


def _payload(body: bytes, headers: dict[str, str]) -> dict:
    """The JSON object of a stored body. The app stores JSON (a form body's ``payload`` field is
    stored as its JSON); a form body stored raw by an older version is decoded as a form.
    Never raises: an unreadable body (it was parsed at intake) gives {} and the handler ignores it."""
    try:
        obj = json.loads(body)
    except (ValueError, RecursionError):
        obj = intake.parse_payload(headers, body) if intake.is_form(headers) else None
    return obj if isinstance(obj, dict) else {}


def stored_text(redactor: Redactor, text: str) -> str:
    """``text`` as an outcome/error column holds it: every secret masked (``redactor``), and NUL
    characters, which PostgreSQL text refuses ("invalid byte sequence"/DataError), as U+FFFD."""
    return redactor.text(text).replace("\x00", "\ufffd")


def _delivery(row: Any) -> Delivery:
    headers = json.loads(row.headers)
    return Delivery(
        id=row.id,
        forge=row.forge,
        event=row.event,
        payload=_payload(bytes(row.body), headers),
        headers=headers,
        received_at=_dt(row.received_at),  # type: ignore[arg-type]
        attempts=row.attempts,
        token=getattr(row, "fence", 0) or 0,
    )


class DeliveryQueue:
    """The queue part of :class:`mlgate.edge.db.store.Store`: claim, lease, finish, retry, list."""

    engine: sa.Engine
    #: masks secrets in outcome and error text (and audit records); the bot sets its own
    #: (:meth:`mlgate.bot.settings.BotSettings.redactor`), the default knows token shapes only
    redactor: Redactor = SHAPES_ONLY


    def _due(self, now: float) -> Any:
        d = deliveries.c
        return sa.or_(
            sa.and_(d.status == "queued", d.next_attempt_at <= now),
            sa.and_(d.status == "running", d.lease_expires_at <= now),
        )

    def claim_next(self, worker_id: str, now: datetime, lease_seconds: float = 60.0) -> Delivery | None:
        """Lease the oldest due delivery to ``worker_id`` for ``lease_seconds``.

        Due: ``queued`` with ``next_attempt_at <= now``, or ``running`` with an expired lease
        (its worker died, or stalled past its lease). The claim increments ``attempts`` and the
        fencing token ``fence``: a previous holder's writes and calls fail from now on.

        Returns:
            The delivery (its ``token`` is the claim's fencing token), or None when nothing is due.
        """
        t = _ts(now)
        d = deliveries.c
        for _ in range(5):  # lost races against other workers: look again
            with self.engine.connect() as conn:
                cand = conn.execute(
                    sa.select(d.id).where(self._due(t)).order_by(d.next_attempt_at, d.received_at).limit(1)
                ).scalar()
            if cand is None:
                return None
            with self.engine.begin() as conn:
                res = conn.execute(
                    deliveries.update()
                    .where(d.id == cand, self._due(t))
                    .values(
                        status="running",
                        lease_owner=worker_id,
                        lease_expires_at=t + lease_seconds,
                        attempts=d.attempts + 1,
                        fence=d.fence + 1,
                    )
                )
                if res.rowcount != 1:
                    continue
                row = conn.execute(
                    sa.select(d.id, d.forge, d.event, d.headers, d.body, d.received_at, d.attempts, d.fence)
                    .where(d.id == cand)
                ).one()
            return _delivery(row)
        return None

    def renew_lease(self, delivery_id: str, worker_id: str, now: datetime, lease_seconds: float,
                    token: int | None = None) -> bool:
        """Extend a lease the worker still holds to ``now`` + ``lease_seconds`` (seconds).

        Held: ``running``, leased to ``worker_id`` and, when ``token`` is given, still at that
        fencing token (a lease that lapsed but nobody claimed yet is renewed). False when it was lost.
        """
        d = deliveries.c
        cond = [d.id == delivery_id, d.status == "running", d.lease_owner == worker_id]
        if token is not None:
            cond.append(d.fence == token)
        with self.engine.begin() as conn:
            res = conn.execute(deliveries.update().where(*cond).values(lease_expires_at=_ts(now) + lease_seconds))
            return res.rowcount == 1

    def finish(self, delivery_id: str, outcome: str, *, worker_id: str | None = None, now: datetime | None = None,
               token: int | None = None) -> bool:
        """Mark a delivery ``done`` with its outcome text.

        Only while ``worker_id`` holds it and (when given) the fencing ``token`` is current;
        returns False when it was not written (the attempt lost the delivery).
        """
        cond = _held(delivery_id, worker_id, token)
        with self.engine.begin() as conn:
            res = conn.execute(
                deliveries.update()
                .where(*cond)
                .values(
                    status="done",
                    outcome=stored_text(self.redactor, outcome),
                    error=None,
                    lease_owner=None,
                    lease_expires_at=None,
                    finished_at=_ts(now) if now else datetime.now(UTC).timestamp(),
                )
            )
            return res.rowcount == 1

    def fail(
        self,
        delivery_id: str,
        error: str,
        retry_at: datetime | None,
        *,
        worker_id: str | None = None,
        now: datetime | None = None,
        token: int | None = None,
    ) -> bool:
        """Record a failed attempt: queue it again at ``retry_at``, or (None) mark it ``failed``.

        Only while ``worker_id`` holds it and (when given) the fencing ``token`` is current;
        returns False when it was not written.
        """
        cond = _held(delivery_id, worker_id, token)
        values: dict[str, Any] = {"error": stored_text(self.redactor, error)[:4000], "lease_owner": None, "lease_expires_at": None}
        if retry_at is None:
            values.update(status="failed", finished_at=_ts(now) if now else datetime.now(UTC).timestamp())
        else:
            values.update(status="queued", next_attempt_at=_ts(retry_at))
        with self.engine.begin() as conn:
            return conn.execute(deliveries.update().where(*cond).values(**values)).rowcount == 1

    def retry(self, delivery_id: str, now: datetime) -> bool:
        """Queue a ``failed`` delivery again with a fresh attempt count; False when there is none."""
        d = deliveries.c
        with self.engine.begin() as conn:
            res = conn.execute(
                deliveries.update()
                .where(d.id == delivery_id, d.status == "failed")
                .values(status="queued", attempts=0, next_attempt_at=_ts(now), finished_at=None)
            )
            return res.rowcount == 1

    def load(self, delivery_id: str) -> Delivery | None:
        """A stored delivery with its payload (for ``mlgate bot show``), without claiming it."""
        d = deliveries.c
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(d.id, d.forge, d.event, d.headers, d.body, d.received_at, d.attempts).where(d.id == delivery_id)
            ).first()
        return None if row is None else _delivery(row)

    def get(self, delivery_id: str) -> DeliveryInfo | None:
        """One delivery's state, or None."""
        rows = self._infos(deliveries.c.id == delivery_id, 1)
        return rows[0] if rows else None

    def list_deliveries(self, status: str | None = None, limit: int = 100) -> list[DeliveryInfo]:
        """Newest first, optionally only one status (see :data:`STATUSES`)."""
        return self._infos(deliveries.c.status == status if status else None, limit)

    def _infos(self, where: Any, limit: int) -> list[DeliveryInfo]:
        d = deliveries.c
        q = sa.select(
            d.id, d.forge, d.event, d.status, d.attempts, d.received_at, d.next_attempt_at, d.finished_at, d.outcome, d.error
        )
        if where is not None:
            q = q.where(where)
        q = q.order_by(d.received_at.desc()).limit(limit)
        with self.engine.connect() as conn:
            rows = conn.execute(q).all()
        return [
            DeliveryInfo(
                id=r.id,
                forge=r.forge,
                event=r.event,
                status=r.status,
                attempts=r.attempts,
                received_at=_dt(r.received_at),  # type: ignore[arg-type]
                next_attempt_at=_dt(r.next_attempt_at) if r.status == "queued" else None,
                finished_at=_dt(r.finished_at),
                outcome=r.outcome,
                error=r.error,
            )
            for r in rows
        ]

    def queue_depth(self) -> dict[str, int]:
        """Number of deliveries per status (every status present, 0 when none)."""
        d = deliveries.c
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(d.status, sa.func.count()).where(d.status.in_(("queued", "running", "failed"))).group_by(d.status)
            ).all()
        out = {s: 0 for s in ("queued", "running", "failed")}
        out.update({s: n for s, n in rows})
        return out
