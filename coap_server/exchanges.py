"""A CoAP server context whose deduplication state has a fixed size, whatever the request rate.

aiocoap remembers every incoming request's (remote, message id) and the response it got for
EXCHANGE_LIFETIME (247 s), with a timer and the whole response `Message` each, so the edge's memory grew
with request rate × 247 s (49 → 155 MB over 72,000 requests). `BoundedContext` keeps the same protection
with a budget: an entry is a few bytes of key, an expiry time and the response's encoded bytes, kept in
arrival order (one lifetime for all, so the oldest expires first and no timers are needed), for a lifetime
sized to a LAN, and at most `DedupBudget.entries` of them. When the table is full a new request is refused
with 5.03 and Max-Age saying when the oldest entry frees its place, so nothing is forgotten early.

The blocks of a request body after its first (RFC 7959 Block1) are taken in here, at the message layer, once
the resource has taken a block of that body and opened it (`Continuation.open`): a block that continues an
open body where it stands is remembered for deduplication, appended and answered 2.31 Continue from its bytes,
without aiocoap's decode into option objects, token and piggyback bookkeeping, task, pipe, site, policy and
resource, which took about 400 µs of the server's CPU a 1,024-byte block. Everything else (a first or last
block, a block out of place, a retransmission, an OSCORE-protected one, a full table) takes aiocoap's path.
"""

from __future__ import annotations

import math
import socket
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiocoap
from aiocoap.message import Direction
from aiocoap.messagemanager import MessageManager
from aiocoap.numbers.codes import Code
from aiocoap.numbers.types import ACK, CON, NON
from aiocoap.pipe import error_to_message, run_driving_pipe
from aiocoap.tokenmanager import TokenManager
from aiocoap.transports.udp6 import MessageInterfaceUDP6, UDP6EndpointAddress

from .blocks import Answering


@dataclass(frozen=True, slots=True, kw_only=True)
class DedupBudget:
    """How long and how many incoming message ids a server remembers.

    Why deduplication exists: a client that hears no ACK sends the same CON again with the same message id
    (up to MAX_RETRANSMIT times within MAX_TRANSMIT_SPAN, 45 s with RFC 7252's defaults), and a server
    that forgot the id would run the request twice (a tap appended twice). Such a retransmission arrives at
    the latest MAX_TRANSMIT_SPAN + MAX_LATENCY after the first copy; RFC 7252 budgets 100 s of latency for
    the Internet, a LAN needs a few seconds, so `lifetime_s` = 45 + 5 s covers every retransmission of a
    client using the default transmission parameters. Message-id reuse is safe too: a client may reuse an id
    only after its own EXCHANGE_LIFETIME (247 s by default), which is longer than ours, so a reused id is
    always a new request here. Raising `lifetime_s` is the fix for a link with more latency."""

    lifetime_s: float = 50.0
    entries: int = 30_000  # 600 requests/s for a whole lifetime; about 200 bytes each with a small answer
    # One sender may hold at most this many, so a client that floods the edge is refused while the reader, the
    # hub and other phones still get through. A sender is its address whatever the source port (an IPv4
    # address; an IPv6 one's /64, as one host may take any address of its /64), so that a host sending from
    # many ports holds one share (counted by host and port, 3 ports filled the whole table and every other
    # client got 5.03 for as long as it kept on).
    per_peer: int = 10_000

    def __post_init__(self) -> None:
        if not self.lifetime_s > 0:
            raise ValueError(f"lifetime_s: expected > 0, got {self.lifetime_s}")
        if self.entries < 1:
            raise ValueError(f"entries: expected at least 1, got {self.entries}")
        if self.per_peer < 1:
            raise ValueError(f"per_peer: expected at least 1, got {self.per_peer}")


# What the table holds for a GET instead of its answer: still running, and answered (run it again if asked).
_READING = b"reading"
_READ = b"read"


class _Encoded(aiocoap.Message):
    """A message while it is handed to the transport: its encoding is the one just made for the table."""

    _encoded: bytes

    def encode(self) -> bytes:
        return self._encoded


_MULTICAST: dict[bytes, bool] = {}  # pktinfo (local address, interface) -> multicast or not


class _Nowhere:
    """The interface of an address made only to be asked about its local address."""


_NOWHERE = _Nowhere()


