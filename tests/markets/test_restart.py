"""What an operator relies on holds through a restart of the hub: quarantine decisions (made before it, or while
the read models refill; on PostgreSQL also with a fresh data_dir), alerts told to webhook subscribers (not told again, and their time kept), a delivery the
stop cut (sent after it, with the same delivery id), and what changes after (an eased band is told)."""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
import threading
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from hub.app import load_or_create_key, open_store, start_hub
from hub.clock import HubClock, parse_clock
from hub.config import HubConfig, StoreConfig
from hub.journal import Journal
from hub.markets import AlertTracker, MarketConfig, Subscriber, Told, ValidationConfig, WebhookSender
from hub.markets.catalog import COMMODITIES_BY_ID, MARKETS_BY_ID
from hub.markets.synth import SynthConfig, generate
from hub.markets.warning import HELD
from hub.markets.webhooks import RetryPolicy
from hub.mbg import Plan
from hub.pg import PgAggregates, PgHubStore
from hub.service import Hub
from hub.store import LmdbHubStore
from hub.views import Views
from ledger import Ed25519Signer, decode_record
from tests.pg import PG_DSN, journal_in_store
from tests.wait import wait_for

from .test_api import COMMODITIES, DAYS, MARKETS, OPERATOR, Device, Env, hub_config, receiver, synth_history

AUTH = {"Authorization": f"Bearer {OPERATOR}"}
WAIT_S = 60  # an upper bound; every wait ends as soon as its condition holds
# The subscriber of these tests: Jawa Barat's early warnings. The history's held run (Pasar Johar's chilli, in
# Jawa Tengah) is derived once the whole history is in, maybe after a stop these tests make; the restarted hub,
# deriving it at once, would tell it as the news it is.
OPS = {"id": "ops", "kind": "json", "min_band": "stress", "regions": ["Jawa Barat"]}


def outlier(env: Env, t: int) -> str:
    return env.devices["pasar-kosambi"].sign("price", t, {
        "market": "pasar-kosambi", "commodity": "cabai-merah", "unit": "kg", "price_idr": 400_000,
        "reporter": "rep-x", "region": "Jawa Barat"})


def history_with_outliers(env: Env) -> tuple[str, str]:
    """DAYS of prices and readings ending now, with a tenfold price in the middle of the days the hub lists
    (each observation of its last raw_days; older days are kept as aggregates) and one a minute ago."""
    first = dt.date.today() - dt.timedelta(days=DAYS - 1)
    data = generate(SynthConfig(seed=5, start=first.isoformat(), days=DAYS, reporters=(1, 2),
                                markets=tuple(MARKETS_BY_ID[m] for m in MARKETS),
                                commodities=tuple(COMMODITIES_BY_ID[c] for c in COMMODITIES)))
    now = int(time.time())
    middle = now - env.views.markets.config.raw_days // 2 * 86400
    fake_middle = ""
    for t, body in data.price_bodies():
        if t >= middle and not fake_middle:
            fake_middle = outlier(env, middle)
        if t < now:
            env.devices[body["market"]].sign("price", t, body)
    for t, body in data.reading_bodies():
        if t < now:
            env.devices[body["site"]].sign("reading", t, body)
    return fake_middle, outlier(env, now - 60)


class HeldAfter:
    """A store whose refill stops, once it has read the entry of record `rid`, until `go` is set."""

    def __init__(self, inner: Any, rid: str, go: threading.Event) -> None:
        self.inner, self.rid, self.go = inner, rid, go
        self.held = False

    def entries_at(self, indices: Any) -> Any:
        if threading.current_thread().name != "jejak-refill":
            return self.inner.entries_at(indices)
        if self.held:
            assert self.go.wait(WAIT_S)
            return self.inner.entries_at(indices)
        got = self.inner.entries_at(indices)
        ids = [decode_record(e.raw).id.hex() for e in got]
        if self.rid in ids:
            self.held = True
            return got[:ids.index(self.rid) + 1]
        return got

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def _json(session: aiohttp.ClientSession, method: str, url: str, **kw: Any) -> tuple[int, Any]:
    async with session.request(method, url, **kw) as resp:
        return resp.status, await resp.json(content_type=None)


async def _derived(running: Any, what: str) -> None:
    """Wait until a started hub has refilled its read models and derived its alerts, none on its way to a
    subscriber."""
    views = running.views
    assert await asyncio.to_thread(views.refilled.wait, WAIT_S), "the refill did not end"
    await wait_for(lambda: views.derive_seconds > 0 and not views.alerts._sends, WAIT_S, what=what)


