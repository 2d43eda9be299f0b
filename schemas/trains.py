"""Release trains: several applications released together under one approval.

A train is a parent workflow (TrainWorkflow) with one child ReleaseWorkflow per member.
Members run in dependency order (``after``), independent ones in parallel. When a member
fails (its own release rolls itself back), the members still running are cancelled (they
roll themselves back) and the members that went out are rolled back to the baseline they
started from, newest first: the joint abort.
"""

from __future__ import annotations

import re
from datetime import datetime

from pydantic import BaseModel, Field, field_validator, model_validator

from schemas.approvals import ApprovalSubject
from schemas.enums import ReleaseState

_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,39}")


class TrainMember(BaseModel):
    app: str
    env: str  # type or type@cluster; the catalogue makes it canonical
    image: str | None = None
    ref: str | None = None
    # Apps of this train that must have gone out before this one starts.
    after: list[str] = Field(default_factory=list)
    # A train's rollback: run this member's baseline N again.
    rollback_to: int | None = None


class TrainRequest(BaseModel):
    """Input of TrainWorkflow."""

    name: str
    members: list[TrainMember]
    requested_by: str = ""
    # The train this one rolls back (its members' rollback_to are set).
    rollback_of: int | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.fullmatch(value):
            raise ValueError(f"train name {value!r}: 1-40 lowercase letters, digits and -, "
                             "starting with a letter or digit")
        return value

    @model_validator(mode="after")
    def _order(self) -> TrainRequest:
        apps = [member.app for member in self.members]
        if len(apps) < 2:
            raise ValueError("a train carries at least two applications (--app APP@ENV twice)")
        if len(set(apps)) != len(apps):
            raise ValueError("an application appears twice in the train: one release per app")
        for member in self.members:
            unknown = [app for app in member.after if app not in apps]
            if unknown:
                raise ValueError(f"{member.app} waits for {', '.join(unknown)}, which the "
                                 "train does not carry")
        waves(self.members)  # raises on a cycle
        return self


def waves(members: list[TrainMember]) -> list[list[str]]:
    """The apps in dependency order: each wave only waits for earlier waves."""
    done: set[str] = set()
    left = {member.app: set(member.after) for member in members}
    order: list[list[str]] = []
    while left:
        ready = [app for app, after in left.items() if after <= done]
        if not ready:
            raise ValueError(f"the train's order has a cycle among {', '.join(sorted(left))}")
        order.append(ready)
        done.update(ready)
        for app in ready:
            del left[app]
    return order


def chained(order: list[str]) -> dict[str, list[str]]:
    """``--order a,b,c``: each app after the one before it."""
    return {app: ([order[i - 1]] if i else []) for i, app in enumerate(order)}


class TrainMemberPlan(BaseModel):
    app: str
    env: str  # canonical type@cluster
    from_version: int  # the baseline it starts from (0: none)
    workflow_id: str


class TrainPlan(BaseModel):
    """What ``prepare_train`` loaded: the recorded train and who approves it."""

    train_id: int
    members: list[TrainMemberPlan]
    approval_required: bool
    approvers: list[str]
    approval_timeout_seconds: int = 86400


class TrainMemberStatus(BaseModel):
    app: str
    env: str
    state: str = "waiting"  # waiting, releasing, succeeded, rolled_back, failed, cancelled
    from_version: int = 0
    to_version: int | None = None  # the baseline it wrote
    workflow_id: str = ""
    run_id: str = ""
    error: str = ""
    rollback: str = ""  # the joint abort's rollback of this member: running, succeeded, …


class TrainStatus(BaseModel):
    """Answer of the train's ``status`` query. ``app``/``env``/``approvers``/``awaiting``/
    ``requested_by`` are what the approval desk reads (the train's name and ``train``)."""

    app: str
    env: str = "train"
    stage: str = "preparing"
    awaiting: str = ""
    requested_by: str = ""
    approvers: list[str] = Field(default_factory=list)
    members: list[TrainMemberStatus] = Field(default_factory=list)
    events: list[TrainEvent] = Field(default_factory=list)
    # What an approval of this train is bound to (its run, record and members).
    approval: ApprovalSubject | None = None


class TrainEvent(BaseModel):
    at: datetime
    message: str


class TrainOutcome(BaseModel):
    state: ReleaseState
    name: str
    train_id: int
    members: list[TrainMemberStatus]


class PrepareTrainInput(BaseModel):
    request: TrainRequest
    workflow_id: str
    run_id: str


class FinishTrainInput(BaseModel):
    train_id: int
    state: ReleaseState
    members: list[TrainMemberStatus]
    approved_by: str = ""
    error: str = ""


def train_workflow_id(name: str) -> str:
    """One running train per name."""
    return f"train:{name}"


TrainStatus.model_rebuild()
