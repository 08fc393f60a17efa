"""RFC 9162 Merkle trees: tree hashes, inclusion and consistency proofs, generated and verified."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence

from .errors import BadProof, VerificationError

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
    """An append-only RFC 9162 tree that keeps its complete subtrees, so proofs cost O(log n) hashes.

    Level h holds the hashes of the complete, aligned subtrees of 2**h leaves, packed into one bytearray. A
    log's store already holds every leaf hash, so with `read_leaves(start, end)` the tree keeps in memory
    only the subtrees of at least 2**`tile_height` leaves and the rightmost, incomplete tile: at the default
    height, 64 bytes per leaf become one. A proof that needs a smaller subtree reads that tile's leaf hashes
    back, rehashes the tile and checks it against the tile's root held in memory, so a store that changed
    under the tree is caught instead of yielding a wrong proof.
    """

    __slots__ = ("_height", "_levels", "_read", "_size", "_tiles")

    TILE_CACHE = 8

    def __init__(self, leaf_hashes: Iterable[bytes] = (), *,
                 read_leaves: Callable[[int, int], Sequence[bytes]] | None = None, tile_height: int = 6) -> None:
        if not 1 <= tile_height <= 16:
            raise ValueError(f"tile_height: expected 1 to 16, got {tile_height}")
        # Per level: the index of the first node held, and the nodes from there on. Replaced as one tuple,
        # never emptied in place, so a reader in another thread sees a consistent pair.
        self._levels: list[tuple[int, bytearray]] = [(0, bytearray())]
        self._size = 0
        self._read = read_leaves
        self._height = tile_height
        self._tiles: dict[int, list[list[bytes]]] = {}
        for h in leaf_hashes:
            self.append_hash(h)

    @classmethod
    def resume(cls, tile_roots: Sequence[bytes], *, read_leaves: Callable[[int, int], Sequence[bytes]],
               tile_height: int = 6) -> MerkleTree:
        """The tree of the first len(tile_roots) whole tiles, from their roots alone: a log restarts by
        reading one hash per tile instead of every leaf (append the leaves after the last tile)."""
        tree = cls(read_leaves=read_leaves, tile_height=tile_height)
        tree.append_tiles(tile_roots)
        return tree

    def append_tiles(self, roots: Sequence[bytes]) -> None:
        """Append whole tiles of leaves by their roots alone, at a tile boundary of a tree whose leaves stay in
        the store: for roots already computed from those leaves (`resume`; a writer that kept them in the same
        commit), so the tree does not hash each tile again. A root that does not match its leaves fails every
        proof that reads the tile back."""
        if self._read is None or self._size % (1 << self._height):
            raise ValueError("append_tiles: needs a tree with read_leaves, at a tile boundary")
        for root in roots:
            if len(root) != HASH_SIZE:
                raise ValueError(f"tile root: expected {HASH_SIZE} bytes, got {len(root)}")
        while len(self._levels) < self._height:
            self._levels.append((self._size >> len(self._levels), bytearray()))
        for root in roots:
            self._carry(self._height, self._size >> self._height, root)
            self._size += 1 << self._height
        for low in range(self._height):  # what a tile's own append leaves: its levels below the root are gone
            self._levels[low] = (self._size >> low, bytearray())

    @property
    def tiles(self) -> int:
        """How many whole tiles the tree holds (their roots are what `resume` needs)."""
        return self._size >> self._height

    def tile_root(self, tile: int) -> bytes:
        if not 0 <= tile < self.tiles:
            raise ValueError(f"tile {tile}: the tree holds {self.tiles} whole tiles")
        return self._node(self._height, tile)

    def __len__(self) -> int:
        return self._size

    @property
    def size(self) -> int:
        return self._size

    @property
    def held(self) -> int:
        """How many hashes the tree keeps in memory."""
        return sum(len(nodes) for _, nodes in self._levels) // HASH_SIZE

    def append(self, data: bytes) -> int:
        return self.append_hash(leaf_hash(data))

    def append_hash(self, h: bytes) -> int:
        """Add a leaf hash; return its index."""
        if len(h) != HASH_SIZE:
            raise ValueError(f"leaf hash: expected {HASH_SIZE} bytes, got {len(h)}")
        index = self._size
        self._carry(0, index, h)
        self._size = index + 1
        if self._read is not None and self._size % (1 << self._height) == 0:
            for low in range(self._height):  # the tile is complete: its root stays, the rest is in the store
                self._levels[low] = (self._size >> low, bytearray())
        return index

    def _carry(self, level: int, i: int, node: bytes) -> None:
        """Add node `i` of `level` and every complete subtree it closes above it."""
        self._push(level, node)
        while i & 1:
            node = node_hash(self._node(level, i - 1), node)
            level += 1
            i >>= 1
            self._push(level, node)

    def _push(self, level: int, h: bytes) -> None:
        if len(self._levels) == level:
            self._levels.append((0, bytearray()))
        self._levels[level][1].extend(h)

    def leaf(self, index: int) -> bytes:
        return self._node(0, index)

    def _node(self, level: int, index: int) -> bytes:
        first, nodes = self._levels[level]
        if index >= first:
            at = (index - first) * HASH_SIZE
            return bytes(nodes[at:at + HASH_SIZE])
        return self._tile(index >> (self._height - level))[level][index % (1 << (self._height - level))]

    def _tile(self, tile: int) -> list[list[bytes]]:
        """The levels below `tile_height` of a complete tile, rehashed from the store's leaf hashes."""
        cached = self._tiles.get(tile)
        if cached is not None:
            return cached
        assert self._read is not None
        width = 1 << self._height
        leaves = list(self._read(tile * width, (tile + 1) * width))
        if len(leaves) != width or any(len(x) != HASH_SIZE for x in leaves):
            raise VerificationError(f"the store returned {len(leaves)} leaf hashes for tile {tile} of the log, "
                                    f"expected {width} of {HASH_SIZE} bytes")
        levels = [leaves]
        while len(levels[-1]) > 1:
            below = levels[-1]
            levels.append([node_hash(below[j], below[j + 1]) for j in range(0, len(below), 2)])
        if levels[-1][0] != self._node(self._height, tile):
            raise VerificationError(f"leaf hashes {tile * width} to {(tile + 1) * width - 1} in the store do not "
                                    "hash to the tree's root of that tile: the store changed under the log",
                                    hint="restore the hub's store from a backup or rebuild it from the devices")
        if len(self._tiles) >= self.TILE_CACHE:
            self._tiles.clear()
        self._tiles[tile] = levels
        return levels

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
        if not 0 <= first <= second:
            raise BadProof(f"consistency proof needs 0 <= first <= second, got {first} and {second}")
        proof: list[bytes] = []
        if first == 0:
            return proof
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
        if not 0 <= size <= self._size:
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
    """Check that the tree of size `second` extends the tree of size `first` (RFC 9162 §2.1.4.2).

    From size 0 (FORMAT.md §9, which RFC 9162 leaves open): the empty tree is a prefix of every tree, so the
    proof is empty and the first root is MTH({})."""
    if not 0 <= first <= second:
        raise BadProof(f"consistency proof needs 0 <= first <= second, got {first} and {second}")
    if any(len(p) != HASH_SIZE for p in proof):
        raise BadProof(f"consistency proof: entries must be {HASH_SIZE} bytes")
    if first == 0:
        if proof or first_root != EMPTY_ROOT:
            raise BadProof("a consistency proof from size 0 is empty and starts from the empty tree's root")
        return
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
