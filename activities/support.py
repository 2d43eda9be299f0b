"""Shared plumbing for activities: heartbeats that keep a worker's claim alive, progress that
stops cancelled work, resumable checkpoints, and permanent-error mapping.

Every activity that changes the environment or waits runs inside :func:`heartbeating`: a
background thread heartbeats every :data:`HEARTBEAT_EVERY_SECONDS` while the integration call
blocks, so the server learns within the activity's heartbeat timeout (seconds, set by the
workflows) that a worker killed with ``kill -9`` is gone and retries the activity on another.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError, CancelledError

# Well under the workflows' heartbeat timeout (15 s), so one late beat is not a lost worker.
HEARTBEAT_EVERY_SECONDS = 2.0


class Pulse:
    """The running activity's heartbeat: the last progress message and a checkpoint.

    The checkpoint (e.g. a Jenkins queue id) travels in the heartbeat details, so a retry on
    another worker reads it back as :attr:`resumed` and picks up the work instead of redoing it.
    """

    def __init__(self, message: str) -> None:
        self.message = message
        self.resumed: dict[str, Any] = _last_checkpoint()
        self.checkpoint: dict[str, Any] = dict(self.resumed)
        self._lock = threading.Lock()

    def beat(self) -> None:
        with self._lock:
            details = {"message": self.message, "checkpoint": dict(self.checkpoint)}
        activity.heartbeat(details)

    def progress(self, message: str, checkpoint: dict[str, Any] | None = None) -> None:
        """Heartbeat with a progress message (and checkpoint values, if given); stop the
        work if the activity was cancelled.

        Sync activities learn about cancellation only through heartbeats, so every long loop
        reports progress here.
        """
        with self._lock:
            self.message = message
            self.checkpoint.update(checkpoint or {})
        self.beat()
        if activity.is_cancelled():
            raise CancelledError(f"cancelled while: {message}")

    def remember(self, values: dict[str, Any]) -> None:
        """Add ``values`` to the checkpoint and heartbeat it at once (before the next step)."""
        with self._lock:
            self.checkpoint.update(values)
        self.beat()


def _last_checkpoint() -> dict[str, Any]:
    """The checkpoint an earlier attempt of this activity heartbeated, if any."""
    details = activity.info().heartbeat_details
    if details and isinstance(details[0], dict):
        checkpoint = details[0].get("checkpoint")
        if isinstance(checkpoint, dict):
            return checkpoint
    return {}


@contextmanager
def heartbeating(message: str, every: float = HEARTBEAT_EVERY_SECONDS) -> Iterator[Pulse]:
    """Heartbeat every ``every`` seconds from a background thread while the body runs.

    The body may block in one call (a container start, an image pull) for longer than the
    heartbeat timeout; the thread keeps telling the server this worker is alive, and stops
    with the body. It runs in a copy of the activity's context, where ``activity.heartbeat``
    finds the running activity.
    """
    pulse = Pulse(message)
    pulse.beat()
    stop = threading.Event()
    context = contextvars.copy_context()

    def keep_alive() -> None:
        while not stop.wait(every):
            context.run(pulse.beat)

    thread = threading.Thread(target=keep_alive, name=f"heartbeat {message}", daemon=True)
    thread.start()
    try:
        yield pulse
    finally:
        stop.set()
        thread.join()


@contextmanager
def permanent(*error_types: type[BaseException]) -> Iterator[None]:
    """Re-raise the given errors as non-retryable ApplicationErrors with the same message."""
    try:
        yield
    except error_types as error:
        raise ApplicationError(str(error), type=type(error).__name__, non_retryable=True) from error
