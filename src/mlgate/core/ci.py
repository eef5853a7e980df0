"""What CI tells us about the code being built: commit, branch, job URL.

Pure core over an environment mapping (and the GitHub event payload, when given), using
the runners' documented variables:

- GitHub Actions "Variables" reference: ``GITHUB_ACTIONS``, ``GITHUB_SHA``, ``GITHUB_REF_NAME``,
  ``GITHUB_HEAD_REF``, ``GITHUB_SERVER_URL``, ``GITHUB_REPOSITORY``, ``GITHUB_RUN_ID``,
  ``GITHUB_RUN_ATTEMPT``; on ``pull_request`` events ``GITHUB_SHA`` is the merge commit, so the
  PR head commit is read from the event payload (``pull_request.head.sha``).
- GitLab "Predefined CI/CD variables": ``GITLAB_CI``, ``CI_COMMIT_SHA``, ``CI_COMMIT_REF_NAME``,
  ``CI_MERGE_REQUEST_SOURCE_BRANCH_NAME``, ``CI_MERGE_REQUEST_SOURCE_BRANCH_SHA`` (set in merged
  results pipelines), ``CI_JOB_URL``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping


@dataclass(frozen=True)
class CIContext:
    """``system`` is "github", "gitlab" or None (not in CI); other fields may be None."""

    system: str | None
    commit: str | None
    branch: str | None
    job_url: str | None


def ci_context(environ: Mapping[str, str], github_event: Mapping[str, Any] | None = None) -> CIContext:
    """Read the CI system, head commit, branch and job URL from environment variables.

    Args:
        environ: the process environment.
        github_event: the parsed ``$GITHUB_EVENT_PATH`` payload, if any.
    """
    if environ.get("GITHUB_ACTIONS") == "true":
        commit = environ.get("GITHUB_SHA") or None
        pr = (github_event or {}).get("pull_request") if github_event else None
        if isinstance(pr, Mapping):
            head = pr.get("head") or {}
            commit = head.get("sha") or commit
        branch = environ.get("GITHUB_HEAD_REF") or environ.get("GITHUB_REF_NAME") or None
        job_url = None
        server, repo, run = environ.get("GITHUB_SERVER_URL"), environ.get("GITHUB_REPOSITORY"), environ.get("GITHUB_RUN_ID")
        if server and repo and run:
            job_url = f"{server}/{repo}/actions/runs/{run}"
            attempt = environ.get("GITHUB_RUN_ATTEMPT")
            if attempt and attempt != "1":
                job_url += f"/attempts/{attempt}"
        return CIContext("github", commit, branch, job_url)
    if environ.get("GITLAB_CI") == "true":
        commit = environ.get("CI_MERGE_REQUEST_SOURCE_BRANCH_SHA") or environ.get("CI_COMMIT_SHA") or None
        branch = environ.get("CI_MERGE_REQUEST_SOURCE_BRANCH_NAME") or environ.get("CI_COMMIT_REF_NAME") or None
        return CIContext("gitlab", commit, branch, environ.get("CI_JOB_URL") or None)
    return CIContext(None, None, None, None)


def source_repository(ci: CIContext) -> tuple[str, str] | None:
    """(forge, repository) the CI job built, read back from its job URL: GitHub Actions'
    ``{GITHUB_SERVER_URL}/{GITHUB_REPOSITORY}/actions/runs/{id}``, GitLab's ``CI_JOB_URL``
    ``https://host/{CI_PROJECT_PATH}/-/jobs/{id}``; None outside CI or for another shape.

    ``mlgate train`` tags model versions with it (``mlgate.source_forge``, ``mlgate.source_repo``)
    so that the bot finds the ``.mlgate.yml`` governing a registered model from a registry event.
    """
    import re

    url = ci.job_url or ""
    if ci.system == "github":
        m = re.match(r"^https?://[^/]+/([A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+)/actions/runs/", url)
    elif ci.system == "gitlab":
        m = re.match(r"^https?://[^/]+/([A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.-]+)+?)/-/jobs/", url)
    else:
        return None
    return (ci.system, m.group(1)) if m else None


def github_output_lines(outputs: Mapping[str, str]) -> str:
    """``$GITHUB_OUTPUT`` text for ``outputs``; multi-line values use the heredoc form.

    Source: GitHub Actions "Workflow commands", section "Setting an output parameter" and
    "Multiline strings".
    """
    lines = []
    for key, value in outputs.items():
        value = str(value)
        if "\n" in value:
            delim = "MLGATE_EOF"
            while delim in value:
                delim += "_"
            lines.append(f"{key}<<{delim}\n{value}\n{delim}")
        else:
            lines.append(f"{key}={value}")
    return "\n".join(lines) + "\n" if lines else ""
