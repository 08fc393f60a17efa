"""The chain's figures (each device's last arrival and latest record time, records by kind) and the health page's
device pages, kept by every HubStore in the commit that holds the records: LMDB and PostgreSQL alike."""

from __future__ import annotations

import math
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import lmdb
import psycopg
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from hub import pg
from hub import store as store_module
from hub.chain import chain_health
from hub.metrics import HubMetrics
from hub.pg import ACTIVITY_VERSION, SCHEMA_VERSION, STANDINGS_SQL, STATUS_VERSION, PgHubStore
from hub.service import Hub
from hub.store import LAYOUT_VERSION, DeviceInfo, HubStore, LmdbHubStore, activity_of_log
from ledger import ChainBuilder, Ed25519Signer, decode_record
from tests.contract.test_hub_store import PG_DSN, make_store, reopenable  # noqa: F401  (the fixture over both stores)
from tests.hub.conftest import Clock, enroll, new_device
from tests.wait import wait_until


def _kinds_in_log(store) -> Counter[str]:
    return Counter(decode_record(e.raw).kind for e in store.entries(0, store.size()))


def _reading(i: int) -> dict:
    return {"site": "sppg-01", "sensor": "probe-1", "temp_cc": 6400 + i, "rh_cp": 7000}


@dataclass(frozen=True, slots=True, kw_only=True)
class Filled:
    a: bytes
    b: bytes
    c: bytes
    a_latest: int  # device a's latest record time
    a_arrived: int  # when a's last records arrived


def _fill(hub: Hub, clock: Clock) -> Filled:
    """Three devices: one with notes and readings whose clock steps back, one sent later, one with no records."""
    device_clock = Clock(clock() - 300)
    signer, _ = new_device(clock)
    early = ChainBuilder(signer, clock=device_clock, boot=1)
    a = enroll(hub, signer, clock)
    first = [early.genesis()] + [early.append("note", {"text": str(i)}) for i in range(3)]
    device_clock.advance(100)
    first += [early.append("reading", _reading(i)) for i in range(2)]
    assert hub.ingest(a, [r.raw for r in first]).accepted == 6
    clock.advance(40)
    device_clock.advance(-250)  # the device's clock was set back: its latest record time stays the highest
    assert hub.ingest(a, [early.append("note", {"text": "late"}).raw]).accepted == 1
    signer_b, builder_b = new_device(clock)
    b = enroll(hub, signer_b, clock)
    clock.advance(600)
    assert hub.ingest(b, [builder_b.genesis().raw, builder_b.append("note", {"text": "b"}).raw]).accepted == 2
    signer_c, _ = new_device(clock)
    c = enroll(hub, signer_c, clock)
    return Filled(a=a, b=b, c=c, a_latest=max(r.time for r in first), a_arrived=clock() - 600)


def test_figures_are_kept_with_the_records_and_the_same_after_reopening(make_store):  # noqa: F811
    clock = Clock()
    hub_key = Ed25519Signer.from_seed(b"\x61" * 32)
    store = make_store()
    hub = Hub(store, hub_key, clock=clock)
    ids = _fill(hub, clock)
    clock.advance(5)
    health = chain_health(hub, clock())
    rows = {d["device"]: d for d in health["devices"]}
    a, b, c = rows[ids.a.hex()], rows[ids.b.hex()], rows[ids.c.hex()]
    assert a["length"] == 7 and a["last_time"] == ids.a_latest
    assert a["last_seen"] == ids.a_arrived and a["idle_s"] == 605
    assert a["sync_lag_s"] == a["last_seen"] - a["last_time"]
    assert b["length"] == 2 and b["last_seen"] == clock() - 5 and b["idle_s"] == 5
    assert c["length"] == 0 and c["last_seen"] is c["last_time"] is c["sync_lag_s"] is c["idle_s"] is None
    assert set(rows) == {ids.a.hex(), ids.b.hex(), ids.c.hex()}, "devices the hub enrolled; its own log is no device"
    kinds = health["records_by_kind"]
    assert kinds == dict(_kinds_in_log(store)) and kinds["note"] == 5 and kinds["reading"] == 2
    assert sum(kinds.values()) == store.size() == health["size"]
    assert health["device_count"] == len(store.devices()) and health["next"] is None

    store.close()
    reopened = Hub(make_store("a"), hub_key, clock=clock)
    assert chain_health(reopened, clock()) == health
    # and the figures go on from what the store holds, not from zero
    signer, builder = new_device(clock)
    d = enroll(reopened, signer, clock)
    assert reopened.ingest(d, [builder.genesis().raw, builder.append("reading", _reading(9)).raw]).accepted == 2
    again = chain_health(reopened, clock())["records_by_kind"]
    assert again == dict(_kinds_in_log(reopened.store)) and again["reading"] == 3


def test_pages_follow_device_ids_each_device_once(make_store):  # noqa: F811
    clock = Clock()
    store = make_store()
    hub = Hub(store, Ed25519Signer.from_seed(b"\x62" * 32), clock=clock)
    for i in range(23):
        store.put_device(DeviceInfo(device_id=bytes([i * 11 % 256]) + bytes(15), pubkey=bytes([i]) * 32,
                                    site=f"s{i}", role="school_gate"))
    everyone = sorted(d.device_id.hex() for d in store.devices())
    total = len(everyone)
    for limit in (1, 5, total, total - 1, total + 3):
        seen, after, pages = [], b"", 0
        while True:
            page = chain_health(hub, clock(), after=after, limit=limit)
            assert len(page["devices"]) <= limit and page["device_count"] == total
            seen += [d["device"] for d in page["devices"]]
            pages += 1
            if page["next"] is None:
                break
            assert page["next"] == page["devices"][-1]["device"]
            after = bytes.fromhex(page["next"])
        assert seen == everyone, f"limit {limit}: every device once, in id order"
        assert pages == math.ceil(total / limit), "no empty last page"
    # `after` need not be a device the store holds: the page starts at the next id
    between = bytes.fromhex(everyone[3])[:15] + b"\x01"
    assert [d["device"] for d in chain_health(hub, clock(), after=between, limit=2)["devices"]] == everyone[4:6]
    assert chain_health(hub, clock(), after=b"\xff" * 16)["devices"] == []


def test_activity_pages_give_each_device_that_sent_records_once(make_store):  # noqa: F811
    """`activity_after` (what /metrics sums up) holds the figures the health page shows, a page at a time."""
    clock = Clock()
    store = make_store()
    hub = Hub(store, Ed25519Signer.from_seed(b"\x63" * 32), clock=clock)
    ids = _fill(hub, clock)
    shown = {s.device.device_id: (s.arrived_at, s.last_time) for s in store.standings(b"", 100)}
    for limit in (1, 2, 100):
        seen, after = [], b""
        while page := store.activity_after(after, limit):
            assert len(page) <= limit
            seen += page
            after = page[-1][0]
        assert [d for d, _, _ in seen] == sorted({d for d, _, _ in seen}), "in device id order, each once"
        kept = {d: (arrived, latest) for d, arrived, latest in seen if d != hub.hub_id}
        assert kept == {d: figures for d, figures in shown.items() if figures[0] is not None}
        assert set(kept) == {ids.a, ids.b} and kept[ids.a] == (ids.a_arrived, ids.a_latest)
    assert store.activity_after(b"\xff" * 16, 10) == []


@dataclass
class OldStore:
    """A store written the way a release before the figures left it (LMDB layout 1, PostgreSQL schema 6), with
    what the chain's health page answered of it before (at `now`), and its size."""

    health: dict
    size: int
    now: int
    hub_key: Ed25519Signer
    open: Callable[..., HubStore]


@pytest.fixture(params=["lmdb", "postgres"])
def old_store(request, tmp_path) -> Iterator[OldStore]:
    """PostgreSQL missing fails, never skips."""
    with reopenable(request.param, tmp_path / "s", partition_leaves=64) as (open_store, schema):
        clock = Clock()
        hub_key = Ed25519Signer.from_seed(b"\x63" * 32)
        hub = Hub(open_store(), hub_key, clock=clock)
        _fill(hub, clock)
        for i in range(3):  # longer logs, interleaved, across several of PostgreSQL's partitions
            signer, builder = new_device(clock)
            device_id = enroll(hub, signer, clock)
            recs = [builder.genesis()] + [builder.append("reading", _reading(j)) for j in range(40 + i)]
            for k in range(0, len(recs), 9):
                clock.advance(7)
                assert hub.ingest(device_id, [r.raw for r in recs[k:k + 9]]).accepted == len(recs[k:k + 9])
        old = OldStore(health=chain_health(hub, clock()), size=hub.store.size(), now=clock(), hub_key=hub_key,
                       open=open_store)
        hub.store.close()
        if request.param == "lmdb":
            env = lmdb.open(str(tmp_path / "s"), max_dbs=32)
            with env.begin(write=True) as txn:
                for name in (b"activity", b"kinds", b"kind_index"):
                    txn.drop(env.open_db(name, txn=txn), delete=True)
                txn.put(b"layout", b"1", db=env.open_db(b"meta", txn=txn))
            env.close()
        else:  # the schema before, without the figures' tables nor what came after them
            with psycopg.connect(PG_DSN, autocommit=True) as conn:
                conn.execute(f"DROP TABLE {schema}.activity, {schema}.record_kinds, {schema}.kind_index")
                conn.execute(f"ALTER TABLE {schema}.devices DROP COLUMN status")
                conn.execute(f"UPDATE {schema}.meta SET value = %s WHERE key = 'schema_version'",
                             (str(ACTIVITY_VERSION - 1),))
        yield old


@dataclass(frozen=True, slots=True, kw_only=True)
class LogFigures:
    """The chain's figures recomputed from the log's entries at index `counted_from` and up (0: all of them)."""

    kinds: dict[str, int]
    activity: dict[bytes, tuple[int, int]]  # device -> (last arrival, latest record time)
    first_index: dict[bytes, int]  # device -> the index of its first record


def _figures_of_log(store: HubStore, counted_from: int = 0) -> LogFigures:
    kinds: Counter[str] = Counter()
    activity: dict[bytes, tuple[int, int]] = {}
    first: dict[bytes, int] = {}
    for e in store.entries(0, store.size()):
        first.setdefault(e.device_id, e.index)
        if e.index < counted_from:
            continue
        record = decode_record(e.raw)
        kinds[record.kind] += 1
        seen = activity.get(e.device_id)
        activity[e.device_id] = (e.arrived_at, record.time if seen is None else max(record.time, seen[1]))
    return LogFigures(kinds=dict(kinds), activity=activity, first_index=first)


def _activity(store: HubStore) -> dict[bytes, tuple[int, int]]:
    return {d: (a, t) for d, a, t in store.activity_after(b"", 1000)}


def _scraped_behind(hub: Hub) -> float:
    metrics = HubMetrics()
    metrics.watch(hub, store_path=None, derive_seconds=lambda: 0.0)
    found = {f.name: f for f in text_string_to_metric_families(generate_latest(metrics.registry).decode())}
    return found["jejak_hub_chain_figures_behind"].samples[0].value


def _check_answers_while_counting(hub: Hub, now: int) -> int:
    """What the health page and /metrics answer at one step of the count: the figures of the records counted so
    far (those at `figures_from` and up), the devices with records below it marked, and how many are left."""
    store = hub.store
    behind = store.figures_from()
    counted, whole = _figures_of_log(store, behind), _figures_of_log(store)
    health = chain_health(hub, now)
    assert health["figures_behind"] == behind == _scraped_behind(hub)
    assert health["records_by_kind"] == counted.kinds
    assert sum(health["records_by_kind"].values()) + behind == store.size()
    assert _activity(store) == counted.activity
    for row in health["devices"]:
        device = bytes.fromhex(row["device"])
        assert row["counting"] is (device in whole.first_index and whole.first_index[device] < behind), row
        if not row["counting"] and device in whole.activity:  # a device counted whole shows its final figures
            assert (row["last_seen"], row["last_time"]) == whole.activity[device]
        elif device in counted.activity:  # its last arrival is already its last: the newest records count first
            assert row["last_seen"] == whole.activity[device][0]
            assert row["last_time"] == counted.activity[device][1] <= whole.activity[device][1]
        else:
            assert row["last_seen"] is row["last_time"] is None
    return behind


def test_a_store_from_before_the_figures_opens_without_reading_its_log_and_counts_them_newest_first(
        old_store, monkeypatch):
    read: list[int] = []

    def counted(entries: Iterable[tuple[bytes, int, bytes]]) -> tuple[dict[bytes, tuple[int, int]], Counter[str]]:
        rows = list(entries)
        read.append(len(rows))
        return activity_of_log(rows)

    for module in (store_module, pg):
        monkeypatch.setattr(module, "activity_of_log", counted)
    clock = Clock(old_store.now)
    store, size = old_store.open(index_behind=False), old_store.size
    hub = Hub(store, old_store.hub_key, clock=clock)
    # The open read no record: its work does not grow with the log; it is marked upgraded.
    assert read == [] and store.figures_from() == size and store.record_kinds() == {}
    if isinstance(store, LmdbHubStore):
        with store._env.begin() as txn:
            assert txn.get(b"layout", db=store._db["meta"]) == str(LAYOUT_VERSION).encode()
    else:
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            row = conn.execute(f"SELECT value FROM {store.schema}.meta WHERE key = 'schema_version'").fetchone()
        assert row == (str(SCHEMA_VERSION),)
    assert _check_answers_while_counting(hub, clock()) == size
    assert all(d["counting"] for d in chain_health(hub, clock())["devices"] if d["length"])
    # A chunk at a time, newest first: the answers hold at every step.
    assert store.count_older_figures(chunk=30) == size - 30
    assert _check_answers_while_counting(hub, clock()) == size - 30
    assert store.count_older_figures(chunk=30) == size - 60
    store.close()
    # A stop midway resumes from the mark the last chunk wrote; records that arrive meanwhile count at once.
    store = old_store.open(index_behind=False)
    hub = Hub(store, old_store.hub_key, clock=clock)
    assert store.figures_from() == size - 60
    assert _check_answers_while_counting(hub, clock()) == size - 60
    signer, builder = new_device(clock)
    late = enroll(hub, signer, clock)
    clock.advance(50)
    assert hub.ingest(late, [builder.genesis().raw, builder.append("note", {"text": "x"}).raw]).accepted == 2
    grown = _figures_of_log(store)
    assert _check_answers_while_counting(hub, clock()) == size - 60
    while store.count_older_figures(chunk=30):
        assert _check_answers_while_counting(hub, clock())
    assert sum(read) == size  # each older record read once
    assert store.figures_from() == 0 and _check_answers_while_counting(hub, clock()) == 0
    assert store.record_kinds() == grown.kinds and _activity(store) == grown.activity
    assert not any(d["counting"] for d in chain_health(hub, clock())["devices"])


def test_a_store_from_before_the_figures_is_counted_by_a_background_thread_to_the_same_answer(old_store):
    store = old_store.open()
    hub = Hub(store, old_store.hub_key, clock=Clock(old_store.now))
    wait_until(lambda: store.figures_from() == 0 == store.kind_index_from(), what="the background passes")
    assert chain_health(hub, old_store.now) == old_store.health
    assert old_store.health["records_by_kind"]["reading"] == 2 + 40 + 41 + 42
    assert old_store.health["figures_behind"] == 0 and _scraped_behind(hub) == 0


def test_a_postgres_page_reads_the_rows_of_its_own_devices_only():
    store = PgHubStore(PG_DSN, schema=f"t_{uuid.uuid4().hex[:12]}")
    try:
        hub = Hub(store, Ed25519Signer.from_seed(b"\x65" * 32), clock=Clock())
        for _ in range(60):
            signer, builder = new_device(Clock())
            device_id = enroll(hub, signer, Clock())
            assert hub.ingest(device_id, [builder.genesis().raw]).accepted == 1
        ids = sorted(d.device_id for d in store.devices())
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f"SET search_path TO {store.schema}")
            conn.execute("ANALYZE")
            plan = conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + STANDINGS_SQL,
                                {"after": ids[-6], "limit": 6}).fetchone()[0]
        read: dict[str, int] = {}

        def walk(node: dict) -> None:
            if "Relation Name" in node:
                read[node["Relation Name"]] = read.get(node["Relation Name"], 0) + node["Actual Rows"]
            for child in node.get("Plans", []):
                walk(child)

        walk(plan[0]["Plan"])
        assert read["devices"] == read["states"] == read["activity"] == 5, read
    finally:
        store.drop()
        store.close()


def test_postgres_counts_statuses_in_sql_as_lmdb_does_through_changes_and_an_upgrade(tmp_path):
    """The PostgreSQL store keeps each device's status in a column of its own and counts them in SQL: the
    counts equal LMDB's for the same devices, after approvals and revocations, and after the upgrade from the
    schema before the column (which fills it from the stored devices)."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    clock = Clock()
    hub_key = Ed25519Signer.from_seed(b"\x66" * 32)
    lm = Hub(LmdbHubStore(tmp_path / "s"), hub_key, clock=clock)
    pg = Hub(PgHubStore(PG_DSN, schema=schema), hub_key, clock=clock)
    try:
        ids = []
        for i in range(9):
            signer, _ = new_device(clock)
            ids += [enroll(hub, signer, clock, approve=i % 3 != 0) for hub in (lm, pg)][:1]

        def counts() -> dict[str, int]:
            assert pg.store.device_statuses() == lm.store.device_statuses()
            return pg.store.device_statuses()

        assert counts() == {"pending": 3, "active": 6}
        for hub in (lm, pg):
            hub.approve(ids[0])
            hub.revoke(ids[1])
            hub.revoke(ids[3])  # a pending device revoked
            hub.store.put_device(hub.store.get_device(ids[2]).with_status("forked"))
        assert counts() == {"pending": 1, "active": 5, "revoked": 2, "forked": 1}
        assert counts() == dict(Counter(d.status for d in pg.store.devices()))
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            kept = dict(conn.execute(f"SELECT device_id, status FROM {schema}.devices").fetchall())
        assert {bytes(d): s for d, s in kept.items()} == {d.device_id: d.status for d in pg.store.devices()}
        pg.store.close()
        # What the release before the column left: statuses only inside each device's bytes.
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f"ALTER TABLE {schema}.devices DROP COLUMN status")
            conn.execute(f"UPDATE {schema}.meta SET value = %s WHERE key = 'schema_version'", (str(STATUS_VERSION - 1),))
        pg = Hub(PgHubStore(PG_DSN, schema=schema), hub_key, clock=clock)
        assert counts() == {"pending": 1, "active": 5, "revoked": 2, "forked": 1}
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            version = conn.execute(f"SELECT value FROM {schema}.meta WHERE key = 'schema_version'").fetchone()[0]
        assert version == str(SCHEMA_VERSION)
        for hub in (lm, pg):  # and it follows changes made after the upgrade
            hub.approve(ids[6])
        assert counts() == {"active": 6, "revoked": 2, "forked": 1}
    finally:
        lm.store.close()
        pg.store.drop()
        pg.store.close()
