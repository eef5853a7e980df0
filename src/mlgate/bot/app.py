"""The bot's HTTP app (Starlette, served by uvicorn).

Routes:

- ``POST /webhooks/github``  verify ``X-Hub-Signature-256``, store, answer 202
- ``POST /webhooks/gitlab``  verify ``X-Gitlab-Token``, store, answer 202
- ``POST /webhooks/mlflow``  verify ``X-MLflow-Signature`` and ``X-MLflow-Timestamp``
  (:mod:`mlgate.core.registry_events`), store, answer 202
- ``POST /webhooks/alertmanager``  verify ``Authorization: Bearer`` (:mod:`mlgate.bot.alert_intake`),
  store, answer 202
- ``GET /healthz``           the process answers (liveness)
- ``GET /readyz``            the database answers (readiness); 503 otherwise
- ``GET /metrics``           Prometheus text format

Webhook answers: 202 with headers ``X-Mlgate-Status: accepted | duplicate`` (a redelivery:
nothing new happens) ``| ignored`` (an event mlgate does not use) and ``X-Mlgate-Delivery``,
no body; errors with a JSON body ``{"error": "..."}``: 400 malformed (no delivery id, no event, not a JSON object); 401 signature or
token missing or wrong; 404 the forge has no secret configured; 413 body over
``max_body_bytes``; 503 the database did not commit in time (nothing acknowledged: the
forge shows a failed delivery, which can be redelivered). A 202 is sent only after the
delivery's row is committed (:class:`~mlgate.edge.db.store.IntakeWriter`), and no forge API call
happens before it: workers pick deliveries up from the database afterwards.

The webhook routes are plain ASGI callables (no Request object, no middleware work) so that
the event loop spends its time on verification only; the database write runs on the writer
thread.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mlgate.core import intake, registry_events
from mlgate.core.redact import Redactor as CoreRedactor
from mlgate.edge import metrics
from mlgate.bot.settings import BotSettings
from mlgate.edge.db.store import Incoming, IntakeWriter, Store
from mlgate.bot.worker import Handler, WorkerPool, error_text, utcnow

log = structlog.get_logger("mlgate.bot.app")

#: Seconds a webhook request waits for its commit before answering 503 (GitHub gives up at 10 s).
COMMIT_TIMEOUT = 8.0
_JSON = [(b"content-type", b"application/json")]


async def _respond(send: Callable, status: int, payload: dict[str, Any]) -> None:
    """Send the answer. A 202 carries its outcome in headers and no body (one socket write
    instead of two: uvicorn writes the head and a non-empty body separately); other
    answers carry ``{"error": ...}`` as JSON."""
    if status == 202:
        headers = [(b"content-length", b"0"), (b"x-mlgate-status", payload["status"].encode())]
        if "delivery" in payload:
            headers.append((b"x-mlgate-delivery", payload["delivery"].encode()))
        await send({"type": "http.response.start", "status": 202, "headers": headers})
        await send({"type": "http.response.body", "body": b""})
        return
    body = json.dumps(payload, separators=(",", ":")).encode()
    await send({"type": "http.response.start", "status": status, "headers": [*_JSON, (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass


async def _read_body(receive: Callable, limit: int) -> bytes:
    """The request body, refusing (``_TooLarge``) as it exceeds ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            raise ConnectionError("client disconnected")
        chunk = msg.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise _TooLarge()
            chunks.append(chunk)
        if not msg.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def read_body_within(receive: Callable, headers: dict[str, str], limit: int) -> "bytes | intake.Refusal":
    """The request body, or why it is refused: 413 when ``Content-Length`` (ASCII digits only) or
    the bytes received pass ``limit`` (bytes), 400 when the client went away while sending it.
    Every webhook route reads its body through this."""
    too_large = intake.Refusal(413, f"body over {limit} bytes")
    declared = headers.get("content-length")
    if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > limit:
        return too_large
    try:
        return await _read_body(receive, limit)
    except _TooLarge:
        return too_large
    except ConnectionError:
        return intake.Refusal(400, "client disconnected")


