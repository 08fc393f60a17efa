"""No single-bit change of a shipped example bundle verifies, and each structural tampering fails with its code."""

from __future__ import annotations

import copy
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import ledger
from ledger import cbor
from ledger.authority import Decision
from tools import example

ROOT = Path(__file__).resolve().parents[2]
BUNDLES = {name: (ROOT / "docs" / "examples" / name).read_bytes() for name in (example.NEWER, example.OLDER)}
NEWER = BUNDLES[example.NEWER]
HUB = example.example_signer("hub-jawa-barat")
FLIPS = 1000  # seeded single-bit flips per bundle, on top of every bit of the structural bytes


def verdict(data: bytes) -> str:
    """`OK` or the code of the first problem, as jejak-verify would exit with it."""
    try:
        report = ledger.verify_bundle(data)
    except ledger.LedgerError as exc:
        return exc.code
    return report.all_problems[0].code if report.all_problems else "OK"


def byte_string_contents(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of the content of every byte string the bundle's own CBOR holds (records, checkpoints,
    receipts, hashes): the bytes outside them are the bundle's structure (heads, keys, text, integers)."""
    spans: list[tuple[int, int]] = []

    def head(i: int) -> tuple[int, int, int]:
        major, info = data[i] >> 5, data[i] & 31
        if info < 24:
            return major, info, i + 1
        size = {24: 1, 25: 2, 26: 4, 27: 8}[info]
        return major, int.from_bytes(data[i + 1:i + 1 + size], "big"), i + 1 + size

    def item(i: int) -> int:
        major, arg, j = head(i)
        if major in (2, 3):
            if major == 2:
                spans.append((j, j + arg))
            return j + arg
        if major in (4, 5):
            for _ in range(arg * (2 if major == 5 else 1)):
                j = item(j)
            return j
        return item(j) if major == 6 else j

    assert item(0) == len(data)
    return spans


