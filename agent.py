"""Slipway host agent: what must happen on one Docker host, on that host's own task queue.

Run one per Docker host: ``python agent.py --host NAME`` (``slipway agent --host NAME``;
``slipway up`` runs one for the local engine). NAME is a host of a Docker cluster in
SLIPWAY_CLUSTERS; the agent polls ``<task queue>-host-NAME`` and runs there what a release
needs of that host: its containers (start, wait ready, stop, remove), health probes from
the host, and, on the cluster's load-balancer host, the environments' HAProxy (the runtime
API, analysis counters, and the keeper that restarts a dead HAProxy with its servers).

It registers its host in the catalogue and beats every AGENT_BEAT: releases reach the hosts
whose agent was seen within SLIPWAY_HOST_LOST_SECONDS. Orchestration (workflows, catalogue,
notifications, builds) belongs to worker.py, of which any number run anywhere.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import logging
import os
import socket
import sys
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import timedelta
from functools import partial
from typing import IO, Any

from temporalio.client import Client
from temporalio.worker import Worker

from activities.agent import HostAgentActivities
from activities.analysis import AnalysisActivities, MetricProviders
from activities.hosts import HostActivities
from activities.support import WorkflowSignals
from activities.traffic import TrafficActivities
from catalogue.hosts import register_agent
from catalogue.rejections import admit_image
from catalogue.releases import env_values
from catalogue.store import Store
from integrations import tracing
from integrations.docker.runtime import DockerRuntime
from integrations.haproxy.traffic import HaproxyTraffic
from integrations.lb_reconcile import LoadBalancerReconciler
from integrations.protocols import Runtime, TrafficRouter
from schemas.hosts import AgentRegistration
from schemas.settings import DockerHost, Settings, get_settings
from worker import (
    ACTIVITY_THREADS,
    GRACEFUL_SHUTDOWN,
    HEARTBEAT_THROTTLE,
    connect,
    exit_status,
    haproxy_router,
    registry_auth,
    run_until_terminated,
)
from workflows.policies import host_queue

# How often the agent tells the catalogue it is alive (well under SLIPWAY_HOST_LOST_SECONDS).
AGENT_BEAT = timedelta(seconds=5)
# How often the keeper checks that every environment's load balancer runs with its servers
# (and at once when one of their processes exits).
RECONCILE_INTERVAL = timedelta(seconds=2)


class AgentError(ValueError):
    """The agent cannot serve the host it was given."""


def own_hosts(settings: Settings, name: str) -> dict[str, DockerHost]:
    """The host called ``name`` in every Docker cluster that lists it, by cluster."""
    found = {cluster_name: host for cluster_name, cluster in settings.clusters.items()
             if cluster.runtime == "docker" for host in cluster.hosts if host.name == name}
    if not found:
        hosts = sorted({host.name for cluster in settings.clusters.values()
                        if cluster.runtime == "docker" for host in cluster.hosts})
        raise AgentError(f"no Docker cluster in SLIPWAY_CLUSTERS has a host {name!r}; "
                         f"its hosts: {', '.join(hosts) or 'none'}")
    engines = {host.engine for host in found.values()}
    if len(engines) > 1:
        raise AgentError(f"host {name!r} names different engines in different clusters: "
                         f"{', '.join(sorted(engines))}")
    return found


def balanced_clusters(settings: Settings, name: str) -> list[str]:
    """The Docker clusters whose load balancers run on host ``name``."""
    return [cluster_name for cluster_name, cluster in settings.clusters.items()
            if cluster.runtime == "docker" and cluster.lb_host == name]


def registrations(settings: Settings, name: str) -> list[AgentRegistration]:
    """What the agent says of its host, once per cluster that lists it."""
    balanced = balanced_clusters(settings, name)
    identity = f"{socket.gethostname()}:{os.getpid()}"
    return [AgentRegistration(cluster=cluster, host=name, address=host.address,
                              engine=host.engine, labels=host.labels, capacity=host.capacity,
                              load_balancer=cluster in balanced, agent=identity)
            for cluster, host in own_hosts(settings, name).items()]


def agent_activities(settings: Settings, name: str, store: Store,
                     signals: WorkflowSignals | None = None) -> list[Callable[..., Any]]:
    """The activities of host ``name``'s agent, bound to runtimes that reach its engine
    only (and, on a load-balancer host, its HAProxy)."""
    auth = registry_auth(settings)
    runtimes: dict[str, Runtime] = {
        cluster: DockerRuntime(hosts=[host], registry_auth=lambda _image: auth,
                               stack=settings.stack_label(),
                               failing_version_seconds=settings.failing_version_seconds)
        for cluster, host in own_hosts(settings, name).items()}
    host = HostAgentActivities(runtimes, next(iter(runtimes)),
                               env_values=partial(env_values, store,
                                                  credential=settings.credential),
                               admit_image=partial(admit_image, store), signals=signals)
    activities: list[Callable[..., Any]] = [
        host.host_inventory, host.bring_up_on_host, host.resolve_image, host.list_versions,
        host.wait_ready, host.check_health, host.watch_health, host.stop_version,
        host.remove_version, host.start_version, host.replicas_here, host.remove_replica,
        host.trim_version]
    balanced = balanced_clusters(settings, name)
    if balanced:
        router = haproxy_router(settings, store, keeper=True)
        routers: dict[str, TrafficRouter] = {cluster: HaproxyTraffic(router)
                                             for cluster in balanced}
        traffic = TrafficActivities(routers, balanced[0])
        analysis = AnalysisActivities(MetricProviders.from_settings(settings, router), store)
        # A host's drain: its replicas' servers out of rotation and back (by name).
        drains = HostActivities({}, router, store, settings.drain_timeout_seconds,
                                settings.progress_deadline_seconds)
        activities += [traffic.ensure_frontend, traffic.add_to_lb, traffic.shift, traffic.drain,
                       traffic.remove_from_lb, traffic.remove_frontend,
                       analysis.measure_analysis, drains.take_server_out, drains.servers_at,
                       drains.put_back]
    return activities


def make_agent_worker(client: Client, settings: Settings, name: str,
                      executor: ThreadPoolExecutor, store: Store) -> Worker:
    """The Temporal worker of host ``name``'s task queue.

    Unversioned on purpose (Worker Versioning): an agent runs activities only, whose code is
    never replayed, and one serves its host for every build of the orchestration workers at
    once (a release pinned to build A and one on build B both send it containers to start).
    Its task queue belongs to no deployment version, so the server hands its tasks to
    whichever agent polls; what keeps old and new builds working with it is the activity
    contract: an activity's input and output models only ever gain optional fields."""
    signals = WorkflowSignals(client, asyncio.get_running_loop())
    return Worker(client, task_queue=host_queue(settings.task_queue, name),
                  activities=agent_activities(settings, name, store, signals),
                  activity_executor=executor, max_concurrent_activities=executor._max_workers,
                  max_heartbeat_throttle_interval=HEARTBEAT_THROTTLE,
                  graceful_shutdown_timeout=GRACEFUL_SHUTDOWN)


