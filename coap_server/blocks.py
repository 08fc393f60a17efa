"""A request whose body is sent block by block (RFC 7959 Block1) on the transport its first block found.

aiocoap 0.4.17 sends each block of a request body as a request of its own from the start: it deep copies the
whole request's options to cut the block (`Message._extract_block`), looks again for the transport and the
credentials (rebuilding the request's URI and parsing the peer's address for it), names a task after the
block's repr, and parses the peer's address three more times to see whether it is a multicast one. Over UDP,
where a block carries 1,024 bytes (the largest RFC 7959 has), a push of 100,000 records is about 26,000
blocks, and that work was most of the sender's CPU. `request` does what aiocoap's block-wise request does for
a body: each block a new message with the request's option objects (unchanging, so shared), its Block1 and its
slice of the body, sent on the transport that took the first block, to where the first block's answer came
from. Over aiocoap's own UDP message layer (not OSCORE) the blocks between the first and the last go as
datagrams written and read here (`_Lean`): aiocoap's exchange for each (a message, a token, a pipe, a request
and the answer decoded into option objects) was then most of what was left. The answer's own blocks (Block2) are
asked for as aiocoap asks for them. A body of one block, and CoAP over TCP (whose blocks are BERT), go through
`ctx.request` as before.

On the receiving side `Resource` takes such a body in with `Spool`: aiocoap's `Block1Spool` recopies the body
so far onto each block (`bytes +=`, so a body of n blocks costs n²/2 blocks of copying) and answers each block
but the last, "2.31 Continue", by raising an exception that its pipe logs and turns into the answer. Once a
resource has taken a block of a body, the blocks after it but the last are taken in by the UDP message layer
(coap_server/exchanges.py, `Continuation`) within the resource's `body_limit`.

What a peer may make a resource hold is bounded: a body past the resource's `body_limit` (1 KB for one that
takes none) is refused at its first block over it, a spool assembles at most `ASSEMBLIES` bodies at once (the
one fed least recently goes first) each for at most `LIFETIME_S` since its last block, and a block that does not
follow the body so far is refused INCOMPLETE_BODY (4.08) where aiocoap 0.4.17 answered a gap or an overlap 5.00
with a traceback in the log.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import random
import socket
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

import aiocoap
import aiocoap.resource as resource
from aiocoap import interfaces
from aiocoap.blockwise import Block1Spool, ContinueException, _extract_block_key
from aiocoap.error import (
    ConRetransmitsExceeded,
    ConstructionRenderableError,
    NetworkError,
    UnexpectedBlock1Option,
)
from aiocoap.messagemanager import MessageManager
from aiocoap.numbers.codes import Code
from aiocoap.optiontypes import BlockOption
from aiocoap.pipe import Pipe
from aiocoap.protocol import BlockwiseRequest, Request
from aiocoap.transports.udp6 import MessageInterfaceUDP6, UDP6EndpointAddress

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
    lean = _Lean.of(interface, msg, options)
    number = 0
    while True:
        start = number * size
        more = start + size < len(body)
        payload = body[start:start + size]
        data = None
        if lean is not None and number > 0 and more and isinstance(remote, UDP6EndpointAddress):
            data = await lean.exchange(remote, number, exp, payload)
            if data is None:
                number += 1
                continue
        block = aiocoap.Message(code=msg.code, payload=payload, transport_tuning=msg.transport_tuning)
        for option in options:
            block.opt.add_option(option)
        block.opt.block1 = BlockOption.BlockwiseTuple(number, more, exp)
        if number == 0:
            block.opt.size1 = len(body)
        block.remote = remote
        if data is not None:  # the peer's answer to a lean block but "go on": read as aiocoap reads it
            answer = aiocoap.Message.decode(data, remote)
        else:
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


class Answering(MessageInterfaceUDP6):
    """aiocoap's UDP transport, handing the answers that `_Lean` waits for (an ACK or RST by message id, a
    separate response by token) to it; everything else as aiocoap's."""

    awaiting: dict[int, tuple[asyncio.Future[bytes], tuple[str, int]]]  # message id -> (answer, from host, port)
    tokens: dict[bytes, tuple[asyncio.Future[bytes], tuple[str, int]]]  # token -> (answer, from host, port)

    @classmethod
    def made(cls, transport: MessageInterfaceUDP6) -> None:
        transport.__class__ = cls
        transport.awaiting = {}
        transport.tokens = {}

    def datagram_msg_received(self, data: bytes, ancdata: Any, flags: int, address: Any) -> None:
        if (self.awaiting or self.tokens) and len(data) >= 4:
            peer = tuple(address[:2])
            if data[0] & 0x20:  # ACK or RST
                mid = data[2] << 8 | data[3]
                entry = self.awaiting.get(mid)
                if entry is not None and entry[1] == peer:
                    del self.awaiting[mid]
                    self._hand(entry[0], data)
                    return
            elif data[1] >= 0x40:  # a separate response, CON or NON
                token = data[4:4 + (data[0] & 0x0F)]
                entry = self.tokens.get(token)
                if entry is not None and entry[1] == peer:
                    del self.tokens[token]
                    if data[0] & 0x30 == 0:  # CON: acknowledged (an empty ACK)
                        self.transport.sendmsg(bytes((0x60, 0)) + data[2:4], [], 0, address)
                    self._hand(entry[0], data)
                    return
        super().datagram_msg_received(data, ancdata, flags, address)

    @staticmethod
    def _hand(waiter: asyncio.Future[bytes], data: bytes) -> None:
        if not waiter.done():
            waiter.set_result(data)


