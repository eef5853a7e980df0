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

    try:
        cfg = load_file(file)
    except ConfigError as e:
        if output == "json":
            emit_json({"file": file, "valid": False, "problems": [p.__dict__ for p in e.problems]})
            raise SystemExit(2)
        raise
    if output == "json":
        emit_json({"file": file, "valid": True, "model": cfg.model,
                   "gates": len(cfg.validate_.gates), "environments": [e.name for e in cfg.environments]})
    else:
        envs = ", ".join(e.name for e in cfg.environments) or "none"
        click.echo(f"{file}: ok (model {cfg.model}, {len(cfg.validate_.gates)} gates, environments: {envs})")


@click.command("schema")
@click.option("--bot", is_flag=True, help="Print the schema of bot.yml instead of .mlgate.yml.")
def schema(bot: bool) -> None:
    """Print the JSON Schema of .mlgate.yml (or bot.yml with --bot)."""
    if bot:
        from mlgate.bot.settings import json_schema as bot_schema

        click.echo(json.dumps(bot_schema(), indent=2))
        return
    from mlgate.core.config import json_schema

    click.echo(json.dumps(json_schema(), indent=2))
