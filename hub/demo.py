"""`jejak demo`: a local hub, simulated kitchens, schools and markets signing and pushing a day over CoAP."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import hashlib
import json
import os
import secrets
import shutil
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiocoap
from aiohttp import web

from coap_server.sync import sync_once
from ledger import ChainBuilder, ChainState, Ed25519Signer, Record
from ledger.enroll import make_enroll_request
from ledger.failures import PortInUse
from ledger.sync import Head

from .app import RunningHub, free_coap_port, start_hub
from .auth import hash_token
from .bridges import BridgeConfig, MqttConfig
from .clock import CLOCK_HELP, ClockSpec, HubClock, clock_setting, parse_clock
from .config import HubConfig
from .markets import MarketConfig, ValidationConfig
from .markets.catalog import COMMODITIES_BY_ID, MARKETS_BY_ID
from .markets.synth import SynthConfig, generate
from .mbg import Kitchen, Plan, School, simulate
from .mbg.plan import HOUR, WIB, local_date, local_midnight

MARKER = ".jejak-demo"
# One fault per kitchen, so the first screen already shows what the hub catches.
KITCHENS = (
    ("SPPG-0001", "SPPG Cibinong 1", "late_truck"),
    ("SPPG-0002", "SPPG Bekasi Timur", "short_delivery"),
    ("SPPG-0003", "SPPG Depok Sukmajaya", "missing_delivery"),
    ("SPPG-0004", "SPPG Bogor Tanah Sareal", "temperature_drop"),
    ("SPPG-0005", "SPPG Tangerang Cipondoh", "normal"),
)
SCHOOL_NAMES = ("SDN", "SMPN", "SDN")
MARKETS = ("pasar-kramat-jati", "pasar-senen", "pasar-kosambi", "pasar-johar", "pasar-keputran",
           "pasar-petisah", "pasar-badung", "pasar-terong")
COMMODITIES = ("beras-medium", "cabai-merah", "bawang-merah", "telur-ayam", "minyak-goreng")
HISTORY_DAYS = 69  # ALPS needs eight weeks before the one it judges; forecasts need six
SHOCKS_PER_YEAR = 12.0  # regional supply shocks, so the demo's ALPS map is not all "normal"
# MBG kitchens' market region (as price records name it): their stock use is MBG demand there.
KITCHEN_REGIONS = {"SPPG-0001": "Jawa Barat", "SPPG-0002": "Jawa Barat", "SPPG-0003": "Jawa Barat",
                   "SPPG-0004": "Jawa Barat", "SPPG-0005": "Banten"}
DAY_START, DAY_END = 4 * HOUR, 17 * HOUR


@dataclass
class Tap:
    at: int  # simulated time when the device makes the record
    kind: str
    body: dict[str, Any]
    device_time: int  # what the device's clock says


@dataclass
class SimDevice:
    """A simulated edge device: its key, its log, and the records it will make as the day goes on."""

    site: str
    role: str
    name: str
    signer: Ed25519Signer
    taps: list[Tap] = field(default_factory=list)
    records: list[Record] = field(default_factory=list)
    _time: int = 0
    builder: ChainBuilder | None = None

    @property
    def device_id(self) -> bytes:
        return self.builder.device_id if self.builder else b""

    def begin(self, now: int) -> None:
        self._time = now
        self.builder = ChainBuilder(self.signer, clock=lambda: self._time, boot=1)
        self.records.append(self.builder.genesis())
        self.taps.sort(key=lambda t: t.at)  # stable: equal moments keep their order

    def due(self, now: int) -> int:
        """Sign every tap whose moment has come; return how many."""
        assert self.builder is not None
        n = 0
        while self.taps and self.taps[0].at <= now:
            tap = self.taps.pop(0)
            self._time = tap.device_time
            self.records.append(self.builder.append(tap.kind, tap.body))
            n += 1
        return n

    # the sync session's view of this device's log
    def heads(self) -> list[Head]:
        state = ChainState(device_id=self.device_id, length=len(self.records), head=self.records[-1].id)
        return [Head.of(state)]

    def log_range(self, device_id: bytes, start: int, end: int) -> list[bytes]:
        return [r.raw for r in self.records[start:end]]

    def receive(self, device_id: bytes, raws: Any) -> dict[str, Any]:
        return {"accepted": 0, "duplicates": 0}


def demo_date(now: float) -> str:
    """Today in WIB, stepped back to the last school day (MBG serves Monday to Saturday)."""
    day = dt.datetime.fromtimestamp(now, dt.UTC).astimezone(dt.timezone(dt.timedelta(seconds=WIB))).date()
    while day.weekday() == 6:
        day -= dt.timedelta(days=1)
    return day.isoformat()


def _seed(name: str) -> bytes:
    return hashlib.sha256(b"jejak-demo-device:" + name.encode()).digest()


def _rename(value: Any, old: str, new: str) -> Any:
    if isinstance(value, str):
        return value.replace(old, new)
    if isinstance(value, list):
        return [_rename(v, old, new) for v in value]
    return value


def build_mbg(date: str, faults: tuple[tuple[str, str, str], ...] = KITCHENS) -> tuple[Plan, dict[str, SimDevice]]:
    """Kitchens and schools for the day, each kitchen with its own fault (`faults`: id, name, scenario), as signing
    devices with taps. Each kitchen keeps the simulator's roster of its staff cards, so a card it did not list
    (the borrowed_card fault) is a finding and its own staff's taps are not."""
    kitchens, schools = [], []
    devices: dict[str, SimDevice] = {}
    for i, (kid, kname, scenario) in enumerate(faults):
        day = simulate(scenario, seed=i + 1, kitchens=1, schools_per_kitchen=3, meals_per_kitchen=900, date=date)
        roster = day.plan.kitchens[0].staff
        kitchens.append(Kitchen(id=kid, name=kname, tz_offset_s=WIB,
                                staff=None if roster is None else tuple(_rename(list(roster), "SPPG-0001", kid))))
        for s in day.plan.schools:
            sid = s.id.replace("SPPG-0001", kid)
            n = int(sid[-2:])
            schools.append(School(id=sid, name=f"{SCHOOL_NAMES[n - 1]} {kname.split(' ', 1)[1]} {n:02d}",
                                  kitchen=kid, portions=s.portions, deadline_s=s.deadline_s, tz_offset_s=WIB))
        for rec in day.records:
            site = day.devices[rec.device]
            new_site = site.replace("SPPG-0001", kid)
            body = {k: _rename(v, "SPPG-0001", kid) for k, v in rec.body.items()}
            if "tags" in body:  # tags are per kitchen in the simulator; keep them unique across kitchens
                body["tags"] = [hashlib.sha256(f"{kid}/{t}".encode()).hexdigest()[:14].upper() for t in body["tags"]]
            if new_site not in devices:
                role = "kitchen_exit" if new_site == kid else "school_gate"
                # Named as staff name a reader (deploy/edge.toml), so answers read "gerbang SDN ..." not a role code.
                place = kname if new_site == kid else next(s.name for s in schools if s.id == new_site)
                name = f"pintu keluar {place}" if new_site == kid else f"gerbang {place}"
                devices[new_site] = SimDevice(site=new_site, role=role, name=name,
                                              signer=Ed25519Signer.from_seed(_seed(new_site)))
            devices[new_site].taps.append(Tap(at=rec.time, kind=rec.kind, body=body, device_time=rec.time))
    return Plan(kitchens=tuple(kitchens), schools=tuple(schools), portions_per_container=10), devices


