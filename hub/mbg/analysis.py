"""Container timelines, per-school delivery reconciliation and food-safety timers over MBG scans."""

from __future__ import annotations

import heapq
from bisect import insort
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from itertools import pairwise, repeat
from typing import Any, Literal, cast

from coap_server.wording import agree, count

from ..collector import without_cycle_collection
from .events import ScanEvent, chosen_time
from .plan import Plan, School, format_local, local_date, local_midnight, next_date, previous_date

# The order a container normally sees; "lost", "damaged", "sample" and "incident" stand outside it.
STAGES = ("cooked", "packed", "departed", "arrived", "received", "served", "returned")
STAGE_INDEX = {name: i for i, name in enumerate(STAGES)}

Severity = Literal["alert", "warning", "info"]
SEVERITY: dict[str, Severity] = {
    "late_delivery": "alert", "short_delivery": "alert", "missing_delivery": "alert", "overdue_delivery": "alert",
    "container_lost": "alert", "container_unreturned": "alert", "container_damaged": "info",
    "container_returned_late": "info",
    "duplicate_scan": "warning", "out_of_order": "warning", "unknown_site": "warning", "staff_card_tag": "warning",
    "staff_not_on_roster": "warning",
    "over_receipt": "warning", "misrouted": "alert", "container_at_two_schools": "warning",
    "returned_without_arrival": "warning", "returned_to_other_kitchen": "warning", "tag_not_sent": "warning",
    "sent_by_other_kitchen": "info",
    "clock_skew": "warning", "late_sync": "info", "clock_went_back": "warning", "device_clock": "warning",
    "cook_to_serve": "alert", "danger_zone": "alert", "hot_holding": "alert", "no_temperature": "warning",
    "stock_overdraw": "alert", "stock_receipt_late": "warning", "stock_count_difference": "warning",
    "stock_unit_mismatch": "warning",
}


class Timed:
    """A scan together with the time the analytics chose for it (internal, kept small for scale)."""

    __slots__ = ("basis", "counted", "date", "flag", "fresh", "repeat", "scan", "school", "skew", "tags", "time")

    def __init__(self, scan: ScanEvent, plan: Plan) -> None:
        self.scan = scan
        self.time, self.basis, self.skew, self.flag = chosen_time(scan.device_time, scan.arrived_at, plan.clock,
                                                                  scan.clock_offset)
        school = scan.school
        if school is None and plan.school(scan.site) is not None:
            school = scan.site
        self.school = school
        self.date = local_date(self.time, plan.site_offset(school or scan.site))
        # Idempotent counting: `fresh` are the tags this tap names for the first time for its event at its site
        # (a repeat of them counts nothing); `counted` are those of them the site counts (a container bound
        # for another school is not this school's delivery); `repeat` marks a tap that adds nothing at all.
        self.tags: tuple[str, ...] = scan.tags
        self.fresh = self.tags
        self.counted = self.tags
        self.repeat = False

    def order(self) -> tuple[int, str, int]:
        """Where the scan sorts: by chosen time, then device and sequence number."""
        return (self.time, self.scan.device, self.scan.seq)

    def correct(self, device_time: int) -> int:
        """Another device timestamp of the scan (its cook-end) on the clock chosen for the scan."""
        return device_time - (self.scan.device_time - self.time)

    def portions(self, tags: tuple[str, ...]) -> int | None:
        """This tap's count for some of its tags: a count is spread evenly over the tags it names."""
        count = self.scan.count
        if count is None:
            return None
        if not self.tags:
            return 0 if self.repeat else count
        return count * len(tags) // len(self.tags)


@dataclass(frozen=True, slots=True, kw_only=True)
class Finding:
    """Something a kitchen head, principal or inspector should look at, with the records behind it."""

    code: str
    subject: str  # school, kitchen, device or stock item the finding is about
    date: str | None = None
    detail: str = ""
    measured: int | None = None
    limit: int | None = None
    containers: tuple[str, ...] = ()
    records: tuple[str, ...] = ()
    other_school: str | None = None  # the second school a misroute (the destination) or a container at two schools names
    # Which of a subject's findings of one code on one day this is, where a day can have several: the meals of a
    # food-safety violation not served yet ('not_served'); of a cook_to_serve one timed to their arrival, no serving
    # being tapped ('arrival'), or served late (None); of a danger_zone or hot_holding one served ('served'), None
    # in a day stored before those were apart (FoodSafetyViolation.part); of a staff_not_on_roster one, taps by cards
    # its kitchen's roster lists only until (or from) the time in `limit` ('until', 'from').
    part: str | None = None
    # The kitchen whose roster lists the staff cards of a staff_not_on_roster finding (None: no roster lists them).
    # A finding names no card: staff cards are personal data, and findings are public; its records say which.
    other_kitchen: str | None = None

    @property
    def severity(self) -> Severity:
        return SEVERITY.get(self.code, "warning")

    @property
    def ref(self) -> str:
        """The finding's name among the day's: what an alert raised from it is listed under."""
        return (f"{self.code}/{self.subject}/{self.date}" + (f"/{self.part}" if self.part else "")
                + (f"/{self.other_kitchen}" if self.other_kitchen else ""))

    def key(self) -> tuple[str, str]:
        return (self.code, self.subject)

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "severity": self.severity, "subject": self.subject, "date": self.date,
                "detail": self.detail, "measured": self.measured, "limit": self.limit,
                "containers": list(self.containers), "records": list(self.records), "other_school": self.other_school,
                "part": self.part, "other_kitchen": self.other_kitchen}


def safety_part(rule: str, unserved: bool, to_arrival: bool) -> str | None:
    """Which of a delivery's meals a food-safety violation is about: those not served yet ('not_served'); for
    cook_to_serve those timed to their arrival, no serving being tapped ('arrival'), or served late (None); for the
    temperature rules those served, or back at the kitchen with no serving tapped ('served')."""
    if unserved:
        return "not_served"
    if rule == "cook_to_serve":
        return "arrival" if to_arrival else None
    return "served"


@dataclass(frozen=True, slots=True, kw_only=True)
class FoodSafetyViolation:
    """A food-safety rule broken for the meals of one delivery; `measured` is the worst container's value."""

    rule: Literal["cook_to_serve", "danger_zone", "hot_holding"]
    limit: int
    measured: int
    unit: Literal["s", "cc"]
    source: str
    school: str
    kitchen: str
    date: str
    at: int  # when the limit was crossed (timers) or the offending reading was taken (temperatures)
    open: bool = False  # the timer is still running: the meals were not served yet
    # cook_to_serve measured to the meals' first tap in at the school, as no serving was tapped: they were
    # served that late at least.
    to_arrival: bool = False
    containers: tuple[str, ...] = ()
    records: tuple[str, ...] = ()
    # Which of the delivery's meals (safety_part): the meals served and the meals not served yet of one delivery are
    # violations of their own, so a kitchen head reads a food-safety incident that happened apart from meals to act
    # on now. None for a danger_zone or hot_holding violation of a day stored before they were apart.
    part: str | None = None

    def finding(self) -> Finding:
        what = {"cook_to_serve": "time from cook-end to arrival at school (not tapped served)" if self.to_arrival
                else "time from cook-end to serving",
                "danger_zone": "time in the 5-60 °C danger zone",
                "hot_holding": "lowest temperature before serving"}[self.rule]
        containers = count(len(self.containers), "container")
        if self.rule == "cook_to_serve" and self.part == "not_served":
            what = f"time since cook-end of {containers} not served yet"
        elif self.rule == "cook_to_serve":
            what = f"{what} of {containers}"
        elif self.part is not None:
            what = f"{what} of {containers} {'not served yet' if self.part == 'not_served' else 'served'}"
        return Finding(code=self.rule, subject=self.school, date=self.date,
                       detail=f"{what}: measured {self.measured} {self.unit}, limit {self.limit} {self.unit}"
                              f"{' (still open)' if self.open else ''}; source: {self.source}",
                       measured=self.measured, limit=self.limit, containers=self.containers,
                       records=self.records, part=self.part)

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "limit": self.limit, "measured": self.measured, "unit": self.unit,
                "source": self.source, "school": self.school, "kitchen": self.kitchen, "date": self.date,
                "at": self.at, "open": self.open, "to_arrival": self.to_arrival, "part": self.part,
                "containers": list(self.containers), "records": list(self.records)}


@dataclass(frozen=True, slots=True, kw_only=True)
class ContainerStep:
    event: str
    time: int
    basis: str
    site: str
    record_id: str
    device: str
    school: str | None = None
    parent: str | None = None
    batch: str | None = None
    temp_cc: int | None = None
    derived: bool = False  # taken from the batch's cook tap or the school's serving tap, not a tap of this tag

    def to_dict(self) -> dict[str, Any]:
        return {"event": self.event, "time": self.time, "basis": self.basis, "site": self.site,
                "record": self.record_id, "device": self.device, "school": self.school, "parent": self.parent,
                "batch": self.batch, "temp_cc": self.temp_cc, "derived": self.derived}


@dataclass(frozen=True, slots=True, kw_only=True)
class ContainerTimeline:
    """One container's day: cooked -> packed -> departed -> arrived -> received -> served -> returned."""

    tag: str
    date: str
    school: str | None
    steps: tuple[ContainerStep, ...]
    # The date of the container's trip this day's first return closes days late (late_trips) when that trip's taps are
    # beyond the window held: the return is all this history can show of it.
    closes: str | None = None

    def first(self, event: str) -> ContainerStep | None:
        return next((s for s in self.steps if s.event == event), None)

    @property
    def stage(self) -> str | None:
        """The furthest stage reached, or 'lost' once a lost tap was made."""
        if any(s.event == "lost" for s in self.steps):
            return "lost"
        reached = [STAGE_INDEX[s.event] for s in self.steps if s.event in STAGE_INDEX]
        return STAGES[max(reached)] if reached else None

    def to_dict(self) -> dict[str, Any]:
        out = {"tag": self.tag, "date": self.date, "school": self.school, "stage": self.stage,
               "steps": [s.to_dict() for s in self.steps]}
        if self.closes is not None:
            out["closes"] = self.closes
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class Delivery:
    """Expected against received portions for one school on one day."""

    school: str
    school_name: str
    kitchen: str
    date: str
    expected: int
    departed_portions: int
    received_portions: int
    containers_out: int
    containers_in: int
    deadline_at: int
    departed_at: int | None
    arrived_at: int | None
    received_at: int | None
    served_at: int | None
    # on_time, late, short, receiving (still tapping in), missing, overdue (on the road past its due time),
    # pending, in_transit; unplanned: meals sent to or tapped in at a school on a day the plan has no delivery for it
    # (closed, or no service day), judged against no deadline
    statuses: tuple[str, ...]
    late_s: int
    shortfall: int
    time_basis: str  # device, arrival, corrected or mixed: which clock the times above came from

    @property
    def status(self) -> str:
        for s in ("missing", "overdue", "late", "short", "receiving", "in_transit", "pending", "unplanned"):
            if s in self.statuses:
                return s
        return "on_time"

    def to_dict(self) -> dict[str, Any]:
        return {"school": self.school, "school_name": self.school_name, "kitchen": self.kitchen,
                "date": self.date, "status": self.status, "statuses": list(self.statuses),
                "expected": self.expected, "departed_portions": self.departed_portions,
                "received_portions": self.received_portions, "shortfall": self.shortfall,
                "containers_out": self.containers_out, "containers_in": self.containers_in,
                "deadline_at": self.deadline_at, "departed_at": self.departed_at, "arrived_at": self.arrived_at,
                "received_at": self.received_at, "served_at": self.served_at, "late_s": self.late_s,
                "time_basis": self.time_basis}


