"""`/metrics` of hub and edge, parsed as Prometheus parses it: the families exist with real help, the right type
and values that follow what happened (records in, a refusal by cause, a checkpoint, device lag, the process)."""

from __future__ import annotations

import asyncio
import urllib.request

import aiocoap
from prometheus_client.parser import text_string_to_metric_families

from coap_server.sync import sync_once
from edge.metrics import EdgeState, Metrics, prometheus
from hub.app import start_hub
from hub.config import HubConfig

from .conftest import enroll, new_device
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
