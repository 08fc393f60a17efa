"""A deliberately broken decoder, only for tests/fuzz/test_atheris.py: it raises a plain ValueError (not a
typed error) on inputs starting with de ad, so that the fuzz harness can be seen to fail."""

from __future__ import annotations

from ledger.errors import MalformedRecord


def decode(data: bytes) -> int:
    if len(data) < 2:
        raise MalformedRecord("broken decoder: expected at least 2 bytes")
    if data[0] == 0xDE and data[1] == 0xAD:
        raise ValueError("broken decoder: a plain ValueError on purpose")
    return data[0]
