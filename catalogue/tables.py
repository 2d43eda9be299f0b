"""The catalogue's tables (sqlmodel). The schema itself is created by alembic
(catalogue/migrations/)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, Index, String, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from schemas.enums import (
    AppCategory,
    ApprovalPolicy,
    AppState,
    AppTier,
    ChangeKind,
    ChangeState,
    ReleaseState,
    RuntimeKind,
    Strategy,
)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Application(SQLModel, table=True):
    """A deployable service (应用): registered, reviewed, then released into environments."""

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True, unique=True)
    state: AppState = Field(default=AppState.PENDING_REVIEW, sa_type=String(32))
    category: AppCategory = Field(default=AppCategory.IN_HOUSE, sa_type=String(32))
    tier: AppTier = Field(default=AppTier.NON_CORE, sa_type=String(32))
    owners: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    approvers: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    # The team that owns it ("" for none): tokens limited to a team act on its applications.
    team: str = ""
    # Where builds come from: a local directory or a git URL (Docker engine builder).
    source: str = ""
    description: str = ""
    created_at: datetime = Field(default_factory=utcnow)


class Environment(SQLModel, table=True):
    """One application on one (env type, cluster) pair (环境), with its resources."""

    __table_args__ = (UniqueConstraint("app_id", "env_type", "cluster"),)

    id: int | None = Field(default=None, primary_key=True)
    app_id: int = Field(foreign_key="application.id", index=True)
    env_type: str
    cluster: str
    replicas: int = 1
    cpu: str = ""
    memory: str = ""
    ports: list[int] = Field(default_factory=lambda: [8080], sa_column=Column(JSON, nullable=False))
    env_vars: dict[str, str] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    runtime: RuntimeKind = Field(default=RuntimeKind.DOCKER, sa_type=String(32))
    namespace: str = "default"
    strategy: Strategy = Field(default=Strategy.RECREATE, sa_type=String(32))
    # Grayscale steps: "1" = one replica, "50%" = half the replicas, "gate" = wait for promote.
    gray_steps: list[str] = Field(default_factory=lambda: ["1", "50%", "100%"],
                                  sa_column=Column(JSON, nullable=False))
    stable_seconds: int = 60
    batch_size: int = 1
    approval: ApprovalPolicy = Field(default=ApprovalPolicy.AUTO, sa_type=String(32))
    approval_timeout_seconds: int = 86400
    health_path: str = "/healthz"
    # Port the environment's load balancer listens on; unique across the catalogue.
    lb_port: int = Field(unique=True)
    # Canary analysis (schemas.analysis.AnalysisPolicy as JSON); empty: health checks only.
    analysis: dict[str, Any] = Field(default_factory=dict,
                                     sa_column=Column(JSON, nullable=False))
    # Automatic releases (hooks, trains) hold after a manual rollback until a person lifts
    # the hold (`slipway env resume-auto`): why ("" = no hold), who, when (catalogue/holds.py).
    auto_hold: str = ""
    auto_hold_by: str = ""
    auto_hold_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)

    @property
    def name(self) -> str:
        return f"{self.env_type}@{self.cluster}"


class Build(SQLModel, table=True):
    """An image built from a source ref (镜像构建): full reference and digest.

    A release records its build once: (workflow id, label) is unique among builds recorded by
    a workflow, so overlapping retries of ``record_build`` cannot write two rows.
    """

    __table_args__ = (
        Index("ux_build_workflow_label", "workflow_id", "version_label", unique=True,
              sqlite_where=text("workflow_id != ''"),
              postgresql_where=text("workflow_id != ''")),
    )

    id: int | None = Field(default=None, primary_key=True)
    app_id: int = Field(foreign_key="application.id", index=True)
    ref: str = ""
    version_label: str
    note: str = ""
    image: str
    digest: str = ""
    workflow_id: str = Field(default="", index=True)
    created_at: datetime = Field(default_factory=utcnow)


class Change(SQLModel, table=True):
    """What a release carries out (变更单). Released at most once."""

    id: int | None = Field(default=None, primary_key=True)
    app_id: int = Field(foreign_key="application.id", index=True)
    env_id: int = Field(foreign_key="environment.id", index=True)
    kind: ChangeKind = Field(default=ChangeKind.CODE, sa_type=String(32))
    state: ChangeState = Field(default=ChangeState.DEVELOPING, sa_type=String(32))
    image: str = ""
    ref: str = ""
    replicas: int | None = None
    requested_by: str = ""
    note: str = ""
    cpu: str = ""
    memory: str = ""
    rollback_count: int = 0
    created_at: datetime = Field(default_factory=utcnow)


class Release(SQLModel, table=True):
    """One execution of a change on one environment (发布单) = one ReleaseWorkflow run."""

    id: int | None = Field(default=None, primary_key=True)
    app_id: int = Field(foreign_key="application.id", index=True)
    env_id: int = Field(foreign_key="environment.id", index=True)
    change_id: int | None = Field(default=None, foreign_key="change.id")
    workflow_id: str = Field(index=True)
    run_id: str = Field(unique=True)
    state: ReleaseState = Field(default=ReleaseState.RUNNING, sa_type=String(32))
    from_version: int = 0
    to_version: int
    image: str = ""
    requested_by: str = ""
    approved_by: str = ""
    # A rollback release targets an older baseline; it still rolls forward as N+1.
    rollback_to: int | None = None
    # It rolls back the baseline it started from (to an older one, or to a fix-forward image).
    rollback: bool = False
    # A break-glass release passes freezes and deploy windows; this is the reason given.
    break_glass: str = ""
    # The release train it belongs to, if any.
    train_id: int | None = Field(default=None, foreign_key="train.id", index=True)
    # The target's digest, and whether the target was checked against the application's
    # rejected versions (catalogue/rejections.py): a rolled-back release rejects it.
    digest: str = ""
    image_checked: bool = False
    # Released although rejected: the person's reason (`--allow-rejected`).
    allow_rejected: str = ""
    error: str = ""
    started_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None


class Baseline(SQLModel, table=True):
    """Versioned record of what runs in an environment (基线). Version N+1 per release."""

    __table_args__ = (UniqueConstraint("env_id", "version"),)

    id: int | None = Field(default=None, primary_key=True)
    env_id: int = Field(foreign_key="environment.id", index=True)
    version: int
    image: str
    digest: str = ""
    replicas: int
    cpu: str = ""
    memory: str = ""
    config_version: str = ""
    release_id: int | None = Field(default=None, foreign_key="release.id", unique=True)
    rolled_back_from: int | None = None
    created_at: datetime = Field(default_factory=utcnow)
    # Replicas per Docker host (hosts with agents): a rollback puts them back there.
    placement: dict[str, int] = Field(default_factory=dict,
                                      sa_column=Column(JSON, nullable=False, default=dict))


class AnalysisMeasurement(SQLModel, table=True):
    """One canary-analysis measurement of a release's step: value, condition, verdict."""

    id: int | None = Field(default=None, primary_key=True)
    release_id: int = Field(foreign_key="release.id", index=True)
    step: int
    metric: str
    mode: str
    at: datetime
    value: float | None = None
    baseline: float | None = None
    sample: int | None = None
    condition: str = ""
    verdict: str
    detail: str = ""


