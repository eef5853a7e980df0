"""The node tree of a YAML text with exact character spans (see :mod:`mlgate.core.manifests`, step 1).

ruamel.yaml's parser turns the text into events; :func:`_compose` builds from them a tree that
keeps, for every node, its span, quoting style, anchor, and whether it was reached through an
alias. Document boundaries come from the parser.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml import events as ev
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import ScalarNode
from ruamel.yaml.resolver import VersionedResolver

from mlgate.core.errors import ManifestError

_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_BOOL = "tag:yaml.org,2002:bool"
_NULL = "tag:yaml.org,2002:null"
_MERGE = "tag:yaml.org,2002:merge"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"


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


class _Missing(Exception):
    def __init__(self, depth: int, line: int, message: str):
        super().__init__(message)
        self.depth, self.line, self.message = depth, line, message


class _Refused(Exception):
    def __init__(self, line: int, message: str):
        super().__init__(message)
        self.line, self.message = line, message


_RESOLVERS: dict[tuple[int, int], Any] = {}


def _resolver(version: tuple[int, int]) -> Any:
    r = _RESOLVERS.get(version)
    if r is None:
        r = _RESOLVERS[version] = VersionedResolver(version=version)
    return r


def _resolve_plain(value: str, version: tuple[int, int] = (1, 2)) -> str:
    """The tag YAML ``version`` gives an untagged plain scalar ``value``."""
    return str(_resolver(version).resolve(ScalarNode, value, (True, False)))


# --------------------------------------------------------------------------- composing


class _Composer:
    """Builds the documents of one text from its parser events (one method per event kind)."""

    def __init__(self, text: str, filename: str, what: str):
        self.filename, self.what = filename, what
        self.newlines = [m.start() for m in re.finditer("\n", text)]
        self.docs: list[_Doc] = []
        self.anchors: dict[str, _Node] = {}
        self.stack: list[tuple[_Node, list[_Slot]]] = []  # open collections and their collected children
        self.version: tuple[int, int] = (1, 2)
        self.doc_root: _Slot | None = None
        self.doc_line = 1

    def line_col(self, index: int) -> tuple[int, int]:
        # lines as git and editors count them ("\n"), not as the YAML reader does (which also
        # breaks at U+2028, U+0085 and a lone "\r")
        k = bisect.bisect_left(self.newlines, index)
        return k + 1, index - (self.newlines[k - 1] + 1 if k > 0 else 0)

    def add(self, slot: _Slot) -> None:
        if self.stack:
            self.stack[-1][1].append(slot)
        else:
            self.doc_root = slot

    def in_flow(self) -> bool:
        return bool(self.stack) and (self.stack[-1][0].flow or self.stack[-1][0].in_flow)

    def event(self, e: Any) -> None:
        if isinstance(e, ev.DocumentStartEvent):
            self.version = tuple(e.version) if getattr(e, "version", None) else (1, 2)  # type: ignore[assignment]
            self.anchors = {}
            self.doc_root = None
            self.doc_line = self.line_col(e.start_mark.index)[0]
        elif isinstance(e, ev.DocumentEndEvent):
            self.docs.append(_Doc(self.doc_root, len(self.docs), self.doc_line))
        elif isinstance(e, ev.AliasEvent):
            self.alias(e)
        elif isinstance(e, ev.ScalarEvent):
            self.scalar(e)
        elif isinstance(e, (ev.MappingStartEvent, ev.SequenceStartEvent)):
            self.collection_start(e)
        elif isinstance(e, (ev.MappingEndEvent, ev.SequenceEndEvent)):
            node, children = self.stack.pop()
            node.end = e.end_mark.index
            if node.kind == "seq":
                node.items = children
            else:
                node.pairs = list(zip(children[0::2], children[1::2]))
                _check_duplicates(node, self.filename, self.what)

    def alias(self, e: Any) -> None:
        target = self.anchors.get(e.anchor)
        aline = self.line_col(e.start_mark.index)[0]
        if target is None:  # the composer would report this; keep a located message
            raise ManifestError(
                f"{self.filename}:{aline}:{self.what} alias *{e.anchor} refers to no anchor defined before it"
            )
        target.alias_lines.append(aline)
        self.add(_Slot(target, aline, e.start_mark.index, e.end_mark.index))

    def scalar(self, e: Any) -> None:
        tag = e.tag
        explicit = tag is not None and tag != "!"
        if not explicit:
            tag = _resolve_plain(e.value, self.version) if e.implicit[0] and e.style is None else _STR
        node = _Node(
            "scalar",
            str(tag),
            e.start_mark.index,
            e.end_mark.index,
            *self.line_col(e.start_mark.index),
            anchor=e.anchor,
            explicit_tag=explicit,
            style=e.style,
            value=e.value,
            in_flow=self.in_flow(),
            doc=len(self.docs),
        )
        if e.anchor:
            self.anchors[e.anchor] = node
        self.add(_Slot(node))

    def collection_start(self, e: Any) -> None:
        is_map = isinstance(e, ev.MappingStartEvent)
        tag = e.tag
        explicit = tag is not None and tag != "!"
        node = _Node(
            "map" if is_map else "seq",
            str(tag) if explicit else (_MAP if is_map else _SEQ),
            e.start_mark.index,
            -1,
            *self.line_col(e.start_mark.index),
            anchor=e.anchor,
            explicit_tag=explicit,
            flow=bool(e.flow_style),
            in_flow=self.in_flow(),
            doc=len(self.docs),
        )
        if e.anchor:
            self.anchors[e.anchor] = node
        self.add(_Slot(node))
        self.stack.append((node, []))


def _compose(text: str, filename: str, path: str = "") -> list[_Doc]:
    """Parse ``text`` into documents of :class:`_Node` trees with exact spans.

    ``path`` (the key path being edited) is named in error messages.

    Raises:
        ManifestError: YAML syntax errors, undefined aliases, duplicate keys (``file:line: path:``).
    """
    what = f" {path}:" if path else ""
    composer = _Composer(text, filename, what)
    try:
        for e in YAML(typ="safe", pure=True).parse(text):
            composer.event(e)
    except ManifestError:
        raise
    except MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"{filename}:{composer.line_col(mark.index)[0]}" if mark is not None else filename
        problem = err.problem or err.context or "invalid YAML"
        raise ManifestError(f"{where}:{what} YAML syntax error: {problem}") from None
    except YAMLError as err:  # reader errors (non-printable characters) and the like
        raise ManifestError(f"{filename}:{what} not valid YAML: {str(err).strip().splitlines()[0]}") from None
    return composer.docs


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


def _reparse(new_text: str, filename: str, path: str) -> list[_Doc]:
    try:
        return _compose(new_text, filename, path)
    except ManifestError as err:
        raise ManifestError(
            f"{filename}: {path}: the edited text would not parse ({err}); nothing was written "
            "(this is a bug in mlgate, please report it with the file)"
        ) from None
