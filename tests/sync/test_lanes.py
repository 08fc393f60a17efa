"""Sync over UDP with several client endpoints at once (coap_server/lanes.py): requests of one log in flight
together from several ports, blocks lost on the way, OSCORE over every lane, and contexts closed cleanly."""

from __future__ import annotations

import os
from typing import Any

import aiocoap
import cbor2
import pytest
from aiocoap.numbers.codes import Code

from coap_server.lanes import Lanes
from coap_server.security import open_context
from coap_server.sync import sync_once
from edge.store import LmdbLogStore
from hub.app import HubHolder
from ledger import ChainBuilder
from ledger.sync import Limits, RequestSize, encode_records
from tests.harness.faults import start_relay
from tests.hub.conftest import enroll
from tests.ports import free_coap
from tests.security.common import NOW, enroll_edge, secure_hub
from tests.sync.test_lossy import BODY, own_log
from tests.sync.test_pipeline import Watched, full_window, serve, url

UNAUTHORIZED = 0x81  # the code byte of a 4.01 answer in a CoAP header


class Dropping:
    """A relay's shape: drops the clients' datagrams numbered in `drop` (1 is the first any client sent),
    passes the rest at once, and counts the answers that are a bare 4.01 (an OSCORE peer refusing what it
    could not read)."""

    def __init__(self, drop: set[int]) -> None:
        self.drop = drop
        self.sent = self.dropped = self.refusals = 0

    def __call__(self, data: bytes, upstream: bool) -> float | None:
        if not upstream:
            self.refusals += len(data) > 1 and data[1] == UNAUTHORIZED
            return 0.0
        self.sent += 1
        if self.sent in self.drop:
            self.dropped += 1
            return None
        return 0.0


async def relay_to(port: int, drop: set[int]) -> tuple[Any, Dropping, int]:
    listen = free_coap()
    shape = Dropping(drop)
    return await start_relay(("127.0.0.1", listen), ("127.0.0.1", port), shape), shape, listen


async def test_udp_push_on_lanes_is_taken_in_order_though_blocks_are_lost(tmp_path, hub, clock):
    """Ranges behind a block that was lost and sent again arrive first and wait for it (or, held up longer
    than the peer waits, are refused OUT_OF_ORDER and sent again from its head); the log arrives whole."""
    signer, builder, store = own_log(tmp_path / "edge", clock, 400)
    enroll(hub, signer, clock)
    # A short wait at the receiver: a range held up by a lost block (2 to 3 s until it is sent again) makes
    # the ranges behind it refused OUT_OF_ORDER, and the pusher sends them again.
    holder = HubHolder(hub)
    records = Watched(holder, order_wait=1.0)
    server, port, _ = await serve(holder, records)
    relay, lost, listen = await relay_to(port, {12, 40})
    ctx = await aiocoap.Context.create_client_context()
    size = full_window()
    try:
        async with Lanes(ctx) as lanes:
            report = await sync_once(ctx, url("coap", listen), store, pull=False, size=size, lanes=lanes)
    finally:
        await ctx.shutdown()
        relay.close()
        await server.shutdown()
    assert lost.dropped == 2
    assert not report.problems and not report.refused, report
    assert report.pushed == 400
    assert records.peak > 1 and len(records.remotes) > 1, (records.peak, records.remotes)
    assert records.out_of_order, "no range waited longer than the receiver does: the test lost nothing that mattered"
    assert size.window == 4, "ranges held up by a loss made the pusher give up sending several at once"
    assert hub.store.log_range(builder.device_id, 0, 400) == store.log_range(builder.device_id, 0, 400)
    store.close()


async def test_udp_pull_on_lanes_completes_though_blocks_are_lost(tmp_path, clock):
    _, a_builder, a_store = own_log(tmp_path / "a", clock, 300)
    _, _, c_store = own_log(tmp_path / "c", clock, 1)
    server, port, _ = await serve(a_store)
    relay, lost, listen = await relay_to(port, {9, 30})
    ctx = await aiocoap.Context.create_client_context()
    try:
        async with Lanes(ctx) as lanes:
            report = await sync_once(ctx, url("coap", listen), c_store, push=False, size=full_window(),
                                     lanes=lanes)
    finally:
        await ctx.shutdown()
        relay.close()
        await server.shutdown()
    assert lost.dropped == 2 and len(relay.relays) > 1  # requests came from more than one port
    assert not report.problems and report.fetched == 300
    assert c_store.state(a_builder.device_id) == a_store.state(a_builder.device_id)
    a_store.close()
    c_store.close()


