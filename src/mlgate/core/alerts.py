"""Alertmanager notifications: pure parsing, authentication, dedupe keys, label matchers and the
retrain decision (no I/O; the bot's app and handlers call these).

Sources:

- Alertmanager's webhook payload, ``"version": "4"`` (``notify/webhook/webhook.go`` ``Message`` and
  ``template/template.go`` ``Data``/``Alert`` of prometheus/alertmanager; summarised with two
  examples in ``shared/specs/alertmanager/SOURCE.md``): top-level ``receiver``, ``status``,
  ``alerts``, ``groupLabels``, ``commonLabels``, ``commonAnnotations``, ``externalURL``,
  ``version``, ``groupKey``, ``truncatedAlerts``; ``notification_reason`` (v0.32+) and
  ``routeLabels`` (v0.34+) are optional. Each alert has ``status``, ``labels``, ``annotations``,
  ``startsAt``/``endsAt`` (RFC 3339; a firing alert's ``endsAt`` is ``0001-01-01T00:00:00Z``),
  ``generatorURL`` and ``fingerprint`` (16 hex digits, a hash of the label set).
- ``<webhook_config>`` ``http_config.authorization``: ``Authorization: <type> <credentials>``,
  type ``Bearer`` by default. The credentials are compared in constant time.
- Label matchers: Prometheus/Alertmanager matcher syntax (``name="value"``, ``!=``, ``=~``,
  ``!~``; Alertmanager docs "Configuration" → ``<matcher>``): regular expressions are fully
  anchored (``^(?:re)$``), and a label the alert does not have matches as the empty string, so
  ``team=""`` matches alerts without ``team`` and ``team!=""`` needs it.

Repeat notifications: Alertmanager sends the same group again every ``repeat_interval`` (and
after ``group_interval`` when alerts join or resolve). :func:`delivery_id` is the same for every
notification whose firing alerts (fingerprint and ``startsAt``) are the same, so the bot stores
it once: repeats start no new work. An alert that resolves and fires again has a new
``startsAt``, hence a new id.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from mlgate.core.intake import Refusal

#: The payload version mlgate reads (every Alertmanager since 0.x sends "4").
VERSION = "4"
#: Labels that name the model and environment of an alert unless bot.yml maps others.
MODEL_LABEL = "mlgate_model"
ENVIRONMENT_LABEL = "mlgate_environment"
#: Prefix of the delivery ids of Alertmanager notifications.
ID_PREFIX = "am-"
_ZERO_TIME = "0001-01-01T00:00:00Z"


@dataclass(frozen=True)
class Alert:
    """One alert of a notification (strings as Alertmanager sent them)."""

    status: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    starts_at: str
    ends_at: str
    generator_url: str
    fingerprint: str

    @property
    def name(self) -> str:
        return self.labels.get("alertname", "")

    @property
    def firing(self) -> bool:
        return self.status == "firing"

    @property
    def summary(self) -> str:
        return self.annotations.get("summary") or self.annotations.get("description") or ""

    @property
    def key(self) -> str:
        """This firing of this alert: ``<fingerprint>@<startsAt>`` (a new firing has a new start)."""
        return f"{self.fingerprint}@{self.starts_at}"

    def evidence(self) -> dict[str, Any]:
        """A JSON-ready copy kept with a retrain record and shown in the promotion PR."""
        return {"name": self.name, "status": self.status, "labels": dict(self.labels),
                "summary": self.summary, "starts_at": self.starts_at, "generator_url": self.generator_url,
                "fingerprint": self.fingerprint}


@dataclass(frozen=True)
class Notification:
    """A parsed webhook body (:func:`parse`)."""

    receiver: str
    status: str
    group_key: str
    alerts: tuple[Alert, ...]
    external_url: str = ""
    truncated: int = 0
    reason: str = ""

    @property
    def firing(self) -> tuple[Alert, ...]:
        return tuple(a for a in self.alerts if a.firing)

    @property
    def resolved(self) -> tuple[Alert, ...]:
        return tuple(a for a in self.alerts if not a.firing)


def _kv(obj: Any, what: str) -> dict[str, str]:
    if obj is None:
        return {}
    if not isinstance(obj, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in obj.items()):
        raise ValueError(f"{what} must be an object of strings")
    return dict(obj)


def _str(obj: Mapping[str, Any], key: str, what: str, required: bool = True) -> str:
    v = obj.get(key)
    if v is None and not required:
        return ""
    if not isinstance(v, str):
        raise ValueError(f"{what}{key} must be a string")
    return v


def parse(payload: Mapping[str, Any]) -> Notification | Refusal:
    """Read an Alertmanager webhook body (already decoded JSON).

    Args:
        payload: the JSON object Alertmanager POSTed.

    Returns:
        The :class:`Notification`, or a 400 :class:`~mlgate.core.intake.Refusal` naming the first
        problem (a version other than "4", a missing ``groupKey``, an alert without
        ``fingerprint``/``startsAt``/``status``, labels that are not strings).
    """
    try:
        version = payload.get("version")
        if version != VERSION:
            return Refusal(400, f"unsupported Alertmanager payload version {version!r} (mlgate reads version \"4\")")
        raw = payload.get("alerts")
        if not isinstance(raw, list):
            return Refusal(400, "alerts must be a list")
        alerts = []
        for i, a in enumerate(raw):
            if not isinstance(a, dict):
                return Refusal(400, f"alerts[{i}] must be an object")
            w = f"alerts[{i}]."
            status = _str(a, "status", w)
            if status not in ("firing", "resolved"):
                return Refusal(400, f"{w}status must be firing or resolved, not {status!r}")
            fp = _str(a, "fingerprint", w)
            if not re.fullmatch(r"[0-9a-f]{1,64}", fp):
                return Refusal(400, f"{w}fingerprint must be hexadecimal")
            alerts.append(Alert(status, _kv(a.get("labels"), w + "labels"), _kv(a.get("annotations"), w + "annotations"),
                                _str(a, "startsAt", w), _str(a, "endsAt", w, False) or _ZERO_TIME,
                                _str(a, "generatorURL", w, False), fp))
        truncated = payload.get("truncatedAlerts") or 0
        return Notification(
            receiver=_str(payload, "receiver", "", False), status=_str(payload, "status", ""),
            group_key=_str(payload, "groupKey", ""), alerts=tuple(alerts),
            external_url=_str(payload, "externalURL", "", False),
            truncated=int(truncated) if isinstance(truncated, int) else 0,
            reason=_str(payload, "notification_reason", "", False),
        )
    except ValueError as e:
        return Refusal(400, f"malformed Alertmanager payload: {e}")


def check_bearer(token: bytes, headers: Mapping[str, str]) -> Refusal | None:
    """Check ``Authorization: Bearer <token>`` (``http_config.authorization``) in constant time.

    Args:
        token: the configured ``MLGATE_ALERTMANAGER_TOKEN`` as bytes; never empty.
        headers: request headers with lower-case names.

    Returns:
        None when it matches; else a 401 :class:`Refusal` that echoes neither value.

    Raises:
        ValueError: ``token`` is empty.
    """
    if not token:
        raise ValueError("empty Alertmanager token")
    got = headers.get("authorization")
    if got is None:
        return Refusal(401, "missing Authorization header (set http_config.authorization in the webhook_config)")
    scheme, _, credentials = got.strip().partition(" ")
    if scheme.lower() != "bearer":
        return Refusal(401, "the Authorization header must be a Bearer token")
    if not hmac.compare_digest(credentials.strip().encode("utf-8", "surrogateescape"), token):
        return Refusal(401, "the bearer token does not match")
    return None


def delivery_id(n: Notification) -> str:
    """The stored delivery id of a notification: ``am-<sha256 hex>`` of the ``groupKey`` and the
    sorted ``fingerprint@startsAt`` of its firing alerts (of its resolved alerts, with their
    ``endsAt``, when none fires). Repeat notifications of the same firing alerts get the same id."""
    firing = sorted(a.key for a in n.firing)
    parts = ["firing", *firing] if firing else ["resolved", *sorted(f"{a.key}/{a.ends_at}" for a in n.resolved)]
    digest = hashlib.sha256("\0".join([n.group_key, *parts]).encode("utf-8")).hexdigest()
    return ID_PREFIX + digest


# --------------------------------------------------------------------------- matchers

_MATCHER = re.compile(r'^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(.*?)\s*$', re.S)
_ESCAPES = {"n": "\n", "\\": "\\", '"': '"'}


@dataclass(frozen=True)
class Matcher:
    """One label matcher: ``name op value`` with op ``=``, ``!=``, ``=~`` or ``!~``."""

    name: str
    op: Literal["=", "!=", "=~", "!~"]
    value: str

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether ``labels`` satisfy the matcher (a missing label is the empty string)."""
        got = labels.get(self.name, "")
        if self.op == "=":
            return got == self.value
        if self.op == "!=":
            return got != self.value
        hit = re.fullmatch(self.value, got, re.S) is not None
        return hit if self.op == "=~" else not hit

    def __str__(self) -> str:
        return f"{self.name}{self.op}\"{self.value}\""


