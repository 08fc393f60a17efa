"""Strict parsers for the legacy payloads: seed 1's gateway batches and seed 2's MarketDataStream.

Each parser takes the JSON value as received and returns the attested data (integers and text only, as
signed data must be) or raises BridgeInputError saying what was expected and what was found. Nothing is
stored for a payload that does not parse.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from coap_server.errors import RequestError, TooLarge
from coap_server.params import read_json
from ledger.errors import CodedError
from ledger.legacy import LegacyInputError, check_tag, scan_event

from ..markets.catalog import COMMODITIES_BY_ID, MARKETS_BY_ID, find_commodity

IDENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:\-]{0,63}")
MAX_PRICES = 64
MAX_PRICE_IDR = 1_000_000_000
SEED2_KEYS = ("timestamp", "market_id", "device_id", "region", "temperature", "humidity", "crowd", "prices")
SEED1_KEYS = ("nfc_tag_id", "timestamp", "status_scan", "gateway_id")


class BridgeInputError(CodedError, ValueError):
    """Input a bridge refuses; each subclass declares the HTTP status the legacy system used for it."""

    code = "BRIDGE_INPUT"
    coap = "4.00"
    http = 400


class BadQuery(BridgeInputError):
    """A missing or out-of-range query parameter (seed 2's FastAPI answered these with 422)."""

    code = "BAD_QUERY"
    coap = "4.22"
    http = 422


class OutsideLiveWindow(BridgeInputError):
    """A live price whose observation time is too old or too far ahead of the hub's clock."""

    code = "OUTSIDE_LIVE_WINDOW"
    coap = "4.22"
    http = 422


class ClockAhead(BridgeInputError):
    """A gateway's scan dated further ahead of the hub's clock than a right clock can be (the plan's
    `[clock] max_skew_s`): the hub would sign that it received a scan made in the future."""

    code = "CLOCK_AHEAD"
    coap = "4.22"
    http = 422


class PayloadTooLarge(BridgeInputError):
    """A body or batch over the bridge's limit."""

    code = "TOO_LARGE"
    coap = "4.13"
    http = 413


class UnknownName(BridgeInputError):
    """A device, market or commodity the bridge does not know."""

    code = "NOT_FOUND"
    coap = "4.04"
    http = 404
    exit_code = 51


def ident(value: Any, name: str) -> str:
    if not isinstance(value, str) or not IDENT.fullmatch(value):
        shown = value[:60] if isinstance(value, str) else type(value).__name__
        raise BridgeInputError(f"{name}: expected 1 to 64 letters, digits or _ . : - , got {shown!r}")
    return value


def parse_time(value: Any, name: str = "timestamp") -> int:
    """Unix seconds from an ISO 8601 text; a time without a zone is UTC (seed 1 sends utcnow().isoformat())."""
    if not isinstance(value, str) or len(value) > 40:
        raise BridgeInputError(f"{name}: expected an ISO 8601 time as text, got {type(value).__name__}")
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        raise BridgeInputError(f"{name}: expected an ISO 8601 time such as 2025-12-12T12:34:56Z, "
                               f"got {value!r}") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    seconds = int(t.timestamp())
    if seconds < 0:
        raise BridgeInputError(f"{name}: time before 1970: {value!r}")
    return seconds


def number(value: Any, name: str, *, low: float, high: float) -> float:
    # An integer is compared as it is: JSON's 10**400 is a Python int that math.isfinite() and float() refuse
    # with OverflowError (a 500 to the sender, a traceback per MQTT message).
    if isinstance(value, bool) or not isinstance(value, int | float) or (
            isinstance(value, float) and not math.isfinite(value)):
        raise BridgeInputError(f"{name}: expected a number, got {type(value).__name__} {str(value)[:20]}")
    if not low <= value <= high:
        text = str(value)
        shown = text if len(text) <= 24 else f"{text[:20]}... ({len(text)} characters)"
        raise BridgeInputError(f"{name}: expected {low} to {high}, got {shown}")
    return float(value)


def whole(value: Any, name: str, *, low: int, high: int) -> int:
    x = number(value, name, low=low, high=high)
    if x != int(x):
        raise BridgeInputError(f"{name}: expected a whole number, got {value}")
    return int(x)


# --- seed 1: gateway batches ---------------------------------------------------------------------------

def parse_gateway_batch(data: Any, *, max_items: int, sites: Mapping[str, str]) -> list[dict[str, Any]]:
    """Seed 1's `/api/sync_gateway_data` list; every item must be valid or the whole batch is refused."""
    if not isinstance(data, list):
        raise BridgeInputError("Data harus berupa list/array")
    if len(data) > max_items:
        raise PayloadTooLarge(f"batch of {len(data)} scans; at most {max_items} per request")
    out = []
    for n, item in enumerate(data):
        where = f"item {n}"
        if not isinstance(item, dict):
            raise BridgeInputError(f"{where}: expected an object, got {type(item).__name__}")
        missing = [k for k in SEED1_KEYS if k not in item]
        if missing:
            raise BridgeInputError(f"{where}: Data tidak lengkap, missing {missing}")
        extra = sorted(set(item) - set(SEED1_KEYS))
        if extra:
            raise BridgeInputError(f"{where}: unexpected keys {extra[:5]}; expected exactly {list(SEED1_KEYS)}")
        try:
            tag = check_tag(item["nfc_tag_id"])
            event = scan_event(item["status_scan"])
        except LegacyInputError as exc:
            raise BridgeInputError(f"{where}: {exc.message}") from None
        gateway = ident(item["gateway_id"], f"{where}: gateway_id")
        out.append({"nfc_tag_id": tag, "status_scan": item["status_scan"], "event": event,
                    "timestamp": item["timestamp"], "time": parse_time(item["timestamp"], f"{where}: timestamp"),
                    "gateway_id": gateway, "site": sites.get(gateway, gateway)})
    return out


# --- seed 2: MarketDataStream ---------------------------------------------------------------------------

def load_json(raw: bytes, *, limit: int, invalid: str = "Invalid JSON payload") -> Any:
    """A legacy client's JSON body within a size and nesting limit, refused in the bridges' own errors."""
    try:
        return read_json(raw, max_bytes=limit)
    except TooLarge:
        raise PayloadTooLarge(f"payload of {len(raw)} bytes; at most {limit}") from None
    except RequestError as exc:
        raise BridgeInputError(f"{invalid}: {exc.message}") from None


@dataclass(frozen=True, slots=True, kw_only=True)
class MarketData:
    data: dict[str, Any]  # the attested data: as received, numbers in integer units
    device_id: str | None
    market: str
    token: str | None


def resolve_market(market_id: Any, aliases: Mapping[str, str]) -> str:
    ident(market_id, "market_id")
    market = str(aliases.get(market_id, market_id))
    if market not in MARKETS_BY_ID:
        raise BridgeInputError(f"market_id: unknown market {market_id!r}; expected one of "
                               f"{sorted(MARKETS_BY_ID)[:6]}... or a configured alias")
    return market


def resolve_commodity(name: Any, aliases: Mapping[str, str]) -> str:
    """The catalogue id of a commodity as a device names it: a configured alias (seed 2's "cabai"), a
    catalogue id, or the name as the national panel writes it, in any case and spacing."""
    if not isinstance(name, str) or not 0 < len(name) <= 64 or not name.isprintable():
        shown = name[:60] if isinstance(name, str) else type(name).__name__
        raise BridgeInputError(f"commodity: expected a name of 1 to 64 printable characters, got {shown!r}")
    alias = aliases.get(name)
    if alias is not None and alias in COMMODITIES_BY_ID:
        return alias
    c = find_commodity(name)
    if c is None:
        raise BridgeInputError(f"commodity: unknown commodity {name!r}; expected a name from the national "
                               f"panel's list (e.g. 'Cabai Merah Keriting', 'Beras Medium'), a catalogue id "
                               f"or one of {sorted(aliases)[:6]}...")
    return c.id


def known_market(market_id: Any, aliases: Mapping[str, str]) -> str:
    """resolve_market for a name a client looks up: a market the hub does not know is NOT_FOUND (404)."""
    try:
        return resolve_market(market_id, aliases)
    except BridgeInputError as exc:
        raise (UnknownName if isinstance(market_id, str) else BridgeInputError)(exc.message) from None


def known_commodity(name: Any, aliases: Mapping[str, str]) -> str:
    """resolve_commodity for a name a client looks up: a commodity the hub does not know is NOT_FOUND (404)."""
    try:
        return resolve_commodity(name, aliases)
    except BridgeInputError as exc:
        raise (UnknownName if isinstance(name, str) else BridgeInputError)(exc.message) from None


def parse_market_data(value: Any, *, markets: Mapping[str, str], commodities: Mapping[str, str],
                      allow_token: bool = False) -> MarketData:
    """Seed 2's MarketDataStream payload (as /ingest and MQTT carry it)."""
    if not isinstance(value, dict):
        raise BridgeInputError(f"Invalid payload: expected a JSON object, got {type(value).__name__}")
    allowed = (*SEED2_KEYS, "token") if allow_token else SEED2_KEYS
    extra = sorted(set(value) - set(allowed))
    if extra:
        raise BridgeInputError(f"Invalid payload: unexpected keys {extra[:5]}; expected some of {list(allowed)}")
    if "market_id" not in value or "prices" not in value:
        raise BridgeInputError("Payload must include 'market_id' and 'prices' keys")
    market = resolve_market(value["market_id"], markets)
    data: dict[str, Any] = {"market_id": value["market_id"], "market": market}
    device = ident(value["device_id"], "device_id") if "device_id" in value else None
    if device is not None:
        data["device_id"] = device
    if "timestamp" in value:
        data["timestamp"] = value["timestamp"]
        data["claimed_time"] = parse_time(value["timestamp"])
    if "region" in value:
        region = value["region"]
        if not isinstance(region, str) or not 0 < len(region) <= 64:
            raise BridgeInputError(f"region: expected text of 1 to 64 characters, got {str(region)[:40]!r}")
        data["region"] = region
    if value.get("temperature") is not None:
        data["temp_cc"] = round(number(value["temperature"], "temperature", low=-50, high=80) * 100)
    if value.get("humidity") is not None:
        data["rh_cp"] = round(number(value["humidity"], "humidity", low=0, high=100) * 100)
    if value.get("crowd") is not None:
        data["crowd"] = whole(value["crowd"], "crowd", low=0, high=1_000_000)
    prices = value["prices"]
    if not isinstance(prices, dict) or not 1 <= len(prices) <= MAX_PRICES:
        raise BridgeInputError(f"prices: expected an object of 1 to {MAX_PRICES} commodity: price pairs")
    resolved: dict[str, int] = {}
    names: dict[str, str] = {}
    refused: dict[str, str] = {}
    # One price that does not hold is refused with its reason; the payload's other prices still count.
    for name, price in prices.items():
        try:
            commodity = resolve_commodity(name, commodities)
            if commodity in resolved:
                raise BridgeInputError(f"{name!r} and {names[commodity]!r} are the same commodity {commodity}")
            resolved[commodity] = whole(price, f"prices.{name} (rupiah)", low=1, high=MAX_PRICE_IDR)
        except BridgeInputError as exc:
            refused[str(name)[:64]] = exc.message[:300]
            continue
        names[commodity] = name
    if not resolved:
        raise BridgeInputError(f"prices: no price could be taken: {refused}")
    data["prices"] = resolved
    data["names"] = names
    if refused:
        data["refused"] = refused
    token = value.get("token")
    if token is not None and not isinstance(token, str):
        raise BridgeInputError("token: expected text")
    return MarketData(data=data, device_id=device, market=market, token=token)
