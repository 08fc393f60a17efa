"""Seven-day price forecasts with prediction intervals: the last value, seasonal naive, ETS, Theta, ARIMA
and their combination, chosen per series by a rolling-origin backtest (MASE, sMAPE), so never worse on it
than either naive baseline; histories from 14 days get the models their length allows. Models run on log prices and on many series at once (numpy), so a thousand series with
backtests take seconds, not the hours that one statsmodels fit per series and origin would. The intervals are
calibrated on each series' own past forecast errors (conformal prediction), so the 80 % one holds about 80 % of
what comes."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from coap_server.wording import count

from .calendar import holidays_on
from .errors import BadSeries

MODELS = ("naive", "snaive", "ets", "theta", "arima", "combo")
BASELINES = ("naive", "snaive")  # always candidates, and shown beside every choice
MIN_DAYS = 14
SELECTION_MARGIN = 0.75
# Days of training each model needs (season 7): a model joins the candidates only when every backtest
# origin gives it that much.
_NEEDS = {"naive": 2, "snaive": 8, "ets": 14, "theta": 14, "arima": 12, "combo": 14}
Z80, Z95 = 1.2815516, 1.9599640
# The least spread a forecast claims, a day, in log terms: a price that did not move in its whole window still
# moves by a trader's tick or two (Rp 500 on eggs is 1.8 %), and an interval of zero width says it cannot.
SD_FLOOR = 0.005
RECENT_DAYS = 28
# Added to the spread a day, in log terms, for each forecast day in Ramadan, Lebaran or Nataru: prices trend
# then (shallots, eggs and chicken rise 12-18 % over the three weeks to Idul Fitri), and a history that ends
# before the trend starts does not show it. Measured on tests/markets/pasar.py before calibration, the 95 %
# interval held 88.6 % of the next week's prices without it and 91.8 % with it, 6 % wider on average.
FEAST_SD = 0.01
FEASTS = frozenset({"ramadan", "lebaran", "nataru"})
# Conformal calibration of the intervals (see calibrate): the origins of the last eight weeks, at least 20
# scores a horizon, and how far the calibration may move each level's multiplier from the normal one (80 %: half
# to one and a half times; 95 %: up to one and a half times, never narrower).
CALIBRATION_DAYS = 56
MIN_SCORES = 20
BOUNDS80 = (0.5, 1.5)
BOUNDS95 = (1.0, 1.5)

# ETS(A,Ad,A) on log prices: the grid every series is fitted over (alpha, beta, phi, gamma).
_ETS_GRID = np.array([(a, b, phi, g)
                      for a in (0.1, 0.3, 0.6, 0.9)
                      for b, phi in ((0.0, 1.0), (0.03, 0.9))
                      for g in (0.0, 0.1)])
_SES_ALPHAS = np.array([0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 0.99])
_AR_ORDERS = (1, 2, 3)


@dataclass(frozen=True, slots=True)
class _Fc:
    mean: np.ndarray  # (n, h) log-price forecast
    sd: np.ndarray  # (n, h) forecast standard deviation in log terms
    detail: list[str] = field(default_factory=list)  # per series: fitted parameters


def fill_gaps(values: np.ndarray) -> np.ndarray:
    """Carry the last price forward over missing days (NaN), and the first one backward."""
    v = np.array(values, dtype=float)
    if v.ndim == 1:
        v = v[None, :]
    for row in v:
        ok = ~np.isnan(row)
        if not ok.any():
            raise BadSeries("series: expected at least one price, got none")
        idx = np.where(ok, np.arange(len(row)), 0)
        np.maximum.accumulate(idx, out=idx)
        row[:] = row[idx]
        first = int(np.argmax(ok))
        row[:first] = row[first]
    return v


def naive(L: np.ndarray, h: int, m: int) -> _Fc:
    """The last value repeated: the forecast every other model must beat on sticky prices."""
    del m
    return naive_at(L, h, (L.shape[1],))[0]


def naive_at(L: np.ndarray, h: int, origins: Sequence[int]) -> list[_Fc]:
    """naive fitted on the days before each origin, L[:, :o]: each j-day change is taken once for all of
    them, and each origin averages its own part."""
    n, T = L.shape
    j = np.arange(1, h + 1)
    sd = np.full((len(origins), n, h), np.nan)
    for k in j[j < T]:
        changes = (L[:, k:] - L[:, :-k]) ** 2
        for i, o in enumerate(origins):
            if k >= o:
                continue
            seen = np.sqrt(np.mean(changes[:, :o - k], axis=1))
            if k == 1:
                sd[i] = seen[:, None] * np.sqrt(j)[None, :]
            # Prices move in runs (a chilli spike rises for weeks, Lebaran for three), so a week's change is
            # wider than seven independent days' would be: where the history holds them, the j-day changes
            # it saw set the j-day spread as well. The last four weeks count on their own as well: a price in
            # the middle of a spike moves as it has lately.
            recent = max(o - RECENT_DAYS, 0)
            if k < o - recent:
                seen = np.maximum(seen, np.sqrt(np.mean(changes[:, recent:o - k], axis=1)))
            sd[i, :, k - 1] = np.maximum(sd[i, :, k - 1], seen)
    return [_Fc(np.repeat(L[:, o - 1:o], h, axis=1), np.maximum.accumulate(sd[i], axis=1), ["last value"] * n)
            for i, o in enumerate(origins)]


def snaive(L: np.ndarray, h: int, m: int) -> _Fc:
    n, T = L.shape
    j = np.arange(h)
    mean = L[:, T - m + (j % m)]
    e = L[:, m:] - L[:, :-m] if m < T else np.diff(L, axis=1)
    sd = np.sqrt(np.mean(e**2, axis=1))[:, None] * np.sqrt(j // m + 1)[None, :]
    return _Fc(mean, sd, [f"m={m}"] * n)


def ets(L: np.ndarray, h: int, m: int) -> _Fc:
    """ETS(A,Ad,A) (additive error, damped trend, additive season) on each row, parameters picked from a
    grid by the one-step sum of squared errors."""
    return ets_at(L, h, m, (L.shape[1],))[0]


def ets_at(L: np.ndarray, h: int, m: int, origins: Sequence[int]) -> list[_Fc]:
    """ets fitted on the days before each origin (ascending, each at least m), L[:, :o], in one run of the
    filter: what it holds after day o - 1 is what a fit on those days ends with."""
    n, _T = L.shape
    K = len(_ETS_GRID)
    a, b, phi, g = (_ETS_GRID[:, i][None, :] for i in range(4))
    lvl = np.repeat(L[:, :m].mean(axis=1, keepdims=True), K, axis=1)
    trd = np.zeros((n, K))
    season = np.repeat((L[:, :m] - L[:, :m].mean(axis=1, keepdims=True))[:, None, :], K, axis=1)
    sse = np.zeros((n, K))
    out = []
    stops = set(origins)
    for t in range(max(origins)):
        k = t % m
        fit = lvl + phi * trd + season[:, :, k]
        e = L[:, t][:, None] - fit
        if t >= m:
            sse += e * e
        lvl = lvl + phi * trd + a * e
        trd = phi * trd + b * e
        season[:, :, k] += g * e
        if t + 1 in stops:
            out.append(_ets_forecast(lvl, trd, season, sse, t + 1, h, m))
    return out


def _ets_forecast(lvl: np.ndarray, trd: np.ndarray, season: np.ndarray, sse: np.ndarray, T: int, h: int,
                  m: int) -> _Fc:
    """The h days after day T - 1 from the filter's state then, each row with its best parameters."""
    n = lvl.shape[0]
    best = np.argmin(sse, axis=1)
    r = np.arange(n)
    lv, tr, se = lvl[r, best], trd[r, best], season[r, best]
    pa, pb, pphi, pg = (_ETS_GRID[best, i] for i in range(4))
    sigma = np.sqrt(sse[r, best] / max(T - m, 1))
    mean = np.empty((n, h))
    var = np.empty((n, h))
    damp = np.zeros(n)
    csum = np.zeros(n)
    for j in range(1, h + 1):
        damp = damp + pphi**j
        mean[:, j - 1] = lv + damp * tr + se[:, (T + j - 1) % m]
        var[:, j - 1] = sigma**2 * (1 + csum)
        # c_j = alpha + beta * (phi + ... + phi^j) + gamma * [j is a whole season]: the weight of an
        # innovation j steps back in the h-step error (Hyndman and Athanasopoulos, table of ETS variances).
        c = pa + pb * damp + pg * (j % m == 0)
        csum = csum + c**2
    detail = [f"alpha={x:g} beta={y:g} phi={p:g} gamma={z:g}" for x, y, p, z in zip(pa, pb, pphi, pg, strict=True)]
    return _Fc(mean, np.sqrt(var), detail)


