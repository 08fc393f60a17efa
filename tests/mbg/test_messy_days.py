"""Wrong answers messy school days gave (real hub and edge processes replaying them), each with the
answer worked out by hand: a stray gate tap before the container left the kitchen, meals cooked before midnight,
a container back after midnight and sent out again that morning, a school two kitchens feed, and a card that is
no container read at the gate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hub.aggregates import LmdbAggregates
from hub.mbg import Kitchen, MbgView, Plan, School
from hub.mbg.analysis import analyze
from hub.mbg.days import MBG_DAYS, encode
from tests.mbg.common import DATE, MIDNIGHT, H, M
from tools.mbg import Speaker, load_words

G1, T1, T2 = "04a7000000000001", "04a1000000000001", "04a1000000000002"
NEXT = "2026-01-13"
NAMES = {"tz_offset_s": 7 * 3600, "schools": {"S1": {"name": "SDN 1"}, "S2": {"name": "SDN 2"}},
         "kitchens": {"K1": {"name": "SPPG Satu"}, "K2": {"name": "SPPG Dua"}}}


def _say(lang: str, f: Any) -> str:
    return Speaker(lang=lang, names=NAMES, words=load_words(lang)).finding(f.to_dict(), {})


def _both(plan: Plan, scans: list[Any], now: int, date: str = DATE) -> list[Any]:
    """The day's answer from analyze() and from the view fed the same scans, which must agree."""
    a = analyze(plan, scans, now=now, dates=[date])
    view = MbgView(plan)
    for s in scans:
        view.ingest_event(s)
    assert [f.to_dict() for f in view.findings(now, date)] == [f.to_dict() for f in a.findings if f.date == date]
    assert view.deliveries(now, date) == [d for (_, dd), d in sorted(a.deliveries.items()) if dd == date]
    return [a, view]


def test_a_gate_tap_before_the_container_left_is_no_arrival(plan: Plan, scan: Any) -> None:
    # G1 is tapped at S2's gate at 06:50 by mistake, leaves K1 for S2 at 07:00 and really arrives at 09:40.
    scans = [scan("received", 6 * H + 50 * M, site="S2", tags=[G1]),
             scan("departed", 7 * H, tags=[G1], school="S2"),
             scan("received", 9 * H + 40 * M, site="S2", tags=[G1])]
    a, view = _both(plan, scans, MIDNIGHT + 16 * H)
    d = a.deliveries[("S2", DATE)]
    assert (d.statuses, d.received_at, d.late_s, d.received_portions) == (
        ("late",), MIDNIGHT + 9 * H + 40 * M, 40 * M, 10)
    codes = {f.code for f in a.findings if f.subject == "S2"}
    assert {"late_delivery", "out_of_order"} <= codes and "duplicate_scan" not in codes
    [trip] = view.container(G1, MIDNIGHT + 16 * H)
    assert [s.event for s in trip.steps] == ["received", "departed", "received"]


def test_meals_cooked_before_midnight_are_timed_from_that_cook_tap(plan: Plan, scan: Any) -> None:
    # K1 taps a cook (no batch) at 23:30 the evening before, after its last trip of that day; S2's container
    # leaves 06:30, is in 07:00 and served 08:00: 8 h 30 min after cook-end.
    scans = [scan("departed", -17 * H, tags=[T2], school="S2"),  # the day before's trip, 07:00
             scan("cooked", -30 * M, temp_cc=9000),
             scan("departed", 6 * H + 30 * M, tags=[T1], school="S2", temp_cc=7500),
             scan("received", 7 * H, site="S2", tags=[T1], temp_cc=7000),
             scan("served", 8 * H, site="S2")]
    a, _ = _both(plan, scans, MIDNIGHT + 16 * H)
    [v] = [v for v in a.violations if v.date == DATE and v.rule == "cook_to_serve"]
    assert (v.school, v.measured, v.limit) == ("S2", 8 * H + 30 * M, 4 * H)
    # A cook tap of the day before made before that day's trips was for them, not for the next morning.
    early = [s for s in scans if s.event != "cooked"] + [scan("cooked", -18 * H, temp_cc=9000)]
    b = analyze(plan, early, now=MIDNIGHT + 16 * H, dates=[DATE])
    assert [v for v in b.violations if v.date == DATE and v.rule == "cook_to_serve"] == []


