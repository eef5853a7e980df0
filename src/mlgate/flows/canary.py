"""Canary rollouts, the imperative shell: start, tick, step live, roll back, abort.

These functions gather what the pure core (:mod:`mlgate.core.canary`) needs — the manifest text
(inside the GitOps writer's edit callback), Prometheus measurements, the registry's versions —
call it, and carry out what it decided: a commit per step through the GitOps repository, the
registry alias and tags, the stored state. The bot and the CLI (``mlgate canary``) call them;
every one takes its collaborators as parameters:

* ``store``: :class:`mlgate.edge.db.canaries.CanaryStore` (the bot's database);
* ``registry``: :class:`mlgate.edge.registry.Registry` (or anything with ``get_version``,
  ``get_by_alias``, ``set_alias``, ``set_tags``);
* ``writer``: a :class:`mlgate.edge.git.PromotionWriter` — :class:`mlgate.edge.git.PushWriter` for
  mode ``push`` (a step is live once pushed) or the bot's pull-request writer (a step is live
  when its PR merges: the bot calls :func:`on_step_live`, or a ``reader`` sees it on the branch);
* ``clock``: ``() -> datetime`` (timezone-aware, UTC).

Each returns :class:`TickResult` (the record, what happened in words, the Markdown report) and
calls ``notify(record, report)`` when the canary changed, so the bot can edit its PR comment.

Exactly-once steps: before a step (or the rollback) is written, the record moves to
``advancing`` (``rolling_back``) with a compare-and-set on its revision, so only one worker
writes it; a worker that dies after that point leaves the record there and the next tick
writes the same step again. The edit *sets* values, so when the first attempt already reached
the branch the file is unchanged and no second commit is made.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from mlgate.core import canary as core
from mlgate.core.canary import CanaryRecord, CanarySettings, Observation
from mlgate.core.config import CanaryAnalysis, Config, Environment
from mlgate.core.errors import InfraError, ManifestError, MlgateError, Refused, UsageError
from mlgate.core.gitmsg import with_git_output
from mlgate.core.urls import redact_url
from mlgate.edge.db.canaries import CanaryStore, Conflict
from mlgate.edge.files import read_text, resolve_in_repo
from mlgate.edge.git import resolve_repository
from mlgate.flows.promote import RegistryPort
from mlgate.flows.canary_run import (  # noqa: F401  (Notify, PrometheusLike, TickResult, report: re-exported)
    TAG_MAX,
    CanaryRun,
    Clock,
    Notify,
    PrState,
    PrometheusFactory,
    PrometheusLike,
    Reader,
    TickResult,
    log_change,
    report,
    timestamp,
    version_values,
)

__all__ = [
    "TickResult", "start_canary", "on_step_live", "tick", "abort", "rollback", "report", "continue_canary",
    "read_branch_file", "default_prometheus",
]


# --------------------------------------------------------------------------- start


def start_canary(store: CanaryStore, registry: RegistryPort, writer: Any, clock: Clock, *, config: Config,
                 environment: str, version: str, base_dir: str | Path = ".", source: Mapping[str, Any] | None = None,
                 actor: str = "cli", check_policy: bool = True, notify: Notify | None = None) -> TickResult:
    """Start a canary of ``version`` in ``environment``: store it and write step 1.

    Args:
        store, registry, writer, clock: see the module docs.
        config: the model repository's ``.mlgate.yml``; the environment needs a ``canary:``
            section and its ``gitops`` settings say where to write.
        environment: environment name (e.g. ``production``).
        version: model version number to roll out.
        base_dir: directory of ``.mlgate.yml`` (a relative GitOps repository path is resolved
            against it).
        source: where the request came from, kept with the canary (the bot: forge, repository,
            pull request, comment).
        actor: who asked (a user login, ``cli``).
        check_policy: refuse a version whose gates did not pass, or that the environment's
            ``requires`` environment does not hold (the same rule as ``mlgate promote``); the
            bot passes False when its own policy already decided.
        notify: called with ``(record, report)`` when the canary changed.

    Returns:
        :class:`TickResult` (``started``, or ``promoted`` for steps ``[100]``).

    Raises:
        UsageError: no such environment, no ``canary:`` section, no such version.
        Refused: gates not passed, ``requires`` not met, no primary version to compare with,
            the version already is the primary, a canary already runs there, or the manifest
            already carries another canary.
        ManifestError: the manifest cannot take the canary (e.g. KServe Standard mode); the
            canary is then stored as ``aborted`` with that reason.
        InfraError: MLflow, git or the database unreachable. When the failure happened while
            writing step 1 the canary stays ``started`` and the next :func:`tick` writes it.
    """
    env, version, info, primary = _check_startable(registry, config, environment, version, check_policy)
    settings = CanarySettings(env.canary, resolve_repository(env.gitops.repository, Path(base_dir)),
                              env.gitops.branch, env.gitops.path, env.gitops.mode)
    run = CanaryRun(store, registry, writer, clock, actor, notify)
    record = core.new_canary(model=config.model, environment=environment, alias=env.registry_alias, version=version,
                             primary_version=str(primary.version), settings=settings,
                             values=version_values(info), primary_values=version_values(primary),
                             now=run.now(), source=source)
    record = store.create(record, actor=actor)
    run.changed = True
    log_change("start", record)
    if settings.canary.confirm(0):  # step 1 itself waits for a person (Flagger's confirm-rollout)
        why = (f"step 1 ({record.percent} %) needs a person before it is written: reply /continue to write it, "
               "or /abort")
        record = run.save(core.to_paused(record, now=run.now(), kind="confirm", reason=why), record, "pause")
        return run.result(record, "paused", why)
    record = _write_first_step(run, record)
    action = "promoted" if record.status == "promoted" else "started"
    return run.result(record, action, record.reason)


def _check_startable(registry: RegistryPort, config: Config, environment: str, version: str,
                     check_policy: bool) -> tuple[Environment, str, Any, Any]:
    """(environment, version number, its registry version, the primary's) of a canary that may
    start; raises the refusals of :func:`start_canary`."""
    try:
        env = config.environment(environment)
    except KeyError as e:
        raise UsageError(str(e.args[0])) from None
    if env.canary is None:
        raise UsageError(f"environment {environment!r} has no canary: section in .mlgate.yml; "
                         "use 'mlgate promote' or add canary.steps, interval, analysis and target")
    version = core.validate_version(version)
    model = config.model
    info = registry.get_version(model, version)
    if getattr(info, "status", "READY") != "READY":
        raise Refused(f"{model} v{version} is {info.status}, not READY: it cannot serve traffic yet")
    primary = registry.get_by_alias(model, env.registry_alias)
    if primary is not None and str(primary.version) == version:
        raise Refused(f"{model} v{version} already holds {env.registry_alias!r} in {environment}: "
                      "there is nothing to canary")
    if check_policy:
        gates = info.tags.get("mlgate.gates")
        if gates != "passed":
            why = "were not evaluated (run 'mlgate validate')" if gates is None else f"are {gates!r}"
            raise Refused(f"refusing to start a canary of {model} v{version} in {environment}: its gates {why}")
        if env.requires:
            req = config.environment(env.requires)
            holder = registry.get_by_alias(model, req.registry_alias)
            if holder is None or str(holder.version) != version:
                held = f"holds v{holder.version}" if holder else "holds no version"
                raise Refused(f"refusing to start a canary of {model} v{version} in {environment}: {env.requires} "
                              f"{held}, not v{version} (alias {req.registry_alias!r})")
    if primary is None:
        raise Refused(f"a canary needs a primary version to share traffic with: no version of {model} holds "
                      f"{env.registry_alias!r} ({environment}); promote the first version with 'mlgate promote'")
    return env, version, info, primary


def _write_first_step(run: CanaryRun, record: CanaryRecord) -> CanaryRecord:
    """Write step 1 of a stored canary. A manifest that cannot take it aborts the canary; git or
    the database unreachable leaves it ``started`` for the next tick (the error says so)."""
    try:
        return run.write_step(record, resume=False)
    except (ManifestError, Refused, UsageError) as e:
        aborted = core.to_aborted(record, now=run.now(), reason=f"could not write step 1, nothing was changed: {e}")
        record = run.save(aborted, record, "abort")
        run.result(record, "failed", aborted.reason)
        raise
    except InfraError as e:
        latest = run.store.get(record.id) or record
        run.result(latest, "failed", str(e))
        raise InfraError(f"{e} (the canary of {record.model} v{record.version} is stored as started; "
                         "'mlgate canary step' or the bot's next tick writes step 1)") from None


# --------------------------------------------------------------------------- live


def on_step_live(store: CanaryStore, registry: RegistryPort, writer: Any, clock: Clock, canary_id: int, *,
                 commit: str | None = None, actor: str = "bot", notify: Notify | None = None) -> TickResult:
    """The current step's (or the rollback's) pull request was merged: the change is live.

    Measuring starts ``interval`` seconds from now; a live 100 % step promotes the version
    (alias + tags); a live rollback finishes it. Idempotent (a step already live is left).

    Raises:
        UsageError: no such canary. Refused: nothing of it is waiting to go live.
        InfraError: MLflow or the database unreachable.
    """
    record = store.get(canary_id)
    if record is None:
        raise UsageError(f"no canary with id {canary_id}")
    run = CanaryRun(store, registry, writer, clock, actor, notify)
    new = core.step_live(record, now=run.now(), commit=commit)
    if new is not record:
        record = run.save(new, record, "live")
    if record.status == "observing" and record.is_last_step and core.promotable(record, run.now()):
        record = run.promote(record)
        return run.result(record, "promoted", record.reason)
    if record.status == "rolling_back":
        record = run.write_rollback(record)
        return run.result(record, record.status, record.reason)
    return run.result(record, "live", record.reason)


# --------------------------------------------------------------------------- tick


def default_prometheus(analysis: CanaryAnalysis) -> PrometheusLike:
    """A :class:`mlgate.edge.prometheus.Prometheus` for the analysis settings (token from ``token_env``)."""
    from mlgate.edge.prometheus import Prometheus  # lazily: httpx, only a tick that measures needs it

    token = os.environ.get(analysis.token_env) if analysis.token_env else None
    return Prometheus(analysis.prometheus, timeout=analysis.timeout, token=token)


#: the prefix of an observation's error when Prometheus rejected the query (a configuration error)
REJECTED = "rejected by Prometheus: "


def observe(record: CanaryRecord, prometheus: PrometheusLike) -> dict[str, Observation]:
    """Query every check of ``record`` (canary value, samples, primary value).

    Once Prometheus is unreachable the remaining checks are not queried: they carry the
    same error (the whole measurement is held). A query Prometheus rejects (HTTP 400
    ``bad_data``, or several series) carries :data:`REJECTED` and Prometheus's message.
    """
    from mlgate.edge.prometheus import QueryError  # lazily: httpx, only a tick that measures needs it

    cfg = record.settings.canary
    out: dict[str, Observation] = {}
    down: str | None = None
    for check in cfg.analysis.checks:
        if down is not None:
            out[check.name] = Observation(error=down)
            continue

        def q(template: str, version: str) -> str:
            return core.render_query(template, version=version, model=record.model, environment=record.environment)

        try:
            value = prometheus.value(q(check.query, record.version))
            samples = prometheus.value(q(check.samples_query, record.version)) if check.samples_query else None
            primary = (prometheus.value(q(check.primary_query, record.primary_version))
                       if check.primary_query else None)
        except QueryError as e:
            out[check.name] = Observation(error=REJECTED + str(e))
            continue
        except InfraError as e:
            down = str(e)
            out[check.name] = Observation(error=down)
            continue
        out[check.name] = Observation(value=value, primary=primary, samples=samples)
    return out


def tick(store: CanaryStore, registry: RegistryPort, writer: Any, clock: Clock, *, canary_id: int | None = None,
         prometheus: PrometheusFactory = default_prometheus, reader: Reader | None = None, actor: str = "bot",
         notify: Notify | None = None, pr_state: PrState | None = None) -> list[TickResult]:
    """Do what is due for every running canary (or only ``canary_id``): one pass, no sleeping.

    Per canary, by status: ``started``/``advancing`` → write the pending step; ``rolling_back``
    → write/finish the rollback; ``observing`` → if the step is not live yet, ask ``reader``
    whether the branch holds it (pull-request mode); if it is the live 100 % step, promote; if
    a measurement is due (``interval`` after going live or after the last one), query
    Prometheus, judge (:func:`mlgate.core.canary.measure`), and advance or roll back accordingly.

    Prometheus unreachable holds the canary where it is and is reported (``held``, with the
    error); it never advances, and past ``consecutive_error_limit`` or ``max_hold`` it pauses
    (``paused``: a person decides with ``/continue``, ``/abort`` or ``/rollback``). A query
    Prometheus rejects is a configuration error: the canary rolls back to the safe state at
    once with Prometheus's message. An inconclusive analysis pauses too. A step PR that
    ``pr_state`` (PR address → ``open``/``closed``/``merged``) says was closed unmerged rolls the
    canary back; one waiting longer than ``merge_timeout`` is reminded of (``reminded``, in the
    report), and after twice that long rolled back. Errors of one canary do not stop the
    others. The bot calls this every few seconds; ``mlgate canary step`` calls it once.

    Returns:
        One :class:`TickResult` per canary looked at.
    """
    if canary_id is not None:
        rec = store.get(canary_id)
        if rec is None:
            raise UsageError(f"no canary with id {canary_id}")
        records = [rec]
    else:
        records = store.list(active_only=True, limit=1000)
    results = []
    for record in records:
        run = CanaryRun(store, registry, writer, clock, actor, notify)
        try:
            results.append(_tick_one(run, record, prometheus, reader, pr_state))
        except Conflict as e:
            latest = store.get(record.id) or record
            results.append(run.result(latest, "conflict", str(e)))
        except MlgateError as e:
            latest = store.get(record.id) or record
            results.append(run.result(latest, "failed", f"{e}; the canary stays {latest.status} and the next tick "
                                                         "tries again", e))
    return results


def _tick_one(run: CanaryRun, record: CanaryRecord, prometheus: PrometheusFactory, reader: Reader | None,
              pr_state: PrState | None = None) -> TickResult:
    status = record.status
    if status in ("started", "advancing"):
        record = run.write_step(record)
        return run.result(record, "promoted" if record.status == "promoted" else "advanced", record.reason)
    if status == "rolling_back":
        if record.rollback is not None and record.rollback.live_at is None:
            record = _check_merged(run, record, reader)
            if record.rollback is not None and record.rollback.live_at is None:
                return _awaiting_merge(run, record, pr_state)
        record = run.write_rollback(record)
        return run.result(record, record.status, record.reason)
    if status != "observing":
        return run.result(record, "nothing_due", f"the canary is {status}")
    cur = record.current
    if cur is not None and cur.live_at is None:
        record = _check_merged(run, record, reader)
        cur = record.current
        if cur is not None and cur.live_at is None:
            return _awaiting_merge(run, record, pr_state)
    now = run.now()
    if record.is_last_step and core.promotable(record, now):
        record = run.promote(record)
        return run.result(record, "promoted", record.reason)
    if not core.measurement_due(record, now):
        due = record.next_due_at
        left = f"{max(0.0, due - now):.0f} s" if due is not None else "-"
        return run.result(record, "nothing_due", f"next measurement of step {record.step + 1} in {left}")
    prom = prometheus(record.settings.canary.analysis)
    try:
        observations = observe(record, prom)
    finally:
        close = getattr(prom, "close", None)
        if callable(close):
            close()
    measured, decision = core.measure(record, observations, now=run.now())
    record = run.save(measured, record, f"measure:{decision.action}")
    rejected = [f"{name}: {o.error[len(REJECTED):]}" for name, o in observations.items()
                if o.error and o.error.startswith(REJECTED)]
    if rejected and decision.action != "rollback":  # a configuration error, not an outage: stop at the safe state
        why = ("rolling back: a query of the analysis is a configuration error (fix it in .mlgate.yml): "
               + "; ".join(rejected))
        return _roll_back(run, record, why)
    if decision.action == "advance":
        advancing = core.start_advance(record, now=run.now(), reason=decision.reason)
        record = run.save(advancing, record, "advance" if advancing.status == "advancing" else "pause")
        if record.status == "paused":
            return run.result(record, "paused", record.reason)
        record = run.write_step(record)
        return run.result(record, "promoted" if record.status == "promoted" else "advanced", decision.reason)
    if decision.action == "pause":
        paused = core.to_paused(record, now=run.now(), kind=decision.pause or "inconclusive",
                                reason=f"{decision.reason}. Reply /continue to go on to the next step, or /abort")
        record = run.save(paused, record, "pause")
        return run.result(record, "paused", record.reason)
    if decision.action == "promote":  # a blue-green baking after its switch (a canary's last step is not measured)
        if not core.promotable(record, run.now()):
            left = record.current.live_at + record.settings.canary.bake - run.now()  # type: ignore[union-attr]
            return run.result(record, "baking", f"{decision.reason}; baking {max(0.0, left):.0f} s more")
        record = run.promote(record)
        return run.result(record, "promoted", record.reason)
    if decision.action == "rollback":
        return _roll_back(run, record, decision.reason)
    if decision.action == "hold":
        errors = [r.reason for r in measured.measurements[-1].results if r.outcome == "error"]
        return run.result(record, "held", decision.reason, InfraError("; ".join(errors) or decision.reason))
    return run.result(record, "waiting" if decision.action == "wait" else "measured", decision.reason)


def _roll_back(run: CanaryRun, record: CanaryRecord, why: str) -> TickResult:
    rolling = core.start_rollback(record, now=run.now(), reason=why)
    record = run.save(rolling, record, "rollback")
    record = run.write_rollback(record)
    return run.result(record, record.status, why)


def _awaiting_merge(run: CanaryRun, record: CanaryRecord, pr_state: PrState | None) -> TickResult:
    """A step (or the rollback) waits for its PR to be merged: a PR closed unmerged stops the
    canary at the last safe state (a step's: rollback through git; the rollback's: abort, a
    person takes over); ``merge_timeout`` brings a reminder, then the same as a closed PR."""
    rolling = record.status == "rolling_back"
    pending = record.rollback if rolling else record.current
    assert pending is not None
    what = "the rollback" if rolling else f"step {record.step + 1} ({record.percent} %)"
    state = pr_state(pending.url) if pr_state is not None and pending.url else None
    if state == "closed":
        if rolling:
            why = (f"aborted: the rollback PR {pending.url} was closed without merging; mlgate no longer drives the "
                   f"canary and the manifest keeps what its last merged step wrote")
            record = run.save(core.to_aborted(record, now=run.now(), reason=why), record, "abort")
            return run.result(record, "aborted", why)
        return _roll_back(run, record, f"rolling back to the last safe state: the PR of {what} ({pending.url}) was "
                                       "closed without merging")
    now = run.now()
    due = core.merge_overdue(record, now)
    timeout = record.settings.canary.merge_timeout
    if due == "rollback":
        return _roll_back(run, record, f"rolling back to the last safe state: the PR of {what} ({pending.url}) waited "
                                       f"{now - (pending.written_at or now):.0f} s to be merged (merge_timeout "
                                       f"{timeout:g} s, reminded once)")
    if due == "remind":
        why = (f"reminder: the PR of {what} ({pending.url}) has waited {now - (pending.written_at or now):.0f} s to be "
               f"merged (merge_timeout {timeout:g} s); merge or close it"
               + ("" if rolling else f": the canary rolls back in {timeout:g} s otherwise"))
        record = run.save(replace(record, reminded_at=now, reason=why, updated_at=now), record, "remind")
        return run.result(record, "reminded", why)
    return run.result(record, "awaiting_merge", f"{what} is waiting to be merged: {pending.url or '-'}")


def _check_merged(run: CanaryRun, record: CanaryRecord, reader: Reader | None) -> CanaryRecord:
    """Pull-request mode without a merge event: the change is live once the branch holds it."""
    if reader is None:
        return record
    s = record.settings
    text = reader(s.repository, s.branch, s.path)
    if record.status == "rolling_back":
        holds = core.plan_rollback(text, s, record.primary_values, filename=s.path,
                                   version=record.version, values=record.values) == text
    else:
        holds = core.plan_step(text, s, record.step, record.values, filename=s.path) == text
    if not holds:
        return record
    return run.save(core.step_live(record, now=run.now()), record, "live")


# --------------------------------------------------------------------------- rollback and abort


def _find(store: CanaryStore, canary: int | CanaryRecord) -> CanaryRecord:
    if isinstance(canary, CanaryRecord):
        fresh = store.get(canary.id) if canary.id is not None else None
        if fresh is None:
            raise UsageError(f"canary {canary.label} is not stored")
        return fresh
    found = store.get(canary)
    if found is None:
        raise UsageError(f"no canary with id {canary}")
    return found


def rollback(store: CanaryStore, registry: RegistryPort, writer: Any, clock: Clock, canary: int | CanaryRecord, *,
             reason: str, actor: str = "cli", notify: Notify | None = None) -> TickResult:
    """Roll a canary back now, at any step (``/rollback``): traffic back to the primary, canary removed.

    Writes one rollback commit (nothing when no step was written yet), tags the version
    ``mlgate.canary=rolled_back`` with the reason. Also works on an ``aborted`` canary.

    Raises:
        UsageError: no such canary. Refused: already promoted, rolled back or rolling back.
        InfraError: git or MLflow unreachable (the canary stays ``rolling_back``; the next
            tick finishes the rollback).
    """
    record = _find(store, canary)
    run = CanaryRun(store, registry, writer, clock, actor, notify)
    why = f"rolled back by {actor}: {reason}" if reason else f"rolled back by {actor}"
    rolling = core.start_rollback(record, now=run.now(), reason=why)
    record = run.save(rolling, record, "rollback")
    record = run.write_rollback(record)
    msg = record.reason if record.status == "rolled_back" else f"{record.reason} (rollback awaiting merge)"
    return run.result(record, record.status, msg)


def continue_canary(store: CanaryStore, registry: RegistryPort, writer: Any, clock: Clock,
                    canary: int | CanaryRecord, *, actor: str = "cli", notify: Notify | None = None) -> TickResult:
    """``/continue``: a person decided on a ``paused`` canary: write its next step (step 1 when
    a ``confirm: true`` first step paused it). Permission is the caller's to check.

    Raises:
        UsageError: no such canary. Refused: it is not paused.
        InfraError: git unreachable (the canary stays ``advancing``; the next tick writes the step).
    """
    record = _find(store, canary)
    run = CanaryRun(store, registry, writer, clock, actor, notify)
    record = run.save(core.resume(record, now=run.now(), actor=actor), record, "continue")
    record = run.write_step(record)
    return run.result(record, "promoted" if record.status == "promoted" else "advanced", record.reason)


def abort(store: CanaryStore, registry: RegistryPort, writer: Any, clock: Clock, canary: int | CanaryRecord, *,
          reason: str, actor: str = "cli", notify: Notify | None = None) -> TickResult:
    """Stop driving a canary at any step (``/abort``), leaving the manifest as it is.

    A person takes over: the report says how much traffic the canary still has. The version
    is tagged ``mlgate.canary=aborted`` with the reason. ``writer`` is not used (the
    signature matches the other functions); a :func:`rollback` may follow.

    Raises:
        UsageError: no such canary. Refused: already finished or aborted.
        InfraError: MLflow unreachable while tagging (the canary is aborted all the same).
    """
    record = _find(store, canary)
    run = CanaryRun(store, registry, writer, clock, actor, notify)
    cur = record.current
    left = (f"the manifest keeps {record.percent} % of traffic on v{record.version}" if cur is not None
            else "no step was written")
    why = f"aborted by {actor}{': ' + reason if reason else ''}; mlgate no longer drives it and {left}"
    record = run.save(core.to_aborted(record, now=run.now(), reason=why), record, "abort")
    try:
        registry.set_tags(record.model, record.version, {"mlgate.canary": "aborted", "mlgate.canary.reason": why[:TAG_MAX]})
    except InfraError as e:
        return run.result(record, "aborted", f"{why} (tagging the version failed: {e})", e)
    return run.result(record, "aborted", why)


# --------------------------------------------------------------------------- git reader


def read_branch_file(repository: str, branch: str, path: str) -> str:
    """The text of ``path`` on ``branch`` of a git repository (shallow clone in a temp dir).

    Raises:
        InfraError: the repository or branch cannot be read. ManifestError: no such file.
    """
    env = dict(os.environ, GIT_TERMINAL_PROMPT="0", LC_ALL="C")
    with tempfile.TemporaryDirectory(prefix="mlgate-canary-") as tmp:
        work = Path(tmp) / "repo"
        proc = subprocess.run(["git", "clone", "--quiet", "--depth", "1", "--branch", branch, "--", repository, str(work)],
                              capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            raise InfraError(with_git_output(f"cannot read branch {branch!r} of GitOps repository "
                                             f"{redact_url(repository)}", proc.stderr, "git clone failed"))
        target = resolve_in_repo(work, path)
        if not target.is_file():
            raise ManifestError(f"{path}: no such file in {redact_url(repository)} (branch {branch})")
        return read_text(target, path)


def wait_until_due(record: CanaryRecord, clock: Clock, *, max_wait: float,
                   sleep: Callable[[float], None] = time.sleep) -> float:
    """Sleep until ``record``'s next measurement is due, at most ``max_wait`` seconds; returns the
    seconds slept (for ``mlgate canary step --wait``)."""
    if record.next_due_at is None or record.status != "observing":
        return 0.0
    left = min(max_wait, record.next_due_at - timestamp(clock))
    if left <= 0:
        return 0.0
    sleep(left + 0.05)
    return left
