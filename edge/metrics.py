"""Counters, a latency histogram and Prometheus text exposition for the edge daemon."""

from __future__ import annotations

import os
import time
from collections import defaultdict

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


def _labels(**labels: str) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return "{" + inner + "}"


def prometheus(metrics: Metrics, gauges: dict[str, float | int]) -> str:
    """The Prometheus text format (version 0.0.4) of the counters and the given gauges."""
    lines: list[str] = []

    def family(name: str, kind: str, help_text: str) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")

    family("jejak_edge_records_total", "counter", "Records appended durably, by input source.")
    for source, n in sorted(metrics.records.items()):
        lines.append(f"jejak_edge_records_total{_labels(source=source)} {n}")
    family("jejak_edge_errors_total", "counter", "Refused or failed inputs, by stable error code.")
    for code, n in sorted(metrics.errors.items()):
        lines.append(f"jejak_edge_errors_total{_labels(code=code)} {n}")
    family("jejak_edge_feedback_total", "counter", "Indicator feedback shown at the reader, by status.")
    for status, n in sorted(metrics.feedback.items()):
        lines.append(f"jejak_edge_feedback_total{_labels(status=status)} {n}")
    family("jejak_edge_task_restarts_total", "counter", "Supervised task restarts after a crash.")
    for task, n in sorted(metrics.restarts.items()):
        lines.append(f"jejak_edge_task_restarts_total{_labels(task=task)} {n}")
    family("jejak_edge_duplicates_total", "counter", "Submissions folded into an earlier identical one.")
    lines.append(f"jejak_edge_duplicates_total {metrics.duplicates}")
    for metric, h, text in (("ack_latency", metrics.ack_latency, "Input to acknowledgement (durable commit) time."),
                            ("feedback_latency", metrics.feedback_latency,
                             "Tap to its first beep or light at the reader, the commit included.")):
        name = f"jejak_edge_{metric}_seconds"
        family(name, "histogram", text)
        for bound, n in zip(h.buckets, h.counts, strict=True):
            lines.append(f'{name}_bucket{{le="{bound}"}} {n}')
        lines.append(f'{name}_bucket{{le="+Inf"}} {h.total}')
        lines.append(f"{name}_sum {h.sum:.6f}")
        lines.append(f"{name}_count {h.total}")
    for name, value in sorted(gauges.items()):
        family(f"jejak_edge_{name}", "gauge", name.replace("_", " ") + ".")
        lines.append(f"jejak_edge_{name} {value}")
    return "\n".join(lines) + "\n"
