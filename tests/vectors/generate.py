"""Deterministic generator of the Jejak test vectors: fixed seeds, fixed times, byte-identical on every run.

Run `python -m tests.vectors.generate` from the repository root to (re)write the files beside this script.
A test regenerates everything in memory and compares byte for byte with the files on disk, so a change in
the format shows up as a diff in the vectors, never silently. Files once published are never rewritten:
new behaviour gets new files.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import itertools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cbor2

from ledger import (
    BundleWriter,
    ChainBuilder,
    ChainState,
    Checkpoint,
    Ed25519Signer,
    ForkEvidence,
    MerkleTree,
    Record,
    decode_record,
    device_id_for,
    encode_record,
    leaf_hash,
    link,
    make_receipt,
    sign_checkpoint,
)
from ledger import cbor as jcbor
from ledger.authority import Decision
from ledger.cose import sig_structure, sign1
from ledger.enroll import (
    ENROLL_AAD,
    GRANT_AAD,
    REVOCATIONS_AAD,
    make_enroll_request,
    make_grant,
    make_revocations,
)
from ledger.follow import SplitViewEvidence
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
    files["valid/split-view.json"] = split_view_file(w, leaves, cp_small, cp_big)
    files.update(enrollment_files(w))
    return files


def split_view_file(w: World, leaves: list[bytes], accepted_small: Checkpoint, accepted_big: Checkpoint) -> bytes:
    """§10.1: the same hub key over a log whose leaf 2 was rewritten, against the checkpoints accepted before."""
    rewritten = MerkleTree(leaf_hash(x) for x in [*leaves[:2], b"rewritten", *leaves[3:]])
    same_size = sign_checkpoint(w.hub, tree_size=5, root=rewritten.root(5), time=T0 + 9000)
    larger = [*leaves[:2], b"rewritten", *leaves[3:], b"one more"]
    larger_tree = MerkleTree(leaf_hash(x) for x in larger)
    grown = sign_checkpoint(w.hub, tree_size=len(larger), root=larger_tree.root(), time=T0 + 9100)
    cases = [
        ("two roots for size 5: conclusive on their own", SplitViewEvidence(
            accepted=accepted_small, offered=same_size, proof=())),
        (f"a log of {len(larger)} that does not extend the accepted one of {len(leaves)}, with the consistency "
         "proof the rewritten log gives", SplitViewEvidence(
            accepted=accepted_big, offered=grown, proof=tuple(larger_tree.consistency_proof(len(leaves))))),
    ]
    return _dump({
        "description": "Split-view evidence (FORMAT.md §10.1): checkpoints of the hub key in checkpoints.json "
                       "that do not describe one log. Each must verify as evidence with the hub key.",
        "hub_public_key": w.hub.public_key.hex(),
        "evidence": [{"what": what, "cbor": e.encode().hex(), "conclusive": e.conclusive} for what, e in cases],
    })


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
    bad_cbor("malformed-cbor-map-keys-length-first", "map keys in RFC 7049 length-first order {-1: 0, 24: 0}: "
             "bytewise, 24 (0x18 0x18) comes before -1 (0x20)", b"\xa2\x20\x00\x18\x18\x00")
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
    vec("invalid-proof-checkpoint-pair-inconsistent", "INVALID_PROOF", "checkpoint_pair",
        "two genuine checkpoints of one hub, the second over a log whose leaf 1 was rewritten; the "
        "consistency proof is the one the rewritten tree gives (a failed consistency proof is INVALID_PROOF, "
        "whatever it links)", None, older=small.raw.hex(), newer=big.raw.hex(),
        proof=[x.hex() for x in tree2.consistency_proof(3)], hub_key=w.hub.public_key.hex())
    invalid_bundle_files(w, vec)
    checkpoint_shape_files(w, vec)
    files.update(limit_files(w, vec))
    return files


# -- bundles (FORMAT.md §12) ----------------------------------------------------------------------------------

ED25519_L = 2**252 + 27742317777372353535851937790883648493


def _s_plus_l(signature: bytes) -> bytes:
    """The same signature with S replaced by S + L: equal modulo L, refused as non-canonical (§1)."""
    s = int.from_bytes(signature[32:], "little") + ED25519_L
    return signature[:32] + s.to_bytes(32, "little")


def _with_signature(raw: bytes, signature: bytes) -> bytes:
    tagged = cbor2.loads(raw)
    parts = list(tagged.value)
    parts[3] = signature
    return jcbor.encode(parts, tag=18)


def _checkpoint_with(hub: Ed25519Signer, headers: dict[int, Any], root: bytes,
                     unprotected: dict[int, Any] | None = None) -> bytes:
    return sign1(hub, headers=headers, unprotected=unprotected or {}, payload=root, external_aad=b"")


class BundleWorld:
    """A hub's bundles over the three valid chains: the hub's own log approves each device, accepts the
    stall's rotation and revokes the stall from seq 5 (past its records); two checkpoints."""

    def __init__(self, w: World, *, revoke_stall_from: int = 5, withdraw_gate_from: int | None = None,
                 approve_key: bytes | None = None, rotations: bool = True,
                 superseding_rotation: bytes | None = None) -> None:
        self.w = w
        self.writer = BundleWriter(w.hub, clock=clock(T0 + 3000, 13))
        kitchen = w.basic[0]
        if approve_key is not None:
            self.writer.decide(Decision(action="approve", device_id=kitchen.device_id, from_seq=0, key=approve_key,
                                        site="sppg-bdg-01", role="edge"))
        self.writer.accept(*w.basic, site="sppg-bdg-01")
        self.writer.checkpoint(T0 + 3600)
        self.writer.accept(*w.rotation[:2], site="pasar-kosambi")
        self.writer.accept(w.rotation[2], decide=rotations)
        if superseding_rotation is not None:  # a second rotate decision for seq 2: the last one stands (§6.2)
            self.writer.decide(Decision(action="rotate", device_id=w.rotation[0].device_id, from_seq=2,
                                        key=superseding_rotation))
        self.writer.accept(*w.rotation[3:], *w.detached, site="sdn-cibeunying-2")
        if withdraw_gate_from is not None:
            self.writer.decide(Decision(action="withdraw", device_id=w.detached[0].device_id,
                                        from_seq=withdraw_gate_from))
        self.writer.decide(Decision(action="revoke", device_id=w.rotation[0].device_id, from_seq=revoke_stall_from))
        self.writer.checkpoint(T0 + 7200)
        body = {w.detached[0].device_id: {1: jcbor.encode(w.detached_body)}}
        self.newer = self.writer.bundle(created=T0 + 7260, description="test vector bundle", bodies=body)
        self.older = self.writer.bundle(upto=0, created=T0 + 3660, description="test vector bundle, older")

    def map(self) -> dict[str, Any]:
        item = jcbor.decode(self.newer.encode())
        assert isinstance(item, dict)
        return copy.deepcopy(item)


