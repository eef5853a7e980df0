"""The store on SQLite and on a real PostgreSQL: queue, leases, effects, locks, audit, kv."""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from mlgate.edge.db.store import Incoming, IntakeWriter, Store
from mlgate.core.errors import InfraError

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def _accept(store: Store, did: str, body: bytes = b'{"n": 1}', at: datetime = T0) -> bool:
    return store.accept(did, "github", "issue_comment", {"x-github-event": "issue_comment"}, body, received_at=at)


def test_accept_is_unique_per_delivery_id(db_url):
    store = Store(db_url)
    assert _accept(store, "d1") is True
    assert _accept(store, "d1", b'{"n": 2}') is False  # a redelivery keeps its id
    rows = store.list_deliveries()
    assert [(r.id, r.status, r.attempts) for r in rows] == [("d1", "queued", 0)]
    assert store.load("d1").payload == {"n": 1}  # the first body stays


def test_accept_many_reports_each_item_and_duplicates_within_a_batch(db_url):
    store = Store(db_url)
    _accept(store, "old")
    items = [Incoming(i, "gitlab", "Note Hook", {}, b"{}", T0.timestamp()) for i in ("a", "old", "b", "a")]
    assert store.accept_many(items) == [True, False, True, False]
    assert {r.id for r in store.list_deliveries()} == {"old", "a", "b"}


def test_claim_finish_and_order(db_url):
    store = Store(db_url)
    _accept(store, "second", at=T0 + timedelta(seconds=1))
    _accept(store, "first", at=T0)
    d = store.claim_next("w1", T0 + timedelta(seconds=5), lease_seconds=30)
    assert d is not None and d.id == "first" and d.attempts == 1
    assert d.payload == {"n": 1} and d.headers == {"x-github-event": "issue_comment"} and d.forge == "github"
    assert d.received_at == T0
    d2 = store.claim_next("w2", T0 + timedelta(seconds=5), lease_seconds=30)
    assert d2 is not None and d2.id == "second"
    assert store.claim_next("w3", T0 + timedelta(seconds=5)) is None  # both leased
    store.finish("first", "promoted wine@7 to staging", worker_id="w1")
    info = store.get("first")
    assert info.status == "done" and info.outcome == "promoted wine@7 to staging" and info.finished_at is not None
    assert store.queue_depth() == {"queued": 0, "running": 1, "failed": 0}


def test_expired_lease_is_claimed_again_and_the_old_worker_cannot_finish(db_url):
    store = Store(db_url)
    _accept(store, "d")
    assert store.claim_next("dead-worker", T0, lease_seconds=10).id == "d"
    assert store.claim_next("w2", T0 + timedelta(seconds=9)) is None
    again = store.claim_next("w2", T0 + timedelta(seconds=11), lease_seconds=10)
    assert again is not None and again.id == "d" and again.attempts == 2
    store.finish("d", "late", worker_id="dead-worker")  # lost its lease: ignored
    assert store.get("d").status == "running"
    assert store.renew_lease("d", "dead-worker", T0 + timedelta(seconds=12), 10) is False
    assert store.renew_lease("d", "w2", T0 + timedelta(seconds=12), 10) is True
    assert store.claim_next("w3", T0 + timedelta(seconds=21)) is None  # renewed until 22
    store.finish("d", "ok", worker_id="w2")
    assert store.get("d").status == "done"


def test_fail_with_retry_then_give_up_then_retry_command(db_url):
    store = Store(db_url)
    _accept(store, "d")
    store.claim_next("w", T0)
    store.fail("d", "InfraError: GitHub answered 502", T0 + timedelta(seconds=30), worker_id="w")
    info = store.get("d")
    assert info.status == "queued" and info.error == "InfraError: GitHub answered 502"
    assert info.next_attempt_at == T0 + timedelta(seconds=30)
    assert store.claim_next("w", T0 + timedelta(seconds=29)) is None  # not due yet
    assert store.claim_next("w", T0 + timedelta(seconds=30)).attempts == 2
    store.fail("d", "RuntimeError: boom", None, worker_id="w")
    assert store.get("d").status == "failed"
    assert [r.id for r in store.list_deliveries("failed")] == ["d"]
    assert store.retry("nope", T0) is False
    assert store.retry("d", T0 + timedelta(minutes=1)) is True
    assert store.retry("d", T0 + timedelta(minutes=1)) is False  # only failed ones
    d = store.claim_next("w", T0 + timedelta(minutes=1))
    assert d.id == "d" and d.attempts == 1