class WebhookEndpoint:
    """ASGI endpoint for one forge's webhooks (see the module docstring for the answers)."""

    def __init__(self, forge: str, settings: BotSettings, batcher: "LoopBatcher"):
        self.forge = forge
        self.batcher = batcher
        self.limit = settings.max_body_bytes
        secret = {"github": settings.github_webhook_secret, "gitlab": settings.gitlab_webhook_token,
                  "mlflow": getattr(settings, "mlflow_webhook_secret", None)}[forge]
        self._secret: bytes | None = secret.get_secret_value().encode("utf-8") if secret is not None else None
        # MLflow names its event in the body (entity.action), not in a header
        self._event_header = {"github": "x-github-event", "gitlab": "x-gitlab-event", "mlflow": "x-mlflow-event"}[forge]
        self._counters: dict[tuple[str | None, str], Any] = {}
        self._latency = metrics.INTAKE_SECONDS.labels(forge=forge)

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        started = time.perf_counter()
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        event_name = headers.get(self._event_header)
        try:
            status, payload, outcome = await self._handle(scope, receive, headers, event_name)
            event_name = scope.get("mlgate.event", event_name)  # MLflow names its event in the (verified) body
        except Exception as e:  # a bug: answer 500 (the forge will show it), keep serving
            log.exception("webhook intake error", forge=self.forge, error=error_text(e))
            status, payload, outcome = 500, {"error": "internal error; see the bot's log"}, "error"
        key = (event_name, outcome)
        counter = self._counters.get(key)
        if counter is None:
            counter = metrics.DELIVERIES.labels(forge=self.forge, event=intake.metric_event(self.forge, event_name), outcome=outcome)
            if len(self._counters) < 256:
                self._counters[key] = counter
        counter.inc()
        await _respond(send, status, payload)
        self._latency.observe(time.perf_counter() - started)

    async def _handle(
        self, scope: dict, receive: Callable, headers: dict[str, str], event_name: str | None
    ) -> tuple[int, dict[str, Any], str]:
        forge = self.forge
        client = (scope.get("client") or ("?", 0))[0]
        if scope["method"] != "POST":
            return 405, {"error": "use POST"}, "malformed"
        if self._secret is None:
            log.warning("webhook for a forge without a configured secret", forge=forge, client=client)
            return 404, {"error": f"{forge} webhooks are not configured on this bot"}, "not_configured"
        # Refuse before reading the body when the credential is missing (GitHub) or wrong
        # (GitLab's token needs no body).
        if forge == "gitlab":
            refusal = intake.check_gitlab_token(self._secret, headers)
            if refusal is not None:
                return self._refused(refusal, "unauthorized", client, headers)
        elif forge == "github" and "x-hub-signature-256" not in headers:
            refusal = intake.check_github_signature(self._secret, headers, b"")
            if refusal is not None:
                return self._refused(refusal, "unauthorized", client, headers)
        elif forge == "mlflow" and not headers.get(registry_events.SIGNATURE_HEADER, "").strip():
            refusal = registry_events.check_mlflow_signature(self._secret, headers, b"", time.time())
            if refusal is not None:
                return self._refused(refusal, "unauthorized", client, headers)
        body = await read_body_within(receive, headers, self.limit)
        if isinstance(body, intake.Refusal):
            return self._body_refused(body, client, headers)
        if forge == "github":
            refusal = intake.check_github_signature(self._secret, headers, body)
            if refusal is not None:
                return self._refused(refusal, "unauthorized", client, headers)
            delivery_id = intake.github_delivery_id(headers)
        elif forge == "mlflow":
            refusal = registry_events.check_mlflow_signature(self._secret, headers, body, time.time())
            if refusal is not None:
                return self._refused(refusal, "unauthorized", client, headers)
            delivery_id = registry_events.mlflow_delivery_id(headers)
        else:
            delivery_id = intake.gitlab_delivery_id(headers, body)
        if isinstance(delivery_id, intake.Refusal):
            return self._refused(delivery_id, "malformed", client, headers)
        if forge == "mlflow":
            event_name = scope["mlgate.event"] = self._mlflow_event(body)
        if not event_name:
            what = ("a JSON body naming entity and action" if forge == "mlflow" else f"{self._event_header} header")
            return self._refused(intake.Refusal(400, f"missing {what}"), "malformed", client, headers)
        if not intake.is_used(forge, event_name):
            log.info("event not used by mlgate; acknowledged and dropped", forge=forge, webhook_event=event_name, delivery=delivery_id)
            return 202, {"status": "ignored", "delivery": delivery_id}, "dropped"
        parsed = intake.parse_payload(headers, body)
        if isinstance(parsed, intake.Refusal):
            return self._refused(parsed, "malformed", client, headers)
        if intake.is_form(headers):
            body = json.dumps(parsed).encode()  # store the JSON itself
        item = Incoming(delivery_id, forge, event_name, intake.stored_headers(headers), body, time.time())
        try:
            stored = await self._commit(item)
        except Exception as e:
            log.error("delivery not stored", forge=forge, webhook_event=event_name, delivery=delivery_id, error=error_text(e))
            return 503, {"error": "the delivery could not be stored; redeliver it later", "delivery": delivery_id}, "unavailable"
        if not stored:
            log.info("redelivery of a stored delivery; nothing to do", forge=forge, webhook_event=event_name, delivery=delivery_id)
            return 202, {"status": "duplicate", "delivery": delivery_id}, "duplicate"
        log.debug("delivery accepted", forge=forge, webhook_event=event_name, delivery=delivery_id)
        return 202, {"status": "accepted", "delivery": delivery_id}, "accepted"

    def _body_refused(self, refusal: intake.Refusal, client: str, headers: dict[str, str]) -> tuple[int, dict, str]:
        """The answer to a body :func:`read_body_within` refused: 413 logged and counted as too
        large; a client gone away (400) answered without a log line."""
        if refusal.status != 413:
            return refusal.status, {"error": refusal.message}, "malformed"
        return self._refused(refusal, "too_large", client, headers)

    def _refused(
        self, refusal: intake.Refusal, outcome: str, client: str, headers: dict[str, str]
    ) -> tuple[int, dict[str, Any], str]:
        log.warning(
            "webhook refused",
            forge=self.forge,
            status=refusal.status,
            reason=refusal.message,
            client=client,
            delivery=(headers.get("x-github-delivery") or headers.get("x-gitlab-event-uuid")
                      or headers.get(registry_events.DELIVERY_HEADER) or "")[:128],
        )
        return refusal.status, {"error": refusal.message}, outcome

    @staticmethod
    def _mlflow_event(body: bytes) -> str | None:
        """``entity.action`` of a verified MLflow body (None: not a JSON object naming both; 400 below)."""
        parsed = intake.parse_payload({}, body)
        return None if isinstance(parsed, intake.Refusal) else registry_events.mlflow_event_name(parsed)

    async def _commit(self, item: Incoming) -> bool:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[bool] = loop.create_future()
        self.batcher.add(loop, item, fut)
        timer = loop.call_later(COMMIT_TIMEOUT, _settle, fut, TimeoutError(f"no commit within {COMMIT_TIMEOUT} s"))
        try:
            return await fut
        finally:
            timer.cancel()


