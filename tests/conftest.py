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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
        stop_process_group(proc)
        log.close()


def stop_process_group(proc: subprocess.Popen, timeout: float = 15) -> None:
    """SIGTERM a server started with ``start_new_session=True`` and its children; SIGKILL after ``timeout`` s."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=timeout)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


# --------------------------------------------------------------------------- Prometheus

PROMETHEUS_BIN = shutil.which("prometheus") or "/usr/bin/prometheus"


@dataclass
class Exporter:
    """Gauges the tests set; Prometheus scrapes them every second."""

    url: str
    requests: Any  # model_requests{model, version}: requests served in the recent window
    error_ratio: Any  # model_error_ratio{model, version}: errors / requests, 0-1
    latency: Any  # model_latency_seconds{model, version}: p99 latency

    def serve(self, model: str, version: str, *, requests: float, error_ratio: float, latency: float = 0.1) -> None:
        self.requests.labels(model=model, version=version).set(requests)
        self.error_ratio.labels(model=model, version=version).set(error_ratio)
        self.latency.labels(model=model, version=version).set(latency)


@pytest.fixture(scope="session")
def exporter() -> Exporter:
    from prometheus_client import CollectorRegistry, Gauge, start_http_server

    reg = CollectorRegistry()
    labels = ["model", "version"]
    exp = Exporter(
        url="",
        requests=Gauge("model_requests", "Requests served in the recent window", labels, registry=reg),
        error_ratio=Gauge("model_error_ratio", "Errors per request in the recent window", labels, registry=reg),
        latency=Gauge("model_latency_seconds", "p99 latency", labels, registry=reg),
    )
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=reg)
    exp.url = f"127.0.0.1:{port}"
    yield exp
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture(scope="session")
def prometheus(exporter: Exporter, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Base URL of a real Prometheus scraping ``exporter`` every second."""
    if not os.path.exists(PROMETHEUS_BIN):
        pytest.fail("the prometheus binary is missing: 'make system' (or apt-get install -y prometheus) installs it")
    work = tmp_path_factory.mktemp("prometheus")
    (work / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: exporter\n    static_configs:\n"
        f"      - targets: ['{exporter.url}']\n"
    )
    port = free_port()
    log = open(work / "prometheus.log", "w")
    proc = subprocess.Popen(
        [PROMETHEUS_BIN, f"--config.file={work / 'prometheus.yml'}", f"--storage.tsdb.path={work / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=work,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"prometheus exited: {(work / 'prometheus.log').read_text()[-2000:]}")
            try:
                r = httpx.post(f"{url}/api/v1/query", data={"query": 'up{job="exporter"}'}, timeout=2)
                result = r.json()["data"]["result"] if r.status_code == 200 else []
                if result and result[0]["value"][1] == "1":
                    break
            except (httpx.HTTPError, ValueError, KeyError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("prometheus did not scrape the exporter within 60 s")
            time.sleep(0.2)
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


def wait_for_value(prometheus_url: str, promql: str, expected: float, timeout: float = 15) -> None:
    """Poll until Prometheus answers ``expected`` for ``promql`` (the exporter was scraped)."""
    from mlgate.edge.prometheus import Prometheus

    deadline = time.monotonic() + timeout
    with Prometheus(prometheus_url) as p:
        while True:
            got = p.value(promql)
            if got is not None and abs(got - expected) < 1e-9:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"{promql} is {got}, expected {expected} after {timeout} s")
            time.sleep(0.2)



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
