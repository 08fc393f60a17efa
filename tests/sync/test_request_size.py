"""The request-size rule: start at the floor, double after quick answers, halve after losses or slow answers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger import SyncError
from ledger.sync import Limits, RequestSize

QUICK, MIDDLING, SLOW = 1.0, 10.0, 20.0  # against the default 30 s timeout: <= 1/4, within (1/4, 1/2], > 1/2


def sizes(size: RequestSize) -> tuple[int, int]:
    return size.records, size.bytes


def test_starts_at_the_floor_and_doubles_to_the_limits_after_quick_answers():
    size = RequestSize()
    seen = [sizes(size)]
    for _ in range(9):
        size.succeeded(QUICK)
        seen.append(sizes(size))
    # One scale for both: 256 KiB reaches the 4 KiB floor a halving before 512 records reach 4.
    assert seen == [(4, 4096), (8, 4096), (16, 8192), (32, 16384), (64, 32768), (128, 65536), (256, 131072),
                    (512, 262144), (512, 262144), (512, 262144)]
    assert sizes(size) == (Limits().records_per_request, Limits().bytes_per_request)


def test_a_lost_request_halves_the_next_down_to_the_floor_and_not_below():
    size = RequestSize()
    for _ in range(7):
        size.succeeded(QUICK)
    seen = []
    for _ in range(9):
        size.failed()
        seen.append(sizes(size))
    assert seen == [(256, 131072), (128, 65536), (64, 32768), (32, 16384), (16, 8192), (8, 4096), (4, 4096),
                    (4, 4096), (4, 4096)]
    # Failures at the floor are not banked: one quick answer grows it again at once.
    size.succeeded(QUICK)
    assert sizes(size) == (8, 4096)


def test_a_slow_answer_halves_and_a_middling_one_holds():
    size = RequestSize()
    for _ in range(5):
        size.succeeded(QUICK)
    assert sizes(size) == (128, 65536)
    size.succeeded(MIDDLING)
    assert sizes(size) == (128, 65536)
    size.succeeded(SLOW)
    assert sizes(size) == (64, 32768)
    # The thresholds are fractions of the timeout, so a shorter timeout judges the same answer as slower.
    short = RequestSize(timeout=4.0)
    short.succeeded(QUICK)
    assert sizes(short) == (8, 4096)
    short.succeeded(3.0)
    assert sizes(short) == (4, 4096)


def test_records_and_bytes_scale_together_each_held_at_its_floor():
    # Few records but many bytes allowed: records sit at their floor while the bytes grow, then both grow.
    size = RequestSize(Limits(records_per_request=16, bytes_per_request=1 << 20), floor_records=4,
                       floor_bytes=16384)
    seen = [sizes(size)]
    for _ in range(7):
        size.succeeded(QUICK)
        seen.append(sizes(size))
    assert seen == [(4, 16384), (4, 32768), (4, 65536), (4, 131072), (4, 262144), (8, 524288), (16, 1 << 20),
                    (16, 1 << 20)]
    for _ in range(3):
        size.failed()
    assert sizes(size) == (4, 131072)


def test_limits_at_the_floor_leave_nothing_to_adapt():
    size = RequestSize(Limits(records_per_request=4, bytes_per_request=4096))
    size.failed()
    assert sizes(size) == (4, 4096)
    size.succeeded(QUICK)
    assert sizes(size) == (4, 4096)


def test_limits_below_the_floors_win():
    size = RequestSize(Limits(records_per_request=2, bytes_per_request=1024))
    assert sizes(size) == (2, 1024)
    size.failed()
    assert sizes(size) == (2, 1024)


@pytest.mark.parametrize(("kwargs", "says"), [
    ({"floor_records": 0}, "expected at least 1 record as floor and limit, got 0 and 512"),
    ({"limits": Limits(records_per_request=0)}, "expected at least 1 record as floor and limit, got 4 and 0"),
    ({"floor_bytes": -1}, "expected at least 1 byte as floor and limit, got -1 and 262144"),
    ({"timeout": 0.0}, "expected a timeout > 0 seconds, got 0.0"),
    ({"timeout": float("nan")}, "expected a timeout > 0 seconds, got nan"),
])
def test_impossible_settings_are_refused_with_a_sync_error(kwargs, says):
    with pytest.raises(SyncError) as caught:
        RequestSize(**kwargs)
    assert caught.value.code == "SYNC_PROTOCOL"
    assert says in caught.value.message


@given(
    records=st.integers(1, 4096), size_bytes=st.integers(1, 1 << 22),
    floor_records=st.integers(1, 64), floor_bytes=st.integers(1, 1 << 16),
    events=st.lists(st.one_of(st.none(), st.floats(0, 100, allow_nan=False)), max_size=60),
)
def test_any_history_stays_between_floor_and_limits(records, size_bytes, floor_records, floor_bytes, events):
    limits = Limits(records_per_request=records, bytes_per_request=size_bytes)
    size = RequestSize(limits, floor_records=floor_records, floor_bytes=floor_bytes)
    floor_records, floor_bytes = min(floor_records, records), min(floor_bytes, size_bytes)
    assert sizes(size) == (floor_records, floor_bytes), "a new size starts at its floors"
    for event in events:
        before = sizes(size)
        if event is None:
            size.failed()
            assert size.records <= before[0] and size.bytes <= before[1]
        else:
            size.succeeded(event)
        assert floor_records <= size.records <= records
        assert floor_bytes <= size.bytes <= size_bytes
    # However it went, enough quick answers bring it back to the full limits.
    for _ in range(size.halvings):
        size.succeeded(0.0)
    assert sizes(size) == (records, size_bytes)
