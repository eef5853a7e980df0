"""Retrain records: one row per retrain an alert started (SQLAlchemy 2 Core, the bot's database).

``mlgate_retrains`` lives beside the bot's own tables and is created when missing. Times are
UNIX seconds (float, UTC).

- The id is derived from the alert's firing (``fingerprint@startsAt``), the model and the
  environment (:func:`retrain_id`): a notification delivered twice, or through two groups, finds
  the same row, so inserting is idempotent.
- A partial unique index allows one *active* retrain per model: two workers deciding at once
  cannot both start one (the loser gets :class:`InFlight`).
- Every write runs the thread's fences first (:func:`mlgate.edge.db.fencing.guard_writes`): a
  stalled attempt whose delivery or lock was taken over writes nothing.

States (``status``): ``submitting`` (recorded, the backend not called yet) → ``submitted`` (the
backend took it) → ``registered`` (its model version is known) → ``promoted`` (gates passed, a
promotion PR opened, or merged with ``auto_merge``) | ``gates_failed`` | ``failed`` (the run
failed, or registered nothing before ``timeout_hours``). The last three end it (``active`` false).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from mlgate.core.alerts import PastRetrain
from mlgate.core.errors import MlgateError
from mlgate.core.redact import SHAPES_ONLY, Redactor
from mlgate.edge.db.fencing import guard_writes

metadata = sa.MetaData()

retrains = sa.Table(
    "mlgate_retrains",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("model", sa.String(128), nullable=False),
    sa.Column("environment", sa.String(128), nullable=False),
    sa.Column("forge", sa.String(16), nullable=False),
    sa.Column("repository", sa.String(255), nullable=False),
    sa.Column("backend", sa.String(16), nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("alert_key", sa.String(128), nullable=False),
    sa.Column("alert", sa.Text, nullable=False),
    sa.Column("alert_resolved_at", sa.String(64)),
    sa.Column("delivery_id", sa.String(128), nullable=False),
    sa.Column("run", sa.Text),
    sa.Column("version", sa.String(32)),
    sa.Column("promotion_pr", sa.Text),
    sa.Column("outcome", sa.Text),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("finished_at", sa.Float),
    sa.Index("ix_mlgate_retrains_model", "model", "created_at"),
    sa.Index("ix_mlgate_retrains_alert", "alert_key"),
    sa.Index("ux_mlgate_retrains_one_active", "model", unique=True,
             sqlite_where=sa.text("active = 1"), postgresql_where=sa.text("active")),
)

FINAL = ("promoted", "gates_failed", "failed")


class InFlight(MlgateError):
    """Another retrain of the model is active (the unique index refused a second one)."""


def retrain_id(alert_key: str, model: str, environment: str) -> str:
    """``rt-<16 hex>``: the same firing of the same alert for the same target gives the same id."""
    return "rt-" + hashlib.sha256(f"{alert_key}\0{model}\0{environment}".encode()).hexdigest()[:16]


@dataclass(frozen=True)
class RetrainRecord:
    """One retrain as stored (``alert`` and ``run`` decoded from JSON; times as UNIX seconds)."""

    id: str
    model: str
    environment: str
    forge: str
    repository: str
    backend: str
    status: str
    active: bool
    alert_key: str
    alert: dict[str, Any]
    alert_resolved_at: str | None
    delivery_id: str
    run: dict[str, Any]
    version: str | None
    promotion_pr: str | None
    outcome: str | None
    created_at: float
    updated_at: float
    finished_at: float | None

    def as_json(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        for k in ("created_at", "updated_at", "finished_at"):
            if out[k] is not None:
                out[k] = datetime.fromtimestamp(out[k], UTC).isoformat()
        return out

    def past(self) -> PastRetrain:
        return PastRetrain(self.id, datetime.fromtimestamp(self.created_at, UTC), self.active, self.environment)


def _record(row: Any) -> RetrainRecord:
    d = dict(row._mapping)
    d["alert"] = json.loads(d["alert"] or "{}")
    d["run"] = json.loads(d["run"] or "{}")
    d["active"] = bool(d["active"])
    return RetrainRecord(**d)


class RetrainStore:
    """Retrain records on the bot's database engine (tables created when missing)."""

    def __init__(self, engine: sa.Engine, redactor: Redactor = SHAPES_ONLY):
        self.engine = engine
        self.redactor = redactor
        metadata.create_all(engine)

    def start(self, *, id: str, model: str, environment: str, forge: str, repository: str, backend: str,
              alert_key: str, alert: dict[str, Any], delivery_id: str, now: float | None = None) -> tuple[RetrainRecord, bool]:
        """Record a new retrain as ``submitting`` (active), or return the one with this id.

        Returns:
            (record, created): created is False when the id existed (a redelivery or a repeat).

        Raises:
            InFlight: another retrain of ``model`` is active. LeaseLost: this attempt was taken over.
        """
        at = time.time() if now is None else now
        existing = self.get(id)
        if existing is not None:
            return existing, False
        try:
            with self.engine.begin() as conn:
                guard_writes(conn)
                conn.execute(retrains.insert().values(
                    id=id, model=model, environment=environment, forge=forge, repository=repository, backend=backend,
                    status="submitting", active=True, alert_key=alert_key, alert=json.dumps(alert, sort_keys=True),
                    delivery_id=delivery_id, run="{}", created_at=at, updated_at=at))
        except sa.exc.IntegrityError:
            again = self.get(id)
            if again is not None:
                return again, False
            raise InFlight(f"another retrain of {model} is in flight") from None
        return self.get(id), True  # type: ignore[return-value]

    def update(self, id: str, *, now: float | None = None, **fields: Any) -> RetrainRecord:
        """Change some fields (``run`` as a dict); a final ``status`` (:data:`FINAL`) ends the retrain.

        Raises:
            LeaseLost: this attempt or lock was taken over; nothing was written.
            KeyError: no such retrain.
        """
        at = time.time() if now is None else now
        values = dict(fields)
        if "run" in values:
            values["run"] = json.dumps(values["run"], sort_keys=True)
        if values.get("status") in FINAL:
            values.update(active=False, finished_at=at)
        values["updated_at"] = at
        with self.engine.begin() as conn:
            guard_writes(conn)
            n = conn.execute(retrains.update().where(retrains.c.id == id).values(**values)).rowcount
        if n == 0:
            raise KeyError(id)
        return self.get(id)  # type: ignore[return-value]

    def note_resolved(self, alert_key: str, at: str) -> list[str]:
        """The alert of ``alert_key`` resolved at ``at``: mark its active retrains; returns their ids."""
        c = retrains.c
        with self.engine.begin() as conn:
            guard_writes(conn)
            ids = [r[0] for r in conn.execute(sa.select(c.id).where(c.alert_key == alert_key, c.active.is_(True),
                                                                     c.alert_resolved_at.is_(None))).all()]
            if ids:
                conn.execute(retrains.update().where(c.id.in_(ids)).values(alert_resolved_at=at, updated_at=time.time()))
        return ids

    def note_delivery(self, delivery_id: str, text: str) -> None:
        """Append ``; text`` to the outcome of the alert's delivery, so ``mlgate bot deliveries``
        shows where the retrain it started ended (a failed run, failed gates, the promotion PR)."""
        from mlgate.edge.db.deliveries import stored_text
        from mlgate.edge.db.tables import deliveries

        d = deliveries.c
        with self.engine.begin() as conn:
            guard_writes(conn)
            row = conn.execute(sa.select(d.outcome).where(d.id == delivery_id)).first()
            if row is None:
                return
            new = f"{row.outcome}; {text}" if row.outcome else text
            conn.execute(deliveries.update().where(d.id == delivery_id).values(outcome=stored_text(self.redactor, new)))

    def get(self, id: str) -> RetrainRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(retrains).where(retrains.c.id == id)).first()
        return _record(row) if row is not None else None

    def of_model(self, model: str, limit: int = 50) -> list[RetrainRecord]:
        """The model's retrains, newest first."""
        c = retrains.c
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(retrains).where(c.model == model).order_by(c.created_at.desc()).limit(limit)).all()
        return [_record(r) for r in rows]

    def active(self) -> list[RetrainRecord]:
        """Every retrain still in flight, oldest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(retrains).where(retrains.c.active.is_(True)).order_by(retrains.c.created_at)).all()
        return [_record(r) for r in rows]

    def all(self, limit: int = 200) -> list[RetrainRecord]:
        """The newest retrains, newest first (``mlgate bot retrains``)."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(retrains).order_by(retrains.c.created_at.desc()).limit(limit)).all()
        return [_record(r) for r in rows]