class _Trip:
    """One container's steps on one day (internal)."""

    __slots__ = ("bound", "cooked", "date", "early", "returned", "school", "served", "steps", "tag")

    def __init__(self, tag: str, date: str) -> None:
        self.tag = tag
        self.date = date
        self.school: str | None = None
        self.bound = False  # the school is the destination a kitchen tap named, not the first school it reached
        self.steps: list[Timed] = []
        self.cooked: tuple[int, Timed] | None = None  # corrected cook-end time, the cook tap
        self.served: Timed | None = None  # the school's serving tap, when the tag itself was not tapped
        self.returned: Timed | None = None  # its return tap of the next day, when it came back after midnight
        # Its taps in at a school made before it left its kitchen that day (a card tapped at the gate by mistake, or
        # a gate clock far behind): in its history and its out_of_order finding, but no arrival of its meals.
        self.early: list[Timed] = []


@dataclass(slots=True, kw_only=True)
class Analysis:
    """Everything derived from one set of scans; rebuilt, never edited, when records arrive."""

    plan: Plan
    now: int
    deliveries: dict[tuple[str, str], Delivery] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    violations: list[FoodSafetyViolation] = field(default_factory=list)
    trips: dict[tuple[str, str], _Trip] = field(default_factory=dict)
    scans_by_date: dict[str, list[Timed]] = field(default_factory=dict)
    timed: list[Timed] = field(default_factory=list)
    # Each finding with the group and sort key it was emitted under, so that days reconciled apart merge
    # into the order one reconciliation of all of them gives.
    keyed: list[tuple[int, tuple[str, ...], Finding]] = field(default_factory=list)
    # The answer holds for any `now` in [valid_from, valid_until): no deadline, settle time or open timer
    # of the day changes it in between.
    valid_from: int = 0
    valid_until: int = 0

    def timeline(self, tag: str, date: str) -> ContainerTimeline | None:
        trip = self.trips.get((tag, date))
        return None if trip is None else timeline_of(trip)

    def timelines_of(self, tag: str) -> list[ContainerTimeline]:
        return [timeline_of(t) for (tg, _), t in sorted(self.trips.items()) if tg == tag]


def _step(t: Timed, *, event: str | None = None, time: int | None = None, derived: bool = False) -> ContainerStep:
    s = t.scan
    return ContainerStep(event=event or s.event, time=t.time if time is None else time, basis=t.basis,
                         site=s.site, record_id=s.record_id, device=s.device, school=t.school, parent=s.parent,
                         batch=s.batch, temp_cc=s.temp_cc, derived=derived)


def timeline_of(trip: _Trip) -> ContainerTimeline:
    steps = [_step(t) for t in (*trip.steps, *trip.early)]
    if trip.cooked is not None and not any(t.scan.event == "cooked" for t in trip.steps):
        steps.append(_step(trip.cooked[1], event="cooked", time=trip.cooked[0], derived=True))
    if trip.served is not None:
        steps.append(_step(trip.served, derived=True))
    if trip.returned is not None:
        steps.append(_step(trip.returned, derived=True))
    steps.sort(key=lambda s: (s.time, STAGE_INDEX.get(s.event, 99)))
    return ContainerTimeline(tag=trip.tag, date=trip.date, school=trip.school, steps=tuple(steps))


def clock_text(t: int, offset: int) -> str:
    """A time as the local time of day (HH:MM) at `offset` seconds from UTC, as findings' details write it."""
    s = (t + offset) % 86_400
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}"


# The events that bring a container in at a school.
_IN = ("arrived", "received")
# Taps without container tags, by (school, day) and event: counts, temperatures and serving.
_SchoolTaps = dict[tuple[str, str], dict[str, list[Timed]]]
# Taps read again, by (school or site, day, event): (container tag or "" for a count tap, the repeat).
_Repeats = dict[tuple[str, str, str], list[tuple[str, Timed]]]


# The groups findings come in, in the order one reconciliation lists them.
CLOCK, UNKNOWN, ELSEWHERE, DUPLICATE, DELIVERY, ORDER, LOST, SAFETY = range(8)


def _emit(a: Analysis, group: int, key: tuple[str, ...], finding: Finding) -> None:
    a.keyed.append((group, key, finding))
    a.findings.append(finding)


# The first cook tap of a batch (corrected cook-end, the tap), across every day held.
CookOf = Callable[[str], "tuple[int, Timed] | None"]
# A container's return tap of the next day that came before anything else the tag did that day (see
# `early_returns`), by tag.
ReturnOf = Callable[[str], "Timed | None"]
# Events that put a container on a trip: a return after one of them on the same day closes that day's trip.
_OUT = ("packed", "departed")


def early_returns(timed: Iterable[Timed]) -> dict[str, Timed]:
    """Each tag's first return tap of a day that came before any other tap of the tag that day: a container
    back after midnight closes the trip of the day before (days are local days, and the empties of a late
    afternoon can reach the kitchen after 00:00)."""
    out: dict[str, Timed] = {}
    busy: set[str] = set()
    for t in sorted(timed, key=Timed.order):
        if t.scan.event != "returned":
            busy.update(t.tags)
            continue
        for tag in t.tags:
            if tag not in busy and tag not in out:
                out[tag] = t
    return out


@dataclass(frozen=True, slots=True, kw_only=True)
class DayEnd:
    """What a day leaves to the next: the containers out and not back at its end (a tap of one the next day is of
    a trip a kitchen made), and each kitchen's cook tap naming no batch made after its last container went out
    that day (the next morning's meals, cooked before midnight)."""

    out: frozenset[str] = frozenset()
    cooks: dict[str, tuple[int, Timed]] = field(default_factory=dict)
    # Containers out at the end of an earlier day still (no tap of them since) whose first tap of this day is a return
    # (`late_trips`): that return closes the trip of that day, days late, as `out`'s close the day before's.
    late: frozenset[str] = frozenset()


def day_end(timed: Iterable[Timed]) -> DayEnd:
    """The `DayEnd` of one day's taps."""
    out: dict[str, bool] = {}
    cooks: dict[str, tuple[int, Timed]] = {}
    for t in sorted(timed, key=Timed.order):
        event = t.scan.event
        if event in _OUT:
            out.update(zip(t.tags, repeat(True)))
            cooks.pop(t.scan.site, None)  # cooked for this trip, not for the next day
        elif event in ("returned", "lost"):
            out.update(zip(t.tags, repeat(False)))
        elif event == "cooked" and t.scan.batch is None:
            cooked = cook_end(t)
            kept = cooks.get(t.scan.site)
            if kept is None or cooked[0] >= kept[0]:
                cooks[t.scan.site] = cooked
    return DayEnd(out=frozenset(tag for tag, still in out.items() if still), cooks=cooks)


def late_trips(early: Collection[str], earlier: Iterable[tuple[str, DayEnd, Callable[[], Iterable[tuple[str, ...]]]]],
               ) -> dict[str, str]:
    """Of the tags whose first tap of a day is a return (`early`, see `early_returns`), those a trip of a day before
    the day before left out and that no tap named since: by tag, the date of that trip, which the return closes days
    late. `earlier` are the days before, one per date from the day before back to the oldest held, each with its
    `DayEnd` and its taps' tag lists (read only when needed). A container sent out again in between is of that later
    trip, and a tag whose last day held left it back (or that no day held names) closes nothing: the trip may be
    older than the days held, which cannot tell."""
    out: dict[str, str] = {}
    left: set[str] | None = None
    for i, (date, end, taps) in enumerate(earlier):
        if left is None:
            # Those out at the day before's end close its trip (`early_returns`), and it named them: not looked for.
            left = set(early) - end.out
        if not left:
            break
        seen: set[str] = set()
        for tags in taps():
            if not left.isdisjoint(tags):
                seen.update(tags)
        found = left & seen
        if i > 0:
            out.update((tag, date) for tag in found & end.out)
        left -= found
    return out


@dataclass(slots=True, kw_only=True)
class _Cooks:
    """Cook taps with their corrected cook-end: by batch (any day), and by kitchen and day for untagged batches.

    A container whose taps name a batch is timed from that batch's cook tap only; one whose taps name none from the
    cook taps of its kitchen that name none. A batch's cook tap times its own containers, not every container of
    the kitchen: a kitchen that tags some batches and not others keeps the two apart."""

    by_batch: CookOf
    by_kitchen: dict[tuple[str, str], list[tuple[int, Timed]]] = field(default_factory=lambda: defaultdict(list))
    # By kitchen, its cook tap of the evening before (DayEnd.cooks): a kitchen that cooks before midnight times the
    # next morning's meals from it.
    evening: dict[str, tuple[int, Timed]] = field(default_factory=dict)


def cook_end(t: Timed) -> tuple[int, Timed]:
    s = t.scan
    return (t.correct(s.cooked_at) if s.cooked_at is not None else t.time), t


@dataclass(slots=True, kw_only=True)
class DayBase:
    """One day's scans reconciled into container trips and school taps: all that does not depend on `now`.

    A question about the day settles a base at a time (`settle`); the base itself changes only when the day
    gets records, or when the first cook tap of a batch it used changes.
    """

    plan: Plan
    date: str
    timed: list[Timed]
    trips: dict[tuple[str, str], _Trip]
    school_taps: _SchoolTaps
    keyed: list[tuple[int, tuple[str, ...], Finding]]
    batches: set[str]
    awaiting: set[str] = field(default_factory=set)  # containers out and not back that day: looked up next day


