"""Argo Workflows edge adapter: submit a WorkflowTemplate run for a commit, follow it, stop it.

Talks to the Argo Server REST API (``api/openapi-spec/swagger.json`` of argoproj/argo-workflows)
through Hera's ``WorkflowsService`` (Argo's client-libraries page recommends Hera over the
deprecated generated SDK); the submitted Workflow is built with ``hera.workflows.Workflow`` and
only references the WorkflowTemplate (``spec.workflowTemplateRef``). Decisions (parameters, names,
labels, status) are the pure functions of :mod:`mlgate.core.argo_plan`.

Idempotency: a submission for (WorkflowTemplate, model, commit) first lists workflows by the
labels ``mlgate.dev/model``, ``mlgate.dev/commit``, ``mlgate.dev/template``; if none exists it
creates one with a deterministic name, and a ``409 AlreadyExists`` (a concurrent submission) is
read back as "already submitted". Either way a second submission never starts a second run.

Errors (exit codes of :mod:`mlgate.core.errors`):

- :class:`ArgoAuthError` (exit 2): the server answered 401 or 403; the message names the server
  and namespace and where the token came from, never the token.
- :class:`~mlgate.core.errors.UsageError` (exit 2): a parameter, commit or name problem, a missing
  WorkflowTemplate or workflow, a workflow the server refused (400); a workflow or
  WorkflowTemplate name that is not a DNS-1123 subdomain, a namespace that is not a DNS-1123
  label, or a malformed server URL (checked before any request, never retried).
- :class:`~mlgate.core.errors.InfraError` (exit 3): server unreachable, TLS failure, 5xx, an
  unexpected answer, or :func:`wait` timing out.
- :class:`WorkflowFailed` (exit 1): raised by callers (the CLI) for a Failed/Error workflow.

Names and the namespace go into API paths (``/api/v1/workflows/{namespace}/{name}``): they are
validated first and percent-encoded as a second guard. A password in ``train.argo.server`` (or
``ui_url``) is shown as ``user:***@`` in every message, retry warning and link.

Hera, requests and stamina are imported inside functions: ``mlgate --help`` must stay fast.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from mlgate.core import argo_plan
from mlgate.core.argo_plan import NodeInfo, SubmitPlan, WorkflowStatus
from mlgate.core.errors import InfraError, MlgateError, UsageError
from mlgate.core.urls import redact_url

if TYPE_CHECKING:
    from mlgate.core.config import ArgoBackend

__all__ = [
    "ArgoAuthError",
    "NodeInfo",
    "Submission",
    "WorkflowFailed",
    "WorkflowStatus",
    "get_status",
    "resolve_token",
    "stop",
    "submit_for_commit",
    "terminate",
    "template_parameters",
    "wait",
    "workflow_url",
]

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


class WorkflowFailed(MlgateError):
    """A followed workflow ended Failed or Error (exit 1); the message names the failed step."""

    exit_code = 1


@dataclass(frozen=True)
class Submission:
    """The result of :func:`submit_for_commit`.

    Attributes:
        name: the workflow's name (deterministic per WorkflowTemplate, model and commit).
        namespace: its Kubernetes namespace.
        ui_url: Argo UI link ``{ui_url}/workflows/{namespace}/{name}``.
        created: True when this call created it; False when a workflow for the same
            (WorkflowTemplate, model, commit) already existed and was returned instead.
        template: the WorkflowTemplate it references.
        commit: the full commit SHA.
        parameters: (name, value) pairs sent (for an existing workflow: what it was sent with).
        phase: the workflow's phase when this call returned (Pending for a new one).
    """

    name: str
    namespace: str
    ui_url: str
    created: bool
    template: str
    commit: str
    parameters: tuple[tuple[str, str], ...] = ()
    phase: str = "Pending"

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (``--output json``)."""
        return {
            "name": self.name,
            "namespace": self.namespace,
            "url": self.ui_url,
            "created": self.created,
            "template": self.template,
            "commit": self.commit,
            "phase": self.phase,
            "parameters": dict(self.parameters),
        }


