"""/api/openapi.json covers every route the hub serves with its typed entry, and every route refuses alike."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request

from hub.app import start_hub
from hub.config import HubConfig


def get(url: str, method: str = "GET") -> tuple[int, dict[str, object], dict[str, str]]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=10) as resp:
            return resp.status, json.loads(resp.read()), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()), dict(exc.headers)


async def test_every_route_is_documented_with_parameters_answers_and_security(tmp_path, hub) -> None:
    running = await start_hub(HubConfig(data_dir=str(tmp_path), http_port=0, coap_port=0, mdns=False), hub=hub)
    try:
        status, spec, _ = await asyncio.to_thread(get, running.http_url + "/api/openapi.json")
        assert status == 200
        ops = [(path, method, op) for path, item in spec["paths"].items() for method, op in item.items()]
        assert len(ops) >= 55
        undocumented = [f"{m.upper()} {p}" for p, m, op in ops if op.get("x-jejak-undocumented")]
        assert not undocumented, f"routes without an entry in hub/apidoc.py: {undocumented}"
        assert not [p for p, _, op in ops if "Domain view" in op["summary"] or not op["summary"]]
        assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
        by_route = {(m.upper(), p): op for p, m, op in ops}
        assert by_route[("POST", "/api/devices/{device}/approve")]["security"] == [{"bearer": []}]
        consistency = by_route[("GET", "/api/proofs/consistency")]
        assert {p["name"]: p["required"] for p in consistency["parameters"]} == {"from": True, "to": True}
        answer = consistency["responses"]["200"]["content"]["application/json"]["schema"]
        assert answer["required"] == ["from", "proof", "to"]
        assert by_route[("GET", "/api/devices")]["responses"]["4XX"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/Error"}
    finally:
        await running.close()


async def test_missing_parameter_unknown_route_and_wrong_method_answer_one_error_body(tmp_path, hub) -> None:
    running = await start_hub(HubConfig(data_dir=str(tmp_path), http_port=0, coap_port=0, mdns=False), hub=hub)
    try:
        base = running.http_url
        status, body, _ = await asyncio.to_thread(get, base + "/api/proofs/consistency?to=2")
        assert status == 400 and body["error"]["code"] == "BAD_REQUEST"  # type: ignore[index]
        status, body, _ = await asyncio.to_thread(get, base + "/api/no/such/route")
        assert status == 404 and body["error"]["code"] == "NOT_FOUND"  # type: ignore[index]
        status, body, headers = await asyncio.to_thread(get, base + "/api/devices", "DELETE")
        assert status == 405 and body["error"]["code"] == "METHOD_NOT_ALLOWED"  # type: ignore[index]
        assert "GET" in headers["Allow"]
    finally:
        await running.close()


def test_each_documented_security_agrees_with_the_access_rule_the_hub_enforces() -> None:
    from hub import auth
    from hub.apidoc import ROUTES

    # The document's `auth` a route may carry for each rule of hub.auth.ACCESS.
    allowed = {auth.PUBLIC: {"public"}, auth.SIGNED: {"public"}, auth.READER: {"auditor", "export"},
               auth.OPERATOR: {"operator"}, auth.DEVICE: {"seed2", "operator"}, auth.GATEWAY: {"device"}}
    wrong = [f"{m} {p}: documented {r.auth}, enforced {auth.rule_of(m, p)}" for (m, p), r in ROUTES.items()
             if r.auth not in allowed.get(auth.rule_of(m, p) or "none", set())]
    assert not wrong, wrong
