"""Workers: threads that lease deliveries from the database queue and run the handler.

The handler is ``handle(delivery, ctx) -> str`` (the outcome text), by default
``mlgate.bot.handlers:handle`` imported when the pool starts (settings ``handler``); its
module may define ``make_context(settings, store)`` to build ``ctx``.

What happens to an attempt (decided by the pure :func:`next_step`):

- the handler returns → ``done`` with its outcome;
- it raises an exception with a ``retry_after`` attribute (``mlgate.bot.handlers.Retryable``)
  → retried after ``retry_after`` seconds (or the backoff when None);
- it raises :class:`mlgate.core.errors.InfraError` or an unexpected exception → retried with
  exponential backoff (``retry_base_seconds`` × 2^(attempt-1), at most ``retry_max_seconds``);
- it raises another :class:`mlgate.core.errors.MlgateError` (config, usage, refusal) → ``failed``
  at once: running it again would give the same answer; so does any failure
  :func:`mlgate.core.failures.classify` calls permanent (a forge 4xx other than
  408/409/425/429 and rate limits, a database DataError/IntegrityError such as a NUL byte
  PostgreSQL refuses);
- after ``max_attempts`` attempts → ``failed`` with the last error.

A worker renews its lease every ``lease_seconds``/3 while the handler runs; if the process
dies, the lease expires and another worker or replica takes the delivery again within
``lease_seconds``. Every claim carries a fencing token (:mod:`mlgate.edge.db.fencing`): the
handler runs inside :func:`~mlgate.edge.db.fencing.fenced`, so each store write it makes is
conditional on the token, and each external call is preceded by a check. An attempt that
stalled past its lease (GC pause, SIGSTOP) and lost the delivery raises
:class:`~mlgate.edge.db.fencing.LeaseLost` at its next write or call: the worker logs it and
records nothing (the new holder records the outcome). An attempt that outlived
``max_attempts`` leases (a delivery that kills the process) is marked failed without running.
The process never crashes because of a delivery.

Follow-up work that no webhook triggers (canary ticks, Argo workflow status) runs in
background threads started with the pool: the handler module may define
``periodic_tasks(settings) -> list[(name, interval_seconds, fn)]``; each ``fn(ctx) -> str``
runs every ``interval_seconds`` on its own thread (never on the event loop). An exception
is logged and the next run happens as planned.
"""

from __future__ import annotations

import importlib
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from mlgate.edge import metrics
from mlgate.core.intake import metric_event
from mlgate.bot.settings import BotSettings
from mlgate.edge.db.fencing import AttemptFence, LeaseLost, fenced
from mlgate.edge.db.store import Delivery, Store
from mlgate.core.errors import ConfigError, InfraError, MlgateError, Problem

log = structlog.get_logger("mlgate.bot.worker")

Handler = Callable[[Delivery, Any], str]
#: (name, interval in seconds, fn(ctx) -> outcome text)
PeriodicTask = tuple[str, float, Callable[[Any], str]]


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class BasicContext:
    """The context given to a handler whose module has no ``make_context``."""

    settings: BotSettings
    store: Store
    clock: Callable[[], datetime]


@dataclass(frozen=True)
class Step:
    """What to do after an attempt: ``retry`` at ``retry_in`` seconds, or ``fail``."""

    action: str  # "retry" | "fail"
    retry_in: float | None = None


def backoff_seconds(attempt: int, base: float, cap: float) -> float:
    """Exponential backoff after attempt number ``attempt`` (1-based): base × 2^(attempt-1), at most cap."""
    return min(cap, base * (2 ** max(0, attempt - 1)))


def next_step(attempt: int, max_attempts: int, exc: BaseException, base: float, cap: float) -> Step:
    """Pure decision after a failed attempt (see the module docstring): ``fail`` at the attempt
    limit or when :func:`mlgate.core.failures.classify` calls the failure permanent (a 4xx that
    will not change, a database DataError/IntegrityError, a refusal), else ``retry`` after the
    failure's ``retry_after`` or the backoff."""
    from mlgate.core.failures import classify

    if attempt >= max_attempts:
        return Step("fail")
    verdict = classify(exc)
    if verdict.permanent:
        return Step("fail")
    if verdict.retry_after is not None:
        return Step("retry", verdict.retry_after)
    return Step("retry", backoff_seconds(attempt, base, cap))


def error_text(exc: BaseException) -> str:
    """One line naming the exception (what ``mlgate bot deliveries`` shows)."""
    msg = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {msg[0]}" if msg else type(exc).__name__


