"""Validation and anti-manipulation of price observations: each check with its reason, and a combined
verdict that quarantines a value when independent evidence disagrees with it."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .catalog import COMMODITIES, MARKETS_BY_ID, Market, haversine_km
from .ceilings import CeilingTable
from .errors import BadObservation
from .model import WIB_OFFSET_S, PriceObservation, day_of

# Stable check names, in the order results list them, and the kind of evidence each one is.
CHECKS: tuple[str, ...] = (
    "hampel", "modified_z", "zscore", "iqr", "jump", "reporters", "nearby", "ceiling", "stale", "future",
)
FAMILY: dict[str, str] = {
    "hampel": "history", "modified_z": "history", "zscore": "history", "iqr": "history", "jump": "history",
    "reporters": "reporters", "nearby": "nearby", "ceiling": "rule", "stale": "rule", "future": "rule",
}
_C = {name: i for i, name in enumerate(CHECKS)}

ACCEPTED = "accepted"
QUARANTINED = "quarantined"

# 1.4826 * MAD estimates the standard deviation of normal data; 0.6745 is its inverse used by the
# modified z-score; 1.253314 * mean absolute deviation is the fallback when MAD is 0.
MAD_TO_SD = 1.4826
MODZ_K = 0.6745
MEANAD_TO_SD = 1.253314


def _default_jumps() -> dict[str, float]:
    return {c.id: c.max_jump for c in COMMODITIES}


def _default_reporter_tol() -> dict[str, float]:
    # Honest reporters disagree by their quoting noise; allow about five times it, at least 8 %.
    return {c.id: max(0.08, round(5 * c.noise, 3)) for c in COMMODITIES}


@dataclass(frozen=True, slots=True, kw_only=True)
class ValidationConfig:
    """Thresholds of every check. Relative numbers are fractions (0.12 = 12 %)."""

    window: int = 28  # accepted daily medians kept per series as its history
    min_history: int = 7  # fewer days than this and the history checks stay silent
    hampel_k: float = 3.0
    modz_limit: float = 3.5  # Iglewicz and Hoaglin's cut-off
    z_limit: float = 3.0
    iqr_k: float = 1.5  # Tukey's fences
    scale_floor: float = 0.02  # no spread below 2 % of the median: sticky prices have MAD = 0
    jump_default: float = 0.25
    max_jump: Mapping[str, float] = field(default_factory=_default_jumps)
    reporters_tol_default: float = 0.12
    reporters_tol: Mapping[str, float] = field(default_factory=_default_reporter_tol)
    nearby_tol: float = 0.15  # difference of log changes against the series' own baseline
    nearby_km: float | None = 150.0  # None: every market of the region counts as nearby
    peer_window_s: int = 86400  # how old a peer's report may be (streaming)
    max_age_s: int = 3 * 86400  # older than this on arrival is stale
    max_skew_s: int = 600  # device time this far past arrival is in the future
    history_checks: tuple[str, ...] = ("hampel", "modified_z", "jump")
    ceiling_kinds: tuple[str, ...] = ("HET",)
    tz_offset_s: int = WIB_OFFSET_S

    def __post_init__(self) -> None:
        if self.window < 3 or not 1 <= self.min_history <= self.window:
            raise BadObservation(
                f"window/min_history: expected window >= 3 and 1 <= min_history <= window, "
                f"got {self.window}/{self.min_history}")
        for name in self.history_checks:
            if FAMILY.get(name) != "history":
                raise BadObservation(f"history_checks: expected names among "
                                     f"{[c for c, f in FAMILY.items() if f == 'history']}, got {name!r}")
        for name in ("hampel_k", "modz_limit", "z_limit", "iqr_k", "scale_floor", "nearby_tol"):
            if not getattr(self, name) > 0:
                raise BadObservation(f"{name}: expected a positive number, got {getattr(self, name)}")


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckResult:
    name: str
    family: str
    fired: bool
    score: float | None  # the check's statistic; None when it could not run
    limit: float | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"check": self.name, "family": self.family, "fired": self.fired,
                "score": None if self.score is None else round(self.score, 4),
                "limit": self.limit, "reason": self.reason}


@dataclass(frozen=True, slots=True, kw_only=True)
class Verdict:
    observation_id: str
    status: str  # ACCEPTED or QUARANTINED
    checks: tuple[CheckResult, ...]
    summary: str

    @property
    def quarantined(self) -> bool:
        return self.status == QUARANTINED

    @property
    def fired(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.checks if c.fired)

    def check(self, name: str) -> CheckResult:
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {"observation": self.observation_id, "status": self.status, "summary": self.summary,
                "fired": list(self.fired), "checks": [c.to_dict() for c in self.checks]}


@dataclass(frozen=True, slots=True, kw_only=True)
class ObservationBatch:
    """Observations as columns, for validating many at once. Row i belongs to series series_idx[i]."""

    series: tuple[tuple[str, str, str, str], ...]  # (market, commodity, grade, unit)
    regions: tuple[str, ...]  # one per series
    reporters: tuple[str, ...]
    series_idx: np.ndarray  # int, per row
    reporter_idx: np.ndarray  # int, per row
    price: np.ndarray  # float64 rupiah, per row
    time: np.ndarray  # int64 device seconds, per row
    arrived: np.ndarray  # int64 hub seconds, per row
    ids: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        n = len(self.price)
        for name in ("series_idx", "reporter_idx", "time", "arrived"):
            if len(getattr(self, name)) != n:
                raise BadObservation(f"ObservationBatch.{name}: expected {n} rows, got {len(getattr(self, name))}")
        if len(self.regions) != len(self.series):
            raise BadObservation(f"ObservationBatch.regions: expected {len(self.series)}, got {len(self.regions)}")
        if n and (self.price < 1).any():
            raise BadObservation("ObservationBatch.price: expected every price >= 1 rupiah")

    def __len__(self) -> int:
        return len(self.price)

    @classmethod
    def from_observations(cls, observations: Sequence[PriceObservation]) -> ObservationBatch:
        series: dict[tuple[str, str, str, str], int] = {}
        regions: list[str] = []
        reporters: dict[str, int] = {}
        sidx = np.empty(len(observations), np.int64)
        ridx = np.empty(len(observations), np.int64)
        for i, o in enumerate(observations):
            s = series.get(o.series)
            if s is None:
                s = series[o.series] = len(series)
                regions.append(o.region)
            sidx[i] = s
            r = reporters.get(o.reporter)
            if r is None:
                r = reporters[o.reporter] = len(reporters)
            ridx[i] = r
        return cls(
            series=tuple(series), regions=tuple(regions), reporters=tuple(reporters), series_idx=sidx,
            reporter_idx=ridx, price=np.array([o.price_idr for o in observations], np.float64),
            time=np.array([o.time for o in observations], np.int64),
            arrived=np.array([o.arrived_at for o in observations], np.int64),
            ids=tuple(o.id for o in observations),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchResult:
    """Results of validate_batch: per row, which checks fired, their scores, and the verdict."""

    fired: np.ndarray  # bool (n, len(CHECKS))
    score: np.ndarray  # float32 (n, len(CHECKS)); NaN where a check could not run
    quarantined: np.ndarray  # bool (n,)

    def fired_by(self, name: str) -> np.ndarray:
        return self.fired[:, _C[name]]


def _rp(v: float) -> str:
    return "Rp " + f"{v:,.0f}".replace(",", ".")


def _pct(v: float) -> str:
    return f"{100 * v:+.1f} %"


def _sorted_quantile(a: np.ndarray, n: np.ndarray, q: float) -> np.ndarray:
    """Quantile q of each row of `a` (sorted ascending, NaN last, n valid values), interpolated linearly
    as numpy's default; NaN for rows without values."""
    pos = q * np.maximum(n - 1, 0)
    lo = np.floor(pos).astype(np.int64)
    hi = np.ceil(pos).astype(np.int64)
    rows = np.arange(a.shape[0])
    out = a[rows, lo] + (pos - lo) * (a[rows, hi] - a[rows, lo])
    return np.where(n > 0, out, np.nan)


