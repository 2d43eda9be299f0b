"""An engine-built image that was also pushed under another repository runs by its image ID,
not by the other repository's digest (which the engine would try to pull from Docker Hub)."""

from __future__ import annotations

from pathlib import Path

import docker
import pytest

from integrations.docker.runtime import DockerRuntime
from schemas.models import StartVersionInput, VersionRef
from tests.support.registry import RegistryServer

pytestmark = pytest.mark.integration

SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sample-app"
KEY = "imgres-test-local"


def test_an_image_with_other_repositories_digests_resolves_to_its_id(
        docker_client: docker.DockerClient, registry_server: RegistryServer) -> None:
    image, _ = docker_client.images.build(path=str(SAMPLE), tag="slipway/imgres:v1", rm=True,
                                          buildargs={"BASE_IMAGE": "slipway/busybox:local",
                                                     "VERSION": "1.0.0"})
    elsewhere = f"{registry_server.host}/imgres-elsewhere"
    image.tag(elsewhere, "v9")
    docker_client.images.push(elsewhere, tag="v9", auth_config={
        "username": registry_server.username, "password": registry_server.password})
    image.reload()
    assert any(entry.startswith(elsewhere) for entry in image.attrs["RepoDigests"])

    runtime = DockerRuntime(["unix:///var/run/docker.sock"])
    spec = runtime.inspect_image("slipway/imgres:v1")
    assert spec.digest == image.id and spec.run_ref == image.id
    pushed = runtime.inspect_image(f"{elsewhere}:v9")
    assert pushed.run_ref.startswith(f"{elsewhere}@sha256:")

    ref = VersionRef(app="imgres", env_key=KEY, cluster="local", version=1)
    try:
        runtime.start_version(StartVersionInput(version=ref, image=spec.run_ref, replicas=1,
                                                ports=[8080], health_path="/healthz"))
        ready = runtime.wait_ready(ref, 1, 8080, "/healthz", deadline_seconds=60)
        assert [instance.name for instance in ready] == ["v1-0"]
    finally:
        runtime.remove_version(ref)
