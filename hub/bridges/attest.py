"""The hub's own attestation log: data that arrived unsigned, signed by the hub as received, when and from whom.

The log is signed with the hub's key (records use their own domain-separated signing input, so a record
signature is never a checkpoint signature), which makes its device id `device_id_for(hub key)`: an auditor
holding only a bundle can see that these records were made by the hub whose checkpoints the bundle carries,
and that they are attestations ("attest" records), never a device's own signed observations.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ledger import ChainBuilder, Record
from ledger.bodies import KINDS
from ledger.enroll import make_enroll_request

from ..service import Hub, HubError

log = logging.getLogger("jejak.hub.bridges")

ROLE = "hub-attestor"


@dataclass(frozen=True, slots=True, kw_only=True)
class Attestation:
    """What the hub attests: the data as received, where it came in, and from whom."""

    path: str  # "http:/ingest", "http:/api/sync_gateway_data", "mqtt:pasar/data"
    sender: str
    kind: str  # the kind the data would have had if a device had signed it
    data: dict[str, Any]
    received_at: int

    def __post_init__(self) -> None:
        if self.kind not in KINDS or self.kind in ("key", "witness", "attest"):
            raise ValueError(f"attestation kind: expected an observation kind, got {self.kind!r}")

    def body(self) -> dict[str, Any]:
        return {"path": self.path, "sender": self.sender, "kind": self.kind, "data": self.data,
                "received_at": self.received_at}


def digest(raw: bytes) -> str:
    """SHA-256 hex of the bytes as they arrived, kept in the attested data so the original can be matched."""
    return hashlib.sha256(raw).hexdigest()


class Attestor:
    """Single writer of the hub's attestation log; thread-safe (HTTP handlers and the MQTT thread share it)."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self._lock = threading.Lock()
        self._builder: ChainBuilder | None = None

    @property
    def device_id(self) -> bytes:
        return self.hub.hub_id

    def start(self) -> None:
        """Enroll the hub as a device of itself (once), approve it, and open its log (genesis if new)."""
        hub = self.hub
        with self._lock:
            device = hub.store.get_device(hub.hub_id)
            if device is None:
                request = make_enroll_request(hub.signer, site="hub", role=ROLE, name="hub attestations",
                                              time=hub.clock(), hub_id=hub.hub_id)
                device = hub.enroll(request)
            if device.status == "pending":
                device = hub.approve(hub.hub_id)
            if device.status != "active":
                raise HubError(f"the hub's attestation log is {device.status}; unsigned data cannot be attested",
                               hint="an operator must resolve the hub's own log first")
            self._open()

    def _open(self) -> None:
        hub = self.hub
        state = hub.store.chain_state(hub.hub_id)
        # Each start is a new boot of this log: boot counters never go backwards.
        self._builder = ChainBuilder(hub.signer, clock=hub.clock, boot=(state.boot + 1) if state else 0,
                                     state=state)
        if state is None:
            self._ingest([self._builder.genesis()])

    def attest(self, items: Sequence[Attestation]) -> list[Record]:
        """Sign one "attest" record per item and merge them into the hub's log in one commit."""
        if not items:
            return []
        with self._lock:
            if self._builder is None:
                raise HubError("attestor not started", hint="call start() first")
            records = [self._builder.append("attest", item.body()) for item in items]
            try:
                self._ingest(records)
            except Exception:
                self._open()  # the builder ran ahead of the store: go back to what the store holds
                raise
        return records

    def _ingest(self, records: list[Record]) -> None:
        result = self.hub.ingest(self.hub.hub_id, [r.raw for r in records])
        if result.accepted != len(records):
            problem = result.problem or {}
            raise HubError(f"attestation log refused {len(records) - result.accepted} of {len(records)} "
                           f"records: {problem.get('message', 'unknown reason')}")
