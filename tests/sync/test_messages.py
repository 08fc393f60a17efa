"""Sync messages with impossible fields are refused by the protocol, before any store sees them."""

from __future__ import annotations

import cbor2
import pytest

from ledger import SyncError
from ledger.sync import decode_records, encode_records


@pytest.mark.parametrize("message", [
    [2, b"", 0, []],  # found by fuzzing the edge: an empty device id reached LMDB and answered 5.00
    [2, b"\x01" * 15, 0, []],
    [2, b"\x01" * 16, -1, []],
    [2, b"\x01" * 16, True, []],
])
def test_records_message_with_impossible_fields_is_refused(message):
    with pytest.raises(SyncError):
        decode_records(cbor2.dumps(message))


def test_records_message_round_trip():
    body = encode_records(b"\x02" * 16, 5, [b"a", b"b"])
    assert decode_records(body) == (b"\x02" * 16, 5, [b"a", b"b"])
