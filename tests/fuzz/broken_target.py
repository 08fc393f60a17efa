"""The fuzz target around tests/fuzz/broken_decoder.py. It is reachable only by naming it
(`tests.fuzz.broken_target:TARGET`), never through `python -m tests.harness.fuzz --target all`."""

from __future__ import annotations

from tests.harness.fuzz import Target, TestOne


def _build() -> TestOne:
    from ledger.errors import MalformedRecord
    from tests.fuzz.broken_decoder import decode

    def run(data: bytes) -> None:
        try:
            decode(data)
        except MalformedRecord:
            pass

    return run


TARGET = Target("broken", "a test-only decoder that raises ValueError on de ad", _build,
                instrument=("tests.fuzz.broken_decoder",), seeds=lambda: [b"\x00\x01", b"hello", b"\xde\x00"])
