"""Canary rollouts end to end: a real Prometheus scraping an exporter the test controls, a real
MLflow server, real git (a bare GitOps repository), the bot's database on a SQLite file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mlgate.flows import canary as runner
from mlgate.edge.db.canaries import CanaryStore
from mlgate.core.config import parse
from mlgate.core.errors import InfraError, ManifestError, Refused
from mlgate.core.promotion import Change, WriteResult
from mlgate.edge.git import PushWriter
from tests.flows.conftest import (
    FIXTURES, clock, drive, file_at, history, register_versions, seed_repo, swaps, wait_for_value,
)
from tests.conftest import free_port

pytestmark = pytest.mark.slow

KSERVE_TARGET = "{kind: kserve, name: fraud-model}"
HELM_TARGET = ("{kind: weighted, canary_weight: canary.weight, primary_weight: primary.weight, "
               "canary_value: canary.modelUri, primary_value: primary.modelUri}")


def config_text(model: str, repo: Path, prometheus: str, *, path: str = "prod/isvc.yaml", target: str = KSERVE_TARGET,
                steps: str = "[10, 50, 100]", interval: float = 1, failure_limit: int = 1, min_samples: int = 100,
                mode: str = "push", error_check: str = "max: 0.05", analysis: str = "", canary: str = "") -> str:
    return f"""\
model: {model}
environments:
  - name: production
    gitops:
      repository: {repo}
      path: {path}
      mode: {mode}
      target: {{kind: kserve, name: fraud-model}}
    canary:
      steps: {steps}
      interval: {interval}{canary}
      analysis:
        prometheus: {prometheus}
        timeout: 2{analysis}
        checks:
          - name: error_rate
            query: 'max(model_error_ratio{{model="{{model}}",version="{{version}}"}})'
            {error_check}
            samples_query: 'sum(model_requests{{model="{{model}}",version="{{version}}"}})'
            min_samples: {min_samples}
            failure_limit: {failure_limit}
          - name: latency
            query: 'max(model_latency_seconds{{model="{{model}}",version="{{version}}"}})'
            primary_query: 'max(model_latency_seconds{{model="{{model}}",version="{{version}}"}})'
            max_ratio: 1.5
      target: {target}
