"""Canary storage on a real SQLite file: audited transitions, optimistic concurrency, one active canary."""

from __future__ import annotations

from dataclasses import replace

import pytest
import sqlalchemy as sa

from mlgate.core import canary as core
from mlgate.edge.db.canaries import CanaryStore, Conflict
from mlgate.core.errors import Refused
from tests.core.test_canary_decide import fresh


@pytest.fixture
def url(tmp_path):
    return f"sqlite:///{tmp_path / 'state' / 'bot.db'}"


def new(version: str = "2") -> core.CanaryRecord:
    return replace(fresh(), id=None, revision=0, version=version)


def test_create_save_and_reopen(url):
    store = CanaryStore(url)
    rec = store.create(new(), actor="alice")
    assert rec.id is not None and rec.revision == 1
    live = store.save(core.step_written(rec, commit="c1", url=None, live=True, now=1001.0), expected=rec,
                      actor="bot", action="write")
    assert live.revision == 2
    store.close()
    again = CanaryStore(url)  # a restarted process
    got = again.get(rec.id)
    assert got == live
    assert [(t.from_status, t.to_status, t.action, t.actor) for t in again.transitions(rec.id)] == [
        (None, "started", "start", "alice"), ("started", "observing", "write", "bot")]
    assert again.find_active("fraud", "production") == live


def test_a_stale_save_is_a_conflict_and_stores_nothing(url):
    store = CanaryStore(url)
    rec = store.create(new(), actor="alice")
    first = store.save(core.step_written(rec, commit="c1", url=None, live=True, now=1001.0), expected=rec,
                       actor="worker-1", action="write")
    with pytest.raises(Conflict, match="changed while mlgate was working on it"):
        store.save(core.to_aborted(rec, now=1002.0, reason="late"), expected=rec, actor="worker-2", action="abort")
    assert store.get(rec.id) == first
    assert len(store.transitions(rec.id)) == 2


def test_one_active_canary_per_model_and_environment(url):
    store = CanaryStore(url)
    rec = store.create(new(), actor="alice")
    with pytest.raises(Refused, match="already running in production: v2 \\(started\\)"):
        store.create(new("3"), actor="bob")
    done = store.save(core.to_rolled_back(core.start_rollback(rec, now=1.0, reason="r"), now=2.0), expected=rec,
                      actor="bob", action="rolled_back")
    assert not done.active
    other = store.create(new("3"), actor="bob")
    assert [r.version for r in store.list(active_only=True)] == ["3"]
    assert [r.version for r in store.list()] == ["3", "2"]
    assert store.latest("fraud", "production").id == other.id
    # another environment or model is independent
    store.create(replace(new("4"), environment="staging"), actor="bob")
    assert len(store.list(active_only=True)) == 2


def test_find_by_pull_request_url(url):
    store = CanaryStore(url)
    rec = store.create(new(), actor="alice")
    pr = "https://github.com/o/gitops/pull/9"
    store.save(core.step_written(rec, commit=None, url=pr, live=False, now=1001.0), expected=rec, actor="bot",
               action="write")
    assert store.find_by_url(pr).id == rec.id
    assert store.find_by_url("https://github.com/o/gitops/pull/10") is None


def test_canaries_live_in_the_bots_database(url):
    from mlgate.edge.db.store import Store

    bot = Store(url)
    store = CanaryStore(bot.engine)
    store.create(new(), actor="alice")
    tables = set(sa.inspect(bot.engine).get_table_names())
    assert {"mlgate_canaries", "mlgate_canary_transitions", "mlgate_deliveries"} <= tables
    store.close()  # a shared engine is left to its owner
    assert CanaryStore(url).find_active("fraud", "production") is not None


# ---------------------------------------------------------------- the canary commands and their database


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _canary(args: list[str]) -> tuple[int, str]:
    """``mlgate canary ARGS`` in-process, with the exit code ``main()`` gives (70: an internal error)."""
    from click.testing import CliRunner

    from mlgate.cli import cli
    from mlgate.core.errors import MlgateError

    res = CliRunner().invoke(cli, ["canary", *args], env={"MLGATE_DATABASE_URL": None}, catch_exceptions=True)
    if isinstance(res.exception, MlgateError):
        return res.exception.exit_code, str(res.exception)
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        return 70, f"{type(res.exception).__name__}: {res.exception}"
    return res.exit_code, res.output


