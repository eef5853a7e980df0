"""The parameters of a WorkflowTemplate: what it declares, and the values a submission sends
(mlgate's standard ones, the user's, and the template's literal defaults)."""

from __future__ import annotations

import difflib
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mlgate.core.errors import UsageError

#: Parameters mlgate fills from its own settings when the WorkflowTemplate declares them.
STANDARD_PARAMETERS = ("image", "repo", "commit", "model", "config", "command", "tracking-uri", "gpus", "retrain-id")
#: Parameters that identify the run (labels, name); only ``--commit`` and the config set them.
IDENTITY_PARAMETERS = ("model", "commit", "retrain-id")

_HINTS = {
    "image": "set train.argo.image in .mlgate.yml or pass -p image=IMAGE",
    "repo": "pass --repo URL (default: git remote get-url origin)",
    "commit": "pass --commit SHA (default: git rev-parse HEAD)",
}


@dataclass(frozen=True)
class DeclaredParameter:
    """One parameter a WorkflowTemplate declares in ``spec.arguments.parameters``.

    ``default`` is the literal the template gives (``value``, else ``default``), or None;
    ``has_value_from`` is True when the template reads it from a ConfigMap or elsewhere.
    """

    name: str
    default: str | None = None
    has_value_from: bool = False
    enum: tuple[str, ...] | None = None
    description: str | None = None

    @property
    def required(self) -> bool:
        """True when the submitter must give a value (no default, no valueFrom)."""
        return self.default is None and not self.has_value_from


def declared_parameters(template: Mapping[str, Any]) -> list[DeclaredParameter]:
    """The parameters a WorkflowTemplate object declares, in declaration order.

    Args:
        template: a WorkflowTemplate as JSON (``GET /api/v1/workflow-templates/{ns}/{name}``
            or the YAML in ``workflows/``).

    Returns:
        One :class:`DeclaredParameter` per ``spec.arguments.parameters[]`` entry.
    """
    params = (((template.get("spec") or {}).get("arguments") or {}).get("parameters")) or []
    out: list[DeclaredParameter] = []
    for p in params:
        default = p.get("value")
        if default is None:
            default = p.get("default")
        enum = p.get("enum")
        out.append(
            DeclaredParameter(
                name=str(p["name"]),
                default=None if default is None else str(default),
                has_value_from=bool(p.get("valueFrom")),
                enum=tuple(str(e) for e in enum) if enum else None,
                description=p.get("description"),
            )
        )
    return out


@dataclass(frozen=True)
class ResolvedParameters:
    """What to send as ``spec.arguments.parameters``.

    ``values``: (name, value) pairs in the template's declaration order, every value a literal
    string without ``{{``. ``left_to_template``: declared parameters not sent, because their
    default is itself a template expression or they have ``valueFrom`` (Argo resolves those).
    ``unused_standard``: mlgate's standard parameters the template does not declare (not sent).
    """

    values: tuple[tuple[str, str], ...]
    left_to_template: tuple[str, ...] = ()
    unused_standard: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, str]:
        return dict(self.values)


def _check_literal(name: str, value: str, where: str) -> None:
    if "{{" in value:
        raise UsageError(
            f"parameter {name!r} ({where}) contains '{{{{': Argo would expand it as a "
            f"template expression; pass the literal value instead (got {value!r})"
        )


