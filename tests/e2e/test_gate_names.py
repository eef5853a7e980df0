"""Gate metric names against MLflow's evaluator (issue 11): `mlgate config check` names a gate the
configured `validate.evaluation` cannot produce, with a "did you mean", and README's list of
names is what the installed MLflow's evaluator produces."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from mlgate.core.config.gatenames import markdown, suggestion
from mlgate.edge import evaluator

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow  # runs mlflow.models.evaluate once per session (about 10 s)


@pytest.fixture(scope="module")
def cache_home(tmp_path_factory):
    """One evaluator cache for this module: computed by the first command, reused by the rest."""
    return tmp_path_factory.mktemp("xdg-cache")


def check(tmp_path: Path, cache_home: Path, text: str, *extra: str) -> subprocess.CompletedProcess:
    cfg = tmp_path / "ci.yml"  # not .mlgate.yml: messages must name the file given
    cfg.write_text(textwrap.dedent(text), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["XDG_CACHE_HOME"] = str(cache_home)
    return subprocess.run([sys.executable, "-m", "mlgate", "config", "check", "-c", str(cfg), *extra],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)


REGRESSOR = """\
    model: house-prices
    validate:
      evaluation:
        data: prices.csv
        targets: price
        model_type: regressor
      gates:
        - metric: rmse
          direction: lower
          max: 10
        - metric: r2_score
          min: 0.5
        - metric: mean_abs_error
          direction: lower
          max: 3
    """


def test_rmse_with_a_regressor_evaluation_gets_did_you_mean(tmp_path, cache_home):
    r = check(tmp_path, cache_home, REGRESSOR)
    assert r.returncode == 2, r.stdout + r.stderr
    cfg = tmp_path / "ci.yml"
    assert (f"{cfg}:8:15: gate 'rmse' is not a metric the regressor evaluation produces; "
            "did you mean 'root_mean_squared_error'?") in r.stderr
    assert (f"{cfg}:13:15: gate 'mean_abs_error' is not a metric the regressor evaluation produces; "
            "did you mean 'mean_absolute_error'?") in r.stderr
    assert "r2_score" not in r.stderr  # a name the evaluator produces passes
    assert "Traceback" not in r.stderr

    as_json = check(tmp_path, cache_home, REGRESSOR, "--output", "json")
    assert as_json.returncode == 2
    problems = json.loads(as_json.stdout)["problems"]
    assert [(p["line"], p["col"]) for p in problems] == [(8, 15), (13, 15)]


def test_evaluator_names_pass_and_logged_metrics_are_not_checked_without_evaluation(tmp_path, cache_home):
    ok = check(tmp_path, cache_home, """\
        model: wine
        validate:
          evaluation: {data: "data:evaluation_set", model_type: classifier}
          gates:
            - {metric: accuracy_score, min: 0.8}
            - {metric: log_loss, direction: lower, max_regression: "10%"}
            - {metric: true_positives, min: 3}
        """)
    assert ok.returncode == 0, ok.stderr
    assert "ok (model wine, 3 gates" in ok.stdout
    # no evaluation: gates read the runs' logged metrics, whose names are the training script's own
    logged = check(tmp_path, cache_home, """\
        model: wine
        validate:
          gates:
            - {metric: rmse, direction: lower, max: 3}
            - {metric: my_val_acc, min: 0.8}
        """)
    assert logged.returncode == 0, logged.stderr
    assert "warning" not in logged.stderr


def test_a_classifier_gate_on_a_regressor_name_lists_what_it_produces(tmp_path, cache_home):
    r = check(tmp_path, cache_home, """\
        model: wine
        validate:
          evaluation: {data: "data:evaluation_set", model_type: classifier}
          gates:
            - {metric: max_error, max: 3, direction: lower}
        """)
    assert r.returncode == 2
    assert "gate 'max_error' is not a metric the classifier evaluation produces (it produces: accuracy_score," in r.stderr


def test_without_full_mlflow_config_check_warns_and_passes(tmp_path, monkeypatch):
    from mlgate.cli import cli

    # what `pip install mlgate` without the extra looks like to the check: no "mlflow" distribution
    monkeypatch.setattr(evaluator, "mlflow_version", lambda: None)
    (tmp_path / "ci.yml").write_text(textwrap.dedent(REGRESSOR), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(cli, ["config", "check", "ci.yml"])
    assert r.exit_code == 0, r.output
    assert ("ci.yml: warning: gate metric names were not checked against the regressor evaluation: "
            "full MLflow is not installed (pip install 'mlgate[evaluate]')") in r.output
    assert r.exception is None or isinstance(r.exception, SystemExit)


def test_readme_lists_what_the_installed_mlflow_evaluator_produces(cache_home):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- evaluator-metrics:[^\n]*-->\n(.*?)<!-- /evaluator-metrics -->", readme, re.S)
    assert block, "README lost its generated list of evaluator metric names"
    produced = evaluator.produced_metrics(list(evaluator.CASES), cache_dir=cache_home / "mlgate")
    assert block.group(1) == markdown(produced), "regenerate it with `mlgate config metrics`"
    assert f"for MLflow {evaluator.mlflow_version()}" in readme
    # the names validate gates on: what mlflow.models.evaluate returned, the hand-written hints aside
    assert "root_mean_squared_error" in produced["regressor"]["regression"]
    assert "accuracy_score" in produced["classifier"]["multiclass"]


@pytest.mark.parametrize(("name", "hint"), [
    ("rmse", "root_mean_squared_error"), ("RMSE", "root_mean_squared_error"), ("mae", "mean_absolute_error"),
    ("mse", "mean_squared_error"), ("r2", "r2_score"), ("acc", "accuracy_score"), ("f1", "f1_score"),
    ("auc", "roc_auc"), ("accuracy", "accuracy_score"), ("f1score", "f1_score"), ("zzz", None),
])
def test_suggestions(name, hint):
    produced = {"root_mean_squared_error", "mean_absolute_error", "mean_squared_error", "r2_score",
                "accuracy_score", "f1_score", "roc_auc", "log_loss"}
    assert suggestion(name, produced) == hint


# ---- the evaluator name cache (~/.cache/mlgate) when it is corrupt, unwritable or shared
NAMES = {"regressor": {"regression": ["r2_score", "root_mean_squared_error"]},
         "classifier": {"binary": ["accuracy_score", "roc_auc"], "multiclass": ["accuracy_score"]}}


@pytest.fixture
def child(monkeypatch):
    """Counts the evaluator runs (each about 10 s for real); the cache is what these tests are about."""
    runs: list[list[str]] = []

    def run(model_types, timeout):
        runs.append(list(model_types))
        return {t: NAMES[t] for t in model_types}

    monkeypatch.setattr(evaluator, "_run_child", run)
    return runs


@pytest.mark.parametrize("content", ["null", "[]", '"x"', "{", '{"regressor": 5}', '{"regressor": {}}',
                                     '{"regressor": {"regression": "abc"}}', '{"regressor": {"regression": 5}}',
                                     '{"regressor": {"regression": [1, null]}}', '{"regressor": {"regression": []}}',
                                     '{"regressor": {"regression": ["x"], "binary": ["y"]}}'])
def test_a_cache_of_the_wrong_shape_is_computed_again_not_trusted_or_a_crash(tmp_path, child, content):
    # a JSON null crashed with AttributeError; {"regressor": {}} made every gate 'not a metric the
    # evaluation produces'; "abc" became the names a, b, c
    cache = tmp_path / "mlgate" / f"evaluator-metrics-mlflow-{evaluator.mlflow_version()}.json"
    cache.parent.mkdir()
    cache.write_text(content, encoding="utf-8")
    assert evaluator.produced_metrics(["regressor"], cache_dir=cache.parent) == {"regressor": NAMES["regressor"]}
    assert child == [["regressor"]]
    assert json.loads(cache.read_text(encoding="utf-8")) == {"regressor": NAMES["regressor"]}
    evaluator.produced_metrics(["regressor"], cache_dir=cache.parent)
    assert child == [["regressor"]]  # the rewritten cache is used


def test_an_unwritable_cache_is_ignored_and_another_process_entries_are_kept(tmp_path, child, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    assert evaluator.produced_metrics(["regressor"], cache_dir=blocker / "mlgate") == {"regressor": NAMES["regressor"]}
    # another `mlgate config check` wrote the classifier names while this one ran the evaluator
    cache_dir = tmp_path / "shared"
    cache = cache_dir / f"evaluator-metrics-mlflow-{evaluator.mlflow_version()}.json"

    def meanwhile(model_types, timeout):
        cache_dir.mkdir(exist_ok=True)
        cache.write_text(json.dumps({"classifier": NAMES["classifier"]}), encoding="utf-8")
        return {t: NAMES[t] for t in model_types}

    monkeypatch.setattr(evaluator, "_run_child", meanwhile)
    evaluator.produced_metrics(["regressor"], cache_dir=cache_dir)
    assert json.loads(cache.read_text(encoding="utf-8")) == NAMES
    assert [p.name for p in cache_dir.iterdir()] == [cache.name]  # no temporary file left behind


def test_output_before_the_names_does_not_hide_them(monkeypatch):
    import subprocess as sp

    noisy = "some library's banner\n" + json.dumps({"regressor": NAMES["regressor"]}) + "\n"
    monkeypatch.setattr(evaluator.subprocess, "run", lambda *a, **k: sp.CompletedProcess(a, 0, noisy, ""))
    assert evaluator._run_child(["regressor"], 5) == {"regressor": NAMES["regressor"]}
    monkeypatch.setattr(evaluator.subprocess, "run", lambda *a, **k: sp.CompletedProcess(a, 0, "no json", ""))
    with pytest.raises(evaluator.EvaluatorUnavailable, match="printed no metric names"):
        evaluator._run_child(["regressor"], 5)
