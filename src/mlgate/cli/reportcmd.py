"""``mlgate report``: publish a gate report where reviewers look, and turn it into CI outputs.

Imperative shell around :mod:`mlgate.core.ci_report`:

- ``mlgate report publish``: create, or update in place, ONE comment on the GitHub pull request
  (REST "Issue comments", through httpx, retried with stamina on 5xx/429/secondary rate limit)
  or ONE note on the GitLab merge request (REST "Notes", through python-gitlab with
  ``retry_transient_errors``). The comment is found by a hidden marker. Outside a pull/merge
  request, or without a token, it does nothing and says why in one line (exit 0).
- ``mlgate report dotenv``: the outputs of ``mlgate validate|train --output json`` as a GitLab
  dotenv report (``gates_passed``, ``model_version``, ...).
- ``mlgate report check``: one line per failed gate (which, and by how much); exit 1 when one failed.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from mlgate.core.errors import InfraError, UsageError

USER_AGENT = "mlgate-report"
#: Retry budget for forge calls: attempts and total seconds (stamina).
ATTEMPTS = 5
TIMEOUT = 120.0


def _read_json(path: str) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{path}: file not found") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UsageError(f"{path}: not a JSON document ({e})") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: expected a JSON object from 'mlgate validate --output json'")
    return data


def _report(path: str):
    from mlgate.core.ci_report import report_from_dict

    try:
        return report_from_dict(_read_json(path))
    except ValueError as e:
        raise UsageError(f"{path}: {e}") from None


@click.group("report")
def report() -> None:
    """Publish gate reports on pull/merge requests and turn them into CI outputs."""


@report.command("publish")
@click.option("--report", "report_path", type=click.Path(dir_okay=False), default=None,
              help="Markdown report to publish as it is (mlgate validate --report FILE).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None,
              help="JSON result of 'mlgate validate --output json': rendered as the table and a chart.")
@click.option("--forge", type=click.Choice(["auto", "github", "gitlab"]), default="auto", show_default=True,
              help="Where to publish; auto reads GITHUB_ACTIONS / GITLAB_CI.")
@click.option("--key", default=None,
              help="Keeps one comment per key (e.g. the config path) when a PR gates several models.")
@click.option("--dry-run", is_flag=True, help="Print the target and the comment; send nothing.")
def publish(report_path: str | None, json_path: str | None, forge: str, key: str | None, dry_run: bool) -> None:
    """Create or update mlgate's one comment (GitHub PR) or note (GitLab MR) with the gate report.

    \b
    GitHub: needs GITHUB_TOKEN (or MLGATE_GITHUB_TOKEN) with pull-requests: write.
    GitLab: needs MLGATE_GITLAB_TOKEN (or GITLAB_TOKEN) with the api scope.
    Not on a pull/merge request, or no token: prints why and exits 0.
    Exit 2 when the token is refused (401/403/404), 3 when the forge stays unreachable.
    """
    from mlgate.core.ci_report import GitHubTarget, NoTarget, comment_body, detect_target
    from mlgate.core.report import render_markdown

    if (report_path is None) == (json_path is None):
        raise UsageError("give exactly one of --report FILE or --json FILE")
    if json_path is not None:
        markdown = render_markdown(_report(json_path), chart=True)
    else:
        try:
            markdown = Path(report_path).read_text(encoding="utf-8")  # type: ignore[arg-type]
        except FileNotFoundError:
            raise UsageError(f"{report_path}: file not found") from None
    body = comment_body(markdown, key)

    event = None
    event_path = os.environ.get("GITHUB_EVENT_PATH")
    if event_path and Path(event_path).is_file():
        try:
            event = json.loads(Path(event_path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            event = None
    target = detect_target(os.environ, event, forge)
    if isinstance(target, NoTarget):
        click.echo(f"mlgate report publish: {target.reason}", err=True)
        if dry_run:
            click.echo(body)
        return
    if dry_run:
        click.echo(f"mlgate report publish: would publish on {target}", err=True)
        click.echo(body)
        return
    if isinstance(target, GitHubTarget):
        action, url = publish_github(target, body, key)
    else:
        action, url = publish_gitlab(target, body, key)
    click.echo(f"mlgate report publish: {action} the gate report on {target}: {url}", err=True)


@report.command("dotenv")
@click.option("--json", "json_path", required=True, type=click.Path(dir_okay=False),
              help="JSON result of 'mlgate validate --output json' (or 'mlgate train --output json').")
@click.option("--out", "out_path", type=click.Path(dir_okay=False), default=None,
              help="Write here instead of stdout (GitLab: artifacts:reports:dotenv).")
def dotenv(json_path: str, out_path: str | None) -> None:
    """Write gates_passed, model_version, model (validate) or run_id, model_version (train) as dotenv."""
    from mlgate.core.ci_report import dotenv_text, outputs

    text = dotenv_text(outputs(_read_json(json_path)))
    if out_path:
        Path(out_path).write_text(text, encoding="utf-8")
    else:
        click.echo(text, nl=False)


@report.command("check")
@click.option("--json", "json_path", required=True, type=click.Path(dir_okay=False),
              help="JSON result of 'mlgate validate --output json'.")
def check(json_path: str) -> None:
    """Print one line per failed gate (which, and by how much); exit 1 when a gate failed."""
    from mlgate.core.ci_report import verdict_lines

    report_ = _report(json_path)
    for line in verdict_lines(report_):
        click.echo(line, err=not report_.passed)
    if not report_.passed:
        sys.exit(1)


# --------------------------------------------------------------------------- GitHub (httpx)


class _Retryable(Exception):
    """A forge answer worth retrying; carries the wait the forge asked for (seconds, 0 = default)."""

    def __init__(self, what: str, wait: float):
        super().__init__(what)
        self.wait = wait


def _retry_hook(exc: Exception) -> bool | float:
    import httpx

    if isinstance(exc, _Retryable):
        return exc.wait if exc.wait > 0 else True
    return isinstance(exc, httpx.TransportError)


def _github_call(client: Any, method: str, url: str, **kwargs: Any) -> Any:
    """One GitHub REST call, retried on 5xx, 429, the secondary rate limit and transport errors."""
    import httpx
    import stamina

    from mlgate.core.ci_report import retry_after

    try:
        for attempt in stamina.retry_context(on=_retry_hook, attempts=ATTEMPTS, timeout=TIMEOUT,
                                             wait_initial=1.0, wait_max=30.0):
            with attempt:
                resp = client.request(method, url, **kwargs)
                wait = retry_after(resp.status_code, resp.headers)
                if wait is not None:
                    raise _Retryable(f"{method} {url} answered {resp.status_code}", wait)
                return resp
    except _Retryable as e:
        raise InfraError(f"GitHub API: {e} after {ATTEMPTS} attempts") from None
    except httpx.TransportError as e:
        raise InfraError(f"GitHub API unreachable at {url}: {type(e).__name__}: {e}") from None
    raise AssertionError("unreachable")  # pragma: no cover


def _github_check(resp: Any, what: str) -> None:
    if resp.status_code < 400:
        return
    try:
        message = resp.json().get("message", "")
    except ValueError:
        message = resp.text[:200]
    hint = ""
    if resp.status_code in (401, 403, 404):
        hint = " (the token needs pull-requests: write on this repository; fork PRs get a read-only token)"
        raise UsageError(f"GitHub refused to {what}: {resp.status_code} {message}{hint}")
    raise InfraError(f"GitHub failed to {what}: {resp.status_code} {message}")


def publish_github(target: Any, body: str, key: str | None) -> tuple[str, str]:
    """Create or update the one mlgate comment on a GitHub pull request.

    Args:
        target: a :class:`mlgate.core.ci_report.GitHubTarget`.
        body: the full comment text (markers included).
        key: the comment key (see :func:`mlgate.core.ci_report.find_comment`).

    Returns:
        ``("created" | "updated", html_url)``.

    Raises:
        UsageError: the token was refused (401/403/404).
        InfraError: 5xx/429 after the retries, or GitHub unreachable.
    """
    import httpx

    from mlgate import __version__
    from mlgate.core.ci_report import find_comment

    headers = {
        "Accept": "application/vnd.github+json",
        "Authorization": f"Bearer {target.token}",
        "X-GitHub-Api-Version": "2022-11-28",
        "User-Agent": f"{USER_AGENT}/{__version__}",
    }
    base = f"{target.api_url}/repos/{target.repository}"
    with httpx.Client(headers=headers, timeout=30.0) as client:
        comments: list[tuple[Any, str]] = []
        url: str | None = f"{base}/issues/{target.number}/comments"
        params: dict[str, Any] | None = {"per_page": 100}
        while url:
            resp = _github_call(client, "GET", url, params=params)
            _github_check(resp, f"list the comments of #{target.number}")
            comments.extend((c["id"], c.get("body") or "") for c in resp.json())
            url = resp.links.get("next", {}).get("url")
            params = None  # the next link carries its own query
        existing = find_comment(comments, key)
        if existing is None:
            resp = _github_call(client, "POST", f"{base}/issues/{target.number}/comments", json={"body": body})
            _github_check(resp, f"comment on #{target.number}")
            return "created", resp.json().get("html_url", "")
        resp = _github_call(client, "PATCH", f"{base}/issues/comments/{existing}", json={"body": body})
        _github_check(resp, f"update comment {existing} on #{target.number}")
        return "updated", resp.json().get("html_url", "")


# --------------------------------------------------------------------------- GitLab (python-gitlab)


def publish_gitlab(target: Any, body: str, key: str | None) -> tuple[str, str]:
    """Create or update the one mlgate note on a GitLab merge request.

    Args:
        target: a :class:`mlgate.core.ci_report.GitLabTarget`.
        body: the full note text (markers included).
        key: the note key (see :func:`mlgate.core.ci_report.find_comment`).

    Returns:
        ``("created" | "updated", note reference)``.

    Raises:
        UsageError: the token was refused (401/403/404).
        InfraError: 5xx/429 after python-gitlab's retries, or GitLab unreachable.
    """
    import gitlab
    import requests

    from mlgate.core.ci_report import find_comment

    gl = gitlab.Gitlab(url=target.server_url, private_token=target.token, retry_transient_errors=True,
                       timeout=30, user_agent=USER_AGENT)
    mr = gl.projects.get(target.project, lazy=True).mergerequests.get(target.iid, lazy=True)
    try:
        notes = [(n.id, n.body) for n in mr.notes.list(iterator=True, per_page=100, sort="asc", order_by="created_at")]
        existing = find_comment(notes, key)
        if existing is None:
            note = mr.notes.create({"body": body})
            return "created", target.note_url(note.id)
        mr.notes.update(existing, {"body": body})
        return "updated", target.note_url(existing)
    except gitlab.exceptions.GitlabError as e:
        code = getattr(e, "response_code", None)
        if code in (401, 403, 404):
            raise UsageError(
                f"GitLab refused the note on {target}: {code} {e.error_message} "
                "(MLGATE_GITLAB_TOKEN needs the api scope and at least the Reporter role)"
            ) from None
        raise InfraError(f"GitLab failed the note on {target}: {code} {e.error_message}") from None
    except requests.RequestException as e:
        raise InfraError(f"GitLab unreachable at {target.server_url}: {type(e).__name__}") from None