async def test_quarantine_decisions_hold_through_restarts_also_those_made_during_a_refill(tmp_path) -> None:
    config = hub_config(tmp_path)
    plan = Plan(kitchens=(), schools=())
    session = aiohttp.ClientSession()
    try:
        await _decide_across_restarts(tmp_path, config, plan, session)
    finally:
        await session.close()


async def _decide_across_restarts(tmp_path: Any, config: Any, plan: Plan, session: aiohttp.ClientSession) -> None:
    running = await start_hub(config, plan=plan)
    try:
        env = Env(running.hub, running.views, running, session, {m: Device(running.hub, m) for m in MARKETS})
        fake_middle, fake_last = history_with_outliers(env)
        await env.push()
        code, held = await env.get("/api/markets/quarantine")
        assert {fake_middle, fake_last} <= {e["observation"]["id"] for e in held["entries"]}, held
        code, answer = await env.post(f"/api/markets/quarantine/{fake_last}/decide", headers=AUTH,
                                      json={"action": "release", "by": "siti", "why": "checked with the trader"})
        assert code == 200 and answer["decision"]["to"] == "released", answer
        released = answer["decision"]
    finally:
        await running.close()

    # Restarted with the refill held once it has fed the middle outlier: an operator confirms it meanwhile.
    go = threading.Event()
    hub = Hub(HeldAfter(open_store(config), fake_middle, go), load_or_create_key(tmp_path / "hub" / "hub.key"),
              clock=HubClock(parse_clock(config.clock)), auto_approve=True)
    running = await start_hub(config, plan=plan, hub=hub)
    try:
        url = running.http_url
        await wait_for(lambda: running.views.markets.quarantine.state_of(fake_middle) == "pending", WAIT_S,
                       what="the middle outlier refilled")
        assert not running.views.refilled.is_set()
        code, answer = await _json(session, "POST", f"{url}/api/markets/quarantine/{fake_middle}/decide",
                                   headers=AUTH, json={"action": "confirm", "by": "budi", "why": "a typo"})
        assert code == 200 and answer["decision"]["to"] == "confirmed", answer
        confirmed = answer["decision"]
        assert not running.views.refilled.is_set()
        go.set()
        assert await asyncio.to_thread(running.views.refilled.wait, WAIT_S), "the refill did not end"
        code, audit = await _json(session, "GET", f"{url}/api/markets/quarantine/audit", headers=AUTH)
        assert [d for d in audit["audit"] if d["by"] != "validator"] == [released, confirmed]
    finally:
        go.set()
        await running.close()

    running = await start_hub(config, plan=plan)
    try:
        url = running.http_url
        assert await asyncio.to_thread(running.views.refilled.wait, WAIT_S), "the refill did not end"
        code, entries = await _json(session, "GET", f"{url}/api/markets/quarantine?state=all")
        states = {e["observation"]["id"]: e["state"] for e in entries["entries"]}
        assert states[fake_last] == "released" and states[fake_middle] == "confirmed"
        code, audit = await _json(session, "GET", f"{url}/api/markets/quarantine/audit", headers=AUTH)
        # Each with its own operator, reason and time, in the order they were made.
        assert [d for d in audit["audit"] if d["by"] != "validator"] == [released, confirmed]
        code, prices = await _json(session, "GET", f"{url}/api/markets/prices",
                                   params={"commodity": "cabai-merah", "market": "pasar-kosambi"})
        points = {p["id"]: p for s in prices["series"] for p in s["points"]}
        assert points[fake_last]["quarantined"] is False and points[fake_middle]["quarantined"] is True
        # The released value counts as a price again: a second release is a conflict, as before the restart.
        code, answer = await _json(session, "POST", f"{url}/api/markets/quarantine/{fake_last}/decide",
                                   headers=AUTH, json={"action": "release", "by": "siti", "why": "again"})
        assert code == 409, answer
    finally:
        await running.close()


def on_postgres(tmp_path: Any, name: str) -> HubConfig:
    return replace(hub_config(tmp_path), name=name, store=StoreConfig(backend="postgres", dsn=PG_DSN))


