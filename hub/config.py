"""The hub's configuration: one TOML file, one frozen dataclass tree."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

from coap_server.configfile import load_settings
from coap_server.settings import build, unknown_key
from ledger.errors import CodedError

from .bridges.config import BridgeConfig
from .clock import parse_clock
from .markets.errors import BadObservation
from .markets.service import MarketConfig
from .markets.webhooks import RetryPolicy, Subscriber
from .pending import WEEK_S, PendingLimits
from .redact import shown_dsn


class ConfigError(CodedError):
    """The hub's TOML configuration is unreadable or wrong: an unknown key, a bad value, a backend it lacks."""

    code = "CONFIG"
    coap = "5.00"
    http = 500
    exit_code = 31


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreConfig:
    backend: str = "lmdb"  # "lmdb" (embedded) or "postgres"
    path: str = ""  # lmdb: the store's directory; empty: <data_dir>/store
    # No default: a hub whose [store] names postgres without a dsn ran on the local server's `test` database.
    dsn: str = ""
    map_size: int = 1 << 32
    # PostgreSQL: log rows per partition, the unit of archive (`jejak hub archive`); about a month of records
    partition_leaves: int = 1 << 22

    def __post_init__(self) -> None:
        if self.backend not in ("lmdb", "postgres"):
            raise ConfigError(f"store.backend: expected 'lmdb' or 'postgres', got {self.backend!r}",
                              where="store.backend", hint="set backend = \"lmdb\" (embedded) or \"postgres\"")
        if not 1 << 16 <= self.map_size <= 1 << 42:
            raise ConfigError(f"store.map_size: expected 65536 to 4398046511104 bytes (4 TiB), got {self.map_size}",
                              where="store.map_size", hint="the most the LMDB store may hold, e.g. 4294967296 (4 GiB)")
        if self.backend == "postgres" and not self.dsn.strip():
            raise ConfigError("store.dsn: expected a PostgreSQL address for backend = \"postgres\", got nothing",
                              where="store.dsn",
                              hint='e.g. dsn = "postgresql://jejak-hub@/jejak?host=/run/postgresql"')
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

    def __post_init__(self) -> None:
        for n, key in enumerate(self.peer_hubs, 1):
            if not _is_hex(key, 64):
                raise ConfigError(f"security.peer_hubs: expected Ed25519 public keys of 64 hex digits, got "
                                  f"{key[:80]!r}", where=f"security.peer_hubs[{n}]",
                                  hint="the key a national hub's `jejak enroll qr` shows, as hex")
        for n, rule in enumerate(self.read, 1):
            if rule.count(":") != 1 or not all(rule.split(":")):
                raise ConfigError(f"security.read: expected \"<peer>:<log>\" rules, got {rule!r}",
                                  where=f"security.read[{n}]", hint='e.g. "*:self" (a device its own log), "<hub id>:*"')


def _is_hex(text: str, length: int) -> bool:
    return len(text) == length and all(c in "0123456789abcdef" for c in text)


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