def robust_stats(history: np.ndarray, floor_rel: float) -> dict[str, np.ndarray]:
    """Median, MAD, mean absolute deviation, mean, sd and quartiles of each row of `history` (NaN = no
    value), and the floor of every scale (floor_rel times the median)."""
    # Sorting rows (NaN sort last) and indexing is many times faster than nanmedian on short rows.
    a = np.sort(history, axis=1)
    n = np.sum(~np.isnan(a), axis=1)
    med = _sorted_quantile(a, n, 0.5)
    dev = np.sort(np.abs(history - med[:, None]), axis=1)
    mad = _sorted_quantile(dev, n, 0.5)
    q1 = _sorted_quantile(a, n, 0.25)
    q3 = _sorted_quantile(a, n, 0.75)
    with np.errstate(all="ignore"):
        cnt = np.maximum(n, 1)
        meanad = np.nansum(dev, axis=1) / cnt
        mean = np.nansum(a, axis=1) / cnt
        sd = np.sqrt(np.nansum((a - mean[:, None]) ** 2, axis=1) / np.maximum(n - 1, 1))
    empty = n == 0
    for arr in (meanad, mean, sd):
        arr[empty] = np.nan
    return {"median": med, "mad": mad, "meanad": meanad, "mean": mean, "sd": sd, "q1": q1, "q3": q3,
            "n": n, "floor": floor_rel * med}


