"""A fake Argo Server: a real HTTP server on 127.0.0.1 that checks everything against Argo's swagger.

What it does, and where the behaviour comes from:

- Routes every path of ``tests/fixtures/argo/swagger.json`` (the Argo Server REST API, OpenAPI
  2.0). An unknown path or method answers 404; a known operation the fake does not implement
  answers 501 and is recorded in :attr:`FakeArgoServer.problems`.
- Validates every request: query parameters must be declared for the operation and have the
  declared type; the JSON body must validate against the operation's body schema
  (``#/definitions/...`` resolved with :mod:`referencing`). Invalid → 400, recorded in
  :attr:`FakeArgoServer.rejected`. The fake is stricter than Argo in one way: unknown object
  keys are rejected (Argo's JSON decoding drops them silently, which hides a client's typo).
- Validates every response it returns against the operation's response schema (``200`` or
  ``default`` = ``grpc.gateway.runtime.Error``); a violation is recorded in ``problems`` (the test
  fixture asserts there are none).
- Bearer tokens: a missing or unknown token answers 401 (gRPC code 16), a token not allowed in the
  namespace answers 403 (code 7), as the Argo Server does in ``--auth-mode=client``.
- ``fail_next`` makes the next requests answer 5xx (a proxy's 503, an API server's 500).
- Stores WorkflowTemplates and Workflows. Creating a workflow checks what Argo's validation
  checks at submit time: a DNS-1123 name of at most 63 characters, valid labels, the referenced
  WorkflowTemplate exists, every parameter has a value (``spec.arguments.NAME.value is
  required``), values within ``enum``; a duplicate name answers 409 (code 6, AlreadyExists).
- Workflows start Pending; the test moves them with :meth:`FakeArgoServer.advance`
  (Running, Succeeded, Failed, Error) with node statuses like the controller's. ``stop`` and
  ``terminate`` set ``spec.shutdown`` like Argo; at the next read the "controller" fails the
  running steps (phase Failed, "Stopped with strategy 'Stop'").
"""

from __future__ import annotations

import copy
import json
import re
import threading
import uuid
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import jsonschema
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "argo"
SWAGGER_URI = "urn:argo:swagger.json"

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _strict(node: Any) -> Any:
    """Copy of a schema in which every object with ``properties`` forbids other keys."""
    if isinstance(node, dict):
        out = {k: _strict(v) for k, v in node.items()}
        if out.get("type") == "object" and "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out
    if isinstance(node, list):
        return [_strict(v) for v in node]
    return node


class SwaggerSpec:
    """The swagger document, its routes and validators for its definitions."""

    def __init__(self, path: Path = FIXTURES / "swagger.json", *, strict: bool = True):
        self.doc = json.loads(path.read_text(encoding="utf-8"))
        contents = _strict(self.doc) if strict else self.doc
        resource = Resource.from_contents(contents, default_specification=DRAFT4)
        self.registry = Registry().with_resource(SWAGGER_URI, resource)
        self._validators: dict[str, jsonschema.protocols.Validator] = {}
        self.routes: list[tuple[re.Pattern[str], str, dict[str, Any]]] = []
        for template, item in self.doc["paths"].items():
            pattern = "^" + re.sub(r"\\\{([^}]+)\\\}", r"(?P<\1>[^/]+)", re.escape(template)) + "$"
            self.routes.append((re.compile(_group_names_safe(pattern)), template, item))
        # literal segments first, so /workflows/{ns}/lint wins over /workflows/{ns}/{name}
        self.routes.sort(key=lambda r: (-sum(1 for s in r[1].split("/") if s and not s.startswith("{")), r[1]))

    def match(self, method: str, path: str) -> tuple[dict[str, Any], dict[str, str]] | None:
        """(operation, path parameters) for a request, or None when the API has no such route."""
        for regex, _template, item in self.routes:
            m = regex.match(path)
            if m and method.lower() in item:
                params = {_unsafe(k): v for k, v in m.groupdict().items()}
                op = dict(item[method.lower()])
                op["_method"] = method.lower()
                op["parameters"] = list(item.get("parameters", [])) + list(op.get("parameters", []))
                return op, params
        return None

    def validator(self, schema: Mapping[str, Any]) -> jsonschema.protocols.Validator:
        """A draft-4 validator for a swagger schema (``$ref`` into ``#/definitions`` resolved)."""
        key = json.dumps(schema, sort_keys=True)
        if key not in self._validators:
            resolved = _rebase(schema)
            self._validators[key] = jsonschema.Draft4Validator(
                resolved, registry=self.registry, format_checker=jsonschema.Draft4Validator.FORMAT_CHECKER
            )
        return self._validators[key]

    def errors(self, schema: Mapping[str, Any], instance: Any) -> list[str]:
        """Messages (``path: message``) for every way ``instance`` violates ``schema``."""
        out = []
        for e in self.validator(schema).iter_errors(instance):
            where = "/".join(str(p) for p in e.absolute_path) or "(body)"
            out.append(f"{where}: {e.message[:300]}")
        return out


