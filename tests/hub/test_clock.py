"""The hub's clock: wall time, a past instant at a pace, or a day backfilled from its records' own times."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from hub.app import start_hub
from hub.clock import ClockSpec, DeviceClocks, HubClock, parse_clock
from hub.config import HubConfig
from ledger import ChainBuilder, Ed25519Signer
from ledger.enroll import make_enroll_request
from tests.mbg.common import DATE, MIDNIGHT, H, M
from tests.ports import free_tcp
from tests.wait import wait_until

KITCHEN = """
[defaults]
timezone = "WIB"
deadline = "09:00"
portions_per_container = 10
[[kitchens]]
id = "K1"
name = "SPPG Cibeureum"
"""


def _schools(*numbers: int) -> str:
    """An MBG plan: K1 and its schools S<n>, 20 portions each."""
    return KITCHEN + "".join(f'[[schools]]\nid = "S{n}"\nname = "SD Negeri {n}"\nkitchen = "K1"\nportions = 20\n'
                             for n in numbers)


PLAN = _schools(1)


class Ticks:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_settings_parse_or_say_what_is_expected():
    assert parse_clock("wall") == ClockSpec() and parse_clock("").wall
    assert parse_clock("2026-01-12T05:00+07:00") == ClockSpec(start=MIDNIGHT + 5 * H, speed=1.0)
    assert parse_clock("2026-01-12T05:00+07:00 x60") == ClockSpec(start=MIDNIGHT + 5 * H, speed=60.0)
    # Following records, the clock stands still between them unless a pace is given.
    assert parse_clock("2026-01-12T05:00+07:00 records") == ClockSpec(start=MIDNIGHT + 5 * H, speed=0.0,
                                                                      follow_records=True)
    for bad, says in (("yesterday", "ISO instant"), ("2026-01-12T05:00", "UTC offset"),
                      ("2026-01-12T05:00+07:00 x-2", "speed"), ("2026-01-12T05:00+07:00 fast", "unexpected")):
        with pytest.raises(ValueError, match=says):
            parse_clock(bad)
    with pytest.raises(ValueError, match="clock"):
        HubConfig(clock="noon")


def test_a_started_clock_runs_at_its_pace_then_at_one_x_after_the_day():
    ticks = Ticks()
    clock = HubClock(parse_clock("2026-01-12T04:00+07:00 x100"), slow_after=MIDNIGHT + 17 * H, ticks=ticks)
    assert clock() == MIDNIGHT + 4 * H
    ticks.t += 36
    assert clock() == MIDNIGHT + 5 * H
    ticks.t += 12 * 36  # 12 simulated hours later: 17:00 ...
    assert clock() == MIDNIGHT + 17 * H
    ticks.t += 10  # ... and from then on, real seconds
    assert clock() == MIDNIGHT + 17 * H + 10
    clock.set(MIDNIGHT)
    assert clock() == MIDNIGHT
    clock.set(None)
    assert clock() == MIDNIGHT + 17 * H + 10
    clock.skip_to(MIDNIGHT + 6 * H)
    assert clock() == MIDNIGHT + 6 * H
    clock.skip_to(MIDNIGHT + 19 * H)  # past 17:00, where it runs at 1x: it stands where it was sent
    assert clock() == MIDNIGHT + 19 * H
    ticks.t += 10
    assert clock() == MIDNIGHT + 19 * H + 10


def test_a_clock_that_follows_records_moves_only_forward_and_not_to_a_wrong_device_clock():
    clock = HubClock(parse_clock("2026-01-12T05:00+07:00 records"), ticks=Ticks())
    assert clock() == MIDNIGHT + 5 * H
    clock.saw(MIDNIGHT + 7 * H)
    clock.saw(MIDNIGHT + 6 * H)
    assert clock() == MIDNIGHT + 7 * H
    clock.saw(MIDNIGHT + 400 * 24 * H)  # a device a year ahead
    assert clock() == MIDNIGHT + 7 * H
    wall = HubClock(wall=lambda: 1_800_000_000.7)
    wall.saw(1_900_000_000)
    assert wall() == 1_800_000_000


def test_a_paced_clock_that_follows_records_is_moved_by_what_most_devices_say():
    ticks = Ticks()
    clock = HubClock(parse_clock("2026-01-12T05:00+07:00 x60 records"), ticks=ticks)
    # Alone, or two of them, a device moves it: there is no telling which of two clocks is wrong.
    clock.saw(MIDNIGHT + 6 * H, b"exit")
    clock.saw(MIDNIGHT + 7 * H, b"gate1")
    assert clock() == MIDNIGHT + 7 * H
    # A third says 09:00 while the others, carried forward at the pace, say 07:00 and 07:00: it moves nothing,
    # and neither do its later records ahead of the others by more than a few minutes.
    clock.saw(MIDNIGHT + 9 * H, b"gate2")
    assert clock() == MIDNIGHT + 7 * H
    ticks.t += 10 * 60 / 60  # ten minutes of the replay
    clock.saw(MIDNIGHT + 9 * H + 10 * M, b"gate2")
    assert clock() == MIDNIGHT + 7 * H
    # Within a few minutes of what the others say, a device moves it (it tapped just now).
    clock.saw(MIDNIGHT + 7 * H + 14 * M, b"gate1")
    assert clock() == MIDNIGHT + 7 * H + 14 * M
    # Once most devices say so, that time is the hub's.
    clock.saw(MIDNIGHT + 9 * H + 10 * M, b"exit")
    assert clock() == MIDNIGHT + 9 * H + 10 * M
    # Unpaced, a day backfilled one device after another moves it to each one's times, as before.
    bulk = HubClock(parse_clock("2026-01-12T05:00+07:00 records"), ticks=Ticks())
    for n, device in enumerate((b"a", b"b", b"c")):
        bulk.saw(MIDNIGHT + (6 + 2 * n) * H, device)
    assert bulk() == MIDNIGHT + 10 * H


async def test_a_past_day_backfilled_in_bulk_is_judged_by_its_own_times(tmp_path):
    (tmp_path / "mbg.toml").write_text(PLAN)
    config = HubConfig(data_dir=str(tmp_path / "hub"), http_port=0, coap_port=0, mdns=False, auto_approve=True,
                       mbg_plan=str(tmp_path / "mbg.toml"), clock=f"{DATE}T05:00+07:00 records")
    running = await start_hub(config)
    try:
        hub = running.hub
        assert hub.clock() == MIDNIGHT + 5 * H
        tags = ["04000000000001", "04000000000002"]

        def day_of(name: str, site: str, role: str, taps: list[tuple[int, dict]]) -> tuple[bytes, list[bytes]]:
            signer = Ed25519Signer.from_seed(name.encode().ljust(32, b"."))
            now = [MIDNIGHT + 4 * H]
            builder = ChainBuilder(signer, clock=lambda: now[0], boot=1)
            hub.enroll(make_enroll_request(signer, site=site, role=role, name=name, time=hub.clock(),
                                           hub_id=hub.hub_id))
            raws = [builder.genesis().raw]
            for at, body in taps:
                now[0] = at
                raws.append(builder.append("scan", {"site": site, "source": "nfc", **body}).raw)
            return builder.device_id, raws

        # Weeks later, each device's backlog of that day reaches the hub in one push.
        exit_id, exit_raws = day_of("exit", "K1", "kitchen_exit", [
            (MIDNIGHT + 6 * H, {"event": "cooked", "checkpoint": "kitchen", "count": 20, "temp_cc": 9000}),
            (MIDNIGHT + 6 * H + 30 * M, {"event": "departed", "checkpoint": "kitchen_exit", "tags": tags,
                                         "school": "S1", "count": 20})])
        gate_id, gate_raws = day_of("gate", "S1", "school_gate", [
            (MIDNIGHT + 7 * H + 10 * M, {"event": "arrived", "checkpoint": "school_gate", "tags": tags,
                                         "temp_cc": 7200}),
            (MIDNIGHT + 7 * H + 15 * M, {"event": "received", "checkpoint": "school_gate", "tags": tags,
                                         "count": 20}),
            (MIDNIGHT + 8 * H, {"event": "served", "checkpoint": "school_gate", "count": 20, "temp_cc": 6600})])
        assert hub.ingest(exit_id, exit_raws).accepted == len(exit_raws)
        assert hub.ingest(gate_id, gate_raws).accepted == len(gate_raws)
        assert hub.clock() == MIDNIGHT + 8 * H  # the newest record's own time

        async with aiohttp.ClientSession() as http:
            async with http.get(f"{running.http_url}/api/mbg/deliveries") as resp:
                deliveries = await resp.json()
            async with http.get(f"{running.http_url}/api/mbg/violations") as resp:
                found = await resp.json()
        assert deliveries["date"] == DATE  # "today" is the replayed day
        [school] = deliveries["kitchens"][0]["schools"]
        assert (school["status"], school["received_portions"], school["arrived_at"]) == (
            "on_time", 20, MIDNIGHT + 7 * H + 10 * M)
        assert school["time_basis"] == "device"
        # Backfilled records are neither late syncs nor wrong clocks: each arrived at its own time.
        assert [f["code"] for f in found["findings"]] == [] and found["violations"] == []
    finally:
        await running.close()


TAGS = {f"S{n}": [f"04{n:02d}0000000001", f"04{n:02d}0000000002"] for n in (1, 2, 3)}


async def _paced_day(tmp_path: Path, *, fast_s: int) -> dict[str, Any]:
    """A morning replayed at x60 on a clock that follows records, each device pushing as it taps: the exit's
    trips at 06:00, S1's gate at 08:30, S3's at 08:40 (its clock `fast_s` ahead), S2's at 08:50. What the hub
    answers at 08:45 and at 09:30."""
    tmp_path.mkdir()
    (tmp_path / "mbg.toml").write_text(_schools(1, 2, 3))
    config = HubConfig(data_dir=str(tmp_path / "hub"), http_port=0, coap_port=0, mdns=False, auto_approve=True,
                       mbg_plan=str(tmp_path / "mbg.toml"))
    ticks = Ticks()
    clock = HubClock(parse_clock(f"{DATE}T05:00+07:00 x60 records"), ticks=ticks)
    running = await start_hub(config, clock=clock)
    answers: dict[str, Any] = {}
    try:
        hub = running.hub

        def at(t: int) -> None:  # the replay's pace reaches `t`
            ticks.t = 1000.0 + (t - (MIDNIGHT + 5 * H)) / 60

        def push(name: str, site: str, role: str, t: int, bodies: list[dict[str, Any]], skew: int = 0) -> None:
            at(t)
            signer = Ed25519Signer.from_seed(name.encode().ljust(32, b"."))
            builder = ChainBuilder(signer, clock=lambda: t + skew, boot=1)
            hub.enroll(make_enroll_request(signer, site=site, role=role, name=name, time=hub.clock(),
                                           hub_id=hub.hub_id))
            raws = [builder.genesis().raw] + [builder.append("scan", {"site": site, "source": "nfc", **b}).raw
                                              for b in bodies]
            assert hub.ingest(builder.device_id, raws).accepted == len(raws)

        def gate(school: str) -> list[dict[str, Any]]:
            return [{"event": "arrived", "checkpoint": "school_gate", "tags": TAGS[school]},
                    {"event": "received", "checkpoint": "school_gate", "tags": TAGS[school], "count": 20}]

        async def ask(http: aiohttp.ClientSession, *queries: str) -> dict[str, Any]:
            out = {}
            for q in queries:
                async with http.get(f"{running.http_url}/api/mbg/{q}?date={DATE}") as resp:
                    out[q] = await resp.json()
            return out

        push("exit", "K1", "kitchen_exit", MIDNIGHT + 6 * H, [
            {"event": "departed", "checkpoint": "kitchen_exit", "tags": TAGS[s], "school": s, "count": 20}
            for s in ("S1", "S2", "S3")])
        push("gate1", "S1", "school_gate", MIDNIGHT + 8 * H + 30 * M, gate("S1"))
        push("gate3", "S3", "school_gate", MIDNIGHT + 8 * H + 40 * M, gate("S3"), skew=fast_s)
        async with aiohttp.ClientSession() as http:
            at(MIDNIGHT + 8 * H + 45 * M)
            answers["now_0845"] = hub.clock()
            answers["0845"] = await ask(http, "deliveries", "missing")
            push("gate2", "S2", "school_gate", MIDNIGHT + 8 * H + 50 * M, gate("S2"))
            at(MIDNIGHT + 9 * H + 30 * M)
            answers["now_0930"] = hub.clock()
            answers["0930"] = await ask(http, "deliveries", "missing", "lost", "violations")
    finally:
        await running.close()
    return answers


def _judged(answers: dict[str, Any]) -> dict[str, Any]:
    """What the hub said of each delivery, what it called missing or lost, and what it found, leaving out the
    basis of each time and the findings about a device's own clock."""
    def schools(deliveries: dict[str, Any]) -> dict[str, Any]:
        return {d["school"]: {k: v for k, v in d.items() if k != "time_basis"}
                for k in deliveries["kitchens"] for d in k["schools"]}

    late = answers["0930"]
    return {"now": (answers["now_0845"], answers["now_0930"]),
            "0845": (schools(answers["0845"]["deliveries"]), answers["0845"]["missing"]),
            "0930": (schools(late["deliveries"]), late["missing"], late["lost"],
                     sorted((f["code"], f["subject"]) for f in late["violations"]["findings"]
                            if f["code"] != "clock_skew"))}


