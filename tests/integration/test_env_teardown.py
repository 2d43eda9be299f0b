"""`env remove` on real dockerd + HAProxy + Temporal: a released environment is torn down
(containers gone, load-balancer port refused, catalogue marked) with its history kept."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import httpx
import pytest
from sqlmodel import select
from temporalio.testing import WorkflowEnvironment

from catalogue.environments import REMOVED, is_removed
from catalogue.releases import env_key
from catalogue.store import CatalogueError, Store
from catalogue.tables import AuditEvent, Environment
from integrations.haproxy.router import HaproxyRouter
from schemas.models import ReleaseRequest
from schemas.settings import Settings
from starter.service.catalogue import add_env, mark_ready, register_app
from starter.service.changes import release_history
from starter.service.releases import follow, start_release, validate_release
from starter.service.teardown import env_to_remove, outcome, remove_env

pytestmark = pytest.mark.integration

SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sample-app"
APP = f"teardown-{uuid.uuid4().hex[:6]}"


@pytest.fixture
def leftovers(docker_client: docker.DockerClient) -> Iterator[None]:
    yield
    for container in docker_client.containers.list(all=True,
                                                   filters={"label": f"slipway.app={APP}"}):
        container.remove(force=True)


def refused(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(2)
        return probe.connect_ex(("127.0.0.1", port)) != 0


async def test_env_remove_tears_down_a_released_environment(
    temporal: WorkflowEnvironment, running_worker: None, settings: Settings, store: Store,
    docker_client: docker.DockerClient, leftovers: None,
) -> None:
    client = temporal.client
    register_app(store, APP, category="in-house", tier="non-core", owners=["ana"],
                 approvers=[], source=str(SAMPLE), description="", actor="ana")
    mark_ready(store, APP, "ana")
    added = add_env(store, APP, "prod", cluster="local", replicas=2, cpu="", memory="64Mi",
                    ports=[8080], env_vars={}, runtime="docker", namespace="default",
                    health_path="/healthz", settings=settings, actor="ana",
                    strategy="recreate", stable_seconds=0, approval="none")
    request, summary = validate_release(store, ReleaseRequest(
        app=APP, env="prod", version_label="1.0.0", requested_by="ana"))
    started = await start_release(client, settings, request, summary)
    assert (await follow(started.handle, lambda _s: None)).baseline_version == 1
    url = f"http://127.0.0.1:{added.lb_port}/"
    assert httpx.get(url).text.strip() == "sample-app 1.0.0"
    key = env_key(APP, "prod", "local")
    assert len(docker_client.containers.list(all=True,
                                             filters={"label": f"slipway.env={key}"})) == 2

    target = env_to_remove(store, APP, "prod")
    done = await outcome(await remove_env(client, settings, target, "bob", "env remove"))
    assert done.versions == [1]

    assert docker_client.containers.list(all=True, filters={"label": f"slipway.env={key}"}) == []
    assert refused(added.lb_port)
    router = HaproxyRouter(settings.state_dir, settings.haproxy_bin)
    assert key not in router.known_keys()  # the worker's reconciler will not bring it back
    with store.session() as session:
        env = session.exec(select(Environment).where(Environment.id == added.id)).one()
        [event] = session.exec(select(AuditEvent).where(AuditEvent.action == REMOVED,
                                                        AuditEvent.app == APP)).all()
    assert is_removed(env)
    assert event.actor == "bob" and event.env == "prod@local"
    [row] = release_history(store, APP, "prod")  # the history stays readable
    assert row.release.state == "succeeded"

    # Again after it is done: safe, nothing left to remove, no second audit event.
    again = await outcome(await remove_env(client, settings, target, "bob", "env remove"))
    assert again.versions == [] and again.already_removed
    with store.session() as session:
        assert len(session.exec(select(AuditEvent).where(AuditEvent.action == REMOVED,
                                                         AuditEvent.app == APP)).all()) == 1
    with pytest.raises(CatalogueError, match="was removed"):
        validate_release(store, ReleaseRequest(app=APP, env="prod", version_label="2.0.0"))