class FreezeRecord(SQLModel, table=True):
    """A freeze or deploy window (schemas.freezes.FreezeRule) as stored."""

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(default="freeze", sa_type=String(16))
    scope: str = Field(index=True)
    reason: str = ""
    starts_at: datetime
    ends_at: datetime | None = None
    rrule: str = ""
    duration_seconds: int = 0
    timezone: str = "UTC"
    incident: bool = False
    created_by: str = ""
    created_at: datetime = Field(default_factory=utcnow)


class Train(SQLModel, table=True):
    """A release train: several applications released together under one approval."""

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True)
    workflow_id: str
    run_id: str = Field(unique=True)
    state: ReleaseState = Field(default=ReleaseState.RUNNING, sa_type=String(32))
    # schemas.trains.TrainMemberStatus of each member, as of the last write.
    members: list[dict[str, Any]] = Field(default_factory=list,
                                          sa_column=Column(JSON, nullable=False))
    requested_by: str = ""
    approved_by: str = ""
    # The train this one rolled back.
    rollback_of: int | None = None
    error: str = ""
    started_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None


class AuditEvent(SQLModel, table=True):
    """Who did what to which application and environment, and when."""

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, index=True)
    actor: str = ""
    action: str
    app: str = Field(default="", index=True)
    env: str = ""
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class LaneRecord(SQLModel, table=True):
    """The catalogue's view of a swimlane, written by its workflow at each stage change.

    The workflow is the truth (``slipway lane show``); this row is what reports and the
    janitor read: a lane whose row is not finished but whose workflow is gone is ``lost``.
    """

    __tablename__ = "lane"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True, unique=True)
    workflow_id: str
    apps: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    stage: str = Field(default="creating", sa_type=String(32))
    ticket: str = ""
    description: str = ""
    requested_by: str = ""
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime | None = None
