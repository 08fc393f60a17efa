"""An MBG day's answer as stored day aggregates (hub/aggregates.py): deliveries as rows, counts as figures, and
findings and violations as canonical CBOR; read back equal to what was written."""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, fields, replace
from typing import Any

import cbor2

from ..aggregates import DamagedAggregate, DayAggregate, Namespace
from ..collector import without_cycle_collection
from .analysis import Delivery, Finding, FoodSafetyViolation, safety_part

_COUNTED = ("on_time", "late", "short", "missing")

MBG_DAYS = Namespace(
    name="mbg", days_table="mbg_days",
    figures=(("final", "boolean"), ("scans", "integer"), ("devices", "integer"), ("deliveries", "integer"),
             *((s, "integer") for s in _COUNTED), ("expected_portions", "bigint"), ("received_portions", "bigint"),
             ("violations", "integer"), ("findings", "integer")),
    rows_table="mbg_deliveries",
    rows=(("school", "text"), ("school_name", "text"), ("kitchen", "text"), ("expected", "integer"),
          ("departed_portions", "integer"), ("received_portions", "integer"), ("containers_out", "integer"),
          ("containers_in", "integer"), ("deadline_at", "bigint"), ("departed_at", "bigint"),
          ("arrived_at", "bigint"), ("received_at", "bigint"), ("served_at", "bigint"), ("statuses", "text[]"),
          ("late_s", "bigint"), ("shortfall", "integer"), ("time_basis", "text")),
)
_ROW_FIELDS = tuple(name for name, _ in MBG_DAYS.rows)
_DELIVERY_FIELDS = tuple(f.name for f in fields(Delivery))
_ROW_INDEX = tuple(_DELIVERY_FIELDS.index(n) for n in _ROW_FIELDS)
FORMAT = 5  # of the summary written; one of a format not in READABLE is read as damaged and computed again
# 1: the same shape, from before returned_without_arrival was a finding. 2: findings without `part` (a delivery's
# meals served late and not served were one cook_to_serve violation). 3: findings without `other_kitchen`
# (before kitchens' rosters). 4: violations without `part` (a delivery's meals served and not served yet were one
# danger_zone or hot_holding violation; a cook_to_serve one's part followed from `open` and `to_arrival`). Such a
# day is read as it was stored, a finding's later fields left at their defaults: its scans may be pruned already,
# so settling it again could only lose what it says.
READABLE = frozenset({1, 2, 3, 4, 5})
# How many fields a finding and a violation of each format have.
_FINDING_FIELDS = {1: 9, 2: 9, 3: 10}
_VIOLATION_FIELDS = {1: 13, 2: 13, 3: 13, 4: 13}


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredDay:
    """An MBG day as stored: its settled deliveries, findings (with the group and key each was emitted under)
    and violations, the span of times they hold for, its scans by event and device, and which scans it was
    computed from (`held`: how many, and the XOR of their marks, `MbgView.mark`). `final` if no timer or
    deadline of the day could change it any more when it was written."""

    date: str
    final: bool
    valid_from: int
    valid_until: int
    deliveries: tuple[Delivery, ...]
    keyed: tuple[tuple[int, tuple[str, ...], Finding], ...]
    violations: tuple[FoodSafetyViolation, ...]
    scans: int
    per_event: Counter[str]
    devices: int
    held: tuple[int, int]


def mark(key: bytes | str) -> int:
    """A scan's share of a day's `held` digest: 128 bits of its record id (already a hash; other ids hashed)."""
    if type(key) is bytes and len(key) >= 16:
        return int.from_bytes(key[:16], "big")
    return int.from_bytes(hashlib.blake2b(str(key).encode(), digest_size=16).digest(), "big")


_NAMES: dict[type[Any], tuple[str, ...]] = {cls: tuple(f.name for f in fields(cls))
                                             for cls in (Delivery, Finding, FoodSafetyViolation)}


def _values(obj: Any) -> list[Any]:
    """A dataclass's fields in order, tuples as lists (CBOR arrays)."""
    return [list(v) if isinstance(v, tuple) else v for v in map(obj.__getattribute__, _NAMES[type(obj)])]