def seasonal_indices(L: np.ndarray, m: int) -> np.ndarray:
    """Classical additive decomposition: mean deviation from a centred moving average per season
    position, centred to sum to 0. Row i's index for time t is out[i, t % m]."""
    _n, T = L.shape
    kernel = np.ones(m) / m if m % 2 else np.r_[0.5, np.ones(m - 1), 0.5] / m
    half = len(kernel) // 2
    trend = np.array([np.convolve(row, kernel, "valid") for row in L])
    dev = L[:, half:T - half] - trend
    pos = (np.arange(half, T - half)) % m
    idx = np.stack([dev[:, pos == k].mean(axis=1) for k in range(m)], axis=1)
    return idx - idx.mean(axis=1, keepdims=True)


def ses_filter(z: np.ndarray, alphas: np.ndarray, season: np.ndarray | None = None,
               ends: Sequence[int] = ()) -> tuple[np.ndarray, np.ndarray]:
    """Simple exponential smoothing of each row for each alpha: final levels (n, A) and one-step SSE (n, A).
    The level starts at the first value. Given `season` (O, n, m) and `ends` (O,), what is smoothed is O
    seasonally adjusted copies of the rows, copy o being z[:, t] - season[o, :, t % m] up to day ends[o] - 1,
    all in one pass; levels and SSE are then (O, n, A)."""
    if season is None:
        lvl, sse = ses_filter(z, alphas, np.zeros((1, z.shape[0], 1)), (z.shape[1],))
        return lvl[0], sse[0]
    m = season.shape[2]
    stop = np.asarray(ends)[:, None, None]
    lvl = np.repeat((z[:, 0] - season[:, :, 0])[..., None], len(alphas), axis=2)
    sse = np.zeros_like(lvl)
    a = alphas[None, None, :]
    for t in range(1, int(stop.max())):
        e = (z[:, t] - season[:, :, t % m])[..., None] - lvl
        if t < stop.min():
            sse += e * e
            lvl = lvl + a * e
        else:
            live = t < stop
            sse += np.where(live, e * e, 0.0)
            lvl = np.where(live, lvl + a * e, lvl)
    return lvl, sse


