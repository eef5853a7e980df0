"""Text-level positions and checks of an edit (see :mod:`mlgate.core.manifests`, step 4): where a
value's token starts and its content ends, and that an edit replaced one scalar token and
nothing else.
"""

from __future__ import annotations

from ruamel.yaml import YAML
from ruamel.yaml.tokens import ScalarToken

from mlgate.core.errors import ManifestError
from mlgate.core.manifests.nodes import _Node, _Slot


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
