"""WebSocket fan-out benchmark: seed 2's HTTP ingest with 0, 10 and 100 subscribers on /ws/prices, one run."""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from datetime import UTC, datetime
from typing import Any

import aiohttp

from ..app import start_hub
from ..auth import hash_token
from ..config import HubConfig
from .config import BridgeConfig, MqttConfig

MARKET = "pasar-minggu"
SUBSCRIBERS = (0, 10, 100)


def _payload(n: int) -> dict[str, Any]:
    return {"timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"), "market_id": MARKET,
            "device_id": "BENCH-001", "prices": {"cabai": 40_000 + 100 * (n % 7)}}


async def _listen(url: str, subscribers: int, count: int) -> None:
    """The subscribers' process: `subscribers` WebSockets on `url`; prints "ready", then, when each has had
    `count` price updates or was closed by the hub (too slow), the updates received and the number closed."""
    got = [0] * subscribers
    closed = [False] * subscribers

    async def one(session: aiohttp.ClientSession, slot: int, ready: asyncio.Event) -> None:
        async with session.ws_connect(url) as ws:
            ready.set()
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.TEXT and json.loads(msg.data)["type"] == "price_update":
                    got[slot] += 1
                    if got[slot] == count:
                        return
        closed[slot] = True

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        readies = [asyncio.Event() for _ in range(subscribers)]
        tasks = [asyncio.create_task(one(session, i, readies[i])) for i in range(subscribers)]
        for ready in readies:
            await ready.wait()
        print("ready", flush=True)
        await asyncio.wait(tasks, timeout=120)
    print(json.dumps({"received": sum(got), "closed": sum(closed)}), flush=True)


async def _round(session: aiohttp.ClientSession, base: str, token: str, subscribers: int, count: int,
                 start: int) -> dict[str, Any]:
    """Ingest `count` payloads one after another while `subscribers` WebSockets in another process listen;
    the ingest rate, and how long until every subscriber had every update."""
    listener = None
    if subscribers:
        url = base.replace("http://", "ws://") + f"/ws/prices?token={token}"
        listener = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "hub.bridges.bench", url, str(subscribers), str(count),
            stdout=asyncio.subprocess.PIPE)
        assert listener.stdout is not None
        line = await listener.stdout.readline()
        if line.strip() != b"ready":
            raise RuntimeError(f"subscribers did not connect: {line[:200]!r}")
    headers = {"Authorization": f"Bearer {token}"}
    started = time.perf_counter()
    for n in range(start, start + count):
        async with session.post(base + "/ingest", json=_payload(n), headers=headers) as resp:
            if resp.status != 200:
                raise RuntimeError(f"ingest answered {resp.status}: {await resp.text()}")
    ingest_s = time.perf_counter() - started
    out: dict[str, Any] = {"ingest_per_s": count / ingest_s}
    if listener is not None:
        assert listener.stdout is not None
        result = json.loads(await listener.stdout.readline())
        await listener.wait()
        out.update({"updates_delivered": result["received"], "updates_expected": subscribers * count,
                    "all_delivered_s": time.perf_counter() - started, "subscribers_dropped": result["closed"]})
    return out


async def _hub_round(subscribers: int, count: int) -> dict[str, Any]:
    """One round on a fresh hub: each round starts from the same empty store and read models, so the rounds
    differ only in their subscribers (a hub that already holds the earlier rounds' data ingests slower)."""
    operator = "bench-operator"
    with tempfile.TemporaryDirectory() as tmp:
        config = HubConfig(name="bench-ws", data_dir=tmp, http_port=0, coap_port=0, mdns=False,
                           checkpoint_interval=3600, operator_tokens=(hash_token(operator),),
                           # every subscriber is on this host: one client to the per-client cap
                           event_streams=max(200, subscribers), event_streams_per_client=max(1, subscribers),
                           bridges=BridgeConfig(state_dir=tmp + "/bridges", mqtt=MqttConfig(enabled=False),
                                                ws_max_subscribers=200, ws_queue=4096))
        running = await start_hub(config)
        try:
            async with aiohttp.ClientSession() as session:
                base = running.http_url
                async with session.post(base + "/api/auth/device/register", json={
                        "market_id": MARKET, "device_id": "BENCH-001", "role": "sensor"}) as resp:
                    reg = await resp.json()
                if reg["status"] != "active":
                    async with session.post(base + "/api/bridges/devices/BENCH-001/approve",
                                            headers={"Authorization": f"Bearer {operator}"}) as resp:
                        resp.raise_for_status()
                return await _round(session, base, reg["token"], subscribers, count, 0)
        finally:
            await running.close()


async def _run(quick: bool) -> dict[str, Any]:
    count = 100 if quick else 400
    rounds = {f"{n}_subscribers": await _hub_round(n, count) for n in SUBSCRIBERS}
    base_rate = rounds["0_subscribers"]["ingest_per_s"]
    return {"payloads_per_round": count, **rounds,
            "ingest_10_vs_0": rounds["10_subscribers"]["ingest_per_s"] / base_rate,
            "ingest_100_vs_0": rounds["100_subscribers"]["ingest_per_s"] / base_rate,
            "note": "a fresh hub per round; subscribers in a second process on this machine; HTTP ingest one "
                    "payload at a time"}


def run(quick: bool = False) -> dict[str, Any]:
    return asyncio.run(_run(quick))


if __name__ == "__main__":  # the subscribers' process of a round
    asyncio.run(_listen(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
