"""Following another hub's log by its signed checkpoints: each new one proved consistent with those accepted
before, a split view kept as evidence, and one record checked by inclusion instead of holding them all."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from . import cbor
from .checkpoint import Checkpoint, VerifiedReceipt, decode_checkpoint, verify_receipt
from .cose import TAG_SIGN1, parse_sign1
from .errors import BadProof, MalformedRecord, SplitView, VerificationError
from .merkle import HASH_SIZE, verify_consistency

EVIDENCE_VERSION = 1


class Step(Enum):
    """What a new checkpoint did to the chain of accepted ones."""

    FIRST = "first"  # nothing accepted before: trusted on first use, like a pinned key
    ADVANCED = "advanced"  # a larger log that extends the last accepted one: accept it
    UNCHANGED = "unchanged"  # the same size and root as one accepted
    BEHIND = "behind"  # an older checkpoint that the accepted ones extend (a replay or a lagging mirror)


@dataclass(frozen=True, slots=True, kw_only=True)
class SplitViewEvidence:
    """Two checkpoints one hub signed that cannot both be true of one log, with the proof it offered."""

    accepted: Checkpoint
    offered: Checkpoint
    proof: tuple[bytes, ...]

    @property
    def conclusive(self) -> bool:
        """Two roots for one size need nothing more; otherwise anyone can ask the hub for the consistency proof
        again, and a hub that rewrote its log cannot produce one."""
        return self.accepted.tree_size == self.offered.tree_size

    def encode(self) -> bytes:
        return cbor.encode([EVIDENCE_VERSION, self.accepted.raw, self.offered.raw, list(self.proof)])


def decode_split_view(data: bytes) -> SplitViewEvidence:
    item = cbor.decode(data, what="split-view evidence")
    if (not isinstance(item, list) or len(item) != 4 or item[0] != EVIDENCE_VERSION
            or not isinstance(item[3], list)
            or not all(isinstance(p, bytes) and len(p) == HASH_SIZE for p in item[3])):
        raise MalformedRecord(f"split-view evidence: expected [{EVIDENCE_VERSION}, checkpoint, checkpoint, "
                              "[32-byte hashes]]")
    if not isinstance(item[1], bytes) or not isinstance(item[2], bytes):
        raise MalformedRecord("split-view evidence: checkpoints must be COSE_Sign1 bytes")
    return SplitViewEvidence(accepted=decode_checkpoint(item[1]), offered=decode_checkpoint(item[2]),
                             proof=tuple(item[3]))


def verify_split_view(data: bytes, hub_key: bytes) -> SplitViewEvidence:
    """The evidence holds: both checkpoints are the hub's, and they do not describe one log (their roots differ
    at one size, or the proof the hub offered between them fails)."""
    evidence = decode_split_view(data)
    evidence.accepted.verify(hub_key)
    evidence.offered.verify(hub_key)
    older, newer = sorted((evidence.accepted, evidence.offered), key=lambda c: c.tree_size)
    try:
        verify_consistency(older.tree_size, newer.tree_size, older.root, newer.root, evidence.proof)
    except BadProof:
        return evidence
    raise VerificationError("split-view evidence: the two checkpoints are consistent with the proof kept, so "
                            "they show no split view")


def _same_size(accepted: Sequence[Checkpoint], new: Checkpoint) -> Checkpoint | None:
    return next((c for c in reversed(accepted) if c.tree_size == new.tree_size), None)


def proof_needed(accepted: Sequence[Checkpoint], new: Checkpoint) -> tuple[int, int] | None:
    """The consistency proof (first size, second size) to fetch before `follow` can judge `new`; None when the
    checkpoints alone decide (nothing accepted yet, or one of the same size)."""
    if not accepted or _same_size(accepted, new) is not None:
        return None
    last = accepted[-1]
    return (min(last.tree_size, new.tree_size), max(last.tree_size, new.tree_size))


def follow(accepted: Sequence[Checkpoint], new: Checkpoint, proof: Sequence[bytes], hub_key: bytes) -> Step:
    """Judge the hub's checkpoint `new` against the ones accepted from it before (in tree size order), with the
    consistency proof that `proof_needed` asked for. A checkpoint that is not the pinned key's raises
    INVALID_CHECKPOINT; one that does not describe the same log raises SPLIT_VIEW carrying the evidence."""
    new.verify(hub_key)
    if not accepted:
        return Step.FIRST
    same = _same_size(accepted, new)
    if same is not None:
        if same.root == new.root:
            return Step.UNCHANGED
        raise _split(same, new, (), f"two checkpoints of size {new.tree_size} with different roots")
    last = accepted[-1]
    older, newer = sorted((last, new), key=lambda c: c.tree_size)
    try:
        verify_consistency(older.tree_size, newer.tree_size, older.root, newer.root, proof)
    except BadProof as exc:
        raise _split(last, new, proof, f"the log of size {new.tree_size} does not extend the accepted one of "
                                       f"size {last.tree_size}: {exc.message}") from None
    return Step.ADVANCED if new.tree_size > last.tree_size else Step.BEHIND


def _split(accepted: Checkpoint, offered: Checkpoint, proof: Sequence[bytes], why: str) -> SplitView:
    evidence = SplitViewEvidence(accepted=accepted, offered=offered, proof=tuple(proof))
    return SplitView(f"hub {offered.hub_id.hex()} signed two views of its log: {why}", evidence=evidence,
                     hint="both checkpoints are kept as evidence; the hub's operators must explain them before "
                          "it is followed again")


def receipt_checkpoint(receipt: bytes, leaf: bytes, hub_key: bytes) -> tuple[VerifiedReceipt, Checkpoint]:
    """Check that `leaf` (a record's bytes) is in the hub's log, and return the signed checkpoint the receipt
    stands on (a receipt is that checkpoint's signature with the root left out), for `follow` to place."""
    verified = verify_receipt(receipt, leaf, hub_key)
    msg = parse_sign1(receipt, what="receipt")
    raw = cbor.encode([msg.protected, {}, verified.root, msg.signature], tag=TAG_SIGN1)
    return verified, decode_checkpoint(raw)
