"""Group commit: taps go ahead of queued submissions, and a failed commit takes nothing signed after it down."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import pytest

from edge.errors import StorageFailing
from edge.keys import DeviceKey
from edge.store import GroupCommit, LmdbLogStore
from ledger import ChainState, Record, verify_chain
from tests.wait import wait_for


def _clock() -> int:
    return 1_763_900_000


async def test_an_urgent_append_goes_into_the_next_commit_ahead_of_queued_submissions(tmp_path):
    key = DeviceKey(b"\x21" * 32)
    store = LmdbLogStore(tmp_path / "s")
    gc = GroupCommit(store, key, clock=_clock, boot=1)
    await gc.start()
    entered, release = threading.Event(), threading.Event()
    real = store.append_own

    def held(records: list[Record], *, staged: Callable[[], None] | None = None) -> ChainState:
        entered.set()
        release.wait(30)  # the writer sits in this commit until the queue behind it is full
        return real(records, staged=staged)

    store.append_own = held  # type: ignore[method-assign]
    first = asyncio.ensure_future(gc.append("note", {"text": "in flight"}))
    await wait_for(entered.is_set, what="the first commit to start")
    queued = [asyncio.ensure_future(gc.append("note", {"text": f"submitted {i}"})) for i in range(300)]
    await wait_for(lambda: gc.pending == 301, what="300 submissions queued behind the commit")
    tap = asyncio.ensure_future(gc.append("note", {"text": "tap"}, urgent=True))
    await wait_for(lambda: gc.pending == 302, what="the tap queued last")
    release.set()
    done = await asyncio.gather(first, *queued)
    tapped = await tap
    # Only the commit that was already running is ahead of the tap; every submission queued before it follows.
    assert tapped.seq == done[0].seq + 1 == 2
    assert min(r.seq for r in done[1:]) > tapped.seq
    assert sorted(r.seq for r in [*done, tapped]) == list(range(1, 303))
    await gc.close()
    assert verify_chain(store.log_range(key.device_id, 0, 1000)).length == 303
    store.close()


async def test_a_failed_commit_fails_its_own_appends_and_the_batch_signed_on_it_is_signed_again(tmp_path):
    key = DeviceKey(b"\x22" * 32)
    store = LmdbLogStore(tmp_path / "s")
    gc = GroupCommit(store, key, clock=_clock, boot=1)
    await gc.start()
    entered, queued, release = threading.Event(), threading.Event(), threading.Event()
    real = store.append_own
    calls = 0

    def failing_once(records: list[Record], *, staged: Callable[[], None] | None = None) -> ChainState:
        nonlocal calls
        calls += 1
        if calls > 1:
            return real(records, staged=staged)
        entered.set()
        queued.wait(30)
        assert staged is not None
        staged()  # writes done: the loop signs the next batch on top of this one while it "syncs"
        release.wait(30)
        raise StorageFailing("the card refused the write")

    store.append_own = failing_once  # type: ignore[method-assign]
    first = asyncio.ensure_future(gc.append("note", {"text": "lost"}))
    await wait_for(entered.is_set, what="the first commit to start")
    behind = [asyncio.ensure_future(gc.append("note", {"text": f"next {i}"})) for i in range(50)]
    await wait_for(lambda: gc.pending == 51, what="50 appends queued behind the commit")
    queued.set()
    # Signed on the failing batch's end (seq 1), before that batch's outcome is known.
    await wait_for(lambda: gc._builder is not None and gc._builder.state.length == 52,
                   what="the next batch signed behind the one in flight")
    release.set()
    with pytest.raises(StorageFailing):
        await first
    records = await asyncio.gather(*behind)
    assert sorted(r.seq for r in records) == list(range(1, 51))  # seq 1 again: nothing of the failed batch stayed
    assert gc.stats["failed"] == 1
    await gc.close()
    raws = store.log_range(key.device_id, 0, 100)
    assert verify_chain(raws).length == 51
    assert [store.get(key.device_id, r.seq) for r in records] == [r.raw for r in records]
    store.close()
