"""CoAP access control as an attacker meets it: a pending key has no context, a revoked one loses it at once,
a repeated query parameter is refused instead of resolved, hostile numbers are 4.00, and an oversize push is
refused at its first block or its announced length, before it is assembled."""

from __future__ import annotations

import asyncio
import contextlib
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiocoap
import cbor2
from aiocoap.optiontypes import BlockOption
from aiocoap.oscore import NotAProtectedMessage

from coap_server.security import close_context, open_context
from edge import keys as keyfile
from edge.security import enroll
from ledger import ChainBuilder
from ledger.sync import encode_heads
from tests.hub.conftest import Clock

from .common import NOW, coap, edge, edge_config, enroll_edge, qr_text, secure_hub


@contextlib.asynccontextmanager
async def protected(data: Path, url: str) -> AsyncIterator[aiocoap.Context]:
    """A client that protects its requests to `url` with the context its enrollment derived."""
    ctx = await aiocoap.Context.create_client_context()
    sec = open_context(data / "oscore" / "hub", "hub:")
    ctx.client_credentials[f"{url}/*"] = sec
    try:
        yield ctx
    finally:
        await ctx.shutdown()
        close_context(sec)


def push_log(running: Any, key: keyfile.DeviceKey, n: int) -> None:
    """`n` records of `key`'s log straight into the hub (as if the device had pushed them)."""
    chain = ChainBuilder(key, clock=Clock(NOW), boot=1)
    raws = [chain.genesis().raw]
    raws += [chain.append("note", {"text": str(i)}).raw for i in range(n - 1)]
    running.hub.ingest(key.device_id, raws)


async def answer(ctx: aiocoap.Context, code: aiocoap.Code, uri: str, payload: bytes = b"") -> str:
    """The response code name; a hub without a context for the key answers unprotected, which the client
    reports as NotAProtectedMessage carrying that answer."""
    try:
        name, _ = await coap(ctx, code, uri, payload)
    except NotAProtectedMessage as exc:
        name = exc.plain_message.code.name
    return name


async def heads_code(ctx: aiocoap.Context, url: str) -> str:
    return await answer(ctx, aiocoap.POST, f"{url}/sync/heads", encode_heads([]))


async def test_pending_key_has_no_context_until_approved_and_loses_it_when_revoked(tmp_path):
    async with secure_hub(tmp_path / "hub", auto_approve=False) as hub:
        key = await enroll_edge(tmp_path / "edge", hub)
        assert hub.hub.store.get_device(key.device_id).status == "pending"
        assert key.device_id not in hub.security.contexts
        async with protected(tmp_path / "edge", hub.coap_url) as ctx:
            assert await heads_code(ctx, hub.coap_url) == "UNAUTHORIZED"  # no context: cannot even decrypt
            code = await answer(ctx, aiocoap.GET, f"{hub.coap_url}/sync/records?d={key.device_id.hex()}")
            assert code == "UNAUTHORIZED"
            await asyncio.to_thread(hub.hub.approve, key.device_id)
            assert await heads_code(ctx, hub.coap_url) == "CONTENT"
            await asyncio.to_thread(hub.hub.revoke, key.device_id, 0)
            assert key.device_id not in hub.security.contexts
            assert await heads_code(ctx, hub.coap_url) == "UNAUTHORIZED"
        assert not (tmp_path / "hub" / "oscore" / key.device_id.hex()).exists()
        # A revoked key enrolling again is not granted a context.
        again = keyfile.load_or_create(tmp_path / "edge" / "device.key")
        assert again.device_id == key.device_id
        try:
            await enroll_edge(tmp_path / "edge", hub)
            raise AssertionError("a revoked key was enrolled again")
        except Exception as exc:
            assert "ENROLL_REFUSED" in str(exc) or "HUB_ERROR" in str(exc), exc
        assert key.device_id not in hub.security.contexts


async def test_revoked_context_still_loaded_is_refused_by_the_policy(tmp_path):
    """Belt and braces: the decision asks the store on every request, so even a context left loaded by a bug
    or a race with the revocation serves nothing."""
    async with secure_hub(tmp_path / "hub") as hub:
        key = await enroll_edge(tmp_path / "edge", hub)
        ctx_kept = hub.security.contexts[key.device_id]
        async with protected(tmp_path / "edge", hub.coap_url) as ctx:
            assert await heads_code(ctx, hub.coap_url) == "CONTENT"
            hub.hub.listeners.on_device.clear()  # the context stays loaded
            await asyncio.to_thread(hub.hub.revoke, key.device_id, 0)
            assert hub.security.contexts[key.device_id] is ctx_kept
            code, body = await coap(ctx, aiocoap.POST, f"{hub.coap_url}/sync/heads", encode_heads([]))
            assert (code, body["code"]) == ("FORBIDDEN", "NOT_AUTHORIZED")


