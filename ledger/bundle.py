"""Audit bundles: a self-contained export of keys, records, checkpoints and proofs, and its verifier."""

from __future__ import annotations

import hashlib
from array import array
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from itertools import islice
from operator import itemgetter
from typing import Any

from . import cbor
from .acceptance import Accepted, accept
from .authority import Authority, AuthorityWriter, Decision, Standing
from .chain import ChainState, ForkEvidence, link
from .checkpoint import (
    Checkpoint,
    decode_checkpoint,
    make_receipt,
    sign_checkpoint,
    verify_checkpoints_consistent,
    verify_receipt,
)
from .cose import ALG_EDDSA, HDR_ALG, TAG_SIGN1, Signer, parse_sign1, sig_structure, verify_signature
from .errors import BadCheckpoint, BadProof, BrokenChain, LedgerError, MalformedRecord, UnknownKey
from .merkle import EMPTY_ROOT, MerkleTree, leaf_hash
from .record import Record, decode_record, device_id_for

FORMAT = "jejak-bundle/2"
MAX_BUNDLE_BYTES = 1 << 30
# FORMAT.md §12: every field but `description` is required and no other may appear, so that a bit flip that
# renames a key (`hub_log`, `hub_key`, ...) is MALFORMED instead of silently read as a default.
BUNDLE_FIELDS = frozenset({"format", "created", "description", "hub_key", "hub_log", "logs", "checkpoints",
                           "receipts", "consistency", "forks", "seal"})
# The hub's seal signs the whole bundle as exported: what nothing else signs (export time, description) and
# what the export left out (a log's tail with its receipts, a whole log), so that no bit of a bundle is
# unsigned; its own external AAD keeps it from passing for anything else.
SEAL_AAD = b"jejak/bundle/v1"
_SEAL_PROTECTED = cbor.encode({HDR_ALG: ALG_EDDSA})
LOG_FIELDS = frozenset({"device", "keys", "records", "bodies"})


@dataclass(frozen=True, slots=True, kw_only=True)
class LogExport:
    """A contiguous range of one device's log, with every key record needed to know who signed it."""

    device_id: bytes
    keys: list[bytes]  # raw key records (genesis and rotations) up to the end of the range
    records: list[bytes]
    bodies: dict[int, bytes] = field(default_factory=dict)  # seq -> detached body bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class Bundle:
    hub_key: bytes
    hub_log: list[bytes]  # the hub's own log from genesis to the head its largest checkpoint names
    logs: list[LogExport]
    checkpoints: list[bytes]
    receipts: list[tuple[bytes, bytes]]  # (record id, COSE receipt)
    consistency: list[tuple[int, int, list[bytes]]]
    forks: list[bytes]
    created: int
    seal: bytes = b""  # the hub's signature over everything else (`sealed`)
    description: str = ""
    # The seal covers the map as exported: a bundle without the optional description is sealed without it.
    has_description: bool = True

    def encode(self) -> bytes:
        return cbor.encode(self._map() | {"seal": self.seal})

    def sealed(self, signer: Signer) -> Bundle:
        """This bundle with the hub's seal over the rest of it (FORMAT.md §12.3 step 9)."""
        signature = signer.sign(_seal_signed(hashlib.sha256(cbor.encode(self._map())).digest()))
        return replace(self, seal=cbor.encode([_SEAL_PROTECTED, {}, None, signature], tag=TAG_SIGN1))

    def _map(self) -> dict[str, Any]:
        described = {"description": self.description} if self.has_description else {}
        return described | {
            "format": FORMAT, "created": self.created,
            "hub_key": self.hub_key, "hub_log": self.hub_log,
            "logs": [{"device": log.device_id, "keys": log.keys, "records": log.records,
                      "bodies": [[s, b] for s, b in sorted(log.bodies.items())]} for log in self.logs],
            "checkpoints": self.checkpoints,
            "receipts": [[rid, r] for rid, r in self.receipts],
            "consistency": [[a, b, p] for a, b, p in self.consistency],
            "forks": self.forks,
        }


class BundleEncoder:
    """Encodes a bundle a piece at a time, in the order of its deterministic encoding, so that an exporter
    holds one log in memory rather than the whole bundle: the bytes it returns, concatenated, equal
    `Bundle.encode()` of the same bundle once the seal is written into its place.

    The seal comes second in key order but signs the SHA-256 of everything else, so `start` writes a
    placeholder of the seal's fixed size at `seal_at` and `seal(signer)` returns the bytes that replace it.
    Call, in order: `start`, `logs` and one `log` each, `fields` (forks, format, created, hub_key, hub_log),
    `receipts` and one `receipt` each, `tail` (checkpoints, consistency, description), then `seal`.
    """

    # Deterministic map order: length first, then bytes (RFC 8949 §4.2.1).
    ORDER = ("logs", "seal", "forks", "format", "created", "hub_key", "hub_log", "receipts", "checkpoints",
             "consistency", "description")

    def __init__(self, *, description: str | None) -> None:
        self.description = description  # None: sealed without the optional field
        self._hash = hashlib.sha256()
        self._written = 0
        self._step = 0
        self._left = 0  # items still owed to the array being written
        self.seal_at = -1

    def _emit(self, data: bytes, *, hashed: bool = True) -> bytes:
        if hashed:
            self._hash.update(data)
        self._written += len(data)
        return data

    def _expect(self, step: int, what: str) -> None:
        if self._step != step or self._left:
            raise ValueError(f"bundle encoder: {what} out of order")

    def start(self, log_count: int) -> bytes:
        """The map's head and the head of `logs`; the map the seal signs has one entry fewer."""
        self._expect(0, "start")
        entries = len(self.ORDER) - (self.description is None)
        self._hash.update(cbor.map_head(entries - 1))
        self._written += len(head := cbor.map_head(entries))
        self._step, self._left = 1, log_count
        return head + self._emit(cbor.encode("logs") + cbor.array_head(log_count))

    def log(self, log: LogExport) -> bytes:
        if self._step != 1 or not self._left:
            raise ValueError("bundle encoder: more logs than announced")
        self._left -= 1
        return self._emit(cbor.encode({"device": log.device_id, "keys": log.keys, "records": log.records,
                                       "bodies": [[s, b] for s, b in sorted(log.bodies.items())]}))

    def fields(self, *, forks: list[bytes], created: int, hub_key: bytes, hub_log: list[bytes]) -> bytes:
        """The seal's placeholder (not hashed) and the fields between it and the receipts."""
        self._expect(1, "fields")
        self.seal_at = self._written + len(SEAL_KEY)
        out = self._emit(SEAL_KEY + bytes(SEAL_BYTES), hashed=False)
        values = {"forks": forks, "format": FORMAT, "created": created, "hub_key": hub_key, "hub_log": hub_log}
        self._step = 2
        return out + b"".join(self._emit(cbor.encode(k) + cbor.encode(values[k])) for k in self.ORDER[2:7])

    def receipts(self, count: int) -> bytes:
        self._expect(2, "receipts")
        self._step, self._left = 3, count
        return self._emit(cbor.encode("receipts") + cbor.array_head(count))

    def receipt(self, record_id: bytes, receipt: bytes) -> bytes:
        if self._step != 3 or not self._left:
            raise ValueError("bundle encoder: more receipts than announced")
        self._left -= 1
        return self._emit(cbor.encode([record_id, receipt]))

    def tail(self, *, checkpoints: list[bytes], consistency: list[tuple[int, int, list[bytes]]]) -> bytes:
        self._expect(3, "checkpoints")
        self._step = 4
        values: dict[str, Any] = {"checkpoints": checkpoints, "consistency": [[a, b, p] for a, b, p in consistency]}
        if self.description is not None:
            values["description"] = self.description
        return b"".join(self._emit(cbor.encode(k) + cbor.encode(v)) for k, v in values.items())

    def seal(self, signer: Signer) -> bytes:
        """The seal field's value, to be written at `seal_at` over the placeholder."""
        self._expect(4, "seal")
        signature = signer.sign(_seal_signed(self._hash.digest()))
        sealed = cbor.encode(cbor.encode([_SEAL_PROTECTED, {}, None, signature], tag=TAG_SIGN1))
        assert len(sealed) == SEAL_BYTES
        return sealed


