"""Heads a page at a time and many logs a ranges request, against new peers and against peers that do not page."""

from __future__ import annotations

import aiocoap
import aiocoap.resource as resource
import cbor2
import pytest
from aiocoap.numbers.codes import Code

from coap_server.errors import error_response
from coap_server.params import Param, coap_query, device
from coap_server.sync import (
    HeadsResource,
    RecordsResource,
    SyncReport,
    add_sync_resources,
    remote_heads,
    sync_once,
)
from ledger import ChainState, SyncError
from ledger.sync import (
    Head,
    Limits,
    decode_heads,
    decode_heads_page,
    decode_heads_page_forked,
    encode_heads,
    encode_heads_page,
    page_of,
)
from tests.hub.conftest import Clock, new_device
from tests.ports import free_coap


class Logs:
    """Many devices' logs held in memory; `receive` keeps what extends a log (the protocol, not the checks)."""

    def __init__(self, logs: dict[bytes, list] | None = None) -> None:
        self.logs = logs or {}

    def heads(self):
        return [Head.of(ChainState(device_id=d, length=len(r), head=r[-1].id)) for d, r in self.logs.items() if r]

    def log_range(self, device_id, start, end):
        return [r.raw for r in self.logs.get(device_id, [])[start:end]]

    def receive(self, device_id, raws):
        from ledger import decode_record

        held = self.logs.setdefault(device_id, [])
        accepted = 0
        for rec in map(decode_record, raws):
            if rec.seq == len(held):
                held.append(rec)
                accepted += 1
        return {"accepted": accepted, "duplicates": len(raws) - accepted, "length": len(held), "problem": None}


def _logs(count: int, length: int) -> dict[bytes, list]:
    clock = Clock()
    out = {}
    for _ in range(count):
        _signer, builder = new_device(clock)
        out[builder.device_id] = [builder.genesis()] + [builder.append("note", {"text": str(i)})
                                                        for i in range(length - 1)]
    return out


class OldHeads(HeadsResource):
    """A peer from before pages: every head at once, whatever the query."""

    async def render_post(self, request):
        heads = self.holder.heads()
        return aiocoap.Message(code=Code.CONTENT, content_format=60, payload=encode_heads(heads))


async def _serve(site):
    port = free_coap()
    ctx = await aiocoap.Context.create_server_context(site, bind=("127.0.0.1", port), transports=["udp6"])
    return ctx, f"coap://127.0.0.1:{port}"


def test_pages_follow_each_other_and_refuse_going_back():
    heads = [Head(device_id=bytes([i]) * 16, length=1, head=bytes(32)) for i in range(5, 0, -1)]
    first, more = page_of(heads, b"", 2)
    assert [h.device_id[0] for h in first] == [1, 2] and more == bytes([2]) * 16
    last, end = page_of(heads, bytes([4]) * 16, 2)
    assert [h.device_id[0] for h in last] == [5] and end is None
    assert decode_heads_page(encode_heads_page(first, more), b"") == (first, more)
    assert decode_heads_page(encode_heads(heads), b"") == (heads, None), "a peer that does not page"
    with pytest.raises(SyncError):
        decode_heads_page(encode_heads_page(first, more), bytes([3]) * 16)  # a page that goes back
    with pytest.raises(SyncError):
        decode_heads_page(encode_heads_page(first, bytes([1]) * 16), b"")  # next goes back into the page
    with pytest.raises(SyncError):
        decode_heads(encode_heads_page(first, more))


async def test_pages_and_ranges_against_a_new_peer_and_an_old_one():
    served = Logs(_logs(7, 3))
    new_site, old_site = resource.Site(), resource.Site()
    add_sync_resources(new_site, served, Limits(max_devices=2))  # 7 logs: 4 pages
    old_site.add_resource(["sync", "heads"], OldHeads(served, Limits()))
    old_site.add_resource(["sync", "records"], RecordsResource(served, Limits()))  # and no /sync/ranges
    (new_ctx, new_url), (old_ctx, old_url) = await _serve(new_site), await _serve(old_site)
    ctx = await aiocoap.Context.create_client_context()
    try:
        assert {h.device_id for h in await remote_heads(ctx, new_url)} == set(served.logs)
        for url in (new_url, old_url):
            local = Logs()
            report = await sync_once(ctx, url, local, push=False)
            assert report.fetched == 21 and not report.problems
            assert {d: [r.id for r in rs] for d, rs in local.logs.items()} == {
                d: [r.id for r in rs] for d, rs in served.logs.items()}
        # A puller that does not page asks without ?after= and gets every head at once, as before.
        old_ask = aiocoap.Message(code=Code.POST, uri=f"{new_url}/sync/heads", payload=encode_heads([]))
        assert len(decode_heads((await ctx.request(old_ask).response).payload)) == 7
    finally:
        for c in (ctx, new_ctx, old_ctx):
            await c.shutdown()