# --------------------------------------------------------------------------- plumbing


def _ui_base(settings: ArgoBackend) -> str:
    return _hide_password(settings, redact_url(settings.ui_url or settings.server)).rstrip("/")


def _hide_password(settings: ArgoBackend, text: str) -> str:
    """``text`` with the server URL's password (as written and percent-decoded) replaced by ``***``."""
    from urllib.parse import unquote, urlsplit

    try:
        password = urlsplit(settings.server).password
    except ValueError:  # a malformed URL: mlgate.core.urls.redact_url still covers the usual form
        password = None
    for secret in sorted({password or "", unquote(password or "")}, key=len, reverse=True):
        if len(secret) >= 3:
            text = text.replace(secret, "***")
    return text


def _server(settings: ArgoBackend) -> str:
    """The server URL as shown in messages: its password is replaced by ``***``."""
    return _hide_password(settings, redact_url(settings.server))


def _scrub(settings: ArgoBackend, text: str) -> str:
    """``text`` (e.g. an exception message) without credentials of any URL in it."""
    return _hide_password(settings, redact_url(text))


def _seg(value: str) -> str:
    """One URL path segment, percent-encoded (names are validated first; this is a second guard)."""
    from urllib.parse import quote

    return quote(value, safe="")


def _check_settings(settings: ArgoBackend) -> None:
    """Refuse a malformed server URL or namespace before any request (UsageError, exit 2)."""
    argo_plan.check_server_url(settings.server)
    argo_plan.check_namespace(settings.namespace)


def workflow_url(settings: ArgoBackend, name: str) -> str:
    """Argo UI link of workflow ``name`` in the configured namespace."""
    return argo_plan.workflow_url(_ui_base(settings), settings.namespace, name)


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

    _check_settings(settings)
    token, _ = resolve_token(settings)
    session = _TimeoutSession()  # honours HTTPS_PROXY and REQUESTS_CA_BUNDLE, as users expect
    service = WorkflowsService(
        host=settings.server.rstrip("/") + "/",
        verify_ssl=settings.verify_tls,
        token=token,
        namespace=_seg(settings.namespace),
        session=session,
    )
    try:
        yield service
    finally:
        service.close()


def _server_message(exc: Exception) -> str:
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

    server, ns = _server(settings), settings.namespace
    detail = _scrub(settings, _server_message(exc))
    if isinstance(exc, requests.exceptions.SSLError):
        return InfraError(
            f"TLS error talking to Argo Server {server} ({action}): the certificate was not accepted; "
            "fix the certificate, or set train.argo.verify_tls: false for a test server"
        )
    if isinstance(exc, (requests.exceptions.ConnectionError, requests.exceptions.Timeout)):
        kind = "timed out" if isinstance(exc, requests.exceptions.Timeout) else "connection failed"
        return InfraError(f"cannot reach Argo Server {server} ({action}, namespace {ns!r}): {kind}")
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


def _call(settings: ArgoBackend, action: str, fn: Callable[[Any], T], *, idempotent: bool = False) -> T:
    """Run ``fn(service)``; translate errors; retry idempotent reads on connection errors/5xx."""
    from hera import exceptions as hx

    _check_settings(settings)  # a malformed URL or namespace is a config error, never retried

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


def _dump(model: Any) -> dict[str, Any]:
    """A Hera/pydantic model → plain JSON dict (camelCase keys, as on the wire)."""
    return model.model_dump(by_alias=True, exclude_none=True, mode="json")


# --------------------------------------------------------------------------- reads


