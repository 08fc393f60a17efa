"""The LMDB log store: durable own appends with group commit, verified replicas, forks, layout, map full."""

from __future__ import annotations

import asyncio

import lmdb
import pytest

from edge.errors import DeviceBlocked, StoreFull, StoreLayoutError, WrongDevice
from edge.keys import DeviceKey
from edge.store import GroupCommit, LmdbLogStore
from ledger import ChainBuilder, ChainState, Ed25519Signer, ForkEvidence, MalformedRecord, verify_chain

from .common import peer_log


def _clock() -> int:
    return 1_763_900_000


async def _commit(store: LmdbLogStore, key: DeviceKey, boot: int = 1, **kw) -> GroupCommit:
    gc = GroupCommit(store, key, clock=_clock, boot=boot, **kw)
    await gc.start()
    return gc


async def test_group_commit_appends_durably_and_batches(tmp_path):
    key = DeviceKey(b"\x01" * 32)
    store = LmdbLogStore(tmp_path / "s")
    gc = await _commit(store, key)
    records = await asyncio.gather(*(gc.append("note", {"text": f"n{i}"}) for i in range(600)))
    assert sorted(r.seq for r in records) == list(range(1, 601))
    # Many waiters shared few commits: that is the point of group commit.
    assert gc.stats["commits"] < 300
    await gc.close()
    raws = store.log_range(key.device_id, 0, 10_000)
    assert len(raws) == 601
    assert verify_chain(raws).length == 601
    for r in records:
        assert store.get(key.device_id, r.seq) == r.raw
        assert store.locate(r.id) == (key.device_id, r.seq)
    store.close()


async def test_resumes_seq_and_prev_after_reopen(tmp_path):
    key = DeviceKey(b"\x02" * 32)
    store = LmdbLogStore(tmp_path / "s")
    gc = await _commit(store, key, boot=1)
    last = await gc.append("note", {"text": "before"})
    await gc.close()
    store.close()

    store = LmdbLogStore(tmp_path / "s")
    gc = await _commit(store, key, boot=2)
    nxt = await gc.append("note", {"text": "after"})
    await gc.close()
    assert nxt.seq == last.seq + 1 and nxt.prev == last.id and nxt.boot == 2
    assert verify_chain(store.log_range(key.device_id, 0, 100)).length == 3
    store.close()


async def test_bad_body_fails_alone_and_map_stays_consistent(tmp_path):
    key = DeviceKey(b"\x03" * 32)
    store = LmdbLogStore(tmp_path / "s")
    gc = await _commit(store, key)
    good = asyncio.ensure_future(gc.append("note", {"text": "ok"}))
    with pytest.raises(MalformedRecord, match="price_idr"):
        await gc.append("price", {"market": "m", "commodity": "beras", "unit": "kg", "price_idr": "mahal"})
    with pytest.raises(MalformedRecord, match="key records"):
        await gc.append("key", {"pubkey": b"\x00" * 32})
    assert (await good).seq == 1
    await gc.close()
    assert verify_chain(store.log_range(key.device_id, 0, 100)).length == 2
    store.close()


def test_peer_replica_verified_duplicates_idempotent(tmp_path):
    store = LmdbLogStore(tmp_path / "s")
    _, records = peer_log(7, 20)
    dev = records[0].device_id
    first = store.receive_records(dev, [r.raw for r in records[:10]])
    assert (first.accepted, first.duplicates, first.length) == (10, 0, 10)
    again = store.receive_records(dev, [r.raw for r in records[5:]])
    assert (again.accepted, again.duplicates, again.length) == (11, 5, 21)
    assert store.log_range(dev, 0, 100) == [r.raw for r in records]
    assert store.state(dev).head == records[-1].id
    # A gap is refused with the chain's own diagnostic, nothing stored past it.
    gap = store.receive_records(dev, [peer_log(7, 30)[1][25].raw])
    assert gap.accepted == 0 and "BROKEN_CHAIN" in gap.problem
    store.close()


