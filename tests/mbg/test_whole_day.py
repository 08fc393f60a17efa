"""Friday 16 January 2026 and the days around it, replayed through `jejak hub run` and eight `jejak edge run`
checkpoints of two kitchens (tests/mbg/replay.py). Every expected answer is worked out by hand from the day below;
what tests/mbg/test_messy_day.py already checks (kill -9, a clock hours behind, a teacher's count) is not repeated.

Plan (WIB, due 09:00, empties due back 15:00, 10 portions an ompreng, Saturday 17 January closed):
K1 feeds S1 (30), S2 (40), S3 (30); K2 feeds S4 (20). Gates tap `received` only, as many do.
- 02:30 (19:30 UTC on Thursday) K1 cooks S1's A1-A3 and S2's B1-B4: Friday's meals, not Thursday's;
- 05:00 K1 takes in 50 kg of rice, uses 30 kg at 06:00 and 25 kg at 07:00: 5 kg more than it has;
- 06:00 K2's D1, D2 leave for S4; 06:30 A1-A3 leave for S1 (the exit reboots between its taps);
- 07:05 S1's gate: a probe says 55 °C; A1 tapped twice, A2, A3, then a card that is no ompreng and K2's staff
  card, both refused by the reader. 09:30 S1 serves: 7 h after cook-end, 2 h 25 min at 55 °C;
- 07:00 S4's gate taps D1, D2 with a clock 20 minutes slow (it says 06:40);
- S2's gate is offline. 08:50 B1-B4 leave late; 09:25 B1, B2 tapped in at S2, held on the gate;
- 09:40 B3 tapped in at S3, whose own delivery never left the kitchen. The hub says S2 is overdue;
- the hub restarts; then S2's gate syncs: S2 is late by 25 min and short by 20, no longer overdue;
- 13:00 A1-A3, B1, B2 come back; 00:20 on Saturday B3 comes back; B4, D1 and D2 never do.
S2 taps nothing when it serves: its meals reached school 6 h 55 min after cook-end, so they were served that
late at least.
Only S1's gate has a probe: no temperature is recorded for S2's and S4's containers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hub.mbg.plan import local_midnight
from tests.mbg.replay import Checkpoint, Day, deliveries, findings
from tests.wait import wait_for

FRI, SAT = "2026-01-16", "2026-01-17"
MID = local_midnight(FRI, 7 * 3600)
H, M = 3600, 60
PLAN = f"""
[defaults]
timezone = "WIB"
deadline = "09:00"
return_by = "15:00"
portions_per_container = 10
service_weekdays = [0, 1, 2, 3, 4, 5]
closed_dates = ["{SAT}"]
[[kitchens]]
id = "K1"
name = "SPPG Satu"
[[kitchens]]
id = "K2"
name = "SPPG Dua"
[[schools]]
id = "S1"
name = "SD Satu"
kitchen = "K1"
portions = 30
[[schools]]
id = "S2"
name = "SD Dua"
kitchen = "K1"
portions = 40
[[schools]]
id = "S3"
name = "SD Tiga"
kitchen = "K1"
portions = 30
[[schools]]
id = "S4"
name = "SD Empat"
kitchen = "K2"
portions = 20
"""
STAFF1, STAFF2 = "5a000001", "5a000002"
A1, A2, A3 = "04a1000000000001", "04a1000000000002", "04a1000000000003"
B1, B2, B3, B4 = "04b2000000000001", "04b2000000000002", "04b2000000000003", "04b2000000000004"
D1, D2 = "04d4000000000001", "04d4000000000002"
NOT_OMPRENG = "08aabbccdd"
OMPRENG = ("04",)
EDGES = {
    "cook1": Checkpoint(site="K1", role="kitchen", event="cooked", staff=STAFF1, container_prefixes=OMPRENG),
    "exit1": Checkpoint(site="K1", role="kitchen_exit", school="S1", staff=STAFF1, container_prefixes=OMPRENG),
    "gate1": Checkpoint(site="S1", role="school_gate", event="received", staff=STAFF1, container_prefixes=OMPRENG),
    "gate2": Checkpoint(site="S2", role="school_gate", event="received", staff=STAFF1, container_prefixes=OMPRENG),
    "gate3": Checkpoint(site="S3", role="school_gate", event="received", staff=STAFF1, container_prefixes=OMPRENG),
    "return1": Checkpoint(site="K1", role="return", staff=STAFF1, container_prefixes=OMPRENG),
    "exit2": Checkpoint(site="K2", role="kitchen_exit", school="S4", staff=STAFF2, container_prefixes=OMPRENG),
    "gate4": Checkpoint(site="S4", role="school_gate", event="received", staff=STAFF2, container_prefixes=OMPRENG),
}


def _near(t: int | None, expected: int) -> bool:
    """A tap lands a little after its edge's clock was set (the daemon starts, then the staff taps)."""
    return t is not None and expected <= t <= expected + 5 * M


