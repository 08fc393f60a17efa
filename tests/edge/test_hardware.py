"""The daemon with the hardware its config names: nfcpy's emulated reader, and the real Adafruit PN532 and BME280
libraries on a fake I2C bus; LEDs and buzzer on fake GPIO pins whose every change is timed.

A tap must become a durable record before its pattern plays, each outcome must play its own pattern, and an
unplugged reader must be reported, looked for, and used again once it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from edge.config import CheckpointConfig, FeedbackConfig, HubConfig, ReaderConfig, SensorConfig
from edge.daemon import EdgeDaemon
from edge.hardware import Buses
from edge.store import LmdbLogStore
from firmware import hal
from ledger import decode_record
from tests.edge.common import edge_config
from tests.firmware.test_blinka_drivers import FakeBme280, FakeI2C, FakePn532
from tests.firmware.test_nfcpy_driver import NTAG_UID, Emulator
from tests.firmware.test_rc522_driver import FakeMfrc522, FakeSpi
from tests.ports import free_udp

STAFF = "5a000001"
PINS = {"green": "D17", "red": "D22", "buzzer": "D18"}  # amber mixed from red and green, as on an RGB LED


class FakePin:
    """A GPIO output as digitalio.DigitalInOut shows it: .value, switch_to_output, deinit."""

    def __init__(self, name: str, changes: list[tuple[float, str, bool]]) -> None:
        self.name = name
        self._changes = changes
        self._value = False

    @property
    def value(self) -> bool:
        return self._value

    @value.setter
    def value(self, value: bool) -> None:
        if bool(value) != self._value:
            self._changes.append((time.perf_counter(), self.name, bool(value)))
        self._value = bool(value)

    def switch_to_output(self, value: bool = False, **_: Any) -> None:
        self.value = value

    def deinit(self) -> None:
        pass


class Pins:
    """Every output pin the daemon makes, by board name, with one timed log of their changes."""

    def __init__(self) -> None:
        self.changes: list[tuple[float, str, bool]] = []
        self.by_pin: dict[str, FakePin] = {}

    def make(self, pin: str) -> FakePin:
        self.by_pin[pin] = FakePin(pin, self.changes)
        return self.by_pin[pin]

    def quiet(self) -> bool:
        return all(not p.value for name, p in self.by_pin.items() if name in PINS.values())

    def pattern(self, since: int) -> dict[str, Any]:
        """What a person saw and heard in the changes from index `since`: colours lit and beeps."""
        name = {v: k for k, v in PINS.items()}
        lit: dict[str, bool] = {"green": False, "red": False, "buzzer": False}
        colours: list[str] = []
        beeps: list[float] = []
        beep_on: float | None = None
        changes = self.changes[since:]
        i = 0
        while i < len(changes):
            # One step of a pattern sets its pins one after another: read the state once they are all set.
            step = changes[i][0]
            while i < len(changes) and changes[i][0] - step < 0.002:
                _, pin, value = changes[i]
                if pin in name:
                    lit[name[pin]] = value
                i += 1
            if lit["buzzer"] and beep_on is None:
                beep_on = step
            elif not lit["buzzer"] and beep_on is not None:
                beeps.append(step - beep_on)
                beep_on = None
            colour = ("amber" if lit["red"] and lit["green"] else "red" if lit["red"]
                      else "green" if lit["green"] else None)
            if colour and (not colours or colours[-1] != colour):
                colours.append(colour)
        return {"colours": colours, "beeps": beeps}


# A beep lasts at least its pattern's length; a busy machine only stretches it. The accepted beep (80 ms) must
# still be told apart from the refused one (600 ms).
SHORT_BEEP, LONG_BEEP = 0.075, 0.5


async def until(cond: Callable[[], bool], timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def daemon_with(tmp_path: Path, pins: Pins, i2c: FakeI2C | None = None, spi: FakeSpi | None = None,
                      **changes: Any) -> AsyncIterator[EdgeDaemon]:
    config = edge_config(tmp_path / "edge", checkpoint=CheckpointConfig(role="school_gate", staff=(STAFF,),
                                                                        container_prefixes=("04",), dup_window_s=30),
                         **{"feedback": FeedbackConfig(driver="gpio", amber="", **PINS), **changes})
    daemon = EdgeDaemon(config, clock=lambda: 1_763_900_000, buses=Buses(i2c=i2c, spi=spi, make_output=pins.make))
    await daemon.start()
    try:
        yield daemon
    finally:
        await daemon.close()


def scans(data_dir: Path) -> list[dict[str, Any]]:
    """The scan bodies in the device's own log, read back from a fresh handle on its LMDB files."""
    store = LmdbLogStore(data_dir / "store", readonly=True)
    try:
        own = store.own_device()
        assert own is not None
        raws = store.log_range(own, 0, store.state(own).length)
    finally:
        store.close()
    return [r.body for r in map(decode_record, raws) if r.kind == "scan"]


