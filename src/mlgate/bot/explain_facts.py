"""The facts file of ``mlgate bot explain --facts`` (forge deliveries): its model and JSON Schema
(``schemas/explain-facts.schema.json``), its validation, the policy :class:`~mlgate.bot.promotion.Snapshot`
it stands for, and ``--record``: the same facts read live, so a surprising decision can be replayed
offline and gives the same answer.

Every field is a fact :func:`mlgate.bot.handlers.snapshot.snapshot` gathers for a live decision
(field by field: :class:`ExplainFacts`); ``docs/explain-facts.example.json`` is an example. Only
``config`` is required: a fact left out reads as "none" (no reviews, no permission, no version).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Callable, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mlgate.core.errors import ConfigError, UsageError
from mlgate.core.events import Event
from mlgate.core.freshness import BaseMerge, Comparison, FileChange
from mlgate.core.policy import Review, VersionFacts, gitlab_permission

SCHEMA_ID = "https://mlgate.dev/schemas/explain-facts.schema.json"
_SHA = r"^[0-9a-f]{7,64}$"


class _Facts(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PullRequestFacts(_Facts):
    author: str | None = Field(None, description="Login of the PR/MR author (default: the delivery's).")
    head_sha: str | None = Field(None, pattern=_SHA, description="The PR head commit (default: the delivery's).")
    state: Literal["open", "closed", "merged"] | None = Field(None, description="The PR's state as the forge says.")


class ActorFacts(_Facts):
    """What the forge said of the commenter (the command's actor); without it, ``permissions`` and
    ``teams`` of the actor's login are used."""

    login: str | None = Field(None, description="The commenter (informational).")
    permission: str = Field(description="Repository permission: none, read, triage, write, maintain, admin.")
    teams: list[str] = Field(default_factory=list, description="Promoter teams/groups the commenter is in.")


class ReviewFacts(_Facts):
    user: str
    state: str = Field(description="APPROVED, CHANGES_REQUESTED, COMMENTED, DISMISSED or PENDING (any case).")
    commit_id: str | None = Field(None, description="The commit the review was given on.")
    submitted_at: str | None = Field(None, description="ISO 8601 time the review was submitted.")
    id: int | None = Field(None, description="GitHub's review id (default: its position in this list).")
    user_type: str | None = Field(None, description="GitHub's user type: User or Bot.")


class GitLabApprovalFacts(_Facts):
    approved_by: list[str] = Field(default_factory=list, description="Usernames that approved the MR.")
    approvals_left: int | None = Field(None, description="GitLab's count (informational).")
    commits: dict[str, str] = Field(default_factory=dict, description="Username -> head commit when the bot saw the approval.")


class VersionRecord(_Facts):
    tags: dict[str, str] = Field(default_factory=dict, description="The model version's tags (mlgate.gates, mlgate.git_commit, ...).")
    status: str = Field("READY", description="MLflow's registration status.")
    run_id: str | None = None


class RegistryFacts(_Facts):
    versions: dict[str, VersionRecord] = Field(default_factory=dict, description="Version number -> its registry record.")
    aliases: dict[str, str] = Field(default_factory=dict, description="Environment name -> version holding its alias.")


class FileChangeFacts(_Facts):
    path: str
    status: str = "modified"
    patch: str | None = None
    previous_path: str | None = None


class ComparisonFacts(_Facts):
    base: str
    head: str
    contains_base: bool
    files: list[FileChangeFacts] = Field(default_factory=list)
    complete: bool = True


class BaseMergeFacts(_Facts):
    to_head: ComparisonFacts = Field(description="The forge's comparison approved...head.")
    to_base: ComparisonFacts = Field(description="The forge's comparison approved...base branch.")


class RecordedFacts(_Facts):
    """Where ``--record`` read the facts (informational)."""

    delivery: str | None = None
    at: str | None = Field(None, description="UTC time of the recording, ISO 8601.")
    forge: str | None = None
    repo: str | None = None


class ExplainFacts(_Facts):
    """The facts of one forge delivery's decision (``mlgate bot explain --facts FILE``)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, title="mlgate bot explain facts (--facts FILE)")

    schema_: str | None = Field(None, alias="$schema", description="This file's JSON Schema, for editors.")
    config: str | dict[str, Any] = Field(
        description="The .mlgate.yml of the default branch: its text, or the same as a mapping.")
    pull_request: PullRequestFacts = Field(default_factory=PullRequestFacts)
    actor: ActorFacts | None = None
    permissions: dict[str, str | int] = Field(
        default_factory=dict, description="Reviewer -> repository permission (GitLab: access level number).")
    teams: dict[str, list[str]] = Field(default_factory=dict, description="Reviewer -> approver teams/groups they are in.")
    reviews: list[ReviewFacts] = Field(default_factory=list, description="GitHub reviews, as the reviews API lists them.")
    gitlab_approvals: GitLabApprovalFacts | None = Field(None, description="GitLab MR approvals (absent on GitHub).")
    committers: list[str] = Field(default_factory=list, description="Who pushed commits to the PR.")
    committers_resolved: bool = Field(True, description="False when the forge could not tell every committer.")
    bots: list[str] = Field(default_factory=list, description="Accounts whose approvals never count (the bot's own, flagged bots).")
    registry: RegistryFacts = Field(default_factory=RegistryFacts)
    review_commits: dict[str, str] = Field(
        default_factory=dict, description="GitHub review id -> the commit its approval delivery named (kept by the bot).")
    synchronized_at: str | None = Field(None, description="GitHub time of the last push the bot saw (pull_request synchronize).")
    base_merges: dict[str, BaseMergeFacts] = Field(
        default_factory=dict, description="With approvals.keep_on_base_merge: approved commit -> the forge's comparisons.")
    served_versions: dict[str, list[str]] = Field(
        default_factory=dict, description="Environment -> versions the bot's audit history shows held its alias (/rollback).")
    recorded: RecordedFacts | None = None


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the facts file, generated from :class:`ExplainFacts`."""
    schema = ExplainFacts.model_json_schema(by_alias=True)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, **schema}


