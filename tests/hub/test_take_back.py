"""A regional hub restored from an older copy of its store takes back the records it lost from the national hub
that pulled them: verified, in the lost log's order, until its root is the root of the checkpoint it signed
before; it then starts without --accept-older-store and signs on."""

from __future__ import annotations

import shutil
from pathlib import Path

import aiocoap
import pytest

from hub.app import load_or_create_key, start_hub
from hub.bridges import BridgeConfig
from hub.config import HubConfig
from hub.lastsigned import LastSigned, OlderStore
from hub.service import Hub, TailRefused
from hub.store import LmdbHubStore
from hub.tiers import pull_once
from ledger import Ed25519Signer

from .conftest import Clock, enroll, new_device


def _notes(builder, count: int, tag: str) -> list[bytes]:
    return [builder.append("note", {"text": f"{tag} {i}"}).raw for i in range(count)]


async def test_a_restored_region_takes_its_lost_tail_back_from_the_national_hub(tmp_path: Path) -> None:
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
        with pytest.raises(TailRefused, match="own log"):
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
