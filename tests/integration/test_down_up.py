"""`slipway down` stops Slipway, not the applications: every environment's load balancer keeps
serving through `down` and `up` (0 failed requests), and `up` adopts it as it runs. `down`
during a release refuses without --force; `down --force` then `up` resumes the release to
success, the environment serving all along. `down --applications` takes the load balancers
down too, and `up` brings them back with their servers. All through the real CLI, with the
embedded stack (Temporal dev server with its database file, worker, server, HAProxy)."""

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
    slipway(env, "down", "--force", "--applications")  # no load balancer left behind
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


def haproxy_pid(env: dict[str, str]) -> int:
    """The pid of the environment's HAProxy (the test's only environment)."""
    return int((Path(env["SLIPWAY_STATE_DIR"]) / "haproxy" / f"{APP}-test-local.pid")
               .read_text().split()[0])


def add_env(env: dict[str, str], stable: str) -> str:
    ok(env, "app", "register", APP, "--source", str(SAMPLE), "--ready")
    added = ok(env, "env", "add", APP, "test", "--replicas", "2", "--strategy", "gray",
               "--steps", "1,100%", "--stable", stable, "--approval", "none")
    return next(word for word in added.split() if word.startswith("http://127.0.0.1:"))


def wait_for(what: str, check: object, timeout: float) -> float:
    began = time.monotonic()
    while not check():  # type: ignore[operator]
        assert time.monotonic() - began < timeout, f"{what} within {timeout}s"
        time.sleep(0.2)
    return time.monotonic() - began


def test_down_leaves_the_applications_serving_and_up_adopts_them(
        cli_env: dict[str, str]) -> None:
    ok(cli_env, "up")
    url = add_env(cli_env, "1s")
    ok(cli_env, "release", APP, "test", "--version", "1.0.0", "--wait")
    pid = haproxy_pid(cli_env)

    with request_loop(url, max_seconds=120) as outcomes:
        time.sleep(1)
        down = ok(cli_env, "down")
        assert f"still serving: 1 load balancer(s) ({APP}-test-local)" in down, down
        time.sleep(2)  # no server, worker or Temporal: the environment serves all the same
        served_while_down = outcomes["200 sample-app 1.0.0"]
        upped = ok(cli_env, "up")
        assert f"adopted as they are: {APP}-test-local" in upped, upped
        time.sleep(5)  # the new worker's reconciler has run (every 2 s): it must not disturb
    print(f"\n`down` then `up` while serving: requests {dict(outcomes)}")
    assert failures(outcomes) == {}
    assert outcomes["200 sample-app 1.0.0"] > served_while_down > 0
    assert haproxy_pid(cli_env) == pid  # adopted, not restarted

    # The explicit way: the load balancers go too, and come back with their servers.
    stopped = ok(cli_env, "down", "--applications")
    assert f"haproxy {APP}-test-local (pid {pid})" in stopped, stopped
    wait_for("the port to close", lambda: serves(url) == "", 10)
    began = time.monotonic()
    ok(cli_env, "up")
    back = wait_for("the load balancer serving again", lambda: serves(url), 15)
    print(f"`down --applications` then `up`: serving again {back:.1f} s after `up` returned, "
          f"{time.monotonic() - began:.1f} s after it was run")
    assert serves(url) == "sample-app 1.0.0"
    assert haproxy_pid(cli_env) != pid


def test_down_refuses_mid_release_and_up_resumes_it(cli_env: dict[str, str]) -> None:
    ok(cli_env, "up")
    url = add_env(cli_env, "12s")
    ok(cli_env, "release", APP, "test", "--version", "1.0.0", "--wait")
    assert serves(url) == "sample-app 1.0.0"

    ok(cli_env, "release", APP, "test", "--version", "2.0.0")
    wait_for("the stable wait", lambda: "waiting_stable" in slipway(
        cli_env, "status", APP, "test").stdout, 120)
    refused = slipway(cli_env, "down")
    assert refused.returncode == 1
    assert f"release:{APP}:test@local" in refused.stderr and "--force" in refused.stderr
    assert "keep serving" in refused.stderr

    pid = haproxy_pid(cli_env)
    with request_loop(url, max_seconds=150) as outcomes:
        ok(cli_env, "down", "--force")
        # The stack is down, the environment is not: v1 and the canary answer as before.
        assert serves(url) in ("sample-app 1.0.0", "sample-app 2.0.0")
        time.sleep(1)
        ok(cli_env, "up")
        wait_for("the release to end", lambda: "succeeded" in slipway(
            cli_env, "status", APP, "test").stdout, 180)
    print(f"\n`down --force` then `up` mid-release: requests {dict(outcomes)}")
    assert failures(outcomes) == {}
    assert haproxy_pid(cli_env) == pid
    assert serves(url) == "sample-app 2.0.0"
    shown = ok(cli_env, "app", "show", APP)
    assert "v2" in shown


def test_temporal_killed_mid_release_resumes_after_restart(cli_env: dict[str, str]) -> None:
    """kill -9 of the Temporal server inside a stable wait: HAProxy keeps serving, and once
    the server is back (`slipway up`) the same worker carries the release to success."""
    ok(cli_env, "up")
    url = add_env(cli_env, "10s")
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
