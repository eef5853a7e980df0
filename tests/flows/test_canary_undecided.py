"""A canary never waits silently (issue 15): inconclusive analysis pauses for a person, a person
confirms a step, a rejected query stops at the safe state, a long Prometheus outage pauses, a
closed or forgotten step PR rolls back. Real Prometheus scraping the test's exporter, real MLflow,
real git (a bare GitOps repository), the canary store on a SQLite file."""

from __future__ import annotations

from typing import Any

import pytest

from mlgate.core.promotion import Change, WriteResult
from mlgate.edge.git import PushWriter
from mlgate.flows import canary as runner
from tests.conftest import free_port
from tests.flows.conftest import clock, drive, file_at, history, swaps, wait_for_value
from tests.flows.test_canary_live import PullRequestWriter, Setup, kserve_files

pytestmark = pytest.mark.slow

# success below 1 %, failure above 5 %: between the two the analysis is not sure
UNSURE = "max: 0.01\n            failure: {max: 0.05}"


def serve(exporter: Any, prometheus: str, m: str, ratio: float, requests: float = 500) -> None:
    exporter.serve(m, "2", requests=requests, error_ratio=ratio, latency=0.1)
    exporter.serve(m, "1", requests=5000, error_ratio=0.0, latency=0.1)
    wait_for_value(prometheus, f'max(model_error_ratio{{model="{m}",version="2"}})', ratio)
    wait_for_value(prometheus, f'sum(model_requests{{model="{m}",version="2"}})', requests)


def test_inconclusive_pauses_and_continue_advances_to_promotion(tmp_path, registry, model_name, prometheus, exporter):
    m = model_name
    serve(exporter, prometheus, m, 0.03)  # 3 %: neither success (≤ 1 %) nor failure (> 5 %)
    s = Setup(tmp_path, registry, m, prometheus, kserve_files(m), error_check=UNSURE)
    cid = s.start().canary.id
    results = drive(s.tick, lambda: s.record(cid).status == "paused")
    assert [r.action for r in results][-1] == "paused"
    rec = s.record(cid)
    assert rec.paused == "inconclusive" and rec.step == 0 and rec.next_due_at is None
    assert "the analysis is inconclusive" in rec.reason and "neither success nor failure: 0.03 > max 0.01" in rec.reason
    assert "Reply /continue" in rec.reason
    # paused: ticks measure nothing and write nothing
    n = len(rec.measurements)
    assert [r.action for r in s.tick()] == ["nothing_due"] and len(s.record(cid).measurements) == n
    assert "**paused**" in s.posted[-1] and "| 1 (10 %) | error_rate | 0.03 |" in s.posted[-1]
    assert "waiting for `/continue` or `/abort`" in s.posted[-1]

    serve(exporter, prometheus, m, 0.005)
    done = runner.continue_canary(s.store, s.registry, s.writer, clock, cid, actor="carol", notify=s.notify)
    assert done.action == "advanced" and done.canary.step == 1 and done.canary.status == "observing"
    assert "continued by carol (inconclusive pause at step 1)" in [t.reason for t in s.store.transitions(cid)
                                                                  if t.action == "continue"][0]
    drive(s.tick, lambda: s.record(cid).status == "promoted")
    log = history(s.repo)
    assert len(log) == 4  # seed + one commit per step: the pause wrote nothing, /continue wrote step 2 once
    assert swaps(file_at(s.repo, log[1][0], "prod/isvc.yaml"), file_at(s.repo, log[2][0], "prod/isvc.yaml")) == [
        ("    canaryTrafficPercent: 10", "    canaryTrafficPercent: 50")]
    assert s.registry.get_by_alias(m, "champion").version == "2"


def test_a_confirm_step_waits_for_continue_and_a_kill_after_the_push_never_repeats_it(tmp_path, registry, model_name,
                                                                                      prometheus, exporter):
    m = model_name
    serve(exporter, prometheus, m, 0.0)
    s = Setup(tmp_path, registry, m, prometheus, kserve_files(m),
              steps="[10, {percent: 50, confirm: true}, 100]")
    cid = s.start().canary.id
    drive(s.tick, lambda: s.record(cid).status == "paused")
    rec = s.record(cid)
    assert rec.paused == "confirm" and rec.step == 0 and "step 2 (50 %) needs a person" in rec.reason
    assert len(history(s.repo)) == 2 and "needs /continue" in s.posted[-1]

    class Killed(BaseException):
        pass

    class DiesAfterPush:
        def write(self, change: Change) -> WriteResult:
            PushWriter().write(change)
            raise Killed("killed after the push")

    with pytest.raises(Killed):  # the process dies between pushing step 2 and recording it
        runner.continue_canary(s.store, s.registry, DiesAfterPush(), clock, cid, actor="carol")
    assert s.record(cid).status == "advancing" and s.record(cid).step == 1
    s.restart()
    assert [r.action for r in s.tick()] == ["advanced"]
    assert len(history(s.repo)) == 3, "step 2 was written twice"
    with pytest.raises(Exception, match="not paused"):
        runner.continue_canary(s.store, s.registry, s.writer, clock, cid, actor="carol")
    drive(s.tick, lambda: s.record(cid).status == "promoted")
    assert len(history(s.repo)) == 4