def test_concurrent_claims_never_hand_out_a_delivery_twice(db_url):
    store = Store(db_url)
    store.accept_many([Incoming(f"d{i}", "github", "push", {}, b"{}", T0.timestamp()) for i in range(40)])
    claimed: list[str] = []
    lock = threading.Lock()

    def work(n: int) -> None:
        while True:
            d = store.claim_next(f"w{n}", T0 + timedelta(seconds=1), 60)
            if d is None:
                return
            with lock:
                claimed.append(d.id)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(claimed) == sorted(f"d{i}" for i in range(40))


def test_claim_effect_once_per_key_but_a_retry_of_the_same_delivery_continues(db_url):
    store = Store(db_url)
    key = "github:org/repo:comment:123:1:promote"
    assert store.claim_effect(key, "delivery-org-hook") is True
    assert store.claim_effect(key, "delivery-repo-hook") is False  # same comment, second hook
    assert store.claim_effect(key, "delivery-org-hook") is True  # the same delivery retrying
    assert store.claim_effect("other", "delivery-repo-hook") is True


def test_locks_exclusive_renewable_and_expiring(db_url):
    store = Store(db_url)
    assert store.acquire_lock("promote:wine:production", "a", 60, T0) is True
    assert store.acquire_lock("promote:wine:production", "b", 60, T0 + timedelta(seconds=1)) is False
    assert store.acquire_lock("promote:wine:staging", "b", 60, T0) is True  # another target
    assert store.acquire_lock("promote:wine:production", "a", 60, T0 + timedelta(seconds=30)) is True  # renew
    assert store.acquire_lock("promote:wine:production", "b", 60, T0 + timedelta(seconds=89)) is False
    assert store.acquire_lock("promote:wine:production", "b", 60, T0 + timedelta(seconds=91)) is True  # expired
    store.release_lock("promote:wine:production", "a")  # not the owner any more: no effect
    assert store.acquire_lock("promote:wine:production", "c", 60, T0 + timedelta(seconds=92)) is False
    store.release_lock("promote:wine:production", "b")
    assert store.acquire_lock("promote:wine:production", "c", 60, T0 + timedelta(seconds=92)) is True


def test_audit_is_append_only(db_url):
    store = Store(db_url)
    store.audit({"who": "alice", "what": "promote wine@7 to staging", "allowed": True, "why": ["2 approvals"]})
    store.audit({"who": "mallory", "what": "promote wine@9 to production", "allowed": False, "why": ["no permission"]})
    recs = store.audit_records()
    assert [(r["who"], r["allowed"]) for r in recs] == [("alice", True), ("mallory", False)]
    assert recs[0]["id"] < recs[1]["id"] and "recorded_at" in recs[0]
    with pytest.raises(sa.exc.DBAPIError, match="append-only"):
        with store.engine.begin() as conn:
            conn.exec_driver_sql("UPDATE mlgate_audit SET record = '{}'")
    with pytest.raises(sa.exc.DBAPIError, match="append-only"):
        with store.engine.begin() as conn:
            conn.exec_driver_sql("DELETE FROM mlgate_audit")
    assert len(store.audit_records()) == 2


def test_kv(db_url):
    store = Store(db_url)
    assert store.kv_get("github:org/repo:pr:5:comment") is None
    store.kv_set("github:org/repo:pr:5:comment", "111")
    store.kv_set("github:org/repo:pr:5:comment", "222")
    assert store.kv_get("github:org/repo:pr:5:comment") == "222"


def test_schema_creation_is_idempotent_and_data_survives_reopening(db_url):
    Store(db_url).accept("d", "github", "push", {}, b"{}")
    again = Store(db_url)
    assert again.get("d").status == "queued"


