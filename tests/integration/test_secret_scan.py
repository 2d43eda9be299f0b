"""No secret in history, search attributes, memos, logs or the catalogue.

Known credential values go through a real run: the registry's htpasswd password (images
pushed to and pulled from the real docker-registry), the notifier's webhook token (a
local receiver of notifications), the GitLab and registry webhook secrets (hooks delivered to
the receiver), an approver's API token and the approval signing secret (an approval through
the receiver, two signed by the CLI's path), an environment variable marked secret
(``${credential:…}``), and the Jenkins and GitLab tokens (builds on the CI fakes, which speak
those servers' HTTP APIs). The run: a release with approval, a second one, a rollback, two
releases built on CI, and a lane created, pushed to (built on its Jenkins job) and deleted.
Then every workflow history of the run's task queue (with its search attributes and memo),
every log line of the worker and of the receiver, every catalogue row and every file in the
state directory is scanned: zero hits.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import text
from sqlmodel import SQLModel, select
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from catalogue.store import Store
from catalogue.tables import Baseline
from schemas.lanes import DeleteInput, LanePushInput, LaneSpec, LaneStage, lane_workflow_id
from schemas.models import ReleaseRequest
from schemas.settings import Settings
from starter.api.app import create_app
from starter.api.deps import get_client
from starter.api.settings import ReceiverSettings
from starter.service.catalogue import add_env, mark_ready, register_app
from starter.service.changes import rollback_request
from starter.service.controls import approval_proof, control_input, send_update
from starter.service.releases import follow, start_release, validate_release
from starter.service.tokens import create_token
from tests.integration.test_release_docker import SAMPLE
from tests.integration.test_swimlane_docker import commit_sample
from tests.support.chaos import WorkerProcess
from tests.support.gitlab_fake import FakeJob, PipelineScript, running_gitlab
from tests.support.jenkins_fake import JobScript, running_jenkins
from tests.support.registry import RegistryServer
from workflows.release import ReleaseWorkflow
from workflows.swimlane import SwimlaneWorkflow

pytestmark = pytest.mark.integration

APP = "vault"
NOTIFY_TOKEN = "notify-tok-7f3a9c1e"
GITLAB_SECRET = "gitlab-hook-5b2d8e4f"
REGISTRY_HOOK_SECRET = "registry-hook-9c4e1a7b"
DB_PASSWORD = "db-pass-3e8f2a6d"
JENKINS_TOKEN = "jenkins-api-1d7c5e9a"
GITLAB_TOKEN = "glpat-scan-8b3f6a2c"
SIGNING_SECRET = "approval-signing-4a6e2c8f"
CI_BUILT = {"vaultj": "jenkins", "vaultg": "gitlab"}  # apps built by the CI fakes


class Notifications(BaseHTTPRequestHandler):
    """The notifier's webhook target: counts what arrives and the bearer it carried."""

    received: list[tuple[str, str]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.received.append((self.headers.get("Authorization", ""),
                               json.loads(body).get("title", "")))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *_args: Any) -> None:
        pass


@contextmanager
def notification_receiver() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Notifications)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/notify"
    finally:
        server.shutdown()


