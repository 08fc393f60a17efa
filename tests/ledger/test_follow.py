"""Following a hub by its checkpoints: each step judged from the checkpoints and proofs alone."""

from __future__ import annotations

import cbor2
import pytest

from ledger import Ed25519Signer, MerkleTree, make_receipt, sign_checkpoint
from ledger.errors import BadCheckpoint, BadProof, MalformedRecord, SplitView, VerificationError
from ledger.follow import (
    SplitViewEvidence,
    Step,
    decode_consistency_answer,
    decode_witness_answer,
    encode_witness_answer,
    follow,
    proof_needed,
    receipt_checkpoint,
    verify_split_view,
    witness,
)

SIGNER = Ed25519Signer.from_seed(b"\x31" * 32)
KEY = SIGNER.public_key


def tree_of(leaves: list[bytes]) -> MerkleTree:
    tree = MerkleTree()
    for leaf in leaves:
        tree.append(leaf)
    return tree


def checkpoint(tree: MerkleTree, size: int, signer: Ed25519Signer = SIGNER):
    return sign_checkpoint(signer, tree_size=size, root=tree.root(size), time=size)


LEAVES = [f"record {i}".encode() for i in range(40)]
TREE = tree_of(LEAVES)


def test_a_growing_log_is_followed_step_by_step():
    first, second, third = (checkpoint(TREE, n) for n in (7, 19, 40))
    accepted = []
    assert proof_needed(accepted, first) is None
    assert follow(accepted, first, [], KEY) is Step.FIRST
    accepted.append(first)
    assert proof_needed(accepted, second) == (7, 19)
    assert follow(accepted, second, TREE.consistency_proof(7, 19), KEY) is Step.ADVANCED
    accepted.append(second)
    assert follow(accepted, third, TREE.consistency_proof(19, 40), KEY) is Step.ADVANCED
    accepted.append(third)
    assert proof_needed(accepted, third) is None
    assert follow(accepted, third, [], KEY) is Step.UNCHANGED
    older = checkpoint(TREE, 11)  # one never accepted, that the accepted log extends: a replay
    assert proof_needed(accepted, older) == (11, 40)
    assert follow(accepted, older, TREE.consistency_proof(11, 40), KEY) is Step.BEHIND


def test_a_rewritten_history_is_a_split_view_with_its_evidence():
    accepted = [checkpoint(TREE, 7), checkpoint(TREE, 19)]
    rewritten = tree_of([*LEAVES[:5], b"rewritten", *LEAVES[6:]])
    bigger = checkpoint(rewritten, 30)
    proof = rewritten.consistency_proof(19, 30)  # the best the rewriting hub can offer
    with pytest.raises(SplitView) as caught:
        follow(accepted, bigger, proof, KEY)
    evidence = caught.value.evidence
    assert caught.value.code == "SPLIT_VIEW"
    assert evidence.accepted.raw == accepted[-1].raw and evidence.offered.raw == bigger.raw
    assert not evidence.conclusive
    kept = verify_split_view(evidence.encode(), KEY)
    assert kept.offered.tree_size == 30 and kept.proof == tuple(proof)
    # At an old size the two roots are all it takes.
    same_size = checkpoint(rewritten, 7)
    assert proof_needed(accepted, same_size) is None
    with pytest.raises(SplitView) as caught:
        follow(accepted, same_size, [], KEY)
    assert caught.value.evidence.conclusive
    assert verify_split_view(caught.value.evidence.encode(), KEY).accepted.raw == accepted[0].raw
    with pytest.raises(SplitView):  # an older size not accepted before, that the accepted log does not extend
        follow(accepted, checkpoint(rewritten, 12), rewritten.consistency_proof(12, 19), KEY)


