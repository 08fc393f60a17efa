"""Pipelined sync over real CoAP on loopback: several records requests of one log in flight, taken in order."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from typing import Any

import aiocoap
import aiocoap.resource as resource
import cbor2
import pytest
from aiocoap.numbers.codes import Code

from coap_server.lanes import Lanes
from coap_server.ports import serve_coap
from coap_server.sync import HeadsResource, RangesResource, RecordsResource, sync_once
from edge.store import LmdbLogStore
from hub.app import HubHolder
from hub.verify import CrossLogVerifier, _Ahead
from ledger import LimitExceeded, verify_chain
from ledger.record import decode_record
from ledger.sync import Limits, RequestSize, encode_records
from tests.hub.conftest import enroll
from tests.ports import free_coap
from tests.sync.test_lossy import own_log
from tests.sync.test_pages import Logs, _logs
from tests.wait import wait_for

# Requests of 16 records with 4 in flight from the first one (no slow start): a 200-record log is 13 requests.
SMALL = Limits(records_per_request=16, bytes_per_request=64 * 1024)


WAIT_S = 60.0  # a receiver's wait for a range's predecessors, where a test must not run into it


def full_window() -> RequestSize:
    return RequestSize(SMALL, floor_records=16, floor_bytes=64 * 1024)


class Watched(RecordsResource):
    """The records resource, counting the POSTs it is answering at once."""

    def __init__(self, holder: Any, limits: Limits = Limits(), **kw: Any) -> None:
        super().__init__(holder, limits, **kw)
        self.active = 0
        self.peak = 0
        self.remotes: set[Any] = set()  # the endpoints (host, port) POSTs came from
        self.out_of_order = 0  # POSTs answered OUT_OF_ORDER

    async def render_post(self, request: aiocoap.Message) -> aiocoap.Message:
        self.remotes.add(request.remote.hostinfo)
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            answer = await super().render_post(request)
        finally:
            self.active -= 1
        self.out_of_order += answer.code == Code.CONFLICT
        return answer


class Gathering:
    """A store whose reads wait (up to a second) for a second read to start: requests in flight together
    are then seen together."""

    def __init__(self, store: LmdbLogStore) -> None:
        self.store = store
        self.cond = threading.Condition()
        self.active = 0
        self.peak = 0

    def heads(self) -> Any:
        return self.store.heads()

    def log_length(self, device_id: bytes) -> int:
        return self.store.log_length(device_id)

    def log_range(self, device_id: bytes, start: int, end: int) -> list[bytes]:
        with self.cond:
            self.active += 1
            self.peak = max(self.peak, self.active)
            self.cond.notify_all()
            self.cond.wait_for(lambda: self.active > 1, timeout=1.0)
        try:
            return self.store.log_range(device_id, start, end)
        finally:
            with self.cond:
                self.active -= 1

    def receive(self, device_id: bytes, raws: Sequence[bytes]) -> dict[str, Any]:
        return self.store.receive(device_id, raws)


async def serve(holder: Any, records: RecordsResource | None = None) -> tuple[aiocoap.Context, int, RecordsResource]:
    """`holder` served over CoAP on UDP and TCP (one port), with `records` as /sync/records."""
    site = resource.Site()
    site.add_resource(["sync", "heads"], HeadsResource(holder, Limits()))
    records = records or Watched(holder)
    site.add_resource(["sync", "records"], records)
    port = free_coap()
    ctx = await serve_coap(site, host="127.0.0.1", port=port, tcp=True, setting="test")
    return ctx, port, records


def url(scheme: str, port: int) -> str:
    return f"{scheme}://127.0.0.1:{port}"


@pytest.mark.parametrize("scheme", ["coap", "coap+tcp"])
async def test_pipelined_push_arrives_complete_and_verified(tmp_path, hub, clock, scheme):
    signer, builder, store = own_log(tmp_path / "edge", clock, 200)
    enroll(hub, signer, clock)
    server, port, records = await serve(HubHolder(hub))
    ctx = await aiocoap.Context.create_client_context()
    try:
        async with Lanes(ctx) as lanes:  # over UDP a request in flight on each; over TCP all on `ctx`
            report = await sync_once(ctx, url(scheme, port), store, pull=False, size=full_window(), lanes=lanes)
    finally:
        await ctx.shutdown()
        await server.shutdown()
    assert not report.problems and not report.refused
    assert (report.pushed, report.duplicates) == (200, 0)
    assert isinstance(records, Watched) and records.peak > 1, "the pusher never had two requests in flight"
    if scheme == "coap":  # each from a port of its own: one context carries one request to a peer at once
        assert len(records.remotes) > 1, records.remotes
    sent = store.log_range(builder.device_id, 0, 200)
    held = hub.store.log_range(builder.device_id, 0, 200)
    assert held == sent
    assert verify_chain(held).head == store.state(builder.device_id).head
    store.close()


@pytest.mark.parametrize("scheme", ["coap", "coap+tcp"])
async def test_pipelined_pull_of_one_long_log_arrives_complete_and_verified(tmp_path, clock, scheme):
    _, a_builder, a_store = own_log(tmp_path / "a", clock, 200)
    _, _, c_store = own_log(tmp_path / "c", clock, 1)
    served = Gathering(a_store)
    server, port, _ = await serve(served)
    ctx = await aiocoap.Context.create_client_context()
    try:
        async with Lanes(ctx) as lanes:
            report = await sync_once(ctx, url(scheme, port), c_store, push=False, size=full_window(), lanes=lanes)
    finally:
        await ctx.shutdown()
        await server.shutdown()
    assert not report.problems
    assert report.fetched == 200
    assert served.peak > 1, "the puller never had two requests in flight"
    assert c_store.log_range(a_builder.device_id, 0, 200) == a_store.log_range(a_builder.device_id, 0, 200)
    assert c_store.state(a_builder.device_id) == a_store.state(a_builder.device_id)
    a_store.close()
    c_store.close()


async def _post(ctx: aiocoap.Context, uri: str, body: bytes) -> aiocoap.Message:
    return await ctx.request(aiocoap.Message(code=Code.POST, uri=uri, payload=body, content_format=60)).response


class Counting(HubHolder):
    """The hub as a sync peer, noting the first seq and size of each offer it merges."""

    def __init__(self, hub: Any) -> None:
        super().__init__(hub)
        self.offers: list[tuple[int, int]] = []

    def receive(self, device_id: bytes, raws: Sequence[bytes], **kw: Any) -> dict[str, Any]:
        self.offers.append((decode_record(raws[0]).seq, len(raws)))
        return super().receive(device_id, raws, **kw)


async def test_ranges_that_arrive_before_their_predecessor_wait_and_are_taken_in_order(tmp_path, hub, clock):
    signer, builder, store = own_log(tmp_path / "edge", clock, 30)
    enroll(hub, signer, clock)
    raws = store.log_range(builder.device_id, 0, 30)
    holder = Counting(hub)
    server, port, records = await serve(holder)
    ctx = await aiocoap.Context.create_client_context()
    uri = f"{url('coap+tcp', port)}/sync/records"
    try:
        later = [asyncio.ensure_future(_post(ctx, uri, encode_records(builder.device_id, s, raws[s:s + 10])))
                 for s in (20, 10)]
        await wait_for(lambda: (o := records._orders.get(builder.device_id)) is not None and o.waiting == 2,
                       what="the later ranges waiting for the first")
        assert hub.store.chain_state(builder.device_id) is None  # nothing of them taken yet
        first = await _post(ctx, uri, encode_records(builder.device_id, 0, raws[:10]))
        answers = [first, *[await f for f in later]]
    finally:
        await ctx.shutdown()
        await server.shutdown()
    assert [a.code for a in answers] == [Code.CHANGED] * 3
    assert [cbor2.loads(a.payload)["accepted"] for a in answers] == [10, 10, 10]
    assert hub.store.log_range(builder.device_id, 0, 30) == raws
    assert holder.offers == [(0, 30)]  # the ranges that waited in a row went into one merge, one commit
    store.close()


async def test_a_range_whose_predecessor_never_comes_is_refused_out_of_order(tmp_path, hub, clock):
    signer, builder, store = own_log(tmp_path / "edge", clock, 20)
    enroll(hub, signer, clock)
    raws = store.log_range(builder.device_id, 0, 20)
    server, port, _ = await serve(HubHolder(hub), Watched(HubHolder(hub), order_wait=0.3))
    ctx = await aiocoap.Context.create_client_context()
    try:
        answer = await _post(ctx, f"{url('coap+tcp', port)}/sync/records",
                             encode_records(builder.device_id, 10, raws[10:]))
    finally:
        await ctx.shutdown()
        await server.shutdown()
    assert answer.code == Code.CONFLICT
    assert cbor2.loads(answer.payload)["code"] == "OUT_OF_ORDER"
    assert hub.store.chain_state(builder.device_id) is None
    store.close()


async def test_ranges_that_no_pusher_could_have_sent_in_order_are_answered_at_once(tmp_path, hub, clock):
    """Only a range that opens with its own log's record at its start, within a pusher's window of the log's
    length, waits for its turn; junk, an empty range or one far ahead is answered at once (here the wait would
    be an hour), so nobody can hold a receiver's waiting places with made-up starts."""
    signer, builder, store = own_log(tmp_path / "edge", clock, 80)
    enroll(hub, signer, clock)
    raws = store.log_range(builder.device_id, 0, 80)
    holder = HubHolder(hub)
    server, port, _ = await serve(holder, RecordsResource(holder, Limits(records_per_request=4), order_wait=3600))
    ctx = await aiocoap.Context.create_client_context()
    uri = f"{url('coap+tcp', port)}/sync/records"
    try:
        async with asyncio.timeout(300):
            far = await _post(ctx, uri, encode_records(builder.device_id, 70, raws[70:74]))  # reach: 16 x 4
            junk = await _post(ctx, uri, encode_records(builder.device_id, 3, [b"\xa0" * 40]))
            empty = await _post(ctx, uri, encode_records(builder.device_id, 5, []))
            other = await _post(ctx, uri, encode_records(builder.device_id, 6, raws[7:9]))  # seq 7 at start 6
    finally:
        await ctx.shutdown()
        await server.shutdown()
    assert (far.code, cbor2.loads(far.payload)["code"]) == (Code.CONFLICT, "OUT_OF_ORDER")

    def refusal(answer: aiocoap.Message) -> str:
        body = cbor2.loads(answer.payload)
        return body["code"] if not answer.code.is_successful() else (body["problem"] or {}).get("code", "")

    assert refusal(junk) == "MALFORMED" and refusal(other) == "BROKEN_CHAIN"
    assert empty.code == Code.CHANGED and cbor2.loads(empty.payload)["accepted"] == 0
    assert hub.store.chain_state(builder.device_id) is None
    store.close()


