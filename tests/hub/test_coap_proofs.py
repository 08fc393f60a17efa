"""Checkpoints and proofs over CoAP, fetched by aiocoap and by libcoap's coap-client, verify offline."""

from __future__ import annotations

import asyncio
import shutil

import aiocoap
import cbor2

from hub.app import start_hub
from hub.bridges import BridgeConfig
from hub.config import HubConfig
from ledger import decode_checkpoint, verify_checkpoints_consistent, verify_receipt

from .conftest import enroll, new_device


async def test_receipts_and_consistency_over_coap(tmp_path, hub, clock):
    signer, builder = new_device(clock)
    device_id = enroll(hub, signer, clock)
    records = [builder.genesis()] + [builder.append("note", {"text": str(i)}) for i in range(40)]
    hub.ingest(device_id, [r.raw for r in records[:20]])
    older = hub.checkpoint()
    hub.ingest(device_id, [r.raw for r in records[20:]])
    newer = hub.checkpoint()
    running = await start_hub(HubConfig(bridges=BridgeConfig(enabled=False), data_dir=str(tmp_path), http_port=0, coap_port=0, mdns=False), hub=hub)
    ctx = await aiocoap.Context.create_client_context()
    try:
        async def get(path: str) -> aiocoap.Message:
            return await ctx.request(aiocoap.Message(code=aiocoap.GET, uri=running.coap_url + path)).response

        cp = decode_checkpoint((await get("/checkpoint")).payload)
        assert cp.raw == newer.raw
        receipt = (await get(f"/proofs/inclusion?r={records[33].id.hex()}")).payload
        own = len(hub.own_log())  # the hub's own log (genesis, approval) came first
        assert verify_receipt(receipt, records[33].raw, hub.signer.public_key).index == own + 33
        first, second, proof = cbor2.loads((await get(f"/proofs/consistency?from={older.tree_size}"
                                                      f"&to={newer.tree_size}")).payload)
        assert (first, second) == (older.tree_size, newer.tree_size)
        verify_checkpoints_consistent(older, newer, proof, hub.signer.public_key)
        missing = await get("/proofs/inclusion?r=" + "00" * 32)
        assert str(missing.code).startswith("4.04") and cbor2.loads(missing.payload)["code"] == "NOT_FOUND"
        bad = await get("/proofs/consistency?from=x")
        assert str(bad.code).startswith("4.00")
        # A size the log does not have yet is not found; sizes the wrong way round name no proof.
        ahead = await get(f"/proofs/consistency?from=1&to={len(hub.tree) + 1}")
        assert str(ahead.code).startswith("4.04") and cbor2.loads(ahead.payload)["code"] == "NOT_FOUND"
        backwards = await get(f"/proofs/consistency?from={newer.tree_size}&to={older.tree_size}")
        assert str(backwards.code).startswith("4.00") and cbor2.loads(backwards.payload)["code"] == "HUB_ERROR"
        # libcoap's client fetches the same receipt bytes.
        client = shutil.which("coap-client-notls") or shutil.which("coap-client")
        assert client, "libcoap3-bin is installed by scripts/setup"
        out = tmp_path / "receipt.cbor"
        proc = await asyncio.create_subprocess_exec(
            client, "-m", "get", "-o", str(out),
            f"{running.coap_url}/proofs/inclusion?r={records[5].id.hex()}")
        assert await proc.wait() == 0
        assert verify_receipt(out.read_bytes(), records[5].raw, hub.signer.public_key).index == own + 5
    finally:
        await ctx.shutdown()
        await running.close()
