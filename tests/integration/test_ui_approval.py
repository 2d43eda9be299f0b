"""A team lead approves from the real Temporal Web UI, in a real browser.

Headless Chromium (Debian's ``chromium`` + ``chromium-driver``, driven by Selenium) opens the
dev server's Web UI on the waiting release, reads in its details what to send, and sends the
``approve`` signal through More Actions → Send a Signal, with the JSON input uploaded the way
a person would paste it. First with the requester's own approval token: refused, the refusal
shown in the UI and in ``slipway status``, the release still waiting. Then with the lead's
token: the release rolls out on the real Docker engine behind HAProxy. Screenshots of both
are kept in the test's temporary directory.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import docker
import httpx
import pytest
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.wait import WebDriverWait
from temporalio.testing import WorkflowEnvironment

from catalogue.store import Store
from schemas.models import ReleaseRequest
from schemas.settings import Settings
from starter.service.catalogue import add_env, mark_ready, register_app
from starter.service.controls import approval_proof
from starter.service.releases import follow, release_status, start_release, validate_release
from starter.service.tokens import create_token
from tests.integration.conftest import UI_PORT
from tests.integration.conftest import _temporal_cli as temporal_cli
from tests.integration.test_gray_docker import lb_url
from tests.integration.test_release_docker import SAMPLE
from tests.support.browser import headless_chromium
from tests.support.server import client_env, slipway_server
from tests.support.server import slipway as run_client
from workflows.release import ReleaseWorkflow

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
APP = "desk"
ENV = "prod@local"


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    with headless_chromium("1400,1000") as driver:
        yield driver


@pytest.fixture
def cleanup(docker_client: docker.DockerClient) -> Iterator[None]:
    yield
    for container in docker_client.containers.list(all=True,
                                                   filters={"label": f"slipway.app={APP}"}):
        container.remove(force=True)


def page(driver: WebDriver, run: tuple[str, str]) -> None:
    """The run's page, as the CLI's UI link opens it (reloaded if the UI stumbles)."""
    workflow_id, run_id = run
    url = (f"http://127.0.0.1:{UI_PORT}/namespaces/default/workflows/"
           f"{quote(workflow_id, safe='')}/{run_id}/history")
    for _attempt in range(3):
        driver.get(url)
        try:
            WebDriverWait(driver, 20).until(
                lambda d: workflow_id in d.find_element(By.TAG_NAME, "body").text)
            return
        except TimeoutException:
            continue
    raise AssertionError(f"the Web UI did not show {workflow_id} at {url}")


def button(driver: WebDriver, text: str) -> WebElement:
    def visible(d: WebDriver) -> WebElement | None:
        return next((b for b in d.find_elements(By.TAG_NAME, "button")
                     if b.is_displayed() and b.text.strip() == text), None)

    found = WebDriverWait(driver, 15).until(visible)
    assert found is not None
    return found


def visible(driver: WebDriver, css: str) -> WebElement | None:
    return next((el for el in driver.find_elements(By.CSS_SELECTOR, css) if el.is_displayed()),
                None)


def signal_form(driver: WebDriver) -> WebElement | None:
    """The open Send a Signal dialog, if there is one."""
    return next((el for el in driver.find_elements(By.CSS_SELECTOR, "dialog, [role=dialog]")
                 if el.is_displayed() and "Send a Signal" in el.text), None)


def open_signal_form(driver: WebDriver) -> WebElement:
    """More Actions → Send a Signal; the open form. The page may still be wiring its
    handlers when first shown: a click that opens nothing is made again."""
    for _attempt in range(5):
        button(driver, "More Actions").click()
        try:
            item = WebDriverWait(driver, 3).until(
                lambda d: visible(d, "[data-testid=signal-button]"))
            assert item is not None
            item.click()
            form = WebDriverWait(driver, 3).until(lambda d: signal_form(d))
            assert form is not None
            return form
        except TimeoutException:
            driver.find_element(By.TAG_NAME, "body").send_keys(Keys.ESCAPE)
            time.sleep(1)
    raise AssertionError("the Web UI's Send a Signal form did not open")


def choose_signal(driver: WebDriver, form: WebElement, name: str) -> None:
    """Pick the signal from the list the UI offers once a worker has told it the workflow's
    signals (as ours does), or type its name where it offers a text field."""
    def either(d: WebDriver) -> WebElement | None:
        return (visible(d, "[data-testid=signal-select-button]")
                or visible(d, "input#signal-name"))

    control = WebDriverWait(driver, 10).until(either)
    assert control is not None
    if control.tag_name == "input":
        control.send_keys(name)
        return
    control.click()

    def option(d: WebDriver) -> WebElement | None:
        return next((el for el in d.find_elements(By.CSS_SELECTOR,
                                                  "#signal-select-select li, [role=option]")
                     if el.is_displayed() and el.text.strip() == name), None)

    found = WebDriverWait(driver, 10).until(option)
    assert found is not None
    found.click()


def send_signal(driver: WebDriver, run: tuple[str, str], name: str, data: dict[str, str],
                upload: Path, screenshot: Path) -> None:
    """More Actions → Send a Signal: the name typed, the JSON input uploaded, Submit."""
    page(driver, run)
    form = open_signal_form(driver)
    choose_signal(driver, form, name)
    upload.write_text(json.dumps(data))
    # The JSON goes in as a person's paste would: uploaded into the Data editor.
    form.find_element(By.CSS_SELECTOR, "input[type=file]").send_keys(str(upload))
    WebDriverWait(driver, 10).until(lambda d: data["user"] in form.text)
    driver.save_screenshot(str(screenshot))
    button(driver, "Submit").click()
    WebDriverWait(driver, 15).until(lambda d: not form.is_displayed())


def page_text(driver: WebDriver) -> str:
    """The page's visible text, with that of its iframes (the UI renders the summary and the
    details, which are Markdown, inside sandboxed frames)."""
    texts = [driver.find_element(By.TAG_NAME, "body").text]
    for frame in driver.find_elements(By.TAG_NAME, "iframe"):
        driver.switch_to.frame(frame)
        try:
            texts.append(driver.find_element(By.TAG_NAME, "body").text)
        finally:
            driver.switch_to.default_content()
    return "\n".join(texts)


def shown_in_ui(driver: WebDriver, run: tuple[str, str], text: str, screenshot: Path) -> bool:
    """Whether ``text`` appears on the workflow's page (its current details) or on its User
    Metadata tab, within a few refreshes."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        page(driver, run)
        for tab in ("", "User Metadata"):
            if tab:
                next(link for link in driver.find_elements(By.TAG_NAME, "a")
                     if link.text.strip() == tab).click()
            time.sleep(1)
            # Compared without whitespace: the UI wraps long lines, inside code spans too.
            if "".join(text.split()) in "".join(page_text(driver).split()):
                driver.save_screenshot(str(screenshot))
                return True
    driver.save_screenshot(str(screenshot))
    return False


