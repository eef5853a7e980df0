"""The Argo Server client of :mod:`mlgate.edge.argo`: Hera's ``WorkflowsService`` with timeouts,
TLS and the bearer token; errors translated to mlgate errors; idempotent reads retried.

Credentials never appear in messages: a password in ``train.argo.server`` (or ``ui_url``) is shown
as ``user:***@``, the token is named by its source only.

Hera, requests and stamina are imported inside functions: ``mlgate --help`` must stay fast.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote, unquote, urlsplit

from mlgate.core import argo_plan
from mlgate.core.errors import InfraError, MlgateError, Unreachable, UsageError
from mlgate.core.urls import redact_url

if TYPE_CHECKING:
    from mlgate.core.config import ArgoBackend

T = TypeVar("T")

#: Seconds to wait for a TCP connection / for an answer from the Argo Server.
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 30.0
#: Attempts for idempotent reads (GET) when the server is unreachable or answers 5xx.
READ_ATTEMPTS = 3


class ArgoAuthError(MlgateError):
    """The Argo Server refused the credentials (401) or the namespace (403): exit 2.

    Retrying does not help; the token (``train.argo.token_env``/``token_file``) or the service
    account's RBAC must change.
    """

    exit_code = 2


# --------------------------------------------------------------------------- plumbing


def ui_base(settings: ArgoBackend) -> str:
    return _hide_password(settings, redact_url(settings.ui_url or settings.server)).rstrip("/")


def _hide_password(settings: ArgoBackend, text: str) -> str:
    """``text`` with the server URL's password (as written and percent-decoded) replaced by ``***``."""
    try:
        password = urlsplit(settings.server).password
    except ValueError:  # a malformed URL: mlgate.core.urls.redact_url still covers the usual form
        password = None
    for secret in sorted({password or "", unquote(password or "")}, key=len, reverse=True):
        if len(secret) >= 3:
            text = text.replace(secret, "***")
    return text


def shown_server(settings: ArgoBackend) -> str:
    """The server URL as shown in messages: its password is replaced by ``***``."""
    return _hide_password(settings, redact_url(settings.server))


def scrub(settings: ArgoBackend, text: str) -> str:
    """``text`` (e.g. an exception message) without credentials of any URL in it."""
    return _hide_password(settings, redact_url(text))


def path_segment(value: str) -> str:
    """One URL path segment, percent-encoded (names are validated first; this is a second guard)."""
    return quote(value, safe="")


def check_settings(settings: ArgoBackend) -> None:
    """Refuse a malformed server URL or namespace before any request (UsageError, exit 2)."""
    argo_plan.check_server_url(settings.server)
    argo_plan.check_namespace(settings.namespace)


def workflow_url(settings: ArgoBackend, name: str) -> str:
    """Argo UI link of workflow ``name`` in the configured namespace."""
    return argo_plan.workflow_url(ui_base(settings), settings.namespace, name)


def resolve_token(settings: ArgoBackend, environ: Mapping[str, str] | None = None) -> tuple[str | None, str]:
    """The bearer token and a description of its source (for messages; never the token).

    Order: the environment variable ``settings.token_env`` when set and non-empty, else the file
    ``settings.token_file`` (``~`` expanded, relative to the working directory, whitespace
    stripped). ``(None, "no token ...")`` when neither gives one: the request goes without
    ``Authorization`` (an Argo Server in ``--auth-mode=server`` accepts that).

    Raises:
        UsageError: ``token_file`` is set but cannot be read, or is empty.
    """
    env = os.environ if environ is None else environ
    if settings.token_env and env.get(settings.token_env, "").strip():
        return env[settings.token_env].strip(), f"the token from ${settings.token_env}"
    if settings.token_file:
        path = Path(settings.token_file).expanduser()
        try:
            token = path.read_text(encoding="utf-8").strip()
        except OSError as e:
            raise UsageError(
                f"cannot read the Argo token file {str(path)!r} (train.argo.token_file): {e.strerror}"
            ) from None
        if not token:
            raise UsageError(f"the Argo token file {str(path)!r} (train.argo.token_file) is empty")
        return token, f"the token from {str(path)!r}"
    where = f"${settings.token_env} is not set" if settings.token_env else "train.argo.token_env is empty"
    return None, f"no token was sent ({where} and train.argo.token_file is not set)"


