"""The rest of seed 2's API: price check, live prices and alerts over WebSocket, alert trigger, ledger append and
integrity check, the map: seed 2's shapes on Jejak's validator, event source, attestation log and store check.

The WebSockets are a second transport of the dashboard's live events (hub.http.Events): the same `price` and
`alert` events, in seed 2's message shapes. A subscriber gets at most `ws_queue` events ahead of what it read;
one that falls further behind is closed (1013), so a slow phone never slows ingest or holds the hub's memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
import unicodedata
from collections import OrderedDict
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from ..auth import Auth
from ..http import Events
from ..integrity import StoreCheck, check_store
from ..markets.catalog import COMMODITIES_BY_ID
from ..markets.model import PriceObservation
from ..markets.validate import FAMILY, Verdict
from .attest import Attestation, digest
from .payloads import (
    BridgeInputError,
    ident,
    known_commodity,
    known_market,
    load_json,
    number,
    parse_time,
)
from .registry import LegacyDevice
from .routes import _json, seed2
from .service import Bridges, Forbidden, Unauthorized

# Unicode's directional embeddings, overrides and isolates: text that reads in another order than it is stored.
BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
log = logging.getLogger("jejak.hub.bridges")

PATH_APPEND = "http:/api/blockchain/append"
PRICE_CHECK_KEYS = ("market_id", "commodity", "price", "region", "timestamp", "device_id")
LEVELS = ("info", "warning", "critical")
MAX_DEPTH = 6  # nesting of an appended entry
INTEGRITY_REUSE_S = 60.0  # the least time a full store pass answers integrity checks for

# WebSocket close codes (RFC 6455 §7.4.1), as docs/ERRORS.md lists them.
CLOSE_BAD_INPUT = WSCloseCode.UNSUPPORTED_DATA  # 1003: a frame that is not the JSON ping the hub reads
CLOSE_TOO_SLOW = WSCloseCode.TRY_AGAIN_LATER  # 1013: fell `ws_queue` events behind; reconnect and re-read
CLOSE_GOING_AWAY = WSCloseCode.GOING_AWAY  # 1001: the hub is stopping
CLOSE_TOKEN_ENDED = WSCloseCode.POLICY_VIOLATION  # 1008: its device was revoked, or its token replaced


class TooManySubscribers(BridgeInputError):
    """A WebSocket subscription over the hub's `bridges.ws_max_subscribers`."""

    code = "TOO_MANY_SUBSCRIBERS"
    coap = "5.03"
    http = 503
    retry_after_s = 30


def iso(t: int) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


def _names(aliases: Mapping[str, str]) -> dict[str, str]:
    """Catalogue id -> the first name seed 2's clients use for it (they know "cabai", not "cabai-merah")."""
    out: dict[str, str] = {}
    for name, cid in aliases.items():
        out.setdefault(cid, name)
    return out


def impact_fields(impact: Mapping[str, Any] | None) -> dict[str, Any]:
    """Seed 2's impact metadata from Jejak's impact: price_change (relative), impact_score (0-100),
    dominant_factor and factors_with_weights (factor -> percent); all None when the series is too short."""
    if not impact:
        return {"price_change": None, "impact_score": None, "dominant_factor": None, "factors_with_weights": None}
    return {"price_change": round(float(impact["change_pct"]) / 100, 5), "impact_score": impact["score"],
            "dominant_factor": impact["dominant"],
            "factors_with_weights": {k: round(100 * float(v), 2) for k, v in impact["weights"].items()}}


def _seed_flags(verdict: Verdict) -> dict[str, Any]:
    """Seed 2's flags from Jejak's checks: zscore and iqr by name; its "ai" (deviation from a rolling median)
    is Hampel's; multi_source_ok is whether the other reporters and nearby markets agree."""
    fired = set(verdict.fired)
    return {"zscore": "zscore" in fired, "iqr": "iqr" in fired, "ai": "hampel" in fired,
            "multi_source_ok": not fired & {"reporters", "nearby"}}


