"""The PostgreSQL store's partitioned log: partitions made ahead, pruning, migration from the unpartitioned
schema, archive and retention, restart on an archived store."""

from __future__ import annotations

import gzip
import io
import json
import uuid
from pathlib import Path

import psycopg
import pytest

from hub.config import ConfigError, StoreConfig
from hub.pg import (
    ENTRIES_SQL,
    LEAVES_SQL,
    MIGRATIONS,
    PARTITIONED_VERSION,
    SCHEMA_VERSION,
    PgHubStore,
    check_archive,
    read_archive,
)
from hub.service import Hub
from hub.store import StoreError
from ledger import Ed25519Signer, decode_record, verify_receipt
from ledger.merkle import leaf_hash, verify_consistency, verify_inclusion
from tests.contract.test_hub_store import PG_DSN

from .conftest import Clock, enroll, new_device

LEAVES = 128  # two tiles a partition, so a test crosses several


@pytest.fixture
def schemas():
    made: list[str] = []

    def make() -> str:
        made.append(f"t_{uuid.uuid4().hex[:12]}")
        return made[-1]

    yield make
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        for name in made:
            conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


def _fill(hub: Hub, clock: Clock, *, devices: int, per_device: int, step: int = 60) -> list[tuple[bytes, list]]:
    """Devices that each send `per_device` records a batch at a time, the clock moving `step` s a batch."""
    logs = []
    for _ in range(devices):
        signer, builder = new_device(clock)
        logs.append((enroll(hub, signer, clock), builder, []))
    for i in range(per_device // 10):
        for device_id, builder, sent in logs:
            batch = [builder.genesis() if not sent and not j else builder.append("note", {"text": f"{i}.{j}"})
                     for j in range(10)]
            sent.extend(batch)
            assert hub.ingest(device_id, [r.raw for r in batch]).accepted == 10
        clock.advance(step)
    return [(device_id, sent) for device_id, _, sent in logs]


def _plan_relations(conn: psycopg.Connection, sql: str, params: tuple) -> set[str]:
    plan = conn.execute("EXPLAIN (FORMAT JSON) " + sql, params).fetchone()[0]
    found: set[str] = set()

    def walk(node: dict) -> None:
        if "Relation Name" in node:
            found.add(node["Relation Name"])
        for child in node.get("Plans", []):
            walk(child)

    walk(plan[0]["Plan"])
    return found


def test_partitions_are_made_ahead_and_every_read_crosses_them(schemas):
    schema = schemas()
    clock = Clock()
    hub_key = Ed25519Signer.from_seed(b"\x51" * 32)
    hub = Hub(PgHubStore(PG_DSN, schema=schema, partition_leaves=LEAVES), hub_key, clock=clock)
    logs = _fill(hub, clock, devices=3, per_device=200)
    store = hub.store
    size = store.size()
    assert size == 600 + len(hub.own_log())
    parts = store.partitions()
    assert [(p.first, p.end) for p in parts] == [(i * LEAVES, (i + 1) * LEAVES) for i in range(len(parts))]
    assert parts[-1].first > size - 1 >= parts[-2].first, "one empty partition is always ready ahead"
    full = [p for p in parts if p.end <= size]
    assert all(p.first_arrived is not None and p.first_arrived <= p.last_arrived for p in full)
    assert all(p.last_arrived is None for p in parts if p.end > size), "a filling partition has no span yet"
    assert [p.first_arrived for p in full] == sorted(p.first_arrived for p in full)

    device_id, sent = logs[1]
    assert store.log_range(device_id, 0, 200) == [r.raw for r in sent], "one log across every partition"
    assert store.get_raw(device_id, 199) == sent[199].raw
    for r in (sent[0], sent[77], sent[199]):
        index = store.locate(r.id)
        assert [e.raw for e in store.entries(index, index + 1)] == [r.raw]
    entries = store.entries(LEAVES - 5, LEAVES + 5)
    assert [e.index for e in entries] == list(range(LEAVES - 5, LEAVES + 5))
    assert list(store.leaf_hashes(LEAVES - 1, LEAVES + 1)) == [leaf_hash(e.raw) for e in entries[4:6]]
    assert len(list(store.leaf_hashes())) == size
    assert store.damaged_in(0, size) == []

    cp = hub.checkpoint()
    store.close()
    again = Hub(PgHubStore(PG_DSN, schema=schema, partition_leaves=LEAVES), hub_key, clock=clock)
    assert again.tree.root() == hub.tree.root() == cp.root
    _, receipt = again.receipt(sent[150].id)
    assert verify_receipt(receipt, sent[150].raw, hub_key.public_key).tree_size == cp.tree_size
    again.store.close()


def test_a_read_of_one_partition_is_pruned_to_it(schemas):
    schema = schemas()
    clock = Clock()
    hub = Hub(PgHubStore(PG_DSN, schema=schema, partition_leaves=LEAVES), Ed25519Signer.from_seed(b"\x52" * 32),
              clock=clock)
    _fill(hub, clock, devices=2, per_device=200)
    hub.store.close()
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f"SET search_path TO {schema}")
        conn.execute("ANALYZE records")
        parts = {r[0] for r in conn.execute("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON "
                                            "c.oid = i.inhrelid WHERE i.inhparent = 'records'::regclass")}
        assert len(parts) >= 4
        assert _plan_relations(conn, ENTRIES_SQL, (LEAVES + 10, LEAVES + 74)) == {"records_000000000128"}
        assert _plan_relations(conn, LEAVES_SQL, (2 * LEAVES, 2 * LEAVES + 64)) == {"records_000000000256"}
        # A range that spans a boundary reads the two partitions it touches, no more.
        assert _plan_relations(conn, ENTRIES_SQL, (LEAVES - 1, LEAVES + 1)) == {"records_000000000000",
                                                                                 "records_000000000128"}
        # The log's size: from a size seen before, only the partitions from there on.
        size_sql = "SELECT coalesce(max(idx) + 1, %s) FROM records WHERE idx >= %s"
        assert _plan_relations(conn, size_sql, (3 * LEAVES + 5, 3 * LEAVES + 5)) == parts - {
            f"records_{i * LEAVES:012d}" for i in range(3)}


