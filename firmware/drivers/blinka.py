"""Adafruit-Blinka drivers: PN532 over I2C, SPI or UART, BME280 and SHT31 over I2C, DHT22 on a GPIO pin, LEDs
and a buzzer on GPIO.

Blinka (board, busio, digitalio), pyserial and the CircuitPython libraries are imported in open(), never at
module import. Each constructor takes the bus or pin object (or a maker of output pins) so tests can hand in
fakes and run the real Adafruit library code against them.
"""

import time

from firmware import hal


def _i2c_bus(i2c):
    if i2c is not None:
        return i2c
    try:
        import board
        import busio

        return busio.I2C(board.SCL, board.SDA)
    except Exception as error:  # ImportError, or Blinka's own errors on a board without I2C
        raise hal.DriverError("no I2C bus (Adafruit-Blinka): %s" % error)


def _spi_bus(spi):
    if spi is not None:
        return spi
    try:
        import board
        import busio

        return busio.SPI(board.SCK, MOSI=board.MOSI, MISO=board.MISO)
    except Exception as error:
        raise hal.DriverError("no SPI bus (Adafruit-Blinka): %s" % error)


def _output(pin, make=None, value=False):
    """A digital output on `pin` (a board pin name like "D17", or a pin object). `make` builds it instead of
    digitalio (tests hand in fakes); either way the result has .value and .deinit()."""
    if make is not None:
        out = make(pin)
        out.value = value
        return out
    try:
        import digitalio
    except Exception as error:
        raise hal.DriverError("digitalio (Adafruit-Blinka) is not usable: %s" % error)
    try:
        out = digitalio.DigitalInOut(_pin(pin))
        out.direction = digitalio.Direction.OUTPUT
        out.value = value
    except hal.DriverError:
        raise
    except Exception as error:
        raise hal.DriverError("GPIO pin %r: %s" % (pin, error))
    return out


def _pin(pin):
    if not isinstance(pin, str):
        return pin
    try:
        import board

        return getattr(board, pin)
    except Exception as error:
        raise hal.DriverError("no GPIO pin %r (Adafruit-Blinka): %s" % (pin, error))


class _Pn532Reader(hal.NfcReader):
    """A PN532 through adafruit_pn532; subclasses say which bus. poll() asks for one ISO 14443-A target and
    waits up to timeout_s for it."""

    name = "nfc"
    bus = "?"

    def __init__(self, timeout_s=0.1, check_s=1.0):
        self.timeout_s = timeout_s
        self.check_s = check_s  # how often an idle reader is asked for its firmware version
        self._dev = None
        self._checked = 0.0

    def _connect(self):
        raise NotImplementedError

    def open(self):
        try:
            dev = self._connect()
            dev.SAM_configuration()
        except hal.DriverError:
            raise
        except ImportError as error:
            raise hal.DriverError(
                "adafruit-circuitpython-pn532 is not installed (pip install adafruit-circuitpython-pn532): %s"
                % error)
        except Exception as error:  # ValueError (no device at address), RuntimeError (no answer)
            raise hal.DriverError("PN532 on %s did not answer: %s" % (self.bus, error))
        self._dev = dev

    def firmware_version(self):
        return self._dev.firmware_version if self._dev is not None else None

    def poll(self):
        dev = self._dev
        if dev is None:
            raise hal.DriverError("PN532 reader is not open")
        try:
            uid = dev.read_passive_target(timeout=self.timeout_s)
            if not uid:
                # adafruit_pn532 reads a bus error as "busy", so an unplugged PN532 looks like an empty field:
                # an idle reader proves now and then that it still answers.
                now = time.monotonic()
                if now - self._checked >= self.check_s:
                    self._checked = now
                    dev.firmware_version  # noqa: B018 - RuntimeError when the PN532 does not answer
                return None
        except Exception as error:
            raise hal.DriverError("PN532 on %s failed: %s" % (self.bus, error))
        return hal.normalize_uid(bytes(uid))

    def close(self):
        self._dev = None


class Pn532I2cReader(_Pn532Reader):
    """A PN532 on I2C (nfcpy drives a PN532 only over UART or USB)."""

    def __init__(self, i2c=None, address=0x24, timeout_s=0.1):
        _Pn532Reader.__init__(self, timeout_s)
        self.i2c = i2c
        self.address = address
        self.bus = "I2C 0x%02x" % address

    def _connect(self):
        from adafruit_pn532.i2c import PN532_I2C

        return PN532_I2C(_i2c_bus(self.i2c), address=self.address)


class Pn532SpiReader(_Pn532Reader):
    """A PN532 on SPI; cs is its chip-select pin, a free GPIO (the SPI driver itself owns CE0 and CE1)."""

    def __init__(self, spi=None, cs="D5", make_output=None, timeout_s=0.1):
        _Pn532Reader.__init__(self, timeout_s)
        self.spi = spi
        self.cs = cs
        self.make_output = make_output
        self.bus = "SPI cs %s" % (cs,)

    def _connect(self):
        from adafruit_pn532.spi import PN532_SPI

        return PN532_SPI(_spi_bus(self.spi), _output(self.cs, self.make_output, True))


class Pn532UartReader(_Pn532Reader):
    """A PN532 on a serial port (the Pi's /dev/serial0 pins, or a USB-serial adapter) through pyserial."""

    def __init__(self, uart=None, device="/dev/serial0", baudrate=115200, timeout_s=0.1):
        _Pn532Reader.__init__(self, timeout_s)
        self.uart = uart
        self.device = device
        self.baudrate = baudrate
        self.bus = "UART %s" % device
        self._port = None

    def _connect(self):
        from adafruit_pn532.uart import PN532_UART

        uart = self.uart
        if uart is None:
            try:
                import serial
            except ImportError as error:
                raise hal.DriverError("pyserial is not installed (pip install pyserial): %s" % error)
            try:
                uart = self._port = serial.Serial(self.device, self.baudrate, timeout=0.1)
            except Exception as error:
                raise hal.DriverError("serial port %s: %s" % (self.device, error))
        return PN532_UART(uart)

    def close(self):
        _Pn532Reader.close(self)
        port = self._port
        self._port = None
        if port is not None:
            try:
                port.close()
            except Exception:
                pass


