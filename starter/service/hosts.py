"""The Docker hosts of the clusters, as configured (``SLIPWAY_CLUSTERS``), with what people
decided about them: cordoned hosts get no new replica (catalogue.hosts); a drain moves what
runs on one (workflows/host_drain.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy

from catalogue.hosts import HostState, host_states, set_cordoned
from catalogue.store import CatalogueError, Store
from schemas.hosts import DrainHostRequest, host_drain_workflow_id
from schemas.settings import DockerHost, Settings
from workflows.host_drain import HostDrainWorkflow


@dataclass(frozen=True)
class HostView:
    """One host of a Docker cluster and its state."""

    cluster: str
    host: DockerHost
    cordoned: bool = False
    reason: str = ""
    changed_by: str = ""
    changed_at: datetime | None = None
    # Its agent's last beat (None: no agent registered it), and whether it is the LB host.
    last_seen: datetime | None = None
    load_balancer: bool = False
    lost: bool = False


def docker_hosts(settings: Settings) -> list[tuple[str, DockerHost]]:
    return [(name, host) for name, cluster in settings.clusters.items()
            if cluster.runtime == "docker" for host in cluster.hosts]


def list_hosts(store: Store, settings: Settings) -> list[HostView]:
    """Every Docker host of every cluster, in configuration order, with its state."""
    states = host_states(store)
    views = []
    for cluster, host in docker_hosts(settings):
        state: HostState | None = states.get((cluster, host.name))
        views.append(HostView(cluster, host) if state is None else HostView(
            cluster, host, state.cordoned, state.reason, state.changed_by, state.changed_at,
            state.last_seen, state.load_balancer, state.lost))
    return views


def find_host(settings: Settings, name: str, cluster: str = "") -> tuple[str, DockerHost]:
    """(cluster, host) of the host ``name`` (in ``cluster`` when given); CatalogueError
    naming the hosts there are when it is unknown or in more than one cluster."""
    known = docker_hosts(settings)
    found = [(where, host) for where, host in known
             if host.name == name and (not cluster or where == cluster)]
    if len(found) == 1:
        return found[0]
    listed = ", ".join(f"{host.name} ({where})" for where, host in known) or "none"
    if not found:
        raise CatalogueError(f"no Docker host {name!r}{f' in cluster {cluster}' if cluster else ''}"
                             f": the hosts are {listed} (SLIPWAY_CLUSTERS)")
    raise CatalogueError(f"host {name!r} is in clusters {', '.join(w for w, _ in found)}: "
                         "say which with --cluster")


def cordon(store: Store, settings: Settings, name: str, cluster: str, reason: str,
           actor: str, cordoned: bool = True) -> tuple[str, HostState]:
    """Cordon (or uncordon) host ``name``; returns its cluster and new state."""
    where, host = find_host(settings, name, cluster)
    reason = " ".join(reason.split())
    if cordoned and not reason:
        raise CatalogueError("cordoning a host needs a reason (--reason), for the others")
    return where, set_cordoned(store, where, host.name, cordoned, reason, actor)


async def start_drain(client: Client, store: Store, settings: Settings, name: str,
                      cluster: str, reason: str, actor: str) -> WorkflowHandle[Any, Any]:
    """Cordon the host (a reason is needed unless it is cordoned already) and start its
    drain; a drain of the host already running is the one asked for: its handle."""
    where, host = find_host(settings, name, cluster)
    state = host_states(store).get((where, host.name))
    if state is None or not state.cordoned or reason.strip():
        cordon(store, settings, host.name, where, reason, actor)
    request = DrainHostRequest(cluster=where, host=host.name, requested_by=actor)
    return await client.start_workflow(
        HostDrainWorkflow.run, request, id=host_drain_workflow_id(where, host.name),
        task_queue=settings.task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING)
