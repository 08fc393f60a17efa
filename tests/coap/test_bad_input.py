"""Bad input from outside gets a clear, stable error (or is folded as a duplicate); the daemon keeps serving."""

from __future__ import annotations

import asyncio

import aiocoap
import cbor2
import pytest
from aiocoap.numbers.codes import Code

from ..edge.common import edge_config, running


async def _post(ctx, port, path, payload, content_format=60):
    msg = aiocoap.Message(code=Code.POST, uri=f"coap://127.0.0.1:{port}{path}", payload=payload)
    if content_format is not None:
        msg.opt.content_format = content_format
    return await asyncio.wait_for(ctx.request(msg).response, 10)


PRICE = {"market": "pasar-minggu", "commodity": "beras", "unit": "kg", "price_idr": 14000}

CASES = [
    # (name, payload, content format, CoAP code, stable code, words in the message)
    ("not cbor", b"\xff\xfe\xfd", 60, Code.BAD_REQUEST, "BAD_CBOR", "not well-formed CBOR"),
    ("trailing bytes", cbor2.dumps({"kind": "note", "body": {"text": "x"}}) + b"\x00", 60, Code.BAD_REQUEST,
     "BAD_CBOR", "after the CBOR item"),
    ("empty", b"", 60, Code.BAD_REQUEST, "BAD_CBOR", "empty payload"),
    ("not a map", cbor2.dumps("hello"), 60, Code.BAD_REQUEST, "BAD_REQUEST", "expected a map"),
    ("extra key", cbor2.dumps({"kind": "note", "body": {"text": "x"}, "sig": 1}), 60, Code.BAD_REQUEST,
     "BAD_REQUEST", "unexpected keys ['sig']"),
    ("unknown kind", cbor2.dumps({"kind": "bitcoin", "body": {}}), 60, Code.UNPROCESSABLE_ENTITY,
     "UNKNOWN_KIND", "is unknown"),
    ("device-only kind", cbor2.dumps({"kind": "key", "body": {"pubkey": b"\x00" * 32}}), 60,
     Code.UNPROCESSABLE_ENTITY, "UNKNOWN_KIND", "made by the device"),
    ("kind not text", cbor2.dumps({"kind": 3, "body": {}}), 60, Code.BAD_REQUEST, "BAD_REQUEST",
     "must be text"),
    ("price as text", cbor2.dumps({"kind": "price", "body": {**PRICE, "price_idr": "14rb"}}), 60,
     Code.BAD_REQUEST, "MALFORMED", "expected int, got str"),
    ("price as float", cbor2.dumps({"kind": "price", "body": {**PRICE, "price_idr": 14000.5}}), 60,
     Code.BAD_REQUEST, "MALFORMED", "floating-point value"),
    ("missing field", cbor2.dumps({"kind": "price", "body": {"market": "m"}}), 60, Code.BAD_REQUEST,
     "MALFORMED", "missing required field"),
    ("unknown field", cbor2.dumps({"kind": "note", "body": {"text": "x", "gps": "1,2"}}), 60,
     Code.BAD_REQUEST, "MALFORMED", "unexpected field 'gps'"),
    ("bad scan event", cbor2.dumps({"kind": "scan", "body": {"event": "eaten", "site": "s"}}), 60,
     Code.BAD_REQUEST, "MALFORMED", "expected one of"),
    ("json content", b'{"kind":"note"}', 50, Code.UNSUPPORTED_CONTENT_FORMAT, "UNSUPPORTED_FORMAT",
     "expected 60"),
    ("too many items", cbor2.dumps([{"kind": "note", "body": {"text": str(i)}} for i in range(300)]), 60,
     Code.REQUEST_ENTITY_TOO_LARGE, "TOO_LARGE", "1 to 256 observations"),
    ("deep nesting", b"\x81" * 5000 + b"\x00", 60, Code.BAD_REQUEST, "BAD_CBOR", "nesting depth"),
]


