"""The bot's route table (``mlgate.bot.dispatch``) and the mapping of forge client errors
(``mlgate.edge.forges.errors``): no server, no forge."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any, get_args

import pytest

from mlgate.bot import dispatch, handlers
from mlgate.bot.dispatch import ROUTES, Router, delivery_error
from mlgate.bot.handlers import merged, promote, reviews, train
from mlgate.core.commands import NAMES
from mlgate.core.errors import InfraError, MlgateError, UsageError
from mlgate.core.events import Kind
from mlgate.edge.db.canaries import Conflict
from mlgate.edge.db.store import Delivery
from mlgate.edge.forges.base import ForgeBusy, ForgeError
from mlgate.edge.forges.errors import forge_refusal


def _client_error(package: str, **attrs: Any) -> Exception:
    """An exception whose class is defined in ``package`` (as PyGithub's or python-gitlab's are)."""
    cls = type("ClientError", (Exception,), {"__module__": f"{package}.exceptions"})
    err = cls("the forge said no")
    for k, v in attrs.items():
        setattr(err, k, v)
    return err


def _push_delivery(did: str = "d-push") -> Delivery:
    payload = {"ref": "refs/heads/main", "after": "a" * 40, "pusher": {"name": "alice"},
               "repository": {"full_name": "acme/model", "default_branch": "main"}}
    return Delivery(id=did, forge="github", event="push", payload=payload, headers={},
                    received_at=datetime.now(UTC), attempts=1)


def _ctx(forge: Any = None) -> handlers.HandlerContext:
    return handlers.HandlerContext(settings=SimpleNamespace(bot_login="mlgate-bot"), store=SimpleNamespace(),
                                   forges=lambda name, inst: forge)


# --------------------------------------------------------------------------- the table


def test_every_command_has_a_route():
    for name in NAMES:
        assert ROUTES.fetch("comment", name) is not None, name


def test_every_event_kind_has_a_route():
    for kind in get_args(Kind):
        if kind != "comment":  # comments are routed by their commands
            assert ROUTES.fetch(kind, "any-action") is not None, kind


@pytest.mark.parametrize("key, handler", [
    (("pull_request", "merged"), merged.on_merged),
    (("pull_request", "opened"), reviews.refresh_status),
    (("pull_request", "synchronize"), reviews.refresh_status),
    (("review", "submitted"), reviews.refresh_status),
    (("push", "push"), reviews.on_push),
])
def test_events_go_to_their_feature(key, handler):
    assert ROUTES.fetch(*key) is handler


@pytest.mark.parametrize("name, handler", [
    ("promote", promote.on_promote), ("rollback", promote.on_rollback), ("status", promote.on_status),
    ("train", train.on_train), ("abort", train.on_abort),
])
def test_commands_go_to_their_feature_and_reply_on_failure(name, handler):
    routed = ROUTES.fetch("comment", name)
    assert routed is not handler and routed.__name__ == handler.__name__  # wrapped by replying_on_failure


def test_a_command_that_fails_is_answered_and_audited():
    said, audited = [], []
    job = SimpleNamespace(say=said.append, audit=lambda **r: audited.append(r))
    cmd = SimpleNamespace(name="promote", text="/promote")

    def refuses(job, cmd):
        raise UsageError("no such environment\nmore detail")

    out = dispatch.replying_on_failure(refuses)(job, cmd)
    assert out == "promote: failed (no such environment)"
    assert "no such environment" in said[0]
    assert audited == [{"command": "/promote", "allowed": False, "reasons": ["no such environment"], "outcome": "failed"}]


@pytest.mark.parametrize("error", [ForgeBusy("rate limited", 30.0), InfraError("registry down")])
def test_a_command_that_meets_temporary_trouble_is_not_answered(error):
    job = SimpleNamespace(say=lambda text: pytest.fail("answered"), audit=lambda **r: pytest.fail("audited"))

    def busy(job, cmd):
        raise error

    with pytest.raises(type(error)):
        dispatch.replying_on_failure(busy)(job, SimpleNamespace(name="train", text="/train"))


# --------------------------------------------------------------------------- the router


def test_router_fetches_the_exact_route_then_the_kinds_fallback():
    r = Router()
    r.add(lambda: "merged", "pull_request", "merged")
    r.add(lambda: "other", "pull_request")
    assert r.dispatch("pull_request", "merged") == "merged"
    assert r.dispatch("pull_request", "opened") == "other"
    assert r.fetch("review", "submitted") is None
    with pytest.raises(LookupError, match="no route for \\('review', 'submitted'\\)"):
        r.dispatch("review", "submitted")


def test_router_passes_arguments_and_registers_by_decorator():
    r = Router()

    @r.register("comment", "train")
    def train_(job, cmd):
        return f"{job}:{cmd}"

    assert r.dispatch("comment", "train", "job", "cmd") == "job:cmd"
    assert [key for key, _ in r] == [("comment", "train")]


def test_router_refuses_two_handlers_for_one_key_and_combines_routers():
    a, b = Router(), Router()
    a.add(lambda: "a", "push")
    b.add(lambda: "b", "review")
    both = Router(a, b)
    assert both.dispatch("push", "push") == "a" and both.dispatch("review", None) == "b"
    with pytest.raises(ValueError, match="already goes to"):
        both.add(lambda: "c", "push")
    with pytest.raises(ValueError):
        Router(a, a)


# --------------------------------------------------------------------------- handle


def test_handle_routes_a_push_by_the_table(monkeypatch):
    table = Router()
    table.add(lambda job: f"pushed {job.ev.head_ref} by {job.ev.actor}", "push")
    monkeypatch.setattr(dispatch, "ROUTES", table)
    assert handlers.handle(_push_delivery(), _ctx()) == "pushed main by alice"


def test_handle_of_a_push_with_the_default_table():
    out = handlers.handle(_push_delivery(), _ctx())
    assert out.startswith("push: nothing to do")


def test_handle_turns_a_forge_client_refusal_into_a_forge_error(monkeypatch):
    table = Router()

    def refused(job):
        raise _client_error("github", status=403, data={"message": "Resource not accessible by integration"})

    table.add(refused, "push")
    monkeypatch.setattr(dispatch, "ROUTES", table)
    with pytest.raises(ForgeError, match="GitHub answered 403: Resource not accessible by integration") as info:
        handlers.handle(_push_delivery(), _ctx())
    assert info.value.status == 403


def test_handle_asks_for_a_retry_when_the_forge_is_busy(monkeypatch):
    table = Router()

    def busy(job):
        raise ForgeBusy("GitHub: rate limited", retry_after=42.0)

    table.add(busy, "push")
    monkeypatch.setattr(dispatch, "ROUTES", table)
    with pytest.raises(handlers.Retryable) as info:
        handlers.handle(_push_delivery(), _ctx())
    assert info.value.retry_after == 42.0


# --------------------------------------------------------------------------- errors


def test_delivery_error_maps_temporary_trouble_to_retries():
    busy = delivery_error(ForgeBusy("rate limited", retry_after=7.0))
    assert isinstance(busy, handlers.Retryable) and busy.retry_after == 7.0
    infra = delivery_error(InfraError("registry unreachable"))
    assert isinstance(infra, handlers.Retryable) and infra.retry_after is None
    conflict = delivery_error(Conflict("canary 3 changed"))
    assert isinstance(conflict, handlers.Retryable) and conflict.retry_after == 1.0


def test_delivery_error_keeps_mlgate_errors_and_unknown_exceptions():
    err = MlgateError("bad config")
    assert delivery_error(err) is err
    bug = KeyError("x")
    assert delivery_error(bug) is bug


def test_forge_refusal_of_pygithub_and_python_gitlab_errors():
    gh = forge_refusal(_client_error("github", status=422, data={"message": "Validation Failed"}))
    assert isinstance(gh, ForgeError) and gh.status == 422 and str(gh) == "GitHub answered 422: Validation Failed"
    gh_text = forge_refusal(_client_error("github", status=None, data="oops"))
    assert gh_text.status == 0 and str(gh_text) == "GitHub answered 0: the forge said no"
    gl = forge_refusal(_client_error("gitlab", response_code=404, error_message="404 Project Not Found"))
    assert isinstance(gl, ForgeError) and gl.status == 404 and str(gl) == "GitLab answered 404: 404 Project Not Found"
    assert forge_refusal(ValueError("not a forge answer")) is None
    assert forge_refusal(_client_error("requests")) is None
