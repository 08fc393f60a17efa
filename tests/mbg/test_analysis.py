"""Reconciliation details on hand-made scans: statuses against the clock, timers, duplicates, order."""

from __future__ import annotations

from collections.abc import Callable
from typing import get_args

from hub.apianswers import FINDING_CODE
from hub.apidoc import ROUTES
from hub.mbg import FoodSafetyRules, Kitchen, MbgView, Plan, ScanEvent, School, StockMovement, analyze
from hub.mbg.analysis import SEVERITY, Finding, Timed, day_base, settle
from hub.mbg.plan import StaffCard
from tests.documented import problems, strict
from tests.mbg.common import DATE, MIDNIGHT, H, M
from tools.mbg import Speaker, load_words, render

Scan = Callable[..., ScanEvent]
Move = Callable[..., StockMovement]
TAGS = ["T1", "T2"]


def _delivery(scan: Scan, *, cooked: int = 5 * H + 30 * M, arrive: int = 7 * H + 30 * M, serve: int = 8 * H + 30 * M,
              temps: tuple[int, int, int] = (8000, 7000, 6500), returned: bool = True) -> list[ScanEvent]:
    out = [
        scan("cooked", cooked + 60, batch="B1", cooked_at=MIDNIGHT + cooked, count=20, temp_cc=9000),
        scan("packed", cooked + 20 * M, tags=TAGS, parent="TRK1", batch="B1", school="S1"),
        scan("departed", arrive - 30 * M, tags=TAGS, parent="TRK1", school="S1", temp_cc=temps[0],
             checkpoint="kitchen_exit"),
        scan("arrived", arrive, site="S1", tags=TAGS, temp_cc=temps[1], checkpoint="school_gate"),
        scan("received", arrive + 5 * M, site="S1", count=20),
        scan("served", serve, site="S1", count=20, temp_cc=temps[2]),
    ]
    if returned:
        out.append(scan("returned", 13 * H, tags=TAGS, school="S1", checkpoint="return"))
    return out


def _codes(a) -> set[tuple[str, str]]:  # type: ignore[no-untyped-def]
    return {f.key() for f in a.findings}


def test_a_clean_delivery_has_a_full_timeline_and_no_findings(plan: Plan, scan: Scan) -> None:
    a = analyze(plan, _delivery(scan), now=MIDNIGHT + 20 * H)
    d = a.deliveries[("S1", DATE)]
    assert d.statuses == ("on_time",) and d.received_portions == 20 and d.containers_out == 2
    t = a.timeline("T1", DATE)
    assert t is not None and [s.event for s in t.steps] == ["cooked", "packed", "departed", "arrived", "served",
                                                             "returned"]
    assert [s.derived for s in t.steps] == [True, False, False, False, True, False]
    assert t.stage == "returned"
    # S2 got nothing all day: the plan expected it, so it is missing.
    assert _codes(a) == {("missing_delivery", "S2")}


def test_status_follows_the_clock_pending_then_in_transit_then_overdue_then_missing(plan: Plan, scan: Scan) -> None:
    scans = _delivery(scan)[:3]  # cooked, packed, departed
    early = analyze(plan, scans, now=MIDNIGHT + 7 * H)
    assert early.deliveries[("S1", DATE)].statuses == ("in_transit",)
    assert early.deliveries[("S2", DATE)].statuses == ("pending",)
    # Past its due time with the truck still out: overdue (late and on the road), not yet missing.
    overdue = analyze(plan, scans, now=MIDNIGHT + 9 * H + 1)
    assert overdue.deliveries[("S1", DATE)].statuses == ("overdue",)
    assert ("overdue_delivery", "S1") in _codes(overdue) and ("missing_delivery", "S1") not in _codes(overdue)
    assert overdue.deliveries[("S1", DATE)].shortfall == overdue.deliveries[("S1", DATE)].expected
    # Once the containers are due back at the kitchen and none arrived, the delivery is missing.
    late = analyze(plan, scans, now=MIDNIGHT + 15 * H + 1)
    assert late.deliveries[("S1", DATE)].statuses == ("missing",)
    assert ("missing_delivery", "S1") in _codes(late)


def test_danger_zone_counts_time_between_readings(plan: Plan, scan: Scan) -> None:
    # Probe says 45 °C on arrival at 07:30 and the meal is served at 09:45: 2 h 15 min in the zone.
    scans = _delivery(scan, cooked=6 * H, arrive=7 * H + 30 * M, serve=9 * H + 45 * M, temps=(7500, 4500, 4400))
    a = analyze(plan, scans, now=MIDNIGHT + 20 * H)
    rules = {v.rule: v for v in a.violations}
    assert set(rules) == {"danger_zone", "hot_holding"}
    dz = rules["danger_zone"]
    assert dz.measured == 2 * H + 15 * M and dz.limit == 2 * H
    assert dz.at == MIDNIGHT + 9 * H + 30 * M  # two hours after the first reading in the zone
    assert dz.containers == ("T1", "T2") and "WHO" in dz.source


def test_chilled_food_is_not_in_the_danger_zone(plan: Plan, scan: Scan) -> None:
    scans = _delivery(scan, cooked=6 * H + 30 * M, serve=10 * H, temps=(400, 300, 300))
    a = analyze(plan, scans, now=MIDNIGHT + 20 * H)
    assert {v.rule for v in a.violations} == {"hot_holding"}


def test_a_cold_meal_is_flagged_when_the_kitchen_tapped_no_cook_end(plan: Plan, scan: Scan) -> None:
    # Only the cook-to-serve timer needs a cook-end: a 45 °C reading at the gate is a hot-holding violation
    # whether or not the kitchen tapped one, and a day without readings has nothing to report.
    scans = _delivery(scan, temps=(7500, 4500, 7000))[1:]
    a = analyze(plan, scans, now=MIDNIGHT + 20 * H)
    assert {(v.rule, v.measured, v.containers) for v in a.violations} == {("hot_holding", 4500, ("T1", "T2"))}
    plain = [s for s in scans if s.temp_cc is None]
    assert analyze(plan, plain, now=MIDNIGHT + 20 * H).violations == []


