"""Issue 10, "Work that runs twice after a lease is lost" and acceptance 2, against two
``mlgate bot serve`` replicas sharing one real PostgreSQL and the spec-checked fake GitHub.

A replica is stopped (SIGSTOP) in the middle of a ``/promote``, after its policy reads and before
its create-PR call; its lease lapses (the default ``lease_seconds``, 6 s) and the second replica
takes the delivery over and finishes it. The first replica is then continued (SIGCONT): its
attempt's fencing token is stale, so it stops before its next forge call. One create-PR call,
one reply, one audit record. The time from the stop (the last moment the first replica could
renew anything) to the delivery being done by the other replica is printed: the bound on how
long a replica that died holds its work (it must be under 10 s).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.bot.conftest import pg_url, postgres_server  # noqa: F401  (fixtures: a real PostgreSQL)
from tests.e2e.bot.conftest import BOT, BotProcess, eventually, start_bot, stop_bot
from tests.e2e.bot.test_concurrency_replies import github_world
from tests.e2e.bot.test_promotion_retries import assert_github_promotion, github_ready
from tests.e2e.bot.forge_calls import create_pr

pytestmark = pytest.mark.slow


def _replica(tmp: Path, fakes, mlflow_server: str, database_url: str) -> BotProcess:
    gh, gl = fakes
    b = start_bot(tmp, gh.url, gl.url, mlflow_server, extra_env={"MLGATE_DATABASE_URL": database_url})
    b.database_url = database_url
    return b


def _signal(b: BotProcess, sig: int) -> None:
    os.killpg(b.proc.pid, sig)


def test_a_replica_stopped_mid_promotion_is_fenced_and_replaced_within_10_s(fakes, mlflow_server, mlflow_client,
                                                                           pg_url, tmp_path):  # noqa: F811
    gh, _ = fakes
    b1 = _replica(tmp_path / "r1", fakes, mlflow_server, pg_url)
    b2 = None
    stopped_at: list[float] = []
    try:
        w = github_world(gh, b1, mlflow_client)
        version = github_ready(w)
        errors = len(gh.errors)

        def freeze() -> None:  # after b1 claimed and read the policy, before any write
            _signal(b1, signal.SIGSTOP)
            stopped_at.append(time.monotonic())

        gh.on_request("GET", rf"^/repos/{w.repo}/collaborators/carol/permission$", freeze)
        delivery = b1.send_github("issue_comment", w.comment("/promote", "carol"))
        eventually("replica 1 stopped mid-promotion", lambda: stopped_at, b1, timeout=60)
        b2 = _replica(tmp_path / "r2", fakes, mlflow_server, pg_url)
        w.bot = b2
        info = b2.wait(delivery, timeout=60)[0]
        took = time.monotonic() - stopped_at[0]
        print(f"\nreplica replaced: delivery done by the other replica {took:.2f} s after the first one stopped "
              f"(lease_seconds 6; includes starting the second replica)")
        assert took < 10.0, f"the stopped replica's delivery was taken over after {took:.1f} s"
        assert info.status == "done" and "promotion PR opened" in info.outcome, info
        posts_before = len(gh.calls("POST", create_pr(w.deploy)))

        _signal(b1, signal.SIGCONT)  # the stalled attempt wakes up with a stale token
        eventually("replica 1 noticed its lease was lost", lambda: "lease lost" in b1.log.read_text(), b1, timeout=30)
        time.sleep(1.0)  # room for any call it would still make

        assert posts_before == 1 and len(gh.calls("POST", create_pr(w.deploy))) == 1
        assert_github_promotion(w, version)
        mine = [c for c in gh.comments(w.repo, w.pr) if c.user == BOT]
        writes = gh.calls("POST", rf"^/repos/{w.repo}/issues/{w.pr}/comments$") + gh.calls(
            "PATCH", rf"^/repos/{w.repo}/issues/comments/\d+$")
        assert len(mine) == 1 and len(writes) == 1, writes  # one reply, written once
        audit = [a for a in b2.audit() if a.get("delivery") == delivery]
        assert [a["outcome"] for a in audit] == ["promotion PR opened"], audit
        assert b2.store().get(delivery).outcome == info.outcome  # the stale attempt recorded nothing
        assert gh.errors[errors:] == []
    finally:
        if b1.proc.poll() is None:
            _signal(b1, signal.SIGCONT)
        stop_bot(b1)
        if b2 is not None:
            stop_bot(b2)


def test_a_replica_killed_mid_promotion_is_replaced_within_10_s(fakes, mlflow_server, mlflow_client,
                                                               pg_url, tmp_path):  # noqa: F811
    """Both replicas run; the one that claimed the ``/promote`` is killed (SIGKILL) mid-way; the
    other finishes it once the lease lapses: one PR, one reply, one audit record."""
    gh, _ = fakes
    b1 = _replica(tmp_path / "r1", fakes, mlflow_server, pg_url)
    b2 = _replica(tmp_path / "r2", fakes, mlflow_server, pg_url)
    killed_at: list[float] = []
    try:
        w = github_world(gh, b1, mlflow_client)
        github_ready(w)
        errors = len(gh.errors)
        store = b1.store()

        def kill() -> None:  # whichever replica claimed it: kill that one
            running = [d for d in store.list_deliveries(status="running")]
            owner_pid = None
            with store.engine.connect() as conn:
                import sqlalchemy as sa

                from mlgate.edge.db.tables import deliveries
                owner_pid = conn.execute(sa.select(deliveries.c.lease_owner)
                                         .where(deliveries.c.id == running[0].id)).scalar().split(":")[1]
            victim = b1 if str(b1.proc.pid) == owner_pid else b2
            _signal(victim, signal.SIGKILL)
            killed_at.append(time.monotonic())
            victims.append(victim)

        victims: list[BotProcess] = []
        gh.on_request("GET", rf"^/repos/{w.repo}/collaborators/carol/permission$", kill)
        delivery = b1.send_github("issue_comment", w.comment("/promote", "carol"))
        eventually("a replica killed", lambda: killed_at, b1 if b1.proc.poll() is None else b2, timeout=60)
        survivor = b2 if victims[0] is b1 else b1
        w.bot = survivor
        info = survivor.wait(delivery, timeout=60)[0]
        took = time.monotonic() - killed_at[0]
        print(f"\nreplica killed with SIGKILL: its delivery done by the other replica {took:.2f} s later "
              "(lease_seconds 6)")
        assert took < 10.0
        assert info.status == "done" and "promotion PR opened" in info.outcome, info
        assert len(gh.calls("POST", create_pr(w.deploy))) == 1
        audit = [a for a in survivor.audit() if a.get("delivery") == delivery]
        assert [a["outcome"] for a in audit] == ["promotion PR opened"], audit
        assert gh.errors[errors:] == []
        store.close()
    finally:
        for b in (b1, b2):
            if b.proc.poll() is None:
                stop_bot(b)
