"""Minimal, format-preserving edits of YAML manifests (pure core: text in, text out).

How an edit is made (see ``notes/facts.md``: a ruamel.yaml load-and-dump reformats files):

1. The text is parsed with ruamel.yaml's parser into events, and a small composer in this
   module builds a node tree that keeps, for every node, its exact character span
   (``start_mark``/``end_mark``), its quoting style, its anchor, and whether it was written
   in place or reached through an alias (``*name``). Document boundaries come from the
   parser, so a ``---`` line inside a block scalar is never mistaken for a separator.
2. The key path is walked in that tree (``a.b[0].c[name=x].d``; see :func:`parse_path`).
3. The new scalar is rendered in the style of the old one and written into the ORIGINAL
   text at the old scalar's span. Nothing else is re-emitted: comments, indentation, key
   order, quoting elsewhere, flow/block style, anchors, ``---`` markers, CRLF line ends
   and a missing final newline stay byte-identical.
   Only the scalar token itself is replaced: an ``&anchor``, a ``!tag``, and the line breaks
   and comments between them and the value (``key: &a # note`` + value on the next line) stay.
4. The result is parsed again and every document is compared, node by node (tag, value,
   style, anchor, alias), with the original; only the target may differ, and it must load
   as the intended value. Then a text-level check: every character before and after the
   replaced span is unchanged, the replaced span was exactly one scalar token of the original
   and the written text is exactly one scalar token of the result (ruamel.yaml's scanner).
   Any other difference raises :class:`~mlgate.core.errors.ManifestError` and nothing is returned
   to be written.

Scalar typing (the new value is always handed in as text):

* a quoted string stays quoted in the same quote style (a single-quoted one switches to
  double quotes only when the value holds a line break or a non-printable character);
* a plain string stays plain when the new value still loads as a string under YAML 1.2
  *and* YAML 1.1 (Kubernetes' sigs.k8s.io/yaml reads ``no``/``on``/``0777`` the 1.1 way)
  and is a valid plain scalar in its context (flow or block); otherwise it is double quoted
  (single quoted when that avoids escapes);
* an int/float node with a decimal number as the new value stays a plain number; a bool,
  null or timestamp node stays plain when the new value loads with the same type; any
  other new value becomes a string;
* an explicitly tagged node keeps its tag; a value the tag cannot hold (``!!int x``,
  ``!!timestamp garbage``: ruamel.yaml's or PyYAML's safe loader fails on it) is refused;
* in a JSON document (the file name ends in ``.json``, or the document's root is a flow
  mapping/sequence whose mapping keys are all double-quoted) every new scalar is valid JSON:
  strings are written as JSON strings (``\\uXXXX`` for characters YAML needs escaped), a
  number replacing a number stays a number when it is a JSON number, ``true``/``false``/``null``
  stay bare only over a node of the same type;
* a value that is not Unicode text (lone surrogates, as Python decodes a non-UTF-8 argv) is
  refused; characters YAML cannot hold unescaped are written escaped in double quotes;
* block scalars (``|``, ``>``) and aliases (``*name``) are refused.

Anchors, aliases and merge keys (decided here; tested in ``tests/core/test_manifests.py``):

* A path that goes *through an alias* (``canary: *d`` then ``canary.image.tag``) or takes a
  key that a mapping only has *through a merge key* (``canary: {<<: *d}``) is refused,
  naming the alias or merge and the anchor's line: the value lives in the anchored node and
  is shared, so changing it there would change every other user. No override is written
  (a merge is shallow, so an override of ``image`` would have to copy all of ``image``).
* The target scalar itself carrying an anchor that aliases use (``tag: &t v1`` with
  ``other: *t``) is refused for the same reason.
* A path that goes through an anchor's own *definition* (``defaults.image.tag`` where
  ``defaults: &d ...`` is merged elsewhere) is allowed: the user named the shared
  definition. :attr:`Edit.notes` then lists the lines of the aliases that see the change.
* Anchors, aliases and merge keys are never rewritten.

Errors raise :class:`mlgate.core.errors.ManifestError` with a message that starts with
``file:line:`` (or ``file:`` when no single line applies) and names the key path.
"""

from __future__ import annotations

import bisect
import re
import string
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mlgate.core.errors import ManifestError, UsageError