def test_a_query_prometheus_rejects_rolls_back_at_once_with_its_message(tmp_path, registry, model_name, prometheus,
                                                                        exporter):
    m = model_name
    serve(exporter, prometheus, m, 0.0)
    s = Setup(tmp_path, registry, m, prometheus, kserve_files(m), failure_limit=3)
    s.config.environments[0].canary.analysis.checks[0].query = 'max(model_error_ratio{model="{model}"'  # unclosed
    cid = s.start().canary.id
    results = drive(s.tick, lambda: s.record(cid).status == "rolled_back")
    rec = s.record(cid)
    assert len(rec.measurements) == 1  # not retried: a configuration error is no outage
    assert "a query of the analysis is a configuration error (fix it in .mlgate.yml)" in rec.reason
    assert "error_rate: Prometheus at" in rec.reason and "parse error" in rec.reason  # Prometheus's own words
    assert rec.rollback is not None and any(r.action == "rolled_back" for r in results)
    assert [subj for _, subj in history(s.repo)][-1] == f"canary: roll back {m} v2 in production"
    assert s.registry.get_by_alias(m, "champion").version == "1"


def test_a_long_prometheus_outage_pauses_after_max_hold(tmp_path, registry, model_name):
    m = model_name
    dead = f"http://127.0.0.1:{free_port()}"
    s = Setup(tmp_path, registry, m, dead, kserve_files(m), steps="[50, 100]", interval=0.3,
              analysis="\n        max_hold: 1.5")
    for c in s.config.environments[0].canary.analysis.checks:
        c.consecutive_error_limit = 1000
    cid = s.start().canary.id
    results = drive(s.tick, lambda: s.record(cid).status == "paused")
    held = [r for r in results if r.action == "held"]
    assert held, [r.action for r in results]
    rec = s.record(cid)
    assert rec.paused == "error" and "without a measurement (max_hold 1.5 s)" in rec.reason
    assert f"Prometheus at {dead}/api/v1/query is unreachable" in rec.reason
    assert len(history(s.repo)) == 2 and s.registry.get_by_alias(m, "champion").version == "1"


def test_consecutive_query_errors_past_the_limit_pause(tmp_path, registry, model_name):
    m = model_name
    dead = f"http://127.0.0.1:{free_port()}"
    s = Setup(tmp_path, registry, m, dead, kserve_files(m), steps="[50, 100]", interval=0.2,
              error_check="max: 0.05\n            consecutive_error_limit: 1")
    cid = s.start().canary.id
    drive(s.tick, lambda: s.record(cid).status == "paused")
    rec = s.record(cid)
    assert [x.action for x in rec.measurements] == ["hold", "pause"]
    assert "2 query errors in a row (consecutive_error_limit 1)" in rec.reason


class ClosingForge(PullRequestWriter):
    """Step PRs a person may close; ``state`` is what the bot asks the forge."""

    def __init__(self):
        super().__init__()
        self.closed: set[str] = set()

    def state(self, url: str) -> str:
        return "closed" if url in self.closed else "open"


