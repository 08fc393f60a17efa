"""The devices an edge's config names: its NFC reader, sensors, LEDs and buzzer, opened through firmware's
drivers, kept running through unplugs, and never allowed to stop CoAP or phone input."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from firmware import drivers, hal

from .config import FeedbackConfig, ReaderConfig, SensorConfig

log = logging.getLogger("jejak.edge.hw")

# What to check when a device does not answer, in the words of the wiring tables in docs/DEPLOY.md.
HINTS = {
    "nfcpy": "is the reader plugged in (lsusb), not claimed by pcscd or the kernel's pn533 module, and does the "
             "jejak user have access to it (deploy/99-jejak-nfc.rules)?",
    "pn532_i2c": "is I2C enabled (raspi-config), the PN532's switches set to I2C, SDA/SCL on pins 3/5, and does "
                 "`i2cdetect -y 1` show it?",
    "pn532_spi": "is SPI enabled (raspi-config), the PN532's switches set to SPI, MOSI/MISO/SCK on pins 19/21/23 "
                 "and its CS on the configured pin?",
    "rc522_spi": "is SPI enabled (raspi-config), the RC522 on 3.3 V (never 5 V), MOSI/MISO/SCK on pins 19/21/23 "
                 "and its SDA (SS) on the configured chip-select pin?",
    "pn532_uart": "is the serial port enabled with the login shell on it disabled (raspi-config), the PN532's "
                  "switches set to UART, and TX/RX crossed (pins 8/10)?",
    "bme280": "is I2C enabled, SDA/SCL on pins 3/5, and does `i2cdetect -y 1` show 0x76 or 0x77?",
    "sht31": "is I2C enabled, SDA/SCL on pins 3/5, and does `i2cdetect -y 1` show 0x44 or 0x45?",
    "dht22": "is the data pin the configured one, with a 10 kOhm pull-up to 3.3 V?",
    "gpio": "are the pins free (not used by another overlay) and is the jejak user in the gpio group?",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Buses:
    """Where drivers get their buses and output pins. Empty fields mean the board's own (Blinka, pyserial);
    tests hand in fakes here, so the real Adafruit libraries run against them."""

    i2c: Any = None
    spi: Any = None
    uart: Any = None
    make_output: Callable[[str], Any] | None = None


def open_reader(config: ReaderConfig, buses: Buses) -> hal.NfcReader:
    """The opened reader; hal.DriverError when it does not answer."""
    timeout = config.poll_ms / 1000
    options: dict[str, Any]
    if config.driver == "nfcpy":
        options = {"path": config.path, "interval_s": timeout / 2}
    elif config.driver == "pn532_i2c":
        options = {"i2c": buses.i2c, "address": config.i2c_address, "timeout_s": timeout}
    elif config.driver in ("pn532_spi", "rc522_spi"):
        options = {"spi": buses.spi, "cs": config.spi_cs or None, "make_output": buses.make_output}
        if config.driver == "pn532_spi":
            options["timeout_s"] = timeout
    elif config.driver == "pn532_uart":
        options = {"uart": buses.uart, "device": config.uart, "baudrate": config.baudrate, "timeout_s": timeout}
    else:
        raise ValueError(f"no hardware reader for driver {config.driver!r}")
    reader: hal.NfcReader = drivers.open_reader(config.driver, **options)
    return reader


def open_sensor(config: SensorConfig, buses: Buses) -> hal.Sensor:
    options: dict[str, Any]
    if config.driver in ("bme280", "sht31"):
        options = {"i2c": buses.i2c, "address": config.address}
    elif config.driver == "dht22":
        options = {"pin": config.pin}
    else:
        raise ValueError(f"no hardware sensor for driver {config.driver!r}")
    sensor: hal.Sensor = drivers.open_sensor(config.driver, config.name, **options)
    return sensor


def open_indicator(config: FeedbackConfig, buses: Buses) -> hal.Indicator:
    from firmware.drivers.blinka import GpioIndicator

    indicator = GpioIndicator(leds=config.leds(), buzzer=config.buzzer or None, make_output=buses.make_output)
    indicator.open()
    return indicator


def not_answering(device: str, driver: str, bus: str, error: Exception) -> str:
    """The one line a technician reads: which device, on which bus, what it said, what to check."""
    return f"{device} ({driver}) on {bus} is not answering: {error}; check: {HINTS.get(driver, 'the wiring')}"


class Device:
    """One device driven from its own thread: a blocking poll or read never stalls the event loop, and a close
    always runs after the call it would otherwise cut short."""

    def __init__(self, name: str) -> None:
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False)


class ReaderLoop:
    """Opens the reader, turns its polls into taps, and looks for it again when it is missing or unplugged."""

    def __init__(self, config: ReaderConfig, buses: Buses, tap: Callable[[str], Awaitable[Any]], *,
                 fault: Callable[[str], None], ticks_ms: Callable[[], int] | None = None) -> None:
        self.config = config
        self.buses = buses
        self._tap = tap
        self._fault = fault
        self._ticks_ms = ticks_ms or (lambda: int(time.monotonic() * 1000))
        self.connected = asyncio.Event()
        self.opened = 0  # times the reader was opened: a replug shows as a second opening
        self.lost = 0
        self.polls = 0

    async def run(self) -> None:
        device = Device("reader")
        cfg = self.config
        reported = False
        try:
            while True:
                reader = None
                try:
                    reader = await device.call(open_reader, cfg, self.buses)
                except hal.DriverError as exc:
                    if not reported:  # one line per outage, not one per retry
                        log.error(not_answering("NFC reader", cfg.driver, cfg.bus(), exc) +
                                  f"; looking for it again every {cfg.retry_s:g} s")
                        self._fault("reader_missing")
                        reported = True
                    await asyncio.sleep(cfg.retry_s)
                    continue
                self.opened += 1
                log.info("NFC reader (%s) on %s is ready%s", cfg.driver, cfg.bus(), " again" if reported else "")
                reported = False
                self.connected.set()
                try:
                    await self._poll(device, reader)
                except hal.DriverError as exc:
                    self.lost += 1
                    self.connected.clear()
                    log.error(not_answering("NFC reader", cfg.driver, cfg.bus(), exc) +
                              f"; taps are not read until it is back (looking every {cfg.retry_s:g} s)")
                    self._fault("reader_lost")
                    reported = True
                finally:
                    await asyncio.shield(device.call(reader.close))
        finally:
            self.connected.clear()
            device.shutdown()

    async def _poll(self, device: Device, reader: hal.NfcReader) -> None:
        arrival = hal.ArrivalFilter(self.config.gap_ms)
        while True:
            started = time.monotonic()
            uid = await device.call(reader.poll)
            self.polls += 1
            fresh = arrival.feed(uid, self._ticks_ms())
            if fresh is not None:
                await self._tap(fresh)
            elif uid is None and time.monotonic() - started < 0.005:
                await asyncio.sleep(self.config.poll_ms / 1000)  # a driver that returns at once must not spin


class SensorLoop:
    """Samples one hardware sensor on its interval; a failed open or read is logged once and tried again at the
    next interval."""

    def __init__(self, config: SensorConfig, buses: Buses,
                 store: Callable[[dict[str, int]], Awaitable[None]], *, fault: Callable[[str], None]) -> None:
        self.config = config
        self.buses = buses
        self._store = store
        self._fault = fault
        self.failures = 0

    async def run(self) -> None:
        cfg = self.config
        device = Device(f"sensor-{cfg.name}")
        sensor: hal.Sensor | None = None
        reported = False
        try:
            while True:
                try:
                    if sensor is None:
                        sensor = await device.call(open_sensor, cfg, self.buses)
                        log.info("sensor %s (%s) on %s is ready%s", cfg.name, cfg.driver, cfg.bus(),
                                 " again" if reported else "")
                        reported = False
                    values = await device.call(sensor.read)
                except hal.DriverError as exc:
                    self.failures += 1
                    if not reported:
                        log.error(not_answering(f"sensor {cfg.name}", cfg.driver, cfg.bus(), exc) +
                                  f"; trying again every {cfg.interval_s} s")
                        self._fault("sensor_failed")
                        reported = True
                    if sensor is not None and cfg.driver != "dht22":  # a DHT22 misses reads now and then
                        await device.call(sensor.close)
                        sensor = None
                else:
                    await self._store(values)
                await asyncio.sleep(cfg.interval_s)
        finally:
            if sensor is not None:
                await asyncio.shield(device.call(sensor.close))
            device.shutdown()


class FeedbackPlayer:
    """Plays firmware's indicator patterns on the LEDs and buzzer. The first step is shown at once, inside the
    call, so the beep follows the commit without waiting on the loop; a new pattern cuts the old one short."""

    def __init__(self, indicator: hal.Indicator | None, *, offline: Callable[[], bool]) -> None:
        self.indicator = indicator
        self._offline = offline
        self._playing: asyncio.Task[None] | None = None
        self.shown: list[str] = []  # statuses in order (the status endpoint and tests read it)

    def idle(self) -> bool:
        return self._playing is None or self._playing.done()

    def status_for(self, status: str) -> str:
        """Stored, but the hub is out of reach: the person sees that it was kept, and that someone should look."""
        if status == hal.ACCEPTED and self._offline():
            return hal.OFFLINE
        return status

    def show(self, status: str, reason: str = "") -> None:
        self.shown.append(status)
        del self.shown[:-64]
        steps = hal.PATTERNS.get(status, ())
        indicator = self.indicator
        if indicator is None or not steps:
            return
        if self._playing is not None:
            self._playing.cancel()
        try:
            indicator.begin(status, reason)
            led, buzz, _ = steps[0]
            indicator.show(led, buzz)
        except Exception as exc:  # a GPIO error must not lose the tap that is already stored
            log.warning("indicator failed: %s", exc)
            return
        self._playing = asyncio.get_running_loop().create_task(self._play(indicator, steps))

    async def _play(self, indicator: hal.Indicator, steps: Any) -> None:
        # Cancelled by the next pattern: leave the pins to it, its first step is already showing.
        for i, (led, buzz, ms) in enumerate(steps):
            if i:
                indicator.show(led, buzz)
            await asyncio.sleep(ms / 1000)
        try:
            indicator.show(None, False)
        except Exception as exc:
            log.warning("indicator failed: %s", exc)

    def close(self) -> None:
        if self._playing is not None:
            self._playing.cancel()
        if self.indicator is not None:
            try:
                self.indicator.show(None, False)
                self.indicator.close()
            except Exception as exc:
                log.warning("indicator failed to close: %s", exc)
