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

# errors may fail twice in a step (a third failure rolls back); latency may not fail at all
TWO = [{"name": "errors", "query": "e", "max": 0.05, "failure_limit": 2},
       {"name": "latency", "query": "l", "max": 0.5}]


def res(name: str, outcome: str, reason: str = "") -> CheckResult:
    return CheckResult(name, outcome, reason or f"{name}: {outcome}")  # type: ignore[arg-type]


Z = {"errors": 0, "latency": 0}
DECISIONS = [
    # (step, failures before, results, action, failures after, words)
    (0, {}, [res("errors", "pass"), res("latency", "pass")], "advance", Z,
     ["all checks passed at step 1 of 3 (10 %)", "advancing to 50 %"]),
    (1, {}, [res("errors", "pass"), res("latency", "pass")], "advance", Z, ["advancing to 100 %"]),
    (2, {}, [res("errors", "pass"), res("latency", "pass")], "promote", Z, ["step 3 of 3"]),
    (0, {}, [res("errors", "fail"), res("latency", "pass")], "retry", {"errors": 1, "latency": 0},
     ["failure 1; 2 allowed"]),
    (0, {"errors": 1}, [res("errors", "fail"), res("latency", "pass")], "retry", {"errors": 2, "latency": 0},
     ["failure 2; 2 allowed"]),
    # Argo Rollouts' failureLimit: more failed measurements than the limit fail the analysis
    # (argoproj/argo-rollouts analysis/analysis_test.go TestAssessMetricFailureLimit... : Failed 3,
    # FailureLimit 3 -> still Running; the default 0 -> Failed at the first)
    (0, {"errors": 2}, [res("errors", "fail"), res("latency", "pass")], "rollback", {"errors": 3, "latency": 0},
     ["rolling back at step 1 of 3 (10 %)", "3 failed measurements in this step; failure_limit 2"]),
    (1, {}, [res("errors", "pass"), res("latency", "fail")], "rollback", {"errors": 0, "latency": 1},
     ["latency: fail", "failure_limit 0"]),
    # failures are counted over the whole step, not reset by a pass (issue 15: 2 of 4 failed
    # measurements must not promote a version whose limit is 1)
    (0, {"errors": 1}, [res("errors", "pass"), res("latency", "wait")], "wait", {"errors": 1, "latency": 0},
     ["waiting at step 1 of 3", "latency: wait"]),
    # Prometheus unreachable: hold, nothing decided, counts untouched
    (0, {"errors": 1}, [res("errors", "error", "errors: could not measure: unreachable"),
                        res("latency", "error", "latency: could not measure: unreachable")],
     "hold", {"errors": 1, "latency": 0}, ["holding at step 1 of 3 (10 %), nothing decided", "unreachable"]),
    # one check unmeasurable, the other fine: still hold (never advance blindly)
    (0, {}, [res("errors", "pass"), res("latency", "error")], "hold", Z, ["holding"]),
    # failure evidence wins over an unmeasurable check (Argo: Failed before Error)
    (0, {}, [res("errors", "error"), res("latency", "fail")], "rollback", {"errors": 0, "latency": 1}, ["rolling back"]),
    (0, {}, [res("errors", "fail"), res("latency", "wait")], "retry", {"errors": 1, "latency": 0}, ["failure 1"]),
    (0, {}, [res("errors", "wait"), res("latency", "pass")], "wait", Z, ["errors: wait"]),
    # inconclusive: inconclusive_limit (default 1) pauses at once, asking a person
    (0, {}, [res("errors", "inconclusive"), res("latency", "pass")], "pause", Z,
     ["paused at step 1 of 3 (10 %), the analysis is inconclusive", "1 inconclusive; inconclusive_limit 1"]),
    # a failure past its limit wins over an inconclusive one (Argo: Failed before Inconclusive)
    (0, {}, [res("errors", "inconclusive"), res("latency", "fail")], "rollback", {"errors": 0, "latency": 1},
     ["rolling back"]),
    # a check with no result at all is not a pass
    (0, {}, [res("errors", "pass")], "hold", Z, ["latency: not measured"]),
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
    outcomes=st.lists(st.sampled_from(["pass", "fail", "inconclusive", "wait", "error"]), min_size=2, max_size=2),
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
        assert d.action in ("hold", "pause")
    if "inconclusive" in outcomes and "fail" not in outcomes and "error" not in outcomes:
        assert d.action == "pause"


# Argo Rollouts analysis/analysis_test.go TestAssessMetricStatusInconclusiveLimit: 3 inconclusive
# with inconclusiveLimit 2 -> Inconclusive, with 3 -> not; mlgate pauses when the count reaches it.
@pytest.mark.parametrize(("limit", "before", "action"), [(1, 0, "pause"), (3, 1, "retry"), (3, 2, "pause")])
def test_inconclusive_limit_pauses_when_reached(limit, before, action):
    c = cfg([{"name": "errors", "query": "e", "max": 0.01, "failure": {"max": 0.05}, "inconclusive_limit": limit}])
    d = judge(c, 0, {}, [res("errors", "inconclusive")], inconclusive={"errors": before})
    assert d.action == action and d.inconclusive == {"errors": before + 1}
    assert (d.pause == "inconclusive") == (action == "pause")


# Argo Rollouts' consecutiveErrorLimit (default 4): the 5th query error in a row errors the metric;
# any measurement that is not an error resets the count (analysis_test.go TestConsecutiveErrors...).
def test_consecutive_errors_past_the_limit_pause_and_a_measurement_resets_them():
    c = cfg([{"name": "errors", "query": "e", "max": 0.05}])
    err = [res("errors", "error", "errors: could not measure: connection refused")]
    d = judge(c, 0, {}, err, errors={"errors": 3})
    assert d.action == "hold" and d.errors == {"errors": 4}
    d = judge(c, 0, {}, err, errors={"errors": 4})
    assert d.action == "pause" and d.pause == "error"
    assert "5 query errors in a row (consecutive_error_limit 4)" in d.reason and "connection refused" in d.reason
    assert judge(c, 0, {}, [res("errors", "wait")], errors={"errors": 4}).errors == {"errors": 0}


def test_max_hold_pauses_a_canary_held_by_errors():
    c = cfg([{"name": "errors", "query": "e", "max": 0.05, "consecutive_error_limit": 1000}])
    c = c.model_copy(update={"analysis": c.analysis.model_copy(update={"max_hold": 300})})
    err = [res("errors", "error", "errors: could not measure: timed out")]
    assert judge(c, 0, {}, err, held_for=299).action == "hold"
    d = judge(c, 0, {}, err, held_for=300)
    assert d.action == "pause" and "held 300 s without a measurement (max_hold 300 s)" in d.reason


# Argo Rollouts metricproviders EvaluateResult: failure condition first; both set and neither met is
# Inconclusive; success only and not met is Failed; failure only and not met is Successful.
CONDITIONS = [
    ({"max": 0.01, "failure": {"max": 0.05}}, 0.005, "pass"),
    ({"max": 0.01, "failure": {"max": 0.05}}, 0.03, "inconclusive"),
    ({"max": 0.01, "failure": {"max": 0.05}}, 0.08, "fail"),
    ({"max": 0.01}, 0.03, "fail"),
    ({"failure": {"max": 0.05}}, 0.03, "pass"),
    ({"failure": {"max": 0.05}}, 0.06, "fail"),
    ({"min": 0.99, "failure": {"min": 0.9}}, 0.95, "inconclusive"),
    ({"primary_query": "p", "max_ratio": 1.1, "failure": {"max_ratio": 2}}, 0.15, "inconclusive"),
    ({"primary_query": "p", "max_ratio": 1.1, "failure": {"max_ratio": 2}}, 0.25, "fail"),
]


@pytest.mark.parametrize(("kw", "value", "outcome"), CONDITIONS)
def test_success_and_failure_conditions(kw, value, outcome):
    r = evaluate_check(check(**kw), Observation(value, primary=0.1))
    assert r.outcome == outcome, r.reason
    if outcome == "inconclusive":
        assert "neither success nor failure" in r.reason


def test_a_failure_condition_needs_a_primary_query_for_a_ratio():
    with pytest.raises(ValueError, match="max_ratio and primary_query go together"):
        check(failure={"max_ratio": 2})


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
    r, d = core.measure(r, {"errors": Observation(0.01), "latency": Observation(0.1)}, now=1061.0)
    assert d.action == "advance"  # the edge would advance; here the step is measured on
    r, d = core.measure(r, bad, now=1091.0)
    assert d.action == "retry" and r.failures == {"errors": 2, "latency": 0}  # a pass in between resets nothing
    r, d = core.measure(r, bad, now=1121.0)
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
    r = replace(r, paused="error", reminded_at=1.0, waiting_since=2.0)
    back = core.record_from_json(core.record_to_json(r), id=r.id, revision=r.revision)
    assert back == r


def test_too_few_samples_past_max_wait_is_inconclusive_and_pauses():
    checks = [{"name": "errors", "query": "e", "max": 0.05, "min_samples": 100, "samples_query": "s"}]
    r = core.step_written(fresh(checks=checks), commit="c1", url=None, live=True, now=1000.0)
    r = replace(r, settings=replace(r.settings, canary=r.settings.canary.model_copy(update={
        "analysis": r.settings.canary.analysis.model_copy(update={"max_wait": 60})})))
    few = {"errors": Observation(0.01, samples=5)}
    r, d = core.measure(r, few, now=1030.0)
    assert d.action == "wait" and r.waiting_since == 1030.0
    r, d = core.measure(r, few, now=1060.0)
    assert d.action == "wait" and r.waiting_since == 1030.0
    r, d = core.measure(r, few, now=1090.0)
    assert d.action == "pause" and d.pause == "inconclusive"
    assert "still waiting after 60 s (max_wait 60 s)" in d.reason and "5 samples < min_samples 100" in d.reason
    p = core.to_paused(r, now=1090.0, kind=d.pause, reason=d.reason)
    assert p.status == "paused" and p.active and p.next_due_at is None and not core.measurement_due(p, 9e9)


def test_continue_advances_a_paused_canary_and_a_confirm_step_pauses_before_it_is_written():
    steps = (10, {"percent": 50, "confirm": True}, 100)
    r = core.step_written(fresh(steps=steps), commit="c1", url=None, live=True, now=1000.0)
    assert r.steps == [10, 50, 100]
    ok = {"errors": Observation(0.01), "latency": Observation(0.1)}
    r, d = core.measure(r, ok, now=1031.0)
    assert d.action == "advance"
    p = core.start_advance(r, now=1031.0, reason=d.reason)
    assert p.status == "paused" and p.paused == "confirm" and p.step == 0
    assert "step 2 (50 %) needs a person: reply /continue" in p.reason
    with pytest.raises(Refused, match="not paused"):
        core.resume(r, now=1032.0, actor="carol")
    a = core.resume(p, now=1040.0, actor="carol")
    assert a.status == "advancing" and a.step == 1 and a.paused is None and "continued by carol" in a.reason
    a = core.step_written(a, commit="c2", url=None, live=True, now=1041.0)
    a, d = core.measure(a, ok, now=1080.0)
    assert core.start_advance(a, now=1080.0, reason=d.reason).status == "advancing"  # 100 % needs nobody


def test_a_confirm_first_step_is_written_on_continue():
    r = fresh(steps=({"percent": 10, "confirm": True}, 100))
    p = core.to_paused(r, now=1000.0, kind="confirm", reason="step 1 needs a person")
    a = core.resume(p, now=1001.0, actor="carol")
    assert a.status == "advancing" and a.step == 0 and "writing step 1 (10 %)" in a.reason


def test_a_step_pr_waiting_past_merge_timeout_is_reminded_then_rolled_back():
    r = fresh()
    r = replace(r, settings=replace(r.settings, canary=r.settings.canary.model_copy(update={"merge_timeout": 100})))
    r = core.step_written(r, commit=None, url="https://github.com/o/d/pull/4", live=False, now=1000.0)
    assert core.merge_overdue(r, 1099.0) is None
    assert core.merge_overdue(r, 1100.0) == "remind"
    r = replace(r, reminded_at=1100.0)
    assert core.merge_overdue(r, 1150.0) is None
    assert core.merge_overdue(r, 1200.0) == "rollback"
    live = core.step_live(r, now=1150.0)
    assert core.merge_overdue(live, 9e9) is None
    push = core.step_written(fresh(), commit="c1", url=None, live=True, now=1000.0)
    assert core.merge_overdue(push, 9e9) is None


def test_report_shows_each_steps_measurements_the_time_left_and_a_traffic_chart():
    checks = [{"name": "errors", "query": "e", "max": 0.01, "failure": {"max": 0.05}, "inconclusive_limit": 3}]
    r = core.step_written(fresh(checks=checks), commit="c1", url=None, live=True, now=1000.0)
    r, _ = core.measure(r, {"errors": Observation(0.005)}, now=1030.0)
    r = core.start_advance(r, now=1030.0, reason="ok")
    r = core.step_written(r, commit="c2", url=None, live=True, now=1031.0)
    r, d = core.measure(r, {"errors": Observation(0.02)}, now=1061.0)
    assert d.action == "retry"
    text = core.render_report(r, now=1070.0)
    assert "| 1 (10 %) | errors | 0.005 | ≤ 0.01, fails > 0.05 | 1 pass | advance |" in text
    assert "| 2 (50 %) | errors | 0.02 | ≤ 0.01, fails > 0.05 | 1 inconclusive | retry |" in text
    assert "Time left: next measurement in 21 s" in text and "at least 30 s to 100 % (1 more step" in text
    assert "bar [10, 50, 0]" in text and "line [50, 200, 0]" in text  # % of the threshold 0.01


def test_placeholders_leave_promql_braces_alone():
    q = core.render_query('sum(rate(errors{model="{model}",version="{version}",env="{environment}"}[1m]))',
                          version="7", model="fraud", environment="production")
    assert q == 'sum(rate(errors{model="fraud",version="7",env="production"}[1m]))'
