"""The canary's pure decision: one check's verdict, the action after a measurement, the state machine."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlgate.core import canary as core
from mlgate.core.canary import CanarySettings, CheckResult, Observation, judge, evaluate_check
from mlgate.core.config import Canary, CanaryCheck
from mlgate.core.errors import Refused


def check(**kw) -> CanaryCheck:
    base = {"name": "error_rate", "query": "q"}
    base.update(kw)
    return CanaryCheck.model_validate(base)


def cfg(checks: list[dict], steps=(10, 50, 100), interval=30) -> Canary:
    return Canary.model_validate({
        "steps": list(steps), "interval": interval,
        "analysis": {"prometheus": "http://prom:9090", "checks": checks},
        "target": {"kind": "kserve"},
    })


# --------------------------------------------------------------------------- one check

CHECK_CASES = [
    # (check, observation, points, outcome, words in the reason)
    ({"max": 0.05}, Observation(0.01), 1, "pass", ["0.01 ≤ max 0.05"]),
    ({"max": 0.05}, Observation(0.2), 1, "fail", ["0.2 > max 0.05"]),
    ({"max": 0.05}, Observation(0.05), 1, "pass", ["≤ max 0.05"]),
    ({"min": 0.9}, Observation(0.8), 1, "fail", ["0.8 < min 0.9"]),
    ({"min": 0.9, "max": 1.0}, Observation(0.95), 1, "pass", ["≥ min 0.9", "≤ max 1"]),
    ({"max": 0.05}, Observation(None), 1, "wait", ["no data"]),
    ({"max": 0.05}, Observation(error="Prometheus at http://p/api/v1/query is unreachable"), 1, "error",
     ["could not measure", "unreachable"]),
    # a sample-count query below min_samples: wait, whatever the value says
    ({"max": 0.05, "min_samples": 100, "samples_query": "s"}, Observation(0.5, samples=5), 1, "wait",
     ["5 samples < min_samples 100", "not judged"]),
    ({"max": 0.05, "min_samples": 100, "samples_query": "s"}, Observation(0.01, samples=None), 1, "wait",
     ["sample query returned no data"]),
    ({"max": 0.05, "min_samples": 100, "samples_query": "s"}, Observation(0.01, samples=250), 1, "pass",
     ["250 samples"]),
    ({"max": 0.05, "min_samples": 100, "samples_query": "s"}, Observation(0.3, samples=250), 1, "fail",
     ["0.3 > max 0.05"]),
    # without a sample query, min_samples counts measurements taken in the step
    ({"max": 0.05, "min_samples": 3}, Observation(0.01), 1, "wait", ["1 of 3 measurements"]),
    ({"max": 0.05, "min_samples": 3}, Observation(0.01), 3, "pass", ["0.01 ≤ max 0.05"]),
    ({"max": 0.05, "min_samples": 3}, Observation(0.3), 1, "fail", ["0.3 > max 0.05"]),
    # comparison with the primary
    ({"primary_query": "p", "max_ratio": 1.5}, Observation(0.15, primary=0.1), 1, "pass", ["1.5× the primary", "≤ max_ratio 1.5"]),
    ({"primary_query": "p", "max_ratio": 1.5}, Observation(0.2, primary=0.1), 1, "fail", ["2× the primary > max_ratio 1.5"]),
    ({"primary_query": "p", "max_ratio": 1.5}, Observation(0.2, primary=None), 1, "wait", ["primary's query returned no data"]),
    ({"primary_query": "p", "max_ratio": 1.5}, Observation(0.0, primary=0.0), 1, "pass", ["both 0"]),
    ({"primary_query": "p", "max_ratio": 1.5}, Observation(0.01, primary=0.0), 1, "fail", ["primary is 0"]),
    ({"max": 0.05, "primary_query": "p", "max_ratio": 2}, Observation(0.09, primary=0.05), 1, "fail", ["0.09 > max 0.05"]),
]


@pytest.mark.parametrize(("kw", "obs", "points", "outcome", "words"), CHECK_CASES)
def test_one_check_is_judged_with_its_reason(kw, obs, points, outcome, words):
    r = evaluate_check(check(**kw), obs, points=points)
    assert r.outcome == outcome, r.reason
    for w in words:
        assert w in r.reason
    assert r.reason.startswith("error_rate: ")


# --------------------------------------------------------------------------- the decision

TWO = [{"name": "errors", "query": "e", "max": 0.05, "failure_limit": 2},
       {"name": "latency", "query": "l", "max": 0.5, "failure_limit": 1}]


def res(name: str, outcome: str, reason: str = "") -> CheckResult:
    return CheckResult(name, outcome, reason or f"{name}: {outcome}")  # type: ignore[arg-type]


DECISIONS = [
    # (step, failures before, results, action, failures after, words)
    (0, {}, [res("errors", "pass"), res("latency", "pass")], "advance", {"errors": 0, "latency": 0},
     ["all checks passed at step 1 of 3 (10 %)", "advancing to 50 %"]),
    (1, {}, [res("errors", "pass"), res("latency", "pass")], "advance", {"errors": 0, "latency": 0}, ["advancing to 100 %"]),
    (2, {}, [res("errors", "pass"), res("latency", "pass")], "promote", {"errors": 0, "latency": 0}, ["step 3 of 3"]),
    (0, {}, [res("errors", "fail"), res("latency", "pass")], "retry", {"errors": 1, "latency": 0}, ["failure 1 of 2"]),
    (0, {"errors": 1}, [res("errors", "fail"), res("latency", "pass")], "rollback", {"errors": 2, "latency": 0},
     ["rolling back at step 1 of 3 (10 %)", "2 of 2 allowed consecutive failures"]),
    (1, {}, [res("errors", "pass"), res("latency", "fail")], "rollback", {"errors": 0, "latency": 1},
     ["latency: fail", "1 of 1"]),
    # a pass resets the consecutive count
    (0, {"errors": 1}, [res("errors", "pass"), res("latency", "wait")], "wait", {"errors": 0, "latency": 0},
     ["waiting at step 1 of 3", "latency: wait"]),
    # Prometheus unreachable: hold, nothing decided, counts untouched
    (0, {"errors": 1}, [res("errors", "error", "errors: could not measure: unreachable"),
                        res("latency", "error", "latency: could not measure: unreachable")],
     "hold", {"errors": 1, "latency": 0}, ["holding at step 1 of 3 (10 %), nothing decided", "unreachable"]),
    # one check unmeasurable, the other fine: still hold (never advance blindly)
    (0, {}, [res("errors", "pass"), res("latency", "error")], "hold", {"errors": 0, "latency": 0}, ["holding"]),
    # failure evidence wins over an unmeasurable check
    (0, {}, [res("errors", "error"), res("latency", "fail")], "rollback", {"errors": 0, "latency": 1}, ["rolling back"]),
    (0, {}, [res("errors", "fail"), res("latency", "wait")], "retry", {"errors": 1, "latency": 0}, ["failure 1 of 2"]),
    (0, {}, [res("errors", "wait"), res("latency", "pass")], "wait", {"errors": 0, "latency": 0}, ["errors: wait"]),
    # a check with no result at all is not a pass
    (0, {}, [res("errors", "pass")], "hold", {"errors": 0, "latency": 0}, ["latency: not measured"]),
]


@pytest.mark.parametrize(("step", "before", "results", "action", "after", "words"), DECISIONS)
def test_decision_table(step, before, results, action, after, words):
    d = judge(cfg(TWO), step, before, results)
    assert d.action == action, d.reason
    assert dict(d.failures) == after
    for w in words:
        assert w in d.reason


@settings(max_examples=200, deadline=None)
@given(
    outcomes=st.lists(st.sampled_from(["pass", "fail", "wait", "error"]), min_size=2, max_size=2),
    before=st.tuples(st.integers(0, 3), st.integers(0, 3)),
    step=st.integers(0, 2),
)
def test_never_advances_unless_every_check_passed(outcomes, before, step):
    results = [res("errors", outcomes[0]), res("latency", outcomes[1])]
    d = judge(cfg(TWO), step, {"errors": before[0], "latency": before[1]}, results)
    if d.action in ("advance", "promote"):
        assert outcomes == ["pass", "pass"]
    if outcomes == ["pass", "pass"]:
        assert d.action == ("promote" if step == 2 else "advance")
    if d.action == "rollback":
        assert "fail" in outcomes
    if "error" in outcomes and d.action != "rollback":
        assert d.action == "hold"


# --------------------------------------------------------------------------- the state machine


def settings_for(c: Canary) -> CanarySettings:
    return CanarySettings(c, "/repo.git", "main", "prod/isvc.yaml", "push")


def fresh(steps=(10, 50, 100), checks=TWO, interval=30) -> core.CanaryRecord:
    values = {"model_uri": "models:/fraud/2", "storage_uri": "s3://m/2", "version": "2", "model": "fraud", "run_id": ""}
    pvalues = dict(values, model_uri="models:/fraud/1", storage_uri="s3://m/1", version="1")
    r = core.new_canary(model="fraud", environment="production", alias="champion", version="2", primary_version="1",
                        settings=settings_for(cfg(checks, steps, interval)), values=values, primary_values=pvalues,
                        now=1000.0)
    return replace(r, id=7, revision=1)


def test_a_version_that_is_already_primary_is_refused():
    with pytest.raises(Refused, match="already holds 'champion'"):
        core.new_canary(model="fraud", environment="production", alias="champion", version="1", primary_version="1",
                        settings=settings_for(cfg(TWO)), values={}, primary_values={}, now=0)


def test_push_mode_step_is_live_at_once_and_measured_after_the_interval():
    r = fresh()
    assert r.status == "started" and r.step == 0 and "writing step 1 of 3 (10 %" in r.reason
    r = core.step_written(r, commit="a" * 40, url=None, live=True, now=1001.0)
    assert r.status == "observing" and r.current.live_at == 1001.0 and r.next_due_at == 1031.0
    assert not core.measurement_due(r, 1030.9)
    assert core.measurement_due(r, 1031.0)


def test_pull_request_step_waits_for_the_merge_before_any_measurement():
    r = core.step_written(fresh(), commit=None, url="https://github.com/o/r/pull/3", live=False, now=1001.0)
    assert r.current.live_at is None and r.next_due_at is None
    assert "waiting for it to be merged" in r.reason
    assert not core.measurement_due(r, 10_000.0)
    r = core.step_live(r, now=1100.0, commit="b" * 40)
    assert r.current.commit == "b" * 40 and r.next_due_at == 1130.0
    assert core.step_live(r, now=1200.0) is r  # idempotent


def test_measure_counts_failures_then_rollback_and_audits_every_result():
    r = core.step_written(fresh(), commit="c1", url=None, live=True, now=1000.0)
    bad = {"errors": Observation(0.2), "latency": Observation(0.1)}
    r, d = core.measure(r, bad, now=1031.0)
    assert d.action == "retry" and r.failures == {"errors": 1, "latency": 0}
    assert r.next_due_at == 1061.0 and len(r.measurements) == 1
    r, d = core.measure(r, bad, now=1061.0)
    assert d.action == "rollback" and "errors: 0.2 > max 0.05" in d.reason
    r = core.start_rollback(r, now=1062.0, reason=d.reason)
    assert r.status == "rolling_back" and r.steps_log[0].outcome == "rolled back"
    assert core.needs_rollback_write(r)
    r = core.rollback_written(r, commit="c2", url=None, live=True, now=1063.0)
    r = core.to_rolled_back(r, now=1063.0)
    assert r.status == "rolled_back" and not r.active
    with pytest.raises(Refused):
        core.start_rollback(r, now=1064.0, reason="again")


def test_points_mode_counts_measurements_of_the_current_step_only():
    checks = [{"name": "errors", "query": "e", "max": 0.05, "min_samples": 2}]
    r = core.step_written(fresh(checks=checks), commit="c1", url=None, live=True, now=1000.0)
    ok = {"errors": Observation(0.01)}
    r, d = core.measure(r, ok, now=1031.0)
    assert d.action == "wait" and "1 of 2 measurements" in d.reason
    r, d = core.measure(r, ok, now=1061.0)
    assert d.action == "advance"
    r = core.start_advance(r, now=1062.0, reason=d.reason)
    assert r.status == "advancing" and r.step == 1 and r.steps_log[0].outcome == "passed" and r.failures == {}
    r = core.step_written(r, commit="c2", url=None, live=True, now=1063.0)
    r, d = core.measure(r, ok, now=1100.0)
    assert d.action == "wait"  # the new step starts counting again


def test_last_step_live_promotes_and_nothing_is_measured_there():
    r = core.step_written(fresh(steps=(100,)), commit="c1", url=None, live=True, now=1000.0)
    assert r.is_last_step and not core.measurement_due(r, 99_999.0)
    with pytest.raises(Refused):
        core.start_advance(r, now=1001.0, reason="x")
    p = core.to_promoted(r, now=1001.0)
    assert p.status == "promoted" and "v2 serves 100 % of production" in p.reason and p.steps_log[0].outcome == "promoted"


def test_promotion_needs_the_last_step_live():
    r = core.step_written(fresh(), commit="c1", url=None, live=True, now=1000.0)
    with pytest.raises(Refused, match="not live at its last step"):
        core.to_promoted(r, now=1001.0)


def test_abort_leaves_the_manifest_and_a_rollback_may_follow():
    r = core.step_written(fresh(), commit="c1", url=None, live=True, now=1000.0)
    a = core.to_aborted(r, now=1001.0, reason="aborted by alice")
    assert a.status == "aborted" and a.steps_log[0].outcome == "aborted" and a.next_due_at is None
    with pytest.raises(Refused):
        core.to_aborted(a, now=1002.0, reason="again")
    b = core.start_rollback(a, now=1003.0, reason="rolled back by alice")
    assert b.status == "rolling_back"


def test_nothing_written_means_nothing_to_roll_back():
    r = core.start_rollback(fresh(), now=1001.0, reason="r")
    assert not core.needs_rollback_write(r)
    assert core.to_rolled_back(r, now=1001.0).status == "rolled_back"


@pytest.mark.parametrize(("status", "to", "ok"), [
    ("started", "observing", True), ("observing", "advancing", True), ("advancing", "observing", True),
    ("observing", "promoted", True), ("promoted", "rolling_back", False), ("rolled_back", "observing", False),
    ("rolling_back", "observing", False), ("aborted", "rolling_back", True), ("aborted", "observing", False),
])
def test_transition_table(status, to, ok):
    r = replace(fresh(), status=status)
    if ok:
        core.check_transition(r, to)
    else:
        with pytest.raises(Refused, match=f"is {status}; it cannot become {to}"):
            core.check_transition(r, to)


def test_record_survives_a_json_round_trip():
    r = core.step_written(fresh(), commit="c1", url=None, live=True, now=1000.0)
    r, _ = core.measure(r, {"errors": Observation(0.2, samples=3), "latency": Observation(error="down")}, now=1031.0)
    back = core.record_from_json(core.record_to_json(r), id=r.id, revision=r.revision)
    assert back == r


def test_placeholders_leave_promql_braces_alone():
    q = core.render_query('sum(rate(errors{model="{model}",version="{version}",env="{environment}"}[1m]))',
                          version="7", model="fraud", environment="production")
    assert q == 'sum(rate(errors{model="fraud",version="7",env="production"}[1m]))'
