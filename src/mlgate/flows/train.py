"""``mlgate train``: run the user's training command inside a tracked MLflow run, register
the model version it logged, tag both with the git commit and CI job (or train on Argo).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from mlgate.core.argo_plan import progress_lines
from mlgate.core.ci import CIContext, source_repository
from mlgate.core.config import Config
from mlgate.core.errors import InfraError, MlgateError, UsageError
from mlgate.flows.project import Project, _git_value, current_ci, git_changes

class CommandFailed(MlgateError):
    """The user's training command exited non-zero; mlgate exits with the same code."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.exit_code = code if 0 < code < 256 else 1




@dataclass(frozen=True)
class TrainResult:
    model: str
    run_id: str
    model_version: str
    experiment_id: str
    model_uri: str
    git_commit: str | None
    #: the checkout had uncommitted changes to tracked files (None: not a git checkout)
    git_dirty: bool | None = None


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def check_clean(project: Project, *, require_clean: bool, warn: Callable[[str], None], what: str) -> bool | None:
    """Whether the checkout of ``project`` has uncommitted changes to tracked files (None outside
    git). Dirty: warns on stderr that ``what`` (the run, or the Argo workflow) does not match the
    commit it names, or, with ``require_clean``, refuses before anything starts.

    Raises:
        UsageError: dirty and ``require_clean`` (exit 2; no run, version or workflow was made).
    """
    changes = git_changes(project.base_dir)
    if changes is None:
        return None
    if not changes:
        return False
    shown = ", ".join(c[3:] for c in changes[:5]) + (f" and {len(changes) - 5} more" if len(changes) > 5 else "")
    if require_clean:
        raise UsageError(f"the working tree has uncommitted changes ({shown}); --require-clean refuses to train: "
                         "commit them (or drop --require-clean); nothing was started")
    warn(f"mlgate: warning: the working tree has uncommitted changes ({shown}): {what} "
         "(commit first, or pass --require-clean to refuse)")
    return True


def _command(cfg: Config, override: Sequence[str], config_name: str = ".mlgate.yml") -> list[str]:
    if override:
        argv = list(override)
    else:
        cmd = cfg.train.command
        if cmd is None:
            raise UsageError(f"no training command: give one after '--' or set train.command in {config_name}")
        try:
            argv = shlex.split(cmd) if isinstance(cmd, str) else [str(c) for c in cmd]
        except ValueError as e:
            raise UsageError(f"train.command cannot be split like a shell would: {e}") from None
    if not argv or not argv[0].strip():
        raise UsageError("the training command is empty: give one after '--' or set train.command")
    return argv


def _ci_tags(ci: CIContext, *, run: bool) -> dict[str, str]:
    """Tags naming the commit, branch and CI job: on the run (with MLflow's own
    ``mlflow.source.git.*`` and ``mlgate.ci``) or on the model version."""
    tags: dict[str, str] = {}
    if ci.commit:
        tags["mlgate.git_commit"] = ci.commit
        if run:
            tags["mlflow.source.git.commit"] = ci.commit
    if ci.branch:
        tags["mlgate.git_branch"] = ci.branch
        if run:
            tags["mlflow.source.git.branch"] = ci.branch
    if ci.job_url:
        tags["mlgate.ci_job_url"] = ci.job_url
    source = source_repository(ci)
    if source is not None:  # how the bot finds the .mlgate.yml of a registry event's model (issue 13)
        tags["mlgate.source_forge"], tags["mlgate.source_repo"] = source
    if ci.system and run:
        tags["mlgate.ci"] = ci.system
    return tags


def _retrain_tag(env: Mapping[str, str]) -> dict[str, str]:
    """``mlgate.retrain_id`` from ``MLGATE_RETRAIN_ID`` (set by the bot's retrain workflow or
    dispatch): how the bot finds the version a retrain registered. Empty: no tag."""
    rid = (env.get("MLGATE_RETRAIN_ID") or "").strip()
    return {"mlgate.retrain_id": rid} if rid else {}


