"""Follow the retrains alerts started (a worker-pool thread, every ``retrain_poll_seconds``):
run state → registered version → the same gates against the champion → a promotion PR.

How the retrained version is recognised: ``mlgate train`` tags the run and the model version
``mlgate.retrain_id=<retrain id>`` when ``MLGATE_RETRAIN_ID`` is set, which the bot passes to the
run (the WorkflowTemplate parameter ``retrain-id``; the ``mlgate_retrain_id`` input of a
``workflow_dispatch``; the variable ``MLGATE_RETRAIN_ID`` of a GitLab pipeline). The registry is
the source of truth: a version carrying the tag is the retrained one whatever the backend
reports; the backend's state only tells a failed run early (an Argo workflow Failed/Error, a
GitHub run concluded other than ``success``, a GitLab pipeline failed or canceled). A retrain that
registered nothing within ``timeout_hours`` is recorded failed.

Gates: :func:`mlgate.flows.validate.validate`, the flow of ``mlgate validate``, with the default
branch's ``validate`` section (the runs' logged metrics or ``validate.evaluation``), or with the
retrain policy's fresher ``evaluation_data`` (candidate and champion scored afresh on it); the
outcome is recorded on the version (``mlgate.gates``, the default branch's fingerprint,
``challenger`` when they pass). Passed: a promotion PR through the promotion engine
(:func:`mlgate.flows.promote.write_promotion`) whose body carries the alert, the gate table and
the champion's metrics; merged at once only with ``retrain.auto_merge: true``. Every outcome is
audited, noted on the alert's delivery (``mlgate bot deliveries``) and published on the
registered model for ``mlgate status``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import structlog

from mlgate.core import alerts
from mlgate.core.config import ArgoBackend, Config, Environment
from mlgate.core.errors import MlgateError, UsageError
from mlgate.core.promotion import Promotion, Trigger, gate_summary, gates_fingerprint, template_values
from mlgate.core.report import render_markdown
from mlgate.bot import promotion as promo
from mlgate.bot.handlers.common import HandlerContext, tracking_uri_for, with_periodic_lock
from mlgate.bot.handlers.retrain import audit, forge_for, policy, publish, retrain_store
from mlgate.edge.db import fencing
from mlgate.edge.db.retrains import RetrainRecord
from mlgate.edge.db.replies import PromotionOpenings
from mlgate.edge.forges import ForgeWriter
from mlgate.edge.forges.base import repo_path
from mlgate.flows.promote import write_promotion

log = structlog.get_logger("mlgate.bot.handlers")

RETRAIN_TAG = "mlgate.retrain_id"


def poll_retrains(ctx: HandlerContext) -> str:
    """One pass over the retrains in flight (one bot replica at a time: lock ``periodic:retrain-poll``).

    Returns a short text of what changed ("" when nothing did). One retrain's trouble (a registry
    or forge that does not answer) is logged and tried again at the next pass.
    """

    def run() -> str:
        done: list[str] = []
        for rec in retrain_store(ctx).active():
            try:
                text = follow(ctx, rec)
            except fencing.LeaseLost:
                raise
            except Exception as e:
                log.warning("retrain follow-up failed; next pass tries again", retrain=rec.id,
                            error=f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
                continue
            if text:
                done.append(f"{rec.id}: {text}")
        return "; ".join(done)

    return with_periodic_lock(ctx, "periodic:retrain-poll", run)


def _base(rec: RetrainRecord) -> dict[str, Any]:
    return {"forge": rec.forge, "repo": rec.repository, "delivery": rec.delivery_id, "model": rec.model,
            "environment": rec.environment, "retrain": rec.id}


def _end(ctx: HandlerContext, rec: RetrainRecord, status: str, outcome: str, event: str, tracking: str | None,
         **record: Any) -> str:
    """Record the end (or a step) of a retrain: the row, the audit trail, the delivery's outcome, the registry tag."""
    rs = retrain_store(ctx)
    rec = rs.update(rec.id, status=status, outcome=outcome, **{k: record.pop(k) for k in ("version", "promotion_pr")
                                                               if k in record})
    rs.note_delivery(rec.delivery_id, f"retrain {rec.id}: {outcome}")
    publish(ctx, rec, rec.model, rec.environment, rec.alert, f"{status}: {outcome}", tracking)
    audit(ctx, _base(rec), event=event, alert=rec.alert, allowed=status not in ("failed", "gates_failed"),
          reasons=[] if status not in ("failed", "gates_failed") else [outcome], outcome=outcome, **record)
    return outcome