def fetch_template(settings: ArgoBackend, template: str | None = None) -> dict[str, Any]:
    """The WorkflowTemplate object (``GET /api/v1/workflow-templates/{namespace}/{name}``).

    Raises:
        UsageError: it does not exist in the namespace (with the command that installs it).
        ArgoAuthError, InfraError: see the module docstring.
    """
    from hera import exceptions as hx

    name = argo_plan.check_object_name("WorkflowTemplate name", template or settings.template)
    try:
        wt = _call(
            settings,
            f"read WorkflowTemplate {name!r}",
            lambda s: s.get_workflow_template(_seg(name), namespace=_seg(settings.namespace)),
            idempotent=True,
        )
    except hx.NotFound:
        raise UsageError(
            f"WorkflowTemplate {name!r} not found in namespace {settings.namespace!r} on {_server(settings)}; "
            f"install it: kubectl -n {settings.namespace} apply -f workflows/{name}.yaml"
        ) from None
    return _dump(wt)


def template_parameters(settings: ArgoBackend, template: str | None = None) -> list[argo_plan.DeclaredParameter]:
    """The parameters a WorkflowTemplate declares on the server (see :func:`fetch_template`)."""
    return argo_plan.declared_parameters(fetch_template(settings, template))


def _get_workflow(settings: ArgoBackend, name: str) -> dict[str, Any]:
    from hera import exceptions as hx

    argo_plan.check_object_name("workflow name", name)
    try:
        wf = _call(
            settings,
            f"read workflow {name!r}",
            lambda s: s.get_workflow(_seg(name), namespace=_seg(settings.namespace)),
            idempotent=True,
        )
    except hx.NotFound:
        raise UsageError(
            f"workflow {name!r} not found in namespace {settings.namespace!r} on {_server(settings)}"
        ) from None
    return _dump(wf)


def get_status(settings: ArgoBackend, name: str) -> WorkflowStatus:
    """Phase, per-node phases, message and UI link of workflow ``name``.

    Args:
        settings: ``train.argo`` of ``.mlgate.yml``.
        name: the workflow's name (``Submission.name``).

    Returns:
        :class:`~mlgate.core.argo_plan.WorkflowStatus` (``GET /api/v1/workflows/{namespace}/{name}``).

    Raises:
        UsageError: no such workflow. ArgoAuthError, InfraError: see the module docstring.
    """
    return argo_plan.parse_status(_get_workflow(settings, name), _ui_base(settings))


def find_existing(settings: ArgoBackend, selector: str) -> list[dict[str, Any]]:
    """Workflows matching a label selector, newest first (``listOptions.labelSelector``)."""
    wl = _call(
        settings,
        "list workflows",
        lambda s: s.list_workflows(namespace=_seg(settings.namespace), label_selector=selector),
        idempotent=True,
    )
    items = [_dump(w) for w in (wl.items or [])]
    items.sort(key=lambda w: (w.get("metadata") or {}).get("creationTimestamp") or "", reverse=True)
    return items


# --------------------------------------------------------------------------- submit


def _existing_submission(settings: ArgoBackend, plan: SubmitPlan, wf: Mapping[str, Any]) -> Submission:
    st = argo_plan.parse_status(wf, _ui_base(settings))
    sent = ((wf.get("spec") or {}).get("arguments") or {}).get("parameters") or []
    return Submission(
        name=st.name,
        namespace=st.namespace or settings.namespace,
        ui_url=st.url,
        created=False,
        template=plan.template,
        commit=plan.labels[argo_plan.LABEL_COMMIT],
        parameters=tuple((str(p["name"]), str(p.get("value", ""))) for p in sent),
        phase=st.phase,
    )


def build_workflow(plan: SubmitPlan) -> Any:
    """The Workflow for a plan, built with Hera (``workflowTemplateRef`` + arguments).

    Returns:
        Hera's ``Workflow`` model (``hera.workflows.models``), ready for a WorkflowCreateRequest.

    Raises:
        UsageError: a ``{{`` survived somewhere in the object (never sent).
    """
    from hera.workflows import Parameter, Workflow
    from hera.workflows.models import WorkflowTemplateRef

    model = Workflow(
        name=plan.name,
        namespace=plan.namespace,
        labels=dict(plan.labels),
        annotations=dict(plan.annotations),
        workflow_template_ref=WorkflowTemplateRef(name=plan.template),
        arguments=[Parameter(name=n, value=v) for n, v in plan.parameters.values],
    ).build()
    left = argo_plan.find_placeholders(_dump(model))
    if left:
        raise UsageError(f"refusing to submit: unresolved '{{{{' in {', '.join(left)}")
    return model


