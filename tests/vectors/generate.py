"""Deterministic generator of the Jejak test vectors: fixed seeds, fixed times, byte-identical on every run.

Run `python -m tests.vectors.generate` from the repository root to (re)write the files beside this script.
A test regenerates everything in memory and compares byte for byte with the files on disk, so a change in
the format shows up as a diff in the vectors, never silently. Files once published are never rewritten:
new behaviour gets new files.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cbor2

from ledger import (
    Bundle,
    ChainBuilder,
    ChainState,
    Ed25519Signer,
    ForkEvidence,
    LogExport,
    MerkleTree,
    Record,
    device_id_for,
    encode_record,
    leaf_hash,
    link,
    make_receipt,
    sign_checkpoint,
)
from ledger import cbor as jcbor
from ledger.cose import sig_structure
from ledger.enroll import (
    ENROLL_AAD,
    GRANT_AAD,
    REVOCATIONS_AAD,
    make_enroll_request,
    make_grant,
    make_revocations,
)
from ledger.record import RECORD_AAD

HERE = Path(__file__).resolve().parent
T0 = 1_763_856_000  # 2025-11-23T00:00:00Z: every vector's device clock starts here
PROTECTED = bytes.fromhex("a10127")  # {1: -8}, alg EdDSA


def seed(name: str) -> bytes:
    """A fixed Ed25519 seed per named test key (never use these keys for anything real)."""
    return hashlib.sha256(b"jejak/test-vector-seed/" + name.encode()).digest()


def signer(name: str) -> Ed25519Signer:
    return Ed25519Signer.from_seed(seed(name))


def clock(start: int = T0, step: int = 37) -> Callable[[], int]:
    return itertools.count(start, step).__next__


def _record_json(rec: Record) -> dict[str, Any]:
    out = rec.to_json()
    out["cose"] = rec.raw.hex()
    out["payload"] = rec.payload.hex()
    out["sig_structure"] = rec.signed_bytes.hex()
    out["signature"] = rec.signature.hex()
    if rec.body_ref is not None:
        out["body_ref"] = [rec.body_ref[0].hex(), rec.body_ref[1]]
    return out


def _dump(obj: Any) -> bytes:
    return (json.dumps(obj, indent=1, sort_keys=True, ensure_ascii=False) + "\n").encode()


# --- hand-built records, for vectors a conforming encoder would never produce -------------------------


def envelope(kid: bytes, payload: bytes, signature: bytes, *, protected: bytes = PROTECTED) -> bytes:
    """The canonical COSE_Sign1 envelope of a record around arbitrary payload bytes."""
    return cbor2.dumps(cbor2.CBORTag(18, [protected, {4: kid}, payload, signature]))


def signed_envelope(key: Ed25519Signer, kid: bytes, payload: bytes, *, protected: bytes = PROTECTED) -> bytes:
    """Sign whatever `payload` is (valid or not) so that only the defect under test is wrong."""
    return envelope(kid, payload, key.sign(sig_structure(protected, payload, RECORD_AAD)), protected=protected)


def payload_parts(rec: Record) -> list[bytes]:
    """The eight encoded items of a record's payload, so that one can be swapped for a bad encoding."""
    return [jcbor.encode(x) for x in
            (rec.version, rec.device_id, rec.seq, rec.prev, rec.time, rec.boot, _kind_code(rec.kind), rec.body)]


def _kind_code(name: str) -> int:
    from ledger.bodies import KINDS
    return KINDS[name]


def join_payload(parts: list[bytes], head: bytes = b"\x88") -> bytes:
    return head + b"".join(parts)


# --- the fixtures every vector is cut from --------------------------------------------------------------


