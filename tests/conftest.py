"""Shared fixtures: a real MLflow tracking server, Prometheus, free ports, git helpers, and the
order and grouping of tests under pytest-xdist.

The MLflow server (SQLite backend, proxied local artifacts) is started once per run, shared
by every xdist worker, on a free loopback port, in its own process group so that stopping it
also stops the workers it spawns (see shared notes: 10-28 s to answer /health).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
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


# --------------------------------------------------------------------------- servers under pytest-xdist
#
# ``make test`` runs the suite in several xdist worker processes. A server that only talks
# HTTP to the tests (MLflow, PostgreSQL) is started ONCE per run, by whichever process needs
# it first, and shared by every worker through a state file written under a file lock in
# a folder common to the run; the controller (or the only process, without xdist) stops it
# at the very end, after every worker is done. A server that depends on objects living in
# one test process (Prometheus scrapes that process's exporter) is started per process.
# Servers that take long to start are spawned as soon as collection shows that some test
# needs them, so that they come up while the first tests run (see pytest_collection_finish).

_SHARED_KEY = "mlgate_shared_dir"
_shared_dir: Path | None = None  # this process's run-wide folder, once known
_children: dict[int, subprocess.Popen] = {}  # servers this process started, by pid
_cleanups: list[Callable[[], None]] = []  # per-process servers to stop at the end of this process


def shared_dir(config: pytest.Config) -> Path:
    """The folder that every process of this run (controller and xdist workers) shares."""
    global _shared_dir
    if _shared_dir is None:
        wi = getattr(config, "workerinput", None)
        if wi is not None and wi.get(_SHARED_KEY):
            _shared_dir = Path(wi[_SHARED_KEY])
        else:
            base = config._tmp_path_factory.getbasetemp()  # xdist: a worker's is <controller's>/gwN
            _shared_dir = (base.parent if wi is not None else base) / "shared-servers"
            _shared_dir.mkdir(exist_ok=True)
    return _shared_dir


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist controller: every worker uses the controller's shared folder."""
    node.workerinput[_SHARED_KEY] = str(shared_dir(node.config))


