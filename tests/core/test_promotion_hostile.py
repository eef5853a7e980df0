"""Promotion commit messages written by someone else: git history is read by ``mlgate reconcile``
on every run, so a trailer no promotion of mlgate writes must never crash it."""

from __future__ import annotations

import pytest

from mlgate.core.promotion import parse_message

HEAD = "Promote fraud version 1 to prod\n\nModel: fraud\nModel-Version: 1\nEnvironment: prod\nAlias: champion\n"


@pytest.mark.parametrize("number", ["\u00b2", "\u00b9\u00b3", "\u0663", "12a", "-4"])
def test_a_source_number_that_is_not_ascii_digits_is_no_number_not_a_crash(number):
    # "²" passed str.isdigit() and int() raised ValueError: reconcile failed on every run after such a commit
    p = parse_message(HEAD + f"Source-Number: {number}")
    assert p is not None and p.trigger.number is None and p.version == "1"


def test_a_source_number_of_digits_is_kept():
    assert parse_message(HEAD + "Source-Number: 42").trigger.number == 42