SEAL_KEY = cbor.encode("seal")
# The seal field is a byte string holding the COSE_Sign1, of one size whatever the signature.
SEAL_BYTES = len(cbor.encode(cbor.encode([_SEAL_PROTECTED, {}, None, bytes(64)], tag=TAG_SIGN1)))


def _seal_signed(unsealed_digest: bytes) -> bytes:
    """Sig_structure over the SHA-256 of the bundle's encoding without its seal entry (a detached payload)."""
    return sig_structure(_SEAL_PROTECTED, unsealed_digest, SEAL_AAD)


def check_seal(seal: bytes, unsealed_digest: bytes, hub_key: bytes) -> None:
    """The seal is exactly 18([h'a10127', {}, nil, signature]) (else MALFORMED) and its signature verifies
    over `unsealed_digest`, the SHA-256 of the rest of the bundle (else INVALID_SIGNATURE)."""
    msg = parse_sign1(seal, what="bundle seal")
    if msg.protected != _SEAL_PROTECTED or msg.unprotected or msg.payload is not None:
        raise MalformedRecord("bundle seal: expected 18([h'a10127', {}, nil, signature])")
    verify_signature(hub_key, msg.signature, _seal_signed(unsealed_digest),
                     where="bundle seal: the bundle is not what the hub exported")


def _expect(cond: bool, what: str) -> None:
    if not cond:
        raise MalformedRecord(f"bundle: {what}")


def _expect_deterministic(cond: bool, what: str = "") -> None:
    if not cond:
        raise MalformedRecord(f"bundle: {cbor.NOT_DETERMINISTIC}{what}", hint=cbor.DETERMINISTIC_HINT)


def _expect_fields(item: dict[Any, Any], fields: frozenset[str], *, optional: set[str], what: str) -> None:
    unknown = sorted(repr(k) for k in item if k not in fields)
    _expect(not unknown, f"{what} has unknown field(s) {', '.join(unknown)}")
    missing = sorted(fields - optional - set(item))
    _expect(not missing, f"{what} lacks field(s) {', '.join(missing)}")


def _is_int(x: object) -> bool:
    return type(x) is int and x >= 0


def _is_bytes_list(x: object) -> bool:
    return isinstance(x, list) and all(isinstance(b, bytes) for b in x)


def _is_pair(x: object, first: type, second: type) -> bool:
    return isinstance(x, list) and len(x) == 2 and isinstance(x[0], first) and isinstance(x[1], second)


Chunks = Iterable[bytes | memoryview]  # a bundle's bytes from the first, in pieces of any size
# Reads a bundle: `read(start)` gives its bytes from byte `start` to the end, in pieces, each time it is called.
Read = Callable[[int], Chunks]


class _Input:
    """A bundle's bytes taken in order from its pieces, counted, and hashed for the seal (FORMAT.md §12.3 step
    9) while `hashing` is on; `capture`, when a list, collects what is taken."""

    __slots__ = ("_buf", "_chunks", "_pos", "capture", "hashing", "read", "unsealed")

    def __init__(self, chunks: Chunks) -> None:
        self._chunks = iter(chunks)
        self._buf = memoryview(b"")
        self._pos = 0
        self.read = 0
        self.unsealed = hashlib.sha256()
        self.hashing = True
        # A bytearray, not a list of pieces: an array of a million one-byte items would be a million objects.
        self.capture: bytearray | None = None

    def take(self, n: int) -> bytes:
        _expect(n <= MAX_BUNDLE_BYTES - self.read,
                f"an item at byte {self.read} claims {n} bytes, past the {MAX_BUNDLE_BYTES} a bundle may hold")
        end = self._pos + n
        if end > len(self._buf):
            rest = self._buf[self._pos:]
            parts, have = [rest] if len(rest) else [], len(rest)
            while have < n:
                chunk = next(self._chunks, None)
                _expect(chunk is not None, f"cut short: it ends after {self.read + have} bytes, before its map does")
                assert chunk is not None
                parts.append(memoryview(chunk))
                have += len(chunk)
            # A bundle given whole (one piece) is read in place; pieces are joined only across an item's ends.
            self._buf = parts[0] if len(parts) == 1 else memoryview(b"".join(parts))
            self._pos, end = 0, n
        out = bytes(self._buf[self._pos:end])
        self._pos = end
        self.read += n
        if self.hashing:
            self.unsealed.update(out)
        if self.capture is not None:
            self.capture += out
        return out

    def at_end(self) -> bool:
        return self._pos == len(self._buf) and not any(len(chunk) for chunk in self._chunks)

    def head(self, bundle: bool = False) -> tuple[int, int]:
        """The next item's major type and argument; a definite length in its shortest form, as deterministic
        CBOR has it (RFC 8949 §4.2.1). With `bundle`, the item is the bundle's map: a file that does not start
        with one is no bundle, whatever its first byte would be as CBOR."""
        first = self.take(1)[0]
        major, info = first >> 5, first & 31
        _expect(not bundle or major == 5, f"expected a map: this file is not a Jejak bundle (it starts with byte "
                                          f"0x{first:02x})")
        if info < 24:
            return major, info
        _expect_deterministic(info < 28)
        size = 1 << (info - 24)
        n = int.from_bytes(self.take(size), "big")
        _expect_deterministic(major == 7 or n >= (24 if size == 1 else 1 << (4 * size)))
        return major, n

    def item_bytes(self, depth: int) -> bytes:
        """One whole item's bytes, as taken (`cbor.decode` checks them)."""
        self.capture = bytearray()
        self._skip(depth)
        raw, self.capture = bytes(self.capture), None
        return raw

    def key(self, depth: int, after: bytes, fields: frozenset[str], what: str) -> tuple[str, bytes]:
        """The next key of a map and its bytes: one of `fields`, after the key before it (`after`, its bytes)
        in deterministic order, which also makes each key appear once."""
        raw = self.item_bytes(depth)
        key = cbor.decode(raw, what="bundle", depth=depth)
        _expect_deterministic(raw > after)
        _expect(type(key) is str and key in fields, f"{what} has unknown field(s) {key!r}")
        return key, raw

    def item(self, depth: int) -> Any:
        """One whole item, decoded strictly at its depth in the bundle."""
        return cbor.decode(self.item_bytes(depth), what="bundle", depth=depth)

    def _skip(self, depth: int) -> None:
        _expect(depth <= cbor.MAX_DEPTH + 2, f"CBOR nested deeper than {cbor.MAX_DEPTH} levels")
        major, n = self.head()
        if major in (2, 3):
            self.take(n)
        elif major in (4, 5):
            for _ in range(n * (major - 3)):
                self._skip(depth + 1)
        elif major == 6:
            self._skip(depth + 1)


class _Reader:
    """What `_walk` hands a bundle's logs and receipts to as it comes to them; this one lets them pass."""

    def log(self, log: LogExport, records: _Records) -> None:
        """A log's fields, its records (an empty list in `log`) to be taken from `records` as they come."""

    def receipt(self, record_id: bytes, receipt: bytes) -> None:
        """One entry of `receipts`."""


@dataclass(frozen=True, slots=True, kw_only=True)
class _Fields:
    """A bundle's fields but its logs and receipts, which are read as they come: these are small."""

    hub_key: bytes
    hub_log: list[bytes]
    checkpoints: list[bytes]
    consistency: Iterable[tuple[int, int, list[bytes]]]
    forks: list[bytes]
    created: int
    description: str
    has_description: bool
    seal: bytes
    unsealed: bytes  # the SHA-256 of the bundle without its seal entry, what the seal signs


