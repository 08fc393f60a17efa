"""Signed checkpoints (RFC 9162 tree heads as COSE_Sign1) and COSE Receipts of inclusion."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from . import cbor
from .cose import ALG_EDDSA, HDR_ALG, HDR_KID, Signer, parse_sign1, sig_structure, sign1, verify_signature
from .errors import BadCheckpoint, BadProof, MalformedRecord
from .merkle import leaf_hash, root_from_inclusion, verify_consistency
from .record import device_id_for

# draft-ietf-cose-merkle-tree-proofs: verifiable data structure (395) and proofs (396).
HDR_VDS = 395
HDR_VDP = 396
VDS_RFC9162_SHA256 = 1
VDP_INCLUSION = -1
HDR_CWT_CLAIMS = 15
CWT_ISS = 1
CWT_IAT = 6
# Private-use labels (RFC 9052 §11: below -65536) carrying the tree size and the head of the hub's authority
# log (ledger.authority) under the signature, so that a bundle cannot drop the hub's latest decisions.
HDR_TREE_SIZE = -65537
HDR_AUTHORITY = -65538
_LABELS = frozenset({HDR_ALG, HDR_KID, HDR_CWT_CLAIMS, HDR_VDS, HDR_TREE_SIZE})
# Checkpoints sign with an empty external AAD so that receipts verify with off-the-shelf COSE Receipt tools;
# they cannot be confused with records, whose protected header is exactly {1: -8}.
CHECKPOINT_AAD = b""


@dataclass(frozen=True, slots=True, kw_only=True)
class Checkpoint:
    """A hub's signed statement: "my log of `tree_size` records has root `root`, as of `time`"."""

    hub_id: bytes
    tree_size: int
    root: bytes
    time: int
    protected: bytes
    signature: bytes
    raw: bytes
    authority: tuple[int, bytes] | None = None  # (length, head id) of the hub's authority log

    def verify(self, hub_key: bytes) -> None:
        if device_id_for(hub_key) != self.hub_id:
            raise BadCheckpoint(f"checkpoint names hub {self.hub_id.hex()}, but the key given is another hub's")
        try:
            verify_signature(hub_key, self.signature, _signed(self.protected, self.root),
                             where=f"checkpoint size {self.tree_size}")
        except Exception as exc:
            raise BadCheckpoint(f"checkpoint signature does not verify: {exc}",
                                where=f"checkpoint size {self.tree_size}") from None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"hub": self.hub_id.hex(), "tree_size": self.tree_size, "root": self.root.hex(),
                               "time": self.time, "cose": self.raw.hex()}
        if self.authority is not None:
            out["authority"] = {"length": self.authority[0], "head": self.authority[1].hex()}
        return out


def _signed(protected: bytes, root: bytes) -> bytes:
    return sig_structure(protected, root, CHECKPOINT_AAD)


def sign_checkpoint(signer: Signer, *, tree_size: int, root: bytes, time: int,
                    authority: tuple[int, bytes] | None = None) -> Checkpoint:
    hub_id = device_id_for(signer.public_key)
    headers: dict[int, Any] = {HDR_ALG: ALG_EDDSA, HDR_KID: hub_id, HDR_VDS: VDS_RFC9162_SHA256,
                               HDR_CWT_CLAIMS: {CWT_ISS: hub_id.hex(), CWT_IAT: time}, HDR_TREE_SIZE: tree_size}
    if authority is not None:
        headers[HDR_AUTHORITY] = [authority[0], authority[1]]
    raw = sign1(signer, headers=headers, unprotected={}, payload=root, external_aad=CHECKPOINT_AAD)
    return decode_checkpoint(raw)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Header:
    hub_id: bytes
    size: int
    time: int
    authority: tuple[int, bytes] | None


def _uint(x: object) -> bool:
    return type(x) is int and x >= 0


def _read_headers(headers: dict[int, Any], what: str) -> _Header:
    """FORMAT.md §10: exactly these labels, each of exactly its type; anything else is MALFORMED."""
    labels = set(headers)
    if not labels >= _LABELS or labels - _LABELS - {HDR_AUTHORITY}:
        raise MalformedRecord(f"{what}: protected header labels must be {sorted(_LABELS)} and optionally "
                              f"{HDR_AUTHORITY}, got {sorted(labels, key=str)}")
    hub_id = headers[HDR_KID]
    size = headers[HDR_TREE_SIZE]
    claims = headers[HDR_CWT_CLAIMS]
    if headers[HDR_VDS] != VDS_RFC9162_SHA256 or type(headers[HDR_VDS]) is not int:
        raise MalformedRecord(f"{what}: expected verifiable data structure 1 (RFC9162_SHA256)")
    if not isinstance(hub_id, bytes) or len(hub_id) != 16:
        raise MalformedRecord(f"{what}: kid must be the hub's 16-byte id")
    if not _uint(size):
        raise MalformedRecord(f"{what}: tree size must be a non-negative integer, got {size!r}")
    if not (isinstance(claims, dict) and set(claims) == {CWT_ISS, CWT_IAT} and _uint(claims[CWT_IAT])
            and claims[CWT_ISS] == hub_id.hex()):
        raise MalformedRecord(f"{what}: CWT claims must be exactly iss (the kid in lowercase hex) and iat")
    authority = headers.get(HDR_AUTHORITY)
    if authority is not None:
        if not (isinstance(authority, list) and len(authority) == 2 and _uint(authority[0])
                and isinstance(authority[1], bytes) and len(authority[1]) == 32):
            raise MalformedRecord(f"{what}: authority head must be [length, 32-byte record id]")
        authority = (authority[0], authority[1])
    elif HDR_AUTHORITY in headers:
        raise MalformedRecord(f"{what}: authority head must be [length, 32-byte record id], got nil")
    return _Header(hub_id=hub_id, size=size, time=claims[CWT_IAT], authority=authority)


