"""The edge's sync agent: push to the hub, replicate peers, on discovery, on new records and on an interval; at
start, the own log's head confirmed with the hub (and the records it holds past it fetched) before a record is
signed."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiocoap

from coap_server.errors import describe_failure
from coap_server.lanes import Lanes
from coap_server.security import no_context
from coap_server.sync import (
    REFUSAL_MEMORY_S,
    REMEMBERED,
    LogHolder,
    SyncFailed,
    SyncReport,
    get_records,
    push_refusals,
    remote_heads,
    sync_once,
)
from ledger import ForkDetected, LimitExceeded, SyncError, decode_record
from ledger.sync import Backoff, Limits, RequestSize

from .store import ReplicaRoom

log = logging.getLogger("jejak.edge.sync")


class ReplicaHolder(LogHolder, Protocol):
    """A LogHolder whose `receive` also takes the device's revocation point (see `edge.security`)."""

    def receive(self, device_id: bytes, raws: Sequence[bytes], *,
                revoked_from: int | None = None) -> dict[str, Any]: ...
    def log_length(self, device_id: bytes) -> int: ...


# Other devices' logs an edge keeps, by default ([limits] replica_logs and replica_bytes in the config).
REPLICA_LOGS = 512
REPLICA_BYTES = 256 << 20
VOUCHED_SHARE = 4  # 1/this of the logs and bytes is kept for devices vouched for: unknown ones take the rest
REPLICA_REFUSALS_SAID = 1024  # (target, log, code) refusals of other devices' logs already logged, per target


