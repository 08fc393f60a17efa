"""Audit bundles: a self-contained export of keys, records, checkpoints and proofs, and its verifier."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from . import cbor
from .acceptance import accept
from .chain import ChainState, ForkEvidence, link
from .checkpoint import Checkpoint, decode_checkpoint, verify_checkpoints_consistent, verify_receipt
from .errors import BadCheckpoint, BrokenChain, LedgerError, MalformedRecord, UnknownKey
from .record import Record, decode_record, device_id_for

FORMAT = "jejak-bundle/1"
MAX_BUNDLE_BYTES = 1 << 30
# FORMAT.md §12: every field but `description` is required and no other may appear, so that a bit flip that
# renames a key (`revoked_from`, `hub_key`, ...) is MALFORMED instead of silently read as a default.
BUNDLE_FIELDS = frozenset({"format", "created", "description", "hub_key", "logs", "checkpoints", "receipts",
                           "consistency", "forks"})
LOG_FIELDS = frozenset({"device", "keys", "records", "bodies", "revoked_from"})


@dataclass(frozen=True, slots=True, kw_only=True)
class LogExport:
    """A contiguous range of one device's log, with every key record needed to know who signed it."""

    device_id: bytes
    keys: list[bytes]  # raw key records (genesis and rotations) up to the end of the range
    records: list[bytes]
    bodies: dict[int, bytes] = field(default_factory=dict)  # seq -> detached body bytes
    revoked_from: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Bundle:
    hub_key: bytes | None
    logs: list[LogExport]
    checkpoints: list[bytes]
    receipts: list[tuple[bytes, bytes]]  # (record id, COSE receipt)
    consistency: list[tuple[int, int, list[bytes]]]
    forks: list[bytes]
    created: int
    description: str = ""

    def encode(self) -> bytes:
        return cbor.encode({
            "format": FORMAT, "created": self.created, "description": self.description,
            "hub_key": self.hub_key,
            "logs": [{"device": log.device_id, "keys": log.keys, "records": log.records,
                      "bodies": [[s, b] for s, b in sorted(log.bodies.items())],
                      "revoked_from": log.revoked_from} for log in self.logs],
            "checkpoints": self.checkpoints,
            "receipts": [[rid, r] for rid, r in self.receipts],
            "consistency": [[a, b, p] for a, b, p in self.consistency],
            "forks": self.forks,
        })


def _expect(cond: bool, what: str) -> None:
    if not cond:
        raise MalformedRecord(f"bundle: {what}")


def _expect_fields(item: dict[Any, Any], fields: frozenset[str], *, optional: set[str], what: str) -> None:
    unknown = sorted(repr(k) for k in item if k not in fields)
    _expect(not unknown, f"{what} has unknown field(s) {', '.join(unknown)}")
    missing = sorted(fields - optional - set(item))
    _expect(not missing, f"{what} lacks field(s) {', '.join(missing)}")


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def _is_bytes_list(x: object) -> bool:
    return isinstance(x, list) and all(isinstance(b, bytes) for b in x)


def _is_pair(x: object, first: type, second: type) -> bool:
    return isinstance(x, list) and len(x) == 2 and isinstance(x[0], first) and isinstance(x[1], second)


def decode_bundle(data: bytes) -> Bundle:
    _expect(len(data) <= MAX_BUNDLE_BYTES, f"larger than {MAX_BUNDLE_BYTES} bytes")
    item = cbor.decode(data, what="bundle")
    _expect(isinstance(item, dict), "expected a map")
    _expect(item.get("format") == FORMAT, f"expected format {FORMAT!r}, got {item.get('format')!r}")
    # Every field is type-checked here, so that the verifier downstream only ever sees well-typed values.
    _expect_fields(item, BUNDLE_FIELDS, optional={"description"}, what="bundle")
    hub_key = item["hub_key"]
    _expect(hub_key is None or (isinstance(hub_key, bytes) and len(hub_key) == 32),
            "hub_key must be nil or a 32-byte Ed25519 public key")
    _expect(isinstance(item["logs"], list), "logs must be an array")
    logs = []
    for entry in item["logs"]:
        _expect(isinstance(entry, dict), "each log must be a map")
        _expect_fields(entry, LOG_FIELDS, optional=set(), what="log")
        device = entry.get("device")
        _expect(isinstance(device, bytes) and len(device) == 16, "log device must be a 16-byte id")
        _expect(_is_bytes_list(entry.get("keys")) and _is_bytes_list(entry.get("records")),
                "log keys and records must be arrays of byte strings")
        raw_bodies = entry["bodies"]
        _expect(isinstance(raw_bodies, list) and all(_is_pair(x, int, bytes) and _is_int(x[0])
                                                     for x in raw_bodies),
                "log bodies must be an array of [seq, bytes]")
        _expect(len({s for s, _ in raw_bodies}) == len(raw_bodies), "log bodies must name each seq once")
        revoked = entry["revoked_from"]
        _expect(revoked is None or _is_int(revoked), "revoked_from must be nil or a seq")
        logs.append(LogExport(device_id=device, keys=list(entry["keys"]), records=list(entry["records"]),
                              bodies={s: b for s, b in raw_bodies}, revoked_from=revoked))
    _expect(_is_bytes_list(item["checkpoints"]) and _is_bytes_list(item["forks"]),
            "checkpoints and forks must be arrays of byte strings")
    _expect(isinstance(item["receipts"], list) and all(_is_pair(x, bytes, bytes) for x in item["receipts"]),
            "receipts must be an array of [record id, receipt]")
    consistency = item["consistency"]
    _expect(isinstance(consistency, list) and all(
        isinstance(x, list) and len(x) == 3 and _is_int(x[0]) and _is_int(x[1]) and _is_bytes_list(x[2])
        for x in consistency), "consistency must be an array of [first, second, [hashes]]")
    _expect(_is_int(item["created"]), "created must be a non-negative integer")
    description = item.get("description", "")
    _expect(isinstance(description, str), "description must be text")
    return Bundle(hub_key=hub_key, logs=logs, checkpoints=list(item["checkpoints"]),
                  receipts=[(a, b) for a, b in item["receipts"]],
                  consistency=[(a, b, list(p)) for a, b, p in consistency],
                  forks=list(item["forks"]), created=item["created"], description=description)


