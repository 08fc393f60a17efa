"""Records and CBOR items at the edges of FORMAT.md §2 and §4 (limits, enumerations, types, depth), properly signed."""

from __future__ import annotations

import hashlib
from typing import Any

import cbor2

from .tamper import encode, public, sig_structure, stranger

KEY = stranger()
PUB = public(KEY)
DEVICE = hashlib.sha256(b"jejak/device-id/v1" + PUB).digest()[:16]
PROTECTED = bytes.fromhex("a10127")


def _envelope(payload: bytes) -> bytes:
    sig = KEY.sign(sig_structure(PROTECTED, b"jejak/record/v1", payload))
    return encode(cbor2.CBORTag(18, [PROTECTED, {4: DEVICE}, payload, sig]))


def record(kind: int, body: Any) -> bytes:
    return _envelope(encode([1, DEVICE, 1, b"\x11" * 32, 1700000000, 1, kind, body]))


def raw_body_record(kind: int, body: bytes) -> bytes:
    """A record whose body is given as bytes (for encodings cbor2 will not make, such as invalid UTF-8)."""
    head = encode([1, DEVICE, 1, b"\x11" * 32, 1700000000, 1, kind, 0])[:-1]
    return _envelope(head + body)


def nest(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


def scan(**extra: Any) -> bytes:
    return record(1, {"event": "served", "site": "s", **extra})


def attest(data: Any, kind: str = "scan") -> bytes:
    return record(7, {"path": "p", "sender": "s", "kind": kind, "data": data, "received_at": 1})


def record_probes() -> dict[str, bytes]:
    head = [DEVICE, 1, bytes(32)]
    return {
        "key alg not Ed25519": record(0, {"pubkey": PUB, "alg": "x"}),
        "key reason not listed": record(0, {"pubkey": PUB, "reason": "x"}),
        "key pubkey 31 bytes": record(0, {"pubkey": PUB[:31]}),
        "scan source not listed": scan(source="x"),
        "scan checkpoint not listed": scan(checkpoint="x"),
        "scan event not listed": record(1, {"event": "x", "site": "s"}),
        "scan tag of 513 characters": scan(tags=["a" * 513]),
        "scan 256 tags": scan(tags=["a"] * 256),
        "scan 257 tags": scan(tags=["a"] * 257),
        "scan tag that is an integer": scan(tags=[1]),
        "scan text of 512 characters": scan(text="a" * 512),
        "scan text of 513 characters": scan(text="a" * 513),
        "scan text of 512 two-byte characters": scan(text="é" * 512),
        "scan text of 513 two-byte characters": scan(text="é" * 513),
        "scan count -1": scan(count=-1),
        "scan count 2^64-1": scan(count=2**64 - 1),
        "scan temp_cc -2^64": scan(temp_cc=-(2**64)),
        "scan count true": scan(count=True),
        "witness no heads": record(6, {"heads": []}),
        "witness head that is not an array": record(6, {"heads": [1]}),
        "witness head of one item": record(6, {"heads": [[1]]}),
        "witness head of text": record(6, {"heads": [["a", "b", "c"]]}),
        "witness good head": record(6, {"heads": [head]}),
        "witness 257 heads": record(6, {"heads": [head] * 257}),
        "attest empty data": attest({}),
        "attest data with integer keys": attest({1: 2}),
        "attest kind not a kind": attest({}, kind="x"),
        "attest data 16 deep": attest({"a": nest(13)}),
        "attest data 17 deep": attest({"a": nest(14)}),
        "reading rh_cp -1": record(2, {"site": "s", "rh_cp": -1}),
        "price 0 rupiah": record(3, {"market": "m", "commodity": "c", "unit": "kg", "price_idr": 0}),
        "stock movement not listed": record(4, {"site": "s", "item": "i", "movement": "x", "qty": 1, "unit": "kg"}),
        "stock qty -1": record(4, {"site": "s", "item": "i", "movement": "use", "qty": -1, "unit": "kg"}),
        "note with an integer key": record(5, {"text": "t", 1: 2}),
        "note text not UTF-8": raw_body_record(5, bytes.fromhex("a1647465787462c328")),
        "note text with a BOM": record(5, {"text": "\ufeffx"}),
        "note text with a surrogate": raw_body_record(5, bytes.fromhex("a1647465787463eda080")),
        "detached length 0": record(1, [bytes(32), 0]),
        "detached length 65536": record(1, [bytes(32), 65536]),
        "detached length 65537": record(1, [bytes(32), 65537]),
        "detached digest 31 bytes": record(1, [bytes(31), 10]),
    }


def cbor_probes() -> dict[str, bytes]:
    return {
        "arrays 16 deep": encode(nest(16)),
        "arrays 17 deep": encode(nest(17)),
        "map over arrays, 16 deep": encode({"a": nest(15)}),
        "map over arrays, 17 deep": encode({"a": nest(16)}),
        "tag 18 inside": bytes.fromhex("81d2820102"),
        "tag 18 outermost": bytes.fromhex("d2820102"),
        "-2^64": bytes.fromhex("3bffffffffffffffff"),
        "2^64-1": bytes.fromhex("1bffffffffffffffff"),
        "simple value 19": bytes.fromhex("f3"),
        "float32": bytes.fromhex("fa3f800000"),
        "byte-string map key": bytes.fromhex("a1410000"),
        "array map key": bytes.fromhex("a1800000"),
        "text not UTF-8": bytes.fromhex("62c328"),
        "text that is a BOM": bytes.fromhex("63efbbbf"),
    }
