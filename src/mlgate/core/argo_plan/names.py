"""Identity of a submitted workflow: checked Kubernetes names, namespaces, label values,
commits, URLs and paths; the deterministic workflow name and its labels."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from mlgate.core.errors import UsageError
from mlgate.core.urls import redact_url

#: Label keys mlgate sets on every workflow it submits (and the WorkflowTemplates set too).
LABEL_MODEL = "mlgate.dev/model"
LABEL_COMMIT = "mlgate.dev/commit"
LABEL_TEMPLATE = "mlgate.dev/template"
#: A retrain started by an alert (its record's id): one workflow per retrain, not per commit.
LABEL_RETRAIN = "mlgate.dev/retrain"
LABEL_PART_OF = "app.kubernetes.io/part-of"
ANNOTATION_REPO = "mlgate.dev/repo"

_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_FULL_SHA = re.compile(r"^[0-9a-f]{40}$")


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


def workflow_name(template: str, model: str, commit: str, retrain: str | None = None) -> str:
    """Deterministic workflow name for (WorkflowTemplate, model, commit[, retrain]), at most 63 characters.

    ``{model}-{template without "mlgate-"}-{commit[:12]}-{hash6}``, lower-case DNS-1123; the
    hash of the exact values keeps two models whose slugs coincide apart, and two retrains of
    the same commit (``retrain``: the retrain record's id) apart.
    """
    key = f"{template}\0{model}\0{commit}" + (f"\0{retrain}" if retrain else "")
    digest = hashlib.sha256(key.encode()).hexdigest()[:6]
    tail = f"-{commit[:12]}-{digest}"
    short_template = template[len("mlgate-") :] if template.startswith("mlgate-") else template
    head = f"{_slug(model)}-{_slug(short_template)}"[: 63 - len(tail)].strip("-")
    return f"{head}{tail}"


def workflow_labels(template: str, model: str, commit: str, retrain: str | None = None) -> dict[str, str]:
    """Labels that identify a submission (and find it again with :func:`label_selector`); a
    retrain's workflow also carries :data:`LABEL_RETRAIN`.

    Raises:
        UsageError: a model, template or retrain id that cannot be a label value.
    """
    labels = {
        LABEL_PART_OF: "mlgate",
        LABEL_MODEL: check_label_value("model name", model),
        LABEL_COMMIT: commit,
        LABEL_TEMPLATE: check_label_value("WorkflowTemplate name", template),
    }
    if retrain:
        labels[LABEL_RETRAIN] = check_label_value("retrain id", retrain)
    return labels


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
