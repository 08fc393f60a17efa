"""Audit bundles: a self-contained export of keys, records, checkpoints and proofs, and its verifier."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from . import cbor
from .acceptance import accept
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
from .merkle import MerkleTree
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
        signature = signer.sign(_seal_signed(cbor.encode(self._map())))
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
        signature = signer.sign(sig_structure(_SEAL_PROTECTED, self._hash.digest(), SEAL_AAD))
        sealed = cbor.encode(cbor.encode([_SEAL_PROTECTED, {}, None, signature], tag=TAG_SIGN1))
        assert len(sealed) == SEAL_BYTES
        return sealed


SEAL_KEY = cbor.encode("seal")
# The seal field is a byte string holding the COSE_Sign1, of one size whatever the signature.
SEAL_BYTES = len(cbor.encode(cbor.encode([_SEAL_PROTECTED, {}, None, bytes(64)], tag=TAG_SIGN1)))


def _seal_signed(unsealed: bytes) -> bytes:
    """Sig_structure over the SHA-256 of the bundle's encoding without its seal entry (a detached payload)."""
    return sig_structure(_SEAL_PROTECTED, hashlib.sha256(unsealed).digest(), SEAL_AAD)


def check_seal(bundle: Bundle, hub_key: bytes) -> None:
    """The seal is exactly 18([h'a10127', {}, nil, signature]) (else MALFORMED) and its signature verifies
    over the rest of the bundle (else INVALID_SIGNATURE)."""
    msg = parse_sign1(bundle.seal, what="bundle seal")
    if msg.protected != _SEAL_PROTECTED or msg.unprotected or msg.payload is not None:
        raise MalformedRecord("bundle seal: expected 18([h'a10127', {}, nil, signature])")
    verify_signature(hub_key, msg.signature, _seal_signed(cbor.encode(bundle._map())),
                     where="bundle seal: the bundle is not what the hub exported")


def _expect(cond: bool, what: str) -> None:
    if not cond:
        raise MalformedRecord(f"bundle: {what}")


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


def decode_bundle(data: bytes) -> Bundle:
    """The bundle's map, every field present and of exactly its type (FORMAT.md §12.1), or MALFORMED."""
    _expect(len(data) <= MAX_BUNDLE_BYTES, f"larger than {MAX_BUNDLE_BYTES} bytes")
    item = cbor.decode(data, what="bundle")
    _expect(isinstance(item, dict), "expected a map")
    _expect(item.get("format") == FORMAT, f"expected format {FORMAT!r}, got {item.get('format')!r}")
    # Every field is type-checked here, so that the verifier downstream only ever sees well-typed values.
    _expect_fields(item, BUNDLE_FIELDS, optional={"description"}, what="bundle")
    hub_key = item["hub_key"]
    _expect(isinstance(hub_key, bytes) and len(hub_key) == 32, "hub_key must be a 32-byte Ed25519 public key")
    _expect(_is_bytes_list(item["hub_log"]) and bool(item["hub_log"]),
            "hub_log must be a non-empty array of records")
    _expect(isinstance(item["logs"], list), "logs must be an array")
    logs = []
    for entry in item["logs"]:
        _expect(isinstance(entry, dict), "each log must be a map")
        _expect_fields(entry, LOG_FIELDS, optional=set(), what="log")
        device = entry["device"]
        _expect(isinstance(device, bytes) and len(device) == 16, "log device must be a 16-byte id")
        _expect(_is_bytes_list(entry["keys"]) and _is_bytes_list(entry["records"]),
                "log keys and records must be arrays of byte strings")
        raw_bodies = entry["bodies"]
        _expect(isinstance(raw_bodies, list) and all(_is_pair(x, int, bytes) and _is_int(x[0])
                                                     for x in raw_bodies),
                "log bodies must be an array of [seq, bytes]")
        _expect(len({s for s, _ in raw_bodies}) == len(raw_bodies), "log bodies must name each seq once")
        logs.append(LogExport(device_id=device, keys=list(entry["keys"]), records=list(entry["records"]),
                              bodies={s: b for s, b in raw_bodies}))
    _expect(_is_bytes_list(item["checkpoints"]) and bool(item["checkpoints"]),
            "checkpoints must be a non-empty array of byte strings")
    _expect(_is_bytes_list(item["forks"]), "forks must be an array of byte strings")
    _expect(isinstance(item["receipts"], list) and all(_is_pair(x, bytes, bytes) and len(x[0]) == 32
                                                       for x in item["receipts"]),
            "receipts must be an array of [32-byte record id, receipt]")
    consistency = item["consistency"]
    _expect(isinstance(consistency, list) and all(
        isinstance(x, list) and len(x) == 3 and _is_int(x[0]) and _is_int(x[1]) and _is_bytes_list(x[2])
        for x in consistency), "consistency must be an array of [first, second, [hashes]]")
    _expect(_is_int(item["created"]), "created must be a non-negative integer")
    description = item.get("description", "")
    _expect(isinstance(description, str), "description must be text")
    _expect(isinstance(item["seal"], bytes), "seal must be a byte string")
    return Bundle(hub_key=hub_key, hub_log=list(item["hub_log"]), logs=logs,
                  checkpoints=list(item["checkpoints"]), receipts=[(a, b) for a, b in item["receipts"]],
                  consistency=[(a, b, list(p)) for a, b, p in consistency],
                  forks=list(item["forks"]), created=item["created"], seal=item["seal"], description=description,
                  has_description="description" in item)


