"""`mlgate bot explain DELIVERY --record FACTS` reads the facts a live run reads (issue 11), so that
replaying a decision offline with `--facts FACTS` gives the decision the bot made.

Per forge, a bot of its own on a fake GitHub or GitLab of its own (both are stopped before the
replay) and the session's real MLflow server: one /promote is refused (no approval yet), then, after an approving
review or approval, the next is allowed; each delivery is recorded right after the bot handled it, and each
replay must say what the bot's audit record says (allowed or refused, and the same reasons).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.e2e.bot.conftest import BOT, GH_TOKEN, GL_TOKEN, ISVC, VENV_BIN, World, mlgate_yml, start_bot, stop_bot
from tests.e2e.bot.deliveries import github_review
from tests.fakes.github_server import FakeGitHub
from tests.fakes.gitlab_server import FakeGitLab

pytestmark = pytest.mark.slow


def mlgate(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(VENV_BIN / "mlgate"), *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def replayed(stdout: str) -> tuple[bool, list[str]]:
    """(allowed, the failed checks' details) from `mlgate bot explain` output."""
    verdict = re.search(r"^decision for /promote .*: (allowed|refused)$", stdout, re.M)
    assert verdict, stdout
    return verdict.group(1) == "allowed", re.findall(r"^  NO  [^:]+: (.*)$", stdout, re.M)


def record(d: str, tmp_path: Path, env: dict[str, str]) -> tuple[str, Path, Path]:
    """`mlgate bot show D > D.json`, then `mlgate bot explain D.json --record D.facts.json`, live."""
    shown = mlgate("bot", "show", d, env=env, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    delivery, facts = tmp_path / f"{d}.json", tmp_path / f"{d}.facts.json"
    delivery.write_text(shown.stdout)
    r = mlgate("bot", "explain", str(delivery), "--record", str(facts), env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert f"recorded the facts of this delivery to {facts}" in r.stderr
    return d, delivery, facts


def replay_matches_audit(recorded: list[tuple[str, Path, Path]], audit: dict[str, dict], tmp_path: Path,
                         env: dict[str, str], secret: str) -> list[bool]:
    """Replay each recording offline; each must say what the bot's audit record says. Returns the verdicts."""
    outcomes = []
    for d, delivery, facts in recorded:
        r = mlgate("bot", "explain", str(delivery), "--facts", str(facts), env=env, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        allowed, reasons = replayed(r.stdout)
        assert (allowed, reasons) == (audit[d]["allowed"], audit[d]["reasons"]), r.stdout
        outcomes.append(allowed)
        assert json.loads(facts.read_text())["recorded"]["delivery"] == d and secret not in facts.read_text()
    return outcomes


def test_gitlab_recorded_facts_replay_offline_to_the_live_decisions(tmp_path, mlflow_server, mlflow_client):
    from tests.e2e.bot.test_gitlab_scenarios import approve, fingerprint
    from tests.e2e.bot.deliveries import gitlab_note

    gl = FakeGitLab(tmp_path / "gl", tokens={GL_TOKEN: BOT}).start()
    gl.user(BOT)
    bot = start_bot(tmp_path / "bot", "http://127.0.0.1:9", gl.url, mlflow_server)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "MLGATE_"))}
    live_env = dict(env, MLGATE_GITLAB_TOKEN=GL_TOKEN, MLGATE_BOT_CONFIG=str(tmp_path / "bot" / "bot.yml"))
    model, repo, deploy = f"explain-{uuid.uuid4().hex[:6]}", "grp/model-x", "grp/deploy-x"
    recorded = []
    try:
        gl.add_project(deploy, {"staging/isvc.yaml": ISVC.format(name=model), "production/isvc.yaml": ISVC.format(name=model)})
        proj = gl.add_project(repo, {".mlgate.yml": mlgate_yml(model, deploy)})
        proj.approvals_required = 0
        for user, level in (("alice", 30), ("bob", 30), ("carol", 40)):
            gl.set_access(repo, user, level)
        sha = gl.commit(repo, "feature", {"train.py": "x = 2\n"}, author="alice")
        mr = gl.open_mr(repo, "feature", author="alice")
        mlflow_client.create_registered_model(model)
        mlflow_client.create_model_version(model, source=f"s3://models/{model}/{sha[:8]}", tags={
            "mlgate.git_commit": sha, "mlgate.gates": "passed", "mlgate.gates.fingerprint": fingerprint(mlgate_yml(model, deploy))})

        def promote() -> str:
            d = bot.send_gitlab("Note Hook", gitlab_note(proj, mr.iid, "carol", gl.user("carol"), "/promote", sha))
            assert bot.wait(d)[0].status == "done"
            return d

        recorded.append(record(promote(), tmp_path, live_env))  # refused: nobody approved yet
        approve(bot, gl, proj, mr, sha, "bob")
        recorded.append(record(promote(), tmp_path, live_env))  # allowed: bob approved the head
        audit = {a["delivery"]: a for a in bot.audit() if a.get("command") == "/promote"}
    finally:
        stop_bot(bot)
        gl.stop()
    offline = dict(env, MLGATE_GITLAB_URL=gl.url)  # stopped: any forge call would fail
    assert replay_matches_audit(recorded, audit, tmp_path, offline, GL_TOKEN) == [False, True]
    second = json.loads(recorded[1][2].read_text())
    assert second["gitlab_approvals"] == {"approved_by": ["bob"], "commits": {"bob": sha}}


def test_recorded_facts_replay_offline_to_the_live_decisions(tmp_path, mlflow_server, mlflow_client):
    gh = FakeGitHub(tmp_path / "gh", tokens={GH_TOKEN: BOT}).start()
    gh.user(BOT)
    bot = start_bot(tmp_path / "bot", gh.url, "http://127.0.0.1:9", mlflow_server)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "MLGATE_"))}
    live_env = dict(env, MLGATE_GITHUB_TOKEN=GH_TOKEN, MLGATE_BOT_CONFIG=str(tmp_path / "bot" / "bot.yml"))
    model = f"explain-{uuid.uuid4().hex[:6]}"
    recorded: list[tuple[str, Path, Path]] = []  # (delivery id, delivery file, facts file)
    try:
        repo, deploy = "acme/model-x", "acme/deploy-x"
        gh.add_repo(deploy, {"staging/isvc.yaml": ISVC.format(name=model), "production/isvc.yaml": ISVC.format(name=model)})
        gh.add_repo(repo, {".mlgate.yml": mlgate_yml(model, deploy), "train.py": "print('train')\n"})
        for user, role in (("alice", "write"), ("bob", "write"), ("carol", "maintain")):
            gh.set_permission(repo, user, role)
        gh.set_permission(deploy, BOT, "write")
        mlflow_client.create_registered_model(model)
        gh.commit(repo, "feature", {"train.py": "print('better')\n"}, author="alice", message="better model")
        w = World(gh=gh, bot=bot, client=mlflow_client, model=model, repo=repo, deploy=deploy,
                  pr=gh.open_pr(repo, "feature", user="alice", title="Better model").number)
        w.register(w.head())

        def promote_and_record() -> None:
            d = bot.send_github("issue_comment", w.comment("/promote", "carol"))
            assert bot.wait(d)[0].status == "done"
            recorded.append(record(d, tmp_path, live_env))

        promote_and_record()  # refused: nobody approved yet
        review = gh.add_review(repo, w.pr, "bob", "APPROVED", commit_id=w.head())
        delivered = github_review(gh, repo, w.pr, "bob", "approved", w.head())
        delivered["review"]["id"] = review.id  # the bot keeps the commit each approval delivery named
        bot.wait(bot.send_github("pull_request_review", delivered))
        promote_and_record()  # allowed: bob's approval of the head, as the bot recorded it
        audit = {a["delivery"]: a for a in bot.audit() if a.get("command") == "/promote"}
    finally:
        stop_bot(bot)
        gh.stop()

    offline = dict(env, MLGATE_GITHUB_API_URL=gh.url)  # stopped: any forge call would fail
    assert replay_matches_audit(recorded, audit, tmp_path, offline, GH_TOKEN) == [False, True]
    # what changed between the two: bob's approval, and the commit the bot saw it given on
    first, second = (json.loads(f.read_text()) for _, _, f in recorded)
    assert first["reviews"] == [] and [r["user"] for r in second["reviews"]] == ["bob"]
    assert list(second["review_commits"].values()) == [second["pull_request"]["head_sha"]]
    assert first["actor"] == {"permission": "maintain", "teams": []}
