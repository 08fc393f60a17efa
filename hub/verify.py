"""Signature checks spread over a process pool, for catch-up ranges large enough to pay for it."""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor

from ledger import BadSignature, Record, check_signatures
from ledger.cose import verify_signature


def _first_bad(triples: list[tuple[bytes, bytes, bytes]]) -> int:
    """Index of the first signature that does not verify, or -1. Runs in a worker process."""
    for i, (key, signature, signed) in enumerate(triples):
        try:
            verify_signature(key, signature, signed)
        except Exception:
            return i
    return -1


class ParallelVerifier:
    """A `check` for ledger.acceptance.accept: small batches stay in-process, large ones go to every core."""

    def __init__(self, workers: int | None = None, *, min_batch: int = 256) -> None:
        self.workers = workers or os.cpu_count() or 1
        self.min_batch = min_batch
        self._pool: ProcessPoolExecutor | None = None

    def __call__(self, pairs: Sequence[tuple[Record, bytes]]) -> None:
        if len(pairs) < self.min_batch or self.workers < 2:
            check_signatures(pairs)
            return
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.workers)
        triples = [(key, rec.signature, rec.signed_bytes) for rec, key in pairs]
        size = -(-len(triples) // self.workers)
        chunks = [triples[i:i + size] for i in range(0, len(triples), size)]
        for n, bad in enumerate(self._pool.map(_first_bad, chunks)):
            if bad >= 0:
                rec = pairs[n * size + bad][0]
                raise BadSignature("Ed25519 signature does not verify", where=rec.where)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None
