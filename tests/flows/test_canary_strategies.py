"""Deployment strategies driven by the real Prometheus of the canary tests (issue 15): Istio and
Gateway API weighted canaries on the upstream route files, pushed to a real git repository step by
step; healthy → promoted, failing → rolled back in one commit."""

from __future__ import annotations

import pytest

from tests.core.test_canary_plan import changed_lines
from tests.core.test_canary_routes import ARGO_SPLIT, HTTPROUTE_90_10
from tests.flows.conftest import drive, file_at, history
from tests.flows.test_canary_live import Setup
from tests.flows.test_canary_undecided import serve

pytestmark = pytest.mark.slow

ISTIO = ("{kind: istio, name: istio-subset-split-vsvc, route: primary, stable: {host: istio-subset-split, "
         "subset: stable}, canary: {host: istio-subset-split, subset: canary}}")
GATEWAY = "{kind: httproute, name: reviews, stable: reviews-v1, canary: reviews-v2}"


def test_an_istio_weighted_canary_is_promoted_two_weights_per_commit(tmp_path, registry, model_name, prometheus,
                                                                     exporter):
    m = model_name
    serve(exporter, prometheus, m, 0.0)
    s = Setup(tmp_path, registry, m, prometheus, {"prod/route.yaml": ARGO_SPLIT.read_text()}, path="prod/route.yaml",
              target=ISTIO)
    cid = s.start().canary.id
    drive(s.tick, lambda: s.record(cid).status == "promoted")
    texts = [file_at(s.repo, sha, "prod/route.yaml") for sha, _ in history(s.repo)]
    assert len(texts) == 4
    for a, b, pct in zip(texts, texts[1:], (10, 50, 100)):
        d = changed_lines(a, b)
        assert d[1] == f"+      weight: {100 - pct}" and d[3] == f"+      weight: {pct}" and len(d) == 4, d
    assert s.registry.get_by_alias(m, "champion").version == "2"


def test_a_gateway_api_weighted_canary_that_fails_is_rolled_back_in_one_commit(tmp_path, registry, model_name,
                                                                               prometheus, exporter):
    m = model_name
    serve(exporter, prometheus, m, 0.2)
    seed = HTTPROUTE_90_10.read_text().replace("weight: 10", "weight: 0").replace("weight: 90", "weight: 100")
    s = Setup(tmp_path, registry, m, prometheus, {"prod/route.yaml": seed}, path="prod/route.yaml", target=GATEWAY,
              failure_limit=0)
    cid = s.start().canary.id
    drive(s.tick, lambda: s.record(cid).status == "rolled_back")
    log = history(s.repo)
    assert [subj for _, subj in log][1:] == [f"canary: {m} v2 at 10 % in production (step 1/3)",
                                             f"canary: roll back {m} v2 in production"]
    assert changed_lines(file_at(s.repo, log[1][0], "prod/route.yaml"), file_at(s.repo, "main", "prod/route.yaml")) == [
        "-      weight: 90", "+      weight: 100", "-      weight: 10", "+      weight: 0"]
    assert file_at(s.repo, "main", "prod/route.yaml") == seed
    assert s.registry.get_by_alias(m, "champion").version == "1"


# --------------------------------------------------------------------------- blue-green

BLUE_GREEN = ("{kind: blue-green, active: activeSlot, slots: {blue: {value: blue.modelUri}, "
              "green: {value: green.modelUri}}}")


def blue_green_files(m: str) -> dict[str, str]:
    from tests.flows.conftest import FIXTURES

    return {"prod/values.yaml": (FIXTURES / "helm-blue-green.yaml").read_text().replace("MODEL", m)}


def test_blue_green_writes_the_idle_slot_switches_after_analysis_bakes_and_promotes(tmp_path, registry, model_name,
                                                                                    prometheus, exporter):
    m = model_name
    serve(exporter, prometheus, m, 0.0)
    s = Setup(tmp_path, registry, m, prometheus, blue_green_files(m), path="prod/values.yaml", target=BLUE_GREEN,
              steps="null", interval=0.3, canary="\n      strategy: blue-green\n      bake: 1.5")
    cid = s.start().canary.id
    results = drive(s.tick, lambda: s.record(cid).status == "promoted")
    assert "baking" in [r.action for r in results]
    rec = s.record(cid)
    switched = rec.steps_log[1].live_at
    after = [x for x in rec.measurements if x.step == 1]
    assert len(after) >= 2 and {x.action for x in after} == {"promote"}  # measured all along the bake
    assert rec.steps_log[1].ended_at >= switched + 1.5  # promoted only once the bake time passed
    assert [x.action for x in rec.measurements if x.step == 0] == ["advance"]  # the pre-switch analysis
    log = history(s.repo)
    assert [subj for _, subj in log][1:] == [f"canary: {m} v2 at 0 % in production (step 1/2)",
                                             f"canary: {m} v2 at 100 % in production (step 2/2)"]
    texts = [file_at(s.repo, sha, "prod/values.yaml") for sha, _ in log]
    assert changed_lines(texts[0], texts[1]) == ['-  modelUri: ""     # idle', f'+  modelUri: "s3://models/{m}/2"     # idle']
    assert changed_lines(texts[1], texts[2]) == ["-activeSlot: blue   # the slot that serves traffic",
                                                 "+activeSlot: green   # the slot that serves traffic"]
    assert s.registry.get_by_alias(m, "champion").version == "2"


