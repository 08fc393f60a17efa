"""A day's verdicts do not depend on which reporter arrived first: they are provisional until the market's
other reporters have reported or the cut-off passes, a move all reporters share is accepted, and one
reporter's outlier is quarantined whoever reported first."""

from __future__ import annotations

import itertools
import random
from dataclasses import replace

import pytest

from hub.demo import MARKETS as DEMO_MARKETS
from hub.markets import MarketConfig
from hub.markets.calendar import day_number
from hub.markets.catalog import COMMODITIES_BY_ID, MARKETS_BY_ID
from hub.markets.ceilings import CeilingTable
from hub.markets.model import DAY_S, WIB_OFFSET_S, PriceObservation
from hub.markets.service import MarketService
from hub.markets.synth import SynthConfig, generate
from hub.markets.validate import ValidationConfig, Validator

DAY = day_number("2024-06-03")
MORNING = DAY * DAY_S - WIB_OFFSET_S + 7 * 3600
KEY = ("pasar-senen", "cabai-merah", "", "kg")
_ids = itertools.count()


def obs(price: int, reporter: str, *, hour: float = 0.0, day: int = DAY) -> PriceObservation:
    t = MORNING + (day - DAY) * DAY_S + int(hour * 3600)
    return PriceObservation(id=f"a{next(_ids)}", market=KEY[0], region="DKI Jakarta", commodity=KEY[1], unit="kg",
                            price_idr=price, time=t, arrived_at=t + 30, reporter=reporter)


def validator() -> Validator:
    """Sticky history at Rp 40.000 and three reporters who reported yesterday."""
    v = Validator(ceilings=CeilingTable.load())
    v.seed_history(KEY, "DKI Jakarta", [40_000] * 28, DAY - 2)
    for r in ("r1", "r2", "r3"):
        v.check(obs(40_000, r, day=DAY - 1))
    return v


def final_statuses(v: Validator, reports: list[PriceObservation]) -> dict[str, str]:
    latest = {}
    for o in reports:
        for seen, verdict in v.observe(o):
            latest[seen.reporter] = verdict
    assert all(not verdict.provisional for verdict in latest.values())
    return {r: verdict.status for r, verdict in latest.items()}


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
def test_a_move_all_reporters_share_is_accepted_in_any_order(order) -> None:
    v = validator()
    day = [obs(48_000, "r1", hour=0), obs(48_000, "r2", hour=2), obs(49_000, "r3", hour=5)]
    assert final_statuses(v, [day[k] for k in order]) == {"r1": "accepted", "r2": "accepted", "r3": "accepted"}


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
def test_one_reporters_outlier_is_quarantined_whoever_came_first(order) -> None:
    v = validator()
    day = [obs(50_000, "r1", hour=0), obs(40_000, "r2", hour=1), obs(40_500, "r3", hour=4)]
    assert final_statuses(v, [day[k] for k in order]) == {"r1": "quarantined", "r2": "accepted",
                                                          "r3": "accepted"}


def test_with_two_reporters_the_one_unusual_against_history_is_held() -> None:
    v = Validator()
    v.seed_history(KEY, "DKI Jakarta", [40_000] * 28, DAY - 2)
    for r in ("r1", "r2"):
        v.check(obs(40_000, r, day=DAY - 1))
    assert final_statuses(v, [obs(50_000, "r1"), obs(40_000, "r2", hour=3)]) == {
        "r1": "quarantined", "r2": "accepted"}


def test_first_report_is_provisional_and_explanations_name_what_peers_reported() -> None:
    v = validator()
    first = v.check(obs(48_000, "r1"))
    assert first.provisional and first.quarantined and "provisional" in first.summary
    [(_, second), (_, revised)] = v.observe(obs(48_000, "r2", hour=1))
    assert second.provisional and revised.status == "accepted"
    (_, third), *_ = v.observe(obs(49_000, "r3", hour=2))
    assert not third.provisional
    assert "r1 Rp 48.000" in third.check("reporters").reason and "r2 Rp 48.000" in third.check("reporters").reason


def test_the_cut_off_makes_a_day_final_without_the_missing_reporter() -> None:
    v = validator()
    v.check(obs(40_000, "r1"))
    assert v.check(obs(40_100, "r2", hour=1)).provisional
    cut = (DAY + 1) * DAY_S - WIB_OFFSET_S + ValidationConfig().settle_after_s
    assert v.settle(cut - 1) == []
    final = v.settle(cut)
    assert len(final) == 2 and all(not verdict.provisional and not verdict.quarantined for _, verdict in final)
    # The day's accepted median joins the history once the next day begins.
    v.check(obs(40_000, "r1", day=DAY + 1))
    assert v.history(KEY)[-1] == 40_050


