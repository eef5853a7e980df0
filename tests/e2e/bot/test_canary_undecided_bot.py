"""A canary never waits silently, through the bot (issue 15): ``mlgate bot serve`` (its own process,
canary ticks every 0.3 s), step PRs on the OpenAPI-checked fake GitHub (real git), a real Prometheus
scraping the test's exporter, a real MLflow registry.

- an inconclusive analysis pauses the canary and asks on the PR; ``/continue`` by someone who is not a
  promoter of production is refused with the reason, by a promoter it writes the next step;
- a step PR closed without merging rolls the canary back through git (one line against the seed);
- a query Prometheus rejects rolls back at once and the PR says Prometheus's message.
"""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import wait_for_value
from tests.e2e.bot.conftest import World, eventually
from tests.e2e.bot.test_canary_bot import (  # noqa: F401  (canary_bot: the module's bot fixture)
    canary_audit, canary_bot, changed_lines, main_text, make_cworld, merge_and_tell, open_canary_prs,
)

pytestmark = pytest.mark.slow

UNSURE = "max: 0.01\n            failure: {max: 0.05}"


def serve(exporter, prometheus: str, m: str, ratio: float) -> None:
    exporter.serve(m, "2", requests=500, error_ratio=ratio)
    exporter.serve(m, "1", requests=5000, error_ratio=0.0)
    wait_for_value(prometheus, f'max(model_error_ratio{{model="{m}",version="2"}})', ratio)
    wait_for_value(prometheus, f'sum(model_requests{{model="{m}",version="2"}})', 500)


def step_pr(w: World, percent: int):
    return eventually(f"the {percent} % step PR", lambda: [p for p in open_canary_prs(w)
                                                          if f"at {percent} % in production" in p.title], w.bot)[0]


def test_inconclusive_pauses_and_only_a_promoter_continues(fakes, canary_bot, mlflow_client, prometheus,  # noqa: F811
                                                           exporter):
    gh, _ = fakes
    errors_before = len(gh.errors)
    w = make_cworld(gh, canary_bot, mlflow_client, prometheus, check=UNSURE)
    m = w.model
    serve(exporter, prometheus, m, 0.03)  # 3 %: above success (1 %), below failure (5 %)
    w.promote("/promote to production", by="carol")
    merge_and_tell(w, step_pr(w, 10))
    eventually("the canary paused", lambda: "**paused**" in w.reply(), w.bot)
    text = w.reply()
    assert "the analysis is inconclusive" in text and "neither success nor failure: 0.03 > max 0.01" in text
    assert "Reply /continue to go on to the next step, or /abort" in text
    assert "| 1 (10 %) | error_rate | 0.03 | ≤ 0.01, fails > 0.05, 100 samples |" in text
    assert [a["action"] for a in canary_audit(w)][-1] == "pause"
    assert open_canary_prs(w) == []  # paused: nothing more is written

    refused = w.promote("/continue", by="alice")  # write permission; production's promoters need maintain
    assert "continue: refused" in refused.outcome, refused
    assert "needs maintain or higher" in w.reply()
    assert open_canary_prs(w) == []

    serve(exporter, prometheus, m, 0.005)
    info = w.promote("/continue", by="carol")
    assert info.status == "done" and "advanced" in info.outcome, info
    merge_and_tell(w, step_pr(w, 50))
    done = merge_and_tell(w, step_pr(w, 100))
    assert "promoted" in done.outcome, done.outcome
    assert w.client.get_model_version_by_alias(m, "champion").version == "2"
    assert len(w.gh.pulls(w.deploy)) == 3  # one PR per step: the pause and the refusal wrote nothing
    cont = [a for a in w.bot.audit() if a.get("command") == "/continue" and a.get("model") == m]
    assert [(a["actor"], a["allowed"]) for a in cont] == [("alice", False), ("carol", True)]
    assert "continued by carol (inconclusive pause at step 1)" in [a["reason"] for a in canary_audit(w)
                                                                  if a["action"] == "continue"][0]
    assert gh.errors[errors_before:] == []