class Forging:
    """An edge store whose copy of one record has a broken signature (the pusher sends it as it is)."""

    def __init__(self, store: LmdbLogStore, forged_seq: int) -> None:
        self.store, self.forged_seq = store, forged_seq

    def heads(self) -> Any:
        return self.store.heads()

    def log_range(self, device_id: bytes, start: int, end: int) -> list[bytes]:
        raws = self.store.log_range(device_id, start, end)
        if start <= self.forged_seq < start + len(raws):
            i = self.forged_seq - start
            raws[i] = raws[i][:-1] + bytes([raws[i][-1] ^ 1])
        return raws

    def receive(self, device_id: bytes, raws: Sequence[bytes]) -> dict[str, Any]:
        raise AssertionError("only pushes here")


async def test_a_forged_record_in_the_middle_of_a_window_stops_it_and_nothing_after_is_stored(tmp_path, hub, clock):
    signer, builder, store = own_log(tmp_path / "edge", clock, 200)
    enroll(hub, signer, clock)
    holder = HubHolder(hub)
    server, port, records = await serve(holder, Watched(holder, order_wait=WAIT_S))
    ctx = await aiocoap.Context.create_client_context()
    try:
        # Requests [0,16) [16,32) [32,48) [48,64) go out together; seq 40 is in the third.
        began = time.monotonic()
        report = await sync_once(ctx, url("coap+tcp", port), Forging(store, 40), pull=False, size=full_window())
        took = time.monotonic() - began
    finally:
        await ctx.shutdown()
        await server.shutdown()
    assert took < WAIT_S, f"the ranges behind the refusal were answered after {took:.1f} s: they waited it out"
    assert report.pushed == 40
    assert len(report.problems) == 1 and "INVALID_SIGNATURE" in report.problems[0], report.problems
    assert not report.refused  # the OUT_OF_ORDER answers behind it are not reported again
    assert hub.store.chain_state(builder.device_id).length == 40
    assert hub.store.log_range(builder.device_id, 40, 200) == []
    assert isinstance(records, Watched) and records.peak > 1
    store.close()


