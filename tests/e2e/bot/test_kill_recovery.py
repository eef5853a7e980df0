"""Issue 10, "Locks held by a process that died" (acceptance 1): ``mlgate bot serve`` killed with
SIGKILL in the middle of its work, then started again on the same database.

- A canary's periodic tick is killed while it holds the tick lock (``periodic:canary-tick``) and
  the canary's lock (``canary:<model>:<env>``), right after its create-PR call for step 2 went
  through on the fake GitHub (the answer never reaches the bot). The restarted bot takes both
  locks over once their lease lapses and ticks the canary again within 10 s of the restart
  (printed), finds the step-2 PR instead of opening another, and the canary goes on to 100 %:
  one PR per step, the stored steps log 1, 2, 3.
- A canary whose check failed (error ratio 0.5 in the exporter) is killed right after the
  rollback decision was stored (``rolling_back``) and before its rollback PR was created (the
  create-PR request of the rollback branch kills the bot and is not served). The restarted bot
  writes the rollback PR at its first tick holding the lock (printed), exactly once; merging it
  removes the bad version's 10 % of traffic.
- ``/train`` is killed right after its workflow-creation request reached the fake Argo Server.
  The restarted bot takes the delivery over: one workflow for the commit (the retry finds it),
  the ``mlgate/train`` status and the reply written, the status followed to its end.

Real processes and servers: the bot, Prometheus scraping the test's exporter, MLflow, the
spec-checked fake GitHub and fake Argo Server. The bot's ``lease_seconds`` is its default (6 s).
"""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from ruamel.yaml import YAML

from tests.conftest import wait_for_value
from tests.e2e.bot.conftest import BOT, BotProcess, eventually, start_bot, stop_bot
from tests.e2e.bot.test_canary_bot import changed_lines, main_text, make_cworld, merge_and_tell, open_canary_prs
from tests.e2e.bot.test_train_bot import ARGO_TOKEN, ROOT, TRACKING, created_for, make_world, train_statuses
from tests.e2e.bot.forge_calls import create_pr
from tests.fakes.argo_server import FakeArgoServer, SwaggerSpec
from tests.fakes.github_server import HTTPError

pytestmark = pytest.mark.slow

CANARY_YAML = "canary_tick_seconds: 0.3\ntrain_poll_seconds: 0\n"
TRAIN_YAML = "canary_tick_seconds: 0\ntrain_poll_seconds: 0.3\n"


# --------------------------------------------------------------------------- processes


def _start(workdir: Path, fakes: Any, tracking: str, database_url: str | None, extra_yaml: str,
           extra_env: dict[str, str] | None = None) -> BotProcess:
    """A bot process; with ``database_url``, on that (an earlier process's) database."""
    gh, gl = fakes
    env = dict(extra_env or {})
    if database_url:
        env["MLGATE_DATABASE_URL"] = database_url
    b = start_bot(workdir, gh.url, gl.url, tracking, extra_yaml, env)
    if database_url:
        b.database_url = database_url
    return b


def _kill(b: BotProcess, at: list[float]) -> None:
    """SIGKILL the bot's process group (called from a fake's request thread)."""
    os.killpg(b.proc.pid, signal.SIGKILL)
    at.append(time.monotonic())


def _reap(b: BotProcess) -> None:
    b.proc.wait(timeout=20)


def _cstore(b: BotProcess):
    from mlgate.edge.db.canaries import CanaryStore

    return CanaryStore(b.database_url, create=False)


def _canary(b: BotProcess, model: str) -> Any:
    [rec] = _cstore(b).list(model=model)
    return rec


def _actions(b: BotProcess, canary_id: int) -> list[str]:
    return [t.action for t in _cstore(b).transitions(canary_id)]


def _held_by_dead(b: BotProcess, names: list[str]) -> dict[str, tuple[str, float]]:
    """The locks ``names`` as stored (owner, expiry); asserts each is still there, unexpired."""
    s = b.store()
    try:
        held = {n: s.lock_owner(n) for n in names}
    finally:
        s.close()
    assert all(v is not None for v in held.values()), f"the killed process held no lock: {held}"
    assert all(v[1] > time.time() for v in held.values()), f"a lock had lapsed already: {held}"
    return held  # type: ignore[return-value]


