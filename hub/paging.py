"""Pages of the hub's devices in device id order (`?limit=N&after=<device id>`), read from the store a page at a
time: what every answer that lists devices shares, so a hub with 50,000 devices never builds one answer of all."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from coap_server.params import count, device, parse

from .store import DeviceStanding, HubStore

DEFAULT_LIMIT = 500
MAX_LIMIT = 5000
# ?limit=N (devices per page) and ?after=<device id>: the page after that device, in device id order.
QUERY = (count("limit", MAX_LIMIT, lo=1), device("after"))
# The markets' held values come a page at a time by position (?offset=&limit=, hub/markets/routes.py): the list
# is kept in memory in the order the values were held, and a page is a slice of it.
HELD_LIMIT = 1000


@dataclass(frozen=True, slots=True, kw_only=True)
class DevicePage:
    """Up to `limit` devices with their logs' standing, and `next`: the device id to pass as `after` for the
    following page (None on the last)."""

    standings: list[DeviceStanding]
    next: str | None


def page_query(pairs: Iterable[tuple[str, str]]) -> tuple[bytes, int]:
    """`after` (b"": the first page) and `limit` from a request's query; a bad or repeated one is BAD_REQUEST."""
    q = parse(pairs, QUERY, strict=False)
    return q.get("after", b""), q.get("limit", DEFAULT_LIMIT)


def device_page(store: HubStore, *, after: bytes = b"", limit: int = DEFAULT_LIMIT) -> DevicePage:
    """One page of devices from the store: one read of `limit` + 1 standings tells whether another follows."""
    found = store.standings(after, limit + 1)
    page = found[:limit]
    return DevicePage(standings=page, next=page[-1].device.device_id.hex() if len(found) > limit else None)
