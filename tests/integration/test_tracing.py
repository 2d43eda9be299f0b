"""One trace from a person's ``slipway release`` to the release's last activity.

The client (a separate process holding a URL and a token) sends the trace context of a CI
job (``TRACEPARENT``) with its request; a real ``slipway server`` runs the command, which
starts the release with Temporal's tracing interceptor; the worker, its build worker and the
host agents (in this process, with an in-memory exporter: OpenTelemetry's test double)
record the workflow and every activity in that same trace.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import docker
import pytest
import pytest_asyncio
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from temporalio.client import Client
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

import worker as slipway_worker
from agent import agents_serving, docker_host_names
from catalogue.store import Store
from schemas.settings import Settings
from starter.service.catalogue import add_env, mark_ready, register_app
from starter.service.tokens import create_token
from tests.integration.conftest import remove_app_containers
from tests.integration.test_release_docker import SAMPLE
from tests.support.server import client_env, slipway, slipway_server

pytestmark = pytest.mark.integration

APP = "traced"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


@pytest.fixture
def cleanup(docker_client: docker.DockerClient) -> Iterator[None]:
    yield
    remove_app_containers(docker_client, APP)


@pytest_asyncio.fixture
async def spans(temporal: WorkflowEnvironment,
                settings: Settings) -> AsyncIterator[InMemorySpanExporter]:
    """Workers as worker.py and agent.py make them, on a client with the tracing
    interceptor, recording into memory."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    client = await Client.connect(
        temporal.client.service_client.config.target_host, namespace=temporal.client.namespace,
        data_converter=pydantic_data_converter,
        interceptors=[TracingInterceptor(provider.get_tracer("slipway-test"))])
    with (ThreadPoolExecutor(max_workers=8) as executor, ThreadPoolExecutor(2) as builds,
          ThreadPoolExecutor(max_workers=8) as agents):
        async with (slipway_worker.make_worker(client, settings, executor),
                    slipway_worker.make_build_worker(client, settings, builds),
                    agents_serving(client, settings, docker_host_names(settings), agents)):
            yield exporter


def _trace_of(span: ReadableSpan) -> str:
    return format(span.context.trace_id, "032x") if span.context else ""


async def test_a_trace_spans_the_cli_the_workflow_and_its_activities(
        temporal: WorkflowEnvironment, settings: Settings, store: Store,
        spans: InMemorySpanExporter, cleanup: None, tmp_path: Path) -> None:
    register_app(store, APP, category="in-house", tier="non-core", owners=["ana"],
                 approvers=[], source=str(SAMPLE), description="", actor="ana")
    mark_ready(store, APP, "ana")
    add_env(store, APP, "test", cluster="local", replicas=1, cpu="", memory="64Mi",
            ports=[8080], env_vars={}, runtime="docker", namespace="default",
            health_path="/healthz", settings=settings, actor="ana", strategy="recreate",
            stable_seconds=0, approval="none")
    _, token = create_token(store, "ana", roles=["read", "release"])
    with slipway_server(settings, tmp_path / "server.log", SLIPWAY_TEMPORAL_ADDRESS=temporal
                        .client.service_client.config.target_host) as url:
        person = client_env(url, token, TRACEPARENT=f"00-{TRACE_ID}-{CALLER_SPAN}-01")
        done = await asyncio.to_thread(slipway, person, "release", APP, "test", "--wait",
                                       timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr

    recorded = spans.get_finished_spans()
    names = [span.name for span in recorded]
    # The release's workflow and every one of its activities, in the caller's trace.
    release = [s for s in recorded if s.name == "RunWorkflow:ReleaseWorkflow"]
    assert release, names
    activities = [s for s in recorded if s.name.startswith("RunActivity:")]
    assert {"RunActivity:prepare_release", "RunActivity:build_image",
            "RunActivity:finish_release"} <= {s.name for s in activities}, names
    assert {_trace_of(s) for s in release + activities} == {TRACE_ID}
    # The server exports nothing here, so it passed the caller's span on as the parent of the
    # workflow start: the workflow hangs directly under the person's request.
    assert release[0].parent is not None
    assert format(release[0].parent.span_id, "016x") == CALLER_SPAN
    last = max(activities, key=lambda s: s.end_time or 0)
    assert _trace_of(last) == TRACE_ID, last.name
