"""Timeouts and retry policies every workflow shares.

* Activities that change the environment or wait heartbeat (``activities.support``) every
  2 s; :data:`HEARTBEAT_TIMEOUT` is how soon the server gives up on a silent worker (one
  killed with ``kill -9``) and retries the activity elsewhere.
* :data:`RETRY` bounds ordinary steps: a failure that persists fails the step, and the
  release rolls back.
* :data:`UNTIL_DONE` is for bookkeeping (``finish_release``) and undo activities: they are
  idempotent, and giving up on them would leave a release ``failed`` with the wrong version
  serving or no baseline. A store outage or a dockerd restart only delays them; permanent
  (non-retryable) errors still end them.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

HEARTBEAT_TIMEOUT = timedelta(seconds=15)
QUICK = timedelta(seconds=60)
RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30),
                    maximum_attempts=5)
UNTIL_DONE = RetryPolicy(initial_interval=timedelta(seconds=1),
                         maximum_interval=timedelta(seconds=30), maximum_attempts=0)
# Builds run on a task queue of their own, polled by a worker with its own slots (worker.py):
# an hour of CI builds never takes the slots health checks and undo activities need.
BUILD_QUEUE_SUFFIX = "-builds"


def build_queue() -> str:
    """The build task queue beside the running workflow's own."""
    return workflow.info().task_queue + BUILD_QUEUE_SUFFIX


# A host's agent polls a task queue of its own: ``<queue>-host-<host>``.
HOST_QUEUE_INFIX = "-host-"
# A host-local activity nobody picks up within this is failed, not retried (an agent that is
# gone): the step fails and the release compensates, instead of waiting for the host.
HOST_SCHEDULE_TO_START = timedelta(seconds=30)


def host_queue(queue: str, host: str) -> str:
    """The task queue of the agent of ``host`` (beside the workflow's ``queue``)."""
    return f"{queue}{HOST_QUEUE_INFIX}{host}"