def test_a_closed_step_pr_rolls_back_through_git(fakes, canary_bot, mlflow_client, prometheus, exporter):  # noqa: F811
    gh, _ = fakes
    errors_before = len(gh.errors)
    w = make_cworld(gh, canary_bot, mlflow_client, prometheus)
    m = w.model
    serve(exporter, prometheus, m, 0.0)
    seed = main_text(w)
    w.promote("/promote to production", by="carol")
    merge_and_tell(w, step_pr(w, 10))
    second = step_pr(w, 50)
    gh.repos[w.deploy].pulls[second.number].state = "closed"  # a person closes it without merging

    rollback = eventually("the rollback PR", lambda: [p for p in open_canary_prs(w) if "roll back" in p.title],
                          w.bot)[0]
    text = eventually("the reply saying why", lambda: "was closed without merging" in w.reply() and w.reply(), w.bot)
    assert "**rolling back**" in text and f"/pull/{second.number}) was closed without merging" in text
    done = merge_and_tell(w, rollback)
    assert "rolled_back" in done.outcome, done.outcome
    assert changed_lines(seed, main_text(w)) == [("", "canaryTrafficPercent: 0")]
    assert w.client.get_model_version_by_alias(m, "champion").version == "1"
    assert w.client.get_model_version(m, "2").tags["mlgate.canary"] == "rolled_back"
    assert gh.errors[errors_before:] == []


def test_a_rejected_query_stops_at_the_safe_state_with_prometheus_message(fakes, canary_bot, mlflow_client,  # noqa: F811
                                                                          prometheus, exporter):
    gh, _ = fakes
    w = make_cworld(gh, canary_bot, mlflow_client, prometheus,
                    check="max: 0.05\n            primary_query: 'rate(model_requests{version=\"{version}\"})'"
                          "\n            max_ratio: 2")
    m = w.model
    serve(exporter, prometheus, m, 0.0)
    w.promote("/promote to production", by="carol")
    merge_and_tell(w, step_pr(w, 10))
    rollback = eventually("the rollback PR", lambda: [p for p in open_canary_prs(w) if "roll back" in p.title],
                          w.bot)[0]
    text = eventually("the reply saying why", lambda: "configuration error" in w.reply() and w.reply(), w.bot)
    assert "a query of the analysis is a configuration error (fix it in .mlgate.yml)" in text
    # Prometheus's own message: rate() needs a range vector
    assert "expected type range vector in call to function" in text and "rate" in text
    merge_and_tell(w, rollback)
    assert w.client.get_model_version_by_alias(m, "champion").version == "1"


def test_the_held_seconds_metric_is_exported(canary_bot):  # noqa: F811
    body = httpx.get(f"{canary_bot.url}/metrics", timeout=5).text
    assert "# TYPE mlgate_canary_held_seconds gauge" in body


def test_kserve_standard_mode_canary_through_step_prs(fakes, canary_bot, mlflow_client, prometheus, exporter):  # noqa: F811
    from tests.core.test_canary_plan import schema_errors
    from tests.flows.conftest import FIXTURES

    gh, _ = fakes
    errors_before = len(gh.errors)
    w = make_cworld(gh, canary_bot, mlflow_client, prometheus)
    m = w.model
    standard = (FIXTURES / "kserve-standard-mode.yaml").read_text().replace("rollout-strategy-example", "fraud-model")
    gh.commit(w.deploy, "main", {"prod/isvc.yaml": standard}, message="serve in Standard mode")
    serve(exporter, prometheus, m, 0.0)
    w.promote("/promote to production", by="carol")
    texts = [main_text(w)]
    for percent in (10, 50, 100):
        merge_and_tell(w, step_pr(w, percent))
        texts.append(main_text(w))
    assert all(schema_errors(t) == [] for t in texts)
    assert [new for _old, new in changed_lines(texts[0], texts[1])][0].startswith("canary:")
    assert changed_lines(texts[1], texts[2]) == [("trafficPercent: 10", "trafficPercent: 50")]
    assert changed_lines(texts[0], texts[3]) == [('storageUri: "s3://my-bucket/model"', f'storageUri: "s3://models/{m}/2"')]
    assert w.client.get_model_version_by_alias(m, "champion").version == "2"
    assert gh.errors[errors_before:] == []


BLUE_GREEN = ("{kind: blue-green, active: activeSlot, slots: {blue: {value: blue.modelUri}, "
              "green: {value: green.modelUri}}}")


