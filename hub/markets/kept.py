"""The markets' closed days kept in the read models' aggregate store as they close, and loaded back at a restart
so that the refill reads again only the records of the last `raw_days` days."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from ledger import decode_record
from ledger.errors import LedgerError

from ..aggregates import DamagedAggregate, DayAggregates
from ..store import DamagedRecord, Entry, HubStore
from .calendar import date_of, day_number
from .days import (
    EARLIER_FORMATS,
    FORMAT,
    WARM_DAYS,
    Mark,
    MarketDay,
    Seam,
    demand_of,
    from_aggregate,
    latest_mark,
    summary_format,
    to_aggregate,
)
from .model import DAY_S, PriceObservation, day_of, from_record
from .view import BACKLOG_S, HubMarkets, KitchenDemand

log = logging.getLogger("jejak.hub.markets")


class KeptDays:
    """Writes the markets' closed days that changed (`write`) and loads them at a restart (`load`). A day is
    closed once the backlog horizon (BACKLOG_S) has passed its end; a later value or decision for it writes
    it again. Each write carries a `Mark`: the last closed day, the last record the days hold (`last_fed`,
    in log order every record before it is in them) and how many operators' decisions."""

    def __init__(self, markets: HubMarkets, demand: KitchenDemand, days: DayAggregates, log_store: HubStore) -> None:
        self.markets = markets
        self.demand = demand
        self.days = days
        self.log_store = log_store
        self.reflected = 0  # operators' decisions the loaded days hold
        self._written = 0  # writes so far, across restarts (Mark.written)
        self._through: int | None = None  # the last closed day written
        # Stored days deleted with the next write (one written again then is replaced): those older than the window
        # but the ones holding a value waiting for a decision, and those of an earlier format.
        self._stale: list[str] = []

    def load(self, now: int) -> int | None:
        """Load the stored days before the first one read again from the log (`Seam`); returns the arrival time
        from which the markets' records are read, or None (nothing stored that the log backs, days of an earlier
        format, or a stored day that cannot be read): then every record of the window is.

        A stored day older than the window is deleted with the next write, unless it holds a value still waiting
        for an operator's decision: that value is held again (`hold_aged`) and its day kept until it is decided.
        Days of an earlier release's format (`EARLIER_FORMATS`) are converted: the records of the window are read
        once, as without stored days, and the next write replaces or deletes every one of them."""
        cfg = self.markets.config
        today = day_of(now, cfg.tz_offset_s)
        since = date_of(today - cfg.window_days + 1).isoformat()
        days: list[MarketDay] = []
        aged: list[MarketDay] = []  # days older than the window that hold values
        earlier: list[str] = []
        try:
            dates = self.days.dates()
            for date in dates:
                if date < since:
                    day = self._aged(date)
                    if day is not None:
                        aged.append(day)
                    continue
                agg = self.days.get(date)
                if agg is None:
                    continue
                if summary_format(agg) in EARLIER_FORMATS:
                    earlier.append(date)
                else:
                    days.append(from_aggregate(agg))
        except Exception as exc:  # DamagedAggregate, or a store that cannot be read at all: the log has it all
            log.error("the markets' stored days cannot be read (%s); every record of their window is read instead",
                      exc)
            return None
        if earlier:
            log.info("%d stored market days are of an earlier format (it kept no held values): every record of "
                     "their window is read once, and the days are written again in format %d", len(earlier), FORMAT)
        # A write writes every day that changed, so its mark holds for every stored day, also one only an aged day
        # carries. Writes count on from it, also when the window is read again: a day not written again then must
        # not carry a later mark than those that are.
        mark = latest_mark([*days, *aged])
        if mark is not None:
            self._written = mark.written
        start = None if earlier else self._load_window(days, mark, today)
        # After the window's days: a decision restored on an aged value then finds the validator seeded.
        waiting = self.markets.hold_aged([d for d in aged if d.held], find=self.held_observations)
        if waiting:
            log.info("%d stored market days older than the window are kept: they hold values still waiting for a "
                     "decision", len(waiting))
        gone = set(earlier)
        self._stale = [d for d in dates if d in gone or (d < since and day_number(d) not in waiting)]
        return start

    def _load_window(self, days: list[MarketDay], mark: Mark | None, today: int) -> int | None:
        """Load the window's stored days up to their seam (see `load`), as the write of `mark` left them."""
        cfg = self.markets.config
        at = self.log_store.locate(mark.record) if mark is not None and mark.record else None
        if mark is None or at is None:
            return None
        self._through, self.reflected = mark.closed_through, mark.decisions
        first = min(today - cfg.raw_days + 1, mark.closed_through + 1)
        seam = Seam(first_day=first, warm_from=first - WARM_DAYS, mark=mark.record)
        self.markets.load_days(days, seam, find=self.held_observations)
        self.demand.load(demand_of(days, first))
        day_starts = seam.warm_from * DAY_S - cfg.tz_offset_s - cfg.validation.max_skew_s
        return min(day_starts, self.log_store.entries(at, at + 1)[0].arrived_at)

    def _aged(self, date: str) -> MarketDay | None:
        """A stored day older than the window, None if it holds nothing to read: of an earlier format (which kept
        no held values), or damaged (said so: a value it held for a decision is not held again)."""
        try:
            agg = self.days.get(date)
            if agg is None or summary_format(agg) in EARLIER_FORMATS:
                return None
            return from_aggregate(agg)
        except DamagedAggregate as exc:
            log.error("the stored market day %s, older than the window, cannot be read (%s): a value it held for a "
                      "decision is not held again; the day is deleted", date, exc)
            return None

    def write(self, now: int, last_fed: bytes) -> int:
        """Write the closed days that changed since last written, and the day closed last even if nothing
        happened on it (it carries the mark). Returns the days written."""
        through = day_of(now - BACKLOG_S, self.markets.config.tz_offset_s) - 1
        days = self.markets.changed_days(through)
        if through != self._through and (not days or days[-1].day != through):
            days.append(self.markets.market_day(through))
        if not days:
            return 0
        mark = Mark(written=self._written + 1, closed_through=through, record=last_fed,
                    decisions=self.markets.quarantine.made)
        for d in days:
            d.mark = mark
        self.days.put([to_aggregate(d) for d in days], delete=self._stale)
        self._written, self._through, self._stale = mark.written, through, []
        self.markets.kept(d.day for d in days)
        return len(days)

    def observation(self, observation_id: str) -> PriceObservation | None:
        """A price observation of the log by its record id (None if the log holds none that reads)."""
        return self.observations([observation_id]).get(observation_id)

    def observations(self, observation_ids: Sequence[str]) -> dict[str, PriceObservation]:
        """The price observations of the log with these record ids, read in one go: each id is located in the
        log, then only those entries are read. One the log holds no readable price for is left out."""
        at: dict[int, str] = {}
        for oid in observation_ids:
            try:
                index = self.log_store.locate(bytes.fromhex(oid))
            except ValueError:
                index = None
            if index is not None:
                at[index] = oid
        out: dict[str, PriceObservation] = {}
        entries: list[Entry] = []
        wanted = sorted(at)
        while wanted:  # a damaged entry ends what entries_at reads: it is skipped, the rest read on
            try:
                got = self.log_store.entries_at(wanted)
            except DamagedRecord:
                got = []
            entries += got
            wanted = wanted[len(got) + 1:]
        for entry in entries:
            try:
                item = from_record(decode_record(entry.raw), entry.arrived_at)
            except (ValueError, KeyError, TypeError, LedgerError):
                continue
            if isinstance(item, PriceObservation) and item.id == at.get(entry.index):
                out[item.id] = item
        return out

    def held_observations(self, observation_ids: Sequence[str]) -> dict[str, PriceObservation]:
        """`observations`, for the values the loaded days held: one not found is logged (it is not held again)."""
        out = self.observations(observation_ids)
        for oid in observation_ids:
            if oid not in out:
                log.warning("held value %s not held again: the log holds no price record of that id that reads",
                            oid[:16])
        return out
