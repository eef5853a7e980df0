"""The worker's delivery handler: normalise → parse → gather facts → decide → promote → reply → audit.

Edge: talks to the forge (through :mod:`mlgate.edge.forges`), the registry
(:class:`mlgate.edge.registry.Registry`) and the store. Decisions are made by the pure
:func:`mlgate.core.policy.decide` over facts gathered here.

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

Canaries (issue 5): ``/promote`` to an environment with a ``canary:`` section starts a canary
(:func:`mlgate.flows.canary.start_canary`) after the same policy checks; each step is written
through the forge (:class:`mlgate.bot.promotion.CanaryWriter`); the merge of a step's PR
(``pull_request`` closed+merged on the GitOps repository) makes it live
(:func:`~mlgate.flows.canary.on_step_live`); :func:`tick_canaries`, run every
``canary_tick_seconds`` by a worker-pool thread, measures, advances and rolls back; ``/rollback``
and ``/abort`` stop a running canary. The canary's report is the source PR's one mlgate
comment, edited in place; every canary transition is appended to the audit table.

Training (issue 6): ``/train [--gpus N]`` submits the WorkflowTemplate of ``train.argo`` for
the PR head commit (:func:`mlgate.edge.argo.submit_for_commit`; once per commit on the Argo side,
once per comment here), keeps the ``mlgate/train`` commit status (pending with the Argo link,
then success/failure, followed by :func:`poll_trains`), and ``/abort`` stops it.

Errors: forge rate limits/outages and an unreachable registry raise :class:`Retryable`
(the worker retries the delivery later); a refusal, a bad config or a manifest that cannot
be edited is answered in the PR and ends the delivery.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Callable

import structlog

from mlgate.core import commands as cmdparse
from mlgate.core.commands import Command, CommandError
from mlgate.core.config import Config, Environment
from mlgate.core.errors import ConfigError, InfraError, MlgateError, UsageError
from mlgate.core.events import Event, Ignored, normalize
from mlgate.core.policy import Decision, VersionFacts, decide, latest_states
from mlgate.bot import promotion as promo

log = structlog.get_logger("mlgate.bot.handlers")

CONFIG_FILE = ".mlgate.yml"
#: Seconds a (model, environment) promotion lock lives unless released (a crashed worker's lock expires).
LOCK_TTL = 900.0
#: Commit status context of /train (the gates keep ``mlgate/gates``).
TRAIN_CONTEXT = "mlgate/train"
#: Store key listing the /train workflows whose final state is not known yet.
TRAIN_INDEX = "train:active"
#: A step PR not reported merged by a webhook within this many seconds is looked for on the
#: GitOps branch by the periodic tick (a lost webhook delays a canary, it does not stall it).
MERGE_FALLBACK_SECONDS = 120.0
#: Seconds a periodic task's lock lives (one bot replica at a time runs a task).
PERIODIC_LOCK_TTL = 300.0
#: Seconds a delivery waits for a canary the periodic tick is working on before it is retried later.
CANARY_LOCK_WAIT = 10.0


def canary_lock_name(model: str, environment: str) -> str:
    """The lock held by whoever acts on the canary of (model, environment): a delivery or the tick."""
    return f"canary:{model}:{environment}"


class MalformedPayload(UsageError):
    """The delivery's payload cannot be normalised (a field missing or of the wrong type): running
    it again gives the same answer, so the worker marks it failed at once (exit 2)."""


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
    returns a :class:`mlgate.edge.registry.Registry`.
    """

    settings: Any
    store: Any
    clock: Callable[[], datetime] = _utcnow
    forges: Callable[[str, int | None], Any] | None = None
    registry_factory: Callable[[str], Any] | None = None
    lock_ttl: float = LOCK_TTL
    _canaries: Any = field(default=None, repr=False)
    _guard: Any = field(default_factory=threading.Lock, repr=False)


def canary_store(ctx: HandlerContext) -> Any:
    """The :class:`mlgate.edge.db.canaries.CanaryStore` on the bot's own database (created once)."""
    with ctx._guard:
        if ctx._canaries is None:
            from mlgate.edge.db.canaries import CanaryStore

            ctx._canaries = CanaryStore(ctx.store.engine)
        return ctx._canaries


def post_comment(ctx: HandlerContext, forge: Any, forge_name: str, repo: str, number: int, text: str) -> None:
    """Create or update mlgate's one comment on PR/MR ``number`` of ``repo`` (its id is kept in the store)."""
    key = f"comment:{forge_name}:{repo}:{number}"
    known = ctx.store.kv_get(key)
    cid, _url = forge.upsert_comment(repo, number, text, int(known) if known else None)
    if str(cid) != known:
        ctx.store.kv_set(key, str(cid))


def set_commit_status(forge: Any, repo: str, sha: str, state: str, description: str, target_url: str | None = None,
                      context: str | None = None) -> None:
    """A commit status with ``context`` (default the forge's ``mlgate/gates``), through
    :meth:`mlgate.edge.forges.base.Forge.set_status`.

    ``state``: pending, success or failure. GitHub REST "Create a commit status"
    (``context``); GitLab "Set the pipeline status of a commit" (``name``).
    """
    from mlgate.edge.forges.base import STATUS_CONTEXT

    forge.set_status(repo, sha, state, description, target_url, context=context or STATUS_CONTEXT)