@dataclass(slots=True, kw_only=True)
class DeviceReport:
    device: str
    first_seq: int | None = None
    last_seq: int | None = None
    # The span of the verified records' device times (a device's clock may run backwards across boots).
    first_time: int | None = None
    last_time: int | None = None
    records: int = 0
    receipts: int = 0
    duplicates: int = 0  # records repeated in the range (same id): skipped, not a problem
    revoked_from: int | None = None  # as the hub's verified log says
    problems: list[LedgerError] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"device": self.device, "first_seq": self.first_seq, "last_seq": self.last_seq,
                "first_time": self.first_time, "last_time": self.last_time, "records": self.records, "receipts": self.receipts, "revoked_from": self.revoked_from,
                "ok": not self.problems, "problems": [p.to_dict() for p in self.problems]}


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
    problems: list[LedgerError] = field(default_factory=list)  # those not about one device
    # Every problem in the order of the checks (FORMAT.md §12.3): the first one is the verdict.
    ordered: list[LedgerError] = field(default_factory=list)

    def add(self, problem: LedgerError, device: DeviceReport | None = None) -> None:
        (device.problems if device is not None else self.problems).append(problem)
        self.ordered.append(problem)

    @property
    def all_problems(self) -> list[LedgerError]:
        return list(self.ordered)

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
                "problems": [p.to_dict() for p in self.problems]}


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


def verify_log(log: LogExport, report: DeviceReport, authority: Authority) -> dict[bytes, Record]:
    """Verify one exported range by the acceptance path, with the revocation point the hub's verified log
    gives; record the problem that ends its verified prefix in `report`; return the verified records by id."""
    good: dict[bytes, Record] = {}
    try:
        schedule = _key_schedule(log.device_id, log.keys)
        if not log.records:
            return good
        start = _range_start(log, schedule)
        standing = _check_standing(log.device_id, schedule, authority, start)
        report.revoked_from = standing.revoked_from
    except LedgerError as exc:
        report.problems.append(exc)
        return good
    result = accept(start, log.records, revoked_from=standing.revoked_from)
    report.duplicates = result.duplicates
    listed = {rec.seq: rec.raw for _, _, rec in schedule}
    for rec in result.records:
        try:
            if rec.kind == "key" and listed.get(rec.seq) != rec.raw:
                raise BrokenChain("key record of the range is not the key list's entry for its seq",
                                  where=rec.where)
            if rec.detached and rec.seq in log.bodies:
                rec = rec.with_body(log.bodies[rec.seq])
        except LedgerError as exc:
            report.problems.append(exc)
            return good
        good[rec.id] = rec
        report.records += 1
        report.first_seq = rec.seq if report.first_seq is None else report.first_seq
        report.last_seq = rec.seq
        report.first_time = rec.time if report.first_time is None else min(report.first_time, rec.time)
        report.last_time = rec.time if report.last_time is None else max(report.last_time, rec.time)
    if result.problem is not None:
        report.problems.append(result.problem)
        return good
    # A body entry must belong to a detached record of the range: anything else is not what was exported.
    detached = {rec.seq for rec in result.records if rec.detached}
    for seq in log.bodies:
        if seq not in detached:
            report.problems.append(MalformedRecord(
                f"bundle: detached body for seq {seq}, which is not a detached record of the range",
                where=f"device {log.device_id.hex()}"))
            break
    return good


