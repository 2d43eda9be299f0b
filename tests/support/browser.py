"""Headless Chromium for the tests that look at a page (Debian's chromium and
chromium-driver, installed by scripts/bootstrap.sh)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver


@contextmanager
def headless_chromium(window: str) -> Iterator[WebDriver]:
    """A headless Chromium with a ``WIDTH,HEIGHT`` window, quit when the block ends."""
    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and chromedriver):
        pytest.fail("chromium and chromium-driver (Debian packages) are needed: .ci/run and "
                    "scripts/bootstrap.sh install them")
    options = Options()
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     f"--window-size={window}"):
        options.add_argument(argument)
    options.binary_location = chromium
    driver = webdriver.Chrome(service=Service(chromedriver), options=options)
    try:
        yield driver
    finally:
        driver.quit()
