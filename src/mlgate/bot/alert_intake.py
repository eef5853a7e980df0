"""``POST /webhooks/alertmanager``: Alertmanager's webhook (payload version "4") into the bot.

Answers, like the forge webhooks (:mod:`mlgate.bot.app`): 202 with ``X-Mlgate-Status: accepted``
(stored; the workers act on it) or ``duplicate`` (a repeat notification of the same firing
alerts: nothing new happens) and ``X-Mlgate-Delivery``; 401 when ``Authorization: Bearer
<MLGATE_ALERTMANAGER_TOKEN>`` is missing or wrong (compared in constant time; nothing is read
or stored); 404 when the bot has no token configured; 400 a body that is not an Alertmanager
payload; 413 over ``max_body_bytes``; 503 the database did not commit in time (Alertmanager
retries a 5xx). The 202 is sent only after the delivery's row is committed.

The delivery id is :func:`mlgate.core.alerts.delivery_id` (``groupKey`` plus the firing alerts'
``fingerprint`` and ``startsAt``), so Alertmanager's repeat notifications are stored once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import structlog

from mlgate.bot.app import COMMIT_TIMEOUT, LoopBatcher, WebhookEndpoint, _respond, read_body_within
from mlgate.bot.settings import BotSettings
from mlgate.core import alerts, intake
from mlgate.edge import metrics
from mlgate.edge.db.store import Incoming

log = structlog.get_logger("mlgate.bot.app")

FORGE = "alertmanager"
EVENT = "alert"


class AlertmanagerEndpoint(WebhookEndpoint):
    """ASGI endpoint of ``/webhooks/alertmanager`` (see the module docstring for the answers)."""

    def __init__(self, settings: BotSettings, batcher: LoopBatcher):
        self.forge = FORGE
        self.batcher = batcher
        self.limit = settings.max_body_bytes
        token = settings.alertmanager_token
        self._secret = token.get_secret_value().encode("utf-8") if token is not None else None
        self._event_header = "user-agent"
        self._counters = {}
        self._latency = metrics.INTAKE_SECONDS.labels(forge=FORGE)

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        started = time.perf_counter()
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            status, payload, outcome = await self._handle_alert(scope, receive, headers)
        except Exception as e:  # a bug: answer 500 (Alertmanager retries), keep serving
            log.exception("alertmanager intake error", error=f"{type(e).__name__}: {e}")
            status, payload, outcome = 500, {"error": "internal error; see the bot's log"}, "error"
        counter = self._counters.get(outcome)
        if counter is None:
            counter = self._counters[outcome] = metrics.DELIVERIES.labels(forge=FORGE, event=EVENT, outcome=outcome)
        counter.inc()
        await _respond(send, status, payload)
        self._latency.observe(time.perf_counter() - started)

    async def _handle_alert(self, scope: dict, receive: Callable,
                            headers: dict[str, str]) -> tuple[int, dict[str, Any], str]:
        client = (scope.get("client") or ("?", 0))[0]
        if scope["method"] != "POST":
            return 405, {"error": "use POST"}, "malformed"
        if self._secret is None:
            log.warning("alertmanager webhook without a configured token", client=client)
            return 404, {"error": "alertmanager webhooks are not configured on this bot (MLGATE_ALERTMANAGER_TOKEN)"}, \
                "not_configured"
        refusal = alerts.check_bearer(self._secret, headers)
        if refusal is not None:
            return self._refused(refusal, "unauthorized", client, headers)
        body = await read_body_within(receive, headers, self.limit)
        if isinstance(body, intake.Refusal):
            return self._body_refused(body, client, headers)
        obj = intake.parse_payload({"content-type": "application/json"}, body)
        if isinstance(obj, intake.Refusal):
            return self._refused(obj, "malformed", client, headers)
        parsed = alerts.parse(obj)
        if isinstance(parsed, intake.Refusal):
            return self._refused(parsed, "malformed", client, headers)
        delivery_id = alerts.delivery_id(parsed)
        item = Incoming(delivery_id, FORGE, EVENT, intake.stored_headers(headers), body, time.time())
        try:
            stored = await self._commit(item)
        except Exception as e:
            log.error("alert notification not stored", delivery=delivery_id, error=f"{type(e).__name__}: {e}")
            return 503, {"error": "the notification could not be stored; Alertmanager retries it",
                         "delivery": delivery_id}, "unavailable"
        if not stored:
            log.info("repeat notification; nothing new", delivery=delivery_id, group_key=parsed.group_key[:200])
            return 202, {"status": "duplicate", "delivery": delivery_id}, "duplicate"
        log.info("alert notification accepted", delivery=delivery_id, status=parsed.status,
                 alerts=len(parsed.alerts), reason=parsed.reason)
        return 202, {"status": "accepted", "delivery": delivery_id}, "accepted"


__all__ = ["AlertmanagerEndpoint", "COMMIT_TIMEOUT"]
