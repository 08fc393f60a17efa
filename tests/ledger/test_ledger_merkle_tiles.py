"""A tree that keeps only whole tiles in memory gives the same roots and proofs as one that keeps every node,
and catches a store that returns leaf hashes other than the ones it was built from."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import MerkleTree, leaf_hash
from ledger.errors import VerificationError
from ledger.merkle import verify_consistency, verify_inclusion

LEAVES = [leaf_hash(i.to_bytes(4, "big")) for i in range(700)]
FULL = MerkleTree(LEAVES)


def tiled(n: int, height: int, store: list[bytes] | None = None) -> tuple[MerkleTree, list[tuple[int, int]]]:
    backing = LEAVES if store is None else store
    reads: list[tuple[int, int]] = []

    def read(start: int, end: int) -> list[bytes]:
        reads.append((start, end))
        return backing[start:end]

    return MerkleTree(LEAVES[:n], read_leaves=read, tile_height=height), reads


@settings(max_examples=150, deadline=None)
@given(n=st.integers(1, 700), height=st.integers(1, 6), data=st.data())
def test_tiled_tree_matches_the_full_tree(n, height, data):
    tree, reads = tiled(n, height)
    size = data.draw(st.integers(1, n))
    index = data.draw(st.integers(0, size - 1))
    first = data.draw(st.integers(1, size))
    assert tree.root(size) == FULL.root(size)
    assert tree.leaf(index) == LEAVES[index]
    path = tree.inclusion_proof(index, size)
    assert path == FULL.inclusion_proof(index, size)
    verify_inclusion(LEAVES[index], index, size, path, FULL.root(size))
    proof = tree.consistency_proof(first, size)
    assert proof == FULL.consistency_proof(first, size)
    verify_consistency(first, size, FULL.root(first), FULL.root(size), proof)
    width = 1 << height
    assert all(e - s == width and s % width == 0 for s, e in reads), "reads are whole, aligned tiles"


def test_memory_is_the_tile_roots_and_the_open_tile():
    tree, _ = tiled(700, 8)
    # 2 complete tiles of 256 leaves: their roots and what lies above them, plus the open tile of 188 leaves
    # and its nodes, instead of the 2 * 700 - popcount hashes the full tree holds.
    assert FULL.held == 2 * 700 - bin(700).count("1")
    assert tree.held < 188 * 2 + 4
    grown, _ = tiled(0, 8)
    for h in LEAVES[:512]:
        grown.append_hash(h)
    assert grown.held == 3  # two tile roots and the root above them


def test_appending_after_reads_keeps_proofs_right():
    tree, reads = tiled(300, 4)
    tree.inclusion_proof(5)
    for h in LEAVES[300:700]:
        tree.append_hash(h)
    assert reads
    for index in (0, 17, 299, 300, 511, 699):
        assert tree.inclusion_proof(index) == FULL.inclusion_proof(index)
    assert tree.root() == FULL.root()


@pytest.mark.parametrize("damage", ["changed", "short"])
def test_a_store_changed_under_the_tree_is_caught(damage):
    store = list(LEAVES)
    tree, _ = tiled(700, 4, store)
    if damage == "changed":
        store[37] = leaf_hash(b"rewritten")
    else:
        del store[32:700]
    with pytest.raises(VerificationError) as caught:
        tree.inclusion_proof(37)
    assert caught.value.code == "VERIFICATION_FAILED"
    if damage == "changed":  # proofs that only need untouched tiles still come out right
        assert tree.inclusion_proof(600) == FULL.inclusion_proof(600)


def test_tile_height_is_checked():
    with pytest.raises(ValueError):
        MerkleTree(tile_height=0)



MANY = [leaf_hash(i.to_bytes(4, "big")) for i in range(2500)]  # 6 rounds of at most 6 tiles of 64 leaves, and more
MANY_FULL = MerkleTree(MANY)


@settings(max_examples=60, deadline=None)
@given(height=st.integers(1, 6), data=st.data())
def test_tiles_appended_by_their_roots_give_the_tree_of_their_leaves(height, data):
    width = 1 << height
    grown = MerkleTree(read_leaves=lambda start, end: MANY[start:end], tile_height=height)
    size = 0
    for _ in range(data.draw(st.integers(1, 6))):  # some leaves one by one, to a tile boundary, then whole tiles
        size += data.draw(st.integers(0, 2 * width))
        size += -size % width
        for h in MANY[len(grown):size]:
            grown.append_hash(h)
        tiles = data.draw(st.integers(0, 3))
        grown.append_tiles([MerkleTree(MANY[start:start + width]).root(width)
                            for start in range(size, size + tiles * width, width)])
        size += tiles * width
        assert len(grown) == size and grown.root(size) == MANY_FULL.root(size)
    if size:
        index = data.draw(st.integers(0, size - 1))
        assert grown.inclusion_proof(index, size) == MANY_FULL.inclusion_proof(index, size)
    more = data.draw(st.integers(1, width + 1))
    for h in MANY[size:size + more]:
        grown.append_hash(h)
    assert grown.root(size + more) == MANY_FULL.root(size + more)


def test_tiles_go_in_by_root_only_at_a_tile_boundary():
    root = MerkleTree(LEAVES[4:8]).root(4)
    grown, _ = tiled(3, 2)
    with pytest.raises(ValueError, match="tile boundary"):
        grown.append_tiles([root])
    with pytest.raises(ValueError, match="tile boundary"):
        MerkleTree(LEAVES[:4], tile_height=2).append_tiles([root])
