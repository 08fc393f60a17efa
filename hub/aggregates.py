"""Day aggregates the read models keep in the hub's store: one store, a namespace per domain (MBG, markets), on
LMDB beside the hub's log or in PostgreSQL tables with real columns; and, in the same store, the hub's alerts.

The read models write a day's aggregates once its answer no longer changes, and read them back for a day whose
raw records they no longer hold (pruned, or not refilled yet after a restart). What is stored is derived, never
truth: the log stays the only source, and a damaged or missing aggregate is computed again from it.

A namespace's day is three parts: `figures` (the day's counts, one real column each on PostgreSQL), `summary`
(what has no column: CBOR bytes the namespace encodes, e.g. its findings) and `rows` (one per subject of the
day, e.g. a school's delivery: a real-column table keyed by date and the row's first column). A SHA-256 digest
over the three is stored with them, so a damaged day is refused (`DamagedAggregate`) rather than answered.

The alerts (`KeptAlerts`) are not derived: when each was raised, resolved or updated, and the ones raised by hand,
cannot be told again from the log. They are written durably (fsync'd on LMDB, committed on PostgreSQL) as they
change, and read back when the hub starts, so its alert history and what it has raised go on across a restart.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import cbor2
import lmdb

from .journal import Lines
from .store import StoreError, StoreFull

log = logging.getLogger("jejak.hub.aggregates")

_NAME = re.compile(r"[a-z][a-z0-9_]{0,30}")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


class DamagedAggregate(StoreError):
    """A stored day aggregate whose bytes no longer match their digest or do not decode: it is not answered
    from, and the read models compute the day again from the records they hold."""

    code = "AGGREGATE_DAMAGED"
    coap = "5.00"
    http = 500
    exit_code = 57


@dataclass(frozen=True, slots=True, kw_only=True)
class Namespace:
    """A domain's day aggregates: its name, and on PostgreSQL its two tables (made by a migration of hub/pg.py)
    with their columns in the order of `DayAggregate.figures` and of each row, as (name, SQL type).

    `days_table` has the columns `date`, then `figures`, then `summary` and `digest`; `rows_table` has `date`
    then the row's columns, and (date, first row column) is its key."""

    name: str
    days_table: str
    figures: tuple[tuple[str, str], ...]
    rows_table: str
    rows: tuple[tuple[str, str], ...]

    def __post_init__(self) -> None:
        for name in (self.name, self.days_table, self.rows_table, *(c for c, _ in self.figures + self.rows)):
            if not _NAME.fullmatch(name):
                raise ValueError(f"aggregate namespace {self.name!r}: expected a lowercase name, got {name!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class DayAggregate:
    """One day of one namespace: its figures, its summary bytes and its rows (each a tuple in the namespace's
    column order; lists inside them are arrays). Rows are kept in the order of their first column."""

    date: str
    figures: tuple[Any, ...]
    summary: bytes
    rows: tuple[tuple[Any, ...], ...] = ()

    def __post_init__(self) -> None:
        if not _DATE.fullmatch(self.date):
            raise ValueError(f"day aggregate: expected a YYYY-MM-DD date, got {self.date!r}")
        keys = [r[0] for r in self.rows]
        if keys != sorted(keys) or len(set(keys)) != len(keys):
            raise ValueError(f"day aggregate {self.date}: rows must be in the order of distinct first columns")

    def digest(self) -> bytes:
        """SHA-256 over the canonical CBOR of figures, summary and rows: what a damaged copy no longer gives."""
        # Tuples and lists are both CBOR arrays: what a backend gives back as lists digests the same.
        return hashlib.sha256(cbor2.dumps([self.date, self.figures, self.summary, self.rows], canonical=True)).digest()


def checked(day: DayAggregate, digest: bytes, where: str) -> DayAggregate:
    """`day` as read back, if it still gives the digest stored with it; else DamagedAggregate."""
    if day.digest() != digest:
        raise DamagedAggregate(f"{where}: the stored day {day.date} no longer gives its digest",
                               hint="it is computed again from the records the read models hold")
    return day


class DayAggregates(Protocol):
    """A namespace's day aggregates (`AggregateStore.namespace`). Writes are one transaction each."""

    def put(self, days: Sequence[DayAggregate], *, delete: Iterable[str] = ()) -> None:
        """Delete the days `delete`, then store `days` (replacing what each date held), all or nothing."""
        ...

    def get(self, date: str) -> DayAggregate | None:
        """The stored day, None if there is none; DamagedAggregate if its stored bytes are damaged."""
        ...

    def delete(self, dates: Iterable[str]) -> None: ...

    def dates(self) -> list[str]:
        """The dates stored, in order."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class KeptAlert:
    """One alert as the hub lists it (`alert`, the listing's JSON object, with its `id`, `time` and, once
    resolved, `resolved_at`), and `seq`, its place in the order the hub raised them."""

    seq: int
    alert: dict[str, Any]

    def __post_init__(self) -> None:
        if (not isinstance(self.seq, int) or not isinstance(self.alert, dict) or not isinstance(self.alert.get("id"), str)
                or not isinstance(self.alert.get("time"), int)):
            raise ValueError(f"kept alert {self.seq}: expected an id and an integer time, got {self.alert!r}")

    @property
    def id(self) -> str:
        return str(self.alert["id"])


class KeptAlerts(Protocol):
    """The hub's alerts, open and resolved, in its store (`AggregateStore.alerts`). Each write is durable when
    it returns."""

    def put(self, alerts: Sequence[KeptAlert]) -> None:
        """Store each alert, replacing what its id held, all or nothing."""
        ...

    def delete(self, ids: Iterable[str]) -> None: ...

    def read(self) -> list[KeptAlert]:
        """Every alert kept, in `seq` order. One that no longer decodes is logged and left out."""
        ...

    def journal(self, name: str) -> Lines | None:
        """Where the alerts' journal `name` (what subscribers were told, the deliveries waiting) is kept with them:
        in a database (PostgreSQL, which outlives the hub's host and its state dir), or None for a file in the
        state dir (LMDB: the store is in data_dir itself, so the two go together)."""
        ...


class ImportedFiles(Protocol):
    """Price files operators imported, kept where the hub keeps its state (hub.pg.PgImports): each under its
    SHA-256 with what it was read with (`meta`), imported again at every start."""

    @property
    def where(self) -> str: ...

    def kept(self) -> list[tuple[str, dict[str, Any]]]:
        """(SHA-256 in hex, meta) of each file kept, by SHA-256."""
        ...

    def keep(self, sha256: str, meta: dict[str, Any], path: Path) -> None:
        """Keep the file at `path`, durably when it returns; a failure is a StoreError."""
        ...

    def write_to(self, sha256: str, out: BinaryIO) -> None:
        """The kept file's bytes into `out`."""
        ...


class AggregateStore(Protocol):
    """Where the read models keep day aggregates and the alerts: LmdbAggregates or hub.pg.PgAggregates."""

    def namespace(self, spec: Namespace) -> DayAggregates: ...
    def alerts(self) -> KeptAlerts: ...

    def journal(self, name: str) -> Lines | None:
        """Where the hub's journal `name` (the operators' quarantine decisions, the seed-2 device registrations,
        the clocks found off) is kept: in a database (PostgreSQL, which outlives the hub's host and its data_dir),
        or None for its file in data_dir (LMDB: the store is in data_dir itself, so the two go together)."""
        ...

    def imports(self) -> ImportedFiles | None:
        """Where imported price files are kept: in the database, or None for data_dir/imports (LMDB)."""
        ...

    def close(self) -> None: ...


class LmdbAggregates:
    """AggregateStore in an LMDB environment of its own (the hub puts it at `<data_dir>/aggregates`), one named
    database per namespace, a CBOR value per date.

    Not a database inside the hub's own environment: LMDB has one writer per environment, so a national day's
    aggregates written there would hold up the hub's commits of records for as long as the write takes, and a
    full map would refuse records. Apart, the log's commit path is untouched and the aggregates have their
    own map size; losing them loses nothing the log cannot give again."""

    def __init__(self, path: str | os.PathLike[str], *, map_size: int = 1 << 32, durable: bool = False) -> None:
        # Not fsync'd by default: a day lost in a power cut is computed again from the log.
        try:
            os.makedirs(path, exist_ok=True)
            self._env = lmdb.open(str(path), map_size=map_size, max_dbs=16, subdir=True, sync=durable,
                                  metasync=durable)
        except (lmdb.Error, OSError) as exc:
            raise StoreError(f"cannot open the day aggregates at {path}: {exc}",
                             hint="check the files' owner; the directory can be removed, the read models write "
                                  "the days again") from None
        self.path = os.fspath(path)

    def namespace(self, spec: Namespace) -> LmdbDayAggregates:
        return LmdbDayAggregates(self, spec)

    def alerts(self) -> LmdbKeptAlerts:
        return LmdbKeptAlerts(self)

    def journal(self, name: str) -> None:
        """None: the journals stay files in data_dir, beside this store."""
        return None

    def imports(self) -> None:
        """None: imported files stay in data_dir/imports, beside this store."""
        return None

    def close(self) -> None:
        self._env.close()


class LmdbDayAggregates:
    """One namespace of LmdbAggregates: key the date, value the CBOR array [figures, summary, rows, digest]."""

    def __init__(self, store: LmdbAggregates, spec: Namespace) -> None:
        self.spec = spec
        self._env = store._env
        self._db = self._env.open_db(spec.name.encode())
        self._where = f"day aggregates {spec.name!r} in {store.path}"

    def put(self, days: Sequence[DayAggregate], *, delete: Iterable[str] = ()) -> None:
        values = [(d.date.encode(), cbor2.dumps([d.figures, d.summary, d.rows, d.digest()], canonical=True))
                  for d in days]
        try:
            with self._env.begin(write=True) as txn:
                for date in delete:
                    txn.delete(date.encode(), db=self._db)
                for key, value in values:
                    txn.put(key, value, db=self._db)
        except lmdb.MapFullError as exc:
            raise StoreFull(f"{self._where} are full; nothing of the failed write was kept",
                            hint="the days are answered from the records held; raise the aggregates' map size") \
                from exc

    def get(self, date: str) -> DayAggregate | None:
        with self._env.begin() as txn:
            value = txn.get(date.encode(), db=self._db)
            data = None if value is None else bytes(value)
        if data is None:
            return None
        try:
            figures, summary, rows, digest = cbor2.loads(data)
            day = DayAggregate(date=date, figures=tuple(figures), summary=summary, rows=tuple(map(tuple, rows)))
        except (cbor2.CBORDecodeError, ValueError, TypeError) as exc:
            raise DamagedAggregate(f"{self._where}: the stored day {date} does not decode ({exc})",
                                   hint="it is computed again from the records the read models hold") from None
        return checked(day, digest, self._where)

    def delete(self, dates: Iterable[str]) -> None:
        self.put((), delete=dates)

    def dates(self) -> list[str]:
        with self._env.begin() as txn:
            return [bytes(k).decode() for k in txn.cursor(db=self._db).iternext(values=False)]


class LmdbKeptAlerts:
    """KeptAlerts in a named database `alerts` of LmdbAggregates' environment: key the alert's id, value the
    CBOR array [seq, alert]. The environment is not synced on commit (a lost day is computed again); what is
    written here is, by `sync` after each write."""

    def __init__(self, store: LmdbAggregates) -> None:
        self._env = store._env
        self._db = self._env.open_db(b"alerts")
        self._where = f"the alerts kept in {store.path}"

    def put(self, alerts: Sequence[KeptAlert]) -> None:
        self._write([(a.id.encode(), cbor2.dumps([a.seq, a.alert], canonical=True)) for a in alerts], ())

    def delete(self, ids: Iterable[str]) -> None:
        self._write((), [i.encode() for i in ids])

    def _write(self, puts: Sequence[tuple[bytes, bytes]], deletes: Sequence[bytes]) -> None:
        if not puts and not deletes:
            return
        try:
            with self._env.begin(write=True) as txn:
                for key in deletes:
                    txn.delete(key, db=self._db)
                for key, value in puts:
                    txn.put(key, value, db=self._db)
            self._env.sync(True)
        except lmdb.MapFullError as exc:
            raise StoreFull(f"{self._where} are full; nothing of the failed write was kept",
                            hint="raise the aggregates' map size") from exc

    def journal(self, name: str) -> None:
        """None: the journals stay files in the state dir, which lives in data_dir beside this store."""
        return None

    def read(self) -> list[KeptAlert]:
        with self._env.begin() as txn:
            items = [(bytes(k), bytes(v)) for k, v in txn.cursor(db=self._db)]
        out = []
        for key, value in items:
            try:
                seq, alert = cbor2.loads(value)
                out.append(KeptAlert(seq=seq, alert=alert))
            except (cbor2.CBORDecodeError, ValueError, TypeError, AttributeError) as exc:
                log.warning("%s: the alert %r does not decode (%s); it is left out", self._where, key, exc)
        return sorted(out, key=lambda a: a.seq)
