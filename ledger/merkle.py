"""RFC 9162 Merkle trees: tree hashes, inclusion and consistency proofs, generated and verified."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

from .errors import BadProof

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


class MerkleTree:
    """An append-only RFC 9162 tree that keeps every complete subtree, so proofs cost O(log n) hashes.

    Level h holds the hashes of the complete, aligned subtrees of 2**h leaves, packed into one bytearray.
    """

    __slots__ = ("_levels",)

    def __init__(self, leaf_hashes: Iterable[bytes] = ()) -> None:
        self._levels: list[bytearray] = [bytearray()]
        for h in leaf_hashes:
            self.append_hash(h)

    def __len__(self) -> int:
        return len(self._levels[0]) // HASH_SIZE

    @property
    def size(self) -> int:
        return len(self)

    def append(self, data: bytes) -> int:
        return self.append_hash(leaf_hash(data))

    def append_hash(self, h: bytes) -> int:
        """Add a leaf hash; return its index."""
        if len(h) != HASH_SIZE:
            raise ValueError(f"leaf hash: expected {HASH_SIZE} bytes, got {len(h)}")
        index = len(self)
        self._levels[0] += h
        level, i = 0, index
        while i & 1:
            nodes = self._levels[level]
            left = bytes(nodes[(i - 1) * HASH_SIZE:i * HASH_SIZE])
            right = bytes(nodes[i * HASH_SIZE:(i + 1) * HASH_SIZE])
            level += 1
            if len(self._levels) == level:
                self._levels.append(bytearray())
            self._levels[level] += node_hash(left, right)
            i >>= 1
        return index

    def leaf(self, index: int) -> bytes:
        return bytes(self._levels[0][index * HASH_SIZE:(index + 1) * HASH_SIZE])

    def _node(self, level: int, index: int) -> bytes:
        return bytes(self._levels[level][index * HASH_SIZE:(index + 1) * HASH_SIZE])

    def _mth(self, start: int, end: int) -> bytes:
        """Hash of leaves [start, end), per RFC 9162 §2.1.1."""
        n = end - start
        if n == 0:
            return EMPTY_ROOT
        if n & (n - 1) == 0 and start % n == 0:
            return self._node(n.bit_length() - 1, start // n)
        k = _split(n)
        return node_hash(self._mth(start, start + k), self._mth(start + k, end))

    def root(self, size: int | None = None) -> bytes:
        size = len(self) if size is None else size
        self._check_size(size)
        return self._mth(0, size)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        size = len(self) if size is None else size
        self._check_size(size)
        if not 0 <= index < size:
            raise BadProof(f"leaf index {index} is outside a tree of size {size}")
        path: list[bytes] = []
        start, end = 0, size
        while end - start > 1:
            k = _split(end - start)
            if index < start + k:
                path.append(self._mth(start + k, end))
                end = start + k
            else:
                path.append(self._mth(start, start + k))
                start += k
        path.reverse()
        return path

    def consistency_proof(self, first: int, second: int | None = None) -> list[bytes]:
        second = len(self) if second is None else second
        self._check_size(second)
        if not 0 < first <= second:
            raise BadProof(f"consistency proof needs 0 < first <= second, got {first} and {second}")
        proof: list[bytes] = []
        self._subproof(first, 0, second, True, proof)
        return proof

    def _subproof(self, m: int, start: int, end: int, complete: bool, out: list[bytes]) -> None:
        n = end - start
        if m == n:
            if not complete:
                out.append(self._mth(start, end))
            return
        k = _split(n)
        if m <= k:
            self._subproof(m, start, start + k, complete, out)
            out.append(self._mth(start + k, end))
        else:
            self._subproof(m - k, start + k, end, False, out)
            out.append(self._mth(start, start + k))

    def _check_size(self, size: int) -> None:
        if not 0 <= size <= len(self):
            raise BadProof(f"tree size {size} is larger than the tree ({len(self)} leaves)")


def root_of(leaves: Sequence[bytes]) -> bytes:
    """Root over raw leaf data (hashes each leaf)."""
    return MerkleTree(leaf_hash(x) for x in leaves).root()


def root_from_inclusion(leaf: bytes, index: int, size: int, path: Sequence[bytes]) -> bytes:
    """Recompute the root from a leaf hash and its audit path (RFC 9162 §2.1.3.2)."""
    if not 0 <= index < size:
        raise BadProof(f"inclusion proof: leaf index {index} is outside a tree of size {size}")
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if len(p) != HASH_SIZE:
            raise BadProof(f"inclusion proof: path entries must be {HASH_SIZE} bytes, got {len(p)}")
        if sn == 0:
            raise BadProof(f"inclusion proof is too long for a tree of size {size}: {len(path)} entries")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise BadProof(f"inclusion proof is too short for a tree of size {size}: {len(path)} entries")
    return r


def verify_inclusion(leaf: bytes, index: int, size: int, path: Sequence[bytes], root: bytes) -> None:
    got = root_from_inclusion(leaf, index, size, path)
    if got != root:
        raise BadProof(f"inclusion proof leads to root {got.hex()}, expected {root.hex()}")


def verify_consistency(first: int, second: int, first_root: bytes, second_root: bytes,
                       proof: Sequence[bytes]) -> None:
    """Check that the tree of size `second` extends the tree of size `first` (RFC 9162 §2.1.4.2)."""
    if not 0 < first <= second:
        raise BadProof(f"consistency proof needs 0 < first <= second, got {first} and {second}")
    if any(len(p) != HASH_SIZE for p in proof):
        raise BadProof(f"consistency proof: entries must be {HASH_SIZE} bytes")
    if first == second:
        if proof:
            raise BadProof(f"consistency proof between equal sizes must be empty, got {len(proof)} entries")
        if first_root != second_root:
            raise BadProof("two trees of the same size have different roots")
        return
    if not proof:
        raise BadProof("consistency proof is empty")
    path = list(proof)
    if first & (first - 1) == 0:
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise BadProof("consistency proof is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise BadProof("consistency proof is too short")
    if fr != first_root:
        raise BadProof(f"consistency proof leads to first root {fr.hex()}, expected {first_root.hex()}")
    if sr != second_root:
        raise BadProof(f"consistency proof leads to second root {sr.hex()}, expected {second_root.hex()}")