def decode_checkpoint(raw: bytes) -> Checkpoint:
    msg = parse_sign1(raw, what="checkpoint")
    head = _read_headers(msg.headers, "checkpoint")
    if msg.unprotected:
        raise MalformedRecord("checkpoint: unprotected header must be empty")
    if msg.payload is None or len(msg.payload) != 32:
        raise MalformedRecord("checkpoint: payload must be the 32-byte tree root")
    return Checkpoint(hub_id=head.hub_id, tree_size=head.size, root=msg.payload, time=head.time,
                      protected=msg.protected, signature=msg.signature, raw=raw, authority=head.authority)


def make_receipt(checkpoint: Checkpoint, index: int, path: Sequence[bytes]) -> bytes:
    """A COSE Receipt: the checkpoint's signature with a detached root and the inclusion path beside it."""
    proof = cbor.encode([checkpoint.tree_size, index, list(path)])
    return cbor.encode([checkpoint.protected, {HDR_VDP: {VDP_INCLUSION: [proof]}}, None,
                        checkpoint.signature], tag=18)


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifiedReceipt:
    hub_id: bytes
    tree_size: int
    index: int
    root: bytes
    time: int
    protected: bytes
    authority: tuple[int, bytes] | None = None


def verify_receipt(receipt: bytes, leaf: bytes, hub_key: bytes, *, hashed: bool = False) -> VerifiedReceipt:
    """Check that `leaf` (a record's raw bytes, or with `hashed` its leaf hash) is in the hub's log under a
    signed root."""
    msg = parse_sign1(receipt, what="receipt")
    head = _read_headers(msg.headers, "receipt")
    hub_id, size = head.hub_id, head.size
    if msg.payload is not None:
        raise MalformedRecord("receipt: payload must be detached (nil)")
    vdp = msg.unprotected.get(HDR_VDP)
    if (set(msg.unprotected) != {HDR_VDP} or not isinstance(vdp, dict) or set(vdp) != {VDP_INCLUSION}
            or not isinstance(vdp[VDP_INCLUSION], list) or len(vdp[VDP_INCLUSION]) != 1
            or not isinstance(vdp[VDP_INCLUSION][0], bytes)):
        raise MalformedRecord("receipt: unprotected header must be exactly {396: {-1: [one inclusion proof]}}")
    proof = cbor.decode(vdp[VDP_INCLUSION][0], what="inclusion proof")
    if (not isinstance(proof, list) or len(proof) != 3 or not _uint(proof[0])
            or not _uint(proof[1]) or not isinstance(proof[2], list)
            or not all(isinstance(p, bytes) for p in proof[2])):
        raise MalformedRecord("inclusion proof: expected [tree_size, leaf_index, [hashes]]")
    if proof[0] != size:
        raise BadProof(f"inclusion proof has wrong size: expected {size}, got {proof[0]}")
    root = root_from_inclusion(leaf if hashed else leaf_hash(leaf), proof[1], proof[0], proof[2])
    if device_id_for(hub_key) != hub_id:
        raise BadCheckpoint("receipt names another hub than the key given")
    try:
        msg.verify(hub_key, CHECKPOINT_AAD, payload=root)
    except Exception:
        raise BadProof("receipt signature does not verify over the root the proof leads to: "
                       "the record is not in the signed log") from None
    return VerifiedReceipt(hub_id=hub_id, tree_size=size, index=proof[1], root=root, time=head.time,
                           protected=msg.protected, authority=head.authority)


def verify_checkpoints_consistent(older: Checkpoint, newer: Checkpoint, proof: Sequence[bytes],
                                  hub_key: bytes) -> None:
    """Both checkpoints are genuine and the newer log extends the older one (no rewritten history).

    Two signed checkpoints of one size with different roots are INVALID_CHECKPOINT (the hub equivocated, no
    proof needed); a consistency proof that does not lead from one root to the other is INVALID_PROOF, like
    every failed proof (FORMAT.md §9, §10)."""
    older.verify(hub_key)
    newer.verify(hub_key)
    if older.tree_size > newer.tree_size:
        older, newer = newer, older
    if older.tree_size == newer.tree_size and older.root != newer.root:
        raise BadCheckpoint(f"two checkpoints of size {older.tree_size} with different roots: the hub forked "
                            "its log", hint="keep both checkpoints as evidence")
    verify_consistency(older.tree_size, newer.tree_size, older.root, newer.root, proof)