def flipped(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


@pytest.mark.parametrize("name", sorted(BUNDLES))
def test_no_single_bit_flip_verifies(name: str) -> None:
    data = BUNDLES[name]
    assert verdict(data) == "OK"
    inside = {i for start, end in byte_string_contents(data) for i in range(start, end)}
    structural = [8 * i + b for i in range(len(data)) if i not in inside for b in range(8)]
    seeded = random.Random(f"jejak/{name}").sample(range(8 * len(data)), FLIPS)
    assert len(structural) > 3000
    verified = [bit for bit in structural + seeded if verdict(flipped(data, bit)) == "OK"]
    assert verified == [], f"{len(verified)} single-bit changes of {name} verify, e.g. bit {verified[:5]}"


# --- structural tamperings, each with the code FORMAT.md §12.3 gives it -------------------------------------


def bundle_map() -> dict[str, Any]:
    item = cbor.decode(NEWER)
    assert isinstance(item, dict)
    return copy.deepcopy(item)


def log_index(item: dict[str, Any], name: str) -> int:
    device = ledger.device_id_for(example.example_signer(name).public_key)
    return next(i for i, log in enumerate(item["logs"]) if log["device"] == device)


KITCHEN, GATE, STALL = "sppg-bandung-01/kitchen-exit", "sdn-cibeunying-2/school-gate", "pasar-kosambi/stall-17"


def edit(fn: Callable[[dict[str, Any]], object]) -> bytes:
    item = bundle_map()
    fn(item)
    return cbor.encode(item)


def records_of(item: dict[str, Any], name: str) -> list[bytes]:
    records: list[bytes] = item["logs"][log_index(item, name)]["records"]
    return records


def drop_receipt(item: dict[str, Any], raw: bytes) -> None:
    rid = ledger.decode_record(raw).id
    item["receipts"] = [r for r in item["receipts"] if r[0] != rid]


def hub_log_records(item: dict[str, Any]) -> list[ledger.Record]:
    return [ledger.decode_record(r) for r in item["hub_log"]]


def resign_hub_log(item: dict[str, Any], bodies: list[dict[str, Any]]) -> None:
    """The hub's own log rewritten with the real hub key (its genesis kept): everything is validly signed,
    but the checkpoints name another head."""
    own = hub_log_records(item)
    state = ledger.verify_chain(item["hub_log"][:1])
    builder = ledger.ChainBuilder(HUB, clock=lambda: own[-1].time, boot=own[-1].boot, state=state)
    item["hub_log"] = item["hub_log"][:1] + [builder.append("authority", body).raw for body in bodies]


def decision_bodies(item: dict[str, Any]) -> list[dict[str, Any]]:
    return [dict(r.body) for r in hub_log_records(item)[1:] if r.body is not None]


def _drop_record(item: dict[str, Any]) -> None:
    del records_of(item, KITCHEN)[2]


def _swap_records(item: dict[str, Any]) -> None:
    recs = records_of(item, KITCHEN)
    recs[2], recs[3] = recs[3], recs[2]


def _reencode_record(item: dict[str, Any]) -> None:
    # The same record with its payload's byte-string head one byte longer than it must be (§2.1).
    raw = records_of(item, KITCHEN)[1]
    assert raw[25] == 0x58
    records_of(item, KITCHEN)[1] = raw[:25] + b"\x59\x00" + raw[26:]


def _resign_record(item: dict[str, Any]) -> None:
    rec = ledger.decode_record(records_of(item, KITCHEN)[2])
    other = ledger.encode_record(example.example_signer("someone else"), device_id=rec.device_id, seq=rec.seq,
                                 prev=rec.prev, time=rec.time, boot=rec.boot, kind=rec.kind, body=rec.body or {})
    records_of(item, KITCHEN)[2] = other.raw


def _truncate_log(item: dict[str, Any]) -> None:
    recs = records_of(item, KITCHEN)
    for raw in recs[-2:]:
        drop_receipt(item, raw)
    del recs[-2:]


def _drop_log(item: dict[str, Any]) -> None:
    for raw in records_of(item, GATE):
        drop_receipt(item, raw)
    del item["logs"][log_index(item, GATE)]


def _append_record(item: dict[str, Any]) -> None:
    # A record validly signed by the device, which the hub never received: no receipt can show it.
    recs = records_of(item, KITCHEN)
    last = ledger.decode_record(recs[-1])
    state = ledger.ChainState(device_id=last.device_id, length=last.seq + 1, head=last.id,
                              key=example.example_signer(KITCHEN).public_key, boot=last.boot, time=last.time)
    builder = ledger.ChainBuilder(example.example_signer(KITCHEN), clock=lambda: last.time + 60, boot=last.boot,
                                  state=state)
    recs.append(builder.append("note", {"text": "signed after the export"}).raw)


def _drop_revocation(item: dict[str, Any]) -> None:
    drop_receipt(item, item["hub_log"][-1])
    item["hub_log"].pop()


def _alter_revocation(item: dict[str, Any]) -> None:
    own = hub_log_records(item)
    revocation = own[-1]
    assert revocation.body is not None and revocation.body["action"] == "revoke"
    later = dict(revocation.body, from_seq=revocation.body["from_seq"] + 1)
    forged = ledger.encode_record(HUB, device_id=revocation.device_id, seq=revocation.seq, prev=revocation.prev,
                                  time=revocation.time, boot=revocation.boot, kind="authority", body=later)
    parts = list(cbor.decode(forged.raw, tag=18).value)
    parts[3] = revocation.signature  # the bytes changed, the hub's signature kept
    item["hub_log"][-1] = cbor.encode(parts, tag=18)


def _backdate_revocation(item: dict[str, Any]) -> None:
    # Re-signed with the real hub key so that the revocation starts at seq 3: the checkpoints name another head.
    bodies = decision_bodies(item)
    bodies[-1]["from_seq"] = 3
    resign_hub_log(item, bodies)


def _drop_approval(item: dict[str, Any]) -> None:
    drop_receipt(item, item["hub_log"][2])
    del item["hub_log"][2]


def _forge_without_approval(item: dict[str, Any]) -> None:
    resign_hub_log(item, [b for b in decision_bodies(item) if b["action"] != "approve"
                          or b["device"] != ledger.device_id_for(example.example_signer(GATE).public_key)])


def _approve_another_key(item: dict[str, Any]) -> None:
    bodies = decision_bodies(item)
    bodies[0]["key"] = example.example_signer("a stolen card").public_key
    resign_hub_log(item, bodies)


def _withdraw_from_zero(item: dict[str, Any]) -> None:
    # A withdrawal appended and signed by the real hub key, after the largest checkpoint.
    device = ledger.device_id_for(example.example_signer(STALL).public_key)
    resign_hub_log(item, [*decision_bodies(item), Decision(action="withdraw", device_id=device, from_seq=0).body()])


def _swap_decisions(item: dict[str, Any]) -> None:
    item["hub_log"][2], item["hub_log"][3] = item["hub_log"][3], item["hub_log"][2]


TAMPERINGS: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "dropped record": (_drop_record, "BROKEN_CHAIN"),
    "swapped records": (_swap_records, "BROKEN_CHAIN"),
    "re-encoded record": (_reencode_record, "MALFORMED"),
    "record re-signed with another key": (_resign_record, "INVALID_SIGNATURE"),
    "truncated log and its receipts": (_truncate_log, "INVALID_SIGNATURE"),  # only the hub's seal shows it
    "a whole log and its receipts dropped": (_drop_log, "INVALID_SIGNATURE"),
    "appended record": (_append_record, "INVALID_PROOF"),
    "dropped revocation": (_drop_revocation, "BROKEN_CHAIN"),
    "altered revocation": (_alter_revocation, "INVALID_SIGNATURE"),
    "back-dated revocation, re-signed by the hub key": (_backdate_revocation, "BROKEN_CHAIN"),
    "dropped approval": (_drop_approval, "BROKEN_CHAIN"),
    "hub log re-signed without an approval": (_forge_without_approval, "BROKEN_CHAIN"),
    "approval of another key, re-signed": (_approve_another_key, "BROKEN_CHAIN"),
    "withdrawal added after the checkpoint": (_withdraw_from_zero, "BROKEN_CHAIN"),
    "decisions swapped": (_swap_decisions, "BROKEN_CHAIN"),
}


