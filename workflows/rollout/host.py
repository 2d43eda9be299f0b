"""What a rollout needs from the workflow that runs it.

``Rollout`` only orchestrates: activities, stage changes, the undo stack and the person-facing
controls belong to ReleaseWorkflow. Naming that surface as a protocol keeps the dependency
one way (release → rollout) and lets a strategy be read without the workflow open beside it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from typing import Any, Protocol

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from schemas.analysis import Measurement
    from schemas.models import ReleaseStatus
    from workflows.policies import QUICK

Undo = Callable[[], Awaitable[None]]


class RolloutHost(Protocol):
    """The running release, as a strategy sees it."""

    progress: ReleaseStatus
    promote_full_requested: bool

    async def act(self, method: Any, arg: Any, summary: str, timeout: timedelta = QUICK,
                  heartbeat: bool = True, task_queue: str | None = None,
                  schedule_to_start: timedelta | None = None) -> Any:
        """Run an activity (on ``task_queue``: a host's agent); an ``abort`` cancels it and
        stops the release."""

    async def watch(self, method: Any, arg: Any, summary: str, timeout: timedelta,
                    task_queue: str | None = None,
                    schedule_to_start: timedelta | None = None) -> Any:
        """Run a watching activity until it ends (its result) or a person intervenes
        (``None``: the activity was stopped)."""

    async def checkpoint(self) -> None:
        """Stop on ``abort``; wait while paused."""

    async def gate(self, detail: str) -> None:
        """A manual step: wait for ``promote``."""

    async def interrupted_within(self, period: timedelta) -> bool:
        """Sleep durably; True when a person intervened first."""

    def take_promote(self) -> bool: ...

    def push_undo(self, what: str, undo: Undo) -> None: ...

    def has_undo(self, prefix: str) -> bool: ...

    def commit(self) -> None:
        """The point of no return: nothing is undone, abort is refused."""

    def after_outcome(self, what: str, work: Undo) -> None:
        """Do ``work`` after the release's outcome is reported (committed work only)."""

    def looking(self, version: int, activity: str,
                desired: int) -> AbstractContextManager[None]:
        """While waiting for ``desired`` replicas of ``version``, show the waiting
        ``activity``'s latest look in the Web UI's current details."""

    def set_stage(self, stage: str, detail: str) -> None: ...

    def event(self, message: str) -> None: ...

    def record_analysis(self, measurements: list[Measurement]) -> None:
        """Keep canary-analysis measurements for ``status`` and the Web UI."""

    def show_analysis(self, wait_ends_at: datetime | None) -> None:
        """Show when the analysed wait ends and the latest figures (None: no wait)."""

    async def alert(self, title: str, text: str) -> None:
        """Notify the people of the release (approvers, channel)."""
