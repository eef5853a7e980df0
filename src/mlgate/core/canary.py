"""Canary rollouts, the pure core: state machine, decision, manifest planning, report.

Nothing here reads a clock, the network or the disk: times are UNIX seconds handed in, the
manifest is text handed in, measurements are numbers handed in. The edge
(:mod:`mlgate.flows.canary`) gathers those, calls these functions and carries out what they
return; :mod:`mlgate.edge.db.canaries` keeps the :class:`CanaryRecord` between ticks.

State machine (``CanaryRecord.status``; every change is one audited transition)::

    started ──(step 1 written)──▶ observing ──(all checks pass)──▶ advancing ──▶ observing ...
       │                            │  │                                         │
       │                            │  └─(last step, 100 %, live)──▶ promoted    │
       └──────(rollback/abort)──────┴──(failure_limit reached, /rollback)──▶ rolling_back ──▶ rolled_back
                                    └──(/abort)──▶ aborted ──(/rollback)──▶ rolling_back

* ``started``: the record exists; step 1 is being written to the GitOps repository.
* ``observing``: step N is written. Until it is *live* (push done, or pull request merged)
  nothing is measured; then a measurement is due every ``interval`` seconds.
* ``advancing``: step N+1 is being written (a crash here is resumed by rewriting the same step;
  the edit sets values, so a step already on the branch produces no second commit).
* ``promoted``: the 100 % step is live: the version is the primary and holds the alias.
* ``rolling_back``: the rollback is being written (traffic back to the primary, canary removed).
* ``rolled_back``: the rollback is live. ``aborted``: mlgate stopped driving the canary and left
  the manifest as it was (a person takes over); a rollback may still follow.

Decision per measurement (:func:`decide`): each check is *pass*, *fail*, *wait* (too few
samples, no data) or *error* (Prometheus unreachable or the query rejected). Then, in order:
a check with ``failure_limit`` consecutive failures → **rollback**; any error → **hold** (never
advance blindly); any failure below its limit → **retry**; any wait → **wait**; all pass →
**advance** (or **promote** when the step is already the last).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

from mlgate.core.config import Canary, CanaryCheck, CanaryKServeTarget, CanaryWeightedTarget
from mlgate.core.errors import ManifestError, Refused, UsageError

__all__ = [
    "ACTIVE", "FINAL", "STATUSES", "CanaryRecord", "CanarySettings", "CheckResult", "Decision", "Measurement",
    "Observation", "StepRecord", "Transition", "check_transition", "decide", "evaluate_check", "measure",
    "measurement_due", "new_canary", "plan_rollback", "plan_step", "render_query", "render_report",
    "status_line", "step_live", "step_written", "start_advance", "start_rollback", "to_aborted", "to_promoted",
    "to_rolled_back", "record_to_json", "record_from_json", "KSERVE_URI", "KSERVE_PERCENT", "MODE_ANNOTATION",
    "rollback_written", "rollback_live", "needs_rollback_write", "commit_message", "report_marker",
    "kserve_mode_problem", "validate_version",
]

Status = Literal["started", "observing", "advancing", "promoted", "rolling_back", "rolled_back", "aborted"]
STATUSES: tuple[str, ...] = ("started", "observing", "advancing", "promoted", "rolling_back", "rolled_back", "aborted")
#: statuses mlgate still drives (a tick may act on them)
ACTIVE = frozenset({"started", "observing", "advancing", "rolling_back"})
#: statuses where mlgate does nothing more on its own
FINAL = frozenset({"promoted", "rolled_back", "aborted"})

#: allowed status changes (a status may also stay the same: a measurement, a step going live)
TRANSITIONS: dict[str, frozenset[str]] = {
    "started": frozenset({"observing", "rolling_back", "rolled_back", "aborted"}),
    "observing": frozenset({"advancing", "promoted", "rolling_back", "rolled_back", "aborted"}),
    "advancing": frozenset({"observing", "rolling_back", "rolled_back", "aborted"}),
    "rolling_back": frozenset({"rolled_back"}),
    "aborted": frozenset({"rolling_back", "rolled_back"}),
    "promoted": frozenset(),
    "rolled_back": frozenset(),
}

KSERVE_URI = "spec.predictor.model.storageUri"
KSERVE_PERCENT = "spec.predictor.canaryTrafficPercent"
MODE_ANNOTATION = "serving.kserve.io/deploymentMode"
#: KServe deployment modes with revision-based canary traffic (Knative); "Knative" is the
#: name KServe 0.16 gives the former "Serverless" mode.
SERVERLESS_MODES = frozenset({"serverless", "knative"})

Outcome = Literal["pass", "fail", "wait", "error"]
Action = Literal["advance", "promote", "rollback", "retry", "wait", "hold"]


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class CanarySettings:
    """What a canary needs from the config, frozen when it starts (a tick never rereads
    ``.mlgate.yml``, so a config change mid-rollout cannot change a running canary).

    Attributes:
        canary: the environment's ``canary:`` section.
        repository: the GitOps repository (URL, or an absolute local path).
        branch, path, mode: the environment's ``gitops`` settings.
    """

    canary: Canary
    repository: str
    branch: str
    path: str
    mode: str

    def to_json(self) -> dict[str, Any]:
        return {"canary": self.canary.model_dump(mode="json"), "repository": self.repository,
                "branch": self.branch, "path": self.path, "mode": self.mode}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "CanarySettings":
        return cls(Canary.model_validate(data["canary"]), data["repository"], data["branch"], data["path"], data["mode"])


@dataclass(frozen=True)
class StepRecord:
    """One write to the GitOps repository: a step (``percent`` 0-100) or the rollback (``percent`` 0).

    Times are UNIX seconds; ``live_at`` is None until the change is live (push done, PR merged).
    """

    index: int
    percent: int
    commit: str | None = None
    url: str | None = None
    written_at: float | None = None
    live_at: float | None = None
    ended_at: float | None = None
    outcome: str | None = None


@dataclass(frozen=True)
class Observation:
    """What the edge measured for one check: the canary's value, the primary's value (ratio
    checks), the sample count (``samples_query``), or the error that prevented measuring."""

    value: float | None = None
    primary: float | None = None
    samples: float | None = None
    error: str | None = None


@dataclass(frozen=True)
class CheckResult:
    """The verdict on one check in one measurement, with its reason in words."""

    check: str
    outcome: Outcome
    reason: str
    value: float | None = None
    primary: float | None = None
    samples: float | None = None


@dataclass(frozen=True)
class Decision:
    """What to do after a measurement: ``action``, the reason in words, and the updated
    consecutive-failure count of every check."""

    action: Action
    reason: str
    failures: Mapping[str, int]


@dataclass(frozen=True)
class Measurement:
    """One analysis run: when (UNIX seconds), at which step, each check's result, and the decision."""

    at: float
    step: int
    percent: int
    results: tuple[CheckResult, ...]
    action: str
    reason: str


