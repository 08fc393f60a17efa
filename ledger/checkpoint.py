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
# Private-use label (RFC 9052 §11: below -65536) carrying the tree size under the signature.
HDR_TREE_SIZE = -65537
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
        return {"hub": self.hub_id.hex(), "tree_size": self.tree_size, "root": self.root.hex(),
                "time": self.time, "cose": self.raw.hex()}


def _signed(protected: bytes, root: bytes) -> bytes:
    return sig_structure(protected, root, CHECKPOINT_AAD)


def sign_checkpoint(signer: Signer, *, tree_size: int, root: bytes, time: int) -> Checkpoint:
    hub_id = device_id_for(signer.public_key)
    headers = {HDR_ALG: ALG_EDDSA, HDR_KID: hub_id, HDR_VDS: VDS_RFC9162_SHA256,
               HDR_CWT_CLAIMS: {CWT_ISS: hub_id.hex(), CWT_IAT: time}, HDR_TREE_SIZE: tree_size}
    raw = sign1(signer, headers=headers, unprotected={}, payload=root, external_aad=CHECKPOINT_AAD)
    return decode_checkpoint(raw)


def _read_headers(headers: dict[int, Any], what: str) -> tuple[bytes, int, int]:
    hub_id = headers.get(HDR_KID)
    size = headers.get(HDR_TREE_SIZE)
    claims = headers.get(HDR_CWT_CLAIMS)
    if headers.get(HDR_VDS) != VDS_RFC9162_SHA256:
        raise MalformedRecord(f"{what}: expected verifiable data structure 1 (RFC9162_SHA256)")
    if not isinstance(hub_id, bytes) or len(hub_id) != 16:
        raise MalformedRecord(f"{what}: kid must be the hub's 16-byte id")
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise MalformedRecord(f"{what}: tree size must be a non-negative integer, got {size!r}")
    if not isinstance(claims, dict) or not isinstance(claims.get(CWT_IAT), int):
        raise MalformedRecord(f"{what}: CWT claims must carry iat")
    return hub_id, size, claims[CWT_IAT]


def decode_checkpoint(raw: bytes) -> Checkpoint:
    msg = parse_sign1(raw, what="checkpoint")
    hub_id, size, time = _read_headers(msg.headers, "checkpoint")
    if msg.payload is None or len(msg.payload) != 32:
        raise MalformedRecord("checkpoint: payload must be the 32-byte tree root")
    return Checkpoint(hub_id=hub_id, tree_size=size, root=msg.payload, time=time, protected=msg.protected,
                      signature=msg.signature, raw=raw)


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


def verify_receipt(receipt: bytes, leaf: bytes, hub_key: bytes) -> VerifiedReceipt:
    """Check that `leaf` (a record's raw bytes) is in the hub's log under a signed root."""
    msg = parse_sign1(receipt, what="receipt")
    hub_id, size, time = _read_headers(msg.headers, "receipt")
    if msg.payload is not None:
        raise MalformedRecord("receipt: payload must be detached (nil)")
    vdp = msg.unprotected.get(HDR_VDP)
    if not isinstance(vdp, dict) or not isinstance(vdp.get(VDP_INCLUSION), list) or not vdp[VDP_INCLUSION]:
        raise MalformedRecord("receipt: unprotected header must carry an inclusion proof (396 / -1)")
    proof = cbor.decode(vdp[VDP_INCLUSION][0], what="inclusion proof")
    if (not isinstance(proof, list) or len(proof) != 3 or not isinstance(proof[0], int)
            or not isinstance(proof[1], int) or not isinstance(proof[2], list)
            or not all(isinstance(p, bytes) for p in proof[2])):
        raise MalformedRecord("inclusion proof: expected [tree_size, leaf_index, [hashes]]")
    if proof[0] != size:
        raise BadProof(f"inclusion proof has wrong size: expected {size}, got {proof[0]}")
    root = root_from_inclusion(leaf_hash(leaf), proof[1], proof[0], proof[2])
    if device_id_for(hub_key) != hub_id:
        raise BadCheckpoint("receipt names another hub than the key given")
    try:
        msg.verify(hub_key, CHECKPOINT_AAD, payload=root)
    except Exception:
        raise BadProof("receipt signature does not verify over the root the proof leads to: "
                       "the record is not in the signed log") from None
    return VerifiedReceipt(hub_id=hub_id, tree_size=size, index=proof[1], root=root, time=time)


def verify_checkpoints_consistent(older: Checkpoint, newer: Checkpoint, proof: Sequence[bytes],
                                  hub_key: bytes) -> None:
    """Both checkpoints are genuine and the newer log extends the older one (no rewritten history)."""
    older.verify(hub_key)
    newer.verify(hub_key)
    if older.tree_size > newer.tree_size:
        older, newer = newer, older
    if older.tree_size == 0:
        return
    try:
        verify_consistency(older.tree_size, newer.tree_size, older.root, newer.root, proof)
    except BadProof as exc:
        raise BadCheckpoint(f"checkpoints of size {older.tree_size} and {newer.tree_size} are inconsistent: "
                            f"{exc.message}", hint="the hub rewrote its log; keep both checkpoints as evidence"
                            ) from None
