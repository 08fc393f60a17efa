"""Start a demo hub in its own process and a headless Chromium driven by Selenium, for the dashboard tests."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from tests.ports import free_tcp

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
DAY = "2026-03-02"  # a Monday: the demo hub's clock is set to it, so every run shows the same day


class DemoProcess:
    """`python -m hub.demo` on a free port with its clock set to DAY, waited on until the simulated day is done."""

    def __init__(self, data_dir: Path, *, speed: float = 20000, duration: float = 3600) -> None:
        self.port = free_tcp()
        self.data_dir = data_dir
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hub.demo", "--port", str(self.port), "--data-dir", str(data_dir),
             "--clock", f"{DAY}T04:00+07:00 x{speed:g}", "--duration", str(duration)],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=10) as resp:
            return json.loads(resp.read())

    def wait_day_done(self, stalled_s: float = 90, limit_s: float = 900) -> dict[str, Any]:
        """Wait for the demo's day to end. On a busy machine the day plays slower, so what fails the wait is
        the demo making no progress (no new record, no simulated time) for `stalled_s`, not the clock."""
        started = time.monotonic()
        moved_at = started
        last: Any = None
        seen: tuple[Any, ...] = ()
        while time.monotonic() - moved_at < stalled_s and time.monotonic() - started < limit_s:
            if self.proc.poll() is not None:
                raise RuntimeError(f"demo exited with {self.proc.returncode}: {self.proc.stdout.read() if self.proc.stdout else ''}")
            try:
                last = self.get("/api/demo")
                if last["day_done"]:
                    return last  # type: ignore[no-any-return]
                progress = (last["pushed"], last["sim_time"], last["remaining"])
                if progress != seen:
                    seen, moved_at = progress, time.monotonic()
            except OSError:
                pass
            time.sleep(0.3)
        raise TimeoutError(f"demo day not done: no progress for {stalled_s} s (after "
                           f"{time.monotonic() - started:.0f} s); last status {last}")

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.stdout.read() if self.proc.stdout else ""


def browser(width: int = 1400, height: int = 1000) -> tuple[webdriver.Chrome, Callable[[], None]]:
    """A fresh headless Chromium with its own profile; returns the driver and its clean-up."""
    profile = tempfile.mkdtemp(prefix="jejak-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                f"--user-data-dir={profile}", f"--window-size={width},{height}"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)

    def close() -> None:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)

    return driver, close


def digits(text: str) -> int:
    only = "".join(ch for ch in text if ch.isdigit())
    if not only:
        raise ValueError(f"expected a number, got {text!r}")
    return int(only)

