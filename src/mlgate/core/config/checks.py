"""Whole-config checks of ``.mlgate.yml`` that one field's validator cannot make, each located
at its key or value."""

from __future__ import annotations

import re
import shlex
import string
from typing import Any

from mlgate.core.config.located import _position, _value_position
from mlgate.core.config.models import Config, Environment
from mlgate.core.errors import MlgateError, Problem
from mlgate.core.keypath import parse_path

TEMPLATE_PLACEHOLDERS = ("model_uri", "storage_uri", "version", "model", "run_id")
_RESERVED_ALIASES = {"challenger": "mlgate validate moves to every version that passes its gates"}


def _at(data: Any, loc: tuple[Any, ...], filename: str, message: str, value: bool = True) -> Problem:
    pos = _value_position(data, loc) if value else None
    line, col = pos if pos is not None else _position(data, loc)
    return Problem(filename, line + 1, col + 1, message)


def _template_problem(template: str) -> str | None:
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as e:
        return f"bad value template {template!r}: {e}"
    unknown = [f for f in fields if f not in TEMPLATE_PLACEHOLDERS]
    if unknown:
        known = ", ".join("{" + k + "}" for k in TEMPLATE_PLACEHOLDERS)
        return f"unknown placeholder {{{unknown[0]}}} in {template!r} (known: {known})"
    return None


def _path_problem(path: str) -> str | None:
    try:
        parse_path(path)
    except MlgateError as e:
        return f"bad key path {path!r}: {e}"
    return None


_SELECT = re.compile(r"^[A-Za-z][A-Za-z0-9]*/[A-Za-z0-9][A-Za-z0-9_.:-]*$")


def semantic_problems(cfg: Config, data: Any, filename: str) -> list[Problem]:
    """Whole-config checks with positions: unique environment names, ``requires`` that exist
    and do not loop, one environment per registry alias (and none on reserved aliases), value
    templates with known placeholders, key paths and ``select`` that parse, a training command
    that splits. Pure over the validated config and its ruamel tree."""
    envs = cfg.environments
    problems = _duplicate_names(envs, data, filename)
    aliases: dict[str, int] = {}
    for i, e in enumerate(envs):
        problems += _alias_problems(envs, i, aliases, data, filename)
        problems += _requires_problems(envs, i, data, filename)
        problems += _target_problems(e, i, data, filename)
        problems += _canary_problems(e, i, data, filename)
    problems += _command_problems(cfg, data, filename)
    return problems


def _duplicate_names(envs: list[Environment], data: Any, filename: str) -> list[Problem]:
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    for i, e in enumerate(envs):
        if e.name in seen:
            problems.append(_at(data, ("environments", i, "name"), filename,
                                f"environment name {e.name!r} is used twice (first as environments.{seen[e.name]})"))
        else:
            seen[e.name] = i
    return problems


def _alias_problems(envs: list[Environment], i: int, aliases: dict[str, int], data: Any,
                    filename: str) -> list[Problem]:
    """Environment ``i`` on a reserved alias, or on one an earlier environment holds (``aliases``:
    alias -> index of its first environment, updated here)."""
    e = envs[i]
    where = ("environments", i, "alias") if e.alias else ("environments", i, "name")
    alias = e.registry_alias
    if alias in _RESERVED_ALIASES:
        return [_at(data, where, filename, f"environment {e.name!r} would hold alias {alias!r}, which "
                    f"{_RESERVED_ALIASES[alias]}; choose another name or alias")]
    if alias in aliases and envs[aliases[alias]].name != e.name:
        return [_at(data, where, filename, f"environment {e.name!r} holds alias {alias!r} like environment "
                    f"{envs[aliases[alias]].name!r}: each environment needs its own alias")]
    aliases.setdefault(alias, i)
    return []


def _requires_problems(envs: list[Environment], i: int, data: Any, filename: str) -> list[Problem]:
    """Environment ``i`` requires an unknown environment, or its ``requires`` chain loops."""
    e = envs[i]
    if e.requires is None:
        return []
    names = [x.name for x in envs]
    loc = ("environments", i, "requires")
    if e.requires not in names:
        known = ", ".join(dict.fromkeys(names))
        return [_at(data, loc, filename, f"requires unknown environment {e.requires!r} (known: {known})")]
    chain, cur = [e.name], e.requires
    while cur is not None and cur not in chain:
        chain.append(cur)
        cur = next((x.requires for x in envs if x.name == cur), None)
    if cur is not None:
        return [_at(data, loc, filename,
                    f"requires forms a loop ({' -> '.join(chain + [cur])}): no version could ever be promoted")]
    return []


def _target_problems(e: Environment, i: int, data: Any, filename: str) -> list[Problem]:
    """The GitOps target's value template, key path and ``select``."""
    problems: list[Problem] = []
    target = e.gitops.target
    tloc = ("environments", i, "gitops", "target")
    msg = _template_problem(target.value)
    if msg:
        problems.append(_at(data, tloc + ("value",), filename, msg))
    for key in ("path", "key"):
        if hasattr(target, key):
            msg = _path_problem(getattr(target, key))
            if msg:
                problems.append(_at(data, tloc + (key,), filename, msg))
    if getattr(target, "select", None) and not _SELECT.match(target.select):
        problems.append(_at(data, tloc + ("select",), filename,
                            f"select {target.select!r} must be KIND/NAME, e.g. InferenceService/wine"))
    return problems


def _canary_problems(e: Environment, i: int, data: Any, filename: str) -> list[Problem]:
    """The canary target's value template and key paths."""
    problems: list[Problem] = []
    if e.canary is None:
        return problems
    ct = getattr(e.canary, "target", None)
    if ct is not None and getattr(ct, "value", None):
        msg = _template_problem(ct.value)
        if msg:
            problems.append(_at(data, ("environments", i, "canary", "target", "value"), filename, msg))
    for key in ("canary_weight", "primary_weight", "canary_value", "primary_value"):
        if ct is not None and getattr(ct, key, None):
            msg = _path_problem(getattr(ct, key))
            if msg:
                problems.append(_at(data, ("environments", i, "canary", "target", key), filename, msg))
    return problems


def _command_problems(cfg: Config, data: Any, filename: str) -> list[Problem]:
    """A training command that a shell could not split, or an empty one."""
    problems: list[Problem] = []
    cmd = cfg.train.command
    if cmd is not None:
        loc = ("train", "command")
        if isinstance(cmd, str):
            try:
                words = shlex.split(cmd)
            except ValueError as e:
                problems.append(_at(data, loc, filename, f"train.command cannot be split like a shell would: {e}"))
                words = ["x"]
        else:
            words = cmd
        if not words or not str(words[0]).strip():
            problems.append(_at(data, loc, filename, "train.command is empty: give the training command, "
                                "e.g. python train.py"))
    return problems
