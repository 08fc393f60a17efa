"""Every route of a running hub and edge, CoAP and HTTP, tried by each attacker SECURITY.md names.

The route lists come from the servers themselves (`/.well-known/core`, the hub's OpenAPI document with each
route's `x-access` rule, the edge's HTTP router), so a route added without a rule fails here. Attackers: an
unenrolled process (no context, no token), a pending key, a revoked key, an unknown token, an auditor
token; the operator is the control that shows each route is reachable at all. Afterwards nothing any of
them sent is in a store, and no public answer carries a staff card number planted in a record body.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import aiocoap
import aiohttp
import cbor2
from aiocoap.oscore import NotAProtectedMessage

from coap_server.security import PUBLIC, close_context, open_context, rule_for
from edge import keys as keyfile
from edge.config import HttpConfig
from edge.pairing import load_or_create_secret
from edge.security import enroll
from hub.auth import TOKEN_IN_QUERY, hash_token
from hub.bridges import BridgeConfig
from ledger import ChainBuilder
from ledger.sync import encode_heads, encode_records
from tests.hub.conftest import Clock
from tests.wait import wait_for

from .common import NOW, edge, edge_config, enroll_edge, qr_text, secure_hub

OPERATOR, AUDITOR, GATEWAY = "op-token-attack-suite", "aud-token-attack-suite", "gw-token-attack-suite"
STAFF = "STAFF-CARD-0451-PERSONAL"  # a staff card number: personal data no public answer may carry
CLOSED = {"UNAUTHORIZED", "FORBIDDEN"}  # CoAP 4.01 / 4.03 by aiocoap's names


@contextlib.asynccontextmanager
async def coap_client(data: Path | None, url: str) -> AsyncIterator[aiocoap.Context]:
    """A CoAP client; with `data`, protecting its requests to `url` with that enrollment's context."""
    ctx = await aiocoap.Context.create_client_context()
    sec = open_context(data / "oscore" / "hub", "hub:") if data is not None else None
    if sec is not None:
        ctx.client_credentials[f"{url}/*"] = sec
    try:
        yield ctx
    finally:
        await ctx.shutdown()
        if sec is not None:
            close_context(sec)


async def coap_code(ctx: aiocoap.Context, method: aiocoap.Code, uri: str, payload: bytes = b"") -> str:
    msg = aiocoap.Message(code=method, uri=uri, payload=payload, content_format=60 if payload else None)
    try:
        response = await asyncio.wait_for(ctx.request(msg).response, 10)
    except NotAProtectedMessage as exc:  # the server had no context for the key: it answered in the clear
        response = exc.plain_message
    return str(response.code.name)


async def resources(url: str) -> list[tuple[str, ...]]:
    """The resource paths a CoAP server lists in /.well-known/core (asked without any credential)."""
    ctx = await aiocoap.Context.create_client_context()
    try:
        msg = aiocoap.Message(code=aiocoap.GET, uri=f"{url}/.well-known/core")
        text = (await asyncio.wait_for(ctx.request(msg).response, 10)).payload.decode()
    finally:
        await ctx.shutdown()
    # Absolute links (aiocoap's implementation note) point elsewhere; the server's own resources are paths.
    paths = {tuple(p for p in link.split("/") if p) for link in re.findall(r"<([^>]+)>", text) if ":" not in link}
    return sorted(paths)


def body_for(path: tuple[str, ...], device: bytes) -> bytes:
    if path == ("sync", "heads"):
        return encode_heads([])
    if path == ("sync", "records"):
        return encode_records(device, 0, [])
    return cbor2.dumps({"kind": "note", "body": {"text": "from an attacker"}})


async def try_coap(ctx: aiocoap.Context, url: str, path: tuple[str, ...], device: bytes) -> dict[str, str]:
    """The answer code of GET and POST on one resource (records GET names a log, as sync does)."""
    uri = f"{url}/{'/'.join(path)}"
    get_uri = f"{uri}?d={device.hex()}" if path == ("sync", "records") else uri
    return {"GET": await coap_code(ctx, aiocoap.GET, get_uri),
            "POST": await coap_code(ctx, aiocoap.POST, uri, body_for(path, device))}


