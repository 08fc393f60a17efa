"""The compact form a scan takes while the analytics window holds it: a few hundred bytes, no body kept."""

from __future__ import annotations

import operator
import re
import struct
from typing import Any

from .events import ScanEvent

# The numbers of a scan in one packed value: device time and sequence number as 64-bit integers; the delay
# to arrival, count, temperature and cook-end (from device time) as 32-bit ones, where None is the lowest.
_NUMS = struct.Struct("<qiqiii")
_NONE = -(2**31)
_HEX_UPPER = re.compile(r"(?:[0-9A-F]{2}){1,63}")
_HEX_LOWER = re.compile(r"(?:[0-9a-f]{2}){1,63}")
# The slots of a ScanEvent in the order `HeldScan.unpack` fills them, each by its own setter: a day's scans are
# unpacked at every reconciliation, and going through the frozen class's __setattr__ by name costs more.
_UNPACKED = ("record_id", "device", "seq", "boot", "device_time", "arrived_at", "event", "site", "checkpoint",
             "staff", "tags", "parent", "batch", "school", "count", "temp_cc", "cooked_at", "text", "source",
             "clock_offset")
if sorted(_UNPACKED) != sorted(ScanEvent.__dataclass_fields__):
    raise ImportError("hub.mbg.held: HeldScan.unpack does not fill every field of ScanEvent")
_PUT = tuple(getattr(ScanEvent, name).__set__ for name in _UNPACKED)
_Q_LO, _Q_HI, _I_HI = -(2**63), 2**63, 2**31
# The length byte of an upper-case and of a lower-case UID of each even length, as hex, and a text of upper-case
# and of lower-case hex digits only.
_UPPER_HEAD = {n: f"{n // 2:02X}" for n in range(2, 127, 2)}
_LOWER_HEAD = {n: f"{64 + n // 2:02x}" for n in range(2, 127, 2)}
_HEX_UPPER_TEXT = re.compile(r"[0-9A-F]*")
_HEX_LOWER_TEXT = re.compile(r"[0-9a-f]*")


def _pack_nums(values: tuple[int | None, ...]) -> bytes | tuple[int | None, ...]:
    """Six integers as 32 bytes (five Python ints cost about 150), or as they are if one does not fit."""
    device_time, lag, seq, count, temp_cc, cooked = values
    # Written out rather than looped over: this runs for every scan taken in.
    if (_Q_LO <= device_time < _Q_HI and _NONE < lag < _I_HI and 0 <= seq < _Q_HI  # type: ignore[operator]
            and (count is None or _NONE < count < _I_HI) and (temp_cc is None or _NONE < temp_cc < _I_HI)
            and (cooked is None or _NONE < cooked < _I_HI)):
        return _NUMS.pack(device_time, lag, seq, _NONE if count is None else count,
                          _NONE if temp_cc is None else temp_cc, _NONE if cooked is None else cooked)
    return values


def pack_tags(tags: tuple[str, ...]) -> bytes | tuple[str, ...]:
    """Container tags as one bytes value: an NFC UID (even-length hex) in half its characters, other tags as
    UTF-8, each after a length byte that says which. A tag too long for that stays text."""
    # The common cases in one pass: every tag an upper-case UID, or every tag a lower-case one with a letter in
    # it (a tag of digits only is upper-case), so the whole list is one hex text of length bytes and tags. Even
    # lengths of 2 to 126 make each tag a whole UID on its own.
    text = "".join(tags)
    if _HEX_UPPER_TEXT.fullmatch(text):
        heads = list(map(_UPPER_HEAD.get, map(len, tags)))
        if None not in heads:
            return bytes.fromhex("".join(map(operator.add, heads, tags)))
    elif _HEX_LOWER_TEXT.fullmatch(text) and not any(map(str.isdigit, tags)):
        heads = list(map(_LOWER_HEAD.get, map(len, tags)))
        if None not in heads:
            return bytes.fromhex("".join(map(operator.add, heads, tags)))
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


def _width(packed: bytes) -> int:
    """The length of each packed tag (length byte included) if every tag in the list has the same length byte
    (a delivery's UIDs), else 0."""
    if not packed:
        return 0
    head = packed[0]
    n = 1 + (head & 63 if head < 128 else head - 128)
    return n if len(packed) % n == 0 and packed[::n].count(head) == len(packed) // n else 0


def tag_chunks(packed: bytes | tuple[str, ...]) -> list[bytes] | tuple[str, ...]:
    """Each tag of a packed tag list in a form equal for equal tags (the tag's own bytes in the list)."""
    if type(packed) is tuple:
        return packed
    assert isinstance(packed, bytes)
    n = _width(packed)
    if n:
        return [packed[i:i + n] for i in range(0, len(packed), n)]
    chunks = []
    i = 0
    while i < len(packed):
        head = packed[i]
        n = 1 + ((head & 63) if head < 128 else head - 128)
        chunks.append(packed[i:i + n])
        i += n
    return chunks


def unpack_tags(packed: bytes | tuple[str, ...]) -> tuple[str, ...]:
    if type(packed) is tuple:
        return packed
    assert isinstance(packed, bytes)
    n = _width(packed)
    if n and packed[0] < 64:  # upper-case UIDs of one length: one hex text, cut up
        text = packed.hex().upper()
        return tuple([text[i + 2:i + 2 * n] for i in range(0, len(text), 2 * n)])
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
    checkpoint, staff card, text, source, its clock's measured offset) is one tuple shared by the taps of a day
    that have the same. `unpack()` gives the ScanEvent back, equal to the one that came in."""

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
        extra = (scan.boot, scan.checkpoint, scan.staff, scan.text, scan.source, scan.clock_offset)
        self.extra = shared.setdefault(extra, extra)

    @property
    def record_id(self) -> str:
        return self.key.hex() if isinstance(self.key, bytes) else self.key

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
        boot, checkpoint, staff, text, source, clock_offset = self.extra
        values = (self.record_id, self.device, seq, boot, device_time, device_time + lag,  # type: ignore[operator]
                  self.event, self.site, checkpoint, staff, tags, self.parent, self.batch, self.school, count,
                  temp_cc, None if cooked is None else device_time + cooked, text, source,  # type: ignore[operator]
                  clock_offset)
        scan = object.__new__(ScanEvent)
        for put, value in zip(_PUT, values, strict=True):
            put(scan, value)
        return scan
