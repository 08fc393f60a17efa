"""Inject faults into real edge and hub processes and count what was acknowledged and lost.

Each scenario starts real daemons (`jejak hub run`, `jejak edge run`), puts them under load, breaks
something (SIGKILL, a network partition, packet loss and delay, a full disk, a corrupted store, a wrong
clock) and then checks the promise: every record that was acknowledged is still there, exactly once, and
the hub converges on every edge's log. The test suite runs the same scenarios at a reduced size.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tests.netns.harness import Lan, LanError
from tests.ports import free_coap, free_tcp, free_udp
from tests.wait import PATIENCE

REPO = Path(__file__).resolve().parents[2]
NOW = 1_763_900_000


@dataclass(slots=True, kw_only=True)
class Outcome:
    """What one scenario did and found; `lost` and `duplicated` must be 0."""

    scenario: str
    fault: str
    cycles: int
    acknowledged: int
    lost: int
    duplicated: int = 0
    seconds: float = 0.0
    figures: dict[str, Any] = field(default_factory=dict)
    command: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# -- processes ---------------------------------------------------------------------------------------------


def read_log(path: Path) -> list[dict[str, Any]]:
    """JSON lines of a daemon's log; a line cut by SIGKILL or a traceback is skipped."""
    out: list[dict[str, Any]] = []
    if not path.exists():
        return out
    for line in path.read_bytes().splitlines():
        try:
            item = json.loads(line)
        except ValueError:
            continue
        if isinstance(item, dict):
            out.append(item)
    return out


def http_json(url: str, data: bytes | None = None, timeout: float = 5.0) -> Any:
    req = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())