def own_log(key: Any, n: int, *, staff: str = STAFF) -> list[bytes]:
    chain = ChainBuilder(key, clock=Clock(NOW), boot=1)
    raws = [chain.genesis().raw]
    raws += [chain.append("scan", {"event": "departed", "site": "sppg-01", "tags": [f"T{i}"], "staff": staff}).raw
             for i in range(n - 1)]
    return raws


PATH_VALUES = {"commodity": "beras", "tag": "T1", "kind": "late", "id": "x" * 16, "device_id": "DEV-ATTACK",
               "name": "0" * 64, "hub": "0" * 32, "seq": "0"}


def fill(template: str, device: str, record: str) -> str:
    values = {**PATH_VALUES, "device": device, "record": record}
    return re.sub(r"\{(\w+)[^}]*\}", lambda m: values[m.group(1)], template)


async def test_every_route_refuses_every_attacker(tmp_path):
    hub_settings = {"operator_tokens": (hash_token(OPERATOR),), "auditor_tokens": (hash_token(AUDITOR),),
                    "bridges": BridgeConfig(state_dir=str(tmp_path / "bridges"), gateway_tokens=(hash_token(GATEWAY),))}
    async with secure_hub(tmp_path / "hub", auto_approve=False, **hub_settings) as hub:
        approved = await enroll_edge(tmp_path / "approved", hub, site="sppg-01")
        pending = await enroll_edge(tmp_path / "pending", hub, site="sppg-02")
        revoked = await enroll_edge(tmp_path / "revoked", hub, site="sppg-03")
        await asyncio.to_thread(hub.hub.approve, approved.device_id)
        await asyncio.to_thread(hub.hub.approve, revoked.device_id)
        await asyncio.to_thread(hub.hub.ingest, approved.device_id, own_log(approved, 3))
        await asyncio.to_thread(hub.hub.ingest, revoked.device_id, own_log(revoked, 2))
        await asyncio.to_thread(hub.hub.revoke, revoked.device_id, 2)
        await asyncio.to_thread(hub.hub.checkpoint, force=True)
        record = hub.hub.store.log_range(approved.device_id, 1, 2)[0]
        import hashlib

        record_id = hashlib.sha256(record).hexdigest()
        stored = hub.hub.store.size()

        econfig = dataclasses.replace(edge_config(tmp_path / "approved", hub=hub.coap_url),
                                      http=HttpConfig(enabled=True, host="127.0.0.1", port=0))
        async with edge(econfig) as daemon:
            edge_coap = f"coap://127.0.0.1:{daemon.coap_port}"
            # The edge starts on an empty store of a log the hub holds 3 records of: it fetches them first.
            await wait_for(lambda: daemon.status()["head"]["state"] == "confirmed", what="the head confirmed")
            edge_own = len(daemon.store.log_range(daemon.key.device_id, 0, 10**6))
            assert edge_own == 3
            report: list[str] = []

            # -- CoAP, hub and edge: every listed resource, by each attacker ------------------------------
            for url, who in ((hub.coap_url, "hub"), (edge_coap, "edge")):
                listed = await resources(url)
                assert ("sync", "records") in listed and ("sync", "heads") in listed, listed
                for path in listed:
                    rule = rule_for(path)
                    assert rule is not None, f"{who} serves /{'/'.join(path)} without an access rule"
                    attackers = [("unenrolled", None)]
                    if who == "hub":
                        attackers += [("pending", tmp_path / "pending"), ("revoked", tmp_path / "revoked")]
                    for name, data in attackers:
                        async with coap_client(data, url) as ctx:
                            codes = await try_coap(ctx, url, path, approved.device_id)
                        for method, code in codes.items():
                            if rule == PUBLIC:
                                continue
                            if code not in CLOSED:
                                report.append(f"CoAP {who} {method} /{'/'.join(path)} by {name}: {code}")

            # -- HTTP, hub: every route of the OpenAPI document --------------------------------------------
            async with aiohttp.ClientSession() as http:
                async with http.get(f"{hub.http_url}/api/openapi.json") as resp:
                    spec = await resp.json()
                routes = [(m.upper(), p, op["x-access"]) for p, ops in spec["paths"].items() for m, op in ops.items()]
                assert len(routes) > 40, routes
                no_rule = [f"{m} {p}" for m, p, rule in routes if rule == "none"]
                assert not no_rule, f"routes without an access rule: {no_rule}"
                tokens = {"no token": None, "unknown token": "not-a-token-anyone-holds", "auditor": AUDITOR}
                for method, template, rule in routes:
                    url = hub.http_url + fill(template, approved.device_id.hex(), record_id)
                    for name, token in tokens.items():
                        headers = {"Authorization": f"Bearer {token}"} if token else {}
                        async with http.request(method, url, headers=headers, data=b"{}",
                                                timeout=aiohttp.ClientTimeout(total=20)) as resp:
                            status = resp.status
                            raw = await resp.read() if "event-stream" not in resp.content_type else b""
                            text = raw.decode(errors="replace")
                        expected = expect_http(rule, name)
                        if expected is not None and status not in expected:
                            report.append(f"HTTP hub {method} {template} ({rule}) by {name}: {status}")
                        if status >= 500:
                            report.append(f"HTTP hub {method} {template} by {name}: {status} {text[:120]}")
                        if rule == "public" and name == "no token" and STAFF in text:
                            report.append(f"HTTP hub {method} {template} shows a staff card to the public")
                    # ?token= is never a credential, even the operator's (but on seed 2's WebSockets, where a
                    # browser cannot send a header)
                    if f"{method} {template}" in TOKEN_IN_QUERY:
                        continue
                    sep = "&" if "?" in url else "?"
                    async with http.request(method, f"{url}{sep}token={OPERATOR}", data=b"{}") as resp:
                        if resp.status != 400:
                            report.append(f"HTTP hub {method} {template}?token=: {resp.status}, expected 400")

                # -- HTTP, edge: every route its HTTP endpoint serves ------------------------------------------
                edge_http = f"http://127.0.0.1:{daemon.http_port}"
                edge_routes = sorted({(r.method, r.resource.canonical) for r in daemon._http.app.router.routes()
                                      if r.method != "HEAD"})
                assert ("POST", "/api/log_scan") in edge_routes, edge_routes
                for method, path in edge_routes:
                    for name, token in (("no token", None), ("unknown token", "guess-0123456789abcdef")):
                        headers = {"Authorization": f"Bearer {token}"} if token else {}
                        body = json.dumps({"nfc_tag_id": "NFC_TAG_ALPHA", "status_scan": "makanan_keluar"})
                        async with http.request(method, edge_http + path, headers=headers, data=body) as resp:
                            status = resp.status
                        open_page = path.startswith("/checkin")
                        if not open_page and status != 401:
                            report.append(f"HTTP edge {method} {path} by {name}: {status}, expected 401")
                        if open_page and method == "GET" and status != 200:
                            report.append(f"HTTP edge {method} {path}: {status}, the page is open")
                # the control: the paired phone gets past the pairing check (to the staff allow-list that an
                # edge with OSCORE on applies to every submitted scan; seed 1's scans name no staff card)
                secret = load_or_create_secret(daemon.config.data_path)
                async with http.post(f"{edge_http}/api/log_scan", headers={"Authorization": f"Bearer {secret}"},
                                     json={"nfc_tag_id": "NFC_TAG_PAIRED", "status_scan": "makanan_keluar"}) as resp:
                    assert resp.status == 403 and "staff card" in await resp.text()

            assert not report, "\n".join(report)
            # Nothing an attacker sent is stored, at the hub or at the edge.
            assert hub.hub.store.size() == stored
            assert hub.hub.store.chain_state(pending.device_id) is None
            assert len(daemon.store.log_range(daemon.key.device_id, 0, 10**6)) == edge_own