class World:
    """The keys, chains and hub log the vectors are made of."""

    def __init__(self) -> None:
        self.kitchen = signer("kitchen-exit-1")
        self.kitchen_next = signer("kitchen-exit-1/rotated")
        self.stall = signer("market-stall-1")
        self.hub = signer("hub-jawa-barat")
        self.stranger = signer("nobody-enrolled")

        b = ChainBuilder(self.kitchen, clock=clock(), boot=1)
        self.basic = [
            b.genesis(),
            b.append("scan", {"event": "departed", "site": "sppg-bdg-01", "checkpoint": "kitchen_exit",
                              "tags": ["04a1b2c3d4e5f6", "04a1b2c3d4e5f7"], "school": "sdn-cibeunying-2",
                              "count": 240}),
            b.append("reading", {"site": "sppg-bdg-01", "sensor": "probe-1", "temp_cc": 6450, "rh_cp": 7120}),
            b.append("stock", {"site": "sppg-bdg-01", "item": "beras", "movement": "use", "qty": 42000,
                               "unit": "g"}),
            b.append("note", {"site": "sppg-bdg-01", "text": "truk B 4721 XY berangkat terlambat"}),
        ]
        self.basic_builder = b

        r = ChainBuilder(self.stall, clock=clock(T0 + 5, 61), boot=3)
        self.rot_old = self.stall
        self.rot_new = signer("market-stall-1/rotated")
        self.rotation = [
            r.genesis(),
            r.append("price", {"market": "pasar-kosambi", "commodity": "cabai-rawit", "unit": "kg",
                               "price_idr": 62000}),
            r.rotate(self.rot_new),
            r.append("price", {"market": "pasar-kosambi", "commodity": "beras", "grade": "medium", "unit": "kg",
                               "price_idr": 13500}),
            r.append("reading", {"site": "pasar-kosambi", "crowd": 118, "temp_cc": 3120}),
        ]

        d = ChainBuilder(signer("school-gate-1"), clock=clock(T0 + 900, 11), boot=7)
        self.detached_body = {"event": "received", "site": "sdn-cibeunying-2", "checkpoint": "school_gate",
                              "staff": "04deadbeef0001", "count": 238}
        self.detached = [
            d.genesis(),
            d.append("scan", self.detached_body, detach=True),
            d.append("scan", {"event": "served", "site": "sdn-cibeunying-2", "count": 236}),
        ]
        self.gate = d


def valid_files(w: World) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    keys = {
        name: {"seed": s.seed().hex(), "public_key": s.public_key.hex(),
               "device_id": hashlib.sha256(b"jejak/device-id/v1" + s.public_key).digest()[:16].hex()}
        for name, s in (("kitchen", w.kitchen), ("stall", w.stall), ("stall_rotated", w.rot_new),
                        ("school_gate", signer("school-gate-1")), ("hub", w.hub), ("stranger", w.stranger))
    }
    files["keys.json"] = _dump({"description": "Test keys: Ed25519 seeds (RFC 8032 private keys), public keys "
                                               "and derived device ids. Never use them for anything real.",
                                "keys": keys})
    for rec in w.basic:
        files[f"valid/record-{rec.seq}-{rec.kind}.cbor"] = rec.raw
    files["valid/records.json"] = _dump({
        "description": "Single records of device 'kitchen' (chain-basic), each also as raw .cbor. "
                       "decode_record must accept each and its signature must verify with public_key.",
        "public_key": w.kitchen.public_key.hex(),
        "records": [dict(_record_json(r), file=f"record-{r.seq}-{r.kind}.cbor") for r in w.basic],
    })

    def chain_file(desc: str, recs: list[Record], key: bytes, extra: dict[str, Any] | None = None) -> bytes:
        last = recs[-1]
        out = {"description": desc, "records": [_record_json(r) for r in recs],
               "expect": {"device_id": last.device_id.hex(), "length": last.seq + 1, "head": last.id.hex(),
                          "key": key.hex(), "boot": last.boot, "time": last.time}}
        out.update(extra or {})
        return _dump(out)

    files["valid/chain-basic.json"] = chain_file(
        "A kitchen exit device's log: genesis, scan, reading, stock, note. verify_chain accepts it and ends "
        "in the state under 'expect'.", w.basic, w.kitchen.public_key)
    files["valid/chain-rotation.json"] = chain_file(
        "A market stall's log with a key rotation at seq 2: the rotation record is signed by the old key, "
        "every later record by the new key named in its body.", w.rotation, w.rot_new.public_key,
        {"old_public_key": w.rot_old.public_key.hex(), "new_public_key": w.rot_new.public_key.hex()})
    body_bytes = jcbor.encode(w.detached_body)
    files["valid/chain-detached.json"] = chain_file(
        "A school gate log whose seq 1 carries its body by digest: the payload holds [sha256(body), length]; "
        "the body travels beside it (personal data that may be erased). The chain verifies with or without "
        "the body; with it, the body must hash to the signed digest.", w.detached, signer("school-gate-1").public_key,
        {"detached_bodies": {"1": body_bytes.hex()}})

    # The hub log: every record of the three chains, in a fixed interleaving.
    leaves = [r.raw for r in itertools.chain(w.basic, w.rotation, w.detached)]
    tree = MerkleTree(leaf_hash(x) for x in leaves)
    cp_small = sign_checkpoint(w.hub, tree_size=5, root=tree.root(5), time=T0 + 3600)
    cp_big = sign_checkpoint(w.hub, tree_size=len(leaves), root=tree.root(), time=T0 + 7200)
    receipts = [{"leaf_index": i, "record": leaves[i].hex(), "receipt": make_receipt(
        cp_big, i, tree.inclusion_proof(i)).hex()} for i in range(len(leaves))]
    files["valid/checkpoints.json"] = _dump({
        "description": "A hub log over the records of the three valid chains (leaf = record COSE bytes). "
                       "Two checkpoints signed by the hub key, a consistency proof between them, and a COSE "
                       "Receipt for every leaf under the larger checkpoint.",
        "hub_public_key": w.hub.public_key.hex(),
        "hub_id": cp_big.hub_id.hex(),
        "leaves": [x.hex() for x in leaves],
        "checkpoints": [dict(c.to_json(), protected=c.protected.hex()) for c in (cp_small, cp_big)],
        "consistency": {"first": 5, "second": len(leaves),
                        "proof": [p.hex() for p in tree.consistency_proof(5)]},
        "receipts": receipts,
    })
    files["valid/checkpoint-5.cbor"] = cp_small.raw
    files[f"valid/checkpoint-{len(leaves)}.cbor"] = cp_big.raw
    files["valid/receipt-0.cbor"] = bytes.fromhex(receipts[0]["receipt"])
    files.update(enrollment_files(w))
    return files