def test_replica_refuses_bad_signature_and_garbage(tmp_path):
    store = LmdbLogStore(tmp_path / "s")
    _, records = peer_log(8, 3)
    dev = records[0].device_id
    tampered = bytearray(records[1].raw)
    tampered[-1] ^= 1
    out = store.receive_records(dev, [records[0].raw, bytes(tampered)])
    assert out.accepted == 1 and "INVALID_SIGNATURE" in out.problem
    out = store.receive_records(dev, [b"\xa1\x01"])
    assert out.accepted == 0 and "MALFORMED" in out.problem
    assert store.state(dev).length == 1
    store.close()


def test_fork_kept_as_evidence_and_device_blocked(tmp_path):
    store = LmdbLogStore(tmp_path / "s")
    signer, records = peer_log(9, 5)
    dev = records[0].device_id
    assert store.receive_records(dev, [r.raw for r in records]).accepted == 6
    # The same key signs another record at seq 3 on top of the same history: equivocation.
    other = ChainBuilder(signer, clock=_clock, boot=1, state=_state_after(records[:3]))
    evil = other.append("note", {"text": "another history"})
    out = store.receive_records(dev, [evil.raw])
    assert out.fork and "FORK_DETECTED" in out.problem
    assert dev in store.blocked()
    [evidence] = store.forks()
    assert isinstance(evidence, ForkEvidence) and evidence.seq == 3
    assert {evidence.first.id, evidence.second.id} == {records[3].id, evil.id}
    evidence.verify(signer.public_key)
    with pytest.raises(DeviceBlocked):
        store.receive_records(dev, [records[0].raw])
    assert [log.forked for log in store.logs()] == [True]
    store.close()
    # The block survives a restart.
    store = LmdbLogStore(tmp_path / "s")
    assert dev in store.blocked()
    store.close()


def _state_after(records) -> ChainState:
    state = ChainState.empty(records[0].device_id)
    from ledger import link

    for r in records:
        state, _ = link(state, r)
    return state


async def test_restored_device_learns_its_head_from_a_peer(tmp_path):
    """Records of our own device that a peer held extend the log; the writer then signs on top of them."""
    key = DeviceKey(b"\x04" * 32)
    old = LmdbLogStore(tmp_path / "old")
    gc = await _commit(old, key)
    for i in range(5):
        await gc.append("note", {"text": f"old {i}"})
    await gc.close()

    fresh = LmdbLogStore(tmp_path / "fresh")
    out = fresh.receive_records(key.device_id, old.log_range(key.device_id, 0, 100))
    assert out.accepted == 6
    gc3 = await _commit(fresh, key, boot=5)
    rec = await gc3.append("note", {"text": "after restore"})
    assert rec.seq == 6
    # More of our own log arrives while the writer runs: it rebuilds on the stored head (no self-fork).
    gc = await _commit(old, key, boot=6)
    extra = await gc.append("note", {"text": "from the old card"})
    await gc.close()
    assert extra.seq == 6  # the old store never saw seq 6 of the new one: that is a fork, and it shows
    res = fresh.receive_records(key.device_id, [extra.raw])
    assert res.fork
    await gc3.close()
    old.close()
    fresh.close()


async def test_stale_head_rebuilds_instead_of_forking(tmp_path):
    key = DeviceKey(b"\x05" * 32)
    a = LmdbLogStore(tmp_path / "a")
    gca = await _commit(a, key)
    for i in range(3):
        await gca.append("note", {"text": f"a{i}"})
    await gca.close()
    b = LmdbLogStore(tmp_path / "b")
    b.receive_records(key.device_id, a.log_range(key.device_id, 0, 2))  # b knows seq 0..1
    gcb = await _commit(b, key, boot=3)
    b.receive_records(key.device_id, a.log_range(key.device_id, 2, 4))  # now 0..3, behind gcb's back
    rec = await gcb.append("note", {"text": "b"})
    assert rec.seq == 4
    assert rec.prev == a.state(key.device_id).head  # signed on seq 3, which it learnt from the peer
    await gcb.close()
    assert verify_chain(b.log_range(key.device_id, 0, 10)).length == 5
    assert not b.blocked()
    a.close()
    b.close()


