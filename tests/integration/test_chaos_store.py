"""Chaos: the catalogue is unavailable (locked by another writer) for 30 s just as a release
writes its baseline. The write is retried until it succeeds: the release ends succeeded with
exactly one new baseline, not failed with the new version serving and no baseline."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time

import docker
import pytest
from sqlmodel import col, select
from temporalio.testing import WorkflowEnvironment

from catalogue.store import Store
from catalogue.tables import Baseline, Release
from schemas.settings import Settings
from starter.service.releases import follow
from tests.integration.test_chaos_worker import cleanup, start
from tests.integration.test_release_docker import register_shop
from workflows.release import ReleaseWorkflow

pytestmark = [pytest.mark.integration, pytest.mark.chaos]
__all__ = ["cleanup"]

OUTAGE_SECONDS = 30


def hold_the_store(path: str, seconds: float, taken: threading.Event) -> None:
    """Another writer holding the database's write lock for ``seconds``."""
    connection = sqlite3.connect(path, timeout=30, isolation_level=None)
    connection.execute("BEGIN EXCLUSIVE")
    taken.set()
    time.sleep(seconds)
    connection.execute("COMMIT")
    connection.close()


async def test_a_store_outage_at_the_baseline_write_is_outlasted(
    temporal: WorkflowEnvironment, running_worker: None, settings: Settings, store: Store,
    docker_client: docker.DockerClient, cleanup: None,
) -> None:
    register_shop(store, settings, strategy="gray", stable_seconds=2)
    await follow(await start(temporal, settings, store, "1.0.0"), lambda _s: None)
    handle = await start(temporal, settings, store, "2.0.0")
    while True:  # the last step's stable wait: the baseline write comes next
        status = await handle.query(ReleaseWorkflow.status)
        if status.steps and status.step == status.steps and status.stage == "waiting_stable":
            break
        await asyncio.sleep(0.05)
    taken = threading.Event()
    database = settings.resolved_database_url().removeprefix("sqlite:///")
    holder = threading.Thread(target=hold_the_store,
                              args=(database, OUTAGE_SECONDS, taken), daemon=True)
    holder.start()
    assert taken.wait(10)
    began = time.monotonic()
    outcome = await follow(handle, lambda _s: None)
    took = time.monotonic() - began
    holder.join()
    print(f"\nstore locked for {OUTAGE_SECONDS}s at the baseline write: release ended "
          f"{outcome.state} after {took:.1f}s")
    assert outcome.baseline_version == 2
    assert took >= OUTAGE_SECONDS - 5  # it really waited for the store
    with store.session() as session:
        versions = [b.version for b in session.exec(select(Baseline).order_by(
            col(Baseline.version))).all()]
        states = [r.state for r in session.exec(select(Release).order_by(col(Release.id)))]
    assert versions == [1, 2]
    assert states == ["succeeded", "succeeded"]
