"""The cycle collector's pauses: overlapping pauses from several threads, and the writer's."""

from __future__ import annotations

import gc
import tempfile
import threading

from hub.collector import without_cycle_collection
from hub.service import Hub
from hub.store import LmdbHubStore
from ledger import ChainBuilder, Ed25519Signer
from ledger.enroll import make_enroll_request


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


def test_the_writer_merges_without_cycle_collection_and_resumes_it() -> None:
    seen: list[bool] = []
    with tempfile.TemporaryDirectory() as tmp:
        store = LmdbHubStore(tmp + "/hub")
        hub = Hub(store, Ed25519Signer.from_seed(b"\x77" * 32), clock=lambda: 1_763_900_000)
        signer = Ed25519Signer.from_seed(b"\x05" * 32)
        device = hub.enroll(make_enroll_request(signer, site="s", role="r", name="n", time=0, hub_id=hub.hub_id))
        hub.approve(device.device_id)
        builder = ChainBuilder(signer, clock=lambda: 1_763_900_000, boot=1)
        raws = [builder.genesis().raw] + [builder.append("reading", {"site": "pasar-01", "crowd": i}).raw for i in range(1, 20)]

        def check(pairs: object) -> None:
            seen.append(gc.isenabled())

        assert hub.ingest(device.device_id, raws, check=check).accepted == 20
        assert hub.ingest_many([(device.device_id, raws)], checks=[check])[0].accepted == 0  # type: ignore[union-attr]
        store.close()
    assert seen == [False, False]
    assert gc.isenabled()