"""


def kserve_files(model: str) -> dict[str, str]:
    return {"prod/isvc.yaml": (FIXTURES / "kserve-serverless.yaml").read_text().replace("MODEL", model)}


def helm_files(model: str) -> dict[str, str]:
    return {"prod/values.yaml": (FIXTURES / "helm-values.yaml").read_text().replace("MODEL", model)}


class Setup:
    """One canary scenario: a model with v1 (champion) and v2 (gates passed), its GitOps repo, config, store."""

    def __init__(self, tmp: Path, registry: Any, model: str, prometheus: str, files: dict[str, str], **cfg: Any):
        register_versions(registry, model)
        self.tmp, self.registry, self.model = tmp, registry, model
        self.repo = seed_repo(tmp, files)
        self.config = parse(config_text(model, self.repo, prometheus, **cfg))
        self.db = f"sqlite:///{tmp / 'bot.db'}"
        self.store = CanaryStore(self.db)
        self.writer: Any = PushWriter()
        self.posted: list[str] = []

    def notify(self, record: Any, body: str) -> None:
        self.posted.append(body)

    def start(self, version: str = "2", **kw: Any) -> runner.TickResult:
        return runner.start_canary(self.store, self.registry, self.writer, clock, config=self.config,
                                   environment="production", version=version, base_dir=self.tmp,
                                   actor="alice", notify=self.notify, **kw)

    def tick(self, **kw: Any) -> list[runner.TickResult]:
        return runner.tick(self.store, self.registry, self.writer, clock, notify=self.notify, **kw)

    def record(self, canary_id: int) -> Any:
        return self.store.get(canary_id)

    def restart(self) -> None:
        """A new process: new store, registry client and writer objects on the same database file."""
        from mlgate.edge.registry import Registry

        self.store.close()
        self.store = CanaryStore(self.db)
        self.registry = Registry(self.registry.tracking_uri)
        self.writer = PushWriter()


def test_healthy_canary_advances_through_every_step_and_takes_champion(tmp_path, registry, model_name, prometheus,
                                                                       exporter):
    m = model_name
    exporter.serve(m, "2", requests=500, error_ratio=0.01, latency=0.10)
    exporter.serve(m, "1", requests=5000, error_ratio=0.01, latency=0.09)
    wait_for_value(prometheus, f'sum(model_requests{{model="{m}",version="2"}})', 500)
    s = Setup(tmp_path, registry, m, prometheus, kserve_files(m))
    seed_text = file_at(s.repo, "main", "prod/isvc.yaml")

    started = s.start()
    cid = started.canary.id
    assert started.action == "started" and started.canary.status == "observing" and started.canary.current.live_at
    drive(s.tick, lambda: s.record(cid).status == "promoted")

    rec = s.record(cid)
    assert [m_.action for m_ in rec.measurements] == ["advance", "advance"]
    first = rec.measurements[0].results
    assert first[0].value == pytest.approx(0.01) and first[0].samples == 500
    assert first[1].value == pytest.approx(0.10) and first[1].primary == pytest.approx(0.09)
    # the registry: v2 is the champion, tagged with the outcome and the commit of the 100 % step
    champ = s.registry.get_by_alias(m, "champion")
    assert champ.version == "2"
    assert champ.tags["mlgate.canary"] == "promoted" and "v2 serves 100 % of production" in champ.tags["mlgate.canary.reason"]
    # the GitOps history: one commit per step, each touching only the intended lines
    log = history(s.repo)
    assert [subject for _, subject in log] == [
        "seed",
        f"canary: {m} v2 at 10 % in production (step 1/3)",
        f"canary: {m} v2 at 50 % in production (step 2/3)",
        f"canary: {m} v2 at 100 % in production (step 3/3)",
    ]
    texts = [file_at(s.repo, sha, "prod/isvc.yaml") for sha, _ in log]
    assert texts[0] == seed_text
    first_step = texts[1].splitlines()
    assert [ln for ln in first_step if ln not in seed_text.splitlines()] == [
        f'      storageUri: "s3://models/{m}/2"', "    canaryTrafficPercent: 10"]
    assert len(first_step) == len(seed_text.splitlines()) + 1
    assert swaps(texts[1], texts[2]) == [("    canaryTrafficPercent: 10", "    canaryTrafficPercent: 50")]
    assert swaps(texts[2], texts[3]) == [("    canaryTrafficPercent: 50", "    canaryTrafficPercent: 100")]
    assert champ.tags["mlgate.promoted.production.commit"] == log[-1][0]
    # every transition is audited; the report was posted and updated, with a chart per check
    actions = [t.action for t in s.store.transitions(cid)]
    assert actions == ["start", "write", "measure:advance", "advance", "write", "measure:advance", "advance",
                       "write", "promote"]
    final = s.posted[-1]
    assert final.startswith(f"<!-- mlgate-canary id={cid} ") and "**promoted**" in final
    assert final.count("```mermaid") == 3 and "| 3 | 100 % |" in final  # traffic per step, one per check
    assert "#### Measurements per step" in final and "| 2 (50 %) | error_rate | 0.01 | ≤ 0.05, 100 samples |" in final


def test_unhealthy_canary_is_rolled_back_after_failure_limit_with_the_reason(tmp_path, registry, model_name,
                                                                           prometheus, exporter):
    m = model_name
    exporter.serve(m, "2", requests=800, error_ratio=0.2)
    exporter.serve(m, "1", requests=8000, error_ratio=0.01)
    wait_for_value(prometheus, f'max(model_error_ratio{{model="{m}",version="2"}})', 0.2)
    s = Setup(tmp_path, registry, m, prometheus, helm_files(m), path="prod/values.yaml", target=HELM_TARGET)
    seed_text = file_at(s.repo, "main", "prod/values.yaml")

    cid = s.start().canary.id
    drive(s.tick, lambda: s.record(cid).status == "rolled_back")

    rec = s.record(cid)
    assert [m_.action for m_ in rec.measurements] == ["retry", "rollback"]
    assert "error_rate: 0.2 > max 0.05 (2 failed measurements in this step; failure_limit 1)" in rec.reason
    assert rec.steps_log[0].outcome == "rolled back" and rec.rollback.live_at is not None
    v2 = s.registry.get_version(m, "2")
    assert v2.tags["mlgate.canary"] == "rolled_back" and "error_rate: 0.2 > max 0.05" in v2.tags["mlgate.canary.reason"]
    assert s.registry.get_by_alias(m, "champion").version == "1"
    log = history(s.repo)
    assert [subject for _, subject in log] == ["seed", f"canary: {m} v2 at 10 % in production (step 1/3)",
                                              f"canary: roll back {m} v2 in production"]
    texts = [file_at(s.repo, sha, "prod/values.yaml") for sha, _ in log]
    assert swaps(texts[0], texts[1]) == [
        ("  weight: 100", "  weight: 90"),
        ('  modelUri: ""          # empty: no canary deployed', f'  modelUri: "s3://models/{m}/2"          # empty: no canary deployed'),
        ("  weight: 0", "  weight: 10")]
    # traffic back on the primary, and the canary slot no longer runs the canary's model
    assert swaps(texts[0], texts[2]) == [
        ('  modelUri: ""          # empty: no canary deployed', f'  modelUri: "s3://models/{m}/1"          # empty: no canary deployed')]
    assert "**rolled back**" in s.posted[-1] and "| rollback | 0 % |" in s.posted[-1]


def test_too_few_samples_waits_and_a_restart_resumes_without_repeating_a_step(tmp_path, registry, model_name,
                                                                           prometheus, exporter):
    m = model_name
    exporter.serve(m, "2", requests=5, error_ratio=0.0)  # 5 requests < min_samples 100
    exporter.serve(m, "1", requests=5000, error_ratio=0.0)
    wait_for_value(prometheus, f'sum(model_requests{{model="{m}",version="2"}})', 5)
    s = Setup(tmp_path, registry, m, prometheus, kserve_files(m))
    cid = s.start().canary.id
    drive(s.tick, lambda: len(s.record(cid).measurements) >= 2)
    rec = s.record(cid)
    assert {m_.action for m_ in rec.measurements} == {"wait"}
    assert "error_rate: 5 samples < min_samples 100" in rec.reason and rec.step == 0
    assert len(history(s.repo)) == 2  # seed + step 1, nothing more

    # the bot restarts in the middle of step 1; meanwhile traffic grows
    s.restart()
    exporter.serve(m, "2", requests=400, error_ratio=0.0)
    wait_for_value(prometheus, f'sum(model_requests{{model="{m}",version="2"}})', 400)
    drive(s.tick, lambda: s.record(cid).step == 1 and s.record(cid).status == "observing")
    rec = s.record(cid)
    assert [m_.action for m_ in rec.measurements][-1] == "advance" and rec.measurements[0].action == "wait"
    assert len(history(s.repo)) == 3

    # the process dies right after pushing step 3, before recording it
    class Killed(BaseException):
        pass

    class DiesAfterPush:
        def __init__(self, inner):
            self.inner = inner

        def write(self, change: Change) -> WriteResult:
            self.inner.write(change)
            raise Killed("killed after the push")

    s.writer = DiesAfterPush(PushWriter())
    with pytest.raises(Killed):
        drive(s.tick, lambda: False, timeout=10)
    assert s.record(cid).status == "advancing" and s.record(cid).step == 2
    assert len(history(s.repo)) == 4

    s.restart()
    results = s.tick()
    assert [r.action for r in results] == ["promoted"]
    log = history(s.repo)
    assert len(log) == 4, "step 3 was written twice"
    rec = s.record(cid)
    assert rec.status == "promoted" and rec.current.commit == log[-1][0]
    assert s.registry.get_by_alias(m, "champion").version == "2"
    assert [t.to_status for t in s.store.transitions(cid)].count("advancing") == 2


def test_prometheus_unreachable_holds_the_canary_and_says_so(tmp_path, registry, model_name):
    m = model_name
    dead = f"http://127.0.0.1:{free_port()}"
    s = Setup(tmp_path, registry, m, dead, kserve_files(m), steps="[50, 100]")
    cid = s.start().canary.id
    results = drive(s.tick, lambda: len(s.record(cid).measurements) >= 2)
    held = [r for r in results if r.action == "held"]
    assert len(held) >= 2
    assert all(isinstance(r.error, InfraError) and f"Prometheus at {dead}/api/v1/query is unreachable" in str(r.error)
               for r in held)
    rec = s.record(cid)
    assert rec.status == "observing" and rec.step == 0 and dict(rec.failures) == {"error_rate": 0, "latency": 0}
    assert {m_.action for m_ in rec.measurements} == {"hold"}
    assert "holding at step 1 of 2 (50 %), nothing decided" in rec.reason
    assert len(history(s.repo)) == 2  # never advanced
    assert "could not measure" in s.posted[-1] and s.registry.get_by_alias(m, "champion").version == "1"


class PullRequestWriter:
    """A stand-in for the bot's pull-request writer: opens "PRs" that the test merges."""

    def __init__(self):
        self.open: list[Change] = []
        self.opened = 0

    def write(self, change: Change) -> WriteResult:
        self.open.append(change)
        self.opened += 1
        return WriteResult(commit=None, url=f"https://forge.example/o/gitops/pull/{self.opened}", changed=True)

    def merge(self) -> str:
        result = PushWriter().write(self.open.pop(0))
        return result.commit  # type: ignore[return-value]


