"""Fuzz every outside input of the running shells: CoAP (edge resources, sync resources of edge and hub) and
HTTP (hub API, edge legacy endpoint). Any input gets an answer that is not a server error, and stored records
never change. JEJAK_FUZZ_EXAMPLES sets the examples per target; inputs tried are counted and printed."""

from __future__ import annotations

import asyncio
import json
import os
import urllib.error
import urllib.request

import aiocoap
import cbor2
from aiocoap.numbers.codes import Code
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.app import start_hub
from hub.bridges import BridgeConfig
from hub.config import HubConfig
from ledger.sync import encode_heads, encode_records

from ..edge.common import edge_config, peer_log, running

EXAMPLES = int(os.environ.get("JEJAK_FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                suppress_health_check=list(HealthCheck))
TRIED: dict[str, int] = {}

cbor_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20) | st.binary(max_size=40),
                           lambda c: st.lists(c, max_size=5) | st.dictionaries(st.text(max_size=8), c, max_size=5),
                           max_leaves=12)
payloads = st.one_of(st.binary(max_size=600), cbor_values.map(cbor2.dumps))


def _coap(ctx, method, uri, payload=b""):
    async def go():
        msg = aiocoap.Message(code=method, uri=uri, payload=payload)
        return await asyncio.wait_for(ctx.request(msg).response, 10)
    return go()


async def test_coap_inputs_never_crash_or_change_records(tmp_path):
    _, peer = peer_log(7, 3)
    async with running(edge_config(tmp_path / "edge")) as (daemon, client):
        await client.submit("note", {"text": "before the fuzz"})
        before = {h.device_id: (h.length, h.head) for h in daemon.store.heads()}
        base = f"coap://127.0.0.1:{daemon.coap_port}"
        ctx = await aiocoap.Context.create_client_context()
        loop = asyncio.get_running_loop()
        answers: dict[str, int] = {}

        targets = [(Code.POST, "/sync/heads"), (Code.POST, "/sync/records"), (Code.POST, "/log"),
                   (Code.GET, "/log/own"), (Code.PUT, "/status")]

        def check(method, path, payload):
            TRIED["coap"] = TRIED.get("coap", 0) + 1
            resp = asyncio.run_coroutine_threadsafe(_coap(ctx, method, base + path, payload), loop).result(20)
            answers[str(resp.code)] = answers.get(str(resp.code), 0) + 1
            assert resp.code != Code.INTERNAL_SERVER_ERROR, (path, payload[:60], resp.payload[:200])

        @FUZZ
        @given(st.sampled_from(targets), payloads, st.text(max_size=30))
        def run(target, payload, query):
            method, path = target
            check(method, path + ("?" + query.replace("#", "") if query else ""), payload)

        @FUZZ
        @given(st.integers(min_value=-5, max_value=1 << 40), st.lists(st.binary(max_size=200), max_size=4),
               st.binary(min_size=0, max_size=20))
        def structured(start, raws, device):
            # well-formed sync messages carrying junk records, bad device ids and absurd sequence numbers
            try:
                body = encode_records(device if len(device) in (0, 16) else device[:16], max(start, 0), raws)
            except Exception:
                body = cbor2.dumps([2, 1, device, start, raws])
            check(Code.POST, "/sync/records", body)
            check(Code.POST, "/sync/heads", encode_heads([]) + device)

        await asyncio.to_thread(run)
        await asyncio.to_thread(structured)
        await ctx.shutdown()
        after = {h.device_id: (h.length, h.head) for h in daemon.store.heads()}
        assert after == before, "fuzzed input changed stored records"
        print(f"coap inputs tried {TRIED['coap']}, answers {answers}")
        assert peer  # the peer log exists for the structured cases' shape


async def test_hub_http_and_coap_inputs(tmp_path):
    running_hub = await start_hub(HubConfig(bridges=BridgeConfig(enabled=False), data_dir=str(tmp_path / "hub"), http_port=0, coap_port=0, mdns=False,
                                            auto_approve=True))
    url = running_hub.http_url
    ctx = await aiocoap.Context.create_client_context()
    loop = asyncio.get_running_loop()
    size_before = running_hub.hub.status()["size"]
    server_errors: list[str] = []

    paths = ["/api/enroll", "/api/devices/{x}/records?from={y}&to={y}", "/api/proofs/consistency?from={x}&to={y}",
             "/api/proofs/inclusion/{x}", "/api/ingest/{x}", "/api/devices/{x}", "/api/export?since={y}",
             "/api/checkpoints?from={x}"]

    def http(path, body):
        TRIED["http"] = TRIED.get("http", 0) + 1
        req = urllib.request.Request(url + path, data=body, method="POST" if body is not None else "GET")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status
        except urllib.error.HTTPError as exc:
            if exc.code >= 500:
                server_errors.append(f"{exc.code} {path} {exc.read()[:120]!r}")
            return exc.code

    @FUZZ
    @given(st.sampled_from(paths), st.text(alphabet="0123456789abcdef-xz%", max_size=40),
           st.text(alphabet="0123456789-e+x", max_size=12), st.one_of(st.none(), payloads))
    def run(path, x, y, body):
        p = path.format(x=x or "0", y=y or "0")
        if p.startswith("/api/enroll") or p.startswith("/api/ingest"):
            body = body or b""
        http(p, body)
        TRIED["hub_coap"] = TRIED.get("hub_coap", 0) + 1
        resp = asyncio.run_coroutine_threadsafe(
            _coap(ctx, Code.POST, running_hub.coap_url + "/sync/records", body or b""), loop).result(20)
        assert resp.code != Code.INTERNAL_SERVER_ERROR, resp.payload[:200]

    try:
        await asyncio.to_thread(run)
    finally:
        await ctx.shutdown()
        size_after = running_hub.hub.status()["size"]
        await running_hub.close()
    print(f"hub http inputs tried {TRIED['http']}, coap {TRIED['hub_coap']}; server errors {server_errors[:5]}")
    assert size_after == size_before
    assert not server_errors, f"{len(server_errors)} inputs gave a server error, e.g. {server_errors[:3]}"
    if os.environ.get("JEJAK_FUZZ_REPORT"):
        with open(os.environ["JEJAK_FUZZ_REPORT"], "a") as fh:
            fh.write(json.dumps(TRIED) + "\n")
