"""A real SwimlaneWorkflow on the Temporal dev server whose lane activities talk to every
optional system at once: the GitLab and Jenkins HTTP fakes, the Consul KV fake, a real bind9
accepting TSIG-signed RFC 2136 updates, and the real Docker engine + HAProxy for the apps.

Two apps: ``orders`` already has its ``feature/<lane>`` branch (the lane adopts it and must
never delete it), ``billing`` does not (the lane creates it and deletes it again). Everything
is asserted through the workflow: create, the ``status`` query, then the ``delete`` Update.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import dns.message
import dns.query
import dns.rcode
import docker
import httpx
import pytest
import pytest_asyncio
from sqlmodel import col, select
from temporalio.client import WorkflowExecutionStatus, WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

import worker as slipway_worker
from activities.lanes import LaneActivities
from activities.notify import NotifyActivities
from catalogue.store import Store
from catalogue.tables import Application, Build
from integrations.builders import BuilderSettings
from integrations.dns.rfc2136 import Rfc2136Dns
from integrations.docker.runtime import DockerRuntime
from integrations.haproxy.router import HaproxyRouter
from integrations.notify.notifier import ConsoleNotifier
from lanes.docker_target import DockerLaneTarget
from lanes.resources import LaneResources, LaneSettings, gitlab_project
from schemas.lanes import (
    DeleteInput,
    LaneSpec,
    LaneStage,
    LaneStatus,
    ResourceKind,
    lane_workflow_id,
)
from schemas.settings import Settings
from tests.integration import test_swimlane_docker as swimlane_docker
from tests.integration.conftest import free_port
from tests.support.bind9 import Bind9Server, bind9_server  # noqa: F401  (module fixture)
from tests.support.consul_fake import ConsulFake, running_consul
from tests.support.gitlab_fake import FakeRepo, GitlabFake, running_gitlab
from tests.support.jenkins_fake import JenkinsFake, running_jenkins
from tests.support.redis_server import RedisServer
from tests.support.workers import this_build
from workflows.swimlane import SwimlaneWorkflow

pytestmark = pytest.mark.integration

GROUP = "shop"
ADOPTED = "orders"  # its feature/<lane> branch exists before the lane
CREATED = "billing"  # its feature/<lane> branch does not
APPS = [ADOPTED, CREATED]
BASE_SHA = "c" * 40
WORK_SHA = "d" * 40  # work already on orders' lane branch: must survive the lane
GITLAB_TOKEN = "glpat-lane-test"
JENKINS_USER, JENKINS_TOKEN = "slipway", "jenkins-api-token"
CONSUL_TOKEN = "consul-acl-token"
HOOK_SECRET = "hook-s3cret"
CONFIG = {  # the integration-test config each lane forks (config/it/<app>/...)
    ADOPTED: {"db.url": b"postgres://orders-it", "flags/checkout": b"on"},
    CREATED: {"db.url": b"postgres://billing-it"},
}
TOPIC = "payments"  # the lane's dyed topic on the session's Redis
CREATE_TIMEOUT = 180.0  # seconds: 14 ledger entries, two of them container starts
DELETE_TIMEOUT = 120.0


@dataclass
class Systems:
    """The lane's outside world: what the worker talks to and where to look afterwards."""

    lane: str
    gitlab: GitlabFake
    jenkins: JenkinsFake
    consul: ConsulFake
    bind9: Bind9Server
    redis: RedisServer
    receiver_url: str
    lane_domain: str
    credential: Callable[[str], str]


@pytest.fixture
def lane() -> str:
    return f"feat-{uuid.uuid4().hex[:6]}"


