"""``mlgate bot explain``: what the bot would do with one saved delivery, and why.

No network and no writes: the delivery goes through the same :func:`mlgate.core.events.normalize`,
:func:`mlgate.core.commands.parse` and (given facts) :func:`mlgate.core.policy.decide` as the worker.
Operators use it to answer "why did the bot not react to my comment?".

Facts file (JSON; ``config`` required, every other key optional; the full format is
``schemas/explain-facts.schema.json``, from :class:`mlgate.bot.explain_facts.ExplainFacts`, with an
example in ``docs/explain-facts.example.json``; ``mlgate bot explain DELIVERY --record FACTS``
writes one from the live forge and registry)::

    {
      "config": "<text of .mlgate.yml on the default branch>"   (or the same as a mapping),
      "pull_request": {"author": "alice", "head_sha": "<sha>"},
      "permissions": {"bob": "write"},            # repository permission per user (GitLab: access level number)
      "teams": {"bob": ["org/ml-reviewers"]},     # team/group memberships per user
      "reviews": [{"user": "carol", "state": "APPROVED", "commit_id": "<sha>", "submitted_at": "..."}],
      "gitlab_approvals": {"approved_by": ["carol"], "approvals_left": 0},
      "committers": ["dave"],
      "registry": {
        "versions": {"7": {"tags": {"mlgate.gates": "passed", "mlgate.git_commit": "<sha>"},
                           "status": "READY", "run_id": "..."}},
        "aliases": {"staging": "6"}                # environment name -> version holding its alias
      }
    }
"""

from __future__ import annotations

from typing import Any

from mlgate.core.commands import Command, CommandMistake, help_text, parse, resolve_rollback_word
from mlgate.core.events import Event, Ignored, normalize
from mlgate.core.policy import decide
from mlgate.core.promotion import Promotion, parse_branch, parse_hidden


def guess_event(payload: dict[str, Any], forge: str) -> str:
    """The event name a saved payload most likely came with (when ``--event`` is not given)."""
    if forge == "mlflow":
        return f"{payload.get('entity')}.{payload.get('action')}"
    if forge == "gitlab":
        return {"note": "Note Hook", "merge_request": "Merge Request Hook", "push": "Push Hook"}.get(
            str(payload.get("object_kind")), str(payload.get("object_kind") or "unknown"))
    if "comment" in payload and "issue" in payload:
        return "issue_comment"
    if "review" in payload and "pull_request" in payload:
        return "pull_request_review"
    if "pull_request" in payload and "number" in payload:
        return "pull_request"
    if "ref" in payload and "commits" in payload:
        return "push"
    return "unknown"


def guess_forge(payload: dict[str, Any]) -> str:
    """"gitlab" when the payload has GitLab's ``object_kind``, "mlflow" for MLflow's ``entity``/``action``/``data``, else "github"."""
    if "entity" in payload and "action" in payload and "data" in payload:
        return "mlflow"
    return "gitlab" if "object_kind" in payload or "event_name" in payload else "github"


def _describe(ev: Event) -> str:
    where = f"{ev.repo}#{ev.number}" if ev.number is not None else f"{ev.repo} ({ev.head_ref})"
    if ev.kind == "comment":
        return f"comment {ev.comment_id} on {where} by @{ev.actor}"
    if ev.kind == "review":
        return f"review {ev.review_state} on {where} by @{ev.actor} (commit {(ev.review_commit or '?')[:7]})"
    if ev.kind == "pull_request":
        return f"pull request {where} {ev.action} (head {(ev.head_sha or '?')[:7]}, branch {ev.head_ref})"
    return f"push to {where} (now {(ev.head_sha or '?')[:7]})"


def _snapshot(facts: dict[str, Any], ev: Event, forge: str):
    """(Snapshot, version lookup) from a facts file (:mod:`mlgate.bot.explain_facts`); UsageError names
    the part that does not match ``schemas/explain-facts.schema.json``."""
    from mlgate.bot import explain_facts

    return explain_facts.snapshot(explain_facts.validate(facts), ev, forge)


