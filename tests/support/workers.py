"""Test workers as worker.py runs them: the workflow task queue plus the build task queue,
and, on a real server, versioned as worker.py versions them (:func:`this_build`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from temporalio.client import Client
from temporalio.worker import Worker

from schemas.settings import Settings
from starter.service.worker_versions import ClaimCurrentVersion
from worker import deployment_config
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


def this_build(settings: Settings) -> dict[str, Any]:
    """Worker options of a worker of ``settings``' build, as worker.py gives them: on a real
    Temporal server a worker of Slipway's workflows must be versioned (each type declares its
    versioning behaviour, which the server refuses from an unversioned worker), and its build
    made current (SLIPWAY_WORKER_PROMOTE, default ``first``) to get workflow tasks."""
    config = deployment_config(settings)
    return {"deployment_config": config,
            "plugins": [ClaimCurrentVersion(settings, config.version.build_id)]}
