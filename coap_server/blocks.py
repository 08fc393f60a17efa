"""A request whose body is sent block by block (RFC 7959 Block1) on the transport its first block found.

aiocoap 0.4.17 sends each block of a request body as a request of its own from the start: it deep copies the
whole request's options to cut the block (`Message._extract_block`), looks again for the transport and the
credentials (rebuilding the request's URI and parsing the peer's address for it), names a task after the
block's repr, and parses the peer's address three more times to see whether it is a multicast one. Over UDP,
where a block carries 1,024 bytes (the largest RFC 7959 has), a push of 100,000 records is about 26,000
blocks, and that work was most of the sender's CPU. `request` does what aiocoap's block-wise request does for
a body: each block a new message with the request's option objects (unchanging, so shared), its Block1 and its
slice of the body, sent on the transport that took the first block, to where the first block's answer came
from. The answer's own blocks (Block2) are asked for as aiocoap asks for them. A body of one block, and CoAP
over TCP (whose blocks are BERT), go through `ctx.request` as before.

On the receiving side `Resource` takes such a body in with `Spool`: aiocoap's `Block1Spool` recopies the body
so far onto each block (`bytes +=`, so a body of n blocks costs n²/2 blocks of copying) and answers each block
but the last, "2.31 Continue", by raising an exception that its pipe logs and turns into the answer.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

import aiocoap
import aiocoap.resource as resource
from aiocoap import interfaces
from aiocoap.blockwise import Block1Spool, ContinueException, IncompleteException, _extract_block_key
from aiocoap.error import BadRequest, UnexpectedBlock1Option
from aiocoap.numbers.codes import Code
from aiocoap.optiontypes import BlockOption
from aiocoap.pipe import Pipe
from aiocoap.protocol import BlockwiseRequest, Request
from aiocoap.transports.udp6 import UDP6EndpointAddress


async def request(ctx: aiocoap.Context, msg: aiocoap.Message) -> aiocoap.Message:
    """`ctx.request(msg).response`, the body sent as above; the remote is resolved into `msg.remote`."""
    if len(msg.payload) <= 1024 or msg.opt.block1 is not None or msg.opt.observe is not None:
        return await ctx.request(msg).response
    interface = await ctx.find_remote_and_interface(msg)
    remote = msg.remote
    exp = remote.maximum_block_size_exp
    if exp >= 7 or len(msg.payload) <= remote.maximum_payload_size:  # BERT, or one block after all
        return await ctx.request(msg).response
    size = 1 << (exp + 4)
    options = list(msg.opt.option_list())
    body = msg.payload
    number = 0
    while True:
        start = number * size
        more = start + size < len(body)
        block = aiocoap.Message(code=msg.code, payload=body[start:start + size], transport_tuning=msg.transport_tuning)
        for option in options:
            block.opt.add_option(option)
        block.opt.block1 = BlockOption.BlockwiseTuple(number, more, exp)
        if number == 0:
            block.opt.size1 = len(body)
        block.remote = remote
        answer = await _one(ctx, interface, block)
        got = answer.opt.block1
        if got is None:
            break  # the answer, or a refusal part-way (such as 4.13 past the peer's limit)
        if got.block_number != number:
            raise UnexpectedBlock1Option(f"block {number} sent, the answer is for block {got.block_number}")
        if not more:
            if got.more or answer.code == Code.CONTINUE:
                raise UnexpectedBlock1Option("the peer asked for more of the body after its last block")
            break
        if got.size_exponent < exp:
            # The peer asks for smaller blocks (none of Jejak's does): aiocoap's own block-wise request sends
            # the body again, which the peer takes as a new one (a block 0 discards what came before it).
            return await ctx.request(msg).response
        if number == 0:
            # The rest go where the first block's answer came from, from the address it came to, as aiocoap's.
            remote = _Known.of(answer.remote) if isinstance(answer.remote, UDP6EndpointAddress) else answer.remote
        number += 1
    answer.opt.block1 = None
    # A large answer comes in blocks of its own: asked for as aiocoap does after its Block1 phase.
    response: aiocoap.Message = await BlockwiseRequest._complete_by_requesting_block2(ctx, block, answer, ctx.log)
    return response


async def _one(ctx: aiocoap.Context, interface: object, block: aiocoap.Message) -> aiocoap.Message:
    """One block on `interface` (the transport that took the first): `Context.request` without the search."""
    pipe = Pipe(block, ctx.log)
    sent = Request(pipe, ctx.loop, ctx.log)
    interface.request(pipe)  # type: ignore[attr-defined]
    answer: aiocoap.Message = await sent.response
    return answer


class _Known(UDP6EndpointAddress):
    """A peer's UDP address that says once whether it is a multicast one: aiocoap's parses the address text
    for it, with `ipaddress`, three times for each block sent."""

    @classmethod
    def of(cls, remote: UDP6EndpointAddress) -> _Known:
        known = copy.copy(remote)
        known.__class__ = cls
        return known

    @functools.cached_property
    def is_multicast(self) -> bool:  # type: ignore[override]
        return bool(super().is_multicast)


class _Assembly:
    """A request body being assembled: the first block's message, and the body so far in one growing buffer."""

    __slots__ = ("body", "first")

    def __init__(self, first: aiocoap.Message) -> None:
        self.first = first
        self.body = bytearray(first.payload)

    def append(self, block: aiocoap.Message) -> None:
        """aiocoap's `Message._append_request_block`, with its checks and errors, appending without a recopy."""
        block1 = block.opt.block1
        if block1.more and len(block.payload) != block1.size and not (
                block1.size_exponent == 7 and len(block.payload) % block1.size == 0):
            raise BadRequest("Payload size does not match Block1")
        if block1.start != len(self.body):
            raise ValueError()  # a gap or an overlap, refused as aiocoap refuses it
        self.body += block.payload
        first = self.first
        first.opt.block1 = block1
        first.token = block.token
        first.mid = block.mid
        if not block1.more and block.opt.block2 is not None:
            first.opt.block2 = block.opt.block2

    def whole(self) -> aiocoap.Message:
        self.first.payload = bytes(self.body)
        return self.first


