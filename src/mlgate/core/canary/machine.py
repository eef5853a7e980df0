"""The canary state machine (see :mod:`mlgate.core.canary`): every allowed status change of a
:class:`~mlgate.core.canary.records.CanaryRecord`, as pure functions from record to record."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from mlgate.core.canary.records import CanaryRecord, CanarySettings, StepRecord
from mlgate.core.errors import Refused

#: allowed status changes (a status may also stay the same: a measurement, a step going live)
TRANSITIONS: dict[str, frozenset[str]] = {
    "started": frozenset({"observing", "paused", "rolling_back", "rolled_back", "aborted"}),
    "observing": frozenset({"advancing", "paused", "promoted", "rolling_back", "rolled_back", "aborted"}),
    "advancing": frozenset({"observing", "rolling_back", "rolled_back", "aborted"}),
    "paused": frozenset({"advancing", "rolling_back", "rolled_back", "aborted"}),
    "rolling_back": frozenset({"rolled_back"}),
    "aborted": frozenset({"rolling_back", "rolled_back"}),
    "promoted": frozenset(),
    "rolled_back": frozenset(),
}


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
    s = settings.canary.percents
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
                   failures={}, inconclusive={}, errors={}, waiting_since=None, held_since=None, paused=None,
                   reminded_at=None, next_due_at=(now + record.settings.canary.interval) if live else None)


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


def bakes(record: CanaryRecord) -> bool:
    """Whether the last step is measured before promotion (blue-green with ``bake`` > 0)."""
    c = record.settings.canary
    return c.strategy == "blue-green" and c.bake > 0


def promotable(record: CanaryRecord, now: float) -> bool:
    """Whether the live last step may be promoted at ``now``: at once for a canary; for a
    blue-green that bakes, once ``bake`` seconds have passed since the switch went live and the
    latest measurement after the switch passed."""
    cur = record.current
    if record.status != "observing" or not record.is_last_step or cur is None or cur.live_at is None:
        return False
    if not bakes(record):
        return True
    after = [m for m in record.measurements if m.step == record.step and m.at >= cur.live_at]
    return now >= cur.live_at + record.settings.canary.bake and bool(after) and after[-1].action == "promote"


def measurement_due(record: CanaryRecord, now: float) -> bool:
    """True when the current step is live and its next measurement is due at ``now`` (the last
    step is measured only while a blue-green bakes)."""
    if record.status != "observing" or (record.is_last_step and not bakes(record)):
        return False
    cur = record.current
    if cur is None or cur.live_at is None or record.next_due_at is None:
        return False
    return now >= record.next_due_at


def start_advance(record: CanaryRecord, *, now: float, reason: str, confirmed: bool = False) -> CanaryRecord:
    """``observing`` (or ``paused``) step N → ``advancing`` to step N+1 (to be written).

    When step N+1 has ``confirm: true`` and no person confirmed it yet (``confirmed``: a
    ``/continue``), the canary is ``paused`` at step N instead, asking for ``/continue``.
    """
    check_transition(record, "advancing")
    if record.is_last_step:
        raise Refused(f"canary {record.label} is at its last step; it is promoted, not advanced")
    if not confirmed and record.settings.canary.confirm(record.step + 1):
        nxt = record.steps[record.step + 1]
        return to_paused(record, now=now, kind="confirm",
                         reason=f"{reason}; step {record.step + 2} ({nxt} %) needs a person: reply /continue to write "
                                "it, or /abort")
    cur = record.current
    log = record.steps_log
    if cur is not None:
        log = tuple(replace(s, ended_at=now, outcome="passed") if s is cur else s for s in log)
    return replace(record, status="advancing", step=record.step + 1, steps_log=log, failures={}, inconclusive={},
                   errors={}, waiting_since=None, held_since=None, paused=None, next_due_at=None, updated_at=now,
                   reason=reason)


def to_paused(record: CanaryRecord, *, now: float, kind: str, reason: str) -> CanaryRecord:
    """Stop at the current step and wait for a person (``/continue`` or ``/abort``); nothing is
    measured or written meanwhile. ``kind``: ``inconclusive``, ``error`` or ``confirm``."""
    check_transition(record, "paused")
    return replace(record, status="paused", paused=kind, next_due_at=None, held_since=None, waiting_since=None,
                   updated_at=now, reason=reason)


def resume(record: CanaryRecord, *, now: float, actor: str) -> CanaryRecord:
    """``/continue`` on a ``paused`` canary (pure): write the next step (``advancing``), or
    step 1 when a ``confirm: true`` first step paused it before anything was written.

    Raises:
        Refused: the canary is not paused.
    """
    if record.status != "paused":
        raise Refused(f"canary {record.label} is {record.status}, not paused: there is nothing to continue")
    why = f"continued by {actor} ({record.paused or 'paused'} pause at step {record.step + 1})"
    if record.current is None:  # paused before step 1 was written
        return replace(record, status="advancing", paused=None, updated_at=now,
                       reason=f"{why}: writing step {record.step + 1} ({record.percent} %)")
    nxt = record.steps[record.step + 1]
    return start_advance(record, now=now, confirmed=True, reason=f"{why}: advancing to {nxt} %")


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


def merge_overdue(record: CanaryRecord, now: float) -> str | None:
    """What a step PR (or the rollback's) waiting to be merged calls for at ``now`` (pure):
    ``remind`` once it has waited ``merge_timeout`` seconds (and no reminder was sent for it),
    ``rollback`` once a step PR has waited twice that long (a rollback PR is only reminded of);
    None otherwise, and in push mode (nothing waits for a merge)."""
    pending = record.rollback if record.status == "rolling_back" else record.current
    if record.status not in ("observing", "rolling_back") or pending is None:
        return None
    if pending.live_at is not None or pending.written_at is None or pending.url is None:
        return None
    waited = now - pending.written_at
    timeout = record.settings.canary.merge_timeout
    if waited >= 2 * timeout and record.status == "observing":
        return "rollback"
    if waited >= timeout and (record.reminded_at is None or record.reminded_at < pending.written_at):
        return "remind"
    return None


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