@pytest.fixture
def systems(lane: str, bind9_server: Bind9Server,  # noqa: F811
            redis_server: RedisServer) -> Iterator[Systems]:
    """GitLab, Jenkins and Consul fakes seeded for ``lane``, beside the module's bind9 and
    the session's Redis (message lanes)."""
    repos = {
        f"{GROUP}/{ADOPTED}": FakeRepo(branches={"master": BASE_SHA, f"feature/{lane}": WORK_SHA}),
        f"{GROUP}/{CREATED}": FakeRepo(branches={"master": BASE_SHA}),
    }
    secrets = {"gitlab": GITLAB_TOKEN, "jenkins": f"{JENKINS_USER}:{JENKINS_TOKEN}",
               "consul": CONSUL_TOKEN, "gitlab-hook": HOOK_SECRET, "dns": bind9_server.secret,
               "lane-broker": redis_server.password}
    with running_gitlab(repos=repos) as gitlab, running_jenkins() as jenkins, \
            running_consul(token=CONSUL_TOKEN) as consul:
        for app, values in CONFIG.items():
            for key, value in values.items():
                consul.put(f"config/it/{app}/{key}", value)
        yield Systems(lane=lane, gitlab=gitlab, jenkins=jenkins, consul=consul,
                      bind9=bind9_server, redis=redis_server,
                      receiver_url=f"http://127.0.0.1:{free_port()}",
                      lane_domain=f"ext.{bind9_server.zone}",
                      credential=lambda name: secrets.get(name, ""))


@pytest.fixture
def cleanup(docker_client: docker.DockerClient) -> Iterator[None]:
    """Remove the apps' containers (test envs and lane); the `settings` fixture stops every
    HAProxy under the state dir, lane frontends included."""
    yield
    for container in docker_client.containers.list(all=True, filters={"label": "slipway.app"}):
        if container.labels["slipway.app"] in APPS:
            container.remove(force=True)


@pytest_asyncio.fixture
async def lane_queue(temporal: WorkflowEnvironment, settings: Settings, store: Store,
                     systems: Systems) -> AsyncIterator[str]:
    """A worker for SwimlaneWorkflow on a task queue of its own, with the real lane activities
    wired to every system; the releases to `test` stay on `running_worker`'s queue."""
    router = HaproxyRouter(settings.state_dir, settings.haproxy_bin, settings.lb_bind_address)
    auth = slipway_worker.registry_auth(settings)
    runtime = DockerRuntime(["unix:///var/run/docker.sock"], registry_auth=lambda _image: auth)
    dns_client = Rfc2136Dns(server=systems.bind9.server, port=systems.bind9.port,
                            zone=systems.bind9.zone, key_name=systems.bind9.key_name,
                            key_secret=lambda: systems.credential("dns"))
    resources = LaneResources(
        store, DockerLaneTarget(runtime, router, settings.lb_bind_address, deadline_seconds=120),
        systems.credential, dns=dns_client,
        lane_settings=LaneSettings(consul_url=systems.consul.url,
                                   receiver_url=systems.receiver_url,
                                   lane_domain=systems.lane_domain, lane_base_branch="master",
                                   config_prefix="config", config_source="it",
                                   lane_deadline_seconds=120,
                                   lane_broker_url=systems.redis.url, lane_topics=[TOPIC]),
        builder_settings=BuilderSettings(gitlab_url=systems.gitlab.url,
                                         jenkins_url=systems.jenkins.url),
        dns_target="127.0.0.1")
    lanes = LaneActivities(resources)
    queue = f"{settings.task_queue}-lanes"
    with ThreadPoolExecutor(max_workers=4) as executor:
        async with Worker(temporal.client, task_queue=queue, workflows=[SwimlaneWorkflow],
                          activities=[lanes.create_lane_resource, lanes.delete_lane_resource,
                                      lanes.record_lane,
                                      NotifyActivities(ConsoleNotifier()).notify],
                          activity_executor=executor,
                          **this_build(settings.model_copy(update={"task_queue": queue}))):
            yield queue


def build_branch_head(docker_client: docker.DockerClient, settings: Settings,
                      store: Store) -> None:
    """What CI (or a push to an earlier lane of the name) built from orders' lane branch head:
    an image of its own, recorded as the build of WORK_SHA."""
    image, _ = docker_client.images.build(
        path=str(swimlane_docker.SAMPLE), tag="lane-it/orders:feature", rm=True,
        buildargs={"VERSION": "orders-feature", "BASE_IMAGE": settings.base_image})
    with store.session() as session:
        app = session.exec(select(Application).where(Application.name == ADOPTED)).one()
        session.add(Build(app_id=app.id or 0, ref=WORK_SHA, version_label="orders-feature",
                          image="lane-it/orders:feature", digest=str(image.id)))
        session.commit()