async def seen(daemon: EdgeDaemon, pins: Pins, status: str, act: Callable[[], Any]) -> dict[str, Any]:
    """Let the previous pattern end, `act` (present a card, pull a cable ...), wait for the daemon to show
    `status` and for its pattern to end: what was seen and heard."""
    assert daemon.feedback is not None
    await until(lambda: pins.quiet() and daemon.feedback is not None and daemon.feedback.idle(),
                what="the previous pattern to end")
    start = len(pins.changes)
    count = daemon.feedback.shown.count(status)
    result = act()
    if asyncio.iscoroutine(result):
        await result
    await until(lambda: daemon.feedback is not None and daemon.feedback.shown.count(status) > count,
                what=f"feedback {status}")
    await until(lambda: pins.quiet() and daemon.feedback is not None and daemon.feedback.idle()
                and len(pins.changes) > start, what=f"{status} pattern to finish")
    return pins.pattern(start)


async def test_a_tap_on_nfcpys_emulated_reader_is_stored_then_beeps_green(tmp_path: Path) -> None:
    pins = Pins()
    emu = Emulator("type_a")  # its tag comes into the field once the staff session is open
    reader = ReaderConfig(driver="nfcpy", path=f"udp:127.0.0.1:{emu.port}", poll_ms=100)
    async with daemon_with(tmp_path, pins, reader=reader) as daemon:
        assert daemon.reader is not None and daemon.tap is not None
        await until(daemon.reader.connected.is_set, what="the nfcpy reader")
        await daemon.tap.tap(STAFF)  # the staff card, here from the phone page
        with contextlib.ExitStack() as field:
            accepted = await seen(daemon, pins, hal.ACCEPTED, lambda: field.enter_context(emu))
            polls = daemon.reader.polls
            await until(lambda: daemon.reader is not None and daemon.reader.polls > polls + 10,
                        what="ten more polls with the tag still on the antenna")
        shown = daemon.feedback.shown if daemon.feedback else []
        assert shown.count(hal.ACCEPTED) == 1, shown  # the tag lay on the antenna: one tap, not one per poll
        assert hal.REFUSED not in shown and daemon.reader.lost == 0
    assert [s["tags"] for s in scans(tmp_path / "edge")] == [[NTAG_UID]]
    assert accepted["colours"] == ["green"] and len(accepted["beeps"]) == 1
    assert SHORT_BEEP <= accepted["beeps"][0] < LONG_BEEP


