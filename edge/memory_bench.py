"""The edge's memory under sustained CoAP requests: a real `jejak edge run` process, the requests a LAN sends
at a fixed offered rate from a separate load process, and the edge's resident memory sampled as it goes."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import aiocoap
import cbor2
from aiocoap.numbers.codes import Code
from aiocoap.numbers.types import CON

from ledger.sync import encode_heads

from .config import CheckpointConfig
from .daemon import free_udp_port

MB = 2**20
SERVICE_UNAVAILABLE = int(Code.SERVICE_UNAVAILABLE)
# A slope below this is "steady": a leak of 1 KB a request at 500 requests/s would be 29 MB/min.
STEADY_MB_PER_MIN = 0.5
GOAL_MB = 64

# What one edge on a LAN is asked, in ten requests: phones' submissions, reader taps, a dashboard's status,
# a peer's sync round and a phone watching the log's head.
MIX = ("submit", "submit", "submit", "submit", "submit", "tap", "tap", "status", "heads", "head")

# RFC 7252's transmission parameters, as a device would use them.
ACK_TIMEOUT_S = 2.0
MAX_RETRANSMIT = 4
GIVE_UP_S = 45.0


@dataclass(slots=True)
class _Outstanding:
    raw: bytes
    sent: float
    retransmit_at: float
    attempts: int = 0
    acked: bool = False


@dataclass(slots=True)
class LoadCounts:
    """What the load process sent and what came back."""

    sent: int = 0
    answered: int = 0
    ok: int = 0
    refused_5_03: int = 0
    other_errors: int = 0
    unanswered: int = 0
    retransmissions: int = 0
    sending_s: float = 0.0  # from the first request sent to the last
    latencies: list[float] = field(default_factory=list)

    def progress(self) -> dict[str, int]:
        return {"sent": self.sent, "answered": self.answered, "refused_5_03": self.refused_5_03}


class _Device(asyncio.DatagramProtocol):
    """One UDP socket, as one device on the LAN: its own message ids and tokens, requests pipelined."""

    def __init__(self, counts: LoadCounts) -> None:
        self.counts = counts
        self.transport: asyncio.DatagramTransport | None = None
        self.mid = int.from_bytes(os.urandom(2), "big")
        self.token = 0
        self.pending: dict[bytes, _Outstanding] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def send(self, request: aiocoap.Message, now: float) -> None:
        assert self.transport is not None
        self.mid = (self.mid + 1) & 0xFFFF
        self.token += 1
        request.mtype, request.mid, request.token = CON, self.mid, self.token.to_bytes(4, "big")
        raw = request.encode()
        self.pending[request.token] = _Outstanding(raw=raw, sent=now, retransmit_at=now + ACK_TIMEOUT_S)
        self.transport.sendto(raw)
        self.counts.sent += 1

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if len(data) < 4:
            return
        mtype, tkl, code = (data[0] >> 4) & 3, data[0] & 0x0F, data[1]
        token = data[4:4 + tkl]
        if mtype == int(CON):  # a separate response: acknowledge it, as a client must
            assert self.transport is not None
            self.transport.sendto(bytes((0x60, 0)) + data[2:4])
        waiting = self.pending.get(token)
        if waiting is None:
            return  # an answer to a retransmission already answered
        if code == 0:  # an empty ACK: the answer comes later, stop retransmitting
            waiting.acked = True
            return
        del self.pending[token]
        counts = self.counts
        counts.answered += 1
        counts.latencies.append(time.perf_counter() - waiting.sent)
        if code >> 5 == 2:
            counts.ok += 1
        elif code == SERVICE_UNAVAILABLE:
            counts.refused_5_03 += 1
        else:
            counts.other_errors += 1

    def sweep(self, now: float) -> None:
        """Retransmit what got no ACK in time (doubling the wait), give up on what never will be answered."""
        assert self.transport is not None
        for token, waiting in list(self.pending.items()):
            if now - waiting.sent > GIVE_UP_S:
                del self.pending[token]
                self.counts.unanswered += 1
            elif not waiting.acked and now >= waiting.retransmit_at and waiting.attempts < MAX_RETRANSMIT:
                waiting.attempts += 1
                waiting.retransmit_at = now + ACK_TIMEOUT_S * 2 ** waiting.attempts
                self.transport.sendto(waiting.raw)
                self.counts.retransmissions += 1


def _requests(staff: str) -> Callable[[int], aiocoap.Message]:
    """The n-th request of the mix; every observation and tag is new, so none is folded into another."""
    heads = encode_heads([])

    def make(n: int) -> aiocoap.Message:
        kind = MIX[n % len(MIX)]
        if kind == "submit":
            body = {"kind": "price", "body": {"market": "pasar-minggu", "commodity": "cabai", "unit": "kg",
                                              "price_idr": 50_000 + n, "reporter": f"p{n % 97}"}}
            return aiocoap.Message(code=Code.POST, uri_path=("submit",), content_format=60,
                                   payload=cbor2.dumps(body))
        if kind == "tap":  # the staff card now and then, else a container's tag
            uid = staff if n % 500 < len(MIX) else f"04{n:012x}"
            return aiocoap.Message(code=Code.POST, uri_path=("sim", "tap"), content_format=60,
                                   payload=cbor2.dumps({"uid": uid}))
        if kind == "status":
            return aiocoap.Message(code=Code.GET, uri_path=("status",))
        if kind == "heads":
            return aiocoap.Message(code=Code.POST, uri_path=("sync", "heads"), content_format=60,
                                   payload=heads)
        return aiocoap.Message(code=Code.GET, uri_path=("log", "own"))

    return make


async def load(port: int, rate: float, total: int, devices: int,
               report: Callable[[dict[str, Any]], None], window: int | None = None) -> LoadCounts:
    """Send `total` requests of MIX at `rate` a second over `devices` sockets to 127.0.0.1:`port`, then wait
    for the answers; `report` gets the counts every half second. With a `window`, a device has at most that
    many requests unanswered (RFC 7252's NSTART is 1), so `rate` is a ceiling: an edge slower than it (on a busy
    machine) is sent what it answers, where a fixed offered rate would pile requests and retransmissions up in
    its socket and its memory until they were given up."""
    loop = asyncio.get_running_loop()
    counts = LoadCounts()
    socks = []
    for _ in range(devices):
        _, proto = await loop.create_datagram_endpoint(lambda: _Device(counts), remote_addr=("127.0.0.1", port))
        socks.append(proto)
    make = _requests(CheckpointConfig().staff[0])
    start = time.perf_counter()
    next_sweep = start
    while counts.sent < total:
        now = time.perf_counter()
        due = min(total, int((now - start) * rate) + 1) - counts.sent
        for _ in range(due):
            n = counts.sent
            sock = next((d for d in (socks[(n + i) % devices] for i in range(devices))
                         if window is None or len(d.pending) < window), None)
            if sock is None:
                break  # every device waits for an answer
            sock.send(make(n), now)
        if now >= next_sweep:
            for sock in socks:
                sock.sweep(now)
            report(counts.progress())
            next_sweep = now + 0.5
        await asyncio.sleep(0.002)
    counts.sending_s = time.perf_counter() - start
    while any(sock.pending for sock in socks):
        now = time.perf_counter()
        for sock in socks:
            sock.sweep(now)
        report(counts.progress())
        await asyncio.sleep(0.1)
    for sock in socks:
        assert sock.transport is not None
        sock.transport.close()
    return counts


def _load_main(argv: list[str]) -> int:
    """The load process: progress as JSON lines on stdout, the totals last."""
    p = argparse.ArgumentParser(prog="python -m edge.memory_bench")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--rate", type=float, required=True)
    p.add_argument("--total", type=int, required=True)
    p.add_argument("--devices", type=int, default=32)
    p.add_argument("--window", type=int, help="requests a device may have unanswered (default: no limit)")
    args = p.parse_args(argv)

    def report(line: dict[str, Any]) -> None:
        print(json.dumps(line), flush=True)

    counts = asyncio.run(load(args.port, args.rate, args.total, args.devices, report, args.window))
    lat = sorted(counts.latencies) or [0.0]
    report({"done": True, "sent": counts.sent, "answered": counts.answered, "ok": counts.ok,
            "refused_5_03": counts.refused_5_03, "other_errors": counts.other_errors,
            "unanswered": counts.unanswered, "retransmissions": counts.retransmissions,
            "sending_s": counts.sending_s,
            "latency_p50_ms": statistics.median(lat) * 1000,
            "latency_p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000})
    return 0


def memory(pid: int) -> dict[str, float]:
    """The process's resident memory in MB: all of it, its own (anonymous) pages, mapped files and shared memory,
    and of those the LMDB store's pages mapped in (shared memory on tmpfs, page cache on a disk)."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)

    def mb(name: str) -> float:
        return int(fields[name].split()[0]) * 1024 / MB

    return {"rss": mb("VmRSS"), "anon": mb("RssAnon"), "file": mb("RssFile"), "shmem": mb("RssShmem"),
            "store_mapped": mapped_mb(pid, "/data.mdb")}


