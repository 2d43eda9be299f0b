"""``slipway token …`` (API tokens of the receiver) and ``slipway build …`` (build records).

Thin typer + rich layer; the rules live in :mod:`starter.service.tokens` and
:mod:`starter.service.builds`.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from schemas.scopes import TokenScope
from schemas.settings import get_settings
from starter.cli.console import command_store, console
from starter.service import builds
from starter.service import tokens as api_tokens
from starter.service.identity import current_user

token_cli = typer.Typer(no_args_is_help=True,
                        help="Create and revoke API tokens for the HTTP receiver.")
build_cli = typer.Typer(no_args_is_help=True,
                        help="List, show and delete builds (deleting removes the image).")

BuildId = Annotated[int, typer.Argument(metavar="ID", help="Build id (see `build list APP`).",
                                        show_default=False)]


@token_cli.command("create")
def token_create(
    user: Annotated[str, typer.Argument(metavar="USER", help="Who the token acts as.",
                                        show_default=False)],
    name: Annotated[str, typer.Option(help="Token name (default: the user).")] = "",
    role: Annotated[list[str] | None, typer.Option(
        "--role", metavar="ROLE", show_default=False,
        help="What the token may do, repeatable: read, release, approve, lane-admin, "
             "freeze-admin (lift freezes), break-glass (release through a freeze), admin "
             "(applications, environments, policies, tokens; --as). Default: read, release, "
             "approve.")] = None,
    app: Annotated[list[str] | None, typer.Option(
        "--app", metavar="APP", show_default=False,
        help="Limit the token to this application, repeatable (with --team: these and the "
             "team's). The server and the worker refuse it for any other "
             "application: its releases, approvals, lanes and freezes.")] = None,
    team: Annotated[list[str] | None, typer.Option(
        "--team", metavar="TEAM", show_default=False,
        help="Limit the token to the applications of this team (`app register --team`), "
             "now and later; repeatable. Without --app or --team: every application.")
        ] = None,
) -> None:
    """Create a token for USER and print it once: it is stored only as a hash. Its roles say
    what it may do; --app and --team limit on which applications."""
    with command_store() as store:
        token_name, token = api_tokens.create_token(store, user, name, actor=current_user(),
                                                    roles=role, apps=app, teams=team)
        scope = TokenScope(frozenset(app or ()), frozenset(team or ()))
    console.print(f"token {token_name} for {user}, for {scope.describe()} (shown once, keep "
                  "it safe):", highlight=False)
    # Plain print: no markup or wrapping may alter the secret.
    print(token)


@token_cli.command("revoke")
def token_revoke(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Token name.", show_default=False)],
) -> None:
    """Revoke the active token NAME; requests with it get 401 from now on."""
    with command_store() as store:
        api_tokens.revoke_token(store, name, actor=current_user())
    console.print(f"revoked token {name}", highlight=False)


@build_cli.command("list")
def build_list(
    app: Annotated[str, typer.Argument(metavar="APP", help="Application.", show_default=False)],
) -> None:
    """List an application's builds, newest first."""
    with command_store() as store:
        rows = builds.list_builds(store, app)
    if not rows:
        console.print(f"{app} has no builds", highlight=False)
        return
    table = Table()
    # Ids and versions are what people copy into the next command: never cut them short.
    for header in ("id", "version"):
        table.add_column(header, no_wrap=True)
    for header in ("image", "digest", "ref", "created"):
        table.add_column(header)
    for build in rows:
        # A short digest fits a terminal; `build show ID` has the full one.
        digest = build.digest[:19] if build.digest else "-"
        table.add_row(str(build.id), build.version_label, build.image, digest,
                      build.ref or "-", build.created_at.strftime("%Y-%m-%d %H:%M"))
    console.print(table)


@build_cli.command("show")
def build_show(build_id: BuildId) -> None:
    """Show one build: image, digest, source ref and the baselines that run it."""
    with command_store() as store:
        view = builds.show_build(store, build_id)
    build = view.build
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    for label, value in (("build", str(build.id)), ("app", view.app),
                         ("version", build.version_label), ("image", build.image),
                         ("digest", build.digest or "-"), ("ref", build.ref or "-"),
                         ("note", build.note or "-"), ("workflow", build.workflow_id or "-"),
                         ("baselines", ", ".join(view.baselines) or "-"),
                         ("created", build.created_at.strftime("%Y-%m-%d %H:%M:%S"))):
        grid.add_row(label, value)
    console.print(grid)


@build_cli.command("delete")
def build_delete(build_id: BuildId) -> None:
    """Delete a build: its manifest in the registry, then its record. Refused while a
    baseline references it."""
    with command_store() as store:
        done = builds.delete_build(store, get_settings(), build_id, actor=current_user())
    console.print(f"build {build_id}: {done}", highlight=False, soft_wrap=True)
