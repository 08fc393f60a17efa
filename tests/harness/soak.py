"""A simulated region (hundreds of devices) pushes to one hub over CoAP at an accelerated pace.

The hub runs as its own process (`jejak hub run`'s code) and this process plays the devices. Both run on one
accelerated clock (`--scale` simulated seconds per real second; a day a minute by default), so an hour's
soak covers weeks: the hub's day boundaries, checkpoints and the analytics' window of `mbg_keep_days` all
pass many times. Every second it samples the hub's resident memory, open file descriptors and threads, and
its own asyncio tasks. After the warm-up (the CoAP deduplication window and the analytics' window filled)
memory must stay flat and no descriptor, thread or task may leak. aiocoap runs out of message ids at 65,536
requests per client context, so contexts are renewed well before that.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from aiocoap.numbers.constants import TransportTuning

from hub.config import HubConfig
from tests.wait import PATIENCE

RENEW_AFTER = 2000
EXCHANGE_LIFETIME_S: float = TransportTuning().EXCHANGE_LIFETIME  # how long the hub's CoAP server dedups an exchange
KEEP_DAYS = HubConfig().mbg_keep_days  # the analytics' window of the soak's hub (the default)


class SimClock:
    """Simulated time in whole seconds: from the real time `epoch` on, `scale` seconds pass per real second.
    The hub's process and the devices' share `epoch` and `scale`, so they agree on the time."""

    def __init__(self, epoch: float, scale: float) -> None:
        self.epoch = epoch
        self.scale = scale

    def __call__(self) -> int:
        return int(self.epoch + (time.time() - self.epoch) * self.scale)


def _proc(pid: int) -> dict[str, int]:
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    # RssAnon is the process's own memory; RssFile is mostly the LMDB store's pages mapped in, which grows
    # with the store and which the kernel takes back under memory pressure.
    return {"rss_kb": int(fields["VmRSS"].split()[0]), "anon_kb": int(fields["RssAnon"].split()[0]),
            "file_kb": int(fields["RssFile"].split()[0]), "threads": int(fields["Threads"]),
            "fds": len(os.listdir(f"/proc/{pid}/fd"))}


async def soak(root: Path, *, minutes: float, devices: int, rate: float, scale: float = 1440.0,
               records: int = 0) -> dict[str, Any]:
    """Run for `minutes`, and on until the hub has acknowledged `records` (a busy machine pushes fewer a second),
    for at most 2 * PATIENCE times `minutes` more; the figures of `summarise`."""
    import aiocoap
    import aiocoap.resource
    import cbor2

    from ledger import ChainBuilder, Ed25519Signer
    from ledger.sync import encode_records
    from tests.harness.faults import HubProc

    clock = SimClock(time.time(), scale)
    serve = ("-m", "tests.harness.soak", "--serve-hub", "--epoch", repr(clock.epoch), "--scale", repr(scale))
    hub = HubProc(root / "hub", checkpoint_interval=10.0, command=serve)  # the default interval
    hub.start()
    builders = []
    try:
        await asyncio.to_thread(hub.wait_up)
        for i in range(devices):
            signer = Ed25519Signer.from_seed((5000 + i).to_bytes(32, "big"))
            hub.enroll(signer, f"dev{i}")
            builders.append(ChainBuilder(signer, clock=clock, boot=1))
    except BaseException:
        hub.stop()  # a hub that never came up, or refused an enrollment, is not left running
        raise
    assert hub.proc is not None
    pushed = [0]
    requests = [0]
    failures = [0]
    samples: list[dict[str, Any]] = []
    duration = minutes * 60
    stop = asyncio.Event()

    async def client(host: str) -> aiocoap.Context:
        # Each group of devices sends from an address of its own, as devices on a LAN do: the hub counts a sender's
        # share of its message ids by address (coap_server/exchanges.py), and Linux routes all of 127/8 to loopback.
        return await aiocoap.Context.create_server_context(aiocoap.resource.Site(), bind=(host, 0),
                                                           transports=["udp6"])

    async def device_loop(group: list[int]) -> None:
        host = f"127.0.0.{2 + group[0]}"
        ctx = await client(host)
        used = 0
        state: dict[int, list[bytes]] = {i: [builders[i].genesis().raw] for i in group}
        sent = dict.fromkeys(group, 0)
        try:
            while not stop.is_set():
                tick = time.monotonic()
                for i in group:
                    state[i].append(builders[i].append("scan", {
                        "event": "departed", "site": f"sppg-{i % 40:02d}", "checkpoint": "kitchen_exit",
                        "staff": "5a000001", "tags": [f"e004{i:04x}{len(state[i]):08x}"]}).raw)
                    body = encode_records(builders[i].device_id, sent[i], state[i])
                    msg = aiocoap.Message(code=aiocoap.POST, uri=f"{hub.coap}/sync/records", payload=body)
                    try:
                        async with asyncio.timeout(10 * PATIENCE):  # a busy machine's hub answers late, not never
                            resp = await ctx.request(msg).response
                        ack = cbor2.loads(resp.payload) if resp.code.is_successful() else {}
                    except Exception:
                        ack = {}
                    used += 1
                    requests[0] += 1
                    if "length" in ack:
                        done = int(ack["length"]) - sent[i]
                        pushed[0] += done
                        del state[i][:done]  # the hub holds these; keep only what it has not acked
                        sent[i] = int(ack["length"])
                    else:
                        failures[0] += 1
                    if used >= RENEW_AFTER:
                        await ctx.shutdown()
                        ctx = await client(host)
                        used = 0
                await asyncio.sleep(max(0.0, 1.0 / rate - (time.monotonic() - tick)))
        finally:
            await ctx.shutdown()

    groups = [list(range(g, devices, 16)) for g in range(min(16, devices))]
    tasks = [asyncio.create_task(device_loop(g)) for g in groups]
    started = time.monotonic()

    def going() -> bool:
        elapsed = time.monotonic() - started
        return elapsed < duration or (pushed[0] < records and elapsed < duration * (1 + 2 * PATIENCE))

    try:
        while going():
            await asyncio.sleep(1.0)
            sample = {"t": round(time.monotonic() - started, 1), **_proc(hub.proc.pid),
                      "tasks": len(asyncio.all_tasks()), "records": pushed[0], "requests": requests[0]}
            samples.append(sample)
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        hub.stop()
    return summarise(samples, devices=devices, failures=failures[0], minutes=minutes, scale=scale)


def warmup_s(duration_s: float, scale: float) -> float:
    """When the hub's steady state begins: the CoAP deduplication window and the analytics' window of
    days must have filled once. At least a fifth of the run, at most half of it."""
    return min(max(duration_s / 5, EXCHANGE_LIFETIME_S, KEEP_DAYS * 86400 / scale), duration_s / 2)


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of y over x."""
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    var = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / var if var else 0.0


