"""The edge's sync agent: push to the hub, replicate peers, on discovery, on new records and on an interval."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiocoap

from coap_server.errors import describe_failure
from coap_server.lanes import Lanes
from coap_server.sync import LogHolder, SyncReport, sync_once
from ledger import LimitExceeded
from ledger.sync import Backoff, Limits, RequestSize

log = logging.getLogger("jejak.edge.sync")


class ReplicaHolder(LogHolder, Protocol):
    """A LogHolder whose `receive` also takes the device's revocation point (see `edge.security`)."""

    def receive(self, device_id: bytes, raws: Sequence[bytes], *,
                revoked_from: int | None = None) -> dict[str, Any]: ...
    def log_length(self, device_id: bytes) -> int: ...


class ReplicaQuota:
    """The store as sync sees it, with a ceiling on how much of each peer's log this edge keeps.

    A full replica is refused with LIMIT_EXCEEDED (and the prefix that fits is kept), so one chatty or hostile
    peer cannot fill the SD card that also holds this device's own log.
    """

    def __init__(self, store: Any, *, max_records: int, own: bytes | None) -> None:
        self.store = store
        self.max_records = max_records
        self.own = own

    def heads(self) -> Any:
        return self.store.heads()

    def log_range(self, device_id: bytes, start: int, end: int) -> list[bytes]:
        return self.store.log_range(device_id, start, end)

    def log_length(self, device_id: bytes) -> int:
        return self.store.log_length(device_id)

    def receive(self, device_id: bytes, raws: Sequence[bytes], *, revoked_from: int | None = None) -> dict[str, Any]:
        # The quota is one more input of the store's acceptance: the verified prefix that fits is kept.
        quota = None if device_id == self.own else self.max_records
        result: dict[str, Any] = self.store.receive(device_id, raws, revoked_from=revoked_from, max_length=quota)
        problem = result.get("problem")
        if quota is not None and problem and problem.startswith(LimitExceeded.code):
            result["problem"] = f"{problem}; raise [sync] replica_records to keep more of {device_id.hex()}"
        return result


@dataclass(slots=True)
class Target:
    """A node this edge syncs with, and how that has gone."""

    url: str
    role: str  # "hub" or "edge"
    backoff: Backoff
    size: RequestSize  # how much one records request to it carries: follows the link across rounds
    next_try: float = 0.0
    last_ok: float | None = None
    last_error: str | None = None
    pushed: int = 0
    fetched: int = 0
    problems: list[str] = field(default_factory=list)
    refusing: set[str] = field(default_factory=set)  # codes it refuses us with, each logged once until it stops

    def to_json(self) -> dict[str, Any]:
        return {"url": self.url, "role": self.role, "last_ok": self.last_ok, "last_error": self.last_error,
                "pushed": self.pushed, "fetched": self.fetched, "failures": self.backoff.failures,
                "request_records": self.size.records, "request_bytes": self.size.bytes,
                "problems": self.problems[-5:]}


# What the operator of an edge does when its hub refuses it, by the hub's code (docs/ERRORS.md).
REFUSAL_FIXES = {
    "UNKNOWN_DEVICE": "enroll this edge with the hub's QR text: jejak enroll request 'jejak-enroll:?hub=...' "
                      "--config <edge.toml>; then the hub's operator approves it: jejak devices approve <device id>",
    "DEVICE_BLOCKED": "the hub holds this device's records until its operator acts: jejak devices approve "
                      "<device id> (pending), or jejak devices resolve-fork <device id> (forked)",
    "REVOKED_KEY": "this device's key was revoked at the hub; enroll a new key",
    "OSCORE_REQUIRED": "the hub serves only OSCORE-protected sync: enroll with --data-dir so the edge pins the "
                       "hub and sets up OSCORE",
}


