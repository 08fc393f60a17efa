"""Seed 2's documented client flows against a running hub: register -> approval -> token -> ingest -> price_update
on /ws/prices -> price check -> alert trigger -> alert on /api/alerts/ws -> ledger append -> integrity check, and a
store with one byte changed failing it; bad input answered 4xx or closed with a WebSocket code, never 5xx."""

from __future__ import annotations

import asyncio
import json
import socket
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest

from hub.bridges import MqttConfig
from hub.bridges.bench import _hub_round
from hub.bridges.seedapi import PATH_APPEND
from tests.wait import wait_for

from .conftest import MARKET, OPERATOR, close_hub, make_hub, signed_price_device

SEED_MARKET = "PASAR-001"  # the market id seed 2's examples use, aliased to a catalogue market
OPTIONS = {"mqtt": MqttConfig(enabled=False), "auto_approve": False, "market_aliases": {SEED_MARKET: MARKET}}


def sample_payload() -> dict:
    """Seed 2's documented device payload ("Format Payload — Contoh"), sent now."""
    return {"timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"), "market_id": SEED_MARKET,
            "device_id": "DEV-001", "region": "JAKARTA", "temperature": 29.5, "humidity": 72.3, "crowd": 12,
            "prices": {"cabai": 15000, "bawang": 9000, "beras": 12000}}


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


async def receive_json(ws: aiohttp.ClientWebSocketResponse, want: str, **match: object) -> dict:
    """The next message of type `want` with the `match` fields (others, such as price updates of other
    commodities or alerts the hub derived meanwhile, are skipped)."""
    async with asyncio.timeout(20):
        while True:
            msg = await ws.receive()
            assert msg.type == aiohttp.WSMsgType.TEXT, (msg.type, msg.data, msg.extra)
            value = json.loads(msg.data)
            if value["type"] == want and all(value.get(k) == v for k, v in match.items()):
                return value


async def close_code(ws: aiohttp.ClientWebSocketResponse) -> int | None:
    async with asyncio.timeout(10):
        while True:
            msg = await ws.receive()
            if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
                return ws.close_code


async def onboard(env) -> str:
    """Register, wait for the operator's approval, take a fresh token: the token the seed's clients hold."""
    code, reg = await env.post("/api/auth/device/register",
                               json={"market_id": SEED_MARKET, "device_id": "DEV-001", "role": "operator"})
    assert code == 200 and reg["status"] == "pending", reg
    code, answer = await env.post("/ingest", json=sample_payload(), headers=bearer(reg["token"]))
    assert code == 403, answer  # not before an operator approved the device
    code, answer = await env.post("/api/bridges/devices/DEV-001/approve", headers=bearer(OPERATOR))
    assert code == 200 and answer["status"] == "active", answer
    code, answer = await env.post("/api/auth/token", json={"device_id": "DEV-001"}, headers=bearer(reg["token"]))
    assert code == 200, answer
    return str(answer["token"])


