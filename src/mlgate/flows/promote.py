"""The promotion engine: one flow that every trigger drives.

``mlgate promote`` (push or pull-request mode), the bot's ``/promote`` and ``/rollback``, and
the canary's steps all go through :func:`write_promotion`: the pure core composes the
promotion (:class:`mlgate.core.promotion.Promotion`: branch, title, body, commit message and
trailers) and the manifest edit (:func:`mlgate.core.manifests.target_edit`); a writer puts it
in git (:class:`mlgate.edge.git.PushWriter` pushes; :class:`mlgate.edge.forges.ForgeWriter`
opens or updates the promotion PR/MR, or commits through the forge's API in push mode).

An alias moves only when the change has landed (:func:`land`): right after a push, or when the
promotion PR/MR is merged (the bot's merge handler and :mod:`mlgate.flows.reconcile` both call
:func:`land`). Git is the truth of what runs where; the registry follows it.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Protocol

from mlgate.core.ci import ci_context
from mlgate.core.config import Environment
from mlgate.core.errors import Refused, UsageError
from mlgate.core.manifests import target_edit
from mlgate.core.promotion import (
    Change,
    Promotion,
    Trigger,
    WriteResult,
    eligibility,
    gate_summary,
    gates_fingerprint,
    template_values,
)
from mlgate.edge.git import PromotionWriter, PushWriter, resolve_repository
from mlgate.edge.registry import VersionInfo
from mlgate.flows.project import Project
from mlgate.flows.validate import pick_version


class RegistryPort(Protocol):
    """What :func:`land` needs of the MLflow Model Registry (:class:`mlgate.edge.registry.Registry`)."""

    def get_by_alias(self, model: str, alias: str) -> Any: ...
    def get_version(self, model: str, version: str) -> Any: ...
    def set_alias(self, model: str, alias: str, version: str) -> None: ...
    def set_tags(self, model: str, version: str, tags: Mapping[str, str]) -> None: ...


@dataclass(frozen=True)
class PromoteResult:
    """What ``mlgate promote`` did. ``landed``: the change is on the watched branch (push mode)
    and the alias moved; False: a promotion PR/MR waits for review (``url``), the alias has not
    moved. ``changed``: a new commit was made. ``alias_moved``: this call moved the alias."""

    model: str
    version: str
    environment: str
    alias: str
    commit: str | None
    url: str | None
    changed: bool
    diff: str
    repository: str
    path: str
    branch: str
    landed: bool
    alias_moved: bool
    #: when no --version/--alias was given: which version was chosen and why (:class:`Chosen`)
    chosen: dict[str, str | None] | None = None


@dataclass(frozen=True)
class Chosen:
    """The version ``mlgate promote`` chose when none was given, and why (``why``: "the challenger,
    v1, set 3 days ago"); ``newer``: a newer version whose gates passed, when there is one."""

    version: str
    why: str
    newer: str | None = None

    def lines(self) -> list[str]:
        out = [f"mlgate: promoting v{self.version}: {self.why} (give --version N to choose another)"]
        if self.newer:
            out.append(f"mlgate: note: v{self.newer} is newer than v{self.version} and its gates passed")
        return out


def _age(stamp: str | None, now: float) -> str:
    """``set 3 days ago`` from an ISO 8601 UTC stamp ("" when unknown)."""
    import calendar

    try:
        then = calendar.timegm(time.strptime(stamp or "", "%Y-%m-%dT%H:%M:%SZ"))
    except ValueError:
        return ""
    secs = max(0, int(now - then))
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute")):
        if secs >= size:
            n = secs // size
            return f", set {n} {unit}{'s' if n != 1 else ''} ago"
    return ", set just now"


def explain_choice(project: Project, env: Environment, alias: str, info: VersionInfo,
                   now: Callable[[], float] = time.time) -> Chosen:
    """Why ``info`` (the holder of ``alias``, :func:`default_promotion_version`) was chosen, and
    the newest version whose gates passed when it is newer. The alias's age comes from mlgate's
    own tags (MLflow records no time for an alias): ``mlgate.promoted.<env>.at`` for an
    environment's alias, ``mlgate.gates.at`` for the challenger."""
    if env.requires:
        stamp = info.tags.get(f"mlgate.promoted.{env.requires}.at")
        why = f"the version that {env.requires} holds (alias {alias!r}{_age(stamp, now())})"
    else:
        why = f"the {alias}, v{info.version}{_age(info.tags.get('mlgate.gates.at'), now())}"
    passed = [v for v in project.registry.versions(project.config.model) if v.tags.get("mlgate.gates") == "passed"]
    newest = max(passed, key=lambda v: int(v.version), default=None)
    newer = newest.version if newest is not None and int(newest.version) > int(info.version) else None
    return Chosen(info.version, why, newer)


@dataclass(frozen=True)
class Landing:
    """What :func:`land` did: ``previous`` held the alias before; ``moved``: the alias or the
    promotion tags changed (False: a second run over the same landing)."""

    previous: str | None
    moved: bool


def manifest_edit(env: Environment, values: Mapping[str, str]) -> Callable[[str], str]:
    """A pure ``text -> new text`` function applying the environment's GitOps target."""

    def apply(text: str) -> str:
        return target_edit(text, env.gitops.target, values, env.gitops.path).text

    return apply


def write_promotion(promotion: Promotion, env: Environment, values: Mapping[str, str], writer: PromotionWriter, *,
                    repository: str | None = None, body: str | None = None) -> WriteResult:
    """Edit the environment's manifest for ``promotion`` and hand the commit to ``writer``.

    Args:
        values: the placeholders of the target's value template (:func:`template_values`).
        writer: pushes (:class:`~mlgate.edge.git.PushWriter`) or opens a PR/MR
            (:class:`~mlgate.edge.forges.ForgeWriter`).
        repository: the GitOps repository as the writer wants it (default ``env.gitops.repository``).
        body: the PR/MR body (default :meth:`Promotion.body`).

    Raises:
        ManifestError/UsageError: the edit cannot be made; InfraError/ForgeError: git or forge trouble.
    """
    change = Change(repository or env.gitops.repository, env.gitops.branch, env.gitops.path, promotion.message(),
                    manifest_edit(env, values), promotion=promotion, body=body)
    return writer.write(change)


def land(registry: RegistryPort, promotion: Promotion, *, commit: str | None, url: str | None = None,
         at: str | None = None, now: Callable[[], float] = time.time) -> Landing:
    """The promotion is in git: move the environment's alias and tag the version (idempotent).

    Tags ``mlgate.promoted.<env>.at`` (``at``, else now, ISO 8601 UTC), ``.commit`` (the commit
    that holds the change on the watched branch), ``.url`` (the PR/MR), and
    ``mlgate.previous.<env>`` (the version that held the alias before). A second call for the
    same landing changes nothing.

    Raises:
        InfraError: the registry is unreachable.
    """
    model, env, version = promotion.model, promotion.environment, promotion.version
    before = registry.get_by_alias(model, promotion.alias)
    previous = before.version if before is not None else None
    info = registry.get_version(model, version)
    tags = dict(getattr(info, "tags", {}) or {})
    if previous == version and tags.get(f"mlgate.promoted.{env}.commit") == commit and f"mlgate.promoted.{env}.at" in tags:
        return Landing(previous, False)
    if previous != version:
        registry.set_alias(model, promotion.alias, version)
    new = {f"mlgate.promoted.{env}.at": at or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now()))}
    if commit:
        new[f"mlgate.promoted.{env}.commit"] = commit
    if url:
        new[f"mlgate.promoted.{env}.url"] = url
    if previous and previous != version:
        new[f"mlgate.previous.{env}"] = previous
    registry.set_tags(model, version, new)
    return Landing(previous, True)


