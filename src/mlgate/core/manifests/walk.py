"""Finding a key path in composed documents (see :mod:`mlgate.core.manifests`, step 2).

A path is walked from a document's root; keys reached only through an alias or a merge key,
ambiguous selectors and documents are refused (:class:`_Refused`), and a missing key names the
deepest existing prefix (:class:`_Missing`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from mlgate.core.errors import ManifestError
from mlgate.core.keypath import Index, Key, Select, Step, format_path
from mlgate.core.manifests.nodes import _MERGE, _Doc, _Missing, _Node, _Refused, _Slot


@dataclass
class _Found:
    slot: _Slot  # the target (a scalar slot), or the parent mapping when ``create_key`` is set
    create_key: str | None
    notes: list[str]
    line: int = 0  # line of the key (or list item) that names the slot


def _describe(node: _Node) -> str:
    return {"map": "a mapping", "seq": "a list", "scalar": "a single value"}[node.kind]


def _where(steps: list[Step], i: int) -> str:
    return format_path(steps[:i]) or "the top level"


def _lookup_pair(node: _Node, name: str) -> tuple[_Slot, _Slot] | None:
    for k, v in node.pairs:
        if k.node.kind == "scalar" and k.node.tag != _MERGE and k.node.value == name:
            return k, v
    return None


def _lookup(node: _Node, name: str) -> _Slot | None:
    pair = _lookup_pair(node, name)
    return pair[1] if pair is not None else None


def _merge_sources(node: _Node) -> Iterator[tuple[_Slot, _Slot]]:
    """(merge key slot, source slot) for every ``<<`` source of a mapping, in order."""
    for k, v in node.pairs:
        if k.node.kind == "scalar" and k.node.tag == _MERGE:
            if v.node.kind == "seq":
                for item in v.node.items:
                    yield k, item
            else:
                yield k, v


def _lookup_merged(node: _Node, name: str) -> tuple[_Slot, _Slot] | None:
    """(merge key, merge source) through which ``node`` has ``name`` only by a merge key."""
    for mk, src in _merge_sources(node):
        if src.node.kind == "map" and _has_key_through_merges(src.node, name, set()):
            return mk, src
    return None


def _has_key_through_merges(node: _Node, name: str, seen: set[int]) -> bool:
    if id(node) in seen:  # nested and repeated merges: visit each mapping once
        return False
    seen.add(id(node))
    if _lookup(node, name) is not None:
        return True
    return any(
        src.node.kind == "map" and _has_key_through_merges(src.node, name, seen) for _mk, src in _merge_sources(node)
    )


def _effective_value(node: _Node, name: str) -> _Slot | None:
    """The value of ``name`` in ``node``, its own or merged (read only: list selectors)."""
    for _ in range(100):  # merge chains are short; a cyclic one ends here
        found = _lookup(node, name)
        if found is not None:
            return found
        via = _lookup_merged(node, name)
        if via is None:
            return None
        node = via[1].node
    return None


def _anchor_note(node: _Node, what: str) -> str:
    lines = ", ".join(str(n) for n in sorted(set(node.alias_lines)))
    return f"{what} is anchored as &{node.anchor} and reused through *{node.anchor} at line(s) {lines}"


def _walk(root: _Slot, steps: list[Step], create: bool) -> _Found:
    """Follow ``steps`` from ``root``; raise :class:`_Missing` or :class:`_Refused`."""
    cur = root
    at = root.line  # line that names ``cur``: its key's line, or the list item's line
    notes: list[str] = []
    for i, step in enumerate(steps):
        node = cur.node
        here = _where(steps, i)
        if node.anchor and node.alias_lines and i > 0:
            notes.append(
                _anchor_note(node, here)
                + "; those places see the new value too unless they override it (the path goes through the anchor's own definition)"
            )
        if isinstance(step, Key):
            found = _key_step(cur, step, i, here, at, create and i == len(steps) - 1)
            if found is None:
                return _Found(cur, step.name, notes, at)
            child, child_at = found
        elif isinstance(step, Index):
            child = _index_step(node, step, i, here, at)
            child_at = child.line
        else:
            child = _select_step(node, step, i, here, at)
            child_at = child.line
        if child.alias_line is not None:
            what = format_path(steps[: i + 1])
            raise _Refused(
                child.alias_line,
                f"{what} is an alias (*{child.node.anchor}) of the node anchored at line {child.node.line}; "
                f"editing it would change every user of &{child.node.anchor}. Edit the anchor's definition "
                "instead, or replace the alias with its own value",
            )
        cur, at = child, child_at
    return _Found(cur, None, notes, at)


def _key_step(cur: _Slot, step: Key, i: int, here: str, at: int, create: bool) -> tuple[_Slot, int] | None:
    """The value slot of key ``step`` in ``cur`` and its key's line; None: create the key there."""
    node = cur.node
    if node.kind != "map":
        raise _Missing(i, at, f"{here} is {_describe(node)}, not a mapping with key {step.name!r}")
    pair = _lookup_pair(node, step.name)
    if pair is not None:
        return pair[1], pair[0].line
    via = _lookup_merged(node, step.name)
    if via is not None:
        raise _merge_refusal(via, step, here)
    if create:
        if node.flow:
            raise _Refused(
                at,
                f"cannot create {step.name!r}: {here} is a flow mapping {{...}}; "
                "mlgate creates keys only in block mappings",
            )
        if cur.alias_line is not None:
            raise _Refused(
                at,
                f"cannot create {step.name!r}: {here} is an alias (*{node.anchor}) of the "
                f"mapping anchored at line {node.line}",
            )
        return None
    keys = [k.node.value for k, _ in node.pairs if k.node.kind == "scalar" and k.node.tag != _MERGE]
    shown = ", ".join(keys[:12]) + (", ..." if len(keys) > 12 else "")
    raise _Missing(
        i,
        at,
        f"no key {step.name!r} in {here} (deepest existing prefix: {here}; keys there: {shown or 'none'})",
    )


