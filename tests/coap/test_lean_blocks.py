"""The blocks between a body's first and last that `blocks.request` sends as datagrams of its own (`_Lean`):
what the peer receives is what aiocoap would send (options, Block1, payload, confirmable), a block whose answer
does not come is sent again, an answer that comes on its own after an empty ACK is acknowledged and taken, and
any answer but 2.31 Continue ends the body as aiocoap's path ends it."""

from __future__ import annotations

import asyncio
from typing import Any

import aiocoap
import pytest
from aiocoap.numbers.codes import Code
from aiocoap.numbers.constants import TransportTuning
from aiocoap.numbers.types import ACK, CON

from coap_server import blocks
from tests.ports import free_udp

BODY = bytes(range(256)) * 24 + b"end"  # 6,147 bytes: seven blocks of 1,024, the last a short one


class _Quick(TransportTuning):
    ACK_TIMEOUT = 0.2


class _Peer(asyncio.DatagramProtocol):
    """A CoAP server written from RFC 7252 and 7959 alone: answers each block 2.31 Continue (the last 2.04
    with the body's length), except where `script` says otherwise for a block number: "drop once" (no answer to
    its first copy), "separate" (an empty ACK, then a confirmable answer of its own), or a code to answer with."""

    def __init__(self, script: dict[int, Any]) -> None:
        self.script = dict(script)
        self.received: list[aiocoap.Message] = []
        self.raw: list[bytes] = []
        self.acks: list[int] = []
        self.body = bytearray()
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        msg = aiocoap.Message.decode(data)
        if msg.code == Code.EMPTY:
            self.acks.append(msg.mid)
            return
        self.received.append(msg)
        self.raw.append(data)
        block1 = msg.opt.block1
        todo = self.script.get(block1.block_number)
        if todo == "drop once":
            del self.script[block1.block_number]
            return
        if block1.start == len(self.body):
            self.body += msg.payload
        answer = aiocoap.Message(code=Code.CONTINUE if block1.more else Code.CHANGED,
                                 payload=b"" if block1.more else len(self.body).to_bytes(4, "big"))
        answer.opt.block1 = block1
        if isinstance(todo, Code):
            answer = aiocoap.Message(code=todo, payload=b"refused")
        answer.mtype, answer.mid, answer.token = ACK, msg.mid, msg.token
        if todo == "separate":
            empty = aiocoap.Message(code=Code.EMPTY)
            empty.mtype, empty.mid = ACK, msg.mid
            self.transport.sendto(empty.encode(), addr)
            answer.mtype, answer.mid = CON, 7777
        self.transport.sendto(answer.encode(), addr)


async def _push(script: dict[int, Any]) -> tuple[_Peer, Any]:
    peer = _Peer(script)
    port = free_udp()
    transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(lambda: peer, local_addr=("127.0.0.1", port))
    ctx = await aiocoap.Context.create_client_context()
    try:
        msg = aiocoap.Message(code=Code.POST, uri=f"coap://127.0.0.1:{port}/sync/records", payload=BODY,
                              content_format=60, transport_tuning=_Quick())
        msg.opt.request_tag = [b"\x07"]
        async with asyncio.timeout(20):
            answer = await blocks.request(ctx, msg)
    finally:
        await ctx.shutdown()
        transport.close()
    return peer, answer


async def test_the_peer_receives_each_block_as_aiocoap_sends_it() -> None:
    peer, answer = await _push({})
    assert answer.code == Code.CHANGED and answer.payload == len(BODY).to_bytes(4, "big") and peer.body == BODY
    assert [m.opt.block1.block_number for m in peer.received] == list(range(7))
    for n, got in enumerate(peer.received):
        assert got.mtype == CON and got.payload == BODY[n * 1024:(n + 1) * 1024]
        want = aiocoap.Message(code=Code.POST, uri_path=("sync", "records"), content_format=60, payload=got.payload)
        want.opt.request_tag = [b"\x07"]
        want.opt.block1 = (n, n < 6, 6)
        if n == 0:
            want.opt.size1 = len(BODY)
        want.mtype, want.mid, want.token = CON, got.mid, got.token
        assert peer.raw[n] == want.encode(), n  # byte for byte, only the message id and token its own
    assert len({m.mid for m in peer.received}) == 7


async def test_a_block_whose_answer_does_not_come_is_sent_again_with_its_message_id() -> None:
    peer, answer = await _push({3: "drop once"})
    assert answer.code == Code.CHANGED and peer.body == BODY
    numbers = [m.opt.block1.block_number for m in peer.received]
    assert numbers == [0, 1, 2, 3, 3, 4, 5, 6]
    assert peer.received[3].mid == peer.received[4].mid and peer.received[3].token == peer.received[4].token


async def test_an_answer_of_its_own_after_an_empty_ack_is_acknowledged_and_taken() -> None:
    peer, answer = await _push({2: "separate"})
    assert answer.code == Code.CHANGED and peer.body == BODY
    assert peer.acks == [7777]


@pytest.mark.parametrize("code", [Code.REQUEST_ENTITY_TOO_LARGE, Code.SERVICE_UNAVAILABLE])
async def test_a_refusal_part_way_is_the_answer(code: Code) -> None:
    peer, answer = await _push({4: code})
    assert (answer.code, answer.payload) == (code, b"refused")
    assert [m.opt.block1.block_number for m in peer.received] == [0, 1, 2, 3, 4]
