"""A seeded simulator of MBG days: kitchens, schools, trucks and ompreng, with the failures seen in the field."""

from __future__ import annotations

import datetime as dt
import hashlib
import random
from collections import defaultdict
from dataclasses import dataclass, field, replace
from typing import Any

from .errors import InputError
from .plan import DAY, HOUR, WIB, Kitchen, Plan, School, local_midnight

MIN = 60
SCENARIOS = (
    "normal", "late_truck", "short_delivery", "lost_container", "served_late", "temperature_drop",
    "clock_year_off", "outage", "duplicate_scan", "out_of_order", "missing_delivery", "stock_overdraw",
    "misrouted", "over_receipt", "lost_in_transit", "borrowed_card",
)
# Ingredient, grams per portion: what a kitchen receives in the morning and uses when cooking.
INGREDIENTS = (("beras", 100), ("ayam", 70), ("sayur", 50), ("tempe", 40))


@dataclass(frozen=True, slots=True, kw_only=True)
class SimRecord:
    """A record as a device would sign it, and when the hub got it; has the attributes of ledger's Record."""

    kind: str
    body: dict[str, Any]
    device_id: bytes
    seq: int
    time: int  # device time (what the device's clock said)
    boot: int
    arrived_at: int
    id: bytes

    @property
    def device(self) -> str:
        return self.device_id.hex()

    def as_tuple(self) -> tuple[str, dict[str, Any], int, int]:
        return (self.kind, self.body, self.time, self.arrived_at)


@dataclass(frozen=True, slots=True, kw_only=True)
class SimDay:
    """One simulated day: the plan, every record in arrival order, and the findings the scenario must cause."""

    scenario: str
    seed: int
    date: str
    plan: Plan
    records: tuple[SimRecord, ...]
    expected: frozenset[tuple[str, str]]  # (finding code, subject)
    now: int  # a time after the day closed and every record arrived
    devices: dict[str, str] = field(default_factory=dict)  # device hex -> site id
    target: str = ""  # the school (or device) the scenario's fault was put on

    def tuples(self) -> list[tuple[str, dict[str, Any], int, int]]:
        """(kind, body, device time, arrival time) in arrival order."""
        return [r.as_tuple() for r in self.records]

    def by_device(self) -> dict[str, list[SimRecord]]:
        """Each device's own stream in sequence order, to drive simulated edge devices."""
        out: dict[str, list[SimRecord]] = defaultdict(list)
        for r in self.records:
            out[r.device].append(r)
        return {d: sorted(rs, key=lambda r: r.seq) for d, rs in sorted(out.items())}


def device_id(site: str) -> bytes:
    return hashlib.sha256(b"jejak-sim-device:" + site.encode()).digest()[:16]


def container_tag(kitchen: str, n: int) -> str:
    # NFC UIDs are 7 bytes (NTAG21x); derive stable fake ones so tags look like what a reader returns.
    return hashlib.sha256(f"{kitchen}/{n}".encode()).hexdigest()[:14].upper()


def staff_card(site: str, n: int = 1) -> str:
    """The staff card of a kitchen's or school's n-th staff member."""
    return f"STAFF-{site}-{n}"


def make_plan(*, kitchens: int = 1, schools_per_kitchen: int = 3, meals_per_kitchen: int = 900,
              portions_per_container: int = 10) -> Plan:
    ks = []
    ss = []
    for k in range(1, kitchens + 1):
        kid = f"SPPG-{k:04d}"
        sids = [f"{kid}-S{s:02d}" for s in range(1, schools_per_kitchen + 1)]
        # The roster: the kitchen's cook and the two receiving staff of each of its schools.
        ks.append(Kitchen(id=kid, name=f"SPPG {k}", tz_offset_s=WIB,
                          staff=(staff_card(kid), *(staff_card(sid, n) for sid in sids for n in (1, 2)))))
        base, extra = divmod(meals_per_kitchen, schools_per_kitchen)
        for s, sid in enumerate(sids, start=1):
            ss.append(School(id=sid, name=f"Sekolah {k}.{s}", kitchen=kid,
                             portions=base + (1 if s <= extra else 0), deadline_s=9 * HOUR, tz_offset_s=WIB))
    return Plan(kitchens=tuple(ks), schools=tuple(ss), portions_per_container=portions_per_container)


class _Device:
    def __init__(self, site: str, *, clock_error: int = 0) -> None:
        self.site = site
        self.id = device_id(site)
        self.clock_error = clock_error
        self.pending: list[tuple[int, str, dict[str, Any], int]] = []  # true time, kind, body, lag

    def tap(self, true_time: int, kind: str, body: dict[str, Any], lag: int) -> None:
        self.pending.append((true_time, kind, body, lag))