if TYPE_CHECKING:  # pragma: no cover
    from mlgate.core.config import Target

__all__ = ["Edit", "Key", "Index", "Select", "parse_path", "set_value", "render_value", "target_edit"]

_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_BOOL = "tag:yaml.org,2002:bool"
_NULL = "tag:yaml.org,2002:null"
_MERGE = "tag:yaml.org,2002:merge"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"

_DECIMAL_INT = re.compile(r"[-+]?(?:0|[1-9][0-9]*)\Z")
# no exponent: YAML 1.1 readers (PyYAML, go-yaml v2) disagree on "2.5e3" (a string to PyYAML)
_DECIMAL_FLOAT = re.compile(r"[-+]?(?:[0-9]+\.[0-9]*|\.[0-9]+)\Z")


# --------------------------------------------------------------------------- result


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


# --------------------------------------------------------------------------- key paths


@dataclass(frozen=True)
class Key:
    """A mapping key step (``spec``)."""

    name: str

    def __str__(self) -> str:
        return self.name.replace("\\", "\\\\").replace(".", "\\.").replace("[", "\\[")


@dataclass(frozen=True)
class Index:
    """A list index step (``[0]``)."""

    n: int

    def __str__(self) -> str:
        return f"[{self.n}]"


@dataclass(frozen=True)
class Select:
    """A list selector step (``[name=server]``): the one item whose ``key`` equals ``value``."""

    key: str
    value: str

    def __str__(self) -> str:
        return f"[{self.key}={self.value}]"


Step = Key | Index | Select


def parse_path(path: str) -> list[Step]:
    """Split a key path into steps.

    Syntax: keys separated by ``.``; ``[N]`` indexes a list (N >= 0); ``[key=value]`` picks the
    one list item (a mapping) whose ``key`` equals ``value`` (the value may hold ``.``, ``/``
    and ``:``, e.g. ``images[name=ghcr.io/org/app].newTag``). A backslash escapes the next
    character in a key, as in Helm's ``--set`` (``annotations.prometheus\\.io/scrape``).

    Raises:
        UsageError: for an empty or malformed path.
    """
    if not path or not path.strip():
        raise UsageError("empty key path")
    steps: list[Step] = []
    i, n = 0, len(path)
    expect_key = True  # at the start or after a '.'
    while i < n:
        ch = path[i]
        if ch == "[":
            close = path.find("]", i)
            if close < 0:
                raise UsageError(f"invalid key path {path!r}: '[' at position {i + 1} is not closed")
            inner = path[i + 1 : close]
            if re.fullmatch(r"[0-9]+", inner):
                steps.append(Index(int(inner)))
            elif "=" in inner and inner.index("=") > 0:
                k, v = inner.split("=", 1)
                steps.append(Select(k.strip(), v.strip()))
            else:
                raise UsageError(
                    f"invalid key path {path!r}: [{inner}] is neither a list index [N] nor a selector [key=value]"
                )
            i = close + 1
            expect_key = False
            if i < n and path[i] not in ".[":
                raise UsageError(f"invalid key path {path!r}: expected '.' or '[' after ']' at position {i + 1}")
            if i < n and path[i] == ".":
                i += 1
                expect_key = True
                if i == n:
                    raise UsageError(f"invalid key path {path!r}: ends with '.'")
            continue
        if not expect_key:
            raise UsageError(f"invalid key path {path!r} at position {i + 1}")
        buf: list[str] = []
        while i < n and path[i] not in ".[":
            if path[i] == "\\" and i + 1 < n:
                buf.append(path[i + 1])
                i += 2
                continue
            buf.append(path[i])
            i += 1
        name = "".join(buf)
        if not name:
            raise UsageError(f"invalid key path {path!r}: empty key at position {i + 1}")
        steps.append(Key(name))
        expect_key = False
        if i < n and path[i] == ".":
            i += 1
            expect_key = True
            if i == n:
                raise UsageError(f"invalid key path {path!r}: ends with '.'")
    return steps


def _fmt_path(steps: list[Step]) -> str:
    out = ""
    for s in steps:
        if isinstance(s, Key):
            out += ("." if out else "") + str(s)
        else:
            out += str(s)
    return out


# --------------------------------------------------------------------------- node tree


