"""The markets' day aggregates kept in the store (LMDB and PostgreSQL): a restart loads the closed days and reads
again only the last `raw_days` of price, reading and note records, and answers as before it; operators'
decisions on values older than that stay in the audit and in the days' prices, also one made after the days
were last written; a value of an older day still waiting for a decision is held again and decided as before, also
one whose day has left the window; days stored by the earlier release are converted without an error."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import cbor2
import pytest

from hub.aggregates import AggregateStore, DayAggregate, LmdbAggregates
from hub.auth import Auth
from hub.journal import Journal
from hub.markets import AlertTracker, Decision, MarketConfig
from hub.markets.calendar import date_of, day_number
from hub.markets.catalog import COMMODITIES_BY_ID, MARKETS_BY_ID
from hub.markets.days import (
    FORMAT,
    MARKET_DAYS,
    Mark,
    MarketDay,
    from_aggregate,
    summary_format,
    to_aggregate,
)
from hub.markets.errors import DecisionConflict, MarketError
from hub.markets.model import day_of
from hub.markets.quarantine import PENDING
from hub.markets.routes import MarketRoutes
from hub.markets.synth import SynthConfig, generate
from hub.mbg import Plan
from hub.service import Hub
from hub.store import LmdbHubStore
from hub.views import Views
from ledger import ChainBuilder, Ed25519Signer, decode_record

from .conftest import Clock, enroll

MARKETS = ("pasar-kramat-jati", "pasar-senen")
COMMODITIES = ("beras-medium", "cabai-merah")
START, DAYS = "2025-09-01", 75
KITCHEN, REGION = "SPPG-1", "DKI Jakarta"
OUTLIER_DAYS = (12, 14, 16, 18, DAYS - 4)  # a tenfold cabai price at pasar-senen on these days of the span


class Site:
    """A device that signs one site's records, each with its own time."""

    def __init__(self, hub: Hub, clock: Clock, site: str, role: str) -> None:
        signer = Ed25519Signer.from_seed(site.encode().ljust(32, b"."))
        self.time = 0
        self.device_id = enroll(hub, signer, clock, site=site, role=role)
        self.builder = ChainBuilder(signer, clock=lambda: self.time, boot=1)
        assert hub.ingest(self.device_id, [self.builder.genesis().raw]).accepted == 1

    def sign(self, kind: str, body: dict[str, Any], at: int) -> bytes:
        self.time = at
        return self.builder.append(kind, body).raw


def traffic() -> list[tuple[int, str, str, dict[str, Any], int]]:
    """(arrival, site, kind, body, device time) of DAYS of two markets' prices (some late by up to two days,
    some manipulated, and tenfold outliers), readings, field notes and a kitchen's use of rice, by arrival."""
    data = generate(SynthConfig(seed=21, start=START, days=DAYS, reporters=(1, 2), readings_per_day=2,
                                manipulation_rate=0.03, shocks_per_year=6.0,
                                markets=tuple(MARKETS_BY_ID[m] for m in MARKETS),
                                commodities=tuple(COMMODITIES_BY_ID[c] for c in COMMODITIES)))
    out = [(o.arrived_at, o.market, "price", o.to_body(), o.time) for o in data.observations()]
    out += [(r.arrived_at, r.site, "reading", r.to_body(), r.time) for r in data.sensor_readings()]
    out += [(n.arrived_at, n.market, "note", n.to_body(), n.time) for n in data.notes]
    first = day_number(START)
    for k in range(DAYS):
        t = (first + k) * 86400 - 7 * 3600 + 10 * 3600  # 10:00 WIB
        out.append((t + 300, KITCHEN, "stock", {"site": KITCHEN, "item": "beras", "movement": "use",
                                                 "qty": (k % 5 + 1) * 20_000, "unit": "g"}, t))
    for k in OUTLIER_DAYS:
        t = (first + k) * 86400 - 7 * 3600 + 8 * 3600
        out.append((t + 60, "pasar-senen", "price", {"market": "pasar-senen", "commodity": "cabai-merah", "unit": "kg",
                                                      "price_idr": 500_000, "reporter": "rep-x", "region": REGION}, t))
    out.sort(key=lambda p: p[0])
    return out


