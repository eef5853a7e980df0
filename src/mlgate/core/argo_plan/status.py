"""A workflow's status as the Argo Server reports it, and the progress lines between two polls."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mlgate.core.argo_plan.names import workflow_url

FINISHED_PHASES = frozenset({"Succeeded", "Failed", "Error"})
FAILED_PHASES = frozenset({"Failed", "Error"})


@dataclass(frozen=True)
class NodeInfo:
    """One node of a workflow (``status.nodes[id]``).

    ``type``: Pod, Steps, StepGroup, DAG, Retry, Skipped, ...; ``phase``: Pending, Running,
    Succeeded, Skipped, Failed, Error, Omitted; ``message``: why (e.g. ``Error (exit code 1)``,
    ``Unschedulable: ...``); times are RFC 3339 strings or None.
    """

    id: str
    name: str
    display_name: str
    type: str
    phase: str
    message: str = ""
    template_name: str | None = None
    started_at: str | None = None
    finished_at: str | None = None


@dataclass(frozen=True)
class WorkflowStatus:
    """A workflow's state as the Argo Server reports it.

    ``phase``: Pending (also when the server reports none yet), Running, Succeeded, Failed or
    Error; ``message``: the workflow's message; ``nodes``: every node, ordered by start time;
    ``url``: the Argo UI link; ``labels``: the workflow's labels; ``shutdown``: ``Stop`` or
    ``Terminate`` once a stop was requested (``spec.shutdown``; the controller then fails the
    running steps), else None.
    """

    name: str
    namespace: str
    phase: str
    message: str
    nodes: tuple[NodeInfo, ...]
    url: str
    started_at: str | None = None
    finished_at: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    shutdown: str | None = None

    @property
    def finished(self) -> bool:
        """True once the phase is Succeeded, Failed or Error."""
        return self.phase in FINISHED_PHASES

    @property
    def succeeded(self) -> bool:
        return self.phase == "Succeeded"

    def steps(self) -> tuple[NodeInfo, ...]:
        """The nodes a person cares about: pods (each retry attempt) and skipped steps."""
        return tuple(n for n in self.nodes if n.type in ("Pod", "Skipped", "Suspend", "HTTP", "Plugin", "Container"))

    def failed_node(self) -> NodeInfo | None:
        """The node that failed the workflow, or None.

        The failed pod that finished last (the last retry attempt); at equal times a ``Failed``
        pod (the script exited non-zero) wins over an ``Error`` one (infrastructure). Without a
        failed pod, the last failed node of another type.
        """
        failed = [n for n in self.nodes if n.phase in FAILED_PHASES]
        pods = [n for n in failed if n.type == "Pod"]
        pick = pods or failed
        if not pick:
            return None
        return max(
            enumerate(pick),
            key=lambda item: (item[1].finished_at or item[1].started_at or "", item[1].phase == "Failed", item[0]),
        )[1]

    def failure_message(self) -> str:
        """``step: message`` of the failed node, else the workflow's message, else the phase."""
        node = self.failed_node()
        if node is not None and node.message:
            return f"{node.display_name}: {node.message}"
        return self.message or f"workflow {self.phase}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (``--output json``)."""
        return {
            "name": self.name,
            "namespace": self.namespace,
            "phase": self.phase,
            "message": self.message,
            "url": self.url,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "shutdown": self.shutdown,
            "nodes": [
                {"name": n.display_name, "type": n.type, "phase": n.phase, "message": n.message} for n in self.nodes
            ],
        }


def parse_status(workflow: Mapping[str, Any], ui_base: str) -> WorkflowStatus:
    """A Workflow object (JSON, as the REST API returns it) → :class:`WorkflowStatus`."""
    meta = workflow.get("metadata") or {}
    st = workflow.get("status") or {}
    name, ns = str(meta.get("name", "")), str(meta.get("namespace", ""))
    nodes = []
    for node_id, n in (st.get("nodes") or {}).items():
        nodes.append(
            NodeInfo(
                id=str(n.get("id", node_id)),
                name=str(n.get("name", "")),
                display_name=str(n.get("displayName") or n.get("name", "")),
                type=str(n.get("type", "")),
                phase=str(n.get("phase") or "Pending"),
                message=str(n.get("message") or ""),
                template_name=n.get("templateName"),
                started_at=n.get("startedAt"),
                finished_at=n.get("finishedAt"),
            )
        )
    nodes.sort(key=lambda n: (n.started_at or "~", n.name))
    return WorkflowStatus(
        name=name,
        namespace=ns,
        phase=str(st.get("phase") or "Pending"),
        message=str(st.get("message") or ""),
        nodes=tuple(nodes),
        url=workflow_url(ui_base, ns, name),
        started_at=st.get("startedAt"),
        finished_at=st.get("finishedAt"),
        labels=dict(meta.get("labels") or {}),
        shutdown=(workflow.get("spec") or {}).get("shutdown") or None,
    )


def progress_lines(previous: WorkflowStatus | None, current: WorkflowStatus) -> list[str]:
    """Lines describing what changed between two polls (one line per change, for CI logs).

    The workflow's phase when it changes, then each step (pod, retry attempt, skipped step)
    that is new or whose phase or message changed: ``  train: Running``,
    ``  train(1): Pending (Unschedulable: 0/3 nodes are available)``.
    """
    lines: list[str] = []
    if previous is None or previous.phase != current.phase or previous.message != current.message:
        text = f"workflow {current.name}: {current.phase}"
        if current.message and current.phase in FINISHED_PHASES | {"Running", "Pending"}:
            text += f" ({current.message})"
        lines.append(text)
    before = {n.id: (n.phase, n.message) for n in (previous.steps() if previous else ())}
    for n in current.steps():
        if before.get(n.id) != (n.phase, n.message):
            text = f"  {n.display_name}: {n.phase}"
            if n.message:
                text += f" ({n.message})"
            lines.append(text)
    return lines