def day_base(plan: Plan, date: str, timed: Iterable[Timed], cook_of: CookOf,
             return_of: ReturnOf | None = None, staff: Collection[str] = (), before: DayEnd | None = None) -> DayBase:
    with without_cycle_collection():
        return _day_base(plan, date, timed, cook_of, return_of, staff, before or DayEnd())


def _day_base(plan: Plan, date: str, timed: Iterable[Timed], cook_of: CookOf, return_of: ReturnOf | None,
              staff: Collection[str], before: DayEnd) -> DayBase:
    """Reconcile one day's taps (each `Timed` of `date`, used by this base alone) up to the point where `now`
    matters. `cook_of` finds a batch's first cook tap on any day, as a cook may be tapped the evening before;
    `return_of` a container's return tap of the next day (`early_returns` of the next day's taps); `staff` the
    staff cards known (`staff` of any scan held), which are no containers whoever taps them; `before` what the day
    before left open (`day_end` of its taps)."""
    a = Analysis(plan=plan, now=0)
    ordered = sorted(timed, key=Timed.order)
    _off_roster(a, ordered)
    a.timed = _without_closing_returns(_without_staff_cards(a, ordered, staff),
                                       before.out | before.late if before.late else before.out)
    a.scans_by_date = {date: a.timed} if a.timed else {}
    batches: set[str] = set()

    def by_batch(batch: str) -> tuple[int, Timed] | None:
        batches.add(batch)
        return cook_of(batch)

    cooks = _Cooks(by_batch=by_batch, evening=before.cooks)
    for t in a.timed:
        if t.scan.event == "cooked" and t.scan.batch is None:
            cooks.by_kitchen[(t.scan.site, t.date)].append(cook_end(t))
    repeats: _Repeats = defaultdict(list)
    _build_trips(a, cooks, repeats)
    _not_sent(a, before.out)
    _other_kitchens(a)
    _elsewhere(a)
    school_taps = _school_taps(a)
    _repeated_count_taps(a, school_taps, repeats)
    _duplicate_findings(a, repeats)
    _fill_cook_and_serve(a, cooks, school_taps)
    awaiting: set[str] = set()
    for trip in a.trips.values():
        if any(t.scan.event in _OUT for t in trip.steps) and not any(t.scan.event == "returned" for t in trip.steps):
            awaiting.add(trip.tag)
            if return_of is not None:
                trip.returned = return_of(trip.tag)
    return DayBase(plan=plan, date=date, timed=a.timed, trips=a.trips, school_taps=school_taps, keyed=a.keyed,
                   batches=batches, awaiting=awaiting)


def _off_roster(a: Analysis, timed: list[Timed]) -> None:
    """Taps by a staff card that the roster of the kitchen whose delivery it is does not list, at the kitchen or
    at one of its schools: a card of another kitchen (lent, or a driver of another kitchen), or one that no roster
    lists. One finding per site, day and kitchen whose roster lists the cards; a kitchen without a roster judges
    no card. A roster entry valid for a while only judges each tap at its time: a tap by a card the kitchen took
    off its roster (or has not put on it yet) is a finding of its own, with `part` 'until' (or 'from') and `limit`
    the time its entry ended (or begins), so that it says so rather than that no roster lists the card."""
    plan = a.plan
    if not plan.has_rosters:
        return
    off: dict[tuple[str, str, str, str, int], list[Timed]] = defaultdict(list)
    # (site, card) -> its verdict, for cards whose entries are valid at any time: the same for every tap.
    judged: dict[tuple[str, str], tuple[str, str, int] | None] = {}
    for t in timed:
        card = t.scan.staff
        if card is None:
            continue
        site = t.scan.site
        if (site, card) in judged:
            verdict = judged[(site, card)]
        else:
            verdict = _roster_verdict(plan, site, card, t.time)
            if not plan.roster_windowed(card):
                judged[(site, card)] = verdict
        if verdict is not None:
            lender, part, when = verdict
            off[(site, t.date, lender, part, when)].append(t)
    for (site, date, lender, part, when), taps in sorted(off.items()):
        kitchen = plan.kitchen_of_site(site)
        assert kitchen is not None
        cards = len({t.scan.staff for t in taps})
        if part:
            # The plan's own words for the time: what its head wrote for the entry, in the kitchen's zone.
            detail = (f"{count(len(taps), 'tap')} {'after' if part == 'until' else 'before'} "
                      f"{format_local(when, kitchen.tz_offset_s)}, for the deliveries of {kitchen.id}, by "
                      f"{count(cards, 'staff card')} its roster lists only {part} then")
        else:
            whose = f"of {lender}'s staff" if lender else "that no kitchen's roster lists"
            detail = (f"{count(len(taps), 'tap')} by {count(cards, 'staff card')} {whose}, for the deliveries of "
                      f"{kitchen.id}, whose roster does not list {agree(cards, 'it', 'them')}")
        _emit(a, DUPLICATE, (site, date, "~roster", lender, *((part, str(when)) if part else ())), Finding(
            code="staff_not_on_roster", subject=site, date=date, detail=detail, measured=len(taps),
            limit=when if part else None, records=tuple(t.scan.record_id for t in taps[:50]),
            other_kitchen=lender or None, part=part or None))


def _roster_verdict(plan: Plan, site: str, card: str, at: int) -> tuple[str, str, int] | None:
    """How a tap by `card` at `site` at Unix time `at` stands with the roster of the kitchen whose delivery it is:
    None on it (or no roster); else (the kitchen whose roster lists the card, or '', the part 'until' or 'from'
    when the kitchen's own entry for the card ended or had not begun, or '', the time it did so, or 0)."""
    kitchen = plan.kitchen_of_site(site)
    if kitchen is None or kitchen.staff is None:
        return None
    entries = plan.roster_entries(kitchen.id, card)
    if entries:
        if any(entry.valid_at(at) for entry in entries):
            return None
        # Taken off this roster (or not on it yet, or not again yet) on purpose: said so, never "add it to the
        # roster". The latest of its entries that ended before the tap, else the first that begins after it.
        ended = [e.valid_until for e in entries if e.valid_until is not None and at >= e.valid_until]
        if ended:
            return ("", "until", max(ended))
        return ("", "from", min(e.valid_from for e in entries if e.valid_from is not None))
    # The kitchen whose staff the card is now, else one whose roster had it for a while: it is someone's staff.
    owners = plan.kitchens_listing(card, at) or plan.kitchens_listing(card)
    return (owners[0] if owners else "", "", 0)


def _without_staff_cards(a: Analysis, timed: list[Timed], staff: Collection[str]) -> list[Timed]:
    """The taps with the staff cards among their tags taken out: a reader that does not know a card (a staff
    member of another kitchen, a new one) takes it for a container, which would count a phantom ompreng's
    portions in or send it out never to come back. A tap of nothing but staff cards is dropped."""
    if not staff:
        return timed
    kept: list[Timed] = []
    read: dict[tuple[str, str], list[Timed]] = defaultdict(list)
    for t in timed:
        if t.tags and any(tag in staff for tag in t.tags):
            read[(t.school or t.scan.site, t.date)].append(t)
            rest = tuple(tag for tag in t.tags if tag not in staff)
            if not rest:
                continue
            t.tags = t.fresh = t.counted = rest
        kept.append(t)
    for (subject, date), taps in sorted(read.items()):
        _emit(a, DUPLICATE, (subject, date, "~staff"), Finding(
            code="staff_card_tag", subject=subject, date=date,
            detail=f"a staff card was read as a container on {count(len(taps), 'tap')}; not counted as one",
            measured=len(taps), records=tuple(t.scan.record_id for t in taps[:50])))
    return kept


def _without_closing_returns(timed: list[Timed], out: Collection[str]) -> list[Timed]:
    """The taps without the returns that closed a trip of the day before (`early_returns` of a container still out
    at that day's end): such a return is a step of that trip (`return_of`), not a tap of this day's trip, where it
    would read as back before it left and make its real return of the day a repeat. A tap of nothing else is
    dropped."""
    if not out:
        return timed
    closing = {tag: t for tag, t in early_returns(timed).items() if tag in out}
    if not closing:
        return timed
    kept: list[Timed] = []
    for t in timed:
        if t.scan.event == "returned" and t.tags:
            rest = tuple(tag for tag in t.tags if closing.get(tag) is not t)
            if not rest:
                continue
            if len(rest) < len(t.tags):
                t.tags = t.fresh = t.counted = rest
        kept.append(t)
    return kept


def _first_out(trip: _Trip) -> Timed | None:
    """The tap that sent the container out of a kitchen that day: its first departure, else its first packing."""
    return (next((t for t in trip.steps if t.scan.event == "departed"), None)
            or next((t for t in trip.steps if t.scan.event == "packed"), None))


def _sender(plan: Plan, trip: _Trip) -> str | None:
    """The kitchen that sent a trip's container out: the site of its tap out if a kitchen, else its school's."""
    out = _first_out(trip)
    if out is not None and plan.kitchen(out.scan.site) is not None:
        return out.scan.site
    school = plan.school(trip.school) if trip.school is not None else None
    return school.kitchen if school is not None else None


def _not_sent(a: Analysis, carried: Collection[str]) -> None:
    """Tags tapped in at a school that kitchens sent containers to that day, which no kitchen tapped that day and
    no trip of the day before left out (`carried`): a card that is no container (a student's card, a stray tag)
    read at the gate. It brings no portions and is no container of the delivery; one finding per school says so.
    A school whose kitchen's taps have not reached the hub yet (an edge offline) has no departure to compare with,
    and its taps count as they are until the kitchen's arrive."""
    plan = a.plan
    sent = {trip.school for trip in a.trips.values()
            if trip.school is not None and any(t.scan.event in _OUT for t in trip.steps)}
    if not sent:
        return
    found: dict[str, list[tuple[str, Timed]]] = defaultdict(list)
    for trip in a.trips.values():
        if trip.tag in carried or trip.early or not trip.steps:
            continue
        if any(plan.school(t.scan.site) is None for t in trip.steps):
            continue  # a kitchen tapped it that day: a container
        taps = [t for t in trip.steps if t.school in sent]
        if not taps or not any(t.scan.event in _IN for t in taps):
            continue
        for t in taps:
            t.counted = tuple(tag for tag in t.counted if tag != trip.tag)
            found[t.school or ""].append((trip.tag, t))
        trip.school = None
    for school, items in sorted(found.items()):
        tags = tuple(sorted({tag for tag, _ in items}))
        date = items[0][1].date
        _emit(a, ELSEWHERE, ("tag_not_sent", school, date), Finding(
            code="tag_not_sent", subject=school, date=date,
            detail=f"{count(len(tags), 'tag')} tapped in here that no kitchen sent; not counted as "
                   f"{agree(len(tags), 'a container', 'containers')}",
            measured=len(tags), containers=tags, records=tuple(sorted({t.scan.record_id for _, t in items}))[:50]))