class Fed(Views):
    """Views that count the market records fed to the read models."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        self.prices_fed = 0
        super().__init__(*args, **kw)

    def _take_domains(self, records: Any, arrived_at: int) -> None:
        self.prices_fed += sum(1 for r in records if r.kind == "price")
        super()._take_domains(records, arrived_at)


def views_of(hub: Hub, aggregates: AggregateStore, *, refill: bool, config: MarketConfig | None = None) -> Fed:
    return Fed(hub, plan=Plan(kitchens=(), schools=()), kitchen_regions={KITCHEN: REGION}, refill=refill,
               aggregates=aggregates, market_config=config)


def answers(views: Views) -> dict[str, Any]:
    """What the markets answer: live prices, history, forecasts, impact of the last days, ALPS bands and the
    early warnings a fresh tracker raises, the observations and held values listed, operators' decisions; and
    each day's aggregates as they would be stored."""
    m = views.markets
    first = day_number(START)
    with views.fresh():
        out: dict[str, Any] = {"days": [m.market_day(d) for d in range(first - 1, first + DAYS + 1)], "live": m.live_prices(), "bands": m.bands(), "checked": m.checked(),
                               "held": m.quarantined(None), "listed": m.listed_count(),
                               "decisions": [d for d in m.audit() if d["by"] != "validator"],
                               "demand": dict(views.demand.kg)}
        for c in COMMODITIES:
            out[f"history/{c}"] = m.history(c)
            for market in MARKETS:
                out[f"forecast/{c}/{market}"] = m.forecast(c, market)
                last = m.live_prices(c, market)[0]["day"]
                out[f"impact/{c}/{market}"] = [_answer(m.impact, c, market, day=d) for d in range(last - 6, last + 1)]
        m.tracker = AlertTracker()
        out["warnings"] = [a.to_dict() for a in m.early_warning()]
    return out


def _answer(question: Any, *args: Any, **kw: Any) -> Any:
    """The answer, or the error's code and message (a day with gaps in its windows has no impact)."""
    try:
        return question(*args, **kw)
    except MarketError as exc:
        return {"error": exc.code, "message": str(exc)}


def senen_cabai(views: Views, day: int) -> dict[str, Any]:
    with views.fresh():
        return next(h for h in views.markets.history("cabai-merah", "pasar-senen") if h["day"] == day)


def fed(pushes: list[tuple[int, str, str, dict[str, Any], int]], store: Any, aggregates: AggregateStore,
        key: Ed25519Signer, clock: Clock, config: MarketConfig | None = None) -> tuple[Hub, dict[str, Site], Fed]:
    """A hub fed the pushes as they arrive, its closed days written as the worker writes them; the clock an
    hour past the last push."""
    hub = Hub(store, key, clock=clock)
    sites = {s: Site(hub, clock, s, "market" if s != KITCHEN else "kitchen") for s in (*MARKETS, KITCHEN)}
    views = views_of(hub, aggregates, refill=False, config=config)
    written_at = pushes[0][0]
    for arrived_at, site, kind, body, t in pushes:
        clock.now = arrived_at
        assert hub.ingest(sites[site].device_id, [sites[site].sign(kind, body, t)]).accepted == 1
        if arrived_at - written_at > 6 * 3600:  # the worker writes closed days as it derives
            views.store_market_days()
            written_at = arrived_at
    clock.now = pushes[-1][0] + 3600
    return hub, sites, views


