"""Fixtures: one demo hub process for the module's tests, a fresh headless Chromium per test."""

from __future__ import annotations

import pytest

from .harness import DemoProcess, browser


@pytest.fixture(scope="package")
def demo(tmp_path_factory):
    proc = DemoProcess(tmp_path_factory.mktemp("demo") / "var")
    try:
        proc.wait_day_done()
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def driver():
    drv, close = browser()
    try:
        yield drv
    finally:
        close()
