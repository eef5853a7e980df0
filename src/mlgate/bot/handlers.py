"""The worker's delivery handler: normalise → parse → gather facts → decide → promote → reply → audit.

Edge: talks to the forge (through :mod:`mlgate.forges`), the registry
(:class:`mlgate.registry.Registry`) and the store. Decisions are made by the pure
:func:`mlgate.policy.decide` over facts gathered here.

Safety properties (issue 3):

- The policy is read from ``.mlgate.yml`` on the repository's **default branch** (named by
  the signed payload), never from the PR head: a PR cannot lower its own gates.
- Each command acts once: its effect key is the comment id (``<forge>:<repo>:comment:<id>:<n>:<name>``),
  claimed in the store, so the same comment through two hooks (organisation and
  repository, two delivery ids) or a redelivery acts once; a retry of the same delivery
  continues its own claim.
- One promotion per (model, environment) at a time: a lock in the store; a second
  ``/promote`` for that target while one runs gets a reply saying so.
- One mlgate comment per PR/MR, found by a hidden marker (its id is kept in the store) and
  updated in place; the ``mlgate/gates`` commit status follows reviews and pushes.
- Every decision, allowed or refused, is appended to the audit table.

Errors: forge rate limits/outages and an unreachable registry raise :class:`Retryable`
(the worker retries the delivery later); a refusal, a bad config or a manifest that cannot
be edited is answered in the PR and ends the delivery.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Callable

import structlog

from mlgate import commands as cmdparse
from mlgate.commands import Command, CommandError
from mlgate.config import Config, Environment
from mlgate.errors import ConfigError, InfraError, MlgateError
from mlgate.events import Event, Ignored, normalize
from mlgate.policy import Decision, VersionFacts, decide, latest_states
from mlgate.bot import promotion as promo

log = structlog.get_logger("mlgate.bot.handlers")

CONFIG_FILE = ".mlgate.yml"
#: Seconds a (model, environment) promotion lock lives unless released (a crashed worker's lock expires).
LOCK_TTL = 900.0


class Retryable(Exception):
    """A temporary failure: the worker retries the delivery after ``retry_after`` seconds (None: backoff)."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class HandlerContext:
    """What :func:`handle` needs; built once by :func:`make_context` when the server starts.

    ``forges(name, installation_id)`` returns a fresh forge client (a GitHub App installation
    token is minted per delivery and refreshed before it expires). ``registry_factory(uri)``
    returns a :class:`mlgate.registry.Registry`.
    """

    settings: Any
    store: Any
    clock: Callable[[], datetime] = _utcnow
    forges: Callable[[str, int | None], Any] | None = None
    registry_factory: Callable[[str], Any] | None = None
    lock_ttl: float = LOCK_TTL


def make_context(settings: Any, store: Any) -> HandlerContext:
    """The context the server passes to every :func:`handle` call."""
    from mlgate.forges import make_forge

    registries: dict[str, Any] = {}
    guard = threading.Lock()

    def registry_factory(uri: str) -> Any:
        from mlgate.registry import Registry

        with guard:
            if uri not in registries:
                registries[uri] = Registry(uri)
            return registries[uri]

    return HandlerContext(
        settings=settings, store=store, clock=_utcnow,
        forges=lambda name, inst: make_forge(name, settings, inst), registry_factory=registry_factory,
    )


# --------------------------------------------------------------------------- entry point


