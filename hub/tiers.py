"""Hub tiers: a national hub pulls regional hubs' logs with the same sync protocol and verifies them again, or
follows a region by its signed checkpoints and consistency proofs and fetches single records with their proofs."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiocoap
import aiocoap.error
import cbor2
from aiocoap.numbers.codes import Code
from aiohttp import web

from coap_server import params
from coap_server.lanes import Lanes
from coap_server.sync import SyncReport, sync_once
from ledger import Checkpoint, LedgerError, Record, decode_checkpoint, decode_record, device_id_for
from ledger.acceptance import SignatureCheck
from ledger.enroll import read_revocations
from ledger.errors import BadCheckpoint, BadProof, CodedError, RevokedKey, SplitView
from ledger.failures import Unreachable
from ledger.follow import (
    Rebase,
    RegionResume,
    SplitViewEvidence,
    Step,
    decode_consistency_answer,
    decode_resume,
    decode_split_view,
    evidence_id,
    follow,
    proof_needed,
    receipt_checkpoint,
)
from ledger.summary import HeadsSummary, bucket_matches, decode_buckets, decode_root
from ledger.sync import Fetch, Head, Limits, RequestSize, decode_heads, decode_records, plan

from .auth import token_digest
from .config import Upstream, parse_upstream
from .http import read_decision
from .service import Hub, HubError, IngestResult, NotEnrolled
from .store import DeviceInfo
from .verify import CrossLogVerifier

log = logging.getLogger("jejak.tiers")


class RegionRefused(CodedError):
    """A regional hub answered the national hub's request with an error; its code and message are quoted."""

    code = "HUB_REFUSED"
    coap = "5.00"
    http = 502
    exit_code = 85


class RegionUnprotected(CodedError):
    """A regional hub answered, but not under the OSCORE context that the key its upstream entry pins derives:
    its key was replaced (a new hub), it no longer names this hub, it runs without OSCORE, or another host
    answers at its address."""

    code = "REGION_UNPROTECTED"
    coap = "5.02"
    http = 502
    exit_code = 86


class UnknownRegion(HubError):
    """A regional hub id that this hub does not follow by its checkpoints."""

    code = "UNKNOWN_REGION"
    coap = "4.04"
    http = 404
    exit_code = 54


class NotSplit(HubError):
    """A resume asked of a region that no open split view stops."""

    code = "NOT_SPLIT"
    coap = "4.09"
    http = 409
    exit_code = 55


class UpstreamHolder:
    """The national hub as seen by a pull from one regional hub.

    Logs are self-certifying (the genesis record names the key the device id derives from), so a device first
    seen through a regional hub is registered from its genesis; every record is still verified here.
    """

    def __init__(self, hub: Hub, upstream: str, verifier: CrossLogVerifier | None = None, *,
                 revoked: Mapping[bytes, int] | None = None) -> None:
        self.hub = hub
        self.upstream = upstream
        self.verifier = verifier
        self.revoked = revoked or {}  # the region's signed revocation points, read this round
        self._guessed: dict[bytes, bytes] = {}  # new logs' genesis keys, for ranges checked ahead
        # Logs whose records past their revocation point here were refused (REVOKED_KEY): what a revocation
        # means, not a failed round.
        self.revoked_refused: set[bytes] = set()

    def heads(self) -> list[Head]:
        return self.hub.heads()

    def log_range(self, device_id: bytes, start: int, end: int) -> list[bytes]:
        return self.hub.store.log_range(device_id, start, end)

    def log_length(self, device_id: bytes) -> int:
        state = self.hub.store.chain_state(device_id)
        return state.length if state else 0

    def check_ahead(self, items: Sequence[tuple[bytes, Sequence[bytes]]]) -> list[SignatureCheck | None]:
        """Send a pull request's ranges to the verifier's workers now, for `receive_many` later: the workers check
        them while the writer merges and commits the request before. New logs' genesis keys are remembered
        for their later ranges, which may arrive before the genesis is committed."""
        return self.hub.checks_ahead(items, self.verifier, self._guessed)

    def receive_many(self, items: Sequence[tuple[bytes, Sequence[bytes]]],
                     checks: Sequence[SignatureCheck | None] | None = None) -> list[dict[str, Any]]:
        """Many logs' ranges of one pull request, merged by the hub's one writer in one commit; with a
        CrossLogVerifier their signatures are checked on every core while the writer links them (`checks`: sent
        ahead by `check_ahead`)."""
        out = self._register(items)
        merged = [i for i in range(len(items)) if i not in out]
        results = self.hub.ingest_many([items[i] for i in merged], verifier=self.verifier,
                                       checks=None if checks is None else [checks[i] for i in merged])
        for i, result in zip(merged, results, strict=True):
            out[i] = result.to_json() if isinstance(result, IngestResult) else _refused(result)
        answers = [out[i] for i in range(len(items))]
        for (device_id, _), answer in zip(items, answers, strict=True):
            self._note(device_id, answer)
        return answers

    def receive(self, device_id: bytes, raws: Sequence[bytes], *,
                check: SignatureCheck | None = None) -> dict[str, Any]:
        result = self._register([(device_id, raws)]).get(0)
        if result is None:
            try:
                result = self.hub.ingest(device_id, raws, check=check).to_json()
            except LedgerError as exc:
                result = _refused(exc)
        self._note(device_id, result)
        return result

    def _note(self, device_id: bytes, result: dict[str, Any]) -> None:
        problem = result.get("problem")
        if isinstance(problem, dict) and problem.get("code") == RevokedKey.code:
            self.revoked_refused.add(device_id)

    def _register(self, items: Sequence[tuple[bytes, Sequence[bytes]]]) -> dict[int, dict[str, Any]]:
        """Register the logs first seen here from their genesis, all admitted together (`Hub.admit`: one commit
        of their approvals, one write of their standing); the refusal of each item, by index, of a new log that
        does not start with one."""
        refusals: dict[int, dict[str, Any]] = {}
        new: dict[bytes, DeviceInfo] = {}
        for i, (device_id, raws) in enumerate(items):
            if not raws or device_id in new or self.hub.store.get_device(device_id) is not None:
                continue
            try:
                genesis = decode_record(raws[0])
            except LedgerError as exc:
                refusals[i] = _refused(exc)
                continue
            if genesis.seq != 0 or genesis.kind != "key" or genesis.body is None:
                refusals[i] = _refused(NotEnrolled("first record of a new log must be genesis"))
                continue
            new[device_id] = DeviceInfo(
                device_id=device_id, pubkey=genesis.body["pubkey"], site=relayed_site(self.upstream),
                role="relayed", status="active", enrolled_at=self.hub.clock(), name="")
        # The relay's own decisions, signed into its log like any approval: a bundle it exports verifies.
        self.hub.admit(list(new.values()))
        for device_id in new:
            if (point := self.revoked.get(device_id)) is not None:  # before its records: those past it are refused
                _revoke_relayed(self.hub, self.upstream, device_id, point)
        return refusals


