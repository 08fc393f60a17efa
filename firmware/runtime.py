"""The thin asyncio loop: polls drivers, feeds the pure state machines, stores records, plays feedback.

Uses only what MicroPython's asyncio has (sleep, sleep_ms where present, create_task, gather, Event,
Task.cancel). Durability is the sink's job: `await sink(kind, body)` must return only once the record is
stored, and raise if it could not be; "accepted" is played only after it returned.
"""

import asyncio

from firmware import hal
from firmware.actions import Feedback, Record

_SLEEP_MS = getattr(asyncio, "sleep_ms", None)


async def sleep_ms(ms):
    if _SLEEP_MS is not None:
        await _SLEEP_MS(ms)
    else:
        await asyncio.sleep(ms / 1000)


class Runtime:
    """Wires drivers to the state machines.

    clock: hal.Clock. sink: async callable (kind, body) -> anything; raises if not stored.
    tap: firmware.tap.TapMachine (or None); reader: hal.NfcReader (opened).
    schedule: firmware.schedule.SensorSchedule; sensors: {name: hal.Sensor (opened)}.
    indicator: hal.Indicator; watchdog: firmware.schedule.Watchdog.
    offload: optional async callable offload(fn) that runs a blocking driver call off the event loop
    (on CPython: lambda fn: asyncio.to_thread(fn)); without it driver calls run inline.
    probe: name of the sensor whose temp_cc is written on scans.
    log: optional callable(event, fields dict).
    """

    def __init__(self, clock, sink, tap=None, reader=None, schedule=None, sensors=None, indicator=None,
                 watchdog=None, offload=None, poll_ms=50, arrival_gap_ms=400, tick_ms=100,
                 nfc_timeout_ms=5000, probe=None, log=None, feedback_queue=8):
        self.clock = clock
        self.sink = sink
        self.tap_machine = tap
        self.reader = reader
        self.schedule = schedule
        self.sensors = dict(sensors) if sensors else {}
        self.indicator = indicator if indicator is not None else hal.Indicator()
        self.watchdog = watchdog
        self.offload = offload
        self.poll_ms = poll_ms
        self.tick_ms = tick_ms
        self.nfc_timeout_ms = nfc_timeout_ms
        self.probe = probe
        self.log = log
        self.arrival = hal.ArrivalFilter(arrival_gap_ms)
        self.feedback_queue = feedback_queue
        self.stats = {"polls": 0, "poll_errors": 0, "taps": 0, "stored": 0, "store_errors": 0,
                      "sample_errors": 0, "restarts": 0, "restart_errors": 0, "feedback": 0,
                      "feedback_dropped": 0}
        self.running = False
        self._stop = asyncio.Event()
        self._queue = []
        self._queued = asyncio.Event()
        self._inflight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._nfc_task = None
        self._sample_tasks = {}
        self._restarting = {}

    # -- public ------------------------------------------------------------------------------------

    async def run(self):
        """Run until stop(); then close the session, wait for records in flight, close drivers."""
        self.running = True
        now = self.clock.ticks_ms()
        if self.watchdog is not None:
            if self.reader is not None:
                self.watchdog.watch("nfc", now, self.nfc_timeout_ms)
            if self.schedule is not None:
                for name in self.schedule.sensors:
                    self.watchdog.watch(name, now, max(self.watchdog.timeout_ms, 3 * self.schedule.period(name)))
        tasks = [asyncio.create_task(self._timer_loop()), asyncio.create_task(self._feedback_loop())]
        if self.reader is not None and self.tap_machine is not None:
            self._nfc_task = asyncio.create_task(self._nfc_loop())
        await self._stop.wait()
        self.running = False
        for task in tasks:
            task.cancel()
        self._cancel_nfc()
        for task in list(self._sample_tasks.values()):
            task.cancel()
        if self.tap_machine is not None:
            self.handle(self.tap_machine.close(self.clock.ticks_ms()))
        while self._inflight:
            self._idle.clear()
            await self._idle.wait()
        await self._drain_feedback()
        self.indicator.show(None, False)
        self._close_drivers()

    def stop(self):
        self.running = False
        self._stop.set()

    def tap(self, uid, kind=None):
        """Feed one tap as if the reader had seen it (simulation, or taps arriving by other means)."""
        self.stats["taps"] += 1
        now = self.clock.ticks_ms()
        self.handle(self.tap_machine.tap(uid, now, self.clock.wall(), kind))

    def handle(self, actions):
        """Carry out actions from the state machines, in order."""
        for action in actions:
            if isinstance(action, Record):
                self._spawn(self._store(action))
            elif isinstance(action, Feedback):
                self._enqueue(action)

    async def idle(self):
        """Wait until no record is waiting for the sink."""
        while self._inflight:
            self._idle.clear()
            await self._idle.wait()

    # -- loops -------------------------------------------------------------------------------------

    async def _nfc_loop(self):
        reader = self.reader
        errors = 0
        while self.running:
            try:
                uid = await self._call(reader.poll)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                errors += 1
                self.stats["poll_errors"] += 1
                if errors == 1 or errors % 100 == 0:
                    self._log("nfc_poll_failed", {"error": str(error), "count": errors})
                await sleep_ms(self.poll_ms)
                continue
            errors = 0
            now = self.clock.ticks_ms()
            self.stats["polls"] += 1
            if self.watchdog is not None:
                self.watchdog.kick("nfc", now)
            arrived = self.arrival.feed(uid, now)
            if arrived is not None:
                self.stats["taps"] += 1
                self.handle(self.tap_machine.tap(arrived, now, self.clock.wall()))
            await sleep_ms(self.poll_ms)

    async def _timer_loop(self):
        while self.running:
            now = self.clock.ticks_ms()
            if self.tap_machine is not None:
                self.handle(self.tap_machine.tick(now))
            if self.schedule is not None:
                for sample in self.schedule.tick(now):
                    name = sample.sensor
                    self._sample_tasks[name] = asyncio.create_task(self._sample(name))
            if self.watchdog is not None:
                for restart in self.watchdog.check(now):
                    # A restart may block (a driver closing a hung device): it runs as its own task so
                    # session timeouts and samples keep their time; one restart per driver at a time.
                    if not self._restarting.get(restart.name):
                        self._restarting[restart.name] = True
                        asyncio.create_task(self._restart(restart))
            wait = self.tick_ms
            for machine in (self.tap_machine, self.schedule, self.watchdog):
                if machine is not None:
                    deadline = machine.next_deadline()
                    if deadline is not None and deadline - now < wait:
                        wait = deadline - now
            await sleep_ms(wait if wait > 1 else 1)

    async def _feedback_loop(self):
        while True:
            while not self._queue:
                self._queued.clear()
                await self._queued.wait()
            feedback = self._queue.pop(0)
            # With a backlog (fast tapping) only the first step of each pattern plays, so the
            # indicator keeps up with the taps instead of lagging behind them.
            await self._play(feedback, short=bool(self._queue))

    # -- helpers -----------------------------------------------------------------------------------

    async def _call(self, fn):
        if self.offload is not None:
            return await self.offload(fn)
        return fn()

    def _spawn(self, coro):
        self._inflight += 1
        self._idle.clear()
        asyncio.create_task(self._tracked(coro))

    async def _tracked(self, coro):
        try:
            await coro
        finally:
            self._inflight -= 1
            if not self._inflight:
                self._idle.set()

    async def _store(self, record):
        try:
            await self.sink(record.kind, record.body)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            self.stats["store_errors"] += 1
            self._log("store_failed", {"kind": record.kind, "error": str(error)})
            if record.ref is not None and self.tap_machine is not None:
                self.handle(self.tap_machine.fail(record.ref, "store_failed"))
            return
        self.stats["stored"] += 1
        if record.ref is not None and self.tap_machine is not None:
            self.handle(self.tap_machine.confirm(record.ref))

    async def _sample(self, name):
        sensor = self.sensors.get(name)
        try:
            if sensor is None:
                raise hal.DriverError("no driver for sensor %r" % name)
            values = await self._call(sensor.read)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            self.stats["sample_errors"] += 1
            self._log("sample_failed", {"sensor": name, "error": str(error)})
            self.schedule.failed(name, self.clock.ticks_ms())
            return
        now = self.clock.ticks_ms()
        if self.watchdog is not None:
            self.watchdog.kick(name, now)
        if name == self.probe and self.tap_machine is not None and values.get("temp_cc") is not None:
            self.tap_machine.note_temperature(values["temp_cc"], now)
        self.handle(self.schedule.result(name, values, now))

    async def _restart(self, restart):
        name = restart.name
        self.stats["restarts"] += 1
        self._log("driver_restart", {"driver": name, "stalled_ms": restart.stalled_ms,
                                     "attempt": restart.attempt})
        if name == "nfc":
            driver = self.reader
            self._cancel_nfc()
        else:
            driver = self.sensors.get(name)
            task = self._sample_tasks.pop(name, None)
            if task is not None:
                task.cancel()
            if self.schedule is not None:
                self.schedule.release(name)
        try:
            if driver is not None:
                await self._call(driver.restart)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            self.stats["restart_errors"] += 1
            self._log("driver_restart_failed", {"driver": name, "error": str(error)})
        finally:
            self._restarting[name] = False
        if name == "nfc" and self.running and self.reader is not None:
            self._nfc_task = asyncio.create_task(self._nfc_loop())

    def _cancel_nfc(self):
        task = self._nfc_task
        self._nfc_task = None
        if task is not None:
            task.cancel()

    def _enqueue(self, feedback):
        queue = self._queue
        if len(queue) >= self.feedback_queue:
            # Keep the newest; refusals and errors matter more than a backlog of beeps.
            for i in range(len(queue)):
                if queue[i].status not in (hal.REFUSED, hal.ERROR):
                    queue.pop(i)
                    break
            else:
                queue.pop(0)
            self.stats["feedback_dropped"] += 1
        queue.append(feedback)
        self._queued.set()

    async def _play(self, feedback, short=False):
        self.stats["feedback"] += 1
        try:
            self.indicator.begin(feedback.status, feedback.reason)
            steps = hal.PATTERNS.get(feedback.status, ())
            if short:
                steps = steps[:1]
            for led, buzz, ms in steps:
                self.indicator.show(led, buzz)
                await sleep_ms(ms if not short or ms < 60 else 60)
            self.indicator.show(None, False)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            self._log("indicator_failed", {"error": str(error)})

    async def _drain_feedback(self):
        while self._queue:
            await self._play(self._queue.pop(0), short=True)

    def _close_drivers(self):
        drivers = [self.reader, self.indicator]
        drivers.extend(self.sensors.values())
        for driver in drivers:
            if driver is None:
                continue
            try:
                driver.close()
            except Exception as error:
                self._log("driver_close_failed", {"error": str(error)})

    def _log(self, event, fields):
        if self.log is not None:
            try:
                self.log(event, fields)
            except Exception:
                pass


