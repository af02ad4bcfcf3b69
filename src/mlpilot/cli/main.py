"""Entry point: ``mlpilot <group> <command>``. Every error becomes one line on stderr and a non-zero exit."""

from __future__ import annotations

import sys
from typing import Any

import click

from mlpilot.errors import MlpilotError

__all__ = ["cli", "main"]


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except MlpilotError as exc:
            click.echo(f"error: {exc.message}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mlpilot")
def cli() -> None:
    """mlpilot: track, register, serve, roll out and monitor models, and close the loop."""


def _register() -> None:
    import importlib

    # One module per command group; each lists its commands in COMMANDS.
    for name in ("server", "serve", "runs", "models", "tokens", "deploy", "demo", "monitor", "features"):
        module = importlib.import_module(f"mlpilot.cli.{name}")
        for command in module.COMMANDS:
            cli.add_command(command)


_register()


def main(argv: list[str] | None = None) -> None:
    cli.main(args=argv if argv is not None else sys.argv[1:], prog_name="mlpilot")
