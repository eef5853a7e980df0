"""Pure decisions for Argo Workflows submissions: parameters, names, labels, status, progress.

No network, disk, clock or environment: every function works on the plain data it is handed
(the WorkflowTemplate and Workflow objects as JSON dicts, as the Argo Server REST API returns them).
The edge adapter :mod:`mlgate.edge.argo` fetches those objects, calls these functions and sends what
they decide.

Sources of external behaviour:

- Argo Workflows, "Workflow Variables" and "Parameters" (argo-workflows.readthedocs.io): a
  WorkflowTemplate's ``spec.arguments.parameters[]`` has ``name``, ``value`` (the default when
  submitted), ``default``, ``enum``, ``valueFrom``; ``{{...}}`` in a value is a template expression
  that the controller expands. Some Argo versions reject, at submit time, a parameter that has
  neither ``value`` nor ``valueFrom`` (``spec.arguments.NAME.value is required``), so every
  parameter with a literal default is sent explicitly.
- Kubernetes "Object Names and IDs" and "Labels and Selectors": object names are DNS-1123
  subdomains, namespaces DNS-1123 labels (Argo limits the workflow names it generates to 63
  characters); label values are at most 63 characters of
  ``[A-Za-z0-9._-]``, beginning and ending with a letter or digit.
- Argo's ``WorkflowStatus``/``NodeStatus`` (swagger ``io.argoproj.workflow.v1alpha1.*``): phases
  ``Pending``, ``Running``, ``Succeeded``, ``Skipped``, ``Failed``, ``Error``, ``Omitted``; an empty
  workflow phase means the controller has not picked the workflow up yet.
"""

from __future__ import annotations

import difflib
import hashlib
import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from mlgate.core.errors import UsageError
from mlgate.core.urls import redact_url

#: Parameters mlgate fills from its own settings when the WorkflowTemplate declares them.
STANDARD_PARAMETERS = ("image", "repo", "commit", "model", "config", "command", "tracking-uri", "gpus")
#: Parameters that identify the run (labels, name); only ``--commit`` and the config set them.
IDENTITY_PARAMETERS = ("model", "commit")

#: Label keys mlgate sets on every workflow it submits (and the WorkflowTemplates set too).
LABEL_MODEL = "mlgate.dev/model"
LABEL_COMMIT = "mlgate.dev/commit"
LABEL_TEMPLATE = "mlgate.dev/template"
LABEL_PART_OF = "app.kubernetes.io/part-of"
ANNOTATION_REPO = "mlgate.dev/repo"

FINISHED_PHASES = frozenset({"Succeeded", "Failed", "Error"})
FAILED_PHASES = frozenset({"Failed", "Error"})

_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_FULL_SHA = re.compile(r"^[0-9a-f]{40}$")
_HINTS = {
    "image": "set train.argo.image in .mlgate.yml or pass -p image=IMAGE",
    "repo": "pass --repo URL (default: git remote get-url origin)",
    "commit": "pass --commit SHA (default: git rev-parse HEAD)",
}


# --------------------------------------------------------------------------- parameters


@dataclass(frozen=True)
class DeclaredParameter:
    """One parameter a WorkflowTemplate declares in ``spec.arguments.parameters``.

    ``default`` is the literal the template gives (``value``, else ``default``), or None;
    ``has_value_from`` is True when the template reads it from a ConfigMap or elsewhere.
    """

    name: str
    default: str | None = None
    has_value_from: bool = False
    enum: tuple[str, ...] | None = None
    description: str | None = None

    @property
    def required(self) -> bool:
        """True when the submitter must give a value (no default, no valueFrom)."""
        return self.default is None and not self.has_value_from


def declared_parameters(template: Mapping[str, Any]) -> list[DeclaredParameter]:
    """The parameters a WorkflowTemplate object declares, in declaration order.

    Args:
        template: a WorkflowTemplate as JSON (``GET /api/v1/workflow-templates/{ns}/{name}``
            or the YAML in ``workflows/``).

    Returns:
        One :class:`DeclaredParameter` per ``spec.arguments.parameters[]`` entry.
    """
    params = (((template.get("spec") or {}).get("arguments") or {}).get("parameters")) or []
    out: list[DeclaredParameter] = []
    for p in params:
        default = p.get("value")
        if default is None:
            default = p.get("default")
        enum = p.get("enum")
        out.append(
            DeclaredParameter(
                name=str(p["name"]),
                default=None if default is None else str(default),
                has_value_from=bool(p.get("valueFrom")),
                enum=tuple(str(e) for e in enum) if enum else None,
                description=p.get("description"),
            )
        )
    return out


