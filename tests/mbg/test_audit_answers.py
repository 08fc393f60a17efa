"""Wrong answers an audit of a messy school day found (a real hub fed signed records, asked through its API and
`jejak mbg`), each with the answer worked out by hand: a closed school that got meals anyway, a food timer still
'open' after the day was over, a batch's cook time given to containers never packed from it, a delivery 'not
arrived' whose containers all came back, a container read three times, the 60 °C boundary, and a return after
midnight shown as a trip of its own."""

from __future__ import annotations

from typing import Any

from hub.mbg import Kitchen, MbgView, Plan, School
from hub.mbg.analysis import analyze
from tests.mbg.common import DATE, MIDNIGHT, H, M
from tools.mbg import Speaker, load_words, render

T1, T2, T3 = "04a1000000000001", "04a1000000000002", "04a1000000000003"
NAMES = {"tz_offset_s": 7 * 3600, "schools": {"S1": {"name": "SDN 1"}, "S2": {"name": "SDN 2"}},
         "kitchens": {"K1": {"name": "SPPG Satu"}}}


def _say(lang: str) -> Speaker:
    return Speaker(lang=lang, names=NAMES, words=load_words(lang))


def _said(view: MbgView, now: int, code: str, lang: str) -> str:
    deliveries = {d.school: d.to_dict() for d in view.deliveries(now, DATE)}
    [f] = [f.to_dict() for f in view.findings(now, DATE) if f.code == code and f.subject in ("S1", "S2")
           and (code != "missing_delivery" or f.subject == "S1")]
    return _say(lang).finding(f, deliveries)


def _closed_plan() -> Plan:
    return Plan(kitchens=(Kitchen(id="K1"),),
                schools=(School(id="S1", name="SDN 1", kitchen="K1", portions=30, deadline_s=9 * H),
                         School(id="S2", name="SDN 2", kitchen="K1", portions=30, deadline_s=9 * H,
                                closed_dates=(DATE,))))


def test_meals_sent_to_a_school_closed_that_day_are_no_late_delivery_but_a_finding(scan: Any) -> None:
    # S2 is closed today; the kitchen sends 3 ompreng to it at 08:50 anyway and its gate taps 2 in at 09:40.
    plan = _closed_plan()
    view = MbgView(plan)
    for s in (scan("departed", 8 * H + 50 * M, tags=[T1, T2, T3], school="S2", temp_cc=7500),
              scan("received", 9 * H + 40 * M, site="S2", tags=[T1, T2], temp_cc=7000)):
        view.ingest_event(s)
    now = MIDNIGHT + 16 * H
    [s1, s2] = view.deliveries(now, DATE)
    assert (s2.school, s2.statuses, s2.status, s2.late_s, s2.expected, s2.received_portions, s2.departed_portions) \
        == ("S2", ("unplanned",), "unplanned", 0, 0, 20, 30)
    assert s1.statuses == ("missing",)
    findings = {(f.code, f.subject): f for f in view.findings(now, DATE)}
    assert ("late_delivery", "S2") not in findings
    closed = findings[("over_receipt", "S2")]
    assert (closed.measured, closed.limit) == (20, 0)
    assert "school is closed that day" in closed.detail and "30 portions sent, 20 received" in closed.detail
    assert _said(view, now, "over_receipt", "en") == "no delivery planned that day (school closed): 30 portions " \
                                                     "sent, 20 received"
    assert "sekolah libur" in _said(view, now, "over_receipt", "id")
    # The summary's statuses add up: 1 planned delivery (missing) and 1 unplanned; the portions are the planned ones.
    summary = view.summary(now, DATE)
    counts = {k: n for k, n in summary["deliveries"].items() if k != "expected" and n}
    assert counts == {"missing": 1, "unplanned": 1} and summary["deliveries"]["expected"] == 1
    assert sum(counts.values()) == summary["deliveries"]["expected"] + summary["deliveries"]["unplanned"]
    assert summary["portions"] == {"expected": 30, "received": 0}
    said = render("summary", summary, _say("en"))
    assert "2 deliveries: missing 1, not planned that day 1" in said, said
    table = render("deliveries", {"date": DATE, "kitchens": list(view.deliveries_by_kitchen(now, DATE).values()),
                                  "totals": {}}, _say("en"))
    [row] = [line for line in table.splitlines() if "(S2)" in line]
    assert "not planned that day" in row and "09:00" not in row and "late" not in row and "20/0" in row


