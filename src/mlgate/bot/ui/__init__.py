"""The promotion dashboard: a read-only web page per registered model, served on its own
listener (``mlgate bot serve --ui-port``), never on the public webhook port.

Routes (all ``GET``):

- ``/ui``                       every model the bot has acted on, promotions in flight, active
                                canaries, failed deliveries (with the command that retries them)
- ``/ui/models/{model}``        the environments left to right in ``requires`` order, what is in
                                flight, the canaries with their charts, recent audit records
- ``/ui/canaries/{id}``         one canary: a chart per check, each measurement's decision
- ``/ui/audit``                 the audit trail, ``?model=&environment=&limit=`` filters
- ``/ui/audit.json``, ``/ui/audit.csv``  the same records as ``mlgate audit`` exports them

Authentication: with ``MLGATE_UI_TOKEN`` set, every request needs ``Authorization: Bearer
TOKEN`` or HTTP Basic (RFC 7617) with TOKEN as the password (any user name), compared in
constant time; otherwise 401 with ``WWW-Authenticate``. Without a token the listener must be
bound to a loopback address (``mlgate bot serve`` refuses otherwise) and only answers ``Host``
names of loopback (:func:`loopback_hosts`: no DNS rebinding); put oauth2-proxy in front
for single sign-on (README). Pages are rendered server-side with Jinja2 (autoescaped).
"""

from __future__ import annotations

import base64
import hmac
import json
import re
import time
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from mlgate.flows.dashboard import Dashboard, Sources
from mlgate.core.dashboard import audit_csv

_REALM = 'Basic realm="mlgate", charset="UTF-8", Bearer realm="mlgate"'


def _templates():  # type: ignore[no-untyped-def]
    from jinja2 import Environment, PackageLoader, select_autoescape

    env = Environment(loader=PackageLoader("mlgate.bot.ui", "templates"), autoescape=select_autoescape(["html"]),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["short"] = lambda s: (s or "")[:7]
    env.filters["href"] = safe_href
    # ISO 8601 to the second, UTC kept visible: 2026-12-03T12:32:39.19+00:00 -> 2026-12-03 12:32:39Z
    env.filters["when"] = lambda s: (str(s or "")[:19].replace("T", " ") + ("Z" if str(s or "").endswith(("+00:00", "Z")) else ""))
    return env


_HTTP_URL = re.compile(r"https?://[^\x00-\x20\x7f]+", re.I)
#: Sent with every dashboard answer: no script may run (the pages have none; a link or value that got
#: past the escaping still cannot), no framing (clickjacking), no MIME sniffing, no caching of pages
#: that needed a token, and no page address in the Referer of a link to a forge.
SECURITY_HEADERS = (
    (b"content-security-policy", b"default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
                                 b"frame-ancestors 'none'; base-uri 'none'; form-action 'self'"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
)


def safe_href(url: object) -> str:
    """``url`` when it is an absolute ``http(s)`` address without spaces or control characters, else "".

    Links on the pages come from MLflow tags (``mlgate.promoted.<env>.url``) and audit records,
    which people other than the bot can write: a ``javascript:`` or ``data:`` address must never
    become a link (autoescaping keeps it inside the attribute, it does not make it harmless).
    """
    return url if isinstance(url, str) and _HTTP_URL.fullmatch(url) else ""


def authorized(header: str | None, token: str | None) -> bool:
    """Whether an ``Authorization`` header carries ``token`` (Bearer, or Basic with it as the
    password); always True when no token is configured."""
    if not token:
        return True
    if not header:
        return False
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer":
        given = value.strip()
    elif scheme.lower() == "basic":
        try:
            given = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")[2]
        except (ValueError, UnicodeDecodeError):
            return False
    else:
        return False
    return hmac.compare_digest(given.encode(), token.encode())


class _Guard:
    """ASGI wrapper: 401 unless :func:`authorized`."""

    def __init__(self, app: Any, token: str | None):
        self.app, self.token = app, token

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def secured(message: dict) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *SECURITY_HEADERS]}
            await send(message)

        headers = dict(scope.get("headers") or [])
        header = headers.get(b"authorization")
        # UTF-8, as the realm announces: a Bearer token with "ä" arrives as its UTF-8 bytes
        if not authorized(header.decode("utf-8", "replace") if header else None, self.token):
            await Response("authentication required\n", 401, {"WWW-Authenticate": _REALM},
                           media_type="text/plain")(scope, receive, secured)
            return
        await self.app(scope, receive, secured)


