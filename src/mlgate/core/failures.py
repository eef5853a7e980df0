"""Is a failure worth another attempt? The one place that says so: :func:`classify`.

Pure core: it looks at an exception's class names and attributes only, never imports a client
library (PyGithub, python-gitlab, SQLAlchemy, psycopg, httpx, MLflow), so the bot's worker
(:func:`mlgate.bot.worker.next_step`) and anyone else share one table:

=========================================================  ==========  ==============================
failure                                                    verdict     why
=========================================================  ==========  ==============================
has ``retry_after`` (``Retryable``, ``ForgeBusy``)         transient   the raiser asked for a retry
HTTP 408, 409, 425, 429 and every 5xx                      transient   RFC 9110 §15.5.9/§15.5.10,
                                                                       RFC 8470 §5.2, RFC 6585 §4,
                                                                       RFC 9110 §15.6
HTTP 403 whose message names a (secondary) rate limit      transient   GitHub REST docs, "Rate
                                                                       limits for the REST API"
any other HTTP 4xx                                         permanent   the same request gets the
                                                                       same answer
database DataError, IntegrityError, NotSupportedError      permanent   PEP 249 exception classes
(a NUL byte in PostgreSQL text, a too-long value, a                    (SQLAlchemy and psycopg use
violated constraint)                                                   the same names)
database OperationalError, InterfaceError, timeouts,       transient   the server or the network
connection errors (``ConnectionError``, ``TimeoutError``,
``OSError``, httpx/requests/urllib3 transport errors)
``InfraError``                                             transient   a service mlgate depends on
other ``MlgateError`` (usage, config, refusal, manifest)   permanent   the input must change
anything else (a bug, an unknown library error)            transient   retrying is cheap; the
                                                                       attempt limit stops it
=========================================================  ==========  ==============================

An HTTP status is read from the exception (``status``, ``status_code``, ``response_code``,
``get_http_status_code()``, or ``response.status_code``), then from its ``__cause__`` /
``__context__`` chain (not a context suppressed with ``raise ... from None``), so a wrapped library error is classified by what the server said.
"""

from __future__ import annotations

from dataclasses import dataclass

#: HTTP statuses below 500 that may succeed when the same request is sent again.
RETRYABLE_4XX = frozenset({408, 409, 425, 429})

_PERMANENT_DB = frozenset({"DataError", "IntegrityError", "NotSupportedError"})
_TRANSIENT_DB = frozenset({"OperationalError", "InterfaceError", "DisconnectionError", "InternalError"})
_TRANSPORT_MODULES = ("requests", "urllib3", "httpx", "httpcore", "socket", "ssl")
_MLGATE_INFRA = "InfraError"
_MLGATE_BASE = "MlgateError"


@dataclass(frozen=True)
class Verdict:
    """The classification of one failure.

    ``permanent``: another attempt would fail the same way (fail the work now).
    ``reason``: one line saying why (e.g. ``"HTTP 422: the same request gets the same answer"``).
    ``retry_after``: seconds the failure asked to wait (None: use the caller's backoff).
    """

    permanent: bool
    reason: str
    retry_after: float | None = None


def _names(exc: BaseException) -> list[str]:
    return [c.__name__ for c in type(exc).__mro__]


def http_status(exc: BaseException) -> int | None:
    """The HTTP status an exception (or an exception it wraps) carries, or None.

    Looks at ``status``, ``status_code``, ``response_code``, ``get_http_status_code()`` and
    ``response.status_code``; a value outside 100..599 (or 0: no answer) is not a status.
    """
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        for value in _status_candidates(cur):
            if isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599:
                return value
        cur = cur.__cause__ or (None if cur.__suppress_context__ else cur.__context__)
    return None


def _status_candidates(exc: BaseException) -> list[object]:
    out: list[object] = [getattr(exc, a, None) for a in ("status", "status_code", "response_code")]
    getter = getattr(exc, "get_http_status_code", None)
    if callable(getter):
        try:
            out.append(getter())
        except Exception:  # a library's accessor failing must not hide the failure itself
            pass
    response = getattr(exc, "response", None)
    if response is not None:
        out.append(getattr(response, "status_code", None))
    return out


def _rate_limited(exc: BaseException) -> bool:
    text = f"{exc} {getattr(exc, 'data', '')}".lower()
    return "rate limit" in text


def _http_verdict(exc: BaseException, status: int) -> Verdict:
    if status >= 500:
        return Verdict(False, f"HTTP {status}: the server failed; it may answer next time")
    if status in RETRYABLE_4XX:
        return Verdict(False, f"HTTP {status}: a conflict, timeout or rate limit that passes")
    if status == 403 and _rate_limited(exc):
        return Verdict(False, "HTTP 403: a (secondary) rate limit that passes")
    return Verdict(True, f"HTTP {status}: the same request gets the same answer")


def classify(exc: BaseException) -> Verdict:
    """Whether ``exc`` is permanent (fail at once) or transient (retry), and why.

    Args:
        exc: the exception an attempt raised.

    Returns:
        A :class:`Verdict` (see the module docstring's table); ``retry_after`` comes from the
        exception's own ``retry_after`` attribute when it is a non-negative number.
    """
    retry_after = getattr(exc, "retry_after", None)
    if hasattr(exc, "retry_after"):
        wait = float(retry_after) if isinstance(retry_after, (int, float)) and retry_after >= 0 else None
        return Verdict(False, "the failure asked for a retry", wait)
    names = _names(exc)
    if _MLGATE_BASE in names and _MLGATE_INFRA not in names:
        status = http_status(exc)
        if status is not None and (status >= 500 or status in RETRYABLE_4XX):
            return _http_verdict(exc, status)
        return Verdict(True, f"{type(exc).__name__}: retrying gives the same answer")
    for n in names:
        if n in _PERMANENT_DB:
            return Verdict(True, f"database {n}: the data itself is refused (retrying writes the same data)")
    for n in names:
        if n in _TRANSIENT_DB:
            return Verdict(False, f"database {n}: the server or the connection failed")
    if _MLGATE_INFRA in names:
        return Verdict(False, "a service mlgate depends on failed")
    status = http_status(exc)
    if status is not None:
        return _http_verdict(exc, status)
    if isinstance(exc, (ConnectionError, TimeoutError, OSError)) or type(exc).__module__.split(".")[0] in _TRANSPORT_MODULES:
        return Verdict(False, f"{type(exc).__name__}: the network failed")
    return Verdict(False, f"{type(exc).__name__}: unexpected; retried up to the attempt limit")