def explain(payload: dict[str, Any], *, event: str | None = None, forge: str | None = None,
            facts: dict[str, Any] | None = None, bot_login: str | None = None) -> str:
    """A plain-text account of what the bot would do with this delivery, and why.

    Args:
        payload: the delivery's JSON body.
        event: the event header value (``X-GitHub-Event`` / ``X-Gitlab-Event``); guessed when None.
        forge: "github" or "gitlab"; guessed when None.
        facts: reviews, permissions, registry state and config (see the module docstring);
            without them the policy is not evaluated.
        bot_login: the bot's account name (its own comments are ignored).

    Returns:
        Text, one finding per line. Never performs I/O.

    Raises:
        UsageError / ConfigError: the facts are unusable (the message says which part).
    """
    from dataclasses import replace

    from mlgate.bot import promotion as promo

    forge = forge or guess_forge(payload)
    event = event or guess_event(payload, forge)
    if forge == "mlflow":  # a registry event (issue 13): mlgate.bot.registry_explain
        from mlgate.bot.registry_explain import explain_registry

        return explain_registry(payload, event=event, facts=facts)
    out = [f"delivery: {forge} {event}" + (f" (action {payload.get('action')})" if payload.get("action") else "")]
    ev = normalize(forge, event, payload, bot_login=bot_login)
    if isinstance(ev, Ignored):
        out.append(f"ignored: {ev.reason}")
        out.append("would: acknowledge and do nothing")
        return "\n".join(out)
    out.append(f"event: {_describe(ev)}")
    if ev.kind == "push":
        out.append("would: nothing (pull request updates arrive as pull_request / merge request events)")
        return "\n".join(out)
    if ev.kind == "pull_request" and ev.action == "merged":

        parsed = parse_branch(ev.head_ref)
        if parsed:
            model, env, version = parsed
            src = (parse_hidden(ev.body) or {}).get("source_repo", "?")
            out.append(f"would: move the registry alias of environment {env} of {model} to version {version} "
                       f"(policy from {src}), tag the version and write an audit record")
        else:
            out.append("would: nothing (not a promotion branch mlgate/promote/<model>/<env>/v<version>)")
        return "\n".join(out)
    if ev.kind in ("review", "pull_request"):
        out.append("would: re-evaluate the first environment's gates and set commit status mlgate/gates")
        if facts is None:
            return "\n".join(out)
        snap, vf = _snapshot(facts, ev, forge)
        cfg = snap.config
        if not cfg.environments:
            out.append("no environments configured")
            return "\n".join(out)
        env = cfg.environments[0]
        version = snap.head_candidate.version if snap.head_candidate else None
        snap = replace(snap, candidate=vf(version))
        d = decide(promo.facts_for(forge, "status", ev.actor, cfg.model, env, version, snap))
        out.append(f"status: {'success' if d.allowed else 'pending'} — {d.summary()}")
        out += [f"  {'ok ' if c.ok else 'NO '} {c.name}: {c.detail}" for c in d.checks]
        return "\n".join(out)

    cmds = parse(ev.body)
    if not cmds:
        out.append("commands: none (a command must start a line, outside quotes and code blocks)")
        out.append("would: do nothing")
        return "\n".join(out)
    out.append("commands:")
    for c in cmds:
        if isinstance(c, CommandMistake):
            out.append(f"  line {c.line}: `{c.text}` -> usage error: {c.message}")
        else:
            out.append(f"  line {c.line}: {c.describe()}")
    for c in cmds:
        out += _explain_command(c, ev, forge, facts)
    return "\n".join(out)


def _explain_command(c: Command | CommandMistake, ev: Event, forge: str, facts: dict[str, Any] | None) -> list[str]:
    from dataclasses import replace

    from mlgate.bot import promotion as promo

    if isinstance(c, CommandMistake):
        return [f"would: reply with usage for line {c.line} ({c.message}) and run nothing"]
    if c.name == "help":
        return ["would: reply with the help text", *("    " + ln for ln in help_text().splitlines()[:1])]
    if c.name in ("train", "abort"):
        return [f"would: reply that /{c.name} needs an Argo backend this bot does not run"]
    if c.name == "doctor":
        return ["would: run mlgate doctor's checks for the default branch's .mlgate.yml (read-only) and reply with "
                "the list"]
    if c.name == "continue":
        return ["would: write the next step of this PR's paused canary when the commenter is a promoter of its "
                "environment, else refuse with the reason (the canary's state is in the bot's database, which "
                "explain does not read)"]
    if facts is None:
        return [f"would: check the policy for {c.describe()} (pass --facts FILE to evaluate it)"]
    snap, vf = _snapshot(facts, ev, forge)
    cfg = snap.config
    if c.name == "rollback":
        c = resolve_rollback_word(c, cfg.model, [e.name for e in cfg.environments])
    target = promo.resolve_target(c, cfg)
    if isinstance(target, str):
        return [f"would: reply: {target}"]
    model, env = target
    if c.name == "rollback":
        current = snap.aliases.get(env.name)
        cur = vf(current)
        version = cur.tags.get(f"mlgate.previous.{env.name}") if cur else None
    else:
        version = c.version or (snap.head_candidate.version if snap.head_candidate else None)
    snap = replace(snap, candidate=vf(version))
    d = decide(promo.facts_for(forge, c.name, ev.actor, model, env, version, snap))
    lines = [f"decision for {c.describe()} ({model} version {version or '?'} to {env.name}): "
             + ("allowed" if d.allowed else "refused")]
    lines += [f"  {'ok ' if ch.ok else 'NO '} {ch.name}: {ch.detail}" for ch in d.checks]
    if d.not_counted:
        lines.append("  approvals not counted: " + "; ".join(d.not_counted))
    if c.name == "status":
        lines.append("would: reply with this table")
    elif d.allowed:
        g = env.gitops
        where = (f"commit to {g.repository} branch {g.branch}" if g.mode == "push" else
                 f"open a promotion PR from branch {Promotion(model, version or '?', env.name, env.registry_alias).branch} "
                 f"into {g.repository} {g.branch}")
        lines.append(f"would: {where}, editing {g.path} ({g.target.kind} target), and reply with the link")
    else:
        lines.append("would: refuse and reply with the reasons above")
    return lines
