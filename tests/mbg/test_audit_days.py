"""Wrong answers an audit of messy school days found (real hub and edge processes replaying them), each with the
answer worked out by hand: a stray gate tap before the container left the kitchen, meals cooked before midnight,
a container back after midnight and sent out again that morning, a school two kitchens feed, and a card that is
no container read at the gate."""

from __future__ import annotations

from typing import Any

from hub.mbg import Kitchen, MbgView, Plan, School
from hub.mbg.analysis import analyze
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