def build_markets(date: str, seed: int = 7) -> dict[str, SimDevice]:
    """One device per market signing its reporters' prices, its sensor readings and field notes, generated by
    hub.markets.synth: HISTORY_DAYS of history (sent at start, as a backlog) and the demo day as it happens."""
    midnight = local_midnight(date, WIB)
    first = dt.date.fromisoformat(date) - dt.timedelta(days=HISTORY_DAYS)
    data = generate(SynthConfig(
        seed=seed, start=first.isoformat(), days=HISTORY_DAYS + 1, reporters=(1, 2),
        markets=tuple(MARKETS_BY_ID[m] for m in MARKETS), commodities=tuple(COMMODITIES_BY_ID[c] for c in COMMODITIES),
        shocks_per_year=SHOCKS_PER_YEAR, manipulation_rate=0.01))
    devices = {m: SimDevice(site=m, role="market", name=MARKETS_BY_ID[m].name, signer=Ed25519Signer.from_seed(_seed(m)))
               for m in MARKETS}

    def tap(market: str, kind: str, t: int, body: dict[str, Any]) -> None:
        # History is a backlog sent when the device comes online; the demo day's records as their time comes.
        devices[market].taps.append(Tap(at=0 if t < midnight else t, kind=kind, body=body, device_time=t))

    for t, body in data.price_bodies():
        tap(body["market"], "price", t, body)
    for t, body in data.reading_bodies():
        tap(body["site"], "reading", t, body)
    for note in data.notes:
        if note.market in devices:
            tap(note.market, "note", note.time, note.to_body())
    return devices


