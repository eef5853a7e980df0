"""Options and output helpers shared by the CLI commands."""

from __future__ import annotations

import json
import math
import os
from typing import Any, Callable, Mapping

import click

from mlgate.core.ci import github_output_lines

config_option = click.option(
    "--config", "-c", "config_path", default=".mlgate.yml", show_default=True, envvar="MLGATE_CONFIG",
    type=click.Path(dir_okay=False), help="Path of the repository config (env MLGATE_CONFIG).",
)
output_option = click.option(
    "--output", "-o", "output", type=click.Choice(["text", "json"]), default="text", show_default=True,
    help="text for people, json for machines.",
)


def write_github_output(outputs: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> None:
    """Append ``key=value`` lines to ``$GITHUB_OUTPUT`` when it is set (GitHub Actions)."""
    env = os.environ if environ is None else environ
    path = env.get("GITHUB_OUTPUT")
    if not path:
        return
    text = github_output_lines({k: "" if v is None else str(v).lower() if isinstance(v, bool) else str(v)
                                for k, v in outputs.items()})
    try:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(text)
    except OSError as e:
        from mlgate.core.errors import UsageError

        raise UsageError(f"cannot write outputs to $GITHUB_OUTPUT ({path}): {e.strerror}") from None


def check_github_output(environ: Mapping[str, str] | None = None) -> None:
    """Make sure ``$GITHUB_OUTPUT`` (when set) can be appended to, before anything is written.

    Opens the file for append (GitHub Actions creates it; appending nothing leaves it as it is),
    so that a bad path fails before the manifest changes rather than after.

    Raises:
        UsageError: the file cannot be opened for append (exit 2), naming the path and the reason.
    """
    from mlgate.core.errors import UsageError

    env = os.environ if environ is None else environ
    path = env.get("GITHUB_OUTPUT")
    if not path:
        return
    try:
        with open(path, "a", encoding="utf-8"):
            pass
    except OSError as e:
        raise UsageError(
            f"$GITHUB_OUTPUT ({path}) cannot be opened for append: {e.strerror or e}; nothing was written. "
            "Unset GITHUB_OUTPUT or point it at a writable file"
        ) from None


def emit_json(data: Any) -> None:
    """Print ``data`` as strict JSON (RFC 8259): a NaN or infinite float is written as null
    (the command's own output says why where it matters, e.g. a gate's ``not_finite``)."""
    click.echo(json.dumps(_strict(data), indent=2, sort_keys=False, default=str, allow_nan=False))


def _strict(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    return value


def info_printer(output: str) -> Callable[[str], None]:
    """Progress lines go to stderr when stdout carries JSON, else to stdout."""
    if output == "json":
        return lambda msg: click.echo(msg, err=True)
    return lambda msg: click.echo(msg)

model_option = click.option(
    "--model", "model", default=None,
    help="Registered model name (default: 'model' in the config).",
)
