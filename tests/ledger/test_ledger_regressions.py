"""Regression tests for ledger bugs found by the property tests and the fuzz targets (tests/harness/fuzz.py); each
failed before its fix."""

from __future__ import annotations

import dataclasses

import pytest

import ledger
from ledger import cbor


def test_chain_state_from_cbor_with_wrong_types_is_malformed() -> None:
    # Before the fix: TypeError (len of None) or ValueError from __post_init__, not MalformedRecord.
    for item in ([None, 0, bytes(32), b"", 0, 0], [bytes(15), 0, bytes(32), b"", 0, 0],
                 [bytes(16), -1, bytes(32), b"", 0, 0], [bytes(16), 0, b"", b"", 0, 0],
                 [bytes(16), True, bytes(32), b"", 0, 0], [bytes(16), 0, bytes(32), b"", "0", 0]):
        with pytest.raises(ledger.MalformedRecord):
            ledger.ChainState.from_cbor(cbor.encode(item))


HUB = ledger.Ed25519Signer.from_seed(bytes(range(7, 39)))


def _bundle_of(*records: ledger.Record, forks: tuple[bytes, ...] = ()) -> bytes:
    """A hub's bundle of `records` (one device), the hub's own log and a checkpoint included."""
    writer = ledger.BundleWriter(HUB, clock=lambda: 1)
    writer.accept(*records)
    writer.checkpoint(2)
    return dataclasses.replace(writer.bundle(created=3), forks=list(forks)).sealed(HUB).encode()


def _bundle_map() -> dict[str, object]:
    signer = ledger.Ed25519Signer.from_seed(bytes(32))
    b = ledger.ChainBuilder(signer, clock=lambda: 1, boot=0)
    item = cbor.decode(_bundle_of(b.genesis()))
    assert isinstance(item, dict)
    return item


@pytest.mark.parametrize("path, value", [
    (("logs", 0, "device"), None),  # was AttributeError: 'NoneType' object has no attribute 'hex'
    (("logs", 0, "revoked_from"), [1]),  # was TypeError: '>=' not supported between int and list
    (("logs", 0, "bodies"), [[1, 2]]),  # bytes(2) silently became two zero bytes
    (("consistency",), [[[1], 2, []]]),  # was TypeError: unhashable type: 'list'
    (("hub_key",), "key"),
    (("receipts",), [[1, b""]]),
    (("created",), "yesterday"),
])
def test_bundle_fields_of_the_wrong_type_are_malformed(path: tuple[object, ...], value: object) -> None:
    item = _bundle_map()
    target: object = item
    for step in path[:-1]:
        target = target[step]  # type: ignore[index]
    target[path[-1]] = value  # type: ignore[index]
    data = cbor.encode(item)
    with pytest.raises(ledger.MalformedRecord):
        ledger.decode_bundle(data)
    with pytest.raises(ledger.MalformedRecord):
        ledger.verify_bundle(data)


def test_unmodified_bundle_map_still_verifies() -> None:
    assert ledger.verify_bundle(cbor.encode(_bundle_map())).ok


def _genesis_note(text: str, *, detach: bool = False) -> ledger.Record:
    signer = ledger.Ed25519Signer.from_seed(bytes(range(32)))
    return ledger.encode_record(signer, device_id=ledger.device_id_for(signer.public_key), seq=0, prev=bytes(32),
                                time=1, boot=1, kind="note", body={"text": text}, detach=detach)


def test_fork_evidence_of_two_non_key_genesis_records_is_a_typed_error() -> None:
    # Before the fix: KeyError 'pubkey' from ForkEvidence.verify, and so from verify_bundle.
    raw = cbor.encode([_genesis_note("a").raw, _genesis_note("b").raw])
    evidence = ledger.ForkEvidence.from_cbor(raw)
    for key in (None, bytes(32)):
        with pytest.raises(ledger.BrokenChain):
            evidence.verify(key)
    report = ledger.verify_bundle(_bundle_of(forks=(raw,)))
    assert [p.code for p in report.all_problems] == ["BROKEN_CHAIN"]