def _listed(day: Day) -> dict[str, Any]:
    """The alerts the hub lists, open and resolved, as it lists them."""
    listing = day.api("/api/markets/alerts")
    return {"alerts": listing["alerts"], "resolved": listing["resolved"]}


def _alerts(day: Day) -> tuple[set[str], set[str]]:
    listing = day.api("/api/markets/alerts")
    return {a["id"] for a in listing["alerts"]}, {a["id"] for a in listing["resolved"]}


async def test_a_whole_day_of_two_kitchens_through_real_processes(tmp_path: Path) -> None:
    day = Day(tmp_path, PLAN, EDGES)
    e = day.edges
    try:
        day.start_hub(MID + 2 * H)
        day.enroll()
        e["cook1"].start_at(MID + 2 * H + 30 * M)
        await day.tap_accepted("cook1", A1, A2, A3, B1, B2, B3, B4)
        e["exit1"].start_at(MID + 5 * H)
        await day.submit("exit1", "stock", {"site": "K1", "item": "beras", "movement": "receive", "qty": 50_000,
                                            "unit": "g", "supplier": "KUD"})
        e["exit1"].restart_at(MID + 6 * H)
        await day.submit("exit1", "stock", {"site": "K1", "item": "beras", "movement": "use", "qty": 30_000,
                                            "unit": "g"})
        e["exit2"].start_at(MID + 6 * H)
        await day.tap_accepted("exit2", D1, D2)
        await day.submit("exit2", "stock", {"site": "K2", "item": "ayam", "movement": "receive", "qty": 10_000,
                                            "unit": "g"})
        e["exit1"].restart_at(MID + 6 * H + 30 * M)
        await day.tap_accepted("exit1", A1, A2, A3)
        e["exit1"].restart_at(MID + 7 * H)
        await day.submit("exit1", "stock", {"site": "K1", "item": "beras", "movement": "use", "qty": 25_000,
                                            "unit": "g"})
        await day.wait_synced("cook1", "exit1", "exit2")

        e["gate1"].start_at(MID + 7 * H + 5 * M)
        await day.submit("gate1", "scan", {"event": "arrived", "site": "S1", "checkpoint": "school_gate",
                                           "staff": STAFF1, "tags": [A1, A2, A3], "temp_cc": 5500, "source": "coap"})
        shown = await day.tap("gate1", A1, A1, A2, A3, NOT_OMPRENG, STAFF2)
        assert [fb[-1]["status"] for fb in shown[1:5]] == ["accepted"] * 4, shown
        assert [(fb[-1]["status"], fb[-1]["reason"]) for fb in shown[5:7]] == [("refused", "unknown_tag")] * 2
        await day.wait_synced("gate1")
        e["gate4"].start_at(MID + 6 * H + 40 * M)  # 07:05 on a right clock
        await day.tap_accepted("gate4", D1, D2)
        await day.wait_synced("gate4")

        e["gate2"].start_at(MID + 7 * H + 30 * M, hub=day.dead)
        e["exit1"].restart_at(MID + 8 * H + 50 * M)
        await day.submit("exit1", "scan", {"event": "departed", "site": "K1", "checkpoint": "kitchen_exit",
                                           "staff": STAFF1, "tags": [B1, B2, B3, B4], "school": "S2",
                                           "source": "coap"})
        e["gate2"].restart_at(MID + 9 * H + 25 * M)
        await day.tap_accepted("gate2", B1, B2)
        e["gate1"].restart_at(MID + 9 * H + 30 * M)
        await day.submit("gate1", "scan", {"event": "served", "site": "S1", "checkpoint": "school_gate",
                                           "staff": STAFF1, "count": 30, "source": "coap"})
        e["gate3"].start_at(MID + 9 * H + 40 * M)
        await day.tap_accepted("gate3", B3)
        await day.wait_synced("exit1", "gate1", "gate3")

        # 09:40: S2's truck left at 08:50 and nothing is tapped in yet: overdue, and an alert says so.
        got = deliveries(day, FRI)
        assert (got["S2"]["statuses"], got["S3"]["statuses"]) == (["overdue"], ["missing"])
        assert [d["school"] for d in day.api("/api/mbg/missing", FRI)["missing"]] == ["S2", "S3"]
        overdue = f"mbg/overdue_delivery/S2/{FRI}"
        await wait_for(lambda: overdue in _alerts(day)[0], 60, what="the overdue alert", step=0.1)

        before = [day.api(f"/api/mbg/{q}", FRI) for q in ("deliveries", "violations", "stock", "lost", "missing")]
        listed = _listed(day)
        await day.restart_hub()
        assert [day.api(f"/api/mbg/{q}", FRI) for q in ("deliveries", "violations", "stock", "lost", "missing")] \
            == before
        # The alerts are kept in the hub's store: listed as they were, raised times included, and the ones derived
        # again once the hub has counted its records are those (the overdue one is not raised a second time).
        assert _listed(day) == listed and overdue in _alerts(day)[0]
        await wait_for(lambda: _listed(day) == listed, 60, what="the same alerts after they are derived again",
                       step=0.1)

        # S2's gate syncs its 09:25 taps after the hub called S2 overdue: the answer and the alerts change.
        e["gate2"].stop()
        e["gate2"].start_at(MID + 11 * H + 30 * M, hub=day.hub.coap)
        await day.wait_synced("gate2")
        late, short = f"mbg/late_delivery/S2/{FRI}", f"mbg/short_delivery/S2/{FRI}"
        await wait_for(lambda: {late, short} <= _alerts(day)[0] and overdue in _alerts(day)[1], 60,
                       what="the late and short alerts raised, the overdue one resolved", step=0.1)

        e["return1"].start_at(MID + 13 * H)
        await day.tap_accepted("return1", A1, A2, A3, B1, B2)
        e["return1"].restart_at(MID + 24 * H + 20 * M)
        await day.tap_accepted("return1", B3)
        await day.wait_synced(*EDGES)

        got = deliveries(day, FRI)
        row = {s: (d["statuses"], d["received_portions"], d["shortfall"], d["containers_in"], d["containers_out"])
               for s, d in got.items()}
        assert row == {"S1": (["on_time"], 30, 0, 3, 3), "S2": (["late", "short"], 20, 20, 2, 4),
                       "S3": (["missing"], 0, 30, 0, 0), "S4": (["on_time"], 20, 0, 2, 2)}
        assert _near(got["S1"]["arrived_at"], MID + 7 * H + 5 * M)
        assert _near(got["S2"]["received_at"], MID + 9 * H + 25 * M) and _near(got["S2"]["late_s"], 25 * M)
        # S4's gate clock is 20 minutes slow, which no rule can tell from a sync 20 minutes late: its device time
        # stands (hub/mbg/README.md, Clocks) and the records are flagged as synced late.
        assert _near(got["S4"]["received_at"], MID + 6 * H + 40 * M)
        found = findings(day.api("/api/mbg/violations", FRI))
        ids = {n: x.device_id.hex()[:32] for n, x in e.items()}
        assert set(found) == {
            ("duplicate_scan", "S1"), ("cook_to_serve", "S1"), ("danger_zone", "S1"), ("hot_holding", "S1"),
            ("late_delivery", "S2"), ("short_delivery", "S2"), ("container_unreturned", "S2"), ("cook_to_serve", "S2"),
            ("misrouted", "S3"), ("missing_delivery", "S3"), ("container_unreturned", "S4"),
            ("stock_overdraw", "K1/beras"), ("late_sync", ids["gate4"]),
            ("no_temperature", "S2"), ("no_temperature", "S4")}, sorted(found)
        assert found[("duplicate_scan", "S1")]["containers"] == [A1]
        measured = {k: (f["measured"], f["limit"]) for k, f in found.items()}
        # Cook-end 02:30 WIB, the evening before in UTC: Friday's meals, served at 09:30.
        assert measured[("cook_to_serve", "S1")] == (7 * H, 4 * H)
        assert measured[("danger_zone", "S1")] == (2 * H + 25 * M, 2 * H)
        assert measured[("hot_holding", "S1")] == (5500, 6000)
        assert measured[("stock_overdraw", "K1/beras")] == (25_000, 20_000)
        # Only S1's gate has a probe: S2's and S4's containers left and came in with no temperature reading (B3 at
        # S3's gate too), and a kitchen head cannot tell whether their meals were kept hot.
        assert (found[("no_temperature", "S2")]["containers"], measured[("no_temperature", "S2")]) == (
            [B1, B2, B3, B4], (4, 4))
        assert (found[("no_temperature", "S4")]["containers"], measured[("no_temperature", "S4")]) == (
            [D1, D2], (2, 2))
        assert found[("no_temperature", "S2")]["severity"] == "warning"
        assert found[("late_delivery", "S2")]["detail"].startswith("arrived 09:2")
        assert (found[("misrouted", "S3")]["containers"], found[("misrouted", "S3")]["other_school"]) == ([B3], "S2")
        assert found[("container_unreturned", "S2")]["containers"] == [B4]  # B3 came back after midnight
        assert found[("container_unreturned", "S4")]["containers"] == [D1, D2]
        assert _near(found[("late_sync", ids["gate4"])]["measured"], 20 * M)
        violations = {(v["rule"], v["school"], v["part"]): v for v in day.api("/api/mbg/violations", FRI)["violations"]}
        # B1 and B2 reached S2 6 h 55 min after cook-end; B4's meals went nowhere, their timer stopped at the day's
        # end (its containers were due back by then, as B4 is unreturned): two violations, each with its own
        # containers, neither still open.
        arrived, unserved = violations[("cook_to_serve", "S2", "arrival")], violations[("cook_to_serve", "S2", "not_served")]
        assert (arrived["containers"], arrived["open"], unserved["containers"], unserved["open"]) == (
            [B1, B2], False, [B4], False)
        assert _near(arrived["measured"], 6 * H + 55 * M)
        assert sorted(x["tag"] for x in day.api("/api/mbg/lost", FRI)["lost"]) == [B4, D1, D2]
        [b3] = [t for t in day.api(f"/api/mbg/containers/{B3}")["timelines"] if t["date"] == FRI]
        assert b3["stage"] == "returned" and _near(b3["steps"][-1]["time"], MID + 24 * H + 20 * M)
        assert [(x["kitchen"], x["item"], x["on_hand"], x["flags"]) for x in day.api("/api/mbg/stock")["on_hand"]] \
            == [("K1", "beras", -5000, ["overdraw"]), ("K2", "ayam", 10_000, [])]

        # Saturday is closed: nothing is expected, and B3's return makes no finding there.
        assert day.api("/api/mbg/deliveries", SAT)["kitchens"] == [] and day.api("/api/mbg/violations", SAT)[
            "findings"] == []
        said = {(lang, q, d): day.jejak_mbg(q, d, lang) for lang in ("id", "en") for q, d in
                (("deliveries", FRI), ("violations", FRI), ("lost", FRI), ("deliveries", SAT))}
        _check_words(said)
    finally:
        day.stop()