class _Day:
    """The day being built: each site's device with its pending taps, and the findings the fault must cause."""

    def __init__(self, scenario: str, plan: Plan, date: str) -> None:
        self.scenario = scenario
        self.plan = plan
        self.date = date
        self.midnight = local_midnight(date, WIB)
        self.target_kitchen = plan.kitchens[0]
        self.target = plan.schools_of(self.target_kitchen.id)[0]
        self.devices: dict[str, _Device] = {}
        self.expected: set[tuple[str, str]] = set()

    def device(self, site: str) -> _Device:
        d = self.devices.get(site)
        if d is None:
            year_off = self.scenario == "clock_year_off" and site == self.target_kitchen.id
            d = self.devices[site] = _Device(site, clock_error=-365 * DAY if year_off else 0)
        return d

    def fault(self, kitchen: Kitchen, school: School | None = None) -> str:
        """The scenario where the fault lands (the first kitchen, and its first school), else 'normal'."""
        if kitchen is not self.target_kitchen or (school is not None and school is not self.target):
            return "normal"
        return self.scenario


def _lag(rng: random.Random) -> int:
    """Seconds between a tap and its record reaching the hub."""
    return rng.randint(5, 90)


def simulate(scenario: str = "normal", *, seed: int = 1, kitchens: int = 1, schools_per_kitchen: int = 3,
             meals_per_kitchen: int = 900, date: str = "2026-01-12", portions_per_container: int = 10) -> SimDay:
    """Simulate one MBG day. The scenario's fault lands on the first school of the first kitchen."""
    if scenario not in SCENARIOS:
        raise InputError(f"scenario: expected one of {list(SCENARIOS)}, got {scenario!r}")
    if scenario == "misrouted" and schools_per_kitchen < 2:
        raise InputError("scenario misrouted: expected at least 2 schools per kitchen (one to drop the container "
                         f"at by mistake), got {schools_per_kitchen}")
    plan = make_plan(kitchens=kitchens, schools_per_kitchen=schools_per_kitchen,
                     meals_per_kitchen=meals_per_kitchen, portions_per_container=portions_per_container)
    day = _Day(scenario, plan, date)
    for kitchen in plan.kitchens:
        rng = random.Random(f"{seed}/{date}/{kitchen.id}/{scenario}")
        schools = plan.schools_of(kitchen.id)
        _stock_taps(day, kitchen, sum(s.portions for s in schools), rng)
        next_container = 0
        for i, school in enumerate(schools):
            next_container += _delivery_taps(day, kitchen, school, i, next_container, rng)
    if scenario == "clock_year_off":
        day.expected.add(("clock_skew", device_id(day.target_kitchen.id).hex()))
    if scenario == "outage":
        day.expected.add(("late_sync", device_id(day.target.id).hex()))
    records = _sign(day)
    now = max(day.midnight + 20 * HOUR, max(r.arrived_at for r in records) + 60)
    return SimDay(scenario=scenario, seed=seed, date=date, plan=plan, records=tuple(records),
                  expected=frozenset(day.expected), now=now,
                  devices={d.id.hex(): site for site, d in day.devices.items()}, target=day.target.id)


def _stock_taps(day: _Day, kitchen: Kitchen, meals: int, rng: random.Random) -> None:
    """Raw ingredients arrive before dawn; the book starts empty so the day's card is self-contained."""
    kd = day.device(kitchen.id)
    midnight = day.midnight
    for item, grams in INGREDIENTS:
        need = grams * meals
        overdraw = day.fault(kitchen) == "stock_overdraw" and item == "beras"
        receive = need - 5000 if overdraw else need + rng.randint(0, 20) * 1000
        if overdraw:
            day.expected.add(("stock_overdraw", f"{kitchen.id}/{item}"))
        kd.tap(midnight + 4 * HOUR + rng.randint(0, 30 * MIN), "stock",
               {"site": kitchen.id, "item": item, "movement": "receive", "qty": receive, "unit": "g",
                "supplier": f"SUP-{rng.randint(1, 9)}"}, _lag(rng))
        kd.tap(midnight + 5 * HOUR + rng.randint(0, 10 * MIN), "stock",
               {"site": kitchen.id, "item": item, "movement": "use", "qty": need, "unit": "g",
                "reason": "masak"}, _lag(rng))
        if not overdraw:
            # A count can never be negative, so after an overdraw the kitchen skips the evening count.
            kd.tap(midnight + 16 * HOUR + rng.randint(0, 30 * MIN), "stock",
                   {"site": kitchen.id, "item": item, "movement": "count", "qty": receive - need, "unit": "g"},
                   _lag(rng))