def test_unknown_layout_refused(tmp_path):
    LmdbLogStore(tmp_path / "s").close()
    env = lmdb.open(str(tmp_path / "s"), max_dbs=10)
    meta = env.open_db(b"meta")
    with env.begin(write=True) as txn:
        txn.put(b"layout", b"99", db=meta)
    env.close()
    with pytest.raises(StoreLayoutError, match="layout '99'"):
        LmdbLogStore(tmp_path / "s")


def test_store_bound_to_one_device(tmp_path):
    store = LmdbLogStore(tmp_path / "s")
    store.claim(b"\x01" * 16)
    with pytest.raises(WrongDevice, match="belongs to device"):
        store.claim(b"\x02" * 16)
    store.close()


def test_cursors_persist(tmp_path):
    store = LmdbLogStore(tmp_path / "s")
    assert store.cursor("hub", b"\x01" * 16) == 0
    store.set_cursor("hub", b"\x01" * 16, 42)
    store.close()
    store = LmdbLogStore(tmp_path / "s")
    assert store.cursor("hub", b"\x01" * 16) == 42
    assert store.cursor("peer-2", b"\x01" * 16) == 0
    store.close()


async def test_map_full_is_typed_and_loses_nothing_acknowledged(tmp_path):
    key = DeviceKey(b"\x06" * 32)
    store = LmdbLogStore(tmp_path / "s", map_size=256 * 1024)
    gc = await _commit(store, key)
    acked = []
    error = None
    for i in range(5000):
        try:
            acked.append(await gc.append("note", {"text": f"filling the map {i} " + "x" * 200}))
        except StoreFull as exc:
            error = exc
            break
    assert error is not None and error.code == "STORE_FULL" and "map_size" in error.hint
    # Back-pressure, not corruption: the writer keeps refusing cleanly and reads still work.
    with pytest.raises(StoreFull):
        await gc.append("note", {"text": "y" * 300})
    assert len(store.log_range(key.device_id, 0, 10)) == 10
    await gc.close()
    store.close()
    store = LmdbLogStore(tmp_path / "s", map_size=1 << 20)  # a bigger map: the log goes on
    raws = store.log_range(key.device_id, 0, 100_000)
    assert verify_chain(raws).length == len(acked) + 1
    for r in acked:
        assert raws[r.seq] == r.raw
    gc = await _commit(store, key, boot=2)
    assert (await gc.append("note", {"text": "room again"})).seq == len(acked) + 1
    await gc.close()
    store.close()


def test_signer_equivalence_and_ed25519_key_class():
    key = DeviceKey(b"\x07" * 32)
    assert key.sign(b"data") == Ed25519Signer.from_seed(b"\x07" * 32).sign(b"data")


def test_release_pages_unmaps_what_was_read_and_reads_still_work(tmp_path):
    # The daemon calls this twice a second so its resident memory does not grow with the store; every write
    # unmaps what it read on its own.
    store = LmdbLogStore(tmp_path / "s", map_size=1 << 28)
    try:
        _, records = peer_log(7, 3000)
        device = records[0].device_id
        store.receive(device, [r.raw for r in records[:1500]])
        assert store.get(device, 1499) == records[1499].raw
        assert store.mapped_bytes() > 0
        store.receive(device, [r.raw for r in records[1500:]])  # reads the id index at random
        assert store.mapped_bytes() == 0  # the write unmapped what it read
        raws = store.log_range(device, 0, len(records))
        assert store.mapped_bytes() > 1 << 19  # the records just read are mapped in
        store.release_pages()
        assert store.mapped_bytes() == 0
        assert store.log_range(device, 0, len(records)) == raws == [r.raw for r in records]
        assert store.mapped_bytes() > 1 << 19
    finally:
        store.close()
