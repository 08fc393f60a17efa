"""Edge benchmarks: durable signed appends with group commit, tap-to-ack latency, CoAP submissions, each
beside its ceiling measured in the same run."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiocoap
import aiocoap.resource as resource
import cbor2
from aiocoap.numbers.codes import Code

from ledger import ChainBuilder, Ed25519Signer

from .config import CoapConfig, EdgeConfig, SimConfig
from .daemon import EdgeDaemon, free_udp_port
from .inputs import TapInput, make_machine
from .keys import DeviceKey
from .metrics import Metrics, resident_bytes
from .store import GroupCommit, LmdbLogStore

_CLOCK = 1_763_900_000


def _sign_rates(n: int) -> dict[str, float]:
    key = DeviceKey(os.urandom(32))
    openssl = Ed25519Signer.from_seed(key.seed())
    msg = os.urandom(220)  # about the Sig_structure of a scan record
    t = time.perf_counter()
    for _ in range(n):
        key.sign(msg)
    fast = n / (time.perf_counter() - t)
    t = time.perf_counter()
    for _ in range(n):
        openssl.sign(msg)
    slow = n / (time.perf_counter() - t)
    builder = ChainBuilder(key, clock=lambda: _CLOCK, boot=1)
    builder.genesis()
    body = {"event": "departed", "site": "sppg-01", "checkpoint": "kitchen_exit", "tags": ["04a1b2c3d4e5f6"],
            "staff": "5a000001", "count": 1, "source": "nfc"}
    t = time.perf_counter()
    for _ in range(n):
        builder.append("scan", body)
    built = n / (time.perf_counter() - t)
    return {"sign_per_s": fast, "sign_openssl_per_s": slow, "build_signed_record_per_s": built}


async def _durable_appends(root: Path, n: int, inflight: int) -> dict[str, float]:
    key = DeviceKey(os.urandom(32))
    store = LmdbLogStore(root / "appends", map_size=1 << 30)
    gc = GroupCommit(store, key, clock=lambda: _CLOCK, boot=1)
    await gc.start()
    body = {"event": "departed", "site": "sppg-01", "checkpoint": "kitchen_exit", "tags": ["04a1b2c3d4e5f6"],
            "staff": "5a000001", "count": 1, "source": "nfc"}
    t = time.perf_counter()
    done = 0
    while done < n:
        wave = min(inflight, n - done)
        await asyncio.gather(*(gc.append("scan", body) for _ in range(wave)))
        done += wave
    grouped = n / (time.perf_counter() - t)
    commits = gc.stats["commits"]
    # The same records handed over in lists (a CoAP batch, a sync range): no task per record.
    t = time.perf_counter()
    done = 0
    while done < n:
        wave = min(inflight, n - done)
        await gc.append_many([("scan", body, False)] * wave)
        done += wave
    batched = n / (time.perf_counter() - t)
    # The same writer with one waiter at a time: one fsync'd commit per record.
    single_n = max(100, n // 20)
    t = time.perf_counter()
    for _ in range(single_n):
        await gc.append("scan", body)
    single = single_n / (time.perf_counter() - t)
    await gc.close()
    store.close()
    return {"durable_appends_per_s": grouped, "durable_appends_batched_per_s": batched,
            "records_per_commit": n / max(1, commits),
            "one_commit_per_append_per_s": single}


async def _tap_rig(root: Path, name: str) -> tuple[LmdbLogStore, GroupCommit, TapInput]:
    """A store, its group commit and the tap path over it, with the staff card tapped (taps then log)."""
    store = LmdbLogStore(root / name, map_size=1 << 30)
    gc = GroupCommit(store, DeviceKey(os.urandom(32)), clock=lambda: _CLOCK, boot=1)
    await gc.start()
    config = EdgeConfig(site="sppg-01", data_dir=str(root))
    tap = TapInput(make_machine(config.site, config.checkpoint), functools.partial(gc.append, urgent=True),
                   Metrics(), indicator=lambda fb: None)
    await tap.tap(config.checkpoint.staff[0])
    return store, gc, tap


async def _tap_latency(root: Path, rate: int, seconds: float) -> dict[str, float]:
    store, gc, tap = await _tap_rig(root, "taps")
    total = int(rate * seconds)
    period = 1.0 / rate
    latencies: list[float] = []
    accepted = 0

    async def one(i: int) -> None:
        nonlocal accepted
        t = time.perf_counter()
        fb = await tap.tap(f"04{i:012x}")
        latencies.append(time.perf_counter() - t)
        accepted += fb[-1]["status"] == "accepted"

    start = time.perf_counter()
    tasks = []
    for i in range(total):
        delay = start + i * period - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    await gc.close()
    store.close()
    latencies.sort()
    return {"taps": total, "taps_accepted": accepted, "offered_taps_per_s": rate,
            "achieved_taps_per_s": total / elapsed,
            "tap_to_ack_p50_ms": statistics.median(latencies) * 1000,
            "tap_to_ack_p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
            "tap_to_ack_max_ms": latencies[-1] * 1000}


class _Nothing(resource.Resource):
    """The ceiling: a submit resource that parses nothing, stores nothing and answers 2.01."""

    answer = cbor2.dumps({"id": bytes(32), "seq": 1})

    async def render_post(self, request: aiocoap.Message) -> aiocoap.Message:
        return aiocoap.Message(code=Code.CREATED, content_format=60, payload=self.answer)


async def _drive(port: int, seconds: float, concurrency: int) -> float:
    """`concurrency` clients (one context each: aiocoap keeps one request outstanding per server and
    context, NSTART=1), each submitting one observation per request for `seconds`."""
    contexts = [await aiocoap.Context.create_client_context() for _ in range(concurrency)]
    uri = f"coap://127.0.0.1:{port}/submit"
    count = 0
    deadline = time.perf_counter() + seconds

    async def worker(me: int) -> None:
        nonlocal count
        ctx = contexts[me]
        n = 0
        while time.perf_counter() < deadline:
            body = {"kind": "price", "body": {"market": "pasar-minggu", "commodity": "cabai", "unit": "kg",
                                              "price_idr": 50000 + n, "reporter": f"w{me}"}}
            msg = aiocoap.Message(code=Code.POST, uri=uri, payload=cbor2.dumps(body), content_format=60)
            response = await ctx.request(msg).response
            if response.code == Code.CREATED:
                count += 1
            n += 1

    t = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    rate = count / (time.perf_counter() - t)
    for ctx in contexts:
        await ctx.shutdown()
    return rate


async def _load(port: int, seconds: float, concurrency: int) -> float:
    """Drive the server from another process, as phones would: the server keeps the event loop to itself."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edge.bench", "--load", str(port), str(seconds), str(concurrency),
        stdout=asyncio.subprocess.PIPE, cwd=str(Path(__file__).resolve().parents[1]))
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"load generator failed with exit code {proc.returncode}")
    return float(json.loads(out)["rate"])


