"""The hub writes an audit bundle a log at a time: the bytes are exactly the bundle `Bundle.encode()` makes,
and the hub's memory follows the largest log, not the bundle."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest

from hub.service import Hub
from hub.store import LmdbHubStore
from ledger import (
    Bundle,
    BundleEncoder,
    ChainBuilder,
    Ed25519Signer,
    LogExport,
    decode_bundle,
    decode_record,
    verify_bundle,
)

from .conftest import Clock, enroll, new_device

HUB_KEY = Ed25519Signer.from_seed(b"\x61" * 32)


def _hub(path: Path, clock: Clock, *, devices: int, records: int) -> Hub:
    hub = Hub(LmdbHubStore(path), HUB_KEY, clock=clock)
    for d in range(devices):
        signer, builder = new_device(clock)
        device_id = enroll(hub, signer, clock, site=f"sppg-{d % 2}")
        raws = [builder.genesis().raw]
        for i in range(records - 1):
            clock.advance(1)
            raws.append(builder.append("note", {"text": f"{d}-{i}-" + "x" * 300}).raw)
        assert hub.ingest(device_id, raws).accepted == records
    return hub


def test_streamed_bundle_is_the_bundle_the_encoder_of_a_whole_bundle_makes(tmp_path: Path) -> None:
    clock = Clock()
    hub = _hub(tmp_path / "hub", clock, devices=3, records=20)
    try:
        data = hub.export(site="sppg-0", description="audit 2026-12")
        bundle = decode_bundle(data)
        # The same content through the in-memory encoder and seal: byte for byte the same bundle.
        whole = Bundle(hub_key=bundle.hub_key, hub_log=bundle.hub_log, logs=bundle.logs,
                       checkpoints=bundle.checkpoints, receipts=bundle.receipts, consistency=bundle.consistency,
                       forks=bundle.forks, created=bundle.created, description=bundle.description).sealed(HUB_KEY)
        assert whole.encode() == data
        report = verify_bundle(data, hub_key=HUB_KEY.public_key)
        assert report.ok, [str(p) for p in report.all_problems]
        assert sorted(d.records for d in report.devices) == [20, 20]  # the two logs of site sppg-0
        assert len(bundle.receipts) == 40 + len(bundle.hub_log)
        # A time window keeps the key records it needs and a receipt per record it exports.
        times = sorted(decode_record(raw).time for log in bundle.logs for raw in log.records)
        since = times[len(times) // 2]
        data = hub.export(since=since)
        window = [decode_record(raw) for log in decode_bundle(data).logs for raw in log.records]
        assert verify_bundle(data, hub_key=HUB_KEY.public_key).ok
        assert 0 < len(window) < len(times) and all(rec.time >= since for rec in window)
    finally:
        hub.store.close()


def test_export_memory_follows_the_largest_log_not_the_bundle(tmp_path: Path) -> None:
    clock = Clock()
    hub = _hub(tmp_path / "hub", clock, devices=12, records=150)
    try:
        with (tmp_path / "out.jejak").open("w+b") as out:
            tracemalloc.start()
            hub.export_to(out)
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            size = out.tell()
        data = (tmp_path / "out.jejak").read_bytes()
        assert len(data) == size and verify_bundle(data, hub_key=HUB_KEY.public_key).ok
        # One log is a twelfth of the bundle; the peak (one log decoded, plus record ids) stays well below it.
        assert peak < size / 2, (peak, size)
    finally:
        hub.store.close()


def test_encoder_refuses_pieces_out_of_order() -> None:
    log = LogExport(device_id=bytes(32), keys=[], records=[])
    encoder = BundleEncoder(description=None)
    encoder.start(1)
    with pytest.raises(ValueError, match="out of order"):
        encoder.receipts(0)  # the log announced has not been written
    encoder.log(log)
    with pytest.raises(ValueError, match="more logs than announced"):
        encoder.log(log)


def test_an_export_of_some_devices_carries_only_their_forks(tmp_path: Path) -> None:
    # Before the fix every export carried every fork the hub held: an export of a kitchen that never forked
    # failed with UNKNOWN_KEY (fork evidence of a device without a log in the bundle).
    clock = Clock()
    hub = Hub(LmdbHubStore(tmp_path / "hub"), HUB_KEY, clock=clock)
    signer, builder = new_device(clock)
    clean = enroll(hub, signer, clock, site="sppg-1")
    assert hub.ingest(clean, [builder.genesis().raw, builder.append("note", {"text": "a"}).raw]).accepted == 2
    signer, builder = new_device(clock)
    forker = enroll(hub, signer, clock, site="sppg-2")
    genesis = builder.genesis()
    assert hub.ingest(forker, [genesis.raw, builder.append("note", {"text": "one"}).raw]).accepted == 2
    other = ChainBuilder(signer, clock=clock, boot=1)
    other.genesis()
    clock.advance(1)
    assert hub.ingest(forker, [genesis.raw, other.append("note", {"text": "two"}).raw]).problem is not None
    assert len(hub.store.forks()) == 1
    for data in (hub.export(devices=[clean]), hub.export(site="sppg-1")):
        report = verify_bundle(data, hub_key=HUB_KEY.public_key)
        assert report.ok, [str(p) for p in report.all_problems]
    assert [p.code for p in verify_bundle(hub.export()).all_problems] == ["FORK_DETECTED"]


def test_the_hubs_exports_have_no_notes(tmp_path: Path) -> None:
    # Every checkpoint an export carries is tied to its largest by a consistency proof, whatever the export
    # holds, so an auditor never reads a note (FORMAT.md §12.3, notes) about an honest hub's bundle.
    clock = Clock()
    hub = _hub(tmp_path / "hub", clock, devices=2, records=3)
    try:
        signer, builder = new_device(clock)
        device_id = enroll(hub, signer, clock, site="sppg-0")
        assert hub.ingest(device_id, [builder.genesis().raw]).accepted == 1
        for i in range(4):
            for _ in range(2):  # one size signed twice, another iat
                clock.advance(60)
                assert hub.checkpoint(force=True) is not None
            assert hub.ingest(device_id, [builder.append("note", {"text": str(i)}).raw]).accepted == 1
        hub.revoke(device_id, from_seq=3)
        since = clock() - 150
        for data in (hub.export(), hub.export(site="sppg-0"), hub.export(devices=[device_id]), hub.export(since=since)):
            report = verify_bundle(data, hub_key=HUB_KEY.public_key)
            assert report.ok, [str(p) for p in report.all_problems]
            assert len({cp.tree_size for cp in report.checkpoints}) == 5 and report.notes == []
    finally:
        hub.store.close()
