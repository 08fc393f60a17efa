"""The operator's and seed devices' routes answer as hub/apidoc.py documents them: each request body the handler
takes fits the documented request schema, and each answer its answer schema with no undocumented field."""

from __future__ import annotations

import datetime as dt

from hub.bridges import MqttConfig
from tests.documented import assert_documented

from .conftest import GATEWAY, MARKET, OPERATOR, close_hub, make_hub

OP = {"Authorization": f"Bearer {OPERATOR}"}


def price_file(days: int) -> bytes:
    """A panel export of `days` days of one steady price, then a price ten times it."""
    start = dt.date.today() - dt.timedelta(days=days + 1)
    lines = ["Timestamp,Komoditas,Satuan,Harga,Pasar,Pelapor"]
    lines += [f"{start + dt.timedelta(days=d)} 08:00:00,Cabai Merah Keriting,Rp./Kg,{40000 + 100 * (d % 5)},"
              f"pasar-senen,r1" for d in range(days)]
    lines.append(f"{start + dt.timedelta(days=days)} 08:00:00,Cabai Merah Keriting,Rp./Kg,400000,pasar-senen,r1")
    return ("\n".join(lines) + "\n").encode()


async def test_operator_and_device_routes_answer_as_documented(tmp_path) -> None:
    env = await make_hub(tmp_path, mqtt=MqttConfig(enabled=False), auto_approve=False)
    try:
        register = {"market_id": MARKET, "device_id": "DEV-DOC", "role": "reporter"}
        code, registered = await env.post("/api/auth/device/register", json=register)
        assert_documented("POST", "/api/auth/device/register", code, registered, register)
        assert registered["status"] == "pending"

        code, device = await env.post("/api/bridges/devices/DEV-DOC/approve", headers=OP)
        assert_documented("POST", "/api/bridges/devices/{device_id}/approve", code, device)
        assert device["status"] == "active"
        await env.post("/api/auth/device/register", json={**register, "device_id": "DEV-GONE"})
        code, gone = await env.post("/api/bridges/devices/DEV-GONE/revoke", headers=OP)
        assert_documented("POST", "/api/bridges/devices/{device_id}/revoke", code, gone)
        assert gone["status"] == "revoked"

        renew = {"device_id": "DEV-DOC"}
        code, renewed = await env.post("/api/auth/token", json=renew,
                                       headers={"Authorization": f"Bearer {registered['token']}"})
        assert_documented("POST", "/api/auth/token", code, renewed, renew)
        bearer = {"Authorization": f"Bearer {renewed['token']}"}

        stream = {"timestamp": dt.datetime.now(dt.UTC).isoformat(), "market_id": MARKET, "device_id": "DEV-DOC",
                  "temperature": 29.5, "humidity": 72.3, "crowd": 12,
                  "prices": {"cabai": 41000, "beras": 12000.0, "durian": 60000}}
        code, ingested = await env.post("/ingest", json=stream, headers=bearer)
        assert_documented("POST", "/ingest", code, ingested, stream)
        assert ingested["processed"] == 2 and list(ingested["refused"]) == ["durian"]

        check = {"market_id": MARKET, "commodity": "cabai", "price": 400000, "region": "DKI Jakarta"}
        code, checked = await env.post("/api/validation/price/check", json=check)
        assert_documented("POST", "/api/validation/price/check", code, checked, check)

        trigger = {"message": "banjir di pasar", "level": "critical", "commodity": "cabai", "market_id": MARKET}
        code, triggered = await env.post("/api/alerts/trigger", json=trigger, headers=OP)
        assert_documented("POST", "/api/alerts/trigger", code, triggered, trigger)

        entry = {"note": "stok cabai habis", "count": 3, "weight_kg": 1.5, "tags": ["cabai", {"x": None}]}
        code, appended = await env.post("/api/blockchain/append", json=entry, headers=bearer)
        assert_documented("POST", "/api/blockchain/append", code, appended, entry)

        batch = [{"nfc_tag_id": "NFC_TAG_DOC", "timestamp": dt.datetime.now(dt.UTC).isoformat(),
                  "status_scan": "makanan_keluar", "gateway_id": "RASPBERRY_PI_SEKOLAH_A"}]
        code, accepted = await env.post("/api/sync_gateway_data", json=batch,
                                        headers={"Authorization": f"Bearer {GATEWAY}"})
        assert_documented("POST", "/api/sync_gateway_data", code, accepted, batch)

        async with env.session.post(env.url + "/api/markets/import?source=agency", data=price_file(40),
                                    headers=OP) as resp:
            code, report = resp.status, await resp.json()
        assert_documented("POST", "/api/markets/import", code, report)
        assert report["taken"] == 41

        code, held = await env.get("/api/markets/quarantine")
        assert_documented("GET", "/api/markets/quarantine", code, held)
        assert held["entries"], "the import held no price"
        decide = {"action": "release", "by": "siti", "why": "checked with the trader"}
        code, decided = await env.post(f"/api/markets/quarantine/{held['entries'][0]['observation']['id']}/decide",
                                       json=decide, headers=OP)
        assert_documented("POST", "/api/markets/quarantine/{id}/decide", code, decided, decide)

        for path in ("/api/markets/webhooks", "/api/bridges/status", "/api/markets/alerts",
                     "/api/markets/quarantine/audit"):
            code, answer = await env.get(path, headers=OP)
            assert_documented("GET", path, code, answer)
        code, status = await env.get("/api/bridges/status", headers=OP)
        assert [d["device_id"] for d in status["legacy_devices"]] == ["DEV-DOC", "DEV-GONE"] and status["mqtt"] is None
        code, alerts = await env.get("/api/markets/alerts")
        assert any(a["domain"] == "operator" and a["level"] == "critical" for a in alerts["alerts"])
    finally:
        await close_hub(env)
