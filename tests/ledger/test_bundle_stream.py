"""The verifier reads a bundle in pieces and accepts a log a batch at a time: its report is the one it gives for
the bundle whole, whatever the pieces and batches, on the tamper set and on ranges that repeat or fork a
record of an earlier batch."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest

from ledger import BundleWriter, ChainBuilder, Ed25519Signer, LedgerError
from ledger import bundle as bundle_module
from ledger.bundle import Bundle, compare_bundles, compare_bundles_from, verify_bundle, verify_bundle_from
from tests.webverify.tamper import EXAMPLE, OLDER, SEED, Case, bit_flips, older_flips, structural

HUB = Ed25519Signer.from_seed(b"\x51" * 32)
DEVICE = Ed25519Signer.from_seed(b"\x52" * 32)


def pieces(data: bytes, size: int, taken: list[int] | None = None) -> Callable[[int], Iterator[bytes]]:
    """A reader of `data` from a byte on, in pieces of `size`; `taken` counts the bytes of each piece read."""
    def read(start: int) -> Iterator[bytes]:
        for i in range(start, len(data), size):
            if taken is not None:
                taken.append(len(data[i:i + size]))
            yield data[i:i + size]
    return read


def outcome(check: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """What a check gives: the report, every problem in order and the duplicates skipped; or the error raised."""
    try:
        report = check(*args, **kwargs)
    except LedgerError as exc:
        return exc.to_dict()
    if not hasattr(report, "to_json"):
        return report  # compare_bundles: the two checkpoints
    return report.to_json(), [p.to_dict() for p in report.ordered], [d.duplicates for d in report.devices]


def tamper_cases() -> list[Case]:
    base, older = EXAMPLE.read_bytes(), OLDER.read_bytes()
    return [*structural(base, older), *bit_flips("example", base, 150, SEED, against=older),
            *older_flips(base, older, 30, SEED)]


def test_pieces_and_batches_give_the_report_of_the_whole_bundle(monkeypatch: pytest.MonkeyPatch) -> None:
    cases = tamper_cases()
    whole = [(outcome(verify_bundle, c.bundle, hub_key=c.hub_key),
              outcome(compare_bundles, c.against, c.bundle, hub_key=c.hub_key) if c.against else None)
             for c in cases]
    assert len({str(w) for w in whole}) > 20  # the set has many different verdicts, not one
    monkeypatch.setattr(bundle_module, "BATCH", 2)
    for case, expected in zip(cases, whole, strict=True):
        read = pieces(case.bundle, 7)
        got = outcome(verify_bundle_from, read, hub_key=case.hub_key)
        against = (outcome(compare_bundles_from, pieces(case.against, 5), read, hub_key=case.hub_key)
                   if case.against else None)
        assert (got, against) == expected, case.name


def chain(builder: ChainBuilder, clock: dict[str, int], n: int, text: str) -> list[Any]:
    records = []
    for i in range(n):
        clock["now"] += 1
        records.append(builder.append("note", {"text": f"{text} {i}"}))
    return records


def range_bundle(edit: Callable[[list[bytes], list[Any], list[Any]], list[bytes]]) -> bytes:
    """A hub's bundle of one device's log of 12 records, with the exported range edited by `edit(raws, records,
    other)` (`other`: a second history of the same device from seq 1) and the bundle sealed again."""
    clock = {"now": 1_763_870_400}
    writer = BundleWriter(HUB, clock=lambda: clock["now"])
    builder = ChainBuilder(DEVICE, clock=lambda: clock["now"], boot=1)
    twin = ChainBuilder(DEVICE, clock=lambda: clock["now"], boot=1)
    genesis = builder.genesis()
    twin.genesis()
    records = [genesis, *chain(builder, clock, 11, "kept")]
    other = [genesis, *chain(twin, clock, 11, "other")]
    writer.accept(*records)
    writer.checkpoint(clock["now"])
    bundle = writer.bundle(created=clock["now"] + 1)
    log = bundle.logs[0]
    edited = replace(log, records=edit(list(log.records), records, other))
    resealed: Bundle = replace(bundle, logs=[edited]).sealed(HUB)
    return resealed.encode()


@pytest.mark.parametrize(("edit", "code", "duplicates"), [
    pytest.param(lambda raws, recs, other: raws, None, 0, id="as exported"),
    pytest.param(lambda raws, recs, other: raws[:2] + raws[1:], None, 1, id="head repeated where a batch starts"),
    pytest.param(lambda raws, recs, other: [*raws, recs[3].raw], None, 1, id="record of an earlier batch repeated"),
    pytest.param(lambda raws, recs, other: [*raws, other[3].raw], "FORK_DETECTED", 0,
                 id="another record at a seq of an earlier batch"),
    pytest.param(lambda raws, recs, other: [*raws[5:], recs[2].raw], "BROKEN_CHAIN", 0,
                 id="a seq from before the range"),
])
def test_ranges_across_batches(monkeypatch: pytest.MonkeyPatch,
                               edit: Callable[[list[bytes], list[Any], list[Any]], list[bytes]],
                               code: str | None, duplicates: int) -> None:
    data = range_bundle(edit)
    whole = outcome(verify_bundle, data)  # one batch: the range accepted in one call, as it was
    problems = whole[1]
    assert (problems[0]["code"] if problems else None, whole[2]) == (code, [duplicates]), problems
    for batch in (1, 2, 3):
        monkeypatch.setattr(bundle_module, "BATCH", batch)
        assert outcome(verify_bundle_from, pieces(data, 64)) == whole, batch


def test_a_range_that_repeats_itself_is_read_twice_whatever_it_repeats(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each record of a later batch that repeats one of an earlier batch is known by its id: a bundle made of
    one range sent over and over costs its two readings, not one reading a record."""
    monkeypatch.setattr(bundle_module, "BATCH", 2)
    data = range_bundle(lambda raws, recs, other: raws + raws[1:] * 4)
    whole = outcome(verify_bundle, data)
    assert whole[1] == [] and whole[2] == [44]
    taken: list[int] = []
    assert outcome(verify_bundle_from, pieces(data, 64, taken)) == whole
    assert sum(taken) == 2 * len(data)


def test_a_fork_of_an_earlier_batch_reads_again_only_that_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bundle_module, "BATCH", 2)
    longest: list[bytes] = []

    def forked(raws: list[bytes], recs: list[Any], other: list[Any]) -> list[bytes]:
        longest.append(max(raws, key=len))
        return [*raws, other[3].raw]
    data = range_bundle(forked)
    whole = outcome(verify_bundle, data)
    assert whole[1][0]["code"] == "FORK_DETECTED"
    taken: list[int] = []
    assert outcome(verify_bundle_from, pieces(data, 64, taken)) == whole
    # Two readings, and the batch of two records that held seq 3, in pieces of 64 bytes.
    assert sum(taken) - 2 * len(data) <= 2 * (len(longest[0]) + 3) + 2 * 64