async def _coap(root: Path, seconds: float, concurrency: int) -> dict[str, float]:
    site = resource.Site()
    site.add_resource(["submit"], _Nothing())
    port = free_udp_port("127.0.0.1")
    server = await aiocoap.Context.create_server_context(site, bind=("127.0.0.1", port), transports=["udp6"])
    try:
        ceiling = await _load(port, seconds, concurrency)
    finally:
        await server.shutdown()
    daemon = EdgeDaemon(EdgeConfig(data_dir=str(root / "daemon"), coap=CoapConfig(host="127.0.0.1", port=0),
                                   sim=SimConfig(tap_interval_ms=0), sensors=()))
    await daemon.start()
    try:
        rss_before = resident_bytes()
        edge = await _load(daemon.coap_port, seconds, concurrency)
        rss_after = resident_bytes()
        assert daemon.coap is not None  # started above
        held = sum(m.held for m in daemon.coap.message_managers())
        refused = sum(m.refused for m in daemon.coap.message_managers())
    finally:
        await daemon.close()
    # The daemon runs in this process (the load comes from another), so RSS here is the bench process's: the
    # edge plus every part run before it. The edge's own memory under load is the `edge-memory` part, a daemon
    # in a process of its own, and its 64 MB goal is judged there.
    return {"coap_submissions_per_s": edge, "coap_null_resource_per_s": ceiling,
            "coap_fraction_of_ceiling": edge / ceiling if ceiling else 0.0,
            "bench_process_rss_mb_before_load": rss_before / 2**20,
            "bench_process_rss_mb_after_load": rss_after / 2**20,
            "edge_coap_requests": round(edge * seconds), "edge_coap_ids_held": held,
            "edge_coap_refused_5_03": refused}


async def _run(quick: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="jejak-edge-bench-") as tmp:
        root = Path(tmp)
        signing = _sign_rates(3000 if quick else 30000)
        appends = await _durable_appends(root, 4000 if quick else 60000, 2000)
        taps = await _tap_latency(root, 200, 1.0 if quick else 10.0)
        coap = await _coap(root, 1.0 if quick else 5.0, 16)
    return {
        "quick": quick,
        **signing,
        **appends,
        "appends_fraction_of_build_rate": appends["durable_appends_per_s"] / signing["build_signed_record_per_s"],
        **taps,
        **coap,
        "goals": {"durable_appends_per_s": 20000, "tap_to_ack_p99_ms": 10, "coap_fraction_of_ceiling": 0.6},
        "notes": "CoAP load comes from a separate process with one client context per concurrent sender; LMDB with "
                 "sync=True (fsync per commit); signing with libsodium when PyNaCl is installed",
    }


_SCAN = {"event": "departed", "site": "sppg-01", "checkpoint": "kitchen_exit", "tags": ["04a1b2c3d4e5f6"],
         "staff": "5a000001", "count": 1, "source": "nfc"}


