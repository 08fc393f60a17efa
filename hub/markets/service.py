"""The market service the hub's HTTP API calls: ingest records, live prices, history, impact, forecasts,
alerts, quarantine decisions, and a stream of price updates with their impact."""

from __future__ import annotations

import math
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from .calendar import date_of
from .catalog import COMMODITIES_BY_ID, MARKETS_BY_ID, Market
from .ceilings import CeilingTable
from .days import HeldValue, MarketDay, Seam, SeriesDay
from .errors import BadSeries, BadUnit, NotFound
from .forecast import forecast as run_forecast
from .impact import ImpactConfig, ImpactInputs
from .impact import features as impact_features
from .impact import impact as run_impact
from .importer import ImportRows
from .macro import MacroInputs
from .model import DAY_S, WIB_OFFSET_S, FieldNote, PriceObservation, SensorReading, day_of, from_record
from .quarantine import (
    CONFIRMED,
    PENDING,
    RELEASED,
    VALIDATOR,
    Decision,
    Quarantine,
    QuarantineEntry,
    QuarantineStore,
)
from .sentiment import Lexicon
from .staleness import Freshness, HeldRun, freshness, held_run
from .validate import ACCEPTED, LevelMark, ObservationBatch, ValidationConfig, Validator, Verdict
from .warning import Alert, AlertTracker, alps, held_alert, ifpa
from .webhooks import Delivery, Subscriber, WebhookSender

SeriesKey = tuple[str, str, str, str]  # market, commodity, grade, unit
_NO_MARK = LevelMark()  # a reported day that ended a run of held days


def weekly_move(commodity: str) -> float:
    """A commodity's usual move in a week, as a fraction of its price (the catalogue's daily volatility over
    seven days): the least spread ALPS judges a week's price against. 0 for a commodity the catalogue lacks."""
    c = COMMODITIES_BY_ID.get(commodity)
    return 0.0 if c is None else c.daily_vol * math.sqrt(7)
StreamCallback = Callable[[dict[str, Any]], None]


def _series_name(key: SeriesKey) -> str:
    """A series as alerts name it: market/commodity, and /grade when it has one."""
    market, commodity, grade = key[0], key[1], key[2]
    return f"{market}/{commodity}{f'/{grade}' if grade else ''}"


@dataclass(frozen=True, slots=True, kw_only=True)
class MarketConfig:
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    impact: ImpactConfig = field(default_factory=ImpactConfig)
    horizon: int = 7
    backtest_origins: int = 3
    window_days: int = 400  # days of history the analyses look at
    # Days whose individual observations the hub lists and a restart reads again from the log; older days are
    # kept as per-day aggregates. The validator expects the reporters it saw in the last `expect_days` (14),
    # and a day takes late reports until its cut-off (up to a day after it ends): 16 covers both.
    raw_days: int = 16
    tz_offset_s: int = WIB_OFFSET_S
    # A series whose reports were held on this many reported days in a row, and are still waiting for a
    # decision, is one alert to the operator: a lone market's honest move that nobody nearby can vouch for.
    held_alert_days: int = 3

    def __post_init__(self) -> None:
        for name in ("horizon", "backtest_origins", "window_days", "raw_days", "held_alert_days"):
            if getattr(self, name) < 1:
                raise ValueError(f"markets.{name}: expected at least 1, got {getattr(self, name)}")


