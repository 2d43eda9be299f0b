"""``slipway rejected``: the versions an application must not run again (a release of them
was rolled back), and ``slipway env resume-auto``: lift the hold on automatic releases that a
manual rollback puts on an environment."""

from __future__ import annotations

from typing import Annotated

import typer

from catalogue.holds import resume_auto
from catalogue.rejections import clear_rejected, describe, list_rejected
from starter.cli.console import command_store, console
from starter.cli.fit import FitTable
from starter.service.identity import current_user

rejected_cli = typer.Typer(
    no_args_is_help=True,
    help="Versions rejected by a rollback: refused by releases, hooks, trains and lane "
         "pushes unless a person releases them with --allow-rejected REASON.")

AppArg = Annotated[str, typer.Argument(metavar="APP", help="Application.", show_default=False)]
Reason = Annotated[str, typer.Option(help="Why (audited).", show_default=False)]


@rejected_cli.command("list")
def rejected_list(app: AppArg) -> None:
    """List APP's rejected versions, newest first: which release rejected each, when, why."""
    with command_store() as store:
        rows = list_rejected(store, app)
    if not rows:
        console.print(f"{app} has no rejected versions", highlight=False)
        return
    table = FitTable(f"rejected versions of {app}", notes_at="version")
    table.add_column("version", "fold")
    table.add_column("image", "fold")
    table.add_column("release")
    table.add_column("env")
    table.add_column("at", "wrap")
    table.add_column("why", "text")
    for row in rows:
        table.add_row(row.key, row.image or "-", str(row.release_id or "-"), row.env or "-",
                      row.rejected_at.strftime("%Y-%m-%d %H:%M"), row.reason or "-")
    console.print(table)


@rejected_cli.command("clear")
def rejected_clear(
    app: AppArg,
    version: Annotated[str, typer.Argument(metavar="DIGEST", show_default=False,
                                           help="The rejected digest (or image reference).")],
    reason: Reason = "",
) -> None:
    """Let a rejected version of APP be released again (audited with --reason)."""
    with command_store() as store:
        row = clear_rejected(store, app, version, reason, current_user())
    console.print(f"cleared: {describe(row, app)}", highlight=False)


def resume_auto_command(
    app: AppArg,
    env: Annotated[str, typer.Argument(metavar="ENV", show_default=False,
                                       help="Environment: type@cluster, or type alone.")],
    reason: Reason = "",
) -> None:
    """Resume automatic releases (hooks, trains) of APP on ENV after a manual rollback."""
    with command_store() as store:
        lifted = resume_auto(store, app, env, current_user(), reason)
    console.print(f"automatic releases of {app} {env} resume (the hold was: {lifted})",
                  highlight=False)