def _walk(chunks: Chunks, reader: _Reader) -> _Fields:
    """Read a bundle once, in order, checking its schema (FORMAT.md §12.1) as its bytes come: every field
    present and of exactly its type, in deterministic CBOR, else MALFORMED. Each log and receipt goes to
    `reader` when it is read; the rest is returned."""
    src = _Input(chunks)
    src.hashing = False  # the map the seal signs has one entry fewer
    _, entries = src.head(bundle=True)
    src.unsealed.update(cbor.map_head(max(entries - 1, 0)))
    small: dict[str, Any] = {}
    seen: set[str] = set()
    last = b""
    for _ in range(entries):
        src.hashing = False
        key, last = src.key(1, last, BUNDLE_FIELDS, "bundle")
        if key != "seal":
            src.unsealed.update(last)
            src.hashing = True
        seen.add(key)
        if key == "logs":
            major, count = src.head()
            _expect(major == 4, "logs must be an array")
            for _ in range(count):
                _log(src, reader)
        elif key == "receipts":
            major, count = src.head()
            _expect(major == 4, "receipts must be an array of [32-byte record id, receipt]")
            for _ in range(count):
                reader.receipt(*_receipt(src))
        elif key == "consistency":
            raw = src.item_bytes(1)
            # Held as its bytes when it has the schema's shape; anything else is decoded whole, for its error.
            small[key] = _Entries.of(raw) or cbor.decode(raw, what="bundle", depth=1)
        else:
            small[key] = src.item(1)
    src.hashing = True
    _expect_deterministic(src.at_end(), ": bytes after the bundle's map")
    _expect(small.get("format") == FORMAT, f"expected format {FORMAT!r}, got {small.get('format')!r}")
    _expect_fields(dict.fromkeys(seen), BUNDLE_FIELDS, optional={"description"}, what="bundle")
    hub_key = small["hub_key"]
    _expect(isinstance(hub_key, bytes) and len(hub_key) == 32, "hub_key must be a 32-byte Ed25519 public key")
    _expect(_is_bytes_list(small["hub_log"]) and bool(small["hub_log"]),
            "hub_log must be a non-empty array of records")
    _expect(_is_bytes_list(small["checkpoints"]) and bool(small["checkpoints"]),
            "checkpoints must be a non-empty array of byte strings")
    _expect(_is_bytes_list(small["forks"]), "forks must be an array of byte strings")
    consistency = small["consistency"]
    if not isinstance(consistency, _Entries):
        _expect(isinstance(consistency, list) and all(
            isinstance(x, list) and len(x) == 3 and _is_int(x[0]) and _is_int(x[1]) and _is_bytes_list(x[2])
            for x in consistency), "consistency must be an array of [first, second, [hashes]]")
        consistency = [(a, b, p) for a, b, p in consistency]
    _expect(_is_int(small["created"]), "created must be a non-negative integer")
    description = small.get("description", "")
    _expect(isinstance(description, str), "description must be text")
    _expect(isinstance(small["seal"], bytes), "seal must be a byte string")
    return _Fields(hub_key=hub_key, hub_log=small["hub_log"], checkpoints=small["checkpoints"],
                   consistency=consistency, forks=small["forks"],
                   created=small["created"], description=description, has_description="description" in small,
                   seal=small["seal"], unsealed=src.unsealed.digest())


class _Entries:
    """A bundle's `consistency` entries [first, second, [hashes]], held as their encoding and read again each time
    they are gone through: a million entries held as Python lists take some 400 MB, their bytes 4 MB."""

    __slots__ = ("raw",)

    def __init__(self, raw: bytes) -> None:
        self.raw = raw

    @classmethod
    def of(cls, raw: bytes) -> _Entries | None:
        """`raw` as entries if it is exactly an array of [uint, uint, [byte strings]] in deterministic CBOR; else
        None, and the caller decodes it whole to say what is wrong, as for any other field."""
        try:
            for _ in _entries(raw, keep=False):
                pass
        except (ValueError, IndexError):
            return None
        return cls(raw)

    def __iter__(self) -> Iterator[tuple[int, int, list[bytes]]]:
        return _entries(self.raw, keep=True)


def _head(raw: bytes, i: int) -> tuple[int, int, int]:
    """The major type and argument of the item at byte `i`, and where its content starts: a definite length in its
    shortest form (RFC 8949 §4.2.1), else ValueError (IndexError past the end)."""
    first = raw[i]
    major, info = first >> 5, first & 31
    if info < 24:
        return major, info, i + 1
    if info > 27 or major == 7:
        raise ValueError
    size = 1 << (info - 24)
    if i + 1 + size > len(raw):
        raise IndexError
    n = int.from_bytes(raw[i + 1:i + 1 + size], "big")
    if n < (24 if size == 1 else 1 << (4 * size)):
        raise ValueError
    return major, n, i + 1 + size


def _entries(raw: bytes, *, keep: bool) -> Iterator[tuple[int, int, list[bytes]]]:
    """The entries of a `consistency` array, decoded by hand (a tight loop: a million of them is a hostile bundle's
    1 MB); ValueError or IndexError if `raw` is not exactly such an array in deterministic CBOR."""
    major, count, i = _head(raw, 0)
    if major != 4:
        raise ValueError
    for _ in range(count):
        if raw[i] != 0x83:  # an array of three
            raise ValueError
        major, first, i = _head(raw, i + 1)
        major2, second, i = _head(raw, i)
        major3, n, i = _head(raw, i)
        if major or major2 or major3 != 4:
            raise ValueError
        proof = []
        for _ in range(n):
            major, size, i = _head(raw, i)
            if major != 2 or i + size > len(raw):
                raise ValueError
            if keep:
                proof.append(raw[i:i + size])
            i += size
        yield first, second, proof
    if i != len(raw):
        raise ValueError


def _log(src: _Input, reader: _Reader) -> None:
    """One log map: its key list, bodies and device (small) first, as deterministic order has them, then its
    records, handed to `reader` one at a time."""
    major, entries = src.head()
    _expect(major == 5, "each log must be a map")
    item: dict[Any, Any] = {}
    last = b""
    for _ in range(entries):
        key, last = src.key(3, last, LOG_FIELDS, "log")
        if key != "records":
            item[key] = src.item(3)
            continue
        _expect_fields(item | {"records": None}, LOG_FIELDS, optional=set(), what="log")
        device = item["device"]
        _expect(isinstance(device, bytes) and len(device) == 16, "log device must be a 16-byte id")
        _expect(_is_bytes_list(item["keys"]), "log keys and records must be arrays of byte strings")
        raw_bodies = item["bodies"]
        _expect(isinstance(raw_bodies, list) and all(_is_pair(x, int, bytes) and _is_int(x[0])
                                                     for x in raw_bodies),
                "log bodies must be an array of [seq, bytes]")
        _expect(len({s for s, _ in raw_bodies}) == len(raw_bodies), "log bodies must name each seq once")
        major, count = src.head()
        _expect(major == 4, "log keys and records must be arrays of byte strings")
        records = _Records(src, count)
        reader.log(LogExport(device_id=device, keys=item["keys"], records=[],
                             bodies={s: b for s, b in raw_bodies}), records)
        for _ in records:  # what the reader left is read all the same: the schema covers every byte
            pass
        item["records"] = None
    _expect_fields(item, LOG_FIELDS, optional=set(), what="log")


def _receipt(src: _Input) -> tuple[bytes, bytes]:
    """One [32-byte record id, receipt] entry, read without decoding it as a whole (there is one a record)."""
    what = "receipts must be an array of [32-byte record id, receipt]"
    _expect(src.head() == (4, 2), what)
    pair = []
    for _ in range(2):
        major, n = src.head()
        _expect(major == 2, what)
        pair.append(src.take(n))
    _expect(len(pair[0]) == 32, what)
    return pair[0], pair[1]


class _Records:
    """A log's records as they are read, one at a time; `at` is the byte of the bundle the next one starts at."""

    __slots__ = ("_left", "_src", "count")

    def __init__(self, src: _Input, count: int) -> None:
        self._src, self._left, self.count = src, count, count

    def __iter__(self) -> _Records:
        return self

    def __next__(self) -> bytes:
        if not self._left:
            raise StopIteration
        self._left -= 1
        major, n = self._src.head()
        _expect(major == 2, "log keys and records must be arrays of byte strings")
        return self._src.take(n)

    @property
    def at(self) -> int:
        return self._src.read