@dataclass(frozen=True)
class ResolvedParameters:
    """What to send as ``spec.arguments.parameters``.

    ``values``: (name, value) pairs in the template's declaration order, every value a literal
    string without ``{{``. ``left_to_template``: declared parameters not sent, because their
    default is itself a template expression or they have ``valueFrom`` (Argo resolves those).
    ``unused_standard``: mlgate's standard parameters the template does not declare (not sent).
    """

    values: tuple[tuple[str, str], ...]
    left_to_template: tuple[str, ...] = ()
    unused_standard: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, str]:
        return dict(self.values)


def _check_literal(name: str, value: str, where: str) -> None:
    if "{{" in value:
        raise UsageError(
            f"parameter {name!r} ({where}) contains '{{{{': Argo would expand it as a "
            f"template expression; pass the literal value instead (got {value!r})"
        )


def resolve_parameters(
    template_name: str,
    declared: Sequence[DeclaredParameter],
    *,
    standard: Mapping[str, str | None] | None = None,
    user: Mapping[str, str] | None = None,
) -> ResolvedParameters:
    """Fill every parameter of a WorkflowTemplate explicitly, or say exactly what is wrong.

    Precedence, lowest first: the template's literal default, mlgate's ``standard`` values
    (image, repo, commit, model, config, command, tracking-uri, gpus; None means "not known"), the
    ``user``'s values (``train.argo.parameters`` and ``-p key=value``).

    Args:
        template_name: the WorkflowTemplate's name, for messages.
        declared: its parameters (:func:`declared_parameters`).
        standard: values mlgate knows; sent only for parameters the template declares.
        user: values the user asked for; every name must be declared.

    Returns:
        :class:`ResolvedParameters`.

    Raises:
        UsageError: a user parameter the template does not declare (naming the known ones and
            the closest match); a user value for ``model`` or ``commit`` (set by mlgate); a
            required parameter (no default, no valueFrom) with no value (naming all of them,
            with a hint where mlgate can fill it); a value outside the parameter's ``enum``; a
            value containing ``{{``.
    """
    standard = dict(standard or {})
    user = dict(user or {})
    by_name = {p.name: p for p in declared}
    known = ", ".join(p.name for p in declared) or "(none)"

    unknown = [n for n in user if n not in by_name]
    if unknown:
        parts = []
        for n in unknown:
            close = difflib.get_close_matches(n, list(by_name), n=1)
            parts.append(f"{n!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise UsageError(
            f"unknown parameter {', '.join(parts)} for WorkflowTemplate {template_name!r}; known parameters: {known}"
        )
    fixed = [n for n in user if n in IDENTITY_PARAMETERS]
    if fixed:
        raise UsageError(
            f"parameter {fixed[0]!r} is set by mlgate (model from .mlgate.yml, commit from --commit); "
            "do not pass it with -p or train.argo.parameters"
        )

    values: list[tuple[str, str]] = []
    left: list[str] = []
    missing: list[str] = []
    for p in declared:
        if p.name in user:
            value, where = str(user[p.name]), "given with -p or train.argo.parameters"
        elif standard.get(p.name) is not None:
            value, where = str(standard[p.name]), "set by mlgate"
        elif p.default is not None and "{{" not in p.default:
            value, where = p.default, f"default of WorkflowTemplate {template_name!r}"
        elif p.default is not None or p.has_value_from:
            left.append(p.name)
            continue
        else:
            missing.append(p.name)
            continue
        _check_literal(p.name, value, where)
        if p.enum is not None and value not in p.enum:
            raise UsageError(
                f"parameter {p.name!r} of WorkflowTemplate {template_name!r} must be one of "
                f"{', '.join(p.enum)} (got {value!r})"
            )
        values.append((p.name, value))
    if missing:
        hints = [f"{n} ({_HINTS[n]})" if n in _HINTS else f"{n} (pass -p {n}=VALUE)" for n in missing]
        noun = "parameter" if len(missing) == 1 else "parameters"
        raise UsageError(f"WorkflowTemplate {template_name!r} needs {noun} without a default: {'; '.join(hints)}")
    unused = tuple(n for n in STANDARD_PARAMETERS if n not in by_name and standard.get(n) is not None)
    return ResolvedParameters(tuple(values), tuple(left), unused)