def _kv_update(ctx: HandlerContext, key: str, change: Callable[[Any], Any]) -> Any:
    """Read-modify-write of a JSON value in the store, under a short lock (workers and the
    periodic thread update the same keys)."""
    owner = uuid.uuid4().hex
    deadline = time.monotonic() + 15.0
    while not ctx.store.acquire_lock(f"kv:{key}", owner, 30.0, _utcnow()):
        if time.monotonic() > deadline:
            raise InfraError(f"the bot's state {key!r} stayed locked for 15 s")
        time.sleep(0.05)
    try:
        raw = ctx.store.kv_get(key)
        new = change(json.loads(raw) if raw else None)
        ctx.store.kv_set(key, json.dumps(new, sort_keys=True))
        return new
    finally:
        ctx.store.release_lock(f"kv:{key}", owner)


def _iso(ts: float | None) -> str | None:
    return datetime.fromtimestamp(ts, UTC).isoformat() if ts is not None else None


def audit_canary(ctx: HandlerContext, canary_id: int | None, base: dict[str, Any]) -> int:
    """Append one audit record per canary transition not audited yet; returns how many."""
    if canary_id is None:
        return 0
    cstore = canary_store(ctx)
    key = f"canary:audited:{canary_id}"
    added = 0

    def change(done: Any) -> int:
        nonlocal added
        done = int(done or 0)
        transitions = cstore.transitions(canary_id)
        rec = cstore.get(canary_id)
        for t in transitions[done:]:
            ctx.store.audit({
                **base, "at": _iso(t.at), "actor": t.actor, "event": "canary", "canary": canary_id,
                "model": rec.model if rec else None, "environment": rec.environment if rec else None,
                "version": rec.version if rec else None, "from_status": t.from_status, "status": t.to_status,
                "step": t.step + 1, "percent": t.percent, "action": t.action, "reason": t.reason,
                "allowed": True, "reasons": [], "outcome": f"canary {t.action}",
            })
            added += 1
        return len(transitions)

    _kv_update(ctx, key, change)
    return added


