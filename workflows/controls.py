"""The controls people steer a rolling-out release with (a mixin of ReleaseWorkflow).

``promote`` passes a gate or ends a stable wait, ``promote_full`` skips every remaining step,
``pause``/``resume`` hold the rollout at its next step, ``abort`` rolls back. Each is an
Update whose validator refuses it in the wrong stage with a reason a person can act on, so
a refused control never reaches history as a change of state.
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from schemas.models import ControlInput, ReleaseStatus

# Stages in which the new version is being rolled out (or held while doing so).
ROLLOUT_STAGES = {"starting", "draining", "shifting", "waiting_stable", "gate", "paused",
                  "frozen"}


class ReleaseControls:
    """Update handlers and their validators; the workflow's loop reads the flags they set."""

    progress: ReleaseStatus
    promote_full_requested: bool
    _promote: bool
    _paused: bool
    _abort: str | None
    _compensating: bool
    # Past the point of no return the new version serves all traffic: abort is refused and
    # only a rollback (a new release) can take it back.
    _committed: bool

    @workflow.update
    async def promote(self, data: ControlInput) -> str:
        self._promote = True
        return f"promoted by {data.user}"

    @promote.validator
    def _validate_promote(self, data: ControlInput) -> None:
        if self.progress.awaiting != "promote" and self.progress.stage != "waiting_stable":
            raise ValueError(f"nothing to promote: the release is {self.progress.stage}, not at a "
                             "gate or waiting for stable")

    @workflow.update
    async def promote_full(self, data: ControlInput) -> str:
        self.promote_full_requested = True
        return f"{data.user} promoted the release to 100%: remaining steps and waits skipped"

    @promote_full.validator
    def _validate_promote_full(self, data: ControlInput) -> None:
        self._check_rolling_out("promote to full")
        if self.progress.strategy == "recreate":
            raise ValueError("a recreate release has no steps to skip")

    @workflow.update
    async def pause(self, data: ControlInput) -> str:
        self._paused = self.progress.paused = True
        return f"paused by {data.user}; resume with `slipway resume`"

    @pause.validator
    def _validate_pause(self, data: ControlInput) -> None:
        self._check_rolling_out("pause")
        if self._paused:
            raise ValueError("the release is already paused")

    @workflow.update
    async def resume(self, data: ControlInput) -> str:
        self._paused = self.progress.paused = False
        return f"resumed by {data.user}"

    @resume.validator
    def _validate_resume(self, data: ControlInput) -> None:
        if not self._paused:
            raise ValueError(f"the release is not paused (stage: {self.progress.stage})")

    @workflow.update
    async def abort(self, data: ControlInput) -> str:
        self._abort = f"{data.user}" + (f": {data.reason}" if data.reason else "")
        return f"abort requested by {data.user}: rolling back"

    @abort.validator
    def _validate_abort(self, data: ControlInput) -> None:
        if self._committed:
            raise ValueError(f"v{self.progress.to_version} already serves all traffic; roll "
                             "back with `slipway rollback`")
        if self._compensating or self.progress.stage in ("succeeded", "preparing"):
            raise ValueError(f"too late or too early to abort: the release is "
                             f"{self.progress.stage}")
        if self._abort is not None:
            raise ValueError(f"abort already requested ({self._abort})")

    def _check_rolling_out(self, what: str) -> None:
        if self.progress.stage not in ROLLOUT_STAGES or self._compensating or self._committed:
            raise ValueError(f"cannot {what}: the release is {self.progress.stage}, "
                             "not rolling out")