def expect_http(rule: str, who: str) -> set[int] | None:
    """The statuses SECURITY.md promises for a rule and an attacker (None: any refusal that is not 5xx)."""
    if rule == "signed":
        return None  # no token is asked for: the body's signature is the credential, checked by the handler
    if who == "unknown token":
        return {401}
    if rule == "operator":
        return {403}
    if rule == "reader":
        return {403} if who == "no token" else None
    if rule in ("device", "gateway") and who == "no token":
        return {401}
    return None


async def test_resolving_a_fork_of_a_key_never_approved_does_not_admit_it(tmp_path):
    """`resolve-fork` stores a device active: on a pending key it admitted it (records taken, an OSCORE context
    loaded) with no approval in the hub's own log, so every export then failed jejak-verify (UNKNOWN_KEY)."""
    async with secure_hub(tmp_path / "hub", auto_approve=False, operator_tokens=(hash_token(OPERATOR),)) as hub:
        pending = await enroll_edge(tmp_path / "pending", hub)
        url = f"{hub.http_url}/api/devices/{pending.device_id.hex()}"
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {OPERATOR}"}) as http:
            async with http.post(f"{url}/resolve-fork") as resp:
                assert resp.status == 400, await resp.text()
                error = (await resp.json())["error"]
            assert error["code"] == "HUB_ERROR" and "never approved" in error["message"]
            assert error["hint"] == f"approve it: jejak devices approve {pending.device_id.hex()}"
            async with http.get(url) as resp:
                assert (await resp.json())["status"] == "pending"
            assert pending.device_id not in hub.security.contexts
            async with http.post(f"{hub.http_url}/api/ingest/{pending.device_id.hex()}",
                                 data=encode_records(pending.device_id, 0, own_log(pending, 2))) as resp:
                assert resp.status == 409 and (await resp.json())["error"]["hint"] == \
                    "an operator must approve the device"
            # the control: an approved key, forked or not, is resolved as before
            async with http.post(f"{url}/approve") as resp:
                assert (await resp.json())["status"] == "active"
            async with http.post(f"{url}/resolve-fork") as resp:
                assert resp.status == 200 and (await resp.json())["status"] == "active"