def handle(delivery: Any, ctx: HandlerContext) -> str:
    """Process one stored delivery; returns the outcome text shown by ``mlgate bot deliveries``.

    Raises:
        Retryable: the forge or the registry is temporarily unavailable.
        MlgateError: a problem retrying will not fix (the worker marks the delivery failed).
    """
    ev = normalize(delivery.forge, delivery.event, delivery.payload, bot_login=getattr(ctx.settings, "bot_login", None))
    if isinstance(ev, Ignored):
        log.info("delivery ignored", delivery=delivery.id, reason=ev.reason)
        return f"ignored: {ev.reason}"
    from mlgate.forges.base import ForgeBusy

    try:
        forge = ctx.forges(ev.forge, ev.installation_id)  # type: ignore[misc]
        run = _Run(ev=ev, delivery=delivery, ctx=ctx, forge=forge)
        if ev.kind == "comment":
            return run.on_comment()
        if ev.kind == "pull_request" and ev.action == "merged":
            return run.on_merged()
        if ev.kind in ("review", "pull_request"):
            return run.refresh_status()
        return "push: nothing to do (pull request updates arrive as pull_request / merge request events)"
    except ForgeBusy as e:
        raise Retryable(str(e), e.retry_after) from None
    except InfraError as e:
        raise Retryable(str(e)) from None
    except MlgateError:
        raise
    except Exception as e:
        refusal = _forge_refusal(e)
        if refusal is None:
            raise
        raise refusal from None


def _forge_refusal(e: Exception) -> MlgateError | None:
    """A forge client's 4xx answer as a ForgeError (retrying will not help), else None."""
    from mlgate.forges.base import ForgeError

    module = type(e).__module__.split(".")[0]
    if module == "github":
        status = int(getattr(e, "status", 0) or 0)
        data = getattr(e, "data", None)
        msg = data.get("message") if isinstance(data, dict) else str(e)
        return ForgeError(f"GitHub answered {status}: {msg}", status)
    if module == "gitlab":
        status = int(getattr(e, "response_code", 0) or 0)
        return ForgeError(f"GitLab answered {status}: {getattr(e, 'error_message', e)}", status)
    return None


# --------------------------------------------------------------------------- one delivery


