"""Issue 10, "A PR that lost its label": a promotion whose create-PR/MR call went through but whose
attempt never heard back converges on the retry: one promotion PR/MR, labelled
``mlgate-promotion``, with the promotion's title and body, and the reply says "opened".

Two ways to lose the answer, against ``mlgate bot serve`` and the fakes:

- the bot is killed (SIGKILL) right after the create call took effect; restarted, it retries
  the delivery when the lease lapses (a new attempt: the store knows this delivery began writing);
- the connection drops after the forge created the PR/MR (a proxy timeout); the same attempt
  retries the call and finds the PR/MR open (this attempt created the branch).
"""

from __future__ import annotations

import os
import signal
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.e2e.bot.conftest import BOT, ISVC, BotProcess, World, mlgate_yml, start_bot, stop_bot
from tests.e2e.bot.deliveries import gitlab_note
from tests.e2e.bot.test_concurrency_replies import github_world
from tests.e2e.bot.test_gitlab_scenarios import approve as gitlab_approve
from tests.e2e.bot.test_gitlab_scenarios import fingerprint
from tests.e2e.bot.forge_calls import create_pr, label_calls

pytestmark = pytest.mark.slow

#: a lease that lapses soon after the kill, so the restarted bot retries the delivery quickly
FAST_LEASE = {"MLGATE_LEASE_SECONDS": "2"}


def kill_on(fake: Any, method: str, path_regex: str, bot: BotProcess) -> None:
    """SIGKILL the bot once the matching request took effect on ``fake``, before it hears the answer."""

    def kill() -> None:
        os.killpg(bot.proc.pid, signal.SIGKILL)
        bot.proc.wait(timeout=30)

    fake.after_request(method, path_regex, kill)


# ---------------------------------------------------------------------- GitHub


def github_ready(w: World) -> str:
    """Register a passing version for the PR's head and approve it; the version."""
    version = w.register(w.head())
    w.gh.add_review(w.repo, w.pr, "bob", "APPROVED", commit_id=w.head())
    return version


def assert_github_promotion(w: World, version: str) -> None:
    prs = w.promotion_prs()
    assert len(prs) == 1, [p.title for p in prs]
    pr = prs[0]
    assert pr.head == f"mlgate/promote/{w.model}/staging/v{version}"
    assert pr.labels == ["mlgate-promotion"]
    assert pr.title == f"Promote {w.model} to version {version} in staging"
    assert "Requested by @carol" in pr.body and "{{mlgate:change}}" not in pr.body and "storageUri" in pr.body
    assert len(w.gh.calls("POST", label_calls(w.deploy))) == 1
    reply = w.reply()
    assert "Promotion PR opened" in reply and "updated" not in reply, reply


def test_github_bot_killed_right_after_create_pr_labels_it_and_says_opened(fakes, mlflow_server, mlflow_client,
                                                                          tmp_path: Path):
    gh, gl = fakes
    workdir = tmp_path / "bot"
    b = start_bot(workdir, gh.url, gl.url, mlflow_server, extra_env=FAST_LEASE)
    w = github_world(gh, b, mlflow_client)
    version = github_ready(w)
    errors = len(gh.errors)
    kill_on(gh, "POST", create_pr(w.deploy), b)
    delivery = b.send_github("issue_comment", w.comment("/promote", "carol"))
    b.proc.wait(timeout=90)
    assert b.proc.returncode == -signal.SIGKILL
    pr = w.promotion_prs()[0]
    assert pr.labels == [] and w.reply() == "", "the kill came after the create-PR call, before the label"
    b2 = start_bot(workdir, gh.url, gl.url, mlflow_server, extra_env=FAST_LEASE)
    try:
        w.bot = b2
        info = b2.wait(delivery, timeout=120)[0]
        assert info.status == "done" and "promotion PR opened" in info.outcome, info
        assert_github_promotion(w, version)
        audit = [a for a in b2.audit() if a.get("model") == w.model and a.get("outcome", "").startswith("promotion")]
        assert [a["outcome"] for a in audit] == ["promotion PR opened"]
    finally:
        stop_bot(b2)
    assert gh.errors[errors:] == []


def test_github_create_pr_answer_lost_then_retried_says_opened(world: World):
    """The create-PR POST went through, its connection dropped: the same attempt retries it,
    finds the PR open, labels it and says "opened" (there is one PR)."""
    w = world
    version = github_ready(w)
    w.gh.drop_answer("POST", create_pr(w.deploy))
    info = w.promote("/promote", by="carol")
    assert info.status == "done" and "promotion PR opened" in info.outcome, info
    assert [s for _, _, s in w.gh.calls("POST", create_pr(w.deploy))] == [0, 200]  # sent again: refused in full
    assert_github_promotion(w, version)


