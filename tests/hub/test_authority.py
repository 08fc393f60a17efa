"""The hub's decisions live in its own signed log: the edges' revocation list, its ingest and an auditor's
bundle check all read the revocation point from the same entries, also after a restart."""

from __future__ import annotations

import logging
from pathlib import Path

from hub.security import make_revocations
from hub.service import Hub
from hub.store import LmdbHubStore
from ledger import Ed25519Signer, decode_bundle, decode_record, sign_checkpoint, verify_bundle
from ledger.enroll import read_revocations

from .conftest import Clock, enroll, new_device

HUB_KEY = Ed25519Signer.from_seed(b"\x51" * 32)


def test_decisions_revocation_list_ingest_and_bundle_agree(tmp_path: Path) -> None:
    clock = Clock()
    hub = Hub(LmdbHubStore(tmp_path / "hub"), HUB_KEY, clock=clock)
    signer, builder = new_device(clock)
    device_id = enroll(hub, signer, clock)
    records = [builder.genesis(), builder.append("note", {"text": "a"})]
    records.append(builder.rotate(Ed25519Signer.from_seed(b"\x52" * 32)))
    records += [builder.append("note", {"text": str(i)}) for i in range(4)]
    assert hub.ingest(device_id, [r.raw for r in records[:5]]).accepted == 5
    hub.revoke(device_id, from_seq=5)
    refused = hub.ingest(device_id, [r.raw for r in records[4:]])
    assert refused.accepted == 0 and refused.problem is not None and refused.problem["code"] == "REVOKED_KEY"

    actions = [(r.body["action"], r.body["from_seq"]) for r in hub.own_log()[1:] if r.body is not None]
    assert actions == [("approve", 0), ("rotate", 2), ("revoke", 5)]
    # The edges' list, the hub's own view and what an auditor derives from a bundle: one revocation point.
    points = read_revocations(make_revocations(hub), HUB_KEY.public_key).points
    assert points == {device_id: 5} == dict(hub.authority.revocations())
    data = hub.export()
    report = verify_bundle(data, hub_key=HUB_KEY.public_key)
    assert report.ok, [str(p) for p in report.all_problems]
    assert [(d.device, d.records, d.revoked_from) for d in report.devices] == [(device_id.hex(), 5, 5)]
    assert report.decisions == 3 and report.hub_log == 4
    # Every checkpoint names the head of the hub's log it covers.
    cp = hub.latest_checkpoint()
    assert cp is not None and cp.authority == (4, hub.own_log()[-1].id)
    assert decode_bundle(data).hub_log == [r.raw for r in hub.own_log()]

    # A restart rebuilds the same standing from the stored log and goes on with a new boot.
    hub.store.close()
    again = Hub(LmdbHubStore(tmp_path / "hub"), HUB_KEY, clock=clock)
    try:
        assert dict(again.authority.revocations()) == {device_id: 5}
        withdrawn = again.withdraw(device_id, from_seq=3)
        assert withdrawn.revoked_from == 3  # the smaller point stands: a revocation is never lifted
        last = decode_record(again.own_log()[-1].raw)
        assert last.boot == again.own_log()[-2].boot + 1 and last.body is not None
        assert last.body["action"] == "withdraw"
        assert again.approve(device_id).status == "revoked"
        # Withdrawn from seq 3 with seqs 3 and 4 held: the export ends the range before the point, and verifies.
        report = verify_bundle(again.export(), hub_key=HUB_KEY.public_key)
        assert report.ok, [str(p) for p in report.all_problems]
        assert [(d.records, d.last_seq, d.revoked_from) for d in report.devices] == [(3, 2, 3)]
        assert len(again.store.log_range(device_id, 0, 10)) == 5  # held all the same
    finally:
        again.store.close()