def test_an_unserved_meal_keeps_its_timer_open(plan: Plan, scan: Scan) -> None:
    scans = _delivery(scan)[:5]  # not served yet
    before = analyze(plan, scans, now=MIDNIGHT + 9 * H)
    assert before.violations == []
    after = analyze(plan, scans, now=MIDNIGHT + 10 * H)
    [v] = [v for v in after.violations if v.rule == "cook_to_serve"]
    assert v.open and v.measured == 10 * H - (5 * H + 30 * M)


def test_rules_are_configurable(scan: Scan, plan: Plan) -> None:
    strict = Plan(kitchens=plan.kitchens, schools=plan.schools,
                  rules=FoodSafetyRules(cook_to_serve_max_s=2 * H))
    a = analyze(strict, _delivery(scan), now=MIDNIGHT + 20 * H)
    [v] = a.violations
    assert v.rule == "cook_to_serve" and v.limit == 2 * H and v.measured == 3 * H


def test_duplicate_count_taps_count_once(plan: Plan, scan: Scan) -> None:
    scans = [*_delivery(scan), scan("received", 7 * H + 36 * M, site="S1", count=20, device="phone-2")]
    a = analyze(plan, scans, now=MIDNIGHT + 20 * H)
    assert a.deliveries[("S1", DATE)].received_portions == 20
    [dup] = [f for f in a.findings if f.code == "duplicate_scan"]
    assert dup.subject == "S1" and len(dup.records) == 1


def test_two_different_counts_are_two_partial_deliveries(plan: Plan, scan: Scan) -> None:
    scans = _delivery(scan)
    scans[4] = scan("received", 7 * H + 35 * M, site="S1", count=12)
    scans.append(scan("received", 7 * H + 50 * M, site="S1", count=8))
    a = analyze(plan, scans, now=MIDNIGHT + 20 * H)
    assert a.deliveries[("S1", DATE)].received_portions == 20
    assert not [f for f in a.findings if f.code == "duplicate_scan"]


def test_out_of_order_steps_are_reported_per_delivery(plan: Plan, scan: Scan) -> None:
    scans = _delivery(scan)
    scans.append(scan("returned", 7 * H, tags=["T1"], school="S1", checkpoint="return"))  # back before it arrived?
    a = analyze(plan, scans, now=MIDNIGHT + 20 * H)
    [f] = [f for f in a.findings if f.code == "out_of_order"]
    assert f.subject == "S1" and f.containers == ("T1",) and "returned before" in f.detail


def test_explicit_lost_tap_replaces_unreturned(plan: Plan, scan: Scan) -> None:
    scans = [*_delivery(scan, returned=False), scan("returned", 13 * H, tags=["T2"], school="S1"),
             scan("lost", 16 * H, tags=["T1"], school="S1")]
    a = analyze(plan, scans, now=MIDNIGHT + 20 * H)
    lost = {f.code: f.containers for f in a.findings if f.code.startswith("container_")}
    assert lost == {"container_lost": ("T1",)}
    timeline = a.timeline("T1", DATE)
    assert timeline is not None and timeline.stage == "lost"


def test_unreturned_waits_for_the_kitchens_return_time(plan: Plan, scan: Scan) -> None:
    scans = _delivery(scan, returned=False)
    assert not [f for f in analyze(plan, scans, now=MIDNIGHT + 14 * H).findings if f.code == "container_unreturned"]
    [f] = [f for f in analyze(plan, scans, now=MIDNIGHT + 16 * H).findings if f.code == "container_unreturned"]
    assert f.containers == ("T1", "T2") and f.measured == 2


def test_scans_at_unknown_sites_are_reported(plan: Plan, scan: Scan) -> None:
    a = analyze(plan, [scan("arrived", 8 * H, site="NOWHERE", tags=["X"])], now=MIDNIGHT + 10 * H)
    assert ("unknown_site", "NOWHERE") in _codes(a)


def test_order_of_input_does_not_change_the_answer(plan: Plan, scan: Scan) -> None:
    scans = _delivery(scan, temps=(7500, 4500, 4400), serve=10 * H)
    a = analyze(plan, scans, now=MIDNIGHT + 20 * H)
    b = analyze(plan, list(reversed(scans)), now=MIDNIGHT + 20 * H)
    assert a.findings == b.findings and a.deliveries == b.deliveries


def test_containers_that_part_ways_are_each_judged_on_their_own_taps(plan: Plan, scan: Scan) -> None:
    # Three containers leave together; T3 comes in alone after the meal was served, cold, and is not brought
    # back. Containers that share every tap are reconciled together: T3 must still get its own readings,
    # serving, order and return.
    tags = ["T1", "T2", "T3"]
    scans = [
        scan("cooked", 5 * H + 31 * M, batch="B1", cooked_at=MIDNIGHT + 5 * H + 30 * M, count=30, temp_cc=9000),
        scan("packed", 5 * H + 50 * M, tags=tags, parent="TRK1", batch="B1", school="S1"),
        scan("departed", 7 * H, tags=tags, parent="TRK1", school="S1", temp_cc=8000, checkpoint="kitchen_exit"),
        scan("arrived", 7 * H + 30 * M, site="S1", tags=["T1", "T2"], temp_cc=7000, checkpoint="school_gate"),
        scan("served", 8 * H + 30 * M, site="S1", count=20, temp_cc=6500),
        scan("arrived", 9 * H, site="S1", tags=["T3"], temp_cc=4500, checkpoint="school_gate"),
        scan("returned", 13 * H, tags=["T1", "T2"], school="S1", checkpoint="return"),
        scan("returned", 6 * H, tags=["T2"], school="S1", checkpoint="return", device="dev-K2"),
    ]
    a = analyze(plan, scans, now=MIDNIGHT + 20 * H)
    assert {v.rule: v.containers for v in a.violations} == {"cook_to_serve": ("T3",), "danger_zone": ("T3",),
                                                            "hot_holding": ("T3",)}
    by_code = {f.code: f for f in a.findings}
    assert by_code["container_unreturned"].containers == ("T3",)
    assert by_code["out_of_order"].containers == ("T2",)
    served = {tag: [s.derived for s in a.timelines_of(tag)[0].steps if s.event == "served"] for tag in tags}
    assert served == {"T1": [True], "T2": [True], "T3": []}


