"""deploy/: the systemd units pass systemd's own checker, the example configs load through the real loaders,
and the daemons speak sd_notify (readiness, watchdog pets only while healthy, stopping)."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from edge import config as edge_config
from edge.daemon import EdgeDaemon
from hub import config as hub_config
from hub.markets.webhooks import RetryPolicy
from hub.mbg import load_plan
from tests.edge.common import edge_config as make_edge_config
from tests.wait import wait_for, wait_until

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
UNITS = ("jejak-edge.service", "jejak-hub.service")


def _verify(units: list[Path]) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("systemd-analyze")
    assert tool, "systemd-analyze missing: scripts/setup installs the systemd package"
    return subprocess.run([tool, "verify", *map(str, units)], capture_output=True, text=True, timeout=120)


def _runnable_copy(unit: str, dest: Path, edit: tuple[str, str] | None = None) -> Path:
    """The unit with ExecStart pointing at a binary this machine has (verify checks that it exists)."""
    text = (DEPLOY / unit).read_text().replace("/opt/jejak/bin/jejak", "/bin/true")
    if edit:
        text = text.replace(*edit)
    path = dest / unit
    path.write_text(text)
    return path


def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    result = _verify([_runnable_copy(unit, tmp_path) for unit in UNITS])
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr
    # the checker does bite: an unknown key is reported
    bad = tmp_path / "bad"
    bad.mkdir()
    result = _verify([_runnable_copy(UNITS[0], bad, ("Type=notify", "Tpye=notify"))])
    assert "Unknown key" in result.stderr


@pytest.mark.parametrize("unit", UNITS)
def test_units_are_hardened_notify_services(unit: str) -> None:
    lines = {line.strip() for line in (DEPLOY / unit).read_text().splitlines()}
    for needed in ("Type=notify", "Restart=always", "NoNewPrivileges=true", "ProtectSystem=strict",
                   "CapabilityBoundingSet=", "PrivateTmp=true"):
        assert needed in lines, f"{unit}: {needed} missing"
    assert any(line.startswith("WatchdogSec=") for line in lines)
    assert any(line.startswith("StateDirectory=jejak/") for line in lines)
    assert any(line.startswith("User=jejak") for line in lines)
    if unit == "jejak-edge.service":  # the buses it needs and nothing else
        assert "DevicePolicy=closed" in lines
        allowed = {line.split("=", 1)[1].split()[0] for line in lines if line.startswith("DeviceAllow=")}
        assert allowed == {"char-i2c", "char-spi", "char-gpiochip", "char-ttyAMA", "char-ttyS", "char-ttyUSB",
                           "char-ttyACM", "char-usb_device"}
    else:
        assert "PrivateDevices=true" in lines


def test_the_hub_unit_stops_on_the_exits_a_restart_cannot_mend() -> None:
    """A wrong config or plan, a config or plan file that is not there, a bad key file, a store of another key or
    older than the last signed checkpoint, and an unreadable last-checkpoint.json: each is refused again on every
    start, so the unit stops on them."""
    from hub.app import KeyFileError
    from hub.lastsigned import LastCheckpointFileError, OlderStore
    from hub.mbg import PlanError
    from hub.service import WrongHubKey
    from ledger.failures import MissingFile

    lines = (DEPLOY / "jejak-hub.service").read_text().splitlines()
    listed = next(line.split("=", 1)[1].split() for line in lines if line.startswith("RestartPreventExitStatus="))
    wanted = (hub_config.ConfigError, KeyFileError, PlanError, MissingFile, WrongHubKey, OlderStore,
              LastCheckpointFileError)
    assert sorted(map(int, listed)) == sorted(cls.exit_code for cls in wanted)


def test_the_edge_unit_stops_on_the_exits_a_restart_cannot_mend() -> None:
    """A wrong config, a bad key file, a data dir of another device (or whose key is missing) and a config file
    that is not there: each is refused again on every start, so the unit stops on them."""
    from edge.errors import ConfigError, KeyFileError, WrongDevice
    from ledger.failures import MissingFile

    lines = (DEPLOY / "jejak-edge.service").read_text().splitlines()
    listed = next(line.split("=", 1)[1].split() for line in lines if line.startswith("RestartPreventExitStatus="))
    assert sorted(map(int, listed)) == sorted(cls.exit_code for cls in (ConfigError, KeyFileError, WrongDevice,
                                                                        MissingFile))


def test_example_configs_load_through_the_real_loaders(tmp_path: Path) -> None:
    edge = edge_config.load(DEPLOY / "edge.toml")
    assert edge.reader.driver == "pn532_i2c" and edge.feedback.driver == "gpio"
    assert [s.driver for s in edge.sensors] == ["bme280", "dht22"]
    assert edge.data_dir == "/var/lib/jejak/edge" and not edge.sim.enabled
    hub = hub_config.load(DEPLOY / "hub.toml")
    assert hub.store.backend == "postgres" and hub.mbg_plan == "/etc/jejak/mbg.toml"
    # In the field: with OSCORE off any client on the LAN had the edge sign scans it made up, and read every
    # log's records from the edge and the hub over CoAP.
    assert edge.security.oscore and hub.security.oscore
    # Its commented examples hold too: uncommented, they load, and the retry block says the defaults.
    settings = re.compile(r"# ?(\[\[?\w+\]\]?(?: .*)?|\w+ = .*)")
    lines = [m.group(1) if (m := settings.fullmatch(line)) else line
             for line in (DEPLOY / "hub.toml").read_text().splitlines()]
    assert "[webhook_retry]" in lines and any(line.startswith("[[webhooks]]") for line in lines)
    (tmp_path / "hub.toml").write_text("\n".join(lines) + "\n")
    every = hub_config.load(tmp_path / "hub.toml")
    assert every.webhook_retry == RetryPolicy() and every.webhook_attempts == 4
    assert [s.id for s in every.subscribers()] == ["ops"] and every.security.read == ("*:self",)
    plan = load_plan(DEPLOY / "mbg.toml")
    assert [s.id for s in plan.schools] == ["SDN-001", "SMPN-002"]
    assert {s.kitchen for s in plan.schools} == {k.id for k in plan.kitchens}
    assert plan.kitchens_listing("5a000001") == ("SPPG-001",)  # deploy/edge.toml's staff card is on the roster


class NotifySocket:
    """A stand-in for systemd's notification socket: collects the datagrams a daemon sends."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            self.messages.append((time.monotonic(), data.decode()))

    def count(self, state: str, since: float = 0.0) -> int:
        return sum(1 for at, msg in self.messages if msg == state and at >= since)

    def mark(self) -> int:
        """How many datagrams came before one sent now: sent here and waited for, so every datagram sent before it
        has been read too (a time taken when a datagram is read is late by however long this thread waited)."""
        token = f"MARK={len(self.messages)}:{time.monotonic()}"
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto(token.encode(), str(self.path))
        wait_until(lambda: any(msg == token for _, msg in self.messages), what="the mark to be read")
        return next(i for i, (_, msg) in enumerate(self.messages) if msg == token)

    def count_after(self, state: str, mark: int) -> int:
        return sum(1 for _, msg in self.messages[mark:] if msg == state)

    def wait(self, state: str, n: int = 1, timeout: float = 30.0, since: float = 0.0) -> None:
        deadline = time.monotonic() + timeout
        while self.count(state, since) < n:
            assert time.monotonic() < deadline, f"{state} x{n} not received: {self.messages}"
            time.sleep(0.02)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