@dataclass(eq=False)
class _Node:
    kind: str  # "scalar" | "map" | "seq"
    tag: str
    start: int  # character index of the node, its properties (&anchor !tag) included
    end: int
    line: int  # 1-based line of ``start``
    col: int  # 0-based column of ``start``
    anchor: str | None = None
    explicit_tag: bool = False
    style: str | None = None  # scalars: None (plain), "'", '"', "|", ">"
    value: str = ""
    flow: bool = False  # collections written in flow style ({...} / [...])
    in_flow: bool = False  # inside a flow collection
    pairs: list[tuple[_Slot, _Slot]] = field(default_factory=list)
    items: list[_Slot] = field(default_factory=list)
    alias_lines: list[int] = field(default_factory=list)  # where *anchor reuses this node
    doc: int = 0


@dataclass(eq=False)
class _Slot:
    """A child position: the node, and where the alias sits when it is reached through ``*name``."""

    node: _Node
    alias_line: int | None = None
    alias_start: int = -1
    alias_end: int = -1

    @property
    def line(self) -> int:
        return self.alias_line if self.alias_line is not None else self.node.line


@dataclass(eq=False)
class _Doc:
    root: _Slot | None
    index: int
    line: int  # 1-based line where the document starts (its '---' or first content)


_RESOLVERS: dict[tuple[int, int], Any] = {}


def _resolver(version: tuple[int, int]) -> Any:
    r = _RESOLVERS.get(version)
    if r is None:
        from ruamel.yaml.resolver import VersionedResolver

        r = _RESOLVERS[version] = VersionedResolver(version=version)
    return r


def _resolve_plain(value: str, version: tuple[int, int] = (1, 2)) -> str:
    """The tag YAML ``version`` gives an untagged plain scalar ``value``."""
    from ruamel.yaml.nodes import ScalarNode

    return str(_resolver(version).resolve(ScalarNode, value, (True, False)))


def _compose(text: str, filename: str, path: str = "") -> list[_Doc]:
    """Parse ``text`` into documents of :class:`_Node` trees with exact spans.

    ``path`` (the key path being edited) is named in error messages.

    Raises:
        ManifestError: YAML syntax errors, undefined aliases, duplicate keys (``file:line: path:``).
    """
    what = f" {path}:" if path else ""
    from ruamel.yaml import YAML
    from ruamel.yaml import events as ev
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    yaml = YAML(typ="safe", pure=True)
    newlines = [m.start() for m in re.finditer("\n", text)]

    def line_col(index: int) -> tuple[int, int]:
        # lines as git and editors count them ("\n"), not as the YAML reader does (which also
        # breaks at U+2028, U+0085 and a lone "\r")
        k = bisect.bisect_left(newlines, index)
        return k + 1, index - (newlines[k - 1] + 1 if k > 0 else 0)

    docs: list[_Doc] = []
    anchors: dict[str, _Node] = {}
    stack: list[tuple[_Node, list[_Slot]]] = []  # open collections and their collected children
    version: tuple[int, int] = (1, 2)
    doc_root: _Slot | None = None
    doc_line = 1

    def add(slot: _Slot) -> None:
        nonlocal doc_root
        if stack:
            stack[-1][1].append(slot)
        else:
            doc_root = slot

    try:
        for e in yaml.parse(text):
            if isinstance(e, ev.DocumentStartEvent):
                version = tuple(e.version) if getattr(e, "version", None) else (1, 2)  # type: ignore[assignment]
                anchors = {}
                doc_root = None
                doc_line = line_col(e.start_mark.index)[0]
            elif isinstance(e, ev.DocumentEndEvent):
                docs.append(_Doc(doc_root, len(docs), doc_line))
            elif isinstance(e, ev.AliasEvent):
                target = anchors.get(e.anchor)
                aline = line_col(e.start_mark.index)[0]
                if target is None:  # the composer would report this; keep a located message
                    raise ManifestError(f"{filename}:{aline}:{what} alias *{e.anchor} refers to no anchor defined before it")
                target.alias_lines.append(aline)
                add(_Slot(target, aline, e.start_mark.index, e.end_mark.index))
            elif isinstance(e, ev.ScalarEvent):
                tag = e.tag
                explicit = tag is not None and tag != "!"
                if not explicit:
                    tag = _resolve_plain(e.value, version) if e.implicit[0] and e.style is None else _STR
                node = _Node(
                    "scalar",
                    str(tag),
                    e.start_mark.index,
                    e.end_mark.index,
                    *line_col(e.start_mark.index),
                    anchor=e.anchor,
                    explicit_tag=explicit,
                    style=e.style,
                    value=e.value,
                    in_flow=bool(stack) and (stack[-1][0].flow or stack[-1][0].in_flow),
                    doc=len(docs),
                )
                if e.anchor:
                    anchors[e.anchor] = node
                add(_Slot(node))
            elif isinstance(e, (ev.MappingStartEvent, ev.SequenceStartEvent)):
                is_map = isinstance(e, ev.MappingStartEvent)
                tag = e.tag
                explicit = tag is not None and tag != "!"
                node = _Node(
                    "map" if is_map else "seq",
                    str(tag) if explicit else (_MAP if is_map else _SEQ),
                    e.start_mark.index,
                    -1,
                    *line_col(e.start_mark.index),
                    anchor=e.anchor,
                    explicit_tag=explicit,
                    flow=bool(e.flow_style),
                    in_flow=bool(stack) and (stack[-1][0].flow or stack[-1][0].in_flow),
                    doc=len(docs),
                )
                if e.anchor:
                    anchors[e.anchor] = node
                add(_Slot(node))
                stack.append((node, []))
            elif isinstance(e, (ev.MappingEndEvent, ev.SequenceEndEvent)):
                node, children = stack.pop()
                node.end = e.end_mark.index
                if node.kind == "seq":
                    node.items = children
                else:
                    node.pairs = list(zip(children[0::2], children[1::2]))
                    _check_duplicates(node, filename, what)
    except ManifestError:
        raise
    except MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"{filename}:{line_col(mark.index)[0]}" if mark is not None else filename
        problem = err.problem or err.context or "invalid YAML"
        raise ManifestError(f"{where}:{what} YAML syntax error: {problem}") from None
    except YAMLError as err:  # reader errors (non-printable characters) and the like
        raise ManifestError(f"{filename}:{what} not valid YAML: {str(err).strip().splitlines()[0]}") from None
    return docs


