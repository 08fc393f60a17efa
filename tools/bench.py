"""`jejak bench`: run every part's benchmark, each figure beside its ceiling, and write JSON and Markdown."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from tools.slow_storage import NoCompiler, build

OWN_PACKAGES = {"ledger", "firmware", "edge", "coap_server", "hub", "tools"}
PARTS = (
    ("ledger", "ledger.bench"),
    ("firmware", "firmware.bench"),
    ("edge", "edge.bench"),
    ("edge-memory", "edge.memory_bench"),
    ("sync", "tools.sync_bench"),
    ("hub", "hub.bench"),
    ("mbg", "hub.mbg.bench"),
    ("markets", "hub.markets.bench"),
    ("websockets", "hub.bridges.bench"),
)


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        mem = Path("/proc/meminfo").read_text().splitlines()[0].split(":", 1)[1].strip()
    except (OSError, IndexError):
        pass
    return {"platform": platform.platform(), "cpu": cpu, "cores": os.cpu_count(), "memory": mem,
            "python": sys.version.split()[0]}


def _flatten(prefix: str, value: Any, out: list[tuple[str, str]]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    elif isinstance(value, float):
        out.append((prefix, f"{value:,.3f}" if abs(value) < 100 else f"{value:,.0f}"))
    else:
        out.append((prefix, str(value)))


def markdown(results: dict[str, Any]) -> str:
    lines = ["# Benchmarks", "", "Written by `jejak bench`" + (" --quick" if results["quick"] else "") +
             f" on {time.strftime('%Y-%m-%d', time.gmtime(results['started']))}. Each figure stands beside the "
             "ceiling measured in the same run; machines here are shared, so compare ratios, not absolutes.", "",
             "## Machine", ""]
    for k, v in results["machine"].items():
        lines.append(f"- {k}: {v}")
    for part, figures in results["parts"].items():
        lines += ["", f"## {part}", "", "| figure | value |", "| --- | --- |"]
        rows: list[tuple[str, str]] = []
        _flatten("", figures, rows)
        lines += [f"| {k} | {v} |" for k, v in rows]
    return "\n".join(lines) + "\n"


BY_HAND = "## Measured by hand"


def by_hand(path: Path) -> str:
    """The section of BENCHMARKS.md that no benchmark writes (fresh-clone demo time, export memory): kept as
    it is when the tables above it are written again, since its figures come from the commands it lists."""
    text = path.read_text() if path.exists() else ""
    at = text.find("\n" + BY_HAND)
    return text[at:] if at >= 0 else ""


def storage_line(delay: float, row: dict[str, Any]) -> str:
    """One line of the slow-storage figures, as the run goes."""
    line = (f"  fsync +{delay:g} ms: {row['durable_appends_per_s']:,.0f} durable appends/s with "
            f"{row['submitters']} submitters, {row['records_per_commit']:.0f} records a commit, "
            f"{row['cpu_us_per_record']:.0f} us CPU a record; 200 taps/s alone: tap-to-ack p50 "
            f"{row['tap_to_ack_p50_ms']:.1f} ms p99 {row['tap_to_ack_p99_ms']:.1f} ms")
    if "loaded_tap_to_ack_p99_ms" in row:
        line += (f"; during the appends ({row['loaded_durable_appends_per_s']:,.0f}/s): p50 "
                 f"{row['loaded_tap_to_ack_p50_ms']:.1f} ms p99 {row['loaded_tap_to_ack_p99_ms']:.1f} ms, "
                 f"{row['loaded_records_ahead_of_tap_p99']} records ahead of a tap (p99)")
    return line


def slow_storage(delays_ms: list[float], *, quick: bool) -> dict[str, Any]:
    """edge.bench's storage figures in one process per fsync delay (the shim is preloaded at process start),
    with no delay first as the same-run reference; synced writes counted by the shim. Each line is printed as
    it comes."""
    with tempfile.TemporaryDirectory(prefix="jejak-slow-storage-") as tmp:
        try:
            shim = build(Path(tmp))
        except NoCompiler as exc:
            print(f"bench slow-storage: skipped, {exc}", flush=True)
            return {"skipped": str(exc)}
        figures: dict[str, Any] = {}
        # The stores go on tmpfs where there is one, so the shim's delay is the only storage latency: on a
        # shared machine the real disk's fsync swings with other work and would blur the model.
        memory = Path("/dev/shm")
        store_dir = str(memory) if memory.is_dir() and os.access(memory, os.W_OK) else tempfile.gettempdir()
        figures["store_dir"] = store_dir
        for delay in [0.0, *delays_ms]:
            counted = Path(tmp) / f"syncs-{delay}"
            env = shim.environ(delay, counted)
            env["TMPDIR"] = store_dir
            done = subprocess.run([sys.executable, "-m", "edge.bench", "--storage"] + (["--quick"] if quick else []),
                                  env=env, capture_output=True, text=True)
            if done.returncode != 0:
                figures[f"fsync_{delay:g}ms"] = {"error": done.stderr.strip()[-500:]}
                continue
            row: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
            if counted.exists():
                row["synced_writes"] = int(counted.read_text())
            figures[f"fsync_{delay:g}ms"] = row
            print(storage_line(delay, row), flush=True)
        figures["goals"] = {"fsync_5ms": {"tap_to_ack_p99_ms": 50, "durable_appends_per_s": 5000}}
        return figures


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="jejak bench", description=__doc__)
    p.add_argument("--quick", action="store_true", help="small sizes, for CI")
    p.add_argument("--only", action="append", help="run only these parts (repeatable)")
    p.add_argument("--json", default="benchmarks.json", help="where to write the figures as JSON")
    p.add_argument("--markdown", default="BENCHMARKS.md", help="where to write the table")
    p.add_argument("--update", action="store_true",
                   help="keep the other parts' figures from the JSON file and replace only the parts run")
    p.add_argument("--fsync-delay-ms", metavar="MS[,MS...]",
                   help="also run the edge's append and tap parts with every fsync delayed this long, as on an SD "
                        "card (e.g. 2,5,10); needs a C compiler for the shim, else that part says so and is skipped")
    p.add_argument("--peers", action="store_true",
                   help="also run Hypercore 11 (npm) beside Jejak's TCP catch-up and print the ratio")
    p.add_argument("--instructions", action="store_true",
                   help="also count CPU instructions per record (valgrind callgrind) for a tap made durable and a "
                        "record synced (both sides) and a record ingested at the hub: stable on a loaded machine")
    p.add_argument("--mbg-kitchens", metavar="N[,N...]",
                   help="the mbg part also reconciles one simulated day at each of these numbers of kitchens "
                        "(e.g. 500,2000,8000,30000): time, peak heap and bytes held per record")
    p.add_argument("--mbg-window-kitchens", metavar="N", type=int,
                   help="kitchens in the mbg part's 8-day window (default 100; --quick 5)")
    p.add_argument("--edge-memory-minutes", metavar="M", type=float,
                   help="how long the edge-memory part loads a `jejak edge run` process (default 10; --quick 1/3)")
    p.add_argument("--edge-memory-rate", metavar="R", type=float,
                   help="requests a second the edge-memory part offers (default 500; --quick 200)")
    args = p.parse_args(argv)
    options: dict[str, dict[str, Any]] = {"mbg": {}, "edge-memory": {}}
    if args.edge_memory_minutes is not None:
        options["edge-memory"]["minutes"] = args.edge_memory_minutes
    if args.edge_memory_rate is not None:
        options["edge-memory"]["rate"] = args.edge_memory_rate
    if args.mbg_kitchens:
        options["mbg"]["kitchens"] = [int(k) for k in args.mbg_kitchens.split(",")]
    if args.mbg_window_kitchens:
        options["mbg"]["window_kitchens"] = args.mbg_window_kitchens
    results: dict[str, Any] = {"quick": args.quick, "started": int(time.time()), "machine": machine(),
                               "parts": {}}
    if args.update and Path(args.json).exists():
        results["parts"] = json.loads(Path(args.json).read_text())["parts"]
    failed = 0
    for part, module in PARTS:
        if args.only and part not in args.only:
            continue
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name == module:
                continue
            if exc.name is None or exc.name.split(".")[0] in OWN_PACKAGES:
                raise
            # An edge installed without [hub] still measures its own parts; the table says what is missing.
            print(f"bench {part}: skipped, needs {exc.name} (pip install 'jejak[hub]')", flush=True)
            results["parts"][part] = {"skipped": f"needs {exc.name}: pip install 'jejak[hub]'"}
            continue
        print(f"bench {part} ...", flush=True)
        started = time.perf_counter()
        try:
            figures = mod.run(quick=args.quick, **options.get(part, {}))
            if not isinstance(figures, dict):  # a part that reports a list of rows
                figures = {"results": figures}
        except Exception:
            failed += 1
            figures = {"error": traceback.format_exc(limit=3)}
        figures["seconds"] = round(time.perf_counter() - started, 2)
        results["parts"][part] = figures
        summary = getattr(mod, "summary", None)  # a part's goals, said as it ends
        if summary is not None and "error" not in figures:
            for line in summary(figures):
                print(f"  {line}", flush=True)
    if args.fsync_delay_ms:
        print("bench slow-storage ...", flush=True)
        started = time.perf_counter()
        results["parts"]["slow-storage"] = slow_storage(
            [float(ms) for ms in args.fsync_delay_ms.split(",")], quick=args.quick)
        results["parts"]["slow-storage"]["seconds"] = round(time.perf_counter() - started, 2)
    if args.peers:
        print("bench peers ...", flush=True)
        started = time.perf_counter()
        try:
            # Imported like the parts above: it needs the hub's extra, which an edge install may lack.
            results["parts"]["peers"] = importlib.import_module("tools.peers_bench").run(quick=args.quick)
        except Exception:
            failed += 1
            results["parts"]["peers"] = {"error": traceback.format_exc(limit=3)}
        results["parts"]["peers"]["seconds"] = round(time.perf_counter() - started, 2)
        if "jejak_over_hypercore" in results["parts"]["peers"]:
            print(f"Jejak TCP catch-up / Hypercore replicate-and-verify: "
                  f"{results['parts']['peers']['jejak_over_hypercore']:.2f}", flush=True)
    if args.instructions:
        print("bench instructions ...", flush=True)
        started = time.perf_counter()
        try:
            # Imported like the parts above: it needs the hub's extra, which an edge install may lack.
            counted = importlib.import_module("tools.instructions")
            results["parts"]["instructions"] = counted.measure(100 if args.quick else 200)
        except Exception:
            failed += 1
            results["parts"]["instructions"] = {"error": traceback.format_exc(limit=3)}
        results["parts"]["instructions"]["seconds"] = round(time.perf_counter() - started, 2)
    Path(args.json).write_text(json.dumps(results, indent=2, default=str))
    Path(args.markdown).write_text(markdown(results) + by_hand(Path(args.markdown)))
    print(f"wrote {args.json} and {args.markdown}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