def bundle_files(w: World) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    bw = BundleWorld(w)
    hub_id = device_id_for(w.hub.public_key)
    newer, older = bw.newer.encode(), bw.older.encode()
    files["valid/bundle.cbor"] = newer
    files["valid/bundle-older.cbor"] = older
    own = [decode_record(r) for r in bw.newer.hub_log]
    files["valid/bundle.json"] = _dump({
        "description": "A bundle (docs/FORMAT.md §12) over the three valid chains, and the same hub's older "
                       "bundle as of its first checkpoint. verify_bundle accepts each; the newer verifies "
                       "against the older (§12.4) and against itself (equal sizes need no proof). 'expect' "
                       "holds what a verifier must derive; 'hub_log' lists the hub's own log with each "
                       "decision's body.",
        "file": "bundle.cbor", "older_file": "bundle-older.cbor",
        "hub_public_key": w.hub.public_key.hex(), "hub_id": hub_id.hex(),
        "hub_log": [dict(_record_json(r)) for r in own],
        "expect": {
            "hub_log": len(own), "decisions": sum(r.kind == "authority" for r in own),
            "checkpoints": [c.tree_size for c in bw.writer.checkpoints],
            "receipts": len(bw.newer.receipts),
            "devices": [{"device": log.device_id.hex(), "records": len(log.records),
                         "revoked_from": bw.writer.own.authority.revoked_from(log.device_id)}
                        for log in bw.newer.logs],
            "against": {"from": bw.writer.checkpoints[0].tree_size, "to": bw.writer.checkpoints[1].tree_size},
        },
    })
    return files


