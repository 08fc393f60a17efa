"""`ledger` is sans-I/O: importing it in a fresh interpreter loads no storage, network or event loop module."""

from __future__ import annotations

import json
import subprocess
import sys

FORBIDDEN = ("lmdb", "aiocoap", "zeroconf", "asyncio", "socket", "psycopg", "aiohttp", "select", "selectors")


def test_importing_ledger_loads_no_io_modules() -> None:
    code = ("import json, sys, ledger, ledger.bundle, ledger.checkpoint, ledger.merkle, ledger.chain, "
            "ledger.enroll, ledger.legacy, ledger.sync; "
            "print(json.dumps(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(json.loads(out.stdout))
    assert "ledger.record" in loaded  # the probe really imported the package
    bad = sorted(m for m in loaded if m.split(".")[0] in FORBIDDEN)
    assert bad == [], f"ledger pulled in I/O modules: {bad}"