def theta(L: np.ndarray, h: int, m: int) -> _Fc:
    """The Theta method (Assimakopoulos and Nikolopoulos) as Hyndman and Billah showed it to be: SES with
    drift of half the linear-trend slope, on seasonally adjusted data."""
    return theta_at(L, h, m, (L.shape[1],))[0]


def theta_at(L: np.ndarray, h: int, m: int, origins: Sequence[int]) -> list[_Fc]:
    """theta fitted on the days before each origin, L[:, :o]: each origin's own seasonal indices, and one
    pass of the smoothing for all of them."""
    s = np.stack([seasonal_indices(L[:, :o], m) for o in origins])
    lvl, sse = ses_filter(L, _SES_ALPHAS, s, origins)
    return [_theta_forecast(L[:, :o], s[k], lvl[k], sse[k], h, m) for k, o in enumerate(origins)]


def _theta_forecast(L: np.ndarray, s: np.ndarray, lvl: np.ndarray, sse: np.ndarray, h: int, m: int) -> _Fc:
    """The h days after L from its seasonal indices s and the smoothing's levels and SSE per alpha."""
    n, T = L.shape
    z = L - s[:, np.arange(T) % m]
    best = np.argmin(sse, axis=1)
    r = np.arange(n)
    alpha = _SES_ALPHAS[best]
    level = lvl[r, best]
    tt = np.arange(T) - (T - 1) / 2
    slope = (z - z.mean(axis=1, keepdims=True)) @ tt / (tt @ tt)
    sigma = np.sqrt(sse[r, best] / max(T - 1, 1))
    j = np.arange(1, h + 1)[None, :]
    drift = (slope / 2)[:, None] * ((j - 1) + 1 / alpha[:, None] - (1 - alpha[:, None]) ** T / alpha[:, None])
    mean = level[:, None] + drift + s[:, (T + j[0] - 1) % m]
    sd = sigma[:, None] * np.sqrt(1 + (j - 1) * alpha[:, None] ** 2)
    return _Fc(mean, sd, [f"alpha={x:g} slope={y:.5f}" for x, y in zip(alpha, slope, strict=True)])


