"""The validation checks as objects: each one scores a day's rows and explains one row, so a new check is
one new class added to ALL_CHECKS."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from coap_server.wording import count

if TYPE_CHECKING:
    from .validate import ValidationConfig

# 1.4826 * MAD estimates the standard deviation of normal data; 0.6745 is its inverse used by the
# modified z-score; 1.253314 * mean absolute deviation is the fallback when MAD is 0.
MAD_TO_SD = 1.4826
MODZ_K = 0.6745
MEANAD_TO_SD = 1.253314

# What kind of evidence a check is. "history" checks vouch only together with a peer; "reporters" and
# "nearby" are peers; a "rule" broken quarantines by itself; a "compliance" finding is reported and never
# quarantines (a price above a legal ceiling is a real price that breaks the law, not bad data).
FAMILIES = ("history", "reporters", "nearby", "rule", "compliance")


@dataclass(frozen=True, slots=True, kw_only=True)
class RobustStats:
    """Per row: median, MAD, mean absolute deviation, mean, sd, quartiles and count of the history, and
    the floor of every scale (a fraction of the median)."""

    median: np.ndarray
    mad: np.ndarray
    meanad: np.ndarray
    mean: np.ndarray
    sd: np.ndarray
    q1: np.ndarray
    q3: np.ndarray
    n: np.ndarray
    floor: np.ndarray


@dataclass(frozen=True, slots=True, kw_only=True)
class HistoryScores:
    """The four history statistics of each row and the scales they were measured in."""

    hampel: np.ndarray
    hampel_scale: np.ndarray
    modified_z: np.ndarray
    modz_scale: np.ndarray
    zscore: np.ndarray
    iqr: np.ndarray
    iqr_width: np.ndarray


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerReport:
    """What one other reporter at the same market reported, as an explanation names it."""

    reporter: str
    price: float
    time: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Evidence:
    """Everything the checks look at for a set of rows (one value per row unless said otherwise)."""

    config: ValidationConfig
    series: np.ndarray  # the validator's series index of each row
    x: np.ndarray  # price
    time: np.ndarray  # observation time
    arrived: np.ndarray  # hub arrival time
    day: np.ndarray
    stats: RobustStats
    scores: HistoryScores
    base: np.ndarray  # the series' baseline (NaN without enough history)
    last: np.ndarray  # the series' last accepted daily price
    last_recent: np.ndarray  # bool: that price is at most 7 days old
    last_kept: np.ndarray  # bool: that price is no older than the days the nearby markets' prices are kept for
    jump_lim: np.ndarray
    rep_ref: np.ndarray  # the other reporters' reference price
    rep_n: np.ndarray  # how many other reporters
    rep_tol: np.ndarray
    peers: tuple[tuple[PeerReport, ...], ...] | None  # per row, the other reporters' reports (streaming)
    near_ref: np.ndarray  # median log change of nearby markets since their last accepted daily price
    near_n: np.ndarray
    creep_from: np.ndarray  # the series' median of all reports on the day its creep is measured from (NaN: none)
    creep_day: np.ndarray  # that day
    near_creep: np.ndarray  # median log change of the nearby markets' median of all reports over the same days
    near_creep_n: np.ndarray
    creep_last: np.ndarray  # the series' median of all reports on its latest day before this one
    creep_steps: np.ndarray  # (n, 4): its two largest day-to-day rises and falls (log) from the creep's first day
    crept_before: np.ndarray  # its creep past the nearby markets on its previous reported days (NaN: unknown)
    # The median log distance of the nearby markets' latest accepted daily prices of the last few days from their
    # own history medians (NaN: none), and how many: where the region's level stands while none reported today.
    level_ref: np.ndarray
    level_n: np.ndarray
    drift_tol: np.ndarray
    typical: np.ndarray  # the catalogue's typical price of the commodity in the series' unit, NaN where none
    ceiling: np.ndarray  # ceiling or reference price, NaN where none
    ceiling_kind: tuple[str, ...]  # per row, "HET", "HAP" or ""
    ceiling_source: tuple[str, ...]
    ceiling_from: tuple[str, ...]  # per row, the date the ceiling took effect

    @property
    def enough(self) -> np.ndarray:
        out: np.ndarray = ~np.isnan(self.base)
        return out

    @property
    def own(self) -> np.ndarray:
        """Each row's log change since its series' last accepted daily price, compared with the nearby markets'
        move over the same days (NaN when that price is older than the days their prices are kept for). Not
        only a week back: a series held for longer (a lone reporter's step on days no neighbour reported)
        could otherwise never be vouched for again, its history never moving past its last accepted price."""
        with np.errstate(all="ignore"):
            out: np.ndarray = np.where(self.last_kept, np.log(self.x / self.last), np.nan)
        return out

    @property
    def near_ok(self) -> np.ndarray:
        out: np.ndarray = (self.near_n >= 1) & ~np.isnan(self.own)
        return out

    @property
    def creep_ok(self) -> np.ndarray:
        out: np.ndarray = ~np.isnan(self.creep_from) & (self.near_creep_n >= 1)
        return out

    def stepped(self, price: np.ndarray) -> np.ndarray:
        """Whether two days' moves the same way made at least half of how far `price` moved apart from the
        nearby markets since the creep's first day: a step or two, which `nearby` and the history checks
        judge, not a creep."""
        with np.errstate(all="ignore"):
            drift = self.creep_of(price)
            up = drift > 0
            today = np.log(price / self.creep_last) * np.where(up, 1, -1)
            s = self.creep_steps
            moves = np.stack([np.where(up, s[:, 0], s[:, 2]), np.where(up, s[:, 1], s[:, 3]),
                              np.maximum(today, 0)], axis=1)
            top2 = np.sort(moves, axis=1)[:, 1:].sum(axis=1)
            out: np.ndarray = top2 >= 0.5 * np.abs(drift)
        return out

    def creep_of(self, price: np.ndarray) -> np.ndarray:
        """How much more `price` has moved since the creep's first day than the nearby markets moved over
        the same days, in log terms (NaN where either is unknown)."""
        with np.errstate(all="ignore"):
            out: np.ndarray = np.where(self.creep_ok, np.log(price / self.creep_from) - self.near_creep, np.nan)
        return out

    @property
    def rep_ok(self) -> np.ndarray:
        out: np.ndarray = self.rep_n >= 1
        return out

    @property
    def age(self) -> np.ndarray:
        out: np.ndarray = (self.arrived - self.time).astype(np.float64)
        return out


def rp(v: float) -> str:
    return "Rp " + f"{v:,.0f}".replace(",", ".")


def pct(v: float) -> str:
    return f"{100 * v:+.1f} %"


class Check:
    """One check: `score` gives each row's statistic (NaN where the check cannot run) and whether it
    fired; `explain` gives the limit shown and the reason for one row."""

    name: ClassVar[str]
    family: ClassVar[str]

    def score(self, ev: Evidence) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def explain(self, ev: Evidence, i: int, score: float) -> tuple[float | None, str]:
        raise NotImplementedError


class _HistoryCheck(Check):
    family = "history"

    def limit(self, cfg: ValidationConfig) -> float:
        raise NotImplementedError

    def statistic(self, ev: Evidence) -> np.ndarray:
        raise NotImplementedError

    def score(self, ev: Evidence) -> tuple[np.ndarray, np.ndarray]:
        enough = ev.enough
        sc = np.where(enough, self.statistic(ev), np.nan)
        return sc, enough & (sc > self.limit(ev.config))

    def explain(self, ev: Evidence, i: int, score: float) -> tuple[float | None, str]:
        cfg = ev.config
        if math.isnan(ev.base[i]):
            return self.limit(cfg), (f"only {count(int(ev.stats.n[i]), 'accepted day')} of history; at least "
                                     f"{cfg.min_history} needed")
        return self.limit(cfg), self.reason(ev, i, score)

    def reason(self, ev: Evidence, i: int, score: float) -> str:
        raise NotImplementedError

    @staticmethod
    def sticky(ev: Evidence, i: int) -> bool:
        return float(ev.stats.mad[i]) == 0


class Hampel(_HistoryCheck):
    name = "hampel"

    def limit(self, cfg: ValidationConfig) -> float:
        return cfg.hampel_k

    def statistic(self, ev: Evidence) -> np.ndarray:
        return ev.scores.hampel

    def reason(self, ev: Evidence, i: int, score: float) -> str:
        cfg, st = ev.config, ev.stats
        floor = float(st.floor[i])
        guard = (f"; MAD is 0 (sticky price), so the scale is the floor of {cfg.scale_floor:.0%} "
                 f"of the median ({rp(floor)})") if self.sticky(ev, i) else ""
        return (f"{rp(float(ev.x[i]))} is {score:.1f} scaled MADs from the {int(st.n[i])}-day median "
                f"{rp(float(st.median[i]))} (scale {rp(float(ev.scores.hampel_scale[i]))}, limit "
                f"{cfg.hampel_k:g}){guard}")


class ModifiedZ(_HistoryCheck):
    name = "modified_z"

    def limit(self, cfg: ValidationConfig) -> float:
        return cfg.modz_limit

    def statistic(self, ev: Evidence) -> np.ndarray:
        return ev.scores.modified_z

    def reason(self, ev: Evidence, i: int, score: float) -> str:
        cfg = ev.config
        alt = (f"; MAD is 0, so 1.2533 x mean absolute deviation stands in, floored at "
               f"{rp(float(ev.stats.floor[i]))}") if self.sticky(ev, i) else ""
        return (f"modified z-score {score:.1f} against median {rp(float(ev.stats.median[i]))} "
                f"(scale {rp(float(ev.scores.modz_scale[i]))}, limit {cfg.modz_limit:g}){alt}")


class ZScore(_HistoryCheck):
    name = "zscore"

    def limit(self, cfg: ValidationConfig) -> float:
        return cfg.z_limit

    def statistic(self, ev: Evidence) -> np.ndarray:
        return ev.scores.zscore

    def reason(self, ev: Evidence, i: int, score: float) -> str:
        st = ev.stats
        return (f"z-score {score:.1f} against mean {rp(float(st.mean[i]))} and sd {rp(float(st.sd[i]))} "
                f"(floored at {rp(float(st.floor[i]))}; limit {ev.config.z_limit:g}); mean and sd are "
                f"pulled by outliers, so this check is shown but does not decide")


class Iqr(_HistoryCheck):
    name = "iqr"

    def limit(self, cfg: ValidationConfig) -> float:
        return cfg.iqr_k

    def statistic(self, ev: Evidence) -> np.ndarray:
        return ev.scores.iqr

    def reason(self, ev: Evidence, i: int, score: float) -> str:
        st = ev.stats
        return (f"{rp(float(ev.x[i]))} lies {max(score, 0):.2f} IQRs outside the quartiles "
                f"{rp(float(st.q1[i]))}..{rp(float(st.q3[i]))} (limit {ev.config.iqr_k:g}); shown, "
                f"does not decide")


class Jump(_HistoryCheck):
    name = "jump"

    def score(self, ev: Evidence) -> tuple[np.ndarray, np.ndarray]:
        with np.errstate(all="ignore"):
            jump = np.abs(np.log(ev.x / ev.last))
        ok = ev.last_recent & ~np.isnan(ev.last)
        return np.where(ok, jump, np.nan), ok & (jump > np.log1p(ev.jump_lim))

    def explain(self, ev: Evidence, i: int, score: float) -> tuple[float | None, str]:
        if math.isnan(score):
            return None, "no accepted price in the last 7 days to compare with"
        last, lim = float(ev.last[i]), float(ev.jump_lim[i])
        return lim, (f"{pct(float(ev.x[i]) / last - 1)} against the last accepted daily price {rp(last)} "
                     f"(limit {lim:.0%} for this commodity)")


class Reporters(Check):
    name = "reporters"
    family = "reporters"

    def score(self, ev: Evidence) -> tuple[np.ndarray, np.ndarray]:
        with np.errstate(all="ignore"):
            rep = np.abs(ev.x / ev.rep_ref - 1)
        ok = ev.rep_ok
        return np.where(ok, rep, np.nan), ok & (rep > ev.rep_tol)

    def explain(self, ev: Evidence, i: int, score: float) -> tuple[float | None, str]:
        rn = int(ev.rep_n[i])
        if rn < 1:
            return None, "no other reporter at this market reported within the peer window"
        ref, tol, x = float(ev.rep_ref[i]), float(ev.rep_tol[i]), float(ev.x[i])
        said = ""
        if ev.peers is not None and ev.peers[i]:
            said = "; they reported " + ", ".join(f"{p.reporter} {rp(p.price)}" for p in ev.peers[i])
        return tol, (f"{pct(x / ref - 1)} from {rp(ref)}, the "
                     f"{'median of all' if rn >= 2 else 'price of the one other'} reporter"
                     f"{'s' if rn >= 2 else ''} here ({rn} other{'s' if rn != 1 else ''}; "
                     f"limit {tol:.0%}){said}")


class Nearby(Check):
    name = "nearby"
    family = "nearby"

    def score(self, ev: Evidence) -> tuple[np.ndarray, np.ndarray]:
        # Day-over-day moves are compared, not levels against a 28-day baseline: a market that stepped
        # up last week has a baseline that lags for weeks, which would look like moving alone every day.
        with np.errstate(all="ignore"):
            near = np.abs(ev.own - ev.near_ref)
        ok = ev.near_ok
        return np.where(ok, near, np.nan), ok & (near > ev.config.nearby_tol)

    def explain(self, ev: Evidence, i: int, score: float) -> tuple[float | None, str]:
        cfg, nn = ev.config, int(ev.near_n[i])
        if not ev.near_ok[i]:
            return cfg.nearby_tol, ("no nearby market in the region reported today" if nn < 1
                                    else "this series has no accepted price of the days the nearby markets' prices are kept for")
        own, ref = float(ev.own[i]), float(ev.near_ref[i])
        return cfg.nearby_tol, (
            f"this market moved {pct(math.expm1(own))} since its last accepted daily price "
            f"{rp(float(ev.last[i]))} while the median of {nn} nearby market{'s' if nn != 1 else ''} moved "
            f"{pct(math.expm1(ref))} since theirs (difference {abs(own - ref):.3f} in log terms, limit "
            f"{cfg.nearby_tol:g})")


class Drift(Check):
    """A market whose price creeps away from the nearby markets' over days. Day-over-day moves (`nearby`)
    miss it when the steps are small: reporters who push a price up together by a percent or two a day
    agree with each other and never move much in one day, but over two weeks their market moves apart from
    every neighbour. The creep is measured on what was reported (held values too) from `drift_days` back,
    so a market that stepped once and stays there is judged on its step alone, and only for those days."""

    name = "drift"
    family = "nearby"

    def score(self, ev: Evidence) -> tuple[np.ndarray, np.ndarray]:
        drift = ev.creep_of(ev.x)
        return drift, ev.creep_ok & (np.abs(drift) > ev.drift_tol) & ~ev.stepped(ev.x)

    def explain(self, ev: Evidence, i: int, score: float) -> tuple[float | None, str]:
        cfg, nn, tol = ev.config, int(ev.near_creep_n[i]), float(ev.drift_tol[i])
        if math.isnan(ev.creep_from[i]):
            return tol, f"no reports here from {cfg.drift_days} to {cfg.drift_days + 7} days ago to measure from"
        days = int(ev.day[i] - ev.creep_day[i])
        if nn < 1:
            return tol, f"no nearby market reported both today and {days} days ago"
        own = math.log(float(ev.x[i]) / float(ev.creep_from[i]))
        step = ("; most of it in a step or two, which is not a creep" if abs(score) > tol and ev.stepped(ev.x[i:i + 1])[0]
                else "")
        before = float(ev.crept_before[i])
        kept_on = (f"; {before:+.3f} on its previous {cfg.drift_confirm_days} reported days too"
                   if abs(before) > tol and before * score > 0 else "")
        return tol, (
            f"{pct(math.expm1(own))} in {days} days (from {rp(float(ev.creep_from[i]))}) while the median of "
            f"{nn} nearby market{'s' if nn != 1 else ''} moved {pct(math.expm1(float(ev.near_creep[i])))} over "
            f"the same days (difference {score:+.3f} in log terms, limit {tol:g}){step}{kept_on}")


class Ceiling(Check):
    """A price above a legal ceiling is real (traders do charge it) and breaks a regulation: a compliance
    finding to report, never evidence that the price is wrong."""

    name = "ceiling"
    family = "compliance"

    def score(self, ev: Evidence) -> tuple[np.ndarray, np.ndarray]:
        enforce = np.array([k in ev.config.ceiling_kinds for k in ev.ceiling_kind], bool)
        with np.errstate(all="ignore"):
            over = ev.x / ev.ceiling - 1
        return over, enforce & (over > 0)

    def explain(self, ev: Evidence, i: int, score: float) -> tuple[float | None, str]:
        ceil = float(ev.ceiling[i])
        if math.isnan(ceil):
            return None, "no ceiling or reference price for this commodity, grade and region"
        kind = ev.ceiling_kind[i]
        label = "ceiling (HET)" if kind == "HET" else f"reference price ({kind}), not a ceiling"
        x = float(ev.x[i])
        finding = ("; a compliance finding, not a reason to quarantine" if x > ceil and kind in
                   ev.config.ceiling_kinds else "")
        return 0.0, (f"{rp(x)} is {pct(x / ceil - 1)} against the {label} {rp(ceil)} in force since "
                     f"{ev.ceiling_from[i]} [{ev.ceiling_source[i]}]{finding}")


class Plausible(Check):
    """A price many times above or below what the commodity costs anywhere (a zero typed too many or too
    few, a price per ons or per sack under "kg") is not a market's price. The history checks catch it on an
    established series; on a new one nothing else can, and once taken as its first price every right price
    after it would look like a jump."""

    name = "plausible"
    family = "rule"

    def score(self, ev: Evidence) -> tuple[np.ndarray, np.ndarray]:
        with np.errstate(all="ignore"):
            times = np.exp(np.abs(np.log(ev.x / ev.typical)))
        return times, times > ev.config.plausible_factor

    def explain(self, ev: Evidence, i: int, score: float) -> tuple[float | None, str]:
        lim = ev.config.plausible_factor
        if math.isnan(score):
            return lim, "no typical price in the catalogue for this commodity and unit"
        x, typical = float(ev.x[i]), float(ev.typical[i])
        way = "above" if x > typical else "below"
        return lim, (f"{rp(x)} is {score:.1f} times {way} the commodity's typical price {rp(typical)} (limit "
                     f"{lim:g} times): a zero typed too many or too few, or a price for another unit?")


class Stale(Check):
    name = "stale"
    family = "rule"

    def score(self, ev: Evidence) -> tuple[np.ndarray, np.ndarray]:
        age = ev.age
        return age, age > ev.config.max_age_s

    def explain(self, ev: Evidence, i: int, score: float) -> tuple[float | None, str]:
        lim = ev.config.max_age_s
        return float(lim), f"observed {score / 3600:.1f} h before it reached the hub (limit {lim / 3600:g} h)"


class Future(Check):
    name = "future"
    family = "rule"

    def score(self, ev: Evidence) -> tuple[np.ndarray, np.ndarray]:
        ahead = -ev.age
        return ahead, ahead > ev.config.max_skew_s

    def explain(self, ev: Evidence, i: int, score: float) -> tuple[float | None, str]:
        lim = ev.config.max_skew_s
        return float(lim), (f"device time is {score:.0f} s after arrival (limit {lim} s); a device clock "
                            f"ahead of the hub")


ALL_CHECKS: tuple[Check, ...] = (
    Hampel(), ModifiedZ(), ZScore(), Iqr(), Jump(), Reporters(), Nearby(), Drift(), Ceiling(), Plausible(), Stale(), Future(),
)
