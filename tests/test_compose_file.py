"""Checks of docker-compose.temporal.yml and the worker's Dockerfile.

The stack can't run here (no image can be pulled), so the file is validated the way an operator
would first use it: `docker-compose config` (Debian's docker-compose 1.29) must accept it, and
the resolved model must wire the services as designed.
"""

from __future__ import annotations

import fnmatch
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
COMPOSE_FILE = REPO / "docker-compose.temporal.yml"
SEARCH_ATTRIBUTES = ("App", "Env", "Stage", "Lane")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """The compose model as `docker-compose config` resolves it."""
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("docker-compose is not installed (bash scripts/bootstrap.sh installs it)")
    result = subprocess.run(
        [binary, "-f", str(COMPOSE_FILE), "config"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        # Defaults only: a developer's exported POSTGRES_PASSWORD etc. must not change the test.
        env={"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(REPO)},
    )
    assert result.returncode == 0, f"docker-compose config failed:\n{result.stderr}"
    model = yaml.safe_load(result.stdout)
    assert isinstance(model, dict)
    return model


def _depends_on(service: dict[str, Any]) -> dict[str, str]:
    """depends_on as {service: condition}, whichever form the file uses."""
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def _published(service: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Published ports as (host_ip, host_port, container_port), short or long form."""
    out = []
    for port in service.get("ports") or []:
        if isinstance(port, dict):  # compose v2 prints the long form
            out.append(
                (port.get("host_ip", ""), str(port.get("published", "")), str(port["target"]))
            )
        else:
            parts = str(port).split("/")[0].split(":")
            host_ip = parts[0] if len(parts) == 3 else ""
            out.append((host_ip, parts[-2] if len(parts) > 1 else "", parts[-1]))
    return out


def test_services_exist(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("postgresql", "temporal", "temporal-ui", "temporal-admin-tools", "worker",
                 "agent", "server"):
        assert name in services, f"service {name} missing"
    assert services["postgresql"]["image"].startswith("postgres:16")
    assert services["temporal"]["image"].startswith("temporalio/")
    assert services["temporal-ui"]["image"].startswith("temporalio/ui:")
    assert services["temporal-admin-tools"]["image"].startswith("temporalio/admin-tools:")


def test_temporal_uses_postgres(compose: dict[str, Any]) -> None:
    temporal = compose["services"]["temporal"]
    assert temporal["environment"]["DB"] == "postgres12"
    assert temporal["environment"]["POSTGRES_SEEDS"] == "postgresql"
    assert _depends_on(temporal).get("postgresql") == "service_healthy"


def test_worker_depends_on_temporal_and_is_built_here(compose: dict[str, Any]) -> None:
    worker = compose["services"]["worker"]
    deps = _depends_on(worker)
    assert "temporal" in deps
    # The search attributes must exist before the first workflow sets them.
    assert deps.get("temporal-admin-tools") == "service_completed_successfully"
    assert Path(worker["build"]["context"]).resolve() == REPO
    assert worker["environment"]["SLIPWAY_DATABASE_URL"].startswith("postgresql+psycopg://")


def test_ui_and_frontend_publish_on_loopback_only(compose: dict[str, Any]) -> None:
    assert ("127.0.0.1", "8080", "8080") in _published(compose["services"]["temporal-ui"])
    for name, service in compose["services"].items():
        for host_ip, _, _ in _published(service):
            assert host_ip == "127.0.0.1", f"{name} publishes a port beyond loopback"


def test_admin_tools_register_search_attributes(compose: dict[str, Any]) -> None:
    job = compose["services"]["temporal-admin-tools"]
    script = " ".join(job.get("command") or []) + " ".join(job.get("entrypoint") or [])
    assert "search-attribute create" in script
    for name in SEARCH_ATTRIBUTES:
        assert name in script
    assert "--type Keyword" in script


def test_worker_dockerfile_copies_files_that_exist_and_are_not_ignored() -> None:
    """Every COPY source is in the repo and not excluded by .dockerignore."""
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "\nFROM python:3.11-slim\n" in dockerfile
    assert "'.[postgres]'" in dockerfile
    assert 'CMD ["python", "worker.py"]' in dockerfile
    assert "COPY worker.py agent.py ./" in dockerfile  # both process roles, one image
    ignored = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for line in dockerfile.splitlines():
        if not line.startswith("COPY "):
            continue
        for source in line.split()[1:-1]:
            assert (REPO / source).exists(), f"Dockerfile copies {source}, which is missing"
            assert not any(fnmatch.fnmatch(source, pattern) for pattern in ignored), source


def test_the_agent_runs_on_the_host_network_where_haproxy_and_replicas_meet(
        compose: dict[str, Any]) -> None:
    """The load-balancer host's agent runs HAProxy, which binds on the host's loopback where
    replicas publish: on a bridge network it could reach neither. Every Slipway process
    shares the host's network and reaches Temporal and PostgreSQL at their loopback ports."""
    services = compose["services"]
    agent = services["agent"]
    assert agent["network_mode"] == "host"
    assert "/var/run/docker.sock:/var/run/docker.sock" in " ".join(
        str(volume) for volume in agent["volumes"])
    for name in ("worker", "agent", "server"):
        assert services[name]["network_mode"] == "host", name
        env = services[name]["environment"]
        assert env["SLIPWAY_TEMPORAL_ADDRESS"] == "127.0.0.1:7233"
        assert env["SLIPWAY_DATABASE_URL"].endswith("@127.0.0.1:15432/slipway")
    assert [str(port) for port in services["postgresql"]["ports"]] == [
        "127.0.0.1:15432:5432/tcp"]


def test_the_agent_restarts_inside_its_container_leaving_haproxy_serving(
        compose: dict[str, Any]) -> None:
    """HAProxy daemons started by the agent belong to the container's pid namespace: the
    container's first process is an init running a loop that starts the agent again, so an
    agent that exits does not take the load balancers down with the container."""
    agent = compose["services"]["agent"]
    assert agent["init"] is True
    script = agent["command"][-1]
    assert "while true" in script and "python agent.py" in script
    assert "trap" in script and "TERM" in script  # docker stop still stops the agent gently


def test_the_server_is_the_front_door_on_the_workers_catalogue(compose: dict[str, Any]) -> None:
    server, worker = compose["services"]["server"], compose["services"]["worker"]
    assert server["image"] == worker["image"]  # built once, by the worker's build
    assert server["command"][:4] == ["python", "-m", "starter.cli", "server"]
    assert "127.0.0.1" in server["command"]
    for name in ("SLIPWAY_DATABASE_URL", "SLIPWAY_TEMPORAL_ADDRESS", "SLIPWAY_STATE_DIR"):
        assert server["environment"][name] == worker["environment"][name]
    assert server["volumes"] == [volume for volume in worker["volumes"]
                                 if volume.startswith("slipway-state")]