class _Collect(_Reader):
    """Keeps every log and receipt: the whole bundle as values, for `decode_bundle`."""

    def __init__(self) -> None:
        self.logs: list[LogExport] = []
        self.receipts: list[tuple[bytes, bytes]] = []

    def log(self, log: LogExport, records: _Records) -> None:
        self.logs.append(replace(log, records=list(records)))

    def receipt(self, record_id: bytes, receipt: bytes) -> None:
        self.receipts.append((record_id, receipt))


def decode_bundle(data: bytes) -> Bundle:
    """The bundle's map, every field present and of exactly its type (FORMAT.md §12.1), or MALFORMED."""
    _expect(len(data) <= MAX_BUNDLE_BYTES, f"larger than {MAX_BUNDLE_BYTES} bytes")
    kept = _Collect()
    f = _walk((data,), kept)
    return Bundle(hub_key=f.hub_key, hub_log=f.hub_log, logs=kept.logs, checkpoints=f.checkpoints,
                  receipts=kept.receipts, consistency=list(f.consistency), forks=f.forks, created=f.created,
                  seal=f.seal, description=f.description, has_description=f.has_description)


@dataclass(slots=True, kw_only=True)
class DeviceReport:
    device: str
    first_seq: int | None = None
    last_seq: int | None = None
    # The span of the verified records' device times (a device's clock may run backwards across boots).
    first_time: int | None = None
    last_time: int | None = None
    records: int = 0  # verified
    in_bundle: int = 0  # records the log's range holds, verified or not (repeats included)
    receipts: int = 0
    duplicates: int = 0  # records repeated in the range (same id): skipped, not a problem
    revoked_from: int | None = None  # as the hub's verified log says
    problems: list[LedgerError] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"device": self.device, "first_seq": self.first_seq, "last_seq": self.last_seq,
                "first_time": self.first_time, "last_time": self.last_time, "records": self.records,
                "in_bundle": self.in_bundle, "receipts": self.receipts, "revoked_from": self.revoked_from,
                "ok": not self.problems, "problems": [p.to_dict() for p in self.problems]}


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckpointNote:
    """What a bundle's checkpoints leave unshown though no check fails (FORMAT.md §12.3, notes): said to the
    auditor, never a problem, so the verdict and codes stay those of the format. `what` is "untied" (no chain
    of consistency entries leads from this size to the largest checkpoint's) or "empty_root" (size 0 with a
    root other than MTH({}))."""

    what: str
    size: int
    largest: int

    @property
    def message(self) -> str:
        if self.what == "empty_root":
            return "checkpoint of size 0 names a root that is not the empty tree's: the hub signed a false statement"
        return (f"checkpoint of size {self.size} is not tied to checkpoint of size {self.largest} by a consistency "
                "proof: the bundle does not show that the larger log extends it")

    def to_dict(self) -> dict[str, Any]:
        return {"note": self.what, "size": self.size, "largest": self.largest, "message": self.message}


def checkpoint_notes(checkpoints: Iterable[Checkpoint], linked: Iterable[tuple[int, int]]) -> list[CheckpointNote]:
    """The notes on the checkpoints that verified (§12.3 step 3), given the sizes `(first, second)` of the
    consistency entries that verified (step 4), in size order: a size-0 checkpoint whose root is not MTH({});
    each other size from which no chain of entries, each to a size at least its first, leads to the largest.
    The empty tree is a prefix of every tree (§9), so a size-0 checkpoint with its root needs no entry."""
    roots: dict[int, set[bytes]] = {}
    for cp in checkpoints:
        roots.setdefault(cp.tree_size, set()).add(cp.root)
    if not roots:
        return []
    largest = max(roots)
    later: dict[int, set[int]] = {}
    for first, second in linked:
        later.setdefault(first, set()).add(second)
    tied = {largest}
    for size in sorted(later, reverse=True):  # an entry leads up, to a size already settled
        if later[size] & tied:
            tied.add(size)
    notes = []
    for size in sorted(roots):
        if size == 0 and roots[0] != {EMPTY_ROOT}:
            notes.append(CheckpointNote(what="empty_root", size=0, largest=largest))
        elif size not in tied and size != 0:
            notes.append(CheckpointNote(what="untied", size=size, largest=largest))
    return notes


# A step that checks a list the bundle gives (checkpoints, consistency entries, fork evidence, receipts) lists
# its first problems and counts the rest: a bundle of a million bad entries would otherwise give a report of a
# million problems (gigabytes held, a million lines said). The verdict is the first problem, always listed.
MAX_LISTED = 20
LISTED_STEPS = ("checkpoints", "consistency", "forks", "receipts")


@dataclass(slots=True, kw_only=True)
class BundleReport:
    hub_key: bytes = b""  # the key the checks used: the pinned one, else the one the bundle names
    pinned: bool = False
    devices: list[DeviceReport] = field(default_factory=list)
    checkpoints: list[Checkpoint] = field(default_factory=list)
    hub_log: int = 0  # records of the hub's own log that verified
    decisions: int = 0  # of which authority decisions
    receipts_checked: int = 0
    forks: list[ForkEvidence] = field(default_factory=list)
    notes: list[CheckpointNote] = field(default_factory=list)  # not problems: the verdict ignores them
    problems: list[LedgerError] = field(default_factory=list)  # those not about one device
    # Every problem listed, in the order of the checks (FORMAT.md §12.3): the first one is the verdict.
    ordered: list[LedgerError] = field(default_factory=list)
    # Problems of a step of LISTED_STEPS past its first MAX_LISTED: counted, not listed.
    more: dict[str, int] = field(default_factory=dict)
    _listed: dict[str, int] = field(default_factory=dict)

    def add(self, problem: LedgerError, device: DeviceReport | None = None, *, step: str | None = None) -> bool:
        """List `problem`, or, past the first MAX_LISTED of its `step`, count it in `more`; whether it is listed."""
        if step is not None:
            if self._listed.get(step, 0) >= MAX_LISTED:
                self.count_more(step)
                return False
            self._listed[step] = self._listed.get(step, 0) + 1
        # A raised error keeps its frames, and their locals (a bundle's bytes among them), alive: not needed here.
        problem.__traceback__ = None
        (device.problems if device is not None else self.problems).append(problem)
        self.ordered.append(problem)
        return True

    def count_more(self, step: str, n: int = 1) -> None:
        if n:
            self.more[step] = self.more.get(step, 0) + n

    @property
    def all_problems(self) -> list[LedgerError]:
        """The problems listed (see `problem_count` for how many there are)."""
        return list(self.ordered)

    @property
    def problem_count(self) -> int:
        """Every problem found, those counted in `more` included."""
        return len(self.ordered) + sum(self.more.values())

    @property
    def ok(self) -> bool:
        return not self.ordered

    @property
    def exit_code(self) -> int:
        return self.ordered[0].exit_code if self.ordered else 0

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "hub_key": self.hub_key.hex(), "hub_id": device_id_for(self.hub_key).hex(),
                "hub_key_pinned": self.pinned, "devices": [d.to_json() for d in self.devices],
                "checkpoints": [c.to_json() for c in self.checkpoints],
                "hub_log": self.hub_log, "decisions": self.decisions,
                "receipts_checked": self.receipts_checked,
                "forks": [{"device": f.device_id.hex(), "seq": f.seq} for f in self.forks],
                "notes": [n.to_dict() for n in self.notes],
                "problems": [p.to_dict() for p in self.problems],
                "more": {step: self.more[step] for step in LISTED_STEPS if step in self.more}}