class Pooled(CrossLogVerifier):
    """Counts the pushed ranges whose signatures went to the worker processes."""

    pooled = 0

    def pushed(self, device_id: bytes, raws: Sequence[bytes], key: bytes) -> Any:
        check = super().pushed(device_id, raws, key)
        self.pooled += isinstance(check, _Ahead)
        return check


async def test_a_forged_record_pushed_while_worker_processes_check_signatures_stops_the_log_there(tmp_path, hub,
                                                                                                  clock):
    """The hub's pushed ranges checked on worker processes (hub/verify.py:CrossLogVerifier): the same answers as
    checked on the receiving thread, the good prefix stored and nothing past the forgery."""
    signer, builder, store = own_log(tmp_path / "edge", clock, 600)
    enroll(hub, signer, clock)
    verifier = Pooled(workers=2)
    holder = HubHolder(hub, verifier=verifier)
    server, port, records = await serve(holder, Watched(holder, order_wait=WAIT_S))
    ctx = await aiocoap.Context.create_client_context()
    wide = Limits(records_per_request=100)
    try:
        report = await sync_once(ctx, url("coap+tcp", port), Forging(store, 450), pull=False,
                                 size=RequestSize(wide, floor_records=100, floor_bytes=wide.bytes_per_request))
    finally:
        await ctx.shutdown()
        await server.shutdown()
        verifier.close()
    assert verifier.pooled > 1  # ranges went to the workers
    assert report.pushed == 450
    assert len(report.problems) == 1 and "INVALID_SIGNATURE" in report.problems[0], report.problems
    assert hub.store.chain_state(builder.device_id).length == 450
    assert hub.store.log_range(builder.device_id, 450, 600) == []
    verify_chain(hub.store.log_range(builder.device_id, 0, 450))
    assert isinstance(records, Watched) and records.peak > 1
    store.close()