def _encoded(options: list[tuple[int, bytes]]) -> bytes:
    """Options (number, value), sorted by number, as RFC 7252 section 3.1 encodes them."""
    out = bytearray()
    last = 0
    for number, value in options:
        heads = []
        for n in (number - last, len(value)):
            heads.append((n, b"") if n < 13 else (13, bytes((n - 13,))) if n < 269 else (14, (n - 269).to_bytes(2, "big")))
        out.append(heads[0][0] << 4 | heads[1][0])
        out += heads[0][1] + heads[1][1] + value
        last = number
    return bytes(out)


class _Lean:
    """Sends a block between a body's first and last as one confirmable datagram and reads its answer from the
    datagram, on aiocoap's UDP transport and with its message ids and tokens, retransmitted as aiocoap does
    (RFC 7252 section 4.2): aiocoap's exchange (a message, a token, a pipe, a request and its response
    decoded into option objects) took most of the sender's CPU a block. The peer sees what aiocoap sends."""

    def __init__(self, interface: Any, manager: MessageManager, transport: Answering, code: int,
                 options: list[tuple[int, bytes]], tuning: Any) -> None:
        self.interface, self.manager, self.transport = interface, manager, transport
        self.code, self.tuning = code, tuning
        self.before = [o for o in options if o[0] < 27]
        self.after = [o for o in options if o[0] > 27]

    @classmethod
    def of(cls, interface: Any, msg: aiocoap.Message, options: list[Any]) -> _Lean | None:
        """For a request that goes on aiocoap's own UDP message layer (not OSCORE, not TCP), else None."""
        manager = getattr(interface, "token_interface", None)
        transport = getattr(manager, "message_interface", None)
        if not isinstance(manager, MessageManager) or not isinstance(transport, MessageInterfaceUDP6):
            return None
        if type(transport) is MessageInterfaceUDP6:
            Answering.made(transport)
        if not isinstance(transport, Answering):
            return None
        encoded = sorted(((int(o.number), o.encode()) for o in options), key=lambda o: o[0])
        if any(number in (27, 60) for number, _ in encoded):
            return None
        return cls(interface, manager, transport, int(msg.code), encoded, msg.transport_tuning)

    async def exchange(self, remote: UDP6EndpointAddress, number: int, exp: int, payload: bytes) -> bytes | None:
        """Block `number` (more to come) sent to `remote`: None when answered 2.31 Continue for it, as the
        peer asks for the next, else the answer's datagram."""
        value = number << 4 | 8 | exp
        block1 = value.to_bytes((value.bit_length() + 7) // 8, "big")
        mid = self.manager._next_message_id()
        token = self.interface.next_token()
        data = bytes((0x40 | len(token), self.code)) + mid.to_bytes(2, "big") + token + \
            _encoded([*self.before, (27, block1), *self.after]) + b"\xff" + payload
        loop = asyncio.get_running_loop()
        answered: asyncio.Future[bytes] = loop.create_future()
        separate: asyncio.Future[bytes] = loop.create_future()  # after an empty ACK, perhaps right after it
        peer = tuple(remote.sockaddr[:2])
        self.transport.awaiting[mid] = (answered, peer)
        self.transport.tokens[token] = (separate, peer)
        ancdata = [] if remote.pktinfo is None else [(socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, remote.pktinfo)]
        tuning = self.tuning
        timeout = tuning.ACK_TIMEOUT * random.uniform(1, tuning.ACK_RANDOM_FACTOR)
        try:
            for _ in range(tuning.MAX_RETRANSMIT + 1):
                self.transport.transport.sendmsg(data, ancdata, 0, remote.sockaddr)
                done, _ = await asyncio.wait((answered,), timeout=timeout)
                if done:
                    break
                timeout *= 2
            else:
                raise ConRetransmitsExceeded("Retransmissions exceeded")
            answer = answered.result()
            if answer[0] & 0x30 == 0x30:
                raise NetworkError(f"the peer answered block {number} with a reset")
            if answer[1] == 0:  # an empty ACK: the answer comes on its own, with the token
                answer = await separate
            if answer[0] & 0x0F == len(token) and answer[1] == 0x5F and \
                    answer[4:] == token + bytes((0xD0 | len(block1), 14)) + block1:
                return None
            return answer
        finally:
            self.transport.awaiting.pop(mid, None)
            self.transport.tokens.pop(token, None)


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

    def feed(self, request: aiocoap.Message, limit: int | None = None) -> aiocoap.Message | None:
        """The whole request once `request` (which has a Block1 option) is its last block, else None (more is
        to come). Raises INCOMPLETE_BODY for a block with no block 0 before it or one that does not follow the
        body so far, BAD_REQUEST for a block of the wrong size. With a `limit` (the body's size past which its
        resource refuses it, checked before) the blocks after this one but the last, within the limit, are left
        to the message layer to append if the request came over UDP (`request.continuation`)."""
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
            first = held[key] = _Assembly(request, now)
            self._continue(request, key, first, limit)
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
            self._continue(request, key, assembly, limit)
            return None
        del held[key]
        self._continue(request, key, assembly, None)
        return assembly.whole()

    def _continue(self, request: aiocoap.Message, key: Hashable, assembly: _Assembly, limit: int | None) -> None:
        """Let the message layer take in the blocks after `request`'s (up to `limit` bytes of body), or, without
        a limit, no more of them."""
        continuation = getattr(request, "continuation", None)
        if continuation is None:
            return
        if limit is None:
            continuation.close()
            return
        block1 = request.opt.block1
        continuation.open(after=block1.block_number, exp=block1.size_exponent, limit=limit,
                          append=functools.partial(self._append, key, assembly))

    def _append(self, key: Hashable, assembly: _Assembly, payload: bytes) -> bool:
        """Append a block's `payload` to `assembly` as `feed` would, if it is still the body held under `key`
        and has not lapsed; False (nothing appended) if not."""
        now = self.clock()
        if self._assemblies.get(key) is not assembly or now - assembly.fed >= self.lifetime_s:
            return False
        assembly.body += payload
        assembly.fed = now
        self._assemblies.move_to_end(key)
        return True

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
        """The largest body `request` may carry here, and what to call it in a refusal. The message layer takes
        in the blocks of a body between its first and last within this limit: a resource does nothing else for
        a block but the last."""
        return BODY_LIMIT, "request body"

    async def render_to_pipe(self, pipe: Any) -> None:
        request = pipe.request
        try:
            limit = self.body_limit(request)
            check_body_size(request, *limit)
            if (request.opt.block1 is None or isinstance(self, interfaces.ObservableResource)
                    or not await self.needs_blockwise_assembly(request)):
                await super().render_to_pipe(pipe)
                return
            whole = self._block1.feed(request, limit[0])
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
