"""The compact form a scan takes while the analytics window holds it: a few hundred bytes, no body kept."""

from __future__ import annotations

import re
import struct
from typing import Any

from .events import ScanEvent

# The numbers of a scan in one packed value: device time and sequence number as 64-bit integers; the delay
# to arrival, count, temperature and cook-end (from device time) as 32-bit ones, where None is the lowest.
_NUMS = struct.Struct("<qiqiii")
_NONE = -(2**31)
_RANGES = ((-(2**63), 2**63), (_NONE + 1, 2**31), (0, 2**63), (_NONE + 1, 2**31), (_NONE + 1, 2**31),
           (_NONE + 1, 2**31))
_HEX_UPPER = re.compile(r"(?:[0-9A-F]{2}){1,63}")
_HEX_LOWER = re.compile(r"(?:[0-9a-f]{2}){1,63}")
_FIELDS = tuple(ScanEvent.__dataclass_fields__)


def _pack_nums(values: tuple[int | None, ...]) -> bytes | tuple[int | None, ...]:
    """Six integers as 32 bytes (five Python ints cost about 150), or as they are if one does not fit."""
    if all(v is None or lo <= v < hi for v, (lo, hi) in zip(values, _RANGES, strict=True)):
        return _NUMS.pack(*(_NONE if v is None else v for v in values))
    return values


def pack_tags(tags: tuple[str, ...]) -> bytes | tuple[str, ...]:
    """Container tags as one bytes value: an NFC UID (even-length hex) in half its characters, other tags as
    UTF-8, each after a length byte that says which. A tag too long for that stays text."""
    out = bytearray()
    for tag in tags:
        if _HEX_UPPER.fullmatch(tag):
            out.append(len(tag) // 2)
            out += bytes.fromhex(tag)
        elif _HEX_LOWER.fullmatch(tag):
            out.append(64 + len(tag) // 2)
            out += bytes.fromhex(tag)
        else:
            raw = tag.encode()
            if len(raw) > 127:
                return tags
            out.append(128 + len(raw))
            out += raw
    return bytes(out)


def unpack_tags(packed: bytes | tuple[str, ...]) -> tuple[str, ...]:
    if type(packed) is tuple:
        return packed
    assert isinstance(packed, bytes)
    tags = []
    i = 0
    while i < len(packed):
        head = packed[i]
        n = head & 63 if head < 128 else head - 128
        raw = packed[i + 1:i + 1 + n]
        if head < 64:
            tags.append(raw.hex().upper())
        elif head < 128:
            tags.append(raw.hex())
        else:
            tags.append(raw.decode())
        i += 1 + n
    return tuple(tags)


def _pack_id(record_id: str) -> bytes | str:
    """A SHA-256 record id (64 lower-case hex characters) as its 32 bytes; any other id as it is."""
    if len(record_id) == 64 and _HEX_LOWER.fullmatch(record_id[:32]) and _HEX_LOWER.fullmatch(record_id[32:]):
        return bytes.fromhex(record_id)
    return record_id


def record_key(record_id: str) -> bytes | str:
    """The form of a record id that the window's set of seen ids holds."""
    return _pack_id(record_id)


class HeldScan:
    """One scan as the window holds it. Texts that repeat (sites, devices, events) are shared objects, the
    numbers and the container tags are packed, and what rarely differs between a device's taps (boot,
    checkpoint, staff card, text, source) is one tuple shared by the taps of a day that have the same.
    `unpack()` gives the ScanEvent back, equal to the one that came in."""

    __slots__ = ("batch", "device", "event", "extra", "key", "nums", "parent", "school", "site", "tags")

    def __init__(self, scan: ScanEvent, shared: dict[Any, Any], key: bytes | str) -> None:
        self.key = key  # record_key(scan.record_id), the object the window's set of ids holds
        self.device = scan.device
        self.event = scan.event
        self.site = scan.site
        self.parent = scan.parent
        self.batch = scan.batch
        self.school = scan.school
        cooked = None if scan.cooked_at is None else scan.cooked_at - scan.device_time
        self.nums = _pack_nums((scan.device_time, scan.arrived_at - scan.device_time, scan.seq, scan.count,
                                scan.temp_cc, cooked))
        tags = pack_tags(scan.tags) if scan.tags else ()
        self.tags = shared.setdefault(tags, tags)
        extra = (scan.boot, scan.checkpoint, scan.staff, scan.text, scan.source)
        self.extra = shared.setdefault(extra, extra)

    @property
    def record_id(self) -> str:
        return self.key.hex() if type(self.key) is bytes else self.key  # type: ignore[union-attr, return-value]

    def numbers(self) -> tuple[int | None, ...]:
        if type(self.nums) is tuple:
            return self.nums
        device_time, lag, seq, count, temp_cc, cooked = _NUMS.unpack(self.nums)  # type: ignore[arg-type]
        return (device_time, lag, seq, None if count == _NONE else count, None if temp_cc == _NONE else temp_cc,
                None if cooked == _NONE else cooked)

    @property
    def arrived_at(self) -> int:
        device_time, lag = self.numbers()[:2]
        return device_time + lag  # type: ignore[operator]

    def unpack(self, tag_lists: dict[Any, tuple[str, ...]] | None = None) -> ScanEvent:
        """The scan as it came in; built without checking again, since it was checked when it came in.
        `tag_lists` keeps one tuple of tag texts per packed list, for the scans of a day unpacked together."""
        device_time, lag, seq, count, temp_cc, cooked = self.numbers()
        if tag_lists is None:
            tags = unpack_tags(self.tags)
        else:
            tags = tag_lists.get(self.tags)  # type: ignore[assignment]
            if tags is None:
                tags = tag_lists[self.tags] = unpack_tags(self.tags)
        boot, checkpoint, staff, text, source = self.extra
        values = {"record_id": self.record_id, "device": self.device, "seq": seq, "boot": boot,
                  "device_time": device_time, "arrived_at": device_time + lag,  # type: ignore[operator]
                  "event": self.event, "site": self.site, "checkpoint": checkpoint, "staff": staff,
                  "tags": tags, "parent": self.parent, "batch": self.batch, "school": self.school,
                  "count": count, "temp_cc": temp_cc, "text": text, "source": source}
        values["cooked_at"] = None if cooked is None else device_time + cooked  # type: ignore[operator]
        scan = object.__new__(ScanEvent)
        for name in _FIELDS:
            object.__setattr__(scan, name, values[name])
        return scan
