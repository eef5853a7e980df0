"""Shared fixtures: a real MLflow tracking server, free ports, git helpers.

The MLflow server (SQLite backend, proxied local artifacts) is started once per pytest
session on a free loopback port, in its own process group so that stopping it also stops
the workers it spawns (see shared notes: 10-28 s to answer /health).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory):
    """URL of a real ``mlflow server`` with a SQLite backend, for the whole session."""
    workdir = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    env = dict(os.environ)
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    env.pop("MLFLOW_TRACKING_URI", None)
    log = open(workdir / "server.log", "w")
    mlflow_bin = shutil.which("mlflow", path=str(VENV_BIN)) or "mlflow"
    proc = subprocess.Popen(
        [mlflow_bin, "server",
         "--backend-store-uri", f"sqlite:///{workdir}/mlflow.db",
         "--artifacts-destination", str(workdir / "artifacts"),
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited with {proc.returncode}: {(workdir / 'server.log').read_text()[-2000:]}")
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("mlflow server did not answer /health within 120 s")
            time.sleep(0.3)
        yield url
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        log.close()


def git(*args: str, cwd: Path | str | None = None) -> str:
    """Run git with a fixed identity; returns stdout (raises on failure)."""
    env = dict(os.environ, GIT_AUTHOR_NAME="Test", GIT_AUTHOR_EMAIL="test@example.com",
               GIT_COMMITTER_NAME="Test", GIT_COMMITTER_EMAIL="test@example.com", LC_ALL="C")
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def gitops_repo(tmp_path: Path):
    """A bare GitOps repository seeded with the wine example's manifests; returns its path."""
    bare = tmp_path / "gitops.git"
    git("init", "--quiet", "--bare", "-b", "main", str(bare))
    seed = tmp_path / "seed"
    shutil.copytree(ROOT / "examples" / "wine" / "gitops-seed", seed)
    git("init", "--quiet", "-b", "main", cwd=seed)
    git("add", "-A", cwd=seed)
    git("commit", "--quiet", "-m", "seed", cwd=seed)
    git("push", "--quiet", str(bare), "main", cwd=seed)
    return bare
