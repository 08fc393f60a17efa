"""A messy school day replayed through real processes: `jejak hub run` and four `jejak edge run` daemons (the
kitchen exit, two school gates and the return desk), taps on their simulated readers and a phone's submissions
over CoAP, each edge's own sync, the hub's LMDB. Every expected answer below is worked out by hand from the day.

The day (Monday 12 January 2026, WIB), SD Negeri 1 (S1) and SD Negeri 2 (S2), 30 portions each, due 09:00,
10 portions an ompreng:
- 06:00 beras received 10 kg, 06:30 12 kg used: stock would go negative;
- 06:30 (23:30 UTC the day before) A1-A3 leave the kitchen for S1, 06:35 B1-B3 for S2;
- 07:10 S1's gate, offline since the morning: A1 tapped twice, B3 (S2's) tapped at the wrong school, A2's tag
  unreadable; A3 fell off the truck and never comes back. The gate syncs its backlog at 11:00;
- 09:40 S2's truck arrives 40 minutes late at 45 °C; B1 and B2 tapped in, the gate is killed -9, boots with its
  clock 5 hours behind and taps B3 in; the teacher counts 25 meals out of three full ompreng;
- the hub is restarted mid-morning;
- 13:00 A1, A2, B1, B2 back at the kitchen (A2 unread at the gate, but back); 23:30 WIB (16:30 UTC) B3 comes back
  after the return time.

Time is replayed, not waited for: each edge starts with `--clock` at the moment of its taps, and the hub runs
`--clock '<instant> records'`, so its time follows the records it accepts (a backlog synced later arrives at
the hub's time of then). The test waits on conditions only: a daemon ready, a log at the hub, a refill done.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from tests.mbg.common import DATE, MIDNIGHT, H, M
from tests.mbg.replay import Checkpoint, Day, deliveries, findings

PLAN = """
[defaults]
timezone = "WIB"
deadline = "09:00"
return_by = "15:00"
portions_per_container = 10
service_weekdays = [0, 1, 2, 3, 4, 5]
[[kitchens]]
id = "K1"
name = "SPPG Cibeureum"
[[schools]]
id = "S1"
name = "SD Negeri 1"
kitchen = "K1"
portions = 30
[[schools]]
id = "S2"
name = "SD Negeri 2"
kitchen = "K1"
portions = 30
"""
STAFF = "5a000001"
A1, A2, A3 = "04a1000000000001", "04a1000000000002", "04a1000000000003"
B1, B2, B3 = "04b2000000000001", "04b2000000000002", "04b2000000000003"
EDGES = {
    "exit": Checkpoint(site="K1", role="kitchen_exit", school="S1", staff=STAFF),
    "gate1": Checkpoint(site="S1", role="school_gate", event="received", staff=STAFF),
    "gate2": Checkpoint(site="S2", role="school_gate", event="received", staff=STAFF),
    "return": Checkpoint(site="K1", role="return", staff=STAFF),
}


async def test_a_messy_school_day_through_real_processes(tmp_path: Path) -> None:
    day = Day(tmp_path, PLAN, EDGES)
    exit_, gate1, gate2, ret = (day.edges[n] for n in EDGES)
    try:
        day.start_hub(MIDNIGHT + 5 * H + 50 * M)
        day.enroll()

        # 06:00 the kitchen takes in 10 kg of rice; 06:30 it uses 12 kg, more than it has.
        exit_.start_at(MIDNIGHT + 6 * H)
        await day.submit("exit", "stock", {"site": "K1", "item": "beras", "movement": "receive", "qty": 10_000,
                                           "unit": "g", "supplier": "KUD Sari"})
        exit_.stop()
        exit_.start_at(MIDNIGHT + 6 * H + 30 * M)
        await day.submit("exit", "stock", {"site": "K1", "item": "beras", "movement": "use", "qty": 12_000,
                                           "unit": "g"})
        await day.tap_accepted("exit", A1, A2, A3)  # S1's, through the reader (the exit's school is S1)
        exit_.stop()
        exit_.start_at(MIDNIGHT + 6 * H + 35 * M)  # S2's trip from the phone at the exit, which names its school
        await day.submit("exit", "scan", {"event": "departed", "site": "K1", "checkpoint": "kitchen_exit",
                                          "staff": STAFF, "tags": [B1, B2, B3], "school": "S2", "source": "coap"})
        await day.wait_synced("exit")

        # 07:10 S1's gate has no uplink: its taps wait on the edge.
        gate1.start_at(MIDNIGHT + 7 * H + 10 * M, hub=day.dead)
        await day.tap_accepted("gate1", A1, A1, B3)
        assert day.hub.heads().get(gate1.device_id) is None

        # 09:40 S2's truck, 40 minutes late and lukewarm; its gate dies after B2 and boots 5 hours behind.
        gate2.start_at(MIDNIGHT + 9 * H + 40 * M)
        await day.submit("gate2", "scan", {"event": "arrived", "site": "S2", "checkpoint": "school_gate",
                                           "staff": STAFF, "tags": [B1, B2, B3], "temp_cc": 4500, "source": "coap"})
        acked = await day.tap_accepted("gate2", B1, B2)
        gate2.kill()
        gate2.start_at(MIDNIGHT + 4 * H + 41 * M)
        acked += await day.tap_accepted("gate2", B3)
        await day.submit("gate2", "scan", {"event": "received", "site": "S2", "checkpoint": "school_gate",
                                           "staff": STAFF, "count": 25, "source": "coap"})
        await day.wait_synced("gate2")
        stored = {r.hex() for r in _ids(gate2.own_log())}
        assert {a["id"] for a in acked} <= stored, "an acknowledged tap was lost by kill -9"

        # The hub restarts mid-morning: its answers after are those from before.
        before = [day.api(f"/api/mbg/{q}", DATE) for q in ("deliveries", "violations", "stock", "lost", "short")]
        await day.restart_hub()  # its replayed time goes on from where it stood
        after = [day.api(f"/api/mbg/{q}", DATE) for q in ("deliveries", "violations", "stock", "lost", "short")]
        assert after == before

        # 11:00 S1's gate gets its uplink back and sends the morning's taps.
        gate1.stop()
        gate1.start_at(MIDNIGHT + 11 * H, hub=day.hub.coap)
        await day.wait_synced("gate1")

        # 13:00 the empties come back; A2's tag reads again here. 23:30 B3, last.
        ret.start_at(MIDNIGHT + 13 * H)
        await day.tap_accepted("return", A1, A2, B1, B2)
        ret.stop()
        ret.start_at(MIDNIGHT + 23 * H + 30 * M)
        await day.tap_accepted("return", B3)
        await day.wait_synced("exit", "gate1", "gate2", "return")

        got = deliveries(day, DATE)
        answers = day.api("/api/mbg/violations", DATE)
        found = findings(answers)
        # S1: A1 counted once, B3 not S1's, A2 unread: 10 of 30 portions, received 07:10 (on time: the tap's
        # time, not the 11:00 sync), short by 20.
        s1 = got["S1"]
        assert (s1["statuses"], s1["received_portions"], s1["shortfall"], s1["containers_in"], s1["containers_out"]) \
            == (["short"], 10, 20, 1, 3)
        assert _near(s1["received_at"], MIDNIGHT + 7 * H + 10 * M) and _near(s1["departed_at"], MIDNIGHT + 6 * H + 30 * M)
        # S2: arrived 09:40, 40 minutes late; three ompreng in, the teacher's count of 25 stands: short by 5.
        s2 = got["S2"]
        assert (s2["statuses"], s2["received_portions"], s2["shortfall"], s2["containers_in"]) == (["late", "short"], 25, 5, 3)
        assert _near(s2["arrived_at"], MIDNIGHT + 9 * H + 40 * M) and _near(s2["late_s"], 40 * M)
        ids = {n: e.device_id.hex()[:32] for n, e in day.edges.items()}
        expected = {("container_unreturned", "S1"), ("duplicate_scan", "S1"), ("misrouted", "S1"),
                    ("short_delivery", "S1"), ("short_delivery", "S2"), ("late_delivery", "S2"),
                    ("hot_holding", "S2"), ("stock_overdraw", "K1/beras"), ("late_sync", ids["gate1"]),
                    ("returned_without_arrival", "S1")}
        assert expected <= set(found), sorted(found)
        assert found[("container_unreturned", "S1")]["containers"] == [A3]  # B3 came back 23:30 WIB, the same day
        assert found[("duplicate_scan", "S1")]["containers"] == [A1]
        # A2 was not read at S1's gate but came back to the kitchen: 1 of the 2 ompreng S1 did not tap in most
        # likely arrived untapped. The count stays what the taps prove (short by 20).
        back = found[("returned_without_arrival", "S1")]
        assert (back["containers"], back["measured"], back["limit"]) == ([A2], 1, 2)
        assert (found[("misrouted", "S1")]["containers"], found[("misrouted", "S1")]["other_school"]) == ([B3], "S2")
        assert (found[("hot_holding", "S2")]["measured"], found[("hot_holding", "S2")]["limit"]) == (4500, 6000)
        assert (found[("stock_overdraw", "K1/beras")]["measured"],
                found[("stock_overdraw", "K1/beras")]["limit"]) == (12_000, 10_000)
        # gate1's backlog reached the hub when the replayed hub time stood at S2's taps (09:40): 2 h 30 min late.
        assert _near(found[("late_sync", ids["gate1"])]["measured"], 2 * H + 30 * M)
        # gate2 came back from kill -9 five hours behind. A clock behind by less than max_sync_delay_s cannot be
        # told from an uplink outage by the time rule alone (hub/mbg/README.md, Clocks): it is flagged as records
        # synced late by 5 h, its B3 tap keeps its device time (04:41) and so reads as received before it arrived;
        # the chain itself gives the clock away (clock_went_back).
        assert _near(found[("late_sync", ids["gate2"])]["measured"] + 5 * M, 5 * H)
        # Along gate2's own chain its clock went back: B3's tap was made about 5 hours before B2's.
        back = found[("clock_went_back", ids["gate2"])]
        assert 5 * H - 10 * M <= back["measured"] <= 5 * H and back["limit"] == 15 * M
        assert found[("out_of_order", "S2")]["containers"] == [B3]
        assert [x["tag"] for x in day.api("/api/mbg/lost", DATE)["lost"]] == [A3]
        assert [(x["item"], x["on_hand"], x["flags"]) for x in day.api("/api/mbg/stock", DATE)["on_hand"]] \
            == [("beras", -2000, ["overdraw"])]
        [b3] = [t for t in day.api(f"/api/mbg/containers/{B3}", DATE)["timelines"] if t["date"] == DATE]
        assert any(st["event"] == "returned" and _near(st["time"], MIDNIGHT + 23 * H + 30 * M) for st in b3["steps"])
        assert day.synced(*EDGES) and sum(1 for _ in gate2.own_log()) == day.hub.heads()[gate2.device_id][0]

        # What the kitchen head reads: `jejak mbg` in Indonesian, dates and numbers written the Indonesian way,
        # times of day in WIB, no English.
        said = {q: day.jejak_mbg(q, DATE) for q in ("deliveries", "violations", "lost", "stock", "late", "short")}
        text = "\n".join(said.values())
        assert "Pengiriman Senin, 12 Januari 2026" in said["deliveries"] and DATE not in text
        s2_line = next(x for x in said["deliveries"].splitlines() if "(S2)" in x)
        assert "terlambat +40 menit" in s2_line and "09:40" in s2_line and "25/30" in s2_line
        assert "45,0 °C, harus tetap 60,0 °C atau lebih sampai disajikan" in said["violations"]
        assert "12 kg dipakai padahal stok hanya 10 kg" in said["violations"]
        assert "ompreng kembali tanpa tap di sekolah" in said["violations"] and "jam perangkat mundur" in said["violations"]
        assert "1 dari 2 ompreng yang tidak di-tap masuk di sini kembali ke dapur" in said["violations"]
        assert "-2 kg" in said["stock"] and A3 in said["lost"] and B3 not in said["lost"]
        english = re.findall(r"\b(late|short|records?|containers?|arrived|due|portions|used|served|note|check|"
                             r"act now|on time|missing)\b", text)
        assert english == [], (english, text)
    finally:
        day.stop()


def _near(t: int | None, expected: int) -> bool:
    """A tap lands a little after its edge's clock was set (the daemon starts, then the staff taps)."""
    return t is not None and expected <= t <= expected + 5 * M


def _ids(raws: list[bytes]) -> list[bytes]:
    return [hashlib.sha256(r).digest() for r in raws]