async def test_a_range_forged_at_the_head_of_someone_elses_log_costs_its_pusher_one_retry(tmp_path, hub, clock):
    """Anyone who may push can send a range that opens with another device's record at its log's head, with a
    broken signature. It is refused, and for a while the ranges of that log past the head are answered
    OUT_OF_ORDER at once. A range at the head is never refused for it: the pusher's own is taken, lifts the
    mark (ranges behind wait for their turn again), and the pusher sending again from the head loses nothing."""
    signer, builder, store = own_log(tmp_path / "edge", clock, 100)
    enroll(hub, signer, clock)
    device = builder.device_id
    raws = store.log_range(device, 0, 100)
    holder = HubHolder(hub)
    server, port, records = await serve(holder, Watched(holder, order_wait=WAIT_S))
    ctx = await aiocoap.Context.create_client_context()
    uri = f"{url('coap+tcp', port)}/sync/records"
    try:
        first = await _post(ctx, uri, encode_records(device, 0, raws[:32]))
        forged = await _post(ctx, uri, encode_records(device, 32, [raws[32][:-1] + bytes([raws[32][-1] ^ 1])]))
        began = time.monotonic()
        behind = await _post(ctx, uri, encode_records(device, 48, raws[48:64]))  # came before its predecessor
        took = time.monotonic() - began
        head = await _post(ctx, uri, encode_records(device, 32, raws[32:48]))
        # The mark is lifted: a range past the head waits for its predecessor again.
        later = asyncio.ensure_future(_post(ctx, uri, encode_records(device, 64, raws[64:80])))
        await wait_for(lambda: (o := records._orders.get(device)) is not None and o.waiting == 1,
                       what="the range after the head waiting for its predecessor")
        resent = await _post(ctx, uri, encode_records(device, 48, raws[48:64]))
        waited = await later
        report = await sync_once(ctx, url("coap+tcp", port), store, pull=False, size=full_window())
    finally:
        await ctx.shutdown()
        await server.shutdown()
    assert cbor2.loads(first.payload)["accepted"] == 32
    assert cbor2.loads(forged.payload)["problem"]["code"] == "INVALID_SIGNATURE"
    assert (behind.code, cbor2.loads(behind.payload)["code"]) == (Code.CONFLICT, "OUT_OF_ORDER")
    assert "the log holds 32 records" in cbor2.loads(behind.payload)["message"]
    assert took < WAIT_S
    assert [(a.code, cbor2.loads(a.payload)["accepted"]) for a in (head, resent, waited)] == [(Code.CHANGED, 16)] * 3
    assert (report.pushed, report.problems, report.refused) == (20, [], [])
    assert hub.store.log_range(device, 0, 100) == raws
    store.close()


class Refusing(HubHolder):
    """The hub as a sync peer, refusing (as a full store would) any offer that holds record `seq`."""

    def __init__(self, hub: Any, seq: int) -> None:
        super().__init__(hub)
        self.seq = seq

    def receive(self, device_id: bytes, raws: Sequence[bytes], **kw: Any) -> dict[str, Any]:
        if decode_record(raws[0]).seq <= self.seq < decode_record(raws[0]).seq + len(raws):
            raise LimitExceeded("the store takes no more of this log")
        return super().receive(device_id, raws, **kw)


