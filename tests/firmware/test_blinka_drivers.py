"""The Blinka drivers running Adafruit's real libraries, unmodified, against fake buses and pulses.

adafruit_bme280 talks to a fake I2C bus that emulates the BME280's registers (chip id 0x60, calibration
words, raw ADC values); adafruit_pn532 talks to a fake I2C bus that speaks the PN532 frame protocol;
adafruit_dht decodes a fake pulse train. Expected values come from Bosch's integer compensation formulas
(BME280 datasheet 4.2.3), written here independently of the library's floating-point ones.
"""

import struct
from collections import deque

import adafruit_bme280  # noqa: F401  (the hw extra, installed by scripts/setup)
import pytest

from firmware import drivers, hal
from firmware.drivers.blinka import Bme280Sensor, Dht22Sensor, Pn532I2cReader


class FakeI2C:
    """The busio.I2C surface that adafruit_bus_device uses."""

    def __init__(self, devices):
        self.devices = devices  # address -> device with write(bytes) and read(n) -> bytes
        self.locked = False
        self.transactions = 0

    def try_lock(self):
        if self.locked:
            return False
        self.locked = True
        return True

    def unlock(self):
        self.locked = False

    def _device(self, address):
        if address not in self.devices:
            raise OSError(19, "No such device")  # what Linux's i2c-dev says
        return self.devices[address]

    def writeto(self, address, buffer, *, start=0, end=None):
        self.transactions += 1
        self._device(address).write(bytes(buffer[start:end]))

    def readfrom_into(self, address, buffer, *, start=0, end=None):
        self.transactions += 1
        end = len(buffer) if end is None else end
        data = self._device(address).read(end - start)
        buffer[start:end] = data

    def writeto_then_readfrom(self, address, out_buffer, in_buffer, *, out_start=0, out_end=None, in_start=0,
                              in_end=None):
        self.writeto(address, out_buffer, start=out_start, end=out_end)
        self.readfrom_into(address, in_buffer, start=in_start, end=in_end)


# -- BME280 ----------------------------------------------------------------------------------------

# Calibration: the datasheet's worked example for T and P; typical humidity words.
T1, T2, T3 = 27504, 26435, -1000
P = (36477, -10685, 3024, 2855, 140, -7, 15500, -14600, 6000)
H1, H2, H3, H4, H5, H6 = 75, 362, 0, 313, 50, 30
ADC_T, ADC_P, ADC_H = 519888, 415148, 30000


class FakeBme280:
    def __init__(self, chip_id=0x60, adc_t=ADC_T, adc_h=ADC_H):
        self.regs = bytearray(256)
        self.regs[0xD0] = chip_id
        self.regs[0x88:0xA0] = struct.pack("<HhhHhhhhhhhh", T1, T2, T3, *P)
        self.regs[0xA1] = H1
        e4, e5, e6 = H4 >> 4, (H4 & 0x0F) | ((H5 & 0x0F) << 4), H5 >> 4
        self.regs[0xE1:0xE8] = struct.pack("<hBbBbb", H2, H3, e4, e5, e6, H6)
        self.pointer = 0
        self.writes = []
        self.measurements = 0
        self.set_raw(adc_t, adc_h)

    def set_raw(self, adc_t, adc_h):
        self.regs[0xF7:0xFA] = bytes([ADC_P >> 12, (ADC_P >> 4) & 0xFF, (ADC_P & 0x0F) << 4])
        self.regs[0xFA:0xFD] = bytes([adc_t >> 12, (adc_t >> 4) & 0xFF, (adc_t & 0x0F) << 4])
        self.regs[0xFD:0xFF] = bytes([adc_h >> 8, adc_h & 0xFF])

    def write(self, data):
        if not data:
            return  # probe
        self.pointer = data[0]
        if len(data) == 2:
            self.writes.append((data[0], data[1]))
            self.regs[data[0]] = data[1]
            if data[0] == 0xF4 and data[1] & 0x03 == 0x01:
                self.measurements += 1  # forced mode: one conversion, done at once (status stays 0)

    def read(self, n):
        out = bytes(self.regs[self.pointer:self.pointer + n])
        self.pointer = (self.pointer + n) & 0xFF
        return out