def _check_words(said: dict[tuple[str, str, str], Any]) -> None:
    """What the kitchen heads read, in both languages."""
    deliveries_id = said[("id", "deliveries", FRI)]
    s2 = next(x for x in deliveries_id.splitlines() if "(S2)" in x)
    assert "terlambat +25 menit" in s2 and "09:25" in s2 and "20/40" in s2
    violations_id = said[("id", "violations", FRI)]
    assert "tiba 09:25, batas 09:00: terlambat 25 menit" in violations_id
    assert "3 ompreng disajikan 7 jam 0 menit setelah dimasak" in violations_id, violations_id
    # S2's meals that reached school late and the one ompreng never served are read apart.
    assert "2 ompreng tiba di sekolah 6 jam 55 menit setelah dimasak" in violations_id, violations_id
    assert "1 ompreng belum disajikan" in violations_id, violations_id
    assert "1 ompreng tujuan SD Dua (S2) di-tap masuk di sini" in violations_id
    assert "25 kg dipakai padahal stok hanya 20 kg" in violations_id
    assert "suhu tidak tercatat untuk semua 4 ompreng" in violations_id, violations_id
    assert B3 not in said[("id", "lost", FRI)] and B4 in said[("id", "lost", FRI)]
    assert said[("id", "deliveries", SAT)].startswith("Tidak ada pengiriman pada Sabtu, 17 Januari 2026")
    assert "arrived 09:25, due 09:00: 25 min late" in said[("en", "violations", FRI)]
    assert "no temperature reading for any of the 4 containers" in said[("en", "violations", FRI)]
    assert said[("en", "deliveries", SAT)].startswith("No deliveries on 2026-01-17")
