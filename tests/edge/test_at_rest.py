"""A byte changed in a record of the edge's LMDB file is caught when the daemon starts, never served to peers or
the hub over CoAP sync, and comes back from a peer that holds the good copy."""

from __future__ import annotations

import logging
from pathlib import Path

import aiocoap

from coap_server.sync import sync_once
from edge.errors import DamagedRecord
from edge.store import LmdbLogStore
from ledger.sync import Limits, decode_records

from .common import edge_config, peer_log, running

OWN_SEQ, PEER_SEQ = 30, 20


def change_one_byte(store_dir: Path, raw: bytes) -> None:
    """Flip one byte in the middle of a stored record in the LMDB file itself (every copy of it: copy-on-write
    may have left stale ones in free pages)."""
    data = store_dir / "data.mdb"
    blob = bytearray(data.read_bytes())
    at = blob.find(raw)
    assert at >= 0, "the record's bytes are in the LMDB file"
    while at >= 0:
        blob[at + len(raw) // 2] ^= 1
        at = blob.find(raw, at + 1)
    data.write_bytes(bytes(blob))


async def test_changed_byte_caught_on_start_never_served_and_restored_from_a_peer(tmp_path, caplog):
    config = edge_config(tmp_path / "edge")
    _, peer = peer_log(71, 49)
    async with running(config) as (daemon, client):
        for i in range(50):
            await client.submit("note", {"text": f"n{i}"})
        assert daemon.store.receive(peer[0].device_id, [r.raw for r in peer])["accepted"] == 50
        own_id = daemon.key.device_id
        own_raws = daemon.store.log_range(own_id, 0, 10**6)
        assert daemon.store.check() == []  # an untouched store is clean
    good = LmdbLogStore(tmp_path / "good")  # a peer that holds both logs, intact
    try:
        assert good.receive(own_id, own_raws)["accepted"] == len(own_raws)
        assert good.receive(peer[0].device_id, [r.raw for r in peer])["accepted"] == 50

        change_one_byte(tmp_path / "edge" / "store", own_raws[OWN_SEQ])
        change_one_byte(tmp_path / "edge" / "store", peer[PEER_SEQ].raw)
        caplog.set_level(logging.INFO, logger="jejak.edge")
        async with running(config) as (daemon, client):
            loud = [r.getMessage() for r in caplog.records if "RECORD DAMAGED" in r.getMessage()]
            assert len(loud) == 2 and any(f"{own_id.hex()} seq {OWN_SEQ}" in m for m in loud)
            assert any(f"{peer[0].device_id.hex()} seq {PEER_SEQ}" in m for m in loud)
            assert daemon.store.damaged() == {own_id: [OWN_SEQ], peer[0].device_id: [PEER_SEQ]}
            assert (await client.status())["damaged"] == {own_id.hex(): [OWN_SEQ], peer[0].device_id.hex(): [PEER_SEQ]}
            heads = {h.device_id: h for h in daemon.store.heads()}
            assert heads[peer[0].device_id].length == PEER_SEQ
            assert heads[peer[0].device_id].head == peer[PEER_SEQ - 1].id

            ctx = await aiocoap.Context.create_client_context()
            try:
                base = f"coap://127.0.0.1:{daemon.coap_port}"

                async def get(device_id: bytes, start: int, end: int) -> aiocoap.Message:
                    uri = f"{base}/sync/records?d={device_id.hex()}&from={start}&to={end}"
                    return await ctx.request(aiocoap.Message(code=aiocoap.GET, uri=uri)).response

                resp = await get(peer[0].device_id, 10, 30)
                _, _, raws = decode_records(resp.payload, Limits())
                assert raws == [r.raw for r in peer[10:PEER_SEQ]]
                resp = await get(peer[0].device_id, PEER_SEQ, 30)
                assert str(resp.code).startswith("5.03") and b"RECORD_DAMAGED" in resp.payload
                resp = await get(own_id, OWN_SEQ, OWN_SEQ + 3)
                assert str(resp.code).startswith("5.03")

                report = await sync_once(ctx, base, good, pull=False)
                assert not report.problems, report.problems
            finally:
                await ctx.shutdown()
            assert daemon.store.damaged() == {}
            assert daemon.store.log_range(peer[0].device_id, 0, 100) == [r.raw for r in peer]
            assert daemon.store.log_range(own_id, 0, 10**6)[: len(own_raws)] == own_raws
            assert any("record restored" in r.getMessage() for r in caplog.records)
    finally:
        good.close()


def test_reads_refuse_a_damaged_record_found_after_start(tmp_path):
    _, peer = peer_log(72, 9)
    store = LmdbLogStore(tmp_path / "s")
    store.receive(peer[0].device_id, [r.raw for r in peer])
    store.close()
    change_one_byte(tmp_path / "s", peer[4].raw)
    store = LmdbLogStore(tmp_path / "s")
    try:
        assert store.get(peer[0].device_id, 3) == peer[3].raw
        try:
            store.get(peer[0].device_id, 4)
        except DamagedRecord as exc:
            assert exc.code == "RECORD_DAMAGED" and exc.coap == "5.03"
        else:
            raise AssertionError("a damaged record was served")
        assert store.log_range(peer[0].device_id, 0, 10) == [r.raw for r in peer[:4]]
        assert store.damaged() == {peer[0].device_id: [4]}
    finally:
        store.close()
