"""``/train`` and ``/abort`` through the bot, end to end (issue 6, "The bot"): signed comments →
``mlgate bot serve`` (its own process, Argo status read every 0.3 s, ``ARGO_TOKEN`` in its
environment) → the fake Argo Server (every request and response checked against Argo's swagger,
workflows moved by the test) and the OpenAPI-checked fake GitHub (commit statuses, the one comment).
"""

from __future__ import annotations

import itertools
import uuid
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from tests.e2e.bot.conftest import BOT, World, eventually, start_bot, stop_bot
from tests.fakes.argo_server import FakeArgoServer, SwaggerSpec

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[3]
ARGO_TOKEN = "argo-e2e-token-5b1f0c9d"
TRACKING = "https://mlflow.example.com"
_n = itertools.count(1)


@pytest.fixture(scope="module")
def argo_server():
    with FakeArgoServer(tokens={ARGO_TOKEN: ["ml-train"]}, spec=SwaggerSpec()) as server:
        for path in sorted((ROOT / "workflows").glob("*.yaml")):
            server.add_workflow_template(YAML(typ="safe").load(path.read_text()), "ml-train")
        yield server


@pytest.fixture(scope="module")
def train_bot(fakes, tmp_path_factory: pytest.TempPathFactory):
    gh, gl = fakes
    b = start_bot(tmp_path_factory.mktemp("train-bot"), gh.url, gl.url, TRACKING,
                  "canary_tick_seconds: 0\ntrain_poll_seconds: 0.3\n", {"ARGO_TOKEN": ARGO_TOKEN})
    yield b
    stop_bot(b, (ARGO_TOKEN,))


def train_yml(model: str, argo_url: str, *, permission: str = "maintain", backend: str = "argo") -> str:
    argo = (f"  backend: argo\n  argo:\n    server: {argo_url}\n    namespace: ml-train\n"
            "    image: ghcr.io/acme/train:1.0\n    gpus: 1\n") if backend == "argo" else ""
    return f"""model: {model}
tracking_uri: {TRACKING}
train:
  command: python train.py
{argo}train_permission: {{min_permission: {permission}}}
"""


def make_world(gh: Any, bot: Any, argo_url: str, **cfg: Any) -> World:
    n = next(_n)
    model = f"tbot{n}-{uuid.uuid4().hex[:6]}"
    repo = f"acme/tmodel{n}"
    gh.add_repo(repo, {".mlgate.yml": train_yml(model, argo_url, **cfg), "train.py": "print('train')\n"})
    for user, role in (("alice", "write"), ("carol", "maintain"), ("dave", "read")):
        gh.set_permission(repo, user, role)
    w = World(gh=gh, bot=bot, client=None, model=model, repo=repo, deploy="")
    gh.commit(repo, "feature", {"train.py": "print('bigger')\n"}, author="alice", message="bigger model")
    w.pr = gh.open_pr(repo, "feature", user="alice", title="Bigger model").number
    return w


@pytest.fixture
def tworld(fakes, train_bot, argo_server) -> World:
    gh, _ = fakes
    errors_before, created_before = len(gh.errors), len(argo_server.created())
    w = make_world(gh, train_bot, argo_server.url)
    yield w
    assert gh.errors[errors_before:] == [], "the bot sent requests GitHub's OpenAPI description rejects"
    argo_server.assert_valid()
    assert not argo_server.rejected, f"the bot sent requests Argo's swagger rejects: {argo_server.rejected}"
    assert len(argo_server.created()) >= created_before


def train_statuses(w: World) -> list[dict[str, Any]]:
    return [s for s in w.gh.statuses(w.repo, w.head()) if s["context"] == "mlgate/train"]


def created_for(argo: FakeArgoServer, sha: str) -> list[Any]:
    return [r for r in argo.created() if r.body["workflow"]["metadata"]["labels"].get("mlgate.dev/commit") == sha]


def params(req: Any) -> dict[str, str]:
    return {p["name"]: p.get("value") for p in req.body["workflow"]["spec"]["arguments"]["parameters"]}


def test_train_submits_one_workflow_and_the_status_follows_it(tworld: World, argo_server: FakeArgoServer):
    w, argo = tworld, argo_server
    sha = w.head()
    payload = w.comment("/train --gpus 2", "carol")
    d1 = w.bot.send_github("issue_comment", payload)
    info = w.bot.wait(d1)[0]
    assert info.status == "done" and "workflow submitted" in info.outcome, info
    [req] = created_for(argo, sha)
    p = params(req)
    assert p["gpus"] == "2" and p["commit"] == sha and p["model"] == w.model and p["tracking-uri"] == TRACKING
    assert p["repo"] == f"{w.gh.url}/{w.repo}.git"
    # (the fake answers 401 to any other token: the bot sent $ARGO_TOKEN from its environment)
    name = req.body["workflow"]["metadata"]["name"]
    link = f"{argo.url}/workflows/ml-train/{name}"
    [pending] = train_statuses(w)
    assert pending["state"] == "pending" and pending["target_url"] == link
    assert name in w.reply() and link in w.reply()
    # the same comment again (redelivery, a second hook) and a second /train: still one workflow
    assert w.bot.send_github("issue_comment", payload, delivery=d1) == d1
    again = w.bot.wait(w.bot.send_github("issue_comment", payload))[0]
    assert "already handled" in again.outcome
    second = w.promote("/train", by="carol")
    assert "already submitted" in second.outcome and "already exists for this commit" in w.reply()
    assert len(created_for(argo, sha)) == 1
    # the status follows the workflow
    argo.advance(name, "Running", namespace="ml-train")
    eventually("status Running", lambda: any("Running" in s["description"] for s in train_statuses(w)), w.bot)
    argo.advance(name, "Succeeded", namespace="ml-train")
    done = eventually("status success", lambda: [s for s in train_statuses(w) if s["state"] == "success"], w.bot)
    assert done[-1]["target_url"] == link and train_statuses(w)[-1]["state"] == "success"
    gates = [s for s in w.gh.statuses(w.repo, sha) if s["context"] == "mlgate/gates"]
    assert gates == []  # /train does not touch the gates status
    audit = [a for a in w.bot.audit() if a.get("model") == w.model]
    assert [a["outcome"].split(":")[0] for a in audit] == ["workflow submitted", "already submitted", "mlgate/train success"]
    assert audit[0]["actor"] == "carol" and audit[0]["gpus"] == 2 and audit[0]["workflow"] == name