def test_the_service_moves_a_value_out_of_quarantine_when_peers_confirm_it() -> None:
    svc = MarketService()
    svc.validator.seed_history(KEY, "DKI Jakarta", [40_000] * 28, DAY - 2)
    for r in ("r1", "r2", "r3"):
        svc.add_observation(obs(40_000, r, day=DAY - 1))
    first = obs(48_000, "r1")
    assert svc.add_observation(first).quarantined
    assert [e["observation"]["id"] for e in svc.quarantined()] == [first.id]
    svc.add_observation(obs(48_000, "r2", hour=1))
    svc.add_observation(obs(48_500, "r3", hour=2))
    assert svc.quarantined() == []
    assert svc.quarantined("cleared")[0]["observation"]["id"] == first.id
    audit = svc.audit(first.id)
    assert audit[0]["action"] == "clear" and {d["by"] for d in audit} == {"validator"}
    assert "the other reporter here reported r2 Rp 48.000" in audit[0]["why"]
    today = [h for h in svc.history("cabai-merah", "pasar-senen") if h["day"] == DAY]
    assert today[0]["reports"] == 3 and today[0]["price_idr"] == 48_000


def test_backlogs_sent_after_an_outage_are_judged_together() -> None:
    v = validator()
    later = MORNING + 2 * DAY_S  # the uplink came back two days later; each device sends its backlog in turn

    def backlog(price: int, reporter: str, minute: int) -> PriceObservation:
        o = obs(price, reporter)
        return PriceObservation(id=f"b{next(_ids)}", market=o.market, region=o.region, commodity=o.commodity,
                                unit="kg", price_idr=price, time=o.time, arrived_at=later + 60 * minute,
                                reporter=reporter)

    latest = {}
    # A move all three shared: the first backlog alone would look like an outlier with no peer.
    for o in (backlog(48_000, "r1", 0), backlog(48_000, "r2", 20), backlog(48_500, "r3", 40)):
        for seen, verdict in v.observe(o):
            latest[seen.reporter] = verdict
    assert {r: x.status for r, x in latest.items()} == {"r1": "accepted", "r2": "accepted", "r3": "accepted"}
    # An unusual day heard of late stays open for the nearby markets' backlogs of it until the backlog window
    # ends (none come here): then it is final as judged.
    assert all(x.provisional for x in latest.values())
    final = {seen.reporter: verdict for seen, verdict in v.settle(later + 40 * 60 + v.config.backlog_window_s)}
    assert {r: (x.status, x.provisional) for r, x in final.items()} == {r: ("accepted", False) for r in latest}


def test_preview_gives_the_verdict_observe_would_and_keeps_nothing() -> None:
    v = validator()
    v.observe(obs(40_000, "r2", hour=1))
    before = {k: (list(d.reports), dict(d.verdicts), d.settled) for k, d in v._days.items()}
    pending, reporters = dict(v._pending), {s: dict(r) for s, r in v._reporters.items()}
    outlier = obs(50_000, "r1", hour=2)
    preview = v.preview(outlier)
    assert preview.status == "quarantined" and preview.provisional and "reporters" in preview.fired
    assert {k: (list(d.reports), dict(d.verdicts), d.settled) for k, d in v._days.items()} == before
    assert v._pending == pending and v._reporters == reporters
    # Asked again, or then observed, it gets the same verdict: the preview left nothing behind.
    assert v.preview(outlier).status == "quarantined"
    assert v.observe(outlier)[0][1].status == preview.status