async def test_a_pull_waits_out_a_peer_whose_message_table_is_full():
    from coap_server.exchanges import DedupBudget, bounded_context

    served = Logs(_logs(7, 3))
    site = resource.Site()
    add_sync_resources(site, served, Limits(max_devices=2))
    port = free_coap()
    budget = DedupBudget(lifetime_s=1.0, entries=100, per_peer=3)  # a few messages a second from one peer
    server = await bounded_context(budget).create_server_context(site, bind=("127.0.0.1", port),
                                                                transports=["udp6"])
    ctx = await aiocoap.Context.create_client_context()
    try:
        local = Logs()
        report = await sync_once(ctx, f"coap://127.0.0.1:{port}", local, push=False)
        assert report.fetched == 21 and not report.problems, "5.03 with Max-Age is waited out, not a failure"
    finally:
        await ctx.shutdown()
        await server.shutdown()


async def test_an_oscore_request_waits_out_the_unprotected_503_of_a_full_message_table(monkeypatch):
    """Over OSCORE the full table's 5.03 comes unprotected (the table answers before OSCORE reads the request):
    aiocoap raises NotAProtectedMessage carrying it, and the request waits its Max-Age as for a plain 5.03."""
    from aiocoap.oscore import NotAProtectedMessage

    from coap_server import sync

    busy = aiocoap.Message(code=Code.SERVICE_UNAVAILABLE, max_age=0)
    answers = [NotAProtectedMessage("No Object-Security option present", busy)] * 2
    answers.append(aiocoap.Message(code=Code.CONTENT, payload=b"\xa0"))
    asked = []

    async def request(ctx, msg):
        asked.append(msg.code)
        answer = answers[len(asked) - 1]
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(sync.blocks, "request", request)
    monkeypatch.setattr(sync, "BUSY_WAIT_S", 0.0)  # the Max-Age waited is the code's; no need to sit it out here
    assert await sync._request(None, Code.GET, "coap://peer/sync/heads") == b"\xa0"
    assert len(asked) == 3
    # Not forever: past BUSY_RETRIES it is the failure it is.
    asked.clear()
    answers[:] = [NotAProtectedMessage("No Object-Security option present", busy)] * (sync.BUSY_RETRIES + 1)
    with pytest.raises(NotAProtectedMessage):
        await sync._request(None, Code.GET, "coap://peer/sync/heads")
    assert len(asked) == sync.BUSY_RETRIES + 1


def test_a_page_says_which_logs_asked_about_are_forked_only_when_asked():
    heads = [Head(device_id=bytes([i]) * 16, length=1, head=bytes(32)) for i in (1, 2)]
    forked = bytes([2]) * 16
    assert decode_heads_page_forked(encode_heads_page(heads, None, forked=[forked]), b"") == (
        heads, None, frozenset({forked}))
    assert decode_heads_page_forked(encode_heads_page(heads, None, forked=[]), b"") == (heads, None, frozenset())
    assert decode_heads_page_forked(encode_heads_page(heads, None), b"") == (heads, None, None)  # not asked
    assert decode_heads_page(encode_heads_page(heads, None, forked=[forked]), b"") == (heads, None)
    for bad in ([b"short"], [1], b"not a list"):
        page = cbor2.dumps([1, 1, [[h.device_id, h.length, h.head] for h in heads], None, bad])
        with pytest.raises(SyncError, match="forked logs"):
            decode_heads_page_forked(page, b"")


