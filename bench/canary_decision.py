"""mlgate time from the end of a canary's analysis interval to the decision and the commit.

Run: `.venv/bin/python bench/canary_decision.py [--steps N] [--rounds N]` (part of `make bench`).
Issue 15: a canary of N steps (push mode) on a real bare git repository, measured by a real
Prometheus (the `prometheus` binary, scraping a prometheus-client exporter on loopback), its record
in the bot's canary store (SQLite). The clock is handed in, so each tick runs exactly at the end of
the interval (`next_due_at`): the timer runs from the start of `mlgate.flows.canary.tick` to its
return, which covers reading the record, the Prometheus queries (two checks, three queries), the
decision (`core.measure`), storing the measurement and the transitions, planning the manifest edit
and the git clone/commit/push of the next step, and the report. Prometheus's own answer time and
git's are reported as shares of it. A last round measures a failing version: decision → rollback
commit. The registry is an in-memory stand-in (no registry call is on an advancing step's path).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402

from mlgate.core.config import parse  # noqa: E402
from mlgate.edge.db.canaries import CanaryStore  # noqa: E402
from mlgate.edge.git import PushWriter  # noqa: E402
from mlgate.edge.prometheus import Prometheus  # noqa: E402
from mlgate.flows import canary as runner  # noqa: E402
from tests.conftest import free_port, git  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"


@dataclass
class Version:
    model: str
    version: str
    run_id: str | None = None
    status: str = "READY"
    tags: dict = field(default_factory=dict)
    aliases: tuple = ()
    source: str = ""
    storage_uri: str = ""
    model_uri: str = ""


class Registry:
    """In memory: v1 holds champion, v2 passed its gates."""

    def __init__(self, model: str):
        self.v = {n: Version(model, n, source=f"s3://models/{model}/{n}", storage_uri=f"s3://models/{model}/{n}",
                             model_uri=f"models:/{model}/{n}", tags={"mlgate.gates": "passed"}) for n in ("1", "2")}
        self.alias = {"champion": "1"}

    def get_version(self, model, version):
        return self.v[str(version)]

    def get_by_alias(self, model, alias):
        return self.v.get(self.alias.get(alias, ""))

    def set_alias(self, model, alias, version):
        self.alias[alias] = str(version)

    def set_tags(self, model, version, tags):
        self.v[str(version)].tags.update(tags)

    def find_by_commit(self, model, sha):
        return None


class Clock:
    def __init__(self):
        self.t = time.time()

    def __call__(self) -> datetime:
        return datetime.fromtimestamp(self.t, UTC)


class Timed:
    """Wraps a collaborator and adds the seconds spent in its calls to ``spent``."""

    def __init__(self, inner, spent: list[float]):
        self.inner, self.spent = inner, spent

    def __getattr__(self, name):
        fn = getattr(self.inner, name)

        def call(*a, **kw):
            t0 = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                self.spent.append(time.perf_counter() - t0)

        return call


def start_prometheus(work: Path, ratio: dict[str, float]) -> tuple[str, subprocess.Popen, object]:
    from prometheus_client import CollectorRegistry, Gauge, start_http_server

    reg = CollectorRegistry()
    requests = Gauge("model_requests", "requests", ["model", "version"], registry=reg)
    errors = Gauge("model_error_ratio", "errors per request", ["model", "version"], registry=reg)
    for v, r in ratio.items():
        requests.labels(model="bench", version=v).set(1000)
        errors.labels(model="bench", version=v).set(r)
    server, _thread = start_http_server(free_port(), addr="127.0.0.1", registry=reg)
    (work / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s}\nscrape_configs:\n  - job_name: exporter\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{server.server_port}']\n")
    port = free_port()
    proc = subprocess.Popen([PROMETHEUS, f"--config.file={work / 'prometheus.yml'}", f"--storage.tsdb.path={work / 'd'}",
                             f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=work)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            r = httpx.post(f"{url}/api/v1/query", data={"query": 'sum(model_requests{model="bench"})'}, timeout=2)
            if r.status_code == 200 and r.json()["data"]["result"]:
                return url, proc, (errors, server)
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("prometheus did not start")


def config(repo: Path, prom: str, steps: list[int]) -> str:
    return f"""model: bench
