"""A CoAP server context whose deduplication state has a fixed size, whatever the request rate.

aiocoap remembers every incoming request's (remote, message id) and the response it got for
EXCHANGE_LIFETIME (247 s), with a timer and the whole response `Message` each, so the edge's memory grew
with request rate × 247 s (49 → 155 MB over 72,000 requests). `BoundedContext` keeps the same protection
with a budget: an entry is a few bytes of key, an expiry time and the response's encoded bytes, kept in
arrival order (one lifetime for all, so the oldest expires first and no timers are needed), for a lifetime
sized to a LAN, and at most `DedupBudget.entries` of them. When the table is full a new request is refused
with 5.03 and Max-Age saying when the oldest entry frees its place, so nothing is forgotten early.
"""

from __future__ import annotations

import math
import socket
import sys
from collections import deque
from dataclasses import dataclass
from typing import Any, ClassVar

import aiocoap
from aiocoap.message import Direction
from aiocoap.messagemanager import MessageManager
from aiocoap.numbers.codes import Code
from aiocoap.numbers.types import ACK, CON, NON
from aiocoap.pipe import error_to_message, run_driving_pipe
from aiocoap.tokenmanager import TokenManager
from aiocoap.transports.udp6 import UDP6EndpointAddress


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
    # One peer (host and port) may hold at most this many, so a client that floods the edge is refused
    # while the reader, the hub and other phones still get through.
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


class _Peer(UDP6EndpointAddress):
    """A UDP peer's address (as a request arrived from it) that looks up whether the request came to a multicast
    address by the local address: aiocoap's parses the local address text with `ipaddress` each time it is
    asked, which is each time an answer (or its ACK) to a request is addressed."""

    _multicast: ClassVar[dict[bytes, bool]] = {}  # pktinfo (local address, interface) -> multicast or not

    @property
    def is_multicast_locally(self) -> bool:
        pktinfo = self.pktinfo
        if pktinfo is None:
            return bool(super().is_multicast_locally)
        known = self._multicast.get(pktinfo)
        if known is None:
            known = bool(super().is_multicast_locally)
            if len(self._multicast) >= 64:  # a host has a few local addresses; bounded all the same
                self._multicast.clear()
            self._multicast[pktinfo] = known
        return known


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
        """The (host, port) a key belongs to, as the per-peer count holds it."""
        if isinstance(key, int):
            return key >> 16
        host, rest = key
        return (host, rest >> 16) if isinstance(host, str) else host

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
        generations = self._generations
        per_peer = self._per_peer
        while generations and generations[0][0] <= now:
            for old in generations.popleft()[1]:
                del self._seen[old]
                peer = self._peer(old)
                per_peer[peer] -= 1
                if not per_peer[peer]:
                    del per_peer[peer]
        peer = self._peer(key)
        if len(self._seen) >= self.budget.entries or per_peer.get(peer, 0) >= self.budget.per_peer:
            # Not remembered, so not run: a retransmission of this request gets the same refusal. Max-Age is
            # when the oldest id expires; a peer over its own share may be refused once more then.
            self._refuse(message, math.ceil(generations[0][0] - now))
            return True
        per_peer[peer] = per_peer.get(peer, 0) + 1
        self._seen[key] = _READING if message.code == Code.GET else None
        expires = now + self.budget.lifetime_s
        if not generations or generations[-1][0] < expires - self.generation_s:
            # The generation's expiry is its first member's + one generation: nobody leaves early.
            generations.append((expires + self.generation_s, []))
        generations[-1][1].append(key)
        return False

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


class BoundedContext(aiocoap.Context):
    """`aiocoap.Context` whose UDP transports use `BoundedMessageManager` (`create_server_context` as usual)."""

    message_manager: type[BoundedMessageManager] = BoundedMessageManager

    async def _append_tokenmanaged_messagemanaged_transport(self, message_interface_constructor: Any) -> None:
        tman = TokenManager(self)
        mman = self.message_manager(tman)
        transport = await message_interface_constructor(mman)
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
