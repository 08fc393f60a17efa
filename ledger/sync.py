"""The log sync protocol as pure functions and a state machine: heads in, fetches and pushes out."""

from __future__ import annotations

import bisect
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from . import cbor
from .chain import ChainState
from .errors import LimitExceeded, MalformedRecord, SyncError

PROTOCOL = 1
MSG_HEADS = 1
MSG_RECORDS = 2
MSG_RANGES = 3


@dataclass(frozen=True, slots=True, kw_only=True)
class Head:
    """How far one log goes: `length` records, the last with id `head`."""

    device_id: bytes
    length: int
    head: bytes

    def __post_init__(self) -> None:
        if len(self.device_id) != 16 or len(self.head) != 32 or self.length < 0:
            raise MalformedRecord("head: expected a 16-byte device id, a length >= 0 and a 32-byte id")

    @classmethod
    def of(cls, state: ChainState) -> Head:
        return cls(device_id=state.device_id, length=state.length, head=state.head)


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """What one message may carry. `max_devices` bounds one heads message (a page); a node holds any number
    of logs, sent a page at a time, up to `max_logs` (a bound on what a lying peer can make us hold)."""

    records_per_request: int = 512
    bytes_per_request: int = 256 * 1024
    max_devices: int = 4096
    max_logs: int = 1 << 24


def encode_heads(heads: Iterable[Head]) -> bytes:
    return cbor.encode([MSG_HEADS, PROTOCOL, [[h.device_id, h.length, h.head] for h in heads]])


def decode_heads(data: bytes, limits: Limits = Limits()) -> list[Head]:
    heads, _, paged, _ = _decode_heads(data, limits)
    if paged:
        raise SyncError("heads message: expected [1, protocol, [[device, length, head], ...]], got a page")
    return heads


def encode_heads_page(heads: Sequence[Head], more: bytes | None, *, forked: Sequence[bytes] | None = None) -> bytes:
    """One page of heads, in device id order; `more` is the device id to ask after for the next page. `forked`,
    given only to a peer that asked (`?forked=`), lists which of the logs it asked about this node holds as
    forked (fork evidence on record, the log held back until an operator resolves it)."""
    page = [MSG_HEADS, PROTOCOL, [[h.device_id, h.length, h.head] for h in heads], more]
    return cbor.encode(page if forked is None else [*page, list(forked)])


def decode_heads_page(data: bytes, after: bytes, limits: Limits = Limits()) -> tuple[list[Head], bytes | None]:
    """A page of heads asked for after device id `after` (b"" for the first): its heads and where the next
    page starts, or None at the end. A whole heads message (a peer that does not page) is the last page."""
    heads, more, _ = decode_heads_page_forked(data, after, limits)
    return heads, more


def decode_heads_page_forked(data: bytes, after: bytes, limits: Limits = Limits()
                             ) -> tuple[list[Head], bytes | None, frozenset[bytes] | None]:
    """`decode_heads_page`, and the logs the peer says it holds as forked among those asked about (None when the
    page does not say: a peer that was not asked, or does not tell)."""
    heads, more, paged, forked = _decode_heads(data, limits)
    if paged:
        last = after
        for h in heads:
            if h.device_id <= last:
                raise SyncError("heads page: device ids must rise and follow the one asked after")
            last = h.device_id
        if more is not None and more < last:
            # Not always the page's last id: logs the asker may not read are left out of a page.
            raise SyncError("heads page: the next page must start after this page's last device id")
    return heads, more, forked


def page_of(heads: Sequence[Head], after: bytes, size: int) -> tuple[list[Head], bytes | None]:
    """The page of `heads` after device id `after`: at most `size`, in device id order, and where the next
    page starts (None when this one reaches the end)."""
    ordered = sorted(heads, key=lambda h: h.device_id)
    at = bisect.bisect_right([h.device_id for h in ordered], after)
    page = ordered[at:at + size]
    return page, (page[-1].device_id if at + size < len(ordered) else None)


