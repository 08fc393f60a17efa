"""Validation and anti-manipulation of price observations: each check with its reason, and a combined
verdict that quarantines a value when independent evidence disagrees with it."""

from __future__ import annotations

import bisect
import itertools
import math
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

import numpy as np

from .calendar import date_of
from .catalog import COMMODITIES, MARKETS_BY_ID, Market, find_commodity, haversine_km
from .ceilings import CeilingTable
from .checks import (
    ALL_CHECKS,
    MAD_TO_SD,
    MEANAD_TO_SD,
    MODZ_K,
    Evidence,
    HistoryScores,
    PeerReport,
    RobustStats,
)
from .errors import BadObservation
from .model import DAY_S, WIB_OFFSET_S, PriceObservation, day_of

# Stable check names, in the order results list them, and the kind of evidence each one is.
CHECKS: tuple[str, ...] = tuple(c.name for c in ALL_CHECKS)
FAMILY: dict[str, str] = {c.name: c.family for c in ALL_CHECKS}
_C = {name: i for i, name in enumerate(CHECKS)}

ACCEPTED = "accepted"
QUARANTINED = "quarantined"


def _default_jumps() -> dict[str, float]:
    return {c.id: c.max_jump for c in COMMODITIES}


def _default_drift_tol() -> dict[str, float]:
    # Markets of a region move together, a few days apart: over two weeks a volatile commodity's markets part
    # by about twice its daily volatility times the square root of the days; never less than 15 %.
    return {c.id: max(0.15, round(2 * c.daily_vol * math.sqrt(14), 3)) for c in COMMODITIES}


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
    nearby_tol: float = 0.15  # difference of day-over-day log changes between a market and its neighbours
    nearby_km: float | None = 150.0  # None: every market of the region counts as nearby
    # How much more a market's reported price may move than the nearby markets' over `drift_days` (log
    # terms): wider than one market's own step, narrower than two weeks of reporters pushing a price up.
    drift_days: int = 14
    drift_tol_default: float = 0.15
    drift_tol: Mapping[str, float] = field(default_factory=_default_drift_tol)
    # A creep past the limit on the series' previous this many reported days too (the same way, from the same
    # day) is held even where its price is ordinary against the series' own history: the creeping prices
    # raised that history as they were accepted, day by day. 0: only with the history checks.
    drift_confirm_days: int = 2
    settle_after_s: int = 4 * 3600  # a day's verdicts are final this long after the local day ends
    expect_days: int = 14  # reporters seen for a series this many days back are expected every day
    # A day that came in a backlog stays open this long after its first report for the other devices' backlogs,
    # and is judged with them when it ends, whichever came first.
    backlog_window_s: int = 2 * 3600
    # A day whose first report arrived this long after it was taken came in a backlog (a device back from an
    # outage, a phone sending the morning's prices in the evening), though before the day's cut-off: the nearby
    # markets' devices may be sending theirs too, so it waits for them as a day first heard of late does.
    late_after_s: int = 3600
    max_age_s: int = 3 * 86400  # older than this on arrival is stale
    max_skew_s: int = 600  # device time this far past arrival is in the future
    history_checks: tuple[str, ...] = ("hampel", "modified_z", "jump")
    ceiling_kinds: tuple[str, ...] = ("HET",)  # kinds whose excess is a compliance finding
    # Times above or below the catalogue's typical price that no real price goes: chilli has ranged from about
    # a third to three and a half times its typical price; a mistyped zero is ten.
    plausible_factor: float = 6.0
    # A series with no nearby market reporting within `expect_days` whose held prices stay at a new level (within
    # its usual day-to-day spread) on this many reported days in a row has shifted level: the run's held prices
    # are taken and its history measured from the new level. 0: every such run waits for an operator.
    level_days: int = 3
    # A price unusual against its own history on a day no nearby market reported is confirmed by the nearby
    # markets' latest accepted prices of this many days back when they stand as far from their own histories, the
    # same way: a market whose neighbour reports three days a week is not left alone on the other three. 0: only
    # the nearby markets' reports of the same day confirm.
    region_days: int = 3
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
        if self.level_days < 0:
            raise BadObservation(f"level_days: expected at least 0, got {self.level_days}")
        if self.region_days < 0:
            raise BadObservation(f"region_days: expected at least 0, got {self.region_days}")
        if self.late_after_s < 0:
            raise BadObservation(f"late_after_s: expected at least 0 seconds, got {self.late_after_s}")
        if self.drift_confirm_days < 0:
            raise ValueError(f"validation.drift_confirm_days: expected at least 0, got {self.drift_confirm_days}")
        for name in ("expect_days", "drift_days"):
            if getattr(self, name) < 1:
                raise BadObservation(f"{name}: expected at least 1, got {getattr(self, name)}")
        for name in ("hampel_k", "modz_limit", "z_limit", "iqr_k", "scale_floor", "nearby_tol", "drift_tol_default", "plausible_factor",
                     "jump_default",
                     "reporters_tol_default"):
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
    provisional: bool = False  # the day's other reporters may still change it

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
                "provisional": self.provisional, "fired": list(self.fired),
                "checks": [c.to_dict() for c in self.checks]}


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
    verdicts: dict[int, Verdict] = field(default_factory=dict)  # row -> verdict, for the rows explained
    leveled: np.ndarray | None = None  # bool (n,): held at first, then taken as a level shift (`_level_run`)

    def fired_by(self, name: str) -> np.ndarray:
        return self.fired[:, _C[name]]


@dataclass(frozen=True, slots=True, kw_only=True)
class LevelMark:
    """What one reported day of a series did to its run of held days (`Validator._level_run`), kept with the day so
    that a restart brings the run and the series' level back (`Validator.seed`). A day the series reported that
    carries none ended any run."""

    joined: float | None = None  # its reports were all held alone and it joined the run, at its reports' median
    taken: bool = False  # it was taken with its run as a level shift
    # The factors the history kept before this day was moved by to a new level, in the order they were applied.
    shifts: tuple[float, ...] = ()

    def merged(self, later: LevelMark) -> LevelMark:
        """This mark with what the day did later added."""
        return LevelMark(joined=self.joined if later.joined is None else later.joined,
                         taken=self.taken or later.taken, shifts=self.shifts + later.shifts)


def _sorted_quantile(a: np.ndarray, n: np.ndarray, q: float) -> np.ndarray:
    """Quantile q of each row of `a` (sorted ascending, NaN last, n valid values), interpolated linearly
    as numpy's default; NaN for rows without values."""
    pos = q * np.maximum(n - 1, 0)
    lo = np.floor(pos).astype(np.int64)
    hi = np.ceil(pos).astype(np.int64)
    rows = np.arange(a.shape[0])
    out = a[rows, lo] + (pos - lo) * (a[rows, hi] - a[rows, lo])
    return np.where(n > 0, out, np.nan)


def robust_stats(history: np.ndarray, floor_rel: float) -> RobustStats:
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
    return RobustStats(median=med, mad=mad, meanad=meanad, mean=mean, sd=sd, q1=q1, q3=q3, n=n,
                       floor=floor_rel * med)


def history_scores(x: np.ndarray, st: RobustStats) -> HistoryScores:
    """The four history statistics of values `x` against their rows' statistics `st`."""
    med, floor = st.median, st.floor
    with np.errstate(all="ignore"):
        hampel_scale = np.maximum(MAD_TO_SD * st.mad, floor)
        hampel = np.abs(x - med) / hampel_scale
        # Iglewicz-Hoaglin on MAD; where MAD = 0 (a sticky price) the mean absolute deviation stands in,
        # and where both are 0 the floor does, so one rupiah of change is not an infinite score.
        modz_scale = np.where(st.mad > 0, st.mad / MODZ_K,
                              np.where(st.meanad > 0, MEANAD_TO_SD * st.meanad, 0.0))
        modz_scale = np.maximum(modz_scale, floor)
        modz = np.abs(x - med) / modz_scale
        z = np.abs(x - st.mean) / np.maximum(st.sd, floor)
        iqr = np.maximum(st.q3 - st.q1, 1.349 * floor)
        iqr_score = np.maximum(st.q1 - x, x - st.q3) / iqr
    return HistoryScores(hampel=hampel, hampel_scale=hampel_scale, modified_z=modz, modz_scale=modz_scale,
                         zscore=z, iqr=iqr_score, iqr_width=iqr)


