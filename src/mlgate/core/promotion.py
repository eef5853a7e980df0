"""The promotion: one typed value from which every name and text of a promotion comes.

A :class:`Promotion` says which model version goes to which environment, why (its
:class:`Trigger`: a CLI or CI job, a PR comment, a canary, a registry event, an alert) and
with what evidence (the gate summary, the MLflow run and model URI, links). From it, and only
from it, come:

- the branch of its promotion PR/MR, ``mlgate/promote/<model>/<env>/v<version>``
  (:attr:`Promotion.branch`; :func:`parse_branch` reads it back);
- the PR/MR title (:attr:`Promotion.title`) and the fixed part of its body (:meth:`Promotion.body`);
- the commit message with its git trailers (:meth:`Promotion.message`;
  :func:`parse_message` reads the trailers back into the same value). Trailers follow git's
  convention (``git interpret-trailers``): ``Key: value`` lines in the message's last paragraph.

It also holds the eligibility checks that every caller runs before a promotion (the CLI's
``mlgate promote`` and the bot's approval policy): gates passed under the current gates
fingerprint, the version registered and READY, the ``requires`` environment holding it first
(:func:`eligibility`), and the placeholders of a manifest value template (:func:`template_values`).

Pure: no I/O. The edge writes what this module composes (:mod:`mlgate.edge.git` pushes,
:mod:`mlgate.edge.forges` opens PRs); :mod:`mlgate.flows.promote` drives them.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from mlgate.core.config import Config, Environment

#: Branch prefix of promotion PRs/MRs.
BRANCH_PREFIX = "mlgate/promote/"
#: Branch prefix of canary step and rollback PRs/MRs.
CANARY_BRANCH_PREFIX = "mlgate/canary/"
#: Label of every PR/MR mlgate opens for a promotion; canary steps carry the second one too.
LABEL = "mlgate-promotion"
CANARY_LABEL = "mlgate-canary"
#: Registry tags on a version: its gate result, and the fingerprint of the gates it was validated under.
GATES_TAG = "mlgate.gates"
FINGERPRINT_TAG = "mlgate.gates.fingerprint"
#: What a promotion does: move a new version in, or return to one that served before.
ACTIONS = ("promote", "rollback")
#: What started a promotion.
TRIGGERS = ("cli", "ci", "comment", "canary", "registry", "alert")

_BRANCH = re.compile(r"^mlgate/promote/(?P<model>[^/]+)/(?P<env>[^/]+)/v(?P<version>[0-9]+)$")
_CANARY_BRANCH = re.compile(r"^mlgate/canary/(?P<model>[^/]+)/(?P<env>[^/]+)/c(?P<id>[0-9]+)-v(?P<version>[0-9]+)/"
                            r"(?:step-(?P<step>[0-9]+)|(?P<rollback>rollback))$")
_TRAILER = re.compile(r"^(?P<key>[A-Za-z][A-Za-z0-9-]*): (?P<value>.*)$")
_HIDDEN = re.compile(r"<!-- mlgate-promotion (\{.*?\}) -->", re.S)


@dataclass(frozen=True)
class Trigger:
    """What started a promotion.

    ``kind``: one of :data:`TRIGGERS`. ``actor``: the login that asked (a PR comment's author,
    the CI job's actor), if any. ``repo``/``number``/``forge``: the source repository
    (``owner/name``, GitLab project path), its PR/MR number and forge (``github``/``gitlab``)
    for a comment. ``url``: a link to the source (PR, CI job, alert).
    """

    kind: str = "cli"
    actor: str | None = None
    repo: str | None = None
    number: int | None = None
    forge: str | None = None
    url: str | None = None


@dataclass(frozen=True)
class CanaryStep:
    """The strategy step a promotion is: one step of a canary, or its rollback.

    ``canary_id``: the canary (its record in the store). ``step``: ``"1"``..``"<steps>"`` or
    ``"rollback"``. ``percent``: the canary's share of the traffic after the step (0 for a
    rollback). ``primary_version``: the version serving the rest. ``steps``: how many steps the
    canary has. ``reason``: why it rolls back.
    """

    canary_id: int
    step: str
    percent: int
    primary_version: str
    steps: int = 0
    reason: str = ""

    @property
    def rollback(self) -> bool:
        return self.step == "rollback"

    @property
    def last(self) -> bool:
        """The 100 % step: the version becomes the primary when it is live."""
        return not self.rollback and self.step == str(self.steps)


@dataclass(frozen=True)
class Promotion:
    """One model version going to one environment.

    ``alias``: the environment's registry alias (``Environment.registry_alias``), which moves
    when the promotion lands. ``action``: ``promote`` or ``rollback``. ``gates``: the gate
    summary (``passed (3/3)``). ``run_id``/``model_uri``: the MLflow evidence. ``links``:
    Markdown evidence links shown in the PR body.
    """

    model: str
    version: str
    environment: str
    alias: str
    action: str = "promote"
    trigger: Trigger = field(default_factory=Trigger)
    gates: str | None = None
    run_id: str | None = None
    model_uri: str | None = None
    links: tuple[str, ...] = ()
    canary: CanaryStep | None = None

    @property
    def branch(self) -> str:
        """``mlgate/promote/<model>/<env>/v<version>``: the promotion PR/MR's branch; a canary
        step's is ``mlgate/canary/<model>/<env>/c<canary id>-v<version>/step-<n>`` (or
        ``.../rollback``): one branch per step, so a merged step never blocks the next, and a
        second canary of the same version gets new branches."""
        c = self.canary
        if c is not None:
            leaf = "rollback" if c.rollback else f"step-{c.step}"
            return f"{CANARY_BRANCH_PREFIX}{self.model}/{self.environment}/c{c.canary_id}-v{self.version}/{leaf}"
        return f"{BRANCH_PREFIX}{self.model}/{self.environment}/v{self.version}"

    @property
    def labels(self) -> tuple[str, ...]:
        return (LABEL, CANARY_LABEL) if self.canary is not None else (LABEL,)

    @property
    def verb(self) -> str:
        return "Roll back" if self.action == "rollback" else "Promote"

    @property
    def title(self) -> str:
        """The PR/MR title and the commit subject."""
        c = self.canary
        if c is not None and c.rollback:
            return f"canary: roll back {self.model} v{self.version} in {self.environment}"
        if c is not None:
            return (f"canary: {self.model} v{self.version} at {c.percent} % in {self.environment} "
                    f"(step {c.step}/{c.steps})")
        return f"{self.verb} {self.model} to version {self.version} in {self.environment}"

    @property
    def summary(self) -> str:
        """The sentence between the subject and the trailers of the commit message."""
        c = self.canary
        if c is not None and c.rollback:
            return f"mlgate rolls back the canary of {self.model} v{self.version}: {c.reason}"
        if c is not None:
            text = (f"mlgate moves {c.percent} % of {self.environment}'s traffic to {self.model} v{self.version} "
                    f"(primary v{c.primary_version}).")
            return text + (f" This is the last step: v{self.version} becomes the primary." if c.last else "")
        what = "rolls back" if self.action == "rollback" else "promotes"
        return (f"mlgate {what} model version {self.version} of {self.model} to {self.environment} "
                f"(alias {self.alias}).")

    def trailers(self) -> list[tuple[str, str]]:
        """The git trailers, in order; :func:`parse_message` reads them back."""
        t = self.trigger
        out = [("Model", self.model), ("Model-Version", self.version), ("Environment", self.environment),
               ("Alias", self.alias), ("Action", self.action), ("Trigger", t.kind)]
        c = self.canary
        if c is not None:
            out += [("Primary-Version", c.primary_version), ("Canary-Id", str(c.canary_id)), ("Canary-Step", c.step),
                    ("Canary-Percent", str(c.percent)), ("Canary-Steps", str(c.steps))]
            if c.reason:
                out.append(("Canary-Reason", _one_line(c.reason)))
        optional = [("Requested-By", t.actor), ("Source-Repo", t.repo),
                    ("Source-Number", str(t.number) if t.number is not None else None),
                    ("Source-Forge", t.forge), ("Source-URL", t.url), ("Gates", self.gates),
                    ("Source-Run", self.run_id), ("Model-URI", self.model_uri)]
        out += [(k, _one_line(v)) for k, v in optional if v]
        out += [("Evidence", _one_line(link)) for link in self.links]
        return out

    def message(self) -> str:
        """The commit message: subject, a sentence, then the trailers (last paragraph)."""
        trailers = "\n".join(f"{k}: {v}" for k, v in self.trailers())
        return f"{self.title}\n\n{_one_line(self.summary)}\n\n{trailers}\n"

    def hidden(self) -> str:
        """``<!-- mlgate-promotion {json} -->``: the machine-readable block of a PR/MR body."""
        t = self.trigger
        data = {"model": self.model, "version": self.version, "environment": self.environment,
                "alias": self.alias, "command": self.action, "trigger": t.kind, "forge": t.forge,
                "source_repo": t.repo, "source_number": t.number}
        text = json.dumps(data, sort_keys=True, separators=(",", ":")).replace("--", "\\u002d\\u002d")
        return f"<!-- mlgate-promotion {text} -->"

    def body(self, details: str = "", change: str = "{{mlgate:change}}") -> str:
        """Markdown body of the promotion PR/MR.

        Args:
            details: Markdown the caller adds after the heading (the bot's gates table and approvers).
            change: the change line; the forge replaces the placeholder by the real diff.
        """
        t = self.trigger
        source = t.url or (f"{t.repo}#{t.number}" if t.repo and t.number else t.repo)
        who = f"@{t.actor}" if t.actor else "mlgate"
        if self.canary is not None:
            return self._canary_body(who, source or "-", change)
        how = {"comment": f"with `/{self.action}`", "cli": "with `mlgate promote`", "ci": "by a CI job",
               "canary": "by a canary", "registry": "by a registry event", "alert": "by a monitoring alert"}
        lines = [f"## {self.verb} `{self.model}` version {self.version} to `{self.environment}`", "",
                 f"Requested by {who}" + (f" on {source}" if source else "") + f" {how.get(t.kind, '')}.".replace(" .", "."),
                 ""]
        if details:
            lines += [details, ""]
        if self.gates:
            lines.append(f"**Gates:** {self.gates}")
        if source:
            lines.append(f"**Source:** {source}")
        if self.links:
            lines.append("**MLflow:** " + " · ".join(self.links))
        lines += [f"**Change:** {change}", "",
                  f"Merging this PR moves the registry alias `{self.alias}` of `{self.model}` to version "
                  f"{self.version}.", "", self.hidden()]
        return "\n".join(lines)


    def _canary_body(self, who: str, where: str, change: str) -> str:
        merge = ("Merging it sends the traffic back to the primary and ends the canary."
                 if self.canary is not None and self.canary.rollback else
                 "Merging it makes this step live: mlgate measures it after the canary's interval, then opens the "
                 "next step or the rollback.")
        text = self.message().split("\n", 2)[2].strip()
        return "\n".join([f"## {self.title}", "", f"Canary started by {who} on {where}.", "", "```", text, "```", "",
                          f"**Change:** {change}", "", merge, "", self.hidden()])


def _one_line(value: str) -> str:
    return " ".join(str(value).split())


def parse_branch(branch: str | None) -> tuple[str, str, str] | None:
    """(model, environment, version) of a promotion branch (:attr:`Promotion.branch`), else None."""
    m = _BRANCH.match(branch or "")
    return (m["model"], m["env"], m["version"]) if m else None


def parse_canary_branch(branch: str | None) -> tuple[str, str, int, str, str] | None:
    """(model, environment, canary id, version, step or ``"rollback"``) of a canary step's
    branch (:attr:`Promotion.branch` with a :class:`CanaryStep`), else None."""
    m = _CANARY_BRANCH.match(branch or "")
    return (m["model"], m["env"], int(m["id"]), m["version"], m["step"] or "rollback") if m else None


def is_canary_branch(ref: str | None) -> bool:
    """Whether ``ref`` is under the canary branch prefix (a canary step or rollback PR)."""
    return bool(ref and ref.startswith(CANARY_BRANCH_PREFIX))


def trailers(message: str | None) -> list[tuple[str, str]]:
    """The ``Key: value`` trailers of a commit message's last paragraph (git's convention)."""
    paragraphs = [p for p in re.split(r"\n\s*\n", (message or "").strip()) if p.strip()]
    if len(paragraphs) < 2:
        return []
    out = []
    for line in paragraphs[-1].splitlines():
        m = _TRAILER.match(line.strip())
        if not m:
            return []  # git: a trailer block is all trailers
        out.append((m["key"], m["value"].strip()))
    return out


def parse_message(message: str | None) -> Promotion | None:
    """The :class:`Promotion` whose :meth:`~Promotion.message` this is, else None.

    A message without the ``Model``, ``Model-Version``, ``Environment`` and ``Alias`` trailers
    (a hand-written commit, a canary step) gives None.
    """
    pairs = trailers(message)
    t = dict(pairs)
    if not all(t.get(k) for k in ("Model", "Model-Version", "Environment", "Alias")):
        return None
    canary = None
    if "Canary-Step" in t:
        try:
            canary = CanaryStep(int(t.get("Canary-Id", "")), t["Canary-Step"], int(t.get("Canary-Percent", "")),
                                t.get("Primary-Version", ""), int(t.get("Canary-Steps", "0")), t.get("Canary-Reason", ""))
        except ValueError:
            return None
    number = t.get("Source-Number")
    trigger = Trigger(kind=t.get("Trigger", "cli"), actor=t.get("Requested-By"), repo=t.get("Source-Repo"),
                      number=int(number) if number and number.isascii() and number.isdigit() else None, forge=t.get("Source-Forge"),
                      url=t.get("Source-URL"))
    return Promotion(model=t["Model"], version=t["Model-Version"], environment=t["Environment"], alias=t["Alias"],
                     action=t.get("Action", "promote"), trigger=trigger, gates=t.get("Gates"),
                     run_id=t.get("Source-Run"), model_uri=t.get("Model-URI"),
                     links=tuple(v for k, v in pairs if k == "Evidence"), canary=canary)


def parse_hidden(body: str | None) -> dict[str, Any] | None:
    """The hidden block (:meth:`Promotion.hidden`) of a promotion PR/MR body, or None."""
    m = _HIDDEN.search(body or "")
    if not m:
        return None
    try:
        data = json.loads(m.group(1))
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


# --------------------------------------------------------------------------- values and eligibility


def template_values(model: str, version: str, *, storage_uri: str, run_id: str | None = None) -> dict[str, str]:
    """Placeholders of a target's value template (:func:`mlgate.core.manifests.render_value`).

    ``model_uri`` is the registry URI ``models:/<model>/<version>``; ``storage_uri`` where the
    version's files are (its ``storage_location``, else its ``source``).
    """
    return {"model_uri": f"models:/{model}/{version}", "storage_uri": storage_uri, "version": str(version),
            "model": model, "run_id": run_id or ""}


def gates_fingerprint(cfg: Config) -> str:
    """A short hash (16 hex digits) of ``validate`` (gates and evaluation, not the timeout).

    A version validated under other gates must be validated again before it is promoted; the
    tag :data:`FINGERPRINT_TAG` records it.
    """
    blob = json.dumps(cfg.validate_.model_dump(mode="json", exclude={"registration_timeout"}), sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def gate_summary(tags: Mapping[str, str]) -> str:
    """``passed (3/3)``: the gate result and how many gates passed, from a version's tags."""
    results = [v for k, v in tags.items() if k.startswith("mlgate.gate.")]
    ok = sum(1 for v in results if v.startswith("passed"))
    return f"{tags.get(GATES_TAG, 'unknown')} ({ok}/{len(results)})"