def test_edge_process_notifies_ready_pets_and_stopping(tmp_path: Path) -> None:
    sock = NotifySocket(tmp_path / "notify")
    config = tmp_path / "edge.toml"
    config.write_text(f'data_dir = "{tmp_path / "edge"}"\nsensors = []\n[coap]\nhost = "127.0.0.1"\nport = 0\n'
                      '[sync]\nmdns = false\n')
    env = {**os.environ, "NOTIFY_SOCKET": str(sock.path), "WATCHDOG_USEC": "400000", "PYTHONPATH": str(ROOT)}
    env.pop("WATCHDOG_PID", None)
    proc = subprocess.Popen([sys.executable, "-m", "edge.cli", "run", "--config", str(config)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        sock.wait("READY=1")
        sock.wait("WATCHDOG=1", n=3)  # every 0.2 s: half the interval
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        sock.wait("STOPPING=1")
    finally:
        if proc.poll() is None:
            proc.kill()
        sock.close()
    order = [msg for _, msg in sock.messages if msg != "WATCHDOG=1"]
    assert order == ["READY=1", "STOPPING=1"]


async def test_edge_is_not_petted_while_its_commit_path_is_stuck(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    sock = NotifySocket(tmp_path / "notify")
    monkeypatch.setenv("NOTIFY_SOCKET", str(sock.path))
    monkeypatch.setenv("WATCHDOG_USEC", "400000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    daemon = EdgeDaemon(make_edge_config(tmp_path / "edge"))
    await daemon.start()
    stuck = threading.Event()
    try:
        await asyncio.to_thread(sock.wait, "WATCHDOG=1", 2)
        commit = daemon.commit
        assert commit is not None
        # A pet whose check began before the hang may still land, however late a busy machine runs it; the checks
        # are made one after another, so once a check that began after the hang is answered, none can.
        hung = False
        checks_after: list[bool] = []
        alive = commit.alive

        async def check(timeout: float) -> bool:
            after = hung
            answer = await alive(timeout)
            if after:
                checks_after.append(answer)
            return answer

        monkeypatch.setattr(commit, "alive", check)
        # the commit writer hangs, as in an fsync on a failing SD card
        commit._executor.submit(stuck.wait, 30)
        hung = True
        await wait_for(lambda: checks_after, what="a watchdog check begun after the hang")
        mark = await asyncio.to_thread(sock.mark)
        await asyncio.sleep(1.0)  # five pet periods (or more on a busy machine)
        assert sock.count_after("WATCHDOG=1", mark) == 0, sock.messages[mark:]
        assert not any(checks_after), checks_after
        stuck.set()
        await wait_for(lambda: sock.count_after("WATCHDOG=1", mark) >= 1, what="pets once the commit path is back")
    finally:
        stuck.set()
        await daemon.close()
        sock.close()


def test_hub_process_notifies_ready_and_stopping(tmp_path: Path) -> None:
    sock = NotifySocket(tmp_path / "notify")
    config = tmp_path / "hub.toml"
    config.write_text(f'data_dir = "{tmp_path / "hub"}"\nhttp_port = 0\ncoap_port = 0\nmdns = false\n')
    env = {**os.environ, "NOTIFY_SOCKET": str(sock.path), "WATCHDOG_USEC": "1000000", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "tools.cli", "hub", "run", "--config", str(config)], cwd=ROOT,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        sock.wait("READY=1", timeout=60)
        sock.wait("WATCHDOG=1", n=2)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        sock.wait("STOPPING=1")
    finally:
        if proc.poll() is None:
            proc.kill()
        sock.close()