async def test_repeated_log_parameter_is_refused_not_resolved(tmp_path):
    async with secure_hub(tmp_path / "hub") as hub:
        attacker = await enroll_edge(tmp_path / "attacker", hub, site="a")
        victim = await enroll_edge(tmp_path / "victim", hub, site="v")
        await asyncio.to_thread(push_log, hub, victim, 3)
        await asyncio.to_thread(push_log, hub, attacker, 2)
        async with protected(tmp_path / "attacker", hub.coap_url) as ctx:
            base = f"{hub.coap_url}/sync/records"
            own, other = attacker.device_id.hex(), victim.device_id.hex()
            code, body = await coap(ctx, aiocoap.GET, f"{base}?d={own}")
            assert code == "CONTENT"
            code, body = await coap(ctx, aiocoap.GET, f"{base}?d={other}")  # read defaults to self
            assert (code, body["code"]) == ("FORBIDDEN", "NOT_AUTHORIZED")
            for query in (f"d={own}&d={other}", f"d={other}&d={own}", f"d={own}&from=0&from=1"):
                code, body = await coap(ctx, aiocoap.GET, f"{base}?{query}")
                assert (code, body["code"]) == ("BAD_REQUEST", "BAD_REQUEST"), query
                assert "more than once" in body["message"]
            # The heads show the attacker its own log only.
            msg = aiocoap.Message(code=aiocoap.POST, uri=f"{hub.coap_url}/sync/heads", payload=encode_heads([]),
                                  content_format=60)
            from ledger.sync import decode_heads

            seen = {h.device_id for h in decode_heads((await ctx.request(msg).response).payload)}
            assert seen == {attacker.device_id}


async def test_hostile_numbers_are_bad_requests_on_hub_and_edge(tmp_path):
    async with secure_hub(tmp_path / "hub", oscore=False) as hub:
        key = await enroll_edge(tmp_path / "dev", hub)
        await asyncio.to_thread(push_log, hub, key, 2)
        async with edge(edge_config(tmp_path / "edge", oscore=False)) as daemon:
            ctx = await aiocoap.Context.create_client_context()
            try:
                edge_url = f"coap://127.0.0.1:{daemon.coap_port}"
                own = daemon.key.device_id.hex()
                for base, dev in ((hub.coap_url, key.device_id.hex()), (edge_url, own)):
                    for query in (f"from={10**30}", "from=-3", "to=1e3", "from=0x10", f"to={2**63}", "d=zz",
                                  "from=%00"):
                        q = query if query.startswith("d=") else f"d={dev}&{query}"
                        code, body = await coap(ctx, aiocoap.GET, f"{base}/sync/records?{q}")
                        assert (code, body.get("code")) == ("BAD_REQUEST", "BAD_REQUEST"), (base, query, body)
                    code, _ = await coap(ctx, aiocoap.GET, f"{base}/sync/records?d={dev}&from={2**63 - 1}")
                    assert code == "CONTENT"
                code, body = await coap(ctx, aiocoap.GET, f"{edge_url}/log/{own}/records?from={10**30}")
                assert code == "BAD_REQUEST"
                code, body = await coap(ctx, aiocoap.GET, f"{hub.coap_url}/proofs/consistency?from=-1&to=2")
                assert code == "BAD_REQUEST"
                code, body = await coap(ctx, aiocoap.GET, f"{hub.coap_url}/proofs/inclusion?r=00&r=11")
                assert code == "BAD_REQUEST"
            finally:
                await ctx.shutdown()


async def test_oversize_push_is_refused_at_its_first_block_past_the_limit(tmp_path):
    async with secure_hub(tmp_path / "hub", oscore=False) as hub:
        ctx = await aiocoap.Context.create_client_context()
        try:
            uri = f"{hub.coap_url}/sync/records"
            # Announced: 100 MB in Size1 on the first block.
            msg = aiocoap.Message(code=aiocoap.POST, uri=uri, payload=b"\x84" + b"\x00" * 1023, content_format=60)
            msg.opt.block1 = BlockOption.BlockwiseTuple(0, True, 6)
            msg.opt.size1 = 100 * 1024 * 1024
            response = await ctx.request(msg, handle_blockwise=False).response
            assert response.code == aiocoap.REQUEST_ENTITY_TOO_LARGE
            assert cbor2.loads(response.payload)["code"] == "TOO_LARGE"
            assert response.opt.size1 == 256 * 1024 + 1024
            # Received: a block whose end lies past the limit, with no Size1.
            msg = aiocoap.Message(code=aiocoap.POST, uri=uri, payload=b"\x00" * 1024, content_format=60)
            msg.opt.block1 = BlockOption.BlockwiseTuple(300, True, 6)
            response = await ctx.request(msg, handle_blockwise=False).response
            assert response.code == aiocoap.REQUEST_ENTITY_TOO_LARGE
        finally:
            await ctx.shutdown()