class SyncAgent:
    """Runs anti-entropy rounds with the hub (push: the edge initiates, so NAT is no obstacle) and with peers
    (push and pull, so each keeps verified replicas of the others). Idempotent: a round can always be re-run."""

    def __init__(self, holder: LogHolder, *, hubs: Sequence[str] = (), peers: Sequence[str] = (),
                 interval: float = 30.0, limits: Limits = Limits(), blocked: Callable[[], frozenset[bytes]] | None = None,
                 rng: random.Random | None = None, monotonic: Callable[[], float] = time.monotonic,
                 request_timeout: float = 30.0) -> None:
        self.holder = holder
        self.interval = interval
        self.limits = limits
        self.request_timeout = request_timeout
        self.blocked = blocked or frozenset
        self.rng = rng or random.Random()
        self.monotonic = monotonic
        self.targets: dict[str, Target] = {}
        self.started = time.time()
        self._wake = asyncio.Event()
        self.rounds = 0
        for url in hubs:
            self.add(url, "hub")
        for url in peers:
            self.add(url, "edge")

    def add(self, url: str, role: str) -> None:
        if url not in self.targets:
            self.targets[url] = Target(url=url, role=role, backoff=Backoff(base=0.5, cap=60.0, rng=self.rng),
                                       size=RequestSize(self.limits, timeout=self.request_timeout))
        self.targets[url].next_try = 0.0
        self.trigger()

    def remove(self, url: str) -> None:
        self.targets.pop(url, None)

    def trigger(self) -> None:
        """Ask for a round soon: a peer appeared, or a new record was stored."""
        self._wake.set()

    async def round(self, ctx: aiocoap.Context, lanes: Lanes | None = None) -> dict[str, SyncReport]:
        """One pass over every target whose back-off allows it; hubs first. With `lanes` opened beside `ctx`,
        several records requests to a target over UDP are in flight at once (coap_server/lanes.py)."""
        reports: dict[str, SyncReport] = {}
        now = self.monotonic()
        for target in sorted(self.targets.values(), key=lambda t: t.role != "hub"):
            if target.next_try > now:
                continue
            try:
                report = await sync_once(ctx, target.url, self.holder, limits=self.limits,
                                         push=True, pull=target.role != "hub", blocked=self.blocked(),
                                         size=target.size, lanes=lanes)
            except Exception as exc:  # unreachable or refusing: back off, keep the others going
                delay = target.backoff.failed()
                target.next_try = now + delay
                target.last_error = describe_failure(exc)
                log.info("sync with %s failed (%s); next try in %.1fs, with up to %d records a request",
                         target.url, target.last_error, delay, target.size.records)
                continue
            target.backoff.succeeded()
            target.last_ok = time.time()
            target.last_error = None
            target.pushed += report.pushed
            target.fetched += report.fetched
            target.problems += report.problems
            self._log_refusals(target, report)
            reports[target.url] = report
        self.rounds += 1
        return reports

    def _log_refusals(self, target: Target, report: SyncReport) -> None:
        """Say once per cause why a node refuses this edge's records, with the fix; say again only after it
        stopped refusing and started again (an edge that pushes for hours in silence is what this prevents)."""
        codes = {exc.code for exc in report.refused}
        if report.refused:  # the round ran, but what it carried was refused: `edge status` says so too
            target.last_error = "; ".join(sorted({f"{exc.code}: {exc.message}" for exc in report.refused}))
        for exc in report.refused:
            if exc.code in target.refusing:
                continue
            target.refusing.add(exc.code)
            fix = REFUSAL_FIXES.get(exc.code) or exc.hint or "see docs/ERRORS.md for this code"
            log.warning("%s %s refuses this device's records: %s: %s; fix: %s", target.role, target.url, exc.code,
                        exc.message, fix, extra={"fields": {"peer": target.url, "code": exc.code, "fix": fix}})
        for code in target.refusing - codes:
            if codes:  # still refused, for the other cause the warning above names (pending after enrollment)
                log.info("%s %s no longer refuses this device's records with %s", target.role, target.url, code)
            else:
                log.info("%s %s accepts this device's records again (was %s)", target.role, target.url, code)
        target.refusing &= codes

    async def run(self) -> None:
        ctx = await aiocoap.Context.create_client_context()
        lanes = Lanes(ctx)
        requests = 0
        try:
            await lanes.open()
            while True:
                self._wake.clear()
                await self.round(ctx, lanes)
                requests += 1
                if requests >= 2000:  # aiocoap runs out of message ids at 65,536 per context
                    # The new ones first: a cancel meanwhile leaves the finally below live contexts to shut.
                    old, old_lanes = ctx, lanes
                    ctx = await aiocoap.Context.create_client_context()
                    lanes = Lanes(ctx)
                    await lanes.open()
                    await old_lanes.close()
                    await old.shutdown()
                    requests = 0
                pending = [t.next_try - self.monotonic() for t in self.targets.values()]
                wait = min([self.interval] + [p for p in pending if p > 0])
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for drops a cancel that lands as the event
                # is set, and the daemon's close then waits for this loop forever.
                try:
                    async with asyncio.timeout(max(wait, 0.05)):
                        await self._wake.wait()
                except TimeoutError:
                    continue
                await asyncio.sleep(0.05)  # gather a burst of new records into one round
        finally:
            await lanes.close()
            await ctx.shutdown()

    def hub_unreached_s(self, now: float) -> float | None:
        """Seconds since any hub last took a round (or since the agent started, if none ever did); None when
        this edge knows no hub, so a standalone edge is never called offline."""
        hubs = [t for t in self.targets.values() if t.role == "hub"]
        if not hubs:
            return None
        last = max((t.last_ok for t in hubs if t.last_ok is not None), default=self.started)
        return max(0.0, now - last)

    def status(self) -> list[dict[str, Any]]:
        return [t.to_json() for t in self.targets.values()]
