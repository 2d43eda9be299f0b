"""A release train of three applications on the real Docker engine and HAProxy: the second
fails its health check, and the train ends with all three on their previous baselines."""

from __future__ import annotations

from collections.abc import Iterator

import docker
import httpx
import pytest
from sqlmodel import col, select
from temporalio.client import WorkflowFailureError
from temporalio.testing import WorkflowEnvironment

from catalogue.store import Store
from catalogue.tables import Baseline, Environment, Release, Train
from schemas.enums import ReleaseState
from schemas.models import ReleaseRequest
from schemas.settings import Settings
from starter.service.catalogue import add_env, mark_ready, register_app
from starter.service.releases import follow, start_release, validate_release
from starter.service.trains import start_train, train_request, train_status
from tests.integration.test_release_docker import SAMPLE

pytestmark = pytest.mark.integration

APPS = ("tr-pay", "tr-cart", "tr-mail")
IMAGE = "slipway/train-sample"


@pytest.fixture
def images(docker_client: docker.DockerClient, settings: Settings) -> Iterator[None]:
    for tag, extra in (("1.0.0", {}), ("2.0.0", {}), ("bad", {"FAIL_HEALTH_AFTER": "1"})):
        docker_client.images.build(path=str(SAMPLE), tag=f"{IMAGE}:{tag}", rm=True,
                                   buildargs={"BASE_IMAGE": settings.base_image,
                                              "VERSION": tag, **extra})
    yield
    for app in APPS:
        for container in docker_client.containers.list(
                all=True, filters={"label": f"slipway.app={app}"}):
            container.remove(force=True)
    for tag in ("1.0.0", "2.0.0", "bad"):
        docker_client.images.remove(f"{IMAGE}:{tag}", force=True)


def register(store: Store, settings: Settings) -> dict[str, int]:
    ports = {}
    for app in APPS:
        register_app(store, app, category="in-house", tier="core", owners=["ana"],
                     approvers=["lead"], source=str(SAMPLE), description="", actor="ana")
        mark_ready(store, app, "ana")
        env = add_env(store, app, "prod", cluster="local", replicas=1, cpu="", memory="64Mi",
                      ports=[8080], env_vars={}, runtime="docker", namespace="default",
                      health_path="/healthz", settings=settings, actor="ana",
                      strategy="rolling", stable_seconds=4, approval="none")
        ports[app] = env.lb_port
    return ports


def serving(port: int) -> str:
    return httpx.get(f"http://127.0.0.1:{port}/", timeout=5).text.strip()


async def test_a_train_whose_second_member_fails_leaves_all_three_on_their_baselines(
    temporal: WorkflowEnvironment, running_worker: None, settings: Settings, store: Store,
    images: None,
) -> None:
    ports = register(store, settings)
    for app in APPS:
        request, summary = validate_release(store, ReleaseRequest(
            app=app, env="prod", image=f"{IMAGE}:1.0.0", requested_by="ana"))
        started = await start_release(temporal.client, settings, request, summary)
        await follow(started.handle, lambda _status: None)
    assert {serving(port) for port in ports.values()} == {"sample-app 1.0.0"}

    train = train_request(
        store, "payday", [f"{app}@prod" for app in APPS], order=",".join(APPS), after=[],
        images=[f"tr-pay={IMAGE}:2.0.0", f"tr-cart={IMAGE}:bad", f"tr-mail={IMAGE}:2.0.0"],
        requested_by="ana")
    handle = await start_train(temporal.client, settings, train)
    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()
    status = await train_status(temporal.client, "payday")
    print("\n" + "\n".join(f"{e.at:%H:%M:%S.%f} {e.message}" for e in status.events))
    assert "train payday rolled_back: tr-cart@prod@local failed" in str(failure.value.cause)

    # Every app serves its previous version again, through its own HAProxy.
    assert {app: serving(port) for app, port in ports.items()} == {
        app: "sample-app 1.0.0" for app in APPS}
    members = {m.app: m for m in status.members}
    assert members["tr-pay"].state == "rolled_back" and members["tr-pay"].to_version == 2
    assert members["tr-pay"].rollback.startswith("back on v1")
    assert members["tr-cart"].state == "rolled_back" and members["tr-cart"].to_version is None
    assert members["tr-mail"].state == "waiting"
    with store.session() as session:
        envs = {env.id: env for env in session.exec(select(Environment)).all()}
        latest: dict[str, Baseline] = {}
        for baseline in session.exec(select(Baseline).order_by(col(Baseline.version))).all():
            latest[str(envs[baseline.env_id].app_id)] = baseline
        assert {b.image.split("@")[0] for b in latest.values()} == {f"{IMAGE}:1.0.0"}
        row = session.exec(select(Train)).one()
        assert row.state == ReleaseState.ROLLED_BACK
        in_train = session.exec(select(Release).where(Release.train_id == row.id)).all()
    # pay v2 (succeeded), cart bad (rolled back by itself), pay back to v1 (the joint abort).
    assert sorted(str(release.state) for release in in_train) == [
        "rolled_back", "succeeded", "succeeded"]