def _key_schedule(device_id: bytes, keys: Sequence[bytes]) -> list[tuple[int, bytes, Record]]:
    """[(first seq signed by key, key, key record)] from the key list (FORMAT.md §12.3 step 6.1)."""
    first = decode_record(keys[0]) if keys else None
    if first is None or first.seq != 0 or first.kind != "key":
        raise UnknownKey(f"the key list of device {device_id.hex()} does not start with a genesis key record")
    schedule: list[tuple[int, bytes, Record]] = []
    state = ChainState.empty(device_id)
    for raw in keys:
        rec = first if raw is keys[0] else decode_record(raw)
        if rec.kind != "key" or rec.device_id != device_id or rec.body is None:
            raise BrokenChain("key list holds a record that is not a key record of this device", where=rec.where)
        if rec.seq < state.length:
            raise BrokenChain("key list is not in increasing seq order", where=rec.where)
        if rec.seq != state.length:
            # Key records are sparse: check the signature with the current key but not the prev link.
            state = ChainState(device_id=device_id, length=rec.seq, head=rec.prev, key=state.key,
                               boot=state.boot, time=state.time)
        state, signing_key = link(state, rec)
        rec.verify_signature(signing_key)
        schedule.append((rec.seq + 1, rec.body["pubkey"], rec))
    return schedule


def _key_at(schedule: Sequence[tuple[int, bytes, Record]], seq: int) -> bytes:
    key = schedule[0][1]
    for start, k, _ in schedule:
        if start <= seq:
            key = k
    return key


def _check_standing(device_id: bytes, schedule: Sequence[tuple[int, bytes, Record]], authority: Authority,
                    start: ChainState) -> Standing:
    """The hub approved this genesis key and accepted every rotation in the key list, and the key list holds
    every rotation the hub accepted before the range starts (FORMAT.md §12.3 step 6.3)."""
    standing = authority.standing(device_id)
    if standing.key != schedule[0][1]:
        raise UnknownKey("the hub approved another genesis key for this device", where=schedule[0][2].where)
    listed = {rec.seq: key for _, key, rec in schedule[1:]}
    for seq, key in listed.items():
        if standing.rotations.get(seq) != key:
            raise UnknownKey("key rotation that the hub's log does not record as accepted",
                             where=f"device {device_id.hex()} seq {seq}")
    for seq in standing.rotations:
        if seq < start.length and seq not in listed:
            raise BrokenChain(f"key list lacks the key record at seq {seq} that the hub accepted",
                              where=f"device {device_id.hex()} seq {seq}")
    return standing


# Records of a log accepted at a time: the verifier holds a batch of a log, never the log.
BATCH = 1024


class _Earlier:
    """What a range accepted in earlier batches, as the acceptance path asks for it (`HeldLog`), asked only for
    a record that repeats a seq accepted in an earlier batch: the key each accepted key record put in force;
    the id of each accepted record (its slot in `held`), which tells a repeated record (a duplicate) without
    reading anything again; and where each batch began in the bundle, so that the record held at a seq that
    another record claims (a fork, which ends the range) is read again from its batch by `find(at, id)`, not
    from the bundle's first byte. However a range repeats itself, the bundle is read about twice."""

    def __init__(self, start: ChainState, held: _Held, find: Callable[[int, bytes], bytes | None]) -> None:
        self.first = self.length = start.length
        self.keys: list[tuple[int, bytes | None]] = [(start.length, start.key)]
        self.slots = array("L")  # the slot in `held` of each accepted record, from seq `first` on
        self.batches: list[tuple[int, int]] = []  # (first seq a batch added, the byte of the bundle it began at)
        self._held, self._find = held, find

    def verified(self, rec: Record) -> None:
        self.slots.append(self._held.verified(rec))

    def accepted_only(self, rec: Record) -> None:
        """A record step 6.4 accepted past the end of the verified prefix (step 6.5): held, not verified."""
        self.slots.append(self._held.hold(rec.id))

    def accepted(self, result: Accepted, at: int) -> None:
        if result.records:
            self.batches.append((result.records[0].seq, at))
        self.keys += [(rec.seq + 1, rec.body["pubkey"]) for rec in result.records
                      if rec.kind == "key" and rec.body is not None]
        self.length = result.state.length

    def id_at(self, seq: int) -> bytes | None:
        return self._held.id_of(self.slots[seq - self.first]) if self.first <= seq < self.length else None

    def raw_at(self, seq: int) -> bytes | None:
        record_id = self.id_at(seq)
        if record_id is None:
            return None
        batch = bisect_right(self.batches, seq, key=itemgetter(0)) - 1
        return self._find(self.batches[batch][1], record_id)

    def key_at(self, seq: int) -> bytes | None:
        if not self.first <= seq < self.length:
            return None
        return [key for start, key in self.keys if start <= seq][-1]


def verify_log(log: LogExport, records: _Records, report: DeviceReport, authority: Authority, *,
               held: _Held, find: Callable[[int, bytes], bytes | None]) -> None:
    """Verify one exported range, its records taken from `records` as they come, by the acceptance path a
    batch at a time, with the revocation point the hub's verified log gives; record the problem that ends
    its verified prefix in `report` (and, when step 6.5 ended it, step 6.4's after it) and each verified
    record in `held`. `find(at, id)` reads again the record with that id of the batch that began at byte
    `at` (see `_Earlier`)."""
    it = _holding(records, held)
    at = records.at
    try:
        schedule = _key_schedule(log.device_id, log.keys)
        first = next(it, None)
        # A key list with no range is vouched for all the same: the hub admitted its genesis and rotations.
        start = ChainState.empty(log.device_id) if first is None else _range_start(log, first, schedule)
        standing = _check_standing(log.device_id, schedule, authority, start)
        report.revoked_from = standing.revoked_from
    except LedgerError as exc:
        report.problems.append(exc)
        return
    if first is None:
        if log.bodies:  # a body needs a detached record of the range, and there is none
            report.problems.append(MalformedRecord(
                f"bundle: detached body for seq {next(iter(log.bodies))}, which is not a detached record of the "
                "range",
                where=f"device {log.device_id.hex()}"))
        return
    listed = {rec.seq: rec.raw for _, _, rec in schedule}
    earlier = _Earlier(start, held, find)
    matched: set[int] = set()  # seqs of body entries whose detached record verified
    # Step 6.5's first failure ends the verified prefix before it, but step 6.4 accepts the whole range all the
    # same: its failure, if any, is reported after this one.
    cut: LedgerError | None = None
    state, batch, later = start, [first, *islice(it, BATCH - 1)], False
    while batch:
        result = accept(state, batch, held=earlier, revoked_from=standing.revoked_from)
        if cut is None:
            # Only the range's first record may repeat the head without counting: a later batch starts mid-range.
            report.duplicates += result.duplicates + (later and hashlib.sha256(batch[0]).digest() == state.head)
        for rec in result.records:
            if cut is None:
                try:
                    # Both ways: a key record missing from the key list, or a key-list entry (a rotation the
                    # hub accepted) whose seq holds another record in the range, a second history of the device.
                    if (rec.kind == "key" or rec.seq in listed) and listed.get(rec.seq) != rec.raw:
                        raise BrokenChain("the range's record is not the key list's entry for its seq",
                                          where=rec.where)
                    if rec.detached and rec.seq in log.bodies:
                        rec = rec.with_body(log.bodies[rec.seq])
                        matched.add(rec.seq)
                except LedgerError as exc:
                    cut = exc
            if cut is not None:
                earlier.accepted_only(rec)
                continue
            earlier.verified(rec)
            report.records += 1
            report.first_seq = rec.seq if report.first_seq is None else report.first_seq
            report.last_seq = rec.seq
            report.first_time = rec.time if report.first_time is None else min(report.first_time, rec.time)
            report.last_time = rec.time if report.last_time is None else max(report.last_time, rec.time)
        if result.problem is not None:
            report.problems += [p for p in (cut, result.problem) if p is not None]
            return
        earlier.accepted(result, at)
        at = records.at
        state, batch, later = result.state, list(islice(it, BATCH)), True
    if cut is not None:
        report.problems.append(cut)
        return
    # A body entry must belong to a detached record of the range: anything else is not what was exported.
    for seq in log.bodies:
        if seq not in matched:
            report.problems.append(MalformedRecord(
                f"bundle: detached body for seq {seq}, which is not a detached record of the range",
                where=f"device {log.device_id.hex()}"))
            break


