"""``mlgate reconcile`` on real git repositories and a real MLflow server: the cases a new user
met (issue 9 review): a shallow clone, a hand edit that replaced the promotion, a promotion
commit naming a version the registry does not have."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from mlgate.core.promotion import Promotion

MLGATE = str(Path(sys.executable).parent / "mlgate")
ISVC = "apiVersion: serving.kserve.io/v1beta1\nkind: InferenceService\nmetadata: {{name: m}}\nspec:\n  predictor:\n" \
       "    model:\n      storageUri: s3://models/m/{v}\n"


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@x"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


def commit(repo: Path, text: str, message: str) -> None:
    (repo / "isvc.yaml").write_text(text)
    git(repo, "add", "isvc.yaml")
    git(repo, "commit", "-q", "-m", message)


@pytest.fixture
def setup(tmp_path, mlflow_server):
    from mlflow import MlflowClient

    model = f"rec-{uuid.uuid4().hex[:8]}"
    client = MlflowClient(tracking_uri=mlflow_server, registry_uri=mlflow_server)
    client.create_registered_model(model)
    for v in (1, 2):
        client.create_model_version(model, source=f"s3://models/{model}/{v}")
    repo = tmp_path / "gitops"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    commit(repo, ISVC.format(v="bootstrap"), "initial")
    commit(repo, ISVC.format(v=1), Promotion(model, "1", "staging", "staging").message())
    commit(repo, ISVC.format(v=2), Promotion(model, "2", "staging", "staging").message())
    return model, repo, client, {**os.environ, "MLFLOW_TRACKING_URI": mlflow_server}


def run(cwd: Path, env: dict, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MLGATE, "reconcile", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_a_shallow_clone_is_refused_with_what_to_do(setup, tmp_path):
    model, repo, client, env = setup
    shallow = tmp_path / "shallow"
    subprocess.run(["git", "clone", "-q", "--depth", "1", f"file://{repo}", str(shallow)], check=True)
    proc = run(shallow, env)
    assert proc.returncode == 2 and "shallow clone" in proc.stderr and "fetch-depth: 0" in proc.stderr, proc.stderr
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException):
        client.get_model_version_by_alias(model, "staging")  # nothing moved


def test_a_hand_edit_that_replaced_the_promotion_fails_the_job_and_moves_nothing(setup):
    model, repo, client, env = setup
    commit(repo, ISVC.format(v="hotfix"), "pin a hotfix by hand")
    proc = run(repo, env)
    assert proc.returncode == 1 and "git cannot tell which version runs" in proc.stderr, proc.stdout + proc.stderr
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException):
        client.get_model_version_by_alias(model, "staging")


def test_a_promotion_of_a_version_the_registry_lacks_is_named_not_a_crash(setup):
    model, repo, client, env = setup
    commit(repo, ISVC.format(v=99), Promotion(model, "99", "staging", "staging").message())
    proc = run(repo, env, "--output", "json")
    assert proc.returncode == 1, proc.stderr
    row = json.loads(proc.stdout)["environments"][0]
    assert row["state"] == "undecided" and "registry does not have" in row["reason"] and row["git_version"] == "99"


def test_the_whole_history_moves_the_alias_once(setup):
    model, repo, client, env = setup
    first = run(repo, env)
    assert first.returncode == 0 and f"{model} staging: moved: git deploys v2" in first.stdout, first.stderr
    assert client.get_model_version_by_alias(model, "staging").version == "2"
    again = run(repo, env, "--check")
    assert again.returncode == 0 and "in step" in again.stdout
