"""The facts file of `mlgate bot explain --facts` (issue 11): a JSON Schema in schemas/, an example
that validates and explains, and clear errors (exit 2, no traceback) for a file that does not fit."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from mlgate.bot.explain_facts import json_schema
from tests.fixtures.github import octokit

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "schemas" / "explain-facts.schema.json"
EXAMPLE = ROOT / "docs" / "explain-facts.example.json"


def explain(tmp_path: Path, facts: Path, body: str = "/promote") -> subprocess.CompletedProcess:
    payload = octokit.load("issue_comment.pr.promote.json")
    payload["comment"]["body"] = body
    delivery = tmp_path / "delivery.json"
    delivery.write_text(json.dumps(payload))
    return subprocess.run([sys.executable, "-m", "mlgate", "bot", "explain", str(delivery), "--facts", str(facts)],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)


def test_committed_schema_matches_the_model():
    assert json.loads(SCHEMA.read_text()) == json_schema(), "stale: mlgate schema --explain-facts > " + str(SCHEMA)


def test_the_example_validates_against_the_schema_and_explains_an_allowed_promotion(tmp_path):
    jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text())).validate(json.loads(EXAMPLE.read_text()))
    r = explain(tmp_path, EXAMPLE)
    assert r.returncode == 0, r.stderr
    assert "decision for /promote (wine-classifier version 7 to staging): allowed" in r.stdout
    assert "ok  approvals: 1/1 on 6dcb09b: @bob" in r.stdout
    # production needs maintain (carol has it) and 2 approvals, and staging to hold v7 first
    r = explain(tmp_path, EXAMPLE, "/promote to production")
    assert "refused" in r.stdout and "NO  approvals: 1/2" in r.stdout


@pytest.mark.parametrize(("change", "expected"), [
    (lambda f: f["reviews"][0].pop("state"), "$.reviews[0]: 'state' is a required property"),
    (lambda f: f["registry"]["versions"]["7"].update(tags={"mlgate.gates": 1}),
     "$.registry.versions.7.tags.mlgate.gates: 1 is not of type 'string'"),
    (lambda f: f.update(reviewz=[]), "$: Additional properties are not allowed ('reviewz' was unexpected)"),
    (lambda f: f.pop("config"), "$: 'config' is a required property"),
    (lambda f: f["pull_request"].update(head_sha="not-a-sha"), "$.pull_request.head_sha: 'not-a-sha' does not match"),
])
def test_a_facts_file_that_does_not_fit_says_where_and_exits_2(tmp_path, change, expected):
    facts = json.loads(EXAMPLE.read_text())
    change(facts)
    bad = tmp_path / "facts.json"
    bad.write_text(json.dumps(facts))
    r = explain(tmp_path, bad)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "the facts do not match schemas/explain-facts.schema.json" in r.stderr
    assert f"{bad}: {expected}" in r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""


@pytest.mark.parametrize("change", [
    lambda f: f.update(review_commits={"\u00b2": "6dcb09b5b57875f334f61aebed695e2e4193db5e"}),
    lambda f: f["registry"]["versions"].update({"\u00b3": dict(f["registry"]["versions"]["7"])}),
])
def test_keys_of_superscript_digits_are_no_numbers_not_an_internal_error(tmp_path, change):
    # str.isdigit() took "²" and int() raised: exit 70, "internal error: ValueError"
    facts = json.loads(EXAMPLE.read_text())
    change(facts)
    odd = tmp_path / "facts.json"
    odd.write_text(json.dumps(facts))
    r = explain(tmp_path, odd)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "decision for /promote (wine-classifier version 7 to staging): allowed" in r.stdout


def test_an_invalid_config_in_the_facts_is_a_located_config_error(tmp_path):
    facts = json.loads(EXAMPLE.read_text())
    facts["config"] = facts["config"].replace("min: 0.85", "min: high")
    bad = tmp_path / "facts.json"
    bad.write_text(json.dumps(facts))
    r = explain(tmp_path, bad)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert ".mlgate.yml (facts):5:" in r.stderr


MLFLOW_DELIVERY = {"entity": "model_version_alias", "action": "created", "timestamp": "2027-01-01T00:00:00Z",
                   "data": {"name": "fraud", "alias": "challenger", "version": "3"}}
MLFLOW_CONFIG = """model: fraud
environments:
  - name: staging
    trigger: {alias: challenger}
    gitops: {repository: acme/deploy, path: s.yaml, target: {kind: kserve}}