def _decode_heads(data: bytes, limits: Limits) -> tuple[list[Head], bytes | None, bool, frozenset[bytes] | None]:
    item = cbor.decode(data, what="heads message")
    # `type(...) is int`: True == 1 in Python, and [1, true, []] is not a heads message.
    if (not isinstance(item, list) or len(item) not in (3, 4, 5) or type(item[0]) is not int
            or item[0] != MSG_HEADS):
        raise SyncError("heads message: expected [1, protocol, [[device, length, head], ...]]")
    if type(item[1]) is not int or item[1] != PROTOCOL:
        raise SyncError(f"heads message: expected protocol {PROTOCOL}, got {item[1]!r}",
                        hint="both sides must run the same sync protocol version")
    more = item[3] if len(item) >= 4 else None
    if more is not None and (not isinstance(more, bytes) or len(more) != 16):
        raise SyncError("heads page: the next page must be named by a 16-byte device id or null")
    forked = None
    if len(item) == 5:
        if (not isinstance(item[4], list) or len(item[4]) > limits.max_devices
                or not all(isinstance(d, bytes) and len(d) == 16 for d in item[4])):
            raise SyncError(f"heads page: the forked logs must be a list of at most {limits.max_devices} 16-byte "
                            "device ids")
        forked = frozenset(item[4])
    entries = item[2]
    if not isinstance(entries, list) or len(entries) > limits.max_devices:
        raise LimitExceeded(f"heads message: at most {limits.max_devices} logs, got "
                            f"{len(entries) if isinstance(entries, list) else 'no list'}",
                            hint="ask for the heads a page at a time (?after=)")
    heads = []
    for entry in entries:
        if (not isinstance(entry, list) or len(entry) != 3 or not isinstance(entry[0], bytes)
                or not isinstance(entry[1], int) or isinstance(entry[1], bool) or not isinstance(entry[2], bytes)):
            raise SyncError("heads message: each entry must be [device id, length, head id]")
        heads.append(Head(device_id=entry[0], length=entry[1], head=entry[2]))
    return heads, more, len(item) >= 4, forked


def encode_records(device_id: bytes, start: int, raws: Sequence[bytes]) -> bytes:
    return cbor.encode([MSG_RECORDS, device_id, start, list(raws)])


def records_within(raws: Sequence[bytes], budget: int) -> list[bytes]:
    """The records from the first on that fit in `budget` bytes of a records message, each counted with its
    byte string's header. Records travel whole and unchanged, so a range is cut, never a record; the first
    always goes, or a record larger than the budget would never travel."""
    out: list[bytes] = []
    used = 0
    for raw in raws:
        used += len(raw) + 3
        if out and used > budget:
            break
        out.append(raw)
    return out


def decode_records(data: bytes, limits: Limits = Limits()) -> tuple[bytes, int, list[bytes]]:
    if len(data) > limits.bytes_per_request + 1024:
        raise LimitExceeded(f"records message of {len(data)} bytes exceeds {limits.bytes_per_request}")
    item = cbor.decode(data, what="records message")
    if (not isinstance(item, list) or len(item) != 4 or item[0] != MSG_RECORDS or not isinstance(item[1], bytes)
            or not isinstance(item[2], int) or not isinstance(item[3], list)):
        raise SyncError("records message: expected [2, device id, first seq, [record, ...]]")
    if len(item[1]) != 16 or isinstance(item[2], bool) or not 0 <= item[2] < 2**63:
        raise SyncError(f"records message: expected a 16-byte device id and a first seq from 0 to 2**63 - 1, got "
                        f"{len(item[1])} bytes and {item[2]!r}")
    if len(item[3]) > limits.records_per_request:
        raise LimitExceeded(f"records message holds {len(item[3])} records; the limit is "
                            f"{limits.records_per_request} per request")
    if not all(isinstance(x, bytes) for x in item[3]):
        raise SyncError("records message: records must be byte strings")
    return item[1], item[2], item[3]


def encode_ranges_request(fetches: Sequence[Fetch]) -> bytes:
    """Ask for the start of many logs' ranges in one request (a round where most logs grew a little)."""
    return cbor.encode([MSG_RANGES, [[f.device_id, f.start, f.end] for f in fetches]])