def enrollment_files(w: World) -> dict[str, bytes]:
    """The kitchen device's enrollment request, the hub's grant for it, and a hub revocation list."""
    request = make_enroll_request(w.kitchen, site="sppg-bdg-01", role="kitchen_exit", name="pintu keluar 1",
                                  time=T0 - 600, hub_id=device_id_for(w.hub.public_key))
    grant = make_grant(w.hub, request, "active")
    revoked = [(w.basic[0].device_id, 3), (w.rotation[0].device_id, 0)]
    revocations = make_revocations(w.hub, time=T0 + 7200, revoked=revoked)
    return {
        "valid/enroll-request.cbor": request,
        "valid/enroll-grant.cbor": grant,
        "valid/revocations.cbor": revocations,
        "valid/enrollment.json": _dump({
            "description": "Signed enrollment messages (docs/FORMAT.md §6.1): a device's request "
                           "(verifies with the pubkey it carries), the hub's grant for it and a revocation "
                           "list (both verify with the hub key). Each is also a raw .cbor file.",
            "hub_public_key": w.hub.public_key.hex(),
            "request": {"file": "enroll-request.cbor", "cose": request.hex(), "external_aad": ENROLL_AAD.hex(),
                        "pubkey": w.kitchen.public_key.hex(), "site": "sppg-bdg-01", "role": "kitchen_exit",
                        "name": "pintu keluar 1", "time": T0 - 600,
                        "hub": device_id_for(w.hub.public_key).hex()},
            "grant": {"file": "enroll-grant.cbor", "cose": grant.hex(), "external_aad": GRANT_AAD.hex(),
                      "hub_id": device_id_for(w.hub.public_key).hex(),
                      "device_id": w.basic[0].device_id.hex(),
                      "request_digest": hashlib.sha256(request).hexdigest(), "status": "active"},
            "revocations": {"file": "revocations.cbor", "cose": revocations.hex(),
                            "external_aad": REVOCATIONS_AAD.hex(), "time": T0 + 7200,
                            "points": {d.hex(): seq for d, seq in sorted(revoked)}},
        }),
    }


