"""End-to-end harness: the bot as a process (``mlgate bot serve``) on loopback, talking to
spec-checked fake GitHub/GitLab servers backed by real git repositories, and to a real
MLflow server (``mlflow_server`` from tests/conftest.py).

Shared per session (servers start once); each test gets its own repositories and
registered model (:class:`World`), so tests do not see each other's state.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Any

import httpx
import pytest

from tests.fakes.github_server import FakeGitHub
from tests.fakes.gitlab_server import FakeGitLab

VENV_BIN = Path(sys.executable).parent
GH_SECRET = "e2e-github-webhook-secret"
GL_SECRET = "e2e-gitlab-webhook-token"
GH_TOKEN = "ghp_e2etoken000000000000000000000000"
GL_TOKEN = "glpat-e2etoken0000000000"
BOT = "mlgate-bot"
_n = itertools.count(1)


@pytest.fixture(scope="session")
def fakes(tmp_path_factory: pytest.TempPathFactory):
    d = tmp_path_factory.mktemp("forges")
    (d / "gh").mkdir()
    (d / "gl").mkdir()
    gh = FakeGitHub(d / "gh", tokens={GH_TOKEN: BOT}).start()
    gl = FakeGitLab(d / "gl", tokens={GL_TOKEN: BOT}).start()
    gh.user(BOT)
    gl.user(BOT)
    yield gh, gl
    gh.stop()
    gl.stop()


@dataclass
class BotProcess:
    url: str
    database_url: str
    proc: subprocess.Popen
    log: Path
    ui_url: str | None = None  # the dashboard's listener (start_bot(..., args=("--ui-port", "0")))

    def send_github(self, event: str, payload: dict[str, Any], delivery: str | None = None) -> str:
        body = json.dumps(payload).encode()
        delivery = delivery or str(uuid.uuid4())
        sig = "sha256=" + hmac.new(GH_SECRET.encode(), body, hashlib.sha256).hexdigest()
        r = httpx.post(f"{self.url}/webhooks/github", content=body, timeout=10, headers={
            "Content-Type": "application/json", "X-GitHub-Event": event, "X-GitHub-Delivery": delivery,
            "X-Hub-Signature-256": sig, "User-Agent": "GitHub-Hookshot/e2e"})
        assert r.status_code == 202, r.text
        return delivery

    def send_gitlab(self, event: str, payload: dict[str, Any], key: str | None = None) -> str:
        key = key or str(uuid.uuid4())
        r = httpx.post(f"{self.url}/webhooks/gitlab", content=json.dumps(payload).encode(), timeout=10, headers={
            "Content-Type": "application/json", "X-Gitlab-Event": event, "X-Gitlab-Token": GL_SECRET,
            "Idempotency-Key": key, "X-Gitlab-Event-UUID": str(uuid.uuid4())})
        assert r.status_code == 202, r.text
        return key

    def store(self):
        from mlgate.edge.db.store import Store

        return Store(self.database_url)

    def wait(self, *deliveries: str, timeout: float = 90.0) -> list[Any]:
        """Wait until each delivery is done (or failed); returns their DeliveryInfo."""
        store = self.store()
        deadline = time.monotonic() + timeout
        out = []
        for d in deliveries:
            while True:
                info = store.get(d)
                if info is not None and info.status in ("done", "failed"):
                    out.append(info)
                    break
                if self.proc.poll() is not None:
                    raise AssertionError(f"the bot exited: {self.log.read_text()[-3000:]}")
                if time.monotonic() > deadline:
                    raise AssertionError(f"delivery {d} not processed in {timeout} s: {info}\n{self.log.read_text()[-3000:]}")
                time.sleep(0.1)
        store.close()
        return out

    def audit(self) -> list[dict[str, Any]]:
        s = self.store()
        try:
            return s.audit_records()
        finally:
            s.close()


def start_bot(workdir: Path, gh_url: str, gl_url: str, tracking_uri: str, extra_yaml: str = "",
              extra_env: dict[str, str] | None = None, mlgate: Path | None = None,
              args: tuple[str, ...] = ()) -> BotProcess:
    """``mlgate bot serve`` on a free port with its own database, talking to the fake forges.
    ``mlgate``: the executable (default: this venv's; tests/e2e/test_small_install.py gives a
    fresh ``mlgate[bot]`` install's)."""
    workdir.mkdir(parents=True, exist_ok=True)
    db = f"sqlite:///{workdir}/bot.db"
    cfg = workdir / "bot.yml"
    cfg.write_text(
        f"github_api_url: {gh_url}\ngitlab_url: {gl_url}\ndatabase_url: {db}\ntracking_uri: {tracking_uri}\n"
        f"bot_login: {BOT}\nworkers: 2\npoll_interval: 0.1\ngithub_write_interval: 0\n"
        "retry_base_seconds: 0.5\nretry_max_seconds: 2\nlog_level: info\n" + extra_yaml
    )
    env = dict(os.environ, MLGATE_GITHUB_WEBHOOK_SECRET=GH_SECRET, MLGATE_GITLAB_WEBHOOK_TOKEN=GL_SECRET,
               MLGATE_GITHUB_TOKEN=GH_TOKEN, MLGATE_GITLAB_TOKEN=GL_TOKEN, MLFLOW_HTTP_REQUEST_MAX_RETRIES="1",
               **(extra_env or {}))
    env.pop("MLFLOW_TRACKING_URI", None)
    log = workdir / "bot.log"
    out = open(log, "w")
    proc = subprocess.Popen([str(mlgate or VENV_BIN / "mlgate"), "bot", "serve", "--config", str(cfg), "--port", "0", *args],
                            cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    out.close()
    deadline = time.monotonic() + 60
    url = ui_url = None
    while url is None or ("--ui-port" in args and ui_url is None):
        if proc.poll() is not None:
            raise RuntimeError(f"mlgate bot serve exited with {proc.returncode}: {log.read_text()[-3000:]}")
        for line in log.read_text().splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if rec.get("event") == "listening" and rec.get("port"):
                url = f"http://127.0.0.1:{rec['port']}"
            if rec.get("event") == "dashboard listening" and rec.get("port"):
                ui_url = f"http://127.0.0.1:{rec['port']}"
        if time.monotonic() > deadline:
            raise RuntimeError(f"the bot did not start: {log.read_text()[-3000:]}")
        time.sleep(0.1)
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    # the start-up checks (a thread: GET /user of each forge, the tracking server) are over before a
    # test counts the fakes' requests; a check slower than 30 s only loses that guarantee
    checks_deadline = time.monotonic() + 30
    while '"start-up checks done"' not in log.read_text() and time.monotonic() < checks_deadline:
        time.sleep(0.05)
    return BotProcess(url=url, database_url=db, proc=proc, log=log, ui_url=ui_url)


def stop_bot(b: BotProcess, secrets: tuple[str, ...] = ()) -> None:
    try:
        os.killpg(b.proc.pid, signal.SIGTERM)
        b.proc.wait(timeout=20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(b.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    text = b.log.read_text()
    for s in (GH_SECRET, GH_TOKEN, GL_TOKEN, *secrets):
        assert s not in text, "a secret reached the bot's log"


def eventually(what: str, check: Callable[[], Any], bot: BotProcess, timeout: float = 30.0) -> Any:
    """Poll ``check()`` until it returns something truthy; fail with the bot's log tail."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if bot.proc.poll() is not None:
            raise AssertionError(f"the bot exited: {bot.log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s\n{bot.log.read_text()[-4000:]}")
        time.sleep(0.1)


@pytest.fixture(scope="session")
def bot(fakes, mlflow_server, tmp_path_factory: pytest.TempPathFactory):
    gh, gl = fakes
    b = start_bot(tmp_path_factory.mktemp("bot"), gh.url, gl.url, mlflow_server)
    yield b
    stop_bot(b)  # also asserts that no secret reached the log


@pytest.fixture(scope="session")
def mlflow_client(mlflow_server):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=mlflow_server, registry_uri=mlflow_server)


ISVC = """apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: {name}
  annotations:
    serving.kserve.io/deploymentMode: "RawDeployment"
spec:
  predictor:
    minReplicas: 1
    model:
      modelFormat:
        name: sklearn
      storageUri: "s3://models/{name}/bootstrap"   # managed by mlgate
      resources:
        limits: {{cpu: "1", memory: 2Gi}}
"""


def mlgate_yml(model: str, deploy: str, *, staging_approvals: int = 1, extra_staging: str = "",
               mode: str = "pull-request") -> str:
    return f"""model: {model}
tracking_uri: http://mlflow.invalid:5000
environments:
  - name: staging
    gitops:
      repository: {deploy}
      path: staging/isvc.yaml
      mode: {mode}
      target: {{kind: kserve}}
    approvals:
      required: {staging_approvals}
{extra_staging}  - name: production
    requires: staging
    gitops:
      repository: {deploy}
      path: production/isvc.yaml
      mode: pull-request
      target: {{kind: kserve}}
    promoters: {{min_permission: maintain}}
    approvals: {{required: 2}}
"""


@dataclass
class World:
    """One test's repositories and registered model on the fake GitHub."""

    gh: FakeGitHub
    bot: BotProcess
    client: Any
    model: str
    repo: str
    deploy: str
    pr: int = 0

    def head(self) -> str:
        r = self.gh.repos[self.repo]
        return r.git.branch(r.pulls[self.pr].head)

    def register(self, sha: str, gates: str = "passed") -> str:
        """Register a model version for commit ``sha`` (as ``mlgate train`` would); returns the version."""
        from mlgate.core.config import parse
        from mlgate.core.promotion import gates_fingerprint

        tags = {"mlgate.git_commit": sha}
        if gates:
            tags["mlgate.gates"] = gates
            # as 'mlgate validate' records it, under the default branch's gates
            r = self.gh.repos[self.repo]
            yml = r.git.read(r.git.branch(r.default_branch), ".mlgate.yml").decode()
            tags["mlgate.gates.fingerprint"] = gates_fingerprint(parse(yml))
        mv = self.client.create_model_version(self.model, source=f"s3://models/{self.model}/{sha[:8]}", tags=tags)
        return str(mv.version)

    def push(self, files: dict[str, str | None] | None = None, author: str | None = None) -> str:
        pr = self.gh.repos[self.repo].pulls[self.pr]
        return self.gh.commit(self.repo, pr.head, files or {f"train_{next(_n)}.py": "x = 1\n"},
                              author=author or pr.user)

    def comment(self, body: str, by: str, **kw: Any) -> dict[str, Any]:
        from tests.e2e.bot.deliveries import github_comment

        return github_comment(self.gh, self.repo, self.pr, by, body, **kw)

    def promote(self, body: str = "/promote", by: str = "carol", **kw: Any) -> Any:
        d = self.bot.send_github("issue_comment", self.comment(body, by, **kw))
        return self.bot.wait(d)[0]

    def reply(self) -> str:
        """mlgate's one comment on the source PR."""
        mine = [c for c in self.gh.comments(self.repo, self.pr) if c.user == BOT]
        assert len(mine) <= 1, f"more than one mlgate comment: {[c.body[:80] for c in mine]}"
        return mine[0].body if mine else ""

    def promotion_prs(self) -> list[Any]:
        return self.gh.pulls(self.deploy)


@pytest.fixture
def world(fakes, bot, mlflow_client) -> World:
    gh, _ = fakes
    n = next(_n)
    model = f"iris{n}-{uuid.uuid4().hex[:6]}"
    repo, deploy = f"acme/model{n}", f"acme/deploy{n}"
    gh.add_repo(deploy, {"staging/isvc.yaml": ISVC.format(name=model), "production/isvc.yaml": ISVC.format(name=model),
                         "README.md": "deployments\n"})
    gh.add_repo(repo, {".mlgate.yml": mlgate_yml(model, deploy), "train.py": "print('train')\n"})
    for user, role in (("alice", "write"), ("bob", "write"), ("carol", "maintain"), ("dave", "read")):
        gh.set_permission(repo, user, role)
    gh.set_permission(deploy, BOT, "write")
    mlflow_client.create_registered_model(model)
    w = World(gh=gh, bot=bot, client=mlflow_client, model=model, repo=repo, deploy=deploy)
    sha = gh.commit(repo, "feature", {"train.py": "print('better')\n"}, author="alice", message="better model")
    w.pr = gh.open_pr(repo, "feature", user="alice", title="Better model").number
    assert w.head() == sha
    errors_before = len(gh.errors)
    yield w
    assert gh.errors[errors_before:] == [], "the bot sent requests GitHub's OpenAPI description rejects"
