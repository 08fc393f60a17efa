"""The Merkle summary of heads: one root over 256 buckets, the buckets that changed, strict decoding."""

from __future__ import annotations

import hashlib

import pytest

from ledger.errors import MalformedRecord, SyncError
from ledger.summary import (
    HeadsSummary,
    bucket_matches,
    bucket_of,
    decode_buckets,
    decode_root,
    encode_buckets,
    encode_root,
)
from ledger.sync import Head


def head(i: int, length: int = 1) -> Head:
    device = hashlib.sha256(i.to_bytes(4, "big")).digest()[:16]
    return Head(device_id=device, length=length, head=hashlib.sha256(device + length.to_bytes(8, "big")).digest())


HEADS = [head(i) for i in range(1000)]


def test_the_summary_moves_with_any_head_and_names_its_bucket():
    before = HeadsSummary.of(HEADS)
    assert before.count == 1000 and sum(c for _, c in before.buckets.values()) == 1000
    assert HeadsSummary.of(list(reversed(HEADS))) == before, "device id order, whatever order they come in"
    assert before.changed(before) == []
    grown = HEADS[:]
    grown[417] = head(417, length=2)
    after = HeadsSummary.of(grown)
    assert after.root != before.root and after.changed(before) == [bucket_of(HEADS[417].device_id)]
    added = HeadsSummary.of([*HEADS, head(5000)])
    assert added.changed(before) == [bucket_of(head(5000).device_id)] and added.count == 1001
    assert HeadsSummary.of(HEADS[1:]).changed(before) == [bucket_of(HEADS[0].device_id)]
    assert HeadsSummary.of([]).count == 0 and HeadsSummary.of([]).buckets == {}


def test_wire_round_trip_and_refusals():
    summary = HeadsSummary.of(HEADS)
    assert decode_root(encode_root(summary)) == (summary.root, 1000)
    assert decode_buckets(encode_buckets(summary)) == summary
    assert len(encode_root(summary)) < 48, "what an unchanged region costs a round"
    lying = HeadsSummary(root=HeadsSummary.of(HEADS[1:]).root, count=1000, buckets=summary.buckets)
    with pytest.raises(MalformedRecord, match="do not give the root"):
        decode_buckets(encode_buckets(lying))
    with pytest.raises(SyncError):
        decode_root(b"\x83\x05\x41\x00\x01")
    with pytest.raises(SyncError):
        decode_buckets(encode_root(summary))


def test_a_bucket_s_heads_are_checked_against_the_summary():
    summary = HeadsSummary.of(HEADS)
    b = bucket_of(HEADS[3].device_id)
    bucket = [h for h in HEADS if bucket_of(h.device_id) == b]
    assert bucket_matches(list(reversed(bucket)), b, summary)
    assert not bucket_matches(bucket[1:], b, summary), "moved on since the summary"
    empty = next(x for x in range(256) if x not in summary.buckets)
    assert bucket_matches([], empty, summary)
    with pytest.raises(SyncError, match="outside the bucket"):
        bucket_matches([*bucket, HEADS[0] if bucket_of(HEADS[0].device_id) != b else HEADS[1]], b, summary)