def test_pull_request_mode_waits_for_each_merge(tmp_path, registry, model_name, prometheus, exporter):
    m = model_name
    exporter.serve(m, "2", requests=500, error_ratio=0.0, latency=0.1)
    exporter.serve(m, "1", requests=500, error_ratio=0.0, latency=0.1)
    wait_for_value(prometheus, f'sum(model_requests{{model="{m}",version="2"}})', 500)
    s = Setup(tmp_path, registry, m, prometheus, kserve_files(m), steps="[50, 100]", mode="pull-request")
    prs = PullRequestWriter()
    s.writer = prs
    rec = s.start().canary
    assert rec.current.url.endswith("/pull/1") and rec.current.live_at is None
    assert s.store.find_by_url(rec.current.url).id == rec.id  # how the bot maps a merged PR to its canary
    res = s.tick(reader=runner.read_branch_file)
    assert [r.action for r in res] == ["awaiting_merge"] and len(history(s.repo)) == 1
    prs.merge()  # someone merges the first PR; the branch now holds step 1
    drive(lambda: s.tick(reader=runner.read_branch_file), lambda: s.record(rec.id).current.live_at is not None)
    drive(s.tick, lambda: s.record(rec.id).step == 1)
    assert s.record(rec.id).current.url.endswith("/pull/2") and s.record(rec.id).status == "observing"
    sha = prs.merge()
    done = runner.on_step_live(s.store, s.registry, s.writer, clock, rec.id, commit=sha)  # the bot saw the merge
    assert done.action == "promoted" and s.registry.get_by_alias(m, "champion").version == "2"
    assert s.registry.get_version(m, "2").tags["mlgate.promoted.production.commit"] == sha


