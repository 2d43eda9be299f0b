"""Grayscale on the real Docker engine under a constant request loop through HAProxy."""

from __future__ import annotations

import time

import docker
import httpx
import pytest
from sqlmodel import select
from temporalio.testing import WorkflowEnvironment

from catalogue.releases import env_key
from catalogue.store import CatalogueError, Store
from catalogue.tables import Baseline, Environment
from schemas.models import ReleaseOutcome, ReleaseRequest
from schemas.settings import Settings
from starter.service.releases import follow, start_release, validate_release
from tests.integration.test_release_docker import APP, SAMPLE, register_shop
from tests.support.load import failures, request_loop

pytestmark = pytest.mark.integration


async def release(temporal: WorkflowEnvironment, settings: Settings, store: Store,
                  **fields: str) -> ReleaseOutcome:
    request, summary = validate_release(
        store, ReleaseRequest(app=APP, env="prod", requested_by="ana", **fields))
    started = await start_release(temporal.client, settings, request, summary)
    return await follow(started.handle, lambda _status: None)


def lb_url(store: Store) -> str:
    with store.session() as session:
        return f"http://127.0.0.1:{session.exec(select(Environment)).one().lb_port}/"


def versions_running(client: docker.DockerClient) -> list[str]:
    key = env_key(APP, "prod", "local")
    containers = client.containers.list(all=True, filters={"label": f"slipway.env={key}"})
    return sorted(c.labels["slipway.version"] for c in containers)


@pytest.fixture
def cleanup(docker_client: docker.DockerClient) -> object:
    yield
    for container in docker_client.containers.list(all=True,
                                                   filters={"label": f"slipway.app={APP}"}):
        container.remove(force=True)


async def test_gray_release_serves_every_request(
    temporal: WorkflowEnvironment, running_worker: None, settings: Settings, store: Store,
    docker_client: docker.DockerClient, cleanup: object,
) -> None:
    register_shop(store, settings, strategy="gray", stable_seconds=2)
    url = lb_url(store)
    await release(temporal, settings, store, version_label="1.0.0")
    with request_loop(url) as outcomes:
        time.sleep(0.5)
        second = await release(temporal, settings, store, version_label="2.0.0")
        time.sleep(0.5)
    print(f"\nrequests through HAProxy during the gray release: {dict(outcomes)}")
    assert second.baseline_version == 2
    assert failures(outcomes) == {}
    assert outcomes["200 sample-app 1.0.0"] > 0 and outcomes["200 sample-app 2.0.0"] > 0
    assert versions_running(docker_client) == ["2", "2"]


async def test_unhealthy_canary_rolls_back_and_v1_keeps_serving(
    temporal: WorkflowEnvironment, running_worker: None, settings: Settings, store: Store,
    docker_client: docker.DockerClient, cleanup: object,
) -> None:
    register_shop(store, settings, strategy="gray", stable_seconds=8)
    url = lb_url(store)
    await release(temporal, settings, store, version_label="1.0.0")
    # A build whose /healthz starts failing 2 s after start: it passes readiness, then the
    # wait-for-stable health check must catch it.
    docker_client.images.build(path=str(SAMPLE), tag=f"slipway/{APP}:bad", rm=True,
                               buildargs={"BASE_IMAGE": settings.base_image,
                                          "VERSION": "2.0.0-bad", "FAIL_HEALTH_AFTER": "2"})
    with request_loop(url) as outcomes:
        time.sleep(0.5)
        with pytest.raises(CatalogueError, match="rolled_back: v2 unhealthy"):
            await release(temporal, settings, store, image=f"slipway/{APP}:bad")
        time.sleep(0.5)
    print(f"\nrequests through HAProxy during the failed canary: {dict(outcomes)}")
    assert outcomes["connection refused"] == 0
    assert outcomes["200 sample-app 1.0.0"] > 0
    assert httpx.get(url).text.strip() == "sample-app 1.0.0"
    assert versions_running(docker_client) == ["1", "1"]
    with store.session() as session:
        assert [b.version for b in session.exec(select(Baseline)).all()] == [1]
    docker_client.images.remove(f"slipway/{APP}:bad", force=True)