def records_at(samples: list[dict[str, Any]], t: float) -> float:
    """Records acknowledged by time `t`, interpolated between samples (which are in time order)."""
    i = bisect.bisect_right(samples, t, key=lambda s: s["t"])
    if i == 0:
        return 0.0
    a = samples[i - 1]
    if i == len(samples):
        return float(a["records"])
    b = samples[i]
    return float(a["records"] + (t - a["t"]) / (b["t"] - a["t"]) * (b["records"] - a["records"]))


def summarise(samples: list[dict[str, Any]], *, devices: int, failures: int, minutes: float,
              scale: float = 1.0) -> dict[str, Any]:
    if len(samples) < 4:
        raise ValueError("soak too short: fewer than 4 samples")
    warm_at = warmup_s(samples[-1]["t"], scale)
    steady = [s for s in samples if s["t"] >= warm_at]
    warm = steady[0]
    last = samples[-1]
    span_min = max((last["t"] - warm["t"]) / 60, 1e-9)
    records_after = max(last["records"] - warm["records"], 1)

    def growth(key: str) -> dict[str, float]:
        per_min = slope([(s["t"] / 60, s[key] / 1024) for s in steady])
        return {"after_warmup": round(warm[key] / 1024, 1), "end": round(last[key] / 1024, 1),
                "max": round(max(s[key] for s in samples) / 1024, 1), "growth_mb_per_min": round(per_min, 2),
                "growth_bytes_per_record": round(per_min * span_min * 1024 * 1024 / records_after, 1)}

    # What the hub must hold is what its windows hold: the analytics' days of scans and the CoAP exchanges of
    # the deduplication window. Heap per record in the (largest so far) analytics window stays level when
    # nothing leaks, whatever the throughput does; heap that grows with the hub's age makes it climb.
    window_s = KEEP_DAYS * 86400 / scale
    high = 0.0
    per_window: list[float] = []
    for s in samples:
        high = max(high, s["records"] - records_at(samples, s["t"] - window_s))
        per_window.append(s["anon_kb"] * 1024 / high if high else 0.0)
    at_warm = per_window[samples.index(warm)]
    return {
        "minutes": minutes, "devices": devices, "scale": scale,
        "heap_bytes_per_window_record": {"after_warmup": round(at_warm), "end": round(per_window[-1]),
                                         "max_after_warmup": round(max(per_window[samples.index(warm):]))},
        "simulated_days": round(last["t"] * scale / 86400, 1), "warmup_s": round(warm["t"], 1),
        "records": last["records"], "requests": last["requests"],
        "records_per_s": round(last["records"] / last["t"], 1), "failed_requests": failures,
        "rss_mb": growth("rss_kb"), "heap_mb": growth("anon_kb"), "mapped_files_mb": growth("file_kb"),
        "fds_after_warmup": warm["fds"], "fds_end": last["fds"], "fds_max": max(s["fds"] for s in samples),
        "threads_after_warmup": warm["threads"], "threads_end": last["threads"],
        "client_tasks_after_warmup": warm["tasks"], "client_tasks_end": last["tasks"],
        "samples": [{k: s[k] for k in ("t", "rss_kb", "anon_kb", "file_kb", "fds", "threads", "tasks", "records")}
                    for s in samples[:: max(1, len(samples) // 30)]],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.harness.soak", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=60.0)
    p.add_argument("--devices", type=int, default=300)
    p.add_argument("--rate", type=float, default=2.0, help="records per device per second (accelerated)")
    p.add_argument("--scale", type=float, default=1440.0,
                   help="simulated seconds per real second (1440: a day a minute)")
    p.add_argument("--json", default="soak.json")
    p.add_argument("--serve-hub", action="store_true", help=argparse.SUPPRESS)  # the hub process of a soak
    p.add_argument("--epoch", type=float, help=argparse.SUPPRESS)
    p.add_argument("--config", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve_hub:
        from tools.cli import serve_hub

        return serve_hub(args.config, clock=SimClock(args.epoch, args.scale))
    with tempfile.TemporaryDirectory(prefix="jejak-soak-") as tmp:
        result = asyncio.run(soak(Path(tmp), minutes=args.minutes, devices=args.devices, rate=args.rate,
                                  scale=args.scale))
    Path(args.json).write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=2))
    per_window = result["heap_bytes_per_window_record"]
    leaked = (result["fds_end"] > result["fds_after_warmup"] + 8
              or result["client_tasks_end"] > result["client_tasks_after_warmup"] + 8
              or per_window["end"] > 1.5 * per_window["after_warmup"])
    return 1 if leaked else 0


if __name__ == "__main__":
    sys.exit(main())
