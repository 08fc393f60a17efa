"""The tap state machine: staff card, then container tags; the checkpoint's role decides the scan event.

Pure and synchronous: each method takes the time as an argument and returns a list of actions
(firmware.actions). Nothing here sleeps, reads a clock or touches hardware.

Records. One "scan" record per accepted tap by default (batch_linger_ms=0): the tap is stored and
acknowledged in milliseconds and nothing that looked accepted can be lost to a power cut mid-session;
group commit in the edge makes one record per tap cheap. With batch_linger_ms > 0 the taps of one session
are gathered and written as one record (tags = [...]) when the batch is batch_max long, when it is
batch_linger_ms old, or when the session closes; each tap then gets "seen" at once and "accepted" when its
batch is stored. Either way a record's feedback comes only after the driver confirms it:

    for action in machine.tap(uid, now_ms):
        if isinstance(action, Record):
            store durably ...             # then
            feedback = machine.confirm(action.ref)   # or machine.fail(action.ref, reason)
"""

from firmware import hal
from firmware.actions import Feedback, Record

# role -> (checkpoint, default event, events the role may record)
ROLES = {
    "kitchen": ("kitchen", "packed", ("cooked", "packed", "sample")),
    "kitchen_exit": ("kitchen_exit", "departed", ("departed",)),
    "school_gate": ("school_gate", "arrived", ("arrived", "received", "served", "damaged")),
    "return": ("return", "returned", ("returned", "damaged", "lost")),
    "market_stall": ("market_stall", "received", ("received", "sample")),
}

# Stable reason codes carried by Feedback.reason.
R_RECORDED = "recorded"
R_NO_SESSION = "no_session"  # a container tag without a staff card first
R_SESSION_EXPIRED = "session_expired"  # the staff session timed out before this tap
R_UNKNOWN_TAG = "unknown_tag"  # a uid matching none of the configured prefixes
R_BAD_UID = "bad_uid"  # not a hex uid
R_BUSY = "busy"  # too many records waiting to be stored
R_WITHIN_WINDOW = "within_window"  # same tag, same event, within dup_window_ms
R_STAFF_CARD = "staff_card"  # session opened or closed by the staff card
R_STAFF_CHANGED = "staff_changed"  # another staff card took over the session
R_TIMEOUT = "timeout"  # session closed after session_timeout_ms without a tap
R_SHUTDOWN = "shutdown"
R_QUEUED = "queued"

MAX_TAGS = 256  # ledger.bodies.MAX_LIST


