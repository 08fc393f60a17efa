"""The bridges' core: legacy registrations, attested ingest of seed-1 and seed-2 data, and the analytics feed."""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

from coap_server.params import bearer_token
from ledger import Record, decode_record

from ..markets.model import MAX_AHEAD_S, MAX_BACKDATE_S
from ..service import Hub
from ..store import DamagedRecord
from ..views import Views
from .attest import Attestation, Attestor, digest
from .config import BridgeConfig
from .feed import DerivedInput, derive, trust_of
from .payloads import (
    BridgeInputError,
    ClockAhead,
    OutsideLiveWindow,
    PayloadTooLarge,
    ident,
    load_json,
    parse_gateway_batch,
    parse_market_data,
    resolve_market,
)
from .registry import LegacyDevice, Registry

log = logging.getLogger("jejak.hub.bridges")

PATH_INGEST = "http:/ingest"
PATH_GATEWAY = "http:/api/sync_gateway_data"
GATEWAY_BATCH_BYTES = 4 * 1024 * 1024  # the HTTP API's body limit; max_batch bounds the scans within


class Unauthorized(BridgeInputError):
    """A missing or unknown bearer token."""

    code = "UNAUTHORIZED"
    coap = "4.01"
    http = 401


class Forbidden(BridgeInputError):
    """A token that is valid but may not do this (another device, another market)."""

    code = "FORBIDDEN"
    coap = "4.03"
    http = 403


