"""A release's outcome as soon as it is decided, and the work that goes on after it.

A fast rollback is done for its users once the old version serves all traffic and its
baseline is written. Removing the replaced version's containers takes seconds more (2.2 s
under load) and changes nothing about the outcome, so the rollout hands it over with
``after_outcome``: the workflow reports the outcome, then removes the replaced version, as
activities of the same history (stage ``cleaning_up``).

The person waiting (``rollback --wait``) gets the outcome from the ``outcome`` Update, which
answers at that milestone while the run goes on: Temporal's "early return" pattern. We chose
it over handing the clean-up to a child workflow with ParentClosePolicy.ABANDON because the
clean-up then stays inside the release it belongs to, under the release's workflow id:

* "one release per environment" (id ``release:<app>:<env>``, conflict policy FAIL) covers it
  with no more machinery: the next release of the environment cannot start while the replaced
  version is being removed, so it never races the removal (``start_release`` waits the few
  seconds for it rather than refusing), the teardown's "no release runs" check sees it, and
  a train waits for it as for any running release;
* a detached child would need an id of its own and a "clean-up running?" check wherever a
  release starts, and would split one release (发布单) over two histories.

The workflow's result is unchanged: the same ReleaseOutcome, once the clean-up is done too.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from schemas.models import ReleaseOutcome
    from workflows.rollout import cause_of

Work = Callable[[], Awaitable[None]]


class OutcomeDesk:
    """The ``outcome`` Update and the work left after the outcome (a mixin of
    ReleaseWorkflow, which initialises the fields and provides the stage board)."""

    _outcome: ReleaseOutcome | None
    _after: list[tuple[str, Work]]
    _run_ended: bool
    _outcome_waiters: int
    # Provided by the workflow class (declared here for the type checker only).
    set_stage: Callable[[str, str], None]
    event: Callable[[str], None]

    @workflow.update
    async def outcome(self) -> ReleaseOutcome | None:
        """The release's outcome as soon as it is decided: for a fast rollback once the old
        version serves all traffic and the baseline is written, before the replaced
        version is removed. None when the run ends without one (failed, rolled back,
        cancelled, continued as new): the workflow's result says why."""
        self._outcome_waiters += 1
        try:
            await workflow.wait_condition(lambda: self._outcome is not None or self._run_ended)
        finally:
            self._outcome_waiters -= 1
        return self._outcome

    def decided(self, outcome: ReleaseOutcome) -> None:
        """The outcome is known: ``outcome`` Updates answer now."""
        self._outcome = outcome

    def after_outcome(self, what: str, work: Work) -> None:
        """Do ``work`` after the outcome is reported, still in this run (its history)."""
        self._after.append((what, work))

    def work_after(self) -> list[str]:
        return [what for what, _work in self._after]

    async def finish_after(self, done: str) -> None:
        """The work left after the outcome (stage ``cleaning_up``), each step in turn; one
        that fails for good is an event (the outcome stands, as when the old version's
        removal failed before), then the stage is ``succeeded``."""
        if not self._after:
            return
        results = []
        for what, work in self._after:
            try:
                await work()
                results.append(f"{what}: done")
            except ActivityError as error:
                results.append(f"{what}: failed ({cause_of(error)})")
                self.event(f"could not {what}: {cause_of(error)}")
        self.set_stage("succeeded", f"{done}; " + "; ".join(results))

    async def run_ended(self) -> None:
        """The run is ending (returned, failed or continuing as new): answer ``outcome``
        Updates still waiting before it closes, so none is left unfinished."""
        self._run_ended = True
        await workflow.wait_condition(lambda: self._outcome_waiters == 0)