async def test_tcp_message_announcing_100_mb_is_dropped_before_it_is_read(tmp_path):
    """aiocoap's CoAP+TCP reads the length first and closes the connection when it passes its 1 MiB limit."""
    import resource as rlimit

    async with secure_hub(tmp_path, oscore=False) as hub:
        before = rlimit.getrusage(rlimit.RUSAGE_SELF).ru_maxrss
        reader, writer = await asyncio.open_connection("127.0.0.1", hub.coap_port)
        length = 100 * 1024 * 1024
        # RFC 8323 header: Len=15 (4-byte extended length), TKL=0, code POST, then the length.
        writer.write(bytes([0xF0]) + (length - 65805).to_bytes(4, "big") + bytes([0x02]))
        sent = 0
        closed = False
        try:
            for _ in range(400):  # up to 100 MB in 256 KB writes; the server hangs up long before
                writer.write(b"\x00" * 256 * 1024)
                await asyncio.wait_for(writer.drain(), 5)
                sent += 256 * 1024
        except OSError:
            closed = True
        if not closed:
            data = await asyncio.wait_for(reader.read(), 10)  # an Abort signal, then EOF
            closed = True
            assert data == b"" or data[1] == 0xE5 or data[2] == 0xE5, data[:8]  # 7.05 Abort
        writer.close()
        assert closed
        grown_kb = rlimit.getrusage(rlimit.RUSAGE_SELF).ru_maxrss - before
        assert grown_kb < 20 * 1024, f"the hub grew by {grown_kb} KB taking an announced 100 MB message"


async def test_edge_closes_a_peer_context_when_the_hub_revokes_that_key(tmp_path):
    from edge.security import EdgeSecurity
    from ledger import Ed25519Signer
    from ledger.enroll import make_revocations

    hub_signer = Ed25519Signer.from_seed(b"\x33" * 32)
    peer_key = keyfile.load_or_create(tmp_path / "peer.key")
    config = edge_config(tmp_path / "edge", peer_keys=(peer_key.public_key.hex(),),
                         hub_key=hub_signer.public_key.hex())
    own = keyfile.load_or_create(tmp_path / "edge" / "device.key")
    security = EdgeSecurity(config, own)
    try:
        assert peer_key.device_id in security.peer_ctx and security.admitted(peer_key.device_id)
        revoked = make_revocations(hub_signer, time=NOW, revoked=[(peer_key.device_id, 0)])
        assert security.revocations.apply(revoked)
        security.drop_revoked()
        assert peer_key.device_id not in security.peer_ctx
        assert not security.admitted(peer_key.device_id)
        assert len(security.credentials) == 0
    finally:
        security.close()
    # After a restart the revoked peer gets no context at all (the list is kept on disk).
    again = EdgeSecurity(config, own)
    try:
        assert peer_key.device_id not in again.peer_ctx
    finally:
        again.close()


async def test_an_enrollment_request_sent_again_leaves_the_devices_context_as_it_is_loaded(tmp_path):
    """Anyone who saw a device's enrollment request (plain HTTP on a LAN) may send it again. The hub closed and
    opened the device's context again each time, refusing the device's own requests in between."""
    async with secure_hub(tmp_path / "hub") as hub:
        data = tmp_path / "edge"
        data.mkdir()
        key = keyfile.load_or_create(data / "device.key")
        sent: list[tuple[str, bytes]] = []

        def post(url: str, body: bytes) -> bytes:
            sent.append((url, body))
            with urllib.request.urlopen(urllib.request.Request(url, data=body, method="POST"), timeout=10) as r:
                return bytes(r.read())

        await asyncio.to_thread(enroll, qr_text(hub), key, data, site="sppg-01", role="kitchen_exit",
                                name="sppg-01", post=post)
        loaded = hub.security.contexts[key.device_id]
        for url, request in sent * 3:  # the replays
            await asyncio.to_thread(post, url, request)
        assert hub.security.contexts[key.device_id] is loaded
        async with protected(data, hub.coap_url) as ctx:
            assert await heads_code(ctx, hub.coap_url) == "CONTENT"


async def test_a_key_revoked_from_a_seq_the_hub_has_not_reached_still_pushes_the_records_before_it(tmp_path):
    """A stolen device revoked from the seq it was taken at, while the hub's copy of its log is behind: its records
    before that seq are accepted, so it keeps its context to push them; once the hub holds them, it is refused."""
    async with secure_hub(tmp_path / "hub") as hub:
        key = await enroll_edge(tmp_path / "edge", hub)
        chain = ChainBuilder(key, clock=Clock(NOW), boot=1)
        raws = [chain.genesis().raw] + [chain.append("note", {"text": str(i)}).raw for i in range(7)]
        hub.hub.ingest(key.device_id, raws[:3])
        await asyncio.to_thread(hub.hub.revoke, key.device_id, 6)
        assert hub.hub.store.get_device(key.device_id).status == "revoked"
        assert key.device_id in hub.security.contexts
        async with protected(tmp_path / "edge", hub.coap_url) as ctx:
            assert await heads_code(ctx, hub.coap_url) == "CONTENT"
            result = hub.hub.ingest(key.device_id, raws[3:])
            assert hub.hub.store.chain_state(key.device_id).length == 6, result  # seq 6 and 7 refused
            code, body = await coap(ctx, aiocoap.POST, f"{hub.coap_url}/sync/heads", encode_heads([]))
            assert (code, body["code"]) == ("FORBIDDEN", "NOT_AUTHORIZED")
