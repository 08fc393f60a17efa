"""Sync benchmarks: catch-up from an edge to a hub over CoAP, bytes on the wire, convergence after a heal.

The hub runs as its own process (`jejak hub run`); the edge side runs here. Every datagram between them
passes a counting relay in this process, so the bytes on the wire are counted, not estimated. The hub's
raw signature-verify rate is measured in the same run: catch-up cannot be faster than the hub verifies. CPU
per record is counted on both sides (the hub with its signature workers; over UDP the edge's includes the relay).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiocoap

from coap_server.lanes import Lanes
from coap_server.sync import sync_once
from edge.memory_bench import cpu_seconds
from edge.store import LmdbLogStore
from edge.sync import SyncAgent
from ledger import ChainBuilder, Ed25519Signer, device_id_for
from ledger.bench import raw_verify_rate
from ledger.enroll import make_enroll_request

UDP_IP_HEADERS = 28  # IPv4 (20) + UDP (8) per datagram; on the wire besides the CoAP message


class _Counter:
    def __init__(self) -> None:
        self.datagrams = 0
        self.bytes = 0
        self.open = True


class _Back(asyncio.DatagramProtocol):
    def __init__(self, front: asyncio.DatagramTransport, client: Any, counter: _Counter) -> None:
        self.front, self.client, self.counter = front, client, counter

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if self.counter.open:
            self.counter.datagrams += 1
            self.counter.bytes += len(data)
            self.front.sendto(data, self.client)


class _Front(asyncio.DatagramProtocol):
    """Counts and forwards datagrams to `target`; when `counter.open` is False it drops them (a partition)."""

    def __init__(self, target: tuple[str, int], counter: _Counter) -> None:
        self.target, self.counter = target, counter
        self.backs: dict[Any, asyncio.DatagramTransport | None] = {}
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if not self.counter.open:
            return
        self.counter.datagrams += 1
        self.counter.bytes += len(data)
        if addr not in self.backs:
            self.backs[addr] = None
            asyncio.get_running_loop().create_task(self._connect(addr, data))
        elif (back := self.backs[addr]) is not None:
            back.sendto(data)

    async def _connect(self, addr: Any, first: bytes) -> None:
        back, _ = await asyncio.get_running_loop().create_datagram_endpoint(
            lambda: _Back(self.transport, addr, self.counter), remote_addr=self.target)
        self.backs[addr] = back
        back.sendto(first)


def _cpu_of(pid: int) -> tuple[float, float]:
    """CPU seconds used so far by process `pid` and by its descendants alive now (the hub's signature workers,
    children of its fork server), from Linux's /proc. Unlike a rate, CPU per record barely moves when other jobs
    share the machine; the process's own is what its one interpreter does in turn, the descendants' runs
    beside it."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):  # a process that ended meanwhile
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
    own = children = 0.0
    for child in parents:
        ancestor, hops = parents.get(child), 0
        while ancestor is not None and ancestor != pid and hops < 64:
            ancestor, hops = parents.get(ancestor), hops + 1
        with contextlib.suppress(OSError, IndexError, ValueError):
            if child == pid:
                own = cpu_seconds(pid)
            elif ancestor == pid:
                children += cpu_seconds(child)
    return own, children


