"""One contract for every HubStore: LMDB (embedded) and PostgreSQL (127.0.0.1:5432, database test)."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import cbor2
import psycopg
import pytest

from hub.pending import PendingLimits, TooManyPendingFromSource
from hub.service import Hub
from hub.store import DeviceInfo, HubStore, LmdbHubStore
from ledger import ChainBuilder, ChainState, Ed25519Signer, ForkEvidence, verify_bundle, verify_receipt
from ledger.enroll import make_enroll_request
from tests.hub.conftest import Clock, enroll, new_device
from tests.pg import PG_DSN


def _pg_store():
    from hub.pg import PgHubStore
    from hub.store import StoreError

    try:
        return PgHubStore(PG_DSN, schema=f"t_{uuid.uuid4().hex[:12]}")
    except StoreError as exc:  # a missing database is a failure, never a skip
        pytest.fail(f"PostgreSQL is required for the store contract tests: {exc}")


@contextmanager
def reopenable(kind: str, path: Path, **pg_kw: object) -> Iterator[tuple[Callable[..., HubStore], str]]:
    """A way to open one store ("lmdb" at `path`, or "postgres" in a schema of its own) as often as a test asks,
    with the schema's name; every store opened is closed, and the schema dropped, at the end."""
    from hub.pg import PgHubStore

    schema = f"t_{uuid.uuid4().hex[:12]}"
    opened: list[HubStore] = []

    def open_store(**kw: object) -> HubStore:
        store: HubStore = (LmdbHubStore(path, **kw) if kind == "lmdb"  # type: ignore[arg-type]
                           else PgHubStore(PG_DSN, schema=schema, **pg_kw, **kw))  # type: ignore[arg-type]
        opened.append(store)
        return store

    try:
        yield open_store, schema
    finally:
        for store in opened:
            store.close()
        if kind == "postgres":
            with psycopg.connect(PG_DSN, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


@pytest.fixture(params=["lmdb", "postgres"])
def make_store(request, tmp_path):
    opened = []

    def make(name: str = "a"):
        if request.param == "lmdb":
            store = LmdbHubStore(tmp_path / name)
        else:
            store = opened[0].__class__(PG_DSN, schema=opened[0].schema) if opened else _pg_store()
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()
    if request.param == "postgres" and opened:
        cleaner = opened[0].__class__(PG_DSN, schema=opened[0].schema)
        cleaner.drop()
        cleaner.close()


def test_devices_round_trip(make_store):
    store = make_store()
    dev = DeviceInfo(device_id=b"\x01" * 16, pubkey=b"\x02" * 32, site="sppg-01", role="kitchen_exit")
    assert store.get_device(dev.device_id) is None
    store.put_device(dev)
    assert store.get_device(dev.device_id) == dev
    store.put_device(dev.with_status("revoked", revoked_from=7))
    got = store.get_device(dev.device_id)
    assert got.status == "revoked" and got.revoked_from == 7
    assert [d.device_id for d in store.devices()] == [dev.device_id]


def test_append_ranges_and_global_log(make_store):
    store = make_store()
    clock = Clock()
    _, builder = new_device(clock)
    records = [builder.genesis()] + [builder.append("note", {"text": str(i)}) for i in range(9)]
    state = ChainState.empty(records[0].device_id)
    from ledger import link

    for r in records[:6]:
        state, _ = link(state, r)
    assert store.append(records[0].device_id, records[:6], state, 100) == 6
    assert store.chain_state(records[0].device_id) == state
    assert store.log_range(records[0].device_id, 2, 5) == [r.raw for r in records[2:5]]
    assert store.get_raw(records[0].device_id, 5) == records[5].raw
    assert store.get_raw(records[0].device_id, 6) is None
    assert store.record_id(records[0].device_id, 5) == records[5].id
    assert store.record_id(records[0].device_id, 6) is None
    assert store.locate(records[3].id) == 3
    assert store.locate(b"\x00" * 32) is None
    entries = store.entries(1, 4)
    assert [e.seq for e in entries] == [1, 2, 3] and entries[0].arrived_at == 100
    from ledger.merkle import leaf_hash

    assert list(store.leaf_hashes()) == [leaf_hash(r.raw) for r in records[:6]]
    assert list(store.leaf_hashes(2, 5)) == [leaf_hash(r.raw) for r in records[2:5]]
    assert list(store.leaf_hashes(4)) == [leaf_hash(r.raw) for r in records[4:6]]
    assert list(store.leaf_hashes(7, 9)) == []
    assert store.size() == 6


def test_checkpoints_forks_counters(make_store):
    store = make_store()
    store.put_checkpoint(5, 10, b"cp1")
    store.put_checkpoint(9, 20, b"cp2")
    assert store.checkpoints() == [b"cp1", b"cp2"]
    store.put_fork(b"\x01" * 16, b"evidence-bytes-" + b"\x00" * 32)
    assert store.forks() == [(b"\x01" * 16, b"evidence-bytes-" + b"\x00" * 32)]
    store.bump("refused_invalid", 3)
    store.bump("refused_invalid")
    assert store.counters()["refused_invalid"] == 4


def test_region_checkpoints_and_split_views(make_store):
    store = make_store()
    region, other = b"\x02" * 16, b"\x03" * 16
    store.put_region_checkpoint(region, 300, b"cp300")
    store.put_region_checkpoint(region, 12, b"cp12")
    store.put_region_checkpoint(other, 5, b"other5")
    store.put_region_checkpoint(region, 12, b"cp12")  # a repeat keeps one
    assert store.region_checkpoints(region) == [b"cp12", b"cp300"], "in tree size order, one hub only"
    assert store.region_checkpoints(b"\x04" * 16) == []
    assert store.split_views() == []
    store.put_split_view(region, b"evidence")
    store.put_split_view(region, b"evidence")
    assert store.split_views() == [(region, b"evidence")]
    assert store.region_resumes() == []
    store.resume_region(region, 40, b"cp40", b"decision")
    assert store.region_checkpoints(region) == [b"cp40"], "the re-pinned checkpoint replaces those accepted"
    assert store.region_checkpoints(other) == [b"other5"]
    store.resume_region(other, 2, b"other2", b"second")
    store.resume_region(region, 41, b"cp41", b"third")
    assert store.region_resumes() == [(region, b"decision"), (other, b"second"), (region, b"third")]
    assert store.split_views() == [(region, b"evidence")], "the evidence stays"


def _hub_with_device(make_store):
    """A hub on a fresh store with one enrolled device: (clock, hub key, store, hub, builder, device id)."""
    clock = Clock()
    hub_key = Ed25519Signer.from_seed(b"\x42" * 32)
    store = make_store()
    hub = Hub(store, hub_key, clock=clock)
    signer, builder = new_device(clock)
    return clock, hub_key, store, hub, builder, enroll(hub, signer, clock)


def test_hub_flow_survives_reopen(make_store):
    clock, hub_key, store, hub, builder, device_id = _hub_with_device(make_store)
    records = [builder.genesis()] + [builder.append("scan", {"event": "departed", "site": "sppg-01",
                                                             "tags": [f"tag{i}"]}) for i in range(20)]
    base = len(hub.own_log())  # the hub's genesis and its approval come first in the tree
    result = hub.ingest(device_id, [r.raw for r in records])
    assert result.accepted == 21 and result.problem is None
    cp = hub.checkpoint()
    _, receipt = hub.receipt(records[7].id)
    assert verify_receipt(receipt, records[7].raw, hub_key.public_key).index == base + 7
    report = verify_bundle(hub.export(), hub_key=hub_key.public_key)
    assert report.ok, report.to_json()
    assert report.receipts_checked == 21 + base
    store.close()
    store2 = make_store("a")
    hub2 = Hub(store2, hub_key, clock=clock)
    assert hub2.tree.root() == cp.root
    assert hub2.latest_checkpoint().raw == cp.raw


def test_refusals_each_with_their_code(make_store):
    clock = Clock()
    hub = Hub(make_store(), Ed25519Signer.from_seed(b"\x43" * 32), clock=clock)
    signer, builder = new_device(clock)
    records = [builder.genesis()] + [builder.append("note", {"text": str(i)}) for i in range(5)]
    from ledger import LedgerError

    with pytest.raises(LedgerError) as unknown:
        hub.ingest(records[0].device_id, [r.raw for r in records])
    assert unknown.value.code == "UNKNOWN_DEVICE"
    device_id = enroll(hub, signer, clock)
    forged = bytearray(records[3].raw)
    forged[-1] ^= 1
    res = hub.ingest(device_id, [r.raw for r in records[:3]] + [bytes(forged)])
    assert res.accepted == 3 and res.problem["code"] == "INVALID_SIGNATURE"
    replay = hub.ingest(device_id, [r.raw for r in records[:3]])
    assert replay.accepted == 0 and replay.duplicates >= 1 and replay.problem is None
    gap = hub.ingest(device_id, [records[5].raw])
    assert gap.problem["code"] == "BROKEN_CHAIN"
    # A second history from seq 3 on: evidence is kept and the device stops.
    other = ChainBuilder(signer, clock=clock, boot=1, state=hub.store.chain_state(device_id))
    evil = other.append("note", {"text": "other history"})
    good = hub.ingest(device_id, [records[3].raw])
    assert good.accepted == 1
    fork = hub.ingest(device_id, [evil.raw])
    assert fork.fork and fork.problem["code"] == "FORK_DETECTED"
    evidence = ForkEvidence.from_cbor(hub.store.forks()[0][1])
    evidence.verify(signer.public_key)
    with pytest.raises(LedgerError) as blocked:
        hub.ingest(device_id, [records[4].raw])
    assert blocked.value.code == "DEVICE_BLOCKED"
    hub.resolve_fork(device_id)
    hub.revoke(device_id)
    after = hub.ingest(device_id, [records[4].raw])
    assert after.accepted == 0 and after.problem["code"] == "REVOKED_KEY"
    # Four records, and the hub's own log: genesis, approval, revocation.
    assert hub.store.size() == 4 + 3 and len(hub.own_log()) == 3


def test_receipts_for_old_records_rehash_their_tile_from_the_store(make_store):
    clock, hub_key, store, hub, builder, device_id = _hub_with_device(make_store)
    base = len(hub.own_log())
    records = [builder.genesis()] + [builder.append("note", {"text": str(i)}) for i in range(599)]
    assert hub.ingest(device_id, [r.raw for r in records]).accepted == 600
    hub.checkpoint()
    assert hub.tree.held < 600 // 2, "whole tiles are left to the store"
    for index in (0, 3, 255, 256, 300, 599):
        _, receipt = hub.receipt(records[index].id)
        assert verify_receipt(receipt, records[index].raw, hub_key.public_key).index == base + index
    store.close()
    reopened = Hub(make_store("a"), hub_key, clock=clock)
    assert reopened.tree.held == hub.tree.held
    _, receipt = reopened.receipt(records[17].id)
    assert verify_receipt(receipt, records[17].raw, hub_key.public_key).index == base + 17


def test_restart_reads_tile_roots_not_leaves(make_store):
    clock, hub_key, store, hub, builder, device_id = _hub_with_device(make_store)
    records = [builder.genesis()] + [builder.append("note", {"text": str(i)}) for i in range(149)]
    hub.ingest(device_id, [r.raw for r in records[:100]])
    hub.ingest(device_id, [r.raw for r in records[100:]])
    tiles = store.size() // 64
    assert tiles >= 2 and len(list(store.tiles())) == tiles, "each whole tile's root is kept as it closes"
    root, proof = hub.tree.root(), hub.tree.inclusion_proof(3)
    store.close()

    reads: list[tuple[int, int | None]] = []
    store2 = make_store("a")
    leaf_hashes = store2.leaf_hashes

    def counted(start: int = 0, end: int | None = None):
        reads.append((start, end))
        return leaf_hashes(start, end)

    store2.leaf_hashes = counted
    hub2 = Hub(store2, hub_key, clock=clock)
    assert hub2.tree.root() == root
    assert reads == [(tiles * 64, None)], "start-up reads only the leaves after the last whole tile"
    assert hub2.tree.inclusion_proof(3) == proof, "an old tile is rehashed from the store and checked"
    more = builder.append("note", {"text": "after restart"})
    assert hub2.ingest(device_id, [more.raw]).accepted == 1
    assert hub2.tree.root() != root


def test_a_store_without_tiles_keeps_them_on_start(make_store):
    clock, hub_key, store, _, builder, device_id = _hub_with_device(make_store)
    records = [builder.genesis()] + [builder.append("note", {"text": str(i)}) for i in range(199)]
    store.append(device_id, records, builder.state, clock())  # as an older release wrote it: no tiles
    assert list(store.tiles()) == []
    hub2 = Hub(store, hub_key, clock=clock)
    assert len(list(store.tiles())) == store.size() // 64 == 3
    assert Hub(store, hub_key, clock=clock).tree.root() == hub2.tree.root()


def test_heads_a_page_at_a_time_read_only_that_page(make_store):
    clock, _, store, hub, _, _ = _hub_with_device(make_store)
    for _ in range(6):
        signer, builder = new_device(clock)
        hub.ingest(enroll(hub, signer, clock), [builder.genesis().raw])
    states = store.states_after(b"", 100)
    assert [s.device_id for s in states] == sorted(s.device_id for s in states)
    assert store.states_after(states[2].device_id, 2) == states[3:5]
    pages, after = [], b""
    while True:
        page, more = hub.heads_page(after, 2)
        pages.extend(page)
        if more is None:
            break
        after = more
    assert sorted(pages, key=lambda h: h.device_id) == sorted(hub.heads(), key=lambda h: h.device_id)
    assert len(pages) == 6, "the hub's own log is not offered, as in heads()"


def test_reads_from_other_threads_while_the_writer_commits(make_store):
    """The hub serves reads from worker threads (sync, HTTP) while its one writer commits: a store shared so
    must give every reader a consistent answer and the writer every commit (one PostgreSQL connection nests
    transactions per connection, not per thread)."""
    import threading

    from ledger import link

    store = make_store()
    clock = Clock()
    _, builder = new_device(clock)
    records = [builder.genesis()] + [builder.append("note", {"text": str(i)}) for i in range(399)]
    device_id = records[0].device_id
    stop = threading.Event()
    seen: list[int] = []
    errors: list[BaseException] = []

    def read() -> None:
        try:
            while not stop.is_set():
                state = store.chain_state(device_id)
                length = state.length if state else 0
                assert len(store.log_range(device_id, 0, length)) == length
                seen.append(length)
        except BaseException as exc:  # reported by the test thread
            errors.append(exc)

    readers = [threading.Thread(target=read) for _ in range(4)]
    for t in readers:
        t.start()
    state = ChainState.empty(device_id)
    try:
        for start in range(0, 400, 8):
            batch = records[start:start + 8]
            for r in batch:
                state, _ = link(state, r)
            store.append(device_id, batch, state, 100 + start)
    finally:
        stop.set()
        for t in readers:
            t.join()
    assert not errors, errors[0]
    assert store.chain_state(device_id) == state and store.size() == 400
    assert seen and max(seen) <= 400


def test_device_statuses_count_each_status(make_store):
    store = make_store()
    assert store.device_statuses() == {}
    for i, status in enumerate(["active", "active", "pending", "revoked", "active"]):
        store.put_device(DeviceInfo(device_id=bytes([i + 1]) * 16, pubkey=b"\x02" * 32, site="sppg-01",
                                    role="kitchen_exit", status=status, revoked_from=3 if status == "revoked" else None))
    store.put_device(DeviceInfo(device_id=b"\x03" * 16, pubkey=b"\x02" * 32, site="sppg-01", role="kitchen_exit",
                                status="forked"))  # replaces the pending one
    assert store.device_statuses() == {"active": 3, "revoked": 1, "forked": 1}
    assert store.device_statuses() == dict(Counter(d.status for d in store.devices()))


def test_pending_devices_are_listed_and_dropped_only_while_pending(make_store):
    store = make_store()
    statuses = ["pending", "active", "pending", "revoked", "pending"]
    for i, status in enumerate(statuses):
        store.put_device(DeviceInfo(device_id=bytes([i + 1]) * 16, pubkey=b"\x02" * 32, site="sppg-01",
                                    role="kitchen_exit", status=status, enrolled_at=100 + i,
                                    source=f"192.0.2.{i}" if i else "",
                                    revoked_from=3 if status == "revoked" else None))
    pending = store.pending_devices()
    assert [d.device_id[0] for d in pending] == [1, 3, 5]
    assert [d.source for d in pending] == ["", "192.0.2.2", "192.0.2.4"]  # kept, and none is ""
    # Approved meanwhile (2 is active), or unknown (9): not dropped.
    dropped = store.drop_pending(b"\x01" * 16, b"\x02" * 16, b"\x03" * 16, b"\x09" * 16)
    assert sorted(d.device_id[0] for d in dropped) == [1, 3]
    assert store.get_device(b"\x01" * 16) is None and store.get_device(b"\x02" * 16).status == "active"
    assert [d.device_id[0] for d in store.pending_devices()] == [5]
    assert store.device_statuses() == {"active": 1, "revoked": 1, "pending": 1}
    assert store.drop_pending() == []


def test_a_device_stored_before_sources_were_kept_reads_as_one_without(make_store):
    old = cbor2.dumps([b"\x01" * 16, b"\x02" * 32, "sppg-01", "kitchen_exit", "pending", None, 5, "dapur"])
    device = DeviceInfo.from_cbor(old)
    assert device.source == "" and device.to_cbor() == old
    store = make_store()
    store.put_device(DeviceInfo.from_cbor(old))
    assert store.pending_devices() == [device]


def test_a_hub_bounds_pending_requests_by_source_and_drops_them_unsigned_once_expired(make_store):
    """On each backend: a source holds its places, not the hub's; a request nobody approved is dropped after
    expire_s, signing nothing into the hub's own log, and a device approved meanwhile stays."""
    clock = Clock()
    hub = Hub(make_store(), Ed25519Signer.from_seed(b"\x44" * 32), clock=clock,
              pending=PendingLimits(total=10, per_address=2, per_network=3, expire_s=3600))

    def request() -> bytes:
        signer, _ = new_device(clock)
        return make_enroll_request(signer, site="sppg-01", role="kitchen_exit", name="x", time=clock(),
                                   hub_id=hub.hub_id)

    first = [hub.enroll(request(), source="192.0.2.7") for _ in range(2)]
    with pytest.raises(TooManyPendingFromSource, match="pending_per_address"):
        hub.enroll(request(), source="192.0.2.7")
    with pytest.raises(TooManyPendingFromSource, match="pending_per_network"):
        [hub.enroll(request(), source="192.0.2.8") for _ in range(2)]
    assert hub.enroll(request(), source="198.51.100.1").source == "198.51.100.1"
    hub.approve(first[0].device_id)
    own = len(hub.own_log())
    clock.advance(3600)
    dropped = hub.expire_pending()
    assert {d.source for d in dropped} == {"192.0.2.7", "192.0.2.8", "198.51.100.1"} and len(dropped) == 3
    assert len(hub.own_log()) == own and hub.store.chain_state(hub.hub_id).length == own
    assert hub.store.get_device(first[0].device_id).status == "active"
    assert hub.store.get_device(first[1].device_id) is None and hub.store.pending_devices() == []
    assert [hub.enroll(request(), source="192.0.2.7").status for _ in range(2)] == ["pending", "pending"]
