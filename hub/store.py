"""The hub's storage contract and its embedded LMDB implementation."""

from __future__ import annotations

import hashlib
import logging
import os
import struct
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from itertools import chain, islice
from operator import attrgetter
from types import TracebackType
from typing import Any, Protocol

import cbor2
import lmdb

from ledger import KINDS, ChainState, Record
from ledger.errors import CodedError, LedgerError
from ledger.merkle import leaf_hash
from ledger.record import kind_and_time

log = logging.getLogger("jejak.hub.store")

# 2: each device's last arrival and record time, and records by kind (`activity`, `kinds`);
# 3: the log's indices by record kind (`kind_index`). A store upgraded from either notes in `meta` from which
# log index on what it adds is complete (`figures_from`, `kind_index_from`); a background pass fills in the rest.
LAYOUT_VERSION = 3
STATUSES = ("pending", "active", "revoked", "forked")


class StoreError(CodedError):
    """The hub's store failed; what it had acknowledged stays."""

    code = "STORE_ERROR"
    coap = "5.00"
    http = 500
    exit_code = 33


class StoreFull(StoreError):
    """The store has no room for more; nothing of the failed write was kept."""

    code = "STORE_FULL"
    coap = "5.03"
    http = 507
    exit_code = 35
    retry_after_s = 60


class DamagedRecord(StoreError):
    """A stored record whose bytes no longer hash to its id: it is not served, and its device waits for a good
    copy from an edge or a peer."""

    code = "RECORD_DAMAGED"
    coap = "5.03"
    http = 503
    exit_code = 52
    retry_after_s = 300


class ArchiveUnavailable(StoreError):
    """Records asked for are in an archive of the PostgreSQL store's log that cannot be read at its path, or whose
    rows no longer give the tile roots the hub keeps: they are not served until the archive is back."""

    code = "ARCHIVE_UNAVAILABLE"
    coap = "5.03"
    http = 503
    exit_code = 56
    retry_after_s = 3600


class ArchiveMismatch(StoreError):
    """An archive file's rows do not give the tile roots the hub keeps (or do not hash to their ids and
    leaves): it is neither written as an archive nor indexed for serving. `tile` is the first tile of the log
    that does not check, None when the rows are cut short or out of order."""

    code = "ARCHIVE_MISMATCH"
    coap = "5.00"
    http = 500
    exit_code = 58

    def __init__(self, message: str, *, tile: int | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint, where=None if tile is None else f"log tile {tile}")
        self.tile = tile


RESTORE_HINT = ("the hub takes the good copy back from the device's edge at its next sync (or from a peer hub); "
                "`jejak hub verify --config HUB.toml` checks the whole store")


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceInfo:
    """A device the hub knows: its genesis key, where it stands and whether its records are accepted."""

    device_id: bytes
    pubkey: bytes
    site: str
    role: str
    status: str = "pending"
    revoked_from: int | None = None
    enrolled_at: int = 0
    name: str = ""
    # The address its enrollment request came from ("" if made on the hub itself, or stored before sources were
    # kept): how an operator tells a flood of requests from one host from the devices of a kitchen.
    source: str = ""

    def __post_init__(self) -> None:
        if len(self.device_id) != 16 or len(self.pubkey) != 32:
            raise ValueError("device: expected a 16-byte id and a 32-byte Ed25519 key")
        if self.status not in STATUSES:
            raise ValueError(f"device status: expected one of {STATUSES}, got {self.status!r}")

    def to_cbor(self) -> bytes:
        # Eight items without a source, as every row stored before sources were kept, which reads the same.
        return cbor2.dumps([self.device_id, self.pubkey, self.site, self.role, self.status, self.revoked_from,
                            self.enrolled_at, self.name, *([self.source] if self.source else [])])

    @classmethod
    def from_cbor(cls, data: bytes) -> DeviceInfo:
        d, k, site, role, status, rev, at, name, *source = cbor2.loads(data)
        return cls(device_id=d, pubkey=k, site=site, role=role, status=status, revoked_from=rev,
                   enrolled_at=at, name=name, source=source[0] if source else "")

    @staticmethod
    def count_statuses(raws: Iterable[bytes]) -> dict[str, int]:
        """How many of the devices stored as `raws` (`to_cbor`) have each status, reading only the status."""
        return dict(Counter(cbor2.loads(raw)[4] for raw in raws))

    def to_json(self, *, source: bool = False) -> dict[str, object]:
        """The device as the API shows it; its `source` address only when asked (operators and auditors). To
        everyone else a pending device's site, role and name are blank: they are what an enrollment request
        nobody approved says of itself, which anyone on the network may send (a kitchen's name on the public
        dashboard, or any text)."""
        claims = source or self.status != "pending"
        out: dict[str, object] = {"device": self.device_id.hex(), "pubkey": self.pubkey.hex(),
                                  "site": self.site if claims else "", "role": self.role if claims else "",
                                  "status": self.status, "revoked_from": self.revoked_from,
                                  "enrolled_at": self.enrolled_at, "name": self.name if claims else ""}
        if source:
            out["source"] = self.source
        return out

    def with_status(self, status: str, revoked_from: int | None = None) -> DeviceInfo:
        return replace(self, status=status, revoked_from=revoked_from)


@dataclass(frozen=True, slots=True, kw_only=True)
class Entry:
    """One record's place in the hub's global log."""

    index: int
    device_id: bytes
    seq: int
    arrived_at: int
    raw: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class LogAppend:
    """One log's verified records for a batched commit, with their Merkle leaf hashes (each record is hashed
    once, by the hub) and the log's state after them."""

    device_id: bytes
    records: Sequence[Record]
    leaves: Sequence[bytes]
    state: ChainState
    arrived_at: int

    @classmethod
    def of(cls, device_id: bytes, records: Sequence[Record], state: ChainState, arrived_at: int) -> LogAppend:
        return cls(device_id=device_id, records=records, leaves=[leaf_hash(r.raw) for r in records], state=state,
                   arrived_at=arrived_at)


