"""Adafruit-Blinka drivers: PN532 over I2C, BME280 over I2C, DHT22 on a GPIO pin, LEDs and buzzer on GPIO.

Blinka (board, busio, digitalio) and the CircuitPython libraries are imported in open(), never at module
import. Each constructor takes the bus or pin object so tests can hand in a fake bus and run the real
Adafruit library code against it.
"""

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


def _pin(pin):
    if not isinstance(pin, str):
        return pin
    try:
        import board

        return getattr(board, pin)
    except Exception as error:
        raise hal.DriverError("no GPIO pin %r (Adafruit-Blinka): %s" % (pin, error))


class Pn532I2cReader(hal.NfcReader):
    """A PN532 on I2C through adafruit_pn532 (nfcpy drives a PN532 only over UART or USB).

    poll() asks for one ISO 14443-A target and waits up to timeout_s for it.
    """

    name = "nfc"

    def __init__(self, i2c=None, address=0x24, timeout_s=0.1):
        self.i2c = i2c
        self.address = address
        self.timeout_s = timeout_s
        self._dev = None

    def open(self):
        try:
            from adafruit_pn532.i2c import PN532_I2C
        except ImportError as error:
            raise hal.DriverError(
                "adafruit-circuitpython-pn532 is not installed (pip install adafruit-circuitpython-pn532): %s"
                % error)
        bus = _i2c_bus(self.i2c)
        try:
            dev = PN532_I2C(bus, address=self.address)
            dev.SAM_configuration()
        except Exception as error:  # ValueError (no device at address), RuntimeError (no answer)
            raise hal.DriverError("PN532 on I2C 0x%02x did not answer: %s" % (self.address, error))
        self._dev = dev

    def firmware_version(self):
        return self._dev.firmware_version if self._dev is not None else None

    def poll(self):
        dev = self._dev
        if dev is None:
            raise hal.DriverError("PN532 reader is not open")
        try:
            uid = dev.read_passive_target(timeout=self.timeout_s)
        except Exception as error:
            raise hal.DriverError("PN532 on I2C 0x%02x failed: %s" % (self.address, error))
        if not uid:
            return None
        return hal.normalize_uid(bytes(uid))

    def close(self):
        self._dev = None


class Bme280Sensor(hal.Sensor):
    """Temperature and humidity from a Bosch BME280 through adafruit_bme280."""

    def __init__(self, name, i2c=None, address=0x77):
        self.name = name
        self.i2c = i2c
        self.address = address
        self._dev = None

    def open(self):
        try:
            from adafruit_bme280 import basic
        except ImportError as error:
            raise hal.DriverError(
                "adafruit-circuitpython-bme280 is not installed: %s" % error)
        bus = _i2c_bus(self.i2c)
        try:
            self._dev = basic.Adafruit_BME280_I2C(bus, self.address)
        except Exception as error:  # ValueError: no device; RuntimeError: wrong chip id
            raise hal.DriverError("BME280 on I2C 0x%02x: %s" % (self.address, error))

    def read(self):
        dev = self._dev
        if dev is None:
            raise hal.DriverError("BME280 %s is not open" % self.name)
        try:
            temperature = dev.temperature
            humidity = dev.relative_humidity
        except Exception as error:
            raise hal.DriverError("BME280 %s read failed: %s" % (self.name, error))
        return {"temp_cc": hal.centi(temperature), "rh_cp": hal.centi(humidity)}

    def close(self):
        self._dev = None


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


class GpioIndicator(hal.Indicator):
    """LEDs and a buzzer on GPIO pins through digitalio. leds: {"green": "D17", ...}; buzzer: pin name."""

    def __init__(self, leds=None, buzzer="D18"):
        self.leds = dict(leds) if leds else {"green": "D17", "amber": "D27", "red": "D22"}
        self.buzzer = buzzer
        self._outputs = {}

    def open(self):
        try:
            import digitalio
        except Exception as error:
            raise hal.DriverError("digitalio (Adafruit-Blinka) is not usable: %s" % error)
        pins = dict(self.leds)
        if self.buzzer is not None:
            pins["buzzer"] = self.buzzer
        try:
            for name, pin in pins.items():
                out = digitalio.DigitalInOut(_pin(pin))
                out.direction = digitalio.Direction.OUTPUT
                out.value = False
                self._outputs[name] = out
        except hal.DriverError:
            raise
        except Exception as error:
            raise hal.DriverError("indicator pins %r: %s" % (pins, error))

    def show(self, led, buzz):
        for name, out in self._outputs.items():
            if name == "buzzer":
                out.value = bool(buzz)
            else:
                out.value = name == led

    def close(self):
        for out in self._outputs.values():
            try:
                out.value = False
                out.deinit()
            except Exception:
                pass
        self._outputs = {}
