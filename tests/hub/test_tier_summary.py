"""Hub-to-hub pull rounds compare the Merkle summary of the region's heads first: an unchanged region of many
logs costs one request, a changed one the buckets that changed."""

from __future__ import annotations

import aiocoap

from hub.app import start_hub
from hub.bridges import BridgeConfig
from hub.config import HubConfig
from hub.service import Hub
from hub.store import DeviceInfo, LmdbHubStore
from hub.tiers import TierLinks
from ledger import ChainBuilder, Ed25519Signer
from ledger.summary import HeadsSummary, bucket_of, decode_root
from ledger.sync import RequestSize

LOGS = 1500


async def test_an_unchanged_region_of_many_logs_costs_one_request(tmp_path, clock):
    regional_store = LmdbHubStore(tmp_path / "regional", durable=False)
    builders = []
    for i in range(LOGS):  # a genesis each, written straight into the store
        signer = Ed25519Signer.from_seed((1 << 44 | i).to_bytes(32, "big"))
        builder = ChainBuilder(signer, clock=clock, boot=1)
        regional_store.put_device(DeviceInfo(device_id=builder.device_id, pubkey=signer.public_key, site="sppg",
                                             role="kitchen_exit", status="active", enrolled_at=clock(), name=""))
        regional_store.append(builder.device_id, [builder.genesis()], builder.state, clock())
        builders.append(builder)
    region = Hub(regional_store, Ed25519Signer.from_seed(b"\x74" * 32), clock=clock)
    served = await start_hub(HubConfig(bridges=BridgeConfig(enabled=False), data_dir=str(tmp_path / "r"),
                                       http_port=0, coap_port=0, mdns=False, checkpoint_interval=3600), hub=region)
    national_store = LmdbHubStore(tmp_path / "national", durable=False)
    national = Hub(national_store, Ed25519Signer.from_seed(b"\x75" * 32), clock=clock)
    links = TierLinks(national, (served.coap_url,))
    [puller] = links.pullers
    ctx = await aiocoap.Context.create_client_context()
    size = RequestSize()
    try:
        first = await puller.round(ctx, size)
        assert first.full and first.sync.fetched == LOGS and not first.sync.problems
        quiet = await puller.round(ctx, size)
        assert quiet.requests == 1 and quiet.sync.fetched == 0 and not quiet.full
        assert puller.traffic.bytes_received < 48, "one small answer, whatever the region holds"

        # One log grows: its bucket is drilled into, and only its records come.
        grown = builders[700]
        new = [grown.append("note", {"text": str(i)}) for i in range(3)]
        assert region.ingest(grown.device_id, [r.raw for r in new]).accepted == 3
        changed = await puller.round(ctx, size)
        assert changed.drilled == [bucket_of(grown.device_id)] and not changed.full
        assert changed.sync.fetched == 3 and not changed.sync.problems
        assert changed.requests == 4, "the root, the buckets, one bucket's heads, one records request"
        assert national_store.chain_state(grown.device_id).length == 4
        assert (await puller.round(ctx, size)).requests == 1

        # A new log in the region: it comes the same way.
        signer = Ed25519Signer.from_seed(b"\x76" * 32)
        newcomer = ChainBuilder(signer, clock=clock, boot=1)
        regional_store.put_device(DeviceInfo(device_id=newcomer.device_id, pubkey=signer.public_key, site="sppg",
                                             role="kitchen_exit", status="active", enrolled_at=clock(), name=""))
        assert region.ingest(newcomer.device_id, [newcomer.genesis().raw]).accepted == 1
        arrived = await puller.round(ctx, size)
        assert bucket_of(newcomer.device_id) in arrived.drilled and arrived.sync.fetched == 1
        assert national_store.chain_state(newcomer.device_id).length == 1

        # The summary the region kept up to date bucket by bucket is the one all its heads give.
        answer = await ctx.request(aiocoap.Message(code=aiocoap.GET, uri=served.coap_url + "/sync/summary")).response
        assert decode_root(answer.payload) == (HeadsSummary.of(region.heads()).root, LOGS + 1)

        # Through TierLinks, as the running hub does it: nothing new, one request.
        [again], followed = await links.round({})
        assert followed == [] and again.requests == 1 and again.sync.fetched == 0
    finally:
        await ctx.shutdown()
        await links.close()
        links.verifier.close()
        await served.close()
        national_store.close()
        regional_store.close()
