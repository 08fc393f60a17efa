"""Configuration of the hub's bridges for legacy clients: one frozen dataclass tree, validated on creation."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from ..pending import WEEK_S, PendingLimits

# Seed 2's device client reports these commodity names; they map onto the market catalogue's ids.
SEED2_COMMODITIES: dict[str, str] = {
    "cabai": "cabai-merah", "cabai_rawit": "cabai-rawit", "bawang": "bawang-merah", "bawang_putih": "bawang-putih",
    "beras": "beras-medium", "beras_premium": "beras-premium", "telur": "telur-ayam", "ayam": "daging-ayam",
    "minyak": "minyak-goreng", "gula": "gula-pasir",
}


def _need(cond: bool, message: str) -> None:
    if not cond:
        raise ValueError(message)


@dataclass(frozen=True, slots=True, kw_only=True)
class MqttConfig:
    """The hub's own MQTT session to the broker that seed-2 devices publish to.

    Per-device credentials live in the broker (password file and ACL: each device user may publish to the
    topic); the hub connects with its own `username`/`password` or TLS client certificate and only reads.
    """

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 1883
    topic: str = "pasar/data"
    client_id: str = ""  # empty: "jejak-hub-<hub id prefix>"
    username: str = ""
    password: str = ""
    tls: bool = False
    tls_ca: str = ""  # CA file that signed the broker's certificate
    tls_cert: str = ""  # client certificate, for brokers that require one
    tls_key: str = ""
    tls_insecure: bool = False  # skip the host name check (test brokers on an IP address)
    keepalive: int = 30
    clean_session: bool = False  # False: the broker keeps QoS 1 messages for the hub while it is away
    qos: int = 1
    # MQTT does not tell a subscriber who published. A payload on `topic` names its device, and is believed only
    # with that device's seed-2 token in its "token" field (seed 2's own client sends none: false takes the
    # device it names from any client the broker lets publish on `topic`, and is warned about at start).
    require_token: bool = True
    # Also take payloads on `topic`/<device_id>, as that device's without a token: the broker's ACL binds the topic
    # to the device's MQTT user (mosquitto `pattern write pasar/data/%u`); the hub's user reads `topic`/+ too.
    device_topics: bool = False

    def __post_init__(self) -> None:
        _need(0 < self.port < 65536, f"mqtt.port: expected 1..65535, got {self.port}")
        _need(bool(self.topic) and "#" not in self.topic and "+" not in self.topic,
              f"mqtt.topic: expected one topic without wildcards, got {self.topic!r}")
        _need(self.qos in (0, 1, 2), f"mqtt.qos: expected 0, 1 or 2, got {self.qos}")
        if self.tls_cert or self.tls_key:
            _need(bool(self.tls_cert and self.tls_key), "mqtt.tls_cert and mqtt.tls_key go together")
        for name in ("tls_ca", "tls_cert", "tls_key"):
            path = getattr(self, name)
            _need(not path or os.path.exists(path), f"mqtt.{name}: file {path!r} does not exist")


@dataclass(frozen=True, slots=True, kw_only=True)
class BridgeConfig:
    enabled: bool = True  # False: no legacy clients, and no attestation log in the hub's store
    state_dir: str = ""  # legacy device registrations (token digests, never tokens); empty: <data_dir>/bridges
    auto_approve: bool = False  # True: seed-2 registrations send at once, no operator approval (demos only)
    market_aliases: dict[str, str] = field(default_factory=dict)  # seed-2 market_id -> catalogue market id
    commodity_aliases: dict[str, str] = field(default_factory=lambda: dict(SEED2_COMMODITIES))
    gateway_sites: dict[str, str] = field(default_factory=dict)  # seed-1 gateway_id -> site id
    gateway_tokens: tuple[str, ...] = ()  # SHA-256 hex of tokens seed-1 gateways must send; empty: route closed
    # token digest -> the gateway_ids its batches may name; a token not listed may name any (one gateway's token
    # would otherwise send scans for every site of gateway_sites)
    gateway_ids: dict[str, tuple[str, ...]] = field(default_factory=dict)
    max_batch: int = 1000  # scans in one seed-1 gateway sync
    pending_devices: int = 1000  # seed-2 registrations waiting for approval; more are 503 TOO_MANY_PENDING
    # of them from one address and from one network (/24, /64); more are 429 TOO_MANY_PENDING_FROM_SOURCE
    pending_per_address: int = 16
    pending_per_network: int = 64
    pending_expire_s: int = WEEK_S  # a registration nobody approved is dropped after this long
    max_payload_bytes: int = 16 * 1024
    ws_max_subscribers: int = 200  # live WebSocket subscribers (/ws/prices, /api/alerts/ws) at once
    ws_queue: int = 256  # events a subscriber may be behind before it is closed (1013) as too slow
    ws_max_frame_bytes: int = 4096  # a larger frame from a subscriber closes it (1009)
    mqtt: MqttConfig = field(default_factory=MqttConfig)

    def __post_init__(self) -> None:
        _need(1 <= self.max_batch <= 10000, f"max_batch: expected 1..10000, got {self.max_batch}")
        for name in ("pending_devices", "pending_per_address", "pending_per_network", "pending_expire_s"):
            _need(getattr(self, name) >= 1, f"{name}: expected at least 1, got {getattr(self, name)}")
        _need(256 <= self.max_payload_bytes <= 1 << 20,
              f"max_payload_bytes: expected 256..1048576, got {self.max_payload_bytes}")
        _need(1 <= self.ws_max_subscribers <= 10000,
              f"ws_max_subscribers: expected 1..10000, got {self.ws_max_subscribers}")
        _need(8 <= self.ws_queue <= 100_000, f"ws_queue: expected 8..100000, got {self.ws_queue}")
        _need(64 <= self.ws_max_frame_bytes <= 1 << 20,
              f"ws_max_frame_bytes: expected 64..1048576, got {self.ws_max_frame_bytes}")
        for digest in self.gateway_tokens:
            _need(len(digest) == 64 and all(c in "0123456789abcdef" for c in digest),
                  "gateway_tokens: expected SHA-256 hex digests (64 lowercase hex characters), not tokens")
        for digest, ids in self.gateway_ids.items():
            _need(digest in self.gateway_tokens, f"gateway_ids: {digest[:16]}... is not one of gateway_tokens")
            _need(bool(ids) and all(isinstance(i, str) and i for i in ids),
                  f"gateway_ids: expected a list of gateway ids for {digest[:16]}..., got {ids!r:.80}")

    @property
    def pending(self) -> PendingLimits:
        """How many seed-2 registrations may wait for approval, from where, and for how long."""
        return PendingLimits(total=self.pending_devices, per_address=self.pending_per_address,
                             per_network=self.pending_per_network, expire_s=self.pending_expire_s,
                             settings="[bridges] ")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BridgeConfig:
        """From a parsed TOML table ([bridges] with an optional [bridges.mqtt])."""
        data = dict(data)
        mqtt = MqttConfig(**data.pop("mqtt", {}))
        if "gateway_tokens" in data:
            data["gateway_tokens"] = tuple(data["gateway_tokens"])
        if "gateway_ids" in data:
            data["gateway_ids"] = {digest: tuple(ids) for digest, ids in data["gateway_ids"].items()}
        return cls(mqtt=mqtt, **data)
