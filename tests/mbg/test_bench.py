"""The MBG benchmark runs in quick mode and reports its figures."""

from __future__ import annotations

from hub.mbg import bench


def test_bench_quick_reports_positive_figures() -> None:
    figures = bench.run(quick=True)
    for key in ("kitchens", "meals", "records", "containers", "container_steps", "deliveries", "stock_cards",
                "simulate_s", "reconcile_s", "reconcile_ceiling_s", "records_per_s", "peak_mib",
                "peak_ceiling_mib"):
        assert figures[key] > 0, key
    assert figures["meals"] == figures["kitchens"] * 3000
    assert figures["containers"] == figures["meals"] // 10
    assert figures["findings"] == 0  # a normal province day


def test_bench_window_day_costs_what_the_day_alone_costs() -> None:
    figures = bench.window_figures(2, days=4)
    assert figures["same_answer"] is True
    assert figures["day_of_window_scans_reconciled"] == figures["day_alone_scans_reconciled"] > 0
    assert figures["asked_again_scans_reconciled"] == 0
    assert figures["records_held"] == 4 * 2 * 82
