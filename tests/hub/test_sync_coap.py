"""Edge logs reach the hub over real CoAP on loopback, once, verified."""

from __future__ import annotations

import aiocoap

from coap_server.sync import sync_once
from hub.app import HubHolder, start_hub
from hub.bridges import BridgeConfig
from hub.config import HubConfig
from ledger import ChainState
from ledger.sync import Head

from .conftest import enroll, new_device


class MemoryHolder:
    """A device's own log held in memory, as the sync session sees it."""

    def __init__(self, records):
        self.records = list(records)

    def heads(self):
        state = ChainState(device_id=self.records[0].device_id, length=len(self.records),
                           head=self.records[-1].id)
        return [Head.of(state)]

    def log_range(self, device_id, start, end):
        return [r.raw for r in self.records[start:end]]

    def receive(self, device_id, raws):
        raise AssertionError("the edge pushes; it is not offered records here")


async def test_push_reaches_hub_once_and_verifies(tmp_path, hub, clock):
    signer, builder = new_device(clock)
    device_id = enroll(hub, signer, clock)
    records = [builder.genesis()] + [builder.append("note", {"text": f"n{i}"}) for i in range(1200)]
    running = await start_hub(HubConfig(bridges=BridgeConfig(enabled=False), data_dir=str(tmp_path), http_port=0, coap_port=0), hub=hub)
    ctx = await aiocoap.Context.create_client_context()
    try:
        edge = MemoryHolder(records)
        report = await sync_once(ctx, running.coap_url, edge, pull=False)
        assert report.pushed == len(records)
        assert not report.problems
        again = await sync_once(ctx, running.coap_url, edge, pull=False)
        assert again.pushed == 0
        assert hub.store.chain_state(device_id).length == len(records)
        own = len(hub.own_log())  # the hub's genesis and its approval share the tree
        assert hub.store.size() == len(records) + own
        assert len(hub.tree) == len(records) + own
        # The holder view of the hub serves the same bytes back.
        assert HubHolder(hub).log_range(device_id, 5, 8) == [r.raw for r in records[5:8]]
    finally:
        await ctx.shutdown()
        await running.close()


async def test_unknown_device_refused_with_code(tmp_path, hub, clock):
    _, builder = new_device(clock)
    records = [builder.genesis()]
    running = await start_hub(HubConfig(bridges=BridgeConfig(enabled=False), data_dir=str(tmp_path), http_port=0, coap_port=0), hub=hub)
    ctx = await aiocoap.Context.create_client_context()
    try:
        report = await sync_once(ctx, running.coap_url, MemoryHolder(records), pull=False)
        assert report.pushed == 0
        assert any("UNKNOWN_DEVICE" in p for p in report.problems)
        assert hub.store.size() == len(hub.own_log()) == 1  # only the hub's own genesis
    finally:
        await ctx.shutdown()
        await running.close()