def writer_for(mode: str, environ: Mapping[str, str] | None = None, *,
               config_file: str = ".mlgate.yml") -> PromotionWriter:
    """The writer of a GitOps mode: ``push`` → git; ``pull-request`` → the forge named by
    ``MLGATE_*`` variables (:func:`mlgate.edge.forges.writer_from_env`). ``config_file`` is the
    config the GitOps settings came from, named in configuration errors.

    Raises:
        UsageError: an unknown mode, or pull-request mode without the forge libraries
            (``pip install 'mlgate[bot]'``); ForgeError: no token for the forge.
    """
    if mode == "push":
        return PushWriter(config_file=config_file)
    if mode == "pull-request":
        try:
            # lazily: PyGithub and python-gitlab are the bot extra's, and heavy to import
            from mlgate.edge.forges import writer_from_env
        except ImportError as e:
            raise UsageError(f"GitOps mode 'pull-request' needs the forge libraries ({e.name}): "
                             "pip install 'mlgate[bot]', or use mode 'push'") from None
        return writer_from_env(environ)
    raise UsageError(f"unknown GitOps mode {mode!r} (push or pull-request)")


def trigger_from_env(environ: Mapping[str, str]) -> Trigger:
    """Who asks for a promotion run from a shell: a CI job (GitHub Actions' ``GITHUB_REPOSITORY``
    and ``GITHUB_ACTOR``; GitLab CI's ``CI_PROJECT_PATH`` and ``GITLAB_USER_LOGIN``) names its
    source repository, so that the bot can read that repository's policy when the promotion PR
    merges; anything else is a ``cli`` trigger."""
    ci = ci_context(environ)
    if ci.system == "github":
        return Trigger("ci", actor=environ.get("GITHUB_ACTOR") or None, repo=environ.get("GITHUB_REPOSITORY") or None,
                       forge="github", url=ci.job_url)
    if ci.system == "gitlab":
        return Trigger("ci", actor=environ.get("GITLAB_USER_LOGIN") or None, repo=environ.get("CI_PROJECT_PATH") or None,
                       forge="gitlab", url=ci.job_url)
    return Trigger("cli")


