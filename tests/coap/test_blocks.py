"""A request body sent block by block (coap_server/blocks.py) to a site that routes without deep copies
(coap_server/routing.py) reaches a resource as aiocoap's own block-wise request and site deliver it: the same
body, path, query and URI, the same large answer, the same refusal of a body over the limit."""

from __future__ import annotations

import socket
from typing import Any

import aiocoap
import aiocoap.resource as resource
import cbor2
import pytest
from aiocoap.numbers.codes import Code
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


def _site(kind: type[resource.Site]) -> resource.Site:
    site = kind()
    site.add_resource(["sync", "echo"], Echo())
    site.add_resource(["limited"], Limited())
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