def _run_command(reg: Any, run_id: str, argv: list[str], cwd: Any, env: Mapping[str, str]) -> None:
    """Run the training command; a command that cannot run or fails marks the run FAILED
    (KILLED on Ctrl-C) and raises UsageError or :class:`CommandFailed`."""
    sys.stdout.flush()
    try:
        proc = subprocess.run(argv, cwd=cwd, env=env)
        code = proc.returncode
    except FileNotFoundError:
        reg.end_run(run_id, "FAILED")
        raise UsageError(f"training command not found: {argv[0]!r}; run {run_id} marked FAILED") from None
    except OSError as e:  # not executable, a directory, exec format error
        reg.end_run(run_id, "FAILED")
        raise UsageError(f"cannot run training command {argv[0]!r}: {e.strerror or e}; run {run_id} marked FAILED") from None
    except KeyboardInterrupt:
        reg.end_run(run_id, "KILLED")
        raise
    if code != 0:
        reg.end_run(run_id, "FAILED")
        raise CommandFailed(code if code > 0 else 128 - code,
                            f"mlgate: training command exited with {code}; run {run_id} marked FAILED")


def train(project: Project, command: Sequence[str] = (), *, environ: Mapping[str, str] | None = None,
          log: Callable[[str], None] = print, require_clean: bool = False,
          warn: Callable[[str], None] = _stderr) -> TrainResult:
    """Run the training command inside a tracked MLflow run and register a model version.

    The command runs in the config's directory with ``MLFLOW_TRACKING_URI``, ``MLFLOW_RUN_ID``
    and ``MLFLOW_EXPERIMENT_ID`` exported, so its own ``mlflow`` calls land in the run; its
    output streams through. The run is tagged with the git commit, branch and CI job URL; the
    new model version with ``mlgate.git_commit`` and ``mlgate.ci_job_url``. From a checkout with
    uncommitted changes both are tagged ``mlgate.git_dirty=true`` (``false`` when clean) and a
    warning goes to ``warn``; ``require_clean`` refuses instead.

    Raises:
        CommandFailed: the command exited non-zero (the run is marked FAILED; same exit code).
        UsageError: no command, the command logged no model, or a dirty tree with ``require_clean``.
        InfraError: MLflow unreachable, registration failed or timed out.
    """
    cfg = project.config
    env = dict(os.environ if environ is None else environ)
    if cfg.train.backend == "argo" and env.get("MLGATE_TRAIN_BACKEND") != "local":
        # The WorkflowTemplate's step sets MLGATE_TRAIN_BACKEND=local, so the pod trains here.
        check_clean(project, require_clean=require_clean, warn=warn,
                    what="the Argo workflow trains the commit, without them")
        return train_on_argo(project, command, environ=env, log=log)
    argv = _command(cfg, command, project.config_name)
    exe = argv[0]
    found = shutil.which(exe, path=env.get("PATH")) if os.sep not in exe else (exe if os.path.exists(
        os.path.join(project.base_dir, exe)) else None)
    if found is None:
        raise UsageError(f"training command not found: {exe!r} (looked in PATH from {project.base_dir})")
    dirty = check_clean(project, require_clean=require_clean, warn=warn,
                        what="the run and model version are tagged mlgate.git_dirty=true, and mlgate.git_commit "
                             "names a commit without them")
    dirty_tag = {} if dirty is None else {"mlgate.git_dirty": str(dirty).lower()}
    ci = current_ci(project.base_dir, env)
    reg = project.registry
    exp_id = reg.ensure_experiment(cfg.experiment_name, project.artifact_location())
    run_tags = {"mlgate.model": cfg.model, **_ci_tags(ci, run=True), **dirty_tag, **_retrain_tag(env)}
    run_id = reg.create_run(exp_id, run_tags)
    log(f"mlgate: run {run_id} started in experiment {cfg.experiment_name!r} ({reg.shown_uri})")

    child_env = dict(env)
    child_env.update(
        MLFLOW_TRACKING_URI=project.tracking_uri,
        MLFLOW_REGISTRY_URI=project.tracking_uri,
        MLFLOW_RUN_ID=run_id,
        MLFLOW_EXPERIMENT_ID=exp_id,
        MLGATE_MODEL=cfg.model,
    )
    _run_command(reg, run_id, argv, project.base_dir, child_env)

    models = reg.logged_models(exp_id, run_id)
    if not models:
        reg.end_run(run_id, "FAILED")
        raise UsageError(
            f"the training command logged no model in run {run_id}: call mlflow.<flavor>.log_model(..., name='model') "
            "inside the run (MLFLOW_RUN_ID is set for you)"
        )
    logged = models[-1]
    if reg.run_status(run_id) == "RUNNING":
        reg.end_run(run_id, "FINISHED")
    version_tags = {"mlgate.run_id": run_id, **_ci_tags(ci, run=False), **dirty_tag, **_retrain_tag(env)}
    info = reg.register(
        cfg.model,
        source=logged.artifact_location,
        run_id=run_id,
        model_id=logged.model_id,
        tags=version_tags,
    )
    info = reg.wait_ready(cfg.model, info.version, cfg.validate_.registration_timeout)
    log(f"mlgate: registered {cfg.model} version {info.version} from run {run_id}")
    return TrainResult(cfg.model, run_id, info.version, exp_id, info.model_uri, ci.commit, dirty)


