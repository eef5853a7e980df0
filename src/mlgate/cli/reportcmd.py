"""``mlgate report``: publish a gate report where reviewers look, and turn it into CI outputs.

Imperative shell around :mod:`mlgate.core.ci_report` and :mod:`mlgate.edge.forges.ci_comments`:

- ``mlgate report publish``: create, or update in place, ONE comment on the GitHub pull request
  (REST "Issue comments", through httpx, retried with stamina on 5xx/429/secondary rate limit)
  or ONE note on the GitLab merge request (REST "Notes", through python-gitlab with
  ``retry_transient_errors``). The comment is found by a hidden marker (the one comment client,
  :mod:`mlgate.edge.forges.comments`). Outside a pull/merge request, or without a token, it does
  nothing and says why in one line (exit 0).
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

from mlgate.core.ci_report import (
    GitHubTarget,
    NoTarget,
    comment_body,
    detect_target,
    dotenv_text,
    outputs,
    report_from_dict,
    verdict_lines,
)
from mlgate.core.errors import UsageError
from mlgate.core.report import render_markdown


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
    report_ = _report(json_path)
    for line in verdict_lines(report_):
        click.echo(line, err=not report_.passed)
    if not report_.passed:
        sys.exit(1)


# --------------------------------------------------------------------------- publishing (edge)


def publish_github(target: Any, body: str, key: str | None) -> tuple[str, str]:
    """Create or update the one mlgate comment on a GitHub pull request; see
    :func:`mlgate.edge.forges.ci_comments.publish_github` (inputs, outputs and errors)."""
    from mlgate.edge.forges import ci_comments  # lazily: httpx and stamina slow down `mlgate --help`

    return ci_comments.publish_github(target, body, key)


def publish_gitlab(target: Any, body: str, key: str | None) -> tuple[str, str]:
    """Create or update the one mlgate note on a GitLab merge request; see
    :func:`mlgate.edge.forges.ci_comments.publish_gitlab` (inputs, outputs and errors)."""
    from mlgate.edge.forges import ci_comments  # lazily: httpx and stamina slow down `mlgate --help`

    return ci_comments.publish_gitlab(target, body, key)
