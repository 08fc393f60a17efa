"""The CoAP server's deduplication state keeps to its budget at any request rate and still runs a retransmitted
request once."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import aiocoap
import aiocoap.resource as resource
import cbor2
from aiocoap.numbers.codes import Code

from coap_server.exchanges import BoundedContext, BoundedMessageManager, DedupBudget
from coap_server.ports import serve_coap
from tests.edge.common import edge_config, running, small_limits
from tests.ports import free_coap
from tests.wait import wait_for


class Counting(resource.Resource):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    async def render_post(self, request: aiocoap.Message) -> aiocoap.Message:
        self.calls += 1
        return aiocoap.Message(code=Code.CREATED, payload=b"n=%d" % self.calls)

    async def render_get(self, request: aiocoap.Message) -> aiocoap.Message:
        self.calls += 1
        return aiocoap.Message(code=Code.CONTENT, payload=b"n=%d" % self.calls)


async def _serve(budget: DedupBudget) -> tuple[aiocoap.Context, Counting, int]:
    counting = Counting()
    site = resource.Site()
    site.add_resource(["t"], counting)
    port = free_coap()
    ctx = await serve_coap(site, host="127.0.0.1", port=port, tcp=False, setting="test", budget=budget)
    return ctx, counting, port


class _Remote:
    def __init__(self, host: str, port: int) -> None:
        self.sockaddr = (host, port, 0, 0)


def test_keys_tell_every_host_port_and_message_id_apart() -> None:
    # A plain address (v4-mapped or v6) is held as one integer, the compact form; a scoped link-local host as
    # its text. Either way two ids collide only when host, port and message id are all the same.
    key = BoundedMessageManager._key
    hosts = ("::ffff:127.0.0.1", "::ffff:127.0.0.2", "::1", "2001:db8::1", "fe80::1%eth0", "fe80::1%eth1",
             "127.0.0.1")
    remotes = [(h, p) for h in hosts for p in (1, 5683, 65535)]
    keys = {key(_Remote(h, p), mid) for h, p in remotes for mid in (0, 1, 0xFFFF)}
    assert len(keys) == len(remotes) * 3
    assert key(_Remote("::ffff:127.0.0.1", 5683), 7) == key(_Remote("::ffff:127.0.0.1", 5683), 7)
    assert isinstance(key(_Remote("::ffff:10.0.0.1", 5683), 7), int)


def test_a_sender_is_counted_by_its_address_whatever_its_port() -> None:
    # Each host above is one sender, from any port; IPv6 ones by their /64 (link-local ones per scope), so one
    # host taking more addresses of its /64 or more ports holds no more than one share.
    key, peer = BoundedMessageManager._key, BoundedMessageManager._peer
    hosts = ("::ffff:127.0.0.1", "::ffff:127.0.0.2", "::1", "2001:db8::1", "fe80::1%eth0", "fe80::1%eth1",
             "127.0.0.1", "::ffff:0.0.0.0", "::")
    senders = {h: {peer(key(_Remote(h, p), mid)) for p in (1, 5683, 65535) for mid in (0, 0xFFFF)} for h in hosts}
    assert all(len(s) == 1 for s in senders.values()), senders
    assert len(set().union(*senders.values())) == len(hosts) - 1  # "::" and "::1" share ::/64
    same = [("2001:db8::1", "2001:db8::ffff:2"), ("fe80::1%eth0", "fe80::2%eth0"), ("::1", "::")]
    for a, b in same:
        assert peer(key(_Remote(a, 1), 0)) == peer(key(_Remote(b, 2), 3)), (a, b)
    apart = [("2001:db8::1", "2001:db8:0:1::1"), ("::ffff:10.0.0.1", "::ffff:10.0.0.2"),
             ("::ffff:10.0.0.1", "::a00:1"), ("fe80::1%eth0", "fe80::1%eth1")]
    for a, b in apart:
        assert peer(key(_Remote(a, 1), 0)) != peer(key(_Remote(b, 1), 0)), (a, b)


def _held(ctx: aiocoap.Context) -> int:
    assert isinstance(ctx, BoundedContext)
    return sum(m.held for m in ctx.message_managers())


async def test_held_ids_stay_under_the_cap_and_the_rest_are_told_when_to_retry() -> None:
    ctx, counting, port = await _serve(DedupBudget(lifetime_s=60, entries=50))
    client = await aiocoap.Context.create_client_context()
    try:
        codes = []
        for _ in range(150):  # aiocoap alone would hold all 150 for 247 s
            msg = aiocoap.Message(code=Code.POST, uri=f"coap://127.0.0.1:{port}/t", payload=b"x")
            answer = await asyncio.wait_for(client.request(msg).response, 10)
            codes.append(answer.code)
            if answer.code == Code.SERVICE_UNAVAILABLE:
                assert 1 <= answer.opt.max_age <= 62  # when the oldest remembered id frees its place
        assert _held(ctx) == 50
        assert codes.count(Code.CREATED) == 50 == counting.calls
        assert codes.count(Code.SERVICE_UNAVAILABLE) == 100
    finally:
        await client.shutdown()
        await ctx.shutdown()


async def _client_at(host: str) -> aiocoap.Context:
    """An aiocoap context that sends its requests from `host` (Linux routes all of 127/8 to loopback, so
    127.0.0.2 is another client than 127.0.0.1, which every other client here sends from)."""
    return await aiocoap.Context.create_server_context(resource.Site(), bind=(host, 0), transports=["udp6"])


async def test_one_flooding_peer_is_refused_while_others_get_through() -> None:
    ctx, counting, port = await _serve(DedupBudget(lifetime_s=60, entries=100, per_peer=10))
    flood, other = await aiocoap.Context.create_client_context(), await _client_at("127.0.0.2")
    try:
        async def post(client: aiocoap.Context) -> Code:
            msg = aiocoap.Message(code=Code.POST, uri=f"coap://127.0.0.1:{port}/t", payload=b"x")
            return (await asyncio.wait_for(client.request(msg).response, 10)).code

        flooded = [await post(flood) for _ in range(20)]
        assert flooded.count(Code.CREATED) == 10 and flooded.count(Code.SERVICE_UNAVAILABLE) == 10
        assert [await post(other) for _ in range(5)] == [Code.CREATED] * 5
        assert counting.calls == 15
    finally:
        await flood.shutdown()
        await other.shutdown()
        await ctx.shutdown()


async def test_a_host_flooding_from_many_ports_holds_one_share_and_others_get_through() -> None:
    # The attack: NON GET /x (50 01 <mid> B1 78) from 6 source ports of one host. Counted by host and port,
    # 3 ports filled the table, and every other client's request got 5.03 for as long as the flood went on.
    ctx, counting, port = await _serve(DedupBudget(lifetime_s=60, entries=30, per_peer=10))
    loop = asyncio.get_running_loop()
    socks = []
    for _ in range(6):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setblocking(False)
        sock.bind(("127.0.0.1", 0))
        socks.append(sock)
    other = await _client_at("127.0.0.2")
    try:
        codes = []
        for n, sock in enumerate(socks):
            for mid in range(n * 5, n * 5 + 5):
                await loop.sock_sendto(sock, bytes([0x50, 0x01]) + mid.to_bytes(2, "big") + b"\xb1x",
                                       ("127.0.0.1", port))
                codes.append(aiocoap.Message.decode(await asyncio.wait_for(loop.sock_recv(sock, 2048), 10)).code)
        msg = aiocoap.Message(code=Code.POST, uri=f"coap://127.0.0.1:{port}/t", payload=b"x")
        answer = await asyncio.wait_for(other.request(msg).response, 10)
        assert answer.code != Code.SERVICE_UNAVAILABLE, "another client is locked out by one host's flood"
        assert answer.code == Code.CREATED and counting.calls == 1
        assert codes.count(Code.NOT_FOUND) == 10 and codes.count(Code.SERVICE_UNAVAILABLE) == 20, codes
        assert _held(ctx) == 11  # the flooding host's one share and the other client's request
        # A 7th port of the flooding host is still that host.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            await loop.sock_sendto(sock, bytes([0x50, 0x01, 0x7F, 0x00, 0xB1]) + b"x", ("127.0.0.1", port))
            again = aiocoap.Message.decode(await asyncio.wait_for(loop.sock_recv(sock, 2048), 10))
        assert again.code == Code.SERVICE_UNAVAILABLE and again.payload == b""
    finally:
        for sock in socks:
            sock.close()
        await other.shutdown()
        await ctx.shutdown()


async def test_ids_expire_after_the_lifetime_and_make_room() -> None:
    ctx, counting, port = await _serve(DedupBudget(lifetime_s=0.3, entries=5))
    client = await aiocoap.Context.create_client_context()
    try:
        async def post() -> aiocoap.Message:
            msg = aiocoap.Message(code=Code.POST, uri=f"coap://127.0.0.1:{port}/t", payload=b"x")
            return await asyncio.wait_for(client.request(msg).response, 10)

        for _ in range(5):
            assert (await post()).code == Code.CREATED
        assert (await post()).code == Code.SERVICE_UNAVAILABLE
        answers: list[aiocoap.Message] = []

        async def retry() -> bool:
            answers.append(await post())
            return answers[-1].code == Code.CREATED

        deadline = asyncio.get_running_loop().time() + 10
        while not await retry():
            assert asyncio.get_running_loop().time() < deadline, "the table never made room"
        assert counting.calls == 6
        assert _held(ctx) <= 5
    finally:
        await client.shutdown()
        await ctx.shutdown()


async def test_a_retransmitted_request_runs_once_and_gets_the_same_answer() -> None:
    ctx, counting, port = await _serve(DedupBudget(lifetime_s=60, entries=50))
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    try:
        # CON POST, message id 4242, token 01 02, Uri-Path "t", payload "tap" (RFC 7252 §3).
        raw = bytes([0x42, 0x02]) + (4242).to_bytes(2, "big") + b"\x01\x02" + b"\xb1t" + b"\xfftap"
        answers = []
        for _ in range(3):  # the first copy and two retransmissions, as a client hearing no ACK sends them
            await loop.sock_sendto(sock, raw, ("127.0.0.1", port))
            answers.append(await asyncio.wait_for(loop.sock_recv(sock, 2048), 10))
        assert counting.calls == 1
        assert answers[0] == answers[1] == answers[2]
        decoded = aiocoap.Message.decode(answers[0])
        assert decoded.mid == 4242 and decoded.code == Code.CREATED and decoded.payload == b"n=1"
        # The same id from another port is another client's request.
        other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        other.setblocking(False)
        try:
            await loop.sock_sendto(other, raw, ("127.0.0.1", port))
            again = aiocoap.Message.decode(await asyncio.wait_for(loop.sock_recv(other, 2048), 10))
        finally:
            other.close()
        assert again.payload == b"n=2"
        await wait_for(lambda: _held(ctx) == 2, what="two remembered ids")
    finally:
        sock.close()
        await ctx.shutdown()


async def test_an_answered_get_is_run_again_and_its_answer_is_not_kept() -> None:
    # A GET changes nothing, so a retransmission of it after its answer runs again (RFC 7252 4.5) and the
    # table keeps no copy of its answer; a POST's retransmission still gets the kept answer, run once.
    ctx, counting, port = await _serve(DedupBudget(lifetime_s=60, entries=10))
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)

    raws: list[bytes] = []

    async def send(raw: bytes) -> aiocoap.Message:
        await loop.sock_sendto(sock, raw, ("127.0.0.1", port))
        raws.append(await asyncio.wait_for(loop.sock_recv(sock, 2048), 10))
        return aiocoap.Message.decode(raws[-1])

    try:
        post = bytes([0x42, 0x02]) + (7).to_bytes(2, "big") + b"\x01\x02" + b"\xb1t"
        get = bytes([0x42, 0x01]) + (8).to_bytes(2, "big") + b"\x01\x03" + b"\xb1t"
        answers = [await send(post), await send(get), await send(get), await send(post)]
        assert [(a.mid, a.code, a.payload) for a in answers] == [
            (7, Code.CREATED, b"n=1"), (8, Code.CONTENT, b"n=2"), (8, Code.CONTENT, b"n=3"),
            (7, Code.CREATED, b"n=1")]
        assert counting.calls == 3 and _held(ctx) == 2
        kept = [raw for m in ctx.message_managers() for raw in m._seen.values()]
        assert raws[0] in kept and raws[1] not in kept and raws[2] not in kept
    finally:
        sock.close()
        await ctx.shutdown()


async def test_the_edge_daemon_keeps_to_its_configured_budget(tmp_path) -> None:
    config = edge_config(tmp_path, limits=small_limits(coap_dedup_entries=20, coap_dedup_lifetime_s=60))
    async with running(config) as (daemon, _):
        client = await aiocoap.Context.create_client_context()
        try:
            codes = []
            for n in range(40):
                msg = aiocoap.Message(code=Code.POST, uri=f"coap://127.0.0.1:{daemon.coap_port}/sim/tap",
                                      content_format=60, payload=cbor2.dumps({"uid": f"04{n:012x}"}))
                codes.append((await asyncio.wait_for(client.request(msg).response, 10)).code)
        finally:
            await client.shutdown()
        assert _held(daemon.coap) == 20
        assert Code.SERVICE_UNAVAILABLE in codes and codes[:19].count(Code.CHANGED) == 19


async def test_an_answer_is_encoded_once_and_the_table_keeps_the_bytes_sent(monkeypatch: Any) -> None:
    ctx, counting, port = await _serve(DedupBudget(lifetime_s=60, entries=50))
    encoded: list[bytes] = []
    encode = aiocoap.Message.encode

    def counted(message: aiocoap.Message) -> bytes:
        raw: bytes = encode(message)
        if message.code == Code.CREATED:
            encoded.append(raw)
        return raw

    monkeypatch.setattr(aiocoap.Message, "encode", counted)
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    try:
        raw = bytes([0x42, 0x02]) + (77).to_bytes(2, "big") + b"\x01\x02" + b"\xb1t" + b"\xfftap"
        await loop.sock_sendto(sock, raw, ("127.0.0.1", port))
        answer = await asyncio.wait_for(loop.sock_recv(sock, 2048), 10)
        assert encoded == [answer]  # once, for the table and the wire alike
        kept = [raw for m in ctx.message_managers() for raw in m._seen.values()]
        assert answer in kept
        await loop.sock_sendto(sock, raw, ("127.0.0.1", port))  # a retransmission: the kept bytes again
        assert await asyncio.wait_for(loop.sock_recv(sock, 2048), 10) == answer and counting.calls == 1
        # A second request is encoded afresh (nothing of the first answer's is sent for it).
        other = bytes([0x42, 0x02]) + (78).to_bytes(2, "big") + b"\x01\x03" + b"\xb1t" + b"\xfftap"
        await loop.sock_sendto(sock, other, ("127.0.0.1", port))
        second = aiocoap.Message.decode(await asyncio.wait_for(loop.sock_recv(sock, 2048), 10))
        assert (second.mid, second.token, second.payload) == (78, b"\x01\x03", b"n=2")
    finally:
        sock.close()
        await ctx.shutdown()
