"""Loading a user-written YAML file with positions, and pydantic errors turned into located
:class:`~mlgate.core.errors.Problem` values (``file:line:col: message``, 1-based).

Shared by ``.mlgate.yml`` (:mod:`mlgate.core.config`) and the bot's ``bot.yml``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import MarkedYAMLError
from ruamel.yaml.reader import ReaderError

from mlgate.core.errors import ConfigError, Problem


def load_yaml_mapping(text: str, filename: str) -> Any:
    """Load YAML text with ruamel.yaml round-trip (positions kept) for a user-written file.

    Returns:
        The top-level mapping (a ruamel ``CommentedMap``), or None for an empty document.

    Raises:
        ConfigError: duplicate keys, YAML syntax errors, or a top level that is not a mapping,
            each as ``file:line:col`` (1-based).
    """
    try:
        data = YAML(typ="rt").load(text)
    except ReaderError as e:
        line, col = _line_col(text, e.position)
        raise ConfigError([Problem(filename, line, col, f"unacceptable character {e.character!r} (control "
                                   "characters are not allowed in YAML)")]) from None
    except RecursionError:
        raise ConfigError([Problem(filename, 1, 1, "the document is nested too deeply")]) from None
    except DuplicateKeyError as e:
        mark = e.problem_mark
        raise ConfigError([Problem(filename, mark.line + 1, mark.column + 1, f"duplicate key: {e.problem}")]) from None
    except MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise ConfigError([Problem(filename, line, col, f"YAML syntax error: {e.problem or e.context}")]) from None
    if data is not None and not isinstance(data, dict):
        raise ConfigError([Problem(filename, 1, 1, f"the top level must be a mapping, not {type(data).__name__}")])
    if _expands_beyond(data, MAX_VALUES):
        raise ConfigError([Problem(filename, 1, 1, f"the document expands to more than {MAX_VALUES} values through "
                                   "YAML aliases (*name); write the repeated parts out")])
    return data


#: Values (mappings, lists, scalars) a user-written file may expand to. A real ``.mlgate.yml`` or
#: bot.yml has hundreds; ten lines of nested aliases expand to billions ("billion laughs"), which
#: the checks would walk for hours in the bot's worker or the dashboard that read the file.
MAX_VALUES = 100_000


def _expands_beyond(node: Any, limit: int) -> bool:
    """Whether ``node`` has more than ``limit`` values counting each alias use again (stops early)."""
    stack, seen = [node], 0
    while stack:
        x = stack.pop()
        seen += 1
        if seen > limit:
            return True
        if isinstance(x, dict):
            stack.extend(x.keys())
            stack.extend(x.values())
        elif isinstance(x, list):
            stack.extend(x)
    return False


def _line_col(text: str, position: int) -> tuple[int, int]:
    """1-based line and column of character offset ``position`` in ``text``."""
    before = text[: max(position, 0)]
    return before.count("\n") + 1, len(before) - (before.rfind("\n") + 1) + 1


def locate(err: dict[str, Any], loc: tuple[Any, ...], data: Any, filename: str,
           message: Any = None) -> Problem:
    """A :class:`Problem` for one pydantic error at (cleaned) ``loc`` inside ruamel ``data``:
    unknown and missing keys point at the key, wrong values at the value."""
    if err["type"] in ("extra_forbidden", "missing") or not loc:
        line, col = _position(data, loc)
    else:
        pos = _value_position(data, loc)
        line, col = pos if pos is not None else _position(data, loc)
    text = (message or _message)(err, loc)
    return Problem(filename, line + 1, col + 1, text)


def _position(node: Any, loc: tuple[Any, ...]) -> tuple[int, int]:
    """Best 0-based (line, col) for a pydantic error location inside a ruamel node tree.

    Walks ``loc`` as the tree goes; a mapping key points at the key, a list index
    at the item. Union/discriminator tags in ``loc`` that are not keys are skipped.
    """
    line, col = 0, 0
    if hasattr(node, "lc"):
        line, col = node.lc.line, node.lc.col
    for part in loc:
        lc = getattr(node, "lc", None)
        if isinstance(node, dict) and part in node:
            if lc is not None:
                kl = lc.key(part)
                if kl is not None:
                    line, col = kl
            child = node[part]
            node = child
            continue
        if isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            if lc is not None:
                il = lc.item(part)
                if il is not None:
                    line, col = il
            node = node[part]
            continue
        # a union branch name or a discriminator tag: stay on this node
    return line, col


def _value_position(node: Any, loc: tuple[Any, ...]) -> tuple[int, int] | None:
    """0-based position of the *value* at ``loc`` (for type errors), if it is a mapping value."""
    if not loc:
        return None
    parent = node
    for part in loc[:-1]:
        if isinstance(parent, dict) and part in parent:
            parent = parent[part]
        elif isinstance(parent, list) and isinstance(part, int) and 0 <= part < len(parent):
            parent = parent[part]
    last = loc[-1]
    if isinstance(parent, dict) and last in parent and hasattr(parent, "lc"):
        return parent.lc.value(last)
    return None


def _clean_loc(loc: tuple[Any, ...], data: Any) -> tuple[Any, ...]:
    """Drop union-branch and discriminator-tag parts that are not keys of the document."""
    out: list[Any] = []
    node = data
    for part in loc:
        if isinstance(node, dict) and part in node:
            out.append(part)
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            out.append(part)
            node = node[part]
        elif isinstance(node, (dict, list)):
            # not in the document: either a missing/extra key (keep, last) or a branch tag (skip)
            if part == loc[-1]:
                out.append(part)
    return tuple(out)


def _message(err: dict[str, Any], loc: tuple[Any, ...]) -> str:
    dotted = ".".join(str(p) for p in loc) or "(top level)"
    kind = err["type"]
    if kind == "extra_forbidden":
        return f"unknown key {loc[-1]!r} at {dotted}"
    if kind == "missing":
        return f"missing required key {loc[-1]!r} at {dotted}" if loc else "missing required key"
    if kind == "union_tag_invalid":
        ctx = err.get("ctx") or {}
        return (f"{dotted}: {ctx.get('discriminator', 'kind').strip(chr(39))} must be one of "
                f"{ctx.get('expected_tags', '?')} (got {ctx.get('tag', err.get('input'))!r})")
    if loc and loc[-1] == "max_regression" and kind not in ("value_error",):
        return (f"{dotted}: must be a number (an absolute amount) or a string like '2%' "
                f"(relative to the champion) (got {err.get('input')!r})")
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    got = err.get("input")
    if kind not in ("value_error", "assertion_error") and not isinstance(got, (dict, list)):
        return f"{dotted}: {msg} (got {got!r})"
    return f"{dotted}: {msg}"


def _plain(node: Any) -> Any:
    """ruamel's round-trip containers → plain dict/list/scalars for pydantic."""
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    if isinstance(node, str):
        return str(node)
    if isinstance(node, bool):
        return bool(node)
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    return node


def read_user_file(path: str | Path) -> str:
    """The UTF-8 text of a user-written file; ConfigError (``file:1:1``) when it is missing,
    a directory, unreadable or not UTF-8."""
    p = Path(path)
    try:
        return p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([Problem(str(path), 1, 1, "file not found")]) from None
    except IsADirectoryError:
        raise ConfigError([Problem(str(path), 1, 1, "is a directory, not a file")]) from None
    except PermissionError:
        raise ConfigError([Problem(str(path), 1, 1, "permission denied")]) from None
    except UnicodeDecodeError as e:
        raise ConfigError([Problem(str(path), 1, 1, f"not UTF-8 text: {e.reason}")]) from None