def test_two_workers_never_write_a_step_twice(tmp_path, registry, model_name, prometheus, exporter):
    import threading
    import time

    m = model_name
    exporter.serve(m, "2", requests=500, error_ratio=0.0, latency=0.1)
    exporter.serve(m, "1", requests=500, error_ratio=0.0, latency=0.1)
    wait_for_value(prometheus, f'sum(model_requests{{model="{m}",version="2"}})', 500)
    s = Setup(tmp_path, registry, m, prometheus, kserve_files(m))
    rec = s.start().canary
    time.sleep(max(0.0, rec.next_due_at - clock().timestamp()) + 0.1)
    barrier = threading.Barrier(2)
    results: list[runner.TickResult] = []

    def worker() -> None:
        store = CanaryStore(s.db)  # each worker is its own process, in effect
        barrier.wait()
        results.extend(runner.tick(store, s.registry, PushWriter(), clock, canary_id=rec.id))

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(r.action for r in results).count("advanced") == 1, [(r.action, r.message) for r in results]
    assert len(history(s.repo)) == 3  # seed, 10 %, 50 %: step 2 written once
    assert s.record(rec.id).step == 1 and s.record(rec.id).status == "observing"


def test_abort_leaves_traffic_as_is_and_rollback_may_follow(tmp_path, registry, model_name):
    m = model_name
    s = Setup(tmp_path, registry, m, f"http://127.0.0.1:{free_port()}", kserve_files(m), interval=60)
    cid = s.start().canary.id
    aborted = runner.abort(s.store, s.registry, s.writer, clock, cid, reason="pager is ringing", actor="bob")
    assert aborted.canary.status == "aborted"
    assert "aborted by bob: pager is ringing; mlgate no longer drives it and the manifest keeps 10 %" in aborted.message
    assert s.registry.get_version(m, "2").tags["mlgate.canary"] == "aborted"
    assert len(history(s.repo)) == 2 and s.tick() == []  # nothing runs it any more
    back = runner.rollback(s.store, s.registry, s.writer, clock, cid, reason="bad model", actor="bob")
    assert back.canary.status == "rolled_back" and back.message.startswith("rolled back by bob: bad model")
    text = file_at(s.repo, "main", "prod/isvc.yaml")
    assert f'storageUri: "s3://models/{m}/1"' in text and "canaryTrafficPercent: 0" in text
    assert len(history(s.repo)) == 3
    # a new canary may start from the rolled-back manifest
    again = s.start()
    assert again.canary.status == "observing" and again.canary.id != cid
    assert "canaryTrafficPercent: 10" in file_at(s.repo, "main", "prod/isvc.yaml")


