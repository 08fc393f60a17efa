"""The service the hub's HTTP API calls, end to end: records in, prices, impact, forecasts, alerts,
quarantine decisions and the stream out."""

from __future__ import annotations

import dataclasses

import pytest

from hub.markets.catalog import COMMODITIES_BY_ID, MARKETS_BY_ID
from hub.markets.errors import NotFound
from hub.markets.model import DAY_S, WIB_OFFSET_S
from hub.markets.service import MarketService
from hub.markets.synth import SynthConfig, SynthData, generate
from ledger.chain import ChainBuilder
from ledger.cose import Ed25519Signer

MARKETS = tuple(MARKETS_BY_ID[m] for m in ("pasar-kramat-jati", "pasar-senen", "pasar-minggu"))
COMMODITIES = tuple(COMMODITIES_BY_ID[c] for c in ("cabai-merah", "beras-medium"))


@pytest.fixture(scope="module")
def data() -> SynthData:
    return generate(SynthConfig(seed=9, days=100, markets=MARKETS, commodities=COMMODITIES))


@pytest.fixture(scope="module")
def service(data: SynthData) -> MarketService:
    svc = MarketService(clock=lambda: 1_720_000_000)
    for r in data.sensor_readings():
        svc.add_reading(r)
    for n in data.notes:
        svc.add_note(n)
    for o in sorted(data.observations(), key=lambda o: o.arrived_at):
        svc.add_observation(o)
    return svc


def test_live_prices_and_history(service: MarketService, data: SynthData) -> None:
    live = service.live_prices("cabai-merah")
    assert {p["market"] for p in live} == {m.id for m in MARKETS}
    p = next(x for x in live if x["market"] == "pasar-senen")
    assert p["latitude"] == MARKETS_BY_ID["pasar-senen"].latitude and p["price_idr"] > 0 and p["reports"] >= 2
    hist = service.history("cabai-merah", "pasar-senen")
    assert len(hist) >= 95 and hist[0]["day"] == data.first_day
    assert all(h["min_idr"] <= h["price_idr"] <= h["max_idr"] for h in hist)
    with pytest.raises(NotFound):
        service.history("durian", "pasar-senen")


def test_quarantine_holds_the_manipulated(service: MarketService, data: SynthData) -> None:
    held = {e["observation"]["id"] for e in service.quarantined()}
    bad = {data.batch.ids[i] for i in range(len(data.batch)) if data.label[i]}
    assert len(held & bad) >= 0.9 * len(bad)
    assert len(held - bad) <= 0.02 * (len(data.batch) - len(bad))


def test_impact_and_forecast(service: MarketService) -> None:
    imp = service.impact("cabai-merah", "pasar-senen")
    assert 0 <= imp["score"] <= 100 and abs(sum(imp["weights"].values()) - 1) < 1e-3
    assert imp["dominant"] in (*imp["weights"], "none") and "ridge regression" in imp["statement"]
    weather = next(f for f in imp["factors"] if f["factor"] == "weather")
    assert weather["assessed"]  # the market's sensor readings fed it
    fc = service.forecast("cabai-merah", "pasar-senen")
    assert len(fc["points"]) == 7 and fc["points"][0]["date"] and fc["confidence"] in ("high", "medium", "low")
    assert fc["backtest"][fc["model"]]["mase"] <= fc["backtest"]["snaive"]["mase"]


def test_early_warning_raises_once_per_worsening() -> None:
    calm = generate(SynthConfig(seed=9, start="2024-06-01", days=100, markets=MARKETS[:1],
                                commodities=COMMODITIES[:1], manipulation_rate=0.0, shocks_per_year=0.0))
    svc = MarketService()
    obs = sorted(calm.observations(), key=lambda o: o.arrived_at)
    cut = (calm.first_day + 93) * DAY_S - WIB_OFFSET_S
    for o in obs:
        if o.time < cut:
            svc.add_observation(o)
    svc.early_warning()
    before = {a["series"]: a["band"] for a in svc.live_alerts()}
    assert before.get("pasar-kramat-jati/cabai-merah", "normal") != "crisis"
    # The last week's prices jump 60 % at every reporter: the market really moved.
    for o in obs:
        if o.time >= cut:
            svc.add_observation(dataclasses.replace(o, price_idr=int(o.price_idr * 1.6)))
    raised = svc.early_warning()
    assert [(a.series, a.indicator, a.band) for a in raised] == [("pasar-kramat-jati/cabai-merah", "ALPS", "crisis")]
    assert raised[0].previous == before.get("pasar-kramat-jati/cabai-merah", "normal")
    assert svc.early_warning() == []  # still in crisis: nobody is paged twice
    assert svc.live_alerts()[0]["band"] == "crisis"