def mirror_revocations(hub: Hub, upstream: str, points: Mapping[bytes, int]) -> list[tuple[bytes, int]]:
    """Revoke, in this hub's own log, each device relayed from `upstream` that the region's signed revocation list
    refuses from an earlier seq than this hub does; (device, seq) of those revoked now. Revocations are never
    lifted, so an older list (a replay) or one that leaves a device out changes nothing."""
    done = []
    for device_id, point in sorted(points.items()):
        info = hub.store.get_device(device_id)
        if info is None or info.site != relayed_site(upstream):
            continue  # not a device this region relays here: a region speaks for its own devices only
        mine = hub.authority.revoked_from(device_id)
        if mine is None or point < mine:
            _revoke_relayed(hub, upstream, device_id, point)
            done.append((device_id, point))
    return done


def revoked_complete(hub: Hub) -> frozenset[bytes]:
    """The logs revoked at this hub that it holds up to their revocation point: complete, nothing more of them
    is fetched (every record past the point would be refused as REVOKED_KEY, round after round)."""
    done = set()
    for device_id, point in hub.authority.revocations():
        state = hub.store.chain_state(device_id)
        if (state.length if state is not None else 0) >= point:
            done.add(device_id)
    return frozenset(done)


def pull_plan(hub: Hub, local: Mapping[bytes, Head], remote: Sequence[Head],
              region: Mapping[bytes, int] | None = None) -> list[Fetch]:
    """What to fetch of the `remote` heads: a log revoked at this hub, or by the region's list (`region`: a log
    first seen this round is revoked here as it is registered), is complete at the seq it is revoked from, so no
    fetch reaches past that point."""
    points = {}
    for head in remote:
        mine, theirs = hub.authority.revoked_from(head.device_id), (region or {}).get(head.device_id)
        if mine is not None or theirs is not None:
            points[head.device_id] = min(p for p in (mine, theirs) if p is not None)
    blocked = frozenset(d for d, p in points.items() if (local[d].length if d in local else 0) >= p)
    fetches = []
    for action in plan(local, remote, push=False, pull=True, blocked=blocked):
        if isinstance(action, Fetch):
            point = points.get(action.device_id)
            fetches.append(action if point is None else Fetch(action.device_id, action.start, min(action.end, point)))
    return fetches


def unexpected_problems(problems: Sequence[str], revoked: set[bytes]) -> list[str]:
    """A round's problems but the refusals of `revoked` logs' records past their revocation point (a sync
    problem names its log first: `<device hex>: ...`)."""
    names = {d.hex() for d in revoked}
    return [p for p in problems if p.partition(": ")[0] not in names]


def relayed_site(upstream: str) -> str:
    """The site a device first seen through `upstream` is registered with."""
    return f"via {upstream}"


def _revoke_relayed(hub: Hub, upstream: str, device_id: bytes, point: int) -> None:
    hub.revoke(device_id, point)
    log.warning("REGION REVOKED: device %s relayed from %s is refused from seq %d on, as the region's signed "
                "revocation list says", device_id.hex(), upstream, point)


def _refused(exc: LedgerError) -> dict[str, Any]:
    return {"accepted": 0, "duplicates": 0, "length": 0, "problem": exc.to_dict()}


async def pull_once(hub: Hub, upstream: str, ctx: aiocoap.Context, size: RequestSize | None = None,
                    verifier: CrossLogVerifier | None = None, lanes: Lanes | None = None, *,
                    revoked: Mapping[bytes, int] | None = None, holder: UpstreamHolder | None = None) -> SyncReport:
    """One pull round from `upstream`; pass the same `size` every round so requests follow that link. Over
    UDP, requests are in flight together only on `lanes` opened beside `ctx` for this upstream. `revoked`: the
    region's verified revocation points, for the logs first seen in this round; or `holder`, one made with them
    (it keeps which logs' records were refused past their revocation point). Logs complete at their revocation
    point here are not asked for (`revoked_complete`)."""
    holder = holder or UpstreamHolder(hub, upstream, verifier, revoked=revoked)
    complete = await asyncio.to_thread(revoked_complete, hub)
    return await sync_once(ctx, upstream, holder, push=False, pull=True, size=size, lanes=lanes, blocked=complete)


def lanes_for(upstream: str, ctx: aiocoap.Context) -> Lanes | None:
    """Lanes beside `ctx` for pulls from `upstream`, one pool per upstream so that regions stay parallel;
    None over TCP, where one context carries requests at once."""
    return Lanes(ctx) if upstream.startswith("coap://") else None


async def pull_all(hub: Hub, upstreams: Sequence[str], ctx: aiocoap.Context, sizes: dict[str, RequestSize],
                   verifier: CrossLogVerifier | None = None) -> dict[str, SyncReport | Exception]:
    """One pull round from every upstream at once: the regions' links and verification overlap, and a slow or
    unreachable region holds up none of the others."""

    async def one(upstream: str) -> SyncReport | Exception:
        lanes = lanes_for(upstream, ctx)
        try:
            if lanes is not None:
                await lanes.open()
            report = await pull_once(hub, upstream, ctx, sizes.setdefault(upstream, RequestSize()), verifier,
                                     lanes)
        except Exception as exc:  # an unreachable region must not stop the others
            log.warning("pull from %s failed: %s", upstream, exc)
            return exc
        finally:
            if lanes is not None:
                await lanes.close()
        if report.fetched or report.problems:
            log.info("pulled %d records from %s; problems: %s", report.fetched, upstream, report.problems)
        return report

    results = await asyncio.gather(*(one(upstream) for upstream in upstreams))
    return dict(zip(upstreams, results, strict=True))


@dataclass(slots=True)
class FollowReport:
    """One round of following a region by its checkpoints."""

    upstream: str
    step: Step | None = None  # None: the region has signed no checkpoint yet, or the round failed
    checkpoint: Checkpoint | None = None  # the region's latest accepted checkpoint after the round
    requests: int = 0
    bytes_received: int = 0
    problem: dict[str, str] | None = None


@dataclass(slots=True, kw_only=True)
class RegionTrouble:
    """A run of rounds in which a region's answers were refused (or it did not answer): what an operator is shown
    until a round goes well again."""

    code: str
    message: str
    hint: str | None
    since: int  # this hub's time of the first round of the run
    last: int  # and of the latest
    rounds: int = 1

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "hint": self.hint, "since": self.since,
                "last": self.last, "rounds": self.rounds}


