"""Prometheus metrics of the bot (prometheus-client, default registry, served at ``/metrics``).

Label values are bounded: events are the ones mlgate knows or ``other``
(:func:`mlgate.core.intake.metric_event`), forges are ``github``/``gitlab``.

For the domain side (forges, promotions), increment:

- ``FORGE_CALLS.labels(forge="github").inc()`` per REST request sent to a forge;
- ``FORGE_ERRORS.labels(forge="github", status="503").inc()`` per failed request
  (status: the HTTP status code, or ``network`` when there was no response);
- ``PROMOTION_API_CALLS.labels(forge="github").observe(n)`` once per promotion with the number of
  forge API calls it took.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

DELIVERIES = Counter(
    "mlgate_bot_deliveries",
    "Webhook deliveries received, by forge, event and intake outcome "
    "(accepted, duplicate, dropped, unauthorized, too_large, malformed, not_configured, unavailable).",
    ["forge", "event", "outcome"],
)
PROCESSED = Counter(
    "mlgate_bot_deliveries_processed",
    "Delivery processing attempts by forge, event and result (done, retry, failed).",
    ["forge", "event", "result"],
)
QUEUE_DEPTH = Gauge(
    "mlgate_bot_queue_depth", "Deliveries in the database queue by status (queued, running, failed).", ["status"]
)
PROCESSING_SECONDS = Histogram(
    "mlgate_bot_processing_seconds",
    "Time a worker spent on one delivery attempt, in seconds.",
    ["forge", "event"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
INTAKE_SECONDS = Histogram(
    "mlgate_bot_intake_seconds",
    "Time from the start of a webhook request to its answer (verification and durable write), in seconds.",
    ["forge"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
)
FORGE_CALLS = Counter("mlgate_bot_forge_api_calls", "REST API requests sent to a forge.", ["forge"])
FORGE_ERRORS = Counter(
    "mlgate_bot_forge_api_errors", "Forge API requests that failed, by HTTP status (or 'network').", ["forge", "status"]
)
PROMOTION_API_CALLS = Histogram(
    "mlgate_bot_promotion_api_calls",
    "Forge API calls needed for one promotion (branch, commit, pull/merge request, reply).",
    ["forge"],
    buckets=(1, 2, 3, 4, 5, 6, 8, 10, 13, 16, 20, 25, 32, 40, 50),
)

for _forge in ("github", "gitlab"):  # export zeros so dashboards and alerts see the series
    FORGE_CALLS.labels(forge=_forge)
for _status in ("queued", "running", "failed"):
    QUEUE_DEPTH.labels(status=_status)
DATABASE_UP = Gauge("mlgate_bot_database_up", "1 when the last readiness or metrics check reached the database, else 0.")
CANARY_HELD = Gauge(
    "mlgate_canary_held_seconds",
    "Seconds a running canary has been held at its step because Prometheus could not be queried (0 when it is "
    "not held); past its analysis.max_hold the canary pauses and asks on the PR.",
    ["model", "environment"],
)
