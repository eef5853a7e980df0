"""Pure planning of canary manifest edits, the report, and the ``canary:`` config section."""

from __future__ import annotations

import difflib
from dataclasses import replace
from pathlib import Path

import pytest

from mlgate.core import canary as core
from mlgate.core.canary import CanarySettings, Observation, plan_rollback, plan_step
from mlgate.core.config import Canary, parse
from mlgate.core.errors import ConfigError, ManifestError, Refused
from mlgate.core.manifests import set_value

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "canary"
V2 = {"model_uri": "models:/fraud/2", "storage_uri": "s3://models/fraud/2", "version": "2", "model": "fraud", "run_id": "r2"}
V1 = dict(V2, model_uri="models:/fraud/1", storage_uri="s3://models/fraud/1", version="1", run_id="r1")
CHECKS = [{"name": "errors", "query": "e", "max": 0.05}]


def settings(target: dict, steps=(10, 50, 100)) -> CanarySettings:
    c = Canary.model_validate({"steps": list(steps), "interval": 5,
                               "analysis": {"prometheus": "http://prom:9090", "checks": CHECKS}, "target": target})
    return CanarySettings(c, "/gitops.git", "main", "f.yaml", "push")


def changed_lines(a: str, b: str) -> list[str]:
    """The -/+ lines of a unified diff (no context), hunk by hunk."""
    return [ln.rstrip("\n") for ln in difflib.unified_diff(a.splitlines(True), b.splitlines(True), n=0)
            if ln[:1] in "+-" and not ln.startswith(("+++", "---"))]


def swaps(a: str, b: str) -> list[tuple[str, str]]:
    """(old line, new line) for every line that differs between two texts of equal line count."""
    la, lb = a.splitlines(), b.splitlines()
    assert len(la) == len(lb), "a line was added or removed"
    return [(x, y) for x, y in zip(la, lb) if x != y]


def kserve_text() -> str:
    return (FIX / "kserve-serverless.yaml").read_text().replace("MODEL", "fraud")


# --------------------------------------------------------------------------- KServe


def test_kserve_steps_change_only_the_uri_and_the_traffic_percent():
    s = settings({"kind": "kserve", "name": "fraud-model"})
    t0 = kserve_text()
    t1 = plan_step(t0, s, 0, V2, filename="f.yaml", first=True)
    assert changed_lines(t0, t1) == ['-      storageUri: "s3://models/fraud/1"', '+      storageUri: "s3://models/fraud/2"',
                                     "+    canaryTrafficPercent: 10"]
    t2 = plan_step(t1, s, 1, V2, filename="f.yaml")
    assert changed_lines(t1, t2) == ["-    canaryTrafficPercent: 10", "+    canaryTrafficPercent: 50"]
    t3 = plan_step(t2, s, 2, V2, filename="f.yaml")
    assert changed_lines(t2, t3) == ["-    canaryTrafficPercent: 50", "+    canaryTrafficPercent: 100"]
    # a retry of a step already written changes nothing (no second commit)
    assert plan_step(t1, s, 0, V2, filename="f.yaml", first=True, resume=True) == t1
    # ...but a fresh start on a manifest that already splits traffic is refused
    with pytest.raises(Refused, match="canaryTrafficPercent: 10"):
        plan_step(t1, s, 0, V2, filename="f.yaml", first=True)
    # the ConfigMap's quoted "yes" and everything else are untouched
    assert t3.endswith('  enabled: "yes"\n  threshold: "0.5"\n')


def test_kserve_rollback_restores_the_primary_and_pins_traffic_to_it():
    s = settings({"kind": "kserve"})
    t0 = kserve_text()
    t2 = plan_step(plan_step(t0, s, 0, V2, filename="f.yaml", first=True), s, 1, V2, filename="f.yaml")
    back = plan_rollback(t2, s, V1, filename="f.yaml")
    assert swaps(t2, back) == [('      storageUri: "s3://models/fraud/2"', '      storageUri: "s3://models/fraud/1"'),
                               ("    canaryTrafficPercent: 50", "    canaryTrafficPercent: 0")]
    assert plan_rollback(back, s, V1, filename="f.yaml") == back


# --------------------------------------------------------------------------- KServe Standard mode (spec.canary)

KSERVE_SCHEMA = Path("/work/shared/specs/kserve/inferenceservice.v1beta1.schema.json")
_validator = None


