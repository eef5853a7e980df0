"""What the promotion dashboard shows (``mlgate bot serve --ui-port``), as plain data.

Pure: every function takes what the bot read (audit records, canary records, registry facts,
``.mlgate.yml``) and returns view data that the templates of :mod:`mlgate.bot.ui` render. No
clock is read: times come in the records (ISO 8601 strings or UNIX seconds).

The shapes follow what a Kargo or Argo CD user expects of such a page: environments left to
right in promotion order (a ``requires`` chain, like Kargo's stages), promotions in flight with
what they still wait for, and a canary's traffic and analysis step by step.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from mlgate.core.canary.records import CanaryRecord

#: Outcomes of an audited promotion that leave a promotion PR/MR waiting to be merged.
_PR_OPEN = ("promotion PR opened", "promotion PR updated")
#: Audited events that end a promotion: it landed (the alias moved) or its PR merged.
_LANDED = ("alias moved", "merged")
#: Audited events that end a retrain started by an alert (bot/handlers/retrain*.py).
_RETRAIN_DONE = ("retrain failed", "retrain not submitted", "retrain gates failed", "retrain promoted")
#: Argo Workflows phases after which a workflow is over (Argo's ``WorkflowPhase``).
_WORKFLOW_DONE = {"Succeeded", "Failed", "Error"}


@dataclass(frozen=True)
class GateRow:
    """One gate of a model version: the metric and what ``mlgate validate`` recorded
    (``mlgate.gate.<metric>`` tag, e.g. ``passed (0.93)`` or ``failed: 0.81 < 0.9``)."""

    metric: str
    result: str

    @property
    def passed(self) -> bool:
        return self.result.startswith("passed")


@dataclass(frozen=True)
class EnvironmentView:
    """One environment of a registered model, as the pipeline shows it.

    Attributes:
        name, alias, requires: from ``.mlgate.yml``.
        version: the model version its alias holds (None: none yet).
        gates: the version's ``mlgate.gates`` tag (``passed``/``failed``), None when unvalidated.
        gate_rows: each gate's recorded result.
        promoted_at, commit, url: the landed promotion (``mlgate.promoted.<env>.*`` tags).
        drift: what the registry and git disagree on (None: in step or not known).
    """

    name: str
    alias: str
    requires: str | None
    version: str | None
    gates: str | None = None
    gate_rows: tuple[GateRow, ...] = ()
    promoted_at: str | None = None
    commit: str | None = None
    url: str | None = None
    drift: str | None = None


@dataclass(frozen=True)
class InFlight:
    """Something under way for a model: a promotion PR/MR waiting to be merged, a refused
    ``/promote`` that waits for approvals, a training workflow, a retrain started by an alert.

    ``approvers`` are the approvals counted so far and ``missing`` the policy's reasons
    (:func:`mlgate.core.policy.decide`) as the bot last recorded them."""

    kind: str
    model: str
    environment: str | None
    version: str | None
    status: str
    at: str
    url: str | None = None
    approvers: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    actor: str | None = None


@dataclass(frozen=True)
class ChartSeries:
    """One line of a canary chart: ``values`` per measurement (None: not measured), and its
    threshold (None: none). ``unit`` is "%" for traffic, "" for a metric."""

    name: str
    values: tuple[float | None, ...]
    threshold: float | None = None
    bound: str | None = None  # "max" or "min": which side of the threshold passes
    unit: str = ""


@dataclass(frozen=True)
class CanaryView:
    """A canary rollout as the dashboard shows it: its steps, each measurement's decision, and
    the chart's x labels (``step N · HH:MM:SS``) and series (traffic first)."""

    id: int | None
    model: str
    environment: str
    version: str
    primary_version: str
    status: str
    reason: str
    steps: tuple[int, ...]
    step: int
    labels: tuple[str, ...]
    series: tuple[ChartSeries, ...]
    decisions: tuple[tuple[str, str, str], ...]  # (label, action, reason) per measurement
    writes: tuple[tuple[int, int, str | None, str | None], ...]  # (step index, percent, commit, url)


@dataclass(frozen=True)
class ModelPage:
    """Everything on one registered model's page."""

    model: str
    repository: tuple[str, str] | None  # (forge, model repository)
    environments: tuple[EnvironmentView, ...]
    in_flight: tuple[InFlight, ...]
    canaries: tuple[CanaryView, ...]
    audit: tuple[Mapping[str, Any], ...]
    problem: str | None = None  # why the environments could not be read (no policy, registry down...)


