"""A byte changed in a record of the hub's store (a real LMDB file, a real PostgreSQL row) is caught on start,
logged, never served over HTTP, CoAP sync, export or proofs, and comes back from an edge that holds it."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import uuid
from pathlib import Path

import aiocoap
import aiohttp
import psycopg
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from coap_server.sync import sync_once
from edge.store import LmdbLogStore
from hub.app import start_hub
from hub.auth import hash_token
from hub.config import HubConfig, StoreConfig
from hub.integrity import check_store
from hub.service import Hub
from hub.store import LmdbHubStore
from hub.tiers import pull_once
from ledger import Ed25519Signer
from ledger.sync import Limits, decode_records
from tests.contract.test_hub_store import PG_DSN
from tests.dashboard.harness import browser

from .conftest import Clock, enroll, new_device

TOKEN = "operator-secret"
DAMAGED_SEQ = 57
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _config(tmp_path: Path, backend: str, name: str) -> HubConfig:
    return HubConfig(name=name, data_dir=str(tmp_path / "hub"), http_port=0, coap_port=0, mdns=False,
                     checkpoint_interval=3600, operator_tokens=(hash_token(TOKEN),), auditor_tokens=(),
                     store=StoreConfig(backend=backend, dsn=PG_DSN))


def _change_one_byte(config: HubConfig, raw: bytes, device_id: bytes) -> None:
    """Flip one byte in the middle of the stored record, on disk or in its row, with the hub stopped."""
    middle = len(raw) // 2
    if config.store.backend == "postgres":
        with psycopg.connect(config.store.dsn, autocommit=True) as conn:
            cur = conn.execute(f"UPDATE {config.name}.records SET raw = set_byte(raw, %s, get_byte(raw, %s) # 1) "
                               "WHERE device_id = %s AND seq = %s", (middle, middle, device_id, DAMAGED_SEQ))
            assert cur.rowcount == 1
        return
    data = Path(config.data_dir) / "store" / "data.mdb"
    blob = bytearray(data.read_bytes())
    at = blob.find(raw)
    assert at >= 0, "the record's bytes are in the LMDB file"
    while at >= 0:  # copy-on-write may have left stale copies in free pages: change every one
        blob[at + middle] ^= 1
        at = blob.find(raw, at + 1)
    data.write_bytes(bytes(blob))


def _dashboard_damaged(url: str, device_id: bytes) -> str:
    driver, close = browser()
    try:
        driver.get(f"{url}/#/chain")
        css = f"[data-testid=damaged-{device_id.hex()}]"
        WebDriverWait(driver, 15).until(ec.presence_of_element_located((By.CSS_SELECTOR, css)))
        return str(driver.find_element(By.CSS_SELECTOR, css).text)
    finally:
        close()


@pytest.fixture(params=["lmdb", "postgres"])
def backend(request):
    name = f"rest_{uuid.uuid4().hex[:10]}"
    yield request.param, name
    if request.param == "postgres":
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


async def test_changed_byte_is_caught_on_start_never_served_and_restored_from_an_edge(tmp_path, backend, caplog):
    kind, name = backend
    config = _config(tmp_path, kind, name)
    clock = Clock()
    signer, builder = new_device(clock)
    records = [builder.genesis()] + [builder.append("note", {"text": f"r{i}"}) for i in range(149)]
    running = await start_hub(config, clock=clock)
    try:
        device_id = enroll(running.hub, signer, clock)
        assert running.hub.ingest(device_id, [r.raw for r in records]).accepted == 150
        running.hub.checkpoint(force=True)
        size = len(running.hub.tree)  # the records and the hub's own entries (the approval)
    finally:
        await running.close()

    # An untouched store starts clean: every record of a store this small is checked.
    running = await start_hub(config, clock=clock)
    check = running.store_check
    await running.close()
    assert check is not None and check.ok and check.full and check.checked == size >= 150
    assert check.roots_ok and check.signed_size == size

    _change_one_byte(config, records[DAMAGED_SEQ].raw, device_id)
    caplog.set_level(logging.ERROR, logger="jejak.hub")
    running = await start_hub(config, clock=clock)
    ctx = await aiocoap.Context.create_client_context()
    try:
        check = running.store_check
        assert check is not None and not check.ok and check.damaged == ((device_id, DAMAGED_SEQ),)
        loud = [r.getMessage() for r in caplog.records if "RECORD DAMAGED" in r.getMessage()]
        assert len(loud) == 1 and device_id.hex() in loud[0] and f"seq {DAMAGED_SEQ}" in loud[0]
        assert "jejak hub verify" in loud[0]
        assert running.hub.store.damaged() == {device_id: [DAMAGED_SEQ]}

        async with aiohttp.ClientSession(running.http_url, headers=AUTH) as http:
            async with http.get(f"/api/devices/{device_id.hex()}") as resp:
                assert (await resp.json())["damaged"] == [DAMAGED_SEQ]
            async with http.get("/api/chain/health") as resp:  # what the dashboard shows
                shown = {d["device"]: d["damaged"] for d in (await resp.json())["devices"]}
                assert shown.pop(device_id.hex()) == [DAMAGED_SEQ] and all(v == [] for v in shown.values())
            if kind == "lmdb":  # the dashboard marks the device (Chromium, off the loop the hub serves on)
                shown_text = await asyncio.to_thread(_dashboard_damaged, running.http_url, device_id)
                assert shown_text == str(DAMAGED_SEQ)
            async with http.get("/api/status") as resp:
                assert (await resp.json())["damaged"] == {device_id.hex(): [DAMAGED_SEQ]}
            async with http.get(f"/api/devices/{device_id.hex()}/records?from=50&to=70") as resp:
                served = (await resp.json())["records"]
                assert resp.status == 200 and [r["seq"] for r in served] == list(range(50, DAMAGED_SEQ))
            async with http.get(f"/api/devices/{device_id.hex()}/records?from={DAMAGED_SEQ}") as resp:
                body = await resp.json()
                assert resp.status == 503 and body["error"]["code"] == "RECORD_DAMAGED"
            async with http.get("/api/export") as resp:
                assert resp.status == 503 and (await resp.json())["error"]["code"] == "RECORD_DAMAGED"
            async with http.get(f"/api/proofs/inclusion/{records[DAMAGED_SEQ].id.hex()}") as resp:
                assert resp.status == 503
            async with http.get(f"/api/proofs/inclusion/{records[DAMAGED_SEQ - 1].id.hex()}") as resp:
                assert resp.status == 200

        def coap_get(start: int, end: int):
            uri = f"{running.coap_url}/sync/records?d={device_id.hex()}&from={start}&to={end}"
            return ctx.request(aiocoap.Message(code=aiocoap.GET, uri=uri)).response

        resp = await coap_get(50, 70)
        assert resp.code == aiocoap.CONTENT
        _, start, raws = decode_records(resp.payload, Limits())
        assert start == 50 and raws == [r.raw for r in records[50:DAMAGED_SEQ]]
        resp = await coap_get(DAMAGED_SEQ, DAMAGED_SEQ + 5)
        assert str(resp.code) == "5.03 Service Unavailable" and b"RECORD_DAMAGED" in resp.payload
        assert running.hub.store.counters().get("restored", 0) == 0

        # An edge that still holds the log syncs: the hub's head stops before the damage, so the edge pushes
        # the rest again and the hub takes the good copy back.
        edge = LmdbLogStore(tmp_path / "edge")
        try:
            assert edge.receive(device_id, [r.raw for r in records])["accepted"] == 150
            heads = {h.device_id: h for h in await asyncio.to_thread(running.hub.heads)}
            assert heads[device_id].length == DAMAGED_SEQ and heads[device_id].head == records[DAMAGED_SEQ - 1].id
            report = await sync_once(ctx, running.coap_url, edge, pull=False)
            assert not report.problems and report.pushed == 0
        finally:
            edge.close()
        assert running.hub.store.damaged() == {}
        assert running.hub.store.counters()["restored"] == 1
        resp = await coap_get(DAMAGED_SEQ, DAMAGED_SEQ + 5)
        _, _, raws = decode_records(resp.payload, Limits())
        assert raws == [r.raw for r in records[DAMAGED_SEQ:DAMAGED_SEQ + 5]]
        assert {h.device_id: h.length for h in running.hub.heads()}[device_id] == 150
    finally:
        await ctx.shutdown()
        await running.close()


def test_hub_verify_command_checks_everything(tmp_path):
    config = _config(tmp_path, "lmdb", "hub")
    toml = tmp_path / "hub.toml"
    toml.write_text(f'data_dir = "{config.data_dir}"\nmdns = false\n')
    clock = Clock()
    signer, builder = new_device(clock)
    records = [builder.genesis()] + [builder.append("note", {"text": f"r{i}"}) for i in range(99)]

    async def fill() -> tuple[bytes, int]:
        running = await start_hub(config, clock=clock)
        try:
            device_id = enroll(running.hub, signer, clock)
            running.hub.ingest(device_id, [r.raw for r in records])
            running.hub.checkpoint(force=True)
            return device_id, len(running.hub.tree)
        finally:
            await running.close()

    device_id, size = asyncio.run(fill())
    command = [sys.executable, "-m", "tools.cli", "hub", "verify", "--config", str(toml), "--json"]
    clean = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert clean.returncode == 0, clean.stderr
    assert json.loads(clean.stdout) | {"seconds": 0} == {
        "ok": True, "size": size, "checked": size, "full": True, "signed_size": size, "roots_ok": True,
        "damaged": [], "seconds": 0}
    _change_one_byte(config, records[DAMAGED_SEQ].raw, device_id)
    damaged = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert damaged.returncode == 52, damaged.stderr
    assert json.loads(damaged.stdout)["damaged"] == [{"device": device_id.hex(), "seq": DAMAGED_SEQ}]
    assert "RECORD DAMAGED" in damaged.stderr


async def test_a_national_hub_takes_a_damaged_record_back_from_its_regional_hub(tmp_path):
    clock = Clock()
    signer, builder = new_device(clock)
    records = [builder.genesis()] + [builder.append("note", {"text": f"r{i}"}) for i in range(99)]
    regional = await start_hub(_config(tmp_path / "regional", "lmdb", "regional"), clock=clock)
    ctx = await aiocoap.Context.create_client_context()
    national_dir = tmp_path / "n" / "store"
    try:
        device_id = enroll(regional.hub, signer, clock)
        regional.hub.ingest(device_id, [r.raw for r in records])
        national = Hub(LmdbHubStore(national_dir), Ed25519Signer.from_seed(b"\x07" * 32), clock=clock)
        assert (await pull_once(national, regional.coap_url, ctx)).fetched >= 100
        national.checkpoint(force=True)
        national.store.close()
        _change_one_byte(HubConfig(data_dir=str(tmp_path / "n")), records[DAMAGED_SEQ].raw, device_id)

        national = Hub(LmdbHubStore(national_dir), Ed25519Signer.from_seed(b"\x07" * 32), clock=clock)
        try:
            assert check_store(national).damaged == ((device_id, DAMAGED_SEQ),)
            report = await pull_once(national, regional.coap_url, ctx)
            assert not report.problems, report.problems
            assert national.store.damaged() == {}
            assert national.store.log_range(device_id, 0, 100) == [r.raw for r in records]
            assert check_store(national, full=True).ok
        finally:
            national.store.close()
    finally:
        await ctx.shutdown()
        await regional.close()
