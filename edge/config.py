"""The edge daemon's configuration: one TOML file read into one frozen dataclass tree, with laptop defaults."""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import os
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coap_server.configfile import load_settings
from coap_server.settings import build

from .errors import ConfigError

ROLES = ("kitchen", "kitchen_exit", "school_gate", "return", "market_stall")
LOG_FORMATS = ("json", "text")
SENSOR_KINDS = ("probe", "climate", "crowd")
READER_DRIVERS = ("sim", "nfcpy", "pn532_i2c", "pn532_spi", "pn532_uart", "rc522_spi")
SENSOR_DRIVERS = ("sim", "bme280", "sht31", "dht22")
FEEDBACK_DRIVERS = ("log", "gpio")
# The chips' own default I2C addresses, used when a sensor's i2c_address is 0.
DEFAULT_I2C = {"bme280": 0x77, "sht31": 0x44}


def _default_data_dir() -> str:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "jejak", "edge")


def _coap_address(url: str, schemes: tuple[str, ...]) -> bool:
    """Whether `url` is a CoAP address with a host (and a port in range, if it has one)."""
    if not url.startswith(schemes):
        return False
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 -- raises ValueError for a port out of range or not a number
    except ValueError:
        return False
    return bool(parts.hostname)


def _ipv4(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True


def _need(cond: bool, message: str, hint: str | None = None) -> None:
    if not cond:
        raise ConfigError(message, hint=hint)


def _one_of(setting: str, value: Any, choices: tuple[str, ...]) -> None:
    """Refuse a value that is none of `choices`, with the ones it was probably meant as ("kitchen-exit",
    "Kitchen_Exit": kitchen_exit; "pn532": the three PN532 drivers; "simulated": sim)."""
    if value in choices:
        return
    said = str(value).strip().lower().replace("-", "_").replace(" ", "_")
    close = [c for c in choices if said and (c == said or c.startswith(said + "_"))] \
        or difflib.get_close_matches(said, choices, n=2, cutoff=0.6) \
        or [c for c in choices if len(c) >= 3 and said.startswith(c)]  # "simulated": sim
    raise ConfigError(f"{setting}: expected one of {list(choices)}, got {value!r}",
                      hint=f"did you mean {' or '.join(repr(c) for c in close)}?" if close else None)


def _coap_hint(setting: str, url: str, *, listed: bool = False) -> str:
    """The fix for an address without its scheme or port, the commonest slip: a host name as a browser takes it,
    or the hub's HTTP address."""
    host = urllib.parse.urlsplit(url if "://" in url else f"//{url}").hostname or "hub.example.org"
    value = f'"coap://{host}:5683"'
    return (f"write {setting} = {f'[{value}]' if listed else value} (the scheme, the host, and the CoAP port the "
            "other side listens on)")


def _port(name: str, value: int) -> None:
    _need(isinstance(value, int) and 0 <= value <= 65535, f"{name}: expected a port 0..65535 (0 = any free "
                                                          f"port), got {value!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckpointConfig:
    """What this reader is: its role decides the scan event (see firmware.tap.ROLES)."""

    role: str = "kitchen_exit"
    event: str | None = None
    school: str | None = None
    parent: str | None = None
    staff: tuple[str, ...] = ("5a000001",)
    staff_prefixes: tuple[str, ...] = ()
    parent_prefixes: tuple[str, ...] = ()
    container_prefixes: tuple[str, ...] = ()
    dup_window_s: int = 30
    session_timeout_s: int = 120
    batch_linger_ms: int = 0
    portions_per_tag: int = 1

    def __post_init__(self) -> None:
        _one_of("checkpoint.role", self.role, ROLES)
        for name in ("dup_window_s", "session_timeout_s", "batch_linger_ms", "portions_per_tag"):
            value = getattr(self, name)
            _need(isinstance(value, int) and not isinstance(value, bool) and value >= 0,
                  f"checkpoint.{name}: expected an integer >= 0, got {value!r}")
        _need(self.session_timeout_s >= 1, "checkpoint.session_timeout_s: expected at least 1")


@dataclass(frozen=True, slots=True, kw_only=True)
class CoapConfig:
    host: str = "::"
    port: int = 5683

    def __post_init__(self) -> None:
        _port("coap.port", self.port)
        _need(isinstance(self.host, str) and bool(self.host), "coap.host: expected an address, got nothing")


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpConfig:
    """Optional tiny HTTP endpoint for /metrics (Prometheus) and /status; off unless enabled."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 9464

    def __post_init__(self) -> None:
        _port("http.port", self.port)


@dataclass(frozen=True, slots=True, kw_only=True)
class HubConfig:
    address: str = ""  # coap://host:port of the hub, for sites without multicast discovery

    def __post_init__(self) -> None:
        _need(not self.address or _coap_address(self.address, ("coap://", "coap+tcp://")),
              f"hub.address: expected coap://host:port or empty, got {self.address!r}",
              _coap_hint("address", self.address))


@dataclass(frozen=True, slots=True, kw_only=True)
class SyncConfig:
    """Replication with peers and the uplink to the hub."""

    mdns: bool = True  # announce on and browse the LAN for `_jejak._udp.local.`
    peers: tuple[str, ...] = ()  # coap://host:port of neighbours, where multicast is blocked
    interval_s: float = 30.0  # a round at least this often, besides discovery and new records
    announce: str = ""  # IPv4 address to announce; default: the CoAP bind address, or 127.0.0.1
    interfaces: tuple[str, ...] = ()  # IPv4 addresses of the interfaces mDNS uses; default: all
    replica_records: int = 2_000_000  # most records kept of any one peer's log
    # At start, records wait this long at most for the hub to confirm this device's head (and for the records
    # it holds past an old copy of the store to be fetched) before they are signed on the local head.
    head_wait_s: float = 10.0

    def __post_init__(self) -> None:
        _need(self.interval_s > 0, f"sync.interval_s: expected > 0, got {self.interval_s}")
        _need(self.head_wait_s >= 0, f"sync.head_wait_s: expected >= 0 seconds, got {self.head_wait_s}")
        _need(self.replica_records > 0, f"sync.replica_records: expected > 0, got {self.replica_records}")
        for peer in self.peers:
            _need(_coap_address(peer, ("coap://",)), f"sync.peers: expected coap://host:port, got {peer!r}",
                  _coap_hint("peers", peer, listed=True))
        for name, addresses in (("announce", (self.announce,) if self.announce else ()), ("interfaces", self.interfaces)):
            for address in addresses:
                _need(_ipv4(address), f"sync.{name}: expected an IPv4 address like 192.168.1.20, got {address!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    map_size: int = 1 << 30  # LMDB map: the most the store may ever hold
    max_submit_bytes: int = 16 * 1024  # one CoAP submission, after block-wise assembly
    max_submit_items: int = 256  # observations in one batched submission
    max_pending: int = 20000  # appends waiting for their commit before BUSY
    max_batch: int = 4096  # records signed and committed together
    range_records: int = 512  # records in one range response
    range_bytes: int = 256 * 1024  # bytes in one range response (block-wise on the wire)
    duplicate_window_s: int = 2  # identical submissions within this time are one
    # CoAP message ids remembered against retransmissions (coap_server/exchanges.py): long enough for a
    # client's last retransmission on a LAN; raise it for a slower link. When full, requests get 5.03.
    coap_dedup_lifetime_s: int = 50
    coap_dedup_entries: int = 30_000
    coap_dedup_per_peer: int = 10_000  # so one flooding client cannot lock the reader and the hub out
    # HTTP connections ([http]: the phones' bridge, /metrics) held at once, in all and from one address (a
    # browser opens about six); more are answered 503 TOO_MANY_CONNECTIONS and closed (coap_server/limits.py).
    http_connections: int = 64
    http_connections_per_address: int = 16
    # A request body must all come within http_body_grace_s of its head plus a second for every
    # http_body_min_rate bytes; one slower is answered 408 BODY_TOO_SLOW and its connection closed.
    http_body_grace_s: int = 30
    http_body_min_rate: int = 1024
    # Observations of log heads (GET /log/<device> with Observe) held at once, in all and from one address; past
    # them the head is answered once, without Observe (coap_server/resources.py).
    coap_observers: int = 256
    coap_observers_per_address: int = 16
    # Other devices' logs this edge keeps (replicas, pushed by peers or fetched from them): at most this many logs
    # and bytes of their records, and never more than half of map_size, so that made-up logs (a key costs nothing)
    # cannot fill the card its own log is on. Past them new ones are refused LIMIT_EXCEEDED; none is dropped. A
    # quarter of each is kept for the logs of devices vouched for (`edge.sync.ReplicaQuota`).
    replica_logs: int = 512
    replica_bytes: int = 256 << 20

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            _need(isinstance(value, int) and not isinstance(value, bool) and value >= 0,
                  f"limits.{f.name}: expected an integer >= 0, got {value!r}")
        _need(64 * 1024 <= self.map_size <= 1 << 40,
              f"limits.map_size: expected 65536 to 1099511627776 bytes (1 TiB), got {self.map_size}")
        for name in ("max_submit_bytes", "max_submit_items", "max_pending", "max_batch", "range_records",
                     "range_bytes", "coap_dedup_lifetime_s", "coap_dedup_entries", "coap_dedup_per_peer",
                     "http_connections", "http_connections_per_address", "http_body_grace_s", "http_body_min_rate",
                     "coap_observers", "coap_observers_per_address", "replica_logs", "replica_bytes"):
            _need(getattr(self, name) >= 1, f"limits.{name}: expected at least 1")


@dataclass(frozen=True, slots=True, kw_only=True)
class SimConfig:
    """The simulated NFC reader: deterministic from `seed`; taps every `tap_interval_ms` (0 = only taps
    sent to the CoAP /sim/tap resource)."""

    enabled: bool = True
    seed: int = 1
    tap_interval_ms: int = 0
    containers: int = 200

    def __post_init__(self) -> None:
        _need(isinstance(self.tap_interval_ms, int) and self.tap_interval_ms >= 0,
              f"sim.tap_interval_ms: expected an integer >= 0, got {self.tap_interval_ms!r}")
        _need(isinstance(self.containers, int) and self.containers >= 1,
              f"sim.containers: expected an integer >= 1, got {self.containers!r}")


def _pin_name(where: str, value: str, *, empty: bool = True) -> None:
    _need(isinstance(value, str) and (empty or bool(value)),
          f"{where}: expected a board pin name like \"D17\" (BCM GPIO 17){' or empty' if empty else ''}, got {value!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class ReaderConfig:
    """[reader]: the NFC reader the daemon opens (firmware/drivers). A missing one is reported and looked for
    again every retry_s; CoAP and phone input go on meanwhile."""

    driver: str = "sim"  # sim | nfcpy | pn532_i2c | pn532_spi | pn532_uart | rc522_spi
    path: str = "usb"  # nfcpy: "usb", "usb:072f:2200", "tty:USB0:pn532", "tty:AMA0:pn532"
    i2c_address: int = 0x24  # pn532_i2c
    spi_cs: str = "D5"  # pn532_spi, rc522_spi: chip select on a free GPIO (pin 29); "" = the bus's own CE0
    uart: str = "/dev/serial0"  # pn532_uart: serial device
    baudrate: int = 115200  # pn532_uart
    poll_ms: int = 100  # how long one poll waits for a card
    gap_ms: int = 400  # a card lifted for longer than this and presented again is a new tap
    retry_s: float = 2.0  # how often a missing or unplugged reader is looked for again

    def __post_init__(self) -> None:
        _one_of("reader.driver", self.driver, READER_DRIVERS)
        _need(isinstance(self.i2c_address, int) and 0x03 <= self.i2c_address <= 0x77,
              f"reader.i2c_address: expected an I2C address 0x03..0x77, got {self.i2c_address!r}")
        _pin_name("reader.spi_cs", self.spi_cs)
        for name in ("baudrate", "poll_ms", "gap_ms"):
            value = getattr(self, name)
            _need(isinstance(value, int) and not isinstance(value, bool) and value >= 1,
                  f"reader.{name}: expected an integer >= 1, got {value!r}")
        _need(isinstance(self.retry_s, (int, float)) and self.retry_s > 0,
              f"reader.retry_s: expected seconds > 0, got {self.retry_s!r}")

    def bus(self) -> str:
        """Where the reader is, in the words a technician checks the wiring with."""
        return {"sim": "simulated", "nfcpy": f"nfcpy {self.path}", "pn532_i2c": f"I2C 0x{self.i2c_address:02x}",
                "pn532_spi": f"SPI CS {self.spi_cs or 'CE0'}", "rc522_spi": f"SPI CS {self.spi_cs or 'CE0'}",
                "pn532_uart": f"UART {self.uart}"}[self.driver]


@dataclass(frozen=True, slots=True, kw_only=True)
class SensorConfig:
    """[[sensor]]: one sensor, sampled every interval_s; each sample becomes a "reading" record."""

    name: str
    kind: str = "probe"  # probe: temp_cc; climate: temp_cc + rh_cp; crowd: crowd (sim only)
    driver: str = "sim"  # sim | bme280 | sht31 | dht22
    interval_s: int = 300
    i2c_address: int = 0  # bme280, sht31: 0 = the chip's default (0x77, 0x44)
    pin: str = "D4"  # dht22: data pin

    def __post_init__(self) -> None:
        _need(isinstance(self.name, str) and bool(self.name), "sensors[].name: expected a non-empty name")
        _one_of(f"sensors[{self.name}].kind", self.kind, SENSOR_KINDS)
        _one_of(f"sensors[{self.name}].driver", self.driver, SENSOR_DRIVERS)
        _need(self.driver == "sim" or self.kind != "crowd",
              f"sensors[{self.name}]: a {self.driver} measures temperature and humidity, not kind \"crowd\"")
        _need(isinstance(self.interval_s, int) and self.interval_s >= 1,
              f"sensors[{self.name}].interval_s: expected an integer >= 1, got {self.interval_s!r}")
        _need(isinstance(self.i2c_address, int) and (self.i2c_address == 0 or 0x03 <= self.i2c_address <= 0x77),
              f"sensors[{self.name}].i2c_address: expected 0 or an I2C address 0x03..0x77, got {self.i2c_address!r}")
        _pin_name(f"sensors[{self.name}].pin", self.pin, empty=False)

    @property
    def address(self) -> int:
        return self.i2c_address or DEFAULT_I2C.get(self.driver, 0)

    def bus(self) -> str:
        if self.driver == "dht22":
            return f"GPIO {self.pin}"
        return "simulated" if self.driver == "sim" else f"I2C 0x{self.address:02x}"


@dataclass(frozen=True, slots=True, kw_only=True)
class FeedbackConfig:
    """[feedback]: how the person at the reader learns what became of a tap (patterns in firmware/hal.py)."""

    driver: str = "log"  # log: the log line only; gpio: LEDs and a buzzer on GPIO pins (and the log line)
    green: str = "D17"
    amber: str = ""  # empty: amber lights red and green together (an RGB or two-colour LED)
    red: str = "D22"
    buzzer: str = "D18"  # empty: no buzzer
    offline_after_s: int = 600  # a stored tap shows "offline" when the hub was not reached for this long (0 = never)

    def __post_init__(self) -> None:
        _one_of("feedback.driver", self.driver, FEEDBACK_DRIVERS)
        for name in ("green", "amber", "red", "buzzer"):
            _pin_name(f"feedback.{name}", getattr(self, name))
        _need(isinstance(self.offline_after_s, int) and self.offline_after_s >= 0,
              f"feedback.offline_after_s: expected an integer >= 0, got {self.offline_after_s!r}")

    def leds(self) -> dict[str, str]:
        return {colour: pin for colour in ("green", "amber", "red") if (pin := getattr(self, colour))}

    def bus(self) -> str:
        return "GPIO " + ", ".join(f"{k} {v}" for k, v in {**self.leds(), "buzzer": self.buzzer}.items() if v)


@dataclass(frozen=True, slots=True, kw_only=True)
class SecurityConfig:
    """[security]: OSCORE and who may do what (edge/security.py, SECURITY.md)."""

    oscore: bool = False  # refuse unprotected sync, read and submit requests (4.01 OSCORE_REQUIRED)
    hub_key: str = ""  # hub public key hex, if not pinned by `jejak enroll` (data_dir/hub.pin wins)
    peer_keys: tuple[str, ...] = ()  # "<pubkey hex>" or "coap://host:port <pubkey hex>" of peers
    phone_keys: tuple[str, ...] = ()  # Ed25519 public keys (hex) of phones allowed to hold a context
    submitters: tuple[str, ...] = ()  # device ids (hex) allowed to POST /submit when oscore is on
    read: tuple[str, ...] = ("*:self",)  # "<peer id|*>:<log id|*|self|own>" rules; default: a peer reads its own
    revocations_interval_s: float = 300.0  # how often the hub's signed revocation list is fetched

    def __post_init__(self) -> None:
        for entry in (*self.peer_keys, *self.phone_keys, *self.submitters):
            hexpart = entry.rpartition(" ")[2]
            _need(all(c in "0123456789abcdefABCDEF" for c in hexpart) and len(hexpart) in (32, 64),
                  f"security: expected hex keys or device ids, got {entry[:80]!r}")
        for rule in self.read:
            _need(":" in rule, f"security.read: expected \"<peer>:<log>\", got {rule!r}")
        _need(not self.hub_key or (len(self.hub_key) == 64 and all(c in "0123456789abcdefABCDEF" for c in self.hub_key)),
              f"security.hub_key: expected the hub's public key as 64 hex digits, got {self.hub_key[:80]!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class LogConfig:
    level: str = "INFO"
    format: str = "json"

    def __post_init__(self) -> None:
        _need(self.level.upper() in ("DEBUG", "INFO", "WARNING", "ERROR"),
              f"log.level: expected DEBUG, INFO, WARNING or ERROR, got {self.level!r}")
        _one_of("log.format", self.format, LOG_FORMATS)


@dataclass(frozen=True, slots=True, kw_only=True)
class EdgeConfig:
    site: str = "dapur-demo"
    name: str = ""
    data_dir: str = field(default_factory=_default_data_dir)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    coap: CoapConfig = field(default_factory=CoapConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    hub: HubConfig = field(default_factory=HubConfig)
    sync: SyncConfig = field(default_factory=SyncConfig)
    limits: Limits = field(default_factory=Limits)
    sim: SimConfig = field(default_factory=SimConfig)
    reader: ReaderConfig = field(default_factory=ReaderConfig)
    feedback: FeedbackConfig = field(default_factory=FeedbackConfig)
    sensors: tuple[SensorConfig, ...] = (SensorConfig(name="probe-1", kind="probe", interval_s=300),)
    log: LogConfig = field(default_factory=LogConfig)
    security: SecurityConfig = field(default_factory=SecurityConfig)

    def __post_init__(self) -> None:
        _need(isinstance(self.site, str) and 0 < len(self.site) <= 128,
              f"site: expected a site id of 1 to 128 characters, got {self.site!r}")
        _need(isinstance(self.data_dir, str) and bool(self.data_dir.strip()),
              "data_dir: expected a directory, got nothing (the store would be written where the daemon starts)")
        names = [s.name for s in self.sensors]
        _need(len(names) == len(set(names)), f"sensors: names must be unique, got {names}")

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir).expanduser()


def from_dict(data: dict[str, Any]) -> EdgeConfig:
    """Build the config tree from parsed TOML; unknown keys and values of the wrong type are refused, missing
    ones take defaults. [[sensor]] reads better in a file; [[sensors]] is the field's name: either is taken."""
    return build(EdgeConfig, data, ConfigError, aliases={"sensor": "sensors"})


def load(path: str | os.PathLike[str] | None = None) -> EdgeConfig:
    """Read the TOML config at `path`, or return the defaults when there is none."""
    if path is None:
        return EdgeConfig()
    return load_settings(path, from_dict, ConfigError, lambda config: (("data_dir", config.data_path),))


def replace(config: EdgeConfig, **changes: Any) -> EdgeConfig:
    """A copy with top-level fields or whole sections replaced (tests, command-line overrides)."""
    return dataclasses.replace(config, **changes)
