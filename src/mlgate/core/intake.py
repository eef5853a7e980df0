"""Webhook intake decisions: pure functions over headers and the raw body.

No I/O here: :mod:`mlgate.bot.app` reads the request and calls these, in this order:

1. :func:`check_github_signature` / :func:`check_gitlab_token` (401 when refused);
2. :func:`github_delivery_id` / :func:`gitlab_delivery_id` (400 when missing);
3. :func:`parse_payload` (400 when the body is not a JSON object);
4. :func:`is_used` (events mlgate does not use are answered 202 and dropped);
5. :func:`stored_headers` (what is kept with the delivery: never a token or signature).

Sources:
- GitHub, "Validating webhook deliveries": ``X-Hub-Signature-256: sha256=<hex>`` is the
  HMAC-SHA256 of the raw request body keyed with the webhook secret; compare in constant
  time. ``X-Hub-Signature`` (SHA-1) exists only for compatibility and is not accepted here.
  "Webhook events and payloads": ``X-GitHub-Event``, ``X-GitHub-Delivery`` (kept on a
  manual redelivery); content type ``application/json`` or
  ``application/x-www-form-urlencoded`` (a ``payload=`` form field).
- GitLab, "Webhooks": ``X-Gitlab-Token`` carries the secret token verbatim (no HMAC);
  ``Idempotency-Key`` (17.4+) is kept on a resend; ``X-Gitlab-Event-UUID`` (14.8+) otherwise.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

#: A ``\uD800``-``\uDFFF`` escape in JSON text: a UTF-16 surrogate, valid only as half of a pair.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON (RFC 8259 section 6)")


def _has_lone_surrogate(obj: Any) -> bool:
    """Whether a string (key or value) in ``obj`` holds an unpaired surrogate, which no UTF-8
    text (and so no database text column) can hold (RFC 8259 section 8.2)."""
    stack = [obj]
    while stack:
        o = stack.pop()
        if isinstance(o, str):
            try:
                o.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(o, dict):
            stack.extend(o.keys())
            stack.extend(o.values())
        elif isinstance(o, list):
            stack.extend(o)
    return False


#: GitHub events mlgate acts on (``X-GitHub-Event``); everything else is acknowledged and dropped.
GITHUB_EVENTS = frozenset({"issue_comment", "pull_request", "pull_request_review", "push"})
#: GitLab events mlgate acts on (``X-Gitlab-Event``).
GITLAB_EVENTS = frozenset({"Note Hook", "Merge Request Hook", "Push Hook"})
#: MLflow registry events mlgate acts on (``<entity>.<action>`` of the body; see :mod:`mlgate.core.registry_events`).
MLFLOW_EVENTS = frozenset({"model_version_alias.created", "model_version_alias.deleted", "model_version.created",
                           "model_version_tag.set"})

#: Headers never stored with a delivery nor logged (credentials and their proofs).
SENSITIVE_HEADERS = frozenset(
    {"x-gitlab-token", "x-hub-signature", "x-hub-signature-256", "x-mlflow-signature", "authorization", "cookie",
     "proxy-authorization"}
)
#: The only headers kept with a delivery (lower case).
KEPT_HEADERS = frozenset(
    {
        "content-type",
        "user-agent",
        "x-github-event",
        "x-github-delivery",
        "x-github-hook-id",
        "x-github-hook-installation-target-id",
        "x-github-hook-installation-target-type",
        "x-github-enterprise-host",
        "x-github-enterprise-version",
        "x-gitlab-event",
        "x-gitlab-event-uuid",
        "x-gitlab-webhook-uuid",
        "x-gitlab-instance",
        "idempotency-key",
        "x-mlflow-delivery-id",
        "x-mlflow-timestamp",
    }
)

_DELIVERY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}$")
_SHA256_HEADER = re.compile(r"^sha256=([0-9a-fA-F]{64})$")


@dataclass(frozen=True)
class Refusal:
    """Why a request is refused: the HTTP status and a message safe to send back (no secrets)."""

    status: int
    message: str


def github_signature(secret: bytes, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` header value GitHub sends for ``body`` (``sha256=<hex>``)."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def check_github_signature(secret: bytes, headers: Mapping[str, str], body: bytes) -> Refusal | None:
    """Verify GitHub's ``X-Hub-Signature-256`` over the exact raw body.

    Args:
        secret: the webhook secret as bytes (UTF-8 of the configured text); never empty.
        headers: request headers with lower-case names.
        body: the raw request body, byte for byte as received.

    Returns:
        None when the signature matches; else a 401 :class:`Refusal` (missing header, a
        SHA-1-only ``X-Hub-Signature``, a malformed value, or a mismatch).

    Raises:
        ValueError: when ``secret`` is empty (a programming error: settings refuse it).
    """
    if not secret:
        raise ValueError("empty webhook secret")
    header = headers.get("x-hub-signature-256")
    if header is None:
        if "x-hub-signature" in headers:
            return Refusal(401, "only a SHA-1 X-Hub-Signature was sent; X-Hub-Signature-256 is required")
        return Refusal(401, "missing X-Hub-Signature-256 header")
    m = _SHA256_HEADER.match(header.strip())
    if m is None:
        return Refusal(401, "malformed X-Hub-Signature-256 header (expected sha256=<64 hex digits>)")
    expected = hmac.new(secret, body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, m.group(1).lower()):
        return Refusal(401, "X-Hub-Signature-256 does not match the body")
    return None


def check_gitlab_token(token: bytes, headers: Mapping[str, str]) -> Refusal | None:
    """Compare GitLab's ``X-Gitlab-Token`` with the configured token in constant time.

    Args:
        token: the configured token as bytes; never empty.
        headers: request headers with lower-case names.

    Returns:
        None when equal; else a 401 :class:`Refusal` that does not echo either value.

    Raises:
        ValueError: when ``token`` is empty.
    """
    if not token:
        raise ValueError("empty webhook token")
    got = headers.get("x-gitlab-token")
    if got is None:
        return Refusal(401, "missing X-Gitlab-Token header")
    if not hmac.compare_digest(got.encode("utf-8", "surrogateescape"), token):
        return Refusal(401, "X-Gitlab-Token does not match")
    return None


def _valid_id(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return value if _DELIVERY_ID.match(value) else None


def github_delivery_id(headers: Mapping[str, str]) -> str | Refusal:
    """The delivery id of a GitHub request: ``X-GitHub-Delivery`` (kept on a redelivery).

    Returns the id (at most 128 characters of ``[A-Za-z0-9._:-]``) or a 400 :class:`Refusal`.
    """
    raw = headers.get("x-github-delivery")
    got = _valid_id(raw)
    if got is None:
        return Refusal(400, "missing X-GitHub-Delivery header" if raw is None else "malformed X-GitHub-Delivery header")
    return got


def gitlab_delivery_id(headers: Mapping[str, str], body: bytes) -> str | Refusal:
    """The delivery id of a GitLab request.

    ``Idempotency-Key`` (kept by GitLab on a resend), else ``X-Gitlab-Event-UUID``, else
    (GitLab before 14.8) ``sha256:<hex of the body>`` so that an identical resend is still
    recognised. Returns the id or a 400 :class:`Refusal` for a malformed header.
    """
    for name in ("idempotency-key", "x-gitlab-event-uuid"):
        raw = headers.get(name)
        if raw is not None:
            got = _valid_id(raw)
            if got is None:
                return Refusal(400, f"malformed {name} header")
            return got
    return "sha256:" + hashlib.sha256(body).hexdigest()


FORM = "application/x-www-form-urlencoded"


def media_type(headers: Mapping[str, str]) -> str:
    """The media type of ``Content-Type`` (lower-case header names), lower case, without parameters.

    RFC 9110 section 8.3.1: type and subtype are case-insensitive, parameters follow ``;``.
    ``Application/X-WWW-Form-Urlencoded; charset=UTF-8`` gives ``application/x-www-form-urlencoded``;
    a missing header gives "".
    """
    raw = headers.get("content-type") or ""
    # type "/" subtype is made of tokens, so the first ";" ends it (parameters may be quoted strings)
    return raw.split(";", 1)[0].strip().lower()


def is_form(headers: Mapping[str, str]) -> bool:
    """Whether the body is ``application/x-www-form-urlencoded`` (its JSON is in the ``payload`` field)."""
    return media_type(headers) == FORM


def parse_payload(headers: Mapping[str, str], body: bytes) -> dict[str, Any] | Refusal:
    """Decode the JSON object a webhook carries.

    ``application/x-www-form-urlencoded`` bodies (:func:`is_form`, any letter case) carry the
    JSON in the ``payload`` field (GitHub's optional content type); anything else is read as
    JSON (UTF-8).

    Returns the object, or a 400 :class:`Refusal` when it is not JSON as RFC 8259 defines it
    (``NaN`` and ``Infinity``, which Python's json module would take, are refused; so is a string
    with an unpaired ``\\uD800``-``\\uDFFF`` escape, which no UTF-8 text can store), when it
    nests deeper than the interpreter's recursion limit (about 1,000 levels) or is not an object.
    The standard library's json module reads it (mlgate does not depend on orjson: issue 12).
    """
    text: str | bytes = body
    if is_form(headers):
        try:
            fields = parse_qs(body.decode("utf-8"), strict_parsing=True)
        except (UnicodeDecodeError, ValueError):
            return Refusal(400, "malformed form body")
        values = fields.get("payload")
        if not values or len(values) != 1:
            return Refusal(400, "form body without exactly one 'payload' field")
        text = values[0]
    try:
        # UTF-8 only (RFC 8259 section 8.1): json.loads would also guess UTF-16 and UTF-32 from bytes
        text = text.decode("utf-8") if isinstance(text, bytes) else text
        obj = json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        return Refusal(400, "malformed JSON body: nested too deeply")
    except (ValueError, UnicodeDecodeError) as e:
        return Refusal(400, f"malformed JSON body: {str(e).splitlines()[0][:120]}")
    if not isinstance(obj, dict):
        return Refusal(400, f"the JSON body must be an object, not {type(obj).__name__}")
    if _SURROGATE_ESCAPE.search(text) and _has_lone_surrogate(obj):
        return Refusal(400, "malformed JSON body: a string holds an unpaired UTF-16 surrogate escape")
    return obj


def is_used(forge: str, event: str) -> bool:
    """Whether mlgate acts on this event (see :data:`GITHUB_EVENTS`, :data:`GITLAB_EVENTS`, :data:`MLFLOW_EVENTS`)."""
    if forge == "mlflow":
        return event in MLFLOW_EVENTS
    return event in (GITHUB_EVENTS if forge == "github" else GITLAB_EVENTS)


def stored_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The subset of headers kept with a delivery (:data:`KEPT_HEADERS`; never a credential)."""
    return {k: v for k, v in headers.items() if k in KEPT_HEADERS and k not in SENSITIVE_HEADERS}


def metric_event(forge: str, event: str | None) -> str:
    """A bounded label for metrics: the event name when mlgate knows it, else ``other``.

    Unverified requests choose their own headers; using them raw as label values would let
    anyone create unbounded time series.
    """
    if event is None:
        return "none"
    if event == "ping" or is_used(forge, event):
        return event
    return "other"