@pytest.mark.parametrize("first", ["pasar-senen", "pasar-kramat-jati"])
def test_a_days_prices_sent_late_wait_for_a_neighbour_whose_backlog_has_not_begun(first: str) -> None:
    # Two markets of a region, each with one reporter, both see chilli rise 20 % this morning; their devices
    # are offline until the evening and then send everything, one device's backlog after the other's. The first
    # to arrive is unusual against its history and its neighbour is not known here yet: judged final then, it
    # was held for good while the second, vouched for by the first, was accepted.
    v = Validator(ceilings=CeilingTable.load())
    evening = MORNING + 10 * 3600

    def backlog(market: str) -> list[PriceObservation]:
        key = (market, KEY[1], "", "kg")
        v.seed_history(key, "DKI Jakarta", [40_000] * 28, DAY - 2)
        yesterday = obs(40_000, f"r-{market}", day=DAY - 1)
        return [PriceObservation(id=f"{market}-{o.time}", market=market, region="DKI Jakarta", commodity=KEY[1],
                                 unit="kg", price_idr=o.price_idr, time=o.time, arrived_at=evening,
                                 reporter=o.reporter)
                for o in (yesterday, obs(48_000, f"r-{market}", hour=1))]

    latest = {}
    for market in (first, *({"pasar-senen", "pasar-kramat-jati"} - {first})):
        for o in backlog(market):
            for seen, verdict in v.observe(o):
                if seen.time >= MORNING:
                    latest[seen.market] = verdict
        if market == first:  # its price waits for the other backlogs of its day
            assert latest[first].provisional and latest[first].quarantined, latest[first].summary
    final = {seen.market: verdict for seen, verdict in v.settle(evening + v.config.backlog_window_s + 24 * 3600)
             if seen.time >= MORNING}
    latest.update(final)
    assert {m: (x.status, x.provisional) for m, x in latest.items()} == {
        "pasar-senen": ("accepted", False), "pasar-kramat-jati": ("accepted", False)}, {
        m: x.summary for m, x in latest.items()}


def test_backlogs_of_many_markets_get_the_same_verdicts_whichever_device_sent_first() -> None:
    # A fresh hub hears a month of eight markets' prices at once, each market's device sending its backlog in
    # parts as its uplink allows, the parts of different devices interleaved. Which device's part came first
    # must not decide a verdict: each day is judged when the backlog window ends, in day and series order.
    markets = tuple(MARKETS_BY_ID[m] for m in DEMO_MARKETS)
    data = generate(SynthConfig(seed=11, start="2024-05-01", days=30, markets=markets, reporters=(1, 1),
                                shocks_per_year=12.0, commodities=tuple(COMMODITIES_BY_ID[c] for c in (
                                    "cabai-merah", "bawang-merah", "beras-medium"))))
    sent = MORNING + 40 * DAY_S
    by_market: dict[str, list[PriceObservation]] = {}
    for k in range(len(data.batch)):
        o = data.observation(k)
        by_market.setdefault(o.market, []).append(o)

    def verdicts(seed: int) -> dict[str, tuple[str, bool]]:
        rnd = random.Random(seed)
        parts = {m: [sorted(rows, key=lambda o: o.time)[i:i + 15] for i in range(0, len(rows), 15)]
                 for m, rows in by_market.items()}
        svc = MarketService(MarketConfig(validation=ValidationConfig(max_age_s=80 * DAY_S)))
        minute = 0
        while parts:
            market = rnd.choice(sorted(parts))
            for o in parts[market].pop(0):
                svc.add_observation(replace(o, arrived_at=sent + minute))
            minute += 1
            if not parts[market]:
                del parts[market]
        svc.settle(sent + minute + svc.config.validation.backlog_window_s)
        return {k: (v.status, v.provisional) for k, v in svc._verdicts.items()}

    first = verdicts(0)
    assert not any(provisional for _, provisional in first.values())
    assert sum(status != "accepted" for status, _ in first.values()) > 0  # some are held: the orders can differ
    for seed in (1, 2, 3):
        got = verdicts(seed)
        assert sum(got[k] != first[k] for k in first) == 0, seed


def test_todays_price_sent_with_a_backlog_waits_for_the_backlogs_days_to_join_the_history() -> None:
    # A device back from a three-day outage sends those days' prices and this morning's together. This morning's
    # day is complete at once, but were it final before the backlog's days, their prices could never join the
    # history (it moves forward only), and the next days would be judged without them.
    v = Validator(ValidationConfig(max_age_s=10 * DAY_S), ceilings=CeilingTable.load())
    v.seed_history(KEY, "DKI Jakarta", [40_000] * 28, DAY - 5)
    back = MORNING + 30

    def sent(price: int, day: int) -> PriceObservation:
        o = obs(price, "r1", day=day)
        return replace(o, id=f"c{next(_ids)}", reporter="r1", arrived_at=back)

    reports = [sent(41_000, DAY - 3 + k) for k in range(3)] + [sent(41_500, DAY)]
    before = len(v.history(KEY))
    for o in reports:
        v.observe(o)
    assert len(v.history(KEY)) == before  # nothing final while the backlog window is open
    settled = {o.id: verdict for o, verdict in v.settle(back + v.config.backlog_window_s)}
    assert all(not x.provisional and x.status == "accepted" for x in settled.values())
    assert settled.keys() == {o.id for o in reports}  # today's too, once no earlier day is open
    assert v.history(KEY)[-3:] == [41_000.0, 41_000.0, 41_000.0]  # then today's joins it, as history moves on