def _range_start(log: LogExport, schedule: list[tuple[int, bytes, Record]]) -> ChainState:
    """The state an exported range extends. A range from genesis starts empty; a later one (a time window)
    is taken at its word for its first record's prev link and boot, with the key the key list puts in force
    there: the range proves its own records, not the history before them."""
    if not log.records:
        return ChainState.empty(log.device_id)
    first = decode_record(log.records[0])
    if first.device_id != log.device_id:
        raise BrokenChain(f"record of device {first.device} inside the log of {log.device_id.hex()}",
                          where=first.where)
    if first.seq == 0:
        if first.raw != log.keys[0]:
            raise BrokenChain("genesis record differs from the genesis in the key list", where=first.where)
        return ChainState.empty(log.device_id)
    return ChainState(device_id=log.device_id, length=first.seq, head=first.prev,
                      key=_key_at(schedule, first.seq), boot=first.boot, time=first.time)


def _verify_hub_log(bundle: Bundle, hub_id: bytes, checkpoints: list[Checkpoint],
                    report: BundleReport) -> tuple[Authority, dict[bytes, Record]]:
    """The hub's own log, complete up to the head the largest checkpoint names (FORMAT.md §12.3 step 5)."""
    authority = Authority(hub_id=hub_id)
    result = accept(ChainState.empty(hub_id), bundle.hub_log)
    try:
        for rec in result.records:
            authority.apply(rec)
            report.hub_log += 1
            report.decisions += rec.kind == "authority"
    except LedgerError as exc:
        report.add(exc)
        return authority, {}
    if result.problem is not None:
        report.add(result.problem)
        return authority, {r.id: r for r in authority.records}
    ids = [r.id for r in authority.records]
    for cp in checkpoints:
        assert cp.authority is not None  # step 3 refuses checkpoints without it
        length, head = cp.authority
        if length > len(ids) or (ids[length - 1] if length else bytes(32)) != head:
            report.add(BrokenChain(f"the hub's log in the bundle ({len(ids)} records) does not hold the head "
                                   f"that checkpoint {cp.tree_size} names (seq {length - 1})",
                                   hint="a decision of the hub is missing or was replaced"))
            return authority, {}
    if checkpoints and checkpoints[-1].authority != authority.head:
        report.add(BrokenChain(f"the hub's log in the bundle ends at {len(ids)} records, but the largest "
                               f"checkpoint names {checkpoints[-1].authority[0]}",  # type: ignore[index]
                               hint="the bundle dropped the hub's latest decisions"))
        return authority, {}
    return authority, {r.id: r for r in authority.records}