async def test_a_refused_request_in_the_middle_of_a_window_stops_the_rest_cleanly(tmp_path, hub, clock):
    signer, builder, store = own_log(tmp_path / "edge", clock, 200)
    enroll(hub, signer, clock)
    holder = Refusing(hub, 32)
    server, port, records = await serve(holder, Watched(holder, order_wait=WAIT_S))
    ctx = await aiocoap.Context.create_client_context()
    try:
        began = time.monotonic()
        report = await sync_once(ctx, url("coap+tcp", port), store, pull=False, size=full_window())
        took = time.monotonic() - began
    finally:
        await ctx.shutdown()
        await server.shutdown()
    # The ranges behind the refused one are answered OUT_OF_ORDER when it is refused, not when their wait ends.
    assert isinstance(records, Watched) and records.out_of_order >= 1
    assert took < WAIT_S, f"the ranges behind the refusal were answered after {took:.1f} s: they waited it out"
    # The refused offer may hold ranges before 32 that waited and were taken along: they are refused with it.
    held = hub.store.chain_state(builder.device_id).length
    assert held <= 32 and held % 16 == 0
    assert report.pushed == held  # every stored record counted once, none that was not stored
    assert [e.code for e in report.refused] == ["LIMIT_EXCEEDED"]
    assert len(report.problems) == 1
    store.close()


class Unordered:
    """A receiver from before ranges were taken in order (no `log_length`): ranges are taken as they reach
    its threads, and here the first range of the first window waits until a later one was taken."""

    def __init__(self, store: LmdbLogStore) -> None:
        self.store = store
        self.later = threading.Event()
        self.taken: list[int] = []

    def heads(self) -> Any:
        return self.store.heads()

    def log_range(self, device_id: bytes, start: int, end: int) -> list[bytes]:
        return self.store.log_range(device_id, start, end)

    def receive(self, device_id: bytes, raws: Sequence[bytes]) -> dict[str, Any]:
        first = decode_record(raws[0]).seq
        if first == 0:
            self.later.wait(timeout=10)
        result = self.store.receive(device_id, raws)
        self.taken.append(first)
        if first > 0:
            self.later.set()
        return result


@pytest.mark.parametrize("scheme", ["coap", "coap+tcp"])
async def test_a_receiver_that_takes_ranges_out_of_order_gets_the_rest_one_at_a_time(tmp_path, clock, scheme):
    _, a_builder, a_store = own_log(tmp_path / "a", clock, 200)
    _, _, b_store = own_log(tmp_path / "b", clock, 1)
    old = Unordered(b_store)
    server, port, _ = await serve(old, RecordsResource(old, Limits()))
    ctx = await aiocoap.Context.create_client_context()
    size = full_window()
    try:
        async with Lanes(ctx) as lanes:
            report = await sync_once(ctx, url(scheme, port), a_store, pull=False, size=size, lanes=lanes)
    finally:
        await ctx.shutdown()
        await server.shutdown()
    assert old.taken[0] > 0, "the old receiver took the first range first; the test did not reorder"
    assert not report.problems and not report.refused
    assert report.pushed == 200  # each record counted once, though some ranges were sent twice
    assert size.window == 1
    assert b_store.state(a_builder.device_id) == a_store.state(a_builder.device_id)
    a_store.close()
    b_store.close()


async def test_a_serial_pusher_still_works_against_an_ordering_receiver(tmp_path, hub, clock):
    signer, builder, store = own_log(tmp_path / "edge", clock, 200)
    enroll(hub, signer, clock)
    server, port, records = await serve(HubHolder(hub))
    ctx = await aiocoap.Context.create_client_context()
    size = RequestSize(SMALL, floor_records=16, floor_bytes=64 * 1024, window=1)  # one request at a time
    try:
        report = await sync_once(ctx, url("coap+tcp", port), store, pull=False, size=size)
    finally:
        await ctx.shutdown()
        await server.shutdown()
    assert (report.pushed, report.problems) == (200, [])
    assert isinstance(records, Watched) and records.peak == 1
    assert hub.store.chain_state(builder.device_id).head == store.state(builder.device_id).head
    store.close()