def test_a_container_back_at_the_kitchen_with_no_tap_at_school_is_a_finding(plan: Plan, scan: Scan) -> None:
    # T1-T4 leave for S1. T2's tag does not read at the gate but is tapped on return; T3 is tapped in at S2, the
    # wrong school; T4 is never seen again.
    tags = ["T1", "T2", "T3", "T4"]
    scans = [scan("departed", 7 * H, tags=tags, school="S1", checkpoint="kitchen_exit"),
             scan("arrived", 7 * H + 30 * M, site="S1", tags=["T1"], checkpoint="school_gate"),
             scan("arrived", 7 * H + 40 * M, site="S2", tags=["T3"], checkpoint="school_gate"),
             scan("returned", 13 * H, tags=["T1", "T2", "T3"], checkpoint="return")]
    a = analyze(plan, scans, now=MIDNIGHT + 20 * H)
    found = {f.key(): f for f in a.findings}
    back = found[("returned_without_arrival", "S1")]
    # Of the three containers S1 did not tap in, T2 came back: the count stays what the taps prove.
    assert (back.containers, back.measured, back.limit, back.severity) == (("T2",), 1, 3, "warning")
    assert back.records == ("r4",) and "1 of the 3 containers" in back.detail
    d = a.deliveries[("S1", DATE)]
    assert (d.containers_in, d.containers_out, d.statuses) == (1, 4, ("short",))
    assert ("returned_without_arrival", "S2") not in found
    # Once the gate's tap of T2 arrives, there is nothing left to say.
    late = scan("arrived", 7 * H + 31 * M, site="S1", tags=["T2"], checkpoint="school_gate")
    again = analyze(plan, [*scans, late], now=MIDNIGHT + 20 * H)
    assert "returned_without_arrival" not in {f.code for f in again.findings}


def _said(f: Finding, lang: str) -> str:
    """A finding as `jejak mbg violations` prints it, in `lang`."""
    say = Speaker(lang=lang, names={"tz_offset_s": 7 * 3600, "schools": {"S1": {"name": "SDN 1"}}},
                  words=load_words(lang))
    return render("violations", {"date": DATE, "violations": [], "findings": [f.to_dict()]}, say, {"kitchens": []})


def test_a_container_with_no_temperature_reading_is_a_finding_in_both_languages(plan: Plan, scan: Scan,
                                                                                 move: Move) -> None:
    # T1-T3 leave for S1 with no probe reading; the gate's probe reads T1 and T2 at 71 °C, T3 comes in on a tap
    # of its own with none. T9 is an empty only tapped back, and the morning's rice is stock: neither is judged.
    scans = [scan("departed", 7 * H, tags=["T1", "T2", "T3"], school="S1", checkpoint="kitchen_exit"),
             scan("arrived", 7 * H + 30 * M, site="S1", tags=["T1", "T2"], temp_cc=7100, checkpoint="school_gate"),
             scan("arrived", 7 * H + 32 * M, site="S1", tags=["T3"], checkpoint="school_gate"),
             scan("returned", 8 * H, tags=["T9"], school="S2", checkpoint="return")]
    a = analyze(plan, scans, now=MIDNIGHT + 20 * H)
    [f] = [f for f in a.findings if f.code == "no_temperature"]
    assert (f.code, f.severity, f.subject, f.date, f.ref) == (
        "no_temperature", "warning", "S1", DATE, f"no_temperature/S1/{DATE}")
    assert (f.containers, f.measured, f.limit, f.records) == (("T3",), 1, 3, ("r1", "r3"))
    assert "no temperature reading for 1 of the 3 containers" in f.detail
    assert a.violations == [], "a missing reading is no rule broken"
    view = MbgView(plan)
    for s in scans:
        view.ingest_event(s)
    view.ingest_event(move("receive", 50_000, 4 * H))
    assert [x.key() for x in view.findings(MIDNIGHT + 20 * H, DATE) if x.code == "no_temperature"] == [
        ("no_temperature", "S1")]
    ind, en = _said(f, "id"), _said(f, "en")
    assert "suhu tidak tercatat" in ind and "suhu tidak tercatat untuk 1 dari 3 ompreng" in ind, ind
    assert "tidak diketahui apakah makanannya tetap panas" in ind and "periksa" in ind.split("ompreng: ")[1]
    assert "temperature not recorded" in en and "no temperature reading for 1 of the 3 containers" in en, en
    assert "check" in en and "SDN 1 (S1)" in en
    # T3's own reading at the gate, or a count tap's probe at S1 from the arrival on, is a reading of its meals.
    for late in (scan("received", 7 * H + 33 * M, site="S1", tags=["T3"], temp_cc=6900, checkpoint="school_gate"),
                 scan("served", 8 * H, site="S1", count=30, temp_cc=6500)):
        assert "no_temperature" not in {x.code for x in analyze(plan, [*scans, late], now=MIDNIGHT + 20 * H).findings}


def test_a_delivery_never_measured_says_so_for_all_its_containers(plan: Plan, scan: Scan) -> None:
    # Neither the kitchen nor the gate has a probe: all of S1's containers, said as all, not '2 of the 2'.
    scans = [scan("departed", 7 * H, tags=["T1", "T2"], school="S1", checkpoint="kitchen_exit"),
             scan("arrived", 7 * H + 30 * M, site="S1", tags=["T1", "T2"], checkpoint="school_gate")]
    [f] = [f for f in analyze(plan, scans, now=MIDNIGHT + 20 * H).findings if f.code == "no_temperature"]
    assert (f.containers, f.measured, f.limit) == (("T1", "T2"), 2, 2)
    assert "suhu tidak tercatat untuk semua 2 ompreng" in _said(f, "id")
    assert "no temperature reading for any of the 2 containers" in _said(f, "en")
    [one] = [x for x in analyze(plan, [*scans[:1], scan("departed", 7 * H, tags=["T5"], school="S2")],
                                now=MIDNIGHT + 20 * H).findings if x.code == "no_temperature" and x.subject == "S2"]
    assert "no temperature reading for the 1 container:" in _said(one, "en")
    # The batch's cook tap read the pot at 92 °C: the meals were measured, if only at cook-end.
    cooked = [scan("cooked", 6 * H, batch="B1", cooked_at=MIDNIGHT + 6 * H, temp_cc=9200),
              scan("packed", 6 * H + 20 * M, tags=["T1", "T2"], batch="B1", school="S1")]
    assert "no_temperature" not in {x.code for x in analyze(plan, [*cooked, *scans], now=MIDNIGHT + 20 * H).findings}
    # Containers packed and not gone yet carry no meals out: nothing is said of them until they leave.
    assert "no_temperature" not in {x.code for x in analyze(plan, cooked[1:], now=MIDNIGHT + 7 * H).findings}


