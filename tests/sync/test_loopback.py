"""Several edges and a hub on loopback: every record reaches the hub through any neighbour, exactly once."""

from __future__ import annotations

import aiocoap
import aiocoap.resource as resource
import pytest

from coap_server.sync import add_sync_resources
from edge.store import LmdbLogStore
from edge.sync import ReplicaQuota, SyncAgent
from hub.app import start_hub
from hub.bridges import BridgeConfig
from hub.config import HubConfig
from ledger import ChainBuilder, ChainState, ForkEvidence, verify_records
from ledger.record import decode_record
from ledger.sync import encode_heads, encode_records
from tests.hub.conftest import enroll, new_device
from tests.ports import free_coap


class Edge:
    """An edge's store served over real CoAP, with its own signed log."""

    def __init__(self, path, clock, records: int) -> None:
        self.signer, self.builder = new_device(clock)
        self.store = LmdbLogStore(path)
        self.store.claim(self.builder.device_id)
        recs = [self.builder.genesis()] + [self.builder.append("scan", {"event": "departed", "site": "sppg-01",
                                                                         "tags": [f"t{i}"]})
                                            for i in range(records - 1)]
        self.store.append_own(recs)
        self.records = recs
        self.port = free_coap()
        self.ctx: aiocoap.Context | None = None

    @property
    def url(self) -> str:
        return f"coap://127.0.0.1:{self.port}"

    async def serve(self) -> None:
        site = resource.Site()
        add_sync_resources(site, self.store)
        self.ctx = await aiocoap.Context.create_server_context(site, bind=("127.0.0.1", self.port),
                                                              transports=["udp6"])

    async def close(self) -> None:
        if self.ctx is not None:
            await self.ctx.shutdown()
        self.store.close()


@pytest.fixture
async def net(tmp_path, hub, clock):
    edges = [Edge(tmp_path / name, clock, n) for name, n in (("a", 300), ("b", 200), ("c", 100))]
    for e in edges:
        enroll(hub, e.signer, clock)
        await e.serve()
    running = await start_hub(HubConfig(bridges=BridgeConfig(enabled=False), data_dir=str(tmp_path / "hub"), http_port=0, coap_port=0, mdns=False),
                              hub=hub)
    ctx = await aiocoap.Context.create_client_context()
    yield edges, running, ctx
    await ctx.shutdown()
    await running.close()
    for e in edges:
        await e.close()


async def test_records_reach_hub_through_a_neighbour_once(net, hub):
    (a, b, c), running, ctx = net
    # A has no uplink; B and C reach the hub; B and A are neighbours, as are B and C.
    agents = {
        "a": SyncAgent(a.store, peers=[b.url]),
        "b": SyncAgent(b.store, hubs=[running.coap_url], peers=[a.url, c.url]),
        "c": SyncAgent(c.store, hubs=[running.coap_url], peers=[b.url]),
    }
    for _ in range(2):
        for agent in agents.values():
            await agent.round(ctx)
    total = sum(len(e.records) for e in (a, b, c))
    assert hub.store.size() == total + len(hub.own_log()), "every record exactly once in the hub's log"
    for e in (a, b, c):
        state = hub.store.chain_state(e.builder.device_id)
        assert state.length == len(e.records)
        assert state.head == e.records[-1].id
    # B holds verified replicas of A and C: A's log survives A's loss.
    for e in (a, c):
        replica = b.store.log_range(e.builder.device_id, 0, 10_000)
        verify_records(ChainState.empty(e.builder.device_id), [decode_record(r) for r in replica])
        assert len(replica) == len(e.records)
    # Nothing left to do: another round moves nothing.
    again = await agents["b"].round(ctx)
    assert all(r.pushed == 0 and r.fetched == 0 for r in again.values())


async def test_forged_and_forked_logs_are_refused_and_reported(net, hub, clock):
    (a, b, _), running, ctx = net
    # A tampered copy of A's log, offered by a peer: B keeps only the good prefix and reports why.
    forged = bytearray(a.records[50].raw)
    forged[-3] ^= 0x40
    offered = [r.raw for r in a.records[:50]] + [bytes(forged)] + [r.raw for r in a.records[51:]]
    got = b.store.receive(a.builder.device_id, offered)
    assert got["accepted"] == 50
    assert "INVALID_SIGNATURE" in got["problem"]
    # A second history of A (same key, same seq, other content) is kept as evidence and blocks A.
    other = ChainBuilder(a.signer, clock=clock, boot=1, state=b.store.state(a.builder.device_id))
    fork_rec = other.append("note", {"text": "a second history"})
    b.store.receive(a.builder.device_id, [a.records[50].raw])
    res = b.store.receive(a.builder.device_id, [fork_rec.raw])
    assert res["fork"] is True
    evidence = b.store.forks()[0]
    evidence.verify(a.signer.public_key)
    assert a.builder.device_id in b.store.blocked()
    # A blocked device is not replicated further.
    agent = SyncAgent(b.store, hubs=[running.coap_url], blocked=b.store.blocked)
    await agent.round(ctx)
    assert hub.store.chain_state(a.builder.device_id) is None
    assert hub.store.chain_state(b.builder.device_id).length == len(b.records)