def _group_names_safe(pattern: str) -> str:
    # named groups must be identifiers; swagger path params are (namespace, name, uid, podName, ...)
    return re.sub(r"\(\?P<([^>]+)>", lambda m: "(?P<" + m.group(1).replace(".", "__") + ">", pattern)


def _unsafe(name: str) -> str:
    return name.replace("__", ".")


def _rebase(schema: Any) -> Any:
    """Point local ``#/definitions`` refs of a fragment at the registered swagger document."""
    if isinstance(schema, dict):
        out = {}
        for k, v in schema.items():
            if k == "$ref" and isinstance(v, str) and v.startswith("#/"):
                out[k] = SWAGGER_URI + v
            else:
                out[k] = _rebase(v)
        return out
    if isinstance(schema, list):
        return [_rebase(v) for v in schema]
    return schema


@dataclass
class RecordedRequest:
    """One request the fake received (the Authorization header is not kept)."""

    method: str
    path: str
    query: dict[str, str]
    body: Any
    status: int
    operation: str | None


class ApiError(Exception):
    """An error answer: HTTP status + gRPC code + message (``grpc.gateway.runtime.Error``)."""

    def __init__(self, http: int, code: int, message: str):
        super().__init__(message)
        self.http, self.code, self.message = http, code, message


def _selector_matches(selector: str, labels: Mapping[str, str]) -> bool:
    """Kubernetes equality- and set-based label selector (``a=b,c!=d,e,!f,g in (x,y)``)."""
    parts = re.findall(r"[^,(]+(?:\([^)]*\))?", selector)
    for raw in parts:
        term = raw.strip()
        if not term:
            continue
        m = re.match(r"^([^\s!=]+)\s+(in|notin)\s+\(([^)]*)\)$", term)
        if m:
            key, op, vals = m.group(1), m.group(2), {v.strip() for v in m.group(3).split(",")}
            if (labels.get(key) in vals) != (op == "in"):
                return False
            continue
        if term.startswith("!"):
            if term[1:].strip() in labels:
                return False
            continue
        m = re.match(r"^([^\s!=]+)\s*(==|=|!=)\s*(\S*)$", term)
        if m:
            key, op, val = m.groups()
            if op == "!=":
                if labels.get(key) == val:
                    return False
            elif labels.get(key) != val:
                return False
            continue
        if re.match(r"^[^\s!=]+$", term):
            if term not in labels:
                return False
            continue
        raise ApiError(400, 3, f"unable to parse requirement: {term!r}")
    return True


