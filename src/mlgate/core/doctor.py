"""``mlgate doctor``: the check model, the overall verdict and its renderings (pure core).

A doctor run is a list of :class:`Check` results read top to bottom: the config, the tracking
server, the registered model, then per environment its GitOps repository, branch, file, target
and (mode ``pull-request``) the forge token's right to open a promotion PR/MR, then Prometheus and
the Argo Server when the config uses them. The use case that makes the calls is
:mod:`mlgate.flows.doctor`; this module only decides and renders.

Statuses and the exit code (:func:`exit_code`, documented in README.md "mlgate doctor"):

* ``ok`` (✓): the check passed.
* ``fail`` (✗): the answer proves the wiring is wrong from here: the config is invalid; a
  repository, branch, file or key does not exist; a server refuses the connection or its name
  does not resolve; credentials are refused or lack write access. Exit 1.
* ``unknown`` (?): no answer that proves anything: a timeout, a 5xx, a rate limit, a check
  skipped because the one it depends on failed, or a forge that does not say. Exit 3 when no
  check failed.

No secret may reach a :class:`Check`: callers pass messages through
:class:`mlgate.core.redact.Redactor` / :func:`mlgate.core.gitmsg.git_said` first.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Mapping, Sequence

OK = "ok"
FAIL = "fail"
UNKNOWN = "unknown"
STATUSES = (OK, FAIL, UNKNOWN)
SYMBOLS = {OK: "✓", FAIL: "✗", UNKNOWN: "?"}

#: Version of the ``--output json`` document; bumped only when a field changes meaning.
SCHEMA_VERSION = 1

#: GitLab access levels (docs "Roles and permissions", ``Gitlab::Access``): Developer may push a
#: new branch and open a merge request.
GITLAB_DEVELOPER = 30
GITLAB_LEVELS = {0: "No access", 5: "Minimal access", 10: "Guest", 20: "Reporter", 30: "Developer",
                 40: "Maintainer", 50: "Owner"}
#: GitHub App installation permissions a promotion PR needs (REST "Create a pull request":
#: ``pull_requests: write``; the promotion branch and commit: ``contents: write``).
GITHUB_APP_NEEDS = {"contents": "write", "pull_requests": "write"}


@dataclass(frozen=True)
class Check:
    """One line of the doctor's list.

    Attributes:
        id: stable machine name (``config``, ``tracking``, ``model``, ``env.<name>.repository``,
            ``env.<name>.branch``, ``env.<name>.file``, ``env.<name>.target``, ``env.<name>.access``,
            ``prometheus.<name>``, ``argo``; the bot's own: ``bot.database``, ``bot.github``...).
        title: what was checked, for a person ("staging: GitOps repository reachable").
        status: :data:`OK`, :data:`FAIL` or :data:`UNKNOWN`.
        detail: what was found (a version, the git or server answer).
        fix: what to do, for a failed or unknown check ("" when ok).
    """

    id: str
    title: str
    status: str
    detail: str = ""
    fix: str = ""

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status {self.status!r} is not one of {STATUSES}")


def ok(id: str, title: str, detail: str = "") -> Check:
    return Check(id, title, OK, detail)


def fail(id: str, title: str, detail: str, fix: str) -> Check:
    return Check(id, title, FAIL, detail, fix)


def unknown(id: str, title: str, detail: str, fix: str = "") -> Check:
    return Check(id, title, UNKNOWN, detail, fix)


def skipped(id: str, title: str, because: str) -> Check:
    """A check that was not run because ``because`` (a check it depends on) did not pass."""
    return Check(id, title, UNKNOWN, f"not checked: {because}")


def overall(checks: Iterable[Check]) -> str:
    """``fail`` when any check failed, else ``unknown`` when any could not tell, else ``ok``."""
    statuses = {c.status for c in checks}
    return FAIL if FAIL in statuses else UNKNOWN if UNKNOWN in statuses else OK


def exit_code(checks: Iterable[Check]) -> int:
    """0 all passed; 1 any failed; 3 none failed but some could not tell."""
    return {OK: 0, FAIL: 1, UNKNOWN: 3}[overall(checks)]


def render_text(checks: Sequence[Check], *, heading: str = "") -> str:
    """The list a person reads: ``✓ title: detail``, and ``  fix: ...`` under a ✗ or ?; a last
    line with the counts and the verdict."""
    lines = [heading] if heading else []
    for c in checks:
        first, *more = c.detail.splitlines() or [""]
        lines.append(f"{SYMBOLS[c.status]} {c.title}" + (f": {first}" if first else ""))
        lines += [f"    {m}" for m in more]
        if c.status != OK and c.fix:
            lines.append(f"    fix: {c.fix}")
    lines.append(summary(checks))
    return "\n".join(lines) + "\n"


def summary(checks: Sequence[Check]) -> str:
    """``3 ok, 1 failed, 0 unknown: not ready`` (or ``ready``, or ``cannot tell``)."""
    n = {s: sum(1 for c in checks if c.status == s) for s in STATUSES}
    verdict = {OK: "ready to promote", FAIL: "not ready: fix the ✗ items",
               UNKNOWN: "cannot tell: see the ? items"}[overall(checks)]
    return f"{n[OK]} ok, {n[FAIL]} failed, {n[UNKNOWN]} unknown: {verdict}"


def render_markdown(checks: Sequence[Check], *, heading: str = "mlgate doctor") -> str:
    """The same list for a PR/MR comment (the bot's ``/doctor``): one bullet per check."""
    out = [f"**{heading}**", ""]
    for c in checks:
        line = f"- {SYMBOLS[c.status]} {_md(c.title)}"
        if c.detail:
            line += f": {_md(c.detail)}"
        if c.status != OK and c.fix:
            line += f"<br>fix: {_md(c.fix)}"
        out.append(line)
    out += ["", summary(checks)]
    return "\n".join(out)


def _md(text: str) -> str:
    return text.replace("\n", " ").replace("|", "\\|").replace("<", "&lt;")


def to_json(checks: Sequence[Check]) -> dict[str, Any]:
    """The ``--output json`` document: ``{"schema_version", "status", "exit_code", "checks": [{id,
    title, status, detail, fix}]}`` in the order of the text list."""
    return {"schema_version": SCHEMA_VERSION, "status": overall(checks), "exit_code": exit_code(checks),
            "checks": [asdict(c) for c in checks]}


# --------------------------------------------------------------------------- decisions on plain answers


def github_can_open_pr(permissions: Mapping[str, Any] | None) -> bool | None:
    """From REST "Get a repository" ``permissions`` (``{admin, maintain, push, triage, pull}``, present
    for an authenticated caller): True when ``push`` (write) or higher; None when absent."""
    if not permissions:
        return None
    return bool(permissions.get("push") or permissions.get("maintain") or permissions.get("admin"))


def github_app_missing(permissions: Mapping[str, str] | None) -> list[str]:
    """The permissions of :data:`GITHUB_APP_NEEDS` an App installation lacks (REST "Get a repository
    installation for the authenticated app", ``permissions``: ``{"contents": "write", ...}``)."""
    have = permissions or {}
    return [f"{k}: {v}" for k, v in GITHUB_APP_NEEDS.items() if have.get(k) not in ("write", "admin")]


def gitlab_level(permissions: Mapping[str, Any] | None) -> int | None:
    """The higher of ``project_access.access_level`` and ``group_access.access_level`` from
    GitLab "Get a single project" ``permissions``; None when neither is given (GitLab leaves both
    null for access inherited through a parent group or a shared group: ask the members API)."""
    levels = []
    for key in ("project_access", "group_access"):
        level = ((permissions or {}).get(key) or {}).get("access_level")
        if isinstance(level, int):
            levels.append(level)
    return max(levels) if levels else None


def gitlab_level_name(level: int | None) -> str:
    return f"{GITLAB_LEVELS.get(level or 0, str(level))} ({level or 0})"


_UNSURE = re.compile(r"timed out|timeout|\b5\d\d\b|temporarily|try again|rate limit|too many requests",
                     re.IGNORECASE)


def git_failure_status(stderr: str) -> str:
    """Whether a failed ``git ls-remote``/``clone`` proves a wrong wiring (:data:`FAIL`: no such
    repository, host name not resolved, connection refused, credentials refused) or proves nothing
    (:data:`UNKNOWN`: a timeout, a 5xx from the server, "try again")."""
    return UNKNOWN if _UNSURE.search(stderr or "") else FAIL


def git_failure_fix(stderr: str, repository: str, config_file: str) -> str:
    """What to do about a failed remote git call, from git's own words."""
    text = (stderr or "").lower()
    if "could not resolve" in text or "name or service not known" in text:
        return f"check the host name in gitops.repository ({config_file}) and this machine's DNS or proxy"
    if "permission denied" in text or "authentication failed" in text or "could not read username" in text \
            or "403" in text or "401" in text:
        return ("give the credentials the promotion uses (an ssh key loaded for this user, or a token in the "
                f"URL or git's credential helper) read and push access to {repository}")
    if "not found" in text or "does not appear to be a git repository" in text or "does not exist" in text:
        return f"create the repository, or fix gitops.repository in {config_file}"
    if "connection refused" in text or "could not connect" in text or "network is unreachable" in text:
        return "start the git server or open the route to it (firewall, VPN, proxy)"
    if git_failure_status(stderr) == UNKNOWN:
        return "run mlgate doctor again; if it persists, check the git server's health"
    return f"run 'git ls-remote {repository}' as this user to see why"