class SeedApi:
    def __init__(self, bridges: Bridges, *, auth: Auth, events: Events) -> None:
        self.b = bridges
        self.auth = auth
        self.events = events
        self.commodity_names = _names(bridges.config.commodity_aliases)
        self.market_names = _names(bridges.config.market_aliases)
        self._integrity: asyncio.Future[StoreCheck] | None = None
        self._integrity_until = 0.0  # monotonic time until which the last pass answers
        self._integrity_at = 0  # hub time the last pass ended
        # Every open WebSocket, with the device whose token opened it (None: an operator's or auditor's).
        self._sockets: dict[web.WebSocketResponse, tuple[web.Request, LegacyDevice | None]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing: set[asyncio.Task[None]] = set()
        self._texts: OrderedDict[tuple[str, str], str | None] = OrderedDict()  # (event id, view) -> message

    def register(self, app: web.Application) -> None:
        r = app.router
        r.add_post("/api/validation/price/check", seed2(self.price_check))
        r.add_get("/ws/prices", seed2(self.ws_prices))
        r.add_get("/api/alerts/ws", seed2(self.ws_alerts))
        r.add_post("/api/alerts/trigger", seed2(self.alerts_trigger))
        r.add_post("/api/blockchain/append", seed2(self.blockchain_append))
        r.add_get("/api/blockchain/integrity/check", seed2(self.integrity_check))
        r.add_get("/dashboard/map/", self.dashboard_map)
        r.add_get("/dashboard/map", self.dashboard_map)
        app.on_shutdown.append(self._close_sockets)
        self.b.registry.listeners.append(self._token_changed)

    def _commodity(self, name: Any) -> str:
        return known_commodity(name, self.b.config.commodity_aliases)

    def _market(self, name: Any) -> str:
        return known_market(name, self.b.config.market_aliases)

    # --- validation ----------------------------------------------------------------------------------
    def _observation(self, value: Any) -> PriceObservation:
        if not isinstance(value, dict):
            raise BridgeInputError(f"expected a JSON object {{market_id, commodity, price, region?}}, got "
                                   f"{type(value).__name__}")
        extra = sorted(set(value) - set(PRICE_CHECK_KEYS))
        if extra:
            raise BridgeInputError(f"unexpected keys {extra[:5]}; expected some of {list(PRICE_CHECK_KEYS)}")
        for name in ("market_id", "commodity", "price"):
            if name not in value:
                raise BridgeInputError(f"field required: {name}")
        market = self._market(value["market_id"])
        commodity = COMMODITIES_BY_ID[self._commodity(value["commodity"])]
        price = number(value["price"], "price (rupiah)", low=1, high=1_000_000_000)
        region = value.get("region", "")
        if not isinstance(region, str) or len(region) > 64:
            raise BridgeInputError(f"region: expected text of up to 64 characters, got {str(region)[:40]!r}")
        now = self.b.hub.clock()
        t = parse_time(value["timestamp"]) if "timestamp" in value else now
        reporter = ident(value["device_id"], "device_id") if "device_id" in value else "price-check"
        return PriceObservation(id=f"check:{digest(json.dumps(value, sort_keys=True).encode())[:16]}",
                                market=market, commodity=commodity.id, unit=commodity.unit, grade=commodity.grade,
                                price_idr=max(1, round(price)), time=t, arrived_at=now, region=region,
                                reporter=reporter, source="price-check")

    async def price_check(self, request: web.Request) -> web.Response:
        """Seed 2: would this price be an outlier, flagged or quarantined? The hub's validator, nothing stored"""
        obs = self._observation(await _json(request))

        def run() -> Verdict:
            with self.b.analytics():
                verdict: Verdict = self.b.markets.validator.preview(obs)
            return verdict
        verdict = await asyncio.to_thread(run)
        checks = {c.name: c for c in verdict.checks}
        outlier = any(c.fired for c in verdict.checks if FAMILY.get(c.name) == "history")
        sources = {name: checks[name].to_dict() | {"ok": not checks[name].fired}
                   for name in ("reporters", "nearby", "ceiling") if name in checks}
        return web.json_response({
            "market_id": request_name(obs.market, self.market_names),
            "commodity": request_name(obs.commodity, self.commodity_names),
            "price": obs.price_idr, "outlier": outlier, "flagged": bool(verdict.fired),
            "quarantined": verdict.quarantined, "flags": _seed_flags(verdict), "sources": sources,
            "stored": False, "jejak": verdict.to_dict()})

    # --- WebSockets ----------------------------------------------------------------------------------
    def _subscriber(self, request: web.Request) -> tuple[str, LegacyDevice | None]:
        """Who subscribes: an active seed-2 device's token (with the device), or an operator's or auditor's (the
        dashboard)."""
        auth = request.headers.get("Authorization", "")
        token = auth[7:].strip() if auth.startswith("Bearer ") else request.query.get("token", "")
        if not token:
            raise Unauthorized("Not authenticated: send Authorization: Bearer <token> or ?token=<token> from "
                               "/api/auth/device/register")
        role = self.auth.role(request)
        if role in ("operator", "auditor"):
            return role, None
        device = self.b.device_for(f"Bearer {token}")
        return f"device {device.device_id}", device

    async def ws_prices(self, request: web.Request) -> web.StreamResponse:
        """Seed 2: live `price_update` messages with impact metadata (WebSocket; device token)"""
        want: dict[str, str] = {}
        if "commodity" in request.query:
            want["commodity"] = self._commodity(request.query["commodity"])
        if "market_id" in request.query:
            want["market"] = self._market(request.query["market_id"])

        def shape(event: dict[str, Any]) -> dict[str, Any] | None:
            if event.get("type") != "price":
                return None
            o = event["observation"]
            if any(o.get(k) != v for k, v in want.items()):
                return None
            return self.price_update(event)
        return await self._stream(request, f"prices?{sorted(want.items())}", shape)

    async def ws_alerts(self, request: web.Request) -> web.StreamResponse:
        """Seed 2: alerts as they are raised (WebSocket; device token)"""
        def shape(event: dict[str, Any]) -> dict[str, Any] | None:
            return alert_message(event["alert"]) if event.get("type") == "alert" else None
        return await self._stream(request, "alerts", shape)

    def price_update(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """Seed 2's `price_update` (its device payload's names plus the impact fields), Jejak's event beside."""
        o = event["observation"]
        return {"type": "price_update", "timestamp": iso(int(o["time"])),
                "market_id": request_name(o["market"], self.market_names),
                "commodity": request_name(o["commodity"], self.commodity_names), "price": o["price_idr"],
                "region": o.get("region") or None, "quarantined": event["verdict"] == "quarantined",
                **impact_fields(event.get("impact")),
                "jejak": {"observation": o, "verdict": event["verdict"], "summary": event["summary"],
                          "impact": event.get("impact"),
                          "trust": "attested" if str(o.get("source", "")).startswith("attested:") else "signed"}}

    async def _stream(self, request: web.Request, view: str,
                      shape: Callable[[dict[str, Any]], dict[str, Any] | None]) -> web.StreamResponse:
        """Serve `shape(event)` of every live event (None: not for this route) to one subscriber; `view` names
        the route and its filter, so subscribers of the same view share one encoding of each message."""
        cfg = self.b.config
        who, device = self._subscriber(request)
        if self.events.subscribers >= cfg.ws_max_subscribers:
            raise TooManySubscribers(f"{self.events.subscribers} live subscribers, at most "
                                     f"{cfg.ws_max_subscribers}; try again later")
        with self.events.stream_of(request, TooManySubscribers):  # the hub's own caps, in all and per client
            return await self._subscribed(request, view, shape, who, device)

    async def _subscribed(self, request: web.Request, view: str,
                          shape: Callable[[dict[str, Any]], dict[str, Any] | None], who: str,
                          device: LegacyDevice | None) -> web.StreamResponse:
        cfg = self.b.config
        # No per-message deflate: it compresses each message once per subscriber, in the event loop; without
        # it one encoding of a message serves them all (_encoded).
        ws = web.WebSocketResponse(heartbeat=30, max_msg_size=cfg.ws_max_frame_bytes, compress=False)
        await ws.prepare(request)
        behind = asyncio.get_running_loop().create_future()

        def overflow(missed: int) -> None:
            if not behind.done():
                behind.set_result(missed)
        q = self.events.subscribe(maxsize=cfg.ws_queue, on_overflow=overflow)
        self._loop = asyncio.get_running_loop()
        self._sockets[ws] = (request, device)
        pump = asyncio.create_task(self._pump(ws, q, view, shape, device))
        reader = asyncio.create_task(self._read(ws, device))
        log.info("WebSocket %s: %s subscribed", request.path, who)
        try:
            await asyncio.wait({pump, reader, behind}, return_when=asyncio.FIRST_COMPLETED)
            if behind.done():
                # The pump may be stuck writing to a socket nobody reads: closing politely gets a moment.
                pump.cancel()
                await self._close(ws, CLOSE_TOO_SLOW, f"too slow: {behind.result()} events behind; reconnect")
        finally:
            self.events.unsubscribe(q)
            self._sockets.pop(ws, None)
            for task in (pump, reader):
                task.cancel()
            if not behind.done():
                behind.cancel()
            if not ws.closed:
                with contextlib.suppress(Exception):
                    await ws.close()
        return ws

    async def _close(self, ws: web.WebSocketResponse, code: int, reason: str) -> None:
        """Close with `code` and `reason`; a client that does not take the close frame within a second (its
        socket full, nobody reading) loses the connection."""
        held = self._sockets.get(ws)
        try:
            async with asyncio.timeout(1.0):
                await ws.close(code=code, message=reason.encode()[:123])  # RFC 6455 §5.5: at most 123 bytes
        except TimeoutError:
            if held is not None and held[0].transport is not None:
                held[0].transport.abort()

    def _ended(self, device: LegacyDevice | None) -> str | None:
        """Why the token a WebSocket was opened with no longer works (None: it does)."""
        if device is None or self.b.registry.admits(device):
            return None
        now = self.b.registry.get(device.device_id)
        if now is not None and now.status == "active":
            return f"token replaced: device {device.device_id} has a new one; connect with it"
        return f"device {device.device_id} is {now.status if now is not None else 'no longer registered'}"

    def _token_changed(self, device: LegacyDevice) -> None:
        """Registry listener (any thread): close at once what a token that stopped working holds open."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._end_stale, device.device_id)

    def _end_stale(self, device_id: str) -> None:
        for ws, (_, held) in list(self._sockets.items()):
            reason = self._ended(held) if held is not None and held.device_id == device_id else None
            if reason is not None:
                log.info("WebSocket of device %s closed: %s", device_id, reason)
                task = asyncio.create_task(self._close(ws, CLOSE_TOKEN_ENDED, reason))
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)

    async def _pump(self, ws: web.WebSocketResponse, q: asyncio.Queue[tuple[str, dict[str, Any]]], view: str,
                    shape: Callable[[dict[str, Any]], dict[str, Any] | None], device: LegacyDevice | None) -> None:
        with contextlib.suppress(ConnectionResetError):
            while not ws.closed:
                event_id, event = await q.get()
                text = self._encoded(event_id, event, view, shape)
                if text is not None and not ws.closed:
                    ended = self._ended(device)
                    if ended is not None:
                        await self._close(ws, CLOSE_TOKEN_ENDED, ended)
                        return
                    await ws.send_str(text)

    def _encoded(self, event_id: str, event: dict[str, Any], view: str,
                 shape: Callable[[dict[str, Any]], dict[str, Any] | None]) -> str | None:
        """The message for an event, shaped and encoded once for all the subscribers of one route and
        filter (a hundred phones cost one json.dumps per event, not a hundred)."""
        key = (event_id, view)
        if key in self._texts:
            return self._texts[key]
        message = shape(event)
        text = None if message is None else json.dumps(message)
        self._texts[key] = text
        while len(self._texts) > 4096:
            self._texts.popitem(last=False)
        return text

    async def _read(self, ws: web.WebSocketResponse, device: LegacyDevice | None) -> None:
        """What a subscriber may send: "ping" or {"type": "ping"} (answered "pong"); anything else closes, and so
        does anything at all once its token stopped working."""
        async for msg in ws:
            ended = self._ended(device)
            if ended is not None:
                await self._close(ws, CLOSE_TOKEN_ENDED, ended)
                return
            if msg.type == WSMsgType.TEXT:
                text = msg.data.strip()
                if text == "ping" or _is_ping(text):
                    await ws.send_str(json.dumps({"type": "pong"}))
                    continue
                await ws.close(code=CLOSE_BAD_INPUT, message=b'expected "ping" or {"type": "ping"}')
                return
            if msg.type == WSMsgType.BINARY:
                await ws.close(code=CLOSE_BAD_INPUT, message=b"binary frames are not read here")
                return
            # ERROR (an oversize frame: aiohttp has already closed with 1009) or CLOSE: the reader ends.
            return

    async def _close_sockets(self, app: web.Application) -> None:
        for ws in list(self._sockets):
            await ws.close(code=CLOSE_GOING_AWAY, message=b"hub stopping")

    # --- alerts --------------------------------------------------------------------------------------
    async def alerts_trigger(self, request: web.Request) -> web.Response:
        """Seed 2: raise an alert by hand (operator), to /api/alerts/ws, the dashboard and /api/public/alerts/live"""
        role = self.auth.role(request)
        if role == "public":
            raise Unauthorized("raising an alert needs an operator token: send Authorization: Bearer <token>")
        if role == "invalid":
            self.b.device_for(request.headers.get("Authorization"))  # 401 unless a device holds it
            role = "device"
        if role != "operator":
            raise Forbidden(f"raising an alert needs an operator token, not a {role}'s")
        value = await _json(request)
        if not isinstance(value, dict):
            raise BridgeInputError(f"expected a JSON object {{message, level?, commodity?, market_id?}}, got "
                                   f"{type(value).__name__}")
        extra = sorted(set(value) - {"message", "level", "commodity", "market_id"})
        if extra:
            raise BridgeInputError(f"unexpected keys {extra[:5]}; expected message, level, commodity, market_id")
        text = value.get("message")
        if not isinstance(text, str) or not 0 < len(text.strip()) <= 500:
            raise BridgeInputError("message: expected text of 1 to 500 characters")
        hidden = next((c for c in text if unicodedata.category(c) == "Cc" or c in BIDI_CONTROLS), None)
        if hidden is not None:  # a line break or escape sequence would forge lines in logs, webhooks and the page
            raise BridgeInputError(f"message: one line of text without control characters, got U+{ord(hidden):04X} "
                                   f"at character {text.index(hidden) + 1}")
        level = value.get("level", "warning")
        if level not in LEVELS:
            raise BridgeInputError(f"level: expected one of {list(LEVELS)}, got {str(level)[:40]!r}")
        subject = []
        if "market_id" in value:
            subject.append(self._market(value["market_id"]))
        if "commodity" in value:
            subject.append(self._commodity(value["commodity"]))
        alert = await asyncio.to_thread(self.b.views.alerts.trigger, text=text.strip(), level=level,
                                        subject="/".join(subject) or "all", by=role)
        return web.json_response({"status": "triggered", **alert_message(alert)}, status=201)

    # --- ledger --------------------------------------------------------------------------------------
    def _writer(self, request: web.Request) -> str:
        """Who appends: an operator, or an active seed-2 device by its token; nobody without one."""
        if self.auth.role(request) == "operator":
            return "operator (bearer token)"
        device = self.b.device_for(request.headers.get("Authorization"))
        return f"device {device.device_id} (bearer token)"

    async def blockchain_append(self, request: web.Request) -> web.Response:
        """Seed 2: append an entry to the ledger, as a record the hub signs and marks attested"""
        who = self._writer(request)
        raw = await request.read()
        value = load_json(raw, limit=self.b.config.max_payload_bytes)
        if not isinstance(value, dict) or not value:
            raise BridgeInputError(f"expected a non-empty JSON object, got {type(value).__name__}")
        entry = signable(value, "entry")
        now = self.b.hub.clock()
        item = Attestation(path=PATH_APPEND, sender=f"{who} from {request.remote}", kind="note",
                           data={"entry": entry, "raw_sha256": digest(raw)}, received_at=now)
        (record,) = await asyncio.to_thread(self.b.attestor.attest, [item])
        return web.json_response({"index": record.seq, "hash": record.id.hex(), "timestamp": iso(now),
                                  "record": record.id.hex(), "device": record.device_id.hex(), "seq": record.seq,
                                  "trust": "attested", "attested_by": self.b.hub.hub_id.hex()})

    async def integrity_check(self, request: web.Request) -> web.Response:
        """Seed 2: verify the ledger: every stored record against its id and leaf, every checkpoint's root"""
        # One full pass at a time: callers that ask while it runs share its result, and so do those that ask
        # within ten times as long as it took after it (at least INTEGRITY_REUSE_S): a pass reads the whole store,
        # minutes of a core on a large one, and anyone may ask, so back-to-back asks must not keep a core on it.
        if self._integrity is None or (self._integrity.done() and time.monotonic() >= self._integrity_until):
            self._integrity = asyncio.ensure_future(asyncio.to_thread(check_store, self.b.hub, full=True))
            self._integrity_until = math.inf
        task = self._integrity
        try:
            result = await asyncio.shield(task)
        except Exception:
            self._integrity_until = 0.0  # a pass that failed answers nobody else
            raise
        if task is self._integrity and self._integrity_until == math.inf:
            self._integrity_until = time.monotonic() + max(INTEGRITY_REUSE_S, 10 * result.seconds)
            self._integrity_at = self.b.hub.clock()
        body = integrity_answer(result)
        body["checked_at"] = iso(self._integrity_at)
        return web.json_response(body)

    # --- dashboard -----------------------------------------------------------------------------------
    async def dashboard_map(self, request: web.Request) -> web.StreamResponse:
        """Seed 2: the map of markets (the dashboard's markets view)"""
        raise web.HTTPFound("/#markets/map")


def integrity_answer(result: StoreCheck) -> dict[str, Any]:
    """Seed 2's {"ok", "length"} or {"ok": false, "broken_at"}, with Jejak's code and the check beside."""
    body: dict[str, Any] = {"ok": result.ok, "length": result.size}
    code: str | None = None  # intact: no error code
    if result.damaged:
        code = "RECORD_DAMAGED"
        body["broken_at"] = result.damaged[0][1]
    elif not result.roots_ok:
        code = "INVALID_CHECKPOINT"
        body["broken_at"] = result.signed_size
    body["jejak"] = {"code": code, **result.to_json()}
    return body


def alert_message(alert: Mapping[str, Any]) -> dict[str, Any]:
    """Seed 2's alert push ({"type": "alert", level, message, timestamp, ...}), Jejak's alert beside."""
    level = {"alert": "critical", "warning": "warning"}.get(str(alert.get("severity")), "info")
    return {"type": "alert", "id": alert["id"], "level": alert.get("level", level), "message": alert["text"],
            "subject": alert["subject"], "timestamp": iso(int(alert["time"])), "jejak": dict(alert)}


def request_name(cid: str, names: Mapping[str, str]) -> str:
    return names.get(cid, cid)


def _is_ping(text: str) -> bool:
    if len(text) > 64 or not text.startswith("{"):
        return False
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return False
    return isinstance(value, dict) and value == {"type": "ping"}


def signable(value: Any, where: str, depth: int = 0) -> Any:
    """A JSON value as signed data may hold it: integers, text, booleans, null, lists and objects; a number
    with a fraction becomes its decimal text (signed data holds no floats)."""
    if depth > MAX_DEPTH:
        raise BridgeInputError(f"{where}: nested deeper than {MAX_DEPTH} levels")
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise BridgeInputError(f"{where}: expected a finite number, got {value}")
        return int(value) if value.is_integer() and abs(value) < 2**53 else repr(value)
    if isinstance(value, str):
        if len(value) > 512:
            raise BridgeInputError(f"{where}: text longer than 512 characters ({len(value)})")
        return value
    if isinstance(value, list):
        if len(value) > 256:
            raise BridgeInputError(f"{where}: more than 256 items ({len(value)})")
        return [signable(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(value)]
    if isinstance(value, dict):
        if len(value) > 64:
            raise BridgeInputError(f"{where}: more than 64 keys ({len(value)})")
        out = {}
        for k, v in value.items():
            if not 0 < len(k) <= 64:
                raise BridgeInputError(f"{where}: keys must be 1 to 64 characters, got {k[:20]!r}")
            out[k] = signable(v, f"{where}.{k}", depth + 1)
        return out
    raise BridgeInputError(f"{where}: unexpected {type(value).__name__}")
