"""Publishing a gate report from CI: the pure decisions.

Pure core: environment mappings, event payloads, report dicts and comment lists in; targets,
comment bodies, dotenv text and verdict lines out. No network, no files. The edge
(:mod:`mlgate.cli.reportcmd`) reads the files, calls the forges and prints.

Sources of external behaviour:

- GitHub Actions "Variables" reference (``GITHUB_ACTIONS``, ``GITHUB_EVENT_NAME``,
  ``GITHUB_EVENT_PATH``, ``GITHUB_REPOSITORY``, ``GITHUB_API_URL``) and the ``pull_request``
  webhook payload (``pull_request.number``). A pull request's conversation comments are issue
  comments: REST "Issue comments" (list, create, update).
- GitLab "Predefined CI/CD variables" (``GITLAB_CI``, ``CI_MERGE_REQUEST_IID``,
  ``CI_PROJECT_ID``, ``CI_SERVER_URL``, ``CI_API_V4_URL``) and REST "Notes" on merge requests.
  ``CI_JOB_TOKEN`` cannot write notes, so a token with the ``api`` scope is needed.
- GitLab "dotenv report" format: one ``KEY=VALUE`` per line, single-line values.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from mlgate.core.gates import GateReport, GateResult
from mlgate.core.report import COMMENT_MARKER

#: Environment variables read for the GitHub token, in order.
GITHUB_TOKEN_VARS = ("MLGATE_GITHUB_TOKEN", "GITHUB_TOKEN")
#: Environment variables read for the GitLab token, in order (CI_JOB_TOKEN cannot write notes).
GITLAB_TOKEN_VARS = ("MLGATE_GITLAB_TOKEN", "GITLAB_TOKEN")

_KEY_SAFE = re.compile(r"[^A-Za-z0-9_./-]")


@dataclass(frozen=True)
class GitHubTarget:
    """A GitHub pull request to comment on: ``api_url`` (no trailing slash), ``owner/name``, number."""

    api_url: str
    repository: str
    number: int
    token: str

    def __str__(self) -> str:
        return f"GitHub pull request {self.repository}#{self.number}"


@dataclass(frozen=True)
class GitLabTarget:
    """A GitLab merge request to add a note to: server URL (no ``/api/v4``), project id, MR iid."""

    server_url: str
    project: str
    iid: int
    token: str
    project_url: str | None = None

    def __str__(self) -> str:
        return f"GitLab merge request {self.project}!{self.iid}"

    def note_url(self, note_id: Any) -> str:
        """Web address of a note of this merge request (or a plain reference without the project URL)."""
        if self.project_url:
            return f"{self.project_url.rstrip('/')}/-/merge_requests/{self.iid}#note_{note_id}"
        return f"note {note_id} of !{self.iid}"


@dataclass(frozen=True)
class NoTarget:
    """Nothing to publish to, and why (one line for the log)."""

    reason: str


Target = GitHubTarget | GitLabTarget | NoTarget


def _first(environ: Mapping[str, str], names: Sequence[str]) -> str | None:
    for n in names:
        v = environ.get(n)
        if v:
            return v
    return None


def detect_target(
    environ: Mapping[str, str], github_event: Mapping[str, Any] | None = None, forge: str = "auto"
) -> Target:
    """Where to publish the report, from the CI environment.

    Args:
        environ: the process environment.
        github_event: the parsed ``$GITHUB_EVENT_PATH`` payload (GitHub only), if any.
        forge: ``"auto"``, ``"github"`` or ``"gitlab"``.

    Returns:
        A :class:`GitHubTarget` / :class:`GitLabTarget`, or :class:`NoTarget` with the reason
        when not on a pull/merge request, or when no token is available.
    """
    on_github = environ.get("GITHUB_ACTIONS") == "true"
    on_gitlab = environ.get("GITLAB_CI") == "true"
    if forge == "github" or (forge == "auto" and on_github):
        number = _github_pr_number(github_event)
        if number is None:
            event = environ.get("GITHUB_EVENT_NAME") or "unknown"
            return NoTarget(f"not a pull request (GitHub event {event!r}): nothing to publish")
        repository = environ.get("GITHUB_REPOSITORY")
        if not repository or "/" not in repository:
            return NoTarget("GITHUB_REPOSITORY is not set: cannot tell which repository to comment on")
        token = _first(environ, GITHUB_TOKEN_VARS)
        if not token:
            return NoTarget(
                f"no token (set GITHUB_TOKEN with pull-requests: write): the report was not published on "
                f"{repository}#{number}"
            )
        api = (environ.get("GITHUB_API_URL") or "https://api.github.com").rstrip("/")
        return GitHubTarget(api, repository, number, token)
    if forge == "gitlab" or (forge == "auto" and on_gitlab):
        iid = environ.get("CI_MERGE_REQUEST_IID")
        if not iid or not (iid.isascii() and iid.isdigit()):
            source = environ.get("CI_PIPELINE_SOURCE") or "unknown"
            return NoTarget(f"not a merge request pipeline (source {source!r}): nothing to publish")
        project = environ.get("CI_PROJECT_ID") or environ.get("CI_PROJECT_PATH")
        if not project:
            return NoTarget("CI_PROJECT_ID is not set: cannot tell which project to add the note to")
        token = _first(environ, GITLAB_TOKEN_VARS)
        if not token:
            return NoTarget(
                f"no token (set MLGATE_GITLAB_TOKEN, a token with the api scope): the report was not published on "
                f"!{iid}"
            )
        server = environ.get("CI_SERVER_URL")
        if not server:
            api = environ.get("CI_API_V4_URL") or ""
            server = api[: -len("/api/v4")] if api.endswith("/api/v4") else "https://gitlab.com"
        project_url = environ.get("CI_MERGE_REQUEST_PROJECT_URL") or environ.get("CI_PROJECT_URL") or None
        return GitLabTarget(server.rstrip("/"), project, int(iid), token, project_url)
    return NoTarget("not running in GitHub Actions or GitLab CI: nothing to publish")


def _github_pr_number(event: Mapping[str, Any] | None) -> int | None:
    """The pull request number of a ``pull_request``/``pull_request_target`` (or PR ``issue_comment``) event."""
    if not event:
        return None
    pr = event.get("pull_request")
    if isinstance(pr, Mapping) and isinstance(pr.get("number"), int):
        return int(pr["number"])
    issue = event.get("issue")
    if isinstance(issue, Mapping) and issue.get("pull_request") and isinstance(issue.get("number"), int):
        return int(issue["number"])
    return None


def key_marker(key: str | None) -> str:
    """The hidden second marker that tells apart reports of different configs in one PR ("" without a key)."""
    if not key:
        return ""
    return f"<!-- mlgate:key={_KEY_SAFE.sub('_', key)} -->"


def comment_body(markdown: str, key: str | None = None) -> str:
    """The comment text: the hidden markers, then the report Markdown."""
    head = COMMENT_MARKER + ("\n" + key_marker(key) if key else "")
    return f"{head}\n{markdown.rstrip()}\n"


def find_comment(comments: Sequence[tuple[Any, str]], key: str | None = None) -> Any | None:
    """The id of mlgate's comment among ``(id, body)`` pairs (oldest first), or None.

    A comment counts when it holds :data:`~mlgate.core.report.COMMENT_MARKER` and, with a ``key``,
    that key's marker; without a key, only a comment with no key marker counts.
    """
    km = key_marker(key)
    for cid, body in comments:
        if COMMENT_MARKER not in (body or ""):
            continue
        has_key = "<!-- mlgate:key=" in body
        if (km and km in body) or (not km and not has_key):
            return cid
    return None


def report_from_dict(data: Mapping[str, Any]) -> GateReport:
    """Rebuild a :class:`~mlgate.core.gates.GateReport` from ``mlgate validate --output json``.

    Raises:
        ValueError: when ``data`` is not such a document (names the missing key).
    """
    try:
        results = tuple(
            GateResult(
                metric=str(g["metric"]),
                direction=g.get("direction", "higher"),
                candidate=g.get("candidate"),
                champion=g.get("champion"),
                delta=g.get("delta"),
                threshold=str(g.get("threshold", "")),
                passed=bool(g["passed"]),
                message=str(g.get("message", "")),
            )
            for g in data["gates"]
        )
        return GateReport(
            model=str(data["model"]),
            candidate_version=str(data["candidate_version"]),
            candidate_run=data.get("candidate_run"),
            champion_version=None if data.get("champion_version") is None else str(data["champion_version"]),
            source=data.get("source", "logged"),
            results=results,
            notes=tuple(data.get("notes") or ()),
            evaluation_data=data.get("evaluation_data"),
        )
    except (KeyError, TypeError) as e:
        raise ValueError(f"not an 'mlgate validate --output json' document: missing {e}") from None


def outputs(data: Mapping[str, Any]) -> dict[str, str]:
    """CI outputs of a JSON result of ``mlgate validate``, ``mlgate train`` or ``mlgate promote``.

    Validate: ``gates_passed`` ("true"/"false"), ``model_version``, ``model``, ``champion_version``.
    Train: ``run_id``, ``model_version``, ``model``.
    Promote: ``model_version``, ``model``, ``environment``, ``promotion_commit``, ``promotion_url``.
    """
    out: dict[str, str] = {}
    if "gates" in data and "passed" in data:
        out["gates_passed"] = "true" if data["passed"] else "false"
        out["model_version"] = str(data.get("candidate_version") or "")
        out["model"] = str(data.get("model") or "")
        out["champion_version"] = str(data.get("champion_version") or "")
    elif "environment" in data and "version" in data:
        out["model_version"] = str(data["version"])
        out["model"] = str(data.get("model") or "")
        out["environment"] = str(data["environment"])
        out["promotion_commit"] = str(data.get("commit") or "")
        out["promotion_url"] = str(data.get("url") or "")
    else:
        for k in ("run_id", "model_version", "model"):
            if data.get(k) is not None:
                out[k] = str(data[k])
    return out


def dotenv_text(values: Mapping[str, str]) -> str:
    """A GitLab dotenv report: ``KEY=VALUE`` lines; line breaks in values become spaces."""
    return "".join(f"{k}={str(v).replace(chr(13), ' ').replace(chr(10), ' ')}\n" for k, v in values.items())


def verdict_lines(report: GateReport) -> list[str]:
    """What a CI log says about a report: one line per failed gate (which, and by how much), or a pass line."""
    if report.passed:
        return [f"mlgate: every gate passed for {report.model} v{report.candidate_version}"]
    return [f"mlgate: gate failed: {r.metric}: {r.message}" for r in report.failed] + [
        f"mlgate: {len(report.failed)} of {len(report.results)} gates failed for {report.model} v{report.candidate_version}"
    ]


def retry_after(status: int, headers: Mapping[str, str]) -> float | None:
    """Seconds to wait before retrying a forge answer, or None when it must not be retried.

    5xx and 429 are retried; GitHub's secondary rate limit answers 403 with ``Retry-After`` or
    ``x-ratelimit-remaining: 0`` (REST "Rate limits": wait ``Retry-After`` seconds, else until
    ``x-ratelimit-reset``, at least a minute). Returns 0.0 for "retry with the default backoff".
    """
    lower = {k.lower(): v for k, v in headers.items()}
    ra = lower.get("retry-after")
    wait = float(ra) if ra and ra.strip().isascii() and ra.strip().isdigit() else None
    if status == 429 or status >= 500:
        return wait if wait is not None else 0.0
    if status == 403 and (wait is not None or lower.get("x-ratelimit-remaining") == "0"):
        return wait if wait is not None else 60.0
    return None
