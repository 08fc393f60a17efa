"""Test hosts in network namespaces on one bridge: start them, cut and heal links, block routes, tear down."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path


class LanError(Exception):
    """The LAN could not be built or changed (no root, no iproute2, a name taken); not a test failure."""

    code = "LAN_SETUP"


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(list(args), capture_output=True, text=True)
    if check and done.returncode != 0:
        hint = " -- network namespaces need root (CAP_NET_ADMIN)" if "ermission" in done.stderr else ""
        raise LanError(f"{' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}{hint}")
    return done


def available() -> str | None:
    """None if this machine lets us make namespaces, else why not."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "iproute2 (ip) is not installed"
    probe = f"jkprobe{os.getpid() % 100000}"
    result = sh("ip", "netns", "add", probe, check=False)
    if result.returncode != 0:
        return f"ip netns add refused: {result.stderr.strip()}"
    sh("ip", "netns", "del", probe, check=False)
    return None


@dataclass
class Host:
    name: str
    ns: str
    ip: str
    port_name: str  # the bridge-side veth, in the switch namespace
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)


class Lan:
    """A bridge in its own namespace, a leg for the caller's namespace, and one namespace per host.

    Names and the /24 are unique per LAN, so LANs of concurrent runs do not meet; `close()` (or leaving the
    `with` block) removes every namespace and link, also after a failure half way through."""

    def __init__(self, tag: str | None = None, rng: random.Random | None = None) -> None:
        rng = rng or random.Random()
        # Interface names may have 15 characters: "jk" + tag (7) + a suffix of up to 6 fits.
        self.tag = tag or f"{os.getpid() % 10000:04d}{rng.randrange(16 ** 3):03x}"
        used = sh("ip", "-4", "route", "show").stdout
        while True:
            net = f"10.{rng.randrange(100, 200)}.{rng.randrange(0, 256)}"
            if f"{net}." not in used:
                break
        self.net = net
        self.switch = f"jk{self.tag}sw"
        self.hosts: dict[str, Host] = {}
        self._n = 0
        self._root_leg = f"jk{self.tag}r"
        self._created: list[str] = []
        try:
            self._up()
        except BaseException:
            self.close()
            raise

    def _up(self) -> None:
        sh("ip", "netns", "add", self.switch)
        self._created.append(self.switch)
        sh("ip", "-n", self.switch, "link", "set", "lo", "up")
        sh("ip", "-n", self.switch, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", self.switch, "link", "set", "br0", "up")
        # The caller gets an address on the LAN too, to watch the hosts without joining a namespace.
        sh("ip", "link", "add", self._root_leg, "type", "veth", "peer", "name", f"{self._root_leg}p")
        sh("ip", "link", "set", f"{self._root_leg}p", "netns", self.switch)
        sh("ip", "-n", self.switch, "link", "set", f"{self._root_leg}p", "master", "br0", "up")
        sh("ip", "addr", "add", f"{self.net}.254/24", "dev", self._root_leg)
        sh("ip", "link", "set", self._root_leg, "up")

    def __enter__(self) -> Lan:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add(self, name: str) -> Host:
        self._n += 1
        ns = f"jk{self.tag}{name}"
        ip = f"{self.net}.{self._n}"
        a, b = f"jk{self.tag}{self._n}a", f"jk{self.tag}{self._n}b"
        sh("ip", "netns", "add", ns)
        self._created.append(ns)
        sh("ip", "link", "add", a, "type", "veth", "peer", "name", b)
        sh("ip", "link", "set", b, "netns", ns)
        sh("ip", "-n", ns, "link", "set", b, "name", "eth0")
        sh("ip", "link", "set", a, "netns", self.switch)
        sh("ip", "-n", self.switch, "link", "set", a, "master", "br0", "up")
        sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")
        sh("ip", "-n", ns, "link", "set", "eth0", "up", "multicast", "on")
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", ns, "route", "add", "224.0.0.0/4", "dev", "eth0")
        host = Host(name=name, ns=ns, ip=ip, port_name=a)
        self.hosts[name] = host
        return host

    def run(self, host: Host, argv: Sequence[str], log: Path) -> subprocess.Popen[bytes]:
        out = open(log, "ab")  # noqa: SIM115 - the process owns it until it exits
        proc = subprocess.Popen(["ip", "netns", "exec", host.ns, *argv], stdout=out, stderr=subprocess.STDOUT)
        host.procs.append(proc)
        return proc

    def exec(self, host: Host, argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        return sh("ip", "netns", "exec", host.ns, *argv)

    def cut(self, host: Host) -> None:
        """Unplug the host from the LAN: nothing reaches it, nothing leaves it."""
        sh("ip", "-n", self.switch, "link", "set", host.port_name, "down")

    def heal(self, host: Host) -> None:
        sh("ip", "-n", self.switch, "link", "set", host.port_name, "up")

    def block(self, host: Host, target: Host) -> None:
        """`host` can no longer reach `target` (its uplink is down); the rest of the LAN still works."""
        sh("ip", "-n", host.ns, "route", "add", "blackhole", f"{target.ip}/32")

    def unblock(self, host: Host, target: Host) -> None:
        sh("ip", "-n", host.ns, "route", "del", "blackhole", f"{target.ip}/32", check=False)

    def netem(self, host: Host, *, loss: float, delay_ms: int, jitter_ms: int) -> bool:
        """Loss and delay on both directions of the host's link with `tc netem`; False when this kernel has
        no netem qdisc (the faults harness then shapes datagrams in user space)."""
        spec = ["netem", "loss", f"{loss}%", "delay", f"{delay_ms}ms", f"{jitter_ms}ms"]
        try:
            self.exec(host, ["tc", "qdisc", "replace", "dev", "eth0", "root", *spec])
        except LanError as exc:
            if "unknown" in str(exc).lower():
                return False
            raise
        sh("ip", "netns", "exec", self.switch, "tc", "qdisc", "replace", "dev", host.port_name, "root", *spec)
        return True

    def has_netem(self) -> bool:
        done = sh("ip", "netns", "exec", self.switch, "tc", "qdisc", "add", "dev", "lo", "root", "netem",
                  "delay", "1ms", check=False)
        if done.returncode == 0:
            sh("ip", "netns", "exec", self.switch, "tc", "qdisc", "del", "dev", "lo", "root", check=False)
        return done.returncode == 0

    def kill(self, host: Host, sig: int = signal.SIGKILL) -> None:
        for proc in host.procs:
            if proc.poll() is None:
                proc.send_signal(sig)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        host.procs.clear()

    def close(self) -> None:
        for host in self.hosts.values():
            self.kill(host, signal.SIGTERM)
        sh("ip", "link", "del", self._root_leg, check=False)
        for ns in reversed(self._created):
            sh("ip", "netns", "del", ns, check=False)
        self._created.clear()


def python() -> str:
    return sys.executable
