"""Activities that read and write the catalogue store (releases, baselines, builds)."""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy.exc import IntegrityError
from sqlmodel import select
from temporalio import activity

from activities.support import permanent
from catalogue.approvals import check_approval
from catalogue.freezes import verdict_for
from catalogue.rejections import admit_image
from catalogue.releases import RecentRollbacks, finish_release, note_approval, open_release
from catalogue.store import CatalogueError, Store, audit, find_app
from catalogue.tables import Build
from catalogue.trains import finish_train, open_train
from schemas.freezes import FreezeCheckInput, FreezeVerdict
from schemas.models import (
    ApprovalVerdict,
    FinishReleaseInput,
    FinishReleaseResult,
    NoteApprovalInput,
    PrepareReleaseInput,
    RecordBuildInput,
    ReleasePlan,
    VerifyApprovalInput,
)
from schemas.trains import FinishTrainInput, PrepareTrainInput, TrainPlan


class CatalogueActivities:
    def __init__(self, store: Store, drain_timeout_seconds: float = 30.0,
                 progress_deadline_seconds: float = 600.0,
                 fast_rollback_window_seconds: int = 86400,
                 signing_secret: Callable[[], str] = lambda: "",
                 rollbacks: RecentRollbacks | None = None,
                 agents_within: float = 120.0) -> None:
        self.store = store
        # Host agents seen within this many seconds take part in a release (hosts.py).
        self.agents_within = agents_within
        self.rollbacks = rollbacks or RecentRollbacks()
        # Read per check: the approval signing secret (never logged, never in history).
        self.signing_secret = signing_secret
        self.drain_timeout_seconds = drain_timeout_seconds
        self.progress_deadline_seconds = progress_deadline_seconds
        self.fast_rollback_window_seconds = fast_rollback_window_seconds

    @activity.defn
    def prepare_release(self, data: PrepareReleaseInput) -> ReleasePlan:
        """Load and validate app, environment and baseline; record the running release."""
        with permanent(CatalogueError):
            return open_release(self.store, data,
                                drain_timeout_seconds=self.drain_timeout_seconds,
                                progress_deadline_seconds=self.progress_deadline_seconds,
                                fast_rollback_window_seconds=self.fast_rollback_window_seconds,
                                rollbacks=self.rollbacks,
                                agents_within=self.agents_within)

    @activity.defn
    def finish_release(self, data: FinishReleaseInput) -> FinishReleaseResult:
        """Close the release; on success write baseline N+1."""
        with permanent(CatalogueError):
            return finish_release(self.store, data)

    @activity.defn
    def note_approval(self, data: NoteApprovalInput) -> None:
        """Record that the release waits for approval, or who approved it."""
        with permanent(CatalogueError):
            note_approval(self.store, data)

    @activity.defn
    def record_build(self, data: RecordBuildInput) -> int:
        """Store the build record (image + digest); idempotent per workflow run and label.

        A rejected image (a release of it was rolled back) is refused first, with the reason,
        and nothing is recorded: unless its release allows it (``--allow-rejected``).
        The unique key (workflow id, label) settles two overlapping attempts: the second
        insert fails and reads the first one's row.
        """
        with permanent(CatalogueError):
            admit_image(self.store, data.app, data.image, activity.info().workflow_run_id or "")
            try:
                return self._record_build(data)
            except IntegrityError:
                return self._record_build(data)

    def _record_build(self, data: RecordBuildInput) -> int:
        with self.store.session() as session:
            app = find_app(session, data.app)
            existing = session.exec(select(Build).where(
                Build.workflow_id == data.workflow_id, Build.version_label == data.version_label
            )).first()
            if existing is not None:
                return existing.id or 0
            build = Build(app_id=app.id or 0, ref=data.ref or "", version_label=data.version_label,
                          image=data.image.image, digest=data.image.digest,
                          workflow_id=data.workflow_id)
            session.add(build)
            audit(session, "build.recorded", app=data.app, image=data.image.image,
                  digest=data.image.digest)
            session.commit()
            return build.id or 0

    @activity.defn
    def verify_approval(self, data: VerifyApprovalInput) -> ApprovalVerdict:
        """Check an approval proof against the approver's active tokens, the run and content
        it must name and the signing secret; spend it (a proof counts once, in any run). A
        refusal is an audit event with who and why (the proof itself is never stored)."""
        info = activity.info()
        return check_approval(self.store, data, time.time(), self.signing_secret(),
                              used_by=f"{info.workflow_id}/{info.workflow_run_id}/"
                                      f"{info.activity_id}")

    @activity.defn
    def check_freeze(self, data: FreezeCheckInput) -> FreezeVerdict:
        """May the environment be released into now? If not: why, and when it opens."""
        env_type, _, cluster = data.env.partition("@")
        return verdict_for(self.store, env_type, cluster)

    @activity.defn
    def prepare_train(self, data: PrepareTrainInput) -> TrainPlan:
        """Validate every member of a train and record it with the baselines they start from."""
        with permanent(CatalogueError):
            return open_train(self.store, data.request, data.workflow_id, data.run_id,
                              self.rollbacks)

    @activity.defn
    def finish_train(self, data: FinishTrainInput) -> int:
        """Close the train: its state and each member's outcome and baseline; its id."""
        with permanent(CatalogueError):
            finish_train(self.store, data)
        return data.train_id