def test_start_is_refused_with_reasons(tmp_path, registry, model_name):
    m = model_name
    standard = (FIXTURES / "kserve-standard-mode.yaml").read_text().replace('"Standard"', '"ModelMesh"')
    s = Setup(tmp_path, registry, m, f"http://127.0.0.1:{free_port()}",
              {"prod/isvc.yaml": standard}, target="{kind: kserve, name: rollout-strategy-example}")
    s.registry.client.create_model_version(m, source=f"s3://models/{m}/3", run_id=None)  # v3: never validated
    with pytest.raises(Refused, match="its gates were not evaluated"):
        s.start(version="3")
    with pytest.raises(Refused, match="already holds 'champion'"):
        s.start(version="1")
    with pytest.raises(ManifestError, match="deploymentMode: ModelMesh"):
        s.start()
    aborted = s.store.latest(m, "production")
    assert aborted.status == "aborted" and "could not write step 1, nothing was changed" in aborted.reason
    assert len(history(s.repo)) == 1  # nothing written


def test_one_canary_per_environment(tmp_path, registry, model_name):
    m = model_name
    s = Setup(tmp_path, registry, m, f"http://127.0.0.1:{free_port()}", kserve_files(m), interval=60)
    s.registry.client.create_model_version(m, source=f"s3://models/{m}/3", run_id=None)
    s.registry.client.set_model_version_tag(m, "3", "mlgate.gates", "passed")
    s.start()
    with pytest.raises(Refused, match=f"a canary of {m} is already running in production: v2"):
        s.start(version="3")


def test_cli_drives_a_canary(tmp_path, registry, model_name, mlflow_server):
    import subprocess
    import sys

    m = model_name
    dead = f"http://127.0.0.1:{free_port()}"
    s = Setup(tmp_path, registry, m, dead, kserve_files(m), steps="[50, 100]")
    cfg = tmp_path / ".mlgate.yml"
    cfg.write_text(config_text(m, s.repo, dead, steps="[50, 100]"))
    mlgate = str(Path(sys.executable).parent / "mlgate")
    env = {**__import__("os").environ, "MLFLOW_TRACKING_URI": mlflow_server}
    env.pop("MLGATE_DATABASE_URL", None)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([mlgate, "canary", *args, "--config", str(cfg)], capture_output=True, text=True,
                              env=env, cwd=tmp_path, timeout=120)

    started = run("start", "--to", "production", "--version", "2", "-o", "json")
    assert started.returncode == 0, started.stderr
    assert json.loads(started.stdout)[0]["status"] == "observing"
    assert (tmp_path / ".mlgate" / "bot.db").is_file()  # the bot's default database, next to the config
    step = run("step", "--to", "production", "--wait", "--max-wait", "5")
    assert step.returncode == 3, step.stdout + step.stderr
    assert f"Prometheus at {dead}/api/v1/query is unreachable" in step.stderr
    status = run("status", "-o", "json")
    rows = json.loads(status.stdout)
    assert [(r["model"], r["status"], r["percent"]) for r in rows] == [(m, "observing", 50)]
    not_paused = run("continue", "--to", "production")  # issue 15: only a paused canary goes on
    assert not_paused.returncode == 1 and "is observing, not paused: there is nothing to continue" in not_paused.stderr
    back = run("rollback", "--to", "production", "--reason", "manual")
    assert back.returncode == 0, back.stderr
    assert "rolled back by" in back.stdout
    again = run("step", "--to", "production")
    assert again.returncode == 2 and f"no canary of {m} is running in production" in again.stderr
    assert run("status").stdout.strip() == "no running canary"
