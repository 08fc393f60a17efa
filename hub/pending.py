"""Bounds on the requests that wait for an operator (enrollments, seed 2's registrations): how many in all, from one
address and from one network, and how long one waits before it is dropped unanswered."""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from ledger.errors import CodedError

WEEK_S = 7 * 86400


class TooManyPending(CodedError):
    """An enrollment or seed-2 registration while as many devices as the hub's setting allows already wait for
    an operator's approval: anyone may ask to be enrolled, so without a bound a sender making up keys would fill
    the store and the device list."""

    code = "TOO_MANY_PENDING"
    coap = "5.03"
    http = 503
    retry_after_s = 600


class TooManyPendingFromSource(CodedError):
    """An enrollment or seed-2 registration from an address (or its network) whose requests already fill the
    places one source may hold: one host making up keys would otherwise take every place in `pending_devices`
    and keep every other device from enrolling."""

    code = "TOO_MANY_PENDING_FROM_SOURCE"
    coap = "4.29"
    http = 429
    retry_after_s = 600


def address_of(address: str) -> str:
    """An address as it is counted and shown: an IPv4 address mapped into IPv6 is its IPv4 one; what is not an
    address is kept as its first 64 characters."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address[:64]
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def network_of(address: str) -> str:
    """The network an address is counted in: its /24 (IPv4) or /64 (IPv6, where one host may take any address
    of its /64); what is not an address is its own network."""
    shown = address_of(address)
    try:
        ip = ipaddress.ip_address(shown)
    except ValueError:
        return shown
    return str(ipaddress.ip_network(f"{ip}/{24 if ip.version == 4 else 64}", strict=False))


def sent_from(source: str) -> Callable[[str], bool]:
    """Whether a request's source is within `source`: an address (that address alone) or a network in CIDR form
    (`10.1.2.0/24`, `fd00::/64`), as an operator names a flood to reject; ValueError for anything else."""
    network = ipaddress.ip_network(address_of(source.strip()) if "/" not in source else source.strip(), strict=False)

    def within(sent: str) -> bool:
        try:
            return ipaddress.ip_address(address_of(sent)) in network
        except ValueError:  # kept as text: not an address, so in no network
            return False
    return within


@dataclass(frozen=True, slots=True, kw_only=True)
class PendingLimits:
    """How many requests may wait in all (`total`), from one address (`per_address`) and from one network
    (`per_network`, a /24 or /64), and for how long (`expire_s`) before they are dropped; `settings` is the
    table their settings are in ("" for the hub's, "[bridges] " for the bridges')."""

    total: int = 1000
    per_address: int = 16
    per_network: int = 64
    expire_s: int = WEEK_S
    settings: str = ""

    def __post_init__(self) -> None:
        for name in ("total", "per_address", "per_network", "expire_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"pending limits: {name} expected > 0, got {getattr(self, name)}")


@dataclass(slots=True)
class Waiting:
    """The requests waiting now, counted in all and by source address and network (the source "" is unknown:
    a request made on the hub itself, or stored before sources were kept, counts in the total only)."""

    total: int = 0
    by_address: Counter[str] = field(default_factory=Counter)
    by_network: Counter[str] = field(default_factory=Counter)

    @classmethod
    def of(cls, sources: Iterable[str]) -> Waiting:
        waiting = cls()
        for source in sources:
            waiting.add(source)
        return waiting

    def add(self, source: str) -> None:
        self.total += 1
        if source:
            self.by_address[address_of(source)] += 1
            self.by_network[network_of(source)] += 1

    def check(self, source: str, limits: PendingLimits, what: str) -> None:
        """TOO_MANY_PENDING_FROM_SOURCE when `source` (or its network) already has as many requests waiting as
        `limits` lets one hold, TOO_MANY_PENDING when the total is reached."""
        fix = ("an operator approves the waiting ones or rejects them (jejak devices list shows each one's source; "
               "jejak devices reject --source ADDRESS_OR_NETWORK), or ")
        if source:
            address, network = address_of(source), network_of(source)
            for place, held, most, setting in ((address, self.by_address[address], limits.per_address,
                                                "pending_per_address"),
                                               (network, self.by_network[network], limits.per_network,
                                                "pending_per_network")):
                if held >= most:
                    raise TooManyPendingFromSource(
                        f"{held} {what} from {place} wait for an operator's approval, at most {most} "
                        f"({limits.settings}{setting}); unapproved ones are dropped after {limits.expire_s} s "
                        f"({limits.settings}pending_expire_s)",
                        hint=f"{fix}raises {limits.settings}{setting}")
        if self.total >= limits.total:
            raise TooManyPending(f"{self.total} {what} wait for an operator's approval, at most {limits.total} "
                                 f"({limits.settings}pending_devices); try again later",
                                 hint=f"{fix}raises {limits.settings}pending_devices")


def expired(enrolled_at: int, now: int, limits: PendingLimits) -> bool:
    """Whether a request made at `enrolled_at` has waited past `limits.expire_s` at `now`."""
    return now - enrolled_at >= limits.expire_s
