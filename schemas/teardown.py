"""Inputs and outputs of EnvTeardownWorkflow: removing one environment of an application."""

from __future__ import annotations

from pydantic import BaseModel, Field

from schemas.models import PlanHost


def teardown_workflow_id(app: str, env: str) -> str:
    """At most one teardown per environment (``env`` as ``type@cluster``)."""
    return f"teardown:{app}:{env}"


class TeardownRequest(BaseModel):
    """Input of EnvTeardownWorkflow: remove ``app``'s environment ``env`` (``type@cluster``)."""

    app: str
    env: str
    requested_by: str = ""
    # Why, for the audit trail: "env remove", "app retired", …
    reason: str = ""


class TeardownPlan(BaseModel):
    """What the teardown needs of the environment, loaded once from the catalogue."""

    app: str
    env: str
    env_key: str
    cluster: str
    namespace: str = "default"
    lb_port: int
    health_path: str = "/healthz"
    ports: list[int] = Field(default_factory=lambda: [8080])
    drain_timeout_seconds: float = 30.0
    # Marked removed by an earlier run: the effects are re-run (idempotent), no second audit.
    already_removed: bool = False
    # Docker hosts with agents (each reached on its own task queue) and the LB host; empty:
    # every activity on the workflow's queue (Kubernetes, no agent, an older plan).
    hosts: list[PlanHost] = Field(default_factory=list)
    lb_host: str = ""


class ReleaseIdleInput(BaseModel):
    """Refuse when the environment's release workflow runs."""

    app: str
    env: str


class EnvRemovedInput(BaseModel):
    """Mark the environment removed in the catalogue and audit it (once)."""

    app: str
    env: str
    requested_by: str = ""
    reason: str = ""
    workflow_id: str = ""
    versions: list[int] = Field(default_factory=list)


class TeardownOutcome(BaseModel):
    app: str
    env: str
    versions: list[int] = Field(default_factory=list)
    already_removed: bool = False
