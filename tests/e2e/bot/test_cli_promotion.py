"""``mlgate promote`` in pull-request mode, end to end (issue 9, acceptance 1).

The CLI runs as a user's CI job would, against the spec-checked fake GitHub and fake GitLab
and a real MLflow server: it opens the promotion PR/MR on ``mlgate/promote/<model>/<env>/v<N>``
and moves no alias. Merging it moves the alias and tags the version: the bot process receives
the merge webhook in the forge's own payload shape, or, without the bot, ``mlgate reconcile``
runs in a clone of the GitOps repository; a second run changes nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.bot.conftest import BOT, GH_TOKEN, GL_TOKEN, ISVC, mlgate_yml

pytestmark = pytest.mark.slow
MLGATE = str(Path(sys.executable).parent / "mlgate")
FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"


def run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "GITLAB_", "CI_", "MLGATE_"))}
    base.pop("CI", None)
    return subprocess.run([MLGATE, *args], cwd=cwd, env={**base, **env}, capture_output=True, text=True, timeout=180)


def alias_version(client: Any, model: str, alias: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(model, alias).version)
    except MlflowException:
        return None


def passed_version(client: Any, model: str, yml: str) -> str:
    """A version whose gates passed under ``yml``'s gates, as ``mlgate validate`` tags it."""
    from mlgate.core.config import parse
    from mlgate.core.promotion import gates_fingerprint

    client.create_registered_model(model)
    mv = client.create_model_version(model, source=f"s3://models/{model}/1", tags={
        "mlgate.gates": "passed", "mlgate.gate.acc": "passed (0.9)",
        "mlgate.gates.fingerprint": gates_fingerprint(parse(yml))})
    return str(mv.version)


def clone(bare: Path, dest: Path) -> Path:
    subprocess.run(["git", "clone", "--quiet", str(bare), str(dest)], check=True)
    return dest


@pytest.fixture
def gh_setup(fakes, mlflow_server, mlflow_client, tmp_path):
    gh, _ = fakes
    n = uuid.uuid4().hex[:6]
    model, repo, deploy = f"wine-{n}", f"acme/model-{n}", f"acme/deploy-{n}"
    gh.add_repo(deploy, {"staging/isvc.yaml": ISVC.format(name=model), "production/isvc.yaml": ISVC.format(name=model)})
    gh.add_repo(repo, {".mlgate.yml": mlgate_yml(model, deploy)})
    gh.set_permission(deploy, BOT, "write")
    yml = mlgate_yml(model, f"https://github.com/{deploy}.git")
    (tmp_path / ".mlgate.yml").write_text(yml)
    version = passed_version(mlflow_client, model, yml)
    env = {"MLFLOW_TRACKING_URI": mlflow_server, "MLGATE_GITHUB_TOKEN": GH_TOKEN, "MLGATE_GITHUB_API_URL": gh.url,
           "MLGATE_GITHUB_WRITE_INTERVAL": "0", "GITHUB_ACTIONS": "true", "GITHUB_REPOSITORY": repo,
           "GITHUB_ACTOR": "alice", "GITHUB_SERVER_URL": "https://github.com", "GITHUB_RUN_ID": "42"}
    errors = len(gh.errors)
    yield gh, model, repo, deploy, version, env
    assert gh.errors[errors:] == [], "mlgate sent requests GitHub's OpenAPI description rejects"


def promote_pr(gh: Any, deploy: str, model: str, version: str, cwd: Path, env: dict[str, str], client: Any) -> Any:
    proc = run(["promote", "--to", "staging", "--version", version, "--output", "json"], cwd, env)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["landed"] is False and out["alias_moved"] is False and out["url"]
    prs = gh.pulls(deploy)
    assert len(prs) == 1 and prs[0].head == f"mlgate/promote/{model}/staging/v{version}"
    assert "mlgate-promotion" in prs[0].labels and out["url"].endswith(f"/pull/{prs[0].number}")
    assert alias_version(client, model, "staging") is None, "the alias moved before the PR merged"
    return prs[0]


def test_github_pr_from_the_cli_moves_the_alias_when_the_bot_sees_the_merge(gh_setup, bot, mlflow_client, tmp_path):
    from tests.e2e.bot.deliveries import github_merged

    gh, model, repo, deploy, version, env = gh_setup
    pr = promote_pr(gh, deploy, model, version, tmp_path, env, mlflow_client)
    merge = gh.merge_pr(deploy, pr.number)
    d = bot.send_github("pull_request", github_merged(gh, deploy, pr.number))
    info = bot.wait(d)[0]
    assert info.status == "done" and f"alias staging of {model} -> {version}" in info.outcome, info
    assert alias_version(mlflow_client, model, "staging") == version
    tags = mlflow_client.get_model_version(model, version).tags
    assert tags["mlgate.promoted.staging.commit"] == merge
    assert tags["mlgate.promoted.staging.url"].endswith(f"/pull/{pr.number}")

    # reconcile in the GitOps repository agrees with the bot and changes nothing
    work = clone(gh.repos[deploy].git.path, tmp_path / "deploy")
    proc = run(["reconcile", "--check", "--output", "json"], work, {"MLFLOW_TRACKING_URI": env["MLFLOW_TRACKING_URI"]})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = json.loads(proc.stdout)["environments"]
    assert [(r["model"], r["environment"], r["git_version"], r["state"]) for r in rows] == [
        (model, "staging", version, "in step")]