def test_meals_tapped_in_at_a_school_the_plan_does_not_list_are_no_delivery(plan: Plan, scan: Any) -> None:
    a = analyze(plan, [scan("received", 9 * H + 40 * M, site="S9", tags=[T1])], now=MIDNIGHT + 16 * H)
    assert ("S9", DATE) not in a.deliveries
    assert [(f.code, f.subject) for f in a.findings if "S9" in (f.subject, f.other_school)] == [("unknown_site", "S9")]


def test_a_timer_frozen_at_the_days_end_is_not_still_open(plan: Plan, scan: Any) -> None:
    # Cooked 05:00, in at S1 07:00 at 45 °C, never served: at 12:00 the timers run; at 20:00 they stopped at 15:00.
    scans = [scan("cooked", 5 * H, batch="B1", temp_cc=9000),
             scan("packed", 6 * H, tags=[T1], batch="B1", school="S1"),
             scan("received", 7 * H, site="S1", tags=[T1], temp_cc=4500)]
    during = analyze(plan, scans, now=MIDNIGHT + 12 * H)
    assert {(v.rule, v.open, v.part) for v in during.violations} == {
        ("cook_to_serve", True, "not_served"), ("danger_zone", True, "not_served"), ("hot_holding", True, "not_served")}
    assert "(still open)" in next(f for f in during.findings if f.code == "cook_to_serve").detail
    after = analyze(plan, scans, now=MIDNIGHT + 20 * H)
    assert {(v.rule, v.open, v.part) for v in after.violations} == {
        ("cook_to_serve", False, "not_served"), ("danger_zone", False, "not_served"),
        ("hot_holding", False, "not_served")}
    [cook] = [v for v in after.violations if v.rule == "cook_to_serve"]
    assert (cook.measured, cook.limit) == (10 * H, 4 * H)  # frozen at the 15:00 return time
    assert not [f.detail for f in after.findings if "still open" in f.detail]


def test_a_batch_cook_time_times_only_the_containers_packed_from_it(plan: Plan, scan: Any) -> None:
    # Batch nasi-1, cooked 05:00, is packed into S2's ompreng only; S1's left with no batch at 06:30 and were
    # served at 09:45 (4 h 45 min after nasi-1, but not nasi-1's meals).
    nasi = [scan("cooked", 5 * H, batch="nasi-1", temp_cc=9000),
            scan("packed", 6 * H, tags=[T3], batch="nasi-1", school="S2"),
            scan("departed", 6 * H + 30 * M, tags=[T3], school="S2", temp_cc=7500),
            scan("received", 7 * H, site="S2", tags=[T3], temp_cc=7000),
            scan("served", 7 * H + 30 * M, site="S2")]
    s1 = [scan("departed", 6 * H + 30 * M, tags=[T1, T2], school="S1", temp_cc=7500),
          scan("received", 7 * H, site="S1", tags=[T1, T2], temp_cc=7000),
          scan("served", 9 * H + 45 * M, site="S1")]
    a = analyze(plan, [*nasi, *s1], now=MIDNIGHT + 16 * H)
    assert [(v.rule, v.school) for v in a.violations] == []
    assert a.timeline(T1, DATE).first("cooked") is None
    assert a.timeline(T3, DATE).first("cooked").time == MIDNIGHT + 5 * H
    # A cook tap that names no batch times the containers that name none: S1's, cooked 05:30, served 4 h 15 min on.
    b = analyze(plan, [*nasi, *s1, scan("cooked", 5 * H + 30 * M, temp_cc=9000)], now=MIDNIGHT + 16 * H)
    assert [(v.rule, v.school, v.measured) for v in b.violations] == [("cook_to_serve", "S1", 4 * H + 15 * M)]
    assert b.timeline(T3, DATE).first("cooked").time == MIDNIGHT + 5 * H