def _range_start(log: LogExport, first_raw: bytes, schedule: list[tuple[int, bytes, Record]]) -> ChainState:
    """The state an exported range extends. A range from genesis starts empty; a later one (a time window)
    is taken at its word for its first record's prev link and boot, with the key the key list puts in force
    there: the range proves its own records, not the history before them."""
    first = decode_record(first_raw)
    if first.device_id != log.device_id:
        raise BrokenChain(f"record of device {first.device} inside the log of {log.device_id.hex()}",
                          where=first.where)
    if first.seq == 0:
        if first.raw != log.keys[0]:
            raise BrokenChain("genesis record differs from the genesis in the key list", where=first.where)
        return ChainState.empty(log.device_id)
    return ChainState(device_id=log.device_id, length=first.seq, head=first.prev,
                      key=_key_at(schedule, first.seq), boot=first.boot, time=first.time)


def _verify_hub_log(hub_log: list[bytes], hub_id: bytes, checkpoints: list[Checkpoint],
                    report: BundleReport) -> tuple[Authority, list[Record]]:
    """The hub's own log, complete up to the head the largest checkpoint names (FORMAT.md §12.3 step 5), and
    its verified prefix: accepted like an offered range, it ends before the first record that fails. A head
    that the checkpoints name and the log does not hold is a problem of the log, not of its records, so the
    prefix stands (step 8 checks its receipts)."""
    authority = Authority(hub_id=hub_id)
    result = accept(ChainState.empty(hub_id), hub_log)
    verified: list[Record] = []
    try:
        for rec in result.records:
            authority.apply(rec)
            verified.append(rec)
            report.hub_log += 1
            report.decisions += rec.kind == "authority"
    except LedgerError as exc:
        report.add(exc)
        return authority, verified
    if result.problem is not None:
        report.add(result.problem)
        return authority, verified
    ids = [r.id for r in verified]
    for cp in checkpoints:
        assert cp.authority is not None  # step 3 refuses checkpoints without it
        length, head = cp.authority
        if length > cp.tree_size:
            report.add(BrokenChain(f"checkpoint {cp.tree_size} names {length} records of the hub's log among its "
                                   f"{cp.tree_size} leaves", hint="the hub signed a false head of its own log"))
            return authority, verified
        if length > len(ids) or (ids[length - 1] if length else bytes(32)) != head:
            report.add(BrokenChain(f"the hub's log in the bundle ({len(ids)} records) does not hold the head "
                                   f"that checkpoint {cp.tree_size} names (seq {length - 1})",
                                   hint="a decision of the hub is missing or was replaced"))
            return authority, verified
    if checkpoints and checkpoints[-1].authority != authority.head:
        report.add(BrokenChain(f"the hub's log in the bundle ends at {len(ids)} records, but the largest "
                               f"checkpoint names {checkpoints[-1].authority[0]}",  # type: ignore[index]
                               hint="the bundle dropped the hub's latest decisions"))
    return authority, verified


class _Held:
    """Every record id a bundle holds, and of each verified record what its receipt is checked with (FORMAT.md
    §12.3 step 8): its leaf hash, device and seq. Packed in arrays, about 100 bytes a record, since receipts
    may come in any order and name records by id: a dict of ids would cost some 250 bytes a record.

    The ids sit in an open-addressing table indexed by Python's hash of the id, which is keyed anew in each
    process, so that a bundle cannot be made of ids that all land on one bucket."""

    VERIFIED, RECEIPT = 1, 2

    def __init__(self) -> None:
        self._table = array("q", [-1]) * 1024  # slot of each bucket, -1 for none
        self._ids = bytearray()  # 32 bytes a slot
        self.leaves = bytearray()  # 32 bytes a slot
        self.seqs = array("Q")
        self.devices = array("L")  # index into `device_ids`
        self.flags = bytearray()  # VERIFIED | RECEIPT
        self.order = array("L")  # verified slots in the order they verified
        self.device_ids: list[bytes] = []

    def _bucket(self, record_id: bytes) -> int:
        """The bucket that holds `record_id`, or the empty one where it would go."""
        table, ids, mask = self._table, self._ids, len(self._table) - 1
        i = hash(record_id) & mask
        while (slot := table[i]) >= 0 and ids[32 * slot:32 * slot + 32] != record_id:
            i = (i + 1) & mask
        return i

    def find(self, record_id: bytes) -> int | None:
        slot = self._table[self._bucket(record_id)]
        return slot if slot >= 0 else None

    def hold(self, record_id: bytes) -> int:
        i = self._bucket(record_id)
        if (slot := self._table[i]) >= 0:
            return slot
        slot = self._table[i] = len(self.flags)
        self._ids += record_id
        self.leaves += bytes(32)
        self.seqs.append(0)
        self.devices.append(0)
        self.flags.append(0)
        if 2 * len(self.flags) > len(self._table):  # at most half full, so that probes stay short
            self._table = array("q", [-1]) * (2 * len(self._table))
            for s in range(len(self.flags)):
                self._table[self._bucket(bytes(self._ids[32 * s:32 * s + 32]))] = s
        return slot

    def id_of(self, slot: int) -> bytes:
        return bytes(self._ids[32 * slot:32 * slot + 32])

    def verified(self, rec: Record) -> int:
        """Note `rec` verified; its slot."""
        slot = self.hold(rec.id)
        if self.flags[slot] & self.VERIFIED:
            return slot
        self.flags[slot] |= self.VERIFIED
        self.order.append(slot)
        self.leaves[32 * slot:32 * slot + 32] = leaf_hash(rec.raw)
        self.seqs[slot] = rec.seq
        if rec.device_id not in self.device_ids[-1:]:  # records come a log at a time
            self.device_ids.append(rec.device_id)
        self.devices[slot] = len(self.device_ids) - 1
        return slot

    def where(self, slot: int) -> tuple[str, str]:
        """The device (hex) of a verified record, and where it is, as `Record.where` says it."""
        device = self.device_ids[self.devices[slot]].hex()
        return device, f"device {device} seq {self.seqs[slot]}"


def _holding(records: Iterable[bytes], held: _Held) -> Iterator[bytes]:
    for raw in records:
        held.hold(hashlib.sha256(raw).digest())
        yield raw


class _Schema(_Reader):
    """The first reading of a bundle, for its schema and small fields: keeps the first key list given for each
    device (fork evidence is checked with it, FORMAT.md §12.3 step 7)."""

    def __init__(self) -> None:
        self.keys: dict[bytes, list[bytes]] = {}

    def log(self, log: LogExport, records: _Records) -> None:
        self.keys.setdefault(log.device_id, log.keys)


