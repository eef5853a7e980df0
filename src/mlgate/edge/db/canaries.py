"""Canary storage: running and finished canaries and their audited transitions (SQLAlchemy 2 Core).

The tables live in the bot's database (``MLGATE_DATABASE_URL``, default
``sqlite:///.mlgate/bot.db``; PostgreSQL through ``postgresql+psycopg://``) beside the bot's
own tables, and are created when missing. Times are UNIX seconds (float, UTC).

* ``mlgate_canaries``: one row per canary; searchable columns plus the whole
  :class:`~mlgate.core.canary.CanaryRecord` as JSON. ``revision`` implements optimistic concurrency:
  :meth:`CanaryStore.save` updates only when the row still has the revision the caller read,
  so two workers (or a worker and a restarted one) can never both carry out the same decision;
  the loser gets :class:`Conflict` and rereads. A partial unique index allows one *active*
  canary per (model, environment).
* ``mlgate_canary_transitions``: append-only, one row per change (status, step, measurement,
  write), written in the same transaction as the change it records.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import sqlalchemy as sa

from mlgate.core.canary import ACTIVE, CanaryRecord, Transition, record_from_json, record_to_json
from mlgate.core.errors import InfraError, MlgateError, Refused
from mlgate.edge.db.engine import make_engine, schema_error
from mlgate.edge.db.engine import short_error as _short

#: How the user names this database in messages.
SETTING = "the canary database URL"

DEFAULT_DATABASE_URL = "sqlite:///.mlgate/bot.db"

metadata = sa.MetaData()

canaries = sa.Table(
    "mlgate_canaries",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model", sa.String(128), nullable=False),
    sa.Column("environment", sa.String(128), nullable=False),
    sa.Column("version", sa.String(32), nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("revision", sa.Integer, nullable=False),
    sa.Column("next_due_at", sa.Float),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("data", sa.Text, nullable=False),
    sa.Index("ix_mlgate_canaries_due", "active", "next_due_at"),
    sa.Index(
        "ux_mlgate_canaries_one_active", "model", "environment", unique=True,
        sqlite_where=sa.text("active = 1"), postgresql_where=sa.text("active"),
    ),
)

transitions = sa.Table(
    "mlgate_canary_transitions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("canary_id", sa.Integer, sa.ForeignKey("mlgate_canaries.id"), nullable=False),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("from_status", sa.String(32)),
    sa.Column("to_status", sa.String(32), nullable=False),
    sa.Column("step", sa.Integer, nullable=False),
    sa.Column("percent", sa.Integer),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("actor", sa.String(255), nullable=False),
    sa.Index("ix_mlgate_canary_transitions_canary", "canary_id", "id"),
)


class Conflict(MlgateError):
    """The canary changed since it was read (another worker acted first); reread and retry (exit 3)."""

    exit_code = 3


def database_url(environ: Mapping[str, str] | None = None) -> str:
    """``$MLGATE_DATABASE_URL`` or the bot's default ``sqlite:///.mlgate/bot.db``."""
    env = os.environ if environ is None else environ
    return env.get("MLGATE_DATABASE_URL") or DEFAULT_DATABASE_URL