def test_a_container_back_after_midnight_and_sent_out_again_has_a_clean_new_day(plan: Plan, scan: Any) -> None:
    # T1 is not back on day 1; it is back 06:00 on day 2 (closing day 1's trip), leaves again 06:30, is in at
    # 07:00 and back at 13:00.
    d1 = [scan("departed", 6 * H + 30 * M, tags=[T1], school="S2"),
          scan("received", 7 * H, site="S2", tags=[T1])]
    d2 = [scan("returned", 30 * H, tags=[T1]),
          scan("departed", 30 * H + 30 * M, tags=[T1], school="S2"),
          scan("received", 31 * H, site="S2", tags=[T1]),
          scan("returned", 37 * H, tags=[T1])]
    now = MIDNIGHT + 40 * H
    a, view = _both(plan, d1 + d2, now, NEXT)
    # No reread of the day-2 return, no return before leaving: S2's day 2 says nothing of T1's trip.
    assert [f.code for f in a.findings if f.subject == "S2" and f.date == NEXT] == ["no_temperature"]
    assert [f.code for f in a.findings if f.subject == "S2" and f.date == DATE] == ["no_temperature"]
    first, second = view.container(T1, now)
    assert (first.date, first.stage, first.steps[-1].time) == (DATE, "returned", MIDNIGHT + 30 * H)
    assert [(s.event, s.time) for s in second.steps] == [
        ("departed", MIDNIGHT + 30 * H + 30 * M), ("received", MIDNIGHT + 31 * H), ("returned", MIDNIGHT + 37 * H)]


def test_a_school_two_kitchens_feed_is_judged_against_the_kitchen_that_sent_each_container(scan: Any) -> None:
    # S2 (K1's in the plan) gets 2 ompreng from K1 and 2 from K2; C1 (K2's) comes back to K1, C2 to K2.
    plan = Plan(kitchens=(Kitchen(id="K1"), Kitchen(id="K2")),
                schools=(School(id="S2", name="SDN 2", kitchen="K1", portions=40, deadline_s=9 * H),))
    b1, b2, c1, c2 = "04b2000000000001", "04b2000000000002", "04c3000000000001", "04c3000000000002"
    scans = [scan("departed", 6 * H + 30 * M, tags=[b1, b2], school="S2", temp_cc=7000),
             scan("departed", 6 * H + 40 * M, site="K2", tags=[c1, c2], school="S2", temp_cc=7000),
             scan("received", 7 * H + 20 * M, site="S2", tags=[b1, b2, c1, c2], temp_cc=6800),
             scan("returned", 13 * H, tags=[b1, b2, c1]),
             scan("returned", 13 * H + 10 * M, site="K2", tags=[c2])]
    a, _ = _both(plan, scans, MIDNIGHT + 16 * H)
    found = {f.code: f for f in a.findings}
    back = found["returned_to_other_kitchen"]
    assert (back.containers, back.other_kitchen) == ((c1,), "K1")
    sent = found["sent_by_other_kitchen"]
    assert (sent.subject, sent.containers, sent.other_kitchen) == ("S2", (c1, c2), "K2")
    assert "(20 portions)" in sent.detail
    assert _say("en", sent) == "2 containers sent by SPPG Dua (K2), not by this school's own kitchen; counted in " \
                               "its delivery"
    assert _say("id", sent) == "2 ompreng dikirim oleh SPPG Dua (K2), bukan oleh dapur sekolah ini; dihitung dalam " \
                               "pengirimannya"
    assert a.deliveries[("S2", DATE)].received_portions == 40


def test_a_card_no_kitchen_sent_is_no_container_at_the_gate(plan: Plan, scan: Any) -> None:
    # S2 expects 10 portions: one ompreng leaves K1 and its gate taps it and an unrelated card.
    departed = scan("departed", 6 * H + 30 * M, tags=[T1], school="S2", temp_cc=7000)
    gate = [scan("received", 7 * H + 25 * M, site="S2", tags=[T1], temp_cc=6800),
            scan("received", 7 * H + 25 * M, site="S2", tags=["0badcafe"])]
    a, _ = _both(plan, [departed, *gate], MIDNIGHT + 16 * H)
    d = a.deliveries[("S2", DATE)]
    assert (d.statuses, d.received_portions, d.containers_in) == (("on_time",), 10, 1)
    found = {f.code: f for f in a.findings if f.subject == "S2"}
    assert set(found) == {"tag_not_sent", "container_unreturned"}  # no over_receipt, no reading missing
    assert (found["tag_not_sent"].containers, found["tag_not_sent"].measured) == (("0badcafe",), 1)
    assert _say("en", found["tag_not_sent"]) == ("1 tag tapped in here that no kitchen sent: not counted as a "
                                                 "container; check what card was tapped")
    assert _say("id", found["tag_not_sent"]).startswith("1 tag di-tap masuk di sini yang tidak dikirim dapur")
    # The kitchen's edge offline: the gate's taps reach the hub first and count as they are; once the departure
    # arrives the day is worked out again and the card counts nothing.
    view = MbgView(plan)
    for s in gate:
        view.ingest_event(s)
    [before] = view.deliveries(MIDNIGHT + 8 * H, DATE, school="S2")
    assert before.received_portions == 20
    view.ingest_event(departed)
    [after] = view.deliveries(MIDNIGHT + 8 * H, DATE, school="S2")
    assert (after.received_portions, after.containers_in) == (10, 1)
    assert ("tag_not_sent", "S2") in {f.key() for f in view.findings(MIDNIGHT + 8 * H, DATE)}


