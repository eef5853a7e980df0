"""Prometheus adapter: PromQL instant queries over the HTTP API (thin edge, httpx).

Source of the behaviour: Prometheus documentation, "HTTP API" (``/api/v1/query``, "Instant
queries", "Expression query result formats", "Format overview"):

* ``POST /api/v1/query`` with form fields ``query`` (and optionally ``time``, ``timeout``);
* a success is ``{"status": "success", "data": {"resultType": ..., "result": ...}}``, maybe with
  ``"warnings"``; ``resultType`` is ``vector`` (a list of ``{"metric": {...}, "value": [t, "v"]}``),
  ``scalar`` (``[t, "v"]``), ``matrix`` (``{"metric", "values": [[t, "v"], ...]}``) or ``string``;
* sample values are strings, including ``"NaN"``, ``"+Inf"`` and ``"-Inf"``;
* a failure is ``{"status": "error", "errorType": ..., "error": ...}`` with HTTP 400 (bad
  parameters, e.g. a PromQL syntax error), 422 (the expression cannot be executed) or 503
  (timed out or aborted).

Errors: the server cannot be reached, times out, answers 5xx/422 or something that is not the
documented JSON → :class:`~mlgate.core.errors.InfraError` (exit 3) naming the URL; a query the server
rejects as invalid (HTTP 400 ``bad_data``) → :class:`QueryError` (a :class:`~mlgate.core.errors.UsageError`,
exit 2) naming the query. Nothing here decides anything: callers hold a canary on either error.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from mlgate.core.errors import InfraError, Unreachable, UsageError

__all__ = ["Prometheus", "QueryError", "QueryResult", "Sample", "parse_response"]


class QueryError(UsageError):
    """Prometheus rejected a query as invalid (HTTP 400, ``bad_data``): fix the PromQL (exit 2)."""


@dataclass(frozen=True)
class Sample:
    """One value of a query result.

    Attributes:
        labels: the series' labels (empty for a scalar).
        value: the value as a float (``nan``/``inf`` kept as such).
        timestamp: UNIX seconds of the evaluation.
        points: for a range-vector (matrix) result, how many raw points the series had in the
            range (1 for a vector or scalar).
    """

    labels: dict[str, str]
    value: float
    timestamp: float
    points: int = 1


@dataclass(frozen=True)
class QueryResult:
    """The parsed ``data`` of a successful query.

    Attributes:
        result_type: ``vector``, ``scalar``, ``matrix`` or ``string``.
        samples: one :class:`Sample` per series (a matrix series gives its last value).
        warnings: warnings the server attached (e.g. partial data).
    """

    result_type: str
    samples: tuple[Sample, ...] = ()
    warnings: tuple[str, ...] = field(default=())

    def single_value(self, query: str = "") -> float | None:
        """The one number this result holds, or None when it holds none.

        None for an empty vector (no series matched) and for ``NaN`` (e.g. ``0/0``: no traffic).

        Raises:
            QueryError: the result has several series (aggregate it with ``sum``/``max``/``avg``)
                or is a string.
        """
        if self.result_type == "string":
            raise QueryError(f"query {query!r} returned a string, not a number")
        if not self.samples:
            return None
        if len(self.samples) > 1:
            shown = ", ".join(_series(s.labels) for s in self.samples[:3])
            raise QueryError(
                f"query {query!r} returned {len(self.samples)} series ({shown}{', ...' if len(self.samples) > 3 else ''}); "
                "aggregate it to one (sum, max or avg)"
            )
        v = self.samples[0].value
        return None if math.isnan(v) else v

    @property
    def point_count(self) -> int:
        """Total raw points over all series (a matrix counts every point in the range)."""
        return sum(s.points for s in self.samples)


def _series(labels: Mapping[str, str]) -> str:
    name = labels.get("__name__", "")
    rest = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()) if k != "__name__")
    return f"{name}{{{rest}}}"


def _float(raw: Any, where: str) -> float:
    try:
        return float(raw)  # Python reads "NaN", "+Inf", "-Inf" as Prometheus writes them
    except (TypeError, ValueError):
        raise ValueError(f"{where}: value {raw!r} is not a number") from None


def parse_response(body: Any) -> QueryResult:
    """Parse the JSON body of a successful ``/api/v1/query`` answer (pure).

    Raises:
        ValueError: the body is not the documented shape.
    """
    if not isinstance(body, dict) or body.get("status") != "success":
        raise ValueError("the answer is not a success object")
    data = body.get("data")
    if not isinstance(data, dict) or "resultType" not in data:
        raise ValueError("the answer has no data.resultType")
    rtype = data["resultType"]
    result = data.get("result")
    warnings = tuple(str(w) for w in body.get("warnings") or ())
    if rtype in ("scalar", "string"):
        if not isinstance(result, list) or len(result) != 2:
            raise ValueError(f"a {rtype} result must be [time, value]")
        if rtype == "string":
            return QueryResult("string", (), warnings)
        return QueryResult("scalar", (Sample({}, _float(result[1], "scalar"), float(result[0])),), warnings)
    if not isinstance(result, list):
        raise ValueError(f"a {rtype} result must be a list")
    samples: list[Sample] = []
    for item in result:
        if not isinstance(item, dict):
            raise ValueError("a series must be an object")
        labels = {str(k): str(v) for k, v in (item.get("metric") or {}).items()}
        if rtype == "vector":
            pair = item.get("value")
            if not isinstance(pair, list) or len(pair) != 2:
                raise ValueError("a vector sample must have value [time, value]")
            samples.append(Sample(labels, _float(pair[1], "vector"), float(pair[0])))
        elif rtype == "matrix":
            values = item.get("values") or []
            if not values:
                continue
            t, v = values[-1]
            samples.append(Sample(labels, _float(v, "matrix"), float(t), points=len(values)))
        else:
            raise ValueError(f"unknown resultType {rtype!r}")
    return QueryResult(str(rtype), tuple(samples), warnings)


class Prometheus:
    """A Prometheus server (or anything that speaks its HTTP API: Thanos, Mimir, VictoriaMetrics).

    Args:
        base_url: e.g. ``http://prometheus.monitoring:9090`` (a path prefix is kept).
        timeout: seconds for each HTTP request; also sent as the query's ``timeout``.
        token: bearer token sent as ``Authorization`` (never logged or put in messages).
        transport: an httpx transport (tests).
    """

    def __init__(self, base_url: str, *, timeout: float = 10.0, token: str | None = None,
                 transport: httpx.BaseTransport | None = None):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._client = httpx.Client(timeout=timeout, headers=headers, transport=transport)

    @property
    def query_url(self) -> str:
        return f"{self.base_url}/api/v1/query"

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> "Prometheus":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def query(self, promql: str, *, at: float | None = None) -> QueryResult:
        """Evaluate ``promql`` as an instant query (at UNIX time ``at``, default: the server's now).

        Raises:
            InfraError: unreachable, timeout, HTTP 5xx/422, or an undocumented answer (names the URL).
            QueryError: the server rejected the query (HTTP 400 ``bad_data``).
        """
        form = {"query": promql, "timeout": f"{self.timeout:g}s"}
        if at is not None:
            form["time"] = f"{at:.3f}"
        url = self.query_url
        try:
            r = self._client.post(url, data=form)
        except httpx.TimeoutException:
            raise InfraError(f"Prometheus at {url} did not answer within {self.timeout:g} s") from None
        except httpx.HTTPError as e:
            raise InfraError(f"Prometheus at {url} is unreachable: {type(e).__name__}: {_first_line(e)}") from None
        try:
            body = r.json()
        except ValueError:
            body = None
        if r.status_code == 400 and isinstance(body, dict) and body.get("errorType") == "bad_data":
            raise QueryError(f"Prometheus at {url} rejected query {promql!r}: {body.get('error', 'bad_data')}")
        if r.status_code != 200:
            detail = body.get("error") if isinstance(body, dict) else r.text[:200].strip()
            raise InfraError(f"Prometheus at {url} answered HTTP {r.status_code} to query {promql!r}: {detail or r.reason_phrase}")
        try:
            return parse_response(body)
        except ValueError as e:
            raise InfraError(f"Prometheus at {url} sent an answer that is not the query API's JSON: {e}") from None

    def value(self, promql: str, *, at: float | None = None) -> float | None:
        """The single number ``promql`` evaluates to, or None (no series, or NaN).

        Raises:
            InfraError, QueryError: as :meth:`query`; QueryError also for several series.
        """
        return self.query(promql, at=at).single_value(promql)

    def build_info(self) -> str:
        """The server's version from ``GET /api/v1/status/buildinfo`` (Prometheus HTTP API,
        "Build information": ``{"status": "success", "data": {"version": ...}}``). Read only.

        Raises:
            Unreachable: the connection was refused or the host name does not resolve.
            UsageError: HTTP 401/403 (the token of ``canary.analysis.token_env``).
            InfraError: a timeout, another HTTP error status or an answer that is not that JSON.
        """
        url = f"{self.base_url}/api/v1/status/buildinfo"
        try:
            r = self._client.get(url)
        except httpx.ConnectError as e:
            raise Unreachable(f"Prometheus at {url} is unreachable: {_first_line(e)}") from None
        except httpx.HTTPError as e:
            raise InfraError(f"Prometheus at {url} did not answer: {type(e).__name__}: {_first_line(e)}") from None
        if r.status_code in (401, 403):
            raise UsageError(f"Prometheus at {url} refused the credentials (HTTP {r.status_code})")
        if r.status_code != 200:
            raise InfraError(f"Prometheus at {url} answered HTTP {r.status_code}")
        try:
            version = r.json()["data"]["version"]
        except (ValueError, KeyError, TypeError):
            raise InfraError(f"Prometheus at {url} sent an answer that is not the build information JSON") from None
        return str(version)


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else "")[:200]