def _check_duplicates(node: _Node, filename: str, what: str) -> None:
    """Refuse a mapping with a repeated key (``file:line: path: duplicate key ...``)."""
    seen: dict[tuple[str, str], int] = {}
    for k, _v in node.pairs:
        kn = k.node
        if kn.kind != "scalar":
            continue
        ident = (kn.tag, kn.value)
        if ident in seen:
            raise ManifestError(
                f"{filename}:{k.line}:{what} duplicate key {kn.value!r} (first at line {seen[ident]}); "
                "YAML readers disagree on which one wins, so the file cannot be edited safely"
            )
        seen[ident] = k.line


# --------------------------------------------------------------------------- walking


class _Missing(Exception):
    def __init__(self, depth: int, line: int, message: str):
        super().__init__(message)
        self.depth, self.line, self.message = depth, line, message


class _Refused(Exception):
    def __init__(self, line: int, message: str):
        super().__init__(message)
        self.line, self.message = line, message


@dataclass
class _Found:
    slot: _Slot  # the target (a scalar slot), or the parent mapping when ``create_key`` is set
    create_key: str | None
    notes: list[str]
    line: int = 0  # line of the key (or list item) that names the slot


def _describe(node: _Node) -> str:
    return {"map": "a mapping", "seq": "a list", "scalar": "a single value"}[node.kind]


