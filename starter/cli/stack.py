"""``slipway dev|up|down|demo``: the embedded stack and the end-to-end demo."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from schemas.settings import get_settings
from starter.cli.console import catalogue_errors, command_store, console, fail, open_store
from starter.cli.demo import DemoError, run_demo
from starter.service.in_flight import in_flight
from starter.stack import processes as stack
from starter.stack.server import ensure_local_login, server_url, start_server


def dev() -> None:
    """Run Temporal (Web UI on :8233) and a worker in the foreground until Ctrl-C."""
    try:
        code = stack.run_foreground(get_settings())
    except stack.StackError as error:
        fail(str(error))
    raise typer.Exit(code)


def up() -> None:
    """Start the embedded stack in the background: Temporal dev server, worker and the
    server on loopback; on first start, log this machine's user in with every role."""
    settings = get_settings()
    try:
        stack.start_temporal(settings, background=True)
        stack.start_worker(settings, background=True)
        start_server(settings)
    except stack.StackError as error:
        fail(str(error))
    with command_store() as store:
        login = ensure_local_login(settings, store)
    console.print(f"Temporal at {settings.temporal_address}, Web UI {settings.temporal_ui_url}",
                  highlight=False)
    console.print(f"server at {server_url(settings)}; {login}", highlight=False)
    console.print(f"logs in {stack.log_dir(settings)}; stop with `slipway down`", highlight=False)


def down(
    force: Annotated[bool, typer.Option(
        "--force", help="Stop even while releases or lanes are in flight (they wait, durably, "
                        "and resume at the next `slipway up`).")] = False,
) -> None:
    """Stop the embedded stack: server, worker, load balancers, Temporal dev server.

    Refuses while a release or a lane workflow runs, naming them, unless --force.
    """
    settings = get_settings()
    if not force:
        running = asyncio.run(in_flight(settings))
        if running:
            fail("refusing to stop the stack while these are in flight:\n  "
                 + "\n  ".join(running)
                 + "\nwait for them (`slipway status APP ENV`), or stop anyway with "
                   "`slipway down --force`: they resume at the next `slipway up`, but their "
                   "environments stop serving until then")
    stopped = stack.stop_stack(settings)
    console.print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))


def demo() -> None:
    """Release the sample app twice on the embedded stack and show what it serves."""
    store = open_store()
    with catalogue_errors():
        try:
            run_demo(get_settings(), store)
        except (DemoError, stack.StackError) as error:
            fail(str(error))
