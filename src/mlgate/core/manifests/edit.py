"""Editing: one scalar set (:func:`set_value`) or created, and a configured GitOps target applied
(:func:`target_edit`); see :mod:`mlgate.core.manifests` for how an edit is made and checked.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mlgate.core.errors import ManifestError, UsageError
from mlgate.core.keypath import parse_path
from mlgate.core.manifests.nodes import _NULL, _compose, _Doc, _Node, _Refused, _reparse, _Slot
from mlgate.core.manifests.render import _construct, _json_quoted, _render, _same_value, _string_scalar
from mlgate.core.manifests.spans import (
    _check_span,
    _content_end,
    _is_empty,
    _line_of,
    _newline_of,
    _token_start,
)
from mlgate.core.manifests.verify import _verify
from mlgate.core.manifests.walk import _anchor_note, _describe, _find, _Found

if TYPE_CHECKING:  # pragma: no cover - annotation only: `mlgate manifest set` does not import pydantic
    from mlgate.core.config import Target


@dataclass(frozen=True)
class Edit:
    """The outcome of one scalar edit.

    Attributes:
        text: the whole new document text (identical to the input when ``changed`` is False).
        changed: False when the value was already set.
        line: 1-based line of the edited (or created) scalar.
        path: the key path edited, as given.
        old: the previous value as YAML loads it (None when the key was created).
        new: the new value as YAML loads it (str, int, float, bool, ...).
        notes: human-readable remarks, e.g. other places that share the edited node
            through an anchor (empty for an ordinary edit).
    """

    text: str
    changed: bool
    line: int
    path: str
    old: object
    new: object
    notes: tuple[str, ...] = field(default=())


def _check_value(value: str, filename: str, path: str, what: str = "the new value") -> None:
    """Refuse a new value (or key path) that is not valid Unicode text (no YAML reader accepts it).

    A lone surrogate (U+D800..U+DFFF) is what Python makes of argument bytes that are not
    UTF-8 (``$'caf\\xe9'`` in a Latin-1 shell); YAML 1.2 section 5.1 excludes surrogates from
    the printable set and ``\\udce9`` is rejected by libyaml, go-yaml and kubectl.

    Raises:
        ManifestError: the text holds a surrogate code point.
    """
    for i, ch in enumerate(value):
        if 0xD800 <= ord(ch) <= 0xDFFF:
            shown = path.encode("utf-8", "backslashreplace").decode("ascii", "backslashreplace")
            raise ManifestError(
                f"{filename}: {shown}: {what} is not valid Unicode text (character {i + 1} is "
                f"U+{ord(ch):04X}, from bytes that are not UTF-8); nothing was written. Pass it as UTF-8"
            )


def _is_json_doc(doc: _Doc | None, filename: str) -> bool:
    """Whether a document is JSON: the file ends in ``.json``, or the root is a flow mapping or
    flow sequence in which every mapping key is double-quoted (``{"a": {"b": 1}}``)."""
    if filename.lower().endswith(".json"):
        return True
    if doc is None or doc.root is None or doc.root.node.kind == "scalar" or not doc.root.node.flow:
        return False
    stack = [doc.root]
    while stack:
        slot = stack.pop()
        if slot.alias_line is not None:
            return False
        n = slot.node
        if n.kind == "map":
            for k, v in n.pairs:
                if k.alias_line is not None or k.node.kind != "scalar" or k.node.style != '"':
                    return False
                stack.append(v)
        elif n.kind == "seq":
            stack.extend(n.items)
    return True


def _doc_of(docs: list[_Doc], node: _Node) -> _Doc | None:
    return docs[node.doc] if 0 <= node.doc < len(docs) else None


def _edit_docs(
    text: str,
    docs: list[_Doc],
    path: str,
    value: str,
    select: tuple[str, str | None] | None,
    create: bool,
    filename: str,
) -> Edit:
    _check_value(path, filename, path, "the key path")
    _check_value(value, filename, path)
    steps = parse_path(path)
    found = _find(docs, steps, path, select, create, filename)
    if found.create_key is not None:
        return _create_key(text, docs, found, path, value, filename)
    return _replace_scalar(text, docs, found, path, value, filename)


def _create_key(text: str, docs: list[_Doc], found: _Found, path: str, value: str, filename: str) -> Edit:
    """Append ``key: value`` (``found.create_key``) at the end of the block mapping ``found.slot``."""
    key = found.create_key
    assert key is not None
    notes = tuple(found.notes)
    parent = found.slot.node
    if not parent.pairs:
        raise ManifestError(f"{filename}:{parent.line}: {path}: cannot create a key in an empty mapping")
    json_doc = _is_json_doc(_doc_of(docs, parent), filename)
    first_key = parent.pairs[0][0]
    indent = first_key.node.col if first_key.alias_line is None else parent.col
    rendered, tag = _render(None, value, json_doc)
    key_text = _json_quoted(key) if json_doc else _string_scalar(key, False)
    nl = _newline_of(text)
    pos = _content_end(text, found.slot)
    if pos > 0 and text[pos - 1] in "\r\n":
        insert_at, piece = pos, " " * indent + f"{key_text}: {rendered}" + nl
    else:
        eol = text.find("\n", pos)
        if eol < 0:
            insert_at, piece = len(text), nl + " " * indent + f"{key_text}: {rendered}"
        else:
            insert_at, piece = eol + 1, " " * indent + f"{key_text}: {rendered}" + nl
    new_text = text[:insert_at] + piece + text[insert_at:]
    at = insert_at + piece.index(f"{key_text}: {rendered}") + len(key_text) + 2
    after = _reparse(new_text, filename, path)
    new_node = _verify(docs, after, parent, (tag, value), filename, path, create_key=key)
    _check_span(
        text, new_text, insert_at, insert_at, insert_at + len(piece), (at, at + len(rendered)),
        filename, path, new_node.line,
    )
    return Edit(new_text, True, new_node.line, path, None, _construct(new_node.tag, new_node.value), notes)


def _replace_scalar(text: str, docs: list[_Doc], found: _Found, path: str, value: str, filename: str) -> Edit:
    """Write ``value`` over the scalar ``found.slot`` in the style of the old one."""
    notes = tuple(found.notes)
    slot = found.slot
    node = slot.node
    if node.kind != "scalar":
        raise ManifestError(
            f"{filename}:{found.line}: {path}: holds {_describe(node)}, not a single value; mlgate edits scalars only"
        )
    if node.style in ("|", ">"):
        raise ManifestError(
            f"{filename}:{node.line}: {path}: the value is a block scalar ('{node.style}'); "
            "mlgate edits single-line values only"
        )
    if node.anchor and node.alias_lines:
        raise ManifestError(
            f"{filename}:{node.line}: {path}: "
            + _anchor_note(node, "the value")
            + "; changing it would change them too. Replace the aliases with their own values first"
        )
    old = None if node.tag == _NULL else _construct(node.tag, node.value)
    json_doc = _is_json_doc(_doc_of(docs, node), filename)
    tok = _token_start(text, node)
    line = _line_of(text, tok)
    try:
        rendered, tag = _render(node, value, json_doc)
    except _Refused as r:
        raise ManifestError(f"{filename}:{line}: {path}: {r.message}") from None
    new_value = _construct(tag, value)
    if _same_value(old if node.tag != _NULL else None, new_value) and (node.tag == tag):
        return Edit(text, False, line, path, old, new_value, notes)

    if node.value == "" and node.style is None and (node.anchor or node.explicit_tag):
        raise ManifestError(
            f"{filename}:{node.line}: {path}: the value is empty but carries an anchor or tag; edit it by hand"
        )
    if _is_empty(slot):
        # an empty value (``key:``): the parser puts its mark at the next token; write after the ':'
        at = _empty_value_at(text, docs, slot, filename, path)
        new_text = text[:at] + " " + rendered + text[at:]
        line = _line_of(text, at)
        start, old_end, new_end = at, at, at + 1 + len(rendered)
    else:
        new_text = text[:tok] + rendered + text[node.end :]
        start, old_end, new_end = tok, node.end, tok + len(rendered)
    after = _reparse(new_text, filename, path)
    new_node = _verify(docs, after, node, (tag, value), filename, path)
    _check_span(text, new_text, start, old_end, new_end, (new_end - len(rendered), new_end), filename, path, line)
    return Edit(new_text, True, line, path, old, _construct(new_node.tag, new_node.value), notes)


def _empty_value_at(text: str, docs: list[_Doc], slot: _Slot, filename: str, path: str) -> int:
    """Where to write a value for ``key:`` with nothing after it: right after the ':'."""
    key = _find_parent_pair(docs, slot)
    if key is None:
        raise ManifestError(f"{filename}:{slot.line}: {path}: cannot place a value in this empty list item")
    i = key.alias_end if key.alias_line is not None else key.node.end
    while i < len(text) and text[i] in " \t":
        i += 1
    if i >= len(text) or text[i] != ":":
        raise ManifestError(f"{filename}:{key.line}: {path}: cannot find the ':' after the key; edit it by hand")
    return i + 1


def _find_parent_pair(docs: list[_Doc], slot: _Slot) -> _Slot | None:
    stack = [d.root for d in docs if d.root is not None]
    seen: set[int] = set()
    while stack:
        s = stack.pop()
        n = s.node
        if id(n) in seen:
            continue
        seen.add(id(n))
        if n.kind == "map":
            for k, v in n.pairs:
                if v is slot:
                    return k
                stack.append(k)
                stack.append(v)
        elif n.kind == "seq":
            stack.extend(n.items)
    return None


def _parse_select(select: str | None) -> tuple[str, str | None] | None:
    if select is None:
        return None
    kind, sep, name = select.partition("/")
    if not sep or not kind.strip() or not name.strip():
        raise UsageError(f"invalid select {select!r}: expected KIND/NAME, e.g. InferenceService/my-model")
    return kind.strip(), name.strip()


def set_value(
    text: str,
    path: str,
    value: str,
    *,
    select: str | None = None,
    create: bool = False,
    filename: str = "<manifest>",
) -> Edit:
    """Set the scalar at ``path`` to ``value`` with a minimal edit of ``text``.

    Args:
        text: the manifest's full text (any line ends; a missing final newline is kept).
        path: key path, e.g. ``spec.predictor.model.storageUri``, ``images[name=app].newTag``,
            ``spec.http[0].route[1].weight`` (see :func:`parse_path`).
        value: the new value as text; its YAML type follows the old node (see module docs).
        select: ``KIND/NAME`` choosing the document by ``kind`` and ``metadata.name`` in a
            multi-document file. Without it the path must exist in exactly one document.
        create: when the last key of ``path`` is missing, append ``key: value`` at the end of
            its parent block mapping (the parent itself must exist).
        filename: used in messages; a name ending in ``.json`` also makes the document JSON
            (new strings are written as JSON strings).

    Returns:
        An :class:`Edit`; ``changed`` is False (and ``text`` unchanged) when the value is
        already set.

    Raises:
        ManifestError: ``file:line: path: ...`` for YAML errors, duplicate keys, a missing path
            (naming the deepest existing prefix), ambiguous documents or selectors, block
            scalars, aliases, merge keys, a value that is not Unicode text or that an explicit
            tag cannot hold, or a result that fails the re-parse or text-level check.
        UsageError: a malformed ``path`` or ``select``.
    """
    sel = _parse_select(select)
    docs = _compose(text, filename, path)
    return _edit_docs(text, docs, path, value, sel, create, filename)


# --------------------------------------------------------------------------- templates and presets


def render_value(template: str, values: Mapping[str, str]) -> str:
    """Fill ``{name}`` placeholders of a target's value template (``{{``/``}}`` are literal braces).

    Args:
        template: e.g. ``"{model_uri}"`` or ``"registry.example/{model}:{version}"``.
        values: placeholder name -> text (``model_uri``, ``storage_uri``, ``version``, ``model``,
            ``run_id``).

    Raises:
        UsageError: an unknown placeholder (the message names it and the known ones), a format
            spec or conversion, or unbalanced braces.
    """
    known = ", ".join("{" + k + "}" for k in sorted(values)) or "none"
    out: list[str] = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as e:
        raise UsageError(f"invalid value template {template!r}: {e} (use {{{{ and }}}} for literal braces)") from None
    for literal, name, spec, conv in parsed:
        out.append(literal)
        if name is None:
            continue
        if name not in values:
            raise UsageError(f"unknown placeholder {{{name}}} in value template {template!r}; known: {known}")
        if spec or conv:
            raise UsageError(f"placeholder {{{name}}} in {template!r}: format specs and conversions are not supported")
        out.append(str(values[name]))
    return "".join(out)


def target_edit(text: str, target: Target, values: Mapping[str, str], filename: str) -> Edit:
    """Apply a configured GitOps target (``.mlgate.yml`` ``environments[].gitops.target``).

    * ``kserve``: the InferenceService document (``InferenceService/<name>`` when ``name`` is
      set, else the file's only InferenceService), path ``spec.predictor.model.storageUri``.
    * ``helm``: the dotted ``key`` (``create`` as configured).
    * ``kustomize-image``: ``images[name=<image>].<field>``; the entry is chosen by name, never
      by index; the field (``newTag``, ``newName``, ``digest``) is created in that entry when
      missing, as ``kustomize edit set image`` does.
    * ``keypath``: ``path``, ``select`` and ``create`` as configured.

    The value is ``render_value(target.value, values)``.

    Raises:
        ManifestError, UsageError: as :func:`set_value` and :func:`render_value`.
    """
    value = render_value(target.value, values)
    kind = target.kind
    if kind == "kserve":
        docs = _compose(text, filename, "spec.predictor.model.storageUri")
        name = getattr(target, "name", None)
        return _edit_docs(
            text, docs, "spec.predictor.model.storageUri", value, ("InferenceService", name), False, filename
        )
    if kind == "helm":
        return set_value(text, target.key, value, create=target.create, filename=filename)  # type: ignore[union-attr]
    if kind == "kustomize-image":
        image = target.image  # type: ignore[union-attr]
        if "]" in image:
            raise UsageError(f"image name {image!r} contains ']'")
        path = f"images[name={image}].{target.field}"  # type: ignore[union-attr]
        return set_value(text, path, value, create=True, filename=filename)
    if kind == "keypath":
        return set_value(
            text,
            target.path,  # type: ignore[union-attr]
            value,
            select=target.select,  # type: ignore[union-attr]
            create=target.create,  # type: ignore[union-attr]
            filename=filename,
        )
    raise UsageError(f"unknown target kind {kind!r}")
