"""Runtime cases (async): a simulated checkpoint end to end, under CPython (pytest) and MicroPython (node)."""

import asyncio

from firmware import hal, runtime, sim
from firmware.schedule import SensorSchedule, Watchdog
from firmware.tap import TapConfig, TapMachine


def _logging(rt, log):
    original = rt._enqueue

    def enqueue(feedback):
        log.append((feedback.status, feedback.uid, feedback.reason))
        original(feedback)

    rt._enqueue = enqueue


async def _until(condition, limit_ms=5000):
    waited = 0
    while not condition():
        assert waited < limit_ms, "timed out"
        await runtime.sleep_ms(1)
        waited += 1


async def _run_until(rt, condition, limit_ms=5000):
    task = asyncio.create_task(rt.run())
    waited = 0
    while not condition() and waited < limit_ms:
        await runtime.sleep_ms(20)
        waited += 20
    rt.stop()
    await task
    assert waited < limit_ms, "timed out"


async def acheck_simulated_checkpoint_stores_before_accepting():
    log = []

    async def sink(kind, body):
        await runtime.sleep_ms(3)  # a durable store takes a moment
        log.append(("stored", kind, body))

    rt, _ = runtime.simulated(seed=11, sink=sink, sessions=2, tags=(3, 5))
    _logging(rt, log)
    await _run_until(rt, lambda: rt.reader.done() and not rt._inflight)
    script = rt.reader.script
    staff = [uid for _, uid, _ in script if uid.startswith("5a")]
    containers = []  # tapped inside a session (a stray tag before a staff card is refused)
    session = None
    for _, uid, _ in script:
        if uid.startswith("5a"):
            session = None if session == uid else uid
        elif session is not None and uid not in containers:
            containers.append(uid)
    scans = [entry[2] for entry in log if entry[0] == "stored" and entry[1] == "scan"]
    assert [body["tags"][0] for body in scans] == containers, (scans, containers)
    for body in scans:
        assert body["event"] == "departed" and body["checkpoint"] == "kitchen_exit"
        assert body["staff"] in staff and body["source"] == "nfc" and body["count"] == 1
    for uid in containers:
        stored = [i for i, e in enumerate(log) if e[0] == "stored" and e[2].get("tags") == [uid]]
        accepted = [i for i, e in enumerate(log) if e[0] == "accepted" and e[1] == uid]
        assert len(stored) == 1 and len(accepted) == 1 and stored[0] < accepted[0], (uid, log)
    statuses = [e[0] for e in log if e[0] != "stored"]
    assert statuses.count("open") == 2 and statuses.count("closed") == 2, statuses
    readings = [entry[2] for entry in log if entry[0] == "stored" and entry[1] == "reading"]
    assert readings and all(body["site"] == "SPPG-SIM-01" for body in readings)
    assert rt.stats["poll_errors"] == 0 and rt.stats["store_errors"] == 0
    assert rt.indicator.statuses and rt.indicator.steps[-1] == (None, False)
    assert not rt.reader.opened  # closed on the way out


async def acheck_store_failure_shows_error_and_tag_can_be_retapped():
    clock = hal.SystemClock()
    stored = []
    failures = [1]

    async def sink(kind, body):
        if failures[0]:
            failures[0] -= 1
            raise OSError("disk full")
        stored.append(body)

    machine = TapMachine(TapConfig("SD-01", "school_gate", staff_prefixes=("5a",)))
    indicator = sim.SimIndicator()
    rt = runtime.Runtime(clock, sink, tap=machine, indicator=indicator)
    task = asyncio.create_task(rt.run())
    await _until(lambda: rt.running)
    rt.tap("5a000001")
    rt.tap("04aabbccddeeff")
    await rt.idle()
    rt.tap("04aabbccddeeff")  # not a duplicate: the first was never stored
    await rt.idle()
    rt.stop()
    await task
    assert [b["tags"] for b in stored] == [["04aabbccddeeff"]]
    statuses = [s for s, _ in indicator.statuses]
    assert statuses[:3] == ["open", "error", "accepted"], indicator.statuses
    assert rt.stats["store_errors"] == 1 and rt.stats["stored"] == 1
    assert statuses[-1] == "closed"  # the session is closed on shutdown


async def acheck_watchdog_restarts_stuck_reader_and_sensor():
    clock = hal.SystemClock()

    async def sink(kind, body):
        pass

    reader = sim.SimNfcReader(clock, [])
    reader.open()
    reader.stick()
    sensor = sim.SimSensor("room", seed=2)
    sensor.open()
    sensor.stick()
    schedule = SensorSchedule("PASAR-01")
    schedule.add("room", 50, clock.ticks_ms())
    machine = TapMachine(TapConfig("PASAR-01", "market_stall"))
    rt = runtime.Runtime(clock, sink, tap=machine, reader=reader, schedule=schedule, sensors={"room": sensor},
                         watchdog=Watchdog(150), poll_ms=10, tick_ms=20, nfc_timeout_ms=150)
    await _run_until(rt, lambda: reader.restarts >= 1 and sensor.restarts >= 1 and sensor.reads >= 2)
    assert rt.stats["restarts"] >= 2 and rt.stats["poll_errors"] > 0 and rt.stats["sample_errors"] > 0
    assert reader.polls > 0  # polling resumed after the restart
    assert rt.watchdog.attempts("nfc") == 0  # progress since


async def acheck_batch_mode_runtime():
    rt, records = runtime.simulated(seed=5, sessions=1, tags=(4, 4), batch_linger_ms=60000, batch_max=64)
    await _run_until(rt, lambda: rt.reader.done() and not rt._inflight)
    scans = [body for kind, body in records if kind == "scan"]
    assert len(scans) == 1 and len(scans[0]["tags"]) == 4, scans
    statuses = [s for s, _ in rt.indicator.statuses]
    assert statuses.count("seen") == 4 and "accepted" in statuses, statuses


async def acheck_start_guard():
    # asyncio.run exists on CPython and bare-metal MicroPython, not in the WebAssembly build: there
    # start() hands back a task that the JavaScript event loop drives.
    async def work():
        await runtime.sleep_ms(1)
        return 7

    if getattr(asyncio, "run", None) is None:
        task = runtime.start(work())
        assert await task == 7
    else:
        coro = work()
        coro.close()
