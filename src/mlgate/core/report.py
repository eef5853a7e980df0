"""Rendering of gate reports: Markdown table, Mermaid chart, JSON-ready dict.

Pure core: GateReport in, text out. GitHub renders the Markdown (and the Mermaid
``xychart-beta`` block, see https://mermaid.js.org/syntax/xyChart.html) in job summaries
and pull-request comments; GitLab renders both in merge-request notes.
"""

from __future__ import annotations

import math

from typing import Any

from mlgate.core.gates import GateReport

#: Hidden marker that identifies mlgate's one comment per pull/merge request.
COMMENT_MARKER = "<!-- mlgate:gates -->"


def _num(x: float | None) -> str:
    if x is None:
        return "—"
    return f"{x:.4g}"


def _delta(x: float | None) -> str:
    if x is None:
        return "—"
    return f"{x:+.4g}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(report: GateReport, *, chart: bool = False) -> str:
    """The gate table as GitHub/GitLab-flavoured Markdown.

    Args:
        report: the gate report.
        chart: also append a Mermaid ``xychart-beta`` of candidate against champion.

    Returns:
        Markdown text ending with a newline: a heading with the verdict, the table
        (metric, candidate, champion, delta, threshold, result), and the notes.
    """
    verdict = "passed" if report.passed else "FAILED"
    icon = "✅" if report.passed else "❌"
    champ = f"champion v{report.champion_version}" if report.champion_version else "no champion yet"
    lines = [
        f"### {icon} mlgate gates {verdict}: {report.model} v{report.candidate_version} against {champ}",
        "",
        f"| Metric | Candidate v{report.candidate_version} | Champion{' v' + report.champion_version if report.champion_version else ''} | Delta | Threshold | Result |",
        "|---|---:|---:|---:|---|---|",
    ]
    for r in report.results:
        result = "✅ pass" if r.passed else f"❌ fail: {_cell(r.message)}"
        lines.append(
            f"| {_cell(r.metric)} | {_num(r.candidate)} | {_num(r.champion)} | {_delta(r.delta)} | {_cell(r.threshold)} | {result} |"
        )
    if not report.results:
        lines.append("| (no gates) | | | | | ✅ pass |")
    lines.append("")
    for note in report.notes:
        lines.append(f"- {note}")
    if report.candidate_run:
        lines.append(f"- Candidate run: `{report.candidate_run}`")
    text = "\n".join(lines) + "\n"
    if chart:
        text += "\n" + render_chart(report)
    return text


def render_chart(report: GateReport) -> str:
    """A Mermaid ``xychart-beta`` bar chart of candidate (and champion) per gated metric.

    Returns an empty string when no gate has a numeric candidate value.
    """
    rows = [r for r in report.results if r.candidate is not None]
    if not rows:
        return ""
    metrics = ", ".join(f'"{r.metric}"' for r in rows)
    values = [r.candidate for r in rows] + [r.champion for r in rows if r.champion is not None]
    lo, hi = min(0.0, *values), max(values)
    hi = hi if hi > lo else lo + 1
    out = [
        "```mermaid",
        "xychart-beta",
        (f'    title "{report.model}: candidate v{report.candidate_version} (first bar) vs champion v{report.champion_version}"'
         if any(r.champion is not None for r in rows) else f'    title "{report.model}: candidate v{report.candidate_version}"'),
        f"    x-axis [{metrics}]",
        f'    y-axis "value" {lo:.4g} --> {hi * 1.05:.4g}',
        "    bar [" + ", ".join(f"{r.candidate:.4g}" for r in rows) + "]",
    ]
    if any(r.champion is not None for r in rows):
        out.append("    bar [" + ", ".join(f"{(r.champion if r.champion is not None else 0):.4g}" for r in rows) + "]")
    out.append("```")
    return "\n".join(out) + "\n"


def _finite(gate: dict[str, Any]) -> dict[str, Any]:
    """Strict JSON (RFC 8259) has no NaN or Infinity: such a value becomes null, and
    ``not_finite`` says which fields held what (``{"candidate": "NaN"}``)."""
    bad = {k: str(v) for k, v in gate.items() if isinstance(v, float) and not math.isfinite(v)}
    if bad:
        gate = {k: (None if k in bad else v) for k, v in gate.items()}
        gate["not_finite"] = {k: {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}[v] for k, v in bad.items()}
    return gate


def report_dict(report: GateReport) -> dict[str, Any]:
    """A JSON-ready dict of the report (``mlgate validate --output json``).

    Strict JSON: a metric that is NaN or infinite is written as ``null`` with the reason in the
    gate's ``not_finite`` field (JSON parsers reject bare ``NaN`` tokens, RFC 8259 §6).
    """
    return {
        "model": report.model,
        "candidate_version": report.candidate_version,
        "candidate_run": report.candidate_run,
        "champion_version": report.champion_version,
        "source": report.source,
        "evaluation_data": report.evaluation_data,
        "passed": report.passed,
        "gates": [
            _finite({
                "metric": r.metric,
                "direction": r.direction,
                "candidate": r.candidate,
                "champion": r.champion,
                "delta": r.delta,
                "threshold": r.threshold,
                "passed": r.passed,
                "message": r.message,
            })
            for r in report.results
        ],
        "notes": list(report.notes),
    }


def github_annotations(report: GateReport) -> list[str]:
    """One ``::error`` workflow command per failed gate (GitHub Actions "workflow commands" doc).

    Values are escaped per the toolkit's rules (``%``, CR, LF; and ``:``/``,`` in properties).
    """

    def esc_data(s: str) -> str:
        return s.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")

    def esc_prop(s: str) -> str:
        return esc_data(s).replace(":", "%3A").replace(",", "%2C")

    return [
        f"::error title={esc_prop(f'Gate failed: {r.metric}')}::{esc_data(r.message)}" for r in report.failed
    ]
