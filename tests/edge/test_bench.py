"""The edge benchmark runs and reports every figure with its ceiling (no timing is asserted)."""

from __future__ import annotations

from edge.bench import run


def test_quick_bench_reports_positive_figures():
    figures = run(quick=True)
    for name in ("sign_per_s", "build_signed_record_per_s", "durable_appends_per_s",
                 "durable_appends_batched_per_s", "one_commit_per_append_per_s", "tap_to_ack_p50_ms",
                 "tap_to_ack_p99_ms", "coap_submissions_per_s", "coap_null_resource_per_s",
                 "coap_fraction_of_ceiling"):
        assert figures[name] > 0, name
    assert figures["taps_accepted"] == figures["taps"] > 0
    assert figures["records_per_commit"] > 1  # group commit did group
    assert figures["tap_to_ack_p99_ms"] >= figures["tap_to_ack_p50_ms"]