environments:
  - name: production
    gitops: {{repository: {repo}, path: prod/isvc.yaml, mode: push, target: {{kind: kserve, name: fraud-model}}}}
    canary:
      steps: {steps}
      interval: 30
      analysis:
        prometheus: {prom}
        timeout: 2
        checks:
          - name: error_rate
            query: 'max(model_error_ratio{{model="{{model}}",version="{{version}}"}})'
            max: 0.05
            samples_query: 'sum(model_requests{{model="{{model}}",version="{{version}}"}})'
            min_samples: 100
          - name: error_ratio_vs_primary
            query: 'max(model_error_ratio{{model="{{model}}",version="{{version}}"}})'
            primary_query: 'max(model_error_ratio{{model="{{model}}",version="{{version}}"}})'
            max_ratio: 2
      target: {{kind: kserve, name: fraud-model}}
"""


def one_canary(tmp: Path, prom: str, steps: list[int]) -> tuple[list[float], list[float], list[float], list[str]]:
    bare = tmp / "gitops.git"
    git("init", "--quiet", "--bare", "-b", "main", str(bare))
    seed = tmp / "seed"
    (seed / "prod").mkdir(parents=True)
    (seed / "prod" / "isvc.yaml").write_text(
        (ROOT / "tests" / "fixtures" / "canary" / "kserve-serverless.yaml").read_text().replace("MODEL", "bench"))
    git("init", "--quiet", "-b", "main", cwd=seed)
    git("add", "-A", cwd=seed)
    git("commit", "--quiet", "-m", "seed", cwd=seed)
    git("push", "--quiet", str(bare), "main", cwd=seed)
    store = CanaryStore(f"sqlite:///{tmp / 'bot.db'}")
    reg, clock = Registry("bench"), Clock()
    prom_spent: list[float] = []
    git_spent: list[float] = []
    writer = Timed(PushWriter(), git_spent)
    cfg = parse(config(bare, prom, steps))
    rec = runner.start_canary(store, reg, writer, clock, config=cfg, environment="production", version="2",
                              base_dir=tmp).canary
    totals, proms, gits, actions = [], [], [], []
    while True:
        rec = store.get(rec.id)
        if not rec.active or rec.next_due_at is None:
            break
        clock.t = rec.next_due_at  # the end of the analysis interval
        prom_spent.clear()
        git_spent.clear()
        t0 = time.perf_counter()
        res = runner.tick(store, reg, writer, clock, canary_id=rec.id,
                          prometheus=lambda a: Timed(Prometheus(a.prometheus, timeout=a.timeout), prom_spent))
        totals.append(time.perf_counter() - t0)
        proms.append(sum(prom_spent))
        gits.append(sum(git_spent))
        actions.append(res[0].action)
    store.close()
    return totals, proms, gits, actions


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=10, help="canary steps per rollout")
    ap.add_argument("--rounds", type=int, default=3, help="rollouts")
    args = ap.parse_args()
    steps = [round(100 * (i + 1) / args.steps) for i in range(args.steps)]
    with tempfile.TemporaryDirectory(prefix="mlgate-bench-canary-") as d:
        work = Path(d)
        prom, proc, (errors, server) = start_prometheus(work, {"1": 0.01, "2": 0.01})
        try:
            totals, proms, gits = [], [], []
            for r in range(args.rounds):
                t, p, g, actions = one_canary(work / f"r{r}", prom, steps)
                assert actions[-1] == "promoted" and actions.count("advanced") == args.steps - 2, actions
                totals += t
                proms += p
                gits += g
            errors.labels(model="bench", version="2").set(0.5)  # a failing version: decision → rollback commit
            time.sleep(2.5)
            t, p, g, actions = one_canary(work / "failing", prom, steps)
            assert actions == ["rolled_back"], actions
        finally:
            proc.terminate()
            proc.wait(timeout=10)
            server.shutdown()
    ms = [x * 1000 for x in totals]
    print(f"canary decision → commit, {len(ms)} measurements that advanced or promoted ({args.rounds} rollouts of "
          f"{args.steps} steps, push mode):")
    print(f"  median {statistics.median(ms):.0f} ms, p95 {sorted(ms)[int(0.95 * (len(ms) - 1))]:.0f} ms, "
          f"max {max(ms):.0f} ms (goal < 1000 ms)")
    print(f"  of which Prometheus answering: median {statistics.median(proms) * 1000:.0f} ms; "
          f"git clone/commit/push: median {statistics.median(gits) * 1000:.0f} ms")
    print(f"  failing version, decision → rollback commit: {t[0] * 1000:.0f} ms "
          f"(Prometheus {p[0] * 1000:.0f} ms, git {g[0] * 1000:.0f} ms)")
    if max(ms) >= 1000 or t[0] >= 1.0:
        raise SystemExit("over the 1 s goal")


if __name__ == "__main__":
    main()
