"""Benchmark of the tap state machine: taps (with their confirm) per second, on CPython or MicroPython."""

import time

from firmware.actions import Record
from firmware.tap import TapConfig, TapMachine


def _now_us():
    if hasattr(time, "ticks_us"):
        return time.ticks_us()
    return time.perf_counter_ns() // 1000


def _elapsed_us(start):
    if hasattr(time, "ticks_diff"):
        return time.ticks_diff(_now_us(), start)
    return _now_us() - start


def _uids(n):
    return ["04%012x" % (i * 2654435761 & 0xFFFFFFFFFFFF) for i in range(n)]


def _drive(machine, uids, staff, step_ms, dup_every):
    """Feed one staff session with every uid (and a re-tap every dup_every), confirming each record.
    Returns the number of events (taps plus confirms) fed."""
    now = 0
    events = 1
    machine.tap(staff, now)
    for i in range(len(uids)):
        now += step_ms
        for action in machine.tap(uids[i], now):
            if isinstance(action, Record):
                machine.confirm(action.ref)
                events += 1
        events += 1
        if dup_every and i % dup_every == 0:
            machine.tap(uids[i], now + 1)
            events += 1
    for action in machine.close(now + step_ms):
        if isinstance(action, Record):
            machine.confirm(action.ref)
            events += 1
    return events + 1


def run(quick=False):
    """Measure tap state machine events per second, per tag record and in batch mode.

    Returns a list of {"name", "events", "seconds", "events_per_s"} dicts (and prints them)."""
    n = 2000 if quick else 50000
    uids = _uids(n)
    results = []
    for name, options in (("tap_per_tag", {}), ("tap_batch_64", {"batch_linger_ms": 1000, "batch_max": 64})):
        config = TapConfig("SPPG-BENCH-01", "kitchen_exit", staff_prefixes=("5a",), school="SD-BENCH-01",
                           dup_window_ms=60000, session_timeout_ms=10 ** 9, dup_cap=2 * n + 16,
                           max_pending=n + 16, **options)
        machine = TapMachine(config)
        start = _now_us()
        events = _drive(machine, uids, "5a000001", 5, 10)
        micros = _elapsed_us(start)
        seconds = micros / 1000000 if micros > 0 else 1e-6
        result = {"name": name, "events": events, "seconds": seconds, "events_per_s": int(events / seconds)}
        print("%s: %d events in %.3f s = %d events/s" % (name, events, seconds, result["events_per_s"]))
        results.append(result)
    return results
