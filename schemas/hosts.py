"""Inputs and outputs of a host's drain (workflows/host_drain.py): every replica on a host
moved, one at a time, to the cluster's other hosts."""

from __future__ import annotations

from pydantic import BaseModel, Field

from schemas.models import PlanHost, StartVersionInput, VersionRef


def host_drain_workflow_id(cluster: str, host: str) -> str:
    return f"host-drain:{cluster}:{host}"


class DrainHostRequest(BaseModel):
    cluster: str
    host: str
    requested_by: str
    # The host's agent is gone for good: its replicas are started again elsewhere without
    # asking it (what ran there is read from the load balancer), their servers taken out.
    lost: bool = False


class ReplicaMove(BaseModel):
    """One replica to move off the host: drain its server, remove it, start it again where
    placement puts it (never a cordoned host), put it back in rotation."""

    cluster: str
    host: str
    env_key: str
    index: int
    # The replica's version as it runs now (image, ports, resources; replicas of it).
    spec: StartVersionInput
    port: int
    drain_timeout_seconds: float
    deadline_seconds: float


class DrainPlan(BaseModel):
    moves: list[ReplicaMove] = Field(default_factory=list)
    # What stays on the host, and why (a lane's replica, a release in flight).
    skipped: list[str] = Field(default_factory=list)
    # Environments skipped because a release of theirs is in flight (a lost host's drain
    # comes back for them once it ends).
    in_flight: list[str] = Field(default_factory=list)


class AgentHosts(BaseModel):
    """A cluster's hosts whose agents answer, and its load-balancer host; empty ``hosts``: no
    agent ever registered a host of the cluster (the workers reach its engines)."""

    app: str = ""
    env_key: str = ""
    cluster: str = ""
    namespace: str = "default"
    hosts: list[PlanHost] = Field(default_factory=list)
    lb_host: str = ""


class HeldReplica(BaseModel):
    """A replica found on a host (by its agent) or routed to it (by the load balancer)."""

    env_key: str
    version: int
    index: int
    app: str = ""
    image: str = ""
    # A lane's replica: moved by its lane, not by a drain.
    lane: str = ""


class ServersAtInput(BaseModel):
    """The load-balancer servers that route to ``address`` (a lost host's)."""

    cluster: str
    address: str


class DrainOutcome(BaseModel):
    cluster: str
    host: str
    moved: list[str] = Field(default_factory=list)
    skipped: list[str] = Field(default_factory=list)


class HostInventoryInput(BaseModel):
    """What an agent is asked before replicas of a version are placed."""

    cluster: str
    env_key: str
    version: int
    image: str


class HostInventory(BaseModel):
    """One host's side of a placement: what of the version it already runs, and its load."""

    host: str
    # Indexes of the version's replicas that run ``image`` here (kept where they are).
    kept: list[int] = Field(default_factory=list)
    # Whether any container of the version is here (kept or to be replaced).
    has_version: bool = False
    # Replicas of the environment's other versions here, and of this stack, all
    # environments (what the host's capacity limits).
    env_others: int = 0
    load: int = 0


class HostBringUpInput(BaseModel):
    """A step on one host: exactly ``indexes`` of the version run here, healthy."""

    spec: StartVersionInput
    indexes: list[int]
    port: int
    deadline_seconds: float
    report: bool = False


class TrimInput(BaseModel):
    """A version scaled down on one host: its replicas from index ``keep`` on removed."""

    version: VersionRef
    keep: int


class AgentRegistration(BaseModel):
    """What a host agent says of its host when it starts and at every beat."""

    cluster: str
    host: str
    address: str
    engine: str
    labels: dict[str, str] = Field(default_factory=dict)
    capacity: int = 0
    load_balancer: bool = False
    agent: str = ""
