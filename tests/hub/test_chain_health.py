"""GET /api/chain/health on a running hub: the same answer after the hub restarts on its store, pages of devices
followed by `next`, and a stable error for a bad `limit` or `after`."""

from __future__ import annotations

import uuid
from collections import Counter

import aiohttp
import psycopg
import pytest

from hub.app import start_hub
from hub.auth import hash_token
from hub.config import HubConfig, StoreConfig
from ledger import decode_record
from ledger.enroll import make_enroll_request
from ledger.sync import encode_records
from tests.contract.test_hub_store import PG_DSN
from tests.documented import assert_documented

from .conftest import Clock, new_device

TOKEN = "operator-secret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(params=["lmdb", "postgres"])
def config(request, tmp_path):
    name = f"health_{uuid.uuid4().hex[:10]}"
    yield HubConfig(name=name, data_dir=str(tmp_path / "hub"), http_port=0, coap_port=0, mdns=False,
                    checkpoint_interval=3600, operator_tokens=(hash_token(TOKEN),), auditor_tokens=(),
                    store=StoreConfig(backend=request.param, dsn=PG_DSN))
    if request.param == "postgres":
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


async def _get(http: aiohttp.ClientSession, path: str, query: str = "") -> dict:
    async with http.get(f"{path}{query}") as resp:
        body = await resp.json()
        assert resp.status == 200, body
        assert_documented("GET", path, resp.status, body)
        return body


async def _health(http: aiohttp.ClientSession, query: str = "") -> dict:
    return await _get(http, "/api/chain/health", query)


async def _pages(http: aiohttp.ClientSession, path: str, limit: int, device_count: int) -> tuple[list, int]:
    """Every page of `limit` devices, followed by `next`: the devices seen in turn and the pages read."""
    seen, after, pages = [], "", 0
    while True:
        page = await _get(http, path, f"?limit={limit}{'&after=' + after if after else ''}")
        assert page["device_count"] == device_count and len(page["devices"]) <= limit
        seen += page["devices"]
        pages += 1
        if page["next"] is None:
            return seen, pages
        after = page["next"]


async def _push(http: aiohttp.ClientSession, hub_id: bytes, clock: Clock, devices: int) -> list:
    """Enroll and approve `devices` devices over HTTP and push each a few records of two kinds."""
    pushed = []
    for i in range(devices):
        signer, builder = new_device(clock)
        req = make_enroll_request(signer, site=f"sppg-{i:02d}", role="kitchen_exit", name=f"k{i}", time=clock(),
                                  hub_id=hub_id)
        async with http.post("/api/enroll", data=req) as resp:
            device = (await resp.json())["device"]
        async with http.post(f"/api/devices/{device}/approve", headers=AUTH) as resp:
            assert resp.status == 200
        records = [builder.genesis()] + [builder.append("note", {"text": str(j)}) for j in range(i % 3)]
        records += [builder.append("reading", {"site": f"sppg-{i:02d}", "sensor": "p", "temp_cc": 6400})]
        async with http.post(f"/api/ingest/{device}", data=encode_records(records[0].device_id, 0,
                                                                           [r.raw for r in records])) as resp:
            assert (await resp.json())["accepted"] == len(records)
        pushed += records
        clock.advance(30)
    return pushed


async def test_health_is_the_same_after_a_restart_and_pages_by_device(config):
    clock = Clock()
    running = await start_hub(config, clock=clock)
    try:
        async with aiohttp.ClientSession(running.http_url) as http:
            pushed = await _push(http, running.hub.hub_id, clock, 12)
            before = await _health(http)
            store = running.hub.store
            in_log = Counter(decode_record(e.raw).kind for e in store.entries(0, store.size()))
    finally:
        await running.close()
    assert before["records_by_kind"] == dict(in_log)
    assert before["records_by_kind"]["reading"] == 12 and before["records_by_kind"]["note"] == 12
    ours = [d for d in before["devices"] if d["device"] in {r.device for r in pushed}]
    assert len(ours) == 12 and before["device_count"] == len(before["devices"]) and before["next"] is None
    assert sorted(d["last_seen"] for d in ours) == [Clock()() + 30 * i for i in range(12)]
    assert all(d["last_time"] == max(r.time for r in pushed if r.device == d["device"]) for d in ours)

    running = await start_hub(config, clock=clock)
    try:
        async with aiohttp.ClientSession(running.http_url) as http:
            after_restart = await _health(http)
            # The hub signs a checkpoint as it stops; everything else the page shows is read from the store.
            assert after_restart.pop("checkpoint")["tree_size"] == before["size"]
            assert after_restart == {k: v for k, v in before.items() if k != "checkpoint"}
            seen, pages = await _pages(http, "/api/chain/health", 5, before["device_count"])
            assert pages == -(-before["device_count"] // 5) == 3 and seen == before["devices"]
            for bad in ("limit=0", "limit=5001", "limit=-1", "limit=ten", "after=zz", "after=00ff",
                        f"after={'0' * 32}&after={'1' * 32}", "limit=2&limit=3"):
                async with http.get(f"/api/chain/health?{bad}") as resp:
                    body = await resp.json()
                    assert resp.status == 400 and body["error"]["code"] == "BAD_REQUEST", (bad, body)
    finally:
        await running.close()


async def test_devices_page_like_the_health_page_and_keep_their_fields(config):
    """GET /api/devices reads the same pages as the chain's health (one query shape, one parameter parser)."""
    clock = Clock()
    running = await start_hub(config, clock=clock)
    try:
        async with aiohttp.ClientSession(running.http_url) as http:
            pushed = await _push(http, running.hub.hub_id, clock, 7)
            whole = await _get(http, "/api/devices")
            health = await _health(http)
            assert whole["next"] is None and whole["device_count"] == health["device_count"] == len(whole["devices"])
            assert [d["device"] for d in whole["devices"]] == [d["device"] for d in health["devices"]]
            for d in whole["devices"]:
                mine = [r for r in pushed if r.device == d["device"]]
                if mine:
                    assert (d["length"], d["head"], d["last_time"], d["damaged"], d["status"]) == (
                        len(mine), mine[-1].id.hex(), mine[-1].time, [], "active")
            seen, pages = await _pages(http, "/api/devices", 3, whole["device_count"])
            assert seen == whole["devices"] and pages == -(-len(seen) // 3) >= 3
            for bad in ("limit=0", "limit=5001", "limit=ten", "after=zz", "limit=2&limit=3"):
                async with http.get(f"/api/devices?{bad}") as resp:
                    body = await resp.json()
                    assert resp.status == 400 and body["error"]["code"] == "BAD_REQUEST", (bad, body)
    finally:
        await running.close()