def _unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] == '"':
        out, i, body = [], 0, text[1:-1]
        while i < len(body):
            c = body[i]
            if c == "\\":
                if i + 1 == len(body):
                    raise ValueError("a quoted value ends with a lone backslash")
                out.append(_ESCAPES.get(body[i + 1], "\\" + body[i + 1]))
                i += 2
                continue
            if c == '"':
                raise ValueError("an unescaped '\"' inside a quoted value")
            out.append(c)
            i += 1
        return "".join(out)
    if '"' in text:
        raise ValueError("a value with '\"' must be quoted")
    return text


def parse_matcher(text: str) -> Matcher:
    """Read ``name="value"`` (``=``, ``!=``, ``=~``, ``!~``; the value quoted or bare).

    Raises:
        ValueError: not a matcher, or a regular expression that does not compile.
    """
    m = _MATCHER.match(text)
    if m is None:
        raise ValueError(f"{text!r} is not a label matcher (name=\"value\", !=, =~ or !~)")
    name, op, raw = m.groups()
    value = _unquote(raw)
    if op in ("=~", "!~"):
        try:
            re.compile(value)
        except re.error as e:
            raise ValueError(f"{text!r}: invalid regular expression: {e}") from None
    return Matcher(name, op, value)  # type: ignore[arg-type]


