"""MbgView: the hub's incremental entry point for MBG records and the queries the API and dashboard expose."""

from __future__ import annotations

import heapq
import logging
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

from coap_server.wording import count
from ledger.bodies import SCAN_EVENTS

from ..aggregates import DayAggregates
from ..collector import without_cycle_collection
from ..store import StoreError
from . import epcis
from .analysis import (
    Analysis,
    ContainerTimeline,
    DayBase,
    DayEnd,
    Delivery,
    Finding,
    Flagged,
    FoodSafetyViolation,
    LastClock,
    ReturnOf,
    Timed,
    UnknownSite,
    clock_findings,
    cook_end,
    day_base,
    day_end,
    device_clock_findings,
    early_returns,
    late_trips,
    merge,
    returned_late,
    settle,
    timeline_of,
    unknown_place,
    unknown_site_findings,
    went_back,
)
from .days import StoredDay, decode, mark
from .errors import BeyondWindow, InputError, NotFound
from .events import ScanEvent, StockMovement, from_record
from .held import HeldScan, pack_tags, record_key, unpack_tags
from .plan import Plan, local_date, next_date, previous_date
from .shards import shards
from .stock import StockCard, stock_cards, stock_findings

log = logging.getLogger("jejak.hub.mbg")

# unplanned: meals sent to a school on a day the plan has no delivery for it (closed, or no service day).
STATUSES = ("on_time", "late", "short", "receiving", "missing", "overdue", "in_transit", "pending", "unplanned")
# What seed 1 called the two statuses it logged, for dashboards that still read them.
LEGACY_STATUS = {"departed": "makanan_keluar", "received": "makanan_diterima"}

_UID = re.compile(r"[0-9A-Fa-f]{2}(?:[:\- ]?[0-9A-Fa-f]{2})+")


def _spellings(tag: str) -> list[str]:
    """`tag` as typed, then, if it is an NFC UID, bare and in either case: the ways a tap may have stored it."""
    out = [tag]
    if _UID.fullmatch(tag):
        bare = re.sub(r"[:\- ]", "", tag)
        out += [t for t in dict.fromkeys((bare, bare.upper(), bare.lower())) if t != tag]
    return out


TAG_HINT = "check the tag uid on the ompreng"  # a container no scan names (`jejak mbg` words it again)


class _Day:
    """The scans of one service day, and the day's answer at the last time it was asked for."""

    __slots__ = ("answer", "awaiting", "batches", "closed_late", "digest", "early", "end", "late", "oldest", "scans",
                 "shared")

    def __init__(self) -> None:
        self.scans: list[HeldScan] = []
        self.shared: dict[Any, Any] = {}  # one copy of each tag list and tap context of the day
        self.answer: _Answer | None = None
        self.batches: set[str] = set()  # batches whose first cook tap the day's reconciliation used
        # Containers out and not back by the day's end, whose return the next day's taps may hold (None: not
        # reconciled yet, so any tag tapped the next day may be one).
        self.awaiting: set[str] | None = None
        self.early: dict[str, Timed] | None = None  # the day's early_returns, for the day before
        self.end: DayEnd | None = None  # the day's day_end, for the day after
        # Containers whose first tap of the day is a return closing a trip of a day before the day before
        # (hub.mbg.analysis.late_trips): the date of that trip, by tag. None: not worked out since the days changed.
        self.late: dict[str, str] | None = None
        # The containers of the day's trips that a return of a later day closed (the last late_trips read), whose
        # trips a tap of them on a day in between would reopen. None: not read since the day was reconciled.
        self.closed_late: set[str] | None = None
        self.oldest = 2**62  # the earliest arrival of the day's scans: a prune before it leaves the day alone
        self.digest = 0  # the XOR of the scans' marks (hub.mbg.days.mark): which scans a stored answer was of


def _summary(a: Analysis) -> Analysis:
    """A settled group without the trips and taps it was derived from."""
    return Analysis(plan=a.plan, now=a.now, deliveries=a.deliveries, findings=a.findings, violations=a.violations,
                    keyed=a.keyed, valid_from=a.valid_from, valid_until=a.valid_until)


def _closes_day_before(before: list[ContainerTimeline], timeline: ContainerTimeline) -> bool:
    """Whether a day's timeline of a container holds nothing but the return that closed the day before's trip (empties
    back after midnight): that return is a step of the day before's trip, and opens no trip of its own."""
    if not before or not timeline.steps:
        return False
    closing = {s.record_id for s in before[-1].steps if s.derived and s.event == "returned"}
    return all(s.event == "returned" and s.record_id in closing for s in timeline.steps)


@dataclass(slots=True, kw_only=True)
class _Answer:
    """A day's aggregates: its deliveries and findings settled at a time, and its scans by event and device."""

    settled: Analysis  # without the trips and taps it was derived from
    scans: int
    per_event: Counter[str]
    devices: int


