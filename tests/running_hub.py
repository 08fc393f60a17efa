"""A hub as an operator runs it, in its own process and filled with a demo day, for tests that talk HTTP to it
(the API conformance test, the hostile-input fuzz): `with demo_hub(workdir) as url: ...`."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from tests.ports import free_tcp
from tests.wait import wait_until

ROOT = Path(__file__).resolve().parents[1]


def _day_done(proc: subprocess.Popen[bytes], url: str, log: Path) -> bool:
    if proc.poll() is not None:
        raise AssertionError(f"the demo hub exited ({proc.returncode}): {log.read_text()[-2000:]}")
    with urllib.request.urlopen(url + "/api/demo", timeout=10) as resp:
        return bool(json.loads(resp.read())["day_done"])


@contextlib.contextmanager
def demo_hub(workdir: Path, *, timeout_s: float = 300) -> Iterator[str]:
    """`jejak demo` on a free port, its day played to the end (every read model has data); yields its URL."""
    port = free_tcp()
    url = f"http://127.0.0.1:{port}"
    log_path = workdir / "hub.log"
    log = log_path.open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "tools.cli", "demo", "--port", str(port), "--speed", "20000",
                             "--data-dir", str(workdir / "demo"), "--progress-s", "60"],
                            cwd=workdir, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        # A busy machine plays the day slower; what is waited for is the day being done, not a time.
        wait_until(lambda: _day_done(proc, url, log_path), timeout=timeout_s, what="the demo day",
                   tolerate=(OSError,))
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