def submit_for_commit(
    settings: ArgoBackend,
    *,
    model: str,
    repo_url: str,
    commit: str,
    command: Sequence[str] | str | None,
    tracking_uri: str,
    parameters: Mapping[str, str] | None = None,
    gpus: int | None = None,
    config_path: str | None = None,
) -> Submission:
    """Submit the WorkflowTemplate ``settings.template`` for a commit, once per (template, model, commit).

    Steps: read the WorkflowTemplate's declared parameters from the server; resolve every
    parameter (:func:`mlgate.core.argo_plan.plan_submission`: unknown or missing parameters fail here,
    before anything is sent); look for a workflow with the same labels; if none, create
    ``POST /api/v1/workflows/{namespace}`` with a Workflow that references the template.

    Args:
        settings: ``train.argo`` of ``.mlgate.yml`` (server, namespace, template, token source,
            gpus, image, parameters, ui_url, verify_tls).
        model: registered model name (``model:`` of ``.mlgate.yml``).
        repo_url: git URL of the repository; SSH forms become HTTPS, credentials are removed.
        commit: full 40-hex commit SHA to train.
        command: training command (argv list or a shell string), or None to use the one in
            the repository's ``.mlgate.yml``.
        tracking_uri: MLflow tracking URI the pod uses; must be reachable from the cluster.
        parameters: extra WorkflowTemplate parameters; override ``settings.parameters``.
        gpus: number of ``nvidia.com/gpu``; default ``settings.gpus``.
        config_path: ``.mlgate.yml`` relative to the repository root (for a config that is not
            at the root); None leaves the template's default (``.mlgate.yml``).

    Returns:
        :class:`Submission` (``created`` False when it already existed).

    Raises:
        UsageError: parameter, commit, URL or template problems; the server refused the body.
        ArgoAuthError: 401/403. InfraError: server unreachable or failing.
    """
    from hera import exceptions as hx

    template_object = fetch_template(settings)
    user = {**settings.parameters, **dict(parameters or {})}
    plan = argo_plan.plan_submission(
        template_object,
        template=settings.template,
        namespace=settings.namespace,
        model=model,
        repo_url=repo_url,
        commit=commit,
        command=command,
        tracking_uri=tracking_uri,
        gpus=settings.gpus if gpus is None else gpus,
        image=settings.image,
        user_parameters=user,
        config_path=config_path,
    )
    existing = find_existing(settings, plan.selector)
    if existing:
        return _existing_submission(settings, plan, existing[0])

    workflow = build_workflow(plan)

    def create(s: Any) -> Any:
        from hera.workflows.models import WorkflowCreateRequest

        return s.create_workflow(WorkflowCreateRequest(workflow=workflow), namespace=_seg(settings.namespace))

    try:
        _call(settings, f"create a workflow from WorkflowTemplate {settings.template!r}", create)
    except hx.AlreadyExists:
        # submitted concurrently (or labels were edited): the deterministic name holds it
        return _existing_submission(settings, plan, _get_workflow(settings, plan.name))
    except hx.NotFound as e:
        raise UsageError(
            f"Argo Server {_server(settings)} answered not found on create: {_scrub(settings, _server_message(e))}"
        ) from None
    return Submission(
        name=plan.name,
        namespace=settings.namespace,
        ui_url=workflow_url(settings, plan.name),
        created=True,
        template=plan.template,
        commit=plan.labels[argo_plan.LABEL_COMMIT],
        parameters=plan.parameters.values,
        phase="Pending",
    )


# --------------------------------------------------------------------------- follow, stop


def _signature(st: WorkflowStatus) -> tuple[Any, ...]:
    return (st.phase, st.message, tuple((n.id, n.phase, n.message) for n in st.steps()))