def make_context(settings: Any, store: Any) -> HandlerContext:
    """The context the server passes to every :func:`handle` call."""
    from mlgate.edge.forges import make_forge

    registries: dict[str, Any] = {}
    guard = threading.Lock()

    def registry_factory(uri: str) -> Any:
        from mlgate.edge.registry import Registry

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
        MalformedPayload: the payload is not one the event can have (failed at once, never retried).
        MlgateError: a problem retrying will not fix (the worker marks the delivery failed).
    """
    try:
        ev = normalize(delivery.forge, delivery.event, delivery.payload,
                       bot_login=getattr(ctx.settings, "bot_login", None))
    except Exception as e:  # normalize never raises on payload shape; if it does, retrying cannot help
        raise MalformedPayload(f"the payload could not be normalised: {type(e).__name__}: {e}") from None
    if isinstance(ev, Ignored) and ev.reason.startswith("malformed payload"):
        log.warning("delivery malformed", delivery=delivery.id, reason=ev.reason)
        raise MalformedPayload(ev.reason)
    if isinstance(ev, Ignored):
        log.info("delivery ignored", delivery=delivery.id, reason=ev.reason)
        return f"ignored: {ev.reason}"
    from mlgate.edge.db.canaries import Conflict
    from mlgate.edge.forges.base import ForgeBusy

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
    except Conflict as e:  # a canary changed under us (the periodic tick acted first): read it again
        raise Retryable(str(e), 1.0) from None
    except MlgateError:
        raise
    except Exception as e:
        refusal = _forge_refusal(e)
        if refusal is None:
            raise
        raise refusal from None


def _forge_refusal(e: Exception) -> MlgateError | None:
    """A forge client's 4xx answer as a ForgeError (retrying will not help), else None."""
    from mlgate.edge.forges.base import ForgeError

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
        post_comment(self.ctx, self.forge, self.ev.forge, repo or self.ev.repo, number or self.ev.number, text)  # type: ignore[arg-type]

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
            from mlgate.core import config as cfgmod

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
        try:
            if cmd.name == "train":
                return self.train(cmd)
            if cmd.name == "abort":
                return self.abort(cmd)
            return self.promote_or_status(cmd)
        except MlgateError as e:
            from mlgate.edge.db.canaries import Conflict
            from mlgate.edge.forges.base import ForgeBusy

            if isinstance(e, (ForgeBusy, InfraError)):
                raise
            if isinstance(e, Conflict):
                raise Retryable(str(e), 1.0) from None
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
            if cmd.environment is None and (cmd.model is None or cmd.model == cfg.model):
                mine = self.canaries_from_this_pr(cfg.model)
                if len(mine) == 1:  # `/rollback` on the PR that started a canary rolls that canary back
                    cmd = replace(cmd, environment=mine[0].environment)
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
            if cmd.name == "rollback" and canary_store(self.ctx).find_active(model, env.name) is not None:
                with self.canary_lock(model, env.name):
                    running = canary_store(self.ctx).find_active(model, env.name)
                    if running is not None:
                        outcome, text = self.stop_canary("rollback", running, env)
                        self.say(text)
                        return outcome
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
            from mlgate.core.policy import permission_rank

            if actor not in p.users and permission_rank(perm) < permission_rank(p.min_permission) and p.teams:
                teams = frozenset(t for t in p.teams if f.in_team(t, actor, ev.actor_id))
        reviews: tuple = ()
        approved_by = None
        approval_commits: dict[str, str] = {}
        flagged_bots: set[str] = set()
        users: set[str] = set()
        if ev.forge == "gitlab":
            appr = f.approvals(ev.repo, ev.number)
            approved_by = appr.approved_by if appr else ()
            flagged_bots = set(getattr(appr, "bots", ()) or ())
            users = set(approved_by)
            for u in users:
                seen = self.store.kv_get(f"gitlab:approval:{ev.repo}:{ev.number}:{u}")
                if seen:
                    approval_commits[u] = seen
        else:
            reviews = tuple(f.reviews(ev.repo, ev.number))
            users = set(latest_states(reviews))
        a = env.approvals
        committers: frozenset[str] = frozenset()
        committers_resolved = True
        if not a.committers_count:
            from mlgate.edge.forges.base import CommittersUnresolved

            try:
                committers = frozenset(f.committers(ev.repo, ev.number))
            except CommittersUnresolved as e:
                committers, committers_resolved = frozenset(e.found), False
        user_permissions: dict[str, str] = {}
        user_teams: dict[str, frozenset[str]] = {}
        for u in sorted(users):
            if u == pr.author or u.endswith("[bot]"):
                continue
            if not a.reviewers and not a.teams:
                user_permissions[u] = f.permission(ev.repo, u)
            elif a.teams and u not in a.reviewers:
                user_teams[u] = frozenset(t for t in a.teams if f.in_team(t, u))

        from mlgate.flows.pipeline import gates_fingerprint

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
                from mlgate.core.errors import UsageError

                try:
                    cand = reg.get_version(model, version)
                except UsageError:
                    cand = None
        snap = promo.Snapshot(
            config=cfg, head_sha=pr.head_sha, pr_author=pr.author, actor_permission=perm, actor_teams=teams,
            reviews=reviews, gitlab_approved_by=approved_by, gitlab_approval_commits=approval_commits,
            committers=committers, user_permissions=user_permissions, user_teams=user_teams,
            head_candidate=head_facts, candidate=_vfacts(cand), aliases=aliases,
            bots=frozenset({b for b in [getattr(self.ctx.settings, "bot_login", None)] if b} | flagged_bots),
            pr_state=getattr(pr, "state", None), committers_resolved=committers_resolved,
            gates_fingerprint=gates_fingerprint(cfg),
            served_versions={env.name: self.served_versions(model, env.name)} if command == "rollback" else {},
        )
        self._candidate_info = cand
        return snap, version

    def served_versions(self, model: str, environment: str) -> frozenset[str]:
        """Versions the bot's audit history shows held ``environment``'s alias (the moved-to
        version of each "alias moved" record, and the version it replaced)."""
        out: set[str] = set()
        for rec in self.store.audit_records():
            if rec.get("event") == "alias moved" and rec.get("model") == model and rec.get("environment") == environment:
                out.update(str(v) for v in (rec.get("version"), rec.get("previous")) if v)
        return frozenset(out)

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

        if env.canary is not None and cmd.name == "promote":
            with self.canary_lock(model, env.name):
                return self.start_canary(cmd, cfg, model, env, version, decision, record)
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
            from mlgate.edge import metrics

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
        from mlgate.edge.forges.base import parse_promotion_branch

        if parse_promotion_branch(ev.head_ref) or promo.is_canary_branch(ev.head_ref):
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
        from mlgate.edge.forges.base import parse_promotion_branch

        ev = self.ev
        if promo.is_canary_branch(ev.head_ref):
            return self.on_canary_merged()
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

    @contextmanager
    def canary_lock(self, model: str, environment: str) -> Iterator[None]:
        """Hold the canary lock of (model, environment) while this delivery acts on its canary.

        The periodic tick holds it while it works on that canary (a fraction of a second, a git
        write at most); this waits up to :data:`CANARY_LOCK_WAIT` seconds, then retries the
        delivery later (:class:`Retryable`). Never the cause of a "busy" reply.
        """
        name = canary_lock_name(model, environment)
        deadline = time.monotonic() + CANARY_LOCK_WAIT
        while not self.store.acquire_lock(name, self.delivery.id, self.ctx.lock_ttl, self.now()):
            if time.monotonic() > deadline:
                raise Retryable(f"the canary of {model} in {environment} is busy (the periodic tick is acting on it)", 1.0)
            time.sleep(0.05)
        try:
            yield
        finally:
            self.store.release_lock(name, self.delivery.id)

    # ---------------------------------------------------------------- permission without review

    def permission_for(self, command: str, promoters: Any, scope: str) -> Decision:
        """Whether the comment's author may run ``command`` under ``promoters`` (no review needed)."""
        from mlgate.core.policy import permission_rank

        ev, f = self.ev, self.forge
        perm = f.permission(ev.repo, ev.actor, ev.actor_id)
        teams: frozenset[str] = frozenset()
        if (ev.actor not in promoters.users and permission_rank(perm) < permission_rank(promoters.min_permission)
                and promoters.teams):
            teams = frozenset(t for t in promoters.teams if f.in_team(t, ev.actor, ev.actor_id))
        return promo.permission_decision(command, ev.actor, promoters, perm, teams, scope)

    # ---------------------------------------------------------------- canaries

    def canaries_from_this_pr(self, model: str) -> list[Any]:
        """Running canaries of ``model`` that were started from this PR/MR."""
        ev = self.ev
        return [r for r in canary_store(self.ctx).list(active_only=True, model=model, limit=1000)
                if r.source.get("forge") == ev.forge and r.source.get("repo") == ev.repo
                and r.source.get("number") == ev.number]

    def start_canary(self, cmd: Command, cfg: Config, model: str, env: Environment, version: str | None,
                     decision: Decision, record: dict[str, Any]) -> str:
        """The policy allowed ``/promote`` to an environment with a canary: start it (step 1)."""
        from mlgate.flows import canary as runner
        from mlgate.edge.forges.base import repo_path

        ev = self.ev
        cstore = canary_store(self.ctx)
        running = cstore.find_active(model, env.name)
        if running is not None and running.source.get("delivery") == self.delivery.id:
            # this delivery started it in an attempt that did not finish: report it, start nothing
            self.say(promo.canary_comment(_canary_title(running), runner.report(cstore, running)))
            return f"{cmd.name}: canary {running.id} already started by this comment ({running.status})"
        gitops_repo = repo_path(env.gitops.repository)
        tracking = self.tracking_uri(cfg)
        reg = self.registry(cfg)
        pr = self.pr()
        source = {
            "forge": ev.forge, "repo": ev.repo, "number": ev.number, "url": pr.url, "comment": ev.url,
            "comment_id": ev.comment_id, "installation_id": ev.installation_id, "gitops_repo": gitops_repo,
            "tracking_uri": tracking, "actor": ev.actor, "delivery": self.delivery.id,
        }
        # the runner keeps the GitOps repository as a URL (a bare owner/name would be taken for a local path)
        web_env = env.model_copy(update={"gitops": env.gitops.model_copy(
            update={"repository": self.forge.web_url(gitops_repo)})})
        run_cfg = cfg.model_copy(update={"environments": [web_env if e.name == env.name else e
                                                          for e in cfg.environments]})
        writer = promo.CanaryWriter(self.forge, gitops_repo, env.gitops.mode, source)
        base = self._audit_base()
        try:
            res = runner.start_canary(cstore, reg, writer, self.ctx.clock, config=run_cfg, environment=env.name,
                                      version=version or "", source=source, actor=ev.actor, check_policy=False,
                                      notify=None)
        except InfraError as e:
            stored = cstore.find_active(model, env.name)
            if stored is None or stored.source.get("delivery") != self.delivery.id:
                raise
            audit_canary(self.ctx, stored.id, base)
            msg = f"{e}"
            self.say(promo.canary_comment(_canary_title(stored), msg + "\n\n" + runner.report(cstore, stored)))
            self.audit(**record, outcome="canary started, step 1 pending", canary=stored.id)
            return f"{cmd.name}: canary {stored.id} stored; step 1 not written yet ({msg.splitlines()[0]})"
        except MlgateError as e:
            latest = cstore.latest(model, env.name)
            if latest is not None and latest.source.get("delivery") == self.delivery.id:
                if latest.status == "started":
                    # e.g. the forge refused the step's branch: nothing was written; do not leave it to the tick
                    from mlgate.core import canary as core

                    why = f"could not write step 1, nothing was changed: {str(e).splitlines()[0]}"
                    cstore.save(core.to_aborted(latest, now=self.now().timestamp(), reason=why), expected=latest,
                                actor=ev.actor, action="abort")
                audit_canary(self.ctx, latest.id, base)
            raise
        rec = res.canary
        audit_canary(self.ctx, rec.id, base)
        self.say(promo.canary_comment(_canary_title(rec), res.report))
        cur = rec.current
        where = (cur.url or cur.commit) if cur is not None else None
        self.audit(**record, outcome=f"canary {res.action}", canary=rec.id, step_change=where)
        return f"{cmd.name}: canary {rec.id} {res.action} ({rec.status}, step {rec.step + 1} at {rec.percent} %: {where})"

    def stop_canary(self, kind: str, rec: Any, env: Environment | None) -> tuple[str, str]:
        """``/rollback`` or ``/abort`` of a running canary; returns (outcome, comment text)."""
        from mlgate.flows import canary as runner
        from mlgate.core.config import Promoters

        ev = self.ev
        promoters = env.promoters if env is not None else Promoters()
        decision = self.permission_for(kind, promoters, f"promoters of {rec.environment}")
        record = dict(command=f"/{kind}", model=rec.model, version=rec.version, environment=rec.environment,
                      canary=rec.id, allowed=decision.allowed, reasons=decision.reasons)
        if not decision.allowed:
            self.audit(**record, outcome="refused")
            return f"{kind}: refused ({decision.reasons[0]})", promo.refusal(f"/{kind}", decision)
        forge, reg, writer = _canary_tools(self.ctx, rec)
        fn = runner.rollback if kind == "rollback" else runner.abort
        where = ev.url or self.pr().url
        try:
            res = fn(canary_store(self.ctx), reg, writer, self.ctx.clock, rec.id, reason=f"/{kind} on {where}",
                     actor=ev.actor, notify=_canary_notify(self.ctx, forge, rec.source))
        finally:
            audit_canary(self.ctx, rec.id, self._audit_base())
        self.audit(**record, outcome=f"canary {res.action}")
        why = {"rollback": "rolled back", "abort": "aborted"}[kind] + f" by @{ev.actor} with `/{kind}` on {where}"
        closed = close_unmerged_steps(self.ctx, forge, res.canary, why, self._audit_base())
        text = promo.canary_comment(_canary_title(res.canary), res.report)
        if closed:
            text += "\n\n**Step pull requests that were not merged:**\n" + "\n".join(closed)
        return f"{kind}: canary {rec.id} {res.canary.status} ({res.message})", text

    def on_canary_merged(self) -> str:
        """A canary step's (or rollback's) PR/MR was merged: the change is live.

        The canary is named by the PR's branch (:func:`mlgate.bot.promotion.canary_branch`) and
        must have recorded this PR's address (the forge's web URL, as the webhook or the API
        gives it). Read under the canary's lock (:meth:`canary_lock`), so a step the periodic
        tick is writing right now is seen complete.
        """
        ev = self.ev
        cstore = canary_store(self.ctx)
        cid = promo.canary_id_from_branch(ev.head_ref)
        named = cstore.get(cid) if cid is not None else (cstore.find_by_url(ev.url) if ev.url else None)
        if named is None:
            return f"merged canary PR #{ev.number}: no canary wrote it (not opened by mlgate)"
        if not named.active:  # finished: it changes no more; a step merged now must not advance anything
            return self._canary_merged(named)
        with self.canary_lock(named.model, named.environment):
            return self._canary_merged(named)

    def _merged_urls(self, rec: Any) -> set[str]:
        """The addresses this PR is known by (the webhook's, and the API's when the webhook's is not
        one the canary recorded)."""
        urls = {u for u in (self.ev.url,) if u}
        if promo.canary_merge_verdict(rec, urls)[0] == "unknown":
            urls.add(self.pr().url)
        return urls

    def _canary_merged(self, named: Any) -> str:
        from mlgate.flows import canary as runner
        from mlgate.core.errors import Refused

        ev = self.ev
        cstore = canary_store(self.ctx)
        try:
            rec = cstore.get(named.id) or named
            verdict, change = promo.canary_merge_verdict(rec, self._merged_urls(rec))
            if verdict == "unknown":
                return f"merged canary PR #{ev.number}: not a change canary {named.id} wrote"
            if verdict == "done":
                return f"merged canary PR #{ev.number}: already live for canary {rec.id} ({rec.status})"
            if not self.store.claim_effect(f"{ev.forge}:{ev.repo}:merged:{ev.number}", self.delivery.id):
                return f"merge of #{ev.number} already handled"
            if verdict == "stale":
                why = (f"step {change.index + 1} ({change.percent} %) merged after canary {rec.id} stopped waiting "
                       f"for it (canary {rec.status})")
                self.audit(event="merged", canary=rec.id, model=rec.model, version=rec.version,
                           environment=rec.environment, step=change.index + 1, percent=change.percent,
                           allowed=False, reasons=[why], outcome="ignored: canary no longer waits for this step")
                self.say(promo.stale_merge_reply(rec, change))
                log.warning("stale canary step merged", canary=rec.id, status=rec.status, pr=ev.url or ev.number)
                return f"merged canary PR #{ev.number}: ignored ({why})"
            forge, reg, writer = _canary_tools(self.ctx, rec)
            res = runner.on_step_live(cstore, reg, writer, self.ctx.clock, rec.id, commit=_merge_commit(self.delivery),
                                      actor=ev.actor or "bot", notify=_canary_notify(self.ctx, forge, rec.source))
        except Refused as e:
            return f"merged canary PR #{ev.number}: {e}"
        finally:
            audit_canary(self.ctx, named.id, self._audit_base())
        return f"merged canary PR #{ev.number}: canary {rec.id} {res.action} ({res.canary.status})"

    def _audit_base(self) -> dict[str, Any]:
        ev = self.ev
        return {"forge": ev.forge, "repo": ev.repo, "pr": ev.number, "delivery": self.delivery.id}

    # ---------------------------------------------------------------- /train and /abort

    def train(self, cmd: Command) -> str:
        """``/train [--gpus N]``: submit the Argo WorkflowTemplate for the PR head commit."""
        from mlgate.edge import argo
        from mlgate.core.config import Promoters

        ev = self.ev
        cfg = self.config()
        if isinstance(cfg, str):
            self.say(promo.reply(f"`{cmd.text}`: cannot read the policy", cfg))
            self.audit(command=cmd.text, allowed=False, reasons=[cfg.splitlines()[0]], outcome="no policy")
            return f"train: {cfg.splitlines()[0]}"
        if cfg.train.backend != "argo" or cfg.train.argo is None:
            msg = (f"`/train` hands training to Argo Workflows, and `{CONFIG_FILE}` on the default branch does not "
                   "set `train.backend: argo` (with `train.argo`: server, namespace, template). Train on CI with "
                   "`mlgate train`, or add the Argo settings on the default branch.")
            self.say(promo.reply(f"`{cmd.text}` is not available", msg))
            self.audit(command=cmd.text, model=cfg.model, allowed=False, reasons=[msg], outcome="not available")
            return "train: not available (no train.backend: argo on the default branch)"
        promoters = cfg.train_permission or (cfg.environments[0].promoters if cfg.environments else Promoters())
        scope = "train_permission" if cfg.train_permission else (
            f"promoters of {cfg.environments[0].name}" if cfg.environments else "default: write")
        decision = self.permission_for("train", promoters, scope)
        pr = self.pr()
        record = dict(command=cmd.text, model=cfg.model, head_sha=pr.head_sha, gpus=cmd.gpus,
                      allowed=decision.allowed, reasons=decision.reasons)
        if not decision.allowed:
            self.say(promo.refusal(cmd.text, decision))
            self.audit(**record, outcome="refused")
            return f"train: refused ({decision.reasons[0]})"
        settings = self.argo_settings(cfg.train.argo)
        tracking = self.tracking_uri(cfg)
        if tracking is None:
            raise UsageError(f"the MLflow tracking URI in {CONFIG_FILE} ({cfg.tracking_uri}) is a local file store a "
                             "training pod cannot reach: set an http(s) tracking_uri")
        # the repository that holds the head commit: a fork's, for a PR from a fork
        repo_url = pr.head_repo_url
        if not repo_url:
            raise UsageError(f"cannot tell which repository holds head commit {pr.head_sha[:7]} of this PR (its fork "
                             "was deleted, or the bot cannot read it): push the branch to this repository and "
                             "comment `/train` again")
        sub = argo.submit_for_commit(settings, model=cfg.model, repo_url=repo_url, commit=pr.head_sha,
                                     command=None, tracking_uri=tracking, gpus=cmd.gpus)
        key = f"train:wf:{sub.namespace}:{sub.name}"
        wf = {"name": sub.name, "namespace": sub.namespace, "url": sub.ui_url, "sha": pr.head_sha, "forge": ev.forge,
              "repo": ev.repo, "number": ev.number, "installation_id": ev.installation_id, "model": cfg.model,
              "argo": settings.model_dump(mode="json"), "phase": sub.phase, "done": False, "actor": ev.actor}
        finished = sub.phase in ("Succeeded", "Failed", "Error")

        def keep(old: Any) -> Any:
            if old and old.get("done"):
                return old
            return {**(old or {}), **wf, "done": False}

        wf = _kv_update(self.ctx, key, keep)
        _kv_update(self.ctx, f"train:pr:{ev.forge}:{ev.repo}:{ev.number}",
                   lambda keys: sorted(set(keys or []) | {key}))
        if not wf.get("done"):
            _kv_update(self.ctx, TRAIN_INDEX, lambda keys: sorted(set(keys or []) | {key}))
        short = pr.head_sha[:7]
        if finished:
            state = "success" if sub.phase == "Succeeded" else "failure"
            set_commit_status(self.forge, ev.repo, pr.head_sha, state, f"Argo workflow {sub.name}: {sub.phase}",
                              sub.ui_url, TRAIN_CONTEXT)
        else:
            set_commit_status(self.forge, ev.repo, pr.head_sha, "pending",
                              f"Argo workflow {sub.name}: {sub.phase}", sub.ui_url, TRAIN_CONTEXT)
        gpus = dict(sub.parameters).get("gpus") or (str(cmd.gpus) if cmd.gpus is not None else str(settings.gpus))
        if sub.created:
            title = f"training `{cfg.model}` on Argo for `{short}`"
            body = (f"Submitted [{sub.name}]({sub.ui_url}) (WorkflowTemplate `{sub.template}`, namespace "
                    f"`{sub.namespace}`, {gpus} GPU). The `{TRAIN_CONTEXT}` status of `{short}` follows it; "
                    "`/abort` stops it.")
            outcome = "workflow submitted"
        else:
            title = f"training for `{short}` was already submitted"
            body = (f"[{sub.name}]({sub.ui_url}) already exists for this commit ({sub.phase}); nothing new was "
                    "started. Push a new commit to train again.")
            outcome = "already submitted"
        self.say(promo.reply(title, body, decision))
        self.audit(**record, outcome=outcome, workflow=sub.name, url=sub.ui_url, phase=sub.phase)
        return f"train: {outcome} {sub.name} ({sub.phase})"

    def argo_settings(self, a: Any) -> Any:
        """``train.argo`` as the bot uses it: the token only from an allowed environment variable of the
        bot (never an ``MLGATE_*`` one, never a file), the server only from ``argo_servers`` when set.

        Raises:
            UsageError: the repository asks for a token variable or a server the bot does not allow.
        """
        s = self.ctx.settings
        allowed = list(getattr(s, "argo_token_envs", None) or ["ARGO_TOKEN"])
        name = a.token_env
        if name and (name.upper().startswith("MLGATE_") or name not in allowed):
            raise UsageError(f"train.argo.token_env {name!r} is not a variable this bot reads Argo tokens from "
                             f"(allowed: {', '.join(allowed)}); set token_env to one of them")
        servers = getattr(s, "argo_servers", None)
        if servers is not None:
            server = a.server.rstrip("/")
            if not any(server == x.rstrip("/") or server.startswith(x.rstrip("/") + "/") for x in servers):
                raise UsageError(f"train.argo.server {a.server} is not one this bot sends tokens to "
                                 f"(argo_servers: {', '.join(servers) or 'none'})")
        return a.model_copy(update={"token_file": None})

    def abort(self, cmd: Command) -> str:
        """``/abort``: stop the canaries started from this PR and its running /train workflows."""
        from mlgate.core.config import Promoters

        cfg = self.config()
        if isinstance(cfg, str):
            self.say(promo.reply(f"`{cmd.text}`: cannot read the policy", cfg))
            self.audit(command=cmd.text, allowed=False, reasons=[cfg.splitlines()[0]], outcome="no policy")
            return f"abort: {cfg.splitlines()[0]}"
        canaries = self.canaries_from_this_pr(cfg.model)
        workflows = self.running_workflows()
        if not canaries and not workflows:
            msg = "nothing to stop: no canary started from this PR is running, and no `/train` workflow of it is running"
            self.say(promo.reply(f"`{cmd.text}`", msg))
            self.audit(command=cmd.text, model=cfg.model, allowed=True, reasons=[], outcome="nothing to abort")
            return "abort: nothing to abort"
        outcomes, texts = [], []
        for rec in canaries:
            env = next((e for e in cfg.environments if e.name == rec.environment), None)
            with self.canary_lock(rec.model, rec.environment):
                out, text = self.stop_canary("abort", rec, env)
            outcomes.append(out)
            texts.append(text)
        if workflows:
            promoters = cfg.train_permission or (cfg.environments[0].promoters if cfg.environments else Promoters())
            out, text = self.stop_workflows(cmd, workflows, promoters)
            outcomes.append(out)
            texts.append(text)
        self.say("\n\n---\n\n".join(texts))
        return "; ".join(outcomes)

    def running_workflows(self) -> list[dict[str, Any]]:
        """The /train workflows of this PR whose end the bot has not seen yet."""
        ev = self.ev
        raw = self.store.kv_get(f"train:pr:{ev.forge}:{ev.repo}:{ev.number}")
        out = []
        for key in json.loads(raw) if raw else []:
            data = self.store.kv_get(key)
            wf = json.loads(data) if data else None
            if wf and not wf.get("done"):
                out.append({**wf, "key": key})
        return out

    def stop_workflows(self, cmd: Command, workflows: list[dict[str, Any]], promoters: Any) -> tuple[str, str]:
        from mlgate.edge import argo
        from mlgate.core.config import ArgoBackend

        ev = self.ev
        decision = self.permission_for("abort", promoters, "train_permission")
        if not decision.allowed:
            self.audit(command=cmd.text, allowed=False, reasons=decision.reasons, outcome="refused",
                       workflows=[w["name"] for w in workflows])
            return f"abort: refused ({decision.reasons[0]})", promo.refusal(cmd.text, decision)
        lines = []
        for wf in workflows:
            settings = ArgoBackend.model_validate(wf["argo"])
            st = argo.stop(settings, wf["name"], message=f"stopped by @{ev.actor} with /abort")
            if st.finished:
                lines.append(f"- [{wf['name']}]({wf['url']}) had already ended: {st.phase}")
            else:
                lines.append(f"- [{wf['name']}]({wf['url']}) is stopping (Argo ends its running step)")
                set_commit_status(self.forge, wf["repo"], wf["sha"], "failure", f"stopped by @{ev.actor} with /abort",
                                  wf["url"], TRAIN_CONTEXT)
            self.audit(command=cmd.text, model=wf.get("model"), head_sha=wf["sha"], workflow=wf["name"],
                       allowed=True, reasons=[], outcome="workflow stopped" if not st.finished else "already ended",
                       phase=st.phase)
        text = promo.reply("training stopped", "\n".join(lines))
        return f"abort: stopped {', '.join(w['name'] for w in workflows)}", text

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


