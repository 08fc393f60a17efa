"""The hub's Prometheus metrics (`GET /metrics`): ingest, verification, refusals, checkpoints, device lag, store, analytics.

Timings are observed as they happen (histograms); everything the store already counts or holds (records,
refusals by code, forks, checkpoints, devices, each device's last arrival and latest record time) is read from it
at scrape time, so a restart neither resets nor double-counts them. Devices are summed up (how many are idle past
each threshold, a histogram of their sync lag) so the series stay few with 50,000 devices; per-device series are
kept only while the hub knows at most DEVICE_SERIES_CAP devices. Process metrics (CPU, memory, open files) come
from prometheus_client's own collectors.
"""

from __future__ import annotations

import asyncio
import time
from bisect import bisect_left
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeHistogramMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from ledger import Record
from ledger.acceptance import SignatureCheck

from .service import Hub
from .store import HubStore

if TYPE_CHECKING:
    from .markets import Redelivery
    from .views import RefillProgress

_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Per-device series only up to this many devices the hub knows (two series each); past it, the aggregates
# alone, and /api/chain/health names the devices. Prometheus handles a few thousand series per target well,
# not 100,000 from one hub.
DEVICE_SERIES_CAP = 1000
IDLE_OVER = (900, 3600, 21600, 86400, 604800)  # 15 min, 1 h, 6 h, 1 day, 1 week
LAG_BUCKETS = (10, 60, 300, 900, 3600, 21600, 86400, 604800)
_ACTIVITY_PAGE = 5000


@dataclass(slots=True)
class DeviceFigures:
    """The devices' activity summed up at one hub time: how many have sent records, how many of those are idle
    past each of IDLE_OVER, their sync lags (arrival minus latest record time) by LAG_BUCKETS, and each device's
    own (arrival, lag) while they are few enough for per-device series (else None)."""

    reporting: int = 0
    idle_over: list[int] = field(default_factory=lambda: [0] * len(IDLE_OVER))
    lag_counts: list[int] = field(default_factory=lambda: [0] * (len(LAG_BUCKETS) + 1))  # the last: over all
    lag_sum: int = 0
    per_device: list[tuple[bytes, int, int]] | None = None


def device_figures(store: HubStore, now: int, *, own: bytes, series_cap: int = DEVICE_SERIES_CAP) -> DeviceFigures:
    """Every device's kept activity read a page at a time and summed up: a few counters, whatever the count.
    The hub's own log (`own`, written here rather than sent) is no device's."""
    figures = DeviceFigures()
    each: list[tuple[bytes, int, int]] | None = [] if store.device_count() <= series_cap else None
    after = b""
    while page := store.activity_after(after, _ACTIVITY_PAGE):
        after = page[-1][0]
        for device_id, arrived, latest in page:
            if device_id == own:
                continue
            figures.reporting += 1
            idle, lag = now - arrived, arrived - latest
            for i, over in enumerate(IDLE_OVER):
                if idle > over:
                    figures.idle_over[i] += 1
            figures.lag_counts[bisect_left(LAG_BUCKETS, lag)] += 1
            figures.lag_sum += lag
            if each is not None:
                each.append((device_id, arrived, lag))
    figures.per_device = each
    return figures