def test_a_restart_loads_closed_days_and_answers_as_before(stores) -> None:
    key = Ed25519Signer.from_seed(b"\x71" * 32)
    pushes = traffic()
    clock = Clock(pushes[0][0] - 3600)
    store, aggregates = stores()
    hub, sites, views = fed(pushes, store, aggregates, key, clock)
    m = views.markets
    first_listed = m.listed_from()
    old = sorted((e for e in m.quarantine.store.entries("pending") if e.observation.reporter == "rep-x"
                  and day_of(e.observation.time) < first_listed - 3), key=lambda e: e.observation.time)
    recent = [e for e in m.quarantine.store.entries("pending") if day_of(e.observation.time) >= first_listed]
    assert len(old) >= 3 and recent, "the outliers were not held"
    journal: list[dict[str, Any]] = []
    with views.fresh():
        m.decide(old[0].observation.id, "release", by="siti", why="checked with the trader", record=journal.append)
        m.decide(old[1].observation.id, "confirm", by="budi", why="a typo", record=journal.append)
        m.decide(recent[0].observation.id, "confirm", by="budi", why="a typo", record=journal.append)
    assert views.store_market_days() >= 1  # the released value's day is written again
    with views.fresh():  # made after the days were last written: the hub stops before writing them again
        m.decide(old[2].observation.id, "release", by="siti", why="the market's own receipt", record=journal.append)
    # So is a reading of a closed day that a sensor sends late: the stored days do not hold it.
    late_day = day_number(START) + 20
    raw = sites["pasar-senen"].sign("reading", {"site": "pasar-senen", "temp_cc": 4100, "crowd": 999},
                                    late_day * 86400 - 7 * 3600 + 12 * 3600)
    assert hub.ingest(sites["pasar-senen"].device_id, [raw]).accepted == 1
    with views.fresh():
        assert m.market_day(late_day).readings["pasar-senen"][4] >= 999  # the crowd counted
    with views.fresh():  # what the hourly prune does: the observations of days no longer listed go
        listed = views.markets.listed_count()
        assert views.markets.forget_unlisted() > 0 and len(views.markets.observed) == listed
    before = answers(views)
    released = [day_of(old[0].observation.time), day_of(old[2].observation.time)]
    assert all(senen_cabai(views, d)["max_idr"] == 500_000 for d in released)
    assert before["checked"] and before["held"] and before["bands"] and len(before["decisions"]) == 4
    total_prices = sum(1 for p in pushes if p[2] == "price")
    store.close()
    aggregates.close()

    store, aggregates = stores()
    try:
        hub = Hub(store, key, clock=clock)
        again = views_of(hub, aggregates, refill=True)
        again.markets.restore_decisions([Decision.from_dict(d) for d in journal])
        again.refill_from_store()
        assert again.refilled.is_set() and again.markets.seam is None and again.markets._kept == {}
        # Only the last raw_days (and two days before them for the validator) of prices were read again.
        assert 0 < again.prices_fed < total_prices * (again.markets.config.raw_days + 4) / DAYS
        after = answers(again)
        for name, answer in before.items():
            assert after[name] == answer, name
        assert all(senen_cabai(again, d)["max_idr"] == 500_000 for d in released)
        # A decision on a value older than the days listed is in the audit, its observation not listed.
        assert old[0].observation.id in {d["observation"] for d in after["decisions"]}
        assert old[0].observation.id not in {e["observation"]["id"] for e in after["held"]}
    finally:
        store.close()
        aggregates.close()


def test_a_stored_day_that_does_not_read_makes_the_refill_read_the_whole_window(tmp_path: Path, caplog) -> None:
    store, aggregates = LmdbHubStore(tmp_path / "store"), LmdbAggregates(tmp_path / "aggregates")
    try:
        hub = Hub(store, Ed25519Signer.from_seed(b"\x72" * 32), clock=Clock(day_number(START) * 86400))
        days = aggregates.namespace(MARKET_DAYS)
        good = MarketDay(day=day_number(START) - 3, mark=Mark(written=1, closed_through=day_number(START) - 3,
                                                                record=b"\x01" * 32, decisions=0))
        bad = DayAggregate(date="2025-08-30", figures=(0, 0, 0, 0), summary=b"\xa0")  # not a market day
        days.put([to_aggregate(good), bad])
        views = views_of(hub, aggregates, refill=True)
        assert views.kept_days is not None and views.kept_days.load(hub.clock()) is None
        assert "cannot be read" in caplog.text and views.markets.seam is None
        days.put([to_aggregate(good)], delete=["2025-08-30"])
        # The mark names a record the log does not hold: nothing stored is trusted either.
        assert views.kept_days.load(hub.clock()) is None and views.markets.seam is None
    finally:
        store.close()
        aggregates.close()


