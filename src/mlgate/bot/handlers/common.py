"""What every handler shares: the bot's context, the store helpers, and :class:`Job` (one delivery).

:class:`HandlerContext` is built once when the server starts (:func:`make_context`); a
:class:`Job` is built per delivery by :func:`mlgate.bot.dispatch.handle` and handed to the
feature's handler: it replies on the PR/MR (:meth:`Job.say`: mlgate's one comment, its id kept
in the store), appends audit records, reads the policy from the default branch
(:meth:`Job.config`), and reaches the registry.

Errors: :class:`Retryable` asks the worker to retry the delivery later; :class:`MalformedPayload`
fails it at once.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog

from mlgate.core import config as cfgmod
from mlgate.core.config import Config, Promoters
from mlgate.core.errors import ConfigError, InfraError, MlgateError, UsageError
from mlgate.core.events import Event
from mlgate.core.policy import Decision, permission_rank
from mlgate.core.redact import SHAPES_ONLY
from mlgate.bot import promotion as promo
from mlgate.bot.ports import BotStore, Forge, ModelRegistry, Settings
from mlgate.edge.db import fencing
from mlgate.edge.db.canaries import CanaryStore
from mlgate.edge.db.replies import Replies, ReplyBusy
from mlgate.edge.db.store import Delivery
from mlgate.edge.forges import make_forge
from mlgate.edge.forges.base import STATUS_CONTEXT, PullRequest
from mlgate.edge.registry import Registry

log = structlog.get_logger("mlgate.bot.handlers")

CONFIG_FILE = ".mlgate.yml"
#: Seconds a lock lives unless renewed (its holder's keeper renews it every third of that), when
#: the settings do not say (``lease_seconds``); a dead holder's lock lapses after this.
LOCK_TTL = 900.0
#: The same for a periodic task's lock (one bot replica at a time runs a task), when unset.
PERIODIC_LOCK_TTL = 300.0
#: Seconds a delivery waits for a canary the periodic tick is working on before it is retried later.
CANARY_LOCK_WAIT = 10.0


def canary_lock_name(model: str, environment: str) -> str:
    """The lock held by whoever acts on the canary of (model, environment): a delivery or the tick."""
    return f"canary:{model}:{environment}"


class MalformedPayload(UsageError):
    """The delivery's payload cannot be normalised (a field missing or of the wrong type): running
    it again gives the same answer, so the worker marks it failed at once (exit 2)."""


class Fenced:
    """A client (forge, registry) whose every method call is preceded by
    :func:`mlgate.edge.db.fencing.check`: a thread whose attempt or lock was taken over raises
    :class:`~mlgate.edge.db.fencing.LeaseLost` before the call, so it makes no more external calls.
    Attributes that are not callables pass through unchanged."""

    def __init__(self, inner: Any):
        self.__dict__["_inner"] = inner

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._inner, name)
        if name.startswith("_") or not callable(value):
            return value

        def call(*args: Any, **kwargs: Any) -> Any:
            fencing.check()
            return value(*args, **kwargs)

        return call

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._inner, name, value)


def fenced_client(client: Any) -> Any:
    """``client`` wrapped in :class:`Fenced` (once)."""
    return client if isinstance(client, Fenced) else Fenced(client)


class Retryable(Exception):
    """A temporary failure: the worker retries the delivery after ``retry_after`` seconds (None: backoff)."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class HandlerContext:
    """What :func:`mlgate.bot.dispatch.handle` needs; built once by :func:`make_context` when the server starts.

    ``forges(name, installation_id)`` returns a fresh forge client (a GitHub App installation
    token is minted per delivery and refreshed before it expires). ``registry_factory(uri)``
    returns a :class:`mlgate.edge.registry.Registry`.
    """

    settings: Settings
    store: BotStore
    clock: Callable[[], datetime] = utcnow
    forges: Callable[[str, int | None], Forge] | None = None
    registry_factory: Callable[[str], ModelRegistry] | None = None
    lock_ttl: float = LOCK_TTL
    _canaries: CanaryStore | None = field(default=None, repr=False)
    _guard: Any = field(default_factory=threading.Lock, repr=False)