@contextmanager
def _service(settings: ArgoBackend) -> Iterator[Any]:
    """Hera ``WorkflowsService`` with timeouts, TLS verification and the bearer token."""
    import requests
    from hera.workflows.service import WorkflowsService

    class _TimeoutSession(requests.Session):
        def request(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
            kwargs.setdefault("timeout", (CONNECT_TIMEOUT, READ_TIMEOUT))
            return super().request(*args, **kwargs)

    check_settings(settings)
    token, _ = resolve_token(settings)
    session = _TimeoutSession()  # honours HTTPS_PROXY and REQUESTS_CA_BUNDLE, as users expect
    service = WorkflowsService(
        host=settings.server.rstrip("/") + "/",
        verify_ssl=settings.verify_tls,
        token=token,
        namespace=path_segment(settings.namespace),
        session=session,
    )
    try:
        yield service
    finally:
        service.close()


def server_message(exc: Exception) -> str:
    text = str(exc)
    marker = "with message: `"
    if marker in text:
        text = text.split(marker, 1)[1].rstrip("`")
    text = " ".join(text.split())
    return text[:300]


class _Transient(Exception):
    """Internal: a failure worth retrying for an idempotent read."""

    def __init__(self, error: InfraError):
        super().__init__(str(error))
        self.error = error


def _translate(settings: ArgoBackend, exc: Exception, action: str) -> MlgateError:
    """Map a requests/Hera/pydantic exception to an mlgate error naming server and namespace."""
    import requests
    from hera import exceptions as hx

    server, ns = shown_server(settings), settings.namespace
    detail = scrub(settings, server_message(exc))
    if isinstance(exc, requests.exceptions.SSLError):
        return InfraError(
            f"TLS error talking to Argo Server {server} ({action}): the certificate was not accepted; "
            "fix the certificate, or set train.argo.verify_tls: false for a test server"
        )
    if isinstance(exc, (requests.exceptions.ConnectionError, requests.exceptions.Timeout)):
        timed_out = isinstance(exc, requests.exceptions.Timeout)
        kind = "timed out" if timed_out else "connection failed"
        # refused or unresolved is Unreachable (a wrong address: mlgate doctor's ✗); a timeout proves less
        return (InfraError if timed_out else Unreachable)(
            f"cannot reach Argo Server {server} ({action}, namespace {ns!r}): {kind}")
    if isinstance(exc, hx.Unauthorized):
        _, source = resolve_token(settings)
        return ArgoAuthError(
            f"Argo Server {server} refused the credentials for namespace {ns!r} (401 Unauthorized) "
            f"while trying to {action}: {source}; set a valid service-account token in "
            f"${settings.token_env or 'ARGO_TOKEN'} or train.argo.token_file"
        )
    if isinstance(exc, hx.Forbidden):
        return ArgoAuthError(
            f"Argo Server {server}: the token may not {action} in namespace {ns!r} (403 Forbidden); "
            "grant the service account access to workflows and workflowtemplates there, or fix train.argo.namespace"
        )
    if isinstance(exc, hx.BadRequest):
        return UsageError(f"Argo Server {server} refused to {action} in namespace {ns!r}: {detail}")
    if isinstance(exc, hx.NotFound):
        return UsageError(
            f"Argo Server {server}: not found while trying to {action} in namespace {ns!r}: {detail}"
        )
    if isinstance(exc, hx.HeraException):
        return InfraError(f"Argo Server {server} failed to {action} (namespace {ns!r}): {detail}")
    return InfraError(
        f"unexpected answer from Argo Server {server} while trying to {action}: {type(exc).__name__}: {detail}"
    )


def call(settings: ArgoBackend, action: str, fn: Callable[[Any], T], *, idempotent: bool = False) -> T:
    """Run ``fn(service)``; translate errors; retry idempotent reads on connection errors/5xx."""
    from hera import exceptions as hx

    check_settings(settings)  # a malformed URL or namespace is a config error, never retried

    def once() -> T:
        try:
            with _service(settings) as svc, warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                return fn(svc)
        except MlgateError:
            raise
        except (hx.AlreadyExists, hx.NotFound):
            raise
        except Exception as e:  # noqa: BLE001 - every other failure is translated below
            err = _translate(settings, e, action)
            if idempotent and isinstance(err, InfraError) and not str(err).startswith("TLS"):
                raise _Transient(err) from None
            raise err from None

    if not idempotent:
        return once()
    import stamina

    try:
        for attempt in stamina.retry_context(
            on=_Transient, attempts=READ_ATTEMPTS, wait_initial=0.2, wait_max=2.0, wait_jitter=0.1
        ):
            with attempt:
                return once()
    except _Transient as t:
        raise t.error from None
    raise AssertionError("unreachable")  # pragma: no cover


def dump(model: Any) -> dict[str, Any]:
    """A Hera/pydantic model → plain JSON dict (camelCase keys, as on the wire)."""
    return model.model_dump(by_alias=True, exclude_none=True, mode="json")