def _one_entry_per_region(entries: tuple[str, ...]) -> None:
    """Each upstream entry parses, no two name the same address (one regional hub would be pulled twice, or one
    entry's key refused as the other's region), and no two pin the same regional hub key: both would open (and
    lock) the one OSCORE context kept for that key, and the start failed as UNREACHABLE "file lock ... could not be
    acquired"."""
    pinned: dict[bytes, tuple[int, str]] = {}
    addressed: dict[str, int] = {}
    for n, entry in enumerate(entries, 1):
        upstream = parse_upstream(entry)
        if upstream.url in addressed:
            raise ConfigError(f"upstream entries {addressed[upstream.url]} and {n} both name {upstream.url}: one "
                              "entry a regional hub", where=f"upstream[{n}]",
                              hint="keep the entry with the regional hub's right key and mode, and delete the other")
        addressed[upstream.url] = n
        if upstream.key is None:
            continue
        if upstream.key in pinned:
            first, url = pinned[upstream.key]
            raise ConfigError(f"upstream entries {first} ({url}) and {n} ({upstream.url}) both name regional hub key "
                              f"{upstream.key.hex()}: one region key belongs to one entry",
                              where=f"upstream[{n}]",
                              hint="keep the entry with the regional hub's right address and delete the other")
        pinned[upstream.key] = (n, upstream.url)


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
    # What one host on the network may hold open (coap_server/limits.py): more are refused and logged once a
    # minute. CoAP-TCP connections in all and from one address (an edge keeps one), and the seconds one may go
    # without a whole message either way before it is closed (a client opens another at its next request).
    coap_tcp_connections: int = 512
    coap_tcp_per_address: int = 16
    coap_tcp_idle_s: float = 120.0
    # HTTP connections in all and from one address (a browser opens about six), and live event streams
    # (/api/events, seed 2's WebSockets) in all and from one client; past them 503 TOO_MANY_STREAMS.
    http_connections: int = 512
    http_connections_per_address: int = 32
    event_streams: int = 200
    event_streams_per_client: int = 8
    event_keepalive_s: float = 15.0  # an idle live stream's comment line, before a proxy takes it for dead
    # A request body must all come within http_body_grace_s of its head plus a second for every
    # http_body_min_rate bytes (so a body sent at that many bytes a second or faster is never cut); one slower
    # is answered 408 BODY_TOO_SLOW and its connection closed (coap_server/httpd.py BodyPace).
    http_body_grace_s: float = 30.0
    http_body_min_rate: int = 1024
    # Reverse proxies on this host (nginx, docs/DEPLOY.md): their connections count only in the totals, and a
    # stream's client is the last address of the X-Forwarded-For they add.
    http_proxies: tuple[str, ...] = ("127.0.0.1", "::1")
    checkpoint_interval: float = 10.0
    auto_approve: bool = False
    # Enrolled keys waiting for an operator's approval: anyone may send an enrollment request, so past this many
    # the next is refused (503 TOO_MANY_PENDING) until an operator approves or revokes some, or they expire.
    pending_devices: int = 1000
    # Of them, at most this many sent from one address, and from one network (its /24, or /64 for IPv6): past
    # them 429 TOO_MANY_PENDING_FROM_SOURCE, so one host cannot take every place (behind a proxy of
    # http_proxies, the address it forwards). A request nobody approved is dropped after pending_expire_s.
    pending_per_address: int = 16
    pending_per_network: int = 64
    pending_expire_s: int = WEEK_S
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
    # longer); what waits is kept in data_dir/alerts/redelivery.jsonl (on PostgreSQL in the store) and carries on
    # after a restart
    webhook_retry: RetryPolicy = field(default_factory=RetryPolicy)
    store: StoreConfig = field(default_factory=StoreConfig)
    security: SecurityConfig = field(default_factory=SecurityConfig)

    def __post_init__(self) -> None:
        self.subscribers()  # a [[webhooks]] entry that does not hold stops the hub at start, naming the setting
        parse_clock(self.clock)  # a bad clock stops the hub at start, not at its first record
        _one_entry_per_region(self.upstream)
        if self.checkpoint_interval <= 0:
            raise ValueError(f"checkpoint_interval: expected > 0 seconds, got {self.checkpoint_interval}")
        for name in ("http_port", "coap_port"):
            if not 0 <= getattr(self, name) < 65536:
                raise ConfigError(f"{name}: expected a port 0..65535 (0 = any free port), got {getattr(self, name)}",
                                  where=name, hint="UDP and TCP ports end at 65535")
        for name in ("mbg_keep_days", "webhook_attempts", "webhook_timeout_s", "coap_tcp_connections",
                     "coap_tcp_per_address", "coap_tcp_idle_s", "http_connections", "http_connections_per_address",
                     "event_streams", "event_streams_per_client", "event_keepalive_s", "http_body_grace_s",
                     "http_body_min_rate", "pending_devices", "pending_per_address", "pending_per_network",
                     "pending_expire_s"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name}: expected a number > 0, got {getattr(self, name)}", where=name,
                                  hint=f"leave {name} out for its default")
        for name in ("operator_tokens", "auditor_tokens"):
            for n, digest in enumerate(getattr(self, name), 1):
                if not _is_hex(digest, 64):
                    raise ConfigError(f"{name}: expected SHA-256 digests of tokens (64 lowercase hex digits), got "
                                      f"one of {len(digest)} characters", where=f"{name}[{n}]",
                                      hint="write the digest, never the token: echo -n TOKEN | sha256sum")
        if self.store.backend == "postgres" and not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", self.name.replace("-", "_")):
            raise ConfigError(f"name: expected lowercase letters, digits, - and _ (the PostgreSQL store's schema is "
                              f"named after the hub), got {self.name!r}", where="name", hint='e.g. name = "hub-jabar"')
        for name in ("http_host", "coap_host", "name", "data_dir"):
            if not getattr(self, name).strip():
                raise ConfigError(f"{name}: expected a value, got nothing", where=name,
                                  hint=f"leave {name} out for its default")

    @property
    def store_path(self) -> Path:
        """The LMDB store's directory: `[store] path`, else `store` under data_dir."""
        return Path(self.store.path or Path(self.data_dir) / "store")

    @property
    def pending(self) -> PendingLimits:
        """How many enrollment requests may wait for approval, from where, and for how long."""
        return PendingLimits(total=self.pending_devices, per_address=self.pending_per_address,
                             per_network=self.pending_per_network, expire_s=self.pending_expire_s)

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
            raise unknown_key(key, known, f"{where}.{key}", ConfigError, section)
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
        raise ConfigError(f"{section}: {exc.message}", where=f"{where}.{exc.where}" if exc.where else where,
                          hint=exc.hint) from None


def bad_dsn(dsn: str) -> ConfigError:
    """The error for a `[store] dsn` psycopg cannot read. Its own message quotes the address whole, password
    and all, so only the masked address is shown."""
    return ConfigError(f"store.dsn: not a PostgreSQL address psycopg can read: {shown_dsn(dsn)}", where="store.dsn",
                       hint='e.g. dsn = "postgresql://user@host:5432/dbname" (a libpq URI; percent-encode special '
                            'characters of the password)')


def _check_dsn(dsn: str) -> None:
    try:
        from psycopg.conninfo import conninfo_to_dict  # the [pg] extra
    except ImportError:  # open_store says what to install
        return
    try:
        conninfo_to_dict(dsn)
    except Exception:  # psycopg.ProgrammingError: kept off the message, it holds the password
        raise bad_dsn(dsn) from None


def from_dict(data: dict[str, Any]) -> HubConfig:
    """The config tree of parsed TOML: unknown keys and values of the wrong type are refused, missing ones take
    their defaults."""
    return build(HubConfig, data, ConfigError)


def _checked(data: dict[str, Any]) -> HubConfig:
    config = from_dict(data)
    if config.store.backend == "postgres":
        _check_dsn(config.store.dsn)
    return config


def load(path: str | Path | None) -> HubConfig:
    if path is None:
        return HubConfig()
    return load_settings(path, _checked, ConfigError,
                         lambda config: (("data_dir", Path(config.data_dir)), ("store.path", config.store_path)))
