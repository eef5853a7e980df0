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

:class:`Store` is composed of one part per job, each in its own module of this package:
:mod:`.engine` (the engine factory), :mod:`.tables`, :mod:`.intake`, :mod:`.deliveries`,
:mod:`.effects`, :mod:`.locks`, :mod:`.audit`, :mod:`.kv`. The names below stay importable from
here.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from mlgate.core.errors import InfraError, UsageError
from mlgate.edge.db.audit import AuditLog
from mlgate.edge.db.deliveries import STATUSES, Delivery, DeliveryInfo, DeliveryQueue
from mlgate.edge.db.effects import Effects
from mlgate.edge.db.engine import (
    database_target,
    make_engine,
    normalize_url,
    safe_database_url,
    schema_error,
    short_error,
)
from mlgate.edge.db.intake import Incoming, Intake, IntakeWriter, Result, _Checkpointer
from mlgate.edge.db.kv import KeyValues
from mlgate.edge.db.locks import Locks
from mlgate.edge.db.tables import ADDED_COLUMNS, APPEND_ONLY, audit_table, deliveries, effects, kv, locks, metadata

__all__ = [
    "STATUSES", "Delivery", "DeliveryInfo", "Incoming", "IntakeWriter", "Result", "Store", "_Checkpointer",
    "audit_table", "database_target", "deliveries", "effects", "kv", "locks", "metadata", "normalize_url",
    "safe_database_url",
]


class Store(Intake, DeliveryQueue, Effects, Locks, AuditLog, KeyValues):
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
        self.engine, self._sqlite_file = make_engine(self.url, create=create)
        self.dialect = self.engine.dialect.name
        self._insert = sqlite.insert if self.dialect == "sqlite" else postgresql.insert
        self._init_intake()
        if create:
            self.create_schema()
        else:
            try:
                present = sa.inspect(self.engine).has_table(deliveries.name)
            except sa.exc.SQLAlchemyError as e:
                raise InfraError(f"database {self.safe_url} is not reachable: {short_error(e)}") from None
            if not present:
                raise UsageError(f"database_url {self.safe_url!r} holds no mlgate bot tables (the bot has never "
                                 "run with this database)")

    def create_schema(self) -> None:
        """Create missing tables, indexes and the audit table's append-only triggers, and add the
        columns of :data:`~mlgate.edge.db.tables.ADDED_COLUMNS` to a database made by an older version.

        Raises:
            UsageError: a SQLite file that cannot be created or opened (a configuration error).
            InfraError: the database server failed.
        """
        try:
            metadata.create_all(self.engine)
            self._add_columns()
            with self.engine.begin() as conn:
                for stmt in APPEND_ONLY[self.dialect]:
                    conn.exec_driver_sql(stmt)
        except sa.exc.SQLAlchemyError as e:
            raise schema_error(e, self.engine, "database_url", self.safe_url) from None

    def _add_columns(self) -> None:
        """``ALTER TABLE ... ADD COLUMN`` for each column an older version did not create (idempotent;
        two replicas starting at once both succeed: PostgreSQL's ``IF NOT EXISTS``, and on SQLite a
        "duplicate column" answer is taken as done)."""
        for table, column, ddl in ADDED_COLUMNS:
            present = {c["name"] for c in sa.inspect(self.engine).get_columns(table)}
            if column in present:
                continue
            exists = "IF NOT EXISTS " if self.dialect == "postgresql" else ""
            try:
                with self.engine.begin() as conn:
                    conn.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN {exists}{column} {ddl}")
            except sa.exc.OperationalError as e:
                if "duplicate column" not in str(e):
                    raise

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
            raise InfraError(f"database {self.safe_url} is not reachable: {short_error(e)}") from None

    def close(self) -> None:
        """Release pooled connections."""
        self.engine.dispose()
