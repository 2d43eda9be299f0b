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
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import docker
import httpx
from docker.errors import APIError, ImageNotFound, NotFound
from docker.models.containers import Container

from integrations.docker.diagnosis import ReplicaWatch, log_tail
from integrations.docker.listing import Listed
from integrations.docker.placement import NoRoomError, Placed, container_name, place, spread
from integrations.docker.references import docker_memory, nano_cpus, own_repo_digest
from integrations.errors import ClusterUnavailableError, PermanentRuntimeError
from integrations.protocols import Progress
from schemas.models import ImageSpec, Instance, StartVersionInput, VersionRef
from schemas.settings import DockerHost

LABEL_APP = "slipway.app"
LABEL_ENV = "slipway.env"
LABEL_VERSION = "slipway.version"
LABEL_PORT = "slipway.port"
# Which Slipway stack started a container: two stacks sharing one engine never touch each
# other's containers (a container from before this label is taken as this stack's own).
LABEL_STACK = "slipway.stack"
# The cluster host a replica was placed on (its name in the cluster's settings).
LABEL_HOST = "slipway.host"
LABEL_INDEX = "slipway.index"
STOP_TIMEOUT_SECONDS = 10
# How long a new replica may fail the same way (restarting after it exits, one health answer
# other than 200 on every probe) before wait_ready gives up on the version, long before the
# progress deadline: SLIPWAY_FAILING_VERSION_SECONDS.
FAILING_VERSION_SECONDS = 30.0
# Health answers that mean "not ready yet" rather than "wrong": left to the progress deadline.
WARMING_UP = frozenset({503})
# At most this many unhealthy replicas are described in a progress message.
NOTES_SHOWN = 3


class EngineError(ClusterUnavailableError):
    """An engine failure worth retrying (engine unreachable, container did not start)."""


class ImageMissingError(PermanentRuntimeError):
    """The image does not exist locally nor in its registry: retrying won't help."""


class NotReadyError(PermanentRuntimeError):
    """Replicas did not become healthy before the progress deadline."""


class FailingVersionError(NotReadyError):
    """A new replica failed the same way for the whole failing-version bound (a crash loop,
    one health answer on every probe): waiting out the progress deadline won't help."""


T = TypeVar("T")


