"""Hub-to-hub pull rounds compare the Merkle summary of the region's heads first: an unchanged region of many
logs costs one request, a changed one the buckets that changed."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import aiocoap

from coap_server.lanes import Lanes
from hub.app import start_hub
from hub.bridges import BridgeConfig
from hub.config import HubConfig
from hub.service import Hub
from hub.store import DeviceInfo, LmdbHubStore
from hub.tiers import DRILL_WIDTH, RECORDS_PER_REQUEST, SummaryPuller, TierLinks
from ledger import ChainBuilder, Ed25519Signer
from ledger.summary import HeadsSummary, bucket_of, decode_root
from ledger.sync import RequestSize

from .conftest import Clock

LOGS = 1500


def _region_store(path: Path, logs: int, seeds: int, clock: Clock) -> tuple[LmdbHubStore, list[ChainBuilder]]:
    """A regional store of `logs` logs of a genesis each, written straight into the store."""
    store = LmdbHubStore(path, durable=False)
    builders = []
    for i in range(logs):
        signer = Ed25519Signer.from_seed((seeds | i).to_bytes(32, "big"))
        builder = ChainBuilder(signer, clock=clock, boot=1)
        store.put_device(DeviceInfo(device_id=builder.device_id, pubkey=signer.public_key, site="sppg",
                                    role="kitchen_exit", status="active", enrolled_at=clock(), name=""))
        store.append(builder.device_id, [builder.genesis()], builder.state, clock())
        builders.append(builder)
    return store, builders


async def test_an_unchanged_region_of_many_logs_costs_one_request(tmp_path, clock):
    regional_store, builders = _region_store(tmp_path / "regional", LOGS, 1 << 44, clock)
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


class CountedLanes(Lanes):
    """Lanes that count the requests on them at once (the most since `peak` was last reset)."""

    def __init__(self, ctx: aiocoap.Context) -> None:
        super().__init__(ctx)
        self.busy = self.peak = 0

    @contextlib.asynccontextmanager
    async def lane(self) -> AsyncIterator[aiocoap.Context]:
        async with super().lane() as ctx:
            self.busy += 1
            self.peak = max(self.peak, self.busy)
            try:
                yield ctx
            finally:
                self.busy -= 1


async def test_a_drill_down_pulls_buckets_and_logs_at_once_with_the_answer_of_one_at_a_time(tmp_path, clock):
    regional_store, builders = _region_store(tmp_path / "regional", 600, 1 << 45, clock)
    region = Hub(regional_store, Ed25519Signer.from_seed(b"\x77" * 32), clock=clock)
    served = await start_hub(HubConfig(bridges=BridgeConfig(enabled=False), data_dir=str(tmp_path / "r"),
                                       http_port=0, coap_port=0, mdns=False, checkpoint_interval=3600), hub=region)
    stores = [LmdbHubStore(tmp_path / f"national{i}", durable=False) for i in range(2)]
    one_at_a_time, at_once = (SummaryPuller(Hub(store, Ed25519Signer.from_seed(bytes([0x78 + i]) * 32), clock=clock),
                                            served.coap_url, width=width)
                              for i, (store, width) in enumerate(zip(stores, (1, DRILL_WIDTH), strict=True)))
    ctxs = [await aiocoap.Context.create_client_context() for _ in range(2)]
    lanes = [CountedLanes(ctx) for ctx in ctxs]
    try:
        for puller, ctx, lane in zip((one_at_a_time, at_once), ctxs, lanes, strict=True):
            await lane.open()
            assert (await puller.round(ctx, RequestSize(), lane)).sync.fetched == 600
            lane.peak = 0
        # Logs of ten buckets grow, one past a records request's most; a new log arrives in an eleventh.
        grown: dict[int, ChainBuilder] = {}
        for builder in builders:
            grown.setdefault(bucket_of(builder.device_id), builder)
        chosen = list(grown.values())[:10]
        for n, builder in enumerate(chosen):
            new = [builder.append("note", {"text": str(i)}) for i in range(RECORDS_PER_REQUEST + 88 if n == 0 else 3)]
            assert region.ingest(builder.device_id, [r.raw for r in new]).accepted == len(new)
        signer = Ed25519Signer.from_seed(b"\x7f" * 32)
        newcomer = ChainBuilder(signer, clock=clock, boot=1)
        regional_store.put_device(DeviceInfo(device_id=newcomer.device_id, pubkey=signer.public_key, site="sppg",
                                             role="kitchen_exit", status="active", enrolled_at=clock(), name=""))
        assert region.ingest(newcomer.device_id, [newcomer.genesis().raw]).accepted == 1
        rounds = [await puller.round(ctx, RequestSize(), lane)
                  for puller, ctx, lane in zip((one_at_a_time, at_once), ctxs, lanes, strict=True)]
        serial, concurrent = rounds
        assert not serial.full and not concurrent.full
        assert serial.drilled == concurrent.drilled
        assert set(serial.drilled) == {bucket_of(b.device_id) for b in [*chosen, newcomer]}
        assert (serial.sync.fetched, serial.sync.duplicates, serial.sync.bytes_received, serial.sync.problems,
                serial.requests) == (concurrent.sync.fetched, concurrent.sync.duplicates,
                                     concurrent.sync.bytes_received, concurrent.sync.problems, concurrent.requests)
        assert serial.sync.fetched == RECORDS_PER_REQUEST + 88 + 9 * 3 + 1 and not serial.sync.problems
        assert [s.chain_state(b.device_id) for s in stores for b in (*chosen, newcomer)] == [
            regional_store.chain_state(b.device_id) for _ in stores for b in (*chosen, newcomer)]
        assert lanes[0].peak == 1 and lanes[1].peak > 1, (lanes[0].peak, lanes[1].peak)
        assert lanes[1].peak <= DRILL_WIDTH
    finally:
        for lane, ctx in zip(lanes, ctxs, strict=True):
            await lane.close()
            await ctx.shutdown()
        await served.close()
        for store in stores:
            store.close()
        regional_store.close()
