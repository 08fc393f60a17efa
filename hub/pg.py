"""HubStore on PostgreSQL (psycopg 3), for several hub processes or a national store; versioned migrations."""

from __future__ import annotations

import contextlib
import csv
import datetime
import gzip
import hashlib
import logging
import os
import re
import struct
import threading
import zlib
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from itertools import chain
from pathlib import Path
from typing import Any, BinaryIO

import psycopg
from psycopg.types.json import Jsonb
from psycopg.types.string import BytesBinaryDumper

from coap_server.files import sync_dir
from ledger import ChainState, LedgerError, Record, decode_record
from ledger.merkle import HASH_SIZE, MerkleTree, leaf_hash

from .aggregates import DamagedAggregate, DayAggregate, KeptAlert, Namespace, checked
from .config import bad_dsn
from .redact import shown_dsn
from .store import (
    FIGURES_MEANWHILE,
    INDEX_CHUNK,
    KIND_CODES,
    ArchiveMismatch,
    ArchiveUnavailable,
    Batch,
    CheckedReads,
    DeviceInfo,
    DeviceStanding,
    Entry,
    LogAppend,
    StoreError,
    activity_of_log,
    chain_activity,
    index_behind,
    intact_prefix,
    kind_index_of_log,
    kind_runs,
    refuse_damaged,
    shown_state,
)

log = logging.getLogger("jejak.hub.pg")

# Each step moves the schema one version up; applied in order inside one transaction. A step is SQL, or a
# function of the store for one that depends on what the store holds.
Step = tuple[str, ...] | Callable[["PgHubStore"], None]
MIGRATIONS: tuple[Step, ...] = (
    (
        "CREATE TABLE IF NOT EXISTS meta (key text PRIMARY KEY, value text NOT NULL)",
        "CREATE TABLE devices (device_id bytea PRIMARY KEY, data bytea NOT NULL)",
        "CREATE TABLE states (device_id bytea PRIMARY KEY, data bytea NOT NULL)",
        "CREATE TABLE records (device_id bytea NOT NULL, seq bigint NOT NULL, raw bytea NOT NULL, "
        "PRIMARY KEY (device_id, seq))",
        "CREATE TABLE global_log (idx bigint PRIMARY KEY, record_id bytea NOT NULL UNIQUE, device_id bytea NOT NULL, "
        "seq bigint NOT NULL, arrived_at bigint NOT NULL, leaf bytea NOT NULL)",
        "CREATE TABLE checkpoints (tree_size bigint NOT NULL, time bigint NOT NULL, raw bytea NOT NULL, "
        "PRIMARY KEY (tree_size, time))",
        "CREATE TABLE forks (device_id bytea NOT NULL, evidence bytea NOT NULL, PRIMARY KEY (device_id, evidence))",
        "CREATE TABLE counters (name text PRIMARY KEY, value bigint NOT NULL)",
    ),
    (
        # Every read of record bytes checks them against the id the global log holds for (device, seq).
        "CREATE INDEX global_log_device_seq ON global_log (device_id, seq)",
        "CREATE TABLE damaged (device_id bytea NOT NULL, seq bigint NOT NULL, PRIMARY KEY (device_id, seq))",
    ),
    (
        # The roots of the log's whole 64-leaf tiles: a restart reads these instead of every leaf.
        "CREATE TABLE tiles (idx bigint PRIMARY KEY, root bytea NOT NULL)",
    ),
    (
        # Checkpoints accepted from regional hubs followed by checkpoints, and the split views caught.
        "CREATE TABLE region_checkpoints (hub_id bytea NOT NULL, tree_size bigint NOT NULL, raw bytea NOT NULL, "
        "PRIMARY KEY (hub_id, tree_size))",
        "CREATE TABLE split_views (hub_id bytea NOT NULL, evidence bytea NOT NULL, PRIMARY KEY (hub_id, evidence))",
    ),
    lambda store: store._partition_log(),
    (
        # Operators' decisions to follow a regional hub again after a split view, kept for good.
        "CREATE TABLE region_resumes (n bigserial PRIMARY KEY, hub_id bytea NOT NULL, decision bytea NOT NULL)",
    ),
    lambda store: store._keep_activity(),
    lambda store: store._keep_statuses(),
    (
        # The MBG read model's day aggregates (hub/aggregates.py, hub/mbg/days.py): a row per day with its
        # counts, findings and violations, and a row per school delivery of the day, for national queries in SQL.
        "CREATE TABLE IF NOT EXISTS mbg_days (date date PRIMARY KEY, final boolean NOT NULL, scans integer NOT NULL, "
        "devices integer NOT NULL, deliveries integer NOT NULL, on_time integer NOT NULL, late integer NOT NULL, "
        "short integer NOT NULL, missing integer NOT NULL, expected_portions bigint NOT NULL, "
        "received_portions bigint NOT NULL, violations integer NOT NULL, findings integer NOT NULL, "
        "summary bytea NOT NULL, digest bytea NOT NULL)",
        "CREATE TABLE IF NOT EXISTS mbg_deliveries (date date NOT NULL, school text NOT NULL, school_name text NOT NULL, "
        "kitchen text NOT NULL, expected integer NOT NULL, departed_portions integer NOT NULL, "
        "received_portions integer NOT NULL, containers_out integer NOT NULL, containers_in integer NOT NULL, "
        "deadline_at bigint NOT NULL, departed_at bigint, arrived_at bigint, received_at bigint, served_at bigint, "
        "statuses text[] NOT NULL, late_s bigint NOT NULL, shortfall integer NOT NULL, time_basis text NOT NULL, "
        "PRIMARY KEY (date, school))",
        "CREATE INDEX IF NOT EXISTS mbg_deliveries_kitchen ON mbg_deliveries (kitchen, date)",
    ),
    lambda store: store._index_kinds(),
    (
        # The markets' day aggregates (hub/markets/days.py): a row per day with its counts, its readings, notes
        # and demand, and a row per series of the day with its accepted prices, for national queries in SQL.
        "CREATE TABLE IF NOT EXISTS market_days (date date PRIMARY KEY, series integer NOT NULL, "
        "accepted integer NOT NULL, sites integer NOT NULL, notes integer NOT NULL, summary bytea NOT NULL, "
        "digest bytea NOT NULL)",
        "CREATE TABLE IF NOT EXISTS market_series (date date NOT NULL, series text NOT NULL, market text NOT NULL, "
        "commodity text NOT NULL, grade text NOT NULL, unit text NOT NULL, region text NOT NULL, "
        "prices bigint[] NOT NULL, history double precision, reporters text[] NOT NULL, PRIMARY KEY (date, series))",
        "CREATE INDEX IF NOT EXISTS market_series_commodity ON market_series (commodity, market, date)",
    ),
    (
        # The hub's alerts, open and resolved (hub/alerts.py): what a restarted hub lists and does not raise again.
        "CREATE TABLE IF NOT EXISTS alerts (id text PRIMARY KEY, seq bigint NOT NULL, raised_at bigint NOT NULL, "
        "resolved_at bigint, alert jsonb NOT NULL)",
    ),
    (
        # The alerts' webhook journals (hub/alerts.py: what each subscriber was told, the deliveries waiting to be
        # sent again), a row per line in the order written: kept with the alerts, not in the hub's state dir, so
        # a hub that moves host or loses that directory tells nobody twice and drops no waiting delivery.
        "CREATE TABLE IF NOT EXISTS journal_lines (journal text NOT NULL, n bigint GENERATED ALWAYS AS IDENTITY, "
        "line jsonb NOT NULL, PRIMARY KEY (journal, n))",
    ),
    (
        # The price files operators imported (hub/markets/routes.py), imported again at every start: the markets'
        # history they hold outlives the hub's state dir. A file is its parts, each compressed on its own.
        "CREATE TABLE IF NOT EXISTS imported_files (sha256 text PRIMARY KEY, meta jsonb NOT NULL)",
        "CREATE TABLE IF NOT EXISTS imported_parts (sha256 text NOT NULL REFERENCES imported_files ON DELETE CASCADE, "
        "part integer NOT NULL, data bytea NOT NULL, PRIMARY KEY (sha256, part))",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)
IMPORT_PART = 8 << 20  # bytes of an imported file in one row of imported_parts
ACTIVITY_VERSION = 7  # the first schema that keeps the chain's figures (activity, record_kinds)
STATUS_VERSION = 8  # the first schema that keeps each device's status in a column of its own
KIND_INDEX_VERSION = 10  # the first schema that keeps the log's indices by record kind (kind_index)
PARTITIONED_VERSION = 5  # the first schema whose log is partitioned; the ones before kept records and global_log
_PAGE = 50_000  # rows per query of a long scan
_LOCK_ID = 0x4A454A414B  # one writer of the global log at a time, across hub processes
TILE_LEAVES = 64  # the hub tree's tile: partitions and archives start and end on one
DEFAULT_PARTITION_LEAVES = 1 << 22

# The log's rows, one per record, in arrival order; partitioned by the global index (see _partition_log).
_LOG_COLUMNS = "idx, seq, arrived_at, device_id, record_id, leaf, raw"
ENTRIES_SQL = ("SELECT idx, device_id, seq, arrived_at, raw, record_id FROM records "
               "WHERE idx >= %s AND idx < %s ORDER BY idx")
ENTRIES_AT_SQL = ("SELECT idx, device_id, seq, arrived_at, raw, record_id FROM records WHERE idx = ANY(%s) "
                  "ORDER BY idx")
LEAVES_SQL = "SELECT idx, leaf FROM records WHERE idx >= %s AND idx < %s ORDER BY idx"
# The chain's health page: a page of devices with their log's state, last arrival, latest record time and
# damaged records, in one query (keyset paging by device id). Each joined table gets the page's lower bound
# too: a merge join otherwise reads states and activity from their first row up to the page (measured: the last
# page of 20,000 devices read all 20,000 rows of both, 93 ms against 25 ms for the first).
STANDINGS_SQL = ("SELECT d.data, s.data, a.arrived_at, a.last_time, "
                 "ARRAY(SELECT x.seq FROM damaged x WHERE x.device_id = d.device_id ORDER BY x.seq) "
                 "FROM devices d LEFT JOIN states s ON s.device_id = d.device_id AND s.device_id > %(after)s "
                 "LEFT JOIN activity a ON a.device_id = d.device_id AND a.device_id > %(after)s "
                 "WHERE d.device_id > %(after)s ORDER BY d.device_id LIMIT %(limit)s")
# While the chain's figures of a store upgraded by migration 7 are counted (`figures_from` above 0): which of a
# page's devices have records below the mark, found by each one's first record still held.
COUNTING_SQL = ("SELECT p.id FROM unnest(%s::bytea[]) AS p(id) WHERE (SELECT r.idx FROM records r "
                "WHERE r.device_id = p.id ORDER BY r.seq LIMIT 1) < %s")
LOG_RANGE_SQL = ("SELECT seq, raw, record_id FROM records WHERE device_id = %s AND seq >= %s AND seq < %s "
                 "ORDER BY seq")


@dataclass(frozen=True, slots=True, kw_only=True)
class Partition:
    """One partition of the log: global indexes `first` up to `end`, the arrival times it holds (None while
    it is still filling or empty) and whether its rows went to an archive."""

    name: str
    first: int
    end: int
    first_arrived: int | None = None
    last_arrived: int | None = None
    archived: str | None = None  # the archive's file name

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "first": self.first, "end": self.end, "first_arrived": self.first_arrived,
                "last_arrived": self.last_arrived, "archived": self.archived}