def _where(path: Any) -> str:
    out = "$"
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


#: JSON Schema's names of the types pydantic's ``*_type`` errors stand for (draft 2020-12, section 6.1.1).
_JSON_TYPES = {"string_type": "string", "dict_type": "object", "list_type": "array", "bool_type": "boolean",
               "int_type": "integer", "int_parsing": "integer", "int_from_float": "integer", "model_type": "object",
               "model_attributes_type": "object", "float_type": "number", "bool_parsing": "boolean"}


def _doc_path(doc: Any, loc: tuple[Any, ...]) -> list[Any]:
    """The part of pydantic's error location that names places in ``doc`` (its keys and list
    indexes), without the union members pydantic adds (``str``, ``dict[str,any]``...); a last
    key that ``doc`` lacks (a missing property) is kept."""
    path: list[Any] = []
    node = doc
    for part in loc:
        if isinstance(node, dict) and isinstance(part, str) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        elif isinstance(node, dict) and isinstance(part, str) and part == loc[-1]:
            node = None  # the missing property itself
        else:
            continue  # a union member's tag
        path.append(part)
    return path


def _problems(doc: Any, errors: list[dict[str, Any]]) -> list[tuple[list[Any], str]]:
    """(path in ``doc``, message) per problem, worded as JSON Schema validators word them
    ("'state' is a required property"), a value that fits no member of a union once."""
    by_path: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for e in errors:
        by_path.setdefault(tuple(map(str, _doc_path(doc, e["loc"]))), []).append(e)
    out = []
    for key in sorted(by_path):
        errs = by_path[key]
        path = _doc_path(doc, errs[0]["loc"])
        kinds = [e["type"] for e in errs]
        if kinds[0] == "missing":
            out.append((path[:-1], f"{path[-1]!r} is a required property"))
        elif kinds[0] == "extra_forbidden":
            out.append((path[:-1], f"Additional properties are not allowed ({path[-1]!r} was unexpected)"))
        elif all(k in _JSON_TYPES for k in kinds):
            names = " or ".join(dict.fromkeys(repr(_JSON_TYPES[k]) for k in kinds))
            out.append((path, f"{json.dumps(errs[0]['input'])} is not of type {names}"))
        elif kinds[0] == "string_pattern_mismatch":
            out.append((path, f"{errs[0]['input']!r} does not match {errs[0]['ctx']['pattern']!r}"))
        else:
            out.append((path, errs[0]["msg"]))
    return out