def _other_kitchens(a: Analysis) -> None:
    """Containers that a kitchen other than the plan's for their school sent there (a school two kitchens feed, or
    one helping out): the school's delivery counts them, and a finding per school and sending kitchen says which
    kitchen sent what, as the delivery is listed under the plan's kitchen."""
    plan = a.plan
    found: dict[tuple[str, str], list[tuple[str, Timed]]] = defaultdict(list)
    for trip in a.trips.values():
        school = plan.school(trip.school) if trip.school is not None else None
        out = _first_out(trip)
        if school is None or out is None or out.scan.site == school.kitchen or plan.kitchen(out.scan.site) is None:
            continue
        found[(school.id, out.scan.site)].append((trip.tag, out))
    ppc = plan.portions_per_container
    for (school_id, kitchen), items in sorted(found.items()):
        tags = tuple(sorted({tag for tag, _ in items}))
        portions, _ = _portions(list({id(t): t for _, t in items}.values()), ppc)
        date = items[0][1].date
        _emit(a, ELSEWHERE, ("sent_by_other_kitchen", school_id, date, kitchen), Finding(
            code="sent_by_other_kitchen", subject=school_id, date=date,
            detail=f"{count(len(tags), 'container')} ({count(portions, 'portion')}) sent by {kitchen}, not by the "
                   f"school's kitchen {plan.school(school_id).kitchen}; counted in its delivery",  # type: ignore[union-attr]
            measured=len(tags), containers=tags, records=tuple(sorted({t.scan.record_id for _, t in items}))[:50],
            other_kitchen=kitchen))


def settle(base: DayBase, now: int, planned: Collection[str] | None = None) -> Analysis:
    """The day's deliveries, container and food-safety findings at `now`, with the span of times it holds for.
    `planned` limits the planned deliveries to those schools (default: every school of the plan)."""
    with without_cycle_collection():
        return _settle(base, now, planned)


def _settle(base: DayBase, now: int, planned: Collection[str] | None) -> Analysis:
    a = Analysis(plan=base.plan, now=now, trips=base.trips, timed=base.timed,
                 scans_by_date={base.date: base.timed} if base.timed else {})
    for group, key, f in base.keyed:
        _emit(a, group, key, f)
    edges: list[int] = []
    running = _deliveries(a, base.school_taps, {base.date}, edges, planned)
    running |= _order_and_returns(a, edges)
    running |= _food_safety(a, base.school_taps)
    if running:
        # A measure grows with the clock (an overdue truck, an open food timer): good for this instant only.
        a.valid_from, a.valid_until = now, now + 1
    else:
        a.valid_from = max((e for e in edges if e <= now), default=-(2**62))
        a.valid_until = min((e for e in edges if e > now), default=2**62)
    return a


class Flagged:
    """Clock findings of one device and flag, summed over days: count, worst record, first records in order."""

    __slots__ = ("count", "first", "worst")

    def __init__(self) -> None:
        self.count = 0
        self.worst: tuple[int, tuple[int, str, int], int, str] | None = None  # |skew|, order, skew, date
        self.first: list[tuple[tuple[int, str, int], str]] = []

    def add(self, t: Timed, amount: int | None = None) -> None:
        """Count `t`, whose size is its skew, or `amount` (how far its clock went back)."""
        self.count += 1
        order = t.order()
        skew = t.skew if amount is None else amount
        w = self.worst
        if w is None or abs(skew) > w[0] or (abs(skew) == w[0] and order < w[1]):
            self.worst = (abs(skew), order, skew, t.date)
        if len(self.first) < 50 or order < self.first[-1][0]:
            insort(self.first, (order, t.scan.record_id))
            del self.first[50:]


class UnknownSite:
    """Scans at one site the plan does not list: how many, and the first records in order."""

    __slots__ = ("count", "first")

    def __init__(self) -> None:
        self.count = 0
        self.first: list[tuple[tuple[int, str, int], str]] = []

    def add(self, t: Timed) -> None:
        self.count += 1
        order = t.order()
        if len(self.first) < 20 or order < self.first[-1][0]:
            insort(self.first, (order, t.scan.record_id))
            del self.first[20:]


# Each device's scan of the highest sequence number seen: (sequence number, device time).
LastClock = dict[str, tuple[int, int]]


def went_back(plan: Plan, last: LastClock, device: str, seq: int, device_time: int) -> int | None:
    """How far a device's clock went back from its previous scan along its own chain (record N+1 made well
    before record N: a clock reset, say a Pi without RTC rebooting hours behind), if by more than
    `max_skew_s`; `last` is updated. A scan older than the device's latest seen is not judged (a device's
    records reach the hub in chain order)."""
    prev = last.get(device)
    if prev is not None and seq <= prev[0]:
        return None
    last[device] = (seq, device_time)
    if prev is None:
        return None
    back = prev[1] - device_time
    return back if back > plan.clock.max_skew_s else None


def unknown_place(plan: Plan, site: str, school: str | None) -> str | None:
    """The site of a scan that the plan does not list, or the school a kitchen's tap names that it does not list
    (a kitchen cooking for a school added to the plan later that day): None if the plan knows both."""
    if plan.school(site) is None and plan.kitchen(site) is None:
        return site
    if school is not None and plan.school(school) is None:
        return school
    return None


def clock_findings(plan: Plan, flagged: dict[tuple[str, str], Flagged]) -> list[Finding]:
    out = []
    for (flag, device), fl in sorted(flagged.items()):
        assert fl.worst is not None
        _, _, skew, date = fl.worst
        if flag == "clock_skew":
            detail = (f"device clock disagrees with arrival by up to {skew} s on {count(fl.count, 'record')}; "
                      "arrival time used")
        elif flag == "clock_went_back":
            detail = (f"device clock went back by up to {skew} s from one record to the next, "
                      f"{count(fl.count, 'time')}; device time used")
        else:
            detail = (f"{count(fl.count, 'record')} arrived up to {-skew} s after "
                      f"{agree(fl.count, 'it was', 'they were')} made; device time used")
        # late_sync measures the delay (arrived N s after it was made); clock_skew the signed disagreement.
        measured = -skew if flag == "late_sync" else skew
        out.append(Finding(code=flag, subject=device, date=date, detail=detail, measured=measured,
                           limit=plan.clock.max_skew_s if flag in ("late_sync", "clock_went_back") else None,
                           records=tuple(r for _, r in fl.first)))
    return out


def device_clock_findings(plan: Plan, clocks: Iterable[tuple[str, int, int]]) -> list[Finding]:
    """One finding per device whose clock was off by more than `[clock] max_skew_s` when it last synced (`clocks`:
    device hex, offset in seconds, negative behind, and the hub time it was measured), on the day it was measured:
    a clock behind dates its taps too early, on the day before if it is a day behind, and nothing on that day's
    own findings says so. `part` says which way: 'behind' or 'ahead'."""
    out = []
    for device, offset, at in clocks:
        way = "behind" if offset < 0 else "ahead"
        out.append(Finding(code="device_clock", subject=device, date=local_date(at, plan.tz_offset_s),
                           detail=f"device clock {abs(offset)} s {way} the hub's at its last sync; its taps are "
                                  f"signed {abs(offset)} s too {'early' if offset < 0 else 'late'}, and timed by the "
                                  "clock set right",
                           measured=offset, limit=plan.clock.max_skew_s, part=way))
    return out


def unknown_site_findings(unknown: dict[tuple[str, str], UnknownSite]) -> list[Finding]:
    """One finding per site the plan does not list and day of its scans, so that the day's findings show it."""
    return [Finding(code="unknown_site", subject=site, date=date,
                    detail=f"{count(u.count, 'scan')} at or for a site the plan does not list",
                    measured=u.count, records=tuple(r for _, r in u.first))
            for (site, date), u in sorted(unknown.items())]


def merge(plan: Plan, now: int, days: Iterable[Analysis], head: Iterable[Finding] = ()) -> Analysis:
    """One Analysis of several days settled apart (in date order), as one reconciliation of them all gives.

    `head` are the findings that span days (clocks, unknown sites); they come first."""
    a = Analysis(plan=plan, now=now)
    a.findings.extend(head)
    timed: list[list[Timed]] = []
    keyed = []
    for d in days:
        a.deliveries.update(d.deliveries)
        a.trips.update(d.trips)
        a.scans_by_date.update(d.scans_by_date)
        timed.append(d.timed)
        keyed.extend(d.keyed)
        a.violations.extend(d.violations)
    keyed.sort(key=lambda k: (k[0], k[1]))
    a.keyed = keyed
    a.findings.extend(f for _, _, f in keyed)
    a.violations.sort(key=lambda v: (v.rule, v.school, v.date, v.part or ""))
    a.timed = list(heapq.merge(*timed, key=Timed.order))
    return a


def analyze(plan: Plan, scans: Iterable[ScanEvent], *, now: int, dates: Iterable[str] = ()) -> Analysis:
    """Reconcile every delivery seen in `scans` plus every planned delivery on `dates`."""
    timed = sorted((Timed(s, plan) for s in scans), key=Timed.order)
    flagged: dict[tuple[str, str], Flagged] = defaultdict(Flagged)
    unknown: dict[tuple[str, str], UnknownSite] = defaultdict(UnknownSite)
    first_cook: dict[str, tuple[int, Timed]] = {}
    staff = {t.scan.staff for t in timed if t.scan.staff is not None}
    by_date: dict[str, list[Timed]] = defaultdict(list)
    last: LastClock = {}
    for t in sorted(timed, key=lambda t: (t.scan.device, t.scan.seq)):
        back = went_back(plan, last, t.scan.device, t.scan.seq, t.scan.device_time)
        if back is not None:
            flagged[("clock_went_back", t.scan.device)].add(t, back)
    for t in timed:
        by_date[t.date].append(t)
        if t.flag is not None:
            flagged[(t.flag, t.scan.device)].add(t)
        place = unknown_place(plan, t.scan.site, t.scan.school)
        if place is not None:
            unknown[(place, t.date)].add(t)
        if t.scan.event == "cooked" and t.scan.batch is not None and t.scan.batch not in first_cook:
            first_cook[t.scan.batch] = cook_end(t)
    # What each day leaves open, worked out before any day's reconciliation takes a closing return out of its taps.
    wanted = set(by_date) | set(dates)
    end_of = {d: day_end(ts) for d, ts in by_date.items()}
    early = {d: early_returns(ts) for d, ts in by_date.items()}
    oldest = min(by_date, default="")
    ends: dict[str, DayEnd] = {}
    late_back: dict[str, dict[str, Timed]] = defaultdict(dict)  # by trip date, each tag's return days late
    for d in wanted:
        closing = late_trips(early.get(d, {}), _earlier(d, oldest, end_of, by_date)) if d in early else {}
        end = end_of.get(previous_date(d), DayEnd())
        ends[d] = DayEnd(out=end.out, cooks=end.cooks, late=frozenset(closing)) if closing else end
        for tag, trip_date in closing.items():
            late_back[trip_date][tag] = early[d][tag]
    days = [settle(day_base(plan, d, by_date.get(d, ()), first_cook.get,
                            _either(early.get(next_date(d), {}), late_back.get(d, {})), staff, ends[d]), now)
            for d in sorted(wanted)]
    return merge(plan, now, days, clock_findings(plan, flagged) + unknown_site_findings(unknown))


