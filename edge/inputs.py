"""The daemon's inputs: NFC taps through the firmware tap state machine, and sensor readings, each stored
before it is acknowledged."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

from firmware import actions as fw_actions
from firmware import tap as fw_tap
from ledger import LedgerError, Record

from .config import CheckpointConfig, SensorConfig
from .metrics import Metrics

log = logging.getLogger("jejak.edge.tap")

Append = Callable[[str, dict[str, Any]], Awaitable[Record]]



def make_machine(site: str, checkpoint: CheckpointConfig) -> fw_tap.TapMachine:
    """The firmware's tap state machine for this checkpoint."""
    config = fw_tap.TapConfig(
        site, checkpoint.role, event=checkpoint.event, school=checkpoint.school, parent=checkpoint.parent,
        staff=checkpoint.staff, staff_prefixes=checkpoint.staff_prefixes,
        parent_prefixes=checkpoint.parent_prefixes, container_prefixes=checkpoint.container_prefixes,
        dup_window_ms=checkpoint.dup_window_s * 1000, session_timeout_ms=checkpoint.session_timeout_s * 1000,
        batch_linger_ms=checkpoint.batch_linger_ms, portions_per_tag=checkpoint.portions_per_tag)
    return fw_tap.TapMachine(config)


class TapInput:
    """Feeds taps to the tap machine; stores each record it asks for, then shows the machine's feedback.

    Feedback "accepted" is shown (and logged) only after the record's commit returned: that line in the
    log is the acknowledgement, as the beep is at a real reader.
    """

    def __init__(self, machine: fw_tap.TapMachine, append: Append, metrics: Metrics, *,
                 ticks_ms: Callable[[], int] | None = None, wall: Callable[[], int] | None = None,
                 indicator: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.machine = machine
        self._append = append
        self.metrics = metrics
        self._ticks_ms = ticks_ms or (lambda: int(time.monotonic() * 1000))
        self._wall = wall or (lambda: int(time.time()))
        self._indicator = indicator or self._log_feedback
        # The machine is not reentrant, but every call into it is synchronous (no await inside), so taps from
        # the reader and from CoAP never interleave in it without a lock.

    @staticmethod
    def _log_feedback(fb: dict[str, Any]) -> None:
        log.info("feedback", extra={"fields": {"feedback": fb}})

    async def tap(self, uid: str) -> list[dict[str, Any]]:
        started = time.perf_counter()
        actions = self.machine.tap(uid, self._ticks_ms(), self._wall())
        return await self._handle(actions, self._store(actions), started)

    async def tick(self) -> list[dict[str, Any]]:
        actions = self.machine.tick(self._ticks_ms())
        return await self._handle(actions, self._store(actions), time.perf_counter())

    async def close(self) -> list[dict[str, Any]]:
        actions = self.machine.close(self._ticks_ms())
        return await self._handle(actions, self._store(actions), time.perf_counter())

    def note_temperature(self, temp_cc: int) -> None:
        self.machine.note_temperature(temp_cc, self._ticks_ms())

    def _store(self, actions: list[Any]) -> dict[int, asyncio.Future[Record]]:
        """Hand the machine's records to the group commit now, in the machine's order, without waiting.

        The machine keeps records it handed out as pending refs, so taps need not wait for each other's
        commits: waiting here (as a lock around tap and commit did) made every tap its own fsync'd commit,
        so an SD card's 5-10 ms per fsync capped taps near 100-200/s with queueing delay on top. Tasks
        start in creation order, so records still reach the commit queue in tap order."""
        return {i: asyncio.ensure_future(self._append(a.kind, a.body))
                for i, a in enumerate(actions) if isinstance(a, fw_actions.Record)}

    async def _handle(self, actions: list[Any], stores: dict[int, asyncio.Future[Record]],
                      started: float) -> list[dict[str, Any]]:
        shown: list[dict[str, Any]] = []
        for i, action in enumerate(actions):
            if i in stores:
                try:
                    record = await stores[i]
                except (LedgerError, Exception) as exc:
                    code = getattr(exc, "code", "INTERNAL")
                    self.metrics.error(code)
                    log.warning("tap record not stored: %s", exc)
                    for fb in self.machine.fail(action.ref, code.lower()):
                        shown.append(self._show(fb, started))
                    continue
                self.metrics.records["nfc"] += 1
                self.metrics.ack_latency.observe(time.perf_counter() - started)
                for fb in self.machine.confirm(action.ref):
                    shown.append(self._show(fb, started, record))
            else:
                shown.append(self._show(action, started))
        return shown

    def _show(self, fb: fw_actions.Feedback, started: float, record: Record | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"status": fb.status, "reason": fb.reason}
        if fb.uid is not None:
            out["uid"] = fb.uid
        if fb.count:
            out["count"] = fb.count
        if record is not None:
            out["id"] = record.id.hex()
            out["seq"] = record.seq
        self._indicator(out)  # may restyle the status (a stored tap while the hub is out of reach is "offline")
        self.metrics.feedback_latency.observe(time.perf_counter() - started)
        self.metrics.feedback[out["status"]] += 1
        if fb.status == "duplicate":
            self.metrics.duplicates += 1
        return out


class SimReader:
    """A simulated NFC reader: a staff card, then container tags, deterministic from a seed."""

    def __init__(self, *, seed: int, staff: str, containers: int) -> None:
        self._rng = random.Random(seed)
        self.staff = staff
        self._uids = [f"04{self._rng.getrandbits(48):012x}" for _ in range(containers)]
        self._started = False

    def next_uid(self) -> str:
        if not self._started:
            self._started = True
            return self.staff
        return self._rng.choice(self._uids)


async def run_sim_reader(tap: TapInput, reader: SimReader, interval_ms: int) -> None:
    while True:
        await tap.tap(reader.next_uid())
        await asyncio.sleep(interval_ms / 1000)


async def run_ticker(tap: TapInput, every_s: float = 0.25) -> None:
    """Time passes for the tap machine: sessions time out, batches are written."""
    while True:
        await asyncio.sleep(every_s)
        await tap.tick()


class SimSensor:
    """A simulated sensor with a slow random walk, deterministic from its name and a seed."""

    def __init__(self, config: SensorConfig, seed: int) -> None:
        self.config = config
        self._rng = random.Random(f"{seed}:{config.name}")
        self._temp = 6500 if config.kind == "probe" else 2900  # hot food held at 65 °C; a market at 29 °C
        self._rh = 7000

    def read(self) -> dict[str, int]:
        rng = self._rng
        self._temp += rng.randint(-40, 40)
        self._rh = min(10000, max(0, self._rh + rng.randint(-100, 100)))
        if self.config.kind == "probe":
            return {"temp_cc": self._temp}
        if self.config.kind == "climate":
            return {"temp_cc": self._temp, "rh_cp": self._rh}
        return {"crowd": rng.randint(0, 60)}


async def store_reading(config: SensorConfig, values: dict[str, int], site: str, append: Append, metrics: Metrics,
                        tap: TapInput | None) -> None:
    """One sample becomes a stored "reading" record; a probe's temperature goes on the following scans."""
    started = time.perf_counter()
    try:
        await append("reading", {"site": site, "sensor": config.name, **values})
    except Exception as exc:
        metrics.error(getattr(exc, "code", "INTERNAL"))
        log.warning("reading not stored: %s", exc)
        return
    metrics.records["sensor"] += 1
    metrics.ack_latency.observe(time.perf_counter() - started)
    if tap is not None and "temp_cc" in values and config.kind == "probe":
        tap.note_temperature(values["temp_cc"])


async def run_sensor(sensor: SimSensor, site: str, append: Append, metrics: Metrics,
                     tap: TapInput | None) -> None:
    """Sample a simulated sensor on its interval."""
    while True:
        await asyncio.sleep(sensor.config.interval_s)
        await store_reading(sensor.config, sensor.read(), site, append, metrics, tap)