class FakeArgoServer:
    """A fake Argo Server on ``127.0.0.1`` (a free port); use as a context manager.

    Args:
        tokens: bearer token → namespaces it may use (``"*"`` for all).
        spec: a shared :class:`SwaggerSpec` (loading the swagger takes a moment; share it).

    Attributes:
        url: base URL, e.g. ``http://127.0.0.1:40123``.
        requests: every :class:`RecordedRequest`, in order.
        rejected: (request, reasons) for every request rejected as invalid (400).
        problems: swagger violations in responses, calls of unimplemented operations.
    """

    def __init__(self, tokens: Mapping[str, Iterable[str]] | None = None, spec: SwaggerSpec | None = None):
        self.spec = spec or SwaggerSpec()
        self.tokens = {t: set(ns) for t, ns in (tokens or {"test-token": ["argo"]}).items()}
        self.templates: dict[tuple[str, str], dict[str, Any]] = {}
        self.workflows: dict[tuple[str, str], dict[str, Any]] = {}
        self.requests: list[RecordedRequest] = []
        self.rejected: list[tuple[RecordedRequest, list[str]]] = []
        self.problems: list[str] = []
        self._lock = threading.RLock()
        self._version = 1000
        self._failures: list[tuple[int, str, str | None]] = []
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> FakeArgoServer:
        handler = type("Handler", (_Handler,), {"fake": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="fake-argo", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> FakeArgoServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def reset(self) -> None:
        """Forget workflows, templates and records (tokens stay)."""
        with self._lock:
            self.templates.clear()
            self.workflows.clear()
            self.requests.clear()
            self.rejected.clear()
            self.problems.clear()
            self._failures.clear()

    def assert_valid(self) -> None:
        """Raise AssertionError if a response violated the swagger or an unimplemented call came."""
        assert not self.problems, "fake Argo Server problems:\n" + "\n".join(self.problems)

    # ------------------------------------------------------------------ test controls

    def _next_version(self) -> str:
        self._version += 1
        return str(self._version)

    def add_workflow_template(self, manifest: Mapping[str, Any], namespace: str = "argo") -> dict[str, Any]:
        """Store a WorkflowTemplate (e.g. a file of ``workflows/``) as if applied with kubectl."""
        obj = copy.deepcopy(dict(manifest))
        meta = obj.setdefault("metadata", {})
        meta["namespace"] = namespace
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", _now())
        meta["resourceVersion"] = self._next_version()
        with self._lock:
            self.templates[(namespace, meta["name"])] = obj
        return obj

    def fail_next(
        self, status: int = 503, times: int = 1, message: str = "upstream connect error", operation: str | None = None
    ) -> None:
        """Answer the next ``times`` authorized requests (of ``operation``, an operationId, if
        given) with ``status``, like a proxy's 503 or an overloaded API server's 500."""
        with self._lock:
            self._failures += [(status, message, operation)] * times

    def workflow(self, name: str, namespace: str = "argo") -> dict[str, Any]:
        """A copy of a stored workflow (KeyError when absent)."""
        with self._lock:
            return copy.deepcopy(self.workflows[(namespace, name)])

    def created(self) -> list[RecordedRequest]:
        """The workflow-creation requests the fake accepted."""
        return [r for r in self.requests if r.operation == "WorkflowService_CreateWorkflow" and r.status == 200]

    def advance(
        self,
        name: str,
        phase: str,
        *,
        namespace: str = "argo",
        step: str = "train",
        message: str | None = None,
        nodes: list[dict[str, Any]] | None = None,
        skipped: Iterable[str] = (),
    ) -> None:
        """Move a workflow to ``phase`` like the controller would.

        Args:
            phase: Pending, Running, Succeeded, Failed or Error.
            step: display name of the pod step (``train`` for mlgate-train-gpu).
            message: the failed pod's message (default ``Error (exit code 1)``); for Pending, the
                pod's message (e.g. ``Unschedulable: ...``).
            nodes: extra step nodes to add, as dicts with displayName, phase, and optional
                type (Pod) and message, e.g. a retried attempt ``train(0)``.
            skipped: display names of steps whose ``when`` was false (e.g. ``train-spot``).
        """
        with self._lock:
            wf = self.workflows[(namespace, name)]
            st = wf.setdefault("status", {})
            now = _now()
            root_id = _node_id(name, name)
            group = f"{name}[0]"
            pod = f"{name}[0].{step}"
            leaf_phase = {"Pending": "Pending", "Running": "Running", "Succeeded": "Succeeded"}.get(phase, phase)
            parent_phase = "Running" if phase in ("Pending", "Running") else phase
            nodes_out = {
                root_id: {
                    "id": root_id,
                    "name": name,
                    "displayName": name,
                    "type": "Steps",
                    "phase": parent_phase,
                    "templateName": "main",
                    "startedAt": st.get("startedAt", now),
                    "children": [_node_id(name, group)],
                },
                _node_id(name, group): {
                    "id": _node_id(name, group),
                    "name": group,
                    "displayName": "[0]",
                    "type": "StepGroup",
                    "phase": parent_phase,
                    "startedAt": st.get("startedAt", now),
                    "boundaryID": root_id,
                    "children": [_node_id(name, pod)],
                },
                _node_id(name, pod): {
                    "id": _node_id(name, pod),
                    "name": pod,
                    "displayName": step,
                    "type": "Pod",
                    "phase": leaf_phase,
                    "templateName": step,
                    "startedAt": st.get("startedAt", now),
                    "boundaryID": root_id,
                },
            }
            pod_node = nodes_out[_node_id(name, pod)]
            if phase in ("Failed", "Error"):
                pod_node["message"] = message or "Error (exit code 1)"
                nodes_out[root_id]["message"] = f"child '{_node_id(name, pod)}' failed"
                st["message"] = f"child '{_node_id(name, pod)}' failed"
            elif message:
                pod_node["message"] = message
            extras = list(nodes or [])
            extras += [
                {"displayName": s, "type": "Skipped", "phase": "Skipped", "message": "when 'false' evaluated false"}
                for s in skipped
            ]
            for extra in extras:
                full = f"{name}[0].{extra['displayName']}"
                nid = _node_id(name, full)
                nodes_out[nid] = {
                    "id": nid,
                    "name": full,
                    "displayName": extra["displayName"],
                    "type": extra.get("type", "Pod"),
                    "phase": extra["phase"],
                    "startedAt": extra.get("startedAt", st.get("startedAt", now)),
                    "boundaryID": root_id,
                    **({"message": extra["message"]} if extra.get("message") else {}),
                }
            if phase in ("Succeeded", "Failed", "Error"):
                st["finishedAt"] = now
                for n in nodes_out.values():
                    n.setdefault("finishedAt", now)
            st["phase"] = phase
            st["nodes"] = nodes_out
            st["progress"] = "1/1" if phase == "Succeeded" else "0/1"
            wf["metadata"]["resourceVersion"] = self._next_version()
            wf["metadata"].setdefault("labels", {})["workflows.argoproj.io/phase"] = phase
            if phase in ("Succeeded", "Failed", "Error"):
                wf["metadata"]["labels"]["workflows.argoproj.io/completed"] = "true"

    # ------------------------------------------------------------------ request handling

    def handle(self, method: str, raw_path: str, headers: Mapping[str, str], raw_body: bytes) -> tuple[int, Any]:
        parts = urlsplit(raw_path)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        body: Any = None
        rec = RecordedRequest(method, parts.path, query, None, 0, None)
        op: dict[str, Any] | None = None
        try:
            matched = self.spec.match(method, parts.path)
            if matched is None:
                raise ApiError(404, 5, "Not Found")
            op, path_params = matched
            rec.operation = op.get("operationId")
            if raw_body:
                try:
                    body = json.loads(raw_body)
                except ValueError as e:
                    raise ApiError(400, 3, f"invalid JSON body: {e}") from None
                rec.body = body
            reasons = self._check_request(op, query, body)
            if reasons:
                with self._lock:
                    self.rejected.append((rec, reasons))
                raise ApiError(400, 3, "; ".join(reasons))
            self._authorize(headers, path_params.get("namespace"), op)
            with self._lock:
                due = [f for f in self._failures if f[2] in (None, rec.operation)]
                if due:
                    self._failures.remove(due[0])
            if due:
                raise ApiError(due[0][0], 14, due[0][1])
            status, payload = self._dispatch(op, path_params, query, body)
        except ApiError as e:
            status, payload = e.http, {"code": e.code, "message": e.message}
        rec.status = status
        with self._lock:
            self.requests.append(rec)
        if op is not None:
            self._check_response(op, status, payload)
        return status, payload

    def _check_request(self, op: dict[str, Any], query: Mapping[str, str], body: Any) -> list[str]:
        reasons: list[str] = []
        declared = {p["name"]: p for p in op["parameters"] if p.get("in") == "query"}
        for key, value in query.items():
            p = declared.get(key)
            if p is None:
                reasons.append(f"unknown query parameter {key!r} for {op.get('operationId')}")
            elif p.get("type") == "boolean" and value not in ("true", "false"):
                reasons.append(f"query parameter {key!r} must be true or false (got {value!r})")
            elif p.get("format") in ("int64", "int32") and not re.match(r"^-?\d+$", value):
                reasons.append(f"query parameter {key!r} must be an integer (got {value!r})")
        body_params = [p for p in op["parameters"] if p.get("in") == "body"]
        if body_params:
            bp = body_params[0]
            if body is None:
                if bp.get("required"):
                    reasons.append("request body required")
            else:
                reasons += self.spec.errors(bp["schema"], body)
        elif body is not None:
            reasons.append(f"{op.get('operationId')} takes no request body")
        return reasons

    def _check_response(self, op: dict[str, Any], status: int, payload: Any) -> None:
        responses = op.get("responses", {})
        spec = responses.get(str(status)) or responses.get("default")
        if spec is None or "schema" not in spec:
            self.problems.append(f"{op.get('operationId')}: no response {status} in swagger")
            return
        errors = self.spec.errors(spec["schema"], payload)
        if errors:
            with self._lock:
                self.problems.append(f"{op.get('operationId')} response {status}: " + "; ".join(errors[:5]))

    def _authorize(self, headers: Mapping[str, str], namespace: str | None, op: dict[str, Any]) -> None:
        auth = headers.get("authorization", "")
        token = auth[len("Bearer ") :].strip() if auth.startswith("Bearer ") else None
        if not token or token not in self.tokens:
            raise ApiError(401, 16, "token not valid. see https://argo-workflows.readthedocs.io/en/latest/faq/")
        allowed = self.tokens[token]
        if namespace is not None and "*" not in allowed and namespace not in allowed:
            resource = "workflowtemplates" if "Template" in str(op.get("operationId")) else "workflows"
            verb = {"get": "get", "post": "create", "put": "update", "delete": "delete"}.get(
                str(op.get("_method", "get")), "get"
            )
            raise ApiError(
                403,
                7,
                f'{resource}.argoproj.io is forbidden: User "system:serviceaccount:argo:mlgate" cannot '
                f'{verb} resource "{resource}" in API group "argoproj.io" in the namespace "{namespace}"',
            )

    def _dispatch(self, op: dict[str, Any], pp: dict[str, str], query: dict[str, str], body: Any) -> tuple[int, Any]:
        name = op.get("operationId")
        handler = getattr(self, f"_op_{name}", None)
        if handler is None:
            with self._lock:
                self.problems.append(f"unimplemented operation called: {name}")
            raise ApiError(501, 12, f"{name} is not implemented by the fake Argo Server")
        with self._lock:
            return 200, handler(pp, query, body)

    # ------------------------------------------------------------------ operations

    def _op_WorkflowTemplateService_GetWorkflowTemplate(self, pp, query, body):
        key = (pp["namespace"], pp["name"])
        if key not in self.templates:
            raise ApiError(404, 5, f'workflowtemplates.argoproj.io "{pp["name"]}" not found')
        return copy.deepcopy(self.templates[key])

    def _op_WorkflowTemplateService_CreateWorkflowTemplate(self, pp, query, body):
        tmpl = (body or {}).get("template") or {}
        name = (tmpl.get("metadata") or {}).get("name")
        if not name:
            raise ApiError(400, 3, 'WorkflowTemplate.argoproj.io "" is invalid: metadata.name: Required value')
        if (pp["namespace"], name) in self.templates:
            raise ApiError(409, 6, f'workflowtemplates.argoproj.io "{name}" already exists')
        return copy.deepcopy(self.add_workflow_template(tmpl, pp["namespace"]))

    def _op_WorkflowService_ListWorkflows(self, pp, query, body):
        selector = query.get("listOptions.labelSelector", "")
        for wf in self.workflows.values():
            self._reconcile(wf)
        items = [
            copy.deepcopy(wf)
            for (ns, _), wf in sorted(self.workflows.items())
            if ns == pp["namespace"] and _selector_matches(selector, (wf.get("metadata") or {}).get("labels") or {})
        ]
        return {"metadata": {"resourceVersion": str(self._version)}, "items": items}

    def _op_WorkflowService_GetWorkflow(self, pp, query, body):
        key = (pp["namespace"], pp["name"])
        if key not in self.workflows:
            raise ApiError(404, 5, f'workflows.argoproj.io "{pp["name"]}" not found')
        self._reconcile(self.workflows[key])
        return copy.deepcopy(self.workflows[key])

    def _op_WorkflowService_DeleteWorkflow(self, pp, query, body):
        key = (pp["namespace"], pp["name"])
        if self.workflows.pop(key, None) is None:
            raise ApiError(404, 5, f'workflows.argoproj.io "{pp["name"]}" not found')
        return {}

    def _op_WorkflowService_CreateWorkflow(self, pp, query, body):
        ns = pp["namespace"]
        wf = copy.deepcopy((body or {}).get("workflow") or {})
        meta = wf.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        name = meta.get("name") or ""
        if not name:
            raise ApiError(400, 3, 'Workflow.argoproj.io "" is invalid: metadata.name: Required value')
        if len(name) > 63 or not _DNS_LABEL.match(name):
            raise ApiError(400, 3, f"workflow name {name!r} must be a DNS-1123 label of at most 63 characters")
        if meta.get("namespace") not in (None, ns):
            raise ApiError(
                400,
                3,
                f"the namespace of the provided object ({meta['namespace']}) does not match the namespace sent on the request ({ns})",
            )
        for k, v in (meta.get("labels") or {}).items():
            key_name = k.split("/", 1)[-1]
            if not _LABEL_NAME.match(key_name) or len(key_name) > 63:
                raise ApiError(
                    400, 3, f"metadata.labels: Invalid value: {k!r}: name part must consist of alphanumeric characters"
                )
            if len(v) > 63 or not _LABEL_VALUE.match(v):
                raise ApiError(
                    400,
                    3,
                    f"metadata.labels: Invalid value: {v!r}: a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.'",
                )
        spec = wf.get("spec") or {}
        declared: list[dict[str, Any]] = []
        ref = spec.get("workflowTemplateRef")
        if ref:
            tkey = (ns, ref.get("name", ""))
            if ref.get("clusterScope"):
                raise ApiError(400, 3, "clusterworkflowtemplates are not served by the fake")
            if tkey not in self.templates:
                raise ApiError(400, 3, f'workflowtemplates.argoproj.io "{ref.get("name")}" not found')
            declared = (((self.templates[tkey].get("spec") or {}).get("arguments") or {}).get("parameters")) or []
        elif not spec.get("templates"):
            raise ApiError(400, 3, "spec.templates is required when no workflowTemplateRef is given")
        sent = {p["name"]: p for p in ((spec.get("arguments") or {}).get("parameters") or [])}
        for p in sent.values():
            if p.get("value") is None and not p.get("valueFrom"):
                raise ApiError(400, 3, f"spec.arguments.{p['name']}.value is required")
        for p in declared:
            given = sent.get(p["name"])
            value = given.get("value") if given else p.get("value", p.get("default"))
            if value is None and not (given or {}).get("valueFrom") and not p.get("valueFrom"):
                raise ApiError(400, 3, f"spec.arguments.{p['name']}.value is required")
            if p.get("enum") and value is not None and value not in p["enum"]:
                raise ApiError(400, 3, f"spec.arguments.{p['name']}.value: {value!r} is not in the enum {p['enum']}")
        key = (ns, name)
        if key in self.workflows:
            raise ApiError(409, 6, f'workflows.argoproj.io "{name}" already exists')
        meta["namespace"] = ns
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = _now()
        meta["resourceVersion"] = self._next_version()
        meta["generation"] = 1
        if body.get("serverDryRun"):
            return wf
        answer = copy.deepcopy(wf)
        stored = copy.deepcopy(wf)
        stored["metadata"].setdefault("labels", {})["workflows.argoproj.io/phase"] = "Pending"
        stored["status"] = {"phase": "Pending", "startedAt": _now(), "progress": "0/1"}
        self.workflows[key] = stored
        return answer

    def _shutdown(self, pp, body, strategy: str):
        """Argo's stop/terminate only patch ``spec.shutdown`` (util.patchShutdownStrategy); the
        controller fails the running steps afterwards (here: at the next read, :meth:`_reconcile`).
        The stop request's ``message`` is only used with a ``nodeFieldSelector``."""
        key = (pp["namespace"], pp["name"])
        if key not in self.workflows:
            raise ApiError(404, 5, f'workflows.argoproj.io "{pp["name"]}" not found')
        wf = self.workflows[key]
        if (wf.get("status") or {}).get("phase") in ("Succeeded", "Failed", "Error"):
            raise ApiError(
                400,
                9,
                f'cannot shutdown a completed workflow: workflow: "{pp["name"]}", namespace: "{pp["namespace"]}"',
            )
        wf.setdefault("spec", {})["shutdown"] = strategy
        wf["metadata"]["resourceVersion"] = self._next_version()
        return copy.deepcopy(wf)

    def _reconcile(self, wf: dict[str, Any]) -> None:
        """What the controller does with a workflow whose ``spec.shutdown`` is set."""
        strategy = (wf.get("spec") or {}).get("shutdown")
        st = wf.setdefault("status", {})
        if not strategy or st.get("phase") in ("Succeeded", "Failed", "Error"):
            return
        now = _now()
        for n in (st.get("nodes") or {}).values():
            if n.get("phase") in ("Pending", "Running"):
                n["phase"] = "Failed"
                n["message"] = f"workflow shutdown with strategy:  {strategy}"
                n["finishedAt"] = now
        st["phase"] = "Failed"
        st["message"] = f"Stopped with strategy '{strategy}'"
        st["finishedAt"] = now
        wf["metadata"]["resourceVersion"] = self._next_version()
        labels = wf["metadata"].setdefault("labels", {})
        labels["workflows.argoproj.io/phase"] = "Failed"
        labels["workflows.argoproj.io/completed"] = "true"

    def _op_WorkflowService_StopWorkflow(self, pp, query, body):
        return self._shutdown(pp, body, "Stop")

    def _op_WorkflowService_TerminateWorkflow(self, pp, query, body):
        return self._shutdown(pp, body, "Terminate")


def _node_id(wf_name: str, node_name: str) -> str:
    return f"{wf_name}-{zlib.crc32(node_name.encode()):010d}"


class _Handler(BaseHTTPRequestHandler):
    fake: FakeArgoServer
    protocol_version = "HTTP/1.1"

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            status, payload = self.fake.handle(self.command, self.path, headers, raw)
        except Exception as e:  # a bug in the fake: answer 500 and record it
            self.fake.problems.append(f"fake crashed on {self.command} {self.path}: {e!r}")
            status, payload = 500, {"code": 13, "message": f"fake crashed: {e!r}"}
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass
