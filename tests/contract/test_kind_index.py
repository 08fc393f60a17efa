"""The store's kind index (the log's indices by record kind), kept by every HubStore in the commit that holds the
records and built from the log for a store from before it: LMDB and PostgreSQL alike."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import lmdb
import psycopg
import pytest

from hub import pg
from hub import store as store_module
from hub.pg import KIND_INDEX_VERSION, SCHEMA_VERSION
from hub.service import Hub
from hub.store import LAYOUT_VERSION, HubStore, LmdbHubStore, kind_index_of_log
from ledger import ChainBuilder, Ed25519Signer, decode_record
from tests.contract.test_hub_store import PG_DSN, make_store, reopenable  # noqa: F401  (the fixture over both stores)
from tests.hub.conftest import Clock, enroll, new_device
from tests.wait import wait_until

KINDS = ("key", "authority", "note", "reading", "scan", "stock")


def _fill(hub: Hub, clock: Clock) -> None:
    """Two devices whose notes, readings, scans and stock movements interleave in the log, a push at a time."""
    builders = []
    for _ in range(2):
        signer, _ = new_device(clock)
        device_id = enroll(hub, signer, clock, site="K1", role="kitchen")
        builder = ChainBuilder(signer, clock=clock, boot=1)
        assert hub.ingest(device_id, [builder.genesis().raw]).accepted == 1
        builders.append((device_id, builder))
    for i in range(30):
        device_id, builder = builders[i % 2]
        raws = [builder.append("note", {"text": str(i)}).raw]
        if i % 3 == 0:
            raws.append(builder.append("scan", {"site": "K1", "event": "cooked", "cooked_at": clock(), "count": i}).raw)
        if i % 7 == 0:
            raws.append(builder.append("stock", {"site": "K1", "item": "beras", "movement": "use", "qty": i,
                                                 "unit": "g"}).raw)
        if i % 2 == 0:
            raws.append(builder.append("reading", {"site": "K1", "sensor": "p", "temp_cc": i, "rh_cp": 1}).raw)
        clock.advance(10)
        assert hub.ingest(device_id, raws).accepted == len(raws)
    device_id, builder = builders[0]  # and a long run of one kind in one commit
    assert hub.ingest(device_id, [builder.append("note", {"text": f"run {i}"}).raw for i in range(25)]).accepted == 25


def _by_kind(store: HubStore) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {kind: [] for kind in KINDS}
    for e in store.entries(0, store.size()):
        out[decode_record(e.raw).kind].append(e.index)
    return out


def _paged(store: HubStore, kind: str | None, start: int, end: int, limit: int) -> list[int]:
    seen: list[int] = []
    while page := store.kind_positions(kind, start, end, limit):
        assert len(page) <= limit
        seen += page
        start = page[-1] + 1
    return seen


def _index(store: HubStore) -> dict[str, list[int]]:
    return {kind: _paged(store, kind, 0, store.size(), 4) for kind in KINDS}


def test_the_kind_index_holds_each_kind_in_log_order_a_page_at_a_time_and_survives_a_reopen(make_store):  # noqa: F811
    clock = Clock()
    store = make_store()
    hub = Hub(store, Ed25519Signer.from_seed(b"\x71" * 32), clock=clock)
    _fill(hub, clock)
    want = _by_kind(store)
    assert _index(store) == want and all(want.values())
    size = store.size()
    # A range of the log: the indices from `start` up to `end` only, also where both cut into a run of one kind.
    assert _paged(store, "note", 20, 40, 3) == [i for i in want["note"] if 20 <= i < 40]
    run = want["note"][-25:]
    assert run == list(range(run[0], run[0] + 25))
    assert _paged(store, "note", run[3], run[-3], 4) == run[3:-3]
    assert store.kind_positions("note", run[2], size, 5) == run[2:7]
    assert store.kind_positions("scan", size, size + 10, 5) == [] and _paged(store, None, 0, size, 5) == []
    # The entries at those indices are the log's own, in order.
    at = want["stock"] + want["scan"][:3]
    assert store.entries_at(sorted(at)) == [store.entries(i, i + 1)[0] for i in sorted(at)]
    dense = [i for i in range(5, 30) if i % 4]  # most of a span: read as a range on PostgreSQL
    assert store.entries_at(dense) == [e for e in store.entries(5, 30) if e.index % 4]
    store.close()
    again = make_store()
    assert _index(again) == want


@dataclass
class OldStore:
    """A store written the way a release before the kind index left it (LMDB layout 2, PostgreSQL schema 9):
    what `_index` answers of it, its index as a store written fresh held it ((kind code, index) pairs), its size."""

    want: dict[str, list[int]]
    fresh: list[tuple[int, int]]
    size: int
    open: Callable[..., HubStore]
    index_rows: Callable[[HubStore], list[tuple[int, int]]]


@pytest.fixture(params=["lmdb", "postgres"])
def old_store(request, tmp_path) -> Iterator[OldStore]:
    """PostgreSQL missing fails, never skips."""
    with reopenable(request.param, tmp_path / "s", partition_leaves=64) as (open_store, schema):
        def index_rows(store: HubStore) -> list[tuple[int, int]]:
            if isinstance(store, LmdbHubStore):
                with store._env.begin() as txn:
                    keys = [bytes(k) for k in txn.cursor(db=store._db["kind_index"]).iternext(values=False)]
                return sorted((k[0], int.from_bytes(k[1:], "big")) for k in keys)
            with psycopg.connect(PG_DSN, autocommit=True) as conn:  # runs split at commits or chunks alike
                runs = conn.execute(f"SELECT kind, first, last FROM {schema}.kind_index").fetchall()
            return sorted((kind, i) for kind, first, last in runs for i in range(first, last + 1))

        clock = Clock()
        store = open_store()
        hub = Hub(store, Ed25519Signer.from_seed(b"\x72" * 32), clock=clock)
        _fill(hub, clock)  # on PostgreSQL, across several partitions
        old = OldStore(want=_by_kind(store), fresh=[], size=store.size(), open=open_store, index_rows=index_rows)
        old.fresh = index_rows(store)
        store.close()
        if request.param == "lmdb":
            env = lmdb.open(str(tmp_path / "s"), max_dbs=32)
            with env.begin(write=True) as txn:
                txn.drop(env.open_db(b"kind_index", txn=txn), delete=True)
                txn.put(b"layout", b"2", db=env.open_db(b"meta", txn=txn))
            env.close()
        else:
            with psycopg.connect(PG_DSN, autocommit=True) as conn:
                conn.execute(f"DROP TABLE {schema}.kind_index")
                conn.execute(f"UPDATE {schema}.meta SET value = %s WHERE key = 'schema_version'",
                             (str(KIND_INDEX_VERSION - 1),))
        yield old


def test_a_store_from_before_the_index_opens_without_reading_its_log_and_is_indexed_newest_first(old_store,
                                                                                                monkeypatch):
    read: list[int] = []

    def counted(rows: Iterable[tuple[int, bytes, bool]]) -> Iterator[tuple[int, int]]:
        for row in rows:
            read.append(row[0])
            yield from kind_index_of_log([row])

    for module in (store_module, pg):
        monkeypatch.setattr(module, "kind_index_of_log", counted)
    store, size, want = old_store.open(index_behind=False), old_store.size, old_store.want
    # The open read no record: its work does not grow with the log; it is marked upgraded.
    assert read == [] and store.kind_index_from() == size and old_store.index_rows(store) == []
    if isinstance(store, LmdbHubStore):
        with store._env.begin() as txn:
            assert txn.get(b"layout", db=store._db["meta"]) == str(LAYOUT_VERSION).encode() == b"3"
    else:
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            row = conn.execute(f"SELECT value FROM {store.schema}.meta WHERE key = 'schema_version'").fetchone()
        assert row == (str(SCHEMA_VERSION),)
    assert _index(store) == want  # read from the records themselves
    # A chunk at a time, newest first; the answers are the same at every step.
    assert store.index_older_kinds(chunk=20) == size - 20 and _index(store) == want
    assert store.index_older_kinds(chunk=20) == size - 40 and _index(store) == want
    store.close()
    # A stop midway resumes from the mark the last chunk wrote.
    store = old_store.open(index_behind=False)
    assert store.kind_index_from() == size - 40 and _index(store) == want
    read.clear()
    while store.index_older_kinds(chunk=20):
        pass
    assert sorted(read) == list(range(size - 40))  # each older record read once
    assert store.kind_index_from() == 0 and _index(store) == want and old_store.index_rows(store) == old_store.fresh


def test_a_store_from_before_the_index_is_indexed_by_a_background_thread(old_store):
    store = old_store.open()
    assert _index(store) == old_store.want
    wait_until(lambda: store.kind_index_from() == 0, what="the background kind index")
    assert _index(store) == old_store.want and old_store.index_rows(store) == old_store.fresh


def test_the_background_pass_stops_cleanly_when_the_store_is_full(caplog: pytest.LogCaptureFixture) -> None:
    """A full store stops the pass with a logged, coded error (no thread traceback); the marker it was at stays
    for the next start."""
    steps: list[int] = []

    def step(chunk: int) -> int:
        steps.append(chunk)
        if len(steps) == 2:
            raise store_module.StoreFull("hub store is full; nothing was written by the failed transaction")
        return 5 * chunk

    store_module.index_behind(step, 10 * store_module.INDEX_CHUNK, threading.Event())
    assert len(steps) == 2
    assert any("STORE_FULL" in r.getMessage() and "to go" in r.getMessage() for r in caplog.records)