@dataclass(frozen=True, slots=True, kw_only=True)
class Batch:
    """Everything one commit of the hub's writer stores at once: logs' new records in global order, the roots
    of tiles closed since the last commit (from `first_tile` on) and counter increments."""

    appends: Sequence[LogAppend] = ()
    first_tile: int = 0
    tiles: Sequence[bytes] = ()
    counters: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceStanding:
    """A device as the chain's health page shows it: what the hub knows of it, its log's state, when its records
    last arrived and the latest time they carry (None before any), and its damaged records awaiting restore."""

    device: DeviceInfo
    state: ChainState | None
    arrived_at: int | None
    last_time: int | None
    damaged: tuple[int, ...] = ()
    # Records of this device from before the store kept the figures are not counted yet (`figures_from`): its
    # figures are those of the records counted so far and may still change.
    counting: bool = False


def shown_state(data: bytes) -> ChainState:
    """A log's state as the store wrote it, for display: read without the strict check `ChainState.from_cbor`
    makes of a state that a log is extended from (a page of thousands of devices spent most of its time there)."""
    d, n, h, k, b, t = cbor2.loads(data)
    return ChainState(device_id=d, length=n, head=h, key=k, boot=b, time=t)


_KIND = attrgetter("kind")
_TIME = attrgetter("time")


def chain_activity(appends: Iterable[LogAppend]) -> tuple[dict[bytes, tuple[int, int]], Counter[str]]:
    """What a commit adds to the chain's figures, from its records as decoded: per device, the arrival time of
    its last records and the latest record time among them; and the records by kind. Kept in the same commit
    as the records, so the figures hold across restarts and never count a record twice."""
    devices: dict[bytes, tuple[int, int]] = {}
    for part in appends:
        if part.records:
            latest = max(map(_TIME, part.records))
            seen = devices.get(part.device_id)
            devices[part.device_id] = (part.arrived_at, latest if seen is None else max(latest, seen[1]))
    return devices, Counter(map(_KIND, chain.from_iterable(part.records for part in appends)))


def activity_of_log(entries: Iterable[tuple[bytes, int, bytes]]) -> tuple[dict[bytes, tuple[int, int]], Counter[str]]:
    """The chain's figures recomputed from stored log entries (device, arrival time, record bytes) in log order:
    a store from before they were kept is brought up to date from the records it holds."""
    devices: dict[bytes, tuple[int, int]] = {}
    kinds: Counter[str] = Counter()
    for device_id, arrived, raw in entries:
        try:
            kind, time = kind_and_time(raw)
        except LedgerError:  # a damaged copy: its kind and time cannot be read, so it is not counted
            continue
        kinds[kind] += 1
        seen = devices.get(device_id)
        devices[device_id] = (arrived, time if seen is None else max(time, seen[1]))
    return devices, kinds


UNREAD_KIND = 255  # the kind index's code for a record whose kind could not be read from its stored bytes
KIND_CODES: Mapping[str | None, int] = dict([*KINDS.items(), (None, UNREAD_KIND)])


def kind_index_of_log(rows: Iterable[tuple[int, bytes, bool]]) -> Iterator[tuple[int, int]]:
    """(kind code, index) of each stored log entry (index, record bytes, whether they are intact): the kind
    index recomputed for a store from before it was kept. A damaged copy is indexed as UNREAD_KIND, so a reader of
    the index still meets it, and reports it, where a reader of the whole log would."""
    for index, raw, intact in rows:
        code = UNREAD_KIND
        if intact:
            try:
                code = KINDS[kind_and_time(raw)[0]]
            except LedgerError:
                pass
        yield code, index


def kind_runs(codes: Iterable[tuple[int, int]]) -> Iterator[tuple[int, int, int]]:
    """(kind code, first index, last index) of each run of consecutive log indices holding one kind, from (kind
    code, index) in log order: the kind index as PostgreSQL keeps it, a row per run (a day's scans arrive in long
    runs between a few records of other kinds)."""
    run: list[int] | None = None
    for code, index in codes:
        if run is not None and run[0] == code and run[2] == index - 1:
            run[2] = index
            continue
        if run is not None:
            yield run[0], run[1], run[2]
        run = [code, index, index]
    if run is not None:
        yield run[0], run[1], run[2]


def index_behind(step: Callable[[int], int], behind: int, stop: threading.Event, *, what: str = "kind index",
                 meanwhile: str = "the refill reads their kinds from the log") -> None:
    """The background pass of a store upgraded to keep something (`what`: the kind index, the chain's figures)
    over the records it already held: `step` takes in a chunk below `behind` in one transaction and returns what
    is left, a pause between chunks lets the writer in, until none is left or `stop` is set. Logs its progress
    every million records or so; `meanwhile` says what readers do until it ends."""
    log.info("hub store: the %s of the %d records from before it, newest first, in the background", what, behind)
    total, logged = behind, behind
    while behind and not stop.is_set():
        try:
            behind = step(INDEX_CHUNK)
        except StoreError as exc:  # a full disk or map: the marker keeps its place and the next start resumes
            log.error("hub store: the %s of older records stopped with %d of %d to go (%s: %s); %s meanwhile, and "
                      "the next start resumes", what, behind, total, exc.code, exc.message, meanwhile)
            return
        if logged - behind >= 100 * INDEX_CHUNK or not behind:
            log.info("hub store: %s of older records %d of %d done", what, total - behind, total)
            logged = behind
        stop.wait(_INDEX_PAUSE_S)


FIGURES_MEANWHILE = "the chain's health page marks the devices whose figures are still being counted"