def history_scores(x: np.ndarray, st: Mapping[str, np.ndarray], cfg: ValidationConfig) -> dict[str, np.ndarray]:
    """The four history statistics of values `x` against their rows' statistics `st`."""
    med, floor = st["median"], st["floor"]
    with np.errstate(all="ignore"):
        hampel_scale = np.maximum(MAD_TO_SD * st["mad"], floor)
        hampel = np.abs(x - med) / hampel_scale
        # Iglewicz-Hoaglin on MAD; where MAD = 0 (a sticky price) the mean absolute deviation stands in,
        # and where both are 0 the floor does, so one rupiah of change is not an infinite score.
        modz_scale = np.where(st["mad"] > 0, st["mad"] / MODZ_K,
                              np.where(st["meanad"] > 0, MEANAD_TO_SD * st["meanad"], 0.0))
        modz_scale = np.maximum(modz_scale, floor)
        modz = np.abs(x - med) / modz_scale
        z = np.abs(x - st["mean"]) / np.maximum(st["sd"], floor)
        iqr = np.maximum(st["q3"] - st["q1"], 1.349 * floor)
        iqr_score = np.maximum(st["q1"] - x, x - st["q3"]) / iqr
    return {"hampel": hampel, "hampel_scale": hampel_scale, "modified_z": modz, "modz_scale": modz_scale,
            "zscore": z, "iqr": iqr_score, "iqr_width": iqr}


