"""Actions the firmware's pure state machines hand to whoever drives them (the runtime or the edge daemon)."""


class Record:
    """Append a record of `kind` with `body` durably, then report back.

    For taps (ref is not None) the driver calls TapMachine.confirm(ref) once the record is stored, or
    TapMachine.fail(ref, reason) if it could not be; only then is "accepted" (or "error") shown.
    `body` passes ledger.bodies.validate_body(kind, body). `tags` lists the container uids it covers.
    """

    __slots__ = ("kind", "body", "ref", "tags")

    def __init__(self, kind, body, ref=None, tags=()):
        self.kind = kind
        self.body = body
        self.ref = ref
        self.tags = tuple(tags)

    def __eq__(self, other):
        return (isinstance(other, Record) and self.kind == other.kind and self.body == other.body
                and self.ref == other.ref)

    def __ne__(self, other):
        return not self.__eq__(other)

    def __repr__(self):
        return "Record(%r, %r, ref=%r)" % (self.kind, self.body, self.ref)


class Feedback:
    """Show `status` (see firmware.hal PATTERNS) to the person at the reader; `reason` is a stable code."""

    __slots__ = ("status", "reason", "uid", "count", "ref")

    def __init__(self, status, reason="", uid=None, count=0, ref=None):
        self.status = status
        self.reason = reason
        self.uid = uid
        self.count = count
        self.ref = ref

    def __eq__(self, other):
        return (isinstance(other, Feedback) and self.status == other.status
                and self.reason == other.reason and self.uid == other.uid and self.count == other.count)

    def __ne__(self, other):
        return not self.__eq__(other)

    def __repr__(self):
        return "Feedback(%r, %r, uid=%r, count=%r)" % (self.status, self.reason, self.uid, self.count)


class Sample:
    """Read sensor `sensor` now and hand the values to SensorSchedule.result (or .failed)."""

    __slots__ = ("sensor",)

    def __init__(self, sensor):
        self.sensor = sensor

    def __eq__(self, other):
        return isinstance(other, Sample) and self.sensor == other.sensor

    def __ne__(self, other):
        return not self.__eq__(other)

    def __repr__(self):
        return "Sample(%r)" % (self.sensor,)


class Restart:
    """Restart driver `name`: it made no progress for `stalled_ms` (attempt counts restarts in a row)."""

    __slots__ = ("name", "reason", "stalled_ms", "attempt")

    def __init__(self, name, reason, stalled_ms, attempt):
        self.name = name
        self.reason = reason
        self.stalled_ms = stalled_ms
        self.attempt = attempt

    def __eq__(self, other):
        return (isinstance(other, Restart) and self.name == other.name and self.reason == other.reason
                and self.attempt == other.attempt)

    def __ne__(self, other):
        return not self.__eq__(other)

    def __repr__(self):
        return "Restart(%r, %r, stalled_ms=%r, attempt=%r)" % (
            self.name, self.reason, self.stalled_ms, self.attempt)