class HubMetrics:
    """One hub's registry. Build it before the Hub (its `timed_check` wraps the signature check), then
    `watch(hub, ...)` once the hub and its read models exist."""

    def __init__(self, *, device_series_cap: int = DEVICE_SERIES_CAP) -> None:
        self.device_series_cap = device_series_cap
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self.ingest_seconds = Histogram("jejak_hub_ingest_seconds", "Time to verify and merge one offered range "
                                        "of a device's log, by outcome code (ok or the refusal's code).",
                                        ["code"], buckets=_SECONDS, registry=self.registry)
        self.verify_seconds = Histogram("jejak_hub_verify_seconds", "Time to check the signatures of one offered "
                                        "range of records.", buckets=_SECONDS, registry=self.registry)
        # Connections and streams refused or closed for their limits, by reason: the servers count into it
        # (coap_server/limits.py), the scrape reads it.
        self.refused_connections: dict[str, int] = {}

    def timed_check(self, check: SignatureCheck) -> SignatureCheck:
        """The hub's signature check, timed into jejak_hub_verify_seconds."""
        def timed(pairs: Sequence[tuple[Record, bytes]]) -> object:
            with self.verify_seconds.time():
                return check(pairs)
        return timed

    def ingest(self, work: Callable[[], Any]) -> Any:
        """Run one ingest, timing it under its outcome: `ok`, or the code of the error it raised."""
        started = time.perf_counter()
        code = "ok"
        try:
            return work()
        except Exception as exc:
            code = getattr(exc, "code", "INTERNAL")
            raise
        finally:
            self.ingest_seconds.labels(code=code).observe(time.perf_counter() - started)

    def watch(self, hub: Hub, *, store_path: Path | None, derive_seconds: Callable[[], float],
              refill: Callable[[], RefillProgress] | None = None, redelivery: Redelivery | None = None) -> None:
        """Read `hub` and its store (and the webhooks' redelivery, if there are subscribers) at every scrape."""
        self.registry.register(_HubCollector(hub, store_path=store_path, derive_seconds=derive_seconds,
                                             refill=refill, series_cap=self.device_series_cap,
                                             redelivery=redelivery, refused=self.refused_connections))

    def watch_regions(self, hub: Hub, states: Callable[[], Mapping[str, int]],
                      signed: Callable[[], Mapping[str, int]] = dict) -> None:
        """Read the upstream regions' states (a national hub's `TierLinks.states`) and when each region followed by
        its checkpoints signed the latest one accepted (`TierLinks.signed_at`) at every scrape."""
        self.registry.register(_RegionsCollector(hub, states, signed))

    def register(self, app: web.Application) -> None:
        """Mount `GET /metrics` (Prometheus text format) on the hub's HTTP app. A scrape reads every device's
        standing from the store (a third of a second for 100,000 devices), and anyone may ask for one: it runs off
        the event loop, which went on serving nobody while it ran, and scrapes asked while one runs share it."""
        scraping: asyncio.Future[bytes] | None = None

        async def metrics(_: web.Request) -> web.Response:
            nonlocal scraping
            if scraping is None or scraping.done():
                scraping = asyncio.ensure_future(asyncio.to_thread(generate_latest, self.registry))
            body = await asyncio.shield(scraping)
            return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

        app.router.add_get("/metrics", metrics)


class _RegionsCollector(Collector):
    """The regional hubs a national hub pulls or follows, by the state their last round left them in."""

    def __init__(self, hub: Hub, states: Callable[[], Mapping[str, int]],
                 signed: Callable[[], Mapping[str, int]]) -> None:
        self.hub, self.states, self.signed = hub, states, signed

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        regions = GaugeMetricFamily("jejak_hub_regions", "Upstream regional hubs by state: followed (by their "
                                    "checkpoints) or pulled (record by record) as their last round went, split (a "
                                    "split view stops it until an operator resumes it), refused (its last answer "
                                    "failed a check or came outside its pinned key's OSCORE context), unreachable.",
                                    labels=["state"])
        for state, n in self.states().items():
            regions.add_metric([state], n)
        yield regions
        yield CounterMetricFamily("jejak_hub_region_split_views", "Split views caught of regions followed by their "
                                  "checkpoints (kept as evidence).",
                                  value=self.hub.store.counters().get("region_split_views", 0))
        # A region that answers but signs nothing new (its store restored from an older copy stops its signing, a
        # stopped checkpoint loop) stays `followed`: its latest checkpoint's age says so.
        signed = GaugeMetricFamily("jejak_hub_region_checkpoint_time_seconds", "When each region followed by its "
                                   "checkpoints signed the latest one this hub accepted (Unix time, the region's "
                                   "clock), by the region's hub id.", labels=["region"])
        for region, at in sorted(self.signed().items()):
            signed.add_metric([region], at)
        yield signed


