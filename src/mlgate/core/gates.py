"""Metric gates: candidate (and champion) metrics in, a :class:`GateReport` out.

Pure core: no MLflow, no I/O. The edge (``mlgate validate``) fetches the metrics
(logged by the runs, or computed afresh by ``mlflow.models.evaluate``) and hands them here.

Rules (documented in README.md, "Gates"):

- ``min`` / ``max``: absolute thresholds on the candidate's value (inclusive).
- ``max_regression``: compares with the version that holds the ``champion`` alias. The
  regression is how far the candidate is worse than the champion in the gate's direction;
  it must not exceed the allowance (an absolute amount, or a fraction 0-1 of ``|champion|``).
- A metric the candidate's run did not log fails its gate, naming the metric and the run.
- A NaN or infinite candidate value fails its gate.
- No champion yet (first model): relative checks pass and the report says why.
- The champion lacks the metric: the relative check is not made (it passes) and the
  report says so; absolute checks still apply.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, Mapping, Sequence

from mlgate.core.config import Gate

#: Tolerance for float comparisons at the threshold (metrics are often computed in float32).
EPSILON = 1e-12


@dataclass(frozen=True)
class GateResult:
    """The outcome of one gate.

    ``candidate``/``champion`` are the metric values compared (None when absent);
    ``delta`` is ``candidate - champion`` (None without both); ``threshold`` is a human
    rendering of the rule (e.g. ``>= 0.85``, ``>= champion - 2%``); ``message`` says why it
    passed or failed in a sentence a reviewer can act on.
    """

    metric: str
    direction: Literal["higher", "lower"]
    candidate: float | None
    champion: float | None
    delta: float | None
    threshold: str
    passed: bool
    message: str


@dataclass(frozen=True)
class GateReport:
    """Every gate's result for one candidate model version.

    ``source`` says where the numbers came from: ``"logged"`` (metrics the runs logged) or
    ``"evaluation"`` (both versions scored afresh on the same dataset, ``evaluation_data``).
    """

    model: str
    candidate_version: str
    candidate_run: str | None
    champion_version: str | None
    source: Literal["logged", "evaluation"]
    results: tuple[GateResult, ...]
    notes: tuple[str, ...] = field(default_factory=tuple)
    evaluation_data: str | None = None

    @property
    def passed(self) -> bool:
        """True when every gate passed (an empty gate list passes)."""
        return all(r.passed for r in self.results)

    @property
    def failed(self) -> tuple[GateResult, ...]:
        return tuple(r for r in self.results if not r.passed)


def _fmt(x: float) -> str:
    return f"{x:.6g}"


def _is_number(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _threshold(gate: Gate) -> str:
    """The gate's thresholds in words, e.g. ``>= 0.85, >= champion - 2%``."""
    parts: list[str] = []
    if gate.min is not None:
        parts.append(f">= {_fmt(gate.min)}")
    if gate.max is not None:
        parts.append(f"<= {_fmt(gate.max)}")
    allowance = gate.regression_allowance()
    sign = ">=" if gate.direction == "higher" else "<="
    pm = "-" if gate.direction == "higher" else "+"
    if allowance is not None:
        kind, amount = allowance
        amount_txt = f"{_fmt(amount * 100)}%" if kind == "relative" else _fmt(amount)
        parts.append(f"{sign} champion {pm} {amount_txt}")
    return ", ".join(parts)


def _champion_check(
    gate: Gate,
    value: float,
    champion: Mapping[str, float] | None,
    champ_value: float | None,
    champion_version: str | None,
) -> tuple[str | None, str | None]:
    """(failure, note) of the "no worse than the champion" comparison of a gate that has one."""
    name = gate.metric
    allowance = gate.regression_allowance()
    assert allowance is not None
    if champion is None:
        return None, "no champion yet, so the comparison passes for this first model"
    if champ_value is None:
        return None, f"champion v{champion_version} has no usable '{name}', so the comparison was not made"
    kind, amount = allowance
    allowed = amount * abs(champ_value) if kind == "relative" else amount
    regression = (champ_value - value) if gate.direction == "higher" else (value - champ_value)
    if regression > allowed + EPSILON:
        return (
            f"{name} {_fmt(value)} is worse than champion v{champion_version} ({_fmt(champ_value)}) "
            f"by {_fmt(regression)}; at most {_fmt(allowed)} is allowed"
        ), None
    better = "better than" if regression < 0 else ("equal to" if regression == 0 else "within the allowance of")
    return None, f"{better} champion v{champion_version} ({_fmt(champ_value)})"