def _earlier(date: str, oldest: str, end_of: dict[str, DayEnd], by_date: dict[str, list[Timed]],
             ) -> Iterable[tuple[str, DayEnd, Callable[[], Iterable[tuple[str, ...]]]]]:
    """The days before `date` back to `oldest`, as `late_trips` reads them."""
    d = previous_date(date)
    while d >= oldest:
        yield d, end_of.get(d, DayEnd()), (lambda d=d: (t.tags for t in by_date.get(d, ()) if t.tags))  # type: ignore[misc]
        d = previous_date(d)


def _either(next_day: dict[str, Timed], later: dict[str, Timed]) -> ReturnOf:
    """A trip's return: of the next day (`early_returns`), else of a later day (`late_trips`)."""
    if not later:
        return next_day.get
    return lambda tag: next_day.get(tag) or later.get(tag)


def _build_trips(a: Analysis, cooks: _Cooks, repeats: _Repeats) -> None:
    """Every tag tap, grouped by container and day; a second tap of the same step at the same site goes to
    `repeats` and counts nothing."""
    trips = a.trips
    # The trips of each day by tag, and the tap that first made each step by (day, event, site, parent) and
    # tag: looked up once per tag of every tap, so without building a key for each.
    by_tag: dict[str, dict[str, _Trip]] = {}
    seen: dict[tuple[str, str, str, str | None], dict[str, Timed]] = {}
    leaves = _stray_taps(a)
    for t in a.timed:
        s = t.scan
        if not t.tags or s.event == "cooked":
            continue
        tags = t.tags
        if leaves and s.event in _IN and any(leaves.get((tag, s.site), t.time) > t.time for tag in tags):
            tags = _early(a, t, leaves, by_tag)
            if not tags:
                continue
        cooked = cooks.by_batch(s.batch) if s.batch is not None else None
        date = t.date
        binds = s.school is not None and a.plan.school(s.site) is None  # a kitchen tap naming the school
        parent = s.parent if s.event == "packed" else None
        day_trips = by_tag.get(date)
        if day_trips is None:
            day_trips = by_tag[date] = {}
        seen_here = seen.get((date, s.event, s.site, parent))
        if seen_here is None:
            seen_here = seen[(date, s.event, s.site, parent)] = {}
        school = t.school
        record_id = s.record_id
        # The lookups of a tap's tags run through map(): a delivery's tap names tens of containers.
        found = list(map(day_trips.get, tags))
        if None in found:
            for i, tag in enumerate(tags):
                if found[i] is None:
                    trip = day_trips.get(tag)  # made already if the tap names the tag twice
                    if trip is None:
                        trip = day_trips[tag] = trips[(tag, date)] = _Trip(tag, date)
                    found[i] = trip
        trips_here = cast(list[_Trip], found)
        if seen_here.keys().isdisjoint(tags) and len(set(tags)) == len(tags):
            # The common case: no tag made this step before, so every tag's trip takes the tap as a step.
            seen_here.update(zip(tags, repeat(t)))
            for trip in trips_here:
                if binds and not trip.bound:
                    trip.school, trip.bound = s.school, True
                elif school is not None and trip.school is None:
                    trip.school = school
                trip.steps.append(t)
                if trip.cooked is None:
                    trip.cooked = cooked
            continue
        fresh = []
        for tag, trip in zip(tags, trips_here, strict=True):
            if binds and not trip.bound:
                trip.school, trip.bound = s.school, True
            elif school is not None and trip.school is None:
                trip.school = school
            prev = seen_here.get(tag)
            if prev is not None and prev.scan.record_id != record_id:
                repeats[(school or trip.school or s.site, date, s.event)].append((tag, t))
                continue
            seen_here[tag] = t
            fresh.append(tag)
            if prev is None:
                trip.steps.append(t)
            if trip.cooked is None:
                trip.cooked = cooked
        if len(fresh) < len(t.tags):
            t.fresh = t.counted = tuple(fresh)
            t.repeat = not fresh


def _stray_taps(a: Analysis) -> dict[tuple[str, str], int]:
    """By container and school, the time before which a tap of it in there is a stray: it was tapped in there
    before it left its kitchen that day (its first departure, else its packing, by more than
    `order_tolerance_s`) and again after it left. The tap after is its arrival; the one before, a card read at the
    gate by mistake, would make meals that came late look on time. A container tapped in before it left and never
    after keeps that tap as its arrival: a kitchen that taps its containers out once the truck has gone, or a gate
    clock behind, puts the one tap of a real arrival there."""
    leaves: dict[str, int] = {}
    for event in ("departed", "packed"):
        for t in a.timed:
            if t.scan.event == event:
                for tag in t.tags:
                    leaves.setdefault(tag, t.time - a.plan.order_tolerance_s)
    if not leaves:
        return {}
    early: set[tuple[str, str]] = set()
    out: dict[tuple[str, str], int] = {}
    for t in a.timed:
        if t.scan.event not in _IN:
            continue
        for tag in t.tags:
            left = leaves.get(tag)
            if left is None:
                continue
            if t.time < left:
                early.add((tag, t.scan.site))
            elif (tag, t.scan.site) in early:
                out[(tag, t.scan.site)] = left
    return out


def _early(a: Analysis, t: Timed, leaves: dict[tuple[str, str], int],
           by_tag: dict[str, dict[str, _Trip]]) -> tuple[str, ...]:
    """Park a stray tap in at a school (`_stray_taps`) in its containers' trips' `early`, where it counts nothing;
    the tap's other tags."""
    early = {tag for tag in t.tags if leaves.get((tag, t.scan.site), t.time) > t.time}
    day_trips = by_tag.setdefault(t.date, {})
    for tag in early:
        trip = day_trips.get(tag)
        if trip is None:
            trip = day_trips[tag] = a.trips[(tag, t.date)] = _Trip(tag, t.date)
        if t not in trip.early:
            trip.early.append(t)
    rest = tuple(tag for tag in t.tags if tag not in early)
    t.fresh = t.counted = rest
    return rest


def _elsewhere(a: Analysis) -> None:
    """Containers tapped in at a school that is not theirs: not that school's delivery, and a finding.

    A container bound for a school by the kitchen's tap and tapped in elsewhere is misrouted; one that no
    kitchen tap bound, tapped in at two schools, counts at the first and is reported at both.
    """
    found: dict[tuple[str, str, str, str], list[tuple[str, Timed]]] = defaultdict(list)
    for trip in a.trips.values():
        if trip.school is None:
            continue
        for t in trip.steps:
            if t.scan.event not in _IN or t.school is None or t.school == trip.school:
                continue
            code = "misrouted" if trip.bound else "container_at_two_schools"
            found[(code, t.school, trip.date, trip.school)].append((trip.tag, t))
            t.counted = tuple(tag for tag in t.counted if tag != trip.tag)
    for (code, school, date, other), items in sorted(found.items()):
        tags = tuple(sorted({tag for tag, _ in items}))
        name = a.plan.school(other)
        other_text = f"{other} ({name.name})" if name is not None and name.name else other
        were = agree(len(tags), "was", "were")
        detail = (f"{count(len(tags), 'container')} bound for {other_text} {were} tapped in here"
                  if code == "misrouted" else
                  f"{count(len(tags), 'container')} already tapped in at {other_text} {were} tapped in here too")
        _emit(a, ELSEWHERE, (code, school, date, other),
              Finding(code=code, subject=school, date=date, detail=detail, measured=len(tags), containers=tags,
                      records=tuple(sorted({t.scan.record_id for _, t in items})), other_school=other))


def _school_taps(a: Analysis) -> _SchoolTaps:
    out: _SchoolTaps = defaultdict(lambda: defaultdict(list))
    for t in a.timed:
        if t.school is not None:
            out[(t.school, t.date)][t.scan.event].append(t)
    return out


def _repeated_count_taps(a: Analysis, school_taps: _SchoolTaps, repeats: _Repeats) -> None:
    """Untagged taps read twice: same event, site and count within the duplicate window."""
    for (school, date), events in school_taps.items():
        for event, taps in events.items():
            last: dict[tuple[str, int | None], Timed] = {}
            for t in taps:
                if t.tags:
                    continue
                k = (t.scan.site, t.scan.count)
                p = last.get(k)
                if p is not None and t.time - p.time <= a.plan.duplicate_window_s:
                    t.repeat = True
                    repeats[(school, date, event)].append(("", t))
                else:
                    last[k] = t


def _duplicate_findings(a: Analysis, repeats: _Repeats) -> None:
    """One duplicate_scan finding per school, day and event; the repeated taps count nothing. `measured` is how
    many reads were extra: a container read three times is one container and two extra reads."""
    for (subject, date, event), items in sorted(repeats.items()):
        tags = tuple(sorted({tag for tag, _ in items if tag}))
        recs = tuple(sorted({t.scan.record_id for _, t in items}))
        extra = sum(1 for tag, _ in items if tag) if tags else len(items)
        if tags:
            what = count(len(tags), "container")
            again = ("tapped again" if extra == len(tags) else f"read {extra + 1} times" if len(tags) == 1
                     else f"tapped again ({extra} extra reads)")
        else:
            what, again = count(extra, "count tap"), "tapped again"
        _emit(a, DUPLICATE, (subject, date, event),
              Finding(code="duplicate_scan", subject=subject, date=date,
                      detail=f"'{event}' {again} for {what}; counted once", measured=extra, containers=tags,
                      records=recs))