class Validator:
    """Validates observations against each series' accepted history, the other reporters at the same
    market, the nearby markets of the region, price ceilings and time rules.

    History is the accepted daily median of each series (market, commodity, grade, unit), so quarantined
    values never move the baseline they are judged against."""

    def __init__(self, config: ValidationConfig | None = None, *, ceilings: CeilingTable | None = None,
                 markets: Mapping[str, Market] | None = None) -> None:
        self.config = config or ValidationConfig()
        self.ceilings = ceilings
        self.markets = dict(MARKETS_BY_ID if markets is None else markets)
        self._keys: dict[tuple[str, str, str, str], int] = {}
        self._meta: list[tuple[str, str, str, str, str]] = []  # market, region, commodity, grade, unit
        self._groups: dict[tuple[str, str, str, str], list[int]] = {}
        cap, w = 64, self.config.window
        self._hist = np.full((cap, w), np.nan)
        self._pos = np.zeros(cap, np.int64)
        self._last = np.full(cap, np.nan)
        self._last_day = np.full(cap, -(10**9), np.int64)
        self._pending: dict[int, tuple[int, list[float]]] = {}
        self._latest: dict[int, dict[str, tuple[int, float]]] = {}  # series -> reporter -> (time, price)
        self._km: dict[tuple[str, str], float] = {}
        self._ceiling_cache: dict[tuple[int, int], tuple[float, str, str]] = {}
        self._base_cache: dict[int, float] = {}
        self._jump_lim_l: list[float] = []
        self._rep_tol_l: list[float] = []
        self._jump_lim = np.zeros(0)
        self._rep_tol = np.zeros(0)

    # -- series registry --------------------------------------------------------------------------------

    def _series(self, key: tuple[str, str, str, str], region: str) -> int:
        s = self._keys.get(key)
        if s is not None:
            return s
        s = self._keys[key] = len(self._meta)
        market, commodity, grade, unit = key
        self._meta.append((market, region, commodity, grade, unit))
        cfg = self.config
        self._jump_lim_l.append(cfg.max_jump.get(commodity, cfg.jump_default))
        self._rep_tol_l.append(cfg.reporters_tol.get(commodity, cfg.reporters_tol_default))
        self._jump_lim = np.array(self._jump_lim_l)
        self._rep_tol = np.array(self._rep_tol_l)
        self._groups.setdefault((region, commodity, grade, unit), []).append(s)
        if s >= len(self._hist):
            grow = len(self._hist)
            self._hist = np.vstack([self._hist, np.full((grow, self.config.window), np.nan)])
            self._pos = np.concatenate([self._pos, np.zeros(grow, np.int64)])
            self._last = np.concatenate([self._last, np.full(grow, np.nan)])
            self._last_day = np.concatenate([self._last_day, np.full(grow, -(10**9), np.int64)])
        return s

    def _group_key(self, s: int) -> tuple[str, str, str, str]:
        _, region, commodity, grade, unit = self._meta[s]
        return (region, commodity, grade, unit)

    def _base_median(self, s: int) -> float:
        b = self._base_cache.get(s)
        if b is None:
            b = self._base_cache[s] = float(self._baselines(np.array([s]))[0][0])
        return b

    def _commit(self, s: int, day: int, value: float) -> None:
        self._base_cache.pop(s, None)
        self._hist[s, self._pos[s] % self.config.window] = value
        self._pos[s] += 1
        self._last[s] = value
        self._last_day[s] = day

    def _commit_pending(self, s: int, before_day: int) -> None:
        pend = self._pending.get(s)
        if pend is not None and pend[0] < before_day:
            del self._pending[s]
            if pend[1]:
                self._commit(s, pend[0], float(np.median(pend[1])))

    def flush(self) -> None:
        """Move every pending day into history (the hub calls it at the end of a market day)."""
        for s in list(self._pending):
            self._commit_pending(s, 10**12)

    def history(self, key: tuple[str, str, str, str]) -> list[float]:
        """The accepted daily medians a series is judged against, oldest first."""
        s = self._keys.get(key)
        if s is None:
            return []
        n, w = int(self._pos[s]), self.config.window
        row = self._hist[s]
        order = [(n - k) % w for k in range(min(n, w), 0, -1)]
        return [float(row[i]) for i in order]

    def seed_history(self, key: tuple[str, str, str, str], region: str, values: Iterable[float],
                     last_day: int) -> None:
        """Load accepted daily medians (oldest first) for a series, e.g. after a hub restart."""
        s = self._series(key, region)
        vals = list(values)
        for k, v in enumerate(vals):
            self._commit(s, last_day - len(vals) + 1 + k, float(v))

    # -- shared helpers ---------------------------------------------------------------------------------

    def _near(self, s: int, t: int) -> bool:
        lim = self.config.nearby_km
        if lim is None:
            return True
        a, b = self._meta[s][0], self._meta[t][0]
        km = self._km.get((a, b))
        if km is None:
            ma, mb = self.markets.get(a), self.markets.get(b)
            # Markets without coordinates count as nearby: the region is then the only grouping we know.
            km = 0.0 if ma is None or mb is None else haversine_km(ma.latitude, ma.longitude,
                                                                   mb.latitude, mb.longitude)
            self._km[(a, b)] = self._km[(b, a)] = km
        return km <= lim

    def _ceiling(self, s: int, day: int) -> tuple[float, str, str]:
        hit = self._ceiling_cache.get((s, day))
        if hit is None:
            hit = (math.nan, "", "")
            if self.ceilings is not None:
                _, region, commodity, grade, unit = self._meta[s]
                c = self.ceilings.lookup(commodity, grade, unit, region, day)
                if c is not None:
                    hit = (float(c.ceiling_idr), c.kind, c.source)
            if len(self._ceiling_cache) > 200_000:
                self._ceiling_cache.clear()
            self._ceiling_cache[(s, day)] = hit
        return hit

    def _baselines(self, s: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        cfg = self.config
        st = robust_stats(self._hist[s], cfg.scale_floor)
        enough = st["n"] >= cfg.min_history
        base = np.where(enough, st["median"], np.nan)
        return base, st

    def _assess(self, s: np.ndarray, x: np.ndarray, t: np.ndarray, arr: np.ndarray, day: np.ndarray,
                rep_ref: np.ndarray, rep_n: np.ndarray, near_ref: np.ndarray, near_n: np.ndarray,
                base: np.ndarray, st: dict[str, np.ndarray]) -> dict[str, Any]:
        """Every check for rows (series s, price x, ...) given their peers; returns scores, fired flags,
        the verdict and the context that explains them."""
        cfg = self.config
        n = len(x)
        enough = ~np.isnan(base)
        hs = history_scores(x, st, cfg)
        score = np.full((n, len(CHECKS)), np.nan)
        fired = np.zeros((n, len(CHECKS)), bool)
        limits = {"hampel": cfg.hampel_k, "modified_z": cfg.modz_limit, "zscore": cfg.z_limit,
                  "iqr": cfg.iqr_k}
        for name, lim in limits.items():
            sc = np.where(enough, hs[name], np.nan)
            score[:, _C[name]] = sc
            fired[:, _C[name]] = enough & (sc > lim)
        jump_lim = self._jump_lim[s]
        last = self._last[s]
        recent = (day - self._last_day[s]) <= 7  # a jump is measured against a recent price only
        with np.errstate(all="ignore"):
            jump = np.abs(np.log(x / last))
        jump_ok = recent & ~np.isnan(last)
        score[:, _C["jump"]] = np.where(jump_ok, jump, np.nan)
        fired[:, _C["jump"]] = jump_ok & (jump > np.log1p(jump_lim))
        rep_tol = self._rep_tol[s]
        with np.errstate(all="ignore"):
            rep = np.abs(x / rep_ref - 1)
        rep_ok = rep_n >= 1
        score[:, _C["reporters"]] = np.where(rep_ok, rep, np.nan)
        fired[:, _C["reporters"]] = rep_ok & (rep > rep_tol)
        with np.errstate(all="ignore"):
            own = np.log(x / base)
            near = np.abs(own - near_ref)
        near_ok = (near_n >= 1) & enough
        score[:, _C["nearby"]] = np.where(near_ok, near, np.nan)
        fired[:, _C["nearby"]] = near_ok & (near > cfg.nearby_tol)
        # Ceilings depend on series and day only: look each pair up once.
        pairs, inv = np.unique(np.stack([s, day]), axis=1, return_inverse=True)
        found = [self._ceiling(int(a), int(b)) for a, b in pairs.T]
        inv = inv.ravel()
        ceil = np.array([f[0] for f in found])[inv]
        enforce = np.array([f[1] in cfg.ceiling_kinds for f in found], bool)[inv]
        with np.errstate(all="ignore"):
            over = x / ceil - 1
        score[:, _C["ceiling"]] = over
        fired[:, _C["ceiling"]] = enforce & (over > 0)
        age = (arr - t).astype(np.float64)
        score[:, _C["stale"]] = age
        fired[:, _C["stale"]] = age > cfg.max_age_s
        score[:, _C["future"]] = -age
        fired[:, _C["future"]] = -age > cfg.max_skew_s

        hist = np.zeros(n, bool)
        for name in cfg.history_checks:
            hist |= fired[:, _C[name]]
        rule = fired[:, _C["ceiling"]] | fired[:, _C["stale"]] | fired[:, _C["future"]]
        rep_fired = fired[:, _C["reporters"]]
        # Independent evidence decides. A value is quarantined when the other reporters at its market
        # disagree with it, or when it moved away from its own baseline while the nearby markets did not
        # move with it (they cannot all be in on it), or when it is unusual against its own history and no
        # peer at all can vouch for it. A history outlier that its peers moved with is a real market move.
        own_abs = np.abs(np.where(near_ok, own, 0.0))
        near_diverged = fired[:, _C["nearby"]] & (own_abs > np.abs(np.nan_to_num(near_ref)))
        alone = hist & ~near_ok & ~rep_ok
        quarantined = rule | rep_fired | near_diverged | alone
        return {"score": score, "fired": fired, "quarantined": quarantined, "hs": hs, "st": st,
                "base": base, "last": last, "jump_lim": jump_lim, "rep_ref": rep_ref, "rep_n": rep_n,
                "rep_tol": rep_tol, "near_ref": near_ref, "near_n": near_n, "own": own, "ceil": ceil,
                "ceiling_found": found, "ceiling_of": inv, "age": age, "hist": hist, "near_ok": near_ok,
                "rep_ok": rep_ok, "near_diverged": near_diverged}

    def _explain(self, ctx: dict[str, Any], i: int, x: float, obs_id: str) -> Verdict:
        cfg = self.config
        st, hs = ctx["st"], ctx["hs"]
        score, fired = ctx["score"][i], ctx["fired"][i]
        med = float(st["median"][i])
        results: list[CheckResult] = []

        def add(name: str, limit: float | None, reason: str) -> None:
            sc = float(score[_C[name]])
            results.append(CheckResult(name=name, family=FAMILY[name], fired=bool(fired[_C[name]]),
                                       score=None if math.isnan(sc) else sc, limit=limit, reason=reason))

        n_hist = int(st["n"][i])
        if math.isnan(ctx["base"][i]):
            short = f"only {n_hist} accepted days of history; at least {cfg.min_history} needed"
            for name, lim in (("hampel", cfg.hampel_k), ("modified_z", cfg.modz_limit),
                              ("zscore", cfg.z_limit), ("iqr", cfg.iqr_k)):
                add(name, lim, short)
        else:
            floor = float(st["floor"][i])
            mad = float(st["mad"][i])
            guard = (f"; MAD is 0 (sticky price), so the scale is the floor of {cfg.scale_floor:.0%} "
                     f"of the median ({_rp(floor)})") if mad == 0 else ""
            add("hampel", cfg.hampel_k,
                f"{_rp(x)} is {score[_C['hampel']]:.1f} scaled MADs from the {n_hist}-day median "
                f"{_rp(med)} (scale {_rp(float(hs['hampel_scale'][i]))}, limit {cfg.hampel_k:g}){guard}")
            alt = ""
            if mad == 0:
                alt = (f"; MAD is 0, so 1.2533 x mean absolute deviation stands in, floored at "
                       f"{_rp(floor)}")
            add("modified_z", cfg.modz_limit,
                f"modified z-score {score[_C['modified_z']]:.1f} against median {_rp(med)} "
                f"(scale {_rp(float(hs['modz_scale'][i]))}, limit {cfg.modz_limit:g}){alt}")
            add("zscore", cfg.z_limit,
                f"z-score {score[_C['zscore']]:.1f} against mean {_rp(float(st['mean'][i]))} and sd "
                f"{_rp(float(st['sd'][i]))} (floored at {_rp(floor)}; limit {cfg.z_limit:g}); mean and "
                f"sd are pulled by outliers, so this check is shown but does not decide")
            add("iqr", cfg.iqr_k,
                f"{_rp(x)} lies {max(score[_C['iqr']], 0):.2f} IQRs outside the quartiles "
                f"{_rp(float(st['q1'][i]))}..{_rp(float(st['q3'][i]))} (limit {cfg.iqr_k:g}); shown, "
                f"does not decide")
        last = float(ctx["last"][i])
        if math.isnan(score[_C["jump"]]):
            add("jump", None, "no accepted price in the last 7 days to compare with")
        else:
            add("jump", float(ctx["jump_lim"][i]),
                f"{_pct(x / last - 1)} against the last accepted daily price {_rp(last)} "
                f"(limit {float(ctx['jump_lim'][i]):.0%} for this commodity)")
        rn = int(ctx["rep_n"][i])
        if rn < 1:
            add("reporters", None, "no other reporter at this market reported within the peer window")
        else:
            add("reporters", float(ctx["rep_tol"][i]),
                f"{_pct(x / float(ctx['rep_ref'][i]) - 1)} from {_rp(float(ctx['rep_ref'][i]))}, the "
                f"{'median of all' if rn >= 2 else 'price of the one other'} reporter"
                f"{'s' if rn >= 2 else ''} here ({rn} other{'s' if rn != 1 else ''}; "
                f"limit {float(ctx['rep_tol'][i]):.0%})")
        nn = int(ctx["near_n"][i])
        if not ctx["near_ok"][i]:
            why = ("no nearby market in the region reported" if nn < 1
                   else "this series has too little history for a baseline")
            add("nearby", cfg.nearby_tol, why)
        else:
            own, ref = float(ctx["own"][i]), float(ctx["near_ref"][i])
            add("nearby", cfg.nearby_tol,
                f"this market is {_pct(math.expm1(own))} against its own baseline {_rp(float(ctx['base'][i]))}"
                f" while the median of {nn} nearby market{'s' if nn != 1 else ''} moved "
                f"{_pct(math.expm1(ref))} (difference {abs(own - ref):.3f} in log terms, limit "
                f"{cfg.nearby_tol:g})")
        _, kind, csource = ctx["ceiling_found"][ctx["ceiling_of"][i]]
        ceil = float(ctx["ceil"][i])
        if math.isnan(ceil):
            add("ceiling", None, "no ceiling or reference price for this commodity, grade and region")
        else:
            label = "ceiling (HET)" if kind == "HET" else f"reference price ({kind}), not a ceiling"
            add("ceiling", 0.0,
                f"{_rp(x)} is {_pct(x / ceil - 1)} against the {label} {_rp(ceil)} "
                f"[{csource}]")
        age = float(ctx["age"][i])
        add("stale", float(cfg.max_age_s),
            f"observed {age / 3600:.1f} h before it reached the hub (limit {cfg.max_age_s / 3600:g} h)")
        add("future", float(cfg.max_skew_s),
            f"device time is {-age:.0f} s after arrival (limit {cfg.max_skew_s} s); a device clock "
            f"ahead of the hub")
        status = QUARANTINED if ctx["quarantined"][i] else ACCEPTED
        return Verdict(observation_id=obs_id, status=status, checks=tuple(results),
                       summary=self._summary(ctx, i, status))

    def _summary(self, ctx: dict[str, Any], i: int, status: str) -> str:
        fired = [c for c in CHECKS if ctx["fired"][i][_C[c]]]
        if not fired:
            return "accepted: no check fired"
        rule = [c for c in fired if FAMILY[c] == "rule"]
        if status == ACCEPTED:
            if ctx["hist"][i]:
                who = "nearby markets" if ctx["near_ok"][i] else "the other reporters here"
                return (f"accepted: unusual against its own history ({', '.join(fired)}) but {who} "
                        f"moved the same way")
            return f"accepted: only {', '.join(fired)} fired, which alone does not quarantine"
        parts = []
        if rule:
            parts.append(f"rule broken ({', '.join(rule)})")
        if ctx["fired"][i][_C["reporters"]]:
            parts.append("other reporters at this market disagree")
        if ctx["near_diverged"][i]:
            parts.append("it moved away from its own baseline while nearby markets did not")
        if ctx["hist"][i] and not ctx["near_ok"][i] and not ctx["rep_ok"][i]:
            parts.append("unusual against its history and no peer can confirm it")
        return "quarantined: " + "; ".join(parts)

    # -- streaming ----------------------------------------------------------------------------------------

    def check(self, obs: PriceObservation) -> Verdict:
        """Validate one observation as it arrives, against what the validator has seen so far."""
        cfg = self.config
        s = self._series(obs.series, obs.region)
        day = day_of(obs.time, cfg.tz_offset_s)
        self._commit_pending(s, day)
        x = float(obs.price_idr)
        reps = self._latest.setdefault(s, {})
        others = [p for r, (tm, p) in reps.items()
                  if r != obs.reporter and abs(tm - obs.time) <= cfg.peer_window_s]
        rep_ref = _peer_ref(x, others)
        group = self._groups[(obs.region, *obs.series[1:])]
        changes = []
        for t in group:
            if t == s or not self._near(s, t):
                continue
            b = self._base_median(t)
            lvl = self._level(t, obs.time, day)
            if lvl is not None and not math.isnan(b):
                changes.append(math.log(lvl / b))
        near_ref = float(statistics.median(changes)) if changes else math.nan
        sa = np.array([s])
        base, st = self._baselines(sa)
        ctx = self._assess(sa, np.array([x]), np.array([obs.time]), np.array([obs.arrived_at]),
                           np.array([day]), np.array([rep_ref]), np.array([len(others)]),
                           np.array([near_ref]), np.array([len(changes)]), base, st)
        reps[obs.reporter] = (obs.time, x)
        verdict = self._explain(ctx, 0, x, obs.id)
        if not verdict.quarantined:
            self.admit(obs)
        return verdict

    def admit(self, obs: PriceObservation) -> None:
        """Count an observation into its series' history: accepted ones, and quarantined ones that an
        operator released."""
        s = self._series(obs.series, obs.region)
        day = day_of(obs.time, self.config.tz_offset_s)
        self._commit_pending(s, day)
        pend = self._pending.get(s)
        if pend is None:
            self._pending[s] = (day, [float(obs.price_idr)])
        elif pend[0] == day:
            pend[1].append(float(obs.price_idr))
        # An older day than the pending one arrived late; history moves forward only.

    def _level(self, t: int, time: int, day: int) -> float | None:
        """The current price level of series t: its reporters' recent median, else its last daily price."""
        cfg = self.config
        recent = [p for tm, p in self._latest.get(t, {}).values() if abs(tm - time) <= cfg.peer_window_s]
        if recent:
            return float(statistics.median(recent))
        if day - self._last_day[t] <= 1 and not math.isnan(self._last[t]):
            return float(self._last[t])
        return None

    # -- batch --------------------------------------------------------------------------------------------

    def validate_batch(self, batch: ObservationBatch) -> BatchResult:
        """Validate many observations day by day: each day's reports are judged against the history before
        that day and against each other, then that day's accepted medians join the history."""
        cfg = self.config
        n = len(batch)
        fired = np.zeros((n, len(CHECKS)), bool)
        score = np.full((n, len(CHECKS)), np.nan, np.float32)
        quarantined = np.zeros(n, bool)
        if n == 0:
            return BatchResult(fired=fired, score=score, quarantined=quarantined)
        local = np.array([self._series(k, r) for k, r in zip(batch.series, batch.regions, strict=True)],
                         np.int64)
        s_all = local[batch.series_idx]
        day_all = (batch.time + cfg.tz_offset_s) // 86400
        order = np.argsort(day_all, kind="stable")
        days_sorted = day_all[order]
        cuts = np.flatnonzero(np.diff(days_sorted)) + 1
        for rows in np.split(order, cuts):
            day = int(day_all[rows[0]])
            s = s_all[rows]
            x = batch.price[rows]
            for u in np.unique(s):
                self._commit_pending(int(u), day)
            rep_ref, rep_n, gmed, gidx, useries = _group_refs(s, x)
            base, st = self._baselines(s)
            near_ref_u, near_n_u = self._nearby_refs(useries, gmed, day)
            near_ref, near_n = near_ref_u[gidx], near_n_u[gidx]
            ctx = self._assess(s, x, batch.time[rows], batch.arrived[rows], np.full(len(rows), day),
                               rep_ref, rep_n, near_ref, near_n, base, st)
            fired[rows] = ctx["fired"]
            score[rows] = ctx["score"]
            quarantined[rows] = ctx["quarantined"]
            ok = ~ctx["quarantined"]
            if ok.any():
                _, _, acc_med, _, acc_series = _group_refs(s[ok], x[ok])
                for u, m in zip(acc_series, acc_med, strict=True):
                    self._commit(int(u), day, float(m))
        return BatchResult(fired=fired, score=score, quarantined=quarantined)

    def _nearby_refs(self, useries: np.ndarray, gmed: np.ndarray, day: int) -> tuple[np.ndarray, np.ndarray]:
        """For each series present today, the median log change (level today against its own baseline)
        of the other nearby series of its group."""
        members = sorted({t for u in useries for t in self._groups[self._group_key(int(u))]})
        mbase, _ = self._baselines(np.array(members, np.int64))
        base_of = dict(zip(members, mbase.tolist(), strict=True))
        today = dict(zip(useries.tolist(), gmed.tolist(), strict=True))
        change: dict[int, float] = {}
        for t in members:
            b = base_of[t]
            if math.isnan(b):
                continue
            if t in today:
                change[t] = math.log(today[t] / b)
            elif day - self._last_day[t] <= 1:
                change[t] = math.log(self._last[t] / b)
        ref = np.full(len(useries), np.nan)
        cnt = np.zeros(len(useries), np.int64)
        for k, u in enumerate(useries.tolist()):
            vals = [change[t] for t in self._groups[self._group_key(u)]
                    if t != u and t in change and self._near(u, t)]
            if vals:
                ref[k] = statistics.median(vals)
                cnt[k] = len(vals)
        return ref, cnt


def _peer_ref(x: float, others: list[float]) -> float:
    """What the other reporters say: with two or more others, the median of everyone including this one
    (a single dishonest peer cannot move it); with one other, that one's price."""
    if not others:
        return math.nan
    if len(others) == 1:
        return others[0]
    return float(statistics.median([x, *others]))


def _group_refs(s: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                                        np.ndarray]:
    """Per row: the reporters' reference price (_peer_ref) and how many others reported; per distinct
    series: the median price; and each row's index into the distinct series."""
    order = np.lexsort((x, s))
    ss, xs = s[order], x[order]
    starts = np.flatnonzero(np.r_[True, ss[1:] != ss[:-1]])
    counts = np.diff(np.r_[starts, len(ss)])
    lo, hi = starts + (counts - 1) // 2, starts + counts // 2
    gmed = (xs[lo] + xs[hi]) / 2
    gsum = np.add.reduceat(xs, starts)
    gidx_sorted = np.repeat(np.arange(len(starts)), counts)
    gidx = np.empty(len(s), np.int64)
    gidx[order] = gidx_sorted
    cnt = counts[gidx]
    ref = np.where(cnt >= 3, gmed[gidx], np.where(cnt == 2, gsum[gidx] - x, np.nan))
    return ref, cnt - 1, gmed, gidx, ss[starts]
