"""``mlgate doctor``: is everything a promotion needs wired up? (read-only)."""

from __future__ import annotations

import sys

import click

from mlgate.cli.common import emit_json, output_option


@click.command("doctor")
@click.option("--config", "-c", "config_path", default=".mlgate.yml", show_default=True, envvar="MLGATE_CONFIG",
              type=click.Path(dir_okay=False), help="Path of the repository config (env MLGATE_CONFIG).")
@click.option("--env", "env", default=None, help="Check only this environment (default: all).")
@output_option
def doctor(config_path: str, env: str | None, output: str) -> None:
    """Check, reading only, what a promotion will use: the config, the tracking server, the
    registered model, and per environment the GitOps repository (with the credentials the
    promotion uses), its branch, the file, the target key, and in pull-request mode the token's
    right to open a PR/MR; Prometheus and the Argo Server when the config uses them.

    \b
    Exit codes: 0 every check passed; 1 a check failed (✗: its fix is printed under it);
    3 nothing failed but some check could not tell (?: a timeout, a 5xx, a rate limit);
    2 usage (an unknown --env).
    """
    # lazily: the flow imports the edges (httpx, git, forges) only as the checks need them
    from mlgate.core import doctor as core
    from mlgate.flows import doctor as flow

    checks = flow.check(config_path, env=env, config_name=config_path)
    if output == "json":
        emit_json(core.to_json(checks))
    else:
        click.echo(core.render_text(checks, heading=f"mlgate doctor ({config_path})"), nl=False)
    sys.exit(core.exit_code(checks))
