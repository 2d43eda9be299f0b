"""``slipway demo``: real releases of the sample app on the embedded stack.

Starts what is missing (Temporal dev server + worker), registers ``examples/sample-app`` as
application ``sample`` with environment ``demo@local`` (2 replicas behind HAProxy, grayscale
steps 1 → 50% → 100% with a short wait-for-stable, judged by canary analysis of HAProxy's
figures), releases it twice from source, then releases a drill build that answers 20 % of
requests with a 500: the analysis rolls it back at its first step. Every release runs under
a bounded loopback request loop (the demo's users), so the analysis has traffic to judge and
the demo ends by itself. It shows what the load balancer serves after each release.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import docker
import httpx
from docker.errors import DockerException, ImageNotFound
from sqlmodel import select

from catalogue.store import CatalogueError, Store
from catalogue.tables import Application, Environment
from schemas.analysis import AnalysisPolicy, Metric
from schemas.models import ReleaseOutcome, ReleaseRequest
from schemas.settings import Settings
from starter.cli.console import console
from starter.cli.release import run_release
from starter.service.analysis import set_policy
from starter.service.catalogue import add_env, mark_ready, register_app, set_source
from starter.service.identity import current_user
from starter.stack.processes import REPO_ROOT, start_agents, start_temporal, start_worker
from starter.stack.server import ensure_local_login, server_url, start_server
from workflows.release import release_workflow_id

SAMPLE_SOURCE = REPO_ROOT / "examples" / "sample-app"
DEMO_APP = "sample"
DEMO_ENV_TYPE = "demo"
RELEASES = 2
# Short, so the demo ends soon; production environments default to 60 s.
DEMO_STABLE_SECONDS = 4
# The demo environment's canary analysis: 5xx share from HAProxy, judged every 2 s once
# the canary has answered 10 requests in the interval.
DEMO_ANALYSIS = AnalysisPolicy(metrics=[Metric(
    name="errors", query="error_rate", max=0.05, min_sample=10, interval_seconds=2)])
DRILL_ERROR_PERCENT = "20"
DRILL_ALLOW_REJECTED = "the demo's 5xx drill: canary analysis must roll it back again"
# The users' request loop during each release: loopback only, bounded in count and time
# (a release of the demo takes 30-90 s on 2 cores; past the bound a step would go unjudged).
USERS_MAX_REQUESTS = 12000
USERS_MAX_SECONDS = 300


class DemoError(Exception):
    """The machine is missing something the demo needs; the message says what."""


def check_engine(settings: Settings) -> None:
    engine = settings.clusters[settings.default_cluster].engines[0]
    try:
        client = docker.DockerClient(base_url=engine, timeout=10)
        client.ping()
    except DockerException as error:
        raise DemoError(f"the Docker engine at {engine} does not answer ({error}); start it "
                        "with `bash scripts/bootstrap.sh`") from error
    try:
        client.images.get(settings.base_image)
    except ImageNotFound as error:
        raise DemoError(f"base image {settings.base_image} is missing; build it with "
                        "`bash scripts/build-base-image.sh`") from error


def ensure_catalogue(store: Store, settings: Settings) -> Environment:
    """Register the sample app and its demo environment unless an earlier demo did."""
    actor = current_user()
    with store.session() as session:
        app = session.exec(select(Application).where(Application.name == DEMO_APP)).first()
    if app is None:
        register_app(store, DEMO_APP, category="in-house", tier="non-core", owners=[actor],
                     approvers=[], source=str(SAMPLE_SOURCE), description="Slipway demo app",
                     actor=actor)
        mark_ready(store, DEMO_APP, actor)
        return add_env(store, DEMO_APP, DEMO_ENV_TYPE, cluster=settings.default_cluster,
                       replicas=2, cpu="", memory="", ports=[8080], env_vars={},
                       runtime="docker", namespace="default", health_path="/healthz",
                       settings=settings, actor=actor, strategy="gray",
                       gray_steps=["1", "50%", "100%"], stable_seconds=DEMO_STABLE_SECONDS,
                       analysis=DEMO_ANALYSIS)
    if app.source != str(SAMPLE_SOURCE):
        # The demo of another checkout on this machine left its own path: build this one's.
        set_source(store, DEMO_APP, str(SAMPLE_SOURCE), actor)
    with store.session() as session:
        env = session.exec(select(Environment).where(Environment.app_id == app.id)).first()
    if env is None:
        raise DemoError(f"application {DEMO_APP!r} exists without its demo environment")
    return env


def served(url: str) -> str:
    try:
        return httpx.get(url, timeout=5).text.strip()
    except httpx.HTTPError as error:
        return f"(no answer: {error})"


def build_drill(settings: Settings) -> str:
    """The sample app answering DRILL_ERROR_PERCENT % of requests with a 500."""
    image = f"slipway/{DEMO_APP}:drill-5xx"
    engine = settings.clusters[settings.default_cluster].engines[0]
    docker.DockerClient(base_url=engine, timeout=120).images.build(
        path=str(SAMPLE_SOURCE), tag=image, rm=True,
        buildargs={"BASE_IMAGE": settings.base_image, "VERSION": "drill-5xx",
                   "ERROR_PERCENT": DRILL_ERROR_PERCENT})
    return image


@contextmanager
def request_loop(url: str) -> Iterator[Counter[str]]:
    """Users of the demo app: GET ``url`` until the block ends (bounded), counting answers.
    Before the first release nothing answers yet; those refusals are counted too."""
    answers: Counter[str] = Counter()
    stop = threading.Event()

    def loop() -> None:
        deadline = time.monotonic() + USERS_MAX_SECONDS
        with httpx.Client(timeout=5) as client:
            while (not stop.is_set() and time.monotonic() < deadline
                   and answers.total() < USERS_MAX_REQUESTS):
                try:
                    answers[str(client.get(url).status_code)] += 1
                except httpx.HTTPError as error:
                    answers[type(error).__name__] += 1
                time.sleep(0.02)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield answers
    finally:
        stop.set()
        thread.join(timeout=10)


def run_drill(settings: Settings, store: Store, env: Environment, url: str) -> str:
    """Release the 5xx drill under traffic; canary analysis must roll it back."""
    actor = current_user()
    if not env.analysis:  # a demo environment made before analysis existed
        set_policy(store, DEMO_APP, env.name, DEMO_ANALYSIS, settings=settings, actor=actor)
    image = build_drill(settings)
    # A drill of an earlier demo marked this image rejected; the demo releases it again on
    # purpose (audited), so analysis, not the rejection, is what stops it every time.
    request = ReleaseRequest(app=DEMO_APP, env=env.name, image=image, requested_by=actor,
                             allow_rejected=DRILL_ALLOW_REJECTED)
    with request_loop(url) as answers:
        try:
            asyncio.run(run_release(request, wait=True))
        except CatalogueError as error:
            verdict = str(error)
        else:
            raise DemoError("the 5xx drill was released: canary analysis did not stop it")
        if "rolled_back: canary analysis failed" not in verdict:
            raise DemoError(f"the 5xx drill did not reach canary analysis: {verdict}")
    console.print(f"  [bold yellow]rolled back by canary analysis[/]: {verdict}",
                  highlight=False)
    console.print(f"  users' answers during the drill: {dict(answers)}; every measurement: "
                  f"`slipway release show {DEMO_APP} {env.name}`", highlight=False)
    return verdict


def run_demo(settings: Settings, store: Store) -> list[ReleaseOutcome]:
    check_engine(settings)
    console.print("[bold]1/3[/] embedded stack: Temporal dev server, Slipway worker, host "
                  "agent and server")
    start_temporal(settings, background=True)
    start_worker(settings, background=True)
    start_agents(settings, background=True)
    start_server(settings)
    console.print(f"  Temporal Web UI: {settings.temporal_ui_url}", highlight=False)
    console.print(f"  server: {server_url(settings)}; {ensure_local_login(settings, store)}",
                  highlight=False, soft_wrap=True)
    env = ensure_catalogue(store, settings)
    url = f"http://{settings.lb_bind_address}:{env.lb_port}/"
    console.print(f"[bold]2/3[/] application {DEMO_APP!r}, environment {env.name} "
                  f"({env.replicas} replicas), source {SAMPLE_SOURCE}", highlight=False)
    outcomes: list[ReleaseOutcome] = []
    for number in range(1, RELEASES + 1):
        console.print(f"[bold]3/3[/] release {number} of {RELEASES} (build from source, grayscale)")
        request = ReleaseRequest(app=DEMO_APP, env=env.name, requested_by=current_user())
        with request_loop(url) as answers:
            outcome = asyncio.run(run_release(request, wait=True))
        assert outcome is not None  # wait=True always returns the outcome
        outcomes.append(outcome)
        console.print(f"  {url} serves: [bold]{served(url)}[/]", highlight=False)
        console.print(f"  users' answers during the release: {dict(answers)}", highlight=False)
    console.print(f"[bold]3/3[/] release {RELEASES + 1}: a drill build answering "
                  f"{DRILL_ERROR_PERCENT}% of requests with 500, under a request loop")
    run_drill(settings, store, env, url)
    console.print(f"  {url} serves: [bold]{served(url)}[/]", highlight=False)
    console.print()
    console.print(f"[bold green]done.[/] The app answers at {url}", highlight=False)
    console.print(f"  releases: {settings.ui_link(release_workflow_id(DEMO_APP, env.name))}",
                  highlight=False, soft_wrap=True)
    console.print(f"  try: `python -m starter status {DEMO_APP} {env.name}` (the client, "
                  "through the server)", highlight=False)
    console.print("  the stack keeps running; stop it with `python -m starter down`")
    return outcomes