def test_a_kitchen_with_no_probe_is_not_asked_for_temperatures(scan: Scan) -> None:
    scans = [scan("departed", 7 * H, tags=["T1"], school="S1", checkpoint="kitchen_exit"),
             scan("departed", 7 * H, tags=["T2"], school="S2", checkpoint="kitchen_exit", site="K2"),
             scan("arrived", 7 * H + 30 * M, site="S3", tags=["T3"], checkpoint="school_gate")]
    plan = Plan(kitchens=(Kitchen(id="K1", temperature_required=False), Kitchen(id="K2")),
                schools=(School(id="S1", kitchen="K1", portions=10), School(id="S2", kitchen="K2", portions=10)))
    # K1 has no probe; K2 does and its delivery is judged; S3 is a school the plan does not list.
    assert [f.subject for f in analyze(plan, scans, now=MIDNIGHT + 20 * H).findings
            if f.code == "no_temperature"] == ["S2"]


def test_a_device_clock_that_goes_back_along_its_chain_is_flagged(plan: Plan, scan: Scan) -> None:
    # S1's gate taps T1 at 09:40, is killed, boots 5 hours behind and taps T2 "at 04:41" (it reached the hub
    # at 09:46): by arrival alone that is a late sync; along the device's chain its clock went back.
    first = scan("arrived", 9 * H + 40 * M, site="S1", tags=["T1"], device="gate")
    behind = scan("arrived", 4 * H + 41 * M, site="S1", tags=["T2"], device="gate", lag=5 * H + 5 * M)
    after = scan("received", 4 * H + 42 * M, site="S1", count=20, device="gate", lag=5 * H + 5 * M)
    # Another device's taps a few minutes out of order (within max_skew_s) are no clock going back.
    other = [scan("departed", 7 * H, tags=["T1", "T2"], school="S1"),
             scan("packed", 6 * H + 50 * M, tags=["T1", "T2"], school="S1")]
    a = analyze(plan, [after, *other, behind, first], now=MIDNIGHT + 20 * H)
    [f] = [f for f in a.findings if f.code == "clock_went_back"]
    assert (f.subject, f.measured, f.limit, f.records) == ("gate", 4 * H + 59 * M, 15 * M, (behind.record_id,))
    assert f.severity == "warning" and f.date == DATE and "went back by up to 17940 s" in f.detail
    # The times stay the device's: the late sync is still reported.
    assert ("late_sync", "gate") in _codes(a)


def test_the_api_schema_lists_every_finding_code() -> None:
    assert sorted(get_args(FINDING_CODE)) == sorted(SEVERITY)


def test_english_details_say_one_container_and_two_containers(plan: Plan, scan: Scan) -> None:
    def detail(code: str, scans: list[ScanEvent]) -> str:
        [f] = [f for f in analyze(plan, scans, now=MIDNIGHT + 20 * H).findings if f.code == code]
        return f.detail

    back_one = scan("returned", 13 * H, tags=["T2"], school="S1", checkpoint="return")
    assert detail("container_unreturned", [*_delivery(scan, returned=False), back_one]) == \
        "1 container not returned to the kitchen"
    assert detail("container_unreturned", _delivery(scan, returned=False)) == "2 containers not returned to the kitchen"
    lost = [*_delivery(scan, returned=False), back_one, scan("lost", 16 * H, tags=["T1"], school="S1")]
    assert detail("container_lost", lost) == "1 container reported lost"

    def misrouted(tags: list[str]) -> str:
        return detail("misrouted", [scan("departed", 7 * H, tags=tags, school="S1", checkpoint="kitchen_exit"),
                                    scan("arrived", 7 * H + 30 * M, site="S2", tags=tags, checkpoint="school_gate")])

    assert misrouted(["T1"]) == "1 container bound for S1 (SDN 1) was tapped in here"
    assert misrouted(["T1", "T2"]) == "2 containers bound for S1 (SDN 1) were tapped in here"

    nowhere = [scan("arrived", 8 * H, site="NOWHERE", tags=["X"]), scan("arrived", 8 * H + M, site="NOWHERE", tags=["Y"])]
    assert detail("unknown_site", nowhere[:1]) == "1 scan at or for a site the plan does not list"
    assert detail("unknown_site", nowhere) == "2 scans at or for a site the plan does not list"

    late = [scan("arrived", 8 * H, site="S1", tags=["T1"], device="gate", lag=H),
            scan("arrived", 8 * H + M, site="S1", tags=["T2"], device="gate", lag=H)]
    assert detail("late_sync", late[:1]).startswith("1 record arrived up to 3600 s after it was made;")
    assert detail("late_sync", late).startswith("2 records arrived up to 3600 s after they were made;")

    twice = [*_delivery(scan), scan("received", 7 * H + 36 * M, site="S1", count=20, device="phone-2")]
    assert "tapped again for 1 count tap; counted once" in detail("duplicate_scan", twice)
    steps = [*_delivery(scan), scan("returned", 7 * H, tags=["T1"], school="S1", checkpoint="return")]
    assert detail("out_of_order", steps).startswith("1 container step out of order:")


