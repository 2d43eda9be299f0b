"""A new version that fails the same way is judged within the failing-version bound, not at
the progress deadline (#29, "never silent"): a crash loop hidden by the restart policy, a
health path that answers 404 on every probe. Against the real dockerd, with images built
from the local base image."""

from __future__ import annotations

import contextlib
import io
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.runtime import RuntimeActivities
from integrations.docker.runtime import DockerRuntime, FailingVersionError
from schemas.models import ProbeReport, StartVersionInput, VersionRef, WaitReadyInput

pytestmark = pytest.mark.integration

ENGINE = "unix:///var/run/docker.sock"
BASE = "slipway/busybox:local"
SAMPLE = Path(__file__).resolve().parents[3] / "examples" / "sample-app"
# Small, so the tests are quick; the progress deadline stays far away, so only the bound
# can be what ends a wait.
BOUND_SECONDS = 5.0
DEADLINE_SECONDS = 120.0
SECRET = "s3cr3t-token-value"

CRASHING = f"""FROM {BASE}
CMD ["sh", "-c", "echo \\"starting with token $API_TOKEN\\"; echo 'fatal: cannot open /etc/app.conf'; exit 3"]
"""  # noqa: E501
NO_HEALTHZ = f"""FROM {BASE}
RUN mkdir -p /www && echo hello >/www/index.html
CMD ["sh", "-c", "echo 'serving /www on :8080'; exec httpd -f -p 8080 -h /www"]
"""


@pytest.fixture(scope="module")
def images() -> Iterator[dict[str, str]]:
    client = docker.DockerClient(base_url=ENGINE)
    client.ping()  # dockerd is started by scripts/bootstrap.sh; fail loudly if it is not
    tag = f"slipway/failing-test-{uuid.uuid4().hex[:8]}"
    built = {
        "crashing": client.images.build(fileobj=io.BytesIO(CRASHING.encode()),
                                        tag=f"{tag}:crashing", rm=True)[0].id,
        "no-healthz": client.images.build(fileobj=io.BytesIO(NO_HEALTHZ.encode()),
                                          tag=f"{tag}:no-healthz", rm=True)[0].id,
        "healthy": client.images.build(path=str(SAMPLE), tag=f"{tag}:healthy", rm=True,
                                       buildargs={"BASE_IMAGE": BASE, "VERSION": "2.0.0"})[0].id,
    }
    yield {name: f"{tag}:{name}" for name in built}
    for name in built:
        with contextlib.suppress(docker.errors.APIError):
            client.images.remove(f"{tag}:{name}", force=True)


@pytest.fixture
def runtime() -> Iterator[DockerRuntime]:
    runtime = DockerRuntime([ENGINE], stack=f"failing-test-{uuid.uuid4().hex[:8]}",
                            failing_version_seconds=BOUND_SECONDS)
    started: list[VersionRef] = []
    runtime.started = started  # type: ignore[attr-defined]
    try:
        yield runtime
    finally:
        for ref in started:
            runtime.remove_version(ref)


def start(runtime: DockerRuntime, image: str, replicas: int = 1,
          env_vars: dict[str, str] | None = None) -> VersionRef:
    ref = VersionRef(app="failing", env_key=f"failing-{uuid.uuid4().hex[:8]}",
                     cluster="local", version=2)
    runtime.started.append(ref)  # type: ignore[attr-defined]
    runtime.start_version(StartVersionInput(version=ref, image=image, replicas=replicas,
                                            ports=[8080], health_path="/healthz",
                                            env_vars=env_vars or {}))
    return ref


def test_a_crash_loop_fails_the_wait_with_its_exit_code_and_last_log_lines(
        runtime: DockerRuntime, images: dict[str, str]) -> None:
    ref = start(runtime, images["crashing"], env_vars={"API_TOKEN": SECRET})
    beats: list[Any] = []
    env = ActivityEnvironment()
    env.on_heartbeat = lambda *details: beats.append(details[0])
    relayed: list[ProbeReport] = []

    class Signals:  # WorkflowSignals, as the release's looks reach it
        def to_workflow(self, _name: str) -> Any:
            return relayed.append

    activities = RuntimeActivities({"local": runtime}, "local",  # type: ignore[dict-item]
                                   signals=Signals())  # type: ignore[arg-type]

    with pytest.raises(ApplicationError) as failure:
        env.run(activities.wait_ready, WaitReadyInput(
            version=ref, replicas=1, port=8080, health_path="/healthz",
            deadline_seconds=DEADLINE_SECONDS, report=True))

    error = failure.value
    assert error.non_retryable and error.type == "FailingVersionError"
    message = error.message
    assert message.startswith("v2 replica 0 restarting: exited 3 (")
    assert "restarts)" in message and "progress deadline" not in message
    assert "fatal: cannot open /etc/app.conf" in message
    # The replica printed its token; the error (bound for workflow history) does not.
    assert SECRET not in message and "starting with token ***" in message
    # While it waited, the heartbeat said why: the replica's state, not just "0/1".
    assert any(beat["message"].startswith("0/1 replicas of v2 healthy; replica 0 restarting "
                                          "(exited 3") for beat in beats)
    # … and the release was told, for the Web UI's current details (rate-limited).
    assert any(report.message.startswith("0/1 replicas of v2 healthy; replica 0 restarting "
                                         "(exited 3") and (report.healthy, report.desired)
               == (0, 1) for report in relayed)
    assert len(relayed) <= len({beat["message"] for beat in beats})


def test_a_health_path_answering_404_fails_the_wait_naming_the_answer(
        runtime: DockerRuntime, images: dict[str, str]) -> None:
    ref = start(runtime, images["no-healthz"])
    seen: list[str] = []

    with pytest.raises(FailingVersionError) as failure:
        runtime.wait_ready(ref, 1, 8080, "/healthz", DEADLINE_SECONDS, progress=seen.append)

    message = str(failure.value)
    assert message.startswith(
        f"v2 replica 0: /healthz answered 404 on every probe for {BOUND_SECONDS:g}s")
    assert "serving /www on :8080" in message
    assert "0/1 replicas of v2 healthy; replica 0: /healthz answered 404" in seen


def test_a_healthy_version_still_passes(runtime: DockerRuntime,
                                        images: dict[str, str]) -> None:
    ref = start(runtime, images["healthy"], replicas=2)
    seen: list[str] = []

    ready = runtime.wait_ready(ref, 2, 8080, "/healthz", DEADLINE_SECONDS, progress=seen.append)

    assert sorted(instance.name for instance in ready) == ["v2-0", "v2-1"]
    assert seen[-1] == "2/2 replicas of v2 healthy"
