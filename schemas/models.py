"""Pydantic models that cross the Temporal boundary: workflow and activity inputs/outputs.

One model per input so fields can be added without breaking running workflows. None of them
holds a secret: credentials travel by name and are resolved inside integrations.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import AliasChoices, BaseModel, Field

from schemas.analysis import AnalysisPolicy, Measurement
from schemas.approvals import ApprovalSubject
from schemas.enums import ReleaseState, Strategy


def release_workflow_id(app: str, env: str) -> str:
    """At most one release per environment: the id is the environment's."""
    return f"release:{app}:{env}"


class ReleaseRequest(BaseModel):
    """Input of ReleaseWorkflow: release ``app`` on ``env`` (``type@cluster``)."""

    app: str
    env: str
    image: str | None = None
    ref: str | None = None
    version_label: str | None = None
    requested_by: str = ""
    change_id: int | None = None
    # A scale or resources change overrides the environment's values for this release.
    replicas: int | None = None
    cpu: str | None = None
    memory: str | None = None
    # Roll back: run baseline N's image again (it rolls forward as N+1).
    rollback_to: int | None = None
    # Roll back the current baseline with ``image`` instead (fix forward); implied by
    # rollback_to. Either way the release is recorded and counted as a rollback; with an
    # image it is approved, analysed and held by freezes as any release is.
    rollback: bool = False
    # A rollback through today's steps and stable waits instead of the fast switch.
    gradual: bool = False
    # Refuse at once, instead of waiting, when the environment is frozen or outside its
    # deploy windows.
    no_wait: bool = False
    # Break glass: pass freezes and windows; needs this reason and a second approver.
    break_glass: str = ""
    # Part of release train N: the train's approval covers it.
    train_id: int | None = None
    # What started it when no person did: "hook" (held after a manual rollback).
    trigger: str = ""
    # Release a rejected version all the same: the person's reason (audited, recorded).
    allow_rejected: str = ""
    # Set only by the release itself when it continues as new while waiting out a freeze.
    resume: ReleaseResume | None = None

    @property
    def is_rollback(self) -> bool:
        return self.rollback or self.rollback_to is not None


class PrepareReleaseInput(BaseModel):
    request: ReleaseRequest
    workflow_id: str
    run_id: str


class ImageSpec(BaseModel):
    """An image ready to run: full reference plus content digest.

    For an image in a registry the digest is the manifest digest; for an image that only
    exists on the engine it is the image ID. Either way :attr:`run_ref` never moves, unlike
    a tag, so a rollback runs exactly what the baseline recorded.
    """

    image: str
    digest: str = ""

    @property
    def run_ref(self) -> str:
        if not self.digest:
            return self.image
        first = self.image.split("/", 1)[0]
        in_registry = "/" in self.image and ("." in first or ":" in first or first == "localhost")
        if not in_registry:
            return self.digest
        repository = self.image.split("@", 1)[0]
        if ":" in repository.rsplit("/", 1)[-1]:
            repository = repository.rsplit(":", 1)[0]
        return f"{repository}@{self.digest}"


class PlanHost(BaseModel):
    """A Docker host a release may reach through its agent."""

    name: str
    capacity: int = 0
    # Cordoned: keeps what runs there, gets no new replica.
    cordoned: bool = False


class ReleasePlan(BaseModel):
    """Everything the workflow needs, loaded and validated once by ``prepare_release``."""

    release_id: int
    app: str
    env: str
    env_key: str
    lb_port: int
    cluster: str
    strategy: Strategy
    replicas: int
    ports: list[int]
    # Values only in plans made before values were kept out of history; now empty: the
    # names say what is set, and start_version reads the values from the catalogue (env_id).
    env_vars: dict[str, str] = Field(default_factory=dict)
    env_var_names: list[str] = Field(default_factory=list)
    env_id: int = 0
    cpu: str = ""
    memory: str = ""
    health_path: str = "/healthz"
    source: str = ""
    from_version: int
    to_version: int
    current: ImageSpec | None = None
    current_replicas: int = 0
    target: ImageSpec | None = None
    namespace: str = "default"
    drain_timeout_seconds: float = 30.0
    progress_deadline_seconds: float = 600.0
    gray_steps: list[str] = Field(default_factory=lambda: ["1", "50%", "100%"])
    stable_seconds: int = 60
    batch_size: int = 1
    approval_required: bool = False
    approvers: list[str] = Field(default_factory=list)
    approval_timeout_seconds: int = 86400
    requested_by: str = ""
    rollback_to: int | None = None
    # A rollback to a recent baseline (an emergency undo: no approval under the `auto`
    # policy, passes freezes); a rollback to an older one is approved first.
    rollback_recent: bool = False
    # Canary analysis judging every stable wait; None: health checks only.
    analysis: AnalysisPolicy | None = None
    # Why the environment's policy does not judge this release (a rollback to a baseline),
    # told in its events; empty: no policy, or it judges.
    analysis_skipped: str = ""
    # A rollback straight to the old version at full strength: no steps, no stable waits.
    fast_rollback: bool = False
    # Passes freezes and deploy windows (the reason given); approval is then required.
    break_glass: str = ""
    no_wait: bool = False
    # Docker hosts whose agents run this release's containers (each on its own task queue),
    # in placement order; empty: the runtime's activities run on the workflow's own queue (a
    # Kubernetes cluster, a Docker cluster no agent ever registered for, an older plan).
    hosts: list[PlanHost] = Field(default_factory=list)
    # The host whose agent runs the environment's load balancer.
    lb_host: str = ""
    # Replicas per host of the target's and of the current baseline, as recorded when they
    # were released: a rollback puts a version back where it ran.
    target_placement: dict[str, int] = Field(default_factory=dict)
    current_placement: dict[str, int] = Field(default_factory=dict)


