"""Training from the PR (issue 6): ``/train [--gpus N]``, ``/abort``, and the poll of running workflows.

``/train`` submits the WorkflowTemplate of ``train.argo`` for the PR head commit
(:func:`mlgate.edge.argo.submit_for_commit`; once per commit on the Argo side, once per comment
here) and keeps the ``mlgate/train`` commit status: pending with the Argo link, then success or
failure, followed by :func:`poll_trains` (a worker-pool thread, every ``train_poll_seconds``).
``/abort`` stops the PR's running workflows and the canaries it started.
"""

from __future__ import annotations

import json
from typing import Any

import structlog

from mlgate.core.commands import Command
from mlgate.core.config import ArgoBackend, Config, Promoters
from mlgate.core.errors import MlgateError, UsageError
from mlgate.core.policy import Decision
from mlgate.bot import promotion as promo
from mlgate.bot.handlers import canary
from mlgate.bot.handlers.common import (
    CONFIG_FILE, HandlerContext, Job, kv_update, set_commit_status, utcnow, with_periodic_lock,
)
from mlgate.edge import argo
from mlgate.edge.db import fencing

log = structlog.get_logger("mlgate.bot.handlers")

#: Commit status context of /train (the gates keep ``mlgate/gates``).
TRAIN_CONTEXT = "mlgate/train"
#: Store key listing the /train workflows whose final state is not known yet.
TRAIN_INDEX = "train:active"


def _train_promoters(cfg: Config) -> Promoters:
    """Who may ``/train`` and ``/abort`` a workflow: ``train_permission``, else the first environment's promoters."""
    return cfg.train_permission or (cfg.environments[0].promoters if cfg.environments else Promoters())


def argo_settings(job: Job, a: ArgoBackend) -> ArgoBackend:
    """``train.argo`` as the bot uses it: the token only from an allowed environment variable of the
    bot (never an ``MLGATE_*`` one, never a file), the server only from ``argo_servers`` when set.

    Raises:
        UsageError: the repository asks for a token variable or a server the bot does not allow.
    """
    return argo_settings_for(job.ctx.settings, a)


def argo_settings_for(s: Any, a: ArgoBackend) -> ArgoBackend:
    """:func:`argo_settings` from the bot's settings ``s`` (a retrain an alert started has no Job)."""
    allowed = list(getattr(s, "argo_token_envs", None) or ["ARGO_TOKEN"])
    name = a.token_env
    if name and (name.upper().startswith("MLGATE_") or name not in allowed):
        raise UsageError(f"train.argo.token_env {name!r} is not a variable this bot reads Argo tokens from "
                         f"(allowed: {', '.join(allowed)}); set token_env to one of them")
    servers = getattr(s, "argo_servers", None)
    if servers is not None:
        server = a.server.rstrip("/")
        if not any(server == x.rstrip("/") or server.startswith(x.rstrip("/") + "/") for x in servers):
            raise UsageError(f"train.argo.server {a.server} is not one this bot sends tokens to "
                             f"(argo_servers: {', '.join(servers) or 'none'})")
    return a.model_copy(update={"token_file": None})


def on_train(job: Job, cmd: Command) -> str:
    """``/train [--gpus N]``: submit the Argo WorkflowTemplate for the PR head commit."""
    cfg = job.config()
    if isinstance(cfg, str):
        return f"train: {job.no_policy(cmd.text, cfg)}"
    if cfg.train.backend != "argo" or cfg.train.argo is None:
        msg = (f"`/train` hands training to Argo Workflows, and `{CONFIG_FILE}` on the default branch does not "
               "set `train.backend: argo` (with `train.argo`: server, namespace, template). Train on CI with "
               "`mlgate train`, or add the Argo settings on the default branch.")
        job.say(promo.reply(f"`{cmd.text}` is not available", msg))
        job.audit(command=cmd.text, model=cfg.model, allowed=False, reasons=[msg], outcome="not available")
        return "train: not available (no train.backend: argo on the default branch)"
    scope = "train_permission" if cfg.train_permission else (
        f"promoters of {cfg.environments[0].name}" if cfg.environments else "default: write")
    decision = job.permission_for("train", _train_promoters(cfg), scope)
    pr = job.pr()
    record = dict(command=cmd.text, model=cfg.model, head_sha=pr.head_sha, gpus=cmd.gpus,
                  allowed=decision.allowed, reasons=decision.reasons)
    if not decision.allowed:
        job.say(promo.refusal(cmd.text, decision))
        job.audit(**record, outcome="refused")
        return f"train: refused ({decision.reasons[0]})"
    return _submit(job, cmd, cfg, decision, record)