def test_evidence_that_proves_nothing_is_refused():
    accepted = [checkpoint(TREE, 7)]
    bigger = checkpoint(TREE, 19)
    with pytest.raises(SplitView) as caught:  # a proof damaged in transit: caught, but as claimed evidence
        follow(accepted, bigger, [b"\x00" * 32] * 3, KEY)
    evidence = caught.value.evidence
    honest = SplitViewEvidence(accepted=evidence.accepted, offered=evidence.offered,
                               proof=tuple(TREE.consistency_proof(7, 19)))
    with pytest.raises(VerificationError, match="show no split view"):
        verify_split_view(honest.encode(), KEY)
    with pytest.raises(BadCheckpoint):
        verify_split_view(evidence.encode(), Ed25519Signer.from_seed(b"\x32" * 32).public_key)


def test_a_checkpoint_under_another_key_is_refused():
    stranger = Ed25519Signer.from_seed(b"\x33" * 32)
    with pytest.raises(BadCheckpoint):
        follow([], checkpoint(TREE, 7, stranger), [], KEY)
    accepted = [checkpoint(TREE, 7)]
    with pytest.raises(BadCheckpoint):
        follow(accepted, checkpoint(TREE, 19, stranger), TREE.consistency_proof(7, 19), KEY)


def test_a_receipt_gives_its_checkpoint_and_refuses_a_tampered_record():
    cp = checkpoint(TREE, 40)
    receipt = make_receipt(cp, 13, TREE.inclusion_proof(13, 40))
    verified, under = receipt_checkpoint(receipt, LEAVES[13], KEY)
    assert verified.index == 13 and under.raw == cp.raw, "the receipt's own signed checkpoint, byte for byte"
    with pytest.raises(BadProof):
        receipt_checkpoint(receipt, LEAVES[13] + b"!", KEY)
    with pytest.raises(BadProof):
        receipt_checkpoint(receipt, LEAVES[14], KEY)


@pytest.mark.parametrize(("current_size", "rewritten_at", "kept"), [
    (40, None, [3, 7, 19, 30]),  # the log went on: everything accepted is still in it
    (25, None, [3, 7, 19]),  # restored from a backup: the last accepted checkpoint is past its end
    (40, 10, [3, 7]),  # rewritten from leaf 10 on
    (40, 0, []),  # another log altogether
    (19, None, [3, 7, 19]),  # one of the same size: no proof needed for it
])
def test_a_rebase_finds_what_the_current_log_still_holds(current_size, rewritten_at, kept):
    from ledger.follow import Rebase

    accepted = [checkpoint(TREE, n) for n in (3, 7, 19, 30)]
    leaves = list(LEAVES) if rewritten_at is None else [*LEAVES[:rewritten_at], b"other", *LEAVES[rewritten_at + 1:]]
    current_tree = tree_of(leaves)
    rebase = Rebase(accepted, checkpoint(current_tree, current_size), KEY)
    asked = []
    while (need := rebase.wanted()) is not None:
        asked.append(need)
        rebase.receive([] if need[0] == need[1] else current_tree.consistency_proof(*need))
    assert [c.tree_size for c in rebase.kept] == kept
    assert [c.tree_size for c in rebase.dropped] == [n for n in (3, 7, 19, 30) if n not in kept]
    assert len(asked) <= 3, "a binary search over the accepted checkpoints"
    with pytest.raises(ValueError):
        rebase.receive([])


def test_a_rebase_of_a_checkpoint_under_another_key_is_refused():
    from ledger.errors import BadCheckpoint
    from ledger.follow import Rebase

    other = Ed25519Signer.from_seed(b"\x32" * 32)
    with pytest.raises(BadCheckpoint):
        Rebase([checkpoint(TREE, 7)], checkpoint(TREE, 19, other), KEY)


def test_a_resume_decision_round_trips_and_names_the_stretch_not_in_view():
    from ledger import MalformedRecord
    from ledger.follow import RegionResume, decode_resume, evidence_id

    cps = [checkpoint(TREE, n) for n in (7, 19, 30, 40)]
    decision = RegionResume(hub_id=cps[0].hub_id, at=5, by="Ani", why="restored", token="ab" * 8, pinned=cps[3],
                            kept=(cps[0],), dropped=(cps[1], cps[2]), resolves=(evidence_id(b"evidence"),))
    again = decode_resume(decision.encode())
    assert again == decision and again.not_in_view == (7, 30)
    assert again.to_json()["not_in_view"] == {"from": 7, "to": 30}
    assert RegionResume(hub_id=cps[0].hub_id, at=5, by="", why="", token="", pinned=cps[3], kept=tuple(cps[:3]),
                        dropped=(), resolves=(b"\x00" * 32,)).not_in_view is None
    with pytest.raises(MalformedRecord):
        decode_resume(b"\x80")
    with pytest.raises(MalformedRecord):
        RegionResume(hub_id=b"\x01" * 16, at=5, by="", why="", token="", pinned=cps[3], kept=(), dropped=(),
                     resolves=(b"\x00" * 32,))