class _HubCollector(Collector):
    """What the hub's store and read models hold, and what its servers refused, read when Prometheus scrapes."""

    def __init__(self, hub: Hub, *, store_path: Path | None, derive_seconds: Callable[[], float],
                 refill: Callable[[], RefillProgress] | None, series_cap: int,
                 redelivery: Redelivery | None = None, refused: Mapping[str, int] | None = None) -> None:
        self.hub = hub
        self.refused: Mapping[str, int] = {} if refused is None else refused  # the servers go on counting in it
        self.redelivery = redelivery
        self.store_path = store_path
        self.derive_seconds = derive_seconds
        self.refill = refill
        self.series_cap = series_cap

    def describe(self) -> list[Metric]:
        return []  # read at scrape time; nothing to check at registration

    def collect(self) -> Iterator[Metric]:
        hub = self.hub
        counters = hub.store.counters()
        yield CounterMetricFamily("jejak_hub_records", "Records accepted into the hub's log (its size).",
                                  value=len(hub.tree))
        refused = CounterMetricFamily("jejak_hub_refused_records", "Records the hub refused, by cause: unknown "
                                      "(device not enrolled), pending (awaits approval), forked, invalid, revoked, "
                                      "signature.", labels=["cause"])
        for name, value in sorted(counters.items()):
            if name.startswith("refused_"):
                refused.add_metric([name.removeprefix("refused_")], value)
        yield refused
        connections = CounterMetricFamily("jejak_hub_refused_connections", "Connections and streams refused or "
                                          "closed for the hub's limits, by reason: http_connections, "
                                          "coap_tcp_connections, event_streams (past the total; with _per_address, "
                                          "past one address's share), slow_http_request_bodies (answered 408 and "
                                          "closed).", labels=["reason"])
        for reason, n in sorted(self.refused.items()):
            connections.add_metric([reason], n)
        yield connections
        yield CounterMetricFamily("jejak_hub_duplicate_records", "Records offered again that the hub already had.",
                                  value=counters.get("duplicates", 0))
        yield from self._device_clocks()
        yield CounterMetricFamily("jejak_hub_forks", "Forks detected (two records with one device and sequence "
                                  "number).", value=counters.get("forks", 0))
        checkpoints = hub.checkpoints()
        yield CounterMetricFamily("jejak_hub_checkpoints", "Checkpoints the hub has signed.", value=len(checkpoints))
        latest = checkpoints[-1] if checkpoints else None
        yield GaugeMetricFamily("jejak_hub_checkpoint_tree_size", "Log size the latest checkpoint covers.",
                                value=latest.tree_size if latest else 0)
        yield GaugeMetricFamily("jejak_hub_checkpoint_timestamp_seconds", "Hub time of the latest checkpoint "
                                "(Unix seconds; 0 before the first).", value=latest.time if latest else 0)
        yield GaugeMetricFamily("jejak_hub_signing_stopped", "1 once an edge presented a checkpoint this hub signed "
                                "that its log does not hold (HUB_STORE_OLDER found at run time: the data_dir was "
                                "restored from an older copy); no checkpoint is signed until the operator acts.",
                                value=int(hub.signing_stopped is not None))
        devices = GaugeMetricFamily("jejak_hub_devices", "Devices the hub knows, by status.", labels=["status"])
        for status, n in sorted(hub.store.device_statuses().items()):
            devices.add_metric([status], n)
        yield devices
        yield from self._device_figures(device_figures(hub.store, hub.clock(), own=hub.hub_id,
                                                         series_cap=self.series_cap))
        yield GaugeMetricFamily("jejak_hub_chain_figures_behind", "Records held before the store kept the chain's "
                                "figures (records by kind, devices' last arrival and record time) that are not "
                                "counted in them yet (counted in the background after an upgrade, newest first; 0 "
                                "when done).", value=hub.store.figures_from())
        yield GaugeMetricFamily("jejak_hub_kind_index_behind", "Records held before the store kept the index by "
                                "record kind that are not indexed yet (indexed in the background after an upgrade, "
                                "newest first; 0 when done).", value=hub.store.kind_index_from())
        yield GaugeMetricFamily("jejak_hub_store_bytes", "Bytes the hub's embedded store takes on disk (0 for "
                                "PostgreSQL: ask the database).", value=self._store_bytes())
        yield GaugeMetricFamily("jejak_hub_analytics_derive_seconds", "How long the last derivation of the "
                                "analytics' alerts took (MBG, markets).", value=self.derive_seconds())
        yield CounterMetricFamily("jejak_hub_writer_busy_seconds", "Seconds the hub's one writer has spent ingesting "
                                  "(merging, waiting for signature checks, committing); its rate is the share of the "
                                  "time ingest keeps it busy, and over a half holds the alerts' derivation back.",
                                  value=hub.writer_busy_s)
        if self.refill is not None:
            progress = self.refill()
            yield GaugeMetricFamily("jejak_hub_refill_running", "1 while the read models are being refilled from "
                                    "the store after a start, else 0.", value=int(progress.running))
            entries = GaugeMetricFamily("jejak_hub_refill_entries", "Log entries of the read models' window "
                                        "refilled from the store since start: done, total, read (the kinds the "
                                        "models hold), and damaged (skipped).", labels=["state"])
            for state, n in (("done", progress.done), ("total", progress.total), ("read", progress.read),
                             ("damaged", progress.damaged)):
                entries.add_metric([state], n)
            yield entries
        if self.redelivery is not None:
            again = self.redelivery
            yield GaugeMetricFamily("jejak_hub_webhook_redelivery_waiting", "Alerts whose delivery failed, waiting "
                                    "to be sent again while they are open.", value=again.waiting())
            yield CounterMetricFamily("jejak_hub_webhook_redelivered", "Alerts delivered by a later round after "
                                      "their delivery failed.", value=again.delivered)
            dropped = CounterMetricFamily("jejak_hub_webhook_redelivery_dropped", "Failed deliveries not sent "
                                          "again, by reason: superseded, queue_full, closed, told, refused, expired, "
                                          "unsubscribed.",
                                          labels=["reason"])
            for reason, n in sorted(again.dropped.items()):
                dropped.add_metric([reason], n)
            yield dropped

    def _device_figures(self, figures: DeviceFigures) -> Iterator[Metric]:
        yield GaugeMetricFamily("jejak_hub_devices_reporting", "Devices whose records have reached the hub.",
                                value=figures.reporting)
        idle = GaugeMetricFamily("jejak_hub_devices_idle", "Devices whose last records arrived more than `over` "
                                 "seconds ago (devices that never sent any are not counted).", labels=["over"])
        for over, n in zip(IDLE_OVER, figures.idle_over, strict=True):
            idle.add_metric([str(over)], n)
        yield idle
        buckets, seen = [], 0
        for bound, n in zip([*map(str, LAG_BUCKETS), "+Inf"], figures.lag_counts, strict=True):
            seen += n
            buckets.append((bound, seen))
        yield GaugeHistogramMetricFamily("jejak_hub_device_sync_lag_seconds", "Devices by sync lag: how long after "
                                         "its latest device time each device's last records arrived (uplink delay, "
                                         "or a device clock that is off).", buckets=buckets,
                                         gsum_value=figures.lag_sum)
        if figures.per_device is None:
            return  # past the cap: no per-device series (they would be one pair per device)
        lag = GaugeMetricFamily("jejak_hub_device_lag_seconds", f"Per device, while the hub knows at most "
                                f"{self.series_cap} devices: how long after its latest device time its last "
                                "records arrived.", labels=["device"])
        last = GaugeMetricFamily("jejak_hub_device_last_arrival_timestamp_seconds", f"Per device, while the hub "
                                 f"knows at most {self.series_cap} devices: hub time its last records arrived "
                                 "(Unix seconds).", labels=["device"])
        for device_id, at, behind in figures.per_device:
            lag.add_metric([device_id.hex()], behind)
            last.add_metric([device_id.hex()], at)
        yield lag
        yield last

    def _device_clocks(self) -> Iterator[Metric]:
        clocks = self.hub.device_clocks
        off = clocks.off()
        yield GaugeMetricFamily("jejak_hub_devices_clock_off", f"Devices whose clock was off the hub's by more than "
                                f"{clocks.limit_s} s ([clock] max_skew_s) either way at their last sync.",
                                value=len(off))
        each = GaugeMetricFamily("jejak_hub_device_clock_offset_seconds", f"Per device whose clock was off at its "
                                 f"last sync, up to {self.series_cap} devices: its clock minus the hub's, seconds "
                                 "(negative: behind, its records dated too early).", labels=["device"])
        for device_id, clock in off[:self.series_cap]:
            each.add_metric([device_id.hex()], clock.offset_s)
        yield each

    def _store_bytes(self) -> int:
        if self.store_path is None or not self.store_path.is_dir():
            return 0
        return sum(f.stat().st_size for f in self.store_path.iterdir() if f.is_file())
