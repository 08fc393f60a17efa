"""Impact of a price change: the change against a baseline, a 0-100 score, and each factor's contribution
estimated from the data (weather, crowd, season, supply, MBG demand, field notes, macro), with the dominant
factor and a statement of how it was computed."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from coap_server.wording import agree, count

from .calendar import holiday_share

FACTORS = ("weather", "crowd", "season", "supply", "mbg", "notes", "macro")
# Features of each factor: (name, unit, how it is measured between the recent and the baseline window).
FEATURES: tuple[tuple[str, str, str], ...] = (
    ("weather", "temp_c", "change of mean temperature, degrees C"),
    ("weather", "rh_pct", "change of mean relative humidity, percentage points"),
    ("crowd", "crowd_log", "log ratio of mean crowd counts"),
    ("season", "ramadan", "change of the share of days in Ramadan"),
    ("season", "lebaran", "change of the share of days in the Lebaran week"),
    ("season", "idul_adha", "change of the share of days around Idul Adha"),
    ("season", "nataru", "change of the share of days in Christmas and New Year"),
    ("supply", "supply", "change of supply-disruption severity (0..1, reported and from notes)"),
    ("mbg", "mbg_log", "log ratio of MBG demand for this commodity in the region"),
    ("notes", "sentiment", "change of mean field-note sentiment (-1..1)"),
    ("macro", "inflation_pp", "change of headline inflation, percentage points"),
    ("macro", "fuel_log", "log ratio of the fuel price"),
    ("macro", "fx_log", "log ratio of rupiah per US dollar"),
)
_F = {f[1]: i for i, f in enumerate(FEATURES)}

VOLATILE = {"cabai-merah", "cabai-rawit", "bawang-merah"}
MBG_USES = {"beras-medium", "beras-premium", "telur-ayam", "daging-ayam", "minyak-goreng"}
IMPORTED = {"bawang-putih", "gula-pasir", "minyak-goreng"}


def prior_elasticities(commodity: str) -> np.ndarray:
    """What a log price change is expected to be per unit of each feature before the data speak: small,
    signed as market reports describe them (rain cuts chilli harvests, Ramadan lifts demand, ...)."""
    volatile = commodity in VOLATILE
    p = np.zeros(len(FEATURES))
    p[_F["temp_c"]] = -0.01 if volatile else 0.0
    p[_F["rh_pct"]] = 0.006 if volatile else 0.001
    p[_F["crowd_log"]] = 0.05
    holiday = 0.10 if volatile or commodity in ("telur-ayam", "daging-ayam") else 0.03
    p[_F["ramadan"]] = holiday * 0.6
    p[_F["lebaran"]] = holiday
    p[_F["idul_adha"]] = holiday * 0.4
    p[_F["nataru"]] = holiday * 0.4
    p[_F["supply"]] = 0.30 if volatile else 0.08
    p[_F["mbg_log"]] = 0.03 if commodity in MBG_USES else 0.0
    p[_F["sentiment"]] = -0.05
    p[_F["inflation_pp"]] = 0.01
    p[_F["fuel_log"]] = 0.10
    p[_F["fx_log"]] = 0.25 if commodity in IMPORTED else 0.05
    return p


@dataclass(frozen=True, slots=True, kw_only=True)
class ImpactInputs:
    """Daily series aligned on days first_day, first_day + 1, ...; NaN where a day has no value. Every
    factor series is optional: a missing one contributes nothing and is reported as not assessed."""

    commodity: str
    first_day: int
    price: np.ndarray
    temp_c: np.ndarray | None = None
    rh_pct: np.ndarray | None = None
    crowd: np.ndarray | None = None
    supply: np.ndarray | None = None
    mbg_kg: np.ndarray | None = None
    sentiment: np.ndarray | None = None
    inflation_pct: np.ndarray | None = None
    fuel_idr: np.ndarray | None = None
    usd_idr: np.ndarray | None = None
    label: str = ""  # what the series is, for the statement ("cabai-merah at pasar-senen")


@dataclass(frozen=True, slots=True, kw_only=True)
class ImpactConfig:
    recent_days: int = 7
    baseline_days: int = 28
    prior_weight_days: float = 30.0  # how many days of data the prior elasticities are worth
    full_score_sigmas: float = 4.0  # a change this many typical changes away scores 100

    def __post_init__(self) -> None:
        for name in ("recent_days", "baseline_days", "prior_weight_days", "full_score_sigmas"):
            if not getattr(self, name) > 0:
                raise ValueError(f"markets.impact.{name}: expected a number > 0, got {getattr(self, name)}")


@dataclass(frozen=True, slots=True, kw_only=True)
class FactorContribution:
    factor: str
    contribution: float  # log price change attributed to the factor
    weight: float  # share of |contributions| (with the unexplained part), 0..1
    assessed: bool  # whether the factor had data
    features: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"factor": self.factor, "contribution_pct": round(100 * math.expm1(self.contribution), 3),
                "weight": round(self.weight, 4), "assessed": self.assessed, "features": self.features}


@dataclass(frozen=True, slots=True, kw_only=True)
class Impact:
    day: int
    current_idr: int
    baseline_idr: int
    change_pct: float
    score: int  # 0..100
    direction: str  # "up", "down", "flat"
    factors: tuple[FactorContribution, ...]
    unexplained: float
    unexplained_weight: float
    dominant: str  # a factor name, or "none"
    fit_days: int
    statement: str

    @property
    def weights(self) -> dict[str, float]:
        out = {f.factor: f.weight for f in self.factors}
        out["unexplained"] = self.unexplained_weight
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"day": self.day, "current_idr": self.current_idr, "baseline_idr": self.baseline_idr,
                "change_pct": round(self.change_pct, 3), "score": self.score, "direction": self.direction,
                "factors": [f.to_dict() for f in self.factors],
                "unexplained_pct": round(100 * math.expm1(self.unexplained), 3),
                "weights": {k: round(v, 4) for k, v in self.weights.items()}, "dominant": self.dominant,
                "fit_days": self.fit_days, "statement": self.statement}


def _window_means(a: np.ndarray, r: int, b: int) -> tuple[np.ndarray, np.ndarray]:
    """Per day t: nan-mean of a over the recent window [t-r+1, t] and over the baseline [t-r-b+1, t-r]."""
    v = np.where(np.isnan(a), 0.0, a)
    c = (~np.isnan(a)).astype(float)
    cv, cc = np.r_[0.0, np.cumsum(v)], np.r_[0.0, np.cumsum(c)]
    n = len(a)
    t = np.arange(n)

    def mean(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        lo, hi = np.clip(lo, 0, n), np.clip(hi, 0, n)
        cnt = cc[hi] - cc[lo]
        with np.errstate(all="ignore"):
            return np.where(cnt > 0, (cv[hi] - cv[lo]) / cnt, np.nan)

    recent = mean(t - r + 1, t + 1)
    base = mean(t - r - b + 1, t - r + 1)
    base[t - r - b + 1 < 0] = np.nan
    return recent, base


def _features(inp: ImpactInputs, cfg: ImpactConfig) -> tuple[np.ndarray, np.ndarray]:
    """Feature matrix (days, features) of window changes, and which features had data."""
    r, b = cfg.recent_days, cfg.baseline_days
    n = len(inp.price)
    X = np.zeros((n, len(FEATURES)))
    have = np.zeros(len(FEATURES), bool)

    def diff(series: np.ndarray | None, name: str, *, log: bool = False) -> None:
        if series is None:
            return
        # Macro series are shared by every series over the same days: their window changes are kept,
        # with the array itself, so its id cannot be reused while the entry lives.
        hit = _DIFFS.get((id(series), log, r, b))
        if hit is None or hit[0] is not series:
            if np.all(np.isnan(series)):
                return
            s = np.log(np.maximum(series, 0) + 1.0) if log else series.astype(float)
            rec, base = _window_means(s, r, b)
            hit = (series, np.nan_to_num(rec - base))
            if name in _SHARED:
                if len(_DIFFS) > 256:
                    _DIFFS.clear()
                _DIFFS[(id(series), log, r, b)] = hit
        X[:, _F[name]] = hit[1]
        have[_F[name]] = True

    diff(inp.temp_c, "temp_c")
    diff(inp.rh_pct, "rh_pct")
    diff(inp.crowd, "crowd_log", log=True)
    diff(inp.supply, "supply")
    diff(inp.mbg_kg, "mbg_log", log=True)
    if inp.sentiment is not None and not np.all(np.isnan(inp.sentiment)):
        # A day without notes is neutral, not unknown: nobody reported trouble.
        diff(np.nan_to_num(inp.sentiment), "sentiment")
    diff(inp.inflation_pct, "inflation_pp")
    diff(inp.fuel_idr, "fuel_log", log=True)
    diff(inp.usd_idr, "fx_log", log=True)
    season = _holiday_features(inp.first_day, n, r, b)
    for k, name in enumerate(HOLIDAY_FEATURES):
        X[:, _F[name]] = season[:, k]
        have[_F[name]] = True
    return X, have


HOLIDAY_FEATURES = ("ramadan", "lebaran", "idul_adha", "nataru")
_SHARED = ("inflation_pp", "fuel_log", "fx_log")
_DIFFS: dict[tuple[int, bool, int, int], tuple[np.ndarray, np.ndarray]] = {}


@functools.lru_cache(maxsize=64)
def _holiday_features(first_day: int, n: int, r: int, b: int) -> np.ndarray:
    """The holiday features of days first_day.. (n days): they depend on the calendar only, so every
    series over the same days shares them, and a live update does not compute them again."""
    out = np.empty((n, len(HOLIDAY_FEATURES)))
    days = range(first_day, first_day + n)
    for k, name in enumerate(HOLIDAY_FEATURES):
        out[:, k] = [holiday_share(name, d - r + 1, d) - holiday_share(name, d - r - b + 1, d - r) for d in days]
    out.flags.writeable = False
    return out


def features(inp: ImpactInputs, config: ImpactConfig | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The feature matrix of impact() and which features had data: it depends on the inputs other than
    the price, so a caller whose prices change more often than those inputs can keep it."""
    return _features(inp, config or ImpactConfig())


