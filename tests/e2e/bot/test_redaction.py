"""A forge error that echoes the bot's token (a proxy, a GitHub Enterprise error page) never puts it in
the PR comment, the delivery's outcome/error, an audit record or the log (issue 10), against
``mlgate bot serve`` and the OpenAPI-checked fake GitHub."""

from __future__ import annotations

import json

import pytest

from tests.e2e.bot.conftest import GH_TOKEN, World
from tests.e2e.bot.forge_calls import create_pr

pytestmark = pytest.mark.slow


def test_a_token_echoed_by_the_forge_reaches_no_comment_outcome_audit_or_log(world: World):
    w = world
    w.register(w.head())
    w.gh.add_review(w.repo, w.pr, "bob", "APPROVED", commit_id=w.head())
    # the create-PR call is refused, and the refusal echoes the request's credentials three ways
    w.gh.fail_next("POST", create_pr(w.deploy), 403,
                   message="Forbidden by proxy. Request: Authorization: {authorization}; "
                           "credentials {credentials}; retry with https://x-access-token:{credentials}@github.com")
    log_before = len(w.bot.log.read_text())
    audit_before = len(w.bot.audit())

    info = w.promote("/promote", by="carol")

    refused = [c for c in w.gh.calls("POST", create_pr(w.deploy)) if c[2] == 403]
    assert refused, "the fake did not refuse the create-PR call: the test proves nothing"
    reply = w.reply()
    assert "refused" in reply and "***" in reply, reply
    assert GH_TOKEN not in reply, "the token reached the public PR comment"
    stored = f"{info.outcome} {info.error}"
    assert "refused" in stored and GH_TOKEN not in stored, "the token reached the delivery's outcome/error"
    records = w.bot.audit()[audit_before:]
    assert records and any("refused" in json.dumps(r) for r in records)
    assert all(GH_TOKEN not in json.dumps(r) for r in w.bot.audit()), "the token reached the audit table"
    log = w.bot.log.read_text()[log_before:]
    assert info.id in log and GH_TOKEN not in log, "the token reached the bot's log"
