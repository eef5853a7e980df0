"""Promotions: from gathered facts to a decision, a promotion PR/MR, and the replies.

The pure part (no I/O): :class:`Snapshot` (what the handler gathered from the forge and
the registry, or what ``mlgate bot explain --facts`` read from a file), :func:`resolve_target`,
:func:`facts_for`, :func:`promotion_for` (the typed :class:`~mlgate.core.promotion.Promotion`
a comment asks for: its branch ``mlgate/promote/<model>/<env>/v<version>``, title, body,
commit message and trailers all come from it) and the Markdown renderers (gates table,
replies). The promotion itself is written by :func:`mlgate.flows.promote.write_promotion`,
the same engine ``mlgate promote`` uses.

Canaries (issue 5): :class:`CanaryWriter` writes each canary step (or the rollback) through
the forge, on its own branch (:func:`canary_branch`, ``mlgate/canary/...``) labelled
``mlgate-canary``; :func:`permission_decision` is the check of commands that need no review
(``/train``, a canary's ``/rollback``/``/abort``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping
from urllib.parse import quote, urlsplit, urlunsplit

from mlgate.core.commands import Command
from mlgate.core.config import Config, Environment
from mlgate.core.policy import Decision, Facts, Review, VersionFacts
from mlgate.core.promotion import GATES_TAG, LABEL, Promotion, Trigger, gate_summary, gates_fingerprint

@dataclass(frozen=True)
class Snapshot:
    """Facts gathered for one command, as plain data (see :class:`mlgate.core.policy.Facts`).

    ``aliases``: environment name → version that holds that environment's alias now.
    ``gitlab_approved_by`` is None on GitHub. ``pr_state``: "open", "closed" or "merged".
    ``committers_resolved``: False when the forge could not tell who pushed commits.
    ``gates_fingerprint``: :func:`mlgate.flows.pipeline.gates_fingerprint` of ``config`` (the default
    branch's); None: computed from ``config`` by :func:`facts_for`.
    ``served_versions``: environment name → versions the bot's audit history shows held its alias.
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

#: Label of the pull/merge requests that carry a canary step or rollback.
CANARY_LABEL = "mlgate-canary"
CANARY_BRANCH_PREFIX = "mlgate/canary/"
_TRAILER = re.compile(r"^(?P<key>[A-Z][A-Za-z-]+): (?P<value>.*)$")


def trailers(message: str) -> dict[str, str]:
    """The ``Key: value`` trailer lines of a commit message (e.g. ``Canary-Id``, ``Canary-Step``)."""
    out: dict[str, str] = {}
    for line in (message or "").splitlines():
        m = _TRAILER.match(line.strip())
        if m:
            out[m["key"]] = m["value"].strip()
    return out


def canary_branch(message: str) -> str:
    """Branch of a canary step/rollback PR, from the commit message's trailers (pure).

    ``mlgate/canary/<model>/<env>/c<canary id>-v<version>/step-<n>`` or ``.../rollback``: one
    branch per step, so a merged step never blocks the next, and a second canary of the same
    version (after a rollback) gets new branches.
    """
    t = trailers(message)
    step = t.get("Canary-Step", "x")
    safe = lambda v: re.sub(r"[^A-Za-z0-9_.-]+", "-", v) or "x"  # noqa: E731
    leaf = "rollback" if step == "rollback" else f"step-{safe(step)}"
    return (f"{CANARY_BRANCH_PREFIX}{safe(t.get('Model', 'model'))}/{safe(t.get('Environment', 'env'))}/"
            f"c{safe(t.get('Canary-Id', '0'))}-v{safe(t.get('Model-Version', '0'))}/{leaf}")


def is_canary_branch(ref: str | None) -> bool:
    """Whether ``ref`` is a branch of a canary step/rollback PR (see :func:`canary_branch`)."""
    return bool(ref and ref.startswith(CANARY_BRANCH_PREFIX))


def canary_id_from_branch(ref: str | None) -> int | None:
    """The canary id in a :func:`canary_branch` name, or None."""
    m = re.match(r"^" + re.escape(CANARY_BRANCH_PREFIX) + r"[^/]+/[^/]+/c(?P<id>[0-9]+)-v[^/]+/[^/]+$", ref or "")
    return int(m["id"]) if m else None


def canary_pr_body(message: str, source: Mapping[str, Any]) -> str:
    """Markdown body of a canary step/rollback PR: the commit message, where the canary came from, the change."""
    from mlgate.edge.forges.base import CHANGE_PLACEHOLDER

    lines = (message or "").splitlines()
    subject = lines[0] if lines else "canary step"
    text = "\n".join(lines[1:]).strip()
    who = f"@{source['actor']}" if source.get("actor") else "mlgate"
    where = source.get("url") or source.get("repo") or "-"
    step = trailers(message).get("Canary-Step")
    merge = ("Merging it sends the traffic back to the primary and ends the canary."
             if step == "rollback" else
             "Merging it makes this step live: mlgate measures it after the canary's interval, then opens the next "
             "step or the rollback.")
    return "\n".join([
        f"## {subject}", "", f"Canary started by {who} on {where}.", "", "```", text, "```", "",
        f"**Change:** {CHANGE_PLACEHOLDER}", "", merge,
    ])


class CanaryWriter:
    """:class:`mlgate.edge.git.PromotionWriter` for a canary the bot drives: each step (or the
    rollback) is written through the forge, as a pull/merge request (``pull-request`` mode: the
    step is live when it is merged) or a commit on the branch (``push`` mode: live at once).

    Args:
        forge: the GitOps repository's forge client.
        repo: its ``owner/name`` (GitLab: project path).
        mode: ``pull-request`` or ``push``.
        source: the canary's source (actor, PR url) for the PR body.
    """

    def __init__(self, forge: Any, repo: str, mode: str, source: Mapping[str, Any]):
        self.forge, self.repo, self.mode, self.source = forge, repo, mode, dict(source)

    def write(self, change: Any) -> Any:
        """Raises ForgeError/ForgeBusy (forge trouble), ManifestError (the edit failed)."""
        from mlgate.edge.forges.base import FileEdit, PromotionRequest, describe_change
        from mlgate.edge.git import PromotionResult as GitopsResult

        subject = (change.message or "canary step").splitlines()[0]
        req = PromotionRequest(
            repo=self.repo, base=change.branch, branch=canary_branch(change.message),
            edits=(FileEdit(change.path, change.edit),), message=change.message, title=subject,
            body=canary_pr_body(change.message, self.source), labels=(LABEL, CANARY_LABEL), mode=self.mode,
        )
        res = self.forge.open_promotion(req)
        url = res.url if self.mode != "push" else None
        return GitopsResult(commit=res.commit, url=url, changed=res.changed, diff=describe_change(res.diff))


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