def matches_rule(alertname: str, matchers: Sequence[str], labels: Mapping[str, str]) -> bool:
    """Whether an alert with ``labels`` is one a ``retrain.alerts`` entry names."""
    if labels.get("alertname") != alertname:
        return False
    return all(parse_matcher(m).matches(labels) for m in matchers)


# --------------------------------------------------------------------------- which model, which environment


@dataclass(frozen=True)
class Target:
    """The model and environment an alert concerns."""

    model: str
    environment: str


def target(alert: Alert, model_label: str = MODEL_LABEL, environment_label: str = ENVIRONMENT_LABEL) -> Target | None:
    """The (model, environment) of an alert from its labels (names configurable in bot.yml
    ``alert_labels``); None when either label is missing or empty."""
    model = alert.labels.get(model_label, "").strip()
    env = alert.labels.get(environment_label, "").strip()
    if not model or not env:
        return None
    return Target(model, env)


# --------------------------------------------------------------------------- the retrain decision

Verdict = Literal["start", "cooldown", "in_flight", "not_matched"]


@dataclass(frozen=True)
class RetrainDecision:
    """What an alert starts: ``start`` a retrain, or why not (``cooldown``, ``in_flight``,
    ``not_matched``), with a sentence for the audit trail."""

    verdict: Verdict
    reason: str
    blocking: str | None = None  # the retrain record in the way (cooldown, in flight)


