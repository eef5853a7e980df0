"""edge.db.retention on SQLite and a real PostgreSQL: finished deliveries, their effects, expired
locks, old replies/openings, finished /train records and old small state go; live work and the
audit table stay (issue 10: 200k deliveries made an 834 MB SQLite file)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from mlgate.edge.db.retention import DAY, prune
from mlgate.edge.db.store import Store
from mlgate.edge.db.tables import kv, promotion_openings, replies
from tests.bot.conftest import db_url, pg_url, postgres_server  # noqa: F401  (fixtures: SQLite and PostgreSQL)

NOW = time.time()
OLD = NOW - 40 * DAY
RECENT = NOW - 2 * DAY


def _at(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def _delivery(store: Store, did: str, received: float, status: str, finished: float | None = None) -> None:
    assert store.accept(did, "github", "issue_comment", {}, b"{}", received_at=_at(received))
    if status == "queued":
        return
    claimed = store.claim_next("w", _at(received + 1), 60)
    assert claimed is not None and claimed.id == did
    if status == "done":
        assert store.finish(did, "ok", now=_at(finished or received))
    elif status == "failed":
        assert store.fail(did, "boom", None, now=_at(finished or received))


def _set_kv(store: Store, key: str, value: object, at: float | None) -> None:
    store.kv_set(key, json.dumps(value))
    with store.engine.begin() as conn:
        conn.execute(kv.update().where(kv.c.key == key).values(updated_at=at))


@pytest.fixture
def store(db_url: str):  # noqa: F811
    s = Store(db_url)
    yield s
    s.close()


def _world(store: Store) -> None:
    """Old and recent rows of every kind."""
    _delivery(store, "old-done", OLD, "done")
    _delivery(store, "old-failed", OLD, "failed")
    _delivery(store, "new-done", RECENT, "done")
    _delivery(store, "old-queued", OLD, "queued")       # never finished: kept whatever its age
    _delivery(store, "old-running", OLD - 10, "running")  # its lease lapsed long ago: it is due, not finished
    with store.engine.begin() as conn:
        for key, did, at in (("e:old", "old-done", OLD), ("e:new", "new-done", RECENT), ("e:live", "old-queued", OLD)):
            conn.execute(sa.text("INSERT INTO mlgate_effects (key, delivery_id, created_at) VALUES (:k, :d, :t)"),
                         {"k": key, "d": did, "t": at})
        conn.execute(sa.text("INSERT INTO mlgate_locks (name, owner, expires_at) VALUES ('l:old', 'x', :t), "
                             "('l:new', 'y', :n)"), {"t": OLD, "n": NOW + 60})
        conn.execute(replies.insert(), [
            {"forge": "github", "repository": "a/b", "number": 1, "comment_id": "9", "holder": None, "held_until": None,
             "updated_at": OLD},
            {"forge": "github", "repository": "a/b", "number": 2, "comment_id": "8", "holder": None, "held_until": None,
             "updated_at": RECENT},
            {"forge": "github", "repository": "a/b", "number": 3, "comment_id": None, "holder": "w",
             "held_until": NOW + 30, "updated_at": OLD},
        ])
        conn.execute(promotion_openings.insert(), [
            {"forge": "github", "repository": "a/d", "branch": "b1", "writing": None, "opener": "old-done", "number": 4,
             "updated_at": OLD},
            {"forge": "github", "repository": "a/d", "branch": "b2", "writing": "old-queued", "opener": None,
             "number": None, "updated_at": OLD},
        ])
    _set_kv(store, "github:approval:a/b:1:77", "abc", OLD)
    _set_kv(store, "github:synchronized:a/b:1", [], OLD)
    _set_kv(store, "gitlab:approval:g/p:1:carol", "abc", RECENT)
    _set_kv(store, "comment:github:a/b:1", "9", None)  # written before updated_at existed
    _set_kv(store, "train:wf:ns:old-done", {"done": True}, OLD)
    _set_kv(store, "train:wf:ns:old-running", {"done": False}, OLD)
    _set_kv(store, "train:pr:github:a/b:1", ["train:wf:ns:old-done", "train:wf:ns:old-running"], OLD)
    _set_kv(store, "train:pr:github:a/b:2", ["train:wf:ns:old-done"], OLD)
    _set_kv(store, "train:active", ["train:wf:ns:old-running"], OLD)
    _set_kv(store, "train:submitting:old-done", "sha", OLD)
    _set_kv(store, "train:submitting:old-queued", "sha", OLD)
    _set_kv(store, "canary:audited:3", [1, 2], OLD)
    store.audit({"at": "then", "outcome": "opened"})


def _keys(store: Store) -> set[str]:
    with store.engine.connect() as conn:
        return set(conn.execute(sa.select(kv.c.key)).scalars())


def test_prune_deletes_what_is_old_and_finished_and_nothing_else(store: Store) -> None:
    _world(store)
    dry = prune(store.engine, NOW, 30, dry_run=True)
    assert (dry.deliveries, dry.effects, dry.locks, dry.replies, dry.promotion_openings) == (2, 1, 1, 1, 1)
    assert len(store.list_deliveries(limit=100)) == 5, "a dry run deletes nothing"

    report = prune(store.engine, NOW, 30)
    assert not report.dry_run and report.cutoff == pytest.approx(NOW - 30 * DAY)
    assert (report.deliveries, report.effects, report.locks, report.replies, report.promotion_openings) == (2, 1, 1, 1, 1)
    assert {d.id for d in store.list_deliveries(limit=100)} == {"new-done", "old-queued", "old-running"}
    with store.engine.connect() as conn:
        assert set(conn.execute(sa.text("SELECT key FROM mlgate_effects")).scalars()) == {"e:new", "e:live"}
        assert set(conn.execute(sa.text("SELECT name FROM mlgate_locks")).scalars()) == {"l:new"}
        assert set(conn.execute(sa.select(replies.c.number)).scalars()) == {2, 3}
        assert set(conn.execute(sa.select(promotion_openings.c.branch)).scalars()) == {"b2"}
    keys = _keys(store)
    assert keys == {"gitlab:approval:g/p:1:carol", "comment:github:a/b:1", "train:wf:ns:old-running",
                    "train:pr:github:a/b:1", "train:active", "train:submitting:old-queued", "canary:audited:3"}
    assert json.loads(store.kv_get("train:pr:github:a/b:1") or "[]") == ["train:wf:ns:old-running"]
    assert report.state == 3 and report.train_records == 1
    assert [r["outcome"] for r in store.audit_records()] == ["opened"], "audit records are kept"

    # a second pass finds nothing; the legacy row now ages from the first pass
    again = prune(store.engine, NOW, 30)
    assert again.total == 0
    assert prune(store.engine, NOW + 31 * DAY, 30).state >= 1
    assert "comment:github:a/b:1" not in _keys(store)


def test_prune_refuses_a_non_positive_retention(store: Store) -> None:
    with pytest.raises(ValueError):
        prune(store.engine, NOW, 0)


def test_prune_in_small_batches_deletes_everything(store: Store) -> None:
    for i in range(25):
        _delivery(store, f"d{i}", OLD, "done")
    report = prune(store.engine, NOW, 30, batch=4)
    assert report.deliveries == 25 and store.list_deliveries(limit=100) == []