async def test_each_bad_submission_gets_its_code_and_nothing_is_stored(tmp_path):
    async with running(edge_config(tmp_path)) as (daemon, client):
        ctx = await aiocoap.Context.create_client_context()
        try:
            for name, payload, fmt, coap_code, code, words in CASES:
                response = await _post(ctx, daemon.coap_port, "/submit", payload, fmt)
                assert response.code == coap_code, name
                diag = cbor2.loads(response.payload)
                assert diag["code"] == code, (name, diag)
                assert words in diag["message"], (name, diag)
            # Nothing of that was stored, and the daemon still serves.
            assert daemon.store.state(daemon.key.device_id).length == 1
            assert (await client.submit("note", {"text": "still here"})).seq == 1
        finally:
            await ctx.shutdown()


async def test_oversize_payload_refused_blockwise_with_size1(tmp_path):
    async with running(edge_config(tmp_path)) as (daemon, client):
        big = cbor2.dumps({"kind": "note", "body": {"text": "x" * 40_000}})
        ctx = await aiocoap.Context.create_client_context()
        try:
            response = await _post(ctx, daemon.coap_port, "/submit", big)
            assert response.code == Code.REQUEST_ENTITY_TOO_LARGE
            assert cbor2.loads(response.payload)["code"] == "TOO_LARGE"
            assert response.opt.size1 == daemon.config.limits.max_submit_bytes
        finally:
            await ctx.shutdown()
        assert (await client.head())["length"] == 1


async def test_identical_submissions_fold_as_duplicates(tmp_path):
    async with running(edge_config(tmp_path)) as (daemon, client):
        body = {"site": "sppg-test", "item": "beras", "movement": "receive", "qty": 50000, "unit": "g"}
        answers = await asyncio.gather(*(client.submit("stock", body) for _ in range(40)))
        assert len({a.id for a in answers}) == 1
        assert sum(not a.duplicate for a in answers) == 1
        assert daemon.store.state(daemon.key.device_id).length == 2
        assert daemon.counters.duplicates == 39


async def test_flood_of_duplicate_taps_is_one_event(tmp_path):
    async with running(edge_config(tmp_path)) as (daemon, client):
        opened = await client.tap("5a000001")
        assert opened[0]["status"] == "open"
        first = await client.tap("04a1b2c3d4e5f6")
        assert first[-1]["status"] == "accepted" and first[-1]["seq"] == 1
        flood = await asyncio.gather(*(client.tap("04:A1:B2:C3:D4:E5:F6") for _ in range(100)))
        assert all(f[-1]["status"] == "duplicate" and f[-1]["reason"] == "within_window" for f in flood)
        assert daemon.store.state(daemon.key.device_id).length == 2
        # Taps that make no sense are refused with a reason, not stored.
        assert (await client.tap("not-hex!"))[-1]["reason"] == "bad_uid"
        assert (await client.status())["taps"]["duplicate"] == 100


@pytest.mark.parametrize("payload", [b"\x00", cbor2.dumps({"uid": 5}), cbor2.dumps({"uid": "04", "x": 1})])
async def test_bad_tap_requests(tmp_path, payload):
    async with running(edge_config(tmp_path)) as (daemon, _):
        ctx = await aiocoap.Context.create_client_context()
        try:
            response = await _post(ctx, daemon.coap_port, "/sim/tap", payload)
            assert response.code == Code.BAD_REQUEST
            assert cbor2.loads(response.payload)["code"] in ("BAD_REQUEST", "BAD_CBOR")
        finally:
            await ctx.shutdown()


async def test_wrong_method_and_query(tmp_path):
    async with running(edge_config(tmp_path)) as (daemon, client):
        ctx = await aiocoap.Context.create_client_context()
        try:
            msg = aiocoap.Message(code=Code.DELETE, uri=f"coap://127.0.0.1:{daemon.coap_port}/submit")
            assert (await ctx.request(msg).response).code == Code.METHOD_NOT_ALLOWED
            dev = daemon.key.device_id.hex()
            msg = aiocoap.Message(code=Code.GET,
                                  uri=f"coap://127.0.0.1:{daemon.coap_port}/log/{dev}/records?from=-1")
            response = await ctx.request(msg).response
            assert response.code == Code.BAD_REQUEST
            assert "expected an integer from 0" in cbor2.loads(response.payload)["message"]
        finally:
            await ctx.shutdown()
        assert (await client.head())["length"] == 1
