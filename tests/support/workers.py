"""Test workers as worker.py runs them: the workflow task queue plus the build task queue."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from temporalio.client import Client
from temporalio.worker import Worker

from workflows.policies import BUILD_QUEUE_SUFFIX


@asynccontextmanager
async def workers(client: Client, queue: str, workflows: Sequence[type],
                  activities: Sequence[Callable[..., Any]], **options: Any) -> AsyncIterator[None]:
    """Run ``workflows`` and ``activities`` on ``queue``, and the same activities on its
    build queue (builds are scheduled there)."""
    async with (
        Worker(client, task_queue=queue, workflows=workflows, activities=activities, **options),
        Worker(client, task_queue=queue + BUILD_QUEUE_SUFFIX, activities=activities, **options),
    ):
        yield
