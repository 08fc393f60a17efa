"""The blocks between a request body's first and last, taken in by the UDP message layer once the resource has
taken one (coap_server/exchanges.py, `Continuation`), are answered, deduplicated and assembled byte for byte as
aiocoap's path (the same site served by aiocoap's own context) answers them; anything out of place, a
retransmission or a block the full table cannot remember takes aiocoap's path and gets its answer there."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import aiocoap
import pytest
from aiocoap.numbers.codes import Code
from aiocoap.numbers.types import CON
from aiocoap.optiontypes import BlockOption

from coap_server import blocks
from coap_server.exchanges import CONTINUING, DedupBudget
from coap_server.ports import serve_coap
from coap_server.routing import Site
from coap_server.security import AccessPolicy, credentials_map, secure_site
from tests.ports import free_coap

BODY = bytes(range(256)) * 40 + b"end"  # 10,243 bytes: eleven blocks of 1,024, the last a short one
LIMIT = 8 * 1024  # what Limited takes: refused at block 8


class Taking(blocks.Resource):
    """Answers a POST with the body's length and end; counts the blocks it was given itself."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.seen: list[int] = []

    def body_limit(self, request: aiocoap.Message) -> tuple[int, str]:
        return self.limit, "test body"

    async def render_to_pipe(self, pipe: Any) -> None:
        block1 = pipe.request.opt.block1
        self.seen.append(-1 if block1 is None else block1.block_number)
        await super().render_to_pipe(pipe)

    async def render_post(self, request: aiocoap.Message) -> aiocoap.Message:
        return aiocoap.Message(code=Code.CHANGED, payload=len(request.payload).to_bytes(4, "big") + request.payload[-16:])


async def _serve(limit: int, budget: DedupBudget = DedupBudget(), *,
                 aiocoaps: bool = False) -> tuple[aiocoap.Context, Taking, int]:
    """Ours (`serve_coap`), or the same site on aiocoap's own server context, whose message layer takes in no block."""
    taking = Taking(limit)
    site = Site()
    site.add_resource(["sync", "records"], taking)
    port = free_coap()
    if aiocoaps:
        ctx = await aiocoap.Context.create_server_context(site, bind=("127.0.0.1", port), transports=["udp6"])
    else:
        ctx = await serve_coap(site, host="127.0.0.1", port=port, tcp=False, setting="test", budget=budget)
    return ctx, taking, port


def _block(number: int, body: bytes = BODY, *, mid: int | None = None, tag: bytes = b"\x01", exp: int = 6,
           declared: int | None = None, every: bool = False) -> bytes:
    size = 1 << (exp + 4)
    piece = body[number * size:(number + 1) * size]
    more = (number + 1) * size < len(body)
    msg = aiocoap.Message(code=Code.POST, uri_path=("sync", "records"), payload=piece, content_format=60,
                          transport_tuning=aiocoap.Reliable)
    msg.mtype = CON
    msg.mid = 1000 + number if mid is None else mid
    msg.token = b"tk%d" % number
    msg.opt.block1 = BlockOption.BlockwiseTuple(number, more, exp)
    msg.opt.request_tag = [tag]
    if number == 0 or every:  # libcoap's coap-client declares the size in every block
        msg.opt.size1 = len(body) if declared is None else declared
    return msg.encode()


