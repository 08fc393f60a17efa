"""The hub's configuration: one TOML file, one frozen dataclass tree."""

from __future__ import annotations

import difflib
import tomllib
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

from ledger.errors import CodedError

from .bridges.config import BridgeConfig
from .clock import parse_clock
from .markets.errors import BadObservation
from .markets.service import MarketConfig
from .markets.webhooks import RetryPolicy, Subscriber


class ConfigError(CodedError):
    """The hub's TOML configuration is unreadable or wrong: an unknown key, a bad value, a backend it lacks."""

    code = "CONFIG"
    coap = "5.00"
    http = 500
    exit_code = 31


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreConfig:
    backend: str = "lmdb"  # "lmdb" (embedded) or "postgres"
    path: str = "var/hub/store"
    dsn: str = "postgresql://127.0.0.1:5432/test"
    map_size: int = 1 << 32
    # PostgreSQL: log rows per partition, the unit of archive (`jejak hub archive`); about a month of records
    partition_leaves: int = 1 << 22

    def __post_init__(self) -> None:
        if self.backend not in ("lmdb", "postgres"):
            raise ConfigError(f"store.backend: expected 'lmdb' or 'postgres', got {self.backend!r}",
                              where="store.backend", hint="set backend = \"lmdb\" (embedded) or \"postgres\"")
        if self.partition_leaves <= 0 or self.partition_leaves % 64:
            raise ConfigError(f"store.partition_leaves: expected a positive multiple of 64, got {self.partition_leaves}",
                              where="store.partition_leaves",
                              hint="about a month of records, e.g. 4194304 for a province, 67108864 nationally")


@dataclass(frozen=True, slots=True, kw_only=True)
class SecurityConfig:
    """[security]: OSCORE on the CoAP sync resources (hub/security.py, SECURITY.md)."""

    oscore: bool = False  # refuse unprotected sync requests (4.01 OSCORE_REQUIRED)
    read: tuple[str, ...] = ("*:self",)  # "<peer>:<log>" rules for pulling logs; default: a device its own
    peer_hubs: tuple[str, ...] = ()  # Ed25519 public keys (hex) of hubs that pull from this one over OSCORE


UPSTREAM_MODES = ("records", "checkpoints")


@dataclass(frozen=True, slots=True, kw_only=True)
class Upstream:
    """One regional hub pulled from: an `upstream` entry "coap://host:port [<hub key hex>] [records|checkpoints]".

    The key pins the regional hub (its OSCORE pair context, the key its checkpoints must be signed with, and its
    revocation list's, mirrored into this hub's own log for the devices it relays). It is never learnt from the
    network: a hub key never rotates, and a region with a new key is a new entry. In
    "records" mode (the default) every record is pulled and verified again; in "checkpoints" mode only the
    region's signed checkpoints are followed, each proved consistent with the last one accepted, and records are
    fetched one at a time with their inclusion proofs (hub/tiers.py, docs/SCALE.md)."""

    url: str
    key: bytes | None = None
    mode: str = "records"


def parse_upstream(entry: str) -> Upstream:
    words = entry.split()
    where = "upstream"
    if not words or not words[0].startswith(("coap://", "coap+tcp://", "coaps://")):
        raise ConfigError(f"upstream entry {entry!r}: expected \"coap://host:port [<hub key hex>] [mode]\"",
                          where=where)
    url, rest = words[0], words[1:]
    mode = "records"
    if rest and rest[-1] in UPSTREAM_MODES:
        mode = rest.pop()
    key = None
    if rest:
        try:
            key = bytes.fromhex(rest.pop(0))
        except ValueError:
            key = b""
        if len(key) != 32 or rest:
            raise ConfigError(f"upstream entry {entry!r}: expected a 64-hex-digit hub key, then optionally one "
                              f"of {', '.join(UPSTREAM_MODES)}", where=where)
    if mode == "checkpoints" and key is None:
        raise ConfigError(f"upstream {url}: following checkpoints needs the regional hub's key to check them "
                          "with", where=where, hint="add the regional hub's public key (hex) after the address")
    return Upstream(url=url, key=key, mode=mode)