async def test_what_a_pending_enrollment_says_of_itself_is_shown_only_to_readers(tmp_path):
    """An enrollment request nobody approved names its own site, role and name; anyone on the network may send
    one, and the public dashboard (devices, chain health, the names its answers use) showed them as sent."""
    claim = "pintu keluar SPPG Cibinong 1: HUBUNGI 0812-0000-0000"
    async with secure_hub(tmp_path / "hub", auto_approve=False, operator_tokens=(hash_token(OPERATOR),),
                          auditor_tokens=(hash_token(AUDITOR),)) as hub:
        key = keyfile.load_or_create(tmp_path / "pending" / "device.key")
        await asyncio.to_thread(enroll, qr_text(hub), key, tmp_path / "pending", site="SPPG-0001",
                                role="kitchen_exit", name=claim)
        device = key.device_id.hex()
        async with aiohttp.ClientSession() as http:
            async def text(path: str, token: str | None = None) -> str:
                headers = {"Authorization": f"Bearer {token}"} if token else {}
                async with http.get(f"{hub.http_url}{path}", headers=headers) as resp:
                    assert resp.status == 200, path
                    return await resp.text()
            for path in ("/api/devices", f"/api/devices/{device}", "/api/chain/health", "/api/mbg/names"):
                shown = await text(path)
                assert claim not in shown and "SPPG-0001" not in shown, path  # was shown as sent
            public = json.loads(await text(f"/api/devices/{device}"))
            assert (public["status"], public["name"], public["site"], public["role"]) == ("pending", "", "", "")
            assert claim in await text("/api/devices", AUDITOR)  # an operator or auditor sees what it asked
            await asyncio.to_thread(hub.hub.approve, key.device_id)  # approved: its name is the hub's word
            assert claim in await text(f"/api/devices/{device}") and claim in await text("/api/mbg/names")


