"""The hub's HTTP API on a real server: enrollment, roles, proofs, exports, errors with stable codes."""

from __future__ import annotations

import asyncio
import logging
import threading
import urllib.request
from typing import Any

import aiohttp
import pytest

from hub.app import start_hub
from hub.auth import hash_token
from hub.bridges import BridgeConfig
from hub.config import HubConfig
from ledger import verify_bundle, verify_receipt
from ledger.enroll import make_enroll_request
from ledger.sync import encode_records
from tests.wait import wait_for

from .conftest import new_device

OPERATOR = "operator-secret"


async def test_enroll_approve_ingest_prove_export(tmp_path, hub, clock):
    running = await start_hub(HubConfig(bridges=BridgeConfig(enabled=False), data_dir=str(tmp_path), http_port=0, coap_port=0, mdns=False,
                                        operator_tokens=(hash_token(OPERATOR),)), hub=hub)
    signer, builder = new_device(clock)
    records = [builder.genesis()] + [builder.append("price", {"market": "pasar-minggu", "commodity": "beras",
                                                              "unit": "kg", "price_idr": 14500 + i})
                                     for i in range(10)]
    try:
        async with aiohttp.ClientSession(running.http_url) as http:
            req = make_enroll_request(signer, site="pasar-minggu", role="market_stall", name="stall 1",
                                      time=clock(), hub_id=hub.hub_id)
            async with http.post("/api/enroll", data=req) as resp:
                assert resp.status == 201
                device = await resp.json()
            assert device["status"] == "pending"
            body = encode_records(records[0].device_id, 0, [r.raw for r in records])
            async with http.post(f"/api/ingest/{device['device']}", data=body) as resp:
                assert resp.status == 409
                assert (await resp.json())["error"]["code"] == "DEVICE_BLOCKED"
            async with http.post(f"/api/devices/{device['device']}/approve") as resp:
                assert resp.status == 403
                assert (await resp.json())["error"]["code"] == "FORBIDDEN"
            async with http.post(f"/api/devices/{device['device']}/approve",
                                 headers={"Authorization": "Bearer wrong"}) as resp:
                assert resp.status == 401
            async with http.post(f"/api/devices/{device['device']}/approve",
                                 headers={"Authorization": f"bearer {OPERATOR}"}) as resp:  # any case (RFC 9110)
                assert resp.status == 200 and (await resp.json())["status"] == "active"
            async with http.post(f"/api/ingest/{device['device']}", data=body) as resp:
                result = await resp.json()
                assert resp.status == 200 and result["accepted"] == len(records)
            # A record whose signature does not verify: the result whole, under the status of its problem's class.
            forged = builder.append("price", {"market": "pasar-minggu", "commodity": "beras", "unit": "kg",
                                              "price_idr": 15000})
            bad = forged.raw[:-1] + bytes([forged.raw[-1] ^ 1])
            async with http.post(f"/api/ingest/{device['device']}",
                                 data=encode_records(forged.device_id, forged.seq, [bad])) as resp:
                result = await resp.json()
                assert resp.status == 422 and result["problem"]["code"] == "INVALID_SIGNATURE"
                assert result["accepted"] == 0 and result["length"] == len(records)
            async with http.post("/api/checkpoints", headers={"Authorization": f"Bearer {OPERATOR}"}) as resp:
                assert resp.status == 201
                cp = await resp.json()
            own = len(hub.own_log())  # the hub's genesis and its approval of the device are leaves too
            assert own == 2 and cp["tree_size"] == len(records) + own
            async with http.get(f"/api/proofs/inclusion/{records[4].id.hex()}") as resp:
                proof = await resp.json()
            got = verify_receipt(bytes.fromhex(proof["receipt"]), records[4].raw, hub.signer.public_key)
            assert got.index == own + 4 and got.tree_size == len(records) + own
            async with http.get("/api/export") as resp:
                assert resp.status == 403  # a bundle holds record bodies: never public
            async with http.get("/api/export", headers={"Authorization": f"Bearer {OPERATOR}"}) as resp:
                bundle = await resp.read()
            report = verify_bundle(bundle, hub_key=hub.signer.public_key)
            assert report.ok and report.receipts_checked == len(records) + own
            async with http.get("/api/proofs/inclusion/" + "00" * 32) as resp:
                assert resp.status == 404
                assert (await resp.json())["error"]["code"] == "NOT_FOUND"
            async with http.get(f"/api/proofs/consistency?from=1&to={cp['tree_size'] + 1}") as resp:
                assert resp.status == 404 and (await resp.json())["error"]["code"] == "NOT_FOUND"
            async with http.post("/api/enroll", data=b"\xff\x00garbage") as resp:
                assert resp.status == 400
                assert (await resp.json())["error"]["code"] == "MALFORMED"
            async with http.get("/api/openapi.json") as resp:
                spec = await resp.json()
            assert "/api/proofs/inclusion/{record}" in spec["paths"]
            assert "post" in spec["paths"]["/api/enroll"]
    finally:
        await running.close()