class BuildInput(BaseModel):
    app: str
    source: str
    ref: str | None = None
    version_label: str
    workflow_id: str
    # A Jenkins job to build with instead of the app's builder rule: a lane's own job.
    jenkins_job: str = ""


class RecordBuildInput(BaseModel):
    app: str
    ref: str | None = None
    version_label: str
    image: ImageSpec
    workflow_id: str


class ResolveImageInput(BaseModel):
    image: str


class VersionRef(BaseModel):
    """Identifies the instances of one version of an app in one environment."""

    app: str
    env_key: str
    cluster: str
    version: int
    namespace: str = "default"


class StartVersionInput(BaseModel):
    version: VersionRef
    image: str
    replicas: int
    ports: list[int]
    # Set only when no catalogue holds them (lanes, older releases): a release passes env_id
    # and start_version reads the values there, so they never enter workflow history.
    env_vars: dict[str, str] = Field(default_factory=dict)
    env_id: int = 0
    cpu: str = ""
    memory: str = ""
    health_path: str = "/healthz"
    # Extra labels, e.g. ``slipway.lane`` so the janitor can find a lane's containers.
    labels: dict[str, str] = Field(default_factory=dict)


class Instance(BaseModel):
    """One running replica, as the load balancer sees it."""

    name: str
    version: int
    address: str
    port: int


class WaitReadyInput(BaseModel):
    version: VersionRef
    replicas: int
    port: int
    health_path: str
    deadline_seconds: float
    # Tell the workflow what each look sees (signal ``probe``, a ProbeReport): a release
    # shows it in the Web UI's current details. Only workflows with that handler ask for it.
    report: bool = False


class EnsureFrontendInput(BaseModel):
    """Make the environment's entry point exist: an HAProxy frontend, or a Service."""

    env_key: str
    lb_port: int
    health_path: str = "/healthz"
    cluster: str = ""
    app: str = ""
    namespace: str = "default"
    ports: list[int] = Field(default_factory=lambda: [8080])


class TrafficInput(BaseModel):
    env_key: str
    instances: list[Instance]
    cluster: str = ""
    namespace: str = "default"


class ShiftInput(BaseModel):
    """One change of a load balancer: new servers in rotation, then (``drain``) an old
    version's servers drained from index ``keep`` on and taken out."""

    add: TrafficInput
    drain: DrainInput | None = None


class DrainInput(BaseModel):
    """Drain every load-balancer server of ``version``, then take them out."""

    env_key: str
    version: int
    timeout_seconds: float
    cluster: str = ""
    namespace: str = "default"
    # Keep the first ``keep`` replicas (v3-0 … v3-<keep-1>) in rotation: scaling down.
    keep: int = 0


class ListVersionsInput(BaseModel):
    app: str
    env_key: str
    cluster: str
    namespace: str = "default"


class FinishReleaseInput(BaseModel):
    release_id: int
    state: ReleaseState
    image: ImageSpec | None = None
    error: str = ""
    approved_by: str = ""
    # Replicas per host of the new version (Docker hosts with agents): the baseline's record.
    placement: dict[str, int] = Field(default_factory=dict)


class NoteApprovalInput(BaseModel):
    """The release waits for approval (``approver`` empty) or was approved by ``approver``."""

    release_id: int
    approver: str = ""
    via: str = ""  # how the approval was authenticated (door, token name)


class FinishReleaseResult(BaseModel):
    baseline_version: int | None = None


class ApprovalLinkRequest(BaseModel):
    """Ask the notifier to add approve/reject links for each approver (never the requester):
    the links are made and sent by the activity, so they never enter workflow history."""

    release: str  # workflow id
    approvers: list[str]
    requested_by: str = ""
    seconds: int  # how long the links are valid
    run: str = ""  # the run the links name (a link never decides another run)


