"""A model repository's .mlgate.yml cannot make the bot send its MLflow credentials to a server
of the repository's choosing (found by the break-it pass of issue 13): with credentials in the
bot's environment, only bot.yml's tracking_uri is used."""

from __future__ import annotations

import pytest

from mlgate.bot.handlers.common import tracking_uri_for
from mlgate.bot.settings import BotSettings
from mlgate.core import config as cfgmod
from mlgate.core.errors import MlgateError

CFG = cfgmod.parse("""model: m
tracking_uri: https://mlflow.attacker.example
environments:
  - name: staging
    gitops: {repository: "https://github.com/acme/deploy", path: s.yaml, target: {kind: kserve}}
""", ".mlgate.yml")


@pytest.mark.parametrize("var", ["MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"])
def test_a_repository_named_server_is_refused_while_the_bot_holds_credentials(var):
    with pytest.raises(MlgateError, match="set tracking_uri in bot.yml") as e:
        tracking_uri_for(BotSettings(), CFG, {var: "s3cret"})
    assert "s3cret" not in str(e.value) and var in str(e.value)


def test_bot_yml_tracking_uri_wins_and_gets_the_credentials():
    s = BotSettings(tracking_uri="https://mlflow.internal")
    assert tracking_uri_for(s, CFG, {"MLFLOW_TRACKING_TOKEN": "s3cret"}) == "https://mlflow.internal"


def test_without_credentials_the_repository_server_is_used():
    assert tracking_uri_for(BotSettings(), CFG, {"MLFLOW_TRACKING_TOKEN": "  "}) == "https://mlflow.attacker.example"