@dataclass(frozen=True, slots=True, kw_only=True)
class ArchiveIndexing:
    """What `PgHubStore.index_archives` did with one archive: `indexed`, `already indexed`, or `refused` with
    the error's code, message and hint, and the first tile of the log that does not check where there is one.
    A refused archive was left as it was."""

    archive: str  # the archive's path without suffix, as the store records it
    outcome: str
    records: int = 0
    code: str | None = None
    message: str | None = None
    hint: str | None = None
    tile: int | None = None
    exit_code: int = 0  # what `jejak hub archive index` exits with for it

    @classmethod
    def refused(cls, stem: str, error: StoreError) -> ArchiveIndexing:
        """The report of an archive left as it was, with the error that says why."""
        return cls(archive=stem, outcome="refused", code=error.code, message=error.message, hint=error.hint,
                   tile=error.tile if isinstance(error, ArchiveMismatch) else None, exit_code=error.exit_code)

    def to_json(self) -> dict[str, object]:
        return {"archive": self.archive, "outcome": self.outcome, "records": self.records, "code": self.code,
                "message": self.message, "hint": self.hint, "tile": self.tile}


def connect(dsn: str) -> psycopg.Connection[Any]:
    """A connection to the PostgreSQL store at `dsn`; a down server is STORE_ERROR, an address psycopg cannot read
    a CONFIG error. Neither shows the password: psycopg quotes a malformed address whole, so its text is dropped."""
    try:
        conn = psycopg.connect(dsn, autocommit=False)
    except psycopg.OperationalError as exc:
        raise StoreError(f"cannot reach PostgreSQL at {shown_dsn(dsn)}: {exc}", where="store.dsn",
                         hint="start PostgreSQL or set [store] dsn in the hub config") from None
    except psycopg.ProgrammingError:
        raise bad_dsn(dsn) from None
    # COPY's columns are typed by oid (set_types), and psycopg's DB-API module puts a Python dumper first for
    # bytea there: four Python calls per record row. The C one takes bytes as they are (1.17 -> 0.30 us a row).
    conn.adapters.register_dumper(None, BytesBinaryDumper)
    return conn


def _index_refusal(stem: str, exc: BaseException) -> StoreError:
    """Why an archive is not indexed, as the error its report carries; anything else (the database gone, an
    interrupt) stops the command and is raised again."""
    if isinstance(exc, FileNotFoundError):
        return ArchiveUnavailable(f"archive {stem}{ROWS_SUFFIX} cannot be read: {exc.strerror}",
                                  hint="put the archive's files back at that path (their copy from `jejak hub "
                                       "archive --to`)")
    if isinstance(exc, OSError | EOFError | ValueError | zlib.error):  # gzip and CSV that are not an archive's
        return ArchiveMismatch(f"archive {stem}{ROWS_SUFFIX} cannot be read as an archive: {exc}",
                               hint="put the archive's good copy back (from `jejak hub archive --to`)")
    if isinstance(exc, StoreError):
        return exc
    raise exc


def _sync(fh: BinaryIO) -> None:
    fh.flush()
    os.fsync(fh.fileno())


def _partition_name(first: int) -> str:
    return f"records_{first:012d}"


ROWS_SUFFIX = ".csv.gz"
LEAVES_SUFFIX = ".leaves"
IDS_SUFFIX = ".ids"
TILES_SUFFIX = ".tiles"
SEQS_SUFFIX = ".seqs"
_U64 = struct.Struct(">Q")
_ID_ENTRY = HASH_SIZE + _U64.size
_DEVICE_SIZE = 16
_SEQ_ENTRY = struct.Struct(">16sQQ")  # device id, seq, index


def read_archive(path: str | os.PathLike[str]) -> Iterator[tuple[int, int, int, bytes, bytes, bytes, bytes]]:
    """The rows of an archive file: (idx, seq, arrived_at, device_id, record_id, leaf, raw)."""
    with gzip.open(path, "rt", newline="") as fh:
        for idx, seq, arrived, device_id, record_id, leaf, raw in csv.reader(fh):
            # COPY writes bytea in PostgreSQL's hex form, \x followed by the bytes in hex
            yield (int(idx), int(seq), int(arrived), bytes.fromhex(device_id[2:]), bytes.fromhex(record_id[2:]),
                   bytes.fromhex(leaf[2:]), bytes.fromhex(raw[2:]))


