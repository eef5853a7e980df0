"""``mlgate reconcile`` in the GitOps repository's own pipeline, run for real: the example
workflow with ``actions/reconcile`` under act (push to main), and the ``reconcile`` template
under gitlab-ci-local (a push pipeline on the default branch), each against the session's real
MLflow server.

The GitOps repository holds the wine example's manifests, one promotion commit (its message
written by :meth:`mlgate.core.promotion.Promotion.message`, as ``mlgate promote`` and the bot
write it, e.g. the squash of a merged promotion PR) and a later commit without trailers. The
first run moves the staging alias to the version git deploys and tags it with the commit; the
second finds it in step and changes nothing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from ci_support import ACTIONS_REPO, ROOT, git, tool
from test_act import outputs, pip_cache_dir
from test_gitlab_ci_local import dotenv, run_gcl, seed_includes

pytestmark = pytest.mark.slow

GITHUB_EXAMPLE = ROOT / "examples" / "github-gitops" / ".github" / "workflows" / "mlgate-reconcile.yml"
GITLAB_EXAMPLE = ROOT / "examples" / "gitlab-gitops" / ".gitlab-ci.yml"
SEED = ROOT / "examples" / "wine" / "gitops-seed"
MANIFEST = "staging/inferenceservice.yaml"


def register(tracking_uri: str) -> tuple[Any, str, str]:
    """A fresh registered model with one version on the MLflow server: (client, model, version)."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    model = f"wine-{uuid.uuid4().hex[:8]}"
    client.create_registered_model(model)
    mv = client.create_model_version(model, source=f"s3://models/{model}/1")
    return client, model, str(mv.version)


def alias_version(client: Any, model: str, alias: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(model, alias).version)
    except MlflowException:
        return None


def gitops_repo(path: Path, remote: str, ci_files: dict[str, str], model: str, version: str) -> tuple[Path, str]:
    """The GitOps repository: seed manifests and CI file, one promotion commit of ``model``
    ``version`` to staging, then a commit without trailers. Returns (path, promotion commit)."""
    from mlgate.core.promotion import Promotion

    shutil.copytree(SEED, path)
    for rel, text in ci_files.items():
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        (path / rel).write_text(text, encoding="utf-8")
    (path / ".gitignore").write_text(".gitlab-ci-local/\n", encoding="utf-8")
    git("init", "-q", "-b", "main", cwd=path)
    git("remote", "add", "origin", remote, cwd=path)
    git("add", "-A", cwd=path)
    git("commit", "-q", "-m", "seed", cwd=path)
    manifest = path / MANIFEST
    text = manifest.read_text(encoding="utf-8")
    manifest.write_text(text.replace("s3://models/wine-classifier/initial", f"s3://models/{model}/{version}"),
                        encoding="utf-8")
    message = path.parent / "promotion-message.txt"
    message.write_text(Promotion(model=model, version=version, environment="staging", alias="staging").message(),
                       encoding="utf-8")
    git("commit", "-q", "-a", "-F", str(message), cwd=path)
    promotion = git("rev-parse", "HEAD", cwd=path).strip()
    (path / "README.md").write_text("Deployments of the ML team.\n", encoding="utf-8")
    git("add", "README.md", cwd=path)
    git("commit", "-q", "-m", "docs: a README", cwd=path)
    return path, promotion