def test_a_closed_step_pr_rolls_back_to_the_last_safe_state(tmp_path, registry, model_name, prometheus, exporter):
    m = model_name
    serve(exporter, prometheus, m, 0.0)
    s = Setup(tmp_path, registry, m, prometheus, kserve_files(m), mode="pull-request")
    prs = ClosingForge()
    s.writer = prs
    seed = file_at(s.repo, "main", "prod/isvc.yaml")
    rec = s.start().canary
    prs.merge()
    runner.on_step_live(s.store, s.registry, s.writer, clock, rec.id)
    drive(lambda: s.tick(pr_state=prs.state), lambda: s.record(rec.id).step == 1)
    step2 = s.record(rec.id).current.url
    assert [r.action for r in s.tick(pr_state=prs.state)] == ["awaiting_merge"]
    prs.closed.add(step2)  # a person closes the 50 % PR without merging it
    res = s.tick(pr_state=prs.state)
    assert [r.action for r in res] == ["rolling_back"]
    rec = s.record(rec.id)
    assert f"the PR of step 2 (50 %) ({step2}) was closed without merging" in rec.reason
    assert rec.rollback is not None and rec.rollback.url.endswith("/pull/3")
    prs.open.pop(0)  # the closed step PR is gone; the rollback PR is merged
    prs.merge()
    runner.on_step_live(s.store, s.registry, s.writer, clock, rec.id)
    assert s.record(rec.id).status == "rolled_back"
    # the manifest is back to the primary: compared with the seed, one line, the canary's share pinned to 0
    after = file_at(s.repo, "main", "prod/isvc.yaml").splitlines()
    assert [ln for ln in after if ln not in seed.splitlines()] == ["    canaryTrafficPercent: 0"]
    assert len(after) == len(seed.splitlines()) + 1


def test_a_step_pr_waiting_past_merge_timeout_is_reminded_then_rolled_back(tmp_path, registry, model_name):
    m = model_name
    dead = f"http://127.0.0.1:{free_port()}"  # never measured: the step is never merged
    s = Setup(tmp_path, registry, m, dead, kserve_files(m), mode="pull-request", canary="\n      merge_timeout: 0.5")
    s.writer = ClosingForge()
    cid = s.start().canary.id
    results = drive(lambda: s.tick(pr_state=s.writer.state), lambda: s.record(cid).status == "rolling_back")
    actions = [r.action for r in results]
    assert "reminded" in actions and actions.index("reminded") < len(actions) - 1
    reminded = next(r for r in results if r.action == "reminded")
    assert "has waited" in reminded.message and "merge_timeout 0.5 s" in reminded.message
    assert "rolls back in 0.5 s otherwise" in reminded.message
    assert "waited" in s.record(cid).reason and "reminded once" in s.record(cid).reason


# --------------------------------------------------------------------------- KServe Standard mode (spec.canary)


def standard_files() -> dict[str, str]:
    from tests.flows.conftest import FIXTURES

    return {"prod/isvc.yaml": (FIXTURES / "kserve-standard-mode.yaml").read_text()}


STANDARD = "{kind: kserve, name: rollout-strategy-example}"


def test_kserve_standard_mode_canary_is_promoted_entry_by_entry(tmp_path, registry, model_name, prometheus, exporter):
    from tests.core.test_canary_plan import changed_lines, schema_errors

    m = model_name
    serve(exporter, prometheus, m, 0.0)
    s = Setup(tmp_path, registry, m, prometheus, standard_files(), target=STANDARD)
    cid = s.start().canary.id
    drive(s.tick, lambda: s.record(cid).status == "promoted")
    log = history(s.repo)
    texts = [file_at(s.repo, sha, "prod/isvc.yaml") for sha, _ in log]
    assert len(texts) == 4 and all(schema_errors(t) == [] for t in texts)
    assert all(ln.startswith("+") for ln in changed_lines(texts[0], texts[1]))  # step 1 adds the entry only
    assert "      trafficPercent: 10" in texts[1] and "name: v2" in texts[1]
    assert changed_lines(texts[1], texts[2]) == ["-      trafficPercent: 10", "+      trafficPercent: 50"]
    assert changed_lines(texts[0], texts[3]) == ['-      storageUri: "s3://my-bucket/model"',
                                                 f'+      storageUri: "s3://models/{m}/2"']
    assert s.registry.get_by_alias(m, "champion").version == "2"


def test_kserve_standard_mode_rollback_removes_the_entry(tmp_path, registry, model_name, prometheus, exporter):
    m = model_name
    serve(exporter, prometheus, m, 0.2)  # 20 % errors: fails max 0.05
    s = Setup(tmp_path, registry, m, prometheus, standard_files(), target=STANDARD, failure_limit=0)
    seed = file_at(s.repo, "main", "prod/isvc.yaml")
    cid = s.start().canary.id
    drive(s.tick, lambda: s.record(cid).status == "rolled_back")
    assert [x.action for x in s.record(cid).measurements] == ["rollback"]
    assert file_at(s.repo, "main", "prod/isvc.yaml") == seed  # the entry removed: byte for byte the seed
    assert [subj for _, subj in history(s.repo)][-1] == f"canary: roll back {m} v2 in production"
