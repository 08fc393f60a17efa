"""Counters, a latency histogram and Prometheus text exposition for the edge daemon."""

from __future__ import annotations

import os
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

_LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Histogram:
    def __init__(self, buckets: tuple[float, ...] = _LATENCY_BUCKETS) -> None:
        self.buckets = buckets
        self.counts = [0] * len(buckets)
        self.total = 0
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.total += 1
        self.sum += seconds
        for i, bound in enumerate(self.buckets):
            if seconds <= bound:
                self.counts[i] += 1


class Metrics:
    """What the daemon counts. Plain integers; rendering reads them, nothing else writes them."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.records: dict[str, int] = defaultdict(int)  # by source: nfc, coap, sensor
        self.errors: dict[str, int] = defaultdict(int)  # by stable code
        self.feedback: dict[str, int] = defaultdict(int)  # by indicator status
        self.restarts: dict[str, int] = defaultdict(int)  # by supervised task
        self.duplicates = 0
        self.ack_latency = Histogram()
        self.feedback_latency = Histogram()  # from a tap to its first beep or light, the commit included

    def error(self, code: str) -> None:
        self.errors[code] += 1


def resident_bytes() -> int:
    """Resident memory of this process (the soak test watches it; aiocoap has been seen to grow)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


@dataclass(frozen=True, slots=True, kw_only=True)
class EdgeState:
    """What the daemon reads from its store and commit path at each scrape, beside the counters."""

    log_length: int  # own log
    logs: int  # own and replicas
    forked_logs: int
    pending: int  # appends waiting for their group commit
    commits: int  # group commits since start
    store_used_bytes: int
    store_map_bytes: int
    coap_observers: int
    boot: int


class _EdgeCollector(Collector):
    def __init__(self, metrics: Metrics, state: EdgeState) -> None:
        self.metrics, self.state = metrics, state

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        m, s = self.metrics, self.state
        for name, by, label, text in (
                ("records", m.records, "source", "Records appended durably, by input source (nfc, coap, sensor)."),
                ("errors", m.errors, "code", "Refused or failed inputs, by stable error code (docs/ERRORS.md)."),
                ("feedback", m.feedback, "status", "Indicator feedback shown at the reader, by status."),
                ("task_restarts", m.restarts, "task", "Supervised task restarts after a crash, by task.")):
            family = CounterMetricFamily(f"jejak_edge_{name}", text, labels=[label])
            for key, n in sorted(by.items()):
                family.add_metric([key], n)
            yield family
        yield CounterMetricFamily("jejak_edge_duplicates", "Submissions folded into an earlier identical one.",
                                  value=m.duplicates)
        yield CounterMetricFamily("jejak_edge_commits", "Group commits of the store since the daemon started.",
                                  value=s.commits)
        for name, h, text in (("ack_latency", m.ack_latency, "Input to acknowledgement (durable commit) time."),
                              ("feedback_latency", m.feedback_latency,
                               "Tap to its first beep or light at the reader, the commit included.")):
            buckets = [(str(bound), n) for bound, n in zip(h.buckets, h.counts, strict=True)] + [("+Inf", h.total)]
            yield HistogramMetricFamily(f"jejak_edge_{name}_seconds", text, buckets=buckets, sum_value=h.sum)
        for name, value, text in (
                ("log_length", s.log_length, "Records in this device's own log."),
                ("logs", s.logs, "Logs this node holds: its own and its peers' replicas."),
                ("forked_logs", s.forked_logs, "Logs held back because they forked; an operator must act."),
                ("pending_appends", s.pending, "Appends waiting for their group commit (back-pressure above "
                                               "limits.max_pending)."),
                ("store_used_bytes", s.store_used_bytes, "Bytes the LMDB store uses."),
                ("store_map_bytes", s.store_map_bytes, "The LMDB map size (limits.map_size): the store's ceiling."),
                ("coap_observers", s.coap_observers, "CoAP clients observing a log on this node."),
                ("boot", s.boot, "This device's boot counter (records carry it).")):
            yield GaugeMetricFamily(f"jejak_edge_{name}", text, value=value)


def prometheus(metrics: Metrics, state: EdgeState) -> str:
    """The Prometheus text format of the counters, the state and the process (CPU, memory, open files)."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    registry.register(_EdgeCollector(metrics, state))
    return generate_latest(registry).decode()