def restarted(stores: Any, key: Ed25519Signer, clock: Clock, journal: Journal,
              config: MarketConfig | None = None) -> tuple[Any, Any, MarketRoutes]:
    """The hub opened again on the same store as it starts: the journal's decisions restored, then the refill."""
    store, aggregates = stores()
    views = views_of(Hub(store, key, clock=clock), aggregates, refill=True, config=config)
    routes = MarketRoutes(views, auth=Auth(), decisions=journal)
    routes.restore_decisions()
    views.refill_from_store()
    assert views.refilled.is_set() and views.markets.seam is None
    return store, aggregates, routes


def pending(routes: MarketRoutes) -> dict[str, dict[str, Any]]:
    return {e["observation"]["id"]: e for e in routes.quarantine("pending")["entries"]}


def decided(routes: MarketRoutes, observation_id: str) -> dict[str, Any]:
    """What a decision on the value shows: its day's aggregates, the series' history, the audit (the
    operators' decisions, and the value's own trail), the values still pending."""
    m = routes.markets
    with routes.views.fresh():
        day = m.market_day(day_of(m.quarantine.store.get(observation_id).observation.time))
        history = m.history("cabai-merah")
    return {"day": day, "history": history, "trail": routes.audit(observation_id)["audit"],
            "decisions": [d for d in routes.audit(None)["audit"] if d["by"] != "validator"],
            "pending": sorted(pending(routes))}


def test_a_value_held_for_a_decision_is_held_again_after_a_restart(stores, tmp_path: Path) -> None:
    key = Ed25519Signer.from_seed(b"\x73" * 32)
    pushes = traffic()
    back = day_number(START) + DAYS - 30  # a tenfold price 30 days before the last day, held for a decision
    t = back * 86400 - 7 * 3600 + 9 * 3600
    pushes.append((t + 60, "pasar-kramat-jati", "price", {
        "market": "pasar-kramat-jati", "commodity": "cabai-merah", "unit": "kg", "price_idr": 600_000,
        "reporter": "rep-y", "region": REGION}, t))
    pushes.sort(key=lambda p: p[0])
    clock = Clock(pushes[0][0] - 3600)
    store, aggregates = stores()
    _, _, views = fed(pushes, store, aggregates, key, clock)
    journal = Journal(tmp_path / "decisions.jsonl")
    routes = MarketRoutes(views, auth=Auth(), decisions=journal)
    assert back < views.markets.listed_from()
    held = pending(routes)
    value = next(oid for oid, e in held.items() if e["observation"]["reporter"] == "rep-y")
    kept, late = sorted(oid for oid, e in held.items() if e["observation"]["reporter"] == "rep-x"
                        and day_of(e["observation"]["time"]) < views.markets.listed_from())[:2]
    # One decided before its day is written again, one after: neither is pending again after a restart.
    routes.decide(kept, "confirm", by="budi", why="a typo")
    assert views.store_market_days() >= 1
    routes.decide(late, "release", by="siti", why="the market's own receipt")
    before = pending(routes)
    assert value in before and kept not in before and late not in before
    assert before[value]["verdict"]["fired"] and before[value]["state"] == PENDING
    # The hub that decides without a restart (this decision is not journaled: the restarted hub makes it).
    MarketRoutes(views, auth=Auth()).decide(value, "release", by="siti", why="checked with the trader")
    unrestarted = decided(routes, value)
    assert unrestarted["day"].series[("pasar-kramat-jati", "cabai-merah", "", "kg")].prices[-1] == 600_000
    store.close()
    aggregates.close()

    store, aggregates, again = restarted(stores, key, clock, journal)
    try:
        assert pending(again) == before  # the same values, reasons, verdicts and states
        with pytest.raises(DecisionConflict):  # still confirmed: a reopen comes first
            again.decide(kept, "release", by="siti", why="a second look")
        again.decide(value, "release", by="siti", why="checked with the trader")
        assert decided(again, value) == unrestarted
        assert again.views.store_market_days() >= 1
    finally:
        store.close()
        aggregates.close()

    # The release is in that day's aggregates now: a restart after it neither holds the value again nor counts
    # its price twice.
    store, aggregates, third = restarted(stores, key, clock, journal)
    try:
        assert decided(third, value) == unrestarted
    finally:
        store.close()
        aggregates.close()


