"""The asyncio runtime on CPython: blocking drivers off the loop, a driver stuck in a thread, the demo."""

import asyncio
import threading
import time

from firmware import bench, drivers, hal, runtime, sim
from firmware.schedule import SensorSchedule, Watchdog
from firmware.tap import TapConfig, TapMachine
from tests.wait import PATIENCE, wait_for


class BlockingReader(hal.NfcReader):
    """A reader whose poll blocks like a real one (and hangs for good once `hang` is set)."""

    def __init__(self, uids):
        self.uids = list(uids)
        self.hang = threading.Event()
        self.release = threading.Event()
        self.restarts = 0
        self.threads = set()

    def poll(self):
        self.threads.add(threading.get_ident())
        if self.hang.is_set():
            self.release.wait(5)
            return None
        time.sleep(0.005)
        return self.uids.pop(0) if self.uids else None

    def restart(self):
        self.restarts += 1
        self.hang.clear()
        self.release.set()


async def _offload(fn):
    return await asyncio.to_thread(fn)


async def test_blocking_reader_runs_off_the_loop_and_a_hung_poll_is_restarted():
    clock = hal.SystemClock()
    stored = []

    async def sink(kind, body):
        stored.append(body)

    reader = BlockingReader(["5a000001", None, "04aaaaaaaaaaaa", None, None])
    machine = TapMachine(TapConfig("SD-01", "school_gate", staff_prefixes=("5a",)))
    rt = runtime.Runtime(clock, sink, tap=machine, reader=reader, watchdog=Watchdog(300), offload=_offload,
                         poll_ms=5, tick_ms=20, nfc_timeout_ms=300, arrival_gap_ms=20)
    task = asyncio.create_task(rt.run())
    await wait_for(lambda: stored, what="the first record")
    reader.hang.set()
    ticks = 0
    started = time.monotonic()
    while reader.restarts == 0 and time.monotonic() - started < 5 * PATIENCE:
        await asyncio.sleep(0.01)
        ticks += 1  # the event loop keeps running while the poll hangs in its thread
    assert reader.restarts == 1 and ticks > 10
    polls = rt.stats["polls"]
    while rt.stats["polls"] == polls and time.monotonic() - started < 5 * PATIENCE:
        await asyncio.sleep(0.01)
    rt.stop()
    await task
    assert stored == [{"event": "arrived", "site": "SD-01", "checkpoint": "school_gate", "staff": "5a000001",
                       "tags": ["04aaaaaaaaaaaa"], "count": 1, "source": "nfc"}]
    assert threading.get_ident() not in reader.threads
    assert rt.stats["restarts"] >= 1 and rt.stats["polls"] > polls


async def test_a_driver_that_raises_anything_does_not_stop_the_loop():
    clock = hal.SystemClock()

    class Broken(hal.Sensor):
        name = "broken"

        def read(self):
            raise ZeroDivisionError("bug in a driver")

    async def sink(kind, body):
        pass

    schedule = SensorSchedule("PASAR-01")
    schedule.add("broken", 20, clock.ticks_ms())
    schedule.add("room", 20, clock.ticks_ms())
    room = sim.SimSensor("room", seed=1)
    room.open()
    logged = []
    rt = runtime.Runtime(clock, sink, schedule=schedule, sensors={"broken": Broken(), "room": room},
                         tick_ms=10, log=lambda event, fields: logged.append(event))
    task = asyncio.create_task(rt.run())
    await wait_for(lambda: rt.stats["sample_errors"] >= 3 and room.reads >= 3, what="three rounds of samples")
    rt.stop()
    await task
    assert "sample_failed" in logged


async def test_slow_sink_keeps_many_records_in_flight():
    """Records are stored concurrently, so an edge with group commit sees them together."""
    clock = hal.SystemClock()
    in_flight = [0, 0]

    async def sink(kind, body):
        in_flight[0] += 1
        in_flight[1] = max(in_flight[1], in_flight[0])
        await asyncio.sleep(0.05)
        in_flight[0] -= 1

    machine = TapMachine(TapConfig("SD-01", "school_gate", staff_prefixes=("5a",)))
    rt = runtime.Runtime(clock, sink, tap=machine, indicator=sim.SimIndicator())
    task = asyncio.create_task(rt.run())
    await wait_for(lambda: rt.running, what="the runtime to start")
    rt.tap("5a000001")
    for i in range(20):
        rt.tap(f"04{i:012x}")
    await rt.idle()
    rt.stop()
    await task
    assert in_flight[1] == 20 and machine.stats["accepted"] == 20


def test_main_demo_runs_with_asyncio_run(capsys):
    rt = runtime.start(runtime.main(seed=9, sessions=1, tags=(2, 3)))
    out = capsys.readouterr().out
    assert "('scan', {" in out and rt.tap_machine.stats["records"] >= 2


def test_auto_reader_falls_back_to_the_simulator():
    logged = []
    reader = drivers.open_reader("auto", path="udp:127.0.0.1:9", log=logged.append)
    try:
        # nfcpy's udp transport "opens" without a peer, so auto picks it: that is the point of a path
        assert type(reader).__name__ in ("NfcpyReader", "SimNfcReader")
    finally:
        reader.close()
    reader = drivers.open_reader("auto", path="usb:ffff:ffff", log=logged.append)
    assert type(reader).__name__ == "SimNfcReader"
    assert any("not available" in line for line in logged)


def test_driver_factories_refuse_unknown_kinds():
    import pytest

    with pytest.raises(ValueError, match="reader"):
        drivers.open_reader("acr999")
    with pytest.raises(ValueError, match="sensor"):
        drivers.open_sensor("ds18b20", "room")
    with pytest.raises(ValueError, match="indicator"):
        drivers.open_indicator("laser")


def test_bench_quick():
    results = bench.run(quick=True)
    assert {r["name"] for r in results} == {"tap_per_tag", "tap_batch_64"}
    assert all(r["events_per_s"] > 1000 for r in results)
