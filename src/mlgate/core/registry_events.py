"""MLflow Model Registry webhooks: signature, delivery id, and the events mlgate acts on (pure).

No I/O and no clock: the caller hands in the current time. :mod:`mlgate.bot.app` calls, in
this order, :func:`check_mlflow_signature` (401 when refused), :func:`mlflow_delivery_id`
(400), :func:`mlflow_event_name` (from the JSON body: MLflow sends no event header); the worker
then calls :func:`normalize` and the decisions below.

Source: MLflow 3.17, ``mlflow/webhooks/delivery.py`` and ``constants.py`` (which follow the
Standard Webhooks conventions, https://www.standardwebhooks.com):

- headers ``X-MLflow-Delivery-Id`` (a UUID, kept by urllib3's retries of 429 and 5xx answers),
  ``X-MLflow-Timestamp`` (UNIX seconds) and, when the webhook has a secret,
  ``X-MLflow-Signature: v1,<base64 of HMAC-SHA256(secret, "{delivery_id}.{timestamp}.{body}")>``;
- body ``{"entity": ..., "action": ..., "timestamp": <ISO 8601>, "data": {...}}``; the event is
  ``<entity>.<action>`` (``model_version_alias.created`` ...), the data are the TypedDicts of
  ``mlflow/webhooks/types.py``. No payload names the user who caused the event.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mlgate.core.config import Config, Environment
from mlgate.core.events import Ignored
from mlgate.core.intake import MLFLOW_EVENTS, Refusal, _valid_id

SIGNATURE_HEADER = "x-mlflow-signature"
TIMESTAMP_HEADER = "x-mlflow-timestamp"
DELIVERY_HEADER = "x-mlflow-delivery-id"
#: Seconds a delivery's timestamp may be away from now (replay protection; Standard Webhooks' default).
TOLERANCE_SECONDS = 300
#: Registry events mlgate acts on; every other one is acknowledged and dropped.
EVENTS = MLFLOW_EVENTS
#: An alias was deleted: no trigger, but an environment's alias gone is drift (protected aliases).
ALIAS_DELETED = "model_version_alias.deleted"
#: Tag keys mlgate writes on versions whose tag events are not worth a delivery's work; of mlgate's
#: keys only ``mlgate.gates`` (written by ``mlgate validate``) can trigger a promotion.
TRIGGER_TAG_PREFIX_EXCEPTIONS = ("mlgate.gates",)
#: Tag written on a version the bot refused to promote (``mlgate.refused.<env>``: the reason).
REFUSED_TAG = "mlgate.refused.{env}"
#: Tag written on a version an environment alias was moved to by hand (``mlgate.alias_drift.<env>``: put back or reported).
REVERTED_TAG = "mlgate.alias_drift.{env}"
#: Tag written on a version for which a registry event opened a promotion PR (its address).
REQUESTED_TAG = "mlgate.requested.{env}"


def signature(secret: bytes, delivery_id: str, timestamp: str, body: bytes) -> str:
    """``v1,<base64>``: the ``X-MLflow-Signature`` MLflow sends for this delivery."""
    content = delivery_id.encode("utf-8") + b"." + timestamp.encode("utf-8") + b"." + body
    return "v1," + base64.b64encode(hmac.new(secret, content, hashlib.sha256).digest()).decode("ascii")


def check_mlflow_signature(secret: bytes, headers: Mapping[str, str], body: bytes, now: float) -> Refusal | None:
    """Verify MLflow's ``X-MLflow-Signature`` over ``{delivery_id}.{timestamp}.{raw body}``.

    Args:
        secret: the webhook secret (UTF-8 of ``MLGATE_MLFLOW_WEBHOOK_SECRET``); never empty.
        headers: request headers with lower-case names.
        body: the raw body, byte for byte.
        now: the current time, UNIX seconds.

    Returns:
        None when a ``v1`` signature matches (constant-time comparison; several space-separated
        signatures are allowed, as Standard Webhooks does during a secret rotation) and the
        timestamp is within :data:`TOLERANCE_SECONDS` of ``now``; else a 401 :class:`Refusal`
        that echoes neither the secret nor the signature.

    Raises:
        ValueError: ``secret`` is empty (settings refuse it).
    """
    if not secret:
        raise ValueError("empty webhook secret")
    sent = (headers.get(SIGNATURE_HEADER) or "").strip()
    if not sent:
        return Refusal(401, "missing X-MLflow-Signature header (does the MLflow webhook have a secret?)")
    delivery_id = headers.get(DELIVERY_HEADER)
    stamp = (headers.get(TIMESTAMP_HEADER) or "").strip()
    if not delivery_id:
        return Refusal(401, "missing X-MLflow-Delivery-Id header (it is part of the signed content)")
    if not (stamp.isascii() and stamp.isdigit()) or len(stamp) > 12:  # str.isdigit() takes "²", int() does not
        return Refusal(401, "missing or malformed X-MLflow-Timestamp header (UNIX seconds)")
    if abs(now - int(stamp)) > TOLERANCE_SECONDS:
        return Refusal(401, f"X-MLflow-Timestamp is more than {TOLERANCE_SECONDS} s from now (a replay, or a clock "
                            "out of step)")
    expected = signature(secret, delivery_id, stamp, body).encode("ascii")
    matched = False
    for part in sent.split():
        version, _, value = part.partition(",")
        if version != "v1":
            continue
        try:
            base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            continue
        matched |= hmac.compare_digest(expected, part.encode("ascii", "replace"))
    if not matched:
        return Refusal(401, "X-MLflow-Signature does not match the body")
    return None


def mlflow_delivery_id(headers: Mapping[str, str]) -> str | Refusal:
    """``X-MLflow-Delivery-Id`` (at most 128 of ``[A-Za-z0-9._:-]``), else a 400 :class:`Refusal`."""
    raw = headers.get(DELIVERY_HEADER)
    got = _valid_id(raw)
    if got is None:
        return Refusal(400, "missing X-MLflow-Delivery-Id header" if raw is None else "malformed X-MLflow-Delivery-Id")
    return got


def mlflow_event_name(payload: Mapping[str, Any]) -> str | None:
    """``<entity>.<action>`` of a decoded MLflow webhook body, None when either is missing."""
    entity, action = payload.get("entity"), payload.get("action")
    if isinstance(entity, str) and isinstance(action, str) and entity and action:
        return f"{entity}.{action}"[:100]
    return None


@dataclass(frozen=True)
class RegistryEvent:
    """One registry event mlgate acts on.

    ``event``: one of :data:`EVENTS`. ``model``/``version``: the model version it is about
    (``version`` is ``""`` for ``model_version_alias.deleted``, whose payload names only the model
    and the alias). ``alias``: the alias set or deleted (``model_version_alias.*``). ``key``/``value``: the tag set
    (``model_version_tag.set``). ``tags``: the version's tags at creation (``model_version.created``).
    ``at``: MLflow's ISO 8601 timestamp of the event. MLflow names no user.
    """

    event: str
    model: str
    version: str
    at: str = ""
    alias: str | None = None
    key: str | None = None
    value: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        """One line: ``alias 'challenger' set on fraud version 3 at <time>``."""
        when = f" at {self.at}" if self.at else ""
        if self.event == ALIAS_DELETED:
            return f"alias {self.alias!r} deleted from {self.model}{when}"
        if self.alias is not None:
            return f"alias {self.alias!r} set on {self.model} version {self.version}{when}"
        if self.key is not None:
            return f"tag {self.key}={self.value!r} set on {self.model} version {self.version}{when}"
        return f"{self.model} version {self.version} registered{when}"


def _text(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str) or not value:
        raise KeyError(f"data.{key} is {type(value).__name__ if value is not None else 'missing'}, expected string")
    return value


def normalize(event: str, payload: Mapping[str, Any]) -> RegistryEvent | Ignored:
    """A stored MLflow delivery → :class:`RegistryEvent`, or :class:`~mlgate.core.events.Ignored`.

    Ignored: events outside :data:`EVENTS`; tags mlgate writes itself (``mlgate.*`` keys other
    than :data:`TRIGGER_TAG_PREFIX_EXCEPTIONS`: its own refusal, promotion and gate tags come back
    as events); payloads of the wrong shape (``malformed payload: ...``). Never raises.
    """
    if event not in EVENTS:
        return Ignored(f"MLflow event {event!r} is not used by mlgate")
    data = payload.get("data") if isinstance(payload, Mapping) else None
    if not isinstance(data, Mapping):
        return Ignored("malformed payload: data is not an object")
    at = payload.get("timestamp") if isinstance(payload.get("timestamp"), str) else ""
    try:
        if event == ALIAS_DELETED:  # MLflow's payload: name and alias, no version
            return RegistryEvent(event, _text(data, "name"), "", at, alias=_text(data, "alias"))
        model, version = _text(data, "name"), _text(data, "version")
        if not (version.isascii() and version.isdigit()) or len(version) > 18:
            # MLflow numbers versions 1, 2, ...; anything else would reach branch names and PR bodies
            raise KeyError(f"data.version {version[:40]!r} is not a version number")
        if event == "model_version_alias.created":
            return RegistryEvent(event, model, version, at, alias=_text(data, "alias"))
        if event == "model_version_tag.set":
            key = _text(data, "key")
            value = data.get("value")
            if key.startswith("mlgate.") and key not in TRIGGER_TAG_PREFIX_EXCEPTIONS:
                return Ignored(f"tag {key} on {model} version {version}: written by mlgate, not a trigger")
            return RegistryEvent(event, model, version, at, key=key, value=value if isinstance(value, str) else "")
        tags = data.get("tags") if isinstance(data.get("tags"), Mapping) else {}
        return RegistryEvent(event, model, version, at, tags={str(k): str(v) for k, v in tags.items()})
    except KeyError as e:
        return Ignored(f"malformed payload: {e.args[0]}")


# --------------------------------------------------------------------------- what an event means


def triggered(cfg: Config, ev: RegistryEvent) -> list[Environment]:
    """The environments whose ``trigger`` this event fires, in config order.

    ``trigger: {alias: A}`` fires on ``model_version_alias.created`` of alias A;
    ``trigger: {tag: {key: K, value: V}}`` on ``model_version_tag.set`` of K=V and on
    ``model_version.created`` of a version created with that tag.
    """
    out = []
    for env in cfg.environments:
        t = env.trigger
        if t is None:
            continue
        if t.alias is not None and ev.event == "model_version_alias.created" and ev.alias == t.alias:
            out.append(env)
        elif t.tag is not None:
            if ev.key == t.tag.key and ev.value == t.tag.value:
                out.append(env)
            elif ev.event == "model_version.created" and ev.tags.get(t.tag.key) == t.tag.value:
                out.append(env)
    return out


def guarded(cfg: Config, alias: str | None) -> Environment | None:
    """The environment that holds ``alias`` (its registry alias belongs to mlgate), or None."""
    for env in cfg.environments:
        if alias is not None and env.registry_alias == alias:
            return env
    return None


def refusal_text(env: str, reasons: list[str]) -> str:
    """The value of the ``mlgate.refused.<env>`` tag: why, shortened for a tag (MLflow keeps 5000)."""
    text = f"not promoted to {env}: " + "; ".join(reasons)
    return text if len(text) <= 1000 else text[:997] + "..."


def eligibility_table(checks: list[Any]) -> str:
    """:func:`mlgate.core.promotion.eligibility` checks as a Markdown table (the PR body's gate table)."""
    rows = ["| check | result | detail |", "|---|---|---|"]
    for c in checks:
        rows.append(f"| {c.name} | {'✅' if c.ok else '❌'} | {c.detail.replace('|', chr(92) + '|')} |")
    return "\n".join(rows)


def deploys(text: str, env: Environment, values: Mapping[str, str]) -> bool:
    """Whether the manifest ``text`` already holds ``values`` at the environment's GitOps target:
    the promotion's own edit (:func:`mlgate.core.manifests.target_edit`) would change nothing, so
    the value template maps the manifest back to the version exactly as it maps a version to the
    manifest. False when the edit fails (the target is missing, the template cannot render)."""
    from mlgate.core.errors import MlgateError
    from mlgate.core.manifests import target_edit

    try:
        return not target_edit(text, env.gitops.target, values, env.gitops.path).changed
    except MlgateError:
        return False


def candidate_order(env: str, versions: list[Any]) -> list[Any]:
    """Versions to compare with the manifest, likeliest first: those with a landed promotion to
    ``env`` (tag ``mlgate.promoted.<env>.at``, newest landing first), then the others, newest first."""
    key = f"mlgate.promoted.{env}.at"
    landed = sorted((v for v in versions if key in v.tags), key=lambda v: (v.tags[key], int(v.version)), reverse=True)
    rest = sorted((v for v in versions if key not in v.tags), key=lambda v: int(v.version), reverse=True)
    return landed + rest
