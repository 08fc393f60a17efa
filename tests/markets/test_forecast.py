"""Forecasts: each model, intervals, backtest choice never worse than seasonal naive, and cross-checks
against statsmodels."""

from __future__ import annotations

import math

import numpy as np
import pytest
from statsmodels.tsa.ar_model import AutoReg
from statsmodels.tsa.holtwinters import SimpleExpSmoothing

from hub.markets.errors import BadSeries
from hub.markets.forecast import (
    BOUNDS80,
    BOUNDS95,
    CALIBRATION_DAYS,
    MIN_DAYS,
    MIN_SCORES,
    MODELS,
    SELECTION_MARGIN,
    Z80,
    Z95,
    _spread,
    ar_fit,
    arima,
    calibrate,
    ets,
    fill_gaps,
    forecast,
    forecast_many,
    naive,
    ses_filter,
    snaive,
    theta,
)


def _series(n: int = 200, seed: int = 0, weekly: float = 0.03) -> np.ndarray:
    rng = np.random.default_rng(seed)
    walk = np.cumsum(rng.normal(0, 0.01, n))
    week = weekly * np.where(np.arange(n) % 7 >= 5, 1.0, -0.4)
    return 30_000 * np.exp(walk + week + rng.normal(0, 0.005, n))


def test_forecast_has_seven_days_with_nested_intervals() -> None:
    f = forecast(_series(), first_day=19_000)
    assert len(f.point) == 7 and f.first_day == 19_200
    for lo95, lo80, p, hi80, hi95 in zip(f.lo95, f.lo80, f.point, f.hi80, f.hi95, strict=True):
        assert lo95 < lo80 < p < hi80 < hi95
    d = f.to_dict()
    assert d["model"] in MODELS and set(d["backtest"]) == set(MODELS) and d["confidence"] in ("high", "medium", "low")


def test_choice_is_never_worse_than_either_naive_forecast_on_the_backtest() -> None:
    Y = np.stack([_series(seed=s, weekly=w) for s, w in zip(range(12), [0.0, 0.05] * 6, strict=True)])
    for f in forecast_many(Y):
        assert f.backtest[f.model].mase <= f.backtest["naive"].mase
        assert f.backtest[f.model].mase <= f.backtest["snaive"].mase / SELECTION_MARGIN
        best = min(s.mase for s in f.backtest.values())
        assert f.backtest[f.model].mase == best or f.model == "naive"
        d = f.to_dict()
        assert d["mase"] == round(f.backtest[f.model].mase, 4) and set(d["baselines"]) == {"naive", "snaive"}


def test_sticky_prices_are_forecast_by_the_last_value() -> None:
    # A price that stays put for days and then steps: nothing beats the last value, and it is chosen.
    y = np.repeat([12_000.0, 12_500.0, 12_500.0, 13_000.0, 13_000.0, 13_000.0, 12_800.0], 10)
    f = forecast(y)
    assert f.model == "naive" and f.point == pytest.approx((12_800.0,) * 7)
    assert f.confidence == "high" and "last value" in f.explanation


def test_a_price_that_never_moved_lies_inside_its_intervals() -> None:
    # The interval has zero width; every backtest actual is on it, so the 80 % coverage is 1, not 0.
    f = forecast(np.full(40, 12_000.0))
    assert f.point == pytest.approx((12_000.0,) * 7)
    assert {name: s.coverage80 for name, s in f.backtest.items()} == {name: 1.0 for name in f.backtest}
    assert f.to_dict()["backtest"]["naive"] == {"mase": 0.0, "smape": 0.0, "coverage80": 1.0}


def test_weekly_pattern_is_forecast() -> None:
    y = 20_000 * np.exp(0.05 * np.where(np.arange(210) % 7 >= 5, 1.0, 0.0))
    f = forecast(y)
    weekend = [p for i, p in enumerate(f.point) if (210 + i) % 7 >= 5]
    weekday = [p for i, p in enumerate(f.point) if (210 + i) % 7 < 5]
    assert min(weekend) > max(weekday)


def test_short_histories_from_two_weeks() -> None:
    with pytest.raises(BadSeries, match="expected at least 14 days"):
        forecast(_series(13))
    f = forecast(_series(14))
    assert f.origins == 1 and set(f.backtest) == {"naive", "snaive"} and f.confidence != "high"
    f = forecast(_series(28))
    assert f.origins == 2 and "ets" in f.backtest and len(f.point) == 7


def test_bad_series_are_refused() -> None:
    with pytest.raises(BadSeries, match="positive"):
        forecast(np.r_[_series(100), -1.0])