@dataclass(frozen=True)
class Eligibility:
    """One check of :func:`eligibility`: ``name`` (``registration``, ``metric gates``,
    ``requires``), whether it passed, and a ``detail`` that says what to do when it did not."""

    name: str
    ok: bool
    detail: str


def eligibility(model: str, version: str, env: Environment, *, status: str, tags: Mapping[str, str],
                expected_fingerprint: str | None, required_holder: str | None,
                governing: str = "the config's", comment: bool = False) -> list[Eligibility]:
    """Whether ``version`` may be promoted to ``env``, check by check (pure).

    The one place these checks live: ``mlgate promote`` (:func:`mlgate.flows.promote.check_eligible`)
    and the bot's approval policy (:func:`mlgate.core.policy.decide`) both call it.

    Args:
        status: the version's registration status (``READY`` to pass).
        tags: the version's registry tags (:data:`GATES_TAG`, :data:`FINGERPRINT_TAG`, ``mlgate.gate.*``).
        expected_fingerprint: :func:`gates_fingerprint` of the config that governs (the default
            branch's, for the bot); None skips the fingerprint check.
        required_holder: the version holding the ``requires`` environment's alias (ignored when
            ``env.requires`` is unset).
        governing: how messages name the governing config ("the default branch's").
        comment: say what to do as PR-comment commands (the bot) instead of ``mlgate`` commands.

    Returns:
        ``registration`` (only when not READY), ``metric gates`` and, with ``requires``, a
        ``requires`` check; each failed one says what to do.
    """
    out = []
    if status.upper() != "READY":
        out.append(Eligibility("registration", False, f"version {version} is {status}, not READY"))
    out.append(_gates_check(version, tags, expected_fingerprint, governing))
    if env.requires:
        if required_holder == version:
            out.append(Eligibility("requires", True, f"{env.requires} holds version {version}"))
        else:
            held = f"holds version {required_holder}" if required_holder else "holds no version"
            todo = (f"run /promote {model}@{version} to {env.requires} and merge its promotion PR" if comment else
                    f"run 'mlgate promote --to {env.requires} --version {version}' and let it land (merge its "
                    "promotion PR in pull-request mode)")
            out.append(Eligibility("requires", False, f"{env.name} requires {env.requires} first: {env.requires} "
                                   f"{held}, not version {version}; {todo}"))
    return out


