"""A lone market's level shift (`[markets.validation] level_days`) through restarts of the hub on its stores (LMDB and
PostgreSQL): a restart in the middle of the run of held days, and one after the new level was taken, judge every
later price as the hub that never restarted does (held or accepted, and why), and measure it from the same level."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hub.aggregates import LmdbAggregates
from hub.markets import MarketConfig
from hub.markets.calendar import day_number
from hub.markets.model import DAY_S, WIB_OFFSET_S
from hub.service import Hub
from hub.store import LmdbHubStore
from hub.views import Views
from ledger import ChainBuilder, Ed25519Signer

from .conftest import Clock, enroll
from .test_market_days import views_of

LONE, REGION = "pasar-terong", "Sulawesi Selatan"  # no other market of Sulawesi Selatan reports here
KEY = (LONE, "cabai-merah", "", "kg")
FIRST = day_number("2025-03-03")
CALM = 12  # reports before the step
EVERY = 3  # the market reports every third day, so a run of three held days spans a week
LAST = CALM + 8
# The last two days are read again from the log at a restart (and two before them judged again for the validator):
# the run's first held day and the days the level was taken on are loaded as the stored days left them.
CONFIG = MarketConfig(raw_days=2)
WHY = "level held on 3 reported days with no nearby market to compare"


def report_time(k: int) -> int:
    return (FIRST + EVERY * k) * DAY_S - WIB_OFFSET_S + 9 * 3600


def price(k: int) -> int:
    calm = 40_000 + (k * 7919 % 5) * 200
    return calm if k < CALM else int(round(calm * 1.4, -2))  # up 40 % for good


class Reporter:
    """The market's device, enrolled in every hub given, each record signed once and pushed to all of them."""

    def __init__(self, hubs: list[Hub], clock: Clock) -> None:
        signer = Ed25519Signer.from_seed(LONE.encode().ljust(32, b"."))
        self.time = 0
        self.builder = ChainBuilder(signer, clock=lambda: self.time, boot=1)
        self.device_id = {enroll(h, signer, clock, site=LONE, role="market") for h in hubs}.pop()  # its key's
        genesis = self.builder.genesis().raw
        for h in hubs:
            assert h.ingest(self.device_id, [genesis]).accepted == 1

    def sign(self, k: int) -> bytes:
        self.time = report_time(k)
        return self.builder.append("price", {"market": LONE, "commodity": "cabai-merah", "unit": "kg",
                                             "price_idr": price(k), "reporter": "r1", "region": REGION}).raw


def judged(views: Views, ids: list[str]) -> dict[str, Any]:
    """What the hub decided: each of these observations' verdict (held or accepted, why), the values waiting for an
    operator, and the history the series' next price is measured from."""
    m = views.markets
    with views.fresh():
        return {"verdicts": {oid: (m.observed[oid][1].status, m.observed[oid][1].summary) for oid in ids},
                "pending": sorted(e["observation"]["id"] for e in m.quarantined("pending")),
                "history": m.validator.history(KEY)}


def test_a_restarted_hub_judges_a_lone_markets_level_shift_as_the_one_that_did_not(stores, tmp_path: Path) -> None:
    clock = Clock(report_time(0) - DAY_S)
    key = Ed25519Signer.from_seed(b"\x74" * 32)
    reference = views_of(Hub(LmdbHubStore(tmp_path / "reference"), key, clock=clock),
                         LmdbAggregates(tmp_path / "reference-aggregates"), refill=False, config=CONFIG)
    store, aggregates = stores()
    views = views_of(Hub(store, key, clock=clock), aggregates, refill=False, config=CONFIG)
    device = Reporter([reference.hub, views.hub], clock)
    # Before the run's third held report (its first day loaded as stored, its second judged again), and before the
    # second report after the level was taken (the days it was taken on loaded as stored).
    restarts = {CALM + 2, CALM + 4}
    try:
        for k in range(LAST + 1):
            if k in restarts:
                clock.now = report_time(k) - DAY_S
                assert views.store_market_days() >= 1
                store.close()
                aggregates.close()
                store, aggregates = stores()
                views = views_of(Hub(store, key, clock=clock), aggregates, refill=True, config=CONFIG)
                views.refill_from_store()
                assert views.refilled.is_set() and views.markets.seam is None
                assert views.prices_fed < k  # the older days were loaded as stored, not read again
            raw = device.sign(k)
            clock.now = report_time(k) + 60
            for v in (reference, views):
                assert v.hub.ingest(device.device_id, [raw]).accepted == 1
            views.store_market_days()
            with views.fresh():
                ids = list(views.markets.observed)  # the days a restart reads again, and those since
            assert judged(views, ids) == judged(reference, ids), k
        # The reference took the step as a level shift after three reported days, and measures from the new level.
        m = reference.markets
        with reference.fresh():
            by_k = sorted(m.observed.values(), key=lambda ov: ov[0].time)
            assert [v.status for _, v in by_k] == ["accepted"] * (LAST + 1)
            assert all(WHY in v.summary for _, v in by_k[CALM:CALM + 3])
            assert all(v.summary == "accepted: no check fired" for _, v in by_k[CALM + 3:])
            assert m.quarantined("pending") == []
            assert sorted(m.validator.history(KEY)[-5:]) == sorted(float(price(k)) for k in range(LAST - 4, LAST + 1))
    finally:
        store.close()
        aggregates.close()
        reference.hub.store.close()
        if reference.aggregates is not None:
            reference.aggregates.close()
