"""``mlgate config check`` and ``mlgate schema``."""

from __future__ import annotations

import json

import click

from mlgate.cli.common import emit_json, output_option


@click.group("config")
def config() -> None:
    """Check the repository config (.mlgate.yml)."""


@config.command("check")
@click.argument("file", default=None, required=False, type=click.Path(dir_okay=False))
@click.option("--config", "-c", "config_path", default=None, envvar="MLGATE_CONFIG", type=click.Path(dir_okay=False),
              help="The config to check, as the other commands take it (same as FILE; env MLGATE_CONFIG).")
@output_option
def check(file: str | None, config_path: str | None, output: str) -> None:
    """Validate FILE (or -c FILE; default .mlgate.yml).

    Prints FILE:LINE:COL: message for every problem and exits 2; exits 0 when valid.
    """
    from mlgate.core.config import load_file
    from mlgate.core.errors import ConfigError

    given = click.get_current_context().get_parameter_source("config_path") == click.core.ParameterSource.COMMANDLINE
    if file is not None and config_path is not None and file != config_path and given:
        raise click.UsageError(f"give the config once: FILE {file!r} or -c {config_path!r}")
    file = file or config_path or ".mlgate.yml"

    warnings: list[str] = []
    try:
        cfg = load_file(file)
        _check_gate_metrics(cfg, file, warnings)
    except ConfigError as e:
        if output == "json":
            emit_json({"file": file, "valid": False, "problems": [p.__dict__ for p in e.problems],
                       "warnings": warnings})
            raise SystemExit(2)
        raise
    for w in warnings if output != "json" else ():
        click.echo(f"{file}: warning: {w}", err=True)
    if output == "json":
        emit_json({"file": file, "valid": True, "model": cfg.model,
                   "gates": len(cfg.validate_.gates), "environments": [e.name for e in cfg.environments],
                   "warnings": warnings})
    else:
        envs = ", ".join(e.name for e in cfg.environments) or "none"
        click.echo(f"{file}: ok (model {cfg.model}, {len(cfg.validate_.gates)} gate{'' if len(cfg.validate_.gates) == 1 else 's'}, environments: {envs})")


def _check_gate_metrics(cfg, file: str, warnings: list[str]) -> None:
    """With ``validate.evaluation``: every gate's metric must be a name the installed MLflow's
    evaluator produces for the model type (ConfigError otherwise). Offline: the names come from
    running the evaluator locally once per MLflow version (:mod:`mlgate.edge.evaluator`); without
    full MLflow the check is skipped with a warning appended to ``warnings``."""
    ev = cfg.validate_.evaluation
    if ev is None or not cfg.validate_.gates:
        return
    from mlgate.core.config import load_yaml_mapping, read_user_file
    from mlgate.core.config.gatenames import gate_metric_problems
    from mlgate.core.errors import ConfigError
    from mlgate.edge.evaluator import EvaluatorUnavailable, produced_metrics

    try:
        cases = produced_metrics([ev.model_type], log=lambda m: click.echo(m, err=True))[ev.model_type]
    except EvaluatorUnavailable as e:
        warnings.append(f"gate metric names were not checked against the {ev.model_type} evaluation: {e}")
        return
    names = {ev.model_type: set().union(*cases.values())}
    problems = gate_metric_problems(cfg, load_yaml_mapping(read_user_file(file), file), file, names)
    if problems:
        raise ConfigError(problems)


@config.command("metrics")
@click.option("--model-type", "model_types", multiple=True, type=click.Choice(["classifier", "regressor"]),
              help="Only this validate.evaluation.model_type (repeatable; default: all).")
@output_option
def metrics(model_types: tuple[str, ...], output: str) -> None:
    """List the metric names mlflow.models.evaluate produces per model type (the names gates may
    use with validate.evaluation), read from the installed MLflow (README "Gates" lists them)."""
    from mlgate.core.config.gatenames import markdown
    from mlgate.core.errors import UsageError
    from mlgate.edge.evaluator import CASES, EvaluatorUnavailable, produced_metrics

    try:
        produced = produced_metrics(model_types or list(CASES))
    except EvaluatorUnavailable as e:
        raise UsageError(f"cannot list the evaluator's metric names: {e}") from None
    if output == "json":
        emit_json(produced)
    else:
        click.echo(markdown(produced), nl=False)


@config.command("extras")
@click.option("--config", "-c", "config_path", default=".mlgate.yml", envvar="MLGATE_CONFIG",
              type=click.Path(dir_okay=False), show_default=True, help="The repository config (env MLGATE_CONFIG).")
def extras(config_path: str) -> None:
    """Print the pip extras of mlgate that the config needs, comma separated (an empty line: none).

    `local` when the tracking URI ($MLFLOW_TRACKING_URI, else tracking_uri; default the embedded
    SQLite store) is a store MLflow runs in-process (sqlite, a database, file); `evaluate` when
    validate.evaluation is set. The CI setup installs `mlgate[EXTRAS]` from it. Offline; exit 2 on
    a config error (FILE:LINE:COL: message).
    """
    import os

    from mlgate.core.config import load_file
    from mlgate.core.config.extras import needed_extras

    click.echo(",".join(needed_extras(load_file(config_path), os.environ.get("MLFLOW_TRACKING_URI"))))


@click.command("schema")
@click.option("--bot", is_flag=True, help="Print the schema of bot.yml instead of .mlgate.yml.")
@click.option("--explain-facts", "facts", is_flag=True, help="Print the schema of `mlgate bot explain --facts FILE`.")
def schema(bot: bool, facts: bool) -> None:
    """Print the JSON Schema of .mlgate.yml (or bot.yml with --bot, the explain facts file with --explain-facts)."""
    if facts:
        from mlgate.bot.explain_facts import json_schema as facts_schema

        click.echo(json.dumps(facts_schema(), indent=2))
        return
    if bot:
        from mlgate.bot.settings import json_schema as bot_schema

        click.echo(json.dumps(bot_schema(), indent=2))
        return
    from mlgate.core.config import json_schema

    click.echo(json.dumps(json_schema(), indent=2))
