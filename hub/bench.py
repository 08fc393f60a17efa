"""Hub benchmarks: verified ingest against the raw verify rate, proofs at scale, LMDB against PostgreSQL."""

from __future__ import annotations

import asyncio
import gzip
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import cbor2

from ledger import (
    ChainBuilder,
    ChainState,
    Ed25519Signer,
    MerkleTree,
    decode_record,
    link,
    verify_consistency,
    verify_inclusion,
)
from ledger.bench import raw_verify, raw_verify_on_cores, raw_verify_rate
from ledger.enroll import make_enroll_request
from ledger.merkle import leaf_hash
from ledger.sync import RequestSize

from .chain import chain_health
from .mbg import Plan
from .mbg.sim import simulate_days
from .service import Hub, IngestResult, log_tree
from .store import _U64, Batch, DeviceInfo, LmdbHubStore, LogAppend
from .tiers import RegionFollower, TierLinks, UpstreamHolder
from .verify import CrossLogVerifier
from .views import Views


def _records(n: int, seed: int) -> tuple[Ed25519Signer, list[bytes]]:
    signer = Ed25519Signer.from_seed(seed.to_bytes(32, "big"))
    builder = ChainBuilder(signer, clock=lambda: 1_763_900_000, boot=1)
    body = {"event": "departed", "site": "sppg-01", "checkpoint": "kitchen_exit", "staff": "04a1b2c3",
            "tags": ["e0040150a1b2c3d4"], "school": "sd-01"}
    raws = [builder.genesis().raw] + [builder.append("scan", body).raw for _ in range(n - 1)]
    return signer, raws


def _hub_with(store: Any, signer: Ed25519Signer) -> tuple[Hub, bytes]:
    hub = Hub(store, Ed25519Signer.from_seed(b"\x77" * 32), clock=lambda: 1_763_900_000)
    req = make_enroll_request(signer, site="sppg-01", role="kitchen_exit", name="bench", time=0, hub_id=hub.hub_id)
    hub.approve(hub.enroll(req).device_id)
    return hub, hub.store.devices()[0].device_id


def _ingest_rate(store: Any, signer: Ed25519Signer, raws: list[bytes], chunk: int = 512) -> float:
    """Records/s through Hub.ingest, one call (and one commit) per request of `chunk` records: an edge's push."""
    hub, device_id = _hub_with(store, signer)
    started = time.perf_counter()
    for i in range(0, len(raws), chunk):
        result = hub.ingest(device_id, raws[i:i + chunk])
        assert result.problem is None, result.problem
    return len(raws) / (time.perf_counter() - started)


def _batched_rate(store: Any, signer: Ed25519Signer, raws: list[bytes], verifier: CrossLogVerifier | None,
                  chunk: int = 512, per_call: int = 16) -> tuple[float, float, float, float, float]:
    """Records/s through Hub.ingest_many as a national hub's pull of a region calls it: requests of `chunk`
    records, `per_call` of them merged and committed together (a pull's worth), signatures checked in-process
    or ahead on the verifier's workers (the next call's sent before this one is merged and committed, as the
    pull's `check_ahead` does). Also the CPU time per record of the writer's process, of the workers and of the
    store's PostgreSQL server processes (`_server_cpu`), in microseconds, and the share of the records whose
    signatures the writer checked itself, of tasks not yet sent to the workers (CrossLogVerifier._help)."""
    hub, device_id = _hub_with(store, signer)
    items = [(device_id, raws[i:i + chunk]) for i in range(0, len(raws), chunk)]
    workers = verifier.cpu_seconds() if verifier is not None else 0.0
    taken = verifier.taken if verifier is not None else 0
    server = _server_cpu(store)
    cpu = time.process_time()
    started = time.perf_counter()
    calls = [items[j:j + per_call] for j in range(0, len(items), per_call)]
    guessed: dict[bytes, bytes] = {}
    checks = hub.checks_ahead(calls[0], verifier, guessed)
    for k, call in enumerate(calls):
        following = hub.checks_ahead(calls[k + 1], verifier, guessed) if k + 1 < len(calls) else []
        for result in hub.ingest_many(call, checks=checks):
            assert isinstance(result, IngestResult) and result.problem is None, result
        checks = following
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu
    workers = (verifier.cpu_seconds() - workers) if verifier is not None else 0.0
    taken = (verifier.taken - taken) if verifier is not None else 0
    server = _server_cpu(store) - server
    n = len(raws)
    return n / elapsed, cpu / n * 1e6, workers / n * 1e6, server / n * 1e6, taken / n


