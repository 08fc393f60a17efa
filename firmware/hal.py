"""Hardware abstraction: what the firmware asks of an NFC reader, a sensor, an indicator and a clock.

Drivers subclass these; nothing here touches hardware. Runs on CPython and MicroPython.
"""

import time

# What a card is, as the checkpoint's classifier sees it.
STAFF = "staff"  # a field staff member's card: opens and closes a session
PARENT = "parent"  # a crate or vehicle tag: the containers tapped after it were packed into it
CONTAINER = "container"  # a meal container (ompreng) tag
UNKNOWN = "unknown"  # matches none of the configured prefixes: refused

# Feedback statuses the indicator knows how to show.
ACCEPTED = "accepted"  # the record holding the tap is stored durably
DUPLICATE = "duplicate"  # the same tag was already counted within the window: one event
REFUSED = "refused"  # the tap was not counted (reason says why)
ERROR = "error"  # the tap was counted but could not be stored: tap again
OPENED = "open"  # a staff session started
CLOSED = "closed"  # a staff session ended
PARENT_SET = "parent"  # a crate or vehicle tag was noted for the following taps
SEEN = "seen"  # batch mode: the tap is queued, "accepted" follows when its batch is stored
OFFLINE = "offline"  # stored durably, but the hub has not been reached for a while: tell the supervisor
FAULT = "fault"  # a reader, sensor or the store is not working: call for help

# Indicator patterns: steps of (led colour or None, buzzer on, milliseconds). A person tells them apart by
# ear alone (beeps: one short, two short, one long, one short then silence, three short, two long) and by
# colour alone (green, amber, red, green turning amber, red blinking fast, red blinking slow).
PATTERNS = {
    ACCEPTED: (("green", True, 80), ("green", False, 320)),
    DUPLICATE: (("amber", True, 60), ("amber", False, 60), ("amber", True, 60), ("amber", False, 220)),
    REFUSED: (("red", True, 600), ("red", False, 200)),
    ERROR: (("red", True, 150), (None, False, 100), ("red", True, 150), (None, False, 100),
            ("red", True, 150), (None, False, 150)),
    OPENED: (("green", True, 40), (None, False, 40), ("green", True, 120), ("green", False, 200)),
    CLOSED: (("amber", True, 120), (None, False, 40), ("amber", True, 40), (None, False, 100)),
    PARENT_SET: (("amber", True, 40), ("amber", False, 260)),
    SEEN: (("green", False, 60),),
    OFFLINE: (("green", True, 80), ("green", False, 170), ("amber", False, 250), (None, False, 150),
              ("amber", False, 250)),
    FAULT: (("red", True, 400), (None, False, 200), ("red", True, 400), (None, False, 200)),
}

HEX_DIGITS = "0123456789abcdef"


class DriverError(Exception):
    """A driver could not talk to its device. The runtime counts it; the watchdog restarts a driver that
    keeps failing."""


def normalize_uid(uid):
    """A tag uid as lowercase hex without separators ("04:A1:B2" -> "04a1b2"), or None if it is not one.

    Accepts bytes-like values too. NFC uids are 4, 7 or 10 bytes (ISO 14443-A), 4 (14443-B PUPI) or
    8 (FeliCa IDm); anything from 2 to 16 bytes is accepted.
    """
    if uid is None:
        return None
    if isinstance(uid, (bytes, bytearray)):
        uid = "".join(["%02x" % b for b in uid])
    elif not isinstance(uid, str):
        return None
    out = []
    for ch in uid.lower():
        if ch in HEX_DIGITS:
            out.append(ch)
        elif ch in ":- ":
            continue
        else:
            return None
    text = "".join(out)
    if len(text) % 2 or len(text) < 4 or len(text) > 32:
        return None
    return text


class TagClassifier:
    """Tells staff cards, crate/vehicle tags and container tags apart by uid.

    staff: uids of enrolled staff cards. staff_prefixes, parent_prefixes, container_prefixes: uid
    prefixes (hex). With no container_prefixes every uid that is not staff or parent is a container;
    with some, a uid matching none of the lists is UNKNOWN.
    """

    def __init__(self, staff=(), staff_prefixes=(), parent_prefixes=(), container_prefixes=()):
        self.staff = {}
        for uid in staff:
            norm = normalize_uid(uid)
            if norm is None:
                raise ValueError("staff card uid: expected hex, got %r" % (uid,))
            self.staff[norm] = True
        self.staff_prefixes = _prefixes("staff_prefixes", staff_prefixes)
        self.parent_prefixes = _prefixes("parent_prefixes", parent_prefixes)
        self.container_prefixes = _prefixes("container_prefixes", container_prefixes)

    def classify(self, uid):
        if uid in self.staff or _has_prefix(uid, self.staff_prefixes):
            return STAFF
        if _has_prefix(uid, self.parent_prefixes):
            return PARENT
        if not self.container_prefixes or _has_prefix(uid, self.container_prefixes):
            return CONTAINER
        return UNKNOWN


