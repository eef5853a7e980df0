"""The main job: train → validate → register → promote, and status.

Imperative shell: each function gathers what the pure core needs (from MLflow, git, the
file system), calls the core (:mod:`mlgate.core.gates`, :mod:`mlgate.core.manifests`,
:mod:`mlgate.core.report`) and carries out its decision. The CLI (:mod:`mlgate.cli.pipeline`)
parses arguments and prints; CI actions, GitLab templates and Argo steps call the CLI.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from mlgate.core import gates as gates_mod
from mlgate.core.ci import CIContext, ci_context
from mlgate.core.config import Config, Environment, load_file
from mlgate.core.errors import InfraError, MlgateError, Refused, UsageError
from mlgate.edge.registry import Registry, VersionInfo, resolve_tracking_uri


class CommandFailed(MlgateError):
    """The user's training command exited non-zero; mlgate exits with the same code."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.exit_code = code if 0 < code < 256 else 1


@dataclass
class Project:
    """A loaded ``.mlgate.yml`` with its directory and registry."""

    config: Config
    path: Path
    tracking_uri: str
    registry: Registry

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    @classmethod
    def load(cls, path: str | Path, environ: Mapping[str, str] | None = None, model: str | None = None,
             *, create_store: bool = False) -> "Project":
        """Load the config at ``path``; ``model`` overrides its registered model name.

        Raises ConfigError (exit 2), UsageError for a ``model`` that is not a valid name.
        """
        p = Path(path)
        cfg = load_file(p)
        if model is not None and model != cfg.model:
            import re

            from mlgate.core.config import NAME_PATTERN

            if not re.fullmatch(NAME_PATTERN, model):
                raise UsageError(f"--model {model!r} is not a valid registered model name ({NAME_PATTERN})")
            cfg = cfg.model_copy(update={"model": model})
        uri = resolve_tracking_uri(cfg.tracking_uri, p.resolve().parent, environ, create=create_store)
        return cls(cfg, p.resolve(), uri, Registry(uri))

    def artifact_location(self) -> str | None:
        """Artifact root for a new experiment in an embedded (sqlite/file) store: ``.mlgate/artifacts``."""
        if self.tracking_uri.startswith(("http://", "https://", "databricks")):
            return None
        loc = self.base_dir / ".mlgate" / "artifacts"
        loc.mkdir(parents=True, exist_ok=True)
        return loc.as_uri()


def _git_value(args: Sequence[str], cwd: Path) -> str | None:
    try:
        proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() or None if proc.returncode == 0 else None