async def test_pn532_and_bme280_on_i2c_each_outcome_has_its_pattern(tmp_path: Path) -> None:
    pins, pn532, bme = Pins(), FakePn532(), FakeBme280()
    bus = FakeI2C({0x24: pn532, 0x77: bme})
    reader = ReaderConfig(driver="pn532_i2c", poll_ms=20, gap_ms=150)
    sensors = (SensorConfig(name="gate-air", kind="climate", driver="bme280", interval_s=1),)
    async with daemon_with(tmp_path, pins, bus, reader=reader, sensors=sensors) as daemon:
        assert daemon.reader is not None and daemon.tap is not None
        await until(daemon.reader.connected.is_set, what="the PN532")
        await daemon.tap.tap(STAFF)

        async def present(uid: str | None) -> None:
            polls = daemon.reader.polls if daemon.reader else 0
            pn532.card = uid
            await until(lambda: daemon.reader is not None and daemon.reader.polls > polls + 1, what="polls")

        accepted = await seen(daemon, pins, hal.ACCEPTED, lambda: present("04a1b2c3d4e580"))
        await present(None)
        await asyncio.sleep(0.2)  # lifted for longer than gap_ms: presenting it again is a new tap
        duplicate = await seen(daemon, pins, hal.DUPLICATE, lambda: present("04a1b2c3d4e580"))
        await present(None)
        refused = await seen(daemon, pins, hal.REFUSED, lambda: present("deadbeef"))  # no container prefix
        await present(None)
        await until(lambda: daemon.counters.records["sensor"] >= 1, what="a BME280 reading")
    assert [s["tags"] for s in scans(tmp_path / "edge")] == [["04a1b2c3d4e580"]]
    assert accepted["colours"] == ["green"] and len(accepted["beeps"]) == 1
    assert SHORT_BEEP <= accepted["beeps"][0] < LONG_BEEP
    assert duplicate["colours"] == ["amber"] and len(duplicate["beeps"]) == 2
    assert refused["colours"] == ["red"] and len(refused["beeps"]) == 1 and refused["beeps"][0] > 0.5
    assert bme.measurements >= 1 and 0x4A in pn532.commands


async def test_rc522_on_spi_with_its_chip_select_pin(tmp_path: Path) -> None:
    pins, chip = Pins(), FakeMfrc522()
    async with daemon_with(tmp_path, pins, spi=FakeSpi(chip),
                           reader=ReaderConfig(driver="rc522_spi", spi_cs="D5", poll_ms=20)) as daemon:
        assert daemon.reader is not None and daemon.tap is not None
        await until(daemon.reader.connected.is_set, what="the RC522")
        await daemon.tap.tap(STAFF)
        accepted = await seen(daemon, pins, hal.ACCEPTED, lambda: setattr(chip, "card", "04a1b2c3d4e580"))
    assert [s["tags"] for s in scans(tmp_path / "edge")] == [["04a1b2c3d4e580"]]
    assert accepted["colours"] == ["green"] and len(accepted["beeps"]) == 1
    assert "D5" in pins.by_pin  # the chip select went through the GPIO pins, not the bus's CE0


async def test_unplugged_reader_is_reported_and_used_again_when_replugged(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="jejak.edge.hw")
    pins, pn532 = Pins(), FakePn532()
    bus = FakeI2C({0x24: pn532})
    reader = ReaderConfig(driver="pn532_i2c", poll_ms=20, retry_s=0.1)
    async with daemon_with(tmp_path, pins, bus, reader=reader) as daemon:
        assert daemon.reader is not None and daemon.tap is not None
        await until(daemon.reader.connected.is_set, what="the PN532")
        fault = await seen(daemon, pins, hal.FAULT, lambda: bus.devices.pop(0x24))  # the cable is pulled
        assert not daemon.reader.connected.is_set() and daemon.reader.lost == 1
        # CoAP input goes on while the reader is away
        assert (await daemon.submit([("note", {"text": "while unplugged"})]))[0].seq >= 1
        bus.devices[0x24] = pn532  # plugged back in
        await until(daemon.reader.connected.is_set, what="the PN532 again")
        assert daemon.reader.opened == 2
        await daemon.tap.tap(STAFF)
        await seen(daemon, pins, hal.ACCEPTED, lambda: setattr(pn532, "card", "04000000000001"))
    assert [s["tags"] for s in scans(tmp_path / "edge")] == [["04000000000001"]]
    assert fault["colours"] == ["red"] and len(fault["beeps"]) == 2
    lost = [r.getMessage() for r in caplog.records if "not answering" in r.getMessage()]
    assert len(lost) == 1 and "I2C 0x24" in lost[0] and "i2cdetect" in lost[0], lost
    assert any("ready again" in r.getMessage() for r in caplog.records)