def parse_parameter_options(items: Iterable[str]) -> dict[str, str]:
    """``["key=value", ...]`` (repeated ``-p``) → dict; the value may contain ``=``.

    Raises:
        UsageError: an item without ``=`` or with an empty key, or a key given twice.
    """
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"-p expects KEY=VALUE (got {item!r})")
        if key in out:
            raise UsageError(f"parameter {key!r} given twice with -p")
        out[key] = value
    return out


def command_string(command: Sequence[str] | str | None) -> str:
    """The training command as one string of shell words (the template runs it with ``eval``).

    A list is joined with :func:`shlex.join` so that each item stays one argument; a string is
    passed as written (it must split like a shell command); None gives ``""`` (the step then
    runs the command from ``.mlgate.yml``).

    Raises:
        UsageError: a string with unbalanced quotes.
    """
    if command is None:
        return ""
    if isinstance(command, str):
        try:
            shlex.split(command)
        except ValueError as e:
            raise UsageError(f"training command {command!r} does not split like a shell command: {e}") from None
        return command
    return shlex.join(str(c) for c in command)


# --------------------------------------------------------------------------- identity


def check_commit(commit: str) -> str:
    """A full 40-hex commit SHA, lower-cased.

    Raises:
        UsageError: anything else (a short SHA or a branch name would make two submissions
            of the same commit look different).
    """
    c = commit.strip().lower()
    if not _FULL_SHA.match(c):
        raise UsageError(f"commit must be a full 40-character SHA (got {commit!r}); resolve it with git rev-parse")
    return c


def check_label_value(what: str, value: str) -> str:
    """``value`` if it can be a Kubernetes label value, else UsageError naming ``what``."""
    if len(value) > 63 or not _LABEL_VALUE.match(value):
        raise UsageError(
            f"{what} {value!r} cannot be a Kubernetes label value: at most 63 letters, digits, "
            "'-', '_' or '.', beginning and ending with a letter or digit"
        )
    return value


_DNS1123_LABEL = r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN = re.compile(rf"{_DNS1123_LABEL}(?:\.{_DNS1123_LABEL})*\Z")
_DNS1123_LABEL_RE = re.compile(rf"{_DNS1123_LABEL}\Z")


def check_object_name(what: str, name: str) -> str:
    """``name`` if it is a valid Kubernetes object name (workflow, WorkflowTemplate), else UsageError.

    Kubernetes "Object Names and IDs": a DNS-1123 subdomain, at most 253 characters of
    lower-case letters, digits, ``-`` and ``.``, starting and ending with a letter or digit.
    The name goes into Argo Server API paths (``/api/v1/workflows/{namespace}/{name}``), so
    ``..``, ``/``, ``?``, ``#`` or an empty name must never reach a request.

    Raises:
        UsageError: naming ``what`` and the rule.
    """
    if not isinstance(name, str) or len(name) > 253 or not _DNS1123_SUBDOMAIN.match(name):
        raise UsageError(
            f"{what} {name!r} is not a valid Kubernetes name: it must be a DNS-1123 subdomain "
            "(at most 253 lower-case letters, digits, '-' or '.', starting and ending with a letter or digit)"
        )
    return name


def check_namespace(namespace: str) -> str:
    """``namespace`` if it is a valid Kubernetes namespace name, else UsageError.

    Kubernetes "Namespaces": a DNS-1123 label, at most 63 lower-case letters, digits and ``-``,
    starting and ending with a letter or digit (no ``.``, unlike other object names).

    Raises:
        UsageError: naming ``train.argo.namespace`` and the rule.
    """
    if not isinstance(namespace, str) or len(namespace) > 63 or not _DNS1123_LABEL_RE.match(namespace):
        raise UsageError(
            f"namespace {namespace!r} (train.argo.namespace) is not a valid Kubernetes namespace: it must be a "
            "DNS-1123 label (at most 63 lower-case letters, digits or '-', starting and ending with a letter or digit)"
        )
    return namespace


