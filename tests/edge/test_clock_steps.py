"""The edge's wall clock stepping within one boot (a Pi without a real-time clock set right by NTP once the
network comes, or by hand): the watch finds each step against the boot-time clock, the log writer notes the
first record signed after it, and a sync tells the hub."""

from __future__ import annotations

import asyncio

import pytest

from coap_server.errors import RequestError
from coap_server.params import Param
from coap_server.sync import MAX_STEPS
from edge.clockwatch import STEP_S, ClockWatch
from edge.keys import DeviceKey
from edge.store import GroupCommit, LmdbLogStore
from tests.edge.common import Clocks
from tests.wait import wait_for

START = 1_763_900_000.0


def test_the_watch_finds_steps_either_way_and_not_a_slewed_clock() -> None:
    c = Clocks(START)
    watch = ClockWatch(wall=c.wall, ticks=lambda: c.ticks)
    assert watch() == int(START) and watch.moved() == 0
    for _ in range(100):  # NTP slewing at its fastest, 0.5 ms a second, read every 30 s
        c.tick(30)
        c.offset += 30 * 0.0005
        watch()
    assert watch.moved() == 0
    c.tick(5)
    c.set_wall(c.wall() + 3 * 3600)  # set right, three hours forward
    assert watch() == int(c.wall())
    assert watch.moved() == 3 * 3600
    c.tick(1)
    c.set_wall(c.wall() - 600)  # and ten minutes back
    watch()
    assert watch.moved() == 3 * 3600 - 600
    c.set_wall(c.wall() + STEP_S - 1)
    watch()
    assert watch.moved() == 3 * 3600 - 600, "below STEP_S it is no step"


async def test_the_log_writer_notes_the_first_record_signed_after_a_step(tmp_path) -> None:
    c = Clocks(START - 3 * 3600)  # booted three hours behind
    watch = ClockWatch(wall=c.wall, ticks=lambda: c.ticks)
    store = LmdbLogStore(tmp_path / "s")
    gc = GroupCommit(store, DeviceKey(b"\x23" * 32), clock=watch, boot=1, moved=watch.moved)
    await gc.start()
    try:
        before = [await gc.append("note", {"text": f"before {i}"}) for i in range(3)]
        c.tick(60)
        c.set_wall(START)  # NTP, once the network came
        after = await gc.append("note", {"text": "after"})
        assert [r.time for r in before] == [int(START) - 3 * 3600] * 3 and after.time == int(START)
        assert gc.steps == [(after.seq, 3 * 3600 - 60)], "the minute that passed was no step"
        assert gc.told_steps() == gc.steps
        c.set_wall(c.wall() + 900)
        watch()  # read as a sync reads it to tell the hub: no record signed since
        assert gc.told_steps() == [(after.seq, 3 * 3600 - 60), (after.seq + 1, 900)]
        c.set_wall(c.wall() - 900)
        c.tick(1)
        c.set_wall(c.wall() - 120)
        many = await gc.append_many([("note", {"text": f"batch {i}"}, False) for i in range(3)])
        assert gc.steps == [(after.seq, 3 * 3600 - 60), (many[0].seq, -120)]
    finally:
        await gc.close()
        store.close()


def test_the_steps_a_sync_tells_are_read_strictly() -> None:
    param = Param(name="steps", kind="steps", size=MAX_STEPS)
    assert param.read("12:10800") == ((12, 10800),)
    assert param.read("3:-600,40:7200") == ((3, -600), (40, 7200))
    for bad in ("", "12", "12:", "12:0", "x:5", "12:5,12:6", "13:5,12:6", "12:+5", "12:1e3", "-1:5",
                ",".join(f"{i}:5" for i in range(MAX_STEPS + 1)), f"{2**63}:5", f"1:{2**40}"):
        with pytest.raises(RequestError, match="steps"):
            param.read(bad)


async def test_records_that_waited_for_the_hub_are_dated_and_stepped_as_they_came(tmp_path) -> None:
    """Taps held at start until the hub confirms the head are signed with the time they came: a step between two of
    them is noted at the later one, though the clock was read again only when both were signed."""
    c = Clocks(START - 7200)
    watch = ClockWatch(wall=c.wall, ticks=lambda: c.ticks)
    store = LmdbLogStore(tmp_path / "s")
    gc = GroupCommit(store, DeviceKey(b"\x24" * 32), clock=watch, boot=1, moved=watch.moved)
    await gc.start(held=True)
    try:
        early = asyncio.ensure_future(gc.append("note", {"text": "tapped two hours slow"}, urgent=True))
        await wait_for(lambda: gc.pending == 1, what="the first tap queued")
        c.tick(10)
        c.set_wall(START)
        late = asyncio.ensure_future(gc.append("note", {"text": "tapped after NTP"}, urgent=True))
        await wait_for(lambda: gc.pending == 2, what="the second tap queued")
        c.tick(10)
        await gc.release()
        first, second = await early, await late
        assert (first.time, second.time) == (int(START) - 7200, int(START))
        assert gc.steps == [(second.seq, 7200 - 10)]
    finally:
        await gc.close()
        store.close()
