"""Hash chains of records: build and sign the next record, verify a chain, capture fork evidence."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from . import cbor
from .cose import Signer
from .errors import BadSignature, BrokenChain, ForkDetected, LedgerError, MalformedRecord, RevokedKey
from .record import ZERO_HASH, Record, decode_record, device_id_for, encode_record


@dataclass(frozen=True, slots=True, kw_only=True)
class ChainState:
    """What a verifier must remember of a log to check its next record."""

    device_id: bytes
    length: int = 0  # the next expected seq
    head: bytes = ZERO_HASH  # id of the last record, zero before genesis
    key: bytes = b""  # the public key that signs the next record
    boot: int = 0
    time: int = 0

    def __post_init__(self) -> None:
        if len(self.device_id) != 16:
            raise ValueError(f"device id: expected 16 bytes, got {len(self.device_id)}")
        if self.length < 0:
            raise ValueError(f"length: expected >= 0, got {self.length}")

    @classmethod
    def empty(cls, device_id: bytes) -> ChainState:
        return cls(device_id=device_id)

    def to_cbor(self) -> bytes:
        return cbor.encode([self.device_id, self.length, self.head, self.key, self.boot, self.time])

    @classmethod
    def from_cbor(cls, data: bytes) -> ChainState:
        item = cbor.decode(data, what="chain state")
        if not isinstance(item, list) or len(item) != 6:
            raise MalformedRecord("chain state: expected an array of 6 items")
        d, n, h, k, b, t = item
        if not (isinstance(d, bytes) and len(d) == 16 and isinstance(h, bytes) and len(h) == 32
                and isinstance(k, bytes) and len(k) in (0, 32)
                and all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in (n, b, t))):
            raise MalformedRecord("chain state: expected [16-byte device id, length, 32-byte head, "
                                  "key (0 or 32 bytes), boot, time] with non-negative integers")
        return cls(device_id=d, length=n, head=h, key=k, boot=b, time=t)


def link(state: ChainState, record: Record) -> tuple[ChainState, bytes]:
    """Check that `record` extends `state` (everything but the signature).

    Returns the next state and the public key the record's signature must verify with, so that callers can
    check signatures in a batch or in parallel (see `check_signatures`).
    """
    if record.device_id != state.device_id:
        raise BrokenChain(f"record belongs to device {record.device}, expected {state.device_id.hex()}",
                          where=record.where)
    if record.seq != state.length:
        if record.seq < state.length:
            raise BrokenChain(f"seq {record.seq} already present: expected seq {state.length}", where=record.where,
                              hint="compare with the stored record at that seq: same id is a replay, "
                                   "a different id is a fork")
        raise BrokenChain(f"gap in the log: expected seq {state.length}, got {record.seq}", where=record.where,
                          hint="fetch the missing range first")
    if record.prev != state.head:
        raise BrokenChain(f"prev link does not match: expected {state.head.hex()}, got {record.prev.hex()}",
                          where=record.where)
    if record.seq > 0 and record.boot < state.boot:
        raise BrokenChain(f"boot counter went backwards: expected >= {state.boot}, got {record.boot}",
                          where=record.where)
    if record.seq == 0:
        if record.kind != "key" or record.body is None:
            raise BrokenChain(f"genesis must be a key record, got {record.kind}", where=record.where)
        key = record.body["pubkey"]
        if device_id_for(key) != record.device_id:
            raise BadSignature("genesis key does not derive this device id", where=record.where)
    else:
        key = state.key
    next_key = key
    if record.kind == "key" and record.body is not None:
        next_key = record.body["pubkey"]
    return _next_state(state.device_id, record.seq + 1, record.id, next_key, record.boot, record.time), key


_new = object.__new__
# The slots' own setters (a frozen dataclass refuses attribute assignment, its slot descriptors do not).
_set_device_id, _set_length, _set_head, _set_key, _set_boot, _set_time = (
    getattr(ChainState, name).__set__ for name in ("device_id", "length", "head", "key", "boot", "time"))


def _next_state(device_id: bytes, length: int, head: bytes, key: bytes, boot: int, time: int) -> ChainState:
    """ChainState(...) with its slots set directly, for `link`, which runs for every record verified: the
    device id is the checked state's and the length is a seq plus one, so __post_init__ has nothing to refuse."""
    state = _new(ChainState)
    _set_device_id(state, device_id)
    _set_length(state, length)
    _set_head(state, head)
    _set_key(state, key)
    _set_boot(state, boot)
    _set_time(state, time)
    return state


def check_signatures(pairs: Iterable[tuple[Record, bytes]]) -> int:
    """Verify each record with its key; return how many. Pure and picklable-friendly for process pools."""
    count = 0
    for record, key in pairs:
        record.verify_signature(key)
        count += 1
    return count


