"""Alerts into retrains (issue 14): an Alertmanager notification → the ``retrain`` policy of the
alert's environment (``.mlgate.yml`` on the model repository's default branch) → one retrain
submitted (Argo WorkflowTemplate, as ``/train``; GitHub ``workflow_dispatch``; a GitLab pipeline), or a recorded
reason why not (no policy, not matched, cooldown, in flight). :mod:`.retrain_follow` follows the
retrain to its registered version, its gates and its promotion PR.

Which model and environment: the alert's labels ``mlgate_model``/``mlgate_environment`` (bot.yml
``alert_model_label``/``alert_environment_label``); which repository: bot.yml ``models``
(model → ``github:OWNER/NAME``). Alerts that name neither, or a model the bot does not know, are
recorded in the audit table and otherwise ignored.

Once only: the delivery id already folds repeat notifications (:func:`mlgate.core.alerts.delivery_id`);
the retrain's id is derived from the alert's firing (:func:`mlgate.edge.db.retrains.retrain_id`), so
the same firing through another group or a retried delivery finds its retrain; the decision and
the insert run under the lock ``retrain:<model>`` (and a unique index allows one active retrain
per model). An Argo submission is idempotent (a deterministic workflow per retrain); a GitHub
dispatch or a GitLab pipeline is not, so an attempt that finds one already tried does not start it again.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import structlog

from mlgate.core import alerts
from mlgate.core import config as cfgmod
from mlgate.core.config import Config, Environment
from mlgate.core.errors import ConfigError, UsageError
from mlgate.core.redact import SHAPES_ONLY
from mlgate.bot.handlers.common import CONFIG_FILE, HandlerContext, MalformedPayload, Retryable
from mlgate.bot.handlers.common import tracking_uri_for
from mlgate.bot.handlers.train import argo_settings_for
from mlgate.edge.db import fencing
from mlgate.edge.db.retrains import InFlight, RetrainRecord, RetrainStore, retrain_id
from mlgate.edge.db.store import Delivery

log = structlog.get_logger("mlgate.bot.handlers")

#: Seconds a delivery waits for the lock of a model's retrains before it is retried later.
LOCK_WAIT = 10.0
#: Registered-model tag holding, per environment, the last alert and where its retrain stands.
STATUS_TAG = "mlgate.retrain.{env}"


def retrain_store(ctx: HandlerContext) -> RetrainStore:
    """The :class:`~mlgate.edge.db.retrains.RetrainStore` on the bot's database (created once)."""
    with ctx._guard:
        rs = getattr(ctx, "_retrains", None)
        if rs is None:
            rs = RetrainStore(ctx.store.engine, getattr(ctx.store, "redactor", SHAPES_ONLY))
            object.__setattr__(ctx, "_retrains", rs)
        return rs


def model_repository(ctx: HandlerContext, model: str) -> tuple[str, str] | None:
    """(forge, repository) of ``model`` from bot.yml ``models`` (``github:OWNER/NAME``), or None."""
    ref = (getattr(ctx.settings, "models", None) or {}).get(model)
    if not ref:
        return None
    forge, _, repo = ref.partition(":")
    return (forge, repo) if repo else ("github", forge)


def forge_for(ctx: HandlerContext, forge: str, repo: str) -> Any:
    """A forge client for ``repo``: an alert names no GitHub App installation, so the bot looks it up
    for the repository (:func:`mlgate.edge.forges.github_installation_id`; a ``github_token`` needs none)."""
    from mlgate.edge.forges import github_installation_id

    installation = github_installation_id(ctx.settings, repo) if forge == "github" else None
    return ctx.forges(forge, installation)  # type: ignore[misc]


def audit(ctx: HandlerContext, base: dict[str, Any], **record: Any) -> None:
    """One audit record of the retrain path (actor ``alertmanager``)."""
    ctx.store.audit({"at": ctx.clock().isoformat(), "actor": "alertmanager", "pr": None, **base, **record})


