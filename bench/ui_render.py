"""Server time of the dashboard's model page: a registered model with 5 environments, 1,000 audit
records and a canary with 20 measurements, in the bot's real store (SQLite in a temporary folder).

Run: `.venv/bin/python bench/ui_render.py [--records N] [--rounds N]` (part of `make bench`).
Issue 16's goal: the model page renders in under 100 ms of server time. Registry and
``.mlgate.yml`` reads are cached by the dashboard (``ui_cache_seconds``), so a warm page costs the
store reads, the view building and the template; the first (cold) request also pays the policy
read and the registry reads (here in-process answers: the bench measures mlgate's own time).
Each request goes through the ASGI app in-process (Starlette's test client), so the figure is the
server's time without the network. Also prints the audit CSV export's time for the same records.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient  # noqa: E402

from mlgate.bot.settings import BotSettings  # noqa: E402
from mlgate.bot.ui import create_ui_app  # noqa: E402
from mlgate.bot.ui.sources import StoreSources  # noqa: E402
from mlgate.core import canary as core  # noqa: E402
from mlgate.core import config as cfgmod  # noqa: E402
from mlgate.core.canary import CanarySettings, Observation  # noqa: E402
from mlgate.core.config import Canary  # noqa: E402
from mlgate.edge.db.canaries import CanaryStore  # noqa: E402
from mlgate.edge.db.store import Store  # noqa: E402

ENVS = ["dev", "test", "staging", "canary", "production"]
POLICY = "model: fraud\ntracking_uri: http://mlflow.example:5000\nenvironments:\n" + "".join(
    f"  - name: {e}\n" + (f"    requires: {ENVS[i - 1]}\n" if i else "")
    + f"    gitops: {{repository: 'https://github.com/acme/deploy', path: {e}/isvc.yaml, target: {{kind: kserve}}}}\n"
    for i, e in enumerate(ENVS))


class _Info:
    def __init__(self, version: str):
        self.version = version
        self.tags = {"mlgate.gates": "passed", "mlgate.gate.auc": "passed (0.91)", "mlgate.gate.latency_p95": "passed (41)",
                     f"mlgate.promoted.{ENVS[0]}.commit": "0123456789abcdef"}


class _Registry:
    def get_by_alias(self, model: str, alias: str) -> _Info:
        return _Info(str(ENVS.index(alias) + 1) if alias in ENVS else "1")


class Sources(StoreSources):
    """The bot's own sources on the store (audit records, canaries, failed deliveries); the policy
    and the registry answered in-process (the forge and MLflow are not what is measured)."""

    def __init__(self, store: Store):
        super().__init__(BotSettings(), store)

    def policy(self, forge, repo):
        return cfgmod.parse(POLICY, ".mlgate.yml")

    def registry(self, cfg):
        return _Registry()


def fill(store: Store, records: int) -> None:
    for i in range(records):
        env = ENVS[i % len(ENVS)]
        store.audit({"at": f"2026-12-01T10:{i // 60 % 60:02d}:{i % 60:02d}+00:00", "forge": "github",
                     "repo": "acme/fraud", "pr": i % 40, "actor": "alice", "command": f"/promote to {env}",
                     "model": "fraud", "version": str(i % 9 + 1), "environment": env, "allowed": i % 3 != 0,
                     "reasons": ["0/1 approvals on head commit"] if i % 3 == 0 else [],
                     "outcome": "refused" if i % 3 == 0 else "pushed", "delivery": f"d-{i}"})
    c = Canary.model_validate({"steps": [5, 10, 25, 50, 100], "interval": 60, "target": {"kind": "kserve"},
                               "analysis": {"prometheus": "http://prom:9090", "checks": [
                                   {"name": "error_rate", "query": "e", "max": 0.05},
                                   {"name": "latency_p95", "query": "l", "max": 0.3}]}})
    r = core.new_canary(model="fraud", environment="production", alias="champion", version="9", primary_version="8",
                        settings=CanarySettings(c, "/gitops.git", "main", "p.yaml", "push"),
                        values={"model_uri": "models:/fraud/9", "version": "9"}, primary_values={"version": "8"},
                        now=1_700_000_000.0)
    r = core.step_written(r, commit="ab" * 20, url=None, live=True, now=1_700_000_001.0)
    for k in range(20):
        r, _ = core.measure(r, {"error_rate": Observation(0.01 + k / 2000), "latency_p95": Observation(0.2)},
                            now=1_700_000_010.0 + 60 * k)
    CanaryStore(store.engine).create(replace(r, id=None), actor="bench")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=30)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        store = Store(f"sqlite:///{d}/bot.db")
        fill(store, a.records)
        client = TestClient(create_ui_app(Sources(store), cache_seconds=3600))
        t0 = time.perf_counter()
        first = client.get("/ui/models/fraud")
        cold = time.perf_counter() - t0
        assert first.status_code == 200 and first.text.count('class="env"') == len(ENVS) and "<svg" in first.text
        times, csv_times = [], []
        for _ in range(a.rounds):
            t0 = time.perf_counter()
            r = client.get("/ui/models/fraud")
            times.append(time.perf_counter() - t0)
            assert r.status_code == 200
            t0 = time.perf_counter()
            client.get("/ui/audit.csv", params={"model": "fraud", "limit": a.records})
            csv_times.append(time.perf_counter() - t0)
        med = statistics.median(times)
        p95 = sorted(times)[int(0.95 * (len(times) - 1))]
        print(f"model page, {len(ENVS)} environments, {a.records} audit records, a canary of 20 measurements "
              f"({len(first.content) // 1024} KB of HTML):")
        print(f"  cold (policy and registry read) {cold * 1000:.1f} ms; warm median {med * 1000:.1f} ms, "
              f"p95 {p95 * 1000:.1f} ms over {a.rounds} requests (goal < 100 ms: {'met' if p95 < 0.1 else 'NOT met'})")
        print(f"  audit.csv of {a.records} records: median {statistics.median(csv_times) * 1000:.1f} ms")
        store.close()


if __name__ == "__main__":
    main()