async def _submitters(root: Path, n: int, submitters: int) -> dict[str, float]:
    """`submitters` concurrent writers, each appending one record at a time until `n` are durable."""
    key = DeviceKey(os.urandom(32))
    store = LmdbLogStore(root / "submitters", map_size=1 << 30)
    gc = GroupCommit(store, key, clock=lambda: _CLOCK, boot=1)
    await gc.start()
    left = n

    async def writer() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await gc.append("scan", _SCAN)

    commits = gc.stats["commits"]
    cpu, t = time.process_time(), time.perf_counter()
    await asyncio.gather(*(writer() for _ in range(submitters)))
    elapsed, cpu = time.perf_counter() - t, time.process_time() - cpu
    commits = gc.stats["commits"] - commits
    await gc.close()
    store.close()
    return {"durable_appends_per_s": n / elapsed, "submitters": submitters,
            "records_per_commit": n / max(1, commits), "cpu_us_per_record": cpu / n * 1e6}


async def _taps_under_load(root: Path, rate: int, seconds: float, submitters: int) -> dict[str, float]:
    """Taps at `rate` a second through the tap path while `submitters` concurrent writers keep the group
    commit full: how long a tap waits behind submitted batches, and what the submitters get meanwhile."""
    store, gc, tap = await _tap_rig(root, "mixed")
    running = True
    appended = 0

    async def writer() -> None:
        nonlocal appended
        while running:
            await gc.append("scan", _SCAN)
            appended += 1

    writers = [asyncio.create_task(writer()) for _ in range(submitters)]
    await asyncio.sleep(0.2)  # the queue is full before the first tap
    latencies: list[float] = []
    # Records made durable before a tap's own, counted from the log's length when it came: what a tap waits
    # behind, in a unit that does not depend on how busy the machine is.
    ahead: list[int] = []
    accepted = 0

    async def one(i: int) -> None:
        nonlocal accepted
        t, durable = time.perf_counter(), 1 + gc.stats["records"]  # genesis is not counted in stats
        fb = await tap.tap(f"05{i:012x}")
        latencies.append(time.perf_counter() - t)
        if "seq" in fb[-1]:
            ahead.append(fb[-1]["seq"] - durable)
        accepted += fb[-1]["status"] == "accepted"

    total = int(rate * seconds)
    commits, before, cpu = gc.stats["commits"], appended, time.process_time()
    start = time.perf_counter()
    taps = []
    for i in range(total):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        taps.append(asyncio.create_task(one(i)))
    await asyncio.gather(*taps)
    elapsed = time.perf_counter() - start
    records = appended - before + accepted
    commits = gc.stats["commits"] - commits
    cpu = time.process_time() - cpu
    running = False
    await asyncio.gather(*writers)
    await gc.close()
    store.close()
    latencies.sort()
    ahead.sort()
    return {"loaded_taps": total, "loaded_taps_accepted": accepted, "loaded_taps_per_s": total / elapsed,
            "loaded_durable_appends_per_s": (appended - before) / elapsed,
            "loaded_records_per_commit": records / max(1, commits),
            "loaded_cpu_us_per_record": cpu / max(1, records) * 1e6,
            "loaded_tap_to_ack_p50_ms": statistics.median(latencies) * 1000,
            "loaded_tap_to_ack_p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
            "loaded_tap_to_ack_max_ms": latencies[-1] * 1000,
            "loaded_records_ahead_of_tap_p50": ahead[len(ahead) // 2] if ahead else 0,
            "loaded_records_ahead_of_tap_p99": ahead[min(len(ahead) - 1, int(len(ahead) * 0.99))] if ahead else 0}


async def _storage(quick: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="jejak-edge-storage-") as tmp:
        root = Path(tmp)
        appends = await _submitters(root, 3000 if quick else 30000, 256)
        taps = await _tap_latency(root, 200, 2.0 if quick else 10.0)
        loaded = await _taps_under_load(root, 200, 2.0 if quick else 10.0, 256)
    return {**appends, **taps, **loaded}


def storage(quick: bool) -> dict[str, Any]:
    """Durable appends with concurrent submitters, and tap-to-ack latency at 200 taps/s alone and while the
    submitters keep the group commit full, in this process (run it with tools/slow_storage.py's shim
    preloaded to give fsync an SD card's latency). The submitters and the tap source are coroutines of this
    process, as the daemon's CoAP handlers and reader loop are: their CPU is counted in the figures."""
    return asyncio.run(_storage(quick))


def run(quick: bool) -> dict[str, Any]:
    """Measure and return the figures (see _run); the caller writes them out."""
    return asyncio.run(_run(quick))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--load"]:
        port, seconds, concurrency = int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
        print(json.dumps({"rate": asyncio.run(_drive(port, seconds, concurrency))}))
    elif sys.argv[1:2] == ["--storage"]:
        print(json.dumps(storage("--quick" in sys.argv)))
    else:
        print(json.dumps(run("--quick" in sys.argv), indent=2))
