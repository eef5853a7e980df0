"""MLflow's model evaluator: which metric names ``mlflow.models.evaluate`` produces per ``model_type``.

Why names are read by running the evaluator (and not from a list, nor from MLflow's internals):
MLflow has no public API that lists the metrics its default evaluator computes. The names are
literals spread over private helpers (``mlflow/models/evaluation/evaluators/regressor.py``
``_get_regressor_metrics``, ``classifier.py`` ``_get_binary_classifier_metrics`` /
``_get_multiclass_classifier_metrics``, plus ``roc_auc``/``precision_recall_auc`` added from the
curves and ``score`` from the sklearn flavor in ``default_evaluator.py``); those moved between
MLflow 2 and 3 and which of them appear depends on the data (binary or multiclass labels) and on
the model (``predict_proba``, sklearn). The one supported, stable interface is
``mlflow.models.evaluate`` itself, so :func:`produced_metrics` calls it, exactly as
``mlgate validate`` does (same evaluator, same config, same :func:`gate_values` filter), on tiny
synthetic datasets with scikit-learn models (regression; binary and three-class classification,
with ``predict_proba``), in a child process against a throw-away SQLite store (no network, no
state of the caller's MLflow run touched). The result is cached per MLflow version in
``$XDG_CACHE_HOME/mlgate/`` (default ``~/.cache/mlgate/``), so the cost (about 10 s per model
type) is paid once per MLflow version.

Without full MLflow (``pip install 'mlgate[evaluate]'``: mlflow with pandas and scikit-learn)
the names cannot be read: :class:`EvaluatorUnavailable` says so.
"""

from __future__ import annotations

import json
import numbers
import os
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

#: The ``model_type`` values :class:`mlgate.core.config.Evaluation` allows, with the synthetic
#: cases each is evaluated on (labels of the evaluation data decide binary vs multiclass metrics).
CASES: dict[str, tuple[str, ...]] = {"classifier": ("binary", "multiclass"), "regressor": ("regression",)}

#: What to install when full MLflow is missing (the packaging extra).
EXTRA = "mlgate[evaluate]"


class EvaluatorUnavailable(Exception):
    """The evaluator's metric names cannot be read here (``str(e)`` says why, in one sentence)."""


