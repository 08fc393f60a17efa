"""A request body sent block by block (coap_server/blocks.py) to a site that routes without deep copies
(coap_server/routing.py) and resources that take bodies in with `blocks.Spool` reaches a resource as aiocoap's
own block-wise request, site and resource deliver it: the same body, path, query and URI, the same large
answer, the same refusal of a body over the limit, the same errors for blocks that do not fit."""

from __future__ import annotations

import socket
import struct
from typing import Any

import aiocoap
import aiocoap.resource as resource
import cbor2
import pytest
from aiocoap.blockwise import Block1Spool
from aiocoap.numbers.codes import Code
from aiocoap.optiontypes import BlockOption
from aiocoap.transports.udp6 import UDP6EndpointAddress

from coap_server import blocks
from coap_server.errors import error_response
from coap_server.params import check_body_size
from coap_server.ports import serve_coap
from coap_server.routing import Site, stripped
from ledger.errors import CodedError
from tests.ports import free_coap

BODY = bytes(range(256)) * 21 + b"tail"  # 5,380 bytes: six blocks, the last a short one
LIMIT = 3000  # what Limited takes: refused at the third block


class Echo(resource.Resource):
    """Answers a POST with what it saw, and a body of its own larger than one block (so Block2 follows)."""

    async def render_post(self, request: aiocoap.Message) -> aiocoap.Message:
        seen = {"path": list(request.opt.uri_path), "query": list(request.opt.uri_query),
                "uri": request.get_request_uri(), "body": request.payload, "format": request.opt.content_format}
        return aiocoap.Message(code=Code.CHANGED, payload=cbor2.dumps(seen) + bytes(3000))


class Limited(resource.Resource):
    """Refuses a body past LIMIT (declared, or received so far) at its first block over it, as the sync resources do."""

    async def render_to_pipe(self, pipe: Any) -> None:
        try:
            check_body_size(pipe.request, LIMIT, "test message")
        except CodedError as exc:
            pipe.add_response(error_response(exc), is_last=True)
            return
        await super().render_to_pipe(pipe)

    async def render_post(self, request: aiocoap.Message) -> aiocoap.Message:
        return aiocoap.Message(code=Code.CHANGED, payload=b"taken")


class Logs(resource.Resource, resource.PathCapable):
    """A sub-site: answers with the path left to it."""

    async def render_post(self, request: aiocoap.Message) -> aiocoap.Message:
        return aiocoap.Message(code=Code.CHANGED, payload=cbor2.dumps([list(request.opt.uri_path),
                                                                      request.get_request_uri()]))


class OurEcho(Echo, blocks.Resource):
    """Echo taking its body in with `blocks.Spool`, as the sync resources do."""

    def body_limit(self, request: aiocoap.Message) -> tuple[int, str]:
        return 1 << 20, "echo body"


class OurLimited(Limited, blocks.Resource):
    def body_limit(self, request: aiocoap.Message) -> tuple[int, str]:
        return LIMIT, "test message"


def _site(kind: type[resource.Site]) -> resource.Site:
    """Ours: our site and resources; theirs: aiocoap's."""
    ours = kind is Site
    site = kind()
    site.add_resource(["sync", "echo"], OurEcho() if ours else Echo())
    site.add_resource(["limited"], OurLimited() if ours else Limited())
    site.add_resource(["log"], Logs())
    return site


@pytest.fixture
async def servers() -> Any:
    """Our site and aiocoap's, each served over UDP on loopback: (port of ours, port of aiocoap's)."""
    ports = free_coap(), free_coap()
    served = [await serve_coap(_site(kind), host="127.0.0.1", port=port, tcp=False, setting="test")
              for kind, port in zip((Site, resource.Site), ports, strict=True)]
    client = await aiocoap.Context.create_client_context()
    try:
        yield client, ports
    finally:
        await client.shutdown()
        for ctx in served:
            await ctx.shutdown()


def _post(port: int, path: str, body: bytes = BODY) -> aiocoap.Message:
    return aiocoap.Message(code=Code.POST, uri=f"coap://127.0.0.1:{port}{path}", payload=body, content_format=60)