@pytest.mark.parametrize("detach", [False, True])
def test_bundle_whose_key_list_starts_with_a_non_key_record_is_unknown_key(detach: bool) -> None:
    # Before the fix: KeyError 'pubkey' escaped verify_bundle (the detached case was caught as a TypeError).
    rec = _genesis_note("a", detach=detach)
    report = ledger.verify_bundle(_bundle_of(rec))
    assert [p.code for p in report.all_problems] == ["UNKNOWN_KEY"]


@pytest.mark.parametrize("item", [[True, 1, []], [1, True, []]])
def test_heads_message_with_true_for_an_integer_is_refused(item: list[object]) -> None:
    # Before the fix: [1, true, []] was accepted (True == 1 in Python), a heads message no node encodes.
    from ledger.sync import decode_heads

    with pytest.raises(ledger.SyncError):
        decode_heads(cbor.encode(item))


def test_plan_of_a_peer_claiming_a_huge_log_is_one_fetch() -> None:
    # Before the fix: plan() chunked the peer's claimed length up front, 512 records per Fetch, so a heads
    # answer claiming 2**64 - 1 records took all memory (found reading plan while writing the sync_heads target).
    from ledger.sync import Fetch, Head, decode_heads, encode_heads, plan

    dev = bytes(range(16))
    claim = decode_heads(encode_heads([Head(device_id=dev, length=2**64 - 1, head=bytes(32))]))
    assert plan({}, claim) == [Fetch(dev, 0, 2**64 - 1)]
    mine = {dev: Head(device_id=dev, length=10, head=bytes(range(32)))}
    assert plan(mine, claim) == [Fetch(dev, 9, 2**64 - 1)]  # one record of overlap


def test_plan_pushes_the_own_logs_last_record_where_the_peer_holds_as_many_with_another_head() -> None:
    # Before the fix: plan() pushed only a log longer than the peer's, so a copy of a device's card that signed as
    # many records as the hub held from the other copy pushed nothing, and the hub never saw the fork.
    from ledger.sync import Fetch, Head, Push, plan

    own, replica = bytes(range(16)), bytes(range(1, 17))
    mine = {d: Head(device_id=d, length=5, head=b"\x01" * 32) for d in (own, replica)}
    theirs = [Head(device_id=d, length=5, head=b"\x02" * 32) for d in (own, replica)]
    # Pushing only (an edge to its hub): the own log's last record, as the range [4, 5). Another log's fork is
    # between two other copies: nothing goes.
    assert plan(mine, theirs, pull=False, own=own) == [Push(own, 4, 5)]
    assert plan(mine, theirs, pull=False) == []
    # Pulling (edge to edge), as before: the peer's last record of each is fetched, the evidence kept here.
    assert plan(mine, theirs, own=own) == [Fetch(own, 4, 5), Fetch(replica, 4, 5)]
    assert plan(mine, theirs, push=False, pull=False, own=own) == []
    assert plan(mine, theirs, pull=False, own=own, blocked=frozenset({own})) == []  # forked here already
    # The same head: nothing to do.
    same = [Head(device_id=d, length=5, head=b"\x01" * 32) for d in (own, replica)]
    assert plan(mine, same, own=own) == plan(mine, same, pull=False, own=own) == []


def test_receipts_under_the_later_of_two_checkpoints_of_one_size_verify() -> None:
    # A hub may sign one tree size twice (another iat, FORMAT.md §12.3 step 8 takes any checkpoint of step 3).
    # Before the fix the verifier kept the first checkpoint of each size and refused receipts under the
    # later one as INVALID_PROOF.
    b = ledger.ChainBuilder(ledger.Ed25519Signer.from_seed(bytes(32)), clock=lambda: 1, boot=0)
    writer = ledger.BundleWriter(HUB, clock=lambda: 1)
    writer.accept(b.genesis(), b.append("note", {"text": "a"}))
    first, second = writer.checkpoint(2), writer.checkpoint(3)
    assert (first.tree_size, first.root) == (second.tree_size, second.root) and first.raw != second.raw
    report = ledger.verify_bundle(writer.bundle(created=4).encode())
    assert report.ok, [str(p) for p in report.all_problems]
    assert report.receipts_checked == 4