def bosch_t_fine(adc_t):
    var1 = (((adc_t >> 3) - (T1 << 1)) * T2) >> 11
    var2 = (((((adc_t >> 4) - T1) * ((adc_t >> 4) - T1)) >> 12) * T3) >> 14
    return var1 + var2


def bosch_temperature_cc(adc_t):
    return (bosch_t_fine(adc_t) * 5 + 128) >> 8


def bosch_humidity_cp(adc_t, adc_h):
    v = bosch_t_fine(adc_t) - 76800
    v = (((((adc_h << 14) - (H4 << 20) - (H5 * v)) + 16384) >> 15)
         * (((((((v * H6) >> 10) * (((v * H3) >> 11) + 32768)) >> 10) + 2097152) * H2 + 8192) >> 14))
    v = v - (((((v >> 15) * (v >> 15)) >> 7) * H1) >> 4)
    v = max(0, min(v, 419430400))
    return (v >> 12) * 100 // 1024  # %RH in Q22.10 -> centi-percent


def test_bme280_reads_through_the_real_library():
    chip = FakeBme280()
    bus = FakeI2C({0x77: chip})
    sensor = drivers.open_sensor("bme280", "kitchen-air", i2c=bus)
    values = sensor.read()
    assert bosch_temperature_cc(ADC_T) == 2508  # the datasheet's worked example: 25.08 degC
    assert abs(values["temp_cc"] - 2508) <= 1
    expected_rh = bosch_humidity_cp(ADC_T, ADC_H)
    assert 1000 < expected_rh < 9000
    assert abs(values["rh_cp"] - expected_rh) <= 5, (values, expected_rh)
    assert (0xE0, 0xB6) in chip.writes  # the library soft-reset the chip
    # the fake holds the datasheet's example: the library's own pressure gives its 100653 Pa
    assert sensor._dev.pressure == pytest.approx(1006.53, abs=0.01)
    assert chip.measurements >= 1 and not bus.locked


def test_bme280_follows_the_raw_values():
    chip = FakeBme280()
    sensor = Bme280Sensor("probe", i2c=FakeI2C({0x76: chip}), address=0x76)
    sensor.open()
    for adc_t, adc_h in ((400000, 20000), (560000, 40000), (470000, 33000)):
        chip.set_raw(adc_t, adc_h)
        values = sensor.read()
        assert abs(values["temp_cc"] - bosch_temperature_cc(adc_t)) <= 1
        assert abs(values["rh_cp"] - bosch_humidity_cp(adc_t, adc_h)) <= 5


def test_bme280_wrong_chip_or_missing_device_is_a_driver_error():
    with pytest.raises(hal.DriverError, match="Chip ID 0x58"):
        Bme280Sensor("x", i2c=FakeI2C({0x77: FakeBme280(chip_id=0x58)})).open()  # a BMP280
    with pytest.raises(hal.DriverError, match="0x77"):
        Bme280Sensor("x", i2c=FakeI2C({})).open()
    with pytest.raises(hal.DriverError, match="not open"):
        Bme280Sensor("x").read()


# -- PN532 -----------------------------------------------------------------------------------------

ACK = bytes([0x00, 0x00, 0xFF, 0x00, 0xFF, 0x00])


def pn532_frame(data):
    length = len(data)
    checksum = (~sum(data) + 1) & 0xFF
    return bytes([0x00, 0x00, 0xFF, length, (~length + 1) & 0xFF, *data, checksum, 0x00])


