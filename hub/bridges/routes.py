"""HTTP routes of the bridges: seed 1's gateway sync, seed 2's registration, token, ingest and public API.

Errors use each legacy system's own shape: seed 1 (Flask) answers {"error": "..."}, seed 2 (FastAPI)
answers {"detail": "..."}; the status codes are theirs (400 bad input, 401 bad token, 404 not found). Beside
the message each carries the stable code of docs/ERRORS.md ("code"), which the legacy clients ignore.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import io
import json
import logging
import statistics
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from ..auth import Auth, hash_token
from ..http import error_response
from ..markets.catalog import MARKETS_BY_ID
from ..markets.errors import MarketError
from ..markets.model import LATE_S, observed_at
from ..markets.routes import MarketRoutes
from ..pending import sent_from
from .feed import trust_of
from .payloads import (
    BadQuery,
    BridgeInputError,
    UnknownName,
    known_commodity,
    known_market,
    load_json,
)
from .service import PATH_INGEST, Bridges, Forbidden, Unauthorized, trust_counts

log = logging.getLogger("jejak.hub.bridges")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def seed1(fn: Handler) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        try:
            return await fn(request)
        except BridgeInputError as exc:
            return error_response(exc, body={"error": exc.message, "code": exc.code})
    handler.__doc__ = fn.__doc__
    return handler


def seed2(fn: Handler) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        try:
            return await fn(request)
        except (BridgeInputError, MarketError) as exc:
            return error_response(exc, body={"detail": exc.message, "code": exc.code})
    handler.__doc__ = fn.__doc__
    return handler


def qr_data_url(payload: dict[str, Any]) -> str:
    import qrcode

    qr = qrcode.QRCode(border=2)
    qr.add_data(json.dumps(payload, separators=(",", ":")))
    qr.make(fit=True)
    buf = io.BytesIO()
    qr.make_image().save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _query(request: web.Request, name: str, *, required: bool = True) -> str | None:
    value = request.query.get(name)
    if required and not value:
        raise BadQuery(f"query parameter required: {name}")
    return value or None


def _limit(request: web.Request, default: int, high: int) -> int:
    text = request.query.get("limit", str(default))
    if not text.isdigit() or not 1 <= int(text) <= high:
        raise BadQuery(f"limit: expected 1 to {high}, got {text[:20]!r}")
    return int(text)


class BridgeRoutes:
    def __init__(self, bridges: Bridges, *, auth: Auth, markets: MarketRoutes) -> None:
        self.b = bridges
        self.auth = auth
        self.markets = markets

    def register(self, app: web.Application) -> None:
        r = app.router
        r.add_post("/api/sync_gateway_data", seed1(self.sync_gateway_data))
        r.add_post("/api/auth/device/register", seed2(self.register_device))
        r.add_post("/api/auth/token", seed2(self.token))
        r.add_post("/ingest", seed2(self.ingest))
        r.add_get("/api/public/commodity/price/live", seed2(self.price_live))
        r.add_get("/api/public/commodity/price/history", seed2(self.price_history))
        r.add_get("/api/public/impact", seed2(self.impact))
        r.add_get("/api/public/alerts/live", seed2(self.alerts_live))
        r.add_get("/api/forecast/confidence", seed2(self.forecast_confidence))  # before {commodity}
        r.add_get("/api/forecast/{commodity}", seed2(self.forecast))
        r.add_get("/api/bridges/status", self.status)
        r.add_post("/api/bridges/devices/{device_id}/approve", seed2(self.approve))
        r.add_post("/api/bridges/devices/{device_id}/revoke", seed2(self.revoke))
        r.add_post("/api/bridges/devices/reject", seed2(self.reject))

    # --- seed 1 ---------------------------------------------------------------------------------------
    async def sync_gateway_data(self, request: web.Request) -> web.Response:
        """Seed 1: a gateway's batch of scans, attested by the hub (not signed by any device)"""
        sender = f"gateway from {request.remote}"
        # No gateway token configured means no gateway may send: the hub signs what it attests, so an open
        # route would let anyone on the network put scans into its log.
        auth = request.headers.get("Authorization", "")
        digest = hash_token(auth[7:].strip()) if auth.startswith("Bearer ") else ""
        if not any(hmac.compare_digest(digest, t) for t in self.b.config.gateway_tokens):
            self.b.refused["http:/api/sync_gateway_data"] += 1
            raise Unauthorized("token gateway tidak dikenal / gateway token not recognised",
                               hint="add the SHA-256 of the gateway's token to [bridges] gateway_tokens")
        sender += f" with gateway token sha256:{digest[:16]}"
        raw = await request.read()
        try:
            records = await asyncio.to_thread(self.b.sync_gateway, raw, sender=sender, token=digest)
        except BridgeInputError:
            self.b.refused["http:/api/sync_gateway_data"] += 1
            raise
        return web.json_response({"message": f"Berhasil menerima {len(records)} data",
                                  "records": [r.id.hex() for r in records], "trust": "attested",
                                  "attested_by": self.b.hub.hub_id.hex()}, status=201)

    # --- seed 2: devices ------------------------------------------------------------------------------
    async def register_device(self, request: web.Request) -> web.Response:
        """Seed 2: register a market device; answers its token and an onboarding QR code (PNG data URL)"""
        value = await _json(request)
        device, token = await asyncio.to_thread(self.b.register, value, source=self.auth.client(request))
        qr = await asyncio.to_thread(qr_data_url, {"device_id": device.device_id, "market_id": device.market_id,
                                                   "token": token, "hub": self.b.hub.hub_id.hex()})
        return web.json_response({"device_id": device.device_id, "token": token, "qr": qr,
                                  "status": device.status, "trust": "attested"})

    async def token(self, request: web.Request) -> web.Response:
        """Seed 2: a new token for a registered device (needs its current token or an operator's)"""
        # Who asks comes first: without a credential nothing about the body (or the registry) is answered.
        current = None if self.auth.is_operator(request) else self.b.device_for(request.headers.get("Authorization"))
        value = await _json(request)
        if not isinstance(value, dict) or not isinstance(value.get("device_id"), str):
            raise BridgeInputError("field required: device_id")
        device = self.b.registry.get(value["device_id"])
        if device is None:
            raise UnknownName("Device not found")
        if current is not None and current.device_id != device.device_id:
            raise Forbidden("a device may only renew its own token")
        return web.json_response({"token": await asyncio.to_thread(self.b.registry.new_token, device.device_id)})

    async def approve(self, request: web.Request) -> web.Response:
        """Approve a pending legacy device (operator)"""
        return await self._decide(request, "active")

    async def revoke(self, request: web.Request) -> web.Response:
        """Revoke a legacy device (operator): its token stops working, and a pending registration no longer
        takes one of the `pending_devices` places"""
        return await self._decide(request, "revoked")

    async def reject(self, request: web.Request) -> web.Response:
        """Drop every pending legacy registration sent from an address or network (operator): a flood's places
        back at once"""
        if not self.auth.is_operator(request):
            raise Unauthorized("needs an operator token")
        source = _query(request, "source") or ""
        try:
            within = sent_from(source[:64])
        except ValueError:
            raise BadQuery(f"source: expected an IP address or a network such as 10.1.2.0/24, got "
                           f"{source[:64]!r}") from None
        dropped = await asyncio.to_thread(self.b.registry.drop_pending, within)
        if dropped:
            log.info("%d seed-2 registrations dropped, rejected by an operator (sent from %s)", len(dropped), source)
        return web.json_response({"rejected": [d.to_json() for d in dropped]})

    async def _decide(self, request: web.Request, status: str) -> web.Response:
        if not self.auth.is_operator(request):
            raise Unauthorized("needs an operator token")
        device_id = request.match_info["device_id"]
        if self.b.registry.get(device_id) is None:
            raise UnknownName("Device not found")
        device = await asyncio.to_thread(self.b.registry.set_status, device_id, status)
        return web.json_response(device.to_json())

    async def ingest(self, request: web.Request) -> web.Response:
        """Seed 2: one MarketDataStream payload, attested by the hub as received from the token's device"""
        try:
            device = self.b.device_for(request.headers.get("Authorization"))
            raw = await request.read()
            sender = f"device {device.device_id} (bearer token) from {request.remote}"
            record = await asyncio.to_thread(self.b.ingest_market, raw, path=PATH_INGEST, sender=sender,
                                             device=device)
        except BridgeInputError:
            self.b.refused[PATH_INGEST] += 1
            raise
        body = record.body or {}
        data = body.get("data", {})
        received = int(body.get("received_at", 0))
        at = observed_at(data.get("claimed_time"), received)
        return web.json_response({"status": "ok", "processed": len(data.get("prices", {})),
                                  "refused": data.get("refused", {}), "observed_at": at,
                                  "late": received - at > LATE_S, "record": record.id.hex(), "seq": record.seq,
                                  "trust": "attested", "attested_by": self.b.hub.hub_id.hex()})

    # --- seed 2: public API ---------------------------------------------------------------------------
    def _commodity(self, name: str) -> str:
        return known_commodity(name, self.b.config.commodity_aliases)

    def _market(self, name: str | None) -> str | None:
        return None if name is None else known_market(name, self.b.config.market_aliases)

    async def price_live(self, request: web.Request) -> web.Response:
        """Seed 2 public API: the latest accepted price per market of a commodity, with its trust"""
        commodity = self._commodity(_query(request, "commodity") or "")
        market = self._market(_query(request, "market_id", required=False))
        region = _query(request, "region", required=False)
        rows = await asyncio.to_thread(self.b.observations, commodity, market)
        latest: dict[str, dict[str, Any]] = {}
        for o in rows:
            if o["quarantined"] or (region and o.get("region") != region):
                continue
            if o["market"] not in latest or o["time"] >= latest[o["market"]]["time"]:
                latest[o["market"]] = o
        prices = [_public(o) for o in sorted(latest.values(), key=lambda o: o["market"])]
        return web.json_response({"commodity": commodity, "prices": prices, "trust": trust_counts(prices)})

    async def price_history(self, request: web.Request) -> web.Response:
        """Seed 2 public API: price history of a commodity at a market, quarantined values marked; each
        observation of the days the hub lists (`observations_from`, its last `raw_days`), older days are daily aggregates"""
        commodity = self._commodity(_query(request, "commodity") or "")
        market = self._market(_query(request, "market_id"))
        limit = _limit(request, 200, 2000)
        rows = await asyncio.to_thread(self.b.observations, commodity, market)
        history = [_public(o) for o in rows[-limit:]]
        return web.json_response({"commodity": commodity, "market_id": market, "history": history,
                                  "trust": trust_counts(history), "observations_from": self.b.views.markets.listed_since()})

    async def impact(self, request: web.Request) -> web.Response:
        """Seed 2 public API: impact scores with factors and weights, and how many inputs were attested"""
        commodity = self._commodity(_query(request, "commodity") or "")
        market = self._market(_query(request, "market_id", required=False))

        def run() -> dict[str, Any]:
            out = self.markets.impact(commodity, market)
            out["inputs"] = trust_counts(self.b.observations(commodity, market))
            return out
        return web.json_response(await asyncio.to_thread(run))

    async def alerts_live(self, request: web.Request) -> web.Response:
        """Seed 2 public API: live alerts"""
        return web.json_response(await asyncio.to_thread(self.b.views.alerts.listing))

    def _forecast(self, commodity: str, market: str | None) -> dict[str, Any]:
        out = self.markets.forecast(commodity, market)
        out["inputs"] = trust_counts(self.b.observations(commodity, market))
        return dict(out)

    async def forecast(self, request: web.Request) -> web.Response:
        """Seed 2: 7-day forecast of a commodity with intervals (reachable, unlike in seed 2)"""
        commodity = self._commodity(request.match_info["commodity"])
        market = self._market(_query(request, "market_id", required=False))
        return web.json_response(await asyncio.to_thread(self._forecast, commodity, market))

    async def forecast_confidence(self, request: web.Request) -> web.Response:
        """Seed 2: how far to trust the forecast: 1 - mean relative half-width of its 95% intervals"""
        commodity = self._commodity(_query(request, "commodity") or "")
        market = self._market(_query(request, "market_id", required=False))
        fc = await asyncio.to_thread(self._forecast, commodity, market)
        points = fc.get("forecast") or fc.get("points") or []
        widths = [(p["high"] - p["low"]) / (2 * p["mean"]) for p in points
                  if p.get("mean") and "high" in p and "low" in p]
        confidence = round(max(0.0, 1.0 - statistics.fmean(widths)), 3) if widths else None
        inputs = fc["inputs"]
        total = inputs["signed"] + inputs["attested"]
        return web.json_response({"commodity": commodity, "market_id": market, "confidence": confidence,
                                  "basis": "1 - mean half-width of the 95% intervals relative to the forecast",
                                  "inputs": inputs,
                                  "attested_share": round(inputs["attested"] / total, 3) if total else None})

    async def status(self, request: web.Request) -> web.Response:
        """The bridges: attestation log, attested and refused inputs by path, legacy devices, MQTT"""
        return web.json_response(await asyncio.to_thread(self.b.status))


def _public(o: dict[str, Any]) -> dict[str, Any]:
    m = MARKETS_BY_ID.get(o["market"])
    return {"market_id": o["market"], "market": m.name if m else o["market"], "commodity": o["commodity"],
            "unit": o["unit"], "price_idr": o["price_idr"], "time": o["time"], "day": o["day"],
            "region": o.get("region", ""), "reporter": o.get("reporter", ""), "source": o.get("source", ""),
            "trust": trust_of(o.get("source")), "record": o["id"], "quarantined": o["quarantined"],
            "provisional": o.get("provisional", False), "reasons": o["reasons"]}


async def _json(request: web.Request) -> Any:
    return load_json(await request.read(), limit=16 * 1024)
