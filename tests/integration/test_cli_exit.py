"""Every CLI process ends with its own exit status: no abort at interpreter exit.

Short-lived processes using the Temporal SDK could abort during finalization (SIGABRT, 134,
``Fatal Python error``) after doing their work (sdk-python issue 300). This runs the real
``python -m starter`` many times against the dev server and a worker and checks every exit.
"""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import docker
import pytest
from temporalio.testing import WorkflowEnvironment

from catalogue.store import Store
from schemas.models import ReleaseRequest
from schemas.settings import Settings
from starter.service.catalogue import add_env, mark_ready, register_app
from starter.service.releases import follow, start_release, validate_release
from starter.service.tokens import create_token
from tests.support.server import client_env, slipway, slipway_server

pytestmark = pytest.mark.integration

APP = "exitapp"
SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sample-app"
REPO = Path(__file__).resolve().parents[2]
# Bounded: 40 processes in all, each a few seconds at most.
STATUS_RUNS, SHOW_RUNS, RELEASE_RUNS = 16, 16, 8


def _slipway(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return slipway(env, *args, timeout=120)


@pytest.fixture
def cleanup_containers(docker_client: docker.DockerClient) -> object:
    yield None
    for container in docker_client.containers.list(all=True,
                                                   filters={"label": "slipway.app=" + APP}):
        container.remove(force=True)


async def test_forty_cli_runs_exit_zero_without_a_fatal_error(
    temporal: WorkflowEnvironment, running_worker: None, settings: Settings, store: Store,
    cleanup_containers: object, tmp_path: Path,
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

    _, token = create_token(store, "ana", name="ana")
    runs = ([["status", APP, "test"]] * STATUS_RUNS + [["app", "show", APP]] * SHOW_RUNS
            + [["release", APP, "test", "--image", image, "--wait"]] * RELEASE_RUNS)
    bad: list[str] = []
    # The client's processes and the server's command processes both end by themselves.
    with slipway_server(settings, tmp_path / "server.log", SLIPWAY_TEMPORAL_ADDRESS=
                        temporal.client.service_client.config.target_host) as url:
        env = client_env(url, token)
        for args in runs:
            done = await asyncio.to_thread(_slipway, args, env)
            output = done.stdout + done.stderr
            if done.returncode != 0 or "Fatal Python error" in output:
                bad.append(f"{' '.join(args)} → exit {done.returncode}:\n{output[-800:]}")
    print(f"\n{len(runs)} CLI runs, {len(bad)} with a bad exit")
    assert bad == []
    assert "Fatal Python error" not in (tmp_path / "server.log").read_text()
