"""Cancellation in workflows: telling a cancel from a failure, stopping an activity for
good before undoing it, and running work to its end whatever cancels arrive."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import Any, TypeVar

from temporalio.exceptions import ActivityError, CancelledError
from temporalio.workflow import ActivityHandle

T = TypeVar("T")


def is_cancellation(error: BaseException) -> bool:
    """A cancel request reaches the workflow either directly or through the awaited activity."""
    return isinstance(error, asyncio.CancelledError) or (
        isinstance(error, ActivityError) and isinstance(error.cause, CancelledError)
    )


async def to_the_end(work: Awaitable[T]) -> T:
    """Run ``work`` to its end whatever cancels arrive meanwhile.

    ``asyncio.shield`` alone keeps the inner work going but re-raises CancelledError in the
    awaiting task, which would skip what follows (closing the release, the alert). Here every
    cancel is absorbed until the work is done; its own result or error is what comes out.
    """
    task = asyncio.ensure_future(work)
    while not task.done():
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(task)
    return task.result()


async def stopped(handle: ActivityHandle[Any]) -> None:
    """Cancel an activity and wait until it has really stopped (its cancellation type is
    WAIT_CANCELLATION_COMPLETED), so an undo that follows never races it."""
    handle.cancel()
    while not handle.done():
        with contextlib.suppress(ActivityError, asyncio.CancelledError):
            await asyncio.shield(handle)
