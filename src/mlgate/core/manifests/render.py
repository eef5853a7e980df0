"""Rendering a new scalar value in the style of the old one (see :mod:`mlgate.core.manifests`,
"Scalar typing"): plain, single- or double-quoted, or a JSON string, so that it loads as the
intended value under YAML 1.2 and 1.1.
"""

from __future__ import annotations

import re
from types import SimpleNamespace
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.emitter import Emitter
from ruamel.yaml.nodes import ScalarNode

from mlgate.core.manifests.nodes import _BOOL, _FLOAT, _INT, _NULL, _STR, _Node, _Refused, _resolve_plain

_DECIMAL_INT = re.compile(r"[-+]?(?:0|[1-9][0-9]*)\Z")
# no exponent: YAML 1.1 readers (PyYAML, go-yaml v2) disagree on "2.5e3" (a string to PyYAML)
_DECIMAL_FLOAT = re.compile(r"[-+]?(?:[0-9]+\.[0-9]*|\.[0-9]+)\Z")


class _PlainAnalyzer:
    """ruamel.yaml's emitter decides whether a string may be written as a plain scalar."""

    _emitter: Any = None

    @classmethod
    def allows(cls, value: str, in_flow: bool) -> bool:
        if cls._emitter is None:

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
    try:
        YAML(typ="safe", pure=True).constructor.construct_object(ScalarNode(tag, value), deep=True)
    except Exception:  # noqa: BLE001 - any constructor failure means "cannot load"
        return False
    try:
        # lazy: only explicitly tagged values need PyYAML (~16 ms), kept off `mlgate manifest set` start-up
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
        try:
            return YAML(typ="safe", pure=True).constructor.construct_object(ScalarNode(tag, value), deep=True)
        except Exception:  # noqa: BLE001 - an odd scalar is reported as its text
            return value
    return value


def _same_value(a: object, b: object) -> bool:
    return type(a) is type(b) and a == b


# --------------------------------------------------------------------------- verification