def enrolled_log(path: Any, key: Any, records: int) -> LmdbLogStore:
    builder = ChainBuilder(key, clock=lambda: NOW, boot=1)
    store = LmdbLogStore(path)
    store.claim(builder.device_id)
    store.append_own([builder.genesis()] + [builder.append("scan", {**BODY, "tags": [f"e0040150{i:08x}"]})
                                            for i in range(records - 1)])
    return store


@pytest.mark.parametrize("drop", [set(), {25}])
async def test_oscore_sync_over_lanes_shares_one_context(tmp_path, drop):
    """All lanes protect with the edge's one OSCORE context with the hub: one sender sequence, one replay
    window at the hub. A request block lost and sent again after the other lanes moved that window past its
    sequence number is refused unread (a bare 4.01); the request is sent again and the log arrives whole."""
    async with secure_hub(tmp_path / "hub") as hub:
        key = await enroll_edge(tmp_path / "edge", hub)
        store = enrolled_log(tmp_path / "edge" / "store", key, 600)
        security = open_context(tmp_path / "edge" / "oscore" / "hub", "hub")
        relay, lost, listen = await relay_to(hub.coap_port, drop)
        base = url("coap", listen)
        # Requests of 64 records (about 20 blocks): while one lane waits out a lost block, the three others
        # send more blocks than the hub's replay window is wide (32 sequence numbers).
        size = RequestSize(Limits(records_per_request=64, bytes_per_request=64 * 1024), floor_records=64,
                           floor_bytes=64 * 1024)
        ctx = await aiocoap.Context.create_client_context()
        ctx.client_credentials[f"{base}/*"] = security
        try:
            async with Lanes(ctx) as lanes:
                report = await sync_once(ctx, base, store, pull=False, size=size, lanes=lanes)
                plain = await ctx.request(aiocoap.Message(
                    code=Code.POST, uri=f"coap://127.0.0.1:{hub.coap_port}/sync/records", content_format=60,
                    payload=encode_records(key.device_id, 0, store.log_range(key.device_id, 0, 2)))).response
        finally:
            await ctx.shutdown()
            relay.close()
            security._destroy()
        held = hub.hub.store.log_range(key.device_id, 0, 600)
    assert (plain.code, cbor2.loads(plain.payload)["code"]) == (Code.UNAUTHORIZED, "OSCORE_REQUIRED")
    assert not report.problems and not report.refused, report
    assert report.pushed == 600
    assert held == store.log_range(key.device_id, 0, 600)
    assert len(relay.relays) > 1  # the hub saw the edge on more than one port, under the one context
    assert lost.dropped == len(drop)
    if drop:
        assert lost.refusals >= 1, "the lost block was not refused by the replay window: nothing was tested"
    store.close()


def sockets() -> int:
    """Sockets this process holds open."""
    return sum(os.readlink(f"/proc/self/fd/{fd}").startswith("socket:") for fd in os.listdir("/proc/self/fd")
               if os.path.exists(f"/proc/self/fd/{fd}"))


async def test_lanes_share_credentials_and_close_the_sockets_they_opened():
    ctx = await aiocoap.Context.create_client_context()
    ctx.client_credentials["coap://127.0.0.1:9/*"] = object()
    before = sockets()
    try:
        async with Lanes(ctx, width=3) as lanes:
            assert sockets() == before + 2  # a socket, so a source port, for each lane beside `ctx`
            assert len(lanes.contexts) == 3 and lanes.contexts[0] is ctx
            assert all(c.client_credentials is ctx.client_credentials for c in lanes.contexts)
            # What is installed after the lanes opened reaches them too (an edge opens its lanes before its
            # first round installs the hub's OSCORE context, into a map that is still empty).
            late = await aiocoap.Context.create_client_context()
            try:
                async with Lanes(late, width=2) as fresh:
                    late.client_credentials["coap://127.0.0.1:9/*"] = object()
                    assert all(c.client_credentials is late.client_credentials for c in fresh.contexts)
                    assert all(len(c.client_credentials) == 1 for c in fresh.contexts)
            finally:
                await late.shutdown()
            async with lanes.lane() as a, lanes.lane() as b, lanes.lane() as c:
                assert len({id(a), id(b), id(c)}) == 3  # each request in flight has a context to itself
        assert sockets() == before and lanes.opened == []  # `ctx` is the caller's: still open
        async with lanes.lane() as only:
            assert only is ctx  # none of the shut ones is handed out again
    finally:
        await ctx.shutdown()