def flip_record_byte(store_dir: Path, raw: bytes) -> int:
    """Change one byte of a record's bytes wherever the LMDB file holds them; returns how many copies."""
    path = store_dir / "data.mdb"
    data = bytearray(path.read_bytes())
    at, copies = data.find(raw), 0
    while at >= 0:
        data[at + len(raw) // 2] ^= 0x01
        copies += 1
        at = data.find(raw, at + 1)
    path.write_bytes(bytes(data))
    return copies


async def test_seed_client_flow_then_a_tampered_store_fails_the_integrity_check(tmp_path):
    env = await make_hub(tmp_path, **OPTIONS)
    try:
        # 40 days of signed prices at the market: enough history for an impact score on the live update.
        signed_price_device(env, days=40, market=MARKET)
        token = await onboard(env)
        ws_url = env.url.replace("http://", "ws://")
        events = env.running.api.events
        async with env.session.ws_connect(f"{ws_url}/ws/prices?token={token}") as prices, \
                env.session.ws_connect(f"{ws_url}/api/alerts/ws", headers=bearer(token)) as alerts:
            await wait_for(lambda: events.subscribers == 2, what="both WebSockets to subscribe")
            code, answer = await env.post("/ingest", json=sample_payload(), headers=bearer(token))
            assert code == 200 and answer["processed"] == 3, answer
            update = await receive_json(prices, "price_update", commodity="cabai")
            assert update["market_id"] == SEED_MARKET and update["price"] == 15000
            assert update["region"] == "JAKARTA" and update["jejak"]["trust"] == "attested"
            assert 0 <= update["impact_score"] <= 100 and update["dominant_factor"]
            assert update["factors_with_weights"] and isinstance(update["price_change"], float)
            assert update["impact_score"] == update["jejak"]["impact"]["score"]

            # Price check: the validator's verdict, nothing stored (no token needed: it is a question).
            observed = len(env.views.markets.observed)
            length = env.attest_length()
            # Asked as the device that just sent it, so it is not another reporter vouching for its own price.
            code, check = await env.post("/api/validation/price/check", json={
                "market_id": SEED_MARKET, "commodity": "cabai", "price": 15000, "device_id": "DEV-001"})
            assert code == 200, check
            assert update["quarantined"] == check["quarantined"], (update["jejak"]["summary"], check["jejak"])
            assert check["outlier"] and check["flagged"] and check["quarantined"] and not check["stored"]
            assert set(check["flags"]) == {"zscore", "iqr", "ai", "multi_source_ok"}
            assert check["jejak"]["status"] == "quarantined" and check["jejak"]["fired"]
            code, usual = await env.post("/api/validation/price/check", json={
                "market_id": SEED_MARKET, "commodity": "cabai", "price": 49_750, "device_id": "DEV-001"})
            assert code == 200 and not usual["quarantined"] and not usual["outlier"], usual
            assert len(env.views.markets.observed) == observed and env.attest_length() == length

            # Alert trigger: an operator's action, pushed to the alert WebSocket.
            body = {"message": "Harga cabai melonjak di PASAR-001", "level": "critical", "commodity": "cabai",
                    "market_id": SEED_MARKET}
            code, answer = await env.post("/api/alerts/trigger", json=body)
            assert code == 401, answer
            code, answer = await env.post("/api/alerts/trigger", json=body, headers=bearer(token))
            assert code == 403, answer
            code, answer = await env.post("/api/alerts/trigger", json=body, headers=bearer(OPERATOR))
            assert code == 201 and answer["status"] == "triggered", answer
            pushed = await receive_json(alerts, "alert", id=answer["id"])
            assert pushed["message"] == body["message"] and pushed["level"] == "critical"
            assert pushed["subject"] == f"{MARKET}/cabai-merah"
            code, live = await env.get("/api/public/alerts/live")
            assert answer["id"] in [a["id"] for a in live["alerts"]]

        # Ledger append: a record the hub signs, marked attested; then the integrity check passes.
        entry = {"market_id": SEED_MARKET, "commodity": "cabai", "price": 15000}
        code, answer = await env.post("/api/blockchain/append", json=entry)
        assert code == 401, answer
        code, appended = await env.post("/api/blockchain/append", json=entry, headers=bearer(token))
        assert code == 200 and appended["trust"] == "attested", appended
        rec = env.attested()[-1]
        assert rec.id.hex() == appended["hash"] and rec.seq == appended["index"]
        assert rec.device_id == env.hub.hub_id and rec.body["path"] == PATH_APPEND
        assert rec.body["data"]["entry"] == entry and "DEV-001" in rec.body["sender"]
        answers = await asyncio.gather(*(env.get("/api/blockchain/integrity/check") for _ in range(3)))
        code, ok = answers[0]
        assert code == 200 and ok["ok"] is True and ok["jejak"]["code"] is None, ok
        assert all(c == 200 and a["ok"] and a["length"] == ok["length"] for c, a in answers)
        assert ok["length"] == ok["jejak"]["size"] > 40 and ok["jejak"]["full"]
        raw = rec.raw
    finally:
        await close_hub(env)

    assert flip_record_byte(tmp_path / "hub" / "store", raw) >= 1
    env = await make_hub(tmp_path, **OPTIONS)
    try:
        code, bad = await env.get("/api/blockchain/integrity/check")
        assert code == 200 and bad["ok"] is False, bad
        assert bad["jejak"]["code"] == "RECORD_DAMAGED" and bad["broken_at"] == appended["index"]
        assert {"device": env.hub.hub_id.hex(), "seq": appended["index"]} in bad["jejak"]["damaged"]
    finally:
        await close_hub(env)


@pytest.fixture
async def seedenv(tmp_path):
    env = await make_hub(tmp_path, **OPTIONS, ws_max_subscribers=3, ws_queue=16)
    try:
        yield env
    finally:
        await close_hub(env)


async def test_bad_input_is_4xx_or_a_close_code_never_5xx(seedenv):
    env = seedenv
    token = await onboard(env)
    check = "/api/validation/price/check"
    for body, status in [({"market_id": SEED_MARKET, "commodity": "durian", "price": 1000}, 404),
                         ({"market_id": "PASAR-999", "commodity": "cabai", "price": 1000}, 404),
                         ({"market_id": SEED_MARKET, "commodity": "cabai", "price": "murah"}, 400),
                         ({"market_id": SEED_MARKET, "commodity": 7, "price": 1000}, 400),
                         ({"market_id": SEED_MARKET, "commodity": "cabai", "price": -5}, 400),
                         ({"market_id": SEED_MARKET, "commodity": "cabai"}, 400),
                         ({"market_id": SEED_MARKET, "commodity": "cabai", "price": 1, "x": 1}, 400),
                         ([1, 2], 400)]:
        code, answer = await env.post(check, json=body)
        assert code == status and "detail" in answer, (body, code, answer)
    code, answer = await env.post(check, data=b"{not json")
    assert code == 400, answer
    async with env.session.get(f"{env.url}/ws/prices?token={token}") as resp:  # not a WebSocket upgrade
        assert resp.status == 400
    async with env.session.get(env.url + "/dashboard/map/", allow_redirects=False) as resp:
        assert resp.status == 302 and resp.headers["Location"] == "/#markets/map"

    append = "/api/blockchain/append"
    for kw, status in [({"json": {"a": 1}}, 401), ({"json": [1], "headers": bearer(token)}, 400),
                       ({"json": {"a": 1}, "headers": bearer("not-a-token")}, 401),
                       ({"data": b"x" * 20_000, "headers": bearer(token)}, 413),
                       ({"json": {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": 1}}}}}}}}, "headers": bearer(token)},
                        400)]:
        code, answer = await env.post(append, **kw)
        assert code == status, (kw, code, answer)
    code, answer = await env.post("/api/alerts/trigger", json={"message": "x", "level": "panic"},
                                  headers=bearer(OPERATOR))
    assert code == 400, answer
    code, answer = await env.post("/api/alerts/trigger", json={"message": 5}, headers=bearer(OPERATOR))
    assert code == 400, answer
    # A forged second line (a log line, a webhook's next field) or text shown in another order than stored.
    for forged, at in [("harga normal\n2026-12-01 INFO all clear", "U+000A at character 13"),
                       ("cabai \x1b[2Knaik", "U+001B"), ("harga \u202enaik", "U+202E")]:
        code, answer = await env.post("/api/alerts/trigger", json={"message": forged}, headers=bearer(OPERATOR))
        assert code == 400 and answer["code"] == "BRIDGE_INPUT" and at in answer["detail"], answer
    code, _ = await env.post("/api/alerts/trigger", json={"message": "Harga cabai naik 20% — periksa pasar"},
                             headers=bearer(OPERATOR))
    assert code == 201

    ws_url = env.url.replace("http://", "ws://")
    for path, status in [("/ws/prices", 401), (f"/ws/prices?token={'x' * 40}", 401),
                         (f"/api/alerts/ws?token={'x' * 40}", 401),
                         (f"/ws/prices?token={token}&commodity=durian", 404)]:
        with pytest.raises(aiohttp.WSServerHandshakeError) as err:
            await env.session.ws_connect(ws_url + path)
        assert err.value.status == status, path

    for frame, code in [("x" * 5000, 1009), ("subscribe me", 1003), (b"\x00\x01", 1003)]:
        async with env.session.ws_connect(f"{ws_url}/ws/prices?token={token}") as ws:
            if isinstance(frame, bytes):
                await ws.send_bytes(frame)
            else:
                await ws.send_str(frame)
            assert await close_code(ws) == code, frame
    async with env.session.ws_connect(f"{ws_url}/api/alerts/ws?token={token}") as ws:
        await ws.send_str("ping")
        assert await receive_json(ws, "pong") == {"type": "pong"}

    # At most ws_max_subscribers at once; one more is told to come back later.
    events = env.running.api.events
    await wait_for(lambda: events.subscribers == 0, what="the closed WebSockets to unsubscribe")
    sockets = [await env.session.ws_connect(f"{ws_url}/ws/prices?token={token}") for _ in range(3)]
    try:
        await wait_for(lambda: events.subscribers == 3, what="three subscribers")
        with pytest.raises(aiohttp.WSServerHandshakeError) as err:
            await env.session.ws_connect(f"{ws_url}/ws/prices?token={token}")
        assert err.value.status == 503 and err.value.headers["Retry-After"] == "30"
    finally:
        for ws in sockets:
            await ws.close()


def stalled_subscriber(url: str, path: str) -> socket.socket:
    """A WebSocket client that completes the handshake and then never reads again."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


async def test_a_stalled_subscriber_is_dropped_and_the_others_get_every_event(seedenv):
    env = seedenv
    token = await onboard(env)
    events = env.running.api.events
    ws_url = env.url.replace("http://", "ws://")
    stalled = await asyncio.to_thread(stalled_subscriber, env.url, f"/api/alerts/ws?token={token}")
    try:
        async with env.session.ws_connect(f"{ws_url}/api/alerts/ws", headers=bearer(token)) as reader:
            await wait_for(lambda: events.subscribers == 2, what="both subscribers")
            got = 0
            sent = 0
            # Publish in rounds the reader keeps up with, until the stalled one's socket and queue are full.
            while events.subscribers == 2:
                assert sent < 50_000, "the stalled subscriber was never dropped"
                for _ in range(8):
                    sent += 1
                    events.publish({"type": "alert", "alert": {"id": f"a{sent}", "subject": "all", "time": 0,
                                                               "severity": "warning", "text": "x" * 2000}})
                while got < sent:
                    await receive_json(reader, "alert")
                    got += 1
            assert events.subscribers == 1 and got == sent
            # The hub still ingests and the reader still hears it.
            code, answer = await env.post("/api/alerts/trigger", json={"message": "after"}, headers=bearer(OPERATOR))
            assert code == 201, answer
            assert (await receive_json(reader, "alert", id=answer["id"]))["message"] == "after"
    finally:
        stalled.close()


async def test_fanout_bench_round_delivers_every_update_to_every_subscriber():
    figures = await _hub_round(10, 5)
    assert figures["updates_delivered"] == figures["updates_expected"] == 50
    assert figures["subscribers_dropped"] == 0 and figures["ingest_per_s"] > 0