def _where(steps: list[Step], i: int) -> str:
    return _fmt_path(steps[:i]) or "the top level"


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
        last = i == len(steps) - 1
        if node.anchor and node.alias_lines and i > 0:
            notes.append(
                _anchor_note(node, here)
                + "; those places see the new value too unless they override it (the path goes through the anchor's own definition)"
            )
        if isinstance(step, Key):
            if node.kind != "map":
                raise _Missing(i, at, f"{here} is {_describe(node)}, not a mapping with key {step.name!r}")
            pair = _lookup_pair(node, step.name)
            child = pair[1] if pair is not None else None
            child_at = pair[0].line if pair is not None else at
            if child is None:
                via = _lookup_merged(node, step.name)
                if via is not None:
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
                    raise _Refused(
                        mk.line,
                        f"{step.name!r} in {here} comes from {origin}. Edit the merged mapping's own "
                        f"definition, or write an explicit {step.name!r} under {here} yourself",
                    )
                if create and last:
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
                    return _Found(cur, step.name, notes, at)
                keys = [k.node.value for k, _ in node.pairs if k.node.kind == "scalar" and k.node.tag != _MERGE]
                shown = ", ".join(keys[:12]) + (", ..." if len(keys) > 12 else "")
                raise _Missing(
                    i,
                    at,
                    f"no key {step.name!r} in {here} (deepest existing prefix: {here}; keys there: {shown or 'none'})",
                )
        elif isinstance(step, Index):
            if node.kind != "seq":
                raise _Missing(i, at, f"{here} is {_describe(node)}, not a list; [{step.n}] needs a list")
            if step.n >= len(node.items):
                raise _Missing(
                    i,
                    at,
                    f"index [{step.n}] is out of range: {here} has {len(node.items)} item(s) "
                    f"(deepest existing prefix: {here})",
                )
            child = node.items[step.n]
            child_at = child.line
        else:
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
            child = matches[0]
            child_at = child.line
        if child.alias_line is not None:
            what = _fmt_path(steps[: i + 1])
            raise _Refused(
                child.alias_line,
                f"{what} is an alias (*{child.node.anchor}) of the node anchored at line {child.node.line}; "
                f"editing it would change every user of &{child.node.anchor}. Edit the anchor's definition "
                "instead, or replace the alias with its own value",
            )
        cur, at = child, child_at
    return _Found(cur, None, notes, at)


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


class _PlainAnalyzer:
    """ruamel.yaml's emitter decides whether a string may be written as a plain scalar."""

    _emitter: Any = None

    @classmethod
    def allows(cls, value: str, in_flow: bool) -> bool:
        if cls._emitter is None:
            from types import SimpleNamespace

            from ruamel.yaml.emitter import Emitter

            class _E(Emitter):  # type: ignore[misc]
                # analyze_scalar reads the YAML version from the serializer; 1.1 is the stricter
                serializer = SimpleNamespace(use_version=(1, 1))  # type: ignore[assignment]

            cls._emitter = _E(None, allow_unicode=True)
        a = cls._emitter.analyze_scalar(value)
        if a.empty or a.multiline:
            return False
        return bool(a.allow_flow_plain if in_flow else a.allow_block_plain)


def _loads_as_string(value: str) -> bool:
    return _resolve_plain(value, (1, 2)) == _STR and _resolve_plain(value, (1, 1)) == _STR


def _printable(ch: str) -> bool:
    o = ord(ch)
    if ch in "\t":
        return True
    if o < 0x20 or o == 0x7F or 0x80 <= o <= 0x9F:
        return False
    if ch in "\u2028\u2029\ufeff\ufffe\uffff" or 0xD800 <= o <= 0xDFFF:
        return False
    return True


def _double_quoted(value: str) -> str:
    out = ['"']
    for ch in value:
        o = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif not _printable(ch):
            out.append(f"\\x{o:02x}" if o <= 0xFF else (f"\\u{o:04x}" if o <= 0xFFFF else f"\\U{o:08x}"))
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _single_ok(value: str) -> bool:
    return all(_printable(ch) and ch != "\t" for ch in value)


