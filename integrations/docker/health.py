"""Whether the replicas of a version serve: where each answers, the wait until they are
healthy (never silent, failing fast on a crash loop), and a one-off check.

A mixin of :class:`~integrations.docker.runtime.DockerRuntime`: it reads what runs through
the runtime's engines, one container list per host and look.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

import docker
import httpx
from docker.errors import APIError, NotFound
from docker.models.containers import Container

from integrations.docker.common import (
    LABEL_ENV,
    LABEL_INDEX,
    LABEL_PORT,
    LABEL_STACK,
    LABEL_VERSION,
    NOTES_SHOWN,
    WARMING_UP,
    EngineError,
    FailingVersionError,
    NotReadyError,
)
from integrations.docker.diagnosis import ReplicaWatch, log_tail
from integrations.docker.listing import Listed
from integrations.docker.placement import Placed
from integrations.protocols import Progress
from schemas.models import Instance, VersionRef
from schemas.settings import DockerHost

T = TypeVar("T")


class ReplicaHealth:
    """The health half of the Docker runtime."""

    if TYPE_CHECKING:  # provided by DockerRuntime
        hosts: list[DockerHost]
        stack: str
        failing_version_seconds: float

        def _client(self, host: DockerHost) -> docker.DockerClient: ...

        def _each(self, hosts: Sequence[DockerHost],
                  work: Callable[[DockerHost], T]) -> list[T]: ...

        def _containers(self, env_key: str, version: int | None = None) -> list[Placed]: ...

        def _replica(self, host: DockerHost, index: object) -> str: ...

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