def mapped_mb(pid: int, suffix: str) -> float:
    """Resident MB of the process's mappings of files whose path ends with `suffix`, from /proc/PID/smaps."""
    total, counting = 0, False
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        if line[:1] in "0123456789abcdef" and "-" in line.split(" ", 1)[0]:
            counting = line.rstrip().endswith(suffix)
        elif counting and line.startswith("Rss:"):
            total += int(line.split()[1])
    return total * 1024 / MB


def cpu_seconds(pid: int) -> float:
    parts = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True, kw_only=True)
class Sample:
    at_s: float  # since the load started
    answered: int
    rss: float
    anon: float
    file: float
    shmem: float
    store_mapped: float


def slope_mb_per_min(samples: list[Sample], what: str) -> float:
    """Least-squares slope of `what` over the samples, in MB a minute."""
    if len(samples) < 2:
        return 0.0
    xs = [s.at_s / 60 for s in samples]
    ys = [getattr(s, what) for s in samples]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    var = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var if var else 0.0


def edge_config(path: Path, data_dir: Path, port: int, *, dedup_lifetime_s: int | None = None) -> Path:
    """An edge on loopback with the simulated reader driven only over CoAP, no sensors, no mDNS, no hub."""
    limits = f"[limits]\ncoap_dedup_lifetime_s = {dedup_lifetime_s}\n" if dedup_lifetime_s else ""
    path.write_text(f'site = "sppg-01"\ndata_dir = "{data_dir}"\nsensors = []\n'
                    f'[coap]\nhost = "127.0.0.1"\nport = {port}\n[sync]\nmdns = false\n'
                    f'[sim]\ntap_interval_ms = 0\n[log]\nlevel = "warning"\n{limits}')
    return path