def _merge(w: Any, pr: Any) -> str:
    """Merge a step PR on the fake and send the merge webhook (not waiting: the bot may be killed soon)."""
    from tests.e2e.bot.deliveries import github_merged

    w.gh.merge_pr(w.deploy, pr.number)
    return w.bot.send_github("pull_request", github_merged(w.gh, w.deploy, pr.number))


def _status(b: BotProcess, delivery: str) -> str:
    s = b.store()
    try:
        return s.get(delivery).status
    finally:
        s.close()


def _prs_by_branch(w: Any) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for p in w.gh.pulls(w.deploy):
        out.setdefault(p.head, []).append(p)
    return out


# --------------------------------------------------------------------------- 1. SIGKILL mid-tick


def test_a_bot_killed_mid_tick_resumes_the_canary_within_10_s_with_no_step_skipped_or_repeated(
        fakes, mlflow_server, mlflow_client, prometheus, exporter, tmp_path):  # noqa: F811
    gh, _ = fakes
    errors = len(gh.errors)
    b1 = _start(tmp_path / "bot1", fakes, mlflow_server, None, CANARY_YAML)
    b2 = None
    try:
        w = make_cworld(gh, b1, mlflow_client, prometheus)
        m = w.model
        exporter.serve(m, "2", requests=500, error_ratio=0.01)
        exporter.serve(m, "1", requests=5000, error_ratio=0.01)
        wait_for_value(prometheus, f'sum(model_requests{{model="{m}",version="2"}})', 500)

        info = w.promote("/promote to production", by="carol")
        assert "started" in info.outcome, info
        [step1] = open_canary_prs(w)
        assert step1.head.endswith("/step-1")
        # the tick's create-PR call for step 2 goes through; the bot is killed before the answer
        killed: list[float] = []
        gh.after_request("POST", create_pr(w.deploy), lambda: _kill(b1, killed))
        merged = _merge(w, step1)  # step 1 live; the tick measures it 0.5 s later and writes step 2
        eventually("the bot killed mid-tick", lambda: killed, b1, timeout=30)
        _reap(b1)
        assert _status(b1, merged) == "done"  # the kill came in the tick, not in the merge's delivery
        rec = _canary(b1, m)
        assert rec.status == "advancing" and rec.step == 1, rec  # step 2 decided, its PR not recorded
        cid = rec.id
        lock_names = ["periodic:canary-tick", f"canary:{m}:production"]
        held = _held_by_dead(b1, lock_names)
        assert [p.head.rsplit("/", 1)[1] for p in open_canary_prs(w)] == ["step-2"]  # the PR the bot never heard of
        actions_before = _actions(b1, cid)

        restart = time.monotonic()
        b2 = _start(tmp_path / "bot2", fakes, mlflow_server, b1.database_url, CANARY_YAML)
        w.bot = b2
        started = time.monotonic()

        def resumed() -> Any:
            r = _canary(b2, m)
            return r if r.status == "observing" and r.step == 1 and r.current.written_at is not None else None

        rec2 = eventually("the canary ticked again after the restart", resumed, b2, timeout=20)
        now = time.monotonic()
        took = now - restart
        print(f"\nSIGKILL mid-tick (holding {', '.join(held)}): the restarted bot wrote step 2 of the canary "
              f"{took:.2f} s after the restart began ({now - started:.2f} s after it was listening, "
              f"{now - killed[0]:.2f} s after the kill; lease_seconds 6)")
        assert took < 10.0, f"the canary was ticked again {took:.1f} s after the restart"
        [step2] = open_canary_prs(w)
        assert rec2.current.url.endswith(f"/pull/{step2.number}"), rec2.current.url  # the PR found, not a new one
        # the dead holder's locks were taken over, and nothing was decided twice
        assert _actions(b2, cid)[len(actions_before):][0] == "write", _actions(b2, cid)

        for percent in (50, 100):
            pr = eventually(f"the {percent} % step PR", lambda: [p for p in open_canary_prs(w)
                                                                if f"at {percent} % in production" in p.title], b2)[0]
            done = merge_and_tell(w, pr)
            assert done.status == "done", done
        assert "promoted" in done.outcome, done.outcome
        assert w.client.get_model_version_by_alias(m, "champion").version == "2"

        prs = _prs_by_branch(w)
        assert sorted(b.rsplit("/", 1)[1] for b in prs) == ["step-1", "step-2", "step-3"], prs
        assert all(len(v) == 1 for v in prs.values()), prs  # one PR per step
        # the restarted bot read step 2's PR (open, its commit made) and sent no second create: three creates
        assert len(gh.calls("POST", create_pr(w.deploy))) == 3
        final = _canary(b2, m)
        assert final.status == "promoted"
        assert [(s.index, s.percent) for s in final.steps_log] == [(0, 10), (1, 50), (2, 100)]
        assert all(s.live_at is not None for s in final.steps_log)
        acts = _actions(b2, cid)
        assert acts.count("write") == 3 and acts.count("advance") == 2 and acts.count("live") == 3, acts
        assert acts[-1] == "promote", acts
        assert gh.errors[errors:] == []
    finally:
        if b1.proc.poll() is None:
            stop_bot(b1)
        if b2 is not None:
            stop_bot(b2)


