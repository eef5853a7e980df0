"""bot.yml + MLGATE_* environment → BotSettings; located errors; no secret in messages; schema drift."""

from __future__ import annotations

import json

import jsonschema
import pytest
from ruamel.yaml import YAML

from mlgate.bot.settings import BotSettings, check_servable, json_schema, load_settings
from mlgate.core.errors import ConfigError
from tests.conftest import ROOT


def test_defaults_need_only_a_webhook_secret():
    s = load_settings(None, {"MLGATE_GITHUB_WEBHOOK_SECRET": "abc"})
    check_servable(s)
    assert s.database_url.startswith("sqlite:///") and s.workers == 2
    assert s.github_webhook_secret.get_secret_value() == "abc"
    assert "abc" not in repr(s) and "abc" not in str(s.model_dump())


def test_no_secret_at_all_cannot_serve():
    s = load_settings(None, {})
    with pytest.raises(ConfigError, match="no webhook secret configured"):
        check_servable(s)


@pytest.mark.parametrize("value", ["", "   "])
def test_empty_secret_in_environment_is_an_error(value):
    with pytest.raises(ConfigError) as e:
        load_settings(None, {"MLGATE_GITHUB_WEBHOOK_SECRET": value})
    assert str(e.value).startswith("MLGATE_GITHUB_WEBHOOK_SECRET:1:1:")
    assert "is empty" in str(e.value)


def test_empty_secret_in_file_is_located(tmp_path):
    p = tmp_path / "bot.yml"
    p.write_text("workers: 1\ngitlab_webhook_token:\n")
    with pytest.raises(ConfigError) as e:
        load_settings(p, {})
    assert str(e.value) == f"{p}:2:1: gitlab_webhook_token: is empty: set a non-empty secret or leave the key out"
    p.write_text("workers: 1\ngitlab_webhook_token: ''\n")
    with pytest.raises(ConfigError, match=r":2:23: gitlab_webhook_token: is empty"):
        load_settings(p, {})


def test_environment_overrides_file_and_errors_are_located(tmp_path):
    p = tmp_path / "bot.yml"
    p.write_text("workers: 3\ndatabase_url: sqlite:///x.db\n")
    s = load_settings(p, {"MLGATE_WORKERS": "5", "MLGATE_GITHUB_APP_ID": "42", "MLGATE_GITHUB_PRIVATE_KEY": "-----BEGIN RSA PRIVATE KEY-----"})
    assert s.workers == 5 and s.database_url == "sqlite:///x.db" and s.github_app_id == 42
    with pytest.raises(ConfigError) as e:
        load_settings(p, {"MLGATE_WORKERS": "many"})
    assert str(e.value).startswith("MLGATE_WORKERS:1:1: workers:")
    p.write_text("workers: 3\nworkres: 2\nmax_body_bytes: -1\n")
    with pytest.raises(ConfigError) as e:
        load_settings(p, {})
    lines = str(e.value).splitlines()
    assert lines[0] == f"{p}:2:1: unknown key 'workres' at workres"
    assert lines[1].startswith(f"{p}:3:17: max_body_bytes:")


def test_secret_values_never_appear_in_errors(tmp_path):
    p = tmp_path / "bot.yml"
    p.write_text("github_webhook_secret: [s3cr3t-value]\n")
    with pytest.raises(ConfigError) as e:
        load_settings(p, {"MLGATE_GITLAB_TOKEN": "", "MLGATE_DATABASE_URL": "postgresql://u:pw-XYZ@h/db"})
    assert "s3cr3t-value" not in str(e.value)
    with pytest.raises(ConfigError) as e:
        load_settings(None, {"MLGATE_GITHUB_APP_ID": "7"})
    assert "github_app_id and github_private_key go together" in str(e.value)


def test_secret_values_include_the_database_password():
    s = load_settings(None, {"MLGATE_GITHUB_WEBHOOK_SECRET": "whs", "MLGATE_DATABASE_URL": "postgresql://u:pw-XYZ@h/db"})
    assert set(s.secret_values()) == {"whs", "pw-XYZ"}
    assert "pw-XYZ" not in s.safe_database_url()


def test_yaml_syntax_error_is_located(tmp_path):
    p = tmp_path / "bot.yml"
    p.write_text("workers: 2\n  bad: [\n")
    with pytest.raises(ConfigError, match=rf"^{p}:2:"):
        load_settings(p, {})


def test_committed_schema_matches_the_model():
    committed = json.loads((ROOT / "schemas" / "bot.schema.json").read_text())
    assert committed == json_schema(), "schemas/bot.schema.json is stale: run 'mlgate schema --bot > schemas/bot.schema.json'"


def test_example_bot_yml_is_valid_and_has_no_secrets():
    path = ROOT / "bot" / "bot.yml"
    data = YAML(typ="safe").load(path.read_text())
    jsonschema.validate(data, json_schema())
    s = load_settings(path, {})
    assert s.secret_values() == []
    assert isinstance(s, BotSettings)
