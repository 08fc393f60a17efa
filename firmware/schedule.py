"""Sensor sampling scheduler and driver watchdog: pure state machines driven by an injected clock.

SensorSchedule says when each sensor is due (Sample actions) and turns what a sensor read into a
"reading" record (Record actions). Watchdog notices a driver that made no progress within its timeout
and asks for its restart (Restart actions), backing off while restarts do not help.
"""

from firmware.actions import Record, Restart, Sample

# Plausible ranges; a value outside them is a sensor fault, not a reading.
TEMP_CC_MIN = -4000  # -40.00 degC (BME280 and DHT22 lower limit)
TEMP_CC_MAX = 15000  # 150.00 degC (food probes)
RH_CP_MAX = 10000  # 100.00 %
CROWD_MAX = 1000000


class SensorSchedule:
    """Per-sensor sampling periods. All times in milliseconds.

    A sensor is due every period_ms from its first due time; a sample that could not run on time is
    taken once when it can and the missed periods are skipped (counted in stats), never replayed.
    """

    def __init__(self, site):
        if not isinstance(site, str) or not site:
            raise ValueError("site: expected a non-empty string, got %r" % (site,))
        self.site = site
        self._period = {}
        self._due = {}
        self._busy = {}
        self.stats = {"samples": 0, "readings": 0, "failures": 0, "missed": 0, "invalid": 0}

    def add(self, sensor, period_ms, now_ms, offset_ms=0):
        """Sample `sensor` every period_ms, the first time at now_ms + offset_ms."""
        if not isinstance(sensor, str) or not sensor:
            raise ValueError("sensor: expected a non-empty string, got %r" % (sensor,))
        if isinstance(period_ms, bool) or not isinstance(period_ms, int) or period_ms < 1:
            raise ValueError("period_ms for %r: expected an integer >= 1, got %r" % (sensor, period_ms))
        self._period[sensor] = period_ms
        self._due[sensor] = now_ms + offset_ms
        self._busy[sensor] = False

    def remove(self, sensor):
        self._period.pop(sensor, None)
        self._due.pop(sensor, None)
        self._busy.pop(sensor, None)

    @property
    def sensors(self):
        return sorted(self._period)

    def period(self, sensor):
        return self._period[sensor]

    def release(self, sensor):
        """Forget a sample in progress (its driver is being restarted); the sensor is due again on time."""
        if sensor in self._busy:
            self._busy[sensor] = False

    def tick(self, now_ms):
        """Sample actions for the sensors due at now_ms (one per sensor, in name order)."""
        out = []
        for sensor in sorted(self._due):
            due = self._due[sensor]
            if now_ms < due or self._busy[sensor]:
                continue
            period = self._period[sensor]
            late = (now_ms - due) // period
            if late:
                self.stats["missed"] += late
            self._due[sensor] = due + (late + 1) * period
            self._busy[sensor] = True
            self.stats["samples"] += 1
            out.append(Sample(sensor))
        return out

    def next_deadline(self):
        """The time (ms) at which the next sensor is due, or None."""
        waiting = [due for sensor, due in self._due.items() if not self._busy[sensor]]
        return min(waiting) if waiting else None

    def result(self, sensor, values, now_ms):
        """What sensor read (dict of temp_cc, rh_cp, crowd): a "reading" Record, or nothing if no value
        was plausible."""
        if sensor in self._busy:
            self._busy[sensor] = False
        body = {"site": self.site, "sensor": sensor}
        for name, low, high in (("temp_cc", TEMP_CC_MIN, TEMP_CC_MAX), ("rh_cp", 0, RH_CP_MAX),
                                ("crowd", 0, CROWD_MAX)):
            value = values.get(name) if values else None
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < low or value > high:
                self.stats["invalid"] += 1
                continue
            body[name] = value
        if len(body) == 2:
            return []
        self.stats["readings"] += 1
        return [Record("reading", body)]

    def failed(self, sensor, now_ms):
        """The sample of `sensor` could not be taken; it is tried again at its next due time."""
        if sensor in self._busy:
            self._busy[sensor] = False
        self.stats["failures"] += 1
        return []


class Watchdog:
    """Notices drivers that stop making progress.

    watch(name) starts watching; kick(name) reports progress (a poll or read that completed). check()
    returns Restart for each driver without progress for its timeout; after a restart the next one is
    asked for only after timeout x 2^attempt (capped at max_backoff_ms), until progress resets it.
    """

    def __init__(self, timeout_ms=10000, max_backoff_ms=300000):
        self.timeout_ms = timeout_ms
        self.max_backoff_ms = max_backoff_ms
        self._timeout = {}
        self._last = {}  # name -> ms of the last progress
        self._deadline = {}
        self._attempt = {}
        self.stats = {"restarts": 0}

    def watch(self, name, now_ms, timeout_ms=None):
        timeout = self.timeout_ms if timeout_ms is None else timeout_ms
        if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 1:
            raise ValueError("timeout_ms for %r: expected an integer >= 1, got %r" % (name, timeout))
        self._timeout[name] = timeout
        self._last[name] = now_ms
        self._deadline[name] = now_ms + timeout
        self._attempt[name] = 0

    def unwatch(self, name):
        for table in (self._timeout, self._last, self._deadline, self._attempt):
            table.pop(name, None)

    def kick(self, name, now_ms):
        if name not in self._timeout:
            return
        self._last[name] = now_ms
        self._deadline[name] = now_ms + self._timeout[name]
        self._attempt[name] = 0

    def check(self, now_ms):
        out = []
        for name in sorted(self._deadline):
            if now_ms < self._deadline[name]:
                continue
            attempt = self._attempt[name] + 1
            self._attempt[name] = attempt
            backoff = self._timeout[name] << min(attempt, 20)
            if backoff > self.max_backoff_ms:
                backoff = max(self.max_backoff_ms, self._timeout[name])
            self._deadline[name] = now_ms + backoff
            self.stats["restarts"] += 1
            out.append(Restart(name, "no_progress", now_ms - self._last[name], attempt))
        return out

    def next_deadline(self):
        return min(self._deadline.values()) if self._deadline else None

    def attempts(self, name):
        return self._attempt.get(name, 0)
