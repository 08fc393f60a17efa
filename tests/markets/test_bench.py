"""The benchmark runs in quick mode and reports positive figures."""

from __future__ import annotations

from hub.markets.bench import run


def test_bench_quick() -> None:
    r = run(quick=True)
    v, f = r["validation"], r["forecast"]
    assert v["observations"] == 100_000 and f["series"] == 50
    for k in ("seconds", "per_second", "peak_bytes", "ceiling_numpy_median_seconds"):
        assert v[k] > 0, k
    for k in ("seconds", "per_series_ms", "peak_bytes", "ceiling_snaive_seconds"):
        assert f[k] > 0, k
    assert sum(f["chosen"].values()) == 50
