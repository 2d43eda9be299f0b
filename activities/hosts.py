"""Activities of a host's drain that are neither a plain runtime nor a traffic step: what to
move (the host's replicas, as the catalogue describes their environments), and one replica
taken out of / put back into its load balancer by server name. Starting the replica again
and waiting for it are the runtime's own activities (RuntimeActivities), or on hosts with
agents theirs (activities/agent.py); there the load-balancer steps run on the LB host's
agent and the catalogue steps on the workers."""

from __future__ import annotations

from collections import defaultdict

from sqlmodel import select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.support import heartbeating, permanent
from catalogue.hosts import agent_hosts, host_states
from catalogue.releases import env_key
from catalogue.store import CatalogueError, Store
from catalogue.tables import Application, Baseline, Environment, Release
from integrations.docker.runtime import (
    LABEL_APP,
    LABEL_ENV,
    LABEL_INDEX,
    LABEL_VERSION,
    DockerRuntime,
)
from integrations.haproxy.router import HaproxyRouter
from schemas.enums import ReleaseState
from schemas.hosts import (
    AgentHosts,
    DrainHostRequest,
    DrainPlan,
    HeldReplica,
    ReplicaMove,
    ServersAtInput,
)
from schemas.models import ImageSpec, Instance, StartVersionInput, VersionRef

LANE_LABEL = "slipway.lane"


class HostActivities:
    def __init__(self, runtimes: dict[str, DockerRuntime], router: HaproxyRouter,
                 store: Store, drain_timeout_seconds: float,
                 progress_deadline_seconds: float, agents_within: float = 120.0) -> None:
        self.runtimes = runtimes
        self.agents_within = agents_within
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
        weight = self.take_server_out(move)
        with heartbeating(f"removing v{move.spec.version.version}-{move.index} of "
                          f"{move.env_key} from {move.host}"), permanent(KeyError):
            runtime = self._runtime(move.cluster)
            runtime.remove_replica(runtime.host(move.host), move.spec.version, move.index)
        return weight

    @activity.defn
    def take_server_out(self, move: ReplicaMove) -> int:
        """The load balancer's part of :meth:`take_out` (on its host's agent): the replica's
        server drained (bounded by the move's drain timeout: 0 for a lost host's) and
        removed; the weight it had (100 when it was already out). Idempotent."""
        name = f"v{move.spec.version.version}-{move.index}"
        with heartbeating(f"taking {name} of {move.env_key} out of rotation"):
            if name not in {server.name for server in self.router.servers(move.env_key)}:
                return 100
            recorded = self.router.intended(move.env_key).get(name)
            weight = recorded.weight if recorded and recorded.weight else 100
            if move.drain_timeout_seconds > 0:
                self.router.drain(move.env_key, name)
                self.router.wait_idle(move.env_key, name, move.drain_timeout_seconds)
            self.router.remove_server(move.env_key, name)
            return weight

    @activity.defn
    def servers_at(self, data: ServersAtInput) -> list[HeldReplica]:
        """Replicas the load balancers route to ``address`` (a lost host's), from their
        recorded servers: what must run elsewhere now."""
        found: list[HeldReplica] = []
        recorded = self.router.intent.keys()  # every environment with servers recorded
        for key in recorded:
            for name, entry in self.router.intended(key).items():
                version, _, index = name.removeprefix("v").partition("-")
                if entry.address == data.address and version.isdigit() and index.isdigit():
                    found.append(HeldReplica(env_key=key, version=int(version),
                                             index=int(index)))
        return found

    @activity.defn
    def host_address(self, data: DrainHostRequest) -> str:
        """The address the host's replicas published on, as its agent registered it."""
        with permanent(CatalogueError):
            state = host_states(self.store).get((data.cluster, data.host))
            if state is None or not state.address:
                raise CatalogueError(f"no agent ever registered host {data.host} of "
                                     f"{data.cluster}")
            return state.address

    @activity.defn
    def agent_hosts(self, cluster: str) -> AgentHosts:
        """The cluster's hosts whose agents answer (none: the workers reach its engines)."""
        with permanent(CatalogueError), self.store.session() as session:
            found = agent_hosts(session, cluster, self.agents_within)
        return AgentHosts(cluster=cluster, **found)

    @activity.defn
    def plan_moves(self, data: DrainHostRequest, held: list[HeldReplica]) -> DrainPlan:
        """The moves of a drain on hosts with agents: every replica ``held`` (what the host's
        agent found there, or the load balancer routed to a lost host) of an environment
        of the catalogue, started again as its baseline records it; what stays, and why."""
        with permanent(CatalogueError):
            envs = self._environments(data.cluster)
            plan = DrainPlan()
            with self.store.session() as session:
                for replica in sorted(held, key=lambda r: (r.env_key, r.version, r.index)):
                    name = f"v{replica.version}-{replica.index} of {replica.env_key}"
                    env = envs.get(replica.env_key)
                    if replica.lane:
                        plan.skipped.append(f"{name}: lane {replica.lane}'s replicas are moved "
                                            "by the lane (or its next deploy)")
                        continue
                    if env is None:
                        plan.skipped.append(f"{name}: no environment of the catalogue on "
                                            f"{data.cluster} runs it")
                        continue
                    if session.exec(select(Release).where(
                            Release.env_id == env.id,
                            Release.state == ReleaseState.RUNNING)).first() is not None:
                        plan.skipped.append(f"{name}: a release is in flight; drain again "
                                            "once it ends")
                        if replica.env_key not in plan.in_flight:
                            plan.in_flight.append(replica.env_key)
                        continue
                    baseline = session.exec(select(Baseline).where(
                        Baseline.env_id == env.id, Baseline.version == replica.version)).first()
                    app = session.get(Application, env.app_id)
                    if baseline is None or app is None:
                        plan.skipped.append(f"{name}: no baseline records v{replica.version}")
                        continue
                    spec = StartVersionInput(
                        version=VersionRef(app=app.name, env_key=replica.env_key,
                                           cluster=data.cluster, version=replica.version,
                                           namespace=env.namespace),
                        image=ImageSpec(image=baseline.image, digest=baseline.digest).run_ref,
                        replicas=baseline.replicas, ports=list(env.ports),
                        env_id=env.id or 0, cpu=baseline.cpu, memory=baseline.memory,
                        health_path=env.health_path)
                    plan.moves.append(ReplicaMove(
                        cluster=data.cluster, host=data.host, env_key=replica.env_key,
                        index=replica.index, spec=spec,
                        port=env.ports[0] if env.ports else 8080,
                        drain_timeout_seconds=0 if data.lost else self.drain_timeout_seconds,
                        deadline_seconds=self.progress_deadline_seconds))
            return plan

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
