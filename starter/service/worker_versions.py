"""The worker deployment's routing, read and changed through Temporal's deployment API:
which build is current, which one ramps, which ones drain, and which runs are pinned where.

`slipway worker versions | promote | rollback` and `slipway up` call these; the worker's
:class:`ClaimCurrentVersion` plugin makes a first build current (SLIPWAY_WORKER_PROMOTE).
Promoting asks the server to route by a build it has seen pollers of, so a build that never
ran is refused with the builds there are, and nothing changes.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from temporalio.api.common.v1 import Payload
from temporalio.api.deployment.v1 import RoutingConfig, WorkerDeploymentInfo
from temporalio.api.enums.v1 import WorkerDeploymentVersionStatus as ProtoStatus
from temporalio.api.workflowservice.v1 import (
    DescribeWorkerDeploymentRequest,
    SetWorkerDeploymentCurrentVersionRequest,
    SetWorkerDeploymentRampingVersionRequest,
)
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Plugin, ReplayerConfig, Worker, WorkerConfig

from catalogue.store import CatalogueError
from schemas.settings import Settings
from schemas.versioning import (
    DeploymentView,
    RoutingChange,
    VersionStatus,
    VersionView,
)

# What the server calls "no build": unversioned workers get new runs.
UNVERSIONED = "__unversioned__"
# `versions` names at most this many running workflows per build (the count is exact up to
# LIST_LIMIT).
SHOWN_RUNS = 5
LIST_LIMIT = 1000
IDENTITY = "slipway"
VERSION_ATTRIBUTE = "TemporalWorkerDeploymentVersion"
BEHAVIOUR_ATTRIBUTE = "TemporalWorkflowVersioningBehavior"

_STATUSES = {
    ProtoStatus.WORKER_DEPLOYMENT_VERSION_STATUS_CURRENT: VersionStatus.CURRENT,
    ProtoStatus.WORKER_DEPLOYMENT_VERSION_STATUS_RAMPING: VersionStatus.RAMPING,
    ProtoStatus.WORKER_DEPLOYMENT_VERSION_STATUS_DRAINING: VersionStatus.DRAINING,
    ProtoStatus.WORKER_DEPLOYMENT_VERSION_STATUS_DRAINED: VersionStatus.DRAINED,
    ProtoStatus.WORKER_DEPLOYMENT_VERSION_STATUS_INACTIVE: VersionStatus.INACTIVE,
}


def _when(stamp: Timestamp) -> datetime | None:
    return stamp.ToDatetime() if stamp.seconds > 0 else None


def _build(routing_version: str, deployment: str) -> str:
    """A build ID from the server's ``<deployment>.<build>`` string ("" when unversioned)."""
    if not routing_version or routing_version == UNVERSIONED:
        return ""
    return routing_version.removeprefix(f"{deployment}.")


async def _describe(client: Client, name: str) -> tuple[WorkerDeploymentInfo, bytes] | None:
    """The deployment and its conflict token; None when no worker of it ever polled."""
    try:
        found = await client.workflow_service.describe_worker_deployment(
            DescribeWorkerDeploymentRequest(namespace=client.namespace, deployment_name=name))
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
    return found.worker_deployment_info, found.conflict_token


def _routing(info: WorkerDeploymentInfo, name: str) -> tuple[str, str, float]:
    routing: RoutingConfig = info.routing_config
    current = routing.current_deployment_version.build_id or _build(routing.current_version, name)
    ramping = routing.ramping_deployment_version.build_id or _build(routing.ramping_version, name)
    return current, ramping, routing.ramping_version_percentage if ramping else 0.0


async def _running_by_build(client: Client, settings: Settings
                            ) -> dict[tuple[str, str], list[str]]:
    """Running workflows of this task queue by (build ID, behaviour); ("", "") unversioned."""
    found: dict[tuple[str, str], list[str]] = {}
    query = f'ExecutionStatus="Running" AND TaskQueue="{settings.task_queue}"'
    async for execution in client.list_workflows(query, limit=LIST_LIMIT):
        # Visibility keeps a run's versioning in system search attributes (the listing has
        # no versioning_info): "<deployment>:<build>" and "Pinned" / "AutoUpgrade".
        fields = execution.raw_info.search_attributes.indexed_fields
        version = _text(fields.get(VERSION_ATTRIBUTE))
        build = version.partition(":")[2] if version else ""
        behaviour = _text(fields.get(BEHAVIOUR_ATTRIBUTE))
        found.setdefault((build, "pinned" if behaviour == "Pinned" else
                          "auto-upgrade" if build else ""), []).append(execution.id)
    return found


def _text(payload: Payload | None) -> str:
    if payload is None or not payload.data:
        return ""
    value = json.loads(payload.data)
    return str(value[0] if isinstance(value, list) and value else value or "")


async def describe(client: Client, settings: Settings) -> DeploymentView:
    """The deployment's routing, every build it knows (newest first) and the running
    workflows on each: what `slipway worker versions` shows."""
    name = settings.deployment_name()
    running = await _running_by_build(client, settings)
    described = await _describe(client, name)
    view = DeploymentView(name=name, unversioned=running.get(("", ""), []))
    if described is None:
        return view
    info, _token = described
    view.current, view.ramping, view.ramp_percent = _routing(info, name)
    for summary in sorted(info.version_summaries, key=lambda s: s.create_time.ToDatetime(),
                          reverse=True):
        build = summary.deployment_version.build_id or _build(summary.version, name)
        view.versions.append(VersionView(
            build_id=build, status=_STATUSES.get(summary.status, VersionStatus.UNKNOWN),
            ramp_percent=view.ramp_percent if build == view.ramping else 0.0,
            created=_when(summary.create_time), current_since=_when(summary.current_since_time),
            pinned=running.get((build, "pinned"), []),
            auto_upgrade=running.get((build, "auto-upgrade"), [])))
    return view