@dataclass(frozen=True)
class PastRetrain:
    """What the decision needs of an earlier retrain of the same model: its id, when it
    started (aware datetime) and whether it is still in flight."""

    id: str
    started_at: datetime
    in_flight: bool
    environment: str = ""


def decide(alert: Alert, rules: Sequence[tuple[str, Sequence[str]]], cooldown_hours: float,
           past: Sequence[PastRetrain], now: datetime) -> RetrainDecision:
    """Whether a firing alert starts a retrain of its model.

    Args:
        alert: the firing alert.
        rules: ``(alertname, matchers)`` of the environment's ``retrain.alerts``.
        cooldown_hours: no second retrain of the model within this many hours of the last start.
        past: the model's earlier retrains (any environment).
        now: the current time (aware).

    Returns:
        :class:`RetrainDecision`: ``not_matched`` (no rule names it), ``in_flight`` (a retrain of
        the model has not finished), ``cooldown`` (one started less than ``cooldown_hours`` ago),
        else ``start``.
    """
    if not any(matches_rule(name, ms, alert.labels) for name, ms in rules):
        return RetrainDecision("not_matched", f"no retrain.alerts entry matches alert {alert.name}")
    running = [p for p in past if p.in_flight]
    if running:
        return RetrainDecision("in_flight", f"retrain {running[0].id} of this model is still in flight "
                                            "(one retrain per model at a time)", running[0].id)
    if past and cooldown_hours > 0:
        last = max(past, key=lambda p: p.started_at)
        until = last.started_at + timedelta(hours=cooldown_hours)
        if now < until:
            return RetrainDecision("cooldown", f"retrain {last.id} started at {last.started_at.isoformat()}; "
                                               f"cooldown of {cooldown_hours:g} h until {until.isoformat()}", last.id)
    return RetrainDecision("start", f"alert {alert.name} matches the retrain policy")


# --------------------------------------------------------------------------- evidence in the PR


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ").replace("<", "&lt;").replace(">", "&gt;")


def evidence_markdown(alert: Mapping[str, Any], *, resolved_at: str | None, gate_table: str,
                      champion: str | None, champion_metrics: Mapping[str, float], retrain: str,
                      run_link: str | None) -> str:
    """The promotion PR's evidence: the alert (name, labels, summary, start, a link to its
    generator URL), whether it resolved before the retrain finished, the retrain, the gate
    table, and the champion's metrics (Markdown)."""
    labels = ", ".join(f"`{k}={v}`" for k, v in sorted((alert.get("labels") or {}).items()))
    url = alert.get("generator_url") or ""
    lines = ["### The alert", "",
             f"**{_cell(alert.get('name', ''))}** started at {alert.get('starts_at', '')}"
             + (f" ([source]({url}))" if url.startswith(("http://", "https://")) else ""), "",
             f"> {_cell(alert.get('summary') or '(no summary annotation)')}", "",
             f"Labels: {labels or '(none)'}", ""]
    if resolved_at:
        lines += [f"**Note:** the alert resolved at {resolved_at}, before the retrain finished; mlgate kept going "
                  "and gated the retrained version as usual.", ""]
    lines += ["### The retrain", "", f"Retrain `{retrain}`" + (f": {run_link}" if run_link else "") + ".", "",
              "### Gates", "", gate_table, ""]
    if champion:
        rows = ["| metric | champion |", "|---|---|"] + [f"| {_cell(k)} | {v:.6g} |" for k, v in sorted(champion_metrics.items())]
        lines += [f"### Champion (version {champion})", "", "\n".join(rows) if champion_metrics else "(no metrics logged)"]
    else:
        lines += ["### Champion", "", "No version holds `champion`: relative gates did not apply."]
    return "\n".join(lines)
