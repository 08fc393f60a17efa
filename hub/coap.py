"""The hub's CoAP resources besides sync: the latest checkpoint, inclusion receipts and consistency proofs, and
the Merkle summary of its heads that hub-to-hub rounds compare first."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import aiocoap
import aiocoap.resource as resource
import cbor2
from aiocoap.numbers.codes import Code

from coap_server import blocks
from coap_server.errors import error_response
from coap_server.params import Param, coap_query, count, seq
from coap_server.security import claimed_device
from coap_server.sync import Visible
from ledger.errors import LimitExceeded
from ledger.follow import encode_witness_answer
from ledger.summary import HeadsSummary, bucket_of, encode_buckets, encode_root
from ledger.sync import Head, Limits, encode_heads

from .service import Hub, NotFound

CBOR = 60


INCLUSION_QUERY = (Param(name="r", kind="hex", size=32, required=True),)
CONSISTENCY_QUERY = (seq("from", required=True), seq("to", required=True))


class CheckpointResource(blocks.Resource):
    """GET: the latest signed checkpoint, as its COSE_Sign1 bytes. POST <the checkpoint of this hub the asking
    edge holds, or nothing>: [the checkpoint to hold from now on, consistency proof from the presented one]
    (FORMAT.md §10.2); a presented checkpoint the hub's log does not hold stops its signing (HUB_STORE_OLDER)."""

    def __init__(self, hub: Hub) -> None:
        super().__init__()
        self.hub = hub

    async def render_get(self, request: aiocoap.Message) -> aiocoap.Message:
        cp = self.hub.latest_checkpoint()
        if cp is None:
            return error_response(NotFound("no checkpoint signed yet"))
        return aiocoap.Message(code=Code.CONTENT, content_format=CBOR, payload=cp.raw)

    async def render_post(self, request: aiocoap.Message) -> aiocoap.Message:
        try:
            cp, proof = await asyncio.to_thread(self.hub.witness, bytes(request.payload))
        except Exception as exc:  # typed errors answer as they declare
            return error_response(exc)
        return aiocoap.Message(code=Code.CONTENT, content_format=CBOR, payload=encode_witness_answer(cp, proof))


class InclusionResource(blocks.Resource):
    """GET ?r=<record id hex>: a COSE Receipt that the record is in the log under the latest checkpoint."""

    def __init__(self, hub: Hub) -> None:
        super().__init__()
        self.hub = hub

    async def render_get(self, request: aiocoap.Message) -> aiocoap.Message:
        try:
            record_id = coap_query(request, *INCLUSION_QUERY)["r"]
            _, receipt = await asyncio.to_thread(self.hub.receipt, record_id)
        except Exception as exc:  # typed errors answer as they declare
            return error_response(exc)
        return aiocoap.Message(code=Code.CONTENT, content_format=CBOR, payload=receipt)


class ConsistencyResource(blocks.Resource):
    """GET ?from=M&to=N: the RFC 9162 consistency proof between tree sizes M and N, as a CBOR array."""

    def __init__(self, hub: Hub) -> None:
        super().__init__()
        self.hub = hub

    async def render_get(self, request: aiocoap.Message) -> aiocoap.Message:
        try:
            q = coap_query(request, *CONSISTENCY_QUERY)
            first, second = q["from"], q["to"]
            proof = await asyncio.to_thread(self.hub.consistency, first, second)
        except Exception as exc:  # typed errors answer as they declare
            return error_response(exc)
        return aiocoap.Message(code=Code.CONTENT, content_format=CBOR, payload=cbor2.dumps([first, second, proof]))


SUMMARY_QUERY = (count("level", 1), count("b", 255))


@dataclass(slots=True)
class _Shown:
    """The heads summary shown to one peer, as of one state of the hub's log."""

    size: int  # the hub's log size when it was taken
    damaged: int  # records awaiting restore then (a damaged record moves a head back without growing the log)
    buckets: dict[int, list[Head]]
    summary: HeadsSummary


