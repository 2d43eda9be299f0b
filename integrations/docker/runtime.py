"""The embedded ``Runtime``: replicas of an image version as containers on Docker hosts.

A Docker cluster is a set of hosts, each with its engine and the address its replicas publish
on (loopback for the one local engine). Replicas of a version spread across the hosts (no two
on one host while another has room, each host's capacity respected); each publishes its
container port on its host's address with an engine-chosen port, and the load balancer
targets that ``address:port``. A host without the image pulls it from its registry.
Containers are labelled with app, environment key, version and host, so the runtime can
always rediscover what it started and where.

Everything that happens on one host is a method taking the host (``containers_on``,
``image_on``, ``run_on``, ``replicas_on``): the seam where a host's own agent takes over.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import docker
from docker.errors import APIError, ImageNotFound, NotFound
from docker.models.containers import Container

from integrations.docker.common import (
    FAILING_VERSION_SECONDS,
    LABEL_APP,
    LABEL_ENV,
    LABEL_HOST,
    LABEL_INDEX,
    LABEL_PORT,
    LABEL_STACK,
    LABEL_VERSION,
    STOP_TIMEOUT_SECONDS,
    EngineError,
    FailingVersionError,
    ImageMissingError,
    NotReadyError,
)
from integrations.docker.health import ReplicaHealth
from integrations.docker.placement import NoRoomError, Placed, container_name, place, spread
from integrations.docker.references import docker_memory, nano_cpus, own_repo_digest
from integrations.protocols import Progress
from schemas.models import ImageSpec, StartVersionInput, VersionRef
from schemas.settings import DockerHost

# Re-exported: callers import the labels and errors from the runtime.
__all__ = ["FAILING_VERSION_SECONDS", "LABEL_APP", "LABEL_ENV", "LABEL_HOST", "LABEL_INDEX",
           "LABEL_PORT", "LABEL_STACK", "LABEL_VERSION", "DockerRuntime", "EngineError",
           "FailingVersionError", "ImageMissingError", "NotReadyError"]

T = TypeVar("T")


class DockerRuntime(ReplicaHealth):
    """Runs versions of an application across the Docker hosts of a cluster."""

    def __init__(self, engines: list[str] | None = None, publish_host: str = "127.0.0.1",
                 registry_auth: Callable[[str], dict[str, str] | None] | None = None,
                 stack: str = "",
                 failing_version_seconds: float = FAILING_VERSION_SECONDS,
                 hosts: Sequence[DockerHost] | None = None,
                 cordoned: Callable[[], frozenset[str]] | None = None) -> None:
        """Either ``hosts`` (each with its engine and publish address) or ``engines``, all
        publishing on ``publish_host`` (hosts h1, h2, … as in the cluster settings).
        ``cordoned`` names the hosts that get no new replica now (asked at each start)."""
        if hosts is None:
            hosts = [DockerHost(name=f"h{number}", engine=engine, address=publish_host)
                     for number, engine in enumerate(engines or [], start=1)]
        if not hosts:
            raise ValueError("a Docker runtime needs at least one host")
        self.hosts: list[DockerHost] = list(hosts)
        self.stack = stack
        self.failing_version_seconds = failing_version_seconds
        self._registry_auth = registry_auth or (lambda _image: None)
        self._cordoned = cordoned or frozenset
        self._clients: dict[str, docker.DockerClient] = {}

    @property
    def engines(self) -> list[str]:
        return [host.engine for host in self.hosts]

    def _client(self, host: DockerHost) -> docker.DockerClient:
        if host.engine not in self._clients:
            try:  # asks the engine its API version
                self._clients[host.engine] = docker.DockerClient(base_url=host.engine,
                                                                 timeout=60)
            except docker.errors.DockerException as error:
                raise EngineError(f"docker engine of host {host.name} ({host.engine}) "
                                  f"unreachable: {error}") from error
        return self._clients[host.engine]

    def _each(self, hosts: Sequence[DockerHost], work: Callable[[DockerHost], T]) -> list[T]:
        """``work`` on every host, the hosts at once (one thread each); results in order, the
        first host's error raised."""
        if len(hosts) <= 1:
            return [work(host) for host in hosts]
        with ThreadPoolExecutor(max_workers=len(hosts),
                                thread_name_prefix="docker-host") as pool:
            return list(pool.map(work, hosts))

    def _replica(self, host: DockerHost, index: object) -> str:
        """``replica 3``, naming the host when the cluster has more than one."""
        return f"replica {index}" + (f" on {host.name}" if len(self.hosts) > 1 else "")

    def containers_on(self, host: DockerHost, env_key: str,
                      version: int | None = None) -> list[Container]:
        """This stack's containers of an environment (a version) on one host."""
        filters = [f"{LABEL_ENV}={env_key}"]
        if version is not None:
            filters.append(f"{LABEL_VERSION}={version}")
        try:
            containers = self._client(host).containers.list(all=True,
                                                            filters={"label": filters})
        except (APIError, docker.errors.DockerException) as error:
            raise EngineError(f"docker engine of host {host.name} ({host.engine}) "
                              f"unreachable: {error}") from error
        return [c for c in containers if c.labels.get(LABEL_STACK, self.stack) == self.stack]

    def _containers(self, env_key: str, version: int | None = None) -> list[Placed]:
        found = self._each(self.hosts, lambda host: [
            (host, c) for c in self.containers_on(host, env_key, version)])
        return sorted((pair for pairs in found for pair in pairs),
                      key=lambda pair: (pair[1].name, pair[0].name))

    def replicas_on(self, host: DockerHost) -> int:
        """How many of this stack's replicas the host holds, every environment together
        (what its capacity limits)."""
        return len(self.replicas_held(host))

    def host(self, name: str) -> DockerHost:
        """The host called ``name``; KeyError when the cluster has none."""
        for host in self.hosts:
            if host.name == name:
                return host
        raise KeyError(name)

    def replicas_held(self, host: DockerHost) -> list[Container]:
        """Every container of this stack on the host, all environments and lanes."""
        try:
            containers = self._client(host).containers.list(
                all=True, filters={"label": [LABEL_ENV]})
        except (APIError, docker.errors.DockerException) as error:
            raise EngineError(f"docker engine of host {host.name} ({host.engine}) "
                              f"unreachable: {error}") from error
        return [c for c in containers if c.labels.get(LABEL_STACK, self.stack) == self.stack]

    def remove_replica(self, host: DockerHost, ref: VersionRef, index: int) -> None:
        """Remove replica ``index`` of a version from this host (already gone is fine)."""
        for container in self.containers_on(host, ref.env_key, ref.version):
            if container.labels.get(LABEL_INDEX) == str(index):
                with contextlib.suppress(NotFound):
                    container.remove(force=True)

    def inspect_image(self, image: str) -> ImageSpec:
        """Resolve an image reference to what never moves, pulling it when it is not local:
        the manifest digest of its own repository, else the engine's image ID."""
        local = self.image_on(self.hosts[0], image)
        digest = own_repo_digest(image, local.attrs.get("RepoDigests") or []) or local.id
        return ImageSpec(image=image, digest=digest)

    def image_on(self, host: DockerHost, image: str) -> Any:
        """The image on this host's engine, pulled from its registry when it is not there."""
        client = self._client(host)
        try:
            return client.images.get(image)
        except ImageNotFound:
            pass
        except APIError as error:
            raise EngineError(f"docker engine of host {host.name} unreachable: {error}") \
                from error
        if image.startswith("sha256:"):  # an image ID: built on one engine, in no registry
            raise ImageMissingError(
                f"image {image[:19]}… is not on host {host.name} and cannot be pulled (an "
                "image built on one engine and never pushed): push it to a registry "
                "(SLIPWAY_REGISTRY) to run it on several hosts")
        try:
            return client.images.pull(image, auth_config=self._registry_auth(image))
        except (ImageNotFound, NotFound) as error:
            raise ImageMissingError(f"image {image} not found locally or in its registry") \
                from error
        except APIError as error:
            if error.status_code in (401, 403, 404):
                raise ImageMissingError(f"image {image} cannot be pulled: {error.explanation}") \
                    from error
            raise EngineError(f"pulling {image} on host {host.name} failed: {error}") \
                from error
        except docker.errors.DockerException as error:
            raise EngineError(f"pulling {image} on host {host.name} failed: {error}") \
                from error

    def image_id_on(self, host: DockerHost, image: str) -> str | None:
        """The ID of ``image`` on the host as it is now (no pull), None when absent."""
        try:
            return str(self._client(host).images.get(image).id)
        except ImageNotFound:
            return None
        except APIError as error:
            raise EngineError(f"docker engine of host {host.name} unreachable: {error}") \
                from error

    def start_version(self, spec: StartVersionInput, progress: Progress | None = None) -> None:
        """Ensure exactly ``spec.replicas`` containers of the version exist and run.

        Idempotent: containers already running the same image are kept where they are,
        stopped ones are started again, surplus replicas (the highest indexes) are removed.
        Missing replicas are placed by :func:`place` on hosts not cordoned, and the hosts
        they go to pull the image first, all at once.
        """
        ref = spec.version
        everything = self._containers(ref.env_key)
        wanted = {container_name(ref.env_key, ref.version, index, self.stack): index
                  for index in range(spec.replicas)}
        image_ids: dict[str, str | None] = {}
        kept: dict[str, Placed] = {}
        others: list[Placed] = []
        for host, container in everything:
            if container.labels.get(LABEL_VERSION) != str(ref.version):
                others.append((host, container))
                continue
            if container.name in wanted and container.name not in kept:
                if host.name not in image_ids:
                    image_ids[host.name] = self.image_id_on(host, spec.image)
                # Compare image IDs, not names: a tag may have moved since it started.
                if container.attrs.get("Image") == image_ids[host.name]:
                    if container.status != "running":
                        container.start()
                    kept[container.name] = (host, container)
                    continue
            with contextlib.suppress(NotFound):
                container.remove(force=True)
        missing = [(name, index) for name, index in wanted.items() if name not in kept]
        if not missing:
            return
        cordoned = self._cordoned()
        open_hosts = [host for host in self.hosts if host.name not in cordoned]
        if not open_hosts:
            raise NoRoomError(f"every host is cordoned ({', '.join(sorted(cordoned))}): "
                              "`slipway host uncordon HOST` one of them, or add hosts")
        full = [host for host in open_hosts if host.capacity]
        load = dict(zip((host.name for host in full), self._each(full, self.replicas_on),
                        strict=True))
        targets = place(open_hosts, len(missing), spread(kept.values()),
                        spread([*kept.values(), *others]), load)
        self._each(list({host.name: host for host in targets}.values()),
                   lambda host: self.image_on(host, spec.image))
        for (name, index), host in zip(missing, targets, strict=True):
            self.run_on(host, index, spec)
            if progress:
                progress(f"started {name} on {host.name}")

    def run_on(self, host: DockerHost, index: int, spec: StartVersionInput) -> None:
        """Run replica ``index`` of a version on this host, its ports published on the
        host's address (the image is there: :meth:`image_on`)."""
        client = self._client(host)
        ref = spec.version
        name = container_name(ref.env_key, ref.version, index, self.stack)
        labels = {
            **spec.labels,
            LABEL_APP: ref.app, LABEL_ENV: ref.env_key, LABEL_VERSION: str(ref.version),
            LABEL_INDEX: str(index), "slipway.image": spec.image,
            # The port the load balancer targets, so what runs can be put back in rotation.
            LABEL_PORT: str(spec.ports[0]) if spec.ports else "",
            LABEL_STACK: self.stack, LABEL_HOST: host.name,
        }
        try:
            client.containers.run(
                spec.image, name=name, detach=True, labels=labels,
                environment={**spec.env_vars, "SLIPWAY_VERSION": str(ref.version)},
                ports={f"{port}/tcp": (host.address, None) for port in spec.ports},
                mem_limit=docker_memory(spec.memory), nano_cpus=nano_cpus(spec.cpu),
                restart_policy={"Name": "unless-stopped"},
            )
        except APIError as error:
            raise EngineError(f"container {name} did not start on host {host.name}: "
                              f"{error.explanation}") from error

    def versions(self, env_key: str, namespace: str = "default") -> list[int]:
        """Every version that has containers (running or not) in the environment."""
        return sorted({int(c.labels[LABEL_VERSION]) for _e, c in self._containers(env_key)})

    def stop_version(self, ref: VersionRef) -> None:
        """Stop every replica of the version, the hosts at once."""
        self._each(self.hosts, lambda host: self.stop_on(host, ref))

    def stop_on(self, host: DockerHost, ref: VersionRef) -> None:
        for container in self.containers_on(host, ref.env_key, ref.version):
            if container.status == "running":
                with contextlib.suppress(NotFound):  # removed meanwhile: stopped all the same
                    container.stop(timeout=STOP_TIMEOUT_SECONDS)

    def remove_version(self, ref: VersionRef) -> None:
        """Remove every container of the version, the hosts at once; already gone is fine."""
        self._each(self.hosts, lambda host: self.remove_on(host, ref))

    def remove_on(self, host: DockerHost, ref: VersionRef) -> None:
        for container in self.containers_on(host, ref.env_key, ref.version):
            with contextlib.suppress(NotFound):
                container.remove(force=True)