class EdgeUnderLoad:
    """`jejak edge run` in its own process, loaded from another, its memory sampled every `sample_s`."""

    def __init__(self, root: Path, *, dedup_lifetime_s: int | None = None, sample_s: float = 2.0) -> None:
        self.root = root
        self.port = free_udp_port("127.0.0.1")
        self.config = edge_config(root / "edge.toml", root / "data", self.port, dedup_lifetime_s=dedup_lifetime_s)
        self.sample_s = sample_s
        self.samples: list[Sample] = []
        self.progress: dict[str, Any] = {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = root / "edge.log"

    def start(self, timeout: float = 60.0) -> None:
        repo = Path(__file__).resolve().parents[1]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "edge.cli", "run", "--config", str(self.config)],
                                         cwd=repo, stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        # Ready when the CoAP port answers (the log is quiet at level warning).
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"edge exited with {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            if asyncio.run(_answers(self.port)):
                return
        raise RuntimeError(f"edge did not answer on port {self.port} within {timeout:.0f} s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    async def drive(self, rate: float, total: int, devices: int = 32, window: int | None = None) -> dict[str, Any]:
        """Load at `rate` (at most `window` unanswered a device, see `load`) until `total` requests are answered
        or given up; the load process's totals."""
        assert self.proc is not None
        pid = self.proc.pid
        self.samples.append(Sample(at_s=0.0, answered=0, **memory(pid)))
        loader = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "edge.memory_bench", "--port", str(self.port), "--rate", str(rate),
            "--total", str(total), "--devices", str(devices), *(("--window", str(window)) if window else ()),
            stdout=asyncio.subprocess.PIPE, cwd=str(Path(__file__).resolve().parents[1]))
        start = time.perf_counter()
        last: dict[str, Any] = {}

        async def sample() -> None:
            while True:
                await asyncio.sleep(self.sample_s)
                self.samples.append(Sample(at_s=time.perf_counter() - start,
                                           answered=int(self.progress.get("answered", 0)), **memory(pid)))

        sampler = asyncio.create_task(sample())
        try:
            assert loader.stdout is not None
            async for line in loader.stdout:
                last = json.loads(line)
                self.progress = last
        finally:
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
            if loader.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    loader.kill()
            await loader.wait()
        if not last.get("done"):
            raise RuntimeError(f"load process failed with exit code {loader.returncode}")
        self.samples.append(Sample(at_s=time.perf_counter() - start, answered=int(last["answered"]), **memory(pid)))
        return last