def test_one_size_with_one_root_is_no_evidence_whatever_the_proof():
    # Before the fix an honest checkpoint given twice, with one junk proof entry, verified as conclusive
    # split-view evidence: the failed proof was taken for the split (FORMAT.md §10.1: one size, two roots).
    cp = checkpoint(TREE, 7)
    again = sign_checkpoint(SIGNER, tree_size=7, root=TREE.root(7), time=99)
    for offered in (cp, again):
        for proof in ((), (b"\x00" * 32,)):
            claimed = SplitViewEvidence(accepted=cp, offered=offered, proof=proof)
            with pytest.raises(VerificationError, match="one root show no split view"):
                verify_split_view(claimed.encode(), KEY)
    other = sign_checkpoint(SIGNER, tree_size=7, root=TREE.root(8), time=99)
    assert verify_split_view(SplitViewEvidence(accepted=cp, offered=other, proof=()).encode(), KEY).conclusive


def test_a_witness_takes_the_hubs_answer_only_if_it_extends_the_held_checkpoint():
    held = checkpoint(TREE, 19)
    answer = encode_witness_answer(checkpoint(TREE, 40), TREE.consistency_proof(19, 40))
    shown, proof = decode_witness_answer(answer)
    assert witness(held, shown, proof, KEY) is Step.ADVANCED
    assert witness(None, shown, (), KEY) is Step.FIRST
    assert witness(held, held, (), KEY) is Step.UNCHANGED
    # Smaller than the held one, even with a proof that holds: a hub answers its latest, so it went backwards.
    with pytest.raises(SplitView) as caught:
        witness(held, checkpoint(TREE, 11), TREE.consistency_proof(11, 19), KEY)
    assert "backwards" in caught.value.message
    rewritten = tree_of([*LEAVES[:5], b"rewritten", *LEAVES[6:]])
    with pytest.raises(SplitView):
        witness(held, checkpoint(rewritten, 40), rewritten.consistency_proof(19, 40), KEY)
    with pytest.raises(BadCheckpoint):
        witness(held, checkpoint(TREE, 40, Ed25519Signer.from_seed(b"\x32" * 32)), (), KEY)


@pytest.mark.parametrize("answer", [cbor2.dumps([b"not a checkpoint", []]), cbor2.dumps([checkpoint(TREE, 4).raw]),
                                    cbor2.dumps([checkpoint(TREE, 4).raw, [b"short"]]),
                                    cbor2.dumps([checkpoint(TREE, 4).raw, [b"\0" * 32] * 129]), b"\xff"])
def test_a_witness_answer_of_another_shape_is_malformed(answer):
    with pytest.raises(MalformedRecord):
        decode_witness_answer(answer)


def test_a_consistency_answer_proves_only_the_sizes_asked():
    tree = tree_of([bytes([i]) * 8 for i in range(7)])
    proof = tree.consistency_proof(3, 7)
    assert decode_consistency_answer(cbor2.dumps([3, 7, proof]), 3, 7) == tuple(proof)
    with pytest.raises(BadProof, match="from 3 to 7, got 2 to 7"):
        decode_consistency_answer(cbor2.dumps([2, 7, proof]), 3, 7)
    for bad in (b"", b"\xff", cbor2.dumps([3, 7]), cbor2.dumps([3, True, proof]), cbor2.dumps([3, 7, ["x"]])):
        with pytest.raises(BadProof, match="expected \\[first size, second size, \\[hashes\\]\\]"):
            decode_consistency_answer(bad, 3, 7)