# --------------------------------------------------------------------------- 2. SIGKILL after a rollback decision


def test_a_bot_killed_after_a_rollback_decision_writes_the_rollback_at_its_first_tick(
        fakes, mlflow_server, mlflow_client, prometheus, exporter, tmp_path):  # noqa: F811
    gh, _ = fakes
    errors = len(gh.errors)
    b1 = _start(tmp_path / "bot1", fakes, mlflow_server, None, CANARY_YAML)
    b2 = None
    try:
        w = make_cworld(gh, b1, mlflow_client, prometheus)
        m = w.model
        exporter.serve(m, "2", requests=500, error_ratio=0.5)  # the check (max 0.05) fails at step 1
        wait_for_value(prometheus, f'sum(model_requests{{model="{m}",version="2"}})', 500)
        seed = main_text(w)
        w.promote("/promote to production", by="carol")
        [step1] = open_canary_prs(w)
        killed: list[float] = []

        def kill_before_the_rollback_pr() -> None:
            _kill(b1, killed)
            raise HTTPError(502, "Bad Gateway")  # the bot died: its create-PR call never took effect

        gh.on_request("POST", create_pr(w.deploy), kill_before_the_rollback_pr)
        merged = _merge(w, step1)  # 10 % live on v2; the tick measures 0.5 s later and decides the rollback
        eventually("the bot killed before its rollback PR", lambda: killed, b1, timeout=30)
        _reap(b1)
        assert _status(b1, merged) == "done"  # the kill came in the tick, not in the merge's delivery
        rec = _canary(b1, m)
        assert rec.status == "rolling_back" and rec.rollback is None, rec  # decided, not written
        assert "error_rate" in rec.reason, rec.reason
        cid = rec.id
        held = _held_by_dead(b1, ["periodic:canary-tick", f"canary:{m}:production"])
        assert [p for p in gh.pulls(w.deploy) if p.head.endswith("/rollback")] == []
        g = gh.repos[w.deploy].git
        # the refused call was the rollback's one write (branch, commit and PR in one mutation): none of it exists
        assert gh.calls("POST", create_pr(w.deploy))[-1][2] == 502
        assert not [b for b in g.branches() if b.endswith("/rollback")], g.branches()
        assert "canaryTrafficPercent: 10" in main_text(w)  # 10 % of traffic on the bad version
        actions_before = _actions(b1, cid)
        posts_before = len(gh.calls("POST", create_pr(w.deploy)))

        restart = time.monotonic()
        b2 = _start(tmp_path / "bot2", fakes, mlflow_server, b1.database_url, CANARY_YAML)
        w.bot = b2
        started = time.monotonic()
        rollback = eventually("the rollback PR", lambda: [p for p in open_canary_prs(w) if p.head.endswith("/rollback")],
                              b2, timeout=20)
        now = time.monotonic()
        took = now - restart
        print(f"\nSIGKILL after the rollback decision (locks {', '.join(held)} left held): the restarted bot opened "
              f"the rollback PR {took:.2f} s after the restart began ({now - started:.2f} s after it was "
              f"listening, {now - killed[0]:.2f} s after the kill; lease_seconds 6)")
        assert took < 10.0, f"the rollback PR was written {took:.1f} s after the restart"
        assert len(rollback) == 1 and "roll back" in rollback[0].title
        rec2 = eventually("the rollback recorded", lambda: (r := _canary(b2, m)).rollback is not None and r, b2)
        # within one tick: the first thing the restarted bot did to the canary was writing the rollback
        assert _actions(b2, cid)[len(actions_before):] == ["write"], _actions(b2, cid)
        assert rec2.status == "rolling_back" and rec2.rollback.url.endswith(f"/pull/{rollback[0].number}")

        done = merge_and_tell(w, rollback[0])
        assert "rolled_back" in done.outcome, done.outcome
        assert changed_lines(seed, main_text(w)) == [("", "canaryTrafficPercent: 0")]  # the 10 % is gone
        v2 = w.client.get_model_version(m, "2")
        assert v2.tags["mlgate.canary"] == "rolled_back" and "error_rate" in v2.tags["mlgate.canary.reason"]
        assert w.client.get_model_version_by_alias(m, "champion").version == "1"
        assert len(gh.calls("POST", create_pr(w.deploy))) == posts_before + 1  # one rollback PR
        assert [p.head.rsplit("/", 1)[1] for p in gh.pulls(w.deploy)].count("rollback") == 1
        final = _canary(b2, m)
        assert final.status == "rolled_back" and [(s.index, s.percent) for s in final.steps_log] == [(0, 10)]
        acts = _actions(b2, cid)
        assert acts.count("rollback") == 1 and acts[-1] == "rolled_back", acts
        eventually("the report saying rolled back", lambda: "**rolled back**" in w.reply(), b2)
        assert gh.errors[errors:] == []
    finally:
        if b1.proc.poll() is None:
            stop_bot(b1)
        if b2 is not None:
            stop_bot(b2)