def _merge_refusal(via: tuple[_Slot, _Slot], step: Key, here: str) -> _Refused:
    """Why key ``step`` of ``here``, which only a merge key (``<<``) provides, is not edited."""
    mk, src = via
    anchor = src.node.anchor
    if src.alias_line is not None and anchor:
        users = ", ".join(str(n) for n in sorted(set(src.node.alias_lines)))
        origin = (
            f"the merge '<<: *{anchor}' (anchor &{anchor} at line {src.node.line}, "
            f"merged or aliased at line(s) {users}); editing it would change every mapping "
            "that shares that anchor"
        )
    else:
        origin = f"the merge key '<<' at line {mk.line}; mlgate does not edit through merge keys"
    return _Refused(
        mk.line,
        f"{step.name!r} in {here} comes from {origin}. Edit the merged mapping's own "
        f"definition, or write an explicit {step.name!r} under {here} yourself",
    )


def _index_step(node: _Node, step: Index, i: int, here: str, at: int) -> _Slot:
    """Item ``[n]`` of the list ``node``."""
    if node.kind != "seq":
        raise _Missing(i, at, f"{here} is {_describe(node)}, not a list; [{step.n}] needs a list")
    if step.n >= len(node.items):
        raise _Missing(
            i,
            at,
            f"index [{step.n}] is out of range: {here} has {len(node.items)} item(s) "
            f"(deepest existing prefix: {here})",
        )
    return node.items[step.n]


