"""The dashboard end to end (issue 16): ``mlgate bot serve --ui-port`` with a token, a promotion and
a canary driven through the OpenAPI-checked fake GitHub, a real MLflow registry and a real
Prometheus, then the pages opened in headless Chromium (Debian ``chromium``). The rendered text
is checked from Chromium's DOM, and one screenshot per page is kept under the test's output
(its path is printed) so that a person can look at it.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
import uuid
from pathlib import Path

import httpx
import pytest

from tests.e2e.bot.conftest import BOT, World, eventually, start_bot, stop_bot
from tests.e2e.bot.test_canary_bot import _fingerprint, merge_and_tell, open_canary_prs
from tests.flows.conftest import FIXTURES
from tests.conftest import wait_for_value

pytestmark = pytest.mark.slow
TOKEN = "ui-" + uuid.uuid4().hex
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def mlgate_yml(model: str, deploy: str, prom: str) -> str:
    return f"""model: {model}
tracking_uri: http://mlflow.invalid:5000
environments:
  - name: production
    requires: staging
    gitops: {{repository: {deploy}, path: prod/isvc.yaml, mode: pull-request, target: {{kind: kserve, name: fraud-model}}}}
    promoters: {{min_permission: maintain}}
    approvals: {{required: 1}}
    canary:
      steps: [10, 50, 100]
      interval: 0.5
      analysis:
        prometheus: {prom}
        timeout: 2
        checks:
          - name: error_rate
            query: 'max(model_error_ratio{{model="{{model}}",version="{{version}}"}})'
            max: 0.05
      target: {{kind: kserve, name: fraud-model}}
  - name: staging
    gitops: {{repository: {deploy}, path: staging/isvc.yaml, mode: push, target: {{kind: kserve, name: fraud-model}}}}
    approvals: {{required: 0}}
