"""Benchmark of `jejak markets import`: writes the food agency's export layout (Timestamp, ID, Komoditas, Satuan,
Harga, Harga Kemarin, Tanggal Kemarin, Gap, Gap Persen, Gap Perubahan, plus Pasar and Pelapor) with N rows,
then reads, validates and stores it as the command does, and imports it again to show it adds nothing.

    python -m tests.harness.market_import --rows 1000000
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from hub.markets.catalog import COMMODITIES, MARKETS
from hub.markets.importer import AGENCY_COLUMNS, ImportDefaults, read_import
from hub.markets.service import MarketService

REPORTERS = 2
UNIT_TEXT = {"kg": ("Rp./Kg", "Rp/kg"), "liter": ("Rp./Liter",)}


def write_export(path: Path, rows: int, *, seed: int = 5) -> int:
    """An export with `rows` rows (markets x commodities x reporters per day, as many days as needed);
    prices sticky random walks on each item's tick. Returns the rows written."""
    rng = np.random.default_rng(seed)
    per_day = len(MARKETS) * len(COMMODITIES) * REPORTERS
    days = -(-rows // per_day)
    start = dt.date(2022, 1, 1)
    walk = {}
    for c in COMMODITIES:
        steps = rng.normal(0, c.daily_vol * 2, (days, 1)) * (rng.random((days, 1)) < 0.3)  # sticky: moves 3 days in 10
        walk[c.id] = c.base_idr * np.exp(np.cumsum(steps, axis=0))[:, 0]
    written = 0
    with open(path, "w", encoding="utf-8", newline="") as fh:
        fh.write(",".join((*AGENCY_COLUMNS, "Pasar", "Pelapor")) + "\n")
        for d in range(days):
            date = (start + dt.timedelta(days=d)).isoformat()
            prev = (start + dt.timedelta(days=d - 1)).isoformat()
            lines = []
            for m in MARKETS:
                for k, c in enumerate(COMMODITIES):
                    p = int(round(walk[c.id][d] / c.tick_idr) * c.tick_idr)
                    y = int(round(walk[c.id][d - 1] / c.tick_idr) * c.tick_idr) if d else p
                    unit = UNIT_TEXT[c.unit][d % len(UNIT_TEXT[c.unit])]
                    gap = p - y
                    for r in range(REPORTERS):
                        lines.append(f"{date} 00:00:00,{k + 1},{c.name if ',' not in c.name else chr(34) + c.name + chr(34)},"
                                     f"{unit},{p},{y},{prev},{gap},{100 * gap / y:.2f},{'naik' if gap > 0 else 'tetap'},"
                                     f"{m.id},{m.id}-r{r}\n")
                        written += 1
                        if written >= rows:
                            break
                    if written >= rows:
                        break
                if written >= rows:
                    break
            fh.writelines(lines)
            if written >= rows:
                break
    return written


def run(rows: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "export.csv"
        n = write_export(path, rows)
        size = path.stat().st_size
        svc = MarketService()
        # Wall and CPU time: on a shared machine the CPU time is what the import itself costs.
        t0, c0 = time.perf_counter(), time.process_time()
        got = read_import(path, ImportDefaults(source="agency"), progress=lambda k: print(f"  {k:,} rows read",
                                                                                          file=sys.stderr))
        t_read, c_read = time.perf_counter() - t0, time.process_time() - c0
        report = svc.import_rows(got)
        total, cpu = time.perf_counter() - t0, time.process_time() - c0
        t1 = time.perf_counter()
        again = svc.import_rows(read_import(path, ImportDefaults(source="agency")))
        t_again = time.perf_counter() - t1
    return {"rows": n, "bytes": size, "read_seconds": round(t_read, 2), "read_cpu_seconds": round(c_read, 2),
            "validate_store_seconds": round(total - t_read, 2), "seconds": round(total, 2),
            "cpu_seconds": round(cpu, 2), "rows_per_s": round(n / total), "rows_per_cpu_s": round(n / cpu),
            "stored": report["stored"], "quarantined": report["quarantined"], "refused": report["refused"],
            "second_import_added": again["stored"] + again["quarantined"],
            "second_import_seconds": round(t_again, 2)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    args = p.parse_args(argv)
    print(json.dumps(run(args.rows), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
