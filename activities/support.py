"""Shared plumbing for activities: heartbeat-based progress and permanent-error mapping."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from temporalio import activity
from temporalio.exceptions import ApplicationError, CancelledError


def progress(message: str) -> None:
    """Heartbeat with a progress message; stop the work if the activity was cancelled.

    Sync activities learn about cancellation only through heartbeats, so every long loop
    reports progress here.
    """
    activity.heartbeat(message)
    if activity.is_cancelled():
        raise CancelledError(f"cancelled while: {message}")


@contextmanager
def permanent(*error_types: type[BaseException]) -> Iterator[None]:
    """Re-raise the given errors as non-retryable ApplicationErrors with the same message."""
    try:
        yield
    except error_types as error:
        raise ApplicationError(str(error), type=type(error).__name__, non_retryable=True) from error