@dataclass(frozen=True)
class Transition:
    """One audited change of a canary (stored append-only by :mod:`mlgate.edge.db.canaries`)."""

    at: float
    from_status: str | None
    to_status: str
    step: int
    percent: int | None
    action: str
    reason: str
    actor: str


@dataclass(frozen=True)
class CanaryRecord:
    """A canary rollout of ``version`` of ``model`` to ``environment``.

    Attributes:
        id: database id (None before it is stored).
        alias: the registry alias the environment holds (``champion`` for production).
        primary_version: the version that held ``alias`` when the canary started.
        status: see the module docs.
        step: index into ``settings.canary.steps`` of the current (or being written) step.
        values, primary_values: template values (``model_uri``, ``storage_uri``, ``version``,
            ``model``, ``run_id``) of the canary and the primary version.
        steps_log: every step written so far; ``rollback``: the rollback write, if any.
        failures: consecutive failed measurements per check name in the current step.
        measurements: every analysis run, oldest first.
        next_due_at: when the next measurement is due (UNIX seconds), None when none is.
        reason: the latest reason in words (what the report's status line says).
        source: where the canary was started from (e.g. ``{"forge": "github", "repo": ...,
            "pr": 12}`` or ``{"by": "cli"}``); kept for the bot.
        revision: optimistic-concurrency counter, bumped by every save.
    """

    id: int | None
    model: str
    environment: str
    alias: str
    version: str
    primary_version: str
    status: str
    step: int
    settings: CanarySettings
    values: Mapping[str, str]
    primary_values: Mapping[str, str]
    created_at: float
    updated_at: float
    steps_log: tuple[StepRecord, ...] = ()
    rollback: StepRecord | None = None
    failures: Mapping[str, int] = field(default_factory=dict)
    measurements: tuple[Measurement, ...] = ()
    next_due_at: float | None = None
    reason: str = ""
    source: Mapping[str, Any] = field(default_factory=dict)
    revision: int = 0

    @property
    def steps(self) -> list[int]:
        return list(self.settings.canary.steps)

    @property
    def percent(self) -> int:
        """Traffic percentage (0-100) of the current step."""
        return self.steps[self.step] if 0 <= self.step < len(self.steps) else 0

    @property
    def current(self) -> StepRecord | None:
        """The record of the current step once it is written."""
        for s in reversed(self.steps_log):
            if s.index == self.step:
                return s
        return None

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    @property
    def is_last_step(self) -> bool:
        return self.step == len(self.steps) - 1

    @property
    def label(self) -> str:
        return f"{self.model} v{self.version} → {self.environment}"