def test_a_late_delivery_tapped_in_as_received_says_when_it_came(plan: Plan, scan: Scan) -> None:
    # Many gates tap only `received`: the delivery's first tap in is its arrival, in the finding as in the row.
    scans = [scan("departed", 8 * H + 50 * M, tags=TAGS, school="S1"),
             scan("received", 9 * H + 25 * M, site="S1", tags=TAGS)]
    a = analyze(plan, scans, now=MIDNIGHT + 10 * H)
    [late] = [f for f in a.findings if f.code == "late_delivery"]
    assert (late.detail, late.measured) == ("arrived 09:25, due 09:00", 25 * M)
    assert late.records == (scans[1].record_id,)


def test_meals_that_reached_school_too_late_stay_a_violation_once_their_ompreng_are_back(plan: Plan,
                                                                                           scan: Scan) -> None:
    # Many schools tap nothing when they serve. Meals cooked 02:30 and tapped in at 09:25 were served no earlier
    # than 09:25: 6 h 55 min after cook-end at least, whenever the empty ompreng come back.
    scans = [s for s in _delivery(scan, cooked=2 * H + 30 * M, arrive=9 * H + 25 * M) if s.event != "served"]
    for now in (12 * H, 20 * H):  # before the return (the timer runs) and after it
        [v] = [v for v in analyze(plan, scans, now=MIDNIGHT + now).violations if v.rule == "cook_to_serve"]
        assert v.containers == ("T1", "T2")
        if now == 20 * H:
            assert (v.measured, v.open, v.at) == (6 * H + 55 * M, False, MIDNIGHT + 6 * H + 30 * M)
            [f] = [f for f in analyze(plan, scans, now=MIDNIGHT + now).findings if f.code == "cook_to_serve"]
            assert "arrival" in f.detail and "not tapped served" in f.detail


def test_a_container_back_after_midnight_is_back(plan: Plan, scan: Scan) -> None:
    # Days are local days: T2 came back at 00:20 the next day, after the empties of the afternoon. It is back,
    # not lost; T1, which never came back, is not. A return after the tag went out again the next day is of
    # the new trip.
    scans = [s for s in _delivery(scan) if s.event != "returned"]
    scans += [scan("returned", 13 * H, tags=["T1"], checkpoint="return"),
              scan("returned", 24 * H + 20 * M, tags=["T2"], checkpoint="return")]
    a = analyze(plan, scans, now=MIDNIGHT + 30 * H)
    assert ("container_unreturned", "S1") not in _codes(a)
    t2 = a.timeline("T2", DATE)
    assert t2 is not None and t2.stage == "returned" and t2.steps[-1].derived
    assert t2.steps[-1].time == MIDNIGHT + 24 * H + 20 * M
    again = [s for s in _delivery(scan) if s.event != "returned"]
    again += [scan("returned", 13 * H, tags=["T1"], checkpoint="return"),
              scan("packed", 24 * H + 5 * H, tags=["T2"], school="S1"),
              scan("returned", 24 * H + 13 * H, tags=["T2"], checkpoint="return")]
    [lost] = [f for f in analyze(plan, again, now=MIDNIGHT + 40 * H).findings if f.code == "container_unreturned"]
    assert (lost.date, lost.containers) == (DATE, ("T2",))


def test_a_staff_card_read_as_a_container_counts_nothing(plan: Plan, scan: Scan) -> None:
    # A reader that does not know a staff card (another kitchen's, a new one) takes it for an ompreng. T2 fell
    # off the truck; the card tapped at S1's gate must not stand in for it, nor leave the kitchen as one.
    scans = [scan("departed", 6 * H, tags=["T1", "T2", "5a000002"], school="S1", staff="5a000001"),
             scan("received", 7 * H, site="S1", tags=["T1", "5a000002"], staff="5a000001"),
             scan("received", 7 * H + M, site="S1", tags=["5a000002"], staff="5a000001"),
             scan("returned", 13 * H, tags=["T1"], staff="5a000002")]
    a = analyze(plan, scans, now=MIDNIGHT + 20 * H)
    d = a.deliveries[("S1", DATE)]
    assert (d.statuses, d.received_portions, d.containers_in, d.containers_out) == (("short",), 10, 1, 2)
    found = {f.key(): f for f in a.findings}
    assert found[("container_unreturned", "S1")].containers == ("T2",)
    # Its three taps are of S1's delivery (the departure names S1).
    card = found[("staff_card_tag", "S1")]
    assert (card.measured, card.records) == (3, tuple(s.record_id for s in scans[:3]))
    assert a.timeline("5a000002", DATE) is None


def test_an_unserved_meal_timer_stops_when_the_day_is_over(plan: Plan, scan: Scan) -> None:
    # No serving tapped, no ompreng back: the timer runs until the empties are due back (15:00), and what was not
    # served by then was not served that day. The figures stop growing and the day's answer is final.
    scans = [scan("cooked", 2 * H + 30 * M, batch="B1", cooked_at=MIDNIGHT + 2 * H + 30 * M),
             scan("packed", 3 * H, tags=["T1", "T2"], batch="B1", school="S1"),
             scan("received", 9 * H + 25 * M, site="S1", tags=["T1"], temp_cc=4500)]
    during = analyze(plan, scans, now=MIDNIGHT + 12 * H)
    assert {(v.rule, v.open, v.measured) for v in during.violations} == {
        ("cook_to_serve", True, 9 * H + 30 * M), ("danger_zone", True, 2 * H + 35 * M), ("hot_holding", True, 4500)}
    for now in (16 * H, 40 * H):
        after = analyze(plan, scans, now=MIDNIGHT + now)
        # Frozen at the day's end, so no longer open: still the meals not served (their part), said without
        # "(still open)".
        assert {(v.rule, v.open, v.part, v.measured) for v in after.violations} == {
            ("cook_to_serve", False, "not_served", 12 * H + 30 * M),
            ("danger_zone", False, "not_served", 5 * H + 35 * M), ("hot_holding", False, "not_served", 4500)}
        assert not [f for f in after.findings if "still open" in f.detail]
        settled = settle(day_base(plan, DATE, [Timed(s, plan) for s in scans], lambda batch: None), MIDNIGHT + now)
        assert settled.valid_until >= 2**62


