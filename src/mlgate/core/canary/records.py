"""Canary data: statuses, the frozen settings, step/measurement/transition records, the
:class:`CanaryRecord`, and their JSON form (kept between ticks by :mod:`mlgate.edge.db.canaries`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from mlgate.core.config import Canary
from mlgate.core.errors import UsageError

Status = Literal["started", "observing", "advancing", "paused", "promoted", "rolling_back", "rolled_back", "aborted"]
STATUSES: tuple[str, ...] = ("started", "observing", "advancing", "paused", "promoted", "rolling_back", "rolled_back",
                             "aborted")
#: statuses mlgate still drives (a tick may act on them; a paused canary waits for /continue)
ACTIVE = frozenset({"started", "observing", "advancing", "paused", "rolling_back"})
#: statuses where mlgate does nothing more on its own
FINAL = frozenset({"promoted", "rolled_back", "aborted"})

Outcome = Literal["pass", "fail", "inconclusive", "wait", "error"]
Action = Literal["advance", "promote", "rollback", "retry", "wait", "hold", "pause"]
#: why a canary is paused: an inconclusive analysis, query errors past their limit or
#: ``max_hold``, a step with ``confirm: true``
PauseKind = Literal["inconclusive", "error", "confirm"]


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
class Verdict:
    """What to do after a measurement: ``action``, the reason in words, and the updated counts
    of every check in the step (failed and inconclusive measurements, consecutive errors).
    ``pause`` says why the canary pauses when ``action`` is ``pause``."""

    action: Action
    reason: str
    failures: Mapping[str, int]
    inconclusive: Mapping[str, int] = field(default_factory=dict)
    errors: Mapping[str, int] = field(default_factory=dict)
    pause: str | None = None


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
        failures: failed measurements per check name in the current step (all of them, as
            Argo Rollouts counts toward ``failureLimit``); ``inconclusive``: inconclusive ones;
            ``errors``: consecutive query errors per check.
        waiting_since: when the step started waiting for samples (None when it is not waiting).
        held_since: when the step started being held by query errors (None when it is not).
        paused: why the canary is paused (:data:`PauseKind`), None when it is not.
        reminded_at: when the bot last reminded that the current step's PR waits to be merged.
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
    inconclusive: Mapping[str, int] = field(default_factory=dict)
    errors: Mapping[str, int] = field(default_factory=dict)
    waiting_since: float | None = None
    held_since: float | None = None
    paused: str | None = None
    reminded_at: float | None = None
    measurements: tuple[Measurement, ...] = ()
    next_due_at: float | None = None
    reason: str = ""
    source: Mapping[str, Any] = field(default_factory=dict)
    revision: int = 0

    @property
    def steps(self) -> list[int]:
        return self.settings.canary.percents

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
        "failures": dict(r.failures), "inconclusive": dict(r.inconclusive), "errors": dict(r.errors),
        "waiting_since": r.waiting_since, "held_since": r.held_since, "paused": r.paused, "reminded_at": r.reminded_at,
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
        inconclusive={str(k): int(v) for k, v in (data.get("inconclusive") or {}).items()},
        errors={str(k): int(v) for k, v in (data.get("errors") or {}).items()},
        waiting_since=data.get("waiting_since"), held_since=data.get("held_since"), paused=data.get("paused"),
        reminded_at=data.get("reminded_at"),
        measurements=tuple(
            Measurement(m["at"], m["step"], m["percent"], tuple(CheckResult(**c) for c in m["results"]),
                        m["action"], m["reason"])
            for m in data.get("measurements") or ()
        ),
        next_due_at=data.get("next_due_at"), reason=data.get("reason", ""), source=dict(data.get("source") or {}),
        revision=revision,
    )


def validate_version(v: str) -> str:
    """A model version number as text; raises :class:`UsageError` otherwise."""
    if not (str(v).isascii() and str(v).isdigit()):
        raise UsageError(f"a model version is a number, not {v!r}")
    return str(v)