async def webhook_inbox(request: web.Request) -> web.Response:
    """The demo's own webhook receiver: the demo hub sends its ALPS alerts here (generic JSON)"""
    await request.read()
    return web.json_response({"ok": True})


class Demo:
    """The running demo: the hub, the devices, the clock; `run_day()` drives the day over real CoAP."""

    def __init__(self, running: RunningHub, clock: HubClock, devices: dict[str, SimDevice], date: str) -> None:
        self.running, self.clock, self.devices, self.date = running, clock, devices, date
        self.pushed = 0
        self.problems: list[str] = []
        self.day_done = False

    def status(self) -> dict[str, Any]:
        return {"date": self.date, "sim_time": self.clock(), "coap": self.running.coap_url, "day_done": self.day_done, "pushed": self.pushed,
                "devices": len(self.devices), "remaining": sum(len(d.taps) for d in self.devices.values()),
                "problems": self.problems[-20:]}

    async def run_day(self, tick: float = 0.25) -> None:
        # Each device has its own UDP endpoint, as real devices do (and aiocoap assembles blockwise
        # uploads per remote endpoint, so devices must not share one).
        contexts = {site: await aiocoap.Context.create_client_context() for site in self.devices}
        try:
            while True:
                now = self.clock()
                busy = [d for d in self.devices.values() if d.due(now) or self._unsent(d)]
                if busy:
                    reports = await asyncio.gather(*(sync_once(contexts[d.site], self.running.coap_url, d, pull=False)
                                                     for d in busy), return_exceptions=True)
                    for rep in reports:
                        if isinstance(rep, BaseException):
                            self.problems.append(repr(rep))
                        else:
                            self.pushed += rep.pushed
                            self.problems.extend(rep.problems)
                if not any(d.taps for d in self.devices.values()) and not any(map(self._unsent, self.devices.values())):
                    break
                await asyncio.sleep(tick)
        finally:
            for ctx in contexts.values():
                await ctx.shutdown()
        await asyncio.to_thread(self.running.hub.checkpoint)
        self.day_done = True

    def close_backlog_window(self) -> int:
        """Move the clock past the markets' backlog window and make final the days it held open. The devices
        sent their past days' prices late (the whole window, in a demo), so each of those days waits for the
        other markets' backlogs; two hours of a real evening later they are judged with all of them in.
        Returns how many prices got their final verdict."""
        views = self.running.views
        with views.fresh():  # the clock moves under the read models' lock: no derivation settles these first
            self.clock.skip_to(self.clock() + views.markets.validator.config.backlog_window_s + 1)
            settled = views.markets.settle()
        views.changed()  # the alerts are derived again from the final verdicts
        return settled

    def _unsent(self, d: SimDevice) -> bool:
        state = self.running.hub.store.chain_state(d.device_id)
        return (state.length if state else 0) < len(d.records)


AUDITOR_TOKEN_FILE = "auditor.token"


def demo_auditor_token(path: Path) -> str:
    """The demo's auditor token (for exports and record bodies), made once per data directory, mode 0600."""
    file = path / AUDITOR_TOKEN_FILE
    if not file.exists():
        path.mkdir(parents=True, exist_ok=True)
        fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(24))
    return file.read_text().strip()