def test_a_school_closed_that_day_is_not_missing_while_an_open_one_is(scan: Scan) -> None:
    # S2's exam day: no delivery expected. S1 gets none either: that one is missing.
    plan = Plan(kitchens=(Kitchen(id="K1"),),
                schools=(School(id="S1", kitchen="K1", portions=20),
                         School(id="S2", kitchen="K1", portions=10, closed_dates=(DATE,))))
    a = analyze(plan, [], now=MIDNIGHT + 20 * H, dates=[DATE])
    assert {s: d.statuses for (s, _), d in a.deliveries.items()} == {"S1": ("missing",)}
    view = MbgView(plan)
    view.ingest_event(scan("departed", 6 * H, tags=["T1"], school="S1"))
    assert {d.school: d.statuses for d in view.deliveries(MIDNIGHT + 20 * H, DATE)} == {"S1": ("missing",)}
    # T1 left for S1 with no temperature reading, which S1's kitchen is expected to take.
    assert [f.key() for f in view.findings(MIDNIGHT + 20 * H, DATE)] == [
        ("missing_delivery", "S1"), ("container_unreturned", "S1"), ("no_temperature", "S1")]


def test_a_gate_clock_minutes_fast_does_not_make_an_on_time_delivery_late(plan: Plan, scan: Scan) -> None:
    # The truck came at 08:55 and the gate's tap reached the hub a minute later, but the gate's clock is 10
    # minutes fast: its tap says 09:05.
    scans = [scan("departed", 8 * H, tags=["T1", "T2"], school="S1"),
             scan("received", 9 * H + 5 * M, site="S1", tags=["T1", "T2"], lag=-9 * M)]
    d = analyze(plan, scans, now=MIDNIGHT + 10 * H).deliveries[("S1", DATE)]
    assert (d.statuses, d.received_at, d.late_s) == (("on_time",), MIDNIGHT + 8 * H + 56 * M, 0)


def test_meals_served_late_and_meals_never_served_are_counted_apart(plan: Plan, scan: Scan) -> None:
    # Four ompreng reach S1 at 07:30. T1 and T2 are served at 10:00, 4 h 30 min after cook-end; T3 and T4 are
    # never served. The kitchen head must read 2 served late and 2 not served, not 4 'not served yet'.
    tags = ["T1", "T2", "T3", "T4"]
    scans = [
        scan("cooked", 5 * H + 31 * M, batch="B1", cooked_at=MIDNIGHT + 5 * H + 30 * M, count=40),
        scan("packed", 6 * H, tags=tags, parent="TRK1", batch="B1", school="S1"),
        scan("departed", 7 * H, tags=tags, parent="TRK1", school="S1", checkpoint="kitchen_exit"),
        scan("arrived", 7 * H + 30 * M, site="S1", tags=tags, checkpoint="school_gate"),
        scan("served", 10 * H, site="S1", tags=["T1", "T2"]),
    ]
    for now in (12 * H, 20 * H):  # the unserved meals' timer running, then stopped at the day's end
        a = analyze(plan, scans, now=MIDNIGHT + now)
        cook = sorted(((v.part, v.containers, v.measured, v.open) for v in a.violations if v.rule == "cook_to_serve"),
                      key=lambda v: v[0] or "")
        unserved = min(now, 15 * H) - (5 * H + 30 * M)
        # Open while the day runs; frozen, and no longer open, once it is over.
        assert cook == [(None, ("T1", "T2"), 4 * H + 30 * M, False),
                        ("not_served", ("T3", "T4"), unserved, now < 15 * H)]
        found = {f.part: f for f in a.findings if f.code == "cook_to_serve"}
        assert "of 2 containers:" in found[None].detail and "still open" not in found[None].detail
        assert "of 2 containers not served yet" in found["not_served"].detail
        assert len({f.ref for f in found.values()}) == 2  # two alerts, not one hiding the other


def test_a_staff_card_off_the_kitchens_roster_is_a_finding(plan: Plan, scan: Scan) -> None:
    # K1 lists its cook and S1's gate keeper; K2 lists its own cook. K2's cook lends his card to K1's driver, who
    # taps S1's containers in with it twice; a new driver's card, on no roster, taps the serving. Card uids are
    # compared without case.
    rostered = Plan(kitchens=(Kitchen(id="K1", staff=("5a000001", "5A000011")), Kitchen(id="K2", staff=("5a000002",))),
                    schools=plan.schools)
    scans = [*_delivery(scan)[:2],
             scan("departed", 7 * H, tags=TAGS, school="S1", staff="5A000001"),
             scan("arrived", 7 * H + 30 * M, site="S1", tags=TAGS, staff="5a000002"),
             scan("received", 7 * H + 35 * M, site="S1", count=20, staff="5a000002"),
             scan("served", 8 * H, site="S1", count=20, staff="5a0000ff"),
             scan("returned", 13 * H, tags=TAGS, staff="5a000011")]
    a = analyze(rostered, scans, now=MIDNIGHT + 20 * H)
    off = {f.other_kitchen: f for f in a.findings if f.code == "staff_not_on_roster"}
    assert set(off) == {"K2", None}
    lent, unknown = off["K2"], off[None]
    assert (lent.subject, lent.date, lent.measured, lent.severity) == ("S1", DATE, 2, "warning")
    assert lent.records == (scans[3].record_id, scans[4].record_id)
    assert lent.detail == "2 taps by 1 staff card of K2's staff, for the deliveries of K1, whose roster does not list it"
    assert (unknown.measured, unknown.records) == (1, (scans[5].record_id,))
    assert "that no kitchen's roster lists" in unknown.detail
    assert lent.ref != unknown.ref
    # A finding names no card: staff cards are personal data, and findings are public (its records say which).
    assert not any("5a0000" in str(v).lower() for f in off.values() for v in f.to_dict().values())
    # The deliveries are counted as before: the finding is about who tapped, not what.
    assert a.deliveries == analyze(plan, scans, now=MIDNIGHT + 20 * H).deliveries
    # Without a roster no card is judged; a kitchen without one judges none of the cards tapping for it.
    assert not [f for f in analyze(plan, scans, now=MIDNIGHT + 20 * H).findings if f.code == "staff_not_on_roster"]
    k2_only = Plan(kitchens=(Kitchen(id="K1"), Kitchen(id="K2", staff=("5a000002",))), schools=plan.schools)
    assert not [f for f in analyze(k2_only, scans, now=MIDNIGHT + 20 * H).findings if f.code == "staff_not_on_roster"]