class Meeting(RangesResource):
    """The ranges resource, holding each answer (up to a second) until a second request is in: requests in
    flight together are then seen together."""

    def __init__(self, holder: Any) -> None:
        super().__init__(holder, Limits())
        self.active = 0
        self.peak = 0
        self.requests = 0
        self.met = asyncio.Event()

    async def render_post(self, request: aiocoap.Message) -> aiocoap.Message:
        self.requests += 1
        self.active += 1
        self.peak = max(self.peak, self.active)
        if self.active > 1:
            self.met.set()
        try:
            try:
                async with asyncio.timeout(1.0):
                    await self.met.wait()
            except TimeoutError:
                pass
            return await super().render_post(request)
        finally:
            self.active -= 1


async def _pull_on_lanes(scheme: str, served: Logs, ranges: resource.Resource, mine: Logs) -> Any:
    """One pull by `mine` on lanes from a server of `served`'s logs whose many-log ranges `ranges` answers."""
    site = resource.Site()
    site.add_resource(["sync", "heads"], HeadsResource(served, Limits()))
    site.add_resource(["sync", "records"], RecordsResource(served, Limits()))
    site.add_resource(["sync", "ranges"], ranges)
    port = free_coap()
    server = await serve_coap(site, host="127.0.0.1", port=port, tcp=True, setting="test")
    ctx = await aiocoap.Context.create_client_context()
    try:
        async with Lanes(ctx) as lanes:
            return await sync_once(ctx, url(scheme, port), mine, push=False, size=full_window(), lanes=lanes)
    finally:
        await ctx.shutdown()
        await server.shutdown()


@pytest.mark.parametrize("scheme", ["coap", "coap+tcp"])
async def test_a_pull_of_many_logs_keeps_several_ranges_requests_in_flight(scheme):
    logs = _logs(40, 3)  # 120 records, 16 a request: 6 logs each (the sixth cut short), 7 requests
    served = Logs(logs)
    ranges = Meeting(served)
    mine = Logs()
    report = await _pull_on_lanes(scheme, served, ranges, mine)
    assert not report.problems and report.fetched == 120
    assert ranges.requests == 7 and ranges.peak > 1, "the puller never had two ranges requests in flight"
    assert {d: [r.raw for r in rs] for d, rs in mine.logs.items()} == {d: [r.raw for r in rs] for d, rs in logs.items()}


ANSWERS = 7  # 40 logs of 3 records, 16 records a request
AHEAD_WAIT_S = 10.0


class AheadLogs(Logs):
    """A holder that verifies many logs at once: each answer's ranges are checked ahead (`check_ahead`) before
    they are merged (`receive_many`). Merging an answer holds until the next answer has been checked ahead (up
    to AHEAD_WAIT_S): the puller must not leave the checks of one answer waiting for the merge of the one
    before."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[tuple[str, int]] = []
        self.checked = threading.Condition()

    def check_ahead(self, items):
        with self.checked:
            self.events.append(("checked", len(items)))
            self.checked.notify_all()
        return [("ahead", device_id) for device_id, _ in items]

    def receive_many(self, items, checks=None):
        assert checks == [("ahead", device_id) for device_id, _ in items], "merged without its checks"
        with self.checked:
            mine = sum(1 for event, _ in self.events if event == "merged")
            self.checked.wait_for(lambda: self.count("checked") in (mine + 2, ANSWERS), timeout=AHEAD_WAIT_S)
            self.events.append(("merged", len(items)))
        return [self.receive(device_id, raws) for device_id, raws in items]

    def count(self, event: str) -> int:
        return sum(1 for e, _ in self.events if e == event)


@pytest.mark.parametrize("scheme", ["coap", "coap+tcp"])
async def test_a_pull_checks_the_next_answer_ahead_while_it_merges_the_one_before(scheme):
    logs = _logs(40, 3)
    served = Logs(logs)
    mine = AheadLogs()
    report = await _pull_on_lanes(scheme, served, RangesResource(served, Limits()), mine)
    assert not report.problems and report.fetched == 120
    order = [event for event, _ in mine.events]
    assert order.count("checked") == order.count("merged") == ANSWERS
    for n in range(ANSWERS - 1):  # answer n is merged only after answer n + 1 was checked ahead
        merged_at = [i for i, e in enumerate(order) if e == "merged"][n]
        assert [i for i, e in enumerate(order) if e == "checked"][n + 1] < merged_at, order
    assert {d: [r.raw for r in rs] for d, rs in mine.logs.items()} == {d: [r.raw for r in rs] for d, rs in logs.items()}