def test_a_failed_workflow_fails_the_status_with_the_step_message(tworld: World, argo_server: FakeArgoServer):
    w, argo = tworld, argo_server
    w.promote("/train", by="carol")
    [req] = created_for(argo, w.head())
    assert params(req)["gpus"] == "1"  # train.argo.gpus
    name = req.body["workflow"]["metadata"]["name"]
    argo.advance(name, "Failed", namespace="ml-train", message="OOMKilled (exit code 137)")
    failed = eventually("status failure", lambda: [s for s in train_statuses(w) if s["state"] == "failure"], w.bot)
    assert failed[-1]["description"] == "train: OOMKilled (exit code 137)"


def test_train_by_a_user_without_the_train_permission_is_refused_with_the_reason(tworld: World,
                                                                                argo_server: FakeArgoServer):
    w, argo = tworld, argo_server
    # the PR lowers train_permission on its head: the bot reads the default branch's
    w.gh.commit(w.repo, "feature", {".mlgate.yml": train_yml(w.model, argo.url, permission="read")}, author="alice")
    info = w.promote("/train --gpus 8", by="alice")
    assert "refused" in info.outcome, info
    reply = w.reply()
    assert "was refused" in reply and "@alice has write permission" in reply and "needs maintain or higher" in reply
    assert created_for(argo, w.head()) == [] and train_statuses(w) == []
    rec = [a for a in w.bot.audit() if a.get("model") == w.model][-1]
    assert rec["allowed"] is False and rec["actor"] == "alice"


def test_abort_stops_the_running_workflow(tworld: World, argo_server: FakeArgoServer):
    w, argo = tworld, argo_server
    w.promote("/train", by="carol")
    [req] = created_for(argo, w.head())
    name = req.body["workflow"]["metadata"]["name"]
    argo.advance(name, "Running", namespace="ml-train")
    refused = w.promote("/abort", by="dave")
    assert "refused" in refused.outcome and argo.workflow(name, "ml-train")["spec"].get("shutdown") is None
    info = w.promote("/abort", by="carol")
    assert info.status == "done" and f"stopped {name}" in info.outcome, info
    assert argo.workflow(name, "ml-train")["spec"]["shutdown"] == "Stop"
    assert "is stopping" in w.reply() and name in w.reply()
    stopped = eventually("status failure", lambda: [s for s in train_statuses(w) if s["state"] == "failure"], w.bot)
    assert "stopped by @carol" in stopped[0]["description"]
    # the poller reads the end Argo reports (the controller failed the stopped step)
    eventually("final status from Argo",
               lambda: len([s for s in train_statuses(w) if s["state"] == "failure"]) >= 2, w.bot)
    nothing = w.promote("/abort", by="carol")
    assert "nothing to abort" in nothing.outcome


def test_a_repository_without_the_argo_backend_gets_a_reply_saying_so(fakes, train_bot, argo_server):
    gh, _ = fakes
    w = make_world(gh, train_bot, argo_server.url, backend="local")
    info = w.promote("/train", by="carol")
    assert "not available" in info.outcome
    assert "train.backend: argo" in w.reply() and train_statuses(w) == []
    assert [s for s in gh.statuses(w.repo, w.head()) if s["context"] == "mlgate/train"] == []
    assert BOT in {c.user for c in gh.comments(w.repo, w.pr)}


def test_train_on_gitlab_sets_the_pipeline_status_of_the_merge_request_head(fakes, train_bot, argo_server):
    from tests.e2e.bot.deliveries import gitlab_note

    _, gl = fakes
    n = uuid.uuid4().hex[:6]
    model, repo = f"tgl-{n}", f"grp/tmodel-{n}"
    proj = gl.add_project(repo, {".mlgate.yml": train_yml(model, argo_server.url)})
    gl.set_access(repo, "carol", 40)  # Maintainer = maintain
    sha = gl.commit(repo, "feature", {"train.py": "x = 3\n"}, author="alice")
    mr = gl.open_mr(repo, "feature", author="alice")
    errors = len(gl.errors)
    d = train_bot.send_gitlab("Note Hook", gitlab_note(proj, mr.iid, "carol", gl.user("carol"), "/train --gpus 4", sha))
    info = train_bot.wait(d)[0]
    assert "workflow submitted" in info.outcome, info
    [req] = created_for(argo_server, sha)
    assert params(req)["gpus"] == "4" and params(req)["repo"] == f"{gl.url}/{repo}.git"
    [st] = [s for s in proj.statuses[sha] if s["name"] == "mlgate/train"]
    assert st["status"] == "pending" and st["target_url"].endswith(req.body["workflow"]["metadata"]["name"])
    argo_server.advance(req.body["workflow"]["metadata"]["name"], "Succeeded", namespace="ml-train")
    eventually("GitLab status success",
               lambda: [s for s in proj.statuses[sha] if s["name"] == "mlgate/train" and s["status"] == "success"],
               train_bot)
    assert gl.errors[errors:] == []