def _fill_cook_and_serve(a: Analysis, cooks: _Cooks, school_taps: _SchoolTaps) -> None:
    """Cook-end from the kitchen's cook taps and serving from the school's serving tap, where the tag has none."""
    plan = a.plan
    # The containers of a delivery travel together: trips with the same taps, school and day get the same
    # cook and serving tap, worked out once.
    found: dict[tuple[Any, ...], tuple[tuple[int, Timed] | None, Timed | None]] = {}
    for trip in a.trips.values():
        if trip.school is None:
            continue
        shape = (tuple(trip.steps), trip.school, trip.date)
        both = found.get(shape)
        if both is None:
            both = found[shape] = (_kitchen_cook(plan, cooks, trip), _school_serving(plan, school_taps, trip))
        if trip.cooked is None:
            trip.cooked = both[0]
        if both[1] is not None:
            trip.served = both[1]


def _kitchen_cook(plan: Plan, cooks: _Cooks, trip: _Trip) -> tuple[int, Timed] | None:
    """The last untagged cook tap of the kitchen that sent the container before it went out (that day, or the
    evening before after that kitchen's last trip), for a container whose taps name no batch (one that names a batch is timed from that batch's cook tap, or not at all)."""
    school = plan.school(trip.school)  # type: ignore[arg-type]
    if school is None or any(t.scan.batch is not None for t in trip.steps):
        return None
    kitchen = _sender(plan, trip) or school.kitchen
    out = [t.time for t in trip.steps if t.scan.event in ("packed", "departed")]
    cutoff = min(out) if out else None
    candidates = [c for c in cooks.by_kitchen.get((kitchen, trip.date), ())
                  if cutoff is None or c[0] <= cutoff]
    evening = cooks.evening.get(kitchen)
    if evening is not None and (cutoff is None or evening[0] <= cutoff):
        candidates.append(evening)  # cooked before midnight: the day before's last cook tap, after its trips
    return max(candidates, key=lambda c: c[0]) if candidates else None


def _school_serving(plan: Plan, school_taps: _SchoolTaps, trip: _Trip) -> Timed | None:
    """The school's serving tap after the container came in, where the container's own tag was not served."""
    if any(t.scan.event == "served" for t in trip.steps):
        return None
    arrived = [t.time for t in trip.steps if t.scan.event in ("arrived", "received")]
    if arrived:
        first = min(arrived) - plan.order_tolerance_s
        for t in school_taps.get((trip.school, trip.date), {}).get("served", ()):  # type: ignore[arg-type]
            if not t.tags and t.time >= first:
                return t
    return None


def _counting(taps: list[Timed]) -> list[Timed]:
    """The taps that count at their school: not repeats, and not only containers that belong elsewhere."""
    return [t for t in taps if not t.repeat and (t.counted or not t.tags)]


def _portions(taps: list[Timed], ppc: int) -> tuple[int, set[str]]:
    """Portions and containers that counting taps bring: their counts if any carries one, else containers x ppc."""
    tags: set[str] = set()
    counted = 0
    any_count = False
    for t in taps:
        tags.update(t.counted)
        portions = t.portions(t.counted)
        if portions is not None:
            counted += portions
            any_count = True
    return (counted if any_count else len(tags) * ppc), tags


def _deliveries(a: Analysis, school_taps: _SchoolTaps, dates: set[str], edges: list[int],
                planned: Collection[str] | None = None) -> bool:
    """Every delivery of `dates` (of the `planned` schools' plans, default all); True if a figure of them grows
    with `now`. `edges` get the times at which a status may change."""
    plan = a.plan
    running = False
    keys = {k for k in school_taps if plan.school(k[0]) is not None}
    for date in dates:
        if plan.is_service_day(date):
            # A group names its own schools: going through the whole plan for each would cost kitchens squared.
            schools = plan.schools if planned is None else filter(None, map(plan.school, planned))
            keys.update((s.id, date) for s in schools if plan.is_service_day(date, s))
    for school_id, date in sorted(keys):
        school = plan.school(school_id)
        assert school is not None
        taps = school_taps.get((school_id, date), {})
        d = _delivery(a, school, date, taps, edges)
        a.deliveries[(school_id, date)] = d
        off = school.tz_offset_s
        key = (school_id, date)
        if "late" in d.statuses:
            _emit(a, DELIVERY, key, _late_finding(d, taps, off))
        if "short" in d.statuses:
            _emit(a, DELIVERY, key, Finding(code="short_delivery", subject=school_id, date=date,
                                      detail=f"received {d.received_portions} of {count(d.expected, 'portion')}",
                                      measured=d.received_portions, limit=d.expected,
                                      records=tuple(t.scan.record_id for t in taps.get("received", ())[:5])))
        back = _returned_without_arrival(a, school_id, date, taps) if d.containers_out > d.containers_in else None
        if back is not None:
            _emit(a, DELIVERY, key, back)
        if "overdue" in d.statuses:
            running = True
            _emit(a, DELIVERY, key, Finding(code="overdue_delivery", subject=school_id, date=date,
                                      detail=f"left the kitchen {clock_text(d.departed_at or 0, off)}, not arrived by "
                                             f"{clock_text(d.deadline_at, off)}", measured=a.now - d.deadline_at, limit=0,
                                      records=tuple(t.scan.record_id for t in taps.get("departed", ())[:5])))
        if "missing" in d.statuses:
            detail = f"no arrival recorded by {clock_text(d.deadline_at, off)}"
            if back is not None:
                # The count stays what the taps prove, but its containers came back: the meals most likely reached
                # the school and its gate did not tap them. The finding names those containers.
                detail = (f"no tap at the school by {clock_text(d.deadline_at, off)}; {back.measured} of its "
                          f"{count(d.containers_out, 'container')} came back to the kitchen, so it was most likely "
                          "delivered but not tapped: check with the school")
            _emit(a, DELIVERY, key, Finding(code="missing_delivery", subject=school_id, date=date, detail=detail,
                                      measured=0, limit=d.expected, containers=back.containers if back else ()))
        if "unplanned" in d.statuses and (d.containers_out or d.departed_portions or d.received_portions
                                          or d.containers_in):
            # Meals went to a school that expected none that day: food nobody planned to eat there.
            why = ("the school is closed that day" if date in plan.closed_dates or date in school.closed_dates
                   else "not a service day")
            _emit(a, DELIVERY, key, Finding(
                code="over_receipt", subject=school_id, date=date,
                detail=f"no delivery planned ({why}): {count(d.departed_portions, 'portion')} sent, "
                       f"{d.received_portions} received ({count(d.containers_out, 'container')} out, "
                       f"{d.containers_in} in)",
                measured=d.received_portions, limit=0,
                records=tuple(t.scan.record_id for t in _counting(taps.get("departed", []) + taps.get("received", [])
                                                                  + taps.get("arrived", []))[:5])))
        elif d.expected and d.received_portions > d.expected:
            _emit(a, DELIVERY, key, Finding(code="over_receipt", subject=school_id, date=date,
                                      detail=f"received {d.received_portions} of {count(d.expected, 'portion')} "
                                             f"({count(d.containers_in, 'container')} in, {d.containers_out} out)",
                                      measured=d.received_portions, limit=d.expected,
                                      records=tuple(t.scan.record_id for t in _counting(taps.get("received", []))[-5:])))
    return running


def _containers_in(taps: list[Timed]) -> dict[str, tuple[int, str]]:
    """When each container counted at a school first came in (a delivery split across vehicles comes in parts),
    and the record that says so."""
    out: dict[str, tuple[int, str]] = {}
    for t in taps:
        for tag in t.counted:
            if tag not in out or t.time < out[tag][0]:
                out[tag] = (t.time, t.scan.record_id)
    return out


def _late_finding(d: Delivery, taps: dict[str, list[Timed]], off: int) -> Finding:
    """A late delivery: when it came, or, where an earlier vehicle came on time, which containers came late."""
    first_in = d.arrived_at if d.arrived_at is not None else d.received_at
    if first_in is not None and first_in <= d.deadline_at:
        firsts = _containers_in(_counting(taps.get("arrived", []) + taps.get("received", [])))
        late = sorted((tag, rec) for tag, (time, rec) in firsts.items() if time > d.deadline_at)
        return Finding(code="late_delivery", subject=d.school, date=d.date,
                       detail=f"{count(len(late), 'container')} of {d.containers_in} arrived by "
                              f"{clock_text(d.deadline_at + d.late_s, off)}, due {clock_text(d.deadline_at, off)}; the first "
                              f"arrived {clock_text(first_in, off)}", measured=d.late_s, limit=0,
                       containers=tuple(tag for tag, _ in late), records=tuple(sorted({r for _, r in late}))[:5])
    # A gate that taps only `received` has no arrival tap: its first tap in is when the meals came.
    came = "arrived" if d.arrived_at is not None else "received"
    return Finding(code="late_delivery", subject=d.school, date=d.date,
                   detail=f"arrived {clock_text(d.deadline_at + d.late_s, off)}, due {clock_text(d.deadline_at, off)}",
                   measured=d.late_s, limit=0, records=tuple(t.scan.record_id for t in taps.get(came, ())[:5]))


def _returned_without_arrival(a: Analysis, school: str, date: str, taps: dict[str, list[Timed]]) -> Finding | None:
    """Containers that left the kitchen for the school, were tapped in at no school and came back to the kitchen:
    a tag the gate could not read, most likely. The delivery's count stays what the taps prove; the finding says
    how many of the containers not tapped in came back."""
    _, out_tags = _portions(_counting(taps.get("departed", [])), 1)
    _, in_tags = _portions(_counting(taps.get("arrived", []) + taps.get("received", [])), 1)
    untapped = out_tags - in_tags
    back: list[str] = []
    records: set[str] = set()
    for tag in sorted(untapped):
        trip = a.trips.get((tag, date))
        if trip is None or any(t.scan.event in _IN for t in trip.steps):
            continue  # tapped in at another school: a misroute, reported as one
        returns = [t.scan.record_id for t in (*trip.steps, *filter(None, (trip.returned,)))
                   if t.scan.event == "returned"]
        if returns:
            back.append(tag)
            records.update(returns)
    if not back:
        return None
    return Finding(code="returned_without_arrival", subject=school, date=date,
                   detail=f"{len(back)} of the {count(len(untapped), 'container')} not tapped in here came back to "
                          "the kitchen: most likely delivered but not tapped at the school",
                   measured=len(back), limit=len(untapped), containers=tuple(back), records=tuple(sorted(records)))