def _single_quoted(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _quoted(value: str, prefer: str | None = None) -> str:
    if prefer == "'" and _single_ok(value):
        return _single_quoted(value)
    if prefer == '"':
        return _double_quoted(value)
    # no preference: double quotes unless single quotes need no escapes where double would
    if ('"' in value or "\\" in value) and _single_ok(value):
        return _single_quoted(value)
    return _double_quoted(value)


def _string_scalar(value: str, in_flow: bool) -> str:
    """A new string value written plain when it stays a string, quoted otherwise."""
    if _PlainAnalyzer.allows(value, in_flow) and _loads_as_string(value):
        return value
    return _quoted(value)


def _json_quoted(value: str) -> str:
    """A JSON string literal (RFC 8259 section 7) that YAML 1.1 and 1.2 read as the same text.

    ``"``, ``\\`` and the control characters JSON names get their short escapes; every other
    character YAML does not allow unescaped (C0/C1 controls, DEL, U+2028/2029, U+FEFF, ...) is
    written ``\\uXXXX``, which both JSON and YAML double-quoted scalars accept.
    """
    short = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f"}
    out = ['"']
    for ch in value:
        if ch in short:
            out.append(short[ch])
        elif not _printable(ch):
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


# a JSON number (RFC 8259 section 6) that YAML 1.1 and 1.2 read as the same int or float
_JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?\Z")


def _render_json(node: _Node | None, value: str) -> tuple[str, str]:
    """Like :func:`_render` inside a JSON document: every new scalar is valid JSON.

    A number replacing a number stays a number, ``true``/``false`` replacing a boolean and
    ``null`` replacing null stay bare; any other value becomes a JSON string.
    """
    if node is not None and node.style is None:
        if node.tag in (_INT, _FLOAT) and _JSON_NUMBER.match(value):
            t12, t11 = _resolve_plain(value, (1, 2)), _resolve_plain(value, (1, 1))
            if t12 == t11 and t12 in (_INT, _FLOAT):
                return value, t12
        if (node.tag == _BOOL and value in ("true", "false")) or (node.tag == _NULL and value == "null"):
            return value, node.tag
    return _json_quoted(value), _STR


def _short_tag(tag: str) -> str:
    return "!!" + tag[len("tag:yaml.org,2002:") :] if tag.startswith("tag:yaml.org,2002:") else tag


def _tag_loads(tag: str, value: str) -> bool:
    """Whether a scalar ``tag`` with content ``value`` loads with ruamel.yaml's safe loader
    (YAML 1.2) and PyYAML's safe loader (YAML 1.1, as Kubernetes reads manifests; PyYAML comes
    with MLflow, and only the ruamel.yaml check is made when it is missing)."""
    from ruamel.yaml import YAML
    from ruamel.yaml.nodes import ScalarNode

    try:
        YAML(typ="safe", pure=True).constructor.construct_object(ScalarNode(tag, value), deep=True)
    except Exception:  # noqa: BLE001 - any constructor failure means "cannot load"
        return False
    try:
        import yaml as pyyaml
    except ImportError:  # pragma: no cover - PyYAML is a dependency of MLflow
        return True
    loader = pyyaml.SafeLoader("")
    try:
        loader.construct_object(pyyaml.ScalarNode(tag, value), deep=True)
    except Exception:  # noqa: BLE001
        return False
    finally:
        loader.dispose()
    return True


def _render(node: _Node | None, value: str, json_doc: bool = False) -> tuple[str, str]:
    """(scalar text to write, tag it loads with) for ``value`` replacing ``node`` (None: new key).

    ``json_doc``: the node is in a JSON document (see :func:`_render_json`).

    Raises:
        _Refused: an explicitly tagged node (``!!int``, ``!!timestamp``, ...) and a value that
            tag cannot hold.
    """
    if node is None:
        return (_json_quoted(value), _STR) if json_doc else (_string_scalar(value, False), _STR)
    if node.explicit_tag:
        # the tag decides the type; keep it and keep the style where possible
        if node.tag in (_INT, _FLOAT, _BOOL, _NULL) and not (
            _resolve_plain(value, (1, 2)) == node.tag == _resolve_plain(value, (1, 1))
        ):
            raise _Refused(node.line, f"the value is tagged {node.tag}; {value!r} is not of that type")
        if (
            node.tag.startswith("tag:yaml.org,2002:")
            and node.tag != _STR
            and _tag_loads(node.tag, node.value)
            and not _tag_loads(node.tag, value)
        ):
            raise _Refused(
                node.line,
                f"the value is tagged {node.tag} ({_short_tag(node.tag)}); {value!r} is not of that type "
                "(YAML readers, kubectl among them, would refuse the file)",
            )
        if node.style is None and _PlainAnalyzer.allows(value, node.in_flow):
            return value, node.tag
        return _quoted(value, node.style), node.tag
    if json_doc:
        return _render_json(node, value)
    if node.style in ("'", '"'):
        return _quoted(value, node.style), _STR
    # plain, implicit type
    if node.tag in (_INT, _FLOAT):
        if _DECIMAL_INT.match(value) or _DECIMAL_FLOAT.match(value):
            t12, t11 = _resolve_plain(value, (1, 2)), _resolve_plain(value, (1, 1))
            if t12 == t11 and t12 in (_INT, _FLOAT):
                return value, t12
    elif node.tag != _STR and node.value != "":
        if _resolve_plain(value, (1, 2)) == node.tag == _resolve_plain(value, (1, 1)) and _PlainAnalyzer.allows(
            value, node.in_flow
        ):
            return value, node.tag
    return _string_scalar(value, node.in_flow), _STR


def _construct(tag: str, value: str) -> object:
    """The Python value YAML gives a scalar with ``tag`` and content ``value``."""
    if tag == _STR:
        return value
    if tag.startswith("tag:yaml.org,2002:"):
        from ruamel.yaml import YAML
        from ruamel.yaml.nodes import ScalarNode

        try:
            return YAML(typ="safe", pure=True).constructor.construct_object(ScalarNode(tag, value), deep=True)
        except Exception:  # noqa: BLE001 - an odd scalar is reported as its text
            return value
    return value


def _same_value(a: object, b: object) -> bool:
    return type(a) is type(b) and a == b


# --------------------------------------------------------------------------- verification


def _is_empty(slot: _Slot) -> bool:
    n = slot.node
    return (
        slot.alias_line is None
        and n.kind == "scalar"
        and n.style is None
        and n.value == ""
        and n.start == n.end
        and not n.anchor
        and not n.explicit_tag
    )


def _content_end(text: str, slot: _Slot) -> int:
    """Index just past the last character of a value's own text (block collections: their last child)."""
    while True:
        if slot.alias_line is not None:
            return slot.alias_end
        node = slot.node
        if node.kind == "scalar" and node.style in ("|", ">"):
            # the parser ends a block scalar after the blank lines that follow it; unless it keeps
            # them (``|+``), they are not its content, so the value really ends at its last text
            header = text[_token_start(text, node) : node.end].split("\n", 1)[0]
            end = node.end
            if "+" not in header:
                while end > node.start and text[end - 1] in " \t\r\n":
                    end -= 1
            return end
        if node.kind == "scalar" or node.flow:
            return node.end
        if node.kind == "map":
            if not node.pairs:
                return node.end
            k, v = node.pairs[-1]
            # ``key:`` with no value: the parser marks the empty scalar at the next token
            slot = k if _is_empty(v) else v
        else:
            if not node.items:
                return node.end
            slot = node.items[-1]


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

    def fail(line: int, what: str) -> ManifestError:
        return ManifestError(
            f"{filename}:{line}: {path}: the edit would also change {what}; nothing was written "
            "(this is a bug in mlgate, please report it with the file)"
        )

    if len(before) != len(after):
        raise fail(1, f"the number of documents ({len(before)} -> {len(after)})")
    new_node: _Node | None = None
    stack: list[tuple[_Slot | None, _Slot | None]] = [(b.root, a.root) for b, a in zip(before, after)]
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
        if b.kind != a.kind or b.tag != a.tag or b.anchor != a.anchor or b.explicit_tag != a.explicit_tag:
            raise fail(a.line, f"the node at line {a.line}")
        if b.kind == "scalar":
            if b.value != a.value or b.style != a.style:
                raise fail(a.line, f"the value at line {a.line}")
            continue
        if b.flow != a.flow:
            raise fail(a.line, f"the style of the collection at line {a.line}")
        if b.kind == "seq":
            if len(b.items) != len(a.items):
                raise fail(a.line, f"the list at line {a.line}")
            stack.extend(zip(b.items, a.items))
            continue
        bp = b.pairs
        ap = a.pairs
        if b is target and create_key is not None:
            if len(ap) != len(bp) + 1:
                raise fail(a.line, f"the mapping at line {a.line}")
            k, v = ap[-1]
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
            new_node = v.node
            ap = ap[: len(bp)]
        if len(bp) != len(ap):
            raise fail(a.line, f"the mapping at line {a.line}")
        for (bk, bv), (ak, av) in zip(bp, ap):
            stack.append((bk, ak))
            stack.append((bv, av))
    if new_node is None:
        raise fail(target.line, "nothing (the target was not found again)")
    return new_node


# --------------------------------------------------------------------------- editing


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


def _token_start(text: str, node: _Node) -> int:
    """Index of the scalar token itself, after its properties (``&anchor``, ``!tag``).

    Between the properties and the scalar YAML allows only white space, line breaks and
    comments (``&a # note`` then the value on the next line); all of them are skipped here, so
    that they stay outside the span that an edit replaces. The edit is checked against the
    scanner afterwards (:func:`_check_span`), so a wrong index fails closed.
    """
    i = node.start
    while i < node.end:
        ch = text[i]
        if ch in "&!":  # a property runs to the next white space
            while i < node.end and text[i] not in " \t\r\n":
                i += 1
        elif ch in " \t\r\n":
            i += 1
        elif ch == "#":  # a comment (always after white space here) runs to the end of its line
            while i < node.end and text[i] not in "\r\n":
                i += 1
        else:
            break
    return i


def _scalar_tokens(text: str) -> dict[int, int]:
    """Start index -> end index of every scalar token of ``text``, as ruamel.yaml's scanner sees it."""
    from ruamel.yaml import YAML
    from ruamel.yaml.tokens import ScalarToken

    return {
        t.start_mark.index: t.end_mark.index
        for t in YAML(typ="safe", pure=True).scan(text)
        if isinstance(t, ScalarToken)
    }


def _check_span(
    text: str,
    new_text: str,
    start: int,
    old_end: int,
    new_end: int,
    value: tuple[int, int],
    filename: str,
    path: str,
    line: int,
) -> None:
    """Check, at the text level, that an edit replaced one scalar token and nothing else.

    ``text[start:old_end]`` (empty for an insertion) was replaced by ``new_text[start:new_end]``,
    and the new value is ``new_text[value[0]:value[1]]``. Every byte before ``start`` and after
    the replaced span must be identical; a replaced span must be exactly one scalar token of the
    original, and the new value exactly one scalar token of the result (ruamel.yaml's scanner
    decides). Comments, anchors, tags and line breaks next to the value can therefore never be
    lost through a wrong span: the edit fails closed instead.

    Raises:
        ManifestError: any of these does not hold (nothing is written).
    """
    problem = None
    if new_text[:start] != text[:start] or new_text[new_end:] != text[old_end:]:
        problem = "text outside the value"
    elif old_end > start and _scalar_tokens(text).get(start) != old_end:
        problem = f"more than the old value ({text[start:old_end]!r} is not exactly one scalar)"
    elif _scalar_tokens(new_text).get(value[0]) != value[1]:
        problem = f"more than the new value ({new_text[value[0]:value[1]]!r} does not read back as one scalar)"
    if problem is not None:
        raise ManifestError(
            f"{filename}:{line}: {path}: the edit would also change {problem}; nothing was written "
            "(this is a bug in mlgate, please report it with the file)"
        )


def _newline_of(text: str) -> str:
    i = text.find("\n")
    return "\r\n" if i > 0 and text[i - 1] == "\r" else "\n"


def _line_of(text: str, index: int) -> int:
    return text.count("\n", 0, index) + 1


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
    notes = tuple(found.notes)

    if found.create_key is not None:
        parent = found.slot.node
        if not parent.pairs:
            raise ManifestError(f"{filename}:{parent.line}: {path}: cannot create a key in an empty mapping")
        json_doc = _is_json_doc(_doc_of(docs, parent), filename)
        first_key = parent.pairs[0][0]
        indent = first_key.node.col if first_key.alias_line is None else parent.col
        rendered, tag = _render(None, value, json_doc)
        key_text = _json_quoted(found.create_key) if json_doc else _string_scalar(found.create_key, False)
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
        new_node = _verify(docs, after, parent, (tag, value), filename, path, create_key=found.create_key)
        _check_span(
            text, new_text, insert_at, insert_at, insert_at + len(piece), (at, at + len(rendered)),
            filename, path, new_node.line,
        )
        return Edit(new_text, True, new_node.line, path, None, _construct(new_node.tag, new_node.value), notes)

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


def _reparse(new_text: str, filename: str, path: str) -> list[_Doc]:
    try:
        return _compose(new_text, filename, path)
    except ManifestError as err:
        raise ManifestError(
            f"{filename}: {path}: the edited text would not parse ({err}); nothing was written "
            "(this is a bug in mlgate, please report it with the file)"
        ) from None


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
