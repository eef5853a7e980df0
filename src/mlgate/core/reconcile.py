"""What git deploys, read from the promotion trailers of a GitOps repository's history (pure).

``mlgate reconcile`` (and the bot's merge handler, through :func:`mlgate.flows.promote.land`)
keeps the MLflow Model Registry in step with git: for every (model, environment) that a
promotion commit names, the environment's alias must hold the version that git deploys now.

What git deploys is decided here, from plain data the flow gathers
(:mod:`mlgate.flows.reconcile`): the history of the watched branch, newest first, and for each
file which commits wrote its lines as it is now (``git blame``). The newest promotion commit of
a (model, environment) whose change is still in the files is what that environment runs. A
later hand edit or ``git revert`` that replaced every line a promotion wrote leaves no promotion
commit standing: that is reported, never guessed. Commits without trailers are skipped; canary
steps (trailer ``Canary-Step``) are driven by the canary, which moves its own alias.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

from mlgate.core.promotion import Promotion, parse_message, trailers


@dataclass(frozen=True)
class Deployed:
    """``promotion`` (from commit ``commit``, committed at ``at``) is what the environment runs."""

    promotion: Promotion
    commit: str
    at: str


@dataclass(frozen=True)
class Undecided:
    """Git does not say which version runs: ``reason`` says why and what to do."""

    model: str
    environment: str
    reason: str


def deployed(history: Sequence[tuple[str, str, str]], paths: Mapping[str, Sequence[str]],
             owners: Mapping[str, frozenset[str] | set[str]], *, shallow: bool = False) -> list[Deployed | Undecided]:
    """For each (model, environment) named by a promotion commit: what git deploys.

    Args:
        history: (sha, committed at, message) of the watched branch, newest first.
        paths: sha → the files that commit changed (needed for promotion commits only).
        owners: file → the commits that wrote its lines as the branch holds it now.
        shallow: the history is cut (a shallow clone); said in the reasons.

    Returns:
        One entry per (model, environment), in the order their newest promotion appears.
    """
    found: dict[tuple[str, str], Deployed | Undecided] = {}
    canary: set[tuple[str, str]] = set()
    for sha, at, message in history:
        p = parse_message(message)
        if p is None or p.canary is not None:
            t = dict(trailers(message))
            if "Canary-Step" in t and t.get("Model") and t.get("Environment"):
                canary.add((t["Model"], t["Environment"]))
            continue
        key = (p.model, p.environment)
        if isinstance(found.get(key), Deployed) or key in canary and key not in found:
            continue
        if any(sha in owners.get(path, ()) for path in paths.get(sha, ())):
            found[key] = Deployed(p, sha, at)
        elif key not in found:
            found[key] = Undecided(p.model, p.environment, (
                f"the change of promotion commit {sha[:12]} ({p.model} version {p.version}) is no longer in "
                f"{', '.join(paths.get(sha, ())) or 'its files'}: a later commit without mlgate trailers (a hand "
                "edit or a revert) replaced it, and no older promotion commit is still in place; promote the "
                "version that should run with mlgate promote"))
    out: list[Deployed | Undecided] = []
    for key, entry in found.items():
        if isinstance(entry, Undecided) and shallow:
            entry = Undecided(entry.model, entry.environment,
                              entry.reason + " (this clone is shallow: fetch the whole history, e.g. fetch-depth: 0)")
        out.append(entry)
    return out