def _day_over(plan: Plan, school: School, date: str) -> int:
    """When the school's day is over: the day's containers are due back at its kitchen."""
    kitchen = plan.kitchen(school.kitchen)
    return local_midnight(date, school.tz_offset_s) + (kitchen.return_by_s if kitchen else 15 * 3600)


def _delivery(a: Analysis, school: School, date: str, taps: dict[str, list[Timed]], edges: list[int]) -> Delivery:
    plan = a.plan
    ppc = plan.portions_per_container
    expected = school.portions if plan.is_service_day(date, school) else 0
    departed = _counting(taps.get("departed", []))
    arrived = _counting(taps.get("arrived", []))
    received = _counting(taps.get("received", []))
    served = _counting(taps.get("served", []))
    out_portions, out_tags = _portions(departed, ppc)
    _, in_tags = _portions(arrived + received, ppc)
    if any(t.scan.count is not None for t in received):
        received_portions, _ = _portions(received, ppc)
    else:
        received_portions = len(in_tags) * ppc
    deadline = school.deadline_at(date)
    departed_at = min((t.time for t in departed), default=None)
    arrived_at = min((t.time for t in arrived), default=None)
    received_at = min((t.time for t in received), default=None)
    served_at = min((t.time for t in served), default=None)
    first_in = arrived_at if arrived_at is not None else received_at
    last_in = max((t.time for t in arrived + received), default=None)
    statuses: list[str] = []
    late_s = 0
    last_container_in = max((time for time, _ in _containers_in(arrived + received).values()), default=None)
    if expected == 0:
        # No delivery is planned that day (the school is closed, or it is no service day): the row is here because
        # something was tapped for the school, and there is no deadline to be late for nor portions to be short of.
        # The over_receipt finding says what was sent and received.
        statuses.append("unplanned")
    elif first_in is None:
        day_over = _day_over(plan, school, date)
        edges += (deadline + 1, day_over + 1)
        if expected > 0 and a.now > deadline and departed and a.now <= day_over:
            # The truck left and is past its due time: late and still on the road, not yet missing; it is
            # missing once the day's containers are due back at the kitchen.
            statuses.append("overdue")
        elif expected > 0 and a.now > deadline:
            statuses.append("missing")
        elif departed:
            statuses.append("in_transit")
        elif expected > 0:
            statuses.append("pending")
    else:
        if first_in > deadline:
            statuses.append("late")
            late_s = first_in - deadline
        elif last_container_in is not None and last_container_in > deadline:
            # The first vehicle came on time, a later one did not: the meals it brought were late, by as long as
            # the last of them (the late_delivery finding names its containers).
            statuses.append("late")
            late_s = last_container_in - deadline
        if received_portions < expected:
            # Containers are still being tapped in: not short until the gate has been quiet for a while.
            settled = served_at is not None or last_in is None or a.now - last_in >= plan.settle_s
            if last_in is not None:
                edges.append(last_in + plan.settle_s)
            statuses.append("short" if settled else "receiving")
        if not statuses:
            statuses.append("on_time")
    shortfall = (max(expected - received_portions, 0)
                 if first_in is not None or "missing" in statuses or "overdue" in statuses else 0)
    bases = {t.basis for ts in taps.values() for t in ts}
    basis = "mixed" if len(bases) > 1 else (bases.pop() if bases else "device")
    return Delivery(school=school.id, school_name=school.name, kitchen=school.kitchen, date=date, expected=expected,
                    departed_portions=out_portions, received_portions=received_portions,
                    containers_out=len(out_tags), containers_in=len(in_tags), deadline_at=deadline,
                    departed_at=departed_at, arrived_at=arrived_at, received_at=received_at, served_at=served_at,
                    statuses=tuple(statuses), late_s=late_s, shortfall=shortfall, time_basis=basis)


@dataclass(frozen=True, slots=True, kw_only=True)
class _TripOrder:
    """What a trip's taps say about its order and its return, whatever its tag."""

    subject: str
    disorder: tuple[tuple[str, tuple[str, str]], ...]  # (what came before what, the two records)
    lost: str | None  # the container finding's code, if any
    due: int | None  # when the container is due back at the kitchen, if it went out and is not back
    elsewhere: Timed | None = None  # its return at a kitchen other than its school's
    late: Timed | None = None  # its return of a day after the next (`late_trips`)


def returned_late(subject: str, date: str, on: str, back: list[tuple[str, Timed]]) -> Finding:
    """The container_returned_late finding of `subject`'s trips of `date` that returns of `on` closed (tag, return)."""
    tags = tuple(sorted({tag for tag, _ in back}))
    days = _day_number(on) - _day_number(date)
    return Finding(code="container_returned_late", subject=subject, date=date,
                   detail=f"{count(len(tags), 'container')} returned {count(days, 'day')} late, on {on}",
                   measured=days, limit=min(t.time for _, t in back), containers=tags,
                   records=tuple(sorted({t.scan.record_id for _, t in back}))[:50])


def _day_number(iso: str) -> int:
    """A local date as a count of days, to tell how many days apart two dates are."""
    return local_midnight(iso, 0) // 86_400


def _trip_order(a: Analysis, trip: _Trip, tol: int) -> _TripOrder:
    plan = a.plan
    first: dict[str, Timed] = {}
    for t in sorted((*trip.steps, *trip.early), key=Timed.order) if trip.early else trip.steps:
        first.setdefault(t.scan.event, t)
    staged = sorted((STAGE_INDEX[e], t) for e, t in first.items() if e in STAGE_INDEX)
    subject = trip.school or (trip.steps[0].scan.site if trip.steps else trip.tag)
    disorder = tuple((f"{later.scan.event} before {earlier.scan.event}", (earlier.scan.record_id, later.scan.record_id))
                     for (_, earlier), (_, later) in pairwise(staged) if later.time < earlier.time - tol)
    went_out = "departed" in first or "packed" in first
    due = None
    code = None
    if "lost" in first:
        code = "container_lost"
    elif "damaged" in first:
        code = "container_damaged"
    elif went_out and "returned" not in first and trip.returned is None:
        school = plan.school(trip.school) if trip.school else None
        kitchen = plan.kitchen(school.kitchen) if school else None
        offset = kitchen.tz_offset_s if kitchen else plan.tz_offset_s
        due = local_midnight(trip.date, offset) + (kitchen.return_by_s if kitchen else 15 * 3600)
        if a.now > due:
            code = "container_unreturned"
    back = first.get("returned") or trip.returned
    # Back at a kitchen, but not at the one that sent it (the site of its tap out, else its school's kitchen).
    sender = _sender(plan, trip) if back is not None else None
    elsewhere = (back if back is not None and sender is not None and back.scan.site != sender
                 and plan.kitchen(back.scan.site) is not None else None)
    late = (trip.returned if trip.returned is not None and "returned" not in first
            and trip.returned.date > next_date(trip.date) else None)
    return _TripOrder(subject=subject, disorder=disorder, lost=code, due=due, elsewhere=elsewhere, late=late)


def _order_and_returns(a: Analysis, edges: list[int]) -> bool:
    plan = a.plan
    tol = plan.order_tolerance_s
    disorder: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
    disorder_recs: dict[tuple[str, str], set[str]] = defaultdict(set)
    lost: dict[tuple[str, str, str], list[_Trip]] = defaultdict(list)
    elsewhere: dict[tuple[str, str, str], list[tuple[str, Timed]]] = defaultdict(list)
    late: dict[tuple[str, str, str], list[tuple[str, Timed]]] = defaultdict(list)
    # Trips with the same taps, school and day are in or out of order and back or not alike: worked out once.
    found: dict[tuple[Any, ...], _TripOrder] = {}
    for trip in a.trips.values():
        shape = (tuple(trip.steps), tuple(trip.early), trip.school, trip.date, trip.returned)
        order = found.get(shape) if trip.steps else None
        if order is None:
            order = _trip_order(a, trip, tol)
            if trip.steps:
                found[shape] = order
        subject = order.subject
        for kind, records in order.disorder:
            disorder[(subject, trip.date)].append((trip.tag, kind))
            disorder_recs[(subject, trip.date)].update(records)
        if order.due is not None:
            edges.append(order.due + 1)
        if order.lost is not None:
            lost[(order.lost, subject, trip.date)].append(trip)
        if order.elsewhere is not None:
            elsewhere[(subject, trip.date, order.elsewhere.scan.site)].append((trip.tag, order.elsewhere))
        if order.late is not None:
            late[(subject, trip.date, order.late.date)].append((trip.tag, order.late))
    for (subject, date), items in sorted(disorder.items()):
        kinds = sorted({k for _, k in items})
        _emit(a, ORDER, (subject, date), Finding(code="out_of_order", subject=subject, date=date,
                                  detail=f"{count(len(items), 'container step')} out of order: {', '.join(kinds)}",
                                  containers=tuple(sorted({t for t, _ in items})),
                                  records=tuple(sorted(disorder_recs[(subject, date)]))))
    for (subject, date, kitchen), back in sorted(elsewhere.items()):
        # Back, but at another kitchen than the one that sent it: that kitchen holds it, and its own is short of it.
        tags = tuple(sorted({tag for tag, _ in back}))
        _emit(a, LOST, ("returned_to_other_kitchen", subject, date, kitchen),
              Finding(code="returned_to_other_kitchen", subject=subject, date=date,
                      detail=f"{count(len(tags), 'container')} returned to {kitchen}, not to the kitchen that sent "
                             f"{agree(len(tags), 'it', 'them')}", measured=len(tags), containers=tags,
                      records=tuple(sorted({t.scan.record_id for _, t in back}))[:50], other_kitchen=kitchen))
    for (subject, date, on), back in sorted(late.items()):
        # Back days after its day (a return closes the container's last trip still open, `late_trips`): the day says
        # so instead of not returned. `measured` the days late, `limit` the first return's time.
        _emit(a, LOST, ("container_returned_late", subject, date, on), returned_late(subject, date, on, back))
    for (code, subject, date), ts in sorted(lost.items()):
        verb = {"container_lost": "reported lost", "container_damaged": "reported damaged",
                "container_unreturned": "not returned to the kitchen"}[code]
        _emit(a, LOST, (code, subject, date),
              Finding(code=code, subject=subject, date=date, detail=f"{count(len(ts), 'container')} {verb}",
                      measured=len(ts), containers=tuple(sorted(t.tag for t in ts)),
                      records=tuple(sorted({s.scan.record_id for t in ts for s in t.steps}))[:50]))
    return False


# A food-safety rule a trip breaks: rule, measured, when, whether its meals were not served (safety_part), the
# records behind it, whether measured to the first tap in at school (no serving tapped), and whether it is still open
# (its figure grows with the time of the question: not served, and the day not over yet).
_Hit = tuple[str, int, int, bool, tuple[str, ...], bool, bool]