def default_promotion_version(project: Project, env: Environment) -> tuple[str | None, str | None]:
    """(version, alias) to promote when none is given: the version held by the required
    environment, else the ``challenger``."""
    if env.requires:
        return None, project.config.environment(env.requires).registry_alias
    return None, "challenger"


def check_eligible(project: Project, env: Environment, info: VersionInfo) -> None:
    """Refuse (exit 1) a version that :func:`mlgate.core.promotion.eligibility` does not pass."""
    cfg, reg = project.config, project.registry
    holder = reg.get_by_alias(cfg.model, cfg.environment(env.requires).registry_alias) if env.requires else None
    checks = eligibility(cfg.model, info.version, env, status=info.status or "READY", tags=info.tags,
                         expected_fingerprint=gates_fingerprint(cfg),
                         required_holder=holder.version if holder else None)
    failed = [c for c in checks if not c.ok]
    if failed:
        raise Refused(f"refusing to promote {cfg.model} v{info.version} to {env.name}: "
                      + "; ".join(c.detail for c in failed))


def promote(project: Project, to: str, *, version: str | None = None, alias: str | None = None,
            trigger: Trigger | None = None, writer: PromotionWriter | None = None,
            now: Callable[[], float] = time.time, note: Callable[[str], None] | None = None) -> PromoteResult:
    """Promote a model version to environment ``to`` through its GitOps repository.

    Refuses a version whose gates did not pass under the current gates, or that the
    ``requires`` environment does not hold. Edits the environment's manifest minimally and
    writes it with the promotion's commit message: pushed to the branch in mode ``push`` (the
    alias moves at once), or as a promotion PR/MR on ``mlgate/promote/<model>/<env>/v<version>``
    in mode ``pull-request`` (the alias moves when it is merged: the bot, or ``mlgate reconcile``).
    Without ``version`` and ``alias`` the choice and its reason go to ``note`` (and the result's
    ``chosen``) before anything else is decided.

    Raises:
        Refused (exit 1), UsageError/ManifestError (exit 2), InfraError/ForgeError (exit 3).
    """
    cfg, reg = project.config, project.registry
    try:
        env = cfg.environment(to)
    except KeyError as e:
        raise UsageError(str(e.args[0])) from None
    if env.canary is not None and reg.get_by_alias(cfg.model, env.registry_alias) is not None:
        # the first version of a canary environment has no primary to share traffic with
        raise Refused(
            f"environment {to!r} promotes through a canary: use 'mlgate canary start --to {to}' "
            "(or '/promote' in a pull request), which moves traffic step by step"
        )
    chosen = None
    if version is None and alias is None:
        version, alias = default_promotion_version(project, env)
        info = pick_version(project, version, alias)
        chosen = explain_choice(project, env, alias or "", info, now)
        for line in chosen.lines():
            (note or (lambda _m: None))(line)
    else:
        info = pick_version(project, version, alias)
    info = reg.wait_ready(cfg.model, info.version, cfg.validate_.registration_timeout)
    check_eligible(project, env, info)
    promotion = Promotion(cfg.model, info.version, env.name, env.registry_alias,
                          trigger=trigger or trigger_from_env(os.environ),
                          gates=gate_summary(info.tags), run_id=info.run_id, model_uri=info.model_uri)
    values = template_values(cfg.model, info.version, storage_uri=info.storage_uri or info.source,
                             run_id=info.run_id)
    values["model_uri"] = info.model_uri
    repo = resolve_repository(env.gitops.repository, project.base_dir)
    result = write_promotion(promotion, env, values, writer or writer_for(env.gitops.mode, config_file=project.config_name),
                             repository=repo)
    moved = False
    if result.landed:
        at = None
        if not result.changed and f"mlgate.promoted.{env.name}.at" in info.tags:
            # a no-op promotion keeps the time and commit of the one that put the version there
            at = info.tags[f"mlgate.promoted.{env.name}.at"]
            commit = info.tags.get(f"mlgate.promoted.{env.name}.commit", result.commit)
        else:
            commit = result.commit
        moved = land(reg, promotion, commit=commit, at=at, now=now).moved
    return PromoteResult(cfg.model, info.version, env.name, env.registry_alias, result.commit, result.url,
                         result.changed, result.diff, repo, env.gitops.path, promotion.branch, result.landed, moved,
                         {"version": chosen.version, "why": chosen.why, "newer_passed": chosen.newer} if chosen else None)
