"""Signature checks over a process pool keep exactly the good prefix, as the in-process path does."""

from __future__ import annotations

from hub.service import Hub
from hub.store import LmdbHubStore
from hub.verify import ParallelVerifier
from ledger import Ed25519Signer

from .conftest import enroll, new_device


def test_pool_keeps_good_prefix_and_names_the_forgery(tmp_path, clock):
    verifier = ParallelVerifier(workers=2, min_batch=64)
    store = LmdbHubStore(tmp_path / "hub")
    hub = Hub(store, Ed25519Signer.from_seed(b"\x51" * 32), clock=clock, check=verifier)
    try:
        signer, builder = new_device(clock)
        device_id = enroll(hub, signer, clock)
        raws = [builder.genesis().raw] + [builder.append("note", {"text": str(i)}).raw for i in range(599)]
        forged = bytearray(raws[400])
        forged[-5] ^= 0x10
        result = hub.ingest(device_id, [*raws[:400], bytes(forged), *raws[401:]])
        assert result.accepted == 400
        assert result.problem["code"] == "INVALID_SIGNATURE"
        assert "seq 400" in result.problem["where"]
        assert store.chain_state(device_id).length == 400
        rest = hub.ingest(device_id, raws[400:])
        assert rest.accepted == 200 and rest.problem is None
    finally:
        verifier.close()
        store.close()