def on_fresh_data_dir(config: HubConfig, data_dir: Path) -> HubConfig:
    """The same hub, its key and its schema, started on an empty data_dir (a container on a new volume, the key
    given to it as before)."""
    data_dir.mkdir()
    shutil.copy(Path(config.data_dir) / "hub.key", data_dir / "hub.key")
    return replace(config, data_dir=str(data_dir))


def decisions_in_store(name: str) -> list[dict[str, Any]]:
    return journal_in_store(name, "quarantine/decisions.jsonl")


async def _states_and_audit(session: aiohttp.ClientSession, url: str) -> tuple[dict[str, str], list[Any]]:
    """Each quarantined observation's state, and the operators' decisions in the audit trail."""
    code, entries = await _json(session, "GET", f"{url}/api/markets/quarantine?state=all")
    assert code == 200, entries
    code, audit = await _json(session, "GET", f"{url}/api/markets/quarantine/audit", headers=AUTH)
    assert code == 200, audit
    return ({e["observation"]["id"]: e["state"] for e in entries["entries"]},
            [d for d in audit["audit"] if d["by"] != "validator"])


async def test_quarantine_decisions_on_postgres_stand_after_a_restart_on_an_empty_data_dir(tmp_path,
                                                                                          pg_name) -> None:
    """A hub on PostgreSQL keeps its operators' decisions in the store: restarted on a new, empty data_dir, the
    released report is released and the confirmed one confirmed, with the same audit trail, and neither is
    pending again."""
    config = on_postgres(tmp_path, pg_name)
    plan = Plan(kitchens=(), schools=())
    session = aiohttp.ClientSession()
    try:
        running = await start_hub(config, plan=plan)
        try:
            env = Env(running.hub, running.views, running, session, {m: Device(running.hub, m) for m in MARKETS})
            fake_middle, fake_last = history_with_outliers(env)
            await env.push()
            states, _ = await _states_and_audit(session, running.http_url)
            assert states[fake_middle] == states[fake_last] == "pending", states
            code, answer = await env.post(f"/api/markets/quarantine/{fake_last}/decide", headers=AUTH,
                                          json={"action": "release", "by": "siti", "why": "checked with the trader"})
            assert code == 200 and answer["decision"]["to"] == "released", answer
            released = answer["decision"]
            code, answer = await env.post(f"/api/markets/quarantine/{fake_middle}/decide", headers=AUTH,
                                          json={"action": "confirm", "by": "budi", "why": "a typo"})
            assert code == 200 and answer["decision"]["to"] == "confirmed", answer
            confirmed = answer["decision"]
        finally:
            await running.close()
        assert [d["observation"] for d in decisions_in_store(pg_name)] == [fake_last, fake_middle]
        assert not (tmp_path / "hub" / "quarantine").exists()

        running = await start_hub(on_fresh_data_dir(config, tmp_path / "new-volume"), plan=plan)
        try:
            assert await asyncio.to_thread(running.views.refilled.wait, WAIT_S), "the refill did not end"
            states, decided = await _states_and_audit(session, running.http_url)
            assert states[fake_last] == "released" and states[fake_middle] == "confirmed", states
            assert decided == [released, confirmed]
            code, answer = await _json(session, "POST", f"{running.http_url}/api/markets/quarantine/{fake_last}/decide",
                                       headers=AUTH, json={"action": "release", "by": "siti", "why": "again"})
            assert code == 409, answer
        finally:
            await running.close()
    finally:
        await session.close()


async def test_quarantine_decisions_a_hub_kept_in_data_dir_are_carried_into_postgres_once(tmp_path,
                                                                                          pg_name) -> None:
    """A hub that kept its decisions in data_dir's file before its store did carries them into the store at its
    next start, once: the file is set aside as decisions.jsonl.in-store, and a copy of it put back later is not
    carried again over what the store holds."""
    config = on_postgres(tmp_path, pg_name)
    plan = Plan(kitchens=(), schools=())
    session = aiohttp.ClientSession()
    try:
        running = await start_hub(config, plan=plan)
        try:
            env = Env(running.hub, running.views, running, session, {m: Device(running.hub, m) for m in MARKETS})
            _, fake_last = history_with_outliers(env)
            await env.push()
            code, answer = await env.post(f"/api/markets/quarantine/{fake_last}/decide", headers=AUTH,
                                          json={"action": "release", "by": "siti", "why": "checked with the trader"})
            assert code == 200, answer
            released = answer["decision"]
        finally:
            await running.close()
        # As an earlier hub left them: the decision in data_dir's file, none in the store.
        lines = decisions_in_store(pg_name)
        assert [d["observation"] for d in lines] == [fake_last]
        store = PgAggregates(PG_DSN, schema=pg_name.replace("-", "_"))
        try:
            store.journal("quarantine/decisions.jsonl").rewrite([])
        finally:
            store.close()
        file = tmp_path / "hub" / "quarantine" / "decisions.jsonl"
        Journal(file).rewrite(lines)
        set_aside = file.with_name("decisions.jsonl.in-store")

        for start in ("carried over", "a copy put back"):
            running = await start_hub(config, plan=plan)
            try:
                assert await asyncio.to_thread(running.views.refilled.wait, WAIT_S), "the refill did not end"
                states, decided = await _states_and_audit(session, running.http_url)
                assert states[fake_last] == "released" and decided == [released], (start, states, decided)
            finally:
                await running.close()
            assert decisions_in_store(pg_name) == lines, start
            assert not file.exists() and Journal(set_aside).read() == lines, start
            shutil.copy(set_aside, file)
    finally:
        await session.close()


