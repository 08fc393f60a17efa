"""The edge's CoAP interface over real aiocoap on loopback: submit, logs, ranges, observe, status, errors."""

from __future__ import annotations

import asyncio

import aiocoap
import cbor2
import pytest
from aiocoap.numbers.codes import Code

from coap_server.client import EdgeClient
from coap_server.errors import CoapError
from edge.config import Limits
from ledger import decode_record, verify_chain
from tests.wait import PATIENCE, wait_for

from ..edge.common import edge_config, peer_log, running


async def test_submit_answers_created_with_id_and_seq_after_commit(tmp_path):
    async with running(edge_config(tmp_path)) as (daemon, client):
        body = {"market": "pasar-minggu", "commodity": "cabai", "unit": "kg", "price_idr": 52000}
        answer = await client.submit("price", body)
        assert answer.seq == 1 and not answer.duplicate
        raw = daemon.store.get(daemon.key.device_id, 1)
        record = decode_record(raw)
        assert record.id == answer.id and record.kind == "price" and record.body == body
        many = await client.submit_many([("note", {"text": f"n{i}"}) for i in range(50)])
        assert [m.seq for m in many] == list(range(2, 52))
        head = await client.head()
        assert head["length"] == 52 and head["head"] == many[-1].id


async def test_logs_lists_own_and_replicas(tmp_path):
    async with running(edge_config(tmp_path)) as (daemon, client):
        _, peer = peer_log(3, 4)
        daemon.store.receive_records(peer[0].device_id, [r.raw for r in peer])
        logs = {entry["device"]: entry for entry in await client.logs()}
        assert logs[daemon.key.device_id]["own"] is True
        assert logs[peer[0].device_id]["length"] == 5 and logs[peer[0].device_id]["own"] is False
        assert (await client.head(peer[0].device_id))["head"] == peer[-1].id


async def test_large_range_travels_blockwise_and_unchanged(tmp_path):
    async with running(edge_config(tmp_path)) as (daemon, client):
        for chunk in range(4):  # a submission is limited to 16 KiB
            await client.submit_many([("note", {"text": f"note {chunk}.{i} " + "z" * 100}) for i in range(50)])
        dev = daemon.key.device_id
        raws = await client.range(dev, 0, 201)
        assert raws == daemon.store.log_range(dev, 0, 201)
        assert verify_chain(raws).length == 201
        # One response was far larger than one UDP datagram: it went block-wise (RFC 7959).
        resp = await client.request(Code.GET, f"/log/{dev.hex()}/records", query=("from=0", "to=100"))
        assert len(resp.payload) > 10 * 1024
        assert resp.opt.block2 is not None


async def test_range_respects_record_and_byte_limits(tmp_path):
    config = edge_config(tmp_path, limits=Limits(range_records=30, range_bytes=4096))
    async with running(config) as (daemon, client):
        for chunk in range(3):
            await client.submit_many([("note", {"text": f"{chunk}.{i} " + "a" * 300}) for i in range(20)])
        dev = daemon.key.device_id
        resp = await client.request(Code.GET, f"/log/{dev.hex()}/records", query=("from=0", "to=61"))
        _, start, raws = cbor2.loads(resp.payload)[1:]
        assert start == 0 and 1 <= len(raws) < 30 and sum(map(len, raws)) <= 4096
        assert len(await client.range(dev, 0, 61)) == 61  # the client walks the whole range


async def test_observe_head_notifies_on_new_records(tmp_path):
    async with running(edge_config(tmp_path)) as (_, client):
        seen = []

        async def watch():
            async for head in client.observe_head():
                seen.append(head)
                if len(seen) == 3:
                    return

        watcher = asyncio.create_task(watch())
        await wait_for(lambda: seen, what="the head as the observation starts")
        first = await client.submit("note", {"text": "one"})
        await wait_for(lambda: len(seen) == 2, what="a notification of the first record")
        second = await client.submit("note", {"text": "two"})
        await asyncio.wait_for(watcher, 10 * PATIENCE)
        assert seen[0]["length"] == 1
        assert [h["head"] for h in seen[1:]] == [first.id, second.id]


async def test_well_known_core_lists_resources(tmp_path):
    async with running(edge_config(tmp_path)) as (daemon, client):
        text = await client.well_known()
        for path in ("</submit>", "</logs>", "</status>", "</metrics>", f"</log/{daemon.key.device_id.hex()}>"):
            assert path in text
        assert "obs" in text.split(f"</log/{daemon.key.device_id.hex()}>")[1].split(",")[0]


async def test_status_and_metrics(tmp_path):
    async with running(edge_config(tmp_path)) as (daemon, client):
        await client.submit("note", {"text": "x"})
        status = await client.status()
        assert status["device"] == daemon.key.device_id.hex() and status["own"]["length"] == 2
        assert status["records"]["coap"] == 1 and status["store"]["map_size"] > 0
        text = await client.metrics()
        assert 'jejak_edge_records_total{source="coap"} 1' in text
        assert "jejak_edge_log_length 2" in text


async def test_client_renews_its_context_before_message_ids_run_out(tmp_path):
    async with running(edge_config(tmp_path)) as (daemon, _):
        client = EdgeClient(f"coap://127.0.0.1:{daemon.coap_port}", renew_after=10)
        async with client:
            for _ in range(35):
                await client.head()
            assert client.renewals == 3


async def test_unknown_log_is_not_found(tmp_path):
    async with running(edge_config(tmp_path)) as (_, client):
        with pytest.raises(CoapError) as info:
            await client.head(b"\x00" * 16)
        assert info.value.code == "NOT_FOUND" and info.value.coap_code.startswith("4.04")
        with pytest.raises(CoapError) as info:
            await client.head("zz")
        assert info.value.code == "NOT_FOUND"


async def test_server_does_not_listen_on_tcp(tmp_path):
    async with running(edge_config(tmp_path)) as (daemon, _):
        with pytest.raises(OSError):
            _, writer = await asyncio.open_connection("127.0.0.1", daemon.coap_port)
            writer.close()


async def test_raw_aiocoap_request_gets_cbor_diagnostic(tmp_path):
    async with running(edge_config(tmp_path)) as (daemon, _):
        ctx = await aiocoap.Context.create_client_context()
        try:
            msg = aiocoap.Message(code=Code.POST, uri=f"coap://127.0.0.1:{daemon.coap_port}/submit",
                                  payload=b"\xff\x00", content_format=60)
            response = await ctx.request(msg).response
            assert response.code == Code.BAD_REQUEST
            assert cbor2.loads(response.payload)["code"] == "BAD_CBOR"
        finally:
            await ctx.shutdown()