def test_a_held_value_whose_record_the_log_does_not_give_is_logged_and_left_out(tmp_path: Path, caplog) -> None:
    clock = Clock(day_number(START) * 86400)
    store, aggregates = LmdbHubStore(tmp_path / "store"), LmdbAggregates(tmp_path / "aggregates")
    try:
        hub = Hub(store, Ed25519Signer.from_seed(b"\x74" * 32), clock=clock)
        views = views_of(hub, aggregates, refill=False)
        site = Site(hub, clock, "pasar-senen", "market")
        raw = site.sign("price", {"market": "pasar-senen", "commodity": "cabai-merah", "unit": "kg",
                                  "price_idr": 50_000, "reporter": "rep-1", "region": REGION}, clock())
        assert hub.ingest(site.device_id, [raw]).accepted == 1
        with views.fresh():
            (price, (observed, _)), = views.markets.observed.items()
        genesis = decode_record(store.entries(0, store.size())[-2].raw)  # a record of the log, not a price
        assert genesis.kind != "price" and views.kept_days is not None
        found = views.kept_days.held_observations([price, genesis.id.hex(), "ab" * 32, "not an id"])
        assert found == {price: observed}
        assert caplog.text.count("not held again") == 3
    finally:
        store.close()
        aggregates.close()


# A window of 55 days: the traffic's first outliers are older than it when it ends, and the validator's 28 days of
# history before the days read again (raw_days) are within it.
AGED = MarketConfig(window_days=55)


def test_a_value_waiting_for_a_decision_when_its_day_leaves_the_window_is_held_until_decided(stores, tmp_path,
                                                                                              caplog) -> None:
    key = Ed25519Signer.from_seed(b"\x75" * 32)
    pushes = traffic()
    clock = Clock(pushes[0][0] - 3600)
    store, aggregates = stores()
    _, _, views = fed(pushes, store, aggregates, key, clock, config=AGED)
    journal = Journal(tmp_path / "decisions.jsonl")
    routes = MarketRoutes(views, auth=Auth(), decisions=journal)

    def day(e: dict[str, Any]) -> int:
        return day_of(e["observation"]["time"])

    def past(now: int) -> str:  # the first date of the window
        return date_of(day_of(now) - AGED.window_days + 1).isoformat()

    window_from = day_of(clock()) - AGED.window_days + 1
    held = pending(routes)
    aged = sorted((oid for oid, e in held.items() if e["observation"]["reporter"] == "rep-x"
                   and day(e) < window_from), key=lambda oid: day(held[oid]))
    assert len(aged) >= 3 and len({day(held[oid]) for oid in aged}) == len(aged), "the old outliers were not held"
    waiting, confirmed, released = aged[:3]
    routes.decide(confirmed, "confirm", by="budi", why="a typo")
    assert views.store_market_days() >= 1
    routes.decide(released, "release", by="siti", why="the market's own receipt")  # after the days were written
    before = pending(routes)
    assert waiting in before and confirmed not in before and released not in before
    assert any(day(e) < window_from for oid, e in before.items() if oid != waiting)
    store.close()
    aggregates.close()

    caplog.set_level(logging.INFO, logger="jejak.hub.markets")
    store, aggregates, again = restarted(stores, key, clock, journal, config=AGED)
    try:
        # Every value still waiting, of any day, is held again as it was; the decided ones stay decided.
        assert pending(again) == before
        assert again.markets.quarantine.state_of(released) == "released"
        operators = {(d["observation"], d["action"]) for d in again.audit(None)["audit"] if d["by"] != "validator"}
        assert {(confirmed, "confirm"), (released, "release")} <= operators
        assert "older than the window are kept" in caplog.text
        assert again.views.store_market_days() >= 1
        # The store keeps a day past the window while it holds a value waiting (the released one's day is written
        # again with its decision); the others go with the window.
        kept = {d for d in aggregates.namespace(MARKET_DAYS).dates() if d < past(clock())}
        waits = {date_of(day(e)).isoformat() for e in before.values() if day(e) < window_from}
        assert kept == waits | {date_of(day(held[released])).isoformat()}
        assert date_of(day(held[confirmed])).isoformat() not in kept
        again.decide(waiting, "release", by="siti", why="checked with the trader")
        assert again.views.store_market_days() >= 1
    finally:
        store.close()
        aggregates.close()

    clock.advance(86400)  # a day on: the next write happens, and deletes what the window no longer holds
    store, aggregates, third = restarted(stores, key, clock, journal, config=AGED)
    try:
        assert waiting not in pending(third)
        assert (waiting, "release") in {(d["observation"], d["action"]) for d in third.audit(waiting)["audit"]}
        assert third.views.store_market_days() >= 1
        waits = {date_of(day(e)).isoformat() for oid, e in before.items()
                 if oid != waiting and day(e) < day_of(clock()) - AGED.window_days + 1}
        assert {d for d in aggregates.namespace(MARKET_DAYS).dates() if d < past(clock())} == waits
    finally:
        store.close()
        aggregates.close()