async def test_a_decision_the_journal_refuses_changes_nothing_and_can_be_made_again(tmp_path) -> None:
    config = hub_config(tmp_path)
    running = await start_hub(config, plan=Plan(kitchens=(), schools=()))
    session = aiohttp.ClientSession()
    try:
        env = Env(running.hub, running.views, running, session, {m: Device(running.hub, m) for m in MARKETS})
        _, fake_last = history_with_outliers(env)
        await env.push()
        journal = tmp_path / "hub" / "quarantine" / "decisions.jsonl"
        assert config.data_dir == str(tmp_path / "hub") and not journal.exists()
        journal.mkdir(parents=True)  # appending to it fails as a failing disk would (an OSError)
        body = {"action": "release", "by": "siti", "why": "checked with the trader"}
        code, answer = await env.post(f"/api/markets/quarantine/{fake_last}/decide", headers=AUTH, json=body)
        assert code == 500 and answer["error"]["code"] == "STORE_ERROR", answer
        assert running.views.markets.quarantine.state_of(fake_last) == "pending"
        code, audit = await env.get("/api/markets/quarantine/audit", headers=AUTH)
        assert [d for d in audit["audit"] if d["by"] != "validator"] == []
        journal.rmdir()
        code, answer = await env.post(f"/api/markets/quarantine/{fake_last}/decide", headers=AUTH, json=body)
        assert code == 200 and answer["decision"]["to"] == "released", answer
        assert [d["observation"] for d in Journal(journal).read()] == [fake_last]
    finally:
        await session.close()
        await running.close()


async def test_alerts_are_sent_once_across_a_restart_and_keep_their_time(tmp_path) -> None:
    runner, url, received = await receiver()
    config = hub_config(tmp_path, webhooks=({"url": url, **OPS},))
    plan = Plan(kitchens=(), schools=())
    session = aiohttp.ClientSession()
    try:
        running = await start_hub(config, plan=plan)
        try:
            env = Env(running.hub, running.views, running, session, {m: Device(running.hub, m) for m in MARKETS})
            synth_history(env, seed=11, shocks=24.0)
            await env.push()
            sender = running.views.alerts.sender
            assert sender is not None
            await wait_for(lambda: sender.log and not running.views.alerts._sends, 20, what="deliveries")
            sent = list(sender.log)
            assert sent and all(d.ok for d in sent)
            await wait_for(lambda: len(received) == len(sent), 20, what="every delivery received")
            before = {a["id"]: a["time"] for a in running.views.alerts.listing()["alerts"]
                      if a["domain"] == "markets" and a["code"] != "quarantined"}
            # Each delivery is an alert listed under its indicator: an early warning's band (alps/...), or a run of
            # reports held for a decision (held/...), which the synthetic shocks can make depending on the day.
            assert {f"{d.body['alert']['indicator'].lower()}/{d.alert_id}" for d in sent} <= set(before), sent
        finally:
            await running.close()
        got = list(received)

        # A minute later by the hub's clock: alerts derived again are the same ones, and nobody is told twice.
        restarted_at = int(time.time()) + 60
        running = await start_hub(config, plan=plan, clock=lambda: int(time.time()) + 60)
        try:
            views = running.views
            await _derived(running, "the alerts derived after the refill")
            after = {a["id"]: a["time"] for a in views.alerts.listing()["alerts"]
                     if a["domain"] == "markets" and a["code"] != "quarantined"}
            assert set(before) <= set(after)
            assert {k: after[k] for k in before} == before and max(before.values()) < restarted_at
            assert views.alerts.sender is not None and views.alerts.sender.log == []
            assert received == got
        finally:
            await running.close()
    finally:
        await session.close()
        await runner.cleanup()


