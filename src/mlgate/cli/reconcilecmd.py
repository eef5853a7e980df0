"""``mlgate reconcile``: parse, call :func:`mlgate.flows.reconcile.reconcile`, print, exit."""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path

import click

from mlgate.cli.common import emit_json, info_printer, output_option
from mlgate.core.errors import UsageError


@click.command("reconcile")
@click.option("--repo", "repo", default=".", show_default=True, type=click.Path(file_okay=False),
              help="A clone of the GitOps repository (work tree or bare).")
@click.option("--ref", default="HEAD", show_default=True, help="The branch the deployment tool watches.")
@click.option("--tracking-uri", "tracking_uri", default=None,
              help="MLflow tracking server (default: $MLFLOW_TRACKING_URI).")
@click.option("--model", "model", default=None, help="Only this registered model.")
@click.option("--check", is_flag=True, help="Only report where the registry and git disagree (exit 1 when they do).")
@output_option
def reconcile(repo: str, ref: str, tracking_uri: str | None, model: str | None, check: bool, output: str) -> None:
    """Move each environment's alias to the model version git deploys.

    \b
    Reads the promotion trailers (Model, Model-Version, Environment, Alias) of the commits on
    REF; the newest promotion of each model and environment whose change is still in the
    files is what runs. Moves the alias and tags the version (mlgate.promoted.<env>.*), as
    the bot does when a promotion PR merges. Idempotent: a second run changes nothing.
    Commits without trailers are skipped. Needs the whole history (fetch-depth: 0).
    Exit codes: 0 in step (or moved into step); 1 when git cannot tell which version runs
    (a hand edit or revert replaced the promotion, or it names a version the registry does
    not have), and with --check also when registry and git disagree; 2 usage (not a git
    repository, a shallow clone, no tracking server); 3 MLflow or git unreachable.
    """
    from mlgate.edge.registry import Registry, resolve_tracking_uri  # lazily: mlflow is slow to import
    from mlgate.flows.reconcile import reconcile as do_reconcile

    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        raise UsageError("mlgate reconcile needs the tracking server: --tracking-uri URI or MLFLOW_TRACKING_URI")
    uri = resolve_tracking_uri(uri, Path(repo).resolve(), {}, create=False)
    rows = do_reconcile(Path(repo), Registry(uri), ref=ref, model=model, check=check, log=info_printer(output))
    if output == "json":
        emit_json({"check": check, "environments": [asdict(r) for r in rows]})
    else:
        if not rows:
            click.echo(f"no promotion commits on {ref}: nothing to reconcile")
        for r in rows:
            if r.state == "undecided":
                click.echo(f"{r.model} {r.environment}: git cannot tell which version runs: {r.reason}", err=True)
                continue
            was = f" (registry had v{r.registry_version})" if r.registry_version != r.git_version else ""
            todo = "; run mlgate reconcile to move it" if r.state == "differs" else ""
            click.echo(f"{r.model} {r.environment}: {r.state}: git deploys v{r.git_version} "
                       f"(commit {(r.commit or '')[:12]}), alias {r.alias!r}{was if r.state != 'in step' else ''}{todo}")
    if any(r.state == "undecided" for r in rows) or (check and any(r.state == "differs" for r in rows)):
        raise SystemExit(1)
