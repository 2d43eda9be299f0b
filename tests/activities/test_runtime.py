"""RuntimeActivities.watch_health: one stable-wait window, probed, checkpointed, resumable."""

from __future__ import annotations

from typing import Any

from temporalio.testing import ActivityEnvironment

from activities.runtime import RuntimeActivities
from schemas.models import HealthCheckInput, VersionRef, WatchHealthInput


class Probed:
    """A runtime whose health checks answer from a script."""

    def __init__(self, answers: list[list[str]]) -> None:
        self.answers = answers
        self.probes = 0

    def check_health(self, *_args: Any) -> list[str]:
        self.probes += 1
        return self.answers.pop(0) if self.answers else []


def watch(seconds: float) -> WatchHealthInput:
    ref = VersionRef(app="shop", env_key="shop-prod", cluster="local", version=2)
    return WatchHealthInput(check=HealthCheckInput(version=ref, replicas=1, port=8080,
                                                   health_path="/healthz"),
                            seconds=seconds, interval_seconds=0.05)


def test_the_first_problem_ends_the_window_and_time_watched_is_checkpointed() -> None:
    runtime = Probed([[], [], ["v2-0 failed /healthz"]])
    beats: list[Any] = []
    env = ActivityEnvironment()
    env.on_heartbeat = lambda *details: beats.append(details[0])
    problems = env.run(RuntimeActivities({"local": runtime}, "local").watch_health,  # type: ignore[dict-item]
                       watch(60))
    assert problems == ["v2-0 failed /healthz"]
    assert runtime.probes == 3
    assert any(beat["checkpoint"].get("watched", 0) > 0 for beat in beats)


def test_a_retry_watches_only_what_is_left_of_the_window() -> None:
    runtime = Probed([])
    env = ActivityEnvironment()
    env.info = env.info.__class__(**{**env.info.__dict__, "heartbeat_details": [
        {"message": "", "checkpoint": {"watched": 59.9}}]})
    assert env.run(RuntimeActivities({"local": runtime}, "local").watch_health,  # type: ignore[dict-item]
                   watch(60)) == []
    assert runtime.probes <= 10  # a fresh 60 s window at 0.05 s would probe ~1,200 times
