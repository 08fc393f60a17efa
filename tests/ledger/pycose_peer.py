"""Runs inside .venv-pycose (pycose 1.1.0, cbor2 < 6): signs and verifies COSE_Sign1 for the interop tests.

Reads a JSON list of requests on stdin and writes a JSON list of answers on stdout; bytes travel as hex.
It imports nothing from this project, so what it accepts or makes is pycose's judgement, not ours.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import cbor2
from pycose.algorithms import EdDSA
from pycose.headers import KID, Algorithm
from pycose.keys.curves import Ed25519
from pycose.keys.keyparam import KpKty, OKPKpCurve, OKPKpD, OKPKpX
from pycose.keys.keytype import KtyOKP
from pycose.keys.okp import OKPKey
from pycose.messages import CoseMessage, Sign1Message


def _public(x: str) -> OKPKey:
    return OKPKey.from_dict({KpKty: KtyOKP, OKPKpCurve: Ed25519, OKPKpX: bytes.fromhex(x)})


def _private(seed: str) -> OKPKey:
    return OKPKey.from_dict({KpKty: KtyOKP, OKPKpCurve: Ed25519, OKPKpD: bytes.fromhex(seed)})


def _unhex(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"$bytes"}:
            return bytes.fromhex(value["$bytes"])
        return {k: _unhex(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unhex(v) for v in value]
    return value


def verify(req: dict[str, Any]) -> dict[str, Any]:
    msg = CoseMessage.decode(bytes.fromhex(req["cose"]))
    msg.key = _public(req["public_key"])
    msg.external_aad = bytes.fromhex(req.get("aad", ""))
    detached = bytes.fromhex(req["detached_payload"]) if req.get("detached_payload") is not None else None
    try:
        ok = bool(msg.verify_signature(detached))
    except Exception as exc:  # pycose raises for malformed signatures; that is a "no" here
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    alg = msg.phdr.get(Algorithm)
    kid = msg.get_attr(KID)
    return {"ok": ok, "payload": msg.payload.hex() if msg.payload is not None else None,
            "alg": getattr(alg, "identifier", alg), "kid": kid.hex() if isinstance(kid, bytes) else None,
            "phdr": msg.phdr_encoded.hex()}


def sign(req: dict[str, Any]) -> dict[str, Any]:
    uhdr = {KID: bytes.fromhex(req["kid"])} if req.get("kid") else {}
    msg = Sign1Message(phdr={Algorithm: EdDSA}, uhdr=uhdr, payload=bytes.fromhex(req["payload"]),
                       external_aad=bytes.fromhex(req.get("aad", "")))
    msg.key = _private(req["seed"])
    return {"cose": msg.encode(tag=True).hex()}


def jejak_record(req: dict[str, Any]) -> dict[str, Any]:
    """A full Jejak record built from its fields with pycose and cbor2's own canonical encoder."""
    f = req["fields"]
    payload = cbor2.dumps([f["version"], bytes.fromhex(f["device_id"]), f["seq"], bytes.fromhex(f["prev"]),
                           f["time"], f["boot"], f["kind"], _unhex(f["body"])], canonical=True)
    msg = Sign1Message(phdr={Algorithm: EdDSA}, uhdr={KID: bytes.fromhex(f["device_id"])}, payload=payload,
                       external_aad=b"jejak/record/v1")
    msg.key = _private(req["seed"])
    return {"cose": msg.encode(tag=True).hex(), "payload": payload.hex()}


OPS = {"verify": verify, "sign": sign, "jejak_record": jejak_record}


def main() -> int:
    requests = json.load(sys.stdin)
    json.dump([OPS[r["op"]](r) for r in requests], sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
