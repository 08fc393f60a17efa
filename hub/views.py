"""The hub's read models (chain, MBG, markets, alerts), fed from its record listener behind one lock, and the
worker that derives alerts as records arrive. Their routes live with each domain (hub/chain, hub/mbg,
hub/markets)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol

from ledger import Record

from .alerts import Alerts
from .chain import ChainView
from .markets import Subscriber, WebhookSender
from .markets.view import HubMarkets, KitchenDemand
from .markets.warning import ALPS_BANDS
from .mbg import MbgView, Plan
from .service import Hub

log = logging.getLogger("jejak.hub.views")


class Publisher(Protocol):
    def publish(self, event: dict[str, Any]) -> None: ...


class Views:
    """The read models; `on_records` is the hub listener that feeds them.

    Ingest never waits for an analysis: inputs are queued (`defer`) and folded in under the lock by the worker
    or by any query before it answers (`fresh`), so answers are never staler than the records accepted.
    `kitchen_regions` names the market region of each MBG kitchen (its stock use is market demand there).
    """

    def __init__(self, hub: Hub, *, plan: Plan, clock: Callable[[], int] | None = None,
                 events: Publisher | None = None, markets: HubMarkets | None = None,
                 kitchen_regions: Mapping[str, str] | None = None, subscribers: Sequence[Subscriber] = (),
                 sender: WebhookSender | None = None, keep_days: int = 8, rederive_s: float = 60.0) -> None:
        self.hub = hub
        # Findings that follow the clock (overdue, unreturned, a timer still open) appear without new records.
        self.rederive_s = rederive_s
        self.clock = clock or hub.clock
        self.events = events
        self.keep_days = keep_days
        self.chain = ChainView()
        self.mbg = MbgView(plan)
        self.markets = markets or HubMarkets(clock=lambda: self.clock())
        self.demand = KitchenDemand(self.markets, kitchen_regions or {})
        self.alerts = Alerts(self, subscribers=subscribers, sender=sender)
        self._lock = threading.RLock()
        self._dirty = threading.Event()
        self._stop = threading.Event()
        self._pending: deque[Callable[[], None]] = deque()
        self._last_derive_s = 0.0
        self._pruned_at = 0
        self._worker: threading.Thread | None = None
        self._unsubscribe: Callable[[], None] | None = None
        hub.listeners.on_records.append(self.on_records)

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
        self.chain.take(records, arrived_at)
        for rec in records:
            if rec.kind in ("scan", "stock"):
                if self.mbg.ingest(rec, arrived_at) and rec.kind == "stock":
                    self.demand.take(rec)
            elif rec.kind in ("price", "reading", "note"):
                self.markets.ingest(rec, arrived_at)

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

    def _price_update(self, update: dict[str, Any]) -> None:
        if self.events is not None:
            self.events.publish(update)

    def close(self) -> None:
        """Stop the worker (the alerts' webhook sender is closed on the event loop: `alerts.close()`)."""
        self._stop.set()
        self._dirty.set()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._worker is not None:
            self._worker.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._dirty.wait(self.rederive_s)
            if self._stop.is_set():
                return
            # Let a burst of pushes land first, and keep derivation to about a third of one core however
            # large the day grows: ingest shares the interpreter with this thread.
            self._stop.wait(max(0.3, 2 * self._last_derive_s))
            self._dirty.clear()
            started = time.perf_counter()
            try:
                self.alerts.refresh()
            except Exception:
                log.exception("deriving alerts failed")
            self._last_derive_s = time.perf_counter() - started
            self.prune()

    @property
    def derive_seconds(self) -> float:
        """How long the last derivation of the alerts took (the hub's /metrics shows it)."""
        return self._last_derive_s

    def prune(self) -> int:
        """At most once an hour of the hub's clock, forget the scans that arrived more than `keep_days`
        ago (the store keeps them) and the alerts over by then: what the read models hold follows the
        window, not the hub's age."""
        if self.clock() - self._pruned_at < 3600:
            return 0
        with self.fresh():
            self._pruned_at = self.clock()
            self.alerts.prune(self._pruned_at - self.keep_days * 86400)
            return self.mbg.prune(self._pruned_at, self.keep_days)

    # --- across domains --------------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """The dashboard's front page: today's MBG summary, the chain's size and forks, the markets'
        observations, held prices and ALPS bands, and the open alerts."""
        now = self.clock()
        with self.fresh():
            out = self.mbg.summary(now)
            bands = self.markets.bands()
            observed = len(self.markets.observed)
            held = len(self.markets.quarantined("pending"))
        status = self.hub.status()
        out.update({"now": now, "chain": {"size": status["size"], "devices": status["devices"],
                                          "forks": status["forks"], "checkpoint": status["checkpoint"]},
                    "markets": {"observations": observed, "quarantined": held,
                                "alps": {band: sum(1 for a in bands if a["band"] == band) for band in ALPS_BANDS}},
                    "live_alerts": self.alerts.open_count()})
        return out
