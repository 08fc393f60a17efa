"""The edge's durable log store: its own log and verified replicas of peers' logs, in LMDB, with group commit."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import dataclasses
import errno
import hashlib
import logging
import os
import random
import struct
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import lmdb

from ledger import (
    ChainBuilder,
    ChainState,
    ForkEvidence,
    LedgerError,
    LimitExceeded,
    MalformedRecord,
    Record,
    Signer,
    link,
)
from ledger.acceptance import accept
from ledger.sync import Head

from .errors import (
    DamagedRecord,
    DeviceBlocked,
    StaleHead,
    StorageFailing,
    StoreBusy,
    StoreCorrupt,
    StoreError,
    StoreFull,
    StoreLayoutError,
    WrongDevice,
)

log = logging.getLogger("jejak.edge.store")

LAYOUT_VERSION = 1
_U64 = struct.Struct(">Q")
_DBS = ("meta", "records", "ids", "heads", "keys", "forks", "cursors")
# A write that fails with less than this free on the file system failed for room, not for a bad card: LMDB
# turns the short write of a full file system into EIO, so the errno alone cannot tell them apart.
NO_ROOM = 4 << 20
_WRITE_ERRNOS = (errno.EIO, errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def _seq_key(device_id: bytes, seq: int) -> bytes:
    return device_id + _U64.pack(seq)


@dataclass(frozen=True, slots=True, kw_only=True)
class LogInfo:
    """One log the store holds, as the read API lists it."""

    device_id: bytes
    length: int
    head: bytes
    time: int
    boot: int
    own: bool
    forked: bool

    def to_cbor_map(self) -> dict[str, Any]:
        return {"device": self.device_id, "length": self.length, "head": self.head, "time": self.time,
                "boot": self.boot, "own": self.own, "forked": self.forked}


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplicaRoom:
    """How much of other devices' logs a store may hold when it takes in more of one (`receive`'s `room`): at
    most `logs` replica logs and `bytes` bytes of their records. A new log past `logs`, or any new record once
    the replicas hold `bytes`, is refused with LIMIT_EXCEEDED and nothing of it is stored; what is stored stays.
    `setting` names what raises them, for the refusal's message."""

    logs: int
    bytes: int
    setting: str = "[limits] replica_logs and replica_bytes"

    def __post_init__(self) -> None:
        if self.logs < 0 or self.bytes < 0:
            raise ValueError(f"replica room: expected logs and bytes >= 0, got {self.logs} and {self.bytes}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Received:
    """What `receive` made of records offered for a peer's log."""

    accepted: int
    duplicates: int
    length: int
    problem: str | None = None
    fork: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "duplicates": self.duplicates, "length": self.length,
                "problem": self.problem, "fork": self.fork}


class LogStore(Protocol):
    """What the edge needs from storage. Writes are synchronous and durable when they return.

    It is also a `coap_server.sync.LogHolder` (heads, log_range, receive), so sync resources can serve it.
    """

    def own_device(self) -> bytes | None: ...
    def claim(self, device_id: bytes) -> None: ...
    def state(self, device_id: bytes) -> ChainState | None: ...
    def heads(self) -> list[Head]: ...
    def logs(self) -> list[LogInfo]: ...
    def log_range(self, device_id: bytes, start: int, end: int) -> list[bytes]: ...
    def log_length(self, device_id: bytes) -> int: ...
    def get(self, device_id: bytes, seq: int) -> bytes | None: ...
    def locate(self, record_id: bytes) -> tuple[bytes, int] | None: ...
    def append_own(self, records: Sequence[Record], *,
                   staged: Callable[[], None] | None = None) -> ChainState: ...
    def receive(self, device_id: bytes, raws: Sequence[bytes], *, revoked_from: int | None = None,
                max_length: int | None = None, room: ReplicaRoom | None = None) -> dict[str, Any]: ...
    def forks(self) -> list[ForkEvidence]: ...
    def blocked(self) -> frozenset[bytes]: ...
    def cursor(self, peer: str, device_id: bytes) -> int: ...
    def set_cursor(self, peer: str, device_id: bytes, seq: int) -> None: ...
    def usage(self) -> dict[str, int]: ...
    def close(self) -> None: ...


Listener = Callable[[bytes, ChainState], None]


_MADV_DONTNEED = 4
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None


def _mapped(data: Path) -> tuple[int, int] | None:
    """Where this process maps `data` (start address, length), from /proc/self/maps; None off Linux."""
    try:
        inode = data.stat().st_ino
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return None
    for line in maps.splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and fields[4] == str(inode) and fields[5].endswith("data.mdb"):
            start, end = (int(x, 16) for x in fields[0].split("-"))
            return start, end - start
    return None


def _resident_kb(start: int) -> int:
    """Resident kB of the mapping that begins at `start`, from /proc/self/smaps."""
    try:
        smaps = Path("/proc/self/smaps").read_text()
    except OSError:
        return 0
    at = smaps.find(f"\n{start:x}-")
    rss = smaps.find("\nRss:", at)
    if at < 0 or rss < 0:
        return 0
    return int(smaps[rss + 5:smaps.index("\n", rss + 1)].split()[0])


def _open_env(path: Path, *, map_size: int, max_dbs: int, readonly: bool) -> lmdb.Environment:
    """Open the environment, refusing a damaged or truncated file with STORE_CORRUPT: a truncated file would
    otherwise be mapped and crash the process (SIGBUS) on the first read past its end."""
    hint = (f"stop the daemon, move the store aside (mv {path} {path}.corrupt) and restore the log from a "
            "peer or the hub: python -m edge.restore --config EDGE.toml --from coap://HUB:5683")
    data = path / "data.mdb"
    try:
        env = lmdb.open(str(path), map_size=map_size, max_dbs=max_dbs, subdir=True, sync=True, metasync=True,
                        writemap=False, readahead=False, readonly=readonly, lock=True)
    except lmdb.MemoryError as exc:  # the map does not fit the address space: a setting, not a damaged file
        raise StoreError(f"store at {path} cannot be mapped with map_size {map_size}: {exc}",
                         hint="lower limits.map_size (the most the store may hold) to what the disk can hold") from None
    except lmdb.Error as exc:
        if not data.exists() or isinstance(exc, lmdb.DiskError | lmdb.LockError | lmdb.ReadonlyError):
            raise
        raise StoreCorrupt(f"store at {path} cannot be opened: {exc}", hint=hint) from None
    info, stat = env.info(), env.stat()
    needed = (info["last_pgno"] + 1) * stat["psize"]
    size = data.stat().st_size if data.exists() else 0
    if size < needed:
        env.close()
        raise StoreCorrupt(f"store file {data} is truncated: expected at least {needed} bytes, found {size}",
                           hint=hint)
    return env