def format_one(day: Any) -> DayAggregate:
    """A stored day as the release before held values were kept wrote it: summary format 1, without `held`."""
    summary = cbor2.loads(day.summary)
    del summary["held"]
    summary["format"] = 1
    return DayAggregate(date=day.date, figures=day.figures, summary=cbor2.dumps(summary, canonical=True),
                        rows=day.rows)


def test_days_stored_by_the_earlier_release_are_converted_quietly_once(stores, caplog) -> None:
    key = Ed25519Signer.from_seed(b"\x76" * 32)
    pushes = traffic()
    clock = Clock(pushes[0][0] - 3600)
    store, aggregates = stores()
    _, _, views = fed(pushes, store, aggregates, key, clock)
    views.store_market_days()
    with views.fresh():
        held = views.markets.quarantined("pending")
    assert held
    days = aggregates.namespace(MARKET_DAYS)
    dates = days.dates()
    stored = [from_aggregate(days.get(d)) for d in dates]
    full = {d for d, m in zip(dates, stored, strict=True) if m.series or m.readings or m.notes or m.demand or m.held}
    assert len(full) > DAYS - 5
    # And a day that release wrote which the log gives nothing again for: it goes.
    empty = MarketDay(day=day_number(START) - 5, mark=Mark(written=1, closed_through=day_number(START) - 5,
                                                             record=b"", decisions=0))
    days.put([format_one(days.get(d)) for d in dates] + [format_one(to_aggregate(empty))])
    assert all(summary_format(days.get(d)) == 1 for d in days.dates())
    total_prices = sum(1 for p in pushes if p[2] == "price")
    store.close()
    aggregates.close()

    caplog.set_level(logging.INFO, logger="jejak.hub.markets")
    store, aggregates = stores()
    try:
        again = views_of(Hub(store, key, clock=clock), aggregates, refill=True)
        again.refill_from_store()
        assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
        assert "earlier format" in caplog.text
        assert again.prices_fed == total_prices  # the window read once from the records
        with again.fresh():
            assert again.markets.quarantined("pending") == held  # held values of every day are held again
        assert again.store_market_days() >= 1
        # Every day is written again from the records, or deleted if they give nothing for it (an empty day that
        # carried an earlier write's mark); none is left in the earlier format.
        days = aggregates.namespace(MARKET_DAYS)
        assert full <= set(days.dates()) <= set(dates)
        assert all(summary_format(days.get(d)) == FORMAT for d in days.dates())
    finally:
        store.close()
        aggregates.close()

    caplog.clear()
    store, aggregates = stores()
    try:  # the next restart loads them and reads again only the last days
        third = views_of(Hub(store, key, clock=clock), aggregates, refill=True)
        third.refill_from_store()
        assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
        assert 0 < third.prices_fed < total_prices * (third.markets.config.raw_days + 4) / DAYS
        with third.fresh():
            assert third.markets.quarantined("pending") == held
    finally:
        store.close()
        aggregates.close()
