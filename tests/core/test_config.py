"""`.mlgate.yml` parsing: located errors (FILE:LINE:COL), schema drift, examples valid."""

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from ruamel.yaml import YAML

from mlgate.core.config import Config, json_schema, parse
from mlgate.core.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]

GOOD = """\
model: wine
validate:
  gates:
    - metric: accuracy
      min: 0.8
environments:
  - name: staging
    gitops:
      repository: ../gitops
      path: staging/isvc.yaml
      target: {kind: kserve, name: wine}
"""


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        parse(text, "f.yml")
    return [str(p) for p in exc.value.problems]


def test_valid_config_parses_with_defaults():
    cfg = parse(GOOD)
    assert cfg.model == "wine"
    assert cfg.experiment_name == "wine"
    assert cfg.tracking_uri == "sqlite:///.mlgate/mlflow.db"
    assert cfg.environment("staging").registry_alias == "staging"
    assert cfg.environment("staging").gitops.target.value == "{storage_uri}"


def test_production_holds_champion_by_default():
    text = GOOD.replace("name: staging", "name: production")
    assert parse(text).environment("production").registry_alias == "champion"


def test_misspelled_key_and_wrong_type_give_two_located_errors():
    text = GOOD.replace("      min: 0.8", "      min: high").replace("validate:", "validate:\n  gatez: []")
    assert problems(text) == [
        "f.yml:3:3: unknown key 'gatez' at validate.gatez",
        "f.yml:6:12: validate.gates.0.min: Input should be a valid number, unable to parse string as a number (got 'high')",
    ]


def test_missing_required_key_points_at_its_parent():
    text = "model: wine\nenvironments:\n  - name: staging\n"
    [msg] = problems(text)
    assert msg == "f.yml:3:5: missing required key 'gitops' at environments.0.gitops"


def test_unknown_target_kind_is_located_at_the_value():
    text = GOOD.replace("kind: kserve", "kind: kservee")
    [msg] = problems(text)
    assert msg.startswith("f.yml:11:") and "kservee" in msg


def test_duplicate_key_is_an_error_with_line():
    [msg] = problems("model: a\nmodel: b\n")
    assert msg.startswith("f.yml:2:1: duplicate key")


def test_yaml_syntax_error_is_located():
    [msg] = problems("model: [unclosed\n")
    assert msg.startswith("f.yml:2:1: YAML syntax error")


@pytest.mark.parametrize("text,needle", [
    ("", "empty"),
    ("- a\n", "must be a mapping"),
    ("model: 'bad name!'\n", "model"),
    (GOOD.replace("min: 0.8", "max_regression: fast"), "max_regression"),
    (GOOD.replace("min: 0.8", "direction: sideways\n      min: 1"), "direction"),
    (GOOD.replace("      min: 0.8", ""), "at least one of min, max, max_regression"),
    (GOOD.replace("path: staging/isvc.yaml", "path: ../escape.yaml"), "leaves the repository"),
    (GOOD.replace("path: staging/isvc.yaml", "path: /etc/passwd"), "leaves the repository"),
    (GOOD + "    requires: prod\n", "unknown environment 'prod'"),
])
def test_invalid_values_are_reported(text, needle):
    msgs = problems(text)
    assert any(needle in m for m in msgs), msgs


def test_relative_and_absolute_regressions():
    text = GOOD.replace("min: 0.8", "max_regression: '2.5%'")
    gate = parse(text).validate_.gates[0]
    assert gate.regression_allowance() == ("relative", 0.025)
    gate = parse(GOOD.replace("min: 0.8", "max_regression: 0.01")).validate_.gates[0]
    assert gate.regression_allowance() == ("absolute", 0.01)


def test_committed_schema_matches_the_models():
    committed = json.loads((ROOT / "schemas" / "mlgate.schema.json").read_text())
    assert committed == json_schema(), "schemas/mlgate.schema.json is stale: run 'make schemas'"


