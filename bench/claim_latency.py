"""Claim latency of the bot's queue with 0 and with 200,000 finished deliveries in the table.

Run: `.venv/bin/python bench/claim_latency.py [--finished N] [--claims N] [--postgres URL]` (part of
`make bench`). Issue 10: nothing deleted finished deliveries (200k made an 834 MB SQLite file);
retention (`retention_days`, `mlgate bot prune`) bounds the table, and this shows that the queue
stays fast even before it is pruned: a worker's claim (:meth:`mlgate.edge.db.store.Store.claim_next`,
the select of the oldest due delivery and its conditional update) is timed with an empty history
and with N finished rows, on SQLite (a file in a temporary folder) and, with ``--postgres URL``
(a server URL without a database, e.g. ``postgresql+psycopg://mlgate@127.0.0.1:5432``), on
PostgreSQL in a fresh database. Prints the median and p95 per case and the ratio at N to 0.
Also times one retention pass deleting the N rows.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sqlalchemy as sa  # noqa: E402

from mlgate.edge.db.retention import DAY, prune  # noqa: E402
from mlgate.edge.db.store import Store  # noqa: E402
from mlgate.edge.db.tables import deliveries  # noqa: E402

BODY = b'{"action": "created"}' + b" " * 9000  # about the size of a real issue_comment delivery


def fill_finished(store: Store, n: int, now: float) -> None:
    """``n`` finished deliveries (done, some failed), finished 40 days before ``now``."""
    rows = []
    for i in range(n):
        at = now - 40 * DAY - i
        rows.append({"id": f"f-{i}", "forge": "github", "event": "issue_comment", "headers": "{}", "body": BODY,
                     "received_at": at, "status": "failed" if i % 50 == 0 else "done", "attempts": 1,
                     "next_attempt_at": at, "outcome": "promote: opened", "finished_at": at + 1})
        if len(rows) == 5000:
            with store.engine.begin() as conn:
                conn.execute(deliveries.insert(), rows)
            rows = []
    if rows:
        with store.engine.begin() as conn:
            conn.execute(deliveries.insert(), rows)
    if store.dialect == "postgresql":
        with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("ANALYZE mlgate_deliveries")


def time_claims(store: Store, claims: int) -> list[float]:
    """Queue ``claims`` deliveries, then time each claim (seconds)."""
    now = datetime.now(UTC)
    for i in range(claims):
        store.accept(f"q-{uuid.uuid4().hex}", "github", "issue_comment", {}, BODY, received_at=now)
    out = []
    for _ in range(claims):
        t = time.perf_counter()
        got = store.claim_next("bench-worker", datetime.now(UTC), 60)
        out.append(time.perf_counter() - t)
        assert got is not None
        store.finish(got.id, "bench", now=datetime.now(UTC))
    return out


def p95(xs: list[float]) -> float:
    return sorted(xs)[max(0, int(len(xs) * 0.95) - 1)]


def case(label: str, url: str, finished: int, claims: int) -> dict[str, float]:
    store = Store(url)
    try:
        time_claims(store, 20)  # warm up: connections, statement caches
        base = time_claims(store, claims)
        t = time.perf_counter()
        fill_finished(store, finished, time.time())
        fill = time.perf_counter() - t
        loaded = time_claims(store, claims)
        t = time.perf_counter()
        report = prune(store.engine, time.time(), 30)
        pruned = time.perf_counter() - t
    finally:
        store.close()
    m0, m1 = statistics.median(base), statistics.median(loaded)
    print(f"{label}: claim with 0 finished rows: median {m0 * 1000:.2f} ms, p95 {p95(base) * 1000:.2f} ms; "
          f"with {finished:,} finished rows: median {m1 * 1000:.2f} ms, p95 {p95(loaded) * 1000:.2f} ms; "
          f"ratio {m1 / m0:.2f} (median), {p95(loaded) / p95(base):.2f} (p95)")
    print(f"{label}: inserting {finished:,} rows took {fill:.1f} s; one retention pass deleted "
          f"{report.deliveries:,} deliveries in {pruned:.1f} s")
    return {"median_ratio": m1 / m0, "p95_ratio": p95(loaded) / p95(base)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--finished", type=int, default=200_000, help="finished deliveries in the table")
    ap.add_argument("--claims", type=int, default=300, help="claims timed per case")
    ap.add_argument("--postgres", default=None, help="PostgreSQL server URL (no database); also runs PostgreSQL")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        case("SQLite", f"sqlite:///{tmp}/bot.db", args.finished, args.claims)
    if args.postgres:
        name = "bench_" + uuid.uuid4().hex[:8]
        admin = sa.create_engine(args.postgres.rstrip("/") + "/postgres", isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {name}")
        try:
            case("PostgreSQL", f"{args.postgres.rstrip('/')}/{name}", args.finished, args.claims)
        finally:
            with admin.connect() as conn:
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            admin.dispose()


if __name__ == "__main__":
    main()