# --------------------------------------------------------------------------- canaries: shared pieces


def _canary_title(record: Any) -> str:
    return (f"canary of `{record.model}` version {record.version} to `{record.environment}`: "
            f"{record.status.replace('_', ' ')}")


def _canary_tools(ctx: HandlerContext, record: Any) -> tuple[Any, Any, Any]:
    """(forge, registry, writer) for a canary the bot started, from what its ``source`` recorded."""
    src = record.source
    forge = ctx.forges(src["forge"], src.get("installation_id"))  # type: ignore[misc]
    reg = ctx.registry_factory(src["tracking_uri"])  # type: ignore[misc]
    writer = promo.CanaryWriter(forge, src["gitops_repo"], record.settings.mode, src)
    return forge, reg, writer


def _canary_notify(ctx: HandlerContext, forge: Any, source: dict[str, Any]) -> Callable[[Any, str], None]:
    """``notify`` for the runner: the report becomes the source PR's one mlgate comment."""

    def notify(record: Any, report: str) -> None:
        post_comment(ctx, forge, source["forge"], source["repo"], int(source["number"]),
                     promo.canary_comment(_canary_title(record), report))

    return notify


def close_unmerged_steps(ctx: HandlerContext, forge: Any, record: Any, why: str,
                         audit_base: dict[str, Any]) -> list[str]:
    """Close the step PRs/MRs of a stopped canary that were never merged (merging one later would
    send traffic to the canary version while mlgate treats the canary as finished), each with a
    comment saying why (:func:`mlgate.bot.promotion.close_unmerged_steps`); audit each.
    Returns one Markdown line per step PR for the canary's report.

    Never raises: a step PR that cannot be closed is reported ("close it by hand") and logged.
    """
    lines: list[str] = []
    for step, outcome, line in promo.close_unmerged_steps(forge, record.source.get("gitops_repo"), record, why):
        lines.append(line)
        if outcome == "failed":
            log.error("step PR not closed", canary=record.id, pr=step.url, line=line)
        ctx.store.audit({
            **audit_base, "at": _utcnow().isoformat(), "actor": "bot", "event": "step PR closed", "canary": record.id,
            "model": record.model, "version": record.version, "environment": record.environment,
            "step": step.index + 1, "percent": step.percent, "url": step.url, "allowed": outcome != "failed",
            "reasons": [line] if outcome == "failed" else [], "outcome": outcome,
        })
    return lines