class CanaryStore:
    """Canaries in the bot's database. Thread-safe (one SQLAlchemy engine).

    Args:
        database: a SQLAlchemy URL (``sqlite:///path``, ``postgresql+psycopg://...``), or an
            existing :class:`sqlalchemy.engine.Engine` to share (e.g. the bot store's), or
            None for :func:`database_url`. The folder of a SQLite file is created.
        create: create missing tables and indexes (idempotent), and the folder of a SQLite
            file. False (commands that only read, or act on an existing canary) creates
            nothing: a SQLite file must exist already.

    Raises:
        UsageError: the URL is not usable as written: not a SQLAlchemy URL, not sqlite or
            postgresql, a SQLite folder or file that cannot be created, or (``create=False``)
            no SQLite file (exit 2; the URL is named with its password hidden).
        InfraError: the database cannot be reached (the message hides any password).
    """

    def __init__(self, database: str | sa.Engine | None = None, *, create: bool = True):
        if isinstance(database, sa.Engine):
            self.engine = database
            self._owned = False
        else:
            self.engine, _ = make_engine(database or database_url(), create=create, setting=SETTING)
            self._owned = True
        self.safe_url = self.engine.url.render_as_string(hide_password=True)
        if create:
            self.create_schema()

    def create_schema(self) -> None:
        """Create the two tables and their indexes when missing.

        Raises:
            UsageError: a SQLite file that cannot be created or opened. InfraError: the server failed.
        """
        try:
            metadata.create_all(self.engine)
        except sa.exc.SQLAlchemyError as e:
            raise schema_error(e, self.engine, SETTING, self.safe_url) from None

    def has_tables(self) -> bool:
        """Whether the canary tables exist (False in a database no canary was ever stored in)."""
        try:
            return sa.inspect(self.engine).has_table(canaries.name)
        except sa.exc.SQLAlchemyError as e:
            raise InfraError(f"database {self.safe_url} is not reachable: {_short(e)}") from None

    def close(self) -> None:
        """Release pooled connections (only of an engine this store created)."""
        if self._owned:
            self.engine.dispose()

    # ------------------------------------------------------------------ reads

    def _record(self, row: Any) -> CanaryRecord:
        return record_from_json(json.loads(row.data), id=row.id, revision=row.revision)

    def get(self, canary_id: int) -> CanaryRecord | None:
        """The canary with this id, or None."""
        with self._conn() as conn:
            row = conn.execute(sa.select(canaries).where(canaries.c.id == canary_id)).first()
        return self._record(row) if row else None

    def find_active(self, model: str, environment: str) -> CanaryRecord | None:
        """The running canary of ``model`` in ``environment`` (at most one), or None."""
        with self._conn() as conn:
            row = conn.execute(sa.select(canaries).where(
                canaries.c.model == model, canaries.c.environment == environment, canaries.c.active.is_(True))).first()
        return self._record(row) if row else None

    def list(self, *, active_only: bool = False, model: str | None = None, environment: str | None = None,
             limit: int = 100) -> list[CanaryRecord]:
        """Canaries, newest first; ``active_only`` keeps those mlgate still drives."""
        q = sa.select(canaries).order_by(canaries.c.id.desc()).limit(limit)
        if active_only:
            q = q.where(canaries.c.active.is_(True))
        if model is not None:
            q = q.where(canaries.c.model == model)
        if environment is not None:
            q = q.where(canaries.c.environment == environment)
        with self._conn() as conn:
            rows = conn.execute(q).all()
        return [self._record(r) for r in rows]

    def latest(self, model: str, environment: str) -> CanaryRecord | None:
        """The newest canary of ``model`` in ``environment``, running or not."""
        found = self.list(model=model, environment=environment, limit=1)
        return found[0] if found else None

    def find_by_url(self, url: str) -> CanaryRecord | None:
        """The active canary with a step or rollback written as pull request ``url``."""
        for r in self.list(active_only=True, limit=1000):
            if any(s.url == url for s in r.steps_log) or (r.rollback is not None and r.rollback.url == url):
                return r
        return None

    def transitions(self, canary_id: int) -> list[Transition]:
        """The audited transitions of a canary, oldest first."""
        with self._conn() as conn:
            rows = conn.execute(sa.select(transitions).where(transitions.c.canary_id == canary_id)
                                .order_by(transitions.c.id)).all()
        return [Transition(r.at, r.from_status, r.to_status, r.step, r.percent, r.action, r.reason, r.actor)
                for r in rows]

    # ------------------------------------------------------------------ writes

    def create(self, record: CanaryRecord, *, actor: str, action: str = "start") -> CanaryRecord:
        """Insert a new canary and its first transition; returns it with its id and revision 1.

        Raises:
            Refused: a canary of the same model is already running in that environment.
        """
        values = self._columns(record)
        try:
            with self.engine.begin() as conn:
                cid = conn.execute(sa.insert(canaries).values(revision=1, **values)).inserted_primary_key[0]
                rec = _with(record, id=cid, revision=1)
                conn.execute(sa.update(canaries).where(canaries.c.id == cid).values(data=json.dumps(record_to_json(rec))))
                conn.execute(sa.insert(transitions).values(self._transition(rec, None, action, actor)))
        except sa.exc.IntegrityError:
            other = self.find_active(record.model, record.environment)
            what = f"v{other.version} ({other.status})" if other else "another version"
            raise Refused(f"a canary of {record.model} is already running in {record.environment}: {what}; "
                          "roll it back or abort it first") from None
        except sa.exc.SQLAlchemyError as e:
            raise InfraError(f"database {self.safe_url}: cannot store the canary: {_short(e)}") from None
        return rec

    def save(self, record: CanaryRecord, *, expected: CanaryRecord, actor: str, action: str) -> CanaryRecord:
        """Store ``record`` if the row still holds ``expected.revision``; audit the change.

        Args:
            record: the new state (its ``revision`` is ignored).
            expected: the state it was derived from (as read from this store).
            actor: who caused the change (``bot``, ``cli``, a user login).
            action: what happened in one word (``measure``, ``advance``, ``write``, ``live``, ...).

        Returns:
            The stored record with ``revision`` = ``expected.revision + 1``.

        Raises:
            Conflict: the row moved on (another worker acted): nothing was stored.
        """
        assert record.id is not None and record.id == expected.id
        rec = _with(record, revision=expected.revision + 1)
        try:
            with self.engine.begin() as conn:
                res = conn.execute(
                    sa.update(canaries)
                    .where(canaries.c.id == record.id, canaries.c.revision == expected.revision)
                    .values(revision=rec.revision, **self._columns(rec))
                )
                if res.rowcount != 1:
                    raise Conflict(f"canary {record.label} changed while mlgate was working on it; nothing was "
                                   "stored (another worker acted first)")
                conn.execute(sa.insert(transitions).values(self._transition(rec, expected.status, action, actor)))
        except sa.exc.IntegrityError:
            raise Refused(f"a canary of {record.model} is already running in {record.environment}") from None
        except sa.exc.SQLAlchemyError as e:
            raise InfraError(f"database {self.safe_url}: cannot store the canary: {_short(e)}") from None
        return rec

    # ------------------------------------------------------------------ helpers

    @contextmanager
    def _conn(self) -> Iterator[Any]:
        try:
            with self.engine.connect() as conn:
                yield conn
        except sa.exc.SQLAlchemyError as e:
            raise InfraError(f"database {self.safe_url} is not reachable: {_short(e)}") from None

    @staticmethod
    def _columns(r: CanaryRecord) -> dict[str, Any]:
        return {
            "model": r.model, "environment": r.environment, "version": r.version, "status": r.status,
            "active": r.status in ACTIVE, "next_due_at": r.next_due_at, "created_at": r.created_at,
            "updated_at": r.updated_at, "data": json.dumps(record_to_json(r)),
        }

    @staticmethod
    def _transition(r: CanaryRecord, from_status: str | None, action: str, actor: str) -> dict[str, Any]:
        return {
            "canary_id": r.id, "at": r.updated_at, "from_status": from_status, "to_status": r.status,
            "step": r.step, "percent": r.percent if r.step >= 0 else None, "action": action,
            "reason": r.reason, "actor": actor,
        }


def _with(record: CanaryRecord, **changes: Any) -> CanaryRecord:
    return replace(record, **changes)
