"""Canary analysis on real dockerd + HAProxy (+ a real Prometheus) under a bounded loopback
request loop: a healthy canary completes with every measurement recorded, one answering 10 %
5xx is rolled back at its first step by the haproxy provider, a slow one by a Prometheus p95
query, too little traffic pauses, and a rollback switches back in one step."""

from __future__ import annotations

import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest
from sqlmodel import select
from temporalio.testing import WorkflowEnvironment

from catalogue.store import CatalogueError, Store
from catalogue.tables import Environment
from schemas.analysis import Verdict
from schemas.models import ControlInput, ReleaseRequest
from schemas.settings import Settings
from starter.service.analysis import (
    parse_policy,
    release_with_analysis,
    run_policy,
    set_policy,
)
from starter.service.changes import rollback_request
from starter.service.releases import follow, start_release, validate_release
from tests.integration.test_gray_docker import cleanup, lb_url, release, versions_running
from tests.integration.test_release_docker import APP, SAMPLE, register_shop
from tests.support.load import failures, request_loop
from tests.support.prometheus import prometheus
from workflows.release import ReleaseWorkflow

pytestmark = pytest.mark.integration
__all__ = ["cleanup"]

MIN_SAMPLE = 10
ERRORS = {"name": "errors", "query": "error_rate", "max": 0.02, "min_sample": MIN_SAMPLE,
          "interval_seconds": 2}
# Always fails (no interval has a million requests): shown, never decides.
VOLUME = {"name": "volume", "query": "requests", "min": 1_000_000, "interval_seconds": 2,
          "mode": "dry-run"}
# The p95 over 30 s of the canary's servers' average response time. HAProxy 2.6's exporter
# divides the sum of the last 512 response times by 512 even before 512 requests were
# answered: scale by the requests answered, and count a server once it answered 10.
CANARY = '{proxy="be",server=~"{{server_prefix}}.*"}'
P95 = (f"max(quantile_over_time(0.95, (haproxy_server_response_time_average_seconds{CANARY}"
       f" * 512 / clamp(haproxy_server_loadbalanced_total{CANARY}, 1, 512)"
       f" and haproxy_server_loadbalanced_total{CANARY} >= 10)[30s:1s]))")


def analyse(store: Store, settings: Settings, *metrics: dict[str, Any]) -> None:
    set_policy(store, APP, "prod", parse_policy({"metrics": list(metrics)}),
               settings=settings, actor="ana")


def build_drill(client: docker.DockerClient, settings: Settings, tag: str, version: str,
                **knobs: str) -> str:
    image = f"slipway/{APP}:{tag}"
    client.images.build(path=str(SAMPLE), tag=image, rm=True,
                        buildargs={"BASE_IMAGE": settings.base_image, "VERSION": version,
                                   **knobs})
    return image


def analysis_of_latest(store: Store) -> list[Any]:
    return release_with_analysis(store, APP, "prod", None)[1]


async def ended_by(running: Awaitable[object]) -> str:
    """How a release that should fail ended (its error), or what it returned."""
    try:
        return repr(await running)
    except CatalogueError as error:
        return str(error)


async def start(temporal: WorkflowEnvironment, settings: Settings, store: Store,
                request: ReleaseRequest) -> Any:
    request, summary = validate_release(store, request)
    return (await start_release(temporal.client, settings, request, summary)).handle


async def test_haproxy_analysis_passes_a_healthy_canary_rolls_back_a_failing_one_and_a_rollback_switches_at_once(  # noqa: E501
    temporal: WorkflowEnvironment, running_worker: None, settings: Settings, store: Store,
    docker_client: docker.DockerClient, cleanup: object,
) -> None:
    register_shop(store, settings, strategy="gray", stable_seconds=6)
    url = lb_url(store)
    await release(temporal, settings, store, version_label="1.0.0")
    analyse(store, settings, ERRORS, VOLUME)

    with request_loop(url, max_seconds=120) as healthy_load:
        second = await release(temporal, settings, store, version_label="2.0.0")
    assert second.baseline_version == 2
    assert failures(healthy_load) == {}
    measured = analysis_of_latest(store)
    print("\nhealthy canary: " + "; ".join(
        f"step {m.step} {m.metric}={m.value} ({m.sample} req) {m.verdict}" for m in measured))
    assert {m.step for m in measured} == {1, 2, 3}
    assert {m.verdict for m in measured if m.metric == "errors"} == {Verdict.PASSED}
    assert {m.verdict for m in measured if m.metric == "volume"} == {Verdict.FAILED}

    bad = build_drill(docker_client, settings, "bad", "3.0.0-bad", ERROR_PERCENT="10")
    failed = "rolled_back: canary analysis failed at step 1: errors failed 1×"
    with (request_loop(url, max_seconds=120) as bad_load,
          pytest.raises(CatalogueError, match=failed)):
        await release(temporal, settings, store, image=bad)
    errors = [m for m in analysis_of_latest(store) if m.metric == "errors"]
    print(f"failing canary: {[(m.value, m.sample, str(m.verdict)) for m in errors]}; "
          f"requests: {dict(bad_load)}")
    # Judged at the first interval with the minimum sample, at step 1, and not before.
    assert errors[-1].verdict == Verdict.FAILED and errors[-1].step == 1
    assert errors[-1].sample is not None and errors[-1].sample >= MIN_SAMPLE
    assert all(m.verdict == Verdict.INCONCLUSIVE for m in errors[:-1])
    first_bad = min(t for key, t in bad_load.first.items() if key.startswith("500 "))
    last_canary = max(t for key, t in bad_load.last.items() if "3.0.0-bad" in key)
    print(f"first 5xx → last answer from the canary: {last_canary - first_bad:.2f}s")
    assert httpx.get(url).text.strip() == "sample-app 2.0.0"
    assert versions_running(docker_client) == ["2", "2"]

    with request_loop(url, max_seconds=60) as rollback_load:
        began = time.monotonic()
        handle = await start(temporal, settings, store,
                             rollback_request(store, APP, "prod", to=1, actor="ana"))
        # As `rollback --wait`: back as soon as v1's image serves all traffic …
        outcome = await follow(handle, lambda _s: None, early=True)
        took = time.monotonic() - began
    print(f"fast rollback: {took:.2f}s end to end; requests: {dict(rollback_load)}")
    assert outcome.state == "succeeded"
    assert outcome.after == ["remove v2 (the version rolled back)"]
    assert failures(rollback_load) == {}
    assert httpx.get(url).text.strip() == "sample-app 1.0.0"
    # … while the workflow goes on removing v2, then ends.
    assert await handle.result() == outcome
    assert "2" not in versions_running(docker_client)
    status = await handle.query(ReleaseWorkflow.status)
    assert status.stage == "succeeded" and status.steps == 1
    assert "remove v2 (the version rolled back): done" in status.events[-1].message
    assert not any("waiting_stable" in event.message for event in status.events)

    # `slipway analysis run`: the policy against what runs now, without releasing.
    with request_loop(url, max_seconds=30):
        now = run_policy(store, APP, "prod", settings=settings, window_seconds=2)
    assert [(m.metric, m.verdict) for m in now] == [("errors", Verdict.PASSED),
                                                    ("volume", Verdict.FAILED)]
    assert now[0].sample is not None and now[0].sample >= MIN_SAMPLE
    docker_client.images.remove(bad, force=True)


