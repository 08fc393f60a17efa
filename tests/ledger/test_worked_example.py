"""FORMAT.md §14.1, the worked example, and docs/examples/tiny.jejak: made again, byte for byte, and every value
checked with hashlib, cbor2 and cryptography alone, as a second implementation would."""

from __future__ import annotations

import hashlib

import cbor2
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ledger import verify_bundle
from tests.vectors import worked


def h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def sig_structure(protected: bytes, aad: bytes, payload: bytes) -> bytes:
    return cbor2.dumps(["Signature1", protected, aad, payload])


def test_the_section_and_the_bundle_are_what_the_generator_makes() -> None:
    w = worked.build()
    assert worked.TINY.read_bytes() == w.bundle
    text = worked.FORMAT.read_text()
    assert worked.format_with(text, worked.section(w)) == text, "run python -m tests.vectors.worked"


def test_every_value_of_the_example_checks_out_with_plain_sha256_and_ed25519() -> None:
    data = worked.TINY.read_bytes()
    assert verify_bundle(data).ok
    bundle = cbor2.loads(data)
    hub_key = bundle["hub_key"]
    hub_id = h(b"jejak/device-id/v1" + hub_key)[:16]
    (log,) = bundle["logs"]
    genesis, reading = log["records"]
    device_key = cbor2.loads(cbor2.loads(genesis).value[2])[7]["pubkey"]
    assert log["device"] == h(b"jejak/device-id/v1" + device_key)[:16]
    # The record: §3.0 layout, §3.2 signature, id and leaf hash.
    protected, unprotected, payload, signature = cbor2.loads(reading).value
    assert reading[:9] == bytes.fromhex("d28443a10127a10450") and unprotected == {4: log["device"]}
    Ed25519PublicKey.from_public_bytes(device_key).verify(
        signature, sig_structure(protected, b"jejak/record/v1", payload))
    fields = cbor2.loads(payload)
    assert fields[:3] == [1, log["device"], 1] and fields[3] == h(genesis)
    # The tree: hub genesis, approval, device genesis, reading.
    leaves = [h(b"\x00" + r) for r in (bundle["hub_log"][0], bundle["hub_log"][1], genesis, reading)]
    node = lambda a, b: h(b"\x01" + a + b)  # noqa: E731
    roots = {3: node(node(leaves[0], leaves[1]), leaves[2]), 4: node(node(leaves[0], leaves[1]), node(leaves[2], leaves[3]))}
    for raw in bundle["checkpoints"]:
        cp_protected, _, root, cp_signature = cbor2.loads(raw).value
        header = cbor2.loads(cp_protected)
        assert header[4] == hub_id and root == roots[header[-65537]]
        Ed25519PublicKey.from_public_bytes(hub_key).verify(cp_signature, sig_structure(cp_protected, b"", root))
    assert bundle["consistency"] == [[3, 4, [leaves[2], leaves[3], node(leaves[0], leaves[1])]]]
    # The reading's receipt: its inclusion proof leads to size 4's root.
    receipts = dict((rid, r) for rid, r in bundle["receipts"])
    proof = cbor2.loads(cbor2.loads(receipts[h(reading)]).value[1][396][-1][0])
    assert proof == [4, 3, [leaves[2], node(leaves[0], leaves[1])]]
    # The seal: the bundle without its seal, hashed and signed under "jejak/bundle/v1".
    seal = cbor2.loads(bundle.pop("seal")).value
    digest = h(cbor2.dumps(bundle, canonical=True))
    assert data == cbor2.dumps(dict(bundle, seal=cbor2.dumps(cbor2.CBORTag(18, seal))), canonical=True)
    Ed25519PublicKey.from_public_bytes(hub_key).verify(seal[3], sig_structure(seal[0], b"jejak/bundle/v1", digest))
    section = worked.FORMAT.read_text()
    for value in (h(reading), leaves[3], roots[3], roots[4], digest, h(data)):
        assert value.hex() in section