def validate(doc: Any, source: str = "facts file") -> ExplainFacts:
    """Check ``doc`` against :class:`ExplainFacts` (the model ``schemas/explain-facts.schema.json``
    is generated from) and return the typed facts.

    Pydantic checks what the schema says, so the runtime needs no JSON Schema validator
    (``jsonschema`` is a test dependency only: issue 12); the messages use JSON Schema's wording.

    Raises:
        UsageError: one line per problem (``FILE: $.reviews[0]: 'state' is a required property``), at most 10.
    """
    try:  # strict: JSON Schema's types, no "7" for 7
        return ExplainFacts.model_validate(doc, strict=True)
    except ValidationError as e:
        problems = _problems(doc, e.errors(include_url=False))
    lines = [f"{source}: {_where(path)}: {message}" for path, message in problems[:10]]
    more = f"\n({len(problems) - 10} more)" if len(problems) > 10 else ""
    raise UsageError("the facts do not match schemas/explain-facts.schema.json:\n" + "\n".join(lines) + more)


def _config(facts: ExplainFacts):  # -> Config
    from mlgate.core import config as cfgmod

    if isinstance(facts.config, str):
        return cfgmod.parse(facts.config, ".mlgate.yml (facts)")
    try:
        return cfgmod.Config.model_validate(facts.config)
    except ValidationError as e:
        first = e.errors(include_url=False)[0]
        raise UsageError(f"facts: $.config{_where(first['loc'])[1:]}: {first['msg']}") from None


def snapshot(facts: ExplainFacts, ev: Event, forge: str, bot_login: str | None = None):
    """(Snapshot, version lookup) the facts stand for, as :func:`mlgate.bot.handlers.snapshot.snapshot`
    would have gathered them for ``ev``. Raises ConfigError for an invalid ``config`` text."""
    from mlgate.bot.promotion import Snapshot

    cfg = _config(facts)
    pr = facts.pull_request
    head = pr.head_sha or ev.head_sha
    perms = {u: (gitlab_permission(v) if isinstance(v, int) else str(v)) for u, v in facts.permissions.items()}
    teams = {u: frozenset(v) for u, v in facts.teams.items()}
    if facts.actor is not None:
        actor_permission, actor_teams = facts.actor.permission, frozenset(facts.actor.teams)
    else:
        actor_permission, actor_teams = perms.get(ev.actor, "none"), teams.get(ev.actor, frozenset())
    reviews = tuple(Review(user=r.user, state=r.state, commit_id=r.commit_id, submitted_at=r.submitted_at,
                           id=r.id if r.id is not None else i, user_type=r.user_type)
                    for i, r in enumerate(facts.reviews))
    gl = facts.gitlab_approvals
    approved_by = tuple(gl.approved_by) if gl is not None else (() if forge == "gitlab" else None)
    versions = facts.registry.versions

    def vf(v: str | None) -> VersionFacts | None:
        if v is None or v not in versions:
            return None
        d = versions[v]
        return VersionFacts(model=cfg.model, version=v, tags=dict(d.tags), status=d.status, run_id=d.run_id)

    tagged = [v for v, d in versions.items() if d.tags.get("mlgate.git_commit") == head and _digits(v)]

    def comparison(c: ComparisonFacts) -> Comparison:
        return Comparison(base=c.base, head=c.head, contains_base=c.contains_base, complete=c.complete,
                          files=tuple(FileChange(f.path, f.status, f.patch, f.previous_path) for f in c.files))

    snap = Snapshot(
        config=cfg, head_sha=head, pr_author=pr.author or ev.author, actor_permission=actor_permission,
        actor_teams=actor_teams, reviews=reviews, gitlab_approved_by=approved_by,
        gitlab_approval_commits=dict(gl.commits) if gl is not None else {},
        committers=frozenset(facts.committers), user_permissions=perms, user_teams=teams,
        head_candidate=vf(max(tagged, key=int)) if tagged else None, candidate=None,
        aliases=dict(facts.registry.aliases), bots=frozenset(facts.bots) | ({bot_login} if bot_login else set()),
        pr_state=pr.state, committers_resolved=facts.committers_resolved,
        served_versions={e: frozenset(v) for e, v in facts.served_versions.items()},
        review_commits={int(k): v for k, v in facts.review_commits.items() if _digits(k)},
        synchronized_at=facts.synchronized_at,
        base_merges={c: BaseMerge(comparison(b.to_head), comparison(b.to_base)) for c, b in facts.base_merges.items()},
    )
    return snap, vf


