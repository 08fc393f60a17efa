"""MBG inputs (scans and stock movements), the adapter from verified records, and the choice of clock."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, Literal

from ledger import Record
from ledger.bodies import CHECKPOINTS, SCAN_EVENTS, STOCK_MOVEMENTS, validate_body
from ledger.errors import MalformedRecord

from .errors import InputError
from .plan import ClockPolicy

Basis = Literal["device", "arrival", "corrected"]


def _text(name: str, value: Any, *, optional: bool = True) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str) or value == "":
        raise InputError(f"{name}: expected a non-empty text, got {value!r}")


def _int(name: str, value: Any, *, optional: bool = True, minimum: int | None = None) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{name}: expected an integer, got {type(value).__name__} {value!r}")
    if minimum is not None and value < minimum:
        raise InputError(f"{name}: expected at least {minimum}, got {value}")



def _check_origin(kind: str, item: ScanEvent | StockMovement) -> None:
    """The fields every MBG input carries about the record it came from."""
    _text(f"{kind} record_id", item.record_id, optional=False)
    _text(f"{kind} device", item.device, optional=False)
    _int(f"{kind} seq", item.seq, optional=False, minimum=0)
    _int(f"{kind} boot", item.boot, optional=False, minimum=0)
    _int(f"{kind} device_time", item.device_time, optional=False)
    _int(f"{kind} arrived_at", item.arrived_at, optional=False)

_JUST_STR = frozenset({str})
_TEXT_OR_NONE = frozenset({str, type(None)})


@dataclass(frozen=True, slots=True, kw_only=True)
class ScanEvent:
    """One NFC tap at a checkpoint, as the hub received it."""

    record_id: str
    device: str
    seq: int
    boot: int = 0
    device_time: int
    arrived_at: int
    event: str
    site: str
    checkpoint: str | None = None
    staff: str | None = None
    tags: tuple[str, ...] = ()
    parent: str | None = None
    batch: str | None = None
    school: str | None = None
    count: int | None = None
    temp_cc: int | None = None
    cooked_at: int | None = None
    text: str | None = None
    source: str | None = None
    # How far the device's clock was off when it made the scan, as the hub measured it (`DeviceClocks.offset_at`);
    # None when the hub has no measure of it.
    clock_offset: int | None = None

    def __post_init__(self) -> None:
        if self._plain():
            return
        _check_origin("scan", self)
        if self.event not in SCAN_EVENTS:
            raise InputError(f"scan event: expected one of {list(SCAN_EVENTS)}, got {self.event!r}")
        _text("scan site", self.site, optional=False)
        if self.checkpoint is not None and self.checkpoint not in CHECKPOINTS:
            raise InputError(f"scan checkpoint: expected one of {list(CHECKPOINTS)}, got {self.checkpoint!r}")
        if not isinstance(self.tags, tuple) or not all(isinstance(t, str) and t for t in self.tags):
            raise InputError(f"scan tags: expected a tuple of non-empty texts, got {self.tags!r}")
        for name in ("staff", "parent", "batch", "school", "text", "source"):
            _text(f"scan {name}", getattr(self, name))
        _int("scan count", self.count, minimum=0)
        _int("scan temp_cc", self.temp_cc)
        _int("scan cooked_at", self.cooked_at, minimum=0)
        _int("scan clock_offset", self.clock_offset)

    def _plain(self) -> bool:
        """True if every field has exactly the type and range the checks below want: the common case, tested
        in one expression since every scan taken in passes here. Anything else goes through the checks, which
        say what is wrong."""
        return (type(self.record_id) is str and self.record_id != "" and type(self.device) is str
                and self.device != "" and type(self.seq) is int and self.seq >= 0 and type(self.boot) is int
                and self.boot >= 0 and type(self.device_time) is int and type(self.arrived_at) is int
                and self.event in SCAN_EVENTS and type(self.site) is str and self.site != ""
                and (self.checkpoint is None or self.checkpoint in CHECKPOINTS)
                and type(self.tags) is tuple and {*map(type, self.tags)} <= _JUST_STR and all(self.tags)
                and {*map(type, texts := (self.staff, self.parent, self.batch, self.school, self.text,
                                          self.source))} <= _TEXT_OR_NONE and "" not in texts
                and (self.count is None or (type(self.count) is int and self.count >= 0))
                and (self.temp_cc is None or type(self.temp_cc) is int)
                and (self.cooked_at is None or (type(self.cooked_at) is int and self.cooked_at >= 0))
                and (self.clock_offset is None or type(self.clock_offset) is int))

    def body(self) -> dict[str, Any]:
        """The record body this scan came from (or would go into)."""
        out: dict[str, Any] = {"event": self.event, "site": self.site}
        for name in ("checkpoint", "staff", "parent", "batch", "school", "count", "temp_cc", "cooked_at",
                     "text", "source"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.tags:
            out["tags"] = list(self.tags)
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class StockMovement:
    """One movement of a raw ingredient at a kitchen: received, used, wasted, or counted."""

    record_id: str
    device: str
    seq: int
    boot: int = 0
    device_time: int
    arrived_at: int
    site: str
    item: str
    movement: str
    qty: int
    unit: str
    supplier: str | None = None
    batch: str | None = None
    reason: str | None = None
    clock_offset: int | None = None  # as a ScanEvent's

    def __post_init__(self) -> None:
        _check_origin("stock", self)
        _int("stock clock_offset", self.clock_offset)
        _text("stock site", self.site, optional=False)
        _text("stock item", self.item, optional=False)
        if self.movement not in STOCK_MOVEMENTS:
            raise InputError(f"stock movement: expected one of {list(STOCK_MOVEMENTS)}, got {self.movement!r}")
        _int("stock qty", self.qty, optional=False, minimum=0)
        _text("stock unit", self.unit, optional=False)
        for name in ("supplier", "batch", "reason"):
            _text(f"stock {name}", getattr(self, name))

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"site": self.site, "item": self.item, "movement": self.movement,
                               "qty": self.qty, "unit": self.unit}
        for name in ("supplier", "batch", "reason"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out


def from_record(record: Any, arrived_at: int, clock_offset: int | None = None) -> ScanEvent | StockMovement | None:
    """Turn a verified record (kind, body, device, seq, time, boot, id) into an MBG input; `clock_offset` is how far
    the device's clock was off when it made the record, where the hub measured it.

    Returns None for kinds MBG does not read and for records whose body was purged (carried by digest
    only): a purged tap is a known gap, not an error. Raises InputError for a scan or stock body that
    does not have the shape ledger.bodies defines.
    """
    kind = record.kind
    if kind not in ("scan", "stock"):
        return None
    body = record.body
    if body is None:
        return None
    if not isinstance(record, Record):  # a Record's body passed validate_body when it was decoded or built
        try:
            validate_body(kind, body)
        except MalformedRecord as exc:
            raise InputError(f"record {record.device}/{record.seq}: {exc.message}") from None
    rid = record.id.hex() if isinstance(record.id, bytes | bytearray) else str(record.id)
    if kind == "scan":
        return _scan(record, body, rid, arrived_at, clock_offset)
    return StockMovement(record_id=rid, device=_shared(record.device), seq=record.seq, boot=record.boot,
                         device_time=record.time, arrived_at=arrived_at, site=_shared(body["site"]),
                         item=_shared(body["item"]), movement=_shared(body["movement"]), qty=body["qty"],
                         unit=_shared(body["unit"]), supplier=_shared(body.get("supplier")),
                         batch=_shared(body.get("batch")), reason=body.get("reason"), clock_offset=clock_offset)


# A scan's slots in the order `_scan` fills them, each by its own setter: every scan the hub accepts is built
# here, and the frozen class's keyword __init__ (a dict of arguments, then a __setattr__ by name per field)
# costs about three times as much. `__post_init__` then checks it as __init__ would have.
_SCAN_FIELDS = ("record_id", "device", "seq", "boot", "device_time", "arrived_at", "event", "site", "checkpoint",
                "staff", "tags", "parent", "batch", "school", "count", "temp_cc", "cooked_at", "text", "source",
                "clock_offset")
if sorted(_SCAN_FIELDS) != sorted(ScanEvent.__dataclass_fields__):
    raise ImportError("hub.mbg.events: _scan does not fill every field of ScanEvent")
(_SET_ID, _SET_DEVICE, _SET_SEQ, _SET_BOOT, _SET_TIME, _SET_ARRIVED, _SET_EVENT, _SET_SITE, _SET_CHECKPOINT,
 _SET_STAFF, _SET_TAGS, _SET_PARENT, _SET_BATCH, _SET_SCHOOL, _SET_COUNT, _SET_TEMP, _SET_COOKED, _SET_TEXT,
 _SET_SOURCE, _SET_OFFSET) = (getattr(ScanEvent, name).__set__ for name in _SCAN_FIELDS)
_intern = sys.intern
_new = object.__new__
# The hex id of each device seen, shared: a Record's `device` makes a new text of its id at every call.
_DEVICES: dict[bytes, str] = {}
_DEVICES_MAX = 1 << 16


def _device(record: Any) -> Any:
    if type(record) is not Record:
        return _shared(record.device)
    device_id = record.device_id
    device = _DEVICES.get(device_id)
    if device is None:
        if len(_DEVICES) >= _DEVICES_MAX:
            _DEVICES.clear()
        device = _DEVICES[device_id] = _shared(record.device)
    return device


def _scan(record: Any, body: Any, rid: str, arrived_at: int, clock_offset: int | None) -> ScanEvent:
    """The ScanEvent of a scan record: the fields from_record's docstring names, texts that repeat shared."""
    get = body.get
    scan = _new(ScanEvent)
    _SET_ID(scan, rid)
    _SET_DEVICE(scan, _device(record))
    _SET_SEQ(scan, record.seq)
    _SET_BOOT(scan, record.boot)
    _SET_TIME(scan, record.time)
    _SET_ARRIVED(scan, arrived_at)
    _SET_OFFSET(scan, clock_offset)
    value = body["event"]
    _SET_EVENT(scan, _intern(value) if type(value) is str else value)
    value = body["site"]
    _SET_SITE(scan, _intern(value) if type(value) is str else value)
    value = get("checkpoint")
    _SET_CHECKPOINT(scan, _intern(value) if type(value) is str else value)
    value = get("staff")
    _SET_STAFF(scan, _intern(value) if type(value) is str else value)
    _SET_TAGS(scan, tuple(get("tags", ())))
    value = get("parent")
    _SET_PARENT(scan, _intern(value) if type(value) is str else value)
    value = get("batch")
    _SET_BATCH(scan, _intern(value) if type(value) is str else value)
    value = get("school")
    _SET_SCHOOL(scan, _intern(value) if type(value) is str else value)
    _SET_COUNT(scan, get("count"))
    _SET_TEMP(scan, get("temp_cc"))
    _SET_COOKED(scan, get("cooked_at"))
    _SET_TEXT(scan, get("text"))
    value = get("source")
    _SET_SOURCE(scan, _intern(value) if type(value) is str else value)
    scan.__post_init__()
    return scan