def check_archive(path: str | os.PathLike[str], first: int, end: int, tile_roots: Sequence[bytes],
                  leaves_out: BinaryIO | None = None) -> tuple[int, int]:
    """Check an archive of log indexes `first` up to `end` against the tile roots the hub keeps for them, a
    tile at a time (memory does not grow with the archive); write its leaf hashes to `leaves_out` if given.
    Return the folds of its (record id, index) and (device, seq, index) rows (see `_fold`), for the id and seq
    files to be checked against. Raises StoreError at the first row that is missing or does not hash right."""
    if len(tile_roots) != (end - first) // TILE_LEAVES:
        raise StoreError(f"archive {path}: the store keeps {len(tile_roots)} tile roots for it, expected "
                         f"{(end - first) // TILE_LEAVES}")
    tile: list[bytes] = []
    at, fold, seq_fold = first, 0, 0
    for idx, seq, _, device_id, record_id, leaf, raw in read_archive(path):
        if idx != at:
            raise ArchiveMismatch(f"archive {path}: expected index {at}, found {idx}", tile=at // TILE_LEAVES)
        if hashlib.sha256(raw).digest() != record_id or leaf_hash(raw) != leaf:
            raise ArchiveMismatch(f"archive {path}: device {device_id.hex()} seq {seq} at index {idx} does not "
                                  "hash to its id and leaf", tile=idx // TILE_LEAVES,
                                  hint="the store holds a damaged record: run `jejak hub verify`, restore the "
                                       "record, then archive again")
        fold ^= _fold(record_id, idx)
        seq_fold ^= _fold(_SEQ_ENTRY.pack(device_id, seq, idx), idx)
        tile.append(leaf)
        at += 1
        if len(tile) == TILE_LEAVES:
            if at > end or MerkleTree(tile).root() != tile_roots[(at - first) // TILE_LEAVES - 1]:
                raise ArchiveMismatch(f"archive {path}: leaves {at - TILE_LEAVES} to {at - 1} do not give the "
                                      "tile root the hub keeps", tile=(at - 1) // TILE_LEAVES)
            if leaves_out is not None:
                leaves_out.write(b"".join(tile))
            tile.clear()
    if at != end or tile:
        raise ArchiveMismatch(f"archive {path}: expected indexes {first} to {end - 1}, it ends at {at - 1}",
                              tile=min(at, end - 1) // TILE_LEAVES)
    return fold, seq_fold


def csv_lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """The lines of CSV text that arrives in chunks of any size. No field of the log's rows holds a line break
    (integers and hex), so a row is a line; text after the last line break is yielded as a line of its own."""
    rest = b""
    for chunk in chunks:
        rest, *done = (rest + chunk).rsplit(b"\n", 1)[::-1]
        if done:
            yield from done[0].split(b"\n")
    if rest:
        yield rest


def write_tiled_rows(lines: Iterable[bytes], path: str, tiles_path: str, what: str) -> None:
    """Archive rows (CSV lines, in index order) to `path` one gzip member per tile (still one gzip file to every
    reader), and the byte offset of each member to `tiles_path`, so a tile is read back on its own; both
    fsync'd. The one writer of archive rows: a new archive's and an old one's given its tile file."""
    offsets: list[int] = []
    tile: list[bytes] = []
    with open(path, "wb") as fh:
        for line in lines:
            tile.append(line)
            if len(tile) == TILE_LEAVES:
                offsets.append(fh.tell())
                fh.write(gzip.compress(b"\n".join(tile) + b"\n", compresslevel=6, mtime=0))
                tile.clear()
        if tile:
            raise StoreError(f"{what}: {len(tile)} rows past its last whole tile")
        _sync(fh)
    with open(tiles_path, "wb") as fh:
        fh.write(b"".join(_U64.pack(o) for o in offsets))
        _sync(fh)


def _fold(record_id: bytes, idx: int) -> int:
    """An order-free digest of a set of (record id, index) pairs: the id file and the rows must give the same."""
    return int.from_bytes(hashlib.sha256(record_id + _U64.pack(idx)).digest(), "big")


def search_ids(path: str | os.PathLike[str], record_id: bytes) -> int | None:
    """The log index of `record_id` in an archive's id file (40-byte entries, id then index, sorted by id)."""
    with open(path, "rb") as fh:
        lo, hi = 0, os.fstat(fh.fileno()).st_size // _ID_ENTRY
        while lo < hi:
            mid = (lo + hi) // 2
            fh.seek(mid * _ID_ENTRY)
            entry = fh.read(_ID_ENTRY)
            if entry[:HASH_SIZE] < record_id:
                lo = mid + 1
            elif entry[:HASH_SIZE] > record_id:
                hi = mid
            else:
                return int(_U64.unpack(entry[HASH_SIZE:])[0])
    return None


def _unavailable(stem: str, what: str, exc: Exception) -> ArchiveUnavailable:
    """The error for an archive that cannot be served, logged once here."""
    why = exc.strerror if isinstance(exc, OSError) else getattr(exc, "message", str(exc))
    log.error("archive %s: %s cannot be served: %s", stem, what, why)
    return ArchiveUnavailable(f"{what} are archived in {stem}{ROWS_SUFFIX}, which cannot be served: {why}",
                              hint="put the archive's files back at that path (their copy from `jejak hub archive "
                                   "--to`)")


def search_seqs(path: str | os.PathLike[str], device_id: bytes, start: int, end: int) -> list[int]:
    """The log indexes of `device_id`'s records `start`, `start + 1`, ... (before `end`) in an archive's seq file
    (32-byte entries: device id, seq, index; sorted by device and seq), as far as they run on without a gap."""
    want = _SEQ_ENTRY.pack(device_id, start, 0)[:_DEVICE_SIZE + 8]
    with open(path, "rb") as fh:
        lo, hi = 0, os.fstat(fh.fileno()).st_size // _SEQ_ENTRY.size
        while lo < hi:
            mid = (lo + hi) // 2
            fh.seek(mid * _SEQ_ENTRY.size)
            if fh.read(_SEQ_ENTRY.size)[:_DEVICE_SIZE + 8] < want:
                lo = mid + 1
            else:
                hi = mid
        fh.seek(lo * _SEQ_ENTRY.size)
        out: list[int] = []
        while start + len(out) < end:
            data = fh.read(_SEQ_ENTRY.size * min(4096, end - start - len(out)))
            for device, seq, idx in _SEQ_ENTRY.iter_unpack(data[:len(data) - len(data) % _SEQ_ENTRY.size]):
                if device != device_id or seq != start + len(out):
                    return out
                out.append(idx)
            if len(data) < _SEQ_ENTRY.size:
                break
    return out


def read_tile(path: str | os.PathLike[str], tile: int) -> list[tuple[int, int, int, bytes, bytes, bytes, bytes]]:
    """The rows of one tile of an archive: the rows file holds a gzip member per tile, and the tiles file the
    byte offset of each, so one tile is read without the ones before it."""
    stem = os.fspath(path)
    with open(stem + TILES_SUFFIX, "rb") as fh:
        fh.seek(tile * _U64.size)
        bounds = fh.read(2 * _U64.size)
    if len(bounds) < _U64.size:
        raise StoreError(f"archive {stem}: its tiles file has no tile {tile}")
    start = _U64.unpack(bounds[:_U64.size])[0]
    with open(stem + ROWS_SUFFIX, "rb") as fh:
        fh.seek(start)
        data = fh.read(_U64.unpack(bounds[_U64.size:])[0] - start if len(bounds) == 2 * _U64.size else -1)
    member = zlib.decompressobj(wbits=31)
    try:
        text = member.decompress(data).decode()
        if not member.eof:
            raise ValueError("its gzip member is cut short")
        return [(int(idx), int(seq), int(arrived), bytes.fromhex(device_id[2:]), bytes.fromhex(record_id[2:]),
                 bytes.fromhex(leaf[2:]), bytes.fromhex(raw[2:]))
                for idx, seq, arrived, device_id, record_id, leaf, raw in csv.reader(text.splitlines())]
    except (zlib.error, ValueError) as exc:  # UnicodeDecodeError and a row of the wrong shape are ValueErrors
        raise StoreError(f"archive {stem}: tile {tile} cannot be read: {exc}") from None


class PgHubStore(CheckedReads):
    """HubStore on PostgreSQL. Each store lives in its own schema, so tests and tiers can share a database.

    The log (one row per record: its place in the global log, its device and seq, its bytes, id and leaf) is
    one table partitioned by the global index, `partition_leaves` rows per partition, made one partition
    ahead as the log grows; old partitions go to an archive file and out of the database (`archive`)."""

    def __init__(self, dsn: str, *, schema: str = "jejak", partition_leaves: int = DEFAULT_PARTITION_LEAVES,
                 index_behind: bool = True) -> None:
        """`index_behind`: count and index the log's records older than migrations 7 and 10 in a background
        thread on a connection of its own (off only where a test steps through it with `count_older_figures` and
        `index_older_kinds`)."""
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", schema):
            raise StoreError(f"schema name {schema!r}: expected lowercase letters, digits and _")
        if partition_leaves <= 0 or partition_leaves % TILE_LEAVES:
            raise StoreError(f"partition_leaves: expected a positive multiple of {TILE_LEAVES}, got {partition_leaves}",
                             hint="set [store] partition_leaves to about a month of records, e.g. 4194304")
        self.schema = schema
        self.partition_leaves = partition_leaves
        # One connection, shared by the hub's writer and the threads that serve reads: psycopg nests
        # transactions per connection, not per thread, so each transaction holds the connection to itself.
        # Commits go on a second one (`_committer`, opened at the first), so that reads (the dashboard's, the
        # heads of a sync) go on while a commit's rows travel and the server syncs them.
        self._lock = threading.RLock()
        self._dsn = dsn
        self._committer: psycopg.Connection[Any] | None = None
        self._commit_lock = threading.Lock()
        self._covered = 0  # the log's partitions reach this index (at least)
        self._seen = 0  # the log held this many records (at least)
        self._figures_counted = False  # `figures_from` seen at 0
        self._conn = self._connect()
        with self._tx():
            self._conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
            self._migrate()
        self._stop = threading.Event()
        self._indexer: threading.Thread | None = None
        if index_behind and (self.figures_from() > 0 or self.kind_index_from() > 0):
            self._indexer = threading.Thread(target=self._index_behind, args=(dsn,), name="jejak-store-behind",
                                             daemon=True)
            self._indexer.start()

    def _connect(self) -> psycopg.Connection[Any]:
        conn = connect(self._dsn)
        with conn.transaction():
            conn.execute(f"SET search_path TO {self.schema}")
            # Small indexed reads only: before ANALYZE has seen a big table, its cost guess turns JIT on and
            # compiling took ~100 ms of each 64-row read (measured on 1,000,000 records).
            conn.execute("SET jit = off")
        return conn

    def _migrate(self) -> None:
        self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_ID,))
        self._conn.execute("CREATE TABLE IF NOT EXISTS meta (key text PRIMARY KEY, value text NOT NULL)")
        row = self._conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        version = int(row[0]) if row else 0
        if version > SCHEMA_VERSION:
            raise StoreError(f"store schema version {version} is newer than this hub's {SCHEMA_VERSION}",
                             hint="upgrade the hub before pointing it at this database")
        for step in MIGRATIONS[version:]:
            if callable(step):
                step(self)
                continue
            for sql in step:
                self._conn.execute(sql)
        self._conn.execute("INSERT INTO meta (key, value) VALUES ('schema_version', %s) "
                           "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (str(SCHEMA_VERSION),))

    def _partition_log(self) -> None:
        """Migration 5: records and global_log become one table partitioned by the global index.

        The index, not the arrival time, is the partition key: it is what every log read asks for (entries,
        leaf hashes, tiles, the store check), it only grows, and a partition of whole tiles can be archived
        and proved from its tile roots. Each partition's arrival times are recorded once it is full, so
        retention is still asked in dates. One row instead of two saves the second copy of device and seq,
        a row header and an index (measured in docs/SCALE.md).

        A primary or unique key of a partitioned table must hold the partition key, so only `idx` is unique
        in PostgreSQL's eyes. (device, seq) stays unique because `append`, the one writer (advisory lock),
        refuses records that do not continue the device's stored state; a record id is the hash of bytes that
        sign the device and seq, so distinct (device, seq) means distinct ids. `locate` uses a hash index."""
        c = self._conn
        c.execute("CREATE TABLE log (idx bigint NOT NULL, seq bigint NOT NULL, arrived_at bigint NOT NULL, "
                  "device_id bytea NOT NULL, record_id bytea NOT NULL, leaf bytea NOT NULL, raw bytea NOT NULL, "
                  "PRIMARY KEY (idx)) PARTITION BY RANGE (idx)")
        c.execute("CREATE TABLE partitions (first bigint PRIMARY KEY, \"end\" bigint NOT NULL, "
                  "first_arrived bigint, last_arrived bigint, archived text)")
        row = c.execute("SELECT coalesce(max(idx) + 1, 0) FROM global_log").fetchone()
        size = int(row[0]) if row else 0
        self._cover(size, table="log")
        # Rows move in index order, so each partition is written in the order a scan reads it. A global log
        # row without its record's bytes keeps an empty raw: the store check then finds it damaged.
        c.execute(f"INSERT INTO log ({_LOG_COLUMNS}) SELECT g.idx, g.seq, g.arrived_at, g.device_id, "
                  "g.record_id, g.leaf, coalesce(r.raw, '') FROM global_log g "
                  "LEFT JOIN records r ON r.device_id = g.device_id AND r.seq = g.seq ORDER BY g.idx")
        c.execute("DROP TABLE global_log")
        c.execute("DROP TABLE records")
        c.execute("ALTER TABLE log RENAME TO records")
        c.execute("ALTER INDEX log_pkey RENAME TO records_pkey")
        # Indexes after the rows: one sorted build each instead of a row-by-row insert.
        c.execute("CREATE INDEX records_device_seq ON records (device_id, seq)")
        c.execute("CREATE INDEX records_id ON records USING hash (record_id)")

    def _keep_activity(self) -> None:
        """Migration 7: each device's last arrival and latest record time, and the records by kind, kept with
        every commit (`_put_activity`). The kind and time are inside each record's signed bytes, which SQL cannot
        read, and reading them took about 25 s per million records (docs/SCALE.md), so the records the log
        already holds are not read here: the figures count every record from the log's size on (meta
        `figures_from`), and the older records are counted after the start, in the background, newest first
        (`count_older_figures`); records already archived out of the database are not counted."""
        c = self._conn
        c.execute("CREATE TABLE activity (device_id bytea PRIMARY KEY, arrived_at bigint NOT NULL, "
                  "last_time bigint NOT NULL)")
        c.execute("CREATE TABLE record_kinds (kind text PRIMARY KEY, records bigint NOT NULL)")
        if size := self._size():
            c.execute("INSERT INTO meta (key, value) VALUES ('figures_from', %s) "
                      "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (str(size),))

    def _keep_statuses(self) -> None:
        """Migration 8: each device's status in a column of its own, so devices are counted by status in SQL
        (`device_statuses`, read by /metrics at every scrape) instead of fetching and decoding every device.
        The status is inside each device's stored bytes, which SQL cannot read: the rows are read once here, a
        page at a time, and their statuses written back."""
        c = self._conn
        c.execute("ALTER TABLE devices ADD COLUMN status text")
        after = b""
        while True:
            rows = c.execute("SELECT device_id, data FROM devices WHERE device_id > %s ORDER BY device_id LIMIT %s",
                             (after, _PAGE)).fetchall()
            if not rows:
                break
            c.execute("UPDATE devices SET status = u.status FROM unnest(%s::bytea[], %s::text[]) AS u(id, status) "
                      "WHERE devices.device_id = u.id",
                      ([bytes(d) for d, _ in rows], [DeviceInfo.from_cbor(bytes(data)).status for _, data in rows]))
            after = bytes(rows[-1][0])
        c.execute("ALTER TABLE devices ALTER COLUMN status SET NOT NULL")
        c.execute("CREATE INDEX devices_status ON devices (status)")

    def _index_kinds(self) -> None:
        """Migration 10: the log's indices by record kind, kept with every commit. A table of its own rather than
        a column of the partitioned log: it stays when a partition goes to an archive, so the records a reader
        wants are still found there.

        A row per run of consecutive indices of one kind (`kind_runs`), keyed by the kind and the run's last
        index, so that the runs reaching a range are found from the range's start.

        The records the log already holds are not read here: the index is complete from the log's size on (meta
        `kind_index_from`), and the older records are indexed after the start, in the background, newest first
        (`index_older_kinds`; kind read from each record's fixed fields, a damaged copy indexed as unreadable);
        records already archived out of the database are not indexed."""
        c = self._conn
        c.execute("CREATE TABLE IF NOT EXISTS kind_index (kind smallint NOT NULL, first bigint NOT NULL, "
                  "last bigint NOT NULL, PRIMARY KEY (kind, last))")
        c.execute("TRUNCATE kind_index")  # a schema set back by hand indexes its log again, whole
        c.execute("INSERT INTO meta (key, value) VALUES ('kind_index_from', %s) "
                  "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (str(self._size()),))

    def figures_from(self) -> int:
        """The log index from which the chain's figures count every record: 0 once all are counted; above 0 while
        the records of a store upgraded by migration 7 are still being counted, newest first."""
        if self._figures_counted:
            return 0
        with self._tx():
            return self._figures_from()

    def _figures_from(self) -> int:
        # Once 0 it stays 0 (the migration that sets it runs once), so a store that saw it reach 0 asks no more.
        behind = _figures_from(self._conn)
        self._figures_counted = not behind
        return behind

    def count_older_figures(self, chunk: int = INDEX_CHUNK) -> int:
        """Count up to `chunk` records just below `figures_from` on the store's connection, and lower it past
        them in the same transaction; returns the new `figures_from`."""
        with self._tx():
            return _count_chunk(self._conn, chunk)

    def kind_index_from(self) -> int:
        """The log index from which the kind index is complete: 0 once every record is indexed; above 0 while
        the records of a store upgraded by migration 10 are still being indexed, newest first."""
        with self._tx():
            return _kinds_from(self._conn)

    def index_older_kinds(self, chunk: int = INDEX_CHUNK) -> int:
        """Index up to `chunk` records just below `kind_index_from` on the store's connection, and lower it past
        them in the same transaction; returns the new `kind_index_from`."""
        with self._tx():
            return _index_chunk(self._conn, chunk)

    def _index_behind(self, dsn: str) -> None:
        """The background passes, on a connection of their own so the writer's is never held by them: the chain's
        figures first (the health page shows them short until then; the refill reads the kinds not indexed yet
        from the records and answers the same, only slower), then the kind index."""
        try:
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute(f"SET search_path TO {self.schema}")

                def counted(chunk: int) -> int:
                    with conn.transaction():
                        return _count_chunk(conn, chunk)

                def indexed(chunk: int) -> int:
                    with conn.transaction():
                        return _index_chunk(conn, chunk)

                if behind := _figures_from(conn):
                    index_behind(counted, behind, self._stop, what="chain's figures", meanwhile=FIGURES_MEANWHILE)
                if not self._stop.is_set() and not _figures_from(conn) and (behind := _kinds_from(conn)):
                    index_behind(indexed, behind, self._stop)
        except psycopg.Error as exc:  # the database gone or the schema dropped: the next start resumes
            log.warning("hub store: the background pass over older records stopped: %s", exc)

    @staticmethod
    def _put_kind_runs(cur: psycopg.Cursor[Any], runs: Iterable[tuple[int, int, int]]) -> None:
        with cur.copy("COPY kind_index (kind, first, last) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["int2", "int8", "int8"])
            for run in runs:
                copy.write_row(run)

    @staticmethod
    def _put_activity(cur: psycopg.Cursor[Any], devices: dict[bytes, tuple[int, int]],
                      kinds: dict[str, int]) -> None:
        """Add a commit's figures, a statement each: a device's arrival replaces the one kept, its latest record
        time only grows; the counts by kind add up."""
        if devices:
            cur.execute("INSERT INTO activity SELECT * FROM unnest(%s::bytea[], %s::bigint[], %s::bigint[]) "
                        "ON CONFLICT (device_id) DO UPDATE SET arrived_at = excluded.arrived_at, "
                        "last_time = greatest(activity.last_time, excluded.last_time)",
                        (list(devices), [a for a, _ in devices.values()], [t for _, t in devices.values()]))
        if kinds:
            cur.execute("INSERT INTO record_kinds SELECT * FROM unnest(%s::text[], %s::bigint[]) "
                        "ON CONFLICT (kind) DO UPDATE SET records = record_kinds.records + excluded.records",
                        (list(kinds), list(kinds.values())))

    @staticmethod
    def _put_older_activity(cur: psycopg.Cursor[Any], devices: dict[bytes, tuple[int, int]],
                            kinds: dict[str, int]) -> None:
        """Add the figures of records older than every one counted so far (the pass goes newest first): a device's
        arrival kept stays, as it is of later records; its latest record time only grows; the counts add up."""
        if devices:
            cur.execute("INSERT INTO activity SELECT * FROM unnest(%s::bytea[], %s::bigint[], %s::bigint[]) "
                        "ON CONFLICT (device_id) DO UPDATE SET "
                        "last_time = greatest(activity.last_time, excluded.last_time)",
                        (list(devices), [a for a, _ in devices.values()], [t for _, t in devices.values()]))
        PgHubStore._put_activity(cur, {}, kinds)

    def _cover(self, end: int, *, table: str = "records", conn: psycopg.Connection[Any] | None = None) -> None:
        """Partitions up to `end` and one whole partition past it, inside the caller's transaction.

        A partition is made ahead, while empty, as its own table and then attached: attaching an empty table
        checks no rows and takes a lock that neither readers nor the writer wait on, where CREATE TABLE ...
        PARTITION OF would lock the whole log against every reader for a moment."""
        if end + self.partition_leaves <= self._covered:
            return
        conn = conn or self._conn
        row = conn.execute('SELECT coalesce(max("end"), 0) FROM partitions').fetchone()
        covered = int(row[0]) if row else 0
        while covered < end + self.partition_leaves:
            name = _partition_name(covered)
            conn.execute(f"CREATE TABLE {name} (LIKE {table} INCLUDING DEFAULTS)")
            conn.execute(f"ALTER TABLE {table} ATTACH PARTITION {name} "
                         f"FOR VALUES FROM ({covered}) TO ({covered + self.partition_leaves})")
            conn.execute('INSERT INTO partitions (first, "end") VALUES (%s, %s)',
                         (covered, covered + self.partition_leaves))
            covered += self.partition_leaves
        self._covered = covered

    @contextlib.contextmanager
    def _tx(self) -> Iterator[None]:
        with self._lock, self._conn.transaction():
            yield

    def _query_one(self, sql: str, params: tuple[object, ...] = ()) -> tuple[Any, ...] | None:
        with self._tx():
            return self._conn.execute(sql, params).fetchone()

    def _query(self, sql: str, params: tuple[object, ...] | dict[str, object] = ()) -> list[tuple[Any, ...]]:
        with self._tx():
            return self._conn.execute(sql, params).fetchall()

    def put_device(self, *devices: DeviceInfo) -> None:
        with self._tx(), self._conn.cursor() as cur:
            # The status column is kept with the bytes in one statement, so the two never disagree.
            cur.executemany("INSERT INTO devices (device_id, data, status) VALUES (%s, %s, %s) "
                            "ON CONFLICT (device_id) DO UPDATE SET data = excluded.data, status = excluded.status",
                            [(device.device_id, device.to_cbor(), device.status) for device in devices])

    def get_device(self, device_id: bytes) -> DeviceInfo | None:
        row = self._query_one("SELECT data FROM devices WHERE device_id = %s", (device_id,))
        return DeviceInfo.from_cbor(bytes(row[0])) if row else None

    def devices(self) -> list[DeviceInfo]:
        return [DeviceInfo.from_cbor(bytes(r[0])) for r in
                self._query("SELECT data FROM devices ORDER BY device_id")]

    def device_count(self) -> int:
        row = self._query_one("SELECT count(*) FROM devices")
        return int(row[0]) if row else 0

    def device_statuses(self) -> dict[str, int]:
        return {str(status): int(n) for status, n in self._query("SELECT status, count(*) FROM devices GROUP BY status")}

    def pending_devices(self) -> list[DeviceInfo]:
        return [DeviceInfo.from_cbor(bytes(r[0])) for r in
                self._query("SELECT data FROM devices WHERE status = 'pending' ORDER BY device_id")]

    def drop_pending(self, *device_ids: bytes) -> list[DeviceInfo]:
        if not device_ids:
            return []
        return [DeviceInfo.from_cbor(bytes(r[0])) for r in
                self._query("DELETE FROM devices WHERE device_id = ANY(%s) AND status = 'pending' RETURNING data",
                            (list(device_ids),))]

    def standings(self, after: bytes, limit: int) -> list[DeviceStanding]:
        with self._tx():
            out = [DeviceStanding(device=DeviceInfo.from_cbor(bytes(device)),
                                  state=shown_state(bytes(state)) if state is not None else None,
                                  arrived_at=arrived, last_time=latest, damaged=tuple(damaged))
                   for device, state, arrived, latest, damaged in
                   self._conn.execute(STANDINGS_SQL, {"after": after, "limit": limit}).fetchall()]
            behind = 0 if self._figures_counted else self._figures_from()
            logged = [s.device.device_id for s in out if s.state is not None]
            counting = {bytes(d) for d, in self._conn.execute(COUNTING_SQL, (logged, behind)).fetchall()} \
                if behind and logged else set()
        return [replace(s, counting=True) if s.device.device_id in counting else s for s in out]

    def record_kinds(self) -> dict[str, int]:
        return {str(k): int(n) for k, n in self._query("SELECT kind, records FROM record_kinds")}

    def activity_after(self, after: bytes, limit: int) -> list[tuple[bytes, int, int]]:
        rows = self._query("SELECT device_id, arrived_at, last_time FROM activity WHERE device_id > %s "
                           "ORDER BY device_id LIMIT %s", (after, limit))
        return [(bytes(d), int(a), int(t)) for d, a, t in rows]

    def chain_state(self, device_id: bytes) -> ChainState | None:
        row = self._query_one("SELECT data FROM states WHERE device_id = %s", (device_id,))
        return ChainState.from_cbor(bytes(row[0])) if row else None

    def states_after(self, after: bytes, limit: int) -> list[ChainState]:
        rows = self._query("SELECT data FROM states WHERE device_id > %s ORDER BY device_id LIMIT %s", (after, limit))
        return [ChainState.from_cbor(bytes(r[0])) for r in rows]

    def append(self, device_id: bytes, records: Sequence[Record], state: ChainState, arrived_at: int) -> int:
        return self.commit(Batch(appends=[LogAppend.of(device_id, records, state, arrived_at)]))

    def commit(self, batch: Batch) -> int:
        """On the committer's connection, one commit at a time: reads on the store's own connection go on
        meanwhile and see the batch once it is committed."""
        with self._commit_lock:
            if self._committer is None or self._committer.broken:  # a server restarted since: its own again
                if self._committer is not None:
                    self._committer.close()
                self._committer = self._connect()
            conn = self._committer
            with conn.transaction(), conn.cursor() as cur:
                return self._commit(conn, cur, batch)

    def _commit(self, conn: psycopg.Connection[Any], cur: psycopg.Cursor[Any], batch: Batch) -> int:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_ID,))
        devices = list(dict.fromkeys(part.device_id for part in batch.appends))
        rows = cur.execute("SELECT device_id, data FROM states WHERE device_id = ANY(%s)",
                           (devices,)).fetchall() if devices else []
        lengths = {bytes(d): ChainState.from_cbor(bytes(data)).length for d, data in rows}
        for part in batch.appends:
            # The partitioned log cannot hold a unique index on (device, seq): this check is what keeps
            # it unique (see _partition_log). A second writer with a stale view of the log stops here.
            length = lengths.get(part.device_id, 0)
            seqs = [r.seq for r in part.records]
            if seqs != list(range(length, length + len(seqs))):
                raise StoreError(f"device {part.device_id.hex()}: records {seqs[:3]}... do not continue its "
                                 f"stored log of {length}; nothing was written",
                                 hint="another hub process wrote to this log: reopen the hub on the store")
            lengths[part.device_id] = length + len(seqs)
        size = self._size(conn)
        self._cover(size + sum(len(part.records) for part in batch.appends), conn=conn)
        # COPY in binary: one statement for a batch's rows, where a row per INSERT cost a round trip.
        first = size
        with cur.copy(f"COPY records ({_LOG_COLUMNS}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["int8", "int8", "int8", "bytea", "bytea", "bytea", "bytea"])
            for part in batch.appends:
                for rec, leaf in zip(part.records, part.leaves, strict=True):
                    copy.write_row((size, rec.seq, part.arrived_at, part.device_id, rec.id, leaf, rec.raw))
                    size += 1
        self._put_kind_runs(cur, kind_runs((KIND_CODES[rec.kind], index) for index, rec in enumerate(
            chain.from_iterable(part.records for part in batch.appends), first)))
        if batch.appends:
            cur.executemany("INSERT INTO states VALUES (%s, %s) ON CONFLICT (device_id) "
                            "DO UPDATE SET data = excluded.data",
                            [(part.device_id, part.state.to_cbor()) for part in batch.appends])
        if batch.tiles:
            cur.executemany("INSERT INTO tiles (idx, root) VALUES (%s, %s) ON CONFLICT (idx) DO UPDATE "
                            "SET root = excluded.root", list(enumerate(batch.tiles, batch.first_tile)))
        if batch.counters:
            cur.executemany("INSERT INTO counters VALUES (%s, %s) ON CONFLICT (name) "
                            "DO UPDATE SET value = counters.value + excluded.value", list(batch.counters.items()))
        self._put_activity(cur, *chain_activity(batch.appends))
        return size

    def _checked(self, device_id: bytes, seq: int) -> tuple[bytes, bytes | None] | None:
        """The record at `seq` and, from its row, its id, which its bytes must hash to (else DamagedRecord); an
        archived record comes without its id (the archive checked it against the tile roots)."""
        row = self._query_one("SELECT raw, record_id FROM records WHERE device_id = %s AND seq = %s",
                              (device_id, seq))
        if row is None:
            archived = self._archived_range(device_id, seq, seq + 1)
            return (archived[0], None) if archived else None
        raw, record_id = bytes(row[0]), bytes(row[1])
        if hashlib.sha256(raw).digest() != record_id:
            raise refuse_damaged(self, device_id, seq)
        return raw, record_id

    def log_range(self, device_id: bytes, start: int, end: int) -> list[bytes]:
        rows = self._query(LOG_RANGE_SQL, (device_id, start, end))
        # Records whose rows went to an archive come from its files, checked against the tile roots; the rest
        # follow from the database. A range reaches only as far as it runs on without a gap.
        archived: list[bytes] = []
        if start < end and (not rows or rows[0][0] != start):
            archived = self._archived_range(device_id, start, int(rows[0][0]) if rows else end)
            start += len(archived)
        gap = next((i for i, row in enumerate(rows) if row[0] != start + i), len(rows))
        del rows[gap:]
        out = [bytes(raw) for _, raw, _ in rows]
        intact_prefix(self, [(device_id, int(seq), hashlib.sha256(raw).digest() == bytes(rid))
                             for (seq, _, rid), raw in zip(rows, out, strict=True)], out)
        return archived + out

    def _archived_range(self, device_id: bytes, start: int, end: int) -> list[bytes]:
        """Records `start` up to `end` of one log from the archives (as far as they run on), each tile read
        checked against the tile root the hub keeps and each record against its device and seq; an archive
        that cannot be read or does not check is ARCHIVE_UNAVAILABLE, naming its path."""
        out: list[bytes] = []
        tiles: dict[int, list[tuple[int, int, int, bytes, bytes, bytes, bytes]]] = {}
        parts = self._query('SELECT first, archived FROM partitions WHERE archived IS NOT NULL ORDER BY first')
        for first, stem in parts:
            if start + len(out) >= end:
                break
            try:
                places = search_seqs(stem + SEQS_SUFFIX, device_id, start + len(out), end)
                wanted = sorted({idx // TILE_LEAVES for idx in places})
                roots = {int(i): bytes(r) for i, r in self._query("SELECT idx, root FROM tiles WHERE idx = ANY(%s)",
                                                                  (wanted,))} if wanted else {}
                for idx in places:
                    tile = idx // TILE_LEAVES
                    if tile not in tiles:
                        tiles[tile] = self._archived_tile(stem, tile, tile - first // TILE_LEAVES, roots.get(tile))
                    raw = tiles[tile][idx % TILE_LEAVES][6]
                    record = decode_record(raw)
                    if (record.device_id, record.seq) != (device_id, start + len(out)):
                        raise StoreError(f"archive {stem}: index {idx} holds device {record.device_id.hex()} seq "
                                         f"{record.seq}, its seq file says device {device_id.hex()} seq "
                                         f"{start + len(out)}")
                    out.append(raw)
            except (OSError, StoreError, LedgerError) as exc:
                raise _unavailable(stem, f"device {device_id.hex()} records from seq {start + len(out)}",
                                   exc) from None
        return out

    def _archived_entries(self, start: int, end: int, held: Collection[int]) -> list[Entry]:
        """Global log entries `start` up to `end` that are in archives and not in `held` (the indexes the
        database still holds: the kept logs' rows), a tile at a time, each tile checked against its root."""
        out: list[Entry] = []
        parts = self._query('SELECT first, "end", archived FROM partitions WHERE archived IS NOT NULL '
                            'AND first < %s AND "end" > %s ORDER BY first', (end, start))
        for first, part_end, stem in parts:
            wanted = list(range(max(start, first) // TILE_LEAVES, (min(end, part_end) - 1) // TILE_LEAVES + 1))
            try:
                roots = {int(i): bytes(r) for i, r in self._query("SELECT idx, root FROM tiles WHERE idx = ANY(%s)",
                                                                  (wanted,))}
                for tile in wanted:
                    rows = self._archived_tile(stem, tile, tile - first // TILE_LEAVES, roots.get(tile))
                    out += [Entry(index=idx, device_id=device_id, seq=seq, arrived_at=arrived, raw=raw)
                            for idx, seq, arrived, device_id, _, _, raw in rows
                            if start <= idx < end and idx not in held]
            except (OSError, StoreError) as exc:
                raise _unavailable(stem, f"log entries {start} to {end - 1}", exc) from None
        return out

    @staticmethod
    def _archived_tile(stem: str, tile: int, at: int,
                       root: bytes | None) -> list[tuple[int, int, int, bytes, bytes, bytes, bytes]]:
        """Tile `tile` of the log, the `at`-th of the archive `stem`, checked against `root`, the tile root the hub
        keeps (the one its checkpoints cover)."""
        rows = read_tile(stem, at)
        if ([r[0] for r in rows] != list(range(tile * TILE_LEAVES, (tile + 1) * TILE_LEAVES)) or root is None
                or MerkleTree([leaf_hash(r[6]) for r in rows]).root() != root):
            raise StoreError(f"archive {stem}: leaves {tile * TILE_LEAVES} to {(tile + 1) * TILE_LEAVES - 1} do "
                             "not give the tile root the hub keeps")
        return rows

    def locate(self, record_id: bytes) -> int | None:
        row = self._query_one("SELECT idx FROM records WHERE record_id = %s", (record_id,))
        if row is not None:
            return int(row[0])
        # An archived record keeps its place in the tree: its index is in its archive's id file, and a proof
        # of it reads the archive's leaves (leaf_hashes).
        for stem, in self._query("SELECT archived FROM partitions WHERE archived IS NOT NULL ORDER BY first"):
            try:
                found = search_ids(stem + IDS_SUFFIX, record_id)
            except OSError as exc:
                log.error("archive %s cannot be read (%s): its records cannot be located", stem, exc)
                continue
            if found is not None:
                return found
        return None

    def size(self) -> int:
        with self._tx():
            return self._size()

    def _size(self, conn: psycopg.Connection[Any] | None = None) -> int:
        # The log only grows, so a size seen before bounds the search to the last partitions instead of
        # asking every partition's index for its largest index. A read beside a commit may see less than the
        # commit did: the mark only goes up.
        seen = self._seen
        row = (conn or self._conn).execute("SELECT coalesce(max(idx) + 1, %s) FROM records WHERE idx >= %s",
                                           (seen, seen)).fetchone()
        size = int(row[0]) if row else seen
        self._seen = max(self._seen, size)
        return size

    def entries(self, start: int, end: int) -> list[Entry]:
        rows = self._query(ENTRIES_SQL, (start, end))
        found = [(Entry(index=int(i), device_id=bytes(d), seq=int(s), arrived_at=int(a), raw=bytes(raw)),
                  hashlib.sha256(bytes(raw)).digest() == bytes(rid)) for i, d, s, a, raw, rid in rows]
        if len(rows) < end - start:  # archived entries come from their archives, checked there
            found += [(e, True) for e in self._archived_entries(start, end, {e.index for e, _ in found})]
            found.sort(key=lambda pair: pair[0].index)
        out = [e for e, _ in found]
        intact_prefix(self, [(e.device_id, e.seq, intact) for e, intact in found], out)
        return out

    def entries_at(self, indices: Sequence[int]) -> list[Entry]:
        if indices and 2 * len(indices) >= indices[-1] + 1 - indices[0]:
            # Half or more of the span: one range scan and a filter here beat a probe per index (measured: 60,000
            # entries of one span in 0.28 s against 0.33–0.39 s).
            wanted = set(indices)
            rows = [row for row in self._query(ENTRIES_SQL, (indices[0], indices[-1] + 1)) if row[0] in wanted]
        else:
            rows = self._query(ENTRIES_AT_SQL, (list(indices),))
        found = [(Entry(index=int(i), device_id=bytes(d), seq=int(s), arrived_at=int(a), raw=bytes(raw)),
                  hashlib.sha256(bytes(raw)).digest() == bytes(rid)) for i, d, s, a, raw, rid in rows]
        if len(rows) < len(indices):  # archived entries come from their archives, a tile at a time
            held = {e.index for e, _ in found}
            missing = {i for i in indices if i not in held}
            for tile in sorted({i // TILE_LEAVES for i in missing}):
                found += [(e, True) for e in self._archived_entries(tile * TILE_LEAVES, (tile + 1) * TILE_LEAVES, held)
                          if e.index in missing]
            found.sort(key=lambda pair: pair[0].index)
        out = [e for e, _ in found]
        intact_prefix(self, [(e.device_id, e.seq, intact) for e, intact in found], out)
        return out

    def kind_positions(self, kind: str | None, start: int, end: int, limit: int) -> list[int]:
        code = KIND_CODES[kind]
        with self._tx():
            # Below `kind_index_from` the index is not complete yet: those records' kinds are read from them.
            behind = _kinds_from(self._conn)
            out = self._peeked_positions(code, start, min(end, behind), limit) if start < behind else []
            start = max(start, behind)
            # Each run found reaches into the range, so `limit` runs hold at least `limit` indices when there are
            # that many.
            runs = self._conn.execute("SELECT first, last FROM kind_index WHERE kind = %s AND last >= %s AND "
                                      "first < %s ORDER BY last LIMIT %s",
                                      (code, start, end, limit - len(out))).fetchall() if len(out) < limit else []
        for first, last in runs:
            begin = max(int(first), start)
            out.extend(range(begin, min(int(last) + 1, end, begin + limit - len(out))))
        return out

    def _peeked_positions(self, code: int, start: int, end: int, limit: int) -> list[int]:
        """Up to `limit` indices from `start` up to `end` whose records are of kind `code`, read from the records."""
        out: list[int] = []
        while len(out) < limit and (page := self._conn.execute(
                "SELECT idx, raw, record_id FROM records WHERE idx >= %s AND idx < %s ORDER BY idx LIMIT %s",
                (start, end, _PAGE)).fetchall()):
            start = int(page[-1][0]) + 1
            out += [i for c, i in kind_index_of_log(_checked_rows(page)) if c == code][:limit - len(out)]
        return out

    def damaged_in(self, start: int, end: int) -> list[tuple[bytes, int]]:
        rows = self._query("SELECT device_id, seq, record_id, leaf, raw FROM records "
                           "WHERE idx >= %s AND idx < %s ORDER BY idx", (start, end))
        found = []
        for device_id, seq, record_id, leaf, raw in rows:
            data = bytes(raw)
            if hashlib.sha256(data).digest() != bytes(record_id) or leaf_hash(data) != bytes(leaf):
                found.append((bytes(device_id), int(seq)))
        return found

    def mark_damaged(self, device_id: bytes, seq: int) -> bool:
        with self._tx():
            cur = self._conn.execute("INSERT INTO damaged VALUES (%s, %s) ON CONFLICT DO NOTHING", (device_id, seq))
            return cur.rowcount == 1

    def damaged(self) -> dict[bytes, list[int]]:
        out: dict[bytes, list[int]] = {}
        for device_id, seq in self._query("SELECT device_id, seq FROM damaged ORDER BY device_id, seq"):
            out.setdefault(bytes(device_id), []).append(int(seq))
        return out

    def repair(self, device_id: bytes, seq: int, raw: bytes) -> bool:
        with self._tx():
            row = self._conn.execute("SELECT record_id, leaf FROM records WHERE device_id = %s AND seq = %s",
                                     (device_id, seq)).fetchone()
            if row is None or hashlib.sha256(raw).digest() != bytes(row[0]) or leaf_hash(raw) != bytes(row[1]):
                return False
            self._conn.execute("UPDATE records SET raw = %s WHERE device_id = %s AND seq = %s", (raw, device_id, seq))
            self._conn.execute("DELETE FROM damaged WHERE device_id = %s AND seq = %s", (device_id, seq))
        return True

    def leaf_hashes(self, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        # A page at a time, each its own short query: a long scan neither holds every row in memory at once
        # nor keeps a transaction open on the connection that ingest shares. Leaves of an archived partition
        # are read from its archive's leaf file (the rows left in the partition are the kept log's only).
        while end is None or start < end:
            stop = start + _PAGE if end is None else min(end, start + _PAGE)
            rows = self._query(LEAVES_SQL, (start, stop))
            for idx, leaf in rows:
                if idx != start:
                    break
                start += 1
                yield bytes(leaf)
            if start == stop:
                continue
            archived = self._archived_leaves(start, stop)
            if not archived:
                return
            start += len(archived)
            yield from archived

    def _archived_leaves(self, start: int, stop: int) -> list[bytes]:
        row = self._query_one('SELECT first, "end", archived FROM partitions WHERE first <= %s AND "end" > %s '
                              "AND archived IS NOT NULL", (start, start))
        if row is None:
            return []
        first, end, stem = int(row[0]), int(row[1]), str(row[2])
        count = min(stop, end) - start
        try:
            with open(stem + LEAVES_SUFFIX, "rb") as fh:
                fh.seek((start - first) * HASH_SIZE)
                data = fh.read(count * HASH_SIZE)
        except OSError as exc:
            log.error("leaves %d to %d are archived in %s, which cannot be read (%s): proofs that need them fail "
                      "until the archive is back at that path", first, end - 1, stem, exc)
            return []
        return [data[i:i + HASH_SIZE] for i in range(0, len(data) - HASH_SIZE + 1, HASH_SIZE)]

    def put_tiles(self, first: int, roots: Sequence[bytes]) -> None:
        with self._tx(), self._conn.cursor() as cur:
            cur.executemany("INSERT INTO tiles (idx, root) VALUES (%s, %s) ON CONFLICT (idx) DO UPDATE "
                            "SET root = excluded.root", list(enumerate(roots, first)))

    def tiles(self) -> Iterator[bytes]:
        start = 0
        while True:
            rows = self._query("SELECT idx, root FROM tiles WHERE idx >= %s ORDER BY idx LIMIT %s", (start, _PAGE))
            for idx, root in rows:
                if idx != start:
                    return
                start += 1
                yield bytes(root)
            if len(rows) < _PAGE:
                return

    def put_checkpoint(self, tree_size: int, time: int, raw: bytes) -> None:
        with self._tx():
            self._conn.execute("INSERT INTO checkpoints VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                               (tree_size, time, raw))

    def checkpoints(self) -> list[bytes]:
        return [bytes(r[0]) for r in self._query(
            "SELECT raw FROM checkpoints ORDER BY tree_size, time")]

    def put_fork(self, device_id: bytes, evidence: bytes) -> None:
        with self._tx():
            self._conn.execute("INSERT INTO forks VALUES (%s, %s) ON CONFLICT DO NOTHING", (device_id, evidence))

    def forks(self) -> list[tuple[bytes, bytes]]:
        return [(bytes(d), bytes(e)) for d, e in self._query(
            "SELECT device_id, evidence FROM forks ORDER BY device_id")]

    def put_region_checkpoint(self, hub_id: bytes, tree_size: int, raw: bytes) -> None:
        with self._tx():
            self._conn.execute("INSERT INTO region_checkpoints VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                               (hub_id, tree_size, raw))

    def region_checkpoints(self, hub_id: bytes) -> list[bytes]:
        return [bytes(r[0]) for r in self._query(
            "SELECT raw FROM region_checkpoints WHERE hub_id = %s ORDER BY tree_size", (hub_id,))]

    def put_split_view(self, hub_id: bytes, evidence: bytes) -> None:
        with self._tx():
            self._conn.execute("INSERT INTO split_views VALUES (%s, %s) ON CONFLICT DO NOTHING", (hub_id, evidence))

    def split_views(self) -> list[tuple[bytes, bytes]]:
        return [(bytes(h), bytes(e)) for h, e in self._query(
            "SELECT hub_id, evidence FROM split_views ORDER BY hub_id")]

    def resume_region(self, hub_id: bytes, tree_size: int, raw: bytes, decision: bytes) -> None:
        with self._tx():
            self._conn.execute("DELETE FROM region_checkpoints WHERE hub_id = %s", (hub_id,))
            self._conn.execute("INSERT INTO region_checkpoints VALUES (%s, %s, %s)", (hub_id, tree_size, raw))
            self._conn.execute("INSERT INTO region_resumes (hub_id, decision) VALUES (%s, %s)", (hub_id, decision))

    def region_resumes(self) -> list[tuple[bytes, bytes]]:
        return [(bytes(h), bytes(d)) for h, d in self._query("SELECT hub_id, decision FROM region_resumes ORDER BY n")]

    def bump(self, counter: str, by: int = 1) -> None:
        with self._tx():
            self._conn.execute("INSERT INTO counters VALUES (%s, %s) ON CONFLICT (name) "
                               "DO UPDATE SET value = counters.value + excluded.value", (counter, by))

    def counters(self) -> dict[str, int]:
        return {str(n): int(v) for n, v in self._query("SELECT name, value FROM counters")}

    def partitions(self) -> list[Partition]:
        """The log's partitions in index order. A full partition's arrival times are read once and recorded."""
        size = self.size()
        with self._tx():
            rows = self._conn.execute('SELECT first, "end", first_arrived, last_arrived, archived FROM partitions '
                                      "ORDER BY first").fetchall()
            out = []
            for first, end, first_arrived, last_arrived, archived in rows:
                if first_arrived is None and end <= size:
                    name = _partition_name(first)
                    first_arrived, last_arrived = self._conn.execute(
                        f"SELECT min(arrived_at), max(arrived_at) FROM {name}").fetchone() or (None, None)
                    self._conn.execute("UPDATE partitions SET first_arrived = %s, last_arrived = %s WHERE first = %s",
                                       (first_arrived, last_arrived, first))
                out.append(Partition(name=_partition_name(first), first=int(first), end=int(end),
                                     first_arrived=first_arrived, last_arrived=last_arrived, archived=archived))
        return out

    def archive(self, before: int, directory: str | os.PathLike[str], *, keep: Collection[bytes] = (),
                dry_run: bool = False) -> list[Partition]:
        """Move each full partition whose records all arrived before `before` (hub time) into `directory`,
        then out of the database; return the partitions archived (or that would be, with `dry_run`).

        Each archive is the partition's rows (records_<first>-<end>.csv.gz, PostgreSQL's COPY CSV: idx, seq,
        arrived_at, device_id, record_id, leaf, raw) and their leaf hashes (.leaves, 32 bytes each), read
        back and checked before anything is dropped: every record hashes to its id and leaf, and the leaves
        give the tile roots the store keeps. The tile roots stay, so the tree, its checkpoints and
        consistency proofs do not change; proofs that need an archived tile's leaves read the .leaves file.
        The rows of the logs in `keep` (the hub's own log, which the hub reads whole at start) stay in the
        database."""
        size = self.size()
        kept_tiles = sum(1 for _ in self.tiles())
        chosen = [p for p in self.partitions()
                  if p.archived is None and p.end <= size and p.end <= kept_tiles * TILE_LEAVES
                  and p.last_arrived is not None and p.last_arrived < before]
        if dry_run or not chosen:
            return chosen
        os.makedirs(directory, exist_ok=True)
        done = []
        for part in chosen:
            stem = os.path.abspath(os.path.join(os.fspath(directory), f"records_{part.first}-{part.end}"))
            self._write_rows(part, stem + ROWS_SUFFIX + ".part", stem + TILES_SUFFIX + ".part")
            roots = self._tile_roots(part)
            with open(stem + LEAVES_SUFFIX + ".part", "wb") as fh:
                fold, seq_fold = check_archive(stem + ROWS_SUFFIX + ".part", part.first, part.end, roots, fh)
                _sync(fh)
            if self._write_ids(part, stem + IDS_SUFFIX + ".part") != fold:
                raise StoreError(f"archive {stem}: the id file does not hold the rows' ids and indexes; nothing "
                                 "was dropped", hint="run the archive again")
            if self._write_seqs(part.name, stem + SEQS_SUFFIX + ".part") != seq_fold:
                raise StoreError(f"archive {stem}: the seq file does not hold the rows' devices, seqs and indexes; "
                                 "nothing was dropped", hint="run the archive again")
            for suffix in (ROWS_SUFFIX, TILES_SUFFIX, LEAVES_SUFFIX, IDS_SUFFIX, SEQS_SUFFIX):
                os.replace(stem + suffix + ".part", stem + suffix)
            sync_dir(Path(stem).parent)
            self._detach(part, stem, keep)
            done.append(replace(part, archived=stem))
        return done

    def _tile_roots(self, part: Partition) -> list[bytes]:
        """The tile roots the hub keeps for a partition's indexes: what its archive must give."""
        return [bytes(r[0]) for r in self._query("SELECT root FROM tiles WHERE idx >= %s AND idx < %s ORDER BY idx",
                                                 (part.first // TILE_LEAVES, part.end // TILE_LEAVES))]

    def index_archives(self, directory: str | os.PathLike[str] | None = None) -> list[ArchiveIndexing]:
        """Give each archive that has no tile and seq files (those in `directory`, or every one the store
        records) the files `archive` writes today, so its records are served again.

        The rows are checked against the tile roots the hub keeps before anything is written; then written
        again a gzip member per tile (`write_tiled_rows`, the same bytes `archive` would write) with the seq
        file beside them (`_write_seqs`, sorted by PostgreSQL in a temporary table), read back and checked
        again, and only then renamed into place, the tile file last, and their directory synced. An archive
        that is missing or does not check is reported and left as it was."""
        where = None if directory is None else os.path.abspath(directory)
        return [self._index_archive(p) for p in self.partitions()
                if p.archived is not None and (where is None or os.path.dirname(p.archived) == where)]

    def _index_archive(self, part: Partition) -> ArchiveIndexing:
        stem = str(part.archived)
        if os.path.exists(stem + TILES_SUFFIX) and os.path.exists(stem + SEQS_SUFFIX):
            return ArchiveIndexing(archive=stem, outcome="already indexed", records=part.end - part.first)
        written = [stem + suffix + ".part" for suffix in (ROWS_SUFFIX, SEQS_SUFFIX, TILES_SUFFIX)]
        try:
            checked_folds = check_archive(stem + ROWS_SUFFIX, part.first, part.end, self._tile_roots(part))
            seq_fold = self._write_tiles_and_seqs(stem, *written)
            if check_archive(written[0], part.first, part.end, self._tile_roots(part)) != checked_folds \
                    or seq_fold != checked_folds[1]:
                raise ArchiveMismatch(f"archive {stem}{ROWS_SUFFIX}: its rows changed while they were indexed; "
                                      "nothing was written", tile=None, hint="run the index again")
        except BaseException as exc:
            for path in written:  # whatever stopped it, nothing of it stays beside the archive
                with contextlib.suppress(FileNotFoundError):
                    os.remove(path)
            return ArchiveIndexing.refused(stem, _index_refusal(stem, exc))
        for path in written:
            os.replace(path, path.removesuffix(".part"))
        sync_dir(Path(stem).parent)
        return ArchiveIndexing(archive=stem, outcome="indexed", records=part.end - part.first)

    def _write_tiles_and_seqs(self, stem: str, rows_path: str, seqs_path: str, tiles_path: str) -> int:
        """An archive's rows written again a gzip member per tile, and its seq file from the same rows; return
        the seq file's fold (see `_fold`)."""
        with self._tx(), self._conn.cursor() as cur:
            cur.execute("CREATE TEMP TABLE IF NOT EXISTS archive_seqs (device_id bytea, seq bigint, idx bigint)")
            cur.execute("TRUNCATE archive_seqs")
            with gzip.open(stem + ROWS_SUFFIX, "rb") as rows, \
                    cur.copy("COPY archive_seqs FROM STDIN (FORMAT csv)") as copy:
                def noted(lines: Iterator[bytes]) -> Iterator[bytes]:
                    # The rows' device, seq and index go to PostgreSQL to be sorted, in CSV as they stand.
                    for line in lines:
                        idx, seq, _, device_id, _ = line.split(b",", 4)
                        copy.write(b"%s,%s,%s\n" % (device_id, seq, idx))
                        yield line

                write_tiled_rows(noted(csv_lines(iter(lambda: rows.read(1 << 20), b""))), rows_path, tiles_path,
                                 f"archive {stem}")
        try:
            return self._write_seqs("archive_seqs", seqs_path)
        finally:
            with self._tx():
                self._conn.execute("DROP TABLE IF EXISTS archive_seqs")

    def _write_rows(self, part: Partition, path: str, tiles_path: str) -> None:
        """The partition's rows, streamed from PostgreSQL's COPY into `write_tiled_rows`."""
        with self._tx(), self._conn.cursor() as cur, cur.copy(
                f"COPY (SELECT {_LOG_COLUMNS} FROM {part.name} ORDER BY idx) TO STDOUT (FORMAT csv)") as copy:
            write_tiled_rows(csv_lines(bytes(chunk) for chunk in copy), path, tiles_path, f"partition {part.name}")

    def _write_seqs(self, table: str, path: str) -> int:
        """The (device, seq, index) rows of `table` (a partition, or an old archive's rows read back) sorted by
        device and seq, for `log_range` after the rows are gone; streamed like the id file."""
        fold = 0
        with self._tx(), open(path, "wb") as fh, self._conn.cursor(name=f"seqs_{table}") as cur:
            cur.itersize = 10_000
            cur.execute(f"SELECT device_id, seq, idx FROM {table} ORDER BY device_id, seq")
            for device_id, seq, idx in cur:
                entry = _SEQ_ENTRY.pack(bytes(device_id), seq, idx)
                fh.write(entry)
                fold ^= _fold(entry, int(idx))
            _sync(fh)
        return fold

    def _write_ids(self, part: Partition, path: str) -> int:
        """The partition's (record id, index) pairs sorted by id, for `locate` after its rows are gone; PostgreSQL
        sorts and a server-side cursor streams them, so memory does not grow with the partition."""
        fold, last = 0, b""
        with self._tx(), open(path, "wb") as fh, \
                self._conn.cursor(name=f"ids_{part.first}") as cur:
            cur.itersize = 10_000
            cur.execute(f"SELECT record_id, idx FROM {part.name} ORDER BY record_id")
            for record_id, idx in cur:
                rid = bytes(record_id)
                if rid <= last:
                    raise StoreError(f"partition {part.name}: record id {rid.hex()} is not after {last.hex()}")
                fh.write(rid + _U64.pack(idx))
                fold ^= _fold(rid, int(idx))
                last = rid
            _sync(fh)
        return fold

    def _detach(self, part: Partition, stem: str, keep: Collection[bytes]) -> None:
        """Swap an archived partition for one holding only the kept logs' rows, in one transaction."""
        old = f"{part.name}_archived"
        with self._tx():
            self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_ID,))
            self._conn.execute(f"ALTER TABLE records DETACH PARTITION {part.name}")
            self._conn.execute(f"ALTER TABLE {part.name} RENAME TO {old}")
            self._conn.execute(f"CREATE TABLE {part.name} (LIKE records INCLUDING DEFAULTS)")
            self._conn.execute(f"INSERT INTO {part.name} SELECT * FROM {old} WHERE device_id = ANY(%s) ORDER BY idx",
                               (list(keep),))
            self._conn.execute(f"ALTER TABLE records ATTACH PARTITION {part.name} "
                               f"FOR VALUES FROM ({part.first}) TO ({part.end})")
            self._conn.execute(f"DROP TABLE {old}")
            self._conn.execute("UPDATE partitions SET archived = %s WHERE first = %s", (stem, part.first))

    def drop(self) -> None:
        """Remove this store's schema (tests and decommissioning)."""
        with self._tx():
            self._conn.execute(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE")

    def close(self) -> None:
        self._stop.set()
        if self._indexer is not None:
            self._indexer.join()
        with self._commit_lock:
            if self._committer is not None:
                self._committer.close()
        self._conn.close()


def _kinds_from(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT value FROM meta WHERE key = 'kind_index_from'").fetchone()
    return int(row[0]) if row else 0


def _figures_from(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT value FROM meta WHERE key = 'figures_from'").fetchone()
    return int(row[0]) if row else 0


def _count_chunk(conn: psycopg.Connection[Any], chunk: int) -> int:
    """In the caller's transaction: count up to `chunk` records below `figures_from` into the chain's figures and
    lower it past them; returns the new `figures_from`."""
    def count(cur: psycopg.Cursor[Any], page: list[tuple[Any, ...]]) -> None:
        PgHubStore._put_older_activity(cur, *activity_of_log((bytes(d), int(a), bytes(raw)) for d, a, raw in page))

    return _below_mark(conn, "figures_from", "device_id, arrived_at, raw", chunk, count)


def _checked_rows(page: Iterable[tuple[Any, ...]]) -> list[tuple[int, bytes, bool]]:
    """(index, record bytes, whether they are intact) of rows (idx, raw, record_id) of the log."""
    return [(int(i), bytes(raw), hashlib.sha256(raw).digest() == bytes(rid)) for i, raw, rid in page]


def _index_chunk(conn: psycopg.Connection[Any], chunk: int) -> int:
    """In the caller's transaction: index up to `chunk` records below `kind_index_from` and lower it past them;
    returns the new `kind_index_from`."""
    def index(cur: psycopg.Cursor[Any], page: list[tuple[Any, ...]]) -> None:
        PgHubStore._put_kind_runs(cur, kind_runs(kind_index_of_log(_checked_rows(page))))

    return _below_mark(conn, "kind_index_from", "idx, raw, record_id", chunk, index)


def _below_mark(conn: psycopg.Connection[Any], mark: str, columns: str, chunk: int,
                apply: Callable[[psycopg.Cursor[Any], list[tuple[Any, ...]]], None]) -> int:
    """One step of a background pass over the log's older records, newest first: `apply` the up to `chunk`
    records just below the meta row `mark` (their `columns`, in log order) and lower the mark past them, in the
    caller's transaction. The row is locked first, so two passes never take the same records; returns the new
    mark (0: done, the row deleted)."""
    row = conn.execute(f"SELECT value FROM meta WHERE key = '{mark}' FOR UPDATE").fetchone()
    behind = int(row[0]) if row else 0
    if not behind:
        return 0
    start = max(0, behind - chunk)
    page = conn.execute(f"SELECT {columns} FROM records WHERE idx >= %s AND idx < %s ORDER BY idx",
                        (start, behind)).fetchall()
    with conn.cursor() as cur:
        apply(cur, page)
    if start:
        conn.execute(f"UPDATE meta SET value = %s WHERE key = '{mark}'", (str(start),))
    else:
        conn.execute(f"DELETE FROM meta WHERE key = '{mark}'")
    return start


class PgAggregates:
    """The read models' day aggregates (hub/aggregates.py) in a PgHubStore's schema, on a connection of their
    own: a national day's write never holds the connection the hub's writer commits records on. Their tables
    are made by MIGRATIONS, so the hub's store is opened first."""

    def __init__(self, dsn: str, *, schema: str = "jejak") -> None:
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", schema):
            raise StoreError(f"schema name {schema!r}: expected lowercase letters, digits and _")
        self.schema = schema
        self._lock = threading.Lock()
        self._conn = connect(dsn)
        with self._conn.transaction():
            self._conn.execute(f"SET search_path TO {schema}")
            self._conn.execute("SET jit = off")

    def namespace(self, spec: Namespace) -> PgDayAggregates:
        return PgDayAggregates(self, spec)

    def alerts(self) -> PgKeptAlerts:
        return PgKeptAlerts(self)

    def journal(self, name: str) -> PgJournal:
        """The hub's journal `name` (quarantine/decisions.jsonl, bridges/legacy-devices.json,
        device-clocks.json), kept in the database, not in data_dir."""
        return PgJournal(self, name)

    def imports(self) -> PgImports:
        """The price files operators imported, kept in the database, not in data_dir."""
        return PgImports(self)

    @contextlib.contextmanager
    def tx(self) -> Iterator[psycopg.Connection[Any]]:
        """One transaction on the aggregates' connection; PostgreSQL's errors become StoreError."""
        try:
            with self._lock, self._conn.transaction():
                yield self._conn
        except psycopg.Error as exc:
            raise StoreError(f"day aggregates in schema {self.schema}: {exc}",
                             hint="the days are answered from the records the read models hold") from None

    def close(self) -> None:
        self._conn.close()


class PgKeptAlerts:
    """KeptAlerts in the table `alerts` of PgAggregates' schema: a row per alert, with its raised and resolved
    times as columns beside the alert as listed."""

    def __init__(self, store: PgAggregates) -> None:
        self._store = store
        self._where = f"the alerts kept in schema {store.schema}"

    def put(self, alerts: Sequence[KeptAlert]) -> None:
        if not alerts:
            return
        with self._store.tx() as conn, conn.cursor() as cur:
            cur.executemany("INSERT INTO alerts (id, seq, raised_at, resolved_at, alert) VALUES (%s, %s, %s, %s, %s) "
                            "ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, raised_at = excluded.raised_at, "
                            "resolved_at = excluded.resolved_at, alert = excluded.alert",
                            [(a.id, a.seq, a.alert["time"], a.alert.get("resolved_at"), Jsonb(a.alert))
                             for a in alerts])

    def delete(self, ids: Iterable[str]) -> None:
        gone = list(ids)
        if gone:
            with self._store.tx() as conn:
                conn.execute("DELETE FROM alerts WHERE id = ANY(%s)", (gone,))

    def journal(self, name: str) -> PgJournal:
        """The alerts' journal `name` (told.jsonl, redelivery.jsonl), kept in the database with them."""
        return PgJournal(self._store, name)

    def read(self) -> list[KeptAlert]:
        with self._store.tx() as conn:
            rows = conn.execute("SELECT id, seq, alert FROM alerts ORDER BY seq").fetchall()
        out = []
        for alert_id, seq, alert in rows:
            try:
                out.append(KeptAlert(seq=int(seq), alert=alert))
            except ValueError as exc:
                log.warning("%s: the alert %r is not one (%s); it is left out", self._where, alert_id, exc)
        return out


class PgJournal:
    """A journal (hub/journal.py `Lines`) as the rows of table `journal_lines` named `name`, on PgAggregates'
    connection; each append and rewrite is one transaction."""

    def __init__(self, store: PgAggregates, name: str) -> None:
        self._store = store
        self.name = name

    @property
    def where(self) -> str:
        return f"journal {self.name!r} in schema {self._store.schema}"

    def read(self) -> list[dict[str, Any]]:
        return [item for _, item in self.read_numbered()]

    def read_numbered(self) -> list[tuple[int, dict[str, Any]]]:
        with self._store.tx() as conn:
            rows = conn.execute("SELECT line FROM journal_lines WHERE journal = %s ORDER BY n", (self.name,)).fetchall()
        out = []
        for n, (item,) in enumerate(rows, 1):
            if not isinstance(item, dict):
                log.warning("%s:%d: not a JSON object; skipped", self.where, n)
                continue
            out.append((n, item))
        return out

    def append(self, *items: dict[str, Any]) -> None:
        if items:
            with self._store.tx() as conn, conn.cursor() as cur:
                cur.executemany("INSERT INTO journal_lines (journal, line) VALUES (%s, %s)",
                                [(self.name, Jsonb(i)) for i in items])

    def rewrite(self, items: Iterable[dict[str, Any]]) -> None:
        lines = [(self.name, Jsonb(i)) for i in items]
        with self._store.tx() as conn, conn.cursor() as cur:
            cur.execute("DELETE FROM journal_lines WHERE journal = %s", (self.name,))
            cur.executemany("INSERT INTO journal_lines (journal, line) VALUES (%s, %s)", lines)


class PgImports:
    """Imported files in the tables `imported_files` (its SHA-256 and what it was read with) and `imported_parts`
    (its bytes, in parts of IMPORT_PART bytes, each zlib-compressed), on PgAggregates' connection: a file of up to
    a gigabyte is written and read a part at a time, never held whole."""

    def __init__(self, store: PgAggregates) -> None:
        self._store = store

    @property
    def where(self) -> str:
        return f"the imported files kept in schema {self._store.schema}"

    def kept(self) -> list[tuple[str, dict[str, Any]]]:
        """(SHA-256 in hex, what it was read with) of each file kept, by SHA-256 (the order data_dir's files
        were imported in at start)."""
        with self._store.tx() as conn:
            return [(sha, meta) for sha, meta in
                    conn.execute("SELECT sha256, meta FROM imported_files ORDER BY sha256").fetchall()]

    def keep(self, sha256: str, meta: dict[str, Any], path: Path) -> None:
        """Keep the file at `path` under `sha256` (again: its parts are replaced), in one transaction."""
        with self._store.tx() as conn, conn.cursor() as cur, open(path, "rb") as fh:
            cur.execute("INSERT INTO imported_files (sha256, meta) VALUES (%s, %s) ON CONFLICT (sha256) DO UPDATE "
                        "SET meta = excluded.meta", (sha256, Jsonb(meta)))
            cur.execute("DELETE FROM imported_parts WHERE sha256 = %s", (sha256,))
            part = 0
            while chunk := fh.read(IMPORT_PART):
                cur.execute("INSERT INTO imported_parts (sha256, part, data) VALUES (%s, %s, %s)",
                            (sha256, part, zlib.compress(chunk, 1)))
                part += 1

    def write_to(self, sha256: str, out: BinaryIO) -> None:
        """The kept file's bytes into `out`, a part at a time; StoreError if a part does not decompress."""
        with self._store.tx() as conn, conn.cursor(name="imported_parts") as cur:
            cur.execute("SELECT data FROM imported_parts WHERE sha256 = %s ORDER BY part", (sha256,))
            for (data,) in cur:
                try:
                    out.write(zlib.decompress(data))
                except zlib.error as exc:
                    raise StoreError(f"{self.where}: the file {sha256[:16]}... is damaged ({exc})",
                                     hint="import the file again") from None


class PgDayAggregates:
    """One namespace of PgAggregates: a row of `days_table` per date and a row of `rows_table` per subject."""

    def __init__(self, store: PgAggregates, spec: Namespace) -> None:
        self.spec = spec
        self._store = store
        self._figures = ", ".join(c for c, _ in spec.figures)
        self._rows = ", ".join(c for c, _ in spec.rows)
        self._where = f"day aggregates {spec.name!r} in schema {store.schema}"

    def put(self, days: Sequence[DayAggregate], *, delete: Iterable[str] = ()) -> None:
        spec = self.spec
        gone = sorted({*delete, *(d.date for d in days)})
        marks = ", ".join(["%s::date"] + ["%s"] * (len(spec.figures) + 2))
        with self._store.tx() as conn, conn.cursor() as cur:
            cur.execute(f"DELETE FROM {spec.rows_table} WHERE date = ANY(%s::date[])", (gone,))
            cur.execute(f"DELETE FROM {spec.days_table} WHERE date = ANY(%s::date[])", (gone,))
            if not days:
                return
            cur.executemany(f"INSERT INTO {spec.days_table} (date, {self._figures}, summary, digest) "
                            f"VALUES ({marks})",
                            [(d.date, *d.figures, d.summary, d.digest()) for d in days])
            with cur.copy(f"COPY {spec.rows_table} (date, {self._rows}) FROM STDIN") as copy:
                copy.set_types(["date", *(t for _, t in spec.rows)])
                for d in days:
                    day = datetime.date.fromisoformat(d.date)
                    for row in d.rows:
                        copy.write_row((day, *row))

    def get(self, date: str) -> DayAggregate | None:
        spec = self.spec
        with self._store.tx() as conn:
            found = conn.execute(f"SELECT {self._figures}, summary, digest FROM {spec.days_table} "
                                 "WHERE date = %s::date", (date,)).fetchone()
            if found is None:
                return None
            key = spec.rows[0][0]
            rows = conn.execute(f"SELECT {self._rows} FROM {spec.rows_table} WHERE date = %s::date "
                                f'ORDER BY {key} COLLATE "C"', (date,)).fetchall()
        *figures, summary, digest = found
        try:
            day = DayAggregate(date=date, figures=tuple(figures), summary=bytes(summary), rows=tuple(map(tuple, rows)))
        except ValueError as exc:
            raise DamagedAggregate(f"{self._where}: the stored day {date} is not a day ({exc})",
                                   hint="it is computed again from the records the read models hold") from None
        return checked(day, bytes(digest), self._where)

    def delete(self, dates: Iterable[str]) -> None:
        self.put((), delete=dates)

    def dates(self) -> list[str]:
        with self._store.tx() as conn:
            return [d.isoformat() for (d,) in conn.execute(f"SELECT date FROM {self.spec.days_table} ORDER BY date")]