class MbgView:
    """Holds the MBG inputs the hub has verified; every answer is derived from them on demand.

    `ingest` is idempotent (a record id seen before is ignored) and never raises for bad input from
    outside: a malformed scan or stock body is counted in `rejected` with its reason. Scans are held by
    service day (the local day of the time the analytics chose for them), and each day keeps its own answer:
    a question about one day reconciles that day's scans only, and a record invalidates only its own day.
    Answers are derived, never stored as truth. `now` is rounded down to `granularity_s`, and a day's answer
    is reused for as long as no deadline, settle time or running timer of the day changes it.

    With `days` (the store's `mbg` day aggregates, hub/aggregates.py), a past day's answer is kept there once
    it is final (`days_to_store`, written by the caller), and a question about a day whose scans are not all
    held (pruned, or not refilled yet after a restart) reads the stored answer. A stored answer says which
    scans it was of (their count and the XOR of their marks): a new scan of its day, or of a batch its day
    cooked, makes it stale (`take_stale` lists those to delete), except while `refilling`, when the scans fed
    are ones the store already held. Questions over every day held (`findings()` without a date) and the
    findings that span days (device clocks, unknown sites) stay those of the window held.
    """

    def __init__(self, plan: Plan, *, granularity_s: int = 60, days: DayAggregates | None = None) -> None:
        if isinstance(granularity_s, bool) or not isinstance(granularity_s, int) or granularity_s < 1:
            raise InputError(f"granularity_s: expected a whole number of seconds >= 1, got {granularity_s!r}")
        self.plan = plan
        self.granularity_s = granularity_s
        self.movements: list[StockMovement] = []
        self.rejected: list[dict[str, str]] = []
        self.ignored = 0  # other kinds and purged bodies
        self.analysed = 0  # scans put through a day's reconciliation, to show what a question costs
        self._days: dict[str, _Day] = {}
        self._ids: set[bytes | str] = set()  # record ids seen, as `held.record_key` gives them
        self._devices: dict[str, int] = {}  # device -> last arrival
        # What spans days, kept as scans arrive: clock findings per device, unknown sites, first cook per batch.
        self._flagged: dict[tuple[str, str], Flagged] = defaultdict(Flagged)
        # The devices whose clock was off past a limit at their last sync: (device hex, offset s, hub time measured).
        self.device_clocks: Callable[[int], list[tuple[str, int, int]]] = lambda limit_s: []
        self._last_clock: LastClock = {}  # each device's latest scan held, to see its clock go back
        self._unknown: dict[tuple[str, str], UnknownSite] = defaultdict(UnknownSite)  # by site and day
        self._cooks: dict[str, tuple[tuple[int, str, int], HeldScan]] = {}
        self._staff: set[str] = set()  # staff cards seen opening a session: no containers, whoever taps them
        self._base: DayBase | None = None  # the last day reconciled, for its next question or drill-down
        self._unheld: dict[str, _Answer] = {}  # the answer of the last day asked about that holds no scans
        self._whole: tuple[tuple[int, tuple[str, ...]], Analysis] | None = None
        self._cards: dict[tuple[str, str], StockCard] | None = None
        self._stock_findings: dict[str | None, list[Finding]] | None = None
        self.days = days
        self.refilling = False  # scans fed are a refill of the log: stored days are not made stale by them
        self._stored: set[str] = self._stored_dates() if days is not None else set()
        self._stale: list[str] = []  # stored days to delete, in the order they went stale
        self._held_of: dict[str, int] = {}  # how many scans a stored day was settled from, once read or written
        self._retry: dict[str, int] = {}  # a past day not final yet: when to settle it again for the store
        # The containers a stored day's answer has not returned (its container_unreturned findings), for the days
        # whose scans are not all held: a return days later closes their trips (`_stored_answer`).
        self._out_of_stored: dict[str, frozenset[str]] = {}

    # --- input ---------------------------------------------------------------------------------------

    def ingest(self, record: Any, arrived_at: int, clock_offset: int | None = None) -> bool:
        """Take one verified record and the time it reached the hub (and how far its device's clock was off when it
        made it, where the hub measured that); True if it added an MBG input."""
        try:
            item = from_record(record, arrived_at, clock_offset)
        except InputError as exc:
            self.rejected.append({"device": str(record.device), "seq": str(record.seq), **exc.to_dict()})
            return False
        if item is None:
            self.ignored += 1
            return False
        rid = record.id
        # A SHA-256 id is held as its bytes (record_key), which the record has already: no hex to parse back.
        return self.ingest_event(item, rid if type(rid) is bytes and len(rid) == 32 else None)

    def ingest_event(self, item: ScanEvent | StockMovement, key: bytes | str | None = None) -> bool:
        """Take one MBG input; `key` is record_key(item.record_id) if the caller has it."""
        if key is None:
            key = record_key(item.record_id)
        if key in self._ids:
            return False
        self._ids.add(key)
        if isinstance(item, ScanEvent):
            self._hold(item, key)
        else:
            self.movements.append(item)
            self._cards = None
            self._stock_findings = None
        device, arrived_at = item.device, item.arrived_at
        last = self._devices.get(device)
        if last is None or last < arrived_at:
            self._devices[device] = arrived_at
        self._whole = None
        return True

    def _hold(self, scan: ScanEvent, key: bytes | str) -> None:
        t = Timed(scan, self.plan)
        date = t.date
        day = self._days.get(date)
        if day is None:
            day = self._days[date] = _Day()
        held = HeldScan(scan, day.shared, key)
        day.scans.append(held)
        day.early = None
        day.end = None
        day.digest ^= mark(key)
        if scan.tags:
            self._late_changed(date, scan)
        if scan.arrived_at < day.oldest:
            day.oldest = scan.arrived_at
        # _touch and _changed written out: this runs for every scan taken in.
        day.answer = None
        if self._base is not None and self._base.date == date:
            self._base = None
        if self._retry:
            self._retry.pop(date, None)
        if date in self._stored and not self.refilling:
            self._unstore(date)
        if scan.tags:
            # A tap of a container the day before still waits for: it may be its return after midnight, or
            # the tap that shows a later return is of a new trip.
            before = self._days.get(previous_date(date))
            if before is not None and (before.awaiting is None or not before.awaiting.isdisjoint(scan.tags)):
                self._touch(previous_date(date))
                self._changed(previous_date(date))
        if (scan.tags or (scan.event == "cooked" and scan.batch is None)) and next_date(date) in self._days:
            # The day after reads what this day left open (containers out, an evening's cook tap): it may change.
            self._touch(next_date(date))
            self._changed(next_date(date))
        self._note(t, held)

    def _late_changed(self, date: str, scan: ScanEvent) -> None:
        """A tap of containers on `date`: the later days' late returns are read again, and an earlier day (before the
        day before, which the caller sees to) whose trip it may close days late (a return of a container that day
        left out), or whose late-closed trip a tap in between reopens, is worked out again."""
        for d, day in list(self._days.items()):
            if d <= date:
                continue
            day.late = None
            # Only a later day whose first tap of one of these containers is a return may close another trip with it.
            if day.early is None and self.refilling:
                self._touch(d)
            elif not self._early_of(d).keys().isdisjoint(scan.tags):
                self._touch(d)
                self._changed(d)
        self._days[date].late = None
        oldest = previous_date(date)
        if scan.event == "returned":
            # A stored day whose scans are not all held answers from the store: a return of a container it left out
            # is read over it (`_stored_answer`).
            for d in [d for d, out in self._out_of_stored.items() if d < oldest and not out.isdisjoint(scan.tags)]:
                self._unheld.pop(d, None)
                if d in self._days:
                    self._touch(d)
        for d, day in self._days.items():
            if d >= oldest or not self._all_held(d):
                continue  # the day before is seen to by the caller
            if scan.event == "returned":
                if day.end is None and self.refilling:
                    self._touch(d)
                    continue
                hit = not self._end_of(d).out.isdisjoint(scan.tags)
            else:
                hit = day.closed_late is not None and not day.closed_late.isdisjoint(scan.tags)
            if hit:
                self._touch(d)
                self._changed(d)

    def _note(self, t: Timed, held: HeldScan) -> None:
        """Fold one scan into what spans days."""
        s = t.scan
        if t.flag is not None:
            self._flagged[(t.flag, s.device)].add(t)
        back = went_back(self.plan, self._last_clock, s.device, s.seq, s.device_time)
        if back is not None:
            self._flagged[("clock_went_back", s.device)].add(t, back)
        place = unknown_place(self.plan, s.site, s.school)
        if place is not None:
            self._unknown[(place, t.date)].add(t)
        if s.staff is not None and s.staff not in self._staff:
            # A card first seen as a staff card may have been taken for a container already: the days held
            # are worked out again when next asked about (the day of this scan is anyway).
            self._staff.add(s.staff)
            for date in self._days:
                self._touch(date)
        if s.event == "cooked" and s.batch is not None:
            first = self._cooks.get(s.batch)
            if first is None or t.order() < first[0]:
                self._cooks[s.batch] = (t.order(), held)
                for date, day in self._days.items():
                    if s.batch in day.batches:
                        self._touch(date)
                        self._changed(date)

    def _touch(self, date: str) -> None:
        self._days[date].answer = None
        if self._base is not None and self._base.date == date:
            self._base = None

    def _changed(self, date: str) -> None:
        """A scan the day's stored answer was not of: the stored answer is stale (unless this is a refill)."""
        self._retry.pop(date, None)
        if date in self._stored and not self.refilling:
            self._unstore(date)

    def _unstore(self, date: str) -> None:
        self._out_of_stored.pop(date, None)
        self._stored.discard(date)
        self._held_of.pop(date, None)
        self._stale.append(date)
        self._unheld.pop(date, None)
        if date in self._days:
            self._touch(date)

    def prune(self, now: int, keep_days: int) -> int:
        """Forget scans that reached the hub more than `keep_days` days before `now`; return how many.

        The hub's store keeps every record; the analytics only hold the recent days in memory, so a hub that
        runs for months does not grow without bound. Stock movements are all kept: stock on hand is derived
        by replaying every movement.
        """
        cutoff = now - keep_days * 86400
        removed: list[HeldScan] = []
        for date, day in list(self._days.items()):
            if day.oldest >= cutoff:
                continue
            kept: list[HeldScan] = []
            for s in day.scans:
                (kept if s.arrived_at >= cutoff else removed).append(s)
            self._touch(date)
            day.early = None
            if kept:
                day.scans = kept
                day.oldest = min(s.arrived_at for s in kept)
                day.digest = 0
                for s in kept:
                    day.digest ^= mark(s.key)
                day.shared = {}
                for s in kept:
                    s.tags = day.shared.setdefault(s.tags, s.tags)
                    s.extra = day.shared.setdefault(s.extra, s.extra)
            else:
                del self._days[date]
        if removed:
            # A trip whose day is no longer held closes with no late return (the window cannot tell it).
            for date, day in self._days.items():
                if day.late:
                    self._touch(date)
                day.late = None
            self._ids.difference_update(s.key for s in removed)
            self._whole = None
            self._forget(removed)
        return len(removed)

    def _forget(self, removed: list[HeldScan]) -> None:
        """Take scans out of what spans days: only the device clocks, unknown sites and batches they were part
        of are counted again, from the scans still held."""
        flags: set[tuple[str, str]] = set()
        sites: set[str] = set()
        batches: set[str] = set()
        for h in removed:
            t = Timed(h.unpack(), self.plan)
            if t.flag is not None:
                flags.add((t.flag, h.device))
            place = unknown_place(self.plan, h.site, h.school)
            if place is not None:
                sites.add(place)
            if h.event == "cooked" and h.batch is not None and self._cooks[h.batch][1] is h:
                batches.add(h.batch)
        # A clock that went back is judged between a device's consecutive scans held: its devices are judged
        # again from the scans still held, as a hub that refills this window would.
        moved = {h.device for h in removed}
        for device in moved:
            self._flagged.pop(("clock_went_back", device), None)
            self._last_clock.pop(device, None)
        for key in flags:
            del self._flagged[key]
        for key in [key for key in self._unknown if key[0] in sites]:
            del self._unknown[key]
        for batch in batches:
            del self._cooks[batch]
        if not (flags or sites or batches or moved):
            return
        devices = {device for _, device in flags}
        chains: dict[str, list[tuple[int, int, HeldScan]]] = defaultdict(list)
        for day in self._days.values():
            for h in day.scans:
                if h.device in moved:
                    device_time, _, seq = h.numbers()[:3]
                    chains[h.device].append((seq, device_time, h))  # type: ignore[arg-type]
                cook = h.event == "cooked" and h.batch in batches
                place = unknown_place(self.plan, h.site, h.school)
                if h.device not in devices and place not in sites and not cook:
                    continue
                t = Timed(h.unpack(), self.plan)
                if t.flag is not None and (t.flag, h.device) in flags:
                    self._flagged[(t.flag, h.device)].add(t)
                if place is not None and place in sites:
                    self._unknown[(place, t.date)].add(t)
                if cook:
                    first = self._cooks.get(h.batch)  # type: ignore[arg-type]
                    if first is None or t.order() < first[0]:
                        self._cooks[h.batch] = (t.order(), h)  # type: ignore[index]
        for device, chain in chains.items():
            for seq, device_time, h in sorted(chain, key=lambda c: c[0]):
                back = went_back(self.plan, self._last_clock, device, seq, device_time)
                if back is not None:
                    self._flagged[("clock_went_back", device)].add(Timed(h.unpack(), self.plan), back)
        for date, day in self._days.items():
            if day.batches & batches:
                self._touch(date)

    @property
    def scans(self) -> list[ScanEvent]:
        """Every scan held, day by day."""
        return [s.unpack() for _, day in sorted(self._days.items()) for s in day.scans]

    # --- derivation ----------------------------------------------------------------------------------

    def _cook_of(self, batch: str) -> tuple[int, Timed] | None:
        first = self._cooks.get(batch)
        return None if first is None else cook_end(Timed(first[1].unpack(), self.plan))

    def _early_of(self, date: str) -> dict[str, Timed]:
        """Containers' return taps of `date` made before any other tap of them that day (early_returns), by tag."""
        day = self._days.get(date)
        if day is None:
            return {}
        if day.early is None:
            tag_lists: dict[Any, tuple[str, ...]] = {}
            day.early = early_returns(Timed(s.unpack(tag_lists), self.plan) for s in day.scans if s.tags)
        return day.early

    def _closed_late(self, date: str) -> dict[str, Timed]:
        """The return taps of days after the day after `date` that close its trips days late (late_trips), by tag."""
        later: dict[str, Timed] = {}
        for d in sorted(self._days):
            if d > next_date(date):
                for tag, trip_date in self._late_of(d).items():
                    if trip_date == date:
                        later[tag] = self._early_of(d)[tag]
        return later

    def _return_of(self, date: str) -> ReturnOf:
        """Containers' return taps closing trips of `date`: of the day after (hub.mbg.analysis.early_returns), else of
        a later day held (late_trips), by tag."""
        after = self._early_of(next_date(date))
        later = self._closed_late(date)
        day = self._days.get(date)
        if day is not None:
            day.closed_late = set(later)
        if not later:
            return after.get
        return lambda tag: after.get(tag) or later.get(tag)

    def _end_of(self, date: str) -> DayEnd:
        """What `date` left open (hub.mbg.analysis.day_end)."""
        day = self._days.get(date)
        if day is None:
            return DayEnd()
        if day.end is None:
            tag_lists: dict[Any, tuple[str, ...]] = {}
            day.end = day_end(Timed(s.unpack(tag_lists), self.plan) for s in day.scans
                              if s.tags or s.event == "cooked")
        return day.end

    def _all_held(self, date: str) -> bool:
        """Whether every scan of `date` its stored answer was of (if it has one) is held."""
        if date not in self._stored:
            return True
        if date not in self._held_of:
            self._read(date)
        day = self._days.get(date)
        return (0 if day is None else len(day.scans)) >= self._held_of.get(date, 0)

    def _stored_out(self, date: str) -> frozenset[str]:
        """The containers the stored answer of `date` says are not back (its container_unreturned findings)."""
        out = self._out_of_stored.get(date)
        if out is None:
            stored = self._read(date)
            out = frozenset() if stored is None else frozenset(
                tag for _, _, f in stored.keyed if f.code == "container_unreturned" for tag in f.containers)
            if date in self._stored:
                self._out_of_stored[date] = out
        return out

    def _late_of(self, date: str) -> dict[str, str]:
        """Containers whose first tap of `date` is a return closing a trip of a day before the day before
        (late_trips): that trip's date, by tag. The trip's day may be a stored day whose scans are not all held."""
        day = self._days.get(date)
        if day is None:
            return {}
        if day.late is None:
            early = self._early_of(date)
            day.late = late_trips(early, self._earlier(date)) if early else {}
        return day.late

    def _earlier(self, date: str) -> Iterator[tuple[str, DayEnd, Callable[[], Iterator[tuple[str, ...]]]]]:
        """The days before `date` back to the oldest held (a day pruned in part ends them: its trips are not all
        held), as late_trips reads them."""
        oldest = min(self._days.keys() | self._stored)
        d = previous_date(date)
        while d >= oldest:
            day = self._days.get(d)
            if d in self._stored and not self._all_held(d):
                # Older than the window held: what its stored answer left out is all it tells. A container it does not
                # name may have been tapped there, so the days before it are not looked at.
                out = self._stored_out(d)
                yield d, DayEnd(out=out), partial(self._stored_tags, day, out)
                return
            yield d, self._end_of(d), partial(self._tags_of, day)
            d = previous_date(d)

    @classmethod
    def _stored_tags(cls, day: _Day | None, out: frozenset[str]) -> Iterator[tuple[str, ...]]:
        yield tuple(out)
        yield from cls._tags_of(day)

    @staticmethod
    def _tags_of(day: _Day | None) -> Iterator[tuple[str, ...]]:
        if day is None:
            return
        seen: set[int] = set()
        for s in day.scans:
            if s.tags and id(s.tags) not in seen:
                seen.add(id(s.tags))
                yield unpack_tags(s.tags)

    def _end_before(self, date: str) -> DayEnd:
        """What the day before `date` left open (hub.mbg.analysis.day_end), with the trips of earlier days that a
        return of `date` closes days late (late_trips). A return closing a trip of a day not held whole stays a tap
        of `date`: that trip's taps are beyond the window, and the container's history shows the return alone."""
        end = self._end_of(previous_date(date))
        late = {tag for tag, d in self._late_of(date).items() if self._all_held(d)}
        return DayEnd(out=end.out, cooks=end.cooks, late=frozenset(late)) if late else end

    def _day_base(self, date: str) -> DayBase:
        """The day's reconciliation up to where `now` matters; only the day's own scans are read."""
        base = self._base
        if base is None or base.date != date:
            day = self._days.get(date)
            scans = day.scans if day is not None else []
            self.analysed += len(scans)
            tag_lists: dict[Any, tuple[str, ...]] = {}
            base = day_base(self.plan, date, (Timed(s.unpack(tag_lists), self.plan) for s in scans), self._cook_of,
                            self._return_of(date), self._staff, self._end_before(date))
            if day is not None:
                day.batches = base.batches
                day.awaiting = base.awaiting
            self._base = base
        return base

    def _answer(self, now: int, date: str) -> _Answer:
        """The day's aggregates at `now` (rounded): reused while they hold, else settled from the day's scans."""
        now -= now % self.granularity_s
        day = self._days.get(date)
        # A day with no scans held (early morning, or asked about before any record came) keeps its planned
        # deliveries too: with every school of a country planned, they are not free to build each minute.
        kept = day.answer if day is not None else self._unheld.get(date)
        if kept is not None and kept.settled.valid_from <= now < kept.settled.valid_until:
            return kept
        answer = self._stored_answer(now, date, day)
        if answer is None:
            a = self._settle_by_groups(date, now)
            scans = day.scans if day is not None else []
            answer = _Answer(settled=_summary(a),
                             scans=len(scans), per_event=Counter(s.event for s in scans),
                             devices=len({s.device for s in scans}))
        if day is not None:
            day.answer = answer
        else:
            self._unheld = {date: answer}
        return answer

    # --- the store's day aggregates ------------------------------------------------------------------

    def _stored_answer(self, now: int, date: str, day: _Day | None) -> _Answer | None:
        """The day's stored answer, if it is the day's answer at `now`: the day's scans are not all held (fewer
        than the stored answer was of: pruned, or not refilled yet), or exactly its scans are held and it is
        final. A stored answer of other scans is stale; a damaged one is logged and dropped. None: settle."""
        stored = self._read(date)
        if stored is None:
            return None
        held = (len(day.scans), day.digest) if day is not None else (0, 0)
        if held[0] < stored.held[0]:
            valid = (-(2**62), 2**62)  # what the store holds is more than the scans held: it stands
        elif held == stored.held and stored.final and stored.valid_from <= now:
            valid = (stored.valid_from, 2**62)
        else:
            if held != stored.held:
                log.warning("MBG day %s: its stored answer is of %d scans, %d other ones are held; settled again",
                            date, stored.held[0], held[0])
                self._unstore(date)
            return None
        keyed = list(stored.keyed)
        if held[0] < stored.held[0]:
            keyed = self._returned_late(date, keyed)
        settled = Analysis(plan=self.plan, now=now, deliveries={(d.school, date): d for d in stored.deliveries},
                           findings=[f for _, _, f in keyed], violations=list(stored.violations), keyed=keyed,
                           valid_from=valid[0], valid_until=valid[1])
        return _Answer(settled=settled, scans=stored.scans, per_event=stored.per_event, devices=stored.devices)

    def _returned_late(self, date: str, keyed: list[tuple[int, tuple[str, ...], Finding]],
                       ) -> list[tuple[int, tuple[str, ...], Finding]]:
        """A stored day's findings with the returns of later days held that close its trips (late_trips) read over
        them: those containers leave its container_unreturned findings, and container_returned_late findings say
        when they came back. Its deliveries and other findings stay as stored."""
        if not self._stored_out(date):
            return keyed
        back = self._closed_late(date)
        if not back:
            return keyed
        out: list[tuple[int, tuple[str, ...], Finding]] = []
        for group, key, f in keyed:
            if f.code == "container_unreturned" and not back.keys().isdisjoint(f.containers):
                by_return: dict[str, list[tuple[str, Timed]]] = defaultdict(list)
                for tag in f.containers:
                    if tag in back:
                        by_return[back[tag].date].append((tag, back[tag]))
                for on, items in sorted(by_return.items()):
                    out.append((group, ("container_returned_late", f.subject, date, on),
                                returned_late(f.subject, date, on, items)))
                left = tuple(t for t in f.containers if t not in back)
                if not left:
                    continue
                f = replace(f, containers=left, measured=len(left),
                            detail=f"{count(len(left), 'container')} not returned to the kitchen")
            out.append((group, key, f))
        out.sort(key=lambda k: (k[0], k[1]))
        return out

    def _read(self, date: str) -> StoredDay | None:
        if self.days is None or date not in self._stored:
            return None
        try:
            with without_cycle_collection():  # a national day is 20,000 rows: no reference cycles among them
                agg = self.days.get(date)
            stored = None if agg is None else decode(agg)
        except StoreError as exc:  # DamagedAggregate among them: settled from the scans held, written again
            log.error("MBG day %s: its stored answer cannot be read (%s: %s); settled from the scans held",
                      date, exc.code, exc.message)
            self._unstore(date)
            return None
        if stored is not None:
            self._held_of[date] = stored.held[0]
        return stored

    def _stored_dates(self) -> set[str]:
        assert self.days is not None
        try:
            return set(self.days.dates())
        except StoreError as exc:
            log.error("MBG days: the stored days cannot be listed (%s: %s); past days are settled from the scans "
                      "held", exc.code, exc.message)
            return set()

    def stored_dates(self) -> list[str]:
        """The days the store holds an answer of (as far as this view knows)."""
        return sorted(self._stored)

    def days_to_store(self, now: int, *, arrived_before: int | None = None) -> list[StoredDay]:
        """Past days whose answer is final and not in the store yet, settled at `now` if need be; with
        `arrived_before`, also the days holding scans that arrived before it (what a prune is about to forget),
        final or not. They count as stored from here on: `unstored` takes back those the write lost."""
        if self.days is None:
            return []
        now -= now % self.granularity_s
        today = self.today(now)
        out = []
        for date, day in sorted(self._days.items()):
            if date in self._stored or not day.scans:
                continue
            doomed = arrived_before is not None and day.oldest < arrived_before
            if not doomed and (date >= today or self._retry.get(date, now) > now):
                continue
            answer = self._answer(now, date)
            final = answer.settled.valid_until >= 2**62 and date < today
            if not (final or doomed):
                self._retry[date] = max(answer.settled.valid_until, now + 600)
                continue
            settled = answer.settled
            out.append(StoredDay(
                date=date, final=final, valid_from=settled.valid_from, valid_until=settled.valid_until,
                deliveries=tuple(d for (_, dd), d in sorted(settled.deliveries.items()) if dd == date),
                keyed=tuple(settled.keyed), violations=tuple(settled.violations), scans=answer.scans,
                per_event=answer.per_event, devices=answer.devices, held=(len(day.scans), day.digest)))
            self._stored.add(date)
            self._held_of[date] = len(day.scans)
            self._retry.pop(date, None)
        return out

    def unstored(self, dates: Iterable[str], stale: list[str]) -> None:
        """A write that failed: the days `days_to_store` gave are answered from the scans held again, and the
        stale days `take_stale` gave wait for the next write."""
        for date in dates:
            self._stored.discard(date)
            self._held_of.pop(date, None)
        self._stale[:0] = stale

    def take_stale(self) -> list[str]:
        """The stored days gone stale since the last call, for the caller to delete."""
        stale, self._stale = self._stale, []
        return stale

    def _held_whole(self, date: str) -> None:
        """Refuse a drill-down into a day whose stored answer is of more scans than the view holds."""
        if date not in self._stored:
            return
        if date not in self._held_of:
            self._read(date)
        day = self._days.get(date)
        settled_from = self._held_of.get(date, 0)
        if (0 if day is None else len(day.scans)) < settled_from:
            raise BeyondWindow(f"MBG day {date}: {count(settled_from, 'scan')}, the read model holds "
                               f"{0 if day is None else len(day.scans)} of them (older than its window, or not "
                               "refilled yet after a restart); its deliveries, findings and violations are answered "
                               "from the stored day, its taps and trips are not",
                               hint="export the day's records from the hub's log for an audit, or raise "
                                    "mbg_keep_days to hold more days in memory")

    def _settle_by_groups(self, date: str, now: int) -> Analysis:
        """The day settled at `now` a group of scans at a time (hub.mbg.shards): the answer one reconciliation of
        the whole day gives, with the memory of the largest group instead of the whole day's."""
        day = self._days.get(date)
        parts = []
        batches: set[str] = set()
        awaiting: set[str] = set()
        return_of = self._return_of(date)
        end = self._end_before(date)
        with without_cycle_collection():
            groups, untouched = shards(self.plan, day.scans if day is not None else [])
            for scans, planned in groups:
                tag_lists: dict[Any, tuple[str, ...]] = {}
                self.analysed += len(scans)
                base = day_base(self.plan, date, (Timed(s.unpack(tag_lists), self.plan) for s in scans),
                                self._cook_of, return_of, self._staff, end)
                batches |= base.batches
                awaiting |= base.awaiting
                parts.append(_summary(settle(base, now, planned)))
            if untouched:
                parts.append(settle(day_base(self.plan, date, (), self._cook_of), now, untouched))
        if day is not None:
            day.batches = batches
            day.awaiting = awaiting
        a = merge(self.plan, now, parts)
        a.valid_from = max((p.valid_from for p in parts), default=-(2**62))
        a.valid_until = min((p.valid_until for p in parts), default=2**62)
        return a

    def _spanning(self) -> list[Finding]:
        """Findings over every day held: device clocks (as their records and their last sync show), then unknown
        sites."""
        return (device_clock_findings(self.plan, self.device_clocks(self.plan.clock.max_skew_s))
                + clock_findings(self.plan, self._flagged) + unknown_site_findings(self._unknown))

    def analysis(self, now: int, dates: tuple[str, ...] = ()) -> Analysis:
        """The full reconciliation (trips, taps, findings) of `dates`, or of every day held, for drill-down."""
        now -= now % self.granularity_s
        key = (now, dates)
        if self._whole is not None and self._whole[0] == key:
            return self._whole[1]
        days = sorted(set(dates) if dates else set(self._days))
        for d in dates:
            self._held_whole(d)
        a = merge(self.plan, now, (settle(self._day_base(d), now) for d in days), self._spanning())
        a.findings.extend(self.stock_findings())
        self._whole = (key, a)
        return a

    def stock_findings(self, date: str | None = None) -> list[Finding]:
        """Findings of the stock cards (of one day, or all)."""
        if self._stock_findings is None:
            by_date: dict[str | None, list[Finding]] = defaultdict(list)
            for f in stock_findings(self.cards().values(), self.plan):
                by_date[None].append(f)
                by_date[f.date].append(f)
            self._stock_findings = dict(by_date)
        return self._stock_findings.get(date, [])

    def today(self, now: int) -> str:
        return local_date(now, self.plan.tz_offset_s)

    def cards(self) -> dict[tuple[str, str], StockCard]:
        if self._cards is None:
            self._cards = stock_cards(self.movements, self.plan)
        return self._cards

    # --- queries -------------------------------------------------------------------------------------

    def deliveries(self, now: int, date: str | None = None, *, kitchen: str | None = None,
                   school: str | None = None) -> list[Delivery]:
        """Every planned or observed delivery on `date` (default: today), optionally for one kitchen or school."""
        date = date or self.today(now)
        a = self._answer(now, date).settled
        return [d for (s, dd), d in sorted(a.deliveries.items()) if dd == date
                and (kitchen is None or d.kitchen == kitchen) and (school is None or s == school)]

    def deliveries_by_kitchen(self, now: int, date: str | None = None) -> dict[str, Any]:
        """Today's deliveries per kitchen and school with counts of on time, late, short and missing."""
        date = date or self.today(now)
        out: dict[str, Any] = {}
        for d in self.deliveries(now, date):
            k = out.setdefault(d.kitchen, {"kitchen": d.kitchen, "date": date, "counts": Counter(), "schools": []})
            k["schools"].append(d.to_dict())
            for status in d.statuses:
                k["counts"][status] += 1
        for k in out.values():
            k["counts"] = {s: k["counts"].get(s, 0)
                           for s in STATUSES}
        return out

    def late(self, now: int, date: str | None = None) -> list[Delivery]:
        return [d for d in self.deliveries(now, date) if "late" in d.statuses]

    def short(self, now: int, date: str | None = None) -> list[Delivery]:
        return [d for d in self.deliveries(now, date) if "short" in d.statuses]

    def missing(self, now: int, date: str | None = None) -> list[Delivery]:
        """Deliveries that have not arrived after their due time: missing, or overdue while the truck is out."""
        return [d for d in self.deliveries(now, date) if "missing" in d.statuses or "overdue" in d.statuses]

    def lost(self, now: int, date: str | None = None) -> list[dict[str, Any]]:
        """Containers reported lost or not back at the kitchen after its return time, one row per container."""
        rows: list[dict[str, Any]] = []
        for f in self.findings(now, date):
            if f.code in ("container_lost", "container_unreturned"):
                rows.extend({"tag": tag, "school": f.subject, "date": f.date, "reason": f.code} for tag in f.containers)
        return rows

    def container(self, tag: str, now: int) -> list[ContainerTimeline]:
        """The container's history, one timeline per day it travelled; NotFound if no tap ever named it. A UID is
        found however it is written: in either case, and with the colons, dashes or spaces a phone's NFC app puts
        between its bytes (04:A1:B2:... is 04A1B2...)."""
        for spelling in _spellings(tag):
            timelines = self._timelines(spelling)
            if timelines:
                return timelines
        older = [d for d in self._stored if d not in self._days]
        hint = TAG_HINT
        if older:
            hint += (f"; the scans of {count(len(older), 'stored day')} up to {max(older)} are beyond the window held "
                     "in memory, their containers are not searched")
        raise NotFound(f"container {tag!r}: no scan names this tag", hint=hint)

    def _timelines(self, tag: str) -> list[ContainerTimeline]:
        timelines: list[ContainerTimeline] = []
        packed = pack_tags((tag,))
        for date, day in sorted(self._days.items()):
            # A packed tag list holds the packed tag wherever it names the tag (and rarely where it does not,
            # which the day's trips then tell).
            if any(packed in s.tags if type(s.tags) is type(packed) is bytes else tag in unpack_tags(s.tags)
                   for s in day.scans):
                timeline = self._day_base(date).trips.get((tag, date))
                if timeline is not None and not _closes_day_before(timelines, timeline_of(timeline)):
                    closes = self._late_of(date).get(tag)
                    timelines.append(timeline_of(timeline) if closes is None or self._all_held(closes)
                                     else replace(timeline_of(timeline), closes=closes))
        return timelines

    def findings(self, now: int, date: str | None = None) -> list[Finding]:
        """All findings; with `date`, those of that day (device-level clock findings have the day of their worst record)."""
        spanning = self._spanning()
        if date is not None:
            return ([f for f in spanning if f.date == date] + self._answer(now, date).settled.findings
                    + self.stock_findings(date))
        days = [self._answer(now, d).settled for d in sorted(self._days)]
        return merge(self.plan, now, days, spanning).findings + self.stock_findings()

    def violations(self, now: int, date: str | None = None) -> list[FoodSafetyViolation]:
        if date is not None:
            return list(self._answer(now, date).settled.violations)
        return merge(self.plan, now, (self._answer(now, d).settled for d in sorted(self._days))).violations

    def stock_on_hand(self, kitchen: str | None = None) -> list[dict[str, Any]]:
        """Stock on hand per kitchen and item, replayed from the movements."""
        return [c.on_hand_row() for (k, _), c in self.cards().items() if kitchen is None or k == kitchen]

    def stock_card(self, kitchen: str, item: str) -> StockCard:
        card = self.cards().get((kitchen, item))
        if card is None:
            raise NotFound(f"stock card {kitchen}/{item}: no movement recorded",
                           hint="list the cards with stock_on_hand(kitchen)")
        return card

    def epcis_document(self, now: int, date: str | None = None) -> dict[str, Any]:
        """Scans of `date` (default: all) as an EPCIS 2.0 JSON-LD document; a tap repeated at the same site adds
        no event."""
        dates = [date] if date is not None else sorted(self._days)
        if date is not None:
            self._held_whole(date)
        timed = heapq.merge(*(self._day_base(d).timed for d in dates if d in self._days), key=Timed.order)
        return epcis.document((epcis.scan_event(t, self.plan) for t in timed if not t.repeat), created_at=now)

    def summary(self, now: int, date: str | None = None) -> dict[str, Any]:
        """The dashboard summary (seed 1's /api/dashboard/summary, extended): today's (or `date`'s) scans per
        status, devices, last sync, and the day's deliveries and alerts."""
        date = date or self.today(now)
        answer = self._answer(now, date)
        per_status = answer.per_event
        deliveries = [d for (_, dd), d in answer.settled.deliveries.items() if dd == date]
        counts = Counter(s for d in deliveries for s in d.statuses)
        findings = self.findings(now, date)
        return {
            "date": date,
            "total_scans_today": answer.scans,
            "scans_today": {e: per_status.get(e, 0) for e in SCAN_EVENTS},
            "legacy_status_today": {legacy: per_status.get(e, 0) for e, legacy in LEGACY_STATUS.items()},
            "devices": len(self._devices),
            "devices_today": answer.devices,
            "last_sync": max(self._devices.values(), default=None),
            # `expected` counts the planned deliveries; one the plan has none for that day (a closed school that got
            # meals anyway) is counted in `unplanned` alone, so the statuses add up to expected + unplanned.
            "deliveries": {"expected": sum(1 for d in deliveries if d.expected > 0),
                           **{s: counts.get(s, 0) for s in STATUSES}},
            # Of the planned deliveries: what came in where none was planned is in its over_receipt finding.
            "portions": {"expected": sum(d.expected for d in deliveries),
                         "received": sum(d.received_portions for d in deliveries if d.expected > 0)},
            "food_safety_violations": sum(1 for v in answer.settled.violations if v.date == date),
            "alerts": sum(1 for f in findings if f.severity == "alert"),
            "findings": len(findings),
            "stock_movements": len(self.movements),
            "rejected_records": len(self.rejected),
        }