class ReplicaQuota:
    """The store as sync sees it, with a ceiling on how much of other devices' logs this edge keeps.

    A full replica is refused with LIMIT_EXCEEDED (and the prefix that fits is kept), so one chatty or hostile
    peer cannot fill the SD card that also holds this device's own log. Since a device id costs nothing (a fresh
    key signs a valid log of its own), the replicas together are bounded too: at most `max_logs` logs and
    `max_bytes` bytes of their records (and at most half the store's map). A new log past them, or more records
    once the bytes are held, is refused LIMIT_EXCEEDED with nothing of it stored; nothing held is dropped.
    Devices in `vouched` (the peers this edge was told of, or any a hub took) may use all of it; others only
    what leaves 1/VOUCHED_SHARE of it free for them. The own log is never bounded here.
    """

    def __init__(self, store: Any, *, max_records: int, own: bytes | None, max_logs: int = REPLICA_LOGS,
                 max_bytes: int = REPLICA_BYTES, vouched: Iterable[bytes] = ()) -> None:
        self.store = store
        self.max_records = max_records
        self.own = own
        self.max_logs = max_logs
        map_size = getattr(store, "map_size", None)
        self.max_bytes = min(max_bytes, map_size // 2) if isinstance(map_size, int) else max_bytes
        self.vouched: set[bytes] = set(vouched)

    def heads(self) -> Any:
        return self.store.heads()

    def log_range(self, device_id: bytes, start: int, end: int) -> list[bytes]:
        return self.store.log_range(device_id, start, end)

    def log_length(self, device_id: bytes) -> int:
        return self.store.log_length(device_id)

    def vouch(self, device_id: bytes) -> None:
        """Count `device_id` among the devices vouched for: its log may use the share kept for them."""
        self.vouched.add(device_id)

    def room(self, device_id: bytes) -> ReplicaRoom:
        """What the replicas may hold when more of `device_id`'s log comes in."""
        if device_id in self.vouched:
            return ReplicaRoom(logs=self.max_logs, bytes=self.max_bytes)
        return ReplicaRoom(logs=self.max_logs - self.max_logs // VOUCHED_SHARE,
                           bytes=self.max_bytes - self.max_bytes // VOUCHED_SHARE)

    def receive(self, device_id: bytes, raws: Sequence[bytes], *, revoked_from: int | None = None) -> dict[str, Any]:
        # The quotas are more inputs of the store's acceptance: the verified prefix that fits is kept.
        if device_id == self.own:
            return dict(self.store.receive(device_id, raws, revoked_from=revoked_from))
        result: dict[str, Any] = self.store.receive(device_id, raws, revoked_from=revoked_from,
                                                    max_length=self.max_records, room=self.room(device_id))
        problem = result.get("problem")
        if problem and problem.startswith(LimitExceeded.code) and "[limits] replica_" not in problem:
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
    # (device, code) of the other devices' logs it refused, each logged once (the oldest forgotten first)
    refused_logs: dict[tuple[bytes, str], None] = field(default_factory=dict)
    asks_forked: bool = True  # a hub is asked whether it holds this device as forked, until one does not say
    tells_time: bool = True  # a hub is told this device's time (it measures the clock), until one refuses it
    tells_boot: bool = True  # and its boot count, until one refuses that
    tells_steps: bool = True  # and where its clock stepped in that boot, until one refuses that

    def to_json(self) -> dict[str, Any]:
        return {"url": self.url, "role": self.role, "last_ok": self.last_ok, "last_error": self.last_error,
                "pushed": self.pushed, "fetched": self.fetched, "failures": self.backoff.failures,
                "request_records": self.size.records, "request_bytes": self.size.bytes,
                "problems": self.problems[-5:]}


@dataclass(frozen=True, slots=True, kw_only=True)
class HeadCheck:
    """What a node (the hub, or a neighbour holding a copy) said of this device's own log when asked at start, and
    what was done about it.

    outcome: "current" (the node's last record is the local head), "caught_up" (the node held `fetched` more, now
    in the store), "hub_behind" (the node holds fewer, and its last record is this log's at that seq: sync pushes
    the rest), "conflict" (the node holds another record at a seq this store holds: the log is forked already),
    "unknown_to_hub" (the node does not serve this device's log: not enrolled, pending or blocked) or, for a
    neighbour only, "refused" (the records it offered did not verify here: none was kept)."""

    source: str  # the node's coap:// address
    outcome: str
    local: int  # records of the own log held before
    length: int  # records of the own log held after
    fetched: int = 0
    detail: str = ""
    role: str = "hub"  # or "edge": a neighbour

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "role": self.role, "outcome": self.outcome, "local": self.local,
                "length": self.length, "fetched": self.fetched, "detail": self.detail}


# The hub's codes for "this device's log is not served to it": go on as if no hub had answered.
NOT_SERVED = frozenset({"UNKNOWN_DEVICE", "NOT_AUTHORIZED", "DEVICE_BLOCKED", "REVOKED_KEY"})
CONFIRMED = frozenset({"current", "caught_up", "hub_behind"})  # a hub's outcomes that confirm the head


async def ask_head(ctx: aiocoap.Context, base: str, holder: ReplicaHolder, device_id: bytes, *,
                   limits: Limits = Limits(), timeout: float = 30.0, role: str = "hub"
                   ) -> tuple[HeadCheck, list[bytes]]:
    """Ask the node at `base` (a hub, or a neighbour: `role` "edge") for this device's log from the local head's
    seq on: one request, whose answer's first record is the node's copy of the local head (its id is compared)
    and any more are records the store lacks (an old copy of it). A node that holds fewer is asked for its heads,
    and its last record compared with this log's at that seq. Returns the outcome and those first records past
    the head ("behind" when there are some; `fetch_past_head` takes them in). Raises what the requests raise
    (unreachable, or SyncFailed with the node's code)."""
    local = await asyncio.to_thread(holder.log_length, device_id)
    at = max(local - 1, 0)
    raws = await get_records(ctx, base, device_id, at, at + limits.records_per_request, limits=limits,
                             timeout=timeout)
    if local:
        if not raws:
            return await _behind(ctx, base, holder, device_id, local, limits, role), []
        mine = (await asyncio.to_thread(holder.log_range, device_id, at, local))[0]
        if raws[0] != mine:
            return HeadCheck(source=base, role=role, outcome="conflict", local=local, length=local,
                             detail=f"the {role} holds another record at seq {at}, the head held here"), []
        raws = raws[1:]
    outcome = "behind" if raws else "current"
    return HeadCheck(source=base, role=role, outcome=outcome, local=local, length=local), raws


async def _behind(ctx: aiocoap.Context, base: str, holder: ReplicaHolder, device_id: bytes, local: int,
                  limits: Limits, role: str) -> HeadCheck:
    """The outcome with a node that holds fewer records than the `local` held here: "hub_behind" when its last
    one is this log's at that seq, "conflict" when it is another (records signed here on an old copy of the
    store, offline, while the node held the ones made after the copy: the next push forks the log)."""
    theirs = next((h for h in await remote_heads(ctx, base, limits) if h.device_id == device_id), None)
    length = theirs.length if theirs is not None else 0
    if theirs is not None and length:
        if length >= local:
            raise SyncError(f"{base} says it holds {length} records of {device_id.hex()} but served none from "
                            f"seq {local - 1}")
        mine = (await asyncio.to_thread(holder.log_range, device_id, length - 1, length))[0]
        if decode_record(mine).id != theirs.head:
            return HeadCheck(source=base, role=role, outcome="conflict", local=local, length=local,
                             detail=f"the {role} holds {length} records and another one at seq {length - 1} than "
                                    "this store: records signed here on an old copy of it fork the log")
    return HeadCheck(source=base, role=role, outcome="hub_behind", local=local, length=local,
                     detail=f"the {role} holds {length} of the {local} records held here")


async def fetch_past_head(ctx: aiocoap.Context, check: HeadCheck, holder: ReplicaHolder, device_id: bytes,
                          raws: list[bytes], *, limits: Limits = Limits(), timeout: float = 30.0) -> HeadCheck:
    """Take in the records the node holds past the local head, from the first ones `ask_head` got, a request at
    a time until the node has no more; `holder` verifies each range against the stored log (signatures and
    links: ledger's acceptance, as a restore's). A range the store refuses raises SyncFailed with its code (the
    verified records before the refused one are kept)."""
    length = check.local
    fetched = 0
    while raws:
        got = await asyncio.to_thread(holder.receive, device_id, raws)
        fetched += got["accepted"]
        if got.get("problem"):
            problem = str(got["problem"])
            raise SyncFailed(problem.partition(":")[0], f"the records of this device the {check.role} "
                                                        f"{check.source} holds from seq {got['length']} were "
                                                        f"refused here: {problem}")
        length = got["length"]
        raws = await get_records(ctx, check.source, device_id, length, length + limits.records_per_request,
                                 limits=limits, timeout=timeout)
    return HeadCheck(source=check.source, role=check.role, outcome="caught_up", local=check.local, length=length,
                     fetched=fetched)


def _refused(exc: BaseException) -> bool:
    """Whether a request failed because the node's host refused it (ICMP port unreachable: up, but nothing
    listens), not for want of a route or an answer, which a network still coming up gives too."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ConnectionRefusedError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


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


# Announcements prove nothing and cost nothing to make (SECURITY.md): what they add to an agent's targets is bounded.
MAX_ANNOUNCED_PEERS = 32  # peer targets added from announcements ([sync] peers come on top)
MAX_ANNOUNCED_HUBS = 4  # hub ids taken from announcements, with no hub pinned; a pinned hub admits only its id
MAX_HUB_CANDIDATES = 8  # addresses kept per announced hub id, one of them the target at a time
# The share of a round the peers may take after the hubs: a peer that never answers costs at most this, and a record
# stored meanwhile goes to the hub at the next round.
PEER_ROUND_BUDGET_S = 10.0


class SyncAgent:
    """Runs anti-entropy rounds with the hub (push: the edge initiates, so NAT is no obstacle) and with peers
    (push and pull, so each keeps verified replicas of the others). Idempotent: a round can always be re-run."""

    def __init__(self, holder: LogHolder, *, hubs: Sequence[str] = (), peers: Sequence[str] = (),
                 interval: float = 30.0, limits: Limits = Limits(), blocked: Callable[[], frozenset[bytes]] | None = None,
                 rng: random.Random | None = None, monotonic: Callable[[], float] = time.monotonic,
                 request_timeout: float = 30.0, own: bytes | None = None,
                 wall: Callable[[], int] | None = None, boot: Callable[[], int] | None = None,
                 steps: Callable[[], Sequence[tuple[int, int]]] | None = None) -> None:
        self.holder = holder
        self.wall = wall or (lambda: int(time.time()))  # the clock this device's records are signed with
        self.boot = boot  # the boot count this device's records are signed with
        self.steps = steps  # where that clock stepped in this boot: (first seq after, seconds)
        # This device, whose head a hub confirms before its first new record is signed (`ask_head`): the daemon
        # holds its commits until `head_settled` is set, or for as long as it waits for the hub.
        self.own = own
        self.head: HeadCheck | None = None  # the hub's answer
        self.head_settled = asyncio.Event()
        # Set with head_settled, or when every hub asked refused the connection (its host up, nothing listening)
        # and every neighbour asked has answered: a wait for an answer that cannot come only delays the taps, and
        # their records' times with them. The daemon sets it once it signs: neighbours are asked only before.
        self.head_decided = asyncio.Event()
        # Nodes that said they hold more of the own log than the store, while their records come: signing now
        # forks the log. A hub stays here until it sends them; a neighbour only while it does.
        self._behind: set[str] = set()
        self._moved = asyncio.Event()  # set when `_behind` shrinks
        self.neighbours: dict[str, HeadCheck] = {}  # what each neighbour asked said, or why its records were refused
        self._distrusted: set[str] = set()  # neighbours whose records did not verify: not asked again
        # Neighbours found (mDNS) once records were signed, while no hub has confirmed the head: each is asked once.
        self._late: set[str] = set()
        self.forked: str | None = None  # why this device's log is known forked (a hub holds another record)
        self._forked_by: str | None = None  # the hub whose answer said so
        self._not_resolved: tuple[str, int] | None = None  # (hub, log length) whose head was found another branch
        self.head_error: str | None = None
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
        self._hub_of: dict[str, str] = {}  # announced hub target url -> the hub id it announced
        self._hub_urls: dict[str, dict[str, None]] = {}  # announced hub id -> its addresses, the most recent last
        self._peer_urls: set[str] = set()  # peer targets added from announcements
        self.peers_refused = 0  # announced peers not added: MAX_ANNOUNCED_PEERS were targets already
        self.peer_round_budget = PEER_ROUND_BUDGET_S
        for url in hubs:
            self.add(url, "hub")
        for url in peers:
            self.add(url, "edge")

    def add(self, url: str, role: str, *, device: str | None = None) -> None:
        """Sync with `url` from the next round. `device`: the id a node announced over mDNS, which proves nothing
        (SECURITY.md): announced nodes get at most one hub target per hub id, none where a [hub] address is
        configured, and at most MAX_ANNOUNCED_PEERS peer targets, so announcing more slows nothing down."""
        if device is not None and not self._announced(url, role, device):
            return
        if url not in self.targets:
            if role == "edge" and self.own is not None and self.head_decided.is_set() \
                    and not self.head_settled.is_set():
                self._late.add(url)
            self.targets[url] = Target(url=url, role=role, backoff=Backoff(base=0.5, cap=60.0, rng=self.rng),
                                       size=RequestSize(self.limits, timeout=self.request_timeout))
        self.targets[url].next_try = 0.0
        self.trigger()

    def _announced(self, url: str, role: str, device: str) -> bool:
        """Whether an announced node becomes (or stays) a target; a hub's announcement may replace its id's target."""
        if role != "hub":
            if url not in self.targets and url not in self._hub_of \
                    and sum(1 for u in self._peer_urls if u in self.targets) >= MAX_ANNOUNCED_PEERS:
                self.peers_refused += 1
                if self.peers_refused == 1:
                    log.warning("%d peers announced over mDNS are sync targets already, at most %d: %s and any "
                                "more announced are not (say a peer in [sync] peers to sync with it whatever is "
                                "announced)", MAX_ANNOUNCED_PEERS, MAX_ANNOUNCED_PEERS, url)
                return False
            if url not in self.targets:
                self._peer_urls.add(url)
            return True
        if any(t.role == "hub" and t.url not in self._hub_of for t in self.targets.values()):
            return False  # the [hub] address configured is the hub's; an announcement adds no second one
        if device not in self._hub_urls and len(self._hub_urls) >= MAX_ANNOUNCED_HUBS:
            return False  # no hub is pinned (else `admit` refused another id): a few hubs, not one per announcement
        candidates = self._hub_urls.setdefault(device, {})
        candidates.pop(url, None)
        candidates[url] = None  # the most recent last
        while len(candidates) > MAX_HUB_CANDIDATES:  # the oldest goes, unless it is the target now
            oldest = next(u for u in candidates if u not in self.targets or u == url)
            del candidates[oldest]
        current = next((u for u, d in self._hub_of.items() if d == device and u in self.targets), None)
        if current == url:
            return True
        if current is not None and self._answering(self.targets[current]):
            return False  # the one that last answered is kept: an announcement cannot take the hub's place
        if current is not None:
            self._drop(current)
        self._hub_of[url] = device
        return True

    @staticmethod
    def _answering(target: Target) -> bool:
        return target.last_ok is not None and target.backoff.failures == 0

    def _drop(self, url: str) -> None:
        self.targets.pop(url, None)
        self._late.discard(url)
        self._hub_of.pop(url, None)
        self._peer_urls.discard(url)

    def _next_hub(self, target: Target) -> None:
        """An announced hub target that failed gives its place to the most recent other address announced with
        its id, if any (the failed one goes last in line): one hub target per id, tried one at a time."""
        device = self._hub_of.get(target.url)
        candidates = self._hub_urls.get(device or "", {})
        if device is None or len(candidates) < 2:
            return
        candidates.pop(target.url, None)
        nxt = next(reversed(candidates))
        self._hub_urls[device] = {target.url: None, **candidates}
        self._drop(target.url)
        self._hub_of[nxt] = device
        self.targets[nxt] = Target(url=nxt, role="hub", backoff=target.backoff,
                                   size=RequestSize(self.limits, timeout=self.request_timeout),
                                   next_try=target.next_try)

    def remove(self, url: str) -> None:
        device = self._hub_of.get(url)
        for candidates in self._hub_urls.values():  # an address announced with a hub id is gone from the LAN
            candidates.pop(url, None)
        self._drop(url)
        if device is not None and url not in self.targets:
            rest = list(self._hub_urls.get(device, {}))
            if rest and not any(d == device for d in self._hub_of.values()):
                self._hub_of[rest[-1]] = device  # another address announced with the hub's id takes its place
                self.add(rest[-1], "hub")

    def trigger(self) -> None:
        """Ask for a round soon: a peer appeared, or a new record was stored."""
        self._wake.set()

    async def round(self, ctx: aiocoap.Context, lanes: Lanes | None = None) -> dict[str, SyncReport]:
        """One pass over every target whose back-off allows it; hubs first. With `lanes` opened beside `ctx`,
        several records requests to a target over UDP are in flight at once (coap_server/lanes.py)."""
        reports: dict[str, SyncReport] = {}
        now = self.monotonic()
        loop = asyncio.get_running_loop()
        peers_until: float | None = None  # the peers share PEER_ROUND_BUDGET_S after the hubs (`peer_round_budget`)
        # Hubs first; then the peers that waited longest, so those a budget left out go first the round after.
        for target in sorted(self.targets.values(), key=lambda t: (t.role != "hub", t.next_try)):
            if target.next_try > now or self.targets.get(target.url) is not target:
                continue
            if target.role != "hub":
                if peers_until is None:
                    peers_until = loop.time() + self.peer_round_budget
                if loop.time() >= peers_until:  # the rest wait for the next round, which begins with the hubs
                    break
            ask = target.role == "hub" and target.asks_forked and self.own is not None
            tell = target.role == "hub" and target.tells_time and self.own is not None
            budget = asyncio.timeout(None if peers_until is None else max(peers_until - loop.time(), 0.01))
            try:
                async with budget:
                    report = await sync_once(ctx, target.url, self.holder, limits=self.limits,
                                             push=True, pull=target.role != "hub", blocked=self.blocked(),
                                             size=target.size, lanes=lanes, own=self.own, ask_forked=ask,
                                             now=self.wall if tell else None,
                                             boot=self.boot if tell and target.tells_boot else None,
                                             steps=self.steps if tell and target.tells_boot and target.tells_steps
                                             else None)
            except Exception as exc:  # unreachable, refusing or past the budget: back off, keep the others going
                if budget.expired() and self._answering(target):
                    log.info("sync with %s stopped after the round's %.0f s for peers; it goes on next round",
                             target.url, self.peer_round_budget)
                    break  # a peer that answers, with much to sync: not a failure, first again next round
                if await self.recover(target, exc):
                    target.next_try = now
                    continue
                delay = target.backoff.failed()
                target.next_try = now + delay
                target.last_error = describe_failure(exc)
                log.info("sync with %s failed (%s); next try in %.1fs, with up to %d records a request",
                         target.url, target.last_error, delay, target.size.records)
                if target.role == "hub":
                    self._next_hub(target)
                continue
            target.backoff.succeeded()
            if ask and report.forked is None:  # a hub from before it could say: not asked again
                target.asks_forked = False
            if report.now_refused:  # a hub from before it measured device clocks: not told again
                target.tells_time = False
            if report.boot_refused:  # a hub from before it took the boot with the time
                target.tells_boot = False
            if report.steps_refused:  # a hub from before it took the clock's steps with the boot
                target.tells_steps = False
            if target.role == "hub" and self.own is not None:
                self._pushed(target, report)
                if (self.forked is not None and self._forked_by == target.url and report.forked is False
                        and not report.stopped.get(self.own)):
                    await self._resolved(ctx, target)
            target.last_ok = time.time()
            target.last_error = None
            target.pushed += report.pushed
            target.fetched += report.fetched
            target.problems += report.problems
            self._log_refusals(target, report)
            reports[target.url] = report
        self.rounds += 1
        return reports

    def reachable(self, target: Target) -> bool:
        """Whether requests to `target` may go out (SecureSyncAgent: only where OSCORE protects them)."""
        return True

    def protect(self, ctx: aiocoap.Context) -> None:
        """Set up `ctx` for this agent's targets before requests go out (SecureSyncAgent: OSCORE contexts)."""

    @property
    def _store(self) -> ReplicaHolder:
        return self.holder  # type: ignore[return-value]  # the edge's store, as sync sees it

    @property
    def head_stale(self) -> bool:
        """A node said it holds more of the own log than the store and its records are not all in: signing forks."""
        return bool(self._behind)

    async def fetched(self) -> None:
        """Return once no node that said it holds more of the own log than the store is still to send it."""
        while self._behind:
            self._moved.clear()
            await self._moved.wait()

    async def confirm_head(self, ctx: aiocoap.Context, lanes: Lanes | None = None) -> HeadCheck | None:
        """Until a hub has answered, ask each hub whose back-off allows it for this device's log past the local
        head and fetch what it holds past it (`ask_head`, `fetch_past_head`), on the sync's own client context,
        so over the OSCORE context a hub that requires it expects. A hub that does not answer is asked again
        before each round. Until records are signed, the neighbours are asked the same at once (a hub whose
        uplink is down answers only after the request's timeout): one that holds a longer copy sends the rest,
        verified the same way, but only a hub's answer confirms the head. A neighbour found after that (mDNS), while
        no hub has confirmed the head, is asked once the same way. Each node is asked on a lane of its own
        (`lanes`, opened beside `ctx`; without them one at a time): a UDP socket that one node's host refused
        fails the next request sent on it, whatever node it goes to."""
        if self.own is None or self.head_settled.is_set():
            return self.head
        now = self.monotonic()
        self.protect(ctx)
        hubs = [t for t in self.targets.values() if t.role == "hub" and t.next_try <= now and self.reachable(t)]
        if self.head_decided.is_set():  # signing: only a neighbour found since is asked, once
            neighbours = [t for url in sorted(self._late) if (t := self.targets.get(url)) is not None
                          and url not in self._distrusted and self.reachable(t)]
            self._late.clear()
        else:
            neighbours = [t for t in self.targets.values() if t.role == "edge" and t.url not in self._distrusted
                          and t.next_try <= now and self.reachable(t)]
        lanes = lanes or Lanes(ctx, width=1)
        asking = [asyncio.create_task(self._ask_neighbour(lanes, t)) for t in neighbours]
        try:
            check, refused = await self._ask_hubs(lanes, hubs)
        except BaseException:
            for task in asking:
                task.cancel()
            await asyncio.gather(*asking, return_exceptions=True)
            raise
        # The hub's answer is taken once the neighbours' records are in: it releases the held commits.
        await asyncio.gather(*asking)
        if check is not None:
            self._head_answered(check)
            return check
        if hubs and refused == len(hubs) and not self._behind:
            self.head_decided.set()
        return None

    async def _ask_hubs(self, lanes: Lanes, hubs: list[Target]) -> tuple[HeadCheck | None, int]:
        """The first hub's answer, and how many refused the connection."""
        refused = 0
        for target in hubs:
            for first in (True, False):  # asked again once, when `recover` mended what failed
                try:
                    async with lanes.lane() as ctx:
                        return await self._ask_head(ctx, target), refused
                except Exception as exc:  # unreachable: the round after this backs off, and the next one asks again
                    if first and await self.recover(target, exc):
                        continue
                    self._head_failed(target, exc)
                    refused += _refused(exc)
                    break
        return None, refused

    async def _take_copy(self, ctx: aiocoap.Context, target: Target) -> HeadCheck:
        """Ask `target` (a hub or a neighbour) for this device's log past the local head and fetch what it holds
        past it (`ask_head`, `fetch_past_head`); while those records come, it is in `_behind`."""
        assert self.own is not None
        holder = self._store
        check, past = await ask_head(ctx, target.url, holder, self.own, limits=self.limits,
                                     timeout=self.request_timeout, role=target.role)
        if past:
            self._behind.add(target.url)  # signing now would fork: the daemon holds taps until these are in
            log.info("%s %s holds more of this device's own log than this store (%d records): fetching the rest "
                     "before a new record is signed", "hub" if target.role == "hub" else "neighbour", target.url,
                     check.local)
            check = await fetch_past_head(ctx, check, holder, self.own, past, limits=self.limits,
                                          timeout=self.request_timeout)
        return check

    async def _ask_head(self, ctx: aiocoap.Context, target: Target) -> HeadCheck:
        assert self.own is not None
        try:
            return await self._take_copy(ctx, target)
        except SyncFailed as exc:
            if exc.code not in NOT_SERVED:
                raise
            detail = f"{exc.code}: {exc.message}"
        except Exception as exc:
            if not no_context(exc):
                raise
            detail = "the hub holds no OSCORE context for this device (pending, unknown or revoked)"
        local = await asyncio.to_thread(self._store.log_length, self.own)
        return HeadCheck(source=target.url, outcome="unknown_to_hub", local=local, length=local, detail=detail)

    async def _ask_neighbour(self, lanes: Lanes, target: Target) -> None:
        async with lanes.lane() as ctx:
            await self._ask_copy(ctx, target)  # takes every failure but a cancel
        # Its records are in, or it stopped sending them. A cancel (the daemon stops) leaves it in `_behind`: a
        # copy half fetched still forbids signing what waits (the daemon's close refuses it).
        if target.url in self._behind:
            self._behind.discard(target.url)
            self._moved.set()

    async def _ask_copy(self, ctx: aiocoap.Context, target: Target) -> None:
        """Ask a neighbour as a hub is asked (`ask_head`, `fetch_past_head`: the same verification), and keep what
        it said. A neighbour that does not answer, or serves no copy, is passed over; one whose records do not
        verify here is named in the log and not asked again."""
        assert self.own is not None
        local = await asyncio.to_thread(self._store.log_length, self.own)
        try:
            check = await self._take_copy(ctx, target)
        except SyncFailed as exc:
            if exc.code in NOT_SERVED:
                log.info("neighbour %s serves no copy of this device's own log (%s)", target.url, exc)
                return
            before, local = local, await asyncio.to_thread(self._store.log_length, self.own)
            self.neighbours[target.url] = HeadCheck(source=target.url, role="edge", outcome="refused",
                                                    local=before, length=local, detail=f"{exc.code}: {exc.message}")
            if target.url in self._behind:  # it sent records, and they failed verification here
                self._distrusted.add(target.url)
                log.warning("neighbour %s offered records of this device's own log that are refused here (%s: %s); "
                            "the store keeps %d records and this neighbour is not asked again", target.url, exc.code,
                            exc.message, local, extra={"fields": {"peer": target.url, "code": exc.code}})
            else:
                log.info("neighbour %s did not confirm this device's head (%s)", target.url, exc)
            return
        except Exception as exc:  # unreachable: asked again before the next round, while records wait
            log.info("neighbour %s did not answer for this device's head (%s)", target.url, describe_failure(exc))
            return
        self.neighbours[target.url] = check
        if check.outcome == "caught_up":
            log.warning("this store held %d records of this device's own log and the neighbour %s holds %d: the %d "
                        "missing ones are fetched and verified, and new records follow them (the store was an old "
                        "copy); the hub is still to confirm the head", check.local, check.source, check.length,
                        check.fetched, extra={"fields": {"head_check": check.to_json()}})
        elif check.outcome == "conflict":  # its word only (the record is not verified here): the hub's decides
            log.warning("neighbour %s says it holds another record of this device than this store (%s): if this "
                        "device signed it, the log is forked already; the hub's answer says", target.url,
                        check.detail, extra={"fields": {"head_check": check.to_json()}})

    async def recover(self, target: Target, exc: BaseException) -> bool:
        """Mend what made a request to `target` fail, if this agent can; True to try again at once
        (SecureSyncAgent: an OSCORE sequence number restored from an old copy, a hub that lost its context)."""
        return False

    def _head_failed(self, target: Target, exc: BaseException) -> None:
        self.head_error = f"{target.url}: {describe_failure(exc)}"
        log.info("hub %s did not confirm this device's head (%s)", target.url, describe_failure(exc))

    def _head_answered(self, check: HeadCheck) -> None:
        self.head, self.head_error = check, None
        self._behind.clear()
        self._moved.set()
        self.head_settled.set()
        self.head_decided.set()
        fields = {"fields": {"head_check": check.to_json()}}
        if check.outcome == "caught_up":
            log.warning("this store held %d records of this device's own log and the hub %s holds %d: the %d "
                        "missing ones are fetched and verified, and new records follow the hub's head (the store "
                        "was an old copy)", check.local, check.source, check.length, check.fetched, extra=fields)
        elif check.outcome == "conflict":
            self._fork_found(check)
        else:
            log.info("head of this device's own log (%d records) checked with hub %s: %s", check.length,
                     check.source, check.outcome, extra=fields)

    def _fork_found(self, check: HeadCheck) -> None:
        self.forked, self._forked_by = f"{check.source}: {check.detail}", check.source
        log.error("hub %s holds another record of this device than this store: the log is forked already (%s); fix: "
                  "the hub's operator looks at GET /api/forks and runs jejak devices resolve-fork %s", check.source,
                  check.detail, self.own.hex() if self.own else "", extra={"fields": {"head_check": check.to_json()}})

    def _pushed(self, target: Target, report: SyncReport) -> None:
        """A hub that refuses this device's own records as a fork says its head is not this store's: once
        confirmed, a hub that holds them back (DEVICE_BLOCKED) says so too (it served the log: not pending). A hub
        that says it holds this device as forked does too, also when it kept this copy's records (nothing to push):
        two copies of the card signed at one seq, and the device's identity is forked at the hub."""
        assert self.own is not None
        code = report.stopped.get(self.own)
        confirmed = self.head is not None and self.head.outcome in CONFIRMED
        if self.forked is None and report.forked and code is None:
            self.forked = f"{target.url}: holds fork evidence against this device (forked at the hub)"
            self._forked_by = target.url
            log.error("hub %s holds fork evidence against this device: another copy of this card (a cloned or restored "
                      "SD card) signed other records at seqs this log holds, and the hub holds this device's records "
                      "back; fix: stop the other copy; the hub's operator looks at GET /api/forks and runs jejak "
                      "devices resolve-fork %s", target.url, self.own.hex(),
                      extra={"fields": {"peer": target.url, "code": "forked"}})
            return
        if self.forked is None and (code == ForkDetected.code or (code == "DEVICE_BLOCKED" and confirmed)):
            self.forked, self._forked_by = f"{target.url}: refused this device's records ({code})", target.url
            log.error("hub %s refuses this device's records as a fork (%s): another copy of this store signed "
                      "other records at the same seqs; fix: the hub's operator looks at GET /api/forks and runs "
                      "jejak devices resolve-fork %s", target.url, code, self.own.hex(),
                      extra={"fields": {"peer": target.url, "code": code}})

    async def _resolved(self, ctx: aiocoap.Context, target: Target) -> None:
        """The hub that said this device's log is forked no longer holds it as forked and took this round's push:
        the operator resolved the fork. The log is this store's again only if the hub holds this store's head (or
        all it holds is in this store): asked as at start, the head is compared, and the fork is cleared then.
        Another copy's branch kept at the hub stays a fork here (this copy's next records are refused again)."""
        assert self.own is not None
        local = await asyncio.to_thread(self._store.log_length, self.own)
        if self._not_resolved == (target.url, local):
            return  # compared already: asked again once this log grows
        try:
            check, past = await ask_head(ctx, target.url, self._store, self.own, limits=self.limits,
                                         timeout=self.request_timeout)
        except Exception as exc:  # asked again at the next round
            log.info("hub %s no longer holds this device as forked; its head was not compared (%s)", target.url,
                     describe_failure(exc))
            return
        if check.outcome not in ("current", "hub_behind") or past:
            log.info("hub %s no longer holds this device as forked, but its branch is not this store's (%s): the log "
                     "stays forked here", target.url, check.detail or check.outcome)
            self._not_resolved = (target.url, local)
            return
        log.warning("hub %s no longer holds this device as forked and holds this store's head: the fork was resolved "
                    "with the branch this store holds (it said: %s)", target.url, self.forked,
                    extra={"fields": {"peer": target.url, "code": "fork_resolved", "head_check": check.to_json()}})
        self.forked = self._forked_by = None

    def head_status(self) -> dict[str, Any]:
        """Whether a hub confirmed this device's head since start, for `/status`: "confirmed" only on a hub's
        answer that its records are all in this log, "forked" once a hub holds another record of it (or refuses a
        push as a fork, or says it holds this device as forked), "not_confirmed" until then (also when neighbours
        sent records), "catching_up" while a node's records past the store's head are still coming."""
        if self.own is None:
            state = "no_hub"
        elif self.forked is not None:
            state = "forked"
        elif self.head is not None:
            state = "confirmed" if self.head.outcome in CONFIRMED else self.head.outcome
        else:
            state = "catching_up" if self.head_stale else "not_confirmed"
        return {"state": state, "check": self.head.to_json() if self.head else None,
                "neighbours": [c.to_json() for c in self.neighbours.values()],
                "forked": self.forked, "last_error": self.head_error}

    def _log_refusals(self, target: Target, report: SyncReport) -> None:
        """Say once per cause why a node refuses this edge's own records, with the fix; say again only after it
        stopped refusing and started again (an edge that pushes for hours in silence is what this prevents).
        Refusals of other devices' logs kept here (replicas) are said apart, naming the device, without the own
        log's fix, once per log and cause (REPLICA_REFUSALS_SAID at once); a log a node refused as unknown to it
        is not pushed there again for a while (`coap_server.sync.push_refusals`)."""
        # An agent told no own device (a holder of one log) takes every refusal as its own log's.
        theirs = [exc for exc in report.refused
                  if self.own is not None and exc.device is not None and exc.device != self.own]
        mine = [exc for exc in report.refused if exc not in theirs]
        codes = {exc.code for exc in mine}
        if report.refused:  # the round ran, but what it carried was refused: `edge status` says so too
            errors = {f"{exc.code}: {exc.message}" for exc in mine}
            for code in sorted({exc.code for exc in theirs}):
                count = sum(1 for exc in theirs if exc.code == code)
                errors.add(f"{code}: {count} log{'s' if count > 1 else ''} of other devices kept here")
            target.last_error = "; ".join(sorted(errors))
        for exc in mine:
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
        for exc in theirs:
            assert exc.device is not None
            self._replica_refused(target, exc.device, exc)

    def _replica_refused(self, target: Target, device: bytes, exc: SyncFailed) -> None:
        remembered = exc.code in REMEMBERED
        if remembered:
            push_refusals(self.holder).remember(target.url, device)
        said = (device, exc.code)
        if said in target.refused_logs:
            return
        while len(target.refused_logs) >= REPLICA_REFUSALS_SAID:
            del target.refused_logs[next(iter(target.refused_logs))]
        target.refused_logs[said] = None
        then = (f"not pushed there again for {REFUSAL_MEMORY_S / 60:.0f} min" if remembered
                else "pushed again next round")
        log.info("%s %s refuses the log of device %s that this edge keeps for its peers (not this device's): "
                 "%s: %s; it stays here, %s", target.role, target.url, device.hex(), exc.code, exc.message, then,
                 extra={"fields": {"peer": target.url, "code": exc.code, "device": device.hex(), "replica": True}})

    async def run(self) -> None:
        ctx = await aiocoap.Context.create_client_context()
        lanes = Lanes(ctx)
        requests = 0
        try:
            await lanes.open()
            while True:
                self._wake.clear()
                await self.confirm_head(ctx, lanes)
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