def wait(
    settings: ArgoBackend,
    name: str,
    *,
    poll_seconds: float = 5,
    timeout_seconds: float | None = None,
    on_progress: Callable[[WorkflowStatus], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> WorkflowStatus:
    """Poll a workflow until it is Succeeded, Failed or Error.

    Args:
        settings: ``train.argo``.
        name: the workflow.
        poll_seconds: seconds between polls.
        timeout_seconds: give up after this many seconds (None: never).
        on_progress: called with the status at the first poll and whenever the phase, the
            message or any step's phase/message changed (see
            :func:`mlgate.core.argo_plan.progress_lines`).
        sleep, clock: injectable for tests (seconds; monotonic clock).

    Returns:
        The final :class:`WorkflowStatus` (the caller decides what Failed means).

    Raises:
        InfraError: the timeout passed (the workflow keeps running; the message has its link),
            or the server became unreachable. UsageError: no such workflow. ArgoAuthError.
    """
    deadline = None if timeout_seconds is None else clock() + timeout_seconds
    last: tuple[Any, ...] | None = None
    while True:
        st = get_status(settings, name)
        sig = _signature(st)
        if sig != last and on_progress is not None:
            on_progress(st)
        last = sig
        if st.finished:
            return st
        if deadline is not None and clock() >= deadline:
            raise InfraError(
                f"workflow {name} is still {st.phase} after {timeout_seconds:g} s; it keeps running: {st.url}"
            )
        sleep(poll_seconds)


def _shutdown(settings: ArgoBackend, name: str, message: str | None, terminate: bool) -> WorkflowStatus:
    from hera import exceptions as hx

    argo_plan.check_object_name("workflow name", name)
    current = get_status(settings, name)
    if current.finished:
        return current

    def call(s: Any) -> Any:
        from hera.workflows.models import WorkflowStopRequest, WorkflowTerminateRequest

        if terminate:
            return s.terminate_workflow(
                _seg(name),
                WorkflowTerminateRequest(name=name, namespace=settings.namespace),
                namespace=_seg(settings.namespace),
            )
        req = WorkflowStopRequest(name=name, namespace=settings.namespace, message=message)
        return s.stop_workflow(_seg(name), req, namespace=_seg(settings.namespace))

    verb = "terminate" if terminate else "stop"
    try:
        wf = _call(settings, f"{verb} workflow {name!r}", call)
    except hx.NotFound:
        raise UsageError(
            f"workflow {name!r} not found in namespace {settings.namespace!r} on {_server(settings)}"
        ) from None
    except (UsageError, InfraError):
        # e.g. it completed between our read and the stop ("cannot shutdown a completed
        # workflow"): report what it is now
        after = get_status(settings, name)
        if after.finished:
            return after
        raise
    return argo_plan.parse_status(_dump(wf), _ui_base(settings))


def stop(settings: ArgoBackend, name: str, *, message: str | None = None) -> WorkflowStatus:
    """Stop a workflow (``PUT /api/v1/workflows/{namespace}/{name}/stop``): running steps end,
    exit handlers still run. A workflow that already finished is returned as it is.

    Argo only sets ``spec.shutdown: Stop``; the controller then fails the running steps and the
    workflow ends Failed ("Stopped with strategy 'Stop'") shortly after. Follow it with
    :func:`wait` when the final state matters.

    Args:
        message: sent in the request; Argo records it only on nodes picked by a node field
            selector (Argo's util.StopWorkflow), which mlgate does not use, so say who stopped
            it where people read it (the bot's comment).

    Returns:
        The workflow's status as the server answered (``shutdown == "Stop"``; the phase may
        still be Running), or the final status when it had already finished.

    Raises:
        UsageError: no such workflow. ArgoAuthError, InfraError.
    """
    return _shutdown(settings, name, message, terminate=False)


def terminate(settings: ArgoBackend, name: str) -> WorkflowStatus:
    """Terminate a workflow (``PUT .../terminate``): like :func:`stop` without exit handlers."""
    return _shutdown(settings, name, None, terminate=True)