# --------------------------------------------------------------------------- serialization


def _step_json(s: StepRecord | None) -> dict[str, Any] | None:
    return None if s is None else dict(s.__dict__)


def record_to_json(r: CanaryRecord) -> dict[str, Any]:
    """The record as plain JSON data (everything but ``id`` and ``revision``, kept as columns)."""
    return {
        "model": r.model, "environment": r.environment, "alias": r.alias, "version": r.version,
        "primary_version": r.primary_version, "status": r.status, "step": r.step,
        "settings": r.settings.to_json(), "values": dict(r.values), "primary_values": dict(r.primary_values),
        "created_at": r.created_at, "updated_at": r.updated_at,
        "steps_log": [_step_json(s) for s in r.steps_log], "rollback": _step_json(r.rollback),
        "failures": dict(r.failures),
        "measurements": [
            {"at": m.at, "step": m.step, "percent": m.percent, "action": m.action, "reason": m.reason,
             "results": [dict(c.__dict__) for c in m.results]}
            for m in r.measurements
        ],
        "next_due_at": r.next_due_at, "reason": r.reason, "source": dict(r.source),
    }


def record_from_json(data: Mapping[str, Any], *, id: int | None, revision: int) -> CanaryRecord:
    """Inverse of :func:`record_to_json`."""
    return CanaryRecord(
        id=id, model=data["model"], environment=data["environment"], alias=data["alias"], version=data["version"],
        primary_version=data["primary_version"], status=data["status"], step=int(data["step"]),
        settings=CanarySettings.from_json(data["settings"]), values=dict(data["values"]),
        primary_values=dict(data["primary_values"]), created_at=data["created_at"], updated_at=data["updated_at"],
        steps_log=tuple(StepRecord(**s) for s in data.get("steps_log") or ()),
        rollback=StepRecord(**data["rollback"]) if data.get("rollback") else None,
        failures={str(k): int(v) for k, v in (data.get("failures") or {}).items()},
        measurements=tuple(
            Measurement(m["at"], m["step"], m["percent"], tuple(CheckResult(**c) for c in m["results"]),
                        m["action"], m["reason"])
            for m in data.get("measurements") or ()
        ),
        next_due_at=data.get("next_due_at"), reason=data.get("reason", ""), source=dict(data.get("source") or {}),
        revision=revision,
    )


# --------------------------------------------------------------------------- state machine


def check_transition(record: CanaryRecord, to: str) -> None:
    """Raise :class:`Refused` unless ``record.status`` may change to ``to``."""
    if to == record.status:
        return
    if to not in TRANSITIONS.get(record.status, frozenset()):
        raise Refused(f"canary {record.label} is {record.status}; it cannot become {to}")


def new_canary(*, model: str, environment: str, alias: str, version: str, primary_version: str,
               settings: CanarySettings, values: Mapping[str, str], primary_values: Mapping[str, str],
               now: float, source: Mapping[str, Any] | None = None) -> CanaryRecord:
    """A canary in status ``started`` at step 1 (index 0), not yet written.

    Raises:
        Refused: the version already is the primary.
    """
    if version == primary_version:
        raise Refused(f"{model} v{version} already holds {alias!r} in {environment}: there is nothing to canary")
    s = settings.canary.steps
    return CanaryRecord(
        id=None, model=model, environment=environment, alias=alias, version=version,
        primary_version=primary_version, status="started", step=0, settings=settings, values=dict(values),
        primary_values=dict(primary_values), created_at=now, updated_at=now,
        reason=f"starting: writing step 1 of {len(s)} ({s[0]} % of traffic to v{version}, primary v{primary_version})",
        source=dict(source or {}),
    )


