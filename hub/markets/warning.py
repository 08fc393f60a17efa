"""Early warning: WFP's Alert for Price Spikes (ALPS) bands, FAO's Indicator of Food Price Anomalies
(IFPA), and alerts raised when a series' band worsens."""

from __future__ import annotations

import hashlib
import math
import warnings
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from coap_server.wording import count

from .calendar import date_of, holiday_share
from .errors import BadSeries
from .staleness import HeldRun

# ALPS bands by the gap to the seasonal trend in residual standard deviations (WFP, 2014).
ALPS_BANDS = ("normal", "stress", "alert", "crisis")
ALPS_EDGES = (0.25, 1.0, 2.0)
# A holiday period counts as learned from an earlier year when it ended this many days before the period
# judged (this year's Ramadan and Lebaran last about six weeks).
HOLIDAY_LEARNED_DAYS = 180
# IFPA classes (FAO, SDG indicator 2.c.1): >= 1 abnormally high, 0.5..1 moderately high, else normal
# (and, mirrored, moderately and abnormally low).
IFPA_CLASSES = ("abnormally low", "moderately low", "normal", "moderately high", "abnormally high")
IFPA_ALPHA = 0.4  # weight of the quarterly growth rate; 0.6 goes to the annual one
# Market prices are quoted in steps (rice by Rp 500, chilli by Rp 1.000, beef by Rp 5.000) and held for weeks
# between them: a sticky price's weekly means sit on a line, the fit's residual sd is a few rupiah, and the one move the price
# can make, one step, would count as tens of sd (a Rp 500 step of Rp 12.000 rice read crisis). So the sd is at
# least STEP_SD steps: one step held a week reads stress, two alert, three crisis. A step is the largest of
# QUOTE_STEPS that nine in ten of the window's moves (from one reported price to the next) are whole multiples
# of, and no more than STEP_MAX of the price: larger round numbers (a chilli price that happens to move by
# Rp 10.000s) are no quoting habit, and a rice price that moved once, by Rp 1.000, moved two steps of Rp 500.
STEP_SD = 1.4
QUOTE_STEPS = (10000, 5000, 2500, 2000, 1000, 500, 250, 200, 100, 50, 25, 20, 10, 5, 2, 1)
STEP_SHARE = 0.9
STEP_MAX = 0.06
# A series' run of reports held in quarantine for a decision (`held_alert`), told to subscribers as a band of
# its own indicator: "held" (as severe as an ALPS stress, the listing's warning) while the run lasts, "normal"
# once nothing of it waits.
HELD = "HELD"
HELD_BANDS = ("normal", "held")


def _rp(v: float) -> str:
    return "Rp " + f"{v:,.0f}".replace(",", ".")


def alps_band(value: float) -> str:
    if math.isnan(value):
        return "normal"
    for band, edge in zip(ALPS_BANDS, ALPS_EDGES, strict=False):
        if value < edge:
            return band
    return "crisis"


def ifpa_class(value: float) -> str:
    if math.isnan(value):
        return "normal"
    if value >= 1:
        return "abnormally high"
    if value >= 0.5:
        return "moderately high"
    if value > -0.5:
        return "normal"
    if value > -1:
        return "moderately low"
    return "abnormally low"


@dataclass(frozen=True, slots=True, kw_only=True)
class AlpsResult:
    value: float  # (price - seasonal trend) / residual sd
    band: str
    price: float  # the period mean that was judged
    trend: float  # what the seasonal trend expected
    sigma: float
    periods: int  # how many periods the trend was fitted on
    period: str  # "week" or "month"
    explanation: str

    def to_dict(self) -> dict[str, Any]:
        return {"indicator": "ALPS", "value": round(self.value, 3), "band": self.band,
                "price_idr": round(self.price), "trend_idr": round(self.trend), "sigma_idr": round(self.sigma),
                "periods": self.periods, "period": self.period, "explanation": self.explanation}


