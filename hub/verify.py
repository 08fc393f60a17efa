"""Signature checks spread over a process pool, for catch-up ranges large enough to pay for it."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor

from ledger import BadSignature, LedgerError, Record, check_signatures
from ledger.cose import verify_signature
from ledger.record import signature_parts


def _first_bad(triples: list[tuple[bytes, bytes, bytes]]) -> int:
    """Index of the first signature that does not verify, or -1. Runs in a worker process."""
    for i, (key, signature, signed) in enumerate(triples):
        try:
            verify_signature(key, signature, signed)
        except Exception:
            return i
    return -1


def _verifies(triples: list[tuple[bytes, bytes, bytes]]) -> list[bool]:
    """Whether each (key, signature, signed bytes) verifies. Runs in a worker process."""
    out = []
    for key, signature, signed in triples:
        try:
            verify_signature(key, signature, signed)
            out.append(True)
        except Exception:
            out.append(False)
    return out


class CrossLogVerifier:
    """Signature checks for many logs' ranges at once, spread over worker processes, ahead of ingest.

    A national pull brings many short logs a request; each log alone is too short for ParallelVerifier.
    `ahead` checks every record's signature against the key its log is expected to be signed with (the held
    key, or a new log's genesis key) on all cores, and returns a `check` for Hub.ingest that finds those
    done and checks only the rest itself (a record after a rotation, a guess that was wrong). The single
    sequencer (Hub.ingest) still decides every record, so a wrong guess costs time, never acceptance.
    """

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or os.cpu_count() or 1
        self._pool: ProcessPoolExecutor | None = None

    def ahead(self, items: Sequence[tuple[bytes, Sequence[Record]]],
              keys: dict[bytes, bytes]) -> Callable[[Sequence[tuple[Record, bytes]]], None]:
        """`items`: (device id, decoded records); `keys`: each held log's current key (new logs: none)."""
        triples = []
        for device_id, records in items:
            key = keys.get(device_id)
            for rec in records:
                if rec.seq == 0 and rec.kind == "key" and isinstance(rec.body, dict):
                    key = rec.body.get("pubkey")
                if isinstance(key, bytes):
                    triples.append((key, rec.signature, rec.signed_bytes))
        if self.workers < 2 or len(triples) < 64:
            return check_signatures
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.workers)
        size = -(-len(triples) // self.workers)
        chunks = [triples[i:i + size] for i in range(0, len(triples), size)]
        done = {t for chunk, oks in zip(chunks, self._pool.map(_verifies, chunks), strict=True)
                for t, ok in zip(chunk, oks, strict=True) if ok}

        def check(pairs: Sequence[tuple[Record, bytes]]) -> None:
            check_signatures([(rec, key) for rec, key in pairs
                              if (key, rec.signature, rec.signed_bytes) not in done])

        return check

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None


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


class AheadCheck:
    """Signatures of an offered range checked against `key` (its log's current key) before the range's turn
    to be merged: a `check` for Hub.ingest that skips those. A pushed range waits for the ranges before it;
    its signatures, checked meanwhile on another thread (the Ed25519 call runs without the GIL), then cost
    the merge nothing. Records signed with another key (after a rotation) or not checked here are checked by
    the merge as always: this decides nothing. Checks of ranges merged in one go add up (`a + b`)."""

    def __init__(self, key: bytes, done: set[tuple[bytes, bytes]]) -> None:
        self.key, self.done = key, done

    @classmethod
    def of(cls, raws: Sequence[bytes], key: bytes) -> AheadCheck:
        done: set[tuple[bytes, bytes]] = set()
        if len(key) == 32:
            for raw in raws:
                parts = signature_parts(raw)
                if parts is None:
                    continue
                try:
                    verify_signature(key, *parts)
                except LedgerError:
                    break  # the merge finds it, with where it is, and stops there
                done.add(parts)
        return cls(key, done)

    def __add__(self, other: AheadCheck) -> AheadCheck:
        if other.key != self.key:
            return self
        return AheadCheck(self.key, self.done | other.done)

    def __call__(self, pairs: Iterable[tuple[Record, bytes]]) -> int:
        return check_signatures([(rec, k) for rec, k in pairs
                                 if k != self.key or (rec.signature, rec.signed_bytes) not in self.done])