def _submit(job: Job, cmd: Command, cfg: Config, decision: Decision, record: dict[str, Any]) -> str:
    """Submit the allowed ``/train``, remember the workflow, set ``mlgate/train``, reply."""
    ev, pr = job.ev, job.pr()
    settings = argo_settings(job, cfg.train.argo)  # type: ignore[arg-type]
    tracking = job.tracking_uri(cfg)
    if tracking is None:
        raise UsageError(f"the MLflow tracking URI in {CONFIG_FILE} ({cfg.tracking_uri}) is a local file store a "
                         "training pod cannot reach: set an http(s) tracking_uri")
    # the repository that holds the head commit: a fork's, for a PR from a fork
    repo_url = pr.head_repo_url
    if not repo_url:
        raise UsageError(f"cannot tell which repository holds head commit {pr.head_sha[:7]} of this PR (its fork "
                         "was deleted, or the bot cannot read it): push the branch to this repository and "
                         "comment `/train` again")
    # an attempt that was killed after Argo took the workflow finds it there: it is still this comment's
    marker = f"train:submitting:{job.delivery.id}"
    tried_before = job.store.kv_get(marker) == pr.head_sha
    if not tried_before:
        job.store.kv_set(marker, pr.head_sha)
    fencing.check()  # a stalled attempt whose delivery was taken over submits nothing
    sub = argo.submit_for_commit(settings, model=cfg.model, repo_url=repo_url, commit=pr.head_sha,
                                 command=None, tracking_uri=tracking, gpus=cmd.gpus)
    created = sub.created or tried_before
    _remember(job, sub, settings, cfg.model)
    finished = sub.phase in ("Succeeded", "Failed", "Error")
    state = ("success" if sub.phase == "Succeeded" else "failure") if finished else "pending"
    set_commit_status(job.forge, ev.repo, pr.head_sha, state, f"Argo workflow {sub.name}: {sub.phase}",
                      sub.ui_url, TRAIN_CONTEXT)
    short = pr.head_sha[:7]
    gpus = dict(sub.parameters).get("gpus") or (str(cmd.gpus) if cmd.gpus is not None else str(settings.gpus))
    if created:
        title = f"training `{cfg.model}` on Argo for `{short}`"
        body = (f"Submitted [{sub.name}]({sub.ui_url}) (WorkflowTemplate `{sub.template}`, namespace "
                f"`{sub.namespace}`, {gpus} GPU). The `{TRAIN_CONTEXT}` status of `{short}` follows it; "
                "`/abort` stops it.")
        outcome = "workflow submitted"
    else:
        title = f"training for `{short}` was already submitted"
        body = (f"[{sub.name}]({sub.ui_url}) already exists for this commit ({sub.phase}); nothing new was "
                "started. Push a new commit to train again.")
        outcome = "already submitted"
    job.say(promo.reply(title, body, decision))
    job.audit(**record, outcome=outcome, workflow=sub.name, url=sub.ui_url, phase=sub.phase)
    return f"train: {outcome} {sub.name} ({sub.phase})"