class NotifyInput(BaseModel):
    title: str
    text: str
    links: ApprovalLinkRequest | None = None


class HealthCheckInput(BaseModel):
    """Probe every running replica of a version once."""

    version: VersionRef
    replicas: int
    port: int
    health_path: str


class WatchHealthInput(BaseModel):
    """Probe a version every ``interval_seconds`` for ``seconds``: one stable-wait window."""

    check: HealthCheckInput
    seconds: float
    interval_seconds: float = 10.0
    report: bool = False  # as WaitReadyInput.report: problems and recoveries signalled


class ApprovalInput(BaseModel):
    """Argument of the ``approve`` / ``reject`` Updates and signals.

    ``proof`` is a signed approval token (:mod:`schemas.approvals`), never the API token
    itself; a person typing a signal in the Web UI calls it ``token``. ``via`` is filled in by
    the workflow from the verified proof, for the record.
    """

    user: str
    comment: str = ""
    proof: str = Field(default="", validation_alias=AliasChoices("proof", "token"))
    via: str = ""


class VerifyApprovalInput(BaseModel):
    """Check an approval proof against the approver's active tokens, for ``subject``: the
    run waiting for the decision and what it carries (None: a workflow that names neither,
    whose proofs are refused)."""

    proof: str
    user: str
    release: str  # workflow id
    decision: str  # "approve" or "reject"
    used_nonces: list[str] = Field(default_factory=list)
    app: str = ""
    env: str = ""
    subject: ApprovalSubject | None = None


class ApprovalVerdict(BaseModel):
    """What ``verify_approval`` found: accepted (how it was sent, with which token), or the
    reason it is refused."""

    ok: bool
    reason: str = ""
    via: str = ""
    token: str = ""
    nonce: str = ""


class ControlInput(BaseModel):
    """Argument of ``promote``, ``promote_full``, ``pause``, ``resume`` and ``abort``."""

    user: str
    reason: str = ""


class ReleaseEvent(BaseModel):
    at: datetime
    message: str


class VersionStatus(BaseModel):
    version: int
    desired: int
    ready: int
    traffic_percent: float


class ReleaseStatus(BaseModel):
    """Answer of the ``status`` query: where the release is and what it did so far."""

    app: str
    env: str
    stage: str
    strategy: str = ""
    from_version: int = 0
    to_version: int = 0
    image: str = ""
    step: int = 0
    steps: int = 0
    paused: bool = False
    # What the release waits for from a person: "approval", "promote", or nothing.
    awaiting: str = ""
    requested_by: str = ""
    approvers: list[str] = Field(default_factory=list)
    versions: list[VersionStatus] = Field(default_factory=list)
    events: list[ReleaseEvent] = Field(default_factory=list)
    # Canary-analysis measurements, newest last (the latest ANALYSIS_SHOWN), and when the
    # current analysed stable wait ends.
    analysis: list[Measurement] = Field(default_factory=list)
    wait_ends_at: datetime | None = None
    # Held by a freeze or outside the deploy windows: why, and when it opens (None: when
    # the freeze is lifted).
    frozen: str = ""
    frozen_until: datetime | None = None
    break_glass: str = ""
    train: str = ""
    # What an approval of this release is bound to (its run, target image, change): set
    # while it waits for approval, read by whoever signs one.
    approval: ApprovalSubject | None = None


class ReleaseResume(BaseModel):
    """What a release waiting out a freeze carries into its next run (continue-as-new): it
    was prepared, built and approved; it goes on with the freeze gate."""

    plan: ReleasePlan
    target: ImageSpec
    approved_by: str = ""
    progress: ReleaseStatus
    # The stage shown again once the environment opens.
    stage_before_frozen: str = ""


class ReleaseOutcome(BaseModel):
    """Result of ReleaseWorkflow, and the answer of its ``outcome`` Update."""

    state: ReleaseState
    app: str
    env: str
    baseline_version: int | None = None
    image: str = ""
    digest: str = ""
    error: str = ""
    # Work the release does after its outcome is decided (a fast rollback removes the
    # replaced version), e.g. "remove v4": in the same workflow, after ``outcome`` answered.
    after: list[str] = Field(default_factory=list)


# The signal a waiting activity sends its release with what its latest look saw.
PROBE_SIGNAL = "probe"


class ProbeReport(BaseModel):
    """What a waiting activity (``wait_ready``, ``watch_health``) saw at its latest look, as
    its heartbeat says it ("0/1 replicas of v2 healthy; replica 0 restarting (exited 3, 2
    restarts)"): signalled to the release, which shows it in the Web UI's current details."""

    activity: str
    version: int
    message: str
    healthy: int | None = None
    desired: int | None = None


ReleaseRequest.model_rebuild()
