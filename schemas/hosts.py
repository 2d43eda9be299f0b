"""Inputs and outputs of a host's drain (workflows/host_drain.py): every replica on a host
moved, one at a time, to the cluster's other hosts."""

from __future__ import annotations

from pydantic import BaseModel, Field

from schemas.models import StartVersionInput


def host_drain_workflow_id(cluster: str, host: str) -> str:
    return f"host-drain:{cluster}:{host}"


class DrainHostRequest(BaseModel):
    cluster: str
    host: str
    requested_by: str


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


class DrainOutcome(BaseModel):
    cluster: str
    host: str
    moved: list[str] = Field(default_factory=list)
    skipped: list[str] = Field(default_factory=list)