class Proc:
    """A daemon in a subprocess (optionally inside a network namespace), its output in a log file."""

    def __init__(self, argv: Sequence[str], log: Path, netns: str | None = None) -> None:
        self.argv = list(argv)
        self.log = log
        self.netns = netns
        self.proc: subprocess.Popen[bytes] | None = None
        self._fh: Any = None
        self.offset = 0

    def start(self) -> None:
        self.offset = len(read_log(self.log))
        self._fh = open(self.log, "ab")  # noqa: SIM115 - closed in _reap
        prefix = ["ip", "netns", "exec", self.netns] if self.netns else []
        self.proc = subprocess.Popen([*prefix, sys.executable, *self.argv], cwd=REPO, stdout=self._fh,
                                     stderr=self._fh)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no flush, no goodbye."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self._reap()

    def stop(self, timeout: float = 20.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._reap()
        return self.proc.returncode

    def _reap(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-1500:]
        except OSError:
            return ""


class HubProc(Proc):
    """`jejak hub run` with its own data dir, auto-approving enrollment, no mDNS."""

    def __init__(self, root: Path, *, host: str = "127.0.0.1", netns: str | None = None,
                 map_size: int | None = None, http_host: str | None = None, checkpoint_interval: float = 0.5,
                 command: Sequence[str] = ("-m", "tools.cli", "hub", "run")) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.host = host
        self.http_host = http_host or host
        self.http_port = free_tcp() if netns is None else 8470
        self.coap_port = free_coap() if netns is None else 5683
        store = f"\n[store]\nmap_size = {map_size}\n" if map_size else ""
        config = root / "hub.toml"
        config.write_text(f'data_dir = "{root / "data"}"\nhttp_host = "{self.http_host}"\n'
                          f'http_port = {self.http_port}\ncoap_host = "{host}"\ncoap_port = {self.coap_port}\n'
                          f'auto_approve = true\nmdns = false\ncheckpoint_interval = {checkpoint_interval}\n{store}')
        super().__init__([*command, "--config", str(config)], root / "hub.log", netns)

    @property
    def url(self) -> str:
        return f"http://{self.http_host}:{self.http_port}"

    @property
    def coap(self) -> str:
        return f"coap://{self.host}:{self.coap_port}"

    def wait_up(self, timeout: float = 30.0 * PATIENCE) -> None:
        # Starting (imports, the store opened) takes several times as long on a busy machine, and each probe waits
        # for an answer that the starting hub may be slow to give.
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise FaultError(f"hub exited with {self.proc.returncode}: {self.tail()}")
            try:
                http_json(f"{self.url}/api/status", timeout=5)
                return
            except (OSError, ValueError):
                time.sleep(0.05)
        raise FaultError(f"hub did not come up in {timeout} s: {self.tail()}")

    def heads(self) -> dict[bytes, tuple[int, bytes]]:
        got = http_json(f"{self.url}/api/heads")
        return {bytes.fromhex(h["device"]): (int(h["length"]), bytes.fromhex(h["head"])) for h in got["heads"]}

    def size(self) -> int:
        return int(http_json(f"{self.url}/api/status")["size"])

    def own_log(self) -> tuple[bytes, int]:
        """The hub's id and how many records its own log (genesis, decisions, attestations) holds: leaves of
        its tree, among the heads only when the hub lists itself as a device (bridges)."""
        status = http_json(f"{self.url}/api/status")
        return bytes.fromhex(status["hub"]), int(status["own_log"])

    def enroll(self, signer: Any, name: str) -> None:
        from ledger.enroll import make_enroll_request

        hub_id = bytes.fromhex(http_json(f"{self.url}/api/status")["hub"])
        req = make_enroll_request(signer, site="sppg-faults", role="kitchen_exit", name=name, time=NOW,
                                  hub_id=hub_id)
        http_json(f"{self.url}/api/enroll", data=req)


class EdgeProc(Proc):
    """`jejak edge run` with a config written here; its device key is made before the first start."""

    def __init__(self, root: Path, *, host: str = "127.0.0.1", port: int | None = None, hub: str = "",
                 peers: Sequence[str] = (), tap_interval_ms: int = 0, netns: str | None = None,
                 map_size: int | None = None, seed: int = 1) -> None:
        from edge import keys

        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.host = host
        self.port = port if port is not None else free_udp(host)
        self.hub = hub
        self.peers = list(peers)
        self.map_size = map_size
        self.seed = seed
        self.key = keys.load_or_create(root / "data" / "device.key")
        self.config = root / "edge.toml"
        self.write_config(tap_interval_ms)
        super().__init__(["-m", "edge.cli", "run", "--config", str(self.config)], root / "edge.log", netns)

    @property
    def device_id(self) -> bytes:
        return bytes(self.key.device_id)

    @property
    def coap(self) -> str:
        return f"coap://{self.host}:{self.port}"

    def write_config(self, tap_interval_ms: int) -> None:
        peers = ", ".join(f'"{p}"' for p in self.peers)
        limits = f"[limits]\nmap_size = {self.map_size}\n" if self.map_size else ""
        self.config.write_text(
            f'site = "sppg-faults"\ndata_dir = "{self.root / "data"}"\nsensors = []\n'
            f'[coap]\nhost = "{self.host}"\nport = {self.port}\n'
            f'[hub]\naddress = "{self.hub}"\n'
            f'[sync]\nmdns = false\ninterval_s = 0.5\npeers = [{peers}]\n'
            f'[sim]\ntap_interval_ms = {tap_interval_ms}\nseed = {self.seed}\n{limits}')

    def wait_ready(self, timeout: float = 30.0 * PATIENCE) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(e.get("msg") == "ready" for e in read_log(self.log)[self.offset:]):
                return
            if self.proc is not None and self.proc.poll() is not None:
                raise FaultError(f"edge exited with {self.proc.returncode}: {self.tail()}")
            time.sleep(0.05)
        raise FaultError(f"edge did not become ready in {timeout} s: {self.tail()}")

    def acknowledged(self) -> list[tuple[int, bytes]]:
        """Taps whose record the daemon committed and then signalled (beep/LED) as accepted."""
        out = []
        for entry in read_log(self.log):
            fb = entry.get("feedback")
            if isinstance(fb, dict) and fb.get("status") == "accepted" and "seq" in fb:
                out.append((int(fb["seq"]), bytes.fromhex(fb["id"])))
        return out

    def own_log(self) -> list[bytes]:
        return store_log(self.root / "data" / "store", self.device_id)


async def restart_without_taps(edges: Sequence[EdgeProc]) -> None:
    """Stop each edge, turn its simulated taps off and start it again, so that its own log stops growing."""
    for e in edges:
        e.stop()
        e.write_config(0)
        e.start()
    for e in edges:
        await asyncio.to_thread(e.wait_ready)


def store_log(path: Path, device_id: bytes) -> list[bytes]:
    """One log as an LMDB store holds it, read by a second process while the daemon may run."""
    from edge.store import LmdbLogStore

    store = LmdbLogStore(path, readonly=True)
    try:
        return store.log_range(device_id, 0, 1 << 62)
    finally:
        store.close()


class FaultError(Exception):
    """A scenario could not run (a daemon would not start, namespaces refused); not a lost record."""

    code = "FAULT_SETUP"


def missing(acked: Sequence[tuple[int, bytes]], raws: Sequence[bytes]) -> list[tuple[int, str]]:
    return [(seq, rid.hex()) for seq, rid in acked
            if seq >= len(raws) or hashlib.sha256(raws[seq]).digest() != rid]


def wait_converged(hub: HubProc, edges: Sequence[EdgeProc], timeout: float,
                   extra: dict[bytes, tuple[int, bytes]] | None = None) -> float | None:
    """Seconds until the hub holds every edge's whole own log (same length, same head), or None."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        want = {e.device_id: _head(e.own_log()) for e in edges}
        want.update(extra or {})
        try:
            have = hub.heads()
        except OSError:
            have = {}
        if all(have.get(d) == w for d, w in want.items()):
            return time.monotonic() - started
        time.sleep(0.1)
    return None


def _head(raws: Sequence[bytes]) -> tuple[int, bytes]:
    return len(raws), hashlib.sha256(raws[-1]).digest() if raws else b""


def duplicated(hub: HubProc) -> int:
    """Records the hub's Merkle log holds more than once: its size beyond the sum of the logs' lengths and
    its own log's."""
    hub_id, own = hub.own_log()
    heads = hub.heads()
    return hub.size() - (0 if hub_id in heads else own) - sum(length for length, _ in heads.values())


# -- kill -9 under load ------------------------------------------------------------------------------------


async def _push_until(hub: HubProc, device_id: bytes, raws: Sequence[bytes], acked: list[int],
                      stop: asyncio.Event, chunk: int = 25) -> None:
    """Push a log to the hub's /sync/records; only what an ack covered counts as acknowledged."""
    import aiocoap
    import cbor2

    from ledger.sync import encode_records

    ctx = await aiocoap.Context.create_client_context()
    try:
        while not stop.is_set() and acked[0] < len(raws):
            start = acked[0]
            msg = aiocoap.Message(code=aiocoap.POST, uri=f"{hub.coap}/sync/records",
                                  payload=encode_records(device_id, start, list(raws[start:start + chunk])))
            try:
                async with asyncio.timeout(3):
                    resp = await ctx.request(msg).response
            except Exception:
                await asyncio.sleep(0.05)
                continue
            if resp.code.is_successful():
                acked[0] = max(acked[0], int(cbor2.loads(resp.payload)["length"]))
            else:
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.01)
    finally:
        await ctx.shutdown()