def test_github_second_promote_of_an_open_promotion_says_updated(world: World):
    """The counterpart: a later command finds the PR its predecessor opened, and says "updated"."""
    w = world
    github_ready(w)
    assert "promotion PR opened" in w.promote("/promote", by="carol").outcome
    info = w.promote("/promote", by="carol")
    assert "promotion PR updated" in info.outcome, info
    assert len(w.promotion_prs()) == 1 and "Promotion PR updated" in w.reply()


# ---------------------------------------------------------------------- GitLab


def gitlab_world(gl: Any, mlflow_client: Any) -> tuple[Any, Any, str, str, str]:
    n = uuid.uuid4().hex[:6]
    model, repo, deploy = f"retry-{n}", f"grp/retry-{n}", f"grp/retry-deploy-{n}"
    gl.add_project(deploy, {"staging/isvc.yaml": ISVC.format(name=model), "production/isvc.yaml": ISVC.format(name=model)})
    proj = gl.add_project(repo, {".mlgate.yml": mlgate_yml(model, deploy)})
    proj.approvals_required = 0
    for user, level in (("alice", 30), ("bob", 30), ("carol", 40)):
        gl.set_access(repo, user, level)
    sha = gl.commit(repo, "feature", {"train.py": "x = 2\n"}, author="alice")
    mr = gl.open_mr(repo, "feature", author="alice")
    mlflow_client.create_registered_model(model)
    mlflow_client.create_model_version(model, source=f"s3://models/{model}/{sha[:8]}",
                                       tags={"mlgate.git_commit": sha, "mlgate.gates": "passed",
                                             "mlgate.gates.fingerprint": fingerprint(mlgate_yml(model, deploy))})
    return proj, mr, sha, model, deploy


def assert_gitlab_promotion(gl: Any, proj: Any, mr: Any, model: str, deploy: str) -> None:
    mrs = list(gl.projects[deploy].mrs.values())
    assert len(mrs) == 1, [m.title for m in mrs]
    pmr = mrs[0]
    assert pmr.source_branch == f"mlgate/promote/{model}/staging/v1" and pmr.state == "opened"
    assert pmr.labels == ["mlgate-promotion"]
    assert pmr.title == f"Promote {model} to version 1 in staging"
    assert "Requested by @carol" in pmr.description and "{{mlgate:change}}" not in pmr.description
    mine = [n for n in proj.notes.values() if n.mr == mr.iid and n.author == BOT]
    assert len(mine) == 1 and "Promotion PR opened" in mine[0].body, [n.body for n in mine]


def test_gitlab_bot_killed_right_after_create_mr_labels_it_and_says_opened(fakes, mlflow_server, mlflow_client,
                                                                          tmp_path: Path):
    gh, gl = fakes
    workdir = tmp_path / "bot"
    b = start_bot(workdir, gh.url, gl.url, mlflow_server, extra_env=FAST_LEASE)
    proj, mr, sha, model, deploy = gitlab_world(gl, mlflow_client)
    errors = len(gl.errors)
    gitlab_approve(b, gl, proj, mr, sha, "bob")
    kill_on(gl, "POST", rf"/projects/{quote(deploy, safe='')}/merge_requests$", b)
    delivery = b.send_gitlab("Note Hook", gitlab_note(proj, mr.iid, "carol", gl.user("carol"), "/promote", sha))
    b.proc.wait(timeout=90)
    pmr = next(iter(gl.projects[deploy].mrs.values()))
    pmr.labels.clear()  # as GitLab would hold it had the label been a later call (GitHub's case)
    pmr.title = "Draft: edited by hand"
    b2 = start_bot(workdir, gh.url, gl.url, mlflow_server, extra_env=FAST_LEASE)
    try:
        info = b2.wait(delivery, timeout=120)[0]
        assert info.status == "done" and "promotion PR opened" in info.outcome, info
        assert_gitlab_promotion(gl, proj, mr, model, deploy)
    finally:
        stop_bot(b2)
    assert gl.errors[errors:] == []


def test_gitlab_create_mr_answer_lost_then_retried_says_opened(fakes, bot, mlflow_client):
    _, gl = fakes
    proj, mr, sha, model, deploy = gitlab_world(gl, mlflow_client)
    errors = len(gl.errors)
    gitlab_approve(bot, gl, proj, mr, sha, "bob")
    gl.drop_answer("POST", rf"/projects/{quote(deploy, safe='')}/merge_requests$")
    d = bot.send_gitlab("Note Hook", gitlab_note(proj, mr.iid, "carol", gl.user("carol"), "/promote", sha))
    info = bot.wait(d)[0]
    assert info.status == "done" and "promotion PR opened" in info.outcome, info
    assert [s for m, p, s in gl.requests if m == "POST" and p.endswith(f"{quote(deploy, safe='')}/merge_requests")] \
        == [0, 409]
    assert_gitlab_promotion(gl, proj, mr, model, deploy)
    assert gl.errors[errors:] == []
