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
    f = check.failure
    if f is not None:
        fails = ([f"> {f.max:g}"] if f.max is not None else []) + ([f"< {f.min:g}"] if f.min is not None else []) + (
            [f"> {f.max_ratio:g}× primary"] if f.max_ratio is not None else [])
        parts.append("fails " + " or ".join(fails))
    if check.min_samples:
        parts.append(f"{check.min_samples:g} samples")
    return ", ".join(parts)


def _left(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 120:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s"


def time_left(record: CanaryRecord, now: float) -> list[str]:
    """What the canary waits for and how long is left (pure), in words: the next measurement,
    the ``max_wait``/``max_hold`` caps, a step PR's ``merge_timeout``, the rest of the rollout."""
    cfg = record.settings.canary
    out: list[str] = []
    if record.status == "paused":
        return [f"paused ({record.paused}): waiting for `/continue` or `/abort` on the pull request"]
    if not record.active:
        return out
    if record.next_due_at is not None and record.status == "observing":
        out.append(f"next measurement in {_left(record.next_due_at - now)}")
    if record.waiting_since is not None:
        out.append(f"waiting for samples: inconclusive in {_left(record.waiting_since + cfg.analysis.max_wait - now)} "
                   f"(max_wait {cfg.analysis.max_wait:g} s)")
    if record.held_since is not None:
        out.append(f"held by query errors: paused in {_left(record.held_since + cfg.analysis.max_hold - now)} "
                   f"(max_hold {cfg.analysis.max_hold:g} s)")
    cur = record.rollback if record.status == "rolling_back" else record.current
    if cur is not None and cur.url and cur.live_at is None and cur.written_at is not None:
        out.append(f"awaiting merge: reminder in {_left(cur.written_at + cfg.merge_timeout - now)}, "
                   f"rollback in {_left(cur.written_at + 2 * cfg.merge_timeout - now)} (merge_timeout "
                   f"{cfg.merge_timeout:g} s)")
    if record.status in ("observing", "advancing", "started"):
        rest = max(0, len(record.steps) - 1 - record.step)
        if rest:
            out.append(f"at least {_left(rest * cfg.interval)} to 100 % ({rest} more step{'s' if rest > 1 else ''} "
                       f"of at least {cfg.interval:g} s)")
    return out


def _per_step(record: CanaryRecord) -> list[str]:
    """Each step's measurements per check: the values, the threshold, the verdicts."""
    cfg = record.settings.canary
    checks = {c.name: c for c in cfg.analysis.checks}
    rows: list[str] = []
    for i, pct in enumerate(cfg.percents):
        ms = [m for m in record.measurements if m.step == i]
        for name, c in checks.items():
            rs = [r for m in ms for r in m.results if r.check == name]
            if not rs:
                continue
            values = ", ".join(_n(r.value) for r in rs[-6:])
            counts: dict[str, int] = {}
            for r in rs:
                counts[r.outcome] = counts.get(r.outcome, 0) + 1
            verdicts = ", ".join(f"{n} {o}" for o, n in counts.items())
            rows.append(f"| {i + 1} ({pct} %) | {name} | {'… ' if len(rs) > 6 else ''}{values} | "
                        f"{_cell(_threshold(c))} | {verdicts} | {ms[-1].action} |")
    if not rows:
        return []
    return ["", "#### Measurements per step", "", "| Step | Check | Values | Threshold | Verdicts | Decision |",
            "|---|---|---|---|---|---|", *rows]


def _steps_chart(record: CanaryRecord) -> list[str]:
    """A Mermaid chart per step: the canary's traffic (bars) and the main check (the first one)
    as a percentage of its threshold (line; 100 = at the threshold), its last value in the step."""
    cfg = record.settings.canary
    main = cfg.analysis.checks[0]
    bound = main.max if main.max is not None else main.failure.max if main.failure is not None else None
    pcts = cfg.percents
    if not record.steps_log:
        return []
    labels = ", ".join(f'"{i + 1}"' for i in range(len(pcts)))
    bars = ", ".join(str(p if any(s.index == i for s in record.steps_log) else 0) for i, p in enumerate(pcts))
    lines = [f"    bar [{bars}]"]
    legend = "bars: traffic %"
    if bound:
        vals = []
        for i in range(len(pcts)):
            got = [r.value for m in record.measurements if m.step == i for r in m.results
                   if r.check == main.name and r.value is not None and not math.isinf(r.value)]
            vals.append(f"{100 * got[-1] / bound:.4g}" if got else "0")
        lines.append(f"    line [{', '.join(vals)}]")
        legend += f"; line: {main.name} as % of {bound:g} (its last value in the step)"
    return ["", f"**Traffic per step** ({legend})", "", "```mermaid", "xychart-beta", '    title "traffic per step"',
            f"    x-axis [{labels}]", '    y-axis "%" 0 --> 100' if not bound else '    y-axis "%"', *lines, "```"]


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


def render_report(record: CanaryRecord, transitions: Sequence[Transition] = (), *, now: float | None = None) -> str:
    """The canary's report as one Markdown comment body (pure): status, what it waits for and
    the time left (when ``now``, UNIX seconds, is given), steps, each step's measurements with
    thresholds and verdicts, the last measurement of each check, a Mermaid ``xychart-beta``
    chart of traffic and the main check per step, one chart per check over time, and the
    audited history. The bot posts it once and then edits that comment in place."""
    cfg = record.settings.canary
    out = [report_marker(record), f"### Canary: {record.model} v{record.version} → {record.environment}", ""]
    out.append(f"**{record.status.replace('_', ' ')}**: {_cell(record.reason)}")
    out.append("")
    facts = (f"Primary v{record.primary_version} (alias `{record.alias}`) · started {_iso(record.created_at)} · "
             f"measured every {cfg.interval:g} s · Prometheus {cfg.analysis.prometheus}")
    if record.next_due_at is not None and record.active:
        facts += f" · next measurement {_iso(record.next_due_at)}"
    out.append(facts)
    if now is not None:
        left = time_left(record, now)
        if left:
            out += ["", "Time left: " + "; ".join(left)]
    out += ["", "| Step | Traffic | Change | Live since | Outcome |", "|---:|---:|---|---|---|"]
    written = {s.index: s for s in record.steps_log}
    for i, pct in enumerate(cfg.percents):
        s = written.get(i)
        if s is None:
            outcome = "being written" if (i == record.step and record.status in ("started", "advancing")) else "-"
            if cfg.confirm(i) and outcome == "-":
                outcome = "needs /continue"
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
                "| Check | Canary | Primary | Samples | Threshold | Failures (allowed) | Result |",
                "|---|---:|---:|---:|---|---:|---|"]
        checks = {c.name: c for c in cfg.analysis.checks}
        for r in last.results:
            c = checks.get(r.check)
            lim = c.failure_limit if c else 0
            out.append(f"| {r.check} | {_n(r.value)} | {_n(r.primary) if r.primary is not None else '-'} | "
                       f"{f'{r.samples:g}' if r.samples is not None else '-'} | {_cell(_threshold(c)) if c else ''} | "
                       f"{record.failures.get(r.check, 0)} ({lim}) | {r.outcome}: {_cell(r.reason)} |")
        out += _per_step(record)
        out += _steps_chart(record)
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