def _merge_commit(delivery: Any) -> str | None:
    """The merge commit of a merged PR/MR delivery (GitHub ``pull_request.merge_commit_sha``,
    GitLab ``object_attributes.merge_commit_sha``), when the payload has it."""
    p = delivery.payload if isinstance(delivery.payload, dict) else {}
    sha = (p.get("pull_request") or {}).get("merge_commit_sha") or (p.get("object_attributes") or {}).get("merge_commit_sha")
    return sha if isinstance(sha, str) and sha else None


def _merge_reader(forge: Any, repo: str, record: Any, now: float) -> Callable[[str, str, str], str] | None:
    """A reader of the GitOps branch, for a step (or rollback) PR whose merge webhook has not come
    within :data:`MERGE_FALLBACK_SECONDS`; None while the webhook may still come."""
    pending = record.rollback if record.status == "rolling_back" else record.current
    if pending is None or pending.live_at is not None or pending.written_at is None:
        return None
    if now - pending.written_at < MERGE_FALLBACK_SECONDS:
        return None

    def read(_repository: str, branch: str, path: str) -> str:
        from mlgate.core.errors import ManifestError

        text = forge.read_file(repo, path, branch)
        if text is None:
            raise ManifestError(f"{path}: no such file in {repo} (branch {branch})")
        return text

    return read