#: MLflow's documented credential variables ("MLflow Tracking" → "Logging to a Tracking Server"):
#: the MLflow client sends them to whichever tracking server it talks to.
MLFLOW_CREDENTIALS = ("MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")


def tracking_uri_for(settings: Any, cfg: Config, environ: Mapping[str, str] | None = None) -> str | None:
    """The MLflow tracking server the bot talks to for ``cfg``: bot.yml ``tracking_uri``, else the
    model repository's when it is a server (a file store is only meaningful on the machine that
    trained); None when neither is usable.

    A repository cannot send the bot's credentials elsewhere: when the bot's environment holds
    MLflow credentials (:data:`MLFLOW_CREDENTIALS`, which the MLflow client sends to any server)
    and bot.yml names no ``tracking_uri``, a server named by ``.mlgate.yml`` is refused, as
    ``argo_servers`` guards the Argo token.

    Raises:
        MlgateError: that refusal (the delivery fails with the message; the dashboard shows it).
    """
    configured = getattr(settings, "tracking_uri", None)
    if configured:
        return configured
    uri = cfg.tracking_uri
    if not uri.startswith(("http://", "https://", "databricks")):
        return None
    env = os.environ if environ is None else environ
    held = [n for n in MLFLOW_CREDENTIALS if (env.get(n) or "").strip()]
    if held:
        raise MlgateError(
            f"{CONFIG_FILE} names the tracking server {uri} and the bot holds MLflow credentials ({', '.join(held)}), "
            "which the MLflow client would send to it: set tracking_uri in bot.yml to the server they are for"
        )
    return uri


def make_context(settings: Settings, store: BotStore) -> HandlerContext:
    """The context the server passes to every :func:`mlgate.bot.dispatch.handle` call."""
    registries: dict[str, ModelRegistry] = {}
    guard = threading.Lock()

    def registry_factory(uri: str) -> ModelRegistry:
        with guard:
            if uri not in registries:
                registries[uri] = fenced_client(Registry(uri))
            return registries[uri]

    return HandlerContext(
        settings=settings, store=store, clock=utcnow,
        forges=lambda name, inst: fenced_client(make_forge(name, settings, inst)), registry_factory=registry_factory,
        lock_ttl=float(getattr(settings, "lease_seconds", LOCK_TTL)),
    )


def canary_store(ctx: HandlerContext) -> CanaryStore:
    """The :class:`mlgate.edge.db.canaries.CanaryStore` on the bot's own database (created once)."""
    with ctx._guard:
        if ctx._canaries is None:
            ctx._canaries = CanaryStore(ctx.store.engine)
        return ctx._canaries


def post_comment(ctx: HandlerContext, forge: Forge, forge_name: str, repo: str, number: int, text: str) -> None:
    """Create or update mlgate's one comment on PR/MR ``number`` of ``repo``.

    One worker at a time writes a PR's reply (:meth:`mlgate.edge.db.replies.Replies.hold`, a row
    claimed in the bot's database before the first POST, so every worker and replica agrees);
    it updates the comment whose id is stored, or the one found by its hidden marker, and
    creates one only when there is none (:meth:`mlgate.edge.forges.base.Forge.upsert_comment`).

    Raises:
        Retryable: another worker kept the PR's reply for longer than the wait.
        ForgeError/ForgeBusy: from the forge.
    """
    text = scrub(ctx, text)  # the one place a reply's text leaves the bot: no secret in a public comment
    try:
        # a lease of lease_seconds renewed while held: a replica killed mid-reply blocks the PR's reply that long
        with Replies(ctx.store.engine).hold(forge_name, repo, number, ttl=ctx.lock_ttl, keep=True) as held:
            known = held.comment_id or ctx.store.kv_get(f"comment:{forge_name}:{repo}:{number}")  # before the table
            cid, _url = forge.upsert_comment(repo, number, text, int(known) if known else None)
            held.comment_id = str(cid)
    except ReplyBusy as e:
        raise Retryable(str(e), 1.0) from None