async def test_missing_devices_at_start_are_one_line_each_and_coap_still_works(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.INFO)
    pins = Pins()
    sensors = (SensorConfig(name="cold-box", kind="probe", driver="sht31", interval_s=1),)
    async with daemon_with(tmp_path, pins, FakeI2C({}), sensors=sensors,
                           reader=ReaderConfig(driver="pn532_i2c", retry_s=0.05)) as daemon:
        assert daemon.reader is not None
        await until(lambda: daemon.reader is not None and daemon.sensors["cold-box"].failures >= 2,
                    what="two sensor attempts")
        assert (await daemon.submit([("note", {"text": "phone"})]))[0].seq == 1
        assert daemon.status()["reader"] == {"driver": "pn532_i2c", "bus": "I2C 0x24", "connected": False,
                                             "opened": 0, "lost": 0}
    lines = [r.getMessage() for r in caplog.records if "not answering" in r.getMessage()]
    assert len(lines) == 2, lines  # one per device, however often it is looked for
    assert any(line.startswith("NFC reader (pn532_i2c) on I2C 0x24") for line in lines)
    assert any(line.startswith("sensor cold-box (sht31) on I2C 0x44") and "i2cdetect" in line for line in lines)


async def test_stored_while_the_hub_is_out_of_reach_is_told_apart(tmp_path: Path) -> None:
    pins = Pins()
    hub = HubConfig(address=f"coap://127.0.0.1:{free_udp()}")  # nobody listens there
    async with daemon_with(tmp_path, pins, hub=hub,
                           feedback=FeedbackConfig(driver="gpio", amber="", offline_after_s=1, **PINS)) as daemon:
        assert daemon.tap is not None
        await until(daemon._offline, what="the hub to count as unreached")
        await daemon.tap.tap(STAFF)
        offline = await seen(daemon, pins, hal.OFFLINE, lambda: daemon.tap.tap("04aa000000000001"))
    assert offline["colours"] == ["green", "amber"] and len(offline["beeps"]) == 1
    assert [s["tags"] for s in scans(tmp_path / "edge")] == [["04aa000000000001"]]


async def test_every_tap_gets_its_beep_and_the_latency_is_measured(tmp_path: Path) -> None:
    pins = Pins()
    latencies: list[float] = []
    async with daemon_with(tmp_path, pins) as daemon:
        assert daemon.tap is not None
        await daemon.tap.tap(STAFF)
        buzzer = pins.by_pin[PINS["buzzer"]]
        for i in range(200):
            # taps a person makes, not a burst: each beep is over before the next card comes
            await until(lambda: not buzzer.value, what="the beep to end")
            before = len(pins.changes)
            started = time.perf_counter()
            shown = await daemon.tap.tap(f"04{i:012x}")
            assert shown and shown[-1]["status"] == hal.ACCEPTED, (i, shown, daemon.tap.machine.stats)
            latencies.append(pins.changes[before][0] - started)  # the first pin change of this tap's pattern
        histogram = daemon.counters.feedback_latency
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    print(f"tap to first beep: p50 {latencies[len(latencies) // 2] * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms")
    # The 100 ms goal is a benchmark figure (`jejak bench`, edge part: tap_to_ack_p99_ms), not a timed test: a
    # busy CI machine stretches every latency. Here: each tap was shown, after it started, and was counted.
    assert len(latencies) == 200 and latencies[0] > 0
    assert histogram.total >= 200