def invalid_bundle_files(w: World, vec: Callable[..., None]) -> None:
    """Negative bundle vectors: each changes one thing of the valid bundle (re-signing where the change must
    get past a signature to reach the check under test)."""
    bw = BundleWorld(w)
    hub_id = device_id_for(w.hub.public_key)
    log_of = {log["device"]: i for i, log in enumerate(bw.map()["logs"])}
    kitchen, stall, gate = (log_of[w.basic[0].device_id], log_of[w.rotation[0].device_id],
                            log_of[w.detached[0].device_id])

    def bundle(name: str, code: str, desc: str, item: dict[str, Any] | bytes, **extra: Any) -> None:
        data = item if isinstance(item, bytes) else jcbor.encode(item)
        vec(name, code, "verify_bundle", desc, None, bundle=data.hex(), **extra)

    def changed(fn: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        item = bw.map()
        fn(item)
        return item

    def receipt_index(item: dict[str, Any], record: bytes) -> int:
        rid = hashlib.sha256(record).digest()
        return next(i for i, (r, _) in enumerate(item["receipts"]) if r == rid)

    # -- MALFORMED: the schema (§12.1) ----------------------------------------------------------------------
    schema: list[tuple[str, str, Callable[[dict[str, Any]], None]]] = [
        ("format-1", "format \"jejak-bundle/1\" (the format before hub logs)",
         lambda m: m.__setitem__("format", "jejak-bundle/1")),
        ("missing-hub-log", "the hub_log field deleted", lambda m: m.pop("hub_log")),
        ("missing-logs", "the logs field deleted", lambda m: m.pop("logs")),
        ("missing-seal", "the seal field deleted", lambda m: m.pop("seal")),
        ("seal-with-payload", "a seal that carries its payload instead of leaving it detached",
         lambda m: m.__setitem__("seal", _with_payload(m["seal"]))),
        ("unknown-field", "an unknown top-level field \"revocations\"", lambda m: m.__setitem__("revocations", [])),
        ("log-unknown-field", "a log carrying \"revoked_from\", a field of format 1 that format 2 derives",
         lambda m: m["logs"][stall].__setitem__("revoked_from", None)),
        ("log-missing-field", "a log without its bodies field", lambda m: m["logs"][kitchen].pop("bodies")),
        ("hub-key-nil", "hub_key nil", lambda m: m.__setitem__("hub_key", None)),
        ("hub-key-length", "hub_key of 31 bytes", lambda m: m.__setitem__("hub_key", m["hub_key"][:31])),
        ("created-text", "created as text", lambda m: m.__setitem__("created", "2025-11-23")),
        ("created-bool", "created as true (not an integer)", lambda m: m.__setitem__("created", True)),
        ("description-int", "description as an integer", lambda m: m.__setitem__("description", 5)),
        ("log-device-length", "a log device id of 15 bytes",
         lambda m: m["logs"][kitchen].__setitem__("device", m["logs"][kitchen]["device"][:15])),
        ("receipt-id-length", "a receipt whose record id has 31 bytes",
         lambda m: m["receipts"][0].__setitem__(0, m["receipts"][0][0][:31])),
        ("receipt-shape", "a receipt entry of three items",
         lambda m: m["receipts"][0].append(b"")),
        ("consistency-shape", "a consistency entry of two items",
         lambda m: m["consistency"][0].pop()),
        ("consistency-size-negative", "a consistency entry whose first size is -1",
         lambda m: m["consistency"][0].__setitem__(0, -1)),
        ("no-checkpoint", "an empty checkpoints array", lambda m: m.__setitem__("checkpoints", [])),
        ("hub-log-empty", "an empty hub_log array", lambda m: m.__setitem__("hub_log", [])),
        ("forks-not-bytes", "forks holding an integer", lambda m: m.__setitem__("forks", [1])),
        ("body-twice", "the detached body of seq 1 given twice",
         lambda m: m["logs"][gate]["bodies"].append(list(m["logs"][gate]["bodies"][0]))),
        ("body-seq-negative", "a bodies entry for seq -1",
         lambda m: m["logs"][gate]["bodies"].__setitem__(0, [-1, m["logs"][gate]["bodies"][0][1]])),
    ]
    for name, desc, fn in schema:
        bundle(f"malformed-bundle-{name}", "MALFORMED", f"a bundle with {desc}", changed(fn))
    body = jcbor.encode(w.detached_body)
    bundle("malformed-bundle-body-inline-record", "MALFORMED",
           "a bodies entry for seq 0, a record that carries its body inline",
           changed(lambda m: m["logs"][gate]["bodies"].insert(0, [0, body])))
    bundle("malformed-bundle-body-not-in-range", "MALFORMED", "a bodies entry for seq 9, not in the log's range",
           changed(lambda m: m["logs"][gate]["bodies"].append([9, body])))
    bundle("malformed-bundle-body-wrong-length", "MALFORMED",
           "the detached body of seq 1 with one byte appended: not the signed length",
           changed(lambda m: m["logs"][gate]["bodies"][0].__setitem__(1, body + b"\x00")))
    bundle("malformed-bundle-receipt-unknown-record", "MALFORMED",
           "a receipt naming a record id the bundle does not hold",
           changed(lambda m: m["receipts"].append([hashlib.sha256(b"elsewhere").digest(), m["receipts"][0][1]])))
    bundle("malformed-bundle-receipt-twice", "MALFORMED", "a second receipt for the same record",
           changed(lambda m: m["receipts"].append(list(m["receipts"][-1]))))
    bundle("malformed-bundle-hub-log-in-logs", "MALFORMED", "the hub's own log given again as a device log",
           changed(lambda m: m["logs"].append({"device": hub_id, "keys": m["hub_log"][:1],
                                               "records": m["hub_log"], "bodies": []})))
    last = bw.writer.checkpoints[-1]
    plain = sign_checkpoint(w.hub, tree_size=last.tree_size, root=last.root, time=last.time).raw
    bundle("malformed-bundle-checkpoint-without-hub-log-head", "MALFORMED",
           "the largest checkpoint re-signed without label -65538 (the head of the hub's log)",
           changed(lambda m: m["checkpoints"].__setitem__(-1, plain)))
    forked = bw.w.basic[2].raw
    bundle("malformed-bundle-fork-same-record", "MALFORMED", "fork evidence holding one record twice",
           changed(lambda m: m["forks"].append(jcbor.encode([forked, forked]))))

    bundle("invalid-signature-bundle-description", "INVALID_SIGNATURE",
           "the description changed by one letter: the hub's seal no longer verifies",
           changed(lambda m: m.__setitem__("description", m["description"].replace("test", "Test"))))
    bundle("invalid-signature-bundle-created", "INVALID_SIGNATURE", "the export time moved one second later",
           changed(lambda m: m.__setitem__("created", m["created"] + 1)))
    bundle("malformed-bundle-seal-signature-63", "MALFORMED",
           "a seal whose signature lost its last byte: a shape error (§1), not a seal that fails",
           changed(lambda m: m.__setitem__("seal", _with_signature_bytes(m["seal"], 63))))
    twice = BundleWriter(w.hub, clock=clock(T0 + 3000, 13))
    twice.accept(*w.basic, site="sppg-bdg-01")
    twice.checkpoint(T0 + 3600)
    twice.checkpoint(T0 + 3660)  # the same size and root signed again: the receipts are under this one
    bundle("invalid-signature-bundle-two-checkpoints-of-one-size", "INVALID_SIGNATURE",
           "two checkpoints of one size and root (other iat) with every receipt under the second, which step 8 "
           "accepts (any checkpoint of the bundle with the receipt's header); then the description changed after "
           "sealing, so the seal is the first problem",
           dataclasses.replace(twice.bundle(created=T0 + 3700, description="two checkpoints"),
                               description="Two checkpoints").encode())

    # -- hub key, checkpoints and consistency (§12.3 steps 2-4) ---------------------------------------------
    bundle("invalid-checkpoint-bundle-pinned-key", "INVALID_CHECKPOINT",
           "the valid bundle checked with another hub key pinned (jejak-verify --hub-key)", bw.newer.encode(),
           hub_key=w.stranger.public_key.hex())
    first = bw.writer.checkpoints[0]
    same_size = sign_checkpoint(w.hub, tree_size=first.tree_size, root=hashlib.sha256(b"other").digest(),
                                time=first.time + 1, authority=first.authority)
    bundle("invalid-checkpoint-bundle-same-size", "INVALID_CHECKPOINT",
           "a second genuine checkpoint of the first checkpoint's size with another root",
           changed(lambda m: m["checkpoints"].append(same_size.raw)))
    own_ids = [hashlib.sha256(raw).digest() for raw in bw.newer.hub_log]
    assert last.authority == (len(own_ids), own_ids[-1])
    other_head = sign_checkpoint(w.hub, tree_size=last.tree_size, root=last.root, time=last.time - 1,
                                 authority=(len(own_ids) - 1, own_ids[-2]))
    bundle("invalid-checkpoint-bundle-same-size-other-head", "INVALID_CHECKPOINT",
           "a second genuine checkpoint of the largest size and root, one second earlier, naming the head of the "
           "hub's log one decision before the end: one tree has one head, so the hub signed a false statement",
           changed(lambda m: m["checkpoints"].append(other_head.raw)))
    head_past_size = sign_checkpoint(w.hub, tree_size=2, root=bw.writer.tree.root(2), time=first.time - 60,
                                     authority=(3, own_ids[2]))
    bundle("broken-chain-bundle-head-past-tree-size", "BROKEN_CHAIN",
           "a genuine checkpoint of size 2 naming 3 records of the hub's log (a head the hub log holds): more "
           "records of the hub's log than the tree has leaves",
           changed(lambda m: m["checkpoints"].insert(0, head_past_size.raw)))
    bundle("invalid-checkpoint-bundle-consistency-unknown-size", "INVALID_CHECKPOINT",
           "a consistency entry from size 3, which no checkpoint of the bundle has",
           changed(lambda m: m["consistency"].append([3, last.tree_size, bw.writer.tree.consistency_proof(3)])))
    bundle("invalid-proof-bundle-consistency-extra-entry", "INVALID_PROOF",
           "a consistency proof with one entry too many", changed(lambda m: m["consistency"][0][2].append(bytes(32))))
    bundle("invalid-proof-bundle-consistency-short-entry", "INVALID_PROOF",
           "a consistency proof whose first entry has 31 bytes",
           changed(lambda m: m["consistency"][0][2].__setitem__(0, m["consistency"][0][2][0][:31])))
    bundle("invalid-proof-bundle-consistency-missing-entry", "INVALID_PROOF",
           "a consistency proof with its last entry dropped", changed(lambda m: m["consistency"][0][2].pop()))
    bundle("invalid-checkpoint-bundle-signature-s-not-canonical", "INVALID_CHECKPOINT",
           "the largest checkpoint with S + L in place of S (same value mod L, non-canonical)",
           changed(lambda m: m["checkpoints"].__setitem__(-1, _with_signature(last.raw, _s_plus_l(last.signature)))))

    # -- the hub's own log (§12.3 step 5) ---------------------------------------------------------------------
    own = bw.newer.hub_log

    def drop_own(i: int) -> Callable[[dict[str, Any]], None]:
        def fn(m: dict[str, Any]) -> None:
            m["receipts"].pop(receipt_index(m, own[i]))
            m["hub_log"].pop(i)
        return fn

    bundle("broken-chain-bundle-decision-dropped", "BROKEN_CHAIN",
           "the approval of the stall (seq 2 of the hub's log) and its receipt dropped", changed(drop_own(2)))
    bundle("broken-chain-bundle-decision-truncated", "BROKEN_CHAIN",
           "the hub's last decision (the stall's revocation) and its receipt dropped: the log ends before the "
           "head the largest checkpoint names", changed(drop_own(len(own) - 1)))
    bundle("broken-chain-bundle-decisions-swapped", "BROKEN_CHAIN",
           "two decisions of the hub's log swapped (a back-dated revocation)",
           changed(lambda m: m["hub_log"].__setitem__(slice(3, 5), [m["hub_log"][4], m["hub_log"][3]])))
    revocation = decode_record(own[-1])
    assert revocation.body is not None and revocation.body["action"] == "revoke"
    later = dict(revocation.body, from_seq=revocation.body["from_seq"] + 1)
    resigned = encode_record(w.hub, device_id=hub_id, seq=revocation.seq, prev=revocation.prev,
                             time=revocation.time, boot=revocation.boot, kind="authority", body=later)
    altered = _with_signature(resigned.raw, revocation.signature)
    bundle("invalid-signature-bundle-decision-altered", "INVALID_SIGNATURE",
           "the revocation's from_seq changed from 5 to 6, the hub's signature kept",
           changed(lambda m: m["hub_log"].__setitem__(-1, altered)))
    stranger = encode_record(w.stranger, device_id=hub_id, seq=revocation.seq, prev=revocation.prev,
                             time=revocation.time, boot=revocation.boot, kind="authority", body=later)
    bundle("invalid-signature-bundle-decision-other-key", "INVALID_SIGNATURE",
           "the revocation re-signed with another key than the hub's",
           changed(lambda m: m["hub_log"].__setitem__(-1, stranger.raw)))
    note = encode_record(w.stranger, device_id=hub_id, seq=revocation.seq, prev=revocation.prev,
                         time=revocation.time, boot=revocation.boot, kind="note", body={"text": "revoked"})
    bundle("invalid-signature-bundle-hub-log-note-other-key", "INVALID_SIGNATURE",
           "the revocation replaced by a note signed with another key than the hub's: a kind the hub's log may "
           "not hold, but the signature rule of the acceptance (§7) fails first (§12.3 step 5)",
           changed(lambda m: m["hub_log"].__setitem__(-1, note.raw)))
    lone = BundleWriter(w.hub, clock=clock(T0 + 3000, 13))
    lone.accept(*w.basic, site="sppg-bdg-01")
    head = lone.own.state
    detached = encode_record(w.hub, device_id=hub_id, seq=head.length, prev=head.head, time=T0 + 3500,
                             boot=head.boot, kind="authority", detach=True,
                             body={"action": "revoke", "device": w.basic[0].device_id, "from_seq": 2})
    lone.tree.append(detached.raw)
    lone.leaves.append(detached)
    lone.checkpoints.append(sign_checkpoint(w.hub, tree_size=len(lone.tree), root=lone.tree.root(), time=T0 + 3600,
                                            authority=(head.length + 1, detached.id)))
    bundle("broken-chain-bundle-decision-detached", "BROKEN_CHAIN",
           "a revocation in the hub's log carried by digest (detached): no decision can be read from it, though "
           "it is signed, in the tree, under the checkpoint's head and has its receipt",
           lone.bundle(created=T0 + 3660).encode())
    bundle("revoked-key-bundle", "REVOKED_KEY",
           "the hub revoked the stall from seq 3: its records 3 and 4 are refused",
           BundleWorld(w, revoke_stall_from=3).newer.encode())
    bundle("revoked-key-bundle-withdrawn", "REVOKED_KEY",
           "the hub withdrew the school gate's approval from seq 1: its records 1 and 2 are refused",
           BundleWorld(w, withdraw_gate_from=1).newer.encode())
    bundle("unknown-key-bundle-approval-other-key", "UNKNOWN_KEY",
           "the hub's approval of the kitchen names another genesis key than its key list's",
           BundleWorld(w, approve_key=w.stranger.public_key).newer.encode())
    bundle("unknown-key-bundle-rotation-not-accepted", "UNKNOWN_KEY",
           "the stall's key rotation at seq 2, with no rotate decision in the hub's log",
           BundleWorld(w, rotations=False).newer.encode())
    bundle("unknown-key-bundle-rotation-superseded", "UNKNOWN_KEY",
           "the stall's rotation at seq 2 accepted, then a second rotate decision for seq 2 naming another key: "
           "the last decision stands, so the key list's rotation is not the accepted one",
           BundleWorld(w, superseding_rotation=w.stranger.public_key).newer.encode())
    no_approval = BundleWriter(w.hub, clock=clock(T0 + 3000, 13))
    no_approval.accept(*w.basic, decide=False)
    no_approval.checkpoint(T0 + 3600)
    bundle("unknown-key-bundle-no-approval", "UNKNOWN_KEY", "a device the hub's log never approved",
           no_approval.bundle(created=T0 + 3660).encode())

    # -- device logs and their key lists (§12.3 step 6) ------------------------------------------------------
    def drop_range(i: int) -> Callable[[dict[str, Any]], None]:
        def fn(m: dict[str, Any]) -> None:
            gone = {hashlib.sha256(raw).digest() for raw in m["logs"][i]["records"]}
            m["logs"][i]["records"] = []
            m["receipts"] = [r for r in m["receipts"] if r[0] not in gone]
        return fn

    stranger_genesis = ChainBuilder(w.stranger, clock=clock(T0 + 30), boot=1).genesis().raw
    bundle("unknown-key-bundle-key-list-only-no-approval", "UNKNOWN_KEY",
           "a log of a device the hub's log never approved, with its genesis as key list and no records: a key "
           "list is vouched for by the hub's decisions whether or not a range follows",
           changed(lambda m: m["logs"].append({"device": device_id_for(w.stranger.public_key), "keys": [stranger_genesis],
                                               "records": [], "bodies": []})))
    bundle("malformed-bundle-body-without-records", "MALFORMED",
           "a bodies entry in the school gate's log with its records emptied (their receipts dropped): no "
           "detached record for it to belong to",
           changed(drop_range(gate)))
    rot = w.rotation
    bundle("unknown-key-no-genesis", "UNKNOWN_KEY",
           "a key list that starts at the rotation (seq 2): nothing says who the device is",
           changed(lambda m: m["logs"][stall].__setitem__("keys", [rot[2].raw])))
    bundle("broken-chain-bundle-key-list-missing-rotation", "BROKEN_CHAIN",
           "a key list without the rotation record the range holds and the hub accepted",
           changed(lambda m: m["logs"][stall].__setitem__("keys", [rot[0].raw])))
    bundle("broken-chain-bundle-key-list-not-a-key-record", "BROKEN_CHAIN",
           "a key list holding a price record after the genesis",
           changed(lambda m: m["logs"][stall].__setitem__("keys", [rot[0].raw, rot[1].raw, rot[2].raw])))
    bundle("broken-chain-bundle-key-list-out-of-order", "BROKEN_CHAIN", "a key list holding the genesis twice",
           changed(lambda m: m["logs"][stall].__setitem__("keys", [rot[0].raw, rot[2].raw, rot[0].raw])))
    assert rot[0].boot > 0
    backwards = encode_record(w.stranger, device_id=rot[2].device_id, seq=rot[2].seq, prev=rot[2].prev,
                              time=rot[2].time, boot=rot[0].boot - 1, kind="key", body=dict(rot[2].body or {}))
    bundle("broken-chain-bundle-key-list-boot-backwards-bad-signature", "BROKEN_CHAIN",
           "a key list whose rotation entry has a boot counter below the genesis's and is signed by another key: an "
           "entry's boot is checked before its signature, as in a chain (§12.3 step 6.1)",
           changed(lambda m: m["logs"][stall].__setitem__("keys", [rot[0].raw, backwards.raw])))
    bundle("broken-chain-bundle-key-list-other-device", "BROKEN_CHAIN",
           "the stall's key list followed by the kitchen's genesis",
           changed(lambda m: m["logs"][stall]["keys"].append(w.basic[0].raw)))
    restore = encode_record(w.kitchen, device_id=w.basic[0].device_id, seq=0, prev=bytes(32), time=T0 + 9999, boot=1,
                            kind="key", body={"pubkey": w.kitchen.public_key, "alg": "Ed25519", "reason": "restore"})
    bundle("broken-chain-bundle-genesis-differs", "BROKEN_CHAIN",
           "a range whose seq 0 is another genesis than the key list's",
           changed(lambda m: m["logs"][kitchen]["records"].__setitem__(0, restore.raw)))
    bad_genesis = encode_record(w.stranger, device_id=w.basic[0].device_id, seq=0, prev=bytes(32), time=T0, boot=1,
                                kind="key", body={"pubkey": w.stranger.public_key})
    cut = dataclasses.replace(bw.newer.logs[kitchen], records=[r.raw for r in w.basic[2:]] + [w.basic[0].raw])
    bundle("broken-chain-bundle-record-before-range", "BROKEN_CHAIN",
           "the kitchen's range from seq 2, then its genesis again: a seq below the range's start, whose record "
           "the verifier does not hold (even though the key list holds the same bytes)",
           dataclasses.replace(bw.newer, logs=[cut if i == kitchen else log for i, log in enumerate(bw.newer.logs)],
                               receipts=[r for r in bw.newer.receipts if r[0] != w.basic[1].id]
                               ).sealed(w.hub).encode())
    bundle("invalid-signature-bundle-genesis-key", "INVALID_SIGNATURE",
           "a key list whose genesis names a key that does not derive the device id",
           changed(lambda m: m["logs"][kitchen]["keys"].__setitem__(0, bad_genesis.raw)))

    # The stall signs a price at seq 2 on its old key where its key list (and the hub's rotate decision) has
    # its rotation: the range and the key list show two histories of seq 2.
    other = ChainBuilder(w.rot_old, clock=clock(T0 + 4000, 61), boot=3, state=state_after(rot[:2]))
    second = [other.append("price", {"market": "pasar-kosambi", "commodity": "telur", "unit": "kg",
                                     "price_idr": 28000 + i}) for i in range(2)]
    split = BundleWriter(w.hub, clock=clock(T0 + 3000, 13))
    split.accept(*rot[:2], *second, site="pasar-kosambi")
    split.decide(Decision(action="rotate", device_id=rot[0].device_id, from_seq=2, key=w.rot_new.public_key))
    split.checkpoint(T0 + 3600)
    made = split.bundle(created=T0 + 3660)
    listed = dataclasses.replace(made.logs[0], keys=[rot[0].raw, rot[2].raw])
    bundle("broken-chain-bundle-key-list-entry-not-in-range", "BROKEN_CHAIN",
           "the stall's key list holds its rotation at seq 2 (accepted by the hub), its range holds another record "
           "there, a price signed by the old key, and goes on on the old key",
           dataclasses.replace(made, logs=[listed]).sealed(w.hub).encode())

    # -- forks (§12.3 step 7) -----------------------------------------------------------------------------------
    branch = ChainBuilder(w.kitchen, clock=clock(T0 + 5000), boot=2, state=state_after(w.basic[:2]))
    fork_rec = branch.append("note", {"text": "a second history after a restore from backup"})
    evidence = ForkEvidence(first=w.basic[2], second=fork_rec).to_cbor()
    bundle("fork-detected-bundle", "FORK_DETECTED", "a bundle carrying valid fork evidence of the kitchen at seq 2",
           changed(lambda m: m["forks"].append(evidence)))
    other_dev = ChainBuilder(w.stranger, clock=clock(T0), boot=0)
    og = other_dev.genesis()
    o1 = other_dev.append("note", {"text": "a"})
    o1b = encode_record(w.stranger, device_id=og.device_id, seq=1, prev=og.id, time=T0 + 1, boot=0, kind="note",
                        body={"text": "b"})
    bundle("unknown-key-bundle-fork-no-log", "UNKNOWN_KEY",
           "fork evidence at seq 1 of a device the bundle has no key list for",
           changed(lambda m: m["forks"].append(jcbor.encode([o1.raw, o1b.raw]))))
    # Two logs of the stall, the first ending before its rotation (a key list of the genesis alone): fork
    # evidence at seq 3 is checked with the first log's key list, so the new key's fork does not verify.
    short = dataclasses.replace(bw.newer.logs[stall], keys=[rot[0].raw], records=[r.raw for r in rot[:2]])
    on_new = ChainBuilder(w.rot_new, clock=clock(T0 + 6000), boot=3, state=state_after(rot[:3]))
    new_fork = ForkEvidence(first=rot[3], second=on_new.append("note", {"text": "a second seq 3"})).to_cbor()
    logs = list(bw.newer.logs)
    logs.insert(stall, short)
    bundle("invalid-signature-bundle-fork-first-log-key-list", "INVALID_SIGNATURE",
           "two logs of the stall, the first ending before its rotation, and fork evidence at seq 3 signed by the "
           "rotated key: the first log's key list gives the key (the genesis key), which does not verify it",
           dataclasses.replace(bw.newer, logs=logs, forks=[new_fork]).sealed(w.hub).encode())
    bad_sig = _with_signature(fork_rec.raw, fork_rec.signature[:-1] + bytes([fork_rec.signature[-1] ^ 1]))
    bundle("invalid-signature-bundle-fork", "INVALID_SIGNATURE",
           "fork evidence whose second record's signature was altered",
           changed(lambda m: m["forks"].append(jcbor.encode([w.basic[2].raw, bad_sig]))))

    # -- receipts (§12.3 step 8) ----------------------------------------------------------------------------------
    bundle("invalid-proof-bundle-record-without-receipt", "INVALID_PROOF",
           "the receipt of the kitchen's seq 3 dropped",
           changed(lambda m: m["receipts"].pop(receipt_index(m, w.basic[3].raw))))
    leaf = bw.writer.leaves.index(w.basic[3])
    path = bw.writer.tree.inclusion_proof(leaf, last.tree_size)
    other_cp = sign_checkpoint(w.hub, tree_size=last.tree_size, root=last.root, time=last.time + 1,
                               authority=last.authority)
    bundle("invalid-proof-bundle-receipt-other-checkpoint", "INVALID_PROOF",
           "a genuine receipt under a checkpoint the bundle does not hold (same size and root, other iat)",
           changed(lambda m: m["receipts"].__setitem__(receipt_index(m, w.basic[3].raw),
                                                        [w.basic[3].id, make_receipt(other_cp, leaf, path)])))
    wrong_size = jcbor.encode([last.protected, {396: {-1: [jcbor.encode([last.tree_size - 1, leaf, path])]}}, None,
                               last.signature], tag=18)
    bundle("invalid-proof-bundle-receipt-wrong-size", "INVALID_PROOF",
           "a receipt whose inclusion proof names another tree size than its header",
           changed(lambda m: m["receipts"].__setitem__(receipt_index(m, w.basic[3].raw), [w.basic[3].id, wrong_size])))
    stranger_cp = sign_checkpoint(w.stranger, tree_size=last.tree_size, root=last.root, time=last.time,
                                  authority=last.authority)
    bundle("invalid-checkpoint-bundle-receipt-other-hub", "INVALID_CHECKPOINT",
           "a receipt signed by another hub",
           changed(lambda m: m["receipts"].__setitem__(receipt_index(m, w.basic[3].raw),
                                                        [w.basic[3].id, make_receipt(stranger_cp, leaf, path)])))

    # -- --against (§12.4) ------------------------------------------------------------------------------------------
    def against(name: str, code: str, desc: str, newer: bytes, older: bytes) -> None:
        vec(name, code, "verify_against", desc, None, newer=newer.hex(), older=older.hex())

    newer, older = bw.newer.encode(), bw.older.encode()
    against("invalid-proof-against-no-proof", "INVALID_PROOF",
            "a newer bundle without the consistency proof from the older bundle's largest checkpoint",
            dataclasses.replace(bw.newer, consistency=[]).sealed(w.hub).encode(), older)
    against("invalid-checkpoint-against-swapped", "INVALID_CHECKPOINT",
            "the older bundle given as the newer: its log is smaller than the one it should extend", older, newer)
    strange = BundleWriter(w.stranger, clock=clock(T0 + 3000, 13))
    strange.accept(*w.basic)
    strange.checkpoint(T0 + 3600)
    against("invalid-checkpoint-against-other-hub", "INVALID_CHECKPOINT",
            "an older bundle of another hub", newer, strange.bundle(created=T0 + 3660).encode())
    against("invalid-proof-against-older-does-not-verify", "INVALID_PROOF",
            "an older bundle whose own record receipt was dropped: the older bundle must verify on its own",
            newer, jcbor.encode(_drop_receipt(older, w.basic[3].raw)))


def _with_signature_bytes(cose: bytes, length: int) -> bytes:
    parts = list(cbor2.loads(cose).value)
    parts[3] = parts[3][:length]
    return jcbor.encode(parts, tag=18)


def _with_payload(seal: bytes) -> bytes:
    parts = list(cbor2.loads(seal).value)
    parts[2] = b""
    return jcbor.encode(parts, tag=18)


def _drop_receipt(data: bytes, record: bytes) -> dict[str, Any]:
    item = jcbor.decode(data)
    rid = hashlib.sha256(record).digest()
    item["receipts"] = [r for r in item["receipts"] if r[0] != rid]
    return item


def checkpoint_shape_files(w: World, vec: Callable[..., None]) -> None:
    """Checkpoints and receipts whose shape §10 and §11 refuse, each properly signed."""
    hub_id = device_id_for(w.hub.public_key)
    root = hashlib.sha256(b"a root").digest()
    good = {1: -8, 4: hub_id, 15: {1: hub_id.hex(), 6: T0}, 395: 1, -65537: 5}
    cases: list[tuple[str, str, dict[int, Any], dict[int, Any] | None]] = [
        ("extra-label", "an extra protected label 99", {**good, 99: 0}, None),
        ("alg", "alg -7 (ES256) instead of -8", {**good, 1: -7}, None),
        ("iss", "iss that is not the kid in lowercase hex", {**good, 15: {1: hub_id.hex().upper(), 6: T0}}, None),
        ("extra-claim", "a CWT claim besides iss and iat", {**good, 15: {1: hub_id.hex(), 2: "x", 6: T0}}, None),
        ("no-iat", "CWT claims without iat", {**good, 15: {1: hub_id.hex()}}, None),
        ("vds", "verifiable data structure 2", {**good, 395: 2}, None),
        ("size-negative", "tree size -1", {**good, -65537: -1}, None),
        ("hub-log-head-shape", "a hub log head that is not [length, 32-byte id]",
         {**good, -65538: [1, bytes(31)]}, None),
        ("unprotected", "a non-empty unprotected header", good, {4: hub_id}),
    ]
    for name, desc, headers, unprotected in cases:
        raw = _checkpoint_with(w.hub, headers, root, unprotected)
        vec(f"malformed-checkpoint-{name}", "MALFORMED", "checkpoint", f"a checkpoint with {desc}", raw,
            checkpoint=raw.hex(), hub_key=w.hub.public_key.hex())
    raw = _with_signature_bytes(_checkpoint_with(w.hub, good, root, None), 63)
    vec("malformed-checkpoint-signature-63", "MALFORMED", "checkpoint",
        "a checkpoint whose signature lost its last byte: a shape error (§1), not a signature that fails", raw,
        checkpoint=raw.hex(), hub_key=w.hub.public_key.hex())
    leaves = [r.raw for r in w.basic]
    tree = MerkleTree(leaf_hash(x) for x in leaves)
    cp = sign_checkpoint(w.hub, tree_size=len(leaves), root=tree.root(), time=T0 + 3600)
    proof = jcbor.encode([cp.tree_size, 2, tree.inclusion_proof(2)])
    for name, desc, unprotected in [
        ("two-proofs", "two inclusion proofs", {396: {-1: [proof, proof]}}),
        ("extra-label", "an extra unprotected label", {4: hub_id, 396: {-1: [proof]}}),
        ("consistency-proofs", "a consistency-proof entry (-2) besides the inclusion proof",
         {396: {-1: [proof], -2: [proof]}}),
    ]:
        raw = jcbor.encode([cp.protected, unprotected, None, cp.signature], tag=18)
        vec(f"malformed-receipt-{name}", "MALFORMED", "receipt", f"a receipt with {desc}", None,
            receipt=raw.hex(), leaf=leaves[2].hex(), hub_key=w.hub.public_key.hex())
    raw = make_receipt(cp, 7, tree.inclusion_proof(2))
    vec("invalid-proof-receipt-index-past-size", "INVALID_PROOF", "receipt",
        "a receipt whose leaf index (7) is not below its tree size (5)", None,
        receipt=raw.hex(), leaf=leaves[2].hex(), hub_key=w.hub.public_key.hex())
    vec("invalid-checkpoint-signature-s-not-canonical", "INVALID_CHECKPOINT", "checkpoint",
        "a genuine checkpoint with S + L in place of S", None,
        checkpoint=_with_signature(cp.raw, _s_plus_l(cp.signature)).hex(), hub_key=w.hub.public_key.hex())
    path = tree.inclusion_proof(2)
    vec("invalid-proof-inclusion-extra-entry", "INVALID_PROOF", "inclusion",
        "a correct inclusion path with one more entry", None, leaf=leaf_hash(leaves[2]).hex(), index=2,
        size=len(leaves), path=[x.hex() for x in [*path, bytes(32)]], root=tree.root().hex())
    vec("invalid-proof-inclusion-short-entry", "INVALID_PROOF", "inclusion",
        "an inclusion path whose first entry has 31 bytes", None, leaf=leaf_hash(leaves[2]).hex(), index=2,
        size=len(leaves), path=[x.hex() for x in [path[0][:31], *path[1:]]], root=tree.root().hex())
    vec("invalid-proof-consistency-from-zero", "INVALID_PROOF", "consistency_proof",
        "a proof from size 0 that is not empty (from size 0 the proof is empty, from the empty root)", None,
        first=0, second=5, first_root=hashlib.sha256(b"").hexdigest(), second_root=tree.root().hex(),
        proof=[tree.root(1).hex()])
    same = sign_checkpoint(w.hub, tree_size=5, root=root, time=T0 + 7200)
    vec("invalid-checkpoint-same-size", "INVALID_CHECKPOINT", "checkpoint_pair",
        "two genuine checkpoints of size 5 with different roots", None, older=cp.raw.hex(), newer=same.raw.hex(),
        proof=[], hub_key=w.hub.public_key.hex())


def limit_files(w: World, vec: Callable[..., None]) -> dict[str, bytes]:
    """§2.6 and §4 limits: records just at each limit (valid/limits.json) and just past it (invalid/)."""
    k = w.kitchen
    dev = w.basic[0].device_id
    g = w.basic[0]

    def rec(kind: str, body: dict[str, Any], *, detach: bool = False) -> Record:
        return encode_record(k, device_id=dev, seq=1, prev=g.id, time=T0 + 37, boot=1, kind=kind, body=body,
                             detach=detach)

    head = [dev, 3, bytes(32)]
    at_limit = {
        "text-512": rec("note", {"text": "a" * 512}),
        "tags-256": rec("scan", {"event": "packed", "site": "s", "tags": [f"{i:02x}" for i in range(256)]}),
        "tag-512": rec("scan", {"event": "packed", "site": "s", "tags": ["b" * 512]}),
        "witness-heads": rec("witness", {"heads": [head]}),
    }
    at_limit_raw = {"detached-65536": signed_envelope(k, dev, jcbor.encode([1, dev, 1, g.id, T0 + 37, 1, 5,
                                                                            [bytes(32), 65536]]))}
    nested: Any = 0
    for _ in range(16):
        nested = [nested]
    files = {"valid/limits.json": _dump({
        "description": "Items just at the limits of docs/FORMAT.md §2.6, §4 and §5: decode_record accepts each "
                       "record, cbor_decode accepts 'cbor_depth_16' (16 nested arrays). The invalid/ vectors "
                       "named malformed-limit-* go one past each.",
        "records": {**{name: r.raw.hex() for name, r in at_limit.items()},
                    **{name: raw.hex() for name, raw in at_limit_raw.items()}},
        "cbor_depth_16": jcbor.encode(nested).hex(),
    })}
    # encode_record refuses what decode refuses: the records past a limit are signed by hand.
    def forged(kind: str, body: dict[str, Any]) -> bytes:
        payload = jcbor.encode([1, dev, 1, g.id, T0 + 37, 1, _kind_code(kind), body])
        return signed_envelope(k, dev, payload)

    cases = [
        ("text-513", "a note whose text has 513 characters (§4)", forged("note", {"text": "a" * 513})),
        ("text-513-multibyte", "a note of 513 code points, each two UTF-8 bytes (the limit counts characters)",
         forged("note", {"text": "é" * 513})),
        ("tags-257", "a scan with 257 tags (§4)",
         forged("scan", {"event": "packed", "site": "s", "tags": [f"{i:02x}" for i in range(257)]})),
        ("tag-513", "a scan whose one tag has 513 characters (§4: the limit holds inside arrays)",
         forged("scan", {"event": "packed", "site": "s", "tags": ["b" * 513]})),
        ("witness-head-types", "a witness head whose seq is text",
         forged("witness", {"heads": [[dev, "3", bytes(32)]]})),
        ("witness-head-length", "a witness head of two items", forged("witness", {"heads": [[dev, 3]]})),
        ("attest-data-not-map", "an attest record whose data is an array",
         forged("attest", {"path": "p", "sender": "s", "kind": "price", "data": [], "received_at": 0})),
        ("authority-extra-field", "a revoke decision carrying a key (only approve and rotate carry one)",
         forged("authority", {"action": "revoke", "device": dev, "from_seq": 1, "key": bytes(32)})),
        ("authority-device-length", "a decision naming a 15-byte device",
         forged("authority", {"action": "revoke", "device": dev[:15], "from_seq": 1})),
        ("price-idr-0", "a price of 0 rupiah (price_idr >= 1)",
         forged("price", {"market": "m", "commodity": "c", "unit": "kg", "price_idr": 0})),
        ("count-negative", "a scan counting -1 portions (count >= 0)",
         forged("scan", {"event": "served", "site": "s", "count": -1})),
        ("event-not-listed", "a scan whose event is not one of the listed events",
         forged("scan", {"event": "eaten", "site": "s"})),
        ("pubkey-31", "a key record naming a 31-byte key (exactly 32 bytes)",
         signed_envelope(k, dev, jcbor.encode([1, dev, 1, g.id, T0 + 37, 1, 0, {"pubkey": bytes(31)}]))),
        ("authority-action-not-listed", "a decision whose action is not one of approve, withdraw, revoke, rotate",
         forged("authority", {"action": "pardon", "device": dev, "from_seq": 1})),
        ("authority-approve-without-key", "an approve decision without the genesis key it admits",
         forged("authority", {"action": "approve", "device": dev, "from_seq": 0, "site": "s", "role": "r"})),
        ("detached-length-65537", "a detached reference of 65,537 bytes (§5)",
         signed_envelope(k, dev, jcbor.encode([1, dev, 1, g.id, T0 + 37, 1, 5, [bytes(32), 65537]]))),
    ]
    for name, desc, raw in cases:
        vec(f"malformed-limit-{name}", "MALFORMED", "decode_record", desc, raw, record=raw.hex())
    vec("malformed-limit-cbor-depth-17", "MALFORMED", "cbor_decode", "17 nested arrays (§2.6)", None,
        data="81" * 17 + "00")
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
    files.update(bundle_files(w))
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
