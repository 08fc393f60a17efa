"""Hub tiers: a national hub pulls regional hubs' logs with the same sync protocol and verifies them again."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import aiocoap

from coap_server.sync import SyncReport, sync_once
from ledger import LedgerError, decode_record
from ledger.acceptance import SignatureCheck
from ledger.sync import Head, RequestSize

from .service import Hub, NotEnrolled
from .store import DeviceInfo
from .verify import CrossLogVerifier

log = logging.getLogger("jejak.tiers")


class UpstreamHolder:
    """The national hub as seen by a pull from one regional hub.

    Logs are self-certifying (the genesis record names the key the device id derives from), so a device first
    seen through a regional hub is registered from its genesis; every record is still verified here.
    """

    def __init__(self, hub: Hub, upstream: str, verifier: CrossLogVerifier | None = None) -> None:
        self.hub = hub
        self.upstream = upstream
        self.verifier = verifier

    def heads(self) -> list[Head]:
        return self.hub.heads()

    def log_range(self, device_id: bytes, start: int, end: int) -> list[bytes]:
        return self.hub.store.log_range(device_id, start, end)

    def receive_many(self, items: Sequence[tuple[bytes, Sequence[bytes]]]) -> list[dict[str, Any]]:
        """Many logs' ranges of one pull request: their signatures checked on every core first (when the hub
        has a CrossLogVerifier), then each log merged in order by the hub's one writer."""
        check = None
        if self.verifier is not None:
            decoded = []
            for device_id, raws in items:
                try:
                    decoded.append((device_id, [decode_record(raw) for raw in raws]))
                except LedgerError:
                    continue  # refused with its code by receive below
            keys = {device_id: state.key for device_id, _ in decoded
                    if (state := self.hub.store.chain_state(device_id)) is not None}
            check = self.verifier.ahead(decoded, keys)
        return [self.receive(device_id, raws, check=check) for device_id, raws in items]

    def receive(self, device_id: bytes, raws: Sequence[bytes], *,
                check: SignatureCheck | None = None) -> dict[str, Any]:
        if self.hub.store.get_device(device_id) is None and raws:
            try:
                genesis = decode_record(raws[0])
            except LedgerError as exc:
                return {"accepted": 0, "duplicates": 0, "length": 0, "problem": exc.to_dict()}
            if genesis.seq != 0 or genesis.kind != "key" or genesis.body is None:
                refusal = NotEnrolled("first record of a new log must be genesis")
                return {"accepted": 0, "duplicates": 0, "length": 0, "problem": refusal.to_dict()}
            self.hub.store.put_device(DeviceInfo(
                device_id=device_id, pubkey=genesis.body["pubkey"], site=f"via {self.upstream}", role="relayed",
                status="active", enrolled_at=self.hub.clock(), name=""))
            # The relay's own decision, signed into its log like any approval: a bundle it exports verifies.
            self.hub.approve(device_id)
        try:
            return self.hub.ingest(device_id, raws, check=check).to_json()
        except LedgerError as exc:
            return {"accepted": 0, "duplicates": 0, "length": 0, "problem": exc.to_dict()}


async def pull_once(hub: Hub, upstream: str, ctx: aiocoap.Context, size: RequestSize | None = None,
                    verifier: CrossLogVerifier | None = None) -> SyncReport:
    """One pull round from `upstream`; pass the same `size` every round so requests follow that link."""
    return await sync_once(ctx, upstream, UpstreamHolder(hub, upstream, verifier), push=False, pull=True,
                           size=size)


async def pull_all(hub: Hub, upstreams: Sequence[str], ctx: aiocoap.Context, sizes: dict[str, RequestSize],
                   verifier: CrossLogVerifier | None = None) -> dict[str, SyncReport | Exception]:
    """One pull round from every upstream at once: the regions' links and verification overlap, and a slow or
    unreachable region holds up none of the others."""

    async def one(upstream: str) -> SyncReport | Exception:
        try:
            report = await pull_once(hub, upstream, ctx, sizes.setdefault(upstream, RequestSize()), verifier)
        except Exception as exc:  # an unreachable region must not stop the others
            log.warning("pull from %s failed: %s", upstream, exc)
            return exc
        if report.fetched or report.problems:
            log.info("pulled %d records from %s; problems: %s", report.fetched, upstream, report.problems)
        return report

    results = await asyncio.gather(*(one(upstream) for upstream in upstreams))
    return dict(zip(upstreams, results, strict=True))


async def pull_loop(hub: Hub, upstreams: Sequence[str], interval: float,
                    contexts: dict[str, Any] | None = None) -> None:
    """Pull every upstream each `interval`; `contexts` (url -> OSCORE context) protects the pulls from the
    regional hubs whose keys the config names, like every other hub link."""
    ctx = await aiocoap.Context.create_client_context()
    for url, security in (contexts or {}).items():
        ctx.client_credentials[f"{url}/*"] = security
    upstreams = [entry.partition(" ")[0] for entry in upstreams]
    sizes = {upstream: RequestSize() for upstream in upstreams}
    verifier = CrossLogVerifier()
    try:
        while True:
            await pull_all(hub, upstreams, ctx, sizes, verifier)
            await asyncio.sleep(interval)
    finally:
        verifier.close()
        await ctx.shutdown()
