"""Issue 11, a team's first hour: training from a dirty tree says so (and ``--require-clean``
refuses); ``promote`` without a version says which one it chose and why.

Real ``mlgate`` processes against a real MLflow server and real git repositories."""

from __future__ import annotations

import json

import pytest

from tests.conftest import git
from tests.e2e.test_pipeline import Project


@pytest.fixture
def project(tmp_path, mlflow_server, gitops_repo):
    root = tmp_path / "model-repo"
    root.mkdir()
    return Project(root, mlflow_server, gitops_repo)


def _runs(p: Project) -> int:
    c = p.client()
    exp = c.get_experiment_by_name(p.model)
    return 0 if exp is None else len(c.search_runs([exp.experiment_id]))


def test_a_dirty_tree_is_tagged_and_warned_and_require_clean_refuses(project):
    c = project.client()
    (project.root / "train_tiny.py").write_text(project.root.joinpath("train_tiny.py").read_text() + "# tweak\n")
    proc = project.train(0.9)
    assert proc.returncode == 0, proc.stderr
    assert "uncommitted changes (train_tiny.py)" in proc.stderr and "mlgate.git_dirty=true" in proc.stderr
    mv = c.get_model_version(project.model, "1")
    assert mv.tags["mlgate.git_dirty"] == "true" and mv.tags["mlgate.git_commit"] == project.commit
    assert c.get_run(mv.run_id).data.tags["mlgate.git_dirty"] == "true"

    # --require-clean: exit 2, no run and no version
    runs = _runs(project)
    proc = project.run("train", "--require-clean", "--output", "json")
    assert proc.returncode == 2, proc.stderr
    assert "uncommitted changes (train_tiny.py)" in proc.stderr and "nothing was started" in proc.stderr
    assert proc.stdout == "" and _runs(project) == runs
    assert [v.version for v in c.search_model_versions(f"name='{project.model}'")] == ["1"]

    # committed (an untracked file does not count): clean, tagged false, no warning
    git("commit", "--quiet", "-am", "tweak", cwd=project.root)
    (project.root / "notes.txt").write_text("scratch\n")
    proc = project.run("train", "--require-clean", "--output", "json")
    assert proc.returncode == 0, proc.stderr
    assert "uncommitted" not in proc.stderr
    out = json.loads(proc.stdout)
    assert out["git_dirty"] is False and out["model_version"] == "2"
    assert c.get_model_version(project.model, "2").tags["mlgate.git_dirty"] == "false"


def test_promote_without_a_version_says_which_it_chose_and_why(project):
    for acc in (0.9, 0.91):
        assert project.train(acc).returncode == 0
    assert project.run("validate").returncode == 0                   # v2 passes: challenger v2
    assert project.run("validate", "--version", "1").returncode == 0  # re-gating v1 moves challenger back
    proc = project.run("promote", "--to", "staging", "--output", "json")
    assert proc.returncode == 0, proc.stderr
    assert "mlgate: promoting v1: the challenger, v1, set " in proc.stderr, proc.stderr  # "just now" / "N minutes ago"
    assert "v2 is newer than v1 and its gates passed" in proc.stderr
    out = json.loads(proc.stdout)
    assert out["version"] == "1"
    assert out["chosen"]["version"] == "1" and out["chosen"]["why"].startswith("the challenger, v1")
    assert out["chosen"]["newer_passed"] == "2"

    proc = project.run("promote", "--to", "production")
    assert proc.returncode == 0, proc.stderr
    assert "promoting v1: the version that staging holds (alias 'staging', set " in proc.stderr
    # an explicit version says nothing about a choice
    proc = project.run("promote", "--to", "staging", "--version", "2", "--output", "json")
    assert proc.returncode == 0 and "promoting v" not in proc.stderr and json.loads(proc.stdout)["chosen"] is None
