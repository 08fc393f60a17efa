"""MbgView: incremental ingest and the queries the hub's API, dashboard and CLI expose."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace

import pytest

from hub.mbg import Kitchen, MbgView, NotFound, Plan, ScanEvent, School, analyze, from_record, simulate
from hub.mbg.plan import local_midnight
from hub.mbg.sim import SimDay, simulate_days


def _view(day: SimDay, upto: int | None = None) -> MbgView:
    view = MbgView(day.plan)
    for r in day.records:
        if upto is None or r.arrived_at <= upto:
            view.ingest(r, r.arrived_at)
    return view


def test_ingest_is_idempotent() -> None:
    day = simulate("normal", seed=1)
    view = _view(day)
    before = view.summary(day.now)
    assert not any(view.ingest(r, r.arrived_at + 999) for r in day.records)
    assert view.summary(day.now) == before
    assert len(view.scans) + len(view.movements) == len(day.records)


def test_summary_has_seed_one_totals_and_todays_deliveries() -> None:
    day = simulate("late_truck", seed=1, kitchens=2, schools_per_kitchen=3)
    view = _view(day)
    s = view.summary(day.now)
    scans = [r for r in day.records if r.kind == "scan"]
    assert s["date"] == day.date
    assert s["total_scans_today"] == len(scans) == sum(s["scans_today"].values())
    assert s["scans_today"]["departed"] == sum(1 for r in scans if r.body["event"] == "departed")
    assert s["legacy_status_today"] == {"makanan_keluar": s["scans_today"]["departed"],
                                        "makanan_diterima": s["scans_today"]["received"]}
    assert s["devices"] == len(day.devices) == s["devices_today"]
    assert s["last_sync"] == max(r.arrived_at for r in day.records)
    assert s["deliveries"]["expected"] == len(day.plan.schools)
    assert s["deliveries"]["late"] == 1 and s["deliveries"]["on_time"] == len(day.plan.schools) - 1
    assert s["alerts"] == 1
    json.dumps(s)  # the API serves it as JSON


def test_deliveries_during_the_morning_show_progress() -> None:
    day = simulate("normal", seed=2, kitchens=1, schools_per_kitchen=3)
    six = local_midnight(day.date, day.plan.tz_offset_s) + 6 * 3600
    view = _view(day, upto=six)
    [k] = view.deliveries_by_kitchen(six, day.date).values()
    counts = k["counts"]
    # At 06:00 no truck has reached a school yet, and no deadline has passed.
    assert counts["missing"] == counts["late"] == counts["on_time"] == 0
    assert counts["in_transit"] + counts["pending"] == 3
    full = _view(day).deliveries_by_kitchen(day.now, day.date)
    assert next(iter(full.values()))["counts"]["on_time"] == 3


def test_lists_container_history_and_not_found() -> None:
    day = simulate("lost_container", seed=1)
    view = _view(day)
    assert [d.school for d in view.late(day.now, day.date)] == []
    assert view.short(day.now, day.date) == [] and view.missing(day.now, day.date) == []
    [row] = view.lost(day.now, day.date)
    history = view.container(row["tag"], day.now)
    assert history[0].to_dict()["steps"][0]["event"] == "cooked"
    with pytest.raises(NotFound) as exc:
        view.container("NO-SUCH-TAG", day.now)
    assert exc.value.code == "MBG_NOT_FOUND"


def test_stock_queries() -> None:
    day = simulate("stock_overdraw", seed=1)
    view = _view(day)
    kitchen = day.plan.kitchens[0].id
    rows = {r["item"]: r for r in view.stock_on_hand(kitchen)}
    assert rows["beras"]["on_hand"] == -5000 and rows["beras"]["flags"] == ["overdraw"]
    card = view.stock_card(kitchen, "ayam")
    summary = card.to_dict()
    assert card.on_hand == summary["received"] - summary["used"] >= 0 and summary["adjustments"] == 0
    with pytest.raises(NotFound):
        view.stock_card(kitchen, "emas")


def test_violations_and_findings_serialise() -> None:
    day = simulate("temperature_drop", seed=1)
    view = _view(day)
    [v] = view.violations(day.now, day.date)
    assert v.to_dict()["rule"] == "hot_holding"
    findings = [f.to_dict() for f in view.findings(day.now, day.date)]
    assert [f["severity"] for f in findings] == ["alert"]
    json.dumps(findings)


def test_epcis_document_of_a_day() -> None:
    day = simulate("normal", seed=1)
    view = _view(day)
    doc = view.epcis_document(day.now, day.date)
    assert doc["type"] == "EPCISDocument"
    assert len(doc["epcisBody"]["eventList"]) == sum(1 for r in day.records if r.kind == "scan")
    assert view.epcis_document(day.now, "2020-01-01")["epcisBody"]["eventList"] == []


def test_prune_forgets_old_scans_but_keeps_stock() -> None:
    day = simulate("normal", seed=3, kitchens=1, schools_per_kitchen=2)
    view = MbgView(day.plan)
    for rec in day.records:
        view.ingest(rec, rec.arrived_at)
    scans, movements = len(view.scans), len(view.movements)
    assert scans and movements
    latest = max(s.arrived_at for s in view.scans)
    assert view.prune(latest, keep_days=1) == 0
    assert view.prune(latest + 3 * 86400, keep_days=1) == scans
    assert view.scans == [] and len(view.movements) == movements
    # A pruned record is no longer remembered, so the store could replay it for an older report.
    first_scan = next(r for r in day.records if r.kind == "scan")
    assert view.ingest(first_scan, first_scan.arrived_at) is True


def test_one_day_of_a_window_reconciles_that_day_alone() -> None:
    sims = simulate_days(8, kitchens=2, schools_per_kitchen=3)
    asked = sims[4]
    whole, alone = MbgView(asked.plan), _view(asked)
    for sim in sims:
        for r in sim.records:
            whole.ingest(r, r.arrived_at)

    def answer(view: MbgView) -> tuple[list[dict[str, object]], list[dict[str, object]], int]:
        before = view.analysed
        rows = ([d.to_dict() for d in view.deliveries(asked.now, asked.date)],
                [f.to_dict() for f in view.findings(asked.now, asked.date) if not f.code.startswith("stock_")])
        return rows[0], rows[1], view.analysed - before

    *alone_rows, alone_cost = answer(alone)
    *window_rows, window_cost = answer(whole)
    scans = sum(1 for r in asked.records if r.kind == "scan")
    assert window_rows == alone_rows and len(window_rows[0]) == len(asked.plan.schools)
    assert window_cost == alone_cost == scans
    # The day's answer is kept: asked again, or after records of another day arrive, nothing is reconciled.
    assert answer(whole)[2] == 0
    later = sims[6].records[0]
    whole.ingest_event(replace(from_record(later, later.arrived_at), record_id="f" * 64))
    assert answer(whole)[2] == 0
    # A record of the day itself makes the day (and only it) be reconciled again.
    own = next(r for r in asked.records if r.kind == "scan")
    whole.ingest_event(replace(from_record(own, own.arrived_at), record_id="e" * 64, seq=10_000))
    assert answer(whole)[2] == scans + 1


def test_a_cook_tapped_the_evening_before_counts_for_the_next_day() -> None:
    day = simulate("normal", seed=4, kitchens=1, schools_per_kitchen=1)
    view = _view(day)
    cook = next(s for s in view.scans if s.event == "cooked")
    [before] = view.container(next(s for s in view.scans if s.tags).tags[0], day.now)
    assert before.first("cooked").record_id == cook.record_id
    # The same batch cooked the evening before: the first cook tap of a batch is the one every day uses.
    evening = local_midnight(day.date, day.plan.tz_offset_s) - 2 * 3600
    early = replace(cook, record_id="d" * 64, seq=0, device_time=evening, arrived_at=evening + 30,
                    cooked_at=evening - 600)
    assert view.ingest_event(early)
    [after] = view.container(before.tag, day.now)
    assert after.first("cooked").record_id == early.record_id and after.date == day.date


def test_prune_counts_what_spans_days_again() -> None:
    sims = simulate_days(3, scenario="clock_year_off", kitchens=1, schools_per_kitchen=2)
    view = MbgView(sims[0].plan)
    for sim in sims:
        for r in sim.records:
            view.ingest(r, r.arrived_at)
    now = sims[-1].now

    def findings_of(v: MbgView) -> list[dict[str, object]]:
        return [f.to_dict() for f in v.findings(now) if not f.code.startswith("stock_")]

    [skewed] = [f for f in view.findings(now) if f.code == "clock_skew"]
    assert skewed.measured and len(skewed.records) > 16  # taps of all three days
    for sim in sims[:2]:
        assert view.prune(max(r.arrived_at for r in sim.records) + 86400, keep_days=1) > 0
        assert findings_of(view) == [f.to_dict() for f in analyze(view.plan, view.scans, now=now).findings]
    [after] = [f for f in view.findings(now) if f.code == "clock_skew"]
    assert after.records != skewed.records and set(after.records) <= {s.record_id for s in view.scans}


def test_a_clock_that_went_back_is_judged_on_the_scans_held() -> None:
    plan = Plan(kitchens=(Kitchen(id="K1"),), schools=(School(id="S1", kitchen="K1", portions=10),))
    day1, day2 = local_midnight("2026-01-12", 7 * 3600), local_midnight("2026-01-14", 7 * 3600)

    def tap(seq: int, made: int, arrived: int) -> ScanEvent:
        return ScanEvent(record_id=f"g{seq}", device="gate", seq=seq, device_time=made, arrived_at=arrived,
                         event="arrived", site="S1", tags=(f"T{seq}",))

    # Day 1: 09:40, then a reboot 5 hours behind (04:41). Day 2: 09:00, then 07:00: back 2 hours.
    taps = [tap(1, day1 + 34800, day1 + 34800), tap(2, day1 + 16860, day1 + 35160),
            tap(3, day2 + 32400, day2 + 32400), tap(4, day2 + 25200, day2 + 32460)]
    view = MbgView(plan)
    for t in taps:
        view.ingest_event(t)
    view.ingest_event(replace(taps[0], record_id="g1-again"))  # an older sequence number is not judged
    now = day2 + 20 * 3600
    [f] = [f for f in view.findings(now) if f.code == "clock_went_back"]
    assert (f.measured, f.records, f.date) == (5 * 3600 - 60, ("g2", "g4"), "2026-01-12")
    assert [g.to_dict() for g in view.findings(now) if g.code == "clock_went_back"] == [
        g.to_dict() for g in analyze(plan, taps, now=now).findings if g.code == "clock_went_back"]
    # Day 1 pruned: the window holds day 2's jump alone, as a hub that refilled it would count.
    assert view.prune(day2 + 86400, keep_days=1) == 3
    [f] = [f for f in view.findings(now) if f.code == "clock_went_back"]
    assert (f.measured, f.records, f.date) == (2 * 3600, ("g4",), "2026-01-14")
    refilled = MbgView(plan)
    for t in taps[2:]:
        refilled.ingest_event(t)
    assert [g.to_dict() for g in view.findings(now)] == [g.to_dict() for g in refilled.findings(now)]


def _scans(midnight: int) -> Callable[..., ScanEvent]:
    """Scans of one day, numbered from 1: each at `midnight + at` by its site's device, arriving 30 s later."""
    seq = iter(range(1, 100))

    def scan(event: str, at: int, site: str, tags: list[str], **kw: object) -> ScanEvent:
        n = next(seq)
        return ScanEvent(record_id=f"r{n}", device=f"dev-{site}", seq=n, device_time=midnight + at,
                         arrived_at=midnight + at + 30, event=event, site=site, tags=tuple(tags), **kw)  # type: ignore[arg-type]
    return scan