def test_intake_writer_group_commits_and_reports_after_commit(db_url):
    store = Store(db_url)
    results: dict[str, object] = {}
    done = threading.Event()
    woke = []

    def deliver(pairs):
        for token, res in pairs:
            # the row is committed before anyone hears about it: a new connection sees it
            if res is True:
                assert Store(db_url, create=False).get(token) is not None
            results[token] = res
        if len(results) == 5:
            done.set()

    writer = IntakeWriter(store, deliver=deliver, on_commit=lambda: woke.append(1))
    writer.start()
    writer.submit_many([(Incoming(i, "github", "push", {}, b"{}", T0.timestamp()), i) for i in ("a", "b", "c")])
    writer.submit(Incoming("a", "github", "push", {}, b"{}", T0.timestamp()), "a-again")
    writer.submit(Incoming("d", "github", "push", {}, b"{}", T0.timestamp()), "d")
    assert done.wait(10)
    writer.stop()
    assert results == {"a": True, "b": True, "c": True, "a-again": False, "d": True}
    assert woke


def test_sqlite_runs_in_wal_mode_with_synchronous_normal(tmp_path):
    store = Store(f"sqlite:///{tmp_path}/bot.db")
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
    with sqlite3.connect(tmp_path / "bot.db") as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # persistent


def test_sqlite_parent_folder_is_created(tmp_path):
    Store(f"sqlite:///{tmp_path}/a/b/bot.db")
    assert (tmp_path / "a/b/bot.db").exists()


def test_unreachable_postgres_is_an_infra_error_without_password():
    with pytest.raises(InfraError) as e:
        Store("postgresql://bot:hunter2@127.0.0.1:1/nodb")
    assert "hunter2" not in str(e.value) and "***" in str(e.value)


def test_writer_reports_database_errors_to_every_caller(tmp_path):
    store = Store(f"sqlite:///{tmp_path}/bot.db")
    with store.engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE mlgate_deliveries")
    got = []
    done = threading.Event()
    writer = IntakeWriter(store, deliver=lambda pairs: (got.extend(pairs), done.set()))
    writer.start()
    writer.submit_many([(Incoming(i, "github", "push", {}, b"{}", 0.0), i) for i in ("a", "b")])
    assert done.wait(10)
    writer.stop()
    assert [t for t, _ in got] == ["a", "b"] and all(isinstance(r, InfraError) for _, r in got)


def test_sqlite_wal_is_restarted_under_sustained_writes(tmp_path, monkeypatch):
    import mlgate.edge.db.store as store_mod

    monkeypatch.setattr(store_mod._Checkpointer, "INLINE_AFTER_FRAMES", 600)
    monkeypatch.setattr(store_mod._Checkpointer, "EVERY_ROWS", 50)
    store = Store(f"sqlite:///{tmp_path}/bot.db")
    n = 1500
    done = threading.Event()
    count = [0]

    def deliver(pairs):
        count[0] += len(pairs)
        if count[0] >= n:
            done.set()

    writer = IntakeWriter(store, deliver=deliver)
    writer.start()
    for i in range(n):  # back to back: ~3 pages each, ~4500 pages in all
        writer.submit(Incoming(f"d{i}", "github", "push", {}, b"x" * 9000, 0.0), i)
    assert done.wait(60)
    writer.stop()
    with store.engine.connect() as conn:
        busy, wal_pages, _ = conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    assert wal_pages < 2000, "the WAL kept every page: it was never restarted"
    assert len(store.list_deliveries(limit=n + 1)) == n


def test_a_form_body_stored_raw_is_read_as_its_payload_and_an_unreadable_one_as_empty(tmp_path):
    """Bodies stored by an earlier version: a form-encoded body kept as it came (its content type in
    any letter case), and one that is not JSON at all."""
    from urllib.parse import urlencode

    store = Store(f"sqlite:///{tmp_path}/bot.db")
    body = urlencode({"payload": '{"action":"created","comment":{"id":7}}'}).encode()
    store.accept("d-raw", "github", "issue_comment", {"content-type": "Application/X-WWW-Form-Urlencoded"}, body)
    store.accept("d-bad", "github", "issue_comment", {"content-type": "application/json"}, b"[[[" * 5000)
    assert store.load("d-raw").payload == {"action": "created", "comment": {"id": 7}}
    assert store.load("d-bad").payload == {}