class HeadsSummaryResource(blocks.Resource):
    """GET: [5, root, number of logs] over the heads the asking peer may read (ledger/summary.py); ?level=1 adds
    the 256 buckets' hashes; ?b=N answers bucket N's heads as a heads message. A peer that finds the root it saw
    last time has nothing to fetch: an unchanged hub costs one small message a round, whatever it holds."""

    CACHED_PEERS = 64
    INCREMENTAL_MAX = 100_000  # log entries read to find the buckets that changed; past this, every log is read
    PAGE = 512

    def __init__(self, hub: Hub, visible: Visible | None = None, limits: Limits = Limits()) -> None:
        super().__init__()
        self.hub, self.visible, self.limits = hub, visible, limits
        # Per asking peer. Every record and decision grows the hub's log, so the entries since the last summary
        # name the logs that moved, and only their buckets are read again.
        self._shown: dict[Any, _Shown] = {}

    async def render_get(self, request: aiocoap.Message) -> aiocoap.Message:
        try:
            q = coap_query(request, *SUMMARY_QUERY)
            shown = await asyncio.to_thread(self._summary, request)
            if "b" in q:
                bucket = shown.buckets.get(q["b"], [])
                if len(bucket) > self.limits.max_devices:
                    raise LimitExceeded(f"bucket {q['b']} holds {len(bucket)} logs, more than one heads message "
                                        f"({self.limits.max_devices})", hint="ask for the heads a page at a time")
                payload = encode_heads(bucket)
            else:
                payload = encode_buckets(shown.summary) if q.get("level") == 1 else encode_root(shown.summary)
        except Exception as exc:  # typed errors answer as they declare
            return error_response(exc)
        return aiocoap.Message(code=Code.CONTENT, content_format=CBOR, payload=payload)

    def _summary(self, request: aiocoap.Message) -> _Shown:
        who = claimed_device(request)
        size, damaged = len(self.hub.tree), len(self.hub.store.damaged())
        shown = self._shown.get(who)
        if shown is not None and (shown.size, shown.damaged) == (size, damaged):
            return shown
        if shown is not None and shown.damaged == damaged and 0 < size - shown.size <= self.INCREMENTAL_MAX:
            entries = self.hub.store.entries(shown.size, size)
            if len(entries) == size - shown.size:  # else a damaged record cut the read short: read everything
                buckets = dict(shown.buckets)
                for b in {bucket_of(e.device_id) for e in entries}:
                    heads = self._visible(request, self._bucket(b))
                    if heads:
                        buckets[b] = heads
                    else:
                        buckets.pop(b, None)
                return self._keep(who, _Shown(size=size, damaged=damaged, buckets=buckets,
                                              summary=HeadsSummary.of_buckets(buckets)))
        grouped: dict[int, list[Head]] = {}
        for h in sorted(self._visible(request, self.hub.heads()), key=lambda h: h.device_id):
            grouped.setdefault(bucket_of(h.device_id), []).append(h)
        return self._keep(who, _Shown(size=size, damaged=damaged, buckets=grouped,
                                      summary=HeadsSummary.of_buckets(grouped)))

    def _visible(self, request: aiocoap.Message, heads: list[Head]) -> list[Head]:
        return heads if self.visible is None else self.visible(request, heads, [])

    def _bucket(self, b: int) -> list[Head]:
        """The heads of the logs whose device id starts with byte `b`, read a page at a time."""
        after = (bytes([b - 1]) + b"\xff" * 15) if b else b""
        out: list[Head] = []
        while True:
            page, more = self.hub.heads_page(after, self.PAGE)
            out += [h for h in page if bucket_of(h.device_id) == b]
            if more is None or bucket_of(more) != b:
                return out
            after = more

    def _keep(self, who: Any, shown: _Shown) -> _Shown:
        if len(self._shown) >= self.CACHED_PEERS and who not in self._shown:
            self._shown.clear()
        self._shown[who] = shown
        return shown


def add_summary_resource(site: resource.Site, hub: Hub, visible: Visible | None = None) -> None:
    site.add_resource(["sync", "summary"], HeadsSummaryResource(hub, visible))


def add_proof_resources(site: resource.Site, hub: Hub) -> None:
    site.add_resource(["checkpoint"], CheckpointResource(hub))
    site.add_resource(["proofs", "inclusion"], InclusionResource(hub))
    site.add_resource(["proofs", "consistency"], ConsistencyResource(hub))
