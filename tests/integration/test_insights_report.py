"""``slipway insights --html FILE`` through the real server and client, rendered in headless
Chromium: the report is self-contained (nothing fetched), its three charts are drawn, and the
screenshot shows the charts' colours (the blue of deployments, the red of failures)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from catalogue.store import Store
from schemas.settings import Settings
from starter.service.tokens import create_token
from tests.support.browser import headless_chromium
from tests.support.insights_history import EXPECTED, write_history
from tests.support.png import pixels
from tests.support.server import client_env, slipway, slipway_server

pytestmark = pytest.mark.integration

BLUE, RED = (0x2B, 0x6C, 0xB0), (0xC5, 0x30, 0x30)


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    with headless_chromium("1400,1200") as driver:
        yield driver


def test_the_html_report_renders_its_charts(tmp_path: Path, browser: WebDriver) -> None:
    settings = Settings(state_dir=tmp_path / "state", temporal_address="127.0.0.1:1",
                        database_url=f"sqlite:///{tmp_path / 'catalogue.db'}")
    store = Store(settings.resolved_database_url())
    write_history(store, tmp_path)
    _, token = create_token(store, "viewer", roles=["read"])
    with slipway_server(settings, tmp_path / "server.log") as url:
        env = client_env(url, token)
        report = tmp_path / "out" / "insights.html"
        report.parent.mkdir()
        done = slipway(env, "insights", "--since", "30d", "--html", str(report))
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == f"wrote {report}"
        # The same figures as JSON through the same door.
        found = json.loads(slipway(env, "insights", "--json").stdout)
        assert found["groups"][0]["change_failure_rate"] == \
            EXPECTED["all", "all"]["change_failure_rate"]
    page = report.read_text()
    assert "<script" not in page and "http://" not in page.replace(
        'xmlns="http://www.w3.org/2000/svg"', "")  # self-contained
    browser.get(report.as_uri())
    charts = browser.find_elements(By.CSS_SELECTOR, "svg.chart")
    assert [chart.get_attribute("id") for chart in charts] == ["trend", "lead-time", "failures"]
    drawn = {chart.get_attribute("id"): [
        float(bar.get_attribute("height") or 0) for bar in chart.find_elements(
            By.CSS_SELECTOR, "rect.bar")] for chart in charts}
    # Eight lead times: six of 1–4h, two of 4h–1d (bars in proportion), none elsewhere.
    lead = drawn["lead-time"]
    assert [h > 0 for h in lead] == [False, True, True, False, False, False]
    assert lead[1] == pytest.approx(3 * lead[2], rel=0.01)
    assert sum(1 for h in drawn["failures"] if h > 0) == 3  # three causes
    assert sum(1 for h in drawn["trend"] if h > 0) >= 4
    for chart in charts:  # laid out on the page, not collapsed
        assert chart.size["width"] >= 600 and chart.size["height"] >= 200
    assert browser.find_element(By.ID, "groups").text.count("\n") >= 8
    shot = tmp_path / "insights.png"
    browser.save_screenshot(str(shot))
    width, height, rgb = pixels(shot.read_bytes())
    assert (width, height) >= (1000, 800)
    seen = set(rgb)
    assert BLUE in seen and RED in seen, "the charts' bars do not show in the screenshot"
    print(f"screenshot: {shot}")
