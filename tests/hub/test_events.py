"""Server-sent events carry ids; a dashboard that reconnects with Last-Event-ID gets what it missed."""

from __future__ import annotations

import asyncio
import json

import aiohttp

from hub.app import start_hub
from hub.config import HubConfig
from ledger import ChainBuilder, Ed25519Signer
from ledger.enroll import make_enroll_request


async def _events(resp: aiohttp.ClientResponse, n: int, kinds: tuple[str, ...] = ("record", "resync")
                  ) -> list[tuple[str, str, dict]]:
    """The next `n` events of `kinds` on an open stream as (id, type, data) (a checkpoint may come between)."""
    out: list[tuple[str, str, dict]] = []
    fields: dict[str, str] = {}
    async with asyncio.timeout(20):
        while len(out) < n:
            line = (await resp.content.readline()).decode().rstrip("\n")
            if not line:
                if "data" in fields and fields.get("event") in kinds:
                    out.append((fields.get("id", ""), fields.get("event", ""), json.loads(fields["data"])))
                fields = {}
            elif not line.startswith(":"):
                key, _, value = line.partition(": ")
                fields[key] = value
    return out


async def test_a_reconnecting_dashboard_gets_the_events_it_missed(tmp_path):
    config = HubConfig(data_dir=str(tmp_path / "hub"), http_port=0, coap_port=0, mdns=False, auto_approve=True)
    running = await start_hub(config)
    hub = running.hub
    signer = Ed25519Signer.from_seed(b"\x07" * 32)
    now = [hub.clock()]
    builder = ChainBuilder(signer, clock=lambda: now[0], boot=1)
    hub.enroll(make_enroll_request(signer, site="K1", role="kitchen", name="k", time=now[0], hub_id=hub.hub_id))

    def push(*bodies: dict) -> list[str]:
        records = [builder.append("scan", {"site": "K1", "source": "nfc", **b}) for b in bodies]
        assert hub.ingest(builder.device_id, [r.raw for r in records]).accepted == len(records)
        return [r.id.hex() for r in records]

    url = f"{running.http_url}/api/events"
    try:
        assert hub.ingest(builder.device_id, [builder.genesis().raw]).accepted == 1
        async with aiohttp.ClientSession() as http:
            async with http.get(url) as resp:
                await resp.content.readline()  # the stream is open once its first line came
                [first] = push({"event": "sample", "checkpoint": "kitchen"})
                [(first_id, kind, data)] = await _events(resp, 1)
            assert kind == "record" and data["record"]["id"] == first and first_id
            # Disconnected: two more records arrive, then the page comes back with the last id it saw.
            missed = push({"event": "sample", "checkpoint": "kitchen"}, {"event": "cooked", "checkpoint": "kitchen"})
            async with http.get(url, headers={"Last-Event-ID": first_id}) as resp:
                replayed = await _events(resp, 2)
            assert [d["record"]["id"] for _, _, d in replayed] == missed
            ids = [i for i, _, _ in replayed]
            assert len({*ids, first_id}) == 3
            # An id from another boot of the hub (or long gone) cannot be replayed: the page is told to reload.
            async with http.get(url, headers={"Last-Event-ID": "0000-5"}) as resp:
                [(_, kind, _)] = await _events(resp, 1)
            assert kind == "resync"
    finally:
        await running.close()


async def test_a_hub_stopping_ends_its_open_event_streams_instead_of_waiting_for_their_clients(tmp_path):
    """A dashboard left open must not hold a hub's stop: the server would wait for the stream's handler until its
    own shutdown timeout (60 s, longer than systemd waits before it kills the hub and its final checkpoint)."""
    config = HubConfig(data_dir=str(tmp_path / "hub"), http_port=0, coap_port=0, mdns=False)
    running = await start_hub(config)
    async with aiohttp.ClientSession() as session, session.get(f"{running.http_url}/api/events") as resp:
        assert (await resp.content.readline()).startswith(b"retry:")
        loop = asyncio.get_running_loop()
        started = loop.time()
        await asyncio.wait_for(running.close(), 120)
        took = loop.time() - started
        async with asyncio.timeout(20):
            rest = await resp.content.read()  # the stream ended: the rest reads to its end
    assert b"keep-alive" not in rest
    assert took < 45, f"the hub took {took:.1f} s to stop with an event stream open"
