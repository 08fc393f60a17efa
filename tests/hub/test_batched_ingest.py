"""Batched ingest: many ranges verified (on other cores or not) and committed at once keep exactly what the
one-range-at-a-time path keeps, with the same tree; a failed commit leaves store and tree as they were."""

from __future__ import annotations

import pytest

from hub.service import Hub, IngestResult
from hub.store import LmdbHubStore, StoreFull
from hub.verify import CrossLogVerifier
from ledger import ChainBuilder, Ed25519Signer, LedgerError, verify_chain
from tests.contract.test_hub_store import _pg_store

from .conftest import Clock, enroll, new_device

HUB_KEY = b"\x5a" * 32


@pytest.fixture(params=["lmdb", "postgres"])
def two_stores(request, tmp_path):
    """Two empty stores of one backend: one for each path compared."""
    if request.param == "lmdb":
        stores = [LmdbHubStore(tmp_path / "a"), LmdbHubStore(tmp_path / "b")]
    else:
        stores = [_pg_store(), _pg_store()]
    yield stores
    for store in stores:
        if request.param == "postgres":
            store.drop()
        store.close()


def _logs(clock: Clock, devices: int, per: int) -> list[tuple[Ed25519Signer, list[bytes]]]:
    out = []
    for _ in range(devices):
        signer, builder = new_device(clock)
        out.append((signer, [builder.genesis().raw] + [builder.append("note", {"text": str(i)}).raw
                                                       for i in range(per - 1)]))
    return out


def _forge(raw: bytes) -> bytes:
    forged = bytearray(raw)
    forged[-3] ^= 0x01
    return bytes(forged)


def _hub(store, clock: Clock, logs) -> tuple[Hub, list[bytes]]:
    hub = Hub(store, Ed25519Signer.from_seed(HUB_KEY), clock=clock)
    return hub, [enroll(hub, signer, clock) for signer, _ in logs]


def _offers(ids: list[bytes], logs) -> list[tuple[bytes, list[bytes]]]:
    """Ranges as a burst of pushes brings them: each log in two ranges (the second overlapping the first by
    one record), interleaved with the other logs; log 1 has a forgery in the middle of its second range."""
    items = []
    for device_id, (_, raws) in zip(ids, logs, strict=True):
        items.append((device_id, raws[:40]))
    for n, (device_id, (_, raws)) in enumerate(zip(ids, logs, strict=True)):
        rest = list(raws[39:])
        if n == 1:
            rest[30] = _forge(rest[30])  # seq 69
        items.append((device_id, rest))
    return items


@pytest.mark.parametrize("workers", [0, 2])
def test_a_batch_keeps_what_one_range_at_a_time_keeps_with_the_same_tree(two_stores, workers):
    clock = Clock()
    logs = _logs(clock, 3, 120)
    serial_hub, ids = _hub(two_stores[0], Clock(), logs)
    batch_hub, batch_ids = _hub(two_stores[1], Clock(), logs)
    assert ids == batch_ids
    offers = _offers(ids, logs)

    serial = [serial_hub.ingest(device_id, raws) for device_id, raws in offers]
    verifier = CrossLogVerifier(workers=2) if workers else None
    try:
        batched = batch_hub.ingest_many(offers, verifier=verifier)
    finally:
        if verifier is not None:
            verifier.close()

    assert all(isinstance(r, IngestResult) for r in batched)
    assert [r.to_json() for r in batched] == [r.to_json() for r in serial]
    assert batched[4].accepted == 29 and batched[4].problem["code"] == "INVALID_SIGNATURE"
    assert "seq 69" in batched[4].problem["where"]
    assert batch_hub.store.chain_state(ids[1]).length == 69, "exactly the prefix before the forgery"
    assert batch_hub.store.chain_state(ids[2]).length == 120, "a bad range stops only its own log"
    assert len(batch_hub.tree) == batch_hub.store.size() == serial_hub.store.size()
    assert batch_hub.tree.root() == serial_hub.tree.root()
    assert list(batch_hub.store.tiles()) == list(serial_hub.store.tiles())
    assert len(list(batch_hub.store.tiles())) == batch_hub.store.size() // 64
    assert batch_hub.store.counters() == serial_hub.store.counters()
    restarted = Hub(batch_hub.store, Ed25519Signer.from_seed(HUB_KEY), clock=Clock())
    assert restarted.tree.root() == batch_hub.tree.root()