def test_a_delivery_whose_containers_all_came_back_untapped_says_so_in_its_missing_alert(plan: Plan,
                                                                                          scan: Any) -> None:
    # 2 ompreng leave for S1 at 06:30; its gate taps none; both are back at the kitchen at 13:05.
    view = MbgView(plan)
    for s in (scan("departed", 6 * H + 30 * M, tags=[T1, T2], school="S1", temp_cc=7500),
              scan("returned", 13 * H + 5 * M, tags=[T1, T2])):
        view.ingest_event(s)
    now = MIDNIGHT + 16 * H
    [s1] = view.deliveries(now, DATE, school="S1")
    assert (s1.status, s1.received_portions) == ("missing", 0)  # the count stays what the taps prove
    missing = next(f for f in view.findings(now, DATE) if f.code == "missing_delivery")
    assert missing.containers == (T1, T2) and "most likely delivered but not tapped" in missing.detail
    assert _said(view, now, "missing_delivery", "en") == (
        "no tap at the gate; 2 of its 2 containers came back to the kitchen, so it was most likely delivered "
        "untapped: check with the school")
    assert _said(view, now, "missing_delivery", "id").startswith("tidak ada tap di gerbang; 2 dari 2 ompreng kembali")
    assert _said(view, now, "returned_without_arrival", "en").startswith(
        "2 of the 2 containers not tapped in here came back")
    # Nothing came back: nothing arrived, said as before.
    other = MbgView(plan)
    other.ingest_event(scan("departed", 6 * H + 30 * M, tags=[T1, T2], school="S1"))
    assert _said(other, now, "missing_delivery", "en") == "nothing arrived; 20 portions were due by 09:00"


def test_a_container_read_three_times_is_said_so(plan: Plan, scan: Any) -> None:
    view = MbgView(plan)
    for s in (scan("departed", 6 * H + 30 * M, tags=[T1, T2], school="S1"),
              scan("received", 7 * H, site="S1", tags=[T1, T2]),
              scan("received", 7 * H + 2 * M, site="S1", tags=[T1]),
              scan("received", 7 * H + 40 * M, site="S1", tags=[T1])):
        view.ingest_event(s)
    now = MIDNIGHT + 16 * H
    [dup] = [f for f in view.findings(now, DATE) if f.code == "duplicate_scan"]
    assert (dup.containers, dup.measured) == ((T1,), 2)
    assert dup.detail == "'received' read 3 times for 1 container; counted once"
    assert _said(view, now, "duplicate_scan", "en") == "1 container read 3 times; counted once"
    assert _said(view, now, "duplicate_scan", "id") == "1 ompreng terbaca 3 kali; dihitung sekali"
    assert view.deliveries(now, DATE, school="S1")[0].received_portions == 20
    # Read twice: said as before.
    once = MbgView(plan)
    for s in (scan("received", 7 * H, site="S1", tags=[T1]), scan("received", 7 * H + 2 * M, site="S1", tags=[T1])):
        once.ingest_event(s)
    assert _said(once, now, "duplicate_scan", "en") == "1 container read twice; counted once"


def test_60_degrees_is_hot_enough_for_both_rules_and_the_words_say_so(plan: Plan, scan: Any) -> None:
    # Hot holding keeps meals at 60 °C or above; the danger zone is from 5 °C up to, not including, 60 °C.
    def rules_broken(temp_cc: int) -> set[str]:
        scans = [scan("departed", 6 * H, tags=[T1], school="S1", temp_cc=temp_cc),
                 scan("received", 7 * H, site="S1", tags=[T1], temp_cc=temp_cc),
                 scan("served", 9 * H + 30 * M, site="S1")]
        return {v.rule for v in analyze(plan, scans, now=MIDNIGHT + 16 * H).violations}

    assert rules_broken(6000) == set()
    assert rules_broken(5999) == {"hot_holding", "danger_zone"}
    f = {"code": "hot_holding", "subject": "S1", "measured": 5500, "limit": 6000, "containers": [T1],
         "part": "served"}
    assert _say("en").finding(f, {}) == "1 container served after cooling to 55.0 °C, must stay at 60.0 °C or above " \
                                        "until served"
    assert "harus tetap 60,0 °C atau lebih" in _say("id").finding(f, {})


def test_a_return_after_midnight_closes_the_day_before_and_opens_no_trip(plan: Plan, scan: Any) -> None:
    view = MbgView(plan)
    for s in (scan("departed", 6 * H + 30 * M, tags=[T1], school="S1"),
              scan("received", 7 * H, site="S1", tags=[T1]),
              scan("returned", 24 * H + 30 * M, tags=[T1])):
        view.ingest_event(s)
    [trip] = view.container(T1, MIDNIGHT + 26 * H)
    assert trip.date == DATE and trip.stage == "returned"
    assert trip.steps[-1].event == "returned" and trip.steps[-1].time == MIDNIGHT + 24 * H + 30 * M
    # A later trip of the next day is its own.
    view.ingest_event(scan("departed", 30 * H, tags=[T1], school="S1"))
    assert [t.date for t in view.container(T1, MIDNIGHT + 31 * H)] == [DATE, "2026-01-13"]