def _trip_safety(a: Analysis, school_taps: _SchoolTaps, trip: _Trip) -> tuple[bool, tuple[_Hit, ...], bool]:
    """A trip's food-safety timers and readings: whether a timer still runs, the rules it breaks, and whether its
    meals have a temperature reading at all."""
    plan = a.plan
    rules = plan.rules
    assert trip.school is not None
    hits: list[_Hit] = []
    own_served = next((t for t in trip.steps if t.scan.event == "served"), None)
    served = own_served or trip.served
    served_at = served.time if served is not None else None
    finished = trip.returned is not None or any(t.scan.event in ("returned", "lost", "damaged") for t in trip.steps)
    if served is None and not finished and school_taps.get((trip.school, trip.date), {}).get("served"):
        # The school has served, and a container that never reached it was not part of that meal: its food
        # was eaten by nobody, so its timer stops (its loss is a container finding, not a food-safety one).
        finished = not any(t.scan.event in _IN and t.school == trip.school for t in trip.steps)
    # An unserved meal's timers run until the day is over (its containers are due back at the kitchen): what
    # was not served by then was not served that day, and the figures stop growing, so the day's answer is final.
    school = plan.school(trip.school)
    now = a.now if school is None else min(a.now, _day_over(plan, school, trip.date))
    # The meals are not served yet: a reading that breaks a rule is something to act on now, not one that happened.
    unserved = served is None and not finished
    running = unserved and now == a.now
    start: int | None = None
    if trip.cooked is not None:
        cooked_at, cook_tap = trip.cooked
        start = cooked_at - plan.order_tolerance_s
        # Timer: cook-end to serving; an unserved meal still on its way keeps the timer open.
        if served_at is not None:
            elapsed = served_at - cooked_at
            if elapsed > rules.cook_to_serve_max_s:
                hits.append(("cook_to_serve", elapsed, cooked_at + rules.cook_to_serve_max_s, False,
                             (cook_tap.scan.record_id, served.scan.record_id), False, False))  # type: ignore[union-attr]
        elif not finished and now - cooked_at > rules.cook_to_serve_max_s:
            # Not served: open while the day runs, frozen at its end (then `now` was capped and nothing grows).
            hits.append(("cook_to_serve", now - cooked_at, cooked_at + rules.cook_to_serve_max_s, True,
                         (cook_tap.scan.record_id,), False, running))
        elif finished:
            # Back at the kitchen (or lost) with no serving tapped, as at schools that tap nothing when they
            # serve: the meals were served no earlier than their first tap in at the school.
            came = min((t for t in trip.steps if t.scan.event in _IN and t.school == trip.school),
                       key=Timed.order, default=None)
            if came is not None and came.time - cooked_at > rules.cook_to_serve_max_s:
                hits.append(("cook_to_serve", came.time - cooked_at, cooked_at + rules.cook_to_serve_max_s, False,
                             (cook_tap.scan.record_id, came.scan.record_id), True, False))
    readings = _readings(plan, school_taps, trip)
    measured = bool(readings)
    end = served_at
    if end is None:
        end = now if not finished else max((r[0] for r in readings), default=start or 0)
    readings = sorted(r for r in readings if (start is None or start <= r[0]) and r[0] <= end)
    if not readings:
        # Without a cook-end and a reading no timer runs: nothing here grows with the time of the question.
        return running and trip.cooked is not None, tuple(hits), measured
    coldest = min(readings, key=lambda r: r[1])
    if coldest[1] < rules.hot_hold_min_cc:
        hits.append(("hot_holding", coldest[1], coldest[0], unserved, (coldest[2],), False, running))
    # Hold each reading until the next one (or serving): the probe says nothing in between.
    in_zone = 0
    crossed_at = None
    zone_recs: list[str] = []
    for i, (when, temp, rid) in enumerate(readings):
        until = readings[i + 1][0] if i + 1 < len(readings) else end
        if rules.danger_low_cc <= temp < rules.danger_high_cc and until > when:
            if crossed_at is None and in_zone + (until - when) > rules.danger_max_s:
                crossed_at = when + (rules.danger_max_s - in_zone)
            in_zone += until - when
            zone_recs.append(rid)
    if in_zone > rules.danger_max_s:
        hits.append(("danger_zone", in_zone, crossed_at or end, unserved, tuple(zone_recs), False, running))
    return running, tuple(hits), measured


def _readings(plan: Plan, school_taps: _SchoolTaps, trip: _Trip) -> list[tuple[int, int, str]]:
    """Every temperature reading of a trip's meals, as (time, centi-degrees, record): its batch's cook tap, the
    container's own probe readings, and the school's count taps from its arrival on. A kitchen that taps no
    cook-end still has its meals' temperatures checked: only the cook-to-serve timer needs it."""
    readings: list[tuple[int, int, str]] = []
    if trip.cooked is not None:
        cooked_at, cook_tap = trip.cooked
        if cook_tap.scan.temp_cc is not None:
            readings.append((cooked_at, cook_tap.scan.temp_cc, cook_tap.scan.record_id))
    for t in trip.steps:
        if t.scan.temp_cc is not None and t.scan.event in STAGE_INDEX and t.scan.event != "returned":
            readings.append((t.time, t.scan.temp_cc, t.scan.record_id))
    arrived = [t.time for t in trip.steps if t.scan.event in _IN]
    if arrived:
        first_in = min(arrived) - plan.order_tolerance_s
        for event in ("received", "served"):
            for t in school_taps.get((trip.school or "", trip.date), {}).get(event, ()):
                if not t.tags and t.scan.temp_cc is not None and t.time >= first_in:
                    readings.append((t.time, t.scan.temp_cc, t.scan.record_id))
    return readings


def _food_safety(a: Analysis, school_taps: dict[tuple[str, str], dict[str, list[Timed]]]) -> bool:
    """The food-safety rules over every trip; True if a timer is still running (its figures grow with `now`)."""
    plan = a.plan
    running = False
    rules = plan.rules
    # (rule, school, date, part) -> [(measured, at, open, tag, records, to_arrival)]; a delivery's meals served
    # (late), not served and timed to their arrival are apart (safety_part), each with its own count.
    hits: dict[tuple[str, str, str, str], list[tuple[int, int, bool, str, tuple[str, ...], bool]]] = defaultdict(list)
    # The containers of a delivery share their taps, cook and serving tap: their timers and readings are
    # worked out once.
    found: dict[tuple[Any, ...], tuple[tuple[bool, tuple[_Hit, ...], bool], bool]] = {}
    # (school, date) -> the containers that left for it whose kitchen takes temperatures, and those of them with
    # no reading at all.
    judged: dict[tuple[str, str], list[_Trip]] = defaultdict(list)
    unmeasured: dict[tuple[str, str], list[_Trip]] = defaultdict(list)
    for trip in a.trips.values():
        if trip.school is None:
            continue
        shape = (tuple(trip.steps), trip.school, trip.date, trip.cooked, trip.served, trip.returned)
        known = found.get(shape)
        if known is None:
            known = found[shape] = (_trip_safety(a, school_taps, trip), _left_for_school(trip))
        safety, left = known
        running |= safety[0]
        for rule, measured, at, unserved, records, to_arrival, still_open in safety[1]:
            part = safety_part(rule, unserved, to_arrival) or ""
            hits[(rule, trip.school, trip.date, part)].append((measured, at, still_open, trip.tag, records, to_arrival))
        if left and _takes_temperatures(plan, trip.school):
            judged[(trip.school, trip.date)].append(trip)
            if not safety[2]:
                unmeasured[(trip.school, trip.date)].append(trip)
    for (rule, school_id, date, part), items in sorted(hits.items()):
        school = plan.school(school_id)
        worst_fn = min if rule == "hot_holding" else max
        worst = worst_fn(items, key=lambda i: i[0])
        limit, unit, source = {
            "cook_to_serve": (rules.cook_to_serve_max_s, "s", rules.source_cook_to_serve),
            "danger_zone": (rules.danger_max_s, "s", rules.source_danger_zone),
            "hot_holding": (rules.hot_hold_min_cc, "cc", rules.source_hot_holding),
        }[rule]
        v = FoodSafetyViolation(rule=rule, limit=limit, measured=worst[0], unit=unit, source=source,  # type: ignore[arg-type]
                                school=school_id, kitchen=school.kitchen if school else "", date=date, at=worst[1],
                                open=any(i[2] for i in items), to_arrival=worst[5], containers=tuple(sorted({i[3] for i in items})),
                                records=tuple(sorted({r for i in items for r in i[4]}))[:50], part=part or None)
        a.violations.append(v)
        _emit(a, SAFETY, (rule, school_id, date, part) if part else (rule, school_id, date), v.finding())
    for (school_id, date), trips in sorted(unmeasured.items()):
        # Not a rule broken but a measurement missing: a reader cannot tell meals kept hot from meals never measured.
        tags = tuple(sorted({t.tag for t in trips}))
        out_of = len({t.tag for t in judged[(school_id, date)]})
        _emit(a, SAFETY, ("no_temperature", school_id, date), Finding(
            code="no_temperature", subject=school_id, date=date,
            detail=f"no temperature reading for {len(tags)} of the {count(out_of, 'container')} of this delivery, "
                   "at the kitchen or at the school; whether the meals were kept hot is not known",
            measured=len(tags), limit=out_of, containers=tags,
            records=tuple(sorted({s.scan.record_id for t in trips for s in t.steps}))[:50]))
    return running


# A container that was tapped with one of these left its kitchen for a school: its meals were on their way.
_ON_THE_WAY = frozenset(("departed", "arrived", "received", "served"))


def _left_for_school(trip: _Trip) -> bool:
    """Whether a trip took meals out of the kitchen: tapped leaving it or in at a school, or packed and then
    back, lost or damaged. Empties that are only tapped back, and containers still being packed, took none."""
    events = {t.scan.event for t in trip.steps}
    if not events.isdisjoint(_ON_THE_WAY):
        return True
    return "packed" in events and (trip.returned is not None or not events.isdisjoint(("returned", "lost", "damaged")))


def _takes_temperatures(plan: Plan, school_id: str) -> bool:
    """Whether the plan asks for temperature readings of a school's deliveries (its kitchen's
    `temperature_required`); a school the plan does not list is asked for none."""
    school = plan.school(school_id)
    kitchen = plan.kitchen(school.kitchen) if school is not None else None
    return kitchen is not None and kitchen.temperature_required