class Bridges:
    """One per hub. Unsigned data becomes "attest" records of the hub's own log; nothing else is stored.

    `views` are the hub's read models: attested inputs reach the same MBG and market analytics as signed
    ones, marked by their source. `state_dir` holds the legacy device registrations, unless the hub's store
    keeps them (PostgreSQL: `Registry`).
    """

    def __init__(self, hub: Hub, config: BridgeConfig, *, views: Views, state_dir: str) -> None:
        self.hub = hub
        self.config = config
        self.views = views
        self.attestor = Attestor(hub)
        self.registry = Registry(state_dir, kept=None if views.aggregates is None
                                 else views.aggregates.journal("bridges/legacy-devices.json"))
        self.attested: Counter[str] = Counter()  # attest records by path
        self.refused: Counter[str] = Counter()  # refused inputs by path
        self.mqtt: Any = None
        if config.auto_approve:
            log.warning("[bridges] auto_approve is ON: any seed-2 registration sends prices at once, with no "
                        "operator's approval; keep it off outside demos")
        if config.mqtt.enabled and not config.mqtt.require_token:
            log.warning("[bridges.mqtt] require_token is OFF: a payload on %s is taken for the device it names, so "
                        "any client the broker lets publish there can send prices as another device; turn it on, "
                        "or use device_topics (SECURITY.md)", config.mqtt.topic)

    # --- life cycle ----------------------------------------------------------------------------------
    def start(self) -> None:
        """Open the attestation log, count what it holds, and listen for new records (blocking: LMDB)."""
        self.attestor.start()
        state = self.hub.store.chain_state(self.hub.hub_id)
        length = state.length if state else 0
        start = 0
        while start < length:
            try:
                raws = self.hub.store.log_range(self.hub.hub_id, start, min(length, start + 1000))
            except DamagedRecord:  # noted for restore by the store; the count goes on past it
                start += 1
                continue
            if not raws:
                break
            start += len(raws)
            for raw in raws:
                rec = decode_record(raw)
                if rec.kind == "attest" and rec.body is not None:
                    self.attested[rec.body["path"]] += 1
        self.hub.listeners.on_records.append(self._on_records)

    # --- analytics feed ------------------------------------------------------------------------------
    @property
    def markets(self) -> Any:
        """The views' market analytics (hub.views names their class; the bridges need ingest and checked)."""
        return self.views.markets

    @contextlib.contextmanager
    def analytics(self) -> Iterator[None]:
        """Hold the views' lock, with every queued input folded in, while reading their analytics."""
        with self.views.fresh():
            yield

    def _on_records(self, records: list[Record], arrived_at: int) -> None:
        """Hub listener: the inputs each new attest record stands for go to MBG and markets, as attested."""
        derived: list[DerivedInput] = []
        for rec in records:
            if rec.kind == "attest" and rec.device_id == self.hub.hub_id and rec.body is not None:
                self.attested[rec.body["path"]] += 1
                derived.extend(derive(rec))
        if not derived:
            return

        def feed() -> None:
            for item in derived:
                if item.kind == "scan":
                    self.views.mbg.ingest(item, arrived_at)
                else:
                    self.markets.ingest(item, arrived_at)

        self.views.defer(feed)  # ingest never waits for an analysis in progress

    # --- seed 2: registration and tokens -------------------------------------------------------------
    def register(self, value: Any, *, source: str = "") -> tuple[LegacyDevice, str]:
        """Register a seed-2 device sent from `source` (its address): pending an operator's approval, within
        `[bridges]`'s pending limits, unless auto_approve."""
        if not isinstance(value, dict):
            raise BridgeInputError("expected a JSON object {market_id, device_id, role}")
        extra = sorted(set(value) - {"market_id", "device_id", "role"})
        if extra:
            raise BridgeInputError(f"unexpected keys {extra[:5]}; expected market_id, device_id and role")
        for name in ("market_id", "device_id"):
            if name not in value:
                raise BridgeInputError(f"field required: {name}")
        device_id = ident(value["device_id"], "device_id")
        market = resolve_market(value["market_id"], self.config.market_aliases)
        role = value.get("role", "operator")
        if role not in ("operator", "sensor", "reporter"):
            raise BridgeInputError(f"role: expected operator, sensor or reporter, got {str(role)[:40]!r}")
        status = "active" if self.config.auto_approve else "pending"
        try:
            return self.registry.register(device_id=device_id, market_id=value["market_id"], market=market,
                                          role=role, now=self.hub.clock(), status=status,
                                          limits=self.config.pending, source=source)
        except KeyError:
            raise BridgeInputError("Device already registered") from None

    def expire_pending(self) -> list[LegacyDevice]:
        """Drop the seed-2 registrations nobody approved within `[bridges] pending_expire_s`."""
        dropped = self.registry.expire(self.hub.clock(), self.config.pending)
        if dropped:
            log.info("%d seed-2 registrations nobody approved within %d s dropped", len(dropped),
                     self.config.pending_expire_s)
        return dropped

    def device_for(self, authorization: str | None) -> LegacyDevice:
        """The device a bearer token belongs to; Unauthorized or Forbidden otherwise."""
        token = bearer_token(authorization)
        if not token:
            raise Unauthorized("Not authenticated: send Authorization: Bearer <token> from /api/auth/device/register")
        device = self.registry.by_token(token)
        if device is None:
            raise Unauthorized("Invalid token")
        if device.status != "active":
            raise Forbidden(f"device {device.device_id} is {device.status}; an operator must approve it")
        return device

    # --- seed 2: MarketDataStream --------------------------------------------------------------------
    def ingest_market(self, raw: bytes, *, path: str, sender: str, device: LegacyDevice | None,
                      topic_device: str | None = None) -> Record:
        """One MarketDataStream payload -> one attest record. `device` is the token's device (HTTP); for MQTT
        it is None and the payload's device_id, or `topic_device` (the device's own topic, bound to it by the
        broker's ACL), must name a registered, active device; on the shared topic, with its token."""
        if len(raw) > self.config.max_payload_bytes:
            raise PayloadTooLarge(f"payload of {len(raw)} bytes; at most {self.config.max_payload_bytes}")
        value = load_json(raw, limit=self.config.max_payload_bytes)
        md = parse_market_data(value, markets=self.config.market_aliases,
                               commodities=self.config.commodity_aliases, allow_token=device is None)
        if device is None:
            named = md.device_id
            if topic_device is not None:
                topic_device = ident(topic_device, "topic's device_id")
                if named is not None and named != topic_device:
                    raise Forbidden(f"payload device_id {named} is not its topic's device {topic_device}")
                named = topic_device
            if named is None:
                raise Forbidden("payload has no device_id: the hub cannot say who sent it")
            device = self.registry.get(named)
            if device is None:
                raise Forbidden(f"device {named} is not registered at this hub")
            if device.status != "active":
                raise Forbidden(f"device {named} is {device.status}")
            if md.token is None and topic_device is None and self.config.mqtt.require_token:
                raise Unauthorized(
                    f"payload names device {named} but carries no token, and any client the broker lets publish on "
                    f"{self.config.mqtt.topic} could have sent it",
                    hint=f"send the device's seed-2 token in the payload's token field, or publish on "
                         f"{self.config.mqtt.topic}/<device_id> ([bridges.mqtt] device_topics = true, broker ACL "
                         f"pattern write {self.config.mqtt.topic}/%u)")
            if md.token is not None and self.registry.by_token(md.token) != device:
                raise Unauthorized("Invalid token")
        elif md.device_id is not None and md.device_id != device.device_id:
            raise Forbidden(f"payload device_id {md.device_id} is not the token's device {device.device_id}")
        if md.market != device.market:
            raise Forbidden(f"device {device.device_id} is registered at market {device.market_id}, "
                            f"not {md.data['market_id']}")
        now = self.hub.clock()
        claimed = md.data.get("claimed_time")
        if claimed is not None and not now - MAX_BACKDATE_S <= claimed <= now + MAX_AHEAD_S:
            raise OutsideLiveWindow(
                f"timestamp: {md.data['timestamp']} is {abs(now - claimed) / 3600:.1f} h "
                f"{'before' if claimed < now else 'after'} the hub's arrival time; live data may be at most {MAX_BACKDATE_S // 3600} h old and {MAX_AHEAD_S} s ahead (send "
                f"history with `jejak markets import`, or fix the device clock)")
        data = {**md.data, "device_id": device.device_id, "raw_sha256": digest(raw)}
        (record,) = self.attestor.attest([Attestation(path=path, sender=sender, kind="price", data=data,
                                                      received_at=now)])
        return record

    # --- seed 1: gateway batches ---------------------------------------------------------------------
    def sync_gateway(self, raw: bytes, *, sender: str, token: str) -> list[Record]:
        """A gateway's batch, from the gateway token whose digest is `token`: every item must name a gateway id
        `[bridges] gateway_ids` lets that token send for, if it lists the token."""
        value = load_json(raw, limit=GATEWAY_BATCH_BYTES,
                          invalid="Data harus berupa list/array (JSON tidak valid / not valid JSON)")
        items = parse_gateway_batch(value, max_items=self.config.max_batch, sites=self.config.gateway_sites)
        allowed = self.config.gateway_ids.get(token)
        for n, item in enumerate(items):
            if allowed is not None and item["gateway_id"] not in allowed:
                raise Forbidden(f"item {n}: gateway_id {item['gateway_id']!r} is not this token's; it sends for "
                                f"{list(allowed)[:5]}", hint="each gateway sends with its own token")
        now = self.hub.clock()
        # A signed record's device time further ahead than this is the device's word, kept and timed by its
        # arrival (clock_skew); a gateway's scan is the hub's word once attested, so the hub refuses to sign one
        # dated past the same bound (the gateway keeps the batch and sends it again).
        ahead = self.views.mbg.plan.clock.max_skew_s
        for n, item in enumerate(items):
            if item["time"] - now > ahead:
                raise ClockAhead(
                    f"item {n}: timestamp {item['timestamp']!r} is {(item['time'] - now) / 3600:.1f} h after the "
                    f"hub's clock; a scan may be at most {ahead} s ahead ([clock] max_skew_s of the hub's plan)",
                    hint="fix the gateway's clock: seed 1 sends UTC, so its clock must be set to UTC, not local time")
        batch = digest(raw)
        return self.attestor.attest([
            Attestation(path=PATH_GATEWAY, sender=sender, kind="scan",
                        data={**item, "batch_sha256": batch, "batch_index": n}, received_at=now)
            for n, item in enumerate(items)])

    # --- queries -------------------------------------------------------------------------------------
    def observations(self, commodity: str | None = None, market: str | None = None) -> list[dict[str, Any]]:
        """Every price observation the analytics hold, each with its trust ("signed" or "attested")."""
        with self.analytics():
            rows = self.markets.checked()
        return [{**o, "trust": trust_of(o.get("source"))} for o in rows
                if (commodity is None or o["commodity"] == commodity) and (market is None or o["market"] == market)]

    def status(self) -> dict[str, Any]:
        state = self.hub.store.chain_state(self.hub.hub_id)
        return {"attestor": self.hub.hub_id.hex(), "attestation_log_length": state.length if state else 0,
                "attested": dict(self.attested), "refused": dict(self.refused),
                "legacy_devices": [d.to_json() for d in self.registry.devices()],
                "mqtt": dict(self.mqtt.stats) if self.mqtt is not None else None}


def trust_counts(rows: Sequence[dict[str, Any]]) -> dict[str, int]:
    counts = Counter(r["trust"] for r in rows)
    return {"signed": counts.get("signed", 0), "attested": counts.get("attested", 0)}
