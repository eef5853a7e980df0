"""A real Prometheus server scraping an exporter the tests control, plus canary test helpers.

Session fixtures: ``exporter`` (prometheus-client's HTTP server on a free loopback port, with
gauges per model and version that tests set) and ``prometheus`` (the Debian ``prometheus``
binary, ``scrape_interval: 1s``, a temp TSDB, on another free loopback port). Both stop at
the end of the session. Tests isolate themselves by using their own model name as a label.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import free_port, git

PROMETHEUS_BIN = shutil.which("prometheus") or "/usr/bin/prometheus"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "canary"


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
    from mlgate.prometheus import Prometheus

    deadline = time.monotonic() + timeout
    with Prometheus(prometheus_url) as p:
        while True:
            got = p.value(promql)
            if got is not None and abs(got - expected) < 1e-9:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"{promql} is {got}, expected {expected} after {timeout} s")
            time.sleep(0.2)


def clock() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
def model_name() -> str:
    return f"canary-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def registry(mlflow_server: str):
    from mlgate.registry import Registry

    return Registry(mlflow_server)


def register_versions(registry: Any, model: str, n: int = 2, *, champion: str | None = "1",
                      gates: dict[str, str] | None = None) -> None:
    """Versions 1..n of ``model`` with source ``s3://models/<model>/<v>``; v1 holds champion,
    the others passed their gates (``gates`` overrides per version)."""
    client = registry.client
    client.create_registered_model(model)
    for v in range(1, n + 1):
        client.create_model_version(model, source=f"s3://models/{model}/{v}", run_id=None)
        if v > 1:
            client.set_model_version_tag(model, str(v), "mlgate.gates", (gates or {}).get(str(v), "passed"))
    if champion:
        client.set_registered_model_alias(model, "champion", champion)


def seed_repo(tmp: Path, files: dict[str, str]) -> Path:
    """A bare GitOps repository (branch main) holding ``files``; returns its path."""
    bare = tmp / "gitops.git"
    git("init", "--quiet", "--bare", "-b", "main", str(bare))
    seed = tmp / "seed"
    for rel, text in files.items():
        p = seed / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    git("init", "--quiet", "-b", "main", cwd=seed)
    git("add", "-A", cwd=seed)
    git("commit", "--quiet", "-m", "seed", cwd=seed)
    git("push", "--quiet", str(bare), "main", cwd=seed)
    return bare


def history(bare: Path) -> list[tuple[str, str]]:
    """(sha, subject) of every commit on main, oldest first."""
    out = git("--git-dir", str(bare), "log", "--reverse", "--format=%H%x09%s", "main")
    return [tuple(line.split("\t", 1)) for line in out.splitlines()]  # type: ignore[misc]


def file_at(bare: Path, ref: str, path: str) -> str:
    return git("--git-dir", str(bare), "show", f"{ref}:{path}")


def swaps(a: str, b: str) -> list[tuple[str, str]]:
    """(old, new) for each line that differs between two texts of the same line count."""
    la, lb = a.splitlines(), b.splitlines()
    assert len(la) == len(lb), "lines were added or removed"
    return [(x, y) for x, y in zip(la, lb) if x != y]


def drive(tick_once: Callable[[], list[Any]], until: Callable[[], bool], timeout: float = 30.0,
          pause: float = 0.2) -> list[Any]:
    """Call ``tick_once`` until ``until()`` holds; returns every TickResult seen."""
    seen: list[Any] = []
    deadline = time.monotonic() + timeout
    while True:
        seen += tick_once()
        if until():
            return seen
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout} s; last results: "
                                 f"{[(r.action, r.message) for r in seen[-3:]]}")
        time.sleep(pause)
