"""The one chain-acceptance path: what edge replicas, the hub's ingest and the bundle verifier believe."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from .chain import ChainState, ForkEvidence, check_signatures, link
from .errors import BrokenChain, LedgerError, LimitExceeded, MalformedRecord, RevokedKey
from .record import Record, decode_record

SignatureCheck = Callable[[Sequence[tuple[Record, bytes]]], object]


class HeldLog(Protocol):
    """What the caller already holds of the log below `state.length`: asked only when an offered record
    lands on a seq it holds, so a caller that stores nothing (an auditor) passes none."""

    def raw_at(self, seq: int) -> bytes | None:
        """The record held at `seq`, or None."""
        ...

    def key_at(self, seq: int) -> bytes | None:
        """The key that signs the record at `seq` > 0 (named by the last key record before it), or None."""
        ...

    def id_at(self, seq: int) -> bytes | None:
        """The id of the record held at `seq`, or None: a resent record is known as a duplicate by it alone,
        without reading and decoding the record held there."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Accepted:
    """What `accept` made of an offered range: the verified prefix to store and why it stopped, if it did."""

    state: ChainState  # the log after `records`
    records: list[Record]  # new, verified, in order: store these and nothing else
    duplicates: int = 0
    fork: ForkEvidence | None = None  # set with `problem` = its FORK_DETECTED error
    problem: LedgerError | None = None  # the typed error that stopped acceptance

    @property
    def code(self) -> str:
        """`OK`, or the stable code of the error that stopped acceptance."""
        return "OK" if self.problem is None else self.problem.code


def accept(state: ChainState, raws: Sequence[bytes], *, held: HeldLog | None = None,
           revoked_from: int | None = None, max_length: int | None = None,
           check: SignatureCheck = check_signatures) -> Accepted:
    """Verify an offered range against what is held of this log (`state`); keep the good prefix.

    Each record must extend the log by the rules of FORMAT.md §7 (device, seq, prev, boot, genesis, the key
    in force after rotations, the revocation point `revoked_from`). A record at a seq already held with the
    same id is a duplicate (resending is always safe); the one record of overlap that a range starts with,
    to show it continues the head, is not counted. A validly signed record at a held seq with another id is
    a fork: its evidence is returned and nothing past it is accepted. A holder that keeps at most
    `max_length` records of this log (a replica quota) refuses the rest with LIMIT_EXCEEDED. Signatures are
    checked in one batch by `check` (a process pool can spread it over cores); if the batch fails, the
    records are checked one by one to keep the good prefix.
    """
    start = state.length
    new: list[Record] = []
    pairs: list[tuple[Record, bytes]] = []
    states: list[ChainState] = []
    duplicates = 0
    current = state
    stop: Accepted | None = None
    for position, raw in enumerate(raws):
        try:
            rec = decode_record(raw)
            if rec.device_id != state.device_id:
                raise BrokenChain(f"record of device {rec.device} offered as device {state.device_id.hex()}",
                                  where=rec.where)
            if rec.seq < current.length:
                if rec.seq == current.length - 1 and rec.id == current.head:
                    if position:  # the overlap a range starts with is how it shows it continues ours
                        duplicates += 1
                    continue
                if rec.seq < start and held is not None and held.id_at(rec.seq) == rec.id:
                    duplicates += 1
                    continue
                mine = _held_record(rec.seq, start, new, held)
                if mine is None:
                    raise BrokenChain(f"seq {rec.seq} is below the log's length {current.length} and the "
                                      "record held there is not at hand", where=rec.where,
                                      hint="offer records in seq order from the log's head")
                if mine.id == rec.id:
                    duplicates += 1
                    continue
                # Another record where we hold one: the sender shows a second history of this device. It is
                # evidence only if validly signed; anything else is just bad input.
                signer = pairs[rec.seq - start][1] if rec.seq >= start else held.key_at(rec.seq) if held else None
                evidence = ForkEvidence(first=mine, second=rec)
                evidence.verify(signer if rec.seq else None)
                stop = Accepted(state=current, records=new, duplicates=duplicates, fork=evidence,
                                problem=evidence.error())
                break
            if revoked_from is not None and rec.seq >= revoked_from:
                raise RevokedKey(f"device key revoked from seq {revoked_from}", where=rec.where)
            if max_length is not None and rec.seq >= max_length:
                raise LimitExceeded(f"the log is at its quota of {max_length} records", where=rec.where)
            current, key = link(current, rec)
        except (LedgerError, TypeError, KeyError) as exc:
            problem = exc if isinstance(exc, LedgerError) else MalformedRecord(f"unusable record: {exc}")
            stop = Accepted(state=current, records=new, duplicates=duplicates, problem=problem)
            break
        new.append(rec)
        pairs.append((rec, key))
        states.append(current)
    try:
        check(pairs)
    except LedgerError:
        for i, (rec, key) in enumerate(pairs):
            try:
                rec.verify_signature(key)
            except LedgerError as exc:
                return Accepted(state=states[i - 1] if i else state, records=new[:i], duplicates=duplicates,
                                problem=exc)
    if stop is not None:
        return stop
    return Accepted(state=current, records=new, duplicates=duplicates)


def _held_record(seq: int, start: int, new: list[Record], held: HeldLog | None) -> Record | None:
    """The record already at `seq`: one accepted earlier in this offer, or one the caller holds."""
    if seq >= start:
        return new[seq - start]
    raw = held.raw_at(seq) if held is not None else None
    return decode_record(raw) if raw is not None else None
