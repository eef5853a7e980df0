"""From a monitoring alert to a gated retrain and a promotion PR (issue 14), end to end with REAL
Prometheus and Alertmanager processes on loopback:

a gauge this process exports (``model_drift_score``) → Prometheus (scrape and rule evaluation
every second, rule ``model_drift_score > 0.3``) → Alertmanager 0.25 (group_wait 1 s,
group_interval 2 s, repeat_interval 2 s; webhook with ``http_config.authorization``) →
``mlgate bot serve`` → the fake Argo Server (every request checked against Argo's swagger, the
submission against the WorkflowTemplate) or the fake GitHub's ``workflow_dispatch`` (checked
against @octokit/openapi and the workflow file's declared inputs) → the real MLflow server →
a promotion PR on the fake GitHub.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from ruamel.yaml import YAML

from tests.conftest import free_port, stop_process_group, wait_healthy
from tests.e2e.bot.conftest import BOT, BotProcess, eventually, start_bot, stop_bot
from tests.fakes.argo_server import FakeArgoServer, SwaggerSpec

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[3]
ARGO_TOKEN = "argo-alert-token-7c1d"
AM_TOKEN = "am-bearer-token-3f9e2a"
ALERTMANAGER_BIN = shutil.which("prometheus-alertmanager") or "/usr/bin/prometheus-alertmanager"
PROMETHEUS_BIN = shutil.which("prometheus") or "/usr/bin/prometheus"
_n = itertools.count(1)

RULES = """groups:
  - name: mlgate
    interval: 1s
    rules:
      - alert: ModelDriftHigh
        expr: model_drift_score > 0.3
        labels: {severity: warning}
        annotations:
          summary: "Prediction drift is high for model {{ $labels.mlgate_model }} ({{ $labels.mlgate_environment }})"
"""


@pytest.fixture(scope="module")
def argo_server():
    with FakeArgoServer(tokens={ARGO_TOKEN: ["ml-train"]}, spec=SwaggerSpec()) as server:
        for path in sorted((ROOT / "workflows").glob("*.yaml")):
            server.add_workflow_template(YAML(typ="safe").load(path.read_text()), "ml-train")
        yield server


@pytest.fixture(scope="module")
def drift():
    """This module's exporter: ``model_drift_score{mlgate_model, mlgate_environment}``."""
    from prometheus_client import CollectorRegistry, Gauge, start_http_server

    reg = CollectorRegistry()
    gauge = Gauge("model_drift_score", "Drift score", ["mlgate_model", "mlgate_environment"], registry=reg)
    server, thread = start_http_server(free_port(), addr="127.0.0.1", registry=reg)
    gauge.url = f"127.0.0.1:{server.server_port}"  # type: ignore[attr-defined]
    yield gauge
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def alert_bot(fakes, mlflow_server, tmp_path_factory: pytest.TempPathFactory):
    gh, gl = fakes
    work = tmp_path_factory.mktemp("alert-bot")
    models = {**{f"drift{i}": f"github:acme/drift{i}" for i in range(1, 6)}, "gldrift": "gitlab:grp/gldrift",
              "freshdrift": "github:acme/freshdrift"}
    extra = ("canary_tick_seconds: 0\ntrain_poll_seconds: 0\nretrain_poll_seconds: 0.3\n"
             f"models: {json.dumps(models)}\n")
    b = start_bot(work, gh.url, gl.url, mlflow_server, extra,
                  {"ARGO_TOKEN": ARGO_TOKEN, "MLGATE_ALERTMANAGER_TOKEN": AM_TOKEN})
    yield b
    stop_bot(b, (ARGO_TOKEN, AM_TOKEN))


