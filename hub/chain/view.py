"""The chain's health for the dashboard, read from the store a page of devices at a time."""

from __future__ import annotations

from typing import Any

from ..paging import DEFAULT_LIMIT, device_page
from ..service import Hub
from ..store import DeviceStanding


def standing_json(standing: DeviceStanding, now: int) -> dict[str, Any]:
    """One device's row: its log's length and head, last record time, last arrival, sync lag and idle time."""
    state, arrived, latest = standing.state, standing.arrived_at, standing.last_time
    item = standing.device.to_json()
    item.update({"length": state.length if state else 0, "head": state.head.hex() if state else None,
                 "last_time": latest, "last_seen": arrived,
                 "sync_lag_s": arrived - latest if arrived is not None and latest is not None else None,
                 "idle_s": now - arrived if arrived is not None else None,
                 "damaged": list(standing.damaged),  # seqs awaiting restore
                 "counting": standing.counting})
    return item


def chain_health(hub: Hub, now: int, *, after: bytes = b"", limit: int = DEFAULT_LIMIT) -> dict[str, Any]:
    """The log's size, latest checkpoint, forks and refusals by code, the records by kind and the device count,
    with one page of devices: up to `limit` after device id `after`, and `next` to ask after for the following
    page (None on the last). Everything comes from the store, so it is the same after a restart. After an upgrade
    from a store that did not keep the figures, `figures_behind` records are still to be counted into them: until
    it is 0 the records by kind fall short of the log, and a device whose records are not all counted yet is
    marked `counting` (its figures are those of its records counted so far)."""
    store = hub.store
    behind = store.figures_from()  # read first: once it is 0, every figure read after it is whole
    page = device_page(store, after=after, limit=limit)
    counters = store.counters()
    refused = {k[len("refused_"):]: v for k, v in counters.items() if k.startswith("refused_")}
    cp = hub.latest_checkpoint()
    return {"now": now, "hub": hub.hub_id.hex(), "size": len(hub.tree), "checkpoint": cp.to_json() if cp else None,
            "forks": len(store.forks()), "refused": refused, "refused_total": sum(refused.values()),
            "duplicates": counters.get("duplicates", 0), "device_count": store.device_count(),
            "records_by_kind": store.record_kinds(), "figures_behind": behind,
            "signing_stopped": hub.signing_stopped.to_dict() if hub.signing_stopped is not None else None,
            "devices": [standing_json(s, now) for s in page.standings], "next": page.next,
            "clocks_off": [{"device": d.hex(), "offset_s": c.offset_s, "measured_at": c.measured_at}
                           for d, c in hub.device_clocks.off()]}
