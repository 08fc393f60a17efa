"""`jejak mbg` against a running demo hub: the CLI shows what the API says."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request

import pytest

from tests.ports import free_tcp
from tests.wait import wait_until
from tools.mbg import main


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    port = free_tcp()
    data = tmp_path_factory.mktemp("demo") / "var"
    proc = subprocess.Popen([sys.executable, "-m", "tools.cli", "demo", "--port", str(port), "--data-dir",
                             str(data), "--speed", "20000", "--duration", "120"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        # Every answer folds in the records accepted before it, so once the day is pushed the API is current.
        wait_until(lambda: _api(url, "/api/demo").get("day_done"), 90, what="the demo day to finish",
                   step=0.5, tolerate=(OSError,))
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _api(url: str, path: str):
    with urllib.request.urlopen(f"{url}{path}", timeout=10) as resp:
        return json.loads(resp.read())


def test_deliveries_and_exceptions_match_the_api(demo, capsys):
    assert main(["--hub-url", demo, "deliveries"]) == 0
    out = capsys.readouterr().out
    totals = _api(demo, "/api/mbg/deliveries")["totals"]
    assert totals.get("late", 0) >= 1 and f"late {totals['late']}" in out
    assert main(["--hub-url", demo, "--json", "late"]) == 0
    late = json.loads(capsys.readouterr().out)
    assert len(late["late"]) == totals["late"]
    assert main(["--hub-url", demo, "--json", "short"]) == 0
    assert len(json.loads(capsys.readouterr().out)["short"]) == totals.get("short", 0)


def test_container_history_and_unknown_list(demo, capsys):
    tag = _api(demo, "/api/mbg/containers")["containers"][0]["tag"]
    assert main(["--hub-url", demo, "--json", "container", tag]) == 0
    assert tag in capsys.readouterr().out
    assert main(["--hub-url", "http://127.0.0.1:9", "summary"]) == 2
    assert "cannot reach the hub" in capsys.readouterr().err


def test_epcis_export_is_served(demo, capsys):
    assert main(["--hub-url", demo, "--json", "epcis"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["type"] == "EPCISDocument" and doc["epcisBody"]["eventList"]
