"""Workers: retry decisions (pure), backoff, give-up, leases, never crashing on a delivery."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from mlgate.bot.settings import BotSettings
from mlgate.edge.db.store import Store
from mlgate.bot.worker import BasicContext, Step, WorkerPool, backoff_seconds, next_step
from mlgate.core.errors import ConfigError, InfraError, Refused

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class Retryable(Exception):  # the shape of mlgate.bot.handlers.Retryable
    def __init__(self, msg: str, retry_after: float | None = None):
        super().__init__(msg)
        self.retry_after = retry_after


@pytest.mark.parametrize(
    "attempt, exc, expected",
    [
        (1, RuntimeError("boom"), Step("retry", 5.0)),
        (2, RuntimeError("boom"), Step("retry", 10.0)),
        (4, InfraError("GitHub 502"), Step("retry", 40.0)),
        (5, RuntimeError("boom"), Step("fail")),  # max_attempts reached
        (1, Retryable("rate limited", retry_after=61.0), Step("retry", 61.0)),
        (1, Retryable("busy"), Step("retry", 5.0)),
        (5, Retryable("rate limited", retry_after=1.0), Step("fail")),
        (1, ConfigError([]), Step("fail")),  # retrying would give the same answer
        (1, Refused("no"), Step("fail")),
    ],
)
def test_next_step(attempt, exc, expected):
    assert next_step(attempt, 5, exc, base=5.0, cap=900.0) == expected


def test_backoff_is_capped():
    assert [backoff_seconds(a, 5, 60) for a in range(1, 7)] == [5, 10, 20, 40, 60, 60]


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def _setup(tmp_path, handler, **kw):
    settings = BotSettings(workers=1, max_attempts=3, retry_base_seconds=10, lease_seconds=30, **kw)
    store = Store(f"sqlite:///{tmp_path}/bot.db")
    clock = Clock()
    pool = WorkerPool(store, settings, handler=handler, clock=clock)
    return store, pool, clock


def test_success_marks_done_with_outcome_and_context(tmp_path):
    seen = []

    def handler(delivery, ctx):
        seen.append((delivery.id, delivery.payload, delivery.attempts, type(ctx)))
        return "replied with usage"

    store, pool, _ = _setup(tmp_path, handler)
    store.accept("d1", "github", "issue_comment", {}, b'{"action": "created"}', received_at=T0)
    assert pool.run_once("w") is True
    assert pool.run_once("w") is False
    assert seen == [("d1", {"action": "created"}, 1, BasicContext)]
    info = store.get("d1")
    assert info.status == "done" and info.outcome == "replied with usage"


def test_failures_are_retried_with_backoff_then_marked_failed(tmp_path):
    calls = []

    def handler(delivery, ctx):
        calls.append(delivery.attempts)
        raise RuntimeError(f"forge said no (attempt {delivery.attempts})")

    store, pool, clock = _setup(tmp_path, handler)
    store.accept("d1", "github", "issue_comment", {}, b"{}", received_at=T0)
    assert pool.run_once("w")
    info = store.get("d1")
    assert info.status == "queued" and info.error == "RuntimeError: forge said no (attempt 1)"
    assert info.next_attempt_at == T0 + timedelta(seconds=10)
    assert pool.run_once("w") is False  # not due yet
    clock.now = T0 + timedelta(seconds=10)
    assert pool.run_once("w")
    assert store.get("d1").next_attempt_at == T0 + timedelta(seconds=30)  # 10 s later + 20 s
    clock.now = T0 + timedelta(seconds=30)
    assert pool.run_once("w")
    info = store.get("d1")
    assert info.status == "failed" and info.error == "RuntimeError: forge said no (attempt 3)"
    assert calls == [1, 2, 3]
    clock.now = T0 + timedelta(days=1)
    assert pool.run_once("w") is False  # failed stays failed


def test_retryable_honours_retry_after(tmp_path):
    def handler(delivery, ctx):
        raise Retryable("secondary rate limit", retry_after=120)

    store, pool, _ = _setup(tmp_path, handler)
    store.accept("d1", "github", "issue_comment", {}, b"{}", received_at=T0)
    pool.run_once("w")
    assert store.get("d1").next_attempt_at == T0 + timedelta(seconds=120)


def test_a_delivery_that_keeps_killing_its_worker_is_given_up(tmp_path):
    store, pool, clock = _setup(tmp_path, lambda d, c: "ok")
    store.accept("d1", "github", "issue_comment", {}, b"{}", received_at=T0)
    for i in range(3):  # three workers died holding it
        clock.now = T0 + timedelta(seconds=31 * i)
        assert store.claim_next(f"dead{i}", clock.now, 30).id == "d1"
    clock.now = T0 + timedelta(seconds=200)
    assert pool.run_once("w")
    info = store.get("d1")
    assert info.status == "failed" and "gave up after 3 attempts" in info.error


def test_worker_threads_process_and_survive_exceptions(tmp_path):
    done = threading.Event()
    processed = []

    def handler(delivery, ctx):
        if delivery.id == "bad":
            raise KeyError("payload without 'comment'")
        processed.append(delivery.id)
        if len(processed) == 2:
            done.set()
        return "ok"

    settings = BotSettings(workers=2, max_attempts=1, poll_interval=0.05)
    store = Store(f"sqlite:///{tmp_path}/bot.db")
    pool = WorkerPool(store, settings, handler=handler)
    pool.start()
    try:
        for did in ("bad", "good1", "good2"):
            store.accept(did, "github", "issue_comment", {}, b"{}")
        pool.wake()
        assert done.wait(10)
    finally:
        pool.stop(5)
    assert sorted(processed) == ["good1", "good2"]
    assert store.get("bad").status == "failed" and "KeyError" in store.get("bad").error


def test_lease_is_renewed_while_a_slow_handler_runs(tmp_path):
    release = threading.Event()
    started = threading.Event()

    def handler(delivery, ctx):
        started.set()
        release.wait(10)
        return "slow but fine"

    settings = BotSettings(workers=1, lease_seconds=0.3, poll_interval=0.05)
    store = Store(f"sqlite:///{tmp_path}/bot.db")
    pool = WorkerPool(store, settings, handler=handler)
    store.accept("d1", "github", "issue_comment", {}, b"{}")
    pool.start()
    try:
        assert started.wait(10)
        # well past the first lease: renewed, so nobody else may take it
        threading.Event().wait(0.8)
        assert store.claim_next("intruder", datetime.now(UTC), 0.3) is None
        release.set()
    finally:
        pool.stop(5)
    assert store.get("d1").status == "done"


def test_unimportable_handler_is_a_config_error(tmp_path):
    settings = BotSettings(workers=1, handler="no_such_module_xyz:handle")
    pool = WorkerPool(Store(f"sqlite:///{tmp_path}/bot.db"), settings)
    with pytest.raises(ConfigError, match="cannot import the delivery handler 'no_such_module_xyz:handle'"):
        pool.resolve()


def test_default_handler_and_context_come_from_the_domain_module(tmp_path):
    from mlgate.bot import handlers

    pool = WorkerPool(Store(f"sqlite:///{tmp_path}/bot.db"), BotSettings(workers=1))
    pool.resolve()
    assert pool._handler is handlers.handle
    assert isinstance(pool._context, handlers.HandlerContext)
