"""RC522 (NXP MFRC522) driver over SPI: ISO 14443-A uids (4, 7 or 10 bytes) through Adafruit's bus device.

No maintained Python library drives the MFRC522 (the ones on PyPI bind to RPi.GPIO and spidev directly), so
this module speaks the chip's registers itself (MFRC522 datasheet rev. 3.9, sections 9 and 10) and the card's
anticollision (ISO/IEC 14443-3, 6.5). adafruit_bus_device is imported in open(), never at module import.
"""

import time

from firmware import hal

# Registers (datasheet 9.2)
COMMAND = 0x01
COM_IRQ = 0x04
ERROR = 0x06
FIFO_DATA = 0x09
FIFO_LEVEL = 0x0A
CONTROL = 0x0C
BIT_FRAMING = 0x0D
COLL = 0x0E
MODE = 0x11
TX_MODE = 0x12
RX_MODE = 0x13
TX_CONTROL = 0x14
TX_ASK = 0x15
MOD_WIDTH = 0x24
T_MODE = 0x2A
T_PRESCALER = 0x2B
T_RELOAD_H = 0x2C
T_RELOAD_L = 0x2D
VERSION = 0x37

# Commands (datasheet 10.3)
IDLE = 0x00
TRANSCEIVE = 0x0C
SOFT_RESET = 0x0F

# ISO 14443-3 card commands
REQA = 0x26
HLTA = 0x50
CASCADE_TAG = 0x88
SELECT = (0x93, 0x95, 0x97)  # cascade levels 1, 2, 3

RX_IRQ, IDLE_IRQ, TIMER_IRQ = 0x20, 0x10, 0x01
PROTOCOL_ERRORS = 0x13  # BufferOvfl, ParityErr, ProtocolErr
COLL_ERR = 0x08

# VersionReg of genuine chips and common clones; 0x00 and 0xFF are what an absent chip reads as.
VERSIONS = (0x88, 0x90, 0x91, 0x92, 0x12, 0xB2)


def crc_a(data):
    """ISO/IEC 14443-3 CRC_A (initial 0x6363), low byte first."""
    crc = 0x6363
    for byte in data:
        byte ^= crc & 0xFF
        byte = (byte ^ (byte << 4)) & 0xFF
        crc = (crc >> 8) ^ (byte << 8) ^ (byte << 3) ^ (byte >> 4)
    return bytes([crc & 0xFF, (crc >> 8) & 0xFF])


