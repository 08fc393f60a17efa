"""The hub's CoAP resources besides sync: the latest checkpoint, inclusion receipts and consistency proofs."""

from __future__ import annotations

import asyncio

import aiocoap
import aiocoap.resource as resource
import cbor2
from aiocoap.numbers.codes import Code

from coap_server.errors import error_response
from coap_server.params import Param, coap_query, seq

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


def add_proof_resources(site: resource.Site, hub: Hub) -> None:
    site.add_resource(["checkpoint"], CheckpointResource(hub))
    site.add_resource(["proofs", "inclusion"], InclusionResource(hub))
    site.add_resource(["proofs", "consistency"], ConsistencyResource(hub))