def check_server_url(url: str, what: str = "train.argo.server") -> str:
    """``url`` if it is a usable ``http://`` or ``https://`` URL with a host, else UsageError.

    A malformed URL (``http://[::1``, a port that is not a number) is a configuration error:
    retrying cannot help. The message shows the URL with its password redacted.

    Raises:
        UsageError: naming ``what``.
    """
    shown = redact_url(url)
    if not url.startswith(("http://", "https://")):
        raise UsageError(f"{what} must be the Argo Server's URL with http:// or https:// (got {shown!r})")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in 0..65535
    except ValueError as e:
        raise UsageError(f"{what} {shown!r} is not a valid URL: {e}") from None
    if not parts.hostname:
        raise UsageError(f"{what} {shown!r} is not a valid URL: it has no host")
    return url


def _slug(text: str) -> str:
    s = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return s or "x"


def workflow_name(template: str, model: str, commit: str) -> str:
    """Deterministic workflow name for (WorkflowTemplate, model, commit), at most 63 characters.

    ``{model}-{template without "mlgate-"}-{commit[:12]}-{hash6}``, lower-case DNS-1123; the
    hash of the exact three values keeps two models whose slugs coincide apart.
    """
    digest = hashlib.sha256(f"{template}\0{model}\0{commit}".encode()).hexdigest()[:6]
    tail = f"-{commit[:12]}-{digest}"
    short_template = template[len("mlgate-") :] if template.startswith("mlgate-") else template
    head = f"{_slug(model)}-{_slug(short_template)}"[: 63 - len(tail)].strip("-")
    return f"{head}{tail}"


def workflow_labels(template: str, model: str, commit: str) -> dict[str, str]:
    """Labels that identify a submission (and find it again with :func:`label_selector`).

    Raises:
        UsageError: a model or template name that cannot be a label value.
    """
    return {
        LABEL_PART_OF: "mlgate",
        LABEL_MODEL: check_label_value("model name", model),
        LABEL_COMMIT: commit,
        LABEL_TEMPLATE: check_label_value("WorkflowTemplate name", template),
    }


def label_selector(labels: Mapping[str, str]) -> str:
    """Equality-based selector ``k1=v1,k2=v2`` (keys sorted), for ``listOptions.labelSelector``."""
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def clean_repo_url(url: str) -> str:
    """A git URL the cluster can clone over HTTPS, without credentials.

    ``git@host:owner/repo.git`` and ``ssh://git@host[:port]/owner/repo.git`` become
    ``https://host/owner/repo.git``; user and password are removed from an HTTP(S) URL (GitLab CI
    puts its job token there); the query and fragment are dropped.

    Raises:
        UsageError: a local path, ``file://`` URL or another scheme (the cluster cannot reach it).
    """
    u = url.strip()
    try:
        return _clean_repo_url(u, url)
    except ValueError as e:  # urlsplit: "Invalid IPv6 URL", a port that is not a number
        raise UsageError(f"repository {redact_url(url)!r} is not a valid URL: {e}; pass --repo URL") from None


def _clean_repo_url(u: str, url: str) -> str:
    m = re.match(r"^(?:[A-Za-z0-9._-]+@)?([A-Za-z0-9.-]+\.[A-Za-z]{2,}|localhost):(?!//)(.+)$", u)
    if m and "://" not in u:
        return f"https://{m.group(1)}/{m.group(2).lstrip('/')}"
    parts = urlsplit(u)
    if parts.scheme in ("ssh", "git+ssh", "git"):
        host = parts.hostname or ""
        return urlunsplit(("https", host, parts.path, "", ""))
    if parts.scheme in ("http", "https") and parts.hostname:
        host = parts.hostname + (f":{parts.port}" if parts.port else "")
        return urlunsplit((parts.scheme, host, parts.path, "", ""))
    raise UsageError(
        f"repository {redact_url(url)!r} is not a URL the cluster can clone (https://, ssh:// or git@host:path); pass --repo URL"
    )


def check_tracking_uri(uri: str) -> str:
    """The MLflow tracking URI, if a pod on the cluster can reach it.

    Raises:
        UsageError: a ``sqlite:``/``file:`` URI or a bare path: the run would be recorded inside
            the pod and lost with it. (``databricks`` and any URI with a network scheme pass.)
    """
    u = uri.strip()
    if u in ("databricks", "databricks-uc"):  # MLflow's names for a Databricks workspace
        return u
    scheme = urlsplit(u).scheme.lower()
    if not u or scheme in ("", "file", "sqlite") or re.match(r"^[A-Za-z]:[\\/]", u):
        raise UsageError(
            f"MLflow tracking URI {uri!r} is local to this machine; training on Argo needs a tracking "
            "server the cluster reaches: set tracking_uri in .mlgate.yml or MLFLOW_TRACKING_URI"
        )
    return u


