"""An MBG day's answer stored as day aggregates reads back equal (hub/mbg/days.py), for every scenario."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import cbor2
import pytest

from hub.aggregates import DamagedAggregate, DayAggregate
from hub.mbg import SCENARIOS, Plan, analyze, from_record, simulate
from hub.mbg.days import StoredDay, decode, encode, mark
from tests.mbg.common import DATE, MIDNIGHT, H, M


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_a_day_round_trips(scenario: str) -> None:
    day = simulate(scenario, seed=5, kitchens=2, schools_per_kitchen=3)
    scans = [e for r in day.records if (e := from_record(r, r.arrived_at)) is not None and r.kind == "scan"]
    a = analyze(day.plan, scans, now=day.now + 86400, dates=(day.date,))
    held = (len(scans), 0)
    for s in scans:
        held = (held[0], held[1] ^ mark(bytes.fromhex(s.record_id)))
    stored = StoredDay(date=day.date, final=True, valid_from=a.valid_from, valid_until=a.valid_until,
                       deliveries=tuple(d for (_, date), d in sorted(a.deliveries.items()) if date == day.date),
                       keyed=tuple(a.keyed), violations=tuple(a.violations), scans=len(scans),
                       per_event=Counter(s.event for s in scans), devices=len({s.device for s in scans}), held=held)
    assert stored.deliveries
    if scenario in ("served_late", "temperature_drop"):  # findings and violations travel too
        assert stored.keyed and stored.violations
    back = decode(encode(stored))
    assert back == stored
    # A day stored in an earlier format (the first: before returned_without_arrival; the second: findings without
    # `part`; the third: without `other_kitchen`; the fourth: violations without `part`) reads as it was stored, its
    # findings and violations without what they lacked: its scans may be pruned, so reading it as damaged would
    # lose it. A cook_to_serve violation's part followed from its `open` and `to_arrival` then, and still does.
    first = encode(stored)
    summary = cbor2.loads(first.summary)
    assert summary["format"] == 5
    keyed, violations = summary["keyed"], summary["violations"]
    partless = tuple(v if v.rule == "cook_to_serve" else replace(v, part=None) for v in stored.violations)
    for earlier, fields, lacks in ((4, 11, {}), (3, 10, {"other_kitchen": None}),
                                   (2, 9, {"part": None, "other_kitchen": None}),
                                   (1, 9, {"part": None, "other_kitchen": None})):
        summary["format"], summary["keyed"] = earlier, [[g, k, f[:fields]] for g, k, f in keyed]
        summary["violations"] = [v[:13] for v in violations]
        assert decode(DayAggregate(date=first.date, figures=first.figures, summary=cbor2.dumps(summary),
                                   rows=first.rows)) == replace(
            stored, keyed=tuple((g, k, replace(f, **lacks)) for g, k, f in stored.keyed), violations=partless)
    assert [d.to_dict() for d in back.deliveries] == [d.to_dict() for d in stored.deliveries]
    # What a second store gives back (lists where tuples went in) decodes the same.
    agg = encode(stored)
    relisted = DayAggregate(date=agg.date, figures=agg.figures, summary=agg.summary,
                            rows=tuple(tuple(list(v) if isinstance(v, tuple) else v for v in r) for r in agg.rows))
    assert decode(relisted) == stored


def test_a_summary_that_is_not_a_day_is_refused() -> None:
    day = simulate("normal", seed=5)
    stored = StoredDay(date=day.date, final=True, valid_from=0, valid_until=2**62, deliveries=(), keyed=(),
                       violations=(), scans=0, per_event=Counter(), devices=0, held=(0, 0))
    agg = encode(stored)
    for summary in (b"\xff", cbor2.dumps({"format": 99}), cbor2.dumps([1, 2]),
                    cbor2.dumps({"format": 1, "valid": [0]})):
        with pytest.raises(DamagedAggregate) as refused:
            decode(DayAggregate(date=agg.date, figures=agg.figures, summary=summary))
        assert refused.value.code == "AGGREGATE_DAMAGED"


def test_a_day_stored_with_served_and_unserved_meals_in_one_violation_still_reads(plan: Plan, scan) -> None:
    # Stored in the fourth format, a delivery's meals served after the danger zone and still in it were one
    # danger_zone violation and one finding, with no part. Such a day reads as it was stored, and is still said as
    # one finding of both (no part, listed under the id it was raised under); written now it is two.
    tags = ["T1", "T2", "T3"]
    scans = [scan("cooked", 6 * H + 1 * M, batch="B1", cooked_at=MIDNIGHT + 6 * H, count=30),
             scan("packed", 6 * H + 20 * M, tags=tags, parent="TRK1", batch="B1", school="S1"),
             scan("arrived", 7 * H + 30 * M, site="S1", tags=tags, temp_cc=4500, checkpoint="school_gate"),
             scan("served", 10 * H, site="S1", tags=["T1"])]
    a = analyze(plan, scans, now=MIDNIGHT + 11 * H)
    now = StoredDay(date=DATE, final=False, valid_from=a.valid_from, valid_until=a.valid_until,
                    deliveries=tuple(a.deliveries.values()), keyed=tuple(a.keyed), violations=tuple(a.violations),
                    scans=len(scans), per_event=Counter(s.event for s in scans), devices=2, held=(0, 0))
    assert {(v.rule, v.part) for v in decode(encode(now)).violations} == {("cook_to_serve", "not_served"), *(
        (rule, part) for rule in ("danger_zone", "hot_holding") for part in ("served", "not_served"))}
    agg = encode(now)
    summary = cbor2.loads(agg.summary)
    keyed = [[g, k, f] for g, k, f in summary["keyed"] if f[0] != "danger_zone"]
    zone = next(f for _, _, f in summary["keyed"] if f[0] == "danger_zone" and f[9] == "not_served")
    keyed.append([7, ["danger_zone", "S1", DATE], [*zone[:6], ["T1", "T2", "T3"], zone[7], None, None, None]])
    violations = [v[:13] for v in summary["violations"] if v[0] != "danger_zone"]
    both = next(v for v in summary["violations"] if v[0] == "danger_zone" and v[13] == "not_served")
    violations.append([*both[:11], ["T1", "T2", "T3"], both[12]])
    summary.update(format=4, keyed=keyed, violations=violations)
    old = decode(DayAggregate(date=agg.date, figures=agg.figures, summary=cbor2.dumps(summary), rows=agg.rows))
    # A cook_to_serve violation's part followed from its `open` then; a temperature rule's had none.
    assert {(v.rule, v.part) for v in old.violations} == {("cook_to_serve", "not_served"), ("danger_zone", None),
                                                          ("hot_holding", None)}
    [v] = [v for v in old.violations if v.rule == "danger_zone"]
    assert (v.part, v.containers, v.open, v.measured) == (None, ("T1", "T2", "T3"), True, 3 * H + 30 * M)
    [f] = [f for _, _, f in old.keyed if f.code == "danger_zone"]
    assert (f.part, f.ref, f.containers) == (None, f"danger_zone/S1/{DATE}", ("T1", "T2", "T3"))
