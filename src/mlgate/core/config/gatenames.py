"""Gate metric names against the names ``mlflow.models.evaluate`` produces (pure).

With ``validate.evaluation`` set, ``mlgate validate`` gates on the evaluator's numbers only
(:func:`mlgate.flows.validate.validate`: candidate and champion are scored afresh and the runs'
logged metrics are not consulted), so every gate's ``metric`` must be a name the evaluator
produces for the configured ``model_type``; a gate on a metric only the training run logs would
fail at validate. Without ``validate.evaluation`` gates read the runs' logged metrics, whose names
are the training script's own: nothing is checked.

The names are handed in (read from the installed MLflow by :mod:`mlgate.edge.evaluator`); the
common short names below only give "did you mean" hints, they never decide what is valid.
"""

from __future__ import annotations

import difflib
from typing import Any, Collection, Mapping

from mlgate.core.config.located import _position, _value_position
from mlgate.core.config.models import Config
from mlgate.core.errors import Problem

#: Short names people write for the evaluator's metrics (hints only).
SHORT_NAMES: dict[str, str] = {
    "rmse": "root_mean_squared_error",
    "mse": "mean_squared_error",
    "mae": "mean_absolute_error",
    "mape": "mean_absolute_percentage_error",
    "r2": "r2_score",
    "acc": "accuracy_score",
    "accuracy": "accuracy_score",
    "f1": "f1_score",
    "precision": "precision_score",
    "recall": "recall_score",
    "auc": "roc_auc",
    "roc_auc_score": "roc_auc",
    "pr_auc": "precision_recall_auc",
    "logloss": "log_loss",
    "count": "example_count",
}


def suggestion(name: str, produced: Collection[str]) -> str | None:
    """The produced name a gate called ``name`` most likely means: a known short name
    (``rmse`` → ``root_mean_squared_error``), else the closest spelling (difflib), else None."""
    alias = SHORT_NAMES.get(name.lower().replace("-", "_"))
    if alias in produced:
        return alias
    close = difflib.get_close_matches(name.lower(), sorted(produced), n=1, cutoff=0.6)
    return close[0] if close else None


def gate_metric_problems(cfg: Config, data: Any, filename: str,
                         produced: Mapping[str, Collection[str]]) -> list[Problem]:
    """One :class:`Problem` per gate whose metric the configured evaluation does not produce.

    Args:
        cfg: the validated config; nothing is checked without ``validate.evaluation``.
        data: its ruamel tree (positions of the gates' ``metric`` values).
        filename: named in each problem.
        produced: model type → metric names the evaluator produces (see :mod:`mlgate.edge.evaluator`);
            a model type missing here is not checked.

    Returns:
        Problems located at each unknown ``metric`` value, e.g. ``gate 'rmse' is not a metric the
        regressor evaluation produces; did you mean 'root_mean_squared_error'?``.
    """
    ev = cfg.validate_.evaluation
    if ev is None or ev.model_type not in produced:
        return []
    names = set(produced[ev.model_type])
    problems: list[Problem] = []
    for i, gate in enumerate(cfg.validate_.gates):
        if gate.metric in names:
            continue
        loc = ("validate", "gates", i, "metric")
        line, col = _value_position(data, loc) or _position(data, loc)
        msg = f"gate '{gate.metric}' is not a metric the {ev.model_type} evaluation produces"
        hint = suggestion(gate.metric, names)
        msg += f"; did you mean '{hint}'?" if hint else f" (it produces: {', '.join(sorted(names))})"
        problems.append(Problem(filename, line + 1, col + 1, msg))
    return problems


def markdown(produced: Mapping[str, Mapping[str, Collection[str]]]) -> str:
    """The README's list of metric names per model type: one bullet per model type, names in
    backticks; a name only some cases produce says which (e.g. ``binary labels only``)."""
    lines = []
    for model_type in sorted(produced):
        cases = produced[model_type]
        every = set.intersection(*(set(v) for v in cases.values())) if cases else set()
        words = []
        for name in sorted(set().union(*(set(v) for v in cases.values()))):
            only = [c for c, v in sorted(cases.items()) if name in v]
            words.append(f"`{name}`" + ("" if name in every else f" ({', '.join(only)} labels only)"))
        lines.append(f"- `{model_type}`: " + ", ".join(words))
    return "\n".join(lines) + "\n"
