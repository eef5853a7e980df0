"""``mlgate validate``: gate a candidate model version against thresholds and the champion,
and record the outcome on it (tags ``mlgate.gates``, ``mlgate.gate.<metric>``,
``mlgate.gates.fingerprint``; alias ``challenger`` when every gate passes).
"""

from __future__ import annotations

import importlib
import logging
import re
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from mlgate.core import gates as gates_mod
from mlgate.core.errors import Refused, UsageError
from mlgate.core.promotion import gates_fingerprint
from mlgate.edge.evaluator import gate_values
from mlgate.edge.registry import VersionInfo, require_full_mlflow
from mlgate.flows.project import Project

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
        if not (str(version).isascii() and str(version).isdigit()):
            raise UsageError(f"--version must be a version number, not {version!r}")
        return reg.get_version(model, str(version))
    if alias is not None:
        info = reg.get_by_alias(model, alias)
        if info is None:
            if alias == "challenger":
                _no_challenger(project)
            raise UsageError(f"no version of {model} holds alias {alias!r}")
        return info
    latest = reg.latest_version(model)
    if latest is None:
        raise UsageError(f"{model} has no versions yet at {reg.shown_uri}: run 'mlgate train' first")
    return reg.get_version(model, latest.version)


def _no_challenger(project: Project) -> None:
    """Why no version holds ``challenger``: the newest version failed its gates (Refused, exit 1),
    or nothing was validated yet (UsageError, exit 2)."""
    reg, model = project.registry, project.config.model
    latest = reg.latest_version(model)
    if latest is not None:
        newest = reg.get_version(model, latest.version)
        if (newest.tags or {}).get("mlgate.gates") == "failed":
            raise Refused(f"no version of {model} holds alias 'challenger': the newest, version {newest.version}, failed "
                          "its gates (see 'mlgate validate' above or its mlgate.gate.* tags); train a better one, or "
                          "name a version with --version")
    raise UsageError(f"no version of {model} holds alias 'challenger': run 'mlgate validate' first (it sets "
                     "'challenger' on a version whose gates pass)")


def _evaluation_data(project: Project) -> tuple[Any, str, str]:
    """(DataFrame with features and target column, target column name, description)."""
    ev = project.config.validate_.evaluation
    assert ev is not None
    import pandas as pd  # lazily: pandas comes with full MLflow and only validate.evaluation needs it

    spec = ev.data
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", spec):  # a URL (https://, s3://...): pandas reads it (fsspec)
        try:
            df = pd.read_parquet(spec) if spec.split("?")[0].endswith((".parquet", ".pq")) else pd.read_csv(spec)
        except Exception as e:
            raise UsageError(f"validate.evaluation.data: cannot read {redact_url(spec)!r}: {type(e).__name__}: "
                             f"{str(e).splitlines()[0] if str(e) else ''}") from None
        if ev.targets not in df.columns:
            raise UsageError(f"validate.evaluation.data: {redact_url(spec)!r} has no target column {ev.targets!r}")
        return df, ev.targets, redact_url(spec)
    if ":" in spec and not Path(project.base_dir / spec).exists():
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
    import mlflow  # lazily: full MLflow (about 3 s to import) only for validate.evaluation
    from mlflow.exceptions import MlflowException

    logging.getLogger("mlflow").setLevel(logging.ERROR)

    mlflow.set_tracking_uri(project.tracking_uri)
    mlflow.set_registry_uri(project.tracking_uri)
    ev = project.config.validate_.evaluation
    assert ev is not None
    exp_id = project.registry.ensure_experiment(project.config.experiment_name, project.artifact_location())

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
    # the same filter `mlgate config check` lists the evaluator's names with (numpy ints included)
    return gate_values(result.metrics)


def validate(project: Project, *, version: str | None = None, alias: str | None = None,
             commit: str | None = None, log: Callable[[str], None] = print) -> ValidateResult:
    """Gate a candidate version against the champion and record the outcome on it.

    Records ``mlgate.gates=passed|failed`` and one ``mlgate.gate.<metric>`` tag per gate on
    the version, and sets alias ``challenger`` when all gates pass.

    Raises:
        UsageError: unknown version/alias, evaluation data not found, validate.evaluation without
            full MLflow (the message names ``mlgate[evaluate]``).
        InfraError: MLflow unreachable, version registration failed or timed out.
    """
    cfg, reg = project.config, project.registry
    if cfg.validate_.evaluation is not None:  # before any registry call: nothing recorded, exit 2
        require_full_mlflow("validate.evaluation (mlflow.models.evaluate)", "mlgate[evaluate]",
                            f"gate on the metrics the training run logged (remove validate.evaluation from "
                            f"{project.config_name})")
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
    # when the gates ran (and 'challenger' moved, if they passed): MLflow keeps no time for an alias
    tags["mlgate.gates.at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    reg.set_tags(cfg.model, candidate.version, tags)
    if report.passed:
        reg.set_alias(cfg.model, "challenger", candidate.version)
    return ValidateResult(report, candidate, champion)


