"""The benchmark runs end to end and reports every figure (a smoke test: no timing is asserted)."""

from __future__ import annotations

import json
from pathlib import Path

from ledger import bench

RATES = ("sign_encode_per_s", "chain_verify_per_s", "decode_only_per_s", "openssl_sign_per_s",
         "openssl_verify_per_s", "sodium_sign_per_s", "sodium_verify_per_s", "parallel_verify_per_s")


def test_quick_run_reports_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "ledger.json"
    assert bench.main(["--quick", "--out", str(out)]) == 0
    figures = json.loads(out.read_text())
    for name in (*RATES, "chain_verify_vs_raw_verify", "chain_verify_vs_openssl_verify", "parallel_speedup"):
        assert figures[name] > 0, name
    assert figures["parallel_workers"] >= 1
    # Overhead beyond the body: envelope, signature and the seven fixed payload fields.
    assert 0 < figures["overhead_bytes"] < 200
    assert figures["record_bytes"] == figures["overhead_bytes"] + figures["body_bytes"]


def test_raw_verify_on_cores_checks_every_signature_on_each_core() -> None:
    rate, cpu_us = bench.raw_verify_on_cores(300, 2)
    one, _ = bench.raw_verify(300)
    assert rate > 0 and cpu_us > 0
    # Two processes at once checked 600 signatures: their rate is at most about twice one core's, never a
    # hundred times it (as a span measured from the wrong clocks would give).
    assert rate < one * 2 * 20
