"""The market analytics' days as stored day aggregates (hub/aggregates.py), so a restart loads closed days
instead of validating their prices again: what each analysis reads of a day, and nothing of the observations
behind it. Read back equal to what was written."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import cbor2

from ..aggregates import DamagedAggregate, DayAggregate, Namespace
from .calendar import date_of, day_number
from .quarantine import VALIDATOR, Decision
from .validate import CheckResult, LevelMark, Verdict

SeriesKey = tuple[str, str, str, str]  # market, commodity, grade, unit

MARKET_DAYS = Namespace(
    name="markets", days_table="market_days",
    figures=(("series", "integer"), ("accepted", "integer"), ("sites", "integer"), ("notes", "integer")),
    rows_table="market_series",
    rows=(("series", "text"), ("market", "text"), ("commodity", "text"), ("grade", "text"), ("unit", "text"),
          ("region", "text"), ("prices", "bigint[]"), ("history", "double precision"), ("reporters", "text[]")),
)
FORMAT = 2  # of the summary; a summary of another format is read as damaged, but for EARLIER_FORMATS
# Formats an earlier release wrote, which a restart converts (kept.py): format 1 kept no held values, so its days
# are read again from the records of the window once and written in this format.
EARLIER_FORMATS = (1,)
# Days before the first one a restart reads again whose prices are judged again for the validator only: a day's
# verdicts are final by its cut-off, within a day of its end, so two days bring the validator where it was.
WARM_DAYS = 2


@dataclass(frozen=True, slots=True, kw_only=True)
class SeriesDay:
    """One series' day: every accepted price (a multiset, so a decision that releases or takes back one value
    later updates the median, minimum and maximum exactly), the daily price the validator took into the
    series' history from that day, who reported (the validator expects them on the next days), and what the day
    did to the series' run of held days and level (a lone market's level shift)."""

    region: str
    prices: tuple[int, ...]
    history: float | None
    reporters: tuple[str, ...]
    level: LevelMark | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class HeldValue:
    """A value of the day held in quarantine and not cleared by the validator, as the held list shows it: its
    verdict (the checks that fired and why, provisional or not), when it was held, and its state (pending, or
    an operator's release or confirmation, which a reopen may take back), and the validator's decisions on it
    (its audit trail besides the operators', whose decisions the journal keeps). Its observation is the log's
    record of the same id: a restart reads those records only, not the day's whole log."""

    verdict: Verdict
    quarantined_at: int
    state: str
    trail: tuple[Decision, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Mark:
    """How far the stored days reach when they were written (the `written`-th write): every day up to
    `closed_through` as the records up to and including `record` (a log record id, b"" for none) and the
    operators' first `decisions` decisions left it."""

    written: int
    closed_through: int
    record: bytes
    decisions: int


@dataclass(slots=True, kw_only=True)
class MarketDay:
    """One day of the markets: each series' prices; each site's readings as the sum and count of
    temperature, humidity and crowd; each (market, commodity) field notes' sentiment sum, count and whether
    one reported a supply problem; each (region, commodity) MBG demand in kg; the values held in quarantine
    by observation id; and the mark of the write."""

    day: int
    series: dict[SeriesKey, SeriesDay] = field(default_factory=dict)
    readings: dict[str, tuple[float, ...]] = field(default_factory=dict)
    notes: dict[tuple[str, str], tuple[float, int, bool]] = field(default_factory=dict)
    demand: dict[tuple[str, str], float] = field(default_factory=dict)
    held: dict[str, HeldValue] = field(default_factory=dict)
    mark: Mark | None = None


def _series_id(key: SeriesKey) -> str:
    return "/".join(key)


def to_aggregate(day: MarketDay) -> DayAggregate:
    rows = sorted((_series_id(k), *k, s.region, list(s.prices), s.history, list(s.reporters))
                  for k, s in day.series.items())
    mark = None if day.mark is None else [day.mark.written, day.mark.closed_through, day.mark.record,
                                          day.mark.decisions]
    summary = cbor2.dumps({
        "format": FORMAT, "mark": mark, "readings": {k: list(v) for k, v in sorted(day.readings.items())},
        "notes": [[m, c, t, n, s] for (m, c), (t, n, s) in sorted(day.notes.items())],
        "demand": [[r, c, kg] for (r, c), kg in sorted(day.demand.items())],
        "levels": [[_series_id(k), s.level.joined, s.level.taken, list(s.level.shifts)]
                   for k, s in sorted(day.series.items()) if s.level is not None],
        "held": [[oid, h.quarantined_at, h.state, h.verdict.status, h.verdict.summary, h.verdict.provisional,
                  [[c.name, c.family, c.fired, c.score, c.limit, c.reason] for c in h.verdict.checks],
                  [[d.action, d.why, d.at, d.state_before, d.state_after] for d in h.trail]]
                 for oid, h in sorted(day.held.items())]}, canonical=True)
    figures = (len(rows), sum(len(s.prices) for s in day.series.values()), len(day.readings), len(day.notes))
    return DayAggregate(date=date_of(day.day).isoformat(), figures=figures, summary=summary,
                        rows=tuple(tuple(r) for r in rows))


def summary_format(agg: DayAggregate) -> int | None:
    """The format a stored day's summary says it has (None if it says none that reads)."""
    try:
        s: Any = cbor2.loads(agg.summary)
        return s.get("format") if isinstance(s, dict) and isinstance(s.get("format"), int) else None
    except (cbor2.CBORDecodeError, ValueError, TypeError):
        return None


def from_aggregate(agg: DayAggregate) -> MarketDay:
    """A stored day back as it was written; DamagedAggregate if its summary is not one this release writes."""
    try:
        s: Any = cbor2.loads(agg.summary)
        if s.get("format") != FORMAT:
            raise ValueError(f"summary format {s.get('format')!r}, expected {FORMAT}")
        m = s["mark"]
        out = MarketDay(day=day_number(agg.date), mark=None if m is None else Mark(
            written=int(m[0]), closed_through=int(m[1]), record=bytes(m[2]), decisions=int(m[3])))
        for _, market, commodity, grade, unit, region, prices, history, reporters in agg.rows:
            out.series[(market, commodity, grade, unit)] = SeriesDay(
                region=region, prices=tuple(int(p) for p in prices), history=history, reporters=tuple(reporters))
        ids = {_series_id(k): k for k in out.series}
        for sid, joined, taken, shifts in s.get("levels", ()):  # days written before levels were kept have none
            key = ids[sid]
            out.series[key] = replace(out.series[key], level=LevelMark(
                joined=None if joined is None else float(joined), taken=bool(taken),
                shifts=tuple(float(f) for f in shifts)))
        out.readings = {k: tuple(v) for k, v in s["readings"].items()}
        out.notes = {(m_, c): (float(t), int(n), bool(b)) for m_, c, t, n, b in s["notes"]}
        out.demand = {(r, c): float(kg) for r, c, kg in s["demand"]}
        out.held = {str(oid): HeldValue(quarantined_at=int(at), state=str(state), verdict=Verdict(
            observation_id=str(oid), status=str(status), summary=str(summary), provisional=bool(provisional),
            checks=tuple(CheckResult(name=str(n), family=str(f), fired=bool(fired), score=score, limit=limit,
                                     reason=str(why)) for n, f, fired, score, limit, why in checks)),
            trail=tuple(Decision(observation_id=str(oid), action=str(a), by=VALIDATOR, why=str(why), at=int(t),
                                 state_before=str(was), state_after=str(now)) for a, why, t, was, now in trail))
            for oid, at, state, status, summary, provisional, checks, trail in s["held"]}
    except (cbor2.CBORDecodeError, ValueError, TypeError, KeyError, AttributeError, IndexError) as exc:
        raise DamagedAggregate(f"market day {agg.date}: not a market day this hub writes ({exc})",
                               hint="the day is read again from the records if they are within the window") from None
    return out


def latest_mark(days: Iterable[MarketDay]) -> Mark | None:
    """The mark of the last write among the days."""
    marks = [d.mark for d in days if d.mark is not None]
    return max(marks, key=lambda m: m.written) if marks else None


@dataclass(slots=True, kw_only=True)
class Seam:
    """Where a restart's loaded days meet the records it reads again. Days before `first_day` come from the
    stored aggregates, as the records up to `mark` left them; a record of such a day is counted again only after
    the refill passed `mark` (`past`: the stored days do not hold it). Prices of days from `warm_from` to
    `first_day` are judged again, uncounted, so the validator judges the first days read again as it did."""

    first_day: int
    warm_from: int
    mark: bytes
    past: bool = False


def demand_of(days: Iterable[MarketDay], before_day: int) -> Mapping[tuple[str, str, int], float]:
    return {(r, c, d.day): kg for d in days if d.day < before_day for (r, c), kg in d.demand.items()}
