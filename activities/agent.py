"""Activities only a host's agent runs: its side of a placement, and a rollout step on its
own engine (start the replicas it was given, wait until they answer, return them).

The agent's runtimes each hold one host (the agent's own) per cluster that lists it, so
every container call here reaches the local engine only; the workflow places replicas across
hosts from what each agent reports (schemas/placement.py) and sends each agent its share.
"""

from __future__ import annotations

import contextlib

from docker.errors import NotFound
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.hosts import LANE_LABEL
from activities.runtime import RuntimeActivities
from activities.support import heartbeating, permanent
from catalogue.store import CatalogueError
from integrations.docker.placement import container_name
from integrations.docker.runtime import (
    LABEL_APP,
    LABEL_ENV,
    LABEL_INDEX,
    LABEL_VERSION,
    DockerRuntime,
)
from integrations.errors import PermanentRuntimeError
from schemas.hosts import (
    HeldReplica,
    HostBringUpInput,
    HostInventory,
    HostInventoryInput,
    ReplicaMove,
    TrimInput,
)
from schemas.models import Instance


class HostAgentActivities(RuntimeActivities):
    """A host agent's own activities; the cluster named in each input picks the runtime."""

    def _docker(self, cluster: str) -> DockerRuntime:
        runtime = self._runtime(cluster)
        if not isinstance(runtime, DockerRuntime) or len(runtime.hosts) != 1:
            raise ApplicationError(f"cluster {cluster!r} has no Docker host of this agent",
                                   type="ConfigurationError", non_retryable=True)
        return runtime

    @activity.defn
    def host_inventory(self, data: HostInventoryInput) -> HostInventory:
        """What of the version runs here (with the wanted image), and the host's load."""
        runtime = self._docker(data.cluster)
        host = runtime.hosts[0]
        with heartbeating(f"inventory of {host.name}"), permanent(PermanentRuntimeError):
            image_id = runtime.image_id_on(host, data.image)
            held = runtime.replicas_held(host)
            inventory = HostInventory(host=host.name, load=len(held))
            for container in held:
                if container.labels.get(LABEL_ENV) != data.env_key:
                    continue
                if container.labels.get(LABEL_VERSION) != str(data.version):
                    inventory.env_others += 1
                    continue
                inventory.has_version = True
                if image_id is not None and container.attrs.get("Image") == image_id:
                    inventory.kept.append(int(container.labels.get(LABEL_INDEX, "-1")))
            return inventory

    @activity.defn
    def bring_up_on_host(self, data: HostBringUpInput) -> list[Instance]:
        """Exactly ``indexes`` of the version run here with its image (others of the
        version here are removed), and answer their health check: the healthy instances.
        Progress in heartbeats, and (``report``) in the release's current details."""
        ref = data.spec.version
        runtime = self._docker(ref.cluster)
        host = runtime.hosts[0]
        relay = self._relay(data.report, ref.version)
        with heartbeating(f"v{ref.version} on {host.name}") as pulse, \
                permanent(PermanentRuntimeError, CatalogueError):
            spec = data.spec
            if spec.env_id and self.env_values is not None:
                spec = spec.model_copy(update={"env_vars": {**spec.env_vars,
                                                            **self.env_values(spec.env_id)}})
            wanted = {container_name(ref.env_key, ref.version, index, runtime.stack): index
                      for index in data.indexes}
            image_id = runtime.image_id_on(host, spec.image) if wanted else None
            kept: set[str] = set()
            for container in runtime.containers_on(host, ref.env_key, ref.version):
                if container.name in wanted and container.attrs.get("Image") == image_id:
                    if container.status != "running":
                        container.start()
                    kept.add(container.name)
                    continue
                with contextlib.suppress(NotFound):
                    container.remove(force=True)
            missing = [index for name, index in wanted.items() if name not in kept]
            if missing:
                runtime.image_on(host, spec.image)
            for index in missing:
                runtime.run_on(host, index, spec)
                pulse.progress(f"started replica {index} of v{ref.version} on {host.name}")
            if not wanted:
                return []

            def look(message: str) -> None:
                pulse.progress(message)
                relay.offer(message)

            return runtime.wait_ready(ref, len(wanted), data.port, spec.health_path,
                                      data.deadline_seconds, progress=look)

    @activity.defn
    def replicas_here(self, cluster: str) -> list[HeldReplica]:
        """Every replica of this stack on the host (what a drain moves)."""
        runtime = self._docker(cluster)
        with heartbeating(f"replicas on {runtime.hosts[0].name}"), \
                permanent(PermanentRuntimeError):
            return [HeldReplica(env_key=c.labels[LABEL_ENV],
                                version=int(c.labels[LABEL_VERSION]),
                                index=int(c.labels.get(LABEL_INDEX, "0")),
                                app=c.labels.get(LABEL_APP, ""),
                                image=c.labels.get("slipway.image", ""),
                                lane=c.labels.get(LANE_LABEL, ""))
                    for c in runtime.replicas_held(runtime.hosts[0])
                    if c.labels.get(LABEL_VERSION, "").isdigit()]

    @activity.defn
    def remove_replica(self, move: ReplicaMove) -> None:
        """Remove one replica of a version from the host (already gone is fine)."""
        runtime = self._docker(move.cluster)
        with heartbeating(f"removing v{move.spec.version.version}-{move.index}"), \
                permanent(PermanentRuntimeError):
            runtime.remove_replica(runtime.hosts[0], move.spec.version, move.index)

    @activity.defn
    def trim_version(self, data: TrimInput) -> int:
        """Scale a version down here: its replicas from index ``keep`` on removed (out of
        rotation already); how many were removed."""
        ref = data.version
        runtime = self._docker(ref.cluster)
        host = runtime.hosts[0]
        with heartbeating(f"v{ref.version} down to {data.keep} on {host.name}"), \
                permanent(PermanentRuntimeError):
            removed = 0
            for container in runtime.containers_on(host, ref.env_key, ref.version):
                if int(container.labels.get(LABEL_INDEX, "0")) >= data.keep:
                    with contextlib.suppress(NotFound):
                        container.remove(force=True)
                    removed += 1
            return removed
