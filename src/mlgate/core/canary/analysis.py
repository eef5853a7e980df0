"""Canary analysis: each check judged *pass*, *fail*, *inconclusive*, *wait* or *error*, and the
decision that follows one measurement (rollback, pause, hold, retry, wait, advance or promote),
after Argo Rollouts' analysis (``analysis/analysis.go`` ``assessMetricStatus``,
``metricproviders``' success/failure conditions; see :mod:`mlgate.core.canary`)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace

from mlgate.core.canary.records import CanaryRecord, CheckResult, Measurement, Observation, Verdict
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


def _bounds(v: float, p: float | None, *, mx: float | None, mn: float | None, ratio: float | None,
            label: str) -> tuple[list[str], list[str], str | None]:
    """(violated, kept, wait reason) of ``v`` against one condition's bounds (``label``: how the
    bounds are named in words, "" for the success condition, "failure " for the failure one)."""
    broken: list[str] = []
    kept: list[str] = []
    if mx is not None:
        (broken if v > mx else kept).append(f"{_n(v)} {'>' if v > mx else '≤'} {label}max {mx:g}")
    if mn is not None:
        (broken if v < mn else kept).append(f"{_n(v)} {'<' if v < mn else '≥'} {label}min {mn:g}")
    wait = None
    if ratio is not None:
        if p is None:
            wait = "the primary's query returned no data"
        elif p == 0:
            if v == 0:
                kept.append("canary and primary both 0")
            elif v > 0:
                broken.append(f"{_n(v)} while the primary is 0 (ratio unbounded > {label}max_ratio {ratio:g})")
        else:
            r = v / p
            (broken if r > ratio else kept).append(
                f"{_n(v)}/{_n(p)} = {r:.3g}× the primary {'>' if r > ratio else '≤'} {label}max_ratio {ratio:g}")
    return broken, kept, wait


def evaluate_check(check: CanaryCheck, obs: Observation, *, points: int = 1) -> CheckResult:
    """Judge one measurement of ``check`` (pure), as Argo Rollouts judges a measurement
    (``metricproviders``' ``EvaluateResult``): the failure condition first, then the success one.

    Args:
        check: the configured check.
        obs: the measured numbers (or the error).
        points: measurements of this check with data in the current step, this one included
            (the sample count when the check has ``min_samples`` but no ``samples_query``).

    Returns:
        A :class:`CheckResult`: ``error`` (could not measure), ``wait`` (no data, too few
        samples, primary without data), ``fail`` (the failure condition is met, or the success
        condition is not and there is no failure condition), ``inconclusive`` (both conditions
        set, neither met) or ``pass``; its reason names the numbers and thresholds.
    """
    name = check.name
    if obs.error is not None:
        return CheckResult(name, "error", f"{name}: could not measure: {obs.error}")
    v, p, s = obs.value, obs.primary, obs.samples
    if v is None:
        return CheckResult(name, "wait", f"{name}: the query returned no data yet", None, p, s)
    f = check.failure
    failed, _ok, fwait = (_bounds(v, p, mx=f.max, mn=f.min, ratio=f.max_ratio, label="failure ")
                          if f is not None else ([], [], None))
    broken, kept, swait = _bounds(v, p, mx=check.max, mn=check.min, ratio=check.max_ratio, label="")
    if f is None:
        failed, broken = broken, []
    ratio_wait = fwait or swait
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
            if failed:
                return CheckResult(name, "fail", f"{name}: " + "; ".join(failed), v, p, s)
            if points < check.min_samples:
                return CheckResult(name, "wait", f"{name}: {points} of {check.min_samples:g} measurements "
                                                 f"taken in this step ({'; '.join(kept) or _n(v)})", v, p, s)
    if failed:
        return CheckResult(name, "fail", f"{name}: " + "; ".join(failed), v, p, s)
    if ratio_wait is not None:
        return CheckResult(name, "wait", f"{name}: {ratio_wait}", v, p, s)
    if broken:
        return CheckResult(name, "inconclusive", f"{name}: neither success nor failure: " + "; ".join(broken)
                           + " but " + "; ".join(_ok or [f"within the failure condition"]), v, p, s)
    extra = f"; {s:g} samples" if s is not None and check.min_samples > 0 else ""
    said = kept if check.has_success else (_ok or kept)
    return CheckResult(name, "pass", f"{name}: " + ("; ".join(said) or "within the failure condition") + extra, v, p, s)


def _over(counts: Mapping[str, int], name: str, limit: int) -> bool:
    return counts.get(name, 0) > limit


def judge(canary: Canary, step: int, failures: Mapping[str, int], results: Sequence[CheckResult], *,
          inconclusive: Mapping[str, int] | None = None, errors: Mapping[str, int] | None = None,
          held_for: float | None = None) -> Verdict:
    """The next action after one measurement at step index ``step`` (pure), Argo Rollouts style.

    Args:
        canary: the canary config (steps, checks with their limits, ``analysis.max_hold``).
        step: index of the current step in ``canary.steps``.
        failures: failed measurements per check in this step before this one (all of them).
        results: this measurement's result for every check (a wait past ``max_wait`` is
            already ``inconclusive``; see :func:`measure`).
        inconclusive: inconclusive measurements per check in this step before this one.
        errors: consecutive query errors per check before this one.
        held_for: seconds the step has already been held by query errors (None: it was not).

    Returns:
        A :class:`Verdict`. Precedence (Argo Rollouts' ``assessMetricStatus``: Failed, then Error,
        then Inconclusive, then Successful): ``rollback`` (a check has more than
        ``failure_limit`` failed measurements in the step); ``pause`` (a check has more than
        ``consecutive_error_limit`` errors in a row, or errors held the step ``max_hold``
        seconds, or a check reached ``inconclusive_limit`` inconclusive measurements);
        ``hold`` (a check could not be measured: never advance blindly); ``retry`` (a failure
        or an inconclusive measurement below its limit); ``wait`` (too few samples / no data);
        ``advance`` (all passed; ``promote`` when ``step`` is already the last).
        Failure and inconclusive counts only grow within a step; error counts reset on a non-error.
    """
    checks = {c.name: c for c in canary.analysis.checks}
    fails, incs, errs = ({n: int((d or {}).get(n, 0)) for n in checks} for d in (failures, inconclusive, errors))
    by_outcome: dict[str, list[CheckResult]] = {"pass": [], "fail": [], "inconclusive": [], "wait": [], "error": []}
    for r in results:
        by_outcome[r.outcome].append(r)
        if r.outcome == "fail":
            fails[r.check] = fails.get(r.check, 0) + 1
        elif r.outcome == "inconclusive":
            incs[r.check] = incs.get(r.check, 0) + 1
        errs[r.check] = errs.get(r.check, 0) + 1 if r.outcome == "error" else 0
    missing = [name for name in checks if name not in {r.check for r in results}]
    pcts = canary.percents
    where = f"step {step + 1} of {len(pcts)} ({pcts[step]} %)"

    def verdict(action: str, reason: str, pause: str | None = None) -> Verdict:
        return Verdict(action, reason, fails, incs, errs, pause)  # type: ignore[arg-type]

    def limit(name: str, attr: str, default: int) -> int:
        return int(getattr(checks[name], attr)) if name in checks else default

    over = [r for r in by_outcome["fail"] if _over(fails, r.check, limit(r.check, "failure_limit", 0))]
    if over:
        parts = [f"{r.reason} ({fails[r.check]} failed measurements in this step; failure_limit "
                 f"{limit(r.check, 'failure_limit', 0)})" for r in over]
        return verdict("rollback", f"rolling back at {where}: " + "; ".join(parts))
    if by_outcome["error"] or missing:
        parts = [r.reason for r in by_outcome["error"]] + [f"{m}: not measured" for m in missing]
        broken = [r for r in by_outcome["error"] if _over(errs, r.check, limit(r.check, "consecutive_error_limit", 4))]
        if broken:
            lim = limit(broken[0].check, "consecutive_error_limit", 4)
            return verdict("pause", f"paused at {where}: {errs[broken[0].check]} query errors in a row "
                                    f"(consecutive_error_limit {lim}): " + "; ".join(parts), "error")
        if held_for is not None and held_for >= canary.analysis.max_hold:
            return verdict("pause", f"paused at {where}: held {held_for:.0f} s without a measurement "
                                    f"(max_hold {canary.analysis.max_hold:g} s): " + "; ".join(parts), "error")
        return verdict("hold", f"holding at {where}, nothing decided: " + "; ".join(parts))
    stuck = [r for r in by_outcome["inconclusive"] if incs[r.check] >= limit(r.check, "inconclusive_limit", 1)]
    if stuck:
        parts = [f"{r.reason} ({incs[r.check]} inconclusive; inconclusive_limit "
                 f"{limit(r.check, 'inconclusive_limit', 1)})" for r in stuck]
        return verdict("pause", f"paused at {where}, the analysis is inconclusive: " + "; ".join(parts), "inconclusive")
    if by_outcome["fail"] or by_outcome["inconclusive"]:
        parts = [f"{r.reason} (failure {fails[r.check]}; {limit(r.check, 'failure_limit', 0)} allowed)"
                 for r in by_outcome["fail"]]
        parts += [f"{r.reason} (inconclusive {incs[r.check]} of {limit(r.check, 'inconclusive_limit', 1)})"
                  for r in by_outcome["inconclusive"]]
        return verdict("retry", f"measured again in {canary.interval:g} s at {where}: " + "; ".join(parts))
    if by_outcome["wait"]:
        return verdict("wait", f"waiting at {where}: " + "; ".join(r.reason for r in by_outcome["wait"]))
    passed = "; ".join(r.reason for r in by_outcome["pass"])
    if step >= len(pcts) - 1:
        return verdict("promote", f"all checks passed at {where}: {passed}")
    return verdict("advance", f"all checks passed at {where}, advancing to {pcts[step + 1]} %: {passed}")


def measure(record: CanaryRecord, observations: Mapping[str, Observation], *, now: float) -> tuple[CanaryRecord, Verdict]:
    """Judge one measurement of every check and record it (pure).

    A check that waits (too few samples, no data) while the step has waited ``max_wait``
    seconds or more is counted as inconclusive instead: a canary never waits silently.

    Returns the record with the measurement appended, the counts updated, the wait and hold
    clocks set or cleared, and the next measurement due ``interval`` seconds from ``now``; and
    the :class:`Verdict` (which the edge carries out: advance, roll back, pause, or nothing).
    """
    cfg = record.settings.canary
    max_wait = cfg.analysis.max_wait
    waited = now - record.waiting_since if record.waiting_since is not None else 0.0
    results: list[CheckResult] = []
    waiting = False
    for check in cfg.analysis.checks:
        obs = observations.get(check.name, Observation(error="not measured"))
        earlier = sum(1 for m in record.measurements if m.step == record.step
                      for r in m.results if r.check == check.name and r.value is not None)
        r = evaluate_check(check, obs, points=earlier + (1 if obs.value is not None else 0))
        waiting = waiting or r.outcome == "wait"
        if r.outcome == "wait" and record.waiting_since is not None and waited >= max_wait:
            r = replace(r, outcome="inconclusive",
                        reason=f"{r.reason}; still waiting after {waited:.0f} s (max_wait {max_wait:g} s)")
        results.append(r)
    held_for = now - record.held_since if record.held_since is not None else None
    decision = judge(cfg, record.step, record.failures, results, inconclusive=record.inconclusive,
                     errors=record.errors, held_for=held_for)
    m = Measurement(now, record.step, record.percent, tuple(results), decision.action, decision.reason)
    waiting = waiting and decision.action in ("wait", "retry")
    held = decision.action == "hold"
    new = replace(record, measurements=record.measurements + (m,), failures=dict(decision.failures),
                  inconclusive=dict(decision.inconclusive), errors=dict(decision.errors),
                  waiting_since=(record.waiting_since if record.waiting_since is not None else now) if waiting else None,
                  held_since=(record.held_since if record.held_since is not None else now) if held else None,
                  next_due_at=now + cfg.interval, updated_at=now, reason=decision.reason)
    return new, decision