@dataclass(frozen=True, slots=True)
class _Past:
    y: np.ndarray  # the changes of the days before `at` that have one
    A: np.ndarray  # Gram matrix of the regression rows (those days and `at`) plus the ridge
    Xty: np.ndarray  # X'y over the days before `at`
    lam: np.ndarray


def _window_at(logp: np.ndarray, at: int, r: int, b: int) -> tuple[float, float]:
    """Mean log price over the recent window ending at day index `at` and over the baseline before it."""
    if at - r - b + 1 < 0:
        return math.nan, math.nan
    recent, base = logp[at - r + 1:at + 1], logp[at - r - b + 1:at - r + 1]
    if np.isnan(recent).all() or np.isnan(base).all():
        return math.nan, math.nan
    return float(np.nanmean(recent)), float(np.nanmean(base))


def _past(logp: np.ndarray, X: np.ndarray, at: int, cfg: ImpactConfig, prior: np.ndarray) -> _Past:
    rec, base = _window_means(logp[:at], cfg.recent_days, cfg.baseline_days)
    y = rec - base
    rows = np.flatnonzero(~np.isnan(y))
    Xp = X[rows]
    Xf = np.vstack([Xp, X[at:at + 1]])
    var = Xf.var(axis=0) if len(Xf) > 1 else np.zeros(len(FEATURES))
    lam = cfg.prior_weight_days * var + 1e-9
    return _Past(y=y[rows], A=Xf.T @ Xf + np.diag(lam), Xty=Xp.T @ y[rows], lam=lam)


