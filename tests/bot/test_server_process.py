"""`mlgate bot serve` as a real process: start-up rules, SIGKILL after 202, restart, exactly once,
failed deliveries in `mlgate bot deliveries`, `retry`, and no secret in any log line."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.bot.conftest import SECRET, github_headers, wait_until
from tests.conftest import ROOT

pytestmark = pytest.mark.slow


class BotProcess:
    def __init__(self, workdir: Path, env: dict[str, str], name: str):
        self.log = workdir / f"{name}.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mlgate", "bot", "serve", "--host", "127.0.0.1", "--port", "0"],
            cwd=workdir, env=env, stdout=self.log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True,
        )
        port = wait_until(self._port, timeout=30)
        self.url = f"http://127.0.0.1:{port}"
        wait_until(self._healthy, timeout=30)

    def _port(self) -> int | None:
        if self.proc.poll() is not None:
            pytest.fail(f"bot exited with {self.proc.returncode}:\n{self.log.read_text()}")
        for line in self.log.read_text().splitlines():
            if line.startswith("{") and json.loads(line).get("event") == "listening":
                return json.loads(line)["port"]
        return None

    def _healthy(self) -> bool:
        try:
            return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def kill(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(20)


@pytest.fixture
def run_bot(tmp_path):
    procs: list[BotProcess] = []

    def start(name: str, **env_extra: str) -> BotProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLGATE_")}
        env.update(
            MLGATE_GITHUB_WEBHOOK_SECRET=SECRET,
            PYTHONPATH=str(ROOT),
            MLGATE_TEST_RECORD=str(tmp_path / "record.txt"),
            MLGATE_TEST_STARTED=str(tmp_path / "started.txt"),
            **env_extra,
        )
        p = BotProcess(tmp_path, env, name)
        procs.append(p)
        return p

    yield start
    for p in procs:
        p.stop()
    logs = "".join(p.log.read_text() for p in procs)
    assert SECRET not in logs, "a secret reached the log"
    for line in logs.splitlines():  # every line is a JSON object
        json.loads(line)


def _post(bot: BotProcess, body: bytes, delivery: str) -> httpx.Response:
    return httpx.post(f"{bot.url}/webhooks/github", content=body, headers=github_headers(body, delivery=delivery), timeout=10)


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLGATE_")}
    return subprocess.run([sys.executable, "-m", "mlgate", *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)


def test_starts_with_only_a_webhook_secret_and_sqlite(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLGATE_")}
    env["MLGATE_GITHUB_WEBHOOK_SECRET"] = SECRET
    bot = BotProcess(tmp_path, env, "minimal")
    try:
        assert httpx.get(f"{bot.url}/readyz").json() == {"status": "ready"}
        body = b'{"zen": "Design for failure.", "hook_id": 1}'
        r = httpx.post(f"{bot.url}/webhooks/github", content=body, headers=github_headers(body, event="ping"))
        assert r.status_code == 202 and r.headers["x-mlgate-status"] == "ignored"
        assert httpx.post(f"{bot.url}/webhooks/gitlab", content=b"{}").status_code == 404
        assert (tmp_path / ".mlgate" / "bot.db").exists()
    finally:
        bot.stop()
    events = [json.loads(line)["event"] for line in bot.log.read_text().splitlines()]
    assert "bot stopped" in events  # SIGTERM: graceful shutdown (uvicorn then re-raises the signal)
    assert SECRET not in bot.log.read_text()


def test_killed_after_202_before_processing_is_processed_once_after_restart(run_bot, tmp_path):
    # only the webhook secret is set: SQLite under ./.mlgate/, no worker yet (accept and store only)
    first = run_bot("first", MLGATE_WORKERS="0")
    body = b'{"action":"created","comment":{"id":1,"body":"/promote"}}'
    r = _post(first, body, "d-kill-1")
    assert r.status_code == 202 and r.headers["x-mlgate-status"] == "accepted"
    first.kill()
    assert (tmp_path / ".mlgate" / "bot.db").exists()
    assert _lines(tmp_path / "record.txt") == []

    second = run_bot("second", MLGATE_WORKERS="1", MLGATE_HANDLER="tests.bot.gate_handler:handle", MLGATE_POLL_INTERVAL="0.05")
    wait_until(lambda: _lines(tmp_path / "record.txt"), timeout=20)
    assert _post(second, body, "d-kill-1").headers["x-mlgate-status"] == "duplicate"  # GitHub's manual redelivery
    time.sleep(0.3)
    assert _lines(tmp_path / "record.txt") == ["d-kill-1"]
    out = _cli(tmp_path, "bot", "deliveries", "--output", "json")
    assert out.returncode == 0, out.stderr
    [row] = json.loads(out.stdout)
    assert row["id"] == "d-kill-1" and row["status"] == "done" and row["outcome"] == "recorded d-kill-1"


def test_killed_while_processing_is_taken_again_after_the_lease_expires(run_bot, tmp_path):
    env = dict(
        MLGATE_WORKERS="1", MLGATE_HANDLER="tests.bot.gate_handler:handle", MLGATE_POLL_INTERVAL="0.05",
        MLGATE_LEASE_SECONDS="1", MLGATE_TEST_GATE=str(tmp_path / "gate"),
    )
    first = run_bot("first", **env)
    body = b'{"action":"created","comment":{"id":2,"body":"/promote"}}'
    assert _post(first, body, "d-kill-2").status_code == 202
    wait_until(lambda: _lines(tmp_path / "started.txt"), timeout=20)  # the handler is running
    first.kill()
    (tmp_path / "gate").touch()
    run_bot("second", **env)
    wait_until(lambda: _lines(tmp_path / "record.txt"), timeout=20)
    time.sleep(0.3)
    assert _lines(tmp_path / "record.txt") == ["d-kill-2"]
    assert _lines(tmp_path / "started.txt") == ["d-kill-2 1", "d-kill-2 2"]


def test_failed_delivery_is_listed_with_its_redacted_error_and_can_be_retried(run_bot, tmp_path):
    bot = run_bot(
        "fail", MLGATE_WORKERS="1", MLGATE_HANDLER="tests.bot.gate_handler:handle", MLGATE_POLL_INTERVAL="0.05",
        MLGATE_MAX_ATTEMPTS="2", MLGATE_RETRY_BASE_SECONDS="0.05",
    )
    assert _post(bot, b'{"fail": true}', "d-fail").status_code == 202
    ok_body = b'{"action":"created"}'
    assert _post(bot, ok_body, "d-ok").status_code == 202

    def failed():
        out = _cli(tmp_path, "bot", "deliveries", "--status", "failed", "--output", "json")
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    [row] = wait_until(failed, timeout=20)
    assert row["id"] == "d-fail" and row["attempts"] == 2
    assert row["error"] == "RuntimeError: cannot reach the forge with ***"
    table = _cli(tmp_path, "bot", "deliveries")
    assert "d-fail" in table.stdout and "failed" in table.stdout and "d-ok" in table.stdout and SECRET not in table.stdout
    retried = _cli(tmp_path, "bot", "retry", "d-fail")
    assert retried.returncode == 0 and "queued again" in retried.stdout
    wait_until(lambda: _lines(tmp_path / "started.txt").count("d-fail 1") == 2, timeout=20)  # ran again from attempt 1
    assert _cli(tmp_path, "bot", "retry", "d-ok").returncode == 2  # only failed ones
    assert _cli(tmp_path, "bot", "retry", "nope").returncode == 2
    # the bot is still serving after all that
    assert httpx.get(f"{bot.url}/readyz").status_code == 200


def test_chunked_upload_over_the_limit_is_413(run_bot):
    bot = run_bot("limit", MLGATE_WORKERS="0", MLGATE_MAX_BODY_BYTES="10000")
    host, port = bot.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    headers = github_headers(b"{}", delivery="d-chunked")
    conn.request("POST", "/webhooks/github", body=iter([b" " * 4000] * 5), headers=headers, encode_chunked=True)
    assert conn.getresponse().status == 413


@pytest.mark.parametrize(
    "env, message",
    [
        ({"MLGATE_GITHUB_WEBHOOK_SECRET": ""}, "MLGATE_GITHUB_WEBHOOK_SECRET:1:1: github_webhook_secret: is empty"),
        ({}, "no webhook secret configured"),
        ({"MLGATE_GITHUB_WEBHOOK_SECRET": "x", "MLGATE_GITLAB_WEBHOOK_TOKEN": " "}, "gitlab_webhook_token: is empty"),
    ],
    ids=["empty-github-secret", "no-secret", "blank-gitlab-token"],
)
def test_start_up_refuses_empty_or_missing_secrets(tmp_path, env, message):
    base = {k: v for k, v in os.environ.items() if not k.startswith("MLGATE_")}
    r = subprocess.run(
        [sys.executable, "-m", "mlgate", "bot", "serve", "--port", "0"],
        cwd=tmp_path, env={**base, **env}, capture_output=True, text=True, timeout=60,
    )
    assert r.returncode == 2 and message in r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / ".mlgate").exists()


def test_port_in_use_is_an_infra_error(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        base = {k: v for k, v in os.environ.items() if not k.startswith("MLGATE_")}
        r = subprocess.run(
            [sys.executable, "-m", "mlgate", "bot", "serve", "--port", str(port)],
            cwd=tmp_path, env={**base, "MLGATE_GITHUB_WEBHOOK_SECRET": SECRET, "MLGATE_WORKERS": "0"},
            capture_output=True, text=True, timeout=60,
        )
    assert r.returncode == 3 and f"cannot listen on 127.0.0.1:{port}" in r.stderr