async def test_a_body_of_many_blocks_arrives_as_aiocoap_delivers_it(servers: Any) -> None:
    client, (ours, theirs) = servers
    answers = {}
    for name, port in (("ours", ours), ("theirs", theirs)):
        sent = await blocks.request(client, _post(port, "/sync/echo?d=ab&from=3"))
        plain = await client.request(_post(port, "/sync/echo?d=ab&from=3")).response
        assert sent.code == plain.code == Code.CHANGED
        assert sent.payload == plain.payload and len(sent.payload) > 3000  # the answer's own blocks came too
        seen = cbor2.loads(sent.payload)
        answers[name] = {**seen, "uri": seen["uri"].replace(str(port), "PORT")}
    assert answers["ours"] == answers["theirs"]
    assert answers["ours"] == {"path": [], "query": ["d=ab", "from=3"], "body": BODY, "format": 60,
                               "uri": "coap://127.0.0.1:PORT/sync/echo?d=ab&from=3"}


async def test_a_body_over_the_limit_is_refused_at_its_first_block_as_before(servers: Any) -> None:
    client, (ours, _) = servers
    sent = await blocks.request(client, _post(ours, "/limited"))
    plain = await client.request(_post(ours, "/limited")).response
    assert sent.code == plain.code == Code.REQUEST_ENTITY_TOO_LARGE
    assert sent.payload == plain.payload and cbor2.loads(sent.payload)["code"] == "TOO_LARGE"
    taken = await blocks.request(client, _post(ours, "/limited", BODY[:LIMIT]))
    assert (taken.code, taken.payload) == (Code.CHANGED, b"taken")


async def test_small_bodies_sub_sites_and_unknown_paths_route_alike(servers: Any) -> None:
    client, (ours, theirs) = servers
    for path, body in (("/log/ab/records", b"x"), ("/log/ab/records", BODY), ("/log/", b"x"), ("/nothing", b"x"),
                       ("/sync", BODY)):
        got = []
        for port in (ours, theirs):
            answer = await blocks.request(client, _post(port, path, body))
            got.append((answer.code, answer.payload.replace(str(port).encode(), b"PORT")))
        assert got[0] == got[1], path
    answer = await blocks.request(client, _post(ours, "/log/ab/records", BODY))
    assert cbor2.loads(answer.payload) == [["ab", "records"], f"coap://127.0.0.1:{ours}/log/ab/records"]
    assert (await blocks.request(client, _post(ours, "/nothing", BODY))).code == Code.NOT_FOUND


def test_a_stripped_request_has_options_of_its_own_and_the_uri_it_came_with() -> None:
    request = aiocoap.Message(code=Code.POST, uri="coap://127.0.0.1:5700/sync/records?d=ab", payload=b"x")
    cut = stripped(request, ())
    assert cut.opt.uri_path == () and request.opt.uri_path == ("sync", "records")
    cut.opt.uri_query = ["d=cd"]
    cut.opt.content_format = 60
    assert request.opt.uri_query == ("d=ab",) and request.opt.content_format is None
    assert cut.get_request_uri() == request.get_request_uri() == "coap://127.0.0.1:5700/sync/records?d=ab"
    assert stripped(cut, ("x",)).get_request_uri() == request.get_request_uri()  # a site within a site
    assert cut.payload is request.payload and cut.code == request.code


@pytest.mark.parametrize("host", ["::ffff:127.0.0.1", "::ffff:224.0.1.187", "::1", "ff05::fd"])
def test_a_known_address_says_what_aiocoaps_says_about_multicast(host: str) -> None:
    class Interface:
        pass

    interface = Interface()
    sockaddr = socket.getaddrinfo(host, 5683, type=socket.SOCK_DGRAM, family=socket.AF_INET6)[0][-1]
    remote = UDP6EndpointAddress(sockaddr, interface)
    known = blocks._Known.of(remote)
    assert known.is_multicast == remote.is_multicast == host.startswith(("::ffff:224", "ff"))
    assert known == remote and hash(known) == hash(remote) and known.interface is interface
    assert known.maximum_block_size_exp == remote.maximum_block_size_exp


class _Interface:
    pass


_INTERFACE = _Interface()
_PEER = UDP6EndpointAddress(("::ffff:127.0.0.1", 5683, 0, 0), _INTERFACE)


