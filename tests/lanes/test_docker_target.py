"""Lane frontends take ports from the configured range, never one another frontend holds."""

from __future__ import annotations

from pathlib import Path

from integrations.docker.runtime import DockerRuntime
from integrations.haproxy.router import HaproxyRouter
from lanes.docker_target import DockerLaneTarget
from tests.integration.conftest import free_port


def test_lane_ports_come_from_the_range_and_skip_held_ones(tmp_path: Path) -> None:
    router = HaproxyRouter(tmp_path / "state")
    start = free_port()
    target = DockerLaneTarget(DockerRuntime(["unix:///var/run/docker.sock"]), router,
                              port_start=start)
    first = target._lb_port("shop-lane-a")
    assert first >= start and first < start + 50
    router.dir.mkdir(parents=True)
    # The frontend of lane a now holds that port (as its config says)...
    router.config_path("shop-lane-a").write_text(f"frontend fe\n    bind 127.0.0.1:{first}\n")
    assert target._lb_port("shop-lane-a") == first  # ...keeps it on a retry
    second = target._lb_port("shop-lane-b")
    assert second > first  # ...and lane b gets another one