def decode_ranges_request(data: bytes, limits: Limits = Limits()) -> list[Fetch]:
    item = cbor.decode(data, what="ranges request")
    if not isinstance(item, list) or len(item) != 2 or type(item[0]) is not int or item[0] != MSG_RANGES \
            or not isinstance(item[1], list):
        raise SyncError("ranges request: expected [3, [[device id, from, to], ...]]")
    if len(item[1]) > limits.records_per_request:
        raise LimitExceeded(f"ranges request names {len(item[1])} logs; the limit is "
                            f"{limits.records_per_request} per request")
    out = []
    for entry in item[1]:
        if (not isinstance(entry, list) or len(entry) != 3 or not isinstance(entry[0], bytes) or len(entry[0]) != 16
                or any(type(x) is not int or x < 0 for x in entry[1:]) or entry[2] < entry[1]):
            raise SyncError("ranges request: each entry must be [16-byte device id, from >= 0, to >= from]")
        out.append(Fetch(entry[0], entry[1], entry[2]))
    return out


def encode_ranges(served: Sequence[tuple[bytes, int, Sequence[bytes]]]) -> bytes:
    return cbor.encode([MSG_RANGES, [[device_id, start, list(raws)] for device_id, start, raws in served]])


def decode_ranges(data: bytes, limits: Limits = Limits()) -> list[tuple[bytes, int, list[bytes]]]:
    """The answer to a ranges request: per log served, its first seq and records (logs left out were not
    served: the answer was full, or the asker may not read them)."""
    if len(data) > limits.bytes_per_request + 16 * 1024:
        raise LimitExceeded(f"ranges message of {len(data)} bytes exceeds {limits.bytes_per_request}")
    item = cbor.decode(data, what="ranges message")
    if not isinstance(item, list) or len(item) != 2 or type(item[0]) is not int or item[0] != MSG_RANGES \
            or not isinstance(item[1], list):
        raise SyncError("ranges message: expected [3, [[device id, first seq, [record, ...]], ...]]")
    out, count = [], 0
    for entry in item[1]:
        if (not isinstance(entry, list) or len(entry) != 3 or not isinstance(entry[0], bytes) or len(entry[0]) != 16
                or type(entry[1]) is not int or entry[1] < 0 or not isinstance(entry[2], list)
                or not all(isinstance(x, bytes) for x in entry[2])):
            raise SyncError("ranges message: each entry must be [16-byte device id, first seq, [record, ...]]")
        count += len(entry[2])
        out.append((entry[0], entry[1], entry[2]))
    if count > limits.records_per_request:
        raise LimitExceeded(f"ranges message holds {count} records; the limit is {limits.records_per_request}")
    return out


@dataclass(frozen=True, slots=True)
class Fetch:
    """Ask the peer for records [start, end) of a log (start includes one overlap record when possible)."""

    device_id: bytes
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Push:
    """Send the peer our records [start, end) of a log."""

    device_id: bytes
    start: int
    end: int


def plan(local: Mapping[bytes, Head], remote: Iterable[Head], *, limits: Limits = Limits(),
         push: bool = True, pull: bool = True, blocked: frozenset[bytes] = frozenset(),
         own: bytes | None = None) -> list[Fetch | Push]:
    """Compare heads and say what to fetch and what to push.

    Pushes are chunked to the per-request limit. A fetch is one range per log, which the caller asks for
    request by request until the peer has no more: the peer's length is only its word until its records
    arrive, and chunking a claimed 2**64 records up front would take the node's memory and time.

    Where both hold as many records of a log but not the same last one, the log is forked. Pulling, the
    peer's last record is fetched and the evidence kept here. Pushing only, the last record of `own` (the
    log this node signs) is pushed and the peer keeps the evidence: going by length alone, a copy of the
    device that signed as many records as the peer holds from another copy would stay silent until it
    signs again. Any other log's fork is between two other copies, left to the nodes that pull it.
    """
    actions: list[Fetch | Push] = []
    seen: set[bytes] = set()
    step = limits.records_per_request
    for r in remote:
        seen.add(r.device_id)
        if r.device_id in blocked:
            continue
        mine = local.get(r.device_id)
        have = mine.length if mine else 0
        other_head = mine is not None and have > 0 and r.length == have and r.head != mine.head
        if pull and r.length > have:
            # One record of overlap lets the receiver check the peer's history continues ours.
            actions.append(Fetch(r.device_id, have - 1 if have else 0, r.length))
        elif pull and other_head:
            actions.append(Fetch(r.device_id, have - 1, have))  # same length, other head: get the evidence
        elif push and mine is not None and mine.length > r.length:
            start = r.length - 1 if r.length else 0
            for s in range(start, mine.length, step):
                actions.append(Push(r.device_id, s, min(s + step, mine.length)))
        elif push and other_head and r.device_id == own:
            actions.append(Push(r.device_id, have - 1, have))  # same length, other head: give the evidence
    if push:
        for device_id, mine in local.items():
            if device_id not in seen and device_id not in blocked and mine.length:
                for s in range(0, mine.length, step):
                    actions.append(Push(device_id, s, min(s + step, mine.length)))
    return actions