@dataclass(slots=True, kw_only=True)
class DeviceReport:
    device: str
    first_seq: int | None = None
    last_seq: int | None = None
    records: int = 0
    receipts: int = 0
    duplicates: int = 0  # records repeated in the range (same id): skipped, not a problem
    problems: list[LedgerError] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"device": self.device, "first_seq": self.first_seq, "last_seq": self.last_seq,
                "records": self.records, "receipts": self.receipts, "ok": not self.problems,
                "problems": [p.to_dict() for p in self.problems]}


@dataclass(slots=True, kw_only=True)
class BundleReport:
    devices: list[DeviceReport] = field(default_factory=list)
    checkpoints: list[Checkpoint] = field(default_factory=list)
    receipts_checked: int = 0
    forks: list[ForkEvidence] = field(default_factory=list)
    problems: list[LedgerError] = field(default_factory=list)

    @property
    def all_problems(self) -> list[LedgerError]:
        # Device problems first: a bad record is the cause, its orphaned receipt only a consequence, and the
        # exit code must name the cause.
        return [p for d in self.devices for p in d.problems] + self.problems

    @property
    def ok(self) -> bool:
        return not self.all_problems

    @property
    def exit_code(self) -> int:
        problems = self.all_problems
        return problems[0].exit_code if problems else 0

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "devices": [d.to_json() for d in self.devices],
                "checkpoints": [c.to_json() for c in self.checkpoints],
                "receipts_checked": self.receipts_checked,
                "forks": [{"device": f.device_id.hex(), "seq": f.seq} for f in self.forks],
                "problems": [p.to_dict() for p in self.problems]}


def _key_schedule(device_id: bytes, keys: Sequence[bytes]) -> list[tuple[int, bytes]]:
    """[(first seq signed by key, key)], from the genesis and rotation records, each checked."""
    schedule: list[tuple[int, bytes]] = []
    state: ChainState | None = None
    for raw in keys:
        rec = decode_record(raw)
        if rec.kind != "key" or rec.device_id != device_id or rec.body is None:
            raise BrokenChain("key list holds a record that is not a key record of this device", where=rec.where)
        if rec.seq == 0:
            state = ChainState.empty(device_id)
        if state is None:
            raise UnknownKey("key list does not start with the genesis record", where=rec.where)
        if rec.seq != state.length:
            # Key records are sparse: check the signature with the current key but not the prev link.
            state = ChainState(device_id=device_id, length=rec.seq, head=rec.prev, key=state.key,
                               boot=state.boot, time=state.time)
        state, signing_key = link(state, rec)
        rec.verify_signature(signing_key)
        schedule.append((rec.seq + 1, rec.body["pubkey"]))
    if not schedule:
        raise UnknownKey(f"no key records for device {device_id.hex()}")
    return schedule


def _key_at(schedule: list[tuple[int, bytes]], seq: int) -> bytes:
    key = schedule[0][1]
    for start, k in schedule:
        if start <= seq:
            key = k
    return key


def verify_log(log: LogExport, report: DeviceReport) -> dict[bytes, Record]:
    """Verify one exported range by the acceptance path; record the problem that ends its verified prefix in
    `report`; return the records that verified, by id."""
    good: dict[bytes, Record] = {}
    try:
        genesis = decode_record(log.keys[0]) if log.keys else None
        if genesis is None or genesis.kind != "key" or genesis.body is None:
            raise UnknownKey(f"no usable genesis key for device {log.device_id.hex()}")
        if device_id_for(genesis.body["pubkey"]) != log.device_id:
            raise UnknownKey("genesis key does not derive the device id")
        schedule = _key_schedule(log.device_id, log.keys)
        start = _range_start(log, schedule)
    except LedgerError as exc:
        report.problems.append(exc)
        return good
    result = accept(start, log.records, revoked_from=log.revoked_from)
    report.duplicates = result.duplicates
    for rec in result.records:
        if rec.detached and rec.seq in log.bodies:
            try:
                rec = rec.with_body(log.bodies[rec.seq])
            except LedgerError as exc:
                report.problems.append(exc)
                return good
        good[rec.id] = rec
        report.records += 1
        report.first_seq = rec.seq if report.first_seq is None else report.first_seq
        report.last_seq = rec.seq
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