def step_written(record: CanaryRecord, *, commit: str | None, url: str | None, live: bool, now: float) -> CanaryRecord:
    """The current step (status ``started``/``advancing``) has been written: → ``observing``.

    ``live`` is True when the change is already on the branch the deployment tool watches
    (push mode); in pull-request mode it becomes live through :func:`step_live`.
    """
    if record.status not in ("started", "advancing"):
        raise Refused(f"canary {record.label} is {record.status}; no step is being written")
    p = record.percent
    log = tuple(s for s in record.steps_log if s.index != record.step)
    entry = StepRecord(record.step, p, commit, url, now, now if live else None)
    n = len(record.steps)
    where = f"commit {commit[:12]}" if commit and not url else (url or "the GitOps repository")
    reason = (f"step {record.step + 1} of {n} ({p} %) is live ({where})" if live
              else f"step {record.step + 1} of {n} ({p} %) written as {where}; waiting for it to be merged")
    return replace(record, status="observing", steps_log=log + (entry,), updated_at=now, reason=reason,
                   failures={}, next_due_at=(now + record.settings.canary.interval) if live else None)


def step_live(record: CanaryRecord, *, now: float, commit: str | None = None) -> CanaryRecord:
    """The current step's change is live (its pull request merged): measuring starts after ``interval``.

    Also completes a rollback written in pull-request mode (see :func:`rollback_live`).
    Idempotent: a step already live is returned unchanged.
    """
    if record.status == "rolling_back":
        return rollback_live(record, now=now, commit=commit)
    if record.status != "observing":
        raise Refused(f"canary {record.label} is {record.status}; no step is waiting to go live")
    cur = record.current
    if cur is None:
        raise Refused(f"canary {record.label}: step {record.step + 1} was never written")
    if cur.live_at is not None:
        return record
    entry = replace(cur, live_at=now, commit=commit or cur.commit)
    log = tuple(entry if s is cur else s for s in record.steps_log)
    return replace(record, steps_log=log, updated_at=now, next_due_at=now + record.settings.canary.interval,
                   reason=f"step {record.step + 1} of {len(record.steps)} ({record.percent} %) is live; "
                          f"first measurement in {record.settings.canary.interval:g} s")


def rollback_live(record: CanaryRecord, *, now: float, commit: str | None = None) -> CanaryRecord:
    """Mark the rollback write live (it stays ``rolling_back`` until the registry is tagged)."""
    if record.rollback is None:
        raise Refused(f"canary {record.label}: the rollback was never written")
    if record.rollback.live_at is not None:
        return record
    rb = replace(record.rollback, live_at=now, commit=commit or record.rollback.commit)
    return replace(record, rollback=rb, updated_at=now)


def measurement_due(record: CanaryRecord, now: float) -> bool:
    """True when the current step is live and its next measurement is due at ``now``."""
    if record.status != "observing" or record.is_last_step:
        return False
    cur = record.current
    if cur is None or cur.live_at is None or record.next_due_at is None:
        return False
    return now >= record.next_due_at


def start_advance(record: CanaryRecord, *, now: float, reason: str) -> CanaryRecord:
    """``observing`` step N → ``advancing`` to step N+1 (to be written)."""
    check_transition(record, "advancing")
    if record.is_last_step:
        raise Refused(f"canary {record.label} is at its last step; it is promoted, not advanced")
    cur = record.current
    log = record.steps_log
    if cur is not None:
        log = tuple(replace(s, ended_at=now, outcome="passed") if s is cur else s for s in log)
    return replace(record, status="advancing", step=record.step + 1, steps_log=log, failures={},
                   next_due_at=None, updated_at=now, reason=reason)


def start_rollback(record: CanaryRecord, *, now: float, reason: str) -> CanaryRecord:
    """Any status but ``promoted``/``rolled_back`` → ``rolling_back`` (the rollback is to be written)."""
    if record.status == "rolling_back":
        raise Refused(f"canary {record.label} is already rolling back")
    check_transition(record, "rolling_back")
    cur = record.current
    log = record.steps_log
    if cur is not None and cur.ended_at is None:
        log = tuple(replace(s, ended_at=now, outcome="rolled back") if s is cur else s for s in log)
    return replace(record, status="rolling_back", steps_log=log, next_due_at=None, updated_at=now, reason=reason,
                   rollback=None)