# --------------------------------------------------------------------------- 3. SIGKILL after the /train submission


class HookedArgoServer(FakeArgoServer):
    """The fake Argo Server with a hook run once after a workflow was created, before the answer."""

    def __init__(self, *a: Any, **kw: Any):
        super().__init__(*a, **kw)
        self.after_create: Any = None

    def handle(self, method: str, raw_path: str, headers: Any, raw_body: bytes) -> tuple[int, Any]:
        status, body = super().handle(method, raw_path, headers, raw_body)
        hook = self.after_create
        if hook is not None and status == 200 and method == "POST" and \
                re.fullmatch(r"/api/v1/workflows/[^/]+", urlsplit(raw_path).path):  # CreateWorkflow
            self.after_create = None
            hook()
        return status, body


@pytest.fixture(scope="module")
def hooked_argo():
    with HookedArgoServer(tokens={ARGO_TOKEN: ["ml-train"]}, spec=SwaggerSpec()) as server:
        for path in sorted((ROOT / "workflows").glob("*.yaml")):
            server.add_workflow_template(YAML(typ="safe").load(path.read_text()), "ml-train")
        yield server


def test_a_bot_killed_after_the_train_submission_submits_once_and_replies(fakes, hooked_argo, tmp_path):
    gh, _ = fakes
    argo = hooked_argo
    errors = len(gh.errors)
    b1 = _start(tmp_path / "bot1", fakes, TRACKING, None, TRAIN_YAML, {"ARGO_TOKEN": ARGO_TOKEN})
    b2 = None
    try:
        w = make_world(gh, b1, argo.url)
        sha = w.head()
        killed: list[float] = []
        argo.after_create = lambda: _kill(b1, killed)
        delivery = b1.send_github("issue_comment", w.comment("/train --gpus 2", "carol"))
        eventually("the bot killed after Argo took the workflow", lambda: killed, b1, timeout=30)
        _reap(b1)
        [req] = created_for(argo, sha)
        name = req.body["workflow"]["metadata"]["name"]
        assert train_statuses(w) == [] and [c for c in gh.comments(w.repo, w.pr) if c.user == BOT] == []

        restart = time.monotonic()
        b2 = _start(tmp_path / "bot2", fakes, TRACKING, b1.database_url, TRAIN_YAML, {"ARGO_TOKEN": ARGO_TOKEN})
        w.bot = b2
        info = b2.wait(delivery, timeout=30)[0]
        took = time.monotonic() - restart
        print(f"\nSIGKILL after the Argo submission: the restarted bot finished /train {took:.2f} s after the "
              f"restart began ({time.monotonic() - killed[0]:.2f} s after the kill; lease_seconds 6)")
        assert info.status == "done" and "workflow submitted" in info.outcome and name in info.outcome, info

        creates = [r for r in argo.requests if r.operation == "WorkflowService_CreateWorkflow"
                   and r.body["workflow"]["metadata"]["labels"].get("mlgate.dev/commit") == sha]
        assert len(creates) == 1, creates  # the retry found the workflow; nothing was submitted twice
        link = f"{argo.url}/workflows/ml-train/{name}"
        [pending] = train_statuses(w)
        assert pending["state"] == "pending" and pending["target_url"] == link
        assert name in w.reply() and link in w.reply() and "Submitted" in w.reply()
        audit = [a for a in b2.audit() if a.get("model") == w.model]
        assert [a["outcome"] for a in audit] == ["workflow submitted"] and audit[0]["workflow"] == name, audit

        # the restarted bot follows the workflow it remembered
        argo.advance(name, "Succeeded", namespace="ml-train")
        eventually("status success", lambda: [s for s in train_statuses(w) if s["state"] == "success"], b2)
        assert len(created_for(argo, sha)) == 1
        assert gh.errors[errors:] == []
        argo.assert_valid()
        assert not argo.rejected, argo.rejected
    finally:
        argo.after_create = None
        if b1.proc.poll() is None:
            stop_bot(b1)
        if b2 is not None:
            stop_bot(b2, (ARGO_TOKEN,))


