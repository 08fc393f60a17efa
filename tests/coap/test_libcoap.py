"""Interop with libcoap's coap-client (not written by this project) against the edge daemon."""

from __future__ import annotations

import asyncio
import shutil

import cbor2
import pytest

from ledger import decode_record, verify_chain
from ledger.sync import Limits, decode_records, encode_records
from tests.wait import wait_for

from ..edge.common import edge_config, peer_log, running

COAP_CLIENT = shutil.which("coap-client-notls") or shutil.which("coap-client")


@pytest.fixture
def coap_client():
    assert COAP_CLIENT is not None, "libcoap's coap-client is missing: install libcoap3-bin (scripts/setup)"
    return COAP_CLIENT


async def _run(*args: str, timeout: float = 20) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode, out.decode(errors="replace")


async def test_discover_well_known_core(tmp_path, coap_client):
    async with running(edge_config(tmp_path)) as (daemon, _):
        code, out = await _run(coap_client, "-B", "5", "-m", "get",
                               f"coap://127.0.0.1:{daemon.coap_port}/.well-known/core")
        assert code == 0
        assert '</submit>;ct="60"' in out and "</logs>" in out
        assert f"</log/{daemon.key.device_id.hex()}>" in out and "obs" in out


async def test_post_cbor_observation_gets_created(tmp_path, coap_client):
    async with running(edge_config(tmp_path)) as (daemon, _):
        body = {"kind": "price", "body": {"market": "pasar-johar", "commodity": "bawang merah", "unit": "kg",
                                          "price_idr": 38500}}
        (tmp_path / "obs.cbor").write_bytes(cbor2.dumps(body))
        code, out = await _run(coap_client, "-B", "5", "-v", "6", "-m", "post", "-t", "60",
                               "-f", str(tmp_path / "obs.cbor"), "-o", str(tmp_path / "answer.cbor"),
                               f"coap://127.0.0.1:{daemon.coap_port}/submit")
        assert code == 0 and "c:2.01" in out
        answer = cbor2.loads((tmp_path / "answer.cbor").read_bytes())
        record = decode_record(daemon.store.get(daemon.key.device_id, answer["seq"]))
        assert record.id == answer["id"] and record.body["price_idr"] == 38500


async def test_fetch_multiblock_range(tmp_path, coap_client):
    async with running(edge_config(tmp_path)) as (daemon, client):
        for chunk in range(3):
            await client.submit_many([("note", {"text": f"catatan {chunk}.{i} " + "r" * 80}) for i in range(40)])
        dev = daemon.key.device_id.hex()
        code, out = await _run(coap_client, "-B", "10", "-v", "6", "-b", "256", "-o", str(tmp_path / "range.cbor"),
                               f"coap://127.0.0.1:{daemon.coap_port}/log/{dev}/records?from=0&to=121")
        assert code == 0
        assert out.count("c:2.05") > 20  # block-wise: many 256-byte blocks
        device_id, start, raws = decode_records((tmp_path / "range.cbor").read_bytes(),
                                                Limits(bytes_per_request=1 << 20))
        assert device_id == daemon.key.device_id and start == 0 and len(raws) == 121
        assert raws == daemon.store.log_range(daemon.key.device_id, 0, 121)
        assert verify_chain(raws).length == 121


@pytest.mark.parametrize("block", ["1024", "256"])
async def test_push_a_peers_log_block_by_block(tmp_path, coap_client, block):
    """libcoap sends a records body block by block: the blocks between the first and the last are taken in by
    the edge's message layer (coap_server/exchanges.py), and the log arrives whole."""
    _, records = peer_log(9, 60)
    device_id = records[0].device_id
    body = encode_records(device_id, 0, [r.raw for r in records])
    assert len(body) > 6 * int(block)
    (tmp_path / "push.cbor").write_bytes(body)
    async with running(edge_config(tmp_path)) as (daemon, _):
        code, out = await _run(coap_client, "-B", "10", "-v", "6", "-m", "post", "-t", "60", "-b", block,
                               "-f", str(tmp_path / "push.cbor"), "-o", str(tmp_path / "answer.cbor"),
                               f"coap://127.0.0.1:{daemon.coap_port}/sync/records")
        assert code == 0 and "c:2.04" in out, out[-2000:]
        assert cbor2.loads((tmp_path / "answer.cbor").read_bytes())["accepted"] == 61
        assert daemon.store.log_range(device_id, 0, 61) == [r.raw for r in records]
        (manager,) = daemon.coap.message_managers()
        assert manager.refused == 0


async def test_observe_head_notified_after_a_tap(tmp_path, coap_client):
    async with running(edge_config(tmp_path)) as (daemon, client):
        watcher = asyncio.create_task(_run(coap_client, "-s", "4", "-B", "6", "-v", "6",
                                           "-o", str(tmp_path / "heads.cbor"),
                                           f"coap://127.0.0.1:{daemon.coap_port}/log/own"))
        await wait_for(lambda: daemon.logs_resource.observer_count == 1, what="coap-client to register its observation")
        await client.tap("5a000001")  # staff card opens the session
        feedback = await client.tap("04c0ffee000001")
        assert feedback[-1]["status"] == "accepted"
        code, out = await watcher
        assert code == 0
        assert "Observe:0" in out and "Observe:1" in out
        # The notification carries the new head: the id of the tap's record.
        assert bytes.fromhex(feedback[-1]["id"]) in (tmp_path / "heads.cbor").read_bytes()
