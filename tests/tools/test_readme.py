"""The README's help block is what the tool really prints, and its two set-up commands exist."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_verify_help_block_matches_the_tool():
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"\$ jejak-verify --help\n(.*?)\n```", readme, re.S)
    assert block is not None, "README lost its jejak-verify --help block"
    real = subprocess.run([sys.executable, "-m", "tools.verify", "--help"], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "100"}, check=True).stdout.rstrip("\n")
    assert block.group(1).replace("jejak-verify", "verify.py") == real.replace("jejak-verify", "verify.py")


def test_setup_commands_exist_and_ci_calls_the_test_command():
    readme = (ROOT / "README.md").read_text()
    assert "scripts/demo" in readme and "scripts/test" in readme
    for script in ("scripts/demo", "scripts/test", "scripts/setup"):
        assert os.access(ROOT / script, os.X_OK), f"{script} is not executable"
    assert "scripts/test" in (ROOT / ".ci" / "run").read_text()