def _known(info: WorkerDeploymentInfo, name: str) -> list[str]:
    return [summary.deployment_version.build_id or _build(summary.version, name)
            for summary in info.version_summaries]


async def promote(client: Client, settings: Settings, build_id: str,
                  ramp_percent: float | None = None) -> RoutingChange:
    """Make ``build_id`` current (new runs and auto-upgrade runs go to it; runs pinned to
    other builds stay), or with ``ramp_percent`` send that share of new runs to it.
    CatalogueError naming the known builds when the deployment never saw this one."""
    name = settings.deployment_name()
    described = await _describe(client, name)
    if described is None:
        raise CatalogueError(f"worker deployment {name!r} has no worker yet: start one "
                             f"(`python worker.py`) before promoting")
    info, token = described
    known = _known(info, name)
    if build_id not in known:
        raise CatalogueError(f"build {build_id!r} is not a version of worker deployment "
                             f"{name!r} (a worker of it never polled): the builds are "
                             f"{', '.join(known) or 'none'}; nothing was changed")
    current, ramping, _percent = _routing(info, name)
    change = RoutingChange(deployment=name, build_id=build_id, ramp_percent=ramp_percent,
                           previous_current=current, previous_ramping=ramping)
    if ramp_percent is None:
        await client.workflow_service.set_worker_deployment_current_version(
            SetWorkerDeploymentCurrentVersionRequest(
                namespace=client.namespace, deployment_name=name, build_id=build_id,
                conflict_token=token, identity=IDENTITY))
    else:
        if build_id == current:
            raise CatalogueError(f"build {build_id!r} is current already: ramp another build "
                                 "(or promote it without --ramp)")
        await client.workflow_service.set_worker_deployment_ramping_version(
            SetWorkerDeploymentRampingVersionRequest(
                namespace=client.namespace, deployment_name=name, build_id=build_id,
                percentage=ramp_percent, conflict_token=token, identity=IDENTITY))
    return change


async def rollback(client: Client, settings: Settings) -> RoutingChange:
    """Undo the last promotion: a ramp stops (every new run goes to the current build), or,
    with no ramp, the build that was current before this one is current again."""
    name = settings.deployment_name()
    described = await _describe(client, name)
    if described is None:
        raise CatalogueError(f"worker deployment {name!r} has no worker yet")
    info, token = described
    current, ramping, _percent = _routing(info, name)
    if ramping:
        await client.workflow_service.set_worker_deployment_ramping_version(
            SetWorkerDeploymentRampingVersionRequest(
                namespace=client.namespace, deployment_name=name, build_id="",
                conflict_token=token, identity=IDENTITY))
        return RoutingChange(deployment=name, build_id=current, previous_current=current,
                             previous_ramping=ramping)
    earlier = [summary for summary in info.version_summaries
               if (summary.deployment_version.build_id or _build(summary.version, name))
               not in ("", current) and summary.last_current_time.seconds > 0]
    if not earlier:
        raise CatalogueError(f"worker deployment {name!r} has no build that was current before "
                             f"{current or 'unversioned workers'}: nothing to roll back to")
    previous = max(earlier, key=lambda summary: summary.last_current_time.ToDatetime())
    return await promote(client, settings,
                         previous.deployment_version.build_id or _build(previous.version, name))


async def register_current(client: Client, settings: Settings, build_id: str,
                           only_if_unset: bool = False) -> RoutingChange | None:
    """Make ``build_id`` current even before its worker polls (a worker's first start, `slipway
    up`). With ``only_if_unset``, only when the deployment has no current build; None when
    nothing changed."""
    name = settings.deployment_name()
    described = await _describe(client, name)
    token = b""
    current = ramping = ""
    if described is not None:
        info, token = described
        current, ramping, _percent = _routing(info, name)
    if current == build_id or (only_if_unset and current):
        return None
    await client.workflow_service.set_worker_deployment_current_version(
        SetWorkerDeploymentCurrentVersionRequest(
            namespace=client.namespace, deployment_name=name, build_id=build_id,
            conflict_token=token, identity=IDENTITY, allow_no_pollers=True))
    return RoutingChange(deployment=name, build_id=build_id, previous_current=current,
                         previous_ramping=ramping)


class ClaimCurrentVersion(Plugin):
    """A worker plugin: before the worker polls, make its build current when
    SLIPWAY_WORKER_PROMOTE says so (``first``: only when the deployment has none, ``always``).
    A versioned worker gets no workflow task until its build is current or ramping."""

    def __init__(self, settings: Settings, build_id: str) -> None:
        self._settings = settings
        self._build_id = build_id

    def configure_worker(self, config: WorkerConfig) -> WorkerConfig:
        return config

    def configure_replayer(self, config: ReplayerConfig) -> ReplayerConfig:
        return config

    def run_replayer(self, replayer: Any, histories: Any, next: Any) -> Any:
        return next(replayer, histories)

    async def run_worker(self, worker: Worker,
                         next: Callable[[Worker], Awaitable[None]]) -> None:
        log = logging.getLogger("slipway")
        if self._settings.worker_promote != "never":
            try:
                change = await register_current(
                    worker.client, self._settings, self._build_id,
                    only_if_unset=self._settings.worker_promote == "first")
            except RPCError as error:  # e.g. another build claimed it first: poll anyway
                log.warning("could not make build %s current (%s): promote it with "
                            "`slipway worker promote %s`", self._build_id, error, self._build_id)
            else:
                if change is not None:
                    log.info("build %s is current in worker deployment %s (was %s)",
                             self._build_id, change.deployment,
                             change.previous_current or "unversioned")
        await next(worker)