def _band(tracker: AlertTracker, band: str, day: int) -> Any:
    return tracker.update(market="pasar-senen", commodity="cabai-merah", region="DKI Jakarta", indicator="ALPS",
                          band=band, value={"normal": 0.0, "stress": 0.5, "alert": 1.5, "crisis": 2.5}[band],
                          day=day, price_idr=90_000)


async def test_a_band_told_before_a_restart_is_not_told_again_and_its_easing_is(tmp_path) -> None:
    runner, url, received = await receiver()
    sub = Subscriber(id="ops", kind="json", url=url, min_band="alert")
    path = tmp_path / "alerts" / "told.jsonl"

    async def tell(told: Told, tracker: AlertTracker, raised: list[Any]) -> list[tuple[str, str]]:
        async with WebhookSender(max_attempts=1) as sender:
            out = told.outbox([sub], [a for a in raised if a is not None], tracker.latest)
            for s, alert, before in out:
                told.settle(await sender.send(s, alert), alert, before)
        return [(a.previous, a.band) for _, a, _ in out]

    try:
        tracker, told = AlertTracker(), Told(Journal(path))
        assert await tell(told, tracker, [_band(tracker, "crisis", 20_000)]) == [("normal", "crisis")]
        # The restart: a new tracker judges the series afresh (raised from normal again), the same journal.
        tracker, told = AlertTracker(), Told(Journal(path))
        assert await tell(told, tracker, [_band(tracker, "crisis", 20_003)]) == []
        assert await tell(told, tracker, [_band(tracker, "stress", 20_004)]) == [("crisis", "stress")]
        assert await tell(told, tracker, [_band(tracker, "normal", 20_005)]) == [("stress", "normal")]
        # Worse again: told again (a stress alone would not be: below this subscriber's min_band).
        assert await tell(told, tracker, [_band(tracker, "stress", 20_006)]) == []
        assert await tell(told, tracker, [_band(tracker, "alert", 20_007)]) == [("stress", "alert")]
        tracker, told = AlertTracker(), Told(Journal(path))
        assert await tell(told, tracker, [_band(tracker, "normal", 20_008)]) == [("alert", "normal")]
        assert await tell(told, tracker, [_band(tracker, "normal", 20_009)]) == []
        assert [(r["alert"]["previous"], r["alert"]["band"]) for r in received] == [
            ("normal", "crisis"), ("crisis", "stress"), ("stress", "normal"), ("stress", "alert"),
            ("alert", "normal")]
        assert "crisis -> stress" in received[1]["text"]
    finally:
        await runner.cleanup()



