"""ledger.merkle against published RFC 6962 / RFC 9162 test data, not data we computed ourselves.

Source: transparency-dev/merkle, proof/verify_test.go (the 8 leaves "", 00, 10, 2021, 3031, 40414243, ...
with their roots, inclusion paths and consistency proofs, inherited from Google's certificate-transparency
and trillian Merkle tests). The values are stored in tests/vectors/rfc6962-transparency-dev.json.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ledger import BadProof, MerkleTree, leaf_hash, verify_consistency, verify_inclusion
from ledger.merkle import EMPTY_ROOT, root_of

DATA = json.loads((Path(__file__).resolve().parents[1] / "vectors" / "rfc6962-transparency-dev.json").read_text())
LEAVES = [bytes.fromhex(x) for x in DATA["leaves"]]
ROOTS = [bytes.fromhex(x) for x in DATA["roots"]]


def test_source_is_named() -> None:
    assert "transparency-dev/merkle" in DATA["source"]


def test_empty_tree_root() -> None:
    assert MerkleTree().root() == bytes.fromhex(DATA["empty_root"]) == EMPTY_ROOT


@pytest.mark.parametrize("size", range(1, 9))
def test_roots_of_every_prefix(size: int) -> None:
    tree = MerkleTree(leaf_hash(x) for x in LEAVES)
    assert tree.root(size) == ROOTS[size - 1]
    assert root_of(LEAVES[:size]) == ROOTS[size - 1]


@pytest.mark.parametrize("case", DATA["inclusion"], ids=lambda c: f"{c['index']}of{c['size']}")
def test_published_inclusion_proofs(case: dict) -> None:
    tree = MerkleTree(leaf_hash(x) for x in LEAVES)
    path = [bytes.fromhex(p) for p in case["path"]]
    index, size = case["index"], case["size"]
    assert tree.inclusion_proof(index, size) == path  # generation matches
    verify_inclusion(leaf_hash(LEAVES[index]), index, size, path, ROOTS[size - 1])  # and verification
    # The same corruptions the published suite applies must all be refused.
    root, leaf = ROOTS[size - 1], leaf_hash(LEAVES[index])
    bad = [(leaf, index + 1, size, path, root), (leaf, index, size * 2, path, root),
           (leaf_hash(b"WrongLeaf"), index, size, path, root), (leaf, index, size, path, EMPTY_ROOT),
           (leaf, index, size, [*path, root], root), (leaf, index, size, [root, *path], root)]
    if index > 0:
        bad.append((leaf, index - 1, size, path, root))
    if path:
        bad.append((leaf, index, size, path[:-1], root))
        bad += [(leaf, index, size, [p if j != i else bytes([p[0] ^ 8]) + p[1:] for j, p in enumerate(path)],
                 root) for i in range(len(path))]
    for args in bad:
        with pytest.raises(BadProof):
            verify_inclusion(*args)


@pytest.mark.parametrize("case", DATA["consistency"], ids=lambda c: f"{c['first']}to{c['second']}")
def test_published_consistency_proofs(case: dict) -> None:
    tree = MerkleTree(leaf_hash(x) for x in LEAVES)
    first, second = case["first"], case["second"]
    proof = [bytes.fromhex(p) for p in case["proof"]]
    r1, r2 = ROOTS[first - 1], ROOTS[second - 1]
    assert tree.consistency_proof(first, second) == proof
    verify_consistency(first, second, r1, r2, proof)
    if not proof:
        return
    bad = [(first, second, r2, r1, proof), (first, second, r1, r2, []), (first, second, r1, r2, [*proof, r1]),
           (first, second, r1, r2, [r2, *proof]), (first, second, r1, r2, proof[:-1]),
           (first + 1, second, r1, r2, proof), (first, second * 2, r1, r2, proof)]
    if first > 1:
        bad.append((first - 1, second, r1, r2, proof))
    bad += [(first, second, r1, r2, [p if j != i else bytes([p[0] ^ 16]) + p[1:] for j, p in enumerate(proof)])
            for i in range(len(proof))]
    for args in bad:
        with pytest.raises(BadProof):
            verify_consistency(*args)
