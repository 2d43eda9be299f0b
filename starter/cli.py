"""Root of the ``slipway`` / ``python -m starter`` command line (typer + rich)."""

from __future__ import annotations

import typer

from starter import cli_release, cli_stack
from starter.cli_catalogue import app_cli, env_cli

cli = typer.Typer(
    name="slipway",
    help="Slipway: durable releases and swimlanes on Temporal.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
cli.add_typer(app_cli, name="app", help="Register, inspect and retire applications.")
cli.add_typer(env_cli, name="env", help="Add and inspect an application's environments.")
cli.command()(cli_release.release)
cli.command()(cli_release.status)
cli.command()(cli_stack.demo)
cli.command()(cli_stack.dev)
cli.command()(cli_stack.up)
cli.command()(cli_stack.down)


def main() -> None:
    cli()