def test_a_store_with_checkpoints_from_before_the_hub_log_still_exports_a_bundle_that_verifies(tmp_path: Path) -> None:
    clock = Clock()
    hub = Hub(LmdbHubStore(tmp_path / "hub"), HUB_KEY, clock=clock)
    signer, builder = new_device(clock)
    device_id = enroll(hub, signer, clock)
    assert hub.ingest(device_id, [builder.genesis().raw, builder.append("note", {"text": "a"}).raw]).accepted
    # A checkpoint as hubs signed them before label -65538: kept in the store, left out of bundles.
    old = sign_checkpoint(HUB_KEY, tree_size=len(hub.tree), root=hub.tree.root(), time=clock())
    hub.store.put_checkpoint(old.tree_size, old.time, old.raw)
    hub.store.close()
    reopened = Hub(LmdbHubStore(tmp_path / "hub"), HUB_KEY, clock=clock)
    try:
        assert reopened.latest_checkpoint() == old
        data = reopened.export()
        report = verify_bundle(data, hub_key=HUB_KEY.public_key)
        assert report.ok, [str(p) for p in report.all_problems]
        assert old.raw not in decode_bundle(data).checkpoints
    finally:
        reopened.store.close()


def test_a_device_revoked_from_its_genesis_exports_no_record_and_the_bundle_verifies(tmp_path: Path) -> None:
    clock = Clock()
    hub = Hub(LmdbHubStore(tmp_path / "hub"), HUB_KEY, clock=clock)
    try:
        signer, builder = new_device(clock)
        device_id = enroll(hub, signer, clock)
        records = [builder.genesis()] + [builder.append("note", {"text": str(i)}) for i in range(3)]
        assert hub.ingest(device_id, [r.raw for r in records]).accepted == 4
        hub.revoke(device_id, from_seq=0)
        report = verify_bundle(hub.export(), hub_key=HUB_KEY.public_key)
        assert report.ok, [str(p) for p in report.all_problems]
        assert [d.records for d in report.devices] == [0] and report.decisions == 2
    finally:
        hub.store.close()


def test_an_operators_decisions_are_in_the_hubs_journal(tmp_path: Path, caplog) -> None:
    """Approving and revoking say so in the hub's log, beside the enrollment that asked (an operator reading the
    journal after a first start saw the hub's own attestor 'pending' and never that it was approved)."""
    caplog.set_level(logging.INFO, logger="jejak.hub")
    clock = Clock()
    hub = Hub(LmdbHubStore(tmp_path / "hub"), HUB_KEY, clock=clock)
    try:
        signer, _ = new_device(clock)
        device_id = enroll(hub, signer, clock, site="sppg-07")
        hub.revoke(device_id, from_seq=4)
        lines = [r.getMessage() for r in caplog.records if device_id.hex() in r.getMessage()]
        assert lines[0].endswith("(kitchen_exit at sppg-07): pending")
        assert "approved: its records are accepted from now on" in lines[1]
        assert "revoked from seq 4" in lines[2]
        hub.approve(device_id)
        assert "still refused from seq 4" in caplog.records[-1].getMessage()
        hub.resolve_fork(device_id)
        assert "fork resolved" in caplog.records[-1].getMessage()
    finally:
        hub.store.close()


def test_the_hubs_own_attestation_log_cannot_be_revoked(tmp_path: Path) -> None:
    # Revoked, the hub could never start again (its bridges attest under that log), and a revocation is never lifted.
    from hub.bridges.attest import Attestor
    from hub.service import HubError

    hub = Hub(LmdbHubStore(tmp_path / "hub"), HUB_KEY, clock=Clock())
    Attestor(hub).start()
    assert hub.store.get_device(hub.hub_id).status == "active"
    for withdraw in (hub.revoke, hub.withdraw):
        try:
            withdraw(hub.hub_id, 0)
            raise AssertionError("the hub's own log was revoked")
        except HubError as exc:
            assert "own attestation log" in exc.message and "[bridges] enabled = false" in (exc.hint or "")
    assert hub.store.get_device(hub.hub_id).status == "active"
    assert hub.authority.revoked_from(hub.hub_id) is None
