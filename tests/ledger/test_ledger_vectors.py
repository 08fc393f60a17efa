"""Every file under tests/vectors/ gets the verdict it names, and the generator still makes the same bytes."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import ledger
from ledger import cbor
from ledger.checkpoint import decode_checkpoint, verify_checkpoints_consistent, verify_receipt
from ledger.cose import verify_signed_message
from ledger.errors import LedgerError, MalformedRecord
from ledger.follow import verify_split_view
from ledger.merkle import verify_consistency, verify_inclusion
from ledger.record import kind_and_time, peek_kind, signed_message
from tests.vectors import generate

VECTORS = Path(generate.__file__).resolve().parent
INVALID = sorted((VECTORS / "invalid").glob("*.json"))


def load(path: Path) -> Any:
    return json.loads(path.read_text())


def h(x: str) -> bytes:
    return bytes.fromhex(x)


def test_generator_reproduces_every_file_byte_for_byte() -> None:
    built = generate.build()
    on_disk = {str(p.relative_to(VECTORS)) for p in VECTORS.rglob("*")
               if p.is_file() and p.suffix in (".json", ".cbor")}
    assert on_disk == set(built), "vector files on disk differ from what the generator makes"
    for name, data in built.items():
        assert (VECTORS / name).read_bytes() == data, f"{name} changed: old vectors must stay readable"


def test_index_lists_every_json_vector() -> None:
    index = load(VECTORS / "index.json")["files"]
    assert len(index) > 60
    for name in index:
        assert (VECTORS / name).is_file()


def test_single_records_decode_and_verify() -> None:
    doc = load(VECTORS / "valid" / "records.json")
    key = h(doc["public_key"])
    for entry in doc["records"]:
        raw = (VECTORS / "valid" / entry["file"]).read_bytes()
        assert raw.hex() == entry["cose"]
        rec = ledger.decode_record(raw)
        rec.verify_signature(key)
        assert rec.id.hex() == entry["id"]
        assert rec.payload.hex() == entry["payload"]
        assert rec.signed_bytes.hex() == entry["sig_structure"]
        assert rec.to_json() == {k: entry[k] for k in rec.to_json()}
        # The body is exactly what the schema allows, and re-encoding gives the same payload bytes.
        assert rec.body is not None
        ledger.validate_body(rec.kind, rec.body)
        assert cbor.encode(cbor.decode(rec.payload)) == rec.payload


def test_kind_and_time_read_without_the_body_agree_with_the_full_decode() -> None:
    doc = load(VECTORS / "valid" / "records.json")
    raws = [(VECTORS / "valid" / entry["file"]).read_bytes() for entry in doc["records"]]
    for name in ("chain-basic", "chain-rotation", "chain-detached"):  # detached bodies too
        raws += [h(r["cose"]) for r in load(VECTORS / "valid" / f"{name}.json")["records"]]
    assert len({ledger.decode_record(raw).kind for raw in raws}) > 3
    for raw in raws:
        rec = ledger.decode_record(raw)
        assert kind_and_time(raw) == (rec.kind, rec.time)
    for bad in (b"", b"\xa0", raws[0][:-1], raws[0] + b"\x00"):
        with pytest.raises(MalformedRecord):
            kind_and_time(bad)


@pytest.mark.parametrize("name", ["chain-basic", "chain-rotation", "chain-detached"])
def test_valid_chains_verify_to_the_expected_state(name: str) -> None:
    doc = load(VECTORS / "valid" / f"{name}.json")
    raws = [h(r["cose"]) for r in doc["records"]]
    state = ledger.verify_chain(raws)
    expect = doc["expect"]
    assert state.device_id.hex() == expect["device_id"]
    assert state.length == expect["length"]
    assert state.head.hex() == expect["head"]
    assert state.key.hex() == expect["key"]
    assert (state.boot, state.time) == (expect["boot"], expect["time"])
    # ChainState survives its own encoding.
    assert ledger.ChainState.from_cbor(state.to_cbor()) == state
    for raw, entry in zip(raws, doc["records"], strict=True):
        assert ledger.decode_record(raw).id.hex() == entry["id"]


def test_rotation_moves_the_signing_key() -> None:
    doc = load(VECTORS / "valid" / "chain-rotation.json")
    recs = [ledger.decode_record(h(r["cose"])) for r in doc["records"]]
    old, new = h(doc["old_public_key"]), h(doc["new_public_key"])
    recs[2].verify_signature(old)  # the rotation itself is signed by the old key
    recs[3].verify_signature(new)
    with pytest.raises(ledger.BadSignature):
        recs[3].verify_signature(old)


def test_detached_body_attaches_and_is_checked() -> None:
    doc = load(VECTORS / "valid" / "chain-detached.json")
    rec = ledger.decode_record(h(doc["records"][1]["cose"]))
    assert rec.detached and rec.body is None
    body = h(doc["detached_bodies"]["1"])
    full = rec.with_body(body)
    assert full.body is not None and full.body["event"] == "received"
    assert full.id == rec.id  # attaching a body never changes what was signed
    with pytest.raises(ledger.MalformedRecord):
        rec.with_body(body + b"\x00")


def test_checkpoints_receipts_and_consistency_verify() -> None:
    doc = load(VECTORS / "valid" / "checkpoints.json")
    hub = h(doc["hub_public_key"])
    tree = ledger.MerkleTree(ledger.leaf_hash(h(x)) for x in doc["leaves"])
    cps = [decode_checkpoint(h(c["cose"])) for c in doc["checkpoints"]]
    for cp, entry in zip(cps, doc["checkpoints"], strict=True):
        cp.verify(hub)
        assert cp.root == tree.root(entry["tree_size"])
        assert cp.hub_id.hex() == doc["hub_id"]
        assert (VECTORS / "valid" / f"checkpoint-{cp.tree_size}.cbor").read_bytes() == cp.raw
    c = doc["consistency"]
    verify_checkpoints_consistent(cps[0], cps[1], [h(x) for x in c["proof"]], hub)
    for entry in doc["receipts"]:
        got = verify_receipt(h(entry["receipt"]), h(entry["record"]), hub)
        assert (got.index, got.tree_size, got.root) == (entry["leaf_index"], cps[1].tree_size, cps[1].root)


def test_split_view_evidence_verifies() -> None:
    doc = load(VECTORS / "valid" / "split-view.json")
    hub = h(doc["hub_public_key"])
    accepted = {c["cose"] for c in load(VECTORS / "valid" / "checkpoints.json")["checkpoints"]}
    assert [e["conclusive"] for e in doc["evidence"]] == [True, False]
    for entry in doc["evidence"]:
        evidence = verify_split_view(h(entry["cbor"]), hub)
        assert evidence.conclusive is entry["conclusive"] and evidence.accepted.raw.hex() in accepted
        assert evidence.encode() == h(entry["cbor"])


def test_valid_bundles_verify_and_give_what_they_expect() -> None:
    doc = load(VECTORS / "valid" / "bundle.json")
    newer = (VECTORS / "valid" / doc["file"]).read_bytes()
    older = (VECTORS / "valid" / doc["older_file"]).read_bytes()
    expect = doc["expect"]
    report = ledger.verify_bundle(newer, hub_key=h(doc["hub_public_key"]))
    assert report.ok, [str(p) for p in report.all_problems]
    assert (report.hub_log, report.decisions) == (expect["hub_log"], expect["decisions"])
    assert [c.tree_size for c in report.checkpoints] == expect["checkpoints"]
    assert report.receipts_checked == expect["receipts"]
    assert [{"device": d.device, "records": d.records, "revoked_from": d.revoked_from}
            for d in report.devices] == expect["devices"]
    assert ledger.verify_bundle(older).ok
    old, new = ledger.compare_bundles(older, newer)
    assert {"from": old.tree_size, "to": new.tree_size} == expect["against"]
    ledger.compare_bundles(newer, newer)  # equal sizes: no proof entry needed
    own = [ledger.decode_record(h(r["cose"])) for r in doc["hub_log"]]
    assert [r.raw for r in own] == ledger.decode_bundle(newer).hub_log


def test_records_at_the_limits_decode() -> None:
    doc = load(VECTORS / "valid" / "limits.json")
    for raw in doc["records"].values():
        ledger.decode_record(h(raw))
    cbor.decode(h(doc["cbor_depth_16"]))


def _inp(vec: dict[str, Any], name: str) -> bytes:
    return h(vec["input"][name])


def _run_decode_record(v: dict[str, Any]) -> None:
    ledger.decode_record(_inp(v, "record"))


def _run_cbor(v: dict[str, Any]) -> None:
    cbor.decode(_inp(v, "data"))


def _run_attach(v: dict[str, Any]) -> None:
    ledger.decode_record(_inp(v, "record")).with_body(_inp(v, "body"))


def _run_chain(v: dict[str, Any]) -> None:
    ledger.verify_chain([h(x) for x in v["input"]["records"]])


def _run_records(v: dict[str, Any]) -> None:
    recs = [ledger.decode_record(h(x)) for x in v["input"]["records"]]
    ledger.verify_records(ledger.ChainState.empty(recs[0].device_id), recs,
                          revoked_from=v["input"]["revoked_from"])


def _run_bundle(v: dict[str, Any]) -> None:
    pinned = v["input"].get("hub_key")
    report = ledger.verify_bundle(_inp(v, "bundle"), hub_key=h(pinned) if pinned else None)
    assert not report.ok
    raise report.all_problems[0]


def _run_against(v: dict[str, Any]) -> None:
    """`jejak-verify NEWER --against OLDER`: the newer bundle verifies on its own, then the comparison."""
    newer = _inp(v, "newer")
    report = ledger.verify_bundle(newer)
    if not report.ok:
        raise report.all_problems[0]
    ledger.compare_bundles(_inp(v, "older"), newer)


def _run_fork(v: dict[str, Any]) -> None:
    ev = ledger.ForkEvidence.from_cbor(_inp(v, "evidence"))
    key = v["input"]["public_key"]
    ev.verify(h(key) if key else None)  # the evidence stands on its own ...
    raise ev.error()  # ... and its verdict is a fork


def _run_inclusion(v: dict[str, Any]) -> None:
    i = v["input"]
    verify_inclusion(h(i["leaf"]), i["index"], i["size"], [h(x) for x in i["path"]], h(i["root"]))


def _run_receipt(v: dict[str, Any]) -> None:
    verify_receipt(_inp(v, "receipt"), _inp(v, "leaf"), _inp(v, "hub_key"))


def _run_consistency(v: dict[str, Any]) -> None:
    i = v["input"]
    verify_consistency(i["first"], i["second"], h(i["first_root"]), h(i["second_root"]),
                       [h(x) for x in i["proof"]])


def _run_checkpoint(v: dict[str, Any]) -> None:
    decode_checkpoint(_inp(v, "checkpoint")).verify(_inp(v, "hub_key"))


def _run_checkpoint_pair(v: dict[str, Any]) -> None:
    i = v["input"]
    verify_checkpoints_consistent(decode_checkpoint(h(i["older"])), decode_checkpoint(h(i["newer"])),
                                  [h(x) for x in i["proof"]], h(i["hub_key"]))


CHECKS: dict[str, Callable[[dict[str, Any]], None]] = {
    "decode_record": _run_decode_record, "cbor_decode": _run_cbor, "attach_body": _run_attach,
    "verify_chain": _run_chain, "verify_records": _run_records, "verify_bundle": _run_bundle,
    "verify_against": _run_against,
    "fork_evidence": _run_fork, "inclusion": _run_inclusion, "receipt": _run_receipt,
    "consistency_proof": _run_consistency, "checkpoint": _run_checkpoint, "checkpoint_pair": _run_checkpoint_pair,
}


@pytest.mark.parametrize("path", INVALID, ids=[p.stem for p in INVALID])
def test_invalid_vector_gets_its_error_code(path: Path) -> None:
    vec = load(path)
    raw_file = path.with_suffix(".cbor")
    if raw_file.exists():
        assert raw_file.read_bytes().hex() in (vec["input"].get("record"), vec["input"].get("evidence"),
                                                vec["input"].get("checkpoint"))
    # Each failure has one code, and the file's name starts with it (FORMAT.md §13).
    assert path.stem.startswith(vec["code"].lower().replace("_", "-")), path.stem
    with pytest.raises(LedgerError) as info:
        CHECKS[vec["check"]](vec)
    assert info.value.code == vec["code"], f"{path.name}: {info.value}"
    assert str(info.value)  # every error says something


def test_every_failure_class_has_vectors() -> None:
    codes = {load(p)["code"] for p in INVALID}
    assert codes == {"MALFORMED", "INVALID_SIGNATURE", "BROKEN_CHAIN", "FORK_DETECTED", "INVALID_PROOF",
                     "INVALID_CHECKPOINT", "REVOKED_KEY", "UNKNOWN_KEY"}


def test_malformed_record_vectors_are_signed_so_only_their_defect_is_wrong() -> None:
    """A lenient decoder that skipped the strictness rules would find a good signature: the rules matter."""
    key = ledger.Ed25519Signer.from_seed(generate.seed("kitchen-exit-1")).public_key
    signed = 0
    for path in INVALID:
        vec = load(path)
        if vec["check"] != "decode_record":
            continue
        try:
            msg = ledger.cose.parse_sign1(_inp(vec, "record"))
        except LedgerError:
            continue
        if msg.payload is None or msg.headers.get(1) != -8:
            continue
        from ledger.record import RECORD_AAD
        msg.verify(key, RECORD_AAD)
        signed += 1
    assert signed >= 10


def test_a_peeked_kind_is_the_decoded_one_and_bad_bytes_never_raise() -> None:
    """`peek_kind` reads the fixed fields only: on every valid record it names the kind `decode_record` gives,
    and on every malformed one it gives a kind or None, never an error (its reader decodes what it keeps)."""
    doc = load(VECTORS / "valid" / "records.json")
    for entry in doc["records"]:
        raw = (VECTORS / "valid" / entry["file"]).read_bytes()
        assert peek_kind(raw) == ledger.decode_record(raw).kind
    peeked = 0
    for path in INVALID:
        vec = load(path)
        if vec["check"] == "decode_record":
            kind = peek_kind(_inp(vec, "record"))
            assert kind is None or kind in ledger.KINDS
            peeked += 1
    assert peeked >= 10 and peek_kind(b"") is None and peek_kind(b"\xd2\x84" * 50) is None


def test_a_signed_message_cut_by_position_is_the_decoded_records_and_bad_bytes_never_raise() -> None:
    """`signed_message` (what the hub's signature workers check, without a decode) is, on every valid record,
    exactly the signature and the signed bytes `decode_record` gives, and verifies with the record's key; on
    malformed bytes it gives None or a message, never an error (the decode that decides refuses them)."""
    doc = load(VECTORS / "valid" / "records.json")
    keys = [h(k["public_key"]) for k in load(VECTORS / "keys.json")["keys"].values()]
    verified = 0
    for entry in doc["records"]:
        raw = (VECTORS / "valid" / entry["file"]).read_bytes()
        rec = ledger.decode_record(raw)
        message = signed_message(raw)
        assert message == rec.signature + rec.signed_bytes
        for key in keys:  # the same verdict as the record's own check, with every test key
            try:
                rec.verify_signature(key)
            except ledger.BadSignature:
                with pytest.raises(ledger.BadSignature):
                    verify_signed_message(key, message)
                continue
            verify_signed_message(key, message)
            with pytest.raises(ledger.BadSignature):
                verify_signed_message(key, message[:-1] + bytes([message[-1] ^ 1]))
            verified += 1
    assert verified >= 5
    cut = 0
    for path in INVALID:
        vec = load(path)
        if vec["check"] == "decode_record":
            message = signed_message(_inp(vec, "record"))
            assert message is None or isinstance(message, bytes)
            cut += 1
    assert cut >= 10 and signed_message(b"") is None and signed_message(b"\xd2\x84" * 50) is None


def test_readme_documents_every_file_and_check() -> None:
    readme = (VECTORS / "README.md").read_text()
    others = [VECTORS / "keys.json", VECTORS / "index.json", VECTORS / "rfc6962-transparency-dev.json"]
    for path in [*sorted(VECTORS.glob("valid/*.json")), *others]:
        assert f"`{path.relative_to(VECTORS)}`" in readme, path.name
    for check in CHECKS:
        assert f"| `{check}` |" in readme, check
