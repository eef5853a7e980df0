"""The delivery handler in-process (no server): ``handle`` with a real store, the OpenAPI-checked
fake GitHub (real git) and the swagger-checked fake Argo Server."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from mlgate.bot import handlers
from mlgate.bot.settings import BotSettings
from mlgate.edge.db.store import Delivery, Store
from mlgate.bot.worker import WorkerPool
from tests.e2e.bot.deliveries import github_comment
from tests.fakes.argo_server import FakeArgoServer, SwaggerSpec
from tests.fakes.github_server import FakeGitHub

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "ghp_handlertest"
BOT = "mlgate-bot"
ARGO_TOKEN = "argo-handler-token-1f2e"
TRACKING = "https://mlflow.example.com"


def train_yml(argo_url: str) -> str:
    return f"""model: iris
tracking_uri: {TRACKING}
train:
  command: python train.py
  backend: argo
  argo:
    server: {argo_url}
    namespace: ml-train
    image: ghcr.io/acme/train:1.0
    gpus: 1
train_permission: {{min_permission: maintain}}
"""


@pytest.fixture
def env(tmp_path):
    gh = FakeGitHub(tmp_path / "gh", tokens={TOKEN: BOT}).start()
    gh.user(BOT)
    settings = BotSettings(github_api_url=gh.url, github_token=TOKEN, bot_login=BOT, github_write_interval=0,
                           database_url=f"sqlite:///{tmp_path}/bot.db", workers=1, max_attempts=5)
    store = Store(settings.database_url)
    yield gh, settings, store, handlers.make_context(settings, store)
    gh.stop()
    assert gh.errors == [], "the handler sent requests GitHub's OpenAPI description rejects"


def delivery(event: str, payload: dict[str, Any], did: str = "d-1") -> Delivery:
    return Delivery(id=did, forge="github", event=event, payload=payload, headers={},
                    received_at=datetime.now(UTC), attempts=1)


def test_train_on_a_pr_from_a_fork_checks_out_the_forks_repository(env, monkeypatch):
    gh, _, _, ctx = env
    monkeypatch.setenv("ARGO_TOKEN", ARGO_TOKEN)
    with FakeArgoServer(tokens={ARGO_TOKEN: ["ml-train"]}, spec=SwaggerSpec()) as argo:
        for path in sorted((ROOT / "workflows").glob("*.yaml")):
            argo.add_workflow_template(YAML(typ="safe").load(path.read_text()), "ml-train")
        gh.add_repo("acme/model", {".mlgate.yml": train_yml(argo.url), "train.py": "x = 1\n"})
        gh.set_permission("acme/model", "carol", "maintain")
        gh.fork("acme/model", "mallory")
        sha = gh.commit("mallory/model", "bigger", {"train.py": "x = 2\n"}, author="mallory")
        pr = gh.open_pr("acme/model", "bigger", user="mallory", head_repo="mallory/model")
        out = handlers.handle(delivery("issue_comment", github_comment(gh, "acme/model", pr.number, "carol", "/train")),
                              ctx)
        assert "workflow submitted" in out, out
        [req] = argo.created()
        params = {p["name"]: p.get("value") for p in req.body["workflow"]["spec"]["arguments"]["parameters"]}
        # the commit lives in the fork: the workflow clones the fork, not acme/model
        assert params["repo"] == f"{gh.url}/mallory/model.git" and params["commit"] == sha
        [status] = [s for s in gh.statuses("acme/model", sha) if s["context"] == "mlgate/train"]
        assert status["state"] == "pending"
        argo.assert_valid()
        assert not argo.rejected


def test_a_malformed_delivery_fails_at_once_and_is_not_retried(env):
    gh, settings, store, ctx = env
    gh.add_repo("acme/model", {".mlgate.yml": "model: iris\n", "train.py": "x = 1\n"})
    gh.commit("acme/model", "feature", {"train.py": "x = 2\n"}, author="alice")
    pr = gh.open_pr("acme/model", "feature", user="alice")
    payload = github_comment(gh, "acme/model", pr.number, "carol", "/promote")
    payload["comment"]["body"] = 1
    store.accept("d-bad", "github", "issue_comment", {}, json.dumps(payload).encode())
    pool = WorkerPool(store, settings, handler=handlers.handle, context=ctx)
    assert pool.run_once("w") is True
    info = store.get("d-bad")
    assert info.status == "failed" and info.attempts == 1, info
    assert "malformed payload: comment.body is integer, expected string" in info.error
    assert gh.requests == []  # nothing was asked of GitHub
