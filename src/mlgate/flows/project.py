"""A loaded ``.mlgate.yml`` with its registry, and the CI context of the checkout.

Imperative shell shared by the use cases (:mod:`mlgate.flows.train`, ``validate``,
``promote``, ``reconcile``, ``status``): it reads the config file, resolves the tracking URI
and asks git or the CI environment which commit is being built.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from mlgate.core.ci import CIContext, ci_context
from mlgate.core.config import NAME_PATTERN, Config, load_file
from mlgate.core.errors import UsageError
from mlgate.edge.registry import Registry, resolve_tracking_uri

@dataclass
class Project:
    """A loaded ``.mlgate.yml`` with its directory and registry."""

    config: Config
    path: Path
    tracking_uri: str
    registry: Registry

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    @property
    def config_name(self) -> str:
        """The config file as messages name it: relative to the working directory when inside
        it (``.mlgate.yml``, ``ci/other.yml``), else absolute."""
        try:
            return str(self.path.relative_to(Path.cwd().resolve()))
        except ValueError:
            return str(self.path)

    @classmethod
    def load(cls, path: str | Path, environ: Mapping[str, str] | None = None, model: str | None = None,
             *, create_store: bool = False) -> "Project":
        """Load the config at ``path``; ``model`` overrides its registered model name.

        Raises ConfigError (exit 2), UsageError for a ``model`` that is not a valid name.
        """
        p = Path(path)
        cfg = load_file(p)
        if model is not None and model != cfg.model:
            if not re.fullmatch(NAME_PATTERN, model):
                raise UsageError(f"--model {model!r} is not a valid registered model name ({NAME_PATTERN})")
            cfg = cfg.model_copy(update={"model": model})
        uri = resolve_tracking_uri(cfg.tracking_uri, p.resolve().parent, environ, create=create_store)
        return cls(cfg, p.resolve(), uri, Registry(uri))

    def artifact_location(self) -> str | None:
        """Artifact root for a new experiment in an embedded (sqlite/file) store: ``.mlgate/artifacts``."""
        if self.tracking_uri.startswith(("http://", "https://", "databricks")):
            return None
        loc = self.base_dir / ".mlgate" / "artifacts"
        loc.mkdir(parents=True, exist_ok=True)
        return loc.as_uri()


def _git_value(args: Sequence[str], cwd: Path) -> str | None:
    try:
        proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() or None if proc.returncode == 0 else None


def git_changes(cwd: Path) -> list[str] | None:
    """The tracked files with uncommitted changes (staged or not) in the git checkout holding
    ``cwd``, as ``git status --porcelain`` lines; None outside a git checkout. Untracked files do
    not count (like ``git describe --dirty``): outputs, data and mlgate's own ``.mlgate/`` are
    untracked, and counting them would call every CI checkout dirty."""
    try:
        proc = subprocess.run(["git", "status", "--porcelain=v1", "--untracked-files=no"], cwd=cwd,
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    return [line for line in proc.stdout.splitlines() if line.strip()]


def current_ci(cwd: Path, environ: Mapping[str, str] | None = None) -> CIContext:
    """CI context from the environment, falling back to the local git checkout."""
    env = os.environ if environ is None else environ
    event = None
    event_path = env.get("GITHUB_EVENT_PATH")
    if event_path and Path(event_path).is_file():
        try:
            event = json.loads(Path(event_path).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            event = None
    ctx = ci_context(env, event)
    commit = ctx.commit or _git_value(["rev-parse", "HEAD"], cwd)
    branch = ctx.branch or _git_value(["rev-parse", "--abbrev-ref", "HEAD"], cwd)
    return CIContext(ctx.system, commit, branch, ctx.job_url)