def _run_failed(rec: RetrainRecord, forge: Any) -> str | None:
    """Why the backend says the run failed, or None (running, succeeded, or unknown)."""
    run = rec.run
    if run.get("kind") == "argo" and run.get("name"):
        from mlgate.edge import argo  # lazily: Hera is heavy

        fencing.check()
        try:
            st = argo.get_status(ArgoBackend.model_validate(run["argo"]), run["name"])
        except UsageError as e:  # deleted or garbage-collected: the registry still decides
            log.info("retrain workflow not found", retrain=rec.id, error=str(e).splitlines()[0])
            return None
        if st.finished and not st.succeeded:
            return f"Argo workflow {run['name']} {st.phase}: {st.failure_message()}"
        return None
    if run.get("kind") in ("github", "gitlab") and run.get("run_id"):
        from mlgate.edge.forges import ci_runs

        read = ci_runs.gitlab_pipeline_state if run["kind"] == "gitlab" else ci_runs.github_run_state
        state = read(forge, rec.repository, int(run["run_id"]))
        if state.finished and not state.succeeded:
            return state.detail
    return None


def follow(ctx: HandlerContext, rec: RetrainRecord) -> str:
    """Move one active retrain on; returns what happened ("" for nothing new)."""
    if rec.status == "submitting":  # its delivery is submitting it (or will, when retried)...
        d = ctx.store.get(rec.delivery_id)
        if d is None or d.status != "failed":
            return ""
        why = (d.error or "").splitlines()[0][:300] if d.error else "its last attempt failed"
        # ...unless that delivery failed for good: free the model for the next alert
        return _end(ctx, rec, "failed", f"never submitted: the alert's delivery failed ({why})", "retrain failed", None)
    forge = forge_for(ctx, rec.forge, rec.repository)
    cfg, _branch = policy(ctx, forge, rec.repository)
    if isinstance(cfg, str):
        return ""  # the policy cannot be read now: keep the retrain, say it at the next change
    tracking = tracking_uri_for(ctx.settings, cfg)
    if tracking is None or ctx.registry_factory is None:
        return ""
    reg = ctx.registry_factory(tracking)
    version = reg.find_by_tag(rec.model, RETRAIN_TAG, rec.id)
    if version is None:
        failed = _run_failed(rec, forge)
        if failed:
            return _end(ctx, rec, "failed", f"the retrain failed: {failed}", "retrain failed", tracking)
        env = _env(cfg, rec)
        limit = (env.retrain.timeout_hours if env and env.retrain else 12.0) * 3600
        if ctx.clock().timestamp() - rec.created_at > limit:
            return _end(ctx, rec, "failed", f"no version tagged {RETRAIN_TAG}={rec.id} within {limit / 3600:g} h",
                        "retrain failed", tracking)
        return ""
    if version.status.upper() != "READY":
        return ""  # registration still pending: next pass
    env = _env(cfg, rec)
    if env is None:
        return _end(ctx, rec, "failed", f"environment {rec.environment} is no longer in the policy",
                    "retrain failed", tracking, version=version.version)
    return _gate_and_promote(ctx, rec, cfg, env, forge, reg, version, tracking)


def _env(cfg: Config, rec: RetrainRecord) -> Environment | None:
    return next((e for e in cfg.environments if e.name == rec.environment), None)


def _gate(cfg: Config, env: Environment, reg: Any, version: Any, tracking: str) -> tuple[Any, Any, dict[str, float]]:
    """Gate ``version`` as ``mlgate validate`` does (:func:`mlgate.flows.validate.validate`: the default
    branch's gates against the champion; tags, ``challenger`` when they pass), on the retrain
    policy's ``evaluation_data`` when it names one. Returns (report, champion, champion's metrics).

    Raises:
        UsageError: the evaluation data cannot be read or scored. InfraError: MLflow unreachable.
    """
    from mlgate.core.config import Evaluation
    from mlgate.flows.project import Project
    from mlgate.flows.validate import validate

    gating = cfg
    data = env.retrain.evaluation_data if env.retrain else None
    if data:
        ev = (cfg.validate_.evaluation or Evaluation(data=data)).model_copy(update={"data": data})
        gating = cfg.model_copy(update={"validate_": cfg.validate_.model_copy(update={"evaluation": ev})})
    with tempfile.TemporaryDirectory(prefix="mlgate-retrain-") as d:
        project = Project(gating, Path(d) / ".mlgate.yml", tracking, reg)
        result = validate(project, version=version.version, log=lambda m: log.info("retrain gates", message=m))
    if gating is not cfg:  # the data is the governing policy's own: record the default branch's fingerprint
        reg.set_tags(cfg.model, version.version, {"mlgate.gates.fingerprint": gates_fingerprint(cfg)})
    report, champion = result.report, result.champion
    if champion is None:
        return report, None, {}
    if report.source == "logged":
        return report, champion, (reg.run_metrics(champion.run_id) if champion.run_id else {})
    return report, champion, {r.metric: r.champion for r in report.results if r.champion is not None}