class LoopBatcher:
    """Hands the deliveries verified during one event-loop iteration to the writer at once.

    One thread wake-up per loop iteration instead of one per delivery: under load, the
    deliveries whose bodies arrived together are committed together.
    """

    def __init__(self, writer: IntakeWriter):
        self.writer = writer
        self._pending: list[tuple[Incoming, asyncio.Future]] = []

    def add(self, loop: asyncio.AbstractEventLoop, item: Incoming, fut: asyncio.Future) -> None:
        if not self._pending:
            loop.call_soon(self._flush)
        self._pending.append((item, fut))

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        self.writer.submit_many(pending)


def _settle(fut: asyncio.Future, result: bool | BaseException) -> None:
    if fut.done():
        return
    if isinstance(result, BaseException):
        fut.set_exception(result)
    else:
        fut.set_result(result)


def _settle_all(pairs: list[tuple[asyncio.Future, bool | BaseException]]) -> None:
    for fut, result in pairs:
        _settle(fut, result)


def _probe_routes(store: Store) -> list[Route]:
    """``/healthz`` (the process answers), ``/readyz`` (the database answers) and ``/metrics``."""

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        try:
            await asyncio.wait_for(asyncio.to_thread(store.ping), timeout=5.0)
        except Exception as e:
            metrics.DATABASE_UP.set(0)
            msg = str(e) if not isinstance(e, TimeoutError) else f"database {store.safe_url} did not answer within 5 s"
            return JSONResponse({"status": "unavailable", "error": msg}, status_code=503)
        metrics.DATABASE_UP.set(1)
        return JSONResponse({"status": "ready"})

    async def metrics_endpoint(request: Request) -> Response:
        try:
            depth = await asyncio.wait_for(asyncio.to_thread(store.queue_depth), timeout=5.0)
            for status, n in depth.items():
                metrics.QUEUE_DEPTH.labels(status=status).set(n)
            metrics.DATABASE_UP.set(1)
        except Exception:
            metrics.DATABASE_UP.set(0)
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    return [Route("/healthz", healthz), Route("/readyz", readyz), Route("/metrics", metrics_endpoint)]


def _lifespan(settings: BotSettings, store: Store, pool: WorkerPool, writer: IntakeWriter) -> Callable:
    """The app's lifespan: start the intake writer and the workers; stop them on shutdown."""

    @asynccontextmanager
    async def lifespan(app: Starlette):  # type: ignore[no-untyped-def]
        loop = asyncio.get_running_loop()
        # one wake-up of the event loop per committed batch, not per delivery
        writer.deliver = lambda pairs: loop.call_soon_threadsafe(_settle_all, pairs)
        writer.start()
        pool.start()
        # Everything imported so far lives as the process: keep it out of the
        # cyclic GC's work, so that collections stay short (tail latency).
        gc.collect()
        gc.freeze()
        log.info(
            "bot started",
            database=store.safe_url,
            workers=pool.count,
            github=settings.github_webhook_secret is not None,
            gitlab=settings.gitlab_webhook_token is not None,
            mlflow=getattr(settings, "mlflow_webhook_secret", None) is not None,
        )
        try:
            yield
        finally:
            writer.stop()
            await asyncio.to_thread(pool.stop, 10.0)
            log.info("bot stopped")

    return lifespan


