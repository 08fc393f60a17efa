"""A restarted hub's read models are refilled from its store (LMDB and PostgreSQL): the MBG, markets and
dashboard answers after a restart equal those before it, and records pushed while a refill runs are fed to
the read models exactly once, in log order."""

from __future__ import annotations

import asyncio
import json
import struct
import threading
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lmdb
import psycopg
import pytest

from hub.app import start_hub
from hub.clock import HubClock, parse_clock
from hub.config import HubConfig, StoreConfig
from hub.config import SecurityConfig as HubSecurityConfig
from hub.markets.catalog import COMMODITIES_BY_ID, MARKETS_BY_ID
from hub.markets.model import day_of
from hub.markets.synth import SynthConfig, generate
from hub.mbg import Plan, SimDay, simulate
from hub.mbg.plan import WIB, local_midnight
from hub.mbg.routes import MbgRoutes
from hub.pg import KIND_INDEX_VERSION, PgHubStore
from hub.service import Hub
from hub.store import Entry, HubStore, LmdbHubStore
from hub.views import MARKET_KINDS, MBG_KINDS, RefillProgress, Views, first_arrival_at
from ledger import ChainBuilder, Ed25519Signer, decode_record
from tests.contract.test_hub_store import PG_DSN

from .conftest import Clock, enroll
from .test_metrics import scrape, value

DATE = "2026-01-12"
MARKETS = ("pasar-kramat-jati", "pasar-senen")
COMMODITIES = ("beras-medium", "cabai-merah")
WAIT_S = 120  # an upper bound for a busy machine; every wait ends as soon as its condition holds


@dataclass
class Device:
    signer: Ed25519Signer
    site: str
    role: str
    time: int = 0
    builder: ChainBuilder | None = None
    device_id: bytes = b""

    def sign(self, kind: str, body: dict[str, Any], at: int) -> bytes:
        assert self.builder is not None
        self.time = at
        return self.builder.append(kind, body).raw


@dataclass
class Traffic:
    """Devices and their records (arrival time, device site, raw), in arrival order: an MBG day from the
    simulator and two markets' prices and sensor readings over the three weeks before it."""

    plan: Plan
    now: int
    devices: dict[str, Device] = field(default_factory=dict)
    pushes: list[tuple[int, str, str, dict[str, Any], int]] = field(default_factory=list)

    def enroll(self, hub: Hub, clock: Clock) -> None:
        for device in self.devices.values():
            device.device_id = enroll(hub, device.signer, clock, site=device.site, role=device.role)
            device.builder = ChainBuilder(device.signer, clock=lambda d=device: d.time, boot=1)
            assert hub.ingest(device.device_id, [device.builder.genesis().raw]).accepted == 1

    def add_mbg(self, day: SimDay) -> None:
        """The simulated day's records, each device's signed by a device of its site."""
        for rec in day.records:
            site = day.devices[rec.device]
            if site not in self.devices:
                self.devices[site] = Device(signer=Ed25519Signer.from_seed(rec.device_id.ljust(32, b".")), site=site,
                                            role="kitchen_exit" if site.startswith("SPPG") else "school_gate")
            self.pushes.append((rec.arrived_at, site, rec.kind, rec.body, rec.time))

    def push(self, hub: Hub, clock: Clock, pushes: list[tuple[int, str, str, dict[str, Any], int]]) -> int:
        accepted = 0
        for arrived_at, site, kind, body, device_time in pushes:
            device = self.devices[site]
            clock.now = arrived_at
            accepted += hub.ingest(device.device_id, [device.sign(kind, body, device_time)]).accepted
        return accepted