def _digits(key: str) -> bool:
    """Whether a facts key is a number ``int()`` reads: ASCII digits only (``str.isdigit()`` also
    takes "²", on which ``int()`` raises)."""
    return key.isascii() and key.isdigit()


# --------------------------------------------------------------------------- --record


def _version_record(v: Any) -> dict[str, Any]:
    return {"tags": dict(v.tags or {}), "status": str(v.status or "READY"), "run_id": v.run_id}


def _comparison(c: Comparison) -> dict[str, Any]:
    return {"base": c.base, "head": c.head, "contains_base": c.contains_base, "complete": c.complete,
            "files": [{"path": f.path, "status": f.status, "patch": f.patch, "previous_path": f.previous_path}
                      for f in c.files]}


def facts_of(config_text: str, snaps: list[tuple[Any, str]], extra_versions: list[Any]) -> dict[str, Any]:
    """The facts file for live snapshots of one delivery: ``snaps`` holds (Snapshot, command) per
    command the delivery carries (merged: the facts of a PR are the same for each); ``extra_versions``
    are registry records read besides (the versions environments hold, for ``/rollback``)."""
    first = snaps[0][0]
    out: dict[str, Any] = {
        "config": config_text,
        "pull_request": {k: v for k, v in {"author": first.pr_author, "head_sha": first.head_sha,
                                           "state": first.pr_state}.items() if v is not None},
        "permissions": {}, "teams": {}, "registry": {"versions": {}, "aliases": {}}, "served_versions": {},
        "reviews": [{"user": r.user, "state": r.state, "commit_id": r.commit_id, "submitted_at": r.submitted_at,
                     "id": r.id, "user_type": r.user_type} for r in first.reviews],
        "committers": sorted(first.committers), "committers_resolved": first.committers_resolved,
        "bots": sorted(first.bots), "review_commits": {str(k): v for k, v in sorted(first.review_commits.items())},
        "synchronized_at": first.synchronized_at, "base_merges": {},
    }
    if first.gitlab_approved_by is not None:
        out["gitlab_approvals"] = {"approved_by": list(first.gitlab_approved_by),
                                   "commits": dict(first.gitlab_approval_commits)}
    versions = out["registry"]["versions"]
    for v in extra_versions:
        versions[str(v.version)] = _version_record(v)
    for snap, command in snaps:
        if command != "status":  # /status reads no permission of the commenter
            out["actor"] = {"permission": snap.actor_permission, "teams": sorted(snap.actor_teams)}
        out["permissions"].update(snap.user_permissions)
        out["teams"].update({u: sorted(t) for u, t in snap.user_teams.items()})
        out["registry"]["aliases"].update(snap.aliases)
        for vf in (snap.head_candidate, snap.candidate):
            if vf is not None:
                versions[vf.version] = {"tags": dict(vf.tags), "status": vf.status, "run_id": vf.run_id}
        for env, held in snap.served_versions.items():
            out["served_versions"][env] = sorted(set(out["served_versions"].get(env, [])) | set(held))
        for commit, bm in snap.base_merges.items():
            out["base_merges"][commit] = {"to_head": _comparison(bm.to_head), "to_base": _comparison(bm.to_base)}
    return out