# --------------------------------------------------------------------------- periodic tasks (worker-pool threads)


def _with_lock(ctx: HandlerContext, name: str, fn: Callable[[], str]) -> str:
    """Run ``fn`` when this replica holds the lock ``name`` (one bot replica at a time)."""
    owner = f"{os.getpid()}:{threading.get_ident()}:{uuid.uuid4().hex[:6]}"
    if not ctx.store.acquire_lock(name, owner, PERIODIC_LOCK_TTL, _utcnow()):
        return ""
    try:
        return fn()
    finally:
        ctx.store.release_lock(name, owner)


def tick_canaries(ctx: HandlerContext) -> str:
    """One pass over the running canaries the bot started (:func:`mlgate.flows.canary.tick` each):
    write pending steps, measure what is due, advance, roll back, promote; post each report on
    its source PR; audit every transition. Canaries started by the CLI are left to the CLI.

    Returns a short text of what changed ("" when nothing did). Never raises for one canary's
    trouble (it is logged, reported by the runner, and tried again at the next pass).
    """
    from mlgate.flows import canary as runner

    def run() -> str:
        cstore = canary_store(ctx)
        done: list[str] = []
        for rec in cstore.list(active_only=True, limit=1000):
            src = rec.source
            if not src.get("forge") or not src.get("gitops_repo") or not src.get("tracking_uri"):
                continue
            base = {"forge": src["forge"], "repo": src.get("repo"), "pr": src.get("number"), "delivery": None}
            lock, owner = canary_lock_name(rec.model, rec.environment), f"tick:{uuid.uuid4().hex}"
            if not ctx.store.acquire_lock(lock, owner, ctx.lock_ttl, ctx.clock()):
                continue  # a delivery is acting on this canary; the next pass looks again
            try:
                forge, reg, writer = _canary_tools(ctx, rec)
                reader = _merge_reader(forge, src["gitops_repo"], rec, ctx.clock().timestamp())
                results = runner.tick(cstore, reg, writer, ctx.clock, canary_id=rec.id, reader=reader, actor="bot",
                                      notify=_canary_notify(ctx, forge, src))
            except Exception as e:  # one canary's trouble never stops the others
                log.error("canary tick failed", canary=rec.id, error=f"{type(e).__name__}: {e}")
                done.append(f"canary {rec.id}: {type(e).__name__}")
                continue
            finally:
                ctx.store.release_lock(lock, owner)
                try:
                    after = cstore.get(rec.id)
                    if after is not None and after.revision != rec.revision:
                        audit_canary(ctx, rec.id, base)
                except Exception as e:
                    log.error("canary audit failed", canary=rec.id, error=f"{type(e).__name__}: {e}")
            for r in results:
                if r.action not in ("nothing_due", "awaiting_merge"):
                    done.append(f"canary {r.canary.id} {r.action}: {r.message}")
        return "; ".join(done)

    return _with_lock(ctx, "periodic:canary-tick", run)


