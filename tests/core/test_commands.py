"""The comment parser: a table of cases (issue 3, "Commands" and "Cases from real-world reports")."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlgate.core.commands import Command, CommandMistake, help_text, parse, resolve_rollback_word


def only(body: str):
    found = parse(body)
    assert len(found) == 1, found
    return found[0]


# (comment body, expected (name, model, version, environment, gpus)) for well-formed commands
GOOD = [
    ("/promote", ("promote", None, None, None, None)),
    ("/promote iris", ("promote", "iris", None, None, None)),
    ("/promote iris@7", ("promote", "iris", "7", None, None)),
    ("/promote @7", ("promote", None, "7", None, None)),
    ("/promote iris@v12 to production", ("promote", "iris", "12", "production", None)),
    ("/promote to staging", ("promote", None, None, "staging", None)),
    ("/promote @3 to staging", ("promote", None, "3", "staging", None)),
    ("/Promote iris to staging", ("promote", "iris", None, "staging", None)),
    ("/rollback", ("rollback", None, None, None, None)),
    ("/rollback iris", ("rollback", "iris", None, None, None)),
    ("/rollback iris production", ("rollback", "iris", None, "production", None)),
    ("/status", ("status", None, None, None, None)),
    ("/help", ("help", None, None, None, None)),
    ("/train", ("train", None, None, None, None)),
    ("/train --gpus 4", ("train", None, None, None, 4)),
    ("/train --gpus=2", ("train", None, None, None, 2)),
    ("/abort", ("abort", None, None, None, None)),
]


@pytest.mark.parametrize("body,expected", GOOD, ids=[b for b, _ in GOOD])
def test_well_formed_commands(body, expected):
    c = only(body)
    assert isinstance(c, Command)
    assert (c.name, c.model, c.version, c.environment, c.gpus) == expected


CLEAN = "/promote iris@7 to staging"
SAME_AS_CLEAN = [
    "/promote iris@7 to staging\r\n",  # trailing CRLF (GitHub web UI sends \r\n)
    "\r\n\r\n/promote iris@7 to staging",  # leading blank lines
    "\n\n\n/promote iris@7 to staging\n",
    "   /promote iris@7 to staging   ",  # surrounding spaces
    "\t/promote iris@7 to staging".replace("\t", "  "),
    "/promote  iris@7   to   staging",  # repeated spaces
    "Looks good.\r\n/promote iris@7 to staging\r\nthanks",  # in the middle of a comment
]


@pytest.mark.parametrize("body", SAME_AS_CLEAN, ids=repr)
def test_whitespace_variants_parse_like_the_clean_command(body):
    clean = only(CLEAN)
    got = only(body)
    assert (got.name, got.model, got.version, got.environment) == (clean.name, clean.model, clean.version, clean.environment)


NOT_COMMANDS = [
    "",
    "please /promote iris",  # not at the start of a line
    "LGTM",
    "> /promote iris@7",  # quoted reply
    ">/promote iris@7",
    "  > /promote iris@7",
    "```\n/promote iris@7\n```",  # fenced code block
    "~~~\n/promote iris@7\n~~~",
    "````\n```\n/promote\n```\n````",  # a longer fence containing a shorter one
    "```yaml\nx: 1\n/promote\n",  # unclosed fence: the rest is code
    "    /promote iris@7",  # indented code block
    "text\n\n    /promote iris@7\n",
    "\t/promote iris@7",
    "/promotions/2024 folder",  # only starts with a slash
    "/promote-all",
    "/promote/now",
    "/etc/hosts is broken",
    "/promotions",
    "/tmp",
    "/ promote",
]


@pytest.mark.parametrize("body", NOT_COMMANDS, ids=repr)
def test_not_a_command_yields_nothing(body):
    assert parse(body) == []


BAD = [
    ("/promote --force", "unknown flag '--force'"),
    ("/promote iris --dry-run", "unknown flag '--dry-run'"),
    ("/promote iris@seven", "not a version number"),
    ("/promote iris@", "not a version number"),
    ("/promote iris staging", "write 'to ENV'"),
    ("/promote iris to", "exactly one environment"),
    ("/promote iris to staging now", "exactly one environment"),
    ("/status now", "takes no arguments"),
    ("/help me", "takes no arguments"),
    ("/rollback a b c", "too many arguments"),
    ("/train --gpu 2", "unknown flag '--gpu'"),
    ("/train --gpus", "needs a number"),
    ("/train --gpus two", "whole number"),
    ("/train now", "unexpected argument"),
    ("/promot iris", "did you mean /promote"),
    ("/stauts", "did you mean /status"),
]


@pytest.mark.parametrize("body,message", BAD, ids=[b for b, _ in BAD])
def test_malformed_commands_get_a_usage_reply(body, message):
    c = only(body)
    assert isinstance(c, CommandMistake)
    assert message in c.message
    reply = c.reply()
    assert "Usage:" in reply and c.usage and all(u in reply for u in c.usage)


def test_several_commands_in_one_comment_in_order():
    got = parse("/status\nsome words\n/promote iris to staging\n> /rollback\n\n/help")
    assert [c.name for c in got] == ["status", "promote", "help"]
    assert [c.line for c in got] == [1, 3, 6]
    # without the blank line, "/help" is a lazy continuation of the quote (CommonMark §5.1): quoted
    got = parse("/status\n> /rollback\n/help")
    assert [c.name for c in got] == ["status"]


def test_a_command_after_a_closed_fence_counts():
    got = parse("```\n/promote a\n```\n/promote b")
    assert len(got) == 1 and got[0].model == "b"


def test_the_help_text_never_triggers_a_command():
    # the bot's own help contains every command; parsed back it must yield nothing
    assert parse(help_text()) == []


def test_rollback_single_word_is_the_environment_when_it_names_one():
    c = only("/rollback production")
    r = resolve_rollback_word(c, "iris", ["staging", "production"])
    assert (r.model, r.environment) == (None, "production")
    c = only("/rollback iris")
    r = resolve_rollback_word(c, "iris", ["staging", "production"])
    assert (r.model, r.environment) == ("iris", None)


def test_describe_round_trips():
    for body, _ in GOOD:
        c = only(body)
        again = only(c.describe())
        assert (again.name, again.model, again.version, again.environment, again.gpus) == (
            c.name, c.model, c.version, c.environment, c.gpus)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=200))
def test_parse_never_raises_and_only_finds_line_starting_commands(body):
    found = parse(body)
    lines = body.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    for c in found:
        assert lines[c.line - 1].strip().startswith("/")