def write_failure(path: Path, exc: lmdb.Error) -> StoreError | None:
    """What a failed LMDB write means for the node: a full file system (STORE_FULL, free space and it goes on)
    or a failing card (STORE_FAILING, replace it). None for an error that is neither."""
    code = getattr(exc, "code", None)
    if not isinstance(exc, lmdb.DiskError) and code not in _WRITE_ERRNOS:
        return None
    try:
        stat = os.statvfs(path)
        free: int | None = stat.f_bavail * stat.f_frsize
    except OSError:
        free = None
    if isinstance(exc, lmdb.DiskError) or code in (errno.ENOSPC, errno.EDQUOT) or (free is not None and free < NO_ROOM):
        return StoreFull(f"the file system holding {path} is full ({free} bytes free); nothing of this write was "
                         "stored",
                         hint=f"free space on the file system of {path} (old journals: journalctl --vacuum-size=50M) "
                              "or move data_dir to a bigger card; acknowledged records are safe")
    return StorageFailing(f"the storage under {path} refused a write ({exc}) with {free} bytes free: the SD card "
                          "is failing, not full; nothing of this write was stored",
                          hint="check `dmesg` for I/O errors, replace the card and restore the log from peers or "
                               "the hub (python -m edge.restore --config EDGE.toml --from coap://HUB:5683)")


