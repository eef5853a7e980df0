"""``mlgate reconcile``: move each environment's alias to what git deploys.

Run in a clone of the GitOps repository (its pipeline, on pushes to the default branch): reads
the promotion trailers of the commits on the watched branch (:mod:`mlgate.core.reconcile`
decides what runs where), then for each (model, environment) moves the alias and tags the
version with :func:`mlgate.flows.promote.land` — the same code as the bot's merge handler. A
second run changes nothing. With ``check`` it only reports where the registry and git disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from mlgate.core.promotion import parse_message
from mlgate.core.errors import UsageError
from mlgate.core.reconcile import Deployed, Undecided, deployed
from mlgate.edge import git
from mlgate.flows.promote import RegistryPort, land


@dataclass(frozen=True)
class ReconcileRow:
    """One (model, environment): what git deploys (``git_version``, from ``commit``), what the
    alias held before (``registry_version``), and ``state``: ``in step``, ``moved`` (this run
    moved it), ``differs`` (check mode: it would move), or ``undecided`` (``reason`` says why)."""

    model: str
    environment: str
    alias: str | None
    git_version: str | None
    registry_version: str | None
    commit: str | None
    state: str
    reason: str = ""


def _history(repo: Path, ref: str) -> tuple[list[tuple[str, str, str]], dict[str, list[str]], dict[str, set[str]]]:
    history = git.log_messages(repo, ref)

    paths = {sha: git.changed_paths(repo, sha) for sha, _, msg in history if parse_message(msg) is not None}
    owners = {path: git.line_owners(repo, ref, path) for path in {p for ps in paths.values() for p in ps}}
    return history, paths, owners


def _registered(registry: RegistryPort, model: str, version: str) -> bool:
    try:
        registry.get_version(model, version)
    except UsageError:  # the registry adapter's "no such version"
        return False
    return True


def reconcile(repo_dir: Path, registry: RegistryPort, *, ref: str = "HEAD", model: str | None = None,
              check: bool = False, log: Callable[[str], None] = lambda _: None) -> list[ReconcileRow]:
    """Bring the registry's aliases in step with the GitOps repository at ``repo_dir``.

    Args:
        repo_dir: a clone (work tree or bare) of the GitOps repository.
        registry: the MLflow Model Registry (:class:`mlgate.edge.registry.Registry`).
        ref: the watched branch (default the checked-out ``HEAD``).
        model: only this registered model.
        check: report only; move nothing.

    Raises:
        UsageError: ``repo_dir`` is not a git repository, is a shallow clone, or ``ref`` is
        unknown; InfraError: git or the registry failed.
    """
    repo = git.open_repository(repo_dir)
    if git.is_shallow(repo):
        # a cut history hides older promotions and the commits that replaced them: any answer could be wrong
        raise UsageError(f"{repo} is a shallow clone: mlgate reconcile needs the whole history to tell what git "
                         "deploys (actions/checkout: fetch-depth: 0; GitLab CI: GIT_DEPTH: 0; or git fetch --unshallow)")
    head = git.resolve_commit(repo, ref)
    history, paths, owners = _history(repo, head)
    rows = []
    for entry in deployed(history, paths, owners):
        if isinstance(entry, Undecided):
            if model is None or entry.model == model:
                rows.append(ReconcileRow(entry.model, entry.environment, None, None, None, None, "undecided",
                                         entry.reason))
            continue
        assert isinstance(entry, Deployed)
        p = entry.promotion
        if model is not None and p.model != model:
            continue
        holder = registry.get_by_alias(p.model, p.alias)
        held = holder.version if holder is not None else None
        if not _registered(registry, p.model, p.version):
            rows.append(ReconcileRow(p.model, p.environment, p.alias, p.version, held, entry.commit, "undecided",
                                     f"promotion commit {entry.commit[:12]} deploys version {p.version}, which the "
                                     f"registry does not have: fix the manifest or register the version"))
            continue
        if check:
            state = "in step" if held == p.version else "differs"
        else:
            landing = land(registry, p, commit=entry.commit, at=entry.at)
            state = "moved" if landing.moved and held != p.version else "in step"
            if landing.moved:
                log(f"mlgate: {p.model} {p.environment}: alias {p.alias!r} -> v{p.version} "
                    f"(commit {entry.commit[:12]}{f', was v{held}' if held and held != p.version else ''})")
        rows.append(ReconcileRow(p.model, p.environment, p.alias, p.version, held, entry.commit, state))
    return rows