def schema_errors(text: str) -> list[str]:
    """Every InferenceService of ``text`` checked against KServe v0.20's CRD schema (vendored, see
    shared/specs/kserve/SOURCE.md; in spec.canary[].predictor, model requires name and modelFormat)."""
    import json

    from jsonschema import Draft7Validator
    from ruamel.yaml import YAML

    global _validator
    if _validator is None:
        _validator = Draft7Validator(json.loads(KSERVE_SCHEMA.read_text()))
    out = []
    for doc in YAML(typ="safe", pure=True).load_all(text):
        if isinstance(doc, dict) and doc.get("kind") == "InferenceService":
            out += [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in _validator.iter_errors(doc)]
    return out


STANDARD = "rollout-strategy-example"


def standard_text() -> str:
    return (FIX / "kserve-standard-mode.yaml").read_text()  # kserve/kserve docs/samples, byte for byte


def test_kserve_standard_steps_add_raise_and_promote_a_canary_entry():
    s = settings({"kind": "kserve", "name": STANDARD})
    t0 = standard_text()
    assert schema_errors(t0) == []
    t1 = plan_step(t0, s, 0, V2, filename="f.yaml", first=True)
    # step 1: only added lines, right after the primary predictor, in the file's own indentation
    assert changed_lines(t0, t1) == [
        "+  canary:", "+    - predictor:", "+        name: v2", "+        model:", "+          modelFormat:",
        "+            name: sklearn", "+          name: kserve-container", '+          storageUri: "s3://models/fraud/2"',
        "+      trafficPercent: 10"]
    assert t1.index("+  canary:"[1:]) < t1.index("  transformer:")
    t2 = plan_step(t1, s, 1, V2, filename="f.yaml")
    assert changed_lines(t1, t2) == ["-      trafficPercent: 10", "+      trafficPercent: 50"]
    t3 = plan_step(t2, s, 2, V2, filename="f.yaml")
    # the 100 % step: the primary serves the new model, the entry is gone
    assert changed_lines(t0, t3) == ['-      storageUri: "s3://my-bucket/model"', '+      storageUri: "s3://models/fraud/2"']
    for t in (t1, t2, t3):
        assert schema_errors(t) == []
    # steps already written change nothing (no second commit)
    assert plan_step(t1, s, 0, V2, filename="f.yaml", first=True, resume=True) == t1
    assert plan_step(t2, s, 1, V2, filename="f.yaml") == t2 and plan_step(t3, s, 2, V2, filename="f.yaml") == t3


def test_kserve_standard_rollback_removes_the_entry_and_gives_back_the_seed():
    s = settings({"kind": "kserve", "name": STANDARD})
    t0 = standard_text()
    t2 = plan_step(plan_step(t0, s, 0, V2, filename="f.yaml", first=True), s, 1, V2, filename="f.yaml")
    back = plan_rollback(t2, s, V1, filename="f.yaml", version="2")
    assert back == t0 and schema_errors(back) == []
    assert plan_rollback(back, s, V1, filename="f.yaml", version="2") == back


def test_kserve_standard_entry_joins_an_existing_list_and_a_canary_in_flight_is_refused():
    s = settings({"kind": "kserve", "name": STANDARD})
    v3 = dict(V2, version="3", storage_uri="s3://models/fraud/3")
    t1 = plan_step(standard_text(), s, 0, V2, filename="f.yaml", first=True)
    with pytest.raises(Refused, match="already sends 10 % to canary entry 'v2'"):
        plan_step(t1, s, 0, v3, filename="f.yaml", first=True)
    dark = plan_step(standard_text(), settings({"kind": "kserve", "name": STANDARD}, steps=(0, 50, 100)), 0, V2,
                     filename="f.yaml", first=True)
    assert "      trafficPercent: 0" in dark and schema_errors(dark) == []  # a dark launch takes no traffic
    both = plan_step(dark, s, 0, v3, filename="f.yaml", first=True)
    assert changed_lines(dark, both)[0] == "+    - predictor:" and "name: v3" in both and schema_errors(both) == []
    assert plan_rollback(both, s, V1, filename="f.yaml", version="3") == dark