@dataclass(frozen=True)
class FailedDelivery:
    """A delivery that ran out of attempts, with the command that retries it."""

    id: str
    forge: str
    event: str
    error: str
    attempts: int
    retry: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "retry", f"mlgate bot retry {self.id}")


def pipeline_order(environments: Sequence[tuple[str, str | None]]) -> list[str]:
    """Environment names in promotion order: each after the one it ``requires``.

    Args:
        environments: ``(name, requires)`` pairs in ``.mlgate.yml`` order.

    Returns:
        The names, an environment never before the one it requires; otherwise the file's order
        is kept (a stable topological sort). A requirement on an unknown name is ignored.
    """
    names = [n for n, _ in environments]
    needs = {n: r for n, r in environments if r in names and r != n}
    out: list[str] = []

    def place(n: str, seen: frozenset[str]) -> None:
        if n in out or n in seen:
            return
        if n in needs:
            place(needs[n], seen | {n})
        out.append(n)

    for n in names:
        place(n, frozenset())
    return out


def environment_view(name: str, alias: str, requires: str | None, version: str | None,
                     tags: Mapping[str, str] | None, drift: str | None = None) -> EnvironmentView:
    """The pipeline cell of one environment from the tags of the version its alias holds.

    Args:
        tags: the model version's tags (``mlgate.gates``, ``mlgate.gate.<metric>``,
            ``mlgate.promoted.<env>.at/.commit/.url``); None when no version holds the alias.
    """
    tags = tags or {}
    rows = tuple(GateRow(k.removeprefix("mlgate.gate."), v) for k, v in sorted(tags.items())
                 if k.startswith("mlgate.gate.") and k.count(".") == 2)
    return EnvironmentView(
        name=name, alias=alias, requires=requires, version=version, gates=tags.get("mlgate.gates"), gate_rows=rows,
        promoted_at=tags.get(f"mlgate.promoted.{name}.at"), commit=tags.get(f"mlgate.promoted.{name}.commit"),
        url=tags.get(f"mlgate.promoted.{name}.url"), drift=drift,
    )


def models_seen(records: Iterable[Mapping[str, Any]],
                canaries: Iterable[CanaryRecord] = ()) -> dict[str, tuple[str, str] | None]:
    """The registered models the bot has acted on, each with the forge and model repository
    that hold its ``.mlgate.yml`` (None when only seen without one, e.g. through a canary
    started by the CLI).

    The repository of a model is the one its commands were given on (audit records with a
    ``command``, a ``forge`` and a ``repo``); the latest such record wins.
    """
    out: dict[str, tuple[str, str] | None] = {}
    for r in records:
        model = r.get("model")
        if not isinstance(model, str) or not model:
            continue
        if r.get("command") and r.get("repo") and r.get("forge"):
            out[model] = (str(r["forge"]), str(r["repo"]))
        else:
            out.setdefault(model, None)
    for c in canaries:
        out.setdefault(c.model, None)
    return dict(sorted(out.items()))


def in_flight(records: Sequence[Mapping[str, Any]], model: str | None = None) -> list[InFlight]:
    """What is under way, from the audit trail (oldest record first).

    - a promotion PR/MR opened or updated and not merged since, per (model, environment);
    - a refused ``/promote`` whose latest word for that (model, environment) is the refusal:
      it waits for what the policy said is missing (approvals, a gate, an earlier environment);
    - a ``/train`` workflow whose last recorded phase is not final (Argo ``WorkflowPhase``);
    - a retrain started by an alert that has not finished (records with ``retrain``).

    Args:
        model: only this registered model (None: all).
    """
    latest: dict[tuple[str, str | None, str], Mapping[str, Any]] = {}
    for r in records:
        m = r.get("model")
        if not isinstance(m, str) or (model is not None and m != model):
            continue
        env = r.get("environment")
        outcome = str(r.get("outcome") or "")
        event = str(r.get("event") or "")
        if r.get("workflow"):
            latest[(m, env, f"workflow:{r['workflow']}")] = r
        elif r.get("retrain"):
            latest[(m, env, f"retrain:{r['retrain']}")] = r
            if r.get("promotion_pr"):  # a retrain that passed its gates opened a promotion PR
                latest[(m, env, "promotion")] = {**r, "outcome": "promotion PR opened"}
        elif r.get("command") or event in _LANDED or outcome in _PR_OPEN:
            latest[(m, env, "promotion")] = r  # the latest decision on (model, environment) supersedes earlier ones
    out: list[InFlight] = []
    for (m, env, kind), r in latest.items():
        at = str(r.get("at") or r.get("recorded_at") or "")
        outcome = str(r.get("outcome") or "")
        if kind == "promotion":
            if outcome in _PR_OPEN:
                out.append(InFlight("promotion PR", m, env, _s(r.get("version")), "waiting for merge", at,
                                    url=r.get("promotion_pr"), approvers=tuple(r.get("approvers") or ()),
                                    actor=r.get("actor")))
            elif outcome == "refused" and str(r.get("command") or "").startswith("/promote"):
                out.append(InFlight("refused /promote", m, env, _s(r.get("version")), "waiting for approval", at,
                                    url=_pr_url(r), approvers=tuple(r.get("approvers") or ()),
                                    missing=tuple(r.get("reasons") or ()), actor=r.get("actor")))
        elif kind.startswith("workflow:"):
            phase = str(r.get("phase") or "Pending")
            if phase not in _WORKFLOW_DONE:
                out.append(InFlight("training workflow", m, env, None, phase, at, url=r.get("url"), actor=r.get("actor")))
        elif str(r.get("event") or "") not in _RETRAIN_DONE:
            status = str(r.get("event") or "retrain started").removeprefix("retrain ")
            out.append(InFlight("retrain", m, env, _s(r.get("version")), status, at, url=r.get("url"),
                                missing=tuple(r.get("reasons") or ())))
    return sorted(out, key=lambda f: f.at, reverse=True)


