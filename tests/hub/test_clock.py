"""The hub's clock: wall time, a past instant at a pace, or a day backfilled from its records' own times."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request

import aiohttp
import pytest

from hub.app import start_hub
from hub.clock import ClockSpec, HubClock, parse_clock
from hub.config import HubConfig
from ledger import ChainBuilder, Ed25519Signer
from ledger.enroll import make_enroll_request
from tests.mbg.common import DATE, MIDNIGHT, H, M
from tests.ports import free_tcp
from tests.wait import wait_until

PLAN = """
[defaults]
timezone = "WIB"
deadline = "09:00"
portions_per_container = 10
[[kitchens]]
id = "K1"
name = "SPPG Cibeureum"
[[schools]]
id = "S1"
name = "SD Negeri 1"
kitchen = "K1"
portions = 20
"""


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