def ar_fit(d: np.ndarray, p: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Least-squares AR(p) with intercept on each row of d: coefficients (n, p+1) [c, a1..ap], residual
    variance (n,), and the number of residuals."""
    n, N = d.shape
    rows = N - p
    X = np.ones((n, rows, p + 1))
    for k in range(1, p + 1):
        X[:, :, k] = d[:, p - k:N - k]
    y = d[:, p:]
    XtX = np.einsum("nij,nik->njk", X, X) + 1e-12 * np.eye(p + 1)
    Xty = np.einsum("nij,ni->nj", X, y)
    coef = np.linalg.solve(XtX, Xty[..., None])[..., 0]
    resid = y - np.einsum("nij,nj->ni", X, coef)
    return coef, np.mean(resid**2, axis=1), rows


def arima(L: np.ndarray, h: int, m: int) -> _Fc:
    """ARIMA(p,1,0) with drift on log prices, p in 1..3 chosen per series by AIC, fitted by conditional
    least squares."""
    del m
    n, _T = L.shape
    d = np.diff(L, axis=1)
    fits = [ar_fit(d, p) for p in _AR_ORDERS]
    aic = np.stack([rows * np.log(np.maximum(var, 1e-300)) + 2 * (p + 2)
                    for (coef, var, rows), p in zip(fits, _AR_ORDERS, strict=True)], axis=1)
    best = np.argmin(aic, axis=1)
    pmax = max(_AR_ORDERS)
    coef = np.zeros((n, pmax + 1))
    var = np.zeros(n)
    for k, (c, v, _) in enumerate(fits):
        sel = best == k
        coef[sel, : c.shape[1]] = c[sel]
        var[sel] = v[sel]
    hist = list(d[:, -pmax:].T[::-1])  # hist[0] = latest difference
    level = L[:, -1].copy()
    mean = np.empty((n, h))
    for j in range(h):
        nxt = coef[:, 0] + sum(coef[:, k] * hist[k - 1] for k in range(1, pmax + 1))
        hist.insert(0, nxt)
        level = level + nxt
        mean[:, j] = level
    # psi weights of the differences, summed into the weights of the level: var_h = s^2 sum (sum psi)^2.
    psi = [np.ones(n)]
    for j in range(1, h):
        psi.append(sum((coef[:, k] * psi[j - k] for k in range(1, pmax + 1) if j - k >= 0), np.zeros(n)))
    cum = np.cumsum(np.stack(psi, axis=1), axis=1)
    sd = np.sqrt(var[:, None] * np.cumsum(cum**2, axis=1))
    detail = [f"p={_AR_ORDERS[b]} drift={c[0]:.5f}" for b, c in zip(best, coef, strict=True)]
    return _Fc(mean, sd, detail)


def _combo(parts: Sequence[_Fc]) -> _Fc:
    mean = np.mean([p.mean for p in parts], axis=0)
    sd = np.mean([p.sd for p in parts], axis=0)
    return _Fc(mean, sd, ["mean of ets, theta, arima"] * mean.shape[0])


def _all_models(L: np.ndarray, h: int, m: int, models: Sequence[str] = MODELS) -> dict[str, _Fc]:
    return {k: v[0] for k, v in _models_at(L, h, m, models, (L.shape[1],)).items()}


def _models_at(L: np.ndarray, h: int, m: int, models: Sequence[str],
               origins: Sequence[int]) -> dict[str, list[_Fc]]:
    """Each of `models` fitted on the days before each origin (ascending), L[:, :o], as if on L[:, :o] alone:
    ets's and theta's filters run once for all the origins and naive takes the changes once, so an origin
    costs a forecast from a state, not a fit."""
    fit = {"naive": lambda: naive_at(L, h, origins), "snaive": lambda: [snaive(L[:, :o], h, m) for o in origins],
           "ets": lambda: ets_at(L, h, m, origins), "theta": lambda: theta_at(L, h, m, origins),
           "arima": lambda: [arima(L[:, :o], h, m) for o in origins]}
    out = {k: f() for k, f in fit.items() if k in models or (k in ("ets", "theta", "arima") and "combo" in models)}
    if "combo" in models:
        out["combo"] = [_combo(parts) for parts in zip(out["ets"], out["theta"], out["arima"], strict=True)]
    return {k: v for k, v in out.items() if k in models}


def candidates(train_days: int) -> tuple[str, ...]:
    """The models a training window of this many days can fit (the two baselines always)."""
    return tuple(k for k in MODELS if k in BASELINES or _NEEDS[k] <= train_days)


def _mase_scale(train: np.ndarray, m: int) -> np.ndarray:
    """MASE's scale: the in-sample mean absolute error of seasonal naive, or of the last value where the
    window holds less than two seasons; floored so a price that never moved does not divide by zero."""
    d = train[:, m:] - train[:, :-m] if train.shape[1] > 2 * m else np.diff(train, axis=1)
    scale = np.mean(np.abs(d), axis=1)
    return np.maximum(scale, 1e-3 * np.abs(train).mean(axis=1) + 1e-12)


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelScore:
    mase: float
    smape: float
    coverage80: float  # share of backtest actuals inside the 80 % interval

    def to_dict(self) -> dict[str, float | None]:
        return {"mase": _round(self.mase), "smape": _round(self.smape), "coverage80": _round(self.coverage80, 3)}


@dataclass(frozen=True, slots=True, kw_only=True)
class Forecast:
    model: str
    parameters: str
    first_day: int  # day number of the first forecast day
    point: tuple[float, ...]
    lo80: tuple[float, ...]
    hi80: tuple[float, ...]
    lo95: tuple[float, ...]
    hi95: tuple[float, ...]
    backtest: dict[str, ModelScore]
    origins: int
    confidence: str  # "high", "medium" or "low", from the chosen model's backtest MASE
    explanation: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model, "parameters": self.parameters, "confidence": self.confidence,
            "points": [{"day": self.first_day + i, "price_idr": round(p), "lo80": round(a), "hi80": round(b),
                        "lo95": round(c), "hi95": round(d)}
                       for i, (p, a, b, c, d) in enumerate(zip(self.point, self.lo80, self.hi80, self.lo95,
                                                               self.hi95, strict=True))],
            "backtest": {k: v.to_dict() for k, v in self.backtest.items()}, "origins": self.origins,
            "mase": _round(self.backtest[self.model].mase) if self.model in self.backtest else None,
            "baselines": {k: _round(self.backtest[k].mase) for k in BASELINES if k in self.backtest},
            "explanation": self.explanation,
        }


def _round(v: float, digits: int = 4) -> float | None:
    """A score for JSON: NaN (a score with nothing to measure) is null."""
    return None if math.isnan(v) else round(v, digits)


def _scores(Y: np.ndarray, h: int, m: int, origins: int,
            models: Sequence[str]) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Rolling-origin backtest: for origins T-h*k (k = origins..1) fit on the data before, forecast h days,
    and score against what happened. Returns per model (MASE, sMAPE, 80 % coverage), each per series."""
    _n, T = Y.shape
    acc: dict[str, list[list[np.ndarray]]] = {k: [[], [], []] for k in models}
    ends = [T - h * k for k in range(origins, 0, -1)]
    fits = _models_at(np.log(Y), h, m, models, ends)
    for i, o in enumerate(ends):
        actual = Y[:, o:o + h]
        scale = _mase_scale(Y[:, :o], m)
        for name, fcs in fits.items():
            fc = fcs[i]
            f = np.exp(fc.mean)
            acc[name][0].append(np.mean(np.abs(f - actual), axis=1) / scale)
            acc[name][1].append(np.mean(200 * np.abs(f - actual) / (np.abs(f) + np.abs(actual)), axis=1))
            # Compared in log terms, where the interval is made: a price that never moved sits on an interval
            # of zero width, and exp() rounding would put it just outside.
            la, slack = np.log(actual), Z80 * fc.sd + 1e-9
            acc[name][2].append(np.mean(np.abs(la - fc.mean) <= slack, axis=1))
    return {k: (np.mean(v[0], axis=0), np.mean(v[1], axis=0), np.mean(v[2], axis=0)) for k, v in acc.items()}


def forecast_many(values: np.ndarray, *, first_day: int = 0, horizon: int = 7, season: int = 7,
                  origins: int = 3) -> list[Forecast]:
    """Forecast every row of `values` (series of equal length, daily prices, NaN = no price that day).
    `first_day` is the day number of column 0; forecasts start the day after the last column. A short
    history (from 14 days) gets fewer backtest origins and only the models its length allows."""
    Y = fill_gaps(np.asarray(values, dtype=float))
    n, T = Y.shape
    if (Y <= 0).any():
        raise BadSeries("series: expected positive prices, found zero or negative values")
    if T < MIN_DAYS:
        raise BadSeries(f"series: expected at least {MIN_DAYS} days of prices, got {T}",
                        hint="forecasts start after two weeks of history")
    # As many origins as asked for while the earliest leaves two weeks of training (what the fitted models
    # need); a history too short for that gets one origin and the baselines only.
    origins = max(1, min(origins, (T - MIN_DAYS) // horizon)) if origins > 0 else 0
    models = candidates(T - horizon * origins) if origins else BASELINES
    scores = _scores(Y, horizon, season, origins, models) if origins > 0 else {}
    L = np.log(Y)
    final = _all_models(L, horizon, season, models)
    bts = [{k: ModelScore(mase=float(v[0][i]), smape=float(v[1][i]), coverage80=float(v[2][i]))
            for k, v in scores.items()} for i in range(n)]
    chosen = [_choose(bt) if bt else "naive" for bt in bts]
    mu = np.stack([final[c].mean[i] for i, c in enumerate(chosen)])
    sd = _spread(np.stack([final[c].sd[i] for i, c in enumerate(chosen)]), first_day + T)
    seen = ~np.isnan(np.asarray(values, dtype=float).reshape(n, T))
    q80, q95, used = calibrate(L, seen, chosen, horizon=horizon, season=season, first_day=first_day)
    feast = _feast_days(first_day + T, horizon)
    out = []
    for i, (bt, name) in enumerate(zip(bts, chosen, strict=True)):
        confidence = _confidence(bt[name], origins) if bt else "low"
        expl = (f"{name} chosen by the lowest mean MASE over {count(origins, 'rolling origin')} of "
                f"{count(horizon, 'day')} among {', '.join(bt)} (MASE "
                f"{bt[name].mase:.3f}; last value {bt['naive'].mase:.3f}, seasonal naive "
                f"{bt['snaive'].mase:.3f}; sMAPE {bt[name].smape:.2f} %, which sets the confidence); models "
                f"run on log prices, so the point forecast is the median and intervals are asymmetric in "
                f"rupiah" if bt else "no backtest: the last value")
        if feast[-1]:
            expl += (f"; intervals widened for {count(int(feast[-1]), 'forecast day')} in Ramadan, Lebaran or "
                     f"Nataru, when prices trend")
        if used[i]:
            expl += (f"; intervals calibrated on the series' own forecast errors from "
                     f"{count(int(used[i]), 'earlier origin')}: {q80[i, 0]:.2f} spreads each side for the 80 % "
                     f"interval on the first day, {q80[i, -1]:.2f} on the last (normal {Z80:.2f}), "
                     f"{q95[i, 0]:.2f} and {q95[i, -1]:.2f} for the 95 % (normal {Z95:.2f})")
        m, w80, w95 = mu[i], q80[i] * sd[i], q95[i] * sd[i]
        out.append(Forecast(
            model=name, parameters=final[name].detail[i], first_day=first_day + T,
            point=tuple(np.exp(m)), lo80=tuple(np.exp(m - w80)), hi80=tuple(np.exp(m + w80)),
            lo95=tuple(np.exp(m - w95)), hi95=tuple(np.exp(m + w95)), backtest=bt,
            origins=origins, confidence=confidence, explanation=expl,
        ))
    return out


def _feast_days(start: int, horizon: int) -> np.ndarray:
    """How many of the forecast days from `start` up to each one fall in a season prices trend in."""
    return np.cumsum([bool(FEASTS.intersection(holidays_on(start + k))) for k in range(horizon)])


def _spread(sd: np.ndarray, start: int) -> np.ndarray:
    """A model's spread (n, h) for forecast days from `start`, floored and widened for the feast days."""
    j = np.arange(1, sd.shape[1] + 1)
    sd = np.maximum(sd, SD_FLOOR * np.sqrt(j))
    return np.sqrt(sd**2 + FEAST_SD**2 * _feast_days(start, sd.shape[1]))


def calibrate(L: np.ndarray, seen: np.ndarray, chosen: Sequence[str], *, horizon: int, season: int,
              first_day: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Conformal calibration of the intervals from each series' own past forecast errors. From each origin of
    the last CALIBRATION_DAYS, the chosen model forecasts from the days before the origin only, and its j-day
    error in spreads (|log actual - forecast| / spread) is scored on every day that had a price. Each level's
    multiplier of the spread at horizon j is the conformal quantile of that horizon's scores, bounded (a spike's
    first days, scored against the calm spread before them, would otherwise multiply the spread for the next
    eight weeks, when the spread itself has already grown with the spike). Returns the 80 % and 95 % multipliers (n, h)
    and the number of origins behind them per series (0: too few scores at every horizon, the normal quantiles
    stay)."""
    n, T = L.shape
    origins = range(max(MIN_DAYS, T - CALIBRATION_DAYS), T)
    err = np.full((n, horizon, len(origins)), np.nan)
    mu, sd = np.empty((len(origins), n, horizon)), np.empty((len(origins), n, horizon))
    # Each model fitted on the rows that chose it only, for all the origins at once.
    for name in sorted(set(chosen) if origins else (), key=MODELS.index):
        rows = np.flatnonzero(np.array(chosen) == name)
        for k, fc in enumerate(_models_at(L[rows], horizon, season, (name,), origins)[name]):
            mu[k, rows], sd[k, rows] = fc.mean, fc.sd
    for k, o in enumerate(origins):
        spread = _spread(sd[k], first_day + o)
        h = min(horizon, T - o)
        err[:, :h, k] = np.where(seen[:, o:o + h], np.abs(L[:, o:o + h] - mu[k, :, :h]) / spread[:, :h], np.nan)
    scored = np.sum(~np.isnan(err), axis=2)
    enough = scored >= MIN_SCORES
    c80, c95 = conformal_quantiles(err, (0.80, 0.95))
    q80 = np.clip(np.where(enough, c80, Z80), BOUNDS80[0] * Z80, BOUNDS80[1] * Z80)
    # A few dozen scores cannot show a 1-in-20 tail thinner than the normal one: measured on
    # tests/markets/pasar.py, letting the 95 % interval narrow held fewer prices than before calibration.
    q95 = np.maximum(np.clip(np.where(enough, c95, Z95), BOUNDS95[0] * Z95, BOUNDS95[1] * Z95), q80 * (Z95 / Z80))
    return q80, q95, np.where(enough.any(axis=1), len(origins), 0)


def conformal_quantiles(scores: np.ndarray, levels: Sequence[float]) -> tuple[np.ndarray, ...]:
    """The split-conformal quantile of the scores along the last axis (NaN: no score) for each level: the
    ceil(level * (n + 1))-th smallest of the n, which a new score exchangeable with them stays under with at
    least that probability; the largest where that rank is past n, NaN where there is no score."""
    if scores.shape[-1] == 0:
        return tuple(np.full(scores.shape[:-1], np.nan) for _ in levels)
    s = np.sort(scores, axis=-1)  # NaN last
    n = np.sum(~np.isnan(s), axis=-1, keepdims=True)
    return tuple(np.take_along_axis(s, np.maximum(np.minimum(n, np.ceil(lv * (n + 1)).astype(int)) - 1, 0),
                                    axis=-1)[..., 0] for lv in levels)


def _choose(bt: dict[str, ModelScore]) -> str:
    """The model with the lowest backtest MASE, but any model other than the last value must beat the last
    value by SELECTION_MARGIN: on a few origins the best of six models is partly the luckiest, and on
    sticky prices that luck does not last. So the choice is never worse than the last value on the
    backtest, and within the margin of seasonal naive."""
    best = min(bt, key=lambda k: (bt[k].mase, MODELS.index(k)))
    if best != "naive" and bt[best].mase > SELECTION_MARGIN * bt["naive"].mase:
        return "naive"
    return best


def _confidence(score: ModelScore, origins: int) -> str:
    """From the chosen model's backtest error in percent of the price (sMAPE): what a buyer would call
    close. One origin is too little evidence for "high"."""
    if score.smape <= 2.0 and origins >= 2:
        return "high"
    if score.smape <= 5.0:
        return "medium"
    return "low"


def forecast(values: Sequence[float] | np.ndarray, *, first_day: int = 0, horizon: int = 7, season: int = 7,
             origins: int = 3) -> Forecast:
    """Forecast one daily price series (see forecast_many)."""
    return forecast_many(np.asarray(values, dtype=float)[None, :], first_day=first_day, horizon=horizon,
                         season=season, origins=origins)[0]


def holdout_mase(values: np.ndarray, *, horizon: int = 7, season: int = 7, origins: int = 3) -> dict[str, np.ndarray]:
    """Hold out the last `horizon` days of each row, choose and fit on the rest, and score the chosen
    model and seasonal naive on the held-out days (MASE scaled by the training part's seasonal naive)."""
    Y = fill_gaps(np.asarray(values, dtype=float))
    train, test = Y[:, :-horizon], Y[:, -horizon:]
    fcs = forecast_many(train, horizon=horizon, season=season, origins=origins)
    scale = _mase_scale(train, season)
    chosen = np.array([np.mean(np.abs(np.array(f.point) - t)) for f, t in zip(fcs, test, strict=True)]) / scale
    sn = np.exp(snaive(np.log(train), horizon, season).mean)
    last = np.exp(naive(np.log(train), horizon, season).mean)
    return {"chosen": chosen, "snaive": np.mean(np.abs(sn - test), axis=1) / scale,
            "naive": np.mean(np.abs(last - test), axis=1) / scale, "models": np.array([f.model for f in fcs])}
