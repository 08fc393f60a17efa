"""The signed enrollment messages edge and hub exchange: request, grant and revocation list."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from . import cbor
from .cose import ALG_EDDSA, HDR_ALG, HDR_KID, Signer, parse_sign1, sign1
from .errors import MalformedRecord, VerificationError
from .record import device_id_for

# Each message signs under its own external AAD, so a signature made for one can never pass as another.
ENROLL_AAD = b"jejak/enroll/v1"
GRANT_AAD = b"jejak/enroll-grant/v1"
REVOCATIONS_AAD = b"jejak/revocations/v1"


@dataclass(frozen=True, slots=True, kw_only=True)
class EnrollRequest:
    """A device's signed request to join: proves it holds the key it names."""

    pubkey: bytes
    site: str
    role: str
    name: str
    time: int
    hub: bytes  # the hub id the device means to join (from the provisioning QR code)

    @property
    def device_id(self) -> bytes:
        return device_id_for(self.pubkey)


@dataclass(frozen=True, slots=True, kw_only=True)
class Grant:
    """The hub's signed answer to an enrollment: who it is, whom it enrolled, and what it was asked."""

    hub_id: bytes
    device_id: bytes
    request_digest: bytes
    status: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RevocationList:
    """The hub's signed list of revoked devices: its time, and per device the first refused seq."""

    hub_id: bytes
    time: int
    points: dict[bytes, int]


def _uint(x: object) -> bool:
    return type(x) is int and x >= 0  # never true/false, never negative (FORMAT.md §6.1)


def _id(x: object, size: int = 16) -> bool:
    return isinstance(x, bytes) and len(x) == size


def _sign(signer: Signer, payload: bytes, aad: bytes) -> bytes:
    return sign1(signer, headers={HDR_ALG: ALG_EDDSA}, unprotected={HDR_KID: device_id_for(signer.public_key)},
                 payload=payload, external_aad=aad)


def make_enroll_request(signer: Signer, *, site: str, role: str, name: str, time: int, hub_id: bytes) -> bytes:
    return _sign(signer, cbor.encode([signer.public_key, site, role, name, time, hub_id]), ENROLL_AAD)


def read_enroll_request(data: bytes) -> EnrollRequest:
    """A request whose signature verifies with the key it names; anything else raises a LedgerError."""
    msg = parse_sign1(data, what="enrollment request")
    item = cbor.decode(msg.payload or b"", what="enrollment payload")
    if (not isinstance(item, list) or len(item) != 6 or not _id(item[0], 32)
            or not all(isinstance(x, str) for x in item[1:4]) or not _uint(item[4]) or not _id(item[5])):
        raise MalformedRecord("enrollment request: expected [pubkey, site, role, name, time, hub id]")
    msg.verify(item[0], ENROLL_AAD, where="enrollment request")
    return EnrollRequest(pubkey=item[0], site=item[1], role=item[2], name=item[3], time=item[4], hub=item[5])


def make_grant(signer: Signer, request: bytes, status: str) -> bytes:
    """The hub's grant for a verified enrollment request, binding the request's digest and the device's status."""
    device = read_enroll_request(request).device_id
    hub_id = device_id_for(signer.public_key)
    return _sign(signer, cbor.encode([hub_id, device, hashlib.sha256(request).digest(), status]), GRANT_AAD)


def read_grant(raw: bytes, hub_key: bytes) -> Grant:
    """Verify a grant against the hub key pinned from the QR code; anything else raises."""
    msg = parse_sign1(raw, what="enrollment grant")
    msg.verify(hub_key, GRANT_AAD, where="enrollment grant")
    item = cbor.decode(msg.payload or b"", what="enrollment grant")
    if not (isinstance(item, list) and len(item) == 4 and _id(item[0]) and _id(item[1]) and _id(item[2], 32)
            and isinstance(item[3], str)):
        raise MalformedRecord("enrollment grant: expected [hub id, device id, request digest, status]")
    if item[0] != device_id_for(hub_key):
        raise VerificationError("enrollment grant names another hub than the pinned key")
    return Grant(hub_id=item[0], device_id=item[1], request_digest=item[2], status=item[3])


def make_revocations(signer: Signer, *, time: int, revoked: Iterable[tuple[bytes, int]]) -> bytes:
    """The signed list of (device id, first refused seq), sorted so equal lists sign equal bytes."""
    entries = sorted([device, seq] for device, seq in revoked)
    return _sign(signer, cbor.encode([device_id_for(signer.public_key), time, entries]), REVOCATIONS_AAD)


def read_revocations(raw: bytes, hub_key: bytes) -> RevocationList:
    """A revocation list signed by the pinned hub key; anything else raises."""
    msg = parse_sign1(raw, what="revocation list")
    msg.verify(hub_key, REVOCATIONS_AAD, where="revocation list")
    item = cbor.decode(msg.payload or b"", what="revocation list")
    if not (isinstance(item, list) and len(item) == 3 and _id(item[0]) and _uint(item[1])
            and isinstance(item[2], list)):
        raise MalformedRecord("revocation list: expected [hub id, time, [[device, from seq], ...]]")
    if item[0] != device_id_for(hub_key):
        raise VerificationError("revocation list names another hub than the pinned key")
    points: dict[bytes, int] = {}
    last = b""
    for entry in item[2]:
        if not (isinstance(entry, list) and len(entry) == 2 and _id(entry[0]) and _uint(entry[1])):
            raise MalformedRecord("revocation list: an entry is not [16-byte device id, seq]")
        if entry[0] <= last:  # one entry a device, sorted: a repeated device would shadow its point
            raise MalformedRecord("revocation list: entries must be sorted by device id, one a device")
        points[entry[0]] = entry[1]
        last = entry[0]
    return RevocationList(hub_id=item[0], time=item[1], points=points)
