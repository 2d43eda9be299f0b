"""Shared plumbing for activities: heartbeats that keep a worker's claim alive, progress that
stops cancelled work, resumable checkpoints, and permanent-error mapping.

Every activity that changes the environment or waits runs inside :func:`heartbeating`: a
background thread heartbeats every :data:`HEARTBEAT_EVERY_SECONDS` while the integration call
blocks, so the server learns within the activity's heartbeat timeout (seconds, set by the
workflows) that a worker killed with ``kill -9`` is gone and retries the activity on another.

A waiting activity can also tell its workflow what it sees (:class:`Relay`): the workflow
cannot read heartbeats, and a release shows the latest look in the Web UI's current details.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError, CancelledError

from schemas.models import ProbeReport

# Well under the workflows' heartbeat timeout (15 s), so one late beat is not a lost worker.
HEARTBEAT_EVERY_SECONDS = 2.0
# A waiting activity tells its workflow something new at most this often, and at most
# RELAY_LIMIT times per attempt: each signal costs the workflow ~4 history events, so a wait
# of any length costs at most ~160 (the heartbeat keeps every look).
RELAY_EVERY_SECONDS = 5.0
RELAY_LIMIT = 40
# "0/1 replicas of v2 healthy; …" (Docker), "0/1 replicas of v2 ready (…)" (Kubernetes).
_COUNTS = re.compile(r"^(\d+)/(\d+) replicas of v\d+ (?:healthy|ready)")

log = logging.getLogger(__name__)


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


class WorkflowSignals:
    """Signals from activities to the workflow that runs them, through the worker's client on
    its event loop (these activities run in threads). Fire and forget: a signal that cannot
    be sent (the workflow has ended, the server is away) is logged, never the activity's
    failure."""

    def __init__(self, client: Client, loop: asyncio.AbstractEventLoop) -> None:
        self.client = client
        self.loop = loop

    def to_workflow(self, name: str) -> Callable[[Any], None]:
        """A sender of signal ``name`` to the running activity's own workflow run."""
        info = activity.info()
        workflow_id, run_id = info.workflow_id or "", info.workflow_run_id or ""
        return lambda arg: self.send(workflow_id, run_id, name, arg)

    def send(self, workflow_id: str, run_id: str, name: str, arg: Any) -> None:
        asyncio.run_coroutine_threadsafe(self._send(workflow_id, run_id, name, arg), self.loop)

    async def _send(self, workflow_id: str, run_id: str, name: str, arg: Any) -> None:
        try:
            await self.client.get_workflow_handle(workflow_id, run_id=run_id).signal(name, arg)
        except Exception as error:  # noqa: BLE001 - progress to show, never a reason to fail
            log.info("signal %s to %s not sent: %s", name, workflow_id, error)


class Relay:
    """Tells the running activity's workflow what its latest look saw (a :class:`ProbeReport`
    as signal ``probe``): when it says something new (``key``: what counts as new, default
    the message), at most every :data:`RELAY_EVERY_SECONDS` and :data:`RELAY_LIMIT` times
    per attempt; ``known`` is what the workflow knows already (not sent). Without a sender
    (the workflow did not ask, tests) it does nothing."""

    def __init__(self, send: Callable[[ProbeReport], None] | None, activity_name: str,
                 version: int, every: float | None = None, limit: int | None = None,
                 known: str | None = None) -> None:
        self.send = send
        self.activity_name = activity_name
        self.version = version
        self.every = RELAY_EVERY_SECONDS if every is None else every
        self.limit = RELAY_LIMIT if limit is None else limit
        self.sent = 0
        self._last_key = known  # what the workflow knows already: not sent
        self._last_at = 0.0

    def offer(self, message: str, key: str | None = None) -> None:
        if self.send is None or self.sent >= self.limit:
            return
        key = message if key is None else key
        now = time.monotonic()
        if key == self._last_key or (self.sent and now - self._last_at < self.every):
            return  # nothing new, or too soon: a later look offers it again
        counts = _COUNTS.match(message)
        self.send(ProbeReport(activity=self.activity_name, version=self.version,
                              message=message,
                              healthy=int(counts[1]) if counts else None,
                              desired=int(counts[2]) if counts else None))
        self.sent += 1
        self._last_key, self._last_at = key, now
