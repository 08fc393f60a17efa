"""An MBG day's answer stored as day aggregates reads back equal (hub/mbg/days.py), for every scenario."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import cbor2
import pytest

from hub.aggregates import DamagedAggregate, DayAggregate
from hub.mbg import SCENARIOS, analyze, from_record, simulate
from hub.mbg.days import StoredDay, decode, encode, mark


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
    # `part`; the third: without `other_kitchen`) reads as it was stored, its findings without what they lacked:
    # its scans may be pruned, so reading it as damaged would lose it.
    first = encode(stored)
    summary = cbor2.loads(first.summary)
    assert summary["format"] == 4
    keyed = summary["keyed"]
    for earlier, fields, lacks in ((3, 10, {"other_kitchen": None}), (2, 9, {"part": None, "other_kitchen": None}),
                                   (1, 9, {"part": None, "other_kitchen": None})):
        summary["format"], summary["keyed"] = earlier, [[g, k, f[:fields]] for g, k, f in keyed]
        assert decode(DayAggregate(date=first.date, figures=first.figures, summary=cbor2.dumps(summary),
                                   rows=first.rows)) == replace(
            stored, keyed=tuple((g, k, replace(f, **lacks)) for g, k, f in stored.keyed))
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