def run_act_push(repo: Path, tmp: Path, published: Path, runner_bin: Path, tracking_uri: str,
                 pip_env: dict[str, str]) -> tuple[int, str]:
    """``act push`` in ``repo`` (a push to main); returns (exit code, log). ``pip_env``: the ``pip_offline`` fixture."""
    event = tmp / "push.json"
    head = git("rev-parse", "HEAD", cwd=repo).strip()
    event.write_text(json.dumps({
        "ref": "refs/heads/main", "before": "0" * 40, "after": head,
        "repository": {"full_name": "acme/deployments", "name": "deployments", "owner": {"login": "acme"},
                       "default_branch": "main"},
    }), encoding="utf-8")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GITHUB_", "GITLAB_", "CI_", "MLGATE_", "MLFLOW_", "RUNNER_", "ACT"))}
    env.update(PATH=f"{runner_bin}:{env.get('PATH', '/usr/bin:/bin')}", XDG_CACHE_HOME=str(tmp / "cache"),
               PIP_CACHE_DIR=pip_cache_dir(), PIP_DISABLE_PIP_VERSION_CHECK="1",
               MLGATE_VENV=str(tmp / "job-venv"),  # the two runs share the job's virtual environment
               **pip_env)
    args = [tool("act"), "push", "-e", str(event), "-P", "ubuntu-latest=-self-hosted", "--no-cache-server",
            "--local-repository", f"{ACTIONS_REPO}@v1={published}",
            "--var", f"MLFLOW_TRACKING_URI={tracking_uri}"]
    proc = subprocess.run(args, cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    log = proc.stdout + proc.stderr
    (tmp / f"act-push-{len(list(tmp.glob('act-push-*.log')))}.log").write_text(log, encoding="utf-8")
    return proc.returncode, log


def test_github_action_moves_the_alias_to_what_git_deploys_then_is_in_step(
    tmp_path: Path, published_mlgate: Path, runner_python: Path, mlflow_server: str, pip_offline: dict[str, str]
) -> None:
    client, model, version = register(mlflow_server)
    repo, promotion = gitops_repo(tmp_path / "deployments", "https://github.com/acme/deployments.git",
                                  {".github/workflows/mlgate-reconcile.yml": GITHUB_EXAMPLE.read_text(encoding="utf-8")},
                                  model, version)
    assert alias_version(client, model, "staging") is None

    rc, log = run_act_push(repo, tmp_path, published_mlgate, runner_python, mlflow_server, pip_offline)
    assert rc == 0, log[-6000:]
    out = outputs(log)
    assert (out["moved"], out["in_step"], out["differs"], out["undecided"]) == ("1", "0", "0", "0"), out
    [row] = json.loads(out["report"])["environments"]
    assert (row["model"], row["environment"], row["git_version"], row["commit"], row["state"]) == (
        model, "staging", version, promotion, "moved")
    assert f"mlgate: {model} staging: moved: git deploys v{version} (commit {promotion[:12]})" in log
    assert alias_version(client, model, "staging") == version
    tags = client.get_model_version(model, version).tags
    assert tags["mlgate.promoted.staging.commit"] == promotion

    # a second push run: in step, nothing changes
    rc, log = run_act_push(repo, tmp_path, published_mlgate, runner_python, mlflow_server, pip_offline)
    assert rc == 0, log[-6000:]
    out = outputs(log)
    assert (out["moved"], out["in_step"]) == ("0", "1"), out
    assert f"mlgate: {model} staging: in step: git deploys v{version}" in log
    assert client.get_model_version(model, version).tags == tags


def test_gitlab_template_checks_then_moves_the_alias_then_is_in_step(
    tmp_path: Path, published_mlgate: Path, mlflow_server: str, pip_offline: dict[str, str]
) -> None:
    client, model, version = register(mlflow_server)
    repo, promotion = gitops_repo(tmp_path / "deployments", "https://gitlab.com/acme/deployments.git",
                                  {".gitlab-ci.yml": GITLAB_EXAMPLE.read_text(encoding="utf-8")}, model, version)
    seed_includes(repo, published_mlgate)
    # mlgate from the published copy (not the release tag), one virtual environment for the runs
    tracking = {"MLFLOW_TRACKING_URI": mlflow_server, "CI_PIPELINE_SOURCE": "push",
                "MLGATE_INSTALL": str(published_mlgate), "MLGATE_VENV": str(tmp_path / "job-venv")}

    # check: true only reports, and fails the job because the registry and git disagree
    rc, log = run_gcl(repo, "mlgate-reconcile", variables={**tracking, "MLGATE_CHECK": "true"}, pip_env=pip_offline)
    assert rc != 0 and re.search(r"FAIL\s+mlgate-reconcile", log), log[-4000:]
    assert f"mlgate: {model} staging: differs: git deploys v{version}" in log, log[-4000:]
    assert dotenv(repo, "mlgate-reconcile", "mlgate-reconcile.env")["differs"] == "1"
    assert alias_version(client, model, "staging") is None, "check moved an alias"

    # the push pipeline: the alias moves to what git deploys
    rc, log = run_gcl(repo, variables=tracking, pip_env=pip_offline)
    assert rc == 0 and re.search(r"PASS\s+mlgate-reconcile", log), log[-4000:]
    assert f"mlgate: {model} staging: moved: git deploys v{version} (commit {promotion[:12]})" in log
    assert dotenv(repo, "mlgate-reconcile", "mlgate-reconcile.env") == {
        "moved": "1", "in_step": "0", "differs": "0", "undecided": "0"}
    assert alias_version(client, model, "staging") == version
    tags = client.get_model_version(model, version).tags
    assert tags["mlgate.promoted.staging.commit"] == promotion

    # again: in step, nothing changes
    rc, log = run_gcl(repo, variables=tracking, pip_env=pip_offline)
    assert rc == 0 and f"mlgate: {model} staging: in step: git deploys v{version}" in log, log[-4000:]
    assert dotenv(repo, "mlgate-reconcile", "mlgate-reconcile.env")["in_step"] == "1"
    assert client.get_model_version(model, version).tags == tags