def load_handler(spec: str) -> tuple[Handler, Callable[[BotSettings, Store], Any] | None]:
    """Import ``module:function``; also returns the module's ``make_context`` when it has one.

    Raises:
        ConfigError: the module or function cannot be imported (names the ``handler`` setting).
    """
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
        handle = getattr(module, attr)
    except (ImportError, AttributeError) as e:
        raise ConfigError([Problem("handler", 1, 1, f"cannot import the delivery handler {spec!r}: {e}")]) from None
    return handle, getattr(module, "make_context", None)


def load_periodic(spec: str, settings: BotSettings) -> list[PeriodicTask]:
    """The handler module's ``periodic_tasks(settings)`` (none when it defines no such function).

    Tasks whose interval is not positive are left out (0 disables a task).
    """
    module = importlib.import_module(spec.partition(":")[0])
    factory = getattr(module, "periodic_tasks", None)
    if factory is None:
        return []
    return [(name, float(every), fn) for name, every, fn in factory(settings) if every and every > 0]


class WorkerPool:
    """``count`` worker threads plus one lease-renewal thread, and one thread per periodic task
    of the handler module (see the module docstring).

    Args:
        store: the queue.
        settings: ``max_attempts``, backoff, ``lease_seconds``, ``poll_interval``, ``workers``.
        handler: the callable to run; default: import ``settings.handler``.
        context: the ``ctx`` passed to the handler; default: the handler module's
            ``make_context(settings, store)``, else a :class:`BasicContext`.
        clock: returns the current aware datetime (tests may pass a fake).
        count: number of worker threads (default ``settings.workers``).
    """

    def __init__(
        self,
        store: Store,
        settings: BotSettings,
        *,
        handler: Handler | None = None,
        context: Any = None,
        clock: Callable[[], datetime] = utcnow,
        count: int | None = None,
    ):
        self.store = store
        self.settings = settings
        self.clock = clock
        self.count = settings.workers if count is None else count
        self._handler = handler
        self._context = context
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []
        self._active: dict[str, tuple[str, AttemptFence]] = {}  # delivery id -> (worker id, the attempt's fence)
        self._active_lock = threading.Lock()
        self._prefix = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._secrets = settings.secret_values()
        self._periodic: list[PeriodicTask] | None = None if handler is None else []

    def _error(self, exc: BaseException) -> str:
        """The error text to store and log, with every configured secret replaced by ``***``."""
        return self._redact(error_text(exc))

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    # ------------------------------------------------------------------ lifecycle

    def resolve(self) -> None:
        """Import the handler and build its context (raises :class:`ConfigError` when it cannot)."""
        if self._handler is None:
            self._handler, make_context = load_handler(self.settings.handler)
            if self._context is None and make_context is not None:
                self._context = make_context(self.settings, self.store)
        if self._periodic is None:
            self._periodic = load_periodic(self.settings.handler, self.settings)
        if self._context is None:
            self._context = BasicContext(self.settings, self.store, self.clock)

    def start(self) -> None:
        """Start the threads (none when ``count`` is 0)."""
        if self.count <= 0:
            return
        self.resolve()
        for i in range(self.count):
            t = threading.Thread(target=self._loop, args=(f"{self._prefix}:w{i}",), name=f"mlgate-worker-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        hb = threading.Thread(target=self._heartbeat, name="mlgate-lease-renewal", daemon=True)
        hb.start()
        self._threads.append(hb)
        for name, every, fn in self._periodic or []:
            t = threading.Thread(target=self._every, args=(name, every, fn), name=f"mlgate-{name.replace(' ', '-')}",
                                 daemon=True)
            t.start()
            self._threads.append(t)

    def wake(self) -> None:
        """Tell idle workers that new deliveries were stored (thread-safe, cheap)."""
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the threads to stop after their current delivery and wait up to ``timeout`` seconds.

        A delivery still running when the timeout passes keeps its lease and is taken again
        after the lease expires.
        """
        self._stop.set()
        self._wake.set()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))

    # ------------------------------------------------------------------ work

    def _loop(self, worker_id: str) -> None:
        while not self._stop.is_set():
            try:
                did = self.run_once(worker_id)
            except Exception as e:  # database trouble: log, wait, go on
                log.error("worker cannot reach the queue", worker=worker_id, error=error_text(e))
                did = False
            if not did:
                if self._wake.wait(self.settings.poll_interval):
                    self._wake.clear()

    def _every(self, name: str, every: float, fn: Callable[[Any], str]) -> None:
        """Run ``fn(ctx)`` every ``every`` seconds until the pool stops (first run after one interval)."""
        while not self._stop.wait(every):
            started = time.perf_counter()
            try:
                outcome = fn(self._context)
            except Exception as e:  # logged; the next run happens as planned
                log.error("periodic task failed", task=name, error=self._error(e))
                continue
            if outcome:
                log.info("periodic task", task=name, outcome=self._redact(str(outcome)),
                         seconds=round(time.perf_counter() - started, 3))

    def _heartbeat(self) -> None:
        period = max(0.05, self.settings.lease_seconds / 3)
        while not self._stop.wait(period):
            with self._active_lock:
                active = list(self._active.items())
            for delivery_id, (worker_id, fence) in active:
                if fence.lost:
                    continue
                try:
                    if not self.store.renew_lease(delivery_id, worker_id, self.clock(), self.settings.lease_seconds,
                                                  token=fence.token):
                        fence.lost = True  # the attempt stops at its next write or external call
                        log.warning("lease lost while processing: the attempt stops at its next call",
                                    delivery=delivery_id, worker=worker_id, token=fence.token)
                except Exception as e:
                    log.error("cannot renew lease", delivery=delivery_id, error=error_text(e))

    def run_once(self, worker_id: str | None = None) -> bool:
        """Claim and process one due delivery; False when none was due.

        Exceptions from the handler are recorded on the delivery, never raised.
        """
        if self._handler is None or self._context is None:
            self.resolve()
        worker_id = worker_id or f"{self._prefix}:once"
        s = self.settings
        delivery = self.store.claim_next(worker_id, self.clock(), s.lease_seconds)
        if delivery is None:
            return False
        labels = {"forge": delivery.forge, "event": metric_event(delivery.forge, delivery.event)}
        fields = {"delivery": delivery.id, "forge": delivery.forge, "webhook_event": delivery.event, "attempt": delivery.attempts}
        if delivery.attempts > s.max_attempts:
            err = f"gave up after {delivery.attempts - 1} attempts (the process stopped while processing it)"
            self.store.fail(delivery.id, err, None, worker_id=worker_id, now=self.clock(), token=delivery.token)
            metrics.PROCESSED.labels(result="failed", **labels).inc()
            log.error("delivery failed", error=err, **fields)
            return True
        fence = AttemptFence(self.store.engine, delivery.id, delivery.token, self.clock)
        with self._active_lock:
            self._active[delivery.id] = (worker_id, fence)
        started = time.perf_counter()
        try:
            with fenced(fence):
                outcome = self._handler(delivery, self._context)  # type: ignore[misc]
        except LeaseLost as exc:
            log.warning("lease lost: this attempt stopped and recorded nothing (the delivery's new holder goes on)",
                        error=self._error(exc), seconds=round(time.perf_counter() - started, 3), token=delivery.token,
                        **fields)
            return True
        except Exception as exc:
            elapsed = time.perf_counter() - started
            metrics.PROCESSING_SECONDS.labels(**labels).observe(elapsed)
            step = next_step(delivery.attempts, s.max_attempts, exc, s.retry_base_seconds, s.retry_max_seconds)
            err = self._error(exc)
            if step.action == "retry":
                retry_at = self.clock() + timedelta(seconds=step.retry_in or 0.0)
                if not self.store.fail(delivery.id, err, retry_at, worker_id=worker_id, now=self.clock(),
                                       token=delivery.token):
                    log.warning("lease lost: the failed attempt was not recorded", error=err, **fields)
                    return True
                metrics.PROCESSED.labels(result="retry", **labels).inc()
                log.warning("delivery attempt failed; will retry", error=err, retry_in=step.retry_in, seconds=round(elapsed, 3), **fields)
            else:
                if not self.store.fail(delivery.id, err, None, worker_id=worker_id, now=self.clock(),
                                       token=delivery.token):
                    log.warning("lease lost: the failed attempt was not recorded", error=err, **fields)
                    return True
                metrics.PROCESSED.labels(result="failed", **labels).inc()
                log.error("delivery failed", error=err, seconds=round(elapsed, 3), **fields)
            return True
        finally:
            with self._active_lock:
                self._active.pop(delivery.id, None)
        elapsed = time.perf_counter() - started
        metrics.PROCESSING_SECONDS.labels(**labels).observe(elapsed)
        text = outcome if isinstance(outcome, str) else repr(outcome)
        if not self.store.finish(delivery.id, text, worker_id=worker_id, now=self.clock(), token=delivery.token):
            log.warning("lease lost: the outcome was not recorded (the delivery's new holder records its own)",
                        outcome=self._redact(text), **fields)
            return True
        metrics.PROCESSED.labels(result="done", **labels).inc()
        log.info("delivery processed", outcome=text, seconds=round(elapsed, 3), **fields)
        return True
