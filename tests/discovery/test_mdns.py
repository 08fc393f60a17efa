"""Real mDNS on this host: nodes find each other, see heads change, and notice when one leaves."""

from __future__ import annotations

from coap_server.discovery import Discovery, heads_summary
from ledger.sync import Head
from tests.wait import wait_for


async def test_edge_finds_hub_and_sees_it_leave():
    events = []
    hub = Discovery(role="hub", device_id=b"\x01" * 16, port=5683, addresses=["127.0.0.1"],
                    interfaces=["127.0.0.1"])
    edge = Discovery(role="edge", device_id=b"\x02" * 16, port=5690, addresses=["127.0.0.1"],
                     interfaces=["127.0.0.1"], on_change=lambda kind, peer: events.append((kind, peer.role)))
    await hub.start()
    await edge.start()
    try:
        await wait_for(lambda: edge.hubs(), what="the edge to see the hub")
        found = edge.hubs()[0]
        assert found.device == (b"\x01" * 16).hex()
        assert found.coap_url == "coap://127.0.0.1:5683"
        assert found.protocol == "1"
    finally:
        await hub.close()
    try:
        await wait_for(lambda: not edge.hubs(), what="the edge to notice the hub left")
        assert ("removed", "hub") in events
    finally:
        await edge.close()


def test_heads_summary_changes_with_heads():
    a = Head(device_id=b"\x01" * 16, length=3, head=b"\x05" * 32)
    b = Head(device_id=b"\x01" * 16, length=4, head=b"\x06" * 32)
    assert heads_summary([a]) != heads_summary([b])
    assert heads_summary([a]).startswith("1:3:")