def quote_step(values: np.ndarray) -> int:
    """The step a price series moves in: the largest of QUOTE_STEPS, at most STEP_MAX of its median price, that
    STEP_SHARE of its moves from one reported price (NaN: none that day) to the next are whole multiples of; 0 for
    a price that never moved or moves by fractions of a rupiah."""
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    d = np.diff(v)
    d = np.abs(d[d != 0])
    whole = np.round(d)
    if not len(d) or np.mean(np.abs(d - whole) < 1e-6) < STEP_SHARE:
        return 0
    most = STEP_MAX * float(np.median(v))
    return next((s for s in QUOTE_STEPS if s <= most and np.mean(whole % s == 0) >= STEP_SHARE), 1)


def alps(values: np.ndarray, *, first_day: int, period: str = "week", sigma_floor: float = 0.0) -> AlpsResult:
    """ALPS of the latest period of a daily price series (NaN = no price that day).

    Days are averaged into weeks (or calendar months, WFP's own choice when years of data exist). The
    seasonal trend is a least-squares fit of those averages on a linear time trend, the share of Ramadan
    and Lebaran days in the period, and month-of-year dummies once two years are available; it is fitted on
    every period before the latest one, so the latest is judged out of sample. ALPS is the latest average's
    gap to the trend, in standard deviations of the fit's residuals, never fewer rupiah than `sigma_floor`
    times the trend: a sticky price's weekly means sit so close to a straight line that a one-tick step or
    a chilli price's usual weekly swing would count as many deviations (a crisis for a few percent), and never
    fewer than STEP_SD of the steps the price is quoted in (`quote_step`)."""
    v = np.asarray(values, dtype=float)
    days = first_day + np.arange(len(v))
    if period == "week":
        n = len(v) // 7
        start = len(v) - 7 * n  # align weeks so the last one ends on the last day
        blocks = v[start:].reshape(n, 7)
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            means = np.nanmean(blocks, axis=1)
        pdays = [(int(days[start + 7 * k]), int(days[start + 7 * k + 6])) for k in range(n)]
    elif period == "month":
        months: dict[tuple[int, int], list[int]] = {}
        for i, d in enumerate(days):
            dt = date_of(int(d))
            months.setdefault((dt.year, dt.month), []).append(i)
        keys = sorted(months)
        means = np.array([np.nanmean(v[months[k]]) if np.any(~np.isnan(v[months[k]])) else np.nan for k in keys])
        pdays = [(int(days[months[k][0]]), int(days[months[k][-1]])) for k in keys]
    else:
        raise BadSeries(f"period: expected 'week' or 'month', got {period!r}")
    ok = ~np.isnan(means)
    means, pdays = means[ok], [p for p, o in zip(pdays, ok, strict=True) if o]
    m = len(means)
    span_years = (pdays[-1][1] - pdays[0][0]) / 365.25 if m else 0
    cols = [np.ones(m), np.arange(m, dtype=float)]
    holiday = np.array([holiday_share("ramadan", a, b) + holiday_share("lebaran", a, b) for a, b in pdays])
    # The holiday term is learned only from an earlier year's Ramadan and Lebaran. Fitted on the first days of
    # this year's, its weight is whatever makes those few periods fit exactly, and multiplied by a whole
    # holiday period it throws the trend anywhere: every series of a market "in crisis" in the first week of
    # Ramadan. Without an earlier year, this year's rise is judged as a rise.
    cutoff = pdays[-1][0] - HOLIDAY_LEARNED_DAYS if m else 0
    learned = any(h > 0 and end < cutoff for h, (_, end) in zip(holiday[:-1], pdays[:-1], strict=True))
    if learned:
        cols.append(holiday)
    if span_years >= 2:
        month_of = np.array([date_of((a + b) // 2).month for a, b in pdays])
        cols += [(month_of == k).astype(float) for k in range(2, 13)]
    X = np.stack(cols, axis=1)
    need = X.shape[1] + 4 + (not learned)  # as many periods with or without the holiday term
    if m - 1 < need:
        raise BadSeries(f"ALPS: expected at least {need + 1} {period}s of prices, got {m}",
                        hint="ALPS needs a history to define the seasonal trend")
    Xf, yf = X[:-1], means[:-1]
    coef, *_ = np.linalg.lstsq(Xf, yf, rcond=None)
    resid = yf - Xf @ coef
    sigma = float(np.sqrt(resid @ resid / max(len(yf) - X.shape[1], 1)))
    trend = float(X[-1] @ coef)
    fitted = sigma
    step = quote_step(v)
    sigma = max(sigma, sigma_floor * abs(trend), STEP_SD * step, 1e-9 * abs(trend) + 1e-12)
    value = (float(means[-1]) - trend) / sigma
    band = alps_band(value)
    terms = ("linear trend" + (", Ramadan/Lebaran share learned from an earlier year" if learned else
                               " (no earlier Ramadan/Lebaran to learn their effect from)")
             + (" and month dummies" if span_years >= 2 else ""))
    floored = (f" (the fit's {_rp(fitted)} raised to {100 * sigma_floor:.1f} % of the trend, this commodity's usual "
               f"move in a {period})" if sigma > fitted and sigma == sigma_floor * abs(trend) else
               f" (the fit's {_rp(fitted)} raised to {STEP_SD:g} times the {_rp(step)} steps the price is quoted in)"
               if sigma > fitted and sigma == STEP_SD * step else "")
    expl = (f"{period} mean {_rp(means[-1])} against a seasonal trend of {_rp(trend)} ({terms}, fitted on "
            f"{count(m - 1, f'earlier {period}')}); gap {value:+.2f} residual sd of {_rp(sigma)}{floored} -> {band} "
            f"(normal < 0.25 <= stress < 1 <= alert < 2 <= crisis)")
    return AlpsResult(value=value, band=band, price=float(means[-1]), trend=trend, sigma=sigma, periods=m - 1,
                      period=period, explanation=expl)


@dataclass(frozen=True, slots=True, kw_only=True)
class IfpaResult:
    value: float
    cls: str
    cqgr: float
    cagr: float
    years: int  # how many earlier years the month's mean and sd came from
    explanation: str

    def to_dict(self) -> dict[str, Any]:
        return {"indicator": "IFPA", "value": round(self.value, 3), "class": self.cls,
                "cqgr": round(self.cqgr, 5), "cagr": round(self.cagr, 5), "years": self.years,
                "explanation": self.explanation}


def ifpa(monthly: np.ndarray) -> IfpaResult:
    """FAO's IFPA for the last month of a monthly price series that starts in January of its first year
    (NaN = missing month).

    CQGR = (P_t / P_{t-3})^(1/3) - 1 and CAGR = (P_t / P_{t-12})^(1/12) - 1. For the same calendar month of
    every earlier year, their weighted mean and standard deviation are taken, with weights that grow with
    the year (1, 2, 3, ...) so recent years count more. IFPA = 0.4 * (CQGR - mean) / sd + 0.6 * (CAGR -
    mean) / sd. The current year is left out of its own mean and sd."""
    p = np.asarray(monthly, dtype=float)
    t = len(p) - 1
    if t < 12 + 12 * 2:
        raise BadSeries(f"IFPA: expected at least 37 months (three of the same month with annual growth), "
                        f"got {len(p)}")
    with np.errstate(all="ignore"):
        cq = np.full(len(p), np.nan)
        ca = np.full(len(p), np.nan)
        cq[3:] = (p[3:] / p[:-3]) ** (1 / 3) - 1
        ca[12:] = (p[12:] / p[:-12]) ** (1 / 12) - 1
    same = np.arange(t % 12, t, 12)
    hist = same[~np.isnan(cq[same]) & ~np.isnan(ca[same])]
    if len(hist) < 2 or math.isnan(cq[t]) or math.isnan(ca[t]):
        raise BadSeries(f"IFPA: expected growth rates for this month in at least two earlier years, got {len(hist)}")
    w = np.arange(1, len(hist) + 1, dtype=float)

    def z(x: np.ndarray, now: float) -> float:
        mean = float(np.average(x[hist], weights=w))
        sd = float(np.sqrt(np.average((x[hist] - mean) ** 2, weights=w)))
        return (now - mean) / max(sd, 1e-9)

    value = IFPA_ALPHA * z(cq, float(cq[t])) + (1 - IFPA_ALPHA) * z(ca, float(ca[t]))
    cls = ifpa_class(value)
    expl = (f"quarterly growth {100 * cq[t]:+.2f} %/month and annual growth {100 * ca[t]:+.3f} %/month "
            f"against their weighted means over {count(len(hist), 'earlier year')} of this month; "
            f"IFPA = 0.4 zQ + 0.6 zA = {value:+.2f} -> {cls}")
    return IfpaResult(value=value, cls=cls, cqgr=float(cq[t]), cagr=float(ca[t]), years=len(hist), explanation=expl)


@dataclass(frozen=True, slots=True, kw_only=True)
class Alert:
    id: str
    series: str  # e.g. "pasar-senen/cabai-merah"
    market: str
    commodity: str
    region: str
    indicator: str  # "ALPS" or "IFPA"
    previous: str
    band: str
    value: float
    day: int
    price_idr: int
    message: str
    # Judged on a series whose last report (`day`) was already older than it usually is (the market went
    # silent, and the band says where it stood then, not now): how many days old it was; 0 when it was not.
    stale_days: int = 0
    # Judged on a series whose reports since `day` arrived but wait in quarantine for a decision (held, not
    # stale): how many, and the day of the first; 0 when they were not.
    held_reports: int = 0
    held_since: int = 0

    @property
    def stale(self) -> bool:
        return self.stale_days > 0

    @property
    def held(self) -> bool:
        return self.held_reports > 0

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "series": self.series, "market": self.market, "commodity": self.commodity,
                "region": self.region, "indicator": self.indicator, "previous": self.previous,
                "band": self.band, "value": round(self.value, 3), "day": self.day,
                "date": date_of(self.day).isoformat(), "price_idr": self.price_idr, "message": self.message,
                "stale": self.stale, "stale_days": self.stale_days, "held": self.held,
                "held_reports": self.held_reports,
                "held_since": date_of(self.held_since).isoformat() if self.held else None}

    def since(self, previous: str) -> Alert:
        """This alert as a change from `previous` (the band a subscriber was told, or the one it was raised from
        before a restart)."""
        if self.indicator == HELD:  # its message says where the run stands, not what it was before
            return replace(self, previous=previous)
        return replace(self, previous=previous, message=alert_message(
            self.market, self.commodity, self.region, self.indicator, previous, self.band, self.value, self.day,
            self.price_idr, stale_days=self.stale_days, held_reports=self.held_reports, held_since=self.held_since))


def alert_message(market: str, commodity: str, region: str, indicator: str, previous: str, band: str,
                  value: float, day: int, price_idr: int, *, stale_days: int = 0, held_reports: int = 0,
                  held_since: int = 0) -> str:
    text = (f"{commodity} at {market} ({region}): {indicator} {previous} -> {band} "
            f"({value:+.2f}) on {date_of(day).isoformat()}, price {_rp(price_idr)}")
    if stale_days:
        text += f"; stale data: no report since {date_of(day).isoformat()} ({stale_days} days before)"
    if held_reports:
        text += (f"; {count(held_reports, 'report')} since {date_of(held_since).isoformat()} held in quarantine, "
                 f"waiting for a decision")
    return text


def held_message(market: str, commodity: str, *, reports: int, days: int, since: int) -> str:
    """What a held run asks of the operator, in the alerts' listing and a subscriber's message alike."""
    return (f"{count(reports, 'report')} of {commodity} at {market} held in quarantine on {days} reported days in a "
            f"row since {date_of(since).isoformat()}, waiting for a decision: review them (quarantine page, "
            f"POST /api/markets/quarantine/{{id}}/decide)")


def held_alert(*, series: str, market: str, commodity: str, region: str, run: HeldRun | None, day: int,
               price_idr: int) -> Alert:
    """A series' run of reports held for a decision as an alert for subscribers, told like an early warning's
    band: "held" while `run` lasts (one id for the run, from its first day, however many reports it gathers),
    "normal" once it ended (run None; `day`, the series' latest accepted day, names it). `price_idr` is the
    series' latest accepted price, the one its figures still stand on."""
    if run is None:
        band, value, day_, reports, since = "normal", 0.0, day, 0, 0
        message = (f"{commodity} at {market} ({region}): no report waits in quarantine for a decision any more; "
                   f"the latest accepted price is {_rp(price_idr)} of {date_of(day).isoformat()}")
    else:
        band, value, day_, reports, since = "held", float(run.days), run.last_day, run.reports, run.first_day
        message = f"{held_message(market, commodity, reports=run.reports, days=run.days, since=run.first_day)} " \
                  f"({region}); the latest accepted price is {_rp(price_idr)}"
    # Held: the id the alerts listing gives the run after "held/", so a delivery names the alert listed.
    alert_id = (f"{series}/{date_of(since).isoformat()}" if run is not None
                else hashlib.sha256(f"{series}|{HELD}|{band}|{day}".encode()).hexdigest()[:16])
    return Alert(id=alert_id,
                 series=series, market=market, commodity=commodity, region=region, indicator=HELD,
                 previous=HELD_BANDS[1 - HELD_BANDS.index(band)], band=band, value=value, day=day_,
                 price_idr=price_idr, message=message, held_reports=reports, held_since=since)


def _severity(indicator: str, band: str) -> int:
    if indicator == "ALPS":
        return ALPS_BANDS.index(band)
    if indicator == HELD:
        return HELD_BANDS.index(band)
    return max(0, IFPA_CLASSES.index(band) - 2)


class AlertTracker:
    """Remembers each series' last band and raises an alert when it worsens (and only then: a series that
    stays in "alert" does not page anyone again, one that eases and worsens again does)."""

    def __init__(self) -> None:
        self._last: dict[tuple[str, str], str] = {}
        self.live: dict[tuple[str, str], Alert] = {}
        # Each series' indicator as last judged, as an alert from its previous band (raised or not).
        self.latest: dict[tuple[str, str], Alert] = {}

    def update(self, *, market: str, commodity: str, region: str, indicator: str, band: str, value: float,
               day: int, price_idr: int, stale_days: int = 0, held: HeldRun | None = None) -> Alert | None:
        key = (f"{market}/{commodity}", indicator)
        prev = self._last.get(key, ALPS_BANDS[0] if indicator == "ALPS" else "normal")
        self._last[key] = band
        alert = Alert(id=hashlib.sha256(f"{key}|{day}|{band}".encode()).hexdigest()[:16], series=key[0],
                      market=market, commodity=commodity, region=region, indicator=indicator, previous=prev,
                      band=band, value=value, day=day, price_idr=price_idr, stale_days=stale_days,
                      held_reports=held.reports if held else 0, held_since=held.first_day if held else 0,
                      message=alert_message(market, commodity, region, indicator, prev, band, value, day, price_idr,
                                            stale_days=stale_days, held_reports=held.reports if held else 0,
                                            held_since=held.first_day if held else 0))
        self.latest[key] = alert
        if _severity(indicator, band) == 0:
            self.live.pop(key, None)
        elif key in self.live and self.live[key].id == alert.id:
            # The live alert judged again: whether its series is stale or held is what holds now (an operator's
            # decision ends a held run), from the band it was raised from.
            self.live[key] = alert.since(self.live[key].previous)
        if _severity(indicator, band) <= _severity(indicator, prev):
            return None
        self.live[key] = alert
        return alert

    def recall(self, alert: Alert) -> None:
        """Take back `alert` (this series' live or latest one, judged again) as it was raised before a restart:
        a new tracker judges each series from normal, so the band it was raised from is known only to what kept
        it."""
        key = (alert.series, alert.indicator)
        for held in (self.live, self.latest):
            if key in held and held[key].id == alert.id:
                held[key] = alert

    def live_alerts(self) -> list[Alert]:
        return sorted(self.live.values(), key=lambda a: (-_severity(a.indicator, a.band), a.series))