def _signed_log(seed: int, n: int) -> tuple[Any, list[bytes]]:
    from ledger import ChainBuilder, Ed25519Signer

    signer = Ed25519Signer.from_seed(seed.to_bytes(32, "big"))
    builder = ChainBuilder(signer, clock=lambda: NOW, boot=1)
    raws = [builder.genesis().raw]
    raws += [builder.append("note", {"text": f"pusher {seed} record {i}"}).raw for i in range(n - 1)]
    return signer, raws


async def kill_under_load(root: Path, *, cycles: int, edges: int = 2, seed: int = 9) -> Outcome:
    """SIGKILL the hub or an edge at random moments while edges tap and sync and a device pushes to the hub."""
    started = time.monotonic()
    rng = random.Random(seed)
    hub = HubProc(root / "hub")
    hub.start()
    hub.wait_up()
    ports = [free_udp() for _ in range(edges)]
    nodes: list[EdgeProc] = []
    for i in range(edges):
        peers = [f"coap://127.0.0.1:{p}" for j, p in enumerate(ports) if j != i]
        nodes.append(EdgeProc(root / f"edge{i}", port=ports[i], hub=hub.coap, peers=peers, tap_interval_ms=15,
                              seed=i + 1))
    signer, raws = _signed_log(1000 + seed, 400 * max(cycles, 1))
    from ledger import device_id_for

    pusher_id = device_id_for(signer.public_key)
    hub.enroll(signer, "pusher")
    for e in nodes:
        hub.enroll(e.key, e.root.name)
        e.start()
    for e in nodes:
        e.wait_ready()
    acked = [0]
    lost_after_restart: list[str] = []
    kills = {"hub": 0, "edge": 0, "during_start": 0}
    stop = asyncio.Event()
    pusher = asyncio.create_task(_push_until(hub, pusher_id, raws, acked, stop))
    procs: list[Proc] = [hub, *nodes]
    try:
        for cycle in range(cycles):
            victim = hub if cycle % 2 == 0 else rng.choice(nodes)
            await asyncio.sleep(rng.uniform(0.3, 1.2))
            before = acked[0]
            victim.kill()
            kills["hub" if victim is hub else "edge"] += 1
            victim.start()
            if cycle % 5 == 4:  # some kills land during start-up
                await asyncio.sleep(rng.uniform(0.05, 0.3))
                victim.kill()
                kills["during_start"] += 1
                victim.start()
            if victim is hub:
                await asyncio.to_thread(hub.wait_up)
                length = hub.heads().get(pusher_id, (0, b""))[0]
                if length < before:
                    lost_after_restart.append(f"cycle {cycle}: hub acked {before}, holds {length}")
            else:
                assert isinstance(victim, EdgeProc)
                await asyncio.to_thread(victim.wait_ready)
        stop.set()
        await pusher
        # Quiesce: no more taps; every node restarts once more cleanly, then the hub must converge.
        stop = asyncio.Event()
        await _push_until(hub, pusher_id, raws, acked, stop)
        await restart_without_taps(nodes)
        converge = await asyncio.to_thread(wait_converged, hub, nodes, 90.0,
                                           {pusher_id: _head(raws)})
        edge_acked = sum(len(e.acknowledged()) for e in nodes)
        lost = len(lost_after_restart)
        for e in nodes:
            lost += len(missing(e.acknowledged(), e.own_log()))
        hub_heads = hub.heads()
        if hub_heads.get(pusher_id, (0, b""))[0] < acked[0]:
            lost += acked[0] - hub_heads.get(pusher_id, (0, b""))[0]
        if converge is None:
            behind = {e.root.name: (len(e.own_log()), hub_heads.get(e.device_id, (0, b""))[0]) for e in nodes}
            raise FaultError(f"hub did not converge after the kills: (edge, hub) lengths {behind}")
        dup = duplicated(hub)
        return Outcome(scenario="kill", fault="SIGKILL of hub and edges at random moments under load",
                       cycles=cycles, acknowledged=edge_acked + acked[0], lost=lost, duplicated=dup,
                       seconds=round(time.monotonic() - started, 1),
                       figures={"kills": kills, "edge_acknowledged": edge_acked, "hub_acknowledged": acked[0],
                                "hub_log_size": hub.size(), "convergence_s": round(converge, 2),
                                "problems": lost_after_restart[:5]})
    finally:
        stop.set()
        if not pusher.done():
            pusher.cancel()
            with contextlib.suppress(BaseException):
                await pusher
        for p in procs:
            p.stop()


