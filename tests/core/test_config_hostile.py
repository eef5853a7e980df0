"""Hostile user-written YAML (.mlgate.yml read by the bot from any repository it serves, bot.yml):
a "billion laughs" document must be a located config error at once, not hours of a worker's time."""

from __future__ import annotations

import time

import pytest

from mlgate.core import config as cfgmod
from mlgate.core.errors import ConfigError


def laughs(levels: int = 9, key: str = "model") -> str:
    """Nine lines of aliases that expand to 9**levels strings (the classic billion laughs)."""
    text = 'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n'
    prev = "a"
    for name in "bcdefghij"[: levels - 1]:
        text += f"{name}: &{name} [" + ", ".join(["*" + prev] * 9) + "]\n"
        prev = name
    return text + f"{key}: *{prev}\n"


def test_a_billion_laughs_config_is_refused_at_once():
    started = time.monotonic()
    with pytest.raises(ConfigError, match=r"x\.yml:1:1: the document expands to more than 100000 values"):
        cfgmod.parse(laughs(), "x.yml")
    assert time.monotonic() - started < 5  # it ran for hours: every check walked 387 million strings


def test_a_billion_laughs_bot_yml_is_refused(tmp_path):
    from mlgate.bot.settings import load_settings

    bot_yml = tmp_path / "bot.yml"
    bot_yml.write_text(laughs(key="models"), encoding="utf-8")
    with pytest.raises(ConfigError, match="expands to more than"):
        load_settings(str(bot_yml), {})


def test_aliases_within_reason_still_work():
    cfg = cfgmod.parse("""\
model: fraud
environments:
  - name: staging
    gitops: &g {repository: acme/deploy, path: s.yaml, target: {kind: kserve}}
  - name: production
    requires: staging
    gitops: *g
""", "x.yml")
    assert [e.gitops.path for e in cfg.environments] == ["s.yaml", "s.yaml"]