@dataclass(frozen=True, slots=True, kw_only=True)
class HubConfig:
    name: str = "hub"
    region: str = "demo"
    data_dir: str = "var/hub"
    http_host: str = "127.0.0.1"
    http_port: int = 8470
    coap_host: str = "127.0.0.1"
    coap_port: int = 5683
    coap_tcp: bool = True  # also serve CoAP over TCP (RFC 8323) on the same port: bulk sync without block-wise
    checkpoint_interval: float = 10.0
    auto_approve: bool = False
    mdns: bool = True
    operator_tokens: tuple[str, ...] = ()  # SHA-256 hex digests of operator tokens
    auditor_tokens: tuple[str, ...] = ()
    # "coap://host:port [<regional hub key hex>] [records|checkpoints]" of regional hubs pulled from (Upstream)
    upstream: tuple[str, ...] = ()
    # The hub's time: "wall", or "<ISO instant> [xSPEED] [records]" to replay or backfill a past day (hub/clock.py)
    clock: str = "wall"
    mbg_plan: str = ""  # TOML file of kitchens, schools and schedules (hub/mbg/README.md)
    mbg_keep_days: int = 8  # days of scans the MBG analytics hold in memory and refill on start (the store keeps all)
    # kitchen id -> market region (as price records name it): the kitchens' stock use is MBG demand there
    mbg_kitchen_regions: dict[str, str] = field(default_factory=dict)
    markets: MarketConfig = field(default_factory=MarketConfig)  # validation, impact and forecast settings
    bridges: BridgeConfig = field(default_factory=BridgeConfig)  # legacy clients (seed 1 and 2, MQTT)
    webhooks: tuple[dict[str, Any], ...] = ()  # [[webhooks]] alert subscribers: id, kind, url, token, ...
    webhook_attempts: int = 4  # tries per alert delivery (retries back off exponentially)
    webhook_timeout_s: float = 10.0
    # [webhook_retry] a delivery that failed all its tries is sent again while its alert is open: backoff_s,
    # max_backoff_s (doubling, with jitter), queue (alerts waiting per subscriber) and max_age_s (none waits
    # longer); what waits is kept in data_dir/alerts/redelivery.jsonl and carries on after a restart
    webhook_retry: RetryPolicy = field(default_factory=RetryPolicy)
    store: StoreConfig = field(default_factory=StoreConfig)
    security: SecurityConfig = field(default_factory=SecurityConfig)

    def __post_init__(self) -> None:
        self.subscribers()  # a [[webhooks]] entry that does not hold stops the hub at start, naming the setting
        parse_clock(self.clock)  # a bad clock stops the hub at start, not at its first record
        for entry in self.upstream:
            parse_upstream(entry)
        if self.checkpoint_interval <= 0:
            raise ValueError(f"checkpoint_interval: expected > 0 seconds, got {self.checkpoint_interval}")
        for port in (self.http_port, self.coap_port):
            if not 0 <= port < 65536:
                raise ValueError(f"port: expected 0..65535, got {port}")

    def subscribers(self) -> tuple[Subscriber, ...]:
        """The [[webhooks]] entries as the alert subscribers they name; a ConfigError for one that does not
        hold."""
        subs = tuple(subscriber_of(hook, n) for n, hook in enumerate(self.webhooks, 1))
        seen: set[str] = set()
        for n, sub in enumerate(subs, 1):
            if sub.id in seen:
                raise ConfigError(f"[[webhooks]] number {n}: id {sub.id!r} is taken by an earlier entry",
                                  where=f"webhooks[{n}].id",
                                  hint="give each subscriber its own id: what it was told is kept by id")
            seen.add(sub.id)
        return subs


_SUBSCRIBER_LISTS = ("commodities", "regions")


def subscriber_of(hook: object, n: int) -> Subscriber:
    """The `n`-th (from 1) [[webhooks]] entry as a Subscriber. What does not hold is a ConfigError that names the
    entry and the setting: an unknown one with the closest known one, a missing one, one of the wrong type, or a
    value the subscriber refuses."""
    where = f"webhooks[{n}]"
    if not isinstance(hook, Mapping):
        raise ConfigError(f"[[webhooks]] number {n}: expected a table of settings (id, kind, url, ...), got "
                          f"{type(hook).__name__}", where=where)
    known = {f.name: f for f in fields(Subscriber)}
    section = f"[[webhooks]] number {n}" + (f" (id {hook['id']!r})" if isinstance(hook.get("id"), str) else "")
    kwargs: dict[str, Any] = {}
    for key, value in hook.items():
        if key not in known:
            raise _unknown(key, known, section, f"{where}.{key}")
        if key in _SUBSCRIBER_LISTS:
            if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{section}: {key}: expected a list of names, got {value!r}",
                                  where=f"{where}.{key}", hint=f'e.g. {key} = ["..."]; leave it out for every one')
            kwargs[key] = tuple(value)
        elif not isinstance(value, str):
            raise ConfigError(f"{section}: {key}: expected text, got {value!r}", where=f"{where}.{key}",
                              hint=f'quote it: {key} = "..."')
        else:
            kwargs[key] = value
    missing = [name for name, f in known.items() if f.default is MISSING and name not in kwargs]
    if missing:
        raise ConfigError(f"{section}: {', '.join(missing)} not set", where=f"{where}.{missing[0]}",
                          hint="a subscriber needs an id, a kind (json, telegram or whatsapp) and a url")
    try:
        return Subscriber(**kwargs)
    except BadObservation as exc:
        raise ConfigError(f"{section}: {exc.message}", where=where, hint=exc.hint) from None


def _unknown(key: str, known: Mapping[str, object], section: str, where: str) -> ConfigError:
    close = difflib.get_close_matches(key, known, n=1)
    return ConfigError(f"unknown setting {key!r}" + (f" in {section}" if section else ""), where=where,
                       hint=(f"did you mean {close[0]!r}? " if close else "")
                       + f"known settings: {', '.join(sorted(known))}")


def _build(cls: Any, data: object, section: str = "") -> Any:
    if not isinstance(data, dict):  # `store = 5` where a [store] table belongs
        raise ConfigError(f"[{section}]: expected a table of settings, got {type(data).__name__}", where=section,
                          hint=f"write the settings under a [{section}] header")
    known = {f.name: f for f in fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in known:
            raise _unknown(key, known, f"[{section}]" if section else "", f"{section}.{key}" if section else key)
        spec = known[key]
        default = spec.default_factory() if spec.default_factory is not MISSING else spec.default
        if is_dataclass(default):
            kwargs[key] = _build(type(default), value, f"{section}.{key}" if section else key)
        elif isinstance(value, list):
            kwargs[key] = tuple(value)
        else:
            kwargs[key] = value
    return cls(**kwargs)


def load(path: str | Path | None) -> HubConfig:
    if path is None:
        return HubConfig()
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}", hint="fix the TOML syntax at that line") from None
    try:
        return _build(HubConfig, data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc.message}", where=exc.where, hint=exc.hint) from None
    except (ValueError, TypeError) as exc:  # a value the settings' own checks refuse
        raise ConfigError(f"{path}: {exc}", hint="see the settings in docs/DEPLOY.md") from None