class RegionHealth:
    """How the rounds of one region go: the current run of refused or unanswered rounds, and one log line with its
    code when such a run starts or ends (the rounds in between log at their own level, as before)."""

    def __init__(self, hub: Hub, url: str, hub_id: bytes | None = None, *, taken: str = "followed") -> None:
        self.hub, self.url, self.hub_id = hub, url, hub_id
        self.taken = taken  # "followed" (by its checkpoints) or "pulled" (record by record), for its log line
        self.trouble: RegionTrouble | None = None
        # A round went well under the pinned key (a followed region: a checkpoint of it is held): a region that
        # then stops proving to be that key changed, where one that never did more likely has a mistyped pin.
        self.proved = False

    @property
    def name(self) -> str:
        return f"regional hub {self.hub_id.hex()} at {self.url}" if self.hub_id is not None else \
            f"regional hub at {self.url}"

    def went_well(self) -> None:
        self.proved = True
        trouble, self.trouble = self.trouble, None
        if trouble is not None:
            log.warning("REGION %s AGAIN: %s answers and verifies again after %d rounds of %s since %s",
                        self.taken.upper(), self.name, trouble.rounds, trouble.code,
                        time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(trouble.since)))

    def failed(self, problem: dict[str, str]) -> None:
        if not self.proved and (problem["code"] == RegionUnprotected.code or problem.get("hint") == KEY_CHANGE_HINT):
            problem = {**problem, "hint": FIRST_KEY_HINT}
        now = self.hub.clock()
        trouble = self.trouble
        if trouble is not None and trouble.code == problem["code"]:
            trouble.rounds += 1
            trouble.last, trouble.message, trouble.hint = now, problem["message"], problem.get("hint")
            return
        self.trouble = RegionTrouble(code=problem["code"], message=problem["message"], hint=problem.get("hint"),
                                     since=now, last=now)
        if problem["code"] == SplitView.code:
            return  # logged as SPLIT VIEW when caught, with its evidence
        if problem["code"] == Unreachable.code:
            log.warning("REGION UNREACHABLE: %s: %s", self.name, problem["message"])
            return
        log.error("REGION REFUSED: %s: %s: %s; nothing it answers is taken until it verifies again (%s)",
                  self.name, problem["code"], problem["message"], problem.get("hint") or "no hint")

    def state(self, ok: str) -> str:
        """`ok` when the last round went well; else `unreachable` or `refused`."""
        if self.trouble is None:
            return ok
        return "unreachable" if self.trouble.code == Unreachable.code else "refused"


@dataclass(frozen=True, slots=True, kw_only=True)
class RegionRecord:
    """A record fetched from a followed region, proved to be in its log under a checkpoint consistent with the
    ones accepted from it."""

    record: Record
    index: int  # its place in the region's log
    checkpoint: Checkpoint  # the region's checkpoint the inclusion proof leads to
    step: Step  # how that checkpoint stands to the accepted ones
    receipt: bytes  # the region's COSE Receipt, for anyone to check again with the region's key

    def to_json(self) -> dict[str, Any]:
        return {"device": self.record.device_id.hex(), "seq": self.record.seq, "id": self.record.id.hex(),
                "kind": self.record.kind, "record": self.record.raw.hex(), "index": self.index,
                "receipt": self.receipt.hex(), "checkpoint": self.checkpoint.to_json(),
                "checkpoint_step": self.step.value}


@dataclass(slots=True)
class Traffic:
    """Requests and answer bytes (CoAP payloads) since the last round began."""

    requests: int = 0
    bytes_received: int = 0


