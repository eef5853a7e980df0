"""Issue 10, "Work that runs twice after a lease is lost" and "Locks held by a process that died",
at the store and the worker pool, on SQLite and a real PostgreSQL (``db_url``).

Every claim of a delivery gives a larger fencing token; the store's writes made by an attempt
whose token was superseded (audit records, once-only effects, locks, the outcome) are refused with
:class:`LeaseLost` and leave nothing behind; locks are leases renewed while held, owned by the
attempt, and taken over once they lapse.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from mlgate.bot.settings import BotSettings
from mlgate.bot.worker import WorkerPool
from mlgate.edge.db.fencing import AttemptFence, LeaseLost, LockFence, check, fenced
from mlgate.edge.db.store import Store
from tests.bot.conftest import wait_until

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def _accept(store: Store, did: str) -> None:
    assert store.accept(did, "github", "issue_comment", {"x-github-event": "issue_comment"}, b"{}", received_at=T0)


def _two_attempts(store: Store) -> tuple[AttemptFence, AttemptFence]:
    """The first attempt at d1 stalls past its 10 s lease; a second worker claims it at +11 s."""
    _accept(store, "d1")
    first = store.claim_next("w1", T0, 10)
    second = store.claim_next("w2", T0 + timedelta(seconds=11), 10)
    assert first is not None and second is not None and second.id == first.id == "d1"
    assert second.token == first.token + 1  # each claim a larger token
    clock = lambda: T0 + timedelta(seconds=12)  # noqa: E731
    return AttemptFence(store.engine, "d1", first.token, clock), AttemptFence(store.engine, "d1", second.token, clock)


def test_a_superseded_attempt_writes_no_audit_effect_lock_or_outcome(db_url):
    store = Store(db_url)
    stale, current = _two_attempts(store)
    with fenced(stale):
        with pytest.raises(LeaseLost):
            check()  # before an external call
        with pytest.raises(LeaseLost):
            store.audit({"outcome": "promotion PR updated"})
        with pytest.raises(LeaseLost):
            store.claim_effect("github:acme/m:comment:1:0:promote", "d1")
        with pytest.raises(LeaseLost):
            store.acquire_lock("promote:m:staging", "d1#1", 8, T0)
    assert store.audit_records() == []
    assert store.lock_owner("promote:m:staging") is None
    assert store.finish("d1", "stale outcome", worker_id="w1", token=stale.token) is False
    assert store.fail("d1", "stale error", None, worker_id="w1", token=stale.token) is False
    assert store.get("d1").status == "running"
    with fenced(current):  # the new holder goes on
        check()
        assert store.claim_effect("github:acme/m:comment:1:0:promote", "d1") is True
        store.audit({"outcome": "promotion PR opened"})
        assert store.acquire_lock("promote:m:staging", "d1#2", 8, T0 + timedelta(seconds=12))
    assert [r["outcome"] for r in store.audit_records()] == ["promotion PR opened"]
    assert store.finish("d1", "done by the second attempt", worker_id="w2", token=current.token) is True
    assert store.get("d1").outcome == "done by the second attempt"


def test_the_token_keeps_growing_across_a_manual_retry(db_url):
    store = Store(db_url)
    _accept(store, "d1")
    tokens = []
    for i in range(3):
        d = store.claim_next("w", T0 + timedelta(seconds=i), 10)
        tokens.append(d.token)
        store.fail("d1", "boom", None, worker_id="w", token=d.token)
        assert store.retry("d1", T0 + timedelta(seconds=i))  # resets attempts, never the token
    assert tokens == sorted(set(tokens)) and len(tokens) == 3


def test_an_attempt_whose_lease_lapsed_stops_before_its_next_call_even_when_nobody_claimed_it(db_url):
    store = Store(db_url)
    _accept(store, "d1")
    d = store.claim_next("w1", T0, 10)
    now = [T0 + timedelta(seconds=5)]
    fence = AttemptFence(store.engine, "d1", d.token, lambda: now[0])
    fence.check()
    now[0] = T0 + timedelta(seconds=10.5)  # stalled past the lease
    with pytest.raises(LeaseLost):
        fence.check()


def test_a_later_attempt_takes_over_the_locks_of_an_earlier_attempt_of_the_same_delivery(db_url):
    store = Store(db_url)
    assert store.acquire_lock("promote:m:prod", "d1#1", 900, T0)
    # another delivery waits for it; a later attempt of d1 (the first one stalled) takes it at once
    assert not store.acquire_lock("promote:m:prod", "d2#1", 900, T0, supersedes="d2#")
    assert store.acquire_lock("promote:m:prod", "d1#2", 900, T0, supersedes="d1#")
    assert store.lock_owner("promote:m:prod")[0] == "d1#2"
    with fenced(LockFence(store.engine, "promote:m:prod", "d1#1", lambda: T0)):
        with pytest.raises(LeaseLost):
            store.audit({"outcome": "stale"})
    assert store.audit_records() == []


def test_a_kept_lock_is_renewed_while_held_and_lapses_soon_after_its_holder_stops_renewing(db_url):
    store = Store(db_url)
    ttl = 0.6
    assert store.acquire_lock("periodic:canary-tick", "a", ttl, datetime.now(UTC), keep=True)
    time.sleep(3 * ttl)  # well past one ttl: the keeper renewed it
    assert not store.acquire_lock("periodic:canary-tick", "b", ttl, datetime.now(UTC))
    # a holder that died renews nothing: simulate by a second store (another process) holding a lock
    other = Store(db_url)
    assert other.acquire_lock("canary:m:prod", "dead", ttl, datetime.now(UTC))  # not kept
    took = wait_until(lambda: store.acquire_lock("canary:m:prod", "next", ttl, datetime.now(UTC)), timeout=5)
    assert took
    store.release_lock("periodic:canary-tick", "a")
    assert store.acquire_lock("periodic:canary-tick", "b", ttl, datetime.now(UTC))
    other.close()


def test_an_older_database_gets_the_fence_column_and_its_queued_deliveries_stay_claimable(db_url):
    old = sa.MetaData()
    sa.Table("mlgate_deliveries", old, *[
        sa.Column("id", sa.String(128), primary_key=True), sa.Column("forge", sa.String(16), nullable=False),
        sa.Column("event", sa.String(64), nullable=False), sa.Column("headers", sa.Text, nullable=False),
        sa.Column("body", sa.LargeBinary, nullable=False), sa.Column("received_at", sa.Float, nullable=False),
        sa.Column("status", sa.String(16), nullable=False), sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", sa.Float, nullable=False), sa.Column("lease_owner", sa.String(128)),
        sa.Column("lease_expires_at", sa.Float), sa.Column("outcome", sa.Text), sa.Column("error", sa.Text),
        sa.Column("finished_at", sa.Float)])
    from mlgate.edge.db.engine import make_engine

    engine, _ = make_engine(db_url, create=True)
    old.create_all(engine)
    with engine.begin() as conn:
        conn.execute(old.tables["mlgate_deliveries"].insert().values(
            id="old", forge="github", event="ping", headers="{}", body=b"{}", received_at=T0.timestamp(),
            status="queued", attempts=0, next_attempt_at=T0.timestamp()))
    engine.dispose()
    store = Store(db_url)
    Store(db_url).close()  # a second replica starting on the migrated database
    d = store.claim_next("w", T0, 10)
    assert (d.id, d.token) == ("old", 1)


def test_the_worker_records_nothing_for_an_attempt_that_lost_its_delivery(db_url):
    """The handler stalls past its lease; another replica claims and finishes the delivery; the
    stalled handler wakes up and its next write raises LeaseLost: one audit record, one outcome."""
    store = Store(db_url)
    _accept(store, "d1")
    other_done = threading.Event()

    def handler(delivery, ctx):
        if delivery.token == 1:  # the first attempt stalls; another replica takes the delivery
            def other():
                s2 = Store(db_url)
                d = wait_until(lambda: s2.claim_next("replica-2", datetime.now(UTC), 30), timeout=10)
                with fenced(AttemptFence(s2.engine, d.id, d.token)):
                    s2.audit({"outcome": "promotion PR opened", "token": d.token})
                s2.finish(d.id, "replica 2 did it", worker_id="replica-2", token=d.token)
                s2.close()
                other_done.set()

            threading.Thread(target=other).start()
            assert other_done.wait(20)
        ctx.store.audit({"outcome": "promotion PR updated", "token": delivery.token})
        return "replica 1 did it"

    settings = BotSettings(workers=1, lease_seconds=0.6, poll_interval=0.05)
    pool = WorkerPool(store, settings, handler=handler)
    # no heartbeat runs in run_once: the lease lapses while the handler stalls
    assert pool.run_once("replica-1") is True
    assert [r["outcome"] for r in store.audit_records()] == ["promotion PR opened"]
    info = store.get("d1")
    assert (info.status, info.outcome) == ("done", "replica 2 did it")