@dataclass
class _Run:
    ev: Event
    delivery: Any
    ctx: HandlerContext
    forge: Any
    _config: Config | str | None = None
    _pr: Any = None
    _candidate_info: Any = None

    # ---------------------------------------------------------------- small helpers

    @property
    def store(self) -> Any:
        return self.ctx.store

    def now(self) -> datetime:
        return self.ctx.clock()

    def say(self, text: str, number: int | None = None, repo: str | None = None) -> None:
        """Create or update mlgate's one comment on the PR/MR."""
        repo = repo or self.ev.repo
        number = number or self.ev.number
        key = f"comment:{self.ev.forge}:{repo}:{number}"
        known = self.store.kv_get(key)
        cid, _url = self.forge.upsert_comment(repo, number, text, int(known) if known else None)
        if str(cid) != known:
            self.store.kv_set(key, str(cid))

    def audit(self, **record: Any) -> None:
        base = {
            "at": self.now().isoformat(), "forge": self.ev.forge, "repo": self.ev.repo, "pr": self.ev.number,
            "delivery": self.delivery.id, "actor": self.ev.actor,
        }
        self.store.audit({**base, **record})

    def config(self, repo: str | None = None, default_branch: str | None = None) -> Config | str:
        """``.mlgate.yml`` from the default branch (never the PR head), or a reply saying what is wrong."""
        if repo is None and self._config is not None:
            return self._config
        repo_ = repo or self.ev.repo
        branch = default_branch or (self.ev.default_branch if repo is None else None) or self.forge.default_branch(repo_)
        text = self.forge.read_file(repo_, CONFIG_FILE, branch)
        if text is None:
            out: Config | str = f"there is no `{CONFIG_FILE}` on the default branch `{branch}` of {repo_}"
        else:
            from mlgate import config as cfgmod

            try:
                out = cfgmod.parse(text, CONFIG_FILE)
            except ConfigError as e:
                out = f"`{CONFIG_FILE}` on the default branch `{branch}` is invalid:\n\n```\n{e}\n```"
        if repo is None:
            self._config = out
        return out

    def pr(self) -> Any:
        if self._pr is None:
            self._pr = self.forge.pull_request(self.ev.repo, self.ev.number)
        return self._pr

    def tracking_uri(self, cfg: Config) -> str | None:
        """bot.yml ``tracking_uri``, else the model's when it is a server (a file store is
        only meaningful on the machine that trained); None when neither is usable."""
        configured = getattr(self.ctx.settings, "tracking_uri", None)
        if configured:
            return configured
        uri = cfg.tracking_uri
        return uri if uri.startswith(("http://", "https://", "databricks")) else None

    def registry(self, cfg: Config) -> Any:
        uri = self.tracking_uri(cfg)
        if uri is None:
            raise MlgateError(
                f"the MLflow tracking URI in {CONFIG_FILE} ({cfg.tracking_uri}) is a local file store the bot cannot "
                "read: set tracking_uri in bot.yml or an http(s) tracking_uri in .mlgate.yml"
            )
        return self.ctx.registry_factory(uri)  # type: ignore[misc]

    # ---------------------------------------------------------------- comments

    def on_comment(self) -> str:
        cmds = cmdparse.parse(self.ev.body)
        if not cmds:
            return "no command in the comment"
        outcomes = []
        for i, cmd in enumerate(cmds):
            key = f"{self.ev.comment_key}:{i}:{cmd.name}"
            if not self.store.claim_effect(key, self.delivery.id):
                outcomes.append(f"{cmd.name}: already handled (the same comment arrived through another delivery)")
                continue
            outcomes.append(self.run_command(cmd))
        return "; ".join(outcomes)

    def run_command(self, cmd: Command | CommandError) -> str:
        if isinstance(cmd, CommandError):
            self.say(promo.reply("usage", cmd.reply()))
            self.audit(command=cmd.text, allowed=False, reasons=[cmd.message], outcome="usage error")
            return f"{cmd.name}: usage error ({cmd.message})"
        if cmd.name == "help":
            self.say(promo.reply("help", cmdparse.help_text()))
            return "help: replied"
        if cmd.name in ("train", "abort"):
            msg = (f"`/{cmd.name}` needs an Argo Workflows training backend, which this bot does not run; "
                   "start training from CI with `mlgate train`")
            self.say(promo.reply(f"`{cmd.text}` is not available", msg))
            self.audit(command=cmd.text, allowed=False, reasons=[msg], outcome="not available")
            return f"{cmd.name}: not available"
        try:
            return self.promote_or_status(cmd)
        except MlgateError as e:
            from mlgate.forges.base import ForgeBusy

            if isinstance(e, (ForgeBusy, InfraError)):
                raise
            text = str(e).splitlines()[0] if str(e) else type(e).__name__
            self.say(promo.reply(f"`{cmd.text}` failed", str(e)))
            self.audit(command=cmd.text, allowed=False, reasons=[text], outcome="failed")
            return f"{cmd.name}: failed ({text})"

    def promote_or_status(self, cmd: Command) -> str:
        cfg = self.config()
        if isinstance(cfg, str):
            self.say(promo.reply(f"`{cmd.text}`: cannot read the policy", cfg))
            self.audit(command=cmd.text, allowed=False, reasons=[cfg.splitlines()[0]], outcome="no policy")
            return f"{cmd.name}: {cfg.splitlines()[0]}"
        if cmd.name == "rollback":
            cmd = cmdparse.resolve_rollback_word(cmd, cfg.model, [e.name for e in cfg.environments])
        target = promo.resolve_target(cmd, cfg)
        if isinstance(target, str):
            self.say(promo.reply(f"`{cmd.text}`", target))
            self.audit(command=cmd.text, allowed=False, reasons=[target], outcome="bad target")
            return f"{cmd.name}: {target}"
        model, env = target
        if cmd.name == "status":
            return self.status(cmd, cfg, model, env)

        lock = f"promote:{model}:{env.name}"
        if not self.store.acquire_lock(lock, self.delivery.id, self.ctx.lock_ttl, self.now()):
            msg = (f"a promotion of `{model}` to `{env.name}` is already running; this `/{cmd.name}` was not run. "
                   "Comment again when it has finished.")
            self.say(promo.reply(f"`{cmd.text}`: busy", msg))
            self.audit(command=cmd.text, model=model, environment=env.name, allowed=False, reasons=[msg], outcome="busy")
            return f"{cmd.name}: busy ({model} to {env.name} is already being promoted)"
        try:
            return self.promote(cmd, cfg, model, env)
        finally:
            self.store.release_lock(lock, self.delivery.id)

    # ---------------------------------------------------------------- facts

    def snapshot(self, cfg: Config, env: Environment, model: str, command: str, actor: str | None,
                 version_hint: str | None) -> tuple[promo.Snapshot, str | None]:
        """Gather everything the policy looks at; returns (snapshot, version to promote)."""
        f, ev = self.forge, self.ev
        pr = self.pr()
        checked_env = promo.environment_for_command(cfg, env, command)
        perm, teams = "none", frozenset()
        if actor and command != "status":
            perm = f.permission(ev.repo, actor, ev.actor_id if actor == ev.actor else None)
            p = checked_env.promoters
            from mlgate.policy import permission_rank

            if actor not in p.users and permission_rank(perm) < permission_rank(p.min_permission) and p.teams:
                teams = frozenset(t for t in p.teams if f.in_team(t, actor, ev.actor_id))
        reviews: tuple = ()
        approved_by = None
        approval_commits: dict[str, str] = {}
        users: set[str] = set()
        if ev.forge == "gitlab":
            appr = f.approvals(ev.repo, ev.number)
            approved_by = appr.approved_by if appr else ()
            users = set(approved_by)
            for u in users:
                seen = self.store.kv_get(f"gitlab:approval:{ev.repo}:{ev.number}:{u}")
                if seen:
                    approval_commits[u] = seen
        else:
            reviews = tuple(f.reviews(ev.repo, ev.number))
            users = set(latest_states(reviews))
        a = env.approvals
        committers = frozenset() if a.committers_count else frozenset(f.committers(ev.repo, ev.number))
        user_permissions: dict[str, str] = {}
        user_teams: dict[str, frozenset[str]] = {}
        for u in sorted(users):
            if u == pr.author or u.endswith("[bot]"):
                continue
            if not a.reviewers and not a.teams:
                user_permissions[u] = f.permission(ev.repo, u)
            elif a.teams and u not in a.reviewers:
                user_teams[u] = frozenset(t for t in a.teams if f.in_team(t, u))

        reg = self.registry(cfg)
        head = reg.find_by_commit(model, pr.head_sha) if pr.head_sha else None
        head_facts = _vfacts(head)
        aliases: dict[str, str] = {}
        for e in cfg.environments:
            if e.name in (env.name, env.requires):
                held = reg.get_by_alias(model, e.registry_alias)
                if held is not None:
                    aliases[e.name] = held.version
        version = version_hint
        if command == "rollback":
            current = aliases.get(env.name)
            version = None
            if current:
                cur = reg.get_version(model, current)
                version = cur.tags.get(f"mlgate.previous.{env.name}") or None
        elif version is None and head is not None:
            version = head.version
        cand = None
        if version is not None:
            if head is not None and head.version == version:
                cand = head
            else:
                from mlgate.errors import UsageError

                try:
                    cand = reg.get_version(model, version)
                except UsageError:
                    cand = None
        snap = promo.Snapshot(
            config=cfg, head_sha=pr.head_sha, pr_author=pr.author, actor_permission=perm, actor_teams=teams,
            reviews=reviews, gitlab_approved_by=approved_by, gitlab_approval_commits=approval_commits,
            committers=committers, user_permissions=user_permissions, user_teams=user_teams,
            head_candidate=head_facts, candidate=_vfacts(cand), aliases=aliases,
            bots=frozenset({b for b in [getattr(self.ctx.settings, "bot_login", None)] if b}),
        )
        self._candidate_info = cand
        return snap, version

    # ---------------------------------------------------------------- commands

    def status(self, cmd: Command, cfg: Config, model: str, env: Environment) -> str:
        snap, version = self.snapshot(cfg, env, model, "status", None, cmd.version)
        decision = decide(promo.facts_for(self.ev.forge, "status", self.ev.actor, model, env, version, snap))
        held = ", ".join(f"`{k}`: version {v}" for k, v in sorted(snap.aliases.items())) or "no environment holds a version yet"
        head = f"version {snap.head_candidate.version}" if snap.head_candidate else "no version registered"
        body = f"Head commit `{(snap.head_sha or '?')[:7]}`: {head}. Environments: {held}."
        verdict = "ready to promote" if decision.allowed else "not ready"
        self.say(promo.reply(f"status for `{env.name}`: {verdict}", body, decision))
        self.set_gates_status(decision, snap.head_sha)
        return f"status: {verdict}"

    def promote(self, cmd: Command, cfg: Config, model: str, env: Environment) -> str:
        ev = self.ev
        snap, version = self.snapshot(cfg, env, model, cmd.name, ev.actor, cmd.version)
        facts = promo.facts_for(ev.forge, cmd.name, ev.actor, model, env, version, snap)
        decision = decide(facts)
        record = dict(command=cmd.text, model=model, version=version, environment=env.name,
                      head_sha=snap.head_sha, allowed=decision.allowed, reasons=decision.reasons,
                      approvers=decision.approvers, not_counted=decision.not_counted)
        self.set_gates_status(decide(replace(facts, command="status")), snap.head_sha)
        if not decision.allowed:
            self.say(promo.refusal(cmd.text, decision))
            self.audit(**record, outcome="refused")
            log.info("command refused", delivery=self.delivery.id, command=cmd.text, reasons=decision.reasons)
            return f"{cmd.name}: refused ({decision.reasons[0]})"

        cand = self._candidate_info
        tracking = self.tracking_uri(cfg)
        pr = self.pr()
        body = promo.promotion_body(
            model=model, version=version, env=env, decision=decision, source_url=pr.url, source_repo=ev.repo,
            source_number=ev.number, forge=ev.forge, actor=ev.actor, tracking_uri=tracking,
            run_id=cand.run_id if cand else None, command=cmd.name,
        )
        result, req = promo.open_promotion(
            self.forge, env=env, model=model, version=version, storage_uri=cand.storage_uri or cand.source,
            run_id=cand.run_id, body=body, command=cmd.name,
        )
        try:
            from mlgate.bot import metrics

            metrics.PROMOTION_API_CALLS.labels(forge=ev.forge).observe(result.api_calls)
        except Exception:  # metrics are optional outside the server
            pass
        if not result.changed and result.url is None:
            msg = f"`{env.name}` already runs `{model}` version {version} (`{env.gitops.path}` holds it); nothing to do"
            self.say(promo.reply(f"`{cmd.text}`: nothing to do", msg, decision))
            self.audit(**record, outcome="already deployed", api_calls=result.api_calls)
            return f"{cmd.name}: nothing to do ({env.name} already holds version {version})"
        if req.mode == "push":
            self.move_alias(cfg, model, env, version, where=f"{req.repo}@{result.commit}", reg=self.registry(cfg))
            msg = f"Committed to `{req.repo}` branch `{req.base}` ({(result.commit or '')[:7]}); alias `{env.registry_alias}` moved."
            self.say(promo.reply(f"`{model}` version {version} promoted to `{env.name}`", msg, decision))
            self.audit(**record, outcome="pushed", commit=result.commit, api_calls=result.api_calls)
            return f"{cmd.name}: pushed {result.commit}"
        verb = "opened" if result.created else "updated"
        msg = f"Promotion PR {verb}: {result.url}\n\nMerging it moves alias `{env.registry_alias}` to version {version}."
        self.say(promo.reply(f"promotion of `{model}` version {version} to `{env.name}`", msg, decision))
        self.audit(**record, outcome=f"promotion PR {verb}", promotion_pr=result.url, api_calls=result.api_calls)
        return f"{cmd.name}: promotion PR {verb} {result.url}"

    def set_gates_status(self, decision: Decision, sha: str | None) -> None:
        if not sha:
            return
        state = "success" if decision.allowed else "pending"
        self.forge.set_status(self.ev.repo, sha, state, decision.summary())

    # ---------------------------------------------------------------- reviews and pushes

    def refresh_status(self) -> str:
        ev = self.ev
        if ev.forge == "gitlab" and ev.kind == "review" and ev.actor:
            key = f"gitlab:approval:{ev.repo}:{ev.number}:{ev.actor}"
            self.store.kv_set(key, (ev.head_sha or "") if ev.review_state == "approved" else "")
        from mlgate.forges.base import parse_promotion_branch

        if parse_promotion_branch(ev.head_ref):
            return f"{ev.kind} {ev.action} on a promotion PR: nothing to check"
        cfg = self.config()
        if isinstance(cfg, str):
            return f"{ev.kind} {ev.action}: {cfg.splitlines()[0]}"
        if not cfg.environments:
            return f"{ev.kind} {ev.action}: no environments configured"
        env = cfg.environments[0]
        snap, version = self.snapshot(cfg, env, cfg.model, "status", None, None)
        decision = decide(promo.facts_for(ev.forge, "status", ev.actor, cfg.model, env, version, snap))
        self.set_gates_status(decision, snap.head_sha)
        return f"{ev.kind} {ev.action}: mlgate/gates {'success' if decision.allowed else 'pending'} ({decision.summary()})"

    # ---------------------------------------------------------------- merged promotion PRs

    def on_merged(self) -> str:
        from mlgate.forges.base import parse_promotion_branch

        ev = self.ev
        parsed = parse_promotion_branch(ev.head_ref)
        if parsed is None:
            return f"merged PR #{ev.number} is not a promotion PR"
        model, env_name, version = parsed
        if not self.store.claim_effect(f"{ev.forge}:{ev.repo}:merged:{ev.number}", self.delivery.id):
            return f"merge of #{ev.number} already handled"
        hidden = promo.parse_hidden(ev.body) or {}
        source_repo = hidden.get("source_repo")
        if not source_repo:
            self.audit(event="merged", model=model, version=version, environment=env_name, allowed=False,
                       reasons=["the promotion PR body has no mlgate block naming its source repository"],
                       outcome="alias not moved")
            return f"merged #{ev.number}: no source repository recorded; alias not moved"
        cfg = self.config(repo=source_repo)
        if isinstance(cfg, str):
            self.audit(event="merged", model=model, version=version, environment=env_name, allowed=False,
                       reasons=[cfg.splitlines()[0]], outcome="alias not moved")
            return f"merged #{ev.number}: {cfg.splitlines()[0]}"
        if cfg.model != model or env_name not in [e.name for e in cfg.environments]:
            reason = f"{source_repo}'s {CONFIG_FILE} does not configure {model} / {env_name}"
            self.audit(event="merged", model=model, version=version, environment=env_name, allowed=False,
                       reasons=[reason], outcome="alias not moved")
            return f"merged #{ev.number}: {reason}"
        env = cfg.environment(env_name)
        reg = self.registry(cfg)
        moved = self.move_alias(cfg, model, env, version, where=ev.url or f"{ev.repo}#{ev.number}", reg=reg)
        number = hidden.get("source_number")
        if number:
            self.say(promo.reply(
                f"`{model}` version {version} is live in `{env.name}`",
                f"Promotion PR {ev.url or ev.number} was merged; alias `{env.registry_alias}` now points to version {version}"
                + (f" (was {moved})." if moved else "."),
            ), number=int(number), repo=source_repo)
        return f"merged #{ev.number}: alias {env.registry_alias} of {model} -> {version}"

    def move_alias(self, cfg: Config, model: str, env: Environment, version: str, *, where: str, reg: Any) -> str | None:
        """Point the environment's alias at ``version``; tag the version; audit. Returns the previous version."""
        before = reg.get_by_alias(model, env.registry_alias)
        previous = before.version if before is not None else None
        reg.set_alias(model, env.registry_alias, version)
        tags = {f"mlgate.env.{env.name}": f"{self.now().isoformat()} {where}"}
        if previous and previous != version:
            tags[f"mlgate.previous.{env.name}"] = previous
        reg.set_tags(model, version, tags)
        self.audit(event="alias moved", model=model, version=version, environment=env.name,
                   alias=env.registry_alias, previous=previous, where=where, allowed=True, reasons=[],
                   outcome="alias moved")
        return previous


def _vfacts(info: Any) -> VersionFacts | None:
    if info is None:
        return None
    return VersionFacts(model=info.model, version=str(info.version), tags=dict(info.tags or {}),
                        status=str(info.status or "READY"), run_id=info.run_id)
