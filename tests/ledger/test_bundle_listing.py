"""What a bundle's report says of its problems and devices: a step lists its first problems and counts the rest
(FORMAT.md §12.3), a device says how many records its range holds and how many verified, and --against notes
the devices revoked since the older bundle and tells a log that shrank from bundles given the wrong way round."""

from __future__ import annotations

import time

import pytest

from ledger import BadCheckpoint
from ledger.bundle import MAX_LISTED, compare_bundles, comparison_from, verify_bundle

from .hostile_bundles import failing_device, many_bad_checkpoints, revoked_since, shrunk


@pytest.mark.parametrize(("field", "n", "code"), [
    ("checkpoints", 200_000, "MALFORMED"), ("forks", 20_000, "MALFORMED"), ("consistency", 20_000, "INVALID_CHECKPOINT"),
])
def test_a_step_lists_its_first_problems_and_counts_the_rest(field: str, n: int, code: str) -> None:
    data = many_bad_checkpoints(n, field)
    started = time.monotonic()
    report = verify_bundle(data)
    took = time.monotonic() - started
    assert report.ordered[0].code == code and report.exit_code == report.ordered[0].exit_code
    assert len(report.ordered) == MAX_LISTED and len(report.problems) == MAX_LISTED
    assert report.more == {field: n - MAX_LISTED}
    assert report.problem_count == n
    assert report.to_json()["more"] == {field: n - MAX_LISTED}
    assert all(p.__traceback__ is None for p in report.ordered)  # no frames (and their bytes) kept alive
    assert took < 60, took  # some 10 µs an entry, on a busy machine


def test_a_device_says_how_many_records_its_range_holds_and_how_many_verified() -> None:
    [dev] = verify_bundle(failing_device(records=10, bad=6)).devices
    assert (dev.in_bundle, dev.records, dev.first_seq, dev.last_seq) == (10, 6, 0, 5)
    assert dev.to_json()["in_bundle"] == 10
    [dev] = verify_bundle(failing_device(records=10, bad=0)).devices
    assert (dev.in_bundle, dev.records, dev.first_seq) == (10, 0, None)


def _read(data: bytes):  # type: ignore[no-untyped-def]
    return lambda start: (memoryview(data)[start:],)


def test_against_notes_a_device_revoked_since_the_older_bundle_below_what_it_verified() -> None:
    older, newer = revoked_since(records=10, revoked=4)
    assert verify_bundle(newer).ok  # the comparison proves the log extends: no failure
    compared = comparison_from(_read(older), _read(newer))
    [note] = compared.revoked
    assert (note.revoked_from, note.last, note.records) == (4, 9, 6)
    assert note.message.endswith("revoked from seq 4 since the older bundle, which verified up to 9: 6 records "
                                 "it vouched for are no longer accepted")
    assert note.to_dict()["note"] == "revoked"
    # Nothing to say when nothing changed.
    assert comparison_from(_read(newer), _read(newer)).revoked == []


@pytest.mark.parametrize(("later", "said"), [
    (True, "the hub's log shrank since the older bundle"), (False, "the older bundle's log (6 records) is larger than the newer's (5)"),
])
def test_a_log_that_shrank_is_told_from_bundles_given_the_wrong_way_round(later: bool, said: str) -> None:
    older, newer = shrunk(newer_created_later=later)
    with pytest.raises(BadCheckpoint) as caught:
        compare_bundles(older, newer)
    assert caught.value.message.startswith(said), caught.value.message
    assert ("give the newer bundle first" in (caught.value.hint or "")) is not later