def rollback_written(record: CanaryRecord, *, commit: str | None, url: str | None, live: bool,
                     now: float) -> CanaryRecord:
    """The rollback change has been written (status stays ``rolling_back``)."""
    if record.status != "rolling_back":
        raise Refused(f"canary {record.label} is {record.status}; it is not rolling back")
    rb = StepRecord(-1, 0, commit, url, now, now if live else None)
    return replace(record, rollback=rb, updated_at=now)


def needs_rollback_write(record: CanaryRecord) -> bool:
    """Whether a rollback must write to the repository: only when some step was written."""
    return bool(record.steps_log)


def to_rolled_back(record: CanaryRecord, *, now: float) -> CanaryRecord:
    """``rolling_back`` (rollback live, or nothing was ever written) → ``rolled_back``."""
    check_transition(record, "rolled_back")
    return replace(record, status="rolled_back", updated_at=now, next_due_at=None)


def to_promoted(record: CanaryRecord, *, now: float) -> CanaryRecord:
    """``observing`` the live 100 % step → ``promoted``."""
    check_transition(record, "promoted")
    cur = record.current
    if not record.is_last_step or cur is None or cur.live_at is None:
        raise Refused(f"canary {record.label} is not live at its last step; it cannot be promoted")
    log = tuple(replace(s, ended_at=now, outcome="promoted") if s is cur else s for s in record.steps_log)
    return replace(record, status="promoted", steps_log=log, updated_at=now, next_due_at=None,
                   reason=f"promoted: v{record.version} serves 100 % of {record.environment} and holds {record.alias!r} "
                          f"(replacing v{record.primary_version})")


def to_aborted(record: CanaryRecord, *, now: float, reason: str) -> CanaryRecord:
    """Stop driving the canary; the manifest is left as it is (a person takes over)."""
    if record.status == "aborted":
        raise Refused(f"canary {record.label} is already aborted")
    check_transition(record, "aborted")
    cur = record.current
    log = tuple(replace(s, ended_at=now, outcome="aborted") if s is cur and s.ended_at is None else s
                for s in record.steps_log)
    return replace(record, status="aborted", steps_log=log, updated_at=now, next_due_at=None, reason=reason)


# --------------------------------------------------------------------------- measuring and deciding


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


