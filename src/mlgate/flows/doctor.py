"""``mlgate doctor``: check the wiring a promotion will use, reading only.

The use case behind ``mlgate doctor`` and the bot's ``/doctor``: it loads ``.mlgate.yml`` and
asks, in the order a person reads them, whether the tracking server answers, whether the
registered model exists, and per environment whether the GitOps repository answers with the
credentials :func:`mlgate.flows.promote.writer_for` will use (mode ``push``: git, exactly as
:class:`mlgate.edge.git.PushWriter`; mode ``pull-request``: the forge client of
:func:`mlgate.edge.forges.forge_from_env`), whether the branch and the file exist, whether the
target resolves in the file (the promotion's own edit, :func:`mlgate.flows.promote.manifest_edit`,
applied to the text in memory) and whether the token may open a promotion PR/MR; then Prometheus
(canary analysis) and the Argo Server (``train.backend: argo``). Nothing is written anywhere.

The results are :class:`mlgate.core.doctor.Check` values; statuses and exit codes are decided
there. Every message passes through a :class:`mlgate.core.redact.Redactor` before it is returned.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Protocol

from mlgate.core import doctor as d
from mlgate.core.config import ArgoBackend, CanaryAnalysis, Config, Environment, load_file
from mlgate.core.doctor import Check
from mlgate.core.errors import ConfigError, InfraError, ManifestError, MlgateError, Unreachable, UsageError
from mlgate.core.gitmsg import git_said
from mlgate.core.promotion import template_values
from mlgate.core.redact import Redactor
from mlgate.core.urls import redact_url
from mlgate.edge.forges.base import ForgeBusy, ForgeError, ForgeUnreachable, RepoAccess, repo_path
from mlgate.edge.git import BranchProbe


class GitRemote(Protocol):
    """Read-only git calls (:mod:`mlgate.edge.git`: ``probe_branch``, ``read_remote_file``)."""

    def probe_branch(self, repository: str, branch: str) -> BranchProbe: ...
    def read_file(self, repository: str, branch: str, path: str) -> str | None: ...


class ForgeReads(Protocol):
    """Read-only forge calls (:class:`mlgate.edge.forges.github.GitHubForge`, ``GitLabForge``)."""

    name: str

    def repository_access(self, repo: str) -> RepoAccess: ...
    def branch_exists(self, repo: str, branch: str) -> bool: ...
    def read_file(self, repo: str, path: str, ref: str) -> str | None: ...


class TrackingServer(Protocol):
    """Read-only registry calls (:class:`mlgate.edge.registry.TrackingProbe`)."""

    def server_version(self) -> str: ...
    def model_exists(self, model: str) -> bool: ...


class _EdgeGit:
    def probe_branch(self, repository: str, branch: str) -> BranchProbe:
        from mlgate.edge.git import probe_branch

        return probe_branch(repository, branch)

    def read_file(self, repository: str, branch: str, path: str) -> str | None:
        from mlgate.edge.git import read_remote_file

        return read_remote_file(repository, branch, path)


def _edge_forge(repository: str, environ: Mapping[str, str]) -> ForgeReads:
    from mlgate.edge.forges import forge_from_env  # lazily: PyGithub/python-gitlab are heavy

    return forge_from_env(repository, environ)  # type: ignore[return-value]


def _edge_registry(uri: str) -> TrackingServer:
    from mlgate.edge.registry import TrackingProbe

    return TrackingProbe(uri, timeout=10.0)


def _edge_prometheus(analysis: CanaryAnalysis, environ: Mapping[str, str]) -> str:
    from mlgate.edge.prometheus import Prometheus

    token = environ.get(analysis.token_env) if analysis.token_env else None
    with Prometheus(analysis.prometheus, timeout=min(analysis.timeout, 10.0), token=token) as p:
        return p.build_info()


def _edge_argo(settings: ArgoBackend) -> str:
    from mlgate.edge.argo import fetch_template

    fetch_template(settings)
    return settings.template


@dataclass
class Services:
    """The edges the doctor talks to, as ``mlgate promote`` uses them (the bot hands in its own).

    ``forge_only``: every environment is written through the forge, in both modes (the bot's
    :class:`~mlgate.edge.forges.ForgeWriter`), so the repository is checked through ``forge_for``.
    ``tracking_uri``: the tracking URI for a config (the bot's rule); None keeps the CLI's
    (``MLFLOW_TRACKING_URI``, else ``tracking_uri``); returning None means no usable URI.
    ``argo``: None skips the Argo Server (the bot sends its Argo token only to its allowed servers).
    """

    git: GitRemote = field(default_factory=_EdgeGit)
    forge_for: Callable[[str, Mapping[str, str]], ForgeReads] = _edge_forge
    registry_for: Callable[[str], TrackingServer] = _edge_registry
    prometheus: Callable[[CanaryAnalysis, Mapping[str, str]], str] = _edge_prometheus
    argo: Callable[[ArgoBackend], str] | None = _edge_argo
    forge_only: bool = False
    tracking_uri: Callable[[Config], str | None] | None = None


def check(config_path: str | Path, *, env: str | None = None, environ: Mapping[str, str] | None = None,
          services: Services | None = None, redactor: Redactor | None = None, config_name: str | None = None,
          config_text: str | None = None) -> list[Check]:
    """Run every check for the config at ``config_path`` (or ``config_text``, the bot's copy from the
    default branch), for all environments or just ``env``.

    Returns the checks in reading order, secrets masked by ``redactor`` (default: the well-known
    shapes plus the tokens in ``environ``).

    Raises:
        UsageError: ``env`` names no environment of the config (exit 2).
    """
    environ = os.environ if environ is None else environ
    services = services or Services()
    name = config_name or str(config_path)
    redactor = redactor or Redactor(environ.get(k) for k in _SECRET_ENVS)
    checks: list[Check] = []
    cfg = _config(config_path, name, config_text, checks)
    if cfg is not None:
        envs = cfg.environments
        if env is not None:
            try:
                envs = [cfg.environment(env)]
            except KeyError as e:
                raise UsageError(str(e.args[0])) from None
        base = Path(config_path).resolve().parent
        checks += _tracking(cfg, base, environ, services)
        for e in envs:
            checks += _environment(cfg, e, base, name, environ, services)
        checks += _prometheus(envs, environ, services)
        checks += _argo(cfg, services)
    return [Check(c.id, redactor.text(c.title), c.status, redactor.text(c.detail), redactor.text(c.fix))
            for c in checks]


#: Environment variables whose values are secrets the doctor may meet in answers.
_SECRET_ENVS = ("MLGATE_GITHUB_TOKEN", "MLGATE_GITLAB_TOKEN", "MLGATE_GITOPS_TOKEN", "MLFLOW_TRACKING_TOKEN",
                "MLFLOW_TRACKING_PASSWORD", "ARGO_TOKEN")


def _config(path: str | Path, name: str, text: str | None, checks: list[Check]) -> Config | None:
    title = f"config {name} is valid"
    try:
        if text is not None:
            from mlgate.core.config import parse

            cfg = parse(text, name)
        else:
            cfg = load_file(path)
    except ConfigError as e:
        missing = any(p.message == "file not found" for p in e.problems)
        checks.append(d.fail("config", title, "\n".join(str(p) for p in e.problems),
                             f"write {name} (README, '.mlgate.yml'), or give the config with -c FILE" if missing else
                             f"fix the lines above ('mlgate config check -c {name}' shows the same)"))
        return None
    envs = ", ".join(e.name for e in cfg.environments) or "none"
    checks.append(d.ok("config", title, f"model {cfg.model}, {len(cfg.validate_.gates)} gate{'' if len(cfg.validate_.gates) == 1 else 's'}, environments: {envs}"))
    return cfg


def _classify(e: BaseException) -> str:
    """fail for an answer that proves a wrong wiring, unknown for one that proves nothing."""
    if isinstance(e, (Unreachable, ForgeUnreachable)):
        return d.FAIL
    if isinstance(e, ForgeBusy):
        return d.UNKNOWN
    if isinstance(e, ForgeError):
        return d.FAIL if e.status in (401, 403, 404, 0) else d.UNKNOWN
    if isinstance(e, InfraError):
        text = str(e)
        return d.FAIL if any(s in text for s in ("401", "403", "UNAUTHENTICATED", "PERMISSION_DENIED")) else d.UNKNOWN
    return d.FAIL  # UsageError, ConfigError, ManifestError: the input is wrong


def _tracking(cfg: Config, base: Path, environ: Mapping[str, str], services: Services) -> list[Check]:
    from mlgate.edge.registry import resolve_tracking_uri

    title = "tracking server answers"
    source = "MLFLOW_TRACKING_URI" if environ.get("MLFLOW_TRACKING_URI") else "tracking_uri"
    try:
        if services.tracking_uri is not None:
            source = "tracking_uri in bot.yml or an http(s) tracking_uri in .mlgate.yml"
            uri = services.tracking_uri(cfg)  # type: ignore[assignment]
            if uri is None:
                raise UsageError(f"tracking_uri {cfg.tracking_uri} is a local store only the machine that trains "
                                 "can read")
        else:
            uri = resolve_tracking_uri(cfg.tracking_uri, base, environ, create=False)
    except UsageError as e:
        if "no MLflow store at" in str(e) and services.tracking_uri is None:  # the first 'mlgate train' creates it
            return [d.ok("tracking", title, f"embedded store {cfg.tracking_uri} not created yet: the first "
                                            "'mlgate train' creates it (set MLFLOW_TRACKING_URI for a shared "
                                            "tracking server)"),
                    d.ok("model", f"registered model {cfg.model} exists", "will be created on first register")]
        return [d.fail("tracking", title, str(e), f"fix {source}"),
                d.skipped("model", f"registered model {cfg.model} exists", "no tracking server")]
    registry = services.registry_for(uri)
    shown = redact_url(uri)
    try:
        version = registry.server_version()
    except MlgateError as e:
        fix = (f"start the tracking server or fix {source} ({shown}); one just started answers a few seconds later"
               if isinstance(e, Unreachable)
               else f"check the tracking server's health at {shown}, then run mlgate doctor again")
        return [Check("tracking", title, _classify(e), str(e), fix),
                d.skipped("model", f"registered model {cfg.model} exists", "the tracking server did not answer")]
    out = [d.ok("tracking", title, f"{shown}: {version}")]
    mtitle = f"registered model {cfg.model} exists"
    try:
        exists = registry.model_exists(cfg.model)
    except MlgateError as e:
        out.append(Check("model", mtitle, _classify(e), str(e),
                         "give the credentials (MLFLOW_TRACKING_TOKEN, or MLFLOW_TRACKING_USERNAME and "
                         "MLFLOW_TRACKING_PASSWORD) read access to the registry"))
        return out
    except ImportError as e:  # the base install's mlflow-skinny reads no embedded or database store
        out.append(d.fail("model", mtitle, f"MLflow cannot read {shown} here: {e}",
                          "pip install 'mlgate[local]' (full MLflow) for an embedded or database store"))
        return out
    out.append(d.ok("model", mtitle, "yes" if exists else "not yet: it will be created on first register"))
    return out


@dataclass
class _Env:
    """The checks of one environment, filled in order; once one does not pass, the rest are skipped."""

    env: Environment
    config_name: str
    checks: list[Check] = field(default_factory=list)
    broken: str = ""

    def title(self, what: str) -> str:
        return f"{self.env.name}: {what}"

    def id(self, what: str) -> str:
        return f"env.{self.env.name}.{what}"

    def add(self, c: Check) -> bool:
        self.checks.append(c)
        if c.status != d.OK and not self.broken:
            self.broken = c.title
        return c.status == d.OK

    def skip(self, what: str, title: str) -> None:
        self.checks.append(d.skipped(self.id(what), self.title(title), f"'{self.broken}' did not pass"))


def _environment(cfg: Config, env: Environment, base: Path, config_name: str, environ: Mapping[str, str],
                 services: Services) -> list[Check]:
    from mlgate.edge.git import resolve_repository

    e = _Env(env, config_name)
    g = env.gitops
    repository = resolve_repository(g.repository, base)
    if g.mode == "pull-request" or services.forge_only:
        text = _via_forge(e, g.repository, environ, services)
    else:
        text = _via_git(e, repository, services)
    if text is None:
        return e.checks
    _target(e, cfg, text)
    return e.checks


def _via_git(e: _Env, repository: str, services: Services) -> str | None:
    g = e.env.gitops
    shown = redact_url(repository)
    probe = services.git.probe_branch(repository, g.branch)
    said = git_said(probe.stderr)
    if not e.add(d.ok(e.id("repository"), e.title(f"GitOps repository {shown} reachable (git, mode push)"), "git ls-remote answered")
                 if probe.reachable else
                 Check(e.id("repository"), e.title(f"GitOps repository {shown} reachable (git, mode push)"),
                       d.git_failure_status(said), said or "git ls-remote failed",
                       d.git_failure_fix(said, shown, e.config_name))):
        return _skip_rest(e, with_access=False)
    if not e.add(d.ok(e.id("branch"), e.title(f"branch {g.branch} exists"))
                 if probe.exists else
                 d.fail(e.id("branch"), e.title(f"branch {g.branch} exists"), f"{shown} has no branch {g.branch!r}",
                        f"push the branch, or fix gitops.branch of {e.env.name} in {e.config_name}")):
        return _skip_rest(e, with_access=False, after="branch")
    try:
        text = services.git.read_file(repository, g.branch, g.path)
    except MlgateError as exc:
        e.add(Check(e.id("file"), e.title(f"file {g.path} exists"), _classify(exc), str(exc),
                    "run mlgate doctor again; if it persists, check the git server"))
        return _skip_rest(e, with_access=False, after="file")
    return _file_found(e, text, shown)


def _file_found(e: _Env, text: str | None, shown: str) -> str | None:
    g = e.env.gitops
    title = e.title(f"file {g.path} exists")
    if text is None:
        e.add(d.fail(e.id("file"), title, f"no {g.path} on branch {g.branch} of {shown}",
                     f"commit the manifest there, or fix gitops.path of {e.env.name} in {e.config_name}"))
        return _skip_rest(e, with_access=False, after="file")
    e.add(d.ok(e.id("file"), title, f"on branch {g.branch}"))
    return text


def _skip_rest(e: _Env, *, with_access: bool, after: str = "repository") -> None:
    g = e.env.gitops
    order = [("branch", f"branch {g.branch} exists"), ("file", f"file {g.path} exists"),
             ("target", f"target {g.target.kind} resolves in {g.path}")]
    names = [n for n, _ in order]
    for what, title in order[names.index(after) + 1 if after in names else 0:]:
        e.skip(what, title)
    if with_access:
        e.skip("access", "the forge token may open a promotion PR/MR")
    return None


def _via_forge(e: _Env, repository: str, environ: Mapping[str, str], services: Services) -> str | None:
    g = e.env.gitops
    title = e.title(f"GitOps repository {redact_url(repository)} reachable (forge API, mode {g.mode})")
    try:
        forge = services.forge_for(repository, environ)
        repo = repo_path(repository)
        access = forge.repository_access(repo)
    except MlgateError as exc:
        e.add(Check(e.id("repository"), title, _classify(exc), str(exc), _forge_fix(exc, repository, e.config_name)))
        return _skip_rest(e, with_access=True)
    forge_name = "GitHub" if forge.name == "github" else "GitLab"
    if not access.exists:
        e.add(d.fail(e.id("repository"), title, f"{forge_name} answers 404 for {repo}: it does not exist or the "
                                                "token cannot see it",
                     f"create it, fix gitops.repository of {e.env.name} in {e.config_name}, or give the token "
                     "read access to it"))
        return _skip_rest(e, with_access=True)
    e.add(d.ok(e.id("repository"), title, f"{forge_name}: {repo}"))
    text = _forge_reads(e, forge, repo)
    _access(e, forge_name, repo, access)
    return text


def _forge_reads(e: _Env, forge: ForgeReads, repo: str) -> str | None:
    g = e.env.gitops
    step, title = "branch", e.title(f"branch {g.branch} exists")
    try:
        if not forge.branch_exists(repo, g.branch):
            e.add(d.fail(e.id(step), title, f"{repo} has no branch {g.branch!r}",
                         f"create the branch, or fix gitops.branch of {e.env.name} in {e.config_name}"))
            return _skip_rest(e, with_access=False, after=step)
        e.add(d.ok(e.id(step), title))
        step, title = "file", e.title(f"file {g.path} exists")
        text = forge.read_file(repo, g.path, g.branch)
    except MlgateError as exc:
        e.add(Check(e.id(step), title, _classify(exc), str(exc),
                    "run mlgate doctor again; if it persists, check the forge's status"))
        return _skip_rest(e, with_access=False, after=step)
    return _file_found(e, text, repo)


def _access(e: _Env, forge_name: str, repo: str, access: RepoAccess) -> None:
    can, role = access.can_open_pr, access.role
    title = e.title(f"the {forge_name} token may open a promotion {'PR' if forge_name == 'GitHub' else 'MR'}")
    if can:
        e.checks.append(d.ok(e.id("access"), title, f"{role} on {repo} (checked without writing)"))
    elif can is None:
        e.checks.append(d.unknown(e.id("access"), title, f"{forge_name} did not say what the token may do on {repo}",
                                  "check the token's role on the repository by hand"))
    elif forge_name == "GitHub":
        e.checks.append(d.fail(e.id("access"), title, f"{role} on {repo}: the token can read but not write",
                               f"give the token's account (or the GitHub App installation) write access to {repo}: "
                               "Contents and Pull requests: write"))
    else:
        e.checks.append(d.fail(e.id("access"), title, f"{role} on {repo}: below Developer (30)",
                               f"make the token's user (or the project/group access token) Developer or higher "
                               f"on {repo}"))


def _forge_fix(exc: BaseException, repository: str, config_name: str) -> str:
    text = str(exc)
    if "credentials" in text and ("MLGATE_GITHUB" in text or "MLGATE_GITLAB" in text):
        return "set the token the promotion uses (" + ("MLGATE_GITLAB_TOKEN" if "GitLab" in text
                                                       else "MLGATE_GITHUB_TOKEN") + ")"
    if "not a forge repository" in text or "segment" in text:
        return f"mode pull-request needs a forge repository (owner/name or its URL) in gitops.repository ({config_name})"
    if isinstance(exc, ForgeError) and exc.status == 401:
        return "the token was refused: set a valid MLGATE_GITHUB_TOKEN / MLGATE_GITLAB_TOKEN"
    if isinstance(exc, ForgeUnreachable):
        return "check MLGATE_GITHUB_API_URL / MLGATE_GITLAB_URL and the route to the forge"
    return f"run mlgate doctor again; if it persists, check the forge serving {redact_url(repository)}"


def _target(e: _Env, cfg: Config, text: str) -> None:
    from mlgate.flows.promote import manifest_edit

    g = e.env.gitops
    title = e.title(f"target {g.target.kind} resolves in {g.path}")
    values = template_values(cfg.model, "0", storage_uri=f"s3://mlgate-doctor/{cfg.model}/0", run_id="doctor")
    try:
        manifest_edit(e.env, values)(text)
    except (ManifestError, UsageError) as exc:
        e.add(d.fail(e.id("target"), title, str(exc),
                     f"fix gitops.target of {e.env.name} in {e.config_name}, or the manifest"))
        return
    e.add(d.ok(e.id("target"), title, "a dry-run edit changes only the target's line (nothing written)"))


def _prometheus(envs: list[Environment], environ: Mapping[str, str], services: Services) -> list[Check]:
    out: list[Check] = []
    seen: set[str] = set()
    for env in envs:
        analysis = env.canary.analysis if env.canary is not None else None
        if analysis is None or analysis.prometheus in seen:
            continue
        seen.add(analysis.prometheus)
        title = f"Prometheus {redact_url(analysis.prometheus)} answers ({env.name} canary analysis)"
        try:
            version = services.prometheus(analysis, environ)
        except MlgateError as exc:
            fix = ("fix canary.analysis.prometheus or the route to it" if isinstance(exc, Unreachable) else
                   f"set a token Prometheus accepts in ${analysis.token_env}" if isinstance(exc, UsageError) else
                   "run mlgate doctor again; if it persists, check Prometheus")
            out.append(Check(f"prometheus.{env.name}", title, _classify(exc), str(exc), fix))
            continue
        out.append(d.ok(f"prometheus.{env.name}", title, f"Prometheus {version}"))
    return out


def _argo(cfg: Config, services: Services) -> list[Check]:
    settings = cfg.train.argo
    if cfg.train.backend != "argo" or settings is None or services.argo is None:
        return []
    title = f"Argo Server {redact_url(settings.server)} answers (train.backend: argo)"
    try:
        template = services.argo(settings)
    except MlgateError as exc:
        fix = ("fix train.argo.server or the route to it" if isinstance(exc, Unreachable) else
               "run mlgate doctor again; if it persists, check the Argo Server" if isinstance(exc, InfraError)
               else str(exc).rsplit(";", 1)[-1].strip() or "fix train.argo")
        return [Check("argo", title, _classify(exc), str(exc), fix)]
    return [d.ok("argo", title, f"WorkflowTemplate {template} found in namespace {settings.namespace}")]
