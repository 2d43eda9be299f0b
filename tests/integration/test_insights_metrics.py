"""Prometheus watches Slipway: during a real release (built and run on the Docker engine by
the test's worker) that waits for approval, Debian's Prometheus scrapes the server's
``/metrics`` with a read token and evaluates deploy/prometheus/slipway-rules.yml as shipped,
and scrapes the worker's Temporal SDK metrics (SLIPWAY_WORKER_METRICS_ADDRESS).
Once the wait is two hours old (the test moves its start back, as a stuck approval would be),
``SlipwayReleaseWaitingForApproval`` fires for the release's application and environment;
after the approval the release succeeds and the wait is gone from the metrics."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest
import pytest_asyncio
from pydantic import SecretStr
from sqlmodel import select
from temporalio.testing import WorkflowEnvironment

import worker as slipway_worker
from agent import agents_serving, docker_host_names
from catalogue.store import Store
from catalogue.tables import AuditEvent, Release
from schemas.models import ReleaseRequest
from schemas.settings import Settings
from starter.service.catalogue import add_env, mark_ready, register_app
from starter.service.controls import approval_proof, control_input, send_update
from starter.service.releases import follow, start_release, validate_release
from starter.service.tokens import create_token
from tests.integration.conftest import free_port, remove_app_containers
from tests.integration.test_release_docker import SAMPLE
from tests.support.prometheus import prometheus_configured
from tests.support.server import slipway_server
from workflows.release import ReleaseWorkflow

pytestmark = pytest.mark.integration

APP = "watched"
SIGNING_SECRET = "approval-signing-insights-7c1f"
RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "slipway-rules.yml"
ALERT = "SlipwayReleaseWaitingForApproval"


@pytest.fixture
def settings(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The suite's settings with an approval signing secret (approvals need one)."""
    values = settings.model_copy(update={"credentials": {
        **settings.credentials, "approval-signing": SecretStr(SIGNING_SECRET)}})
    monkeypatch.setattr("schemas.settings.get_settings", lambda: values)
    return values


@pytest_asyncio.fixture
async def metered_worker(temporal: WorkflowEnvironment,
                         settings: Settings) -> AsyncIterator[str]:
    """The orchestration worker as worker.py runs it with SLIPWAY_WORKER_METRICS_ADDRESS set
    (its client on a runtime serving the SDK's metrics), its build worker and the agents;
    yields the metrics address."""
    metered = settings.model_copy(update={"worker_metrics_address": f"127.0.0.1:{free_port()}"})
    client = await slipway_worker.connect(
        metered.model_copy(update={
            "temporal_address": temporal.client.service_client.config.target_host,
            "temporal_namespace": temporal.client.namespace}),
        slipway_worker.sdk_runtime(metered))
    with (ThreadPoolExecutor(max_workers=8) as executor, ThreadPoolExecutor(2) as builds,
          ThreadPoolExecutor(max_workers=8) as agents):
        async with (slipway_worker.make_worker(client, settings, executor),
                    slipway_worker.make_build_worker(temporal.client, settings, builds),
                    agents_serving(temporal.client, settings,
                                   docker_host_names(settings), agents)):
            yield metered.worker_metrics_address


@pytest.fixture
def cleanup(docker_client: docker.DockerClient) -> Iterator[None]:
    yield
    remove_app_containers(docker_client, APP)


def _query(url: str, expr: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"{url}/api/v1/query", params={"query": expr}, timeout=5).json()
    return answer["data"]["result"]  # type: ignore[no-any-return]


def _firing(url: str) -> list[dict[str, Any]]:
    alerts = httpx.get(f"{url}/api/v1/alerts", timeout=5).json()["data"]["alerts"]
    return [a for a in alerts if a["labels"]["alertname"] == ALERT and a["state"] == "firing"]


async def _until(check: Any, what: str, seconds: float = 60) -> Any:
    deadline = time.monotonic() + seconds
    while not (found := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.5)
    return found