def _block(number: int, more: bool, payload: bytes, *, exp: int = 6, token: bytes = b"t", path: str = "a",
           size: int | None = None) -> aiocoap.Message:
    block = aiocoap.Message(code=Code.POST, uri_path=(path,), payload=payload, token=token, mid=100 + number)
    block.opt.block1 = BlockOption.BlockwiseTuple(number, more, exp)
    if size is not None:
        block.opt.size1 = size
    block.remote = _PEER
    return block


# aiocoap's refusals as ours are typed: a gap or an overlap was an untyped ValueError there (answered 5.00).
REFUSED = {"IncompleteException": "INCOMPLETE_BODY", "ValueError": "INCOMPLETE_BODY", "BadRequest": "BAD_REQUEST"}


def _fed(spool: Block1Spool, blocks_in: list[aiocoap.Message]) -> list[Any]:
    """What a spool makes of each block: the whole request's parts, "continue", or the refusal's code."""
    out: list[Any] = []
    for block in blocks_in:
        try:
            whole = spool.feed_and_take(block)
        except blocks.Refused as exc:
            out.append(exc.error.code)
            continue
        except Exception as exc:  # the assertion compares the refusals with aiocoap's
            name = type(exc).__name__
            out.append(REFUSED.get(name, name) + ("" if name != "ContinueException" else
                                                  f" {tuple(exc.block1)}"))  # type: ignore[attr-defined]
            continue
        out.append((whole.payload, whole.token, whole.mid, tuple(whole.opt.block1), whole.opt.size1,
                    whole.opt.uri_path))
    return out


# Built anew for each spool: a spool keeps, and changes, the first block it is given.
BODIES: dict[str, Any] = {
    "in order": lambda: [_block(0, True, b"a" * 1024, size=2100), _block(1, True, b"b" * 1024, token=b"u"),
                 _block(2, False, b"c" * 52, token=b"v")],
    "one block": lambda: [_block(0, False, b"x" * 10)],
    "no block 0": lambda: [_block(1, True, b"b" * 1024), _block(2, False, b"c")],
    "a block of the wrong size": lambda: [_block(0, True, b"a" * 1024), _block(1, True, b"b" * 1000), _block(2, False, b"c")],
    "a gap": lambda: [_block(0, True, b"a" * 1024), _block(2, False, b"c")],
    "an overlap": lambda: [_block(0, True, b"a" * 1024), _block(1, True, b"b" * 1024), _block(1, False, b"c")],
    "block 0 again starts over": lambda: [_block(0, True, b"a" * 1024), _block(0, True, b"z" * 1024),
                                  _block(1, False, b"y")],
    "two bodies side by side": lambda: [_block(0, True, b"a" * 1024), _block(0, True, b"p" * 1024, path="b"),
                                _block(1, False, b"q", path="b"), _block(1, False, b"c")],
    "a block after the last": lambda: [_block(0, True, b"a" * 1024), _block(1, False, b"c"), _block(2, False, b"d")],
    "BERT": lambda: [_block(0, True, b"a" * 2048, exp=7), _block(2, False, b"c", exp=7)],
}


@pytest.mark.parametrize("case", list(BODIES))
async def test_the_spool_assembles_and_refuses_blocks_as_aiocoaps(case: str) -> None:
    ours, theirs = _fed(blocks.Spool(), BODIES[case]()), _fed(Block1Spool(), BODIES[case]())
    assert ours == theirs
    assert len(ours) == len(BODIES[case]())


async def test_a_large_body_is_assembled_whole_in_order() -> None:
    body = bytes(range(256)) * 1000 + b"end"  # 251 blocks
    spool = blocks.Spool()
    pieces = [body[i:i + 1024] for i in range(0, len(body), 1024)]
    got = [spool.feed(_block(n, n < len(pieces) - 1, piece)) for n, piece in enumerate(pieces)]
    assert got[:-1] == [None] * (len(pieces) - 1)
    whole = got[-1]
    assert whole is not None and whole.payload == body and isinstance(whole.payload, bytes)
    assert tuple(whole.opt.block1) == (len(pieces) - 1, False, 6)


