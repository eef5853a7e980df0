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

The Argo Server client (timeouts, TLS, token, error translation, retries) is
:mod:`mlgate.edge.argo_client`. Hera is imported inside functions: ``mlgate --help`` must stay fast.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlgate.core import argo_plan
from mlgate.core.argo_plan import NodeInfo, SubmitPlan, WorkflowStatus
from mlgate.core.errors import InfraError, MlgateError, UsageError
from mlgate.edge.argo_client import (
    ArgoAuthError,
    call,
    dump,
    path_segment,
    resolve_token,
    scrub,
    server_message,
    shown_server,
    ui_base,
    workflow_url,
)

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
        wt = call(
            settings,
            f"read WorkflowTemplate {name!r}",
            lambda s: s.get_workflow_template(path_segment(name), namespace=path_segment(settings.namespace)),
            idempotent=True,
        )
    except hx.NotFound:
        raise UsageError(
            f"WorkflowTemplate {name!r} not found in namespace {settings.namespace!r} on {shown_server(settings)}; "
            f"install it: kubectl -n {settings.namespace} apply -f workflows/{name}.yaml"
        ) from None
    return dump(wt)


def template_parameters(settings: ArgoBackend, template: str | None = None) -> list[argo_plan.DeclaredParameter]:
    """The parameters a WorkflowTemplate declares on the server (see :func:`fetch_template`)."""
    return argo_plan.declared_parameters(fetch_template(settings, template))


def _get_workflow(settings: ArgoBackend, name: str) -> dict[str, Any]:
    from hera import exceptions as hx

    argo_plan.check_object_name("workflow name", name)
    try:
        wf = call(
            settings,
            f"read workflow {name!r}",
            lambda s: s.get_workflow(path_segment(name), namespace=path_segment(settings.namespace)),
            idempotent=True,
        )
    except hx.NotFound:
        raise UsageError(
            f"workflow {name!r} not found in namespace {settings.namespace!r} on {shown_server(settings)}"
        ) from None
    return dump(wf)


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
    return argo_plan.parse_status(_get_workflow(settings, name), ui_base(settings))


def find_existing(settings: ArgoBackend, selector: str) -> list[dict[str, Any]]:
    """Workflows matching a label selector, newest first (``listOptions.labelSelector``)."""
    wl = call(
        settings,
        "list workflows",
        lambda s: s.list_workflows(namespace=path_segment(settings.namespace), label_selector=selector),
        idempotent=True,
    )
    items = [dump(w) for w in (wl.items or [])]
    items.sort(key=lambda w: (w.get("metadata") or {}).get("creationTimestamp") or "", reverse=True)
    return items


# --------------------------------------------------------------------------- submit


def _existing_submission(settings: ArgoBackend, plan: SubmitPlan, wf: Mapping[str, Any]) -> Submission:
    st = argo_plan.parse_status(wf, ui_base(settings))
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
    left = argo_plan.find_placeholders(dump(model))
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
    retrain: str | None = None,
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
        retrain: the retrain record's id for a retrain an alert started: its own workflow
            (labelled ``mlgate.dev/retrain``), even for a commit trained before.

    Returns:
        :class:`Submission` (``created`` False when it already existed).

    Raises:
        UsageError: parameter, commit, URL or template problems; the server refused the body.
        ArgoAuthError: 401/403. InfraError: server unreachable or failing.
    """
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
        retrain=retrain,
    )
    existing = find_existing(settings, plan.selector)
    if existing:
        return _existing_submission(settings, plan, existing[0])
    return _create(settings, plan)


def _create(settings: ArgoBackend, plan: SubmitPlan) -> Submission:
    """Create the planned workflow (``POST /api/v1/workflows/{namespace}``); a concurrent
    submission (409 AlreadyExists) is read back by its deterministic name."""
    from hera import exceptions as hx

    workflow = build_workflow(plan)

    def create(s: Any) -> Any:
        from hera.workflows.models import WorkflowCreateRequest

        return s.create_workflow(WorkflowCreateRequest(workflow=workflow), namespace=path_segment(settings.namespace))

    try:
        call(settings, f"create a workflow from WorkflowTemplate {settings.template!r}", create)
    except hx.AlreadyExists:
        # submitted concurrently (or labels were edited): the deterministic name holds it
        return _existing_submission(settings, plan, _get_workflow(settings, plan.name))
    except hx.NotFound as e:
        raise UsageError(
            f"Argo Server {shown_server(settings)} answered not found on create: {scrub(settings, server_message(e))}"
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

    def send(s: Any) -> Any:
        from hera.workflows.models import WorkflowStopRequest, WorkflowTerminateRequest

        if terminate:
            return s.terminate_workflow(
                path_segment(name),
                WorkflowTerminateRequest(name=name, namespace=settings.namespace),
                namespace=path_segment(settings.namespace),
            )
        req = WorkflowStopRequest(name=name, namespace=settings.namespace, message=message)
        return s.stop_workflow(path_segment(name), req, namespace=path_segment(settings.namespace))

    verb = "terminate" if terminate else "stop"
    try:
        wf = call(settings, f"{verb} workflow {name!r}", send)
    except hx.NotFound:
        raise UsageError(
            f"workflow {name!r} not found in namespace {settings.namespace!r} on {shown_server(settings)}"
        ) from None
    except (UsageError, InfraError):
        # e.g. it completed between our read and the stop ("cannot shutdown a completed
        # workflow"): report what it is now
        after = get_status(settings, name)
        if after.finished:
            return after
        raise
    return argo_plan.parse_status(dump(wf), ui_base(settings))


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