async def test_one_device_hours_fast_does_not_move_a_paced_replays_clock(tmp_path):
    """A paced replay whose clock follows records: S3's gate, two hours fast, taps in at 08:40 by the day's
    time. What the hub says of every delivery, and of what is missing or lost, is what it says with S3's gate
    right (it dragged the hub to 10:40: S2 looked missing at 08:45, S3 late and S2's taps synced late)."""
    right = _judged(await _paced_day(tmp_path / "right", fast_s=0))
    fast = await _paced_day(tmp_path / "fast", fast_s=2 * H)
    assert right["now"] == (MIDNIGHT + 8 * H + 45 * M, MIDNIGHT + 9 * H + 30 * M)
    assert [d["statuses"] for d in right["0930"][0].values()] == [["on_time"]] * 3
    assert _judged(fast) == right
    # S3's gate is told of by its own clock's finding; its delivery is timed by its arrival.
    [skew] = [f for f in fast["0930"]["violations"]["findings"] if f["code"] == "clock_skew"]
    assert skew["measured"] >= 2 * H - 5 * M


def test_hub_run_with_a_clock_set_to_a_past_day_answers_for_that_day(tmp_path):
    (tmp_path / "mbg.toml").write_text(PLAN)
    port = free_tcp()
    (tmp_path / "hub.toml").write_text(f'data_dir = "{tmp_path / "var"}"\nhttp_port = {port}\ncoap_port = 0\n'
                                       f'mdns = false\nmbg_plan = "{tmp_path / "mbg.toml"}"\n[bridges]\nenabled = false\n')
    proc = subprocess.Popen([sys.executable, "-m", "tools.cli", "hub", "run", "--config", str(tmp_path / "hub.toml"),
                             "--clock", f"{DATE}T10:00+07:00 records"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        names = wait_until(lambda: _get(f"http://127.0.0.1:{port}/api/mbg/names"), 60, what="the hub to answer",
                         tolerate=(OSError,))
        assert (names["today"], names["now"]) == (DATE, MIDNIGHT + 10 * H)  # it stands still until records come
        deliveries = _get(f"http://127.0.0.1:{port}/api/mbg/deliveries")
        # 10:00 on that day with nothing received: the school's 09:00 delivery is missing.
        assert deliveries["date"] == DATE and deliveries["totals"]["missing"] == 1
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _get(url: str):
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


def test_hub_run_refuses_a_bad_clock_as_a_usage_error(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "tools.cli", "hub", "run", "--clock", "soon"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "ISO instant" in proc.stderr
    help_text = subprocess.run([sys.executable, "-m", "hub.demo", "--help"], capture_output=True, text=True,
                               timeout=60).stdout
    assert "--clock" in help_text and "records" in help_text


def test_device_clocks_found_off_are_kept_across_a_restart(tmp_path) -> None:
    # A return desk a day behind, a gate on time: a restarted hub still names the desk, and forgets it once the
    # desk syncs with its clock right.
    path = tmp_path / "device-clocks.json"
    clocks = DeviceClocks(limit_s=900, path=path)
    clocks.saw(b"\x01" * 16, 1_768_000_000 - 86_400, 1_768_000_000)
    clocks.saw(b"\x02" * 16, 1_768_000_005, 1_768_000_000)
    again = DeviceClocks(limit_s=900, path=path)
    assert [(d, c.offset_s, c.measured_at) for d, c in again.off()] == [(b"\x01" * 16, -86_400, 1_768_000_000)]
    again.saw(b"\x01" * 16, 1_768_003_600, 1_768_003_600)
    assert DeviceClocks(limit_s=900, path=path).off() == []
    path.write_text("not json")
    assert DeviceClocks(limit_s=900, path=path).off() == []  # said in the log; known again at the next sync


def test_a_clock_off_times_the_records_of_its_boot_that_arrive_while_it_is_off(tmp_path) -> None:
    """The spans of a device's clock off: a record of the boot measured, arriving within the span, is timed by the
    offset; another boot's, or one arriving outside the span, is not. Kept across a restart."""
    t, gate, desk = 1_768_000_000, b"\x01" * 16, b"\x02" * 16
    path = tmp_path / "device-clocks.json"
    clocks = DeviceClocks(limit_s=900, path=path)
    clocks.saw(gate, t - 7_200, t, boot=3, proved=True)
    clocks.saw(gate, t + 600 - 7_190, t + 600, boot=3, proved=True)  # 10 s off what it was: the same span
    clocks.saw(gate, t + 3_605, t + 3_600, boot=3, proved=True)  # set right an hour later

    def answers(c: DeviceClocks) -> list[int | None]:
        return [c.offset_at(gate, 3, t - 7_000, t + 200),  # made and sent within the span
                c.offset_at(gate, 3, t - 86_400, t + 3_000),  # made a day before, sent within it: proved, so timed
                c.offset_at(gate, 2, t - 7_000, t + 200),  # of the boot before
                c.offset_at(gate, 3, t - 7_000, t - 100),  # arrived before it was measured
                c.offset_at(gate, 3, t + 3_700, t + 3_700),  # after it came right
                c.offset_at(desk, 0, t, t)]  # never measured

    assert answers(clocks) == [-7_200, -7_200, None, None, None, None]
    again = DeviceClocks(limit_s=900, path=path)
    assert answers(again) == answers(clocks) and again.off() == []
    # Without OSCORE anyone may say a device's time: a span times only the records its offset explains.
    again.saw(desk, t - 3_600, t, boot=1)
    assert again.offset_at(desk, 1, t - 3_500, t + 100) == -3_600
    assert again.offset_at(desk, 1, t - 86_400, t + 100) is None
    again.saw(desk, t + 30, t + 30, boot=1)  # said again within the minute: the span stands
    assert again.offset_at(desk, 1, t - 3_500, t + 100) == -3_600
    # A new boot, or an offset moved by more than a minute, opens another span.
    again.saw(desk, t + 200 - 1_800, t + 200, boot=2, proved=True)
    assert [again.offset_at(desk, b, t - 1_700, t + 300) for b in (1, 2)] == [None, -1_800]
    kept = json.loads(path.read_text())
    assert [(i["device"], i["offset_s"], i["since"], i["until"], i["boot"], i["proved"]) for i in kept] == [
        (gate.hex(), -7_200, t, t + 3_600, 3, True), (desk.hex(), -3_600, t, t + 200, 1, False),
        (desk.hex(), -1_800, t + 200, None, 2, True)]
    # A file an earlier hub wrote, (device, offset, measured at): a span open since then, of any boot.
    path.write_text(json.dumps([[gate.hex(), -7_200, t]]))
    earlier = DeviceClocks(limit_s=900, path=path)
    assert earlier.offset_at(gate, 9, t - 7_100, t + 100) == -7_200
    assert [(d, c.offset_s) for d, c in earlier.off()] == [(gate, -7_200)]


def test_the_records_made_before_a_clock_stepped_are_timed_by_the_clock_as_it_was(tmp_path) -> None:
    """A gate booted three hours slow (no real-time clock), tapped offline, then NTP set it right; it syncs with
    its clock right and says where it stepped: the records before the step are timed by the clock as it was, those
    after by the span logic (none: it is right). Two steps add up backwards. Kept across a restart, in the same
    file as the spans; an unproved sayer times only the records it explains, as for spans."""
    t, gate, desk = 1_768_000_000, b"\x01" * 16, b"\x02" * 16
    path = tmp_path / "device-clocks.json"
    clocks = DeviceClocks(limit_s=900, path=path)
    clocks.saw(gate, t + 4, t, boot=5, proved=True, steps=((40, 10_800), (52, -600)))
    assert clocks.off() == [], "its clock is right now"

    def answers(c: DeviceClocks) -> list[int | None]:
        return [c.offset_at(gate, 5, t - 12_000, t + 60, 10),  # before both steps: 3 h slow, then 10 min back
                c.offset_at(gate, 5, t - 1_000, t + 60, 45),  # between them: 10 min fast
                c.offset_at(gate, 5, t - 100, t + 60, 52),  # from the last step on: the clock as measured
                c.offset_at(gate, 4, t - 12_000, t + 60, 10),  # another boot's record
                c.offset_at(gate, 5, t - 12_000, t + 60)]  # no seq given: spans only

    assert answers(clocks) == [4 - 10_800 + 600, 4 + 600, None, None, None]
    again = DeviceClocks(limit_s=900, path=path)
    assert answers(again) == answers(clocks)
    kept = [i for i in json.loads(path.read_text()) if "steps" in i]
    assert kept == [{"device": gate.hex(), "boot": 5, "steps_offset_s": 4, "measured_at": t,
                     "steps": [[40, 10_800], [52, -600]], "proved": True}]
    # A new boot's steps replace the old ones; without OSCORE they time only the records they explain.
    again.saw(desk, t, t, boot=1, steps=((3, 7_200),))
    assert again.offset_at(desk, 1, t - 7_000, t + 100, 2) == -7_200
    assert again.offset_at(desk, 1, t - 20_000, t + 100, 2) is None
    again.saw(desk, t + 30, t + 30, boot=1, steps=((3, 100_000),))  # said again within the minute: not taken
    assert again.offset_at(desk, 1, t - 7_000, t + 100, 2) == -7_200
    again.saw(gate, t + 200, t + 200, boot=6, proved=True, steps=((2, 60),))
    assert again.offset_at(gate, 5, t - 12_000, t + 60, 10) is None
    assert again.offset_at(gate, 6, t - 60, t + 260, 1) == -60