async def test_prometheus_alerts_on_a_release_stuck_waiting_for_approval(
        temporal: WorkflowEnvironment, settings: Settings, store: Store, metered_worker: str,
        cleanup: None, tmp_path: Path) -> None:
    register_app(store, APP, category="in-house", tier="core", owners=["ana"],
                 approvers=["lead"], source=str(SAMPLE), description="", actor="ana")
    mark_ready(store, APP, "ana")
    add_env(store, APP, "prod", cluster="local", replicas=1, cpu="", memory="64Mi",
            ports=[8080], env_vars={}, runtime="docker", namespace="default",
            health_path="/healthz", settings=settings, actor="ana", strategy="recreate",
            stable_seconds=0, approval="required")
    _, scraper = create_token(store, "prometheus", roles=["read"])
    _, lead = create_token(store, "lead", roles=["read", "approve"])
    (tmp_path / "token").write_text(scraper)
    with slipway_server(settings, tmp_path / "server.log") as server:
        target = server.removeprefix("http://")
        scrape = (f'rule_files: ["{RULES}"]\n'
                  "scrape_configs:\n"
                  "  - job_name: slipway\n"
                  f"    authorization: {{credentials_file: '{tmp_path / 'token'}'}}\n"
                  f"    static_configs: [{{targets: ['{target}']}}]\n"
                  "  - job_name: slipway-worker\n"
                  f"    static_configs: [{{targets: ['{metered_worker}']}}]\n")
        with prometheus_configured(tmp_path, scrape) as prom:
            request, summary = validate_release(store, ReleaseRequest(
                app=APP, env="prod", version_label="1.0.0", requested_by="ana"))
            handle = (await start_release(temporal.client, settings, request, summary)).handle
            deadline = time.monotonic() + 300  # the build comes first
            while (await handle.query(ReleaseWorkflow.status)).awaiting != "approval":
                assert time.monotonic() < deadline, "the release never asked for approval"
                await asyncio.sleep(0.5)
            # Scraped while waiting: one release running, one approval waiting, no alert.
            await _until(lambda: _query(prom, f'slipway_approvals_waiting{{app="{APP}"}} == 1'),
                         "the waiting approval in Prometheus")
            assert _query(prom, 'up{job="slipway"} == 1')
            assert _query(prom, f'slipway_releases_running{{app="{APP}"}} == 1')
            assert not _firing(prom)
            # Two hours and a bit pass (the release's start and its wait move back): the
            # rule fires.
            with store.session() as session:
                asked = session.exec(select(AuditEvent).where(
                    AuditEvent.action == "release.awaiting_approval",
                    AuditEvent.app == APP)).one()
                running = session.exec(select(Release).where(
                    Release.workflow_id == handle.id)).one()
                for row, column in ((asked, "at"), (running, "started_at")):
                    setattr(row, column, getattr(row, column) - timedelta(hours=2, minutes=5))
                    session.add(row)
                session.commit()
            firing = await _until(lambda: _firing(prom), f"{ALERT} to fire")
            assert firing[0]["labels"]["app"] == APP
            assert firing[0]["labels"]["env"] == "prod@local"
            assert "for approval" in firing[0]["annotations"]["summary"]
            # Approved: the release succeeds, the wait leaves the metrics, the alert ends.
            signed = await approval_proof(temporal.client, SIGNING_SECRET, lead, "lead", APP,
                                          "prod@local", "approve")
            await send_update(temporal.client, APP, "prod@local", "approve",
                              control_input("approve", "lead", "", signed.proof), store,
                              run_id=signed.run_id)
            outcome = await follow(handle, lambda _s: None)
            assert outcome.baseline_version == 1
            await _until(lambda: not _firing(prom) and _query(
                prom, f'slipway_releases_total{{app="{APP}",outcome="succeeded"}} == 1'),
                "the alert to end and the success to be counted")
            stage = _query(prom, 'slipway_release_stage_seconds{stage="approval",'
                                 'statistic="median"}')
            assert stage and float(stage[0]["value"][1]) >= 2 * 3600
            # The worker's own figures, from the Temporal SDK: its release ran there.
            await _until(lambda: _query(
                prom, 'temporal_workflow_completed{job="slipway-worker",'
                      'workflow_type="ReleaseWorkflow"} >= 1'),
                "the worker's SDK metrics to count the completed release")
            assert _query(prom, 'up{job="slipway-worker"} == 1')
