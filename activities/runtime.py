"""Activities that drive the runtime: start, check, stop and remove versions of an app."""

from __future__ import annotations

import time
from collections.abc import Callable

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.support import Pulse, Relay, WorkflowSignals, heartbeating, permanent
from catalogue.store import CatalogueError
from integrations.errors import ClusterUnavailableError, PermanentRuntimeError
from integrations.protocols import Runtime
from schemas.models import (
    PROBE_SIGNAL,
    HealthCheckInput,
    ImageSpec,
    Instance,
    ListVersionsInput,
    ResolveImageInput,
    StartVersionInput,
    VersionRef,
    WaitReadyInput,
    WatchHealthInput,
)

# A stable wait's failure threshold: problems must show this many probes in a row, a second
# apart, before the version is judged unhealthy (a real failure costs ~2 s more to see).
CONFIRM_PROBES = 3
CONFIRM_SPACING_SECONDS = 1.0


class RuntimeActivities:
    """Runtime activities; the cluster named in each input picks the runtime."""

    def __init__(self, runtimes: dict[str, Runtime], default_cluster: str,
                 env_values: Callable[[int], dict[str, str]] | None = None,
                 admit_image: Callable[[str, ImageSpec, str], None] | None = None,
                 signals: WorkflowSignals | None = None) -> None:
        self.runtimes = runtimes
        self.default_cluster = default_cluster
        # Refuses a rejected image for the release of a run (catalogue/rejections.py) and
        # records the release's target: (app, image, run id); CatalogueError when refused.
        self.admit_image = admit_image
        # Reads an environment's variables from the catalogue: values stay out of history.
        self.env_values = env_values
        # Tells a waiting activity's release what it sees (a request's ``report``).
        self.signals = signals

    def _relay(self, report: bool, version: int, known: str | None = None) -> Relay:
        """The relay of the running activity's looks to its workflow, when it asked for
        them (the workflow shows them in the Web UI's current details)."""
        send = (self.signals.to_workflow(PROBE_SIGNAL)
                if report and self.signals is not None else None)
        return Relay(send, activity.info().activity_type, version, known=known)

    def _runtime(self, cluster: str) -> Runtime:
        try:
            return self.runtimes[cluster or self.default_cluster]
        except KeyError:
            raise ApplicationError(
                f"cluster {cluster!r} is not configured in SLIPWAY_CLUSTERS",
                type="ConfigurationError", non_retryable=True,
            ) from None

    @activity.defn
    def resolve_image(self, data: ResolveImageInput) -> ImageSpec:
        """Check the image exists (pulling it if needed) and return its digest; refuse an
        image the application rejected (a release of it was rolled back)."""
        with heartbeating(f"resolving {data.image}"), \
                permanent(PermanentRuntimeError, CatalogueError):
            spec = self._runtime(self.default_cluster).inspect_image(data.image)
            if self.admit_image is not None:
                info = activity.info()
                # release:<app>:<env>: the release whose image this is.
                parts = (info.workflow_id or "").split(":")
                self.admit_image(parts[1] if len(parts) > 2 else "", spec,
                                 info.workflow_run_id or "")
            return spec

    @activity.defn
    def start_version(self, data: StartVersionInput) -> None:
        """Ensure the version's replicas exist and run (idempotent)."""
        with heartbeating(f"starting v{data.version.version}") as pulse, \
                permanent(PermanentRuntimeError, CatalogueError):
            if data.env_id and self.env_values is not None:
                data = data.model_copy(update={"env_vars": {**data.env_vars,
                                                            **self.env_values(data.env_id)}})
            self._runtime(data.version.cluster).start_version(data, progress=pulse.progress)

    @activity.defn
    def wait_ready(self, data: WaitReadyInput) -> list[Instance]:
        """Wait until the version's replicas answer their health check, or the deadline.

        Fails (non-retryable) sooner when a replica keeps failing the same way: a crash loop
        or the same wrong health answer, named in the error with its last log lines. Every
        look is heartbeated ("0/1 replicas of v2 healthy; replica 0 restarting (exited 3, 2
        restarts)"), so the pending activity shows why the step is still waiting; with
        ``report`` what is new is also signalled to the release (its Web UI details)."""
        relay = self._relay(data.report, data.version.version)
        with heartbeating(f"waiting for v{data.version.version}") as pulse, \
                permanent(PermanentRuntimeError):
            def look(message: str) -> None:
                pulse.progress(message)
                relay.offer(message)

            return self._runtime(data.version.cluster).wait_ready(
                data.version, data.replicas, data.port, data.health_path,
                data.deadline_seconds, progress=look,
            )

    @activity.defn
    def check_health(self, data: HealthCheckInput) -> list[str]:
        """Probe a running version once; an empty list means healthy."""
        with heartbeating(f"probing v{data.version.version}"), permanent(PermanentRuntimeError):
            return self._runtime(data.version.cluster).check_health(
                data.version, data.replicas, data.port, data.health_path
            )

    @activity.defn
    def watch_health(self, data: WatchHealthInput) -> list[str]:
        """One stable-wait window: probe every interval until ``seconds`` have passed; the
        first confirmed problems end it early. An empty list means the version stayed healthy.

        A problem counts once :data:`CONFIRM_PROBES` probes in a row, a second apart, find
        one (a Kubernetes-style failure threshold), so a blip such as an engine restart that
        brings every container back is not a reason to roll back. A runtime that does not
        answer is no verdict at all: the watch goes on, and if the window ends while it is
        still unreachable the activity fails (retried) instead of calling the version healthy.

        The time already watched is checkpointed in the heartbeat, so a retry on another
        worker (the first one died) watches only what is left of the window.
        """
        check = data.check
        runtime = self._runtime(check.version.cluster)
        # Only a change is worth a signal: a suspected problem, an unreachable runtime, and
        # the return to healthy (not every second of "healthy for 12s").
        relay = self._relay(data.report, check.version.version, known="healthy")
        with heartbeating(f"watching v{check.version.version}") as pulse, \
                permanent(PermanentRuntimeError):
            began = time.monotonic() - float(pulse.resumed.get("watched", 0.0))
            while True:
                try:
                    problems = self._confirmed_problems(runtime, check, pulse, relay)
                    unreachable: ClusterUnavailableError | None = None
                except ClusterUnavailableError as error:
                    problems, unreachable = [], error
                    pulse.progress(f"runtime unreachable, still watching: {error}")
                    relay.offer(pulse.message)
                watched = time.monotonic() - began
                if problems:
                    return problems
                if watched >= data.seconds:
                    if unreachable is not None:
                        raise unreachable
                    return []
                next_probe = time.monotonic() + min(data.interval_seconds,
                                                    data.seconds - watched)
                while (left := next_probe - time.monotonic()) > 0:
                    watched = time.monotonic() - began
                    pulse.progress(f"v{check.version.version} healthy for {watched:.0f}s",
                                   {"watched": watched})
                    relay.offer(f"every probe of v{check.version.version} passed",
                                key="healthy")
                    time.sleep(min(1.0, left))  # short naps: a cancel is seen within 1 s

    @staticmethod
    def _confirmed_problems(runtime: Runtime, check: HealthCheckInput,
                            pulse: Pulse, relay: Relay | None = None) -> list[str]:
        """Probe; when problems show, probe again until they persist :data:`CONFIRM_PROBES`
        times in a row (the last problems) or a probe comes back clean (none)."""
        for attempt in range(1, CONFIRM_PROBES + 1):
            problems = runtime.check_health(check.version, check.replicas, check.port,
                                            check.health_path)
            if not problems or attempt == CONFIRM_PROBES:
                return problems
            pulse.progress(f"confirming ({attempt}/{CONFIRM_PROBES}): {'; '.join(problems)}")
            if relay is not None:
                relay.offer(pulse.message)
            time.sleep(CONFIRM_SPACING_SECONDS)
        return []

    @activity.defn
    def list_versions(self, data: ListVersionsInput) -> list[int]:
        """Versions of the app that have containers in the environment."""
        with heartbeating("listing versions"), permanent(PermanentRuntimeError):
            return self._runtime(data.cluster).versions(data.env_key, data.namespace)

    @activity.defn
    def stop_version(self, data: VersionRef) -> None:
        """Stop the version's containers, keeping them so a rollback can start them again."""
        with heartbeating(f"stopping v{data.version}"), permanent(PermanentRuntimeError):
            self._runtime(data.cluster).stop_version(data)

    @activity.defn
    def remove_version(self, data: VersionRef) -> None:
        """Remove the version's containers (already gone is fine)."""
        with heartbeating(f"removing v{data.version}"), permanent(PermanentRuntimeError):
            self._runtime(data.cluster).remove_version(data)