def test_a_card_taken_off_the_roster_is_judged_at_each_taps_time(plan: Plan, scan: Scan) -> None:
    # ST9 was on K1's roster until 10:00: its three taps out at 06:00 were right, its three returns at 13:00 were
    # not. The returns are a finding that says the card's entry ended at 10:00 (not that no roster lists it, whose
    # words would tell the head to add back a card taken off on purpose); the morning's taps are none.
    st1, st9 = "5a000001", "5a000009"
    until = MIDNIGHT + 10 * H
    rostered = Plan(kitchens=(Kitchen(id="K1", staff=(st1, StaffCard(card=st9, valid_until=until))),),
                    schools=plan.schools)
    three = [*TAGS, "T3"]
    scans = [*(scan("departed", 6 * H + i * M, tags=[tag], school="S1", staff=st9) for i, tag in enumerate(three)),
             scan("arrived", 7 * H, site="S1", tags=three, staff=st1),
             *(scan("returned", 13 * H + i * M, tags=[tag], staff=st9.upper()) for i, tag in enumerate(three))]
    a = analyze(rostered, scans, now=MIDNIGHT + 20 * H)
    [off] = [f for f in a.findings if f.code == "staff_not_on_roster"]
    assert (off.subject, off.date, off.measured, off.part, off.limit, off.other_kitchen) == ("K1", DATE, 3, "until",
                                                                                            until, None)
    assert off.records == tuple(s.record_id for s in scans[4:])
    assert off.detail == ("3 taps after 2026-01-12T10:00, for the deliveries of K1, by 1 staff card its roster lists "
                          "only until then")
    assert "5a0000" not in str(off.to_dict()).lower()  # staff cards are personal data: the records say which
    for lang, says in (("en", "3 taps after 10:00 by staff on the roster of this delivery's kitchen only until then"),
                       ("id", "3 tap setelah pukul 10:00 oleh petugas yang ada di daftar petugas dapur pengiriman ini "
                              "hanya sampai saat itu")):
        said = Speaker(lang=lang, names={"tz_offset_s": 7 * H}, words=load_words(lang)).finding(off.to_dict(), {})
        assert said == says and "tambahkan" not in said and "add" not in said
    # The taps count as before: the finding is about who tapped.
    assert a.deliveries == analyze(plan, scans, now=MIDNIGHT + 20 * H).deliveries
    # Kept on the roster all day (as the plan the hub read at 06:00 said), no tap is a finding.
    always = Plan(kitchens=(Kitchen(id="K1", staff=(st1, st9)),), schools=plan.schools)
    assert not [f for f in analyze(always, scans, now=MIDNIGHT + 20 * H).findings if f.code == "staff_not_on_roster"]
    # Taken off at 14:00 instead, every tap of the day was right.
    later = Plan(kitchens=(Kitchen(id="K1", staff=(st1, StaffCard(card=st9, valid_until=MIDNIGHT + 14 * H))),),
                 schools=plan.schools)
    assert not [f for f in analyze(later, scans, now=MIDNIGHT + 20 * H).findings if f.code == "staff_not_on_roster"]
    # A card taken off the roster is still a staff card: read as a container at 14:00, it is none.
    read = [*scans, scan("returned", 14 * H, tags=["T1", st9], staff=st1)]
    b = analyze(rostered, read, now=MIDNIGHT + 20 * H)
    assert ("staff_card_tag", "K1") in _codes(b) and not b.timelines_of(st9) and b.timelines_of("T1")


def test_a_card_on_a_roster_from_a_time_and_a_card_moved_between_kitchens(plan: Plan, scan: Scan) -> None:
    # A new cook is on K1's roster from 09:00: his 08:00 tap is a finding saying so. ST9 moved from K2 to K1 at
    # 10:00: its 12:00 tap at K2's school is K2's card taken off K2's roster; its 11:00 tap at K1 is right. A card K2
    # had until 10:00 and no roster has since, tapping at K1, is a card of K2's staff, not one no roster lists.
    new, st9, old = "5a000010", "5a000009", "5a000020"
    k1_from, moved = MIDNIGHT + 9 * H, MIDNIGHT + 10 * H
    schools = (*plan.schools, School(id="S3", kitchen="K2", portions=10, deadline_s=9 * H))
    rostered = Plan(kitchens=(Kitchen(id="K1", staff=(StaffCard(card=new, valid_from=k1_from),
                                                      StaffCard(card=st9, valid_from=moved))),
                              Kitchen(id="K2", staff=(StaffCard(card=st9, valid_until=moved),
                                                      StaffCard(card=old, valid_until=moved)))),
                    schools=schools)
    scans = [scan("departed", 8 * H, tags=TAGS, school="S1", staff=new),
             scan("departed", 9 * H, tags=["T3"], school="S1", staff=new),
             scan("departed", 11 * H, tags=["T4"], school="S2", staff=st9),
             scan("arrived", 12 * H, site="S3", tags=["T9"], staff=st9),
             scan("returned", 13 * H, tags=TAGS, staff=old)]
    found = {(f.subject, f.part, f.other_kitchen): f for f in analyze(rostered, scans, now=MIDNIGHT + 20 * H).findings
             if f.code == "staff_not_on_roster"}
    assert set(found) == {("K1", "from", None), ("S3", "until", None), ("K1", None, "K2")}
    early, gone, lent = found[("K1", "from", None)], found[("S3", "until", None)], found[("K1", None, "K2")]
    assert (early.measured, early.limit, early.records) == (1, k1_from, (scans[0].record_id,))
    assert early.detail == ("1 tap before 2026-01-12T09:00, for the deliveries of K1, by 1 staff card its roster "
                            "lists only from then")
    assert (gone.measured, gone.limit, gone.records) == (1, moved, (scans[3].record_id,))
    assert (lent.measured, lent.limit, lent.records) == (1, None, (scans[4].record_id,))
    en = Speaker(lang="en", names={"tz_offset_s": 7 * H}, words=load_words("en"))
    assert en.finding(early.to_dict(), {}) == ("1 tap before 09:00 by staff on the roster of this delivery's kitchen "
                                               "only from then")