# A container back days after its day: D1 is DATE (a Monday), D9 the Tuesday of the week after.
D9 = "2026-01-20"


def test_a_container_back_days_later_closes_its_trip_and_clears_its_day(plan: Plan, scan: Any) -> None:
    # T1 and T2 leave for S2 on D1 and arrive; T2 is back that afternoon, T1 only on D9 at 10:00. A D2 trip of
    # another container keeps the days between held.
    d1 = [scan("departed", 6 * H + 30 * M, tags=[T1, T2], school="S2", temp_cc=7000),
          scan("received", 7 * H, site="S2", tags=[T1, T2], temp_cc=6800),
          scan("returned", 13 * H, tags=[T2])]
    back = scan("returned", 8 * 24 * H + 10 * H, tags=[T1])
    before = MbgView(plan)
    for s in d1:
        before.ingest_event(s)
    assert [r["tag"] for r in before.lost(MIDNIGHT + 8 * 24 * H, DATE)] == [T1]
    now = MIDNIGHT + 8 * 24 * H + 12 * H
    a, view = _both(plan, [*d1, back], now)
    found = {f.code: f for f in a.findings if f.date == DATE and f.subject == "S2"}
    assert "container_unreturned" not in found
    late = found["container_returned_late"]
    assert (late.containers, late.measured, late.limit, late.severity) == ((T1,), 8, MIDNIGHT + 8 * 24 * H + 10 * H,
                                                                           "info")
    assert late.detail == f"1 container returned 8 days late, on {D9}"
    assert _say("en", late) == f"1 container returned 8 days late, on {D9}"
    assert _say("id", late) == f"1 ompreng kembali ke dapur 8 hari terlambat, pada {D9}"
    assert view.lost(now, DATE) == []
    # D9 holds no trip of T1: its return is a step of D1's.
    assert [f.to_dict() for f in view.findings(now, D9)] == [f.to_dict() for f in a.findings if f.date == D9]
    [trip] = view.container(T1, now)
    assert (trip.date, trip.school, trip.stage) == (DATE, "S2", "returned")
    assert [(s.event, s.time) for s in trip.steps] == [
        ("departed", MIDNIGHT + 6 * H + 30 * M), ("received", MIDNIGHT + 7 * H),
        ("returned", MIDNIGHT + 8 * 24 * H + 10 * H)]
    # The view that had worked out D1 before the return came works it out again once it does.
    before.ingest_event(back)
    assert before.lost(now, DATE) == []
    assert [f.to_dict() for f in before.findings(now, DATE)] == [f.to_dict() for f in view.findings(now, DATE)]


def test_a_container_sent_out_again_in_between_is_not_taken_for_a_late_return(plan: Plan, scan: Any) -> None:
    # T1 leaves for S2 on D1 and is not tapped back; on D3 it leaves again, arrives and is back; on D9 a return of
    # it closes no trip: D1 keeps its unreturned container, D3 its own trip.
    d1 = [scan("departed", 6 * H + 30 * M, tags=[T1], school="S2", temp_cc=7000),
          scan("received", 7 * H, site="S2", tags=[T1], temp_cc=6800)]
    d3 = [scan("departed", 2 * 24 * H + 6 * H + 30 * M, tags=[T1], school="S2", temp_cc=7000),
          scan("received", 2 * 24 * H + 7 * H, site="S2", tags=[T1], temp_cc=6800),
          scan("returned", 2 * 24 * H + 13 * H, tags=[T1])]
    back = scan("returned", 8 * 24 * H + 10 * H, tags=[T1])
    now = MIDNIGHT + 8 * 24 * H + 12 * H
    a, view = _both(plan, [*d1, *d3, back], now)
    codes = {f.code for f in a.findings}
    assert "container_returned_late" not in codes
    assert [r["tag"] for r in view.lost(now, DATE)] == [T1]
    assert [t.date for t in view.container(T1, now)] == [DATE, "2026-01-14", D9]
    # Sent out again on D3 and not back: the D9 return closes D3's trip, the last one open, not D1's.
    d3_open = d3[:2]
    b, view = _both(plan, [*d1, *d3_open, back], now, "2026-01-14")
    [late] = [f for f in b.findings if f.code == "container_returned_late"]
    assert (late.date, late.measured, late.containers) == ("2026-01-14", 6, (T1,))
    assert [r["tag"] for r in view.lost(now, DATE)] == [T1] and view.lost(now, "2026-01-14") == []
    assert [t.date for t in view.container(T1, now)] == [DATE, "2026-01-14"]
    # A container no trip held left out (its trip older than the days held) stays a return of its own day.
    c, view = _both(plan, [back], now, D9)
    assert [f.code for f in c.findings if f.code.startswith("container_")] == []
    assert [t.date for t in view.container(T1, now)] == [D9]


