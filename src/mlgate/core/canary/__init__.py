"""Canary rollouts, the pure core: state machine, decision, manifest planning, report.

Nothing here reads a clock, the network or the disk: times are UNIX seconds handed in, the
manifest is text handed in, measurements are numbers handed in. The edge
(:mod:`mlgate.flows.canary`) gathers those, calls these functions and carries out what they
return; :mod:`mlgate.edge.db.canaries` keeps the :class:`CanaryRecord` between ticks.

State machine (``CanaryRecord.status``; every change is one audited transition)::

    started ──(step 1 written)──▶ observing ──(all checks pass)──▶ advancing ──▶ observing ...
       │                            │  ├─(inconclusive, errors, confirm)──▶ paused ──(/continue)──▶ advancing
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
* ``paused``: mlgate waits for a person at step N (an inconclusive analysis, query errors past
  ``consecutive_error_limit`` or ``max_hold``, or step N+1 has ``confirm: true``); ``/continue``
  by a promoter writes step N+1, ``/abort`` or ``/rollback`` stops.
* ``rolling_back``: the rollback is being written (traffic back to the primary, canary removed).
* ``rolled_back``: the rollback is live. ``aborted``: mlgate stopped driving the canary and left
  the manifest as it was (a person takes over); a rollback may still follow.

Verdict per measurement (:func:`judge`, after Argo Rollouts' analysis): each check is *pass*,
*fail* (its failure condition met, or its success condition not met without a failure
condition), *inconclusive* (both conditions set, neither met; or waiting past ``max_wait``),
*wait* (too few samples, no data) or *error* (Prometheus unreachable). Then, in order: a check
with more than ``failure_limit`` failed measurements in the step → **rollback**; more than
``consecutive_error_limit`` errors in a row, or held ``max_hold`` seconds → **pause**; any other
error → **hold** (never advance blindly); ``inconclusive_limit`` inconclusive measurements →
**pause**; a failure or inconclusive below its limit → **retry**; any wait → **wait**; all pass
→ **advance** (or **promote** when the step is already the last). A query Prometheus rejects
(400 ``bad_data``) is a configuration error: the edge rolls back to the safe state at once.

The package's modules, one job each: ``records`` (statuses, records, JSON), ``machine`` (the
transitions), ``analysis`` (checks and the decision), ``plan`` (manifest edits, commit
message), ``report`` (status line and Markdown report).
"""

from __future__ import annotations

from mlgate.core.canary.analysis import judge, evaluate_check, measure, render_query
from mlgate.core.canary.machine import (
    TRANSITIONS,
    check_transition,
    bakes,
    measurement_due,
    merge_overdue,
    promotable,
    needs_rollback_write,
    new_canary,
    rollback_live,
    resume,
    rollback_written,
    start_advance,
    start_rollback,
    step_live,
    step_written,
    to_aborted,
    to_paused,
    to_promoted,
    to_rolled_back,
)
from mlgate.core.canary.plan import (
    KSERVE_PERCENT,
    KSERVE_URI,
    MODE_ANNOTATION,
    SERVERLESS_MODES,
    commit_message,
    promotion_of,
    kserve_mode_problem,
    plan_rollback,
    plan_step,
)
from mlgate.core.canary.records import (
    ACTIVE,
    FINAL,
    STATUSES,
    Action,
    CanaryRecord,
    CanarySettings,
    CheckResult,
    Verdict,
    Measurement,
    Observation,
    Outcome,
    Status,
    StepRecord,
    Transition,
    record_from_json,
    record_to_json,
    validate_version,
)
from mlgate.core.canary.report import render_report, report_marker, status_line

__all__ = [
    "ACTIVE", "FINAL", "STATUSES", "CanaryRecord", "CanarySettings", "CheckResult", "Verdict", "Measurement",
    "Observation", "StepRecord", "Transition", "check_transition", "judge", "evaluate_check", "measure",
    "measurement_due", "new_canary", "plan_rollback", "plan_step", "render_query", "render_report",
    "status_line", "step_live", "step_written", "start_advance", "start_rollback", "to_aborted", "to_promoted",
    "to_rolled_back", "record_to_json", "record_from_json", "KSERVE_URI", "KSERVE_PERCENT", "MODE_ANNOTATION",
    "rollback_written", "rollback_live", "needs_rollback_write", "commit_message", "promotion_of", "report_marker",
    "kserve_mode_problem", "validate_version", "merge_overdue", "resume", "to_paused", "bakes", "promotable",
]
