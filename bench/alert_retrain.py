"""Bot time from Alertmanager's POST to the retrain submission, and 100 repeat notifications → one retrain.

Run: `.venv/bin/python bench/alert_retrain.py [--models N] [--repeats N]` (part of `make bench`).
Issue 14: `mlgate bot serve` (its own process, SQLite store, 2 workers) with the OpenAPI-checked
fake GitHub (the model repository's `.mlgate.yml` with a `retrain` policy, backend argo) and the
swagger-checked fake Argo Server (the shipped WorkflowTemplates). For each of N models, one
Alertmanager version-4 notification (the shape of `shared/specs/alertmanager/example-firing.json`)
is POSTed with its bearer token; the clock runs from the start of the POST to the moment the fake
Argo Server has accepted the workflow's create request (polled every 0.5 ms): intake and commit,
the worker's claim, reading the policy from the default branch, the decision under the model's
lock, the retrain record, and the Argo calls (read the WorkflowTemplate, list by labels, create).
Alertmanager's own `group_wait` is not bot time and is not in it. Then the first notification is
repeated `--repeats` times (Alertmanager's `repeat_interval`): every answer must be `duplicate`
and Argo must still hold one workflow per model.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402
from ruamel.yaml import YAML  # noqa: E402

from tests.conftest import free_port  # noqa: E402
from tests.e2e.bot.conftest import start_bot, stop_bot  # noqa: E402
from tests.fakes.argo_server import FakeArgoServer, SwaggerSpec  # noqa: E402
from tests.fakes.github_server import FakeGitHub  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = Path("/work/shared/specs/alertmanager/example-firing.json")
ARGO_TOKEN = "bench-argo-token"
AM_TOKEN = "bench-alertmanager-token"
GH_TOKEN = "ghp_e2etoken000000000000000000000000"


def payload(model: str, n: int) -> dict:
    p = json.loads(EXAMPLE.read_text())
    a = p["alerts"][0]
    a["labels"]["mlgate_model"] = model
    p["commonLabels"]["mlgate_model"] = p["groupLabels"]["mlgate_model"] = model
    a["fingerprint"] = f"{n:016x}"
    p["groupKey"] = f'{{}}/{{mlgate_model=~".+"}}:{{alertname="ModelDriftHigh", mlgate_model="{model}"}}'
    return p


def policy(model: str, argo_url: str, tracking: str) -> str:
    return f"""model: {model}
tracking_uri: {tracking}
train:
  backend: argo
  argo: {{server: {argo_url}, namespace: ml-train, image: "ghcr.io/acme/train:1.0"}}
environments:
  - name: production
    gitops: {{repository: acme/deploy, path: production/isvc.yaml, mode: pull-request, target: {{kind: kserve}}}}
    retrain:
      alerts: [{{alertname: ModelDriftHigh}}]
      cooldown_hours: 24
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=100)
    args = ap.parse_args()
    tracking = f"http://127.0.0.1:{free_port()}"  # nothing listens: the registry status tag is best effort
    with tempfile.TemporaryDirectory() as tmp, \
            FakeArgoServer(tokens={ARGO_TOKEN: ["ml-train"]}, spec=SwaggerSpec()) as argo:
        for path in sorted((ROOT / "workflows").glob("*.yaml")):
            argo.add_workflow_template(YAML(typ="safe").load(path.read_text()), "ml-train")
        (Path(tmp) / "gh").mkdir()
        gh = FakeGitHub(Path(tmp) / "gh", tokens={GH_TOKEN: "mlgate-bot"}).start()
        models = {f"bench{i}": f"github:acme/bench{i}" for i in range(args.models + 1)}  # bench0: the first after start
        for m in models:
            gh.add_repo(f"acme/{m}", {".mlgate.yml": policy(m, argo.url, tracking)})
        bot = start_bot(Path(tmp) / "bot", gh.url, "http://127.0.0.1:9", tracking,
                        "canary_tick_seconds: 0\ntrain_poll_seconds: 0\nretrain_poll_seconds: 0\n"
                        f"models: {json.dumps(models)}\n",
                        {"ARGO_TOKEN": ARGO_TOKEN, "MLGATE_ALERTMANAGER_TOKEN": AM_TOKEN})
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {AM_TOKEN}",
                   "User-Agent": "Alertmanager/0.25.0"}
        times: list[float] = []
        try:
            with httpx.Client(base_url=bot.url, headers=headers, timeout=10) as client:
                for n, m in enumerate(models):
                    body = json.dumps(payload(m, n + 1)).encode()
                    before = len(argo.created())
                    t0 = time.perf_counter()
                    r = client.post("/webhooks/alertmanager", content=body)
                    assert r.status_code == 202 and r.headers["x-mlgate-status"] == "accepted", r.text
                    while len(argo.created()) == before:
                        if time.perf_counter() - t0 > 30:
                            raise SystemExit(f"no retrain submitted for {m} within 30 s:\n{bot.log.read_text()[-3000:]}")
                        time.sleep(0.0005)
                    times.append(time.perf_counter() - t0)
                first = payload(next(iter(models)), 1)
                statuses = []
                t0 = time.perf_counter()
                for _ in range(args.repeats):
                    rep = copy.deepcopy(first)
                    rep["notification_reason"] = "repeat interval elapsed"
                    statuses.append(client.post("/webhooks/alertmanager", content=json.dumps(rep).encode())
                                    .headers.get("x-mlgate-status"))
                repeat_seconds = time.perf_counter() - t0
            time.sleep(1.0)  # anything a repeat could have started would reach Argo by now
            per_model: dict[str, int] = {}
            for req in argo.created():
                label = req.body["workflow"]["metadata"]["labels"]["mlgate.dev/model"]
                per_model[label] = per_model.get(label, 0) + 1
        finally:
            stop_bot(bot, (ARGO_TOKEN, AM_TOKEN))
            gh.stop()
        assert not argo.rejected, argo.rejected
    cold, ms = times[0] * 1000, sorted(t * 1000 for t in times[1:])
    print(f"alert → retrain submission (bot time, {len(ms)} models): median {statistics.median(ms):.0f} ms, "
          f"max {ms[-1]:.0f} ms (goal < 1000 ms); the first alert after the bot started: {cold:.0f} ms "
          "(imports Hera, the Argo client, once per process)")
    dup = statuses.count("duplicate")
    print(f"{args.repeats} repeat notifications: {dup} answered duplicate in {repeat_seconds * 1000:.0f} ms; "
          f"workflows for {next(iter(models))}: {per_model.get(next(iter(models)), 0)}; "
          f"models with more than one workflow: {sum(1 for v in per_model.values() if v > 1)}")
    ok = ms[-1] < 1000 and dup == args.repeats and all(v == 1 for v in per_model.values()) and len(per_model) == len(times)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
