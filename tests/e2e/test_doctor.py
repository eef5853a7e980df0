"""Issue 11, acceptance 1: ``mlgate doctor`` against a healthy setup (exit 0) and against each
broken wiring (exit 1, naming the item and the fix), reading only.

Real ``mlgate`` processes, a real ``mlflow server``, real git repositories (bare, local and over
ssh to a host that does not resolve), and the spec-checked fake GitHub and GitLab for mode
``pull-request`` (their requests validated against GitHub's OpenAPI description and GitLab's
documented shapes: ``errors`` stays empty)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from tests.conftest import free_port, git
from tests.fakes.github_server import FakeGitHub
from tests.fakes.gitlab_server import FakeGitLab

pytestmark = pytest.mark.slow
MLGATE = str(Path(sys.executable).parent / "mlgate")
GH_TOKEN = "ghp_doctortoken0000000000000000000000"
GL_TOKEN = "glpat-doctortoken000000000"
USER = "deployer"


def config(model: str, repository: str, *, branch: str = "main", staging_path: str = "staging/inferenceservice.yaml",
           target: str = "{kind: kserve, name: wine-classifier}", mode: str = "push") -> str:
    return textwrap.dedent(f"""\
        model: {model}
        validate:
          gates:
            - metric: acc
              min: 0.5
        environments:
          - name: staging
            gitops:
              repository: {repository}
              branch: {branch}
              path: {staging_path}
              mode: {mode}
              target: {target}
          - name: production
            requires: staging
            gitops:
              repository: {repository}
              path: production/inferenceservice.yaml
              mode: {mode}
              target: {{kind: kserve, name: wine-classifier}}
        """)


def doctor(cwd: Path, env: dict[str, str], *args: str) -> tuple[subprocess.CompletedProcess[str], dict]:
    """Run ``mlgate doctor`` (text), then ``--output json``; both must agree on the exit code."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "GITLAB_", "CI_", "MLGATE_", "MLFLOW_"))}
    text = subprocess.run([MLGATE, "doctor", *args], cwd=cwd, env={**base, **env}, capture_output=True, text=True,
                          timeout=180)
    js = subprocess.run([MLGATE, "doctor", *args, "--output", "json"], cwd=cwd, env={**base, **env},
                        capture_output=True, text=True, timeout=180)
    doc = json.loads(js.stdout)
    assert js.returncode == text.returncode == doc["exit_code"], (text.stdout, text.stderr, js.stderr)
    return text, doc


def by_id(doc: dict) -> dict[str, dict]:
    return {c["id"]: c for c in doc["checks"]}


@pytest.fixture
def setup(tmp_path, mlflow_server, gitops_repo):
    root = tmp_path / "model-repo"
    root.mkdir()
    model = f"doc-{uuid.uuid4().hex[:8]}"
    (root / ".mlgate.yml").write_text(config(model, str(gitops_repo)))
    return root, model, gitops_repo, {"MLFLOW_TRACKING_URI": mlflow_server}


