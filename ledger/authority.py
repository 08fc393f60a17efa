"""The hub's own log: its signed decisions about devices (and attestations), read alike by hub, edges and auditors."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .bodies import AUTHORITY_FIELDS
from .chain import ChainBuilder, ChainState
from .cose import Signer
from .errors import BrokenChain, UnknownKey
from .record import Record


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """One entry of the hub's authority log (FORMAT.md §6.2), as the body of an `authority` record says it."""

    action: str  # approve, withdraw, revoke, rotate
    device_id: bytes
    from_seq: int
    key: bytes | None = None  # approve: the genesis key admitted; rotate: the key rotated to
    site: str | None = None
    role: str | None = None

    def __post_init__(self) -> None:
        if self.action not in AUTHORITY_FIELDS:
            raise ValueError(f"authority action: expected one of {sorted(AUTHORITY_FIELDS)}, got {self.action!r}")

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"action": self.action, "device": self.device_id, "from_seq": self.from_seq}
        extra = {"key": self.key, "site": self.site, "role": self.role}
        out.update({name: extra[name] for name in AUTHORITY_FIELDS[self.action]})
        return out

    @classmethod
    def of(cls, record: Record) -> Decision:
        body = record.body
        if record.kind != "authority" or body is None:
            raise BrokenChain(f"authority log holds a {record.kind} record where a decision belongs",
                              where=record.where)
        return cls(action=body["action"], device_id=body["device"], from_seq=body["from_seq"],
                   key=body.get("key"), site=body.get("site"), role=body.get("role"))


@dataclass(slots=True, kw_only=True)
class Standing:
    """What the authority log says of one device so far."""

    device_id: bytes
    key: bytes | None = None  # the genesis key the hub approved
    site: str | None = None
    role: str | None = None
    approved_from: int | None = None
    revoked_from: int | None = None  # the smallest seq withdrawn or revoked: records from it on are refused
    rotations: dict[int, bytes] = field(default_factory=dict)  # seq of the key record -> key it names


@dataclass(slots=True, kw_only=True)
class Authority:
    """The hub's decisions, folded in log order. A revocation or withdrawal is never lifted: the smallest
    seq any of them names is the device's revocation point (a key once revoked stays revoked; re-admit a
    device by enrolling a new key, which is a new device id)."""

    hub_id: bytes
    records: list[Record] = field(default_factory=list)
    devices: dict[bytes, Standing] = field(default_factory=dict)

    @classmethod
    def of(cls, hub_id: bytes, records: Iterable[Record]) -> Authority:
        """Fold verified records of the hub's log (genesis first; its key record is not a decision)."""
        authority = cls(hub_id=hub_id)
        for rec in records:
            authority.apply(rec)
        return authority

    @property
    def head(self) -> tuple[int, bytes]:
        """(length, id of the last entry): what a checkpoint commits to."""
        return (len(self.records), self.records[-1].id) if self.records else (0, bytes(32))

    def apply(self, record: Record) -> None:
        """Fold the next record of the hub's log: its genesis, attestations and decisions, in seq order."""
        if record.device_id != self.hub_id or record.seq != len(self.records):
            raise BrokenChain(f"expected seq {len(self.records)} of the hub's log {self.hub_id.hex()}",
                              where=record.where)
        if record.seq > 0 and record.kind not in ("authority", "attest"):
            raise BrokenChain(f"the hub's log holds only its decisions and attestations after its genesis, not "
                              f"a {record.kind} record (its key never rotates)", where=record.where)
        self.records.append(record)
        if record.kind != "authority":
            return  # the genesis key record, or an attestation
        decision = Decision.of(record)
        standing = self.devices.setdefault(decision.device_id, Standing(device_id=decision.device_id))
        if decision.action == "approve":
            if standing.key is None:
                standing.key, standing.approved_from = decision.key, decision.from_seq
            standing.site, standing.role = decision.site, decision.role
        elif decision.action == "rotate":
            assert decision.key is not None  # the body schema requires it
            standing.rotations[decision.from_seq] = decision.key
        else:
            point = standing.revoked_from
            standing.revoked_from = decision.from_seq if point is None else min(point, decision.from_seq)

    def standing(self, device_id: bytes) -> Standing:
        """The device's standing; a device the hub never approved is UNKNOWN_KEY."""
        standing = self.devices.get(device_id)
        if standing is None or standing.key is None:
            raise UnknownKey(f"device {device_id.hex()} has no approval in the hub's authority log",
                             hint="the hub approves a device before it accepts its records")
        return standing

    def revoked_from(self, device_id: bytes) -> int | None:
        standing = self.devices.get(device_id)
        return standing.revoked_from if standing is not None else None

    def revocations(self) -> list[tuple[bytes, int]]:
        """(device id, first refused seq) for every withdrawn or revoked device: the edges' revocation list."""
        return sorted((d, s.revoked_from) for d, s in self.devices.items() if s.revoked_from is not None)


class AuthorityWriter:
    """The one writer of the hub's own log: decisions and attestations, signed with the hub key."""

    def __init__(self, signer: Signer, *, clock: Callable[[], int], records: list[Record], boot: int = 0) -> None:
        state = None
        if records:
            last = records[-1]
            state = ChainState(device_id=last.device_id, length=last.seq + 1, head=last.id,
                               key=signer.public_key, boot=last.boot, time=last.time)
        self._builder = ChainBuilder(signer, clock=clock, boot=max(boot, records[-1].boot) if records else boot,
                                     state=state)
        self.authority = Authority.of(self._builder.device_id, records)

    def genesis(self) -> Record:
        """The log's first record: a key record naming the hub key, so the log's device id is the hub id."""
        record = self._builder.genesis()
        self.authority.apply(record)
        return record

    @property
    def state(self) -> ChainState:
        return self._builder.state

    def decide(self, decision: Decision) -> Record:
        return self.append("authority", decision.body())

    def append(self, kind: str, body: dict[str, Any]) -> Record:
        record = self._builder.append(kind, body)
        self.authority.apply(record)
        return record

    def follow(self, record: Record) -> None:
        """Fold `record`, the log's next record as this hub signed it before (its lost tail, taken back)."""
        self._builder.follow(record)
        self.authority.apply(record)