@contextmanager
def _file_lock(path: Path):
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def shared_server(config: pytest.Config, name: str, start: Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
    """The state of server ``name`` for this run, calling ``start(workdir)`` in the first process that asks.

    ``start`` returns a JSON-able dict with at least ``url`` and either ``pid`` (the leader of
    a process group the server runs in) or ``stop`` (a command that stops it); ``cleanup``
    names a folder to delete after it stopped. It runs under the lock: others wait for it.
    """
    d = shared_dir(config)
    state = d / f"{name}.json"
    with _file_lock(d / f"{name}.lock"):
        if state.exists():
            return json.loads(state.read_text())
        work = d / name
        work.mkdir(exist_ok=True)
        info = start(work)
        state.write_text(json.dumps(info))
        return info


def _stop_shared_servers() -> None:
    if _shared_dir is None or not _shared_dir.is_dir():
        return
    for state in sorted(_shared_dir.glob("*.json")):
        info = json.loads(state.read_text())
        if info.get("stop"):
            subprocess.run(info["stop"], capture_output=True, timeout=60)
        elif info.get("pid"):
            stop_process_group(info["pid"])
        if info.get("cleanup"):
            shutil.rmtree(info["cleanup"], ignore_errors=True)
        state.unlink()


def pytest_unconfigure(config: pytest.Config) -> None:
    for cleanup in reversed(_cleanups):
        cleanup()
    _cleanups.clear()
    if not hasattr(config, "workerinput"):  # the controller, or the only process: every worker is done
        _stop_shared_servers()


def _pid_alive(pid: int) -> bool:
    proc = _children.get(pid)
    if proc is not None:
        return proc.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def stop_process_group(proc: subprocess.Popen | int, timeout: float = 15) -> None:
    """SIGTERM a server started with ``start_new_session=True`` and its children; SIGKILL after ``timeout`` s.

    ``proc`` is a Popen or the pid of a group leader (possibly started by another test process)."""
    pid = proc.pid if isinstance(proc, subprocess.Popen) else proc
    if isinstance(proc, subprocess.Popen):
        _children.setdefault(pid, proc)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + timeout
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not _pid_alive(pid):
            break
    if pid in _children:
        try:
            _children.pop(pid).wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass


def wait_healthy(name: str, pid: int, ready: Callable[[], bool], log: Path, timeout: float) -> None:
    """Poll ``ready()`` until it holds; fail with the log's tail if the server exits or ``timeout`` s pass."""
    deadline = time.monotonic() + timeout
    while True:
        if not _pid_alive(pid):
            raise RuntimeError(f"{name} exited: {log.read_text()[-2000:] if log.exists() else ''}")
        try:
            if ready():
                return
        except (httpx.HTTPError, ValueError, KeyError, IndexError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name} did not answer within {timeout} s: {log.read_text()[-2000:]}")
        time.sleep(0.2)


def _needs(session: pytest.Session, fixture: str) -> bool:
    return any(fixture in getattr(item, "fixturenames", ()) for item in session.items)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Spawn the slow servers now (without waiting for them) if some collected test will need them."""
    if session.config.option.collectonly:
        return
    if _needs(session, "mlflow_server"):
        shared_server(session.config, "mlflow", _spawn_mlflow)
    if _needs(session, "prometheus"):
        _prometheus_process(session.config)


# --------------------------------------------------------------------------- MLflow


def _spawn_mlflow(workdir: Path) -> dict[str, Any]:
    """``mlflow server`` (SQLite backend, proxied local artifacts) on a free loopback port, in its
    own process group so that stopping it also stops the workers it spawns (10-28 s to answer /health)."""
    port = free_port()
    env = dict(os.environ)
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    # the bot's MLflow webhook tests (tests/e2e/bot/test_registry_webhooks.py): MLflow delivers to the bot on
    # loopback over plain http (refused by default, mlflow/webhooks/ssrf.py) and sees a new webhook within 1 s
    env.update(MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS="true", MLFLOW_WEBHOOK_ALLOWED_SCHEMES="http,https",
               MLFLOW_WEBHOOK_CACHE_TTL="1")
    env.pop("MLFLOW_TRACKING_URI", None)
    mlflow_bin = shutil.which("mlflow", path=str(VENV_BIN)) or "mlflow"
    with open(workdir / "server.log", "w") as log:
        proc = subprocess.Popen(
            [mlflow_bin, "server",
             "--backend-store-uri", f"sqlite:///{workdir}/mlflow.db",
             "--artifacts-destination", str(workdir / "artifacts"),
             "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
            cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    _children[proc.pid] = proc
    return {"url": f"http://127.0.0.1:{port}", "pid": proc.pid, "log": str(workdir / "server.log")}


@pytest.fixture(scope="session")
def mlflow_server(pytestconfig: pytest.Config) -> str:
    """URL of a real ``mlflow server`` with a SQLite backend, one for the whole run (all xdist workers).

    Tests isolate themselves by unique model and experiment names."""
    info = shared_server(pytestconfig, "mlflow", _spawn_mlflow)
    url = info["url"]
    wait_healthy("mlflow server", info["pid"], lambda: httpx.get(f"{url}/health", timeout=2).status_code == 200,
                 Path(info["log"]), timeout=120)
    return url


# --------------------------------------------------------------------------- pip in fresh virtual environments
#
# The tests that install mlgate into fresh virtual environments (the CI runners' jobs under act
# and gitlab-ci-local, the small installs) give pip a wheelhouse and no index. A pip install in
# a fresh venv is CPU-bound: about 40 % of it evaluates every file link of the index pages it
# reads (pydantic-core alone lists 15,000 files on PyPI), and the suite runs about twenty such
# installs. The wheelhouse holds mlgate's dependencies with every extra a test installs, built
# once per run with pip's ordinary resolution (so the jobs get what they would get from the
# index), shared by the xdist workers; then each install resolves against ~100 local files and
# runs offline. This is the environment the tests give the runner: the actions and templates
# run their own pip commands unchanged.

#: The extras the tests install into fresh virtual environments (the wine config's, the bot's).
WHEELHOUSE_EXTRAS = "bot,evaluate,local"


def _build_wheelhouse(dest: Path) -> None:
    import tomllib

    build = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["build-system"]["requires"]
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--disable-pip-version-check", "--wheel-dir", str(dest),
         f"{ROOT}[{WHEELHOUSE_EXTRAS}]", *build],
        capture_output=True, text=True, timeout=900,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"pip wheel failed: {proc.stdout[-2000:]}{proc.stderr[-3000:]}")
    for own in dest.glob("mlgate-*.whl"):  # the tests install mlgate from its source, never a prebuilt wheel
        own.unlink()


@pytest.fixture(scope="session")
def pip_offline(pytestconfig: pytest.Config) -> dict[str, str]:
    """Environment variables that make pip install from this run's wheelhouse, without an index, and
    leave byte-compiling to the imports.

    pip byte-compiles every installed module (mlflow, pandas, scipy, scikit-learn: about 9,000
    files, two thirds of a fresh install's CPU with the wheelhouse) while a job imports a small
    part of them: ``PIP_COMPILE=0`` (``PIP_NO_COMPILE=1`` would turn compiling ON: pip reads a
    boolean variable as the value of the option it names, and --no-compile stores False) and an
    empty ``PYTHONDONTWRITEBYTECODE`` (this machine sets it), so that the first import writes the
    cache that the job's later processes read, as on a real runner."""
    d = shared_dir(pytestconfig)
    dest = d / "wheelhouse"
    with _file_lock(d / "wheelhouse.lock"):
        if not (dest / ".complete").exists():
            shutil.rmtree(dest, ignore_errors=True)
            dest.mkdir()
            _build_wheelhouse(dest)
            (dest / ".complete").touch()
    return {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(dest), "PIP_COMPILE": "0", "PYTHONDONTWRITEBYTECODE": ""}


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


_exporter: Exporter | None = None
_prometheus: tuple[str, int, Path] | None = None  # url, pid, log of this process's Prometheus


def _exporter_instance() -> Exporter:
    """This process's exporter (prometheus-client's HTTP server on a free loopback port), started once."""
    global _exporter
    if _exporter is None:
        from prometheus_client import CollectorRegistry, Gauge, start_http_server

        reg = CollectorRegistry()
        labels = ["model", "version"]
        exp = Exporter(
            url="",
            requests=Gauge("model_requests", "Requests served in the recent window", labels, registry=reg),
            error_ratio=Gauge("model_error_ratio", "Errors per request in the recent window", labels, registry=reg),
            latency=Gauge("model_latency_seconds", "p99 latency", labels, registry=reg),
        )
        server, thread = start_http_server(free_port(), addr="127.0.0.1", registry=reg)
        exp.url = f"127.0.0.1:{server.server_port}"

        def stop() -> None:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)

        _cleanups.append(stop)
        _exporter = exp
    return _exporter


def _prometheus_process(config: pytest.Config) -> tuple[str, int, Path]:
    """This process's Prometheus (scraping this process's exporter every second), spawned once."""
    global _prometheus
    if _prometheus is None:
        if not os.path.exists(PROMETHEUS_BIN):
            pytest.fail("the prometheus binary is missing: 'make system' (or apt-get install -y prometheus) installs it")
        exporter = _exporter_instance()
        work = config._tmp_path_factory.mktemp("prometheus")
        (work / "prometheus.yml").write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: exporter\n    static_configs:\n"
            f"      - targets: ['{exporter.url}']\n"
        )
        port = free_port()
        with open(work / "prometheus.log", "w") as log:
            proc = subprocess.Popen(
                [PROMETHEUS_BIN, f"--config.file={work / 'prometheus.yml'}", f"--storage.tsdb.path={work / 'data'}",
                 f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=work,
            )
        _children[proc.pid] = proc
        _cleanups.append(lambda: stop_process_group(proc))
        _prometheus = (f"http://127.0.0.1:{port}", proc.pid, work / "prometheus.log")
    return _prometheus


@pytest.fixture(scope="session")
def exporter() -> Exporter:
    """Gauges per model and version that tests set (labels: their own model name keeps tests apart)."""
    return _exporter_instance()


@pytest.fixture(scope="session")
def prometheus(exporter: Exporter, pytestconfig: pytest.Config) -> str:
    """Base URL of a real Prometheus scraping ``exporter`` every second (one per test process)."""
    url, pid, log = _prometheus_process(pytestconfig)

    def scraped() -> bool:
        r = httpx.post(f"{url}/api/v1/query", data={"query": 'up{job="exporter"}'}, timeout=2)
        result = r.json()["data"]["result"] if r.status_code == 200 else []
        return bool(result) and result[0]["value"][1] == "1"

    wait_healthy("prometheus", pid, scraped, log, timeout=60)
    return url


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


# --------------------------------------------------------------------------- order and groups under xdist
#
# ``make test`` schedules with ``--dist loadgroup --no-loadscope-reorder``: each test is a unit
# of work handed to the next free worker, in collection order, so the slowest tests go first
# (longest-first keeps the two workers busy until the end instead of leaving one long test
# alone at the tail). Modules whose module-scoped fixtures start a process (a bot, a fake
# server) stay together on one worker, so that the fixture starts once. The order below
# comes from ``--durations`` (slowest per test first); then come the other end-to-end modules
# (a new one is likely slow), then the rest, each keeping its place.

SLOWEST_FIRST = (
    "tests/e2e/test_demo.py",               # demo.sh twice: ~75 s
    "tests/e2e/ci/test_act.py",             # act runs of the example workflow
    "tests/e2e/ci/test_gitlab_ci_local.py",
    "tests/e2e/test_pipeline.py",           # mlgate CLI subprocesses against MLflow: ~10 s each
    "tests/e2e/test_small_install.py",      # two fresh venvs (pip install, warm cache), then the CLI
    "tests/e2e/bot/test_cli_promotion.py",
    "tests/e2e/ci/test_reconcile_ci.py",
    "tests/e2e/bot/test_canary_bot.py",
    "tests/e2e/test_train_argo.py",
    "tests/flows/test_canary_live.py",
    "tests/e2e/bot/test_train_bot.py",
    "tests/e2e/bot/test_alert_retrain.py",  # real Prometheus and Alertmanager: ~60 s
    "tests/e2e/ci/test_try_locally.py",     # the README's act and gitlab-ci-local commands: ~65 s each
    "tests/e2e/bot/test_registry_webhooks.py",  # a bot and the real MLflow server's webhooks: ~2 min
    "tests/e2e/bot/test_explain_record.py",
    "tests/e2e/bot/test_dashboard.py",      # a promotion and a canary, then headless Chromium
    "tests/e2e/test_doctor.py",
    "tests/e2e/bot/test_canary_undecided_bot.py",
    "tests/e2e/test_gate_names.py",
    "tests/e2e/bot/test_github_scenarios.py",
    "tests/e2e/bot/test_gitlab_scenarios.py",
    "tests/e2e/bot/test_forges.py",
    "tests/bot/test_server_process.py",
    "tests/edge/test_argo.py",
)

#: Modules run as one unit on one worker: their module-scoped fixtures start a process.
KEEP_TOGETHER = (
    "tests/e2e/bot/test_canary_bot.py",  # canary_bot: a bot process
    "tests/e2e/bot/test_train_bot.py",   # train_bot and argo_server: a bot process, a fake Argo
    "tests/e2e/bot/test_alert_retrain.py",  # alert_bot, alerting: a bot, Prometheus, Alertmanager
    "tests/edge/test_argo.py",           # fake: a fake Argo Server (its swagger checked per request)
    "tests/e2e/test_small_install.py",   # base, bot_install: fresh venvs, built once
    "tests/edge/test_prometheus.py",     # served: waits for a scrape
)


def _module_scoped(item: pytest.Item) -> bool:
    defs = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {}) or {}
    return any(d.scope == "module" for ds in defs.values() for d in ds)


def pytest_itemcollected(item: pytest.Item) -> None:
    """Keep a module on one xdist worker when its tests use a module-scoped fixture (a bot process,
    a fake server, a webhook registered on the shared MLflow server: two workers would start two and
    see each other's effects) or it is listed in KEEP_TOGETHER. Marked as each item is collected,
    before any pytest_collection_modifyitems (xdist's turns the mark into the node id's ``@group``
    suffix; with pytest 9.2 that suffix is lost, pytest-dev/pytest-xdist#1386, hence pytest<9.2)."""
    mod = item.nodeid.split("::", 1)[0]
    if mod in KEEP_TOGETHER or _module_scoped(item):
        item.add_marker(pytest.mark.xdist_group(mod))


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    rank = {path: i for i, path in enumerate(SLOWEST_FIRST)}

    def module(item: pytest.Item) -> str:
        return item.nodeid.split("::", 1)[0]

    def key(item: pytest.Item) -> int:
        m = module(item)
        return rank.get(m, len(rank) + (0 if m.startswith("tests/e2e/") else 1))

    items.sort(key=key)  # stable: modules keep their inner order
