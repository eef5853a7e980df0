"""Issue 11: a failed clone or push says why (all of git's stderr, secrets masked, progress
dropped), and configuration hints name the config file the user gave (``-c other.yml``).

Real ``mlgate`` processes against a real MLflow server and real git repositories (an ssh or
https remote on ``nonexistent.invalid``, which RFC 6761 guarantees never resolves)."""

from __future__ import annotations

import pytest

from tests.e2e.test_pipeline import Project

TOKEN = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"


@pytest.fixture
def gated(tmp_path, mlflow_server, gitops_repo):
    """A model repository whose version 1 passed its gates (so promote reaches git)."""
    root = tmp_path / "model-repo"
    root.mkdir()
    p = Project(root, mlflow_server, gitops_repo)
    assert p.train(0.9).returncode == 0
    assert p.run("validate").returncode == 0
    return p


def _use_repository(p: Project, url: str) -> None:
    from tests.e2e.test_pipeline import config_text

    text = config_text(p.model, p.gitops)
    assert f"repository: {p.gitops}" in text
    (p.root / ".mlgate.yml").write_text(text.replace(f"repository: {p.gitops}", f"repository: '{url}'"))


def test_unreachable_remotes_name_the_cause_and_never_a_token(gated):
    for url in ("ssh://git@nonexistent.invalid/acme/deploy.git", "git@nonexistent.invalid:acme/deploy.git"):
        _use_repository(gated, url)
        proc = gated.run("promote", "--to", "staging", "--version", "1")
        assert proc.returncode == 3, proc.stderr
        assert f"GitOps repository {url}" in proc.stderr  # ssh's user name is no secret
        assert "Could not resolve hostname nonexistent.invalid" in proc.stderr, proc.stderr
        assert "and the repository exists." in proc.stderr  # git's last line is kept too
        assert "Cloning into" not in proc.stderr and "Traceback" not in proc.stderr
    _use_repository(gated, f"https://x-access-token:{TOKEN}@nonexistent.invalid/acme/deploy.git")
    proc = gated.run("promote", "--to", "staging", "--version", "1", "--output", "json")
    assert proc.returncode == 3, proc.stderr
    assert "Could not resolve host: nonexistent.invalid" in proc.stderr, proc.stderr
    assert TOKEN not in proc.stderr + proc.stdout and "x-access-token:***@nonexistent.invalid" in proc.stderr
    c = gated.client()
    assert not [a for a in c.get_registered_model(gated.model).aliases if a == "staging"]


def test_a_push_the_server_refuses_says_why_at_once(gated):
    hook = gated.gitops / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'GH006: Protected branch update failed for refs/heads/main.' >&2\n"
                    "echo 'error: At least 1 approving review is required' >&2\nexit 1\n")
    hook.chmod(0o755)
    before = gated.gitops_log()
    proc = gated.run("promote", "--to", "staging", "--version", "1")
    assert proc.returncode == 3, proc.stderr
    assert "At least 1 approving review is required" in proc.stderr
    assert "pre-receive hook declined" in proc.stderr
    assert "lost the race" not in proc.stderr  # a refusal is not retried as a race
    assert gated.gitops_log() == before


def test_configuration_hints_name_the_config_given(gated):
    (gated.root / "ci").mkdir()
    text = (gated.root / ".mlgate.yml").read_text()
    (gated.root / "ci" / "other.yml").write_text(
        text.replace("path: staging/", "branch: nope\n      path: staging/", 1))
    proc = gated.run("promote", "-c", "ci/other.yml", "--to", "staging", "--version", "1")
    assert proc.returncode == 2, proc.stderr
    assert "has no branch 'nope' (gitops.branch in ci/other.yml)" in proc.stderr
    (gated.root / "ci" / "other.yml").write_text(text.replace(str(gated.gitops), str(gated.gitops) + "-missing"))
    proc = gated.run("promote", "-c", "ci/other.yml", "--to", "staging", "--version", "1")
    assert proc.returncode == 2 and "(gitops.repository in ci/other.yml)" in proc.stderr, proc.stderr


def test_config_check_takes_c_and_names_that_file(tmp_path, mlflow_server, gitops_repo):
    root = tmp_path / "model-repo"
    root.mkdir()
    p = Project(root, mlflow_server, gitops_repo)
    text = (root / ".mlgate.yml").read_text()
    (root / "other.yml").write_text(text.replace("validate:\n  gates:", "validate:\n  gatez: 1\n  gates:"))
    for args in (["-c", "other.yml"], ["other.yml"]):
        proc = p.run("config", "check", *args)
        assert proc.returncode == 2
        assert proc.stderr.startswith("other.yml:") and ".mlgate.yml" not in proc.stderr, proc.stderr
    proc = p.run("config", "check", env={"MLGATE_CONFIG": "other.yml"})
    assert proc.returncode == 2 and proc.stderr.startswith("other.yml:")
    proc = p.run("config", "check", "-c", ".mlgate.yml")
    assert proc.returncode == 0 and proc.stdout.startswith(".mlgate.yml: ok")
    proc = p.run("config", "check", "a.yml", "-c", "b.yml")
    assert proc.returncode == 2 and "give the config once" in proc.stderr