async def _answers(port: int) -> bool:
    ctx = await aiocoap.Context.create_client_context()
    try:
        msg = aiocoap.Message(code=Code.GET, uri=f"coap://127.0.0.1:{port}/status")
        async with asyncio.timeout(2):
            return bool((await ctx.request(msg).response).code.is_successful())
    except Exception:
        await asyncio.sleep(0.2)
        return False
    finally:
        await ctx.shutdown()


def _at(samples: list[Sample], seconds: float) -> Sample:
    return min(samples, key=lambda s: abs(s.at_s - seconds))


def figures(samples: list[Sample], totals: dict[str, Any], *, rate: float, minutes: float,
            cpu_s: float) -> dict[str, Any]:
    """The report: rates, refusals, memory at the start, at one minute and over the last half, and slopes."""
    loaded = [s for s in samples if s.at_s > 0]
    end = loaded[-1].at_s if loaded else 0.0
    last_half = [s for s in loaded if s.at_s >= end / 2] or loaded
    start, one_min = samples[0], _at(samples, min(60.0, end / 2))
    out: dict[str, Any] = {
        "offered_requests_per_s": rate, "minutes": minutes,
        "achieved_requests_per_s": totals["answered"] / totals["sending_s"] if totals.get("sending_s") else 0.0,
        "requests": totals["sent"], "answered": totals["answered"], "ok": totals["ok"],
        "refused_5_03": totals["refused_5_03"], "other_errors": totals["other_errors"],
        "unanswered": totals["unanswered"], "retransmissions": totals["retransmissions"],
        "latency_p50_ms": totals["latency_p50_ms"], "latency_p99_ms": totals["latency_p99_ms"],
        "edge_cpu_fraction_of_a_core": cpu_s / end if end else 0.0,
        "one_minute_at_s": round(one_min.at_s, 1),
    }
    for what in ("rss", "anon", "file", "shmem", "store_mapped"):
        out[f"{what}_mb_start"] = getattr(start, what)
        out[f"{what}_mb_at_1min"] = getattr(one_min, what)
        out[f"{what}_mb_max_last_half"] = max(getattr(s, what) for s in last_half)
        out[f"{what}_mb_per_min_last_half"] = slope_mb_per_min(last_half, what)
    out["rss_steady"] = out["rss_mb_per_min_last_half"] <= STEADY_MB_PER_MIN
    out["anon_steady"] = out["anon_mb_per_min_last_half"] <= STEADY_MB_PER_MIN
    out["goals"] = {"rss_mb_max_last_half": GOAL_MB, "steady_below_mb_per_min": STEADY_MB_PER_MIN}
    out["samples"] = len(samples)
    return out


