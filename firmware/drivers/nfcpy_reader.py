"""nfcpy driver: USB and UART readers (ACR122U, PN531/PN533, PN532 on UART, Sony RC-S380, ...).

nfcpy is imported in open(), never at module import. The device path is nfcpy's: "usb", "usb:054c:06c1",
"tty:USB0:pn532", or "udp:host:port" for nfcpy's own emulation (what the tests use).
"""

from firmware import hal

DEFAULT_TARGETS = ("106A", "106B", "212F")


def uid_of(target):
    """The uid of an nfcpy RemoteTarget as lowercase hex: NFCID1 for type A, NFCID0 (PUPI) for type B,
    IDm for FeliCa (type F)."""
    raw = None
    if getattr(target, "sdd_res", None):
        raw = target.sdd_res
    elif getattr(target, "sensf_res", None):
        raw = target.sensf_res[1:9]
    elif getattr(target, "sensb_res", None):
        raw = target.sensb_res[1:5]
    if raw is None:
        return None
    return hal.normalize_uid(bytes(raw))


class NfcpyReader(hal.NfcReader):
    """Polls with nfc.ContactlessFrontend.sense: one sweep over `targets` per poll().

    A tag that leaves the field mid-exchange is not a failure (poll returns None); a reader that stops
    answering raises hal.DriverError, and the watchdog restarts it.
    """

    name = "nfc"

    def __init__(self, path="usb", targets=DEFAULT_TARGETS, interval_s=0.05):
        self.path = path
        self.targets = tuple(targets)
        self.interval_s = interval_s
        self._nfc = None
        self._clf = None

    def open(self):
        try:
            import nfc
            import nfc.clf
        except ImportError as error:
            raise hal.DriverError("nfcpy is not installed (pip install nfcpy): %s" % error)
        self._nfc = nfc
        clf = nfc.ContactlessFrontend()
        try:
            found = clf.open(self.path)
        except Exception as error:  # nfcpy raises IOError, ValueError, usb errors ...
            raise hal.DriverError("nfcpy could not open %r: %s" % (self.path, error))
        if not found:
            raise hal.DriverError("nfcpy found no reader at %r" % (self.path,))
        self._clf = clf

    def poll(self):
        clf, nfc = self._clf, self._nfc
        if clf is None or nfc is None:
            raise hal.DriverError("nfcpy reader %r is not open" % (self.path,))
        targets = [nfc.clf.RemoteTarget(brty) for brty in self.targets]
        try:
            target = clf.sense(*targets, iterations=1, interval=self.interval_s)
        except nfc.clf.CommunicationError:
            return None  # a tag moved away during anticollision: no tap
        except Exception as error:
            raise hal.DriverError("nfcpy reader %r failed: %s" % (self.path, error))
        if target is None:
            return None
        return uid_of(target)

    def close(self):
        clf = self._clf
        self._clf = None
        if clf is not None:
            try:
                clf.close()
            except Exception:
                pass