@pytest.mark.parametrize("path", sorted(ROOT.glob("examples/**/.mlgate.yml")), ids=str)
def test_examples_validate_against_schema_and_models(path):
    data = YAML(typ="safe").load(path.read_text())
    jsonschema.validate(data, json_schema())
    Config.model_validate(data)
    assert "yaml-language-server: $schema=" in path.read_text().splitlines()[0]


def test_config_check_cli_prints_every_problem_and_exits_2(tmp_path):
    bad = tmp_path / ".mlgate.yml"
    bad.write_text(GOOD.replace("      min: 0.8", "      min: high").replace("validate:", "validate:\n  gatez: []"))
    proc = subprocess.run([sys.executable, "-m", "mlgate", "config", "check", str(bad)], capture_output=True, text=True)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 2 and all(l.startswith(f"{bad}:") for l in lines)
    assert "Traceback" not in proc.stderr


TWO_ENVS = GOOD + """\
  - name: production
    requires: staging
    gitops:
      repository: ../gitops
      path: prod/isvc.yaml
      target: {kind: kserve, name: wine}
"""


@pytest.mark.parametrize("edit,expected", [
    # non-finite thresholds would make every comparison false and pass the gate
    (lambda t: t.replace("min: 0.8", "min: .nan"), "f.yml:5:12: validate.gates.0.min: Input should be a finite number"),
    (lambda t: t.replace("min: 0.8", "max_regression: .inf"), "f.yml:5:23:"),
    # an environment must not share its alias with another, nor take 'challenger'
    (lambda t: t.replace("  - name: staging\n", "  - name: staging\n    alias: champion\n"),
     "f.yml:13:11: environment 'production' holds alias 'champion' like environment 'staging'"),
    (lambda t: t.replace("name: staging\n", "name: challenger\n").replace("requires: staging", "requires: challenger"),
     "f.yml:7:11: environment 'challenger' would hold alias 'challenger'"),
    (lambda t: t.replace("  - name: staging\n", "  - name: staging\n    requires: production\n"),
     "requires forms a loop (staging -> production -> staging)"),
    (lambda t: t.replace("name: production", "name: staging").replace("requires: staging", "requires: qa"),
     "f.yml:12:11: environment name 'staging' is used twice (first as environments.0)"),
    (lambda t: t.replace("kind: kserve, name: wine}\n", 'kind: kserve, name: wine, value: "{nope}"}\n', 1),
     "f.yml:11:49: unknown placeholder {nope}"),
    (lambda t: t.replace("target: {kind: kserve, name: wine}\n", "target: {kind: keypath, path: 'a..b', value: x}\n", 1),
     "f.yml:11:37: bad key path 'a..b'"),
    (lambda t: t.replace("target: {kind: kserve, name: wine}\n", "target: {kind: keypath, path: a, select: nope, value: x}\n", 1),
     "select 'nope' must be KIND/NAME"),
    (lambda t: t.replace("model: wine\n", "model: wine\ntrain:\n  command: 'python \"unterminated'\n"),
     "f.yml:3:12: train.command cannot be split like a shell would: No closing quotation"),
    (lambda t: t.replace("model: wine\n", "model: wine\ntrain:\n  command: []\n"), "f.yml:3:12: train.command is empty"),
])
def test_whole_config_problems_are_located(edit, expected):
    msgs = problems(edit(TWO_ENVS))
    assert any(m.startswith(expected) or expected in m for m in msgs), msgs


def test_control_characters_and_deep_nesting_are_config_errors():
    [msg] = problems("model: x\x01\n")
    assert msg.startswith("f.yml:1:9: unacceptable character")
    [msg] = problems("model: " + "[" * 2000 + "]" * 2000 + "\n")
    assert "nested too deeply" in msg or "YAML" in msg


def test_unknown_target_kind_lists_the_kinds():
    [msg] = problems(GOOD.replace("kind: kserve", "kind: kservee"))
    assert "kind must be one of 'kserve', 'helm', 'kustomize-image', 'keypath' (got 'kservee')" in msg
