"""Traffic-split routes as canary targets (issue 15): Istio VirtualService and Gateway API HTTPRoute
weights, edited step by step on real upstream files (tests/fixtures/manifests/, byte for byte from
istio/istio and argoproj/argo-rollouts): each step's diff is the two weight lines, the weights sum
to 100 or nothing is written, the rollback gives the stable destination everything back."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mlgate.core.canary import CanarySettings, plan_rollback, plan_step
from mlgate.core.config import Canary
from mlgate.core.errors import ManifestError, Refused
from tests.core.test_canary_plan import V1, V2, changed_lines

MANIFESTS = Path(__file__).resolve().parents[1] / "fixtures" / "manifests"
ISTIO_90_10 = MANIFESTS / "istio" / "istio__istio__samples__bookinfo__networking__virtual-service-reviews-90-10.yaml"
TCP_80_20 = MANIFESTS / "istio" / "istio__istio__samples__tcp-echo__tcp-echo-20-v2.yaml"
HTTPROUTE_90_10 = MANIFESTS / "istio" / "istio__istio__samples__ambient-argo__application__route-reviews-90-10.yaml"
ARGO_SPLIT = MANIFESTS / "argo-rollouts" / "argoproj__argo-rollouts__examples__istio__istio-subset-split.yaml"

REVIEWS = {"kind": "istio", "name": "reviews", "stable": {"host": "reviews", "subset": "v1"},
           "canary": {"host": "reviews", "subset": "v2"}}
TCP = {"kind": "istio", "name": "tcp-echo", "stable": {"host": "tcp-echo", "subset": "v1"},
       "canary": {"host": "tcp-echo", "subset": "v2"}}
ROUTE = {"kind": "httproute", "name": "reviews", "stable": "reviews-v1", "canary": "reviews-v2"}
SPLIT = {"kind": "istio", "name": "istio-subset-split-vsvc", "route": "primary",
         "stable": {"host": "istio-subset-split", "subset": "stable"},
         "canary": {"host": "istio-subset-split", "subset": "canary"}}


def settings(target: dict, steps=(10, 50, 100)) -> CanarySettings:
    c = Canary.model_validate({"steps": list(steps), "interval": 5, "target": target, "analysis": {
        "prometheus": "http://prom:9090", "checks": [{"name": "errors", "query": "e", "max": 0.05}]}})
    return CanarySettings(c, "/gitops.git", "main", "f.yaml", "push")


def walk(text: str, s: CanarySettings) -> list[str]:
    """The text after each step (step 1 starts the canary)."""
    out = [text]
    for i in range(len(s.canary.steps)):
        out.append(plan_step(out[-1], s, i, V2, filename="f.yaml", first=i == 0))
    return out


@pytest.mark.parametrize(("path", "target", "stable_line", "canary_line"), [
    (ARGO_SPLIT, SPLIT, "      weight: {}", "      weight: {}"),
])
def test_a_route_at_100_0_moves_two_weights_per_step_and_rolls_back_to_the_seed(path, target, stable_line, canary_line):
    s = settings(target)
    seed = path.read_text()
    texts = walk(seed, s)
    for (a, b), pct, before in zip(zip(texts, texts[1:]), (10, 50, 100), (0, 10, 50)):
        assert changed_lines(a, b) == ["-" + stable_line.format(100 - before), "+" + stable_line.format(100 - pct),
                                       "-" + canary_line.format(before), "+" + canary_line.format(pct)]
    assert plan_rollback(texts[2], s, V1, filename="f.yaml") == seed  # back to 100/0 exactly
    assert plan_step(texts[1], s, 0, V2, filename="f.yaml", first=True, resume=True) == texts[1]  # no second commit


@pytest.mark.parametrize(("path", "target", "carried"), [(ISTIO_90_10, REVIEWS, 10), (TCP_80_20, TCP, 20),
                                                         (HTTPROUTE_90_10, ROUTE, 10)])
def test_a_route_already_split_is_refused_then_rolled_back_and_canaried(path, target, carried):
    s = settings(target)
    seed = path.read_text()
    with pytest.raises(Refused, match=f"already carries {carried} % of traffic"):
        plan_step(seed, s, 0, V2, filename="f.yaml", first=True)
    back = plan_rollback(seed, s, V1, filename="f.yaml")
    diff = changed_lines(seed, back)
    assert len(diff) == 4 and diff[1].endswith(": 100") and diff[3].endswith(": 0"), diff
    texts = walk(back, s)
    for a, b in zip(texts, texts[1:]):
        d = changed_lines(a, b)
        assert len(d) == 4 and all("weight: " in ln for ln in d), d  # the two weights, nothing else
    assert texts[-1].count("weight: 100") == 1 and texts[-1].count("weight: 0") == 1
    # the rest of the file (licence header, ports, matches) is byte for byte the seed
    assert len(texts[-1].splitlines()) == len(seed.splitlines())


def test_weights_that_would_not_sum_to_100_are_refused_before_writing():
    three = ISTIO_90_10.read_text().rstrip("\n") + ("\n    - destination:\n        host: reviews\n        subset: v3\n"
                                                  "      weight: 5\n")
    with pytest.raises(ManifestError, match="other destinations with weight 5; the stable and canary weights could "
                                            "not sum to 100"):
        plan_step(three, settings(REVIEWS), 1, V2, filename="f.yaml")
    off = ISTIO_90_10.read_text().replace("weight: 90", "weight: 80")
    with pytest.raises(ManifestError, match="do not sum to 100"):
        plan_step(off, settings(REVIEWS), 0, V2, filename="f.yaml", first=True)


@pytest.mark.parametrize(("target", "words"), [
    (dict(REVIEWS, canary={"host": "reviews", "subset": "v9"}), "no route with both the stable destination host "
                                                                "'reviews' subset 'v1' and the canary destination host "
                                                                "'reviews' subset 'v9'; add the canary with weight: 0"),
    (dict(REVIEWS, name="ratings"), "no VirtualService 'ratings'"),
    (dict(ROUTE, canary="reviews-v3"), "backend 'reviews-v3'"),
])
def test_a_destination_that_is_not_there_is_named(target, words):
    path = HTTPROUTE_90_10 if target["kind"] == "httproute" else ISTIO_90_10
    with pytest.raises(ManifestError) as e:
        plan_rollback(path.read_text(), settings(target), V1, filename="f.yaml")
    assert words in str(e.value)


def test_the_same_destination_twice_is_a_config_error():
    with pytest.raises(ValueError, match="must differ"):
        settings(dict(ROUTE, canary="reviews-v1"))


# --------------------------------------------------------------------------- blue-green

BLUE_GREEN = {"kind": "blue-green", "active": "activeSlot",
              "slots": {"blue": {"value": "blue.modelUri"}, "green": {"value": "green.modelUri"}}}


def blue_green() -> CanarySettings:
    c = Canary.model_validate({"strategy": "blue-green", "interval": 5, "bake": 60, "target": BLUE_GREEN, "analysis": {
        "prometheus": "http://prom:9090", "checks": [{"name": "errors", "query": "e", "max": 0.05}]}})
    return CanarySettings(c, "/gitops.git", "main", "values.yaml", "push")


def test_blue_green_writes_the_idle_slot_then_switches_the_pointer_in_one_line():
    s = blue_green()
    assert s.canary.percents == [0, 100]
    seed = (Path(__file__).resolve().parents[1] / "fixtures" / "canary" / "helm-blue-green.yaml").read_text()
    seed = seed.replace("MODEL", "fraud")
    t1 = plan_step(seed, s, 0, V2, filename="values.yaml", first=True)
    assert changed_lines(seed, t1) == ['-  modelUri: ""     # idle', '+  modelUri: "s3://models/fraud/2"     # idle']
    t2 = plan_step(t1, s, 1, V2, filename="values.yaml")
    assert changed_lines(t1, t2) == ["-activeSlot: blue   # the slot that serves traffic",
                                     "+activeSlot: green   # the slot that serves traffic"]
    back = plan_rollback(t2, s, V1, filename="values.yaml", values=V2)
    assert back == t1  # one line back; the new version stays in its slot, ready again
    assert plan_rollback(t1, s, V1, filename="values.yaml", values=V2) == t1  # never switched: nothing to write
    # each step is idempotent; the next blue-green writes the slot that is idle now (blue)
    assert plan_step(t1, s, 0, V2, filename="values.yaml", first=True, resume=True) == t1
    assert plan_step(t2, s, 1, V2, filename="values.yaml") == t2
    v3 = dict(V2, version="3", storage_uri="s3://models/fraud/3")
    t3 = plan_step(t2, s, 0, v3, filename="values.yaml", first=True)
    assert changed_lines(t2, t3) == ['-  modelUri: "s3://models/fraud/1"', '+  modelUri: "s3://models/fraud/3"']
    with pytest.raises(Refused, match="already serves s3://models/fraud/2"):
        plan_step(t2, s, 0, V2, filename="values.yaml", first=True)


@pytest.mark.parametrize(("data", "words"), [
    ({"strategy": "blue-green", "steps": [10, 100]}, "strategy blue-green has the steps [0, 100]"),
    ({"strategy": "blue-green", "target": {"kind": "kserve"}}, "strategy blue-green goes with a target of kind blue-green"),
    ({"target": BLUE_GREEN, "steps": [10, 100]}, "strategy blue-green goes with a target of kind blue-green"),
    ({"strategy": "blue-green", "target": dict(BLUE_GREEN, slots={"blue": {"value": "a"}})}, "exactly two slots"),
])
def test_blue_green_config_mistakes_are_named(data, words):
    base = {"interval": 5, "target": BLUE_GREEN, "analysis": {
        "prometheus": "http://prom:9090", "checks": [{"name": "errors", "query": "e", "max": 0.05}]}}
    with pytest.raises(ValueError, match=re.escape(words)):
        Canary.model_validate({**base, **data})
