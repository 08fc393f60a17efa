"""`/metrics` of hub and edge, parsed as Prometheus parses it: the families exist with real help, the right type
and values that follow what happened (records in, a refusal by cause, a checkpoint, device lag, the process)."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
import uuid

import aiocoap
import psycopg
import pytest
from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from coap_server.sync import sync_once
from edge.metrics import EdgeState, Metrics, prometheus
from hub.app import start_hub
from hub.config import HubConfig, StoreConfig
from hub.metrics import IDLE_OVER, LAG_BUCKETS, HubMetrics
from hub.service import Hub
from hub.store import LmdbHubStore
from ledger import Ed25519Signer
from tests.contract.test_hub_store import PG_DSN

from .conftest import Clock, enroll, new_device
from .test_sync_coap import MemoryHolder


def families(text: str) -> dict[str, object]:
    found = {f.name: f for f in text_string_to_metric_families(text)}
    for family in found.values():
        assert family.documentation and not family.documentation.endswith(" ."), family.name  # type: ignore[attr-defined]
    return found


def value(found: dict[str, object], name: str, **labels: str) -> float:
    for sample in found[name].samples:  # type: ignore[attr-defined]
        if sample.name in (name, name + "_total") and all(sample.labels.get(k) == v for k, v in labels.items()):
            return float(sample.value)
    raise AssertionError(f"{name}{labels} not exposed")


async def scrape(url: str) -> dict[str, object]:
    text = await asyncio.to_thread(lambda: urllib.request.urlopen(url + "/metrics", timeout=10).read().decode())
    return families(text)


async def test_hub_metrics_follow_ingest_refusals_and_checkpoints(tmp_path, hub, clock):
    signer, builder = new_device(clock)
    enroll(hub, signer, clock)
    records = [builder.genesis()] + [builder.append("note", {"text": f"n{i}"}) for i in range(20)]
    clock.advance(90)  # the records arrive 90 s after the device made them
    _, stranger = new_device(clock)
    running = await start_hub(HubConfig(data_dir=str(tmp_path / "h"), http_port=0, coap_port=0, mdns=False),
                              hub=hub)
    ctx = await aiocoap.Context.create_client_context()
    try:
        assert (await sync_once(ctx, running.coap_url, MemoryHolder(records), pull=False)).pushed == len(records)
        await sync_once(ctx, running.coap_url, MemoryHolder([stranger.genesis()]), pull=False)
        hub.checkpoint()
        found = await scrape(running.http_url)
        assert found["jejak_hub_records"].type == "counter"  # type: ignore[attr-defined]
        # The log also holds the hub's own entries (the device's approval): the metric is the log's size.
        assert value(found, "jejak_hub_records") == len(hub.tree) >= len(records)
        assert value(found, "jejak_hub_refused_records", cause="unknown") == 1
        assert value(found, "jejak_hub_checkpoints") == 1
        assert value(found, "jejak_hub_checkpoint_tree_size") == len(hub.tree)
        device = records[0].device_id.hex()
        assert value(found, "jejak_hub_device_lag_seconds", device=device) >= 90
        active = sum(1 for d in hub.store.devices() if d.status == "active")
        assert value(found, "jejak_hub_devices", status="active") == active >= 1
        assert found["jejak_hub_ingest_seconds"].type == "histogram"  # type: ignore[attr-defined]
        ok = [s for s in found["jejak_hub_ingest_seconds"].samples  # type: ignore[attr-defined]
              if s.name == "jejak_hub_ingest_seconds_count" and s.labels["code"] == "ok"]
        assert ok and ok[0].value >= 1
        assert value(found, "process_resident_memory_bytes") > 10_000_000
        for name in ("jejak_hub_store_bytes", "jejak_hub_analytics_derive_seconds", "jejak_hub_verify_seconds"):
            assert name in found
        assert 0 < value(found, "jejak_hub_writer_busy_seconds") <= hub.writer_busy_s  # the records pushed above
        assert value(found, "jejak_hub_kind_index_behind") == 0  # a store written with the index from its start
        assert value(found, "jejak_hub_chain_figures_behind") == 0  # and with the figures
        hub.checkpoint(force=True)
        assert value(await scrape(running.http_url), "jejak_hub_checkpoints") == 2  # read afresh at each scrape
    finally:
        await ctx.shutdown()
        await running.close()


def test_edge_metrics_have_real_help_counters_and_the_process():
    counters = Metrics()
    counters.records["nfc"] += 3
    counters.error("BUSY")
    counters.ack_latency.observe(0.004)
    state = EdgeState(log_length=4, logs=2, forked_logs=0, pending=0, commits=3, store_used_bytes=4096,
                      store_map_bytes=1 << 20, coap_observers=0, boot=2)
    found = families(prometheus(counters, state))
    assert found["jejak_edge_records"].type == "counter"  # type: ignore[attr-defined]
    assert value(found, "jejak_edge_records", source="nfc") == 3
    assert found["jejak_edge_commits"].type == "counter" and value(found, "jejak_edge_commits") == 3  # type: ignore[attr-defined]
    assert value(found, "jejak_edge_errors", code="BUSY") == 1
    assert found["jejak_edge_boot"].documentation == "This device's boot counter (records carry it)."  # type: ignore[attr-defined]
    latency = {s.name: s.value for s in found["jejak_edge_ack_latency_seconds"].samples}  # type: ignore[attr-defined]
    assert latency["jejak_edge_ack_latency_seconds_count"] == 1
    assert "process_resident_memory_bytes" in found and "process_cpu_seconds" in found


def test_edge_metrics_parse_as_prometheus_client_writes_the_process_and_escaped_labels():
    # The edge writes the text format itself (the client library costs it 3 MB of heap); what it writes must
    # read back as the library's own collectors and families would.
    counters = Metrics()
    counters.error('ODD"CODE\\\n')
    counters.ack_latency.observe(0.0015)
    counters.ack_latency.observe(0.75)
    state = EdgeState(log_length=0, logs=1, forked_logs=0, pending=0, commits=0, store_used_bytes=0,
                      store_map_bytes=1, coap_observers=0, boot=0)
    ours = families(prometheus(counters, state))
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    theirs = families(generate_latest(registry).decode())

    def shape(found: dict[str, object]) -> set[tuple[str, str, str, tuple[str, ...]]]:
        return {(name, f.type, f.documentation, tuple(s.name for s in f.samples))  # type: ignore[attr-defined]
                for name, f in found.items() if not name.startswith("jejak_")}

    assert shape(ours) == shape(theirs) and len(theirs) == 7
    for name in ("process_max_fds", "python_info", "process_start_time_seconds"):
        assert value(ours, name) == pytest.approx(value(theirs, name), abs=0.02), name
    assert value(ours, "process_resident_memory_bytes") == pytest.approx(
        value(theirs, "process_resident_memory_bytes"), rel=0.2)
    assert value(ours, "jejak_edge_errors", code='ODD"CODE\\\n') == 1
    latency = {(s.name, s.labels.get("le")): s.value for s in ours["jejak_edge_ack_latency_seconds"].samples}  # type: ignore[attr-defined]
    assert latency[("jejak_edge_ack_latency_seconds_bucket", "0.002")] == 1
    assert latency[("jejak_edge_ack_latency_seconds_bucket", "1.0")] == 2
    assert latency[("jejak_edge_ack_latency_seconds_bucket", "+Inf")] == 2
    assert latency[("jejak_edge_ack_latency_seconds_sum", None)] == pytest.approx(0.7515)


async def test_grafana_readme_scrape_config_reaches_an_edges_metrics(tmp_path):
    """deploy/grafana/README.md's scrape config, as Prometheus uses it, against a real edge: each edge entry sends
    the bearer token of its credentials file (the edge's pairing secret; /metrics is 401 without it) and keeps
    job="jejak-edge", the dashboard's edge_job."""
    import json
    import re
    from pathlib import Path

    import yaml

    from edge.config import HttpConfig
    from edge.daemon import EdgeDaemon
    from tests.edge.common import edge_config

    root = Path(__file__).resolve().parents[2]
    block = re.search(r"```yaml\n(.*?)```", (root / "deploy/grafana/README.md").read_text(), re.S)
    assert block is not None
    dashboard = json.loads((root / "deploy/grafana/jejak.json").read_text())
    edge_job = next(v["current"]["value"] for v in dashboard["templating"]["list"] if v["name"] == "edge_job")
    edges = [s for s in yaml.safe_load(block[1])["scrape_configs"] if s["job_name"] != "jejak-hub"]
    assert edges
    daemon = EdgeDaemon(edge_config(tmp_path / "edge", http=HttpConfig(enabled=True, host="127.0.0.1", port=0)))
    await daemon.start()
    try:
        url = f"http://127.0.0.1:{daemon.http_port}/metrics"
        secret = (tmp_path / "edge" / "pairing.secret").read_text().strip()

        def status(headers: dict[str, str]) -> int:
            try:
                with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as resp:
                    return int(resp.status)
            except urllib.error.HTTPError as exc:
                return exc.code

        assert await asyncio.to_thread(status, {}) == 401
        for scrape in edges:
            jobs = [r["replacement"] for r in scrape.get("relabel_configs", []) if r.get("target_label") == "job"]
            assert (jobs or [scrape["job_name"]])[-1] == edge_job, scrape
            auth = scrape.get("authorization", {})
            assert auth.get("type", "Bearer") == "Bearer" and auth.get("credentials_file"), scrape
            # what Prometheus sends: "Bearer " and the file's content, trailing whitespace trimmed
            assert await asyncio.to_thread(status, {"Authorization": f"Bearer {secret}"}) == 200
    finally:
        await daemon.close()


def test_grafana_dashboard_queries_only_exposed_metrics():
    """deploy/grafana/jejak.json: every metric a panel queries is one the hub or the edge exposes."""
    import json
    import re
    from pathlib import Path

    dashboard = json.loads((Path(__file__).resolve().parents[2] / "deploy/grafana/jejak.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    used = {m for e in exprs for m in re.findall(r"\b((?:jejak|process)_[a-z_]+)", e)}
    exposed = set()
    state = EdgeState(log_length=0, logs=0, forked_logs=0, pending=0, commits=0, store_used_bytes=0,
                      store_map_bytes=1, coap_observers=0, boot=0)
    for family in text_string_to_metric_families(prometheus(Metrics(), state)):
        exposed |= {family.name + suffix for suffix in ("", "_total", "_bucket")}
    hub_names = set(re.findall(r'"(jejak_hub_[a-z_]+)"', (Path(__file__).resolve().parents[2] / "hub/metrics.py")
                               .read_text()))
    exposed |= hub_names | {n + "_total" for n in hub_names} | {n + "_bucket" for n in hub_names}
    missing = sorted(m for m in used if m not in exposed and not m.startswith("process_"))
    assert not missing, f"the dashboard queries metrics nobody exposes: {missing}"
    assert {"jejak_hub_refused_records_total", "jejak_edge_records_total"} <= used


DEVICE_FAMILIES = ("jejak_hub_devices_reporting", "jejak_hub_devices_idle", "jejak_hub_device_sync_lag_seconds",
                   "jejak_hub_device_lag_seconds", "jejak_hub_device_last_arrival_timestamp_seconds")


def _device_samples(found: dict[str, object]) -> dict[tuple, float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for name in DEVICE_FAMILIES if name in found
            for s in found[name].samples}  # type: ignore[attr-defined]


def _send(hub: Hub, clock: Clock, lags: list[int]) -> list[bytes]:
    """One device per lag, whose records arrive `lag` seconds after their device time, 10 s apart."""
    ids = []
    for lag in lags:
        signer, builder = new_device(Clock(clock() - lag))
        device = enroll(hub, signer, clock)
        assert hub.ingest(device, [builder.genesis().raw, builder.append("note", {"text": "n"}).raw]).accepted == 2
        ids.append(device)
        clock.advance(10)
    return ids


@pytest.fixture(params=["lmdb", "postgres"])
def config(request, tmp_path):
    name = f"metrics_{uuid.uuid4().hex[:10]}"
    yield HubConfig(name=name, data_dir=str(tmp_path / "hub"), http_port=0, coap_port=0, mdns=False,
                    checkpoint_interval=3600, store=StoreConfig(backend=request.param, dsn=PG_DSN))
    if request.param == "postgres":
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


async def test_device_metrics_are_the_same_after_a_restart(config):
    """Each device's last arrival and lag come from the figures the store keeps, not from what this process saw."""
    clock = Clock()
    running = await start_hub(config, clock=clock)
    try:
        ids = _send(running.hub, clock, [5, 120, 4000])
        clock.advance(1000)
        before = await scrape(running.http_url)
    finally:
        await running.close()
    assert value(before, "jejak_hub_devices_reporting") == 3
    assert value(before, "jejak_hub_device_lag_seconds", device=ids[2].hex()) == 4000
    arrived = value(before, "jejak_hub_device_last_arrival_timestamp_seconds", device=ids[0].hex())
    assert arrived == clock() - 1030
    assert value(before, "jejak_hub_devices_idle", over="900") == 3
    assert value(before, "jejak_hub_devices_idle", over="3600") == 0
    lag = {s.labels["le"]: s.value for s in before["jejak_hub_device_sync_lag_seconds"].samples}  # type: ignore[attr-defined]
    assert (lag["10"], lag["300"], lag["3600"], lag["21600"], lag["+Inf"]) == (1, 2, 2, 3, 3)
    assert value(before, "jejak_hub_device_sync_lag_seconds_gsum") == 5 + 120 + 4000

    running = await start_hub(config, clock=clock)
    try:
        after = await scrape(running.http_url)
    finally:
        await running.close()
    assert _device_samples(after) == _device_samples(before)


def test_device_series_stay_bounded_with_many_devices(tmp_path):
    clock = Clock()
    hub = Hub(LmdbHubStore(tmp_path / "store"), Ed25519Signer.from_seed(b"\x62" * 32), clock=clock)
    metrics = HubMetrics(device_series_cap=4)
    metrics.watch(hub, store_path=None, derive_seconds=lambda: 0.0)

    def scraped() -> tuple[dict[str, object], int]:
        text = generate_latest(metrics.registry).decode()
        found = families(text)
        return found, sum(1 for line in text.splitlines() if line.startswith("jejak_hub_dev"))

    first = _send(hub, clock, [1, 2, 3])
    few, few_series = scraped()
    assert [value(few, "jejak_hub_device_lag_seconds", device=d.hex()) for d in first] == [1, 2, 3]
    _send(hub, clock, [30] * 9)
    clock.advance(7200)
    many, many_series = scraped()
    assert "jejak_hub_device_lag_seconds" not in many and "jejak_hub_device_last_arrival_timestamp_seconds" not in many
    assert value(many, "jejak_hub_devices_reporting") == 12
    assert value(many, "jejak_hub_devices_idle", over="3600") == 12 and value(many, "jejak_hub_devices_idle",
                                                                             over="21600") == 0
    _send(hub, clock, [30] * 20)
    more, more_series = scraped()
    assert value(more, "jejak_hub_devices_reporting") == 32
    # Past the cap the count of series no longer grows with the devices: the idle gauges, the lag buckets, a few
    # more; below it, two series per device besides.
    assert many_series == more_series == few_series - 2 * 3 <= len(IDLE_OVER) + len(LAG_BUCKETS) + 6

