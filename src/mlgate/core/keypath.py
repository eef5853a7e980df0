"""Key paths into YAML documents (``a.b[0].c[name=x].d``): parsing and printing, nothing else.

Shared by :mod:`mlgate.core.manifests` (which walks a path in a document) and
:mod:`mlgate.core.config` (which checks the paths a ``.mlgate.yml`` names), so that neither
has to import the other.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mlgate.core.errors import UsageError

__all__ = ["Key", "Index", "Select", "Step", "parse_path", "format_path"]




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


def format_path(steps: list[Step]) -> str:
    """``steps`` written back as a key path, as messages show it (``a.b[0].c[name=x]``)."""
    out = ""
    for s in steps:
        if isinstance(s, Key):
            out += ("." if out else "") + str(s)
        else:
            out += str(s)
    return out