class TapConfig:
    """A checkpoint's tap settings. Times in milliseconds.

    site: kitchen or school id. role: one of ROLES. event: override of the role's default event.
    school: destination school written on departures. parent: crate or vehicle id for every record
    (a parent tag tapped in a session overrides it). staff/staff_prefixes/parent_prefixes/
    container_prefixes: see hal.TagClassifier. dup_window_ms: repeated taps of a tag for the same event
    within this time are one event. session_timeout_ms: a session closes after this long without a tap.
    portions_per_tag: portions one container holds (count = tags x this; 0 leaves count out).
    temp_max_age_ms: a probe temperature older than this is not written on a scan.
    max_pending: records handed out but not yet confirmed before taps are refused as busy.
    """

    def __init__(self, site, role, event=None, school=None, parent=None, staff=(), staff_prefixes=(),
                 parent_prefixes=(), container_prefixes=(), dup_window_ms=30000,
                 session_timeout_ms=120000, batch_linger_ms=0, batch_max=64, portions_per_tag=1,
                 temp_max_age_ms=300000, max_pending=256, dup_cap=4096):
        if not isinstance(site, str) or not site:
            raise ValueError("site: expected a non-empty string, got %r" % (site,))
        if role not in ROLES:
            raise ValueError("role: expected one of %s, got %r" % (sorted(ROLES), role))
        checkpoint, default_event, events = ROLES[role]
        if event is None:
            event = default_event
        if event not in events:
            raise ValueError("event for role %r: expected one of %s, got %r" % (role, list(events), event))
        for name, value in (("school", school), ("parent", parent)):
            if value is not None and (not isinstance(value, str) or not value):
                raise ValueError("%s: expected a non-empty string or None, got %r" % (name, value))
        for name, value, low in (("dup_window_ms", dup_window_ms, 0),
                                 ("session_timeout_ms", session_timeout_ms, 1),
                                 ("batch_linger_ms", batch_linger_ms, 0), ("batch_max", batch_max, 1),
                                 ("portions_per_tag", portions_per_tag, 0),
                                 ("temp_max_age_ms", temp_max_age_ms, 0), ("max_pending", max_pending, 1),
                                 ("dup_cap", dup_cap, 16)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError("%s: expected an integer >= %d, got %r" % (name, low, value))
        if batch_max > MAX_TAGS:
            raise ValueError("batch_max: expected at most %d (tags per record), got %d" % (MAX_TAGS, batch_max))
        self.site = site
        self.role = role
        self.checkpoint = checkpoint
        self.event = event
        self.events = events
        self.school = school
        self.parent = parent
        self.classifier = hal.TagClassifier(staff, staff_prefixes, parent_prefixes, container_prefixes)
        self.dup_window_ms = dup_window_ms
        self.session_timeout_ms = session_timeout_ms
        self.batch_linger_ms = batch_linger_ms
        self.batch_max = batch_max
        self.portions_per_tag = portions_per_tag
        self.temp_max_age_ms = temp_max_age_ms
        self.max_pending = max_pending
        self.dup_cap = dup_cap


class Session:
    """One staff member's run of taps."""

    def __init__(self, staff, now_ms):
        self.staff = staff
        self.opened_ms = now_ms
        self.last_ms = now_ms
        self.parent = None
        self.accepted = 0


class TapMachine:
    """Events in (tap, tick, confirm, fail, ...), actions out (Record, Feedback)."""

    def __init__(self, config):
        self.config = config
        self.event = config.event
        self.school = config.school
        self.session = None
        self._timed_out = False  # the last session ended by timeout: say so to the next container tap
        self._batch = []  # uids waiting for their batch record (batch mode)
        self._batch_first_ms = 0
        self._batch_wall = None
        self._seen = {}  # "uid|event" -> ms of the counted tap
        self._pending = {}  # ref -> (tags, keys) of records handed out, not yet confirmed
        self._next_ref = 1
        self._temp = None  # (temp_cc, ms)
        self.stats = {"taps": 0, "accepted": 0, "duplicate": 0, "refused": 0, "errors": 0,
                      "records": 0, "sessions": 0}

    # -- events ------------------------------------------------------------------------------------

    def tap(self, uid, now_ms, wall_s=None, kind=None):
        """A tag was presented. kind overrides the classifier (hal.STAFF, PARENT, CONTAINER)."""
        self.stats["taps"] += 1
        out = []  # type: list[Feedback | Record]
        self._expire(now_ms, out)
        norm = hal.normalize_uid(uid)
        if norm is None:
            return self._refuse(out, R_BAD_UID, None)
        if kind is None:
            kind = self.config.classifier.classify(norm)
        if kind == hal.STAFF:
            return self._staff(norm, now_ms, out)
        if kind == hal.UNKNOWN:
            return self._refuse(out, R_UNKNOWN_TAG, norm)
        session = self.session
        if session is None:
            return self._refuse(out, R_SESSION_EXPIRED if self._timed_out else R_NO_SESSION, norm)
        session.last_ms = now_ms
        if kind == hal.PARENT:
            self._flush(out)
            session.parent = norm
            out.append(Feedback(hal.PARENT_SET, "parent_set", norm))
            return out
        key = norm + "|" + self.event
        seen = self._seen.get(key)
        if seen is not None and now_ms - seen < self.config.dup_window_ms:
            self.stats["duplicate"] += 1
            out.append(Feedback(hal.DUPLICATE, R_WITHIN_WINDOW, norm))
            return out
        if len(self._pending) >= self.config.max_pending:
            return self._refuse(out, R_BUSY, norm)
        if len(self._seen) >= self.config.dup_cap:
            self._prune(now_ms)
        self._seen[key] = now_ms
        session.accepted += 1
        if self.config.batch_linger_ms == 0:
            out.append(self._record([norm], wall_s))
            return out
        if not self._batch:
            self._batch_first_ms = now_ms
            self._batch_wall = wall_s
        self._batch.append(norm)
        if len(self._batch) >= self.config.batch_max:
            self._flush(out)
        else:
            out.append(Feedback(hal.SEEN, R_QUEUED, norm, len(self._batch)))
        return out

    def tick(self, now_ms):
        """Time passed: close a timed-out session, write a batch that has waited long enough."""
        out = []  # type: list[Feedback | Record]
        self._expire(now_ms, out)
        if self._batch and now_ms - self._batch_first_ms >= self.config.batch_linger_ms:
            self._flush(out)
        if len(self._seen) > self.config.dup_cap // 2:
            self._prune(now_ms)
        return out

    def next_deadline(self):
        """The time (ms) at which tick() next has something to do, or None."""
        times = []
        if self.session is not None:
            times.append(self.session.last_ms + self.config.session_timeout_ms)
        if self._batch:
            times.append(self._batch_first_ms + self.config.batch_linger_ms)
        return min(times) if times else None

    def confirm(self, ref):
        """The record `ref` is stored durably: show "accepted"."""
        entry = self._pending.pop(ref, None)
        if entry is None:
            return []
        tags = entry[0]
        self.stats["accepted"] += len(tags)
        return [Feedback(hal.ACCEPTED, R_RECORDED, tags[0] if len(tags) == 1 else None, len(tags), ref)]

    def fail(self, ref, reason="store_failed"):
        """The record `ref` could not be stored: show "error" and let the tags be tapped again."""
        entry = self._pending.pop(ref, None)
        if entry is None:
            return []
        tags, keys = entry
        for key in keys:
            self._seen.pop(key, None)
        self.stats["errors"] += len(tags)
        return [Feedback(hal.ERROR, reason, tags[0] if len(tags) == 1 else None, len(tags), ref)]

    def note_temperature(self, temp_cc, now_ms):
        """A probe temperature to write on the following scans while it is fresh."""
        self._temp = (temp_cc, now_ms)

    def set_event(self, event, now_ms=None):
        """Switch the event this checkpoint records (e.g. a kitchen's cooked/packed button)."""
        if event not in self.config.events:
            raise ValueError("event for role %r: expected one of %s, got %r"
                             % (self.config.role, list(self.config.events), event))
        out = []  # type: list[Feedback | Record]
        if event != self.event:
            self._flush(out)
            self.event = event
        return out

    def set_school(self, school):
        """Change the destination school written on the following records."""
        out = []  # type: list[Feedback | Record]
        self._flush(out)
        self.school = school
        return out

    def close(self, now_ms, reason=R_SHUTDOWN):
        """End the session (shutdown): write the open batch, if any."""
        out = []  # type: list[Feedback | Record]
        if self.session is not None:
            self._end_session(out, reason)
        return out

    @property
    def pending(self):
        """Refs of records handed out and not yet confirmed or failed."""
        return sorted(self._pending)

    # -- internals ---------------------------------------------------------------------------------

    def _refuse(self, out, reason, uid):
        self.stats["refused"] += 1
        out.append(Feedback(hal.REFUSED, reason, uid))
        return out

    def _staff(self, uid, now_ms, out):
        session = self.session
        if session is not None and session.staff == uid:
            self._end_session(out, R_STAFF_CARD)
            return out
        reason = R_STAFF_CARD
        if session is not None:
            self._end_session(out, R_STAFF_CHANGED, quiet=True)
            reason = R_STAFF_CHANGED
        self.session = Session(uid, now_ms)
        self._timed_out = False
        self.stats["sessions"] += 1
        out.append(Feedback(hal.OPENED, reason, uid))
        return out

    def _expire(self, now_ms, out):
        session = self.session
        if session is not None and now_ms - session.last_ms >= self.config.session_timeout_ms:
            self._end_session(out, R_TIMEOUT)

    def _end_session(self, out, reason, quiet=False):
        self._flush(out)
        session = self.session
        self.session = None
        self._timed_out = reason == R_TIMEOUT
        assert session is not None  # a session is open whenever one is ended
        if not quiet:
            out.append(Feedback(hal.CLOSED, reason, session.staff, session.accepted))

    def _flush(self, out):
        if self._batch:
            tags = self._batch
            self._batch = []
            out.append(self._record(tags, self._batch_wall))
            self._batch_wall = None

    def _record(self, tags, wall_s):
        config = self.config
        session = self.session
        body = {
            "event": self.event,
            "site": config.site,
            "checkpoint": config.checkpoint,
            "tags": list(tags),
            "source": "nfc",
        }
        if session is not None:
            body["staff"] = session.staff
        parent = session.parent if session is not None and session.parent else config.parent
        if parent:
            body["parent"] = parent
        if self.school and config.role in ("kitchen", "kitchen_exit"):
            body["school"] = self.school
        if config.portions_per_tag:
            body["count"] = len(tags) * config.portions_per_tag
        temp = self._temp
        if temp is not None and session is not None and session.last_ms - temp[1] <= config.temp_max_age_ms:
            body["temp_cc"] = temp[0]
        if self.event == "cooked" and wall_s is not None and wall_s >= 0:
            body["cooked_at"] = int(wall_s)
        ref = self._next_ref
        self._next_ref += 1
        self._pending[ref] = (tuple(tags), [t + "|" + self.event for t in tags])
        self.stats["records"] += 1
        return Record("scan", body, ref, tags)

    def _prune(self, now_ms):
        window = self.config.dup_window_ms
        stale = [k for k, t in self._seen.items() if now_ms - t >= window]
        for key in stale:
            del self._seen[key]
        cap = self.config.dup_cap
        if len(self._seen) >= cap:
            # Keep the newest half; a tag forgotten early can at worst be counted twice, never lost.
            ordered = sorted(self._seen.items(), key=lambda item: item[1])
            for key, _ in ordered[:len(ordered) - cap // 2]:
                del self._seen[key]