def publish(ctx: HandlerContext, rec: RetrainRecord | None, model: str, environment: str, alert: dict[str, Any],
            state: str, tracking_uri: str | None) -> None:
    """Tag the registered model with ``mlgate.retrain.<env>`` (JSON: the last alert, the retrain it
    started or the one in its way, and where it stands) for ``mlgate status``. Best effort: a
    registry that cannot be written now is logged, never the cause of a retry."""
    if not tracking_uri or ctx.registry_factory is None:
        return
    import json

    data = {"alert": alert.get("name"), "alert_started_at": alert.get("starts_at"), "state": state,
            "retrain": rec.id if rec else None, "version": rec.version if rec else None,
            "promotion_pr": rec.promotion_pr if rec else None, "at": ctx.clock().isoformat()}
    try:
        fencing.check()
        ctx.registry_factory(tracking_uri).set_model_tag(model, STATUS_TAG.format(env=environment),
                                                        json.dumps(data, sort_keys=True))
    except fencing.LeaseLost:
        raise
    except Exception as e:
        log.warning("retrain status not written to the registry", model=model, error=f"{type(e).__name__}: {e}")


def policy(ctx: HandlerContext, forge: Any, repo: str) -> tuple[Config | str, str]:
    """(``.mlgate.yml`` of the default branch or why it cannot be read, the default branch)."""
    branch = forge.default_branch(repo)
    text = forge.read_file(repo, CONFIG_FILE, branch)
    if text is None:
        return f"there is no `{CONFIG_FILE}` on the default branch `{branch}` of {repo}", branch
    try:
        return cfgmod.parse(text, CONFIG_FILE), branch
    except ConfigError as e:
        return f"`{CONFIG_FILE}` on the default branch `{branch}` of {repo} is invalid: {str(e).splitlines()[0]}", branch


# --------------------------------------------------------------------------- the delivery


def on_alert(delivery: Delivery, ctx: HandlerContext) -> str:
    """Handle one stored Alertmanager notification; returns the delivery's outcome.

    Resolved alerts mark the retrains they started (the retrain goes on; its PR says so); each
    firing alert is decided and, when the policy says so, starts one retrain.

    Raises:
        MalformedPayload: the stored body is not an Alertmanager payload (never retried).
        Retryable: the model's retrain lock stayed busy; the forge or Argo is unavailable.
    """
    n = alerts.parse(delivery.payload)
    if not isinstance(n, alerts.Notification):
        raise MalformedPayload(n.message)
    rs = retrain_store(ctx)
    out: list[str] = []
    for a in n.resolved:
        for rid in rs.note_resolved(a.key, a.ends_at):
            rec = rs.get(rid)
            audit(ctx, _base(delivery, rec), event="alert resolved", alert=a.evidence(), retrain=rid,
                  allowed=True, reasons=[], outcome="alert resolved before the retrain finished; the retrain goes on")
            out.append(f"{a.name}: resolved; retrain {rid} goes on")
    for a in n.firing:
        out.append(_on_firing(delivery, ctx, a))
    if not out:
        out.append("no firing alert and no retrain to note")
    return "; ".join(out)


def _base(delivery: Delivery, rec: RetrainRecord | None = None, **more: Any) -> dict[str, Any]:
    base = {"forge": "alertmanager", "repo": None, "delivery": delivery.id}
    if rec is not None:
        base.update(forge=rec.forge, repo=rec.repository, model=rec.model, environment=rec.environment)
    return {**base, **more}


