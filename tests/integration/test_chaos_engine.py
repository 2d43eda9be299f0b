"""Chaos: the Docker engine stopped for a few seconds in the middle of a gray release's stable
wait. With ``--live-restore --userland-proxy=false`` (as scripts/bootstrap.sh starts dockerd,
and as docs/operations.md asks of production hosts) the containers and their published ports
keep serving while the engine is down; the stable wait takes the unreachable engine as no
verdict, the release carries on when the engine answers again and ends succeeded, without a
wrong rollback. What the engine costs traffic is printed: only the fraction of a second in
which the restarted daemon re-applies its NAT rules, answered 503 by HAProxy (about ten
requests of a 20 ms loop), never a refused connection.
"""

from __future__ import annotations

import time
from pathlib import Path

import docker
import pytest
from sqlmodel import select
from temporalio.testing import WorkflowEnvironment

from catalogue.store import Store
from catalogue.tables import Baseline
from schemas.settings import Settings
from starter.service.releases import follow
from tests.integration.test_chaos_haproxy import serves, wait_stage
from tests.integration.test_chaos_worker import cleanup, start, workers
from tests.integration.test_gray_docker import lb_url, versions_running
from tests.integration.test_release_docker import register_shop
from tests.support.chaos import WorkerProcess, dockerd_uses_userland_proxy, restart_dockerd
from tests.support.load import failures, request_loop

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

__all__ = ["cleanup", "workers"]  # fixtures used by name

ENGINE_DOWN_SECONDS = 4.0
# ~0.2 s of a 20 ms request loop, with a wide margin: a lost port would fail hundreds.
MAX_FAILED_WHILE_RULES_REAPPLY = 50


async def test_dockerd_stopped_in_a_stable_wait_is_waited_out(
    temporal: WorkflowEnvironment, settings: Settings, store: Store,
    docker_client: docker.DockerClient, workers: list[WorkerProcess], cleanup: None,
    tmp_path: Path,
) -> None:
    assert docker_client.info()["LiveRestoreEnabled"], (
        "dockerd runs without --live-restore: containers would die with it "
        "(scripts/bootstrap.sh starts it with the flag)")
    register_shop(store, settings, strategy="gray", stable_seconds=10)
    url = lb_url(store)
    worker = WorkerProcess(settings, temporal.client.service_client.config.target_host,
                           tmp_path / "worker.log")
    workers.append(worker)
    worker.start()
    await follow(await start(temporal, settings, store, "1.0.0"), lambda _s: None)

    with request_loop(url, max_seconds=120) as outcomes:
        handle = await start(temporal, settings, store, "2.0.0")
        await wait_stage(handle, "waiting_stable")
        unreachable = restart_dockerd(ENGINE_DOWN_SECONDS)
        back_at = time.monotonic()
        outcome = await follow(handle, lambda _s: None)
        finished_after = time.monotonic() - back_at
        time.sleep(0.5)
    print(f"\ndockerd unreachable for {unreachable:.1f}s in a stable wait; the release ended "
          f"{outcome.state} {finished_after:.1f}s after the engine answered again; "
          f"requests: {dict(outcomes)}")
    assert outcome.baseline_version == 2
    # HAProxy keeps answering: any failure is its 503, never a refused connection. Through
    # iptables DNAT the ports outlive the daemon, so traffic fails only while the restarted
    # daemon re-applies its rules; docker-proxy (the userland proxy) dies with the daemon.
    assert all(key.startswith("503 ") for key in failures(outcomes)), outcomes
    if not dockerd_uses_userland_proxy():
        assert sum(failures(outcomes).values()) <= MAX_FAILED_WHILE_RULES_REAPPLY, outcomes
    assert serves(url, "2.0.0")
    assert versions_running(docker_client) == ["2", "2"]
    with store.session() as session:
        assert [b.version for b in session.exec(select(Baseline)).all()] == [1, 2]