async def beat(store: Store, seen: list[AgentRegistration]) -> None:
    """Register the host, then say it is alive every AGENT_BEAT (a catalogue that does not
    answer costs a beat, not the agent)."""
    log = logging.getLogger("slipway.agent")
    while True:
        for registration in seen:
            try:
                await asyncio.to_thread(register_agent, store, registration)
            except Exception:  # noqa: BLE001 - the next beat tries again
                log.warning("could not register %s in the catalogue", registration.host,
                            exc_info=True)
        await asyncio.sleep(AGENT_BEAT.total_seconds())


def load_balancer_keeper(settings: Settings, name: str,
                         store: Store | None = None) -> LoadBalancerReconciler | None:
    """The keeper of the load balancers of the clusters whose LB host this is: from the
    catalogue's record of each (a replacement LB host rebuilds them). When this host is its
    clusters' only one, its engine also says where each replica answers now (a container
    the engine restarted has a new port); on a fleet the record's addresses stand, each
    host's agent reaching only its own engine."""
    balanced = balanced_clusters(settings, name)
    if not balanced:
        return None
    hosts = {host.name: host for cluster in balanced
             for host in settings.clusters[cluster].hosts}
    runtime = (DockerRuntime(hosts=list(hosts.values()), stack=settings.stack_label())
               if list(hosts) == [name] else None)
    return LoadBalancerReconciler(haproxy_router(settings, store, keeper=True), runtime)