class _Check(_Reader):
    """The second reading of a bundle: each device log verified (step 6) and each receipt checked (step 8) as
    they come, the receipts' problems kept to be reported after the forks' (step 7)."""

    def __init__(self, read: Read, report: BundleReport, authority: Authority, hub_id: bytes,
                 key: bytes, by_header: dict[bytes, Checkpoint], held: _Held,
                 placed: Callable[[bytes, int], None] | None) -> None:
        self.read, self.report, self.authority, self.hub_id = read, report, authority, hub_id
        self.key, self.by_header, self.held, self.placed = key, by_header, held, placed
        self.later: list[tuple[LedgerError, str | None]] = []  # receipt problems, with the device (hex)
        self.later_more = 0  # receipt problems past the MAX_LISTED kept in `later`, counted only
        self.receipts: dict[str, int] = {}  # receipts checked, by device (hex)

    def log(self, log: LogExport, records: _Records) -> None:
        dev = DeviceReport(device=log.device_id.hex(), in_bundle=records.count)
        self.report.devices.append(dev)
        if log.device_id == self.hub_id:
            dev.problems.append(MalformedRecord("the hub's own log belongs in hub_log, not in logs"))
        else:
            verify_log(log, records, dev, self.authority, held=self.held, find=self._find)
        for _ in _holding(records, self.held):  # the rest of the range is held all the same: a receipt may name it
            pass
        self.report.ordered.extend(dev.problems)

    def _find(self, at: int, record_id: bytes) -> bytes | None:
        """The record with this id among the `BATCH` records from byte `at` of the bundle (where its batch
        began), or None if the bundle no longer holds it there."""
        src = _Input(self.read(at))
        try:
            for _ in range(BATCH):
                major, n = src.head()
                if major != 2:
                    return None
                raw = src.take(n)
                if hashlib.sha256(raw).digest() == record_id:
                    return raw
        except LedgerError:  # cut short: the file changed since it was read
            return None
        return None

    def receipt(self, record_id: bytes, receipt: bytes) -> None:
        """Each receipt names a record the bundle holds, once, and one that verified leads to the root of a
        checkpoint the bundle holds (FORMAT.md §12.3 step 8)."""
        held = self.held
        slot = held.find(record_id)
        if slot is None or held.flags[slot] & held.RECEIPT:
            self._later(MalformedRecord(f"receipt for record {record_id.hex()[:16]}... that the bundle does not "
                                        "hold, or a second receipt for it"), None)
            return
        held.flags[slot] |= held.RECEIPT
        if not held.flags[slot] & held.VERIFIED:
            return  # past a log's verified prefix: a consequence of the problem already reported
        device, where = held.where(slot)
        try:
            got = verify_receipt(receipt, bytes(held.leaves[32 * slot:32 * slot + 32]), self.key, hashed=True)
            # Any checkpoint of step 3 with the receipt's header: a hub may sign one size twice (other iat).
            cp = self.by_header.get(got.protected)
            if cp is None or cp.root != got.root:
                raise BadProof("receipt does not lead to the root of a checkpoint the bundle holds "
                               "(its header must be that checkpoint's)", where=where)
            self.report.receipts_checked += 1
            self.receipts[device] = self.receipts.get(device, 0) + 1
            if self.placed is not None:
                self.placed(record_id, got.index)
        except LedgerError as exc:
            self._later(exc, device)

    def _later(self, problem: LedgerError, device: str | None) -> None:
        """Keep a receipt's problem for step 8, or only count it past the MAX_LISTED that step lists."""
        if len(self.later) < MAX_LISTED:
            problem.__traceback__ = None
            self.later.append((problem, device))
        else:
            self.later_more += 1

    def finish(self) -> None:
        """Step 8's problems in their order, then every verified record without a receipt."""
        by_device = {d.device: d for d in self.report.devices}
        for device, n in self.receipts.items():
            if device in by_device:
                by_device[device].receipts += n
        for problem, of in self.later:
            self.report.add(problem, by_device.get(of) if of is not None else None, step="receipts")
        self.report.count_more("receipts", self.later_more)
        held = self.held
        for slot in held.order:
            if not held.flags[slot] & held.RECEIPT:
                device, where = held.where(slot)
                self.report.add(BadProof("record without a receipt: the bundle does not show it in the hub's log",
                                         where=where), by_device.get(device), step="receipts")


def verify_bundle(data: bytes, *, hub_key: bytes | None = None,
                  placed: Callable[[bytes, int], None] | None = None) -> BundleReport:
    """Verify everything a bundle holds, with nothing else, in the order of FORMAT.md §12.3. `hub_key` pins
    the hub if the auditor knows it. `placed(record id, leaf index)` is told where each receipt that verified
    puts its record in the hub's log."""
    _expect(len(data) <= MAX_BUNDLE_BYTES, f"larger than {MAX_BUNDLE_BYTES} bytes")
    return verify_bundle_from(lambda start: (memoryview(data)[start:],), hub_key=hub_key, placed=placed)


def verify_bundle_from(read: Read, *, hub_key: bytes | None = None,
                       placed: Callable[[bytes, int], None] | None = None) -> BundleReport:
    """`verify_bundle` of a bundle read in pieces: `read(start)` gives its bytes from byte `start`, each time it
    is called. What is held is the small fields, a batch of one log, and of each record its id (and of a
    verified one its leaf hash and seq), never the records, so memory does not follow the bundle's size.

    The bundle is read twice: for the schema, which holds whole before anything is verified (step 1), and
    for the logs and receipts, verified as they come against the hub's log, which deterministic key order
    puts after them. A range with another record at a seq accepted long before it (a fork) has the record
    accepted there read again, from where its batch began."""
    schema = _Schema()
    fields = _walk(read(0), schema)
    key = hub_key or fields.hub_key
    report = BundleReport(hub_key=key, pinned=hub_key is not None)
    hub_id = device_id_for(key)
    if hub_key is not None and hub_key != fields.hub_key:
        report.add(BadCheckpoint("bundle names another hub key than the one pinned"))
    checkpoints: list[Checkpoint] = []
    for raw in fields.checkpoints:
        try:
            cp = decode_checkpoint(raw)
            if cp.authority is None:
                raise MalformedRecord("bundle checkpoint lacks the head of the hub's log (label -65538)")
            cp.verify(key)
            checkpoints.append(cp)
        except LedgerError as exc:
            report.add(exc, step="checkpoints")
    checkpoints.sort(key=lambda c: (c.tree_size, c.time))
    report.checkpoints = checkpoints
    by_size: dict[int, Checkpoint] = {}
    for cp in checkpoints:
        other = by_size.setdefault(cp.tree_size, cp)
        if other.root != cp.root:
            report.add(BadCheckpoint(f"two checkpoints of size {cp.tree_size} with different roots: "
                                     "the hub forked its log"), step="checkpoints")
        elif other.authority != cp.authority:
            # One tree has one head of the hub's own log among its leaves: two heads for one size and root are a
            # false statement of the hub, and either could pass for the largest checkpoint in step 5.
            report.add(BadCheckpoint(f"two checkpoints of size {cp.tree_size} name different heads of the hub's "
                                     "own log: the hub signed a false statement"), step="checkpoints")
    linked: list[tuple[int, int]] = []  # the consistency entries that verified
    for first, second, proof in fields.consistency:
        older_cp, newer_cp = by_size.get(first), by_size.get(second)
        if older_cp is None or newer_cp is None:
            report.add(BadCheckpoint(f"consistency proof {first}->{second} names a checkpoint the bundle "
                                     "does not hold"), step="consistency")
            continue
        if first > second:  # FORMAT.md §9: a first size larger than the second is a failed proof
            report.add(BadProof(f"consistency proof {first}->{second}: the first size is larger than the second"),
                       step="consistency")
            continue
        try:
            verify_checkpoints_consistent(older_cp, newer_cp, proof, key)
            linked.append((first, second))
        except LedgerError as exc:
            report.add(exc, step="consistency")
    report.notes = checkpoint_notes(checkpoints, linked)
    authority, hub_records = _verify_hub_log(fields.hub_log, hub_id, checkpoints, report)
    held = _Held()
    for raw in fields.hub_log:
        held.hold(hashlib.sha256(raw).digest())
    for rec in hub_records:
        held.verified(rec)
    check = _Check(read, report, authority, hub_id, key, {cp.protected: cp for cp in checkpoints}, held, placed)
    again = _walk(read(0), check)
    _expect((again.unsealed, again.seal) == (fields.unsealed, fields.seal), "it changed while it was read")
    for raw in fields.forks:
        try:
            evidence = ForkEvidence.from_cbor(raw)
            key_for = None
            if evidence.seq > 0:
                keys = schema.keys.get(evidence.device_id)
                if keys is None:
                    raise UnknownKey("fork evidence past genesis for a device the bundle has no key list for")
                key_for = _key_at(_key_schedule(evidence.device_id, keys), evidence.seq)
            evidence.verify(key_for)
            if report.add(evidence.error(), step="forks"):  # the forks said are those listed
                report.forks.append(evidence)
        except LedgerError as exc:
            report.add(exc, step="forks")
    check.finish()
    try:
        check_seal(fields.seal, fields.unsealed, key)
    except LedgerError as exc:
        report.add(exc)
    return report


def compare_bundles(older: bytes, newer: bytes, *, hub_key: bytes | None = None) -> tuple[Checkpoint, Checkpoint]:
    """Prove that the log behind `newer` extends the log behind `older` (FORMAT.md §12.4); `newer` is assumed
    verified on its own already. The older bundle must verify too, with the same hub key: its first problem
    is raised."""
    for data in (older, newer):
        _expect(len(data) <= MAX_BUNDLE_BYTES, f"larger than {MAX_BUNDLE_BYTES} bytes")
    return compare_bundles_from(lambda start: (memoryview(older)[start:],),
                                lambda start: (memoryview(newer)[start:],), hub_key=hub_key)