@pytest.mark.parametrize("name", sorted(TAMPERINGS))
def test_structural_tampering_gets_its_code(name: str) -> None:
    fn, code = TAMPERINGS[name]
    assert verdict(edit(fn)) == code


def test_truncated_file_is_malformed() -> None:
    for cut in (1, len(NEWER) // 2, len(NEWER) - 1):
        assert verdict(NEWER[:cut]) == "MALFORMED"
    assert verdict(NEWER + b"\x00") == "MALFORMED"


def test_hub_log_decisions_set_the_revocation_point() -> None:
    """The revocation point comes from the verified hub log, nowhere else: re-signing the whole example with
    an earlier revocation (a new, consistent hub history) refuses the gate's records from there."""
    hub, devices = example._story()
    writer = hub.writer
    gate = next(d for d in devices if d.name == GATE)
    writer.decide(Decision(action="revoke", device_id=gate.builder.device_id, from_seq=2))
    writer.checkpoint(writer.checkpoints[-1].time + 60)
    bundle = writer.bundle(created=writer.checkpoints[-1].time + 60,
                           bodies={d.builder.device_id: d.bodies for d in devices})
    report = ledger.verify_bundle(bundle.encode())
    problems = [p for d in report.devices for p in d.problems]
    assert [p.code for p in problems] == ["REVOKED_KEY"] and "seq 2" in (problems[0].where or "")
    assert {d.device: d.revoked_from for d in report.devices}[gate.builder.device_id.hex()] == 2
