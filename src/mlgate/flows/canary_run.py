"""The collaborators and bookkeeping of one canary call (:mod:`mlgate.flows.canary`): the ports it
talks through, what it returns, and :class:`CanaryRun`, which writes steps and rollbacks through the
GitOps writer, moves the registry alias and stores each change with a compare-and-set.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from mlgate.core import canary as core
from mlgate.core.canary import CanaryRecord
from mlgate.core.config import CanaryAnalysis
from mlgate.core.errors import MlgateError
from mlgate.core.promotion import Change, template_values
from mlgate.edge.db.canaries import CanaryStore, Conflict
from mlgate.flows.promote import RegistryPort, land

Clock = Callable[[], datetime]
Notify = Callable[[CanaryRecord, str], None]
#: reads a file on a branch of a GitOps repository: (repository, branch, path) -> text
Reader = Callable[[str, str, str], str]
#: the state of a step's pull request from its address: "open", "closed" (unmerged) or "merged"
PrState = Callable[[str], str]

#: MLflow keeps tag values up to 5,000 characters (older servers: 250 for run tags).
TAG_MAX = 4000


class PrometheusLike(Protocol):
    def value(self, promql: str, *, at: float | None = None) -> float | None: ...


PrometheusFactory = Callable[[CanaryAnalysis], PrometheusLike]


@dataclass(frozen=True)
class TickResult:
    """What one call did to one canary.

    Attributes:
        canary: the record as stored afterwards.
        action: one word: ``started``, ``advanced``, ``promoted``, ``rolled_back``,
            ``rolling_back``, ``aborted``, ``live``, ``measured``, ``waiting``, ``held``, ``paused``, ``reminded``,
            ``awaiting_merge``, ``nothing_due``, ``conflict``, ``failed``.
        message: what happened, in words.
        report: the Markdown report (:func:`mlgate.core.canary.render_report`).
        error: the expected error that stopped the work (Prometheus or git unreachable...),
            already reflected in ``message``; None when all went as planned.
    """

    canary: CanaryRecord
    action: str
    message: str
    report: str
    error: MlgateError | None = None


def timestamp(clock: Clock) -> float:
    dt = clock()
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def report(store: CanaryStore, record: CanaryRecord, *, now: float | None = None) -> str:
    """The Markdown report of ``record`` with its audited history (and the time left at ``now``)."""
    return core.render_report(record, store.transitions(record.id) if record.id is not None else (), now=now)


def log_change(event: str, record: CanaryRecord, **kw: Any) -> None:
    """One log line per change (stdlib logging: the bot's JSON log setup formats it; silent in the CLI)."""
    logging.getLogger("mlgate.canary").info(
        "canary %s", event,
        extra={"canary": record.id, "model": record.model, "environment": record.environment,
               "version": record.version, "status": record.status, "step": record.step + 1, **kw},
    )


def version_values(info: Any) -> dict[str, str]:
    """The value-template placeholders of a version, exactly as ``mlgate promote`` fills them
    (:func:`mlgate.core.promotion.template_values`)."""
    out = template_values(info.model, info.version, storage_uri=info.storage_uri or info.source, run_id=info.run_id)
    out["model_uri"] = info.model_uri
    return out


class CanaryRun:
    """One call's collaborators and its bookkeeping (the record as last stored)."""

    def __init__(self, store: CanaryStore, registry: RegistryPort, writer: Any, clock: Clock, actor: str,
                 notify: Notify | None):
        self.store, self.registry, self.writer, self.clock = store, registry, writer, clock
        self.actor, self.notify = actor, notify
        self.changed = False

    def now(self) -> float:
        return timestamp(self.clock)

    def save(self, new: CanaryRecord, old: CanaryRecord, action: str) -> CanaryRecord:
        stored = self.store.save(new, expected=old, actor=self.actor, action=action)
        self.changed = True
        log_change(action, stored, reason=stored.reason)
        return stored

    def result(self, record: CanaryRecord, action: str, message: str, error: MlgateError | None = None) -> TickResult:
        body = report(self.store, record, now=self.now())
        if self.changed and self.notify is not None:
            try:
                self.notify(record, body)
            except Exception as e:  # the comment is a view; the rollout goes on
                message += f" (the report could not be posted: {type(e).__name__}: {e})"
        return TickResult(record, action, message, body, error)

    # ------------------------------------------------------------------ writes

    def _change(self, record: CanaryRecord, *, rollback: bool, resume: bool = True) -> Change:
        s = record.settings
        if rollback:
            def edit(text: str) -> str:
                return core.plan_rollback(text, s, record.primary_values, filename=s.path,
                                          version=record.version, values=record.values)
        else:
            def edit(text: str) -> str:
                return core.plan_step(text, s, record.step, record.values, filename=s.path, first=record.step == 0,
                                      resume=resume)
        promotion = core.promotion_of(record, rollback=rollback)
        return Change(s.repository, s.branch, s.path, promotion.message(), edit, promotion=promotion)

    def write_step(self, record: CanaryRecord, *, resume: bool = True) -> CanaryRecord:
        """Write the current step of a ``started``/``advancing`` record, record it, promote at 100 % live.

        ``resume`` is False only for the very first attempt at step 1 (see :func:`mlgate.core.canary.plan_step`).
        """
        result = self.writer.write(self._change(record, rollback=False, resume=resume))
        live = result.url is None
        new = core.step_written(record, commit=result.commit, url=result.url, live=live, now=self.now())
        try:
            stored = self.save(new, record, "write")
        except Conflict:
            self.heal_after_lost_race(record)
            raise
        if live and stored.is_last_step and core.promotable(stored, self.now()):
            stored = self.promote(stored)
        return stored

    def heal_after_lost_race(self, record: CanaryRecord) -> None:
        """A step was written but the record moved on meanwhile: if it is being rolled back,
        write the rollback again (idempotent) so that the rollback is the last change."""
        latest = self.store.get(record.id) if record.id is not None else None
        if latest is not None and latest.status in ("rolling_back", "rolled_back") and latest.rollback is not None:
            self.writer.write(self._change(latest, rollback=True))

    def write_rollback(self, record: CanaryRecord) -> CanaryRecord:
        """Write the rollback of a ``rolling_back`` record (when some step was written), then finish it."""
        if record.rollback is None and core.needs_rollback_write(record):
            result = self.writer.write(self._change(record, rollback=True))
            live = result.url is None
            new = core.rollback_written(record, commit=result.commit, url=result.url, live=live, now=self.now())
            record = self.save(new, record, "write")
        if record.rollback is None or record.rollback.live_at is not None:
            record = self.finish_rollback(record)
        return record

    # ------------------------------------------------------------------ registry

    def promote(self, record: CanaryRecord) -> CanaryRecord:
        """The 100 % step is live: move the alias, tag the version, mark ``promoted``."""
        now = self.now()
        new = core.to_promoted(record, now=now)
        cur = record.current
        # the last step landed: the same landing as any promotion (alias, mlgate.promoted.<env>.*)
        land(self.registry, core.promotion_of(record), commit=cur.commit if cur else None,
             url=cur.url if cur else None, at=_iso(now))
        self.registry.set_tags(record.model, record.version,
                               {"mlgate.canary": "promoted", "mlgate.canary.reason": new.reason[:TAG_MAX]})
        return self.save(new, record, "promote")

    def finish_rollback(self, record: CanaryRecord) -> CanaryRecord:
        self.registry.set_tags(record.model, record.version,
                               {"mlgate.canary": "rolled_back", "mlgate.canary.reason": record.reason[:TAG_MAX]})
        return self.save(core.to_rolled_back(record, now=self.now()), record, "rolled_back")
