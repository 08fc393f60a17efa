"""Notes on a bundle's checkpoints (FORMAT.md §12.3, notes): a checkpoint no chain of consistency proofs ties to
the largest, and one of size 0 with a root other than MTH({}), are said, and the verdict stays the format's."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from ledger import BundleWriter, ChainBuilder, Checkpoint, Ed25519Signer, sign_checkpoint
from ledger.bundle import Bundle, CheckpointNote, checkpoint_notes, verify_bundle
from ledger.merkle import EMPTY_ROOT

HUB = Ed25519Signer.from_seed(b"\x71" * 32)
DEVICE = Ed25519Signer.from_seed(b"\x72" * 32)
EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"


def _three_checkpoints() -> tuple[BundleWriter, Bundle]:
    """A hub that signed three checkpoints as its log grew; its bundle holds a proof from each to the largest."""
    builder = ChainBuilder(DEVICE, clock=lambda: 100, boot=0)
    writer = BundleWriter(HUB, clock=lambda: 50)
    writer.accept(builder.genesis())
    writer.checkpoint(10)
    writer.accept(builder.append("note", {"text": "a"}))
    writer.checkpoint(20)
    writer.accept(builder.append("note", {"text": "b"}))
    writer.checkpoint(30)
    bundle = writer.bundle(created=40)
    assert [size for size, _, _ in bundle.consistency] == [3, 4]  # hub genesis, approval, device genesis: 3
    return writer, bundle


def _proofs(writer: BundleWriter, *pairs: tuple[int, int]) -> list[tuple[int, int, list[bytes]]]:
    return [(a, b, writer.tree.consistency_proof(a, b)) for a, b in pairs]


def _notes(bundle: Bundle) -> list[tuple[str, int, int]]:
    report = verify_bundle(bundle.sealed(HUB).encode())
    assert report.ok, [str(p) for p in report.all_problems]  # notes never change the verdict
    return [(n.what, n.size, n.largest) for n in report.notes]


def test_a_bundle_with_a_proof_from_each_checkpoint_to_the_largest_has_no_notes() -> None:
    writer, bundle = _three_checkpoints()
    assert _notes(bundle) == []
    # A chain of proofs ties as well as one proof: 3 -> 4 -> 5.
    assert _notes(replace(bundle, consistency=_proofs(writer, (3, 4), (4, 5)))) == []


@pytest.mark.parametrize(("pairs", "untied"), [
    ((), [3, 4]),
    (((4, 5),), [3]),
    (((3, 4),), [3, 4]),  # tied to each other, not to the largest
    (((3, 4), (3, 5)), [4]),  # 3 is a prefix of both 4 and 5, which says nothing of 4 and 5
])
def test_a_checkpoint_no_chain_of_proofs_ties_to_the_largest_is_noted(
        pairs: tuple[tuple[int, int], ...], untied: list[int]) -> None:
    writer, bundle = _three_checkpoints()
    assert _notes(replace(bundle, consistency=_proofs(writer, *pairs))) == [("untied", s, 5) for s in untied]


def test_a_checkpoint_of_size_0_is_noted_only_when_its_root_is_not_the_empty_trees() -> None:
    _, bundle = _three_checkpoints()
    empty = sign_checkpoint(HUB, tree_size=0, root=EMPTY_ROOT, time=5, authority=(0, bytes(32)))
    assert _notes(replace(bundle, checkpoints=[empty.raw, *bundle.checkpoints])) == []
    false = sign_checkpoint(HUB, tree_size=0, root=bytes(range(32)), time=5, authority=(0, bytes(32)))
    assert _notes(replace(bundle, checkpoints=[false.raw, *bundle.checkpoints])) == [("empty_root", 0, 5)]
    report = verify_bundle(replace(bundle, checkpoints=[false.raw, *bundle.checkpoints]).sealed(HUB).encode())
    assert report.to_json()["notes"] == [{
        "note": "empty_root", "size": 0, "largest": 5,
        "message": "checkpoint of size 0 names a root that is not the empty tree's: the hub signed a false statement"}]


def test_notes_are_a_pure_function_of_the_checkpoints_and_the_proofs_that_verified() -> None:
    writer, _ = _three_checkpoints()
    cps: list[Checkpoint] = writer.checkpoints
    assert checkpoint_notes([], []) == []
    assert checkpoint_notes(cps[-1:], []) == []
    # Two checkpoints of the largest size (another iat) are one statement: nothing to tie.
    again = sign_checkpoint(HUB, tree_size=5, root=cps[-1].root, time=31, authority=cps[-1].authority)
    assert checkpoint_notes([*cps, again], [(3, 5), (4, 5)]) == []
    assert checkpoint_notes(cps, [(4, 5)]) == [CheckpointNote(what="untied", size=3, largest=5)]
    assert str(checkpoint_notes(cps, [(4, 5)])[0].message) == (
        "checkpoint of size 3 is not tied to checkpoint of size 5 by a consistency proof: the bundle does not "
        "show that the larger log extends it")


@pytest.mark.parametrize("name", ["example.jejak", "example-older.jejak"])
def test_the_shipped_examples_have_no_notes(name: str) -> None:
    report = verify_bundle((EXAMPLES / name).read_bytes())
    assert report.ok and len(report.checkpoints) >= 2 and report.notes == []
