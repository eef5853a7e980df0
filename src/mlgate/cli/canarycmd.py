"""``mlgate canary start|step|status|continue|abort|rollback``: drive a canary rollout from a terminal or CI.

Parses arguments, calls :mod:`mlgate.flows.canary`, prints, exits. State lives in the bot's
database (``--database-url`` / ``$MLGATE_DATABASE_URL``, default ``sqlite:///.mlgate/bot.db``
beside ``.mlgate.yml``): a CI job that drives a canary needs a database that outlives the job
(PostgreSQL, or a cached SQLite file).

Exit codes: 0 done or nothing due; 1 the canary was rolled back (a decision said no) or a
request was refused; 2 usage/config/manifest error; 3 Prometheus, git, MLflow or the database
unreachable (the canary is held; nothing was decided).
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from mlgate.cli.common import config_option, emit_json, output_option, write_github_output


def _clock() -> datetime:
    return datetime.now(UTC)


database_option = click.option(
    "--database-url", "database_url", envvar="MLGATE_DATABASE_URL", default=None,
    help="SQLAlchemy URL of the bot's database (env MLGATE_DATABASE_URL; default sqlite:///.mlgate/bot.db "
         "next to the config).",
)
to_option = click.option("--to", "to", required=True, help="Environment of the canary (from .mlgate.yml).")
model_option = click.option("--model", "model", default=None, help="Registered model (default: the config's model).")
report_option = click.option("--report", "report_path", type=click.Path(dir_okay=False), default=None,
                             help="Also write the Markdown report to this file.")


class _LazyWriter:
    """The GitOps writer for a mode, built on first write (a tick that writes nothing needs no
    forge credentials, even in pull-request mode)."""

    def __init__(self, mode: str):
        self.mode = mode
        self._writer: Any = None

    def write(self, change: Any) -> Any:
        if self._writer is None:
            from mlgate.flows.promote import writer_for

            self._writer = writer_for(self.mode)
        return self._writer.write(change)


def _db_url(database_url: str | None, base_dir: Path) -> str:
    from mlgate.edge.db.canaries import DEFAULT_DATABASE_URL

    url = database_url or DEFAULT_DATABASE_URL
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        return f"sqlite:///{(base_dir / url[len('sqlite:///'):]).resolve()}"
    return url


def _project(config_path: str, model: str | None) -> Any:
    from mlgate.flows.project import Project

    project = Project.load(config_path)
    if model and model != project.config.model:
        project.config = project.config.model_copy(update={"model": model})
    return project


def _store(database_url: str | None, base_dir: Path) -> Any:
    """The canary database, created when missing (``canary start``).

    Raises UsageError (exit 2) for a URL that cannot work as written (its password hidden)."""
    from mlgate.edge.db.canaries import CanaryStore

    return CanaryStore(_db_url(database_url, base_dir))


def _existing_store(database_url: str | None, base_dir: Path, config_path: str) -> Any:
    """The canary database for commands that only read it or act on a running canary: nothing is
    created (no folder, no file, no table). None when the database holds no canary table yet.

    Raises:
        UsageError: the URL cannot work as written, or its SQLite file does not exist (the message
            says where it was looked for and how to point at another database).
    """
    from sqlalchemy.engine import make_url

    from mlgate.edge.db.canaries import CanaryStore
    from mlgate.core.errors import UsageError

    url = _db_url(database_url, base_dir)
    try:
        parsed = make_url(url)
        db = parsed.database if parsed.get_backend_name() == "sqlite" else None
    except Exception:
        db = None  # CanaryStore names what is wrong with the URL
    if db and db != ":memory:" and not db.startswith("file:") and not Path(db).expanduser().is_file():
        where = ""
        if database_url is None:
            missing = "" if Path(config_path).exists() else f"; {config_path} does not exist"
            where = f" (the default: .mlgate/bot.db next to {config_path}{missing})"
        raise UsageError(f"no canary database at {Path(db).expanduser().absolute()}{where}: no canary was started "
                         "with it. Run where `mlgate canary start` ran, or give --database-url / MLGATE_DATABASE_URL")
    store = CanaryStore(url, create=False)
    return store if store.has_tables() else None


def _record_json(r: Any) -> dict[str, Any]:
    cur = r.current
    return {
        "id": r.id, "model": r.model, "environment": r.environment, "version": r.version,
        "primary_version": r.primary_version, "status": r.status, "step": r.step + 1, "steps": r.steps,
        "percent": r.percent, "live": bool(cur is not None and cur.live_at is not None),
        "next_due_at": datetime.fromtimestamp(r.next_due_at, UTC).isoformat() if r.next_due_at else None,
        "reason": r.reason,
        "changes": [{"step": s.index + 1, "percent": s.percent, "commit": s.commit, "url": s.url,
                     "outcome": s.outcome} for s in r.steps_log],
        "rollback": ({"commit": r.rollback.commit, "url": r.rollback.url} if r.rollback else None),
    }


def _emit(results: list[Any], output: str, report_path: str | None) -> None:
    for res in results:
        write_github_output({"canary_id": res.canary.id, "canary_status": res.canary.status,
                             "canary_step": res.canary.step + 1, "canary_percent": res.canary.percent,
                             "model_version": res.canary.version})
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary and results:
        with open(summary, "a", encoding="utf-8") as fh:
            for res in results:
                fh.write(res.report + "\n")
    if report_path:
        with open(report_path, "w", encoding="utf-8") as fh:
            fh.write("\n".join(res.report for res in results))
    if output == "json":
        emit_json([{"action": res.action, "message": res.message, **_record_json(res.canary)} for res in results])
        return
    for res in results:
        from mlgate.core.canary import status_line

        click.echo(f"{res.canary.label}: {res.action}: {res.message}")
        click.echo(f"  {status_line(res.canary)}")


def _active(store: Any, model: str, env: str, version: str | None) -> Any:
    from mlgate.core.errors import UsageError

    if store is None:
        raise UsageError(f"no canary of {model} is running in {env}: no canary was ever stored in this database")
    rec = store.find_active(model, env)
    if rec is None:
        last = store.latest(model, env)
        was = f"; the last one (v{last.version}) is {last.status}" if last else ""
        raise UsageError(f"no canary of {model} is running in {env}{was}")
    if version is not None and rec.version != str(version):
        raise UsageError(f"the canary running in {env} is v{rec.version}, not v{version}")
    return rec


@click.group("canary")
def canary() -> None:
    """Drive a canary rollout step by step (start, step, status, continue, abort, rollback).

    \b
    A canary moves a share of an environment's traffic to a new model version, step by
    step (canary.steps in .mlgate.yml), through one GitOps commit per step. Each step is
    observed for canary.interval seconds, checked against Prometheus, then advanced,
    held or rolled back. At 100 % the version takes the environment's alias.
    """


@canary.command("start")
@config_option
@to_option
@model_option
@click.option("--version", "version", default=None, help="Model version (default: as 'mlgate promote' chooses).")
@click.option("--alias", default=None, help="Start the version holding this alias instead.")
@database_option
@report_option
@output_option
def start(config_path: str, to: str, model: str | None, version: str | None, alias: str | None,
          database_url: str | None, report_path: str | None, output: str) -> None:
    """Start a canary of a model version in environment --to: write step 1.

    \b
    Refuses (exit 1) a version whose gates did not pass, that the required environment does
    not hold, or when another canary runs there. Outputs: canary_id, canary_status,
    canary_step, canary_percent, model_version.
    """
    from mlgate.flows.canary import start_canary
    from mlgate.core.errors import UsageError
    from mlgate.flows.promote import writer_for
    from mlgate.flows.promote import default_promotion_version
    from mlgate.flows.validate import pick_version

    if version is not None and alias is not None:
        raise click.UsageError("give --version or --alias, not both")
    project = _project(config_path, model)
    try:
        env = project.config.environment(to)
    except KeyError as e:
        raise UsageError(str(e.args[0])) from None
    if version is None and alias is None:
        version, alias = default_promotion_version(project, env)
    info = pick_version(project, version, alias)
    store = _store(database_url, project.base_dir)
    writer = writer_for(env.gitops.mode, config_file=project.config_name)
    result = start_canary(store, project.registry, writer, _clock, config=project.config,
                          environment=to, version=info.version, base_dir=project.base_dir,
                          source={"by": "cli"}, actor=os.environ.get("GITHUB_ACTOR") or os.environ.get("GITLAB_USER_LOGIN")
                          or "cli")
    _emit([result], output, report_path)


@canary.command("step")
@config_option
@to_option
@model_option
@click.option("--version", "version", default=None, help="Check that the running canary is this version.")
@click.option("--wait/--no-wait", default=False, show_default=True,
              help="Sleep until the next measurement is due (at most --max-wait) instead of returning at once.")
@click.option("--max-wait", type=float, default=900.0, show_default=True, help="Seconds --wait may sleep.")
@database_option
@report_option
@output_option
def step(config_path: str, to: str, model: str | None, version: str | None, wait: bool, max_wait: float,
         database_url: str | None, report_path: str | None, output: str) -> None:
    """One tick of the running canary in --to: observe, decide, act.

    \b
    Writes a pending step, notices a merged step (pull-request mode), measures when a
    measurement is due and then advances, waits, holds or rolls back. Exit codes: 0 advanced,
    waiting or nothing due; 1 rolled back; 3 Prometheus/git/MLflow unreachable (held).
    """
    from mlgate.flows.canary import read_branch_file, tick, wait_until_due

    project = _project(config_path, model)
    store = _existing_store(database_url, project.base_dir, config_path)
    rec = _active(store, project.config.model, to, version)
    if wait:
        wait_until_due(rec, _clock, max_wait=max_wait)
    results = tick(store, project.registry, _LazyWriter(rec.settings.mode), _clock, canary_id=rec.id,
                   reader=read_branch_file, actor="cli")
    _emit(results, output, report_path)
    for res in results:
        if res.error is not None:
            raise res.error
        if res.action == "rolled_back" or res.canary.status in ("rolled_back", "rolling_back"):
            click.echo(f"mlgate: the canary of {res.canary.label} was rolled back: {res.canary.reason}", err=True)
            raise SystemExit(1)


@canary.command("status")
@click.option("--config", "-c", "config_path", default=".mlgate.yml", show_default=True, envvar="MLGATE_CONFIG",
              type=click.Path(dir_okay=False), help="Path of the repository config (used to find the database).")
@click.option("--to", "to", default=None, help="Only this environment.")
@model_option
@click.option("--version", "version", default=None, help="Only this model version.")
@click.option("--all", "show_all", is_flag=True, help="Also list finished canaries (promoted, rolled back, aborted).")
@database_option
@output_option
def status(config_path: str, to: str | None, model: str | None, version: str | None, show_all: bool,
           database_url: str | None, output: str) -> None:
    """Every running canary (with --all, finished ones too): step, traffic, latest reason."""
    from mlgate.core.canary import status_line

    base = Path(config_path).resolve().parent
    store = _existing_store(database_url, base, config_path)
    records = [] if store is None else store.list(active_only=not show_all, model=model, environment=to, limit=1000)
    if version is not None:
        records = [r for r in records if r.version == str(version)]
    if output == "json":
        emit_json([_record_json(r) for r in records])
        return
    if not records:
        click.echo("no running canary" if not show_all else "no canary")
        return
    for r in records:
        click.echo(f"#{r.id} {r.label} (primary v{r.primary_version}) {status_line(r)}")


def _stop(kind: str, config_path: str, to: str, model: str | None, version: str | None, reason: str,
          database_url: str | None, report_path: str | None, output: str) -> Any:
    from mlgate.flows import canary as canary_runner

    project = _project(config_path, model)
    store = _existing_store(database_url, project.base_dir, config_path)
    rec = store.find_active(project.config.model, to) if store is not None else None
    if rec is None and kind == "rollback" and store is not None:
        last = store.latest(project.config.model, to)
        if last is not None and last.status == "aborted":
            rec = last  # an aborted canary may still be rolled back
    if rec is None or (version is not None and rec.version != str(version)):
        rec = _active(store, project.config.model, to, version)  # raises the explanatory UsageError
    actor = os.environ.get("GITHUB_ACTOR") or os.environ.get("GITLAB_USER_LOGIN") or "cli"
    fn = canary_runner.rollback if kind == "rollback" else canary_runner.abort
    result = fn(store, project.registry, _LazyWriter(rec.settings.mode), _clock, rec.id, reason=reason, actor=actor)
    _emit([result], output, report_path)
    _close_unmerged_steps(result.canary, f"{'rolled back' if kind == 'rollback' else 'aborted'} by {actor} with "
                                         f"`mlgate canary {kind}`")
    if result.error is not None:
        raise result.error


def _close_unmerged_steps(record: Any, why: str) -> None:
    """Pull-request mode: close the step PRs/MRs the stopped canary opened that were never merged
    (merging one later would send traffic to the canary again); report each on stderr."""
    from mlgate.bot.promotion import close_unmerged_steps, unmerged_steps

    if record.settings.mode != "pull-request" or not unmerged_steps(record):
        return
    try:
        from mlgate.edge.forges import forge_from_env
        from mlgate.edge.forges.base import repo_path

        repo = repo_path(record.settings.repository)
        forge = forge_from_env(record.settings.repository)
    except Exception as e:  # no forge credentials here: say what is left to do
        for s in unmerged_steps(record):
            click.echo(f"mlgate: step {s.index + 1} ({s.percent} %) {s.url} is still open ({e}): close it by hand, "
                       "do not merge it", err=True)
        return
    for _step, _outcome, line in close_unmerged_steps(forge, repo, record, why):
        click.echo(f"mlgate: {line.removeprefix('- ')}", err=True)


def _stop_command(kind: str, summary: str) -> click.Command:
    """``mlgate canary abort`` and ``rollback``: the same options, one action each."""

    @config_option
    @to_option
    @model_option
    @click.option("--version", "version", default=None, help="Check that the running canary is this version.")
    @click.option("--reason", default="", help="Why, recorded with the canary and on the model version.")
    @database_option
    @report_option
    @output_option
    def run(config_path: str, to: str, model: str | None, version: str | None, reason: str,
            database_url: str | None, report_path: str | None, output: str) -> None:
        _stop(kind, config_path, to, model, version, reason, database_url, report_path, output)

    run.__doc__ = summary
    return canary.command(kind)(run)


abort_cmd = _stop_command(
    "abort", "Stop driving the running canary in --to, leaving the manifest as it is (a person takes over).")
rollback_cmd = _stop_command(
    "rollback", "Roll the canary in --to back now: traffic to the primary, the canary's model removed.")


@canary.command("continue")
@config_option
@to_option
@model_option
@click.option("--version", "version", default=None, help="Check that the paused canary is this version.")
@database_option
@report_option
@output_option
def continue_cmd(config_path: str, to: str, model: str | None, version: str | None, database_url: str | None,
                 report_path: str | None, output: str) -> None:
    """Go on with the paused canary in --to (an inconclusive analysis, query errors, or a step with
    confirm: true): write its next step. The same as /continue on the pull request."""
    from mlgate.flows import canary as canary_runner  # lazily: the flows import the registry client

    project = _project(config_path, model)
    store = _existing_store(database_url, project.base_dir, config_path)
    rec = store.find_active(project.config.model, to) if store is not None else None
    if rec is None or (version is not None and rec.version != str(version)):
        rec = _active(store, project.config.model, to, version)  # raises the explanatory UsageError
    actor = os.environ.get("GITHUB_ACTOR") or os.environ.get("GITLAB_USER_LOGIN") or "cli"
    result = canary_runner.continue_canary(store, project.registry, _LazyWriter(rec.settings.mode), _clock, rec.id,
                                           actor=actor)
    _emit([result], output, report_path)
    if result.error is not None:
        raise result.error