async def test_replica_quota_keeps_the_prefix_and_says_why(net, hub):
    (a, b, _), _, _ = net
    quota = ReplicaQuota(b.store, max_records=120, own=b.builder.device_id)
    first = quota.receive(a.builder.device_id, [r.raw for r in a.records[:100]])
    assert first["accepted"] == 100 and not first.get("problem")
    second = quota.receive(a.builder.device_id, [r.raw for r in a.records[100:200]])
    assert second["accepted"] == 20
    assert second["problem"].startswith("LIMIT_EXCEEDED")
    assert b.store.state(a.builder.device_id).length == 120
    full = quota.receive(a.builder.device_id, [r.raw for r in a.records[120:130]])
    assert full["accepted"] == 0 and "quota of 120" in full["problem"]
    # The device's own log is never limited by the replica quota.
    own = quota.receive(b.builder.device_id, [r.raw for r in b.records])
    assert own["problem"] is None


async def test_an_unreachable_hub_is_reported_with_its_cause(tmp_path, clock):
    """`edge status` names what failed and what to check, not aiocoap's bare "Network error: NetworkError"."""
    edge = Edge(tmp_path / "lone", clock, 3)
    nobody = f"coap://127.0.0.1:{free_coap()}"  # a port nothing listens on
    agent = SyncAgent(edge.store, hubs=[nobody])
    ctx = await aiocoap.Context.create_client_context()
    try:
        assert await agent.round(ctx) == {}
        [status] = agent.status()
        assert status["failures"] == 1
        assert status["last_error"].startswith("NetworkError: Connection refused"), status["last_error"]
        assert "port is not open" in status["last_error"]
    finally:
        await ctx.shutdown()
        await edge.close()


async def test_a_copy_holding_as_many_records_as_the_hub_with_another_last_one_pushes_it(net, hub, clock, tmp_path):
    """Two copies of one card: the hub holds the first's records, and the copy as many with another last one.
    Pushing by length alone, the copy pushed nothing and the hub never saw the fork. Now its first round pushes
    that record (the hub keeps the fork evidence and says FORK_DETECTED), and each round after sends it once more,
    refused DEVICE_BLOCKED, as a longer log's push is. A peer that holds the first's records is not pushed to: the
    copy fetches the peer's last record, as before, and keeps the evidence itself."""
    (a, b, _), running, ctx = net
    device = a.builder.device_id
    first = SyncAgent(a.store, hubs=[running.coap_url], own=device)
    await first.round(ctx)
    assert hub.store.chain_state(device).head == a.records[-1].id
    heads_only = len(encode_heads([]))
    # The same head at the same length: the heads are asked, and nothing is sent.
    assert [(r.bytes_sent, r.pushed, r.stopped) for r in (await first.round(ctx)).values()] == [(heads_only, 0, {})]

    copy = LmdbLogStore(tmp_path / "copy")
    try:
        copy.claim(device)
        copy.append_own(a.records[:-1])
        other = ChainBuilder(a.signer, clock=clock, boot=1, state=copy.state(device))
        last = other.append("note", {"text": "signed on the other copy"})
        copy.append_own([last])
        n = len(a.records)
        agent = SyncAgent(copy, hubs=[running.coap_url], own=device, blocked=copy.blocked)
        one_record = heads_only + len(encode_records(device, n - 1, [last.raw]))
        for code in ("FORK_DETECTED", "DEVICE_BLOCKED", "DEVICE_BLOCKED"):
            (report,) = (await agent.round(ctx)).values()
            assert (report.stopped, report.bytes_sent) == ({device: code}, one_record), report
            assert agent.head_status()["state"] == "forked"
            [(held, evidence)] = hub.store.forks()
            fork = ForkEvidence.from_cbor(evidence)
            assert (held, fork.seq, {fork.first.id, fork.second.id}) == (device, n - 1, {a.records[-1].id, last.id})
        assert hub.store.get_device(device).status == "forked"

        # b holds the first's records; a round with it fetches its last one and keeps the evidence here.
        await SyncAgent(b.store, peers=[a.url]).round(ctx)
        assert b.store.state(device).head == a.records[-1].id
        peer = SyncAgent(copy, peers=[b.url], own=device, blocked=copy.blocked)
        for _ in range(2):
            (report,) = (await peer.round(ctx)).values()
            assert report.pushed == 0 and not report.stopped, report
        assert [(f.seq, f.first.id, f.second.id) for f in copy.forks()] == [(n - 1, last.id, a.records[-1].id)]
        assert b.store.forks() == [] and b.store.state(device).head == a.records[-1].id
    finally:
        copy.close()