def test_a_batch_sees_its_own_pending_records_duplicates_and_forks(tmp_path, clock):
    hub = Hub(LmdbHubStore(tmp_path / "hub"), Ed25519Signer.from_seed(HUB_KEY), clock=clock)
    signer, builder = new_device(clock)
    device_id = enroll(hub, signer, clock)
    raws = [builder.genesis().raw] + [builder.append("note", {"text": str(i)}).raw for i in range(99)]
    # A second history signed with the same key from seq 60 on: a fork of a record held in the same batch.
    other = ChainBuilder(signer, clock=clock, boot=1, state=verify_chain(raws[:60]))
    evil = other.append("note", {"text": "another history"}).raw
    results = hub.ingest_many([(device_id, raws[:50]), (device_id, raws[40:80]), (device_id, [evil])])
    assert [r.accepted for r in results] == [50, 30, 0]
    assert results[1].duplicates == 10, "records held in the same batch count as held"
    assert results[2].fork and results[2].problem["code"] == "FORK_DETECTED"
    assert hub.store.chain_state(device_id).length == 80, "the records before the fork are stored"
    assert hub.store.get_device(device_id).status == "forked"
    assert len(hub.store.forks()) == 1
    assert hub.tree.root() == Hub(hub.store, Ed25519Signer.from_seed(HUB_KEY), clock=clock).tree.root()


def test_refusals_in_a_batch_are_results_and_the_rest_is_merged(tmp_path, clock):
    hub = Hub(LmdbHubStore(tmp_path / "hub"), Ed25519Signer.from_seed(HUB_KEY), clock=clock)
    signer, builder = new_device(clock)
    device_id = enroll(hub, signer, clock)
    _, stranger_log = new_device(clock)
    raws = [builder.genesis().raw, builder.append("note", {"text": "a"}).raw]
    results = hub.ingest_many([(stranger_log.device_id, [stranger_log.genesis().raw]), (device_id, raws)])
    assert isinstance(results[0], LedgerError) and results[0].code == "UNKNOWN_DEVICE"
    assert isinstance(results[1], IngestResult) and results[1].accepted == 2
    assert hub.store.counters()["refused_unknown"] == 1


def test_a_rotation_checked_ahead_is_verified_with_the_new_key(tmp_path, clock):
    hub = Hub(LmdbHubStore(tmp_path / "hub"), Ed25519Signer.from_seed(HUB_KEY), clock=clock)
    signer, builder = new_device(clock)
    device_id = enroll(hub, signer, clock)
    raws = [builder.genesis().raw] + [builder.append("note", {"text": str(i)}).raw for i in range(99)]
    raws.append(builder.rotate(Ed25519Signer.from_seed(b"\x42" * 32)).raw)
    raws += [builder.append("note", {"text": f"new key {i}"}).raw for i in range(99)]
    forged = [*raws[:150], _forge(raws[150]), *raws[151:]]
    verifier = CrossLogVerifier(workers=2)
    try:
        results = hub.ingest_many([(device_id, forged[:120]), (device_id, forged[119:])], verifier=verifier)
    finally:
        verifier.close()
    assert [r.accepted for r in results] == [120, 30], "the new key's records verify; the forgery stops them"
    assert results[1].problem["code"] == "INVALID_SIGNATURE" and "seq 150" in results[1].problem["where"]
    new_key = Ed25519Signer.from_seed(b"\x42" * 32).public_key
    assert hub.authority.devices[device_id].rotations == {100: new_key}, "the rotation is signed into the hub's log"
    assert hub.store.chain_state(device_id).length == 150 and hub.store.chain_state(device_id).key == new_key
    assert hub.tree.root() == Hub(hub.store, Ed25519Signer.from_seed(HUB_KEY), clock=clock).tree.root()


