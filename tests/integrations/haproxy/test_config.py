"""An environment's HAProxy config rendered from its recorded servers (no daemon started).

The config is what a restarted daemon starts from: its servers, weights and drains must be
in it, so it serves from its first accepted connection.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from integrations.haproxy.config import configured_frontend
from integrations.haproxy.intent import ServerIntent, read_intent, write_intent
from integrations.haproxy.lane_table import LANE_SLOTS, LaneRoute, LaneTable, write_map
from integrations.haproxy.process import HEALTH_CHECK_OPTIONS, HaproxyProcesses

KEY = "shop-prod-local"


def baseline_backend(config: str) -> str:
    """Backend ``be`` of a config: from its line to the next section (the lanes' backend)."""
    start = config.index("backend be\n")
    return config[start:config.index("\nbackend lanes", start)]


def server_lines(config: str) -> list[str]:
    """The baseline's servers (the lane slots of backend ``lanes`` are not counted)."""
    return [line.strip() for line in baseline_backend(config).splitlines()
            if line.strip().startswith("server ") and not line.strip().startswith("server lane_")]


@pytest.fixture
def processes(tmp_path: Path) -> HaproxyProcesses:
    return HaproxyProcesses(tmp_path / "state")


def test_no_servers_recorded_renders_an_empty_backend(processes: HaproxyProcesses) -> None:
    config = processes.render_config(KEY, 28081, "/healthz")
    # The keeper's held socket when it passes one, else the address itself (a start by hand).
    assert '    bind "${SLIPWAY_LISTEN-127.0.0.1:28081}"\n' in config
    assert "    option httpchk GET /healthz\n" in config
    assert "    noreuseport\n" in config  # a port already taken fails instead of being shared
    assert server_lines(config) == []
    assert processes.render_config(KEY, 28081, "/healthz", {}) == config


def test_recorded_servers_weights_and_drains_are_in_the_config(
        processes: HaproxyProcesses) -> None:
    servers = {
        "v2-0": ServerIntent(address="127.0.0.1", port=32001, weight=100),
        "v1-1": ServerIntent(address="127.0.0.1", port=32002, weight=40),
        "v1-0": ServerIntent(address="10.0.0.7", port=32003, weight=100, state="drain"),
    }
    config = processes.render_config(KEY, 28081, "/healthz", servers)
    assert server_lines(config) == [
        # Draining: weight 0 (no new requests), what a fresh process's drain amounts to.
        f"server v1-0 10.0.0.7:32003 weight 0 {HEALTH_CHECK_OPTIONS}  "
        "# draining (recorded weight 100)",
        f"server v1-1 127.0.0.1:32002 weight 40 {HEALTH_CHECK_OPTIONS}",
        f"server v2-0 127.0.0.1:32001 weight 100 {HEALTH_CHECK_OPTIONS}",
    ]
    # The servers are the backend's: after `balance`, nothing after them.
    assert baseline_backend(config).rstrip().endswith(f"server lane_{LANE_SLOTS - 1} "
                                                      f"127.0.0.1:1 weight 0 "
                                                      f"{HEALTH_CHECK_OPTIONS} disabled")
    assert config.index("backend be") < config.index("server v1-0")


def test_without_health_checks_servers_have_none(processes: HaproxyProcesses) -> None:
    servers = {"v1-0": ServerIntent(address="127.0.0.1", port=32001, weight=7)}
    config = processes.render_config(KEY, 28081, None, servers)
    assert "httpchk" not in config
    assert server_lines(config) == ["server v1-0 127.0.0.1:32001 weight 7"]


@pytest.mark.parametrize("entry", [
    ServerIntent(address="127.0.0.1 #", port=1),
    ServerIntent(address="127.0.0.1\n    server evil 10.0.0.1:80", port=1),
    ServerIntent(address="127.0.0.1", port=0),
    ServerIntent(address="127.0.0.1", port=1, weight=257),
])
def test_a_recorded_server_that_would_change_the_config_is_refused(
        processes: HaproxyProcesses, entry: ServerIntent) -> None:
    with pytest.raises(ValueError):
        processes.render_config(KEY, 28081, "/healthz", {"v1-0": entry})


def test_a_server_name_that_would_change_the_config_is_refused(
        processes: HaproxyProcesses) -> None:
    with pytest.raises(ValueError, match="invalid server name"):
        processes.render_config(KEY, 28081, "/healthz", {"v1 0": ServerIntent(
            address="127.0.0.1", port=1)})


def test_sync_config_follows_the_record_and_leaves_a_stopped_key_alone(
        processes: HaproxyProcesses) -> None:
    assert not processes.sync_config(KEY)  # no config: stopped on purpose, stays so
    assert not processes.config_path(KEY).exists()

    processes.dir.mkdir(parents=True, exist_ok=True)
    # A config written before servers were rendered into it (an older Slipway).
    processes.config_path(KEY).write_text(processes.render_config(KEY, 28081, "/healthz"))
    write_intent(processes.intent_path(KEY),
                 {"v1-0": ServerIntent(address="127.0.0.1", port=32001, weight=60)})
    assert processes.sync_config(KEY)
    text = processes.config_path(KEY).read_text()
    assert server_lines(text) == [f"server v1-0 127.0.0.1:32001 weight 60 {HEALTH_CHECK_OPTIONS}"]
    assert '"${SLIPWAY_LISTEN-127.0.0.1:28081}"' in text
    assert "option httpchk GET /healthz" in text
    assert not processes.sync_config(KEY)  # already in line: not rewritten
    assert processes.intended(KEY) == read_intent(processes.intent_path(KEY))


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="needs Debian's haproxy")
def test_haproxy_accepts_the_rendered_config(processes: HaproxyProcesses) -> None:
    servers = {
        "v1-0": ServerIntent(address="127.0.0.1", port=32001, weight=100),
        "v1-1": ServerIntent(address="127.0.0.1", port=32002, weight=0),
        "v1-2": ServerIntent(address="127.0.0.1", port=32003, weight=256, state="drain"),
    }
    processes.dir.mkdir(parents=True, exist_ok=True)
    # The lane map the config loads (integrations/haproxy/lane_table.py), with one lane.
    write_map(processes.dir, KEY, LaneTable(routes={
        "pay-42": LaneRoute(slot=3, address="127.0.0.1", port=32004)}))
    for health in ("/healthz", None):
        path = processes.config_path(KEY)
        path.write_text(processes.render_config(KEY, 28081, health, servers))
        checked = subprocess.run(["haproxy", "-c", "-f", str(path)], capture_output=True,
                                 text=True, timeout=30, check=False)
        assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_frontend_is_read_back_from_both_bind_forms() -> None:
    # Configs written before the keeper held sockets bind the address themselves.
    for bind in ('bind "${SLIPWAY_LISTEN-127.0.0.1:18081}"', "bind 127.0.0.1:18081"):
        text = f"frontend fe\n    {bind}\nbackend be\n    option httpchk GET /up\n"
        found = configured_frontend(text)
        assert found is not None and (found.bind_port, found.health_path) == (18081, "/up")
    assert configured_frontend("frontend fe\n") is None
