"""``mlgate bot serve --ui-port`` started the wrong way: it must refuse (exit 2) before it listens,
and the dashboard must never end up answering on the webhook port."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import pytest


def serve(tmp_path, *args: str, env: dict[str, str] | None = None, wait: float = 30) -> subprocess.Popen:
    environ = {**os.environ, "MLGATE_GITHUB_WEBHOOK_SECRET": "s3cret-webhook",
               "MLGATE_DATABASE_URL": f"sqlite:///{tmp_path}/bot.sqlite", **(env or {})}
    return subprocess.Popen([sys.executable, "-m", "mlgate", "bot", "serve", *args], env=environ, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("ui_host", ["127.0.0.1", "0.0.0.0"])
def test_the_webhook_port_as_ui_port_is_refused_before_listening(tmp_path, ui_host):
    # both sockets bound (SO_REUSEADDR, not yet listening), the dashboard listened first and took every
    # connection: /ui answered on the webhook port and every delivery got the dashboard's 404 or 401
    port = str(free_port())
    proc = serve(tmp_path, "--host", "0.0.0.0", "--port", port, "--ui-port", port, "--ui-host", ui_host,
                 env={"MLGATE_UI_TOKEN": "ui-token-123"})
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, out + err
    assert f"--ui-port {port} is the webhook port" in err and "Traceback" not in err
    assert '"listening"' not in out


def test_an_open_dashboard_is_refused_before_the_webhook_port_listens(tmp_path):
    proc = serve(tmp_path, "--port", "0", "--ui-port", "0", "--ui-host", "0.0.0.0")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "the dashboard would be open to anyone on 0.0.0.0" in err
    assert '"listening"' not in out  # it logged "listening" on the webhook port, then refused


@pytest.mark.slow
def test_the_webhook_port_never_serves_the_dashboard(tmp_path):
    port, ui_port = free_port(), free_port()
    proc = serve(tmp_path, "--port", str(port), "--ui-port", str(ui_port))
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{ui_port}/ui/healthz", timeout=2).status_code == 200 and \
                        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-2000:]
            time.sleep(0.2)
        for _ in range(5):
            assert httpx.get(f"http://127.0.0.1:{port}/ui", timeout=5).status_code == 404
            assert httpx.get(f"http://127.0.0.1:{ui_port}/healthz", timeout=5).status_code == 404
        # token-less on loopback: a page that rebinds its own name to 127.0.0.1 gets nothing
        ui = f"http://127.0.0.1:{ui_port}/ui"
        assert httpx.get(ui, headers={"Host": f"attacker.example:{ui_port}"}, timeout=5).status_code == 400
        assert httpx.get(ui, headers={"Host": f"localhost:{ui_port}"}, timeout=5).status_code == 200
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