def test_a_return_after_midnight_changes_the_day_before_once_it_arrives() -> None:
    plan = Plan(kitchens=(Kitchen(id="K1"),), schools=(School(id="S1", kitchen="K1", portions=20),))
    date = "2026-01-16"
    midnight = local_midnight(date, plan.tz_offset_s)
    scan = _scans(midnight)

    day = [scan("departed", 6 * 3600, "K1", ["T1", "T2"], school="S1"),
           scan("received", 7 * 3600, "S1", ["T1", "T2"]), scan("returned", 13 * 3600, "K1", ["T1"])]
    back = scan("returned", 24 * 3600 + 20 * 60, "K1", ["T2"])
    view = MbgView(plan)
    for s in day:
        view.ingest_event(s)
    late = midnight + 16 * 3600
    assert [r["tag"] for r in view.lost(late, date)] == ["T2"]
    view.ingest_event(back)
    assert view.lost(midnight + 25 * 3600, date) == []
    assert [f.key() for f in view.findings(midnight + 25 * 3600, date)] == \
        [f.key() for f in analyze(plan, [*day, back], now=midnight + 25 * 3600, dates=[date]).findings
         if f.date == date]
    [timeline] = [t for t in view.container("T2", midnight + 25 * 3600) if t.date == date]
    assert timeline.stage == "returned"