def point_sources_at_gitlab(store: Store, gitlab_url: str) -> None:
    """The apps were built from the sample directory; from now on their source is a GitLab
    repository, so the lane's branch, job and webhook find a project."""
    with store.session() as session:
        for found in session.exec(select(Application)
                                  .where(col(Application.name).in_(APPS))):
            found.source = f"git@127.0.0.1:{GROUP}/{found.name}.git"
            session.add(found)
        session.commit()
    for app in APPS:
        assert gitlab_project(f"git@127.0.0.1:{GROUP}/{app}.git", gitlab_url) == f"{GROUP}/{app}"


def resolve(server: Bind9Server, name: str) -> tuple[str, list[str]]:
    """rcode and A records of ``name``, asked of the test name server itself over loopback."""
    response = dns.query.udp(dns.message.make_query(name, "A"), server.server,
                             port=server.port, timeout=3)
    addresses = sorted(rdata.to_text() for rrset in response.answer for rdata in rrset)
    return dns.rcode.to_text(response.rcode()), addresses


def dns_names(systems: Systems, app: str) -> list[str]:
    """The lane's internal and external names for ``app``, absolute."""
    return [f"{app}.{systems.lane}.{systems.bind9.zone}.",
            f"{app}-{systems.lane}.{systems.lane_domain}."]


async def wait_created(handle: WorkflowHandle[SwimlaneWorkflow, LaneStatus]) -> LaneStatus:
    deadline = time.monotonic() + CREATE_TIMEOUT
    while (status := await handle.query(SwimlaneWorkflow.status)).stage == LaneStage.CREATING:
        assert time.monotonic() < deadline, f"lane still creating after {CREATE_TIMEOUT}s: {status}"
        await asyncio.sleep(0.2)
    return status


async def finish(handle: WorkflowHandle[SwimlaneWorkflow, LaneStatus]) -> None:
    """After a failed assertion: tear the lane down if the worker still can, then end it."""
    description = await handle.describe()
    if description.status != WorkflowExecutionStatus.RUNNING:
        return
    with contextlib.suppress(Exception):  # best effort; terminated below either way
        await asyncio.wait_for(handle.execute_update(SwimlaneWorkflow.delete,
                                                     DeleteInput(user="cleanup")), 60)
    if (await handle.describe()).status == WorkflowExecutionStatus.RUNNING:
        await handle.terminate("test cleanup")


async def test_lane_creates_and_deletes_branch_job_config_dns_webhook_and_deployments(
    temporal: WorkflowEnvironment, running_worker: None, settings: Settings, store: Store,
    systems: Systems, lane_queue: str, cleanup: None, docker_client: docker.DockerClient,
) -> None:
    for app in APPS:
        await asyncio.wait_for(
            swimlane_docker.release_to_test(temporal, settings, store, app), 180)
    point_sources_at_gitlab(store, systems.gitlab.url)
    build_branch_head(docker_client, settings, store)
    lane, gitlab, jenkins, consul = systems.lane, systems.gitlab, systems.jenkins, systems.consul
    for app in APPS:
        assert [resolve(systems.bind9, name)[0] for name in dns_names(systems, app)] == [
            "NXDOMAIN", "NXDOMAIN"]

    handle = await temporal.client.start_workflow(
        SwimlaneWorkflow.run, LaneSpec(name=lane, apps=APPS, requested_by="dev"),
        id=lane_workflow_id(lane), task_queue=lane_queue)
    try:
        status = await wait_created(handle)
        assert status.stage == LaneStage.ACTIVE, status
        await check_created(systems, status)

        gitlab.calls.clear()
        jenkins.calls.clear()
        consul.calls.clear()
        result = await asyncio.wait_for(
            handle.execute_update(SwimlaneWorkflow.delete, DeleteInput(user="dev")),
            DELETE_TIMEOUT)
        assert len(result.removed) == len(status.ledger)
        # Newest first: the last app's deployment goes first, the namespace last.
        assert [(e.kind, e.app) for e in result.removed] == [
            (e.kind, e.app) for e in reversed(status.ledger)]
        final = await asyncio.wait_for(handle.result(), 30)
        assert final.stage == LaneStage.DELETED and final.ledger == []
        check_deleted(systems, status)
    finally:
        await finish(handle)


