"""Scheduler, watchdog, simulator and hal cases: plain functions for CPython (pytest) and MicroPython (node)."""

from firmware import hal, sim
from firmware.actions import Record, Restart, Sample
from firmware.schedule import SensorSchedule, Watchdog


def check_sensors_due_on_their_periods():
    s = SensorSchedule("PASAR-01")
    s.add("room", 1000, 0)
    s.add("probe", 300, 0, offset_ms=100)
    assert s.sensors == ["probe", "room"]
    assert s.tick(0) == [Sample("room")]
    assert s.next_deadline() == 100  # room is busy until its result comes back
    assert s.tick(50) == []
    assert s.tick(100) == [Sample("probe")]
    assert s.tick(150) == []  # both busy
    s.result("room", {"temp_cc": 2900}, 160)
    s.result("probe", {"temp_cc": 6000}, 170)
    assert s.next_deadline() == 400
    assert s.tick(400) == [Sample("probe")]
    s.result("probe", {"temp_cc": 6000}, 401)
    assert s.tick(1000) == [Sample("probe"), Sample("room")]


def check_missed_periods_are_skipped_not_replayed():
    s = SensorSchedule("PASAR-01")
    s.add("room", 100, 0)
    assert s.tick(0) == [Sample("room")]
    s.result("room", {"crowd": 1}, 1)
    assert s.tick(750) == [Sample("room")]  # one sample, not seven
    assert s.stats["missed"] == 6
    s.result("room", {"crowd": 1}, 751)
    assert s.next_deadline() == 800


def check_reading_records():
    s = SensorSchedule("PASAR-01")
    s.add("room", 1000, 0)
    s.tick(0)
    out = s.result("room", {"temp_cc": 2875, "rh_cp": 6550, "crowd": 12}, 5)
    assert out == [Record("reading", {"site": "PASAR-01", "sensor": "room", "temp_cc": 2875, "rh_cp": 6550,
                                      "crowd": 12})], out
    # implausible values are dropped; a reading with nothing left is not written
    s.tick(1000)
    out = s.result("room", {"temp_cc": 99999, "rh_cp": -5, "crowd": 3}, 1001)
    assert out[0].body == {"site": "PASAR-01", "sensor": "room", "crowd": 3}, out
    s.tick(2000)
    assert s.result("room", {"rh_cp": 20000, "temp_cc": True}, 2001) == []
    assert s.stats["invalid"] == 4 and s.stats["readings"] == 2


def check_failed_sample_retries_next_period():
    s = SensorSchedule("PASAR-01")
    s.add("room", 1000, 0)
    assert s.tick(0) == [Sample("room")]
    assert s.failed("room", 10) == []
    assert s.tick(500) == []
    assert s.tick(1000) == [Sample("room")]
    assert s.stats["failures"] == 1


def check_schedule_refuses_bad_input():
    for args in (("", 1000), ("room", 0), ("room", True), ("room", 1.5)):
        try:
            SensorSchedule("PASAR-01").add(args[0], args[1], 0)
        except ValueError:
            continue
        raise AssertionError(f"accepted {args!r}")


def check_watchdog_restarts_stuck_driver_with_backoff():
    w = Watchdog(timeout_ms=1000, max_backoff_ms=5000)
    w.watch("nfc", 0)
    w.watch("room", 0, timeout_ms=3000)
    w.kick("nfc", 800)
    assert w.check(1500) == []
    assert w.next_deadline() == 1800
    assert w.check(1800) == [Restart("nfc", "no_progress", 1000, 1)]
    assert w.check(2500) == []  # backing off: 2 x timeout
    assert w.check(3000) == [Restart("room", "no_progress", 3000, 1)]
    out = w.check(3800)
    assert out == [Restart("nfc", "no_progress", 3000, 2)], out
    assert w.check(7799) == []
    assert [r.attempt for r in w.check(7800)] == [3]
    assert w.check(12799) == [Restart("room", "no_progress", 12799, 2)]  # 3000 x 2^2 capped at 5000
    w.kick("nfc", 12799)  # progress resets the backoff
    assert w.attempts("nfc") == 0
    assert w.check(13798) == []
    assert w.check(13799) == [Restart("nfc", "no_progress", 1000, 1)]
    w.unwatch("nfc")
    w.kick("nfc", 13900)  # kicking an unwatched driver is harmless
    assert w.stats["restarts"] == 6