def _on_firing(delivery: Delivery, ctx: HandlerContext, a: alerts.Alert) -> str:
    s = ctx.settings
    tgt = alerts.target(a, getattr(s, "alert_model_label", alerts.MODEL_LABEL),
                        getattr(s, "alert_environment_label", alerts.ENVIRONMENT_LABEL))
    if tgt is None:
        why = "the alert has no model and environment labels (mlgate_model, mlgate_environment)"
        audit(ctx, _base(delivery), event="alert", alert=a.evidence(), allowed=False, reasons=[why], outcome="ignored")
        return f"{a.name}: ignored ({why})"
    where = model_repository(ctx, tgt.model)
    base = _base(delivery, model=tgt.model, environment=tgt.environment)
    if where is None:
        why = f"model {tgt.model} is not in the bot's `models` (bot.yml): no repository to read its retrain policy from"
        audit(ctx, base, event="alert", alert=a.evidence(), allowed=False, reasons=[why], outcome="ignored")
        return f"{a.name}: ignored ({why})"
    forge_name, repo = where
    base.update(forge=forge_name, repo=repo)
    forge = forge_for(ctx, forge_name, repo)
    cfg, branch = policy(ctx, forge, repo)
    env = _environment(cfg, tgt)
    if isinstance(env, str):
        audit(ctx, base, event="alert", alert=a.evidence(), allowed=False, reasons=[env], outcome="no retrain policy")
        return f"{a.name}: no retrain ({env})"
    assert isinstance(cfg, Config)
    lock, owner = f"retrain:{tgt.model}", f"{delivery.id}#{delivery.token}"
    deadline = time.monotonic() + LOCK_WAIT
    while not ctx.store.acquire_lock(lock, owner, ctx.lock_ttl, ctx.clock(), keep=True, supersedes=f"{delivery.id}#"):
        if time.monotonic() > deadline:
            raise Retryable(f"the retrains of {tgt.model} are busy (another alert is being decided)", 1.0)
        time.sleep(0.05)
    try:
        with fencing.fenced(fencing.LockFence(ctx.store.engine, lock, owner)):
            return _decide_and_start(delivery, ctx, a, cfg, env, forge, forge_name, repo, branch, base)
    finally:
        ctx.store.release_lock(lock, owner)


def _environment(cfg: Config | str, tgt: alerts.Target) -> Environment | str:
    if isinstance(cfg, str):
        return cfg
    if cfg.model != tgt.model:
        return f"{CONFIG_FILE} governs model {cfg.model}, not {tgt.model}"
    try:
        env = cfg.environment(tgt.environment)
    except KeyError as e:
        return str(e.args[0])
    if env.retrain is None:
        return f"environment {env.name} has no `retrain` policy in {CONFIG_FILE}"
    return env


def _decide_and_start(delivery: Delivery, ctx: HandlerContext, a: alerts.Alert, cfg: Config, env: Environment,
                      forge: Any, forge_name: str, repo: str, branch: str, base: dict[str, Any]) -> str:
    policy_ = env.retrain
    assert policy_ is not None
    rs = retrain_store(ctx)
    rid = retrain_id(a.key, cfg.model, env.name)
    tracking = tracking_uri_for(ctx.settings, cfg)
    rec = rs.get(rid)
    if rec is None:
        past = [r.past() for r in rs.of_model(cfg.model)]
        now: datetime = ctx.clock()
        d = alerts.decide(a, [(r.alertname, r.matchers) for r in policy_.alerts], policy_.cooldown_hours, past, now)
        if d.verdict != "start":
            blocking = rs.get(d.blocking) if d.blocking else None
            if d.verdict != "not_matched":
                publish(ctx, blocking, cfg.model, env.name, a.evidence(), f"{d.verdict}: {d.reason}", tracking)
            audit(ctx, base, event="alert", alert=a.evidence(), allowed=False, reasons=[d.reason], outcome=d.verdict,
                  retrain=d.blocking)
            return f"{a.name}: {d.verdict.replace('_', ' ')} ({d.reason})"
        try:
            rec, _ = rs.start(id=rid, model=cfg.model, environment=env.name, forge=forge_name, repository=repo,
                              backend=policy_.backend, alert_key=a.key, alert=a.evidence(), delivery_id=delivery.id,
                              now=now.timestamp())
        except InFlight as e:
            audit(ctx, base, event="alert", alert=a.evidence(), allowed=False, reasons=[str(e)], outcome="in_flight")
            return f"{a.name}: in flight ({e})"
    if rec.status != "submitting":
        return f"{a.name}: retrain {rid} already started ({rec.status})"
    try:
        run, text = _submit(ctx, rec, cfg, policy_, forge, forge_name, repo, branch, tracking)
    except UsageError as e:  # the policy or the backend refuses: retrying cannot help
        why = str(e).splitlines()[0]
        rec = rs.update(rid, status="failed", outcome=f"not submitted: {why}")
        publish(ctx, rec, cfg.model, env.name, a.evidence(), f"failed: {why}", tracking)
        audit(ctx, base, event="retrain failed", alert=a.evidence(), retrain=rid, allowed=False, reasons=[why],
              outcome="retrain not submitted")
        return f"{a.name}: retrain {rid} not submitted ({why})"
    rec = rs.update(rid, status="submitted", run=run, outcome=text)
    publish(ctx, rec, cfg.model, env.name, a.evidence(), f"submitted: {text}", tracking)
    audit(ctx, base, event="retrain submitted", alert=a.evidence(), retrain=rid, backend=policy_.backend,
          run=run.get("url"), allowed=True, reasons=[], outcome=text)
    return f"{a.name}: retrain {rid} started: {text}"