def test_a_bot_killed_while_writing_the_train_reply_is_replaced_within_10_s_with_one_comment(fakes, hooked_argo,
                                                                                            tmp_path):
    """The kill comes right after the reply's create-comment call went through (the PR's reply is
    held in the store by the dead process): the restarted bot finishes the ``/train`` within 10 s
    of the restart, edits that comment instead of posting a second one, and submits nothing again."""
    gh, _ = fakes
    argo = hooked_argo
    errors = len(gh.errors)
    b1 = _start(tmp_path / "bot1", fakes, TRACKING, None, TRAIN_YAML, {"ARGO_TOKEN": ARGO_TOKEN})
    b2 = None
    try:
        w = make_world(gh, b1, argo.url)
        sha = w.head()
        killed: list[float] = []
        gh.after_request("POST", rf"^/repos/{w.repo}/issues/{w.pr}/comments$", lambda: _kill(b1, killed))
        delivery = b1.send_github("issue_comment", w.comment("/train", "carol"))
        eventually("the bot killed after its reply was posted", lambda: killed, b1, timeout=30)
        _reap(b1)
        assert len([c for c in gh.comments(w.repo, w.pr) if c.user == BOT]) == 1
        [req] = created_for(argo, sha)
        name = req.body["workflow"]["metadata"]["name"]

        restart = time.monotonic()
        b2 = _start(tmp_path / "bot2", fakes, TRACKING, b1.database_url, TRAIN_YAML, {"ARGO_TOKEN": ARGO_TOKEN})
        w.bot = b2
        info = b2.wait(delivery, timeout=60)[0]
        took = time.monotonic() - restart
        print(f"\nSIGKILL after the /train reply was posted: the restarted bot finished /train {took:.2f} s after "
              f"the restart began ({time.monotonic() - killed[0]:.2f} s after the kill; lease_seconds 6)")
        assert info.status == "done" and "workflow submitted" in info.outcome, info
        assert took < 10.0, f"the killed /train was finished {took:.1f} s after the restart"
        assert len(created_for(argo, sha)) == 1
        mine = [c for c in gh.comments(w.repo, w.pr) if c.user == BOT]
        assert len(mine) == 1 and name in mine[0].body  # the comment found by its marker, edited
        assert len(gh.calls("POST", rf"^/repos/{w.repo}/issues/{w.pr}/comments$")) == 1
        assert [s["state"] for s in train_statuses(w)] == ["pending", "pending"]  # set by each attempt
        assert gh.errors[errors:] == []
    finally:
        if b1.proc.poll() is None:
            stop_bot(b1)
        if b2 is not None:
            stop_bot(b2, (ARGO_TOKEN,))