def _free(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Hub:
    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.http, self.coap = _free(socket.SOCK_STREAM), _free(socket.SOCK_DGRAM)
        config = root / "hub.toml"
        config.write_text(f'data_dir = "{root / "hub"}"\nhttp_port = {self.http}\ncoap_port = {self.coap}\n'
                          'auto_approve = true\nmdns = false\ncheckpoint_interval = 5\n')
        self.log = open(root / "hub.log", "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([sys.executable, "-m", "tools.cli", "hub", "run", "--config", str(config)],
                                     stdout=self.log, stderr=self.log, cwd=Path(__file__).resolve().parents[1])
        deadline = time.monotonic() + 30
        while True:
            try:
                self.get("/api/status")
                break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("bench hub did not start") from None
                time.sleep(0.05)

    def get(self, path: str, data: bytes | None = None) -> Any:
        req = urllib.request.Request(f"http://127.0.0.1:{self.http}{path}", data=data)
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    def enroll(self, signer: Ed25519Signer) -> None:
        hub_id = bytes.fromhex(self.get("/api/status")["hub"])
        self.get("/api/enroll", make_enroll_request(signer, site="bench", role="kitchen_exit", name="bench",
                                                    time=0, hub_id=hub_id))

    def lengths(self) -> dict[str, int]:
        return {h["device"]: h["length"] for h in self.get("/api/heads")["heads"]}

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def _edge(path: Path, seed: int, n: int) -> tuple[Ed25519Signer, LmdbLogStore, int]:
    signer = Ed25519Signer.from_seed(seed.to_bytes(32, "big"))
    builder = ChainBuilder(signer, clock=lambda: 1_763_900_000, boot=1)
    body = {"event": "departed", "site": "sppg-01", "checkpoint": "kitchen_exit", "staff": "04a1b2c3",
            "tags": ["e0040150a1b2c3d4"], "school": "sd-01"}
    store = LmdbLogStore(path)
    store.claim(builder.device_id)
    stored = 0
    batch = [builder.genesis()]
    for i in range(1, n):
        batch.append(builder.append("scan", {**body, "tags": [f"e00401{seed:02x}{i:08x}"]}))
        if len(batch) == 2000 or i == n - 1:
            store.append_own(batch)
            stored += sum(len(r.raw) for r in batch)
            batch = []
    if batch:
        store.append_own(batch)
        stored += sum(len(r.raw) for r in batch)
    return signer, store, stored


class _Relay:
    def __init__(self, transport: Any, front: _Front, port: int) -> None:
        self.transport, self.front, self.port = transport, front, port

    def close(self) -> None:
        self.front.counter.open = False
        for back in self.front.backs.values():
            if back is not None:
                back.close()
        self.transport.close()


async def _relay(target: tuple[str, int], counter: _Counter) -> tuple[_Relay, int]:
    port = _free(socket.SOCK_DGRAM)
    front = _Front(target, counter)
    transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
        lambda: front, local_addr=("127.0.0.1", port))
    return _Relay(transport, front, port), port


async def _catch_up(root: Path, n: int, *, tcp: bool = False) -> dict[str, Any]:
    """One edge pushes `n` records to a fresh hub. Over UDP the datagrams go through a counting relay (bytes on
    the wire), with requests in flight on the sync agent's lanes; over CoAP over TCP (RFC 8323), which the hub
    also serves, straight to the hub."""
    signer, store, stored = _edge(root / "edge", 2 if tcp else 1, n)
    hub = _Hub(root)
    counter = _Counter()
    relay = None
    if tcp:
        url = f"coap+tcp://127.0.0.1:{hub.coap}"
    else:
        relay, port = await _relay(("127.0.0.1", hub.coap), counter)
        url = f"coap://127.0.0.1:{port}"
    ctx = await aiocoap.Context.create_client_context()
    lanes = Lanes(ctx)
    try:
        await lanes.open()
        hub.enroll(signer)
        hub_cpu, edge_cpu = _cpu_of(hub.proc.pid), time.process_time()
        started = time.perf_counter()
        report = await sync_once(ctx, url, store, pull=False, lanes=lanes)
        seconds = time.perf_counter() - started
        hub_after, edge_cpu = _cpu_of(hub.proc.pid), time.process_time() - edge_cpu
        held = hub.lengths().get(device_id_for(signer.public_key).hex(), 0)
        if held != n:
            raise RuntimeError(f"catch-up left the hub with {held} of {n} records: {report.problems}")
    finally:
        await lanes.close()
        await ctx.shutdown()
        if relay is not None:
            relay.close()
        hub.stop()
        store.close()
    cpu = {"hub_cpu_us_per_record": (hub_after[0] - hub_cpu[0]) / n * 1e6,
           "hub_workers_cpu_us_per_record": (hub_after[1] - hub_cpu[1]) / n * 1e6,
           "edge_cpu_us_per_record": edge_cpu / n * 1e6}
    if tcp:
        return {"records": n, "seconds": round(seconds, 2), "records_per_s": n / seconds, **cpu,
                "bytes_sent_per_record": report.bytes_sent / n, "stored_bytes_per_record": stored / n}
    wire = counter.bytes + UDP_IP_HEADERS * counter.datagrams
    return {"records": n, "seconds": round(seconds, 2), "records_per_s": n / seconds, **cpu,
            "stored_bytes_per_record": stored / n, "coap_bytes_per_record": counter.bytes / n,
            "wire_bytes_per_record": wire / n, "wire_over_stored": wire / stored,
            "datagrams": counter.datagrams, "goal_wire_over_stored": 1.2}