async def keep_load_balancers(reconciler: LoadBalancerReconciler) -> None:
    """At start, whenever a load balancer's process exits, and at least every
    RECONCILE_INTERVAL: a killed HAProxy comes back within ~0.1 s with its servers, without
    waiting for a release (see integrations/lb_reconcile.py)."""
    log = logging.getLogger("slipway")
    while True:
        try:
            await asyncio.to_thread(reconciler.reconcile_all)
        except Exception:  # the next pass tries again; the agent keeps serving tasks
            log.warning("load balancer reconciliation failed", exc_info=True)
        # Woken by a daemon's exit (its pidfd), else at the interval.
        await asyncio.to_thread(reconciler.wait_for_exit, RECONCILE_INTERVAL.total_seconds())




def keeper_lock(settings: Settings) -> IO[str] | None:
    """The load-balancer keeper's lock on the state directory, or None while another agent
    holds it. Two agents may serve one host's queue (one replacing the other); of those
    sharing a state directory (its HAProxy sockets and configs), one at a time keeps the
    load balancers, so two keepers never restart the same HAProxy."""
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    handle = (settings.state_dir / "lb-keeper.lock").open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle  # held until the process exits, however it exits


async def keep_load_balancers_in_turn(settings: Settings,
                                      reconciler: LoadBalancerReconciler) -> None:
    """Wait for the keeper's lock (an agent that dies, even by kill -9, releases it), then
    keep the load balancers for as long as this agent runs."""
    lock = keeper_lock(settings)
    if lock is None:
        logging.getLogger("slipway").info(
            "another agent keeps the load balancers of %s; this one takes over if it stops",
            settings.state_dir)
    while lock is None:
        await asyncio.sleep(RECONCILE_INTERVAL.total_seconds())
        lock = keeper_lock(settings)
    logging.getLogger("slipway").info("keeping the load balancers of %s", settings.state_dir)
    try:
        await keep_load_balancers(reconciler)
    finally:
        lock.close()


def docker_host_names(settings: Settings) -> list[str]:
    """Every Docker host of every cluster, each once: the agents a whole stack runs."""
    return sorted({host.name for cluster in settings.clusters.values()
                   if cluster.runtime == "docker" for host in cluster.hosts})


@asynccontextmanager
async def agents_serving(client: Client, settings: Settings, names: list[str],
                         executor: ThreadPoolExecutor) -> AsyncIterator[None]:
    """The agents of ``names`` in this process (registered, beating, polling) while the
    body runs: an embedded stack's and the integration tests' way to run them; production
    runs one ``agent.py`` per host."""
    store = Store(settings.resolved_database_url())
    store.migrate()
    seen = [registration for name in names for registration in registrations(settings, name)]
    for registration in seen:  # before the body: a release started now finds its hosts
        await asyncio.to_thread(register_agent, store, registration)
    beating = asyncio.create_task(beat(store, seen))
    try:
        async with contextlib.AsyncExitStack() as stack:
            for name in names:
                await stack.enter_async_context(
                    make_agent_worker(client, settings, name, executor, store))
            yield
    finally:
        beating.cancel()


async def run_agent(settings: Settings, name: str, client: Client | None = None) -> None:
    """Serve host ``name`` until SIGTERM."""
    seen = registrations(settings, name)
    store = Store(settings.resolved_database_url())
    store.migrate()
    client = client or await connect(settings)
    with ThreadPoolExecutor(max_workers=ACTIVITY_THREADS) as executor:
        worker = make_agent_worker(client, settings, name, executor, store)
        log = logging.getLogger("slipway.agent")
        log.info("agent of host %s polling task queue %r", name,
                 host_queue(settings.task_queue, name))
        background = [asyncio.create_task(beat(store, seen))]
        keeper = load_balancer_keeper(settings, name, store)
        if keeper is not None:
            background.append(asyncio.create_task(keep_load_balancers_in_turn(settings,
                                                                              keeper)))
        try:
            await run_until_terminated(worker)
        finally:
            for task in background:
                task.cancel()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="agent.py", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="", help="the Docker host this agent serves "
                        "(default SLIPWAY_AGENT_HOST, else the default cluster's first host)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = get_settings()
    tracing.configure("slipway-agent")
    name = args.host or settings.agent_host or settings.clusters[
        settings.default_cluster].hosts[0].name
    try:
        registrations(settings, name)
    except AgentError as error:
        print(f"agent: error: {error}", file=sys.stderr)
        return 2
    return exit_status(run_agent(settings, name))


if __name__ == "__main__":
    # As the worker does: leave without interpreter teardown (the SDK's threads).
    status = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