class Captured(logging.Handler):
    """Every log record of this process (the receiver's), formatted as it would be written."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def captured_logs() -> Iterator[Captured]:
    handler = Captured()
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield handler
    root.removeHandler(handler)
    root.setLevel(previous)


@pytest.fixture
def stack() -> Iterator[ExitStack]:
    with ExitStack() as exits:
        yield exits


@pytest.fixture
def cleanup(docker_client: docker.DockerClient) -> Iterator[None]:
    yield
    for container in docker_client.containers.list(all=True, filters={"label": "slipway.app"}):
        if container.labels["slipway.app"].startswith(APP):
            container.remove(force=True)


async def released(handle: WorkflowHandle[Any, Any]) -> int | None:
    return (await follow(handle, lambda _s: None)).baseline_version


async def wait_for_approval(handle: WorkflowHandle[Any, Any]) -> None:
    deadline = time.monotonic() + 120
    while (await handle.query(ReleaseWorkflow.status)).awaiting != "approval":
        assert time.monotonic() < deadline, "the release never asked for approval"
        await asyncio.sleep(0.1)


async def histories(temporal: WorkflowEnvironment, queue: str) -> list[str]:
    """Every workflow of the queue: its history, search attributes and memo, as JSON text."""
    found = []
    async for execution in temporal.client.list_workflows(f"TaskQueue = '{queue}'"):
        handle = temporal.client.get_workflow_handle(execution.id, run_id=execution.run_id)
        history = await handle.fetch_history()
        description = await handle.describe()
        found.append(history.to_json())
        found.append(str(description.raw_description.workflow_execution_info.search_attributes))
        found.append(str(description.raw_description.workflow_execution_info.memo))
    return found


def catalogue_rows(store: Store) -> list[str]:
    rows = []
    with store.engine.connect() as db:
        for table in SQLModel.metadata.sorted_tables:
            rows += [str(tuple(row)) for row in db.execute(text(f'SELECT * FROM "{table.name}"'))]
    return rows


async def test_no_secret_reaches_history_logs_or_the_catalogue(
    temporal: WorkflowEnvironment, settings: Settings, store: Store,
    registry_server: RegistryServer, captured_logs: Captured, cleanup: None, tmp_path: Path,
    docker_client: docker.DockerClient, stack: ExitStack,
) -> None:
    settings = settings.model_copy(update={"credentials": {
        **settings.credentials, "notify": SecretStr(NOTIFY_TOKEN),
        "gitlab-hook": SecretStr(GITLAB_SECRET), "registry-hook": SecretStr(REGISTRY_HOOK_SECRET),
        "vault-db": SecretStr(DB_PASSWORD), "jenkins": SecretStr(f"slipway:{JENKINS_TOKEN}"),
        "gitlab": SecretStr(GITLAB_TOKEN), "approval-signing": SecretStr(SIGNING_SECRET)}})
    jenkins = stack.enter_context(running_jenkins())
    gitlab_fake = stack.enter_context(running_gitlab())
    for app in CI_BUILT:
        register_app(store, app, category="in-house", tier="edge", owners=["dev"],
                     approvers=[], source=str(SAMPLE), description="", actor="dev")
        mark_ready(store, app, "dev")
        add_env(store, app, "test", cluster="local", replicas=1, cpu="", memory="",
                ports=[8080], env_vars={}, runtime="docker", namespace="default",
                health_path="/healthz", settings=settings, actor="dev", strategy="recreate",
                approval="none")
    register_app(store, APP, category="in-house", tier="core", owners=["dev"],
                 approvers=["lead"], source=str(SAMPLE), description="", actor="dev")
    mark_ready(store, APP, "dev")
    for env, approval in (("prod", "required"), ("test", "none")):
        add_env(store, APP, env, cluster="local", replicas=1, cpu="", memory="", ports=[8080],
                env_vars={"DB_PASSWORD": "${credential:vault-db}"}, runtime="docker",
                namespace="default", health_path="/healthz", settings=settings, actor="dev",
                strategy="recreate", approval=approval)
    _, lead_token = create_token(store, "lead", roles=["read", "approve"])
    secrets = {"registry password": registry_server.password, "notifier token": NOTIFY_TOKEN,
               "gitlab hook secret": GITLAB_SECRET, "registry hook secret": REGISTRY_HOOK_SECRET,
               "env var marked secret": DB_PASSWORD, "lead's API token": lead_token,
               "Jenkins API token": JENKINS_TOKEN, "GitLab token": GITLAB_TOKEN,
               "approval signing secret": SIGNING_SECRET}

    api = create_app(settings, ReceiverSettings(), store)
    api.dependency_overrides[get_client] = lambda: temporal.client
    with notification_receiver() as notify_url:
        worker = WorkerProcess(settings, temporal.client.service_client.config.target_host,
                               tmp_path / "worker.log",
                               extra_env={"SLIPWAY_NOTIFIER": "webhook",
                                          "SLIPWAY_NOTIFY_URL": notify_url,
                                          "SLIPWAY_NOTIFY_CREDENTIAL": "notify",
                                          "SLIPWAY_JENKINS_URL": jenkins.url,
                                          "SLIPWAY_GITLAB_URL": gitlab_fake.url,
                                          "SLIPWAY_BUILDERS": json.dumps({
                                              "vaultj": {"kind": "jenkins", "job": "vault-image"},
                                              "vaultg": {"kind": "gitlab",
                                                         "project": "team/vault"}})})
        worker.start()
        try:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api),
                                         base_url="http://receiver") as http:
                # Webhooks authenticated by their secrets (a push no rule releases; an image).
                gitlab = await http.post("/hooks/gitlab", headers={
                    "X-Gitlab-Token": GITLAB_SECRET, "X-Gitlab-Event": "Push Hook",
                    "X-Gitlab-Event-UUID": "scan-1"}, json={
                    "object_kind": "push", "ref": "refs/heads/main", "after": "a" * 40,
                    "user_username": "dev", "project": {"path_with_namespace": "team/vault"}})
                assert gitlab.status_code == 200, gitlab.text
                image_hook = await http.post("/hooks/registry", headers={
                    "Authorization": f"Bearer {REGISTRY_HOOK_SECRET}"}, json={"events": [{
                        "id": "scan-2", "action": "push", "actor": {"name": "ci"},
                        "target": {"repository": APP, "tag": "x", "digest": "sha256:" + "b" * 64,
                                   "mediaType": "application/vnd.oci.image.manifest.v1+json"}}]})
                assert image_hook.status_code == 200, image_hook.text

                # v1: approved through the receiver with lead's bearer token.
                request, summary = validate_release(store, ReleaseRequest(
                    app=APP, env="prod", version_label="1.0.0", requested_by="dev"))
                first = (await start_release(temporal.client, settings, request, summary)).handle
                await wait_for_approval(first)
                approved = await http.post(f"/api/releases/{APP}/prod/approve",
                                           headers={"Authorization": f"Bearer {lead_token}"},
                                           json={"comment": "ok"})
                assert approved.status_code == 200, approved.text
                assert await released(first) == 1

                # Builds on CI (the Jenkins and GitLab fakes), each answering with v1's image.
                with store.session() as session:
                    v1 = session.exec(select(Baseline)).one()
                built = f"IMAGE={v1.image}\nDIGEST={v1.digest}\n"
                jenkins.jobs["vault-image"] = JobScript(description=built)
                gitlab_fake.projects["team/vault"] = PipelineScript(jobs=[FakeJob("image",
                                                                              trace=built)])
                for app in CI_BUILT:
                    request, summary = validate_release(store, ReleaseRequest(
                        app=app, env="test", ref="main", version_label="ci-1",
                        requested_by="dev"))
                    assert await released(
                        (await start_release(temporal.client, settings, request,
                                             summary)).handle) == 1

                # v2: approved the CLI's way (a proof signed with the token, never sent).
                request, summary = validate_release(store, ReleaseRequest(
                    app=APP, env="prod", version_label="2.0.0", requested_by="dev"))
                second = (await start_release(temporal.client, settings, request,
                                              summary)).handle
                await wait_for_approval(second)
                signed = await approval_proof(temporal.client, SIGNING_SECRET, lead_token,
                                              "lead", APP, "prod@local", "approve")
                await send_update(temporal.client, APP, "prod@local", "approve",
                                  control_input("approve", "lead", "", signed.proof), store,
                                  run_id=signed.run_id)
                assert await released(second) == 2

                # A rollback to v1, approved again.
                request, summary = validate_release(store, rollback_request(
                    store, APP, "prod", actor="dev"))
                rollback = (await start_release(temporal.client, settings, request,
                                                summary)).handle
                await wait_for_approval(rollback)
                signed = await approval_proof(temporal.client, SIGNING_SECRET, lead_token,
                                              "lead", APP, "prod@local", "approve")
                await send_update(temporal.client, APP, "prod@local", "approve",
                                  control_input("approve", "lead", "", signed.proof), store,
                                  run_id=signed.run_id)
                assert await released(rollback) == 3

                # A lane: the app's test build, a push built from a commit, then deleted.
                request, summary = validate_release(store, ReleaseRequest(
                    app=APP, env="test", version_label="qa", requested_by="dev"))
                assert await released(
                    (await start_release(temporal.client, settings, request, summary)).handle)
                lane = "scan"
                handle = await temporal.client.start_workflow(
                    SwimlaneWorkflow.run, LaneSpec(name=lane, apps=[APP], requested_by="dev"),
                    id=lane_workflow_id(lane), task_queue=settings.task_queue)
                deadline = time.monotonic() + 120
                while (await handle.query(SwimlaneWorkflow.status)).stage == LaneStage.CREATING:
                    assert time.monotonic() < deadline
                    await asyncio.sleep(0.2)
                # With Jenkins configured the lane builds pushes on its own job (lane/app).
                jenkins.jobs[f"{lane}/{APP}"] = JobScript(description=built)
                sha = commit_sample(tmp_path / "vault-repo")
                await handle.execute_update(SwimlaneWorkflow.push, LanePushInput(
                    app=APP, source=str(tmp_path / "vault-repo"), sha=sha, user="dev"))
                await handle.execute_update(SwimlaneWorkflow.delete, DeleteInput(user="dev"))
                await handle.result()
        finally:
            worker.stop()
    # The secrets did their job: the container has the variable, the notifier sent its token,
    # the CI servers saw theirs.
    assert any(JENKINS_TOKEN in base64.b64decode(call.authorization.split()[-1]).decode()
               for call in jenkins.calls if call.authorization)
    assert any(call.token == GITLAB_TOKEN for call in gitlab_fake.calls)
    [serving] = docker_client.containers.list(filters={"label": "slipway.env=vault-prod-local"})
    assert f"DB_PASSWORD={DB_PASSWORD}" in serving.attrs["Config"]["Env"]
    assert Notifications.received and all(auth == f"Bearer {NOTIFY_TOKEN}"
                                          for auth, _ in Notifications.received)

    places = {
        "workflow histories, search attributes, memos": await histories(
            temporal, settings.task_queue),
        "worker log": [(tmp_path / "worker.log").read_text(errors="replace")],
        "receiver log": captured_logs.lines,
        "catalogue rows": catalogue_rows(store),
        "state directory": [path.read_text(errors="replace")
                            for path in Path(settings.state_dir).rglob("*") if path.is_file()],
    }
    assert len(places["workflow histories, search attributes, memos"]) >= 5 * 3
    hits = [f"{what} in {where}" for where, texts in places.items() for text_ in texts
            for what, value in secrets.items() if value in text_]
    print(f"\nscanned {sum(len(t) for texts in places.values() for t in texts):,} characters "
          f"in {', '.join(places)} for {len(secrets)} secrets: {len(hits)} hits")
    assert hits == []