def test_a_healthy_setup_passes_every_check_and_writes_nothing(setup, mlflow_server):
    root, model, gitops, env = setup
    before = git("--git-dir", str(gitops), "for-each-ref")
    proc, doc = doctor(root, env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert doc["status"] == "ok" and all(c["status"] == "ok" for c in doc["checks"])
    assert list(by_id(doc)) == [
        "config", "tracking", "model",
        "env.staging.repository", "env.staging.branch", "env.staging.file", "env.staging.target",
        "env.production.repository", "env.production.branch", "env.production.file", "env.production.target"]
    lines = proc.stdout.splitlines()
    assert lines[0] == "mlgate doctor (.mlgate.yml)"
    assert lines[2].startswith(f"✓ tracking server answers: {mlflow_server}: MLflow 3."), lines[2]
    assert lines[3] == f"✓ registered model {model} exists: not yet: it will be created on first register"
    assert lines[-1] == "11 ok, 0 failed, 0 unknown: ready to promote"
    assert git("--git-dir", str(gitops), "for-each-ref") == before  # nothing pushed

    # the model exists once registered; --env checks one environment
    from mlflow import MlflowClient

    MlflowClient(mlflow_server, registry_uri=mlflow_server).create_registered_model(model)
    proc, doc = doctor(root, env, "--env", "production", "-c", ".mlgate.yml")
    assert proc.returncode == 0 and by_id(doc)["model"]["detail"] == "yes"
    assert not any(c["id"].startswith("env.staging") for c in doc["checks"])
    bad = subprocess.run([MLGATE, "doctor", "--env", "qa"], cwd=root, env={**os.environ, **env}, capture_output=True,
                         text=True)
    assert bad.returncode == 2 and "qa" in bad.stderr


@pytest.mark.parametrize("case, change, failed, detail_has, fix_has", [
    ("missing repository", {"repository": "/nonexistent/deployments.git"}, "env.staging.repository",
     "does not appear to be a git repository", "create the repository, or fix gitops.repository"),
    ("unresolvable ssh host", {"repository": "git@gitops.invalid:acme/deployments.git"}, "env.staging.repository",
     "Could not resolve hostname", "check the host name in gitops.repository"),
    ("missing branch", {"branch": "release"}, "env.staging.branch", "has no branch 'release'",
     "push the branch, or fix gitops.branch of staging in .mlgate.yml"),
    ("missing file", {"staging_path": "staging/isvc.yaml"}, "env.staging.file", "no staging/isvc.yaml on branch main",
     "commit the manifest there, or fix gitops.path of staging"),
    ("missing key", {"target": "{kind: helm, key: spec.predictor.model.runtimeVersion}"}, "env.staging.target",
     "runtimeVersion", "fix gitops.target of staging in .mlgate.yml"),
    ("wrong InferenceService", {"target": "{kind: kserve, name: iris}"}, "env.staging.target", "iris",
     "fix gitops.target of staging"),
])
def test_each_broken_gitops_wiring_fails_naming_the_item_and_the_fix(setup, case, change, failed, detail_has, fix_has):
    root, model, gitops, env = setup
    kw = {"repository": str(gitops), **change}
    (root / ".mlgate.yml").write_text(config(model, **kw))
    proc, doc = doctor(root, env, "--env", "staging")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    checks = by_id(doc)
    assert checks[failed]["status"] == "fail", checks
    assert detail_has in checks[failed]["detail"] and fix_has in checks[failed]["fix"], checks[failed]
    assert [c["id"] for c in doc["checks"] if c["status"] == "fail"] == [failed]
    # the checks that depend on the failed one say they were not run; the ones before it passed
    order = ["env.staging.repository", "env.staging.branch", "env.staging.file", "env.staging.target"]
    for i in order[order.index(failed) + 1:]:
        assert checks[i]["status"] == "unknown" and checks[i]["detail"].startswith("not checked:")
    assert all(checks[i]["status"] == "ok" for i in ["config", "tracking", "model", *order[:order.index(failed)]])
    # the text list names the item with ✗ and its fix right under it
    lines = proc.stdout.splitlines()
    at = next(n for n, line in enumerate(lines) if line.startswith("✗ "))
    fix = next(n for n in range(at, len(lines)) if lines[n].startswith("    fix: "))
    assert checks[failed]["title"] in lines[at] and lines[fix] == f"    fix: {checks[failed]['fix']}"
    assert all(line.startswith("    ") for line in lines[at + 1:fix])  # git's other lines, indented


def test_an_unreachable_tracking_server_fails_and_skips_the_model_check(setup):
    root, model, gitops, env = setup
    dead = f"http://127.0.0.1:{free_port()}"
    proc, doc = doctor(root, {"MLFLOW_TRACKING_URI": dead}, "--env", "staging")
    assert proc.returncode == 1
    checks = by_id(doc)
    assert checks["tracking"]["status"] == "fail" and "unreachable" in checks["tracking"]["detail"]
    assert checks["tracking"]["fix"] == (f"start the tracking server or fix MLFLOW_TRACKING_URI ({dead}); one just "
                                         "started answers a few seconds later")
    assert checks["model"]["status"] == "unknown"
    assert checks["env.staging.target"]["status"] == "ok"  # the rest is still checked
    assert "✗ tracking server answers" in proc.stdout


def test_an_invalid_config_fails_with_file_line_col(tmp_path):
    (tmp_path / "other.yml").write_text("model: m\nvalidate:\n  gatez: []\n")
    proc, doc = doctor(tmp_path, {}, "-c", "other.yml")
    assert proc.returncode == 1 and [c["id"] for c in doc["checks"]] == ["config"]
    assert "other.yml:3:3: unknown key 'gatez'" in doc["checks"][0]["detail"]
    assert "mlgate config check -c other.yml" in doc["checks"][0]["fix"]
    proc, doc = doctor(tmp_path, {})  # no .mlgate.yml at all
    assert proc.returncode == 1 and doc["checks"][0]["detail"] == ".mlgate.yml:1:1: file not found"
    assert doc["checks"][0]["fix"] == "write .mlgate.yml (README, '.mlgate.yml'), or give the config with -c FILE"


# --------------------------------------------------------------------------- mode pull-request


@pytest.fixture(scope="module")
def forges(tmp_path_factory):
    d = tmp_path_factory.mktemp("doctor-forges")
    gh = FakeGitHub(d, tokens={GH_TOKEN: USER}).start()
    gl = FakeGitLab(d, tokens={GL_TOKEN: USER}).start()
    yield gh, gl
    gh.stop()
    gl.stop()


def seed_files() -> dict[str, str]:
    seed = Path(__file__).resolve().parents[2] / "examples" / "wine" / "gitops-seed"
    return {str(p.relative_to(seed)): p.read_text() for p in seed.rglob("*.yaml")}


def test_pull_request_mode_on_github_checks_the_token_may_push_without_writing(forges, tmp_path, mlflow_server):
    gh, _ = forges
    deploy = f"acme/deploy-{uuid.uuid4().hex[:6]}"
    gh.add_repo(deploy, seed_files())
    gh.set_permission(deploy, USER, "write")
    (tmp_path / ".mlgate.yml").write_text(config("wine", f"https://github.com/{deploy}.git", mode="pull-request"))
    env = {"MLFLOW_TRACKING_URI": mlflow_server, "MLGATE_GITHUB_TOKEN": GH_TOKEN, "MLGATE_GITHUB_API_URL": gh.url}
    errors = len(gh.errors)
    proc, doc = doctor(tmp_path, env, "--env", "staging")
    assert proc.returncode == 0, proc.stdout
    checks = by_id(doc)
    assert checks["env.staging.access"]["detail"].startswith("permissions.push: true on " + deploy)
    assert [m for m, _, _ in gh.requests if m != "GET"] == [], "doctor wrote to GitHub"

    gh.set_permission(deploy, USER, "read")  # a token that can read but not push
    proc, doc = doctor(tmp_path, env, "--env", "staging")
    assert proc.returncode == 1
    access = by_id(doc)["env.staging.access"]
    assert access["status"] == "fail" and "permissions.push: false" in access["detail"]
    assert f"write access to {deploy}" in access["fix"]
    assert "✗ staging: the GitHub token may open a promotion PR" in proc.stdout
    assert all(c["status"] == "ok" for c in doc["checks"] if c["id"] != "env.staging.access")

    # a repository the token cannot see, and no token at all
    (tmp_path / ".mlgate.yml").write_text(config("wine", "https://github.com/acme/nope.git", mode="pull-request"))
    proc, doc = doctor(tmp_path, env, "--env", "staging")
    repo = by_id(doc)["env.staging.repository"]
    assert proc.returncode == 1 and repo["status"] == "fail" and "404 for acme/nope" in repo["detail"]
    proc, doc = doctor(tmp_path, {"MLFLOW_TRACKING_URI": mlflow_server}, "--env", "staging")
    repo = by_id(doc)["env.staging.repository"]
    assert proc.returncode == 1 and repo["fix"] == "set the token the promotion uses (MLGATE_GITHUB_TOKEN)"
    assert GH_TOKEN not in proc.stdout + proc.stderr
    # nothing listens at the configured API URL: a failed check, naming the setting
    dead = {**env, "MLGATE_GITHUB_API_URL": f"http://127.0.0.1:{free_port()}"}
    proc, doc = doctor(tmp_path, dead, "--env", "staging")
    repo = by_id(doc)["env.staging.repository"]
    assert proc.returncode == 1 and repo["status"] == "fail" and "unreachable" in repo["detail"]
    assert repo["fix"] == "check MLGATE_GITHUB_API_URL / MLGATE_GITLAB_URL and the route to the forge"
    assert gh.errors[errors:] == [], "doctor sent requests GitHub's OpenAPI description rejects"


def test_pull_request_mode_on_gitlab_checks_the_access_level(forges, tmp_path, mlflow_server):
    _, gl = forges
    deploy = f"acme/deploy-{uuid.uuid4().hex[:6]}"
    gl.add_project(deploy, seed_files())
    gl.set_access(deploy, USER, 30)
    (tmp_path / ".mlgate.yml").write_text(
        config("wine", f"https://gitlab.example.com/{deploy}.git", mode="pull-request"))
    env = {"MLFLOW_TRACKING_URI": mlflow_server, "MLGATE_GITLAB_TOKEN": GL_TOKEN, "MLGATE_GITLAB_URL": gl.url}
    errors = len(gl.errors)
    proc, doc = doctor(tmp_path, env, "--env", "staging")
    assert proc.returncode == 0, proc.stdout
    assert by_id(doc)["env.staging.access"]["detail"].startswith("access level Developer (30)")

    gl.set_access(deploy, USER, 20)  # Reporter: can read, cannot push a branch
    proc, doc = doctor(tmp_path, env, "--env", "staging")
    access = by_id(doc)["env.staging.access"]
    assert proc.returncode == 1 and access["status"] == "fail"
    assert "Reporter (20)" in access["detail"] and "Developer or higher" in access["fix"]
    assert "✗ staging: the GitLab token may open a promotion MR" in proc.stdout

    # access inherited from a group: GitLab's project permissions are null, the members API tells
    gl.set_access(deploy, USER, 40, inherited=True)
    proc, doc = doctor(tmp_path, env, "--env", "staging")
    assert proc.returncode == 0 and "Maintainer (40)" in by_id(doc)["env.staging.access"]["detail"]

    # a missing branch on the forge
    (tmp_path / ".mlgate.yml").write_text(
        config("wine", f"https://gitlab.example.com/{deploy}.git", mode="pull-request", branch="release"))
    proc, doc = doctor(tmp_path, env, "--env", "staging")
    assert proc.returncode == 1 and by_id(doc)["env.staging.branch"]["status"] == "fail"
    assert [m for m, _, _ in gl.requests if m != "GET"] == [], "doctor wrote to GitLab"
    assert gl.errors[errors:] == [], "doctor sent requests GitLab's documented API does not take"


# --------------------------------------------------------------------------- Prometheus and the Argo Server


def with_canary_and_argo(text: str, prometheus: str, argo: str) -> str:
    """``text`` with a canary (analysis on ``prometheus``) on production and training on ``argo``."""
    canary = textwrap.indent(textwrap.dedent(f"""\
        canary:
          steps: [10, 100]
          interval: 60
          target: {{kind: kserve, name: wine-classifier}}
          analysis:
            prometheus: {prometheus}
            checks:
              - name: errors
                query: 'max(model_error_ratio{{version="{{version}}"}})'
                max: 0.05
        """), "    ")
    train = textwrap.dedent(f"""\
        train:
          backend: argo
          argo: {{server: {argo}, namespace: argo, template: mlgate-train-gpu, image: ghcr.io/acme/wine:1}}
        """)
    return train + text + canary


def test_prometheus_and_the_argo_server_are_checked_when_the_config_uses_them(setup, prometheus):
    from ruamel.yaml import YAML

    from tests.fakes.argo_server import FakeArgoServer, SwaggerSpec

    root, model, gitops, env = setup
    token = "argo-doctor-token-1234"
    template = YAML(typ="safe").load((Path(__file__).resolve().parents[2] / "workflows" / "mlgate-train-gpu.yaml")
                                     .read_text())
    with FakeArgoServer(tokens={token: ["argo"]}, spec=SwaggerSpec()) as argo:
        argo.add_workflow_template(json.loads(json.dumps(template)), "argo")
        (root / ".mlgate.yml").write_text(with_canary_and_argo(config(model, str(gitops)), prometheus, argo.url))
        proc, doc = doctor(root, {**env, "ARGO_TOKEN": token}, "--env", "production")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        checks = by_id(doc)
        assert checks["prometheus.production"]["detail"].startswith("Prometheus ")
        assert checks["argo"]["detail"] == "WorkflowTemplate mlgate-train-gpu found in namespace argo"
        assert list(checks)[-2:] == ["prometheus.production", "argo"]

        # a token the Argo Server refuses, and a Prometheus nothing listens on
        dead = f"http://127.0.0.1:{free_port()}"
        (root / ".mlgate.yml").write_text(with_canary_and_argo(config(model, str(gitops)), dead, argo.url))
        proc, doc = doctor(root, {**env, "ARGO_TOKEN": "wrong"}, "--env", "production")
        assert proc.returncode == 1
        checks = by_id(doc)
        assert checks["prometheus.production"]["status"] == "fail"
        assert checks["prometheus.production"]["fix"] == "fix canary.analysis.prometheus or the route to it"
        assert checks["argo"]["status"] == "fail" and "401" in checks["argo"]["detail"]
        assert "wrong" not in json.dumps(doc) and token not in proc.stdout
        assert not argo.rejected, argo.rejected


def test_a_github_app_installation_needs_contents_and_pull_requests_write(tmp_path):
    """The bot's forge client (a GitHub App installation): REST "Get a repository installation for
    the authenticated app" with the App's JWT, on the spec-checked fake."""
    from mlgate.edge.forges.github import GitHubForge
    from tests.fakes.github_server import app_keypair

    private, public = app_keypair()
    with FakeGitHub(tmp_path, app=(42, public)) as gh:
        gh.add_repo("acme/deploy", seed_files())
        forge = GitHubForge(gh.url, app_id=42, private_key=private, installation_id=7, request_interval=0)
        access = forge.repository_access("acme/deploy")
        assert access.exists and access.can_open_pr and access.role == \
            "installation has contents: write, pull_requests: write"
        gh.app_permissions = {"contents": "read", "pull_requests": "write", "metadata": "read"}
        access = forge.repository_access("acme/deploy")
        assert access.can_open_pr is False and access.role == "installation lacks contents: write"
        assert not forge.repository_access("acme/nope").exists
        assert gh.errors == [], gh.errors


# --------------------------------------------------------------------------- cannot tell (exit 3), secrets


def test_a_server_error_proves_nothing_exit_3_and_no_secret_is_printed(setup):
    """A tracking server answering 503 cannot tell whether the wiring is right: ``?`` and exit 3
    (no check failed). A token in a GitOps URL never reaches the output."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Busy(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Busy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    root, model, gitops, env = setup
    try:
        proc, doc = doctor(root, {"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{server.server_port}"}, "--env", "staging")
    finally:
        server.shutdown()
        server.server_close()
    assert proc.returncode == 3, proc.stdout
    checks = by_id(doc)
    assert doc["status"] == "unknown" and checks["tracking"]["status"] == "unknown"
    assert "503" in checks["tracking"]["detail"] and checks["model"]["status"] == "unknown"
    assert proc.stdout.splitlines()[-1] == "5 ok, 0 failed, 2 unknown: cannot tell: see the ? items"

    secret = "ghp_doctorsecret00000000000000000000000"
    (root / ".mlgate.yml").write_text(config(model, f"https://x-access-token:{secret}@127.0.0.1:{free_port()}/acme/d.git"))
    proc, doc = doctor(root, env, "--env", "staging")
    assert proc.returncode == 1 and by_id(doc)["env.staging.repository"]["status"] == "fail"
    assert secret not in proc.stdout + proc.stderr + json.dumps(doc)
    assert "x-access-token:***@127.0.0.1" in by_id(doc)["env.staging.repository"]["title"]


def test_the_embedded_store_before_and_after_the_first_training(tmp_path, gitops_repo):
    """Without MLFLOW_TRACKING_URI the config's embedded store is used: before the first 'mlgate
    train' it does not exist yet (fine: train creates it, and the model comes with the first
    registration); once it exists, it is read."""
    (tmp_path / ".mlgate.yml").write_text(config("wine-local", str(gitops_repo)))
    proc, doc = doctor(tmp_path, {}, "--env", "staging")
    assert proc.returncode == 0, proc.stdout
    checks = by_id(doc)
    assert checks["tracking"]["detail"].startswith("embedded store sqlite:///.mlgate/mlflow.db not created yet")
    assert checks["model"]["detail"] == "will be created on first register"

    from mlflow import MlflowClient

    (tmp_path / ".mlgate").mkdir()
    uri = f"sqlite:///{tmp_path / '.mlgate' / 'mlflow.db'}"
    MlflowClient(uri, registry_uri=uri).create_registered_model("wine-local")
    proc, doc = doctor(tmp_path, {}, "--env", "staging")
    assert proc.returncode == 0, proc.stdout
    checks = by_id(doc)
    assert checks["tracking"]["detail"].startswith(f"{uri}: embedded store (sqlite), read through MLflow ")
    assert checks["model"]["detail"] == "yes"