def resolve_parameters(
    template_name: str,
    declared: Sequence[DeclaredParameter],
    *,
    standard: Mapping[str, str | None] | None = None,
    user: Mapping[str, str] | None = None,
) -> ResolvedParameters:
    """Fill every parameter of a WorkflowTemplate explicitly, or say exactly what is wrong.

    Precedence, lowest first: the template's literal default, mlgate's ``standard`` values
    (image, repo, commit, model, config, command, tracking-uri, gpus; None means "not known"), the
    ``user``'s values (``train.argo.parameters`` and ``-p key=value``).

    Args:
        template_name: the WorkflowTemplate's name, for messages.
        declared: its parameters (:func:`declared_parameters`).
        standard: values mlgate knows; sent only for parameters the template declares.
        user: values the user asked for; every name must be declared.

    Returns:
        :class:`ResolvedParameters`.

    Raises:
        UsageError: a user parameter the template does not declare (naming the known ones and
            the closest match); a user value for ``model`` or ``commit`` (set by mlgate); a
            required parameter (no default, no valueFrom) with no value (naming all of them,
            with a hint where mlgate can fill it); a value outside the parameter's ``enum``; a
            value containing ``{{``.
    """
    standard = dict(standard or {})
    user = dict(user or {})
    by_name = {p.name: p for p in declared}
    known = ", ".join(p.name for p in declared) or "(none)"

    unknown = [n for n in user if n not in by_name]
    if unknown:
        parts = []
        for n in unknown:
            close = difflib.get_close_matches(n, list(by_name), n=1)
            parts.append(f"{n!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise UsageError(
            f"unknown parameter {', '.join(parts)} for WorkflowTemplate {template_name!r}; known parameters: {known}"
        )
    fixed = [n for n in user if n in IDENTITY_PARAMETERS]
    if fixed:
        raise UsageError(
            f"parameter {fixed[0]!r} is set by mlgate (model from .mlgate.yml, commit from --commit); "
            "do not pass it with -p or train.argo.parameters"
        )

    values: list[tuple[str, str]] = []
    left: list[str] = []
    missing: list[str] = []
    for p in declared:
        if p.name in user:
            value, where = str(user[p.name]), "given with -p or train.argo.parameters"
        elif standard.get(p.name) is not None:
            value, where = str(standard[p.name]), "set by mlgate"
        elif p.default is not None and "{{" not in p.default:
            value, where = p.default, f"default of WorkflowTemplate {template_name!r}"
        elif p.default is not None or p.has_value_from:
            left.append(p.name)
            continue
        else:
            missing.append(p.name)
            continue
        _check_literal(p.name, value, where)
        if p.enum is not None and value not in p.enum:
            raise UsageError(
                f"parameter {p.name!r} of WorkflowTemplate {template_name!r} must be one of "
                f"{', '.join(p.enum)} (got {value!r})"
            )
        values.append((p.name, value))
    if missing:
        hints = [f"{n} ({_HINTS[n]})" if n in _HINTS else f"{n} (pass -p {n}=VALUE)" for n in missing]
        noun = "parameter" if len(missing) == 1 else "parameters"
        raise UsageError(f"WorkflowTemplate {template_name!r} needs {noun} without a default: {'; '.join(hints)}")
    unused = tuple(n for n in STANDARD_PARAMETERS if n not in by_name and standard.get(n) is not None)
    return ResolvedParameters(tuple(values), tuple(left), unused)


def parse_parameter_options(items: Iterable[str]) -> dict[str, str]:
    """``["key=value", ...]`` (repeated ``-p``) → dict; the value may contain ``=``.

    Raises:
        UsageError: an item without ``=`` or with an empty key, or a key given twice.
    """
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"-p expects KEY=VALUE (got {item!r})")
        if key in out:
            raise UsageError(f"parameter {key!r} given twice with -p")
        out[key] = value
    return out


def command_string(command: Sequence[str] | str | None) -> str:
    """The training command as one string of shell words (the template runs it with ``eval``).

    A list is joined with :func:`shlex.join` so that each item stays one argument; a string is
    passed as written (it must split like a shell command); None gives ``""`` (the step then
    runs the command from ``.mlgate.yml``).

    Raises:
        UsageError: a string with unbalanced quotes.
    """
    if command is None:
        return ""
    if isinstance(command, str):
        try:
            shlex.split(command)
        except ValueError as e:
            raise UsageError(f"training command {command!r} does not split like a shell command: {e}") from None
        return command
    return shlex.join(str(c) for c in command)
