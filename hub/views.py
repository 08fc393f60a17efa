"""The hub's read models (MBG, markets, alerts), fed from its record listener behind one lock and, on
start, refilled from the store; and the worker that derives alerts as records arrive. Their routes live with
each domain (hub/chain, hub/mbg, hub/markets)."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from itertools import islice
from pathlib import Path
from typing import Any, Protocol

from ledger import Record, decode_record
from ledger.errors import LedgerError

from .aggregates import AggregateStore
from .alerts import Alerts
from .markets import MarketConfig, RetryPolicy, Subscriber, WebhookSender
from .markets.days import MARKET_DAYS
from .markets.kept import KeptDays
from .markets.quarantine import PENDING
from .markets.view import HubMarkets, KitchenDemand
from .markets.warning import ALPS_BANDS
from .mbg import MbgView, Plan
from .mbg.days import MBG_DAYS, encode
from .service import Hub
from .store import DamagedRecord, HubStore, StoreError

log = logging.getLogger("jejak.hub.views")


BURST_QUIET_S = 0.3  # no records for this long: a burst is over, derive (see Views._settle)
BURST_HOLD_S = 5.0  # the longest a burst of records holds the derivation of alerts back
BACKLOG_HOLD_S = 60.0  # the longest a burst that keeps the writer busy (a backlog) holds it back
BACKLOG_BUSY = 0.5  # the share of the time ingest keeps the writer busy from which a burst is a backlog
BACKLOG_WINDOW_S = 3.0  # over the last this many seconds (a commit's time counts when it ends)
REFILL_BATCH = 2000  # records read and folded in per hold of the read models' lock
MBG_KINDS = frozenset({"scan", "stock"})
MARKET_KINDS = frozenset({"price", "reading", "note"})
AGGREGATED_KINDS = MARKET_KINDS | {"stock"}  # what the markets' day aggregates count (stock: kitchen demand)


class Publisher(Protocol):
    def publish(self, event: dict[str, Any]) -> None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class RefillProgress:
    """How far the read models are refilled from the store: `done` of `total` log entries passed (the span of
    the log the read models' window covers), `read` of them read from the store (the kinds the window wants,
    found by the store's kind index), `damaged` entries skipped because their stored bytes are damaged."""

    running: bool
    done: int
    total: int
    damaged: int
    read: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"running": self.running, "done": self.done, "total": self.total, "damaged": self.damaged,
                "read": self.read}


def first_arrival_at(store: HubStore, cutoff: int, end: int) -> int:
    """The first index of the global log below `end` whose record arrived at or after `cutoff`, by binary
    search over arrival times (one entry read per step).

    Under wall time arrival times never decrease along the log and the answer is exact. A clock set back for a
    replay or backfill can make a later process's arrivals older than an earlier one's: the search then stops at
    some index where an arrival before `cutoff` is followed by one at or after it, so records before that index
    that arrived within the window are not refilled, and records after it that arrived before are skipped by
    the caller. A damaged entry counts as the first intact one after it."""
    lo, hi = 0, end
    while lo < hi:
        mid = (lo + hi) // 2
        at = _arrival(store, mid, hi)
        if at is None or at >= cutoff:
            hi = mid
        else:
            lo = mid + 1
    return lo


def _arrival(store: HubStore, index: int, end: int) -> int | None:
    for i in range(index, end):
        try:
            found = store.entries(i, i + 1)
        except DamagedRecord:
            continue
        if found:
            return found[0].arrived_at
    return None


def window_starts(store: HubStore, window: Mapping[str, int], end: int) -> dict[str, int]:
    """The first log index below `end` to read for each kind of `window` (kind -> earliest arrival time, 0 for
    the whole log), one binary search (`first_arrival_at`) per distinct arrival time."""
    found: dict[int, int] = {0: 0}
    for at in window.values():
        if at not in found:
            found[at] = first_arrival_at(store, at, end)
    return {kind: found[at] for kind, at in window.items()}


