"""What a health poll costs the engine: one container list per host, and an inspection only
of a replica that does not answer 200 (what the crash-loop judgement needs: restart count,
exit code, out-of-memory kill). Against the real dockerd."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from docker.api.client import APIClient

from integrations.docker.runtime import DockerRuntime
from tests.integrations.docker.test_runtime_failing import (
    DEADLINE_SECONDS,
    images,
    runtime,
    start,
)

pytestmark = pytest.mark.integration
__all__ = ["images", "runtime"]  # fixtures shared with the failing-version tests


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[Counter[str]]:
    """dockerd requests by kind: ``list``, ``inspect``, or method and path."""
    seen: Counter[str] = Counter()
    send = APIClient.send

    def counted(self: APIClient, request: Any, **kwargs: Any) -> Any:
        path = re.sub(r"^/v[0-9.]+", "", request.path_url.split("?")[0])
        kind = ("list" if path == "/containers/json" else
                "inspect" if re.fullmatch(r"/containers/[^/]+/json", path) else
                f"{request.method} {path}")
        seen[kind] += 1
        return send(self, request, **kwargs)

    monkeypatch.setattr(APIClient, "send", counted)
    yield seen


def test_a_healthy_version_costs_one_list_per_look(
        runtime: DockerRuntime, images: dict[str, str], calls: Counter[str]) -> None:
    ref = start(runtime, images["healthy"], replicas=3)
    runtime.wait_ready(ref, 3, 8080, "/healthz", DEADLINE_SECONDS)
    # While replicas started, each look inspected only those not answering yet.
    assert calls["inspect"] <= 3 * (calls["list"] - 1), calls

    calls.clear()
    assert len(runtime.wait_ready(ref, 3, 8080, "/healthz", DEADLINE_SECONDS)) == 3
    assert runtime.check_health(ref, 3, 8080, "/healthz") == []
    assert {i.name for i in runtime.instances(ref.env_key, ref.version, port=None)} == {
        "v2-0", "v2-1", "v2-2"}
    assert calls == Counter(list=3), calls  # one each, no inspection


def test_a_crashing_version_is_judged_from_the_list_alone(
        runtime: DockerRuntime, images: dict[str, str], calls: Counter[str]) -> None:
    """check_health needs no inspection: a replica that is not running is a problem by its
    listed state, one that runs without answering by its probe."""
    ref = start(runtime, images["crashing"])
    calls.clear()
    problems = runtime.check_health(ref, 1, 8080, "/healthz")
    assert problems and all("v2" in problem for problem in problems), problems
    assert calls == Counter(list=1), calls