def current_ci(cwd: Path, environ: Mapping[str, str] | None = None) -> CIContext:
    """CI context from the environment, falling back to the local git checkout."""
    env = os.environ if environ is None else environ
    event = None
    event_path = env.get("GITHUB_EVENT_PATH")
    if event_path and Path(event_path).is_file():
        try:
            event = json.loads(Path(event_path).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            event = None
    ctx = ci_context(env, event)
    commit = ctx.commit or _git_value(["rev-parse", "HEAD"], cwd)
    branch = ctx.branch or _git_value(["rev-parse", "--abbrev-ref", "HEAD"], cwd)
    return CIContext(ctx.system, commit, branch, ctx.job_url)


# --------------------------------------------------------------------------- train


@dataclass(frozen=True)
class TrainResult:
    model: str
    run_id: str
    model_version: str
    experiment_id: str
    model_uri: str
    git_commit: str | None


def _command(cfg: Config, override: Sequence[str]) -> list[str]:
    if override:
        argv = list(override)
    else:
        cmd = cfg.train.command
        if cmd is None:
            raise UsageError("no training command: give one after '--' or set train.command in .mlgate.yml")
        try:
            argv = shlex.split(cmd) if isinstance(cmd, str) else [str(c) for c in cmd]
        except ValueError as e:
            raise UsageError(f"train.command cannot be split like a shell would: {e}") from None
    if not argv or not argv[0].strip():
        raise UsageError("the training command is empty: give one after '--' or set train.command")
    return argv


def train(project: Project, command: Sequence[str] = (), *, environ: Mapping[str, str] | None = None,
          log: Callable[[str], None] = print) -> TrainResult:
    """Run the training command inside a tracked MLflow run and register a model version.

    The command runs in the config's directory with ``MLFLOW_TRACKING_URI``, ``MLFLOW_RUN_ID``
    and ``MLFLOW_EXPERIMENT_ID`` exported, so its own ``mlflow`` calls land in the run; its
    output streams through. The run is tagged with the git commit, branch and CI job URL; the
    new model version with ``mlgate.git_commit`` and ``mlgate.ci_job_url``.

    Raises:
        CommandFailed: the command exited non-zero (the run is marked FAILED; same exit code).
        UsageError: no command, or the command logged no model.
        InfraError: MLflow unreachable, registration failed or timed out.
    """
    cfg = project.config
    env = dict(os.environ if environ is None else environ)
    if cfg.train.backend == "argo" and env.get("MLGATE_TRAIN_BACKEND") != "local":
        # The WorkflowTemplate's step sets MLGATE_TRAIN_BACKEND=local, so the pod trains here.
        return train_on_argo(project, command, environ=env, log=log)
    argv = _command(cfg, command)
    import shutil

    exe = argv[0]
    found = shutil.which(exe, path=env.get("PATH")) if os.sep not in exe else (exe if os.path.exists(
        os.path.join(project.base_dir, exe)) else None)
    if found is None:
        raise UsageError(f"training command not found: {exe!r} (looked in PATH from {project.base_dir})")
    ci = current_ci(project.base_dir, env)
    reg = project.registry
    exp_id = reg.ensure_experiment(cfg.experiment_name, project.artifact_location())
    run_tags = {"mlgate.model": cfg.model}
    if ci.commit:
        run_tags["mlflow.source.git.commit"] = ci.commit
        run_tags["mlgate.git_commit"] = ci.commit
    if ci.branch:
        run_tags["mlflow.source.git.branch"] = ci.branch
        run_tags["mlgate.git_branch"] = ci.branch
    if ci.job_url:
        run_tags["mlgate.ci_job_url"] = ci.job_url
    if ci.system:
        run_tags["mlgate.ci"] = ci.system
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
    sys.stdout.flush()
    try:
        proc = subprocess.run(argv, cwd=project.base_dir, env=child_env)
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
    version_tags = {"mlgate.run_id": run_id}
    if ci.commit:
        version_tags["mlgate.git_commit"] = ci.commit
    if ci.branch:
        version_tags["mlgate.git_branch"] = ci.branch
    if ci.job_url:
        version_tags["mlgate.ci_job_url"] = ci.job_url
    info = reg.register(
        cfg.model,
        source=logged.artifact_location,
        run_id=run_id,
        model_id=logged.model_id,
        tags=version_tags,
    )
    info = reg.wait_ready(cfg.model, info.version, cfg.validate_.registration_timeout)
    log(f"mlgate: registered {cfg.model} version {info.version} from run {run_id}")
    return TrainResult(cfg.model, run_id, info.version, exp_id, info.model_uri, ci.commit)


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
    from mlgate.edge import argo
    from mlgate.core.argo_plan import progress_lines

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


# --------------------------------------------------------------------------- validate


@dataclass
class ValidateResult:
    report: gates_mod.GateReport
    candidate: VersionInfo
    champion: VersionInfo | None


def pick_version(project: Project, version: str | None, alias: str | None, commit: str | None = None) -> VersionInfo:
    """The version asked for: ``version``, else the one holding ``alias``, else the newest one
    registered for ``commit`` (tag ``mlgate.git_commit``), else the newest."""
    reg, model = project.registry, project.config.model
    if commit is not None:
        info = reg.find_by_commit(model, commit)
        if info is None:
            raise UsageError(f"no version of {model} was registered for commit {commit} (tag mlgate.git_commit)")
        return info
    if version is not None:
        if not str(version).isdigit():
            raise UsageError(f"--version must be a version number, not {version!r}")
        return reg.get_version(model, str(version))
    if alias is not None:
        info = reg.get_by_alias(model, alias)
        if info is None:
            hint = (": run 'mlgate validate' first (it sets 'challenger' on a version whose gates pass)"
                    if alias == "challenger" else "")
            raise UsageError(f"no version of {model} holds alias {alias!r}{hint}")
        return info
    latest = reg.latest_version(model)
    if latest is None:
        raise UsageError(f"{model} has no versions yet at {reg.shown_uri}: run 'mlgate train' first")
    return reg.get_version(model, latest.version)


def _evaluation_data(project: Project) -> tuple[Any, str, str]:
    """(DataFrame with features and target column, target column name, description)."""
    ev = project.config.validate_.evaluation
    assert ev is not None
    import pandas as pd

    spec = ev.data
    if ":" in spec and not Path(project.base_dir / spec).exists():
        import importlib

        module_name, func_name = spec.split(":", 1)
        sys.path.insert(0, str(project.base_dir))
        try:
            module = importlib.import_module(module_name)
            func = getattr(module, func_name)
        except (ImportError, AttributeError) as e:
            raise UsageError(f"validate.evaluation.data: cannot import {spec!r}: {e}") from None
        finally:
            sys.path.remove(str(project.base_dir))
        try:
            X, y = func()
            df = pd.DataFrame(X).copy()
        except Exception as e:  # user code: any failure is a usage problem, in one line
            raise UsageError(f"validate.evaluation.data: {spec}() failed or did not return (features, targets): "
                             f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
        target = ev.targets if ev.targets not in df.columns else "__mlgate_target__"
        df[target] = list(y)
        return df, target, spec
    path = (project.base_dir / spec).resolve()
    if not path.is_file():
        raise UsageError(f"validate.evaluation.data: no such file {spec!r}")
    try:
        df = pd.read_parquet(path) if path.suffix in (".parquet", ".pq") else pd.read_csv(path)
    except Exception as e:
        raise UsageError(f"validate.evaluation.data: cannot read {spec!r}: {type(e).__name__}: "
                         f"{str(e).splitlines()[0] if str(e) else ''}") from None
    if ev.targets not in df.columns:
        raise UsageError(f"validate.evaluation.data: {spec!r} has no target column {ev.targets!r}")
    return df, ev.targets, spec


def _evaluate_version(project: Project, info: VersionInfo, data: Any, target: str) -> dict[str, float]:
    import logging
    import warnings

    import mlflow

    logging.getLogger("mlflow").setLevel(logging.ERROR)

    mlflow.set_tracking_uri(project.tracking_uri)
    mlflow.set_registry_uri(project.tracking_uri)
    ev = project.config.validate_.evaluation
    assert ev is not None
    exp_id = project.registry.ensure_experiment(project.config.experiment_name, project.artifact_location())
    from mlflow.exceptions import MlflowException

    try:
        return _run_evaluation(mlflow, warnings, exp_id, info, data, target, ev)
    except (ValueError, TypeError, KeyError, MlflowException) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UsageError(f"scoring {info.model} v{info.version} on validate.evaluation.data failed: {first}") from None


def _run_evaluation(mlflow: Any, warnings: Any, exp_id: str, info: VersionInfo, data: Any, target: str,
                    ev: Any) -> dict[str, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with mlflow.start_run(experiment_id=exp_id, run_name=f"mlgate-evaluate-v{info.version}",
                              tags={"mlgate.evaluates": f"{info.model}/{info.version}"}):
            result = mlflow.models.evaluate(
                info.model_uri,
                data,
                targets=target,
                model_type=ev.model_type,
                evaluators=["default"],
                evaluator_config={"default": {"log_model_explainability": False, "log_explainer": False}},
            )
    return {k: float(v) for k, v in result.metrics.items() if isinstance(v, (int, float))}


def validate(project: Project, *, version: str | None = None, alias: str | None = None,
             commit: str | None = None, log: Callable[[str], None] = print) -> ValidateResult:
    """Gate a candidate version against the champion and record the outcome on it.

    Records ``mlgate.gates=passed|failed`` and one ``mlgate.gate.<metric>`` tag per gate on
    the version, and sets alias ``challenger`` when all gates pass.

    Raises:
        UsageError: unknown version/alias, evaluation data not found.
        InfraError: MLflow unreachable, version registration failed or timed out.
    """
    cfg, reg = project.config, project.registry
    candidate = pick_version(project, version, alias, commit)
    candidate = reg.wait_ready(cfg.model, candidate.version, cfg.validate_.registration_timeout)
    champion = reg.get_by_alias(cfg.model, "champion")
    is_champion = champion is not None and champion.version == candidate.version
    if is_champion:
        log(f"mlgate: version {candidate.version} holds the champion alias itself: relative gates do not apply")
        champion = None
    ev = cfg.validate_.evaluation
    if ev is not None:
        data, target, desc = _evaluation_data(project)
        log(f"mlgate: scoring v{candidate.version}" + (f" and champion v{champion.version}" if champion else "")
            + f" on {desc} ({len(data)} rows)")
        cand_metrics = _evaluate_version(project, candidate, data, target)
        champ_metrics = _evaluate_version(project, champion, data, target) if champion else None
        source, evaluation_data = "evaluation", desc
    else:
        cand_metrics = reg.run_metrics(candidate.run_id) if candidate.run_id else {}
        champ_metrics = (reg.run_metrics(champion.run_id) if champion.run_id else {}) if champion else None
        source, evaluation_data = "logged", None
    report = gates_mod.evaluate(
        cfg.validate_.gates,
        cand_metrics,
        champ_metrics,
        model=cfg.model,
        candidate_version=candidate.version,
        candidate_run=candidate.run_id,
        champion_version=champion.version if champion else None,
        source=source,
        evaluation_data=evaluation_data,
        candidate_is_champion=is_champion,
        available=sorted(cand_metrics),
    )
    tags = gates_mod.outcome_tags(report)
    tags["mlgate.gates.fingerprint"] = gates_fingerprint(cfg)
    reg.set_tags(cfg.model, candidate.version, tags)
    if report.passed:
        reg.set_alias(cfg.model, "challenger", candidate.version)
    return ValidateResult(report, candidate, champion)


# --------------------------------------------------------------------------- promote


def gates_fingerprint(cfg: Config) -> str:
    """A short hash of ``validate`` (gates and evaluation): a version validated under other
    gates must be validated again before it is promoted."""
    import hashlib

    blob = json.dumps(cfg.validate_.model_dump(mode="json", exclude={"registration_timeout"}), sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class PromoteResult:
    model: str
    version: str
    environment: str
    alias: str
    commit: str | None
    url: str | None
    changed: bool
    diff: str
    repository: str
    path: str


def template_values(info: VersionInfo) -> dict[str, str]:
    """Placeholders for manifest value templates."""
    return {
        "model_uri": info.model_uri,
        "storage_uri": info.storage_uri or info.source,
        "version": info.version,
        "model": info.model,
        "run_id": info.run_id or "",
    }


def promotion_message(info: VersionInfo, env: Environment, gate_summary: str) -> str:
    """The structured commit message of a promotion (subject + git trailers)."""
    return (
        f"promote {info.model} v{info.version} to {env.name}\n\n"
        f"mlgate promotes model version {info.version} of {info.model} to {env.name} "
        f"(alias {env.registry_alias}).\n\n"
        f"Model: {info.model}\n"
        f"Model-Version: {info.version}\n"
        f"Environment: {env.name}\n"
        f"Gates: {gate_summary}\n"
        f"Source-Run: {info.run_id or 'unknown'}\n"
        f"Model-URI: {info.model_uri}\n"
    )


def gate_summary(info: VersionInfo) -> str:
    """``passed (3/3)`` style summary from the version's gate tags."""
    results = [v for k, v in info.tags.items() if k.startswith("mlgate.gate.")]
    ok = sum(1 for v in results if v.startswith("passed"))
    return f"{info.tags.get('mlgate.gates', 'unknown')} ({ok}/{len(results)})"


def default_promotion_version(project: Project, env: Environment) -> tuple[str | None, str | None]:
    """(version, alias) to promote when none is given: the version held by the required
    environment, else the ``challenger``."""
    if env.requires:
        return None, project.config.environment(env.requires).registry_alias
    return None, "challenger"


def promote(project: Project, to: str, *, version: str | None = None, alias: str | None = None,
            now: Callable[[], float] = time.time) -> PromoteResult:
    """Promote a model version to environment ``to`` through its GitOps repository.

    Refuses a version whose gates did not pass, or that the ``requires`` environment does not
    hold. Edits the environment's manifest minimally, commits with a structured message and
    pushes (mode ``push``); then moves the environment's alias and tags the version with
    the promotion commit.

    Raises:
        Refused (exit 1), UsageError/ManifestError (exit 2), InfraError (exit 3).
    """
    from mlgate.core import manifests
    from mlgate.edge.git import Change, resolve_repository, writer_for

    cfg, reg = project.config, project.registry
    try:
        env = cfg.environment(to)
    except KeyError as e:
        raise UsageError(str(e.args[0])) from None
    if env.canary is not None and reg.get_by_alias(cfg.model, env.registry_alias) is not None:
        # the first version of a canary environment has no primary to share traffic with
        raise Refused(
            f"environment {to!r} promotes through a canary: use 'mlgate canary start --to {to}' "
            "(or '/promote' in a pull request), which moves traffic step by step"
        )
    if version is None and alias is None:
        version, alias = default_promotion_version(project, env)
    info = pick_version(project, version, alias)
    info = reg.wait_ready(cfg.model, info.version, cfg.validate_.registration_timeout)
    gates = info.tags.get("mlgate.gates")
    if gates != "passed":
        if gates is None:
            why = f"were not evaluated: run 'mlgate validate --version {info.version}' first"
        else:
            failed = sorted(k[len("mlgate.gate."):] for k, v in info.tags.items()
                            if k.startswith("mlgate.gate.") and v.startswith("failed"))
            why = f"failed ({', '.join(failed) or 'see its mlgate.gate.* tags'})"
        raise Refused(f"refusing to promote {cfg.model} v{info.version} to {to}: its gates {why}")
    recorded = info.tags.get("mlgate.gates.fingerprint")
    if recorded != gates_fingerprint(cfg):
        why = "validate.gates changed since it was validated" if recorded else "its gate result records no gates fingerprint"
        raise Refused(
            f"refusing to promote {cfg.model} v{info.version} to {to}: {why}; "
            f"run 'mlgate validate --version {info.version}' again"
        )
    if env.requires:
        req = cfg.environment(env.requires)
        holder = reg.get_by_alias(cfg.model, req.registry_alias)
        if holder is None or holder.version != info.version:
            held = f"holds v{holder.version}" if holder else "holds no version"
            raise Refused(
                f"refusing to promote {cfg.model} v{info.version} to {to}: {env.requires} must hold it first "
                f"({env.requires} {held}; alias {req.registry_alias!r})"
            )
    values = template_values(info)
    filename = env.gitops.path

    def edit(text: str) -> str:
        return manifests.target_edit(text, env.gitops.target, values, filename).text

    repo = resolve_repository(env.gitops.repository, project.base_dir)
    change = Change(repo, env.gitops.branch, env.gitops.path, promotion_message(info, env, gate_summary(info)), edit)
    result = writer_for(env.gitops.mode).write(change)
    reg.set_alias(cfg.model, env.registry_alias, info.version)
    tags: dict[str, str] = {}
    if result.changed or f"mlgate.promoted.{env.name}.at" not in info.tags:
        # a no-op promotion keeps the time and commit of the one that put the version there
        tags[f"mlgate.promoted.{env.name}.at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now()))
        if result.commit:
            tags[f"mlgate.promoted.{env.name}.commit"] = result.commit
        if result.url:
            tags[f"mlgate.promoted.{env.name}.url"] = result.url
    if tags:
        reg.set_tags(cfg.model, info.version, tags)
    return PromoteResult(cfg.model, info.version, env.name, env.registry_alias, result.commit, result.url,
                         result.changed, result.diff, repo, env.gitops.path)


# --------------------------------------------------------------------------- status


@dataclass(frozen=True)
class EnvironmentStatus:
    environment: str
    alias: str
    version: str | None
    gates: str | None
    commit: str | None
    promoted_at: str | None


def status(project: Project) -> list[EnvironmentStatus]:
    """For each environment: the version holding its alias, its gate result and promotion commit."""
    cfg, reg = project.config, project.registry
    out = []
    for env in cfg.environments:
        info = reg.get_by_alias(cfg.model, env.registry_alias)
        if info is None:
            out.append(EnvironmentStatus(env.name, env.registry_alias, None, None, None, None))
            continue
        out.append(EnvironmentStatus(
            env.name, env.registry_alias, info.version, info.tags.get("mlgate.gates"),
            info.tags.get(f"mlgate.promoted.{env.name}.commit"), info.tags.get(f"mlgate.promoted.{env.name}.at"),
        ))
    return out
