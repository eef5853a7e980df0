"""Promotions: from gathered facts to a decision, a promotion PR/MR, and the replies.

The pure part (no I/O): :class:`Snapshot` (what the handler gathered from the forge and
the registry, or what ``mlgate bot explain --facts`` read from a file), :func:`resolve_target`,
:func:`facts_for`, :func:`promotion_for` (the typed :class:`~mlgate.core.promotion.Promotion`
a comment asks for: its branch ``mlgate/promote/<model>/<env>/v<version>``, title, body,
commit message and trailers all come from it) and the Markdown renderers (gates table,
replies). The promotion itself is written by :func:`mlgate.flows.promote.write_promotion`,
the same engine ``mlgate promote`` uses.

Canaries (issue 5): each step (or the rollback) is a
:class:`~mlgate.core.promotion.Promotion` with a canary step, written by the same
:class:`mlgate.edge.forges.ForgeWriter` on its own branch (``mlgate/canary/...``, labelled
``mlgate-canary``); :func:`permission_decision` is the check of commands that need no review
(``/train``, a canary's ``/rollback``/``/abort``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping
from urllib.parse import quote, urlsplit, urlunsplit

from mlgate.core.commands import Command
from mlgate.core.config import Config, Environment
from mlgate.core.freshness import BaseMerge
from mlgate.core.policy import Decision, Facts, Review, VersionFacts
from mlgate.core.promotion import GATES_TAG, Promotion, Trigger, gate_summary, gates_fingerprint

@dataclass(frozen=True)
class Snapshot:
    """Facts gathered for one command, as plain data (see :class:`mlgate.core.policy.Facts`).

    ``aliases``: environment name → version that holds that environment's alias now.
    ``gitlab_approved_by`` is None on GitHub. ``pr_state``: "open", "closed" or "merged".
    ``committers_resolved``: False when the forge could not tell who pushed commits.
    ``gates_fingerprint``: :func:`mlgate.core.promotion.gates_fingerprint` of ``config`` (the default
    branch's); None: computed from ``config`` by :func:`facts_for`.
    ``served_versions``: environment name → versions the bot's audit history shows held its alias.
    ``review_commits``, ``synchronized_at``, ``base_merges``: what the bot recorded of GitHub reviews
    and pushes, and the forge's comparisons of approved commits with the head and the base (issue 10).
    """

    config: Config
    head_sha: str | None = None
    pr_author: str | None = None
    actor_permission: str = "none"
    actor_teams: frozenset[str] = frozenset()
    reviews: tuple[Review, ...] = ()
    gitlab_approved_by: tuple[str, ...] | None = None
    gitlab_approval_commits: Mapping[str, str] = field(default_factory=dict)
    committers: frozenset[str] = frozenset()
    user_permissions: Mapping[str, str] = field(default_factory=dict)
    user_teams: Mapping[str, frozenset[str]] = field(default_factory=dict)
    head_candidate: VersionFacts | None = None
    candidate: VersionFacts | None = None
    aliases: Mapping[str, str] = field(default_factory=dict)
    bots: frozenset[str] = frozenset()
    pr_state: str | None = None
    committers_resolved: bool = True
    gates_fingerprint: str | None = None
    served_versions: Mapping[str, frozenset[str]] = field(default_factory=dict)
    review_commits: Mapping[int, str] = field(default_factory=dict)
    synchronized_at: str | None = None
    base_merges: Mapping[str, BaseMerge] = field(default_factory=dict)


def resolve_target(cmd: Command, cfg: Config) -> tuple[str, Environment] | str:
    """(model, environment) a command is about, or a reply explaining what is wrong.

    MODEL defaults to the configured model; ENV to the first environment (issue 3, "Commands").
    """
    model = cmd.model or cfg.model
    if not cfg.environments:
        return "`.mlgate.yml` on the default branch has no `environments`: nothing can be promoted"
    names = [e.name for e in cfg.environments]
    env_name = cmd.environment or names[0]
    if env_name not in names:
        return f"unknown environment `{env_name}` (known: {', '.join(names)})"
    if model != cfg.model:
        hint = f"; did you mean `/{cmd.name} to {model}`?" if model in names else ""
        return f"model `{model}` is not configured in `.mlgate.yml` (this repository promotes `{cfg.model}`){hint}"
    return model, cfg.environment(env_name)


def environment_for_command(cfg: Config, env: Environment, command: str) -> Environment:
    """``/train`` is checked against ``train_permission`` (default: the environment's promoters)."""
    if command == "train" and cfg.train_permission is not None:
        return env.model_copy(update={"promoters": cfg.train_permission})
    return env


def facts_for(forge: str, command: str, actor: str, model: str, env: Environment, version: str | None,
              snap: Snapshot) -> Facts:
    """Assemble :class:`mlgate.core.policy.Facts` from a :class:`Snapshot` (pure)."""
    required = snap.aliases.get(env.requires) if env.requires else None
    fingerprint = snap.gates_fingerprint
    if fingerprint is None:
        fingerprint = gates_fingerprint(snap.config)
    return Facts(
        forge="gitlab" if forge == "gitlab" else "github",
        command=command,
        environment=environment_for_command(snap.config, env, command),
        configured_model=snap.config.model,
        model=model,
        version=version,
        actor=actor,
        actor_permission=snap.actor_permission,
        actor_teams=snap.actor_teams,
        pr_author=snap.pr_author,
        committers=snap.committers,
        head_sha=snap.head_sha,
        head_candidate=snap.head_candidate.version if snap.head_candidate else None,
        reviews=snap.reviews,
        review_commits=snap.review_commits,
        synchronized_at=snap.synchronized_at,
        base_merges=snap.base_merges,
        gitlab_approved_by=snap.gitlab_approved_by,
        gitlab_approval_commits=snap.gitlab_approval_commits,
        user_teams=snap.user_teams,
        user_permissions=snap.user_permissions,
        bots=snap.bots,
        candidate=snap.candidate,
        required_env_version=required,
        current_env_version=snap.aliases.get(env.name),
        pr_state=snap.pr_state,
        committers_resolved=snap.committers_resolved,
        expected_gates_fingerprint=fingerprint,
        served_versions=frozenset(snap.served_versions.get(env.name, ())),
    )


# --------------------------------------------------------------------------- rendering


def gates_table(decision: Decision) -> str:
    """The checks as a Markdown table (✅/❌ per row)."""
    rows = ["| check | result | detail |", "|---|---|---|"]
    for c in decision.checks:
        detail = c.detail.replace("|", "\\|").replace("\n", " ")
        rows.append(f"| {c.name} | {'✅' if c.ok else '❌'} | {detail} |")
    return "\n".join(rows)


def _safe_url(uri: str | None) -> str | None:
    """An http(s) URL without user:password, else None (never print credentials)."""
    if not uri:
        return None
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https"):
        return None
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", ""))


def mlflow_links(tracking_uri: str | None, model: str, version: str, run_id: str | None) -> list[str]:
    """Markdown links to the MLflow UI (model version page, run page ``#/runs/<id>``)."""
    base = _safe_url(tracking_uri)
    out = []
    if base:
        out.append(f"[{model} version {version}]({base}/#/models/{quote(model)}/versions/{version})")
        if run_id:
            out.append(f"[MLflow run {run_id[:12]}]({base}/#/runs/{run_id})")
    elif run_id:
        out.append(f"MLflow run `{run_id}`")
    return out


def promotion_for(*, model: str, version: str, env: Environment, command: str, forge: str, actor: str | None,
                  source_repo: str, source_number: int | None, source_url: str | None, tracking_uri: str | None,
                  candidate: Any) -> Promotion:
    """The :class:`~mlgate.core.promotion.Promotion` a PR comment asks for (pure).

    Args:
        command: ``promote`` or ``rollback``. candidate: the model version (its ``run_id``,
            ``tags``); its MLflow links become the promotion's evidence.
    """
    run_id = getattr(candidate, "run_id", None)
    tags = getattr(candidate, "tags", None) or {}
    return Promotion(
        model, str(version), env.name, env.registry_alias, action="rollback" if command == "rollback" else "promote",
        trigger=Trigger("comment", actor=actor, repo=source_repo, number=source_number, forge=forge, url=source_url),
        gates=gate_summary(tags) if tags.get(GATES_TAG) else None, run_id=run_id, model_uri=f"models:/{model}/{version}",
        links=tuple(mlflow_links(tracking_uri, model, str(version), run_id)),
    )


def promotion_details(decision: Decision) -> str:
    """The bot's part of a promotion PR body: the checks table and who approved."""
    approvers = ", ".join(f"@{a}" for a in decision.approvers) or "none required"
    return f"{gates_table(decision)}\n\n**Approved by:** {approvers}"


def reply(title: str, body: str = "", decision: Decision | None = None) -> str:
    """mlgate's comment text (the marker is added by the forge)."""
    parts = [f"**mlgate** · {title}"]
    if body:
        parts += ["", body]
    if decision is not None:
        parts += ["", gates_table(decision)]
        if decision.not_counted:
            parts += ["", "Approvals not counted: " + "; ".join(decision.not_counted)]
    return "\n".join(parts)


def refusal(cmd_text: str, decision: Decision) -> str:
    """Reply for a refused command: what to do, first."""
    todo = "\n".join(f"- {r}" for r in decision.reasons)
    return reply(f"`{cmd_text}` was refused", "To go ahead:\n" + todo, decision)


# --------------------------------------------------------------------------- canaries (issue 5) and /train (issue 6)

def permission_decision(command: str, actor: str, promoters: Any, permission: str, teams: frozenset[str],
                        scope: str) -> Decision:
    """Who may run a command that needs no review (``/train``, a canary's ``/rollback``/``/abort``) (pure):
    :func:`mlgate.core.policy.promoter_check` as a :class:`~mlgate.core.policy.Decision`.

    Args:
        promoters: :class:`mlgate.core.config.Promoters` (``min_permission``, ``users``, ``teams``).
        permission: the actor's level on the repository (see :data:`mlgate.core.policy.PERMISSIONS`).
        teams: the teams/groups among ``promoters.teams`` the actor belongs to.
        scope: what the permission is about, for the message (``production``, ``train_permission``).
    """
    from mlgate.core.policy import promoter_check

    check = promoter_check(command, actor, promoters, permission, teams, scope)
    return Decision(allowed=check.ok, reasons=[] if check.ok else [check.detail], checks=[check])


def unmerged_steps(record: Any) -> list[Any]:
    """The step PRs/MRs of a canary that were opened but never went live (pure): after a rollback
    or an abort they must be closed, since merging one would send traffic to the canary again."""
    return [s for s in record.steps_log if s.url and s.live_at is None]


def close_unmerged_steps(forge: Any, repo: str | None, record: Any, why: str) -> list[tuple[Any, str, str]]:
    """Close the canary's :func:`unmerged_steps` through ``forge``, each with a comment saying why.

    Args:
        forge: a :class:`mlgate.edge.forges.base.Forge` for the GitOps repository.
        repo: its ``owner/name`` (GitLab: project path).
        record: the canary, after its rollback or abort.
        why: what happened, completing "The canary ... was ..." (``rolled back by @carol with /rollback``).

    Returns:
        (step, outcome, Markdown line) per step PR; outcome "closed", "not open" (already
        closed or merged) or "failed" (the line says to close it by hand). Never raises.
    """
    from mlgate.edge.forges.base import pr_number_from_url

    out: list[tuple[Any, str, str]] = []
    for step in unmerged_steps(record):
        label = f"step {step.index + 1} ({step.percent} %) {step.url}"
        number = pr_number_from_url(step.url)
        if not repo or number is None:
            out.append((step, "failed", f"- {label}: not closed (its number is unknown): close it by hand, "
                                        "do not merge it"))
            continue
        comment = reply(
            "closed: this canary step must not be merged",
            f"The canary of `{record.model}` version {record.version} in `{record.environment}` was {why}. "
            f"Merging this step would send {step.percent} % of the traffic to version {record.version} while mlgate "
            "no longer drives the canary.",
        )
        try:
            closed = forge.close_pull_request(repo, number, comment)
        except Exception as e:  # the rollback stands; say what is left to do
            text = str(e).splitlines()[0][:120] if str(e) else ""
            out.append((step, "failed", f"- {label}: could not be closed ({type(e).__name__}: {text}): close it by "
                                        "hand, do not merge it"))
            continue
        out.append((step, "closed", f"- {label}: closed") if closed
                   else (step, "not open", f"- {label}: was already closed or merged"))
    return out


def canary_merge_verdict(record: Any, urls: set[str]) -> tuple[str, Any]:
    """What the merge of a PR/MR whose address is one of ``urls`` means for ``record`` (pure).

    Returns (verdict, the step or rollback record that PR wrote, or None):

    - ``"live"``: it is the change the canary is waiting for (the current step of an
      ``observing`` canary, or the rollback of a ``rolling_back`` one): make it live;
    - ``"done"``: that change already went live (a redelivery, or the tick saw it first);
    - ``"stale"``: a step that never went live, of a canary that no longer waits for it
      (rolled back, rolling back, aborted, promoted, or moved on): nothing may advance;
    - ``"unknown"``: the canary wrote no such PR.
    """
    rb = record.rollback
    if rb is not None and rb.url in urls:
        if record.status == "rolling_back" and rb.live_at is None:
            return "live", rb
        return "done", rb
    for s in record.steps_log:
        if s.url in urls:
            if s.live_at is not None:
                return "done", s
            if record.status == "observing" and s.index == record.step:
                return "live", s
            return "stale", s
    return "unknown", None


def stale_merge_reply(record: Any, step: Any) -> str:
    """The reply on a step PR merged after its canary stopped waiting for it."""
    what = (f"canary {record.id} of `{record.model}` version {record.version} in `{record.environment}` is "
            f"{record.status.replace('_', ' ')}")
    if record.status == "rolling_back":
        rollback = (f"merge the rollback ({record.rollback.url})" if record.rollback is not None
                    and record.rollback.url else "let the rollback finish")
        todo = f"{rollback} or revert this merge, to send the traffic back to version {record.primary_version}"
    elif record.status in ("rolled_back", "aborted"):
        todo = (f"revert this merge: the manifest now sends {step.percent} % of the traffic to version "
                f"{record.version}, which mlgate no longer watches")
    else:
        todo = "revert this merge unless you meant it: mlgate did not write it for the canary's current step"
    return reply("this merge was ignored",
                 f"Step {step.index + 1} ({step.percent} %) was merged, but {what}; mlgate advanced nothing. "
                 f"To undo the traffic change, {todo}.")


def canary_comment(title: str, report: str) -> str:
    """The source PR's mlgate comment while a canary runs: a title line, then the canary's report."""
    return reply(title, report)
