"""KServe Standard-mode canary (pure): the ``spec.canary[]`` entry of an InferenceService, added,
raised, promoted and removed as minimal text edits in the file's own indentation.

Source: KServe v0.20 ``spec.canary`` (commit 43ec86b, "add canary rollout support for
RawDeployment mode"; CRD vendored in ``shared/specs/kserve/``): ``canary`` is a list of
``{predictor: PredictorSpec, trafficPercent: 0-100}``; each ``predictor.name`` is required
by the admission webhook, unique, and different from ``spec.predictor.name``; in this CRD
``canary[].predictor.model`` requires ``name`` (the container's) as well as ``modelFormat``.
Removing the entry is the rollback.

Every edit here is checked: the new text must load as the old documents with exactly the
intended change (a dictionary comparison), otherwise :class:`ManifestError` and nothing is
written. Only lines of the entry (or the one value) change.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any

from ruamel.yaml import YAML

from mlgate.core.errors import ManifestError, Refused
from mlgate.core.manifests import set_value
from mlgate.core.manifests.nodes import _compose, _Node

#: KServe's default predictor container name (``constants.InferenceServiceContainerName``)
CONTAINER = "kserve-container"
#: deployment modes with ``spec.canary`` (``RawDeployment`` is the deprecated name of Standard)
STANDARD_MODES = frozenset({"standard", "rawdeployment"})
_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def entry_name(version: str) -> str:
    """The canary entry's ``predictor.name`` for a model version (``v7``)."""
    return f"v{version}"


def _load(text: str) -> list[Any]:
    return list(YAML(typ="safe", pure=True).load_all(text))


def _isvc_index(docs: list[Any], name: str) -> int:
    for i, d in enumerate(docs):
        if isinstance(d, dict) and d.get("kind") == "InferenceService" and (d.get("metadata") or {}).get("name") == name:
            return i
    raise ManifestError(f"no InferenceService {name!r}")


def _root(text: str, filename: str, index: int) -> _Node:
    docs = [d for d in _compose(text, filename)]
    root = docs[index].root
    if root is None or root.node.kind != "map":
        raise ManifestError(f"{filename}: document {index + 1} is not a mapping")
    return root.node


def _child(node: _Node, key: str) -> tuple[_Node, _Node] | None:
    for k, v in node.pairs:
        if k.node.kind == "scalar" and k.node.value == key:
            return k.node, v.node
    return None


def _last_index(node: _Node) -> int:
    """End index of the last scalar under ``node`` (a block collection's own end may run on)."""
    if node.kind == "scalar":
        return node.end
    kids = [s.node for p in node.pairs for s in p] if node.kind == "map" else [s.node for s in node.items]
    return max([_last_index(k) for k in kids] or [node.start])


def _line_start(text: str, i: int) -> int:
    return text.rfind("\n", 0, i) + 1


def _line_end(text: str, i: int) -> int:
    j = text.find("\n", i)
    return len(text) if j < 0 else j + 1


