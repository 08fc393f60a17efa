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

Basis = Literal["device", "arrival"]


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


def _plain_text(value: Any) -> bool:
    return value is None or (type(value) is str and value != "")


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
                and _plain_text(self.staff) and _plain_text(self.parent) and _plain_text(self.batch)
                and _plain_text(self.school) and _plain_text(self.text) and _plain_text(self.source)
                and (self.count is None or (type(self.count) is int and self.count >= 0))
                and (self.temp_cc is None or type(self.temp_cc) is int)
                and (self.cooked_at is None or (type(self.cooked_at) is int and self.cooked_at >= 0)))

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

    def __post_init__(self) -> None:
        _check_origin("stock", self)
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


def from_record(record: Any, arrived_at: int) -> ScanEvent | StockMovement | None:
    """Turn a verified record (kind, body, device, seq, time, boot, id) into an MBG input.

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
    common = {"record_id": rid, "device": _shared(record.device), "seq": record.seq, "boot": record.boot,
              "device_time": record.time, "arrived_at": arrived_at}
    if kind == "scan":
        get = body.get
        return ScanEvent(**common, event=_shared(body["event"]), site=_shared(body["site"]),
                         checkpoint=_shared(get("checkpoint")), staff=_shared(get("staff")),
                         tags=tuple(get("tags", ())), parent=_shared(get("parent")), batch=_shared(get("batch")),
                         school=_shared(get("school")), count=get("count"), temp_cc=get("temp_cc"),
                         cooked_at=get("cooked_at"), text=get("text"), source=_shared(get("source")))
    return StockMovement(**common, site=_shared(body["site"]), item=_shared(body["item"]),
                         movement=_shared(body["movement"]), qty=body["qty"], unit=_shared(body["unit"]),
                         supplier=_shared(body.get("supplier")), batch=_shared(body.get("batch")),
                         reason=body.get("reason"))


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

    def correct(self, device_time: int) -> int:
        """Map another device timestamp of the same record (e.g. cooked_at) onto the chosen clock."""
        return device_time if self.basis == "device" else device_time - self.skew_s


def choose_time(device_time: int, arrived_at: int, policy: ClockPolicy) -> TimeChoice:
    """Pick device or arrival time per the ClockPolicy and say whether the record is flagged."""
    time, basis, skew, flag = chosen_time(device_time, arrived_at, policy)
    return TimeChoice(time=time, basis=basis, skew_s=skew, flag=flag)


def chosen_time(device_time: int, arrived_at: int,
                policy: ClockPolicy) -> tuple[int, Basis, int, Literal["clock_skew", "late_sync"] | None]:
    """choose_time's answer as a plain tuple (time, basis, skew, flag), for the analytics that time every scan."""
    skew = device_time - arrived_at
    if -policy.max_skew_s <= skew <= policy.max_skew_s:
        return device_time, "device", skew, None
    if skew < 0 and -skew <= policy.max_sync_delay_s:
        return device_time, "device", skew, "late_sync"
    return arrived_at, "arrival", skew, "clock_skew"