def _server_cpu(store: Any) -> float:
    """CPU seconds so far of the PostgreSQL backends that serve the store's connections (its reads' and its
    commits'), read from /proc where the server runs on this machine; 0 for LMDB or a server elsewhere."""
    total = 0.0
    for conn in (getattr(store, "_conn", None), getattr(store, "_committer", None)):
        if conn is None:
            continue
        try:
            with open(f"/proc/{conn.info.backend_pid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def many_pushers(edges: int, pushes: int, size: int) -> dict[str, Any]:
    """A burst of small pushes from many edges at once (a morning's taps), through `Hub.ingest` on threads as the
    CoAP resources call it, against the same pushes made one at a time: with a group commit the pushes that
    wait while one commits share the next commit, so a burst costs fewer synced writes than pushes."""
    logs = []
    for e in range(edges):
        signer = Ed25519Signer.from_seed((e + 1000).to_bytes(32, "big"))
        builder = ChainBuilder(signer, clock=lambda: 1_763_900_000, boot=1)
        body = {"event": "departed", "site": "sppg-01", "checkpoint": "kitchen_exit", "staff": "04a1b2c3",
                "tags": [f"e00401{e:010x}"], "school": "sd-01"}
        logs.append((signer, [builder.genesis().raw] + [builder.append("scan", body).raw
                                                         for _ in range(pushes * size - 1)]))
    out: dict[str, Any] = {"edges": edges, "pushes": edges * pushes, "records_per_push": size}
    for name, concurrent in (("one_at_a_time", False), ("all_at_once", True)):
        with tempfile.TemporaryDirectory() as tmp:
            out[name] = _pushes(LmdbHubStore(tmp + "/hub"), logs, size, concurrent)
    out["all_at_once_vs_one_at_a_time"] = out["all_at_once"]["pushes_per_s"] / out["one_at_a_time"]["pushes_per_s"]
    return out


def _pushes(store: LmdbHubStore, logs: list[tuple[Ed25519Signer, list[bytes]]], size: int,
            concurrent: bool) -> dict[str, float]:
    """Each log pushed in ranges of `size` through `Hub.ingest`, the logs one after another or each from a
    thread of its own; pushes a second and commits counted."""
    hub = Hub(store, Ed25519Signer.from_seed(b"\x77" * 32), clock=lambda: 1_763_900_000)
    ids = []
    for signer, _ in logs:
        req = make_enroll_request(signer, site="sppg-01", role="kitchen_exit", name="bench", time=0, hub_id=hub.hub_id)
        ids.append(hub.enroll(req).device_id)
        hub.approve(ids[-1])
    commits = 0
    commit = store.commit

    def counted(batch: Batch) -> int:
        nonlocal commits
        commits += 1
        return commit(batch)

    def push(device_id: bytes, raws: list[bytes]) -> None:
        for i in range(0, len(raws), size):
            assert hub.ingest(device_id, raws[i:i + size]).problem is None

    store.commit = counted  # type: ignore[method-assign]
    started = time.perf_counter()
    if concurrent:
        with ThreadPoolExecutor(len(logs)) as pool:
            list(pool.map(push, ids, [raws for _, raws in logs]))
    else:
        for device_id, (_, raws) in zip(ids, logs, strict=True):
            push(device_id, raws)
    elapsed = time.perf_counter() - started
    assert len(hub.tree) == store.size()
    store.close()
    n = sum(len(raws) for _, raws in logs) // size
    return {"pushes_per_s": n / elapsed, "records_per_s": n * size / elapsed, "commits": commits,
            "pushes_per_commit": n / commits}


def ingest_on_cores(n: int, stores: dict[str, Callable[[], Any]], *, rounds: int = 3) -> dict[str, Any]:
    """Ingest on one core and on every core against the raw verify rate of the cores used (as cores times one
    core's rate, and as measured on all of them at once), per store, side by side in one run. One core:
    signatures checked in the writer's process. Every core: checked ahead by one worker process per core while
    the writer decodes, links, commits and appends to the tree (the writer shares the cores with the workers).

    A running hub is warm: its heap has grown and its code has run. So each store first ingests once uncounted
    (a fresh process's first ingest pays for its heap's page faults, about a fifth more here), then `rounds`
    rounds each measure raw verify, one core and every core in turn, as load on a shared machine drifts; every
    figure is the median of the rounds', and the `..._rounds` lists keep each round's ratio of the goals.

    On a machine shared with other work the wall-clock ratios say little (the second core may not be free),
    so the CPU time per record is given too: the writer's and the workers'. On idle cores the rate on every
    core is at most cores / max(writer, (writer + workers) / cores) of a microsecond budget per record, the
    figure `cores_cpu_bound_per_s`. Nothing is pinned: PostgreSQL's server processes run on whichever core is free
    (in the one-core figure, mostly the core the writer leaves), and their CPU, left out of the figures above,
    is `one_core_server_cpu_us`."""
    signer, raws = _records(n, 5)
    cores = os.cpu_count() or 1
    out: dict[str, Any] = {"records": n, "cores": cores, "rounds": rounds}
    verifier = CrossLogVerifier(workers=cores)
    try:
        verifier.start()  # outside the timing
        for name, make in stores.items():
            try:
                _measured(make, lambda store: _batched_rate(store, signer, raws, None))  # the warm-up
                measured = [_ingest_round(make, signer, raws, verifier, cores) for _ in range(rounds)]
            except Exception as exc:  # the figure is missing, and the table says why
                out[name] = f"not measured: {exc}"
                continue
            out[name] = {key: statistics.median(r[key] for r in measured) for key in measured[0]}
            for key in ("one_core_vs_raw_verify", "cores_vs_raw_verify_of_cores", "cores_vs_raw_verify_on_cores"):
                out[name][f"{key}_rounds"] = [round(r[key], 3) for r in measured]
    finally:
        verifier.close()
    return out


def _ingest_round(make: Callable[[], Any], signer: Ed25519Signer, raws: list[bytes], verifier: CrossLogVerifier,
                  cores: int) -> dict[str, float]:
    """One round of `ingest_on_cores`: raw verify on one core and on every core at once, then ingest on one core,
    then on every core, each on a new store."""
    raw, raw_cpu_us = raw_verify(min(len(raws), 20_000))
    together, together_cpu_us = raw_verify_on_cores(min(len(raws), 20_000), cores)
    one, one_cpu, _, server, _ = _measured(make, lambda store: _batched_rate(store, signer, raws, None))
    every, writer, workers, _, taken = _measured(make, lambda store: _batched_rate(store, signer, raws, verifier))
    bound = 1e6 / max(writer, (writer + workers) / cores)
    return {"raw_verify_per_s": raw, "one_core_per_s": one, "one_core_vs_raw_verify": one / raw,
            "cores_per_s": every, "cores_vs_one_core": every / one, "cores_vs_raw_verify_of_cores": every / (raw * cores),
            "raw_verify_on_cores_per_s": together, "raw_verify_on_cores_cpu_us": together_cpu_us,
            "raw_verify_on_cores_vs_cores_times_one": together / (raw * cores),
            "cores_vs_raw_verify_on_cores": every / together,
            "raw_verify_cpu_us": raw_cpu_us, "one_core_cpu_us": one_cpu, "one_core_server_cpu_us": server,
            "one_core_cpu_vs_raw_verify_cpu": raw_cpu_us / one_cpu,
            "cores_writer_cpu_us": writer, "cores_workers_cpu_us": workers, "cores_taken_by_writer": taken,
            "cores_cpu_bound_per_s": bound, "cores_cpu_bound_vs_one_core": bound * one_cpu / 1e6,
            "cores_cpu_bound_vs_raw_verify_of_cores": bound * raw_cpu_us / 1e6 / cores}


def _measured(make: Callable[[], Any], fn: Callable[[Any], Any]) -> Any:
    store = make()
    try:
        return fn(store)
    finally:
        if hasattr(store, "drop"):
            store.drop()
        store.close()


def _proofs(n: int) -> dict[str, float]:
    tree = MerkleTree(leaf_hash(i.to_bytes(8, "big")) for i in range(n))
    root = tree.root()
    count = 2000
    started = time.perf_counter()
    paths = [(i * 7919 % n, tree.inclusion_proof(i * 7919 % n)) for i in range(count)]
    gen = count / (time.perf_counter() - started)
    started = time.perf_counter()
    for index, path in paths:
        verify_inclusion(tree.leaf(index), index, n, path, root)
    ver = count / (time.perf_counter() - started)
    started = time.perf_counter()
    cons = [(m, tree.consistency_proof(m)) for m in range(n // 3, n // 3 + 500)]
    cgen = len(cons) / (time.perf_counter() - started)
    started = time.perf_counter()
    for m, proof in cons:
        verify_consistency(m, n, tree.root(m), root, proof)
    cver = len(cons) / (time.perf_counter() - started)
    return {"leaves": n, "inclusion_generate_per_s": gen, "inclusion_verify_per_s": ver,
            "consistency_generate_per_s": cgen, "consistency_verify_per_s": cver}


def _store_proofs(store: LmdbHubStore) -> dict[str, float]:
    """Receipts for records picked at random, as the hub makes them (tiles read back from LMDB), against the
    same tree held whole in memory."""
    full = MerkleTree(store.leaf_hashes())
    tiled = log_tree(store)
    n = len(full)
    picks = [i * 7919 % n for i in range(2000)]
    rates = {}
    for name, tree in (("in_memory", full), ("tiles_from_lmdb", tiled)):
        started = time.perf_counter()
        for index in picks:
            tree.inclusion_proof(index)
        rates[name] = len(picks) / (time.perf_counter() - started)
    return {"leaves": n, "random_inclusion_in_memory_per_s": rates["in_memory"],
            "random_inclusion_tiles_from_lmdb_per_s": rates["tiles_from_lmdb"],
            "tiles_vs_in_memory": rates["tiles_from_lmdb"] / rates["in_memory"],
            "tree_bytes_per_leaf_in_memory": full.held * 32 / n, "tree_bytes_per_leaf_tiled": tiled.held * 32 / n}


def _write_leaves(store: LmdbHubStore, n: int, *, tiles: bool = True) -> bytes:
    """`n` leaves written straight into the store's global log (no records behind them: start-up reads only
    the log) with the tile roots the hub would have kept as they closed."""
    tree = MerkleTree(read_leaves=lambda start, end: [])
    env, db = store._env, store._db  # a bench fills its own store faster than ingest
    step = 100_000
    for first in range(0, n, step):
        with env.begin(write=True) as txn:
            for i in range(first, min(n, first + step)):
                h = leaf_hash(i.to_bytes(8, "big"))
                txn.put(_U64.pack(i), cbor2.dumps([i.to_bytes(24, "big"), 0, h]), db=db["global"], append=True)
                tree.append_hash(h)
            txn.put(b"size", str(min(n, first + step)).encode(), db=db["meta"])
    if tiles:
        store.put_tiles(0, [tree.tile_root(i) for i in range(tree.tiles)])
    return tree.root()


_START = """
import os, sys, time
from hub.service import Hub
from hub.store import LmdbHubStore
from ledger import Ed25519Signer
def rss():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
before = rss()
started = time.perf_counter()
hub = Hub(LmdbHubStore(sys.argv[1]), Ed25519Signer.from_seed(b"\\x77" * 32), clock=lambda: 0)
elapsed = time.perf_counter() - started
n = int(sys.argv[2])  # the hub's own log may add its genesis on a first start: compare the written part
print(n, elapsed, hub.tree.root(n).hex(), rss() - before, hub.tree.held * 32)
"""


def restart(n: int, *, tiles: bool = True) -> dict[str, Any]:
    """`Hub()` start-up on a store of `n` leaves, in a fresh process: seconds, the resident memory it added
    (LMDB pages it read count too) and what the tree holds. Without `tiles`, as a store written before tile
    roots were kept: the first start reads every leaf."""
    with tempfile.TemporaryDirectory() as tmp:
        store = LmdbHubStore(tmp + "/hub", map_size=max(1 << 32, n * 400), durable=False)
        root = _write_leaves(store, n, tiles=tiles)
        store.close()
        out = subprocess.run([sys.executable, "-c", _START, tmp + "/hub", str(n)], capture_output=True, text=True,
                             check=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    leaves, elapsed, started_root, rss, held = out.stdout.split()
    if started_root != root.hex():
        raise AssertionError(f"the restarted tree's root {started_root} is not the written tree's {root.hex()}")
    return {"leaves": int(leaves), "start_s": float(elapsed), "start_added_rss_mib": int(rss) / 2**20,
            "tree_held_mib": int(held) / 2**20}


def refill(n: int, *, store: str = "lmdb", keep_days: int = 8) -> dict[str, Any]:
    """The read models' refill after a restart: about `n` MBG records of eight simulated days (10 schools and
    82 records a kitchen-day), signed and written straight into a store with their arrival times, then Views
    refilled from it as start_hub does. Records per second of the refill (wall and CPU time: a busy machine
    stretches the first), and how long `Views.start()` took (the refill runs in its own thread: start-up does
    not wait for it). With a smaller `keep_days` the older days' scans are in the markets' window but not the
    scans': the store's kind index leaves them unread (`read` counts the log entries read)."""
    days = 8
    sims = simulate_days(days, kitchens=max(1, round(n / (82 * days))), schools_per_kitchen=10,
                         meals_per_kitchen=3000)
    builders: dict[bytes, ChainBuilder] = {}
    device_time = [0]
    signed = []  # (arrival, device, seq, record, state after it)
    for sim in sims:
        for rec in sorted(sim.records, key=lambda r: (r.device_id, r.seq)):
            builder = builders.get(rec.device_id)
            if builder is None:
                signer = Ed25519Signer.from_seed(rec.device_id.ljust(32, b"."))
                builder = builders[rec.device_id] = ChainBuilder(signer, clock=lambda: device_time[0], boot=1)
                first = builder.genesis()
                signed.append((rec.arrived_at, first.device_id, 0, first, builder.state))
            device_time[0] = rec.time
            record = builder.append(rec.kind, rec.body)
            signed.append((rec.arrived_at, record.device_id, record.seq, record, builder.state))
    # Arrival order, each log's records in sequence order (a later record never arrives before an earlier one).
    newest: dict[bytes, int] = {}
    arrivals = []
    for at, device_id, seq, record, state in signed:
        newest[device_id] = max(at, newest.get(device_id, at))
        arrivals.append((newest[device_id], device_id, seq, record, state))
    arrivals.sort(key=lambda a: (a[0], a[1], a[2]))
    with tempfile.TemporaryDirectory() as tmp:
        hub_store: Any = (LmdbHubStore(tmp + "/hub", durable=False) if store == "lmdb" else _pg_store())
        try:
            for i in range(0, len(arrivals), 2000):
                hub_store.commit(Batch(appends=[LogAppend.of(device_id, [record], state, at)
                                                for at, device_id, _, record, state in arrivals[i:i + 2000]]))
            hub = Hub(hub_store, Ed25519Signer.from_seed(b"\x78" * 32), clock=lambda: sims[-1].now)
            started = time.perf_counter()
            views = Views(hub, plan=sims[-1].plan, refill=True, keep_days=keep_days)
            views.start()
            start_s = time.perf_counter() - started
            views.close()  # stops that refill: the one timed runs on this thread, so its CPU time is its own
            views = Views(hub, plan=sims[-1].plan, refill=True, keep_days=keep_days)
            started, cpu = time.perf_counter(), time.thread_time()
            views.refill_from_store()
            elapsed, cpu = time.perf_counter() - started, time.thread_time() - cpu
            progress = views.refill_progress
            scans = views.mbg.summary(sims[-1].now)["total_scans_today"]
        finally:
            if store != "lmdb":
                hub_store.drop()
            hub_store.close()
    return {"store": store, "keep_days": keep_days, "records": progress.done, "read": progress.read, "refill_s": elapsed,
            "refill_per_s": progress.done / elapsed, "refill_cpu_s": cpu, "refill_per_cpu_s": progress.done / cpu,
            "views_start_s": start_s, "scans_last_day": scans}


def market_refill(days: int = 400, *, markets: int = 4, commodities: int = 4, store: str = "lmdb") -> dict[str, Any]:
    """The markets' refill after a restart with and without their stored day aggregates, in one run: `days`
    simulated days of `markets` markets' prices (2-3 reporters, late and manipulated ones included), readings
    and notes, signed and written straight into a store with their arrival times. The refill without aggregates
    validates every price of the window again; the days it leaves are then written as aggregates (timed too),
    and a second refill loads them and reads only the last `raw_days` of records. CPU seconds of each, on this
    thread; the two answer the same history and bands (checked)."""
    from .aggregates import LmdbAggregates
    from .markets.catalog import CORE_COMMODITIES, MARKETS
    from .markets.model import day_of
    from .markets.synth import SynthConfig, generate

    start = time.time() - days * 86400
    data = generate(SynthConfig(seed=3, start=time.strftime("%Y-%m-%d", time.gmtime(start)), days=days,
                                reporters=(2, 3), markets=MARKETS[:markets], commodities=CORE_COMMODITIES[:commodities]))
    now = int(time.time())
    inputs = [(o.arrived_at, o.market, "price", o.to_body(), o.time) for o in data.observations()]
    inputs += [(r.arrived_at, r.site, "reading", r.to_body(), r.time) for r in data.sensor_readings()]
    inputs += [(n.arrived_at, n.market, "note", n.to_body(), n.time) for n in data.notes]
    inputs = sorted((i for i in inputs if i[0] < now), key=lambda i: i[0])
    builders: dict[str, ChainBuilder] = {}
    device_time = [0]
    appends = []
    for at, site, kind, body, t in inputs:
        builder = builders.get(site)
        if builder is None:
            builder = builders[site] = ChainBuilder(Ed25519Signer.from_seed(site.encode().ljust(32, b".")),
                                                    clock=lambda: device_time[0], boot=1)
            appends.append(LogAppend.of(builder.device_id, [builder.genesis()], builder.state, at))
        device_time[0] = t
        record = builder.append(kind, body)
        appends.append(LogAppend.of(builder.device_id, [record], builder.state, at))

    def refilled(hub: Hub, aggregates: Any) -> tuple[Views, float]:
        views = Views(hub, plan=Plan(kitchens=(), schools=()), refill=True, aggregates=aggregates)
        cpu = time.thread_time()
        views.refill_from_store()
        return views, time.thread_time() - cpu

    def answers(views: Views) -> Any:
        # Days within the window: the one at its far edge is cut by arrival time in a refill without aggregates.
        first = day_of(now) - views.markets.config.window_days + 1
        with views.fresh():
            return views.markets.bands(), [views.markets.history(c.id, since_day=first)
                                           for c in CORE_COMMODITIES[:commodities]]

    with tempfile.TemporaryDirectory() as tmp:
        hub_store: Any = (LmdbHubStore(tmp + "/hub", durable=False) if store == "lmdb" else _pg_store())
        aggregates: Any = None
        try:
            for i in range(0, len(appends), 2000):
                hub_store.commit(Batch(appends=appends[i:i + 2000]))
            if store == "lmdb":
                aggregates = LmdbAggregates(tmp + "/aggregates")
            else:
                from .pg import PgAggregates

                aggregates = PgAggregates(PG_DSN, schema=hub_store.schema)
            hub = Hub(hub_store, Ed25519Signer.from_seed(b"\x79" * 32), clock=lambda: now)
            before, before_cpu = refilled(hub, aggregates)  # none stored yet: every record of the window
            cpu = time.thread_time()
            written = before.store_market_days()
            write_cpu = time.thread_time() - cpu
            after, after_cpu = refilled(hub, aggregates)
            same = answers(before) == answers(after)
        finally:
            if aggregates is not None:
                aggregates.close()
            if store != "lmdb":
                hub_store.drop()
            hub_store.close()
    prices = sum(1 for i in inputs if i[2] == "price")
    return {"store": store, "days": days, "series": markets * commodities, "records": len(appends),
            "prices": prices, "without_aggregates_cpu_s": before_cpu, "read_without": before.refill_progress.read,
            "days_written": written, "write_cpu_s": write_cpu, "with_aggregates_cpu_s": after_cpu,
            "read_with": after.refill_progress.read, "ratio": before_cpu / after_cpu, "same_answers": same}


def cross_log(devices: int, per: int) -> dict[str, Any]:
    """A national pull's ingest: many short logs a request (`devices` logs of `per` records, 512 records a
    batch as /sync/ranges brings them), merged by one writer, with signatures checked in-process (1 core)
    and ahead on every core (CrossLogVerifier), in the same run. Stores skip fsync: this is the CPU path."""
    logs = []
    for d in range(devices):
        signer = Ed25519Signer.from_seed((1 << 48 | d).to_bytes(32, "big"))
        builder = ChainBuilder(signer, clock=lambda: 1_763_900_000, boot=1)
        logs.append((builder.device_id, [builder.genesis().raw]
                     + [builder.append("note", {"text": str(i)}).raw for i in range(per - 1)]))
    batch = max(1, 512 // per)
    rates: dict[str, float] = {}
    verifier = CrossLogVerifier()
    try:
        verifier.ahead([], {})  # the pool starts outside the timing
        for name, ahead in (("one_core", None), ("all_cores", verifier)):
            with tempfile.TemporaryDirectory() as tmp:
                store = LmdbHubStore(tmp + "/hub", durable=False)
                holder = UpstreamHolder(Hub(store, Ed25519Signer.from_seed(b"\x78" * 32),
                                            clock=lambda: 1_763_900_000), "bench", ahead)
                started = time.perf_counter()
                for i in range(0, devices, batch):
                    for result in holder.receive_many(logs[i:i + batch]):
                        assert result["problem"] is None, result["problem"]
                rates[name] = devices * per / (time.perf_counter() - started)
                store.close()
    finally:
        verifier.close()
    raw = raw_verify_rate(5000)
    return {"records": devices * per, "records_per_log": per, "raw_verify_per_s": raw, "cores": verifier.workers,
            "ingest_one_core_per_s": rates["one_core"], "ingest_all_cores_per_s": rates["all_cores"],
            "all_cores_vs_one": rates["all_cores"] / rates["one_core"],
            "all_cores_vs_raw_verify_of_cores": rates["all_cores"] / (raw * verifier.workers)}


def follow_region(devices: int, per: int, grow: int) -> dict[str, Any]:
    """A national hub taking one region over real CoAP on loopback, two ways side by side: pulling and
    re-verifying every record, as a running national hub does (`TierLinks`: the heads summary first, UDP lanes,
    signatures checked on every core), and following the region's signed checkpoints (hub/tiers.py). Three rounds each:
    the first (`devices` logs of `per` records), one after every log grew by `grow`, and one with nothing new.
    Seconds, bytes received and requests per round; stores skip fsync."""
    return asyncio.run(_follow_region(devices, per, grow))


async def _follow_region(devices: int, per: int, grow: int) -> dict[str, Any]:
    import aiocoap

    from .app import start_hub
    from .bridges import BridgeConfig
    from .config import HubConfig, Upstream

    clock = lambda: 1_763_900_000  # noqa: E731
    with tempfile.TemporaryDirectory() as tmp:
        region = Hub(LmdbHubStore(tmp + "/region", durable=False), Ed25519Signer.from_seed(b"\x79" * 32),
                     clock=clock)
        builders = []
        for d in range(devices):
            signer = Ed25519Signer.from_seed((1 << 52 | d).to_bytes(32, "big"))
            req = make_enroll_request(signer, site="sppg-01", role="kitchen_exit", name="bench", time=0,
                                      hub_id=region.hub_id)
            region.approve(region.enroll(req).device_id)
            builder = ChainBuilder(signer, clock=clock, boot=1)
            region.ingest(builder.device_id, [builder.genesis().raw]
                          + [builder.append("note", {"text": str(i)}).raw for i in range(per - 1)])
            builders.append(builder)
        region.checkpoint()
        served = await start_hub(HubConfig(bridges=BridgeConfig(enabled=False), data_dir=tmp + "/r", http_port=0,
                                           coap_port=0, mdns=False, checkpoint_interval=3600), hub=region)
        ctx = await aiocoap.Context.create_client_context()
        stores = [LmdbHubStore(tmp + "/pulled", durable=False), LmdbHubStore(tmp + "/followed", durable=False)]
        pulled = Hub(stores[0], Ed25519Signer.from_seed(b"\x7a" * 32), clock=clock)
        links = TierLinks(pulled, (served.coap_url,))
        follower = RegionFollower(Hub(stores[1], Ed25519Signer.from_seed(b"\x7b" * 32), clock=clock),
                                  Upstream(url=served.coap_url, key=region.signer.public_key, mode="checkpoints"))
        rounds: dict[str, dict[str, Any]] = {}
        try:
            sizes: dict[str, RequestSize] = {}
            for name in ("first", "grown", "unchanged"):
                if name == "grown":
                    for builder in builders:
                        region.ingest(builder.device_id,
                                      [builder.append("note", {"text": str(i)}).raw for i in range(grow)])
                    region.checkpoint()
                started = time.perf_counter()
                [pull_round], _ = await links.round(sizes)
                pull_s = time.perf_counter() - started
                assert not isinstance(pull_round, Exception), pull_round
                report = pull_round.sync
                started = time.perf_counter()
                followed = await follower.round(ctx)
                follow_s = time.perf_counter() - started
                assert not report.problems and followed.problem is None, (report.problems, followed.problem)
                # The summary's requests (and a drill-down's records) are counted by the puller, a whole pull's
                # heads and records by its sync report.
                pulled_bytes = links.pullers[0].traffic.bytes_received + (report.bytes_received if pull_round.full else 0)
                rounds[name] = {"reverify_s": pull_s, "reverify_bytes_received": pulled_bytes,
                                "reverify_records": report.fetched, "checkpoints_s": follow_s,
                                "checkpoints_bytes_received": followed.bytes_received,
                                "checkpoints_requests": followed.requests}
            leaves = len(region.tree)
            before = (follower.traffic.requests, follower.traffic.bytes_received)
            started = time.perf_counter()
            found = await follower.record(ctx, builders[-1].device_id, per // 2)
            rounds["drill_down"] = {"s": time.perf_counter() - started,
                                    "requests": follower.traffic.requests - before[0],
                                    "bytes_received": follower.traffic.bytes_received - before[1],
                                    "receipt_bytes": len(found.receipt)}
        finally:
            await links.close()
            links.verifier.close()
            await ctx.shutdown()
            await served.close()
            for store in stores:
                store.close()
            region.store.close()
    return {"logs": devices, "region_leaves": leaves, **rounds}


def heads_summary(logs: int) -> dict[str, Any]:
    """What a pull round costs a puller before any record moves, against a region of `logs` one-record logs
    over real CoAP on loopback: the whole heads exchange (every page) against the heads summary's root (the
    region's first answer computes it, later ones come from its cache), its 256 buckets and one bucket's heads."""
    return asyncio.run(_heads_summary(logs))


async def _heads_summary(logs: int) -> dict[str, Any]:
    import aiocoap

    from coap_server.sync import SyncReport, remote_heads
    from ledger.summary import decode_buckets

    from .app import start_hub
    from .bridges import BridgeConfig
    from .config import HubConfig
    from .store import DeviceInfo
    from .tiers import Traffic, region_get

    clock = lambda: 1_763_900_000  # noqa: E731
    out: dict[str, Any] = {"logs": logs}
    with tempfile.TemporaryDirectory() as tmp:
        store = LmdbHubStore(tmp + "/region", durable=False, map_size=max(1 << 32, logs * 4096))
        for i in range(logs):
            signer = Ed25519Signer.from_seed((1 << 56 | i).to_bytes(32, "big"))
            builder = ChainBuilder(signer, clock=clock, boot=1)
            store.put_device(DeviceInfo(device_id=builder.device_id, pubkey=signer.public_key, site="sppg",
                                        role="kitchen_exit", status="active", enrolled_at=0, name=""))
            store.append(builder.device_id, [builder.genesis()], builder.state, 0)
        region = Hub(store, Ed25519Signer.from_seed(b"\x7c" * 32), clock=clock)
        served = await start_hub(HubConfig(bridges=BridgeConfig(enabled=False), data_dir=tmp + "/r", http_port=0,
                                           coap_port=0, mdns=False, checkpoint_interval=3600), hub=region)
        ctx = await aiocoap.Context.create_client_context()
        try:
            report = SyncReport()
            started = time.perf_counter()
            await remote_heads(ctx, served.coap_url, report=report)
            out["heads_exchange_s"] = time.perf_counter() - started
            out["heads_exchange_bytes"] = report.bytes_received
            for name in ("summary_root_first", "summary_root"):
                traffic = Traffic()
                started = time.perf_counter()
                await region_get(ctx, served.coap_url, "/sync/summary", traffic)
                out[f"{name}_s"] = time.perf_counter() - started
                out[f"{name}_bytes"] = traffic.bytes_received
            region.ingest(builder.device_id, [builder.append("note", {"text": "one more"}).raw])
            traffic = Traffic()
            started = time.perf_counter()
            await region_get(ctx, served.coap_url, "/sync/summary", traffic)
            out["summary_root_after_one_record_s"] = time.perf_counter() - started
            traffic = Traffic()
            started = time.perf_counter()
            summary = decode_buckets(await region_get(ctx, served.coap_url, "/sync/summary?level=1", traffic) or b"")
            bucket = max(summary.buckets, key=lambda b: summary.buckets[b][1])
            await region_get(ctx, served.coap_url, f"/sync/summary?b={bucket}", traffic)
            out["drill_one_bucket_s"] = time.perf_counter() - started
            out["drill_one_bucket_bytes"] = traffic.bytes_received
            out["bucket_logs"] = summary.buckets[bucket][1]
        finally:
            await ctx.shutdown()
            await served.close()
            store.close()
    return out


PG_TEST_DSN = "postgresql://127.0.0.1:5432/test"


def pg_storage(n: int, *, devices: int = 11, batch: int = 16, partition_leaves: int | None = None,
               dsn: str = PG_TEST_DSN) -> dict[str, Any]:
    """Bytes per record in PostgreSQL (pg_total_relation_size: rows, TOAST and indexes) for `n` MBG scan
    records of `devices` logs arriving `batch` at a time in turn, as ingest appends them: the partitioned log
    (schema 5) beside the two tables the schemas before kept (records and global_log), written with the same
    batches. Then the unpartitioned store is migrated (timed), and its full partitions archived (timed, file
    bytes)."""
    import psycopg

    from .pg import (
        IDS_SUFFIX,
        LEAVES_SUFFIX,
        MIGRATIONS,
        PARTITIONED_VERSION,
        ROWS_SUFFIX,
        SEQS_SUFFIX,
        TILES_SUFFIX,
        PgHubStore,
    )

    body = {"event": "departed", "site": "sppg-01", "checkpoint": "kitchen_exit", "staff": "04a1b2c3",
            "tags": ["e0040150a1b2c3d4"], "school": "sd-01"}
    builders = [ChainBuilder(Ed25519Signer.from_seed((900 + d).to_bytes(32, "big")), clock=lambda: 1_763_900_000,
                             boot=1) for d in range(devices)]
    new = PgHubStore(dsn, schema=f"bench_{uuid.uuid4().hex[:10]}")
    old_schema = f"bench_{uuid.uuid4().hex[:10]}"
    old = psycopg.connect(dsn, autocommit=False)
    try:
        with old.transaction():
            old.execute(f"CREATE SCHEMA {old_schema}")
            old.execute(f"SET search_path TO {old_schema}")
            for step in MIGRATIONS[:PARTITIONED_VERSION - 1]:
                assert not callable(step)
                for sql in step:
                    old.execute(sql)
        size = 0
        while size < n:
            for builder in builders:
                records = [builder.genesis() if builder.state.length == 0 else builder.append("scan", body)
                           for _ in range(min(batch, n - size))]
                if not records:
                    break
                device_id = records[0].device_id
                new.append(device_id, records, builder.state, 1_763_900_000)
                with old.transaction(), old.cursor() as cur:  # what an unpartitioned store's append wrote
                    cur.executemany("INSERT INTO records VALUES (%s, %s, %s)",
                                    [(device_id, r.seq, r.raw) for r in records])
                    cur.executemany("INSERT INTO global_log VALUES (%s, %s, %s, %s, %s, %s)",
                                    [(size + i, r.id, device_id, r.seq, 1_763_900_000, leaf_hash(r.raw))
                                     for i, r in enumerate(records)])
                size += len(records)
        with old.transaction():
            def total(sql: str) -> int:
                return int(old.execute(sql).fetchone()[0] or 0)  # type: ignore[index]

            records_b = total(f"SELECT pg_total_relation_size('{old_schema}.records')")
            global_b = total(f"SELECT pg_total_relation_size('{old_schema}.global_log')")
            parts = (f"SELECT {{}}(c.oid) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                     f"WHERE i.inhparent = '{new.schema}.records'::regclass")
            log_b = total(parts.replace("SELECT {}(c.oid)", "SELECT sum(pg_total_relation_size(c.oid))"))
            heap_b = total(parts.replace("SELECT {}(c.oid)", "SELECT sum(pg_table_size(c.oid))"))
            sizes = {name: total(f"SELECT sum(pg_relation_size(i.indexrelid)) FROM pg_index i JOIN pg_inherits h "
                                 f"ON h.inhrelid = i.indexrelid WHERE h.inhparent = '{new.schema}.{name}'::regclass")
                     for name in ("records_pkey", "records_device_seq", "records_id")}
            raw_b = total(f"SELECT sum(length(raw)) FROM {new.schema}.records")
            old.execute("INSERT INTO meta VALUES ('schema_version', %s)", (str(PARTITIONED_VERSION - 1),))
        started = time.perf_counter()
        # Three partitions' worth of records by default, so the archive has whole ones to take.
        leaves = partition_leaves or max(64, n // 3 // 64 * 64)
        migrated = PgHubStore(dsn, schema=old_schema, partition_leaves=leaves)
        migrate_s = time.perf_counter() - started
        tree = MerkleTree(migrated.leaf_hashes())
        migrated.put_tiles(0, [tree.tile_root(i) for i in range(tree.tiles)])
        with tempfile.TemporaryDirectory() as tmp:
            started = time.perf_counter()
            gone = migrated.archive(1_763_900_001, tmp)
            archive_s = time.perf_counter() - started
            archived = sum(p.end - p.first for p in gone)
            files = {suffix: sum(os.path.getsize(str(p.archived) + suffix) for p in gone)
                     for suffix in (ROWS_SUFFIX, TILES_SUFFIX, LEAVES_SUFFIX, IDS_SUFFIX, SEQS_SUFFIX)}
            # One log read back whole from the archive, as a peer's pull or an audit export reads it.
            device_id = builders[0].device_id
            started = time.perf_counter()
            served = migrated.log_range(device_id, 0, builders[0].state.length)
            serve_s = time.perf_counter() - started
            # The same archives as an archive written before tile files has them (its rows one gzip stream, no
            # .tiles or .seqs), given their index again as `jejak hub archive index` does.
            for p in gone:
                stem = str(p.archived)
                with gzip.open(stem + ROWS_SUFFIX, "rb") as rows, gzip.GzipFile(stem + ".old", "wb", mtime=0) as out:
                    shutil.copyfileobj(rows, out, 1 << 20)
                os.replace(stem + ".old", stem + ROWS_SUFFIX)
                os.remove(stem + TILES_SUFFIX)
                os.remove(stem + SEQS_SUFFIX)
            started = time.perf_counter()
            indexed = migrated.index_archives(tmp)
            index_s = time.perf_counter() - started
            if [r.outcome for r in indexed] != ["indexed"] * len(gone):
                raise AssertionError(f"the archives were not indexed: {indexed}")
        migrated.close()
        archive = {"records": archived, "partition_leaves": leaves, "seconds": round(archive_s, 2),
                   "records_per_s": round(archived / max(archive_s, 1e-9)),
                   "served_records_per_s": round(len(served) / max(serve_s, 1e-9)),
                   "index_seconds": round(index_s, 2), "index_records_per_s": round(archived / max(index_s, 1e-9)),
                   "index_vs_archive": round(archive_s / max(index_s, 1e-9), 2),
                   **{f"file{suffix}_bytes_per_record": round(b / max(archived, 1), 1) for suffix, b in files.items()}}
        return {"migration_to_partitioned_s": round(migrate_s, 2), "archive": archive,"records": size, "devices": devices, "batch": batch, "raw_bytes_per_record": round(raw_b / size, 1),
                "unpartitioned_bytes_per_record": round((records_b + global_b) / size, 1),
                "unpartitioned_records_table": round(records_b / size, 1),
                "unpartitioned_global_log_table": round(global_b / size, 1),
                "partitioned_bytes_per_record": round(log_b / size, 1),
                "partitioned_rows": round(heap_b / size, 1),
                "partitioned_index_idx": round(sizes["records_pkey"] / size, 1),
                "partitioned_index_device_seq": round(sizes["records_device_seq"] / size, 1),
                "partitioned_index_record_id_hash": round(sizes["records_id"] / size, 1)}
    finally:
        with old.transaction():
            old.execute(f"DROP SCHEMA IF EXISTS {old_schema} CASCADE")
        old.close()
        new.drop()
        new.close()


def run(quick: bool = False) -> dict[str, Any]:
    n = 3000 if quick else 50_000
    raw_rate = raw_verify_rate(2000 if quick else 20_000)
    signer, raws = _records(n, 5)
    with tempfile.TemporaryDirectory() as tmp:
        store = LmdbHubStore(tmp + "/hub")
        lmdb_rate = _ingest_rate(store, signer, raws)
        store_proofs = _store_proofs(store)
        store.close()
    out: dict[str, Any] = {
        "raw_verify_per_s": raw_rate,
        "ingest_lmdb_per_s": lmdb_rate,
        "ingest_lmdb_vs_raw_verify": lmdb_rate / raw_rate,
        "cores": os.cpu_count(),
        "records": n,
    }
    try:
        from .pg import PgHubStore

        pg = PgHubStore(PG_DSN, schema=f"bench_{uuid.uuid4().hex[:10]}")
        try:
            out["ingest_postgres_per_s"] = _ingest_rate(pg, signer, raws)
            out["postgres_vs_lmdb"] = out["ingest_postgres_per_s"] / lmdb_rate
        finally:
            pg.drop()
            pg.close()
    except Exception as exc:  # the figure is missing, and the table says why
        out["ingest_postgres_per_s"] = f"not measured: {exc}"
    try:
        out["postgres_storage"] = pg_storage(5_000 if quick else 200_000)
    except Exception as exc:  # the figure is missing, and the table says why
        out["postgres_storage"] = f"not measured: {exc}"
    with tempfile.TemporaryDirectory() as tmp:
        stores: dict[str, Callable[[], Any]] = {"lmdb": lambda: LmdbHubStore(f"{tmp}/{uuid.uuid4().hex}")}
        stores["postgres"] = _pg_store
        out["ingest_cores"] = ingest_on_cores(n, stores, rounds=1 if quick else 3)
    out["proofs"] = _proofs(100_000 if quick else 1_000_000)
    out["store_proofs"] = store_proofs
    out["restart"] = restart(100_000 if quick else 1_000_000)
    out["restart_without_tiles"] = restart(100_000 if quick else 1_000_000, tiles=False)
    out["refill"] = refill(5_000 if quick else 200_000)
    out["cross_log"] = cross_log(300 if quick else 3000, 8)
    out["follow_region"] = follow_region(20 if quick else 200, 50, 5)
    out["heads_summary"] = heads_summary(500 if quick else 5000)
    out["many_pushers"] = many_pushers(16 if quick else 64, 5 if quick else 40, 4)
    return out


PG_DSN = "postgresql://127.0.0.1:5432/test"


def summary(figures: dict[str, Any]) -> list[str]:
    """The ingest goals (issues 22 and 24) as `jejak bench --only hub` prints them."""
    cores = figures.get("ingest_cores", {})
    lines = []
    for store in ("lmdb", "postgres"):
        f = cores.get(store)
        if not isinstance(f, dict):
            lines.append(f"ingest {store}: {f}")
            continue
        lines.append(
            f"ingest {store}: 1 core {f['one_core_per_s']:,.0f}/s = {f['one_core_vs_raw_verify']:.2f} of raw verify "
            f"(goal >= 0.7); {cores['cores']} cores {f['cores_per_s']:,.0f}/s = {f['cores_vs_one_core']:.2f}x 1 core "
            f"(goal >= 1.7) = {f['cores_vs_raw_verify_of_cores']:.2f} of raw verify of the cores used (goal >= 0.7) "
            f"as {cores['cores']} x 1 core's, {f['cores_vs_raw_verify_on_cores']:.2f} of it measured on all of them "
            f"at once ({f['raw_verify_on_cores_vs_cores_times_one']:.2f} of {cores['cores']} x 1 core's); "
            f"medians of {cores.get('rounds', 1)} rounds after a warm-up, 1 core by round "
            f"{', '.join(f'{r:.2f}' for r in f.get('one_core_vs_raw_verify_rounds', []))}, {cores['cores']} cores of "
            f"raw verify by round {', '.join(f'{r:.2f}' for r in f.get('cores_vs_raw_verify_of_cores_rounds', []))} "
            f"(as {cores['cores']} x 1 core's) and "
            f"{', '.join(f'{r:.2f}' for r in f.get('cores_vs_raw_verify_on_cores_rounds', []))} (measured at once)")
        lines.append(
            f"  CPU per record: raw verify {f['raw_verify_cpu_us']:.1f} us, 1 core {f['one_core_cpu_us']:.1f} us "
            f"(= {f['one_core_cpu_vs_raw_verify_cpu']:.2f}); {cores['cores']} cores writer "
            f"{f['cores_writer_cpu_us']:.1f} us (checking {f.get('cores_taken_by_writer', 0):.0%} of the signatures) "
            f"+ workers {f['cores_workers_cpu_us']:.1f} us: on idle cores at most "
            f"{f['cores_cpu_bound_vs_one_core']:.2f}x 1 core, {f['cores_cpu_bound_vs_raw_verify_of_cores']:.2f} of "
            "raw verify of the cores used")
    return lines


def _pg_store() -> Any:
    from .pg import PgHubStore

    return PgHubStore(PG_DSN, schema=f"bench_{uuid.uuid4().hex[:10]}")


def chain_health_pages(devices: int, backend: str, *, dsn: str = PG_DSN) -> dict[str, Any]:
    """The chain's health page (`hub/chain/view.py:chain_health`, what GET /api/chain/health answers before JSON)
    with `devices` devices in the store, each with a log of one record, its arrival and a few damaged records:
    milliseconds per page of 500 (the default) and 5,000 (the most) at the first, middle and last page, a walk
    through every page of 500, and the whole list read the way the page did before (every device, then a point
    read of each log's state). Also a scrape of /metrics on that store (`device_figures` alone and the whole
    registry's text) with the lines it makes."""
    import json

    from prometheus_client import generate_latest

    from .metrics import HubMetrics, device_figures

    with tempfile.TemporaryDirectory() as tmp:
        if backend == "lmdb":
            store: Any = LmdbHubStore(f"{tmp}/hub", durable=False)
        else:
            from .pg import PgHubStore

            store = PgHubStore(dsn, schema=f"bench_{uuid.uuid4().hex[:10]}")
        try:
            hub = Hub(store, Ed25519Signer.from_seed(b"\x78" * 32), clock=lambda: 1_763_900_000)
            started = time.perf_counter()
            infos, appends = [], []
            for i in range(devices):
                signer = Ed25519Signer.from_seed((10_000_000 + i).to_bytes(32, "big"))
                genesis = ChainBuilder(signer, clock=lambda: 1_763_800_000, boot=1).genesis()
                state, _ = link(ChainState.empty(genesis.device_id), genesis)
                infos.append(DeviceInfo(device_id=genesis.device_id, pubkey=signer.public_key, site=f"sppg-{i // 11}",
                                        role="kitchen_exit", status="active", name=f"k{i}"))
                appends.append(LogAppend.of(genesis.device_id, [genesis], state, 1_763_850_000 + i))
            if backend == "lmdb":
                for info in infos:
                    store.put_device(info)
            else:  # one statement for the devices: a transaction each would time PostgreSQL's commits, not the page
                with store._tx(), store._conn.cursor() as cur:
                    cur.executemany("INSERT INTO devices (device_id, data, status) VALUES (%s, %s, %s)",
                                    [(d.device_id, d.to_cbor(), d.status) for d in infos])
            for i in range(0, devices, 1000):
                store.commit(Batch(appends=appends[i:i + 1000]))
            for info in infos[::1000]:
                store.mark_damaged(info.device_id, 0)
            filled_s = time.perf_counter() - started
            ids = sorted(d.device_id for d in infos)

            def page_ms(after: bytes, limit: int, runs: int = 5) -> tuple[float, dict[str, Any]]:
                best = float("inf")
                for _ in range(runs):
                    t0 = time.perf_counter()
                    answer = chain_health(hub, 1_763_900_000, after=after, limit=limit)
                    best = min(best, time.perf_counter() - t0)
                return best * 1000, answer

            out: dict[str, Any] = {"backend": backend, "devices": devices, "fill_s": filled_s}
            for limit in (500, 5000):
                for where, after in (("first", b""), ("middle", ids[(devices - limit) // 2]), ("last", ids[-limit - 1])):
                    ms, answer = page_ms(after, limit)
                    assert len(answer["devices"]) == limit and answer["device_count"] == devices
                    out[f"page_{limit}_{where}_ms"] = ms
                out[f"page_{limit}_json_bytes"] = len(json.dumps(answer))
            t0 = time.perf_counter()
            after, seen = b"", 0
            while True:
                answer = chain_health(hub, 1_763_900_000, after=after, limit=500)
                seen += len(answer["devices"])
                if answer["next"] is None:
                    break
                after = bytes.fromhex(answer["next"])
            assert seen == devices
            out["walk_500_s"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            listed = [(d, store.chain_state(d.device_id)) for d in store.devices()]
            assert len(listed) == devices
            out["before_every_device_s"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            figures = device_figures(store, 1_763_900_000, own=hub.hub_id)
            out["metrics_device_figures_ms"] = (time.perf_counter() - t0) * 1000
            assert figures.reporting == devices and figures.per_device is None
            metrics = HubMetrics()
            metrics.watch(hub, store_path=None, derive_seconds=lambda: 0.0)
            t0 = time.perf_counter()
            text = generate_latest(metrics.registry)
            out["metrics_scrape_ms"] = (time.perf_counter() - t0) * 1000
            out["metrics_lines"] = sum(1 for line in text.splitlines() if not line.startswith(b"#"))
            return out
        finally:
            if backend != "lmdb":
                store.drop()
            store.close()


def figures_backfill(n: int, backend: str, *, what: str = "figures", dsn: str = PG_DSN) -> dict[str, Any]:
    """Seconds for the first open of a store written before what it keeps was kept, which builds it from the `n`
    records it holds, against an open of the same store after: `what` is "figures" (the chain's figures, and what
    came after them: PostgreSQL schema 6, LMDB layout 1) or "kind_index" (the log's indices by record kind alone:
    PostgreSQL schema 9, LMDB layout 2), and the seconds until what the records before need is complete
    (`indexed_behind_s`: the chain's figures counted and the kind index built, in the background after the
    open)."""
    _, raws = _records(n, 6)
    state = ChainState.empty(decode_record(raws[0]).device_id)
    appends = []
    for i in range(0, n, 4096):
        records = [decode_record(r) for r in raws[i:i + 4096]]
        for rec in records:
            state, _ = link(state, rec)
        appends.append(LogAppend.of(state.device_id, records, state, 1_763_900_000))
    with tempfile.TemporaryDirectory() as tmp:
        schema = f"bench_{uuid.uuid4().hex[:10]}"

        def open_store() -> Any:
            if backend == "lmdb":
                return LmdbHubStore(f"{tmp}/hub", durable=False)
            from .pg import PgHubStore

            return PgHubStore(dsn, schema=schema)

        store = open_store()
        try:
            for part in appends:
                store.commit(Batch(appends=[part]))
            store.close()
            figures = what == "figures"
            if backend == "lmdb":
                import lmdb

                env = lmdb.open(f"{tmp}/hub", max_dbs=32)
                with env.begin(write=True) as txn:
                    for name in (b"activity", b"kinds", b"kind_index") if figures else (b"kind_index",):
                        txn.drop(env.open_db(name, txn=txn), delete=True)
                    txn.put(b"layout", b"1" if figures else b"2", db=env.open_db(b"meta", txn=txn))
                env.close()
            else:
                import psycopg

                from .pg import ACTIVITY_VERSION, KIND_INDEX_VERSION

                with psycopg.connect(dsn, autocommit=True) as conn:
                    if figures:
                        conn.execute(f"DROP TABLE {schema}.activity, {schema}.record_kinds")
                        conn.execute(f"ALTER TABLE {schema}.devices DROP COLUMN status")
                    conn.execute(f"DROP TABLE {schema}.kind_index")
                    conn.execute(f"UPDATE {schema}.meta SET value = %s WHERE key = 'schema_version'",
                                 (str((ACTIVITY_VERSION if figures else KIND_INDEX_VERSION) - 1),))
            started = time.perf_counter()
            store = open_store()
            upgrade_s = time.perf_counter() - started
            assert len(store.kind_positions("scan", 0, n, n)) == n - 1
            # The figures and the kind index of the records before, counted and built in the background.
            while store.figures_from() or store.kind_index_from():
                time.sleep(0.05)
            behind_s = time.perf_counter() - started
            assert store.record_kinds() == {"key": 1, "scan": n - 1}
            store.close()
            started = time.perf_counter()
            store = open_store()
            return {"backend": backend, "records": n, "first_open_s": upgrade_s,
                    "next_open_s": time.perf_counter() - started, "indexed_behind_s": behind_s}
        finally:
            if backend != "lmdb":
                store.drop()
            store.close()
