"""Impact is maintained as prices arrive: a live subscriber costs little, and the kept parts give the same
answer as a computation from scratch."""

from __future__ import annotations

import time

import numpy as np
import pytest

from hub.markets.calendar import day_number
from hub.markets.catalog import COMMODITIES_BY_ID
from hub.markets.impact import impact
from hub.markets.model import DAY_S, WIB_OFFSET_S, PriceObservation
from hub.markets.service import MarketService

SERIES = [(m, c) for m in ("pasar-senen", "pasar-kramat-jati")
          for c in ("cabai-merah", "beras-medium", "telur-ayam", "bawang-merah", "gula-pasir")]


def observations(n: int = 2000, seed: int = 1) -> list[PriceObservation]:
    """Ten series, four reporters each at different hours, 50 days: prices drifting with quoting noise."""
    rng = np.random.default_rng(seed)
    first = day_number("2024-07-01")
    level = {s: float(COMMODITIES_BY_ID[s[1]].base_idr) for s in SERIES}
    out: list[PriceObservation] = []
    day = 0
    while len(out) < n:
        for s in SERIES:
            c = COMMODITIES_BY_ID[s[1]]
            level[s] *= float(np.exp(rng.normal(0, 0.005)))
            for r in range(4):
                t = (first + day) * DAY_S - WIB_OFFSET_S + 7 * 3600 + r * 1800
                price = int(round(level[s] * (1 + rng.normal(0, 0.003)) / c.tick_idr) * c.tick_idr)
                out.append(PriceObservation(id=f"i{len(out)}", market=s[0], region="DKI Jakarta", commodity=s[1],
                                            grade=c.grade, unit=c.unit, price_idr=price, time=t, arrived_at=t + 60,
                                            reporter=f"{s[0]}-r{r}"))
        day += 1
    return out[:n]


def ingest(obs: list[PriceObservation], *, live: bool) -> tuple[float, MarketService, list[dict]]:
    svc = MarketService()
    updates: list[dict] = []
    if live:
        svc.subscribe(updates.append)
    t0 = time.process_time()
    for o in obs:
        svc.add_observation(o)
    return time.process_time() - t0, svc, updates


def test_a_live_subscriber_costs_at_most_half_again() -> None:
    obs = observations()
    # Best of three runs each, interleaved in the same process so both see the same machine load: the
    # ratio is what is asserted.
    plain, live = [], []
    for _ in range(3):
        plain.append(ingest(obs, live=False)[0])
        live.append(ingest(obs, live=True))
    without, with_live = min(plain), min(r[0] for r in live)
    updates = live[0][2]
    assert len(updates) == 2000 and sum(1 for u in updates if u["impact"]) >= 500
    assert with_live <= 1.5 * without, (with_live, without)


def test_kept_parts_give_the_same_impact_as_from_scratch() -> None:
    _, svc, updates = ingest(observations(1800), live=True)
    last = [u for u in updates if u["impact"]][-1]
    key = next(k for k in svc._prices if k[0] == last["observation"]["market"]
               and k[1] == last["observation"]["commodity"])
    fresh = impact(svc._impact_inputs(key), config=svc.config.impact).to_dict()
    kept = svc._live_impact(key).to_dict()
    assert kept["score"] == fresh["score"] and kept["statement"] == fresh["statement"]
    assert kept["weights"] == pytest.approx(fresh["weights"])