class RegionFollower:
    """The national hub following one regional hub by its signed checkpoints, not by its records.

    Each round costs one request when the region did not move, two when it did (its latest checkpoint, then the
    consistency proof from the last one accepted). The accepted checkpoints are kept in the store, so a restart
    resumes from the last one; a region caught signing two views of its log is kept as evidence and refused
    until an operator acts."""

    def __init__(self, hub: Hub, upstream: Upstream) -> None:
        if upstream.key is None:
            raise ValueError(f"upstream {upstream.url}: following checkpoints needs the regional hub's key")
        self.hub = hub
        self.url = upstream.url
        self.key = upstream.key
        self.hub_id = device_id_for(upstream.key)
        self.accepted: list[Checkpoint] = [decode_checkpoint(raw)
                                           for raw in hub.store.region_checkpoints(self.hub_id)]
        self.traffic = Traffic()
        self.health = RegionHealth(hub, self.url, self.hub_id)
        self.health.proved = bool(self.accepted)
        self._resuming = asyncio.Lock()  # two operators at once: the second finds the region followed

    def split_views(self) -> list[tuple[bytes, SplitViewEvidence]]:
        """(evidence id, evidence) of every split view caught of this region, resolved or not."""
        return [(evidence_id(evidence), decode_split_view(evidence))
                for hub_id, evidence in self.hub.store.split_views() if hub_id == self.hub_id]

    def resumes(self) -> list[RegionResume]:
        return [decode_resume(decision) for hub_id, decision in self.hub.store.region_resumes()
                if hub_id == self.hub_id]

    def open_split_views(self) -> list[bytes]:
        """The ids of the split views no operator's resume has closed: while there is one, the region is refused."""
        closed = {e for resume in self.resumes() for e in resume.resolves}
        return [eid for eid, _ in self.split_views() if eid not in closed]

    @property
    def latest(self) -> Checkpoint | None:
        return self.accepted[-1] if self.accepted else None

    async def round(self, ctx: aiocoap.Context) -> FollowReport:
        """Fetch the region's latest checkpoint and judge it; never raises for what the region answers."""
        self.traffic = Traffic()
        report = FollowReport(upstream=self.url)
        try:
            if self.open_split_views():
                raise SplitView(f"hub {self.hub_id.hex()} at {self.url} was caught signing two views of its log; "
                                "it is not followed", hint="see the evidence (GET /api/regions/<hub>); an operator "
                                "resumes it with `jejak hub regions resume <hub>`")
            payload = await self._get(ctx, "/checkpoint", missing_ok=True)
            if payload is not None:
                checkpoint = decode_checkpoint(payload)
                if checkpoint.hub_id != self.hub_id:
                    raise BadCheckpoint(f"regional hub at {self.url} signs its checkpoints as hub "
                                        f"{checkpoint.hub_id.hex()}, not as the pinned hub {self.hub_id.hex()}",
                                        hint=KEY_CHANGE_HINT)
                report.step = await self._place(ctx, checkpoint)
        except CodedError as exc:  # the region's refusals and failed checks alike, by their codes
            report.problem = exc.to_dict()
        report.checkpoint = self.latest
        report.requests, report.bytes_received = self.traffic.requests, self.traffic.bytes_received
        return report

    async def record(self, ctx: aiocoap.Context, device_id: bytes, seq: int) -> RegionRecord:
        """Drill down: one record of the region with its inclusion proof, under a checkpoint that the accepted
        ones are consistent with (a newer one is accepted on the way)."""
        payload = await self._get(ctx, f"/sync/records?d={device_id.hex()}&from={seq}&to={seq + 1}")
        assert payload is not None
        got_device, start, raws = decode_records(payload)
        if got_device != device_id or start != seq or not raws:
            raise BadProof(f"the region answered device {got_device.hex()} seq {start} ({len(raws)} records) "
                           f"for device {device_id.hex()} seq {seq}")
        raw = raws[0]
        receipt = await self._get(ctx, f"/proofs/inclusion?r={hashlib.sha256(raw).hexdigest()}")
        assert receipt is not None
        return await self.check_included(ctx, raw, receipt, device_id=device_id, seq=seq)

    async def resume(self, ctx: aiocoap.Context, *, by: str, why: str, token: str) -> RegionResume:
        """An operator's decision after looking at a split view: follow the region again from its current signed
        checkpoint. Which of the checkpoints accepted before that log still extends is proved with the region's
        consistency proofs; the others are recorded as not in its view. The evidence stays; the decision is kept
        with who made it, when and why."""
        async with self._resuming:
            still_open = self.open_split_views()
            if not still_open:
                raise NotSplit(f"region {self.hub_id.hex()} at {self.url} has no open split view; it is followed",
                               hint="GET /api/regions/<hub> shows its state")
            payload = await self._get(ctx, "/checkpoint")
            assert payload is not None
            rebase = Rebase(self.accepted, decode_checkpoint(payload), self.key)
            while (need := rebase.wanted()) is not None:
                rebase.receive([] if need[0] == need[1] else await self._consistency(ctx, *need))
            decision = RegionResume(hub_id=self.hub_id, at=self.hub.clock(), by=by, why=why, token=token,
                                    pinned=rebase.current, kept=rebase.kept, dropped=rebase.dropped,
                                    resolves=tuple(still_open))
            self.hub.store.resume_region(self.hub_id, rebase.current.tree_size, rebase.current.raw,
                                         decision.encode())
            self.hub.store.bump("region_resumes")
            self.accepted = [rebase.current]
            self.health.trouble = None  # its current checkpoint verified: REGION RESUMED below says the rest
        gap = decision.not_in_view
        log.warning("REGION RESUMED: regional hub %s at %s is followed again from its checkpoint of %d records, by "
                    "%s (token %s): %s; %s; the split-view evidence is kept", self.hub_id.hex(), self.url,
                    rebase.current.tree_size, by, token, why,
                    "its log holds every checkpoint accepted before" if gap is None else
                    f"records {gap[0]} to {gap[1] - 1} that accepted checkpoints vouched for are NOT in its view "
                    f"({len(decision.dropped)} checkpoints)")
        return decision

    def to_json(self, *, history: bool = False) -> dict[str, Any]:
        """The region's state; with `history`, every checkpoint accepted since the last resume too."""
        latest = self.latest
        resumes = self.resumes()
        closed = {e for resume in resumes for e in resume.resolves}
        views = [{"id": eid.hex(), "accepted": e.accepted.to_json(), "offered": e.offered.to_json(),
                  "proof": [p.hex() for p in e.proof], "conclusive": e.conclusive, "resolved": eid in closed}
                 for eid, e in self.split_views()]
        trouble = self.health.trouble
        out: dict[str, Any] = {
            "url": self.url, "hub": self.hub_id.hex(), "mode": "checkpoints",
            "state": "split" if any(not v["resolved"] for v in views) else self.health.state("followed"),
            "problem": trouble.to_json() if trouble is not None else None,
            "checkpoint": latest.to_json() if latest is not None else None, "accepted": len(self.accepted),
            "split_views": views, "resumes": [r.to_json() for r in resumes]}
        if history:
            out["checkpoints"] = [c.to_json() for c in self.accepted]
        return out

    async def check_included(self, ctx: aiocoap.Context, raw: bytes, receipt: bytes, *, device_id: bytes,
                             seq: int) -> RegionRecord:
        """`raw` is the record at (device, seq), and the region's `receipt` proves it in the region's log under a
        checkpoint consistent with those accepted: INVALID_PROOF if the bytes are not what the log holds."""
        record = decode_record(raw)
        if record.device_id != device_id or record.seq != seq:
            raise BadProof(f"record is device {record.device_id.hex()} seq {record.seq}, expected "
                           f"{device_id.hex()} seq {seq}")
        verified, checkpoint = receipt_checkpoint(receipt, raw, self.key)
        step = await self._place(ctx, checkpoint)
        return RegionRecord(record=record, index=verified.index, checkpoint=checkpoint, step=step,
                            receipt=receipt)

    async def _place(self, ctx: aiocoap.Context, checkpoint: Checkpoint) -> Step:
        """Judge a checkpoint of the region against the accepted ones, fetching the proof that takes."""
        proof: list[bytes] = []
        need = proof_needed(self.accepted, checkpoint)
        if need is not None:
            checkpoint.verify(self.key)  # before asking the region for anything on its word
            proof = await self._consistency(ctx, *need)
        try:
            step = follow(self.accepted, checkpoint, proof, self.key)
        except SplitView as exc:
            evidence = exc.evidence
            assert isinstance(evidence, SplitViewEvidence)
            self.hub.store.put_split_view(self.hub_id, evidence.encode())
            self.hub.store.bump("region_split_views")
            log.error("SPLIT VIEW: regional hub %s at %s: %s; both signed checkpoints (sizes %d and %d) are kept as "
                      "evidence and the region is no longer followed", self.hub_id.hex(), self.url, exc.message,
                      evidence.accepted.tree_size, evidence.offered.tree_size)
            raise
        if step in (Step.FIRST, Step.ADVANCED):
            self.hub.store.put_region_checkpoint(self.hub_id, checkpoint.tree_size, checkpoint.raw)
            self.accepted.append(checkpoint)
        return step

    async def _consistency(self, ctx: aiocoap.Context, first: int, second: int) -> list[bytes]:
        payload = await self._get(ctx, f"/proofs/consistency?from={first}&to={second}")
        assert payload is not None
        return list(decode_consistency_answer(payload, first, second))

    async def _get(self, ctx: aiocoap.Context, path: str, *, missing_ok: bool = False) -> bytes | None:
        return await region_get(ctx, self.url, path, self.traffic, missing_ok=missing_ok)


