"""The attack scenario, run inside its own network namespace: a hub and an enrolled edge, and an attacker
process beside them. Prints one JSON report that tests/security/test_attacks.py checks."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiocoap

from edge.config import SyncConfig
from edge.security import UntrustedHub, verify_hub_checkpoint
from ledger import ChainBuilder, Ed25519Signer, sign_checkpoint
from ledger.sync import encode_heads
from tests.ports import free_coap
from tests.wait import wait_for

from .common import NOW, edge, edge_config, enroll_edge, secure_hub

PY = sys.executable


def attacker(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([PY, "-m", "tests.security.attacker", *args], stdout=subprocess.PIPE, text=True)


def lines(proc: subprocess.Popen[str]) -> list[dict[str, Any]]:
    out, _ = proc.communicate(timeout=30)
    return [json.loads(x) for x in out.splitlines() if x.strip()]


def protected_heads(ctx: Any, mid: int) -> str:
    """A protected POST /sync/heads, as the edge would send it: what an eavesdropper captures."""
    msg = aiocoap.Message(code=aiocoap.POST, uri_path=("sync", "heads"), payload=encode_heads([]),
                          content_format=60)
    outer, _ = ctx.protect(msg)
    outer.mid, outer.token, outer.mtype = mid, mid.to_bytes(2, "big"), aiocoap.CON
    return str(outer.encode().hex())


async def main() -> dict[str, Any]:
    report: dict[str, Any] = {}
    tmp = Path(tempfile.mkdtemp(prefix="jejak-attack-"))
    async with secure_hub(tmp / "hub") as hub:
        hub_url, coap_port = hub.http_url, hub.coap_port
        key = await enroll_edge(tmp / "edge", hub)
        # 1. Spoofed mDNS: one fake hub claims the pinned hub's id, one another id.
        fake_port, other_port = free_coap(), free_coap()
        fake = attacker("fake-hub", hub.hub.hub_id.hex(), str(fake_port))
        other = attacker("fake-hub", "ab" * 16, str(other_port))
        for proc in (fake, other):
            assert proc.stdout is not None and "ready" in proc.stdout.readline()
        cfg = edge_config(tmp / "edge", hub=hub.coap_url, revocations_interval_s=0.2)
        from dataclasses import replace

        cfg = replace(cfg, sync=SyncConfig(mdns=True, interval_s=0.2, interfaces=("127.0.0.1",)))
        async with edge(cfg) as daemon:
            await daemon.submit([("note", {"text": "for the real hub"})])
            assert await wait_for(lambda: (s := hub.hub.store.chain_state(key.device_id)) is not None
                                  and s.length == 2)
            # Both fakes are announced together: once the one with another id is refused, both were seen. The one
            # claiming the pinned id is no target either, as the edge's [hub] address names the hub.
            assert await wait_for(lambda: daemon.security.status()["refused"].get("UNTRUSTED_HUB", 0) >= 1,
                                  timeout=30)
            seen_at = time.time()
            assert await wait_for(lambda: all((t["last_ok"] or 0) > seen_at for t in daemon.sync.status()),
                                  timeout=30)  # a round after both were seen
            report["edge_targets"] = daemon.sync.status()
            report["edge_security"] = daemon.security.status()
            # 2. The fake hub's checkpoint: signed by a key that is not the pinned one.
            forged = sign_checkpoint(Ed25519Signer.generate(), tree_size=99, root=b"\0" * 32, time=NOW)
            try:
                verify_hub_checkpoint(forged.raw, daemon.security.pin)
                report["fake_checkpoint"] = "accepted"
            except UntrustedHub as exc:
                report["fake_checkpoint"] = exc.code
            real = hub.hub.checkpoint(force=True)
            report["real_checkpoint"] = verify_hub_checkpoint(real.raw, daemon.security.pin).tree_size
            report["hub_own_log"] = len(hub.hub.own_log())  # its genesis and decisions share the tree
            # 3. Replayed OSCORE: the attacker sends a captured request twice, then again after a hub restart.
            captured = protected_heads(daemon.security.hub_ctx, 4001)
            # The same bytes again are folded by CoAP's message deduplication (cached answer, not run twice);
            # with a fresh message id they reach OSCORE, whose replay window refuses them.
            restamped = captured[:4] + "4002" + captured[8:]
            report["replay"] = await asyncio.to_thread(lines, attacker("replay", "127.0.0.1", str(coap_port), captured,
                                                                       captured, restamped))
            # 4. Revoked device: the hub revokes D from seq 2; a peer offers D's records to the edge.
            d = Ed25519Signer.from_seed(b"\x42" * 32)
            builder = ChainBuilder(d, clock=lambda: NOW, boot=1)
            d_recs = [builder.genesis()] + [builder.append("note", {"text": str(i)}) for i in range(4)]
            from ledger.enroll import make_enroll_request

            hub.hub.enroll(make_enroll_request(d, site="s", role="kitchen_exit", name="d", time=NOW,
                                               hub_id=hub.hub.hub_id))
            hub.hub.revoke(d_recs[0].device_id, from_seq=2)
            assert await wait_for(lambda: d_recs[0].device_id in daemon.security.revocations.points)
            result = daemon.holder.receive(d_recs[0].device_id, [r.raw for r in d_recs])
            report["revoked"] = {"result": result, "stored": daemon.store.state(d_recs[0].device_id).length}
        for proc in (fake, other):
            proc.terminate()
        report["fake_hub_saw"] = lines(fake)
        report["other_hub_saw"] = lines(other)
        # 5. Enrollment with the stolen QR code but without the device's key.
        victim = Ed25519Signer.generate()
        report["forged_enroll"] = await asyncio.to_thread(lines, attacker("enroll", hub_url, victim.public_key.hex(), hub.hub.hub_id.hex()))
        from ledger import device_id_for

        report["victim_enrolled"] = hub.hub.store.get_device(device_id_for(victim.public_key)) is not None
        report["victim_context"] = (tmp / "hub" / "oscore" / device_id_for(victim.public_key).hex()).exists()
    # 6. The same captured request after the hub restarted: its replay window came back from disk.
    async with secure_hub(tmp / "hub") as hub:
        report["replay_after_restart"] = await asyncio.to_thread(lines, attacker("replay", "127.0.0.1", str(hub.coap_port), captured,
                                                                                   restamped))
    return report


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main()), default=str))