def demo_config(path: Path, *, port: int, coap_port: int) -> HubConfig:
    """The demo hub: approves the simulated devices, checkpoints often, and sends its ALPS alerts to its own
    webhook inbox. The market devices come online with their whole history as a backlog; the validator's
    staleness rule would quarantine all of it, so the demo hub accepts reports as old as that history. Its
    auditor token is in <data_dir>/auditor.token (exports need one)."""
    return HubConfig(name="demo", data_dir=str(path), http_port=port, coap_port=coap_port, auto_approve=True,
                     auditor_tokens=(hash_token(demo_auditor_token(path)),),
                     mdns=False, checkpoint_interval=2.0, mbg_kitchen_regions=dict(KITCHEN_REGIONS),
                     markets=MarketConfig(validation=ValidationConfig(max_age_s=(HISTORY_DAYS + 2) * 86400)),
                     webhooks=({"id": "demo-inbox", "kind": "json", "url": f"http://127.0.0.1:{port}/api/demo/webhook"},),
                     webhook_attempts=2, webhook_timeout_s=5.0,
                     bridges=BridgeConfig(state_dir=str(path / "bridges"), mqtt=MqttConfig(enabled=False)))


async def start_demo(*, data_dir: str, port: int, speed: float, date: str | None = None,
                     coap_port: int = 0, fresh: bool = True, clock: str | None = None) -> Demo:
    """Start a hub on `port` with enrolled simulated devices; call `run_day()` on the result to play the day.

    The hub's clock plays the day from 04:00 WIB of `date` at `speed`, then runs at 1x from 17:00; `clock`
    (hub/clock.py's setting) starts it elsewhere instead, e.g. "2026-03-02T09:30+07:00 x60" (its day is the
    demo's day)."""
    path = Path(data_dir)
    if fresh and path.exists():
        if not (path / MARKER).exists() and any(path.iterdir()):
            raise SystemExit(f"{path} holds data that the demo did not write; choose another --data-dir")
        shutil.rmtree(path)  # simulated devices restart their logs, so the hub must too
    path.mkdir(parents=True, exist_ok=True)
    (path / MARKER).write_text("data written by `jejak demo`; removed on the next run\n")
    spec = parse_clock(clock) if clock else None
    if spec is not None and spec.start is not None:
        date = local_date(spec.start, WIB)
    date = date or demo_date(time.time())
    midnight = local_midnight(date, WIB)
    if spec is None or spec.start is None:
        spec = ClockSpec(start=midnight + DAY_START, speed=speed)
    hub_clock = HubClock(spec, slow_after=midnight + DAY_END)
    plan, devices = build_mbg(date)
    devices.update(build_markets(date))
    demos: list[Demo] = []

    async def demo_status(request: web.Request) -> web.Response:
        """The demo's progress: simulated time, records pushed, whether the day is done"""
        return web.json_response(demos[0].status())

    def routes(app: web.Application) -> None:
        app.router.add_get("/api/demo", demo_status)
        app.router.add_post("/api/demo/webhook", webhook_inbox)

    running = await _start_demo_hub(path, port=port, coap_port=coap_port, clock=hub_clock, plan=plan,
                                    routes=routes)
    hub = running.hub
    now = hub_clock()
    for d in devices.values():
        d.begin(now)
        req = make_enroll_request(d.signer, site=d.site, role=d.role, name=d.name, time=now, hub_id=hub.hub_id)
        await asyncio.to_thread(hub.enroll, req)
    demos.append(Demo(running, hub_clock, devices, date))
    return demos[0]