def start(coro):
    """Run `coro`: asyncio.run where there is one. MicroPython's WebAssembly build has no asyncio.run
    (the JavaScript event loop drives tasks), so there the coroutine is started as a task instead."""
    run = getattr(asyncio, "run", None)
    if run is None:
        return asyncio.create_task(coro)
    return run(coro)


def simulated(seed=1, site="SPPG-SIM-01", role="kitchen_exit", sink=None, clock=None, sessions=2,
              tags=(3, 8), gap_ms=(60, 120), hold_ms=40, start_ms=100, poll_ms=10, sensor_period_ms=500,
              **tap_options):
    """A runtime with simulated reader, sensors and indicator, driven by a seeded tap script.

    Returns (runtime, records): records is the list the default sink appends (kind, body) to.
    """
    from firmware import sim
    from firmware.schedule import SensorSchedule, Watchdog
    from firmware.tap import TapConfig, TapMachine

    if clock is None:
        clock = hal.SystemClock()
    records = []
    if sink is None:
        async def sink(kind, body):
            records.append((kind, body))

    now = clock.ticks_ms()
    staff = ["5a0000%02x" % i for i in range(2)]
    script = sim.scenario(seed, sessions=sessions, tags=tags, staff=staff, start_ms=now + start_ms,
                          hold_ms=hold_ms, gap_ms=gap_ms)
    reader = sim.SimNfcReader(clock, script)
    reader.open()
    probe = sim.SimSensor("probe", seed=seed, fields=("temp_cc",), temp_cc=6500)
    room = sim.SimSensor("room", seed=seed + 1, fields=("temp_cc", "rh_cp", "crowd"))
    for sensor in (probe, room):
        sensor.open()
    schedule = SensorSchedule(site)
    schedule.add("probe", sensor_period_ms, now)
    schedule.add("room", sensor_period_ms * 2, now, sensor_period_ms // 2)
    indicator = sim.SimIndicator()
    options = {"staff_prefixes": ("5a",), "session_timeout_ms": 5000, "dup_window_ms": 2000}
    options.update(tap_options)
    machine = TapMachine(TapConfig(site, role, **options))
    runtime = Runtime(clock, sink, tap=machine, reader=reader, schedule=schedule,
                      sensors={"probe": probe, "room": room}, indicator=indicator, watchdog=Watchdog(2000),
                      poll_ms=poll_ms, arrival_gap_ms=hold_ms + 3 * poll_ms, probe="probe")
    return runtime, records


async def main(seed=1, **options):
    """Run a simulated checkpoint until its tap script is done and print every record (device demo)."""
    runtime, records = simulated(seed, **options)
    task = asyncio.create_task(runtime.run())
    printed = 0
    while not runtime.reader.done() or runtime._inflight:
        await sleep_ms(50)
        while printed < len(records):
            print(records[printed])
            printed += 1
    runtime.stop()
    await task
    while printed < len(records):
        print(records[printed])
        printed += 1
    return runtime
