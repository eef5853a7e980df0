"""Fixtures for the bot's server side: signed deliveries, databases (SQLite and a real
PostgreSQL started for the session), an in-process app, and GitHub's example payloads."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from glob import glob
from pathlib import Path

import pytest

from tests.conftest import ROOT, free_port, shared_server

SECRET = "gh-secret-Zq8!x"
GITLAB_TOKEN = "gl-token-7Yw#p"
EXAMPLES = ROOT / "node_modules/@octokit/webhooks-examples/api.github.com/index.json"


def sign(body: bytes, secret: str = SECRET) -> str:
    """The X-Hub-Signature-256 value GitHub would send."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def github_headers(body: bytes, event: str = "issue_comment", delivery: str | None = None, secret: str = SECRET) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/test",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "X-Hub-Signature-256": sign(body, secret),
    }


def gitlab_headers(event: str = "Note Hook", token: str = GITLAB_TOKEN, key: str | None = None) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": "GitLab/17.5.0",
        "X-Gitlab-Event": event,
        "X-Gitlab-Token": token,
        "X-Gitlab-Event-UUID": str(uuid.uuid4()),
        "Idempotency-Key": key or str(uuid.uuid4()),
    }


def github_examples(*events: str) -> list[tuple[str, dict]]:
    """(event, payload) for every example of the given events in @octokit/webhooks-examples."""
    if not EXAMPLES.exists():
        pytest.fail(f"{EXAMPLES} is missing: run `make node` (npm install) first")
    data = json.loads(EXAMPLES.read_text())
    return [(ev["name"], ex) for ev in data if ev["name"] in events for ex in ev["examples"]]


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/bot.db"


# ---------------------------------------------------------------------- PostgreSQL


def _pg_bin(name: str) -> str:
    found = sorted(glob(f"/usr/lib/postgresql/*/bin/{name}")) or ([shutil.which(name)] if shutil.which(name) else [])
    if not found:
        pytest.fail(f"PostgreSQL's {name} not found: install the Debian package postgresql (make system)")
    return found[-1]


def _as_pg_user(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run as the ``postgres`` (or ``nobody``) user then."""
    if os.geteuid() != 0:
        return cmd
    user = "postgres" if _user_exists("postgres") else "nobody"
    return ["runuser", "-u", user, "--", *cmd]


def _user_exists(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def _start_postgres(workdir: Path) -> dict:
    """initdb and start PostgreSQL on a free loopback port; returns the shared-server state."""
    import pwd

    base = Path(tempfile.mkdtemp(prefix="mlgate-pg-"))  # short: the socket path has a length limit
    data, sock = base / "data", base / "sock"
    sock.mkdir()
    if os.geteuid() == 0:
        user = "postgres" if _user_exists("postgres") else "nobody"
        pw = pwd.getpwnam(user)
        for p in (base, sock):
            os.chown(p, pw.pw_uid, pw.pw_gid)
    port = free_port()
    subprocess.run(
        _as_pg_user([_pg_bin("initdb"), "-D", str(data), "-U", "mlgate", "--auth=trust", "-E", "UTF8", "--no-sync"]),
        check=True, capture_output=True,
    )
    # every xdist worker shares this server: room for each one's pools and concurrent tests
    opts = f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
    subprocess.run(
        _as_pg_user([_pg_bin("pg_ctl"), "-D", str(data), "-o", opts, "-l", str(base / "log"), "-w", "-t", "60", "start"]),
        check=True, capture_output=True,
    )
    return {"url": f"postgresql+psycopg://mlgate@127.0.0.1:{port}",
            "stop": _as_pg_user([_pg_bin("pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]),
            "cleanup": str(base)}


@pytest.fixture(scope="session")
def postgres_server(pytestconfig: pytest.Config) -> str:
    """A real PostgreSQL on a free loopback port, one for the whole run (all xdist workers share it:
    each test works in a database of its own); a base URL (no database)."""
    return shared_server(pytestconfig, "postgres", _start_postgres)["url"]


def pg_admin(base_url: str, sql: str) -> None:
    import psycopg

    with psycopg.connect(base_url.replace("postgresql+psycopg", "postgresql") + "/postgres", autocommit=True) as conn:
        conn.execute(sql)


@pytest.fixture
def pg_url(postgres_server: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test."""
    name = "t_" + uuid.uuid4().hex[:12]
    pg_admin(postgres_server, f"CREATE DATABASE {name}")
    yield f"{postgres_server}/{name}"
    pg_admin(postgres_server, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each store test runs on SQLite and on a real PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/bot.db"
    return request.getfixturevalue("pg_url")


# ---------------------------------------------------------------------- helpers


def wait_until(check: Callable[[], object], timeout: float = 10.0, interval: float = 0.02) -> object:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout} s")
        time.sleep(interval)


# ---------------------------------------------------------------------- in-process server


class RunningBot:
    """The bot's ASGI app served by a real uvicorn on a loopback port, in a thread."""

    def __init__(self, settings, store, handler=None, workers: int | None = None, context=None):
        import threading

        import uvicorn

        from mlgate.bot.app import create_app

        self.store = store
        self.app = create_app(settings, store, handler=handler, workers=workers, context=context)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=self.port, loop="asyncio", http="httptools",
            log_config=None, access_log=False, lifespan="on",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        wait_until(lambda: self.server.started, timeout=15)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)

    def count(self) -> int:
        """Deliveries stored so far."""
        return len(self.store.list_deliveries(limit=100000))


@pytest.fixture
def start_bot():
    """Factory: ``start_bot(settings, store, handler=None, workers=None)`` → :class:`RunningBot` (stopped after the test)."""
    bots: list[RunningBot] = []

    def start(settings, store, handler=None, workers=None, context=None) -> RunningBot:
        bot = RunningBot(settings, store, handler=handler, workers=workers, context=context)
        bots.append(bot)
        return bot

    yield start
    for b in bots:
        b.stop()