@pytest.mark.parametrize("indent", [2, 4])
def test_kserve_standard_entry_follows_the_files_indentation(indent):
    unit = " " * indent
    text = (f"apiVersion: serving.kserve.io/v1beta1\nkind: InferenceService\nmetadata:\n{unit}name: m\n"
            f"{unit}annotations:\n{unit}{unit}serving.kserve.io/deploymentMode: RawDeployment\nspec:\n"
            f"{unit}predictor:\n{unit}{unit}model:\n{unit}{unit}{unit}modelFormat: {{name: xgboost, version: '2'}}\n"
            f"{unit}{unit}{unit}protocolVersion: v2\n{unit}{unit}{unit}storageUri: s3://b/1\n"
            f"{unit}{unit}containers:\n{unit}{unit}- name: sidecar\n{unit}{unit}  image: busybox\n")
    s = settings({"kind": "kserve"})
    t1 = plan_step(text, s, 0, V2, filename="f.yaml", first=True)
    added = [ln[1:] for ln in changed_lines(text, t1)]
    assert added[0] == f"{unit}canary:" and added[1] == f"{unit}- predictor:"  # this file's lists are not indented
    assert f"{unit}  {unit}name: v2" in added and schema_errors(t1) == []
    assert "protocolVersion: v2" in t1.split("canary:")[1] and "version: \"2\"" in t1.split("canary:")[1]
    assert plan_rollback(t1, s, V1, filename="f.yaml", version="2") == text


def test_modelmesh_is_refused_with_the_reason():
    text = kserve_text().replace('deploymentMode: "Serverless"', 'deploymentMode: "ModelMesh"')
    with pytest.raises(ManifestError) as e:
        plan_step(text, settings({"kind": "kserve"}), 0, V2, filename="f.yaml", first=True)
    assert "deploymentMode: ModelMesh" in str(e.value) and "weighted" in str(e.value)


def test_every_knative_step_validates_against_the_kserve_schema():
    s = settings({"kind": "kserve", "name": "fraud-model"})
    t = kserve_text()
    for i in range(3):
        t = plan_step(t, s, i, V2, filename="f.yaml", first=i == 0)
        assert schema_errors(t) == []
    assert schema_errors(plan_rollback(t, s, V1, filename="f.yaml")) == []


@pytest.mark.parametrize("mode", ["Knative", "serverless"])
def test_knative_mode_names_are_accepted(mode):
    text = kserve_text().replace('deploymentMode: "Serverless"', f'deploymentMode: "{mode}"')
    assert "canaryTrafficPercent: 10" in plan_step(text, settings({"kind": "kserve"}), 0, V2, filename="f.yaml", first=True)


def test_several_inference_services_need_a_name():
    text = (FIX / "kserve-standard-mode.yaml").read_text()
    with pytest.raises(ManifestError, match="3 InferenceServices .*set canary.target.name"):
        plan_step(text, settings({"kind": "kserve"}), 0, V2, filename="f.yaml", first=True)


def test_old_predictor_layout_names_the_missing_path():
    text = (FIX / "kserve-canary-tensorflow.yaml").read_text()
    with pytest.raises(ManifestError, match=r"spec\.predictor\.model\.storageUri"):
        plan_step(text, settings({"kind": "kserve"}), 0, V2, filename="f.yaml", first=True)


def test_a_canary_already_in_flight_is_refused_at_start_only():
    s = settings({"kind": "kserve"})
    t1 = plan_step(kserve_text(), s, 0, V1 | {"storage_uri": "s3://models/fraud/9"}, filename="f.yaml", first=True)
    inflight = set_value(t1, core.KSERVE_PERCENT, "30").text
    with pytest.raises(Refused, match="already splits traffic .*canaryTrafficPercent: 30"):
        plan_step(inflight, s, 0, V2, filename="f.yaml", first=True)
    # 0 (after a rollback) and 100 (after a promotion) are not in flight
    for pct in ("0", "100"):
        done = set_value(t1, core.KSERVE_PERCENT, pct).text
        assert "canaryTrafficPercent: 10" in plan_step(done, s, 0, V2, filename="f.yaml", first=True)


# --------------------------------------------------------------------------- weighted


ISTIO = {"kind": "weighted", "canary_weight": "spec.http[0].route[1].weight",
         "primary_weight": "spec.http[0].route[0].weight"}


def test_istio_route_with_traffic_on_the_canary_is_refused():
    text = (FIX / "istio-reviews-90-10.yaml").read_text()
    with pytest.raises(Refused, match=r"spec\.http\[0\]\.route\[1\]\.weight already carries 10 %"):
        plan_step(text, settings(ISTIO), 0, V2, filename="vs.yaml", first=True)