def invalid_files(w: World) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    k = w.kitchen
    g, scan, reading = w.basic[0], w.basic[1], w.basic[2]
    dev = g.device_id

    def vec(name: str, code: str, check: str, desc: str, cbor_file: bytes | None = None, **inputs: Any) -> None:
        files[f"invalid/{name}.json"] = _dump({"description": desc, "code": code, "check": check,
                                               "input": inputs})
        if cbor_file is not None:
            files[f"invalid/{name}.cbor"] = cbor_file

    def bad_record(name: str, desc: str, raw: bytes) -> None:
        vec(name, "MALFORMED", "decode_record", desc, raw, record=raw.hex())

    def bad_cbor(name: str, desc: str, data: bytes) -> None:
        vec(name, "MALFORMED", "cbor_decode", desc, None, data=data.hex())

    # -- MALFORMED: generic deterministic-CBOR rules ------------------------------------------------------
    bad_cbor("malformed-cbor-int-not-shortest", "1 encoded with a one-byte argument (0x18 0x01)", b"\x18\x01")
    bad_cbor("malformed-cbor-length-not-shortest", "a 1-byte string with a 1-byte length argument",
             b"\x58\x01\x00")
    bad_cbor("malformed-cbor-indefinite-array", "indefinite-length array [_ 1, 2]", b"\x9f\x01\x02\xff")
    bad_cbor("malformed-cbor-indefinite-bytes", "indefinite-length byte string", b"\x5f\x41\x00\xff")
    bad_cbor("malformed-cbor-indefinite-map", "indefinite-length map {_ 1: 2}", b"\xbf\x01\x02\xff")
    bad_cbor("malformed-cbor-unsorted-map", "map keys out of bytewise order {2: 0, 1: 0}", b"\xa2\x02\x00\x01\x00")
    bad_cbor("malformed-cbor-duplicate-key", "map with key 1 twice", b"\xa2\x01\x00\x01\x01")
    bad_cbor("malformed-cbor-float16", "half-precision float 1.0", b"\xf9\x3c\x00")
    bad_cbor("malformed-cbor-float64", "double-precision float 1.5", b"\xfb\x3f\xf8\x00\x00\x00\x00\x00\x00")
    bad_cbor("malformed-cbor-trailing-bytes", "one item followed by a stray byte", b"\x01\x00")
    bad_cbor("malformed-cbor-undefined", "the simple value undefined", b"\xf7")
    bad_cbor("malformed-cbor-tag", "a tag (1, epoch time) where none is allowed", b"\xc1\x01")
    bad_cbor("malformed-cbor-truncated", "a 4-byte string cut after 2 bytes", b"\x44\x00\x01")
    bad_cbor("malformed-cbor-empty", "no bytes at all", b"")
    bad_cbor("malformed-cbor-too-deep", "arrays nested 40 deep", b"\x81" * 40 + b"\x00")

    # -- MALFORMED: records (each properly signed, so only the defect under test is wrong) ----------------
    parts = payload_parts(scan)
    bad_record("malformed-record-trailing-bytes", "a valid record followed by one zero byte", scan.raw + b"\x00")
    bad_record("malformed-record-truncated", "a valid record cut one byte short", scan.raw[:-1])
    p = list(parts)
    p[2] = b"\x18\x01"  # seq 1 with a non-shortest head
    bad_record("malformed-record-seq-not-shortest", "seq 1 encoded as 0x18 0x01", signed_envelope(k, dev, join_payload(p)))
    p = list(parts)
    # keys of different lengths: the shorter encoding sorts first, so {"event", "site"} must be site-first.
    p[7] = b"\xa2" + cbor2.dumps("event") + cbor2.dumps("cooked") + cbor2.dumps("site") + cbor2.dumps("x")
    bad_record("malformed-record-body-unsorted-keys", "body map with 'event' before 'site': deterministic "
               "order sorts keys by their encoded bytes, so the shorter 'site' comes first",
               signed_envelope(k, dev, join_payload(p)))
    p = list(parts)
    p[7] = (b"\xa3" + cbor2.dumps("site") + cbor2.dumps("x") + cbor2.dumps("site") + cbor2.dumps("y")
            + cbor2.dumps("event") + cbor2.dumps("cooked"))
    bad_record("malformed-record-duplicate-key", "body map with the key 'site' twice",
               signed_envelope(k, dev, join_payload(p)))
    p = list(parts)
    bad_record("malformed-record-indefinite-payload", "payload array of indefinite length",
               signed_envelope(k, dev, join_payload(p, b"\x9f") + b"\xff"))
    p = list(parts)
    p[1] = b"\x5f" + cbor2.dumps(dev[:8]) + cbor2.dumps(dev[8:]) + b"\xff"
    bad_record("malformed-record-indefinite-bytes", "device id as an indefinite-length byte string",
               signed_envelope(k, dev, join_payload(p)))
    rp = payload_parts(reading)
    rp[7] = (b"\xa3" + cbor2.dumps("site") + cbor2.dumps("sppg-bdg-01") + cbor2.dumps("sensor")
             + cbor2.dumps("probe-1") + cbor2.dumps("temp_cc") + b"\xfb" + bytes.fromhex("40502ccccccccccd"))
    bad_record("malformed-record-float", "reading with temp_cc as the float 64.7 instead of 6470 centi-degrees",
               signed_envelope(k, dev, join_payload(rp)))
    p = list(parts)
    p[0] = b"\x02"
    bad_record("malformed-record-unknown-version", "format version 2", signed_envelope(k, dev, join_payload(p)))
    p = list(parts)
    p[6] = b"\x18\x63"
    bad_record("malformed-record-unknown-kind", "kind code 99", signed_envelope(k, dev, join_payload(p)))
    p = list(parts)
    p[7] = jcbor.encode({"site": "sppg-bdg-01"})
    bad_record("malformed-record-body-missing-field", "scan body without its required 'event'",
               signed_envelope(k, dev, join_payload(p)))
    p = list(parts)
    p[7] = jcbor.encode({"event": "departed", "site": "sppg-bdg-01", "count": True})
    bad_record("malformed-record-body-wrong-type", "scan body with count = true",
               signed_envelope(k, dev, join_payload(p)))
    p = list(parts)
    p[7] = jcbor.encode({"event": "departed", "site": "sppg-bdg-01", "colour": "red"})
    bad_record("malformed-record-body-unknown-field", "scan body with a field its kind does not define",
               signed_envelope(k, dev, join_payload(p)))
    p = list(parts)
    p[7] = jcbor.encode({"event": "departed", "site": "sppg-bdg-01",
                         "tags": ["04" + f"{i:012x}" + "x" * 490 for i in range(16)]})
    bad_record("malformed-record-oversize", "a record of more than 8192 bytes",
               signed_envelope(k, dev, join_payload(p)))
    bad_record("malformed-record-kid-mismatch", "kid names another device than the payload",
               signed_envelope(k, bytes(16), scan.payload))
    bad_record("malformed-record-protected-header", "protected header {1: -8, 4: kid} instead of exactly {1: -8}",
               signed_envelope(k, dev, scan.payload, protected=jcbor.encode({1: -8, 4: dev})))
    bad_record("malformed-record-alg", "protected header with alg ES256 (-7)",
               signed_envelope(k, dev, scan.payload, protected=jcbor.encode({1: -7})))
    bad_record("malformed-record-untagged", "a COSE_Sign1 without tag 18", scan.raw[1:])
    bad_record("malformed-record-detached-payload", "a COSE_Sign1 with nil payload",
               cbor2.dumps(cbor2.CBORTag(18, [PROTECTED, {4: dev}, None, scan.signature])))
    bad_record("malformed-record-short-signature", "a 63-byte signature",
               cbor2.dumps(cbor2.CBORTag(18, [PROTECTED, {4: dev}, scan.payload, scan.signature[:63]])))
    gp = payload_parts(g)
    gp[3] = jcbor.encode(b"\x01" * 32)
    bad_record("malformed-record-genesis-prev", "genesis (seq 0) whose prev is not 32 zero bytes",
               signed_envelope(k, dev, join_payload(gp)))
    gp = payload_parts(g)
    gp[7] = jcbor.encode([hashlib.sha256(g.payload).digest(), 40])
    bad_record("malformed-record-detached-key", "a key record that carries its body by digest",
               signed_envelope(k, dev, join_payload(gp)))
    vec("malformed-detached-body-mismatch", "MALFORMED", "attach_body",
        "a detached body that does not hash to the signed digest", None,
        record=w.detached[1].raw.hex(), body=jcbor.encode(dict(w.detached_body, count=240)).hex())

    # -- INVALID_SIGNATURE -----------------------------------------------------------------------------------
    def chain_vec(name: str, code: str, desc: str, recs: list[bytes], **extra: Any) -> None:
        vec(name, code, "verify_chain", desc, None, records=[r.hex() for r in recs], **extra)

    raws = [r.raw for r in w.basic]
    flipped = bytearray(raws[2])
    flipped[-1] ^= 0x01
    chain_vec("invalid-signature-bit-flip", "INVALID_SIGNATURE",
              "the last bit of seq 2's signature flipped", [*raws[:2], bytes(flipped)])
    forged = encode_record(w.stranger, device_id=dev, seq=1, prev=g.id, time=T0 + 40, boot=1, kind="note",
                           body={"text": "not from this device"})
    chain_vec("invalid-signature-other-key", "INVALID_SIGNATURE",
              "seq 1 signed by a key that is not the device's", [raws[0], forged.raw])
    fake_gen = encode_record(w.stranger, device_id=dev, seq=0, prev=bytes(32), time=T0, boot=1, kind="key",
                             body={"pubkey": w.stranger.public_key, "alg": "Ed25519", "reason": "genesis"})
    chain_vec("invalid-signature-genesis-key", "INVALID_SIGNATURE",
              "a genesis naming a key that does not derive the device id", [fake_gen.raw])
    old_after = encode_record(w.rot_old, device_id=w.rotation[0].device_id, seq=3, prev=w.rotation[2].id,
                              time=T0 + 500, boot=3, kind="note", body={"text": "signed with the rotated-away key"})
    chain_vec("invalid-signature-old-key-after-rotation", "INVALID_SIGNATURE",
              "after the rotation at seq 2, seq 3 is signed with the old key",
              [r.raw for r in w.rotation[:3]] + [old_after.raw])

    # -- BROKEN_CHAIN --------------------------------------------------------------------------------------
    chain_vec("broken-chain-gap", "BROKEN_CHAIN", "seq 2 is missing", raws[:2] + raws[3:])
    chain_vec("broken-chain-reorder", "BROKEN_CHAIN", "seq 2 and 3 swapped", [*raws[:2], raws[3], raws[2], *raws[4:]])
    chain_vec("broken-chain-duplicate", "BROKEN_CHAIN", "seq 1 appears twice", [*raws[:2], raws[1], *raws[2:]])
    chain_vec("broken-chain-no-genesis", "BROKEN_CHAIN", "a log that starts with a scan, not a key record",
              [encode_record(k, device_id=dev, seq=0, prev=bytes(32), time=T0, boot=1, kind="note",
                             body={"text": "no genesis"}).raw])
    wrong_prev = encode_record(k, device_id=dev, seq=2, prev=hashlib.sha256(b"elsewhere").digest(), time=T0 + 90,
                               boot=1, kind="note", body={"text": "wrong prev"})
    chain_vec("broken-chain-wrong-prev", "BROKEN_CHAIN", "seq 2 whose prev is not seq 1's id",
              [*raws[:2], wrong_prev.raw])
    other = w.rotation[1]
    chain_vec("broken-chain-wrong-device", "BROKEN_CHAIN", "seq 1 of another device inside this log",
              [raws[0], other.raw])
    back = encode_record(k, device_id=dev, seq=2, prev=scan.id, time=T0 + 90, boot=0, kind="note",
                         body={"text": "boot counter went down"})
    chain_vec("broken-chain-boot-backwards", "BROKEN_CHAIN", "seq 2 with boot 0 after boot 1",
              [*raws[:2], back.raw])
    vec("broken-chain-empty", "BROKEN_CHAIN", "verify_chain", "an empty log", None, records=[])

    # -- REVOKED_KEY -----------------------------------------------------------------------------------------
    vec("revoked-key", "REVOKED_KEY", "verify_records",
        "the operator revoked the device key from seq 3; seq 3 and later are refused", None,
        records=[r.hex() for r in raws], revoked_from=3)

    # -- UNKNOWN_KEY -----------------------------------------------------------------------------------------
    rot_dev = w.rotation[0].device_id
    bundle = Bundle(hub_key=None, logs=[LogExport(device_id=rot_dev, keys=[w.rotation[2].raw],
                                                  records=[r.raw for r in w.rotation[3:]])],
                    checkpoints=[], receipts=[], consistency=[], forks=[], created=T0, description="no genesis")
    vec("unknown-key-no-genesis", "UNKNOWN_KEY", "verify_bundle",
        "a bundle whose key list starts at a rotation: nothing says who the device is", None,
        bundle=bundle.encode().hex())
    no_hub = Bundle(hub_key=None, logs=[LogExport(device_id=dev, keys=[raws[0]], records=raws)],
                    checkpoints=[sign_checkpoint(w.hub, tree_size=5, root=MerkleTree(
                        leaf_hash(x) for x in raws).root(), time=T0 + 3600).raw],
                    receipts=[], consistency=[], forks=[], created=T0, description="no hub key")
    vec("unknown-key-no-hub-key", "UNKNOWN_KEY", "verify_bundle",
        "a bundle with a checkpoint but no hub key to check it with", None, bundle=no_hub.encode().hex())

    # -- FORK_DETECTED ---------------------------------------------------------------------------------------
    branch = ChainBuilder(k, clock=clock(T0 + 5000), boot=2, state=state_after(w.basic[:2]))
    fork_rec = branch.append("note", {"text": "a second history after a restore from backup"})
    ev = ForkEvidence(first=w.basic[2], second=fork_rec)
    vec("fork-detected", "FORK_DETECTED", "fork_evidence",
        "two records of one device at seq 2 with different ids, both validly signed: the evidence verifies "
        "on its own and the verdict is FORK_DETECTED", ev.to_cbor(),
        evidence=ev.to_cbor().hex(), public_key=k.public_key.hex())
    g2 = encode_record(k, device_id=dev, seq=0, prev=bytes(32), time=T0 + 9999, boot=1, kind="key",
                       body={"pubkey": k.public_key, "alg": "Ed25519", "reason": "restore"})
    ev0 = ForkEvidence(first=g, second=g2)
    vec("fork-detected-genesis", "FORK_DETECTED", "fork_evidence",
        "two different genesis records of one device: checkable with the key the genesis bodies name", None,
        evidence=ev0.to_cbor().hex(), public_key=None)

    # -- INVALID_PROOF ---------------------------------------------------------------------------------------
    leaves = raws
    tree = MerkleTree(leaf_hash(x) for x in leaves)
    cp = sign_checkpoint(w.hub, tree_size=len(leaves), root=tree.root(), time=T0 + 3600)
    path = tree.inclusion_proof(2)
    bad_path = [path[0][:-1] + bytes([path[0][-1] ^ 1]), *path[1:]]
    vec("invalid-proof-inclusion-path", "INVALID_PROOF", "inclusion",
        "an inclusion path with one bit flipped", None, leaf=leaf_hash(leaves[2]).hex(), index=2,
        size=len(leaves), path=[x.hex() for x in bad_path], root=tree.root().hex())
    vec("invalid-proof-inclusion-index", "INVALID_PROOF", "inclusion",
        "a correct path presented for the wrong leaf index", None, leaf=leaf_hash(leaves[2]).hex(), index=3,
        size=len(leaves), path=[x.hex() for x in path], root=tree.root().hex())
    vec("invalid-proof-receipt-path", "INVALID_PROOF", "receipt",
        "a COSE Receipt whose inclusion path was altered: the signature does not cover the root it leads to",
        None, receipt=make_receipt(cp, 2, bad_path).hex(), leaf=leaves[2].hex(), hub_key=w.hub.public_key.hex())
    vec("invalid-proof-receipt-other-record", "INVALID_PROOF", "receipt",
        "a genuine receipt for seq 2 presented for a record that is not in the log", None,
        receipt=make_receipt(cp, 2, path).hex(), leaf=back.raw.hex(), hub_key=w.hub.public_key.hex())
    vec("invalid-proof-consistency", "INVALID_PROOF", "consistency_proof",
        "a consistency proof with one entry altered", None, first=2, second=5,
        first_root=tree.root(2).hex(), second_root=tree.root().hex(),
        proof=[x.hex() for x in [bytes(32), *tree.consistency_proof(2)[1:]]])

    # -- INVALID_CHECKPOINT ----------------------------------------------------------------------------------
    parts_cp = list(cbor2.loads(cp.raw).value)
    parts_cp[2] = hashlib.sha256(b"another root").digest()
    rewritten = cbor2.dumps(cbor2.CBORTag(18, parts_cp))
    vec("invalid-checkpoint-rewritten", "INVALID_CHECKPOINT", "checkpoint",
        "a checkpoint whose root was replaced, signature kept", rewritten, checkpoint=rewritten.hex(),
        hub_key=w.hub.public_key.hex())
    vec("invalid-checkpoint-other-hub", "INVALID_CHECKPOINT", "checkpoint",
        "a genuine checkpoint checked with another hub's key", None, checkpoint=cp.raw.hex(),
        hub_key=w.stranger.public_key.hex())
    rewritten_log = [raws[0], forged.raw, *raws[2:]]
    tree2 = MerkleTree(leaf_hash(x) for x in rewritten_log)
    small = sign_checkpoint(w.hub, tree_size=3, root=tree.root(3), time=T0 + 3600)
    big = sign_checkpoint(w.hub, tree_size=5, root=tree2.root(), time=T0 + 7200)
    vec("invalid-checkpoint-inconsistent", "INVALID_CHECKPOINT", "checkpoint_pair",
        "two genuine checkpoints of one hub, the second over a log whose leaf 1 was rewritten; the "
        "consistency proof is the one the rewritten tree gives", None, older=small.raw.hex(), newer=big.raw.hex(),
        proof=[x.hex() for x in tree2.consistency_proof(3)], hub_key=w.hub.public_key.hex())
    return files