async def region_get(ctx: aiocoap.Context, url: str, path: str, traffic: Traffic, *, missing_ok: bool = False,
               timeout: float = 30.0) -> bytes | None:
    """GET from a regional hub; None for a 4.04 when `missing_ok`, RegionRefused for any other error answer,
    RegionUnprotected for an answer outside the OSCORE context of the pinned key, Unreachable for none."""
    try:
        async with asyncio.timeout(timeout):
            response = await ctx.request(aiocoap.Message(code=Code.GET, uri=url + path)).response
    except (TimeoutError, aiocoap.error.Error, OSError) as exc:
        # aiocoap's NotAProtectedMessage carries the answer that came back without OSCORE: the region is up,
        # and does not prove to be the pinned hub. Nothing of that answer is taken.
        plain = getattr(exc, "plain_message", None)
        if isinstance(plain, aiocoap.Message):
            raise RegionUnprotected(
                f"regional hub {url} answered GET {path.partition('?')[0]} with {plain.code} outside the OSCORE "
                f"context of the pinned hub key ({bytes(plain.payload[:120]).decode(errors='replace')!r}): the key "
                "pinned here is not its key (mistyped, or its key was replaced), it no longer names this hub in "
                "`security.peer_hubs`, or it runs without OSCORE",
                hint=KEY_CHANGE_HINT) from None
        raise Unreachable(f"regional hub {url} did not answer GET {path.partition('?')[0]}: {_why(exc, timeout)}",
                          hint="check that it runs and the upstream address") from None
    traffic.requests += 1
    traffic.bytes_received += len(response.payload)
    if response.code == Code.NOT_FOUND and missing_ok:
        return None
    if not response.code.is_successful():
        try:
            err = cbor2.loads(response.payload)
            said, hint = f"{err['code']}: {err['message']}", err.get("hint")
        except (ValueError, KeyError, TypeError, cbor2.CBORDecodeError):
            said, hint = response.payload[:200].decode(errors="replace"), None
        raise RegionRefused(f"regional hub {url} answered GET {path.partition('?')[0]} with {response.code}: "
                            f"{said}", hint=hint)
    return bytes(response.payload)


KEY_CHANGE_HINT = ("a hub key never rotates (FORMAT.md §6.2): a region with a new key is a new region. Confirm "
                   "the new key with its operators out of band, then pin it in a new upstream entry; until then "
                   "nothing the region answers is taken")
# For a region that has not once proved to be its pinned key since this hub started: a mistyped pin is likelier.
FIRST_KEY_HINT = ("no round has verified under the pinned key since this hub started: first compare the key in "
                  "this hub's upstream entry with the region's own (`pubkey` in its GET /api/status, `key=` in its "
                  "`jejak enroll qr`) and fix a mistyped one there; if the region's key really is new, "
                  + KEY_CHANGE_HINT)

SUMMARY_DRILL_MAX = 16  # changed buckets fetched one by one; past this a whole heads exchange costs less
DRILL_WIDTH = 4  # requests of a drill-down in flight at once (over UDP, each on a lane of its own)
# A region's revocation is a decision of its own, in none of the logs it serves: while its logs stay as they were,
# its signed list is still read this often, so a device it revokes is refused here without waiting for a record.
REVOCATIONS_EVERY_S = 60.0
RECORDS_PER_REQUEST = Limits().records_per_request

T = TypeVar("T")


async def _all_in_order(jobs: Sequence[Awaitable[T]]) -> list[T]:
    """The jobs' results in the jobs' order; the first failure cancels the others and is raised as it is."""
    tasks = [asyncio.ensure_future(job) for job in jobs]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


@dataclass(slots=True)
class SummaryRound:
    """One pull round that compared the region's heads summary first."""

    sync: SyncReport = field(default_factory=SyncReport)
    requests: int = 0  # summary and bucket requests, and the records requests of a drill-down
    drilled: list[int] = field(default_factory=list)  # buckets whose heads were fetched
    full: bool = False  # a whole heads exchange instead: the first round, too many buckets, or an older hub


class SummaryPuller:
    """Pull rounds from one regional hub that ask for the Merkle summary of its heads first (ledger/summary.py).

    The same root and count as after the last clean round: nothing moved, one request. Otherwise the 256
    buckets, and the heads of those that changed, one request each, then their records; the first round, or
    one where more than SUMMARY_DRILL_MAX buckets changed, is a whole pull (`pull_once`). A hub without the
    summary (4.04) is pulled whole every round, as before. A drill-down has up to `width` requests in flight at
    once (the buckets' heads, then the logs' records, each log's in order); its answer is the same as one made a
    request at a time."""

    def __init__(self, hub: Hub, url: str, verifier: CrossLogVerifier | None = None, *,
                 width: int = DRILL_WIDTH, timeout: float = 30.0, key: bytes | None = None) -> None:
        if width < 1:
            raise ValueError(f"drill-down width: expected at least 1, got {width}")
        self.hub, self.url, self.verifier, self.width, self.timeout = hub, url, verifier, width, timeout
        self.key = key  # the region's pinned hub key: its revocation list must be signed with it
        self.seen: HeadsSummary | None = None  # as of the start of the last round that took everything in
        self.traffic = Traffic()
        self.health = RegionHealth(hub, url, device_id_for(key) if key is not None else None, taken="pulled")
        self.revocations_every_s = REVOCATIONS_EVERY_S
        self._revocations_at = -REVOCATIONS_EVERY_S  # time.monotonic() of the last list read

    async def round(self, ctx: aiocoap.Context, size: RequestSize, lanes: Lanes | None = None) -> SummaryRound:
        out = SummaryRound()
        self.traffic = Traffic()
        try:
            data = await region_get(ctx, self.url, "/sync/summary", self.traffic, missing_ok=True,
                                    timeout=self.timeout)
            if data is not None and self.seen is not None and decode_root(data) == (self.seen.root, self.seen.count):
                if self.key is not None and time.monotonic() - self._revocations_at >= self.revocations_every_s:
                    await self._revocations(ctx)
                return out
            revoked = await self._revocations(ctx)  # before any record of this round is taken
            summary = None
            if data is not None:
                answer = await region_get(ctx, self.url, "/sync/summary?level=1", self.traffic, timeout=self.timeout)
                summary = decode_buckets(answer or b"")
            changed = summary.changed(self.seen) if summary is not None and self.seen is not None else None
            holder = UpstreamHolder(self.hub, self.url, self.verifier, revoked=revoked)
            if changed is None or len(changed) > SUMMARY_DRILL_MAX:
                out.full = True
                out.sync = await pull_once(self.hub, self.url, ctx, size, lanes=lanes, holder=holder)
                clean = True
            else:
                assert summary is not None
                clean = await self._drill(ctx, summary, changed, out, holder, lanes)
            # Records past a revocation point refused here are the revocation at work, not a reason to look at
            # the same buckets again next round (they are not fetched again: `pull_plan`, `revoked_complete`).
            if clean and not unexpected_problems(out.sync.problems, holder.revoked_refused):
                self.seen = summary
        finally:
            out.requests += self.traffic.requests
        return out

    async def _revocations(self, ctx: aiocoap.Context) -> dict[bytes, int] | None:
        """The region's revocation list, signed with its pinned key (else the round stops with the error), mirrored
        into this hub's own log; None without a pinned key or from a hub that serves no list."""
        if self.key is None:
            return None
        raw = await region_get(ctx, self.url, "/security/revocations", self.traffic, missing_ok=True,
                               timeout=self.timeout)
        self._revocations_at = time.monotonic()
        if raw is None:
            return None
        points = read_revocations(raw, self.key).points
        await asyncio.to_thread(mirror_revocations, self.hub, self.url, points)
        return points

    async def _drill(self, ctx: aiocoap.Context, summary: HeadsSummary, changed: list[int], out: SummaryRound,
                     holder: UpstreamHolder, lanes: Lanes | None = None) -> bool:
        """Fetch the changed buckets' heads, then what they say is missing; False if the region moved on
        meanwhile (the summary is then not remembered, and the next round looks again)."""
        gate = asyncio.Semaphore(self.width)

        async def get(path: str) -> bytes:
            async with gate:
                if lanes is None:
                    return await region_get(ctx, self.url, path, self.traffic, timeout=self.timeout) or b""
                async with lanes.lane() as lane:
                    return await region_get(lane, self.url, path, self.traffic, timeout=self.timeout) or b""

        answers = await _all_in_order([get(f"/sync/summary?b={bucket}") for bucket in changed])
        remote: list[Head] = []
        clean = True
        for bucket, answer in zip(changed, answers, strict=True):
            heads = decode_heads(answer)
            clean = bucket_matches(heads, bucket, summary) and clean
            remote += heads
            out.drilled.append(bucket)
        local = {h.device_id: Head.of(state) for h in remote
                 if (state := self.hub.store.chain_state(h.device_id)) is not None}

        async def fetch(action: Fetch) -> SyncReport:
            got = SyncReport()
            start = action.start
            while start < action.end:
                end = min(action.end, start + RECORDS_PER_REQUEST)
                try:
                    data = await get(f"/sync/records?d={action.device_id.hex()}&from={start}&to={end}")
                except RegionRefused as exc:  # one log refused (a read rule, a damaged record): the others go on
                    got.problems.append(f"{action.device_id.hex()}: {exc}")
                    break
                device_id, _, raws = decode_records(data)
                if device_id != action.device_id or not raws:
                    break
                got.bytes_received += len(data)
                result = await asyncio.to_thread(holder.receive, device_id, raws)
                got.fetched += result.get("accepted", 0)
                got.duplicates += result.get("duplicates", 0)
                if result.get("problem"):
                    got.problems.append(f"{device_id.hex()}: {result['problem']}")
                    break
                start += len(raws)
            return got

        fetches = pull_plan(self.hub, local, remote, holder.revoked)
        for got in await _all_in_order([fetch(action) for action in fetches]):
            out.sync.fetched += got.fetched
            out.sync.duplicates += got.duplicates
            out.sync.bytes_received += got.bytes_received
            out.sync.problems += got.problems
        return clean