def _old_store(schema: str, source: str) -> None:
    """Write `source`'s store again in the shape of the schema before partitions (records and global_log)."""
    with psycopg.connect(PG_DSN, autocommit=False) as conn, conn.transaction():
        conn.execute(f"CREATE SCHEMA {schema}")
        conn.execute(f"SET search_path TO {schema}")
        for step in MIGRATIONS[:PARTITIONED_VERSION - 1]:
            assert not callable(step)
            for sql in step:
                conn.execute(sql)
        conn.execute("INSERT INTO meta VALUES ('schema_version', %s)", (str(PARTITIONED_VERSION - 1),))
        conn.execute(f"INSERT INTO records SELECT device_id, seq, raw FROM {source}.records ORDER BY device_id, seq")
        conn.execute(f"INSERT INTO global_log SELECT idx, record_id, device_id, seq, arrived_at, leaf "
                     f"FROM {source}.records ORDER BY idx")
        conn.execute(f"INSERT INTO devices SELECT device_id, data FROM {source}.devices")
        for table in ("states", "checkpoints", "forks", "counters", "damaged", "tiles",
                      "region_checkpoints", "split_views"):
            conn.execute(f"INSERT INTO {table} SELECT * FROM {source}.{table}")


def test_a_store_of_the_old_schema_is_partitioned_in_place_and_answers_the_same(schemas):
    source, old = schemas(), schemas()
    clock = Clock()
    hub_key = Ed25519Signer.from_seed(b"\x53" * 32)
    hub = Hub(PgHubStore(PG_DSN, schema=source, partition_leaves=LEAVES), hub_key, clock=clock)
    logs = _fill(hub, clock, devices=2, per_device=150)
    cp = hub.checkpoint()
    store = hub.store
    size = store.size()
    answers = (store.entries(0, size), list(store.leaf_hashes()), list(store.tiles()), store.states_after(b"", 10),
               [store.log_range(d, 0, 150) for d, _ in logs], [store.locate(r.id) for _, sent in logs for r in sent],
               store.checkpoints(), store.devices(), store.counters())
    _old_store(old, source)
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s", (old,))}
        assert {"records", "global_log"} <= tables

    migrated = PgHubStore(PG_DSN, schema=old, partition_leaves=LEAVES)
    assert (migrated.entries(0, size), list(migrated.leaf_hashes()), list(migrated.tiles()),
            migrated.states_after(b"", 10), [migrated.log_range(d, 0, 150) for d, _ in logs],
            [migrated.locate(r.id) for _, sent in logs for r in sent], migrated.checkpoints(), migrated.devices(),
            migrated.counters()) == answers
    parts = migrated.partitions()
    assert parts[0].first == 0 and parts[-1].first >= size and len(parts) == size // LEAVES + 2
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s", (old,))}
        assert "global_log" not in tables
        version = conn.execute(f"SELECT value FROM {old}.meta WHERE key = 'schema_version'").fetchone()[0]
        assert version == str(SCHEMA_VERSION)
    restarted = Hub(migrated, hub_key, clock=clock)
    assert restarted.tree.root() == cp.root and len(restarted.tree) == size
    signer, builder = new_device(clock)
    own = len(restarted.own_log())
    device_id = enroll(restarted, signer, clock)
    assert restarted.ingest(device_id, [builder.genesis().raw]).accepted == 1
    assert migrated.size() == size + len(restarted.own_log()) - own + 1
    migrated.close()
    store.close()


