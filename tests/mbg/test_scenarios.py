"""Simulated MBG days: each scenario causes exactly the findings its fault should, the normal day none."""

from __future__ import annotations

import pytest

from hub.mbg import SCENARIOS, MbgView, simulate
from hub.mbg.sim import SimDay


def _ingest(day: SimDay) -> MbgView:
    view = MbgView(day.plan)
    for r in day.records:
        view.ingest(r, r.arrived_at)
    assert view.rejected == []
    return view


@pytest.mark.parametrize("scenario", SCENARIOS)
@pytest.mark.parametrize("seed", [1, 7])
def test_scenario_produces_exactly_the_expected_findings(scenario: str, seed: int) -> None:
    day = simulate(scenario, seed=seed, kitchens=2, schools_per_kitchen=4, meals_per_kitchen=1200)
    view = _ingest(day)
    got = {f.key() for f in view.findings(day.now)}
    assert got == day.expected
    if scenario == "normal":
        assert got == set()
    else:
        assert len(day.expected) == 1


def test_normal_day_reconciles_every_delivery_on_time() -> None:
    day = simulate("normal", seed=3, kitchens=2, schools_per_kitchen=5, meals_per_kitchen=3000)
    view = _ingest(day)
    deliveries = view.deliveries(day.now, day.date)
    assert len(deliveries) == len(day.plan.schools)
    assert all(d.status == "on_time" and d.received_portions == d.expected and d.time_basis == "device"
               for d in deliveries)
    assert view.violations(day.now) == []
    assert all(row["on_hand"] >= 0 and row["flags"] == [] for row in view.stock_on_hand())


def test_late_truck_says_how_late() -> None:
    day = simulate("late_truck", seed=1)
    view = _ingest(day)
    [late] = view.late(day.now, day.date)
    assert late.school == day.target
    assert 40 * 60 <= late.late_s <= 45 * 60
    assert late.arrived_at is not None and late.arrived_at - late.deadline_at == late.late_s


def test_short_delivery_counts_the_shortfall() -> None:
    day = simulate("short_delivery", seed=1, kitchens=1, schools_per_kitchen=1, meals_per_kitchen=1060)
    view = _ingest(day)
    [short] = view.short(day.now, day.date)
    assert short.expected == 1060 and short.shortfall == 190 and short.received_portions == 870


def test_lost_container_is_listed_by_tag() -> None:
    day = simulate("lost_container", seed=2)
    view = _ingest(day)
    [row] = view.lost(day.now, day.date)
    [timeline] = view.container(row["tag"], day.now)
    assert row["school"] == day.target
    assert timeline.stage == "served" and timeline.first("returned") is None


def test_year_off_kitchen_clock_uses_arrival_time_and_keeps_the_day_right() -> None:
    day = simulate("clock_year_off", seed=1)
    view = _ingest(day)
    kitchen_device = next(d for d, site in day.devices.items() if site == day.plan.kitchens[0].id)
    [finding] = [f for f in view.findings(day.now) if f.code == "clock_skew"]
    assert finding.subject == kitchen_device and finding.measured is not None
    assert finding.measured < -364 * 86400
    deliveries = view.deliveries(day.now, day.date)
    assert {d.time_basis for d in deliveries} == {"mixed"}  # kitchen by arrival, school by device
    assert all(d.status == "on_time" for d in deliveries)


def test_outage_records_keep_their_device_time() -> None:
    day = simulate("outage", seed=1)
    view = _ingest(day)
    [finding] = [f for f in view.findings(day.now) if f.code == "late_sync"]
    assert finding.subject == next(d for d, s in day.devices.items() if s == day.target)
    assert -finding.measured >= 2 * 86400  # type: ignore[operator]
    [d] = view.deliveries(day.now, day.date, school=day.target)
    assert d.status == "on_time" and d.time_basis == "device"


def test_served_late_violation_names_rule_limit_measured_and_source() -> None:
    day = simulate("served_late", seed=1)
    view = _ingest(day)
    [v] = view.violations(day.now, day.date)
    assert v.rule == "cook_to_serve" and v.limit == 4 * 3600 and v.unit == "s"
    assert v.measured == 4 * 3600 + 30 * 60
    assert "SOP" in v.source and not v.open
    assert len(v.containers) == day.plan.school(day.target).portions // 10  # type: ignore[union-attr]


def test_temperature_drop_is_a_hot_holding_violation_with_a_who_source() -> None:
    day = simulate("temperature_drop", seed=1)
    view = _ingest(day)
    [v] = view.violations(day.now, day.date)
    assert (v.rule, v.measured, v.limit, v.unit) == ("hot_holding", 4500, 6000, "cc")
    assert "WHO" in v.source


def test_simulator_is_seeded_and_gives_per_device_streams() -> None:
    a = simulate("normal", seed=5, kitchens=2)
    b = simulate("normal", seed=5, kitchens=2)
    c = simulate("normal", seed=6, kitchens=2)
    assert a.tuples() == b.tuples() and a.tuples() != c.tuples()
    streams = a.by_device()
    assert sum(len(s) for s in streams.values()) == len(a.records)
    assert set(streams) == set(a.devices)
    for records in streams.values():
        assert [r.seq for r in records] == list(range(1, len(records) + 1))
        times = [r.time for r in records]
        assert times == sorted(times)
        assert all(r.arrived_at >= r.time for r in records)


def test_unknown_scenario_is_refused() -> None:
    from hub.mbg import InputError

    with pytest.raises(InputError, match="normal"):
        simulate("meteor")
