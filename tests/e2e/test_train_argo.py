"""`mlgate train` with `train.backend: argo`: submit, follow, then continue with the version the
workflow's step registered. The fake Argo Server validates every request against Argo's
OpenAPI description; the "pod" is played by the test running the step's own command
(`MLGATE_TRAIN_BACKEND=local mlgate train`) against the real MLflow server."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from tests.conftest import git
from tests.e2e.test_pipeline import TRAIN_TINY
from tests.fakes.argo_server import FakeArgoServer, SwaggerSpec

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "test-token-argo"


@pytest.fixture
def argo_fake():
    with FakeArgoServer(tokens={TOKEN: ["argo"]}, spec=SwaggerSpec()) as server:
        for path in sorted((ROOT / "workflows").glob("*.yaml")):
            server.add_workflow_template(YAML(typ="safe").load(path.read_text()), "argo")
        yield server
        server.assert_valid()
        assert not server.rejected


def make_repo(tmp_path: Path, argo_url: str, model: str) -> Path:
    origin = tmp_path / "origin.git"
    git("init", "--quiet", "--bare", "-b", "main", str(origin))
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / ".mlgate.yml").write_text(textwrap.dedent(f"""\
        model: {model}
        train:
          command: python train_tiny.py 0.9
          backend: argo
          argo:
            server: {argo_url}
            namespace: argo
            template: mlgate-train-gpu
            image: ghcr.io/acme/wine-train:1.0
        validate:
          gates: [{{metric: acc, min: 0.5}}]
        """))
    (repo / "train_tiny.py").write_text(TRAIN_TINY)
    git("init", "--quiet", "-b", "main", cwd=repo)
    git("add", "-A", cwd=repo)
    git("commit", "--quiet", "-m", "model", cwd=repo)
    git("remote", "add", "origin", "https://github.com/acme/wine.git", cwd=repo)
    return repo


def env_for(tracking_uri: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "GITLAB_", "CI_"))}
    env.update(MLFLOW_TRACKING_URI=tracking_uri, ARGO_TOKEN=TOKEN, MLGATE_ARGO_POLL_SECONDS="0.2", **extra)
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    return env


def wait_for_workflow(fake: FakeArgoServer, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if fake.created():
            return fake.created()[0].body["workflow"]["metadata"]["name"]
        time.sleep(0.1)
    raise AssertionError("mlgate train did not submit a workflow")


@pytest.mark.parametrize("outcome", ["Succeeded", "Failed"])
def test_train_on_argo_follows_the_workflow(tmp_path, mlflow_server, argo_fake, outcome):
    model = f"argo-{outcome.lower()}-{os.getpid()}"
    repo = make_repo(tmp_path, argo_fake.url, model)
    commit = git("rev-parse", "HEAD", cwd=repo).strip()
    proc = subprocess.Popen([sys.executable, "-m", "mlgate", "train"], cwd=repo, env=env_for(mlflow_server),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        name = wait_for_workflow(argo_fake)
        sent = argo_fake.created()[0].body["workflow"]
        params = {p["name"]: p["value"] for p in sent["spec"]["arguments"]["parameters"]}
        assert sent["spec"]["workflowTemplateRef"] == {"name": "mlgate-train-gpu"}
        assert params["commit"] == commit and params["model"] == model
        argo_fake.advance(name, "Running")
        if outcome == "Succeeded":
            # the pod: the WorkflowTemplate's step runs mlgate train locally at that commit
            pod = subprocess.run([sys.executable, "-m", "mlgate", "train"], cwd=repo,
                                 env=env_for(mlflow_server, MLGATE_TRAIN_BACKEND="local"),
                                 capture_output=True, text=True, timeout=300)
            assert pod.returncode == 0, pod.stderr
            argo_fake.advance(name, "Succeeded")
        else:
            argo_fake.advance(name, "Failed", message="OOMKilled (exit code 137)")
        out, _ = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert f"/workflows/argo/{name}" in out  # the Argo UI link
    if outcome == "Succeeded":
        assert proc.returncode == 0, out
        assert f"registered {model} version 1" in out
    else:
        assert proc.returncode == 1, out
        assert "OOMKilled (exit code 137)" in out
    assert len(argo_fake.created()) == 1