class Rc522Reader(hal.NfcReader):
    """An MFRC522 on SPI. cs: chip-select pin name, or None when the SPI bus's own CE0/CE1 selects it.

    poll() sends one REQA; a card that answers is selected through its cascade levels, its uid returned and
    the card halted, so a card left on the antenna is read once per presentation.
    """

    name = "nfc"

    def __init__(self, spi=None, cs=None, make_output=None, timeout_s=0.025, check_s=1.0, baudrate=1000000):
        self.spi = spi
        self.cs = cs
        self.make_output = make_output
        self.timeout_s = timeout_s
        self.check_s = check_s
        self.baudrate = baudrate
        self.bus = "SPI %s" % (("CS " + cs) if cs else "CE0")
        self._dev = None
        self._checked = 0.0
        self.version = None

    # -- registers ---------------------------------------------------------------------------------

    def _device(self):
        dev = self._dev
        if dev is None:
            raise hal.DriverError("RC522 reader is not open")
        return dev

    def _write(self, reg, *values):
        out = bytearray([(reg << 1) & 0x7E]) + bytearray(values)
        with self._device() as spi:
            spi.write(out)

    def _read(self, reg, count=1):
        addr = 0x80 | ((reg << 1) & 0x7E)
        out = bytearray([addr] * count + [0])
        into = bytearray(len(out))
        with self._device() as spi:
            spi.write_readinto(out, into)
        return bytes(into[1:])

    def _reg(self, reg):
        return self._read(reg)[0]

    def _set_bits(self, reg, mask):
        self._write(reg, self._reg(reg) | mask)

    # -- life cycle --------------------------------------------------------------------------------

    def open(self):
        try:
            from adafruit_bus_device.spi_device import SPIDevice
        except ImportError as error:
            raise hal.DriverError("adafruit-circuitpython-busdevice is not installed: %s" % error)
        from firmware.drivers.blinka import _output, _spi_bus

        spi = _spi_bus(self.spi)
        chip_select = _output(self.cs, self.make_output, True) if self.cs else None
        self._dev = SPIDevice(spi, chip_select, baudrate=self.baudrate)
        try:
            self._write(COMMAND, SOFT_RESET)
            deadline = time.monotonic() + 0.15
            while self._reg(COMMAND) & 0x10 and time.monotonic() < deadline:  # PowerDown until reset ends
                time.sleep(0.005)
            version = self._reg(VERSION)
            if version not in VERSIONS:
                raise hal.DriverError("RC522 on %s did not answer (VersionReg 0x%02x)" % (self.bus, version))
            self.version = version
            for reg, value in ((TX_MODE, 0x00), (RX_MODE, 0x00), (MOD_WIDTH, 0x26),
                               # timer: 25 ms at 40 kHz (TPrescaler 0xA9), started by every transmission
                               (T_MODE, 0x80), (T_PRESCALER, 0xA9), (T_RELOAD_H, 0x03), (T_RELOAD_L, 0xE8),
                               (TX_ASK, 0x40), (MODE, 0x3D)):
                self._write(reg, value)
            self._set_bits(TX_CONTROL, 0x03)  # antenna on
        except hal.DriverError:
            self._dev = None
            raise
        except Exception as error:
            self._dev = None
            raise hal.DriverError("RC522 on %s: %s" % (self.bus, error))

    def close(self):
        if self._dev is not None:
            try:
                self._write(TX_CONTROL, 0x80)  # antenna off
            except Exception:
                pass
        self._dev = None

    # -- the card ----------------------------------------------------------------------------------

    def poll(self):
        if self._dev is None:
            raise hal.DriverError("RC522 reader is not open")
        try:
            uid = self._read_uid()
            if uid is None:
                # SPI has no acknowledge: an unplugged chip reads as 0x00 or 0xFF, so an idle reader proves
                # now and then that it is still there.
                now = time.monotonic()
                if now - self._checked >= self.check_s:
                    self._checked = now
                    version = self._reg(VERSION)
                    if version not in VERSIONS:
                        raise hal.DriverError("RC522 on %s stopped answering (VersionReg 0x%02x)"
                                              % (self.bus, version))
                return None
        except hal.DriverError:
            raise
        except Exception as error:
            raise hal.DriverError("RC522 on %s failed: %s" % (self.bus, error))
        return hal.normalize_uid(uid)

    def _read_uid(self):
        answer = self._transceive(bytes([REQA]), bits=7)
        if answer is None or len(answer) != 2:
            return None
        uid = b""
        for level in SELECT:
            self._write(COLL, self._reg(COLL) & 0x7F)  # ValuesAfterColl off: bits after a collision are 0
            part = self._transceive(bytes([level, 0x20]))
            if part is None or len(part) != 5 or part[0] ^ part[1] ^ part[2] ^ part[3] != part[4]:
                return None  # two cards at once, or the card left: the next poll tries again
            frame = bytes([level, 0x70]) + part
            sak = self._transceive(frame + crc_a(frame))
            if sak is None or len(sak) != 3 or crc_a(sak[:1]) != sak[1:]:
                return None
            if part[0] == CASCADE_TAG:
                uid += part[1:4]
            else:
                uid += part[:4]
            if not sak[0] & 0x04:  # uid complete
                halt = bytes([HLTA, 0x00])
                self._transceive(halt + crc_a(halt))  # no answer is the answer
                return uid
        return None

    def _transceive(self, data, bits=0):
        """Send `data` (the last byte's `bits` only, 0 = all 8) and return the card's answer, or None."""
        self._write(COMMAND, IDLE)
        self._write(COM_IRQ, 0x7F)  # clear every interrupt request bit
        self._write(FIFO_LEVEL, 0x80)  # flush the FIFO
        self._write(FIFO_DATA, *data)
        self._write(BIT_FRAMING, bits & 0x07)
        self._write(COMMAND, TRANSCEIVE)
        self._set_bits(BIT_FRAMING, 0x80)  # StartSend
        deadline = time.monotonic() + self.timeout_s + 0.05
        while True:
            irq = self._reg(COM_IRQ)
            if irq & (RX_IRQ | IDLE_IRQ):
                break
            if irq & TIMER_IRQ or time.monotonic() > deadline:
                return None
        self._write(BIT_FRAMING, self._reg(BIT_FRAMING) & 0x7F)
        if self._reg(ERROR) & (PROTOCOL_ERRORS | COLL_ERR):
            return None
        count = self._reg(FIFO_LEVEL) & 0x7F
        return self._read(FIFO_DATA, count) if count else b""