async def test_a_gateway_scan_dated_ahead_of_the_hub_clock_is_refused_whole(tmp_path):
    """A seed 1 gateway's token (or its wrong clock) put scans made in 9999 into the hub's signed log; the hub
    attests only scans at most the plan's [clock] max_skew_s (15 min) ahead of its own clock, as far as its
    analytics believe a signed record's device time."""
    bridges = BridgeConfig(state_dir=str(tmp_path / "bridges"), gateway_tokens=(hash_token(GATEWAY),))
    async with secure_hub(tmp_path / "hub", bridges=bridges) as hub:
        def scan(t: str, tag: str = "NFC_TAG_AHEAD") -> dict[str, str]:
            return {"nfc_tag_id": tag, "timestamp": t, "status_scan": "makanan_keluar", "gateway_id": "GW_1"}

        def at(offset: int) -> str:
            return datetime.fromtimestamp(NOW + offset, UTC).replace(tzinfo=None).isoformat()
        stored = hub.hub.store.size()
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {GATEWAY}"}) as http:
            for batch in ([scan("9999-12-31T23:59:59")], [scan(at(0)), scan(at(3600), "NFC_TAG_LATER")],
                          [scan("9999-12-31T23:59:59-14:00")]):
                async with http.post(f"{hub.http_url}/api/sync_gateway_data", json=batch) as resp:
                    assert resp.status == 422, await resp.text()
                    message = (await resp.json())["error"]
                assert "after the hub's clock" in message and "at most 900 s ahead" in message, message
            assert hub.hub.store.size() == stored  # nothing attested, not even the batch's good scan
            # the control: a clock a few minutes fast (within the bound), and a batch synced a day late, are taken
            async with http.post(f"{hub.http_url}/api/sync_gateway_data",
                                 json=[scan(at(600)), scan(at(-86400), "NFC_TAG_EARLIER")]) as resp:
                assert resp.status == 201, await resp.text()


async def closed_with(ws: aiohttp.ClientWebSocketResponse) -> tuple[int | None, str]:
    """The close code and reason a WebSocket ends with (messages before it skipped)."""
    async with asyncio.timeout(30):
        while True:
            msg = await ws.receive()
            if msg.type == aiohttp.WSMsgType.CLOSE:  # the code the hub sent (the socket's own may read 1006
                return int(msg.data), str(msg.extra or "")  # once the connection is gone)
            if msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.ERROR):
                return ws.close_code, ""


async def test_a_seed2_websocket_ends_when_its_device_is_revoked_or_its_token_replaced(tmp_path):
    """A seed 2 device's WebSocket stayed open after an operator revoked the device (or after its token, the one
    that leaked, was replaced): it went on being served live prices and answered, with nothing to end it."""
    bridges = BridgeConfig(state_dir=str(tmp_path / "bridges"))
    async with secure_hub(tmp_path / "hub", operator_tokens=(hash_token(OPERATOR),), bridges=bridges) as hub:
        ws_url = hub.http_url.replace("http://", "ws://")
        op = {"Authorization": f"Bearer {OPERATOR}"}
        async with aiohttp.ClientSession() as http:
            async def onboard(device: str) -> str:
                async with http.post(f"{hub.http_url}/api/auth/device/register",
                                     json={"market_id": "pasar-minggu", "device_id": device}) as resp:
                    token = (await resp.json())["token"]
                async with http.post(f"{hub.http_url}/api/bridges/devices/{device}/approve", headers=op) as resp:
                    assert resp.status == 200, await resp.text()
                return str(token)

            token = await onboard("DEV-LEAKED")
            bearer = {"Authorization": f"Bearer {token}"}
            prices = await http.ws_connect(f"{ws_url}/ws/prices", headers=bearer)
            alerts = await http.ws_connect(f"{ws_url}/api/alerts/ws?token={token}")
            other_token = await onboard("DEV-OK")
            other = await http.ws_connect(f"{ws_url}/ws/prices", headers={"Authorization": f"Bearer {other_token}"})
            await alerts.send_str("ping")  # the control: served while the device is active
            assert json.loads((await alerts.receive()).data) == {"type": "pong"}
            async with http.post(f"{hub.http_url}/api/bridges/devices/DEV-LEAKED/revoke", headers=op) as resp:
                assert resp.status == 200
            for ws in (prices, alerts):
                assert await closed_with(ws) == (1008, "device DEV-LEAKED is revoked")
            async with http.post(f"{hub.http_url}/ingest", headers=bearer,
                                 json={"market_id": "pasar-minggu", "prices": {"cabai": 41000}}) as resp:
                assert resp.status == 403  # and nothing else it sends is taken
            await other.send_str("ping")  # another device's socket is left as it was
            assert json.loads((await other.receive()).data) == {"type": "pong"}

            # A token replaced (the way to cut off a leaked one) ends what the old one holds open.
            async with http.post(f"{hub.http_url}/api/auth/token", headers=op, json={"device_id": "DEV-OK"}) as resp:
                assert resp.status == 200
            code, reason = await closed_with(other)
            assert code == 1008 and reason.startswith("token replaced"), (code, reason)


