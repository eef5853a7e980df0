"""The route table: each normalised event goes to the handler of its feature.

    delivery → events.normalize → (event kind, command or action) → one handler per feature

A comment is split into its commands (``/promote``, ``/train``...); each acts once (an effect
keyed on the comment id, ``<forge>:<repo>:comment:<id>:<n>:<name>``, claimed in the store, so the
same comment through two hooks or a redelivery acts once) and is routed by its name. Other
events are routed by their action (``pull_request`` ``merged``), else by their kind alone.
:data:`ROUTES` lists every route; :func:`handle` is the worker's entry point.

Errors: forge rate limits/outages and an unreachable registry raise
:class:`~mlgate.bot.handlers.common.Retryable` (the worker retries the delivery later); a
refusal, a bad config or a manifest that cannot be edited is answered in the PR and ends the
delivery.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import structlog

from mlgate.core import commands as cmdparse
from mlgate.core.commands import Command, CommandMistake
from mlgate.core.errors import InfraError, MlgateError
from mlgate.core.events import Event, Ignored, normalize
from mlgate.bot import promotion as promo
from mlgate.bot.handlers import doctor
from mlgate.bot.handlers import canary, merged, promote, registry, reviews, train
from mlgate.bot.handlers.common import HandlerContext, Job, MalformedPayload, Retryable
from mlgate.edge.db.canaries import Conflict
from mlgate.edge.db.store import Delivery
from mlgate.edge.forges.base import ForgeBusy
from mlgate.edge.forges.errors import forge_refusal

log = structlog.get_logger("mlgate.bot.handlers")

Handler = Callable[..., str]
Key = tuple[str, str | None]


class Router:
    """A table of handlers keyed by (event kind, name), in the shape of gidgethub's
    ``routing.Router`` (``add``, ``register``, ``fetch``, ``dispatch``; routers combine with
    ``Router(*others)``).

    ``name`` is the command name for a ``comment``'s commands and the action for other events;
    a route added with ``name=None`` is the kind's fallback. Unlike gidgethub, a key holds one
    handler (its return value is the delivery's outcome), and adding a second one for the same
    key raises ValueError.
    """

    def __init__(self, *others: Router):
        self._routes: dict[Key, Handler] = {}
        for other in others:
            for (kind, name), fn in other._routes.items():
                self.add(fn, kind, name)

    def add(self, fn: Handler, kind: str, name: str | None = None) -> None:
        """Route (``kind``, ``name``) to ``fn``. Raises ValueError when the key has a handler already."""
        if (kind, name) in self._routes:
            raise ValueError(f"route ({kind!r}, {name!r}) already goes to {self._routes[kind, name].__qualname__}")
        self._routes[kind, name] = fn

    def register(self, kind: str, name: str | None = None) -> Callable[[Handler], Handler]:
        """Decorator form of :meth:`add`."""

        def decorator(fn: Handler) -> Handler:
            self.add(fn, kind, name)
            return fn

        return decorator

    def fetch(self, kind: str, name: str | None = None) -> Handler | None:
        """The handler of (``kind``, ``name``), else the kind's fallback, else None."""
        return self._routes.get((kind, name)) or self._routes.get((kind, None))

    def dispatch(self, kind: str, name: str | None, *args: Any) -> str:
        """Call the handler :meth:`fetch` finds with ``args``; LookupError when there is none."""
        fn = self.fetch(kind, name)
        if fn is None:
            raise LookupError(f"no route for ({kind!r}, {name!r})")
        return fn(*args)

    def __iter__(self) -> Iterator[tuple[Key, Handler]]:
        return iter(sorted(self._routes.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")))


# --------------------------------------------------------------------------- commands


def help_reply(job: Job, cmd: Command) -> str:
    """``/help``: the command list; ``/NAME --help`` (``cmd.topic``): that command's usage."""
    job.say(promo.reply("help", cmdparse.help_text(cmd.topic)))
    return "help: replied"


def replying_on_failure(fn: Handler) -> Handler:
    """A command handler whose refusals (an :class:`MlgateError` retrying will not fix) are
    answered in the PR and audited; temporary failures still reach the worker."""

    def run(job: Job, cmd: Command) -> str:
        try:
            return fn(job, cmd)
        except MlgateError as e:
            if isinstance(e, (ForgeBusy, InfraError)):
                raise
            if isinstance(e, Conflict):
                raise Retryable(str(e), 1.0) from None
            text = str(e).splitlines()[0] if str(e) else type(e).__name__
            job.say(promo.reply(f"`{cmd.text}` failed", str(e)))
            job.audit(command=cmd.text, allowed=False, reasons=[text], outcome="failed")
            return f"{cmd.name}: failed ({text})"

    run.__qualname__ = run.__name__ = fn.__name__
    run.__doc__ = fn.__doc__
    return run


def _usage_error(job: Job, cmd: CommandMistake) -> str:
    job.say(promo.reply("usage", cmd.reply()))
    job.audit(command=cmd.text, allowed=False, reasons=[cmd.message], outcome="usage error")
    return f"{cmd.name}: usage error ({cmd.message})"


def on_comment(job: Job) -> str:
    """Run each command of the comment once (its effect key claimed in the store), through :data:`ROUTES`."""
    cmds = cmdparse.parse(job.ev.body)
    if not cmds:
        return "no command in the comment"
    outcomes = []
    for i, cmd in enumerate(cmds):
        key = f"{job.ev.comment_key}:{i}:{cmd.name}"
        if not job.store.claim_effect(key, job.delivery.id):
            outcomes.append(f"{cmd.name}: already handled (the same comment arrived through another delivery)")
            continue
        if isinstance(cmd, CommandMistake):
            outcomes.append(_usage_error(job, cmd))
        else:
            outcomes.append(ROUTES.dispatch("comment", cmd.name, job, cmd))
    return "; ".join(outcomes)


#: Every route: (event kind, command name or action) → handler.
ROUTES = Router()
ROUTES.add(help_reply, "comment", "help")
ROUTES.add(replying_on_failure(promote.on_promote), "comment", "promote")
ROUTES.add(replying_on_failure(promote.on_rollback), "comment", "rollback")
ROUTES.add(replying_on_failure(promote.on_status), "comment", "status")
ROUTES.add(replying_on_failure(doctor.on_doctor), "comment", "doctor")
ROUTES.add(replying_on_failure(train.on_train), "comment", "train")
ROUTES.add(replying_on_failure(train.on_abort), "comment", "abort")
ROUTES.add(replying_on_failure(canary.on_continue), "comment", "continue")
ROUTES.add(merged.on_merged, "pull_request", "merged")
ROUTES.add(reviews.refresh_status, "pull_request")
ROUTES.add(reviews.refresh_status, "review")
ROUTES.add(reviews.on_push, "push")


# --------------------------------------------------------------------------- entry point


def _normalise(delivery: Delivery, ctx: HandlerContext) -> Event | Ignored:
    try:
        ev = normalize(delivery.forge, delivery.event, delivery.payload,
                       bot_login=getattr(ctx.settings, "bot_login", None))
    except Exception as e:  # normalize never raises on payload shape; if it does, retrying cannot help
        raise MalformedPayload(f"the payload could not be normalised: {type(e).__name__}: {e}") from None
    if isinstance(ev, Ignored) and ev.reason.startswith("malformed payload"):
        log.warning("delivery malformed", delivery=delivery.id, reason=ev.reason)
        raise MalformedPayload(ev.reason)
    return ev


def delivery_error(e: Exception) -> BaseException:
    """What the worker is given for ``e`` raised by a handler: :class:`Retryable` for temporary
    trouble (forge busy, infrastructure, a canary changed under us), a ForgeError for a forge
    client's refusal (:func:`mlgate.edge.forges.errors.forge_refusal`), else ``e`` itself."""
    if isinstance(e, ForgeBusy):
        return Retryable(str(e), e.retry_after)
    if isinstance(e, InfraError):
        return Retryable(str(e))
    if isinstance(e, Conflict):  # a canary changed under us (the periodic tick acted first): read it again
        return Retryable(str(e), 1.0)
    if isinstance(e, MlgateError):
        return e
    return forge_refusal(e) or e


def _on_alert(delivery: Delivery, ctx: HandlerContext) -> str:
    from mlgate.bot.handlers import retrain  # lazily, as before: only bots that take alerts load it

    return retrain.on_alert(delivery, ctx)


#: Deliveries from senders that are not forges: MLflow registry events (mlgate.bot.handlers.registry)
#: and Alertmanager notifications (mlgate.bot.handlers.retrain).
_NOT_A_FORGE: dict[str, Callable[[Delivery, HandlerContext], str]] = {
    "mlflow": lambda delivery, ctx: registry.handle_mlflow(delivery, ctx),  # looked up at each call
    "alertmanager": _on_alert,
}


def handle(delivery: Delivery, ctx: HandlerContext) -> str:
    """Process one stored delivery; returns the outcome text shown by ``mlgate bot deliveries``.

    Raises:
        Retryable: the forge or the registry is temporarily unavailable.
        MalformedPayload: the payload is not one the event can have (failed at once, never retried).
        MlgateError: a problem retrying will not fix (the worker marks the delivery failed).
    """
    other = _NOT_A_FORGE.get(delivery.forge)
    if other is not None:  # no forge event, no PR: the handler takes the delivery as it came
        try:
            return other(delivery, ctx)
        except Exception as e:
            mapped = delivery_error(e)
            if mapped is e:
                raise
            raise mapped from None
    ev = _normalise(delivery, ctx)
    if isinstance(ev, Ignored):
        log.info("delivery ignored", delivery=delivery.id, reason=ev.reason)
        return f"ignored: {ev.reason}"
    try:
        forge = ctx.forges(ev.forge, ev.installation_id)  # type: ignore[misc]
        job = Job(ev=ev, delivery=delivery, ctx=ctx, forge=forge)
        if ev.kind == "comment":
            return on_comment(job)
        return ROUTES.dispatch(ev.kind, ev.action, job)
    except Exception as e:
        mapped = delivery_error(e)
        if mapped is e:
            raise
        raise mapped from None