def test_istio_weights_move_together_and_roll_back():
    text = (FIX / "istio-reviews-90-10.yaml").read_text()
    text = set_value(set_value(text, ISTIO["canary_weight"], "0").text, ISTIO["primary_weight"], "100").text
    s = settings(ISTIO)
    t1 = plan_step(text, s, 0, V2, filename="vs.yaml", first=True)
    assert swaps(text, t1) == [("      weight: 100", "      weight: 90"), ("      weight: 0", "      weight: 10")]
    t2 = plan_step(t1, s, 1, V2, filename="vs.yaml")
    t3 = plan_step(t2, s, 2, V2, filename="vs.yaml")
    assert swaps(t2, t3) == [("      weight: 50", "      weight: 0"), ("      weight: 50", "      weight: 100")]
    assert plan_rollback(t2, s, V1, filename="vs.yaml") == text


def test_weights_that_do_not_sum_to_100_are_an_error():
    text = (FIX / "istio-reviews-90-10.yaml").read_text()
    text = set_value(set_value(text, ISTIO["canary_weight"], "0").text, ISTIO["primary_weight"], "80").text
    with pytest.raises(ManifestError, match=r"do not sum to 100"):
        plan_step(text, settings(ISTIO), 0, V2, filename="vs.yaml", first=True)


HELM = {"kind": "weighted", "canary_weight": "canary.weight", "primary_weight": "primary.weight",
        "canary_value": "canary.modelUri", "primary_value": "primary.modelUri"}


def test_helm_pair_moves_the_new_version_to_the_primary_at_100():
    text = (FIX / "helm-values.yaml").read_text().replace("MODEL", "fraud")
    s = settings(HELM)
    t1 = plan_step(text, s, 0, V2, filename="values.yaml", first=True)
    assert swaps(text, t1) == [
        ("  weight: 100", "  weight: 90"),
        ('  modelUri: ""          # empty: no canary deployed', '  modelUri: "s3://models/fraud/2"          # empty: no canary deployed'),
        ("  weight: 0", "  weight: 10")]
    t2 = plan_step(t1, s, 1, V2, filename="values.yaml")
    t3 = plan_step(t2, s, 2, V2, filename="values.yaml")
    assert swaps(t2, t3) == [('  modelUri: "s3://models/fraud/1"', '  modelUri: "s3://models/fraud/2"'),
                             ("  weight: 50", "  weight: 100"), ("  weight: 50", "  weight: 0")]
    # the next canary can start from there
    assert "weight: 10" in plan_step(t3, s, 0, V1 | {"storage_uri": "s3://models/fraud/3"}, filename="values.yaml", first=True)
    back = plan_rollback(t2, s, V1, filename="values.yaml")
    assert swaps(t2, back) == [
        ("  weight: 50", "  weight: 100"),
        ('  modelUri: "s3://models/fraud/2"          # empty: no canary deployed',
         '  modelUri: "s3://models/fraud/1"          # empty: no canary deployed'),
        ("  weight: 50", "  weight: 0")]


def test_without_primary_value_the_route_ends_at_canary_100_and_the_next_start_explains():
    target = {k: v for k, v in HELM.items() if k != "primary_value"}
    text = (FIX / "helm-values.yaml").read_text().replace("MODEL", "fraud")
    s = settings(target)
    t = text
    for i in range(3):
        t = plan_step(t, s, i, V2, filename="values.yaml", first=i == 0)
    assert "  weight: 100\n  replicas: 1" in t
    with pytest.raises(Refused, match="without canary.target.primary_value"):
        plan_step(t, s, 0, V2, filename="values.yaml", first=True)


# --------------------------------------------------------------------------- report


def _record_with_history():
    s = settings({"kind": "kserve"})
    r = core.new_canary(model="fraud", environment="production", alias="champion", version="2", primary_version="1",
                        settings=replace(s, canary=s.canary.model_copy(update={"analysis": s.canary.analysis.model_copy(
                            update={"checks": [s.canary.analysis.checks[0],
                                               s.canary.analysis.checks[0].model_copy(update={
                                                   "name": "latency", "max": None, "primary_query": "p",
                                                   "max_ratio": 1.5})]})})),
                        values=V2, primary_values=V1, now=1_700_000_000.0)
    r = replace(r, id=3, revision=1)
    r = core.step_written(r, commit="0123456789abcdef", url=None, live=True, now=1_700_000_001.0)
    r, _ = core.measure(r, {"errors": Observation(0.01), "latency": Observation(0.1, primary=0.1)}, now=1_700_000_006.0)
    r, d = core.measure(r, {"errors": Observation(0.02), "latency": Observation(0.11, primary=0.1)}, now=1_700_000_011.0)
    return core.start_advance(r, now=1_700_000_012.0, reason=d.reason)


