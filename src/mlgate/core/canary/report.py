"""The canary's report: a status line for listings and the Markdown comment the bot keeps
up to date (steps, last measurement, one chart per check, the audited history)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime

from mlgate.core.canary.analysis import _n
from mlgate.core.canary.records import CanaryRecord, Transition
from mlgate.core.config import CanaryCheck


def _iso(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _hms(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%H:%M:%SZ")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def status_line(record: CanaryRecord) -> str:
    """One line for listings: status, step, traffic and the latest reason."""
    n = len(record.steps)
    if record.status in ("observing", "advancing", "started"):
        cur = record.current
        state = ("live" if cur is not None and cur.live_at is not None else
                 "awaiting merge" if cur is not None else "being written")
        where = f"step {record.step + 1}/{n} ({record.percent} %, {state})"
    else:
        where = f"step {record.step + 1}/{n}"
    return f"{record.status}: {where}: {record.reason}"


def _threshold(check: CanaryCheck) -> str:
    parts = []
    if check.max is not None:
        parts.append(f"≤ {check.max:g}")
    if check.min is not None:
        parts.append(f"≥ {check.min:g}")
    if check.max_ratio is not None:
        parts.append(f"≤ {check.max_ratio:g}× primary")
    if check.min_samples:
        parts.append(f"{check.min_samples:g} samples")
    return ", ".join(parts)


_MAX_POINTS = 60


def _chart(check: CanaryCheck, record: CanaryRecord) -> list[str]:
    pts = [(m, r) for m in record.measurements for r in m.results if r.check == check.name and r.value is not None]
    pts = pts[-_MAX_POINTS:]
    if not pts:
        return []
    start = record.created_at

    def num(x: float) -> str:
        if math.isinf(x):
            x = 1e308 if x > 0 else -1e308
        return f"{x:.6g}"

    labels = ", ".join(f'"{m.percent}% +{int(round(m.at - start))}s"' for m, _ in pts)
    lines = [f"    line [{', '.join(num(r.value) for _, r in pts)}]"]  # type: ignore[arg-type]
    legend = ["line 1: canary"]
    if all(r.primary is not None for _, r in pts) and check.primary_query is not None:
        lines.append(f"    line [{', '.join(num(r.primary) for _, r in pts)}]")  # type: ignore[arg-type]
        legend.append(f"line {len(lines)}: primary")
    for bound, label in ((check.max, "max"), (check.min, "min")):
        if bound is not None:
            lines.append(f"    line [{', '.join(num(bound) for _ in pts)}]")
            legend.append(f"line {len(lines)}: {label} {bound:g}")
    return [
        f"**{check.name}** ({'; '.join(legend)})",
        "",
        "```mermaid",
        "xychart-beta",
        f'    title "{check.name}"',
        f"    x-axis [{labels}]",
        f'    y-axis "{check.name}"',
        *lines,
        "```",
        "",
    ]


def report_marker(record: CanaryRecord) -> str:
    """Hidden HTML comment that identifies the canary's report comment (for in-place updates)."""
    return f"<!-- mlgate-canary id={record.id} model={record.model} environment={record.environment} -->"


def render_report(record: CanaryRecord, transitions: Sequence[Transition] = ()) -> str:
    """The canary's report as one Markdown comment body (pure): status, steps, the last
    measurement of each check, one Mermaid ``xychart-beta`` chart per check over time, and
    the audited history. The bot posts it once and then edits that comment in place."""
    cfg = record.settings.canary
    out = [report_marker(record), f"### Canary: {record.model} v{record.version} → {record.environment}", ""]
    out.append(f"**{record.status.replace('_', ' ')}**: {_cell(record.reason)}")
    out.append("")
    facts = (f"Primary v{record.primary_version} (alias `{record.alias}`) · started {_iso(record.created_at)} · "
             f"measured every {cfg.interval:g} s · Prometheus {cfg.analysis.prometheus}")
    if record.next_due_at is not None and record.active:
        facts += f" · next measurement {_iso(record.next_due_at)}"
    out.append(facts)
    out += ["", "| Step | Traffic | Change | Live since | Outcome |", "|---:|---:|---|---|---|"]
    written = {s.index: s for s in record.steps_log}
    for i, pct in enumerate(cfg.steps):
        s = written.get(i)
        if s is None:
            outcome = "being written" if (i == record.step and record.status in ("started", "advancing")) else "-"
            out.append(f"| {i + 1} | {pct} % | | | {outcome} |")
            continue
        change = f"[PR]({s.url})" if s.url else f"`{s.commit[:12]}`" if s.commit else "-"
        if s.outcome:
            outcome = s.outcome
        elif s.live_at is None:
            outcome = "awaiting merge"
        else:
            outcome = "observing"
        out.append(f"| {i + 1} | {pct} % | {change} | {_hms(s.live_at)} | {outcome} |")
    if record.rollback is not None:
        rb = record.rollback
        change = f"[PR]({rb.url})" if rb.url else f"`{rb.commit[:12]}`" if rb.commit else "-"
        out.append(f"| rollback | 0 % | {change} | {_hms(rb.live_at)} | "
                   f"{'live' if rb.live_at else 'awaiting merge'} |")
    if record.measurements:
        last = record.measurements[-1]
        out += ["", f"#### Last measurement ({_iso(last.at)}, step {last.step + 1}, {last.percent} %): {last.action}", "",
                "| Check | Canary | Primary | Samples | Threshold | Failures | Result |", "|---|---:|---:|---:|---|---:|---|"]
        checks = {c.name: c for c in cfg.analysis.checks}
        for r in last.results:
            c = checks.get(r.check)
            lim = c.failure_limit if c else 1
            out.append(f"| {r.check} | {_n(r.value)} | {_n(r.primary) if r.primary is not None else '-'} | "
                       f"{f'{r.samples:g}' if r.samples is not None else '-'} | {_cell(_threshold(c)) if c else ''} | "
                       f"{record.failures.get(r.check, 0)}/{lim} | {r.outcome}: {_cell(r.reason)} |")
        charts: list[str] = []
        for c in cfg.analysis.checks:
            charts += _chart(c, record)
        if charts:
            out += ["", "#### Checks over time", "", *charts[:-1]]
    if transitions:
        out += ["", f"<details><summary>History ({len(transitions)} transitions)</summary>", "",
                "| When | Change | Step | By | Reason |", "|---|---|---:|---|---|"]
        for t in transitions:
            change = t.action if t.from_status == t.to_status else f"{t.from_status or '-'} → {t.to_status}"
            step = "-" if t.step < 0 else f"{t.step + 1} ({t.percent} %)" if t.percent is not None else str(t.step + 1)
            out.append(f"| {_iso(t.at)} | {change} | {step} | {_cell(t.actor)} | {_cell(t.reason)} |")
        out += ["", "</details>"]
    out.append("")
    return "\n".join(out)