def _gates_check(version: str, tags: Mapping[str, str], expected: str | None, governing: str) -> Eligibility:
    gates, recorded = tags.get(GATES_TAG), tags.get(FINGERPRINT_TAG)
    again = f"run `mlgate validate --version {version}`"
    if gates == "passed" and expected is not None and recorded != expected:
        was = (f"{FINGERPRINT_TAG}={recorded}, expected {expected}: validate.gates changed since it was validated"
               if recorded else f"no {FINGERPRINT_TAG} tag: its gate result records no gates fingerprint")
        return Eligibility("metric gates", False, f"version {version} was validated under other gates than "
                           f"{governing} ({was}); {again} again on {governing} config")
    if gates == "passed":
        return Eligibility("metric gates", True, f"version {version}: {GATES_TAG}=passed")
    if gates is None:
        return Eligibility("metric gates", False, f"version {version} has no {GATES_TAG} tag: its gates were not "
                           f"evaluated; {again} first")
    failed = sorted(k[len("mlgate.gate."):] for k, v in tags.items() if k.startswith("mlgate.gate.") and v.startswith("failed"))
    return Eligibility("metric gates", False, f"version {version} has {GATES_TAG}={gates}: its gates failed "
                       f"({', '.join(failed) or 'see its mlgate.gate.* tags'}); {again} and fix failing gates")


