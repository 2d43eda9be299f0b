"""Slipway worker: builds the integrations from settings, registers workflows and activities.

Run it with ``python worker.py`` (``slipway up`` / ``slipway dev`` do it for you).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

from temporalio.client import Client
from temporalio.common import WorkerDeploymentVersion, WorkflowIDConflictPolicy
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import PrometheusConfig, TelemetryConfig
from temporalio.runtime import Runtime as TemporalRuntime
from temporalio.worker import Worker, WorkerDeploymentConfig

from activities.analysis import AnalysisActivities, MetricProviders
from activities.build import BuildActivities
from activities.catalogue import CatalogueActivities
from activities.hosts import HostActivities
from activities.janitor import JanitorActivities
from activities.lanes import LaneActivities
from activities.notify import NotifyActivities
from activities.runtime import RuntimeActivities
from activities.support import WorkflowSignals
from activities.teardown import TeardownActivities
from activities.traffic import TrafficActivities
from catalogue.hosts import cordoned_hosts, lost_hosts, mark_lost
from catalogue.lb_intent import CatalogueIntent
from catalogue.rejections import admit_image
from catalogue.releases import RecentRollbacks, env_values
from catalogue.store import Store
from integrations import tracing
from integrations.builders import BuilderRouter, BuilderSettings
from integrations.dns.rfc2136 import DnsSettings
from integrations.docker.builder import DockerBuilder
from integrations.docker.runtime import DockerRuntime
from integrations.haproxy.router import HaproxyRouter
from integrations.haproxy.traffic import HaproxyTraffic
from integrations.notify.links import ApprovalLinks
from integrations.notify.notifier import NotifierSettings, build_notifier
from integrations.protocols import Runtime, TrafficRouter
from lanes.docker_target import LANE_PORT_OFFSET, DockerLaneTarget
from lanes.janitor import LaneJanitor
from lanes.resources import LaneResources, LaneSettings
from schemas.hosts import DrainHostRequest, host_drain_workflow_id
from schemas.settings import Cluster, Settings, get_settings
from starter.service.worker_versions import ClaimCurrentVersion
from workflows.host_drain import HostDrainWorkflow
from workflows.janitor import JanitorWorkflow
from workflows.policies import BUILD_QUEUE_SUFFIX
from workflows.release import ReleaseWorkflow
from workflows.swimlane import SwimlaneWorkflow
from workflows.teardown import EnvTeardownWorkflow
from workflows.train import TrainWorkflow

if TYPE_CHECKING:  # imported where needed: Docker-only installations never load it
    from lanes.kubernetes_target import KubernetesLaneTarget

WORKFLOWS = [ReleaseWorkflow, SwimlaneWorkflow, JanitorWorkflow, TrainWorkflow,
             EnvTeardownWorkflow, HostDrainWorkflow]
# One activity slot per executor thread: a task the worker accepts always has a thread, so a
# queue of long builds and waits cannot hold health checks and undo past their timeouts here
# (beyond the slots, tasks wait on the server, where another worker can take them).
ACTIVITY_THREADS = 16
# Builds have their own task queue, worker and threads: long builds never take those slots.
BUILD_THREADS = 4
# Heartbeats reach the server at least this often (the SDK's default throttle is 0.8 × the
# heartbeat timeout): a cancel or an abort reaches a running activity within it.
HEARTBEAT_THROTTLE = timedelta(seconds=2)
# How often a worker looks for hosts whose agent is gone for good (SLIPWAY_HOST_LOST_SECONDS).
LOST_HOSTS_INTERVAL = timedelta(seconds=10)
# On SIGTERM running activities get this long to finish before they are cancelled; what is
# still running then is retried by another worker (every activity is idempotent).
GRACEFUL_SHUTDOWN = timedelta(seconds=30)


def registry_auth(settings: Settings) -> dict[str, str] | None:
    """Registry credentials, resolved by name from settings: never part of workflow history."""
    secret = settings.credential(settings.registry_credential)
    if not secret:
        return None
    username, _, password = secret.partition(":")
    return {"username": username, "password": password}


def haproxy_router(settings: Settings, store: Store | None = None,
                   keeper: bool = False) -> HaproxyRouter:
    """A router of this state directory's load balancers, what they should hold kept in
    the catalogue: a replacement load-balancer host (a fresh state directory) rebuilds them
    from there. Every router of a state directory must keep it in the same place.
    ``keeper``: this process keeps the load balancers (the LB host's agent) and holds their
    listening sockets, so a daemon's death refuses no connection."""
    return HaproxyRouter(settings.state_dir, settings.haproxy_bin, settings.lb_bind_address,
                         intent=CatalogueIntent(store or Store(settings.resolved_database_url())),
                         hold_listeners=keeper)


def build_cluster(name: str, cluster: Cluster, settings: Settings,
                  auth: dict[str, str] | None,
                  cordoned: Callable[[], frozenset[str]] | None = None,
                  ) -> tuple[Runtime, TrafficRouter]:
    """The runtime and the traffic router of one cluster, by its runtime kind; ``cordoned``
    names its Docker hosts that get no new replica (catalogue.hosts)."""
    if cluster.runtime == "kubernetes":
        # Imported here: Docker-only installations never load the Kubernetes client.
        from integrations.kubernetes.runtime import KubernetesRuntime
        from integrations.kubernetes.traffic import KubernetesTraffic

        runtime = KubernetesRuntime.from_cluster(cluster, name=name)
        return runtime, KubernetesTraffic(runtime)
    router = haproxy_router(settings)
    return (DockerRuntime(hosts=cluster.hosts,
                          registry_auth=lambda _image: auth, stack=settings.stack_label(),
                          failing_version_seconds=settings.failing_version_seconds,
                          cordoned=cordoned),
            HaproxyTraffic(router))


def lane_target(settings: Settings, lane_settings: LaneSettings,
                auth: dict[str, str] | None) -> DockerLaneTarget | KubernetesLaneTarget:
    """Where lanes run: ``SLIPWAY_LANE_CLUSTER`` (default: the default cluster). A Docker
    cluster runs lane apps on its first host behind their own HAProxy frontends; a
    Kubernetes cluster gives every lane a namespace of its own."""
    name = lane_settings.lane_cluster or settings.default_cluster
    cluster = settings.clusters.get(name)
    if cluster is None:
        raise ValueError(f"SLIPWAY_LANE_CLUSTER={name!r} is not a configured cluster "
                         f"({', '.join(settings.clusters)})")
    if cluster.runtime == "kubernetes":
        from integrations.kubernetes.runtime import KubernetesRuntime
        from lanes.kubernetes_target import KubernetesLaneTarget

        return KubernetesLaneTarget(KubernetesRuntime.from_cluster(cluster, name=name),
                                    deadline_seconds=lane_settings.lane_deadline_seconds,
                                    drain_seconds=settings.drain_timeout_seconds)
    return DockerLaneTarget(
        DockerRuntime(hosts=cluster.hosts[:1],
                      registry_auth=lambda _image: auth, stack=settings.stack_label(),
                      failing_version_seconds=settings.failing_version_seconds),
        haproxy_router(settings), settings.lb_bind_address,
        lane_settings.lane_deadline_seconds,
        settings.drain_timeout_seconds,
        port_start=settings.lb_port_start + LANE_PORT_OFFSET)


def image_builder(settings: Settings) -> BuilderRouter:
    """Docker builds apps without a builder rule; Jenkins/GitLab credentials are read by name
    from settings when a build starts."""
    docker_engines = [c.engines[0] for c in settings.clusters.values() if c.runtime == "docker"]
    default_engine = docker_engines[0] if docker_engines else "unix:///var/run/docker.sock"
    return BuilderRouter(
        DockerBuilder(default_engine, settings.registry, settings.base_image,
                      registry_auth(settings), settings.source_roots),
        BuilderSettings(), settings.credential)


def notify_activities(settings: Settings) -> NotifyActivities:
    """The notifier, with approval links when the receiver's address is set and the notifier
    reaches people (links are bearer credentials: never into a console log)."""
    notifier_settings = NotifierSettings()
    links = None
    if settings.receiver_url and notifier_settings.notifier != "console":
        links = ApprovalLinks(settings.receiver_url,
                              partial(settings.credential, settings.approval_link_credential))
    return NotifyActivities(build_notifier(notifier_settings, settings.credential), links)


def build_activities(settings: Settings,
                     signals: WorkflowSignals | None = None) -> list[Callable[..., Any]]:
    """Every activity function but the build, bound to integrations built from ``settings``;
    with ``signals``, waiting runtime activities tell their release what they see."""
    store = Store(settings.resolved_database_url())
    store.migrate()
    auth = registry_auth(settings)
    runtimes: dict[str, Runtime] = {}
    routers: dict[str, TrafficRouter] = {}
    for name, cluster in settings.clusters.items():
        runtimes[name], routers[name] = build_cluster(
            name, cluster, settings, auth, cordoned=partial(cordoned_hosts, store, name))
    catalogue = CatalogueActivities(store, settings.drain_timeout_seconds,
                                    settings.progress_deadline_seconds,
                                    settings.fast_rollback_window_seconds,
                                    signing_secret=settings.approval_signing_secret,
                                    rollbacks=RecentRollbacks.from_settings(settings),
                                    agents_within=settings.host_lost_seconds)
    runtime = RuntimeActivities(runtimes, settings.default_cluster,
                                env_values=partial(env_values, store,
                                                   credential=settings.credential),
                                admit_image=partial(admit_image, store), signals=signals)
    traffic = TrafficActivities(routers, settings.default_cluster)
    hosts = HostActivities(
        {name: found for name, found in runtimes.items() if isinstance(found, DockerRuntime)},
        haproxy_router(settings, store), store, settings.drain_timeout_seconds,
        settings.progress_deadline_seconds,
        agents_within=settings.host_lost_seconds)
    analysis = AnalysisActivities(
        MetricProviders.from_settings(settings, haproxy_router(settings, store)), store)
    dns_settings = DnsSettings()
    lane_settings = LaneSettings()
    lanes = LaneActivities(LaneResources(
        store, lane_target(settings, lane_settings, auth), settings.credential,
        dns_settings.client(), lane_settings, dns_target=dns_settings.dns_target))
    return [
        catalogue.prepare_release, catalogue.finish_release, catalogue.record_build,
        catalogue.note_approval, catalogue.verify_approval, catalogue.check_freeze,
        catalogue.prepare_train, catalogue.finish_train,
        runtime.check_health,
        runtime.watch_health,
        runtime.resolve_image, runtime.start_version, runtime.wait_ready, runtime.list_versions,
        runtime.stop_version, runtime.remove_version,
        traffic.ensure_frontend, traffic.add_to_lb, traffic.drain, traffic.remove_from_lb,
        traffic.remove_frontend,
        hosts.plan_host_drain, hosts.take_out, hosts.put_back, hosts.agent_hosts,
        hosts.plan_moves, hosts.host_address,
        notify_activities(settings).notify,
        lanes.create_lane_resource, lanes.delete_lane_resource, lanes.deploy_lane_build,
        lanes.record_lane, analysis.measure_analysis, analysis.check_analysis,
    ]


async def connect(settings: Settings, runtime: TemporalRuntime | None = None) -> Client:
    return await Client.connect(settings.temporal_address, namespace=settings.temporal_namespace,
                                tls=settings.temporal_tls(),
                                data_converter=pydantic_data_converter, runtime=runtime,
                                interceptors=tracing.interceptors())


def sdk_runtime(settings: Settings) -> TemporalRuntime | None:
    """A Temporal runtime that serves the SDK's own metrics for Prometheus on
    SLIPWAY_WORKER_METRICS_ADDRESS, or None (the default runtime, no endpoint)."""
    if not settings.worker_metrics_address:
        return None
    return TemporalRuntime(telemetry=TelemetryConfig(
        metrics=PrometheusConfig(bind_address=settings.worker_metrics_address)))


# Workflows kept in memory between tasks. Most of ours sleep for hours or days (idle lanes on
# their TTL timers, releases awaiting approval or a window): one evicted from the cache
# replays its history when its timer fires, which costs milliseconds, while the SDK default
# (1,000) let 1,000 idle lanes hold 315 MB of worker memory (bench/scale.py).
WORKFLOW_CACHE = 250


def deployment_config(settings: Settings) -> WorkerDeploymentConfig:
    """This worker's deployment and build (Worker Versioning). Each workflow type declares
    pinned or auto-upgrade itself (workflows/versioning.py)."""
    build = settings.worker_build()
    if build.note:
        logging.getLogger("slipway").warning("build ID %s: %s", build.value, build.note)
    return WorkerDeploymentConfig(
        version=WorkerDeploymentVersion(settings.deployment_name(), build.value),
        use_worker_versioning=True)


def make_worker(client: Client, settings: Settings, executor: ThreadPoolExecutor) -> Worker:
    """A worker for every workflow; call it on the event loop the worker will run on."""
    engines = [c.engines[0] for c in settings.clusters.values() if c.runtime == "docker"]
    lane_settings = LaneSettings()
    target = lane_target(settings, lane_settings, registry_auth(settings))
    # Lanes on Kubernetes leave namespaces behind, not containers: the janitor sweeps those.
    kube_lanes = [] if isinstance(target, DockerLaneTarget) else [target]
    janitor = JanitorActivities(
        LaneJanitor(engines, haproxy_router(settings), kube_lanes,
                    min_age=timedelta(seconds=settings.janitor_min_age_seconds),
                    stack=settings.stack_label(), broker=lane_settings.broker(settings.credential),
                    topics=lane_settings.lane_topics),
        Store(settings.resolved_database_url()), client, asyncio.get_running_loop())
    # Needs the client too: it refuses to tear down an environment whose release runs.
    teardown = TeardownActivities(Store(settings.resolved_database_url()), client,
                                  asyncio.get_running_loop(), settings.drain_timeout_seconds,
                                  agents_within=settings.host_lost_seconds)
    # Waiting runtime activities tell their release what they see (Web UI current details).
    signals = WorkflowSignals(client, asyncio.get_running_loop())
    versioned = deployment_config(settings)
    return Worker(client, task_queue=settings.task_queue, workflows=WORKFLOWS,
                  deployment_config=versioned,
                  plugins=[ClaimCurrentVersion(settings, versioned.version.build_id)],
                  activities=[*build_activities(settings, signals), janitor.sweep_lane_orphans,
                              janitor.report_lost_lanes, teardown.load_teardown,
                              teardown.check_release_idle, teardown.mark_env_removed],
                  activity_executor=executor,
                  max_concurrent_activities=executor._max_workers,
                  max_cached_workflows=WORKFLOW_CACHE,
                  max_heartbeat_throttle_interval=HEARTBEAT_THROTTLE,
                  graceful_shutdown_timeout=GRACEFUL_SHUTDOWN)


def make_build_worker(client: Client, settings: Settings, executor: ThreadPoolExecutor) -> Worker:
    """The worker of the build task queue: builds only, one slot per thread of ``executor``."""
    # The same build as the workflows: a build a pinned release schedules runs on its code.
    return Worker(client, task_queue=settings.task_queue + BUILD_QUEUE_SUFFIX,
                  activities=[BuildActivities(image_builder(settings)).build_image],
                  deployment_config=deployment_config(settings),
                  activity_executor=executor, max_concurrent_activities=executor._max_workers,
                  max_heartbeat_throttle_interval=HEARTBEAT_THROTTLE,
                  graceful_shutdown_timeout=GRACEFUL_SHUTDOWN)


async def run_until_terminated(*workers: Worker) -> None:
    """Run ``workers`` until SIGTERM or SIGINT, then shut them down gracefully: no new tasks,
    running activities get GRACEFUL_SHUTDOWN to finish."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    log = logging.getLogger("slipway")
    running = [asyncio.create_task(worker.run()) for worker in workers]
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait([*running, stopping], return_when=asyncio.FIRST_COMPLETED)
    if stop.is_set():
        log.info("stop requested: finishing running activities (up to %s)", GRACEFUL_SHUTDOWN)
    stopping.cancel()
    # Stopped by a signal or because one worker failed: the others stop with it.
    await asyncio.gather(*(worker.shutdown() for worker, task in zip(workers, running, strict=True)
                           if not task.done()))
    for task in running:
        await task  # a worker's own error, if it failed
    log.info("worker stopped")


async def replace_lost_hosts(client: Client, settings: Settings, store: Store) -> list[str]:
    """One look: every host whose agent was not seen for SLIPWAY_HOST_LOST_SECONDS is marked
    lost (and cordoned) once its HostDrainWorkflow (``lost``) runs, which places its replicas
    again on the cluster's other hosts. Any number of workers may look at once: the
    workflow's id (``host-drain:<cluster>:<host>``) makes it one. Returns the hosts."""
    found = []
    for state in await asyncio.to_thread(lost_hosts, store, settings.host_lost_seconds):
        await client.start_workflow(
            HostDrainWorkflow.run,
            DrainHostRequest(cluster=state.cluster, host=state.host, requested_by="slipway",
                             lost=True),
            id=host_drain_workflow_id(state.cluster, state.host),
            task_queue=settings.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING)
        await asyncio.to_thread(mark_lost, store, state.cluster, state.host)
        logging.getLogger("slipway").warning(
            "host %s of %s lost (its agent was not seen for %.0fs): its replicas are placed "
            "again on the other hosts", state.host, state.cluster, settings.host_lost_seconds)
        found.append(f"{state.cluster}/{state.host}")
    return found


async def watch_lost_hosts(client: Client, settings: Settings) -> None:
    """:func:`replace_lost_hosts` every LOST_HOSTS_INTERVAL while the worker runs, the first
    look SLIPWAY_HOST_LOST_SECONDS after it started: agents starting with it (`slipway up`,
    a fleet back after an outage) get the same time to beat as any."""
    store = Store(settings.resolved_database_url())
    await asyncio.sleep(settings.host_lost_seconds)
    while True:
        try:
            await replace_lost_hosts(client, settings, store)
        except Exception:  # the next look tries again; the worker keeps serving tasks
            logging.getLogger("slipway").warning("looking for lost hosts failed",
                                                 exc_info=True)
        await asyncio.sleep(LOST_HOSTS_INTERVAL.total_seconds())


async def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = get_settings()
    tracing.configure("slipway-worker")
    client = await connect(settings, sdk_runtime(settings))
    with (ThreadPoolExecutor(max_workers=ACTIVITY_THREADS) as executor,
          ThreadPoolExecutor(max_workers=BUILD_THREADS) as build_executor):
        workers = (make_worker(client, settings, executor),
                   make_build_worker(client, settings, build_executor))
        logging.getLogger("slipway").info("worker polling task queues %r and %r",
                                          settings.task_queue,
                                          settings.task_queue + BUILD_QUEUE_SUFFIX)
        # Load balancers are kept by their host's agent (agent.py); the workers look for
        # hosts whose agent is gone for good.
        watcher = asyncio.create_task(watch_lost_hosts(client, settings))
        try:
            await run_until_terminated(*workers)
        finally:
            watcher.cancel()


def exit_status(program: Coroutine[Any, Any, None]) -> int:
    """Run a worker or an agent (``program``) until SIGTERM; its exit status."""
    try:
        asyncio.run(program)
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    # As the CLI does: leave without interpreter teardown, which the SDK's threads can abort.
    status = exit_status(main())
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
