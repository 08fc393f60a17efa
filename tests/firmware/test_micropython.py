"""The firmware cases under a real MicroPython: the WebAssembly port from npm, run by node."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parents[1] / "micropython"
PACKAGE = "@micropython/micropython-webassembly-pyscript"


def _ensure_port():
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed (scripts/setup installs nodejs and npm)")
    installed = HERE / "node_modules" / PACKAGE / "package.json"
    if not installed.exists():
        npm = shutil.which("npm")
        if npm is None:
            pytest.fail("npm is not installed (scripts/setup installs nodejs and npm)")
        done = subprocess.run([npm, "install", "--no-audit", "--no-fund"], cwd=HERE, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, f"npm install failed:\n{done.stdout}\n{done.stderr}"
    return node, json.loads(installed.read_text())


def test_pinned_port_is_the_one_installed():
    _, meta = _ensure_port()
    pinned = json.loads((HERE / "package.json").read_text())["dependencies"][PACKAGE]
    assert meta["version"] == pinned


def test_firmware_cases_pass_under_micropython():
    node, _ = _ensure_port()
    done = subprocess.run([node, "run.mjs"], cwd=HERE, capture_output=True, text=True, timeout=300)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert re.search(r"^IMPL micropython .*MicroPython v1\.\d+", output, re.M), output
    summary = re.search(r"^micropython: (\d+) passed, (\d+) failed$", output, re.M)
    assert summary, output
    passed, failed = int(summary[1]), int(summary[2])
    assert failed == 0, output
    cases = sum(1 for line in output.splitlines() if line.startswith("PASS "))
    assert passed == cases >= 40
    for module in ("cases_tap", "cases_schedule", "cases_runtime", "cases_micropython"):
        assert f"PASS {module}." in output


def test_runner_reports_failures_and_micropython_refuses_cpython_only_code(tmp_path):
    """The runner is not vacuous: a failing case makes it exit 1, and code using what MicroPython lacks
    (dataclasses, typing) fails there although it passes on CPython."""
    node, _ = _ensure_port()
    extra = tmp_path / "cases_extra.py"
    extra.write_text(
        "def check_fails():\n"
        "    assert 1 == 2, 'deliberate'\n"
        "def check_dataclasses():\n"
        "    import dataclasses\n"
        "def check_typing():\n"
        "    from typing import Any\n"
        "def check_passes():\n"
        "    pass\n"
    )
    done = subprocess.run([node, "run.mjs", "check_", str(extra)], cwd=HERE, capture_output=True, text=True,
                          timeout=300)
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "FAIL cases_extra.check_fails: AssertionError: deliberate" in output
    assert "FAIL cases_extra.check_dataclasses: ImportError" in output
    assert "FAIL cases_extra.check_typing: ImportError" in output
    assert "PASS cases_extra.check_passes" in output