def _shared(value: Any) -> Any:
    """One copy of a text that many inputs repeat (sites, devices, staff cards, batches): the analytics hold
    days of scans, and each decoded record would otherwise bring its own copies. Container tags are packed
    where they are held (hub.mbg.held), so they are not kept as texts at all."""
    return value if value is None or type(value) is not str else sys.intern(value)


@dataclass(frozen=True, slots=True, kw_only=True)
class TimeChoice:
    """Which time the analytics used for a record, and why."""

    time: int
    basis: Basis
    skew_s: int  # device time minus arrival time
    flag: Literal["clock_skew", "late_sync"] | None = None
    shift_s: int = 0  # device time minus the time chosen

    def correct(self, device_time: int) -> int:
        """Map another device timestamp of the same record (e.g. cooked_at) onto the chosen clock."""
        return device_time - self.shift_s


def choose_time(device_time: int, arrived_at: int, policy: ClockPolicy,
                clock_offset: int | None = None) -> TimeChoice:
    """Pick device, corrected device or arrival time per the ClockPolicy and say whether the record is flagged."""
    time, basis, skew, flag = chosen_time(device_time, arrived_at, policy, clock_offset)
    return TimeChoice(time=time, basis=basis, skew_s=skew, flag=flag, shift_s=device_time - time)


