"""Helpers shared by the edge and CoAP tests: configs on tmp dirs, an in-process daemon, peer logs."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from coap_server.client import EdgeClient
from edge.config import CoapConfig, EdgeConfig, Limits, SimConfig, SyncConfig
from edge.daemon import EdgeDaemon
from ledger import ChainBuilder, Ed25519Signer
from tests.wait import PATIENCE


def edge_config(data_dir: Path, **changes: object) -> EdgeConfig:
    """Loopback, any free port, simulated reader driven only by /sim/tap, no sensors."""
    base: dict[str, object] = {"data_dir": str(data_dir), "coap": CoapConfig(host="127.0.0.1", port=0),
                               "sim": SimConfig(tap_interval_ms=0), "sensors": (), "site": "sppg-test",
                               "sync": SyncConfig(mdns=False)}
    base.update(changes)
    return EdgeConfig(**base)  # type: ignore[arg-type]


def small_limits(**changes: int) -> Limits:
    return Limits(**changes)


@contextlib.asynccontextmanager
async def running(config: EdgeConfig) -> AsyncIterator[tuple[EdgeDaemon, EdgeClient]]:
    daemon = EdgeDaemon(config, clock=lambda: 1_763_900_000)
    await daemon.start()
    client = EdgeClient(f"coap://127.0.0.1:{daemon.coap_port}", timeout=10)
    try:
        async with client:
            yield daemon, client
    finally:
        await daemon.close()


def peer_log(seed: int, n: int) -> tuple[Ed25519Signer, list]:
    """A peer device's log: genesis and n notes."""
    signer = Ed25519Signer.from_seed(seed.to_bytes(32, "big"))
    builder = ChainBuilder(signer, clock=lambda: 1_763_900_000, boot=1)
    return signer, [builder.genesis()] + [builder.append("note", {"text": f"peer {seed} note {i}"})
                                          for i in range(n)]


def write_config(path: Path, data_dir: Path, port: int, extra: str = "") -> Path:
    path.write_text(f'site = "sppg-test"\ndata_dir = "{data_dir}"\nsensors = []\n'
                    f'[coap]\nhost = "127.0.0.1"\nport = {port}\n{extra}')
    return path


class DaemonProcess:
    """`jejak edge run` in a subprocess; its JSON-lines log goes to a file (it survives a SIGKILL)."""

    def __init__(self, config: Path, log: Path) -> None:
        import subprocess
        import sys

        self.log_path = log
        self._fh = open(log, "ab")  # noqa: SIM115 - closed in stop()
        repo = Path(__file__).resolve().parents[2]
        self.proc = subprocess.Popen([sys.executable, "-m", "edge.cli", "run", "--config", str(config)],
                                     cwd=repo, stdout=self._fh, stderr=self._fh)

    def wait_ready(self, timeout: float = 20.0 * PATIENCE, after: int = 0) -> dict:
        # A process starting on a busy machine takes several times as long to import and open its store.
        import json
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for entry in read_log(self.log_path)[after:]:
                if entry.get("msg") == "ready":
                    return entry
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited with {self.proc.returncode}: "
                                     f"{self.log_path.read_text()[-2000:]}")
            time.sleep(0.05)
        raise AssertionError("daemon did not become ready: " + json.dumps(read_log(self.log_path)[-5:]))

    def kill(self) -> None:
        import signal

        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self._fh.close()

    def terminate(self, timeout: float = 20.0) -> int:
        import signal

        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        self._fh.close()
        return code


def read_log(path: Path) -> list[dict]:
    import json

    out = []
    for line in path.read_bytes().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue  # a line cut by SIGKILL, or a traceback
    return out


class Clocks:
    """A wall clock and a boot-time clock that tick together, and the wall clock set by hand."""

    def __init__(self, wall: float) -> None:
        self.ticks, self.offset = 1000.0, wall - 1000.0

    def tick(self, seconds: float) -> None:
        self.ticks += seconds

    def set_wall(self, wall: float) -> None:
        self.offset = wall - self.ticks

    def wall(self) -> float:
        return self.ticks + self.offset