def _select_step(node: _Node, step: Select, i: int, here: str, at: int) -> _Slot:
    """The one item of the list ``node`` that ``[key=value]`` selects."""
    if node.kind != "seq":
        raise _Missing(i, at, f"{here} is {_describe(node)}, not a list; {step} needs a list")
    matches: list[_Slot] = []
    present: list[str] = []
    for item in node.items:
        if item.node.kind != "map":
            continue
        kv = _effective_value(item.node, step.key)
        if kv is None or kv.node.kind != "scalar":
            continue
        present.append(kv.node.value)
        if kv.node.value == step.value:
            matches.append(item)
    if len(matches) != 1:
        if not matches:
            shown = ", ".join(present[:12]) + (", ..." if len(present) > 12 else "")
            raise _Missing(
                i,
                at,
                f"{step} matches no item of {here} (deepest existing prefix: {here}; "
                f"{step.key} values there: {shown or 'none'})",
            )
        lines = ", ".join(str(m.line) for m in matches)
        raise _Refused(
            at,
            f"{step} matches {len(matches)} items of {here} (lines {lines}); it must match exactly one",
        )
    return matches[0]


def _docs_label(doc: _Doc) -> str:
    root = doc.root.node if doc.root else None
    if root is None or root.kind != "map":
        return f"document {doc.index + 1} (line {doc.line})"
    kind = _lookup(root, "kind")
    meta = _lookup(root, "metadata")
    name = _lookup(meta.node, "name") if meta is not None and meta.node.kind == "map" else None
    k = kind.node.value if kind is not None and kind.node.kind == "scalar" else "?"
    n = name.node.value if name is not None and name.node.kind == "scalar" else "?"
    return f"{k}/{n} (line {doc.line})"


def _select_docs(docs: list[_Doc], kind: str, name: str | None, filename: str, path: str) -> _Doc:
    """The one document whose ``kind`` is ``kind`` and (when given) ``metadata.name`` is ``name``."""
    found: list[_Doc] = []
    for d in docs:
        root = d.root.node if d.root else None
        if root is None or root.kind != "map":
            continue
        k = _lookup(root, "kind")
        if k is None or k.node.kind != "scalar" or k.node.value != kind:
            continue
        if name is not None:
            meta = _lookup(root, "metadata")
            n = _lookup(meta.node, "name") if meta is not None and meta.node.kind == "map" else None
            if n is None or n.node.kind != "scalar" or n.node.value != name:
                continue
        found.append(d)
    want = f"{kind}/{name}" if name is not None else f"kind {kind}"
    if len(found) == 1:
        return found[0]
    listing = ", ".join(_docs_label(d) for d in docs if d.root is not None) or "none"
    if not found:
        raise ManifestError(f"{filename}: {path}: no document matches {want} (documents: {listing})")
    raise ManifestError(
        f"{filename}: {path}: {len(found)} documents match {want} ({', '.join(_docs_label(d) for d in found)}); "
        "it must match exactly one"
    )


# --------------------------------------------------------------------------- rendering

def _find(
    docs: list[_Doc],
    steps: list[Step],
    path: str,
    select: tuple[str, str | None] | None,
    create: bool,
    filename: str,
) -> _Found:
    if select is not None:
        candidates = [_select_docs(docs, select[0], select[1], filename, path)]
    else:
        candidates = [d for d in docs if d.root is not None]
    if not candidates:
        raise ManifestError(f"{filename}: {path}: the file holds no YAML document")
    results: list[tuple[_Doc, _Found | _Refused]] = []
    missing: list[_Missing] = []
    for d in candidates:
        assert d.root is not None
        try:
            results.append((d, _walk(d.root, steps, create)))
        except _Refused as r:
            results.append((d, r))
        except _Missing as m:
            missing.append(m)
    if len(results) > 1:
        # a path resolvable in several documents: creations do not count when one really has it
        real = [(d, r) for d, r in results if not (isinstance(r, _Found) and r.create_key is not None)]
        if len(real) == 1:
            results = real
    if len(results) > 1:
        listing = ", ".join(_docs_label(d) for d, _ in results)
        raise ManifestError(
            f"{filename}: {path} exists in {len(results)} documents ({listing}); choose one with select KIND/NAME"
        )
    if not results:
        m = max(missing, key=lambda x: x.depth)
        raise ManifestError(f"{filename}:{m.line}: {path}: {m.message}")
    _, r = results[0]
    if isinstance(r, _Refused):
        raise ManifestError(f"{filename}:{r.line}: {path}: {r.message}")
    return r