class DockerRuntime:
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
        try:
            containers = self._client(host).containers.list(
                all=True, filters={"label": [LABEL_ENV]})
        except (APIError, docker.errors.DockerException) as error:
            raise EngineError(f"docker engine of host {host.name} ({host.engine}) "
                              f"unreachable: {error}") from error
        return sum(1 for c in containers if c.labels.get(LABEL_STACK, self.stack) == self.stack)

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

    def instances(self, env_key: str, version: int | None = None,
                  port: int | None = 8080) -> list[Instance]:
        """Running replicas with the host address/port where ``port`` is published (None:
        the port each container was started for the load balancer)."""
        return [instance for host, listed in self._listed(env_key, version)
                if (instance := listed.instance(host.address, port)) is not None]

    def _listed(self, env_key: str, version: int | None = None) -> list[tuple[DockerHost,
                                                                              Listed]]:
        """This stack's containers of an environment (a version) as the engines list them:
        one call per host, the hosts at once (:mod:`integrations.docker.listing`)."""
        filters = [f"{LABEL_ENV}={env_key}"]
        if version is not None:
            filters.append(f"{LABEL_VERSION}={version}")

        def on(host: DockerHost) -> list[tuple[DockerHost, Listed]]:
            try:
                found = self._client(host).containers.list(all=True, sparse=True,
                                                           filters={"label": filters})
            except (APIError, docker.errors.DockerException) as error:
                raise EngineError(f"docker engine of host {host.name} ({host.engine}) "
                                  f"unreachable: {error}") from error
            listed = (Listed.of(container.attrs) for container in found)
            return [(host, item) for item in listed
                    if item.labels.get(LABEL_STACK, self.stack) == self.stack]

        return sorted((pair for pairs in self._each(self.hosts, on) for pair in pairs),
                      key=lambda pair: (pair[1].name, pair[0].name))

    def _instance(self, host: DockerHost, container: Container,
                  port: int | None) -> Instance | None:
        """The replica behind a (freshly reloaded) container, None unless it runs with
        ``port`` published."""
        if container.status != "running":
            return None
        wanted = port or container.labels.get(LABEL_PORT) or ""
        published = container.attrs["NetworkSettings"]["Ports"] or {}
        bindings = published.get(f"{wanted}/tcp") if wanted else next(
            (found for found in published.values() if found), None)
        if not bindings:
            return None
        return Instance(
            name=f"v{container.labels[LABEL_VERSION]}-{container.labels[LABEL_INDEX]}",
            version=int(container.labels[LABEL_VERSION]),
            address=bindings[0]["HostIp"] or host.address,
            port=int(bindings[0]["HostPort"]),
        )

    def versions(self, env_key: str, namespace: str = "default") -> list[int]:
        """Every version that has containers (running or not) in the environment."""
        return sorted({int(c.labels[LABEL_VERSION]) for _e, c in self._containers(env_key)})

    def wait_ready(self, ref: VersionRef, replicas: int, port: int, health_path: str,
                   deadline_seconds: float, progress: Progress | None = None,
                   poll_seconds: float = 0.5) -> list[Instance]:
        """Wait until ``replicas`` containers run and answer 200 on ``health_path``.

        Never silent: every look reports ``n/m replicas healthy`` and what each unhealthy
        replica is doing (restarting after an exit, the health answer it gave). A replica
        that exited and stays down fails the wait at once; one that keeps failing the same
        way for :attr:`failing_version_seconds` (the restart policy bringing it back after
        every exit, or one health answer other than 200 on every probe) fails it then, with
        its last log lines, instead of at the progress deadline. No answer at all (a slow
        start) and 503 (warming up) wait for the deadline.
        """
        deadline = time.monotonic() + deadline_seconds
        watches: dict[str, ReplicaWatch] = {}
        # Replicas that answered 200 at a look without being inspected: their restart count
        # was not seen, so the next inspection takes it as the baseline, not as a crash.
        unseen: set[str] = set()
        while True:
            healthy: list[Instance] = []
            notes: list[str] = []
            unhealthy: Container | None = None
            # One list per host per look; a replica is inspected only when it does not
            # answer 200 (its restarts, exit code, out-of-memory kill are not in the list).
            for host, listed in self._listed(ref.env_key, ref.version):
                watch = watches.setdefault(listed.name, ReplicaWatch())
                seen = listed.instance(host.address, port)
                code = self._probe(seen, health_path) if seen is not None else None
                if seen is not None and code == 200:
                    watch.crash_since, watch.answer = None, None
                    unseen.add(listed.name)
                    healthy.append(seen)
                    continue
                try:
                    container = self._client(host).containers.get(listed.id)
                except NotFound:  # removed while we looked: the next look sees the rest
                    continue
                except (APIError, docker.errors.DockerException) as error:
                    raise EngineError(f"docker engine of host {host.name} ({host.engine}) "
                                      f"unreachable: {error}") from error
                if listed.name in unseen:
                    unseen.discard(listed.name)
                    watch.restarts = max(watch.restarts,
                                         int(container.attrs.get("RestartCount") or 0))
                instance, note = self._look(ref, host, container, port, health_path, watch,
                                            probed=(seen, code) if seen is not None else None)
                if instance is not None:
                    healthy.append(instance)
                else:
                    notes.append(note)
                    unhealthy = unhealthy or container
            last = f"{len(healthy)}/{replicas} replicas of v{ref.version} healthy"
            if notes:
                more = len(notes) - NOTES_SHOWN
                last += "; " + "; ".join(notes[:NOTES_SHOWN]) + (f"; {more} more"
                                                                 if more > 0 else "")
            if progress:
                progress(last)
            if len(healthy) >= replicas:
                return healthy
            if time.monotonic() > deadline:
                raise NotReadyError(f"progress deadline ({deadline_seconds:.0f}s) passed: {last}"
                                    + (log_tail(unhealthy) if unhealthy else ""))
            time.sleep(poll_seconds)

    def _look(self, ref: VersionRef, host: DockerHost, container: Container, port: int,
              health_path: str, watch: ReplicaWatch,
              probed: tuple[Instance, int | None] | None = None,
              ) -> tuple[Instance | None, str]:
        """One look at a replica being waited for (its container freshly inspected): the
        instance when it answers 200, else a note of what it does; raises
        :class:`FailingVersionError` when it has failed the same way for the whole bound.
        ``probed``: what its health path answered at that address a moment ago (asked
        again if the inspection finds it elsewhere)."""
        now = time.monotonic()
        bound = self.failing_version_seconds
        index = container.labels.get(LABEL_INDEX, "?")
        replica = f"v{ref.version} {self._replica(host, index)}"
        state = container.attrs.get("State") or {}
        restarts = int(container.attrs.get("RestartCount") or 0)
        exited = f"exited {state.get('ExitCode', '?')}" + (
            " (out of memory)" if state.get("OOMKilled") else "")
        if container.status in ("exited", "dead"):  # the restart policy gave up on it
            raise FailingVersionError(f"{replica} {container.status}: {exited}, not restarted"
                                      + log_tail(container))
        # A crash streak: restarting now, or restarted since the last look. It ends after a
        # whole bound without a sign (old restarts are history) or a 200.
        if state.get("Restarting") or restarts > watch.restarts:
            if watch.crash_since is None:
                watch.crash_since = now
            watch.last_crash = now
        elif watch.crash_since is not None and now - watch.last_crash >= bound:
            watch.crash_since = None
        watch.restarts = max(watch.restarts, restarts)
        crash = f"{exited} ({restarts} restart{'' if restarts == 1 else 's'})"
        if watch.crash_since is not None and now - watch.crash_since >= bound:
            raise FailingVersionError(f"{replica} restarting: {crash}"
                                      + log_tail(container))
        instance = self._instance(host, container, port)
        each = self._replica(host, index)
        if instance is None:
            if watch.crash_since is not None:
                return None, f"{each} restarting ({crash})"
            return None, f"{each} {container.status}" + (
                "" if container.status != "running" else f", port {port} not published")
        code = (probed[1] if probed is not None and probed[0] == instance
                else self._probe(instance, health_path))
        if code == 200:
            watch.crash_since, watch.answer = None, None
            return instance, ""
        if watch.crash_since is not None:
            return None, f"{each} restarting ({crash})"
        if code is None or code in WARMING_UP:
            watch.answer = None
            answer = "no answer" if code is None else f"answered {code}"
            return None, f"{each}: {health_path} {answer}"
        if code != watch.answer:
            watch.answer, watch.answer_since = code, now
        elif now - watch.answer_since >= bound:
            raise FailingVersionError(
                f"{replica}: {health_path} answered {code} on every probe for {bound:g}s"
                + log_tail(container))
        return None, f"{each}: {health_path} answered {code}"

    @staticmethod
    def _probe(instance: Instance, health_path: str) -> int | None:
        """The status the health path answers with, None when it does not answer."""
        try:
            url = f"http://{instance.address}:{instance.port}{health_path}"
            return httpx.get(url, timeout=2.0).status_code
        except httpx.HTTPError:
            return None

    def check_health(self, ref: VersionRef, replicas: int, port: int,
                     health_path: str) -> list[str]:
        """Problems of a running version right now: exited replicas, failed health checks.

        An engine that does not answer (restarting, overloaded) raises :class:`EngineError`:
        that says nothing about the version's health, so it must not read as a problem.
        """
        problems: list[str] = []
        instances: list[Instance] = []
        try:
            listed = self._listed(ref.env_key, ref.version)  # one call per host
        except (APIError, OSError) as error:  # requests' connection errors are OSErrors
            raise EngineError(f"docker engine unreachable: {error}") from error
        for host, item in listed:
            where = f" on {host.name}" if len(self.hosts) > 1 else ""
            if item.status != "running":
                problems.append(f"{item.name}{where} is {item.status}")
            elif (instance := item.instance(host.address, port)) is not None:
                instances.append(instance)
        problems += [f"{i.name} failed {health_path}" for i in instances
                     if not self._healthy(i, health_path)]
        if len(instances) < replicas and not problems:
            problems.append(f"{len(instances)}/{replicas} replicas of v{ref.version} running")
        return problems

    @classmethod
    def _healthy(cls, instance: Instance, health_path: str) -> bool:
        return cls._probe(instance, health_path) == 200

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