@dataclass(slots=True)
class Backoff:
    """Exponential back-off with full jitter, from an injected random source."""

    base: float = 1.0
    cap: float = 300.0
    failures: int = 0
    rng: random.Random = field(default_factory=lambda: random.Random(0))

    def failed(self) -> float:
        self.failures += 1
        return self.delay()

    def succeeded(self) -> None:
        self.failures = 0

    def delay(self) -> float:
        if not self.failures:
            return 0.0
        return self.rng.uniform(0, min(self.cap, self.base * 2 ** min(self.failures, 30)))


@dataclass(slots=True)
class RequestSize:
    """How much one records request to a peer carries, fitted to the link between `floor_*` and `limits`.

    Each accepted request is acknowledged and stays done, so requests small enough to finish within `timeout`
    always make progress; on a lossy link a large one can time out every time and so make none. The first
    request carries the floor. One answered within a quarter of the timeout doubles the next (twice the size
    should still finish within half); one that failed in transit, or took over half the timeout, halves it.
    """

    limits: Limits = field(default_factory=Limits)
    timeout: float = 30.0  # for one request of any size: the room that a smaller request gains
    floor_records: int = 4
    floor_bytes: int = 4096
    # Requests of one log in flight at once when they carry the most (see `in_flight`): the next range is
    # read and sent while the peer verifies and stores the last. A peer found to take them out of order (one
    # from before receivers kept them in order, docs/SCALE.md) is sent one at a time from then on.
    window: int = 4
    halvings: int = field(init=False)

    def __post_init__(self) -> None:
        if min(self.floor_records, self.limits.records_per_request) < 1:
            raise SyncError(f"request size: expected at least 1 record as floor and limit, got "
                            f"{self.floor_records} and {self.limits.records_per_request}")
        if min(self.floor_bytes, self.limits.bytes_per_request) < 1:
            raise SyncError(f"request size: expected at least 1 byte as floor and limit, got "
                            f"{self.floor_bytes} and {self.limits.bytes_per_request}")
        # Limits below a floor win: where requests may carry only 2 records, they carry 2.
        self.floor_records = min(self.floor_records, self.limits.records_per_request)
        self.floor_bytes = min(self.floor_bytes, self.limits.bytes_per_request)
        if not self.timeout > 0:
            raise SyncError(f"request size: expected a timeout > 0 seconds, got {self.timeout}")
        if self.window < 1:
            raise SyncError(f"request size: expected a window of at least 1 request, got {self.window}")
        self.halvings = self._deepest()

    @property
    def records(self) -> int:
        return max(self.floor_records, self.limits.records_per_request >> self.halvings)

    @property
    def bytes(self) -> int:
        return max(self.floor_bytes, self.limits.bytes_per_request >> self.halvings)

    @property
    def in_flight(self) -> int:
        """Requests to keep in flight: the window while requests carry the most, fewer while they are cut
        down, one on a link that halved them twice (more at once would only be lost together)."""
        return max(1, self.window >> self.halvings)

    def serial(self) -> None:
        """The peer took a pipelined request before its predecessor: send it one request at a time."""
        self.window = 1

    def failed(self) -> None:
        """A request timed out or the transport gave up on it."""
        self.halvings = min(self.halvings + 1, self._deepest())

    def succeeded(self, elapsed: float) -> None:
        """A request was answered `elapsed` seconds after it was sent."""
        if elapsed > self.timeout / 2:
            self.failed()
        elif elapsed <= self.timeout / 4:
            self.halvings = max(self.halvings - 1, 0)

    def _deepest(self) -> int:
        """Halvings that bring both records and bytes down to their floors."""
        deepest = 0
        while (self.limits.records_per_request >> deepest > self.floor_records
               or self.limits.bytes_per_request >> deepest > self.floor_bytes):
            deepest += 1
        return deepest