def _s(v: Any) -> str | None:
    return None if v is None else str(v)


def _pr_url(r: Mapping[str, Any]) -> str | None:
    return r.get("url") or r.get("pr_url")


def filter_audit(records: Sequence[Mapping[str, Any]], model: str | None = None, environment: str | None = None,
                 limit: int | None = None) -> list[Mapping[str, Any]]:
    """Audit records, newest first, of ``model`` and ``environment`` when given, at most ``limit``."""
    out = [r for r in reversed(records)
           if (model is None or r.get("model") == model) and (environment is None or r.get("environment") == environment)]
    return out if limit is None else out[:limit]


#: Columns of the CSV export, in order (the same names as ``mlgate audit --format json`` keys).
AUDIT_COLUMNS = ("id", "recorded_at", "at", "actor", "model", "version", "environment", "command", "event",
                 "outcome", "allowed", "reasons", "repo", "pr", "delivery")


def _cell(v: Any) -> Any:
    """One CSV cell; text a spreadsheet would run as a formula (``=``, ``+``, ``-``, ``@``, tab, CR
    first, OWASP "CSV Injection") gets a leading ``'``: a model name or reason comes from people."""
    if isinstance(v, (list, tuple)):
        v = "; ".join(map(str, v))
    if v is None:
        return ""
    return "'" + v if isinstance(v, str) and v[:1] in ("=", "+", "-", "@", "\t", "\r") else v


def audit_csv(records: Iterable[Mapping[str, Any]]) -> str:
    """The records as CSV (RFC 4180, header row, CRLF line ends); lists are joined with "; ";
    a text cell that starts like a spreadsheet formula is prefixed with ``'`` (:func:`_cell`)."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(AUDIT_COLUMNS)
    for r in records:
        w.writerow([_cell(r.get(c)) for c in AUDIT_COLUMNS])
    return buf.getvalue()


def _clock(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%H:%M:%S")


def canary_view(rec: CanaryRecord) -> CanaryView:
    """The chart and decision list of a canary: one point per measurement (traffic percent at
    that step, each check's measured value) with each check's threshold from the frozen
    settings, plus the step writes (commit, PR) in order."""
    checks = rec.settings.canary.analysis.checks if rec.settings.canary.analysis else []
    ms = rec.measurements
    labels = tuple(f"step {m.step + 1} · {_clock(m.at)}" for m in ms)
    series = [ChartSeries("traffic", tuple(float(m.percent) for m in ms), unit="%")]
    for c in checks:
        values = tuple(next((r.value for r in m.results if r.check == c.name), None) for m in ms)
        bound, threshold = ("max", c.max) if getattr(c, "max", None) is not None else ("min", getattr(c, "min", None))
        series.append(ChartSeries(c.name, values, threshold, bound if threshold is not None else None))
    return CanaryView(
        id=rec.id, model=rec.model, environment=rec.environment, version=rec.version,
        primary_version=rec.primary_version, status=rec.status, reason=rec.reason, steps=tuple(rec.steps),
        step=rec.step, labels=labels, series=tuple(series),
        decisions=tuple((lbl, m.action, m.reason) for lbl, m in zip(labels, ms)),
        writes=tuple((s.index, s.percent, s.commit, s.url) for s in rec.steps_log),
    )