class _I2cClimateSensor(hal.Sensor):
    """Temperature and relative humidity from a chip on I2C; subclasses say which chip and library."""

    chip = "?"
    package = "?"

    def __init__(self, name, i2c=None, address=0x77):
        self.name = name
        self.i2c = i2c
        self.address = address
        self._dev = None

    def _connect(self, bus):
        raise NotImplementedError

    def open(self):
        bus = _i2c_bus(self.i2c)
        try:
            self._dev = self._connect(bus)
        except ImportError as error:
            raise hal.DriverError("%s is not installed: %s" % (self.package, error))
        except Exception as error:  # ValueError: no device; RuntimeError: wrong chip id
            raise hal.DriverError("%s on I2C 0x%02x: %s" % (self.chip, self.address, error))

    def read(self):
        dev = self._dev
        if dev is None:
            raise hal.DriverError("%s %s is not open" % (self.chip, self.name))
        try:
            temperature = dev.temperature
            humidity = dev.relative_humidity
        except Exception as error:
            raise hal.DriverError("%s %s read failed: %s" % (self.chip, self.name, error))
        return {"temp_cc": hal.centi(temperature), "rh_cp": hal.centi(humidity)}

    def close(self):
        self._dev = None


class Bme280Sensor(_I2cClimateSensor):
    """A Bosch BME280 through adafruit_bme280."""

    chip = "BME280"
    package = "adafruit-circuitpython-bme280"

    def _connect(self, bus):
        from adafruit_bme280 import basic

        return basic.Adafruit_BME280_I2C(bus, self.address)


class Sht31Sensor(_I2cClimateSensor):
    """A Sensirion SHT31 through adafruit_sht31d."""

    chip = "SHT31"
    package = "adafruit-circuitpython-sht31d"

    def __init__(self, name, i2c=None, address=0x44):
        _I2cClimateSensor.__init__(self, name, i2c, address)

    def _connect(self, bus):
        import adafruit_sht31d

        return adafruit_sht31d.SHT31D(bus, address=self.address)


class Dht22Sensor(hal.Sensor):
    """Temperature and humidity from a DHT22 (AM2302) through adafruit_dht.

    pin: a board pin object or its name ("D4"). use_pulseio: None lets adafruit_dht decide.
    DHT22 reads fail now and then (checksum, short pulse train): those raise DriverError, the scheduler
    counts a failed sample and tries at the next period.
    """

    def __init__(self, name, pin="D4", use_pulseio=None):
        self.name = name
        self.pin = pin
        self.use_pulseio = use_pulseio
        self._dev = None

    def open(self):
        try:
            import adafruit_dht
        except Exception as error:  # ImportError, or Blinka refusing this board
            raise hal.DriverError("adafruit-circuitpython-dht is not usable: %s" % error)
        pin = _pin(self.pin)
        try:
            if self.use_pulseio is None:
                self._dev = adafruit_dht.DHT22(pin)
            else:
                self._dev = adafruit_dht.DHT22(pin, use_pulseio=self.use_pulseio)
        except Exception as error:
            raise hal.DriverError("DHT22 on %r: %s" % (self.pin, error))

    def read(self):
        dev = self._dev
        if dev is None:
            raise hal.DriverError("DHT22 %s is not open" % self.name)
        try:
            dev.measure()
            temperature = dev.temperature
            humidity = dev.humidity
        except Exception as error:
            raise hal.DriverError("DHT22 %s read failed: %s" % (self.name, error))
        if temperature is None or humidity is None:
            raise hal.DriverError("DHT22 %s returned no reading" % self.name)
        return {"temp_cc": hal.centi(temperature), "rh_cp": hal.centi(humidity)}

    def close(self):
        dev = self._dev
        self._dev = None
        if dev is not None:
            try:
                dev.exit()
            except Exception:
                pass


# Colours an LED without its own pin shows by mixing: amber on a red-green or RGB LED.
MIXES = {"amber": ("red", "green")}


class GpioIndicator(hal.Indicator):
    """LEDs and a buzzer on GPIO pins. leds: {"green": "D17", "amber": "D27", "red": "D22"}; without an amber
    pin amber lights red and green together (an RGB or two-colour LED). buzzer: pin name or None.
    make_output builds an output from a pin (tests); default digitalio."""

    def __init__(self, leds=None, buzzer="D18", make_output=None):
        self.leds = dict(leds) if leds else {"green": "D17", "amber": "D27", "red": "D22"}
        self.buzzer = buzzer
        self.make_output = make_output
        self._outputs = {}

    def open(self):
        pins = dict(self.leds)
        if self.buzzer is not None:
            pins["buzzer"] = self.buzzer
        try:
            for name, pin in pins.items():
                self._outputs[name] = _output(pin, self.make_output)
        except hal.DriverError:
            self.close()
            raise

    def show(self, led, buzz):
        lit = MIXES.get(led, ()) if led not in self._outputs else (led,)
        for name, out in self._outputs.items():
            if name == "buzzer":
                out.value = bool(buzz)
            else:
                out.value = name in lit

    def close(self):
        for out in self._outputs.values():
            try:
                out.value = False
                out.deinit()
            except Exception:
                pass
        self._outputs = {}
