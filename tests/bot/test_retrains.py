"""Retrain records (issue 14) on SQLite and a real PostgreSQL (``db_url``): the same alert firing
finds its retrain (idempotent), one active retrain per model (a unique index, whatever the
workers decide), a final status ends it, a superseded attempt writes nothing (fencing), and the
alert's delivery outcome grows with where the retrain ended."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from mlgate.edge.db.fencing import AttemptFence, LeaseLost, fenced
from mlgate.edge.db.retrains import InFlight, RetrainStore, retrain_id
from mlgate.edge.db.store import Store

T0 = datetime(2026, 8, 24, 9, tzinfo=UTC)
ALERT = {"name": "ModelDriftHigh", "labels": {"mlgate_model": "fraud"}, "starts_at": "2026-08-24T09:12:37Z"}


def _start(rs: RetrainStore, key: str, model: str = "fraud", env: str = "production", delivery: str = "am-1",
           at: datetime = T0):
    return rs.start(id=retrain_id(key, model, env), model=model, environment=env, forge="github",
                    repository="acme/fraud", backend="argo", alert_key=key, alert=ALERT, delivery_id=delivery,
                    now=at.timestamp())


def test_the_same_firing_finds_its_retrain_and_a_model_has_one_active_retrain(db_url):
    rs = RetrainStore(Store(db_url).engine)
    rec, created = _start(rs, "aa8d6a9330db4ee9@2026-08-24T09:12:37Z")
    assert created and rec.status == "submitting" and rec.active and rec.alert == ALERT
    again, created = _start(rs, "aa8d6a9330db4ee9@2026-08-24T09:12:37Z", delivery="am-2")
    assert not created and again.id == rec.id and again.delivery_id == "am-1"
    with pytest.raises(InFlight):  # another alert of the same model while this one runs
        _start(rs, "bb00000000000000@2026-08-24T09:20:00Z")
    other, created = _start(rs, "cc00000000000000@2026-08-24T09:20:00Z", model="churn")
    assert created and other.active  # another model is not blocked
    rs.update(rec.id, status="submitted", run={"kind": "argo", "name": "wf-1"})
    done = rs.update(rec.id, status="gates_failed", outcome="accuracy 0.7 < 0.8", version="4")
    assert not done.active and done.finished_at is not None and done.run == {"kind": "argo", "name": "wf-1"}
    assert [r.id for r in rs.active()] == [other.id]
    nxt, created = _start(rs, "bb00000000000000@2026-08-24T11:00:00Z", at=T0 + timedelta(hours=2))
    assert created
    past = [r.past() for r in rs.of_model("fraud")]  # newest first, as the decision reads them
    assert [(p.id, p.in_flight) for p in past] == [(nxt.id, True), (rec.id, False)]
    assert past[1].started_at == T0


def test_a_resolved_alert_marks_its_active_retrain(db_url):
    rs = RetrainStore(Store(db_url).engine)
    rec, _ = _start(rs, "dd00000000000000@2026-08-24T09:00:00Z")
    assert rs.note_resolved("dd00000000000000@2026-08-24T09:00:00Z", "2026-08-24T10:00:00Z") == [rec.id]
    assert rs.get(rec.id).alert_resolved_at == "2026-08-24T10:00:00Z"
    assert rs.note_resolved("dd00000000000000@2026-08-24T09:00:00Z", "2026-08-24T10:05:00Z") == []  # once


def test_a_superseded_attempt_records_no_retrain_and_changes_none(db_url):
    store = Store(db_url)
    rs = RetrainStore(store.engine)
    assert store.accept("am-1", "alertmanager", "alert", {}, b"{}", received_at=T0)
    first = store.claim_next("w1", T0, 10)
    second = store.claim_next("w2", T0 + timedelta(seconds=11), 10)
    clock = lambda: T0 + timedelta(seconds=12)  # noqa: E731
    stale = AttemptFence(store.engine, "am-1", first.token, clock)
    with fenced(stale):
        with pytest.raises(LeaseLost):
            _start(rs, "ee00000000000000@2026-08-24T09:00:00Z")
    assert rs.active() == []
    with fenced(AttemptFence(store.engine, "am-1", second.token, clock)):
        rec, created = _start(rs, "ee00000000000000@2026-08-24T09:00:00Z")
    assert created
    with fenced(stale), pytest.raises(LeaseLost):
        rs.update(rec.id, status="failed", outcome="stale")
    assert rs.get(rec.id).status == "submitting"


def test_the_alert_delivery_outcome_says_where_the_retrain_ended(db_url):
    store = Store(db_url)
    rs = RetrainStore(store.engine)
    assert store.accept("am-9", "alertmanager", "alert", {}, b"{}", received_at=T0)
    d = store.claim_next("w1", T0, 60)
    assert store.finish("am-9", "ModelDriftHigh: retrain rt-1 started", worker_id="w1", token=d.token)
    rs.note_delivery("am-9", "retrain rt-1: version 4 failed its gates")
    assert store.get("am-9").outcome == "ModelDriftHigh: retrain rt-1 started; retrain rt-1: version 4 failed its gates"


def test_a_retrain_whose_alert_delivery_failed_for_good_is_ended_and_frees_the_model(db_url):
    from mlgate.bot.handlers.common import HandlerContext
    from mlgate.bot.handlers.retrain_follow import follow
    from mlgate.bot.settings import BotSettings

    store = Store(db_url)
    ctx = HandlerContext(settings=BotSettings(), store=store, clock=lambda: T0 + timedelta(minutes=5))
    rs = RetrainStore(store.engine)
    assert store.accept("am-1", "alertmanager", "alert", {}, b"{}", received_at=T0)
    d = store.claim_next("w1", T0, 60)
    rec, _ = _start(rs, "ff00000000000000@2026-08-24T09:00:00Z")
    assert follow(ctx, rs.get(rec.id)) == ""  # the delivery may still submit it: wait
    assert store.fail("am-1", "Argo Server unreachable", None, worker_id="w1", token=d.token)
    assert store.get("am-1").status == "failed"
    assert "never submitted" in follow(ctx, rs.get(rec.id))
    assert not rs.get(rec.id).active and rs.get(rec.id).status == "failed"
    [audit] = [a for a in store.audit_records() if a.get("retrain") == rec.id]
    assert audit["event"] == "retrain failed" and "Argo Server unreachable" in audit["outcome"]
    _start(rs, "ff00000000000001@2026-08-24T09:30:00Z")  # the model is free for the next alert