class HubStore(Protocol):
    """What the hub needs from storage. Implemented by LmdbHubStore and hub.pg.PgHubStore."""

    def put_device(self, *devices: DeviceInfo) -> None:
        """Store each device's info (a new one or a new standing), all in one write."""
        ...
    def get_device(self, device_id: bytes) -> DeviceInfo | None: ...
    def devices(self) -> list[DeviceInfo]: ...
    def device_count(self) -> int: ...
    def device_statuses(self) -> dict[str, int]:
        """How many devices have each status (statuses no device has are left out)."""
        ...
    def pending_devices(self) -> list[DeviceInfo]:
        """The devices waiting for an operator's approval (status pending), in device id order."""
        ...
    def drop_pending(self, *device_ids: bytes) -> list[DeviceInfo]:
        """Delete those of `device_ids` that are still pending, in one write, and return them: requests nobody
        approved, which no decision of the hub's own log names (a device approved meanwhile stays)."""
        ...
    def standings(self, after: bytes, limit: int) -> list[DeviceStanding]:
        """Up to `limit` devices in device id order after device id `after` (b"": from the first), each with its
        log's state, last arrival, latest record time and damaged records: one read for a page of them."""
        ...
    def record_kinds(self) -> dict[str, int]:
        """How many records of each kind the log holds (as accepted; archived records stay counted)."""
        ...
    def activity_after(self, after: bytes, limit: int) -> list[tuple[bytes, int, int]]:
        """Up to `limit` (device id, last arrival, latest record time) in device id order after device id `after`
        (b"": from the first): the figures `commit` keeps, of the devices whose records have arrived."""
        ...
    def chain_state(self, device_id: bytes) -> ChainState | None: ...
    def states_after(self, after: bytes, limit: int) -> list[ChainState]:
        """Up to `limit` logs' states in device id order, after device id `after` (b"": from the first)."""
        ...
    def append(self, device_id: bytes, records: Sequence[Record], state: ChainState, arrived_at: int) -> int:
        """Store verified records and the log's new state atomically; return the global size after."""
        ...
    def commit(self, batch: Batch) -> int:
        """Store a whole batch in one transaction (all of it or nothing); return the global size after."""
        ...
    def get_raw(self, device_id: bytes, seq: int) -> bytes | None:
        """The record at `seq`; raises DamagedRecord if its bytes no longer hash to its id."""
        ...
    def record_id(self, device_id: bytes, seq: int) -> bytes | None:
        """The id of the record at `seq` (the SHA-256 of its bytes), checked as `get_raw` checks the record."""
        ...
    def log_range(self, device_id: bytes, start: int, end: int) -> list[bytes]:
        """Records `start` up to `end` of one log, as far as they are intact: a damaged record ends the range
        (DamagedRecord if it is the first)."""
        ...
    def locate(self, record_id: bytes) -> int | None: ...
    def size(self) -> int: ...
    def entries(self, start: int, end: int) -> list[Entry]:
        """Global log entries `start` up to `end`, as far as their records are intact (like `log_range`)."""
        ...
    def entries_at(self, indices: Sequence[int]) -> list[Entry]:
        """The global log entries at `indices` (ascending, each below the size), as far as their records are
        intact: a damaged record ends the list (DamagedRecord if it is the first)."""
        ...
    def kind_positions(self, kind: str | None, start: int, end: int, limit: int) -> list[int]:
        """Up to `limit` global indices from `start` up to `end` that hold records of `kind`, ascending: the kind
        index, kept in the commit that holds the records. Kind None: the records whose kind could not be read
        when a store upgrade indexed them (damaged copies)."""
        ...
    def kind_index_from(self) -> int:
        """The log index from which the kind index is complete: 0 once every record is indexed, above 0 while a
        store upgraded to keep it still indexes the records it held before, newest first, in the background;
        `kind_positions` reads the kinds below it from the records themselves."""
        ...
    def figures_from(self) -> int:
        """The log index from which the chain's figures (`record_kinds`, `activity_after`, each standing's) count
        every record: 0 once all are counted, above 0 while a store upgraded to keep them still counts the records
        it held before, newest first, in the background (`DeviceStanding.counting` marks whom it touches)."""
        ...
    def damaged_in(self, start: int, end: int) -> list[tuple[bytes, int]]:
        """(device, seq) of each record at global index `start` up to `end` whose bytes no longer hash to
        its leaf and its id: the store check's scan, which neither raises nor marks."""
        ...
    def mark_damaged(self, device_id: bytes, seq: int) -> bool:
        """Note a damaged record until a good copy replaces it; True if it was not noted before."""
        ...
    def damaged(self) -> dict[bytes, list[int]]:
        """The damaged records awaiting restore: device -> sorted seqs."""
        ...
    def repair(self, device_id: bytes, seq: int, raw: bytes) -> bool:
        """Put `raw` back at `seq` if it is the record the log holds there (its id and leaf); True if it was."""
        ...
    def leaf_hashes(self, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """The Merkle leaf hashes of the global log from `start` up to `end` (the whole log by default)."""
        ...
    def put_tiles(self, first: int, roots: Sequence[bytes]) -> None:
        """Keep the roots of the log's whole tiles first, first+1, ... (64 leaves each), for a quick restart."""
        ...
    def tiles(self) -> Iterator[bytes]:
        """The tile roots kept, in order from tile 0 (stopping at the first one missing)."""
        ...
    def put_checkpoint(self, tree_size: int, time: int, raw: bytes) -> None: ...
    def checkpoints(self) -> list[bytes]: ...
    def put_fork(self, device_id: bytes, evidence: bytes) -> None: ...
    def forks(self) -> list[tuple[bytes, bytes]]: ...
    def put_region_checkpoint(self, hub_id: bytes, tree_size: int, raw: bytes) -> None:
        """Keep a checkpoint accepted from a regional hub followed by its checkpoints (hub/tiers.py)."""
        ...
    def region_checkpoints(self, hub_id: bytes) -> list[bytes]:
        """The checkpoints accepted from that hub, in tree size order."""
        ...
    def put_split_view(self, hub_id: bytes, evidence: bytes) -> None: ...
    def split_views(self) -> list[tuple[bytes, bytes]]:
        """(hub id, evidence) of every regional hub caught signing two views of its log."""
        ...
    def resume_region(self, hub_id: bytes, tree_size: int, raw: bytes, decision: bytes) -> None:
        """An operator's decision to follow a hub again after a split view, in one transaction: the decision is
        kept for good (it holds the checkpoints accepted before), and the accepted checkpoints become the one
        re-pinned. The split-view evidence stays."""
        ...
    def region_resumes(self) -> list[tuple[bytes, bytes]]:
        """(hub id, decision) of every resume, oldest first."""
        ...
    def bump(self, counter: str, by: int = 1) -> None: ...
    def counters(self) -> dict[str, int]: ...
    def close(self) -> None: ...


_U64 = struct.Struct(">Q")
_PAIR = struct.Struct(">QQ")
_KINDS_FROM = b"kind_index_from"  # meta key: see LmdbHubStore.kind_index_from
_FIGURES_FROM = b"figures_from"  # meta key: see LmdbHubStore.figures_from
# The kind index's keys: the kind's code (one byte) and the global index (big-endian), so that each kind's
# indices are one ordered run; the values are empty.
_KIND_PREFIX = {name: bytes((code,)) for name, code in KINDS.items()}
# Log entries the background pass indexes per write transaction: short enough (~0.1-0.3 s, docs/SCALE.md) that
# the writer waits for one chunk at most, and a pause between chunks lets it in.
INDEX_CHUNK = 10_000
_INDEX_PAUSE_S = 0.01


def _seq_key(device_id: bytes, seq: int) -> bytes:
    return device_id + _U64.pack(seq)


def refuse_damaged(store: HubStore, device_id: bytes, seq: int) -> DamagedRecord:
    """Note a damaged record for restore, say so loudly once, and return the error that refuses to serve it."""
    if store.mark_damaged(device_id, seq):
        log.error("RECORD DAMAGED: device %s seq %d: the stored bytes no longer hash to the record's id; it is "
                  "not served and the device is marked for restore: %s", device_id.hex(), seq, RESTORE_HINT)
    return DamagedRecord(f"the hub's copy of device {device_id.hex()} seq {seq} is damaged (its bytes no longer "
                         "hash to its id); it is not served", hint=RESTORE_HINT)


def intact_prefix(store: HubStore, rows: Iterable[tuple[bytes, int, bool]], served: list[Any]) -> None:
    """Stop `served` at the first damaged row of `rows` (device, seq, intact), noting it for restore; a read
    that would start with a damaged record is refused, so a reader never takes it for the end of the log."""
    for i, (device_id, seq, intact) in enumerate(rows):
        if not intact:
            error = refuse_damaged(store, device_id, seq)
            if not i:
                raise error
            del served[i:]
            return


class CheckedReads:
    """A backend's `get_raw` and `record_id`, from its one read of a record that checks it intact, `_checked`: the
    record at a seq and its id (None where the backend checked the bytes another way), or DamagedRecord."""

    def _checked(self, device_id: bytes, seq: int) -> tuple[bytes, bytes | None] | None:
        raise NotImplementedError

    def get_raw(self, device_id: bytes, seq: int) -> bytes | None:
        held = self._checked(device_id, seq)
        return held[0] if held is not None else None

    def record_id(self, device_id: bytes, seq: int) -> bytes | None:
        held = self._checked(device_id, seq)
        if held is None:
            return None
        raw, record_id = held
        return record_id if record_id is not None else hashlib.sha256(raw).digest()


class LmdbHubStore(CheckedReads):
    """HubStore on one LMDB environment: durable (fsync per commit), one writer, many readers."""

    def __init__(self, path: str | os.PathLike[str], *, map_size: int = 1 << 32, durable: bool = True,
                 index_behind: bool = True) -> None:
        """`index_behind`: count and index the log's records older than an upgrade from layout 1 or 2 in a
        background thread (off only where a test steps through it with `count_older_figures` and
        `index_older_kinds`)."""
        os.makedirs(path, exist_ok=True)
        # durable=False (bulk loads, tests): commits skip fsync, so a power cut can lose the last commits but
        # never damages the store (LMDB without a write map keeps its integrity either way).
        try:
            self._env = lmdb.open(str(path), map_size=map_size, max_dbs=32, subdir=True, sync=durable,
                                  metasync=durable, writemap=False)
        except lmdb.Error as exc:  # a damaged or foreign file, a lock another process holds, no permission
            raise StoreError(f"cannot open the hub's LMDB store at {path}: {exc}",
                             hint="check the files' owner and that no other process holds them; a damaged "
                                  "store is restored from a backup (docs/DEPLOY.md)") from None
        names = ("meta", "devices", "states", "records", "ids", "global", "checkpoints", "forks", "counters",
                 "damaged", "tiles", "regions", "splits", "resumes", "activity", "kinds", "kind_index")
        self._db = {n: self._env.open_db(n.encode()) for n in names}
        with self._guard(), self._env.begin(write=True) as txn:
            version = txn.get(b"layout", db=self._db["meta"])
            if version is not None and int(version) not in (1, 2, LAYOUT_VERSION):
                raise StoreError(f"hub store layout {int(version)} is not the supported {LAYOUT_VERSION}",
                                 hint="run the matching release or migrate the store")
            # What a layout adds is complete from the log's size on, as the writer keeps it for each new record;
            # the records before are counted (`count_older_figures`) and indexed (`index_older_kinds`) in the
            # background, newest first, so that the open reads none of them. A release that does not know these
            # marks refuses the upgraded layout, so they cannot be left behind.
            size = txn.get(b"size", b"0", db=self._db["meta"])
            if version is not None and int(version) == 1 and int(size):
                txn.put(_FIGURES_FROM, size, db=self._db["meta"])
            if version is not None and int(version) < 3:
                txn.put(_KINDS_FROM, size, db=self._db["meta"])
            txn.put(b"layout", str(LAYOUT_VERSION).encode(), db=self._db["meta"])
        self._stop = threading.Event()
        self._indexer: threading.Thread | None = None
        if index_behind and (self.figures_from() > 0 or self.kind_index_from() > 0):
            self._indexer = threading.Thread(target=self._index_behind, name="jejak-store-behind", daemon=True)
            self._indexer.start()

    def _log_rows(self, txn: lmdb.Transaction, start: int, end: int) -> Iterator[tuple[int, bytes, bool]]:
        """(index, record bytes, whether they are intact) of the global log's entries from `start` up to `end`."""
        records = self._db["records"]
        cur = txn.cursor(db=self._db["global"])
        if not cur.set_range(_U64.pack(start)):
            return
        for key, value in cur:
            index = _U64.unpack(key)[0]
            if index >= end:
                return
            seq_key, _, leaf = cbor2.loads(value)
            raw = bytes(txn.get(seq_key, b"", db=records))
            yield index, raw, leaf_hash(raw) == leaf

    def kind_index_from(self) -> int:
        """The log index from which the kind index is complete: 0 once every record is indexed; above 0 while
        the records of a store upgraded from layout 2 are still being indexed, newest first."""
        with self._env.begin() as txn:
            return int(txn.get(_KINDS_FROM, b"0", db=self._db["meta"]))

    def index_older_kinds(self, chunk: int = INDEX_CHUNK) -> int:
        """Index up to `chunk` records just below `kind_index_from`, and lower it past them in the same write
        transaction (a stop at any point resumes from there); returns the new `kind_index_from`."""
        meta = self._db["meta"]
        with self._guard(), self._write() as txn:
            behind = int(txn.get(_KINDS_FROM, b"0", db=meta))
            if behind == 0:
                return 0
            start = max(0, behind - chunk)
            txn.cursor(db=self._db["kind_index"]).putmulti(
                (bytes((code,)) + _U64.pack(index), b"") for code, index in
                kind_index_of_log(self._log_rows(txn, start, behind)))
            if start:
                txn.put(_KINDS_FROM, str(start).encode(), db=meta)
            else:
                txn.delete(_KINDS_FROM, db=meta)
        return start

    def figures_from(self) -> int:
        """The log index from which the chain's figures count every record: 0 once all are counted; above 0 while
        the records of a store upgraded from layout 1 are still being counted, newest first."""
        with self._env.begin() as txn:
            return int(txn.get(_FIGURES_FROM, b"0", db=self._db["meta"]))

    def count_older_figures(self, chunk: int = INDEX_CHUNK) -> int:
        """Count up to `chunk` records just below `figures_from` into the chain's figures, and lower it past them
        in the same write transaction (a stop at any point resumes from there); returns the new `figures_from`."""
        meta, records = self._db["meta"], self._db["records"]
        with self._guard(), self._write() as txn:
            behind = int(txn.get(_FIGURES_FROM, b"0", db=meta))
            if behind == 0:
                return 0
            start = max(0, behind - chunk)

            def entries() -> Iterator[tuple[bytes, int, bytes]]:
                cur = txn.cursor(db=self._db["global"])
                if not cur.set_range(_U64.pack(start)):
                    return
                for key, value in cur:
                    if _U64.unpack(key)[0] >= behind:
                        return
                    seq_key, arrived, _ = cbor2.loads(value)
                    yield bytes(seq_key[:16]), arrived, bytes(txn.get(seq_key, b"", db=records))

            self._put_older_activity(txn, *activity_of_log(entries()))
            if start:
                txn.put(_FIGURES_FROM, str(start).encode(), db=meta)
            else:
                txn.delete(_FIGURES_FROM, db=meta)
        return start

    def _put_older_activity(self, txn: lmdb.Transaction, devices: Mapping[bytes, tuple[int, int]],
                            kinds: Mapping[str, int]) -> None:
        """Add the figures of records older than every one counted so far (the pass goes newest first): a device's
        arrival kept stays, as it is of later records; its latest record time only grows; the counts add up."""
        activity = self._db["activity"]
        for device_id, (arrived, latest) in devices.items():
            kept = txn.get(device_id, db=activity)
            if kept is not None:
                arrived, kept_latest = _PAIR.unpack(kept)
                latest = max(latest, kept_latest)
            txn.put(device_id, _PAIR.pack(arrived, latest), db=activity)
        self._put_activity(txn, {}, kinds)

    def _index_behind(self) -> None:
        # The figures first: the health page shows them short until they are counted, where the refill reads the
        # kinds not indexed yet from the records themselves and answers the same, only slower.
        if self.figures_from():
            index_behind(self.count_older_figures, self.figures_from(), self._stop, what="chain's figures",
                         meanwhile=FIGURES_MEANWHILE)
        if not self._stop.is_set() and not self.figures_from() and self.kind_index_from():
            index_behind(self.index_older_kinds, self.kind_index_from(), self._stop)

    def _write(self) -> lmdb.Transaction:
        return self._env.begin(write=True)

    def put_device(self, *devices: DeviceInfo) -> None:
        with self._guard(), self._write() as txn:
            for device in devices:
                txn.put(device.device_id, device.to_cbor(), db=self._db["devices"])

    def get_device(self, device_id: bytes) -> DeviceInfo | None:
        with self._env.begin() as txn:
            data = txn.get(device_id, db=self._db["devices"])
        return DeviceInfo.from_cbor(data) if data else None

    def devices(self) -> list[DeviceInfo]:
        with self._env.begin() as txn:
            return [DeviceInfo.from_cbor(v) for _, v in txn.cursor(db=self._db["devices"])]

    def device_count(self) -> int:
        with self._env.begin() as txn:
            return int(txn.stat(self._db["devices"])["entries"])

    def device_statuses(self) -> dict[str, int]:
        with self._env.begin() as txn:
            return DeviceInfo.count_statuses(txn.cursor(db=self._db["devices"]).iternext(keys=False))

    def pending_devices(self) -> list[DeviceInfo]:
        with self._env.begin() as txn:
            return [DeviceInfo.from_cbor(v) for v in txn.cursor(db=self._db["devices"]).iternext(keys=False)
                    if cbor2.loads(v)[4] == "pending"]

    def drop_pending(self, *device_ids: bytes) -> list[DeviceInfo]:
        dropped = []
        with self._guard(), self._write() as txn:
            for device_id in device_ids:
                data = txn.get(device_id, db=self._db["devices"])
                if data and (device := DeviceInfo.from_cbor(bytes(data))).status == "pending":
                    txn.delete(device_id, db=self._db["devices"])
                    dropped.append(device)
        return dropped

    def standings(self, after: bytes, limit: int) -> list[DeviceStanding]:
        out: list[DeviceStanding] = []
        db = self._db
        with self._env.begin() as txn:
            cur = txn.cursor(db=db["devices"])
            damaged = txn.cursor(db=db["damaged"])
            behind = int(txn.get(_FIGURES_FROM, b"0", db=db["meta"]))
            if not cur.set_range(after):
                return out
            for key, value in cur:
                if len(out) >= limit:
                    break
                device_id = bytes(key)
                if device_id == after:
                    continue
                state = txn.get(device_id, db=db["states"])
                kept = txn.get(device_id, db=db["activity"])
                arrived, latest = _PAIR.unpack(kept) if kept is not None else (None, None)
                seqs = []
                if damaged.set_range(device_id):
                    for dkey, _ in damaged:
                        if dkey[:16] != device_id:
                            break
                        seqs.append(_U64.unpack(dkey[16:])[0])
                out.append(DeviceStanding(device=DeviceInfo.from_cbor(value),
                                          state=shown_state(state) if state is not None else None,
                                          arrived_at=arrived, last_time=latest, damaged=tuple(seqs),
                                          counting=bool(behind) and state is not None
                                          and self._first_index(txn, device_id) < behind))
        return out

    def _first_index(self, txn: lmdb.Transaction, device_id: bytes) -> int:
        """The global index of a device's first record (0 if its copy is damaged: it is not known where)."""
        raw = txn.get(_seq_key(device_id, 0), db=self._db["records"])
        index = txn.get(hashlib.sha256(raw).digest(), db=self._db["ids"]) if raw is not None else None
        return _U64.unpack(index)[0] if index is not None else 0

    def record_kinds(self) -> dict[str, int]:
        with self._env.begin() as txn:
            return {bytes(k).decode(): _U64.unpack(v)[0] for k, v in txn.cursor(db=self._db["kinds"])}

    def activity_after(self, after: bytes, limit: int) -> list[tuple[bytes, int, int]]:
        out: list[tuple[bytes, int, int]] = []
        with self._env.begin() as txn:
            cur = txn.cursor(db=self._db["activity"])
            if not cur.set_range(after):
                return out
            for key, value in cur:
                if len(out) >= limit:
                    break
                if key != after:
                    out.append((bytes(key), *_PAIR.unpack(value)))
        return out

    def chain_state(self, device_id: bytes) -> ChainState | None:
        with self._env.begin() as txn:
            data = txn.get(device_id, db=self._db["states"])
        return ChainState.from_cbor(data) if data else None

    def states_after(self, after: bytes, limit: int) -> list[ChainState]:
        out: list[ChainState] = []
        with self._env.begin() as txn:
            cur = txn.cursor(db=self._db["states"])
            if not cur.set_range(after):
                return out
            for key, value in cur:
                if len(out) >= limit:
                    break
                if bytes(key) > after:
                    out.append(ChainState.from_cbor(value))
        return out

    def append(self, device_id: bytes, records: Sequence[Record], state: ChainState, arrived_at: int) -> int:
        return self.commit(Batch(appends=[LogAppend.of(device_id, records, state, arrived_at)]))

    def commit(self, batch: Batch) -> int:
        db = self._db
        with self._guard(), self._write() as txn:
            size = int(txn.get(b"size", b"0", db=db["meta"]))
            records, ids, glob, kinds = [], [], [], []
            for part in batch.appends:
                # Each global entry is the CBOR array [seq key (24 bytes), arrival time, leaf hash (32 bytes)],
                # assembled from its parts: the same bytes as cbor2.dumps of the list.
                arrived = cbor2.dumps(part.arrived_at) + b"\x58\x20"
                device_id = part.device_id
                for rec, leaf in zip(part.records, part.leaves, strict=True):
                    key = device_id + _U64.pack(rec.seq)
                    index = _U64.pack(size)
                    records.append((key, rec.raw))
                    ids.append((rec.id, index))
                    glob.append((index, b"\x83\x58\x18" + key + arrived + leaf))
                    kinds.append((_KIND_PREFIX[rec.kind] + index, b""))
                    size += 1
            # putmulti loops in C; the global log only grows at its end, so its rows go in with append.
            txn.cursor(db=db["records"]).putmulti(records)
            txn.cursor(db=db["ids"]).putmulti(ids)
            txn.cursor(db=db["global"]).putmulti(glob, append=True)
            txn.cursor(db=db["kind_index"]).putmulti(kinds)
            for part in batch.appends:
                txn.put(part.device_id, part.state.to_cbor(), db=db["states"])
            txn.put(b"size", str(size).encode(), db=db["meta"])
            for i, root in enumerate(batch.tiles, batch.first_tile):
                txn.put(_U64.pack(i), root, db=db["tiles"])
            for counter, by in batch.counters.items():
                key = counter.encode()
                txn.put(key, str(int(txn.get(key, b"0", db=db["counters"])) + by).encode(), db=db["counters"])
            self._put_activity(txn, *chain_activity(batch.appends))
        return size

    def _put_activity(self, txn: lmdb.Transaction, devices: Mapping[bytes, tuple[int, int]],
                      kinds: Mapping[str, int]) -> None:
        """Add a commit's figures: each device's arrival replaces the one kept, its latest record time only
        grows; the counts by kind add up."""
        activity, counts = self._db["activity"], self._db["kinds"]
        for device_id, (arrived, latest) in devices.items():
            kept = txn.get(device_id, db=activity)
            if kept is not None:
                latest = max(latest, _PAIR.unpack(kept)[1])
            txn.put(device_id, _PAIR.pack(arrived, latest), db=activity)
        for kind, n in kinds.items():
            key = kind.encode()
            kept = txn.get(key, db=counts)
            txn.put(key, _U64.pack(n + (_U64.unpack(kept)[0] if kept is not None else 0)), db=counts)

    def _intact(self, txn: lmdb.Transaction, key: bytes, raw: bytes) -> bool:
        """Whether `raw` is still the record stored at `key`: its hash is an id the log holds, at this key."""
        return self._holds(txn, key, hashlib.sha256(raw).digest())

    def _holds(self, txn: lmdb.Transaction, key: bytes, record_id: bytes) -> bool:
        index = txn.get(record_id, db=self._db["ids"])
        entry = txn.get(index, db=self._db["global"]) if index is not None else None
        return entry is not None and bytes(cbor2.loads(entry)[0]) == key

    def _checked(self, device_id: bytes, seq: int) -> tuple[bytes, bytes | None] | None:
        """The record at `seq` and its id, the one hash that checks it intact (else DamagedRecord)."""
        key = _seq_key(device_id, seq)
        with self._env.begin() as txn:
            data = txn.get(key, db=self._db["records"])
            if data is None:
                return None
            raw = bytes(data)
            record_id = hashlib.sha256(raw).digest()
            intact = self._holds(txn, key, record_id)
        if not intact:
            raise refuse_damaged(self, device_id, seq)
        return raw, record_id


    def log_range(self, device_id: bytes, start: int, end: int) -> list[bytes]:
        out: list[bytes] = []
        rows = []
        with self._env.begin() as txn:
            cur = txn.cursor(db=self._db["records"])
            if cur.set_range(_seq_key(device_id, start)):
                for key, value in cur:
                    if key[:16] != device_id or _U64.unpack(key[16:])[0] >= end:
                        break
                    out.append(bytes(value))
                    rows.append((device_id, _U64.unpack(key[16:])[0], self._intact(txn, bytes(key), out[-1])))
                    if not rows[-1][2]:
                        break
        intact_prefix(self, rows, out)
        return out

    def locate(self, record_id: bytes) -> int | None:
        with self._env.begin() as txn:
            data = txn.get(record_id, db=self._db["ids"])
        return _U64.unpack(data)[0] if data else None

    def size(self) -> int:
        with self._env.begin() as txn:
            return int(txn.get(b"size", b"0", db=self._db["meta"]))

    def entries(self, start: int, end: int) -> list[Entry]:
        with self._env.begin() as txn:
            cur = txn.cursor(db=self._db["global"])
            found = cur.iternext() if cur.set_range(_U64.pack(start)) else iter(())
            return self._intact_entries(txn, ((_U64.unpack(k)[0], v) for k, v in found), end)

    def entries_at(self, indices: Sequence[int]) -> list[Entry]:
        glob = self._db["global"]
        with self._env.begin() as txn:
            return self._intact_entries(txn, ((i, txn.get(_U64.pack(i), db=glob)) for i in indices))

    def _intact_entries(self, txn: lmdb.Transaction, rows: Iterable[tuple[int, Any]],
                        end: int | None = None) -> list[Entry]:
        """The entries of global log `rows` (index, stored value), up to `end`, as far as they are intact."""
        out: list[Entry] = []
        checked = []
        for index, value in rows:
            if value is None or (end is not None and index >= end):
                break
            seq_key, arrived, leaf = cbor2.loads(value)
            data = txn.get(seq_key, db=self._db["records"])
            raw = bytes(data) if data is not None else b""
            out.append(Entry(index=index, device_id=seq_key[:16], seq=_U64.unpack(seq_key[16:])[0],
                             arrived_at=arrived, raw=raw))
            checked.append((out[-1].device_id, out[-1].seq, leaf_hash(raw) == leaf))
            if not checked[-1][2]:
                break
        intact_prefix(self, checked, out)
        return out

    def kind_positions(self, kind: str | None, start: int, end: int, limit: int) -> list[int]:
        code = KIND_CODES[kind]
        prefix = bytes((code,))
        with self._env.begin() as txn:
            # Below `kind_index_from` the index is not complete yet: those records' kinds are read from them.
            behind = int(txn.get(_KINDS_FROM, b"0", db=self._db["meta"]))
            out = list(islice((i for c, i in kind_index_of_log(self._log_rows(txn, start, min(end, behind)))
                               if c == code), limit)) if start < behind else []
            start = max(start, behind)
            cur = txn.cursor(db=self._db["kind_index"])
            if not cur.set_range(prefix + _U64.pack(start)):
                return out
            for key in cur.iternext(values=False):
                index = _U64.unpack(key[1:])[0]
                if key[:1] != prefix or index >= end or len(out) >= limit:
                    break
                out.append(index)
        return out

    def damaged_in(self, start: int, end: int) -> list[tuple[bytes, int]]:
        found = []
        with self._env.begin() as txn:
            cur = txn.cursor(db=self._db["global"])
            if cur.set_range(_U64.pack(start)):
                for key, value in cur:
                    if _U64.unpack(key)[0] >= end:
                        break
                    seq_key, _, leaf = cbor2.loads(value)
                    data = txn.get(seq_key, db=self._db["records"])
                    raw = bytes(data) if data is not None else b""
                    if leaf_hash(raw) != leaf or txn.get(hashlib.sha256(raw).digest(), db=self._db["ids"]) != key:
                        found.append((bytes(seq_key[:16]), _U64.unpack(seq_key[16:])[0]))
        return found

    def mark_damaged(self, device_id: bytes, seq: int) -> bool:
        key = _seq_key(device_id, seq)
        with self._env.begin() as txn:
            if txn.get(key, db=self._db["damaged"]) is not None:
                return False
        with self._guard(), self._write() as txn:
            return bool(txn.put(key, b"", db=self._db["damaged"], overwrite=False))

    def damaged(self) -> dict[bytes, list[int]]:
        out: dict[bytes, list[int]] = {}
        with self._env.begin() as txn:
            for key, _ in txn.cursor(db=self._db["damaged"]):
                out.setdefault(bytes(key[:16]), []).append(_U64.unpack(key[16:])[0])
        return out

    def repair(self, device_id: bytes, seq: int, raw: bytes) -> bool:
        key = _seq_key(device_id, seq)
        with self._guard(), self._write() as txn:
            if txn.get(key, db=self._db["records"]) is None or not self._intact(txn, key, raw):
                return False
            txn.put(key, raw, db=self._db["records"])
            txn.delete(key, db=self._db["damaged"])
        return True

    def leaf_hashes(self, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        with self._env.begin() as txn:
            cur = txn.cursor(db=self._db["global"])
            if not cur.set_range(_U64.pack(start)):
                return
            for key, value in cur:
                if end is not None and _U64.unpack(key)[0] >= end:
                    break
                yield cbor2.loads(value)[2]

    def put_tiles(self, first: int, roots: Sequence[bytes]) -> None:
        with self._guard(), self._write() as txn:
            for i, root in enumerate(roots, first):
                txn.put(_U64.pack(i), root, db=self._db["tiles"])

    def tiles(self) -> Iterator[bytes]:
        with self._env.begin() as txn:
            for i, (key, root) in enumerate(txn.cursor(db=self._db["tiles"])):
                if _U64.unpack(key)[0] != i:
                    return
                yield bytes(root)

    def put_checkpoint(self, tree_size: int, time: int, raw: bytes) -> None:
        with self._guard(), self._write() as txn:
            txn.put(_U64.pack(tree_size) + _U64.pack(time), raw, db=self._db["checkpoints"])

    def checkpoints(self) -> list[bytes]:
        with self._env.begin() as txn:
            return [bytes(v) for _, v in txn.cursor(db=self._db["checkpoints"])]

    def put_fork(self, device_id: bytes, evidence: bytes) -> None:
        with self._guard(), self._write() as txn:
            txn.put(device_id + evidence[-32:], evidence, db=self._db["forks"])

    def forks(self) -> list[tuple[bytes, bytes]]:
        with self._env.begin() as txn:
            return [(bytes(k[:16]), bytes(v)) for k, v in txn.cursor(db=self._db["forks"])]

    def put_region_checkpoint(self, hub_id: bytes, tree_size: int, raw: bytes) -> None:
        with self._guard(), self._write() as txn:
            txn.put(hub_id + _U64.pack(tree_size), raw, db=self._db["regions"])

    def region_checkpoints(self, hub_id: bytes) -> list[bytes]:
        with self._env.begin() as txn:
            cursor = txn.cursor(db=self._db["regions"])
            out = []
            if cursor.set_range(hub_id):
                for key, raw in cursor:
                    if key[:len(hub_id)] != hub_id:
                        break
                    out.append(bytes(raw))
            return out

    def put_split_view(self, hub_id: bytes, evidence: bytes) -> None:
        with self._guard(), self._write() as txn:
            txn.put(hub_id + hashlib.sha256(evidence).digest(), evidence, db=self._db["splits"])

    def split_views(self) -> list[tuple[bytes, bytes]]:
        with self._env.begin() as txn:
            return [(bytes(k[:-32]), bytes(v)) for k, v in txn.cursor(db=self._db["splits"])]

    def resume_region(self, hub_id: bytes, tree_size: int, raw: bytes, decision: bytes) -> None:
        with self._guard(), self._write() as txn:
            regions = self._db["regions"]
            cursor = txn.cursor(db=regions)
            while cursor.set_range(hub_id) and cursor.key()[:len(hub_id)] == hub_id:
                cursor.delete()
            txn.put(hub_id + _U64.pack(tree_size), raw, db=regions)
            resumes = txn.cursor(db=self._db["resumes"])
            n = _U64.unpack(resumes.key())[0] + 1 if resumes.last() else 0
            txn.put(_U64.pack(n), hub_id + decision, db=self._db["resumes"])

    def region_resumes(self) -> list[tuple[bytes, bytes]]:
        with self._env.begin() as txn:
            return [(bytes(v[:16]), bytes(v[16:])) for _, v in txn.cursor(db=self._db["resumes"])]

    def bump(self, counter: str, by: int = 1) -> None:
        with self._guard(), self._write() as txn:
            key = counter.encode()
            txn.put(key, str(int(txn.get(key, b"0", db=self._db["counters"])) + by).encode(),
                    db=self._db["counters"])

    def counters(self) -> dict[str, int]:
        with self._env.begin() as txn:
            return {bytes(k).decode(): int(v) for k, v in txn.cursor(db=self._db["counters"])}

    def close(self) -> None:
        self._stop.set()
        if self._indexer is not None:
            self._indexer.join()
        self._env.close()

    def _guard(self) -> _MapFullGuard:
        return _MapFullGuard()


class _MapFullGuard:
    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is not None and issubclass(exc_type, lmdb.MapFullError):
            raise StoreFull("hub store is full; nothing was written by the failed transaction",
                            hint="raise [store] map_size in the hub config and restart") from exc