def blue_green_world(gh, bot, client, prometheus, bake: float):
    from tests.flows.conftest import FIXTURES

    w = make_cworld(gh, bot, client, prometheus, steps="", extra=f"\n      bake: {bake}", ctarget=BLUE_GREEN)
    values = (FIXTURES / "helm-blue-green.yaml").read_text().replace("MODEL", w.model)
    gh.commit(w.deploy, "main", {"prod/isvc.yaml": values}, message="serve in two slots")
    return w


def test_blue_green_through_prs_slot_switch_bake_promote(fakes, canary_bot, mlflow_client, prometheus,  # noqa: F811
                                                         exporter):
    gh, _ = fakes
    w = blue_green_world(gh, canary_bot, mlflow_client, prometheus, bake=1)
    m = w.model
    serve(exporter, prometheus, m, 0.0)
    seed = main_text(w)
    w.promote("/promote to production", by="carol")
    merge_and_tell(w, step_pr(w, 0))  # PR 1: the idle slot
    slot = main_text(w)
    assert changed_lines(seed, slot) == [('modelUri: ""     # idle', f'modelUri: "s3://models/{m}/2"     # idle')]
    assert w.client.get_model_version_by_alias(m, "champion").version == "1"
    done = merge_and_tell(w, step_pr(w, 100))  # PR 2: the pointer, after the pre-switch analysis passed
    assert "promoted" not in done.outcome  # it bakes first
    assert changed_lines(slot, main_text(w)) == [("activeSlot: blue   # the slot that serves traffic",
                                                  "activeSlot: green   # the slot that serves traffic")]
    eventually("promoted after the bake", lambda: w.client.get_model_version_by_alias(m, "champion").version == "2",
               w.bot)
    actions = eventually("the promotion audited", lambda: [a["action"] for a in canary_audit(w)][-1] == "promote"
                         and [a["action"] for a in canary_audit(w)], w.bot)
    assert actions.count("measure:advance") == 1 and "measure:promote" in actions and actions[-1] == "promote"
    assert len(w.gh.pulls(w.deploy)) == 2


def test_blue_green_rollback_after_the_switch_is_one_line(fakes, canary_bot, mlflow_client, prometheus,  # noqa: F811
                                                          exporter):
    gh, _ = fakes
    w = blue_green_world(gh, canary_bot, mlflow_client, prometheus, bake=600)
    m = w.model
    serve(exporter, prometheus, m, 0.0)
    w.promote("/promote to production", by="carol")
    merge_and_tell(w, step_pr(w, 0))
    merge_and_tell(w, step_pr(w, 100))
    switched = main_text(w)
    info = w.promote("/rollback", by="carol")
    assert "rolling_back" in info.outcome, info
    rollback = eventually("the rollback PR", lambda: [p for p in open_canary_prs(w) if "roll back" in p.title],
                          w.bot)[0]
    done = merge_and_tell(w, rollback)
    assert "rolled_back" in done.outcome, done.outcome
    assert changed_lines(switched, main_text(w)) == [("activeSlot: green   # the slot that serves traffic",
                                                      "activeSlot: blue   # the slot that serves traffic")]
    assert w.client.get_model_version_by_alias(m, "champion").version == "1"


def test_a_long_prometheus_outage_is_exported_then_pauses_and_asks(fakes, canary_bot, mlflow_client):  # noqa: F811
    from tests.conftest import free_port

    gh, _ = fakes
    dead = f"http://127.0.0.1:{free_port()}"  # Prometheus is down for the whole test
    w = make_cworld(gh, canary_bot, mlflow_client, dead, analysis="\n        max_hold: 4",
                    check="max: 0.05\n            consecutive_error_limit: 1000")
    w.promote("/promote to production", by="carol")
    merge_and_tell(w, step_pr(w, 10))

    def held() -> float:
        for line in httpx.get(f"{canary_bot.url}/metrics", timeout=5).text.splitlines():
            if line.startswith("mlgate_canary_held_seconds{") and f'model="{w.model}"' in line:
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    eventually("the hold exported", lambda: held() > 0, w.bot)
    text = eventually("the canary paused", lambda: "**paused**" in w.reply() and w.reply(), w.bot)
    assert "without a measurement (max_hold 4 s)" in text and f"Prometheus at {dead}/api/v1/query is unreachable" in text
    assert "Reply /continue" in text and open_canary_prs(w) == []
    eventually("the gauge back to 0 once paused", lambda: held() == 0.0, w.bot)
    assert w.client.get_model_version_by_alias(w.model, "champion").version == "1"