def test_append_refuses_records_that_do_not_continue_the_stored_log(schemas):
    clock = Clock()
    hub = Hub(PgHubStore(PG_DSN, schema=schemas(), partition_leaves=LEAVES), Ed25519Signer.from_seed(b"\x54" * 32),
              clock=clock)
    signer, builder = new_device(clock)
    device_id = enroll(hub, signer, clock)
    records = [builder.genesis()] + [builder.append("note", {"text": str(i)}) for i in range(4)]
    assert hub.ingest(device_id, [r.raw for r in records]).accepted == 5
    size = hub.store.size()
    with pytest.raises(StoreError) as refused:
        hub.store.append(device_id, records[3:], builder.state, clock())
    assert "do not continue its stored log of 5" in str(refused.value)
    assert hub.store.size() == size and hub.store.log_range(device_id, 0, 9) == [r.raw for r in records]
    hub.store.close()


def _table_bytes(schema: str) -> int:
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        return int(conn.execute("SELECT sum(pg_total_relation_size(c.oid)) FROM pg_inherits i JOIN pg_class c "
                                "ON c.oid = i.inhrelid WHERE i.inhparent = %s::regclass",
                                (f"{schema}.records",)).fetchone()[0])


def test_archive_round_trip_and_restart(schemas, tmp_path):
    schema = schemas()
    clock = Clock()
    hub_key = Ed25519Signer.from_seed(b"\x55" * 32)
    hub = Hub(PgHubStore(PG_DSN, schema=schema, partition_leaves=LEAVES), hub_key, clock=clock)
    logs = _fill(hub, clock, devices=2, per_device=200)
    old_cp = hub.checkpoint()  # a checkpoint whose size falls in a partition that goes to the archive
    cutoff = clock()
    clock.advance(86_400)
    more = _fill(hub, clock, devices=1, per_device=200)
    cp = hub.checkpoint()
    store = hub.store
    size = store.size()
    before_rows = store.entries(0, size)
    own_before = [r.raw for r in hub.own_log()]
    bytes_before = _table_bytes(schema)

    planned = store.archive(cutoff, tmp_path / "archive", keep=[hub.hub_id], dry_run=True)
    assert planned and not (tmp_path / "archive").exists(), "a dry run writes nothing"
    done = store.archive(cutoff, tmp_path / "archive", keep=[hub.hub_id])
    assert [(p.first, p.end) for p in done] == [(p.first, p.end) for p in planned]
    assert all(p.last_arrived < cutoff for p in done) and done[0].first == 0
    archived_end = done[-1].end
    assert archived_end <= old_cp.tree_size + LEAVES, "everything that arrived before the date went"
    assert store.archive(cutoff, tmp_path / "archive", keep=[hub.hub_id]) == [], "archiving again is a no-op"

    # The files hold every archived row and check against the tile roots the store kept.
    rows = [row for p in done for row in read_archive(p.archived + ".csv.gz")]
    assert [(r[0], r[3], r[1], r[2], r[6]) for r in rows] == [
        (e.index, e.device_id, e.seq, e.arrived_at, e.raw) for e in before_rows[:archived_end]]
    tiles = list(store.tiles())
    for p in done:
        leaves = io.BytesIO()
        check_archive(p.archived + ".csv.gz", p.first, p.end, tiles[p.first // 64:p.end // 64], leaves)
        assert Path(p.archived + ".leaves").read_bytes() == leaves.getvalue()
        assert len(leaves.getvalue()) == (p.end - p.first) * 32
        ids = Path(p.archived + ".ids").read_bytes()
        assert sorted(ids[i:i + 32] for i in range(0, len(ids), 40)) == [ids[i:i + 32] for i in range(0, len(ids), 40)]
        assert len(ids) == (p.end - p.first) * 40
    assert _table_bytes(schema) < bytes_before

    # Only the hub's own log is left in the archived partitions' rows; the global log still reads whole, the
    # archived entries from their archives, so a search by arrival time (the read models' refill) still works.
    with psycopg.connect(PG_DSN) as conn:
        assert {bytes(d) for d, in conn.execute(f"SELECT DISTINCT device_id FROM {schema}.records WHERE idx < %s",
                                                (archived_end,))} == {hub.hub_id}
    assert store.entries(0, size) == before_rows
    assert store.entries(archived_end - 70, archived_end + 3) == before_rows[archived_end - 70:archived_end + 3]
    # The kind index outlives the archived rows: their notes are still found by kind (the read models' refill)
    # and read at their indices from the archive, beside rows the database holds.
    notes = [e.index for e in before_rows if decode_record(e.raw).kind == "note"]
    assert store.kind_positions("note", 0, size, size) == notes and notes[0] < archived_end < notes[-1]
    wanted = notes[3:5] + [i for i in notes if archived_end - 2 <= i < archived_end + 2] + notes[-2:]
    assert store.entries_at(wanted) == [before_rows[i] for i in wanted]
    from hub.views import first_arrival_at
    assert first_arrival_at(store, cutoff + 1, size) == next(e.index for e in before_rows if e.arrived_at > cutoff)
    device_id, sent = more[0]
    assert store.log_range(device_id, 0, 200) == [r.raw for r in sent]
    # An archived log is served from the archive: whole, in ranges that start inside it, and one record.
    assert store.log_range(logs[0][0], 0, 200) == [r.raw for r in logs[0][1]]
    assert store.log_range(logs[1][0], 37, 45) == [r.raw for r in logs[1][1][37:45]]
    assert store.get_raw(logs[1][0], 3) == logs[1][1][3].raw and store.get_raw(logs[1][0], 200) is None
    assert store.record_id(logs[1][0], 3) == logs[1][1][3].id and store.record_id(logs[1][0], 200) is None
    assert store.log_range(logs[0][0], 200, 210) == []
    assert [store.locate(r.id) for r in logs[0][1][:3]] == [e.index for e in before_rows
                                                             if e.device_id == logs[0][0]][:3], "from the id file"
    assert store.locate(b"\x00" * 32) is None
    assert [p.archived for p in store.partitions()][:len(done)] == [p.archived for p in done]
    store.close()

    # The hub restarts with its tree, own log and proofs; archived tiles' leaves come from the archive.
    again = Hub(PgHubStore(PG_DSN, schema=schema, partition_leaves=LEAVES), hub_key, clock=clock)
    assert again.tree.root() == cp.root and len(again.tree) == size
    assert [r.raw for r in again.own_log()] == own_before
    proof = again.consistency(old_cp.tree_size, cp.tree_size)
    verify_consistency(old_cp.tree_size, cp.tree_size, old_cp.root, cp.root, proof)
    archived_row = rows[70]
    verify_inclusion(archived_row[5], archived_row[0], cp.tree_size,
                     again.tree.inclusion_proof(archived_row[0], cp.tree_size), cp.root)
    gone = logs[1][1][4]  # a record whose row went to the archive: its receipt is made from the archive
    index, receipt = again.receipt(gone.id)
    assert index < archived_end
    assert verify_receipt(receipt, gone.raw, hub_key.public_key).tree_size == cp.tree_size
    _, receipt = again.receipt(sent[-1].id)
    assert verify_receipt(receipt, sent[-1].raw, hub_key.public_key).tree_size == cp.tree_size
    signer, builder = new_device(clock)
    new_id = enroll(again, signer, clock)
    assert again.ingest(new_id, [builder.genesis().raw]).accepted == 1
    again.store.close()


def test_a_damaged_archive_is_refused(schemas, tmp_path):
    clock = Clock()
    hub = Hub(PgHubStore(PG_DSN, schema=schemas(), partition_leaves=LEAVES), Ed25519Signer.from_seed(b"\x56" * 32),
              clock=clock)
    _fill(hub, clock, devices=1, per_device=300)
    clock.advance(3600)
    done = hub.store.archive(clock(), tmp_path, keep=[hub.hub_id])
    assert done
    tiles = list(hub.store.tiles())
    path = done[0].archived + ".csv.gz"
    good = gzip.decompress(Path(path).read_bytes()).decode().splitlines()
    lines = list(good)
    fields = lines[7].split(",")
    fields[6] = fields[6][:-2] + ("00" if fields[6][-2:] != "00" else "01")  # one byte of a record
    lines[7] = ",".join(fields)
    with gzip.open(tmp_path / "bad.csv.gz", "wt") as fh:
        fh.write("\n".join(lines) + "\n")
    with pytest.raises(StoreError, match="does not hash to its id and leaf"):
        check_archive(tmp_path / "bad.csv.gz", done[0].first, done[0].end, tiles[:LEAVES // 64])
    with gzip.open(tmp_path / "short.csv.gz", "wt") as fh:
        fh.write("\n".join(good[:-1]) + "\n")
    with pytest.raises(StoreError, match="it ends at"):
        check_archive(tmp_path / "short.csv.gz", done[0].first, done[0].end, tiles[:LEAVES // 64])
    with pytest.raises(StoreError, match="tile root"):
        check_archive(path, done[0].first, done[0].end, list(reversed(tiles[:LEAVES // 64])))
    hub.store.close()


def _configured_hub(schema: str, tmp_path: Path) -> tuple[Hub, Clock, Path]:
    """A PostgreSQL hub whose clock stands on 2025-12-31, its key in tmp_path/hub and its TOML config."""
    from hub.app import load_or_create_key

    (tmp_path / "hub").mkdir()
    hub_key = load_or_create_key(tmp_path / "hub" / "hub.key")
    clock = Clock(1_767_225_600 - 86_400)
    toml = tmp_path / "hub.toml"
    toml.write_text(f'name = "{schema}"\ndata_dir = "{tmp_path / "hub"}"\n'
                    f'[store]\nbackend = "postgres"\ndsn = "{PG_DSN}"\npartition_leaves = {LEAVES}\n')
    return Hub(PgHubStore(PG_DSN, schema=schema, partition_leaves=LEAVES), hub_key, clock=clock), clock, toml


def test_jejak_hub_archive_command(schemas, tmp_path, capsys):
    from tools.cli import main

    schema = schemas()
    hub, clock, toml = _configured_hub(schema, tmp_path)
    hub_key = hub.signer
    _fill(hub, clock, devices=1, per_device=100, step=10)
    assert hub.checkpoint().tree_size < LEAVES, "a checkpoint inside what goes to the archive"
    _fill(hub, clock, devices=1, per_device=200, step=10)
    root = hub.tree.root()
    hub.store.close()

    assert main(["hub", "archive", "--config", str(toml), "--before", "2026-01-01", "--to",
                 str(tmp_path / "out"), "--dry-run", "--json"]) == 0
    planned = json.loads(capsys.readouterr().out)
    assert [p["first"] for p in planned] == [0, 128] and all(p["archived"] is None for p in planned)
    assert main(["hub", "archive", "--config", str(toml), "--before", "2026-01-01", "--to",
                 str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "archived records_000000000000: log indexes 0 to 127" in out
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        f"records_{r}.{suffix}" for r in ("0-128", "128-256") for suffix in ("csv.gz", "ids", "leaves", "seqs", "tiles")]
    store = PgHubStore(PG_DSN, schema=schema, partition_leaves=LEAVES)
    assert Hub(store, hub_key, clock=clock).tree.root() == root
    store.close()
    assert main(["hub", "verify", "--config", str(toml)]) == 0, "every checkpoint and leaf checks after archive"
    assert "roots match" in capsys.readouterr().out
    with pytest.raises(SystemExit) as usage:
        main(["hub", "archive", "--config", str(toml), "--before", "yesterday", "--to", "x"])
    assert usage.value.code == 2


def test_partition_leaves_must_be_whole_tiles():
    with pytest.raises(ConfigError, match="multiple of 64"):
        StoreConfig(backend="postgres", dsn=PG_DSN, partition_leaves=100)
    with pytest.raises(StoreError, match="multiple of 64"):
        PgHubStore(PG_DSN, schema="unused", partition_leaves=0)


async def test_archived_records_are_served_to_a_peer_and_an_audit_export(schemas, tmp_path):
    """A peer pulling every log over CoAP and an audit bundle get the archived records too, read from the
    archive and checked against the tile roots the hub signed over."""
    import aiocoap

    from hub.app import start_hub
    from hub.bridges import BridgeConfig
    from hub.config import HubConfig
    from hub.store import LmdbHubStore
    from hub.tiers import pull_once
    from ledger import verify_bundle

    clock = Clock()
    hub = Hub(PgHubStore(PG_DSN, schema=schemas(), partition_leaves=LEAVES), Ed25519Signer.from_seed(b"\x57" * 32),
              clock=clock)
    logs = _fill(hub, clock, devices=3, per_device=100)
    cutoff = clock()
    clock.advance(86_400)
    logs += _fill(hub, clock, devices=1, per_device=50)
    done = hub.store.archive(cutoff, tmp_path / "archive", keep=[hub.hub_id])
    assert done and done[-1].end >= 256, "the first three logs are mostly archived"
    bundle = verify_bundle(hub.export())
    assert bundle.ok, bundle.ordered[:1]
    assert {d.device: d.records for d in bundle.devices} == {d.hex(): len(sent) for d, sent in logs}
    assert sum(d.receipts for d in bundle.devices) == sum(len(sent) for _, sent in logs)

    served = await start_hub(HubConfig(bridges=BridgeConfig(enabled=False), data_dir=str(tmp_path / "h"),
                                       http_port=0, coap_port=0, mdns=False, checkpoint_interval=3600), hub=hub)
    peer_store = LmdbHubStore(tmp_path / "peer", durable=False)
    peer = Hub(peer_store, Ed25519Signer.from_seed(b"\x58" * 32), clock=clock)
    ctx = await aiocoap.Context.create_client_context()
    try:
        report = await pull_once(peer, served.coap_url, ctx)
        assert not report.problems and report.fetched == sum(len(sent) for _, sent in logs)
        for device_id, sent in logs:
            assert peer_store.log_range(device_id, 0, len(sent)) == [r.raw for r in sent]
    finally:
        await ctx.shutdown()
        await served.close()
        peer_store.close()


def test_an_archive_that_is_gone_or_altered_is_refused_with_its_path(schemas, tmp_path):
    from hub.pg import ROWS_SUFFIX, TILES_SUFFIX
    from hub.store import ArchiveUnavailable

    clock = Clock()
    hub = Hub(PgHubStore(PG_DSN, schema=schemas(), partition_leaves=LEAVES), Ed25519Signer.from_seed(b"\x59" * 32),
              clock=clock)
    [(device_id, sent)] = _fill(hub, clock, devices=1, per_device=300)
    clock.advance(3600)
    done = hub.store.archive(clock(), tmp_path / "a", keep=[hub.hub_id])
    stem = done[0].archived
    assert hub.store.log_range(device_id, 0, 5) == [r.raw for r in sent[:5]]
    Path(stem + ROWS_SUFFIX).rename(tmp_path / "moved")
    with pytest.raises(ArchiveUnavailable, match=stem) as caught:
        hub.store.log_range(device_id, 0, 5)
    assert caught.value.code == "ARCHIVE_UNAVAILABLE" and "put the archive's files back" in caught.value.hint
    (tmp_path / "moved").rename(stem + ROWS_SUFFIX)
    # One record's bytes changed in the first tile's gzip member: that tile no longer gives its root.
    data = Path(stem + ROWS_SUFFIX).read_bytes()
    second = int.from_bytes(Path(stem + TILES_SUFFIX).read_bytes()[8:16], "big")
    lines = gzip.decompress(data[:second]).decode().splitlines()
    fields = lines[7].split(",")
    fields[6] = fields[6][:-2] + ("00" if fields[6][-2:] != "00" else "01")
    lines[7] = ",".join(fields)
    Path(stem + ROWS_SUFFIX).write_bytes(gzip.compress(("\n".join(lines) + "\n").encode(), mtime=0) + data[second:])
    with pytest.raises(ArchiveUnavailable, match="tile root"):
        hub.store.get_raw(device_id, 2)
    with pytest.raises(ArchiveUnavailable, match=f"log entries 0 to 9 are archived in {stem}"):
        hub.store.entries(0, 10)
    assert hub.store.entries(LEAVES, LEAVES + 5)[0].index == LEAVES, "another archive's tiles still serve"
    hub.store.close()


def _as_written_before_tile_files(stem: str) -> None:
    """Turn an archive into one written before archives had tile and seq files: its rows one gzip stream (as
    the old writer's GzipFile over PostgreSQL's COPY wrote them), no .tiles, no .seqs."""
    from hub.pg import ROWS_SUFFIX, SEQS_SUFFIX, TILES_SUFFIX

    rows = Path(stem + ROWS_SUFFIX)
    rows.write_bytes(gzip.compress(gzip.decompress(rows.read_bytes()), mtime=0))
    Path(stem + TILES_SUFFIX).unlink()
    Path(stem + SEQS_SUFFIX).unlink()


def _alter_record(stem: str, line: int) -> None:
    """Change one byte of the record on row `line` of an archive (a one-stream one): it no longer hashes."""
    from hub.pg import ROWS_SUFFIX

    lines = gzip.decompress(Path(stem + ROWS_SUFFIX).read_bytes()).decode().splitlines()
    fields = lines[line].split(",")
    fields[6] = fields[6][:-2] + ("00" if fields[6][-2:] != "00" else "01")
    lines[line] = ",".join(fields)
    Path(stem + ROWS_SUFFIX).write_bytes(gzip.compress(("\n".join(lines) + "\n").encode(), mtime=0))


def test_an_archive_written_before_tile_files_is_indexed_checked_and_served_again(schemas, tmp_path):
    from hub.pg import ROWS_SUFFIX, SEQS_SUFFIX, TILES_SUFFIX
    from hub.store import ArchiveUnavailable

    clock = Clock()
    hub_key = Ed25519Signer.from_seed(b"\x5a" * 32)
    hub = Hub(PgHubStore(PG_DSN, schema=schemas(), partition_leaves=LEAVES), hub_key, clock=clock)
    logs = _fill(hub, clock, devices=2, per_device=200)
    cutoff = clock()
    clock.advance(86_400)
    _fill(hub, clock, devices=1, per_device=50)
    cp = hub.checkpoint()
    store = hub.store
    size = store.size()
    before = store.entries(0, size)
    done = store.archive(cutoff, tmp_path / "a", keep=[hub.hub_id])
    assert len(done) >= 2
    suffixes = (ROWS_SUFFIX, TILES_SUFFIX, SEQS_SUFFIX)
    as_archived = {p.archived + s: Path(p.archived + s).read_bytes() for p in done for s in suffixes}
    for p in done:
        _as_written_before_tile_files(p.archived)
    device_id, sent = logs[0]
    with pytest.raises(ArchiveUnavailable, match=done[0].archived):
        store.log_range(device_id, 0, 5)
    with pytest.raises(ArchiveUnavailable):
        store.get_raw(device_id, 3)
    with pytest.raises(ArchiveUnavailable):
        store.entries(0, 10)
    with pytest.raises(ArchiveUnavailable):
        hub.receipt(sent[4].id)  # a receipt reads its record too: a damaged or unservable one gets none

    # One record altered in the second archive's second tile: it is refused at that tile, nothing written.
    altered = done[1].archived
    good = Path(altered + ROWS_SUFFIX).read_bytes()
    _alter_record(altered, 64 + 5)
    bad = Path(altered + ROWS_SUFFIX).read_bytes()
    report = store.index_archives()
    assert [(r.archive, r.outcome) for r in report] == [(done[0].archived, "indexed"), (altered, "refused")] + [
        (p.archived, "indexed") for p in done[2:]]
    refused = report[1]
    assert (refused.code, refused.tile, refused.exit_code) == ("ARCHIVE_MISMATCH", done[1].first // 64 + 1, 58)
    assert "does not hash to its id and leaf" in (refused.message or "")
    assert Path(altered + ROWS_SUFFIX).read_bytes() == bad, "a refused archive is left as it was"
    assert sorted(p.name for p in (tmp_path / "a").iterdir() if p.name.startswith(Path(altered).name)) == [
        Path(altered).name + s for s in (".csv.gz", ".ids", ".leaves")]
    with pytest.raises(ArchiveUnavailable):
        store.entries(done[1].first, done[1].first + 1)

    # The indexed archive is served again, and its files are the ones `archive` wrote, byte for byte.
    assert {p.archived + s: Path(p.archived + s).read_bytes() for p in done if p is not done[1]
            for s in suffixes} == {k: v for k, v in as_archived.items() if not k.startswith(altered + ".")}
    assert store.entries(0, done[0].end) == before[:done[0].end]

    # A byte of the compressed stream altered: refused too, at the tile it spoils or as no gzip of rows at all
    # (where the stream stops decoding, or at its CRC); nothing written.
    Path(altered + ROWS_SUFFIX).write_bytes(good[:len(good) // 2] + bytes([good[len(good) // 2] ^ 1])
                                            + good[len(good) // 2 + 1:])
    [again] = [r for r in store.index_archives() if r.archive == altered]
    assert (again.outcome, again.code) == ("refused", "ARCHIVE_MISMATCH")
    assert again.tile in (None, *range(done[1].first // 64, done[1].end // 64))
    assert not any(p.name.endswith(".part") for p in (tmp_path / "a").iterdir())

    # The good copy back: indexed; everything archived is served as it was before the archive.
    Path(altered + ROWS_SUFFIX).write_bytes(good)
    assert [r.outcome for r in store.index_archives()] == ["already indexed", "indexed"] + ["already indexed"] * (
        len(done) - 2)
    assert {k: Path(k).read_bytes() for k in as_archived} == as_archived
    assert store.entries(0, size) == before
    for device_id, sent in logs:
        assert store.log_range(device_id, 0, len(sent)) == [r.raw for r in sent]
        assert store.log_range(device_id, 61, 70) == [r.raw for r in sent[61:70]]
        assert store.get_raw(device_id, 7) == sent[7].raw
    assert store.entries_at([3, done[1].first + 70]) == [before[3], before[done[1].first + 70]]
    index, receipt = hub.receipt(sent[4].id)
    assert index < done[0].end and verify_receipt(receipt, sent[4].raw, hub_key.public_key).tree_size == cp.tree_size

    # Running it again changes nothing.
    stamps = {k: Path(k).stat().st_mtime_ns for k in as_archived}
    assert {r.outcome for r in store.index_archives(tmp_path / "a")} == {"already indexed"}
    assert {k: Path(k).stat().st_mtime_ns for k in as_archived} == stamps
    assert store.index_archives(tmp_path / "elsewhere") == []
    store.close()


def test_jejak_hub_archive_index_command(schemas, tmp_path, capsys):
    from hub.pg import ROWS_SUFFIX
    from tools.cli import main

    schema = schemas()
    hub, clock, toml = _configured_hub(schema, tmp_path)
    [(device_id, sent)] = _fill(hub, clock, devices=1, per_device=300, step=10)
    hub.store.close()
    assert main(["hub", "archive", "--config", str(toml), "--before", "2026-01-01", "--to", str(tmp_path / "out")]) == 0
    capsys.readouterr()
    stems = [str(tmp_path / "out" / f"records_{r}") for r in ("0-128", "128-256")]
    for stem in stems:
        _as_written_before_tile_files(stem)

    # A missing archive is reported with its path and code; the others are indexed.
    Path(stems[0] + ROWS_SUFFIX).rename(tmp_path / "moved")
    assert main(["hub", "archive", "index", "--config", str(toml), "--json"]) == 56
    report = json.loads(capsys.readouterr().out)
    assert [(r["archive"], r["outcome"], r["code"]) for r in report] == [
        (stems[0], "refused", "ARCHIVE_UNAVAILABLE"), (stems[1], "indexed", None)]
    assert f"{stems[0]}{ROWS_SUFFIX} cannot be read" in report[0]["message"] and report[0]["tile"] is None
    (tmp_path / "moved").rename(stems[0] + ROWS_SUFFIX)
    assert main(["hub", "archive", "index", "--config", str(toml), "--dir", str(tmp_path / "out")]) == 0
    assert capsys.readouterr().out.splitlines() == [f"indexed {stems[0]}: 128 records",
                                                    f"already indexed {stems[1]}: 128 records"]
    store = PgHubStore(PG_DSN, schema=schema, partition_leaves=LEAVES)
    assert store.log_range(device_id, 0, 300) == [r.raw for r in sent]
    store.close()
    assert main(["hub", "archive", "index", "--config", str(toml), "--dir", str(tmp_path)]) == 0
    assert "no archive to index" in capsys.readouterr().out
    assert main(["hub", "archive", "--config", str(toml), "--to", str(tmp_path / "out")]) == 2, "--before is needed"
