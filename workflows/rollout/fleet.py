"""A release's runtime on Docker hosts with agents: each host's part on its agent's queue.

The workflow places replicas itself, from what each agent reports (``host_inventory``), so
every agent touches its own engine only: a step is one ``bring_up_on_host`` per host that
gets replicas (start them, wait until they answer, heartbeating its progress), then one
batched load-balancer change on the LB host's agent. Host activities have a schedule-to-start
timeout: an agent that is gone fails the step within it, and the release compensates.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from typing import Any, Protocol

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, TimeoutError, TimeoutType

with workflow.unsafe.imports_passed_through():
    from activities.agent import HostAgentActivities
    from activities.runtime import RuntimeActivities
    from schemas.hosts import HostBringUpInput, HostInventory, HostInventoryInput, TrimInput
    from schemas.models import (
        HealthCheckInput,
        Instance,
        ListVersionsInput,
        PlanHost,
        StartVersionInput,
        VersionRef,
        WatchHealthInput,
    )
    from schemas.placement import NoRoom, assign
    from workflows.policies import HOST_SCHEDULE_TO_START, QUICK, host_queue


class HostsPlan(Protocol):
    """What HostCalls needs of a plan: the environment, its hosts and LB host."""

    app: str
    env_key: str
    cluster: str
    namespace: str
    hosts: list[PlanHost]
    lb_host: str


class ActivityRunner(Protocol):
    """What HostCalls needs of its workflow (a release, a host's drain)."""

    async def act(self, method: Any, arg: Any, summary: str, timeout: timedelta = QUICK,
                  heartbeat: bool = True, task_queue: str | None = None,
                  schedule_to_start: timedelta | None = None) -> Any: ...

    async def watch(self, method: Any, arg: Any, summary: str, timeout: timedelta,
                    task_queue: str | None = None,
                    schedule_to_start: timedelta | None = None) -> Any: ...


class HostCalls:
    """The plan's hosts, each reached on its agent's task queue."""

    def __init__(self, wf: ActivityRunner, plan: HostsPlan) -> None:
        self.wf = wf
        self.plan = plan
        self.queue = workflow.info().task_queue
        # Replicas per host of each version this release placed (health watches, baseline).
        self.placed: dict[int, dict[str, int]] = {}
        # Hosts whose agent did not pick up an activity in time (HOST_SCHEDULE_TO_START).
        self.gone: set[str] = set()
        # What each host runs, by version: asked once, then kept up to date (inventory).
        self.inventories: dict[int, dict[str, HostInventory]] = {}

    @property
    def lb_queue(self) -> str:
        return host_queue(self.queue, self.plan.lb_host)

    @property
    def live(self) -> list[PlanHost]:
        """The plan's hosts but those whose agent stopped answering during this release."""
        return [host for host in self.plan.hosts if host.name not in self.gone]

    async def on(self, host: str, method: Any, arg: Any, summary: str,
                 timeout: timedelta = QUICK) -> Any:
        """An activity on ``host``'s agent. One no agent picked up in time marks the host
        gone for the rest of the release: the undo steps work with the hosts that answer."""
        try:
            return await self.wf.act(method, arg, f"{summary} on {host}", timeout,
                                     task_queue=host_queue(self.queue, host),
                                     schedule_to_start=HOST_SCHEDULE_TO_START)
        except ActivityError as error:
            if agent_away(error):
                self.gone.add(host)
                raise ApplicationError(
                    f"the agent of host {host} did not pick up '{summary}' within "
                    f"{HOST_SCHEDULE_TO_START.total_seconds():.0f}s: it is down or "
                    "unreachable", type="HostAgentAway", non_retryable=True) from error
            raise

    async def versions(self) -> list[int]:
        """Every version with containers on any host."""
        found = await asyncio.gather(*(
            self.on(host.name, RuntimeActivities.list_versions, self._list_input(),
                    "list running versions") for host in self.live))
        return sorted({version for versions in found for version in versions})

    def _list_input(self) -> ListVersionsInput:
        return ListVersionsInput(app=self.plan.app, env_key=self.plan.env_key,
                                 cluster=self.plan.cluster, namespace=self.plan.namespace)

    async def bring_up(self, spec: StartVersionInput, deadline_seconds: float,
                       prefer: dict[str, int] | None = None) -> list[Instance]:
        """``spec.replicas`` replicas of the version, spread over the hosts and healthy; the
        ones already running its image stay where they are."""
        ref = spec.version
        by_host = await self.inventory(spec)
        try:
            share = assign([(h.name, h.capacity, h.cordoned) for h in self.live],
                           {name: found.kept for name, found in by_host.items()},
                           {name: found.env_others for name, found in by_host.items()},
                           {name: found.load for name, found in by_host.items()},
                           spec.replicas, prefer)
        except NoRoom as error:
            raise ApplicationError(str(error), type="NoRoomError", non_retryable=True) from None
        self.placed[ref.version] = {name: len(indexes) for name, indexes in share.items()
                                    if indexes}
        busy = [name for name, indexes in share.items()
                if indexes or by_host[name].has_version]
        for name, indexes in share.items():  # what runs once the agents are done
            found = by_host[name]
            found.load += len(indexes) - len(found.kept)
            found.kept, found.has_version = list(indexes), bool(indexes)
        results: list[list[Instance]] = await asyncio.gather(*(
            self.on(name, HostAgentActivities.bring_up_on_host,
                    HostBringUpInput(spec=spec, indexes=share[name], port=spec.ports[0],
                                     deadline_seconds=deadline_seconds, report=True),
                    f"{len(share[name])}× v{ref.version} healthy",
                    timeout=timedelta(seconds=deadline_seconds + 600)) for name in busy))
        return [instance for instances in results for instance in instances]

    async def inventory(self, spec: StartVersionInput) -> dict[str, HostInventory]:
        """What each host runs of the version, asked once per version and release: after
        that this release knows, from what it placed and trimmed (each step saves a round
        trip to every agent)."""
        ref = spec.version
        known = self.inventories.get(ref.version)
        if known is not None and set(known) == {host.name for host in self.live}:
            return known
        found: list[HostInventory] = await asyncio.gather(*(
            self.on(host.name, HostAgentActivities.host_inventory,
                    HostInventoryInput(cluster=ref.cluster, env_key=ref.env_key,
                                       version=ref.version, image=spec.image),
                    f"what of v{ref.version} runs") for host in self.live))
        self.inventories[ref.version] = {inventory.host: inventory for inventory in found}
        return self.inventories[ref.version]

    async def trim(self, ref: VersionRef, keep: int) -> None:
        """Scale a version down (out of rotation already): its replicas from index ``keep``
        on removed, on every host at once."""
        removed: list[int] = await asyncio.gather(*(
            self.on(host.name, HostAgentActivities.trim_version,
                    TrimInput(version=ref, keep=keep), f"v{ref.version} down to {keep}")
            for host in self.live))
        for host, count in zip(self.live, removed, strict=True):
            for version, inventories in self.inventories.items():
                found = inventories.get(host.name)
                if found is None:
                    continue
                found.load -= count
                if version == ref.version:
                    found.kept = [index for index in found.kept if index < keep]
                else:
                    found.env_others -= count
        if ref.version in self.placed:
            self.placed[ref.version] = {
                name: len(found.kept) for name, found in self.inventories.get(
                    ref.version, {}).items() if found.kept} or self.placed[ref.version]

    async def each(self, method: Any, ref: VersionRef, summary: str,
                   timeout: timedelta = QUICK) -> None:
        """A per-version activity (stop, remove) on every host; a host found gone is named
        in the error, after the others have done their part."""
        self.inventories.clear()  # what runs changes in ways only the agents can tell
        found = await asyncio.gather(*(self.on(host.name, method, ref, summary, timeout)
                                       for host in self.plan.hosts if host.name not in self.gone),
                                     return_exceptions=True)
        errors = [error for error in found if isinstance(error, BaseException)]
        if errors:
            raise errors[0]
        if gone := sorted(self.gone & {host.name for host in self.plan.hosts}):
            raise ApplicationError(f"not done on {', '.join(gone)}: its agent is away",
                                   type="HostAgentAway", non_retryable=True)

    async def watch(self, data: WatchHealthInput, summary: str,
                    timeout: timedelta) -> list[str] | None:
        """One stable-wait window on every host holding the version (each watching its own
        replicas): the problems found, or None when a person intervened."""
        check = data.check
        placed = self.placed.get(check.version.version) or {
            host.name: 0 for host in self.live}
        calls = []
        for name, count in placed.items():
            part = data.model_copy(update={"check": HealthCheckInput(
                version=check.version, replicas=count, port=check.port,
                health_path=check.health_path)})
            calls.append(self.wf.watch(RuntimeActivities.watch_health, part,
                                       f"{summary} on {name}", timeout,
                                       task_queue=host_queue(self.queue, name),
                                       schedule_to_start=HOST_SCHEDULE_TO_START))
        # The first host to find a problem ends the window on every host.
        pending = {asyncio.ensure_future(call) for call in calls}
        found: list[list[str] | None] = []
        try:
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                found += [task.result() for task in done]
                if any(found):
                    break
        finally:
            for task in pending:
                task.cancel()
            for task in pending:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if any(found):
            return [problem for problems in found if problems for problem in problems]
        if any(problems is None for problems in found):
            return None
        return []


def agent_away(error: ActivityError) -> bool:
    """The activity failed because no agent picked it up in time (schedule-to-start)."""
    cause = error.cause
    return isinstance(cause, TimeoutError) and cause.type == TimeoutType.SCHEDULE_TO_START
