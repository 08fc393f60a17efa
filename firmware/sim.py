"""Simulated drivers: the default without hardware. Deterministic from a seed, scriptable, with faults.

The random generator is our own xorshift32 so that one seed gives the same taps and readings on
CPython and on MicroPython (their `random` modules differ).
"""

from firmware import hal


class Rng:
    """xorshift32: small, fast, and identical on every Python."""

    def __init__(self, seed):
        seed = int(seed) & 0xFFFFFFFF
        self.state = seed or 0x9E3779B9

    def next(self):
        x = self.state
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self.state = x
        return x

    def below(self, n):
        return self.next() % n

    def between(self, low, high):
        """An int in [low, high]."""
        return low + self.next() % (high - low + 1)


def make_uid(rng, nbytes=7, prefix="04"):
    """A tag uid (NXP NTAG uids are 7 bytes starting 04)."""
    out = prefix
    while len(out) < nbytes * 2:
        out += "%02x" % rng.below(256)
    return out[:nbytes * 2]


def scenario(seed, sessions=3, tags=(5, 20), staff=None, start_ms=1000, hold_ms=150, gap_ms=(300, 900),
             dup_chance=10, stray_chance=5):
    """A deterministic tap script: [(at_ms, uid, hold_ms), ...].

    Each session is a staff card, some container tags (a dup_chance percent of them tapped twice in a
    row, a stray_chance percent tapped before any staff card) and the staff card again to close.
    """
    rng = Rng(seed)
    if staff is None:
        staff = ["5a" + make_uid(rng, 4, "")[2:] for _ in range(2)]
    script = []
    at = start_ms
    for number in range(sessions):
        if rng.below(100) < stray_chance:
            script.append((at, make_uid(rng), hold_ms))
            at += rng.between(gap_ms[0], gap_ms[1])
        card = staff[number % len(staff)]
        script.append((at, card, hold_ms))
        at += rng.between(gap_ms[0], gap_ms[1])
        for _ in range(rng.between(tags[0], tags[1])):
            uid = make_uid(rng)
            script.append((at, uid, hold_ms))
            at += rng.between(gap_ms[0], gap_ms[1])
            if rng.below(100) < dup_chance:
                script.append((at, uid, hold_ms))
                at += rng.between(gap_ms[0], gap_ms[1])
        script.append((at, card, hold_ms))
        at += rng.between(gap_ms[0] * 3, gap_ms[1] * 3)
    return script


class _Faults:
    """Fault injection shared by the simulated drivers: fail(n) raises on the next n uses, stick() until restart.

    The driver calls _check(what) before each use."""

    opened = False
    restarts = 0
    _fail = 0
    _stuck = False

    def open(self):
        self.opened = True

    def close(self):
        self.opened = False

    def restart(self):
        self.restarts += 1
        self._stuck = False
        self._fail = 0
        self.close()
        self.open()

    def fail(self, n=1):
        self._fail += n

    def stick(self):
        self._stuck = True

    def _check(self, what):
        if self._stuck:
            raise hal.DriverError("simulated %s stuck" % what)
        if self._fail:
            self._fail -= 1
            raise hal.DriverError("simulated %s failure" % what)


class SimNfcReader(_Faults, hal.NfcReader):
    """Reports each scripted uid on every poll while it is "on the antenna" (at_ms <= now < at_ms+hold).

    script: [(at_ms, uid, hold_ms), ...] or [(at_ms, uid), ...]; clock: a hal.Clock.
    lossless: a tap whose time came while nobody polled (a busy loop, a slow machine) is still reported
    once, on the next poll, so a seed gives the same taps however the polls fall; False drops it, as a
    real reader would.
    fail(n): the next n polls raise DriverError. stick(): every poll raises until restart().
    """

    name = "nfc"

    def __init__(self, clock, script=(), hold_ms=150, lossless=True):
        self.clock = clock
        self.script = []
        for entry in script:
            self.add(entry[0], entry[1], entry[2] if len(entry) > 2 else hold_ms)
        self.lossless = lossless
        self.opened = False
        self.polls = 0
        self.restarts = 0
        self._fail = 0
        self._stuck = False
        self._next = 0  # first entry not yet reported
        self._present = None  # (uid, until_ms) of the entry on the antenna

    def add(self, at_ms, uid, hold_ms=150):
        self.script.append((at_ms, uid, hold_ms))
        self.script.sort(key=lambda e: e[0])

    def poll(self):
        self._check("reader")
        if not self.opened:
            raise hal.DriverError("simulated reader is not open")
        self.polls += 1
        now = self.clock.ticks_ms()
        script = self.script
        while self._next < len(script) and script[self._next][0] <= now:
            at, uid, hold = script[self._next]
            self._next += 1
            self._present = (uid, at + hold)
            if self.lossless or now < at + hold:
                return uid
        present = self._present
        if present is not None and now < present[1]:
            return present[0]
        return None

    def done(self):
        """True when every scripted tap has been reported and the last one has left the antenna."""
        if self._next < len(self.script):
            return False
        return self._present is None or self.clock.ticks_ms() >= self._present[1]


class SimSensor(_Faults, hal.Sensor):
    """A deterministic sensor: a bounded random walk from a seed, or scripted values.

    fields: which of "temp_cc", "rh_cp", "crowd" it reports. script: a list of dicts returned in turn
    (the last one repeats). fail(n) and stick() as for SimNfcReader.
    """

    def __init__(self, name, seed=1, fields=("temp_cc", "rh_cp"), temp_cc=2800, rh_cp=7000, crowd=20,
                 script=None):
        self.name = name
        self.rng = Rng(seed)
        self.fields = tuple(fields)
        self.temp_cc = temp_cc
        self.temp_range = (temp_cc - 1500, temp_cc + 1500)
        self.rh_cp = rh_cp
        self.crowd_mean = crowd
        self.script = list(script) if script else None
        self.reads = 0
        self.restarts = 0
        self.opened = False
        self._fail = 0
        self._stuck = False

    def read(self):
        self._check("sensor " + self.name)
        self.reads += 1
        if self.script is not None:
            index = min(self.reads - 1, len(self.script) - 1)
            return dict(self.script[index])
        out = {}
        if "temp_cc" in self.fields:
            self.temp_cc = _clamp(self.temp_cc + self.rng.between(-25, 25), self.temp_range[0],
                                  self.temp_range[1])
            out["temp_cc"] = self.temp_cc
        if "rh_cp" in self.fields:
            self.rh_cp = _clamp(self.rh_cp + self.rng.between(-150, 150), 3000, 9800)
            out["rh_cp"] = self.rh_cp
        if "crowd" in self.fields:
            spread = self.crowd_mean // 2 + 1
            out["crowd"] = _clamp(self.crowd_mean + self.rng.between(-spread, spread), 0, 100000)
        return out


def _clamp(value, low, high):
    if value < low:
        return low
    if value > high:
        return high
    return value


class SimIndicator(hal.Indicator):
    """Remembers what it was asked to show: statuses in order, and every (led, buzz) step."""

    def __init__(self):
        self.statuses = []
        self.steps = []

    def begin(self, status, reason):
        self.statuses.append((status, reason))

    def show(self, led, buzz):
        self.steps.append((led, buzz))