def _range_start(log: LogExport, schedule: list[tuple[int, bytes]]) -> ChainState:
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


def verify_bundle(data: bytes, *, hub_key: bytes | None = None) -> BundleReport:
    """Verify everything a bundle holds, with nothing else. `hub_key` pins the hub if the auditor knows it."""
    report = BundleReport()
    bundle = decode_bundle(data)
    key = hub_key or bundle.hub_key
    if hub_key is not None and bundle.hub_key is not None and hub_key != bundle.hub_key:
        report.problems.append(BadCheckpoint("bundle names another hub key than the one pinned"))
    verified: dict[bytes, Record] = {}
    for log in bundle.logs:
        dev = DeviceReport(device=log.device_id.hex())
        report.devices.append(dev)
        verified.update(verify_log(log, dev))
    by_device = {d.device: d for d in report.devices}
    for raw in bundle.forks:
        try:
            evidence = ForkEvidence.from_cbor(raw)
            key_for = None
            for log in bundle.logs:
                if log.device_id == evidence.device_id and evidence.seq > 0:
                    key_for = _key_at(_key_schedule(log.device_id, log.keys), evidence.seq)
            evidence.verify(key_for)
            report.forks.append(evidence)
        except LedgerError as exc:
            report.problems.append(exc)
    checkpoints: list[Checkpoint] = []
    for raw in bundle.checkpoints:
        try:
            cp = decode_checkpoint(raw)
            if key is None:
                raise UnknownKey("bundle has checkpoints but no hub key to check them with")
            cp.verify(key)
            checkpoints.append(cp)
        except LedgerError as exc:
            report.problems.append(exc)
    checkpoints.sort(key=lambda c: (c.tree_size, c.time))
    report.checkpoints = checkpoints
    by_size = {c.tree_size: c for c in checkpoints}
    for a, b in itertools.pairwise(checkpoints):
        if a.tree_size == b.tree_size and a.root != b.root:
            report.problems.append(BadCheckpoint(
                f"two checkpoints of size {a.tree_size} with different roots: the hub forked its log"))
    for first, second, proof in bundle.consistency:
        older_cp, newer_cp = by_size.get(first), by_size.get(second)
        if older_cp is None or newer_cp is None or key is None:
            report.problems.append(BadCheckpoint(f"consistency proof {first}->{second} names a missing checkpoint"))
            continue
        try:
            verify_checkpoints_consistent(older_cp, newer_cp, proof, key)
        except LedgerError as exc:
            report.problems.append(exc)
    for record_id, receipt in bundle.receipts:
        rec = verified.get(record_id)
        if rec is None:
            report.problems.append(MalformedRecord(f"receipt for record {record_id.hex()[:16]}... "
                                                   "that the bundle does not hold or that did not verify"))
            continue
        try:
            if key is None:
                raise UnknownKey("receipts need the hub key")
            got = verify_receipt(receipt, rec.raw, key)
            same_size = by_size.get(got.tree_size)
            if same_size is not None and same_size.root != got.root:
                raise BadCheckpoint("receipt root differs from the checkpoint of the same size")
            report.receipts_checked += 1
            by_device[rec.device].receipts += 1
        except LedgerError as exc:
            by_device[rec.device].problems.append(exc)
    return report


def compare_bundles(older: bytes, newer: bytes, *, hub_key: bytes | None = None) -> tuple[Checkpoint, Checkpoint]:
    """Prove that the log behind `newer` extends the log behind `older` (no history rewritten between them)."""
    a, b = decode_bundle(older), decode_bundle(newer)
    key = hub_key or b.hub_key or a.hub_key
    if key is None:
        raise UnknownKey("comparing bundles needs the hub key")
    if a.hub_key and b.hub_key and a.hub_key != b.hub_key:
        raise BadCheckpoint("the two bundles come from different hubs")
    cps_a = sorted((decode_checkpoint(x) for x in a.checkpoints), key=lambda c: c.tree_size)
    cps_b = sorted((decode_checkpoint(x) for x in b.checkpoints), key=lambda c: c.tree_size)
    if not cps_a or not cps_b:
        raise BadCheckpoint("both bundles need at least one checkpoint")
    old, new = cps_a[-1], cps_b[-1]
    if old.tree_size == new.tree_size:
        verify_checkpoints_consistent(old, new, [], key)
        return old, new
    for first, second, proof in b.consistency:
        if first == old.tree_size and second == new.tree_size:
            verify_checkpoints_consistent(old, new, proof, key)
            return old, new
    raise BadCheckpoint(f"newer bundle carries no consistency proof from size {old.tree_size} "
                        f"to {new.tree_size}", hint="export the newer bundle with proofs from earlier checkpoints")