def traffic() -> Traffic:
    day = simulate("late_truck", seed=3, kitchens=1, schools_per_kitchen=3, meals_per_kitchen=600, date=DATE)
    out = Traffic(plan=day.plan, now=day.now)
    out.add_mbg(day)
    data = generate(SynthConfig(seed=11, start="2025-12-22", days=21, reporters=(1, 2), readings_per_day=2,
                                markets=tuple(MARKETS_BY_ID[m] for m in MARKETS),
                                commodities=tuple(COMMODITIES_BY_ID[c] for c in COMMODITIES)))
    for market in MARKETS:
        out.devices[market] = Device(signer=Ed25519Signer.from_seed(market.encode().ljust(32, b".")), site=market,
                                     role="market")
    for kind, bodies in (("price", data.price_bodies()), ("reading", data.reading_bodies())):
        for t, body in bodies:
            site = body["market"] if kind == "price" else body["site"]
            out.pushes.append((t + 600, site, kind, body, t))  # sent ten minutes after it was taken
    out.pushes.sort(key=lambda p: p[0])
    return out


@pytest.fixture(params=["lmdb", "postgres"])
def backend(request):
    """A store setting for start_hub; PostgreSQL missing fails, never skips."""
    if request.param == "lmdb":
        yield StoreConfig(), "hub"
        return
    name = f"t_{uuid.uuid4().hex[:12]}"
    PgHubStore(PG_DSN, schema=name).close()  # fails here, loudly, if the database is not there
    yield StoreConfig(backend="postgres", dsn=PG_DSN), name
    PgHubStore(PG_DSN, schema=name).drop()


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as resp:
        return json.loads(resp.read())


async def answers(url: str) -> dict[str, Any]:
    """What the dashboard and the public API answer about MBG and markets. The summary's alert count and
    refill progress are left out: alerts are derived on the worker's own timer, and the refill is what
    differs between the two runs."""
    paths = [f"/api/mbg/deliveries?date={DATE}", "/api/mbg/containers", f"/api/mbg/violations?date={DATE}",
             "/api/mbg/stock", f"/api/mbg/epcis?date={DATE}", f"/api/mbg/late?date={DATE}",
             f"/api/mbg/short?date={DATE}", "/api/mbg/names", "/api/markets/prices", "/api/markets/map",
             "/api/markets/quarantine?state=pending", "/api/dashboard/summary",
             *(f"/api/markets/history/{c}" for c in COMMODITIES)]
    out = {path: await asyncio.to_thread(_get, url + path) for path in paths}
    for key in ("live_alerts", "refill"):
        out["/api/dashboard/summary"].pop(key)
    return out


async def test_a_restarted_hub_answers_as_before(tmp_path: Path, backend) -> None:
    store, name = backend
    clock = Clock(local_midnight_minus(days=22))
    config = HubConfig(name=name, data_dir=str(tmp_path / "hub"), http_port=0, coap_port=0, mdns=False,
                       checkpoint_interval=3600, store=store, security=HubSecurityConfig(oscore=False))
    sent = traffic()
    running = await start_hub(config, clock=clock, plan=sent.plan)
    try:
        await asyncio.to_thread(sent.enroll, running.hub, clock)
        accepted = await asyncio.to_thread(sent.push, running.hub, clock, sent.pushes)
        assert accepted == len(sent.pushes)
        clock.now = sent.now
        await asyncio.to_thread(running.hub.checkpoint)  # the one close() would sign: the chain is as it stays
        before = await answers(running.http_url)
    finally:
        await running.close()
    # What is compared holds data: scans, deliveries, stock, and both markets' prices.
    assert before["/api/dashboard/summary"]["total_scans_today"] >= 20
    assert before["/api/dashboard/summary"]["markets"]["observations"] > 100
    assert before[f"/api/mbg/late?date={DATE}"] and before["/api/mbg/stock"]

    again = await start_hub(config, clock=clock, plan=sent.plan)
    try:
        assert await asyncio.to_thread(again.views.refilled.wait, WAIT_S), "the refill did not end"
        progress = again.views.refill_progress
        assert not progress.running and progress.damaged == 0
        assert progress.done == progress.total >= len(sent.pushes)
        summary = await asyncio.to_thread(_get, again.http_url + "/api/dashboard/summary")
        assert summary["refill"] == progress.to_json()
        after = await answers(again.http_url)
    finally:
        await again.close()
    for path, answer in before.items():
        assert after[path] == answer, path


