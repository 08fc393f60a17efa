"""A national hub pulls a regional hub's logs over CoAP, verifies them again, and refuses forgeries."""

from __future__ import annotations

import aiocoap

from hub.app import start_hub
from hub.bridges import BridgeConfig
from hub.config import HubConfig
from hub.service import Hub
from hub.store import LmdbHubStore
from hub.tiers import UpstreamHolder, pull_once
from ledger import Ed25519Signer, verify_bundle
from ledger.sync import RequestSize

from .conftest import enroll, new_device


async def test_national_pulls_and_reverifies(tmp_path, hub, clock):
    signer, builder = new_device(clock)
    device_id = enroll(hub, signer, clock)
    raws = [builder.genesis().raw] + [builder.append("note", {"text": str(i)}).raw for i in range(700)]
    assert hub.ingest(device_id, raws).accepted == len(raws)
    regional = await start_hub(HubConfig(bridges=BridgeConfig(enabled=False), data_dir=str(tmp_path / "r"), http_port=0, coap_port=0, mdns=False),
                               hub=hub)
    national_store = LmdbHubStore(tmp_path / "national")
    national = Hub(national_store, Ed25519Signer.from_seed(b"\x61" * 32), clock=clock)
    ctx = await aiocoap.Context.create_client_context()
    try:
        size = RequestSize()
        report = await pull_once(national, regional.coap_url, ctx, size)
        assert report.fetched == len(raws) and not report.problems
        assert size.records > size.floor_records, "quick answers grew the requests, for the next round too"
        again = await pull_once(national, regional.coap_url, ctx)
        assert again.fetched == 0
        assert national_store.chain_state(device_id).length == len(raws)
        assert national_store.get_device(device_id).site.startswith("via coap://")
        bundle = national.export()
        assert verify_bundle(bundle).ok
    finally:
        await ctx.shutdown()
        await regional.close()
        national_store.close()


def test_relayed_forgery_is_refused(tmp_path, clock):
    _signer, builder = new_device(clock)
    raws = [builder.genesis().raw] + [builder.append("note", {"text": str(i)}).raw for i in range(5)]
    forged = bytearray(raws[3])
    forged[-1] ^= 1
    store = LmdbHubStore(tmp_path / "national")
    national = Hub(store, Ed25519Signer.from_seed(b"\x62" * 32), clock=clock)
    try:
        holder = UpstreamHolder(national, "coap://regional")
        result = holder.receive(builder.device_id, [*raws[:3], bytes(forged), *raws[4:]])
        assert result["accepted"] == 3
        assert result["problem"]["code"] == "INVALID_SIGNATURE"
        not_genesis = holder.receive(b"\x07" * 16, raws[1:])
        assert not_genesis["problem"]["code"] in ("UNKNOWN_DEVICE", "BROKEN_CHAIN", "MALFORMED")
        # Three records, and the national hub's own log: its genesis and its approval of the relayed device.
        assert store.size() == 3 + 2 and len(national.own_log()) == 2
    finally:
        store.close()
