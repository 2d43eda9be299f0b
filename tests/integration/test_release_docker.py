"""A real release, twice, of the sample app: dockerd + HAProxy + docker-registry + Temporal."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import docker
import httpx
import pytest
from sqlmodel import col, select

from catalogue.releases import env_key
from catalogue.store import CatalogueError, Store
from catalogue.tables import Application, Baseline, Build, Environment
from integrations.registry.client import RegistryClient
from schemas.models import ReleaseRequest
from schemas.settings import Settings
from starter.service.catalogue import add_env, mark_ready, register_app
from starter.service.releases import follow, start_release, validate_release
from tests.support.load import request_loop
from tests.support.registry import RegistryServer

pytestmark = pytest.mark.integration

SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sample-app"
APP = "shop"


def register_shop(store: Store, settings: Settings, strategy: str = "recreate",
                  stable_seconds: int = 0, env_vars: dict[str, str] | None = None) -> str:
    register_app(store, APP, category="in-house", tier="core", owners=["ana"],
                 approvers=["lead"], source=str(SAMPLE), description="", actor="ana")
    mark_ready(store, APP, "ana")
    env = add_env(store, APP, "prod", cluster="local", replicas=2, cpu="", memory="64Mi",
                  ports=[8080], env_vars=env_vars or {}, runtime="docker", namespace="default",
                  health_path="/healthz", settings=settings, actor="ana", strategy=strategy,
                  stable_seconds=stable_seconds, approval="none")
    return env.name


async def release(temporal_client: object, settings: Settings, store: Store,
                  version: str) -> object:
    request, summary = validate_release(
        store, ReleaseRequest(app=APP, env="prod", version_label=version, requested_by="ana")
    )
    started = await start_release(temporal_client, settings, request, summary)  # type: ignore[arg-type]
    return await follow(started.handle, lambda _status: None)


@pytest.fixture
def cleanup_containers(docker_client: docker.DockerClient) -> Iterator[None]:
    yield
    for container in docker_client.containers.list(all=True,
                                                   filters={"label": "slipway.app=" + APP}):
        container.remove(force=True)


async def test_release_v1_then_v2_through_haproxy(
    temporal: object, running_worker: None, settings: Settings, store: Store,
    registry_server: RegistryServer, docker_client: docker.DockerClient,
    cleanup_containers: None,
) -> None:
    client = temporal.client  # type: ignore[attr-defined]
    env_name = register_shop(store, settings)
    with store.session() as session:
        lb_port = session.exec(select(Environment)).one().lb_port
    url = f"http://127.0.0.1:{lb_port}/"

    first = await release(client, settings, store, "1.0.0")
    assert first.baseline_version == 1  # type: ignore[attr-defined]
    assert httpx.get(url).text.strip() == "sample-app 1.0.0"

    with request_loop(url) as outcomes:
        time.sleep(0.5)  # traffic flows before the switch starts
        second = await release(client, settings, store, "2.0.0")
        deadline = time.monotonic() + 10
        while "200 sample-app 2.0.0" not in outcomes and time.monotonic() < deadline:
            time.sleep(0.1)
    print(f"\nrequests through HAProxy during the release: {dict(outcomes)}")

    assert second.baseline_version == 2  # type: ignore[attr-defined]
    assert outcomes["connection refused"] == 0
    assert outcomes["200 sample-app 1.0.0"] > 0 and outcomes["200 sample-app 2.0.0"] > 0
    assert httpx.get(url).text.strip() == "sample-app 2.0.0"

    key = env_key(APP, "prod", "local")
    running = docker_client.containers.list(all=True, filters={"label": f"slipway.env={key}"})
    assert sorted(c.labels["slipway.version"] for c in running) == ["2", "2"]

    with store.session() as session:
        baselines = session.exec(select(Baseline).order_by(col(Baseline.version))).all()
        builds = session.exec(select(Build)).all()
        app = session.exec(select(Application)).one()
    assert [b.version for b in baselines] == [1, 2]
    assert baselines[1].image == f"{registry_server.host}/{APP}:2.0.0"
    assert app.state == "online"
    assert len(builds) == 2

    registry = RegistryClient(registry_server.url, registry_server.username,
                              registry_server.password)
    assert registry.resolve(APP, "2.0.0") == baselines[1].digest
    assert baselines[1].digest.startswith("sha256:")
    assert env_name == "prod@local"


async def test_second_release_of_the_same_environment_is_refused(
    temporal: object, running_worker: None, settings: Settings, store: Store,
    cleanup_containers: None,
) -> None:
    client = temporal.client  # type: ignore[attr-defined]
    register_shop(store, settings)
    request, summary = validate_release(store, ReleaseRequest(app=APP, env="prod"))
    started = await start_release(client, settings, request, summary)
    with pytest.raises(CatalogueError) as refused:
        await start_release(client, settings, request, summary)
    assert "already running" in str(refused.value)
    assert f"release:{APP}:prod@local" in str(refused.value)
    assert (await follow(started.handle, lambda _s: None)).baseline_version == 1