def _delivery_taps(day: _Day, kitchen: Kitchen, school: School, i: int, first_container: int,
                   rng: random.Random) -> int:
    """One school's delivery from cooking to the empty containers' return; returns how many containers it used."""
    kd, sd = day.device(kitchen.id), day.device(school.id)
    fault = day.fault(kitchen, school)
    ppc = day.plan.portions_per_container
    midnight = day.midnight
    batch = f"{kitchen.id}-{day.date}-B{i + 1:02d}"
    truck = f"{kitchen.id}-TRK{i % 3 + 1}"
    n = -(-school.portions // ppc) + (1 if fault == "over_receipt" else 0)
    tags = [container_tag(kitchen.id, first_container + j) for j in range(n)]

    # Cooking.
    cook_end = midnight + 5 * HOUR + 30 * MIN + i * 4 * MIN + rng.randint(0, 5 * MIN)
    if fault == "late_truck":
        cook_end = midnight + 6 * HOUR + 50 * MIN
    kd.tap(cook_end + rng.randint(60, 180), "scan",
           {"event": "cooked", "site": kitchen.id, "checkpoint": "kitchen", "batch": batch,
            "count": school.portions, "temp_cc": rng.randint(8500, 9500), "cooked_at": cook_end,
            "staff": staff_card(kitchen.id), "source": "nfc"}, _lag(rng))
    if fault == "missing_delivery":
        day.expected.add(("missing_delivery", school.id))
        return n

    # Packing and the truck leaving the kitchen.
    sent_tags = tags
    portions = school.portions
    if fault == "short_delivery":
        short_by = min(19, n - 1)
        sent_tags = tags[: n - short_by]
        portions = school.portions - short_by * ppc
        day.expected.add(("short_delivery", school.id))
    if fault == "over_receipt":
        portions = school.portions + ppc  # the kitchen packed one container more than the plan asks
        day.expected.add(("over_receipt", school.id))
    packed = cook_end + rng.randint(15 * MIN, 25 * MIN)
    kd.tap(packed, "scan", {"event": "packed", "site": kitchen.id, "checkpoint": "kitchen",
                            "tags": list(sent_tags), "parent": truck, "batch": batch, "school": school.id,
                            "count": portions, "temp_cc": rng.randint(8000, 8800), "source": "nfc"}, _lag(rng))
    departed = packed + rng.randint(5 * MIN, 15 * MIN)
    travel = rng.randint(20 * MIN, 45 * MIN)
    arrived = departed + travel
    if fault == "late_truck":
        arrived = school.deadline_at(day.date) + 40 * MIN + rng.randint(0, 5 * MIN)
        day.expected.add(("late_delivery", school.id))
    depart_tap = departed
    if fault == "out_of_order":
        # The driver left before anyone tapped; the kitchen taps "departed" after the school's gate tap.
        depart_tap = arrived + 10 * MIN
        day.expected.add(("out_of_order", school.id))
    kd.tap(depart_tap, "scan", {"event": "departed", "site": kitchen.id, "checkpoint": "kitchen_exit",
                                "tags": list(sent_tags), "parent": truck, "school": school.id,
                                "count": portions, "temp_cc": rng.randint(7600, 8200), "source": "nfc"}, _lag(rng))

    # Arrival, receipt and serving at the school.
    arrive_temp = rng.randint(7000, 7600)
    serve_temp = rng.randint(6300, 6900)
    if fault == "temperature_drop":
        arrive_temp, serve_temp = 4800, 4500
        day.expected.add(("hot_holding", school.id))
    came, in_portions = sent_tags, portions
    if fault == "lost_in_transit":
        # The last container fell off the truck: it never arrives, is never served and never comes back.
        came, in_portions = sent_tags[:-1], portions - ppc
        day.expected.update((("short_delivery", school.id), ("container_unreturned", school.id)))
    if fault == "misrouted":
        # The truck's first stop was the wrong school, whose gate tapped one of these containers in.
        other = day.plan.schools_of(kitchen.id)[1]
        day.device(other.id).tap(arrived - 15 * MIN, "scan", {
            "event": "arrived", "site": other.id, "checkpoint": "school_gate", "tags": [sent_tags[0]],
            "parent": truck, "staff": staff_card(other.id), "source": "nfc"}, 30)
        day.expected.add(("misrouted", other.id))
    gate_card = staff_card(school.id)
    if fault == "borrowed_card":
        # The driver tapped the containers in at the gate with a card lent by the next kitchen's cook (with one
        # kitchen, a card no roster lists: a new driver's, never put on it).
        kitchens = day.plan.kitchens
        lender = kitchens[(kitchens.index(kitchen) + 1) % len(kitchens)]
        gate_card = staff_card(lender.id) if lender is not kitchen else staff_card(f"{kitchen.id}-DRIVER")
        day.expected.add(("staff_not_on_roster", school.id))
    sd.tap(arrived, "scan", {"event": "arrived", "site": school.id, "checkpoint": "school_gate",
                             "tags": list(came), "parent": truck, "temp_cc": arrive_temp,
                             "staff": gate_card, "source": "nfc"}, _lag(rng))
    if fault == "duplicate_scan":
        sd.tap(arrived + 90, "scan", {"event": "arrived", "site": school.id, "checkpoint": "school_gate",
                                      "tags": list(sent_tags), "parent": truck, "temp_cc": arrive_temp,
                                      "staff": staff_card(school.id, 2), "source": "nfc"}, _lag(rng))
        day.expected.add(("duplicate_scan", school.id))
    received = arrived + rng.randint(3 * MIN, 8 * MIN)
    sd.tap(received, "scan", {"event": "received", "site": school.id, "checkpoint": "school_gate",
                              "count": in_portions, "staff": staff_card(school.id), "source": "nfc"}, _lag(rng))
    served = received + rng.randint(20 * MIN, 50 * MIN)
    if fault == "late_truck":
        served = received + 10 * MIN
    if fault == "served_late":
        served = cook_end + 4 * HOUR + 30 * MIN
        serve_temp = 6100
        day.expected.add(("cook_to_serve", school.id))
    sd.tap(served, "scan", {"event": "served", "site": school.id, "count": in_portions, "temp_cc": serve_temp,
                            "staff": staff_card(school.id), "source": "nfc"}, _lag(rng))

    # The empty containers come back to the kitchen.
    back = list(came)
    if fault == "lost_container":
        back = back[1:]
        day.expected.add(("container_unreturned", school.id))
    kd.tap(midnight + 12 * HOUR + 30 * MIN + rng.randint(0, 90 * MIN), "scan",
           {"event": "returned", "site": kitchen.id, "checkpoint": "return", "tags": back,
            "school": school.id, "source": "nfc"}, _lag(rng))
    return n


def _sign(day: _Day) -> list[SimRecord]:
    """Each device's taps in its own order as records with its clock's error, sorted by arrival at the hub."""
    outage_until = day.midnight + 3 * DAY + 10 * HOUR
    records: list[SimRecord] = []
    for site, d in day.devices.items():
        d.pending.sort(key=lambda p: p[0])
        for seq, (true_time, kind, body, lag_s) in enumerate(d.pending, start=1):
            device_time = true_time + d.clock_error
            if "cooked_at" in body:
                body = {**body, "cooked_at": body["cooked_at"] + d.clock_error}
            arrived_at = true_time + lag_s
            if day.scenario == "outage" and site == day.target.id:
                # The uplink came back three days later and the device sent its backlog in one go.
                arrived_at = outage_until + seq
            rid = hashlib.sha256(d.id + seq.to_bytes(8, "big") + repr(sorted(body.items())).encode()).digest()
            records.append(SimRecord(kind=kind, body=body, device_id=d.id, seq=seq, time=device_time, boot=1,
                                     arrived_at=arrived_at, id=rid))
    records.sort(key=lambda r: (r.arrived_at, r.device_id, r.seq))
    return records


def simulate_days(days: int, *, first_date: str = "2026-01-12", scenario: str = "normal", seed: int = 1,
                  **sizes: int) -> list[SimDay]:
    """`days` consecutive days of the same kitchens. Each device's log runs on across the days (sequence
    numbers continue), so a record of one day never has the id of another day's."""
    first = dt.date.fromisoformat(first_date)
    out: list[SimDay] = []
    next_seq: dict[bytes, int] = defaultdict(int)
    for i in range(days):
        day = simulate(scenario, seed=seed + i, date=(first + dt.timedelta(days=i)).isoformat(), **sizes)
        records = []
        for r in day.records:
            seq = next_seq[r.device_id] + r.seq
            rid = hashlib.sha256(r.id + seq.to_bytes(8, "big")).digest()
            records.append(replace(r, seq=seq, id=rid))
        for r in records:
            next_seq[r.device_id] = max(next_seq[r.device_id], r.seq)
        out.append(replace(day, records=tuple(records)))
    return out
