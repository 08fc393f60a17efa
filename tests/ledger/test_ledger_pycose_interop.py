"""Interop with pycose 1.1.0, a COSE implementation we did not write, run in its own venv (cbor2 < 6).

pycose cannot decode with cbor2 6.x (pycose issue #141), so it runs as a subprocess from .venv-pycose
(scripts/setup creates it) and bytes cross as hex over stdin/stdout.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

import ledger
from ledger.checkpoint import CHECKPOINT_AAD, decode_checkpoint, verify_receipt
from ledger.cose import parse_sign1
from ledger.merkle import leaf_hash, root_from_inclusion
from ledger.record import RECORD_AAD
from tests.vectors import generate

ROOT = Path(__file__).resolve().parents[2]
PYCOSE = ROOT / ".venv-pycose" / "bin" / "python"
PEER = Path(__file__).with_name("pycose_peer.py")
VECTORS = ROOT / "tests" / "vectors"


def pycose(requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    assert PYCOSE.exists(), "pycose venv missing: run scripts/setup (creates .venv-pycose with pycose==1.1.0)"
    out = subprocess.run([str(PYCOSE), str(PEER)], input=json.dumps(requests), capture_output=True, text=True,
                         timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    answers: list[dict[str, Any]] = json.loads(out.stdout)
    assert len(answers) == len(requests)
    return answers


def test_peer_really_is_pycose_1_1_0_with_old_cbor2() -> None:
    out = subprocess.run([str(PYCOSE), "-c", "import importlib.metadata as m; "
                          "print(m.version('pycose'), m.version('cbor2'))"],
                         capture_output=True, text=True, check=True)
    pycose_version, cbor2_version = out.stdout.split()
    assert pycose_version == "1.1.0"
    assert int(cbor2_version.split(".")[0]) < 6


def _valid_records() -> list[tuple[bytes, bytes]]:
    """(record, public key) for every record of the valid chains."""
    out = []
    for name in ("chain-basic", "chain-rotation", "chain-detached"):
        doc = json.loads((VECTORS / "valid" / f"{name}.json").read_text())
        raws = [bytes.fromhex(r["cose"]) for r in doc["records"]]
        state = ledger.ChainState.empty(ledger.decode_record(raws[0]).device_id)
        for raw in raws:
            state, key = ledger.link(state, ledger.decode_record(raw))
            out.append((raw, key))
    return out


def test_ledger_records_verify_with_pycose() -> None:
    records = _valid_records()
    answers = pycose([{"op": "verify", "cose": raw.hex(), "public_key": key.hex(), "aad": RECORD_AAD.hex()}
                      for raw, key in records])
    for (raw, _), ans in zip(records, answers, strict=True):
        rec = ledger.decode_record(raw)
        assert ans["ok"] is True, ans
        assert ans["payload"] == rec.payload.hex()
        assert ans["kid"] == rec.device_id.hex()
        assert ans["alg"] == -8
        assert ans["phdr"] == "a10127"


def test_pycose_refuses_what_ledger_refuses() -> None:
    """Negative controls: pycose is not saying yes to everything."""
    raw, key = _valid_records()[1]
    flipped = bytearray(raw)
    flipped[-5] ^= 0x10
    other_key = ledger.Ed25519Signer.from_seed(generate.seed("nobody-enrolled")).public_key
    answers = pycose([
        {"op": "verify", "cose": bytes(flipped).hex(), "public_key": key.hex(), "aad": RECORD_AAD.hex()},
        {"op": "verify", "cose": raw.hex(), "public_key": key.hex(), "aad": ""},  # domain separation holds
        {"op": "verify", "cose": raw.hex(), "public_key": other_key.hex(), "aad": RECORD_AAD.hex()},
    ])
    assert [a["ok"] for a in answers] == [False, False, False]
    with pytest.raises(ledger.BadSignature):
        ledger.decode_record(bytes(flipped)).verify_signature(key)


def test_pycose_sign1_verifies_with_ledger_generic_parser() -> None:
    signer = ledger.Ed25519Signer.from_seed(generate.seed("pycose-peer"))
    cases = [(b"hello", b""), (b"\x00" * 300, b"some aad"), (bytes(range(256)) * 40, RECORD_AAD)]
    answers = pycose([{"op": "sign", "seed": signer.seed().hex(), "kid": "0102030405060708",
                       "payload": p.hex(), "aad": a.hex()} for p, a in cases])
    for (payload, aad), ans in zip(cases, answers, strict=True):
        msg = parse_sign1(bytes.fromhex(ans["cose"]))
        assert msg.payload == payload
        assert msg.kid == bytes.fromhex("0102030405060708")
        msg.verify(signer.public_key, aad)
        with pytest.raises(ledger.BadSignature):
            msg.verify(signer.public_key, aad + b"x")
        with pytest.raises(ledger.BadSignature):
            msg.verify(signer.public_key, aad, payload=payload + b"x")


def _fields(rec: ledger.Record) -> dict[str, Any]:
    def tag_bytes(v: Any) -> Any:
        if isinstance(v, bytes):
            return {"$bytes": v.hex()}
        if isinstance(v, dict):
            return {k: tag_bytes(x) for k, x in v.items()}
        if isinstance(v, list):
            return [tag_bytes(x) for x in v]
        return v
    from ledger.bodies import KINDS
    return {"version": rec.version, "device_id": rec.device_id.hex(), "seq": rec.seq, "prev": rec.prev.hex(),
            "time": rec.time, "boot": rec.boot, "kind": KINDS[rec.kind], "body": tag_bytes(rec.body)}


def test_pycose_built_jejak_records_are_accepted_by_ledger() -> None:
    """pycose builds whole records from their fields; ledger decodes, links and verifies them.

    Ed25519 signatures are deterministic, so a conforming encoder must produce ledger's exact bytes.
    """
    doc = json.loads((VECTORS / "valid" / "chain-basic.json").read_text())
    ours = [ledger.decode_record(bytes.fromhex(r["cose"])) for r in doc["records"]]
    seed = generate.seed("kitchen-exit-1")
    answers = pycose([{"op": "jejak_record", "seed": seed.hex(), "fields": _fields(r)} for r in ours])
    theirs = [bytes.fromhex(a["cose"]) for a in answers]
    for rec, raw in zip(ours, theirs, strict=True):
        got = ledger.decode_record(raw)
        got.verify_signature(ledger.Ed25519Signer.from_seed(seed).public_key)
        assert got.id == rec.id and raw == rec.raw
    state = ledger.verify_chain(theirs)
    assert state.length == len(ours)


def test_checkpoints_and_receipts_verify_with_pycose() -> None:
    doc = json.loads((VECTORS / "valid" / "checkpoints.json").read_text())
    hub = doc["hub_public_key"]
    requests = [{"op": "verify", "cose": c["cose"], "public_key": hub, "aad": CHECKPOINT_AAD.hex()}
                for c in doc["checkpoints"]]
    roots = []
    for entry in doc["receipts"]:
        receipt, leaf = bytes.fromhex(entry["receipt"]), bytes.fromhex(entry["record"])
        msg = parse_sign1(receipt)
        size, index, path = ledger.cbor.decode(msg.unprotected[396][-1][0])
        root = root_from_inclusion(leaf_hash(leaf), index, size, path)
        roots.append(root)
        requests.append({"op": "verify", "cose": entry["receipt"], "public_key": hub, "aad": "",
                         "detached_payload": root.hex()})
    # A receipt checked against a root its proof does not lead to must fail in pycose too.
    requests.append({"op": "verify", "cose": doc["receipts"][0]["receipt"], "public_key": hub, "aad": "",
                     "detached_payload": bytes(32).hex()})
    answers = pycose(requests)
    n = len(doc["checkpoints"])
    for c, ans in zip(doc["checkpoints"], answers[:n], strict=True):
        assert ans["ok"] is True, ans
        assert ans["payload"] == decode_checkpoint(bytes.fromhex(c["cose"])).root.hex()
    for entry, root, ans in zip(doc["receipts"], roots, answers[n:-1], strict=True):
        assert ans["ok"] is True, ans
        assert ans["payload"] is None  # detached
        got = verify_receipt(bytes.fromhex(entry["receipt"]), bytes.fromhex(entry["record"]), bytes.fromhex(hub))
        assert got.root == root
    assert answers[-1]["ok"] is False