def _rising_series(now: int, days: int) -> list[tuple[int, dict]]:
    """A price that wanders by the week and rises 1 % a day over its last week, one a day, as (time, body).
    Beef: its usual weekly move (0.5 %, the least spread ALPS judges by) is below this wander's, so the bands
    follow the wander; chilli's usual swing would make the week's 7 % rise a mere alert."""
    out = []
    for k in range(days):
        lift = 1.0 + (0.01 * (k - (days - 8)) if k > days - 8 else 0.0)
        price = round(135_000 * lift * (1 + 0.01 * ((k // 7 * 3) % 5 - 2)) / 100) * 100
        out.append((now - (days - k) * 86400 + 3600, {"market": "pasar-senen", "commodity": "daging-sapi",
                                                        "unit": "kg", "price_idr": price, "reporter": "rep-1",
                                                        "region": "DKI Jakarta"}))
    return out


def test_an_alert_keeps_the_band_it_was_raised_from_across_a_restart(tmp_path) -> None:
    """A restarted hub judges each series afresh, from normal: an alert derived again says the band it was
    raised from before the restart, in its listing, its text and the early warning's live alerts."""
    now = 1_763_600_000  # November 2025: no Ramadan or Lebaran in the window, which the seasonal trend weighs
    key = Ed25519Signer.from_seed(b"\x71" * 32)
    markets = MarketConfig(validation=ValidationConfig(max_age_s=(DAYS + 2) * 86400))
    plan = Plan(kitchens=(), schools=())

    def open_views(refill: bool) -> Views:
        hub = Hub(LmdbHubStore(tmp_path / "hub"), key, clock=lambda: now, auto_approve=True)
        return Views(hub, plan=plan, market_config=markets, state_dir=tmp_path / "alerts", refill=refill)

    def early_warnings(views: Views) -> dict[str, dict[str, Any]]:
        return {a["id"]: a for a in views.alerts.listing()["alerts"] if a["id"].startswith("alps/")}

    views = open_views(refill=False)
    device = Device(views.hub, "pasar-senen")
    device.t = now - DAYS * 86400
    series = _rising_series(now, DAYS)
    for t, body in series[:DAYS - 8]:
        device.sign("price", t, body)
    device.push()
    views.alerts.refresh()
    for t, body in series[DAYS - 8:]:  # the rise a day at a time, judged after each, up to a band worsened again
        device.sign("price", t, body)
        device.push()
        views.alerts.refresh()
        if any(a["previous"] != "normal" for a in early_warnings(views).values()):
            break
    before = early_warnings(views)
    live_before = views.markets.live_alerts()
    assert sorted((a["previous"], a["band"]) for a in before.values()) == [("alert", "crisis"), ("normal", "alert")]
    views.close()
    views.hub.store.close()

    views = open_views(refill=True)
    views.refill_from_store()
    views.alerts.refresh()
    after = early_warnings(views)
    assert [(a["previous"], a["band"]) for a in after.values()] == [("alert", "crisis")]
    kept = next(iter(after))
    assert (after[kept]["previous"], after[kept]["text"], after[kept]["time"]) == (
        before[kept]["previous"], before[kept]["text"], before[kept]["time"])
    assert "alert -> crisis" in after[kept]["text"]
    assert [(a["id"], a["previous"], a["message"]) for a in views.markets.live_alerts()] == [
        (a["id"], a["previous"], a["message"]) for a in live_before]
    views.close()
    views.hub.store.close()


def lose_state_dir_on_postgres(kind: str, tmp_path: Any) -> None:
    """A hub on PostgreSQL keeps what its subscribers were told and what waits in the store: restarted on another
    host, or with its state dir lost, it goes on from there. On LMDB the state dir lives beside the store."""
    if kind == "postgres":
        shutil.rmtree(tmp_path / "hub" / "alerts", ignore_errors=True)


def told_kept(kind: str, name: str, tmp_path: Any) -> Told:
    """What the hub keeps as told: the state dir's journal (LMDB), or the store's (PostgreSQL)."""
    if kind == "lmdb":
        return Told(Journal(tmp_path / "hub" / "alerts" / "told.jsonl"))
    store = PgAggregates(PG_DSN, schema=name.replace("-", "_"))
    try:
        return Told(store.alerts().journal("told.jsonl"))
    finally:
        store.close()


@pytest.fixture(params=["lmdb", "postgres"])
def backend(request: Any) -> Any:
    """What the hub's store is: LMDB in data_dir, or a fresh schema in PostgreSQL (dropped after; missing fails)."""
    name = f"alerts-{uuid.uuid4().hex[:12]}"
    yield request.param, name
    if request.param == "postgres":
        PgHubStore(PG_DSN, schema=name.replace("-", "_")).drop()


async def test_the_alerts_listed_before_a_restart_are_listed_after_it_and_nobody_is_told_twice(tmp_path,
                                                                                             backend) -> None:
    """Open and resolved alerts, with their raised and resolved times, and one an operator raised by hand, are
    kept in the hub's store: the restarted hub lists them as it did, before and after it derives its alerts
    again, and raises and delivers none of them again (on PostgreSQL with a fresh state dir)."""
    kind, name = backend
    runner, url, received = await receiver()
    config = replace(hub_config(tmp_path, webhooks=({"url": url, **OPS},)),
                     name=name, store=StoreConfig(backend=kind, dsn=PG_DSN))
    plan = Plan(kitchens=(), schools=())
    session = aiohttp.ClientSession()

    async def listing(running: Any) -> dict[str, Any]:
        code, answer = await _json(session, "GET", f"{running.http_url}/api/markets/alerts")
        assert code == 200, answer
        return answer

    def derived(running: Any) -> bool:
        return running.views.derive_seconds > 0 and not running.views.alerts._sends

    try:
        running = await start_hub(config, plan=plan)
        try:
            env = Env(running.hub, running.views, running, session, {m: Device(running.hub, m) for m in MARKETS})
            synth_history(env, seed=11, shocks=24.0)
            held = outlier(env, int(time.time()) - 60)
            await env.push()
            sender = running.views.alerts.sender
            assert sender is not None
            await wait_for(lambda: sender.log and derived(running), WAIT_S, what="deliveries")
            await wait_for(lambda: len(received) == len(sender.log), WAIT_S, what="every delivery received")
            code, answer = await env.post(f"/api/markets/quarantine/{held}/decide", headers=AUTH,
                                          json={"action": "confirm", "by": "siti", "why": "a typo"})
            assert code == 200, answer
            code, answer = await env.post("/api/alerts/trigger", headers=AUTH,
                                          json={"message": "banjir di Kosambi", "level": "critical"})
            assert code == 201, answer
            await wait_for(lambda: any(a["id"] == f"quarantine/{held}" for a in running.views.alerts.listing()["resolved"]),
                           WAIT_S, what="the held price's alert resolved by the decision")
            await wait_for(lambda: derived(running) and _ends_told(running, sender), WAIT_S, what="the alerts derived")
            before = await listing(running)
        finally:
            await running.close()
        assert {a["domain"] for a in before["alerts"]} == {"markets", "operator"}
        # The decision resolves the held price's alert, and a run of held reports of that series that it ended
        # (one the synthetic shocks can make, depending on the day).
        resolved = next(a for a in before["resolved"] if a["id"] == f"quarantine/{held}")
        assert resolved["resolved_at"] >= resolved["time"]
        assert all(a["code"] == "held_series" and a["subject"] == resolved["subject"]
                   for a in before["resolved"] if a is not resolved), before["resolved"]
        got = list(received)
        assert got and all(d.ok for d in sender.log)
        assert sorted(b["delivery"] for b in got) == sorted(d.delivery for d in sender.log)
        lose_state_dir_on_postgres(kind, tmp_path)

        # A minute later by the hub's clock: the listing is the one from before at once, and after the alerts are
        # derived again; nothing is published or told again.
        running = await start_hub(config, plan=plan, clock=lambda: int(time.time()) + 60)
        try:
            assert {k: v for k, v in (await listing(running)).items() if k != "live"} == \
                {k: v for k, v in before.items() if k != "live"}
            assert await asyncio.to_thread(running.views.refilled.wait, WAIT_S), "the refill did not end"
            await wait_for(lambda: derived(running), WAIT_S, what="the alerts derived after the refill")
            assert await listing(running) == before
            assert running.views.alerts.sender is not None and running.views.alerts.sender.log == []
        finally:
            await running.close()
        assert received == got
    finally:
        await session.close()
        await runner.cleanup()


def _ends_told(running: Any, sender: Any) -> bool:
    """Every run of held reports that subscribers were told of and that the listing shows ended (an operator's
    decision ends it) has had its end told too: the decision is derived after it is answered, so a hub closed at
    once would tell the end only after its restart."""
    told = [d.body["alert"] for d in sender.log if d.body["alert"]["indicator"] == HELD]
    runs = {a["series"] for a in told if a["band"] == "held"}
    ended = {a["subject"] for a in running.views.alerts.listing()["resolved"] if a["code"] == "held_series"}
    return (runs & ended) <= {a["series"] for a in told if a["band"] == "normal"}


class Inbox:
    """A webhook receiver on loopback that keeps each request's delivery id (header and body) and alert, and
    answers as `mode` says: "accepts" (200), "fails" (503) or "hangs" (no answer until `release`)."""

    def __init__(self) -> None:
        self.mode = "accepts"
        self.got: list[tuple[str, str, dict[str, Any]]] = []  # (mode it met, X-Jejak-Delivery, body)
        self.release = asyncio.Event()
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        mode, body = self.mode, await request.json()
        self.got.append((mode, request.headers.get("X-Jejak-Delivery", ""), body))
        if mode == "hangs":
            await self.release.wait()
        return web.json_response({"ok": mode != "fails"}, status=503 if mode == "fails" else 200)

    def ids(self, mode: str) -> list[str]:
        return [i for m, i, _ in self.got if m == mode]

    async def __aenter__(self) -> Inbox:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}/hook"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release.set()
        if self.runner is not None:
            await self.runner.cleanup()


@pytest.mark.parametrize("cut", ["hangs", "fails"])
async def test_a_delivery_cut_by_a_stop_arrives_after_the_restart_with_the_id_of_its_first_try(
        tmp_path, backend, cut) -> None:
    """The receiver hangs on its requests (the hub stops while they wait for an answer) or fails them (they wait
    for their next round); nothing was confirmed, so the restarted hub delivers each alert once, with the delivery
    id its first try carried, and the ones it never got to try as well. Confirmed then, none is sent at the next
    start. On PostgreSQL each restart has a fresh state dir."""
    kind, name = backend
    async with Inbox() as inbox:
        config = replace(hub_config(tmp_path, webhooks=({"url": inbox.url, **OPS},)),
                         name=name, store=StoreConfig(backend=kind, dsn=PG_DSN),
                         webhook_timeout_s=3600.0,  # a hung try is cut by the stop, not by its timeout
                         webhook_retry=RetryPolicy(backoff_s=0.2, max_backoff_s=0.8))
        plan = Plan(kitchens=(), schools=())
        session = aiohttp.ClientSession()
        try:
            inbox.mode = cut
            running = await start_hub(config, plan=plan)
            try:
                env = Env(running.hub, running.views, running, session, {m: Device(running.hub, m) for m in MARKETS})
                synth_history(env, seed=11, shocks=24.0)
                await env.push()
                alerts, again = running.views.alerts, running.views.alerts.redelivery
                assert again is not None
                meant: dict[tuple[str, str], str] = {}
                if cut == "hangs":
                    await wait_for(lambda: inbox.got, WAIT_S, what="a delivery waiting for the receiver's answer")
                else:
                    await wait_for(lambda: again.waiting() and not alerts._sends and all(
                        w.rounds >= 2 for w in again._entries.values()), WAIT_S,
                        what="every failed delivery waiting, after a failed round")
                # What the hub set out to tell, (series, indicator) -> band: on its way (counted as told until it
                # fails), or failed and waiting for its next round.
                meant = {(w.alert.series, w.alert.indicator): w.alert.band for w in again._entries.values()}
            finally:
                await running.close()
            meant |= {(s, i): b for (sub, s, i), b in alerts.told._bands.items() if sub == "ops"}
            cut_ids = set(inbox.ids(cut))
            assert meant and cut_ids and not inbox.ids("accepts")
            kept = told_kept(kind, name, tmp_path)
            assert all(kept.band("ops", s, i) is None for s, i in meant)
            lose_state_dir_on_postgres(kind, tmp_path)

            inbox.mode = "accepts"
            running = await start_hub(config, plan=plan, clock=lambda: int(time.time()) + 60)
            try:
                views = running.views
                again = views.alerts.redelivery
                assert again is not None and await asyncio.to_thread(views.refilled.wait, WAIT_S)
                await wait_for(lambda: {(b["alert"]["series"], b["alert"]["indicator"]): b["alert"]["band"]
                                        for m, _, b in inbox.got if m == "accepts"} == meant
                               and views.derive_seconds > 0 and not views.alerts._sends and not again.waiting(),
                               WAIT_S, what="every alert told after the restart")
            finally:
                await running.close()
            told_once = len(inbox.got)
            lose_state_dir_on_postgres(kind, tmp_path)

            # Confirmed now: a third start sends none of it again.
            running = await start_hub(config, plan=plan, clock=lambda: int(time.time()) + 120)
            try:
                views = running.views
                await _derived(running, "the alerts derived after the second restart")
                assert views.alerts.sender is not None and views.alerts.sender.log == []
                assert views.alerts.redelivery is not None and not views.alerts.redelivery.waiting()
            finally:
                await running.close()
            assert len(inbox.got) == told_once
        finally:
            await session.close()
    accepted = inbox.ids("accepts")
    # Each delivery arrives once; each one cut by the stop with the id of its first try, in header and body.
    assert len(accepted) == len(set(accepted)) == len(meant)
    assert cut_ids <= set(accepted)
    assert all(b["delivery"] == i for _, i, b in inbox.got)
    ids_of = {}
    for _, i, b in inbox.got:
        ids_of.setdefault(i, set()).add((b["alert"]["id"], b["alert"]["previous"]))
    assert all(len(alert) == 1 for alert in ids_of.values()), "one delivery id, one alert"
    kept = told_kept(kind, name, tmp_path)
    assert all(kept.band("ops", s, i) == b for (s, i), b in meant.items())