def poll_trains(ctx: HandlerContext) -> str:
    """Read the state of every ``/train`` workflow whose end the bot has not seen, and keep the
    ``mlgate/train`` commit status in step: pending (with the phase) → success, or failure with
    the failed node's message (:meth:`mlgate.core.argo_plan.WorkflowStatus.failure_message`).

    Returns a short text of what changed ("" when nothing did).
    """
    from mlgate.edge import argo
    from mlgate.core.config import ArgoBackend

    def run() -> str:
        raw = ctx.store.kv_get(TRAIN_INDEX)
        keys = json.loads(raw) if raw else []
        done: list[str] = []
        finished_keys: set[str] = set()
        for key in keys:
            data = ctx.store.kv_get(key)
            wf = json.loads(data) if data else None
            if not wf or wf.get("done"):
                finished_keys.add(key)
                continue
            settings = ArgoBackend.model_validate(wf["argo"])
            try:
                st = argo.get_status(settings, wf["name"])
                state, description = None, None
                if st.finished:
                    state = "success" if st.succeeded else "failure"
                    description = (f"Argo workflow {wf['name']} succeeded" if st.succeeded
                                   else st.failure_message())
                elif st.phase != wf.get("phase"):
                    state, description = "pending", f"Argo workflow {wf['name']}: {st.phase}"
            except UsageError as e:  # the workflow is gone (deleted, garbage-collected)
                st, state, description = None, "failure", str(e).splitlines()[0]
            except MlgateError as e:  # unreachable, auth: try again at the next pass
                log.warning("train status not read", workflow=wf["name"], error=str(e).splitlines()[0])
                continue
            if state is None:
                continue
            forge = ctx.forges(wf["forge"], wf.get("installation_id"))  # type: ignore[misc]
            set_commit_status(forge, wf["repo"], wf["sha"], state, description or state, wf["url"], TRAIN_CONTEXT)
            final = state != "pending"
            phase = st.phase if st is not None else "Missing"
            _kv_update(ctx, key, lambda old: {**(old or wf), "phase": phase, "done": final})
            if final:
                finished_keys.add(key)
                ctx.store.audit({
                    "at": _utcnow().isoformat(), "forge": wf["forge"], "repo": wf["repo"], "pr": wf.get("number"),
                    "delivery": None, "actor": "bot", "event": "train finished", "model": wf.get("model"),
                    "head_sha": wf["sha"], "workflow": wf["name"], "phase": phase, "allowed": True, "reasons": [],
                    "outcome": f"mlgate/train {state}: {description}",
                })
            done.append(f"{wf['name']}: {state} ({description})")
        if finished_keys:
            _kv_update(ctx, TRAIN_INDEX, lambda ks: sorted(set(ks or []) - finished_keys))
        return "; ".join(done)

    return _with_lock(ctx, "periodic:train-poll", run)


def periodic_tasks(settings: Any) -> list[tuple[str, float, Callable[[HandlerContext], str]]]:
    """The worker pool's background tasks: (name, interval in seconds, fn(ctx)); 0 disables one."""
    return [
        ("canary tick", float(getattr(settings, "canary_tick_seconds", 15.0) or 0), tick_canaries),
        ("train status", float(getattr(settings, "train_poll_seconds", 15.0) or 0), poll_trains),
    ]
