"""The cycle collector's pauses, overlapping from several threads."""

from __future__ import annotations

import gc
import threading

from hub.collector import without_cycle_collection


def test_the_collector_comes_back_when_the_last_overlapping_pause_ends() -> None:
    assert gc.isenabled()
    first, second = without_cycle_collection(), without_cycle_collection()
    first.__enter__()
    second.__enter__()
    assert not gc.isenabled()
    first.__exit__(None, None, None)  # the other pause still runs
    assert not gc.isenabled()
    second.__exit__(None, None, None)
    assert gc.isenabled()


def test_a_pause_leaves_a_collector_that_was_off_off() -> None:
    gc.disable()
    try:
        with without_cycle_collection():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_pauses_from_many_threads_end_with_the_collector_on() -> None:
    start = threading.Barrier(8)

    def pause() -> None:
        start.wait()
        for _ in range(2000):
            with without_cycle_collection():
                pass

    threads = [threading.Thread(target=pause) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert gc.isenabled()


def test_a_deferral_ends_with_its_own_block_even_while_another_runs() -> None:
    """The writer's deferral never keeps the collector off past the block that turned it off: a stream of
    overlapping merges cannot hold it off for as long as the stream lasts."""
    from hub.collector import collection_deferred

    first, second = collection_deferred(), collection_deferred()
    first.__enter__()
    second.__enter__()  # the collector is already off: this one changes nothing
    assert not gc.isenabled()
    first.__exit__(None, None, None)
    assert gc.isenabled()
    second.__exit__(None, None, None)
    assert gc.isenabled()
    with without_cycle_collection():
        with collection_deferred():
            pass
        assert not gc.isenabled()  # the counted pause around it still holds the collector off
    assert gc.isenabled()