@pytest.fixture(scope="module")
def alerting(alert_bot: BotProcess, drift: Any, tmp_path_factory: pytest.TempPathFactory):
    """Alertmanager posting to the bot, and Prometheus alerting to it; returns (prometheus, alertmanager) URLs."""
    if not Path(ALERTMANAGER_BIN).exists():
        pytest.fail("prometheus-alertmanager is missing: 'make system' (apt-get install prometheus-alertmanager)")
    work = tmp_path_factory.mktemp("alerting")
    am_port, prom_port = free_port(), free_port()
    (work / "alertmanager.yml").write_text(f"""route:
  receiver: mlgate
  group_by: [alertname, mlgate_model]
  group_wait: 1s
  group_interval: 2s
  repeat_interval: 2s
receivers:
  - name: mlgate
    webhook_configs:
      - url: {alert_bot.url}/webhooks/alertmanager
        send_resolved: true
        http_config:
          authorization:
            type: Bearer
            credentials: {AM_TOKEN}
""")
    (work / "rules.yml").write_text(RULES)
    (work / "prometheus.yml").write_text(f"""global: {{scrape_interval: 1s, evaluation_interval: 1s}}
rule_files: [rules.yml]
alerting:
  alertmanagers:
    - static_configs: [{{targets: ['127.0.0.1:{am_port}']}}]
scrape_configs:
  - job_name: drift
    static_configs: [{{targets: ['{drift.url}']}}]
""")
    procs = []
    with open(work / "alertmanager.log", "w") as log:
        procs.append(subprocess.Popen(
            [ALERTMANAGER_BIN, f"--config.file={work / 'alertmanager.yml'}", f"--storage.path={work / 'am'}",
             f"--web.listen-address=127.0.0.1:{am_port}", "--cluster.listen-address=", "--log.level=warn"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=work))
    with open(work / "prometheus.log", "w") as log:
        procs.append(subprocess.Popen(
            [PROMETHEUS_BIN, f"--config.file={work / 'prometheus.yml'}", f"--storage.tsdb.path={work / 'data'}",
             f"--web.listen-address=127.0.0.1:{prom_port}", "--log.level=warn", "--rules.alert.resend-delay=1s"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=work))
    am, prom = f"http://127.0.0.1:{am_port}", f"http://127.0.0.1:{prom_port}"
    try:
        wait_healthy("alertmanager", procs[0].pid, lambda: httpx.get(f"{am}/-/ready", timeout=2).status_code == 200,
                     work / "alertmanager.log", 30)
        wait_healthy("prometheus", procs[1].pid, lambda: httpx.get(f"{prom}/-/ready", timeout=2).status_code == 200,
                     work / "prometheus.log", 30)
        yield prom, am
    finally:
        for p in procs:
            stop_process_group(p)


def mlgate_yml(model: str, deploy: str, tracking: str, argo_url: str, *, backend: str = "argo",
               gate: str = "{metric: accuracy, min: 0.8, max_regression: 0.02}", extra: str = "") -> str:
    be = {"argo": "backend: argo", "github": "backend: github\n      workflow: retrain.yml",
          "gitlab": "backend: gitlab\n      auto_merge: true"}[backend]
    return f"""model: {model}
tracking_uri: {tracking}
train:
  command: python train.py
  backend: argo
  argo: {{server: {argo_url}, namespace: ml-train, image: "ghcr.io/acme/train:1.0", gpus: 1}}
validate:
  gates:
    - {gate}
environments:
  - name: production
    gitops: {{repository: {deploy}, path: production/isvc.yaml, mode: pull-request, target: {{kind: kserve}}}}
    retrain:
      alerts:
        - alertname: ModelDriftHigh
          matchers: ['severity=~"warning|critical"']
      cooldown_hours: 1
      {be}
{extra}"""


WORKFLOW = """name: retrain
on:
  workflow_dispatch:
    inputs:
      mlgate_retrain_id: {description: set by the mlgate bot, required: true}
jobs:
  train:
    runs-on: ubuntu-latest
    steps:
      - run: MLGATE_RETRAIN_ID="${{ inputs.mlgate_retrain_id }}" mlgate train
"""


def make_model(gh: Any, client: Any, tracking: str, argo_url: str, backend: str = "argo") -> dict[str, Any]:
    from tests.e2e.bot.conftest import ISVC

    n = next(_n)
    model, repo, deploy = f"drift{n}", f"acme/drift{n}", f"acme/drift{n}-deploy"
    gh.add_repo(deploy, {"production/isvc.yaml": ISVC.format(name=model)})
    files = {".mlgate.yml": mlgate_yml(model, deploy, tracking, argo_url, backend=backend), "train.py": "x = 1\n"}
    if backend == "github":
        files[".github/workflows/retrain.yml"] = WORKFLOW
    gh.add_repo(repo, files)
    gh.set_permission(deploy, BOT, "write")
    client.create_registered_model(model)
    champion = register(client, model, accuracy=0.90)
    client.set_registered_model_alias(model, "champion", champion)
    return {"model": model, "repo": repo, "deploy": deploy}


def register(client: Any, model: str, *, accuracy: float, retrain: str | None = None) -> str:
    """A version as `mlgate train` registers it (a run with its metric; the retrain tag from MLGATE_RETRAIN_ID)."""
    exp = client.get_experiment_by_name(model) or None
    exp_id = exp.experiment_id if exp else client.create_experiment(model)
    tags = {"mlgate.retrain_id": retrain} if retrain else {}
    run = client.create_run(exp_id, tags=tags)
    client.log_metric(run.info.run_id, "accuracy", accuracy)
    client.set_terminated(run.info.run_id)
    mv = client.create_model_version(model, source=f"s3://models/{model}/{run.info.run_id[:8]}",
                                     run_id=run.info.run_id, tags=tags)
    return str(mv.version)


def workflows_of(argo: FakeArgoServer, model: str) -> list[Any]:
    return [r for r in argo.created() if r.body["workflow"]["metadata"]["labels"].get("mlgate.dev/model") == model]


def records(bot: BotProcess, model: str, event: str | None = None) -> list[dict[str, Any]]:
    return [a for a in bot.audit() if a.get("model") == model and (event is None or a.get("event") == event)]


def alert_deliveries(bot: BotProcess) -> list[Any]:
    s = bot.store()
    try:
        return [d for d in s.list_deliveries(limit=1000) if d.forge == "alertmanager"]
    finally:
        s.close()


def test_drift_alert_retrains_once_gates_and_opens_a_promotion_pr_with_the_alert(
        fakes, alert_bot, alerting, drift, argo_server, mlflow_client, mlflow_server):
    gh, _ = fakes
    errors = len(gh.errors)
    w = make_model(gh, mlflow_client, mlflow_server, argo_server.url)
    model = w["model"]
    drift.labels(mlgate_model=model, mlgate_environment="production").set(0.55)
    # the gauge crosses the threshold: exactly one retrain is submitted
    [req] = eventually("one retrain workflow", lambda: workflows_of(argo_server, model), alert_bot, timeout=60)
    p = {x["name"]: x.get("value") for x in req.body["workflow"]["spec"]["arguments"]["parameters"]}
    head = gh.repos[w["repo"]].git.branch("main")
    rid = p["retrain-id"]
    assert rid.startswith("rt-") and p["commit"] == head and p["model"] == model
    assert req.body["workflow"]["metadata"]["labels"]["mlgate.dev/retrain"] == rid
    # Alertmanager repeats the notification every 2 s: still one retrain, one stored delivery
    eventually("a repeat notification", lambda: "repeat notification" in alert_bot.log.read_text(), alert_bot, 30)
    time.sleep(3)
    assert len(workflows_of(argo_server, model)) == 1
    assert len(records(alert_bot, model, "retrain submitted")) == 1
    # the alert resolves before the retrain finished: noted, the retrain goes on
    drift.labels(mlgate_model=model, mlgate_environment="production").set(0.1)
    eventually("resolved noted", lambda: records(alert_bot, model, "alert resolved"), alert_bot, 60)
    # the workflow registers a better version and succeeds: gates pass, one promotion PR
    version = register(mlflow_client, model, accuracy=0.93, retrain=rid)
    argo_server.advance(req.body["workflow"]["metadata"]["name"], "Succeeded", namespace="ml-train")
    [pr] = eventually("promotion PR", lambda: gh.pulls(w["deploy"]), alert_bot, 60)
    body = pr.body
    assert f"version {version}" in body and "ModelDriftHigh" in body and "Prediction drift is high" in body
    assert "[source](http://" in body and "mlgate_model=" in body and "before the retrain finished" in body
    assert "| accuracy | 0.9 |" in body  # the champion's metrics
    [done] = eventually("promotion recorded", lambda: records(alert_bot, model, "retrain promoted"), alert_bot, 30)
    assert done["retrain"] == rid and "promotion PR" in done["outcome"] and "waits for approval" in done["outcome"]
    tags = mlflow_client.get_model_version(model, version).tags
    assert tags["mlgate.gates"] == "passed" and tags["mlgate.retrain_id"] == rid
    status = json.loads(mlflow_client.get_registered_model(model).tags["mlgate.retrain.production"])
    assert status["retrain"] == rid and status["state"].startswith("promoted") and status["alert"] == "ModelDriftHigh"
    # a second firing inside the cooldown starts nothing, and says why
    drift.labels(mlgate_model=model, mlgate_environment="production").set(0.7)
    cooldown = eventually("cooldown recorded", lambda: [a for a in records(alert_bot, model, "alert")
                                                      if a["outcome"] == "cooldown"], alert_bot, 60)
    assert rid in cooldown[0]["reasons"][0] and len(workflows_of(argo_server, model)) == 1
    drift.labels(mlgate_model=model, mlgate_environment="production").set(0)
    def outcomes() -> str:
        return " ".join(d.outcome or "" for d in alert_deliveries(alert_bot))

    eventually("cooldown in the delivery's outcome", lambda: "cooldown" in outcomes(), alert_bot, 30)
    assert f"retrain {rid} started" in outcomes() and "promotion PR" in outcomes()
    assert gh.errors[errors:] == []
    argo_server.assert_valid()


def test_a_retrained_version_that_fails_its_gates_opens_no_pr(
        fakes, alert_bot, alerting, drift, argo_server, mlflow_client, mlflow_server, tmp_path):
    gh, _ = fakes
    errors = len(gh.errors)
    w = make_model(gh, mlflow_client, mlflow_server, argo_server.url, backend="github")
    model = w["model"]
    drift.labels(mlgate_model=model, mlgate_environment="production").set(0.9)
    runs = eventually("one workflow_dispatch", lambda: [(i, r) for i, r in gh.workflow_runs.items()
                                                        if r["repo"] == w["repo"]], alert_bot, 60)
    [(run_id, run)] = runs
    rid = run["inputs"]["mlgate_retrain_id"]
    assert run["workflow"] == "retrain.yml" and run["ref"] == "main"
    register(mlflow_client, model, accuracy=0.71, retrain=rid)
    gh.finish_run(run_id, "success")
    [failed] = eventually("gates failed", lambda: records(alert_bot, model, "retrain gates failed"), alert_bot, 60)
    assert failed["allowed"] is False and "accuracy" in failed["outcome"]
    assert gh.pulls(w["deploy"]) == []
    outcomes = eventually("the delivery's outcome", lambda: " ".join(
        d.outcome or "" for d in alert_deliveries(alert_bot) if rid in (d.outcome or "") and "failed its gates" in d.outcome),
        alert_bot, 30)
    assert f"retrain {rid}: version" in outcomes
    # mlgate status: per environment, the last alert, the retrain it started and where it stands
    cfg = tmp_path / ".mlgate.yml"
    cfg.write_text(gh.repos[w["repo"]].git.read(gh.repos[w["repo"]].git.branch("main"), ".mlgate.yml").decode())
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    out = subprocess.run([str(Path(sys.executable).parent / "mlgate"), "status", "-c", str(cfg)],
                         capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "production: last alert ModelDriftHigh" in out.stdout and f"retrain {rid}: gates_failed" in out.stdout
    drift.labels(mlgate_model=model, mlgate_environment="production").set(0)
    assert gh.errors[errors:] == []


def test_a_failed_ci_run_is_recorded(fakes, alert_bot, alerting, drift, argo_server, mlflow_client, mlflow_server):
    gh, _ = fakes
    w = make_model(gh, mlflow_client, mlflow_server, argo_server.url, backend="github")
    model = w["model"]
    drift.labels(mlgate_model=model, mlgate_environment="production").set(0.9)
    [(run_id, _)] = eventually("dispatch", lambda: [(i, r) for i, r in gh.workflow_runs.items()
                                                   if r["repo"] == w["repo"]], alert_bot, 60)
    # another alert of the same model while its retrain runs: recorded in flight, nothing started
    other = json.loads(Path("/work/shared/specs/alertmanager/example-firing.json").read_text())
    other["alerts"][0]["labels"]["mlgate_model"] = model
    other["alerts"][0]["fingerprint"] = "00000000000000f1"
    r = httpx.post(f"{alert_bot.url}/webhooks/alertmanager", json=other, timeout=10,
                   headers={"Authorization": f"Bearer {AM_TOKEN}"})
    assert r.status_code == 202 and r.headers["x-mlgate-status"] == "accepted"
    [info] = alert_bot.wait(r.headers["x-mlgate-delivery"])
    assert "in flight" in info.outcome, info
    assert [a["outcome"] for a in records(alert_bot, model, "alert")] == ["in_flight"]
    assert len([x for x in gh.workflow_runs.values() if x["repo"] == w["repo"]]) == 1
    gh.finish_run(run_id, "failure")
    [failed] = eventually("retrain failed", lambda: records(alert_bot, model, "retrain failed"), alert_bot, 60)
    assert "failure" in failed["outcome"] and gh.pulls(w["deploy"]) == []
    drift.labels(mlgate_model=model, mlgate_environment="production").set(0)


def test_a_wrong_or_missing_token_is_refused_and_nothing_is_stored(alert_bot):
    body = (Path("/work/shared/specs/alertmanager/example-firing.json")).read_bytes()
    before = len(alert_deliveries(alert_bot))
    for headers in ({}, {"Authorization": "Bearer not-the-token"}, {"Authorization": f"Basic {AM_TOKEN}"}):
        r = httpx.post(f"{alert_bot.url}/webhooks/alertmanager", content=body, timeout=10,
                       headers={"Content-Type": "application/json", **headers})
        assert r.status_code == 401 and AM_TOKEN not in r.text
    assert len(alert_deliveries(alert_bot)) == before
    ok = httpx.post(f"{alert_bot.url}/webhooks/alertmanager", content=body, timeout=10,
                    headers={"Content-Type": "application/json", "Authorization": f"Bearer {AM_TOKEN}"})
    assert ok.status_code == 202 and ok.headers["x-mlgate-status"] in ("accepted", "duplicate")
    again = httpx.post(f"{alert_bot.url}/webhooks/alertmanager", content=body, timeout=10,
                       headers={"Content-Type": "application/json", "Authorization": f"Bearer {AM_TOKEN}"})
    assert again.headers["x-mlgate-status"] == "duplicate"


def test_gitlab_pipeline_retrain_with_auto_merge_merges_the_promotion_mr(
        fakes, alert_bot, alerting, drift, argo_server, mlflow_client, mlflow_server):
    from tests.e2e.bot.conftest import ISVC

    _, gl = fakes
    errors = len(gl.errors)
    model, repo, deploy = "gldrift", "grp/gldrift", "grp/gldrift-deploy"
    gl.add_project(deploy, {"production/isvc.yaml": ISVC.format(name=model)})
    gl.add_project(repo, {".mlgate.yml": mlgate_yml(model, deploy, mlflow_server, argo_server.url, backend="gitlab"),
                          ".gitlab-ci.yml": "retrain:\n  script: [mlgate train]\n"})
    mlflow_client.create_registered_model(model)
    mlflow_client.set_registered_model_alias(model, "champion", register(mlflow_client, model, accuracy=0.90))
    drift.labels(mlgate_model=model, mlgate_environment="production").set(0.8)
    [(pid, run)] = eventually("one pipeline", lambda: [(i, r) for i, r in gl.pipelines.items() if r["project"] == repo],
                              alert_bot, 60)
    rid = run["variables"]["MLGATE_RETRAIN_ID"]
    assert rid.startswith("rt-") and run["ref"] == "main"
    version = register(mlflow_client, model, accuracy=0.95, retrain=rid)
    gl.finish_pipeline(pid, "success")
    [done] = eventually("promoted", lambda: records(alert_bot, model, "retrain promoted"), alert_bot, 60)
    assert "merged (auto_merge)" in done["outcome"]
    [mr] = gl.projects[deploy].mrs.values()
    assert mr.state == "merged" and f"version {version}" in mr.description and "ModelDriftHigh" in mr.description
    drift.labels(mlgate_model=model, mlgate_environment="production").set(0)
    assert gl.errors[errors:] == []


def _log_sklearn(mlflow_server: str, model: str, estimator: Any, retrain: str | None = None) -> str:
    """Log ``estimator`` as a model in a run and register it (as `mlgate train` would); returns the version."""
    import mlflow

    mlflow.set_tracking_uri(mlflow_server)
    mlflow.set_registry_uri(mlflow_server)
    exp = mlflow.set_experiment(model)
    tags = {"mlgate.retrain_id": retrain} if retrain else {}
    with mlflow.start_run(experiment_id=exp.experiment_id, tags=tags):
        info = mlflow.sklearn.log_model(estimator, name="model")
    return str(mlflow.register_model(info.model_uri, model, tags=tags).version)


def test_a_fresher_dataset_in_the_policy_gates_candidate_and_champion_scored_afresh(
        fakes, alert_bot, alerting, drift, argo_server, mlflow_client, mlflow_server, tmp_path):
    import pandas as pd
    from sklearn.dummy import DummyClassifier
    from sklearn.linear_model import LogisticRegression

    from tests.e2e.bot.conftest import ISVC

    gh, _ = fakes
    model, repo, deploy = "freshdrift", "acme/freshdrift", "acme/freshdrift-deploy"
    fresh = pd.DataFrame({"x": [i / 40 for i in range(40)]})
    fresh["target"] = (fresh["x"] > 0.5).astype(int)
    fresh.to_csv(tmp_path / "fresh.csv", index=False)
    X, y = fresh[["x"]], fresh["target"]
    gh.add_repo(deploy, {"production/isvc.yaml": ISVC.format(name=model)})
    gh.add_repo(repo, {".mlgate.yml": mlgate_yml(model, deploy, mlflow_server, argo_server.url, backend="github",
                                                 gate="{metric: accuracy_score, min: 0.9, max_regression: 0.02}",
                                                 extra=f"      evaluation_data: {tmp_path / 'fresh.csv'}\n"
                                                       "      auto_merge: true\n"),
                       ".github/workflows/retrain.yml": WORKFLOW})
    gh.set_permission(deploy, BOT, "write")
    champion = _log_sklearn(mlflow_server, model, DummyClassifier(strategy="constant", constant=0).fit(X, y))
    mlflow_client.set_registered_model_alias(model, "champion", champion)
    drift.labels(mlgate_model=model, mlgate_environment="production").set(0.9)
    [(run_id, run)] = eventually("dispatch", lambda: [(i, r) for i, r in gh.workflow_runs.items()
                                                     if r["repo"] == repo], alert_bot, 60)
    rid = run["inputs"]["mlgate_retrain_id"]
    version = _log_sklearn(mlflow_server, model, LogisticRegression(C=1000.0).fit(X, y), retrain=rid)
    gh.finish_run(run_id, "success")
    [pr] = eventually("promotion PR", lambda: gh.pulls(deploy), alert_bot, 120)
    # scored afresh: the runs logged no accuracy_score, so logged metrics could not have passed
    assert f"version {version}" in pr.body and "accuracy_score" in pr.body and str(tmp_path / "fresh.csv") in pr.body
    assert "| accuracy_score | 0.5" in pr.body  # the champion's score on the fresher data
    tags = mlflow_client.get_model_version(model, version).tags
    assert tags["mlgate.gates"] == "passed" and tags["mlgate.gates.source"] == "evaluation"
    # auto_merge: the bot merged its promotion PR (PUT .../pulls/{n}/merge, checked against the OpenAPI)
    [done] = eventually("promoted", lambda: records(alert_bot, model, "retrain promoted"), alert_bot, 30)
    assert "merged (auto_merge)" in done["outcome"] and pr.merged
    drift.labels(mlgate_model=model, mlgate_environment="production").set(0)
