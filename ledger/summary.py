"""A Merkle summary of a node's log heads: one root over 256 buckets of heads (by the device id's first byte, in
device id order), so two hubs compare every log in one hash and drill down into the buckets that differ."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from . import cbor
from .errors import MalformedRecord, SyncError
from .sync import Head

MSG_SUMMARY = 5
BUCKETS = 256
_LEAF, _NODE = b"\x00", b"\x01"  # domain separation: a bucket's hash is never taken for the root's


def bucket_of(device_id: bytes) -> int:
    return device_id[0]


def bucket_hash(heads: Iterable[Head]) -> bytes:
    """The hash of one bucket's heads, in device id order."""
    h = hashlib.sha256(_LEAF)
    for head in heads:
        h.update(head.device_id + head.length.to_bytes(8, "big") + head.head)
    return h.digest()


def summary_root(buckets: Mapping[int, tuple[bytes, int]]) -> bytes:
    """The root over the non-empty buckets' (hash, number of logs), in bucket order."""
    h = hashlib.sha256(_NODE)
    for b in sorted(buckets):
        digest, count = buckets[b]
        h.update(bytes([b]) + digest + count.to_bytes(8, "big"))
    return h.digest()


@dataclass(frozen=True, slots=True, kw_only=True)
class HeadsSummary:
    """The root, how many logs it covers, and each non-empty bucket's hash and number of logs."""

    root: bytes
    count: int
    buckets: Mapping[int, tuple[bytes, int]]

    @classmethod
    def of(cls, heads: Sequence[Head]) -> HeadsSummary:
        grouped: dict[int, list[Head]] = {}
        for head in sorted(heads, key=lambda h: h.device_id):
            grouped.setdefault(bucket_of(head.device_id), []).append(head)
        return cls.of_buckets(grouped)

    @classmethod
    def of_buckets(cls, grouped: Mapping[int, Sequence[Head]]) -> HeadsSummary:
        """From heads already grouped by bucket, each bucket in device id order."""
        buckets = {b: (bucket_hash(hs), len(hs)) for b, hs in grouped.items() if hs}
        return cls(root=summary_root(buckets), count=sum(c for _, c in buckets.values()), buckets=buckets)

    def changed(self, before: HeadsSummary) -> list[int]:
        """The buckets whose logs are not as they were in `before` (new, grown, or gone)."""
        return [b for b in range(BUCKETS) if self.buckets.get(b) != before.buckets.get(b)]


def encode_root(summary: HeadsSummary) -> bytes:
    return cbor.encode([MSG_SUMMARY, summary.root, summary.count])


def encode_buckets(summary: HeadsSummary) -> bytes:
    return cbor.encode([MSG_SUMMARY, summary.root, summary.count,
                        {b: [digest, count] for b, (digest, count) in sorted(summary.buckets.items())}])


def decode_root(data: bytes) -> tuple[bytes, int]:
    item = cbor.decode(data, what="heads summary")
    if (not isinstance(item, list) or len(item) not in (3, 4) or item[0] != MSG_SUMMARY
            or not isinstance(item[1], bytes) or len(item[1]) != 32 or type(item[2]) is not int or item[2] < 0):
        raise SyncError(f"heads summary: expected [{MSG_SUMMARY}, 32-byte root, number of logs, ...]")
    return item[1], item[2]


def decode_buckets(data: bytes) -> HeadsSummary:
    """A summary with its buckets; the root must be the one the buckets give, so a drill-down cannot be told
    one thing by the root and another by the buckets."""
    root, count = decode_root(data)
    item = cbor.decode(data, what="heads summary")
    if len(item) != 4 or not isinstance(item[3], dict):
        raise SyncError("heads summary: expected its buckets as {bucket: [hash, number of logs]}")
    buckets: dict[int, tuple[bytes, int]] = {}
    for b, entry in item[3].items():
        if (type(b) is not int or not 0 <= b < BUCKETS or not isinstance(entry, list) or len(entry) != 2
                or not isinstance(entry[0], bytes) or len(entry[0]) != 32 or type(entry[1]) is not int
                or entry[1] <= 0):
            raise SyncError("heads summary: a bucket must be 0..255 -> [32-byte hash, number of logs > 0]")
        buckets[b] = (entry[0], entry[1])
    if summary_root(buckets) != root or sum(c for _, c in buckets.values()) != count:
        raise MalformedRecord("heads summary: the buckets do not give the root and count it claims")
    return HeadsSummary(root=root, count=count, buckets=buckets)


def bucket_matches(heads: Sequence[Head], bucket: int, summary: HeadsSummary) -> bool:
    """Whether the heads a peer sent for `bucket` are the ones its summary stands for (False when its logs
    moved on between the two answers: the drill-down is then taken again next round). A head outside the
    bucket is a protocol error."""
    if any(bucket_of(h.device_id) != bucket for h in heads):
        raise SyncError(f"heads of bucket {bucket}: a device id outside the bucket")
    expected = summary.buckets.get(bucket)
    got = (bucket_hash(sorted(heads, key=lambda h: h.device_id)), len(heads)) if heads else None
    return expected == got
