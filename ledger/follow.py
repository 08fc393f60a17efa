"""Following another hub's log by its signed checkpoints: each new one proved consistent with those accepted
before, a split view kept as evidence, and one record checked by inclusion instead of holding them all."""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from . import cbor
from .checkpoint import Checkpoint, VerifiedReceipt, decode_checkpoint, verify_receipt
from .cose import TAG_SIGN1, parse_sign1
from .errors import BadProof, MalformedRecord, SplitView, VerificationError
from .merkle import HASH_SIZE, verify_consistency

EVIDENCE_VERSION = 1
RESUME_VERSION = 1


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


def evidence_id(evidence: bytes) -> bytes:
    """The name of one piece of split-view evidence: the SHA-256 of its bytes, as kept."""
    return hashlib.sha256(evidence).digest()


def verify_split_view(data: bytes, hub_key: bytes) -> SplitViewEvidence:
    """The evidence holds: both checkpoints are the hub's, and they do not describe one log (their roots differ
    at one size, or the proof the hub offered between them fails)."""
    evidence = decode_split_view(data)
    evidence.accepted.verify(hub_key)
    evidence.offered.verify(hub_key)
    older, newer = sorted((evidence.accepted, evidence.offered), key=lambda c: c.tree_size)
    if older.tree_size == newer.tree_size:
        # One size: the roots alone decide. A proof there (none is needed) must not turn one root into a
        # "conclusive" split view: any honest checkpoint given twice with a junk entry would have been one.
        if older.root != newer.root:
            return evidence
        raise VerificationError("split-view evidence: two checkpoints of one size with one root show no split "
                                "view")
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


WITNESS_MAX_PROOF = 2 * 64  # hashes: an RFC 9162 consistency proof between two sizes below 2**64 is shorter


def encode_witness_answer(checkpoint: Checkpoint, proof: Sequence[bytes]) -> bytes:
    """The hub's answer to a presented checkpoint (FORMAT.md §10.2): its checkpoint to hold from now on and the
    consistency proof from the presented one to it."""
    return cbor.encode([checkpoint.raw, list(proof)])


def decode_witness_answer(data: bytes) -> tuple[Checkpoint, tuple[bytes, ...]]:
    """`[checkpoint, [hash, ...]]`, each part of its own shape; anything else is MALFORMED."""
    item = cbor.decode(data, what="witness answer")
    if (not isinstance(item, list) or len(item) != 2 or not isinstance(item[0], bytes)
            or not isinstance(item[1], list) or len(item[1]) > WITNESS_MAX_PROOF
            or not all(isinstance(p, bytes) and len(p) == HASH_SIZE for p in item[1])):
        raise MalformedRecord(f"witness answer: expected [checkpoint, [at most {WITNESS_MAX_PROOF} 32-byte hashes]]")
    return decode_checkpoint(item[0]), tuple(item[1])


def decode_consistency_answer(data: bytes, first: int, second: int) -> tuple[bytes, ...]:
    """A hub's answer to GET /proofs/consistency?from=`first`&to=`second`: `[first, second, [hash, ...]]` for the
    sizes asked; else INVALID_PROOF (the answer proves nothing)."""
    try:
        item = cbor.decode(data, what="consistency answer")
    except MalformedRecord:
        item = None
    if (not isinstance(item, list) or len(item) != 3 or type(item[0]) is not int or type(item[1]) is not int
            or not isinstance(item[2], list) or not all(isinstance(p, bytes) for p in item[2])):
        raise BadProof("consistency answer: expected [first size, second size, [hashes]]")
    if (item[0], item[1]) != (first, second):
        raise BadProof(f"asked for the consistency proof from {first} to {second}, got {item[0]} to {item[1]}")
    return tuple(item[2])


def witness(held: Checkpoint | None, shown: Checkpoint, proof: Sequence[bytes], hub_key: bytes) -> Step:
    """Judge the checkpoint `shown` a hub answered to the one a witness `held` (FORMAT.md §10.2): the pinned
    key's (else INVALID_CHECKPOINT), not smaller than the held one (a hub answers its latest, which extends what
    it signed before: smaller is SPLIT_VIEW) and consistent with it (else SPLIT_VIEW, carrying the evidence)."""
    if held is not None and shown.tree_size < held.tree_size:
        shown.verify(hub_key)
        raise _split(held, shown, proof, f"it answered a checkpoint of size {shown.tree_size} to one of size "
                                         f"{held.tree_size} it signed before: its log went backwards")
    return follow([held] if held is not None else [], shown, proof, hub_key)


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


