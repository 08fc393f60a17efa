"""A hub restored from an older copy of its store takes back the records it lost: verified, in the lost log's
order, until its root is the root of the checkpoint it signed before; it then starts without
--accept-older-store and signs on. The order comes from the receipts of the audit bundles it exported
(`jejak hub take-back`); `Hub.take_back` refuses any other."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import aiocoap
import pytest

from hub.app import load_or_create_key, start_hub
from hub.bridges import BridgeConfig
from hub.bridges.attest import Attestation
from hub.config import HubConfig
from hub.lastsigned import LastSigned, OlderStore
from hub.service import Hub, TailRefused
from hub.store import LmdbHubStore
from hub.tiers import pull_once
from ledger import ChainBuilder, Ed25519Signer, verify_chain
from ledger.failures import UsageError
from tools.cli import main

from .conftest import Clock, enroll, new_device


def _notes(builder, count: int, tag: str) -> list[bytes]:
    return [builder.append("note", {"text": f"{tag} {i}"}).raw for i in range(count)]


async def test_a_restored_region_takes_its_lost_tail_back_from_the_national_hubs_copies(tmp_path: Path) -> None:
    """The national hub's copies of the records, put in the region's order, are taken back; the same records in
    another order, short of the checkpoint, or offered as another device's are refused and nothing is written."""
    clock, data = Clock(), tmp_path / "region"
    signer = load_or_create_key(data / "hub.key")
    store = LmdbHubStore(data / "store")
    region = Hub(store, signer, clock=clock, last_signed=LastSigned(data, signer.public_key))
    devices = []
    for site in ("sppg-01", "sppg-02", "sppg-03"):
        device_signer, builder = new_device(clock)
        device_id = enroll(region, device_signer, clock, site=site)
        assert region.ingest(device_id, [builder.genesis().raw, *_notes(builder, 3, "before")]).accepted == 4
        devices.append((device_id, builder))
    clock.advance(60)
    assert region.checkpoint() is not None
    store.close()
    shutil.copytree(data / "store", tmp_path / "monday")  # the backup

    store = LmdbHubStore(data / "store")
    region = Hub(store, signer, clock=clock, last_signed=LastSigned(data, signer.public_key))
    copied = len(region.tree)
    for round_ in range(3):  # the devices' pushes interleave in the region's log
        for device_id, builder in devices[:2]:
            assert region.ingest(device_id, _notes(builder, 2 + round_, f"after {round_}")).accepted == 2 + round_
    clock.advance(60)
    lost = region.checkpoint()
    assert lost is not None and lost.tree_size > copied
    order = [(e.device_id, e.seq) for e in store.entries(copied, lost.tree_size)]

    national_store = LmdbHubStore(tmp_path / "national")
    national = Hub(national_store, Ed25519Signer.from_seed(b"\x61" * 32), clock=clock)
    running = await start_hub(HubConfig(bridges=BridgeConfig(enabled=False), data_dir=str(data), http_port=0,
                                        coap_port=0, mdns=False), hub=region)
    ctx = await aiocoap.Context.create_client_context()
    try:
        report = await pull_once(national, running.coap_url, ctx)
        assert not report.problems
    finally:
        await ctx.shutdown()
        await running.close()
        store.close()

    shutil.rmtree(data / "store")
    shutil.copytree(tmp_path / "monday", data / "store")  # restored from Monday's copy
    older = LmdbHubStore(data / "store")
    with pytest.raises(OlderStore):
        Hub(older, signer, clock=clock, last_signed=LastSigned(data, signer.public_key))
    older.close()

    tail = [(device_id, national_store.log_range(device_id, seq, seq + 1)[0]) for device_id, seq in order]
    store = LmdbHubStore(data / "store")
    try:
        restored = Hub(store, signer, clock=clock)
        assert len(restored.tree) == copied
        swapped = [tail[1], tail[0], *tail[2:]]
        with pytest.raises(TailRefused, match="not in its order"):
            restored.take_back(lost, swapped)
        assert len(restored.tree) == copied and store.size() == copied  # nothing written
        with pytest.raises(TailRefused, match="missing"):
            restored.take_back(lost, tail[:-1])
        with pytest.raises(TailRefused, match="offered as device"):
            restored.take_back(lost, [*tail[:-1], (restored.hub_id, tail[-1][1])])
        assert store.size() == copied
        assert restored.take_back(lost, tail) == lost
        assert len(restored.tree) == lost.tree_size and restored.tree.root(lost.tree_size) == lost.root
    finally:
        store.close()
    store = LmdbHubStore(data / "store")
    try:  # started again without the flag: the log holds what it signed, and signing goes on
        hub = Hub(store, signer, clock=clock, last_signed=LastSigned(data, signer.public_key))
        assert hub.latest_checkpoint() == lost
        device_id, builder = devices[0]
        assert hub.ingest(device_id, _notes(builder, 1, "later")).accepted == 1
        clock.advance(60)
        later = hub.checkpoint()
        assert later is not None and later.tree_size == lost.tree_size + 1
        assert hub.tree.root(lost.tree_size) == lost.root
    finally:
        store.close()


