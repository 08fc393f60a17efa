"""A lone market with one reporter, hit by a genuine price shock whose price has not settled at a level yet: nobody
nearby can vouch for its move, so each report after it waits in quarantine. Its series says held (how many reports, since when), not stale as if the
market had gone silent, and a run of three held days is one alert to the operator, resolved by the decision; a
market that really stops reporting is still stale."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from typing import Any

import aiohttp
from aiohttp import web

from hub.app import start_hub
from hub.markets import MarketConfig, ValidationConfig
from hub.markets.calendar import date_of, day_number
from hub.markets.model import DAY_S, WIB_OFFSET_S, PriceObservation, day_of
from hub.markets.service import MarketService
from hub.markets.staleness import freshness, held_run
from hub.markets.webhooks import alert_text
from hub.mbg import Plan
from tests.documented import assert_documented
from tests.wait import wait_for

from .test_api import OPERATOR, Device, Env, close_backlog_window, hub_config

AUTH = {"Authorization": f"Bearer {OPERATOR}"}
WAIT_S = 60  # an upper bound; every wait ends as soon as its condition holds
LONE, SILENT = "pasar-terong", "pasar-badung"  # alone in Sulawesi Selatan and in Bali here, one reporter each
REGIONS = {LONE: "Sulawesi Selatan", SILENT: "Bali"}
KEY = (LONE, "cabai-merah", "", "kg")
STEP = 94  # the day of the step: enough weeks before it for the early warning to judge the series


def price(i: int, step_from: int) -> int:
    """Day `i`'s chilli price: steady near Rp 40.000, then from day `step_from` (a regional shock) 40 % and 60 %
    up on alternate days: a price that has not settled at a level yet (one that does is a level shift, taken
    after `level_days`, test_level_shift.py)."""
    p = 40_000 + (i * 7919 % 5) * 200
    return p if i < step_from else int(round(p * (1.4 if (i - step_from) % 2 == 0 else 1.6), -2))


def body(market: str, price_idr: int) -> dict[str, Any]:
    return {"market": market, "commodity": "cabai-merah", "unit": "kg", "price_idr": price_idr, "reporter": "r1",
            "region": REGIONS[market]}


def test_a_lone_markets_held_reports_say_held_and_a_run_of_three_asks_the_operator() -> None:
    first = day_number("2025-03-03")
    now = [0]
    svc = MarketService(clock=lambda: now[0])

    def report(market: str, i: int) -> None:
        t = (first + i) * DAY_S - WIB_OFFSET_S + 9 * 3600
        now[0] = t + 11 * 3600
        b = body(market, price(i, STEP))
        svc.add_observation(PriceObservation(id=f"{market}-{i}", market=market, commodity="cabai-merah", unit="kg",
                                             price_idr=b["price_idr"], time=t, arrived_at=t, region=b["region"],
                                             reporter="r1"))

    runs = []
    for i in range(STEP + 6):
        report(LONE, i)
        if i < STEP:
            report(SILENT, i)  # then it stops
        runs.append(svc.held_runs())
    # The run asks the operator from its third held day, one series, with the day it began.
    assert [len(r) for r in runs[STEP - 2:]] == [0, 0, 0, 0, 1, 1, 1, 1]
    key, run = runs[STEP + 2][0]
    assert key == KEY and (run.days, run.reports, run.first_day) == (3, 3, first + STEP)
    since = date_of(first + STEP).isoformat()
    fresh = svc.forecast("cabai-merah", LONE)["freshness"]
    # Six days past its last accepted price: stale, were it not that the market reported each of them.
    assert fresh["days_since"] == 6 > fresh["stale_after_days"]
    assert fresh["held"] and not fresh["stale"]
    assert (fresh["held_reports"], fresh["held_days"], fresh["held_since"]) == (6, 6, since)
    assert fresh["words"]["en"].startswith(f"Held for review: the reports since {since} (6 in all)")
    assert fresh["words"]["id"].startswith(f"Ditahan untuk diperiksa: 6 laporan sejak {since}")
    live = {p["market"]: p for p in svc.live_prices("cabai-merah")}
    assert live[LONE]["held"] and not live[LONE]["stale"] and live[LONE]["held_reports"] == 6
    # The market that went silent is stale, and nothing of it is held.
    gone = svc.forecast("cabai-merah", SILENT)["freshness"]
    assert gone["stale"] and not gone["held"] and gone["words"]["en"].startswith("Stale data: last report")
    assert live[SILENT]["stale"] and not live[SILENT]["held"]
    bands = {b["market"]: b for b in svc.bands()}
    assert bands[LONE]["held"] and not bands[LONE]["stale"] and bands[SILENT]["stale"]
    # An early warning judged on the held series says so, in both languages for a chat reader.
    svc.early_warning()
    warning = svc.tracker.latest[(f"{LONE}/cabai-merah", "ALPS")]
    assert warning.held and not warning.stale and warning.to_dict()["held_since"] == since
    assert f"6 reports since {since} held in quarantine, waiting for a decision" in warning.message
    assert f"Ditahan untuk diperiksa: 6 laporan sejak {since}" in alert_text(warning)

    # The operator releases them: the series counts them and is fresh; nothing asks any more.
    for e in svc.quarantine.pending():
        svc.decide(e.observation.id, "release", by="siti", why="harga cabai naik di seluruh Makassar")
    fresh = svc.forecast("cabai-merah", LONE)["freshness"]
    assert not fresh["held"] and not fresh["stale"] and fresh["last_report"] == date_of(first + STEP + 5).isoformat()
    assert svc.held_runs() == []


def test_a_held_run_counts_back_from_the_latest_reported_day() -> None:
    # Reports held on days 11 and 12, one decided on 13 (confirmed bad), held again on 14 and 15.
    assert held_run({11: 1, 12: 2, 13: 0, 14: 1, 15: 1}, 10) == held_run({14: 1, 15: 1}, 13)
    run = held_run({11: 1, 12: 2}, 10)
    assert run is not None and (run.first_day, run.last_day, run.days, run.reports) == (11, 12, 2, 3)
    assert held_run({9: 1, 11: 0}, 10) is None  # the latest reported day holds nothing waiting
    # Held reports that stopped coming: the market went silent after them, and it is stale again.
    old = held_run({11: 1, 12: 1}, 10)
    assert freshness(list(range(11)), 14, old).held
    assert freshness(list(range(11)), 16, old).stale


async def push_lone_step(env: Env) -> str:
    """Sign and push the lone market's daily prices with the step five days ago (and the silent market's, which
    stop before it); the date of the first held day."""
    now = int(time.time())
    for k in range(STEP + 4, -1, -1):  # the step five days ago
        t = now - k * DAY_S - 60
        env.devices[LONE].sign("price", t, body(LONE, price(STEP + 4 - k, STEP)))
        if k >= 6:
            env.devices[SILENT].sign("price", t, body(SILENT, price(STEP + 4 - k, STEP + 5)))
    await env.push()
    close_backlog_window(env.running)
    return date_of(day_of(now - 4 * DAY_S - 60)).isoformat()


async def test_the_operator_is_alerted_once_and_the_release_resolves_it(tmp_path) -> None:
    """Through a running hub: the held run is one `held_series` alert naming the count, the first day and where
    to decide; the forecast, live prices and map say held; releasing the reports resolves the alert."""
    # The history arrives at once, as a backlog: reports as old as it are taken.
    config = replace(hub_config(tmp_path), markets=MarketConfig(validation=ValidationConfig(
        max_age_s=(STEP + 8) * DAY_S)))
    running = await start_hub(config, plan=Plan(kitchens=(), schools=()))
    session = aiohttp.ClientSession()
    env = Env(running.hub, running.views, running, session, {m: Device(running.hub, m) for m in REGIONS})
    try:
        since = await push_lone_step(env)

        def held_alerts(kind: str = "alerts") -> list[dict[str, Any]]:
            return [a for a in running.views.alerts.listing()[kind] if a["code"] == "held_series"]

        [alert] = await wait_for(held_alerts, WAIT_S, what="the held run's alert")
        assert alert["subject"] == f"{LONE}/cabai-merah" and alert["severity"] == "warning"
        assert (alert["held_reports"], alert["held_days"], alert["held_since"]) == (5, 5, since)
        assert f"since {since}" in alert["text"] and "/api/markets/quarantine/{id}/decide" in alert["text"]
        code, listing = await env.get("/api/markets/alerts")
        assert_documented("GET", "/api/markets/alerts", code, listing)

        code, fc = await env.get(f"/api/markets/forecast/cabai-merah?market={LONE}")
        assert_documented("GET", "/api/markets/forecast/{commodity}", code, fc)
        assert fc["freshness"]["held"] and not fc["freshness"]["stale"] and fc["freshness"]["held_reports"] == 5
        code, live = await env.get("/api/markets/live?commodity=cabai-merah")
        assert_documented("GET", "/api/markets/live", code, live)
        prices = {p["market"]: p for p in live["prices"]}
        assert prices[LONE]["held"] and not prices[LONE]["stale"] and prices[LONE]["held_since"] == since
        assert prices[SILENT]["stale"] and not prices[SILENT]["held"]
        code, answer = await env.get("/api/markets/map")
        assert_documented("GET", "/api/markets/map", code, answer)
        # Every live series is on the map, with a band or without one yet (too few weeks), held or stale as live.
        mapped = {a["market"]: a for m in answer["markets"] for a in m["alps"] + m["unbanded"]
                  if a["commodity"] == "cabai-merah"}
        assert mapped.keys() == prices.keys()
        assert mapped[LONE]["held"] and mapped[LONE]["held_since"] == since and not mapped[LONE]["stale"]
        assert mapped[SILENT]["stale"] and not mapped[SILENT]["held"]

        code, held = await env.get("/api/markets/quarantine?limit=100", headers=AUTH)
        assert code == 200, held
        ids = [e["observation"]["id"] for e in held["entries"] if e["observation"]["market"] == LONE]
        assert len(ids) == 5
        for oid in ids:
            code, answer = await env.post(f"/api/markets/quarantine/{oid}/decide", headers=AUTH,
                                          json={"action": "release", "by": "siti", "why": "harga naik di Makassar"})
            assert code == 200, answer
        [resolved] = await wait_for(lambda: held_alerts("resolved"), WAIT_S, what="the alert resolved")
        assert resolved["id"] == alert["id"] and not held_alerts()
        code, fc = await env.get(f"/api/markets/forecast/cabai-merah?market={LONE}")
        assert not fc["freshness"]["held"] and not fc["freshness"]["stale"]
        assert fc["freshness"]["days_since"] == 0
    finally:
        await asyncio.gather(session.close(), running.close())


async def test_subscribers_that_want_it_are_told_a_held_run_once_and_its_end(tmp_path) -> None:
    """The held run goes to the webhook subscribers whose filters take it (a held series counts as stress), once:
    not again after a restart; the release is told to those told the run, once, in both languages."""
    got: list[tuple[str, dict[str, Any]]] = []

    async def inbox(request: web.Request) -> web.Response:
        got.append((request.match_info["who"], await request.json()))
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/hook/{who}", inbox)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    filters: dict[str, dict[str, Any]] = {
        "ops": {}, "sulsel": {"regions": ["Sulawesi Selatan"], "commodities": ["cabai-merah"], "min_band": "normal"},
        "chiefs": {"min_band": "alert"}, "beef": {"commodities": ["daging-sapi"]}, "bali": {"regions": ["Bali"]}}
    hooks = tuple({"id": who, "kind": "json", "url": f"{url}/{who}", **f} for who, f in filters.items())
    config = replace(hub_config(tmp_path, webhooks=hooks), markets=MarketConfig(validation=ValidationConfig(
        max_age_s=(STEP + 8) * DAY_S)))
    plan = Plan(kitchens=(), schools=())
    session = aiohttp.ClientSession()

    def held_told() -> list[tuple[str, str, str]]:
        return sorted((who, b["alert"]["previous"], b["alert"]["band"]) for who, b in got
                      if b["alert"]["indicator"] == "HELD")

    async def settled(running: Any) -> None:
        views = running.views
        assert await asyncio.to_thread(views.refilled.wait, WAIT_S), "the refill did not end"
        await wait_for(lambda: views.derive_seconds > 0 and not views.alerts._sends, WAIT_S, what="alerts derived")

    try:
        running = await start_hub(config, plan=plan)
        try:
            env = Env(running.hub, running.views, running, session, {m: Device(running.hub, m) for m in REGIONS})
            since = await push_lone_step(env)
            await wait_for(lambda: len(held_told()) == 2, WAIT_S, what="the held run told")
            await settled(running)
        finally:
            await running.close()
        assert held_told() == [("ops", "normal", "held"), ("sulsel", "normal", "held")]
        [(_, told)] = [(who, b) for who, b in got if who == "ops" and b["alert"]["indicator"] == "HELD"]
        assert told["alert"]["series"] == f"{LONE}/cabai-merah" and told["alert"]["held_reports"] == 5
        assert told["alert"]["held_since"] == since and told["text"].startswith("Jejak held reports [HELD]")
        assert f"5 laporan ditahan pada 5 hari lapor berturut-turut sejak {since}" in told["text"]
        assert f"5 reports held on 5 reported days in a row since {since}" in told["text"]

        # Restarted: the run is derived again, and told to nobody again.
        running = await start_hub(config, plan=plan)
        try:
            env = Env(running.hub, running.views, running, session, env.devices)
            await settled(running)
            assert len(held_told()) == 2
            code, held = await env.get("/api/markets/quarantine?limit=100", headers=AUTH)
            for oid in [e["observation"]["id"] for e in held["entries"] if e["observation"]["market"] == LONE]:
                code, answer = await env.post(f"/api/markets/quarantine/{oid}/decide", headers=AUTH,
                                              json={"action": "release", "by": "siti", "why": "harga naik"})
                assert code == 200, answer
            await wait_for(lambda: len(held_told()) == 4, WAIT_S, what="the run's end told")
            await settled(running)
        finally:
            await running.close()
        assert held_told() == [("ops", "held", "normal"), ("ops", "normal", "held"),
                               ("sulsel", "held", "normal"), ("sulsel", "normal", "held")]
        [ended] = [b for who, b in got if who == "sulsel" and b["alert"]["band"] == "normal"]
        assert ended["text"].startswith("Jejak held reports [NORMAL]")
        assert "Tidak ada lagi laporan yang menunggu keputusan" in ended["text"]
        assert "No report waits in quarantine for a decision any more" in ended["text"]

        running = await start_hub(config, plan=plan)
        try:
            await settled(running)
        finally:
            await running.close()
        assert len(held_told()) == 4
    finally:
        await session.close()
        await runner.cleanup()