@dataclass(frozen=True, slots=True, kw_only=True)
class Assessment:
    """Every check's score and flag for a set of rows, the evidence behind them, and the verdict."""

    evidence: Evidence
    score: np.ndarray  # (n, len(CHECKS)); NaN where a check could not run
    fired: np.ndarray  # bool (n, len(CHECKS))
    hist: np.ndarray  # bool: a deciding history check fired
    suspect: np.ndarray  # bool: and no nearby market's move vouches for it
    region_ok: np.ndarray  # bool: and the nearby markets' latest accepted prices stand where it does (`_region_level`)
    in_line: np.ndarray  # bool: and it is within the usual day-to-day spread of a confirmed last price (`_in_line`)
    near_diverged: np.ndarray  # bool: moved away from its baseline while nearby markets did not
    drifted: np.ndarray  # bool: crept away from the nearby markets' level over days
    rep_overruled: np.ndarray  # bool: the other reporters disagree, but they drifted and this one did not
    rep_decides: np.ndarray  # bool: the other reporters' disagreement quarantines it
    quarantined: np.ndarray  # bool
    alone: np.ndarray  # bool: quarantined only as unusual against its history with no peer to confirm it


class Validator:
    """Validates observations against each series' accepted history, the other reporters at the same
    market, the nearby markets of the region, price ceilings and time rules.

    History is the accepted daily median of each series (market, commodity, grade, unit), so quarantined
    values never move the baseline they are judged against. `on_commit(series, day, price)` is told each
    daily price as it joins a series' history, and `on_level(series, day, mark)` what a day did to the series' run
    of held days and level (`LevelMark`); the hub keeps both with its day aggregates, see `seed`."""

    def __init__(self, config: ValidationConfig | None = None, *, ceilings: CeilingTable | None = None,
                 markets: Mapping[str, Market] | None = None,
                 on_commit: Callable[[tuple[str, str, str, str], int, float], None] | None = None,
                 on_level: Callable[[tuple[str, str, str, str], int, LevelMark], None] | None = None) -> None:
        self.config = config or ValidationConfig()
        self.on_commit = on_commit
        self.on_level = on_level
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
        self._days: dict[tuple[int, int], _Day] = {}  # (series, day) -> that day's reports and verdicts
        self._open: dict[int, set[int]] = {}  # series -> its days not yet final
        self.judged = 0  # reports judged by the streaming path so far: the work arrivals cost
        self._reporters: dict[int, dict[str, int]] = {}  # series -> reporter -> last day reported
        self._km: dict[tuple[str, str], float] = {}
        self._near_cache: dict[int, tuple[int, list[int]]] = {}
        # series -> day -> accepted daily price, over the creep's span: the nearby markets' moves are measured
        # from these (a neighbour's held mistakes and held creep do not move them), the day-over-day ones over
        # the same days as this series' own.
        self._recent: dict[int, dict[int, float]] = {}
        self._ceiling_runs: dict[int, tuple[list[int], list[tuple[float, str, str, str] | None]]] = {}
        self._base_cache: dict[int, float] = {}
        self._jump_lim_l: list[float] = []
        self._rep_tol_l: list[float] = []
        self._jump_lim = np.zeros(0)
        self._rep_tol = np.zeros(0)
        self._drift_tol_l: list[float] = []
        self._drift_tol = np.zeros(0)
        self._typical_l: list[float] = []
        self._typical = np.zeros(0)
        self._raw: dict[int, dict[int, float]] = {}  # series -> day -> median of all of that day's reports
        # series -> its reported days since its last accepted one, each held only as unusual with nobody nearby
        # to compare (`_level_run`)
        self._runs: dict[int, list[_HeldDay]] = {}

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
        self._drift_tol_l.append(cfg.drift_tol.get(commodity, cfg.drift_tol_default))
        self._drift_tol = np.array(self._drift_tol_l)
        c = find_commodity(commodity)
        self._typical_l.append(float(c.base_idr) if c is not None and c.unit == unit else math.nan)
        self._typical = np.array(self._typical_l)
        self._groups.setdefault((region, commodity, grade, unit), []).append(s)
        if s >= len(self._hist):
            grow = len(self._hist)
            self._hist = np.vstack([self._hist, np.full((grow, self.config.window), np.nan)])
            self._pos = np.concatenate([self._pos, np.zeros(grow, np.int64)])
            self._last = np.concatenate([self._last, np.full(grow, np.nan)])
            self._last_day = np.concatenate([self._last_day, np.full(grow, -(10**9), np.int64)])
        return s

    def _neighbours(self, s: int) -> list[int]:
        """The other series of s's group (same region, commodity, grade, unit) at nearby markets."""
        group = self._groups[self._group_key(s)]
        hit = self._near_cache.get(s)
        if hit is None or hit[0] != len(group):
            hit = self._near_cache[s] = (len(group), [t for t in group if t != s and self._near(s, t)])
        return hit[1]

    def _group_key(self, s: int) -> tuple[str, str, str, str]:
        _, region, commodity, grade, unit = self._meta[s]
        return (region, commodity, grade, unit)

    def _base_median(self, s: int) -> float:
        b = self._base_cache.get(s)
        if b is None:
            b = self._base_cache[s] = float(self._baselines(np.array([s]))[0][0])
        return b

    def _commit(self, s: int, day: int, value: float, *, tell: bool = True) -> None:
        self._base_cache.pop(s, None)
        self._hist[s, self._pos[s] % self.config.window] = value
        self._pos[s] += 1
        self._last[s] = value
        self._last_day[s] = day
        self._remember(s, day, value)
        self._put_raw(s, day, value, keep=True)
        if tell and self.on_commit is not None:
            market, _, commodity, grade, unit = self._meta[s]
            self.on_commit((market, commodity, grade, unit), day, value)

    def _remember(self, s: int, day: int, value: float) -> None:
        """Keep the accepted daily prices of the creep's span by day, so neighbours' moves are measured over
        the same days as this series' own."""
        recent = self._recent.setdefault(s, {})
        recent[day] = value
        if len(recent) > 2 * (self.config.drift_days + 7):
            for d in [d for d in recent if d < day - self.config.drift_days - 7]:
                del recent[d]

    def _commit_many(self, s: np.ndarray, day: int, values: np.ndarray) -> None:
        """_commit for distinct series s at once."""
        for u in s.tolist():
            self._base_cache.pop(u, None)
        self._hist[s, self._pos[s] % self.config.window] = values
        self._pos[s] += 1
        self._last[s] = values
        self._last_day[s] = day
        for u, v in zip(s.tolist(), values.tolist(), strict=True):
            self._remember(u, day, v)
            if self.on_commit is not None:
                market, _, commodity, grade, unit = self._meta[u]
                self.on_commit((market, commodity, grade, unit), day, v)

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

    def seed(self, key: tuple[str, str, str, str], region: str, history: Sequence[tuple[int, float]],
             reporters: Mapping[str, int], levels: Sequence[tuple[int, LevelMark]] = (),
             held: Mapping[int, Sequence[tuple[PriceObservation, Verdict]]] | None = None) -> None:
        """Bring a series back to where stored days left it (a hub restart): the daily prices it took into
        history, by day, oldest first, and the last day each reporter it expects reported. `levels` gives, oldest
        first, what each day the series reported did to its run of held days (`on_level`: an empty mark for a day
        that ended the run), so the history is moved to each new level it was moved to, before the days after it
        join, and the run of held days still open is open again, its days' reports and verdicts from `held`."""
        s = self._series(key, region)
        marks = dict(levels)
        values = dict(history)
        run: list[_HeldDay] = []
        for day in sorted(marks.keys() | values.keys()):
            mark = marks.get(day)
            if mark is not None and mark.shifts:
                for factor in mark.shifts:  # one at a time, as they were applied
                    self._hist[s] *= factor
                self._base_cache.pop(s, None)
                run = []  # taking a run ends it
            if day in values:
                self._commit(s, day, float(values[day]), tell=False)
            if mark is None or mark.taken or mark.shifts:  # not reported, or the run's end as a level shift
                continue
            if mark.joined is None:
                run = []
            else:
                run.append(_HeldDay(day, mark.joined, tuple((held or {}).get(day, ()))))
        if run:
            self._runs[s] = run
        else:
            self._runs.pop(s, None)
        seen = self._reporters.setdefault(s, {})
        for r, day in reporters.items():
            seen[r] = max(day, seen.get(r, day))

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

    def _ceiling(self, s: int, day: int) -> tuple[float, str, str, str]:
        """The ceiling in force for series s on a day. The answer changes only where an entry starts or
        ends, so it is looked up once per such run of days."""
        none = (math.nan, "", "", "")
        if self.ceilings is None:
            return none
        runs = self._ceiling_runs.get(s)
        if runs is None:
            _, region, commodity, grade, unit = self._meta[s]
            cuts = sorted({e.valid_from for e in self.ceilings.entries(commodity, grade, unit)}
                          | {e.valid_to + 1 for e in self.ceilings.entries(commodity, grade, unit)
                             if e.valid_to is not None})
            runs = self._ceiling_runs[s] = ([-(10**9), *cuts], [None] * (len(cuts) + 1))
        k = bisect.bisect_right(runs[0], day) - 1
        hit = runs[1][k]
        if hit is None:
            _, region, commodity, grade, unit = self._meta[s]
            c = self.ceilings.lookup(commodity, grade, unit, region, day)
            hit = runs[1][k] = none if c is None else (
                float(c.ceiling_idr), c.kind, c.source, date_of(c.valid_from).isoformat())
        return hit

    def _baselines(self, s: np.ndarray) -> tuple[np.ndarray, RobustStats]:
        cfg = self.config
        st = robust_stats(self._hist[s], cfg.scale_floor)
        enough = st.n >= cfg.min_history
        base = np.where(enough, st.median, np.nan)
        return base, st

    def _assess(self, s: np.ndarray, x: np.ndarray, t: np.ndarray, arr: np.ndarray, day: np.ndarray,
                rep_ref: np.ndarray, rep_n: np.ndarray, near: _NearRows, base: np.ndarray, st: RobustStats,
                peers: tuple[tuple[PeerReport, ...], ...] | None = None, hist_outside: int = 0) -> Assessment:
        """Every check for rows (series s, price x, ...) given their peers, and the verdict."""
        cfg = self.config
        # Ceilings depend on series and day only: look each pair up once.
        pairs, inv = np.unique(np.stack([s, day]), axis=1, return_inverse=True)
        found = [self._ceiling(int(a), int(b)) for a, b in pairs.T]
        of = inv.ravel().tolist()
        ceiling = np.array([f[0] for f in found], np.float64)[inv.ravel()]
        levels = [self._region_level(int(a), int(b)) for a, b in pairs.T]
        ev = Evidence(
            config=cfg, series=s, x=x, time=t, arrived=arr, day=day, stats=st, scores=history_scores(x, st), base=base,
            last=self._last[s], last_recent=(day - self._last_day[s]) <= 7,
            last_kept=(day - self._last_day[s]) <= cfg.drift_days + 7, jump_lim=self._jump_lim[s],
            rep_ref=rep_ref, rep_n=rep_n, rep_tol=self._rep_tol[s], peers=peers, near_ref=near.ref,
            near_n=near.n, creep_from=near.creep_from, creep_day=near.creep_day, near_creep=near.creep,
            near_creep_n=near.creep_n, creep_last=near.creep_last, creep_steps=near.creep_steps,
            crept_before=near.crept_before,
            level_ref=np.array([v[0] for v in levels], np.float64)[inv.ravel()],
            level_n=np.array([v[1] for v in levels], np.int64)[inv.ravel()],
            drift_tol=self._drift_tol[s], typical=self._typical[s], ceiling=ceiling,
            ceiling_kind=tuple(found[k][1] for k in of), ceiling_source=tuple(found[k][2] for k in of),
            ceiling_from=tuple(found[k][3] for k in of))
        n = len(x)
        score = np.full((n, len(CHECKS)), np.nan)
        fired = np.zeros((n, len(CHECKS)), bool)
        for k, check in enumerate(ALL_CHECKS):
            score[:, k], fired[:, k] = check.score(ev)
        return self._decide(ev, score, fired, hist_outside)

    def _decide(self, ev: Evidence, score: np.ndarray, fired: np.ndarray, hist_outside: int = 0) -> Assessment:
        """Independent evidence decides. A value is quarantined when it breaks a rule, when the other
        reporters at its market disagree with it, when it is unusual against its history and moved away
        from its last price while the nearby markets did not move with it (they cannot all be in on it),
        or when it is unusual against its own history and no peer at all can vouch for it. A history
        outlier that its peers moved with is a real market move; a compliance finding never quarantines.
        `hist_outside` counts the suspect reports of the same series and day that are not among these rows
        (one day judged in part)."""
        n = len(ev.x)
        hist = np.zeros(n, bool)
        for name in self.config.history_checks:
            hist |= fired[:, _C[name]]
        rule = np.zeros(n, bool)
        rep_fired = np.zeros(n, bool)
        for k, check in enumerate(ALL_CHECKS):
            if check.family == "rule":
                rule |= fired[:, k]
            elif check.family == "reporters":
                rep_fired |= fired[:, k]
        # Reporters who moved their market away from the nearby markets together are outvoted by those
        # markets: the one reporter here who stayed with them, at a price ordinary for this market, is not
        # the one that is wrong.
        # Only a market that moved the other way from the nearby markets, or further, can have crept away from
        # them (one neighbour's mistyped price must not make every other market look adrift).
        drift = fired[:, _C["drift"]]
        with np.errstate(all="ignore"):
            near_move = np.nan_to_num(ev.near_creep)

            def apart_of(price: np.ndarray) -> np.ndarray:
                own: np.ndarray = np.log(price / ev.creep_from)
                return (own * near_move <= 0) | (np.abs(own) > np.abs(near_move))

            apart, ref_apart = apart_of(ev.x), apart_of(ev.rep_ref)
        # With one nearby market its own slip would decide; two or more are needed to outvote a market's reporters.
        rep_overruled = (rep_fired & (ev.near_creep_n >= 2) & ev.creep_ok & ~drift & ref_apart
                         & ~ev.stepped(ev.rep_ref) & (np.abs(ev.creep_of(ev.rep_ref)) > ev.drift_tol))
        rep_fired = rep_fired & ~rep_overruled
        near_ok = ev.near_ok
        # Unusual against its history with no nearby market moving with it: on a day the whole region's chilli
        # jumps, every honest price is unusual against its history and the nearby markets vouch for it.
        suspect = hist & ~(near_ok & ~fired[:, _C["nearby"]])
        one = ev.rep_n == 1
        if (rep_fired & one).any():
            # With one other reporter, a disagreement says only that one of the two is wrong: the one whose
            # price is also a suspect is; the other stands.
            by_series = np.bincount(ev.series, weights=suspect.astype(np.float64))
            other_unusual = by_series[ev.series] + hist_outside - suspect > 0
            rep_fired = rep_fired & ~(one & ~suspect & other_unusual)
        own_abs = np.abs(np.where(near_ok, ev.own, 0.0))
        # Moving back toward its own baseline (the end of a spike) is not moving away alone, and a price
        # that is ordinary against its own history is a market's own step, not a market moving alone.
        with np.errstate(all="ignore"):
            away = ~(np.abs(np.log(ev.x / ev.base)) < np.abs(np.log(ev.last / ev.base)))
        near_diverged = (fired[:, _C["nearby"]] & (own_abs > np.abs(np.nan_to_num(ev.near_ref))) & away
                         & hist)
        # A creep that had gone past the limit on the days before as well is held though its price is ordinary
        # against its own history: the creeping prices accepted on those days raised that history.
        with np.errstate(all="ignore"):
            before, now = ev.crept_before, ev.creep_of(ev.x)
            kept_on = (np.abs(before) > ev.drift_tol) & (before * now > 0)
        drifted = drift & apart & away & (hist | kept_on)
        region_ok = hist & ~near_ok & self._region_confirms(ev, fired)
        in_line = self._in_line(ev, hist & ~near_ok & ~ev.rep_ok & ~region_ok)
        alone = hist & ~near_ok & ~ev.rep_ok & ~region_ok & ~in_line
        others = rule | rep_fired | near_diverged | drifted
        quarantined = others | alone
        return Assessment(evidence=ev, score=score, fired=fired, hist=hist, suspect=suspect, region_ok=region_ok,
                          in_line=in_line,
                          near_diverged=near_diverged,
                          drifted=drifted, rep_overruled=rep_overruled, rep_decides=rep_fired,
                          quarantined=quarantined, alone=alone & ~others)

    def _region_confirms(self, ev: Evidence, fired: np.ndarray) -> np.ndarray:
        """Whether the nearby markets' latest accepted prices of the last `region_days` days (`level_ref`) account
        for each row's price being unusual against its history: they stand away from their own history medians the
        same way, and the price measured from its history moved by as much is ordinary for every deciding history
        check. A market pushing its price alone has neighbours at their usual level, so its price is judged by its
        history as before, however small each day's step; one day's jump past the commodity's limit is not a level."""
        jumped = fired[:, _C["jump"]] if "jump" in self.config.history_checks else np.zeros(len(ev.x), bool)
        out: np.ndarray = (ev.level_n >= 1) & _explained_by(ev.x, ev.level_ref, ev.base, ev.stats, self.config) & ~jumped
        return out

    def _in_line(self, ev: Evidence, rows: np.ndarray) -> np.ndarray:
        """Of `rows`, those whose price is within the series' usual day-to-day spread (`_spread`) of its last
        accepted daily price of the last 7 days, where that price was itself confirmed: ordinary against the
        history, or accounted for by the nearby markets' latest accepted prices of its own day (`_region_confirms`).
        A price held where it was when a peer last confirmed it is the market's price still, though nobody nearby
        reported today. A price accepted this way confirms nothing after it, so a reporter stepping a price up a
        little each day gets one step past what the history allows and is held from the next."""
        out = np.zeros(len(ev.x), bool)
        for i in np.flatnonzero(rows & ev.last_recent & ~np.isnan(ev.last)).tolist():
            s, last = int(ev.series[i]), float(ev.last[i])
            if abs(math.log(float(ev.x[i]) / last)) > self._spread(s):
                continue
            one = np.array([i])
            st = _take_stats(ev.stats, one)
            ordinary = bool(_explained_by(np.array([last]), np.zeros(1), ev.base[one], st, self.config)[0])
            if not ordinary:
                level, n = self._region_level(s, int(self._last_day[s]))
                ordinary = n >= 1 and bool(_explained_by(np.array([last]), np.array([level]), ev.base[one], st,
                                                         self.config)[0])
            out[i] = ordinary
        return out

    def _region_level(self, s: int, day: int) -> tuple[float, int]:
        """The median log distance of the nearby markets' latest accepted daily prices of the last `region_days`
        days up to `day` from their own history medians, and how many had one (NaN, 0: none)."""
        back = self.config.region_days
        if not back:
            return math.nan, 0
        moves = []
        for t in self._neighbours(s):
            price = self._accepted_since(t, day - back, day)
            base = self._base_median(t)
            if price is not None and not math.isnan(base):
                moves.append(math.log(price / base))
        return _median_n(moves)

    def _accepted_since(self, t: int, since: int, day: int) -> float | None:
        """Series t's latest accepted daily price from `since` to `day`, the day waiting to join its history
        included."""
        pend = self._pending.get(t)
        if pend is not None and since <= pend[0] <= day and pend[1]:
            return float(np.median(pend[1]))
        recent = self._recent.get(t)
        got = max((d for d in recent if since <= d <= day), default=None) if recent else None
        return None if got is None or recent is None else recent[got]

    def _explain(self, a: Assessment, i: int, obs_id: str, *, provisional: bool = False) -> Verdict:
        results = []
        for k, check in enumerate(ALL_CHECKS):
            sc = float(a.score[i, k])
            limit, reason = check.explain(a.evidence, i, sc)
            results.append(CheckResult(name=check.name, family=check.family, fired=bool(a.fired[i, k]),
                                       score=None if math.isnan(sc) else sc, limit=limit, reason=reason))
        status = QUARANTINED if a.quarantined[i] else ACCEPTED
        summary = self._summary(a, i, status)
        if provisional:
            summary += ("; provisional until the other reporters here (and, for an unusual price, the nearby markets) "
                        "report today or the day's cut-off")
        return Verdict(observation_id=obs_id, status=status, checks=tuple(results), summary=summary,
                       provisional=provisional)

    def _summary(self, a: Assessment, i: int, status: str) -> str:
        fired = [c for c in CHECKS if a.fired[i, _C[c]]]
        if not fired:
            return "accepted: no check fired"
        rule = [c for c in fired if FAMILY[c] == "rule"]
        ev = a.evidence
        compliance = [c for c in fired if FAMILY[c] == "compliance"]
        if status == ACCEPTED and compliance and len(compliance) == len(fired):
            return f"accepted; compliance finding ({', '.join(compliance)}): above the legal ceiling"
        if status == ACCEPTED:
            if a.rep_overruled[i]:
                return ("accepted: the other reporters here disagree, but they crept away from the nearby "
                        "markets and this price did not")
            if a.hist[i]:
                return (f"accepted: unusual against its own history ({', '.join(fired)}) but "
                        + "; ".join(self._vouchers(a, i)))
            return f"accepted: only {', '.join(fired)} fired, which alone does not quarantine"
        parts = []
        if rule:
            parts.append(f"rule broken ({', '.join(rule)})")
        if a.rep_decides[i]:
            parts.append("other reporters at this market disagree")
        if a.near_diverged[i]:
            parts.append("it moved away from its last price while nearby markets did not")
        if a.drifted[i]:
            parts.append(f"it crept away from the nearby markets over the last {self.config.drift_days} days")
        if a.hist[i] and not ev.near_ok[i] and not ev.rep_ok[i]:
            parts.append("unusual against its history and no peer can confirm it")
        return "quarantined: " + "; ".join(parts)

    @staticmethod
    def _vouchers(a: Assessment, i: int) -> list[str]:
        """What the peers actually reported that lets an unusual price stand, in the summary's words."""
        ev, out = a.evidence, []
        x = float(ev.x[i])
        if ev.rep_ok[i] and not a.rep_decides[i]:
            n = int(ev.rep_n[i])
            if ev.peers is not None and ev.peers[i]:
                said = ", ".join(f"{p.reporter} Rp {p.price:,.0f}".replace(",", ".") for p in ev.peers[i])
            else:
                said = f"{n} price{'s' if n != 1 else ''}"
            out.append(f"the other reporter{'s' if n != 1 else ''} here reported {said}, "
                       f"{_pct_of(x, float(ev.rep_ref[i]))} of it")
        if ev.near_ok[i] and not a.fired[i, _C["nearby"]]:
            out.append(f"nearby markets moved {100 * math.expm1(float(ev.near_ref[i])):+.1f} % the same day, "
                       f"this market {100 * math.expm1(float(ev.own[i])):+.1f} %")
        elif ev.near_ok[i] and not a.near_diverged[i]:
            out.append("it moved back toward its usual level or stays ordinary against its history")
        if a.region_ok[i]:
            n = int(ev.level_n[i])
            out.append(f"no nearby market reported today, but the latest accepted price{'s' if n != 1 else ''} of "
                       f"{n} nearby market{'s' if n != 1 else ''} in the last {a.evidence.config.region_days} days "
                       f"stand {100 * math.expm1(float(ev.level_ref[i])):+.1f} % from their usual level, this "
                       f"price {100 * math.expm1(math.log(float(ev.x[i]) / float(ev.base[i]))):+.1f} %")
        return out or ["no check that decides fired"]

    # -- streaming ----------------------------------------------------------------------------------------

    def check(self, obs: PriceObservation) -> Verdict:
        """Validate one observation as it arrives; its verdict may be provisional (see `observe`)."""
        return self.observe(obs)[0][1]

    def preview(self, obs: PriceObservation) -> Verdict:
        """The verdict `obs` would get if it arrived now, judged with the day's reports so far, without
        keeping it: no report, reporter, pending day or verdict changes (a series seen for the first time is
        registered, empty). Always provisional: the day's other reporters may still change it."""
        s = self._series(obs.series, obs.region)
        day = day_of(obs.time, self.config.tz_offset_s)
        d = self._days.get((s, day))
        scratch = _Day()
        for o in [o for o in (d.reports if d is not None else []) if o.id != obs.id] + [obs]:
            scratch.add(o)
        return self._judge(s, day, scratch, scratch.reports, provisional=True)[obs.id]

    def observe(self, obs: PriceObservation) -> list[tuple[PriceObservation, Verdict]]:
        """Take one observation as it arrives: its verdict first, then every verdict this changed.

        A day's verdicts for a series do not depend on the order its reporters arrived in: the day's
        reports are judged together, each against the others of the same day (each reporter's latest
        report is theirs), and judged again as reports come in. They stay provisional until every reporter
        seen for the series lately has reported that day, or the cut-off (`settle_after_s` after the local
        day ends) has passed; then they are final and the day's accepted median joins the history. A day that
        came in a backlog stays provisional until its backlog window ends (`_due`), and a day waits while an
        earlier day of its series is open (`_final_now`).

        One arrival judges only the reports whose verdict it can change, so its cost does not grow with
        the day's reports: the new one, and each reporter's latest when the new one replaces its
        reporter's latest or the nearby markets' move changed. A reporter's earlier reports keep their
        provisional verdicts until the day is judged whole again: when it closes, when its series' history
        moves, or when its first unusual price makes which of two disagreeing reporters is wrong a question."""
        cfg = self.config
        s = self._series(obs.series, obs.region)
        day = day_of(obs.time, cfg.tz_offset_s)
        out = self.settle(obs.arrived_at)
        self._commit_pending(s, day)
        d = self._days.get((s, day))
        if d is None:
            d = self._days[(s, day)] = _Day(first_arrival=obs.arrived_at,
                                            late=obs.arrived_at - obs.time > cfg.late_after_s)
            self._open.setdefault(s, set()).add(day)
        elif obs.id in d.verdicts:
            return [(obs, d.verdicts[obs.id]), *out]  # the same record again: sync is idempotent
        replaced = d.add(obs)
        seen = self._reporters.setdefault(s, {})
        seen[obs.reporter] = max(day, seen.get(obs.reporter, day))
        near = self._nearby_now(s, day)
        whole = d.judged_at != int(self._pos[s])  # the history moved: every report's history checks change
        if d.settled:
            # A late report for a day already final is judged against that day; the others stand.
            verdict = self._judge(s, day, d, d.reports if whole else [obs], near=near, provisional=False)[obs.id]
            d.verdicts[obs.id] = verdict
            return [(obs, verdict), *out]
        done = self._final_now(s, day, d)
        if done or whole:
            rows = d.reports
        elif replaced or not _same_near(near, d.near):
            rows = [obs, *(o for o in d.latest.values() if o is not obs)]
        else:
            rows = [obs]
        unusual_before = d.unusual
        verdicts = self._judge(s, day, d, rows, near=near, provisional=not done)
        if not unusual_before and d.unusual and rows is not d.reports:
            # With one other reporter, the first unusual price of the day decides which of two disagreeing
            # reporters is wrong, for every report of the day.
            rows = d.reports
            verdicts = self._judge(s, day, d, rows, near=near, provisional=not done)
        if done and d.unusual and not self._nearby_reported(s, day):
            # A price unusual against its history waits for the nearby markets that report here lately: on a
            # regional move the first market to report it has nobody to vouch for it yet, and judged final then,
            # a lone reporter's honest price was held for good whichever market came first.
            done, rows = False, d.reports
            verdicts = self._judge(s, day, d, rows, near=near, provisional=True)
        changed = [(o, verdicts[o.id]) for o in rows
                   if o.id != obs.id and _differs(d.verdicts.get(o.id), verdicts[o.id])]
        d.verdicts.update(verdicts)
        if done:
            for o, v in self._settle_day(s, day, d):
                if o.id == obs.id:
                    verdicts[obs.id] = v
                else:
                    changed.append((o, v))
        return [(obs, verdicts[obs.id]), *changed, *self._vouched(s, day), *out]

    def _nearby_reported(self, s: int, day: int) -> bool:
        """Whether every nearby market's series of s's group that reported in the last `expect_days` days has
        reported `day`."""
        since = day - self.config.expect_days
        for t in self._neighbours(s):
            other = self._days.get((t, day))
            if (other is None or not other.prices) and max(self._reporters.get(t, {}).values(), default=since - 1) >= since:
                return False
        return True

    def _final_now(self, s: int, day: int, d: _Day) -> bool:
        """Whether a day can be made final as a report arrives: every reporter seen lately has reported it, it did
        not come in a backlog (`_backlog`), and no earlier day of the series is still open (its accepted prices
        would never join the history: history moves forward only)."""
        return self._complete(s, day, d) and not self._backlog(day, d) and not self._earlier_open(s, day)

    def _earlier_open(self, s: int, day: int) -> bool:
        """Whether a day of series s before `day` is not final yet."""
        return any(other < day for other in self._open.get(s, ()))

    def _backlog(self, day: int, d: _Day) -> bool:
        """Whether `day` came in a backlog (devices back after an outage, a hub that has seen none of the region
        yet): first heard of after its own cut-off, or its first report `late_after_s` after it was taken. Such a
        day is final only when its backlog window ends (`_due`), judged then in day and series order with the
        nearby markets' backlogs of it and of the days before: judged as it arrived, its verdict followed which
        device's backlog the hub happened to take first."""
        cfg = self.config
        return d.late or d.first_arrival > (day + 1) * DAY_S - cfg.tz_offset_s + cfg.settle_after_s

    def _vouched(self, s: int, day: int) -> list[tuple[PriceObservation, Verdict]]:
        """Series s reported `day`: the nearby series' days that waited for it (an unusual price, see `observe`)
        judged again with its move, and made final once nobody else is awaited; the verdicts that changed."""
        out: list[tuple[PriceObservation, Verdict]] = []
        for u in self._neighbours(s):
            d = self._days.get((u, day))
            if d is None or d.settled or not d.unusual:
                continue
            done = self._final_now(u, day, d) and self._nearby_reported(u, day)
            verdicts = self._judge(u, day, d, d.reports, provisional=not done)
            out.extend((o, v) for o in d.reports if _differs(d.verdicts.get(o.id), v := verdicts[o.id]))
            d.verdicts.update(verdicts)
            if done:
                out.extend(self._settle_day(u, day, d))
        return out

    def settle(self, now: int) -> list[tuple[PriceObservation, Verdict]]:
        """Make final every open day whose cut-off has passed by hub time `now`; returns the verdicts that
        became final (the hub calls it on a timer as well as on every arrival)."""
        out: list[tuple[PriceObservation, Verdict]] = []
        settled: set[tuple[int, int]] = set()
        # A day sent late waits for its series' earlier days (`_due`): once they are final, another pass.
        while due := [key for key, d in self._days.items() if not d.settled and self._due(key[0], key[1], d, now)]:
            # In day order, and within a day by series (market, commodity, ...), not by which came first: a
            # neighbour settled before it on the same day vouches with its accepted price, whichever device's
            # backlog came first.
            for s, day in sorted(due, key=lambda k: (k[1], self._meta[k[0]])):
                d = self._days[(s, day)]
                self._commit_pending(s, day)  # the series' day before, settled in this pass, is its history now
                verdicts = self._judge(s, day, d, d.reports, provisional=False)
                out.extend((o, verdicts[o.id]) for o in d.reports)
                d.verdicts.update(verdicts)
                out.extend(self._settle_day(s, day, d))
            settled.update(due)
        if settled:
            out.extend(self._rejudge_open({s for s, _ in settled}))
            oldest = max(k[1] for k in settled) - 7
            for key in [k for k, d in self._days.items() if d.settled and k[1] < oldest]:
                del self._days[key]
        return out

    def _rejudge_open(self, series: set[int]) -> list[tuple[PriceObservation, Verdict]]:
        """The open days of `series`, after days of theirs were just made final: judged again against the history
        those moved (a live price that came with a backlog is judged by the backlog's days, not only at its own
        day's next report), and made final where `observe` would have made them so but for the earlier days
        that were open then; the verdicts that changed."""
        out: list[tuple[PriceObservation, Verdict]] = []
        for (s, day), d in sorted(self._days.items(), key=lambda kv: kv[0][1]):
            if s not in series or d.settled or not d.reports:
                continue
            self._commit_pending(s, day)
            done = self._final_now(s, day, d)
            if not done and d.judged_at == int(self._pos[s]):
                continue
            verdicts = self._judge(s, day, d, d.reports, provisional=not done)
            if done and d.unusual and not self._nearby_reported(s, day):
                done, verdicts = False, self._judge(s, day, d, d.reports, provisional=True)
            out.extend((o, v) for o in d.reports if _differs(d.verdicts.get(o.id), v := verdicts[o.id]))
            d.verdicts.update(verdicts)
            if done:
                out.extend(self._settle_day(s, day, d))
        return out

    def _due(self, s: int, day: int, d: _Day, now: int) -> bool:
        """Whether a day's verdicts are final by hub time `now` whoever has not reported: from `settle_after_s`
        after the local day ends, and not before `backlog_window_s` after its first report arrived, so the
        devices' backlogs of a day whose reports came in later are judged together whichever came first. A day
        of today sent late (`late_after_s`) whose reporters have all reported is final when that window ends,
        unless an earlier day of its series is still open."""
        cfg = self.config
        if now < d.first_arrival + cfg.backlog_window_s:
            return False
        return now >= (day + 1) * DAY_S - cfg.tz_offset_s + cfg.settle_after_s or (
            d.late and self._complete(s, day, d) and not self._earlier_open(s, day))

    def _complete(self, s: int, day: int, d: _Day) -> bool:
        """Every reporter seen for this series in the last `expect_days` days has reported this day."""
        since = day - self.config.expect_days
        return all(r in d.latest for r, last in self._reporters.get(s, {}).items() if last >= since)

    def _settle_day(self, s: int, day: int, d: _Day) -> list[tuple[PriceObservation, Verdict]]:
        """Make a day final: its accepted prices join the history, or, all held, it joins the series' run of held
        days (`_level_run`); the verdicts of the run's reports taken as a level shift."""
        d.settled = True
        self._open.get(s, set()).discard(day)
        if d.prices:
            self._put_raw(s, day, _median_sorted(d.prices))
        accepted = [float(o.price_idr) for o in d.reports if not d.verdicts[o.id].quarantined]
        if not accepted:
            if not d.reports:
                return []
            alone = all(d.alone.get(o.id, False) for o in d.reports)
            taken = self._level_run(s, _HeldDay(day, _median_sorted(d.prices), tuple(
                (o, d.verdicts[o.id]) for o in d.reports)) if alone else None)
            if not taken:
                return []
            why = self._level_summary(s, taken)
            out = []
            for h in taken:
                for o, v in h.held:
                    v = replace(v, status=ACCEPTED, summary=why, provisional=False)
                    out.append((o, v))
                    other = self._days.get((s, h.day))
                    if other is not None and o.id in other.verdicts:
                        other.verdicts[o.id] = v
            return out
        self._level_run(s, None)
        self._commit_pending(s, day)
        pend = self._pending.get(s)
        if pend is None:
            self._pending[s] = (day, accepted)
        elif pend[0] == day:
            pend[1].extend(accepted)
        # An older day than the pending one settled late; history moves forward only.
        return []

    def _judge(self, s: int, day: int, d: _Day, rows: Sequence[PriceObservation], *,
               near: _Near | None = None, provisional: bool) -> dict[str, Verdict]:
        """Reports `rows` of series s on `day` (all of the day's, or some of them when the others' flags
        were judged against the same history), each against the other reporters' latest reports of that
        day."""
        whole = len(rows) == len(d.reports)
        outside = 0 if whole else d.unusual - sum(d.hist.get(o.id, False) for o in rows)
        n = len(rows)
        x = np.array([float(o.price_idr) for o in rows])
        rep_ref = np.full(n, np.nan)
        rep_n = np.zeros(n, np.int64)
        peers = []
        for k, o in enumerate(rows):
            others = [p for r, p in d.latest.items() if r != o.reporter]
            rep_ref[k] = _peer_ref(float(o.price_idr), [float(p.price_idr) for p in others])
            rep_n[k] = len(others)
            peers.append(tuple(PeerReport(reporter=p.reporter, price=float(p.price_idr), time=p.time)
                               for p in others))
        near = self._nearby_now(s, day) if near is None else near
        sa = np.full(n, s, np.int64)
        base, st = self._baselines(sa)
        a = self._assess(sa, x, np.array([o.time for o in rows], np.int64),
                         np.array([o.arrived_at for o in rows], np.int64), np.full(n, day, np.int64),
                         rep_ref, rep_n, _NearRows.repeat(near, n), base, st, tuple(peers),
                         hist_outside=outside)
        for k, o in enumerate(rows):
            d.hist[o.id] = bool(a.suspect[k])
            d.alone[o.id] = bool(a.alone[k])
        d.unusual = outside + int(a.suspect.sum())
        d.judged_at = int(self._pos[s])
        d.near = near
        self.judged += n
        return {o.id: self._explain(a, k, o.id, provisional=provisional) for k, o in enumerate(rows)}

    def _nearby_now(self, s: int, day: int) -> _Near:
        """The median log change of the nearby markets' series of s's group from their reports of the same
        day against their accepted price of the day s last had one (the same span as s's own move), and
        their creep (`_creep`). A neighbour that has not reported today does not count: a move that came
        today would make this market look as if it moved alone. A neighbour's day that came in by an import
        (`validate_batch`) has no reports here, and counts by the daily price it accepted."""
        changes, today = [], {}
        ref_day = int(self._last_day[s])
        for t in self._neighbours(s):
            other = self._days.get((t, day))
            if other is not None and other.prices:
                today[t] = _median_sorted(other.prices)
            elif (imported := self._imported_day(t, day)) is not None:
                today[t] = imported
            else:
                continue
            then = self._accepted_by(t, ref_day)
            if then is not None:
                changes.append(math.log(today[t] / then))
        ref, n = _median_n(changes)
        return self._creep(s, day, today)._replace(ref=ref, n=n)

    def _imported_day(self, t: int, day: int) -> float | None:
        """Series t's accepted daily price of `day` where no report of that day came in live: an import's."""
        return self._recent.get(t, {}).get(day)

    def _creep(self, s: int, day: int, today: Mapping[int, float]) -> _Near:
        """Where series s's creep is measured from: the median of all its reports on the latest day
        `drift_days` to `drift_days` + 7 days back, that day, the median log change of the nearby markets
        from their own reports of that day to `today`'s (series -> median of the day's reports), s's latest
        day before today and its two largest day-to-day rises and falls since the day measured from (`ref` and
        `n` are left for the caller)."""
        raw, lag = self._raw.get(s), self.config.drift_days
        ref = max((d for d in raw if day - lag - 7 <= d <= day - lag), default=None) if raw else None
        if raw is None or ref is None:
            return _NO_CREEP
        moves = []
        for t, now in today.items():
            then = self._settled(t, ref)
            if then is not None:
                moves.append(math.log(now / then))
        days = [d for d in sorted(raw) if ref <= d < day]
        path = [raw[d] for d in days]
        steps = [math.log(b / a) for a, b in itertools.pairwise(path)]
        up = [*sorted((x for x in steps if x > 0), reverse=True), 0.0, 0.0]
        down = [*sorted((-x for x in steps if x < 0), reverse=True), 0.0, 0.0]
        creep, n = _median_n(moves)
        return _Near(math.nan, 0, raw[ref], ref, creep, n, path[-1], (up[0], up[1], down[0], down[1]),
                     self._crept_before(raw, ref, days[1:], today))

    def _accepted_by(self, t: int, day: int) -> float | None:
        """Series t's latest accepted daily price on or before `day`, within the span kept (`_remember`): a
        neighbour's reference for a move since `day`. Its price of that very day alone would do only while the
        neighbour never has a day held: one outlier of its own held, it could vouch for nobody the next day,
        and two markets of a region then held each other's honest prices for good, as each waited for the
        other's accepted price of its own last day."""
        recent = self._recent.get(t)
        if not recent:
            return None
        got = recent.get(day)
        if got is not None:
            return got
        before = [d for d in recent if d <= day]
        return recent[max(before)] if before else None

    def _settled(self, t: int, day: int) -> float | None:
        """Series t's price of `day` as a neighbour's reference: its accepted daily price, else the median of
        all its reports (a day whose accepted price is not known yet)."""
        got = self._recent.get(t, {}).get(day)
        return self._raw.get(t, {}).get(day) if got is None else got

    def _crept_before(self, raw: Mapping[int, float], ref: int, days: list[int], today: Mapping[int, float]) -> float:
        """How far the series had crept from `ref` past the nearby markets (those that reported today) on each
        of its last `drift_confirm_days` reported days before today: the least of them, signed; 0 when they
        went both ways, NaN when there are not that many days or a day without a nearby market's price."""
        k = self.config.drift_confirm_days
        if not k or len(days) < k:
            return math.nan
        crept = []
        for d in days[-k:]:
            moves = []
            for t in today:
                a, b = self._settled(t, d), self._settled(t, ref)
                if a is not None and b is not None:
                    moves.append(math.log(a / b))
            if not moves:
                return math.nan
            crept.append(math.log(raw[d] / raw[ref]) - _median_n(moves)[0])
        if all(c > 0 for c in crept):
            return min(crept)
        return max(crept) if all(c < 0 for c in crept) else 0.0

    def _put_raw(self, s: int, day: int, value: float, *, keep: bool = False) -> None:
        """Remember the median of all of a day's reports of s (with `keep`, only if none is known: an accepted
        daily price stands in for a day whose reports are gone, after a restart)."""
        raw = self._raw.setdefault(s, {})
        if keep and day in raw:
            return
        raw[day] = value
        if len(raw) > 2 * (self.config.drift_days + 7):
            for d in [d for d in raw if d < day - self.config.drift_days - 7]:
                del raw[d]

    def _lone(self, s: int, day: int) -> bool:
        """Whether no nearby market of s's group reported within `expect_days` up to `day`: nobody could vouch
        for a move of s's price, or dispute it."""
        since = day - self.config.expect_days
        for t in self._neighbours(s):
            if any(since <= d <= day for d in self._raw.get(t, ())):
                return False
            if max(self._reporters.get(t, {}).values(), default=since - 1) >= since:
                return False
        return True

    def _spread(self, s: int) -> float:
        """Series s's usual day-to-day move (log terms): nine in ten of its history's moves are no larger; at
        least `scale_floor` (a sticky price's moves are mostly 0)."""
        n, w = int(self._pos[s]), self.config.window
        vals = self._hist[s, [(n - k) % w for k in range(min(n, w), 0, -1)]]
        moves = np.abs(np.diff(np.log(vals[~np.isnan(vals)])))
        return max(self.config.scale_floor, float(np.quantile(moves, 0.9)) if len(moves) else 0.0)

    def _level_run(self, s: int, held: _HeldDay | None) -> list[_HeldDay]:
        """Follow series s's run of held days: `held` is a day whose reports were all held only as unusual with
        no peer to confirm them (None: the day ended the run, accepted or held for another reason). When no
        nearby market reported and the run's last `level_days` days stay within the series' usual day-to-day
        spread of each other, the series has shifted level: the run's days at that level (the latest ones, each
        within the spread of it) are returned, its history is moved to the new level and those days join it.
        A day that went back, a spike still moving or a mistyped price breaks the run or never joins it."""
        k = self.config.level_days
        if held is None or not k or not self._lone(s, held.day):
            self._runs.pop(s, None)
            return []
        run = self._runs.setdefault(s, [])
        run.append(held)
        self._tell_level(s, held.day, LevelMark(joined=held.price))
        if len(run) < k:
            return []
        spread = self._spread(s)
        last = np.log([h.price for h in run[-k:]])
        if float(last.max() - last.min()) > spread:
            return []
        level = float(np.exp(np.median(last)))
        base = self._base_median(s)
        if not math.isnan(base) and not 1 / _LEVEL_FACTOR < level / base < _LEVEL_FACTOR:
            return []  # a wrong unit or a mistyped digit kept up, not a market's move: an operator decides
        at = len(run)
        while at > 0 and abs(math.log(run[at - 1].price / level)) <= spread:
            at -= 1
        taken = run[at:]
        del self._runs[s]
        self._commit_pending(s, 10**12)
        taken = [h for h in taken if h.day > self._last_day[s]]
        if not math.isnan(base):
            factor = level / base
            self._hist[s] *= factor  # later prices are measured from the new level, with the old spread
            self._base_cache.pop(s, None)
            # Kept with the first day committed after the move (history moves forward only, so every day before it
            # was committed before the move), for a restart to move the same days (`seed`).
            self._tell_level(s, taken[0].day if taken else held.day, LevelMark(shifts=(factor,)))
        for h in taken:
            self._tell_level(s, h.day, LevelMark(taken=True))
            self._commit(s, h.day, h.price)
        return taken

    def _tell_level(self, s: int, day: int, mark: LevelMark) -> None:
        if self.on_level is not None:
            market, _, commodity, grade, unit = self._meta[s]
            self.on_level((market, commodity, grade, unit), day, mark)

    def _level_summary(self, s: int, taken: Sequence[_HeldDay]) -> str:
        n = self.config.level_days
        since = date_of(taken[0].day).isoformat()
        price = f"{taken[-1].price:,.0f}".replace(",", ".")
        return (f"accepted: level held on {n} reported days with no nearby market to compare (Rp {price} since "
                f"{since}); a level shift, taken without an operator")

    def admit(self, obs: PriceObservation) -> None:
        """Count an observation that an operator released into its series' history, if its day has not joined
        the history yet: history moves forward only, and a day already in it stays as it was judged."""
        s = self._series(obs.series, obs.region)
        day = day_of(obs.time, self.config.tz_offset_s)
        if day <= self._last_day[s]:
            return
        self._commit_pending(s, day)
        pend = self._pending.get(s)
        if pend is None:
            self._pending[s] = (day, [float(obs.price_idr)])
        elif pend[0] == day:
            pend[1].append(float(obs.price_idr))

    # -- batch --------------------------------------------------------------------------------------------

    def validate_batch(self, batch: ObservationBatch, *, explain_quarantined: bool = False) -> BatchResult:
        """Validate many observations day by day: each day's reports are judged against the history before
        that day and against each other, then that day's accepted medians join the history. With
        `explain_quarantined`, every quarantined row also gets its full Verdict."""
        cfg = self.config
        verdicts: dict[int, Verdict] = {}
        n = len(batch)
        fired = np.zeros((n, len(CHECKS)), bool)
        score = np.full((n, len(CHECKS)), np.nan, np.float32)
        quarantined = np.zeros(n, bool)
        leveled = np.zeros(n, bool)
        if n == 0:
            return BatchResult(fired=fired, score=score, quarantined=quarantined, leveled=leveled)
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
            if self._pending:
                for u in np.unique(s).tolist():
                    self._commit_pending(u, day)
            rep_ref, rep_n, gmed, gidx, useries = _group_refs(s, x)
            base, st = self._baselines(s)
            near = self._nearby_refs(useries, gmed, day).take(gidx)
            a = self._assess(s, x, batch.time[rows], batch.arrived[rows], np.full(len(rows), day),
                             rep_ref, rep_n, near, base, st)
            fired[rows] = a.fired
            score[rows] = a.score
            quarantined[rows] = a.quarantined
            if explain_quarantined:
                for k in np.flatnonzero(a.quarantined).tolist():
                    row = int(rows[k])
                    verdicts[row] = self._explain(a, k, batch.ids[row] if batch.ids else str(row))
            ok = ~a.quarantined
            for taken in self._level_runs(s, x, a, rows, day):
                got = np.array([r for h in taken for r in h.rows], np.int64)
                quarantined[got] = False
                leveled[got] = True
                for r in got.tolist():
                    verdicts.pop(r, None)
                ok[np.isin(rows, got)] = False  # already in the history
            if ok.any():
                _, _, acc_med, _, acc_series = _group_refs(s[ok], x[ok])
                self._commit_many(acc_series, day, acc_med)
        return BatchResult(fired=fired, score=score, quarantined=quarantined, verdicts=verdicts, leveled=leveled)

    def _level_runs(self, s: np.ndarray, x: np.ndarray, a: Assessment, rows: np.ndarray,
                    day: int) -> list[list[_HeldDay]]:
        """One batch day's part in each series' run of held days (`_level_run`): the runs taken as level shifts."""
        out = []
        present = np.unique(s)
        running = [u for u in present.tolist() if u in self._runs] if self._runs else []
        for u in sorted({*np.unique(s[a.quarantined]).tolist(), *running}):
            mine = s == u
            if not a.quarantined[mine].all():
                if u in self._runs:
                    self._level_run(u, None)
                continue
            held = None
            if a.alone[mine].all():
                held = _HeldDay(day, float(np.median(x[mine])), rows=tuple(rows[mine].tolist()))
            if held is not None or u in self._runs:
                taken = self._level_run(u, held)
                if taken:
                    out.append(taken)
        return out

    def _nearby_refs(self, useries: np.ndarray, gmed: np.ndarray, day: int) -> _NearRows:
        """For each series present today, the median log change of the other nearby series of its group
        that reported today, from their accepted price on the day this series last had one, and their
        creep (`_creep`)."""
        today = dict(zip(useries.tolist(), gmed.tolist(), strict=True))
        out = _NearRows.repeat(_NO_CREEP, len(useries))
        for k, u in enumerate(useries.tolist()):
            ref_day = int(self._last_day[u])
            vals, near = [], {}
            for t in self._neighbours(u):
                if t not in today:
                    continue
                near[t] = today[t]
                then = self._accepted_by(t, ref_day)
                if then is not None:
                    vals.append(math.log(today[t] / then))
            c = self._creep(u, day, near)._replace(ref=math.nan)
            out.ref[k], out.n[k] = _median_n(vals)
            (out.creep_from[k], out.creep_day[k], out.creep[k], out.creep_n[k], out.creep_last[k],
             out.creep_steps[k], out.crept_before[k]) = c[2:]
        for u, v in today.items():
            self._put_raw(u, day, v)
        return out