"""


@pytest.fixture(scope="module")
def ui_bot(fakes, mlflow_server, tmp_path_factory: pytest.TempPathFactory):
    gh, gl = fakes
    b = start_bot(tmp_path_factory.mktemp("ui-bot"), gh.url, gl.url, mlflow_server,
                  "canary_tick_seconds: 0.3\ntrain_poll_seconds: 0\nui_cache_seconds: 0\n",
                  extra_env={"MLGATE_UI_TOKEN": TOKEN}, args=("--ui-port", "0"))
    yield b
    stop_bot(b, secrets=(TOKEN,))


def _world(gh, bot, client, prom: str) -> World:
    model = f"ui-{uuid.uuid4().hex[:6]}"
    repo, deploy = f"acme/uimodel-{model}", f"acme/uideploy-{model}"
    isvc = (FIXTURES / "kserve-serverless.yaml").read_text().replace("MODEL", model)
    gh.add_repo(deploy, {"prod/isvc.yaml": isvc, "staging/isvc.yaml": isvc})
    gh.add_repo(repo, {".mlgate.yml": mlgate_yml(model, deploy, prom), "train.py": "print('train')\n"})
    for user, role in (("alice", "write"), ("bob", "write"), ("carol", "maintain")):
        gh.set_permission(repo, user, role)
    gh.set_permission(deploy, BOT, "write")
    client.create_registered_model(model)
    fp = _fingerprint(mlgate_yml(model, deploy, prom))
    v1 = client.create_model_version(model, source=f"s3://models/{model}/1",
                                     tags={"mlgate.git_commit": "e" * 40, "mlgate.gates": "passed", "mlgate.gates.fingerprint": fp})
    client.set_registered_model_alias(model, "champion", v1.version)
    w = World(gh=gh, bot=bot, client=client, model=model, repo=repo, deploy=deploy)
    gh.commit(repo, "feature", {"train.py": "print('better')\n"}, author="alice", message="better model")
    w.pr = gh.open_pr(repo, "feature", user="alice", title="Better model").number
    client.create_model_version(model, source=f"s3://models/{model}/2",
                                tags={"mlgate.git_commit": w.head(), "mlgate.gates": "passed",
                                      "mlgate.gates.fingerprint": fp, "mlgate.gate.auc": "passed (0.93)"})
    return w


def _chromium(url: str, out: Path) -> str:
    """Open ``url`` in headless Chromium: save a screenshot to ``out`` and return the DOM text."""
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={out.parent / ('profile-' + out.stem)}", "--window-size=1360,1700"]
    shot = subprocess.run([CHROMIUM, *flags, f"--screenshot={out}", url], capture_output=True, text=True, timeout=90)
    assert out.exists() and out.stat().st_size > 10_000, shot.stderr[-2000:]
    dom = subprocess.run([CHROMIUM, *flags, "--dump-dom", url], capture_output=True, text=True, timeout=90)
    assert dom.returncode == 0, dom.stderr[-2000:]
    return dom.stdout


def test_dashboard_pages_in_a_browser(fakes, ui_bot, mlflow_client, prometheus, exporter, tmp_path_factory):
    assert CHROMIUM, "Debian's chromium is missing: `make system` installs it"
    gh, _ = fakes
    bot = ui_bot
    assert bot.ui_url is not None
    w = _world(gh, bot, mlflow_client, prometheus)
    m = w.model

    # the webhook port never serves the dashboard; the dashboard needs the token
    assert httpx.get(f"{bot.url}/ui", timeout=10).status_code == 404
    r = httpx.get(f"{bot.ui_url}/ui", timeout=10)
    assert r.status_code == 401 and "Basic" in r.headers["www-authenticate"]
    assert httpx.get(f"{bot.ui_url}/ui", headers={"Authorization": "Bearer wrong"}, timeout=10).status_code == 401
    assert httpx.get(f"{bot.ui_url}/ui", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10).status_code == 200

    # staging first (push mode, no approval needed), then production refused: no approval yet
    assert "pushed" in w.promote("/promote to staging", by="carol").outcome
    refused = w.promote("/promote to production", by="carol")
    assert "refused" in refused.outcome, refused

    # approved: production starts its canary; step 1 merged, measured healthy, step 2 opened
    exporter.serve(m, "2", requests=500, error_ratio=0.01)
    exporter.serve(m, "1", requests=5000, error_ratio=0.01)
    wait_for_value(prometheus, f'max(model_error_ratio{{model="{m}",version="2"}})', 0.01)
    w2 = _world(gh, bot, mlflow_client, prometheus)  # a second model that keeps waiting for its approval
    assert "pushed" in w2.promote("/promote to staging", by="carol").outcome
    assert "refused" in w2.promote("/promote to production", by="carol").outcome
    gh.add_review(w.repo, w.pr, "bob", "APPROVED", commit_id=w.head())
    assert "canary" in w.promote("/promote to production", by="carol").outcome
    merge_and_tell(w, open_canary_prs(w)[0])
    step2 = eventually("the 50 % step", lambda: [p for p in open_canary_prs(w) if "at 50 % in production" in p.title], bot)
    merge_and_tell(w, step2[0])
    eventually("the 100 % step", lambda: [p for p in open_canary_prs(w) if "at 100 % in production" in p.title], bot)

    shots = tmp_path_factory.mktemp("dashboard-screenshots")
    print(f"\ndashboard screenshots: {shots}")
    auth = f"http://mlgate:{TOKEN}@" + bot.ui_url.removeprefix("http://")
    model_text = _chromium(f"{auth}/ui/models/{m}", shots / "model.png")
    # the environment pipeline, staging → production, with the versions their aliases hold
    assert model_text.index('data-environment="staging"') < model_text.index('data-environment="production"')
    assert "version 2" in model_text and "version 1" in model_text and "passed (0.93)" in model_text
    # the canary with its chart (traffic and error_rate against its threshold)
    assert "<svg" in model_text and "error_rate" in model_text and "threshold (max)" in model_text

    assert "waiting for approval" not in model_text  # its approval came and its canary started
    waiting = _chromium(f"{auth}/ui/models/{w2.model}", shots / "waiting.png")
    assert "waiting for approval" in waiting and "approval" in waiting.split("waiting for approval", 1)[1]

    front = _chromium(f"{auth}/ui", shots / "index.png")
    assert m in front and w2.model in front and "waiting for approval" in front and "canary" in front

    canary_id = httpx.get(f"{bot.ui_url}/ui/audit.json", params={"model": m}, timeout=10,
                          headers={"Authorization": "Basic " + base64.b64encode(f"x:{TOKEN}".encode()).decode()}).json()
    ids = [r["canary"] for r in canary_id if r.get("canary")]
    assert ids, canary_id
    canary_text = _chromium(f"{auth}/ui/canaries/{ids[0]}", shots / "canary.png")
    assert "advance" in canary_text and "step 1" in canary_text
    audit = _chromium(f"{auth}/ui/audit?model={m}", shots / "audit.png")
    assert "/promote to production" in audit
    csv_text = httpx.get(f"{bot.ui_url}/ui/audit.csv", params={"model": m}, timeout=10,
                         headers={"Authorization": f"Bearer {TOKEN}"}).text
    assert csv_text.startswith("id,recorded_at,") and "/promote to staging" in csv_text
    for png in ("model.png", "waiting.png", "index.png", "canary.png", "audit.png"):
        assert (shots / png).stat().st_size > 10_000