def local_midnight_minus(*, days: int) -> int:
    return local_midnight(DATE, WIB) - days * 86400


# --- records pushed while a refill runs -------------------------------------------------------------------

class FeedLog(Views):
    """Views that note every record fed to the MBG, markets and kitchen-demand models, in order."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        self.fed: list[bytes] = []
        super().__init__(*args, **kw)

    def _take_domains(self, records: Any, arrived_at: int) -> None:
        self.fed.extend(r.id for r in records if r.kind in MBG_KINDS | MARKET_KINDS)
        super()._take_domains(records, arrived_at)


class Midway:
    """A refill held in its middle (or where `at` first holds): `midway` is set when it gets there, and it goes
    on once `go` is set."""

    def __init__(self, at: Callable[[RefillProgress], bool] | None = None) -> None:
        self.midway, self.go = threading.Event(), threading.Event()
        self.at = at or (lambda progress: progress.done >= progress.total // 2)

    def pause(self, progress: RefillProgress) -> None:
        if self.at(progress) and not self.go.is_set():
            self.midway.set()
            assert self.go.wait(WAIT_S)


def _open(kind: str, path: Path, schema: str) -> HubStore:
    return LmdbHubStore(path) if kind == "lmdb" else PgHubStore(PG_DSN, schema=schema)


@pytest.mark.parametrize("kind", ["lmdb", "postgres"])
def test_records_pushed_during_a_refill_are_fed_once_and_in_order(tmp_path: Path, kind: str) -> None:
    schema = f"t_{uuid.uuid4().hex[:12]}"
    key = Ed25519Signer.from_seed(b"\x61" * 32)
    clock = Clock(local_midnight_minus(days=22))
    sent = traffic()
    first, rest = sent.pushes[:len(sent.pushes) * 2 // 3], sent.pushes[len(sent.pushes) * 2 // 3:]
    store = _open(kind, tmp_path / "hub", schema)
    try:
        hub = Hub(store, key, clock=clock)
        sent.enroll(hub, clock)
        assert sent.push(hub, clock, first) == len(first)
        store.close()

        # The restart: a new Hub and new read models over what the store holds, held in the refill's middle.
        store = _open(kind, tmp_path / "hub", schema)
        hub = Hub(store, key, clock=clock)
        held = Midway()
        midway, go = held.midway, held.go
        views = FeedLog(hub, plan=sent.plan, refill=True, refill_batch=50, refill_pause=held.pause)
        views.start()
        try:
            assert midway.wait(WAIT_S), "the refill never reached its middle"
            shown = views.summary()
            assert shown["refill"]["running"] and 0 < shown["refill"]["done"] < shown["refill"]["total"]
            # Whoever asks MBG questions now is told the answers hold part of the log (`jejak mbg` says so).
            assert MbgRoutes(views).names()["counting"] == shown["refill"]["total"] - shown["refill"]["done"]
            # Live records, and a resend of stored ones (duplicates: not told to the listener).
            assert sent.push(hub, clock, rest[:len(rest) // 2]) == len(rest) // 2
            device = sent.devices[first[-1][1]]
            assert hub.ingest(device.device_id, hub.store.log_range(device.device_id, 0, 3)).duplicates == 3
            assert sent.push(hub, clock, rest[len(rest) // 2:]) == len(rest) - len(rest) // 2
            with views.fresh():  # answers are still those of a prefix of the log: live records wait
                assert len(views.fed) < len(first)
            go.set()
            assert views.refilled.wait(WAIT_S), "the refill did not end"
        finally:
            go.set()
            views.close()
        with views.fresh():
            fed = list(views.fed)
        logged = [r.id for r in map(decode_record, (e.raw for e in hub.store.entries(0, hub.store.size())))
                            if r.kind in MBG_KINDS | MARKET_KINDS]
        # Every MBG and market record of the log once, in log order (the window holds the whole log); records
        # of other kinds (the hub's own log, genesis records) are not read into these models.
        assert fed == logged
        assert not views.refill_progress.running and views.refill_progress.done == views.refill_progress.total
        assert MbgRoutes(views).names()["counting"] == 0
        clock.now = sent.now
        scans = sum(1 for p in sent.pushes if p[2] == "scan")
        assert views.mbg.summary(sent.now)["total_scans_today"] == scans
        # Each price of the days listed (the worker's hourly prune forgets the observations of older days).
        first = views.markets.listed_from()
        assert views.markets.listed_count() == sum(1 for p in sent.pushes if p[2] == "price" and day_of(p[4]) >= first)
        assert 0 < views.markets.listed_count() < sum(1 for p in sent.pushes if p[2] == "price")
    finally:
        store.close()
        if kind == "postgres":
            PgHubStore(PG_DSN, schema=schema).drop()


# --- the window -----------------------------------------------------------------------------------------

def _logged(store: HubStore, key: Ed25519Signer, arrivals: list[int], *, scans: bool = False) -> Hub:
    """A hub whose log holds a field note (or with `scans`, a note and a kitchen's cook scan) per arrival."""
    clock = Clock(arrivals[0])
    hub = Hub(store, key, clock=clock)
    signer = Ed25519Signer.from_seed(b"\x62" * 32)
    device_id = enroll(hub, signer, clock, site="K1", role="kitchen")
    builder = ChainBuilder(signer, clock=clock, boot=1)
    assert hub.ingest(device_id, [builder.genesis().raw]).accepted == 1
    for at in arrivals:  # each arriving at its own time
        clock.now = at
        raws = [builder.append("note", {"text": str(at)}).raw]
        if scans:
            raws.append(builder.append("scan", {"site": "K1", "event": "cooked", "cooked_at": at, "count": 20}).raw)
        assert hub.ingest(device_id, raws).accepted == len(raws)
    return hub


def test_the_window_starts_at_the_first_arrival_within_it(tmp_path: Path) -> None:
    store = LmdbHubStore(tmp_path / "hub")
    try:
        arrivals = [1_000 + 100 * i for i in range(40)]
        _logged(store, Ed25519Signer.from_seed(b"\x63" * 32), arrivals)
        entries = store.entries(0, store.size())
        size = len(entries)
        for cutoff in (0, 1_000, 1_050, 2_000, 4_900, 5_000):
            want = next((e.index for e in entries if e.arrived_at >= cutoff), size)
            assert first_arrival_at(store, cutoff, size) == want, cutoff
        assert entries[-1].arrived_at < 9_999 and first_arrival_at(store, 9_999, size) == size
    finally:
        store.close()


def test_the_refill_reads_scans_of_keep_days_and_other_records_of_the_markets_window(tmp_path: Path) -> None:
    store = LmdbHubStore(tmp_path / "hub")
    day = 86400
    now = 1_763_900_000
    try:
        _logged(store, Ed25519Signer.from_seed(b"\x65" * 32), [now - 500 * day, now - 300 * day, now - 9 * day,
                                                                now - 7 * day, now - day], scans=True)
        views = FeedLog(Hub(store, Ed25519Signer.from_seed(b"\x65" * 32), clock=Clock(now)),
                        plan=Plan(kitchens=(), schools=()), refill=True, keep_days=8)
        views.refill_from_store()
        fed = [decode_record(e.raw) for e in store.entries(0, store.size())]
        arrived = {e.index: e.arrived_at for e in store.entries(0, store.size())}
        want = [r.id for i, r in enumerate(fed) if (r.kind == "note" and arrived[i] >= now - 400 * day)
                or (r.kind == "scan" and arrived[i] >= now - 8 * day)]
        assert views.fed == want and len(want) == 4 + 2
    finally:
        store.close()


def _with_a_damaged_note(path: Path, key: Ed25519Signer) -> tuple[list[Entry], Entry]:
    """A closed store of 30 notes whose copy of one (returned with the log's entries) is damaged."""
    store = LmdbHubStore(path)
    _logged(store, key, [5_000 + 10 * i for i in range(30)])
    entries = store.entries(0, store.size())
    bad = next(e for e in entries if decode_record(e.raw).kind == "note" and e.index > 10)
    store.close()
    _damage(path, bad.device_id, bad.seq)
    return entries, bad


def test_a_damaged_entry_is_skipped_logged_and_counted(tmp_path: Path, caplog) -> None:
    path = tmp_path / "hub"
    key = Ed25519Signer.from_seed(b"\x64" * 32)
    entries, bad = _with_a_damaged_note(path, key)
    store = LmdbHubStore(path)
    try:
        hub = Hub(store, key, clock=Clock(5_400))
        views = FeedLog(hub, plan=Plan(kitchens=(), schools=()), refill=True, refill_batch=7)
        views.start()
        assert views.refilled.wait(WAIT_S)
        views.close()
        progress = views.refill_progress
        assert progress.damaged == 1 and progress.done == progress.total == len(entries)
        fed = list(views.fed)
        assert decode_record(bad.raw).id not in fed
        notes = [r.id for r in map(decode_record, (e.raw for e in entries)) if r.kind == "note"]
        assert fed == [rid for rid in notes if rid != decode_record(bad.raw).id] and len(fed) == 29
        assert "damaged" in caplog.text and str(bad.index) in caplog.text
    finally:
        store.close()


def _damage(path: Path, device_id: bytes, seq: int) -> None:
    """Flip a bit of one stored record's bytes, as rot on the disk would."""
    env = lmdb.open(str(path), max_dbs=16, subdir=True)
    records = env.open_db(b"records")
    key = device_id + struct.pack(">Q", seq)
    with env.begin(write=True) as txn:
        raw = bytearray(txn.get(key, db=records))
        raw[-1] ^= 0x01
        txn.put(key, bytes(raw), db=records)
    env.close()



def test_a_backfilled_day_refills_with_the_arrival_times_it_was_judged_by(tmp_path: Path) -> None:
    """A clock that follows records (a past day pushed in bulk) tells each record's own time to the read
    models; the store keeps the same times, so the refilled models judge the day as the live ones did."""
    store = LmdbHubStore(tmp_path / "hub")
    try:
        clock = HubClock(parse_clock(f"{DATE}T00:00+07:00 records"))
        hub = Hub(store, Ed25519Signer.from_seed(b"\x66" * 32), clock=clock)
        sent = traffic()
        live = Views(hub, plan=sent.plan)
        sent.enroll(hub, Clock(clock()))
        day = [p for p in sent.pushes if p[2] in ("scan", "stock")]
        for site in dict.fromkeys(p[1] for p in day):  # each device's day in one push, as a backfill sends it
            device = sent.devices[site]
            raws = [device.sign(kind, body, t) for _, s, kind, body, t in day if s == site]
            assert hub.ingest(device.device_id, raws).accepted == len(raws)
        refilled = Views(hub, plan=sent.plan, refill=True)
        refilled.refill_from_store()
        now = clock()
        for views in (live, refilled):
            assert views.mbg.summary(now)["total_scans_today"] == sum(1 for p in day if p[2] == "scan")

        def judged(views: Views) -> Any:
            with views.fresh():
                return ([d.to_dict() for d in views.mbg.deliveries(now, DATE)],
                        sorted(f.key() for f in views.mbg.findings(now, DATE)), views.mbg.summary(now))

        assert judged(refilled) == judged(live)
    finally:
        store.close()


class GatedStore:
    """A store whose log the refill thread cannot read until `gate` is set; everything else passes through."""

    def __init__(self, inner: HubStore, gate: threading.Event) -> None:
        self.inner, self.gate = inner, gate

    def entries(self, start: int, end: int) -> Any:
        if threading.current_thread().name == "jejak-refill":
            assert self.gate.wait(WAIT_S)
        return self.inner.entries(start, end)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def test_start_hub_does_not_wait_for_the_refill_and_shows_its_progress(tmp_path: Path) -> None:
    key = Ed25519Signer.from_seed(b"\x67" * 32)
    clock = Clock(local_midnight_minus(days=22))
    sent = traffic()
    store = LmdbHubStore(tmp_path / "store")
    hub = Hub(store, key, clock=clock)
    sent.enroll(hub, clock)
    assert sent.push(hub, clock, sent.pushes) == len(sent.pushes)
    store.close()
    clock.now = sent.now
    gate = threading.Event()
    hub = Hub(GatedStore(LmdbHubStore(tmp_path / "store"), gate), key, clock=clock)  # type: ignore[arg-type]
    config = HubConfig(data_dir=str(tmp_path / "hub"), http_port=0, coap_port=0, mdns=False,
                       checkpoint_interval=3600, security=HubSecurityConfig(oscore=False))
    running = await start_hub(config, hub=hub, plan=sent.plan)  # returns though the refill cannot read yet
    try:
        summary = await asyncio.to_thread(_get, running.http_url + "/api/dashboard/summary")
        assert summary["refill"]["running"] and summary["refill"]["done"] == 0
        assert summary["total_scans_today"] == 0 and not running.views.refilled.is_set()
        found = await scrape(running.http_url)
        assert value(found, "jejak_hub_refill_running") == 1
        gate.set()
        assert await asyncio.to_thread(running.views.refilled.wait, WAIT_S), "the refill did not end"
        summary = await asyncio.to_thread(_get, running.http_url + "/api/dashboard/summary")
        assert not summary["refill"]["running"]
        assert summary["refill"]["done"] == summary["refill"]["total"] >= len(sent.pushes)
        assert summary["total_scans_today"] == sum(1 for p in sent.pushes if p[2] == "scan")
        found = await scrape(running.http_url)
        assert value(found, "jejak_hub_refill_running") == 0
        assert value(found, "jejak_hub_refill_entries", state="done") == summary["refill"]["done"]
        assert value(found, "jejak_hub_refill_entries", state="damaged") == 0
    finally:
        gate.set()
        await running.close()


# --- the kind index -------------------------------------------------------------------------------------

class CountedReads:
    """A store that counts the log entries its reads hand to the refill thread: by position (the kind index's
    finds) and by range (the binary search for each window's first index)."""

    def __init__(self, inner: HubStore) -> None:
        self.inner = inner
        self.at = self.ranged = 0

    def entries_at(self, indices: Any) -> Any:
        found = self.inner.entries_at(indices)
        self.at += len(found)
        return found

    def entries(self, start: int, end: int) -> Any:
        found = self.inner.entries(start, end)
        self.ranged += len(found)
        return found

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _kitchen_log(hub: Hub, clock: Clock, plan: list[tuple[int, str, dict[str, Any]]]) -> None:
    """A kitchen device's records (arrival time, kind, body), each pushed at its own arrival time."""
    signer = Ed25519Signer.from_seed(b"\x68" * 32)
    device_id = enroll(hub, signer, clock, site="K1", role="kitchen")
    builder = ChainBuilder(signer, clock=clock, boot=1)
    assert hub.ingest(device_id, [builder.genesis().raw]).accepted == 1
    for at, kind, body in plan:
        clock.now = at
        assert hub.ingest(device_id, [builder.append(kind, body).raw]).accepted == 1


def _stock(movement: str, qty: int) -> dict[str, Any]:
    return {"site": "K1", "item": "beras", "movement": movement, "qty": qty, "unit": "g"}


def _scan(at: int) -> dict[str, Any]:
    return {"site": "K1", "event": "cooked", "cooked_at": at, "count": 20}


@pytest.mark.parametrize("kind", ["lmdb", "postgres"])
def test_stock_on_hand_after_a_restart_counts_movements_older_than_the_markets_window(tmp_path: Path,
                                                                                       kind: str) -> None:
    schema = f"t_{uuid.uuid4().hex[:12]}"
    day, now = 86400, 1_763_900_000
    key = Ed25519Signer.from_seed(b"\x69" * 32)
    clock = Clock(now - 700 * day)
    store = _open(kind, tmp_path / "hub", schema)
    try:
        hub = Hub(store, key, clock=clock)
        live = Views(hub, plan=Plan(kitchens=(), schools=()))
        _kitchen_log(hub, clock, [(now - 600 * day, "stock", _stock("receive", 90_000)),
                                  (now - 2 * day, "stock", _stock("use", 20_000)),
                                  (now - day, "scan", _scan(now - day))])
        clock.now = now
        with live.fresh():
            before = live.mbg.stock_on_hand()
        assert [card["on_hand"] for card in before] == [70_000]
        store.close()

        store = _open(kind, tmp_path / "hub", schema)
        refilled = Views(Hub(store, key, clock=clock), plan=Plan(kitchens=(), schools=()), refill=True)
        refilled.refill_from_store()
        with refilled.fresh():
            assert refilled.mbg.stock_on_hand() == before
        assert refilled.refill_progress.read == 3 and refilled.refill_progress.damaged == 0
    finally:
        store.close()
        if kind == "postgres":
            PgHubStore(PG_DSN, schema=schema).drop()


def _windowed_log(hub: Hub, clock: Clock, now: int, *, old: int, recent: int) -> None:
    """A kitchen's log about `now`: a stock receipt 150 days back, `old` cook scans 100 days back with four notes
    of 50 days back in their middle, and `recent` scans of the last day."""
    day = 86400
    old_scans = [(now - 100 * day + 60 * i, "scan", _scan(now - 100 * day + 60 * i)) for i in range(old)]
    notes = [(now - 50 * day + i, "note", {"text": str(i)}) for i in range(4)]
    _kitchen_log(hub, clock, [(now - 150 * day, "stock", _stock("receive", 5_000)), *old_scans[:old // 2], *notes,
                              *old_scans[old // 2:],
                              *((now - day + 60 * i, "scan", _scan(now - day + 60 * i)) for i in range(recent))])


@pytest.mark.parametrize("kind", ["lmdb", "postgres"])
def test_a_refill_reads_only_the_records_its_window_wants(tmp_path: Path, kind: str) -> None:
    schema = f"t_{uuid.uuid4().hex[:12]}"
    day, now = 86400, 1_763_900_000
    key = Ed25519Signer.from_seed(b"\x6a" * 32)
    clock = Clock(now - 200 * day)
    store = _open(kind, tmp_path / "hub", schema)
    try:
        _windowed_log(Hub(store, key, clock=clock), clock, now, old=300, recent=3)
        clock.now = now
        counted = CountedReads(store)
        views = FeedLog(Hub(counted, key, clock=clock), plan=Plan(kitchens=(), schools=()),  # type: ignore[arg-type]
                        refill=True, refill_batch=2)
        views.refill_from_store()
        logged = [(e.index, decode_record(e.raw)) for e in store.entries(0, store.size())]
        want = [r.id for _, r in logged if r.kind in ("stock", "note") or (r.kind == "scan" and r.body["cooked_at"]
                                                                            >= now - 8 * day)]
        assert views.fed == want and len(want) == 1 + 4 + 3
        progress = views.refill_progress
        # Every wanted record read once, and none of the 300 old scans; the two binary searches (scans of 8
        # days, market records of 400) read one entry a step.
        assert counted.at == progress.read == len(want)
        assert counted.ranged <= 2 * (len(logged).bit_length() + 1)
        assert progress.done == progress.total == len(logged) and progress.damaged == 0
    finally:
        store.close()
        if kind == "postgres":
            PgHubStore(PG_DSN, schema=schema).drop()


def _as_store_before_the_kind_index(kind: str, path: Path, schema: str) -> None:
    """A closed store turned into what a release before the kind index left: no index, the layout or schema
    before it."""
    if kind == "lmdb":
        env = lmdb.open(str(path), max_dbs=32, subdir=True)
        with env.begin(write=True) as txn:
            txn.drop(env.open_db(b"kind_index", txn=txn), delete=True)
            txn.put(b"layout", b"2", db=env.open_db(b"meta", txn=txn))
        env.close()
        return
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f"DROP TABLE {schema}.kind_index")
        conn.execute(f"UPDATE {schema}.meta SET value = %s WHERE key = 'schema_version'",
                     (str(KIND_INDEX_VERSION - 1),))


@pytest.mark.parametrize("chunks", [0, 2, 5])
@pytest.mark.parametrize("kind", ["lmdb", "postgres"])
def test_a_refill_during_the_background_kind_index_answers_as_after_it(tmp_path: Path, kind: str,
                                                                       chunks: int) -> None:
    schema = f"t_{uuid.uuid4().hex[:12]}"
    day, now = 86400, 1_763_900_000
    key = Ed25519Signer.from_seed(b"\x6c" * 32)
    clock = Clock(now - 200 * day)
    store = _open(kind, tmp_path / "hub", schema)
    try:
        _windowed_log(Hub(store, key, clock=clock), clock, now, old=60, recent=30)
        logged = [decode_record(e.raw) for e in store.entries(0, store.size())]
        store.close()
        _as_store_before_the_kind_index(kind, tmp_path / "hub", schema)
        # Opened without its background pass, which is stepped by hand: none, part (the recent scans), all.
        store = (LmdbHubStore(tmp_path / "hub", index_behind=False) if kind == "lmdb" else
                 PgHubStore(PG_DSN, schema=schema, index_behind=False))
        for _ in range(chunks):
            store.index_older_kinds(chunk=20)
        assert store.kind_index_from() == max(0, len(logged) - 20 * chunks)
        clock.now = now
        views = FeedLog(Hub(store, key, clock=clock), plan=Plan(kitchens=(), schools=()), refill=True,
                        refill_batch=2)
        views.refill_from_store()
        want = [r.id for r in logged if r.kind in ("stock", "note") or (r.kind == "scan" and r.body["cooked_at"]
                                                                         >= now - 8 * day)]
        assert views.fed == want and len(want) == 1 + 4 + 30
        progress = views.refill_progress
        assert progress.done == progress.total == len(logged) and progress.damaged == 0
    finally:
        store.close()
        if kind == "postgres":
            PgHubStore(PG_DSN, schema=schema, index_behind=False).drop()


@pytest.mark.parametrize("chunks", [0, 2, 9])
def test_a_record_damaged_before_the_store_was_indexed_is_reported_by_the_refill(tmp_path: Path, caplog,
                                                                                   chunks: int) -> None:
    path = tmp_path / "hub"
    key = Ed25519Signer.from_seed(b"\x6b" * 32)
    entries, bad = _with_a_damaged_note(path, key)
    # A store of the layout before the kind index: its open leaves the log to a background index, which cannot
    # read the damaged record's kind; the refill answers alike before that index starts, midway and after it.
    env = lmdb.open(str(path), max_dbs=32, subdir=True)
    with env.begin(write=True) as txn:
        txn.drop(env.open_db(b"kind_index", txn=txn), delete=True)
        txn.put(b"layout", b"2", db=env.open_db(b"meta", txn=txn))
    env.close()
    store = LmdbHubStore(path, index_behind=False)
    for _ in range(chunks):
        store.index_older_kinds(chunk=7)
    assert store.kind_index_from() == max(0, len(entries) - 7 * chunks)
    try:
        assert store.kind_positions(None, 0, store.size(), 10) == [bad.index]
        assert bad.index not in store.kind_positions("note", 0, store.size(), 100)
        views = FeedLog(Hub(store, key, clock=Clock(5_400)), plan=Plan(kitchens=(), schools=()), refill=True,
                        refill_batch=7)
        views.refill_from_store()
        progress = views.refill_progress
        assert progress.damaged == 1 and progress.done == progress.total == len(entries)
        notes = [r.id for r in map(decode_record, (e.raw for e in entries)) if r.kind == "note"]
        assert views.fed == [rid for rid in notes if rid != decode_record(bad.raw).id] and len(views.fed) == 29
        assert progress.read == 29
        assert "damaged" in caplog.text and str(bad.index) in caplog.text
    finally:
        store.close()
