"""Closed vocabularies of the catalogue (see docs/architecture.md for the words)."""

from __future__ import annotations

from enum import StrEnum


class AppState(StrEnum):
    PENDING_REVIEW = "pending_review"
    READY = "ready"
    ONLINE = "online"
    RETIRING = "retiring"
    OFFLINE = "offline"


class AppCategory(StrEnum):
    IN_HOUSE = "in-house"
    COMMERCIAL = "commercial"
    EMPTY = "empty"


class AppTier(StrEnum):
    CORE = "core"
    NON_CORE = "non-core"
    EDGE = "edge"


class RuntimeKind(StrEnum):
    DOCKER = "docker"
    KUBERNETES = "kubernetes"


class Strategy(StrEnum):
    GRAY = "gray"  # grayscale: v2 beside v1, steps with wait-for-stable
    ROLLING = "rolling"  # batches of replicas, no stable wait unless configured
    RECREATE = "recreate"  # drain all -> stop -> start -> enable: apps that can't run two versions


class ApprovalPolicy(StrEnum):
    AUTO = "auto"  # required for core applications in prod
    REQUIRED = "required"
    NONE = "none"


class ChangeKind(StrEnum):
    CODE = "code"
    SCALE = "scale"
    RESOURCES = "resources"


class ChangeState(StrEnum):
    DEVELOPING = "developing"
    APPROVING = "approving"
    READY_TO_RELEASE = "ready_to_release"
    RELEASING = "releasing"
    RELEASED = "released"
    FAILED = "failed"
    CLOSED = "closed"


class ReleaseState(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    ROLLED_BACK = "rolled_back"
    FAILED = "failed"
    REJECTED = "rejected"
    APPROVAL_EXPIRED = "approval_expired"


# Apps in these states may not be released: not yet reviewed, or switched off for good.
UNRELEASABLE_APP_STATES = {AppState.PENDING_REVIEW, AppState.OFFLINE}
