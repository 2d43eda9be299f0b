"""RuntimeActivities.watch_health: one stable-wait window, probed, checkpointed, resumable."""

from __future__ import annotations

from typing import Any

import pytest
from temporalio.testing import ActivityEnvironment

from activities import runtime as runtime_activities
from activities.runtime import RuntimeActivities
from integrations.errors import ClusterUnavailableError
from schemas.models import HealthCheckInput, StartVersionInput, VersionRef, WatchHealthInput


class Probed:
    """A runtime whose health checks answer from a script."""

    def __init__(self, answers: list[list[str] | Exception]) -> None:
        self.answers = answers
        self.probes = 0

    def check_health(self, *_args: Any) -> list[str]:
        self.probes += 1
        answer = self.answers.pop(0) if self.answers else []
        if isinstance(answer, Exception):
            raise answer
        return answer


@pytest.fixture(autouse=True)
def quick_confirmation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime_activities, "CONFIRM_SPACING_SECONDS", 0.0)


def run(runtime: Probed, seconds: float, env: ActivityEnvironment | None = None) -> list[str]:
    activities = RuntimeActivities({"local": runtime}, "local")  # type: ignore[dict-item]
    return (env or ActivityEnvironment()).run(activities.watch_health, watch(seconds))


def watch(seconds: float) -> WatchHealthInput:
    ref = VersionRef(app="shop", env_key="shop-prod", cluster="local", version=2)
    return WatchHealthInput(check=HealthCheckInput(version=ref, replicas=1, port=8080,
                                                   health_path="/healthz"),
                            seconds=seconds, interval_seconds=0.05)


def test_a_confirmed_problem_ends_the_window_and_time_watched_is_checkpointed() -> None:
    failing = ["v2-0 failed /healthz"]
    runtime = Probed([[], [], failing, failing, failing])
    beats: list[Any] = []
    env = ActivityEnvironment()
    env.on_heartbeat = lambda *details: beats.append(details[0])
    assert run(runtime, 60, env) == failing
    assert runtime.probes == 5  # two clean probes, then three failing in a row
    assert any(beat["checkpoint"].get("watched", 0) > 0 for beat in beats)


def test_a_retry_watches_only_what_is_left_of_the_window() -> None:
    runtime = Probed([])
    env = ActivityEnvironment()
    env.info = env.info.__class__(**{**env.info.__dict__, "heartbeat_details": [
        {"message": "", "checkpoint": {"watched": 59.9}}]})
    assert run(runtime, 60, env) == []
    assert runtime.probes <= 10  # a fresh 60 s window at 0.05 s would probe ~1,200 times


def test_a_problem_that_clears_before_it_is_confirmed_does_not_end_the_window() -> None:
    failing = ["v2-0 is restarting"]
    runtime = Probed([[], failing, failing, [], [], []])
    assert run(runtime, 0.3) == []
    assert runtime.probes >= 4


def test_an_unreachable_runtime_is_no_verdict_and_the_watch_goes_on() -> None:
    down = ClusterUnavailableError("docker engine unreachable")
    runtime = Probed([down, down, [], []])
    assert run(runtime, 0.3) == []
    assert runtime.probes >= 3


def test_a_runtime_still_unreachable_when_the_window_ends_fails_the_attempt() -> None:
    down = ClusterUnavailableError("docker engine unreachable")
    runtime = Probed([down] * 1000)
    with pytest.raises(ClusterUnavailableError):
        run(runtime, 0.2)


class Started:
    """A runtime that records what start_version was asked to run."""

    def __init__(self) -> None:
        self.specs: list[StartVersionInput] = []

    def start_version(self, spec: StartVersionInput, progress: Any = None) -> None:
        self.specs.append(spec)


def test_start_version_reads_environment_values_from_the_catalogue_not_its_input() -> None:
    runtime = Started()
    activities = RuntimeActivities({"local": runtime}, "local",  # type: ignore[dict-item]
                                   env_values=lambda env_id: {"DB_PASSWORD": f"secret-{env_id}"})
    ref = VersionRef(app="shop", env_key="shop-prod", cluster="local", version=2)
    ActivityEnvironment().run(activities.start_version, StartVersionInput(
        version=ref, image="shop:2", replicas=1, ports=[8080], env_id=7))
    assert runtime.specs[0].env_vars == {"DB_PASSWORD": "secret-7"}