def measure(root: Path, *, rate: float, minutes: float, devices: int = 32, sample_s: float = 2.0,
            dedup_lifetime_s: int | None = None) -> dict[str, Any]:
    edge = EdgeUnderLoad(root, dedup_lifetime_s=dedup_lifetime_s, sample_s=sample_s)
    edge.start()
    assert edge.proc is not None
    try:
        cpu = cpu_seconds(edge.proc.pid)
        totals = asyncio.run(edge.drive(rate, round(rate * minutes * 60), devices))
        cpu = cpu_seconds(edge.proc.pid) - cpu
        data = root / "data" / "store" / "data.mdb"
        store_mb = data.stat().st_size / MB if data.exists() else 0.0
    finally:
        edge.stop()
    return {**figures(edge.samples, totals, rate=rate, minutes=minutes, cpu_s=cpu), "store_mb": store_mb}


def run(quick: bool, minutes: float | None = None, rate: float | None = None) -> dict[str, Any]:
    """`jejak bench --only edge-memory`: 10 minutes at 500 requests/s unless told (--quick: 20 s at 200/s)."""
    minutes = minutes if minutes is not None else (1 / 3 if quick else 10.0)
    rate = rate if rate is not None else (200.0 if quick else 500.0)
    # The store goes on tmpfs where there is one, as for the slow-storage part: on a shared machine the disk's
    # fsync swings with other work, and a stalled commit would be measured as queued requests' memory.
    memory_dir = Path("/dev/shm")
    where = str(memory_dir) if memory_dir.is_dir() and os.access(memory_dir, os.W_OK) else None
    with tempfile.TemporaryDirectory(prefix="jejak-edge-memory-", dir=where) as tmp:
        out = measure(Path(tmp), rate=rate, minutes=minutes, sample_s=1.0 if quick else 2.0)
    out["store_dir"] = where or tempfile.gettempdir()
    out["notes"] = ("jejak edge run in its own process; the load from another: 32 sockets, confirmable requests "
                    "pipelined, 5 submissions, 2 taps, a status, a sync heads and a log head in every 10. "
                    "RssAnon is the edge's own memory, RssFile its libraries; the store's pages mapped in show as "
                    "RssShmem on tmpfs (RssFile on a disk), counted apart from smaps as store_mapped_mb_*, and are unmapped after "
                    "every write and twice a second")
    return out


def summary(f: dict[str, Any]) -> list[str]:
    return [f"{f['achieved_requests_per_s']:,.0f} of {f['offered_requests_per_s']:,.0f} requests/s for "
            f"{f['minutes']:g} min ({f['requests']:,} requests, {f['refused_5_03']} refused with 5.03, "
            f"{f['unanswered']} unanswered), edge CPU {f['edge_cpu_fraction_of_a_core']:.2f} of a core",
            f"RSS {f['rss_mb_start']:.1f} -> {f['rss_mb_at_1min']:.1f} MB at 1 min, max {f['rss_mb_max_last_half']:.1f} "
            f"MB over the last half ({f['rss_mb_per_min_last_half']:+.2f} MB/min); goal < {GOAL_MB} MB steady",
            f"RssAnon {f['anon_mb_start']:.1f} -> {f['anon_mb_at_1min']:.1f} MB at 1 min, max "
            f"{f['anon_mb_max_last_half']:.1f} MB over the last half ({f['anon_mb_per_min_last_half']:+.2f} MB/min); "
            f"RssFile max {f['file_mb_max_last_half']:.1f} MB, RssShmem max {f['shmem_mb_max_last_half']:.1f} MB; "
            f"store pages mapped max {f['store_mapped_mb_max_last_half']:.2f} MB (store {f['store_mb']:.1f} MB in "
            f"{f['store_dir']})"]


if __name__ == "__main__":
    sys.exit(_load_main(sys.argv[1:]))