def impact(inp: ImpactInputs, *, at: int | None = None, config: ImpactConfig | None = None,
           feature_matrix: tuple[np.ndarray, np.ndarray] | None = None,
           memo: dict[str, Any] | None = None) -> Impact:
    """Explain the price change at day index `at` (default: the last day) of `inp`.

    The change is the log ratio of the mean price over the recent window to the mean over the baseline
    window before it. Each factor's feature is measured between the same two windows. Elasticities come
    from a ridge regression of those changes on the features over every day of the series, shrunk toward
    prior elasticities worth `prior_weight_days` of data; a contribution is elasticity times feature.

    `feature_matrix` (from `features`) and `memo` (a dict kept per series by the caller) let a caller that
    recomputes the same series as its latest price changes pay only for what that price changes."""
    cfg = config or ImpactConfig()
    n = len(inp.price)
    at = n - 1 if at is None else at
    if not 0 <= at < n:
        raise IndexError(f"at: expected 0..{n - 1}, got {at}")
    logp = np.log(np.where(inp.price > 0, inp.price, np.nan))
    X, have = feature_matrix if feature_matrix is not None else _features(inp, cfg)
    prior = prior_elasticities(inp.commodity)
    rec_at, base_at = _window_at(logp, at, cfg.recent_days, cfg.baseline_days)
    total = rec_at - base_at
    if math.isnan(total):
        raise ValueError(f"impact: expected prices in both windows before day index {at}, found gaps; "
                         f"needs {cfg.recent_days + cfg.baseline_days} days of history")
    # Everything before day `at` (the regression's past rows, their Gram matrix and shrinkage) depends on
    # the prices before `at` and on the features only: a live update of today's price reuses it.
    key = (id(X), at, logp[:at].tobytes())
    if memo is not None and memo.get("key") == key:
        past: _Past = memo["past"]
    else:
        past = _past(logp, X, at, cfg, prior)
        if memo is not None:
            memo["key"], memo["past"] = key, past
    yf = np.r_[past.y, total]
    beta = np.linalg.solve(past.A, past.Xty + X[at] * total + past.lam * prior)
    n_fit = len(yf)
    rec_now, base_now = rec_at, base_at

    x_now = X[at]
    contrib_f = beta * x_now
    factors_c = {f: 0.0 for f in FACTORS}
    feats: dict[str, dict[str, dict[str, float]]] = {f: {} for f in FACTORS}
    for k, (fac, name, _) in enumerate(FEATURES):
        factors_c[fac] += float(contrib_f[k])
        if have[k]:
            feats[fac][name] = {"change": round(float(x_now[k]), 5), "elasticity": round(float(beta[k]), 5),
                                "prior": float(prior[k]), "contribution": round(float(contrib_f[k]), 5)}
    unexplained = total - sum(factors_c.values())
    denom = sum(abs(v) for v in factors_c.values()) + abs(unexplained)
    weights = {f: (abs(v) / denom if denom > 0 else 0.0) for f, v in factors_c.items()}
    unexplained_w = abs(unexplained) / denom if denom > 0 else 1.0
    assessed = {fac: any(have[k] for k, f in enumerate(FEATURES) if f[0] == fac) for fac in FACTORS}
    best = max(FACTORS, key=lambda f: abs(factors_c[f]))
    dominant = best if abs(factors_c[best]) > 1e-6 else "none"

    spread = yf - np.median(yf)
    typical = max(1.4826 * float(np.median(np.abs(spread))) if len(yf) else 0.0, 0.01)
    z = abs(total) / typical
    score = round(100 * min(1.0, z / cfg.full_score_sigmas))
    current = math.exp(rec_now)
    baseline = math.exp(base_now)
    change = 100 * math.expm1(total)
    direction = "up" if change > 0.5 else "down" if change < -0.5 else "flat"

    ranked = sorted(FACTORS, key=lambda f: -abs(factors_c[f]))
    parts = [f"{f} {100 * math.expm1(factors_c[f]):+.1f} %" for f in ranked if abs(factors_c[f]) > 5e-4]
    missing = [f for f in FACTORS if not assessed[f]]
    label = f" of {inp.label}" if inp.label else ""
    statement = (
        f"Price{label}: mean of the last {count(cfg.recent_days, 'day')} {_rp(current)} against {_rp(baseline)} "
        f"over the {count(cfg.baseline_days, 'day')} before ({change:+.1f} %). Impact score {score}/100: the change "
        f"is {z:.1f} times the typical {cfg.recent_days}-day change of this series ({100 * typical:.1f} %, "
        f"1.4826 x MAD over {count(n_fit, 'day')}); {cfg.full_score_sigmas:g} times or more scores 100. "
        f"Contributions are elasticity x change of each factor between the same windows; elasticities come "
        f"from a ridge regression over {count(n_fit, 'day')} of this series shrunk toward prior elasticities "
        f"worth {cfg.prior_weight_days:g} {agree(cfg.prior_weight_days, 'day', 'days')}. "
        + (f"Largest first: {', '.join(parts)}; " if parts else "No factor moved; ")
        + f"unexplained {100 * math.expm1(unexplained):+.1f} %. Weights are each part's share of the sum of "
        f"absolute parts (they sum to 1). Dominant factor: {dominant}."
        + (f" Not assessed (no data): {', '.join(missing)}." if missing else "")
    )
    return Impact(
        day=inp.first_day + at, current_idr=round(current), baseline_idr=round(baseline), change_pct=change,
        score=score, direction=direction,
        factors=tuple(FactorContribution(factor=f, contribution=factors_c[f], weight=weights[f],
                                         assessed=assessed[f], features=feats[f]) for f in FACTORS),
        unexplained=unexplained, unexplained_weight=unexplained_w, dominant=dominant, fit_days=n_fit,
        statement=statement,
    )


def _rp(v: float) -> str:
    return "Rp " + f"{v:,.0f}".replace(",", ".")
