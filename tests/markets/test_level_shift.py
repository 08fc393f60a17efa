"""A series with no nearby market to compare whose price moves to a new level and stays there: after `level_days`
reported days at that level its held prices are taken as a level shift (with the reason in the audit trail) and
later prices are measured from the new level. A spike that returns, a mistyped price, a wrong unit kept up, and a
market moving while its reporting neighbours do not, stay held."""

from __future__ import annotations

import asyncio
import io
import time
from dataclasses import replace
from typing import Any

import aiohttp
import numpy as np
import pytest

from hub.app import start_hub
from hub.markets import MarketConfig, ValidationConfig
from hub.markets.calendar import date_of, day_number
from hub.markets.errors import BadObservation
from hub.markets.importer import read_import
from hub.markets.model import DAY_S, WIB_OFFSET_S, PriceObservation
from hub.markets.service import MarketService
from hub.mbg import Plan

from .test_api import OPERATOR, Device, Env, hub_config

AUTH = {"Authorization": f"Bearer {OPERATOR}"}
WAIT_S = 60  # an upper bound; every wait ends as soon as its condition holds
LONE, NEIGHBOUR = "pasar-terong", "pasar-pabaeng-baeng"  # both in Makassar
REGION = "Sulawesi Selatan"
FIRST = day_number("2025-03-03")
CALM = 40  # reported days before anything moves
WHY = "level held on 3 reported days with no nearby market to compare"


def calm(i: int) -> int:
    return 40_000 + (i * 7919 % 5) * 200


class Stream:
    """One reporter a market, each day's report streamed through a MarketService."""

    def __init__(self, config: MarketConfig | None = None) -> None:
        self.now = [0]
        self.svc = MarketService(config, clock=lambda: self.now[0])
        self.verdicts: dict[str, str] = {}

    def report(self, market: str, i: int, price_idr: int, commodity: str = "cabai-merah",
               region: str = REGION) -> None:
        t = (FIRST + i) * DAY_S - WIB_OFFSET_S + 9 * 3600
        self.now[0] = t + 11 * 3600
        self.svc.add_observation(PriceObservation(
            id=f"{market}-{i}", market=market, commodity=commodity, unit="kg", price_idr=price_idr, time=t,
            arrived_at=t, region=region, reporter="r1"))

    def held(self, market: str = LONE) -> list[int]:
        return sorted(int(e["observation"]["id"].rsplit("-", 1)[1]) for e in self.svc.quarantined()
                      if e["observation"]["market"] == market)


def test_a_lone_markets_new_level_is_taken_after_three_reported_days() -> None:
    s = Stream()
    for i in range(CALM + 8):
        s.report(LONE, i, calm(i) if i < CALM else int(round(calm(i) * 1.4, -2)))
    assert s.held() == []  # the step's first two days were held, then taken with the third
    trail = s.svc.audit(f"{LONE}-{CALM}")
    assert [(d["action"], d["by"], d["to"]) for d in trail] == [("clear", "validator", "cleared")]
    assert WHY in trail[0]["why"] and date_of(FIRST + CALM).isoformat() in trail[0]["why"]
    # The days after the third are measured from the new level: taken at once, never held.
    assert s.svc.audit(f"{LONE}-{CALM + 4}") == []
    prices = [h["price_idr"] for h in s.svc.history("cabai-merah", LONE)]
    assert len(prices) == CALM + 8 and prices[-1] == int(round(calm(CALM + 7) * 1.4, -2))
    assert s.svc.held_runs() == []


def test_a_spike_that_returns_and_a_mistyped_price_stay_held() -> None:
    s = Stream()
    plan = {CALM: 56_000, CALM + 1: 40_200,  # one day up 40 %, then back
            CALM + 5: 400_000,  # a zero too many
            CALM + 9: 57_000, CALM + 10: 52_000, CALM + 11: 61_000, CALM + 12: 40_400}  # a spike still moving
    for i in range(CALM + 20):
        s.report(LONE, i, plan.get(i, calm(i) if i < CALM + 16 else 56_000))  # then a level that holds
    assert s.held() == [CALM, CALM + 5, CALM + 9, CALM + 10, CALM + 11]


def test_a_wrong_unit_kept_up_stays_held() -> None:
    # Eggs at Rp 56.000 in Papua, then quoted per ons under kg (Rp 5.600) day after day: five times below the
    # typical price, so no rule sees it; a level a tenth of the old one is no market's move.
    s = Stream()
    for i in range(CALM + 12):
        # Up 20 % for good first: a level shift, taken.
        s.report(LONE, i, (56_000 if i < CALM else 67_000) + (i % 3) * 500 if i < CALM + 6 else 6_700,
                 commodity="telur-ayam")
    assert s.held() == list(range(CALM + 6, CALM + 12))


