"""Sync over real CoAP on loopback with request sizes that follow the link: it finishes under heavy loss, and
on a clean link the first requests are small and grow to the limits."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence
from typing import Any

import aiocoap
import aiocoap.resource as resource

from coap_server.sync import add_sync_resources
from edge.store import LmdbLogStore
from edge.sync import SyncAgent
from hub.app import start_hub
from hub.bridges import BridgeConfig
from hub.config import HubConfig
from ledger.sync import Head, Limits
from tests.harness.faults import start_impairment
from tests.hub.conftest import enroll, new_device
from tests.ports import free_coap

BODY = {"event": "departed", "site": "sppg-01", "checkpoint": "kitchen_exit", "staff": "04a1b2c3",
        "school": "sd-01"}


def own_log(path, clock, records: int) -> tuple[Any, Any, LmdbLogStore]:
    signer, builder = new_device(clock)
    store = LmdbLogStore(path)
    store.claim(builder.device_id)
    store.append_own([builder.genesis()] + [
        builder.append("scan", {**BODY, "tags": [f"e0040150{i:08x}", f"e0040151{i:08x}"]})
        for i in range(records - 1)])
    return signer, builder, store


async def test_sync_under_heavy_loss_completes(tmp_path, hub, clock):
    # 10 % of datagrams lost each way and 40 ± 10 ms of delay, with an 8 s request timeout. The backlog is
    # about 40 CoAP blocks: as one request it needs some 30 s here, and two lost blocks cost it the 8 s, so
    # sent whole it would time out round after round; smaller requests each finish, and each one stays done.
    signer, builder, store = own_log(tmp_path / "edge", clock, 128)
    enroll(hub, signer, clock)
    running = await start_hub(HubConfig(bridges=BridgeConfig(enabled=False), data_dir=str(tmp_path / "hub"), http_port=0, coap_port=0, mdns=False),
                              hub=hub)
    port = free_coap()
    relay = await start_impairment(("127.0.0.1", port), ("127.0.0.1", running.coap_port), loss=10.0,
                                   delay_ms=40, jitter_ms=10, seed=7)
    agent = SyncAgent(store, hubs=[f"coap://127.0.0.1:{port}"], interval=0.5, rng=random.Random(3),
                      request_timeout=8.0)
    task = asyncio.create_task(agent.run())
    seen: set[int] = set()
    try:
        started = time.monotonic()
        while time.monotonic() - started < 150:
            state = hub.store.chain_state(builder.device_id)
            seen.add(agent.status()[0]["request_records"])
            if state is not None and state.length == 128:
                break
            await asyncio.sleep(0.2)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        relay.close()
        state = hub.store.chain_state(builder.device_id)
        head = store.state(builder.device_id).head
        await running.close()
        store.close()
    assert state is not None and state.length == 128, (
        f"hub holds {state.length if state else 0} of 128 records; the edge's view: {agent.status()}")
    assert state.head == head
    assert relay.shape.dropped > 0.05 * (relay.shape.dropped + relay.shape.passed), "the link lost too little"
    assert max(seen) < Limits().records_per_request, f"requests grew to the limit on a lossy link: {sorted(seen)}"


class Recording:
    """A log holder that notes the size of each range it serves and each batch it is offered."""

    def __init__(self, store: LmdbLogStore) -> None:
        self.store = store
        self.served: list[tuple[int, int]] = []
        self.offered: list[int] = []

    def heads(self) -> list[Head]:
        return self.store.heads()

    def log_range(self, device_id: bytes, start: int, end: int) -> list[bytes]:
        self.served.append((start, end))
        return self.store.log_range(device_id, start, end)

    def receive(self, device_id: bytes, raws: Sequence[bytes]) -> dict[str, Any]:
        self.offered.append(len(raws))
        return self.store.receive(device_id, raws)  # type: ignore[no-any-return]


async def test_first_requests_are_small_and_grow_for_pulls_and_pushes(tmp_path, clock):
    _, a_builder, a_store = own_log(tmp_path / "a", clock, 300)
    _, b_builder, b_store = own_log(tmp_path / "b", clock, 200)
    _, _, c_store = own_log(tmp_path / "c", clock, 1)
    a = Recording(a_store)
    site = resource.Site()
    add_sync_resources(site, a)
    port = free_coap()
    server = await aiocoap.Context.create_server_context(site, bind=("127.0.0.1", port), transports=["udp6"])
    ctx = await aiocoap.Context.create_client_context()
    try:
        # C pulls A's 300 records from A as from a peer: the ranges it asks for are 4, 8, 16, ... records.
        puller = SyncAgent(c_store, peers=[f"coap://127.0.0.1:{port}"])
        await puller.round(ctx)
        assert a.served == [(0, 4), (4, 12), (12, 28), (28, 60), (60, 124), (124, 252), (252, 300)]
        assert c_store.state(a_builder.device_id).length == 300
        # B pushes its 200 records to A as to a hub (push only): the batches grow the same way.
        a.offered.clear()
        pusher = SyncAgent(b_store, hubs=[f"coap://127.0.0.1:{port}"])
        await pusher.round(ctx)
        assert a.offered == [4, 8, 16, 32, 64, 76]
        assert a_store.state(b_builder.device_id).length == 200
        status = pusher.status()[0]
        assert (status["request_records"], status["request_bytes"]) == (256, 131072)  # six quick answers
    finally:
        await ctx.shutdown()
        await server.shutdown()
        for store in (a_store, b_store, c_store):
            store.close()
