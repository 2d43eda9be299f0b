"""Root of the ``slipway`` / ``python -m starter`` command line (typer + rich)."""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import traceback
from collections.abc import Callable
from typing import Any

import typer
from typer import _click as click

from catalogue.store import CatalogueError
from starter.cli import controls as cli_controls
from starter.cli import release as cli_release
from starter.cli import serve as cli_serve
from starter.cli import stack as cli_stack
from starter.cli.analysis import analysis_cli, release_show
from starter.cli.build import build_cli, token_cli
from starter.cli.catalogue import app_cli, env_cli
from starter.cli.change import baseline_cli, change_cli
from starter.cli.console import fail
from starter.cli.freeze import freeze_cli
from starter.cli.host import host_cli
from starter.cli.insights import insights_command
from starter.cli.lane import lane_cli
from starter.cli.rejected import rejected_cli, resume_auto_command
from starter.cli.release import release_cli
from starter.cli.schedule import schedules_cli
from starter.cli.teardown import env_remove
from starter.cli.train import train_cli
from starter.cli.worker import worker_cli
from starter.service.identity import current_session, current_user

EXIT_STATUSES = (
    "Exit status: 0 done (`release` without --wait: 0 once the release has started); "
    "1 refused or failed, with the reason on stderr; 2 usage error."
)

cli = typer.Typer(
    name="slipway",
    help="Slipway: durable releases and swimlanes on Temporal.",
    epilog=EXIT_STATUSES,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
cli.add_typer(app_cli, name="app", help="Register, inspect and retire applications.")
cli.add_typer(env_cli, name="env", help="Add, inspect and remove an application's environments.")
env_cli.command("remove")(env_remove)
env_cli.command("resume-auto")(resume_auto_command)
cli.add_typer(change_cli, name="change",
              help="Create, submit and close changes (what a release carries out).")
cli.add_typer(baseline_cli, name="baseline", help="List and compare an environment's baselines.")
cli.add_typer(release_cli, name="release",
              help="Release APP ENV (`slipway release APP ENV [OPTIONS]`), or `release "
                   "history` / `release show`.")
release_cli.command("show")(release_show)
cli.add_typer(analysis_cli, name="analysis",
              help="Canary analysis: an environment's policy, and running it now.")
cli.command()(cli_release.status)
for control in (cli_controls.approve, cli_controls.reject, cli_controls.promote,
                cli_controls.promote_full, cli_controls.pause, cli_controls.resume,
                cli_controls.abort, cli_controls.rollback):
    # promote_full → promote-full
    cli.command(control.__name__.replace("_", "-"))(control)
cli.command()(cli_stack.demo)
cli.command()(cli_stack.dev)
cli.command()(cli_stack.up)
cli.command()(cli_stack.down)
cli.command()(cli_serve.server)
cli.command()(cli_serve.agent)
cli.add_typer(freeze_cli, name="freeze",
              help="Freezes and deploy windows; `freeze now` for an incident.")
cli.add_typer(train_cli, name="train",
              help="Release trains: several applications together under one approval.")
cli.add_typer(lane_cli, name="lane",
              help="Swimlanes: isolated environments for one iteration, with an idle TTL.")
cli.add_typer(schedules_cli, name="schedules", help="Temporal Schedules (the lane janitor).")
cli.add_typer(token_cli, name="token", help="Create and revoke API tokens for the HTTP receiver.")
cli.add_typer(rejected_cli, name="rejected",
              help="Versions a rollback rejected: list them, or clear one.")
cli.add_typer(host_cli, name="host",
              help="Docker hosts of the clusters: list, cordon, uncordon, drain.")
cli.add_typer(worker_cli, name="worker",
              help="Builds of the orchestration workers: versions, promote, rollback.")
cli.add_typer(build_cli, name="build",
              help="List, show and delete builds (deleting removes the image).")
cli.command("insights")(insights_command)


@cli.callback()
def _root() -> None:
    # Outside a server session SLIPWAY_USER names the operator: refuse a bad one before any
    # command runs.
    if current_session() is None and os.environ.get("SLIPWAY_USER"):
        try:
            current_user()
        except CatalogueError as error:
            fail(str(error))


Guard = Callable[[str, dict[str, Any]], None]


def _guard_leaves(command: click.Command, path: list[str], guard: Guard | None) -> None:
    """Wrap every leaf command's callback so that ``guard(path, params)`` runs first, after
    its arguments are parsed (so --help and usage errors need no role)."""
    subcommands = getattr(command, "commands", None)
    if subcommands is not None:
        for name, sub in subcommands.items():
            _guard_leaves(sub, [*path, name], guard)
        return
    # The tree is built once per process (command_tree), so wrap the original callback.
    original = command.__dict__.setdefault("slipway_callback", command.callback)
    if original is None:
        return
    leaf = " ".join(path)

    def guarded(*args: Any, **params: Any) -> Any:
        if guard is not None:
            guard(leaf, params)
        return original(*args, **params)

    command.callback = guarded


@functools.cache
def _built_tree() -> click.Command:
    # Building it from typer's annotations takes ~0.1 s: once per process (the server's
    # command processes inherit it built, from their forkserver).
    return typer.main.get_command(cli)


def command_tree(guard: Guard | None = None) -> click.Command:
    """The click command of the whole ``slipway`` tree; with ``guard``, each leaf checks it
    first (the server's authorization of the command it runs), else none does."""
    tree = _built_tree()
    _guard_leaves(tree, [], guard)
    return tree


def run(args: list[str], guard: Guard | None = None) -> int:
    """Run one command as the ``slipway`` program would; return its exit status."""
    try:
        command_tree(guard).main(args=args, prog_name="slipway")
    except SystemExit as exit_:
        if exit_.code is None or isinstance(exit_.code, int):
            return exit_.code or 0
        print(exit_.code, file=sys.stderr)
        return 1
    except BaseException:  # a bug: show it, and still leave without finalization
        traceback.print_exc()
        return 1
    return 0


def main() -> None:
    """Process entry point of ``slipway`` and ``python -m starter``.

    The Temporal SDK's Rust threads can outlive the event loop of a short-lived client
    process, and CPython's finalization then aborts (SIGABRT, status 134) after the command
    has done its work (sdk-python issue 300). So the process ends here, with the command's
    own status, once its output is flushed, without running interpreter teardown.
    """
    code = run(sys.argv[1:])
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)
