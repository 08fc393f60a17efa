"""The hub's own attestation log: data that arrived unsigned, signed by the hub as received, when and from whom.

The log is signed with the hub's key (records use their own domain-separated signing input, so a record
signature is never a checkpoint signature), which makes its device id `device_id_for(hub key)`: an auditor
holding only a bundle can see that these records were made by the hub whose checkpoints the bundle carries,
and that they are attestations ("attest" records), never a device's own signed observations.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ledger import Record
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
        if self.kind not in KINDS or self.kind in ("key", "witness", "attest", "authority"):
            raise ValueError(f"attestation kind: expected an observation kind, got {self.kind!r}")

    def body(self) -> dict[str, Any]:
        return {"path": self.path, "sender": self.sender, "kind": self.kind, "data": self.data,
                "received_at": self.received_at}


def digest(raw: bytes) -> str:
    """SHA-256 hex of the bytes as they arrived, kept in the attested data so the original can be matched."""
    return hashlib.sha256(raw).hexdigest()


class Attestor:
    """Signs attestations into the hub's own log (the hub is its single writer; see Hub.append_own)."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    @property
    def device_id(self) -> bytes:
        return self.hub.hub_id

    def start(self) -> None:
        """List the hub as a device of itself (once), so its own log shows among the devices; the hub keeps
        that log from its first start and is its only writer."""
        hub = self.hub
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

    def attest(self, items: Sequence[Attestation]) -> list[Record]:
        """Sign one "attest" record per item and merge them into the hub's log in one commit."""
        if not items:
            return []
        return self.hub.append_own("attest", [item.body() for item in items])