def scrub(ctx: HandlerContext, text: str) -> str:
    """``text`` with every secret masked by the store's redactor (:class:`mlgate.core.redact.Redactor`,
    set from :meth:`mlgate.bot.settings.BotSettings.redactor` when the bot starts; a store without
    one masks the well-known token shapes)."""
    return getattr(ctx.store, "redactor", SHAPES_ONLY).text(text)


def set_commit_status(forge: Forge, repo: str, sha: str, state: str, description: str, target_url: str | None = None,
                      context: str | None = None) -> None:
    """A commit status with ``context`` (default the forge's ``mlgate/gates``), through
    :meth:`mlgate.edge.forges.base.Forge.set_status`.

    ``state``: pending, success or failure. GitHub REST "Create a commit status"
    (``context``); GitLab "Set the pipeline status of a commit" (``name``).
    """
    forge.set_status(repo, sha, state, description, target_url, context=context or STATUS_CONTEXT)


def kv_update(ctx: HandlerContext, key: str, change: Callable[[Any], Any]) -> Any:
    """Read-modify-write of a JSON value in the store, under a short lock (workers and the
    periodic thread update the same keys). The lock is a lease like every other (the bot's
    ``lease_seconds``, renewed while held), so a process killed while holding it blocks the key
    for one lease at most, not 30 s.

    Raises:
        InfraError: the key stayed locked for 15 s.
        LeaseLost: this thread's attempt or lock was taken over (nothing is written).
    """
    owner = uuid.uuid4().hex
    deadline = time.monotonic() + 15.0
    while not ctx.store.acquire_lock(f"kv:{key}", owner, ctx.lock_ttl, utcnow(), keep=True):
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


def with_periodic_lock(ctx: HandlerContext, name: str, fn: Callable[[], str]) -> str:
    """Run ``fn`` when this replica holds the lock ``name`` (one bot replica at a time); "" otherwise.

    The lock lives ``ctx.lock_ttl`` seconds (the bot's ``lease_seconds``) and is renewed while
    ``fn`` runs, so a replica killed during ``fn`` blocks the task for one lease at most. ``fn``
    runs fenced on the lock (:func:`mlgate.edge.db.fencing.fenced`): when the lock was taken over
    (this replica stalled past it), ``fn`` stops at its next write or call, and this returns "".
    """
    owner = f"{os.getpid()}:{threading.get_ident()}:{uuid.uuid4().hex[:6]}"
    if not ctx.store.acquire_lock(name, owner, min(ctx.lock_ttl, PERIODIC_LOCK_TTL), utcnow(), keep=True):
        return ""
    try:
        with fencing.fenced(fencing.LockFence(ctx.store.engine, name, owner)):
            return fn()
    except fencing.LeaseLost as e:
        log.warning("periodic task stopped: its lock was taken over", task=name, error=str(e))
        return ""
    finally:
        ctx.store.release_lock(name, owner)


# --------------------------------------------------------------------------- one delivery