def test_a_card_known_as_a_staff_card_only_later_stops_counting_as_a_container() -> None:
    plan = Plan(kitchens=(Kitchen(id="K1"), Kitchen(id="K2")),
                schools=(School(id="S1", kitchen="K1", portions=20), School(id="S4", kitchen="K2", portions=10)))
    date = "2026-01-16"
    midnight = local_midnight(date, plan.tz_offset_s)
    scan = _scans(midnight)

    # S1's gate took K2's staff card for a second ompreng; K2's staff taps with it only the next day.
    friday = [scan("departed", 6 * 3600, "K1", ["T1"], school="S1", staff="5a01"),
              scan("received", 7 * 3600, "S1", ["T1", "5a02"], staff="5a01")]
    saturday = scan("departed", 30 * 3600, "K2", ["U1"], school="S4", staff="5a02")
    view = MbgView(plan)
    for s in friday:
        view.ingest_event(s)
    [s1] = view.deliveries(midnight + 20 * 3600, date, school="S1")
    # The card is no staff card as far as the hub knows yet, but no kitchen sent it: it counts nothing already.
    assert s1.received_portions == 10
    assert {f.key() for f in view.findings(midnight + 20 * 3600, date)} >= {("tag_not_sent", "S1")}
    view.ingest_event(saturday)
    [s1] = view.deliveries(midnight + 31 * 3600, date, school="S1")
    assert (s1.received_portions, s1.statuses) == (10, ("short",))
    keys = {f.key() for f in view.findings(midnight + 31 * 3600, date)}
    assert ("staff_card_tag", "S1") in keys and ("tag_not_sent", "S1") not in keys
    assert [f.to_dict() for f in view.findings(midnight + 31 * 3600, date)] == [
        f.to_dict() for f in analyze(plan, [*friday, saturday], now=midnight + 31 * 3600, dates=[date]).findings
        if f.date == date]
