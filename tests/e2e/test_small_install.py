"""Issue 12, a small install: ``pip install mlgate`` brings mlflow-skinny, not full MLflow, and is
enough for train → validate (thresholds and the champion, from logged metrics) → promote →
status against a tracking server; ``pip install 'mlgate[bot]'`` is enough for ``mlgate bot serve``.
A command that needs full MLflow (the embedded store, ``validate.evaluation``) exits 2 naming
the extra to install, never with an ImportError or a traceback.

Real installs: fresh virtual environments made with ``pip install <this repository>`` (from the
run's wheelhouse, no index: the ``pip_offline`` fixture), one per extra for this module; a real ``mlflow server``; the
bot against the spec-checked fake GitHub.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import venv
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.e2e.bot.conftest import BOT, World, fakes, start_bot, stop_bot  # noqa: F401 (fakes: a fixture)
from tests.e2e.test_pipeline import Project

pytestmark = pytest.mark.slow

#: Variables that would point the fresh install at this venv's packages or another store.
_DROP = ("PYTHONPATH", "VIRTUAL_ENV", "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")


class Install:
    """A fresh virtual environment with ``pip install <repo><extras>``; ``pip_env`` (the ``pip_offline``
    fixture) points pip at the run's wheelhouse."""

    def __init__(self, root: Path, pip_env: dict[str, str], extras: str = ""):
        self.root = root
        self.pip_env = pip_env
        venv.EnvBuilder(with_pip=True).create(root)
        started = time.monotonic()
        spec = f"{ROOT}[{extras}]" if extras else str(ROOT)
        proc = subprocess.run([str(self.bin / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                               spec], capture_output=True, text=True, timeout=600, env=self.env())
        assert proc.returncode == 0, proc.stderr[-3000:]
        self.seconds = time.monotonic() - started

    @property
    def bin(self) -> Path:
        return self.root / "bin"

    def env(self, **extra: str) -> dict[str, str]:
        """This environment's bin first on PATH, and ``pip_env`` for every command: pip skipped
        byte-compiling, so the first import writes the bytecode the later commands read."""
        e = {k: v for k, v in os.environ.items()
             if k not in _DROP and not k.startswith(("GITHUB_", "GITLAB_", "CI_"))}
        e["PATH"] = f"{self.bin}{os.pathsep}{e.get('PATH', '')}"
        e.update(self.pip_env)
        e.update(extra)
        return e

    def installed(self, name: str) -> bool:
        return subprocess.run([str(self.bin / "python"), "-m", "pip", "show", "-q", name],
                              capture_output=True, text=True).returncode == 0

    def mlgate(self, *args: str, cwd: Path, tracking_uri: str | None = None) -> subprocess.CompletedProcess:
        env = self.env(**({"MLFLOW_TRACKING_URI": tracking_uri} if tracking_uri else {}))
        return subprocess.run([str(self.bin / "mlgate"), *args], cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=300)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory, pip_offline: dict[str, str]) -> Install:
    return Install(tmp_path_factory.mktemp("small") / "base", pip_offline)


@pytest.fixture(scope="module")
def bot_install(tmp_path_factory: pytest.TempPathFactory, pip_offline: dict[str, str]) -> Install:
    return Install(tmp_path_factory.mktemp("small") / "bot", pip_offline, "bot")


@pytest.fixture
def project(tmp_path, mlflow_server, gitops_repo) -> Project:
    root = tmp_path / "model-repo"
    root.mkdir()
    return Project(root, mlflow_server, gitops_repo)


