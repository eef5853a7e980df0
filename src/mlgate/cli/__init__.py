"""The ``mlgate`` command line (click).

Subcommands are imported lazily (see :class:`LazyGroup`) so that ``mlgate --help``
never imports mlflow, sklearn or PyGithub. Expected failures (:class:`mlgate.core.errors.MlgateError`)
print one message and exit with the error's code; no traceback reaches the user.
"""

from __future__ import annotations

import importlib
import sys

import click

from mlgate import __version__

#: name -> "module:attribute"; modules are imported only when the command runs.
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("mlgate.cli.pipeline:train", "Start a tracked MLflow run, run the training command, register a model version."),
    "validate": ("mlgate.cli.pipeline:validate", "Check a model version against the metric gates (exit 1 when one fails)."),
    "promote": ("mlgate.cli.pipeline:promote", "Promote a model version to an environment through its GitOps repository."),
    "reconcile": ("mlgate.cli.reconcilecmd:reconcile", "Move each environment's alias to the model version git deploys."),
    "status": ("mlgate.cli.pipeline:status", "Show, per environment, the version that holds its alias."),
    "config": ("mlgate.cli.configcmd:config", "Check .mlgate.yml."),
    "doctor": ("mlgate.cli.doctorcmd:doctor", "Check, reading only, everything a promotion will use."),
    "schema": ("mlgate.cli.configcmd:schema", "Print the JSON Schema of .mlgate.yml (or bot.yml)."),
    "manifest": ("mlgate.cli.manifestcmd:manifest", "Minimal, format-preserving edits of YAML manifests."),
    "bot": ("mlgate.cli.botcmd:bot", "Run and inspect the GitOps bot."),
    "audit": ("mlgate.cli.botcmd:audit", "Export the bot's audit records."),
    "argo": ("mlgate.cli.argocmd:argo", "Submit and follow training on Argo Workflows."),
    "canary": ("mlgate.cli.canarycmd:canary", "Drive a canary rollout step by step."),
    "report": ("mlgate.cli.reportcmd:report", "Publish the gate report on the pull/merge request; CI outputs (dotenv, verdict)."),
}


class LazyGroup(click.Group):
    """A click group whose subcommands live in modules imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        spec = COMMANDS.get(cmd_name)
        if spec is None:
            return None
        target, help_text = spec
        if ctx.resilient_parsing or (len(sys.argv) > 1 and sys.argv[1] in ("--help", "-h")):
            # listing only: a stub with the short help, no import
            return click.Command(cmd_name, help=help_text, short_help=help_text)
        module, attr = target.split(":")
        _log_to_stderr()
        try:
            return getattr(importlib.import_module(module), attr)
        except ModuleNotFoundError as e:
            if e.name and e.name.startswith("mlgate"):
                return _unavailable(cmd_name, "is not implemented in this version")
            return _unavailable(cmd_name, f"needs the Python package {e.name!r}: pip install 'mlgate[bot]'")


def _log_to_stderr() -> None:
    """Library logs (structlog, e.g. stamina's retry warnings) go to stderr, keeping stdout for
    results (``--output json``). ``mlgate bot serve`` configures its own JSON logging."""
    import structlog

    if not structlog.is_configured():
        structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))


def _unavailable(name: str, why: str) -> click.Command:
    def run(args: tuple[str, ...] = ()) -> None:
        click.echo(f"mlgate {name}: {why}", err=True)
        sys.exit(2)

    return click.Command(
        name, callback=run, help=why,
        params=[click.Argument(["args"], nargs=-1, type=click.UNPROCESSED)],
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    )


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mlgate")
def cli() -> None:
    """Train, gate and promote ML models through CI and git.

    \b
    Exit codes: 0 success, 1 a gate failed or a promotion was refused,
    2 usage/config/manifest error, 3 infrastructure error (MLflow, git, Argo unreachable),
    70 internal error (a bug; MLGATE_DEBUG=1 shows the traceback); 'mlgate train' passes
    through the training command's own non-zero exit code.
    \b
    The main job, in order: train → validate → promote → status (reconcile keeps the
    registry in step with git when promotion PRs merge without the bot).
    """


def main() -> None:
    """Console-script entry point: runs :data:`cli` and maps expected errors to exit codes."""
    from mlgate.core.errors import MlgateError

    try:
        cli.main(standalone_mode=False)
    except MlgateError as e:
        click.echo(str(e), err=True)
        sys.exit(e.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(2 if isinstance(e, click.UsageError) else e.exit_code)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as e:  # a bug, not an expected failure: one line unless asked
        import os

        if os.environ.get("MLGATE_DEBUG"):
            raise
        click.echo(f"mlgate: internal error: {type(e).__name__}: {e} (set MLGATE_DEBUG=1 for the traceback; "
                   "please report it)", err=True)
        sys.exit(70)