class Rebase:
    """Which of the checkpoints accepted from a hub before a split view its current checkpoint still extends.

    Each accepted checkpoint extends the one before it, so those the current one extends are a prefix of them:
    a binary search finds where that prefix ends, one consistency proof per step (`wanted`, then `receive`).
    The ones past it, and any larger than the current log, describe records the hub's current view does not
    hold."""

    def __init__(self, accepted: Sequence[Checkpoint], current: Checkpoint, hub_key: bytes) -> None:
        current.verify(hub_key)
        self.accepted = sorted(accepted, key=lambda c: c.tree_size)
        self.current = current
        self._lo = 0  # accepted[:_lo] are extended by the current checkpoint
        self._hi = bisect.bisect_right([c.tree_size for c in self.accepted], current.tree_size)  # past it: not

    def wanted(self) -> tuple[int, int] | None:
        """The consistency proof (first size, second size) to ask the hub for next; None once decided. Equal
        sizes need no request: their proof is empty."""
        if self._lo >= self._hi:
            return None
        return self.accepted[(self._lo + self._hi) // 2].tree_size, self.current.tree_size

    def receive(self, proof: Sequence[bytes]) -> None:
        """The hub's answer to `wanted`; a proof that does not hold means the accepted checkpoint is not in the
        current view."""
        if self._lo >= self._hi:
            raise ValueError("the rebase is decided; nothing was asked")
        mid = (self._lo + self._hi) // 2
        older = self.accepted[mid]
        try:
            verify_consistency(older.tree_size, self.current.tree_size, older.root, self.current.root, proof)
        except BadProof:
            self._hi = mid
        else:
            self._lo = mid + 1

    @property
    def kept(self) -> tuple[Checkpoint, ...]:
        """The accepted checkpoints the current one extends (proved)."""
        return tuple(self.accepted[:self._lo]) if self.wanted() is None else ()

    @property
    def dropped(self) -> tuple[Checkpoint, ...]:
        """The accepted checkpoints the current one does not extend."""
        return tuple(self.accepted[self._lo:]) if self.wanted() is None else tuple(self.accepted)


@dataclass(frozen=True, slots=True, kw_only=True)
class RegionResume:
    """An operator's decision to follow a hub again after a split view: the hub's checkpoint it is followed
    from now on, what that log keeps of the checkpoints accepted before and what it does not, the evidence the
    decision closes (which stays kept), and who decided, when and why."""

    hub_id: bytes
    at: int  # the deciding hub's time
    by: str  # the operator's name, as given
    why: str
    token: str  # the first hex digits of the operator token's SHA-256: which token made the call
    pinned: Checkpoint
    kept: tuple[Checkpoint, ...]
    dropped: tuple[Checkpoint, ...]
    resolves: tuple[bytes, ...]  # evidence_id of each split view closed

    def __post_init__(self) -> None:
        if self.pinned.hub_id != self.hub_id or any(c.hub_id != self.hub_id for c in (*self.kept, *self.dropped)):
            raise MalformedRecord(f"region resume: every checkpoint must be hub {self.hub_id.hex()}'s")
        if not self.resolves or any(len(e) != HASH_SIZE for e in self.resolves):
            raise MalformedRecord("region resume: expected the 32-byte ids of the split views it closes")

    @property
    def not_in_view(self) -> tuple[int, int] | None:
        """The stretch of the hub's log (global indexes, from, to) that accepted checkpoints vouched for and
        the re-pinned view does not hold; None when it holds everything accepted before."""
        if not self.dropped:
            return None
        start = self.kept[-1].tree_size if self.kept else 0
        return start, max(c.tree_size for c in self.dropped)

    def encode(self) -> bytes:
        return cbor.encode([RESUME_VERSION, self.hub_id, self.at, self.by, self.why, self.token, self.pinned.raw,
                            [c.raw for c in self.kept], [c.raw for c in self.dropped], list(self.resolves)])

    def to_json(self) -> dict[str, object]:
        gap = self.not_in_view
        return {"hub": self.hub_id.hex(), "at": self.at, "by": self.by, "why": self.why, "token": self.token,
                "pinned": self.pinned.to_json(), "kept": [c.to_json() for c in self.kept],
                "dropped": [c.to_json() for c in self.dropped], "resolves": [e.hex() for e in self.resolves],
                "not_in_view": None if gap is None else {"from": gap[0], "to": gap[1]}}


def decode_resume(data: bytes) -> RegionResume:
    item = cbor.decode(data, what="region resume")
    shape = (f"region resume: expected [{RESUME_VERSION}, hub id, time, by, why, token, checkpoint, "
             "[checkpoints], [checkpoints], [evidence ids]]")
    if not isinstance(item, list) or len(item) != 10 or item[0] != RESUME_VERSION:
        raise MalformedRecord(shape)
    _, hub_id, at, by, why, token, pinned, kept, dropped, resolves = item
    if (not isinstance(hub_id, bytes) or type(at) is not int or not all(isinstance(t, str) for t in (by, why, token))
            or not isinstance(pinned, bytes) or not all(isinstance(x, list) for x in (kept, dropped, resolves))
            or not all(isinstance(c, bytes) for c in (*kept, *dropped, *resolves))):
        raise MalformedRecord(shape)
    return RegionResume(hub_id=hub_id, at=at, by=by, why=why, token=token, pinned=decode_checkpoint(pinned),
                        kept=tuple(map(decode_checkpoint, kept)), dropped=tuple(map(decode_checkpoint, dropped)),
                        resolves=tuple(resolves))