class Forks(Logs):
    """Logs, some of which this node holds as forked (the hub's `forked`)."""

    def __init__(self, logs, forked) -> None:
        super().__init__(logs)
        self.held_forked = set(forked)

    def forked(self, device_ids):
        return [d for d in device_ids if d in self.held_forked]


class AsksNoForks(HeadsResource):
    """A peer from before ?forked=: its strict query parser refuses it (4.00 BAD_REQUEST)."""

    async def render_post(self, request):
        try:
            coap_query(request, Param(name="after", kind="text", size=32))
        except Exception as exc:
            return error_response(exc)
        return await super().render_post(request)


async def test_a_peer_says_whether_it_holds_a_log_as_forked_and_one_from_before_is_asked_without():
    logs = _logs(3, 2)
    forked, other, _ = sorted(logs)
    hub, edge, old = resource.Site(), resource.Site(), resource.Site()
    add_sync_resources(hub, Forks(logs, [forked]))
    add_sync_resources(edge, Logs(logs))  # a holder that cannot tell: the page does not say
    old.add_resource(["sync", "heads"], AsksNoForks(Forks(logs, [forked]), Limits()))
    served = [await _serve(site) for site in (hub, edge, old)]
    ctx = await aiocoap.Context.create_client_context()
    try:
        (_, hub_url), (_, edge_url), (_, old_url) = served
        for url, device, said in [(hub_url, forked, True), (hub_url, other, False), (edge_url, forked, None),
                                  (old_url, forked, None)]:
            report = SyncReport()
            heads = await remote_heads(ctx, url, report=report, forked=device)
            assert ({h.device_id for h in heads}, report.forked) == (set(logs), said), url
        report = SyncReport()
        await remote_heads(ctx, hub_url, report=report)  # not asked: not said
        assert report.forked is None
    finally:
        await ctx.shutdown()
        for server, _ in served:
            await server.shutdown()


class Clocks(Forks):
    """Forks, keeping the clocks the asking devices say (the hub's `device_clock`)."""

    def __init__(self, logs, forked) -> None:
        super().__init__(logs, forked)
        self.told: list[tuple[bytes, int, int | None, bool]] = []

    def device_clock(self, device_id, now, *, boot=None, proved=False):
        self.told.append((device_id, now, boot, proved))


class TakesNoTime(HeadsResource):
    """A peer from before ?now= (it knows ?forked=): its strict query parser refuses it (4.00 BAD_REQUEST)."""

    async def render_post(self, request):
        try:
            coap_query(request, Param(name="after", kind="text", size=32), device("forked"))
        except Exception as exc:
            return error_response(exc)
        return await super().render_post(request)


async def test_a_node_tells_its_time_and_one_from_before_is_asked_without_it():
    """The first heads page tells the node's time and boot (?now=, ?boot=) to a peer that keeps them, as the
    device ?forked= names (no OSCORE here: not proved); a peer from before refuses them and is asked again without
    the boot, then without the time, still told about the fork; a node that does not tell its time (one from
    before) is served as ever."""
    logs = _logs(3, 2)
    forked = sorted(logs)[0]
    keeps, before = Clocks(logs, [forked]), Clocks(logs, [forked])
    hub, old = resource.Site(), resource.Site()
    add_sync_resources(hub, keeps)
    old.add_resource(["sync", "heads"], TakesNoTime(before, Limits()))
    served = [await _serve(site) for site in (hub, old)]
    ctx = await aiocoap.Context.create_client_context()
    try:
        (_, hub_url), (_, old_url) = served
        for url, refused in [(hub_url, False), (old_url, True)]:
            report = SyncReport()
            heads = await remote_heads(ctx, url, report=report, forked=forked, now=lambda: 1_763_900_000,
                                       boot=lambda: 7)
            assert ({h.device_id for h in heads}, report.forked, report.now_refused, report.boot_refused) == (
                set(logs), True, refused, refused)
        assert (keeps.told, before.told) == ([(forked, 1_763_900_000, 7, False)], [])
        report = SyncReport()
        assert len(await remote_heads(ctx, hub_url, report=report, forked=forked)) == len(logs)
        assert (report.forked, report.now_refused, keeps.told) == (True, False, [(forked, 1_763_900_000, 7, False)])
    finally:
        await ctx.shutdown()
        for server, _ in served:
            await server.shutdown()
