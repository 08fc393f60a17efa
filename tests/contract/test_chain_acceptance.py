"""One table of chain cases through every caller of the acceptance path: edge replica, hub ingest, bundle."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from edge.store import LmdbLogStore
from hub.service import Hub
from hub.store import LmdbHubStore
from ledger import (
    BundleWriter,
    ChainBuilder,
    ChainState,
    Ed25519Signer,
    LogExport,
    Record,
    decode_record,
    encode_record,
    verify_bundle,
)
from ledger.authority import Decision
from ledger.enroll import make_enroll_request

NOW = 1_763_900_000
_seeds = itertools.count(101)


@dataclass(frozen=True, slots=True, kw_only=True)
class Case:
    """`before` is offered first (a separate offer to the stores; the start of the range in a bundle)."""

    name: str
    signer: Ed25519Signer  # the genesis key, enrolled at the hub
    offered: list[bytes]
    before: list[bytes] = field(default_factory=list)
    revoked_from: int | None = None
    code: str = "OK"
    accepted: int = 0
    duplicates: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Verdict:
    code: str
    accepted: int
    duplicates: int
    fork: bool


def _device() -> tuple[Ed25519Signer, ChainBuilder]:
    signer = Ed25519Signer.from_seed(next(_seeds).to_bytes(32, "big"))
    return signer, ChainBuilder(signer, clock=lambda: NOW, boot=2)


def _notes(builder: ChainBuilder, n: int) -> list[Record]:
    return [builder.append("note", {"text": f"n{builder.state.length}"}) for _ in range(n)]


def _chain(n: int) -> tuple[Ed25519Signer, ChainBuilder, list[Record]]:
    signer, builder = _device()
    return signer, builder, [builder.genesis(), *_notes(builder, n - 1)]


def _after(records: list[Record], key: bytes) -> ChainState:
    last = records[-1]
    return ChainState(device_id=last.device_id, length=last.seq + 1, head=last.id, key=key, boot=last.boot,
                      time=last.time)


def _raws(records: list[Record]) -> list[bytes]:
    return [r.raw for r in records]


def _good() -> Case:
    signer, _, recs = _chain(6)
    return Case(name="good chain", signer=signer, offered=_raws(recs), accepted=6)


def _duplicate() -> Case:
    signer, _, recs = _chain(7)
    # Resent across offers (r2 is held, r3 is the held head) and repeated inside one offer (r5).
    offered = [*_raws(recs[2:6]), recs[5].raw, recs[6].raw]
    return Case(name="duplicate", signer=signer, before=_raws(recs[:4]), offered=offered,
                accepted=7, duplicates=3)


def _gap() -> Case:
    signer, _, recs = _chain(5)
    return Case(name="gap", signer=signer, offered=_raws(recs[:2] + recs[3:]),
                code="BROKEN_CHAIN", accepted=2)


def _fork() -> Case:
    signer, _, recs = _chain(6)
    # The same key signs another record at seq 2 on top of the same history: equivocation, below the head.
    other = ChainBuilder(signer, clock=lambda: NOW + 1, boot=2, state=_after(recs[:2], signer.public_key))
    evil = other.append("note", {"text": "another history"})
    return Case(name="fork", signer=signer, before=_raws(recs), offered=[evil.raw],
                code="FORK_DETECTED", accepted=6)


def _boot_back() -> Case:
    signer, builder, recs = _chain(3)
    back = encode_record(signer, device_id=builder.device_id, seq=3, prev=recs[-1].id, time=NOW, boot=1,
                         kind="note", body={"text": "rebooted into the past"})
    return Case(name="boot counter going back", signer=signer, offered=[*_raws(recs), back.raw],
                code="BROKEN_CHAIN", accepted=3)


def _revoked() -> Case:
    signer, _, recs = _chain(6)
    return Case(name="revoked from 4", signer=signer, offered=_raws(recs), revoked_from=4,
                code="REVOKED_KEY", accepted=4)


def _rotated() -> tuple[Ed25519Signer, Ed25519Signer, ChainBuilder, list[Record]]:
    signer, builder, recs = _chain(2)
    new = Ed25519Signer.from_seed(next(_seeds).to_bytes(32, "big"))
    recs.append(builder.rotate(new))
    return signer, new, builder, recs


def _rotated_key() -> Case:
    signer, _, builder, recs = _rotated()
    recs += _notes(builder, 3)
    return Case(name="rotated key", signer=signer, before=_raws(recs[:4]),
                offered=_raws(recs[3:]), accepted=6)


def _old_key_after_rotation() -> Case:
    signer, _, builder, recs = _rotated()
    stale = encode_record(signer, device_id=builder.device_id, seq=3, prev=recs[-1].id, time=NOW, boot=2,
                          kind="note", body={"text": "signed with the rotated-away key"})
    return Case(name="old key after rotation", signer=signer, offered=[*_raws(recs), stale.raw],
                code="INVALID_SIGNATURE", accepted=3)


def _fork_after_rotation() -> Case:
    signer, new, builder, recs = _rotated()
    recs += _notes(builder, 3)
    # The fork's record at seq 4 must verify with the key in force there: the rotated-in one.
    other = ChainBuilder(new, clock=lambda: NOW + 1, boot=2, state=_after(recs[:4], new.public_key))
    evil = other.append("note", {"text": "another history"})
    return Case(name="fork after rotation", signer=signer, before=_raws(recs), offered=[evil.raw],
                code="FORK_DETECTED", accepted=6)


def _bad_signature() -> Case:
    signer, _, recs = _chain(6)
    tampered = bytearray(recs[3].raw)
    tampered[-1] ^= 1
    offered = [*_raws(recs[:3]), bytes(tampered), *_raws(recs[4:])]
    return Case(name="bad signature mid-chain", signer=signer, offered=offered,
                code="INVALID_SIGNATURE", accepted=3)


CASES = [_good(), _duplicate(), _gap(), _fork(), _boot_back(), _revoked(), _rotated_key(),
         _old_key_after_rotation(), _fork_after_rotation(), _bad_signature()]


def _edge(case: Case, tmp: Path) -> Verdict:
    store = LmdbLogStore(tmp / "edge")
    try:
        device_id = decode_record(case.offered[0]).device_id
        outs = [store.receive_records(device_id, raws, revoked_from=case.revoked_from)
                for raws in (case.before, case.offered) if raws]
        # What was stored is what the verdict says: reopen the file and read the log back.
        held = store.log_range(device_id, 0, 1 << 20)
    finally:
        store.close()
    reopened = LmdbLogStore(tmp / "edge")
    try:
        assert reopened.log_range(device_id, 0, 1 << 20) == held
        assert len(held) == sum(o.accepted for o in outs)
    finally:
        reopened.close()
    problem = outs[-1].problem
    return Verdict(code="OK" if problem is None else problem.split(":")[0],
                   accepted=sum(o.accepted for o in outs), duplicates=sum(o.duplicates for o in outs),
                   fork=outs[-1].fork)


def _hub(case: Case, tmp: Path) -> Verdict:
    hub = Hub(LmdbHubStore(tmp / "hub"), Ed25519Signer.from_seed(b"\x77" * 32), clock=lambda: NOW)
    try:
        request = make_enroll_request(case.signer, site="s", role="r", name="n", time=NOW, hub_id=hub.hub_id)
        device_id = hub.enroll(request).device_id
        hub.approve(device_id)
        if case.revoked_from is not None:
            hub.revoke(device_id, from_seq=case.revoked_from)
        outs = [hub.ingest(device_id, raws) for raws in (case.before, case.offered) if raws]
        # The hub's own log (its genesis and decisions) shares the tree with the devices' records.
        assert len(hub.tree) == sum(o.accepted for o in outs) + len(hub.own_log())
    finally:
        hub.store.close()
    problem = outs[-1].problem
    return Verdict(code="OK" if problem is None else problem["code"], accepted=sum(o.accepted for o in outs),
                   duplicates=sum(o.duplicates for o in outs), fork=outs[-1].fork)


def _bundle(case: Case, _tmp: Path) -> Verdict:
    # One range, as an exporter writes it: the overlap that a second offer starts with is not repeated.
    overlap = int(bool(case.before) and case.offered[0] == case.before[-1])
    raws = case.before + case.offered[overlap:]
    records = [decode_record(r) for r in raws]
    keys: list[bytes] = []
    for rec in records:  # the key list an exporter would write: genesis and rotations, each once
        if rec.kind == "key" and rec.raw not in keys:
            keys.append(rec.raw)
    # The hub's bundle of what it accepted, with its own log deciding approval, rotations and revocation.
    hub_key = Ed25519Signer.from_seed(b"\x77" * 32)
    writer = BundleWriter(hub_key, clock=lambda: NOW)
    writer.accept(*{r.id: r for r in records}.values())  # each record once, as leaves
    if case.revoked_from is not None:
        writer.decide(Decision(action="revoke", device_id=records[0].device_id, from_seq=case.revoked_from))
    writer.checkpoint(NOW)
    log = LogExport(device_id=records[0].device_id, keys=keys, records=raws)
    report = verify_bundle(dataclasses.replace(writer.bundle(created=NOW), logs=[log]).sealed(hub_key).encode())
    [device] = report.devices
    problems = report.all_problems
    return Verdict(code=problems[0].code if problems else "OK", accepted=device.records,
                   duplicates=device.duplicates, fork=any(p.code == "FORK_DETECTED" for p in problems))


CALLERS: dict[str, Callable[[Case, Path], Verdict]] = {"edge replica": _edge, "hub ingest": _hub,
                                                        "bundle verify": _bundle}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_every_caller_gives_the_same_verdict(case: Case, tmp_path: Path) -> None:
    expected = Verdict(code=case.code, accepted=case.accepted, duplicates=case.duplicates,
                       fork=case.code == "FORK_DETECTED")
    got = {name: caller(case, tmp_path) for name, caller in CALLERS.items()}
    assert got == dict.fromkeys(CALLERS, expected)