def evaluate_gate(
    gate: Gate,
    candidate: Mapping[str, float],
    champion: Mapping[str, float] | None,
    *,
    candidate_run: str | None = None,
    champion_version: str | None = None,
    source: str = "logged",
    available: Sequence[str] | None = None,
) -> GateResult:
    """Evaluate one gate.

    Args:
        gate: the gate from ``.mlgate.yml``.
        candidate: the candidate's metrics (name → value).
        champion: the champion's metrics, or None when there is no champion yet.
        candidate_run: the candidate's run id, named in the message of a missing metric.
        champion_version: the champion's version number, named in messages.

    Returns:
        A :class:`GateResult`; never raises for bad metric values (they fail the gate).
    """
    name = gate.metric
    threshold = _threshold(gate)

    champ_value = champion.get(name) if champion is not None else None
    if champ_value is not None and (not _is_number(champ_value) or not math.isfinite(champ_value)):
        champ_value = None

    def result(passed: bool, message: str, cand: float | None) -> GateResult:
        delta = cand - champ_value if (cand is not None and champ_value is not None) else None
        return GateResult(name, gate.direction, cand, champ_value, delta, threshold, passed, message)

    if name not in candidate:
        if source == "evaluation":
            msg = f"metric '{name}' was not computed by mlflow.models.evaluate"
        else:
            msg = f"metric '{name}' was not logged" + (f" by run {candidate_run}" if candidate_run else "")
        if available:
            msg += f" (available: {', '.join(sorted(available))})"
        return result(False, msg, None)
    value = candidate[name]
    if not _is_number(value):
        return result(False, f"metric '{name}' is not a number ({value!r})", None)
    value = float(value)
    if not math.isfinite(value):
        return result(False, f"metric '{name}' is {value} (not a finite number)", value)

    failures: list[str] = []
    if gate.min is not None and value < gate.min - EPSILON:
        failures.append(f"{name} {_fmt(value)} is below the minimum {_fmt(gate.min)} by {_fmt(gate.min - value)}")
    if gate.max is not None and value > gate.max + EPSILON:
        failures.append(f"{name} {_fmt(value)} is above the maximum {_fmt(gate.max)} by {_fmt(value - gate.max)}")

    notes: list[str] = []
    if gate.regression_allowance() is not None:
        failure, note = _champion_check(gate, value, champion, champ_value, champion_version)
        failures += [failure] if failure is not None else []
        notes += [note] if note is not None else []

    if failures:
        return result(False, "; ".join(failures), value)
    msg = f"{name} {_fmt(value)} passes"
    if notes:
        msg += ": " + "; ".join(notes)
    return result(True, msg, value)


def evaluate(
    gates: Sequence[Gate],
    candidate: Mapping[str, float],
    champion: Mapping[str, float] | None,
    *,
    model: str,
    candidate_version: str,
    candidate_run: str | None = None,
    champion_version: str | None = None,
    source: Literal["logged", "evaluation"] = "logged",
    evaluation_data: str | None = None,
    candidate_is_champion: bool = False,
    available: Sequence[str] | None = None,
) -> GateReport:
    """Evaluate every gate for a candidate model version.

    Args:
        gates: gates from ``.mlgate.yml`` (``validate.gates``).
        candidate: candidate metrics (name → value).
        champion: champion metrics, or None when no version holds the ``champion`` alias.
        model: registered model name. candidate_version / champion_version: version numbers.
        candidate_run: the candidate's run id. source: where the numbers came from.
        evaluation_data: the dataset both were scored on, when ``source == "evaluation"``.
        candidate_is_champion: the candidate holds the champion alias itself (no comparison).
        available: metric names the candidate has, listed when a gated metric is missing.

    Returns:
        A :class:`GateReport` whose ``passed`` is True when every gate passed.
    """
    results = tuple(
        evaluate_gate(g, candidate, champion, candidate_run=candidate_run, champion_version=champion_version,
                      source=source, available=available)
        for g in gates
    )
    notes: list[str] = []
    if candidate_is_champion:
        notes.append(f"v{candidate_version} holds the champion alias itself: relative gates do not apply.")
    elif champion is None:
        notes.append(f"No version of {model} holds the champion alias yet: relative gates pass for this first model.")
    if source == "evaluation":
        both = "candidate and champion" if champion is not None else "the candidate"
        notes.append(f"Numbers: {both} scored afresh on the same dataset ({evaluation_data}) with mlflow.models.evaluate.")
    else:
        notes.append("Numbers: metrics logged by each version's training run.")
    if not gates:
        notes.append("No gates are configured (validate.gates is empty).")
    return GateReport(
        model=model,
        candidate_version=candidate_version,
        candidate_run=candidate_run,
        champion_version=champion_version,
        source=source,
        results=results,
        notes=tuple(notes),
        evaluation_data=evaluation_data,
    )


def outcome_tags(report: GateReport) -> dict[str, str]:
    """Model-version tags that record a report: ``mlgate.gates`` and one ``mlgate.gate.<metric>`` each."""
    tags = {"mlgate.gates": "passed" if report.passed else "failed", "mlgate.gates.source": report.source}
    for r in report.results:
        key = f"mlgate.gate.{r.metric}"
        if key in tags and tags[key].startswith("failed"):
            continue  # several gates on one metric: the tag says failed if any failed
        value = "passed" if r.passed else "failed"
        tags[key] = value if r.candidate is None else f"{value} ({_fmt(r.candidate)})"
    if report.champion_version:
        tags["mlgate.gates.champion"] = report.champion_version
    return tags
