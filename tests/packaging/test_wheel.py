"""The wheel as a user gets it: built from the tree, installed (not editable) into a fresh venv, then run.

The edge's install is checked first, before the hub's extra is added to the same venv: its dependency set
must leave out the hub's numerical stack and stay small enough for a Pi's SD card.
"""

from __future__ import annotations

import json
import queue
import re
import signal
import subprocess
import threading
import time
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import Install, _clean_env

HUB_ONLY = ("numpy", "scipy", "pandas", "statsmodels", "patsy", "pillow", "qrcode", "prometheus_client")
EDGE_BUDGET_BYTES = 60 * 1024 * 1024


class Running:
    """A command whose output lines are read on a thread, so a test can wait for a line with a deadline."""

    def __init__(self, argv: list[str], cwd: Path) -> None:
        self.proc = subprocess.Popen(argv, cwd=cwd, env=_clean_env(), stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(line)
        self._queue.put(None)

    def wait_for(self, matches: Callable[[str], bool], timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._queue.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                break
            self.lines.append(line)
            if matches(line):
                return line
        self.proc.kill()
        raise AssertionError("expected line not seen; output:\n" + "".join(self.lines[-40:]))

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()


def _json_line(line: str) -> dict[str, object]:
    try:
        value = json.loads(line)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def test_wheel_holds_the_package_data(wheel_install: Install) -> None:
    names = set(zipfile.ZipFile(wheel_install.wheel).namelist())
    for path in ("hub/static/index.html", "hub/static/app.js", "hub/static/app.css", "hub/static/indonesia.geojson",
                 "hub/static/verify.html", "hub/static/verify/noble.js", "hub/static/verify/bundle.js",
                 "hub/static/verify/i18n.js",
                 "hub/static/verify/LICENSE-noble.txt", "hub/markets/data/ceilings.json", "hub/markets/data/lexicon_id.json",
                 "hub/markets/data/macro_fx.csv", "firmware/README.md"):
        assert path in names, f"{path} missing from {wheel_install.wheel.name}"
    assert not any(n.startswith("tests/") for n in names), "the test tree must not be installed"


def test_edge_install_leaves_out_the_hub_stack(wheel_install: Install) -> None:
    packages = wheel_install.edge_packages
    assert "jejak" in packages
    assert {"cbor2", "cryptography", "lmdb", "aiocoap", "zeroconf"} <= set(packages)
    assert not set(HUB_ONLY) & set(packages), f"hub-only packages in the edge install: {set(HUB_ONLY) & set(packages)}"
    size = wheel_install.edge_bytes
    assert size < EDGE_BUDGET_BYTES, f"edge install is {size / 1e6:.1f} MB of site-packages, budget 60 MiB"
    print(f"edge install: {len(packages)} packages, {size / 1e6:.1f} MB: {sorted(packages)}")


def test_edge_runs_from_the_wheel(wheel_install: Install, tmp_path: Path) -> None:
    config = tmp_path / "edge.toml"
    config.write_text(f'site = "dapur-wheel"\ndata_dir = "{tmp_path / "edge"}"\n'
                      '[coap]\nhost = "127.0.0.1"\nport = 0\n'
                      '[http]\nenabled = true\nport = 0\n'
                      '[sync]\nmdns = false\n')
    edge = Running([str(wheel_install.bin / "jejak"), "edge", "run", "--config", str(config)], cwd=tmp_path)
    ready = _json_line(edge.wait_for(lambda line: _json_line(line).get("msg") == "ready"))
    assert ready.get("site") == "dapur-wheel" or "dapur-wheel" in json.dumps(ready)
    assert edge.stop() == 0
    assert (tmp_path / "edge" / "device.key").exists()


def test_hub_runs_from_the_wheel_with_its_dashboard(wheel_install: Install, tmp_path: Path) -> None:
    wheel_install.add_extra("hub")
    config = tmp_path / "hub.toml"
    config.write_text(f'data_dir = "{tmp_path / "hub"}"\nhttp_port = 0\ncoap_port = 0\nmdns = false\n'
                      f'[store]\npath = "{tmp_path / "hub" / "store"}"\n')
    hub = Running([str(wheel_install.bin / "jejak"), "hub", "run", "--config", str(config)], cwd=tmp_path)
    line = hub.wait_for(lambda text: '"http": "http' in text)  # the hub's "started" log line, JSON as every line
    url = json.loads(line)["http"]
    try:
        with urllib.request.urlopen(url + "/", timeout=10) as resp:
            assert b"<html" in resp.read().lower()
        with urllib.request.urlopen(url + "/static/app.js", timeout=10) as resp:
            assert resp.status == 200 and len(resp.read()) > 1000
        with urllib.request.urlopen(url + "/verify", timeout=10) as resp:
            assert resp.status == 200 and b"JejakNoble" in resp.read()
    finally:
        assert hub.stop() == 0


@pytest.mark.timeout(600)
def test_demo_plays_a_day_from_the_wheel(wheel_install: Install, tmp_path: Path) -> None:
    wheel_install.add_extra("hub")
    demo = subprocess.run([str(wheel_install.bin / "jejak"), "demo", "--once", "--port", "0",
                           "--data-dir", str(tmp_path / "demo")], cwd=tmp_path, env=_clean_env(),
                          capture_output=True, text=True, timeout=540)
    assert demo.returncode == 0, demo.stdout[-2000:] + demo.stderr[-4000:]
    assert "ceilings" not in demo.stderr  # the market data files were found in the installed package
    # The devices sent the markets' past days late, all at 17:00: the summary is read once the backlog window
    # those days wait in has closed, and their prices are final.
    closed = re.search(r"^demo: 19:\d\d WIB, the markets' backlog window closed: (\d+) prices judged final$",
                       demo.stdout, re.MULTILINE)
    assert closed is not None and int(closed.group(1)) > 0, demo.stdout[-2000:]
    summary = json.loads(demo.stdout.splitlines()[-1])
    assert summary["demo"]["day_done"] and summary["summary"]["markets"]["observations"] > 0


def test_example_from_the_wheel_writes_where_it_runs_and_verifies(wheel_install: Install, tmp_path: Path) -> None:
    """`jejak example` writes docs/examples/ as the README says: from a wheel that is under the current directory
    (it wrote into site-packages/docs/, or stopped on NO_PERMISSION for a user who may not write /opt/jejak)."""
    done = subprocess.run([str(wheel_install.bin / "jejak"), "example"], cwd=tmp_path, env=_clean_env(),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    written = sorted(p.name for p in (tmp_path / "docs" / "examples").iterdir())
    assert written == ["example-older.jejak", "example.jejak"]
    assert not (wheel_install.site_packages() / "docs").exists()
    check = subprocess.run([str(wheel_install.bin / "jejak-verify"), "docs/examples/example.jejak", "--against",
                            "docs/examples/example-older.jejak"], cwd=tmp_path, env=_clean_env(),
                           capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stdout + check.stderr
    # In Indonesian, from the words file installed with the page (hub/static/verify/i18n.js).
    said = subprocess.run([str(wheel_install.bin / "jejak-verify"), "docs/examples/example.jejak", "--lang", "id"],
                          cwd=tmp_path, env=_clean_env(), capture_output=True, text=True, timeout=120)
    assert said.returncode == 0, said.stdout + said.stderr
    assert "TERVERIFIKASI: 17 catatan, 3 checkpoint, 23 tanda terima" in said.stdout.splitlines()
