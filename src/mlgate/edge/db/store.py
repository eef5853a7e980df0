"""The bot's database: deliveries queue, once-only effects, locks, audit records, small state.

SQLAlchemy 2 Core over SQLite (default; WAL journal, ``synchronous=NORMAL``: a committed row
survives a crash of the process, and a power loss may lose only the last transactions; see
https://www.sqlite.org/wal.html and ``PRAGMA synchronous``) or PostgreSQL
(``postgresql+psycopg://``). Times are stored as UNIX seconds (float, UTC).

A delivery moves ``queued`` → ``running`` (a worker holds a lease until ``lease_expires_at``)
→ ``done`` | ``queued`` again (retry at ``next_attempt_at``) | ``failed``. A lease that expires
(the process died) makes the delivery claimable again, so accepted work is never lost.

:class:`IntakeWriter` is the group-commit writer the HTTP app uses: many deliveries arriving
together are inserted in one transaction on one thread, and each caller is told the outcome
only after the commit.
"""

from __future__ import annotations

import json
import queue
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa

from mlgate.core.errors import InfraError, UsageError

STATUSES = ("queued", "running", "done", "failed")

metadata = sa.MetaData()

deliveries = sa.Table(
    "mlgate_deliveries",
    metadata,
    sa.Column("id", sa.String(128), primary_key=True),
    sa.Column("forge", sa.String(16), nullable=False),
    sa.Column("event", sa.String(64), nullable=False),
    sa.Column("headers", sa.Text, nullable=False),
    sa.Column("body", sa.LargeBinary, nullable=False),
    sa.Column("received_at", sa.Float, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("next_attempt_at", sa.Float, nullable=False),
    sa.Column("lease_owner", sa.String(128)),
    sa.Column("lease_expires_at", sa.Float),
    sa.Column("outcome", sa.Text),
    sa.Column("error", sa.Text),
    sa.Column("finished_at", sa.Float),
    sa.Index("ix_mlgate_deliveries_due", "status", "next_attempt_at"),
    sa.Index("ix_mlgate_deliveries_lease", "status", "lease_expires_at"),
)

effects = sa.Table(
    "mlgate_effects",
    metadata,
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("delivery_id", sa.String(128), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

locks = sa.Table(
    "mlgate_locks",
    metadata,
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("owner", sa.String(255), nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
)

audit_table = sa.Table(
    "mlgate_audit",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("recorded_at", sa.Float, nullable=False),
    sa.Column("record", sa.Text, nullable=False),
)

kv = sa.Table(
    "mlgate_kv",
    metadata,
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

_SQLITE_APPEND_ONLY = [
    "CREATE TRIGGER IF NOT EXISTS mlgate_audit_no_update BEFORE UPDATE ON mlgate_audit "
    "BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END",
    "CREATE TRIGGER IF NOT EXISTS mlgate_audit_no_delete BEFORE DELETE ON mlgate_audit "
    "BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END",
]
_PG_APPEND_ONLY = [
    "CREATE OR REPLACE FUNCTION mlgate_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN RAISE EXCEPTION 'audit records are append-only'; END $$",
    "DROP TRIGGER IF EXISTS mlgate_audit_append_only ON mlgate_audit",
    "CREATE TRIGGER mlgate_audit_append_only BEFORE UPDATE OR DELETE ON mlgate_audit "
    "FOR EACH ROW EXECUTE FUNCTION mlgate_audit_append_only()",
]


@dataclass(frozen=True)
class Delivery:
    """One stored webhook delivery, as a worker receives it.

    ``payload`` is the decoded JSON object; ``headers`` the kept request headers (lower-case
    names; never a token or signature); ``attempts`` counts this one (1 on the first run).
    """

    id: str
    forge: Literal["github", "gitlab"]
    event: str
    payload: dict
    headers: dict[str, str]
    received_at: datetime
    attempts: int


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


@dataclass(frozen=True)
class Incoming:
    """A verified delivery on its way into the store."""

    id: str
    forge: str
    event: str
    headers: dict[str, str]
    body: bytes
    received_at: float


def _ts(dt: datetime) -> float:
    """UNIX seconds of a datetime; a naive datetime is taken as UTC."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def _dt(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC)


def normalize_url(url: str) -> str:
    """``postgresql://`` and ``postgres://`` mean psycopg 3 (the driver mlgate installs)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def safe_database_url(url: str) -> str:
    """``url`` with its password shown as ``***`` (for messages and logs), also when it does not parse."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:
        return re.sub(r"(?<=:)[^:/@]*(?=@)", "***", url)


def database_target(url: str, *, create: bool, setting: str = "database_url") -> tuple[Any, Path | None]:
    """Check a database URL before any engine is built: (parsed URL, SQLite file or None).

    Args:
        url: SQLAlchemy URL (``postgresql://`` means psycopg 3).
        create: the caller may create the database: the folder of a SQLite file is made. When
            False nothing is created and a SQLite file must exist already.
        setting: the name the user set it by, for messages (``database_url``, ``--database-url``).

    Raises:
        UsageError (exit 2, a configuration error; the URL is named with its password hidden):
            not a SQLAlchemy URL, not sqlite/postgresql, a SQLite folder that cannot be created,
            or (``create=False``) a SQLite file that does not exist.
    """
    safe = safe_database_url(url)
    try:
        parsed = sa.engine.make_url(normalize_url(url))
    except Exception:
        raise UsageError(f"{setting} {safe!r} is not a valid SQLAlchemy URL (expected sqlite:///PATH or "
                         "postgresql://USER:PASSWORD@HOST/DATABASE)") from None
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise UsageError(f"{setting} {safe!r}: only sqlite and postgresql databases are supported")
    if backend != "sqlite":
        return parsed, None
    db = parsed.database
    if not db or db == ":memory:" or db.startswith("file:"):
        return parsed, None
    path = Path(db).expanduser().absolute()
    if not create:
        if not path.is_file():
            raise UsageError(f"{setting} {safe!r}: no database at {path}")
        return parsed, path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"{setting} {safe!r}: cannot create the folder {path.parent}: "
                         f"{e.strerror or type(e).__name__}") from None
    return parsed, path


class Store:
    """The bot's database (SQLite or PostgreSQL through SQLAlchemy). Thread-safe.

    Args:
        url: SQLAlchemy URL (``sqlite:///path``, ``postgresql+psycopg://...``). The parent
            folder of a SQLite file is created.
        create: create missing tables (idempotent), and the folder of a SQLite file. False
            (read-only commands) creates nothing: the SQLite file must exist.

    Raises:
        UsageError: the URL is not usable as written (see :func:`database_target`; exit 2).
        InfraError: the database cannot be opened or reached (message without the password).
    """

    def __init__(self, url: str, *, create: bool = True):
        self.url = normalize_url(url)
        self.safe_url = safe_database_url(self.url)
        parsed, self._sqlite_file = database_target(self.url, create=create)
        self.dialect = parsed.get_backend_name()
        kwargs: dict[str, Any] = {}
        if self.dialect == "sqlite":
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        else:
            kwargs["pool_pre_ping"] = True
            kwargs["pool_size"] = 8
        try:
            self.engine = sa.create_engine(self.url, **kwargs)
        except Exception as e:  # missing driver, bad options: the URL as written cannot work
            raise UsageError(f"database_url {self.safe_url!r} cannot be used: {type(e).__name__}: "
                             f"{str(e).splitlines()[0][:200] if str(e) else ''}") from None
        if self.dialect == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
            from sqlalchemy.dialects.sqlite import insert as dialect_insert
        else:
            from sqlalchemy.dialects.postgresql import insert as dialect_insert
        self._insert = dialect_insert
        # raw SQL of the intake insert, in the driver's positional parameter style
        self._param = "?" if self.engine.dialect.paramstyle == "qmark" else "%s"
        cols = ("id", "forge", "event", "headers", "body", "received_at", "status", "attempts", "next_attempt_at")
        self._insert_sql = (
            f"INSERT INTO {deliveries.name} ({', '.join(cols)}) VALUES ({', '.join([self._param] * len(cols))}) "
            "ON CONFLICT (id) DO NOTHING"
        )
        self._existing_cache: dict[int, str] = {}
        if create:
            self.create_schema()
        else:
            try:
                present = sa.inspect(self.engine).has_table(deliveries.name)
            except sa.exc.SQLAlchemyError as e:
                raise InfraError(f"database {self.safe_url} is not reachable: {_short(e)}") from None
            if not present:
                raise UsageError(f"database_url {self.safe_url!r} holds no mlgate bot tables (the bot has never "
                                 "run with this database)")

    # ------------------------------------------------------------------ schema and health

    def create_schema(self) -> None:
        """Create missing tables, indexes and the audit table's append-only triggers.

        Raises:
            UsageError: a SQLite file that cannot be created or opened (a configuration error).
            InfraError: the database server failed.
        """
        try:
            metadata.create_all(self.engine)
            with self.engine.begin() as conn:
                for stmt in _SQLITE_APPEND_ONLY if self.dialect == "sqlite" else _PG_APPEND_ONLY:
                    conn.exec_driver_sql(stmt)
        except sa.exc.SQLAlchemyError as e:
            if self.dialect == "sqlite" and isinstance(e, sa.exc.DatabaseError) and any(
                    m in str(e) for m in ("unable to open database file", "readonly database", "not a database")):
                raise UsageError(f"database_url {self.safe_url!r}: cannot open or create the SQLite file: "
                                 f"{_short(e)}") from None
            raise InfraError(f"database {self.safe_url} is not usable: {_short(e)}") from None

    def ping(self) -> None:
        """Check that the database answers and holds the bot's tables; raises :class:`InfraError` if not.

        For SQLite also checks that the file still exists (a deleted file would keep
        working through open connections while nothing reaches the disk).
        """
        if self._sqlite_file is not None and not self._sqlite_file.exists():
            raise InfraError(f"database file {self._sqlite_file} does not exist any more")
        try:
            with self.engine.connect() as conn:
                conn.execute(sa.select(sa.func.count()).select_from(deliveries).where(deliveries.c.id == ""))
        except sa.exc.SQLAlchemyError as e:
            raise InfraError(f"database {self.safe_url} is not reachable: {_short(e)}") from None

    def close(self) -> None:
        """Release pooled connections."""
        self.engine.dispose()

    # ------------------------------------------------------------------ intake

    def accept(
        self,
        delivery_id: str,
        forge: str,
        event: str,
        headers: dict[str, str],
        body: bytes,
        *,
        received_at: datetime | None = None,
    ) -> bool:
        """Store a verified delivery as ``queued``; committed before returning.

        Returns:
            True when stored, False when a delivery with this id exists (a redelivery).
        """
        at = _ts(received_at) if received_at else datetime.now(UTC).timestamp()
        return self.accept_many([Incoming(delivery_id, forge, event, headers, body, at)])[0]

    def accept_many(self, items: Sequence[Incoming], conn: Any = None) -> list[bool]:
        """Store several deliveries in one transaction (group commit).

        Args:
            items: verified deliveries.
            conn: a raw driver connection from :meth:`raw_connection` to reuse (the intake
                writer keeps one); default: one from the pool for this call.

        Returns:
            One flag per item, in order: True stored, False duplicate id (already in the
            database, or an earlier item of the same batch).

        Raises:
            The driver's error when the transaction fails; nothing of the batch is stored.

        This is the hot path of the intake, so it talks to the driver directly (SQLAlchemy's
        per-statement overhead is several times the insert itself): on SQLite one
        ``INSERT ... ON CONFLICT DO NOTHING`` per row (its rowcount says stored or duplicate);
        on PostgreSQL one ``SELECT ... IN`` for existing ids then one pipelined ``executemany``.
        """
        if not items:
            return []
        own = conn is None
        if own:
            conn = self.engine.raw_connection()
        try:
            cur = conn.cursor()
            out: list[bool] = []
            if self.dialect == "sqlite":
                sql = self._insert_sql
                for it in items:
                    cur.execute(sql, _row(it))
                    out.append(cur.rowcount == 1)
            else:
                ids = list({it.id for it in items})
                cur.execute(self._existing_sql(len(ids)), ids)
                seen = {row[0] for row in cur.fetchall()}
                rows = []
                for it in items:
                    new = it.id not in seen
                    out.append(new)
                    if new:
                        seen.add(it.id)
                        rows.append(_row(it))
                if rows:
                    cur.executemany(self._insert_sql, rows)
            conn.commit()
            cur.close()
        except BaseException:
            try:
                conn.rollback()
            except Exception:
                pass
            raise
        finally:
            if own:
                conn.close()
        return out

    def raw_connection(self) -> Any:
        """A driver connection from the pool (``close()`` returns it; ``invalidate()`` drops it)."""
        return self.engine.raw_connection()

    def _existing_sql(self, n: int) -> str:
        sql = self._existing_cache.get(n)
        if sql is None:
            p = self._param
            sql = f"SELECT id FROM {deliveries.name} WHERE id IN ({', '.join([p] * n)})"
            if len(self._existing_cache) < 512:
                self._existing_cache[n] = sql
        return sql

    # ------------------------------------------------------------------ queue

    def _due(self, now: float) -> Any:
        d = deliveries.c
        return sa.or_(
            sa.and_(d.status == "queued", d.next_attempt_at <= now),
            sa.and_(d.status == "running", d.lease_expires_at <= now),
        )

    def claim_next(self, worker_id: str, now: datetime, lease_seconds: float = 60.0) -> Delivery | None:
        """Lease the oldest due delivery to ``worker_id`` for ``lease_seconds``.

        Due: ``queued`` with ``next_attempt_at <= now``, or ``running`` with an expired lease
        (its worker died). The claim increments ``attempts``.

        Returns:
            The delivery, or None when nothing is due.
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
                    )
                )
                if res.rowcount != 1:
                    continue
                row = conn.execute(
                    sa.select(d.id, d.forge, d.event, d.headers, d.body, d.received_at, d.attempts).where(d.id == cand)
                ).one()
            return _delivery(row)
        return None

    def renew_lease(self, delivery_id: str, worker_id: str, now: datetime, lease_seconds: float) -> bool:
        """Extend a lease the worker still holds; False when it lost it."""
        d = deliveries.c
        with self.engine.begin() as conn:
            res = conn.execute(
                deliveries.update()
                .where(d.id == delivery_id, d.status == "running", d.lease_owner == worker_id)
                .values(lease_expires_at=_ts(now) + lease_seconds)
            )
            return res.rowcount == 1

    def finish(self, delivery_id: str, outcome: str, *, worker_id: str | None = None, now: datetime | None = None) -> None:
        """Mark a delivery ``done`` with its outcome text (only if ``worker_id`` still holds it, when given)."""
        d = deliveries.c
        cond = [d.id == delivery_id]
        if worker_id is not None:
            cond.append(d.lease_owner == worker_id)
        with self.engine.begin() as conn:
            conn.execute(
                deliveries.update()
                .where(*cond)
                .values(
                    status="done",
                    outcome=outcome,
                    error=None,
                    lease_owner=None,
                    lease_expires_at=None,
                    finished_at=_ts(now) if now else datetime.now(UTC).timestamp(),
                )
            )

    def fail(
        self,
        delivery_id: str,
        error: str,
        retry_at: datetime | None,
        *,
        worker_id: str | None = None,
        now: datetime | None = None,
    ) -> None:
        """Record a failed attempt: queue it again at ``retry_at``, or (None) mark it ``failed``."""
        d = deliveries.c
        cond = [d.id == delivery_id]
        if worker_id is not None:
            cond.append(d.lease_owner == worker_id)
        values: dict[str, Any] = {"error": error[:4000], "lease_owner": None, "lease_expires_at": None}
        if retry_at is None:
            values.update(status="failed", finished_at=_ts(now) if now else datetime.now(UTC).timestamp())
        else:
            values.update(status="queued", next_attempt_at=_ts(retry_at))
        with self.engine.begin() as conn:
            conn.execute(deliveries.update().where(*cond).values(**values))

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

    # ------------------------------------------------------------------ once-only effects, locks

    def claim_effect(self, key: str, delivery_id: str) -> bool:
        """Claim a once-only side effect (e.g. ``github:comment:123:promote``).

        Returns:
            True when the key is new, or was claimed by this same delivery (a retry of an
            attempt that stopped half-way continues its own effect); False when another
            delivery claimed it (the same comment arriving through a second hook).
        """
        with self.engine.begin() as conn:
            res = conn.execute(
                self._insert(effects)
                .values(key=key, delivery_id=delivery_id, created_at=datetime.now(UTC).timestamp())
                .on_conflict_do_nothing(index_elements=["key"])
            )
            if res.rowcount == 1:
                return True
            owner = conn.execute(sa.select(effects.c.delivery_id).where(effects.c.key == key)).scalar()
            return owner == delivery_id

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

    # ------------------------------------------------------------------ audit, kv

    def audit(self, record: dict) -> None:
        """Append one audit record (a JSON-serialisable dict). Records cannot be changed or deleted."""
        now = datetime.now(UTC).timestamp()
        with self.engine.begin() as conn:
            conn.execute(
                audit_table.insert().values(recorded_at=now, record=json.dumps(record, sort_keys=True, default=str))
            )

    def audit_records(self) -> list[dict]:
        """Every audit record, oldest first, each with ``id`` and ``recorded_at`` (ISO 8601) added."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(audit_table).order_by(audit_table.c.id)).all()
        out = []
        for r in rows:
            rec = json.loads(r.record)
            rec.setdefault("id", r.id)
            rec.setdefault("recorded_at", _dt(r.recorded_at).isoformat())  # type: ignore[union-attr]
            out.append(rec)
        return out

    def kv_get(self, key: str) -> str | None:
        """A small piece of state (e.g. the id of the bot's comment on a PR), or None."""
        with self.engine.connect() as conn:
            return conn.execute(sa.select(kv.c.value).where(kv.c.key == key)).scalar()

    def kv_set(self, key: str, value: str) -> None:
        """Set (insert or replace) a small piece of state."""
        stmt = self._insert(kv).values(key=key, value=value)
        stmt = stmt.on_conflict_do_update(index_elements=["key"], set_={"value": stmt.excluded.value})
        with self.engine.begin() as conn:
            conn.execute(stmt)


def _row(it: Incoming) -> tuple:
    return (
        it.id,
        it.forge,
        it.event,
        json.dumps(it.headers, separators=(",", ":")),
        it.body,
        it.received_at,
        "queued",
        0,
        it.received_at,
    )


def _payload(body: bytes, headers: dict[str, str]) -> dict:
    """The JSON object of a stored body. The app stores JSON (a form body's ``payload`` field is
    stored as its JSON); a form body stored raw by an older version is decoded as a form.
    Never raises: an unreadable body (it was parsed at intake) gives {} and the handler ignores it."""
    from mlgate.core import intake

    try:
        obj = intake._loads(body)
    except (ValueError, RecursionError):
        obj = intake.parse_payload(headers, body) if intake.is_form(headers) else None
    return obj if isinstance(obj, dict) else {}


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
    )


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA journal_size_limit=67108864")  # truncate a grown WAL back to 64 MB after a reset
    cur.close()


def _short(e: BaseException) -> str:
    """First line of a driver error, without the SQL and parameters SQLAlchemy appends."""
    orig = getattr(e, "orig", None) or e
    text = str(orig).strip().splitlines()
    return (text[0] if text else type(orig).__name__)[:300]


# ---------------------------------------------------------------------- group-commit writer

Result = bool | BaseException


class IntakeWriter:
    """One thread that inserts deliveries in batches, then reports each outcome.

    :meth:`submit` is cheap and never blocks on the database: the HTTP handler waits for its
    token's result and answers 202 only after the batch holding its delivery committed. While
    one batch commits, the next fills up (natural group commit: no added delay at low load).
    The thread keeps one driver connection; after a failure it takes a fresh one.

    Args:
        store: where to write.
        max_batch: most deliveries per transaction.
        on_commit: called (on the writer thread) after each batch that stored at least one
            new delivery, e.g. to wake the workers.
        deliver: called once per batch (on the writer thread) with ``[(token, result), ...]``;
            result is True (stored), False (duplicate) or the exception. Default: each token
            is a callable and is called with its result.
    """

    def __init__(
        self,
        store: Store,
        *,
        max_batch: int = 256,
        on_commit: Callable[[], None] | None = None,
        deliver: Callable[[list[tuple[Any, Result]]], None] | None = None,
    ):
        self.store = store
        self.max_batch = max_batch
        self.on_commit = on_commit
        self.deliver = deliver or _call_each
        self._q: queue.SimpleQueue[list[tuple[Incoming, Any]] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="mlgate-intake-writer", daemon=True)
        self._started = False
        self._conn: Any = None
        self._checkpointer = _Checkpointer(store) if store.dialect == "sqlite" else None

    def start(self) -> None:
        if not self._started:
            self._started = True
            self._thread.start()
            if self._checkpointer is not None:
                self._checkpointer.start()

    def submit(self, item: Incoming, token: Any) -> None:
        """Queue ``item``; its result is delivered with ``token`` after the batch commits."""
        self._q.put([(item, token)])

    def submit_many(self, pairs: list[tuple[Incoming, Any]]) -> None:
        """Queue several ``(item, token)`` at once (one thread wake-up)."""
        if pairs:
            self._q.put(pairs)

    def stop(self, timeout: float = 10.0) -> None:
        """Write what is queued, then stop the thread."""
        if self._started:
            self._q.put(None)
            self._thread.join(timeout)
            if self._checkpointer is not None:
                self._checkpointer.stop()

    def _write(self, items: list[Incoming]) -> list[Result]:
        try:
            if self._conn is None:
                self._conn = self.store.raw_connection()
                if self._checkpointer is not None:
                    # checkpoints (which fsync) run on their own thread, never inside an intake commit
                    cur = self._conn.cursor()
                    cur.execute("PRAGMA wal_autocheckpoint=0")
                    cur.close()
            results = list(self.store.accept_many(items, self._conn))
            if self._checkpointer is not None and self._checkpointer.written(len(items)):
                cur = self._conn.cursor()
                self._checkpointer.checkpoint(cur)
                cur.close()
            return results
        except Exception as e:  # the whole batch is rolled back; tell every caller
            if self._conn is not None:
                try:
                    self._conn.invalidate()
                except Exception:
                    pass
                self._conn = None
            err = InfraError(f"database {self.store.safe_url}: {_short(e)}")
            return [err] * len(items)

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._q.get()
            if first is None:
                break
            batch = list(first)
            while len(batch) < self.max_batch:
                try:
                    nxt = self._q.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stopping = True
                    break
                batch.extend(nxt)
            results = self._write([it for it, _ in batch])
            if self.on_commit is not None and any(r is True for r in results):
                try:
                    self.on_commit()
                except Exception:
                    pass
            try:
                self.deliver([(tok, res) for (_, tok), res in zip(batch, results)])
            except Exception:
                pass
        if self._conn is not None:
            try:
                if self._checkpointer is not None:
                    cur = self._conn.cursor()
                    cur.execute("PRAGMA wal_autocheckpoint=1000")
                    cur.close()
                self._conn.close()
            except Exception:
                pass
            self._conn = None


class _Checkpointer:
    """Runs SQLite WAL checkpoints on a thread of their own.

    A checkpoint copies the WAL into the database file and fsyncs it (about 15 ms here); run
    automatically it would happen inside whichever commit crossed the threshold, stalling
    every delivery of that batch. ``PASSIVE`` checkpoints never block writers.
    See https://www.sqlite.org/wal.html#ckpt.

    Under sustained back-to-back writes the WAL is never restarted from its beginning (a
    restart needs a write transaction that starts after a complete checkpoint), so it would
    grow without end: once the WAL holds more than :attr:`INLINE_AFTER_FRAMES` pages the
    writer checkpoints on its own connection between two batches (one short stall per
    about 40 MB of deliveries: the background checkpoints already copied most pages), after
    which its next write restarts the WAL.
    """

    #: rows written between two background checkpoints (about 1000 pages for 9 KB bodies)
    EVERY_ROWS = 300
    #: WAL pages (4 KiB) after which the writer checkpoints inline (about 40 MB)
    INLINE_AFTER_FRAMES = 10_000

    def __init__(self, store: Store):
        self.store = store
        self._event = threading.Event()
        self._stop = False
        self._rows = 0
        self._frames = 0  # WAL size in pages at the last checkpoint
        self._lock = threading.Lock()  # one checkpoint at a time (a second one would just fail)
        self._thread = threading.Thread(target=self._run, name="mlgate-wal-checkpoint", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def written(self, rows: int) -> bool:
        """Count committed rows; True when the writer should checkpoint now, inline."""
        self._rows += rows
        if self._rows >= self.EVERY_ROWS:
            self._rows = 0
            self._event.set()
        return self._frames > self.INLINE_AFTER_FRAMES

    def checkpoint(self, cursor: Any) -> None:
        """Checkpoint on the caller's connection (the writer's: nothing is appended meanwhile)."""
        with self._lock:
            cursor.execute("PRAGMA wal_checkpoint(PASSIVE)")
            result = cursor.fetchone()
        if result is not None and result[0] == 0 and result[1] == result[2]:
            self._frames = 0  # complete: the writer's next transaction restarts the WAL

    def _note(self, result: Any) -> None:
        # (busy, pages in the WAL, pages checkpointed); -1 when another checkpoint ran
        if result is not None and result[1] >= 0:
            self._frames = result[1]

    def stop(self) -> None:
        self._stop = True
        self._event.set()
        self._thread.join(10)

    def _run(self) -> None:
        while True:
            self._event.wait(5.0)  # also checkpoint now and then when idle
            self._event.clear()
            try:
                with self._lock, self.store.engine.connect() as conn:
                    self._note(conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)").fetchone())
            except Exception:
                pass  # the next commit or checkpoint will tell
            if self._stop:
                return


def _call_each(pairs: list[tuple[Any, Result]]) -> None:
    for cb, res in pairs:
        try:
            cb(res)
        except Exception:
            pass