def _remember(job: Job, sub: Any, settings: ArgoBackend, model: str) -> None:
    """Keep the workflow in the store: under its own key, in the PR's list, and (until its end is
    seen) in :data:`TRAIN_INDEX` for :func:`poll_trains`."""
    ev, pr = job.ev, job.pr()
    key = f"train:wf:{sub.namespace}:{sub.name}"
    wf = {"name": sub.name, "namespace": sub.namespace, "url": sub.ui_url, "sha": pr.head_sha, "forge": ev.forge,
          "repo": ev.repo, "number": ev.number, "installation_id": ev.installation_id, "model": model,
          "argo": settings.model_dump(mode="json"), "phase": sub.phase, "done": False, "actor": ev.actor}

    def keep(old: Any) -> Any:
        if old and old.get("done"):
            return old
        return {**(old or {}), **wf, "done": False}

    wf = kv_update(job.ctx, key, keep)
    kv_update(job.ctx, f"train:pr:{ev.forge}:{ev.repo}:{ev.number}", lambda keys: sorted(set(keys or []) | {key}))
    if not wf.get("done"):
        kv_update(job.ctx, TRAIN_INDEX, lambda keys: sorted(set(keys or []) | {key}))


# --------------------------------------------------------------------------- /abort


def on_abort(job: Job, cmd: Command) -> str:
    """``/abort``: stop the canaries started from this PR and its running /train workflows."""
    cfg = job.config()
    if isinstance(cfg, str):
        return f"abort: {job.no_policy(cmd.text, cfg)}"
    canaries = canary.canaries_from_this_pr(job, cfg.model)
    workflows = running_workflows(job)
    if not canaries and not workflows:
        msg = "nothing to stop: no canary started from this PR is running, and no `/train` workflow of it is running"
        job.say(promo.reply(f"`{cmd.text}`", msg))
        job.audit(command=cmd.text, model=cfg.model, allowed=True, reasons=[], outcome="nothing to abort")
        return "abort: nothing to abort"
    outcomes, texts = [], []
    for rec in canaries:
        env = next((e for e in cfg.environments if e.name == rec.environment), None)
        with job.canary_lock(rec.model, rec.environment):
            out, text = canary.stop_canary(job, "abort", rec, env)
        outcomes.append(out)
        texts.append(text)
    if workflows:
        out, text = stop_workflows(job, cmd, workflows, _train_promoters(cfg))
        outcomes.append(out)
        texts.append(text)
    job.say("\n\n---\n\n".join(texts))
    return "; ".join(outcomes)


def running_workflows(job: Job) -> list[dict[str, Any]]:
    """The /train workflows of this PR whose end the bot has not seen yet."""
    ev = job.ev
    raw = job.store.kv_get(f"train:pr:{ev.forge}:{ev.repo}:{ev.number}")
    out = []
    for key in json.loads(raw) if raw else []:
        data = job.store.kv_get(key)
        wf = json.loads(data) if data else None
        if wf and not wf.get("done"):
            out.append({**wf, "key": key})
    return out


def stop_workflows(job: Job, cmd: Command, workflows: list[dict[str, Any]], promoters: Promoters) -> tuple[str, str]:
    """Stop the PR's running workflows when the commenter may; returns (outcome, comment text)."""
    ev = job.ev
    decision = job.permission_for("abort", promoters, "train_permission")
    if not decision.allowed:
        job.audit(command=cmd.text, allowed=False, reasons=decision.reasons, outcome="refused",
                  workflows=[w["name"] for w in workflows])
        return f"abort: refused ({decision.reasons[0]})", promo.refusal(cmd.text, decision)
    lines = []
    for wf in workflows:
        settings = ArgoBackend.model_validate(wf["argo"])
        fencing.check()
        st = argo.stop(settings, wf["name"], message=f"stopped by @{ev.actor} with /abort")
        if st.finished:
            lines.append(f"- [{wf['name']}]({wf['url']}) had already ended: {st.phase}")
        else:
            lines.append(f"- [{wf['name']}]({wf['url']}) is stopping (Argo ends its running step)")
            set_commit_status(job.forge, wf["repo"], wf["sha"], "failure", f"stopped by @{ev.actor} with /abort",
                              wf["url"], TRAIN_CONTEXT)
        job.audit(command=cmd.text, model=wf.get("model"), head_sha=wf["sha"], workflow=wf["name"],
                  allowed=True, reasons=[], outcome="workflow stopped" if not st.finished else "already ended",
                  phase=st.phase)
    text = promo.reply("training stopped", "\n".join(lines))
    return f"abort: stopped {', '.join(w['name'] for w in workflows)}", text