def test_a_card_back_on_a_roster_for_a_second_while_is_judged_by_the_while_each_tap_falls_in(
        plan: Plan, scan: Scan) -> None:
    # ST9 is on K1's roster from 07:00 to 10:00, then again from 12:00 (lent to another kitchen in between). Its taps
    # at 08:00 and 13:00 are right; its tap at 11:00 is a finding that its entry ended at 10:00, and its tap at 06:00
    # one that its first entry begins at 07:00: never "no roster lists it".
    st9 = "5a000009"
    first, second = (MIDNIGHT + 7 * H, MIDNIGHT + 10 * H), MIDNIGHT + 12 * H
    rostered = Plan(kitchens=(Kitchen(id="K1", staff=(StaffCard(card=st9, valid_from=first[0], valid_until=first[1]),
                                                      StaffCard(card=st9, valid_from=second))),),
                    schools=plan.schools)
    scans = [scan("departed", 6 * H, tags=["T1"], school="S1", staff=st9),
             scan("departed", 8 * H, tags=["T2"], school="S1", staff=st9),
             scan("returned", 11 * H, tags=["T1"], staff=st9),
             scan("returned", 13 * H, tags=["T2"], staff=st9)]
    found = {f.part: f for f in analyze(rostered, scans, now=MIDNIGHT + 20 * H).findings
             if f.code == "staff_not_on_roster"}
    assert set(found) == {"from", "until"}
    assert (found["from"].limit, found["from"].records) == (first[0], (scans[0].record_id,))
    assert (found["until"].limit, found["until"].records) == (first[1], (scans[2].record_id,))
    assert all(f.other_kitchen is None for f in found.values())


def test_meals_served_after_the_danger_zone_and_meals_still_in_it_are_counted_apart(plan: Plan, scan: Scan) -> None:
    # T1, T2 and T3 reach S1 at 07:30 at 45 °C, in the danger zone and below hot holding. T1 is served at 10:00,
    # 2 h 30 min later: a food-safety incident that happened. T2 and T3 are not served yet at 11:00, 3 h 30 min in
    # the zone: meals to act on now. A kitchen head must read one of each, not 3 containers of either.
    tags = ["T1", "T2", "T3"]
    scans = [
        scan("cooked", 6 * H + 1 * M, batch="B1", cooked_at=MIDNIGHT + 6 * H, count=30),
        scan("packed", 6 * H + 20 * M, tags=tags, parent="TRK1", batch="B1", school="S1"),
        scan("departed", 7 * H, tags=tags, parent="TRK1", school="S1", checkpoint="kitchen_exit"),
        scan("arrived", 7 * H + 30 * M, site="S1", tags=tags, temp_cc=4500, checkpoint="school_gate"),
        scan("served", 10 * H, site="S1", tags=["T1"]),
    ]
    a = analyze(plan, scans, now=MIDNIGHT + 11 * H)
    violations = {(v.rule, v.part): (v.containers, v.measured, v.open) for v in a.violations
                  if v.rule in ("danger_zone", "hot_holding")}
    assert violations == {("danger_zone", "served"): (("T1",), 2 * H + 30 * M, False),
                          ("danger_zone", "not_served"): (("T2", "T3"), 3 * H + 30 * M, True),
                          ("hot_holding", "served"): (("T1",), 4500, False),
                          ("hot_holding", "not_served"): (("T2", "T3"), 4500, True)}
    found = {(f.code, f.part): f for f in a.findings if f.code in ("danger_zone", "hot_holding")}
    assert sorted(found) == sorted(violations)
    for code in ("danger_zone", "hot_holding"):
        served, unserved = found[(code, "served")], found[(code, "not_served")]
        assert (served.ref, unserved.ref) == (f"{code}/S1/{DATE}/served", f"{code}/S1/{DATE}/not_served")
        assert "of 1 container served:" in served.detail and "still open" not in served.detail
        assert "of 2 containers not served yet:" in unserved.detail and "still open" in unserved.detail
    # The day's answer (GET /api/mbg/violations) is as documented, with each part.
    answer = {"date": DATE, "violations": [v.to_dict() for v in a.violations],
              "findings": [f.to_dict() for f in a.findings]}
    assert not problems(strict(ROUTES[("GET", "/api/mbg/violations")].answer_schema()), answer)


def test_a_device_clock_measured_off_at_its_sync_is_a_finding_of_the_day_it_was_measured(plan: Plan) -> None:
    """The hub measures a device's clock when it syncs (MbgView.device_clocks): past `[clock] max_skew_s` either
    way it is a finding of that day, the device named, however its records are dated (a day behind dates them the
    day before: nothing of that day would say it)."""
    view = MbgView(plan)
    device = "ab" * 16
    asked: list[int] = []

    def clocks(limit_s: int) -> list[tuple[str, int, int]]:
        asked.append(limit_s)
        return [(device, -86_410, MIDNIGHT + 7 * H)]

    view.device_clocks = clocks
    (finding,) = [f for f in view.findings(MIDNIGHT + 8 * H, DATE) if f.code == "device_clock"]
    assert (finding.subject, finding.date, finding.measured, finding.limit, finding.part, finding.severity) == (
        device, DATE, -86_410, plan.clock.max_skew_s, "behind", "warning")
    assert finding.detail == ("device clock 86410 s behind the hub's at its last sync; its taps are signed 86410 s "
                              "too early, and timed by the clock set right")
    assert asked[-1] == plan.clock.max_skew_s
    assert not [f for f in view.findings(MIDNIGHT + 8 * H, "2000-01-01") if f.code == "device_clock"]
