"""Hostile and telling bundles for jejak-verify and the page, made with ledger alone: one with a great many bad
checkpoint entries, one whose device log fails part way, and pairs for --against (a device revoked since the
older bundle; a hub log that shrank)."""

from __future__ import annotations

import hashlib
from dataclasses import replace

from ledger import BundleWriter, ChainBuilder, Ed25519Signer
from ledger.authority import Decision
from ledger.bundle import Bundle

HUB = Ed25519Signer.from_seed(b"\x81" * 32)
DEVICE = Ed25519Signer.from_seed(b"\x82" * 32)


def _writer(records: int) -> tuple[BundleWriter, ChainBuilder]:
    builder = ChainBuilder(DEVICE, clock=lambda: 1_000, boot=0)
    writer = BundleWriter(HUB, clock=lambda: 900)
    writer.accept(builder.genesis())
    for i in range(records - 1):
        writer.accept(builder.append("note", {"text": f"n{i}"}))
    return writer, builder


def many_bad_checkpoints(n: int, field: str = "checkpoints") -> bytes:
    """A genuine, sealed bundle whose `checkpoints` (or `forks`) also holds `n` empty byte strings, or whose
    `consistency` holds `n` entries naming sizes no checkpoint has: `n` problems of one step."""
    writer, _ = _writer(3)
    writer.checkpoint(950)
    bundle = writer.bundle(created=960)
    if field == "checkpoints":
        bundle = replace(bundle, checkpoints=[*bundle.checkpoints, *[b""] * n])
    elif field == "forks":
        bundle = replace(bundle, forks=[b""] * n)
    else:
        bundle = replace(bundle, consistency=[(1, 2, [])] * n)
    return bundle.sealed(HUB).encode()


def failing_device(records: int = 10, bad: int = 6) -> bytes:
    """A sealed bundle whose one device log has `records` records, the one at seq `bad` with its signature
    spoiled: seq 0..bad-1 verify."""
    writer, _ = _writer(records)
    writer.checkpoint(950)
    bundle = writer.bundle(created=960)
    [log] = bundle.logs
    raw = bytearray(log.records[bad])
    raw[-1] ^= 0x01  # the last byte of the signature
    spoiled = replace(log, records=[*log.records[:bad], bytes(raw), *log.records[bad + 1:]])
    return replace(bundle, logs=[spoiled]).sealed(HUB).encode()


def revoked_since(records: int = 10, revoked: int = 4) -> tuple[bytes, bytes]:
    """(older, newer): the older bundle verifies seq 0..records-1; the newer revokes the device from `revoked`."""
    writer, builder = _writer(records)
    writer.checkpoint(950)
    older = writer.bundle(created=960).encode()
    writer.decide(Decision(action="revoke", device_id=builder.device_id, from_seq=revoked))
    writer.checkpoint(970)
    newer = writer.bundle(created=980)
    # The hub exports what it still accepts: the device's records before the revocation point.
    [log] = newer.logs
    kept = replace(log, records=log.records[:revoked])
    held = {hashlib.sha256(r).digest() for r in [*kept.records, *newer.hub_log]}
    newer = replace(newer, logs=[kept], receipts=[(rid, r) for rid, r in newer.receipts if rid in held])
    return older, newer.sealed(HUB).encode()


def shrunk(*, newer_created_later: bool) -> tuple[bytes, bytes]:
    """(older, newer) where the older bundle's log is the larger: the hub's log shrank since (newer created
    later), or the two are given the wrong way round (older created later)."""
    writer, builder = _writer(3)
    writer.checkpoint(950)
    writer.accept(builder.append("note", {"text": "more"}))
    writer.checkpoint(970)
    small: Bundle = writer.bundle(upto=0, created=960)
    large: Bundle = writer.bundle(created=980)
    if newer_created_later:
        small = replace(small, created=990).sealed(HUB)
    return large.encode(), small.encode()