def gate_values(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The metrics a gate can use from ``EvaluationResult.metrics``: every real number
    (numpy integers such as ``true_positives`` included, booleans excluded), as floats."""
    return {k: float(v) for k, v in metrics.items() if isinstance(v, numbers.Real) and not isinstance(v, bool)}


def mlflow_version() -> str | None:
    """The installed full ``mlflow`` distribution's version, None when it is not installed
    (``mlflow-skinny`` alone cannot evaluate models)."""
    try:
        return metadata.version("mlflow")
    except metadata.PackageNotFoundError:
        return None


def default_cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``$XDG_CACHE_HOME/mlgate`` (default ``~/.cache/mlgate``)."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mlgate"


def produced_metrics(model_types: Iterable[str], *, cache_dir: Path | None = None, timeout: float = 300.0,
                     log: Callable[[str], None] | None = None) -> dict[str, dict[str, list[str]]]:
    """Metric names ``mlflow.models.evaluate`` produces, per model type and case.

    Args:
        model_types: keys of :data:`CASES` (``classifier``, ``regressor``).
        cache_dir: where the per-MLflow-version cache lives (default :func:`default_cache_dir`);
            an unwritable cache is ignored.
        timeout: seconds the child process may take.
        log: told in one line when the evaluator is about to run (it takes seconds, not milliseconds).

    Returns:
        ``{model_type: {case: sorted names}}``, e.g. ``{"regressor": {"regression": [...]}}``.

    Raises:
        EvaluatorUnavailable: full MLflow (or pandas/scikit-learn) is not installed, or the
            evaluator failed on the synthetic data (the message says which).
    """
    wanted = sorted(set(model_types))
    unknown = [t for t in wanted if t not in CASES]
    if unknown:
        raise ValueError(f"unknown model_type {unknown[0]!r} (known: {', '.join(CASES)})")
    version = mlflow_version()
    if version is None:
        raise EvaluatorUnavailable(f"full MLflow is not installed (pip install '{EXTRA}')")
    cache = (cache_dir or default_cache_dir()) / f"evaluator-metrics-mlflow-{version}.json"
    known = _read_cache(cache)
    missing = [t for t in wanted if t not in known]
    if missing:
        if log is not None:
            log(f"mlgate: reading the metric names MLflow {version}'s evaluator produces for {', '.join(missing)} "
                f"(once per MLflow version, about 10 s; cached in {cache.parent})")
        known.update(_run_child(missing, timeout))
        _write_cache(cache, known)
    return {t: {case: list(names) for case, names in known[t].items()} for t in wanted}


def _read_cache(cache: Path) -> dict[str, dict[str, list[str]]]:
    """The cached names of each model type whose entry has the shape :func:`_child` writes (every case
    of :data:`CASES`, a list of names): a cache edited by hand, cut short or of another shape is
    computed again, never trusted (an empty list would turn every gate into an error)."""
    try:
        data = json.loads(cache.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {t: entry for t, entry in data.items()
            if t in CASES and isinstance(entry, dict) and set(entry) == set(CASES[t])
            and all(isinstance(v, list) and v and all(isinstance(n, str) for n in v) for v in entry.values())}


def _write_cache(cache: Path, known: dict[str, dict[str, list[str]]]) -> None:
    """Write the cache whole or not at all (a temporary file renamed over it), keeping the entries
    another process wrote meanwhile; an unwritable cache is ignored (computed again next time)."""
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        merged = {**_read_cache(cache), **known}
        fd, tmp = tempfile.mkstemp(prefix=cache.name + ".", suffix=".tmp", dir=cache.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(merged, f, indent=1, sort_keys=True)
            os.replace(tmp, cache)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError:
        pass


def _run_child(model_types: list[str], timeout: float) -> dict[str, dict[str, list[str]]]:
    # MLFLOW_* of the caller (a tracking server, the run `mlgate train` started) must not leak in.
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["PYTHONWARNINGS"] = "ignore"
    with tempfile.TemporaryDirectory(prefix="mlgate-evaluator-") as tmp:
        env["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp}/mlflow.db"
        try:
            proc = subprocess.run([sys.executable, "-m", "mlgate.edge.evaluator", tmp, *model_types],
                                  env=env, capture_output=True, text=True, timeout=timeout, cwd=tmp)
        except subprocess.TimeoutExpired:
            raise EvaluatorUnavailable(f"running mlflow.models.evaluate on synthetic data took over {timeout:.0f} s")
    if proc.returncode == 3:
        raise EvaluatorUnavailable(f"{proc.stdout.strip()} is not installed (pip install '{EXTRA}')")
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        raise EvaluatorUnavailable("mlflow.models.evaluate failed on synthetic data: "
                                   + (lines[-1] if lines else f"exit {proc.returncode}"))
    # the names are the child's last line: a library that prints to stdout must not make them unreadable
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    try:
        names = json.loads(lines[-1]) if lines else None
    except ValueError:
        names = None
    if not isinstance(names, dict):
        raise EvaluatorUnavailable("mlflow.models.evaluate on synthetic data printed no metric names")
    return names


def _child(tmp: str, model_types: list[str]) -> dict[str, dict[str, list[str]]]:
    """In the child process: evaluate a scikit-learn model per case, as ``mlgate validate`` does."""
    import logging
    import warnings

    warnings.simplefilter("ignore")
    import mlflow
    import mlflow.sklearn
    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LinearRegression, LogisticRegression

    logging.getLogger("mlflow").setLevel(logging.ERROR)
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a": rng.normal(size=60), "b": rng.normal(size=60)})
    labels = {
        "regression": (LinearRegression(), 2.0 * X["a"] - X["b"] + rng.normal(scale=0.1, size=60)),
        "binary": (LogisticRegression(), (X["a"] > 0).astype(int)),
        "multiclass": (LogisticRegression(), pd.Series(np.digitize(X["a"], [-0.4, 0.4]))),
    }
    out: dict[str, dict[str, list[str]]] = {}
    for model_type in model_types:
        out[model_type] = {}
        for case in CASES[model_type]:
            estimator, y = labels[case]
            path = os.path.join(tmp, case)
            mlflow.sklearn.save_model(estimator.fit(X, y), path, pip_requirements=[])
            with mlflow.start_run():
                result = mlflow.models.evaluate(
                    mlflow.pyfunc.load_model(path), X.assign(target=y), targets="target", model_type=model_type,
                    evaluators=["default"],
                    evaluator_config={"default": {"log_model_explainability": False, "log_explainer": False}},
                )
            out[model_type][case] = sorted(gate_values(result.metrics))
    return out


if __name__ == "__main__":  # the child process of _run_child
    try:
        names = _child(sys.argv[1], sys.argv[2:])
    except ImportError as e:
        print(e.name or "a module mlflow.models.evaluate needs")
        raise SystemExit(3)
    print(json.dumps(names))
