"""Every CLI process ends with its own exit status: no abort at interpreter exit.

Short-lived processes using the Temporal SDK could abort during finalization (SIGABRT, 134,
``Fatal Python error``) after doing their work (sdk-python issue 300). This runs the real
``python -m starter`` many times against the dev server and a worker and checks every exit.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import docker
import pytest
from temporalio.testing import WorkflowEnvironment

from catalogue.store import Store
from schemas.models import ReleaseRequest
from schemas.settings import Settings
from starter.service.catalogue import add_env, mark_ready, register_app
from starter.service.releases import follow, start_release, validate_release
from tests.support.hermetic import clean_env

pytestmark = pytest.mark.integration

APP = "exitapp"
SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sample-app"
REPO = Path(__file__).resolve().parents[2]
# Bounded: 40 processes in all, each a few seconds at most.
STATUS_RUNS, SHOW_RUNS, RELEASE_RUNS = 16, 16, 8


def _cli_env(settings: Settings, temporal_address: str) -> dict[str, str]:
    env = clean_env()
    env.update(SLIPWAY_TEMPORAL_ADDRESS=temporal_address, SLIPWAY_TASK_QUEUE=settings.task_queue,
               SLIPWAY_DATABASE_URL=settings.resolved_database_url(),
               SLIPWAY_STATE_DIR=str(settings.state_dir), SLIPWAY_USER="ana",
               PYTHONPATH=str(REPO))
    return env


def _slipway(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "starter", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def cleanup_containers(docker_client: docker.DockerClient) -> object:
    yield None
    for container in docker_client.containers.list(all=True,
                                                   filters={"label": "slipway.app=" + APP}):
        container.remove(force=True)


async def test_forty_cli_runs_exit_zero_without_a_fatal_error(
    temporal: WorkflowEnvironment, running_worker: None, settings: Settings, store: Store,
    cleanup_containers: object,
) -> None:
    register_app(store, APP, category="in-house", tier="edge", owners=["ana"], approvers=[],
                 source=str(SAMPLE), description="", actor="ana")
    mark_ready(store, APP, "ana")
    add_env(store, APP, "test", cluster="local", replicas=1, cpu="", memory="64Mi",
            ports=[8080], env_vars={}, runtime="docker", namespace="default",
            health_path="/healthz", settings=settings, actor="ana", strategy="recreate",
            stable_seconds=0, approval="none")
    request, summary = validate_release(store, ReleaseRequest(app=APP, env="test",
                                                              requested_by="ana"))
    started = await start_release(temporal.client, settings, request, summary)
    image = (await follow(started.handle, lambda _status: None)).image
    assert image

    env = _cli_env(settings, temporal.client.service_client.config.target_host)
    runs = ([["status", APP, "test"]] * STATUS_RUNS + [["app", "show", APP]] * SHOW_RUNS
            + [["release", APP, "test", "--image", image, "--wait"]] * RELEASE_RUNS)
    bad: list[str] = []
    for args in runs:
        done = await asyncio.to_thread(_slipway, args, env)
        output = done.stdout + done.stderr
        if done.returncode != 0 or "Fatal Python error" in output:
            bad.append(f"{' '.join(args)} → exit {done.returncode}:\n{output[-800:]}")
    print(f"\n{len(runs)} CLI runs, {len(bad)} with a bad exit")
    assert bad == []
