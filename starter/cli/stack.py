"""``slipway dev|up|down|demo``: the embedded stack and the end-to-end demo."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from schemas.settings import Settings, get_settings
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
    """Start the embedded stack in the background: Temporal dev server, the orchestration
    worker, a host agent for the local engine and the server on loopback; on first start,
    log this machine's user in with every role."""
    settings = get_settings()
    serving = stack.load_balancers(settings)
    try:
        stack.start_temporal(settings, background=True)
        stack.start_worker(settings, background=True)
        stack.start_agents(settings, background=True)
        start_server(settings)
    except stack.StackError as error:
        fail(str(error))
    with command_store() as store:
        login = ensure_local_login(settings, store)
    console.print(f"Temporal at {settings.temporal_address}, Web UI {settings.temporal_ui_url}",
                  highlight=False)
    console.print(f"server at {server_url(settings)}; {login}", highlight=False)
    console.print(worker_build_line(settings), highlight=False, soft_wrap=True)
    if serving:
        console.print(f"load balancers already serving, adopted as they are: "
                      f"{', '.join(serving)}", highlight=False, soft_wrap=True)
    console.print(f"logs in {stack.log_dir(settings)}; stop with `slipway down`", highlight=False)


def worker_build_line(settings: Settings) -> str:
    """What `up` says of the worker's build: the worker makes it current in its deployment as
    it starts (starter/stack/processes.py), so runs pinned to an earlier build wait for a
    worker of that build (docs/operations.md, "Upgrading Slipway")."""
    build = settings.worker_build()
    line = (f"worker build {build.value}, current in worker deployment "
            f"{settings.deployment_name()} (`slipway worker versions`)")
    return line + (f"; {build.note}" if build.note else "")


def down(
    force: Annotated[bool, typer.Option(
        "--force", help="Stop even while releases or lanes are in flight (they wait, durably, "
                        "and resume at the next `slipway up`).")] = False,
    applications: Annotated[bool, typer.Option(
        "--applications", help="Also stop every environment's load balancer (HAProxy): the "
                               "applications stop serving until the next `slipway up`, which "
                               "starts each one again with its servers (their containers "
                               "keep running).")] = False,
) -> None:
    """Stop Slipway: server, worker, Temporal dev server. The applications keep serving:
    every environment's load balancer stays up, and the next `slipway up` adopts it.

    With --applications the load balancers stop too. Refuses while a release or a lane
    workflow runs, naming them, unless --force.
    """
    settings = get_settings()
    if not force:
        running = asyncio.run(in_flight(settings))
        if running:
            meanwhile = ("their environments stop serving until then" if applications else
                         "their environments keep serving as they are meanwhile (a release "
                         "half-way keeps its traffic split)")
            fail("refusing to stop the stack while these are in flight:\n  "
                 + "\n  ".join(running)
                 + "\nwait for them (`slipway status APP ENV`), or stop anyway with "
                   f"`slipway down --force{' --applications' if applications else ''}`: they "
                   f"resume at the next `slipway up`; {meanwhile}")
    stopped = stack.stop_stack(settings)
    if applications:
        stopped += stack.stop_load_balancers(settings)
    console.print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"),
                  highlight=False, soft_wrap=True)
    serving = stack.load_balancers(settings)
    if serving:
        console.print(f"still serving: {len(serving)} load balancer(s) "
                      f"({', '.join(serving)}); `slipway down --applications` stops them too",
                      highlight=False, soft_wrap=True)


def demo() -> None:
    """Release the sample app twice on the embedded stack and show what it serves."""
    store = open_store()
    with catalogue_errors():
        try:
            run_demo(get_settings(), store)
        except (DemoError, stack.StackError) as error:
            fail(str(error))