async def test_a_lead_approves_from_the_web_ui_and_the_requesters_own_token_is_refused(
    temporal: WorkflowEnvironment, running_worker: None, settings: Settings, store: Store,
    browser: WebDriver, cleanup: None, tmp_path: Path,
) -> None:
    register_app(store, APP, category="in-house", tier="core", owners=["ana"],
                 approvers=["lead", "ana"], source=str(SAMPLE), description="", actor="ana")
    mark_ready(store, APP, "ana")
    add_env(store, APP, "prod", cluster="local", replicas=1, cpu="", memory="", ports=[8080],
            env_vars={}, runtime="docker", namespace="default", health_path="/healthz",
            settings=settings, actor="ana", strategy="recreate", approval="required")
    _, ana_token = create_token(store, "ana")
    _, lead_token = create_token(store, "lead", roles=["approve"])
    request, summary = validate_release(store, ReleaseRequest(
        app=APP, env="prod", version_label="1.0.0", requested_by="ana"))
    handle = (await start_release(temporal.client, settings, request, summary)).handle
    deadline = time.monotonic() + 120
    while (await handle.query(ReleaseWorkflow.status)).awaiting != "approval":
        assert time.monotonic() < deadline, "the release never asked for approval"
        await asyncio.sleep(0.2)
    run = (handle.id, (await handle.describe()).run_id)
    print(f"\nscreenshots in {tmp_path}")

    # The page tells the approver what to send.
    def details() -> bool:
        return shown_in_ui(browser, run, "print-token", tmp_path / "0-details.png")

    assert await asyncio.to_thread(details)

    # ana requested the release: her own token is refused, and the UI says why.
    secret = settings.approval_signing_secret()  # the worker's, shared through the state dir
    own = (await approval_proof(temporal.client, secret, ana_token, "ana", APP, ENV, "approve",
                                via="signal")).proof

    def signal_own() -> bool:
        send_signal(browser, run, "approve",
                    {"user": "ana", "comment": "mine", "token": own},
                    tmp_path / "own.json", tmp_path / "1-own-token-form.png")
        return shown_in_ui(browser, run, "approval by ana refused: four eyes",
                           tmp_path / "2-own-token-refused.png")

    assert await asyncio.to_thread(signal_own)
    _, status = await release_status(temporal.client, APP, ENV)
    assert status is not None and status.awaiting == "approval"
    assert any(event.message.startswith("approval by ana refused: four eyes")
               for event in status.events)

    # lead's token: the release rolls out on the real engine.
    valid = (await approval_proof(temporal.client, secret, lead_token, "lead", APP, ENV,
                                  "approve", via="signal")).proof

    def signal_lead() -> None:
        send_signal(browser, run, "approve",
                    {"user": "lead", "comment": "ship it", "token": valid},
                    tmp_path / "lead.json", tmp_path / "3-lead-form.png")

    await asyncio.to_thread(signal_lead)
    outcome = await follow(handle, lambda _s: None)
    _, final = await release_status(temporal.client, APP, ENV)
    assert final is not None
    assert "approved by lead (via signal, token lead): ship it" in [
        event.message for event in final.events]

    def finished() -> bool:
        return shown_in_ui(browser, run, "succeeded", tmp_path / "4-approved.png")

    assert await asyncio.to_thread(finished)
    assert outcome.baseline_version == 1
    assert httpx.get(lb_url(store), timeout=5).text.strip() == "sample-app 1.0.0"
    screenshots = sorted(path.name for path in tmp_path.glob("*.png"))
    assert len(screenshots) == 5, screenshots


