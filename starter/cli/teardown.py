"""``slipway env remove``, and the teardowns ``slipway app retire`` starts when it takes an
application offline."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from catalogue.store import CatalogueError
from schemas.settings import get_settings
from schemas.teardown import TeardownOutcome
from starter.cli.console import catalogue_errors, command_store, console
from starter.service import teardown
from starter.service.identity import current_user
from starter.service.temporal_client import connect

Wait = Annotated[bool, typer.Option(
    "--wait/--no-wait", help="Wait until the teardown is done (default), or return once it "
                             "has started.")]


def _done(result: TeardownOutcome) -> str:
    versions = ", ".join(f"v{v}" for v in result.versions) or "nothing was running"
    return f"removed {result.app} {result.env} (torn down: {versions})"


def env_remove(
    app: Annotated[str, typer.Argument(help="Application name, e.g. shop.", metavar="APP",
                                       show_default=False)],
    env: Annotated[str, typer.Argument(
        help="Environment as TYPE@CLUSTER, or just TYPE when only one cluster has it.",
        metavar="ENV", show_default=False)],
    wait: Wait = True,
) -> None:
    """Tear an environment down and mark it removed; its history stays readable.

    Drains its instances, stops and removes every version (containers; on Kubernetes the
    Deployments and the Service), removes its load balancer, then marks it removed in the
    catalogue (audit event env.removed). Releases, baselines and audit trail are kept.

    Refused while a release of the environment runs. A durable workflow does the work
    (teardown:APP:ENV); running the command again after a failure continues where it stopped.
    """
    settings = get_settings()
    actor = current_user()
    with command_store() as store:
        target = teardown.env_to_remove(store, app, env)
    if target.removed:
        console.print(f"{target.app} {target.env} was already removed {target.removed}: "
                      "nothing to do", highlight=False)
        return

    async def run() -> TeardownOutcome | None:
        client = await connect(settings)
        started = await teardown.remove_env(client, settings, target, actor, "env remove")
        console.print(f"removing {target.app} {target.env}: workflow {started.handle.id} "
                      f"{started.link}", highlight=False)
        return await teardown.outcome(started) if wait else None

    with catalogue_errors():
        result = asyncio.run(run())
    if result is not None:
        console.print(_done(result), highlight=False)


def check_retire(app: str, envs: list[str]) -> None:
    """Before ``app retire`` takes ``app`` offline: Temporal must answer and no release of
    its environments may run (CatalogueError otherwise; nothing is written yet)."""
    settings = get_settings()

    async def run() -> None:
        client = await connect(settings)
        await teardown.refuse_running_releases(client, settings, app, envs)

    asyncio.run(run())


def tear_down_retired(app: str, envs: list[str], wait: bool) -> None:
    """Start the teardown of every environment of an application that went offline."""
    settings = get_settings()
    actor = current_user()

    async def run() -> list[TeardownOutcome]:
        client = await connect(settings)
        started = []
        for env in envs:
            started.append(await teardown.remove_env(
                client, settings, teardown.EnvToRemove(app, env), actor, "app retired"))
            console.print(f"removing {app} {env}: workflow {started[-1].handle.id} "
                          f"{started[-1].link}", highlight=False)
        if not wait:
            return []
        return list(await asyncio.gather(*(teardown.outcome(each) for each in started)))

    try:
        results = asyncio.run(run())
    except CatalogueError as error:
        raise CatalogueError(
            f"{app} is offline, but tearing down its environments did not finish: {error}. "
            f"Finish with `slipway env remove {app} ENV` for each of {', '.join(envs)}"
        ) from error
    for result in results:
        console.print(_done(result), highlight=False)
