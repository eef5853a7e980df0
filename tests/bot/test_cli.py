"""`mlgate bot deliveries/show/retry/explain` and `mlgate audit` against a real database."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from click.testing import CliRunner

from mlgate.edge.db.store import Store
from mlgate.cli import cli
from mlgate.core.errors import UsageError
from tests.bot.conftest import github_examples

T0 = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)


def _run(args: list[str], db_url: str) -> tuple[int, str]:
    runner = CliRunner()
    res = runner.invoke(cli, args, env={"MLGATE_DATABASE_URL": db_url}, catch_exceptions=True)
    if isinstance(res.exception, UsageError):
        return 2, str(res.exception)
    if res.exception and not isinstance(res.exception, SystemExit):
        raise res.exception
    return res.exit_code, res.output


def test_audit_json_and_table(db_url):
    store = Store(db_url)
    store.audit({"who": "alice", "what": "/promote wine@7 to staging", "allowed": True, "why": ["2 approvals on abc1234"]})
    store.audit({"who": "mallory", "what": "/promote wine@9 to production", "allowed": False, "why": ["needs write permission"]})
    code, out = _run(["audit", "--format", "json"], db_url)
    assert code == 0
    recs = json.loads(out)
    assert [(r["who"], r["allowed"], r["why"]) for r in recs] == [
        ("alice", True, ["2 approvals on abc1234"]),
        ("mallory", False, ["needs write permission"]),
    ]
    code, out = _run(["audit", "--format", "table"], db_url)
    lines = out.splitlines()
    assert code == 0 and lines[0].split()[:2] == ["ID", "RECORDED_AT"] and "WHO" in lines[0]
    assert "mallory" in lines[2] and "needs write permission" in lines[2] and "false" in lines[2]


def test_read_commands_never_create_a_database(tmp_path):
    url = f"sqlite:///{tmp_path}/missing/bot.db"
    code, out = _run(["bot", "deliveries"], url)
    assert code == 2 and "no bot database at" in out
    assert not (tmp_path / "missing").exists()


def test_deliveries_table_json_and_status_filter(sqlite_url):
    store = Store(sqlite_url)
    store.accept("d-1", "github", "issue_comment", {}, b"{}", received_at=T0)
    store.accept("d-2", "gitlab", "Note Hook", {}, b"{}", received_at=T0.replace(minute=31))
    store.claim_next("w", T0.replace(minute=40))
    store.fail("d-1", "InfraError: GitHub answered 502 (https://api.github.com)", None, worker_id="w")
    code, out = _run(["bot", "deliveries"], sqlite_url)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["DELIVERY", "FORGE", "EVENT", "STATUS", "ATTEMPTS", "RECEIVED", "(UTC)", "OUTCOME", "/", "ERROR"]
    assert lines[1].split()[:4] == ["d-2", "gitlab", "Note", "Hook"]  # newest first
    assert "failed" in lines[2] and "GitHub answered 502" in lines[2]
    code, out = _run(["bot", "deliveries", "--status", "failed", "-o", "json"], sqlite_url)
    [row] = json.loads(out)
    assert row["id"] == "d-1" and row["status"] == "failed" and row["attempts"] == 1
    assert row["received_at"] == "2026-03-01T09:30:00+00:00"
    code, out = _run(["bot", "deliveries", "--status", "done"], sqlite_url)
    assert code == 0 and out.strip() == "no deliveries with status done"


def test_show_then_explain_a_stored_delivery(sqlite_url, tmp_path):
    event, payload = github_examples("issue_comment")[0]
    store = Store(sqlite_url)
    store.accept("d-ex", "github", event, {"x-github-event": event}, json.dumps(payload).encode())
    code, out = _run(["bot", "show", "d-ex"], sqlite_url)
    assert code == 0
    shown = json.loads(out)
    assert shown["event"] == "issue_comment" and shown["payload"] == payload and shown["status"] == "queued"
    saved = tmp_path / "delivery.json"
    saved.write_text(out)
    code, out = _run(["bot", "explain", str(saved)], sqlite_url)
    assert code == 0 and "issue_comment" in out
    code, out = _run(["bot", "show", "nope"], sqlite_url)
    assert code == 2 and "no delivery with id 'nope'" in out


def test_explain_refuses_a_file_that_is_not_a_payload(tmp_path, sqlite_url):
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    code, out = _run(["bot", "explain", str(bad)], sqlite_url)
    assert code == 2 and "expected a JSON object" in out
    bad.write_text("{not json")
    code, out = _run(["bot", "explain", str(bad)], sqlite_url)
    assert code == 2 and "not valid JSON" in out


@pytest.mark.parametrize("cmd", [["bot", "--help"], ["audit", "--help"]])
def test_help(cmd, sqlite_url):
    code, out = _run(cmd, sqlite_url)
    assert code == 0 and "Usage:" in out


# ---------------------------------------------------------------- explain: payloads of the wrong shape


@pytest.mark.parametrize("event,fixture,path,field", [
    ("issue_comment", "issue_comment.pr.promote.json", ("comment", "body"), "comment.body"),
    ("pull_request_review", "pull_request_review.approved.json", ("review", "commit_id"), "review.commit_id"),
])
def test_explain_a_payload_with_a_wrongly_typed_field_says_which(tmp_path, sqlite_url, event, fixture, path, field):
    from tests.fixtures.github import octokit

    payload = octokit.load(fixture)
    payload[path[0]][path[1]] = 1
    f = tmp_path / "delivery.json"
    f.write_text(json.dumps(payload))
    code, out = _run(["bot", "explain", "--event", event, str(f)], sqlite_url)
    assert code == 0, out
    assert f"ignored: malformed payload: {field} is integer, expected string" in out and "do nothing" in out


def test_explain_refuses_deeply_nested_json(tmp_path, sqlite_url):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 10_000 + "]" * 10_000)
    code, out = _run(["bot", "explain", str(deep)], sqlite_url)
    assert code == 2 and "nested too deeply" in out


# ---------------------------------------------------------------- database URLs: config errors, read-only commands


def _mlgate(args: list[str], env: dict[str, str], cwd) -> tuple[int, str]:
    """``mlgate ARGS`` as a process (its real exit code and stderr)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    exe = Path(sys.executable).parent / "mlgate"
    full = {k: v for k, v in os.environ.items() if not k.startswith("MLGATE_")}
    r = subprocess.run([str(exe), *args], env={**full, **env}, cwd=cwd, capture_output=True, text=True, timeout=60)
    return r.returncode, r.stdout + r.stderr


