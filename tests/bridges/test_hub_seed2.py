"""Seed 2 on the hub: register (QR) -> token -> POST /ingest -> a hub-attested record, visible in the public
API as attested next to device-signed prices; bad token, malformed body or unknown market store nothing."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest

from tests.wait import wait_for

from .conftest import MARKET, OPERATOR, SIGNED_MARKET, signed_price_device


def payload(**changes) -> dict:
    # The shape seed 2's device client builds (device_client/client.py `_build_payload`).
    base = {"timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"), "market_id": MARKET,
            "device_id": "DEV-001", "temperature": 29.57, "humidity": 72.3, "crowd": 12,
            "prices": {"cabai": 15000.0, "bawang": 9000.0, "beras": 12000.0}}
    base.update(changes)
    return base


async def register(env, device_id: str = "DEV-001", market_id: str = MARKET) -> dict:
    code, answer = await env.post("/api/auth/device/register",
                                  json={"market_id": market_id, "device_id": device_id, "role": "operator"})
    assert code == 200, answer
    return answer


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


async def test_register_token_ingest_is_attested_and_public(hubenv):
    reg = await register(hubenv)
    assert reg["device_id"] == "DEV-001" and len(reg["token"]) >= 32 and reg["status"] == "active"
    png = base64.b64decode(reg["qr"].removeprefix("data:image/png;base64,"))
    assert reg["qr"].startswith("data:image/png;base64,") and png[:8] == b"\x89PNG\r\n\x1a\n"
    # The token is never stored, only its digest.
    stored = (hubenv.bridges.registry.path).read_text()
    assert reg["token"] not in stored

    before = hubenv.attest_length()
    code, answer = await hubenv.post("/ingest", json=payload(), headers=bearer(reg["token"]))
    assert code == 200, answer
    assert answer["status"] == "ok" and answer["processed"] == 3 and answer["trust"] == "attested"
    assert hubenv.attest_length() == before + 1
    rec = hubenv.attested()[-1]
    assert rec.id.hex() == answer["record"] and rec.device_id == hubenv.hub.hub_id
    body = rec.body
    assert body["kind"] == "price" and body["path"] == "http:/ingest"
    assert "DEV-001" in body["sender"] and "127.0.0.1" in body["sender"]
    data = body["data"]
    assert data["prices"] == {"cabai-merah": 15000, "bawang-merah": 9000, "beras-medium": 12000}
    assert data["names"]["cabai-merah"] == "cabai"
    assert data["temp_cc"] == 2957 and data["rh_cp"] == 7230 and data["crowd"] == 12
    assert data["market"] == MARKET and len(data["raw_sha256"]) == 64

    # The public API shows the price, marked as attested, and names the record that carries it.
    code, live = await hubenv.get("/api/public/commodity/price/live", params={"commodity": "cabai"})
    assert code == 200, live
    mine = [p for p in live["prices"] if p["market_id"] == MARKET]
    assert len(mine) == 1
    assert mine[0]["price_idr"] == 15000 and mine[0]["trust"] == "attested"
    assert mine[0]["record"].startswith(rec.id.hex())
    assert live["trust"]["attested"] >= 1
    code, hist = await hubenv.get("/api/public/commodity/price/history",
                                  params={"commodity": "beras", "market_id": MARKET})
    assert code == 200 and [h["price_idr"] for h in hist["history"]] == [12000]
    assert hist["history"][0]["trust"] == "attested"


async def test_attested_and_signed_prices_are_told_apart_in_the_api(hubenv):
    signed_price_device(hubenv, days=60)
    reg = await register(hubenv)
    code, _ = await hubenv.post("/ingest", json=payload(), headers=bearer(reg["token"]))
    assert code == 200
    code, live = await hubenv.get("/api/public/commodity/price/live", params={"commodity": "cabai-merah"})
    by_market = {p["market_id"]: p for p in live["prices"]}
    assert by_market[SIGNED_MARKET]["trust"] == "signed" and by_market[MARKET]["trust"] == "attested"
    assert by_market[SIGNED_MARKET]["source"] == "" and by_market[MARKET]["source"] == "attested:http:/ingest"
    assert live["trust"] == {"signed": 1, "attested": 1}
    # Forecasts and impact are reachable (unlike in seed 2) and say how much of their input was attested.
    code, fc = await hubenv.get("/api/forecast/cabai", params={"market_id": SIGNED_MARKET})
    assert code == 200, fc
    # Inputs are counted over the observations the hub lists (its last raw_days days; older days are kept as
    # daily aggregates): the signed device's prices of the days before today within them.
    listed = hubenv.views.markets.config.raw_days - 1
    assert len(fc["forecast"]) == 7 and fc["inputs"] == {"signed": listed, "attested": 0}
    code, conf = await hubenv.get("/api/forecast/confidence", params={"commodity": "cabai"})
    assert code == 200, conf
    assert 0.0 <= conf["confidence"] <= 1.0
    assert conf["inputs"] == {"signed": listed, "attested": 1}
    assert conf["attested_share"] == round(1 / (listed + 1), 3)
    code, imp = await hubenv.get("/api/public/impact", params={"commodity": "cabai", "market_id": MARKET})
    assert code == 200 and imp["inputs"] == {"signed": 0, "attested": 1} and "weights" in imp
    code, alerts = await hubenv.get("/api/public/alerts/live")
    assert code == 200 and isinstance(alerts["alerts"], list)
    # The records API says which log holds what: the hub's own log holds its key, attestations and decisions.
    code, recs = await hubenv.get(f"/api/devices/{hubenv.hub.hub_id.hex()}/records",
                                  headers={"Authorization": f"Bearer {OPERATOR}"})  # bodies: auditor or operator
    assert {r["kind"] for r in recs["records"]} == {"key", "attest", "authority"}
    code, dev = await hubenv.get(f"/api/devices/{hubenv.hub.hub_id.hex()}")
    assert dev["role"] == "hub-attestor"


async def test_forecast_without_prices_answers_seed2_detail(hubenv):
    code, answer = await hubenv.get("/api/forecast/telur")
    assert code in (400, 404, 422) and "accepted prices" in answer["detail"]
    code, answer = await hubenv.get("/api/forecast/durian")
    assert code == 404 and "unknown commodity" in answer["detail"]
    code, answer = await hubenv.get("/api/public/commodity/price/live")
    assert code == 422 and "commodity" in answer["detail"]


@pytest.mark.parametrize(("headers", "says"), [
    ({}, "Not authenticated"),
    ({"Authorization": "Bearer not-a-token-anyone-was-given"}, "Invalid token"),
    ({"Authorization": "Basic REVWLTAwMTpzZWNyZXQ="}, "Not authenticated"),
    ({"Authorization": "bearer not-a-token-anyone-was-given"}, "Invalid token"),  # the scheme in any case
])
async def test_unauthorised_token_refused_and_nothing_stored(hubenv, headers, says):
    await register(hubenv)
    before = hubenv.attest_length()
    code, answer = await hubenv.post("/ingest", json=payload(), headers=headers)
    assert code == 401 and set(answer) == {"detail", "code"} and says in answer["detail"]
    assert answer["code"] == "UNAUTHORIZED"
    assert hubenv.attest_length() == before
    assert hubenv.bridges.refused["http:/ingest"] == 1


@pytest.mark.parametrize(("body", "code_", "says"), [
    (payload(market_id="PASAR-TIDAK-ADA"), 400, "unknown market"),
    (payload(prices={"cabai": "mahal"}), 400, "expected a number"),
    (payload(prices={"cabai": 15000.5}), 400, "whole number"),
    (payload(prices={"durian": 50000}), 400, "unknown commodity"),
    (payload(prices={}), 400, "prices"),
    (payload(temperature=400), 400, "temperature"),
    (payload(timestamp="besok pagi"), 400, "ISO 8601"),
    (payload(extra_field=1), 400, "unexpected keys"),
    ({"prices": {"cabai": 1000}}, 400, "market_id"),
    (payload(device_id="DEV-999"), 403, "not the token's device"),
    (payload(market_id="pasar-senen"), 403, "registered at market"),
    ([1, 2, 3], 400, "JSON object"),
])
async def test_malformed_or_foreign_payload_refused_and_nothing_stored(hubenv, body, code_, says):
    reg = await register(hubenv)
    before = hubenv.attest_length()
    code, answer = await hubenv.post("/ingest", data=json.dumps(body),
                                     headers={**bearer(reg["token"]), "Content-Type": "application/json"})
    assert code == code_, answer
    assert set(answer) == {"detail", "code"} and says in answer["detail"]
    assert answer["code"] == ("FORBIDDEN" if code_ == 403 else "BRIDGE_INPUT"), answer
    assert hubenv.attest_length() == before


async def test_registration_rules_and_token_renewal(hubenv):
    reg = await register(hubenv)
    code, answer = await hubenv.post("/api/auth/device/register", json={"market_id": MARKET, "device_id": "DEV-001"})
    assert code == 400 and answer == {"detail": "Device already registered", "code": "BRIDGE_INPUT"}
    code, answer = await hubenv.post("/api/auth/device/register", json={"market_id": "PASAR-X", "device_id": "DEV-2"})
    assert code == 400 and "unknown market" in answer["detail"]
    # Seed 2 handed a token to anyone who knew a device id; here renewal needs the current token.
    code, answer = await hubenv.post("/api/auth/token", json={"device_id": "DEV-001"})
    assert code == 401
    code, renewed = await hubenv.post("/api/auth/token", json={"device_id": "DEV-001"}, headers=bearer(reg["token"]))
    assert code == 200 and renewed["token"] != reg["token"]
    code, _ = await hubenv.post("/ingest", json=payload(), headers=bearer(reg["token"]))
    assert code == 401
    code, _ = await hubenv.post("/ingest", json=payload(), headers=bearer(renewed["token"]))
    assert code == 200
    code, by_operator = await hubenv.post("/api/auth/token", json={"device_id": "DEV-001"}, headers=bearer(OPERATOR))
    assert code == 200 and by_operator["token"] != renewed["token"]


async def test_pending_device_is_refused_until_an_operator_approves(hubenv):
    from dataclasses import replace

    hubenv.bridges.config = replace(hubenv.bridges.config, auto_approve=False)
    reg = await register(hubenv, device_id="DEV-PENDING")
    assert reg["status"] == "pending"
    before = hubenv.attest_length()
    code, answer = await hubenv.post("/ingest", json=payload(device_id="DEV-PENDING"), headers=bearer(reg["token"]))
    assert code == 403 and "pending" in answer["detail"]
    assert hubenv.attest_length() == before
    code, _ = await hubenv.post("/api/bridges/devices/DEV-PENDING/approve", headers=bearer(reg["token"]))
    assert code == 401
    code, dev = await hubenv.post("/api/bridges/devices/DEV-PENDING/approve", headers=bearer(OPERATOR))
    assert code == 200 and dev["status"] == "active"
    code, _ = await hubenv.post("/ingest", json=payload(device_id="DEV-PENDING"), headers=bearer(reg["token"]))
    assert code == 200 and hubenv.attest_length() == before + 1


async def test_panel_names_are_taken_and_an_unknown_one_refuses_only_its_price(hubenv):
    reg = await register(hubenv)
    prices = {"Cabai Merah Keriting": 41000, "cabai  merah BESAR": 45000, "Minyak Goreng Curah": 17500,
              "Minyakita": 15700, "Daging Kerbau Beku (Impor Luar Negeri)": 98000, "Durian Montong": 60000}
    code, answer = await hubenv.post("/ingest", json=payload(prices=prices), headers=bearer(reg["token"]))
    assert code == 200, answer
    assert answer["processed"] == 5 and list(answer["refused"]) == ["Durian Montong"]
    assert "unknown commodity" in answer["refused"]["Durian Montong"]
    data = hubenv.attested()[-1].body["data"]
    # Keriting and Besar, bulk oil and Minyakita stay distinct items.
    assert data["prices"] == {"cabai-merah": 41000, "cabai-merah-besar": 45000, "minyak-goreng-curah": 17500,
                              "minyak-goreng": 15700, "daging-kerbau-beku": 98000}


async def test_observation_time_is_honoured_within_the_allowance(hubenv):
    reg = await register(hubenv)
    now = hubenv.hub.clock()
    day_ago = datetime.fromtimestamp(now - 86400 - 3600, UTC).isoformat()
    code, answer = await hubenv.post("/ingest", json=payload(timestamp=day_ago), headers=bearer(reg["token"]))
    assert code == 200, answer
    assert answer["observed_at"] == now - 86400 - 3600 and answer["late"] is True
    rows = await wait_for(lambda: [o for o in hubenv.bridges.observations("beras-medium") if o["market"] == MARKET])
    assert rows[0]["time"] == now - 86400 - 3600 and rows[0]["grade"] == "medium"
    week_ago = datetime.fromtimestamp(now - 7 * 86400, UTC).isoformat()
    code, answer = await hubenv.post("/ingest", json=payload(timestamp=week_ago), headers=bearer(reg["token"]))
    assert code == 422 and "jejak markets import" in answer["detail"]
