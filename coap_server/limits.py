"""How many connections or streams a server holds at once, in all and from one address, and the refusals counted.

A server that takes every connection offered gives its file descriptors, memory and event-loop time to whoever
opens the most: one host on the LAN that opens connections and never closes them locks out the readers, the
edges and the dashboard. `Slots` is the count both servers keep of what they hold (CoAP over TCP connections,
HTTP connections, live event streams): a place is taken when one opens and given back when it ends, and one
over the total or over an address's share is refused. `Refusals` counts refusals (these, and the HTTP bodies
too slow to wait for) by reason into a tally the server's /metrics shows, and logs them at most once per
`LOG_EVERY_S`, with how many there were since the last line, so a flood of refusals is not a flood of log.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass

LOG_EVERY_S = 60.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Cap:
    """At most `total` at once, and at most `per_address` from any one address (an address in `shared` counts
    only towards the total: a reverse proxy on the same host speaks for many clients)."""

    total: int
    per_address: int
    shared: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if self.total < 1:
            raise ValueError(f"total: expected at least 1, got {self.total}")
        if self.per_address < 1:
            raise ValueError(f"per_address: expected at least 1, got {self.per_address}")


class Refusals:
    """Refusals of one kind (`what`: "CoAP-TCP connections"): counted, tallied in `tally` under their reason (by
    default `what` in snake case: "coap_tcp_connections"), and logged at most once per LOG_EVERY_S, naming the
    `setting` to change."""

    def __init__(self, what: str, *, log: logging.Logger, clock: Callable[[], float] = time.monotonic,
                 setting: str = "", tally: MutableMapping[str, int] | None = None) -> None:
        self.what, self.log, self.clock, self.setting = what, log, clock, setting
        self.reason = what.lower().replace(" ", "_").replace("-", "_")
        self.tally: MutableMapping[str, int] = {} if tally is None else tally
        self.count = 0  # since the server started
        self._unlogged = 0  # refusals since the last log line
        self._logged_at: float | None = None

    def refuse(self, address: str, why: str, reason: str = "") -> None:
        reason = reason or self.reason
        self.tally[reason] = self.tally.get(reason, 0) + 1
        self.count += 1
        self._unlogged += 1
        now = self.clock()
        if self._logged_at is not None and now - self._logged_at < LOG_EVERY_S:
            return
        since = f"in the last {LOG_EVERY_S:.0f} s" if self._logged_at is not None else "since the start"
        self.log.warning("refused %d %s %s (the latest from %s: %s)%s", self._unlogged, self.what, since, address,
                         why, f"; raise {self.setting} if these are honest clients" if self.setting else "")
        self._logged_at, self._unlogged = now, 0


class Slots:
    """The places `cap` allows, taken by address; `what` names them ("CoAP-TCP connections"), and its refusals
    in the log and in `tally` (`Refusals`: past an address's share, the reason ends in "_per_address")."""

    def __init__(self, cap: Cap, what: str, *, log: logging.Logger, clock: Callable[[], float] = time.monotonic,
                 setting: str = "", tally: MutableMapping[str, int] | None = None) -> None:
        self.cap, self.what = cap, what
        self.refusals = Refusals(what, log=log, clock=clock, setting=setting, tally=tally)
        self.held = 0
        self._by_address: dict[str, int] = {}

    @property
    def refused(self) -> int:
        """Refusals since the server started."""
        return self.refusals.count

    def take(self, address: str) -> str | None:
        """Take a place for `address`; None if taken, else why it was refused (counted and maybe logged)."""
        mine = self._by_address.get(address, 0)
        if self.held >= self.cap.total:
            why, reason = f"{self.held} {self.what} open, at most {self.cap.total}", ""
        elif mine >= self.cap.per_address and address not in self.cap.shared:
            why = f"{mine} {self.what} open from {address}, at most {self.cap.per_address} from one address"
            reason = f"{self.refusals.reason}_per_address"
        else:
            self.held += 1
            self._by_address[address] = mine + 1
            return None
        self.refusals.refuse(address, why, reason)
        return why

    def give(self, address: str) -> None:
        """Give back a place `take` gave `address`."""
        mine = self._by_address.get(address, 0)
        if mine <= 0:
            return
        self.held -= 1
        if mine == 1:
            del self._by_address[address]
        else:
            self._by_address[address] = mine - 1

    def held_by(self, address: str) -> int:
        return self._by_address.get(address, 0)


__all__ = ["LOG_EVERY_S", "Cap", "Refusals", "Slots"]
