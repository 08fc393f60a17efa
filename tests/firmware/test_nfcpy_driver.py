"""The nfcpy driver against nfcpy's own emulation over its `udp` transport.

nfcpy's card emulation (ContactlessFrontend.connect(card=...)) emulates only FeliCa (Type 3) tags; for
ISO 14443-A uids (NTAG ompreng tags) the udp driver's own listen_tta answers anticollision with a chosen
uid. Both are nfcpy's code on the far side; only the radio is replaced by UDP on loopback.
"""

import threading
import time

import nfc  # the hw extra, installed by scripts/setup
import pytest

from firmware import drivers, hal
from firmware.drivers.nfcpy_reader import NfcpyReader, uid_of
from tests.ports import free_udp
from tests.wait import wait_until

IDM = "02fe001122334455"
NTAG_UID = "04a1b2c3d4e580"


def _udp_bound(port):
    """Whether some socket on this host is bound to UDP `port` (read from the kernel, binding nothing)."""
    with open("/proc/net/udp") as f:
        return any(line.split()[1].endswith(f":{port:04X}") for line in list(f)[1:])


class Emulator:
    """A tag emulated by nfcpy in a thread, listening on a loopback UDP port."""

    def __init__(self, kind):
        self.kind = kind
        self.port = free_udp()
        self.stop = threading.Event()
        self.present = threading.Event()
        self.present.set()
        self.connected = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self.thread.start()
        # nfcpy binds the port only while the tag listens: a reader's frame sent before that is lost.
        wait_until(lambda: _udp_bound(self.port), what="the emulated tag to listen")
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(5)

    def _run(self):
        clf = nfc.ContactlessFrontend(f"udp:127.0.0.1:{self.port}")
        try:
            if self.kind == "type3":
                self._type3(clf)
            else:
                self._type_a(clf)
        finally:
            clf.close()

    def _type3(self, clf):
        def on_startup(target):
            target.sensf_res = bytearray.fromhex("01" + IDM + "03014B024F4993FF" + "12FC")
            target.brty = "212F"
            return target

        def on_connect(tag):
            self.connected += 1
            return True

        while not self.stop.is_set():
            if not self.present.is_set():
                time.sleep(0.02)
                continue
            clf.connect(card={"on-startup": on_startup, "on-connect": on_connect},
                        terminate=lambda: self.stop.is_set() or not self.present.is_set())

    def _type_a(self, clf):
        target = nfc.clf.LocalTarget("106A")
        target.sens_res = bytearray.fromhex("4400")
        target.sdd_res = bytearray.fromhex(NTAG_UID)
        target.sel_res = bytearray.fromhex("00")
        while not self.stop.is_set():
            if self.present.is_set():
                clf.listen(target, 0.3)
            else:
                time.sleep(0.02)


def test_reads_felica_idm_from_nfcpy_card_emulation():
    with Emulator("type3") as emu:
        reader = NfcpyReader(f"udp:127.0.0.1:{emu.port}", targets=("212F",))
        reader.open()
        try:
            assert reader.poll() == IDM
            assert reader.poll() == IDM  # still on the antenna: reported again (ArrivalFilter folds it)
        finally:
            reader.close()


def test_reads_iso14443a_uid_from_nfcpy_listen():
    with Emulator("type_a") as emu:
        reader = drivers.open_reader("nfcpy", path=f"udp:127.0.0.1:{emu.port}", targets=("106A",))
        try:
            uids = {reader.poll() for _ in range(3)}
            assert uids == {NTAG_UID}
        finally:
            reader.close()


def test_no_tag_in_the_field_is_none():
    with Emulator("type3") as emu:
        # The emulated FeliCa tag does not answer a type A poll: nothing is there for this reader.
        reader = NfcpyReader(f"udp:127.0.0.1:{emu.port}", targets=("106A",))
        reader.open()
        try:
            assert reader.poll() is None
        finally:
            reader.close()


def test_feeds_the_tap_machine_through_the_runtime_pieces():
    from firmware.tap import TapConfig, TapMachine

    with Emulator("type_a") as emu:
        reader = NfcpyReader(f"udp:127.0.0.1:{emu.port}", targets=("106A",))
        reader.open()
        machine = TapMachine(TapConfig("SD-01", "school_gate", staff=("5a000001",)))
        arrival = hal.ArrivalFilter(400)
        machine.tap("5a000001", 0)
        actions = []
        try:
            for i in range(5):
                uid = arrival.feed(reader.poll(), i * 50)
                if uid:
                    actions += machine.tap(uid, i * 50)
        finally:
            reader.close()
        assert len(actions) == 1 and actions[0].body["tags"] == [NTAG_UID]


def test_closed_or_missing_reader_is_a_driver_error():
    reader = NfcpyReader("udp:127.0.0.1:9")
    with pytest.raises(hal.DriverError, match="not open"):
        reader.poll()
    with pytest.raises(hal.DriverError):
        NfcpyReader("usb:ffff:ffff").open()
    with pytest.raises(hal.DriverError):
        NfcpyReader("nonsense-path").open()


def test_uid_of_target_kinds():
    a = nfc.clf.RemoteTarget("106A", sdd_res=bytearray.fromhex("04497622D93881"))
    b = nfc.clf.RemoteTarget("106B", sensb_res=bytearray.fromhex("50E5DD3DC900000011008185"))
    f = nfc.clf.RemoteTarget("212F", sensf_res=bytearray.fromhex("01" + IDM + "03014B024F4993FF"))
    assert uid_of(a) == "04497622d93881"
    assert uid_of(b) == "e5dd3dc9"
    assert uid_of(f) == IDM
    assert uid_of(nfc.clf.RemoteTarget("106A")) is None
