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

What a peer may make a resource hold is bounded: a body past the resource's `body_limit` (1 KB for one that
takes none) is refused at its first block over it, a spool assembles at most `ASSEMBLIES` bodies at once (the
one fed least recently goes first) each for at most `LIFETIME_S` since its last block, and a block that does not
follow the body so far is refused INCOMPLETE_BODY (4.08) where aiocoap 0.4.17 answered a gap or an overlap 5.00
with a traceback in the log.
"""

from __future__ import annotations

import copy
import functools
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

import aiocoap
import aiocoap.resource as resource
from aiocoap import interfaces
from aiocoap.blockwise import Block1Spool, ContinueException, _extract_block_key
from aiocoap.error import ConstructionRenderableError, UnexpectedBlock1Option
from aiocoap.numbers.codes import Code
from aiocoap.optiontypes import BlockOption
from aiocoap.pipe import Pipe
from aiocoap.protocol import BlockwiseRequest, Request
from aiocoap.transports.udp6 import UDP6EndpointAddress

from ledger.errors import CodedError

from .errors import IncompleteBody, RequestError, error_response
from .params import check_body_size

BODY_LIMIT = 1024  # what a resource that takes no body lets a request carry: one block
ASSEMBLIES = 64  # bodies a resource assembles at once
LIFETIME_S = 93.0  # how long a body waits for its next block: RFC 7252's MAX_TRANSMIT_WAIT, as aiocoap's spool


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
    def is_multicast(self) -> bool:
        return bool(super().is_multicast)


class _Assembly:
    """A request body being assembled: the first block's message, and the body so far in one growing buffer."""

    __slots__ = ("body", "fed", "first")

    def __init__(self, first: aiocoap.Message, now: float) -> None:
        self.first = first
        self.body = bytearray(first.payload)
        self.fed = now

    def append(self, block: aiocoap.Message) -> None:
        """aiocoap's `Message._append_request_block`, with its checks, appending without a recopy; a block that
        does not follow is a typed refusal."""
        block1 = block.opt.block1
        if block1.more and len(block.payload) != block1.size and not (
                block1.size_exponent == 7 and len(block.payload) % block1.size == 0):
            raise RequestError(f"block {block1.block_number}: {len(block.payload)} bytes, expected the "
                               f"{block1.size} its Block1 option says")
        if block1.start != len(self.body):
            raise IncompleteBody(f"block {block1.block_number} starts at byte {block1.start}; the body so far "
                                 f"has {len(self.body)}", hint="send the body again from block 0")
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


class Refused(ConstructionRenderableError):
    """A typed refusal on aiocoap's own block-wise path (an observable resource's), rendered as every error is."""

    def __init__(self, error: CodedError) -> None:
        super().__init__(error.message)
        self.error = error

    def to_message(self) -> aiocoap.Message:
        return error_response(self.error)


class Spool(Block1Spool):
    """aiocoap's `Block1Spool` (same keys, same refusals, but typed) assembling each body in one buffer, at most
    `most` bodies at once, each forgotten `lifetime_s` after its last block."""

    def __init__(self, *, most: int = ASSEMBLIES, lifetime_s: float = LIFETIME_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        # Not aiocoap's TimeoutDict: it holds any number of bodies, each as long as blocks keep coming.
        self._assemblies: OrderedDict[Hashable, _Assembly] = OrderedDict()
        self.most, self.lifetime_s, self.clock = most, lifetime_s, clock

    def __len__(self) -> int:
        return len(self._assemblies)

    def feed(self, request: aiocoap.Message) -> aiocoap.Message | None:
        """The whole request once `request` (which has a Block1 option) is its last block, else None (more is
        to come). Raises INCOMPLETE_BODY for a block with no block 0 before it or one that does not follow the
        body so far, BAD_REQUEST for a block of the wrong size."""
        block1 = request.opt.block1
        key = _extract_block_key(request)
        held = self._assemblies
        now = self.clock()
        while held:
            oldest = next(iter(held.values()))
            if now - oldest.fed < self.lifetime_s and len(held) < self.most + (block1.block_number != 0):
                break
            held.popitem(last=False)  # lapsed, or making room for a new body: the one fed least recently
        if block1.block_number == 0:
            held.pop(key, None)  # silently discarding any old incomplete operation, as aiocoap's
            if not block1.more:
                return request
            held[key] = _Assembly(request, now)
            return None
        assembly = held.get(key)
        if assembly is None:
            raise IncompleteBody(f"block {block1.block_number} of a body whose block 0 never came, or came more "
                                 f"than {self.lifetime_s:.0f} s ago", hint="send the body again from block 0")
        try:
            assembly.append(request)
        except CodedError:
            del held[key]
            raise
        if block1.more:
            assembly.fed = now
            held.move_to_end(key)
            return None
        del held[key]
        return assembly.whole()

    def feed_and_take(self, req: aiocoap.Message) -> aiocoap.Message:
        if req.opt.block1 is None:
            return req
        try:
            whole = self.feed(req)
        except CodedError as exc:
            raise Refused(exc) from None
        if whole is None:
            raise ContinueException(req.opt.block1)
        return whole


class Resource(resource.Resource):
    """aiocoap's resource, but a body's blocks are taken in by `Spool` and each block but the last answered
    2.31 Continue directly (the answer aiocoap's `ContinueException` renders to: no payload, the block's
    Block1 option). Everything else (a request without Block1, one the resource assembles itself, an observable
    resource's) goes through aiocoap's `render_to_pipe`. A body over `body_limit` is refused before any of it is
    kept; a resource that takes a body says how large one may be there."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._block1 = Spool()

    def body_limit(self, request: aiocoap.Message) -> tuple[int, str]:
        """The largest body `request` may carry here, and what to call it in a refusal."""
        return BODY_LIMIT, "request body"

    async def render_to_pipe(self, pipe: Any) -> None:
        request = pipe.request
        try:
            check_body_size(request, *self.body_limit(request))
            if (request.opt.block1 is None or isinstance(self, interfaces.ObservableResource)
                    or not await self.needs_blockwise_assembly(request)):
                await super().render_to_pipe(pipe)
                return
            whole = self._block1.feed(request)
        except CodedError as exc:
            pipe.add_response(error_response(exc), is_last=True)
            return
        if whole is None:
            answer = aiocoap.Message(code=Code.CONTINUE)
            answer.opt.block1 = request.opt.block1
            pipe.add_response(answer, is_last=True)
            return
        # As aiocoap's `Resource._render_to_pipe` from here on.
        res = await self._block2.extract_or_insert(whole, lambda: self.render(whole))
        res.opt.block1 = whole.opt.block1
        pipe.add_response(res, is_last=True)


class WellKnownCore(Resource, resource.WKCResource):
    """aiocoap's /.well-known/core, taking no body (a `Resource`'s limits)."""