@dataclass
class Job:
    """One delivery being handled: its event, the forge client, and what it has read so far."""

    ev: Event
    delivery: Delivery
    ctx: HandlerContext
    forge: Forge
    _config: Config | str | None = None
    _pr: PullRequest | None = None

    @property
    def store(self) -> BotStore:
        return self.ctx.store

    def now(self) -> datetime:
        return self.ctx.clock()

    @property
    def owner(self) -> str:
        """This attempt as a lock owner: ``<delivery id>#<fencing token>`` (locks are the attempt's,
        not the delivery's: a later attempt of the same delivery takes them over at once)."""
        return f"{self.delivery.id}#{self.delivery.token}"

    def acquire(self, name: str) -> bool:
        """Take lock ``name`` for this attempt, renewed while it works (``ctx.lock_ttl`` seconds
        each); an earlier attempt's hold of it is taken over. False when someone else holds it.

        Raises:
            LeaseLost: this attempt was taken over.
        """
        return self.store.acquire_lock(name, self.owner, self.ctx.lock_ttl, self.now(), keep=True,
                                       supersedes=f"{self.delivery.id}#")

    def release(self, name: str) -> None:
        """Release lock ``name`` if this attempt holds it."""
        self.store.release_lock(name, self.owner)

    def say(self, text: str, number: int | None = None, repo: str | None = None) -> None:
        """Create or update mlgate's one comment on the PR/MR."""
        post_comment(self.ctx, self.forge, self.ev.forge, repo or self.ev.repo, number or self.ev.number, text)  # type: ignore[arg-type]

    def audit_base(self) -> dict[str, Any]:
        ev = self.ev
        return {"forge": ev.forge, "repo": ev.repo, "pr": ev.number, "delivery": self.delivery.id}

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
            try:
                out = cfgmod.parse(text, CONFIG_FILE)
            except ConfigError as e:
                out = f"`{CONFIG_FILE}` on the default branch `{branch}` is invalid:\n\n```\n{e}\n```"
        if repo is None:
            self._config = out
        return out

    def no_policy(self, cmd_text: str, cfg: str) -> str:
        """Reply and audit that the policy cannot be read; returns the first line of why."""
        self.say(promo.reply(f"`{cmd_text}`: cannot read the policy", cfg))
        self.audit(command=cmd_text, allowed=False, reasons=[cfg.splitlines()[0]], outcome="no policy")
        return cfg.splitlines()[0]

    def pr(self) -> PullRequest:
        if self._pr is None:
            self._pr = self.forge.pull_request(self.ev.repo, self.ev.number)  # type: ignore[arg-type]
        return self._pr

    def tracking_uri(self, cfg: Config) -> str | None:
        """The tracking server of ``cfg`` as :func:`tracking_uri_for` decides."""
        return tracking_uri_for(self.ctx.settings, cfg)

    def registry(self, cfg: Config) -> ModelRegistry:
        uri = self.tracking_uri(cfg)
        if uri is None:
            raise MlgateError(
                f"the MLflow tracking URI in {CONFIG_FILE} ({cfg.tracking_uri}) is a local file store the bot cannot "
                "read: set tracking_uri in bot.yml or an http(s) tracking_uri in .mlgate.yml"
            )
        return self.ctx.registry_factory(uri)  # type: ignore[misc]

    def permission_for(self, command: str, promoters: Promoters, scope: str) -> Decision:
        """Whether the comment's author may run ``command`` under ``promoters`` (no review needed)."""
        ev, f = self.ev, self.forge
        perm = f.permission(ev.repo, ev.actor, ev.actor_id)
        teams: frozenset[str] = frozenset()
        if (ev.actor not in promoters.users and permission_rank(perm) < permission_rank(promoters.min_permission)
                and promoters.teams):
            teams = frozenset(t for t in promoters.teams if f.in_team(t, ev.actor, ev.actor_id))
        return promo.permission_decision(command, ev.actor, promoters, perm, teams, scope)

    def set_gates_status(self, decision: Decision, sha: str | None) -> None:
        """The ``mlgate/gates`` commit status of ``sha``: success when ``decision`` allows, else pending."""
        if not sha:
            return
        state = "success" if decision.allowed else "pending"
        self.forge.set_status(self.ev.repo, sha, state, decision.summary())

    @contextmanager
    def canary_lock(self, model: str, environment: str) -> Iterator[None]:
        """Hold the canary lock of (model, environment) while this delivery acts on its canary.

        The periodic tick holds it while it works on that canary (a fraction of a second, a git
        write at most); this waits up to :data:`CANARY_LOCK_WAIT` seconds, then retries the
        delivery later (:class:`Retryable`). Never the cause of a "busy" reply.
        """
        name = canary_lock_name(model, environment)
        deadline = time.monotonic() + CANARY_LOCK_WAIT
        while not self.acquire(name):
            if time.monotonic() > deadline:
                raise Retryable(f"the canary of {model} in {environment} is busy (the periodic tick is acting on it)", 1.0)
            time.sleep(0.05)
        try:
            with fencing.fenced(fencing.LockFence(self.store.engine, name, self.owner)):
                yield
        finally:
            self.release(name)