async def follow_all(followers: Sequence[RegionFollower], ctx: aiocoap.Context) -> list[FollowReport]:
    """One round of every region followed by checkpoints, at once."""

    async def one(follower: RegionFollower) -> FollowReport:
        try:
            report = await follower.round(ctx)
        except Exception as exc:  # an unreachable region must not stop the others
            log.warning("following %s failed: %s", follower.url, exc)
            report = FollowReport(upstream=follower.url, checkpoint=follower.latest,
                                  problem=Unreachable(f"{follower.url}: {exc}").to_dict())
        else:
            if report.problem is not None:
                log.warning("following %s: %s", follower.url, report.problem)
            elif report.step in (Step.FIRST, Step.ADVANCED) and report.checkpoint is not None:
                log.info("region %s: checkpoint of %d records accepted", follower.url, report.checkpoint.tree_size)
        if report.problem is None:
            follower.health.went_well()
        else:
            follower.health.failed(report.problem)
        return report

    return list(await asyncio.gather(*(one(f) for f in followers)))


# What a region is to the national hub: followed by its checkpoints, or pulled record by record, as the last round
# went; split (a split view stops it until an operator resumes it); refused (its last answer failed a check, or came
# outside its pinned key's OSCORE context); unreachable (no answer).
REGION_STATES = ("followed", "pulled", "split", "refused", "unreachable")

# A fresh client context at least this often (rounds); sooner after a round in which a region did not answer.
RENEW_ROUNDS = 500


def _unanswered(result: SummaryRound | Exception) -> bool:
    """A pull that failed on the way (no answer, a transport or OSCORE error), not one the region refused or
    whose answer failed a check."""
    return isinstance(result, Unreachable | TimeoutError | OSError | aiocoap.error.Error)


def _why(exc: BaseException, timeout: float | None = None) -> str:
    """What an exception says, or what it is: a timeout says nothing of its own, and aiocoap's network errors
    name only their class (the system's reason is their cause)."""
    cause = exc.__cause__
    if isinstance(exc, aiocoap.error.NetworkError) and isinstance(cause, OSError) and cause.errno:
        said = f"{os.strerror(cause.errno)} ({errno.errorcode.get(cause.errno, cause.errno)})"
        if cause.errno == errno.ECONNREFUSED:
            said += ": the host answers, and nothing listens on that port"
        return said
    if str(exc):
        return str(exc)
    if isinstance(exc, TimeoutError) and timeout is not None:
        return f"no answer in {timeout:g} s"
    return type(exc).__name__


def _problem(url: str, exc: Exception) -> dict[str, str]:
    if isinstance(exc, CodedError):
        return exc.to_dict()
    if _unanswered(exc):
        return Unreachable(f"regional hub {url}: {_why(exc)}").to_dict()
    return {"code": "INTERNAL", "message": f"pull from {url} failed: {type(exc).__name__}: {exc}"}


HUB_PARAM = params.device("hub")
DEVICE_PARAM = params.device("device")
SEQ_PARAM = params.seq("seq")


