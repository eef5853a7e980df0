"""Canary analysis: each check judged *pass*, *fail*, *wait* or *error*, and the decision that
follows one measurement (rollback, hold, retry, wait, advance or promote; see
:mod:`mlgate.core.canary`)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace

from mlgate.core.canary.records import CanaryRecord, CheckResult, Verdict, Measurement, Observation
from mlgate.core.config import Canary, CanaryCheck


def render_query(template: str, *, version: str, model: str, environment: str) -> str:
    """Fill ``{version}``, ``{model}``, ``{environment}`` in a PromQL template.

    Only these three exact placeholders are replaced: PromQL's own braces (``x{a="b"}``)
    are left alone.
    """
    return (template.replace("{version}", version).replace("{model}", model)
            .replace("{environment}", environment))


def _n(x: float | None) -> str:
    if x is None:
        return "no data"
    if math.isinf(x):
        return "∞" if x > 0 else "-∞"
    return f"{x:.4g}"


def evaluate_check(check: CanaryCheck, obs: Observation, *, points: int = 1) -> CheckResult:
    """Judge one measurement of ``check`` (pure).

    Args:
        check: the configured check.
        obs: the measured numbers (or the error).
        points: measurements of this check with data in the current step, this one included
            (the sample count when the check has ``min_samples`` but no ``samples_query``).

    Returns:
        A :class:`CheckResult`: ``error`` (could not measure), ``wait`` (no data, too few
        samples, primary without data), ``fail`` (a threshold or the ratio is violated) or
        ``pass``; its reason names the numbers and thresholds.
    """
    name = check.name
    if obs.error is not None:
        return CheckResult(name, "error", f"{name}: could not measure: {obs.error}")
    v, p, s = obs.value, obs.primary, obs.samples
    if v is None:
        return CheckResult(name, "wait", f"{name}: the query returned no data yet", None, p, s)
    # thresholds
    broken: list[str] = []
    kept: list[str] = []
    if check.max is not None:
        (broken if v > check.max else kept).append(f"{_n(v)} {'>' if v > check.max else '≤'} max {check.max:g}")
    if check.min is not None:
        (broken if v < check.min else kept).append(f"{_n(v)} {'<' if v < check.min else '≥'} min {check.min:g}")
    ratio_wait = None
    if check.max_ratio is not None:
        if p is None:
            ratio_wait = "the primary's query returned no data"
        elif p == 0:
            if v == 0:
                kept.append("canary and primary both 0")
            elif v > 0:
                broken.append(f"{_n(v)} while the primary is 0 (ratio unbounded > max_ratio {check.max_ratio:g})")
        else:
            ratio = v / p
            text = f"{_n(v)}/{_n(p)} = {ratio:.3g}× the primary"
            (broken if ratio > check.max_ratio else kept).append(
                f"{text} {'>' if ratio > check.max_ratio else '≤'} max_ratio {check.max_ratio:g}")
    # samples
    if check.min_samples > 0:
        if check.samples_query is not None:
            if s is None:
                return CheckResult(name, "wait", f"{name}: the sample query returned no data yet "
                                                 f"(needs {check.min_samples:g})", v, p, s)
            if s < check.min_samples:
                return CheckResult(name, "wait", f"{name}: {s:g} samples < min_samples {check.min_samples:g}; "
                                                 f"waiting for more traffic ({_n(v)} not judged)", v, p, s)
        else:
            s = float(points)
            if broken:
                return CheckResult(name, "fail", f"{name}: " + "; ".join(broken), v, p, s)
            if points < check.min_samples:
                return CheckResult(name, "wait", f"{name}: {points} of {check.min_samples:g} measurements "
                                                 f"taken in this step ({'; '.join(kept) or _n(v)})", v, p, s)
    if broken:
        return CheckResult(name, "fail", f"{name}: " + "; ".join(broken), v, p, s)
    if ratio_wait is not None:
        return CheckResult(name, "wait", f"{name}: {ratio_wait}", v, p, s)
    extra = f"; {s:g} samples" if s is not None and check.min_samples > 0 else ""
    return CheckResult(name, "pass", f"{name}: " + "; ".join(kept) + extra, v, p, s)


def judge(canary: Canary, step: int, failures: Mapping[str, int], results: Sequence[CheckResult]) -> Verdict:
    """The next action after one measurement at step index ``step`` (pure).

    Args:
        canary: the canary config (steps, checks with their ``failure_limit``).
        step: index of the current step in ``canary.steps``.
        failures: consecutive failed measurements per check before this one.
        results: this measurement's result for every check.

    Returns:
        A :class:`Verdict`. Order of precedence: ``rollback`` (a check reached its
        ``failure_limit``), ``hold`` (a check could not be measured: never advance blindly),
        ``retry`` (a check failed, below its limit), ``wait`` (too few samples / no data),
        ``advance`` (all passed; ``promote`` when ``step`` is already the last).
        A pass resets its check's failure count; wait and error leave it unchanged.
    """
    limits = {c.name: c.failure_limit for c in canary.analysis.checks}
    counts = {name: int(failures.get(name, 0)) for name in limits}
    by_outcome: dict[str, list[CheckResult]] = {"pass": [], "fail": [], "wait": [], "error": []}
    for r in results:
        by_outcome[r.outcome].append(r)
        if r.outcome == "fail":
            counts[r.check] = counts.get(r.check, 0) + 1
        elif r.outcome == "pass":
            counts[r.check] = 0
    missing = [name for name in limits if name not in {r.check for r in results}]
    pct = canary.steps[step]
    where = f"step {step + 1} of {len(canary.steps)} ({pct} %)"
    over = [r for r in by_outcome["fail"] if counts[r.check] >= limits.get(r.check, 1)]
    if over:
        parts = [f"{r.reason} ({counts[r.check]} of {limits.get(r.check, 1)} allowed consecutive failures)"
                 for r in over]
        return Verdict("rollback", f"rolling back at {where}: " + "; ".join(parts), counts)
    if by_outcome["error"] or missing:
        parts = [r.reason for r in by_outcome["error"]] + [f"{m}: not measured" for m in missing]
        return Verdict("hold", f"holding at {where}, nothing decided: " + "; ".join(parts), counts)
    if by_outcome["fail"]:
        parts = [f"{r.reason} (failure {counts[r.check]} of {limits.get(r.check, 1)})" for r in by_outcome["fail"]]
        return Verdict("retry", f"measured again in {canary.interval:g} s at {where}: " + "; ".join(parts), counts)
    if by_outcome["wait"]:
        return Verdict("wait", f"waiting at {where}: " + "; ".join(r.reason for r in by_outcome["wait"]), counts)
    passed = "; ".join(r.reason for r in by_outcome["pass"])
    if step >= len(canary.steps) - 1:
        return Verdict("promote", f"all checks passed at {where}: {passed}", counts)
    nxt = canary.steps[step + 1]
    return Verdict("advance", f"all checks passed at {where}, advancing to {nxt} %: {passed}", counts)


def measure(record: CanaryRecord, observations: Mapping[str, Observation], *, now: float) -> tuple[CanaryRecord, Verdict]:
    """Judge one measurement of every check and record it (pure).

    Returns the record with the measurement appended, failure counts updated and the next
    measurement due ``interval`` seconds from ``now``, and the :class:`Verdict` (which the
    edge carries out: advance, roll back, or nothing).
    """
    cfg = record.settings.canary
    results: list[CheckResult] = []
    for check in cfg.analysis.checks:
        obs = observations.get(check.name, Observation(error="not measured"))
        earlier = sum(1 for m in record.measurements if m.step == record.step
                      for r in m.results if r.check == check.name and r.value is not None)
        results.append(evaluate_check(check, obs, points=earlier + (1 if obs.value is not None else 0)))
    decision = judge(cfg, record.step, record.failures, results)
    m = Measurement(now, record.step, record.percent, tuple(results), decision.action, decision.reason)
    new = replace(record, measurements=record.measurements + (m,), failures=dict(decision.failures),
                  next_due_at=now + cfg.interval, updated_at=now, reason=decision.reason)
    return new, decision