def chosen_time(device_time: int, arrived_at: int, policy: ClockPolicy, clock_offset: int | None = None
                ) -> tuple[int, Basis, int, Literal["clock_skew", "late_sync"] | None]:
    """choose_time's answer as a plain tuple (time, basis, skew, flag), for the analytics that time every scan.

    A record whose device's clock the hub measured off (`clock_offset`, at a sync in the boot it was made in) is
    timed by that clock set right: its device time less the offset, by its arrival at the latest, when that is
    no further from its arrival than the policy allows a right clock. A gate hours slow that syncs at once is then
    neither a backlog sent late nor timed hours early."""
    skew = device_time - arrived_at
    if clock_offset is not None:
        made = device_time - clock_offset
        if -policy.max_sync_delay_s <= made - arrived_at <= policy.max_skew_s:
            return (made if made < arrived_at else arrived_at), "corrected", skew, None
    if 0 < skew <= policy.max_skew_s:
        # A little ahead of its arrival: a record is made before it arrives, so it was made by its arrival at the
        # latest. A gate clock minutes fast must not make a delivery that came on time late.
        return arrived_at, "arrival", skew, None
    if -policy.max_skew_s <= skew <= policy.max_skew_s:
        return device_time, "device", skew, None
    if skew < 0 and -skew <= policy.max_sync_delay_s:
        return device_time, "device", skew, "late_sync"
    return arrived_at, "arrival", skew, "clock_skew"
