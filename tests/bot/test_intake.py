"""Pure intake decisions: signatures over raw bytes, tokens, delivery ids, payloads, events."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlgate.core import intake
from tests.bot.conftest import SECRET, sign

KEY = SECRET.encode()
# Non-ASCII, unusual spacing, escaped and raw unicode, key order GitHub chose: re-serialising
# this with json.dumps would produce different bytes (and a different HMAC).
ODD_BODY = (
    '{ "action" :"created",\n\t"comment": {"body": "/promote  wine@7  to staging \\u00e9 — naïve ✓",'
    '   "id":1 ,"user":{"login":"Zoë"}} ,"x": 1.50 }\r\n'
).encode("utf-8")


def test_signature_over_exact_raw_bytes_with_non_ascii_and_odd_spacing():
    headers = {"x-hub-signature-256": sign(ODD_BODY)}
    assert intake.check_github_signature(KEY, headers, ODD_BODY) is None
    # the same JSON re-serialised is different bytes and must not verify with this signature
    reserialised = json.dumps(json.loads(ODD_BODY)).encode()
    assert reserialised != ODD_BODY
    assert intake.check_github_signature(KEY, headers, reserialised).status == 401


def test_signature_helper_matches_github_documented_example():
    # GitHub docs, "Validating webhook deliveries", test values
    secret, payload = b"It's a Secret to Everybody", b"Hello, World!"
    expected = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    assert intake.github_signature(secret, payload) == expected
    assert intake.check_github_signature(secret, {"x-hub-signature-256": expected}, payload) is None


@pytest.mark.parametrize(
    "headers, reason",
    [
        ({}, "missing X-Hub-Signature-256"),
        ({"x-hub-signature": "sha1=" + hmac.new(KEY, ODD_BODY, hashlib.sha1).hexdigest()}, "only a SHA-1"),
        ({"x-hub-signature-256": "sha1=" + hmac.new(KEY, ODD_BODY, hashlib.sha1).hexdigest()}, "malformed"),
        ({"x-hub-signature-256": hmac.new(KEY, ODD_BODY, hashlib.sha256).hexdigest()}, "malformed"),  # no "sha256="
        ({"x-hub-signature-256": "sha256="}, "malformed"),
        ({"x-hub-signature-256": sign(ODD_BODY, "another secret")}, "does not match"),
        ({"x-hub-signature-256": sign(ODD_BODY)[:-1] + "0" if not sign(ODD_BODY).endswith("0") else sign(ODD_BODY)[:-1] + "1"}, "does not match"),
    ],
    ids=["missing", "sha1-only", "sha1-in-256-header", "no-prefix", "empty", "other-secret", "one-hex-digit-off"],
)
def test_signature_refusals(headers, reason):
    refusal = intake.check_github_signature(KEY, headers, ODD_BODY)
    assert refusal is not None and refusal.status == 401
    assert reason in refusal.message
    assert SECRET not in refusal.message


@settings(max_examples=60, deadline=None)
@given(pos=st.integers(min_value=0, max_value=len(ODD_BODY) - 1), bit=st.integers(min_value=0, max_value=7))
def test_any_flipped_bit_of_the_body_is_refused(pos, bit):
    headers = {"x-hub-signature-256": sign(ODD_BODY)}
    tampered = bytearray(ODD_BODY)
    tampered[pos] ^= 1 << bit
    refusal = intake.check_github_signature(KEY, headers, bytes(tampered))
    assert refusal is not None and refusal.status == 401


def test_uppercase_hex_signature_verifies():
    headers = {"x-hub-signature-256": "sha256=" + hmac.new(KEY, ODD_BODY, hashlib.sha256).hexdigest().upper()}
    assert intake.check_github_signature(KEY, headers, ODD_BODY) is None


def test_empty_secret_is_a_programming_error_not_accept_all():
    with pytest.raises(ValueError):
        intake.check_github_signature(b"", {"x-hub-signature-256": sign(b"{}", "")}, b"{}")
    with pytest.raises(ValueError):
        intake.check_gitlab_token(b"", {"x-gitlab-token": ""})


@pytest.mark.parametrize(
    "headers, ok",
    [
        ({"x-gitlab-token": "tok"}, True),
        ({"x-gitlab-token": "tok "}, False),
        ({"x-gitlab-token": "TOK"}, False),
        ({"x-gitlab-token": ""}, False),
        ({"x-gitlab-token": "tokk"}, False),
        ({}, False),
        ({"x-gitlab-token": "tök"}, False),
    ],
)
def test_gitlab_token(headers, ok):
    refusal = intake.check_gitlab_token(b"tok", headers)
    assert (refusal is None) is ok
    if not ok:
        assert refusal.status == 401 and "tok" not in refusal.message.replace("Token", "")


def test_github_delivery_id():
    assert intake.github_delivery_id({"x-github-delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958"}) == "72d3162e-cc78-11e3-81ab-4c9367dc0958"
    assert intake.github_delivery_id({}).status == 400
    assert intake.github_delivery_id({"x-github-delivery": "a b"}).status == 400
    assert intake.github_delivery_id({"x-github-delivery": "x" * 129}).status == 400


def test_gitlab_delivery_id_prefers_idempotency_key_then_event_uuid_then_body_hash():
    h = {"idempotency-key": "f5e5f430-f57b-4e6e-9fac-d9128cd7232f", "x-gitlab-event-uuid": "13792a34-cac6-4fda-95a8-c58e00a3954e"}
    assert intake.gitlab_delivery_id(h, b"{}") == "f5e5f430-f57b-4e6e-9fac-d9128cd7232f"
    assert intake.gitlab_delivery_id({"x-gitlab-event-uuid": "13792a34-cac6-4fda-95a8-c58e00a3954e"}, b"{}") == "13792a34-cac6-4fda-95a8-c58e00a3954e"
    # no delivery header (GitLab before 14.8): an identical resend still gets the same id
    a = intake.gitlab_delivery_id({}, b'{"object_kind":"note"}')
    assert a == intake.gitlab_delivery_id({}, b'{"object_kind":"note"}')
    assert a != intake.gitlab_delivery_id({}, b'{"object_kind":"push"}')
    assert intake.gitlab_delivery_id({"idempotency-key": "bad key!"}, b"{}").status == 400


@pytest.mark.parametrize(
    "ctype, body, ok",
    [
        ("application/json", b'{"a": 1}', True),
        ("application/json; charset=utf-8", ODD_BODY, True),
        ("application/json", b'{"a": 1', False),
        ("application/json", b"", False),
        ("application/json", b"[1, 2]", False),
        ("application/json", b'"text"', False),
        ("application/json", b"\xff\xfe{}", False),
        # RFC 8259, as orjson read it before issue 12 dropped it: no NaN/Infinity (section 6),
        # UTF-8 only and no BOM (8.1), no unpaired surrogate (8.2: no UTF-8 text can hold one)
        ("application/json", b'{"a": NaN}', False),
        ("application/json", b'{"a": [1, -Infinity]}', False),
        ("application/json", '{"a": 1}'.encode("utf-16"), False),
        ("application/json", b'\xef\xbb\xbf{"a": 1}', False),
        ("application/json", b'{"a": "x\\ud800"}', False),
        ("application/json", b'{"\\udc00": 1}', False),
        ("application/json", b'{"a": "\\ud83d\\ude00 \\\\ud800"}', True),  # a pair, and an escaped backslash
        ("application/x-www-form-urlencoded", b"payload=%7B%22a%22%3A1%7D", True),
        ("application/x-www-form-urlencoded", b"other=1", False),
        ("application/x-www-form-urlencoded", b"payload=%7Bbroken", False),
    ],
)
def test_parse_payload(ctype, body, ok):
    got = intake.parse_payload({"content-type": ctype}, body)
    if ok:
        assert isinstance(got, dict)
    else:
        assert isinstance(got, intake.Refusal) and got.status == 400


@pytest.mark.parametrize("ctype", ["Application/X-WWW-Form-Urlencoded",
                                   " application/x-www-form-urlencoded ; charset=UTF-8",
                                   "APPLICATION/X-WWW-FORM-URLENCODED;charset=\"utf-8\""])
def test_form_media_type_is_case_insensitive(ctype):
    headers = {"content-type": ctype}
    assert intake.media_type(headers) == "application/x-www-form-urlencoded" and intake.is_form(headers)
    assert intake.parse_payload(headers, b"payload=%7B%22a%22%3A1%7D") == {"a": 1}


def test_json_and_missing_content_types_are_not_forms():
    assert intake.media_type({}) == "" and not intake.is_form({})
    assert not intake.is_form({"content-type": "Application/JSON; charset=utf-8"})
    assert not intake.is_form({"content-type": "application/x-www-form-urlencoded-not"})


def test_used_events_and_bounded_metric_labels():
    assert intake.is_used("github", "issue_comment") and intake.is_used("gitlab", "Note Hook")
    assert not intake.is_used("github", "star") and not intake.is_used("gitlab", "Wiki Page Hook")
    assert intake.metric_event("github", "star") == "other"
    assert intake.metric_event("github", "x" * 500) == "other"
    assert intake.metric_event("github", "ping") == "ping"
    assert intake.metric_event("github", None) == "none"


def test_stored_headers_never_keep_credentials():
    headers = {
        "x-hub-signature-256": "sha256=00",
        "x-hub-signature": "sha1=00",
        "x-gitlab-token": "secret",
        "authorization": "Bearer x",
        "cookie": "a=b",
        "x-github-event": "push",
        "x-github-delivery": "d1",
        "x-random": "y",
    }
    assert intake.stored_headers(headers) == {"x-github-event": "push", "x-github-delivery": "d1"}