def _submit(ctx: HandlerContext, rec: RetrainRecord, cfg: Config, policy_: Any, forge: Any, forge_name: str,
            repo: str, branch: str, tracking: str | None) -> tuple[dict[str, Any], str]:
    """Start the training run; returns (what to follow it by, a sentence).

    Raises:
        UsageError: no backend settings, an unusable tracking URI, a refused submission.
    """
    from mlgate.edge.forges import ci_runs

    rs = retrain_store(ctx)
    ref = policy_.ref or branch
    if policy_.backend == "argo":
        from mlgate.edge import argo  # lazily: Hera is heavy

        if cfg.train.argo is None:
            raise UsageError(f"retrain backend argo needs train.argo (server, namespace, template) in {CONFIG_FILE}")
        if tracking is None:
            raise UsageError(f"the MLflow tracking URI in {CONFIG_FILE} ({cfg.tracking_uri}) is a local file store a "
                             "training pod cannot reach: set an http(s) tracking_uri")
        settings = argo_settings_for(ctx.settings, cfg.train.argo)
        commit = ci_runs.branch_head(forge, forge_name, repo, ref)
        fencing.check()
        sub = argo.submit_for_commit(settings, model=cfg.model, repo_url=forge.web_url(repo) + ".git", commit=commit,
                                     command=None, tracking_uri=tracking, retrain=rec.id)
        run = {"kind": "argo", "name": sub.name, "namespace": sub.namespace, "url": sub.ui_url, "commit": commit,
               "argo": settings.model_dump(mode="json")}
        return run, f"Argo workflow {sub.name} ({sub.ui_url}) for {commit[:7]}"
    kind = policy_.backend
    if forge_name != kind:
        raise UsageError(f"retrain backend {kind} needs the model repository on {kind}, not {forge_name}")
    if rec.run.get("dispatching"):
        # an earlier attempt may have started it (its answer was lost): never start a CI run twice
        return ({"kind": kind, "run_id": None, "url": None},
                f"the {kind} run was started earlier on {ref} (followed by its registered version)")
    rs.update(rec.id, run={"kind": kind, "dispatching": True})
    if kind == "gitlab":
        r = ci_runs.start_gitlab_pipeline(forge, repo, ref, {**policy_.inputs, "MLGATE_RETRAIN_ID": rec.id})
        what = f"GitLab pipeline {r.run_id} on {ref}"
    else:
        r = ci_runs.dispatch_github_workflow(forge, repo, policy_.workflow, ref,
                                             {**policy_.inputs, "mlgate_retrain_id": rec.id})
        what = f"GitHub workflow {policy_.workflow} on {ref}"
    return {"kind": kind, "run_id": r.run_id, "url": r.url, "ref": ref}, what + (f": {r.url}" if r.url else "")
