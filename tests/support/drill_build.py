"""Build "B" of the upgrade drill: a ``ReleaseWorkflow`` whose command sequence differs from
this commit's without a patch (it starts with a timer), as a careless change would.

Replaying a history of this commit's ``ReleaseWorkflow`` on it fails with a nondeterminism
error: the drill (tests/integration/test_worker_versions.py) shows that Worker Versioning
keeps such runs away from it, and the replay gate's test shows the gate catching it.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from schemas.models import ReleaseOutcome, ReleaseRequest
    from workflows import versioning
    from workflows.release import ReleaseWorkflow


@workflow.defn(name="ReleaseWorkflow", versioning_behavior=versioning.RELEASE)
class IncompatibleReleaseWorkflow(ReleaseWorkflow):
    """This commit's release, with one timer first and no ``workflow.patched`` around it."""

    @workflow.run
    async def run(self, request: ReleaseRequest) -> ReleaseOutcome:
        await workflow.sleep(timedelta(milliseconds=10))
        return await super().run(request)


# The control: the same two builds as Slipway had them before Worker Versioning, with no
# versioning behaviour (an unversioned worker may not declare one).
@workflow.defn(name="ReleaseWorkflow")
class UnversionedReleaseWorkflow(ReleaseWorkflow):
    """This commit's release, as an unversioned worker runs it."""

    @workflow.run
    async def run(self, request: ReleaseRequest) -> ReleaseOutcome:
        return await super().run(request)


@workflow.defn(name="ReleaseWorkflow")
class UnversionedIncompatibleReleaseWorkflow(ReleaseWorkflow):
    """:class:`IncompatibleReleaseWorkflow`, unversioned."""

    @workflow.run
    async def run(self, request: ReleaseRequest) -> ReleaseOutcome:
        await workflow.sleep(timedelta(milliseconds=10))
        return await super().run(request)