def verify_records(state: ChainState, records: Iterable[Record], *,
                   revoked_from: int | None = None) -> ChainState:
    """Verify records extending `state` in order; raise the first error with where it is."""
    for record in records:
        if revoked_from is not None and record.seq >= revoked_from:
            raise RevokedKey(f"device key revoked from seq {revoked_from}", where=record.where)
        state, key = link(state, record)
        record.verify_signature(key)
    return state


def verify_chain(raws: Sequence[bytes], *, state: ChainState | None = None) -> ChainState:
    """Decode and verify a whole log from genesis (or from `state`)."""
    records = [decode_record(raw) for raw in raws]
    if state is None:
        if not records:
            raise BrokenChain("empty log: nothing to verify")
        state = ChainState.empty(records[0].device_id)
    return verify_records(state, records)


class ChainBuilder:
    """Builds and signs the next record of one device's log from an injected signer and clock."""

    def __init__(self, signer: Signer, *, clock: Callable[[], int], boot: int,
                 state: ChainState | None = None) -> None:
        self._signer = signer
        self._clock = clock
        self._boot = boot
        self._state = state or ChainState(device_id=device_id_for(signer.public_key))
        if self._state.length and self._state.key and self._state.key != signer.public_key:
            raise LedgerError("signer does not hold the log's current key",
                              hint="load the key named by the last key record")

    @property
    def state(self) -> ChainState:
        return self._state

    @property
    def device_id(self) -> bytes:
        return self._state.device_id

    def genesis(self) -> Record:
        if self._state.length:
            raise LedgerError(f"log already has {self._state.length} records; genesis is only for a new log")
        return self._sign("key", {"pubkey": self._signer.public_key, "alg": "Ed25519", "reason": "genesis"})

    def append(self, kind: str, body: dict[str, Any], *, detach: bool = False) -> Record:
        if not self._state.length:
            raise LedgerError("log has no genesis record yet", hint="call genesis() first")
        if kind == "key":
            raise LedgerError("key records are made by genesis() or rotate()")
        return self._sign(kind, body, detach=detach)

    def follow(self, record: Record) -> None:
        """Take `record`, the log's next record signed before with its key (a restored hub's own log taking its
        lost tail back), as the head: the next record signed here extends it."""
        self._state, _ = link(self._state, record)
        self._boot = max(self._boot, record.boot)

    def rotate(self, new_signer: Signer) -> Record:
        """Sign, with the current key, a record that hands the log over to `new_signer`."""
        record = self._sign("key", {"pubkey": new_signer.public_key, "alg": "Ed25519", "reason": "rotation"})
        self._signer = new_signer
        return record

    def _sign(self, kind: str, body: dict[str, Any], *, detach: bool = False) -> Record:
        state = self._state
        record = encode_record(self._signer, device_id=state.device_id, seq=state.length, prev=state.head,
                               time=self._clock(), boot=self._boot, kind=kind, body=body, detach=detach)
        self._state, _ = link(state, record)
        return record


@dataclass(frozen=True, slots=True, kw_only=True)
class ForkEvidence:
    """Two validly signed records of one device with one seq and different ids: proof of equivocation."""

    first: Record
    second: Record

    def __post_init__(self) -> None:
        a, b = self.first, self.second
        if a.device_id != b.device_id or a.seq != b.seq:
            raise MalformedRecord("fork evidence: both records must have the same device and seq")
        if a.id == b.id:
            raise MalformedRecord("fork evidence: the two records are the same record")

    @property
    def device_id(self) -> bytes:
        return self.first.device_id

    @property
    def seq(self) -> int:
        return self.first.seq

    def verify(self, public_key: bytes | None = None) -> None:
        """Check both signatures. For seq 0 the key comes from the genesis bodies themselves."""
        for record in (self.first, self.second):
            key = public_key
            if record.seq == 0:
                if record.kind != "key" or record.body is None:
                    raise BrokenChain(f"genesis must be a key record, got {record.kind}", where=record.where)
                key = record.body["pubkey"]
                if device_id_for(key) != record.device_id:
                    raise BadSignature("genesis key does not derive this device id", where=record.where)
            if key is None:
                raise MalformedRecord("fork evidence past genesis needs the device's public key")
            record.verify_signature(key)

    def to_cbor(self) -> bytes:
        return cbor.encode([self.first.raw, self.second.raw])

    @classmethod
    def from_cbor(cls, data: bytes) -> ForkEvidence:
        item = cbor.decode(data, what="fork evidence")
        if not isinstance(item, list) or len(item) != 2 or not all(isinstance(x, bytes) for x in item):
            raise MalformedRecord("fork evidence: expected an array of two records")
        a, b = (decode_record(x) for x in item)
        return cls(first=a, second=b)

    def error(self) -> ForkDetected:
        return ForkDetected(
            f"two different records at seq {self.seq}: {self.first.id.hex()[:16]}... and "
            f"{self.second.id.hex()[:16]}...", evidence=self, where=self.first.where,
            hint="keep both as evidence; an operator decides which branch, if any, continues")