async def check_created(systems: Systems, status: LaneStatus) -> None:
    """After create: every system holds the lane's resources, and the ledger names them."""
    lane, gitlab, jenkins, consul = systems.lane, systems.gitlab, systems.jenkins, systems.consul
    # The ledger: the namespace, the consumer groups, then the six kinds per app, none skipped.
    assert {entry.kind for entry in status.ledger} == set(ResourceKind)
    assert len(status.ledger) == 2 + 6 * len(APPS)
    assert [e.kind for e in status.ledger][:2] == [ResourceKind.NAMESPACE,
                                                   ResourceKind.MESSAGES]
    redis = systems.redis.client()
    assert f"{TOPIC}-{lane}" in {group["name"] for group in redis.xinfo_groups(TOPIC)}
    assert not [e for e in status.ledger if e.detail.get("skipped")], status.ledger
    by_kind = {(e.kind, e.app): e.detail for e in status.ledger}

    # GitLab: billing's branch created from master once, orders' existing branch adopted.
    branch_posts = [c for c in gitlab.calls
                    if c.method == "POST" and c.path.endswith("/repository/branches")]
    assert [(c.path, c.body) for c in branch_posts] == [
        (f"/api/v4/projects/{GROUP}/{CREATED}/repository/branches",
         {"branch": f"feature/{lane}", "ref": "master"})]
    assert by_kind[(ResourceKind.BRANCH, ADOPTED)] == {"project": f"{GROUP}/{ADOPTED}",
                                                       "created": False}
    assert by_kind[(ResourceKind.BRANCH, CREATED)] == {"project": f"{GROUP}/{CREATED}",
                                                       "created": True}
    assert gitlab.repos[f"{GROUP}/{ADOPTED}"].branches[f"feature/{lane}"] == WORK_SHA
    assert gitlab.repos[f"{GROUP}/{CREATED}"].branches[f"feature/{lane}"] == BASE_SHA
    # One push hook per project and lane, at the receiver, with the secret token.
    hook_url = f"{systems.receiver_url}/hooks/gitlab?lane={lane}"
    hook_posts = [c for c in gitlab.calls if c.method == "POST" and c.path.endswith("/hooks")]
    assert sorted(c.path for c in hook_posts) == sorted(
        f"/api/v4/projects/{GROUP}/{app}/hooks" for app in APPS)
    assert all(c.body["url"] == hook_url and c.body["token"] == HOOK_SECRET for c in hook_posts)
    assert all(c.body["push_events"] and not c.body["tag_push_events"] for c in hook_posts)
    for app in APPS:
        hooks = list(gitlab.repos[f"{GROUP}/{app}"].hooks.values())
        assert [(h["url"], h["token"]) for h in hooks] == [(hook_url, HOOK_SECRET)]
    assert {c.token for c in gitlab.calls} == {GITLAB_TOKEN}

    # Jenkins: folder <lane> once, then one job per app from the job template.
    creates = [(c.path, c.query.get("name")) for c in jenkins.calls
               if c.method == "POST" and c.path.endswith("/createItem")]
    assert creates == [("/createItem", lane)] + [
        (f"/job/{lane}/createItem", app) for app in APPS]
    assert jenkins.is_folder(lane)
    assert jenkins.children(lane) == sorted(f"{lane}/{app}" for app in APPS)
    for app in APPS:
        config = jenkins.items[f"{lane}/{app}"]
        assert "<flow-definition" in config
        assert f"builds {app} from feature/{lane}" in config
    basic = "Basic " + base64.b64encode(f"{JENKINS_USER}:{JENKINS_TOKEN}".encode()).decode()
    assert {c.authorization for c in jenkins.calls if c.method == "POST"} == {basic}

    # Consul: each app's integration-test config copied under the lane's prefix.
    assert consul.values(f"config/{lane}/") == {
        f"config/{lane}/{app}/{key}": value
        for app, values in CONFIG.items() for key, value in values.items()}
    assert {c.token for c in consul.calls} == {CONSUL_TOKEN}

    # bind9: both names of each app resolve to the lane target.
    for app in APPS:
        assert [resolve(systems.bind9, name) for name in dns_names(systems, app)] == [
            ("NOERROR", ["127.0.0.1"])] * 2

    # Each app serves through its own lane frontend: orders the build of its lane branch's
    # head (the branch existed, with work on it), billing its QA baseline.
    served = {ADOPTED: ("orders-feature", f"build of feature/{lane} at {WORK_SHA[:12]}"),
              CREATED: ("billing-qa", "baseline 1 of test@local")}
    async with httpx.AsyncClient(timeout=5) as http:
        for app in APPS:
            url = by_kind[(ResourceKind.DEPLOYMENT, app)]["url"]
            assert url.startswith("http://127.0.0.1:")
            assert (await http.get(url)).text.strip() == f"sample-app {served[app][0]}"
            assert by_kind[(ResourceKind.DEPLOYMENT, app)]["from"] == served[app][1]


