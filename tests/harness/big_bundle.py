"""Writes a verifiable audit bundle of a chosen size, for measuring `jejak-verify` on large bundles: notes from
four devices, one checkpoint, a receipt per record, made with ledger alone and written a log at a time.

    python -m tests.harness.big_bundle --mb 250 --out big.jejak
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import BinaryIO

from ledger import BundleEncoder, BundleWriter, ChainBuilder, Ed25519Signer, LogExport, make_receipt

HUB = Ed25519Signer.from_seed(b"\x42" * 32)
DEVICES = 4
# About what one note costs in the bundle: the record (a 400-byte text) and its receipt (its inclusion path
# grows with the log: this is at 100,000 to 200,000 records).
BYTES_PER_RECORD = 1_430


def write_bundle(out: BinaryIO, records: int, *, text: int = 400) -> int:
    """Write a bundle of `records` notes (plus the devices' genesis records) to the seekable `out`; returns
    its size in bytes."""
    clock = {"now": 1_763_870_400}
    writer = BundleWriter(HUB, clock=lambda: clock["now"])
    builders = [ChainBuilder(Ed25519Signer.from_seed(bytes([i + 1]) * 32), clock=lambda: clock["now"], boot=1)
                for i in range(DEVICES)]
    writer.accept(*(b.genesis() for b in builders))
    for i in range(records):
        clock["now"] += 1
        writer.accept(builders[i % DEVICES].append("note", {"text": f"{i:08d} " + "x" * text}), decide=False)
    cp = writer.checkpoint(clock["now"])
    hub_id = writer.own.authority.hub_id
    base = out.tell()
    encoder = BundleEncoder(description=f"{records} notes")
    out.write(encoder.start(DEVICES))
    for b in builders:
        recs = [r for r in writer.leaves if r.device_id == b.device_id]
        out.write(encoder.log(LogExport(device_id=b.device_id, keys=[recs[0].raw], records=[r.raw for r in recs])))
    out.write(encoder.fields(forks=[], created=clock["now"] + 60, hub_key=HUB.public_key,
                             hub_log=[r.raw for r in writer.leaves if r.device_id == hub_id]))
    out.write(encoder.receipts(len(writer.leaves)))
    for i, rec in enumerate(writer.leaves):
        out.write(encoder.receipt(rec.id, make_receipt(cp, i, writer.tree.inclusion_proof(i, cp.tree_size))))
    out.write(encoder.tail(checkpoints=[cp.raw], consistency=[]))
    end = out.tell()
    out.seek(base + encoder.seal_at)
    out.write(encoder.seal(HUB))
    out.seek(end)
    return end - base


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mb", type=float, required=True, help="about how many megabytes (10^6 bytes) to write")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    with args.out.open("wb") as out:
        size = write_bundle(out, int(args.mb * 1e6 / BYTES_PER_RECORD))
    print(f"{args.out}: {size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