@pytest.mark.parametrize("url,words", [
    ("sqlite:////proc/nope/bot.db", ["'sqlite:////proc/nope/bot.db'", "cannot create the folder /proc/nope"]),
    ("garbage", ["'garbage'", "not a valid SQLAlchemy URL"]),
    ("mysql://bot:hunter2@db.example/bot", ["only sqlite and postgresql", "bot:***@db.example"]),
])
def test_serve_with_an_unusable_database_url_is_a_config_error(tmp_path, url, words):
    code, out = _mlgate(["bot", "serve", "--port", "0"],
                        {"MLGATE_DATABASE_URL": url, "MLGATE_GITHUB_WEBHOOK_SECRET": "s3cret"}, tmp_path)
    assert code == 2, out
    assert all(w in out for w in words), out
    assert "hunter2" not in out and "Traceback" not in out


def test_postgres_without_libpq_says_what_to_install(tmp_path):
    # mlgate[bot] depends on psycopg without [binary] (issue 12): psycopg loads the system's libpq.
    # This machine has one; the bot process gets a sitecustomize that makes ctypes find no "pq", and
    # PSYCOPG_IMPL=python keeps psycopg from using a psycopg-binary a developer may have installed.
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import ctypes.util\n"
        "_find = ctypes.util.find_library\n"
        "ctypes.util.find_library = lambda name: None if name == 'pq' else _find(name)\n")
    code, out = _mlgate(["bot", "serve", "--port", "0"],
                        {"MLGATE_DATABASE_URL": "postgresql://bot:hunter2@127.0.0.1:1/bot",
                         "MLGATE_GITHUB_WEBHOOK_SECRET": "s3cret", "PSYCOPG_IMPL": "python", "PYTHONPATH": str(site)},
                        tmp_path)
    assert code == 2, out
    assert "PostgreSQL needs the libpq client library" in out and "apt-get install libpq5" in out, out
    assert "psycopg[binary]" in out and "libpq library not found" in out, out
    assert "hunter2" not in out and "Traceback" not in out


def test_read_commands_create_no_folder_no_file_and_no_table(tmp_path):
    import sqlite3

    url = f"sqlite:///{tmp_path}/nonexistent-dir/x.db"
    for args in (["bot", "deliveries"], ["audit"]):
        code, out = _run(args, url)
        assert code == 2 and "no bot database at" in out
    assert not (tmp_path / "nonexistent-dir").exists()
    other = tmp_path / "other.db"  # an SQLite file that is not the bot's
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.commit()
    code, out = _run(["audit"], f"sqlite:///{other}")
    assert code == 2 and "holds no mlgate bot tables" in out
    tables = {r[0] for r in sqlite3.connect(other).execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == {"t"}