# --------------------------------------------------------------------------- what a writer is handed


@dataclass(frozen=True)
class Change:
    """What a GitOps write carries: one file's new content on a branch, with a commit message.

    ``edit`` receives the file's current text and returns the new text (the same text when the
    value is already set); it is re-applied when the branch moved under the writer, so it must
    be a pure function of its input. ``promotion``: the promotion this change carries (a
    pull-request writer takes the branch, title and body from it); ``body``: the PR/MR body
    when the caller renders a richer one (the bot's gates table), else ``promotion.body()``.
    """

    repository: str
    branch: str
    path: str
    message: str
    edit: Any
    promotion: Promotion | None = None
    body: str | None = None


@dataclass(frozen=True)
class WriteResult:
    """Where a change landed. ``commit``: the commit holding the edit (on the branch in push
    mode, on the promotion branch in pull-request mode). ``url``/``number``: the PR/MR, in
    pull-request mode. ``changed``: a new commit was made (False: the file already held the
    value). ``created``: this write opened the PR/MR (False: an open one was reused).
    ``diff``: a short description of the change. ``api_calls``: forge requests made."""

    commit: str | None
    url: str | None
    changed: bool
    diff: str = ""
    created: bool = False
    number: int | None = None
    api_calls: int = 0

    @property
    def landed(self) -> bool:
        """Whether the change is on the branch the deployment tool watches (no PR to merge)."""
        return self.url is None