def check_deleted(systems: Systems, status: LaneStatus) -> None:
    """After delete: only what the lane created is gone; what it adopted or copied stays."""
    lane, gitlab, jenkins, consul = systems.lane, systems.gitlab, systems.jenkins, systems.consul
    by_kind = {(e.kind, e.app): e.detail for e in status.ledger}

    # GitLab: billing's branch deleted, orders' pre-existing branch never touched.
    deletes = [c.path for c in gitlab.calls if c.method == "DELETE"]
    hook_ids = {app: by_kind[(ResourceKind.WEBHOOK, app)]["hook_id"] for app in APPS}
    assert sorted(deletes) == sorted(
        [f"/api/v4/projects/{GROUP}/{CREATED}/repository/branches/feature/{lane}"]
        + [f"/api/v4/projects/{GROUP}/{app}/hooks/{hook_ids[app]}" for app in APPS])
    assert gitlab.repos[f"{GROUP}/{ADOPTED}"].branches == {"master": BASE_SHA,
                                                            f"feature/{lane}": WORK_SHA}
    assert gitlab.repos[f"{GROUP}/{CREATED}"].branches == {"master": BASE_SHA}
    assert all(not gitlab.repos[f"{GROUP}/{app}"].hooks for app in APPS)

    # Jenkins, newest first: billing's job (its entry found the folder there), then the
    # folder orders' entry created, with whatever is left in it — each exactly once.
    assert [c.path for c in jenkins.calls if c.method == "POST"] == [
        f"/job/{lane}/job/{CREATED}/doDelete", f"/job/{lane}/doDelete"]
    assert jenkins.items == {}

    # Redis: the lane's consumer group is gone.
    redis = systems.redis.client()
    assert f"{TOPIC}-{lane}" not in {group["name"] for group in redis.xinfo_groups(TOPIC)}

    # Consul: the lane prefix is gone; the source config is untouched.
    assert consul.values(f"config/{lane}/") == {}
    assert consul.values("config/it/") == {
        f"config/it/{app}/{key}": value
        for app, values in CONFIG.items() for key, value in values.items()}

    # bind9: NXDOMAIN for every name the lane had.
    for app in APPS:
        assert [resolve(systems.bind9, name)[0] for name in dns_names(systems, app)] == [
            "NXDOMAIN", "NXDOMAIN"]

    # The lane frontends are closed.
    for app in APPS:
        with pytest.raises(httpx.ConnectError):
            httpx.get(by_kind[(ResourceKind.DEPLOYMENT, app)]["url"], timeout=2)