# -- network namespaces ------------------------------------------------------------------------------------


# What a relay does with a datagram (`upstream`: from a client): seconds to hold it, or None to drop it.
Shape = Callable[[bytes, bool], float | None]


class _Shape:
    """Drops `loss` % of datagrams and delays the rest, from a seeded random source; counts both."""

    def __init__(self, *, loss: float, delay_ms: int, jitter_ms: int, seed: int) -> None:
        self.loss, self.delay_ms, self.jitter_ms = loss, delay_ms, jitter_ms
        self.rng = random.Random(seed)
        self.dropped = self.passed = 0

    def __call__(self, data: bytes, upstream: bool) -> float | None:
        """Seconds to hold a datagram (`upstream`: from a client), or None to drop it."""
        if self.rng.random() * 100 < self.loss:
            self.dropped += 1
            return None
        self.passed += 1
        return max(0.0, self.rng.uniform(self.delay_ms - self.jitter_ms, self.delay_ms + self.jitter_ms)) / 1000


class _Relay:
    """One client's path through the impairment: datagrams both ways, each dropped or delayed."""

    def __init__(self, front: asyncio.DatagramTransport, client: tuple[str, int], shape: Shape) -> None:
        self.front, self.client, self.shape = front, client, shape
        self.back: asyncio.DatagramTransport | None = None

    def later(self, send: Callable[[], None], data: bytes, upstream: bool) -> None:
        delay = self.shape(data, upstream)
        if delay is None:
            return
        if delay:
            asyncio.get_running_loop().call_later(delay, send)
        else:
            send()


class _Back(asyncio.DatagramProtocol):
    def __init__(self, relay: _Relay) -> None:
        self.relay = relay

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        relay = self.relay
        relay.later(lambda: relay.front.sendto(data, relay.client), data, False)


class _Front(asyncio.DatagramProtocol):
    def __init__(self, target: tuple[str, int], shape: Shape) -> None:
        self.target, self.shape = target, shape
        self.relays: dict[tuple[str, int], _Relay] = {}
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a datagram transport, not declared as one

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        relay = self.relays.get(addr)
        if relay is None:
            relay = self.relays[addr] = _Relay(self.transport, addr, self.shape)
            asyncio.get_running_loop().create_task(self._connect(relay, data))
            return
        self._forward(relay, data)

    async def _connect(self, relay: _Relay, first: bytes) -> None:
        loop = asyncio.get_running_loop()
        relay.back, _ = await loop.create_datagram_endpoint(lambda: _Back(relay), remote_addr=self.target)
        self._forward(relay, first)

    def _forward(self, relay: _Relay, data: bytes) -> None:
        back = relay.back
        if back is not None:
            relay.later(lambda: back.sendto(data), data, True)

    def close(self) -> None:
        for relay in self.relays.values():
            if relay.back is not None:
                relay.back.close()
        if self.transport is not None:
            self.transport.close()


async def start_relay(listen: tuple[str, int], target: tuple[str, int], shape: Shape) -> _Front:
    """A UDP relay from `listen` to `target` that passes each datagram as `shape` says, until `close()`. Each
    client gets an endpoint of its own towards the target, so the target sees the clients' ports apart."""
    loop = asyncio.get_running_loop()
    _, front = await loop.create_datagram_endpoint(lambda: _Front(target, shape), local_addr=listen)
    return front


async def start_impairment(listen: tuple[str, int], target: tuple[str, int], *, loss: float, delay_ms: int,
                           jitter_ms: int, seed: int = 5) -> _Front:
    """A UDP relay that drops `loss` % of datagrams each way and delays the rest, until `close()`; its `shape`
    counts what it dropped and passed."""
    return await start_relay(listen, target, _Shape(loss=loss, delay_ms=delay_ms, jitter_ms=jitter_ms, seed=seed))


async def impair(listen: tuple[str, int], target: tuple[str, int], *, loss: float, delay_ms: int,
                 jitter_ms: int, seed: int = 5) -> None:
    """A UDP relay that drops `loss` % of datagrams each way and delays the rest: netem in user space, for
    kernels built without the netem qdisc."""
    await start_impairment(listen, target, loss=loss, delay_ms=delay_ms, jitter_ms=jitter_ms, seed=seed)
    await asyncio.Event().wait()