class LmdbLogStore:
    """LogStore on one LMDB environment: fsync'd commits, one writer at a time, readers never blocked.

    Every write is one LMDB transaction: it commits whole or not at all, so a kill or a full map can
    never leave half a batch or a head that disagrees with the records.
    """

    def __init__(self, path: str | os.PathLike[str], *, map_size: int = 1 << 30, readonly: bool = False) -> None:
        self.path = Path(path)
        if not readonly:
            self.path.mkdir(parents=True, exist_ok=True)
        elif not (self.path / "data.mdb").exists():
            raise StoreError(f"no store at {self.path}: expected {self.path / 'data.mdb'}",
                             hint="start the daemon once, or point --config at the right data dir")
        self.map_size = map_size
        self._readonly = readonly
        self._env = _open_env(self.path, map_size=map_size, max_dbs=len(_DBS) + 1, readonly=readonly)
        if readonly:
            self._db = {n: self._env.open_db(n.encode(), create=False) for n in _DBS}
        else:
            self._db = {n: self._env.open_db(n.encode()) for n in _DBS}
        self._lock = threading.Lock()
        self._closed = False
        self._region: tuple[int, int] | None = None  # (start, length) of the map, once looked up
        self._listeners: list[Listener] = []
        self._blocked: set[bytes] = set()
        self._damaged: set[tuple[bytes, int]] = set()  # (device, seq) never served until a good copy returns
        # device id -> bytes of its records held, for each log but the own one: counted once (`_replica_bytes`),
        # then kept by each commit that takes records in, so that `receive`'s room costs no scan.
        self._replica: dict[bytes, int] | None = None
        with self._env.begin(write=not readonly) as txn:
            version = txn.get(b"layout", db=self._db["meta"])
            if version is None and not readonly:
                txn.put(b"layout", str(LAYOUT_VERSION).encode(), db=self._db["meta"])
            elif version is not None and version != str(LAYOUT_VERSION).encode():
                self._env.close()
                raise StoreLayoutError(
                    f"store at {self.path} has layout {version.decode(errors='replace')!r}; this release "
                    f"reads layout {LAYOUT_VERSION!r} only",
                    hint="run the release that wrote it, or migrate the data dir; nothing was changed")
            own = txn.get(b"own", db=self._db["meta"])
            self._own = bytes(own) if own else None
            for key, _ in txn.cursor(db=self._db["forks"]):
                self._blocked.add(bytes(key[:16]))

    # -- identity ------------------------------------------------------------------------------------

    def own_device(self) -> bytes | None:
        return self._own

    def claim(self, device_id: bytes) -> None:
        """Bind the store to this device's key; a data dir never silently changes owner."""
        if self._own is not None:
            if self._own != device_id:
                raise WrongDevice(f"data dir {self.path} belongs to device {self._own.hex()}, the key loaded is "
                                  f"device {device_id.hex()}",
                                  hint="use that device's key file, or another data dir for a new device")
            return
        with self._write() as txn:
            txn.put(b"own", device_id, db=self._db["meta"])
            self._own = device_id
            if self._replica is not None:
                self._replica.pop(device_id, None)

    def add_listener(self, listener: Listener) -> None:
        """Call `listener(device_id, new_state)` after each commit that extends a log (from the writer's
        thread)."""
        self._listeners.append(listener)

    # -- reads ---------------------------------------------------------------------------------------

    def state(self, device_id: bytes) -> ChainState | None:
        with self._env.begin() as txn:
            data = txn.get(device_id, db=self._db["heads"])
        return ChainState.from_cbor(bytes(data)) if data else None

    def log_length(self, device_id: bytes) -> int:
        state = self.state(device_id)
        return state.length if state else 0

    def _states(self) -> Iterator[ChainState]:
        with self._env.begin() as txn:
            for _, value in txn.cursor(db=self._db["heads"]):
                yield ChainState.from_cbor(bytes(value))

    def heads(self) -> list[Head]:
        """How far each log goes, as far as it can be served: a log with a damaged record shows the head
        before it, so a peer or the hub that holds more offers the rest again and the good copy comes back."""
        damaged = self.damaged()
        return [Head.of(s) if s.device_id not in damaged else self._intact_head(s.device_id, damaged[s.device_id][0])
                for s in self._states()]

    def _intact_head(self, device_id: bytes, length: int) -> Head:
        with self._env.begin() as txn:
            while length:
                key = _seq_key(device_id, length - 1)
                data = txn.get(key, db=self._db["records"])
                if data is not None and self._intact(txn, key, bytes(data)):
                    return Head(device_id=device_id, length=length, head=hashlib.sha256(bytes(data)).digest())
                length -= 1
        return Head.of(ChainState.empty(device_id))

    def damaged(self) -> dict[bytes, list[int]]:
        """Damaged records found since the store opened, awaiting a good copy: device -> sorted seqs."""
        out: dict[bytes, list[int]] = {}
        for device_id, seq in sorted(self._damaged):
            out.setdefault(device_id, []).append(seq)
        return out

    def _intact(self, txn: lmdb.Transaction, key: bytes, raw: bytes) -> bool:
        """Whether `raw` is still the record stored at `key`: its hash is an id the store holds, at this key."""
        return txn.get(hashlib.sha256(raw).digest(), db=self._db["ids"]) == key

    def _refuse(self, device_id: bytes, seq: int) -> DamagedRecord:
        if (device_id, seq) not in self._damaged:
            self._damaged.add((device_id, seq))
            log.error("RECORD DAMAGED: device %s seq %d in %s: the stored bytes no longer hash to the record's id; "
                      "it is not served to peers or the hub and comes back from the first peer or hub that "
                      "offers it (`python -m edge.restore --config EDGE.toml --check` checks the whole store)",
                      device_id.hex(), seq, self.path)
        return DamagedRecord(f"this edge's copy of device {device_id.hex()} seq {seq} is damaged (its bytes no "
                             "longer hash to its id); it is not served",
                             hint="a peer or the hub that holds the record restores it at the next sync")

    def check(self, *, budget: int = 1 << 16, rng: random.Random | None = None) -> list[tuple[bytes, int]]:
        """Hash stored records against their ids and note the damaged ones (the start-up pass): every record
        of a store of at most `budget` records, else each log's last 64 records and random runs of 64 of the
        rest. Reads check every record they serve anyway; this finds damage before a peer asks."""
        states = [s for s in self._states() if s.length]
        total = sum(s.length for s in states)
        ranges: list[tuple[bytes, int, int]] = []
        for s in states:
            if total <= budget:
                ranges.append((s.device_id, 0, s.length))
                continue
            tail = max(0, s.length - 64)
            ranges.append((s.device_id, tail, s.length))
            runs = min(max(budget * s.length // total // 64 - 1, 1), tail // 64)
            for run in sorted((rng or random.Random()).sample(range(tail // 64), runs)):
                ranges.append((s.device_id, run * 64, run * 64 + 64))
        found = []
        try:
            with self._env.begin() as txn:
                cur = txn.cursor(db=self._db["records"])
                for device_id, start, end in ranges:
                    last = _seq_key(device_id, end)
                    if not cur.set_range(_seq_key(device_id, start)):
                        continue
                    for key, value in cur:
                        if key >= last:
                            break
                        if not self._intact(txn, bytes(key), bytes(value)):
                            found.append((device_id, _U64.unpack(key[16:])[0]))
        except lmdb.Error as exc:  # the B-tree itself is damaged, not only a record: the file must go
            raise StoreCorrupt(f"store at {self.path} cannot be read through: {exc}",
                               hint=f"stop the daemon, move the store aside (mv {self.path} {self.path}.corrupt) "
                                    "and restore the log: python -m edge.restore --config EDGE.toml "
                                    "--from coap://HUB:5683") from None
        for device_id, seq in found:
            self._refuse(device_id, seq)
        log.log(logging.ERROR if found else logging.INFO, "store check: %d damaged of %d records checked in %d logs",
                len(found), sum(end - start for _, start, end in ranges), len(states))
        return found

    def logs(self) -> list[LogInfo]:
        blocked = self.blocked()
        return [LogInfo(device_id=s.device_id, length=s.length, head=s.head, time=s.time, boot=s.boot,
                        own=s.device_id == self._own, forked=s.device_id in blocked) for s in self._states()]

    def log_range(self, device_id: bytes, start: int, end: int) -> list[bytes]:
        if len(device_id) != 16 or start < 0 or end <= start:
            return []
        out: list[bytes] = []
        last = _seq_key(device_id, end)
        damaged = None
        with self._env.begin() as txn:
            cur = txn.cursor(db=self._db["records"])
            if not cur.set_key(_seq_key(device_id, start)):
                return out
            for key, value in cur:
                if key >= last:
                    break
                raw = bytes(value)
                if not self._intact(txn, bytes(key), raw):  # never served: the range ends before it
                    damaged = _U64.unpack(key[16:])[0]
                    break
                out.append(raw)
        if damaged is not None:
            error = self._refuse(device_id, damaged)
            if not out:
                raise error
        return out

    def get(self, device_id: bytes, seq: int) -> bytes | None:
        key = _seq_key(device_id, seq)
        with self._env.begin() as txn:
            data = txn.get(key, db=self._db["records"])
            if data is None:
                return None
            raw = bytes(data)
            intact = self._intact(txn, key, raw)
        if not intact:
            raise self._refuse(device_id, seq)
        return raw

    def locate(self, record_id: bytes) -> tuple[bytes, int] | None:
        with self._env.begin() as txn:
            data = txn.get(record_id, db=self._db["ids"])
        if data is None:
            return None
        return bytes(data[:16]), _U64.unpack(data[16:24])[0]

    def forks(self) -> list[ForkEvidence]:
        with self._env.begin() as txn:
            return [ForkEvidence.from_cbor(bytes(v)) for _, v in txn.cursor(db=self._db["forks"])]

    def blocked(self) -> frozenset[bytes]:
        return frozenset(self._blocked)

    def cursor(self, peer: str, device_id: bytes) -> int:
        """How far the sync with `peer` has confirmed `device_id`'s log (0 when never)."""
        with self._env.begin() as txn:
            data = txn.get(peer.encode() + b"\x00" + device_id, db=self._db["cursors"])
        return _U64.unpack(data)[0] if data else 0

    def set_cursor(self, peer: str, device_id: bytes, seq: int) -> None:
        with self._write() as txn:
            txn.put(peer.encode() + b"\x00" + device_id, _U64.pack(seq), db=self._db["cursors"])

    def usage(self) -> dict[str, int]:
        info = self._env.info()
        stat = self._env.stat()
        used = (info["last_pgno"] + 1) * stat["psize"]
        with self._env.begin() as txn:
            records = txn.stat(self._db["records"])["entries"]
        return {"map_size": info["map_size"], "used_bytes": used, "records": records}

    # -- writes --------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _write(self) -> Iterator[lmdb.Transaction]:
        if self._readonly:
            raise StoreError("store opened read-only")
        with self._lock:
            txn = self._env.begin(write=True)
            try:
                yield txn
                txn.commit()
                self._unmap()
            except lmdb.MapFullError:
                txn.abort()
                raise StoreFull(f"the store's map of {self.map_size} bytes is full at {self.path}; nothing of "
                                "this write was stored",
                                hint="raise limits.map_size in the config and restart; acknowledged records "
                                     "are safe") from None
            except lmdb.Error as exc:
                txn.abort()
                failure = write_failure(self.path, exc)
                if failure is None:
                    raise
                log.error("%s (%s)", failure, failure.hint)
                raise failure from exc
            except BaseException:
                txn.abort()
                raise

    def _put(self, txn: lmdb.Transaction, record: Record) -> None:
        where = _seq_key(record.device_id, record.seq)
        txn.put(where, record.raw, db=self._db["records"], overwrite=False)
        txn.put(record.id, where, db=self._db["ids"])
        if record.kind == "key" and record.body is not None:
            txn.put(where, record.body["pubkey"], db=self._db["keys"])

    def append_own(self, records: Sequence[Record], *, staged: Callable[[], None] | None = None) -> ChainState:
        """Store records this device signed, in one durable commit. They must extend the stored head.

        `staged()` is called when every write is done and only the commit (its fsync) is left: the caller may
        then use the GIL for other work without holding these writes up, since each LMDB put gives it back."""
        if not records:
            raise StoreError("append_own: nothing to append")
        device_id = records[0].device_id
        if self._own is not None and device_id != self._own:
            raise WrongDevice(f"append_own: records of device {device_id.hex()}, this store is "
                              f"{self._own.hex()}")
        with self._write() as txn:
            data = txn.get(device_id, db=self._db["heads"])
            state = ChainState.from_cbor(bytes(data)) if data else ChainState.empty(device_id)
            first = records[0]
            if first.seq != state.length or first.prev != state.head:
                raise StaleHead(f"own records start at seq {first.seq}; the stored log has length "
                                f"{state.length}")
            for record in records:
                # Our own records are checked for linkage only: the signer that made them is ours.
                state, _ = link(state, record)
                self._put(txn, record)
            txn.put(device_id, state.to_cbor(), db=self._db["heads"])
            if staged is not None:
                staged()
        self._notify(device_id, state)
        return state

    def receive(self, device_id: bytes, raws: Sequence[bytes], *, revoked_from: int | None = None,
                max_length: int | None = None, room: ReplicaRoom | None = None) -> dict[str, Any]:
        """Verify and store records offered for `device_id`'s log (sync's LogHolder contract)."""
        return self.receive_records(device_id, raws, revoked_from=revoked_from, max_length=max_length,
                                    room=room).to_json()

    def replicas(self) -> tuple[int, int]:
        """The logs of other devices than this one the store holds, and the bytes of their records."""
        with self._lock, self._env.begin() as txn:
            held = self._replica_bytes(txn)
            return len(held), sum(held.values())

    def _replica_bytes(self, txn: lmdb.Transaction) -> dict[bytes, int]:
        """Bytes held of each replica log (not the own one), counted on first use (one pass over them; the own
        log's records are skipped, not read). Called with `_lock` held."""
        if self._replica is None:
            held: dict[bytes, int] = {}
            records = txn.cursor(db=self._db["records"])
            for key in txn.cursor(db=self._db["heads"]).iternext(keys=True, values=False):
                device = bytes(key)
                if device == self._own:
                    continue
                total = 0
                if records.set_range(device):
                    for where, raw in records:
                        if where[:16] != device:
                            break
                        total += len(raw)
                held[device] = total
            self._replica = held
        return self._replica

    def _no_room(self, txn: lmdb.Transaction, device_id: bytes, room: ReplicaRoom) -> str | None:
        """Why `room` leaves no place for more records of `device_id`'s log, or None: a log not held yet past
        `room.logs` logs, or any log once the replicas hold `room.bytes`. Never the own log."""
        if device_id == self._own:
            return None
        held = self._replica_bytes(txn)
        used = sum(held.values())
        fix = f"raise {room.setting}, or free room on this edge"
        if device_id not in held and len(held) >= room.logs:
            return str(LimitExceeded(
                f"this edge keeps at most {room.logs} logs of other devices and holds {len(held)}: the log of "
                f"{device_id.hex()} is not kept here ({fix})"))
        if used >= room.bytes:
            return str(LimitExceeded(
                f"this edge keeps at most {room.bytes} bytes of other devices' logs and holds {used}: no more of "
                f"{device_id.hex()} is kept here ({fix})"))
        return None

    def receive_records(self, device_id: bytes, raws: Sequence[bytes], *, revoked_from: int | None = None,
                        max_length: int | None = None, room: ReplicaRoom | None = None) -> Received:
        """Verify offered records against the stored log (ledger's `accept`) and keep the good prefix, durably.

        A record we hold (same id) is a duplicate: resending is always safe. A validly signed record at a
        seq we hold with another id is a fork: both are kept as evidence and the device is blocked. Records
        at or past `revoked_from` are refused with REVOKED_KEY, and past a quota of `max_length` records with
        LIMIT_EXCEEDED; so are new records of another device's log that `room` leaves no place for (see
        `ReplicaRoom`): none of them is stored, and duplicates are still counted. A request that starts below the
        bytes bound is taken whole, so the replicas may pass it by one request's records.
        """
        if len(device_id) != 16:
            raise MalformedRecord(f"device id: expected 16 bytes, got {len(device_id)}")
        if device_id in self._blocked:
            raise DeviceBlocked(f"device {device_id.hex()} forked; its log is frozen",
                                hint="an operator must look at the fork evidence")
        with self._write() as txn:
            data = txn.get(device_id, db=self._db["heads"])
            start_state = ChainState.from_cbor(bytes(data)) if data else ChainState.empty(device_id)
            restored = self._restore(txn, device_id, raws)
            result = accept(start_state, raws, held=_HeldLog(self, txn, device_id), revoked_from=revoked_from,
                            max_length=max_length)
            full = None
            if room is not None and result.records and result.fork is None:
                full = self._no_room(txn, device_id, room)
            if full is not None:  # none of them is stored: the log stays as it was
                result = dataclasses.replace(result, records=[], state=start_state)
            for record in result.records:
                self._put(txn, record)
            if result.fork is not None:
                txn.put(_seq_key(device_id, result.fork.seq), result.fork.to_cbor(), db=self._db["forks"])
            if result.state != start_state:
                txn.put(device_id, result.state.to_cbor(), db=self._db["heads"])
            if self._replica is not None and device_id != self._own and result.state != start_state:
                # Counted before the commit, under the writer's lock: a commit that fails leaves it high, not low.
                self._replica[device_id] = self._replica.get(device_id, 0) + sum(len(r.raw) for r in result.records)
        for seq in restored:
            self._damaged.discard((device_id, seq))
            log.warning("record restored: device %s seq %d is intact again from a good copy", device_id.hex(), seq)
        if result.fork is not None:
            self._blocked.add(device_id)
            log.warning("fork of device %s at seq %d: log frozen", device_id.hex(), result.fork.seq)
        if result.records:
            self._notify(device_id, result.state)
        return Received(accepted=len(result.records), duplicates=result.duplicates, length=result.state.length,
                        problem=full if full is not None else None if result.problem is None else str(result.problem),
                        fork=result.fork is not None)

    def _restore(self, txn: lmdb.Transaction, device_id: bytes, raws: Sequence[bytes]) -> list[int]:
        """Put back each offered record whose id the store holds for this log but whose stored bytes differ
        (damaged at rest); return their seqs. A record we do not hold costs one index lookup."""
        restored = []
        for raw in raws:
            where = txn.get(hashlib.sha256(raw).digest(), db=self._db["ids"])
            if where is None or where[:16] != device_id:
                continue
            stored = txn.get(where, db=self._db["records"])
            if stored is not None and bytes(stored) != raw:
                txn.put(where, raw, db=self._db["records"])
                restored.append(_U64.unpack(where[16:24])[0])
        return restored

    def _key_at(self, txn: lmdb.Transaction, device_id: bytes, seq: int) -> bytes | None:
        """The key that signs the record at `seq` > 0: named by the last key record before it."""
        cur = txn.cursor(db=self._db["keys"])
        found = cur.prev() if cur.set_range(_seq_key(device_id, seq)) else cur.last()
        if not found or cur.key()[:16] != device_id:
            return None
        return bytes(cur.value())

    def _notify(self, device_id: bytes, state: ChainState) -> None:
        for listener in self._listeners:
            try:
                listener(device_id, state)
            except Exception:
                log.exception("store listener failed")

    def release_pages(self) -> None:
        """Unmap the store's pages from this process (`_unmap`). Every write unmaps what it read; this catches
        what the reads since have mapped in. It reads nothing from /proc: reading a process's smaps holds its
        memory map's lock, and on a busy machine the event loop's next allocation would wait for it."""
        with self._lock:
            if not self._closed:
                self._unmap()

    def mapped_bytes(self) -> int:
        """How many bytes of the store's map are resident in this process now (from /proc/self/smaps, so for
        diagnostics and tests, not for a hot path)."""
        region = self._map_region()
        return 0 if region is None else _resident_kb(region[0]) * 1024

    def _map_region(self) -> tuple[int, int] | None:
        """Where LMDB maps the file: looked up once, as LMDB maps it once, at the fixed map size."""
        if self._region is None:
            self._region = _mapped(self.path / "data.mdb")
        return self._region

    def _unmap(self) -> None:
        """madvise(MADV_DONTNEED) on LMDB's read-only map, with the lock held (so the map is not closed
        meanwhile and the address range is still LMDB's).

        Without it the process keeps every page of the store it ever read mapped in, and the id index is read
        and written at random, so its resident memory grows with the store: each read maps in the 64 KB around
        it (the kernel's fault-around, which MADV_RANDOM does not stop), so a few hundred writes a second keep
        megabytes mapped. The pages stay in the page cache, which the kernel takes back when memory is short;
        the few that are read again come back on the next read (a minor fault, no I/O while they are cached).
        One madvise over a map that is mostly not mapped in costs microseconds."""
        region = self._map_region()
        if region is not None and _LIBC is not None:
            _LIBC.madvise(ctypes.c_void_p(region[0]), ctypes.c_size_t(region[1]), _MADV_DONTNEED)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._env.close()


@dataclass(frozen=True, slots=True)
class _HeldLog:
    """One replica inside a write transaction, as the acceptance path asks for it."""

    store: LmdbLogStore
    txn: lmdb.Transaction
    device_id: bytes

    def raw_at(self, seq: int) -> bytes | None:
        data = self.txn.get(_seq_key(self.device_id, seq), db=self.store._db["records"])
        return bytes(data) if data is not None else None

    def key_at(self, seq: int) -> bytes | None:
        return self.store._key_at(self.txn, self.device_id, seq)

    def id_at(self, seq: int) -> bytes | None:
        data = self.txn.get(_seq_key(self.device_id, seq), db=self.store._db["records"])
        return hashlib.sha256(data).digest() if data is not None else None


@dataclass(slots=True)
class _Job:
    items: list[tuple[str, dict[str, Any], bool]]
    future: asyncio.Future[list[Record]]
    urgent: bool
    made_at: int | None = None  # the clock when it came, for a job that waited while the writer was held
    moved: float = 0.0  # with it, how far the clock had stepped by then (edge/clockwatch.py)


@dataclass(slots=True)
class _Batch:
    """Jobs signed together on one head, committed together in one transaction."""

    jobs: list[_Job]
    results: list[list[Record] | BaseException]  # per job: its records, or why it alone failed
    records: list[Record]
    base: ChainState  # the head it was signed on
    count: int  # items queued, signed or not
    attempts: int = 0


@dataclass(slots=True)
class _Commit:
    """A batch handed to the writer thread: `staged` when only its fsync is left, `done` with its outcome."""

    batch: _Batch
    staged: asyncio.Future[None]
    done: asyncio.Future[BaseException | None]


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


# While taps come, a batch holds what signs in this much CPU time (about 90 records here).
TAP_SIGN_BUDGET_S = 0.004
# Batches stay small this long after the last tap: taps come in bursts at a door.
TAP_WINDOW_S = 1.0
STEPS_KEPT = 64  # clock steps noted in one boot (the sync tells the last few)


class GroupCommit:
    """The asyncio front of the own log: many appends, one signed batch, one fsync'd commit.

    Callers `await append(...)` and get their Record only after the commit that holds it is durable. Signing
    runs on the event loop, the LMDB commit in one writer thread, and the two overlap: while batch N sits in
    fsync (the GIL released) batch N+1 is signed on N's head, so throughput follows the signing rate and the
    batch size, not the fsync count. Urgent appends (taps: someone stands at the reader) go to the front of
    the next batch, and while they come batches are cut to a few milliseconds of signing.
    """

    def __init__(self, store: LmdbLogStore, signer: Signer, *, clock: Callable[[], int], boot: int,
                 max_batch: int = 4096, max_pending: int = 20000, moved: Callable[[], float] | None = None) -> None:
        self._store = store
        self._signer = signer
        self._clock = clock
        # How far `clock` has stepped in all, read right after it dates a record (edge/clockwatch.py): where it
        # differs from the record signed before, the clock stepped between them, noted in `steps` (seq, seconds).
        self._moved = moved
        self._moved_last: float | None = None
        self.steps: list[tuple[int, int]] = []
        self._made_at: int | None = None  # the time of the job being signed, if it keeps its own (`_time`)
        self._held_since: int | None = None  # when a held start began: a new log's genesis is of then
        self._boot = boot
        self.max_batch = max_batch
        self.max_pending = max_pending
        self._jobs: deque[_Job] = deque()
        self._urgent: deque[_Job] = deque()
        self._pending = 0
        self._pending_urgent = 0
        self._last_urgent = -TAP_WINDOW_S
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="jejak-commit")
        self._builder: ChainBuilder | None = None
        self._released = asyncio.Event()  # set when records may be signed (start, or release() after a hold)
        self._closing = False
        self._sign_s = 50e-6  # CPU seconds to sign one record, a moving average: sizes batches while taps come
        self.stats = {"records": 0, "commits": 0, "failed": 0, "refused_busy": 0, "commit_us_total": 0}
        self.last_error: str | None = None

    @property
    def device_id(self) -> bytes:
        from ledger import device_id_for

        return device_id_for(self._signer.public_key)

    @property
    def pending(self) -> int:
        return self._pending

    @property
    def batch_limit(self) -> int:
        """Records a batch may hold while taps are coming: what signs in TAP_SIGN_BUDGET_S. A tap waits behind
        at most the commit in flight and its own batch, so with an fsync of F it waits about 2F plus twice
        this budget, whatever the card, while a card's slower fsync is still shared by a whole batch."""
        return max(32, min(self.max_batch, int(TAP_SIGN_BUDGET_S / self._sign_s)))

    async def start(self, *, held: bool = False) -> ChainState:
        """Write genesis if the log is new; then accept appends. Returns the own log's state.

        `held`: appends are accepted and wait, but nothing is signed (genesis neither) until `release()`: the
        daemon first has the hub confirm the head, since records signed on an old copy of the store fork the log.
        """
        loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        if held:
            self._held_since = self._clock()
            state = await loop.run_in_executor(self._executor, self._claim)
        else:
            state = await loop.run_in_executor(self._executor, self._ensure_genesis)
            self._released.set()
        self._task = asyncio.create_task(self._run(), name="group-commit")
        return state

    @property
    def held(self) -> bool:
        return not self._released.is_set()

    async def release(self, *, boot: int | None = None) -> ChainState:
        """Sign what waits, and what comes, on the head the store holds now (a catch-up from the hub may have moved
        it; genesis if it holds none), with boot counter `boot` from here on."""
        if not self.held:
            assert self._builder is not None
            return self._builder.state
        if boot is not None:
            self._boot = boot
        state = await asyncio.get_running_loop().run_in_executor(self._executor, self._ensure_genesis)
        self._released.set()
        return state

    def refuse_held(self, error: BaseException) -> int:
        """Fail every append that waits for `release()` with `error` (they were never signed); how many."""
        if not self.held:
            return 0
        jobs = [*self._urgent, *self._jobs]
        self._urgent.clear()
        self._jobs.clear()
        for job in jobs:
            self._pending -= len(job.items)
            if job.urgent:
                self._pending_urgent -= len(job.items)
            if not job.future.done():
                job.future.set_exception(error)
        return len(jobs)

    async def alive(self, timeout: float) -> bool:
        """Whether the commit loop runs and its writer thread answers within `timeout` (the watchdog asks: a
        thread stuck in fsync on a dying SD card must end in a restart, not a daemon that acks nothing)."""
        if self._task is None or self._task.done():
            return False
        try:
            async with asyncio.timeout(timeout):
                await asyncio.get_running_loop().run_in_executor(self._executor, _nothing)
        except TimeoutError:
            return False
        return True

    def _claim(self) -> ChainState:
        device_id = self.device_id
        self._store.claim(device_id)
        return self._store.state(device_id) or ChainState.empty(device_id)

    def _ensure_genesis(self) -> ChainState:
        device_id = self.device_id
        self._store.claim(device_id)
        state = self._store.state(device_id)
        if state is None or state.length == 0:
            since = self._held_since
            builder = ChainBuilder(self._signer, clock=self._clock if since is None else lambda: since, boot=self._boot)
            state = self._store.append_own([builder.genesis()])
        self._builder = ChainBuilder(self._signer, clock=self._time, boot=max(self._boot, state.boot),
                                     state=state)
        return state

    async def append(self, kind: str, body: dict[str, Any], *, detach: bool = False,
                     urgent: bool = False) -> Record:
        """Append one record; returns it once the commit holding it is durable. An urgent record (a tap)
        goes into the next batch ahead of everything not urgent; urgent records keep their order."""
        return (await self._enqueue([(kind, body, detach)], urgent))[0]

    async def append_many(self, items: Sequence[tuple[str, dict[str, Any], bool]]) -> list[Record]:
        """Append items as consecutive records of one commit; all are stored or none is."""
        if not items:
            if self._task is None or self._closing:
                raise StoreError("the log writer is not running", hint="start() it first; it stops at close()")
            return []
        return await self._enqueue(list(items), False)

    def _enqueue(self, items: list[tuple[str, dict[str, Any], bool]], urgent: bool) -> asyncio.Future[list[Record]]:
        if self._wake is None or self._closing:
            raise StoreError("the log writer is not running", hint="start() it first; it stops at close()")
        for kind, _, _ in items:
            if kind == "key":
                raise MalformedRecord("key records are made by the device itself, not submitted")
        # Bodies are validated where they are signed: a bad one fails its own job there and nothing else.
        waiting = self._pending_urgent if urgent else self._pending
        if waiting + len(items) > self.max_pending:
            self.stats["refused_busy"] += 1
            raise StoreBusy(f"{waiting} records are waiting for their commit; the limit is "
                            f"{self.max_pending}", hint="retry in a moment")
        future: asyncio.Future[list[Record]] = asyncio.get_running_loop().create_future()
        # A record that waits for the hub to confirm the head (`held`) is signed with the time it came: a tap is
        # when the staff tapped, not when the edge could sign it.
        made_at = self._clock() if self.held else None
        moved = self._moved() if made_at is not None and self._moved is not None else 0.0
        (self._urgent if urgent else self._jobs).append(_Job(items=items, future=future, urgent=urgent,
                                                             made_at=made_at, moved=moved))
        self._pending += len(items)
        if urgent:
            self._pending_urgent += len(items)
            self._last_urgent = time.monotonic()
        self._wake.set()
        return future

    def _take(self) -> list[_Job]:
        """The next batch: urgent jobs first, then the others; as big as it can be (fewer commits, less CPU a
        record) unless taps are coming, when it is cut to what signs while one commit runs."""
        limit = self.batch_limit if time.monotonic() - self._last_urgent < TAP_WINDOW_S else self.max_batch
        jobs: list[_Job] = []
        count = 0
        for queue in (self._urgent, self._jobs):
            while queue and (not jobs or count + len(queue[0].items) <= limit):
                job = queue.popleft()
                jobs.append(job)
                count += len(job.items)
        return jobs

    def _take_urgent(self) -> list[_Job]:
        jobs = list(self._urgent)
        self._urgent.clear()
        return jobs

    async def _run(self) -> None:
        assert self._wake is not None
        loop = asyncio.get_running_loop()
        committing: _Commit | None = None
        ready: _Batch | None = None  # signed, to commit after the one in flight
        while True:
            if committing is None:
                if ready is None:
                    self._wake.clear()
                    if not (self._urgent or self._jobs):
                        await self._wake.wait()
                        continue
                    await self._released.wait()  # held only before the first batch: none is in flight
                    ready = self._sign(self._take())
                elif self._urgent:
                    # Taps that came while this batch waited for the one before it go in with it, signed on
                    # its end: they wait for one commit, not two.
                    ready = self._sign(self._take_urgent(), into=ready)
                committing, ready = self._submit(loop, ready), None
                # Sign the next batch while this one waits for its fsync, but only once its writes are staged:
                # each LMDB put gives the GIL back, and signing would make every one of them wait for it.
                # Meanwhile the waiters answered a moment ago queue their next records.
                await committing.staged
                if self._urgent or self._jobs:
                    ready = self._sign(self._take())
            batch, done = committing.batch, committing.done
            committing = None
            try:
                error = await done
            except asyncio.CancelledError:
                raise
            except BaseException as exc:  # the writer thread could not even run
                error = exc
            if error is None:
                self._answer(batch)
                continue
            # Nothing of the batch was stored, and the batch signed after it hangs on its records: sign both
            # again on the stored head (a peer may have extended our own log: StaleHead), or fail this one.
            try:
                stored = self._store.state(batch.base.device_id)
            except Exception:  # the store cannot even be read: the head the batch was signed on stands
                stored = None
            self._rebuild(stored or batch.base)
            if isinstance(error, StaleHead) and batch.attempts < 2:
                committing = self._submit(loop, self._sign(batch.jobs, batch.attempts + 1))
            else:
                if isinstance(error, StaleHead):
                    error = StoreError("own log keeps changing under the writer; giving up on this batch")
                self._fail(batch, error)
            if ready is not None:
                ready = self._sign(ready.jobs, ready.attempts)

    def _submit(self, loop: asyncio.AbstractEventLoop, batch: _Batch) -> _Commit:
        staged: asyncio.Future[None] = loop.create_future()
        if not batch.records:  # every job of it failed alone: nothing to commit
            done: asyncio.Future[BaseException | None] = loop.create_future()
            done.set_result(None)
            staged.set_result(None)
            return _Commit(batch=batch, staged=staged, done=done)

        def signal() -> None:  # writer thread
            loop.call_soon_threadsafe(_settle, staged)

        done = loop.run_in_executor(self._executor, self._store_batch, batch.records, signal)
        return _Commit(batch=batch, staged=staged, done=done)

    def _sign(self, jobs: list[_Job], attempts: int = 0, *, into: _Batch | None = None) -> _Batch:
        """Sign every job on the builder's head (on the event loop), or on the end of `into`, the batch signed
        last; a job that cannot be signed fails alone."""
        builder = self._builder
        assert builder is not None
        base = builder.state if into is None else into.base
        results: list[list[Record] | BaseException] = [] if into is None else into.results
        records: list[Record] = [] if into is None else into.records
        signed = len(records)
        started = time.thread_time()  # CPU time: other processes on the cores must not shrink the batches
        for job in jobs:
            before = builder.state
            self._made_at = job.made_at
            try:
                made = []
                for kind, body, detach in job.items:
                    made.append(builder.append(kind, body, detach=detach))
                    if self._moved is not None:
                        self._dated(made[-1].seq, job.moved if job.made_at is not None else self._moved())
            except Exception as exc:
                builder = self._rebuild(before)  # drop what this job signed; the others stand
                results.append(_signing_error(exc))
                continue
            finally:
                self._made_at = None
            records.extend(made)
            results.append(made)
        if len(records) - signed >= 16:  # a tap or two signed alone would count the call's own overhead as theirs
            per = max(time.thread_time() - started, 1e-6) / (len(records) - signed)
            self._sign_s += (per - self._sign_s) * 0.2
        if into is not None:
            into.jobs.extend(jobs)
            into.count += sum(len(j.items) for j in jobs)
            return into
        return _Batch(jobs=jobs, results=results, records=records, base=base,
                      count=sum(len(j.items) for j in jobs), attempts=attempts)

    def told_steps(self) -> list[tuple[int, int]]:
        """`steps`, and a step since the record signed last, noted at the seq the next record will have: the records
        before it were dated by the clock as it was, whether or not one was signed after."""
        steps = list(self.steps)
        builder, last = self._builder, self._moved_last
        if self._moved is not None and builder is not None and last is not None and (
                seconds := round(self._moved() - last)):
            steps.append((builder.state.length, seconds))
        return steps

    def _dated(self, seq: int, moved: float) -> None:
        """Record `seq` was dated by the clock when it had stepped by `moved` in all: a step since the record
        signed before it is noted at it."""
        last, self._moved_last = self._moved_last, moved
        if last is not None and (seconds := round(moved - last)):
            self._step(seq, seconds)

    def _step(self, seq: int, seconds: int) -> None:
        """The clock stepped by `seconds` before record `seq` was dated."""
        log.warning("the wall clock stepped by %+d s before record %d was signed; the records before it were "
                    "dated by the clock as it was (the hub is told, and times them by it)", seconds, seq)
        if self.steps and self.steps[-1][0] >= seq:  # records signed again after a failed commit: seqs again
            seconds += self.steps.pop()[1]
        if seconds:
            self.steps.append((seq, seconds))
            del self.steps[:-STEPS_KEPT]

    def _store_batch(self, records: list[Record], staged: Callable[[], None]) -> BaseException | None:
        """Commit signed records in one transaction (writer thread); the error if nothing was stored."""
        started = time.perf_counter()
        try:
            self._store.append_own(records, staged=staged)
        except (StaleHead, StoreError) as exc:
            self.last_error = str(exc)
            return exc
        except Exception as exc:
            self.last_error = repr(exc)
            log.exception("commit failed")
            return StoreError(f"commit failed: {exc!r}")
        finally:
            staged()  # again, harmless: a commit that failed before its writes were staged must not hang the loop
        took = time.perf_counter() - started
        self.stats["records"] += len(records)
        self.stats["commits"] += 1
        self.stats["commit_us_total"] += int(took * 1e6)
        self.last_error = None
        return None

    def _answer(self, batch: _Batch) -> None:
        self._settled(batch)
        for job, result in zip(batch.jobs, batch.results, strict=True):
            if job.future.done():
                continue
            if isinstance(result, BaseException):
                job.future.set_exception(result)
            else:
                job.future.set_result(result)

    def _fail(self, batch: _Batch, error: BaseException) -> None:
        self._settled(batch)
        self.stats["failed"] += len(batch.records)
        for job, result in zip(batch.jobs, batch.results, strict=True):
            if not job.future.done():
                job.future.set_exception(result if isinstance(result, BaseException) else error)

    def _settled(self, batch: _Batch) -> None:
        self._pending -= batch.count
        self._pending_urgent -= sum(len(j.items) for j in batch.jobs if j.urgent)

    def _time(self) -> int:
        """The time a record is signed with: now, or the time a job that waited for `release()` came, never before
        the time of the record signed last (urgent jobs go first, so those times may come out of order)."""
        if self._made_at is None:
            return self._clock()
        builder = self._builder
        return max(self._made_at, builder.state.time if builder is not None else 0)

    def _rebuild(self, state: ChainState) -> ChainBuilder:
        self._builder = ChainBuilder(self._signer, clock=self._time, boot=max(self._boot, state.boot),
                                     state=state)
        return self._builder

    async def close(self) -> None:
        """Finish every append already queued (they are durable and answered), then stop."""
        self._closing = True
        if self._task is not None and self._wake is not None:
            if self.held and (self._jobs or self._urgent):  # signed on the local head, as an edge offline does
                await self.release()
            while self._jobs or self._urgent or self._pending:
                self._wake.set()
                await asyncio.sleep(0.005)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._executor.shutdown(wait=True)


def _signing_error(exc: Exception) -> BaseException:
    """What the submitter of a job that could not be signed is told: its body was bad, or signing broke."""
    if isinstance(exc, LedgerError):
        return exc
    if isinstance(exc, ValueError | TypeError):
        return MalformedRecord(str(exc))
    log.exception("signing failed")
    return StoreError(f"signing failed: {exc!r}")


def _nothing() -> None:
    pass