def test_report_is_one_markdown_body_with_a_chart_per_check():
    r = _record_with_history()
    t = [core.Transition(1_700_000_000.0, None, "started", 0, 10, "start", "starting", "alice"),
         core.Transition(1_700_000_012.0, "observing", "advancing", 1, 50, "advance", "all checks | passed", "bot")]
    body = core.render_report(r, t)
    assert body.startswith("<!-- mlgate-canary id=3 model=fraud environment=production -->")
    assert "### Canary: fraud v2 → production" in body
    assert "**advancing**: all checks passed at step 1 of 3 (10 %), advancing to 50 %" in body
    assert "| 1 | 10 % | `0123456789ab` | 22:13:21Z | passed |" in body
    assert "| 2 | 50 % | | | being written |" in body
    assert body.count("```mermaid\nxychart-beta") == 3  # traffic per step, then one per check
    assert "    line [0.01, 0.02]\n    line [0.05, 0.05]" in body  # canary value, then the max threshold
    assert "    line [0.1, 0.11]\n    line [0.1, 0.1]" in body  # latency: canary, then primary
    assert 'x-axis ["10% +6s", "10% +11s"]' in body
    assert "all checks \\| passed" in body  # table cells are escaped
    assert "<details><summary>History (2 transitions)</summary>" in body


def test_report_stays_below_the_comment_size_limit_on_a_long_canary():
    r = _record_with_history()
    r = core.step_written(r, commit="feedface", url=None, live=True, now=1_700_000_013.0)
    obs = {"errors": Observation(0.03, samples=10), "latency": Observation(0.2, primary=0.1)}
    for i in range(600):
        r, _ = core.measure(r, obs, now=1_700_000_020.0 + 5 * i)
    body = core.render_report(r, [core.Transition(1.0, "observing", "observing", 1, 50, "measure:retry", "x" * 80, "bot")] * 300)
    assert len(body) < 65_536  # GitHub's comment body limit


# --------------------------------------------------------------------------- config


BASE = """\
model: fraud
environments:
  - name: production
    gitops: {repository: ../gitops, path: isvc.yaml, target: {kind: kserve}}
    canary:
      steps: STEPS
      interval: 30
      analysis:
        prometheus: http://prometheus:9090
        checks:
          - name: errors
            query: 'sum(rate(errors{version="{version}"}[1m]))'
            CHECK
      target: TARGET
"""


def cfg_text(steps="[10, 50, 100]", check="max: 0.05", target="{kind: kserve, name: fraud-model}") -> str:
    return BASE.replace("STEPS", steps).replace("CHECK", check).replace("TARGET", target)


def test_a_full_canary_section_parses():
    c = parse(cfg_text(check="max: 0.05\n            failure_limit: 3\n            min_samples: 50\n"
                             "            samples_query: sum(requests)")).environment("production").canary
    assert c is not None and c.steps == [10, 50, 100] and c.interval == 30
    assert c.analysis.checks[0].failure_limit == 3 and c.target.kind == "kserve"


@pytest.mark.parametrize(("kw", "expect"), [
    ({"steps": "[50, 10, 100]"}, "f.yml:6:14: environments.0.canary.steps: steps must be strictly increasing"),
    ({"steps": "[10, 50]"}, "steps must end at 100"),
    ({"steps": "[10, 150, 100]"}, "step 150 is not a percentage between 0 and 100"),
    ({"check": "failure_limit: 2"}, "a canary check needs at least one of max, min, max_ratio"),
    ({"check": "max_ratio: 1.2"}, "max_ratio and primary_query go together"),
    ({"check": "max: 0.1\n            maxx: 2"}, "unknown key 'maxx' at environments.0.canary.analysis.checks.0.maxx"),
    ({"target": "{kind: weighted, canary_weight: a.w, primary_weight: a.w}"}, "must be different key paths"),
    ({"target": "{kind: istio}"}, "environments.0.canary.target"),
])
def test_canary_config_errors_are_located(kw, expect):
    with pytest.raises(ConfigError) as e:
        parse(cfg_text(**kw), "f.yml")
    assert any(expect in str(p) for p in e.value.problems), [str(p) for p in e.value.problems]