def check_config_path(path: str) -> str:
    """Path of ``.mlgate.yml`` inside the repository, as the step will find it after cloning.

    Raises:
        UsageError: an absolute path or one that leaves the repository (``..``).
    """
    p = path.strip().replace("\\", "/")
    parts = [x for x in p.split("/") if x not in ("", ".")]
    if not parts or p.startswith("/") or re.match(r"^[A-Za-z]:/", p) or ".." in parts:
        raise UsageError(f"config path {path!r} must be relative to the repository root and stay inside it")
    return "/".join(parts)


def workflow_url(ui_base: str, namespace: str, name: str) -> str:
    """Argo UI link ``{ui_base}/workflows/{namespace}/{name}``."""
    return f"{ui_base.rstrip('/')}/workflows/{namespace}/{name}"


def find_placeholders(body: Any, path: str = "") -> list[str]:
    """Paths (``a.b[0].c``) of every key or string in ``body`` that contains ``{{``."""
    found: list[str] = []
    if isinstance(body, str):
        if "{{" in body:
            found.append(path or "(root)")
    elif isinstance(body, Mapping):
        for k, v in body.items():
            here = f"{path}.{k}" if path else str(k)
            if "{{" in str(k):
                found.append(here)
            found += find_placeholders(v, here)
    elif isinstance(body, (list, tuple)):
        for i, v in enumerate(body):
            found += find_placeholders(v, f"{path}[{i}]")
    return found


# --------------------------------------------------------------------------- plan


@dataclass(frozen=True)
class SubmitPlan:
    """Everything to send for one submission; built by :func:`plan_submission`.

    ``name`` is deterministic per (template, model, commit); ``labels`` find the workflow again
    (``selector``); ``parameters`` fill every declared parameter.
    """

    name: str
    namespace: str
    template: str
    labels: dict[str, str]
    annotations: dict[str, str]
    selector: str
    parameters: ResolvedParameters


def plan_submission(
    template_object: Mapping[str, Any],
    *,
    template: str,
    namespace: str,
    model: str,
    repo_url: str,
    commit: str,
    command: Sequence[str] | str | None,
    tracking_uri: str,
    gpus: int,
    image: str | None,
    user_parameters: Mapping[str, str],
    config_path: str | None = None,
) -> SubmitPlan:
    """Decide the name, labels and parameters of a workflow that runs ``template`` for a commit.

    Args:
        template_object: the WorkflowTemplate as the server returned it.
        template, namespace: where it lives.
        model: registered model name; commit: full SHA; repo_url: git URL (cleaned, see
            :func:`clean_repo_url`); command: the training command; tracking_uri: MLflow URI
            the pod uses; gpus: count of ``nvidia.com/gpu`` (>= 0); image: container image or None.
        user_parameters: ``train.argo.parameters`` merged with ``-p`` (later wins).
        config_path: ``.mlgate.yml`` relative to the repository root, or None (the template's
            default, ``.mlgate.yml``).

    Raises:
        UsageError: see :func:`resolve_parameters`, :func:`check_commit`,
            :func:`clean_repo_url`, :func:`check_tracking_uri`, :func:`check_label_value`,
        :func:`check_config_path`.
    """
    if gpus < 0:
        raise UsageError(f"gpus must be 0 or more (got {gpus})")
    commit = check_commit(commit)
    repo = clean_repo_url(repo_url)
    labels = workflow_labels(template, model, commit)
    standard: dict[str, str | None] = {
        "image": image,
        "repo": repo,
        "commit": commit,
        "model": model,
        "config": None if config_path is None else check_config_path(config_path),
        "command": command_string(command),
        "tracking-uri": check_tracking_uri(tracking_uri),
        "gpus": str(gpus),
    }
    params = resolve_parameters(template, declared_parameters(template_object), standard=standard, user=user_parameters)
    return SubmitPlan(
        name=workflow_name(template, model, commit),
        namespace=namespace,
        template=template,
        labels=labels,
        annotations={ANNOTATION_REPO: repo},
        selector=label_selector(labels),
        parameters=params,
    )


# --------------------------------------------------------------------------- status


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
