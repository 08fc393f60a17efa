"""Read model of the chain for the dashboard: when each device's records last arrived, and how late."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from ledger import Record

from ..service import Hub


class ChainView:
    """Fed under the read models' lock with every accepted batch; `health` joins it with the store."""

    def __init__(self) -> None:
        self.last_arrival: dict[str, int] = {}
        self.last_time: dict[str, int] = {}
        self.records_by_kind: dict[str, int] = defaultdict(int)

    def take(self, records: Sequence[Record], arrived_at: int) -> None:
        for rec in records:
            self.records_by_kind[rec.kind] += 1
            self.last_arrival[rec.device] = arrived_at
            self.last_time[rec.device] = max(self.last_time.get(rec.device, rec.time), rec.time)

    def health(self, hub: Hub, now: int, arrivals: dict[str, int], times: dict[str, int]) -> dict[str, Any]:
        """Each device's log length, head, last record time, last arrival and sync lag; refusals by code.
        `arrivals` and `times` are copies taken under the lock (the store is read outside it)."""
        store = hub.store
        devices = []
        damaged = store.damaged()
        for d in store.devices():
            state = store.chain_state(d.device_id)
            dev = d.device_id.hex()
            item = d.to_json()
            arrived = arrivals.get(dev)
            item.update({"length": state.length if state else 0, "head": state.head.hex() if state else None,
                         "last_time": times.get(dev), "last_seen": arrived,
                         "sync_lag_s": (arrived - times[dev]) if arrived is not None and dev in times else None,
                         "idle_s": (now - arrived) if arrived is not None else None,
                         "damaged": damaged.get(d.device_id, [])})  # seqs awaiting restore
            devices.append(item)
        status = hub.status()
        counters = status["counters"]
        refused = {k[len("refused_"):]: v for k, v in counters.items() if k.startswith("refused_")}
        return {"now": now, "hub": status["hub"], "size": status["size"], "checkpoint": status["checkpoint"],
                "forks": status["forks"], "refused": refused, "refused_total": sum(refused.values()),
                "duplicates": counters.get("duplicates", 0), "devices": devices,
                "records_by_kind": dict(self.records_by_kind)}