class Spool(Block1Spool):
    """aiocoap's `Block1Spool` (same keys, same lifetime, same refusals) assembling each body in one buffer."""

    def feed(self, request: aiocoap.Message) -> aiocoap.Message | None:
        """The whole request once `request` (which has a Block1 option) is its last block, else None (more is
        to come). Raises as `feed_and_take`: IncompleteException for a block with no block 0 before it,
        BadRequest for a block of the wrong size, ValueError for one that does not follow the body so far."""
        block1 = request.opt.block1
        key = _extract_block_key(request)
        if block1.block_number == 0:
            # silently discarding any old incomplete operation, as aiocoap's
            self._assemblies[key] = _Assembly(request)
            return None if block1.more else request
        try:
            assembly: _Assembly = self._assemblies[key]
        except KeyError:
            raise IncompleteException from None
        assembly.append(request)
        return None if block1.more else assembly.whole()

    def feed_and_take(self, req: aiocoap.Message) -> aiocoap.Message:
        if req.opt.block1 is None:
            return req
        whole = self.feed(req)
        if whole is None:
            raise ContinueException(req.opt.block1)
        return whole


class Resource(resource.Resource):
    """aiocoap's resource, but a body's blocks are taken in by `Spool` and each block but the last answered
    2.31 Continue directly (the answer aiocoap's `ContinueException` renders to: no payload, the block's
    Block1 option). Everything else (a request without Block1, one the resource assembles itself, an observable
    resource's) goes through aiocoap's `render_to_pipe`."""

    def __init__(self) -> None:
        super().__init__()
        self._block1 = Spool()

    async def render_to_pipe(self, pipe: Any) -> None:
        request = pipe.request
        if (request.opt.block1 is None or isinstance(self, interfaces.ObservableResource)
                or not await self.needs_blockwise_assembly(request)):
            await super().render_to_pipe(pipe)
            return
        whole = self._block1.feed(request)
        if whole is None:
            answer = aiocoap.Message(code=Code.CONTINUE)
            answer.opt.block1 = request.opt.block1
            pipe.add_response(answer, is_last=True)
            return
        # As aiocoap's `Resource._render_to_pipe` from here on.
        res = await self._block2.extract_or_insert(whole, lambda: self.render(whole))
        res.opt.block1 = whole.opt.block1
        pipe.add_response(res, is_last=True)