def _explained_by(x: np.ndarray, level: np.ndarray, base: np.ndarray, st: RobustStats,
                  cfg: ValidationConfig) -> np.ndarray:
    """Whether each price `x`, moved back by `level` (log terms; NaN or 0: not moved), is ordinary against its
    history for the deciding history checks that measure from the median, and the move is the price's own way."""
    lv = np.nan_to_num(level)
    with np.errstate(all="ignore"):
        own = np.log(x / base)
        moved = history_scores(x * np.exp(-lv), st)
    still = np.zeros(len(x), bool)
    if "hampel" in cfg.history_checks:
        still |= moved.hampel > cfg.hampel_k
    if "modified_z" in cfg.history_checks:
        still |= moved.modified_z > cfg.modz_limit
    same_way: np.ndarray = (lv == 0) | (own * lv > 0)
    out: np.ndarray = same_way & ~still & ~np.isnan(base)
    return out


def _take_stats(st: RobustStats, idx: np.ndarray) -> RobustStats:
    return RobustStats(median=st.median[idx], mad=st.mad[idx], meanad=st.meanad[idx], mean=st.mean[idx],
                       sd=st.sd[idx], q1=st.q1[idx], q3=st.q3[idx], n=st.n[idx], floor=st.floor[idx])


def _pct_of(x: float, ref: float) -> str:
    """How far `ref` is from x, in words: "within 1.2 %"."""
    return f"within {100 * abs(ref / x - 1):.1f} %"