class RegionLink:
    """One regional hub's client context, shared with no other region: a socket of its own over UDP (with lanes
    beside it for a region pulled record by record: its requests in flight together, as many as over TCP) or a
    connection of its own over TCP, with that region's credentials (its OSCORE context, when its key is named).

    Over UDP a region that is down answers with ICMP errors, queued on the socket that sent to it, and Linux hands a
    queued error to whichever send on that socket comes next: aiocoap blames the address of that send. On a socket
    shared by every region, one region down made the others' requests fail and their state flip to unreachable.

    The context is renewed (a fresh one, with fresh lanes and the same credentials: the OSCORE context and its
    sequence numbers go on) after a round in which the region did not answer, and every `renew_rounds` rounds. A
    region that did not answer may have gone away under a connection that still looks open (a CoAP over TCP
    connection whose far end vanished without closing it: a power cut, a NAT or firewall that forgot the flow),
    and aiocoap sends every later request down that connection; message ids are 16 bits per context, and aiocoap
    reuses them without asking whether the exchange they named is over. The context in use stays up until the
    requests on it are done (a drill-down from the HTTP API, or a hung round, may be one)."""

    def __init__(self, url: str, credentials: Any | None, *, pulled: bool, renew_rounds: int) -> None:
        self.url, self.credentials, self.pulled, self.renew_rounds = url, credentials, pulled, renew_rounds
        self.lanes: Lanes | None = None  # of the context in use, for a region pulled over UDP
        self.renewals = 0
        self.answered = 0  # CoAP answers from the region (each block of a blockwise one), on any of its contexts
        self._ctx: aiocoap.Context | None = None
        self._rounds = 0  # rounds on the current context
        self._renew: str | None = None  # why the next use takes a fresh context
        self._users: dict[aiocoap.Context, int] = {}  # requests under way on each context, the retired ones too
        self._retired: dict[aiocoap.Context, Lanes | None] = {}
        self._opening = asyncio.Lock()

    def renew(self, why: str) -> None:
        """Take a fresh client context at the next use (the one in use is shut once its requests are done)."""
        if self._ctx is not None and self._renew is None:
            self._renew = why

    def settled(self, answered: bool) -> None:
        """A round of the region ended: a fresh context after one without an answer, or after many rounds."""
        self._rounds += 1
        if not answered:
            self.renew(f"no answer from {self.url}")
        elif self._rounds >= self.renew_rounds:
            self.renew(f"{self._rounds} rounds on it")

    async def context(self) -> aiocoap.Context:
        async with self._opening:
            if self._ctx is not None and self._renew is not None:
                log.info("tier links: a fresh client context for %s (%s)", self.url, self._renew)
                self._retired[self._ctx] = self.lanes
                self._ctx, self.lanes, self._renew, self._rounds = None, None, None, 0
                self.renewals += 1
                await self._shut_unused()
            if self._ctx is None:
                ctx = await aiocoap.Context.create_client_context()
                if self.credentials is not None:
                    ctx.client_credentials[f"{self.url}/*"] = self.credentials
                lanes = lanes_for(self.url, ctx) if self.pulled else None
                try:
                    if lanes is not None:
                        await lanes.open()
                except BaseException:
                    await _shut(ctx, lanes)
                    raise
                for one in [ctx, *(lanes.opened if lanes is not None else [])]:
                    self._count_answers(one)
                self._ctx, self.lanes = ctx, lanes
            return self._ctx

    def _count_answers(self, ctx: aiocoap.Context) -> None:
        """Count in `answered` every answer that comes to `ctx`: a round under way whose answers keep coming is
        a region that answers, however long the round (a first pull, a slow link). aiocoap sends each block of a
        blockwise exchange through the context's `request` too, so a large answer counts as it comes."""
        request = ctx.request

        def counted(*args: Any, **kwargs: Any) -> Any:
            sent = request(*args, **kwargs)
            sent.response.add_done_callback(self._answer)
            return sent

        ctx.request = counted

    def _answer(self, response: asyncio.Future[aiocoap.Message]) -> None:
        if not response.cancelled() and response.exception() is None:
            self.answered += 1

    @contextlib.asynccontextmanager
    async def using(self) -> AsyncIterator[aiocoap.Context]:
        """The client context, kept up while the caller's requests are under way."""
        ctx = await self.context()
        self._users[ctx] = self._users.get(ctx, 0) + 1
        try:
            yield ctx
        finally:
            self._users[ctx] -= 1
            if not self._users[ctx]:
                del self._users[ctx]
                await self._shut_unused()

    async def _shut_unused(self) -> None:
        unused = {c: self._retired.pop(c) for c in list(self._retired) if c not in self._users}
        for ctx, lanes in unused.items():
            await _shut(ctx, lanes)

    async def close(self) -> None:
        ctx, self._ctx = self._ctx, None
        lanes, self.lanes = self.lanes, None
        retired, self._retired = self._retired, {}
        if ctx is not None:
            await _shut(ctx, lanes)
        for old, old_lanes in retired.items():
            await _shut(old, old_lanes)


async def _shut(ctx: aiocoap.Context, lanes: Lanes | None) -> None:
    if lanes is not None:
        await lanes.close()
    await ctx.shutdown()


