"""The example GitLab pipeline, run for real with gitlab-ci-local (shell executor) on this host:
a merge request pipeline trains and gates the wine model against a local MLflow store, writes
the dotenv report, the report artifact and one merge request note (on a fake GitLab); a failing
gate fails mlgate-validate naming the gate and by how much; hostile inputs are refused.

gitlab-ci-local facts (shared notes): 4.73.0 (4.74+ needs Node 22); it needs rsync and a git
repository with the files tracked. ``include: project:`` files are read from its include cache
``.gitlab-ci-local/includes/<host>/<project>/<ref>/<file>`` when present: the test puts the
templates there, which is what GitLab would fetch for ``project: mlgate/mlgate, ref: v1``.
``MLGATE_INSTALL`` (a pipeline variable overrides the job's) installs mlgate from the published
copy instead of the release tag, ``MLGATE_VENV`` lets the jobs of one test share their virtual
environment (each job would otherwise create its own in its build folder).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ci_fakes import FakeGitLab
from ci_support import INJECTIONS, ROOT, add_impossible_gate, git, model_repo, registered_version, tool

pytestmark = pytest.mark.slow

EXAMPLE = ROOT / "examples" / "gitlab" / ".gitlab-ci.yml"
TEMPLATES = ("train", "validate", "promote", "canary", "reconcile")
MODEL = "wine-classifier"


def seed_includes(repo: Path, published: Path, host: str = "gitlab.com", project: str = "mlgate/mlgate",
                  ref: str = "v1") -> None:
    dest = repo / ".gitlab-ci-local" / "includes" / host / project / ref / "gitlab-templates"
    shutil.copytree(published / "gitlab-templates" / "templates", dest / "templates")


def run_gcl(repo: Path, *args: str, variables: dict[str, str] | None = None,
            pip_env: dict[str, str] | None = None) -> tuple[int, str]:
    """gitlab-ci-local in ``repo``; returns (exit code, log). ``pip_env`` (the ``pip_offline``
    fixture) points the jobs' pip at the run's wheelhouse: the shell executor passes on its environment."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GITHUB_", "GITLAB_", "CI_", "MLGATE_", "MLFLOW_", "GCL_"))}
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '/usr/bin:/bin')}"
    env.update(pip_env or {})
    cmd = [tool("gitlab-ci-local"), "--force-shell-executor"]
    for k, v in (variables or {}).items():
        cmd += ["--variable", f"{k}={v}"]
    proc = subprocess.run([*cmd, *args], cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    return proc.returncode, proc.stdout + proc.stderr


def dotenv(repo: Path, job: str, name: str) -> dict[str, str]:
    path = repo / ".gitlab-ci-local" / "artifacts" / job / ".gitlab-ci-reports" / "dotenv" / name
    return dict(line.split("=", 1) for line in path.read_text(encoding="utf-8").splitlines() if line)


@pytest.fixture
def gitlab():
    server = FakeGitLab()
    yield server
    server.close()
    assert server.problems == []


def test_merge_request_pipeline_then_a_failing_gate(tmp_path: Path, published_mlgate: Path, gitlab: FakeGitLab,
                                                  pip_offline: dict[str, str]) -> None:
    repo = model_repo(tmp_path / "repo", "https://gitlab.com/acme/wine-model.git",
                      {".gitlab-ci.yml": EXAMPLE.read_text(encoding="utf-8")})
    seed_includes(repo, published_mlgate)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mr = {"CI_PIPELINE_SOURCE": "merge_request_event", "CI_MERGE_REQUEST_IID": "3", "CI_PROJECT_ID": gitlab.project_id,
          "CI_SERVER_URL": gitlab.url, "CI_API_V4_URL": f"{gitlab.url}/api/v4",
          "MLGATE_GITLAB_TOKEN": gitlab.token, "MLFLOW_TRACKING_URI": uri,
          "MLGATE_INSTALL": str(published_mlgate), "MLGATE_VENV": str(tmp_path / "job-venv")}

    # 1. green: train, then validate (the promotion is a manual job on the default branch)
    rc, log = run_gcl(repo, variables=mr, pip_env=pip_offline)
    assert rc == 0, log[-6000:]
    assert re.search(r"PASS\s+mlgate-train", log) and re.search(r"PASS\s+mlgate-validate", log)
    # a virtual environment (never the runner's Python), mlgate from MLGATE_INSTALL, the wine
    # config's extras (embedded store, evaluation) added after the base
    assert f"Creating the virtual environment {tmp_path / 'job-venv'} with" in log
    assert f"Installing {published_mlgate} into {tmp_path / 'job-venv'}" in log
    assert ".mlgate.yml needs the extras: local,evaluate" in log
    train = dotenv(repo, "mlgate-train", "mlgate-train.env")
    assert train["model_version"] == "1" and re.fullmatch(r"[0-9a-f]{32}", train["run_id"])
    assert dotenv(repo, "mlgate-validate", "mlgate-validate.env") == {
        "gates_passed": "true", "model_version": "1", "model": MODEL, "champion_version": ""}
    report = repo / ".gitlab-ci-local" / "artifacts" / "mlgate-validate" / "mlgate-report.md"
    assert f"mlgate gates passed: {MODEL} v1" in report.read_text(encoding="utf-8")
    assert registered_version(uri, MODEL, "1")["mlgate.gates"] == "passed"
    [note] = gitlab.notes[3]
    assert note["body"].startswith("<!-- mlgate:gates -->\n<!-- mlgate:key=.mlgate.yml -->")
    assert "| Metric |" in note["body"] and "xychart-beta" in note["body"]
    assert gitlab.token not in log

    # 2. an impossible gate: mlgate-validate fails, naming the gate and by how much, and the note says so
    add_impossible_gate(repo, "accuracy_score", 0.999)
    rc, log = run_gcl(repo, "mlgate-validate", variables=mr, pip_env=pip_offline)
    assert rc != 0
    assert re.search(r"FAIL\s+mlgate-validate", log)
    reason = re.compile(r"accuracy_score [0-9.]+ is below the minimum 0\.999 by [0-9.]+")
    assert re.search(r"mlgate: gate failed: accuracy_score: " + reason.pattern, log), log[-3000:]
    assert dotenv(repo, "mlgate-validate", "mlgate-validate.env")["gates_passed"] == "false"
    [note] = gitlab.notes[3]
    assert "FAILED" in note["body"] and reason.search(note["body"])
    assert [m for m, _ in gitlab.requests].count("POST") == 1 and [m for m, _ in gitlab.requests].count("PUT") == 1


def test_hostile_inputs_are_refused_and_never_run(tmp_path: Path, published_mlgate: Path) -> None:
    for n, value in enumerate(INJECTIONS):
        quoted = value.replace("'", "''")
        for template in TEMPLATES:
            env_input = "      environment: staging\n" if template in ("promote", "canary") else ""
            ci = (f"include:\n  - project: mlgate/mlgate\n    ref: v1\n    file: /gitlab-templates/templates/{template}.yml\n"
                  f"    inputs:\n{env_input}      model: '{quoted}'\n")
            repo = model_repo(tmp_path / f"{template}-{n}", "https://gitlab.com/acme/wine-model.git", {".gitlab-ci.yml": ci})
            seed_includes(repo, published_mlgate)
            rc, log = run_gcl(repo)
            assert rc != 0
            # refused when the pipeline is created (the input's regex, as GitLab does), printed literally
            assert f"`model` input: `{value}` does not match required regex" in log, log[-2000:]
            assert not re.search(r"^\s*(\S+\s+>\s*)?INJECTED\s*$", log, re.M) and "uid=" not in log
    # the scripts check again at run time (a pipeline variable overrides the job's variable)
    repo = model_repo(tmp_path / "runtime", "https://gitlab.com/acme/wine-model.git",
                      {".gitlab-ci.yml": EXAMPLE.read_text(encoding="utf-8")})
    seed_includes(repo, published_mlgate)
    for value in INJECTIONS:
        for job, variable, what in (("mlgate-train", "MLGATE_MODEL", "model name"),
                                    ("mlgate-validate", "MLGATE_MODEL", "model name"),
                                    ("mlgate-promote-staging", "MLGATE_ENVIRONMENT", "environment")):
            rc, log = run_gcl(repo, job, variables={variable: value, "CI_PIPELINE_SOURCE": "merge_request_event"})
            # the job fails (the manual promotion is allow_failure, so the pipeline only warns)
            assert not re.search(rf"PASS\s+{job}", log) and (rc != 0 or re.search(rf"WARN\s+{job}", log)), log[-2000:]
            assert f"mlgate: invalid {what} '{value}'" in log, log[-2000:]
            assert not re.search(r"^\S+\s+>\s*INJECTED\s*$", log, re.M) and "uid=" not in log


def test_templates_work_as_catalog_components(tmp_path: Path, published_mlgate: Path) -> None:
    """gitlab-templates/ published as its own project is a CI/CD catalog project: its
    templates/<name>.yml resolve as components (here the project's own, at this commit)."""
    project = tmp_path / "components"
    shutil.copytree(published_mlgate / "gitlab-templates", project)
    includes = "".join(
        f"  - component: $CI_SERVER_FQDN/$CI_PROJECT_PATH/{name}@$CI_COMMIT_SHA\n"
        + ("    inputs:\n      environment: staging\n      when: on_success\n" if name in ("promote", "canary") else "")
        for name in TEMPLATES
    )
    (project / ".gitlab-ci.yml").write_text("include:\n" + includes, encoding="utf-8")
    git("init", "-q", "-b", "main", cwd=project)
    git("remote", "add", "origin", "https://gitlab.com/mlgate/ci-components.git", cwd=project)
    git("add", "-A", cwd=project)
    git("commit", "-q", "-m", "components", cwd=project)
    rc, log = run_gcl(project, "--list")
    assert rc == 0, log[-3000:]
    for job in ("mlgate-train", "mlgate-validate", "mlgate-promote-staging", "mlgate-canary-staging", "mlgate-reconcile"):
        assert job in log


def test_templates_work_as_local_includes(tmp_path: Path, published_mlgate: Path) -> None:
    """The offline alternative the README names: the templates copied into the project and
    included with ``include: local:`` and the same inputs (no component context needed)."""
    project = tmp_path / "model"
    includes = "".join(
        f"  - local: templates/{name}.yml\n"
        + ("    inputs:\n      environment: staging\n" if name in ("promote", "canary") else "")
        for name in TEMPLATES
    )
    repo = model_repo(project, "https://gitlab.com/acme/wine-model.git", {".gitlab-ci.yml": "include:\n" + includes})
    shutil.copytree(published_mlgate / "gitlab-templates" / "templates", repo / "templates")
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", "templates", cwd=repo)
    rc, log = run_gcl(repo, "--list")
    assert rc == 0, log[-3000:]
    for job in ("mlgate-train", "mlgate-validate", "mlgate-promote-staging", "mlgate-canary-staging", "mlgate-reconcile"):
        assert job in log