def compare_bundles_from(older: Read, newer: Read, *,
                         hub_key: bytes | None = None) -> tuple[Checkpoint, Checkpoint]:
    """`compare_bundles` of two bundles read in pieces, as `verify_bundle_from` reads one."""
    compared = comparison_from(older, newer, hub_key=hub_key)
    return compared.old, compared.new


@dataclass(frozen=True, slots=True, kw_only=True)
class RevokedSince:
    """A device the newer bundle's hub log revokes from a seq at or below the last the older bundle verified
    (FORMAT.md §12.4, notes): records the older bundle vouched for that the hub no longer accepts. A note, not a
    problem: the comparison proves only that the log extends, and a revocation is a decision the log may add."""

    device: str
    revoked_from: int
    first: int  # the first and last seq the older bundle verified
    last: int

    @property
    def records(self) -> int:
        return self.last - max(self.revoked_from, self.first) + 1

    @property
    def message(self) -> str:
        return (f"device {self.device}: revoked from seq {self.revoked_from} since the older bundle, which verified "
                f"up to {self.last}: {self.records} records it vouched for are no longer accepted")

    def to_dict(self) -> dict[str, Any]:
        return {"note": "revoked", "device": self.device, "revoked_from": self.revoked_from,
                "verified_to": self.last, "records": self.records, "message": self.message}


@dataclass(frozen=True, slots=True, kw_only=True)
class Comparison:
    """What `comparison_from` proved: the largest checkpoints of the older and newer bundles, and the notes."""

    old: Checkpoint
    new: Checkpoint
    revoked: list[RevokedSince]


def comparison_from(older: Read, newer: Read, *, hub_key: bytes | None = None) -> Comparison:
    """`compare_bundles_from`, with the devices revoked since the older bundle below what it verified."""
    a, b = _walk(older(0), _Reader()), _walk(newer(0), _Reader())
    key = hub_key or b.hub_key
    if a.hub_key != key or b.hub_key != key:
        raise BadCheckpoint("the two bundles come from different hubs (or not the pinned one)")
    older_report = verify_bundle_from(older, hub_key=key)
    if older_report.ordered:
        raise older_report.ordered[0]
    old = max((decode_checkpoint(x) for x in a.checkpoints), key=lambda c: (c.tree_size, c.time))
    new = max((decode_checkpoint(x) for x in b.checkpoints), key=lambda c: (c.tree_size, c.time))
    if old.tree_size > new.tree_size:
        # The same code either way (§12.4 step 4); what it means depends on which bundle the hub made later.
        if b.created >= a.created:
            raise BadCheckpoint(f"the hub's log shrank since the older bundle: its log ({old.tree_size} records) "
                                f"is larger than the newer's ({new.tree_size}), which was created no earlier "
                                "(a rollback or rewrite of the hub's log)",
                                hint="keep both bundles as evidence and ask the hub's operator")
        raise BadCheckpoint(f"the older bundle's log ({old.tree_size} records) is larger than the newer's "
                            f"({new.tree_size})", hint="give the newer bundle first and the older with --against")
    if old.tree_size == new.tree_size:
        verify_checkpoints_consistent(old, new, [], key)
    else:
        proofs = [p for first, second, p in b.consistency if (first, second) == (old.tree_size, new.tree_size)]
        if not proofs:
            raise BadProof(f"newer bundle carries no consistency proof from size {old.tree_size} "
                           f"to {new.tree_size}", hint="export the newer bundle with proofs from earlier checkpoints")
        verify_checkpoints_consistent(old, new, proofs[0], key)
    if b.hub_log[:len(a.hub_log)] != a.hub_log:
        raise BrokenChain("the newer bundle's hub log does not extend the older's: a decision was dropped or "
                          "replaced")
    # The newer bundle verified, so its hub log does: its decisions give each device's revocation point now.
    hub_id = device_id_for(key)
    authority = Authority.of(hub_id, accept(ChainState.empty(hub_id), b.hub_log).records)
    revoked = []
    for dev in older_report.devices:
        standing = authority.devices.get(bytes.fromhex(dev.device))
        point = standing.revoked_from if standing is not None else None
        if point is not None and dev.first_seq is not None and dev.last_seq is not None and point <= dev.last_seq:
            revoked.append(RevokedSince(device=dev.device, revoked_from=point, first=dev.first_seq, last=dev.last_seq))
    return Comparison(old=old, new=new, revoked=revoked)


class BundleWriter:
    """An in-memory hub log that writes verifiable bundles, with ledger alone: the example bundles, the test
    vectors and tests use it. Records are leaves in the order given; the hub's decisions go in its own log,
    and a device's genesis is approved (a rotation accepted) when it arrives unless the caller decided first."""

    def __init__(self, signer: Signer, *, clock: Callable[[], int]) -> None:
        self.signer = signer
        self.own = AuthorityWriter(signer, clock=clock, records=[])
        self.tree = MerkleTree()
        self.leaves: list[Record] = []
        self.checkpoints: list[Checkpoint] = []
        self._add(self.own.genesis())

    def _add(self, record: Record) -> None:
        self.tree.append(record.raw)
        self.leaves.append(record)

    def decide(self, decision: Decision) -> Record:
        record = self.own.decide(decision)
        self._add(record)
        return record

    def accept(self, *records: Record, site: str = "site", role: str = "edge", decide: bool = True) -> None:
        """Append records as leaves; with `decide`, approve a new genesis and accept each rotation first."""
        for rec in records:
            standing = self.own.authority.devices.get(rec.device_id)
            new = standing is None or standing.key is None
            if decide and new and rec.seq == 0 and rec.kind == "key" and rec.body is not None:
                self.decide(Decision(action="approve", device_id=rec.device_id, from_seq=0,
                                     key=rec.body["pubkey"], site=site, role=role))
            self._add(rec)
            if decide and rec.kind == "key" and rec.seq > 0 and rec.body is not None:
                self.decide(Decision(action="rotate", device_id=rec.device_id, from_seq=rec.seq,
                                     key=rec.body["pubkey"]))

    def checkpoint(self, time: int) -> Checkpoint:
        cp = sign_checkpoint(self.signer, tree_size=len(self.tree), root=self.tree.root(), time=time,
                             authority=self.own.authority.head)
        self.checkpoints.append(cp)
        return cp

    def bundle(self, *, upto: int = -1, created: int, description: str = "",
               bodies: dict[bytes, dict[int, bytes]] | None = None) -> Bundle:
        """Everything the hub held at checkpoint `upto` (an index into its checkpoints), every record with a
        receipt under that checkpoint and a consistency proof from each earlier one."""
        cps = self.checkpoints[:len(self.checkpoints) + upto + 1 if upto < 0 else upto + 1]
        last = cps[-1]
        leaves = self.leaves[:last.tree_size]
        hub_id = self.own.authority.hub_id
        by_device: dict[bytes, list[Record]] = {}
        for rec in leaves:
            if rec.device_id != hub_id:
                by_device.setdefault(rec.device_id, []).append(rec)
        logs = []
        for device, recs in by_device.items():
            held = (bodies or {}).get(device, {})
            logs.append(LogExport(device_id=device, keys=[r.raw for r in recs if r.kind == "key"],
                                  records=[r.raw for r in recs],
                                  bodies={s: b for s, b in held.items() if s <= recs[-1].seq}))
        receipts = [(r.id, make_receipt(last, i, self.tree.inclusion_proof(i, last.tree_size)))
                    for i, r in enumerate(leaves)]
        consistency = [(c.tree_size, last.tree_size, self.tree.consistency_proof(c.tree_size, last.tree_size))
                       for c in cps[:-1]]
        return Bundle(hub_key=self.signer.public_key, hub_log=[r.raw for r in leaves if r.device_id == hub_id],
                      logs=logs, checkpoints=[c.raw for c in cps], receipts=receipts, consistency=consistency,
                      forks=[], created=created, description=description).sealed(self.signer)
