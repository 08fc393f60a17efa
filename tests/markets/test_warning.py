"""Early warning: ALPS bands, FAO's IFPA, and alerts only when a band worsens."""

from __future__ import annotations

import numpy as np
import pytest

from hub.markets.calendar import day_number, in_holiday
from hub.markets.errors import BadSeries
from hub.markets.staleness import HeldRun
from hub.markets.warning import AlertTracker, alps, alps_band, ifpa, ifpa_class

FIRST = day_number("2024-05-06")


@pytest.mark.parametrize(("value", "band"), [(-3.0, "normal"), (0.2499, "normal"), (0.25, "stress"),
                                             (0.99, "stress"), (1.0, "alert"), (1.99, "alert"), (2.0, "crisis")])
def test_alps_band_edges(value: float, band: str) -> None:
    assert alps_band(value) == band


@pytest.mark.parametrize(("value", "cls"), [(1.0, "abnormally high"), (0.5, "moderately high"),
                                            (0.49, "normal"), (-0.6, "moderately low"), (-1.0, "abnormally low")])
def test_ifpa_classes(value: float, cls: str) -> None:
    assert ifpa_class(value) == cls


def _daily(n: int = 280, seed: int = 2) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 20_000 * (1 + 0.0004 * np.arange(n)) * np.exp(rng.normal(0, 0.01, n))


def test_alps_band_follows_the_gap_to_the_trend() -> None:
    base = _daily()
    ref = alps(base, first_day=FIRST)
    # The trend and sigma are fitted on the earlier weeks only, so moving the last week moves ALPS alone.
    for target, band in ((0.1, "normal"), (0.6, "stress"), (1.5, "alert"), (2.5, "crisis")):
        v = base.copy()
        v[-7:] += (target - ref.value) * ref.sigma
        got = alps(v, first_day=FIRST)
        assert got.value == pytest.approx(target, abs=1e-6)
        assert got.band == band
        assert got.sigma == pytest.approx(ref.sigma) and got.trend == pytest.approx(ref.trend)
    assert ref.periods == 39 and "residual sd" in ref.explanation


def test_alps_needs_history() -> None:
    with pytest.raises(BadSeries, match="ALPS: expected at least"):
        alps(_daily(30), first_day=FIRST)


def test_ifpa_flags_an_abnormal_month() -> None:
    rng = np.random.default_rng(0)
    monthly = 10_000 * np.exp(np.cumsum(rng.normal(0.003, 0.01, 48)))
    normal = ifpa(monthly)
    spiked = monthly.copy()
    spiked[-1] *= 1.25
    high = ifpa(spiked)
    assert high.value > normal.value and high.cls == "abnormally high"
    assert high.years == 2 and "0.4 zQ + 0.6 zA" in high.explanation
    with pytest.raises(BadSeries):
        ifpa(monthly[:30])


def test_alerts_only_when_the_band_worsens() -> None:
    t = AlertTracker()
    kw = {"market": "pasar-senen", "commodity": "cabai-merah", "region": "DKI Jakarta", "indicator": "ALPS",
          "value": 1.0, "price_idr": 50_000}
    assert t.update(band="normal", day=1, **kw) is None
    a = t.update(band="alert", day=2, **kw)
    assert a is not None and (a.previous, a.band) == ("normal", "alert")
    assert t.update(band="alert", day=3, **kw) is None  # still in alert: no new page
    assert t.update(band="stress", day=4, **kw) is None  # easing is not an alert
    b = t.update(band="crisis", day=5, **kw)
    assert b is not None and b.previous == "stress" and b.id != a.id
    assert [x.band for x in t.live_alerts()] == ["crisis"]
    t.update(band="normal", day=6, **kw)
    assert t.live_alerts() == []


def test_a_live_alert_says_whether_its_series_is_held_now() -> None:
    # Raised while a report after its day waited in quarantine; judged again on the same day and band once an
    # operator decided it: the live alert no longer says a report is waiting, and keeps the band it came from.
    t = AlertTracker()
    kw = {"market": "pasar-kosambi", "commodity": "cabai-merah", "region": "Jawa Barat", "indicator": "ALPS",
          "value": 0.9, "price_idr": 43_500, "band": "stress", "day": 10}
    a = t.update(held=HeldRun(first_day=11, last_day=11, days=1, reports=1), **kw)
    assert a is not None and a.held and "held in quarantine" in a.message
    assert t.update(**kw) is None  # no new page
    [live] = t.live_alerts()
    assert live.id == a.id and (live.previous, live.band) == ("normal", "stress")
    assert not live.held and "held in quarantine" not in live.message and "normal -> stress" in live.message


def _sticky(first: str, last: str, seed: int, lift: float = 0.0) -> tuple[int, np.ndarray]:
    """Daily rice prices between two dates: Rp 13.600 moving by a tick or two now and then, and up by `lift`
    over every Ramadan and Lebaran in the span."""
    rng = np.random.default_rng(seed)
    lo, hi = day_number(first), day_number(last)
    walk = 13_600 * np.exp(np.cumsum(np.where(rng.random(hi - lo + 1) < 0.12, rng.normal(0, 0.006, hi - lo + 1), 0)))
    feast = np.array([1 + lift * (in_holiday("ramadan", d) or in_holiday("lebaran", d)) for d in range(lo, hi + 1)])
    return lo, np.round(walk * feast / 100) * 100


def test_the_first_week_of_ramadan_is_not_a_crisis_for_a_price_that_did_not_move() -> None:
    # Four months of history and Ramadan 2025 began on 1 March: the week to 8 March holds the first full
    # Ramadan week and the one before it a single day, too little to learn what Ramadan does to a price.
    for seed in range(5):
        lo, v = _sticky("2024-11-01", "2025-03-08", seed)
        got = alps(v, first_day=lo)
        assert got.band in ("normal", "stress"), (seed, got.explanation)
        assert "no earlier Ramadan/Lebaran" in got.explanation


def test_an_earlier_years_ramadan_teaches_the_holiday_term() -> None:
    lo, v = _sticky("2024-01-01", "2025-03-15", 1, lift=0.06)
    got = alps(v, first_day=lo)
    assert "learned from an earlier year" in got.explanation
    assert got.band in ("normal", "stress"), got.explanation  # a rise like last year's is the season
