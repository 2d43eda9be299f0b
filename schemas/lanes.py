"""Pydantic models of swimlanes (泳道): SwimlaneWorkflow input, state, updates and activity I/O.

A lane is keyed everywhere (workflow id, namespace, branch, CI folder, DNS) by its name
normalised to a DNS-1123 label. Like schemas/models.py, nothing here holds a secret.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

MAX_LANE_NAME = 63  # a DNS-1123 label, so the name fits a namespace and a DNS label

# Activity names the workflow calls by name: their implementations (runtime namespace, GitLab
# branch, Jenkins job, config fork, DNS, webhook, deploy) live in activities/ and dispatch on
# ``kind``, so the workflow only knows the generic create/delete contract.
CREATE_LANE_RESOURCE = "create_lane_resource"
DELETE_LANE_RESOURCE = "delete_lane_resource"
DEPLOY_LANE_BUILD = "deploy_lane_build"
RECORD_LANE = "record_lane"


class ResourceKind(StrEnum):
    """What a ledger entry is; the order below is the order of creation."""

    NAMESPACE = "namespace"
    # The lane's consumer groups and message policy on the broker (once per lane).
    MESSAGES = "messages"
    BRANCH = "branch"
    CI_JOB = "ci_job"
    CONFIG = "config"
    DNS = "dns"
    WEBHOOK = "webhook"
    DEPLOYMENT = "deployment"


class MessagePolicy(StrEnum):
    """Who consumes the messages a lane produces (seed 004's two strategies)."""

    # Lane-produce/QA-consume (default): the baseline's consumers take the lane's messages;
    # a lane needs no consumer of its own for every topic its services produce to.
    QA_CONSUME = "qa-consume"
    # Lane-produce/lane-consume: only the lane's consumers take them; the baseline skips them.
    LANE_CONSUME = "lane-consume"


# Created once per app, in this order, after the lane's namespace.
APP_RESOURCE_KINDS = (
    ResourceKind.BRANCH,
    ResourceKind.CI_JOB,
    ResourceKind.CONFIG,
    ResourceKind.DNS,
    ResourceKind.WEBHOOK,
    ResourceKind.DEPLOYMENT,
)


class LaneStage(StrEnum):
    CREATING = "creating"
    ACTIVE = "active"
    PENDING_DELETION = "pending_deletion"
    DELETING = "deleting"
    DELETED = "deleted"
    # Create failed and what it had made was torn down.
    FAILED = "failed"
    # A teardown step failed after its retries: the rest is kept in the ledger, delete re-runs.
    TEARDOWN_FAILED = "teardown_failed"
    # Catalogue only: the janitor found the lane's workflow gone before its teardown finished.
    LOST = "lost"


# Stages after which a lane's catalogue row needs no more attention.
FINISHED_STAGES = (LaneStage.DELETED, LaneStage.FAILED, LaneStage.LOST)


def normalise_lane_name(text: str) -> str:
    """``text`` as a DNS-1123 label: lowercase ``[a-z0-9-]``, other characters become ``-``,
    runs of ``-`` collapse, no ``-`` at either end, at most 63 characters.

    Raises ValueError when nothing is left, so a person sees which name was refused.
    """
    name = re.sub(r"[^a-z0-9-]", "-", text.strip().lower())
    name = re.sub(r"-{2,}", "-", name).strip("-")
    # Cutting may leave a trailing "-", which a label may not end with.
    name = name[:MAX_LANE_NAME].rstrip("-")
    if not name:
        raise ValueError(f"lane name {text!r} is empty after normalising: use letters or digits")
    return name


def lane_workflow_id(name: str) -> str:
    """One workflow per lane: its id is the normalised name's."""
    return f"swimlane:{normalise_lane_name(name)}"


class LaneSpec(BaseModel):
    """Input of SwimlaneWorkflow: what the lane holds and how long it may stay idle."""

    name: str
    apps: list[str]
    # Bounds (schemas.durations) are checked by the CLI and at the start of the workflow, not
    # here: a value that failed to decode would fail the workflow task again and again.
    ttl_seconds: int = 6 * 86400
    grace_seconds: int = 86400
    ticket: str = ""
    description: str = ""
    requested_by: str = ""
    # Where the TTL notice tells people they can renew over HTTP (the receiver), if anywhere.
    renew_url: str = ""
    # While a lane's instance of an app is down, its keyed requests get a 503 (True) instead
    # of the QA baseline (False, the default: see docs/lanes.md for why).
    fail_closed: bool = False
    messages: MessagePolicy = MessagePolicy.QA_CONSUME


class LedgerEntry(BaseModel):
    """One created resource: enough for ``delete_lane_resource`` to remove it on its own."""

    kind: ResourceKind
    key: str
    detail: dict[str, Any] = Field(default_factory=dict)
    app: str = ""


class LaneResourceInput(BaseModel):
    """Input of ``create_lane_resource``: create (or adopt) one resource of ``lane``.

    Idempotent by (lane, kind, key): a retry or a resource already present is no error.
    """

    lane: str
    kind: ResourceKind
    key: str
    app: str = ""
    fail_closed: bool = False
    messages: MessagePolicy = MessagePolicy.QA_CONSUME


class LaneDeployInput(BaseModel):
    """Input of ``deploy_lane_build``: run ``image`` as the next version of the app whose
    deployment ``entry`` is, then retire that one."""

    lane: str
    entry: LedgerEntry
    image: str


class LaneRecordInput(BaseModel):
    """Input of ``record_lane``: the lane as the catalogue should show it now."""

    name: str
    workflow_id: str
    apps: list[str]
    stage: LaneStage
    expires_at: datetime | None = None
    ticket: str = ""
    description: str = ""
    requested_by: str = ""
    actor: str = ""  # who caused this change (empty: the lane's own timers)


class LaneState(BaseModel):
    """Everything the workflow knows, carried across continue-as-new."""

    spec: LaneSpec
    ledger: list[LedgerEntry] = Field(default_factory=list)
    stage: LaneStage = LaneStage.CREATING
    last_activity: datetime
    # When the lane will be deleted if nobody renews it (the notice goes out a grace earlier).
    expires_at: datetime
    notice_sent: bool = False


class RenewInput(BaseModel):
    user: str


class LaneActivityInput(BaseModel):
    """Something happened in the lane that counts as use (e.g. a push deployed an app)."""

    source: str
    detail: str = ""


class LanePushInput(BaseModel):
    """A push to ``feature/<lane>`` of an app's repository: build it, deploy it into the lane."""

    app: str
    source: str  # the app's repository, as the catalogue has it
    sha: str  # the pushed commit ("" from `slipway lane deploy`: a local source as it is)
    user: str = ""
    event_id: str = ""


class LanePushResult(BaseModel):
    """Answer of the ``push`` update: what now runs in the lane for the app."""

    lane: str
    app: str
    sha: str
    image: str
    url: str = ""


class LaneAppsInput(BaseModel):
    add: list[str] = Field(default_factory=list)
    remove: list[str] = Field(default_factory=list)
    user: str = ""


class DeleteInput(BaseModel):
    user: str


class DeleteResult(BaseModel):
    """Answer of the ``delete`` update: every resource removed, in the order removed."""

    name: str
    removed: list[LedgerEntry]


class LaneStatus(BaseModel):
    """Answer of the ``status`` query."""

    name: str
    apps: list[str]
    stage: LaneStage
    expires_at: datetime
    ledger: list[LedgerEntry]
    last_activity: datetime | None = None
    notice_sent: bool = False
    ticket: str = ""
    description: str = ""


class JanitorReport(BaseModel):
    """Result of JanitorWorkflow: what it swept per dead lane, and lanes found lost."""

    removed: dict[str, list[str]] = Field(default_factory=dict)
    lost: list[str] = Field(default_factory=list)
