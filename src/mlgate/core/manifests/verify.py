"""The node-by-node check of an edit (see :mod:`mlgate.core.manifests`, step 4): the re-parsed
documents equal the original ones except the target, which loads as the intended value.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from mlgate.core.errors import ManifestError
from mlgate.core.manifests.nodes import _STR, _Doc, _Node, _Slot

_Fail = Callable[[int, str], ManifestError]
_Pairs = list[tuple[_Slot | None, _Slot | None]]


def _fail(filename: str, path: str, line: int, what: str) -> ManifestError:
    return ManifestError(
        f"{filename}:{line}: {path}: the edit would also change {what}; nothing was written "
        "(this is a bug in mlgate, please report it with the file)"
    )


def _verify(
    before: list[_Doc],
    after: list[_Doc],
    target: _Node,
    expect: tuple[str, str],
    filename: str,
    path: str,
    create_key: str | None = None,
) -> _Node:
    """Check that ``after`` equals ``before`` except the target; return the target's new node.

    For an edit, ``target`` is the old scalar and ``expect`` its new (tag, value). For a created
    key, ``target`` is the parent mapping, which must have gained exactly one last pair
    ``create_key: value``.
    """
    fail: _Fail = partial(_fail, filename, path)
    if len(before) != len(after):
        raise fail(1, f"the number of documents ({len(before)} -> {len(after)})")
    new_node: _Node | None = None
    stack: _Pairs = [(b.root, a.root) for b, a in zip(before, after)]
    seen: set[tuple[int, int]] = set()
    while stack:
        bs, as_ = stack.pop()
        if bs is None or as_ is None:
            if bs is not as_:
                raise fail((bs or as_).line if (bs or as_) else 1, "an empty document")  # type: ignore[union-attr]
            continue
        if (bs.alias_line is None) != (as_.alias_line is None):
            raise fail(as_.line, f"an alias at line {as_.line}")
        b, a = bs.node, as_.node
        key = (id(b), id(a))
        if key in seen:
            continue
        seen.add(key)
        if b is target and create_key is None:
            if a.kind != "scalar" or (a.tag, a.value) != expect or a.anchor != b.anchor:
                raise fail(a.line, f"the target, which would load as {a.value!r} ({a.tag})")
            new_node = a
            continue
        children, created = _matched_children(b, a, fail, expect, create_key if b is target else None)
        stack.extend(children)
        if created is not None:
            new_node = created
    if new_node is None:
        raise fail(target.line, "nothing (the target was not found again)")
    return new_node


def _matched_children(
    b: _Node, a: _Node, fail: _Fail, expect: tuple[str, str], create_key: str | None
) -> tuple[_Pairs, _Node | None]:
    """Check that nodes ``b`` (before) and ``a`` (after) agree; return their children to compare
    next, and the created value node when ``create_key`` (``b`` is the created key's parent) is set."""
    if b.kind != a.kind or b.tag != a.tag or b.anchor != a.anchor or b.explicit_tag != a.explicit_tag:
        raise fail(a.line, f"the node at line {a.line}")
    if b.kind == "scalar":
        if b.value != a.value or b.style != a.style:
            raise fail(a.line, f"the value at line {a.line}")
        return [], None
    if b.flow != a.flow:
        raise fail(a.line, f"the style of the collection at line {a.line}")
    if b.kind == "seq":
        if len(b.items) != len(a.items):
            raise fail(a.line, f"the list at line {a.line}")
        return list(zip(b.items, a.items)), None
    bp = b.pairs
    ap = a.pairs
    created = None
    if create_key is not None:
        if len(ap) != len(bp) + 1:
            raise fail(a.line, f"the mapping at line {a.line}")
        created = _created_value(ap[-1], fail, expect, create_key)
        ap = ap[: len(bp)]
    if len(bp) != len(ap):
        raise fail(a.line, f"the mapping at line {a.line}")
    children: _Pairs = []
    for (bk, bv), (ak, av) in zip(bp, ap):
        children.append((bk, ak))
        children.append((bv, av))
    return children, created


def _created_value(pair: tuple[_Slot, _Slot], fail: _Fail, expect: tuple[str, str], create_key: str) -> _Node:
    """The value node of the created last pair ``create_key: value``, checked against ``expect``."""
    k, v = pair
    if (
        k.alias_line is not None
        or v.alias_line is not None
        or k.node.kind != "scalar"
        or k.node.value != create_key
        or k.node.tag != _STR
        or v.node.kind != "scalar"
        or (v.node.tag, v.node.value) != expect
    ):
        raise fail(k.line, f"the created key at line {k.line}")
    return v.node