class _Peer:
    """A client that sends datagrams and reads the answers as they come, as a peer of another implementation."""

    def __init__(self, port: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.sock.bind(("127.0.0.1", 0))
        self.target = ("127.0.0.1", port)

    async def ask(self, data: bytes) -> bytes:
        loop = asyncio.get_running_loop()
        await loop.sock_sendto(self.sock, data, self.target)
        async with asyncio.timeout(10):
            return await loop.sock_recv(self.sock, 2048)

    def close(self) -> None:
        self.sock.close()


# (block number, message id, Request-Tag): in order with a retransmission to the last block; then another body
# with a gap (refused, and the body with it) and a block after it.
EXCHANGES = [(0, 1000, 1), (1, 1001, 1), (2, 1002, 1), (2, 1002, 1), *((n, 1000 + n, 1) for n in range(3, 11)),
             (0, 2000, 2), (1, 2001, 2), (2, 2002, 2), (4, 2004, 2), (3, 2003, 2)]


@pytest.mark.parametrize("every", [False, True])
async def test_blocks_are_answered_byte_for_byte_as_aiocoaps_path_answers_them(every: bool) -> None:
    answers: dict[str, list[bytes]] = {}
    seen = {}
    for name in ("ours", "theirs"):
        ctx, taking, port = await _serve(1 << 20, aiocoaps=name == "theirs")
        peer = _Peer(port)
        try:
            answers[name] = [await peer.ask(_block(n, mid=mid, every=every, tag=bytes((tag,))))
                             for n, mid, tag in EXCHANGES]
        finally:
            peer.close()
            await ctx.shutdown()
        seen[name] = taking.seen
    assert answers["ours"] == answers["theirs"]
    got = [aiocoap.Message.decode(raw) for raw in answers["ours"]]
    assert [m.code for m in got[:11]] == [Code.CONTINUE] * 11 and got[3].mid == 1002
    assert answers["ours"][3] == answers["ours"][2]
    assert got[11].code == Code.CHANGED and got[11].payload == len(BODY).to_bytes(4, "big") + BODY[-16:]
    # Block 4 after block 2: a gap, refused by the spool alike, and the body with it.
    assert [m.code for m in got[12:]] == [Code.CONTINUE] * 3 + [Code.REQUEST_ENTITY_INCOMPLETE] * 2
    # Ours saw the first block, the last and those out of place; the rest (and block 2 twice) only theirs.
    assert seen["ours"] == [0, 10, 0, 4, 3]
    assert seen["theirs"] == [*range(11), 0, 1, 2, 4, 3]


async def test_a_body_past_the_limit_is_refused_at_its_first_block_over_it() -> None:
    ctx, taking, port = await _serve(LIMIT)
    peer = _Peer(port)
    client = await aiocoap.Context.create_client_context()
    try:
        # A peer that declares less than it sends (Size1 past the limit is refused at block 0).
        answers = [aiocoap.Message.decode(await peer.ask(_block(n, declared=1024))) for n in range(9)]
        assert [a.code for a in answers[:8]] == [Code.CONTINUE] * 8
        assert answers[8].code == Code.REQUEST_ENTITY_TOO_LARGE and taking.seen == [0, 8]
        # A block that declares more than the limit, in a body begun within it: refused there.
        answers = [aiocoap.Message.decode(await peer.ask(_block(n, mid=2000 + n, tag=b"\x02", every=True,
                                                                declared=1024 if n < 3 else LIMIT + 1)))
                   for n in range(4)]
        assert [a.code for a in answers] == [Code.CONTINUE] * 3 + [Code.REQUEST_ENTITY_TOO_LARGE]
        assert taking.seen == [0, 8, 0, 3]
        # A body within it goes through whole, pushed as a sync pusher pushes it.
        taking.seen.clear()
        body = BODY[:LIMIT]
        answer = await blocks.request(client, aiocoap.Message(code=Code.POST, uri=f"coap://127.0.0.1:{port}/sync/records",
                                                              payload=body))
        assert answer.payload == len(body).to_bytes(4, "big") + body[-16:] and taking.seen == [0, 7]
    finally:
        peer.close()
        await client.shutdown()
        await ctx.shutdown()


async def test_a_block_the_full_table_cannot_remember_is_refused_as_any_request() -> None:
    ctx, taking, port = await _serve(1 << 20, DedupBudget(entries=3))
    peer = _Peer(port)
    try:
        answers = [aiocoap.Message.decode(await peer.ask(_block(n))) for n in range(4)]
    finally:
        peer.close()
        await ctx.shutdown()
    assert [a.code for a in answers] == [Code.CONTINUE] * 3 + [Code.SERVICE_UNAVAILABLE]
    assert answers[3].opt.max_age is not None and taking.seen == [0]  # refused before any resource


async def test_open_bodies_are_bounded_and_one_dropped_still_arrives_whole() -> None:
    ctx, taking, port = await _serve(1 << 20)
    taking._block1 = blocks.Spool(most=2 * CONTINUING)  # the resource holds them all; the message layer not
    peer = _Peer(port)
    try:
        for tag in range(CONTINUING + 44):
            answer = aiocoap.Message.decode(await peer.ask(_block(0, mid=tag, tag=tag.to_bytes(2, "big"))))
            assert answer.code == Code.CONTINUE
        (manager,) = ctx.message_managers()
        assert len(manager.continuing) == CONTINUING
        # The first body's was dropped: its blocks take aiocoap's path and it arrives all the same.
        answers = [aiocoap.Message.decode(await peer.ask(_block(n, mid=5000 + n, tag=b"\x00\x00"))) for n in range(1, 11)]
    finally:
        peer.close()
        await ctx.shutdown()
    assert answers[-1].code == Code.CHANGED and answers[-1].payload == len(BODY).to_bytes(4, "big") + BODY[-16:]
    assert taking.seen[-2:] == [1, 10]  # its block 1 took aiocoap's path, and let the rest continue


@pytest.mark.parametrize("sender", ["ours", "aiocoap"])
async def test_a_pushed_body_arrives_whole_through_the_message_layer(sender: str) -> None:
    ctx, taking, port = await _serve(1 << 20)
    client = await aiocoap.Context.create_client_context()
    try:
        for size in (len(BODY), 2048, 3072, 3073):
            taking.seen.clear()
            body = BODY[:size]
            msg = aiocoap.Message(code=Code.POST, uri=f"coap://127.0.0.1:{port}/sync/records", payload=body)
            answer = await (blocks.request(client, msg) if sender == "ours" else client.request(msg).response)
            assert answer.payload == len(body).to_bytes(4, "big") + body[-16:]
            assert taking.seen == [0, (size - 1) // 1024]
    finally:
        await client.shutdown()
        await ctx.shutdown()


async def test_blocks_of_a_body_the_policy_refused_are_each_refused_and_none_taken_in() -> None:
    taking = Taking(1 << 20)
    site = Site()
    site.add_resource(["sync", "records"], taking)
    port = free_coap()
    secured = secure_site(site, AccessPolicy(require_oscore=True), credentials_map())
    ctx = await serve_coap(secured, host="127.0.0.1", port=port, tcp=False, setting="test")
    peer = _Peer(port)
    try:
        answers = [aiocoap.Message.decode(await peer.ask(_block(n))) for n in range(4)]
        (manager,) = ctx.message_managers()
        assert not manager.continuing
    finally:
        peer.close()
        await ctx.shutdown()
    assert [a.code for a in answers] == [Code.UNAUTHORIZED] * 4 and taking.seen == []