async def _start_demo_hub(path: Path, *, port: int, coap_port: int, clock: HubClock, plan: Plan,
                          routes: Callable[[web.Application], None]) -> RunningHub:
    """The demo's hub on `port` and `coap_port`, either 0 for any free one. The webhook inbox's address names the
    HTTP port, so a free one is picked before the hub starts; another process can take it in between (a second
    demo started at once), and then another is picked. A port asked for and taken stops the demo (PORT_IN_USE)."""
    for attempt in range(5):
        config = demo_config(path, port=port or free_coap_port(), coap_port=coap_port)
        try:
            return await start_hub(config, clock=clock, plan=plan, routes=[routes])
        except PortInUse as exc:
            if port or exc.where != "http_port" or attempt == 4:
                raise
    raise AssertionError("unreachable")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="jejak demo", description=(
        "Start a local hub with simulated kitchens, schools and markets that sign their records and push "
        "them over CoAP, play one MBG school day at an accelerated pace, and serve the dashboard."))
    p.add_argument("--port", type=int, default=8470, help="HTTP port of the dashboard (default 8470; 0 = any free)")
    p.add_argument("--coap-port", type=int, default=0, help="CoAP port of the hub (default: any free port)")
    p.add_argument("--data-dir", default="var/demo", help="where the demo hub keeps its LMDB store (wiped each run)")
    p.add_argument("--speed", type=float, default=400.0,
                   help="simulated seconds per real second until the day ends (default 400: a day in ~2 min)")
    p.add_argument("--date", help="the simulated school day, YYYY-MM-DD (default: today in WIB)")
    p.add_argument("--clock", type=clock_setting,
                   help="start the hub's clock here instead (its day is the demo's day): " + CLOCK_HELP)
    p.add_argument("--duration", type=float, help="stop after this many real seconds (default: run until Ctrl-C)")
    p.add_argument("--once", action="store_true", help="play the whole day at once, let the markets' backlog "
                   "window close (two hours on the clock), print a summary and exit")
    p.add_argument("--progress-s", type=float, default=10.0, help="seconds between progress lines (default 10)")
    return p


async def _amain(args: argparse.Namespace) -> int:
    demo = await start_demo(data_dir=args.data_dir, port=args.port, speed=args.speed, date=args.date,
                            coap_port=args.coap_port, clock=args.clock)
    running = demo.running
    print(f"Jejak demo: dashboard at {running.http_url}/  (hub {running.hub.hub_id.hex()}, "
          f"CoAP {running.coap_url}, {len(demo.devices)} simulated devices, day {demo.date}); auditor token "
          f"in {Path(args.data_dir) / AUDITOR_TOKEN_FILE}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    if args.once:
        demo.clock.skip_to(local_midnight(demo.date, WIB) + DAY_END)
    day = asyncio.create_task(demo.run_day())
    progress = asyncio.create_task(report_progress(demo, day, every=args.progress_s, staying=not args.once))
    try:
        if args.once:
            await day
            await progress
            settled = await asyncio.to_thread(demo.close_backlog_window)
            print(f"demo: {_clock_text(demo.clock())} WIB, the markets' backlog window closed: {settled} prices "
                  "judged final", flush=True)
        else:
            waiter = asyncio.create_task(stop.wait())
            await asyncio.wait([waiter], timeout=args.duration)
            waiter.cancel()
        summary = await asyncio.to_thread(demo.running.views.summary)
        print(json.dumps({"demo": demo.status(), "summary": summary}, default=str), flush=True)
    finally:
        for task in (progress, day):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await running.close()
    return 0


def _clock_text(t: int) -> str:
    return dt.datetime.fromtimestamp(t, dt.timezone(dt.timedelta(seconds=WIB))).strftime("%H:%M")


async def report_progress(demo: Demo, day: asyncio.Task[None], *, every: float, staying: bool) -> None:
    """One line every `every` seconds while the day plays (simulated time, records in, taps to come), and one
    when it is done, so a person watching the terminal knows the demo is alive and when to look."""
    started = time.monotonic()
    while not (await asyncio.wait([day], timeout=every))[0]:
        st = demo.status()
        print(f"demo: {_clock_text(st['sim_time'])} WIB, {st['pushed']} records at the hub, "
              f"{st['remaining']} taps still to come", flush=True)
    st = demo.status()
    print(f"demo: the day is done ({st['pushed']} records at the hub after {time.monotonic() - started:.0f} s)"
          + (f"; the dashboard stays up at {demo.running.http_url}/ until Ctrl-C" if staying else ""), flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return asyncio.run(_amain(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