def test_a_failed_commit_leaves_store_and_tree_as_they_were(tmp_path, clock):
    store = LmdbHubStore(tmp_path / "hub", map_size=1 << 20)
    hub = Hub(store, Ed25519Signer.from_seed(HUB_KEY), clock=clock)
    signer, builder = new_device(clock)
    device_id = enroll(hub, signer, clock)
    raws = [builder.genesis().raw] + [builder.append("note", {"text": "x" * 400}).raw for i in range(999)]
    assert hub.ingest(device_id, raws[:100]).accepted == 100
    size, root = store.size(), hub.tree.root()
    with pytest.raises(StoreFull):
        hub.ingest_many([(device_id, raws[i:i + 300]) for i in range(100, 1000, 300)])
    assert store.size() == len(hub.tree) == size and hub.tree.root() == root
    assert store.chain_state(device_id).length == 100
    assert hub.ingest(device_id, raws[100:110]).accepted == 10, "the writer goes on from what it holds"
    assert Hub(store, Ed25519Signer.from_seed(HUB_KEY), clock=clock).tree.root() == hub.tree.root()


def test_a_killed_worker_costs_time_not_records(tmp_path, clock):
    import os
    import signal

    hub = Hub(LmdbHubStore(tmp_path / "hub"), Ed25519Signer.from_seed(HUB_KEY), clock=clock)
    logs = _logs(clock, 2, 150)
    ids = [enroll(hub, signer, clock) for signer, _ in logs]
    verifier = CrossLogVerifier(workers=2)
    try:
        verifier.start()
        os.kill(next(iter(verifier._pool._processes)), signal.SIGKILL)
        first = hub.ingest_many([(ids[0], logs[0][1])], verifier=verifier)
        second = hub.ingest_many([(ids[1], logs[1][1])], verifier=verifier)
    finally:
        verifier.close()
    assert [r.accepted for r in first + second] == [150, 150]
    assert [r.problem for r in first + second] == [None, None]