def wanted_positions(store: HubStore, starts: Mapping[str, int], end: int, *, page: int) -> Iterator[int]:
    """The log indices below `end` that hold records of each kind of `starts` (kind -> first index), merged in
    log order, read from the store's kind index a page at a time. With them, from the earliest start, the records
    whose kind the index could not read (damaged copies), so that a reader meets them where a reader of the whole
    log would, and reports them."""
    if not starts:
        return iter(())
    runs = [_positions(store, kind, start, end, page) for kind, start in starts.items()]
    runs.append(_positions(store, None, min(starts.values()), end, page))
    return heapq.merge(*runs)


def _positions(store: HubStore, kind: str | None, start: int, end: int, page: int) -> Iterator[int]:
    while start < end:
        found = store.kind_positions(kind, start, end, page)
        yield from found
        if len(found) < page:
            return
        start = found[-1] + 1


class Views:
    """The read models; `on_records` is the hub listener that feeds them.

    Ingest never waits for an analysis: inputs are queued (`defer`) and folded in under the lock by the worker
    or by any query before it answers (`fresh`), so answers are never staler than the records accepted.
    `kitchen_regions` names the market region of each MBG kitchen (its stock use is market demand there).

    With `refill`, `start()` also refills the MBG, markets and kitchen-demand models from what the store
    already holds (`refill_from_store`), in a thread of its own; `refilled` is set when that is over.
    `refill_pause` is called on that thread before each batch (tests hold a refill midway with it).
    `state_dir` and `aggregates` keep what the alerts cannot derive again after a restart (see `Alerts`).

    With `aggregates` (owned from here on, closed by `close`), the MBG model's past days are kept there once
    final, and before a prune forgets their scans (`keep_days_stored`, on the worker, outside the lock): a
    question about a day whose scans are pruned or not refilled yet reads the stored day.
    The markets' closed days are kept there too (`store_market_days`, on the worker and at close), and a refill
    loads them instead of reading every price of `window_days` again (`KeptDays`).
    """

    def __init__(self, hub: Hub, *, plan: Plan, clock: Callable[[], int] | None = None,
                 events: Publisher | None = None, market_config: MarketConfig | None = None,
                 kitchen_regions: Mapping[str, str] | None = None, subscribers: Sequence[Subscriber] = (),
                 sender: WebhookSender | None = None, keep_days: int = 8, rederive_s: float = 60.0,
                 burst_quiet_s: float = BURST_QUIET_S, burst_hold_s: float = BURST_HOLD_S,
                 backlog_hold_s: float = BACKLOG_HOLD_S, writer_busy: Callable[[], float] | None = None,
                 refill: bool = False, refill_batch: int = REFILL_BATCH,
                 refill_pause: Callable[[RefillProgress], None] | None = None,
                 state_dir: Path | None = None, webhook_retry: RetryPolicy | None = None,
                 aggregates: AggregateStore | None = None) -> None:
        self.hub = hub
        # Findings that follow the clock (overdue, unreturned, a timer still open) appear without new records.
        self.rederive_s = rederive_s
        self.burst_quiet_s, self.burst_hold_s = burst_quiet_s, burst_hold_s  # see _settle
        self.backlog_hold_s = backlog_hold_s
        self._writer_busy = writer_busy or (lambda: hub.writer_busy_s)  # seconds, growing; see _settle
        self.clock = clock or hub.clock
        self.events = events
        self.keep_days = keep_days
        self.aggregates = aggregates
        self.mbg = MbgView(plan, days=aggregates.namespace(MBG_DAYS) if aggregates is not None else None)
        self.mbg.refilling = refill
        hub.device_clocks.limit_s = plan.clock.max_skew_s
        self.mbg.device_clocks = lambda limit_s: [(d.hex(), c.offset_s, c.measured_at)
                                                  for d, c in hub.device_clocks.off(limit_s)]
        self._fed_at: int | None = None  # the arrival time of the records being fed, which the markets stamp
        self.markets = HubMarkets(market_config, clock=self._feed_time)
        self.demand = KitchenDemand(self.markets, kitchen_regions or {})
        self.alerts = Alerts(self, subscribers=subscribers, sender=sender, state_dir=state_dir, retry=webhook_retry,
                             kept=aggregates.alerts() if aggregates is not None else None)
        self._lock = threading.RLock()
        self._dirty = threading.Event()
        self._stop = threading.Event()
        self._pending: deque[Callable[[], None]] = deque()
        self._last_derive_s = 0.0
        self._pruned_at = 0
        self._worker: threading.Thread | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self.refill_batch = refill_batch
        self.refill_pause = refill_pause
        self.refilled = threading.Event()
        self._refiller: threading.Thread | None = None
        self._replaying = False  # a refill batch is being folded in: its prices are not live updates
        self._refill = RefillProgress(running=refill, done=0, total=0, damaged=0)
        # While a refill runs, the domain inputs of live records wait here, after the refilled ones.
        self._held: list[tuple[list[Record], int]] | None = [] if refill else None
        self.kept_days = None if aggregates is None else KeptDays(
            self.markets, self.demand, aggregates.namespace(MARKET_DAYS), hub.store)
        self._last_fed = b""  # the last record of AGGREGATED_KINDS fed: the log up to it is in the models
        self._markets_from: int | None = None  # arrival time from which a refill reads the markets' records
        if not refill:
            self.refilled.set()
        # Records below this index are refilled; the listener is told every record from it on.
        self._refill_end = hub.listen(self.on_records)

    # --- feeding ---------------------------------------------------------------------------------------
    def on_records(self, records: list[Record], arrived_at: int) -> None:
        """Hub listener (runs on the ingest thread): queue the records and return at once."""
        self.defer(lambda: self._take(records, arrived_at))

    def defer(self, work: Callable[[], None]) -> None:
        """Queue work on the read models (feeding inputs) to run under their lock before the next derivation
        or query, without making the caller wait for one in progress."""
        self._pending.append(work)
        if self._lock.acquire(blocking=False):  # nobody is deriving: fold it in now
            try:
                while self._pending:
                    self._pending.popleft()()
            finally:
                self._lock.release()
        self._dirty.set()

    def changed(self) -> None:
        """Something the alerts derive from changed outside ingest (an operator's decision): derive again."""
        self._dirty.set()

    @contextlib.contextmanager
    def fresh(self) -> Iterator[None]:
        """Hold the read models' lock with every queued input folded in."""
        with self._lock:
            while self._pending:
                self._pending.popleft()()
            yield

    def _take(self, records: list[Record], arrived_at: int) -> None:
        if self._held is not None:
            self._held.append((records, arrived_at))
        else:
            self._take_domains(records, arrived_at)

    def _take_domains(self, records: Sequence[Record], arrived_at: int) -> None:
        """Feed the MBG, markets and kitchen-demand models (live records and refilled ones alike). What the
        markets stamp while they take them (a price's quarantine) carries the records' arrival time, so a
        refill stamps as the live path did."""
        self._fed_at = arrived_at
        seam = self.markets.seam
        offset_at = self.hub.device_clocks.offset_at
        try:
            for rec in records:
                if rec.kind in MBG_KINDS:
                    offset = offset_at(rec.device_id, rec.boot, rec.time, arrived_at, rec.seq)
                    if self.mbg.ingest(rec, arrived_at, offset) and rec.kind == "stock":
                        self.demand.take(rec)
                elif rec.kind in MARKET_KINDS:
                    self.markets.ingest(rec, arrived_at)
                else:
                    continue
                if rec.kind in AGGREGATED_KINDS:
                    self._last_fed = rec.id
                    if seam is not None and rec.id == seam.mark:
                        seam.past = True  # the records after it are not in the loaded aggregates
        finally:
            self._fed_at = None

    def _feed_time(self) -> int:
        return self.clock() if self._fed_at is None else self._fed_at

    # --- life cycle ------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the worker that derives alerts after records arrive, and stream price updates; called on
        the event loop that delivers webhooks."""
        with contextlib.suppress(RuntimeError):  # no running loop: alerts are derived, not sent
            self.alerts.bind(asyncio.get_running_loop())
        if self._unsubscribe is None:
            self._unsubscribe = self.markets.subscribe(self._price_update)
        if self._worker is None:
            self._worker = threading.Thread(target=self._run, name="jejak-views", daemon=True)
            self._worker.start()
        if self._held is not None and self._refiller is None:
            self._refiller = threading.Thread(target=self.refill_from_store, name="jejak-refill", daemon=True)
            self._refiller.start()

    def _price_update(self, update: dict[str, Any]) -> None:
        if self.events is not None and not self._replaying:
            self.events.publish(update)

    # --- refill ----------------------------------------------------------------------------------------
    @property
    def refill_progress(self) -> RefillProgress:
        return self._refill

    def refill_from_store(self) -> None:
        """Feed the MBG, markets and kitchen-demand models what the store held when they started listening
        (the chain view answers from the store itself), then the live records that arrived meanwhile.

        Only the records the models hold are read (`refill_window`: scans of `keep_days`, market records of the
        markets' `window_days`, every stock movement), found through the store's kind index, so older scans
        in the markets' window are never read. They are read in log order, a batch at a time, decoded outside
        the lock and folded in under it with each entry's own arrival time: every answer given during a refill
        is that of a prefix of the log. Live records wait until the refill
        is over and follow it in the order they arrived, so each record is counted once and in log order.
        A damaged entry is logged, counted and skipped."""
        try:
            self._refill_window()
        except Exception:
            log.exception("refilling the read models from the store failed; they hold what was refilled and "
                          "every record accepted since start")
        finally:
            with self._lock:
                self.mbg.refilling = False
                kept = self.kept_days
                self.markets.close_seam(kept.observation if kept else None, kept.reflected if kept else 0)
                held, self._held = self._held or [], None
                for records, arrived_at in held:
                    self._take_domains(records, arrived_at)
                self._refill = replace(self._refill, running=False)
            self.refilled.set()
            self._dirty.set()

    def store_market_days(self) -> int:
        """Write the markets' closed days that changed to the aggregate store (`KeptDays.write`); returns the
        days written. Not while a refill runs: the models hold a prefix of the log then."""
        if self.kept_days is None or not self.refilled.is_set():
            return 0
        with self.fresh():
            return self.kept_days.write(self.clock(), self._last_fed)

    def refill_window(self, now: int) -> dict[str, int]:
        """What the read models need from the store after a restart, by record kind: the earliest arrival time
        to read from. Scans within `keep_days` (older ones the MBG view prunes); prices, readings and notes within
        the markets' `window_days` (their analyses look that far back), or from where the markets' stored days
        end once they are loaded (`KeptDays.load`); every stock movement, whenever it arrived (stock on hand
        replays them all, and the MBG view never prunes them)."""
        others = now - self.markets.config.window_days * 86400 if self._markets_from is None else self._markets_from
        return {"scan": now - self.keep_days * 86400, "stock": 0, "price": others, "reading": others, "note": others}

    def _refill_window(self) -> None:
        store, end = self.hub.store, self._refill_end
        now = self.clock()
        if self.kept_days is not None:
            self._markets_from = self.kept_days.load(now)
        window = self.refill_window(now)
        starts = window_starts(store, window, end)
        first = min(starts.values(), default=end)
        self._refill = progress = RefillProgress(running=True, done=0, total=end - first, damaged=0)
        started = time.perf_counter()
        wanted = wanted_positions(store, starts, end, page=self.refill_batch)
        batch: list[int] = []
        while not self._stop.is_set():
            if not batch:
                batch = list(islice(wanted, self.refill_batch))
                if not batch:
                    self._refill = progress = replace(progress, done=progress.total)
                    break
            if self.refill_pause is not None:
                self.refill_pause(progress)
            try:
                entries = store.entries_at(batch)
            except DamagedRecord:
                log.error("refill: log entry %d is damaged; skipped (the store check notes it for restore)", batch[0])
                self._refill = progress = replace(progress, done=batch[0] + 1 - first, damaged=progress.damaged + 1)
                del batch[0]
                continue
            if not entries:
                raise StoreError(f"log entry {batch[0]} is in the store's kind index but not in its log")
            del batch[:len(entries)]
            runs: list[tuple[list[Record], int]] = []
            damaged = 0
            for entry in entries:
                try:
                    rec = decode_record(entry.raw)
                except LedgerError:  # bytes that hash right but do not decode: not a record this hub wrote
                    log.error("refill: log entry %d does not decode; skipped", entry.index)
                    damaged += 1
                    continue
                # Within its kind's indices, a record that arrived before the window (a clock set back for a
                # replay) is left out, as a scan of the whole window would leave it out.
                if rec.kind not in window or entry.arrived_at < window[rec.kind] or entry.index < starts[rec.kind]:
                    continue
                if runs and runs[-1][1] == entry.arrived_at:
                    runs[-1][0].append(rec)
                else:
                    runs.append(([rec], entry.arrived_at))
            with self._lock:
                self._replaying = True
                try:
                    for records, arrived_at in runs:
                        self._take_domains(records, arrived_at)
                finally:
                    self._replaying = False
                progress = RefillProgress(running=True, done=entries[-1].index + 1 - first, total=progress.total,
                                          damaged=progress.damaged + damaged, read=progress.read + len(entries))
                self._refill = progress
        elapsed = time.perf_counter() - started
        log.info("refilled the read models with %d of %d log entries in %.1f s, %.0f/s (%d damaged, skipped)",
                 progress.read, progress.total, elapsed, progress.read / max(elapsed, 1e-9), progress.damaged)

    def close(self) -> None:
        """Stop the worker (the alerts' webhook sender is closed on the event loop: `alerts.close()`)."""
        self._stop.set()
        self._dirty.set()
        if self._refiller is not None:
            self._refiller.join(timeout=30)
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._worker is not None:
            self._worker.join(timeout=5)
        try:
            self.store_market_days()
        except Exception:
            log.exception("keeping the markets' day aggregates at close failed; the next start reads more records")
        if self.aggregates is not None:
            self.aggregates.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._dirty.wait(self.rederive_s)
            if self._stop.is_set():
                return
            self._settle()
            if self._stop.is_set():
                return
            if not self.refilled.is_set():
                continue  # alerts from part of the log would be raised and resolved again; the refill's end wakes us
            started = time.perf_counter()
            try:
                self.alerts.refresh()
            except Exception:
                log.exception("deriving alerts failed")
            try:
                self.keep_days_stored()
            except Exception:
                log.exception("keeping the MBG days in the store failed")
            self._last_derive_s = time.perf_counter() - started
            self.prune()
            try:
                self.store_market_days()
            except Exception:
                log.exception("keeping the markets' day aggregates failed; the next derivation tries again")

    def _settle(self) -> None:
        """Wait for a burst of records to land before deriving: until none arrived for a moment (twice the last
        derivation, at least `burst_quiet_s`, which also keeps derivation to about a third of one core however
        large the day grows), or until the burst has held derivation back `burst_hold_s` (at least ten
        derivations' time). Each derivation settles the whole day again and shares the interpreter with the
        writer: while an edge's backlog arrives, derivations every fraction of a second cost the hub more
        than taking the records off the wire, and raise alerts from part of the backlog that the rest then
        resolves. Records that arrive further apart than `burst_quiet_s` have theirs derived as before.

        A burst that keeps the writer busy over `BACKLOG_BUSY` of the last `BACKLOG_WINDOW_S` (edges catching up
        after an outage, a region pulled) is a backlog: it holds derivation back past `burst_hold_s`, up to
        `backlog_hold_s`, and no record told for a moment is then no pause (a commit of many records can take
        longer). A derivation in the middle of one costs the writer about as much interpreter time as the
        records it settles took to ingest, and settles again a day the rest of the backlog changes."""
        quiet = max(self.burst_quiet_s, 2 * self._last_derive_s)
        started = time.monotonic()
        until = started + max(self.burst_hold_s, 10 * self._last_derive_s)
        latest = max(until, started + self.backlog_hold_s)
        seen = deque([(started, self._writer_busy())])  # (when, writer's busy seconds), BACKLOG_WINDOW_S back
        self._dirty.clear()
        while not self._stop.wait(quiet):
            arrived = self._dirty.is_set()
            self._dirty.clear()
            now = time.monotonic()
            seen.append((now, self._writer_busy()))
            while len(seen) > 2 and seen[1][0] <= now - BACKLOG_WINDOW_S:
                seen.popleft()
            (then, busy_then), (_, busy_now) = seen[0], seen[-1]
            backlog = busy_now - busy_then > BACKLOG_BUSY * (now - then)
            # No record told for a moment is a pause, unless the writer was busy: in a backlog, records are
            # told a commit at a time, and a commit of many can take longer than the moment.
            if not (arrived or backlog) or now >= latest or (now >= until and not backlog):
                break
        self._dirty.clear()

    @property
    def derive_seconds(self) -> float:
        """How long the last derivation of the alerts took (the hub's /metrics shows it)."""
        return self._last_derive_s

    def prune(self) -> int:
        """At most once an hour of the hub's clock, forget the scans that arrived more than `keep_days`
        ago (the store keeps them), the alerts over by then and the price observations of days no longer
        listed (their days' aggregates stay): what the read models hold follows the window, not the hub's age."""
        if self.clock() - self._pruned_at < 3600:
            return 0
        self.keep_days_stored(arrived_before=self.clock() - self.keep_days * 86400)
        with self.fresh():
            self._pruned_at = self.clock()
            self.alerts.prune(self._pruned_at - self.keep_days * 86400)
            self.markets.forget_unlisted()
            return self.mbg.prune(self._pruned_at, self.keep_days)

    def keep_days_stored(self, *, arrived_before: int | None = None) -> int:
        """Write the MBG days that are final and not stored yet (with `arrived_before`, also those holding scans
        that arrived before it, which a prune is about to forget), and delete the stored days gone stale, in one
        write of the store's; return how many days were written. The days are chosen under the lock and written
        outside it: ingest never waits, and a day that goes stale meanwhile is deleted by the next call."""
        if self.aggregates is None or self.mbg.days is None:
            return 0
        with self.fresh():
            days = self.mbg.days_to_store(self.clock(), arrived_before=arrived_before)
            stale = self.mbg.take_stale()
        if not days and not stale:
            return 0
        try:
            self.mbg.days.put([encode(d) for d in days], delete=stale)
        except StoreError as exc:
            log.error("the MBG days %s could not be written to the store (%s: %s); they are answered from the "
                      "scans held", [d.date for d in days], exc.code, exc.message)
            with self.fresh():
                self.mbg.unstored([d.date for d in days], stale)
            return 0
        return len(days)

    # --- across domains --------------------------------------------------------------------------------
    def summary(self, date: str | None = None) -> dict[str, Any]:
        """The dashboard's front page: today's (or `date`'s) MBG summary, the chain's size and forks, the
        markets' observations, held prices and ALPS bands, and the open alerts."""
        now = self.clock()
        with self.fresh():
            out = self.mbg.summary(now, date)
            bands = self.markets.bands()
            observed = self.markets.listed_count()
            held = self.markets.listed_held_count()
            waiting = self.markets.held_count(PENDING)
            listed_from = self.markets.listed_since()
        status = self.hub.status()
        out.update({"now": now, "chain": {"size": status["size"], "devices": status["devices"],
                                          "forks": status["forks"], "checkpoint": status["checkpoint"]},
                    "markets": {"observations": observed, "quarantined": held, "awaiting_decision": waiting,
                                "observations_from": listed_from,
                                "alps": {band: sum(1 for a in bands if a["band"] == band) for band in ALPS_BANDS}},
                    "live_alerts": self.alerts.open_count(), "refill": self._refill.to_json()})
        return out