def _multicast_locally(pktinfo: bytes) -> bool:
    """Whether a datagram that came with `pktinfo` came to a multicast address, as aiocoap's UDP address says it,
    looked up after the first time: a host has a few local addresses (the table is bounded all the same)."""
    known = _MULTICAST.get(pktinfo)
    if known is None:
        known = bool(UDP6EndpointAddress(("::", 0, 0, 0), _NOWHERE, pktinfo=pktinfo).is_multicast_locally)
        if len(_MULTICAST) >= 64:
            _MULTICAST.clear()
        _MULTICAST[pktinfo] = known
    return known


class _Peer(UDP6EndpointAddress):
    """A UDP peer's address (as a request arrived from it) that looks up whether the request came to a multicast
    address by the local address: aiocoap's parses the local address text with `ipaddress` each time it is
    asked, which is each time an answer (or its ACK) to a request is addressed."""

    @property
    def is_multicast_locally(self) -> bool:
        pktinfo = self.pktinfo
        if pktinfo is None:
            return bool(super().is_multicast_locally)
        return _multicast_locally(pktinfo)


class BoundedMessageManager(MessageManager):
    """aiocoap's message layer with `DedupBudget`'s table in place of its timer-per-message dictionary."""

    budget = DedupBudget()
    generation_s = 1.0  # ids arriving within one such span expire together

    def __init__(self, token_manager: Any) -> None:
        super().__init__(token_manager)
        # `_key(remote, mid)` -> encoded response, or None until there is one. A remote's equality is its
        # host and port (aiocoap's UDP6EndpointAddress), so holding those instead of the remote object (with
        # the datagram's ancillary data) keeps an entry to one integer and the response bytes.
        self._seen: dict[Any, bytes | None] = {}
        # (expires_at, keys that arrived in one generation), oldest first: one lifetime for all, so expiry
        # is dropping whole generations from the front instead of a timer per message.
        self._generations: deque[tuple[float, list[Any]]] = deque()
        self._per_peer: dict[Any, int] = {}  # `_peer(key)` -> ids that peer holds
        self.refused = 0
        # The message whose encoding `_store_response_for_duplicates` just made, and that encoding: the
        # transport sends those bytes rather than encoding the message a second time.
        self._encoded: tuple[Any, bytes] | None = None
        # Bodies whose next block this layer takes in, by (peer, code, options but Block1): the most recent
        # CONTINUING; one dropped early only sends its blocks the longer way.
        self.continuing: dict[tuple[int, int, tuple[tuple[int, bytes], ...]], _Open] = {}
        self._arriving: Continuation | None = None  # for the Block1 request being dispatched now

    @property
    def held(self) -> int:
        """How many incoming message ids are remembered now."""
        return len(self._seen)

    @staticmethod
    def _key(remote: Any, mid: int) -> Any:
        """The table's key for (remote, message id): for a UDP peer one integer, its IPv6 address (IPv4 peers
        arrive v4-mapped on the v6 socket), port and message id side by side, which is half the memory of a
        tuple of host text and number; a host that is not a plain address (a scoped link-local one,
        "fe80::1%eth0") is kept as its text beside the port and id."""
        sockaddr = getattr(remote, "sockaddr", None)
        if sockaddr is None:  # another transport's remote: it is its own key
            return (remote, mid)
        try:
            host = int.from_bytes(socket.inet_pton(socket.AF_INET6, sockaddr[0]), "big")
        except OSError:
            return (sys.intern(sockaddr[0]), sockaddr[1] << 16 | mid)
        return host << 32 | sockaddr[1] << 16 | mid

    @staticmethod
    def _peer(key: Any) -> Any:
        """The sender a key is counted against (`DedupBudget.per_peer`), whatever its source port: an IPv4
        address (v4-mapped) as it is, an IPv6 one by its /64 (a scoped link-local one with its scope), a host
        that is not an address by its text. Its ports need no count of their own: however many it sends from,
        its ids are counted in one share, so what it holds stays within `per_peer`."""
        if isinstance(key, int):
            host = key >> 32
            return host if host >> 32 == 0xFFFF else host >> 64 << 64  # ::ffff:0:0/96, else the /64
        host = key[0]
        if not isinstance(host, str):
            return host  # another transport's remote
        address, _, scope = host.partition("%")
        try:
            prefix = int.from_bytes(socket.inet_pton(socket.AF_INET6, address), "big") >> 64 << 64
        except OSError:
            return host
        return (prefix, scope)

    def _deduplicate_message(self, message: Any) -> bool:
        key = self._key(message.remote, message.mid)
        if key in self._seen:
            raw = self._seen[key]
            if raw is _READ:
                # A GET changes nothing, so RFC 7252 (4.5) lets a retransmission of it run again once the first
                # copy is answered: its answer (a status, a range: the largest ones) is not kept. While the
                # first copy runs, the copy is dropped as any other, so the two never share a token.
                self._seen[key] = _READING
                return False
            if message.mtype is CON and raw is not None and raw is not _READING:
                again = aiocoap.Message.decode(raw, message.remote)
                again.direction = Direction.OUTGOING
                self._send_via_transport(again)
            return True
        now = self.loop.time()
        self._expire(now)
        if not self._has_room(key):
            # Not remembered, so not run: a retransmission of this request gets the same refusal. Max-Age is
            # when the oldest id expires; a peer over its own share may be refused once more then.
            self._refuse(message, math.ceil(self._generations[0][0] - now))
            return True
        self._remember(key, _READING if message.code == Code.GET else None, now)
        return False

    def _expire(self, now: float) -> None:
        generations = self._generations
        per_peer = self._per_peer
        while generations and generations[0][0] <= now:
            for old in generations.popleft()[1]:
                del self._seen[old]
                peer = self._peer(old)
                per_peer[peer] -= 1
                if not per_peer[peer]:
                    del per_peer[peer]

    def _has_room(self, key: Any) -> bool:
        return len(self._seen) < self.budget.entries and self._per_peer.get(self._peer(key), 0) < self.budget.per_peer

    def _remember(self, key: Any, value: bytes | None, now: float) -> None:
        peer = self._peer(key)
        self._per_peer[peer] = self._per_peer.get(peer, 0) + 1
        self._seen[key] = value
        expires = now + self.budget.lifetime_s
        generations = self._generations
        if not generations or generations[-1][0] < expires - self.generation_s:
            # The generation's expiry is its first member's + one generation: nobody leaves early.
            generations.append((expires + self.generation_s, []))
        generations[-1][1].append(key)

    def continued(self, data: bytes, ancdata: Any, address: Any, interface: Any) -> bool:
        """Take in datagram `data` if it is the next block of an open body (see the module's docstring) and
        answer it; False if it is anything else, for aiocoap's path (a Block1 request then arrives there with
        the `Continuation` its resource may open)."""
        block = _block1_request(data)
        if block is None:
            return False
        body, number, more, exp, mid, token, payload, code, declared = block
        try:
            host = int.from_bytes(socket.inet_pton(socket.AF_INET6, address[0]), "big")
        except (OSError, TypeError, IndexError):
            return False  # a scoped or unusual address: aiocoap's path
        peer = host << 16 | address[1]
        pktinfo = None
        for level, kind, value in ancdata:
            if level == socket.IPPROTO_IPV6 and kind == socket.IPV6_PKTINFO:
                pktinfo = value
        if pktinfo is not None and _multicast_locally(pktinfo):
            return False  # a block-wise request to a group address: answered (or not) as aiocoap does
        ckey = (peer, code, body)
        opened = self.continuing.get(ckey)
        if opened is None or not more or opened.pktinfo != pktinfo or not opened.takes(number, exp, payload, declared):
            self._arriving = Continuation(self, ckey, pktinfo)
            return False
        key = peer << 16 | mid
        now = self.loop.time()
        if key in self._seen:
            self._arriving = Continuation(self, ckey, pktinfo)
            return False  # a retransmission: aiocoap's path answers it from the table
        self._expire(now)
        if not self._has_room(key):
            self._arriving = Continuation(self, ckey, pktinfo)
            return False  # refused there, with the Max-Age
        if not opened.append(payload):
            del self.continuing[ckey]  # the body lapsed or was given up: aiocoap's path says so
            self._arriving = Continuation(self, ckey, pktinfo)
            return False
        opened.number += 1
        value = number << 4 | 8 | exp
        option = value.to_bytes((value.bit_length() + 7) // 8, "big")
        # ACK 2.31 Continue, the request's message id and token, Block1 (option 27: delta 13 + 14) as it came
        answer = bytes((0x60 | len(token), 0x5F)) + mid.to_bytes(2, "big") + token + \
            bytes((0xD0 | len(option), 14)) + option
        self._remember(key, answer, now)
        interface.transport.sendmsg(answer, [] if pktinfo is None else
                                    [(socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, pktinfo)], 0, address)
        return True

    def _refuse(self, request: Any, retry_after: int) -> None:
        self.refused += 1
        if request.mtype is CON:
            answer = aiocoap.Message(mtype=ACK, mid=request.mid, code=Code.SERVICE_UNAVAILABLE,
                                     max_age=max(1, retry_after))
        elif request.mtype is NON:
            answer = aiocoap.Message(mtype=NON, mid=self._next_message_id(), code=Code.SERVICE_UNAVAILABLE,
                                     max_age=max(1, retry_after))
        else:
            return
        answer.token = request.token
        answer.remote = request.remote.as_response_address()
        self._send_via_transport(answer)

    def dispatch_message(self, message: Any) -> None:
        if type(message.remote) is UDP6EndpointAddress:
            message.remote.__class__ = _Peer  # equal and hashed as before (by host and port)
        arriving, self._arriving = self._arriving, None
        if arriving is not None:
            message.continuation = arriving
        super().dispatch_message(message)

    def _store_response_for_duplicates(self, message: Any) -> None:
        key = self._key(message.remote, message.mid)
        if key in self._seen:
            if self._seen[key] is _READING:
                self._seen[key] = _READ
            else:
                self._seen[key] = raw = message.encode()
                self._encoded = (message, raw)

    def _send_via_transport(self, message: Any) -> None:
        # aiocoap sends a message right after storing it (`_send_initially`); a retransmission encodes anew.
        encoded, self._encoded = self._encoded, None
        if encoded is None or encoded[0] is not message or type(message) is not aiocoap.Message:
            super()._send_via_transport(message)
            return
        message.__class__ = _Encoded
        message._encoded = encoded[1]
        try:
            super()._send_via_transport(message)
        finally:
            message.__class__ = aiocoap.Message
            del message._encoded


CONTINUING = 256  # open bodies at once per transport (a sync pusher has a few in flight)

_NOT_CONTINUED = frozenset({6, 9, 23, 258})  # Observe, OSCORE, Block2, No-Response


def _block1_request(data: bytes) -> tuple[tuple[tuple[int, bytes], ...], int, bool, int, int, bytes, bytes,
                                          int, int] | None:
    """A confirmable POST or PUT with a Block1 option and none of `_NOT_CONTINUED`, read from its bytes (RFC
    7252 section 3): its options but Block1 and Size1, block number, more flag, size exponent, message id,
    token, payload, code and the body's size it declares (Size1, 0 without); None for anything else, malformed
    included (aiocoap's path judges it)."""
    size = len(data)
    if size < 4 or data[0] & 0xF0 != 0x40 or data[1] not in (2, 3):
        return None  # version 1 CON; POST or PUT
    tkl = data[0] & 0x0F
    pos = 4 + tkl
    if tkl > 8 or pos > size:
        return None
    number = 0
    options = []
    block1 = None
    declared = 0
    payload = b""
    while pos < size:
        byte = data[pos]
        if byte == 0xFF:
            payload = data[pos + 1:]
            if not payload:
                return None
            break
        delta, length = byte >> 4, byte & 0x0F
        pos += 1
        if delta >= 13:
            if delta == 15 or pos + delta - 12 > size:
                return None
            delta = data[pos] + 13 if delta == 13 else (data[pos] << 8 | data[pos + 1]) + 269
            pos += 1 if delta < 269 else 2
        if length >= 13:
            if length == 15 or pos + length - 12 > size:
                return None
            length = data[pos] + 13 if length == 13 else (data[pos] << 8 | data[pos + 1]) + 269
            pos += 1 if length < 269 else 2
        number += delta
        value = data[pos:pos + length]
        pos += length
        if pos > size or number in _NOT_CONTINUED:
            return None
        if number == 27:
            if block1 is not None or length > 3:
                return None
            block1 = int.from_bytes(value, "big")
        elif number == 60:  # Size1: not part of what tells bodies apart (NoCacheKey)
            if length > 4:
                return None
            declared = int.from_bytes(value, "big")
        else:
            options.append((number, value))
    if block1 is None:
        return None
    return (tuple(options), block1 >> 4, bool(block1 & 8), block1 & 7, data[2] << 8 | data[3], data[4:4 + tkl],
            payload, data[1], declared)


class _Open:
    """A body whose next block the message layer takes in: where it stands and what it may grow to."""

    __slots__ = ("append", "exp", "limit", "number", "pktinfo")

    def __init__(self, append: Callable[[bytes], bool], number: int, exp: int, limit: int,
                 pktinfo: bytes | None) -> None:
        self.append = append
        self.number, self.exp, self.limit, self.pktinfo = number, exp, limit, pktinfo

    def takes(self, number: int, exp: int, payload: bytes, declared: int) -> bool:
        """Whether a block (not the last) continues this body where it stands: the next number, the same
        size, full, and within the limit (its own end and the size it declares)."""
        size = 1 << (exp + 4)
        return (number == self.number and exp == self.exp and exp < 7 and len(payload) == size
                and (number + 1) * size <= self.limit and declared <= self.limit)


class Continuation:
    """What a Block1 request that came over UDP carries to its resource (`message.continuation`): the way to
    have the message layer take in the body's next blocks."""

    __slots__ = ("key", "manager", "pktinfo")

    def __init__(self, manager: BoundedMessageManager, key: Any, pktinfo: bytes | None) -> None:
        self.manager, self.key, self.pktinfo = manager, key, pktinfo

    def open(self, *, after: int, exp: int, limit: int, append: Callable[[bytes], bool]) -> None:
        """Blocks after number `after` of size 2**(exp+4), up to `limit` bytes of body, go to `append` (one
        block's payload each), which says False when the body is no longer being assembled."""
        continuing = self.manager.continuing
        continuing.pop(self.key, None)
        if len(continuing) >= CONTINUING:
            del continuing[next(iter(continuing))]
        continuing[self.key] = _Open(append, after + 1, exp, limit, self.pktinfo)

    def close(self) -> None:
        """The body is whole, or given up: its blocks take aiocoap's path again."""
        self.manager.continuing.pop(self.key, None)


class _Receiving(Answering):
    """aiocoap's UDP transport, offering each datagram to the message layer's `continued` first (and, as a
    client's, answers to `blocks.request`'s blocks to their waiters)."""

    def datagram_msg_received(self, data: bytes, ancdata: Any, flags: int, address: Any) -> None:
        if not self._ctx.continued(data, ancdata, address, self):
            try:
                super().datagram_msg_received(data, ancdata, flags, address)
            finally:
                self._ctx._arriving = None


class BoundedContext(aiocoap.Context):
    """`aiocoap.Context` whose UDP transports use `BoundedMessageManager` (`create_server_context` as usual)."""

    message_manager: type[BoundedMessageManager] = BoundedMessageManager

    async def _append_tokenmanaged_messagemanaged_transport(self, message_interface_constructor: Any) -> None:
        tman = TokenManager(self)
        mman = self.message_manager(tman)
        transport = await message_interface_constructor(mman)
        if type(transport) is MessageInterfaceUDP6:
            _Receiving.made(transport)
        mman.message_interface = transport
        tman.token_interface = mman
        self.request_interfaces.append(tman)

    def render_to_pipe(self, pipe: Any) -> None:
        # As aiocoap's, but for the task's name: aiocoap names it after the request's repr (its options and the
        # addresses written out), which took about 50 µs, for each 1,024-byte block of a request over UDP.
        run_driving_pipe(error_to_message(pipe, self.log), self._render_to_pipe(pipe), name="CoAP request rendering")

    def message_managers(self) -> list[BoundedMessageManager]:
        """The bounded message layers of this context (one per UDP transport)."""
        return [ri.token_interface for ri in self.request_interfaces
                if isinstance(getattr(ri, "token_interface", None), BoundedMessageManager)]


def bounded_context(budget: DedupBudget) -> type[BoundedContext]:
    """A context class whose message layers keep to `budget` (the budget is fixed when the class is made,
    before any transport exists, rather than set on a built context)."""
    manager = type("BudgetedMessageManager", (BoundedMessageManager,), {"budget": budget})
    return type("BudgetedContext", (BoundedContext,), {"message_manager": manager})
