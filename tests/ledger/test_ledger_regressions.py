"""Regression tests for ledger bugs found by the property tests; each failed before its fix."""

from __future__ import annotations

import pytest

import ledger
from ledger import cbor


def test_chain_state_from_cbor_with_wrong_types_is_malformed() -> None:
    # Before the fix: TypeError (len of None) or ValueError from __post_init__, not MalformedRecord.
    for item in ([None, 0, bytes(32), b"", 0, 0], [bytes(15), 0, bytes(32), b"", 0, 0],
                 [bytes(16), -1, bytes(32), b"", 0, 0], [bytes(16), 0, b"", b"", 0, 0],
                 [bytes(16), True, bytes(32), b"", 0, 0], [bytes(16), 0, bytes(32), b"", "0", 0]):
        with pytest.raises(ledger.MalformedRecord):
            ledger.ChainState.from_cbor(cbor.encode(item))


def _bundle_map() -> dict[str, object]:
    signer = ledger.Ed25519Signer.from_seed(bytes(32))
    b = ledger.ChainBuilder(signer, clock=lambda: 1, boot=0)
    g = b.genesis()
    bundle = ledger.Bundle(hub_key=None, logs=[ledger.LogExport(device_id=g.device_id, keys=[g.raw],
                                                                 records=[g.raw])],
                           checkpoints=[], receipts=[], consistency=[], forks=[], created=1)
    item = cbor.decode(bundle.encode())
    assert isinstance(item, dict)
    return item


@pytest.mark.parametrize("path, value", [
    (("logs", 0, "device"), None),  # was AttributeError: 'NoneType' object has no attribute 'hex'
    (("logs", 0, "revoked_from"), [1]),  # was TypeError: '>=' not supported between int and list
    (("logs", 0, "bodies"), [[1, 2]]),  # bytes(2) silently became two zero bytes
    (("consistency",), [[[1], 2, []]]),  # was TypeError: unhashable type: 'list'
    (("hub_key",), "key"),
    (("receipts",), [[1, b""]]),
    (("created",), "yesterday"),
])
def test_bundle_fields_of_the_wrong_type_are_malformed(path: tuple[object, ...], value: object) -> None:
    item = _bundle_map()
    target: object = item
    for step in path[:-1]:
        target = target[step]  # type: ignore[index]
    target[path[-1]] = value  # type: ignore[index]
    data = cbor.encode(item)
    with pytest.raises(ledger.MalformedRecord):
        ledger.decode_bundle(data)
    with pytest.raises(ledger.MalformedRecord):
        ledger.verify_bundle(data)


def test_unmodified_bundle_map_still_verifies() -> None:
    assert ledger.verify_bundle(cbor.encode(_bundle_map())).ok
