"""A hub killed with SIGKILL under load loses no acknowledged record and its checkpoints stay consistent."""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import signal
import subprocess
import sys
import urllib.request

import aiocoap
import cbor2

from hub.auth import hash_token
from ledger import ChainState, decode_checkpoint, decode_record, verify_checkpoints_consistent, verify_records
from ledger.enroll import make_enroll_request
from ledger.sync import encode_records
from tests.ports import free_coap, free_tcp

from .conftest import Clock, new_device

CYCLES = 4


AUDITOR = "auditor-token-for-restart"  # record bodies are read with an auditor's token


def _get(url: str):
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {AUDITOR}"})
    with urllib.request.urlopen(request, timeout=5) as resp:
        return json.loads(resp.read())


async def _wait_up(url: str, proc: subprocess.Popen) -> None:
    for _ in range(200):
        if proc.poll() is not None:
            raise AssertionError(f"hub exited with {proc.returncode}")
        try:
            _get(f"{url}/api/status")
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise AssertionError("hub did not come up")


async def test_sigkill_under_load(tmp_path):
    http, coap = free_tcp(), free_coap()
    config = tmp_path / "hub.toml"
    config.write_text(f'data_dir = "{tmp_path / "hub"}"\nhttp_port = {http}\ncoap_port = {coap}\n'
                      'auto_approve = true\nmdns = false\ncheckpoint_interval = 0.2\n'
                      f'auditor_tokens = ["{hash_token(AUDITOR)}"]\n')
    url = f"http://127.0.0.1:{http}"
    clock = Clock()
    signer, builder = new_device(clock)
    raws = [builder.genesis().raw] + [builder.append("note", {"text": f"r{i}"}).raw for i in range(2999)]
    acked = 0
    seen_checkpoints: list[bytes] = []
    rng = random.Random(7)
    ctx = await aiocoap.Context.create_client_context()

    async def push() -> None:
        nonlocal acked
        start = acked
        while start < len(raws):
            body = encode_records(builder.device_id, start, raws[start:start + 50])
            msg = aiocoap.Message(code=aiocoap.POST, uri=f"coap://127.0.0.1:{coap}/sync/records", payload=body)
            resp = await asyncio.wait_for(ctx.request(msg).response, 5)
            assert resp.code.is_successful(), resp.payload
            ack = cbor2.loads(resp.payload)
            acked = max(acked, ack["length"])  # only what the hub said it stored counts as acknowledged
            start = ack["length"]

    try:
        for cycle in range(CYCLES + 1):
            proc = subprocess.Popen([sys.executable, "-m", "tools.cli", "hub", "run", "--config", str(config)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                await _wait_up(url, proc)
                if cycle == 0:
                    req = make_enroll_request(signer, site="sppg-01", role="kitchen_exit", name="k",
                                              time=clock(), hub_id=bytes.fromhex(_get(f"{url}/api/status")["hub"]))
                    urllib.request.urlopen(urllib.request.Request(f"{url}/api/enroll", data=req), timeout=5)
                heads = {h["device"]: h["length"] for h in _get(f"{url}/api/heads")["heads"]}
                assert heads.get(builder.device_id.hex(), 0) >= acked, f"cycle {cycle}: acknowledged records lost"
                latest = _get(f"{url}/api/checkpoints")["checkpoints"]
                seen_checkpoints += [bytes.fromhex(c["cose"]) for c in latest]
                if cycle == CYCLES:
                    break
                task = asyncio.create_task(push())
                await asyncio.sleep(rng.uniform(0.2, 0.8))
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                task.cancel()
                try:
                    await task
                except (asyncio.CancelledError, Exception):
                    pass
            finally:
                if proc.poll() is None:
                    proc.terminate()
                    proc.wait()
        proc = subprocess.Popen([sys.executable, "-m", "tools.cli", "hub", "run", "--config", str(config)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            await _wait_up(url, proc)
            assert acked > 0
            await push()
            length = {h["device"]: h["length"] for h in _get(f"{url}/api/heads")["heads"]}[builder.device_id.hex()]
            assert length == len(raws)
            status = _get(f"{url}/api/status")
            hub_key = bytes.fromhex(status["pubkey"])
            records = []
            for start in range(0, length, 1000):
                got = _get(f"{url}/api/devices/{builder.device_id.hex()}/records?from={start}&to={start + 1000}")
                records += got["records"]
            assert [r["id"] for r in records] == [hashlib.sha256(raw).hexdigest() for raw in raws]
            verify_records(ChainState.empty(builder.device_id), [decode_record(r) for r in raws])
            cps = sorted({decode_checkpoint(c).raw: decode_checkpoint(c) for c in seen_checkpoints}.values(),
                         key=lambda c: c.tree_size)
            final = decode_checkpoint(bytes.fromhex(_get(f"{url}/api/checkpoints/latest")["cose"]))
            for cp in cps:
                if 0 < cp.tree_size <= final.tree_size:
                    proof = _get(f"{url}/api/proofs/consistency?from={cp.tree_size}&to={final.tree_size}")
                    verify_checkpoints_consistent(cp, final, [bytes.fromhex(p) for p in proof["proof"]], hub_key)
        finally:
            proc.terminate()
            proc.wait()
    finally:
        await ctx.shutdown()