def test_a_market_moving_while_its_neighbour_reports_and_does_not_stays_held() -> None:
    # The same step at Pasar Terong, whose neighbour reports and stays, and at Pasar Badung, alone in Bali.
    s = Stream()
    for i in range(CALM + 8):
        s.report(NEIGHBOUR, i, calm(i + 1))
        for market, region in ((LONE, REGION), ("pasar-badung", "Bali")):
            s.report(market, i, calm(i) if i < CALM else int(round(calm(i) * 1.4, -2)), region=region)
    assert s.held() == list(range(CALM, CALM + 8)) and s.held(NEIGHBOUR) == []
    assert s.held("pasar-badung") == []


def test_level_days_zero_leaves_every_run_to_the_operator() -> None:
    s = Stream(MarketConfig(validation=ValidationConfig(level_days=0)))
    for i in range(CALM + 5):
        s.report(LONE, i, calm(i) if i < CALM else int(round(calm(i) * 1.4, -2)))
    assert s.held() == list(range(CALM, CALM + 5))
    with pytest.raises(BadObservation, match="level_days"):
        ValidationConfig(level_days=-1)


def test_an_imported_city_series_with_one_step_is_taken() -> None:
    # Three years of rice at one city, quoted in Rp 1.000 steps, up one step in June 2023 (as at a HET change);
    # no Sundays nor Lebaran's week of 2024. Before, every price after the step was held: 565 of 1.009.
    lo, hi, step = day_number("2022-01-03"), day_number("2025-03-31"), day_number("2023-06-05")
    lebaran = range(day_number("2024-04-08"), day_number("2024-04-15"))
    days = [d for d in range(lo, hi + 1) if date_of(d).weekday() != 6 and d not in lebaran]
    rows = [f"{date_of(d).isoformat()},Kota Jayapura,Beras Medium,Rp/kg,{12_000 if d >= step else 11_000}"
            for d in days]
    text = "Tanggal,Pasar,Komoditas,Satuan,Harga\n" + "\n".join(rows) + "\n"
    svc = MarketService()
    report = svc.import_rows(read_import(io.StringIO(text)))
    assert report["taken"] == len(days) == 1_009
    assert report["quarantined"] == 0 and report["level_shift"] == 3 and report["stored"] == 1_009
    prices = np.array([h["price_idr"] for h in svc.history("beras-medium", "kota-jayapura")])
    assert (prices[-30:] == 12_000).all()


async def test_a_hub_takes_a_lone_markets_level_shift_and_keeps_the_reason(tmp_path) -> None:
    """Through a running hub on its LMDB store: a lone market's backlog with a step that holds is judged when the
    backlog's window ends, its days in order: the step's days held, then taken as a level shift, each with the
    validator's reason in the audit trail; nothing asks the operator."""
    now = [int(time.time())]
    config = replace(hub_config(tmp_path), markets=MarketConfig(validation=ValidationConfig(
        max_age_s=(CALM + 10) * DAY_S)))
    running = await start_hub(config, plan=Plan(kitchens=(), schools=()), clock=lambda: now[0])
    session = aiohttp.ClientSession()
    env = Env(running.hub, running.views, running, session, {LONE: Device(running.hub, LONE)})
    try:
        last = CALM + 5
        for k in range(last, -1, -1):
            i = last - k
            env.devices[LONE].sign("price", now[0] - k * DAY_S - 60, {
                "market": LONE, "commodity": "cabai-merah", "unit": "kg", "reporter": "r1", "region": REGION,
                "price_idr": calm(i) if i < CALM else int(round(calm(i) * 1.4, -2))})
        await env.push()

        def held(state: str) -> list[dict[str, Any]]:
            return [e for e in running.views.markets.quarantined(state) if e["observation"]["market"] == LONE]

        with running.views.fresh():  # every record pushed is in the read models
            assert held("pending") == []  # provisional while the window is open: nothing asks the operator yet
        now[0] += 3 * 3600  # past the backlog's window: the days are final, as the hub's timer makes them
        with running.views.fresh():
            running.views.markets.settle(now[0])
        code, listing = await env.get("/api/markets/quarantine?state=cleared&limit=100", headers=AUTH)
        cleared = [e for e in listing["entries"] if e["observation"]["market"] == LONE]
        # The step's first three days were held, then taken; the days after them are judged against the level.
        assert code == 200 and len(cleared) == 3 and held("pending") == []
        with running.views.fresh():
            step = [p for p in running.views.markets.checked() if p["market"] == LONE and p["price_idr"] > 50_000]
        assert len(step) == 6 and not any(p["quarantined"] for p in step), step
        code, trail = await env.get(f"/api/markets/quarantine/audit?id={cleared[0]['observation']['id']}",
                                    headers=AUTH)
        assert code == 200 and trail["audit"][-1]["by"] == "validator" and WHY in trail["audit"][-1]["why"]
    finally:
        await asyncio.gather(session.close(), running.close())