def record(payload: dict[str, Any], *, event: str, forge: str, settings: Any, store: Any,
           delivery_id: str | None = None, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> dict[str, Any]:
    """Read, as the bot would for this delivery, every fact its decision looks at; nothing is written.

    The same calls the worker makes (:func:`mlgate.bot.handlers.snapshot.snapshot`: the forge's
    permissions, teams, reviews or approvals, committers and comparisons; the registry's versions
    and aliases; the bot's own store for approval commits and audit history), all of them reads.

    Args:
        payload, event, forge: the delivery (``forge`` "github" or "gitlab").
        settings: the bot's settings (forge URLs and tokens, tracking URI, bot login).
        store: the bot's store (read only).
        delivery_id: named in ``recorded``.

    Returns:
        The facts (a mapping valid against :func:`json_schema`).

    Raises:
        UsageError: the delivery needs no facts (ignored, a push, a merge, no command), or the
            policy on the default branch cannot be read. ForgeError/InfraError: a read failed.
    """
    from mlgate.core import commands as cmdparse
    from mlgate.core import config as cfgmod
    from mlgate.core.events import Ignored, normalize
    from mlgate.bot import promotion as promo
    from mlgate.bot.handlers.common import CONFIG_FILE, HandlerContext, Job
    from mlgate.bot.handlers.snapshot import snapshot as live_snapshot
    from mlgate.edge.db.deliveries import Delivery
    from mlgate.edge.forges import make_forge
    from mlgate.edge.registry import Registry

    ev = normalize(forge, event, payload, bot_login=getattr(settings, "bot_login", None))
    if isinstance(ev, Ignored):
        raise UsageError(f"nothing to record: the bot ignores this delivery ({ev.reason}); explain needs no facts")
    if ev.kind == "push" or (ev.kind == "pull_request" and ev.action == "merged"):
        raise UsageError(f"nothing to record: the bot decides a {ev.kind} {ev.action} without policy facts")
    ctx = HandlerContext(settings=settings, store=store, registry_factory=lambda uri: Registry(uri))
    client = make_forge(ev.forge, settings, ev.installation_id)
    delivery = Delivery(id=delivery_id or "explain", forge=ev.forge, event=event, payload=payload, headers={},
                        received_at=clock(), attempts=0)
    job = Job(ev=ev, delivery=delivery, ctx=ctx, forge=client)
    branch = ev.default_branch or client.default_branch(ev.repo)
    text = client.read_file(ev.repo, CONFIG_FILE, branch)
    if text is None:
        raise UsageError(f"there is no {CONFIG_FILE} on the default branch {branch!r} of {ev.repo}: no policy to record")
    try:
        cfg = cfgmod.parse(text, CONFIG_FILE)
    except ConfigError as e:
        raise UsageError(f"{CONFIG_FILE} on the default branch {branch!r} of {ev.repo} is invalid:\n{e}") from None
    job._config = cfg
    targets: list[tuple[str, str | None, Any, str | None]] = []  # (command, actor, environment, version hint)
    if ev.kind in ("review", "pull_request"):
        if cfg.environments:
            targets.append(("status", None, cfg.environments[0], None))
    else:
        for c in cmdparse.parse(ev.body):
            if isinstance(c, cmdparse.CommandMistake) or c.name in ("help", "train", "abort"):
                continue
            if c.name == "rollback":
                c = cmdparse.resolve_rollback_word(c, cfg.model, [e.name for e in cfg.environments])
            target = promo.resolve_target(c, cfg)
            if not isinstance(target, str):
                targets.append((c.name, None if c.name == "status" else ev.actor, target[1], c.version))
    if not targets:
        raise UsageError("nothing to record: this delivery carries no command the policy decides")
    snaps, extra = [], []
    reg = job.registry(cfg)
    for command, actor, env, hint in targets:
        snap, _version, _cand = live_snapshot(job, cfg, env, cfg.model, command, actor, hint)
        snaps.append((snap, command))
        extra += [reg.get_version(cfg.model, v) for v in snap.aliases.values()]
    facts = facts_of(text, snaps, extra)
    facts["recorded"] = {"delivery": delivery_id, "at": clock().strftime("%Y-%m-%dT%H:%M:%SZ"),
                         "forge": ev.forge, "repo": ev.repo}
    return json.loads(json.dumps(facts))  # plain JSON types only