def train_on_argo(project: Project, command: Sequence[str] = (), *, environ: Mapping[str, str] | None = None,
                  log: Callable[[str], None] = print, poll_seconds: float = 5.0) -> TrainResult:
    """``train.backend: argo``: submit the WorkflowTemplate for this commit, follow it, and
    return the model version its ``mlgate train`` step registered (tagged with the commit).

    Submitting twice for the same commit follows the existing workflow (see
    :func:`mlgate.edge.argo.submit_for_commit`).

    Raises:
        UsageError: no commit or git remote; WorkflowFailed (exit 1): the workflow failed;
        InfraError: Argo Server or MLflow unreachable; the workflow succeeded but registered nothing.
    """
    from mlgate.edge import argo  # lazily: Hera is heavy and only train.backend argo needs it

    cfg = project.config
    assert cfg.train.argo is not None
    env = dict(os.environ if environ is None else environ)
    ci = current_ci(project.base_dir, env)
    if not ci.commit:
        raise UsageError("train.backend argo needs a git commit: run inside a git checkout")
    repo_url = _git_value(["remote", "get-url", "origin"], project.base_dir)
    if not repo_url:
        raise UsageError(f"train.backend argo needs a git remote 'origin' in {project.base_dir} for the cluster to clone")
    top = _git_value(["rev-parse", "--show-toplevel"], project.base_dir)
    config_path = os.path.relpath(project.path, top) if top else None
    sub = argo.submit_for_commit(
        cfg.train.argo, model=cfg.model, repo_url=repo_url, commit=ci.commit,
        command=list(command) or cfg.train.command, tracking_uri=project.tracking_uri, config_path=config_path,
    )
    log(f"mlgate: {'submitted' if sub.created else 'following'} Argo workflow {sub.name}: {sub.ui_url}")
    previous: list[Any] = [None]

    def progress(st: Any) -> None:
        for line in progress_lines(previous[0], st):
            log(line)
        previous[0] = st

    poll = float(env.get("MLGATE_ARGO_POLL_SECONDS") or poll_seconds)
    final = argo.wait(cfg.train.argo, sub.name, poll_seconds=poll, on_progress=progress)
    if not final.succeeded:
        raise argo.WorkflowFailed(f"Argo workflow {sub.name} {final.phase}: {final.failure_message()} ({sub.ui_url})")
    info = project.registry.find_by_commit(cfg.model, ci.commit)
    if info is None:
        raise InfraError(f"Argo workflow {sub.name} succeeded but no version of {cfg.model} is tagged "
                         f"mlgate.git_commit={ci.commit} at {project.registry.shown_uri}")
    log(f"mlgate: Argo workflow {sub.name} registered {cfg.model} version {info.version} from run {info.run_id}")
    return TrainResult(cfg.model, info.run_id or "", info.version, "", info.model_uri, ci.commit)