def check_rng_and_scenario_are_deterministic():
    a, b = sim.Rng(42), sim.Rng(42)
    seq = [a.next() for _ in range(5)]
    assert seq == [b.next() for _ in range(5)]
    # fixed values: the same on every Python (xorshift32)
    assert seq[0] == 11355432, seq
    assert sim.Rng(0).next() != 0
    assert sim.scenario(7) == sim.scenario(7)
    assert sim.scenario(7) != sim.scenario(8)
    script = sim.scenario(7, sessions=2, staff=["5a000001"])
    assert script[0][1] == "5a000001" or script[1][1] == "5a000001"
    times = [entry[0] for entry in script]
    assert times == sorted(times)


def check_sim_reader_reports_while_present():
    clock = hal.ManualClock(0)
    reader = sim.SimNfcReader(clock, [(100, "04aa", 50), (300, "04bb")], hold_ms=20)
    reader.open()
    seen = []
    for t in range(0, 400, 10):
        clock.ms = t
        seen.append(reader.poll())
    assert seen[10:15] == ["04aa"] * 5 and seen[15] is None
    assert seen[30:32] == ["04bb"] * 2 and seen[32] is None
    assert reader.done()
    # a tap that came and went between two polls is still reported (lossless), or lost (lossless=False)
    for lossless, expected in ((True, ["04aa", "04bb", None]), (False, [None, None, None])):
        late = sim.SimNfcReader(clock, [(100, "04aa", 50), (300, "04bb")], hold_ms=20, lossless=lossless)
        late.open()
        clock.ms = 500
        assert [late.poll() for _ in range(3)] == expected, lossless
    reader.fail(2)
    for _ in range(2):
        try:
            reader.poll()
        except hal.DriverError:
            continue
        raise AssertionError("no simulated failure")
    reader.stick()
    try:
        reader.poll()
    except hal.DriverError:
        pass
    else:
        raise AssertionError("not stuck")
    reader.restart()
    assert reader.poll() is None and reader.restarts == 1


def check_sim_sensor_is_deterministic():
    a = sim.SimSensor("room", seed=5, fields=("temp_cc", "rh_cp", "crowd"))
    b = sim.SimSensor("room", seed=5, fields=("temp_cc", "rh_cp", "crowd"))
    ra = [a.read() for _ in range(20)]
    assert ra == [b.read() for _ in range(20)]
    for values in ra:
        assert 1300 <= values["temp_cc"] <= 4300 and 3000 <= values["rh_cp"] <= 9800 and values["crowd"] >= 0
    scripted = sim.SimSensor("probe", script=[{"temp_cc": 1}, {"temp_cc": 2}])
    assert [scripted.read()["temp_cc"] for _ in range(3)] == [1, 2, 2]


def check_arrival_filter_makes_taps():
    f = hal.ArrivalFilter(gap_ms=100)
    assert f.feed("04aa", 0) == "04aa"
    assert f.feed("04aa", 50) is None  # still on the antenna
    assert f.feed(None, 120) is None  # a missed poll: 70 ms since last seen, still present
    assert f.feed("04aa", 140) is None
    assert f.feed(None, 300) is None  # gone
    assert f.feed("04aa", 310) == "04aa"  # presented again: a new tap


def check_arrival_filter_boundaries():
    f = hal.ArrivalFilter(gap_ms=100)
    assert f.feed("04aa", 0) == "04aa"
    assert f.feed("04aa", 100) is None  # 100 apart: same presentation
    assert f.feed("04aa", 201) == "04aa"  # 101 apart: lifted and tapped again
    assert f.feed("04bb", 202) == "04bb"  # two tags in the field alternate
    assert f.feed("04aa", 203) is None


def check_uid_normalisation():
    assert hal.normalize_uid("04:A1:B2:C3") == "04a1b2c3"
    assert hal.normalize_uid(bytearray([4, 161, 178, 195])) == "04a1b2c3"
    for bad in ("", "0", "041", "zz11", "04" * 17, None, 12):
        assert hal.normalize_uid(bad) is None, bad
    assert hal.centi(25.085) in (2508, 2509)  # float representation; either is honest
    assert hal.centi(-0.005) in (0, -1) and hal.centi(-12.345) in (-1234, -1235)
    assert hal.centi(61.5) == 6150 and hal.centi(-3.2) == -320


def check_manual_clock():
    c = hal.ManualClock(0, wall=1000)
    c.advance(2500)
    assert c.ticks_ms() == 2500 and c.wall() == 1002
    s = hal.SystemClock()
    t0 = s.ticks_ms()
    assert s.ticks_ms() >= t0 and s.wall() > 1600000000