def loopback_hosts(bound: str) -> list[str]:
    """The ``Host`` header names a token-less dashboard on loopback answers to: ``localhost``,
    ``127.0.0.1``, ``[::1]`` and the address it is bound to (IPv6 in brackets, RFC 3986 3.2.2).

    Anything else is a page that made a browser resolve its own name to 127.0.0.1 (DNS rebinding)
    to read the dashboard as a same-origin page: such a request gets 400 (Starlette's
    ``TrustedHostMiddleware``)."""
    hosts = ["localhost", "127.0.0.1", "[::1]"]
    name = f"[{bound}]" if ":" in bound else bound
    return hosts if name.lower() in hosts else [*hosts, name.lower()]


def create_ui_app(sources: Sources, *, token: str | None = None, cache_seconds: float = 10.0,
                  clock: Callable[[], float] = time.time, allowed_hosts: list[str] | None = None) -> Any:
    """The dashboard's ASGI app.

    Args:
        sources: the read ports (:class:`mlgate.bot.ui.sources.StoreSources` in the bot).
        token: ``MLGATE_UI_TOKEN`` (None: no authentication; bind to loopback only).
        cache_seconds: how long registry and ``.mlgate.yml`` reads are reused.
        clock: UNIX seconds (the cache's).
        allowed_hosts: the only ``Host`` names answered (:func:`loopback_hosts` for a token-less
            dashboard); others get 400. None: any.
    """
    board = Dashboard(sources, clock, cache_seconds)
    env = _templates()

    def page(name: str, status: int = 200, **data: Any) -> HTMLResponse:
        return HTMLResponse(env.get_template(name).render(**data), status)

    def index(request: Request) -> Response:
        return page("index.html", overview=board.overview(), charts=_charts)

    def model(request: Request) -> Response:
        name = request.path_params["model"]
        data = board.model_page(name)
        if data is None:
            return page("missing.html", 404, what=f"registered model {name!r}")
        return page("model.html", p=data, charts=_charts)

    def canary(request: Request) -> Response:
        data = board.canary(request.path_params["id"])
        if data is None:
            return page("missing.html", 404, what=f"canary {request.path_params['id']}")
        return page("canary.html", c=data, charts=_charts)

    def _filters(request: Request) -> tuple[str | None, str | None, int]:
        q = request.query_params
        try:
            limit = max(1, min(int(q.get("limit", "200")), 100000))
        except ValueError:
            limit = 200
        return q.get("model") or None, q.get("environment") or None, limit

    def audit(request: Request) -> Response:
        m, e, limit = _filters(request)
        return page("audit.html", records=board.audit(m, e, limit), model=m, environment=e, limit=limit)

    def audit_json(request: Request) -> Response:
        m, e, limit = _filters(request)
        return Response(json.dumps(board.audit(m, e, limit), indent=2, default=str) + "\n", media_type="application/json")

    def audit_csv_route(request: Request) -> Response:
        m, e, limit = _filters(request)
        return Response(audit_csv(board.audit(m, e, limit)), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": 'attachment; filename="mlgate-audit.csv"'})

    def root(request: Request) -> Response:
        return RedirectResponse("/ui", 307)

    app = Starlette(routes=[
        Route("/", root), Route("/ui", index), Route("/ui/", index),
        Route("/ui/models/{model}", model), Route("/ui/canaries/{id:int}", canary),
        Route("/ui/audit", audit), Route("/ui/audit.json", audit_json), Route("/ui/audit.csv", audit_csv_route),
        Route("/ui/healthz", lambda r: JSONResponse({"ok": True})),
    ])
    app.state.dashboard = board
    if allowed_hosts:
        return _Guard(TrustedHostMiddleware(app, allowed_hosts=allowed_hosts, www_redirect=False), token)
    return _Guard(app, token)


def _charts(canary: Any) -> list[tuple[str, str]]:
    from mlgate.bot.ui.charts import canary_charts

    return canary_charts(canary)
