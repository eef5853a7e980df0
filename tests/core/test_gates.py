"""Gates: thresholds, directions, relative/absolute regressions, missing metrics, NaN."""

import math

import pytest
from hypothesis import given, strategies as st

from mlgate.core.config import Gate
from mlgate.core.gates import evaluate, evaluate_gate, outcome_tags


def g(**kw) -> Gate:
    return Gate(metric=kw.pop("metric", "acc"), **kw)


@pytest.mark.parametrize("gate,cand,champ,passed,needle", [
    (g(min=0.8), 0.85, None, True, "passes"),
    (g(min=0.8), 0.8, None, True, "passes"),
    (g(min=0.8), 0.79, None, False, "below the minimum 0.8 by 0.01"),
    (g(max=0.2, direction="lower"), 0.25, None, False, "above the maximum 0.2 by 0.05"),
    (g(max_regression=0.02), 0.90, 0.91, True, "within the allowance"),
    (g(max_regression=0.02), 0.88, 0.91, False, "worse than champion v3 (0.91) by 0.03"),
    (g(max_regression="2%"), 0.90, 0.91, True, "within"),  # 1.1 % worse
    (g(max_regression="1%"), 0.90, 0.91, False, "at most 0.0091 is allowed"),
    (g(max_regression=0.0), 0.95, 0.91, True, "better than"),
    # lower is better: a higher loss is a regression
    (g(metric="loss", direction="lower", max_regression=0.1), 0.55, 0.5, True, "within"),
    (g(metric="loss", direction="lower", max_regression=0.1), 0.65, 0.5, False, "worse than champion"),
    (g(metric="loss", direction="lower", max_regression="10%"), 0.45, 0.5, True, "better than"),
    (g(metric="loss", direction="lower", max_regression="10%"), 0.56, 0.5, False, "at most 0.05 is allowed"),
])
def test_gate_table(gate, cand, champ, passed, needle):
    metric = gate.metric
    champion = {metric: champ} if champ is not None else None
    r = evaluate_gate(gate, {metric: cand}, champion, candidate_run="run1", champion_version="3")
    assert r.passed is passed, r.message
    assert needle in r.message


def test_missing_metric_fails_naming_metric_and_run():
    r = evaluate_gate(g(min=0.5), {"other": 1.0}, None, candidate_run="abc123")
    assert not r.passed
    assert r.message == "metric 'acc' was not logged by run abc123"


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_candidate_fails(bad):
    r = evaluate_gate(g(max_regression=0.1), {"acc": bad}, {"acc": 0.9}, champion_version="1")
    assert not r.passed and "not a finite number" in r.message


def test_no_champion_passes_relative_gates_and_says_why():
    rep = evaluate([g(max_regression=0.01)], {"acc": 0.1}, None, model="m", candidate_version="1")
    assert rep.passed
    assert "no champion yet" in rep.results[0].message
    assert any("No version of m holds the champion alias" in n for n in rep.notes)


def test_champion_without_the_metric_skips_only_the_comparison():
    rep = evaluate([g(min=0.5, max_regression=0.01)], {"acc": 0.4}, {"other": 1.0},
                   model="m", candidate_version="2", champion_version="1")
    assert not rep.passed  # the absolute check still applies
    assert "below the minimum" in rep.results[0].message


def test_nan_champion_value_is_treated_as_absent():
    r = evaluate_gate(g(max_regression=0.01), {"acc": 0.5}, {"acc": math.nan}, champion_version="1")
    assert r.passed and "no usable 'acc'" in r.message
    assert r.champion is None and r.delta is None


def test_report_and_tags_record_each_gate():
    rep = evaluate([g(min=0.5), g(metric="loss", direction="lower", max=0.3)], {"acc": 0.7, "loss": 0.4}, {"acc": 0.6},
                   model="m", candidate_version="7", champion_version="6")
    assert not rep.passed
    assert [r.metric for r in rep.failed] == ["loss"]
    tags = outcome_tags(rep)
    assert tags["mlgate.gates"] == "failed"
    assert tags["mlgate.gate.acc"] == "passed (0.7)"
    assert tags["mlgate.gate.loss"] == "failed (0.4)"
    assert rep.results[0].delta == pytest.approx(0.1)


@given(
    champ=st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
    cand=st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
    allowance=st.floats(min_value=0, max_value=1e3, allow_nan=False),
    direction=st.sampled_from(["higher", "lower"]),
)
def test_absolute_regression_matches_definition(champ, cand, allowance, direction):
    r = evaluate_gate(g(max_regression=allowance, direction=direction), {"acc": cand}, {"acc": champ}, champion_version="1")
    regression = champ - cand if direction == "higher" else cand - champ
    if regression > allowance + 1e-9:
        assert not r.passed
    elif regression < allowance - 1e-9:
        assert r.passed