@dataclass(slots=True)
class _Day:
    """One series' reports of one local day and their latest verdicts, while the day is open, with the
    running summaries one arrival needs (so its cost does not grow with the day's reports)."""

    first_arrival: int = 0  # hub time the day's first report arrived
    late: bool = False  # that report arrived `late_after_s` after it was taken: the day came in a backlog
    reports: list[PriceObservation] = field(default_factory=list)
    verdicts: dict[str, Verdict] = field(default_factory=dict)
    settled: bool = False
    latest: dict[str, PriceObservation] = field(default_factory=dict)  # reporter -> latest by device time
    prices: list[int] = field(default_factory=list)  # every report's price, sorted: the day's median
    hist: dict[str, bool] = field(default_factory=dict)  # report -> a suspect: unusual, no nearby move vouches
    alone: dict[str, bool] = field(default_factory=dict)  # report -> held only as unusual with no peer to confirm
    unusual: int = 0  # suspect reports
    judged_at: int = -1  # the series' history position the flags were judged against
    near: _Near | None = None  # the nearby markets' move and level the verdicts were judged with

    def add(self, obs: PriceObservation) -> bool:
        """Take one report; True when it is now its reporter's latest (what the others are judged by)."""
        self.reports.append(obs)
        bisect.insort(self.prices, obs.price_idr)
        prev = self.latest.get(obs.reporter)
        if prev is None or obs.time >= prev.time:
            self.latest[obs.reporter] = obs
            return True
        return False