"""


@pytest.mark.parametrize(("versions", "expected"), [
    ({"3": 5}, "registry.versions.3 is int, expected an object"),
    ({"3": {"tags": [1, 2]}}, "registry.versions.3.tags must map tag names to strings"),
    ({"3": {"tags": "x"}}, "registry.versions.3.tags must map tag names to strings"),
    ({"3": {"tags": {"mlgate.gates": 1}}}, "registry.versions.3.tags must map tag names to strings"),
    ({"3": {"status": ["READY"]}}, "registry.versions.3.status is list, expected a string"),
])
def test_mlflow_facts_of_the_wrong_shape_are_a_usage_error_not_an_internal_error(tmp_path, versions, expected):
    # these crashed `mlgate bot explain` with exit 70 ("internal error: AttributeError ...")
    from mlgate.bot.registry_explain import explain_registry
    from mlgate.core.errors import UsageError

    facts = {"config": MLFLOW_CONFIG, "registry": {"versions": versions}}
    with pytest.raises(UsageError, match=re.escape(expected)):
        explain_registry(MLFLOW_DELIVERY, event="model_version_alias.created", facts=facts)


def test_an_mlflow_delivery_with_unusable_facts_exits_2_without_a_traceback(tmp_path):
    (tmp_path / "d.json").write_text(json.dumps(MLFLOW_DELIVERY))
    (tmp_path / "f.json").write_text(json.dumps({"config": MLFLOW_CONFIG, "registry": {"versions": {"3": 5}}}))
    r = subprocess.run([sys.executable, "-m", "mlgate", "bot", "explain", "d.json", "--facts", "f.json"],
                       capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "registry.versions.3 is int" in r.stderr and "internal error" not in r.stderr
    good = {"config": MLFLOW_CONFIG, "registry": {"versions": {"3": {"tags": {"mlgate.gates": "passed"}}}}}
    (tmp_path / "f.json").write_text(json.dumps(good))
    r = subprocess.run([sys.executable, "-m", "mlgate", "bot", "explain", "d.json", "--facts", "f.json"],
                       capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert r.returncode == 0 and "trigger of staging: version 3" in r.stdout, r.stderr


@pytest.mark.parametrize(("tags", "protect", "expected"), [
    ({"mlgate.promoted.production.at": "2027-01-15T08:00:00+00:00"}, True,
     "git deploys version 4, which mlgate promoted there: would put it back on version 4"),
    ({"mlgate.promoted.production.at": "2027-01-15T08:00:00+00:00"}, False, "only record and report it"),
    ({}, True, "would leave it unset (git deploys no version mlgate promoted there"),
])
def test_explain_a_deleted_alias(tags, protect, expected):
    from mlgate.bot.registry_explain import explain_registry

    config = MLFLOW_CONFIG + """  - name: production
    gitops: {repository: acme/deploy, path: p.yaml, target: {kind: kserve}}
""" + ("" if protect else "protect_aliases: false\n")
    delivery = {"entity": "model_version_alias", "action": "deleted", "timestamp": "2027-01-15T09:00:00+00:00",
                "data": {"name": "fraud", "alias": "champion"}}
    facts = {"config": config, "registry": {"versions": {"4": {"tags": tags}}}, "deployed": {"production": "4"}}
    text = explain_registry(delivery, event="model_version_alias.deleted", facts=facts)
    assert "event: alias 'champion' deleted from fraud at 2027-01-15T09:00:00+00:00" in text
    assert "alias 'champion' of production was deleted: " in text and expected in text, text
    assert "trigger" not in text  # deleting an alias triggers no promotion
