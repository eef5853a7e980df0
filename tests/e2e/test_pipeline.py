"""train → validate → promote → status against a real `mlflow server` and real git repositories."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port, git

MLGATE = [sys.executable, "-m", "mlgate"]

TRAIN_TINY = textwrap.dedent("""\
    import os, sys
    import mlflow
    from sklearn.dummy import DummyClassifier
    acc = float(sys.argv[1])
    with mlflow.start_run():
        mlflow.log_metric("acc", acc)
        if os.environ.get("NO_MODEL") != "1":
            model = DummyClassifier().fit([[0], [1]], [0, 1])
            mlflow.sklearn.log_model(model, name="model", pip_requirements=["scikit-learn"])
    sys.exit(int(os.environ.get("EXIT_CODE", "0")))
""")


def config_text(model: str, gitops: Path) -> str:
    return textwrap.dedent(f"""\
        model: {model}
        train:
          command: python train_tiny.py 0.9
        validate:
          gates:
            - metric: acc
              min: 0.5
              max_regression: 0.05
        environments:
          - name: staging
            gitops:
              repository: {gitops}
              path: staging/inferenceservice.yaml
              target: {{kind: kserve, name: wine-classifier, value: "{{model_uri}}"}}
          - name: production
            requires: staging
            gitops:
              repository: {gitops}
              path: production/inferenceservice.yaml
              target: {{kind: kserve, name: wine-classifier, value: "{{model_uri}}"}}
        """)


class Project:
    def __init__(self, root: Path, tracking_uri: str, gitops: Path):
        self.root, self.tracking_uri, self.gitops = root, tracking_uri, gitops
        self.model = f"tiny-{uuid.uuid4().hex[:8]}"
        (root / ".mlgate.yml").write_text(config_text(self.model, gitops))
        (root / "train_tiny.py").write_text(TRAIN_TINY)
        git("init", "--quiet", "-b", "feature", cwd=root)
        git("add", "-A", cwd=root)
        git("commit", "--quiet", "-m", "model code", cwd=root)
        self.commit = git("rev-parse", "HEAD", cwd=root).strip()

    def run(self, *args: str, env: dict | None = None, tracking_uri: str | None = None) -> subprocess.CompletedProcess:
        e = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "GITLAB_", "CI_"))}
        e["MLFLOW_TRACKING_URI"] = tracking_uri or self.tracking_uri
        e.update(env or {})
        return subprocess.run([*MLGATE, *args], cwd=self.root, env=e, capture_output=True, text=True, timeout=300)

    def train(self, acc: float, **env) -> subprocess.CompletedProcess:
        return self.run("train", "--", sys.executable, "train_tiny.py", str(acc), env=env)

    def client(self):
        from mlflow import MlflowClient

        return MlflowClient(self.tracking_uri, registry_uri=self.tracking_uri)

    def gitops_log(self) -> list[str]:
        return git("--git-dir", str(self.gitops), "log", "--format=%H", "main").split()


@pytest.fixture
def project(tmp_path, mlflow_server, gitops_repo):
    root = tmp_path / "model-repo"
    root.mkdir()
    return Project(root, mlflow_server, gitops_repo)


def test_train_registers_a_tagged_version_and_writes_outputs(project, tmp_path):
    out = tmp_path / "github_output"
    proc = project.train(0.9, GITHUB_OUTPUT=str(out))
    assert proc.returncode == 0, proc.stderr
    outputs = dict(line.split("=", 1) for line in out.read_text().splitlines())
    assert outputs["model_version"] == "1"
    mv = project.client().get_model_version(project.model, "1")
    assert mv.status == "READY"
    assert mv.tags["mlgate.git_commit"] == project.commit
    assert mv.tags["mlgate.git_branch"] == "feature"
    run = project.client().get_run(outputs["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.metrics["acc"] == 0.9
    assert run.data.tags["mlflow.source.git.commit"] == project.commit


def test_train_under_github_actions_tags_the_pr_head_commit_and_job_url(project, tmp_path):
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"pull_request": {"head": {"sha": "a" * 40}}}))
    env = {"GITHUB_ACTIONS": "true", "GITHUB_SHA": "b" * 40, "GITHUB_EVENT_PATH": str(event),
           "GITHUB_SERVER_URL": "https://github.com", "GITHUB_REPOSITORY": "acme/wine", "GITHUB_RUN_ID": "42",
           "GITHUB_HEAD_REF": "feature-x"}
    assert project.train(0.9, **env).returncode == 0
    tags = project.client().get_model_version(project.model, "1").tags
    assert tags["mlgate.git_commit"] == "a" * 40
    assert tags["mlgate.ci_job_url"] == "https://github.com/acme/wine/actions/runs/42"


def test_failing_training_command_keeps_its_exit_code_and_marks_the_run_failed(project):
    proc = project.train(0.9, EXIT_CODE="7")
    assert proc.returncode == 7
    assert "marked FAILED" in proc.stderr
    runs = project.client().search_runs([project.client().get_experiment_by_name(project.model).experiment_id])
    assert [r.info.status for r in runs] == ["FAILED"]
    assert project.client().search_model_versions(f"name='{project.model}'") == []


def test_training_that_logs_no_model_is_an_error(project):
    proc = project.train(0.9, NO_MODEL="1")
    assert proc.returncode == 2
    assert "logged no model" in proc.stderr and "Traceback" not in proc.stderr


def test_validate_promote_status_flow(project, tmp_path):
    assert project.train(0.9).returncode == 0
    out = tmp_path / "out"
    proc = project.run("validate", "--report", str(tmp_path / "r.md"), env={"GITHUB_OUTPUT": str(out)})
    assert proc.returncode == 0, proc.stderr
    assert "no champion yet" in proc.stdout
    assert "gates_passed=true" in out.read_text()
    c = project.client()
    mv = c.get_model_version(project.model, "1")
    assert mv.tags["mlgate.gates"] == "passed" and mv.tags["mlgate.gate.acc"] == "passed (0.9)"
    assert c.get_model_version_by_alias(project.model, "challenger").version == "1"

    # production needs staging to hold the version first
    before = project.gitops_log()
    proc = project.run("promote", "--to", "production", "--version", "1")
    assert proc.returncode == 1 and "production requires staging first: staging holds" in proc.stderr
    assert project.gitops_log() == before

    proc = project.run("promote", "--to", "staging", "--output", "json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["changed"] is True and result["version"] == "1"
    # the promotion commit changes exactly the storageUri line
    diff = git("--git-dir", str(project.gitops), "show", "--format=", "-U0", "main")
    changed = [l for l in diff.splitlines() if l.startswith(("+", "-")) and not l.startswith(("+++", "---"))]
    assert changed == [
        '-      storageUri: "s3://models/wine-classifier/initial"',
        f'+      storageUri: "models:/{project.model}/1"',
    ]
    msg = git("--git-dir", str(project.gitops), "log", "-1", "--format=%B", "main")
    assert f"Model: {project.model}" in msg and "Model-Version: 1" in msg and "Gates: passed (1/1)" in msg
    assert c.get_model_version_by_alias(project.model, "staging").version == "1"
    assert c.get_model_version(project.model, "1").tags["mlgate.promoted.staging.commit"] == result["commit"]

    # promoting the same version again commits nothing and keeps the recorded promotion
    n = len(project.gitops_log())
    before_tags = c.get_model_version(project.model, "1").tags
    proc = project.run("promote", "--to", "staging", "--version", "1")
    assert proc.returncode == 0 and "nothing to commit" in proc.stdout
    assert len(project.gitops_log()) == n
    after_tags = c.get_model_version(project.model, "1").tags
    assert after_tags["mlgate.promoted.staging.at"] == before_tags["mlgate.promoted.staging.at"]

    # production takes the version staging holds, and the champion alias
    proc = project.run("promote", "--to", "production")
    assert proc.returncode == 0, proc.stderr
    assert c.get_model_version_by_alias(project.model, "champion").version == "1"

    # a worse second version fails the relative gate: exit 1, tagged failed, not challenger
    assert project.train(0.8).returncode == 0
    proc = project.run("validate", env={"GITHUB_ACTIONS": "true"})
    assert proc.returncode == 1
    assert "worse than champion v1 (0.9) by 0.1; at most 0.05 is allowed" in proc.stdout
    assert "::error title=Gate failed%3A acc::" in proc.stdout
    assert c.get_model_version(project.model, "2").tags["mlgate.gates"] == "failed"
    assert c.get_model_version_by_alias(project.model, "challenger").version == "1"
    proc = project.run("promote", "--to", "staging", "--version", "2")
    assert proc.returncode == 1 and "its gates failed (acc)" in proc.stderr

    proc = project.run("status", "--output", "json")
    envs = {e["environment"]: e for e in json.loads(proc.stdout)["environments"]}
    assert envs["staging"]["version"] == "1" and envs["production"]["version"] == "1"
    assert envs["production"]["alias"] == "champion" and envs["production"]["gates"] == "passed"


def test_newest_version_is_chosen_by_integer_version_number(project):
    assert project.train(0.9).returncode == 0
    c = project.client()
    first = c.get_model_version(project.model, "1")
    exp_id = c.get_experiment_by_name(project.model).experiment_id
    [logged] = c.search_logged_models([exp_id], filter_string=f"source_run_id = '{first.run_id}'")
    for _ in range(11):  # versions 2..12 from the same logged model
        c.create_model_version(project.model, logged.artifact_location, first.run_id, model_id=logged.model_id)
    proc = project.run("validate", "--output", "json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["candidate_version"] == "12"


def test_unknown_version_is_a_usage_error(project):
    assert project.train(0.9).returncode == 0
    proc = project.run("validate", "--version", "99")
    assert proc.returncode == 2 and "has no version 99" in proc.stderr


def test_validate_against_a_closed_port_exits_3_with_one_line(project):
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    proc = project.run("validate", tracking_uri=uri)
    assert proc.returncode == 3
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and uri in lines[0]


class _FailingAliasProxy(BaseHTTPRequestHandler):
    """Forwards to the real MLflow server but answers 503 on the alias lookup."""

    upstream = ""

    def _forward(self):
        if "/registered-models/alias" in self.path:
            self.send_response(503)
            self.end_headers()
            self.wfile.write(b"unavailable")
            return
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        r = httpx.request(self.command, self.upstream + self.path, content=body,
                          headers={k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")})
        self.send_response(r.status_code)
        for k, v in r.headers.items():
            if k.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(r.content)))
        self.end_headers()
        self.wfile.write(r.content)

    do_GET = do_POST = do_PATCH = do_DELETE = _forward

    def log_message(self, *args):
        pass


def test_a_5xx_on_the_champion_lookup_is_exit_3_never_a_pass(project):
    assert project.train(0.9).returncode == 0
    _FailingAliasProxy.upstream = project.tracking_uri
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FailingAliasProxy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        proc = project.run("validate", tracking_uri=f"http://127.0.0.1:{server.server_port}",
                           env={"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"})
    finally:
        server.shutdown()
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "alias 'champion'" in proc.stderr
    tags = project.client().get_model_version(project.model, "1").tags
    assert "mlgate.gates" not in tags


@pytest.mark.parametrize("uri,needle", [
    ("ftp://x", "is not one MLflow can use here"),
    ("garbage-string", "is not one MLflow can use here"),
    ("https://[::1", "is not a valid URL"),
])
def test_unusable_tracking_uris_are_usage_errors(project, uri, needle):
    proc = project.run("status", tracking_uri=uri)
    assert proc.returncode == 2 and needle in proc.stderr and "internal error" not in proc.stderr


def test_read_only_commands_do_not_create_a_store_for_a_typo(project, tmp_path):
    typo = tmp_path / "typo" / "mlfow.db"
    proc = project.run("status", tracking_uri=f"sqlite:///{typo}")
    assert proc.returncode == 2 and "no MLflow store at" in proc.stderr
    assert not typo.parent.exists()


def test_credentials_in_urls_are_never_printed(project):
    proc = project.run("status", tracking_uri=f"http://user:S3CRETPW@127.0.0.1:{free_port()}")
    assert proc.returncode == 3
    assert "S3CRETPW" not in proc.stderr + proc.stdout and "user:***@" in proc.stderr


def test_a_command_that_cannot_run_fails_the_run_cleanly(project):
    (project.root / "noexec.sh").write_text("#!/bin/sh\necho hi\n")
    proc = project.run("train", "--", "./noexec.sh")
    assert proc.returncode == 2 and "Permission denied" in proc.stderr
    c = project.client()
    runs = c.search_runs([c.get_experiment_by_name(project.model).experiment_id])
    assert [r.info.status for r in runs] == ["FAILED"]


def test_missing_gitops_branch_or_repository_is_a_config_error(project):
    assert project.train(0.9).returncode == 0
    assert project.run("validate").returncode == 0
    cfg = project.root / ".mlgate.yml"
    text = cfg.read_text()
    cfg.write_text(text.replace("path: staging/", "branch: nope\n      path: staging/", 1))
    proc = project.run("promote", "--to", "staging")
    assert proc.returncode == 2 and "has no branch 'nope'" in proc.stderr
    cfg.write_text(text.replace(str(project.gitops), str(project.gitops) + "-missing"))
    proc = project.run("promote", "--to", "staging")
    assert proc.returncode == 2 and "does not exist" in proc.stderr


def test_a_version_validated_under_other_gates_is_not_promoted(project):
    assert project.train(0.9).returncode == 0
    assert project.run("validate").returncode == 0
    cfg = project.root / ".mlgate.yml"
    cfg.write_text(cfg.read_text().replace("min: 0.5", "min: 0.95"))
    proc = project.run("promote", "--to", "staging", "--version", "1")
    assert proc.returncode == 1 and "validate.gates changed since it was validated" in proc.stderr
    proc = project.run("validate", "--version", "1")
    assert proc.returncode == 1  # the stricter gate now fails
    proc = project.run("promote", "--to", "staging", "--version", "1")
    assert proc.returncode == 1 and "its gates failed (acc)" in proc.stderr


def test_promote_seeds_a_canary_environment_once_then_refers_to_mlgate_canary(project):
    cfg = project.root / ".mlgate.yml"
    text = cfg.read_text()
    assert "  - name: production\n    requires: staging\n" in text
    cfg.write_text(text.replace(
        "  - name: production\n    requires: staging\n",
        "  - name: production\n    requires: staging\n"
        "    canary:\n      steps: [50, 100]\n      interval: 60\n"
        "      target: {kind: kserve, name: wine-classifier}\n"
        "      analysis: {prometheus: 'http://127.0.0.1:9', checks: [{name: err, query: up, max: 1}]}\n"))
    assert project.run("config", "check").returncode == 0, project.run("config", "check").stderr
    for acc in (0.9, 0.91):
        assert project.train(acc).returncode == 0
        assert project.run("validate").returncode == 0
        assert project.run("promote", "--to", "staging").returncode == 0
    proc = project.run("promote", "--to", "production", "--version", "1")
    assert proc.returncode == 1 and "production requires staging first: staging holds" in proc.stderr
    project.run("promote", "--to", "staging", "--version", "1")
    proc = project.run("promote", "--to", "production", "--version", "1")
    assert proc.returncode == 0, proc.stderr  # first version: nothing to canary against
    project.run("promote", "--to", "staging", "--version", "2")
    proc = project.run("promote", "--to", "production", "--version", "2")
    assert proc.returncode == 1 and "mlgate canary start --to production" in proc.stderr


def test_promote_after_failed_gates_says_the_newest_version_failed_them(project):
    # a new user's first hour: validate failed, then promote said "run 'mlgate validate' first" (exit 2)
    assert project.train(0.3).returncode == 0  # the gate wants acc >= 0.5
    assert project.run("validate").returncode == 1
    proc = project.run("promote", "--to", "staging")
    assert proc.returncode == 1, proc.stderr  # refused, as the exit-code table says
    assert "the newest, version 1, failed its gates" in proc.stderr and "validate' first" not in proc.stderr
