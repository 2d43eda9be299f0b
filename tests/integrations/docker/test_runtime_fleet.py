"""DockerRuntime on a cluster of three hosts: network namespaces with their own dockerd
(tests/support/fleet.py), each host pulling the image from the test registry through its
forwarded loopback port, replicas spread over the hosts and published on their addresses."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import httpx
import pytest

from integrations.docker.placement import NoRoomError, container_name
from integrations.docker.runtime import LABEL_HOST, DockerRuntime, ImageMissingError
from schemas.models import ImageSpec, StartVersionInput, VersionRef
from tests.support.fleet import Fleet, fleet  # noqa: F401  (the session's test bed)
from tests.support.registry import RegistryServer

pytestmark = pytest.mark.integration

MAIN_ENGINE = "unix:///var/run/docker.sock"
SAMPLE = Path(__file__).resolve().parents[3] / "examples" / "sample-app"
BASE = "slipway/busybox:local"


@pytest.fixture(scope="module")
def image(fleet: Fleet, registry_server: RegistryServer) -> Iterator[str]:  # noqa: F811
    """The sample app in the test registry, and the registry reachable from every host."""
    fleet.forward(int(registry_server.host.rsplit(":", 1)[1]))
    client = docker.DockerClient(base_url=MAIN_ENGINE)
    repository = f"{registry_server.host}/fleet-runtime"
    client.images.build(path=str(SAMPLE), tag=f"{repository}:1", rm=True,
                        buildargs={"BASE_IMAGE": BASE, "VERSION": "1.0.0"})
    client.images.push(repository, tag="1", auth_config=auth(registry_server))
    yield f"{repository}:1"
    with contextlib.suppress(docker.errors.APIError):
        client.images.remove(f"{repository}:1", force=True)


def auth(registry: RegistryServer) -> dict[str, str]:
    return {"username": registry.username, "password": registry.password}


@pytest.fixture
def runtime(fleet: Fleet, registry_server: RegistryServer) -> Iterator[DockerRuntime]:  # noqa: F811
    runtime = DockerRuntime(hosts=fleet.cluster().hosts,
                            registry_auth=lambda _image: auth(registry_server),
                            stack=f"fleet-test-{uuid.uuid4().hex[:8]}")
    yield runtime
    for host in runtime.hosts:
        with contextlib.closing(docker.DockerClient(base_url=host.engine)) as client:
            for container in client.containers.list(
                    all=True, filters={"label": f"slipway.stack={runtime.stack}"}):
                container.remove(force=True)


def ref(version: int = 1, key: str = "") -> VersionRef:
    return VersionRef(app="fleet", env_key=key or f"fleet-{uuid.uuid4().hex[:6]}",
                      cluster="fleet", version=version)


def start(runtime: DockerRuntime, version: VersionRef, image: str, replicas: int) -> None:
    runtime.start_version(StartVersionInput(version=version, image=image, replicas=replicas,
                                            ports=[8080], health_path="/healthz"))


def placement(runtime: DockerRuntime, version: VersionRef) -> dict[str, list[str]]:
    """Container names per host, as the engines report them."""
    found: dict[str, list[str]] = {}
    for host in runtime.hosts:
        found[host.name] = sorted(c.name for c in runtime.containers_on(
            host, version.env_key, version.version))
    return found


def test_replicas_spread_over_the_hosts_and_answer_on_their_addresses(
        runtime: DockerRuntime, image: str, fleet: Fleet) -> None:  # noqa: F811
    v1 = ref()
    start(runtime, v1, image, 6)
    spread = placement(runtime, v1)
    print(f"\n6 replicas on 3 hosts: {spread}")
    assert {host: len(names) for host, names in spread.items()} == {"n1": 2, "n2": 2, "n3": 2}
    for host in runtime.hosts:  # each host pulled the image from the registry itself
        assert runtime.containers_on(host, v1.env_key)[0].labels[LABEL_HOST] == host.name

    instances = runtime.wait_ready(v1, 6, 8080, "/healthz", deadline_seconds=60)
    addresses = {host.name: host.address for host in fleet.cluster().hosts}
    by_host = {i.address for i in instances}
    assert by_host == set(addresses.values())
    for instance in instances:
        assert httpx.get(f"http://{instance.address}:{instance.port}/").text.strip() \
            == "sample-app 1.0.0"
    assert {i.name: i.address for i in runtime.instances(v1.env_key, port=None)} == \
        {i.name: i.address for i in instances}

    # A stopped replica is named with its host, and started again where it is.
    n2 = runtime.hosts[1]
    victim = runtime.containers_on(n2, v1.env_key, 1)[0]
    victim.stop(timeout=1)
    assert f"{victim.name} on n2 is exited" in runtime.check_health(v1, 6, 8080, "/healthz")
    start(runtime, v1, image, 6)
    assert placement(runtime, v1) == spread
    victim.reload()
    assert victim.status == "running"
    # Scaled down: the highest indexes go.
    start(runtime, v1, image, 4)
    assert sorted(n for names in placement(runtime, v1).values() for n in names) == \
        sorted(container_name(v1.env_key, 1, i, runtime.stack) for i in range(4))
    # The canary of v2 goes where the environment holds least.
    emptiest = min(runtime.hosts, key=lambda h: len(runtime.containers_on(h, v1.env_key)))
    v2 = ref(2, v1.env_key)
    start(runtime, v2, image, 1)
    assert [h for h, names in placement(runtime, v2).items() if names] == [emptiest.name]
    assert runtime.check_health(v2, 1, 8080, "/healthz") in ([],
                                                             ["0/1 replicas of v2 running"])
    runtime.remove_version(v1)
    runtime.remove_version(v2)
    assert runtime.versions(v1.env_key) == []


def test_capacity_is_respected_and_a_full_cluster_is_refused(
        fleet: Fleet, registry_server: RegistryServer, image: str) -> None:  # noqa: F811
    small = DockerRuntime(hosts=fleet.cluster(capacity=1).hosts,
                          registry_auth=lambda _image: auth(registry_server),
                          stack=f"fleet-test-{uuid.uuid4().hex[:8]}")
    try:
        v1 = ref()
        start(small, v1, image, 3)
        assert {h: len(n) for h, n in placement(small, v1).items()} == {"n1": 1, "n2": 1,
                                                                          "n3": 1}
        with pytest.raises(NoRoomError, match="n1 1/1, n2 1/1, n3 1/1"):
            start(small, ref(key=v1.env_key, version=2), image, 1)
    finally:
        small.remove_version(v1)


def test_an_image_only_one_engine_has_cannot_spread(runtime: DockerRuntime, image: str) -> None:
    built = docker.DockerClient(base_url=MAIN_ENGINE).images.get(BASE).id
    spec = ImageSpec(image=BASE, digest=built)
    with pytest.raises(ImageMissingError, match="push it to a registry"):
        start(runtime, ref(), spec.run_ref, 1)


def test_a_cordoned_host_gets_no_new_replica_and_keeps_what_runs(
        fleet: Fleet, registry_server: RegistryServer, image: str) -> None:  # noqa: F811
    cordoned: set[str] = set()
    runtime = DockerRuntime(hosts=fleet.cluster().hosts, stack=f"fleet-test-{uuid.uuid4().hex[:8]}",
                            registry_auth=lambda _image: auth(registry_server),
                            cordoned=lambda: frozenset(cordoned))
    try:
        v1 = ref()
        start(runtime, v1, image, 3)
        assert {host: len(names) for host, names in placement(runtime, v1).items()} == {
            "n1": 1, "n2": 1, "n3": 1}
        cordoned.add("n1")
        start(runtime, v1, image, 3)  # what runs stays where it is
        assert len(placement(runtime, v1)["n1"]) == 1
        v2 = ref(2, v1.env_key)
        start(runtime, v2, image, 4)
        assert {host: len(names) for host, names in placement(runtime, v2).items()} == {
            "n1": 0, "n2": 2, "n3": 2}
        cordoned.update({"n2", "n3"})
        with pytest.raises(NoRoomError, match="every host is cordoned"):
            start(runtime, ref(3, v1.env_key), image, 1)
    finally:
        for host in runtime.hosts:
            with contextlib.closing(docker.DockerClient(base_url=host.engine)) as client:
                for container in client.containers.list(
                        all=True, filters={"label": f"slipway.stack={runtime.stack}"}):
                    container.remove(force=True)
