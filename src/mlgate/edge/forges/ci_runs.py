"""Retrain runs on CI and the branch head a retrain trains (edge: forge REST calls).

Through the forge clients' one-request-with-retries helpers (``_api`` of
:class:`~mlgate.edge.forges.github.GitHubForge` and :class:`~mlgate.edge.forges.gitlab.GitLabForge`),
so authentication, retries and error mapping are theirs.

GitHub REST (``@octokit/openapi`` api.github.com description):

- ``POST /repos/{owner}/{repo}/actions/workflows/{workflow_id}/dispatches`` ("Create a workflow
  dispatch event"): body ``ref`` (required), ``inputs`` (at most 25, the workflow must declare
  them) and ``return_run_details: true``, answered 200 ``{workflow_run_id, run_url, html_url}``
  (a server without that parameter answers 204: the run id is then unknown, and the retrain is
  followed by its registered version alone).
- ``GET /repos/{owner}/{repo}/actions/runs/{run_id}``: ``status`` (``queued``, ``in_progress``,
  ``completed``...) and ``conclusion`` (``success``, ``failure``, ``cancelled``, ``timed_out``...).
- ``GET /repos/{owner}/{repo}/branches/{branch}``: the branch head (``commit.sha``).

GitLab REST (docs.gitlab.com/api: pipelines, branches, merge_requests):

- ``POST /projects/:id/pipeline`` ("Create a new pipeline"): ``ref`` (required) and ``variables``
  (``[{key, value}]``), with the bot's token (Developer role); answered 201 with the pipeline
  (``id``, ``status``, ``web_url``). It runs the project's ``.gitlab-ci.yml`` at ``ref``.
- ``GET /projects/:id/pipelines/:pipeline_id``: ``status`` (``created``, ``pending``, ``running``,
  ``success``, ``failed``, ``canceled``, ``skipped``, ``manual``...).
- ``GET /projects/:id/repository/branches/:branch`` (``commit.id``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from mlgate.core.errors import UsageError
from mlgate.edge.db import fencing
from mlgate.edge.forges.base import ForgeError
from mlgate.edge.forges.gitlab_promotion import enc_project


@dataclass(frozen=True)
class CIRun:
    """A dispatched CI run: its id (None when the server did not say) and web link."""

    run_id: int | None
    url: str | None


@dataclass(frozen=True)
class CIRunState:
    """Where a CI run stands: ``finished`` and, once finished, ``succeeded``; ``detail`` for people."""

    finished: bool
    succeeded: bool
    detail: str
    url: str | None


def _inner(forge: Any) -> Any:
    return getattr(forge, "_inner", forge)  # a Fenced client: its wrapped forge


def branch_head(forge: Any, forge_name: str, repo: str, branch: str) -> str:
    """The commit SHA at the head of ``branch`` of ``repo``.

    Raises:
        ForgeError: no such branch, or the forge refused. ForgeBusy: rate limits, outages.
    """
    fencing.check()
    f = _inner(forge)
    if forge_name == "gitlab":
        data = f._api("get", f"/projects/{enc_project(repo)}/repository/branches/{quote(branch, safe='')}")
        return str(data["commit"]["id"])
    _, data = f._api("GET", f"/repos/{repo}/branches/{quote(branch, safe='')}")
    return str(data["commit"]["sha"])


def dispatch_github_workflow(forge: Any, repo: str, workflow: str, ref: str, inputs: dict[str, str]) -> CIRun:
    """Start ``workflow`` (file name or id) of ``repo`` on ``ref`` with ``inputs`` (workflow_dispatch).

    Raises:
        UsageError: GitHub refused the dispatch (no such workflow, no ``workflow_dispatch`` trigger,
            an input the workflow does not declare): retrying cannot help.
        ForgeBusy: rate limits, outages (the caller retries).
    """
    from github import GithubException

    if len(inputs) > 25:
        raise UsageError(f"workflow_dispatch takes at most 25 inputs ({len(inputs)} given)")
    fencing.check()
    f = _inner(forge)
    path = f"/repos/{repo}/actions/workflows/{quote(workflow, safe='')}/dispatches"
    try:
        _, data = f._api("POST", path, body={"ref": ref, "inputs": inputs, "return_run_details": True})
    except GithubException as e:
        msg = (e.data or {}).get("message") if isinstance(e.data, dict) else None
        raise UsageError(f"GitHub refused to dispatch workflow {workflow!r} of {repo} on {ref!r}: "
                         f"{e.status} {msg or ''}".strip()) from None
    if isinstance(data, dict) and data.get("workflow_run_id"):
        return CIRun(int(data["workflow_run_id"]), data.get("html_url"))
    return CIRun(None, f"{f.web_url(repo)}/actions/workflows/{quote(workflow, safe='')}")


def start_gitlab_pipeline(forge: Any, repo: str, ref: str, variables: dict[str, str]) -> CIRun:
    """Start a pipeline of project ``repo`` on ``ref`` with ``variables``.

    Raises:
        UsageError: GitLab refused it (no ``.gitlab-ci.yml``, an unknown ref, no permission).
        ForgeBusy: rate limits, outages (the caller retries).
    """
    from gitlab.exceptions import GitlabError

    fencing.check()
    f = _inner(forge)
    body = {"ref": ref, "variables": [{"key": k, "value": v} for k, v in variables.items()]}
    try:
        data = f._api("post", f"/projects/{enc_project(repo)}/pipeline", body=body)
    except GitlabError as e:
        raise UsageError(f"GitLab refused to start a pipeline of {repo} on {ref!r}: "
                         f"{getattr(e, 'response_code', '')} {getattr(e, 'error_message', e)}".strip()) from None
    return CIRun(int(data["id"]), data.get("web_url"))


def gitlab_pipeline_state(forge: Any, repo: str, pipeline_id: int) -> CIRunState:
    """Where pipeline ``pipeline_id`` of ``repo`` stands (``success`` succeeded; ``failed``,
    ``canceled``, ``skipped`` ended otherwise).

    Raises:
        ForgeError: the pipeline does not exist or GitLab refused. ForgeBusy: see above.
    """
    from gitlab.exceptions import GitlabError

    fencing.check()
    f = _inner(forge)
    try:
        data = f._api("get", f"/projects/{enc_project(repo)}/pipelines/{int(pipeline_id)}")
    except GitlabError as e:
        raise ForgeError(f"GitLab could not read pipeline {pipeline_id} of {repo}: {e}",
                         getattr(e, "response_code", None)) from None
    status = data.get("status")
    finished = status in ("success", "failed", "canceled", "skipped")
    return CIRunState(finished, status == "success", f"GitLab pipeline {pipeline_id}: {status}", data.get("web_url"))


def github_run_state(forge: Any, repo: str, run_id: int) -> CIRunState:
    """Where GitHub Actions run ``run_id`` of ``repo`` stands.

    Raises:
        ForgeError: the run does not exist (deleted) or the forge refused. ForgeBusy: see above.
    """
    from github import GithubException

    fencing.check()
    f = _inner(forge)
    try:
        _, data = f._api("GET", f"/repos/{repo}/actions/runs/{int(run_id)}")
    except GithubException as e:
        raise ForgeError(f"GitHub could not read Actions run {run_id} of {repo}: {e.status}", e.status) from None
    status, conclusion = data.get("status"), data.get("conclusion")
    finished = status == "completed"
    return CIRunState(finished, finished and conclusion == "success",
                      f"GitHub Actions run {run_id}: {status}" + (f" ({conclusion})" if conclusion else ""),
                      data.get("html_url"))


def merge_pull_request(forge: Any, forge_name: str, repo: str, number: int) -> None:
    """Merge a promotion PR (``retrain.auto_merge``): GitHub ``PUT /repos/{owner}/{repo}/pulls/{n}/merge``,
    GitLab ``PUT /projects/:id/merge_requests/:iid/merge``.

    Raises:
        ForgeError: the forge refused (branch protection, a check pending, a conflict).
    """
    fencing.check()
    f = _inner(forge)
    if forge_name == "gitlab":
        from gitlab.exceptions import GitlabError

        try:
            f._api("put", f"/projects/{enc_project(repo)}/merge_requests/{int(number)}/merge")
        except GitlabError as e:
            raise ForgeError(f"GitLab refused to merge !{number} of {repo}: {e}", getattr(e, "response_code", None)) from None
        return
    from github import GithubException

    try:
        f._api("PUT", f"/repos/{repo}/pulls/{int(number)}/merge", body={"merge_method": "merge"})
    except GithubException as e:
        raise ForgeError(f"GitHub refused to merge #{number} of {repo}: {e.status}", e.status) from None
