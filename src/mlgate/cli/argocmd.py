"""``mlgate argo``: submit training to Argo Workflows, follow it, stop it.

Thin shell over :mod:`mlgate.edge.argo`: reads ``.mlgate.yml`` (``train.argo``), asks git for the
commit and the repository URL, prints what happened. Heavy imports (Hera) happen in
:mod:`mlgate.edge.argo`'s functions, not at import time.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from mlgate.cli.common import config_option, emit_json, info_printer, output_option, write_github_output
from mlgate.core.errors import UsageError

if TYPE_CHECKING:
    from mlgate.core.argo_plan import WorkflowStatus
    from mlgate.core.config import ArgoBackend, Config

EXIT_CODES = """
\b
Exit codes:
  0  done (submit: submitted or already submitted; with --wait: Succeeded)
  1  with --wait: the workflow Failed or Errored; the failed step's message is printed
  2  usage, .mlgate.yml or parameter error; WorkflowTemplate or workflow not found;
     the Argo Server refused the token (401) or the namespace (403)
  3  the Argo Server is unreachable, fails (5xx) or --timeout passed
"""


def _load(config_path: str, template: str | None = None) -> tuple[Config, ArgoBackend]:
    from mlgate.core.config import load_file

    config = load_file(config_path)
    settings = config.train.argo
    if settings is None:
        raise UsageError(
            f"{config_path}: no train.argo section; add one with server (Argo Server URL), namespace and template"
        )
    if template is not None:
        settings = settings.model_copy(update={"template": template})
    # names go into Argo Server API paths: check them before git is asked or a request is made
    from mlgate.core.argo_plan import check_namespace, check_object_name, check_server_url

    check_server_url(settings.server)
    check_namespace(settings.namespace)
    check_object_name("WorkflowTemplate name" + (" (--template)" if template is not None else " (train.argo.template)"),
                      settings.template)
    return config, settings


def _git(args: list[str], cwd: Path) -> str | None:
    """Output of a git command (stripped), or None when it fails or git is missing."""
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _resolve_commit(commit: str | None, cwd: Path) -> str:
    from mlgate.core.argo_plan import check_commit

    if commit is None:
        head = _git(["rev-parse", "--verify", "--quiet", "HEAD^{commit}"], cwd)
        if not head:
            raise UsageError(f"cannot read the commit of {cwd} (git rev-parse HEAD failed); pass --commit SHA")
        return check_commit(head)
    resolved = _git(["rev-parse", "--verify", "--quiet", f"{commit}^{{commit}}"], cwd)
    return check_commit(resolved or commit)


def _config_in_repo(config_path: str, cwd: Path) -> str | None:
    """The config's path relative to the repository root (where the step finds it after cloning);
    None outside a git checkout (the WorkflowTemplate's default, .mlgate.yml, applies)."""
    top = _git(["rev-parse", "--show-toplevel"], cwd)
    if not top:
        return None
    try:
        return Path(config_path).resolve().relative_to(Path(top).resolve()).as_posix()
    except ValueError:
        raise UsageError(
            f"{config_path} is not inside the git repository {top}; the cluster clones only the repository"
        ) from None


def _warn_unreachable(commit: str, cwd: Path) -> None:
    """Tell the user what the cluster will not see: uncommitted changes, an unpushed commit."""
    if _git(["status", "--porcelain", "--untracked-files=no"], cwd):
        click.echo(
            f"note: uncommitted changes are not part of commit {commit[:12]}; the cluster trains the commit", err=True
        )
    remote = _git(["branch", "-r", "--contains", commit], cwd)
    if remote == "":
        click.echo(
            f"note: commit {commit[:12]} is on no remote branch known here; push it, or the step cannot fetch it",
            err=True,
        )


def _status_text(st: WorkflowStatus) -> list[str]:
    lines = [f"workflow {st.name}: {st.phase}" + (f" ({st.message})" if st.message else "")]
    for n in st.steps():
        lines.append(f"  {n.display_name}: {n.phase}" + (f" ({n.message})" if n.message else ""))
    lines.append(st.url)
    return lines


@click.group("argo", context_settings={"help_option_names": ["-h", "--help"]})
def argo() -> None:
    """Submit and follow training on Argo Workflows.

    The Argo Server, namespace, WorkflowTemplate, token source and GPU count come from
    train.argo in .mlgate.yml. The bearer token is read from the environment variable named by
    train.argo.token_env (default ARGO_TOKEN) or from train.argo.token_file; it is never printed.
    Install the WorkflowTemplates first: kubectl -n NAMESPACE apply -f workflows/.
    """


@argo.command("submit", epilog=EXIT_CODES)
@config_option
@click.option("--template", help="WorkflowTemplate to run (default: train.argo.template).")
@click.option(
    "-p",
    "--parameter",
    "parameters",
    multiple=True,
    metavar="KEY=VALUE",
    help="WorkflowTemplate parameter (repeatable); overrides train.argo.parameters.",
)
@click.option("--commit", help="Commit to train (default: git rev-parse HEAD); a full SHA or any git revision.")
@click.option("--repo", "repo_url", help="Git URL the cluster clones (default: git remote get-url origin).")
@click.option("--gpus", type=click.IntRange(min=0), help="Number of nvidia.com/gpu (default: train.argo.gpus).")
@click.option("--wait", "wait_", is_flag=True, help="Follow the workflow until it ends; print each change of phase.")
@click.option("--timeout", type=click.FloatRange(min=0), help="With --wait: give up after this many seconds (exit 3).")
@click.option(
    "--poll-seconds",
    type=click.FloatRange(min=0.01),
    default=5.0,
    show_default=True,
    envvar="MLGATE_ARGO_POLL_SECONDS",
    help="With --wait: seconds between polls (env MLGATE_ARGO_POLL_SECONDS).",
)
@output_option
def submit(
    config_path: str,
    template: str | None,
    parameters: tuple[str, ...],
    commit: str | None,
    repo_url: str | None,
    gpus: int | None,
    wait_: bool,
    timeout: float | None,
    poll_seconds: float,
    output: str,
) -> None:
    """Submit the WorkflowTemplate for a commit (once per model and commit) and print its Argo link.

    The workflow references the WorkflowTemplate (workflowTemplateRef); every template parameter
    is sent explicitly. Submitting again for the same commit returns the existing workflow. In
    GitHub Actions, workflow-name and workflow-url (and with --wait workflow-phase) are written
    to $GITHUB_OUTPUT.
    """
    from mlgate.edge import argo as argo_api
    from mlgate.core.argo_plan import parse_parameter_options, progress_lines
    from mlgate.cli.common import check_github_output

    config, settings = _load(config_path, template)
    check_github_output()  # fail before a workflow is submitted, not after
    user = parse_parameter_options(parameters)
    cwd = Path(config_path).resolve().parent
    sha = _resolve_commit(commit, cwd)
    if repo_url is None:
        repo_url = _git(["remote", "get-url", "origin"], cwd)
        if not repo_url:
            raise UsageError(f"cannot read the git remote 'origin' of {cwd}; pass --repo URL")
    _warn_unreachable(sha, cwd)
    config_in_repo = _config_in_repo(config_path, cwd)
    tracking_uri = os.environ.get("MLFLOW_TRACKING_URI") or config.tracking_uri

    sub = argo_api.submit_for_commit(
        settings,
        model=config.model,
        repo_url=repo_url,
        commit=sha,
        command=config.train.command,
        tracking_uri=tracking_uri,
        parameters=user,
        gpus=gpus,
        config_path=config_in_repo,
    )
    write_github_output({"workflow-name": sub.name, "workflow-url": sub.ui_url})
    as_json = output == "json"
    if not as_json:
        if sub.created:
            click.echo(f"submitted workflow {sub.name} (WorkflowTemplate {sub.template}, commit {sub.commit[:12]})")
        else:
            click.echo(
                f"workflow {sub.name} already exists for commit {sub.commit[:12]} ({sub.phase}); not submitting again"
            )
        click.echo(sub.ui_url)
    if not wait_:
        if as_json:
            emit_json(sub.to_dict())
        return

    started = time.monotonic()
    previous: list[WorkflowStatus | None] = [None]
    log = info_printer(output)  # progress to stderr when stdout carries JSON

    def show(st: WorkflowStatus) -> None:
        elapsed = time.monotonic() - started
        for line in progress_lines(previous[0], st):
            log(f"[{elapsed:6.0f}s] {line}")
        previous[0] = st

    final = argo_api.wait(settings, sub.name, poll_seconds=poll_seconds, timeout_seconds=timeout, on_progress=show)
    write_github_output({"workflow-phase": final.phase})
    if as_json:
        emit_json({**sub.to_dict(), "phase": final.phase, "status": final.to_dict()})
    if not final.succeeded:
        raise argo_api.WorkflowFailed(f"workflow {final.name} {final.phase}: {final.failure_message()} ({final.url})")
    if not as_json:
        click.echo(f"workflow {final.name} Succeeded")


@argo.command("status", epilog=EXIT_CODES)
@click.argument("name")
@config_option
@output_option
def status(name: str, config_path: str, output: str) -> None:
    """Show a workflow's phase, its steps' phases and messages, and its Argo link."""
    from mlgate.edge import argo as argo_api

    _, settings = _load(config_path)
    st = argo_api.get_status(settings, name)
    if output == "json":
        emit_json(st.to_dict())
        return
    for line in _status_text(st):
        click.echo(line)


@argo.command("stop", epilog=EXIT_CODES)
@click.argument("name")
@config_option
@click.option("--terminate", is_flag=True, help="Terminate instead: do not run exit handlers.")
@click.option("--wait", "wait_", is_flag=True, help="Wait until the workflow has ended.")
@click.option(
    "--poll-seconds",
    type=click.FloatRange(min=0.01),
    default=2.0,
    show_default=True,
    envvar="MLGATE_ARGO_POLL_SECONDS",
    help="With --wait: seconds between polls.",
)
@output_option
def stop(name: str, config_path: str, terminate: bool, wait_: bool, poll_seconds: float, output: str) -> None:
    """Stop a running workflow (running steps end, exit handlers run); a finished one is left as it is.

    Argo ends the workflow shortly after the request (phase Failed, "Stopped with strategy
    'Stop'"); --wait follows it until then.
    """
    from mlgate.edge import argo as argo_api

    _, settings = _load(config_path)
    before = argo_api.get_status(settings, name)
    if before.finished:
        st = before
    elif terminate:
        st = argo_api.terminate(settings, name)
    else:
        st = argo_api.stop(settings, name)
    if wait_ and not st.finished:
        st = argo_api.wait(settings, name, poll_seconds=poll_seconds, timeout_seconds=600)
    if output == "json":
        emit_json({**st.to_dict(), "already_finished": before.finished})
        return
    if before.finished:
        click.echo(f"workflow {name} had already finished: {before.phase}")
    elif not st.finished:
        click.echo(f"{'terminate' if terminate else 'stop'} requested for workflow {name}; Argo ends it shortly")
    for line in _status_text(st):
        click.echo(line)