def _build(cls: type[Any], values: list[Any], stored: int | None = None) -> Any:
    """An object of `cls` from its fields in order; `stored` fields if it was written with fewer, the rest left
    at their defaults."""
    names = _NAMES[cls]
    if len(values) != (len(names) if stored is None else stored):
        raise ValueError(f"{cls.__name__}: expected {len(names) if stored is None else stored} fields, "
                         f"got {len(values)}")
    return cls(**{n: tuple(v) if isinstance(v, list) else v for n, v in zip(names, values, strict=False)})


def _violation(values: list[Any], stored: int) -> FoodSafetyViolation:
    """A stored violation; one of a format before `part` was stored has the part it was read with then."""
    v: FoodSafetyViolation = _build(FoodSafetyViolation, values, _VIOLATION_FIELDS.get(stored))
    if stored in _VIOLATION_FIELDS and v.rule == "cook_to_serve":
        v = replace(v, part=safety_part(v.rule, v.open, v.to_arrival))
    return v


def encode(day: StoredDay) -> DayAggregate:
    """The day as a DayAggregate of the `mbg` namespace."""
    with without_cycle_collection():
        return _encode(day)


def _encode(day: StoredDay) -> DayAggregate:
    counts = Counter(s for d in day.deliveries for s in d.statuses)
    figures = (day.final, day.scans, day.devices, sum(1 for d in day.deliveries if d.expected > 0),
               *(counts.get(s, 0) for s in _COUNTED), sum(d.expected for d in day.deliveries),
               sum(d.received_portions for d in day.deliveries), len(day.violations), len(day.keyed))
    summary = cbor2.dumps({
        "format": FORMAT, "valid": [day.valid_from, day.valid_until], "per_event": dict(day.per_event),
        "keyed": [[g, list(k), _values(f)] for g, k, f in day.keyed],
        "violations": [_values(v) for v in day.violations],
        "held": [day.held[0], day.held[1].to_bytes(16, "big")],
    }, canonical=True)
    rows = tuple(_row(_values(d)) for d in sorted(day.deliveries, key=lambda d: d.school))
    return DayAggregate(date=day.date, figures=figures, summary=summary, rows=rows)


def _row(values: list[Any]) -> tuple[Any, ...]:
    return tuple(values[i] for i in _ROW_INDEX)


def decode(agg: DayAggregate) -> StoredDay:
    """The day back from its aggregate, equal to the one encoded; DamagedAggregate if it is not one."""
    with without_cycle_collection():
        return _decode(agg)


def _decode(agg: DayAggregate) -> StoredDay:
    try:
        s = cbor2.loads(agg.summary)
        if not isinstance(s, dict) or s.get("format") not in READABLE:
            raise ValueError(f"expected an MBG day summary of format {', '.join(map(str, sorted(READABLE)))}")
        deliveries = []
        for row in agg.rows:
            named = dict(zip(_ROW_FIELDS, row, strict=True))
            deliveries.append(_build(Delivery, [agg.date if n == "date" else named[n] for n in _DELIVERY_FIELDS]))
        count, digest = s["held"]
        return StoredDay(
            date=agg.date, final=bool(agg.figures[0]), valid_from=s["valid"][0], valid_until=s["valid"][1],
            deliveries=tuple(deliveries),
            keyed=tuple((g, tuple(k), _build(Finding, f, _FINDING_FIELDS.get(s["format"]))) for g, k, f in s["keyed"]),
            violations=tuple(_violation(v, s["format"]) for v in s["violations"]),
            scans=agg.figures[1], per_event=Counter(s["per_event"]), devices=agg.figures[2],
            held=(count, int.from_bytes(digest, "big")))
    except (cbor2.CBORDecodeError, ValueError, TypeError, KeyError, IndexError) as exc:
        raise DamagedAggregate(f"MBG day {agg.date}: its stored aggregate is not a day's answer ({exc})",
                               hint="it is computed again from the records the read models hold") from None