def _one_line_naming(proc: subprocess.CompletedProcess, extra: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert f"pip install '{extra}'" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and "Error:" not in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_a_base_install_has_mlflow_skinny_and_not_mlflow(base: Install):
    assert base.installed("mlflow-skinny")
    assert not base.installed("mlflow")
    for heavy in ("pandas", "scikit-learn", "scipy", "Flask", "alembic", "pyarrow", "matplotlib"):
        assert not base.installed(heavy), heavy


def test_train_validate_promote_status_on_a_base_install(base: Install, project: Project):
    # The training command brings its own flavour (scikit-learn here), as a model repository's
    # requirements do: it runs with this venv's Python; mlgate itself runs from the base install.
    def train(acc: float) -> None:
        proc = base.mlgate("train", "--", sys.executable, "train_tiny.py", str(acc), cwd=project.root,
                           tracking_uri=project.tracking_uri)
        assert proc.returncode == 0, proc.stderr

    def validate() -> subprocess.CompletedProcess:
        return base.mlgate("validate", cwd=project.root, tracking_uri=project.tracking_uri)

    train(0.9)
    proc = validate()
    assert proc.returncode == 0, proc.stderr
    assert "gates passed" in proc.stdout and "against no champion yet" in proc.stdout
    for env in ("staging", "production"):
        proc = base.mlgate("promote", "--to", env, cwd=project.root, tracking_uri=project.tracking_uri)
        assert proc.returncode == 0, proc.stderr
    c = project.client()
    assert c.get_model_version_by_alias(project.model, "champion").version == "1"

    train(0.7)  # worse than the champion by more than max_regression (0.05): refused
    proc = validate()
    assert proc.returncode == 1, proc.stderr
    assert "against champion v1" in proc.stdout and "worse than champion v1 (0.9) by 0.2" in proc.stdout
    assert c.get_model_version(project.model, "2").tags["mlgate.gates"] == "failed"

    train(0.92)
    proc = validate()
    assert proc.returncode == 0, proc.stderr
    assert "against champion v1" in proc.stdout and "+0.02" in proc.stdout
    assert c.get_model_version_by_alias(project.model, "challenger").version == "3"

    proc = base.mlgate("status", cwd=project.root, tracking_uri=project.tracking_uri)
    assert proc.returncode == 0, proc.stderr
    rows = {line.split()[0]: line.split() for line in proc.stdout.splitlines()[2:]}
    assert rows["staging"][2] == "1" and rows["production"][2] == "1", proc.stdout


def test_the_embedded_store_on_a_base_install_exits_2_naming_mlgate_local(base: Install, project: Project):
    # no MLFLOW_TRACKING_URI: the config's default, sqlite:///.mlgate/mlflow.db
    for args in (("train", "--", sys.executable, "train_tiny.py", "0.9"), ("validate",), ("status",),
                 ("promote", "--to", "staging")):
        proc = base.mlgate(*args, cwd=project.root)
        _one_line_naming(proc, "mlgate[local]")
        assert "sqlite:///.mlgate/mlflow.db" in proc.stderr
    assert not (project.root / ".mlgate").exists()  # nothing was created before the refusal
    proc = base.mlgate("reconcile", "--tracking-uri", "sqlite:///mlflow.db", cwd=project.gitops.parent)
    _one_line_naming(proc, "mlgate[local]")


def test_validate_evaluation_on_a_base_install_exits_2_naming_mlgate_evaluate(base: Install, project: Project):
    proc = base.mlgate("train", "--", sys.executable, "train_tiny.py", "0.9", cwd=project.root,
                       tracking_uri=project.tracking_uri)
    assert proc.returncode == 0, proc.stderr
    (project.root / "holdout.csv").write_text("x,acc\n0,0\n1,1\n")
    cfg = project.root / ".mlgate.yml"
    cfg.write_text(cfg.read_text().replace("validate:\n", "validate:\n  evaluation: {data: holdout.csv, targets: acc}\n"))
    assert base.mlgate("config", "check", cwd=project.root).returncode == 0
    proc = base.mlgate("validate", cwd=project.root, tracking_uri=project.tracking_uri)
    _one_line_naming(proc, "mlgate[evaluate]")
    assert "validate.evaluation" in proc.stderr
    assert "mlgate.gates" not in project.client().get_model_version(project.model, "1").tags  # nothing recorded


def test_bot_serve_needs_the_bot_extra(base: Install, tmp_path):
    proc = base.mlgate("bot", "serve", "--port", "0", cwd=tmp_path)
    _one_line_naming(proc, "mlgate[bot]")


def test_the_bot_from_a_bot_install_moves_the_alias_when_a_promotion_pr_merges(
        bot_install: Install, fakes, mlflow_server, tmp_path):  # noqa: F811 (fakes: the imported fixture)
    # the scenario of tests/e2e/bot/test_github_scenarios.py::test_merging_the_promotion_pr_moves_the_alias,
    # served by `mlgate bot serve` from a fresh `pip install 'mlgate[bot]'` (no full MLflow)
    from mlflow import MlflowClient

    from tests.e2e.bot.conftest import ISVC, mlgate_yml
    from tests.e2e.bot.deliveries import github_merged

    assert bot_install.installed("mlflow-skinny") and not bot_install.installed("mlflow")
    gh, gl = fakes
    b = start_bot(tmp_path / "bot", gh.url, gl.url, mlflow_server, mlgate=bot_install.bin / "mlgate")
    try:
        client = MlflowClient(tracking_uri=mlflow_server, registry_uri=mlflow_server)
        model = f"small-{tmp_path.name[-12:].replace('_', '-')}-{os.getpid()}"
        repo, deploy = f"acme/small-model-{os.getpid()}", f"acme/small-deploy-{os.getpid()}"
        gh.add_repo(deploy, {"staging/isvc.yaml": ISVC.format(name=model),
                             "production/isvc.yaml": ISVC.format(name=model)})
        gh.add_repo(repo, {".mlgate.yml": mlgate_yml(model, deploy), "train.py": "print('train')\n"})
        for user, role in (("alice", "write"), ("bob", "write"), ("carol", "maintain")):
            gh.set_permission(repo, user, role)
        gh.set_permission(deploy, BOT, "write")
        client.create_registered_model(model)
        w = World(gh=gh, bot=b, client=client, model=model, repo=repo, deploy=deploy)
        gh.commit(repo, "feature", {"train.py": "print('better')\n"}, author="alice", message="better model")
        w.pr = gh.open_pr(repo, "feature", user="alice", title="Better model").number
        errors_before = len(gh.errors)

        version = w.register(w.head())
        gh.add_review(repo, w.pr, "bob", "APPROVED", commit_id=w.head())
        info = w.promote("/promote", by="carol")
        assert info.status == "done", info
        pr = w.promotion_prs()[0]
        gh.merge_pr(deploy, pr.number)
        info = b.wait(b.send_github("pull_request", github_merged(gh, deploy, pr.number)))[0]
        assert info.status == "done" and "alias staging" in info.outcome, info
        assert str(client.get_model_version_by_alias(model, "staging").version) == version
        assert gh.errors[errors_before:] == []
    finally:
        stop_bot(b)