def test_a_late_return_makes_the_stored_day_of_its_trip_be_worked_out_again(plan: Plan, scan: Any,
                                                                           tmp_path: Path) -> None:
    # D1 is stored final with T1 not returned; T1's return on D9 makes that answer stale, and the day written again
    # says it came back 8 days late. D2, with no such return, keeps its stored answer.
    store = LmdbAggregates(tmp_path / "aggregates")
    try:
        days = store.namespace(MBG_DAYS)
        view = MbgView(plan, days=days)
        for s in [scan("departed", 6 * H + 30 * M, tags=[T1], school="S2", temp_cc=7000),
                  scan("received", 7 * H, site="S2", tags=[T1], temp_cc=6800),
                  scan("departed", 30 * H + 30 * M, tags=[T2], school="S2", temp_cc=7000),
                  scan("received", 31 * H, site="S2", tags=[T2], temp_cc=6800),
                  scan("returned", 37 * H, tags=[T2])]:
            view.ingest_event(s)
        now = MIDNIGHT + 8 * 24 * H
        written = view.days_to_store(now)
        assert [d.date for d in written] == [DATE, NEXT]
        days.put([encode(d) for d in written], delete=view.take_stale())
        kept = days.get(NEXT)
        assert [r["tag"] for r in view.lost(now, DATE)] == [T1]
        view.ingest_event(scan("returned", 8 * 24 * H + 10 * H, tags=[T1]))
        assert view.take_stale() == [DATE]
        later = now + 12 * H
        assert view.lost(later, DATE) == []
        assert [d.date for d in view.days_to_store(later)] == [DATE]
        assert days.get(NEXT) == kept
        assert "container_returned_late" in {f.code for f in view.findings(later, DATE)}
    finally:
        store.close()


def test_a_late_return_of_a_trip_beyond_the_window_is_read_over_its_stored_day(plan: Plan, scan: Any,
                                                                              tmp_path: Path) -> None:
    # D1's scans are stored and then pruned (older than the window held); T1's return on D9 clears D1's lost list
    # from the stored answer, and the container's history says the return closes a trip beyond the window.
    store = LmdbAggregates(tmp_path / "aggregates")
    try:
        days = store.namespace(MBG_DAYS)
        view = MbgView(plan, days=days)
        d1 = [scan("departed", 6 * H + 30 * M, tags=[T1, T2], school="S2", temp_cc=7000),
              scan("received", 7 * H, site="S2", tags=[T1, T2], temp_cc=6800)]
        for s in [*d1, scan("departed", 30 * H + 30 * M, tags=[G1], school="S1", temp_cc=7000),
                  scan("returned", 37 * H, tags=[G1])]:
            view.ingest_event(s)
        now = MIDNIGHT + 8 * 24 * H + 9 * H
        cutoff = now - 8 * 86400
        written = view.days_to_store(now, arrived_before=cutoff)
        days.put([encode(d) for d in written], delete=view.take_stale())
        assert view.prune(now, keep_days=8) == 2
        stored = [f.to_dict() for f in view.findings(now, DATE)]
        assert [r["tag"] for r in view.lost(now, DATE)] == [T1, T2]
        view.ingest_event(scan("returned", 8 * 24 * H + 10 * H, tags=[T1]))
        later = now + 3 * H
        assert [r["tag"] for r in view.lost(later, DATE)] == [T2]
        found = {f.code: f for f in view.findings(later, DATE)}
        assert (found["container_returned_late"].containers, found["container_returned_late"].measured) == ((T1,), 8)
        assert (found["container_unreturned"].containers, found["container_unreturned"].measured) == ((T2,), 1)
        assert found["container_unreturned"].detail == "1 container not returned to the kitchen"
        assert view.take_stale() == []  # the stored day keeps what it stored; the return is read over it
        [trip] = view.container(T1, later)
        assert (trip.date, trip.closes, [s.event for s in trip.steps]) == (D9, DATE, ["returned"])
        assert trip.to_dict()["closes"] == DATE
        assert [f.to_dict() for f in view.findings(later, DATE)] != stored
    finally:
        store.close()