async def test_a_day_at_the_end_of_the_calendar_is_a_bad_request_on_every_public_day_answer(tmp_path):
    """`?date=9999-12-31` on the public MBG answers and the dashboard summary was a 500 with a traceback in the
    hub's log: a day's answer reads the day after it, past Python's last date."""
    async with secure_hub(tmp_path / "hub") as hub, aiohttp.ClientSession() as http:
        for path in ("/api/dashboard/summary", "/api/mbg/deliveries", "/api/mbg/violations", "/api/mbg/epcis",
                     "/api/mbg/late", "/api/mbg/short", "/api/mbg/missing", "/api/mbg/lost"):
            for day in ("9999-12-31", "0001-01-01", "3000-01-01"):
                async with http.get(f"{hub.http_url}{path}", params={"date": day}) as resp:
                    assert resp.status == 400, (path, day, resp.status)
                    assert (await resp.json())["error"]["code"] == "MBG_INPUT"
            async with http.get(f"{hub.http_url}{path}", params={"date": "20251123"}) as resp:
                assert resp.status == 200, (path, await resp.text())  # the control: a day of this century
                assert (await resp.json()).get("date", "2025-11-23") == "2025-11-23"


async def test_a_price_file_row_dated_after_today_is_refused_and_the_forecasts_still_answer(tmp_path):
    """An import row dated 9999-12-31 (a typo in the operator's file) was taken, shown on the live map, and made
    every forecast of its series a 500, again at every start as kept imports are replayed."""
    bridges = BridgeConfig(state_dir=str(tmp_path / "bridges"))
    async with secure_hub(tmp_path / "hub", operator_tokens=(hash_token(OPERATOR),), bridges=bridges) as hub:
        today = datetime.fromtimestamp(NOW, UTC).date()
        rows = [f"{date.fromordinal(today.toordinal() - d)},Cabai Merah Keriting,Rp./Kg,{40000 + 10 * d},pasar-senen,r1"
                for d in range(21)]
        rows += [f"{day},Cabai Merah Keriting,Rp./Kg,40000,pasar-senen,r1"
                 for day in ("9999-12-31", "0001-01-01", date.fromordinal(today.toordinal() + 2))]
        csv = "Timestamp,Komoditas,Satuan,Harga,Pasar,Pelapor\n" + "\n".join(rows) + "\n"
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {OPERATOR}"}) as http:
            async with http.post(f"{hub.http_url}/api/markets/import", data=csv.encode()) as resp:
                report = await resp.json()
            assert resp.status == 200 and report["taken"] == 21, report
            assert [(r["line"], r["reason"].split(":")[0]) for r in report["refused_rows"]] == \
                [(23, "date"), (24, "date"), (25, "date")]
            assert "after today" in report["refused_rows"][0]["reason"]
            assert "before 1970" in report["refused_rows"][1]["reason"]
            for path in ("/api/forecast/cabai?market_id=pasar-senen", "/api/markets/forecast/cabai-merah",
                         "/api/forecast/confidence?commodity=cabai", "/api/markets/live"):
                async with http.get(f"{hub.http_url}{path}") as resp:
                    text = await resp.text()
                    assert resp.status == 200 and "9999" not in text, (path, resp.status, text[:200])
