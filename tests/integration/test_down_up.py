"""`slipway down` during a release refuses without --force; `down --force` then `up` brings
every load balancer back and the release resumes to success. All through the real CLI, with
the embedded stack (Temporal dev server with its database file, worker, HAProxy)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import httpx
import pytest

from tests.integration.conftest import free_port
from tests.support.hermetic import clean_env, lb_port_start
from tests.support.load import failures, request_loop

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "examples" / "sample-app"
APP = "downup"


@pytest.fixture
def cli_env(tmp_path: Path, docker_client: docker.DockerClient) -> Iterator[dict[str, str]]:
    env = clean_env()
    port, server_port = free_port(), free_port()
    # Short (HAProxy socket paths) and unique: a state directory left by another run would
    # hold its catalogue.
    state = Path("/tmp") / f"slipway-du-{uuid.uuid4().hex[:8]}"
    env.update(SLIPWAY_STATE_DIR=str(state),
               SLIPWAY_TEMPORAL_ADDRESS=f"127.0.0.1:{port}",
               SLIPWAY_TEMPORAL_UI_URL=f"http://127.0.0.1:{free_port()}",
               SLIPWAY_TEMPORAL_UI_PORT=str(free_port()),
               SLIPWAY_LB_PORT_START=str(lb_port_start()),
               SLIPWAY_TASK_QUEUE="down-up", SLIPWAY_USER="ana", PYTHONPATH=str(REPO),
               # `up` starts the server here and logs the client in (saved under the
               # config home), as for a person on their own machine.
               SLIPWAY_SERVER_PORT=str(server_port),
               SLIPWAY_URL=f"http://127.0.0.1:{server_port}",
               XDG_CONFIG_HOME=str(state / "config"),
               SLIPWAY_SOURCE_ROOTS=json.dumps([str(SAMPLE.parent)]))
    yield env
    slipway(env, "down", "--force")
    shutil.rmtree(state, ignore_errors=True)
    for container in docker_client.containers.list(all=True,
                                                   filters={"label": f"slipway.app={APP}"}):
        container.remove(force=True)


def slipway(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "starter", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=180)


def ok(env: dict[str, str], *args: str) -> str:
    done = slipway(env, *args)
    assert done.returncode == 0, f"slipway {' '.join(args)}: {done.stdout}{done.stderr}"
    return done.stdout


def serves(url: str) -> str:
    try:
        return httpx.get(url, timeout=1).text.strip()
    except httpx.HTTPError:
        return ""


def wait_for(what: str, check: object, timeout: float) -> float:
    began = time.monotonic()
    while not check():  # type: ignore[operator]
        assert time.monotonic() - began < timeout, f"{what} within {timeout}s"
        time.sleep(0.2)
    return time.monotonic() - began


def test_down_refuses_mid_release_and_up_resumes_it(cli_env: dict[str, str]) -> None:
    ok(cli_env, "up")
    ok(cli_env, "app", "register", APP, "--source", str(SAMPLE), "--ready")
    added = ok(cli_env, "env", "add", APP, "test", "--replicas", "2", "--strategy", "gray",
               "--steps", "1,100%", "--stable", "12s", "--approval", "none")
    url = next(word for word in added.split() if word.startswith("http://127.0.0.1:"))
    ok(cli_env, "release", APP, "test", "--version", "1.0.0", "--wait")
    assert serves(url) == "sample-app 1.0.0"

    ok(cli_env, "release", APP, "test", "--version", "2.0.0")
    wait_for("the stable wait", lambda: "waiting_stable" in slipway(
        cli_env, "status", APP, "test").stdout, 120)
    refused = slipway(cli_env, "down")
    assert refused.returncode == 1
    assert f"release:{APP}:test@local" in refused.stderr and "--force" in refused.stderr

    ok(cli_env, "down", "--force")
    assert serves(url) == ""  # the stack is down: so is the environment's load balancer
    ok(cli_env, "up")
    back = wait_for("the load balancer serving again", lambda: serves(url), 10)
    print(f"\nafter `up` the environment served again in {back:.1f}s")
    wait_for("the release to end", lambda: "succeeded" in slipway(
        cli_env, "status", APP, "test").stdout, 180)
    assert serves(url) == "sample-app 2.0.0"
    shown = ok(cli_env, "app", "show", APP)
    assert "v2" in shown


def test_temporal_killed_mid_release_resumes_after_restart(cli_env: dict[str, str]) -> None:
    """kill -9 of the Temporal server inside a stable wait: HAProxy keeps serving, and once
    the server is back (`slipway up`) the same worker carries the release to success."""
    ok(cli_env, "up")
    ok(cli_env, "app", "register", APP, "--source", str(SAMPLE), "--ready")
    added = ok(cli_env, "env", "add", APP, "test", "--replicas", "2", "--strategy", "gray",
               "--steps", "1,100%", "--stable", "10s", "--approval", "none")
    url = next(word for word in added.split() if word.startswith("http://127.0.0.1:"))
    ok(cli_env, "release", APP, "test", "--version", "1.0.0", "--wait")
    ok(cli_env, "release", APP, "test", "--version", "2.0.0")
    wait_for("the stable wait", lambda: "waiting_stable" in slipway(
        cli_env, "status", APP, "test").stdout, 120)

    run_dir = Path(cli_env["SLIPWAY_STATE_DIR"]) / "run"
    pid = int((run_dir / "temporal.pid").read_text().split()[0])
    with request_loop(url, max_seconds=150) as outcomes:
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        time.sleep(3)  # the server is gone; the environment must keep serving meanwhile
        ok(cli_env, "up")
        wait_for("the release to end", lambda: "succeeded" in slipway(
            cli_env, "status", APP, "test").stdout, 180)
        took = time.monotonic() - killed
    print(f"\nTemporal killed in a stable wait: release succeeded {took:.1f}s later; "
          f"requests: {dict(outcomes)}")
    assert failures(outcomes) == {}
    assert serves(url) == "sample-app 2.0.0"