class TierLinks:
    """The national hub's links to its regional hubs (a `RegionLink` each: a client context of its own, renewed
    after a round without an answer and every `renew_rounds` rounds), and the HTTP routes that show the regions
    and drill down into one of their records. `run` gives each region a loop of its own, so a region that does not
    answer holds up none of the others."""

    def __init__(self, hub: Hub, entries: Sequence[str], contexts: dict[str, Any] | None = None, *,
                 timeout: float = 30.0, renew_rounds: int = RENEW_ROUNDS,
                 verifier: CrossLogVerifier | None = None) -> None:
        if renew_rounds < 1:
            raise ValueError(f"renew_rounds: expected at least 1, got {renew_rounds}")
        self.hub = hub
        self.pulled: list[str] = []
        self.followed: dict[bytes, RegionFollower] = {}
        keys: dict[str, bytes | None] = {}
        for upstream in map(parse_upstream, entries):
            if upstream.mode == "checkpoints":
                follower = RegionFollower(hub, upstream)
                self.followed[follower.hub_id] = follower
            else:
                self.pulled.append(upstream.url)
                keys[upstream.url] = upstream.key
        self.verifier = verifier or CrossLogVerifier()
        self.timeout = timeout
        self.pullers = [SummaryPuller(hub, url, self.verifier, timeout=timeout, key=keys[url]) for url in self.pulled]
        contexts = contexts or {}  # url -> OSCORE context, for the regional hubs whose keys are named
        self.links = {url: RegionLink(url, contexts.get(url), pulled=url in keys, renew_rounds=renew_rounds)
                      for url in [*self.pulled, *(f.url for f in self.followed.values())]}

    @property
    def renewals(self) -> int:
        """Fresh client contexts taken so far, every region's."""
        return sum(link.renewals for link in self.links.values())

    def states(self) -> dict[str, int]:
        """How many regions are in each state (as `GET /api/regions` shows them), every state named."""
        counts = dict.fromkeys(REGION_STATES, 0)
        for follower in self.followed.values():
            counts["split" if follower.open_split_views() else follower.health.state("followed")] += 1
        for puller in self.pullers:
            counts[puller.health.state("pulled")] += 1
        return counts

    def signed_at(self) -> dict[str, int]:
        """When each region followed by its checkpoints signed the latest one accepted, by its hub id (hex)."""
        return {hub_id.hex(): f.latest.time for hub_id, f in self.followed.items() if f.latest is not None}

    def using(self, url: str) -> contextlib.AbstractAsyncContextManager[aiocoap.Context]:
        """Region `url`'s client context, kept up while the caller's requests are under way."""
        return self.links[url].using()

    async def round(self, sizes: dict[str, RequestSize]) -> tuple[list[SummaryRound | Exception],
                                                                    list[FollowReport]]:
        """One round of every upstream at once (`run` gives each region a loop of its own instead)."""
        async def pull(puller: SummaryPuller) -> SummaryRound | Exception:
            async with self.using(puller.url) as ctx:
                return await self._pull(puller, ctx, sizes, self.links[puller.url].lanes)

        async def follow(follower: RegionFollower) -> FollowReport:
            async with self.using(follower.url) as ctx:
                [report] = await follow_all([follower], ctx)
                return report

        pulled, followed = await asyncio.gather(asyncio.gather(*map(pull, self.pullers)),
                                                asyncio.gather(*map(follow, self.followed.values())))
        self._settle(list(zip(self.pullers, pulled, strict=True)), followed)
        return list(pulled), list(followed)

    async def _pull(self, puller: SummaryPuller, ctx: aiocoap.Context, sizes: dict[str, RequestSize],
                    lanes: Lanes | None) -> SummaryRound | Exception:
        try:
            report = await puller.round(ctx, sizes.setdefault(puller.url, RequestSize(timeout=self.timeout)), lanes)
        except Exception as exc:  # an unreachable region must not stop the others
            log.warning("pull from %s failed: %s", puller.url, _why(exc, self.timeout))
            return exc
        if report.sync.fetched or report.sync.problems:
            log.info("pulled %d records from %s (%s); problems: %s", report.sync.fetched, puller.url,
                     "whole" if report.full else f"{len(report.drilled)} buckets", report.sync.problems)
        return report

    def _settle(self, pulled: Sequence[tuple[SummaryPuller, SummaryRound | Exception]],
                followed: Sequence[FollowReport]) -> None:
        """The regions' health after their rounds, and a fresh context for each after silence or many rounds."""
        for puller, result in pulled:
            if isinstance(result, Exception):
                puller.health.failed(_problem(puller.url, result))
            else:
                puller.health.went_well()
            self.links[puller.url].settled(not _unanswered(result))
        for report in followed:
            self.links[report.upstream].settled(
                report.problem is None or report.problem.get("code") != Unreachable.code)

    async def run(self, interval: float) -> None:
        """Pull or follow every upstream each `interval`, until cancelled: each region on a loop of its own, so a
        slow or unreachable region holds up none of the others; one whose round is still under way after
        `interval` is shown `unreachable` meanwhile."""
        sizes = {puller.url: RequestSize(timeout=self.timeout) for puller in self.pullers}
        loops = [self._region_loop(interval, sizes, puller=p) for p in self.pullers]
        loops += [self._region_loop(interval, sizes, follower=f) for f in self.followed.values()]
        try:
            await asyncio.gather(*loops)  # each loop runs until cancelled: its failures are its region's health
        finally:
            self.verifier.close()
            await self.close()

    async def _region_loop(self, interval: float, sizes: dict[str, RequestSize], *,
                           puller: SummaryPuller | None = None, follower: RegionFollower | None = None) -> None:
        while True:
            await self._region_round(interval, sizes, puller=puller, follower=follower)
            await asyncio.sleep(interval)

    async def _region_round(self, interval: float, sizes: dict[str, RequestSize], *,
                            puller: SummaryPuller | None = None, follower: RegionFollower | None = None) -> None:
        """One round of one region; if the region has answered nothing for `interval` of a round under way, it is
        shown unreachable until the round ends (a hung host, or one dropping packets, answers nothing for up to the
        request timeout). A round that takes longer, its answers coming (a region's first pull, a slow link), is
        no reason: the region answers."""
        region: SummaryPuller | RegionFollower | None = puller or follower
        assert region is not None
        async with self.using(region.url) as ctx:
            job: Awaitable[Any]
            if puller is not None:
                job = self._pull(puller, ctx, sizes, self.links[puller.url].lanes)
            else:
                assert follower is not None
                job = follow_all([follower], ctx)
            task = asyncio.ensure_future(job)
            try:
                link = self.links[region.url]
                seen, told = link.answered, False
                while not (await asyncio.wait({task}, timeout=interval))[0]:
                    answered = link.answered
                    if answered == seen and not told:
                        region.health.failed(Unreachable(
                            f"regional hub {region.url} has not answered a round under way for {interval:g} s "
                            f"(requests time out after {self.timeout:g} s)",
                            hint="check that it runs and the upstream address").to_dict())
                        told = True
                    seen = answered
                result: Any = await task
            except BaseException:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                raise
        if puller is not None:
            self._settle([(puller, result)], [])
        else:
            self._settle([], result)

    async def close(self) -> None:
        for link in self.links.values():
            await link.close()

    def register(self, app: web.Application) -> None:
        app.router.add_get("/api/regions", self._http_regions)
        app.router.add_get("/api/regions/{hub}", self._http_region)
        app.router.add_post("/api/regions/{hub}/resume", self._http_resume)
        app.router.add_get("/api/regions/{hub}/records/{device}/{seq}", self._http_record)

    def follower(self, hub_hex: str) -> RegionFollower:
        hub_id = HUB_PARAM.read(hub_hex)
        follower = self.followed.get(hub_id)
        if follower is None:
            raise UnknownRegion(f"no region with hub id {hub_id.hex()} is followed by its checkpoints",
                                hint="GET /api/regions lists them; the hub's config names them in `upstream`")
        return follower

    async def _http_region(self, request: web.Request) -> web.Response:
        """One region followed by its checkpoints: its state, the checkpoints accepted since its last resume, every
        split view caught (both signed checkpoints, their sizes and times) and every operator's resume"""
        follower = self.follower(request.match_info["hub"])
        return web.json_response(await asyncio.to_thread(follower.to_json, history=True))

    async def _http_resume(self, request: web.Request) -> web.Response:
        """Operator: follow a region again after a split view, from its current signed checkpoint; answers the
        decision kept, with what the region's log no longer holds of what was accepted before"""
        follower = self.follower(request.match_info["hub"])
        body = await read_decision(request, ("by", "why"),
                                   "expected JSON {by: the operator's name, why: what was looked at and decided}")
        # One line each in the hub's log and the store: line breaks and runs of spaces become one space.
        by, why = (" ".join(body[k].split()) for k in ("by", "why"))
        async with self.using(follower.url) as ctx:
            decision = await follower.resume(ctx, by=by[:200], why=why[:2000], token=token_digest(request)[:16])
        return web.json_response(decision.to_json())

    async def _http_regions(self, request: web.Request) -> web.Response:
        """The regions pulled or followed by their checkpoints: each one's state and why its rounds fail, if they
        do; for those followed the last checkpoint accepted and any split view caught"""
        regions = [f.to_json() for f in self.followed.values()]
        # A pulled region's hub id is its pinned key's, when its entry pins one (`jejak hub regions list` shows it).
        regions += [{"url": p.url, "mode": "records", "state": p.health.state("pulled"),
                     **({"hub": p.health.hub_id.hex()} if p.health.hub_id is not None else {}),
                     "problem": p.health.trouble.to_json() if p.health.trouble is not None else None}
                    for p in self.pullers]
        return web.json_response({"regions": regions})

    async def _http_record(self, request: web.Request) -> web.Response:
        """One record of a followed region, proved to be in its log under a checkpoint consistent with the ones
        accepted from it"""
        hub_id = HUB_PARAM.read(request.match_info["hub"])
        device_id = DEVICE_PARAM.read(request.match_info["device"])
        at = SEQ_PARAM.read(request.match_info["seq"])
        follower = self.follower(hub_id.hex())
        async with self.using(follower.url) as ctx:
            found = await follower.record(ctx, device_id, at)
        return web.json_response(found.to_json())
