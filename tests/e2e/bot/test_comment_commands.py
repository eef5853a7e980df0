"""Issue 10, "Commands hidden in HTML, typos answered with silence", end to end: signed deliveries →
``mlgate bot serve`` → fake GitHub (OpenAPI-checked, real git) and a real MLflow server.

A command inside raw HTML (``<pre>``, ``<details>``, ``<textarea>``) runs nothing and gets no reply;
a near miss of a command name (``/hlep``) gets a "did you mean" reply with the usage; ``--help``
after a command replies with its usage, not an error (cases from Atlantis'
``comment_parser_test.go``, TestParse_SubcommandUsage).
"""

from __future__ import annotations

import pytest

from tests.e2e.bot.conftest import World
from tests.e2e.bot.forge_calls import promotion_write

pytestmark = pytest.mark.slow

HIDDEN = [
    "<pre>/promote to staging</pre>",
    "<details><summary>x</summary>\n\n/promote\n</details>",
    "<textarea>/promote</textarea>",
]


def test_commands_inside_html_run_nothing(world: World):
    w = world
    w.register(w.head())
    w.gh.add_review(w.repo, w.pr, "bob", "APPROVED", commit_id=w.head())  # /promote would be allowed
    ds = [w.bot.send_github("issue_comment", w.comment(body, "carol")) for body in HIDDEN]
    infos = w.bot.wait(*ds)
    assert [i.outcome for i in infos] == ["no command in the comment"] * len(HIDDEN), infos
    assert w.promotion_prs() == [] and w.gh.calls("POST", promotion_write(w.deploy)) == []
    assert w.reply() == ""
    assert [a for a in w.bot.audit() if a.get("model") == w.model] == []
    # the same command written plainly does run: the hidden ones were refused for where they were
    info = w.promote("/promote", by="carol")
    assert "promotion PR opened" in info.outcome and len(w.promotion_prs()) == 1


def test_a_near_miss_gets_did_you_mean_with_the_usage(world: World):
    w = world
    info = w.promote("/hlep", by="dave")
    assert info.status == "done" and "usage error" in info.outcome and "did you mean /help" in info.outcome
    reply = w.reply()
    assert "did you mean" in reply and "/help" in reply and "Usage:" in reply
    info = w.promote("/stauts", by="dave")
    assert "did you mean /status" in w.reply()
    info = w.promote("/promotions/2024 folder has the plots", by="dave")
    assert info.outcome == "no command in the comment"
    assert w.promotion_prs() == []


def test_help_flag_replies_with_the_usage(world: World):
    w = world
    info = w.promote("/promote --help", by="dave")
    assert info.outcome == "help: replied"
    reply = w.reply()
    assert "Usage of /promote" in reply and "/promote [MODEL][@VERSION] [to ENV]" in reply
    assert "unknown flag" not in reply and w.promotion_prs() == []