async def catch_up_tcp(root: Path, n: int) -> dict[str, Any]:
    """One edge pushing `n` records to a fresh hub over CoAP over TCP (tools/peers_bench.py compares it)."""
    return await _catch_up(root, n, tcp=True)


async def _heal(root: Path, per_edge: int) -> dict[str, Any]:
    hub = _Hub(root)
    counter = _Counter()
    counter.open = False  # partitioned: the relay drops everything until the heal
    relay, port = await _relay(("127.0.0.1", hub.coap), counter)
    edges = [_edge(root / f"e{i}", 10 + i, per_edge) for i in range(3)]
    agents = [SyncAgent(store, hubs=[f"coap://127.0.0.1:{port}"], interval=0.5, rng=random.Random(i))
              for i, (_, store, _) in enumerate(edges)]
    for signer, _, _ in edges:
        hub.enroll(signer)
    tasks = [asyncio.create_task(a.run()) for a in agents]
    try:
        await asyncio.sleep(3.0)  # rounds fail and back off while partitioned, as in the field
        want = {device_id_for(s.public_key).hex(): per_edge for s, _, _ in edges}
        counter.open = True
        healed = time.perf_counter()
        while True:
            have = await asyncio.to_thread(hub.lengths)
            if all(have.get(d, 0) >= n for d, n in want.items()):
                break
            if time.perf_counter() - healed > 600:
                raise RuntimeError(f"no convergence 600 s after the heal: {have}")
            await asyncio.sleep(0.05)
        converged = time.perf_counter() - healed
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        relay.close()
        hub.stop()
        for _, store, _ in edges:
            store.close()
    return {"edges": 3, "records_per_edge": per_edge, "heal_to_convergence_s": round(converged, 2),
            "partitioned_s": 3.0}


def run(quick: bool = False) -> dict[str, Any]:
    n = 10_000 if quick else 100_000
    root = Path(tempfile.mkdtemp(prefix="jejak-sync-bench-"))
    try:
        raw = raw_verify_rate(5_000 if quick else 20_000)
        catch = asyncio.run(_catch_up(root / "catch", n))
        catch_tcp = asyncio.run(_catch_up(root / "catch-tcp", n, tcp=True))
        heal = asyncio.run(_heal(root / "heal", 500 if quick else 5_000))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    catch["hub_raw_verify_per_s"] = raw
    catch["over_raw_verify"] = catch["records_per_s"] / raw
    catch["over_tcp"] = catch["records_per_s"] / catch_tcp["records_per_s"]
    catch["goal_over_tcp"] = 0.5
    catch_tcp["hub_raw_verify_per_s"] = raw
    catch_tcp["over_raw_verify"] = catch_tcp["records_per_s"] / raw
    catch_tcp["goal_over_raw_verify"] = 0.7
    return {"catch_up_udp": catch, "catch_up_tcp": catch_tcp, "heal": heal}


if __name__ == "__main__":
    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