def test_records_stream_and_operator_release() -> None:
    svc = MarketService()
    updates: list[dict] = []
    unsubscribe = svc.subscribe(updates.append)
    builder = ChainBuilder(Ed25519Signer.from_seed(b"\x07" * 32), clock=lambda: 0, boot=1)
    builder.genesis()
    day0 = 19_900
    last = None
    for d in range(45):
        t = (day0 + d) * DAY_S - WIB_OFFSET_S + 9 * 3600
        builder = ChainBuilder(Ed25519Signer.from_seed(b"\x07" * 32), clock=lambda t=t: t, boot=1,
                               state=builder.state)
        for rep, price in (("a", 40_000), ("b", 40_500), ("c", 39_500)):
            rec = builder.append("price", {"market": "pasar-senen", "commodity": "cabai-merah", "unit": "kg",
                                           "price_idr": price + 100 * (d % 3), "reporter": rep,
                                           "region": "DKI Jakarta"})
            last = svc.ingest(rec, t + 30)
    assert last is not None and last["status"] == "accepted"
    assert len(updates) == 135 and updates[-1]["impact"] is not None and updates[0]["impact"] is None
    t = (day0 + 45) * DAY_S - WIB_OFFSET_S + 9 * 3600
    builder = ChainBuilder(Ed25519Signer.from_seed(b"\x07" * 32), clock=lambda: t, boot=1, state=builder.state)
    rec = builder.append("price", {"market": "pasar-senen", "commodity": "cabai-merah", "unit": "kg",
                                   "price_idr": 400_000, "reporter": "a", "region": "DKI Jakarta"})
    verdict = svc.ingest(rec, t + 30)
    assert verdict["status"] == "quarantined" and updates[-1]["verdict"] == "quarantined"
    assert svc.live_prices("cabai-merah")[0]["day"] == day0 + 44  # the held value is not a live price
    decision = svc.decide(rec.id.hex(), "release", by="op-sari", why="verified at the stall")
    assert decision["to"] == "released"
    assert svc.live_prices("cabai-merah")[0]["price_idr"] == 400_000
    assert [d["by"] for d in svc.audit(rec.id.hex())] == ["op-sari"]
    unsubscribe()
    svc.ingest(rec, t + 31)
    assert len(updates) == 136


def test_a_series_whose_one_price_is_taken_back_breaks_no_answer() -> None:
    # A new market's first price is held, an operator releases it, then reopens it: its day is left with no
    # accepted price. Every answer that reads the series' prices goes on, without it (a ValueError before).
    svc = MarketService()
    t = 19_945 * DAY_S - WIB_OFFSET_S + 9 * 3600
    builder = ChainBuilder(Ed25519Signer.from_seed(b"\x08" * 32), clock=lambda: t, boot=1)
    builder.genesis()
    rec = builder.append("price", {"market": "pasar-senen", "commodity": "cabai-merah", "unit": "kg",
                                   "price_idr": 400_000, "reporter": "a", "region": "DKI Jakarta"})
    assert svc.ingest(rec, t + 30)["status"] == "quarantined"
    assert svc.decide(rec.id.hex(), "release", by="op-sari", why="verified at the stall")["to"] == "released"
    assert [p["price_idr"] for p in svc.live_prices()] == [400_000]
    assert svc.decide(rec.id.hex(), "reopen", by="op-sari", why="wrong stall")["to"] == "pending"
    assert svc.live_prices() == [] and svc.bands() == [] and svc.map_series() == ([], [])
    assert svc.early_warning() == []
    with pytest.raises(NotFound):
        svc.forecast("cabai-merah", "pasar-senen")
