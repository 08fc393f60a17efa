"""A restarted hub answers about its past MBG days from their stored aggregates while the refill runs (LMDB and
PostgreSQL): a day the refill has not reached, or has reached only part of, answers as before the restart."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from hub.mbg import MbgView
from hub.mbg.analysis import Timed
from hub.mbg.routes import MbgRoutes
from hub.mbg.sim import simulate_days
from hub.service import Hub
from hub.store import HubStore
from hub.views import RefillProgress, Views
from ledger import Ed25519Signer
from tests.mbg.test_stored_days import answers

from .conftest import Clock
from .test_refill import WAIT_S, Midway, Traffic

GLOBAL = ("devices", "last_sync", "stock_movements", "rejected_records", "alerts", "findings")


def scans_only(answer: dict[str, Any]) -> dict[str, Any]:
    """An answer without what the stock movements and the whole log decide."""
    return {**answer, "findings": [f for f in answer["findings"] if not f["code"].startswith("stock_")],
            "summary": {k: v for k, v in answer["summary"].items() if k not in GLOBAL}}


def days_traffic() -> tuple[Traffic, list[str]]:
    """Three simulated days of one kitchen (a late truck each day), as pushes in arrival order."""
    sims = simulate_days(3, scenario="late_truck", kitchens=1, schools_per_kitchen=3)
    out = Traffic(plan=sims[0].plan, now=sims[-1].now)
    for sim in sims:
        out.add_mbg(sim)
    out.pushes.sort(key=lambda p: p[0])
    return out, [sim.date for sim in sims]


@dataclass
class Pushed:
    """Three days pushed into a hub whose read models keep their days in the store, the clock at the last one's
    end (`days_traffic`)."""

    sent: Traffic
    dates: list[str]
    key: Ed25519Signer
    clock: Clock
    store: HubStore
    views: Views


def pushed(stores: Any, seed: int, **views: Any) -> Pushed:
    key = Ed25519Signer.from_seed(bytes([seed]) * 32)
    sent, dates = days_traffic()
    clock = Clock(sent.pushes[0][0] - 600)
    store, aggregates = stores()
    hub = Hub(store, key, clock=clock)
    out = Pushed(sent=sent, dates=dates, key=key, clock=clock, store=store,
                 views=Views(hub, plan=sent.plan, aggregates=aggregates, **views))
    sent.enroll(hub, clock)
    assert sent.push(hub, clock, sent.pushes) == len(sent.pushes)
    clock.now = sent.now
    return out


def test_old_days_answer_from_the_store_while_the_refill_runs(stores) -> None:
    p = pushed(stores, 0x66)
    sent, dates, key, clock, store, views = p.sent, p.dates, p.key, p.clock, p.store, p.views
    past = dates[:2]
    with views.fresh():
        before = {d: answers(views.mbg, sent.now, d) for d in past}
    assert before[past[0]]["late"] and before[past[1]]["late"]
    assert views.keep_days_stored() == 2 and views.keep_days_stored() == 0
    views.close()
    store.close()

    # The restart, with the refill held once half of the second day's scans are in: the first day is refilled
    # whole, the second in part, the third not yet. The refill thread alone feeds the model while it runs.
    store, aggregates = stores()
    hub = Hub(store, key, clock=clock)
    half = before[past[1]]["summary"]["total_scans_today"] // 2

    def in_second_day(_: RefillProgress) -> bool:
        return sum(1 for s in again.mbg.scans if Timed(s, sent.plan).date == past[1]) >= half

    hold = Midway(in_second_day)
    midway, go = hold.midway, hold.go
    again = Views(hub, plan=sent.plan, aggregates=aggregates, refill=True, refill_batch=10, refill_pause=hold.pause)
    again.start()
    try:
        assert midway.wait(WAIT_S), "the refill never reached its middle"
        with again.fresh():
            scans = again.mbg.scans
            held = {d: sum(1 for s in scans if Timed(s, sent.plan).date == d) for d in dates}
            during: dict[str, Any] = {d: answers(again.mbg, sent.now, d) for d in past}
        assert again.refill_progress.running and held[past[1]] > 0 and held[dates[2]] == 0
        # What the scans refilled so far give of the second day is not its answer: the stored day is.
        prefix = MbgView(sent.plan)
        for scan in scans:
            prefix.ingest_event(scan)
        assert scans_only(answers(prefix, sent.now, past[1])) != scans_only(before[past[1]])
        # The hub-wide figures of the summary (devices, last sync, stock movements) and the stock findings are those
        # of the log's prefix refilled so far (stock is replayed from its movements, never stored); every figure
        # of the day's scans is as before.
        assert {d: scans_only(a) for d, a in during.items()} == {d: scans_only(a) for d, a in before.items()}
        go.set()
        assert again.refilled.wait(WAIT_S), "the refill did not end"
        with again.fresh():
            after = {d: answers(again.mbg, sent.now, d) for d in past}
            assert again.mbg.take_stale() == [] and again.mbg.stored_dates() == past
        assert after == before
    finally:
        go.set()
        again.close()
        store.close()



def test_a_prune_writes_the_days_it_forgets_and_they_answer_as_before(stores) -> None:
    p = pushed(stores, 0x67, keep_days=1)
    sent, dates, clock, store, views = p.sent, p.dates, p.clock, p.store, p.views
    try:
        with views.fresh():
            before = {d: answers(views.mbg, sent.now, d) for d in dates}
        # Two days later every day's scans are older than the window: the prune writes each day (the last one
        # is not today any more) before it forgets their scans, and they answer as before it.
        clock.now = sent.now + 2 * 86400
        assert views.prune() == sum(1 for p in sent.pushes if p[2] == "scan")
        with views.fresh():
            assert views.mbg.scans == [] and views.mbg.stored_dates() == dates
            after = {d: answers(views.mbg, sent.now, d) for d in dates}
        assert after == before
    finally:
        views.close()
        store.close()


async def test_the_api_answers_a_pruned_day_and_refuses_its_drill_down(stores) -> None:
    p = pushed(stores, 0x69, keep_days=1)
    sent, dates, clock, store, views = p.sent, p.dates, p.clock, p.store, p.views
    app = web.Application()
    MbgRoutes(views).register(app)
    try:
        async with TestClient(TestServer(app)) as client:
            async def get(path: str) -> tuple[int, Any]:
                resp = await client.get(path)
                return resp.status, await resp.json()

            before = await get(f"/api/mbg/deliveries?date={dates[0]}")
            assert before[0] == 200 and before[1]["kitchens"]
            assert (await get(f"/api/mbg/epcis?date={dates[0]}"))[0] == 200
            clock.now = sent.now + 2 * 86400
            assert await asyncio.to_thread(views.prune) > 0
            status, after = await get(f"/api/mbg/deliveries?date={dates[0]}")
            assert status == 200 and {**after, "now": 0} == {**before[1], "now": 0}
            status, refused = await get(f"/api/mbg/epcis?date={dates[0]}")
            assert status == 404 and refused["error"]["code"] == "MBG_BEYOND_WINDOW" and refused["error"]["hint"]
    finally:
        views.close()
        store.close()


def test_a_stored_day_the_refill_finds_other_scans_for_is_settled_again(stores) -> None:
    """A late scan whose stale mark was lost (the hub stopped before its next write): the refilled day holds a scan
    more than its stored day was settled from, so the day is settled again and its stored day deleted."""
    p = pushed(stores, 0x68)
    sent, dates, key, clock, store, views = p.sent, p.dates, p.key, p.clock, p.store, p.views
    hub = views.hub
    late = next(p for p in sent.pushes if p[2] == "scan" and p[3].get("event") == "arrived")
    assert views.keep_days_stored() == 2
    with views.fresh():
        scans = views.mbg.summary(sent.now, dates[0])["total_scans_today"]
    views.close()
    # The late tap reaches the hub with no read models listening, as in a crash before their next write.
    assert sent.push(hub, clock, [(sent.now, late[1], "scan", {**late[3], "count": 7}, late[4] + 60)]) == 1
    store.close()

    store, aggregates = stores()
    again = Views(Hub(store, key, clock=clock), plan=sent.plan, aggregates=aggregates, refill=True)
    plain = Views(again.hub, plan=sent.plan, refill=True)
    try:
        again.refill_from_store()
        plain.refill_from_store()
        with again.fresh(), plain.fresh():
            answer = answers(again.mbg, sent.now, dates[0])
            assert answer == answers(plain.mbg, sent.now, dates[0])
            assert answer["summary"]["total_scans_today"] == scans + 1
            assert again.mbg.take_stale() == [dates[0]] and again.mbg.stored_dates() == [dates[1]]
    finally:
        again.close()
        plain.close()
        store.close()
