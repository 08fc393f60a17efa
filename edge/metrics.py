"""Counters, a latency histogram and Prometheus text exposition for the edge daemon."""

from __future__ import annotations

import os
import platform
import resource
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

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
        self.refused_connections: dict[str, int] = defaultdict(int)  # by reason (coap_server/limits.py)
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
    head_unconfirmed: bool = False  # a hub this edge asks has not confirmed its own log's head since start
    hub_split_view: bool = False  # the hub showed a checkpoint that does not extend the held one (edge/witness.py)
    hub_store_older: bool = False  # the hub answered that it runs on an older copy than the held checkpoint


def _escape(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n")


def _value(value: float) -> str:
    """A sample's value in the text format: a whole number without a fraction."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


@dataclass(frozen=True, slots=True)
class _Family:
    """One metric family of Prometheus' text format (version 0.0.4): its help and type lines and its samples,
    each a name suffix, labels and a value."""

    name: str
    kind: str  # counter, gauge or histogram
    help: str
    samples: tuple[tuple[str, tuple[tuple[str, str], ...], float], ...]

    def lines(self) -> Iterator[str]:
        exposed = f"{self.name}_total" if self.kind == "counter" else self.name
        yield f"# HELP {exposed} {_escape(self.help)}"
        yield f"# TYPE {exposed} {self.kind}"
        for suffix, labels, value in self.samples:
            pairs = ",".join(f'{k}="{_escape(v).replace(chr(34), chr(92) + chr(34))}"' for k, v in labels)
            yield f"{self.name}{suffix}{{{pairs}}} {_value(value)}" if pairs else f"{self.name}{suffix} {_value(value)}"


def _counter(name: str, text: str, value: float) -> _Family:
    return _Family(name, "counter", text, (("_total", (), value),))


def _gauge(name: str, text: str, value: float) -> _Family:
    return _Family(name, "gauge", text, (("", (), value),))


def _process() -> Iterator[_Family]:
    """The process's own families, as Prometheus' client libraries name them: memory, start time, CPU time and
    file descriptors (from /proc, so Linux only), and the Python build."""
    ticks, page = os.sysconf("SC_CLK_TCK"), os.sysconf("SC_PAGE_SIZE")
    try:
        stat = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
        fds = len(os.listdir("/proc/self/fd"))
    except (OSError, StopIteration, IndexError):
        stat = []
    if stat:
        yield _gauge("process_virtual_memory_bytes", "Virtual memory size in bytes.", int(stat[20]))
        yield _gauge("process_resident_memory_bytes", "Resident memory size in bytes.", int(stat[21]) * page)
        yield _gauge("process_start_time_seconds", "Start time of the process since unix epoch in seconds.",
                     int(stat[19]) / ticks + boot)
        yield _counter("process_cpu_seconds", "Total user and system CPU time spent in seconds.",
                       (int(stat[11]) + int(stat[12])) / ticks)
        yield _gauge("process_open_fds", "Number of open file descriptors.", fds)
        yield _gauge("process_max_fds", "Maximum number of open file descriptors.",
                     resource.getrlimit(resource.RLIMIT_NOFILE)[0])
    version = sys.version_info
    yield _Family("python_info", "gauge", "Python platform information", (("", (
        ("implementation", platform.python_implementation()), ("major", str(version.major)),
        ("minor", str(version.minor)), ("patchlevel", str(version.micro)),
        ("version", platform.python_version())), 1),))


def _edge(m: Metrics, s: EdgeState) -> Iterator[_Family]:
    for name, by, label, text in (
            ("records", m.records, "source", "Records appended durably, by input source (nfc, coap, sensor)."),
            ("errors", m.errors, "code", "Refused or failed inputs, by stable error code (docs/ERRORS.md)."),
            ("feedback", m.feedback, "status", "Indicator feedback shown at the reader, by status."),
            ("task_restarts", m.restarts, "task", "Supervised task restarts after a crash, by task."),
            ("refused_connections", m.refused_connections, "reason", "HTTP connections refused or closed for the "
             "edge's limits, by reason: http_connections (past the total), http_connections_per_address, "
             "slow_http_request_bodies (answered 408 and closed); and CoAP observations answered without "
             "Observe: coap_observations, coap_observations_per_address.")):
        yield _Family(f"jejak_edge_{name}", "counter", text,
                      tuple(("_total", ((label, key),), n) for key, n in sorted(by.items())))
    yield _counter("jejak_edge_duplicates", "Submissions folded into an earlier identical one.", m.duplicates)
    yield _counter("jejak_edge_commits", "Group commits of the store since the daemon started.", s.commits)
    for name, h, text in (("ack_latency", m.ack_latency, "Input to acknowledgement (durable commit) time."),
                          ("feedback_latency", m.feedback_latency,
                           "Tap to its first beep or light at the reader, the commit included.")):
        # The histogram's buckets are cumulative in the text format; Histogram.observe counts them so.
        buckets = [*zip(map(str, h.buckets), h.counts, strict=True), ("+Inf", h.total)]
        yield _Family(f"jejak_edge_{name}_seconds", "histogram", text, (
            *(("_bucket", (("le", le),), n) for le, n in buckets), ("_count", (), h.total), ("_sum", (), h.sum)))
    for name, value, text in (
            ("log_length", s.log_length, "Records in this device's own log."),
            ("logs", s.logs, "Logs this node holds: its own and its peers' replicas."),
            ("forked_logs", s.forked_logs, "Logs held back because they forked; an operator must act."),
            ("pending_appends", s.pending, "Appends waiting for their group commit (back-pressure above "
                                           "limits.max_pending)."),
            ("store_used_bytes", s.store_used_bytes, "Bytes the LMDB store uses."),
            ("store_map_bytes", s.store_map_bytes, "The LMDB map size (limits.map_size): the store's ceiling."),
            ("coap_observers", s.coap_observers, "CoAP clients observing a log on this node."),
            ("boot", s.boot, "This device's boot counter (records carry it)."),
            ("head_unconfirmed", int(s.head_unconfirmed), "1 while the hub this edge syncs with has not confirmed "
             "its own log's head since start (not reached, its records still being fetched, or forked): records "
             "signed meanwhile fork the log if the store is an old copy."),
            ("hub_split_view", int(s.hub_split_view), "1 while data_dir/hub-evidence.json holds a checkpoint of the "
             "hub that does not extend the one it showed before (not its key's, smaller, or not consistent): a "
             "split view; the operator removes the file once it is explained."),
            ("hub_store_older", int(s.hub_store_older), "1 while the hub answers that it runs on an older copy of "
             "its data than the checkpoint this edge held (HUB_STORE_OLDER): it signs nothing until its operator "
             "acts.")):
        yield _gauge(f"jejak_edge_{name}", text, value)


def prometheus(metrics: Metrics, state: EdgeState) -> str:
    """The Prometheus text format of the counters, the state and the process (CPU, memory, open files).

    Written here rather than with prometheus_client: importing the client library brings its HTTP and WSGI
    servers, email, gzip and more into the daemon, about 4 MB of a Pi's edge that stays resident for the few
    families written here."""
    return "".join(line + "\n" for family in (*_process(), *_edge(metrics, state)) for line in family.lines())