def _region(data: Path, signer: Ed25519Signer, clock: Clock) -> tuple[LmdbHubStore, Hub]:
    store = LmdbHubStore(data / "store")
    return store, Hub(store, signer, clock=clock, last_signed=LastSigned(data, signer.public_key))


def test_take_back_merges_the_lost_tail_from_bundles_the_hub_exported(tmp_path: Path, capsys, monkeypatch) -> None:
    """The operator's command: a region restored from Monday's copy takes back, from the audit bundles it
    exported since (which carry its fork evidence), everything it lost, its own records among them (a device enrolled and approved after the
    copy, a key rotated, a device revoked, an attestation), in its log's order; a bundle exported before the last checkpoint takes
    it part of the way (exit 89), a tampered one nothing (exit 91), and then the hub starts without the flag."""
    clock, data = Clock(), tmp_path / "region"
    toml = tmp_path / "hub.toml"
    toml.write_text(f'data_dir = "{data}"\nmdns = false\nhttp_port = 0\n')  # no running hub to look for
    signer = load_or_create_key(data / "hub.key")
    store, region = _region(data, signer, clock)
    devices = {}
    for site in ("sppg-01", "sppg-02"):
        device_signer, builder = new_device(clock)
        device_id = enroll(region, device_signer, clock, site=site)
        assert region.ingest(device_id, [builder.genesis().raw, *_notes(builder, 3, "before")]).accepted == 4
        devices[site] = (device_id, builder)
    forked_signer, forked = new_device(clock)  # the hub's fork evidence goes in every bundle it exports
    forked_id = enroll(region, forked_signer, clock, site="sppg-09")
    held = [forked.genesis().raw, *_notes(forked, 2, "held")]
    other = ChainBuilder(forked_signer, clock=clock, boot=1, state=verify_chain(held[:2]))
    assert region.ingest(forked_id, held).accepted == 3
    assert region.ingest(forked_id, [other.append("note", {"text": "another history"}).raw]).fork
    clock.advance(60)
    assert region.checkpoint() is not None
    store.close()
    shutil.copytree(data / "store", tmp_path / "monday")

    store, region = _region(data, signer, clock)
    copied = len(region.tree)
    new_signer, new_builder = new_device(clock)
    new_id = enroll(region, new_signer, clock, site="sppg-03")  # enrolled and approved after the copy
    devices["sppg-03"] = (new_id, new_builder)
    assert region.ingest(new_id, [new_builder.genesis().raw]).accepted == 1
    rotated_id, rotated = devices["sppg-01"]
    assert region.ingest(rotated_id, [rotated.rotate(Ed25519Signer.from_seed(b"\x52" * 32)).raw]).accepted == 1
    for round_ in range(2):
        for device_id, builder in devices.values():
            assert region.ingest(device_id, _notes(builder, 1 + round_, f"after {round_}")).accepted == 1 + round_
    revoked_id = devices["sppg-02"][0]
    region.revoke(revoked_id)
    attested = Attestation(path="http:/ingest", sender="10.0.0.9", kind="note", data={"text": "unsigned"},
                           received_at=clock())
    region.append_own("attest", [attested.body()])
    clock.advance(60)
    monday_bundle = tmp_path / "tuesday.jejak"
    monday_bundle.write_bytes(region.export())  # signs the checkpoint it covers
    middle = region.latest_checkpoint()
    assert middle is not None
    for device_id, builder in (devices["sppg-01"], devices["sppg-03"]):
        assert region.ingest(device_id, _notes(builder, 2, "later")).accepted == 2
    clock.advance(60)
    later_bundle = tmp_path / "wednesday.jejak"
    later_bundle.write_bytes(region.export())
    lost = region.latest_checkpoint()
    assert lost is not None and lost.tree_size > middle.tree_size > copied
    own = sum(1 for e in store.entries(copied, lost.tree_size) if e.device_id == region.hub_id)
    assert own == 4, "the approval, the rotation, the revocation and the attestation are in the lost tail"
    store.close()

    shutil.rmtree(data / "store")
    shutil.copytree(tmp_path / "monday", data / "store")
    tampered = tmp_path / "tampered.jejak"
    raw = bytearray(later_bundle.read_bytes())
    raw[len(raw) // 2] ^= 1
    tampered.write_bytes(bytes(raw))
    monkeypatch.setattr("hub.service.TAKE_BACK_BATCH", 3)  # commits cut the tail between the hub's own records
    take = ["hub", "take-back", "--config", str(toml), "--json"]
    assert main([*take, str(tampered)]) == TailRefused.exit_code
    assert "RESTORE_TAIL" in capsys.readouterr().err
    partly = {"taken": middle.tree_size - copied, "whole": False, "tree_size": middle.tree_size,
              "root": middle.root.hex(), "lost_tree_size": lost.tree_size, "lost_root": lost.root.hex()}
    assert main([*take, "--dry-run", str(monday_bundle)]) == OlderStore.exit_code
    assert json.loads(capsys.readouterr().out) == partly | {"dry_run": True}
    assert main([*take, "--dry-run", str(later_bundle)]) == 0
    assert json.loads(capsys.readouterr().out)["taken"] == lost.tree_size - copied
    assert main([*take, str(monday_bundle)]) == OlderStore.exit_code  # the dry runs wrote nothing
    assert json.loads(capsys.readouterr().out) == partly | {"dry_run": False}
    with pytest.raises(OlderStore):
        _region(data, signer, clock)[0].close()
    assert main([*take, str(later_bundle), str(monday_bundle)]) == 0
    assert json.loads(capsys.readouterr().out)["taken"] == lost.tree_size - middle.tree_size

    store, hub = _region(data, signer, clock)  # no flag needed: the log holds what the hub signed
    try:
        assert hub.latest_checkpoint() == lost and hub.tree.root(lost.tree_size) == lost.root
        assert hub.store.get_device(new_id).status == "active"
        assert hub.store.get_device(revoked_id).status == "revoked"
        assert hub.authority.devices[rotated_id].rotations, "the rotation stands in the hub's own log again"
        assert hub.own_log()[-1].body == attested.body()
        assert hub.ingest(new_id, _notes(new_builder, 1, "next")).accepted == 1
        assert hub.ingest(rotated_id, _notes(rotated, 1, "next")).accepted == 1, "signed with the rotated key"
        assert hub.ingest(revoked_id, _notes(devices["sppg-02"][1], 1, "next")).problem is not None
        hub.revoke(new_id)  # the hub's own log goes on from the records taken back
        clock.advance(60)
        assert hub.checkpoint() is not None
        assert hub.tree.root(lost.tree_size) == lost.root
    finally:
        store.close()


def test_take_back_refuses_to_write_while_the_hub_answers_on_its_port(tmp_path: Path, capsys) -> None:
    """A running hub writes to the same store: the command stops before it opens it, saying what to do."""
    data = tmp_path / "region"
    load_or_create_key(data / "hub.key")
    with socket.create_server(("127.0.0.1", 0)) as running:
        port = running.getsockname()[1]
        toml = tmp_path / "hub.toml"
        toml.write_text(f'data_dir = "{data}"\nmdns = false\nhttp_port = {port}\n')
        assert main(["hub", "take-back", "--config", str(toml), str(tmp_path / "any.jejak")]) == UsageError.exit_code
    err = capsys.readouterr().err
    assert "USAGE" in err and "stop the hub first" in err
    assert not (data / "store").exists(), "the store was not opened"