async def partitions(root: Path, *, cycles: int, edges: int = 3, loss: float = 0.0, delay_ms: int = 0,
                     load_s: float = 0.0, seed: int = 11) -> Outcome:
    """Edges and a hub in their own namespaces: random partitions and heals (and optionally netem loss and
    delay) while the edges tap; afterwards the hub must hold every edge's log exactly once."""
    started = time.monotonic()
    rng = random.Random(seed)
    names = ["hub"] + [f"e{i}" for i in range(edges)]
    with Lan(rng=rng) as lan:
        hosts = {name: lan.add(name) for name in names}
        hub = HubProc(root / "hub", host=hosts["hub"].ip, netns=hosts["hub"].ns)
        shaped_by = "none"
        hub_url = hub.coap
        relay: Proc | None = None
        if loss or delay_ms:
            if lan.has_netem():
                shaped_by = "tc netem"
            else:  # this kernel has no sch_netem: impair every edge-hub datagram in user space instead
                shaped_by = "user-space relay (no netem in this kernel)"
                hub_url = f"coap://{hosts['hub'].ip}:5700"
                relay = Proc(["-m", "tests.harness.faults", "impair", "--listen", f"{hosts['hub'].ip}:5700",
                              "--to", f"{hosts['hub'].ip}:5683", "--loss", str(loss), "--delay-ms",
                              str(delay_ms), "--jitter-ms", str(delay_ms // 4)], root / "relay.log",
                             hosts["hub"].ns)
                relay.start()
        nodes = []
        for i in range(edges):
            me = f"e{i}"
            peers = [f"coap://{hosts[f'e{j}'].ip}:5683" for j in range(edges) if j != i]
            nodes.append(EdgeProc(root / me, host=hosts[me].ip, port=5683, hub=hub_url, peers=peers,
                                  tap_interval_ms=25, netns=hosts[me].ns, seed=i + 1))
        procs: list[Proc] = [hub, *nodes] + ([relay] if relay else [])
        heals: list[float] = []
        try:
            hub.start()
            await asyncio.to_thread(hub.wait_up)
            for e in nodes:
                hub.enroll(e.key, e.root.name)
                e.start()
            for e in nodes:
                await asyncio.to_thread(e.wait_ready)
            if shaped_by == "tc netem":
                for name in names:
                    lan.netem(hosts[name], loss=loss, delay_ms=delay_ms, jitter_ms=delay_ms // 4)
            if load_s:
                await asyncio.sleep(load_s)
            for _ in range(cycles):
                cut = rng.choice([["hub"], [rng.choice(names[1:])], rng.sample(names[1:], 2)])
                for name in cut:
                    lan.cut(hosts[name])
                await asyncio.sleep(rng.uniform(1.0, 3.0))
                for name in cut:
                    lan.heal(hosts[name])
                want = {e.device_id: len(e.own_log()) for e in nodes}
                healed = time.monotonic()
                while True:
                    have = hub.heads()
                    if all(have.get(d, (0, b""))[0] >= n for d, n in want.items()):
                        heals.append(time.monotonic() - healed)
                        break
                    if time.monotonic() - healed > 90:
                        raise FaultError(f"no convergence 90 s after healing {cut}")
                    await asyncio.sleep(0.05)
            await restart_without_taps(nodes)
            final = await asyncio.to_thread(wait_converged, hub, nodes, 120.0)
            acked = sum(len(e.acknowledged()) for e in nodes)
            lost = sum(len(missing(e.acknowledged(), e.own_log())) for e in nodes)
            if final is None:
                have = hub.heads()
                raise FaultError("hub did not converge: (edge, hub) lengths " + str(
                    {e.root.name: (len(e.own_log()), have.get(e.device_id, (0, b""))[0]) for e in nodes}))
            dup = duplicated(hub)
            size = hub.size()
        finally:
            for p in procs:
                p.stop()
    shaped = f" with netem loss {loss}% delay {delay_ms}±{delay_ms // 4} ms" if (loss or delay_ms) else ""
    return Outcome(scenario="netem" if shaped else "partition",
                   fault=f"network partitions and heals across namespaces{shaped}", cycles=cycles,
                   acknowledged=acked, lost=lost, duplicated=dup, seconds=round(time.monotonic() - started, 1),
                   figures={"edges": edges, "hub_log_size": size,
                            "convergence_after_heal_s": [round(h, 2) for h in heals],
                            "convergence_max_s": round(max(heals), 2) if heals else None,
                            "final_convergence_s": round(final, 2), "loss_percent": loss, "delay_ms": delay_ms,
                            "shaped_by": shaped_by})


# -- disk full ---------------------------------------------------------------------------------------------


async def disk_full(root: Path) -> Outcome:
    """A tiny LMDB map on an edge and on a hub: writes past it get STORE_FULL (CoAP 5.03) with a hint, the
    daemons keep serving, and after a restart with a larger map nothing acknowledged is missing."""
    from coap_server.client import EdgeClient
    from coap_server.errors import CoapError

    started = time.monotonic()
    edge = EdgeProc(root / "edge", map_size=96 * 1024)
    edge.start()
    await asyncio.to_thread(edge.wait_ready)
    acked: list[tuple[int, bytes]] = []
    refusals: dict[str, int] = {}
    hint = ""
    try:
        async with EdgeClient(edge.coap, timeout=5) as client:
            for n in range(5000):
                try:
                    got = await client.submit("note", {"text": f"disk full test note {n} " + "x" * 200})
                except CoapError as exc:
                    refusals[f"{exc.code} {exc.coap_code}"] = refusals.get(f"{exc.code} {exc.coap_code}", 0) + 1
                    hint = exc.hint or exc.message
                    if refusals[f"{exc.code} {exc.coap_code}"] >= 20:
                        break
                    continue
                acked.append((got.seq, got.id))
            still = await client.head()  # reads still served by the full daemon
    finally:
        edge.stop()
    edge.map_size = 4 * 1024 * 1024
    edge.write_config(0)
    edge.start()
    await asyncio.to_thread(edge.wait_ready)
    try:
        async with EdgeClient(edge.coap, timeout=5) as client:
            after = await client.submit("note", {"text": "after the map was raised"})
    finally:
        edge.stop()
    edge_lost = len(missing(acked, edge.own_log()))

    hub = HubProc(root / "hub", map_size=256 * 1024)
    hub.start()
    await asyncio.to_thread(hub.wait_up)
    signer, raws = _signed_log(77, 3000)
    from ledger import device_id_for

    hub.enroll(signer, "pusher")
    device_id = device_id_for(signer.public_key)
    hub_acked = [0]
    hub_refusal = ""
    import aiocoap
    import cbor2

    from ledger.sync import encode_records

    ctx = await aiocoap.Context.create_client_context()
    try:
        while hub_acked[0] < len(raws):
            body = encode_records(device_id, hub_acked[0], raws[hub_acked[0]:hub_acked[0] + 50])
            async with asyncio.timeout(10):
                resp = await ctx.request(aiocoap.Message(code=aiocoap.POST, uri=f"{hub.coap}/sync/records",
                                                         payload=body)).response
            if not resp.code.is_successful():
                err = cbor2.loads(resp.payload)
                hub_refusal = f"{resp.code} {err.get('code')}: {err.get('message')}"
                break
            hub_acked[0] = int(cbor2.loads(resp.payload)["length"])
        status_ok = bool(http_json(f"{hub.url}/api/status"))
    finally:
        await ctx.shutdown()
        hub.stop()
    config = root / "hub" / "hub.toml"
    config.write_text(config.read_text().replace("map_size = 262144", "map_size = 67108864"))
    hub.start()
    try:
        await asyncio.to_thread(hub.wait_up)
        held = hub.heads().get(device_id, (0, b""))[0]
    finally:
        hub.stop()
    hub_lost = max(0, hub_acked[0] - held)
    if not refusals or not hub_refusal:
        raise FaultError(f"the stores never filled: edge refusals {refusals}, hub refusal {hub_refusal!r}")
    return Outcome(scenario="disk_full", fault="LMDB map full on an edge (96 KiB) and a hub (256 KiB)", cycles=2,
                   acknowledged=len(acked) + hub_acked[0], lost=edge_lost + hub_lost,
                   seconds=round(time.monotonic() - started, 1),
                   figures={"edge_acknowledged": len(acked), "edge_refusals": refusals, "edge_hint": hint,
                            "edge_served_reads_when_full": bool(still), "edge_append_after_raise": after.seq,
                            "hub_acknowledged": hub_acked[0], "hub_refusal": hub_refusal,
                            "hub_served_status_when_full": status_ok, "hub_held_after_restart": held})


# -- corrupt or truncated store ----------------------------------------------------------------------------


def _damage(data: Path, how: str) -> None:
    raw = bytearray(data.read_bytes())
    if how == "truncated":
        data.write_bytes(bytes(raw[: len(raw) // 2]))
    else:  # both meta pages and the first data pages overwritten, as a dying SD card does
        for i in range(min(len(raw), 3 * 4096)):
            raw[i] ^= 0xA5
        data.write_bytes(bytes(raw))


async def corrupt_store(root: Path, *, rounds: Sequence[str] = ("overwritten", "truncated")) -> Outcome:
    """Damage an edge's LMDB file: the daemon refuses to start with STORE_CORRUPT; the operator moves the
    store aside and restores the edge's own log from the hub and a peer (`python -m edge.restore`); the
    daemon then continues the same chain and the hub sees no fork."""
    started = time.monotonic()
    hub = HubProc(root / "hub")
    hub.start()
    await asyncio.to_thread(hub.wait_up)
    ports = [free_udp(), free_udp()]
    a = EdgeProc(root / "a", port=ports[0], hub=hub.coap, peers=[f"coap://127.0.0.1:{ports[1]}"],
                 tap_interval_ms=10, seed=3)
    b = EdgeProc(root / "b", port=ports[1], hub=hub.coap, peers=[f"coap://127.0.0.1:{ports[0]}"], seed=4)
    for e in (a, b):
        hub.enroll(e.key, e.root.name)
        e.start()
    figures: dict[str, Any] = {}
    acked_total = lost = 0
    try:
        await asyncio.to_thread(a.wait_ready)
        await asyncio.to_thread(b.wait_ready)
        for how in rounds:
            await asyncio.sleep(1.5)
            await restart_without_taps([a])
            if await asyncio.to_thread(wait_converged, hub, [a], 60.0) is None:
                raise FaultError("edge a never synced before the damage")
            a.stop()
            before = a.own_log()
            acked = a.acknowledged()
            store = a.root / "data" / "store"
            _damage(store / "data.mdb", how)
            a.start()
            code = a.proc.wait(30) if a.proc is not None else None
            a.stop()
            refusal = next((e["error"] for e in read_log(a.log)[a.offset:] if isinstance(e.get("error"), dict)),
                           None)
            if code != 39 or not refusal or refusal.get("code") != "STORE_CORRUPT":
                raise FaultError(f"{how} store: expected exit 39 with STORE_CORRUPT, got {code}: {a.tail()}")
            aside = store.with_name(f"store.corrupt-{how}")
            store.rename(aside)
            done = subprocess.run([sys.executable, "-m", "edge.restore", "--config", str(a.config),
                                   "--from", hub.coap, "--from", b.coap], cwd=REPO, capture_output=True,
                                  text=True, timeout=120)
            if done.returncode != 0:
                raise FaultError(f"restore failed: {done.stderr[-800:]}")
            restored = json.loads(done.stdout.strip().splitlines()[-1])
            after = a.own_log()
            lost_now = len(missing(acked, after))
            a.write_config(10)
            a.start()
            await asyncio.to_thread(a.wait_ready)
            await asyncio.sleep(1.0)
            await restart_without_taps([a])
            converged = await asyncio.to_thread(wait_converged, hub, [a], 60.0)
            forks = http_json(f"{hub.url}/api/forks")
            forked = len(forks.get("forks", forks)) if isinstance(forks, dict) else len(forks)
            grown = len(a.own_log())
            if forked or converged is None or grown <= len(after):
                raise FaultError(f"after restoring the {how} store: forks {forked}, converged {converged}, "
                                 f"length {len(after)} -> {grown}")
            acked_total += len(acked)
            lost += lost_now
            figures[how] = {"refusal": refusal, "exit_code": code, "log_before": len(before),
                            "restored": restored["length"], "sources": restored["sources"],
                            "appended_after_restore": grown - len(after), "hub_forks": forked}
    finally:
        for p in (a, b, hub):
            p.stop()
    return Outcome(scenario="corrupt_store", fault="edge LMDB file overwritten / truncated; restore from hub and "
                   "peer", cycles=len(rounds), acknowledged=acked_total, lost=lost,
                   seconds=round(time.monotonic() - started, 1), figures=figures)


# -- clocks ------------------------------------------------------------------------------------------------


async def clocks(root: Path) -> Outcome:
    """A device clock years off and jumping both ways: every record is accepted over CoAP, and the MBG
    analytics use the hub's arrival time for the ones a wrong clock stamped, and flag them."""
    import aiocoap

    from coap_server.sync import sync_once
    from edge.store import LmdbLogStore
    from hub.app import start_hub
    from hub.bridges import BridgeConfig
    from hub.config import HubConfig
    from hub.mbg.events import choose_time, from_record
    from hub.mbg.plan import ClockPolicy
    from hub.service import Hub
    from hub.store import LmdbHubStore
    from ledger import ChainBuilder, Ed25519Signer, decode_record

    started = time.monotonic()
    hub_now = [NOW]
    hub = Hub(LmdbHubStore(root / "hub"), Ed25519Signer.from_seed(b"\x42" * 32), clock=lambda: hub_now[0],
              auto_approve=True)
    running = await start_hub(HubConfig(bridges=BridgeConfig(enabled=False), data_dir=str(root / "hubdata"), http_port=0, coap_port=0, mdns=False),
                              hub=hub)
    signer = Ed25519Signer.from_seed(b"\x43" * 32)
    from ledger.enroll import make_enroll_request

    hub.enroll(make_enroll_request(signer, site="sppg-01", role="kitchen_exit", name="clock", time=NOW,
                                   hub_id=hub.hub_id))
    device_time = [NOW - 25 * 365 * 86400]  # a Pi without RTC or NTP that booted in 2001
    builder = ChainBuilder(signer, clock=lambda: device_time[0], boot=1)
    store = LmdbLogStore(root / "edge")
    store.claim(builder.device_id)
    store.append_own([builder.genesis()])
    jumps = [("years behind", 0), ("jump forward 30 years", 30 * 365 * 86400), ("jump back 3 days", -3 * 86400),
             ("jump back to now", 0), ("right clock", 0)]
    body = {"event": "departed", "site": "sppg-01", "checkpoint": "kitchen_exit", "staff": "5a000001",
            "tags": ["e0040150a1b2c3d4"], "school": "sd-01"}
    sent = 1
    ctx = await aiocoap.Context.create_client_context()
    try:
        for i, (what, jump) in enumerate(jumps):
            if what == "jump back to now" or what == "right clock":
                device_time[0] = hub_now[0]
            else:
                device_time[0] += jump
            records = [builder.append("scan", {**body, "tags": [f"e00401{i:02d}{n:08x}"]}) for n in range(20)]
            store.append_own(records)
            sent += len(records)
            await sync_once(ctx, running.coap_url, store, pull=False)
            hub_now[0] += 60
    finally:
        await ctx.shutdown()
    entries = hub.store.entries(0, hub.store.size())
    flagged: dict[str, int] = {}
    bases: dict[str, int] = {}
    policy = ClockPolicy()
    for entry in entries:
        event = from_record(decode_record(entry.raw), entry.arrived_at)
        if event is None:
            continue
        choice = choose_time(event.device_time, entry.arrived_at, policy)
        bases[choice.basis] = bases.get(choice.basis, 0) + 1
        if choice.flag:
            flagged[choice.flag] = flagged.get(choice.flag, 0) + 1
    held = hub.store.chain_state(builder.device_id)
    await running.close()
    store.close()
    accepted = held.length if held else 0
    return Outcome(scenario="clock", fault="device clock 25 years behind, jumps of +30 years and -3 days",
                   cycles=len(jumps), acknowledged=accepted, lost=sent - accepted,
                   seconds=round(time.monotonic() - started, 1),
                   figures={"records_sent": sent, "records_accepted": accepted, "time_basis": bases,
                            "flagged": flagged})



# -- the command -------------------------------------------------------------------------------------------

SIZES: dict[str, dict[str, Any]] = {
    "reduced": {"kill_cycles": 6, "partition_cycles": 2, "netem_cycles": 1, "netem_load_s": 3.0},
    "full": {"kill_cycles": 60, "partition_cycles": 12, "netem_cycles": 6, "netem_load_s": 20.0},
}
SCENARIOS = ("kill", "partition", "netem", "disk_full", "corrupt_store", "clock")


NETEM_LOSS = 3.0  # percent each way; `--loss` runs the netem scenario at another figure


async def run_scenario(name: str, root: Path, size: str = "reduced", seed: int = 9,
                       loss: float = NETEM_LOSS) -> Outcome:
    s = SIZES[size]
    if name == "kill":
        return await kill_under_load(root, cycles=s["kill_cycles"], seed=seed)
    if name == "partition":
        return await partitions(root, cycles=s["partition_cycles"], seed=seed)
    if name == "netem":
        return await partitions(root, cycles=s["netem_cycles"], loss=loss, delay_ms=40, load_s=s["netem_load_s"],
                                seed=seed)
    if name == "disk_full":
        return await disk_full(root)
    if name == "corrupt_store":
        return await corrupt_store(root)
    if name == "clock":
        return await clocks(root)
    raise ValueError(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}")


def table(outcomes: Sequence[Outcome]) -> str:
    rows = ["| fault | cycles | acknowledged | lost | duplicated | seconds |", "| --- | --- | --- | --- | --- | --- |"]
    rows += [f"| {o.fault} | {o.cycles} | {o.acknowledged} | {o.lost} | {o.duplicated} | {o.seconds} |"
             for o in outcomes]
    return "\n".join(rows)


@contextlib.contextmanager
def _workdir(keep: str | None) -> Iterator[Path]:
    if keep:
        path = Path(keep)
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    path = Path(tempfile.mkdtemp(prefix="jejak-faults-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["impair"]:
        return _impair_main(argv[1:])
    p = argparse.ArgumentParser(prog="python -m tests.harness.faults", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", choices=sorted(SIZES), default="full", help="full (default) or reduced (the tests)")
    p.add_argument("--only", action="append", choices=SCENARIOS, help="run only these scenarios (repeatable)")
    p.add_argument("--seed", type=int, default=9)
    p.add_argument("--json", default="faults.json", help="where to write the outcomes")
    p.add_argument("--workdir", help="keep data dirs and logs here (default: a temporary dir, removed)")
    p.add_argument("--loss", type=_percent, default=NETEM_LOSS,
                   help=f"percent of datagrams the netem scenario drops each way (default {NETEM_LOSS:g})")
    args = p.parse_args(argv)
    outcomes: list[Outcome] = []
    failed: dict[str, str] = {}
    with _workdir(args.workdir) as root:
        for name in args.only or SCENARIOS:
            print(f"faults: {name} ...", flush=True)
            try:
                outcome = asyncio.run(run_scenario(name, root / name, args.size, args.seed, args.loss))
            except (FaultError, LanError) as exc:
                failed[name] = str(exc)
                print(f"faults: {name} could not run: {exc}", file=sys.stderr)
                continue
            outcome.command = f"python -m tests.harness.faults --size {args.size} --only {name} --seed {args.seed}"
            if name == "netem" and args.loss != NETEM_LOSS:
                outcome.command += f" --loss {args.loss:g}"
            outcomes.append(outcome)
            print(f"faults: {name}: {outcome.cycles} cycles, {outcome.acknowledged} acknowledged, "
                  f"{outcome.lost} lost, {outcome.duplicated} duplicated, {outcome.seconds} s", flush=True)
    Path(args.json).write_text(json.dumps({"size": args.size, "seed": args.seed, "started": int(time.time()),
                                           "outcomes": [o.to_json() for o in outcomes], "failed": failed},
                                          indent=2))
    print(table(outcomes))
    bad = [o for o in outcomes if o.lost or o.duplicated]
    return 1 if bad or failed else 0


def _percent(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a percentage, got {text!r}") from None
    if not 0 <= value < 100:
        raise argparse.ArgumentTypeError(f"expected a percentage from 0 up to (not including) 100, got {text}")
    return value


def _impair_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.harness.faults impair", description=impair.__doc__)
    p.add_argument("--listen", required=True, help="host:port")
    p.add_argument("--to", required=True, help="host:port")
    p.add_argument("--loss", type=_percent, default=0.0, help="percent of datagrams dropped, each way")
    p.add_argument("--delay-ms", type=int, default=0)
    p.add_argument("--jitter-ms", type=int, default=0)
    args = p.parse_args(argv)

    def hostport(text: str) -> tuple[str, int]:
        host, port = text.rsplit(":", 1)
        return host, int(port)

    asyncio.run(impair(hostport(args.listen), hostport(args.to), loss=args.loss, delay_ms=args.delay_ms,
                       jitter_ms=args.jitter_ms))
    return 0


if __name__ == "__main__":
    sys.exit(main())