def _prefixes(name, values):
    out = []
    for value in values:
        text = "".join([ch for ch in str(value).lower() if ch not in ":- "])
        for ch in text:
            if ch not in HEX_DIGITS:
                raise ValueError("%s: expected hex prefixes, got %r" % (name, value))
        if text:
            out.append(text)
    return tuple(out)


def _has_prefix(uid, prefixes):
    for prefix in prefixes:
        if uid.startswith(prefix):
            return True
    return False


class ArrivalFilter:
    """Turns a reader's "tag present" reports into taps.

    Readers report a tag on every poll while it lies on the antenna; a uid seen again within gap_ms of
    its last report is the same presentation, not a new tap. Lifting the tag for longer than gap_ms and
    presenting it again is a new tap (which the tap machine may then fold as a duplicate).
    """

    def __init__(self, gap_ms=400):
        self.gap_ms = gap_ms
        self._present = {}

    def feed(self, uid, now_ms):
        """Return uid when it is a new arrival, else None."""
        if self._present:
            gone = [u for u, seen in self._present.items() if now_ms - seen > self.gap_ms]
            for u in gone:
                del self._present[u]
        if uid is None:
            return None
        fresh = uid not in self._present
        self._present[uid] = now_ms
        return uid if fresh else None


class NfcReader:
    """An NFC reader. poll() returns the uid (lowercase hex) of a tag in the field, or None.

    poll() may block for a short while (a reader's polling interval); the runtime can run it off the
    event loop. A failure to talk to the reader raises DriverError.
    """

    name = "nfc"

    def open(self):
        pass

    def poll(self):
        raise NotImplementedError

    def close(self):
        pass

    def restart(self):
        self.close()
        self.open()


class Sensor:
    """A sensor. read() returns a dict with some of temp_cc (centi-degrees Celsius), rh_cp (relative
    humidity in centi-percent) and crowd (people counted since the previous read), all ints."""

    name = "sensor"

    def open(self):
        pass

    def read(self):
        raise NotImplementedError

    def close(self):
        pass

    def restart(self):
        self.close()
        self.open()


class Indicator:
    """A buzzer and LEDs. show(led, buzz) sets them: led is a colour name or None, buzz a bool."""

    def open(self):
        pass

    def begin(self, status, reason):
        """Called before a pattern plays; drivers that log or speak may use it."""

    def show(self, led, buzz):
        pass

    def close(self):
        pass


class Clock:
    """ticks_ms(): monotonic milliseconds that never wrap; wall(): seconds since 1970 (may be wrong on
    a device without a real-time clock: records carry it as device time, the hub knows better)."""

    def ticks_ms(self):
        raise NotImplementedError

    def wall(self):
        raise NotImplementedError


# Seconds from 1970-01-01 to 2000-01-01: bare-metal MicroPython ports count from 2000.
EPOCH_2000 = 946684800


class SystemClock(Clock):
    """The machine's clocks. On MicroPython ticks_ms() wraps, so differences are accumulated here."""

    def __init__(self):
        self._native = hasattr(time, "ticks_ms") and hasattr(time, "ticks_diff")
        if self._native:
            self._last = time.ticks_ms()  # type: ignore[attr-defined]  # MicroPython's time module
        else:
            self._start = time.monotonic()
        self._ms = 0
        self._epoch = 0
        try:
            if time.gmtime(0)[0] == 2000:
                self._epoch = EPOCH_2000
        except (AttributeError, OverflowError, OSError):
            pass

    def ticks_ms(self):
        if self._native:
            now = time.ticks_ms()  # type: ignore[attr-defined]
            self._ms += time.ticks_diff(now, self._last)  # type: ignore[attr-defined]
            self._last = now
            return self._ms
        return int((time.monotonic() - self._start) * 1000)

    def wall(self):
        return int(time.time()) + self._epoch


class ManualClock(Clock):
    """A clock that moves only when told: for tests and the simulator."""

    def __init__(self, ms=0, wall=1700000000):
        self.ms = ms
        self.wall0 = wall

    def advance(self, ms):
        self.ms += ms
        return self.ms

    def ticks_ms(self):
        return self.ms

    def wall(self):
        return self.wall0 + self.ms // 1000


def centi(value):
    """A float reading as an int in hundredths, rounded half away from zero (same on every Python)."""
    if value is None:
        return None
    scaled = value * 100
    if scaled >= 0:
        return int(scaled + 0.5)
    return -int(-scaled + 0.5)
