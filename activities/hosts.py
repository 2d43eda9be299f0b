"""Activities of a host's drain that are neither a plain runtime nor a traffic step: what to
move (the host's replicas, as the catalogue describes their environments), and one replica
taken out of / put back into its load balancer by server name. Starting the replica again
and waiting for it are the runtime's own activities (RuntimeActivities)."""

from __future__ import annotations

from collections import defaultdict

from sqlmodel import select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.support import heartbeating, permanent
from catalogue.releases import env_key
from catalogue.store import CatalogueError, Store
from catalogue.tables import Application, Environment
from integrations.docker.runtime import (
    LABEL_APP,
    LABEL_ENV,
    LABEL_INDEX,
    LABEL_VERSION,
    DockerRuntime,
)
from integrations.haproxy.router import HaproxyRouter
from schemas.hosts import DrainHostRequest, DrainPlan, ReplicaMove
from schemas.models import Instance, StartVersionInput, VersionRef

LANE_LABEL = "slipway.lane"


class HostActivities:
    def __init__(self, runtimes: dict[str, DockerRuntime], router: HaproxyRouter,
                 store: Store, drain_timeout_seconds: float,
                 progress_deadline_seconds: float) -> None:
        self.runtimes = runtimes
        self.router = router
        self.store = store
        self.drain_timeout_seconds = drain_timeout_seconds
        self.progress_deadline_seconds = progress_deadline_seconds

    def _runtime(self, cluster: str) -> DockerRuntime:
        if cluster not in self.runtimes:
            raise ApplicationError(f"cluster {cluster!r} is not a Docker cluster of this "
                                   "worker", non_retryable=True)
        return self.runtimes[cluster]

    def _environments(self, cluster: str) -> dict[str, Environment]:
        """The cluster's environments by their key (``shop-prod-fleet``)."""
        with self.store.session() as session:
            rows = session.exec(select(Environment, Application).where(
                Environment.app_id == Application.id, Environment.cluster == cluster)).all()
        return {env_key(app.name, env.env_type, env.cluster): env for env, app in rows}

    @activity.defn
    def plan_host_drain(self, data: DrainHostRequest) -> DrainPlan:
        """Every replica of an environment on the host, with what starting it again takes;
        what stays (a lane's replica, an environment mid-release) with the reason."""
        with permanent(CatalogueError, KeyError):
            runtime = self._runtime(data.cluster)
            host = runtime.host(data.host)
            envs = self._environments(data.cluster)
            groups: dict[tuple[str, int], list[int]] = defaultdict(list)
            plan = DrainPlan()
            for container in runtime.replicas_held(host):
                labels = container.labels
                if labels.get(LANE_LABEL):
                    plan.skipped.append(f"{container.name}: lane {labels[LANE_LABEL]}'s "
                                        "replicas are moved by the lane (or its next deploy)")
                    continue
                groups[(labels[LABEL_ENV], int(labels[LABEL_VERSION]))].append(
                    int(labels[LABEL_INDEX]))
            for (key, version), indexes in sorted(groups.items()):
                env = envs.get(key)
                versions = runtime.versions(key)
                if env is None:
                    plan.skipped.append(f"{key}: no environment of the catalogue on "
                                        f"{data.cluster} runs it")
                    continue
                if len(versions) > 1:
                    plan.skipped.append(f"{key}: a release is in flight (versions "
                                        f"{', '.join(f'v{v}' for v in versions)}); drain "
                                        "again once it ends")
                    continue
                running = runtime.containers_on(host, key, version)
                image = running[0].labels.get("slipway.image", "") if running else ""
                replicas = sum(len(runtime.containers_on(other, key, version))
                               for other in runtime.hosts)
                spec = StartVersionInput(
                    version=VersionRef(app=running[0].labels[LABEL_APP], env_key=key,
                                       cluster=data.cluster, version=version),
                    image=image, replicas=replicas, ports=list(env.ports),
                    env_id=env.id or 0, cpu=env.cpu, memory=env.memory,
                    health_path=env.health_path)
                plan.moves += [ReplicaMove(
                    cluster=data.cluster, host=data.host, env_key=key, index=index, spec=spec,
                    port=env.ports[0] if env.ports else 8080,
                    drain_timeout_seconds=self.drain_timeout_seconds,
                    deadline_seconds=self.progress_deadline_seconds)
                    for index in sorted(indexes)]
            return plan

    @activity.defn
    def take_out(self, move: ReplicaMove) -> int:
        """Drain the replica's server (requests in flight finish, bounded), take it out of
        rotation, then remove the replica from the host; returns the weight it had (100 when
        it was already out). Idempotent."""
        name = f"v{move.spec.version.version}-{move.index}"
        with heartbeating(f"taking {name} of {move.env_key} off {move.host}"), \
                permanent(KeyError):
            weight = 100
            if name in {server.name for server in self.router.servers(move.env_key)}:
                recorded = self.router.intended(move.env_key).get(name)
                weight = recorded.weight if recorded and recorded.weight else 100
                self.router.drain(move.env_key, name)
                self.router.wait_idle(move.env_key, name, move.drain_timeout_seconds)
                self.router.remove_server(move.env_key, name)
            runtime = self._runtime(move.cluster)
            runtime.remove_replica(runtime.host(move.host), move.spec.version, move.index)
            return weight

    @activity.defn
    def put_back(self, move: ReplicaMove, instances: list[Instance], weight: int) -> str:
        """Put the replica, running again elsewhere, back in rotation; where it runs now."""
        name = f"v{move.spec.version.version}-{move.index}"
        found = [instance for instance in instances if instance.name == name]
        if not found:
            raise ApplicationError(f"{name} of {move.env_key} is not running after its move",
                                   non_retryable=True)
        with heartbeating(f"putting {name} of {move.env_key} back"):
            self.router.add_server(move.env_key, name, found[0].address, found[0].port,
                                   weight)
        return f"{name} of {move.env_key}: {move.host} → {found[0].address}"
