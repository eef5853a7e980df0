"""Report rendering: Markdown table, Mermaid chart, annotations."""

from mlgate.core.config import Gate
from mlgate.core.gates import evaluate
from mlgate.core.report import github_annotations, render_chart, render_markdown, report_dict


def _report():
    gates = [Gate(metric="acc", min=0.9, max_regression="1%"), Gate(metric="loss", direction="lower", max=0.5)]
    return evaluate(gates, {"acc": 0.88, "loss": 0.2}, {"acc": 0.93, "loss": 0.25}, model="wine",
                    candidate_version="12", champion_version="9", candidate_run="r12")


def test_markdown_table_has_both_columns_and_deltas():
    md = render_markdown(_report())
    assert "### ❌ mlgate gates FAILED: wine v12 against champion v9" in md
    assert "| Metric | Candidate v12 | Champion v9 | Delta | Threshold | Result |" in md
    assert "| acc | 0.88 | 0.93 | -0.05 | >= 0.9, >= champion - 1% | ❌ fail: acc 0.88 is below the minimum 0.9 by 0.02;" in md
    assert "| loss | 0.2 | 0.25 | -0.05 | <= 0.5 | ✅ pass |" in md


def test_pipe_characters_in_messages_do_not_break_the_table():
    rep = evaluate([Gate(metric="a|b", min=1)], {}, None, model="m", candidate_version="1", candidate_run="r")
    line = [l for l in render_markdown(rep).splitlines() if l.startswith("| a")][0]
    assert line.count(" | ") == 5


def test_mermaid_chart_plots_candidate_and_champion():
    chart = render_chart(_report())
    assert chart.startswith("```mermaid\nxychart-beta\n")
    assert 'x-axis ["acc", "loss"]' in chart
    assert "bar [0.88, 0.2]" in chart and "bar [0.93, 0.25]" in chart


def test_annotations_one_per_failed_gate_escaped():
    lines = github_annotations(_report())
    assert len(lines) == 1
    assert lines[0].startswith("::error title=Gate failed%3A acc::acc 0.88 is below")


def test_report_dict_is_json_ready():
    d = report_dict(_report())
    assert d["passed"] is False and d["gates"][1]["passed"] is True and d["champion_version"] == "9"


def test_a_nan_metric_is_null_in_strict_json_with_the_reason_beside_it():
    """issue 10: ``mlgate validate --output json`` wrote bare NaN tokens, which strict parsers reject."""
    import json

    rep = evaluate([Gate(metric="acc", min=0.5)], {"acc": float("nan")}, {"acc": float("inf")}, model="m",
                   candidate_version="2", champion_version="1", candidate_run="r")
    text = json.dumps(report_dict(rep), allow_nan=False)  # raises on any NaN/Infinity left
    gate = json.loads(text)["gates"][0]
    assert gate["candidate"] is None and gate["not_finite"]["candidate"] == "NaN"
    assert gate["passed"] is False