def test_calls_checked_ahead_keep_what_each_call_alone_keeps(two_stores):
    """The next call's signatures go to the workers before this call is merged (a pull's `check_ahead`): a new
    log begun in one call and continued in the next, a rotation in one call with the next call's ranges guessed
    under the old key, and a forgery after the rotation keep exactly what one ingest_many per call keeps, with
    the same tree."""
    clock = Clock()
    logs = _logs(clock, 3, 120)
    serial_hub, ids = _hub(two_stores[0], Clock(), logs)
    stream_hub, stream_ids = _hub(two_stores[1], Clock(), logs)
    assert ids == stream_ids
    rotating = ChainBuilder(logs[0][0], clock=clock, boot=1, state=verify_chain(logs[0][1]))
    new_key = Ed25519Signer.from_seed(b"\x43" * 32)
    more = [rotating.rotate(new_key).raw] + [rotating.append("note", {"text": f"new {i}"}).raw for i in range(79)]
    more[50] = _forge(more[50])  # seq 170, signed after the rotation
    calls = [[(ids[1], logs[1][1][:70]), (ids[0], logs[0][1][:100])],
             [(ids[0], logs[0][1][99:]), (ids[1], logs[1][1][69:]), (ids[0], more[:20])],
             [(ids[2], logs[2][1][:60]), (ids[0], more[19:])],
             [(ids[2], logs[2][1][59:])]]

    class Spy(CrossLogVerifier):
        def ahead(self, items, keys):
            seen.append(dict(keys))
            return super().ahead(items, keys)

    seen: list[dict[bytes, bytes]] = []
    serial = [serial_hub.ingest_many(call) for call in calls]
    verifier = Spy(workers=2)
    try:
        guessed: dict[bytes, bytes] = {}
        checks = stream_hub.checks_ahead(calls[0], verifier, guessed)
        streamed = []
        for k, call in enumerate(calls):
            following = stream_hub.checks_ahead(calls[k + 1], verifier, guessed) if k + 1 < len(calls) else []
            streamed.append(stream_hub.ingest_many(call, checks=checks))
            checks = following
    finally:
        verifier.close()

    assert [[r.to_json() for r in rs] for rs in streamed] == [[r.to_json() for r in rs] for rs in serial]
    assert streamed[2][1].accepted == 30 and streamed[2][1].problem["code"] == "INVALID_SIGNATURE"
    assert "seq 170" in streamed[2][1].problem["where"]
    assert seen[3][ids[2]] == logs[2][0].public_key, \
        "a log begun in one call is checked ahead under its genesis key in the next, before it is committed"
    assert seen[2][ids[0]] == logs[0][0].public_key, "the next call is guessed before the rotation is committed"
    assert stream_hub.store.chain_state(ids[0]).length == 170
    assert stream_hub.store.chain_state(ids[0]).key == new_key.public_key
    assert len(stream_hub.tree) == stream_hub.store.size() == serial_hub.store.size()
    assert stream_hub.tree.root() == serial_hub.tree.root()
    assert stream_hub.store.counters() == serial_hub.store.counters()
    assert Hub(stream_hub.store, Ed25519Signer.from_seed(HUB_KEY), clock=Clock()).tree.root() == stream_hub.tree.root()


def test_the_garbage_collector_waits_while_the_writer_merges_and_runs_after(tmp_path):
    import gc

    from ledger import check_signatures

    clock = Clock()
    store = LmdbHubStore(tmp_path / "hub")
    try:
        logs = _logs(clock, 2, 5)
        hub, ids = _hub(store, clock, logs)
        during: list[bool] = []

        def check(pairs):
            during.append(gc.isenabled())
            return check_signatures(pairs)

        hub.check = check
        assert gc.isenabled()
        assert hub.ingest(ids[0], logs[0][1]).accepted == 5
        assert [r.accepted for r in hub.ingest_many([(ids[1], logs[1][1][:3])])] == [3]
        assert during == [False, False] and gc.isenabled()
        gc.disable()  # turned off by the program embedding the hub: it stays off
        try:
            assert hub.ingest(ids[1], logs[1][1][3:]).accepted == 2
            assert during[-1] is False and not gc.isenabled()
        finally:
            gc.enable()
    finally:
        store.close()


@pytest.mark.parametrize("many", [False, True])
def test_the_collection_after_a_merge_does_not_walk_the_records_let_go(tmp_path, many):
    """The collector comes back once the merged records have been told and let go: the first collection after a
    merge of 2,000 records walks the few objects still young, not every record (each a record, its body and
    its lists), as it did when it came back while the merge still held them all."""
    import gc

    clock = Clock()
    store = LmdbHubStore(tmp_path / "hub")
    young: list[int] = []

    def walked(phase, info):
        if phase == "start":
            young.append(len(gc.get_objects(0)))

    try:
        logs = _logs(clock, 1, 2000)
        hub, ids = _hub(store, clock, logs)
        told: list[int] = []
        hub.listen(lambda records, now: told.append(len(records)))
        gc.collect()
        gc.callbacks.append(walked)
        try:
            if many:
                assert [r.accepted for r in hub.ingest_many([(ids[0], logs[0][1])])] == [2000]
            else:
                assert hub.ingest(ids[0], logs[0][1]).accepted == 2000
            gc.collect(0)  # if none ran on its own since the merge
        finally:
            gc.callbacks.remove(walked)
        assert sum(told) == 2000
        assert young and max(young) < 1000, young
    finally:
        store.close()