class MarketService:
    """One per hub. Pure analytics over what it is given: no I/O except `notify`, which sends webhooks."""

    def __init__(self, config: MarketConfig | None = None, *, ceilings: CeilingTable | None = None,
                 macro: MacroInputs | None = None, markets: Mapping[str, Market] | None = None,
                 quarantine_store: QuarantineStore | None = None, clock: Callable[[], float] = time.time,
                 lexicon: Lexicon | None = None) -> None:
        self.config = config or MarketConfig()
        self.markets = dict(MARKETS_BY_ID if markets is None else markets)
        self.ceilings = ceilings if ceilings is not None else CeilingTable.load()
        self.macro = macro if macro is not None else MacroInputs.load()
        self.validator = Validator(self.config.validation, ceilings=self.ceilings, markets=self.markets,
                                   on_commit=self._committed, on_level=self._leveled)
        self.quarantine = Quarantine(quarantine_store, clock=clock)
        self.lexicon = lexicon or Lexicon.load()
        self.tracker = AlertTracker()
        self.clock = clock
        self._prices: dict[SeriesKey, dict[int, list[tuple[str, int, int]]]] = defaultdict(dict)
        self._region: dict[str, str] = {}
        self._latest: dict[SeriesKey, PriceObservation] = {}
        # A site's readings of a day as the sum and count of temperature, humidity and crowd.
        self._readings: dict[str, dict[int, list[float]]] = defaultdict(dict)
        self._notes: dict[tuple[str, str], dict[int, list[float]]] = defaultdict(dict)  # day -> [sum, count]
        self._note_supply: dict[tuple[str, str], set[int]] = defaultdict(set)
        self._mbg: dict[tuple[str, str], dict[int, float]] = defaultdict(dict)
        self._supply: dict[tuple[str, str], dict[int, float]] = defaultdict(dict)
        self._listeners: list[StreamCallback] = []
        self._imported: set[str] = set()  # ids of imported rows, so a second import adds nothing
        # The last price records refused for a unit that cannot be converted, newest last, and how many in all.
        self.refused: deque[dict[str, Any]] = deque(maxlen=200)
        self.refused_total = 0
        self._verdicts: dict[str, Verdict] = {}  # each live observation's latest verdict
        self._kept: dict[str, list[Decision]] = {}  # restored decisions waiting for their observation
        # Held values taken back from a loaded day, with how many operators' decisions that day's aggregates hold.
        self._reflected: dict[str, int] = {}
        self._held_days: dict[int, set[str]] = defaultdict(set)  # ids of the values held, by their day
        self._medians: dict[SeriesKey, dict[int, float]] = defaultdict(dict)  # day -> median, until it changes
        self._inputs_version = 0  # counts changes of the non-price inputs of impact
        self._impacts: dict[SeriesKey, tuple[tuple[Any, ...], Any]] = {}  # the last impact and what it used
        self._impact_memo: dict[SeriesKey, dict[str, Any]] = {}
        self._features: dict[SeriesKey, tuple[tuple[int, int, int], tuple[np.ndarray, np.ndarray]]] = {}
        self._macro_days: dict[tuple[int, int], tuple[np.ndarray | None, ...]] = {}
        # What the day aggregates keep beside the prices: the validator's daily price and who reported.
        self._history_days: dict[SeriesKey, dict[int, float]] = defaultdict(dict)
        self._day_reporters: dict[SeriesKey, dict[int, set[str]]] = defaultdict(dict)
        self._levels: dict[SeriesKey, dict[int, LevelMark]] = defaultdict(dict)  # what each day did to a held run
        self._touched: set[int] = set()  # days whose aggregates changed since they were last kept
        self.seam: Seam | None = None  # while a restart refills: the days that were loaded as aggregates

    # -- input ---------------------------------------------------------------------------------------------

    def ingest(self, record: Any, arrived_at: int) -> dict[str, Any] | None:
        """Take a verified record with its arrival time; returns what it became, or None if markets do
        not use its kind."""
        try:
            item = from_record(record, arrived_at)
        except BadUnit as exc:
            # The record stays in the log as signed; its price counts nowhere, and the hub lists why.
            self.refused_total += 1
            body = record.body
            self.refused.append({"id": record.id.hex() if isinstance(record.id, bytes) else str(record.id),
                                 "market": body["market"], "commodity": body["commodity"], "unit": body["unit"],
                                 "price_idr": body["price_idr"], "arrived_at": arrived_at, **exc.to_dict()})
            return exc.to_dict()
        if isinstance(item, PriceObservation):
            if self.seam is not None and self.summarized(day_of(item.time, self.config.tz_offset_s)):
                self._warm(item)
                return None
            return self.add_observation(item).to_dict()
        if isinstance(item, SensorReading):
            self.add_reading(item)
            return {"reading": item.id}
        if isinstance(item, FieldNote):
            return {"note": item.id, "sentiment": self.add_note(item)}
        return None

    def add_observation(self, obs: PriceObservation) -> Verdict:
        """Validate and file one observation; verdicts of the same day that it changes are applied too."""
        self._region[obs.market] = obs.region
        day = day_of(obs.time, self.config.tz_offset_s)
        reporters = self._day_reporters[obs.series]
        seen = reporters.get(day)
        if seen is None:
            seen = reporters[day] = set()
        seen.add(obs.reporter)
        self._touched.add(day)
        (first, verdict), *revised = self.validator.observe(obs)
        self._apply(first, verdict, None)
        for o, v in revised:
            self._apply(o, v, self._verdicts.get(o.id))
        if self._listeners:
            self._emit(obs, verdict)
        return verdict

    def _warm(self, obs: PriceObservation) -> None:
        """A value of a day the loaded aggregates already count: judged for the validator's sake only if its
        day is one of the seam's warm days; verdicts it revises on later days are applied."""
        assert self.seam is not None
        if day_of(obs.time, self.config.tz_offset_s) < self.seam.warm_from:
            return
        self._region[obs.market] = obs.region
        for o, v in self.validator.observe(obs)[1:]:
            self._apply(o, v, self._verdicts.get(o.id))

    def settle(self, now: int | None = None) -> int:
        """Make final the days whose cut-off has passed (the hub calls it on a timer); returns how many
        observations got their final verdict."""
        revised = self.validator.settle(int(self.clock()) if now is None else now)
        for o, v in revised:
            self._apply(o, v, self._verdicts.get(o.id))
        return len({o.id for o, _ in revised})

    def _apply(self, obs: PriceObservation, verdict: Verdict, before: Verdict | None) -> None:
        """File an observation by its (new) verdict: accepted ones count in the prices, quarantined ones
        are held; a value the validator clears or holds on second look moves, with the reason recorded. A value
        of a day loaded as aggregates is judged only to bring the validator where it was (see `Seam`)."""
        day = day_of(obs.time, self.config.tz_offset_s)
        if self.seam is not None and self.summarized(day):
            return
        self._touched.add(day)  # a held value's reasons are kept with its day
        self._verdicts[obs.id] = verdict
        self.on_verdict(obs, verdict)
        if before is None:
            if verdict.quarantined:
                self._hold(obs, verdict)
            else:
                self._store(obs)
            return
        if before.quarantined == verdict.quarantined:
            self.quarantine.revise(obs.id, verdict)
            return
        if verdict.quarantined:
            if self.quarantine.state_of(obs.id) in (RELEASED, CONFIRMED):
                return  # an operator's decision stands
            self._unstore(obs)
            self._hold(obs, verdict)
            self.quarantine.revise(obs.id, verdict)
        elif self.quarantine.revise(obs.id, verdict):
            self._store(obs)

    def on_verdict(self, obs: PriceObservation, verdict: Verdict) -> None:
        """Called with every verdict an observation gets, first and revised (the hub keeps them), and with each
        imported row of the days from `listed_from`."""

    def listed_from(self) -> int:
        """The first day whose imported rows `on_verdict` is told of (the hub lists its last days' observations
        one by one); none here."""
        return 2**40

    def _unstore(self, obs: PriceObservation) -> None:
        """Take an accepted value out of its day; on a day loaded as aggregates (its values carry no ids) one
        value of the same price is taken out."""
        day = day_of(obs.time, self.config.tz_offset_s)
        entries = self._prices[obs.series].get(day, [])
        at = next((k for k, x in enumerate(entries) if x[0] == obs.id), None)
        if at is None:
            at = next((k for k, x in enumerate(entries) if not x[0] and x[1] == obs.price_idr), None)
        if at is None:
            return
        del entries[at]
        self._medians[obs.series].pop(day, None)
        self._touched.add(day)

    def import_rows(self, rows: ImportRows, *, progress: Callable[[int], None] | None = None,
                    chunk: int = 200_000) -> dict[str, Any]:
        """Backfill history from an imported file: rows this service already holds are skipped (importing
        a file twice changes nothing), the others are validated day by day and stored under their
        observation day; quarantined rows are held with their explanation. Returns the import's report."""
        known = self._imported
        fresh = [k for k, rid in enumerate(rows.ids) if rid not in known]
        skipped = len(rows) - len(fresh)
        batch = rows.batch()
        if skipped:
            keep = np.array(fresh, np.int64)
            batch = ObservationBatch(
                series=batch.series, regions=batch.regions, reporters=batch.reporters,
                series_idx=batch.series_idx[keep], reporter_idx=batch.reporter_idx[keep], price=batch.price[keep],
                time=batch.time[keep], arrived=batch.arrived[keep],
                ids=tuple(rows.ids[k] for k in fresh))
        result = self.validator.validate_batch(batch, explain_quarantined=True)
        ids = batch.ids or ()
        known.update(ids)
        for m, market in enumerate(k[0] for k in batch.series):
            self._region.setdefault(market, batch.regions[m])
        def observation(k: int) -> PriceObservation:
            market, commodity, grade, unit = batch.series[int(batch.series_idx[k])]
            return PriceObservation(
                id=ids[k], market=market, commodity=commodity, grade=grade, unit=unit,
                price_idr=int(batch.price[k]), time=int(batch.time[k]), arrived_at=int(batch.arrived[k]),
                region=batch.regions[int(batch.series_idx[k])],
                reporter=batch.reporters[int(batch.reporter_idx[k])], source=rows.layout,
                reported=rows.reported.get(ids[k], ""))

        for k, verdict in result.verdicts.items():
            self._hold(observation(k), verdict)
        # The rows of the days the hub lists one by one are told as a device's observations are, the accepted
        # ones with the verdict the import gave them.
        listed = np.flatnonzero((batch.time + self.config.tz_offset_s) // DAY_S >= self.listed_from())
        for k in listed.tolist():
            obs = observation(k)
            explained = result.verdicts.get(k)
            if explained is not None:
                verdict = explained
            else:
                shift = result.leveled is not None and bool(result.leveled[k])
                verdict = Verdict(observation_id=obs.id, status=ACCEPTED, checks=(), provisional=False,
                                  summary="accepted: imported" + ("; held at first, then taken as a level shift"
                                                                  if shift else ""))
            self.on_verdict(obs, verdict)
        # Accepted rows join their series' days in bulk: sorted by series and day, one extend per day.
        ok = np.flatnonzero(~result.quarantined)
        day = (batch.time[ok] + self.config.tz_offset_s) // 86400
        order = np.lexsort((day, batch.series_idx[ok]))
        rows_ok = ok[order]
        sidx, dsorted = batch.series_idx[rows_ok], day[order]
        cuts = np.flatnonzero((np.diff(sidx) != 0) | (np.diff(dsorted) != 0)) + 1
        entries = list(zip([ids[k] for k in rows_ok.tolist()], batch.price[rows_ok].astype(np.int64).tolist(),
                           batch.time[rows_ok].tolist(), strict=True))
        starts = [0, *cuts.tolist()]
        ends = [*cuts.tolist(), len(rows_ok)]
        s_at, d_at = sidx[starts].tolist() if len(rows_ok) else [], dsorted[starts].tolist() if len(rows_ok) else []
        for g, (a, b) in enumerate(zip(starts, ends, strict=True)):
            if a == b:
                continue
            self._prices[batch.series[s_at[g]]].setdefault(d_at[g], []).extend(entries[a:b])
            self._medians[batch.series[s_at[g]]].pop(d_at[g], None)
            if progress is not None and g % 10_000 == 0 and g:
                progress(b)
        held = len(result.verdicts)
        leveled = 0 if result.leveled is None else int(result.leveled.sum())
        return {**rows.report(), "already_imported": skipped, "stored": len(batch) - held,
                "quarantined": held, "level_shift": leveled}

    def _store(self, obs: PriceObservation) -> None:
        day = day_of(obs.time, self.config.tz_offset_s)
        self._prices[obs.series].setdefault(day, []).append((obs.id, obs.price_idr, obs.time))
        self._medians[obs.series].pop(day, None)
        self._touched.add(day)
        last = self._latest.get(obs.series)
        if last is None or obs.time >= last.time:
            self._latest[obs.series] = obs

    def add_reading(self, r: SensorReading) -> None:
        day = day_of(r.time, self.config.tz_offset_s)
        if self.summarized(day):
            return
        self._inputs_version += 1
        acc = self._readings[r.site].get(day)
        if acc is None:
            acc = self._readings[r.site][day] = [0.0, 0, 0.0, 0, 0.0, 0]
        for k, v in enumerate((None if r.temp_cc is None else r.temp_cc / 100,
                               None if r.rh_cp is None else r.rh_cp / 100,
                               None if r.crowd is None else float(r.crowd))):
            if v is not None:
                acc[2 * k] += v
                acc[2 * k + 1] += 1
        self._touched.add(day)

    def add_note(self, note: FieldNote) -> dict[str, Any]:
        s = self.lexicon.score(note.text)
        day = day_of(note.time, self.config.tz_offset_s)
        if self.summarized(day):
            return s.to_dict()
        self._inputs_version += 1
        key = (note.market, note.commodity)
        acc = self._notes[key].setdefault(day, [0.0, 0])
        acc[0] += s.score
        acc[1] += 1
        if s.supply_signal:
            self._note_supply[key].add(day)
        self._touched.add(day)
        return s.to_dict()

    def set_mbg_demand(self, region: str, commodity: str, day: int, kg: float) -> None:
        """MBG kitchens' demand for a commodity in a region on a day (the hub derives it from stock records)."""
        self._inputs_version += 1
        self._mbg[(region, commodity)][day] = float(kg)
        self._touched.add(day)

    def mbg_demand(self, region: str, commodity: str, day: int) -> float:
        return self._mbg.get((region, commodity), {}).get(day, 0.0)

    def set_supply_disruption(self, region: str, commodity: str, day: int, severity: float) -> None:
        """A reported supply disruption (0 none .. 1 severe), e.g. from a regional agency bulletin."""
        self._inputs_version += 1
        self._supply[(region, commodity)][day] = min(1.0, max(0.0, float(severity)))

    # -- day aggregates -------------------------------------------------------------------------------------

    def summarized(self, day: int) -> bool:
        """Whether a value of `day` is already counted in the aggregates a restart loaded (see `Seam`)."""
        seam = self.seam
        return seam is not None and not seam.past and day < seam.first_day

    def _committed(self, key: SeriesKey, day: int, value: float) -> None:
        self._history_days[key][day] = value
        self._touched.add(day)

    def _leveled(self, key: SeriesKey, day: int, mark: LevelMark) -> None:
        days = self._levels[key]
        was = days.get(day)
        days[day] = mark if was is None else was.merged(mark)
        self._touched.add(day)

    def changed_days(self, through_day: int) -> list[MarketDay]:
        """The days up to `through_day` whose aggregates changed since they were last `kept`."""
        return [self.market_day(d) for d in sorted(d for d in self._touched if d <= through_day)]

    def kept(self, days: Iterable[int]) -> None:
        """These days' aggregates are stored: they are not given again until they change."""
        self._touched.difference_update(days)

    def market_day(self, day: int) -> MarketDay:
        """One day's aggregates as the analyses read them (hub/markets/days.py). Imported rows are left out:
        the hub imports its kept files again at every start."""
        out = MarketDay(day=day)
        for key in self._day_reporters.keys() | self._prices.keys() | self._history_days.keys() | self._levels.keys():
            entries = self._prices[key].get(day, ()) if key in self._prices else ()
            prices = tuple(sorted(p for i, p, _ in entries if i not in self._imported))
            history = self._history_days[key].get(day) if key in self._history_days else None
            reporters = tuple(sorted(self._day_reporters[key].get(day, ()))) if key in self._day_reporters else ()
            level = self._levels[key].get(day) if key in self._levels else None
            if prices or history is not None or reporters or level is not None:
                out.series[key] = SeriesDay(region=self._region.get(key[0], ""), prices=prices, history=history,
                                            reporters=reporters, level=level)
        for site, rdays in self._readings.items():
            if day in rdays:
                out.readings[site] = tuple(rdays[day])
        for nkey, ndays in self._notes.items():
            if day in ndays:
                total, count = ndays[day]
                out.notes[nkey] = (total, int(count), day in self._note_supply.get(nkey, ()))
        for dkey, kg in self._mbg.items():
            if day in kg:
                out.demand[dkey] = kg[day]
        for oid in sorted(self._held_days.get(day, set()) - self._imported):
            e = self.quarantine.store.get(oid)
            if e.state in (PENDING, RELEASED, CONFIRMED):  # a value the validator cleared is one of the prices
                trail = tuple(d for d in self.quarantine.store.decisions(oid) if d.by == VALIDATOR)
                out.held[oid] = HeldValue(verdict=e.verdict, quarantined_at=e.quarantined_at, state=e.state,
                                          trail=trail)
        return out

    def load_days(self, days: Iterable[MarketDay], seam: Seam,
                  find: Callable[[Sequence[str]], Mapping[str, PriceObservation]] | None = None) -> None:
        """Take the aggregates of the days before `seam.first_day` from the store (a restart), and bring the
        validator to where those days left it: each series' daily prices it had taken into history, the
        reporters it expects, and the level shifts it took and the run of held days it had open (`LevelMark`).
        The refill that follows judges prices of the days from `seam.warm_from` again for the validator only, and
        counts those of later days. The values those days held in quarantine are held again as they were, their
        observations read from the log by `find` (observation ids in, those found out)."""
        self.seam = seam
        days = list(days)
        first, warm = seam.first_day, seam.warm_from
        cfg = self.config.validation
        history: dict[SeriesKey, list[tuple[int, float]]] = defaultdict(list)
        reporters: dict[SeriesKey, dict[str, int]] = defaultdict(dict)
        # Each series' marks, and an empty one for a day it reported that ended a run (only after a mark: before
        # the first one there is no run to end).
        levels: dict[SeriesKey, list[tuple[int, LevelMark]]] = defaultdict(list)
        for d in sorted((d for d in days if d.day < first), key=lambda d: d.day):
            day = d.day
            for key, row in d.series.items():
                self._region[key[0]] = row.region
                if row.prices:
                    self._prices[key].setdefault(day, []).extend(("", p, 0) for p in row.prices)
                    self._medians[key].pop(day, None)
                if row.history is not None:
                    self._history_days[key][day] = row.history
                if row.reporters:
                    self._day_reporters[key][day] = set(row.reporters)
                if day < warm:
                    if row.history is not None:
                        history[key].append((day, row.history))
                    if day >= warm - cfg.expect_days:
                        reporters[key].update(dict.fromkeys(row.reporters, day))
                    # The days judged again make their own marks.
                    if row.level is not None:
                        self._levels[key][day] = row.level
                        levels[key].append((day, row.level))
                    elif row.reporters and levels.get(key) and levels[key][-1][1] != _NO_MARK:
                        levels[key].append((day, _NO_MARK))
            for site, sums in d.readings.items():
                self._readings[site][day] = list(sums)
            for nkey, (total, count, supply) in d.notes.items():
                self._notes[nkey][day] = [total, count]
                if supply:
                    self._note_supply[nkey].add(day)
            for dkey, kg in d.demand.items():
                self._mbg[dkey][day] = kg
        held = [d for d in days if d.day < first and d.held]
        found = find([oid for d in held for oid in d.held]) if held and find is not None else {}
        for key in history.keys() | reporters.keys() | levels.keys():
            self.validator.seed(key, self._region[key[0]], history[key][-cfg.window:], reporters[key], levels[key],
                                held=self._run_reports(key, levels[key], held, found))
        self._inputs_version += 1
        if held and find is not None:
            self._take_back_held(held, found)

    def _run_reports(self, key: SeriesKey, levels: Sequence[tuple[int, LevelMark]], days: Sequence[MarketDay],
                     found: Mapping[str, PriceObservation]) -> dict[int, list[tuple[PriceObservation, Verdict]]]:
        """The reports of series `key` on the loaded days that joined a run of held days, with their verdicts, in
        the order they were held: what a level shift that takes the run clears."""
        joined = {day for day, mark in levels if mark.joined is not None and not mark.taken}
        out: dict[int, list[tuple[PriceObservation, Verdict]]] = {}
        for d in days:
            if d.day not in joined:
                continue
            mine = [(h, found[oid]) for oid, h in d.held.items() if oid in found and found[oid].series == key]
            mine.sort(key=lambda x: (x[0].quarantined_at, x[1].time, x[1].id))
            out[d.day] = [(obs, h.verdict) for h, obs in mine]
        return out

    def hold_aged(self, days: Sequence[MarketDay],
                  find: Callable[[Sequence[str]], Mapping[str, PriceObservation]]) -> set[int]:
        """Hold again the values waiting for a decision on stored days older than the window (a restart loads
        nothing else of those days): a value nobody decided does not go with its day. One its day keeps as
        decided is left out, unless a restored decision made after the day was written acts on it (a reopen).
        Returns the days that still hold a value waiting for a decision, or one stored as waiting that `find`
        could not read (logged there): the store keeps those days until it is decided."""
        picked = []
        for d in days:
            reflected = 0 if d.mark is None else d.mark.decisions
            held = {oid: h for oid, h in d.held.items()
                    if h.state == PENDING or any(k.order > reflected for k in self._kept.get(oid, ()))}
            if held:
                picked.append(replace(d, held=held))
        if picked:
            self._take_back_held(picked, find([oid for d in picked for oid in d.held]))
        return {d.day for d in picked for oid, h in d.held.items()
                if self.quarantine.state_of(oid) == PENDING
                or (h.state == PENDING and self.quarantine.state_of(oid) is None)}

    def _take_back_held(self, days: Sequence[MarketDay], found: Mapping[str, PriceObservation]) -> None:
        """Hold again the values the loaded days held, in the state their day was kept with, their observations
        those the log gave (`found`). Each day's aggregates hold the effect of the operators' decisions up to its
        mark: a restored decision up to there joins the audit only, a later one takes effect again (`_take_back`)."""
        for d in days:
            reflected = 0 if d.mark is None else d.mark.decisions
            for oid, h in d.held.items():
                obs = found.get(oid)
                if obs is None:  # `find` says which it could not read
                    continue
                self.quarantine.store.put(QuarantineEntry(observation=obs, verdict=h.verdict,
                                                          quarantined_at=h.quarantined_at, state=h.state))
                for decision in h.trail:
                    self.quarantine.store.keep(decision)
                self._held_days[d.day].add(oid)
                self._verdicts[oid] = h.verdict
                self._reflected[oid] = reflected
                for decision in self._kept.pop(oid, ()):
                    self._take_back(decision)

    def subscribe(self, callback: StreamCallback) -> Callable[[], None]:
        """Call `callback` with every price update and its impact; returns a function that unsubscribes."""
        self._listeners.append(callback)
        return lambda: self._listeners.remove(callback)

    def _emit(self, obs: PriceObservation, verdict: Verdict) -> None:
        try:
            imp: dict[str, Any] | None = self._live_impact(obs.series).to_dict()
        except (BadSeries, ValueError):
            imp = None
        update = {"type": "price", "observation": obs.to_dict(), "verdict": verdict.status,
                  "summary": verdict.summary, "impact": imp}
        for cb in list(self._listeners):
            cb(update)

    # -- quarantine ----------------------------------------------------------------------------------------

    def quarantined(self, state: str | None = "pending") -> list[dict[str, Any]]:
        return [e.to_dict() for e in self.quarantine.store.entries(state)]

    def decide(self, observation_id: str, action: str, *, by: str, why: str,
               record: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        """Release (counts as a real price from now on), confirm (stays out) or reopen a quarantined value.
        `record` keeps the decision before it takes effect: if it raises, nothing changes."""
        decision = self.quarantine.decide(observation_id, action, by=by, why=why,
                                          record=None if record is None else lambda d: record(d.to_dict()))
        self._enact(decision, decision.state_before)
        return decision.to_dict()

    def _today(self) -> int:
        return day_of(int(self.clock()), self.config.tz_offset_s)

    def _enact(self, decision: Decision, state_before: str) -> None:
        entry = self.quarantine.store.get(decision.observation_id)
        self._touched.add(day_of(entry.observation.time, self.config.tz_offset_s))  # its state is kept there
        if decision.state_after == RELEASED and state_before != RELEASED:
            self._store(entry.observation)
            if day_of(entry.observation.time, self.config.tz_offset_s) > self._today() - self.config.window_days:
                # A value of a day past the window (held until decided) is not history the validator reads.
                self.validator.admit(entry.observation)
        elif state_before == RELEASED and decision.state_after != RELEASED:
            self._unstore(entry.observation)

    def restore_decisions(self, decisions: Sequence[Decision]) -> None:
        """Operators' decisions kept from before a restart, oldest first: each takes effect again, with its
        own operator, reason and time, once its observation is held again (now, if it is held already)."""
        for d in decisions:
            self.quarantine.made += 1
            d = replace(d, order=self.quarantine.made)
            if d.observation_id in self._kept or self.quarantine.state_of(d.observation_id) is None:
                self._kept.setdefault(d.observation_id, []).append(d)
            else:
                self._take_back(d)

    def close_seam(self, find: Callable[[str], PriceObservation | None] | None, reflected: int) -> None:
        """The end of a restart's refill: values of every day count from now on. Restored decisions still
        waiting for their observation (a value of a day loaded as aggregates, or one never seen) join the
        audit trail; the stored aggregates hold the effect of the first `reflected` decisions, and a later one
        on a loaded day (made after the aggregates were last kept) takes effect on its day now, `find` giving
        its observation from the log."""
        first = None if self.seam is None else self.seam.first_day
        self.seam = None
        kept, self._kept = self._kept, {}
        for oid, decisions in kept.items():
            for d in decisions:
                self.quarantine.store.keep(d)
            fresh = [d for d in decisions if d.order > reflected]
            obs = find(oid) if fresh and first is not None and find is not None else None
            if obs is None or first is None or day_of(obs.time, self.config.tz_offset_s) >= first:
                continue
            before = next((d.state_after for d in reversed(decisions) if d.order <= reflected),
                          fresh[0].state_before)
            after = fresh[-1].state_after
            if after == RELEASED != before:
                self._store(obs)
            elif before == RELEASED != after:
                self._unstore(obs)

    def _hold(self, obs: PriceObservation, verdict: Verdict) -> None:
        self.quarantine.hold(obs, verdict)
        self._held_days[day_of(obs.time, self.config.tz_offset_s)].add(obs.id)
        for d in self._kept.pop(obs.id, ()):
            self._take_back(d)

    def _take_back(self, decision: Decision) -> None:
        """A restored decision on a value held now: in the audit only if the value was taken back from a loaded
        day whose aggregates already hold the decision's effect, made again otherwise."""
        if decision.order <= self._reflected.get(decision.observation_id, 0):
            self.quarantine.store.keep(decision)
        else:
            self._redo(decision)

    def _redo(self, decision: Decision) -> None:
        # The state it is in now, not the one the decision was made from, says what changes: a refill may
        # have held the value with another verdict, and the operator's decision stands over the validator's.
        before = self.quarantine.store.get(decision.observation_id).state
        self.quarantine.store.set_state(decision.observation_id, decision.state_after, decision)
        self._enact(decision, before)

    def audit(self, observation_id: str | None = None) -> list[dict[str, Any]]:
        return [d.to_dict() for d in self.quarantine.audit(observation_id)]

    # -- queries -------------------------------------------------------------------------------------------

    def _find(self, commodity: str, market: str | None, grade: str | None = None) -> list[SeriesKey]:
        keys = [k for k in self._prices if k[1] == commodity and (market is None or k[0] == market)
                and (grade is None or k[2] == grade)]
        if not keys:
            where = f" at {market}" if market else ""
            raise NotFound(f"series: no accepted prices for {commodity!r}{where}",
                           hint="check the commodity id (e.g. 'cabai-merah') and market id")
        return sorted(keys)

    def _daily(self, key: SeriesKey, last_day: int | None = None, *, whole: bool = False) -> tuple[int, np.ndarray]:
        """The series' daily medians (NaN: no accepted price) over the window up to `last_day` (its latest),
        or over all it holds (`whole`: IFPA's years of imported history)."""
        days = self._prices[key]
        # A day can be left empty when its one accepted price is taken back (`_unstore`): no price, no day.
        latest = max((d for d, v in days.items() if v), default=None)
        if latest is None:
            raise NotFound(f"series {key}: no accepted prices")
        hi = latest if last_day is None else last_day
        lo = min(days) if whole else max(min(days), hi - self.config.window_days + 1)
        arr = np.full(hi - lo + 1, np.nan)
        # Each day's median is kept until that day's prices change: a live update recomputes one day.
        medians = self._medians[key]
        for d, v in days.items():
            if lo <= d <= hi and v:
                m = medians.get(d)
                if m is None:
                    m = medians[d] = float(np.median([p for _, p, _ in v]))
                arr[d - lo] = m
        return lo, arr

    def _waiting(self) -> dict[SeriesKey, dict[int, int]]:
        """Each series' reports waiting in quarantine for a decision, counted by their day."""
        out: dict[SeriesKey, dict[int, int]] = defaultdict(lambda: defaultdict(int))
        for e in self.quarantine.pending():
            out[e.observation.series][day_of(e.observation.time, self.config.tz_offset_s)] += 1
        return out

    def _held_run(self, key: SeriesKey, waiting: Mapping[SeriesKey, Mapping[int, int]]) -> HeldRun | None:
        """The series' reported days since its last accepted price that hold reports waiting for a decision."""
        held = waiting.get(key)
        if not held:
            return None
        accepted = [d for d, v in self._prices.get(key, {}).items() if v]
        reported = {d: 0 for d in self._day_reporters.get(key, {})}
        reported.update(held)
        return held_run(reported, max(accepted) if accepted else min(reported) - 1)

    def freshness(self, key: SeriesKey, waiting: Mapping[SeriesKey, Mapping[int, int]] | None = None) -> Freshness:
        """How old the series' last accepted report is today, and whether that is stale or its reports since
        are held (`waiting`: what `_waiting` gives, when the caller judges many series)."""
        return freshness(sorted(d for d, v in self._prices[key].items() if v), self._today(),
                         self._held_run(key, self._waiting() if waiting is None else waiting))

    def held_runs(self) -> list[tuple[SeriesKey, HeldRun]]:
        """The series whose reports were held on at least `held_alert_days` reported days in a row since their
        last accepted price, all still waiting for a decision: what the operator is asked to review."""
        waiting = self._waiting()
        out = []
        for key in sorted(waiting):
            run = self._held_run(key, waiting)
            if run is not None and run.days >= self.config.held_alert_days:
                out.append((key, run))
        return out

    def held_alerts(self, told: Iterable[str] = ()) -> dict[tuple[str, str], Alert]:
        """The held runs of `held_runs` as alerts for subscribers (`held_alert`, band "held"), and a "normal" one
        for each series of `told` (series told held) whose run has ended, by (series, indicator) as the early
        warning's `tracker.latest`."""
        out: dict[tuple[str, str], Alert] = {}
        for key, run in self.held_runs():
            alert = self._held_alert(key, run)
            out.setdefault((alert.series, alert.indicator), alert)
        ended = set(told) - {series for series, _ in out}
        for key in sorted(self._prices) if ended else ():
            if _series_name(key) in ended and any(self._prices[key].values()):
                ended.discard(_series_name(key))
                alert = self._held_alert(key, None)
                out[(alert.series, alert.indicator)] = alert
        return out

    def _held_alert(self, key: SeriesKey, run: HeldRun | None) -> Alert:
        market, commodity = key[0], key[1]
        accepted = [d for d, v in self._prices.get(key, {}).items() if v]
        day = max(accepted) if accepted else 0
        price = round(float(np.median([p for _, p, _ in self._prices[key][day]]))) if accepted else 0
        return held_alert(series=_series_name(key), market=market,
                          commodity=commodity, region=self._region.get(market, ""), run=run, day=day, price_idr=price)

    def live_prices(self, commodity: str | None = None, market: str | None = None) -> list[dict[str, Any]]:
        """Latest accepted daily price of every series (filtered by commodity and market), and whether the
        series is stale or its reports since are held."""
        out = []
        waiting = self._waiting()
        for key, days in sorted(self._prices.items()):
            if (commodity and key[1] != commodity) or (market and key[0] != market) or not days:
                continue
            day = max(d for d, v in days.items() if v) if any(days.values()) else None
            if day is None:
                continue
            vals = [p for _, p, _ in days[day]]
            m = self.markets.get(key[0])
            out.append({"market": key[0], "region": self._region.get(key[0], ""), "commodity": key[1],
                        "grade": key[2], "unit": key[3], "day": day, "date": date_of(day).isoformat(),
                        "price_idr": round(float(np.median(vals))), "reports": len(vals),
                        "latitude": m.latitude if m else None, "longitude": m.longitude if m else None,
                        **self._flags(self.freshness(key, waiting))})
        return out

    def history(self, commodity: str, market: str | None = None, *, since_day: int | None = None,
                until_day: int | None = None) -> list[dict[str, Any]]:
        out = []
        for key in self._find(commodity, market):
            for day in sorted(self._prices[key]):
                v = self._prices[key][day]
                if not v or (since_day is not None and day < since_day) or (until_day is not None and day > until_day):
                    continue
                prices = [p for _, p, _ in v]
                out.append({"market": key[0], "commodity": key[1], "grade": key[2], "unit": key[3], "day": day,
                            "date": date_of(day).isoformat(), "price_idr": round(float(np.median(prices))),
                            "min_idr": min(prices), "max_idr": max(prices), "reports": len(prices)})
        return out

    def _impact_inputs(self, key: SeriesKey, last_day: int | None = None) -> ImpactInputs:
        market, commodity = key[0], key[1]
        region = self._region.get(market, "")
        lo, price = self._daily(key, last_day)
        n = len(price)

        def daily(src: Mapping[int, float]) -> np.ndarray | None:
            if not src:
                return None
            return np.array([src.get(lo + i, math.nan) for i in range(n)])

        rd = self._readings.get(market, {})
        temp = rh = crowd = None
        if rd:
            days_in = [(d, a) for d, a in rd.items() if lo <= d < lo + n]
            temp, rh, crowd = (daily({d: a[2 * k] / a[2 * k + 1] if a[2 * k + 1] else math.nan for d, a in days_in})
                               for k in range(3))
        notes: dict[int, list[float]] = defaultdict(lambda: [0.0, 0])
        supply_days: set[int] = set()
        for k in ((market, commodity), (market, "")):
            for d, (total, count) in self._notes.get(k, {}).items():
                notes[d][0] += total
                notes[d][1] += count
            supply_days |= self._note_supply.get(k, set())
        supply_src = dict(self._supply.get((region, commodity), {}))
        for d in supply_days:
            supply_src[d] = max(supply_src.get(d, 0.0), 0.5)
        supply = daily(supply_src)
        if supply is not None:
            supply = np.nan_to_num(supply)
        macro = self._macro_days.get((lo, n))
        if macro is None:
            days = range(lo, lo + n)
            m = self.macro
            if len(self._macro_days) > 256:
                self._macro_days.clear()
            macro = self._macro_days[(lo, n)] = (
                np.array([m.inflation.at(d) for d in days]) if m.inflation else None,
                np.array([m.fuel.at(d) for d in days]) if m.fuel else None,
                np.array([m.fx.at(d) for d in days]) if m.fx else None)
        return ImpactInputs(
            commodity=commodity, first_day=lo, price=price, temp_c=temp, rh_pct=rh, crowd=crowd,
            supply=supply, mbg_kg=daily(self._mbg.get((region, commodity), {})),
            sentiment=daily({d: total / count for d, (total, count) in notes.items()}),
            inflation_pct=macro[0], fuel_idr=macro[1], usd_idr=macro[2],
            label=f"{commodity} at {market}",
        )

    def _live_impact(self, key: SeriesKey) -> Any:
        """The impact of the series' latest day, kept between updates: recomputed only when the series'
        daily prices or the other inputs changed since (a sticky price or a second report of the same
        price changes nothing)."""
        lo, price = self._daily(key)
        stamp = (lo, price.tobytes(), self._inputs_version)
        hit = self._impacts.get(key)
        if hit is not None and hit[0] == stamp:
            return hit[1]
        result = self._impact(key)
        self._impacts[key] = (stamp, result)
        return result

    def _impact(self, key: SeriesKey, day: int | None = None) -> Any:
        inp = self._impact_inputs(key)
        at = None if day is None else day - inp.first_day
        if at is not None and not 0 <= at < len(inp.price):
            raise ValueError(f"impact: day {day} is outside the series' days {inp.first_day}.."
                             f"{inp.first_day + len(inp.price) - 1}")
        # The features move with the days and the non-price inputs, not with each price: kept per series.
        stamp = (inp.first_day, len(inp.price), self._inputs_version)
        hit = self._features.get(key)
        if hit is None or hit[0] != stamp:
            hit = self._features[key] = (stamp, impact_features(inp, self.config.impact))
        return run_impact(inp, at=at, config=self.config.impact, feature_matrix=hit[1],
                          memo=self._impact_memo.setdefault(key, {}))

    def impact(self, commodity: str, market: str, *, grade: str | None = None,
               day: int | None = None) -> dict[str, Any]:
        """Impact of the price change on `day` (default: the series' last day with a price)."""
        key = self._find(commodity, market, grade)[0]
        try:
            out = self._impact(key, day).to_dict()
        except ValueError as e:
            raise BadSeries(str(e), hint="impact needs 35 days of prices") from None
        out.update({"market": market, "commodity": commodity, "grade": key[2], "unit": key[3]})
        return out

    def forecast(self, commodity: str, market: str, *, grade: str | None = None) -> dict[str, Any]:
        key = self._find(commodity, market, grade)[0]
        lo, price = self._daily(key)
        fc = run_forecast(price, first_day=lo, horizon=self.config.horizon, origins=self.config.backtest_origins)
        out = fc.to_dict()
        for p in out["points"]:
            p["date"] = date_of(p["day"]).isoformat()
        # A forecast starts the day after the last report: a silent market's is of days already past.
        out.update({"market": market, "commodity": commodity, "grade": key[2], "unit": key[3],
                    "freshness": self.freshness(key).to_dict()})
        return out

    def early_warning(self) -> list[Alert]:
        """Compute ALPS (and IFPA where three years of months exist) for every series; returns the alerts
        raised now, i.e. the series whose band worsened since the last run."""
        raised = []
        waiting = self._waiting()
        for key in sorted(self._prices):
            try:
                lo, price = self._daily(key)
                res = alps(price, first_day=lo, period="week", sigma_floor=weekly_move(key[1]))
            except (BadSeries, NotFound):
                continue
            last_day = lo + len(price) - 1
            region = self._region.get(key[0], "")
            fresh = self.freshness(key, waiting)
            stale_days = fresh.days if fresh.stale else 0
            held = fresh.run if fresh.held else None
            a = self.tracker.update(market=key[0], commodity=key[1], region=region, indicator="ALPS",
                                    band=res.band, value=res.value, day=last_day, price_idr=round(res.price),
                                    stale_days=stale_days, held=held)
            if a is not None:
                raised.append(a)
            # IFPA compares a month with the same month of earlier years: three years of history, longer than
            # the window the other analyses read (only imported history is that long).
            monthly = (self._monthly(*self._daily(key, whole=True)) if last_day - min(self._prices[key]) >= 1000
                       else None)
            if monthly is not None:
                try:
                    r2 = ifpa(monthly)
                except BadSeries:
                    continue
                a = self.tracker.update(market=key[0], commodity=key[1], region=region, indicator="IFPA",
                                        band=r2.cls, value=r2.value, day=last_day, price_idr=round(res.price),
                                        stale_days=stale_days, held=held)
                if a is not None:
                    raised.append(a)
        return raised

    def bands(self) -> list[dict[str, Any]]:
        """Current ALPS value and band of every series with enough weeks (read only: raises no alert)."""
        return self.map_series()[0]

    def map_series(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """`bands`, and the series with an accepted price but too few weeks of them for a band (`no_band`: the
        reason), each with its latest accepted day's price and its freshness: a series held for weeks since
        its first few has no band, and is still to be shown held."""
        banded, unbanded = [], []
        waiting = self._waiting()
        for key in sorted(self._prices):
            try:
                lo, price = self._daily(key)
            except NotFound:
                continue
            fresh = self.freshness(key, waiting)
            series = {"market": key[0], "commodity": key[1], "grade": key[2], "unit": key[3],
                      "region": self._region.get(key[0], "")}
            flags = {**self._flags(fresh), "days_since_report": fresh.days}
            last = lo + len(price) - 1
            try:
                res = alps(price, first_day=lo, period="week", sigma_floor=weekly_move(key[1]))
            except BadSeries as exc:
                unbanded.append({**series, "day": last, "price_idr": round(float(price[-1])), **flags,
                                 "no_band": exc.message})
                continue
            banded.append({**series, "alps": round(res.value, 3), "band": res.band, "day": last,
                           "price_idr": round(res.price), **flags})
        return banded, unbanded

    @staticmethod
    def _flags(fresh: Freshness) -> dict[str, Any]:
        """What a live price or a map band says of its series' freshness: stale, or held with how many reports
        since when."""
        out: dict[str, Any] = {"stale": fresh.stale, "held": fresh.held}
        if fresh.held:
            assert fresh.run is not None
            out.update(fresh.run.to_dict())
        return out

    @staticmethod
    def _monthly(lo: int, price: np.ndarray) -> np.ndarray | None:
        """Monthly means of a daily series from January of its first year (NaN: a month without a price); None
        with fewer than 37 months that have one. In numpy: IFPA reads years of each series at every refresh."""
        ok = ~np.isnan(price)
        # Months since January 1970 of each day with a price (day numbers count from 1970-01-01).
        month = (np.arange(lo, lo + len(price))[ok]).astype("datetime64[D]").astype("datetime64[M]").astype(np.int64)
        if not len(month):
            return None
        month -= 12 * (date_of(lo).year - 1970)
        n = np.bincount(month)
        if np.count_nonzero(n) < 37:
            return None
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(n > 0, np.bincount(month, weights=price[ok]) / n, np.nan)

    def live_alerts(self) -> list[dict[str, Any]]:
        return [a.to_dict() for a in self.tracker.live_alerts()]

    async def notify(self, sender: WebhookSender, subscribers: Sequence[Subscriber],
                     alerts: Sequence[Alert]) -> list[Delivery]:
        """Push alerts to the subscribers that want them; the deliveries are also kept in sender.log."""
        return await sender.broadcast(subscribers, alerts)
