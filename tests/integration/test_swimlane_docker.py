"""A lane with three apps on the embedded stack (real dockerd + HAProxy + Temporal dev server):
created, serving, one app replaced by a push's build, then deleted — with no GitLab, Jenkins,
Consul or DNS configured."""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from pathlib import Path

import docker
import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from catalogue.store import Store
from schemas.lanes import (
    DeleteInput,
    LanePushInput,
    LaneSpec,
    LaneStage,
    ResourceKind,
    lane_workflow_id,
)
from schemas.models import ReleaseRequest
from schemas.settings import Settings
from starter.api.app import create_app
from starter.api.deps import get_client
from starter.api.settings import ReceiverSettings
from starter.service.catalogue import add_env, mark_ready, register_app
from starter.service.releases import follow, start_release, validate_release
from starter.service.tokens import create_token
from tests.integration.test_release_docker import SAMPLE
from tests.support.load import failures, request_loop
from workflows.swimlane import SwimlaneWorkflow

pytestmark = pytest.mark.integration

APPS = ["cart", "pay", "web"]


async def release_to_test(temporal: WorkflowEnvironment, settings: Settings, store: Store,
                          app: str) -> None:
    register_app(store, app, category="in-house", tier="non-core", owners=["qa"],
                 approvers=[], source=str(SAMPLE), description="", actor="qa")
    mark_ready(store, app, "qa")
    add_env(store, app, "test", cluster="local", replicas=1, cpu="", memory="", ports=[8080],
            env_vars={}, runtime=None, namespace="default", health_path="/healthz",
            settings=settings, actor="qa", strategy="recreate", approval="none")
    request, summary = validate_release(
        store, ReleaseRequest(app=app, env="test", version_label=f"{app}-qa"))
    started = await start_release(temporal.client, settings, request, summary)
    await follow(started.handle, lambda _status: None)


@pytest.fixture
def cleanup(docker_client: docker.DockerClient) -> object:
    yield
    for container in docker_client.containers.list(all=True, filters={"label": "slipway.app"}):
        if container.labels["slipway.app"] in APPS:
            container.remove(force=True)


def commit_sample(repo: Path) -> str:
    """A git repository holding the sample app, one commit; its sha."""
    shutil.copytree(SAMPLE, repo)
    git = ["git", "-C", str(repo), "-c", "user.name=dev", "-c", "user.email=dev@example.com"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "lane work"], check=True)
    return subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True,
                          text=True).stdout.strip()


async def test_lane_with_three_apps_is_created_and_deleted(
    temporal: WorkflowEnvironment, running_worker: None, settings: Settings, store: Store,
    docker_client: docker.DockerClient, cleanup: object, tmp_path: Path,
) -> None:
    for app in APPS:
        await release_to_test(temporal, settings, store, app)
    lane = f"pay-{uuid.uuid4().hex[:6]}"
    began = time.monotonic()
    handle = await temporal.client.start_workflow(
        SwimlaneWorkflow.run, LaneSpec(name=lane, apps=APPS, requested_by="dev"),
        id=lane_workflow_id(lane), task_queue=settings.task_queue)
    deadline = time.monotonic() + 120
    while (status := await handle.query(SwimlaneWorkflow.status)).stage == LaneStage.CREATING:
        assert time.monotonic() < deadline, status
        time.sleep(0.2)
    created = time.monotonic() - began
    assert status.stage == LaneStage.ACTIVE, status
    deployments = [e for e in status.ledger if e.kind == ResourceKind.DEPLOYMENT]
    assert [e.app for e in deployments] == APPS
    for entry in deployments:
        # Each app answers through its own lane frontend with its QA build.
        assert httpx.get(entry.detail["url"], timeout=5).text.strip() == \
            f"sample-app {entry.app}-qa"
    dyed = docker_client.containers.list(filters={"label": f"slipway.lane={lane}"})
    assert len(dyed) == 3
    assert all(f"SLIPWAY_LANE={lane}" in c.attrs["Config"]["Env"] for c in dyed)

    # A push to feature/<lane> of pay: built from the pushed commit, swapped in while its
    # lane frontend keeps answering, the QA version's container removed.
    sha = commit_sample(tmp_path / "pay-repo")
    pay = next(entry for entry in deployments if entry.app == "pay")
    with request_loop(pay.detail["url"], max_requests=2000, max_seconds=120) as outcomes:
        pushed = await handle.execute_update(SwimlaneWorkflow.push, LanePushInput(
            app="pay", source=str(tmp_path / "pay-repo"), sha=sha, user="dev"))
        time.sleep(0.5)
    assert failures(outcomes) == {}, outcomes
    pushed_text = f"sample-app {lane}-{sha[:12]}"
    assert outcomes["200 sample-app pay-qa"] > 0 and outcomes[f"200 {pushed_text}"] > 0
    assert pushed.url == pay.detail["url"]
    assert httpx.get(pushed.url, timeout=5).text.strip() == pushed_text
    pay_lane = docker_client.containers.list(
        all=True, filters={"label": f"slipway.env=pay-lane-{lane}"})
    assert [c.labels["slipway.version"] for c in pay_lane] == ["2"]
    status = await handle.query(SwimlaneWorkflow.status)

    api = create_app(settings, ReceiverSettings(), store)
    api.dependency_overrides[get_client] = lambda: temporal.client
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api),
                                 base_url="http://receiver") as http:
        _, token = create_token(store, "qa", roles=["read"])
        listed = (await http.get("/api/lanes",
                                 headers={"Authorization": f"Bearer {token}"})).json()
    assert [(item["name"], item["stage"]) for item in listed if item["name"] == lane] == [
        (lane, "active")]

    began = time.monotonic()
    result = await handle.execute_update(SwimlaneWorkflow.delete, DeleteInput(user="dev"))
    deleted = time.monotonic() - began
    print(f"\nlane with 3 apps: created in {created:.1f}s, deleted in {deleted:.1f}s")
    assert [e.kind for e in result.removed][:1] == [ResourceKind.DEPLOYMENT]
    assert len(result.removed) == len(status.ledger)
    for entry in deployments:
        with pytest.raises(httpx.ConnectError):
            httpx.get(entry.detail["url"], timeout=2)
    remaining = docker_client.containers.list(all=True)
    assert not [c for c in remaining if c.labels.get("slipway.lane") == lane]
    # The apps' own test environments are untouched.
    assert len([c for c in remaining if c.labels.get("slipway.app") in APPS]) == 3
