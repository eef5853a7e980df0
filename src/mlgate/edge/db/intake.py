"""The intake: verified deliveries stored as ``queued``, one transaction per batch.

:class:`IntakeWriter` is the group-commit writer the HTTP app uses: many deliveries arriving
together are inserted in one transaction on one thread, and each caller is told the outcome
only after the commit.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from mlgate.core.errors import InfraError
from mlgate.edge.db.deliveries import _ts
from mlgate.edge.db.engine import short_error as _short
from mlgate.edge.db.tables import deliveries

if TYPE_CHECKING:
    from mlgate.edge.db.store import Store


@dataclass(frozen=True)
class Incoming:
    """A verified delivery on its way into the store."""

    id: str
    forge: str
    event: str
    headers: dict[str, str]
    body: bytes
    received_at: float


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


class Intake:
    """The intake part of :class:`mlgate.edge.db.store.Store`: raw-driver inserts of deliveries."""

    engine: sa.Engine
    dialect: str

    def _init_intake(self) -> None:
        # raw SQL of the intake insert, in the driver's positional parameter style
        self._param = "?" if self.engine.dialect.paramstyle == "qmark" else "%s"
        cols = ("id", "forge", "event", "headers", "body", "received_at", "status", "attempts", "next_attempt_at")
        self._insert_sql = (
            f"INSERT INTO {deliveries.name} ({', '.join(cols)}) VALUES ({', '.join([self._param] * len(cols))}) "
            "ON CONFLICT (id) DO NOTHING"
        )
        self._existing_cache: dict[int, str] = {}

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