class FakePn532:
    """The PN532's I2C side: every read starts with a status byte (0x01 ready); frames in, ACK and
    response frames out. InListPassiveTarget answers only while a card is in the field."""

    def __init__(self):
        self.card = None
        self.out = deque()
        self.commands = []

    def write(self, data):
        if not data:
            return  # probe
        assert data[:3] == b"\x00\x00\xff", data
        length = data[3]
        assert (length + data[4]) & 0xFF == 0, "length checksum"
        body = data[5:5 + length]
        assert (sum(body) + data[5 + length]) & 0xFF == 0, "data checksum"
        assert body[0] == 0xD4
        command, params = body[1], body[2:]
        self.commands.append(command)
        self.out.clear()
        self.out.append(ACK)
        if command == 0x02:  # GetFirmwareVersion
            self.out.append(pn532_frame(bytes([0xD5, 0x03, 0x32, 0x01, 0x06, 0x07])))
        elif command == 0x14:  # SAMConfiguration
            self.out.append(pn532_frame(bytes([0xD5, 0x15])))
        elif command == 0x4A:  # InListPassiveTarget, 106 kbps type A
            assert params[:2] == b"\x01\x00"
            if self.card is not None:
                uid = bytes.fromhex(self.card)
                target = bytes([0x01, 0x00, 0x44, 0x00, len(uid)]) + uid
                self.out.append(pn532_frame(bytes([0xD5, 0x4B, 0x01]) + target))
        else:
            raise AssertionError(f"unexpected PN532 command {command:#x}")

    def read(self, n):
        if not self.out:
            return bytes(n)  # status 0x00: busy
        if n == 1:
            return b"\x01"  # a status poll does not consume the frame
        frame = self.out.popleft()
        return (b"\x01" + frame + bytes(n))[:n]


def test_pn532_over_i2c_reads_uids_through_the_real_library():
    chip = FakePn532()
    bus = FakeI2C({0x24: chip})
    reader = drivers.open_reader("pn532_i2c", i2c=bus, timeout_s=0.05)
    assert reader.firmware_version() == (0x32, 0x01, 0x06, 0x07)
    assert reader.poll() is None  # no card: the PN532 never becomes ready
    chip.card = "04a1b2c3d4e580"
    assert reader.poll() == "04a1b2c3d4e580"
    chip.card = "deadbeef"
    assert reader.poll() == "deadbeef"
    assert 0x14 in chip.commands and 0x4A in chip.commands
    reader.close()


def test_pn532_missing_is_a_driver_error():
    with pytest.raises(hal.DriverError, match="0x24"):
        Pn532I2cReader(i2c=FakeI2C({})).open()


# -- DHT22 -----------------------------------------------------------------------------------------

def dht22_pulses(rh_tenths, t_tenths, corrupt=False):
    """The DHT22's answer as pulseio sees it: per bit a ~50 us low, then 26 us (0) or 70 us (1) high."""
    t_word = abs(t_tenths) | (0x8000 if t_tenths < 0 else 0)
    data = [rh_tenths >> 8, rh_tenths & 0xFF, t_word >> 8, t_word & 0xFF]
    data.append((sum(data) + (1 if corrupt else 0)) & 0xFF)
    pulses = []
    for byte in data:
        for bit in range(7, -1, -1):
            pulses += [50, 70 if byte >> bit & 1 else 26]
    return pulses


class FakePulseIn:
    """pulseio.PulseIn as adafruit_dht uses it; resume() "triggers" the sensor."""

    train = []

    def __init__(self, pin, maxlen=81, idle_state=True):
        self.pin = pin
        self.maxlen = maxlen
        self.buffer = deque()

    def pause(self):
        pass

    def clear(self):
        self.buffer.clear()

    def resume(self, trigger_duration=0):
        self.buffer.extend(type(self).train[: self.maxlen])

    def popleft(self):
        return self.buffer.popleft()

    def __len__(self):
        return len(self.buffer)

    def deinit(self):
        pass


@pytest.fixture
def pulses(monkeypatch):
    import adafruit_dht
    monkeypatch.setattr(adafruit_dht, "PulseIn", FakePulseIn, raising=False)
    monkeypatch.setattr(adafruit_dht.time, "sleep", lambda s: None)
    return FakePulseIn


def test_dht22_decodes_fake_pulses_through_the_real_library(pulses):
    pulses.train = dht22_pulses(652, 281)
    sensor = Dht22Sensor("room", pin=object(), use_pulseio=True)
    sensor.open()
    assert sensor.read() == {"temp_cc": 2810, "rh_cp": 6520}
    pulses.train = dht22_pulses(455, -35)
    sensor.close()
    sensor.open()  # a new device: the library caches a reading for 2 s
    assert sensor.read() == {"temp_cc": -350, "rh_cp": 4550}