def state_after(recs: list[Record]) -> ChainState:

    state = ChainState.empty(recs[0].device_id)
    for r in recs:
        state, _ = link(state, r)
    return state


def build() -> dict[str, bytes]:
    """Every vector file, by path relative to this directory."""
    w = World()
    files = valid_files(w)
    files.update(invalid_files(w))
    files.update(rfc6962_files())
    index = sorted(name for name in files if name.endswith(".json"))
    files["index.json"] = _dump({"description": "Jejak test vectors; see docs/FORMAT.md, section Test vectors.",
                                 "files": index})
    return files


def rfc6962_files() -> dict[str, bytes]:
    """RFC 6962 / RFC 9162 Merkle data published by transparency-dev/merkle (proof/verify_test.go).

    These hashes are copied from that published test data, not computed here, so the Merkle code is checked
    against an implementation we did not write.
    """
    return {"rfc6962-transparency-dev.json": _dump(TRANSPARENCY_DEV)}


# Source: github.com/transparency-dev/merkle, proof/verify_test.go (Apache-2.0), originally from Google's
# certificate-transparency and trillian merkle tests. Indices there are 1-based leaf numbers; here they
# are converted to 0-based leaf indices ("index").
TRANSPARENCY_DEV: dict[str, Any] = {
    "source": "https://github.com/transparency-dev/merkle/blob/main/proof/verify_test.go",
    "leaves": ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"],
    "roots": [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ],
    "empty_root": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "inclusion": [
        {"index": 0, "size": 1, "path": []},
        {"index": 0, "size": 8, "path": [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]},
        {"index": 5, "size": 8, "path": [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]},
        {"index": 2, "size": 3, "path": [
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]},
        {"index": 1, "size": 5, "path": [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]},
    ],
    "consistency": [
        {"first": 1, "second": 1, "proof": []},
        {"first": 1, "second": 8, "proof": [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]},
        {"first": 6, "second": 8, "proof": [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]},
        {"first": 2, "second": 5, "proof": [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]},
        {"first": 6, "second": 7, "proof": [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]},
    ],
}


def main(argv: list[str] | None = None) -> int:
    files = build()
    for name, data in files.items():
        path = HERE / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_bytes() != data:
            path.write_bytes(data)
            print(f"wrote {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
