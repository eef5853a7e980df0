"""Alertmanager payloads, bearer check, dedupe keys, label matchers and the retrain decision (pure).

Matcher cases follow Alertmanager's pkg/labels matcher tests (anchored regexps, a missing label
matching as "", quoted values with escapes)."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mlgate.core import alerts
from mlgate.core.intake import Refusal

SPECS = Path("/work/shared/specs/alertmanager")
FIRING = json.loads((SPECS / "example-firing.json").read_text()) if SPECS.exists() else None
pytestmark = pytest.mark.skipif(FIRING is None, reason="needs the shared Alertmanager examples")


def test_the_documented_firing_example_parses():
    n = alerts.parse(FIRING)
    assert isinstance(n, alerts.Notification)
    [a] = n.firing
    assert a.name == "ModelDriftHigh" and a.fingerprint == "aa8d6a9330db4ee9"
    assert a.summary.startswith("Prediction drift is high")
    assert alerts.target(a) == alerts.Target("fraud-detector", "production")
    assert a.generator_url.startswith("http://prometheus.monitoring.svc:9090/graph?g0.expr=")


def test_resolved_example_has_no_firing_alert():
    n = alerts.parse(json.loads((SPECS / "example-resolved.json").read_text()))
    assert isinstance(n, alerts.Notification) and n.firing == () and len(n.resolved) == 1


@pytest.mark.parametrize("change, why", [
    (lambda p: p.update(version="3"), "version"),
    (lambda p: p.update(alerts="x"), "alerts must be a list"),
    (lambda p: p["alerts"][0].update(fingerprint="not hex!"), "fingerprint"),
    (lambda p: p["alerts"][0].update(labels={"a": 1}), "labels"),
    (lambda p: p["alerts"][0].update(status="pending"), "status"),
])
def test_malformed_payloads_are_refused_with_the_reason(change, why):
    p = copy.deepcopy(FIRING)
    change(p)
    got = alerts.parse(p)
    assert isinstance(got, Refusal) and got.status == 400 and why in got.message


def test_repeat_notifications_share_one_delivery_id_and_a_new_firing_does_not():
    n = alerts.parse(FIRING)
    repeat = copy.deepcopy(FIRING)
    repeat["notification_reason"] = "repeat interval elapsed"
    assert alerts.delivery_id(alerts.parse(repeat)) == alerts.delivery_id(n)
    again = copy.deepcopy(FIRING)
    again["alerts"][0]["startsAt"] = "2026-08-25T09:00:00Z"  # fired again after resolving
    assert alerts.delivery_id(alerts.parse(again)) != alerts.delivery_id(n)
    resolved = alerts.parse(json.loads((SPECS / "example-resolved.json").read_text()))
    assert alerts.delivery_id(resolved) != alerts.delivery_id(n)
    assert alerts.delivery_id(n).startswith("am-") and len(alerts.delivery_id(n)) <= 128


def test_bearer_token_is_required_and_compared():
    tok = b"s3cret-token"
    assert alerts.check_bearer(tok, {"authorization": "Bearer s3cret-token"}) is None
    assert alerts.check_bearer(tok, {"authorization": "bearer s3cret-token"}) is None
    for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": "Basic czNjcmV0LXRva2Vu"}):
        r = alerts.check_bearer(tok, headers)
        assert r is not None and r.status == 401 and "s3cret" not in r.message


@pytest.mark.parametrize("matcher, labels, ok", [
    ('severity="warning"', {"severity": "warning"}, True),
    ('severity!="warning"', {"severity": "critical"}, True),
    ('severity=~"warning|critical"', {"severity": "critical"}, True),
    ('severity=~"warn"', {"severity": "warning"}, False),  # fully anchored
    ('severity!~"info|debug"', {"severity": "warning"}, True),
    ('team=""', {}, True),  # a missing label matches ""
    ('team!=""', {}, False),
    ("team=ml", {"team": "ml"}, True),  # unquoted value
    (r'msg="a \"quoted\" word"', {"msg": 'a "quoted" word'}, True),
])
def test_matchers_follow_prometheus_semantics(matcher, labels, ok):
    assert alerts.parse_matcher(matcher).matches(labels) is ok


@pytest.mark.parametrize("bad", ["severity", "1abc=x", 'x=~"("', 'x="unterminated\\"'])
def test_bad_matchers_are_refused(bad):
    with pytest.raises(ValueError):
        alerts.parse_matcher(bad)


def test_decision_start_cooldown_in_flight_and_not_matched():
    a = alerts.parse(FIRING).firing[0]
    now = datetime(2026, 8, 24, 10, tzinfo=UTC)
    rules = [("ModelDriftHigh", ['severity=~"warning|critical"'])]
    assert alerts.decide(a, rules, 6, [], now).verdict == "start"
    assert alerts.decide(a, [("Other", [])], 6, [], now).verdict == "not_matched"
    assert alerts.decide(a, [("ModelDriftHigh", ['severity="critical"'])], 6, [], now).verdict == "not_matched"
    running = alerts.PastRetrain("rt-1", now - timedelta(hours=30), True)
    d = alerts.decide(a, rules, 6, [running], now)
    assert d.verdict == "in_flight" and d.blocking == "rt-1"
    recent = alerts.PastRetrain("rt-2", now - timedelta(hours=2), False)
    d = alerts.decide(a, rules, 6, [recent], now)
    assert d.verdict == "cooldown" and d.blocking == "rt-2" and "2026-08-24T14:00:00+00:00" in d.reason
    old = alerts.PastRetrain("rt-3", now - timedelta(hours=7), False)
    assert alerts.decide(a, rules, 6, [old], now).verdict == "start"


def test_evidence_names_the_alert_and_links_its_source():
    a = alerts.parse(FIRING).firing[0]
    md = alerts.evidence_markdown(a.evidence(), resolved_at="2026-08-24T10:47:52Z", gate_table="| g |",
                                  champion="3", champion_metrics={"accuracy": 0.91}, retrain="rt-x", run_link=None)
    assert "**ModelDriftHigh** started at 2026-08-24T09:12:37.518Z ([source](http://prometheus" in md
    assert "`mlgate_model=fraud-detector`" in md and "Prediction drift is high" in md
    assert "resolved at 2026-08-24T10:47:52Z, before the retrain finished" in md
    assert "| accuracy | 0.91 |" in md and "Champion (version 3)" in md
