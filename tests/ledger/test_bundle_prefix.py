"""What a bundle counts as verified when a log fails: the verified prefix of the hub's own log and of each device
log (FORMAT.md §12.3 steps 5, 6 and 8), and every problem the steps report, in their order."""

from __future__ import annotations

from dataclasses import replace

import pytest

from ledger import (
    BundleWriter,
    ChainBuilder,
    Ed25519Signer,
    Record,
    cbor,
    decode_record,
    device_id_for,
    encode_record,
)
from ledger import bundle as bundle_module
from ledger.authority import Decision
from ledger.bundle import Bundle, verify_bundle

HUB = Ed25519Signer.from_seed(b"\x61" * 32)
DEVICE = Ed25519Signer.from_seed(b"\x62" * 32)
STRANGER = Ed25519Signer.from_seed(b"\x63" * 32)
HUB_ID = device_id_for(HUB.public_key)
NOTE = {"text": "kept beside the record"}


def _written() -> tuple[Bundle, list[Record]]:
    """A hub that approved one device and later revoked it past its records: a hub log of three records, the
    device's six records (seq 2 detached), one checkpoint, every record with its receipt."""
    builder = ChainBuilder(DEVICE, clock=lambda: 100, boot=0)
    records = [builder.genesis(), builder.append("note", {"text": "a"}), builder.append("note", NOTE, detach=True),
               *(builder.append("note", {"text": str(i)}) for i in range(3))]
    writer = BundleWriter(HUB, clock=lambda: 50)
    writer.accept(*records)
    writer.decide(Decision(action="revoke", device_id=builder.device_id, from_seq=99))
    writer.checkpoint(200)
    bundle = writer.bundle(created=300, bodies={builder.device_id: {2: cbor.encode(NOTE)}})
    assert verify_bundle(bundle.encode()).ok
    assert len(bundle.hub_log) == 3
    return bundle, records


def _resigned(raw: bytes, signer: Ed25519Signer, *, detach: bool = False, **changes: object) -> bytes:
    rec = decode_record(raw)
    assert rec.body is not None
    body = dict(rec.body) | changes
    return encode_record(signer, device_id=rec.device_id, seq=rec.seq, prev=rec.prev, time=rec.time,
                         boot=rec.boot, kind=rec.kind, body=body, detach=detach).raw


def _id(raw: bytes) -> bytes:
    return decode_record(raw).id


def test_a_hub_log_that_misses_its_checkpoints_head_still_has_its_records_verified() -> None:
    # The hub's last decision replaced by another it signed: every record of hub_log verified (step 5 is about
    # the head, not the records), so the new one needs a receipt (step 8). It was counted unverified, and the
    # missing receipt went unreported.
    bundle, _ = _written()
    hub_log = [*bundle.hub_log[:2], _resigned(bundle.hub_log[2], HUB, from_seq=98)]
    report = verify_bundle(replace(bundle, hub_log=hub_log).sealed(HUB).encode())
    assert [p.code for p in report.ordered] == ["BROKEN_CHAIN", "MALFORMED", "INVALID_PROOF"]
    assert "does not hold the head" in str(report.ordered[0])
    assert "does not hold" in str(report.ordered[1])  # the receipt of the record it replaced
    assert report.ordered[2].where == f"device {HUB_ID.hex()} seq 2"
    assert report.hub_log == 3
    assert report.receipts_checked == 2 + 6  # the two hub records kept, and the device's


def test_the_verified_prefix_of_a_failing_hub_log_needs_its_receipts_and_nothing_past_it_is_checked() -> None:
    # seq 2 of the hub's log carried by digest: it fails (step 5), seq 0 and 1 verified. Seq 0's receipt is
    # dropped (INVALID_PROOF); seq 2's is garbage, not checked: past the verified prefix (step 8).
    bundle, _ = _written()
    detached = _resigned(bundle.hub_log[2], HUB, detach=True)
    receipts = []
    for record_id, receipt in bundle.receipts:
        if record_id == _id(bundle.hub_log[2]):
            receipts.append((_id(detached), b"not a receipt"))
        elif record_id != _id(bundle.hub_log[0]):
            receipts.append((record_id, receipt))
    tampered = replace(bundle, hub_log=[*bundle.hub_log[:2], detached], receipts=receipts).sealed(HUB)
    report = verify_bundle(tampered.encode())
    assert [p.code for p in report.ordered] == ["BROKEN_CHAIN", "INVALID_PROOF"]
    assert "without a receipt" in str(report.ordered[1])
    assert report.ordered[1].where == f"device {HUB_ID.hex()} seq 0"
    assert (report.hub_log, report.receipts_checked) == (2, 1 + 6)


@pytest.mark.parametrize("batch", [2, bundle_module.BATCH])
def test_a_device_log_cut_by_its_body_also_reports_the_failure_of_its_acceptance(
        monkeypatch: pytest.MonkeyPatch, batch: int) -> None:
    # Step 6.5 cuts the prefix at seq 2 (a short body), step 6.4 fails at seq 4 (a stranger's signature): both
    # are reported, 6.5's first. Only the first was.
    monkeypatch.setattr(bundle_module, "BATCH", batch)
    bundle, _ = _written()
    log = bundle.logs[0]
    records = list(log.records)
    records[4] = _resigned(records[4], STRANGER)
    tampered = replace(bundle, logs=[replace(log, records=records, bodies={2: log.bodies[2][:-1]})]).sealed(HUB)
    report = verify_bundle(tampered.encode())
    [device] = report.devices
    assert [p.code for p in device.problems] == ["MALFORMED", "INVALID_SIGNATURE"]
    assert device.problems[0].where is not None and device.problems[0].where.endswith("seq 2")
    assert device.problems[1].where is not None and device.problems[1].where.endswith("seq 4")
    assert [p.code for p in report.ordered] == ["MALFORMED", "INVALID_SIGNATURE", "MALFORMED"]
    assert (device.records, device.last_seq, device.receipts) == (2, 1, 2)
