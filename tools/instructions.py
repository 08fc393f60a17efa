"""CPU instructions per record for a tap made durable, a record synced (both sides) and a record ingested at
the hub, counted by valgrind's callgrind: unlike rates, instruction counts hold still on a shared, loaded machine and scale to a Pi's cores.

Each path runs twice under callgrind, with n and 2n records; the difference divided by n is the cost of one
record, with interpreter start-up, imports and set-up cancelled out. Records for the hub are made beforehand,
outside the count.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import aiocoap
import cbor2

from coap_server.ports import serve_coap
from coap_server.routing import Site
from coap_server.sync import add_sync_resources
from edge.config import EdgeConfig
from edge.daemon import free_udp_port
from edge.inputs import TapInput, make_machine
from edge.keys import DeviceKey
from edge.metrics import Metrics
from edge.store import GroupCommit, LmdbLogStore
from edge.sync import SyncAgent
from hub.bench import _records
from hub.service import Hub
from hub.store import LmdbHubStore
from ledger import Ed25519Signer
from ledger.enroll import make_enroll_request
from tools.sync_bench import _edge

# A Raspberry Pi 4 core (Cortex-A72, 1.5 GHz) retires about 1-1.5 instructions per cycle on interpreter code.
PI4_INSTRUCTIONS_PER_S = 1.5e9 * 1.2


async def _taps(root: Path, n: int) -> None:
    store = LmdbLogStore(root / "taps", map_size=1 << 28)
    gc = GroupCommit(store, DeviceKey(b"\x01" * 32), clock=lambda: 1_763_900_000, boot=1)
    await gc.start()
    config = EdgeConfig(site="sppg-01", data_dir=str(root))
    tap = TapInput(make_machine(config.site, config.checkpoint), functools.partial(gc.append, urgent=True), Metrics(),
                   indicator=lambda fb: None)
    await tap.tap(config.checkpoint.staff[0])
    for start in range(0, n, 64):  # 64 taps in flight, as a busy kitchen door with a slow card would have
        await asyncio.gather(*(tap.tap(f"04{i:012x}") for i in range(start, min(n, start + 64))))
    await gc.close()
    store.close()


def _ingest(root: Path, raws_file: Path, n: int) -> None:
    raws: list[bytes] = cbor2.loads(raws_file.read_bytes())[:n]
    signer = Ed25519Signer.from_seed((5).to_bytes(32, "big"))
    hub = Hub(LmdbHubStore(str(root / "hub")), Ed25519Signer.from_seed(b"\x77" * 32), clock=lambda: 1_763_900_000)
    req = make_enroll_request(signer, site="sppg-01", role="kitchen_exit", name="bench", time=0, hub_id=hub.hub_id)
    hub.approve(hub.enroll(req).device_id)
    device_id = hub.store.devices()[0].device_id
    for i in range(0, len(raws), 512):
        result = hub.ingest(device_id, raws[i:i + 512])
        if result.problem is not None:
            raise RuntimeError(result.problem)


async def _sync(root: Path, n: int) -> None:
    """Edge B pulls edge A's log over CoAP on loopback, both in this process: A reads and serves each range, B
    verifies and stores each record, so the count is a synced record's cost on both sides."""
    source = LmdbLogStore(root / "a")
    device = source.own_device()
    assert device is not None
    port = free_udp_port("127.0.0.1")
    site = Site()
    add_sync_resources(site, source)
    server = await serve_coap(site, host="127.0.0.1", port=port, tcp=False, setting="bench")
    target = LmdbLogStore(root / "b")
    agent = SyncAgent(target, peers=[f"coap://127.0.0.1:{port}"])
    ctx = await aiocoap.Context.create_client_context()
    try:
        for _ in range(50):
            await agent.round(ctx)
            state = target.state(device)
            if state is not None and state.length >= n:
                break
        else:
            raise RuntimeError(f"sync left {target.state(device)} of {n} records")
    finally:
        await ctx.shutdown()
        await server.shutdown()
        target.close()
        source.close()


def _count(args: list[str], root: Path) -> int:
    out = root / f"callgrind.{len(list(root.glob('callgrind.*')))}"
    subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, "-m",
                    "tools.instructions", *args], check=True, capture_output=True)
    match = re.search(r"^(?:summary|totals):\s*(\d+)", out.read_text(errors="replace"), re.M)
    if match is None:
        raise RuntimeError(f"no instruction total in {out}")
    return int(match.group(1))


def measure(n: int = 200) -> dict[str, Any]:
    """Instructions per record for each path (callgrind, n and 2n records); skipped without valgrind."""
    if shutil.which("valgrind") is None:
        return {"skipped": "needs valgrind for instruction counts (apt install valgrind)"}
    figures: dict[str, Any] = {"records": n}
    with tempfile.TemporaryDirectory(prefix="jejak-instructions-") as tmp:
        root = Path(tmp)
        raws_file = root / "raws.cbor"
        raws_file.write_bytes(cbor2.dumps(_records(2 * n, 5)[1]))
        for path in ("tap", "sync", "ingest"):
            counts = []
            for size in (n, 2 * n):
                work = root / f"{path}-{size}"
                work.mkdir()
                if path == "sync":  # A's signed log is made here, outside the count
                    _edge(work / "a", 7, size)[1].close()
                counts.append(_count(["--path", path, "--n", str(size), "--root", str(work),
                                      "--raws", str(raws_file)], root))
            per = (counts[1] - counts[0]) / n
            figures[f"{path}_instructions_per_record"] = round(per)
            figures[f"{path}_pi4_core_records_per_s"] = round(PI4_INSTRUCTIONS_PER_S / per)
    figures["notes"] = ("callgrind counts of n and 2n records, differenced; a Pi 4 core taken as 1.8e9 "
                        "instructions/s (1.5 GHz at about 1.2 per cycle), so its rates are estimates")
    return figures


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.instructions", description=__doc__)
    p.add_argument("--path", choices=("tap", "sync", "ingest"))
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--root")
    p.add_argument("--raws")
    args = p.parse_args(argv)
    if args.path is None:
        print(json.dumps(measure(args.n), indent=2))
    elif args.path == "tap":
        asyncio.run(_taps(Path(args.root), args.n))
    elif args.path == "sync":
        asyncio.run(_sync(Path(args.root), args.n))
    else:
        _ingest(Path(args.root), Path(args.raws), args.n)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
