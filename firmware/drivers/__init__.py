"""Driver choice: simulated by default, nfcpy or Adafruit-Blinka when asked for or found.

Each hardware driver lives in its own module and imports its library only when opened, so importing this
package, or choosing the simulator, loads no hardware library.
"""

from firmware import hal

READERS = ("auto", "sim", "nfcpy", "pn532_i2c", "pn532_spi", "pn532_uart", "rc522_spi")
SENSORS = ("sim", "bme280", "sht31", "dht22")
INDICATORS = ("sim", "gpio")


def open_reader(kind="auto", clock=None, log=None, **options):
    """An opened NFC reader of `kind`.

    "auto" tries nfcpy (options["path"], default "usb"), then a PN532 on I2C, and falls back to the
    simulator when neither answers. Options go to the driver's constructor.
    """
    if kind not in READERS:
        raise ValueError("reader: expected one of %s, got %r" % (list(READERS), kind))
    if kind == "auto":
        for candidate in ("nfcpy", "pn532_i2c"):
            try:
                return open_reader(candidate, clock=clock, **_only(options, candidate))
            except hal.DriverError as error:
                if log is not None:
                    log("reader %s not available: %s" % (candidate, error))
        kind = "sim"
    if kind == "sim":
        from firmware.sim import SimNfcReader

        if clock is None:
            clock = hal.SystemClock()
        reader = SimNfcReader(clock, options.get("script", ()))  # type: hal.NfcReader
    elif kind == "nfcpy":
        from firmware.drivers.nfcpy_reader import NfcpyReader

        reader = NfcpyReader(**options)
    elif kind == "pn532_i2c":
        from firmware.drivers.blinka import Pn532I2cReader

        reader = Pn532I2cReader(**options)
    elif kind == "pn532_spi":
        from firmware.drivers.blinka import Pn532SpiReader

        reader = Pn532SpiReader(**options)
    elif kind == "pn532_uart":
        from firmware.drivers.blinka import Pn532UartReader

        reader = Pn532UartReader(**options)
    else:
        from firmware.drivers.rc522 import Rc522Reader

        reader = Rc522Reader(**options)
    reader.open()
    return reader


def open_sensor(kind, name, **options):
    """An opened sensor of `kind` named `name` (the "sensor" field of its readings)."""
    if kind not in SENSORS:
        raise ValueError("sensor %r: expected one of %s, got %r" % (name, list(SENSORS), kind))
    if kind == "sim":
        from firmware.sim import SimSensor

        sensor = SimSensor(name, **options)  # type: hal.Sensor
    elif kind == "bme280":
        from firmware.drivers.blinka import Bme280Sensor

        sensor = Bme280Sensor(name, **options)
    elif kind == "sht31":
        from firmware.drivers.blinka import Sht31Sensor

        sensor = Sht31Sensor(name, **options)
    else:
        from firmware.drivers.blinka import Dht22Sensor

        sensor = Dht22Sensor(name, **options)
    sensor.open()
    return sensor


def open_indicator(kind="sim", **options):
    if kind not in INDICATORS:
        raise ValueError("indicator: expected one of %s, got %r" % (list(INDICATORS), kind))
    if kind == "sim":
        from firmware.sim import SimIndicator

        indicator = SimIndicator()  # type: hal.Indicator
    else:
        from firmware.drivers.blinka import GpioIndicator

        indicator = GpioIndicator(**options)
    indicator.open()
    return indicator


_OPTIONS = {
    "nfcpy": ("path", "targets", "interval_s"),
    "pn532_i2c": ("i2c", "address", "timeout_s"),
}


def _only(options, kind):
    names = _OPTIONS[kind]
    return {k: v for k, v in options.items() if k in names}