async def test_temporal_workflow_signal_approves_with_a_printed_token_and_without_is_refused(
    temporal: WorkflowEnvironment, running_worker: None, settings: Settings, store: Store,
    cleanup: None, tmp_path: Path,
) -> None:
    register_app(store, APP, category="in-house", tier="core", owners=["ana"],
                 approvers=["lead"], source=str(SAMPLE), description="", actor="ana")
    mark_ready(store, APP, "ana")
    add_env(store, APP, "prod", cluster="local", replicas=1, cpu="", memory="", ports=[8080],
            env_vars={}, runtime="docker", namespace="default", health_path="/healthz",
            settings=settings, actor="ana", strategy="recreate", approval="required")
    _, lead_token = create_token(store, "lead", roles=["approve"])
    request, summary = validate_release(store, ReleaseRequest(
        app=APP, env="prod", version_label="1.0.0", requested_by="ana"))
    handle = (await start_release(temporal.client, settings, request, summary)).handle
    deadline = time.monotonic() + 120
    while (await handle.query(ReleaseWorkflow.status)).awaiting != "approval":
        assert time.monotonic() < deadline, "the release never asked for approval"
        await asyncio.sleep(0.2)

    def signal(data: str) -> None:
        subprocess.run([temporal_cli(), "workflow", "signal", "--address",
                        temporal.client.service_client.config.target_host,
                        "--workflow-id", handle.id, "--name", "approve", "--input", data],
                       check=True, capture_output=True, timeout=30)

    # No token: the signal is taken, the approval refused, the reason shown by `status`.
    await asyncio.to_thread(signal, json.dumps({"user": "lead", "comment": "no token"}))
    deadline = time.monotonic() + 30
    while not any("refused" in event.message
                  for event in (await handle.query(ReleaseWorkflow.status)).events):
        assert time.monotonic() < deadline, "the refusal never showed"
        await asyncio.sleep(0.2)
    def slipway(url: str, *args: str, token: str) -> str:
        """``python -m starter ARGS``, the client, as a person runs it against this test's
        server."""
        done = run_client(client_env(url, token), *args, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    _, ana_token = create_token(store, "ana")
    with slipway_server(settings, tmp_path / "server.log", SLIPWAY_TEMPORAL_ADDRESS=
                        temporal.client.service_client.config.target_host) as url:
        shown = await asyncio.to_thread(slipway, url, "status", APP, "prod", token=ana_token)
        assert "approval by lead refused: approve by lead carries no proof" in " ".join(
            shown.split())

        # The token `slipway approve --print-token` prints: the release rolls out.
        printed = await asyncio.to_thread(slipway, url, "approve", APP, "prod",
                                          "--print-token", "--comment", "from the CLI",
                                          token=lead_token)
    body = printed.strip().splitlines()[-1]
    assert lead_token not in printed and json.loads(body)["user"] == "lead"
    await asyncio.to_thread(signal, body)
    outcome = await follow(handle, lambda _s: None)
    assert outcome.baseline_version == 1
    _, final = await release_status(temporal.client, APP, ENV)
    assert final is not None and "approved by lead (via signal, token lead): from the CLI" in [
        event.message for event in final.events]
