"""A waiting activity tells its release what it sees (Relay): something new only, rate-limited
and capped per attempt, so a wait of any length costs a bounded number of history events;
and only when the workflow asked for it."""

from __future__ import annotations

from typing import Any

import pytest
from temporalio.testing import ActivityEnvironment

from activities import runtime as runtime_activities
from activities import support
from activities.runtime import RuntimeActivities
from activities.support import Relay
from schemas.models import (
    PROBE_SIGNAL,
    HealthCheckInput,
    Instance,
    ProbeReport,
    VersionRef,
    WaitReadyInput,
    WatchHealthInput,
)

REF = VersionRef(app="shop", env_key="shop-prod", cluster="local", version=2)
CRASHING = "0/1 replicas of v2 healthy; replica 0 restarting (exited 3, 2 restarts)"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(support.time, "monotonic", fake)
    return fake


def test_only_something_new_is_sent_at_most_every_interval(clock: Clock) -> None:
    sent: list[ProbeReport] = []
    relay = Relay(sent.append, "wait_ready", 2, every=5)
    relay.offer("0/1 replicas of v2 healthy; replica 0 gives no answer yet")
    relay.offer("0/1 replicas of v2 healthy; replica 0 gives no answer yet")  # nothing new
    clock.now += 1
    relay.offer(CRASHING)  # new, but too soon: a later look offers it again
    assert [r.message for r in sent] == [
        "0/1 replicas of v2 healthy; replica 0 gives no answer yet"]
    clock.now += 5
    relay.offer(CRASHING)
    assert sent[-1] == ProbeReport(activity="wait_ready", version=2, message=CRASHING,
                                   healthy=0, desired=1)


def test_a_relay_stops_at_its_limit(clock: Clock) -> None:
    sent: list[ProbeReport] = []
    relay = Relay(sent.append, "wait_ready", 2, every=0, limit=3)
    for restarts in range(10):
        relay.offer(f"0/1 replicas of v2 healthy; replica 0 restarting ({restarts} restarts)")
    assert len(sent) == 3


def test_what_the_workflow_knows_is_not_sent_and_without_a_sender_nothing_is(
        clock: Clock) -> None:
    sent: list[ProbeReport] = []
    relay = Relay(sent.append, "watch_health", 2, every=0, known="healthy")
    relay.offer("every probe of v2 passed", key="healthy")
    relay.offer("confirming (1/3): v2-0 failed /healthz")
    relay.offer("every probe of v2 passed", key="healthy")
    assert [r.message for r in sent] == ["confirming (1/3): v2-0 failed /healthz",
                                         "every probe of v2 passed"]
    assert sent[0].healthy is None  # no count in that message
    Relay(None, "wait_ready", 2).offer(CRASHING)  # nobody asked: no error, nothing sent


class Signals:
    """WorkflowSignals as the runtime activities use it, recording what would be sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, Any]] = []

    def to_workflow(self, name: str) -> Any:
        return lambda arg: self.sent.append((name, arg))


class Looking:
    """A runtime whose wait_ready reports a crash loop, then a healthy replica."""

    def wait_ready(self, ref: VersionRef, replicas: int, port: int, health_path: str,
                   deadline_seconds: float, progress: Any = None) -> list[Instance]:
        progress(CRASHING)
        progress(CRASHING)
        return [Instance(name="v2-0", version=2, address="127.0.0.1", port=30000)]

    def check_health(self, *_args: Any) -> list[str]:
        return []


def wait_ready(report: bool) -> WaitReadyInput:
    return WaitReadyInput(version=REF, replicas=1, port=8080, health_path="/healthz",
                          deadline_seconds=60, report=report)


def test_wait_ready_tells_its_workflow_what_it_sees_when_asked() -> None:
    signals = Signals()
    activities = RuntimeActivities({"local": Looking()}, "local",  # type: ignore[dict-item]
                                   signals=signals)  # type: ignore[arg-type]
    beats: list[Any] = []
    env = ActivityEnvironment()
    env.on_heartbeat = lambda *details: beats.append(details[0])
    env.run(activities.wait_ready, wait_ready(report=True))
    assert signals.sent == [(PROBE_SIGNAL, ProbeReport(
        activity=env.info.activity_type, version=2, message=CRASHING, healthy=0, desired=1))]
    assert any(beat["message"] == CRASHING for beat in beats)  # the heartbeat says it too
    env.run(activities.wait_ready, wait_ready(report=False))
    assert len(signals.sent) == 1  # not asked: not sent


def test_watch_health_sends_problems_and_recoveries_not_every_healthy_second(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime_activities, "CONFIRM_SPACING_SECONDS", 0.0)
    monkeypatch.setattr(support, "RELAY_EVERY_SECONDS", 0.0)
    answers = [[], ["v2-0 failed /healthz"], [], [], []]

    class Flapping:
        def check_health(self, *_args: Any) -> list[str]:
            return answers.pop(0) if answers else []

    signals = Signals()
    activities = RuntimeActivities({"local": Flapping()}, "local",  # type: ignore[dict-item]
                                   signals=signals)  # type: ignore[arg-type]
    check = HealthCheckInput(version=REF, replicas=1, port=8080, health_path="/healthz")
    assert ActivityEnvironment().run(activities.watch_health, WatchHealthInput(
        check=check, seconds=0.3, interval_seconds=0.05, report=True)) == []
    messages = [report.message for _name, report in signals.sent]
    assert messages == ["confirming (1/3): v2-0 failed /healthz", "every probe of v2 passed"]
