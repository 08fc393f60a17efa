"""The RC522 driver against a fake MFRC522 on a fake SPI bus, through Adafruit's real SPIDevice.

The fake keeps the chip's register file and FIFO and answers like an ISO 14443-A card behind the antenna:
REQA, the anticollision and SELECT of each cascade level (BCC and CRC_A checked), HLTA. CRC_A is checked
against the standard's own example (ISO/IEC 14443-3 annex B: 0x00 0x00 gives 0xA0 0x1E).
"""

import pytest

from firmware import drivers, hal
from firmware.drivers import rc522
from firmware.drivers.rc522 import Rc522Reader, crc_a


class FakeMfrc522:
    """Registers, FIFO and a card. `card` is the uid in the field (hex) or None; `present` False reads as an
    unplugged chip (MISO floating low)."""

    def __init__(self, version=0x92):
        self.version = version
        self.present = True
        self.card = None
        self.halted = False
        self.regs = bytearray(64)
        self.fifo = bytearray()
        self.frames = []
        self.reset()

    def reset(self):
        self.regs[:] = bytes(64)
        self.regs[rc522.TX_CONTROL] = 0x80
        self.regs[rc522.VERSION] = self.version
        self.fifo.clear()

    # the SPI side: one transfer = address byte, then data
    def transfer(self, out):
        if not self.present:
            return bytes(len(out))
        addr = out[0]
        reg = (addr >> 1) & 0x3F
        if addr & 0x80:  # read: each following byte is the next address; its answer comes one byte later
            answers = [0]
            for _ in out[1:]:
                answers.append(self.read(reg))
            return bytes(answers)
        for value in out[1:]:
            self.write(reg, value)
        return bytes(len(out))

    def read(self, reg):
        if reg == rc522.FIFO_DATA:
            return self.fifo.pop(0) if self.fifo else 0
        if reg == rc522.FIFO_LEVEL:
            return len(self.fifo)
        return self.regs[reg]

    def write(self, reg, value):
        if reg == rc522.FIFO_DATA:
            self.fifo.append(value)
        elif reg == rc522.FIFO_LEVEL:
            if value & 0x80:
                self.fifo.clear()
        elif reg == rc522.COM_IRQ:
            self.regs[reg] &= ~value & 0x7F if not value & 0x80 else 0xFF  # Set1 = 0 clears the marked bits
        elif reg == rc522.COMMAND:
            if value & 0x0F == rc522.SOFT_RESET:
                self.reset()
            else:
                self.regs[reg] = value
        elif reg == rc522.BIT_FRAMING:
            self.regs[reg] = value & 0x7F
            if value & 0x80 and self.regs[rc522.COMMAND] & 0x0F == rc522.TRANSCEIVE:
                self.transmit(bytes(self.fifo), value & 0x07)
        else:
            self.regs[reg] = value

    # the card side
    def transmit(self, frame, bits):
        self.frames.append(frame)
        self.fifo.clear()
        self.regs[rc522.ERROR] = 0
        answer = self.card_answer(frame, bits)
        if answer is None:
            self.regs[rc522.COM_IRQ] |= rc522.TIMER_IRQ
            return
        self.fifo.extend(answer)
        self.regs[rc522.COM_IRQ] |= rc522.RX_IRQ | rc522.IDLE_IRQ

    def card_answer(self, frame, bits):
        if self.card is None:
            self.halted = False  # a card that leaves the field forgets HALT
            return None
        uid = bytes.fromhex(self.card)
        levels = {4: [uid], 7: [b"\x88" + uid[:3], uid[3:]], 10: [b"\x88" + uid[:3], b"\x88" + uid[3:6], uid[6:]]}
        parts = levels[len(uid)]
        if frame == bytes([rc522.REQA]) and bits == 7:
            return None if self.halted else bytes([0x44 if len(uid) == 7 else 0x04, 0x00])
        if len(frame) == 2 and frame[0] in rc522.SELECT and frame[1] == 0x20:
            part = parts[rc522.SELECT.index(frame[0])]
            return part + bytes([part[0] ^ part[1] ^ part[2] ^ part[3]])
        if len(frame) == 9 and frame[0] in rc522.SELECT and frame[1] == 0x70:
            assert crc_a(frame[:7]) == frame[7:], "SELECT without a valid CRC_A"
            level = rc522.SELECT.index(frame[0])
            assert frame[2:6] == parts[level], "SELECT of another uid"
            sak = bytes([0x04 if level < len(parts) - 1 else 0x00])
            return sak + crc_a(sak)
        if frame[:2] == bytes([rc522.HLTA, 0x00]):
            assert crc_a(frame[:2]) == frame[2:]
            self.halted = True
            return None
        raise AssertionError(f"unexpected frame {frame.hex()}")


class FakeSpi:
    """busio.SPI's surface as adafruit_bus_device uses it."""

    def __init__(self, chip):
        self.chip = chip
        self.locked = False

    def try_lock(self):
        if self.locked:
            return False
        self.locked = True
        return True

    def unlock(self):
        self.locked = False

    def configure(self, baudrate=100000, polarity=0, phase=0, bits=8):
        self.baudrate = baudrate

    def write(self, buf, start=0, end=None):
        self.chip.transfer(bytes(buf[start:end]))

    def write_readinto(self, out, into, out_start=0, out_end=None, in_start=0, in_end=None):
        answer = self.chip.transfer(bytes(out[out_start:out_end]))
        into[in_start:in_start + len(answer)] = answer


def test_crc_a_matches_the_standard():
    assert crc_a(b"\x00\x00") == b"\xa0\x1e"
    assert crc_a(b"\x12\x34") == b"\x26\xcf"


@pytest.mark.parametrize("uid", ["deadbeef", "04a1b2c3d4e580", "04a1b2c3d4e5f60718"])
def test_reads_4_7_and_10_byte_uids_once_per_presentation(uid):
    if len(uid) == 18:
        uid = uid + "ab"  # ten bytes
    chip = FakeMfrc522()
    reader = drivers.open_reader("rc522_spi", spi=FakeSpi(chip))
    assert reader.version == 0x92 and chip.regs[rc522.TX_CONTROL] & 0x03 == 0x03  # antenna on
    assert reader.poll() is None
    chip.card = uid
    assert reader.poll() == uid
    assert reader.poll() is None  # halted while it lies on the antenna
    chip.card = None
    assert reader.poll() is None
    chip.card = uid
    assert reader.poll() == uid  # presented again
    reader.close()
    assert chip.regs[rc522.TX_CONTROL] & 0x03 == 0


def test_absent_or_unplugged_chip_is_a_driver_error():
    chip = FakeMfrc522()
    chip.present = False
    with pytest.raises(hal.DriverError, match="RC522 on SPI CE0 did not answer"):
        Rc522Reader(spi=FakeSpi(chip)).open()
    chip.present = True
    reader = Rc522Reader(spi=FakeSpi(chip), check_s=0)
    reader.open()
    assert reader.poll() is None
    chip.present = False  # pulled off the header
    with pytest.raises(hal.DriverError, match="stopped answering"):
        reader.poll()
