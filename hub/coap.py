"""The hub's CoAP resources besides sync: the latest checkpoint, inclusion receipts and consistency proofs, and
the Merkle summary of its heads that hub-to-hub rounds compare first."""

from __future__ import annotations

import asyncio
from typing import Any

import aiocoap
import aiocoap.resource as resource
import cbor2
from aiocoap.numbers.codes import Code

from coap_server.errors import error_response
from coap_server.params import Param, coap_query, count, seq
from coap_server.security import claimed_device
from coap_server.sync import Visible
from ledger.errors import LimitExceeded
from ledger.summary import HeadsSummary, bucket_of, encode_buckets, encode_root
from ledger.sync import Head, Limits, encode_heads

from .service import Hub, NotFound

CBOR = 60


INCLUSION_QUERY = (Param(name="r", kind="hex", size=32, required=True),)
CONSISTENCY_QUERY = (seq("from", required=True), seq("to", required=True))


class CheckpointResource(resource.Resource):
    """GET: the latest signed checkpoint, as its COSE_Sign1 bytes."""

    def __init__(self, hub: Hub) -> None:
        super().__init__()
        self.hub = hub

    async def render_get(self, request: aiocoap.Message) -> aiocoap.Message:
        cp = self.hub.latest_checkpoint()
        if cp is None:
            return error_response(NotFound("no checkpoint signed yet"))
        return aiocoap.Message(code=Code.CONTENT, content_format=CBOR, payload=cp.raw)


class InclusionResource(resource.Resource):
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


class ConsistencyResource(resource.Resource):
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


class HeadsSummaryResource(resource.Resource):
    """GET: [5, root, number of logs] over the heads the asking peer may read (ledger/summary.py); ?level=1 adds
    the 256 buckets' hashes; ?b=N answers bucket N's heads as a heads message. A peer that finds the root it saw
    last time has nothing to fetch: an unchanged hub costs one small message a round, whatever it holds."""

    CACHED_PEERS = 64

    def __init__(self, hub: Hub, visible: Visible | None = None, limits: Limits = Limits()) -> None:
        super().__init__()
        self.hub, self.visible, self.limits = hub, visible, limits
        # Per asking peer: (the hub's log size, the heads shown, their summary). Any record or decision the hub
        # takes grows its log, so an unchanged size means unchanged heads.
        self._cache: dict[Any, tuple[int, list[Head], HeadsSummary]] = {}

    async def render_get(self, request: aiocoap.Message) -> aiocoap.Message:
        try:
            q = coap_query(request, *SUMMARY_QUERY)
            heads, summary = await asyncio.to_thread(self._summary, request)
            if "b" in q:
                bucket = [h for h in heads if bucket_of(h.device_id) == q["b"]]
                if len(bucket) > self.limits.max_devices:
                    raise LimitExceeded(f"bucket {q['b']} holds {len(bucket)} logs, more than one heads message "
                                        f"({self.limits.max_devices})", hint="ask for the heads a page at a time")
                payload = encode_heads(bucket)
            else:
                payload = encode_buckets(summary) if q.get("level") == 1 else encode_root(summary)
        except Exception as exc:  # typed errors answer as they declare
            return error_response(exc)
        return aiocoap.Message(code=Code.CONTENT, content_format=CBOR, payload=payload)

    def _summary(self, request: aiocoap.Message) -> tuple[list[Head], HeadsSummary]:
        who = claimed_device(request)
        size = len(self.hub.tree)
        cached = self._cache.get(who)
        if cached is not None and cached[0] == size:
            return cached[1], cached[2]
        heads = self.hub.heads()
        if self.visible is not None:
            heads = self.visible(request, heads, [])
        heads = sorted(heads, key=lambda h: h.device_id)
        summary = HeadsSummary.of(heads)
        if len(self._cache) >= self.CACHED_PEERS:
            self._cache.clear()
        self._cache[who] = (size, heads, summary)
        return heads, summary


def add_summary_resource(site: resource.Site, hub: Hub, visible: Visible | None = None) -> None:
    site.add_resource(["sync", "summary"], HeadsSummaryResource(hub, visible))


def add_proof_resources(site: resource.Site, hub: Hub) -> None:
    site.add_resource(["checkpoint"], CheckpointResource(hub))
    site.add_resource(["proofs", "inclusion"], InclusionResource(hub))
    site.add_resource(["proofs", "consistency"], ConsistencyResource(hub))
