"""Canary storage on a real SQLite file: audited transitions, optimistic concurrency, one active canary."""

from __future__ import annotations

from dataclasses import replace

import pytest
import sqlalchemy as sa

from mlgate import canary as core
from mlgate.canary_store import CanaryStore, Conflict
from mlgate.errors import Refused
from tests.canary.test_canary_decide import fresh


@pytest.fixture
def url(tmp_path):
    return f"sqlite:///{tmp_path / 'state' / 'bot.db'}"


def new(version: str = "2") -> core.CanaryRecord:
    return replace(fresh(), id=None, revision=0, version=version)


def test_create_save_and_reopen(url):
    store = CanaryStore(url)
    rec = store.create(new(), actor="alice")
    assert rec.id is not None and rec.revision == 1
    live = store.save(core.step_written(rec, commit="c1", url=None, live=True, now=1001.0), expected=rec,
                      actor="bot", action="write")
    assert live.revision == 2
    store.close()
    again = CanaryStore(url)  # a restarted process
    got = again.get(rec.id)
    assert got == live
    assert [(t.from_status, t.to_status, t.action, t.actor) for t in again.transitions(rec.id)] == [
        (None, "started", "start", "alice"), ("started", "observing", "write", "bot")]
    assert again.find_active("fraud", "production") == live


def test_a_stale_save_is_a_conflict_and_stores_nothing(url):
    store = CanaryStore(url)
    rec = store.create(new(), actor="alice")
    first = store.save(core.step_written(rec, commit="c1", url=None, live=True, now=1001.0), expected=rec,
                       actor="worker-1", action="write")
    with pytest.raises(Conflict, match="changed while mlgate was working on it"):
        store.save(core.to_aborted(rec, now=1002.0, reason="late"), expected=rec, actor="worker-2", action="abort")
    assert store.get(rec.id) == first
    assert len(store.transitions(rec.id)) == 2


def test_one_active_canary_per_model_and_environment(url):
    store = CanaryStore(url)
    rec = store.create(new(), actor="alice")
    with pytest.raises(Refused, match="already running in production: v2 \\(started\\)"):
        store.create(new("3"), actor="bob")
    done = store.save(core.to_rolled_back(core.start_rollback(rec, now=1.0, reason="r"), now=2.0), expected=rec,
                      actor="bob", action="rolled_back")
    assert not done.active
    other = store.create(new("3"), actor="bob")
    assert [r.version for r in store.list(active_only=True)] == ["3"]
    assert [r.version for r in store.list()] == ["3", "2"]
    assert store.latest("fraud", "production").id == other.id
    # another environment or model is independent
    store.create(replace(new("4"), environment="staging"), actor="bob")
    assert len(store.list(active_only=True)) == 2


def test_find_by_pull_request_url(url):
    store = CanaryStore(url)
    rec = store.create(new(), actor="alice")
    pr = "https://github.com/o/gitops/pull/9"
    store.save(core.step_written(rec, commit=None, url=pr, live=False, now=1001.0), expected=rec, actor="bot",
               action="write")
    assert store.find_by_url(pr).id == rec.id
    assert store.find_by_url("https://github.com/o/gitops/pull/10") is None


def test_canaries_live_in_the_bots_database(url):
    from mlgate.bot.store import Store

    bot = Store(url)
    store = CanaryStore(bot.engine)
    store.create(new(), actor="alice")
    tables = set(sa.inspect(bot.engine).get_table_names())
    assert {"mlgate_canaries", "mlgate_canary_transitions", "mlgate_deliveries"} <= tables
    store.close()  # a shared engine is left to its owner
    assert CanaryStore(url).find_active("fraud", "production") is not None