# --------------------------------------------------------------------------- the poll (a worker-pool thread)


def _read_state(wf: dict[str, Any]) -> tuple[Any, str | None, str | None] | None:
    """(Argo status or None when gone, commit state or None when unchanged, description);
    None when Argo cannot be asked now (unreachable, auth: the next pass asks again)."""
    settings = ArgoBackend.model_validate(wf["argo"])
    fencing.check()  # the poll's lock was taken over: read nothing more
    try:
        st = argo.get_status(settings, wf["name"])
        if st.finished:
            return st, ("success" if st.succeeded else "failure"), (
                f"Argo workflow {wf['name']} succeeded" if st.succeeded else st.failure_message())
        if st.phase != wf.get("phase"):
            return st, "pending", f"Argo workflow {wf['name']}: {st.phase}"
        return st, None, None
    except UsageError as e:  # the workflow is gone (deleted, garbage-collected)
        return None, "failure", str(e).splitlines()[0]
    except MlgateError as e:
        log.warning("train status not read", workflow=wf["name"], error=str(e).splitlines()[0])
        return None


def _follow(ctx: HandlerContext, key: str, wf: dict[str, Any], st: Any, state: str, description: str | None) -> bool:
    """Set ``mlgate/train`` to ``state``, keep the phase, audit the end; True when the workflow ended."""
    forge = ctx.forges(wf["forge"], wf.get("installation_id"))  # type: ignore[misc]
    set_commit_status(forge, wf["repo"], wf["sha"], state, description or state, wf["url"], TRAIN_CONTEXT)
    final = state != "pending"
    phase = st.phase if st is not None else "Missing"
    kv_update(ctx, key, lambda old: {**(old or wf), "phase": phase, "done": final})
    if final:
        ctx.store.audit({
            "at": utcnow().isoformat(), "forge": wf["forge"], "repo": wf["repo"], "pr": wf.get("number"),
            "delivery": None, "actor": "bot", "event": "train finished", "model": wf.get("model"),
            "head_sha": wf["sha"], "workflow": wf["name"], "phase": phase, "allowed": True, "reasons": [],
            "outcome": f"mlgate/train {state}: {description}",
        })
    return final


def poll_trains(ctx: HandlerContext) -> str:
    """Read the state of every ``/train`` workflow whose end the bot has not seen, and keep the
    ``mlgate/train`` commit status in step: pending (with the phase) → success, or failure with
    the failed node's message (:meth:`mlgate.core.argo_plan.WorkflowStatus.failure_message`).

    Returns a short text of what changed ("" when nothing did).
    """

    def run() -> str:
        raw = ctx.store.kv_get(TRAIN_INDEX)
        done: list[str] = []
        finished_keys: set[str] = set()
        for key in json.loads(raw) if raw else []:
            data = ctx.store.kv_get(key)
            wf = json.loads(data) if data else None
            if not wf or wf.get("done"):
                finished_keys.add(key)
                continue
            read = _read_state(wf)
            if read is None or read[1] is None:
                continue
            st, state, description = read
            if _follow(ctx, key, wf, st, state, description):  # type: ignore[arg-type]
                finished_keys.add(key)
            done.append(f"{wf['name']}: {state} ({description})")
        if finished_keys:
            kv_update(ctx, TRAIN_INDEX, lambda ks: sorted(set(ks or []) - finished_keys))
        return "; ".join(done)

    return with_periodic_lock(ctx, "periodic:train-poll", run)
