"""``mlgate train``, ``validate``, ``promote``, ``status``: parse, call the flow (:mod:`mlgate.flows`), print, exit."""

from __future__ import annotations

import os
from dataclasses import asdict

import click

from mlgate.cli.common import config_option, emit_json, info_printer, model_option, output_option, write_github_output


@click.command("train", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@config_option
@model_option
@output_option
@click.option("--require-clean", is_flag=True,
              help="Refuse (exit 2, nothing started) when tracked files have uncommitted changes.")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def train(config_path: str, model: str | None, output: str, require_clean: bool, command: tuple[str, ...]) -> None:
    """Run COMMAND (after --, default train.command) in a tracked MLflow run and register a model version.

    \b
    The command sees MLFLOW_TRACKING_URI and MLFLOW_RUN_ID, so mlflow.start_run() resumes
    mlgate's run. Exits with the command's own code when it fails (the run is marked FAILED).
    From a working tree with uncommitted changes the run and version are tagged
    mlgate.git_dirty=true and a warning goes to stderr; --require-clean refuses instead.
    Outputs (also to $GITHUB_OUTPUT): run_id, model_version.
    """
    from mlgate.flows.project import Project
    from mlgate.flows.train import train as do_train

    project = Project.load(config_path, model=model, create_store=True)
    log = info_printer(output)
    if output == "json":
        # keep stdout for the JSON document: the training command's output goes to stderr
        import sys

        saved = os.dup(1)
        os.dup2(2, 1)
        try:
            result = do_train(project, command, log=log, require_clean=require_clean)
        finally:
            sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(saved)
    else:
        result = do_train(project, command, log=log, require_clean=require_clean)
    write_github_output({"run_id": result.run_id, "model_version": result.model_version, "model": result.model})
    if output == "json":
        emit_json(asdict(result))


@click.command("validate")
@config_option
@model_option
@click.option("--version", "version", default=None, help="Model version to gate (default: the newest).")
@click.option("--alias", default=None, help="Gate the version that holds this alias instead.")
@click.option("--commit", default=None, help="Gate the newest version registered for this git commit.")
@click.option("--report", "report_path", type=click.Path(dir_okay=False), default=None,
              help="Also write the Markdown report to this file.")
@click.option("--chart/--no-chart", default=False, help="Append a Mermaid chart of candidate vs champion.")
@output_option
def validate(config_path: str, model: str | None, version: str | None, alias: str | None, commit: str | None,
             report_path: str | None, chart: bool, output: str) -> None:
    """Check a model version against the metric gates and the champion.

    \b
    Writes the gate table to stdout, --report FILE and $GITHUB_STEP_SUMMARY; tags the version
    mlgate.gates=passed|failed (one tag per gate) and sets alias 'challenger' when all pass.
    Exit codes: 0 passed, 1 a gate failed, 2 usage/config error, 3 MLflow unreachable.
    Outputs (also to $GITHUB_OUTPUT): gates_passed, model_version, report_path.
    """
    from mlgate.flows.project import Project
    from mlgate.flows.validate import validate as do_validate
    from mlgate.core.report import github_annotations, render_markdown, report_dict

    project = Project.load(config_path, model=model)
    if sum(x is not None for x in (version, alias, commit)) > 1:
        raise click.UsageError("give at most one of --version, --alias, --commit")
    result = do_validate(project, version=version, alias=alias, commit=commit, log=info_printer(output))
    report = result.report
    markdown = render_markdown(report, chart=chart)
    if report_path:
        with open(report_path, "w", encoding="utf-8") as fh:
            fh.write(markdown)
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        with open(summary, "a", encoding="utf-8") as fh:
            fh.write(render_markdown(report, chart=True) + "\n")
    if os.environ.get("GITHUB_ACTIONS") == "true":
        for line in github_annotations(report):
            click.echo(line, err=output == "json")  # keep stdout parseable in JSON mode
    write_github_output({
        "gates_passed": report.passed,
        "model_version": report.candidate_version,
        "report_path": os.path.abspath(report_path) if report_path else "",
    })
    if output == "json":
        emit_json(report_dict(report))
    else:
        click.echo(markdown)
    if not report.passed:
        failed = ", ".join(r.metric for r in report.failed)
        click.echo(f"mlgate: gates failed for {report.model} v{report.candidate_version}: {failed}", err=True)
        raise SystemExit(1)


@click.command("promote")
@config_option
@model_option
@click.option("--to", "to", required=True, help="Environment to promote to (from .mlgate.yml).")
@click.option("--version", "version", default=None, help="Model version to promote.")
@click.option("--alias", default=None,
              help="Promote the version holding this alias (default: the required environment's, else 'challenger').")
@output_option
def promote(config_path: str, model: str | None, to: str, version: str | None, alias: str | None, output: str) -> None:
    """Promote a model version to an environment through its GitOps repository.

    \b
    Refuses (exit 1) a version whose gates did not pass or that the required environment
    does not hold. Edits only the target value of the manifest and commits it with the
    promotion's trailers. Mode push: pushes, then moves the environment's alias. Mode
    pull-request: opens a PR/MR on mlgate/promote/<model>/<env>/v<version>; the alias
    moves when it is merged (the bot, or 'mlgate reconcile').
    Outputs (also to $GITHUB_OUTPUT): promotion_commit, promotion_url, model_version.
    """
    from mlgate.flows.project import Project
    from mlgate.flows.promote import promote as do_promote

    if version is not None and alias is not None:
        raise click.UsageError("give --version or --alias, not both")
    project = Project.load(config_path, model=model)
    result = do_promote(project, to, version=version, alias=alias, note=lambda m: click.echo(m, err=True))
    write_github_output({"promotion_commit": result.commit or "", "promotion_url": result.url or "",
                         "model_version": result.version})
    if output == "json":
        emit_json(asdict(result))
        return
    where = result.url or f"{result.repository} @ {(result.commit or '')[:12]}"
    if not result.landed:
        click.echo(f"promotion PR for {result.model} v{result.version} to {result.environment}: {result.url} "
                   f"(branch {result.branch}); alias {result.alias!r} moves when it is merged "
                   "(by the mlgate bot, or 'mlgate reconcile' in the GitOps repository)")
    elif result.changed:
        click.echo(f"promoted {result.model} v{result.version} to {result.environment}: {where} "
                   f"(alias {result.alias!r} now on v{result.version})")
    else:
        click.echo(f"{result.path} already deploys {result.model} v{result.version} in {result.environment}: "
                   f"nothing to commit (alias {result.alias!r} on v{result.version})")


@click.command("status")
@config_option
@model_option
@output_option
def status(config_path: str, model: str | None, output: str) -> None:
    """For each environment: the version holding its alias, its gate result, the GitOps commit."""
    from mlgate.flows.project import Project
    from mlgate.flows.status import status as do_status

    project = Project.load(config_path, model=model)
    rows = do_status(project)
    if output == "json":
        emit_json({"model": project.config.model, "environments": [asdict(r) for r in rows]})
        return
    click.echo(f"{project.config.model} ({project.registry.shown_uri})")
    if all(r.version is None for r in rows) and not project.registry.versions(project.config.model):
        click.echo(f"note: {project.config.model} has no model versions in this registry yet "
                   "(check --model / model: in .mlgate.yml, or run 'mlgate train')")
    header = f"{'ENVIRONMENT':<14}{'ALIAS':<12}{'VERSION':<9}{'GATES':<9}{'COMMIT':<14}PROMOTED"
    click.echo(header)
    for r in rows:
        click.echo(f"{r.environment:<14}{r.alias:<12}{(r.version or '-'):<9}{(r.gates or '-'):<9}"
                   f"{(r.commit or '-')[:12]:<14}{r.promoted_at or '-'}")
    for r in rows:
        if r.retrain:
            t = r.retrain
            click.echo(f"{r.environment}: last alert {t.get('alert')} (started {t.get('alert_started_at')}); "
                       f"retrain {t.get('retrain') or '-'}: {t.get('state')}")