def create_app(
    settings: BotSettings,
    store: Store | None = None,
    *,
    handler: Handler | None = None,
    context: Any = None,
    clock: Callable[[], datetime] = utcnow,
    workers: int | None = None,
) -> "BotApp":
    """Build the ASGI app; its lifespan starts the intake writer and the worker threads.

    Args:
        settings: validated bot settings.
        store: the database (default: ``Store(settings.database_url)``).
        handler: delivery handler (default: import ``settings.handler``); see :mod:`mlgate.bot.worker`.
        context: ``ctx`` for the handler (default: the handler module's ``make_context``).
        clock: current time for the workers.
        workers: worker thread count (default ``settings.workers``; 0 = store only).

    Raises:
        ConfigError: the handler cannot be imported. InfraError: the database cannot be opened.
    """
    store = store if store is not None else Store(settings.database_url)
    store.redactor = settings.redactor(os.environ)  # outcomes, errors and audit records: no secret
    pool = WorkerPool(store, settings, handler=handler, context=context, clock=clock, count=workers)
    if pool.count > 0:
        pool.resolve()  # fail at start, not at the first delivery
    writer = IntakeWriter(store, on_commit=pool.wake)
    app = Starlette(routes=_probe_routes(store), lifespan=_lifespan(settings, store, pool, writer))
    app.state.store = store
    app.state.pool = pool
    app.state.writer = writer
    batcher = LoopBatcher(writer)
    webhooks = {f"/webhooks/{forge}": WebhookEndpoint(forge, settings, batcher) for forge in ("github", "gitlab", "mlflow")}
    from mlgate.bot.alert_intake import AlertmanagerEndpoint  # imported here: it builds on this module

    webhooks["/webhooks/alertmanager"] = AlertmanagerEndpoint(settings, batcher)
    return BotApp(app, webhooks)


class BotApp:
    """The ASGI app: webhook paths go straight to their :class:`WebhookEndpoint` (no
    middleware or routing work per delivery); everything else, including the lifespan,
    to the Starlette app. ``state`` holds ``store``, ``pool`` and ``writer``."""

    def __init__(self, starlette: Starlette, webhooks: dict[str, WebhookEndpoint]):
        self.starlette = starlette
        self.webhooks = webhooks
        self.state = starlette.state

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "http":
            endpoint = self.webhooks.get(scope["path"])
            if endpoint is not None:
                await endpoint(scope, receive, send)
                return
        await self.starlette(scope, receive, send)


# ---------------------------------------------------------------------- logging

_SENSITIVE_KEYS = ("secret", "token", "password", "private_key", "authorization", "signature")


class Redactor:
    """structlog processor: masks secrets in every value with ``***`` through the bot's one
    :class:`mlgate.core.redact.Redactor` (configured secrets, and well-known token shapes).

    Also blanks values whose key names a credential (``*token*``, ``*secret*``...).
    """

    def __init__(self, secrets: Iterable[str]):
        self.secrets = [s for s in secrets if s]
        self._redactor = CoreRedactor(self.secrets)

    def _clean(self, value: Any) -> Any:
        if isinstance(value, str):
            return self._redactor.text(value)
        if isinstance(value, dict):
            return {k: self._clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self._clean(v) for v in value]
        if isinstance(value, (int, float, bool)) or value is None:
            return value
        return self._clean(str(value))

    def __call__(self, logger: Any, method: str, event_dict: dict) -> dict:
        out = {}
        for k, v in event_dict.items():
            if any(s in k.lower() for s in _SENSITIVE_KEYS):
                out[k] = "***"
            else:
                out[k] = self._clean(v)
        return out


def configure_logging(level: str, secrets: Iterable[str], stream: Any = None) -> None:
    """JSON logs (one object per line) for structlog and stdlib loggers (uvicorn), secrets redacted.

    Args:
        level: ``debug``, ``info``, ``warning`` or ``error``.
        secrets: values to replace with ``***`` wherever they appear.
        stream: where lines go (default ``sys.stdout``).
    """
    stream = stream or sys.stdout
    levelno = logging.getLevelName(level.upper())
    redact = Redactor(secrets)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, redact, structlog.processors.JSONRenderer()],
        wrapper_class=structlog.make_filtering_bound_logger(levelno),
        logger_factory=structlog.WriteLoggerFactory(stream),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                redact,
                structlog.processors.JSONRenderer(),
            ],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(levelno)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        lg = logging.getLogger(name)
        lg.handlers = []
        lg.propagate = True