def test_github_pr_from_the_cli_without_the_bot_is_reconciled_from_git(gh_setup, mlflow_client, tmp_path):
    gh, model, repo, deploy, version, env = gh_setup
    pr = promote_pr(gh, deploy, model, version, tmp_path, env, mlflow_client)
    gh.merge_pr(deploy, pr.number)
    work = clone(gh.repos[deploy].git.path, tmp_path / "deploy")
    tracking = {"MLFLOW_TRACKING_URI": env["MLFLOW_TRACKING_URI"]}

    proc = run(["reconcile", "--check"], work, tracking)
    assert proc.returncode == 1 and "differs" in proc.stdout, proc.stdout + proc.stderr
    assert alias_version(mlflow_client, model, "staging") is None, "--check moved an alias"

    proc = run(["reconcile"], work, tracking)
    assert proc.returncode == 0, proc.stderr
    assert f"{model} staging: moved: git deploys v{version}" in proc.stdout
    assert alias_version(mlflow_client, model, "staging") == version
    promotion_commit = subprocess.run(["git", "-C", str(work), "log", "-1", "--format=%H", "--grep", "^Model-Version:"],
                                      capture_output=True, text=True, check=True).stdout.strip()
    tags = mlflow_client.get_model_version(model, version).tags
    assert tags["mlgate.promoted.staging.commit"] == promotion_commit

    again = run(["reconcile"], work, tracking)
    assert again.returncode == 0 and f"{model} staging: in step" in again.stdout, again.stdout + again.stderr
    assert mlflow_client.get_model_version(model, version).tags == tags, "a second run changed the registry"
    assert run(["reconcile", "--check"], work, tracking).returncode == 0


# --------------------------------------------------------------------------- GitLab


def gitlab_merged(project: Any, mr: Any, merge_sha: str, user_id: int) -> dict[str, Any]:
    """A ``Merge Request Hook`` with ``action: merge`` (GitLab's documented example, filled in)."""
    p = json.loads((FIXTURES / "gitlab" / "merge-request.json").read_text())
    p["user"].update(username="maintainer", id=user_id, name="Maintainer")
    p["project"].update(id=project.id, path_with_namespace=project.path, default_branch=project.default_branch)
    a = p["object_attributes"]
    a.update(action="merge", state="merged", iid=mr.iid, id=mr.id, title=mr.title, description=mr.description,
             source_branch=mr.source_branch, target_branch=mr.target_branch, source_project_id=project.id,
             target_project_id=project.id, merge_commit_sha=merge_sha,
             url=f"https://gitlab.example/{project.path}/-/merge_requests/{mr.iid}")
    a["last_commit"]["id"] = merge_sha
    return p


def test_gitlab_mr_from_the_cli_moves_the_alias_on_merge_then_reconcile_agrees(fakes, bot, mlflow_server,
                                                                                 mlflow_client, tmp_path):
    _, gl = fakes
    n = uuid.uuid4().hex[:6]
    model, repo, deploy = f"wine-{n}", f"grp/model-{n}", f"grp/deploy-{n}"
    proj = gl.add_project(deploy, {"staging/isvc.yaml": ISVC.format(name=model),
                                   "production/isvc.yaml": ISVC.format(name=model)})
    gl.add_project(repo, {".mlgate.yml": mlgate_yml(model, deploy)})
    gl.set_access(deploy, BOT, 40)
    yml = mlgate_yml(model, f"https://gitlab.example/{deploy}.git")
    (tmp_path / ".mlgate.yml").write_text(yml)
    version = passed_version(mlflow_client, model, yml)
    env = {"MLFLOW_TRACKING_URI": mlflow_server, "MLGATE_GITLAB_TOKEN": GL_TOKEN, "MLGATE_GITLAB_URL": gl.url,
           "MLGATE_FORGE": "gitlab", "GITLAB_CI": "true", "CI_PROJECT_PATH": repo, "GITLAB_USER_LOGIN": "alice",
           "CI_JOB_URL": "https://gitlab.example/job/7"}
    errors = len(gl.errors)

    proc = run(["promote", "--to", "staging", "--version", version], tmp_path, env)
    assert proc.returncode == 0, proc.stderr
    assert "moves when it is merged" in proc.stdout
    mrs = list(proj.mrs.values())
    assert len(mrs) == 1 and mrs[0].source_branch == f"mlgate/promote/{model}/staging/v{version}"
    assert "mlgate-promotion" in mrs[0].labels
    assert alias_version(mlflow_client, model, "staging") is None, "the alias moved before the MR merged"

    mr, g = mrs[0], proj.git
    head, base = g.branch(mr.source_branch), g.branch(proj.default_branch)
    assert g.is_ancestor(base, head) and g.set_ref(proj.default_branch, head, base)  # fast-forward merge
    mr.state, mr.merge_commit_sha = "merged", head
    d = bot.send_gitlab("Merge Request Hook", gitlab_merged(proj, mr, head, gl.user("maintainer")))
    info = bot.wait(d)[0]
    assert info.status == "done" and f"alias staging of {model} -> {version}" in info.outcome, info
    assert alias_version(mlflow_client, model, "staging") == version
    tags = mlflow_client.get_model_version(model, version).tags
    assert tags["mlgate.promoted.staging.commit"] == head

    work = clone(g.path, tmp_path / "deploy")
    tracking = {"MLFLOW_TRACKING_URI": mlflow_server}
    for _ in range(2):
        proc = run(["reconcile"], work, tracking)
        assert proc.returncode == 0 and f"{model} staging: in step: git deploys v{version}" in proc.stdout, \
            proc.stdout + proc.stderr
    assert mlflow_client.get_model_version(model, version).tags == tags
    assert gl.errors[errors:] == [], "mlgate sent requests the documented GitLab API does not accept"
