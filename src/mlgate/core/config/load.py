"""Parsing ``.mlgate.yml``: YAML with positions, the pydantic models, then the whole-config checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from mlgate.core.config.checks import semantic_problems
from mlgate.core.config.located import _clean_loc, _plain, load_yaml_mapping, locate, read_user_file
from mlgate.core.config.models import Config
from mlgate.core.errors import ConfigError, Problem


def parse(text: str, filename: str = ".mlgate.yml") -> Config:
    """Parse and validate ``.mlgate.yml`` text.

    Args:
        text: the file's contents.
        filename: used in error messages only.

    Returns:
        The validated :class:`Config`.

    Raises:
        ConfigError: with one :class:`~mlgate.core.errors.Problem` (``file:line:col: message``,
            1-based) per problem: YAML syntax errors, duplicate keys, unknown keys,
            wrong types, missing keys, invalid values.
    """
    data = load_yaml_mapping(text, filename)
    if data is None:
        raise ConfigError([Problem(filename, 1, 1, "the file is empty; it needs at least 'model:'")])
    try:
        cfg = Config.model_validate(_plain(data))
    except ValidationError as exc:
        problems: list[Problem] = []
        seen: set[tuple[Any, ...]] = set()
        for err in exc.errors(include_url=False):
            loc = _clean_loc(tuple(err["loc"]), data)
            if loc in seen:  # one problem per place: union branches repeat the same loc
                continue
            seen.add(loc)
            problems.append(locate(err, loc, data, filename))
        problems.sort(key=lambda p: (p.line, p.col))
        raise ConfigError(problems) from None
    semantic = semantic_problems(cfg, data, filename)
    if semantic:
        raise ConfigError(sorted(semantic, key=lambda p: (p.line, p.col)))
    return cfg


def load_file(path: str | Path) -> Config:
    """Read and parse a config file; raises :class:`ConfigError` (also for a missing file)."""
    return parse(read_user_file(path), str(path))
