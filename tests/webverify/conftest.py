"""Fixtures: the verifier page loaded once from file:// in headless Chromium, with the vector checks injected."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver

from tests.dashboard.harness import browser

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "hub" / "static" / "verify.html"
VECTOR_CHECKS = Path(__file__).with_name("vector_checks.js")


def wait_for(driver: webdriver.Chrome, script: str, timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = driver.execute_script(script)
        if value:
            return value
        time.sleep(0.05)
    logs = driver.get_log("browser")
    raise TimeoutError(f"page never satisfied {script!r}; browser log: {logs}")


def load(driver: webdriver.Chrome, url: str) -> None:
    driver.get(url)
    wait_for(driver, "return !!(window.Jejak && Jejak.verifyBundle && Jejak.ui && document.readyState === 'complete')")


@pytest.fixture(scope="package")
def page() -> Iterator[webdriver.Chrome]:
    driver, close = browser()
    try:
        driver.set_script_timeout(600)
        load(driver, PAGE.as_uri())
        driver.execute_script(VECTOR_CHECKS.read_text())
        yield driver
    finally:
        close()
