"""The HTTP app on a real uvicorn (in-process): refusals store nothing, 202 after commit, health, metrics."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
import uuid

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mlgate.bot.settings import BotSettings
from mlgate.edge.db.store import Store
from tests.bot.conftest import (
    GITLAB_TOKEN,
    SECRET,
    github_examples,
    github_headers,
    gitlab_headers,
    pg_admin,
    sign,
    wait_until,
)

ODD_BODY = '{ "action":"created" ,\n "comment" : {"id": 42, "body":"/promote  wine@7 to staging — ✓ naïve"},\t"issue":{"number":1} }'.encode()
LIMIT = 64 * 1024


def _settings(db_url: str, **kw) -> BotSettings:
    return BotSettings(
        github_webhook_secret=SECRET, gitlab_webhook_token=GITLAB_TOKEN, database_url=db_url, max_body_bytes=LIMIT, **kw
    )


@pytest.fixture
def bot(start_bot, sqlite_url):
    return start_bot(_settings(sqlite_url), Store(sqlite_url), workers=0)


def _outcome(r: httpx.Response) -> tuple[str | None, str | None]:
    """A 202's outcome, from its headers (202 answers have no body)."""
    return r.headers.get("x-mlgate-status"), r.headers.get("x-mlgate-delivery")


def _post(bot, body: bytes, headers: dict, forge: str = "github") -> httpx.Response:
    return httpx.post(f"{bot.url}/webhooks/{forge}", content=body, headers=headers, timeout=10)


def test_verified_delivery_with_odd_bytes_is_stored_exactly_and_answered_202(bot):
    r = _post(bot, ODD_BODY, github_headers(ODD_BODY, delivery="d-odd"))
    assert r.status_code == 202 and _outcome(r) == ("accepted", "d-odd") and r.content == b""
    stored = bot.store.load("d-odd")
    assert stored.payload == json.loads(ODD_BODY) and stored.event == "issue_comment" and stored.forge == "github"
    assert "x-hub-signature-256" not in stored.headers and stored.headers["x-github-delivery"] == "d-odd"