def verify_bundle(data: bytes, *, hub_key: bytes | None = None) -> BundleReport:
    """Verify everything a bundle holds, with nothing else, in the order of FORMAT.md §12.3. `hub_key` pins
    the hub if the auditor knows it."""
    bundle = decode_bundle(data)
    key = hub_key or bundle.hub_key
    report = BundleReport(hub_key=key, pinned=hub_key is not None)
    hub_id = device_id_for(key)
    if hub_key is not None and hub_key != bundle.hub_key:
        report.add(BadCheckpoint("bundle names another hub key than the one pinned"))
    checkpoints: list[Checkpoint] = []
    for raw in bundle.checkpoints:
        try:
            cp = decode_checkpoint(raw)
            if cp.authority is None:
                raise MalformedRecord("bundle checkpoint lacks the head of the hub's log (label -65538)")
            cp.verify(key)
            checkpoints.append(cp)
        except LedgerError as exc:
            report.add(exc)
    checkpoints.sort(key=lambda c: (c.tree_size, c.time))
    report.checkpoints = checkpoints
    by_size: dict[int, Checkpoint] = {}
    for cp in checkpoints:
        other = by_size.setdefault(cp.tree_size, cp)
        if other.root != cp.root:
            report.add(BadCheckpoint(f"two checkpoints of size {cp.tree_size} with different roots: "
                                     "the hub forked its log"))
    for first, second, proof in bundle.consistency:
        older_cp, newer_cp = by_size.get(first), by_size.get(second)
        if older_cp is None or newer_cp is None:
            report.add(BadCheckpoint(f"consistency proof {first}->{second} names a checkpoint the bundle "
                                     "does not hold"))
            continue
        if first > second:  # FORMAT.md §9: a first size larger than the second is a failed proof
            report.add(BadProof(f"consistency proof {first}->{second}: the first size is larger than the second"))
            continue
        try:
            verify_checkpoints_consistent(older_cp, newer_cp, proof, key)
        except LedgerError as exc:
            report.add(exc)
    authority, verified = _verify_hub_log(bundle, hub_id, checkpoints, report)
    held: set[bytes] = {hashlib.sha256(raw).digest() for raw in bundle.hub_log}
    for log in bundle.logs:
        dev = DeviceReport(device=log.device_id.hex())
        report.devices.append(dev)
        held.update(hashlib.sha256(raw).digest() for raw in log.records)
        if log.device_id == hub_id:
            dev.problems.append(MalformedRecord("the hub's own log belongs in hub_log, not in logs"))
        else:
            verified.update(verify_log(log, dev, authority))
        report.ordered.extend(dev.problems)
    for raw in bundle.forks:
        try:
            evidence = ForkEvidence.from_cbor(raw)
            key_for = None
            if evidence.seq > 0:
                logs = [x for x in bundle.logs if x.device_id == evidence.device_id]
                if not logs:
                    raise UnknownKey("fork evidence past genesis for a device the bundle has no key list for")
                key_for = _key_at(_key_schedule(logs[0].device_id, logs[0].keys), evidence.seq)
            evidence.verify(key_for)
            report.forks.append(evidence)
            report.add(evidence.error())
        except LedgerError as exc:
            report.add(exc)
    _check_receipts(bundle, key, by_size, verified, held, report)
    try:
        check_seal(bundle, key)
    except LedgerError as exc:
        report.add(exc)
    return report


def _check_receipts(bundle: Bundle, key: bytes, by_size: dict[int, Checkpoint], verified: dict[bytes, Record],
                    held: set[bytes], report: BundleReport) -> None:
    """Each receipt names a record the bundle holds, once; each verified record has one, and it leads to the
    root of a checkpoint the bundle holds (FORMAT.md §12.3 step 8)."""
    by_device = {d.device: d for d in report.devices}
    seen: set[bytes] = set()
    for record_id, receipt in bundle.receipts:
        if record_id not in held or record_id in seen:
            report.add(MalformedRecord(f"receipt for record {record_id.hex()[:16]}... that the bundle does not "
                                       "hold, or a second receipt for it"))
            continue
        seen.add(record_id)
        rec = verified.get(record_id)
        if rec is None:
            continue  # past a log's verified prefix: a consequence of the problem already reported
        dev = by_device.get(rec.device)
        try:
            got = verify_receipt(receipt, rec.raw, key)
            cp = by_size.get(got.tree_size)
            if cp is None or cp.protected != got.protected or cp.root != got.root:
                raise BadProof("receipt does not lead to the root of a checkpoint the bundle holds "
                               "(its header must be that checkpoint's)", where=rec.where)
            report.receipts_checked += 1
            if dev is not None:
                dev.receipts += 1
        except LedgerError as exc:
            report.add(exc, dev)
    for record_id, rec in verified.items():
        if record_id not in seen:
            report.add(BadProof("record without a receipt: the bundle does not show it in the hub's log",
                                where=rec.where), by_device.get(rec.device))


def compare_bundles(older: bytes, newer: bytes, *, hub_key: bytes | None = None) -> tuple[Checkpoint, Checkpoint]:
    """Prove that the log behind `newer` extends the log behind `older` (FORMAT.md §12.4); `newer` is assumed
    verified on its own already. The older bundle must verify too, with the same hub key: its first problem
    is raised."""
    a, b = decode_bundle(older), decode_bundle(newer)
    key = hub_key or b.hub_key
    if a.hub_key != key or b.hub_key != key:
        raise BadCheckpoint("the two bundles come from different hubs (or not the pinned one)")
    older_report = verify_bundle(older, hub_key=key)
    if older_report.ordered:
        raise older_report.ordered[0]
    old = max((decode_checkpoint(x) for x in a.checkpoints), key=lambda c: (c.tree_size, c.time))
    new = max((decode_checkpoint(x) for x in b.checkpoints), key=lambda c: (c.tree_size, c.time))
    if old.tree_size > new.tree_size:
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
    return old, new


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