async def test_each_block_but_the_last_is_answered_continue_as_aiocoap_answers_it(servers: Any) -> None:
    client, ports = servers
    got = []
    for port in ports:
        first = _post(port, "/sync/echo", BODY[:1024])
        first.opt.block1 = BlockOption.BlockwiseTuple(0, True, 6)
        first.opt.size1 = len(BODY)
        answer = await client.request(first, handle_blockwise=False).response
        got.append((answer.code, tuple(answer.opt.block1), answer.payload, answer.opt.content_format))
        stray = _post(port, "/sync/echo", BODY[1024:2048])  # block 1 of a body never begun: 4.08
        stray.opt.block1 = BlockOption.BlockwiseTuple(1, True, 6)
        stray.opt.uri_query = ["other"]
        answer = await client.request(stray, handle_blockwise=False).response
        got.append((answer.code, answer.opt.block1, answer.payload))
    assert got[0] == got[2] and got[1][:2] == got[3][:2]
    assert got[0] == (Code.CONTINUE, (0, True, 6), b"", None)
    assert got[1][0] == Code.REQUEST_ENTITY_INCOMPLETE
    assert cbor2.loads(got[1][2])["code"] == "INCOMPLETE_BODY"  # typed, where aiocoap's says it in plain text


@pytest.mark.parametrize("local", ["::ffff:127.0.0.1", "::ffff:224.0.1.187", "::1", "ff02::fd", "ff05::fd"])
def test_a_peer_says_what_aiocoap_says_about_the_local_address(local: str) -> None:
    from coap_server.exchanges import _Peer

    pktinfo = struct.pack("16sI", socket.inet_pton(socket.AF_INET6, local), 0)
    interface = _Interface()  # held: an address keeps only a weak reference to its interface
    plain = UDP6EndpointAddress(("::ffff:127.0.0.1", 5683, 0, 0), interface, pktinfo=pktinfo)
    peer = UDP6EndpointAddress(("::ffff:127.0.0.1", 5683, 0, 0), interface, pktinfo=pktinfo)
    peer.__class__ = _Peer
    for _ in range(2):  # asked again, from what it looked up
        assert peer.is_multicast_locally == plain.is_multicast_locally == local.startswith(("::ffff:224", "ff"))
    answer, theirs = peer.as_response_address(), plain.as_response_address()
    assert answer == theirs and answer.pktinfo == theirs.pktinfo and hash(peer) == hash(plain) and peer == plain


def test_a_spool_holds_at_most_its_number_of_bodies_the_least_recently_fed_going_first() -> None:
    spool = blocks.Spool(most=3)
    for path in "abcd":
        assert spool.feed(_block(0, True, b"a" * 1024, path=path)) is None
    assert len(spool) == 3
    assert spool.feed(_block(1, True, b"b" * 1024, path="b")) is None  # "b" is fed again: "c" is now the oldest
    assert spool.feed(_block(0, True, b"a" * 1024, path="e")) is None
    with pytest.raises(CodedError) as refused:
        spool.feed(_block(1, False, b"c", path="a"))  # pushed out by "d"
    assert refused.value.code == "INCOMPLETE_BODY"
    with pytest.raises(CodedError):
        spool.feed(_block(1, False, b"c", path="c"))  # pushed out by "e"
    whole = spool.feed(_block(2, False, b"c", path="b"))
    assert whole is not None and whole.payload == b"a" * 1024 + b"b" * 1024 + b"c"
    assert len(spool) == 2  # "d" and "e"


def test_a_body_whose_next_block_comes_too_late_is_forgotten() -> None:
    now = [0.0]
    spool = blocks.Spool(lifetime_s=10, clock=lambda: now[0])
    spool.feed(_block(0, True, b"a" * 1024, path="slow"))
    spool.feed(_block(0, True, b"a" * 1024, path="steady"))
    for n in range(1, 4):
        now[0] += 6
        spool.feed(_block(n, True, b"b" * 1024, path="steady"))
    assert len(spool) == 1  # "slow" lapsed when a later block came
    with pytest.raises(CodedError) as refused:
        spool.feed(_block(1, False, b"c", path="slow"))
    assert refused.value.code == "INCOMPLETE_BODY" and "block 0" in refused.value.hint