def _flip(body: bytes) -> bytes:
    b = bytearray(body)
    b[len(b) // 2] ^= 0x01
    return bytes(b)


@pytest.mark.parametrize(
    "case",
    ["missing-header", "sha1-only", "flipped-byte", "wrong-secret", "gitlab-wrong-token", "gitlab-missing-token"],
)
def test_refused_signatures_answer_401_and_store_nothing(bot, case):
    headers = github_headers(ODD_BODY, delivery=f"d-{case}")
    body, forge = ODD_BODY, "github"
    if case == "missing-header":
        del headers["X-Hub-Signature-256"]
    elif case == "sha1-only":
        del headers["X-Hub-Signature-256"]
        headers["X-Hub-Signature"] = "sha1=" + hmac.new(SECRET.encode(), body, hashlib.sha1).hexdigest()
    elif case == "flipped-byte":
        body = _flip(body)
    elif case == "wrong-secret":
        headers["X-Hub-Signature-256"] = sign(body, SECRET + "x")
    elif case.startswith("gitlab"):
        forge = "gitlab"
        headers = gitlab_headers(token="not-the-token")
        if case == "gitlab-missing-token":
            del headers["X-Gitlab-Token"]
    r = _post(bot, body, headers, forge)
    assert r.status_code == 401
    assert SECRET not in r.text and GITLAB_TOKEN not in r.text and "error" in r.json()
    assert bot.count() == 0


def test_body_over_the_limit_is_413_by_content_length_and_by_streamed_size(bot):
    big = b'{"a":"' + b"x" * LIMIT + b'"}'
    r = _post(bot, big, github_headers(big, delivery="d-big"))
    assert r.status_code == 413
    # chunked upload without Content-Length: the streamed size is checked too
    def chunks():
        for _ in range(LIMIT // 4096 + 2):
            yield b" " * 4096

    r = httpx.post(f"{bot.url}/webhooks/github", content=chunks(), headers=github_headers(big, delivery="d-big2"), timeout=10)
    assert r.status_code == 413
    # exactly at the limit is fine
    exact = b'{"a":"' + b"x" * (LIMIT - 8) + b'"}'
    assert len(exact) == LIMIT
    assert _post(bot, exact, github_headers(exact, delivery="d-exact")).status_code == 202
    assert [d.id for d in bot.store.list_deliveries()] == ["d-exact"]


def test_streamed_body_over_the_limit_stops_reading(start_bot, sqlite_url):
    """ASGI level: the endpoint refuses as the running size passes the limit."""
    running = start_bot(_settings(sqlite_url), Store(sqlite_url), workers=0)
    endpoint = running.app.webhooks["/webhooks/github"]
    reads = 0

    async def receive():
        nonlocal reads
        reads += 1
        return {"type": "http.request", "body": b"x" * 10_000, "more_body": True}  # endless

    sent = []

    async def send(msg):
        sent.append(msg)

    headers = [(b"x-github-event", b"push"), (b"x-hub-signature-256", sign(b"irrelevant").encode())]
    scope = {"type": "http", "method": "POST", "path": "/webhooks/github", "headers": headers}
    asyncio.run(endpoint(scope, receive, send))
    assert sent[0]["status"] == 413 and reads == LIMIT // 10_000 + 1


@pytest.mark.parametrize("body", [b'{"action": "created"', b"[1, 2, 3]", b"", b"\xff\xfe\xfd"], ids=["truncated", "array", "empty", "binary"])
def test_malformed_json_is_400_and_not_stored(bot, body):
    r = _post(bot, body, github_headers(body))
    assert r.status_code == 400 and "error" in r.json()
    assert bot.count() == 0


def test_missing_delivery_or_event_header_is_400(bot):
    h = github_headers(b"{}")
    del h["X-GitHub-Delivery"]
    assert _post(bot, b"{}", h).status_code == 400
    h = github_headers(b"{}")
    del h["X-GitHub-Event"]
    assert _post(bot, b"{}", h).status_code == 400
    assert bot.count() == 0


def test_redelivery_is_202_and_one_row(bot):
    h = github_headers(ODD_BODY, delivery="d-re")
    assert _outcome(_post(bot, ODD_BODY, h))[0] == "accepted"
    r = _post(bot, ODD_BODY, h)
    assert r.status_code == 202 and _outcome(r) == ("duplicate", "d-re")
    assert bot.count() == 1


def test_concurrent_identical_deliveries_store_one_row(bot):
    h = github_headers(ODD_BODY, delivery="d-race")
    results = []

    def go():
        results.append(_outcome(_post(bot, ODD_BODY, h))[0])

    threads = [threading.Thread(target=go) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["accepted"] + ["duplicate"] * 7
    assert bot.count() == 1


@pytest.mark.parametrize("event", ["star", "ping", "workflow_run"])
def test_unused_events_are_acknowledged_and_dropped(bot, event):
    body = b'{"zen": "Keep it logically awesome.", "hook_id": 1}'
    r = _post(bot, body, github_headers(body, event=event))
    assert r.status_code == 202 and _outcome(r)[0] == "ignored"
    assert bot.count() == 0


def test_unused_events_are_still_verified(bot):
    body = b"{}"
    h = github_headers(body, event="star")
    h["X-Hub-Signature-256"] = sign(body, "wrong")
    assert _post(bot, body, h).status_code == 401


def test_form_encoded_github_delivery(bot):
    from urllib.parse import urlencode

    body = urlencode({"payload": '{"action":"created","comment":{"id":5}}'}).encode()
    h = github_headers(body, delivery="d-form")
    h["Content-Type"] = "application/x-www-form-urlencoded"
    assert _post(bot, body, h).status_code == 202
    assert bot.store.load("d-form").payload == {"action": "created", "comment": {"id": 5}}


@pytest.mark.parametrize("ctype", ["Application/X-WWW-Form-Urlencoded",
                                   "APPLICATION/x-www-form-urlencoded; charset=utf-8"])
def test_form_encoded_delivery_with_any_letter_case_is_stored_as_its_json(bot, ctype):
    from urllib.parse import urlencode

    payload = {"action": "created", "comment": {"id": 6, "body": "/promote"}}
    body = urlencode({"payload": json.dumps(payload)}).encode()
    h = github_headers(body, delivery="d-form-case")
    h["Content-Type"] = ctype
    assert _post(bot, body, h).status_code == 202
    assert bot.store.load("d-form-case").payload == payload


def test_gitlab_intake_dedupes_on_idempotency_key(bot):
    body = json.dumps({"object_kind": "note", "object_attributes": {"id": 7, "note": "/promote"}}).encode()
    h = gitlab_headers(key="f5e5f430-f57b-4e6e-9fac-d9128cd7232f")
    assert _outcome(_post(bot, body, h, "gitlab")) == ("accepted", "f5e5f430-f57b-4e6e-9fac-d9128cd7232f")
    h2 = dict(h, **{"X-Gitlab-Event-UUID": str(uuid.uuid4())})  # a resend: same key, new event uuid
    assert _outcome(_post(bot, body, h2, "gitlab"))[0] == "duplicate"
    assert _outcome(_post(bot, body, gitlab_headers(event="Wiki Page Hook"), "gitlab"))[0] == "ignored"
    stored = bot.store.load("f5e5f430-f57b-4e6e-9fac-d9128cd7232f")
    assert stored.forge == "gitlab" and stored.event == "Note Hook" and "x-gitlab-token" not in stored.headers
    assert bot.count() == 1


def test_forge_without_configured_secret_answers_404(start_bot, sqlite_url):
    running = start_bot(BotSettings(github_webhook_secret=SECRET, database_url=sqlite_url), Store(sqlite_url), workers=0)
    r = httpx.post(f"{running.url}/webhooks/gitlab", content=b"{}", headers=gitlab_headers())
    assert r.status_code == 404 and running.count() == 0


def test_get_on_a_webhook_route_is_405(bot):
    assert httpx.get(f"{bot.url}/webhooks/github").status_code == 405


def test_every_octokit_example_is_accepted_and_stored(bot):
    examples = github_examples("issue_comment", "pull_request_review", "pull_request", "push")
    assert len(examples) >= 40
    for i, (event, payload) in enumerate(examples):
        body = json.dumps(payload, indent=2, ensure_ascii=False).encode()
        r = _post(bot, body, github_headers(body, event=event, delivery=f"ex-{i}"))
        assert r.status_code == 202 and _outcome(r)[0] == "accepted", (event, payload.get("action"), r.text)
    stored = {d.id: d for d in bot.store.list_deliveries(limit=1000)}
    assert len(stored) == len(examples)
    for i, (event, payload) in enumerate(examples):
        d = bot.store.load(f"ex-{i}")
        assert d.event == event and d.payload == payload


def test_202_comes_before_processing_and_a_worker_processes_it(start_bot, sqlite_url):
    gate = threading.Event()
    handled = []

    def handler(delivery, ctx):
        gate.wait(10)
        handled.append(delivery.id)
        return "done by test handler"

    running = start_bot(_settings(sqlite_url, poll_interval=0.05), Store(sqlite_url), handler=handler, workers=1)
    r = _post(running, ODD_BODY, github_headers(ODD_BODY, delivery="d-proc"))
    assert r.status_code == 202 and handled == []  # answered while the handler has not run
    assert running.store.get("d-proc").status in ("queued", "running")
    gate.set()
    wait_until(lambda: running.store.get("d-proc").status == "done")
    assert handled == ["d-proc"] and running.store.get("d-proc").outcome == "done by test handler"


def test_healthz_and_readyz_when_the_sqlite_file_is_gone(bot, tmp_path):
    assert httpx.get(f"{bot.url}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{bot.url}/readyz").status_code == 200
    (tmp_path / "bot.db").unlink()
    r = httpx.get(f"{bot.url}/readyz")
    assert r.status_code == 503 and r.json()["status"] == "unavailable" and "bot.db" in r.json()["error"]
    assert httpx.get(f"{bot.url}/healthz").status_code == 200  # alive, just not ready


def test_readyz_when_the_postgres_database_is_gone(start_bot, postgres_server):
    name = "t_" + uuid.uuid4().hex[:12]
    pg_admin(postgres_server, f"CREATE DATABASE {name}")
    url = f"{postgres_server}/{name}"
    running = start_bot(_settings(url), Store(url), workers=0)
    assert httpx.get(f"{running.url}/readyz").status_code == 200
    h = github_headers(ODD_BODY, delivery="d-pg")
    assert _post(running, ODD_BODY, h).status_code == 202
    pg_admin(postgres_server, f"DROP DATABASE {name} WITH (FORCE)")
    r = httpx.get(f"{running.url}/readyz", timeout=10)
    assert r.status_code == 503 and "not reachable" in r.json()["error"]
    # a delivery that cannot be stored is not acknowledged
    h = github_headers(ODD_BODY, delivery="d-pg-2")
    r = _post(running, ODD_BODY, h)
    assert r.status_code == 503 and "redeliver" in r.json()["error"]


def _metric(text: str, name: str, **labels) -> float:
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return 0.0


def test_metrics_count_deliveries_by_event_and_outcome_and_queue_depth(bot):
    before = httpx.get(f"{bot.url}/metrics").text
    body = b'{"action":"created"}'
    _post(bot, body, github_headers(body, delivery="m1"))
    _post(bot, body, github_headers(body, delivery="m1"))
    _post(bot, body, github_headers(body, delivery="m2", event="pull_request"))
    _post(bot, body, github_headers(body, event="star"))
    bad = github_headers(body)
    bad["X-Hub-Signature-256"] = sign(body, "nope")
    _post(bot, body, bad)
    _post(bot, b"[", github_headers(b"["))
    after = httpx.get(f"{bot.url}/metrics")
    assert after.headers["content-type"].startswith("text/plain")
    text = after.text

    def delta(**labels) -> float:
        return _metric(text, "mlgate_bot_deliveries_total", **labels) - _metric(before, "mlgate_bot_deliveries_total", **labels)

    assert delta(forge="github", event="issue_comment", outcome="accepted") == 1
    assert delta(forge="github", event="issue_comment", outcome="duplicate") == 1
    assert delta(forge="github", event="pull_request", outcome="accepted") == 1
    assert delta(forge="github", event="other", outcome="dropped") == 1
    assert delta(forge="github", event="issue_comment", outcome="unauthorized") == 1
    assert delta(forge="github", event="issue_comment", outcome="malformed") == 1
    assert _metric(text, "mlgate_bot_queue_depth", status="queued") == 2
    assert _metric(text, "mlgate_bot_intake_seconds_count", forge="github") >= 6
    for name in ("mlgate_bot_forge_api_calls_total", "mlgate_bot_processing_seconds", "mlgate_bot_promotion_api_calls"):
        assert name in text