def test_blue_green_failing_after_the_switch_switches_back_in_one_line(tmp_path, registry, model_name, prometheus,
                                                                       exporter):
    m = model_name
    serve(exporter, prometheus, m, 0.0)
    s = Setup(tmp_path, registry, m, prometheus, blue_green_files(m), path="prod/values.yaml", target=BLUE_GREEN,
              steps="null", interval=0.3, failure_limit=0, canary="\n      strategy: blue-green\n      bake: 600")
    cid = s.start().canary.id
    drive(s.tick, lambda: s.record(cid).step == 1 and s.record(cid).status == "observing")
    serve(exporter, prometheus, m, 0.2)  # the new version fails once it takes the traffic
    drive(s.tick, lambda: s.record(cid).status == "rolled_back")
    log = history(s.repo)
    assert [subj for _, subj in log][-1] == f"canary: roll back {m} v2 in production" and len(log) == 4
    assert changed_lines(file_at(s.repo, log[2][0], "prod/values.yaml"), file_at(s.repo, "main", "prod/values.yaml")) \
        == ["-activeSlot: green   # the slot that serves traffic", "+activeSlot: blue   # the slot that serves traffic"]
    assert s.registry.get_by_alias(m, "champion").version == "1"
    assert "error_rate: 0.2 > max 0.05" in s.record(cid).reason


# --------------------------------------------------------------------------- a kill mid-step, every strategy

STANDARD = "{kind: kserve, name: rollout-strategy-example}"


def _standard_files(m: str) -> dict[str, str]:
    from tests.flows.conftest import FIXTURES

    return {"prod/values.yaml": (FIXTURES / "kserve-standard-mode.yaml").read_text()}


@pytest.mark.parametrize("strategy", ["kserve-standard", "istio", "blue-green"])
def test_a_kill_after_a_steps_push_never_repeats_or_skips_it(strategy, tmp_path, registry, model_name, prometheus,
                                                             exporter):
    """The process dies right after pushing step 2 and before recording it (the pattern of
    test_canary_live's restart test): the restarted worker finds the step on the branch, writes
    no second commit, and the rollout goes on from step 2."""
    from mlgate.core.promotion import Change, WriteResult
    from mlgate.edge.git import PushWriter

    m = model_name
    serve(exporter, prometheus, m, 0.0)
    kw: dict = {"path": "prod/values.yaml", "interval": 0.3}
    if strategy == "kserve-standard":
        files, kw["target"], kw["steps"] = _standard_files(m), STANDARD, "[10, 50, 100]"
    elif strategy == "istio":
        files, kw["target"] = {"prod/values.yaml": ARGO_SPLIT.read_text()}, ISTIO
    else:
        files, kw["target"], kw["steps"] = blue_green_files(m), BLUE_GREEN, "null"
        kw["canary"] = "\n      strategy: blue-green\n      bake: 0.5"
        files = {"prod/values.yaml": files["prod/values.yaml"]}
    s = Setup(tmp_path, registry, m, prometheus, files, **kw)
    cid = s.start().canary.id

    class Killed(BaseException):
        pass

    class DiesAfterPush:
        def write(self, change: Change) -> WriteResult:
            PushWriter().write(change)
            raise Killed("killed after the push")

    s.writer = DiesAfterPush()
    with pytest.raises(Killed):
        drive(s.tick, lambda: False, timeout=20)
    assert s.record(cid).status == "advancing" and s.record(cid).step == 1
    pushed = len(history(s.repo))
    s.restart()
    assert [r.action for r in s.tick()][0] in ("advanced", "promoted")
    assert len(history(s.repo)) == pushed, "step 2 was written twice"
    drive(s.tick, lambda: s.record(cid).status == "promoted")
    subjects = [subj for _, subj in history(s.repo)][1:]
    n = len(s.record(cid).steps)
    assert subjects == [f"canary: {m} v2 at {p} % in production (step {i + 1}/{n})"
                        for i, p in enumerate(s.record(cid).steps)]  # each step once, none skipped


def test_blue_green_failing_before_the_switch_is_rolled_back_without_a_commit(tmp_path, registry, model_name,
                                                                             prometheus, exporter):
    m = model_name
    serve(exporter, prometheus, m, 0.2)  # the idle slot is unhealthy: the pre-switch analysis fails
    s = Setup(tmp_path, registry, m, prometheus, blue_green_files(m), path="prod/values.yaml", target=BLUE_GREEN,
              steps="null", interval=0.3, failure_limit=0, canary="\n      strategy: blue-green")
    cid = s.start().canary.id
    drive(s.tick, lambda: s.record(cid).status == "rolled_back")
    rec = s.record(cid)
    assert [x.action for x in rec.measurements] == ["rollback"] and rec.measurements[0].percent == 0
    assert len(history(s.repo)) == 2  # the slot write only: traffic never moved, so there is nothing to switch back
    assert "activeSlot: blue" in file_at(s.repo, "main", "prod/values.yaml")
    assert s.registry.get_by_alias(m, "champion").version == "1"