def test_enroll_qr_writes_png_with_hub_fingerprint(tmp_path, capsys):
    from hub.app import load_or_create_key
    from ledger import device_id_for
    from tools.cli import main

    hub_key = load_or_create_key(tmp_path / "hub.key").public_key  # as the hub's first start made it
    config = tmp_path / "hub.toml"
    config.write_text(f'data_dir = "{tmp_path}"\n')
    png = tmp_path / "qr.png"
    assert main(["enroll", "qr", "--config", str(config), "--png", str(png)]) == 0
    out = capsys.readouterr().out
    assert f"jejak-enroll:?hub=http://127.0.0.1:8470&id={device_id_for(hub_key).hex()}&key={hub_key.hex()}" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


async def test_a_route_that_fails_after_its_streamed_answer_began_ends_the_connection_not_the_answer(caplog):
    """An error after the first chunk is not written into the stream as a second answer: the connection is
    closed, the client sees its answer cut short, and the error is logged with its code."""
    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer

    from hub.http import errors_middleware
    from hub.store import StoreError

    async def export(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        await resp.write(b'{"records": [')
        raise StoreError("the store went away")

    async def fine(request: web.Request) -> web.StreamResponse:
        raise StoreError("refused before any byte")

    app = web.Application(middlewares=[errors_middleware])
    app.router.add_get("/export", export)
    app.router.add_get("/fine", fine)
    async with TestClient(TestServer(app)) as client:
        resp = await client.get("/export")
        assert resp.status == 200
        try:
            body = await resp.read()
        except aiohttp.ClientPayloadError:
            body = None
        assert body is None  # cut short, where the error's JSON was appended to the answer's chunks
        # The same server answers the next request, and an error before any byte is still its JSON answer.
        resp = await client.get("/fine")
        assert resp.status == StoreError.http and (await resp.json())["error"]["code"] == StoreError.code
    assert [r.getMessage() for r in caplog.records if "failed after its answer began" in r.getMessage()] == [
        f"GET /export failed after its answer began ({StoreError.code}: the store went away); connection closed"]


@pytest.mark.parametrize(("host", "shown"), [("0.0.0.0", "{name}"), ("::", "{name}"), ("127.0.0.1", "127.0.0.1"),
                                             ("::1", "[::1]"), ("192.0.2.7", "192.0.2.7")])
def test_enroll_qr_without_hub_url_names_an_address_a_device_can_use(tmp_path, capsys, host, shown):
    """A hub on every interface is named by this machine's name, never 0.0.0.0 (no device reaches that); a loopback
    address stays, with a note that devices elsewhere need --hub-url."""
    import socket

    from hub.app import load_or_create_key
    from tools.cli import main

    load_or_create_key(tmp_path / "hub.key")
    config = tmp_path / "hub.toml"
    config.write_text(f'data_dir = "{tmp_path}"\nhttp_host = "{host}"\nhttp_port = 8471\n')
    assert main(["enroll", "qr", "--config", str(config)]) == 0
    out, err = capsys.readouterr()
    assert f"jejak-enroll:?hub=http://{shown.format(name=socket.gethostname())}:8471&id=" in out
    assert ("--hub-url" in err) == (shown in ("127.0.0.1", "[::1]")), err


@pytest.mark.parametrize(("path", "read"), [("/metrics", "activity_after"), ("/api/heads", "devices"),
                                            ("/api/forks", "forks")])
async def test_public_reads_of_every_device_leave_the_event_loop_serving(tmp_path, path, read):
    """Public routes that read every device (or every fork) from the store: on a large store a third of a
    second and more (100,000 devices), at anyone's ask. Others are served while one runs; each ran on the event
    loop, which served nobody meanwhile."""
    running = await start_hub(HubConfig(data_dir=str(tmp_path / "h"), http_port=0, coap_port=0, mdns=False))
    store = running.hub.store
    reading, done = threading.Event(), threading.Event()
    real = getattr(store, read)

    def slow(*args: Any) -> Any:  # a store with very many devices
        reading.set()
        done.wait(30)
        return real(*args)

    setattr(store, read, slow)

    def get(route: str) -> int:
        with urllib.request.urlopen(running.http_url + route, timeout=60) as answer:
            return int(answer.status)

    try:
        slow_one = asyncio.ensure_future(asyncio.to_thread(get, path))
        await wait_for(reading.is_set, what=f"{path} to read the store")
        assert await asyncio.to_thread(get, "/api/checkpoints") == 200
        assert not slow_one.done()  # answered while the other still reads
        done.set()
        assert await slow_one == 200
    finally:
        done.set()
        await running.close()


@pytest.mark.parametrize("auto_approve", [True, False])
async def test_a_hub_that_approves_every_enrollment_says_so_at_start(tmp_path, caplog, auto_approve):
    caplog.set_level(logging.WARNING, logger="jejak")
    running = await start_hub(HubConfig(data_dir=str(tmp_path / "h"), http_port=0, coap_port=0, mdns=False,
                                        auto_approve=auto_approve))
    try:
        said = [r.getMessage() for r in caplog.records if "auto_approve is ON" in r.getMessage()]
        assert len(said) == (1 if auto_approve else 0), said
    finally:
        await running.close()