def test_gaps_are_filled_forward() -> None:
    assert fill_gaps(np.array([np.nan, 2.0, np.nan, 4.0])).tolist() == [[2.0, 2.0, 2.0, 4.0]]


def test_ses_matches_statsmodels() -> None:
    z = np.log(_series(120))
    lvl, _ = ses_filter(z[None, :], np.array([0.3]))
    sm = SimpleExpSmoothing(z, initialization_method="known", initial_level=z[0]).fit(
        smoothing_level=0.3, optimized=False)
    assert lvl[0, 0] == pytest.approx(sm.forecast(1)[0], rel=1e-10)


def test_ar_on_differences_matches_statsmodels_autoreg() -> None:
    d = np.diff(np.log(_series(150, seed=4)))
    coef, _, _ = ar_fit(d[None, :], 2)
    sm = AutoReg(d, lags=2, trend="c").fit()
    assert coef[0] == pytest.approx(sm.params, rel=1e-6, abs=1e-10)


def _calibrate_by_origin(L: np.ndarray, seen: np.ndarray, chosen: list[str],
                         first_day: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The calibration written the plain way: each series' chosen model fitted afresh on a copy of the days
    before each origin, and each horizon's scores sorted on their own."""
    fit = {"naive": naive, "snaive": snaive, "ets": ets, "theta": theta, "arima": arima}
    n, T = L.shape
    origins = range(max(MIN_DAYS, T - CALIBRATION_DAYS), T)
    q80, q95, used = np.full((n, 7), Z80), np.full((n, 7), Z95), np.zeros(n, dtype=int)
    for i, name in enumerate(chosen):
        err = np.full((len(origins), 7), np.nan)
        for k, o in enumerate(origins):
            train = L[i:i + 1, :o].copy()
            parts = [fit[p](train, 7, 7) for p in (("ets", "theta", "arima") if name == "combo" else (name,))]
            mu = np.mean([p.mean for p in parts], axis=0)[0]
            spread = _spread(np.mean([p.sd for p in parts], axis=0), first_day + o)[0]
            for j in range(min(7, T - o)):
                if seen[i, o + j]:
                    err[k, j] = abs(L[i, o + j] - mu[j]) / spread[j]
        for j in range(7):
            s = np.sort(err[:, j][~np.isnan(err[:, j])])
            if len(s) >= MIN_SCORES:
                used[i] = len(origins)
                q80[i, j] = s[min(len(s), math.ceil(0.80 * (len(s) + 1))) - 1]
                q95[i, j] = s[min(len(s), math.ceil(0.95 * (len(s) + 1))) - 1]
    q80 = np.clip(q80, BOUNDS80[0] * Z80, BOUNDS80[1] * Z80)
    q95 = np.maximum(np.clip(q95, BOUNDS95[0] * Z95, BOUNDS95[1] * Z95), q80 * (Z95 / Z80))
    return q80, q95, used


@pytest.mark.parametrize("days", [40, 120])
def test_calibration_fitted_once_for_all_origins_equals_a_fit_per_origin(days: int) -> None:
    # Every model, over Ramadan and Lebaran (the spread widens on some origins' days and not others'), with
    # missing days, a spike and a price that sticks; 40 days leaves 26 origins, fewer than 20 scores at
    # the longer horizons.
    values = np.stack([_series(days, seed=s, weekly=w) for s, w in zip(range(12), [0.0, 0.05] * 6, strict=True)])
    values[1, days // 2:days // 2 + 10] *= np.exp(0.06 * np.arange(10))
    values[2] = np.round(values[2], -3)
    values[np.random.default_rng(9).random(values.shape) < 0.12] = np.nan
    values[:, 0] = 30_000.0
    L, seen = np.log(fill_gaps(values)), ~np.isnan(values)
    chosen = [MODELS[i % len(MODELS)] for i in range(len(values))]
    q80, q95, used = calibrate(L, seen, chosen, horizon=7, season=7, first_day=18_300)
    r80, r95, r_used = _calibrate_by_origin(L, seen, chosen, first_day=18_300)
    assert used.tolist() == r_used.tolist()
    assert q80 == pytest.approx(r80, rel=1e-12, abs=0) and q95 == pytest.approx(r95, rel=1e-12, abs=0)
    # The comparison means something: the multipliers moved from the normal ones, both ways.
    assert (q80 < Z80).any() and (q80 > Z80).any() and (q95 > Z95).any() and (used > 0).all()