def entries(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The ``spec.canary`` entries of a loaded InferenceService (empty when none)."""
    spec = doc.get("spec") or {}
    items = spec.get("canary") if isinstance(spec, Mapping) else None
    return [e for e in items or [] if isinstance(e, dict)]


def _entry_of(doc: Mapping[str, Any], name: str) -> int | None:
    for i, e in enumerate(entries(doc)):
        if (e.get("predictor") or {}).get("name") == name:
            return i
    return None


def _seq_indented(text: str) -> bool:
    """Whether the file indents block sequences under their key (``key:\\n  - a``) or not."""
    for m in re.finditer(r"(?m)^( *)[^\s#-][^\n]*:[ \t]*\n( *)- ", text):
        return len(m.group(2)) > len(m.group(1))
    return True


def _entry_block(doc: Mapping[str, Any], name: str, uri: str, percent: int, col: int, unit: int,
                 indented: bool, with_key: bool, nl: str) -> str:
    """The text of a new entry (and its ``canary:`` key), in the file's indentation."""
    model = ((doc.get("spec") or {}).get("predictor") or {}).get("model") or {}
    fmt = model.get("modelFormat") if isinstance(model.get("modelFormat"), dict) else None
    if not fmt or not fmt.get("name"):
        raise ManifestError("the primary predictor has no model.modelFormat.name to copy into the canary entry "
                            "(KServe Standard canary entries need model.modelFormat and model.name)")
    pad = " " * col
    dash = pad + (" " * unit if indented else "")
    inner = dash + "  "  # the item's keys line up after "- "
    lines = [f"{pad}canary:"] if with_key else []
    lines.append(f"{dash}- predictor:")
    lines.append(f"{inner}{' ' * unit}name: {name}")
    lines.append(f"{inner}{' ' * unit}model:")
    m = inner + " " * (2 * unit)
    lines.append(f"{m}modelFormat:")
    for k in ("name", "version"):
        if fmt.get(k) is not None:
            lines.append(f"{m}{' ' * unit}{k}: {_scalar(str(fmt[k]))}")
    lines.append(f"{m}name: {CONTAINER}")
    for k in ("protocolVersion", "runtime"):
        if isinstance(model.get(k), str):
            lines.append(f"{m}{k}: {_scalar(model[k])}")
    lines.append(f'{m}storageUri: "{uri}"')
    lines.append(f"{inner}trafficPercent: {percent}")
    return nl.join(lines) + nl


def _scalar(v: str) -> str:
    return v if re.fullmatch(r"[A-Za-z][A-Za-z0-9_.\-]*", v) and v.lower() not in (
        "yes", "no", "on", "off", "true", "false", "null", "y", "n") else '"' + v.replace('"', '\\"') + '"'


def _checked(old: str, new: str, index: int, expect: Any, filename: str, what: str) -> str:
    docs_old, docs_new = _load(old), _load(new)
    want = list(docs_old)
    want[index] = expect
    if docs_new != want:
        raise ManifestError(f"{filename}: {what} would change more than the canary entry; edit it by hand")
    return new


def set_entry(text: str, *, isvc: str, version: str, uri: str, percent: int, filename: str,
              first: bool = False) -> str:
    """The text with the canary entry of ``version`` at ``percent`` % (pure): created when
    missing (after the primary predictor, in the file's indentation), else its
    ``trafficPercent`` set (one line). Idempotent.

    Raises:
        Refused: ``first`` and another entry already takes traffic (a canary in flight).
        ManifestError: no primary ``model.modelFormat``, an entry name KServe would refuse, or
            an edit that would change anything else.
    """
    name = entry_name(version)
    if not _NAME.match(name):
        raise ManifestError(f"{filename}: canary entry name {name!r} is not a DNS label")
    docs = _load(text)
    i = _isvc_index(docs, isvc)
    doc = docs[i]
    if ((doc.get("spec") or {}).get("predictor") or {}).get("name") == name:
        raise ManifestError(f"{filename}: spec.predictor.name is {name!r}, the canary entry's name; rename one")
    if first:
        busy = [e for e in entries(doc) if (e.get("predictor") or {}).get("name") != name and e.get("trafficPercent")]
        if busy:
            other = (busy[0].get("predictor") or {}).get("name")
            raise Refused(f"{filename}: InferenceService/{isvc} already sends {busy[0].get('trafficPercent')} % to "
                          f"canary entry {other!r}: another canary is in flight; finish or roll it back first")
    at = _entry_of(doc, name)
    if at is not None:
        return set_value(text, f"spec.canary[{at}].trafficPercent", str(percent),
                         select=f"InferenceService/{isvc}", filename=filename).text
    expect = copy.deepcopy(doc)
    root = _root(text, filename, i)
    spec = _child(root, "spec")
    if spec is None or spec[1].kind != "map" or spec[1].flow:
        raise ManifestError(f"{filename}: InferenceService/{isvc} has no block spec: mapping")
    spec_node = spec[1]
    pred = _child(spec_node, "predictor")
    if pred is None:
        raise ManifestError(f"{filename}: InferenceService/{isvc} has no spec.predictor")
    col = pred[0].col
    unit = max(2, col - spec[0].col)
    nl = "\r\n" if "\r\n" in text else "\n"
    existing = _child(spec_node, "canary")
    if existing is not None and existing[1].kind == "seq" and existing[1].items and not existing[1].flow:
        at_end = _line_end(text, _last_index(existing[1]))
        item_col = existing[1].items[0].node.col - 2
        block = _entry_block(doc, name, uri, percent, col, unit, item_col > col, False, nl)
    elif existing is None:
        at_end = _line_end(text, _last_index(pred[1]))
        block = _entry_block(doc, name, uri, percent, col, unit, _seq_indented(text), True, nl)
    else:
        raise ManifestError(f"{filename}: spec.canary of InferenceService/{isvc} is not a block list; edit it by hand")
    new = text[:at_end] + ("" if text[:at_end].endswith("\n") or not at_end else nl) + block + text[at_end:]
    entry = _load(block if existing is None else "canary:\n" + block)[0]["canary"][0]
    expect.setdefault("spec", {}).setdefault("canary", []).append(entry)
    return _checked(text, new, i, expect, filename, "adding the canary entry")


def remove_entry(text: str, *, isvc: str, version: str, filename: str) -> str:
    """The text without the canary entry of ``version`` (and without ``canary:`` when it was
    the only one): the rollback, and the second half of a promotion. Idempotent."""
    docs = _load(text)
    i = _isvc_index(docs, isvc)
    doc = docs[i]
    at = _entry_of(doc, entry_name(version))
    if at is None:
        return text
    root = _root(text, filename, i)
    spec = _child(root, "spec")
    assert spec is not None
    key, seq = _child(spec[1], "canary")  # type: ignore[misc]
    if seq.flow:
        raise ManifestError(f"{filename}: spec.canary of InferenceService/{isvc} is a flow list; edit it by hand")
    item = seq.items[at].node
    if len(seq.items) == 1:
        start, end = _line_start(text, key.start), _line_end(text, _last_index(seq))
    else:
        start = _line_start(text, item.start)
        end = _line_end(text, _last_index(item))
    new = text[:start] + text[end:]
    expect = copy.deepcopy(doc)
    del expect["spec"]["canary"][at]
    if not expect["spec"]["canary"]:
        del expect["spec"]["canary"]
    return _checked(text, new, i, expect, filename, "removing the canary entry")


def promote_entry(text: str, *, isvc: str, version: str, uri: str, uri_path: str, filename: str) -> str:
    """The 100 % step (pure): the primary predictor's model becomes the canary's (``uri_path``
    set to ``uri``, one line) and the entry is removed. Idempotent."""
    new = set_value(text, uri_path, uri, select=f"InferenceService/{isvc}", filename=filename).text
    return remove_entry(new, isvc=isvc, version=version, filename=filename)