@dataclass(frozen=True, slots=True)
class _HeldDay:
    """One reported day of a series whose reports were all held as unusual with no peer to confirm them."""

    day: int
    price: float  # the median of the day's reports
    held: tuple[tuple[PriceObservation, Verdict], ...] = ()  # streamed: its reports and their final verdicts
    rows: tuple[int, ...] = ()  # validated in a batch: its rows


# A held run whose new level is this many times its old one, or less than its inverse, is no level shift a market
# makes in days but a wrong unit (per ons as per kg) or a digit too many kept up: it waits for an operator.
_LEVEL_FACTOR = 3.0


def _median_sorted(xs: list[int]) -> float:
    """The median of a sorted list, as statistics.median computes it."""
    n = len(xs)
    # A float either way: a level shift takes it into history, which the day aggregates keep as a float.
    return float(xs[n // 2]) if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


class _Near(NamedTuple):
    """What the nearby markets did on a day, as one series' checks see it."""

    ref: float  # median log change since the day this series last had an accepted price
    n: int
    creep_from: float  # this series' median of all reports on the day its creep is measured from
    creep_day: int
    creep: float  # the nearby markets' median log change since that day
    creep_n: int
    creep_last: float  # this series' median of all reports on its latest day before this one
    creep_steps: tuple[float, float, float, float]  # its two largest day-to-day rises and falls (log) since then
    crept_before: float  # its creep past the nearby markets on its previous reported days (`_crept_before`)


_NO_CREEP = _Near(math.nan, 0, math.nan, -1, math.nan, 0, math.nan, (math.nan,) * 4, math.nan)


@dataclass(frozen=True, slots=True)
class _NearRows:
    """_Near for each row of a set of rows."""

    ref: np.ndarray
    n: np.ndarray
    creep_from: np.ndarray
    creep_day: np.ndarray
    creep: np.ndarray
    creep_n: np.ndarray
    creep_last: np.ndarray
    creep_steps: np.ndarray  # (n, 4)
    crept_before: np.ndarray

    @staticmethod
    def repeat(near: _Near, n: int) -> _NearRows:
        return _NearRows(np.full(n, near.ref), np.full(n, near.n, np.int64), np.full(n, near.creep_from),
                         np.full(n, near.creep_day, np.int64), np.full(n, near.creep),
                         np.full(n, near.creep_n, np.int64), np.full(n, near.creep_last), np.tile(np.array(near.creep_steps), (n, 1)),
                         np.full(n, near.crept_before))

    def take(self, idx: np.ndarray) -> _NearRows:
        return _NearRows(self.ref[idx], self.n[idx], self.creep_from[idx], self.creep_day[idx], self.creep[idx],
                         self.creep_n[idx], self.creep_last[idx], self.creep_steps[idx], self.crept_before[idx])


def _median_n(values: list[float]) -> tuple[float, int]:
    if not values:
        return math.nan, 0
    return (values[0] if len(values) == 1 else float(statistics.median(values))), len(values)


def _same_near(a: _Near, b: _Near | None) -> bool:
    def same(x: float, y: float) -> bool:
        return x == y or (math.isnan(x) and math.isnan(y))
    return (b is not None and a.n == b.n and a.creep_n == b.creep_n and a.creep_day == b.creep_day
            and same(a.ref, b.ref) and same(a.creep, b.creep) and same(a.creep_from, b.creep_from)
            and same(a.crept_before, b.crept_before))


def _differs(old: Verdict | None, new: Verdict) -> bool:
    return old is None or old.status != new.status or old.provisional != new.provisional


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