def decide(canary: Canary, step: int, failures: Mapping[str, int], results: Sequence[CheckResult]) -> Decision:
    """The next action after one measurement at step index ``step`` (pure).

    Args:
        canary: the canary config (steps, checks with their ``failure_limit``).
        step: index of the current step in ``canary.steps``.
        failures: consecutive failed measurements per check before this one.
        results: this measurement's result for every check.

    Returns:
        A :class:`Decision`. Order of precedence: ``rollback`` (a check reached its
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
        return Decision("rollback", f"rolling back at {where}: " + "; ".join(parts), counts)
    if by_outcome["error"] or missing:
        parts = [r.reason for r in by_outcome["error"]] + [f"{m}: not measured" for m in missing]
        return Decision("hold", f"holding at {where}, nothing decided: " + "; ".join(parts), counts)
    if by_outcome["fail"]:
        parts = [f"{r.reason} (failure {counts[r.check]} of {limits.get(r.check, 1)})" for r in by_outcome["fail"]]
        return Decision("retry", f"measured again in {canary.interval:g} s at {where}: " + "; ".join(parts), counts)
    if by_outcome["wait"]:
        return Decision("wait", f"waiting at {where}: " + "; ".join(r.reason for r in by_outcome["wait"]), counts)
    passed = "; ".join(r.reason for r in by_outcome["pass"])
    if step >= len(canary.steps) - 1:
        return Decision("promote", f"all checks passed at {where}: {passed}", counts)
    nxt = canary.steps[step + 1]
    return Decision("advance", f"all checks passed at {where}, advancing to {nxt} %: {passed}", counts)


def measure(record: CanaryRecord, observations: Mapping[str, Observation], *, now: float) -> tuple[CanaryRecord, Decision]:
    """Judge one measurement of every check and record it (pure).

    Returns the record with the measurement appended, failure counts updated and the next
    measurement due ``interval`` seconds from ``now``, and the :class:`Decision` (which the
    edge carries out: advance, roll back, or nothing).
    """
    cfg = record.settings.canary
    results: list[CheckResult] = []
    for check in cfg.analysis.checks:
        obs = observations.get(check.name, Observation(error="not measured"))
        earlier = sum(1 for m in record.measurements if m.step == record.step
                      for r in m.results if r.check == check.name and r.value is not None)
        results.append(evaluate_check(check, obs, points=earlier + (1 if obs.value is not None else 0)))
    decision = decide(cfg, record.step, record.failures, results)
    m = Measurement(now, record.step, record.percent, tuple(results), decision.action, decision.reason)
    new = replace(record, measurements=record.measurements + (m,), failures=dict(decision.failures),
                  next_due_at=now + cfg.interval, updated_at=now, reason=decision.reason)
    return new, decision


# --------------------------------------------------------------------------- manifest planning


def _load_docs(text: str, filename: str) -> list[Any]:
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    try:
        return [d for d in YAML(typ="safe", pure=True).load_all(text)]
    except YAMLError as e:
        raise ManifestError(f"{filename}: not valid YAML: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None


def _kserve_doc(text: str, target: CanaryKServeTarget, filename: str) -> tuple[str, dict[str, Any]]:
    """(``InferenceService/<name>`` select string, the loaded document) of the target."""
    docs = [d for d in _load_docs(text, filename) if isinstance(d, dict) and d.get("kind") == "InferenceService"]
    if target.name is not None:
        docs = [d for d in docs if isinstance(d.get("metadata"), dict) and d["metadata"].get("name") == target.name]
    want = f"InferenceService {target.name!r}" if target.name else "an InferenceService"
    if not docs:
        raise ManifestError(f"{filename}: no {want} in the file (canary target kind: kserve)")
    if len(docs) > 1:
        names = ", ".join(str((d.get("metadata") or {}).get("name")) for d in docs)
        raise ManifestError(f"{filename}: {len(docs)} InferenceServices ({names}); set canary.target.name to choose one")
    doc = docs[0]
    name = (doc.get("metadata") or {}).get("name")
    if not isinstance(name, str) or not name:
        raise ManifestError(f"{filename}: the InferenceService has no metadata.name")
    return f"InferenceService/{name}", doc


def kserve_mode_problem(doc: Mapping[str, Any], filename: str) -> str | None:
    """Why KServe cannot canary this InferenceService (its deployment mode), or None.

    KServe documents canaryTrafficPercent for the Serverless (Knative) mode only ("Canary
    Rollout Strategy": "only supported in serverless deployment mode"); in Standard
    (formerly RawDeployment) and ModelMesh modes the field does not split traffic.
    Without the annotation the cluster's default mode applies, which must be Serverless.
    """
    meta = doc.get("metadata") or {}
    ann = meta.get("annotations") or {}
    mode = ann.get(MODE_ANNOTATION) if isinstance(ann, Mapping) else None
    if mode is None or str(mode).strip().lower() in SERVERLESS_MODES:
        return None
    return (f"{filename}: InferenceService/{meta.get('name')} is annotated {MODE_ANNOTATION}: {mode}; KServe's "
            f"{mode} mode has no canaryTrafficPercent (canary rollouts need the Serverless/Knative mode). Deploy it "
            "in Serverless mode, or use a canary target of kind 'weighted' on your router's weights")


def _set(text: str, path: str, value: str, *, select: str | None, filename: str, create: bool = False) -> str:
    """Set one value; a key created for a whole number is written as a plain integer.

    :func:`mlgate.core.manifests.set_value` creates missing keys as strings (``"10"``), but
    ``canaryTrafficPercent`` is an integer field of the InferenceService CRD. The created
    line's quoted number is unquoted here, then checked: the result must load as that integer
    and differ from the created text on that one line only.
    """
    from mlgate.core.manifests import set_value

    edit = set_value(text, path, value, select=select, create=create, filename=filename)
    if not (create and edit.changed and edit.old is None and value.isdigit()):
        return edit.text
    lines = edit.text.splitlines(keepends=True)
    line = lines[edit.line - 1]
    for quoted in (f'"{value}"', f"'{value}'"):
        at = line.rfind(quoted)
        if at >= 0:
            lines[edit.line - 1] = line[:at] + value + line[at + len(quoted):]
            break
    else:
        return edit.text
    fixed = "".join(lines)
    check = set_value(fixed, path, value, select=select, filename=filename)
    if check.changed or not isinstance(check.old, int) or isinstance(check.old, bool) or check.old != int(value):
        raise ManifestError(f"{filename}:{edit.line}: {path}: could not write {value} as a number; edit it by hand")
    return fixed


def _read(text: str, path: str, *, select: str | None, filename: str, create: bool = False) -> object:
    """The current value at ``path`` (None when missing and ``create``), via a no-write probe edit."""
    from mlgate.core.manifests import set_value

    return set_value(text, path, "0", select=select, create=create, filename=filename).old


def _edits(settings: CanarySettings, percent: int, values: Mapping[str, str], *, final: bool,
           text: str, filename: str) -> list[tuple[str, str, str | None, bool]]:
    """(path, value, select, create) edits that put ``percent`` % of traffic on the canary."""
    from mlgate.core.manifests import render_value

    target = settings.canary.target
    if isinstance(target, CanaryKServeTarget):
        select, _doc = _kserve_doc(text, target, filename)
        uri = render_value(target.value, values)
        return [(KSERVE_URI, uri, select, False), (KSERVE_PERCENT, str(percent), select, True)]
    assert isinstance(target, CanaryWeightedTarget)
    uri = render_value(target.value, values)
    vsel = target.value_select or target.select
    if final and percent == 100 and target.primary_value is not None:
        # the new version becomes the primary; the weights go back to primary 100 / canary 0
        return [(target.primary_value, uri, vsel, False), (target.primary_weight, "100", target.select, False),
                (target.canary_weight, "0", target.select, False)]
    out = []
    if target.canary_value is not None:
        out.append((target.canary_value, uri, vsel, False))
    out += [(target.canary_weight, str(percent), target.select, False),
            (target.primary_weight, str(100 - percent), target.select, False)]
    return out


def _apply(text: str, edits: Sequence[tuple[str, str, str | None, bool]], filename: str) -> str:
    for path, value, select, create in edits:
        text = _set(text, path, value, select=select, filename=filename, create=create)
    return text


def _weight(text: str, path: str, select: str | None, filename: str) -> int:
    v = _read(text, path, select=select, filename=filename)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 100:
        raise ManifestError(f"{filename}: {path} holds {v!r}, not a traffic weight between 0 and 100")
    return int(v)


def plan_step(text: str, settings: CanarySettings, step: int, values: Mapping[str, str], *, filename: str,
              first: bool = False, resume: bool = False) -> str:
    """The manifest text with step index ``step`` of the canary applied (pure).

    * kserve: ``spec.predictor.model.storageUri`` = the canary's URI (the target's value
      template) and ``spec.predictor.canaryTrafficPercent`` = the step's percent (created when
      missing). At 100 % KServe promotes the new revision (KServe docs, "Canary Rollout Strategy").
    * weighted: canary weight = percent, primary weight = 100 - percent, ``canary_value`` = the
      canary's URI. The 100 % step with ``primary_value`` instead writes the URI to
      ``primary_value`` and the weights back to primary 100 / canary 0.

    ``first`` (the step that starts a canary) also checks the manifest may start one: a KServe
    Standard/RawDeployment InferenceService is refused (:class:`ManifestError`), and a canary
    already in flight (KServe canaryTrafficPercent strictly between 0 and 100, or a weighted
    canary weight above 0) is refused (:class:`Refused`). With ``resume`` (writing step 1
    again after an interrupted attempt), a text that already holds the step is our own earlier
    write: it is returned unchanged without that check. Any other step already in the text is
    returned unchanged too (no second commit).

    Raises:
        ManifestError, UsageError: as :func:`mlgate.core.manifests.set_value`; a weight that is not a
            number 0-100, or weights that do not sum to 100.
        Refused: see ``first``.
    """
    target = settings.canary.target
    percent = settings.canary.steps[step]
    final = step == len(settings.canary.steps) - 1
    if isinstance(target, CanaryKServeTarget):
        _sel, doc = _kserve_doc(text, target, filename)
        problem = kserve_mode_problem(doc, filename)
        if problem:
            raise ManifestError(problem)
    edits = _edits(settings, percent, values, final=final, text=text, filename=filename)
    new = _apply(text, edits, filename)
    if not first or (resume and new == text):
        if isinstance(target, CanaryWeightedTarget):
            _check_sum(new, target, filename)
        return new
    if isinstance(target, CanaryKServeTarget):
        sel, _doc = _kserve_doc(text, target, filename)
        cur = _read(text, KSERVE_PERCENT, select=sel, filename=filename, create=True)
        if isinstance(cur, (int, float)) and not isinstance(cur, bool) and 0 < cur < 100:
            raise Refused(f"{filename}: {sel} already splits traffic (canaryTrafficPercent: {cur}): another canary "
                          "is in flight; finish or roll it back first")
    else:
        c = _weight(text, target.canary_weight, target.select, filename)
        p = _weight(text, target.primary_weight, target.select, filename)
        if c + p != 100:
            raise ManifestError(f"{filename}: the weights {target.canary_weight} ({c}) and {target.primary_weight} ({p}) "
                                "do not sum to 100")
        if c != 0:
            hint = ("" if target.primary_value else
                    "; without canary.target.primary_value the last canary left its route at 100 %")
            raise Refused(f"{filename}: the canary route {target.canary_weight} already carries {c} % of traffic{hint}; "
                          f"set it to 0 and {target.primary_weight} to 100 first")
        _check_sum(new, target, filename)
    return new


def _check_sum(text: str, target: CanaryWeightedTarget, filename: str) -> None:
    c = _weight(text, target.canary_weight, target.select, filename)
    p = _weight(text, target.primary_weight, target.select, filename)
    if c + p != 100:
        raise ManifestError(f"{filename}: the weights {target.canary_weight} ({c}) and {target.primary_weight} ({p}) "
                            "would not sum to 100")


def plan_rollback(text: str, settings: CanarySettings, primary_values: Mapping[str, str], *, filename: str) -> str:
    """The manifest text with traffic back on the primary and the canary's model removed (pure).

    * kserve: ``storageUri`` = the primary's URI and ``canaryTrafficPercent: 0``, which pins
      all traffic to the last revision rolled out with 100 % (KServe docs, "Canary Rollout
      Strategy", rollback). The next canary sets the percent again.
    * weighted: canary weight 0, primary weight 100, and ``canary_value`` (when configured) =
      the primary's URI.

    Idempotent: a text already rolled back is returned unchanged.
    """
    from mlgate.core.manifests import render_value

    target = settings.canary.target
    if isinstance(target, CanaryKServeTarget):
        sel, _doc = _kserve_doc(text, target, filename)
        uri = render_value(target.value, primary_values)
        return _apply(text, [(KSERVE_URI, uri, sel, False), (KSERVE_PERCENT, "0", sel, True)], filename)
    assert isinstance(target, CanaryWeightedTarget)
    edits: list[tuple[str, str, str | None, bool]] = []
    if target.canary_value is not None:
        edits.append((target.canary_value, render_value(target.value, primary_values),
                      target.value_select or target.select, False))
    edits += [(target.canary_weight, "0", target.select, False), (target.primary_weight, "100", target.select, False)]
    return _apply(text, edits, filename)


def commit_message(record: CanaryRecord, *, rollback: bool = False) -> str:
    """The structured commit message of a canary step or rollback (subject + git trailers)."""
    n = len(record.steps)
    if rollback:
        subject = f"canary: roll back {record.model} v{record.version} in {record.environment}"
        body = f"mlgate rolls back the canary of {record.model} v{record.version}: {record.reason}"
        step, pct = "rollback", "0"
    else:
        subject = (f"canary: {record.model} v{record.version} at {record.percent} % in {record.environment} "
                   f"(step {record.step + 1}/{n})")
        body = (f"mlgate moves {record.percent} % of {record.environment}'s traffic to {record.model} "
                f"v{record.version} (primary v{record.primary_version}).")
        if record.is_last_step:
            body += f" This is the last step: v{record.version} becomes the primary."
        step, pct = str(record.step + 1), str(record.percent)
    return (f"{subject}\n\n{body}\n\n"
            f"Model: {record.model}\nModel-Version: {record.version}\nPrimary-Version: {record.primary_version}\n"
            f"Environment: {record.environment}\nCanary-Id: {record.id}\nCanary-Step: {step}\nCanary-Percent: {pct}\n"
            f"Model-URI: {record.values.get('model_uri', '')}\n")


# --------------------------------------------------------------------------- report


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


def validate_version(v: str) -> str:
    """A model version number as text; raises :class:`UsageError` otherwise."""
    if not str(v).isdigit():
        raise UsageError(f"a model version is a number, not {v!r}")
    return str(v)