@pytest.mark.parametrize("train", [dht22_pulses(652, 281, corrupt=True), dht22_pulses(652, 281)[:40], []])
def test_dht22_bad_pulse_trains_are_driver_errors(pulses, train):
    pulses.train = train
    sensor = Dht22Sensor("room", pin=object(), use_pulseio=True)
    sensor.open()
    with pytest.raises(hal.DriverError, match="DHT22 room read failed"):
        sensor.read()


def test_blinka_on_this_machine():
    """What Blinka itself does here: it imports on x86 (GENERIC_X86) but has no I2C pins, so the drivers
    without an injected bus fail with DriverError and "auto" falls back to the simulator."""
    with pytest.raises(hal.DriverError):
        Bme280Sensor("room").open()
    with pytest.raises(hal.DriverError):
        Pn532I2cReader().open()


# -- PN532 over UART -------------------------------------------------------------------------------

class FakeUart:
    """The serial port (pyserial's surface that adafruit_pn532.uart uses) with a PN532 on the far side: the
    same frames as on I2C, without I2C's status byte, preceded by the wake-up preamble."""

    def __init__(self, chip):
        self.chip = chip
        self.rx = bytearray()
        self.wakeups = 0

    @property
    def in_waiting(self):
        return len(self.rx)

    def reset_input_buffer(self):
        self.rx.clear()

    def write(self, data):
        data = bytes(data)
        if data.startswith(b"\x55\x55"):
            self.wakeups += 1
            return len(data)
        self.chip.write(data)
        while self.chip.out:
            self.rx += self.chip.out.popleft()
        return len(data)

    def read(self, n):
        out = bytes(self.rx[:n])
        del self.rx[:n]
        return out


def test_pn532_over_uart_reads_uids_through_the_real_library():
    from firmware.drivers.blinka import Pn532UartReader

    chip = FakePn532()
    uart = FakeUart(chip)
    reader = drivers.open_reader("pn532_uart", uart=uart, timeout_s=0.05)
    assert uart.wakeups >= 1 and 0x14 in chip.commands
    assert reader.poll() is None
    chip.card = "04a1b2c3d4e580"
    assert reader.poll() == "04a1b2c3d4e580"
    reader.close()
    with pytest.raises(hal.DriverError, match="/dev/nonexistent-serial"):
        Pn532UartReader(device="/dev/nonexistent-serial").open()


# -- SHT31 -----------------------------------------------------------------------------------------

def sht_crc(data):
    """Sensirion's CRC-8 (polynomial 0x31, init 0xFF), datasheet 4.12."""
    crc = 0xFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x31) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


class FakeSht31:
    """The SHT31's I2C side: 16-bit commands in; a single-shot measurement answers six bytes (T, CRC, RH, CRC)."""

    def __init__(self, raw_t=0x6666, raw_rh=0x8000):
        self.raw_t, self.raw_rh = raw_t, raw_rh
        self.commands = []

    def write(self, data):
        if len(data) == 2:
            self.commands.append(data[0] << 8 | data[1])

    def read(self, n):
        t, rh = self.raw_t.to_bytes(2, "big"), self.raw_rh.to_bytes(2, "big")
        return (t + bytes([sht_crc(t)]) + rh + bytes([sht_crc(rh)]))[:n]


def test_sht31_reads_through_the_real_library():
    chip = FakeSht31()
    sensor = drivers.open_sensor("sht31", "cold-box", i2c=FakeI2C({0x44: chip}))
    values = sensor.read()
    # datasheet 4.13: T = -45 + 175 * raw / 65535, RH = 100 * raw / 65535
    assert values["temp_cc"] == round((-45 + 175 * 0x6666 / 65535) * 100)
    assert values["rh_cp"] == round(100 * 0x8000 / 65535 * 100)
    assert 0x30A2 in chip.commands  # the library soft-reset the chip
    with pytest.raises(hal.DriverError, match="SHT31 on I2C 0x44"):
        drivers.open_sensor("sht31", "x", i2c=FakeI2C({}))