async def test_too_little_traffic_is_inconclusive_and_pauses_until_a_person_decides(
    temporal: WorkflowEnvironment, running_worker: None, settings: Settings, store: Store,
    docker_client: docker.DockerClient, cleanup: object,
) -> None:
    register_shop(store, settings, strategy="gray", stable_seconds=4)
    await release(temporal, settings, store, version_label="1.0.0")
    analyse(store, settings, ERRORS)
    # No request loop: the canary never reaches its minimum sample.
    handle = await start(temporal, settings, store, ReleaseRequest(
        app=APP, env="prod", requested_by="ana", version_label="2.0.0"))
    deadline = time.monotonic() + 90
    while (status := await handle.query(ReleaseWorkflow.status)).awaiting != "promote":
        assert time.monotonic() < deadline, f"the release never paused: {status.stage}"
        time.sleep(0.2)
    assert status.step == 1 and "inconclusive" in status.events[-1].message
    assert {m.verdict for m in analysis_of_latest(store)} == {Verdict.INCONCLUSIVE}
    await handle.execute_update(ReleaseWorkflow.abort,
                                ControlInput(user="lead", reason="no traffic to judge"))
    with pytest.raises(CatalogueError, match="rolled_back: aborted: lead"):
        await follow(handle, lambda _s: None)
    assert versions_running(docker_client) == ["1", "1"]


async def test_prometheus_p95_rolls_back_a_slow_canary_and_a_bad_query_is_refused(
    temporal: WorkflowEnvironment, running_worker: None, settings: Settings, store: Store,
    docker_client: docker.DockerClient, cleanup: object, tmp_path: Path,
) -> None:
    register_shop(store, settings, strategy="gray", stable_seconds=10)
    url = lb_url(store)
    await release(temporal, settings, store, version_label="1.0.0")
    with store.session() as session:
        lb_port = session.exec(select(Environment)).one().lb_port
    with prometheus(tmp_path, [lb_port]) as address:
        latency = {"name": "p95", "provider": "prometheus", "address": address, "query": P95,
                   "max": 0.15, "interval_seconds": 2, "consecutive_error_limit": 3}
        with pytest.raises(CatalogueError, match="Prometheus refused the query: bad_data"):
            analyse(store, settings, {**latency, "query": "max(haproxy_server_up["})
        analyse(store, settings, latency)
        slow = build_drill(docker_client, settings, "slow", "2.0.0-slow",
                           EXTRA_LATENCY_MS="300")
        with request_loop(url, max_seconds=120) as load:
            ended = await ended_by(release(temporal, settings, store, image=slow))
        p95 = analysis_of_latest(store)
        print(f"\nslow canary p95: {[(m.value, str(m.verdict)) for m in p95]}; "
              f"requests: {dict(load)}")
        assert "rolled_back: canary analysis failed at step 1: p95 failed" in ended
        assert p95[-1].verdict == Verdict.FAILED and p95[-1].value is not None
        assert p95[-1].value > 0.15
        assert failures(load) == {}  # slow, not broken: every request answered
        assert httpx.get(url).text.strip() == "sample-app 1.0.0"

        # A policy that got past `analysis set` (written straight into the catalogue) is
        # still refused by the release before anything changes.
        with store.session() as session:
            env = session.exec(select(Environment)).one()
            env.analysis = {"metrics": [{**latency, "query": "sum(rate(x[1m]"}]}
            session.add(env)
            session.commit()
        with pytest.raises(CatalogueError, match="failed: bad analysis policy"):
            await release(temporal, settings, store, version_label="3.0.0")
    assert versions_running(docker_client) == ["1", "1"]
    docker_client.images.remove(slow, force=True)
