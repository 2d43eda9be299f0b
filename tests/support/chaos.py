"""Chaos plumbing: the worker as its own process (so it can be killed with ``kill -9`` by
pid), and what a test watches to see a release move again after a fault."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

import docker
from temporalio.api.enums.v1 import EventType, PendingActivityState
from temporalio.client import WorkflowHandle

from agent import docker_host_names
from schemas.settings import Settings
from workflows.release import ReleaseWorkflow

REPO = Path(__file__).resolve().parents[2]
RECOVERY_BUDGET_SECONDS = 30.0


class WorkerProcess:
    """One machine of the embedded stack: ``python worker.py`` and an ``agent.py`` per Docker
    host of the test's settings (``agents=False``: the worker alone), with the test's
    settings; their output goes to a log file. Killed together, as a machine dies."""

    def __init__(self, settings: Settings, address: str, log: Path,
                 extra_env: dict[str, str] | None = None, agents: bool = True) -> None:
        credentials = {name: value.get_secret_value()
                       for name, value in settings.credentials.items()}
        self.env = {
            **os.environ, "PYTHONPATH": str(REPO),
            "SLIPWAY_STATE_DIR": str(settings.state_dir),
            "SLIPWAY_DATABASE_URL": settings.resolved_database_url(),
            "SLIPWAY_REGISTRY": settings.registry,
            "SLIPWAY_REGISTRY_CREDENTIAL": settings.registry_credential,
            "SLIPWAY_CREDENTIALS": json.dumps(credentials),
            "SLIPWAY_LB_PORT_START": str(settings.lb_port_start),
            "SLIPWAY_TASK_QUEUE": settings.task_queue,
            "SLIPWAY_TEMPORAL_ADDRESS": address,
            "SLIPWAY_SOURCE_ROOTS": json.dumps([str(root) for root in settings.source_roots]),
            "SLIPWAY_CLUSTERS": settings.environment()["SLIPWAY_CLUSTERS"],
            "SLIPWAY_DEFAULT_CLUSTER": settings.default_cluster,
            **(extra_env or {}),
        }
        self.log = log
        self.hosts = docker_host_names(settings) if agents else []
        self.process: subprocess.Popen[bytes] | None = None
        self.agents: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen([sys.executable, str(REPO / "worker.py")],
                                            cwd=REPO, env=self.env, stdout=out,
                                            stderr=subprocess.STDOUT)
            self.agents = [subprocess.Popen([sys.executable, str(REPO / "agent.py"),
                                             "--host", host], cwd=REPO, env=self.env,
                                            stdout=out, stderr=subprocess.STDOUT)
                           for host in self.hosts]

    @property
    def pids(self) -> set[int]:
        """The worker's and its agents' process ids."""
        return {proc.pid for proc in [self.process, *self.agents] if proc is not None}

    def kill(self) -> None:
        """kill -9, by pid: no shutdown, no goodbye to the server."""
        assert self.process is not None
        for proc in [self.process, *self.agents]:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    def stop(self) -> None:
        running = [proc for proc in [self.process, *self.agents]
                   if proc is not None and proc.poll() is None]
        for proc in running:
            proc.send_signal(signal.SIGTERM)
        for proc in running:
            try:
                proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class AgentProcess(WorkerProcess):
    """``python agent.py --host HOST`` alone, with the test's settings."""

    def __init__(self, settings: Settings, address: str, log: Path, host: str,
                 extra_env: dict[str, str] | None = None) -> None:
        super().__init__(settings, address, log, extra_env, agents=False)
        self.host = host

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen([sys.executable, str(REPO / "agent.py"),
                                             "--host", self.host], cwd=REPO, env=self.env,
                                            stdout=out, stderr=subprocess.STDOUT)


async def running(handle: WorkflowHandle[Any, Any]) -> list[str]:
    """Types of the activities a worker is running for the release right now."""
    description = await handle.describe()
    return [activity.activity_type.name
            for activity in description.raw_description.pending_activities
            if activity.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED]


async def completed(handle: WorkflowHandle[Any, Any]) -> int:
    """How many activities of the release have completed so far."""
    kinds = [event.event_type async for event in handle.fetch_history_events()]
    return kinds.count(EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED)


async def kill_inside(handle: WorkflowHandle[Any, Any], worker: WorkerProcess,
                      kinds: Collection[str], when: Callable[[Any], bool] = lambda _s: True,
                      within_seconds: float = 60) -> str:
    """Poll the release until one of the activity types ``kinds`` runs while ``when(status)``
    holds, then kill -9 the worker; return the activity type it was killed inside."""
    deadline = time.monotonic() + within_seconds
    while time.monotonic() < deadline:
        status = await handle.query(ReleaseWorkflow.status)
        if when(status):
            inside = [kind for kind in await running(handle) if kind in kinds]
            if inside:
                worker.kill()
                return inside[0]
        await asyncio.sleep(0.02)
    raise AssertionError(f"the release never ran {', '.join(sorted(kinds))}")


async def seconds_to_progress(handle: WorkflowHandle[Any, Any], done_before: int,
                              since: float, what: str) -> float:
    """Wait until an activity of the release completes again (the killed one, retried);
    return the seconds since ``since``, failing past :data:`RECOVERY_BUDGET_SECONDS`."""
    while await completed(handle) == done_before:
        assert time.monotonic() - since < RECOVERY_BUDGET_SECONDS, (
            f"no progress {RECOVERY_BUDGET_SECONDS}s after the new worker started ({what})")
        await asyncio.sleep(0.1)
    return time.monotonic() - since


DOCKERD_PID_FILE = Path("/var/run/docker.pid")
DOCKERD_LOG = Path("/var/log/dockerd.log")


def restart_dockerd(down_seconds: float) -> float:
    """Stop dockerd (SIGTERM, by pid), keep it down ``down_seconds``, start it again with the
    same command line (plus ``--live-restore``, as scripts/bootstrap.sh starts it); return
    the seconds the engine did not answer."""
    pid = int(DOCKERD_PID_FILE.read_text().strip())
    command = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
    if b"--live-restore" not in command:
        command.append(b"--live-restore")
    stopped_at = time.monotonic()
    os.kill(pid, signal.SIGTERM)
    while Path(f"/proc/{pid}").exists():
        assert time.monotonic() - stopped_at < 60, "dockerd did not stop within 60 s"
        time.sleep(0.1)
    time.sleep(down_seconds)
    with DOCKERD_LOG.open("ab") as log:
        subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                         start_new_session=True)
    while True:
        try:
            docker.from_env(timeout=5).ping()  # a new client: it asks the API version
            return time.monotonic() - stopped_at
        except Exception:  # noqa: BLE001 - not up yet, whatever the client says
            assert time.monotonic() - stopped_at < 120, "dockerd did not come back"
            time.sleep(0.2)


def dockerd_uses_userland_proxy() -> bool:
    """Whether published ports go through docker-proxy processes (which die with dockerd)
    rather than iptables DNAT (which outlives it)."""
    pid = int(DOCKERD_PID_FILE.read_text().strip())
    return b"--userland-proxy=false" not in Path(f"/proc/{pid}/cmdline").read_bytes()