def _gate_and_promote(ctx: HandlerContext, rec: RetrainRecord, cfg: Config, env: Environment, forge: Any, reg: Any,
                      version: Any, tracking: str) -> str:
    try:
        report, champion, champ_metrics = _gate(cfg, env, reg, version, tracking)
    except UsageError as e:
        return _end(ctx, rec, "gates_failed", f"version {version.version} could not be gated: "
                    f"{str(e).splitlines()[0]}", "retrain gates failed", tracking, version=version.version)
    if not report.passed:
        failed = "; ".join(r.message for r in report.failed)
        return _end(ctx, rec, "gates_failed", f"version {version.version} failed its gates: {failed}",
                    "retrain gates failed", tracking, version=version.version)
    version = reg.get_version(cfg.model, version.version)  # with the tags the gates wrote
    table = render_markdown(report)
    details = alerts.evidence_markdown(rec.alert, resolved_at=rec.alert_resolved_at, gate_table=table,
                                       champion=champion.version if champion else None,
                                       champion_metrics=champ_metrics, retrain=rec.id,
                                       run_link=rec.run.get("url"))
    url = rec.alert.get("generator_url") or None
    p = Promotion(cfg.model, version.version, env.name, env.registry_alias,
                  trigger=Trigger("alert", actor=None, repo=rec.repository, forge=rec.forge,
                                  url=url if url and url.startswith(("http://", "https://")) else None),
                  gates=gate_summary(version.tags), run_id=version.run_id,
                  model_uri=f"models:/{cfg.model}/{version.version}",
                  links=tuple(promo.mlflow_links(tracking, cfg.model, version.version, version.run_id)))
    values = template_values(cfg.model, version.version, storage_uri=version.storage_uri or version.source,
                             run_id=version.run_id)
    writer = ForgeWriter(lambda _repository: forge, mode=env.gitops.mode)
    openings = PromotionOpenings(ctx.store.engine)
    opening = openings.begin(rec.forge, repo_path(env.gitops.repository), p.branch, rec.id)
    result = write_promotion(p, env, values, writer, body=p.body(details))
    if not result.changed and result.url is None:
        return _end(ctx, rec, "promoted", f"version {version.version} passed its gates; {env.name} already runs it",
                    "retrain promoted", tracking, version=version.version)
    if result.landed:
        return _end(ctx, rec, "promoted", f"version {version.version} passed its gates; pushed {result.commit}",
                    "retrain promoted", tracking, version=version.version)
    openings.finish(opening, result.number, result.created)
    merged = _auto_merge(forge, rec, env, result)
    resolved = " (the alert resolved before the retrain finished)" if rec.alert_resolved_at else ""
    text = (f"version {version.version} passed its gates; promotion PR {result.url}"
            + (" merged (auto_merge)" if merged else " waits for approval") + resolved)
    return _end(ctx, rec, "promoted", text, "retrain promoted", tracking, version=version.version,
                promotion_pr=result.url)


def _auto_merge(forge: Any, rec: RetrainRecord, env: Environment, result: Any) -> bool:
    """Merge the promotion PR when the environment opted in (``retrain.auto_merge``)."""
    if env.retrain is None or not env.retrain.auto_merge or result.number is None:
        return False
    from mlgate.edge.forges import ci_runs

    try:
        ci_runs.merge_pull_request(forge, rec.forge, repo_path(env.gitops.repository), int(result.number))
    except MlgateError as e:
        log.warning("auto_merge failed; the promotion PR waits for a person", retrain=rec.id, error=str(e))
        return False
    return True