CONFIG = """model: iris
tracking_uri: http://127.0.0.1:9
environments:
  - name: staging
    gitops: {repository: org/deploy, path: staging.yaml, mode: push, target: {kind: kserve}}
"""


def test_canary_status_creates_no_database_and_no_folder(in_tmp):
    tmp_path = in_tmp
    code, out = _canary(["status", "-c", str(tmp_path / "none.yml")])
    assert code == 2 and f"no canary database at {tmp_path}/.mlgate/bot.db" in out and "none.yml does not exist" in out
    code, out = _canary(["status", "--database-url", f"sqlite:///{tmp_path}/nonexistent-dir/x.db"])
    assert code == 2 and "no canary database at" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing created: no .mlgate, no nonexistent-dir


def test_canary_status_reads_an_existing_database_without_creating_tables(tmp_path, url):
    import sqlite3
    from pathlib import Path

    CanaryStore(url).create(new(), actor="alice")
    code, out = _canary(["status", "--database-url", url, "-o", "json"])
    assert code == 0 and '"status": "started"' in out
    other = tmp_path / "empty.db"
    sqlite3.connect(other).close()
    code, out = _canary(["status", "--database-url", f"sqlite:///{other}"])
    assert code == 0 and "no running canary" in out
    assert sqlite3.connect(other).execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0
    assert Path(url.removeprefix("sqlite:///")).exists()


@pytest.mark.parametrize("db,words", [
    ("sqlite:////proc/x/y.db", ["/proc/x/y.db"]),
    ("garbage", ["'garbage'", "not a valid SQLAlchemy URL"]),
    ("postgres ql://bot:hunter2@db/x", ["bot:***@db", "not a valid SQLAlchemy URL"]),
])
def test_an_unusable_canary_database_url_is_a_config_error(in_tmp, db, words):
    tmp_path = in_tmp
    (tmp_path / ".mlgate.yml").write_text(CONFIG)
    for args in (["rollback", "--to", "staging", "-c", str(tmp_path / ".mlgate.yml")], ["status"]):
        code, out = _canary([*args, "--database-url", db])
        assert code == 2, out
        assert all(w in out for w in words) and "hunter2" not in out, out
    assert not (tmp_path / ".mlgate").exists()


def test_an_uncreatable_database_folder_is_a_config_error_naming_the_url():
    from mlgate.core.errors import UsageError

    with pytest.raises(UsageError, match=r"'sqlite:////proc/nope/c\.db': cannot create the folder /proc/nope"):
        CanaryStore("sqlite:////proc/nope/c.db")


def test_canary_rollback_from_the_cli_closes_the_open_step_pr(tmp_path, monkeypatch, capsys):
    """``mlgate canary rollback|abort`` in pull-request mode: the step PR that was never merged is
    closed with the reason (the same helper as the bot's ``/rollback``)."""
    from mlgate.core.canary import CanarySettings
    from mlgate.cli.canarycmd import _close_unmerged_steps
    from tests.fakes.github_server import FakeGitHub

    gh = FakeGitHub(tmp_path / "gh", tokens={"ghp_cli": "mlgate-bot"}).start()
    try:
        gh.add_repo("acme/deploy", {"prod/isvc.yaml": "x: 1\n"})
        gh.commit("acme/deploy", "mlgate/canary/step-1", {"prod/isvc.yaml": "x: 2\n"})
        pr = gh.open_pr("acme/deploy", "mlgate/canary/step-1", user="mlgate-bot")
        monkeypatch.setenv("MLGATE_GITHUB_TOKEN", "ghp_cli")
        monkeypatch.setenv("MLGATE_GITHUB_API_URL", gh.url)
        rec = new()
        s = rec.settings
        rec = replace(rec, id=3, settings=CanarySettings(s.canary, "https://github.com/acme/deploy", s.branch, s.path,
                                                         "pull-request"))
        rec = core.step_written(rec, commit="c1", url=f"https://github.example/acme/deploy/pull/{pr.number}",
                                live=False, now=1001.0)
        rec = core.start_rollback(rec, now=1002.0, reason="rolled back by ci")
        _close_unmerged_steps(rec, "rolled back by ci with `mlgate canary rollback`")
        assert gh.repos["acme/deploy"].pulls[pr.number].state == "closed"
        [note] = gh.comments("acme/deploy", pr.number)
        assert "rolled back by ci" in note.body and "must not be merged" in note.body
        assert f"/pull/{pr.number}: closed" in capsys.readouterr().err
        assert gh.errors == []
    finally:
        gh.stop()
