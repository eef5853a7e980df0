"""The example workflow, run for real with act on this host (self-hosted platform, no Docker,
no network): a pull request trains and gates the wine model against a local MLflow store,
writes the job summary and one PR comment (on a fake GitHub that checks every request against
GitHub's OpenAPI description); a failing gate fails the job and says which gate and by how
much; hostile inputs are refused, printed literally and never executed.

act facts (shared notes): ``-P ubuntu-latest=-self-hosted --no-cache-server``; the workflow
checks out first; ``--local-repository mlgate/mlgate@v1=PATH`` maps the published action name
to a copy of this repository, and nothing else is mapped: actions/setup uses no other action.
``MLGATE_VENV`` (act passes the host's environment to self-hosted jobs) lets the runs of one test
share the job's virtual environment, so the second run installs nothing new.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from ci_fakes import FakeGitHub
from ci_support import (
    ACTIONS_REPO,
    CACHE,
    FIXTURES,
    INJECTIONS,
    ROOT,
    SETUP_PYTHON,
    add_impossible_gate,
    model_repo,
    registered_version,
    tool,
)

pytestmark = pytest.mark.slow

WORKFLOW = ROOT / "examples" / "github" / ".github" / "workflows" / "mlops.yml"
MODEL = "wine-classifier"


def pip_cache_dir() -> str:
    """pip's own cache, shared with the runs so that mlgate's build backend is downloaded once."""
    return os.environ.get("PIP_CACHE_DIR") or str(Path.home() / ".cache" / "pip")


def run_act(repo: Path, tmp: Path, published: Path, runner_bin: Path, github: FakeGitHub, tracking_uri: str,
            pip_env: dict[str, str], pr_number: int = 7, stubs: bool = False) -> tuple[int, str]:
    """``act pull_request`` in ``repo`` with a pull_request event; returns (exit code, log).

    ``pip_env`` (the ``pip_offline`` fixture) points the jobs' pip at the run's wheelhouse."""
    event = tmp / "event.json"
    event.write_text(json.dumps({
        "action": "synchronize", "number": pr_number,
        "pull_request": {"number": pr_number, "head": {"ref": "feature", "sha": "0" * 40}, "base": {"ref": "main"}},
        "repository": {"full_name": "acme/wine-model", "name": "wine-model", "owner": {"login": "acme"}},
    }), encoding="utf-8")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GITHUB_", "GITLAB_", "CI_", "MLGATE_", "MLFLOW_", "RUNNER_", "ACT"))}
    env.update(PATH=f"{runner_bin}:{env.get('PATH', '/usr/bin:/bin')}", XDG_CACHE_HOME=str(tmp / "cache"),
               PIP_CACHE_DIR=pip_cache_dir(), PIP_DISABLE_PIP_VERSION_CHECK="1", MLGATE_VENV=str(tmp / "job-venv"),
               **pip_env)
    args = [
        tool("act"), "pull_request", "-e", str(event),
        "-P", "ubuntu-latest=-self-hosted", "--no-cache-server",
        "--local-repository", f"{ACTIONS_REPO}@v1={published}",
        *(["--local-repository", f"{SETUP_PYTHON}={FIXTURES / 'stubs' / 'setup-python'}",
           "--local-repository", f"{CACHE}={FIXTURES / 'stubs' / 'cache'}"] if stubs else []),
        "--var", f"MLFLOW_TRACKING_URI={tracking_uri}",
        "--env", f"GITHUB_API_URL={github.url}",
        "-s", f"GITHUB_TOKEN={github.token}",
    ]
    proc = subprocess.run(args, cwd=repo, env=env, capture_output=True, text=True, timeout=400)
    log = proc.stdout + proc.stderr
    (tmp / f"act-{pr_number}-{len(list(tmp.glob('act-*.log')))}.log").write_text(log, encoding="utf-8")
    return proc.returncode, log


def summary(log: str) -> str:
    """The job summary, as act prints it (``Summary - `` then the Markdown)."""
    start = log.find("Summary - ")
    assert start >= 0, "no job summary in the act log"
    text = log[start + len("Summary - "):]
    end = re.search(r"^\[[^\]]+\] ", text, re.M)
    return text[: end.start()] if end else text


def outputs(log: str) -> dict[str, str]:
    """Step outputs that act reports (``::set-output:: name=value``); the last value wins."""
    return dict(re.findall(r"::set-output:: ([\w-]+)=(.*)", log))


@pytest.fixture
def github():
    server = FakeGitHub()
    yield server
    server.close()
    assert server.problems == []


def test_pull_request_trains_gates_comments_then_a_failing_gate_fails(
    tmp_path: Path, published_mlgate: Path, runner_python: Path, github: FakeGitHub,
    pip_offline: dict[str, str]
) -> None:
    repo = model_repo(tmp_path / "repo", "https://github.com/acme/wine-model.git",
                      {".github/workflows/mlops.yml": WORKFLOW.read_text(encoding="utf-8")})
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"

    # 1. green: the example workflow as a user adds it
    rc, log = run_act(repo, tmp_path, published_mlgate, runner_python, github, uri, pip_offline)
    assert rc == 0, log[-6000:]
    out = outputs(log)
    assert out["model-version"] == "1" and out["gates-passed"] == "true"
    assert re.fullmatch(r"[0-9a-f]{32}", out["run-id"])
    assert out["report-path"].endswith("mlgate-report.md")
    # setup: no remote action fetched; mlgate installed once from the action's ref, into a virtual
    # environment, with the extras the wine config needs (embedded store, evaluation)
    assert "LocalRepositoryCache not matched" not in log and "git clone" not in log
    assert log.count("Installing mlgate from mlgate/mlgate@v1") == 1
    assert f"Creating the virtual environment {tmp_path / 'job-venv'} with" in log
    assert ".mlgate.yml needs the extras: local,evaluate" in log
    text = summary(log)
    assert f"✅ mlgate gates passed: {MODEL} v1" in text and "| Metric |" in text and "xychart-beta" in text
    assert registered_version(uri, MODEL, "1")["mlgate.gates"] == "passed"
    [comment] = github.comments[7]
    assert comment["body"].startswith("<!-- mlgate:gates -->")
    assert f"mlgate gates passed: {MODEL} v1" in comment["body"] and "```mermaid\nxychart-beta" in comment["body"]
    assert github.token not in log

    # 2. a gate the model cannot pass: the job fails and says which gate and by how much
    add_impossible_gate(repo, "accuracy_score", 0.999)
    rc, log = run_act(repo, tmp_path, published_mlgate, runner_python, github, uri, pip_offline)
    assert rc != 0
    out = outputs(log)
    assert out["model-version"] == "2" and out["gates-passed"] == "false"
    reason = re.compile(r"accuracy_score [0-9.]+ is below the minimum 0\.999 by [0-9.]+")
    assert re.search(r"::error title=Gate failed%3A accuracy_score::" + reason.pattern, log), "no error annotation"
    text = summary(log)
    assert f"❌ mlgate gates FAILED: {MODEL} v2" in text and reason.search(text)
    assert "model version 2 failed its gates" in log
    assert registered_version(uri, MODEL, "2")["mlgate.gates"] == "failed"
    # still ONE comment, now saying why
    [comment] = github.comments[7]
    assert "FAILED" in comment["body"] and reason.search(comment["body"])
    assert [m for m, _ in github.requests].count("POST") == 1 and [m for m, _ in github.requests].count("PATCH") == 1


def test_hostile_inputs_are_refused_printed_literally_and_never_run(
    tmp_path: Path, published_mlgate: Path, runner_python: Path, github: FakeGitHub,
    pip_offline: dict[str, str]
) -> None:
    repo = model_repo(tmp_path / "repo", "https://github.com/acme/wine-model.git",
                      {".github/workflows/injection.yml": (FIXTURES / "injection.yml").read_text(encoding="utf-8")})
    rc, log = run_act(repo, tmp_path, published_mlgate, runner_python, github, f"sqlite:///{tmp_path / 'x.db'}",
                      pip_offline)
    assert rc == 0, log[-4000:]  # every refusal is expected (continue-on-error), the jobs pass
    outcomes = re.findall(r"outcomes (.*)", log)
    assert len(outcomes) == 2, log[-4000:]
    for line in outcomes:
        assert dict(kv.split("=") for kv in line.split()) == {
            "setup": "failure", "train": "failure", "validate": "failure", "promote": "failure",
            "promote-environment": "failure", "canary": "failure"}
    for value in INJECTIONS:
        # printed literally in the refusals (act sometimes drops a fast step's last lines, so not
        # every one of the six is counted; tests/e2e/ci/test_static.py checks each check function)
        assert log.count(f"'{value}'") >= 3, value
    assert not re.search(r"^\S+\s+\|\s*INJECTED\s*$", log, re.M), "the injected command ran"
    assert "uid=" not in log, "$(id) ran"
    assert "mlgate: invalid model name" in log and "mlgate: invalid environment" in log
    # the canary action calls mlgate canary for real, and its failure is not hidden
    assert "canary outcome=failure" in log
    canary_log = "\n".join(line for line in log.splitlines() if line.startswith("[injection/canary-not-pretending]"))
    assert "Installing mlgate from mlgate/mlgate@v1" in canary_log  # installed without actions/setup
    # the step fails with mlgate's own one-line message (e.g. no canary running, or the command
    # missing), never a usage error of the action's call, and the job does not claim a step
    said = re.search(r"mlgate, version \S+ \(.*\)\n\[injection/canary-not-pretending\]\s+\| (.+)\n", canary_log)
    assert said and "Failure - Main Canary" in canary_log, canary_log[-1500:]
    assert not re.search(r"No such option|Usage: mlgate|Traceback", canary_log), said.group(1)
    assert github.requests == []


HOSTED = """name: hosted
on: pull_request
permissions: {}
jobs:
  hosted:
    runs-on: ubuntu-latest
    permissions:
      contents: read
    steps:
      - uses: actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683 # v4.2.2
        with:
          persist-credentials: false
      - id: setup
        uses: mlgate/mlgate/actions/setup-hosted@v1 # zizmor: ignore[unpinned-uses]
        with:
          extras: none
      - name: Which mlgate
        env:
          PYTHON_PATH: ${{ steps.setup.outputs.python-path }}
        run: echo "mlgate on PATH $(command -v mlgate), python-path $PYTHON_PATH"
"""


def test_setup_hosted_runs_setup_python_and_the_cache_then_the_same_install(
    tmp_path: Path, published_mlgate: Path, runner_python: Path, github: FakeGitHub,
    pip_offline: dict[str, str]
) -> None:
    """The GitHub-hosted path: actions/setup-python (3.11) and actions/cache of pip's downloads
    (offline stubs standing in for the pinned actions, which only this action references), then
    the install script of actions/setup, into its virtual environment."""
    repo = model_repo(tmp_path / "repo", "https://github.com/acme/wine-model.git",
                      {".github/workflows/hosted.yml": HOSTED})
    rc, log = run_act(repo, tmp_path, published_mlgate, runner_python, github, "http://127.0.0.1:9", pip_offline,
                      stubs=True)
    assert rc == 0, log[-6000:]
    assert "setup-python stub called with python-version=3.11" in log
    assert re.search(r"cache stub called with path=\S+ key=mlgate-pip-Linux-py3\.\d+-[0-9a-f]{20}", log)
    venv = tmp_path / "job-venv"
    assert f"Creating the virtual environment {venv} with" in log
    assert f"mlgate on PATH {venv}/bin/mlgate, python-path {venv}/bin/python" in log
    assert "needs the extras" not in log  # extras: none, no question asked
