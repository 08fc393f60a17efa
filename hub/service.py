"""The hub's core: enrollment, verified ingest, the global Merkle log, checkpoints, proofs and exports."""

from __future__ import annotations

import contextlib
import io
import itertools
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Protocol

from ledger import (
    BadSignature,
    BundleEncoder,
    ChainState,
    Checkpoint,
    LedgerError,
    LogExport,
    MerkleTree,
    Record,
    RevokedKey,
    Signer,
    UnknownKey,
    check_signatures,
    decode_checkpoint,
    decode_record,
    device_id_for,
    leaf_hash,
    make_receipt,
    sign_checkpoint,
)
from ledger.acceptance import Accepted, SignatureCheck, accept
from ledger.authority import Authority, AuthorityWriter, Decision
from ledger.enroll import EnrollRequest, read_enroll_request
from ledger.errors import BadCheckpoint
from ledger.merkle import node_hash
from ledger.sync import Head

from .clock import DeviceClocks, HubClock
from .collector import collection_deferred
from .lastsigned import LastSigned, OlderStore, holds
from .pending import PendingLimits, Waiting, address_of, expired, sent_from
from .store import Batch, DamagedRecord, DeviceInfo, HubStore, LogAppend, refuse_damaged

log = logging.getLogger("jejak.hub")


class TailRefused(LedgerError):
    """Records offered to make a restored hub's log whole again (`Hub.take_back`) are not the tail of the
    checkpoint it lost: not as many as it names, another root with them, or records its log refuses."""

    code = "RESTORE_TAIL"
    coap = "4.22"
    http = 422
    exit_code = 91


class HubError(LedgerError):
    """A request the hub refuses: an enrollment for another hub, a bad device id, a message that names
    another device than its URL."""

    code = "HUB_ERROR"
    coap = "4.00"
    http = 400
    exit_code = 50


class NotFound(HubError):
    """A record, proof or checkpoint the hub does not have (yet)."""

    code = "NOT_FOUND"
    coap = "4.04"
    http = 404
    exit_code = 51


class NotEnrolled(UnknownKey):
    """Records or a query for a device that is not enrolled at this hub."""

    code = "UNKNOWN_DEVICE"
    coap = "4.03"
    http = 403


class WrongHubKey(LedgerError):
    """The store was written by a hub with another key than the one this hub was started with: a hub's key is
    its identity and never rotates, so starting would begin a second, empty own log beside the first and lose
    every decision of the first (approvals, revocations) without a word."""

    code = "HUB_KEY_MISMATCH"
    coap = "5.00"
    http = 500
    exit_code = 87


class NotPending(HubError):
    """A rejection of a device whose request is not waiting: approved (revoke it instead), forked or revoked. A
    request already rejected or expired is gone: UNKNOWN_DEVICE."""

    code = "NOT_PENDING"
    coap = "4.09"
    http = 409


class DeviceBlocked(LedgerError):
    """A device whose records are held back (pending approval, or its log forked) until an operator acts."""

    code = "DEVICE_BLOCKED"
    coap = "4.09"
    http = 409
    exit_code = 37


# What an enrollment request may carry in its text fields: a request is anyone's to send, and what it says is
# stored, listed to the public (/api/devices) and logged.
ENROLL_TEXT = {"site": 128, "role": 64, "name": 200}


def check_enroll_text(req: EnrollRequest) -> None:
    """HUB_ERROR for a site, role or name past its length in ENROLL_TEXT or holding characters that do not print
    (line breaks, controls)."""
    for field_name, most in ENROLL_TEXT.items():
        value: str = getattr(req, field_name)
        if len(value) > most or not value.isprintable():
            shown = value[:40].encode("unicode_escape").decode()
            raise HubError(f"enrollment request: {field_name} expected at most {most} printable characters, got "
                           f"{len(value)} starting {shown!r}",
                           hint=f"shorten the device's {field_name} and enroll again")


@dataclass(frozen=True, slots=True, kw_only=True)
class IngestResult:
    device: str
    accepted: int
    duplicates: int
    length: int
    size: int
    problem: dict[str, str] | None = None
    fork: bool = False
    http: int = 200  # the HTTP status of the problem's class (docs/ERRORS.md), 200 without one

    def to_json(self) -> dict[str, Any]:
        return {"device": self.device, "accepted": self.accepted, "duplicates": self.duplicates,
                "length": self.length, "size": self.size, "problem": self.problem, "fork": self.fork}


@dataclass(slots=True)
class Listeners:
    on_records: list[Callable[[list[Record], int], None]] = field(default_factory=list)
    on_checkpoint: list[Callable[[Checkpoint], None]] = field(default_factory=list)
    on_device: list[Callable[[DeviceInfo], None]] = field(default_factory=list)  # status changed


@dataclass(slots=True)
class _Pending:
    """What the writer has verified and not committed yet: logs' records in global order with their leaf
    hashes, each log's state after them, and counter increments. Later ranges of the same call read a log's
    state and records from here, so one commit can hold many ranges, of one log or of many."""

    appends: list[LogAppend] = field(default_factory=list)
    states: dict[bytes, ChainState] = field(default_factory=dict)
    records: dict[bytes, list[Record]] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    leaves: int = 0

    def add(self, part: LogAppend) -> None:
        self.appends.append(part)
        self.states[part.device_id] = part.state
        self.records.setdefault(part.device_id, []).extend(part.records)
        self.leaves += len(part.leaves)

    def bump(self, counter: str, by: int = 1) -> None:
        if by:
            self.counters[counter] = self.counters.get(counter, 0) + by


@dataclass(slots=True)
class _Commit:
    """One commit of what the writer held, and the leaves and tile roots the tree takes once it is durable."""

    batch: Batch
    leaves: list[bytes]
    tiles: list[bytes]


@dataclass(slots=True)
class _Offer:
    """One range offered to `Hub.ingest`, waiting for a commit (its own or another thread's group)."""

    device_id: bytes
    raws: Sequence[bytes]
    check: SignatureCheck
    result: IngestResult | None = None
    error: BaseException | None = None
    told: list[tuple[list[Record], int]] = field(default_factory=list)
    listeners: list[Callable[[list[Record], int], None]] = field(default_factory=list)
    done: bool = False


class AheadVerifier(Protocol):
    """Checks signatures of many ranges ahead, on other cores (hub/verify.py:CrossLogVerifier)."""

    def ahead(self, items: Sequence[tuple[bytes, Sequence[bytes]]],
              keys: dict[bytes, bytes]) -> list[SignatureCheck]: ...


def log_tree(store: HubStore) -> MerkleTree:
    """The hub's Merkle tree over its store: whole tiles of leaves stay in the store, not in memory (a byte
    per record instead of 64), and a proof of an old record reads its tile's 64 leaf hashes back.

    Start-up reads the kept tile roots (one hash per 64 leaves) and only the leaves after the last of them,
    so it costs the same with ten million leaves as with ten thousand; tiles not kept yet (a store from
    before they were, a crash between a commit and its tiles) are kept now."""
    size = store.size()
    roots = list(itertools.islice(store.tiles(), size >> TILE_HEIGHT))  # a store restored to fewer leaves
    tree = MerkleTree.resume(roots, read_leaves=lambda start, end: list(store.leaf_hashes(start, end)),
                             tile_height=TILE_HEIGHT)
    for h in store.leaf_hashes(len(tree)):
        tree.append_hash(h)
    keep_tiles(store, tree, len(roots))
    return tree


def keep_tiles(store: HubStore, tree: MerkleTree, kept: int) -> int:
    """Keep the roots of the tiles the tree closed since `kept`; return how many tiles are kept now."""
    if tree.tiles > kept:
        store.put_tiles(kept, [tree.tile_root(i) for i in range(kept, tree.tiles)])
    return tree.tiles


def closing_tiles(tree: MerkleTree, leaves: Sequence[bytes]) -> list[bytes]:
    """The roots of the whole tiles that appending `leaves` to `tree` closes, computed beside the tree: they go
    in the same commit as the leaves, before the tree takes them."""
    width = 1 << TILE_HEIGHT
    start = tree.tiles * width
    end = (len(tree) + len(leaves)) // width * width  # the end of the last whole tile after them
    if end <= start:
        return []
    row = [tree.leaf(i) for i in range(start, len(tree))]
    row.extend(leaves[:end - len(tree)])
    roots = []
    for start in range(0, len(row), width):
        level = row[start:start + width]
        while len(level) > 1:
            level = [*map(node_hash, level[::2], level[1::2])]
        roots.append(level[0])
    return roots


TILE_HEIGHT = 6


TAKE_BACK_BATCH = 4096  # records of a restore's tail merged and committed together
PENDING_RECOUNT_S = 5.0  # how stale the count of devices waiting for approval may be when an enrollment asks
KNOCK_LOG_S = 600  # a refused device is logged at most this often (hub time), per cause


class Hub:
    """Single writer of the hub's log. Thread-safe: ingest runs off the event loop."""

    def __init__(self, store: HubStore, signer: Signer, *, clock: Callable[[], int],
                 auto_approve: bool = False, pending: PendingLimits = PendingLimits(),
                 check: SignatureCheck = check_signatures, last_signed: LastSigned | None = None,
                 device_clocks: DeviceClocks | None = None) -> None:
        self.store = store
        self.check = check
        self.signer = signer
        self.clock = clock
        # Each device's clock at its last sync (`HubHolder.device_clock`).
        self.device_clocks = device_clocks if device_clocks is not None else DeviceClocks()
        self.auto_approve = auto_approve
        self.pending = pending  # how many enrolled keys may wait for approval, from where, and for how long
        self._enrolling = threading.Lock()
        self._pending_seen: tuple[Waiting, float] | None = None  # (devices waiting, monotonic time counted)
        self.hub_id = device_id_for(signer.public_key)
        self.listeners = Listeners()
        self._lock = threading.RLock()
        self._busy_s = 0.0  # seconds the writer has held the lock for ingest (`writer_busy_s`)
        self._offers: list[_Offer] = []  # ranges offered to `ingest` and not merged yet, oldest first
        self._offered = threading.Condition(threading.Lock())  # guards the offers and who commits them
        self._leading = False  # a thread is committing a group of offers
        self._failed_commits = 0
        self._knocks: dict[tuple[bytes, str], int] = {}  # refused device and cause -> hub time last logged
        self._unlogged: dict[tuple[bytes, str], int] = {}  # refusals since that line, per key of _knocks
        self.tree = log_tree(store)
        self._pending = _Pending()
        cps = [decode_checkpoint(raw) for raw in store.checkpoints()]
        self._checkpoints = sorted(cps, key=lambda c: (c.tree_size, c.time))
        if self._checkpoints and (other := self._checkpoints[-1].hub_id) != self.hub_id:
            raise WrongHubKey(
                f"this store was written by hub {other.hex()}, but the key this hub was started with is hub "
                f"{self.hub_id.hex()}'s",
                hint="put back the hub.key this store was written with (from the backup of data_dir), or start "
                     "the other key with a data_dir of its own; a hub's key never changes")
        # Before anything is signed or written: a store restored from an older copy than the last checkpoint
        # signed (kept outside the store) is refused here, not found out by the national hub as a split view.
        self._last_signed = last_signed
        self.signing_stopped: OlderStore | None = None  # an edge presented a checkpoint this log does not hold
        self._older_told = False
        if last_signed is not None:
            last_signed.hold(self.tree, self._checkpoints[-1] if self._checkpoints else None)
        self._taking_back = False  # merging a restore's lost tail (`take_back`)
        self._own = self._open_own_log()

    # the hub's own log --------------------------------------------------------------------------------------
    def _open_own_log(self) -> AuthorityWriter:
        """The hub's own log (device id = hub id): its decisions about devices and its attestations, leaves
        of its tree like every record, so checkpoints and receipts cover them (FORMAT.md §6.2)."""
        state = self.store.chain_state(self.hub_id)
        length = state.length if state else 0
        records = [decode_record(raw) for start in range(0, length, 4096)
                   for raw in self.store.log_range(self.hub_id, start, min(length, start + 4096))]
        # Each start is a new boot of this log: boot counters never go backwards.
        own = AuthorityWriter(self.signer, clock=self.clock, records=records, boot=state.boot + 1 if state else 0)
        if not records:
            self._append_own(own, [own.genesis()])
        return own

    @property
    def authority(self) -> Authority:
        """What the hub's own log says about devices: the one source of revocation points."""
        return self._own.authority

    def own_log(self) -> list[Record]:
        return list(self._own.authority.records)

    def append_own(self, kind: str, bodies: Sequence[dict[str, Any]]) -> list[Record]:
        """Sign records of the hub's own log (attestations) and merge them into the tree in one commit."""
        with self._lock:
            try:
                records = [self._own.append(kind, body) for body in bodies]
                self._append_own(self._own, records)
            except Exception:
                self._own = self._open_own_log()  # the writer ran ahead of the store: back to what it holds
                raise
            listeners = list(self.listeners.on_records)
        self._notify(listeners, records, self.clock())
        return records

    def _decide(self, decision: Decision) -> Record:
        return self._decide_many([decision])[0]

    def _decide_many(self, decisions: Sequence[Decision]) -> list[Record]:
        """Sign `decisions` into the hub's own log, in order, and commit them together."""
        if not decisions:
            return []
        with self._lock:
            try:
                records = [self._own.decide(decision) for decision in decisions]
                self._append_own(self._own, records)
            except Exception:
                self._own = self._open_own_log()
                raise
            listeners = list(self.listeners.on_records)
        self._notify(listeners, records, self.clock())
        return records

    def _append_own(self, own: AuthorityWriter, records: list[Record]) -> None:
        """Commit the hub's own records, after whatever the writer holds verified before them."""
        self._pending.add(LogAppend.of(self.hub_id, records, own.state, self.clock()))
        self._flush()

    def _flush(self) -> None:
        """Commit what the writer holds in one transaction (with the roots of the tiles it closes), then append
        its leaves to the tree.

        The tree follows the store, never runs ahead of it: a failed commit leaves both as they were, and the
        pending work is dropped (the senders' resends are safe)."""
        commit = self._prepared()
        if commit is not None:
            try:
                self.store.commit(commit.batch)
            except BaseException:
                self._failed_commits += 1
                raise
            self._grow(commit)

    def _prepared(self) -> _Commit | None:
        """What the writer holds as one commit, taken out of its hands: if the commit fails it is dropped."""
        pending, self._pending = self._pending, _Pending()
        if not (pending.appends or pending.counters):
            return None
        leaves = [leaf for part in pending.appends for leaf in part.leaves]
        tiles = closing_tiles(self.tree, leaves)
        return _Commit(batch=Batch(appends=pending.appends, first_tile=self.tree.tiles, tiles=tiles,
                                   counters=pending.counters), leaves=leaves, tiles=tiles)

    def _grow(self, commit: _Commit) -> None:
        """Append a durable commit's leaves to the tree."""
        leaves, tiles = commit.leaves, commit.tiles
        # The tiles the commit closed go into the tree by the roots just kept: each leaf is hashed into its
        # tile once. The first may have begun before this commit; the tree completes that one leaf by leaf.
        append = self.tree.append_hash
        width = 1 << TILE_HEIGHT
        head = min(len(leaves), -len(self.tree) % width) if tiles else len(leaves)
        for leaf in leaves[:head]:
            append(leaf)
        whole = tiles[1:] if head and tiles else tiles
        if whole:
            self.tree.append_tiles(whole)
        for leaf in leaves[head + len(whole) * width:]:
            append(leaf)

    def listen(self, listener: Callable[[list[Record], int], None]) -> int:
        """Tell `listener` every record accepted from now on; return the log's size now. Each record at or
        above that index is told to it and none below: a commit tells the listeners there were when it was
        made, after the writer's lock is let go."""
        with self._lock:
            self.listeners.on_records.append(listener)
            return len(self.tree)

    def _tell(self, listeners: Sequence[Callable[[list[Record], int], None]],
              told: Sequence[tuple[list[Record], int]]) -> None:
        """Tell `listeners` each group of records accepted, with when it arrived (`_arrivals`)."""
        for records, arrived_at in told:
            self._notify(listeners, records, arrived_at)

    def _notify(self, listeners: Sequence[Callable[[list[Record], int], None]], records: list[Record],
                now: int) -> None:
        for listener in listeners:
            try:
                listener(records, now)
            except Exception:  # a listener must never undo or block an accepted ingest
                log.exception("record listener failed")

    # enrollment ---------------------------------------------------------------------------------------------
    def enroll(self, request: bytes, *, source: str = "") -> DeviceInfo:
        """Store the device a signed enrollment request names, pending an operator's approval (or approved, with
        `auto_approve`); `source` is the address the request came from, bounded by `pending` and kept."""
        req = read_enroll_request(request)
        if req.hub != self.hub_id:
            raise HubError(f"enrollment request is for hub {req.hub.hex()}, this is hub {self.hub_id.hex()}",
                           hint="provision the device with this hub's QR code")
        existing = self.store.get_device(req.device_id)
        if existing is not None:
            return existing
        check_enroll_text(req)
        device = DeviceInfo(device_id=req.device_id, pubkey=req.pubkey, site=req.site, role=req.role,
                            name=req.name, enrolled_at=self.clock(),
                            status="active" if self.auto_approve else "pending", source=address_of(source))
        if device.status == "active":
            self._approve(device)
            self.store.put_device(device)
        else:
            with self._enrolling:
                waiting = self._waiting()
                if device.device_id != self.hub_id:  # the hub's own log, listed once at its first start
                    waiting.check(device.source, self.pending, "enrolled keys")
                self.store.put_device(device)
                waiting.add(device.source)
        log.info("enrollment request from %s (%s at %s): %s%s", req.device_id.hex(), req.role, req.site,
                 device.status, f", sent from {device.source}" if device.source else "")
        return device

    def _waiting(self) -> Waiting:
        """The devices waiting for approval, counted in all and by source: recounted at most every
        PENDING_RECOUNT_S (a count reads every pending device) and after every change of standing (`_set`), kept
        up to date in between by the enrollments made here. A recount first drops the requests that waited past
        `pending.expire_s`."""
        now = time.monotonic()
        if self._pending_seen is None or now - self._pending_seen[1] > PENDING_RECOUNT_S:
            waiting = self.store.pending_devices()
            if any(self._expired(d) for d in waiting):
                dropped = {d.device_id for d in self._drop_expired(waiting)}
                waiting = [d for d in waiting if d.device_id not in dropped]
            self._pending_seen = (Waiting.of(d.source for d in waiting if d.device_id != self.hub_id), now)
        return self._pending_seen[0]

    def _expired(self, device: DeviceInfo) -> bool:
        return device.device_id != self.hub_id and expired(device.enrolled_at, self.clock(), self.pending)

    def expire_pending(self) -> list[DeviceInfo]:
        """Drop the enrollment requests that waited for approval past `pending.expire_s`: their places are free
        again, with no operator. A request that was never approved is no decision (FORMAT.md §6.2), so the hub's
        own log is not touched; a device approved meanwhile stays."""
        with self._enrolling:
            return self._drop_expired(self.store.pending_devices())

    def reject(self, device_id: bytes | None = None, *, source: str | None = None) -> list[DeviceInfo]:
        """An operator's no to enrollment requests: drop the request of `device_id`, or every request waiting
        that was sent from `source` (an address, or a network as `10.1.2.0/24`): a LAN host's flood of made-up
        keys is cleared in one go instead of holding its places until they expire. As with expiry nothing is
        signed: a request never approved is no decision (FORMAT.md §6.2), whereas revoking each made-up key would
        keep it in the hub's log and its revocation list for good. A real device rejected by mistake enrolls
        again. NOT_PENDING for a device that is not waiting (an approved one is revoked instead)."""
        if (device_id is None) == (source is None):
            raise HubError("reject: name one device or one source, not both")
        with self._enrolling:
            if device_id is not None:
                device = self._device(device_id)
                if device.status != "pending" or device_id == self.hub_id:
                    raise NotPending(f"device {device_id.hex()} is {device.status}, not waiting for approval",
                                     hint="an approved device is stopped with `jejak devices revoke`")
                chosen = [device_id]
            else:
                assert source is not None
                try:
                    within = sent_from(source)
                except ValueError:
                    raise HubError(f"reject: source must be an IP address or a network such as 10.1.2.0/24, got "
                                   f"{source[:64]!r}") from None
                chosen = [d.device_id for d in self.store.pending_devices()
                          if d.device_id != self.hub_id and d.source and within(d.source)]
            return self._dropped(chosen, "rejected by an operator")

    def _drop_expired(self, waiting: Sequence[DeviceInfo]) -> list[DeviceInfo]:
        return self._dropped([d.device_id for d in waiting if self._expired(d)],
                             f"nobody approved within {self.pending.expire_s} s")

    def _dropped(self, device_ids: Sequence[bytes], why: str) -> list[DeviceInfo]:
        """Drop those of `device_ids` still pending, say so, and tell the listeners (their OSCORE contexts go)."""
        dropped = self.store.drop_pending(*device_ids) if device_ids else []
        if dropped:
            self._pending_seen = None
            sources = Counter(d.source or "this host" for d in dropped)
            log.info("%d enrollment requests dropped, %s (sent from %s)", len(dropped), why,
                     ", ".join(f"{s} ({n})" for s, n in sources.most_common(5)))
            for device in dropped:
                for listener in self.listeners.on_device:
                    listener(device)
        return dropped

    def _approve(self, device: DeviceInfo) -> None:
        """Sign the approval into the hub's own log, once per device: what an auditor checks a log against."""
        if (decision := self._approval(device)) is not None:
            self._decide(decision)

    def _approval(self, device: DeviceInfo) -> Decision | None:
        """The decision that approves `device`, or None if the hub's own log approves its key already."""
        standing = self.authority.devices.get(device.device_id)
        if standing is not None and standing.key is not None:
            return None
        state = self.store.chain_state(device.device_id)
        return Decision(action="approve", device_id=device.device_id, from_seq=state.length if state else 0,
                        key=device.pubkey, site=device.site, role=device.role)

    def approve(self, device_id: bytes) -> DeviceInfo:
        """Admit an enrolled device. A revoked or withdrawn device stays refused from its revocation point (its
        key is not trusted again: enroll a new key to re-admit the place)."""
        device = self.admit([self._device(device_id)])[0]
        log.info("device %s (%s at %s) approved: %s", device_id.hex(), device.role, device.site,
                 "its records are accepted from now on" if device.revoked_from is None else
                 f"still refused from seq {device.revoked_from}, where it was revoked (enroll a new key)")
        return device

    def admit(self, devices: Sequence[DeviceInfo]) -> list[DeviceInfo]:
        """Admit `devices` (known to the store or not) together: their approvals signed into the hub's own log in
        one commit, then their standing stored in one write, so a national pull's many logs first seen from a
        region cost two synced writes, not a few each. The approvals come first: no device is stored active
        without its approval in the log. Each keeps its revocation point, as `approve`."""
        if not devices:  # a pull request with no new log: no write at all
            return []
        approvals: dict[bytes, Decision] = {}
        for device in devices:
            if device.device_id not in approvals and (decision := self._approval(device)) is not None:
                approvals[device.device_id] = decision
        self._decide_many(list(approvals.values()))
        admitted = []
        for device in devices:
            point = self.authority.revoked_from(device.device_id)
            admitted.append(device.with_status("active" if point is None else "revoked", revoked_from=point))
        return self._set(*admitted)

    def _set(self, *devices: DeviceInfo) -> list[DeviceInfo]:
        """Store devices' new standing in one write and tell the listeners (the OSCORE contexts follow it)."""
        self.store.put_device(*devices)
        self._pending_seen = None  # an approval or revocation: the next enrollment counts the waiting again
        for device in devices:
            for listener in self.listeners.on_device:
                listener(device)
        return list(devices)

    def revoke(self, device_id: bytes, from_seq: int | None = None) -> DeviceInfo:
        """Stop accepting the device's records from `from_seq` (default: everything not yet received)."""
        return self._withdraw("revoke", device_id, from_seq)

    def withdraw(self, device_id: bytes, from_seq: int | None = None) -> DeviceInfo:
        """Withdraw the device's approval from `from_seq` on (default: everything not yet received)."""
        return self._withdraw("withdraw", device_id, from_seq)

    def _withdraw(self, action: str, device_id: bytes, from_seq: int | None) -> DeviceInfo:
        if from_seq is not None and (type(from_seq) is not int or not 0 <= from_seq < 2**63):
            # A negative point would be signed into the revocation list, which every edge and jejak-verify
            # then refuse as malformed: later genuine revocations would never reach them.
            raise HubError(f"revocation point: expected a seq from 0 to 2**63 - 1, got {from_seq!r}")
        device = self._device(device_id)
        if device_id == self.hub_id:
            # Its own log attests the bridges' unsigned data: revoked, the hub could never start again, and a
            # revocation is never lifted.
            raise HubError(f"device {device_id.hex()} is this hub's own attestation log, not a device it can revoke",
                           hint="to stop the legacy bridges, set [bridges] enabled = false in the hub's config")
        state = self.store.chain_state(device_id)
        start = from_seq if from_seq is not None else (state.length if state else 0)
        self._decide(Decision(action=action, device_id=device_id, from_seq=start))
        point = self.authority.revoked_from(device_id)
        log.info("device %s (%s at %s): %s from seq %s; its records from there on are refused", device_id.hex(),
                 device.role, device.site, "revoked" if action == "revoke" else "approval withdrawn", point)
        return self._set(device.with_status("revoked", revoked_from=point))[0]

    def resolve_fork(self, device_id: bytes) -> DeviceInfo:
        """An operator's decision: accept the branch the hub holds and go on merging it."""
        device = self._device(device_id)
        if self._approval(device) is not None:
            # Resolving stores the device active: a key never approved would be admitted (its records taken, an
            # OSCORE context loaded) with no approval in the hub's own log, and every export would fail to verify.
            raise HubError(f"device {device_id.hex()} is {device.status} and its key was never approved; there is "
                           "no fork to resolve", hint=f"approve it: jejak devices approve {device_id.hex()}")
        point = self.authority.revoked_from(device_id)
        log.info("device %s (%s at %s): fork resolved, the branch the hub holds stands; its records are merged "
                 "again", device_id.hex(), device.role, device.site)
        return self._set(device.with_status("active" if point is None else "revoked", revoked_from=point))[0]

    def _device(self, device_id: bytes) -> DeviceInfo:
        device = self.store.get_device(device_id)
        if device is None:
            raise NotEnrolled(f"device {device_id.hex()} is not enrolled at this hub",
                              hint="enroll it with `jejak enroll` and approve the request")
        return device

    # ingest -------------------------------------------------------------------------------------------------
    def heads(self) -> list[Head]:
        """How far each log goes, as far as the hub can serve it: a log with a damaged record shows the head
        before it, so the edges and peers that hold more push the rest again and the good copy comes back."""
        damaged = self.store.damaged()
        heads = []
        for device in self.store.devices():
            state = self.store.chain_state(device.device_id)
            if state is None:
                continue
            first = damaged.get(device.device_id)
            heads.append(Head.of(state) if not first else self._intact_head(device.device_id, first[0]))
        return heads

    def heads_page(self, after: bytes, limit: int) -> tuple[list[Head], bytes | None]:
        """The heads of up to `limit` logs after device id `after`, as `heads` says them, and the device id to
        ask after for the next page (None at the end): a page reads its own logs only, not all of them."""
        states = self.store.states_after(after, limit)
        damaged = self.store.damaged()
        heads = []
        for state in states:
            if self.store.get_device(state.device_id) is None:
                continue  # the hub's own log and any log without a device are not offered, as in `heads`
            first = damaged.get(state.device_id)
            heads.append(Head.of(state) if not first else self._intact_head(state.device_id, first[0]))
        return heads, states[-1].device_id if len(states) == limit else None

    def _intact_head(self, device_id: bytes, length: int) -> Head:
        while length:
            try:
                record_id = self.store.record_id(device_id, length - 1)
            except DamagedRecord:
                length -= 1
                continue
            if record_id is not None:
                return Head(device_id=device_id, length=length, head=record_id)
            length -= 1
        return Head.of(ChainState.empty(device_id))

    def _restore(self, device_id: bytes, damaged: list[int], raws: Sequence[bytes]) -> None:
        """Put back every damaged record of which `raws` holds the good copy (the bytes of the id we hold)."""
        wanted = set(damaged)
        for raw in raws:
            try:
                rec = decode_record(raw)
            except LedgerError:
                continue
            if rec.device_id == device_id and rec.seq in wanted and self.store.repair(device_id, rec.seq, raw):
                self.store.bump("restored")
                log.warning("record restored: device %s seq %d is intact again from a good copy", device_id.hex(),
                            rec.seq)

    def _knocked(self, device_id: bytes, why: str, fix: str, *, any_id: bool = False) -> None:
        """Log a device whose records are refused, at most once per device and cause every KNOCK_LOG_S of hub
        time: the operator learns of it without a line per push. With `any_id` (a device id nobody enrolled,
        which any sender can make up anew for every push) at most once per cause whatever the device, with how
        many were refused since the last line: neither a log line nor a remembered id per made-up device."""
        key = (b"" if any_id else device_id, why)
        now = self.clock()
        if now - self._knocks.get(key, now - KNOCK_LOG_S) < KNOCK_LOG_S:
            self._unlogged[key] = self._unlogged.get(key, 0) + 1
            return
        self._knocks[key] = now
        others = self._unlogged.pop(key, 0)
        also = f" ({others} more such pushes since the last line)" if others else ""
        log.warning("device %s %s and keeps sending records; they are refused; to accept them: %s%s",
                    device_id.hex(), why, fix, also, extra={"fields": {"device": device_id.hex(), "fix": fix}})

    def _arrivals(self, records: list[Record]) -> list[tuple[list[Record], int]]:
        """When the listeners are told each accepted record arrived: all now, or, with a clock that follows
        records (a past day backfilled), each at its own time, so a day pushed in one go is not a late sync."""
        if not records:
            return []
        if not (isinstance(self.clock, HubClock) and self.clock.spec.follow_records):
            return [(records, self.clock())]
        out: list[tuple[list[Record], int]] = []
        for rec in records:
            self.clock.saw(rec.time, rec.device_id)
            at = self.clock()
            if out and out[-1][1] == at:
                out[-1][0].append(rec)
            else:
                out.append(([rec], at))
        return out

    @property
    def writer_busy_s(self) -> float:
        """Seconds the writer has spent ingesting so far (merging, waiting for the workers' signature checks,
        committing): its growth over a stretch of time, divided by that time, is how busy ingest keeps it. The
        read models hold their derivations back while it stays high (hub/views.py, Views._settle)."""
        return self._busy_s

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """The writer's lock, for ingest, with the time it is held counted in `writer_busy_s`. Its callers hold
        Python's cyclic garbage collector off (`collection_deferred`) from before they take it until the records
        they merged have been told to the listeners and let go: most of those records die then, whereas a
        collection while they were all still held walked every one of them (in a pull's batches, about a sixth
        of the writer's CPU time)."""
        with self._lock:
            started = time.perf_counter()
            try:
                yield
            finally:
                self._busy_s += time.perf_counter() - started

    def ingest(self, device_id: bytes, raws: Sequence[bytes], *,
               check: SignatureCheck | None = None) -> IngestResult:
        """Verify an offered range of one device's log and merge what extends it (`check`: signatures checked
        ahead, see hub/verify.py:CrossLogVerifier); return once it is durable and told to the listeners.

        Ranges offered by other threads meanwhile (many edges pushing at once) share the commit: whoever takes
        the writer's lock merges every range waiting, in the order they came, and commits them together, while
        the others wait for its answer, so a burst of small pushes costs one synced write per group instead of one
        per push (a group commit)."""
        me = _Offer(device_id=device_id, raws=raws, check=check or self.check)
        with self._offered:
            self._offers.append(me)
            while self._leading and not me.done:  # another thread is committing a group: wait for it
                self._offered.wait()
            lead = not me.done
            self._leading = self._leading or lead
        with collection_deferred():
            if lead:  # this thread commits every offer waiting, its own among them
                try:
                    with self._writing():
                        self._commit_offers()
                finally:
                    with self._offered:
                        self._leading = False
                        self._offered.notify_all()
            self._tell(me.listeners, me.told)
            me.told = []
        if me.error is not None:
            raise me.error
        assert me.result is not None
        return me.result

    def _commit_offers(self) -> None:
        """Merge every offered range waiting (`ingest`) and commit them together; each offer gets its result or
        the error that refused it. A failed commit fails every offer of the group (nothing of it is stored: the
        senders' resends are safe). Runs under the lock."""
        with self._offered:
            group, self._offers = self._offers, []
        try:
            for offer in group:
                failed = self._failed_commits
                try:
                    offer.result, offer.told = self._merge(offer.device_id, offer.raws, offer.check)
                except Exception as exc:  # this range alone is refused (or broke): the others still go,
                    if self._failed_commits != failed:  # unless a commit within it dropped what they merged
                        raise
                    offer.error = exc
            self._flush()
        except BaseException as exc:
            for offer in group:
                if offer.error is None:
                    offer.result, offer.told, offer.error = None, [], exc
            if not isinstance(exc, Exception):
                raise
        finally:
            listeners = list(self.listeners.on_records)
            for offer in group:
                offer.listeners, offer.done = listeners, True

    def ingest_many(self, items: Sequence[tuple[bytes, Sequence[bytes]]], *, verifier: AheadVerifier | None = None,
                    checks: Sequence[SignatureCheck | None] | None = None, whole: bool = False
                    ) -> list[IngestResult | LedgerError]:
        """Several offered ranges (a pull's logs, a burst of pushes) merged in order by the one writer and
        committed together: each range's result, or the error that refused it as `ingest` would raise it. With
        `whole`, the first range not taken whole ends the merge: the results stop at it (a restore's tail, whose
        order is the point).

        With `verifier`, every range's signatures go to the other cores first and the writer decodes and links
        each range while the workers check the next ones (Trillian's sequencer, fed by verifiers). `checks`:
        the ranges' signatures sent ahead earlier (`checks_ahead`), so that the workers checked them while the
        writer was busy with what came before."""
        if checks is None:
            checks = self.checks_ahead(items, verifier)
        with collection_deferred():
            with self._writing():
                try:
                    out, told = self._merge_many(items, checks, whole=whole)
                finally:
                    self._flush()
                listeners = list(self.listeners.on_records)
            self._tell(listeners, told)
            del told
        return out

    def _merge_many(self, items: Sequence[tuple[bytes, Sequence[bytes]]], checks: Sequence[SignatureCheck | None],
                    *, whole: bool = False) -> tuple[list[IngestResult | LedgerError], list[tuple[list[Record], int]]]:
        """Each range merged in order (`_merge`): its result or the error that refused it, and the records to tell
        the listeners once committed; with `whole`, up to the first range not taken whole. Runs under the lock."""
        out: list[IngestResult | LedgerError] = []
        told: list[tuple[list[Record], int]] = []
        for (device_id, raws), check in zip(items, checks, strict=True):
            try:
                result, arrivals = self._merge(device_id, raws, check or self.check)
            except LedgerError as exc:
                out.append(exc)
                if whole:
                    break
                continue
            out.append(result)
            told.extend(arrivals)
            if whole and result.accepted != len(raws):
                break
        return out, told


    def checks_ahead(self, items: Sequence[tuple[bytes, Sequence[bytes]]], verifier: AheadVerifier | None,
                     guessed: dict[bytes, bytes] | None = None) -> list[SignatureCheck | None]:
        """Each range's signatures sent to the verifier's workers with the key its log is expected to be signed
        with: the stored log's key, else one a new log's genesis named in an earlier call (`guessed`, which
        the verifier extends with this call's). Takes no lock: a guess decides nothing."""
        if verifier is None:
            return [None] * len(items)
        guessed = {} if guessed is None else guessed
        keys = dict(guessed)
        keys.update((device_id, state.key) for device_id in {d for d, _ in items}
                    if (state := self.store.chain_state(device_id)) is not None)
        checks: list[SignatureCheck | None] = list(verifier.ahead(items, keys))
        guessed.update(keys)
        return checks

    def _merge(self, device_id: bytes, raws: Sequence[bytes],
               check: SignatureCheck) -> tuple[IngestResult, list[tuple[list[Record], int]]]:
        """Verify one range against its log as held (committed and pending) and hold what extends it for the
        next commit. Runs under the lock."""
        pending = self._pending
        device = self.store.get_device(device_id)
        if device is None:
            pending.bump("refused_unknown", len(raws))
            self._knocked(device_id, "is not enrolled", "it enrolls with the QR text of `jejak enroll qr`, then "
                          f"approve it: jejak devices approve {device_id.hex()}", any_id=True)
            raise NotEnrolled(f"device {device_id.hex()} is not enrolled at this hub",
                              hint="enroll it with `jejak enroll` and approve the request")
        if device.status in ("pending", "forked"):
            pending.bump(f"refused_{device.status}", len(raws))
            self._knocked(device_id, f"is {device.status}", f"jejak devices approve {device_id.hex()}"
                          if device.status == "pending" else "look at its fork evidence (GET /api/forks), then: "
                          f"jejak devices resolve-fork {device_id.hex()}")
            raise DeviceBlocked(f"device {device_id.hex()} is {device.status}; records are held back",
                                hint="an operator must approve the device" if device.status == "pending" else
                                "an operator must resolve the fork")
        damaged = self.store.damaged().get(device_id)
        if damaged:
            self._flush()
            pending = self._pending
            self._restore(device_id, damaged, raws)
        state = (pending.states.get(device_id) or self.store.chain_state(device_id)
                 or ChainState.empty(device_id))
        held = _HeldLog(self.store, device_id, pending.records.get(device_id, ()))
        result: Accepted = accept(state, raws, held=held, revoked_from=self.authority.revoked_from(device_id),
                                  check=check)
        if result.records and result.records[0].seq == 0:
            genesis = result.records[0]
            if genesis.body is None or genesis.body.get("pubkey") != device.pubkey:
                pending.bump("refused_signature", len(raws))
                raise BadSignature("genesis key differs from the enrolled key", where=genesis.where)
        arrivals = self._arrivals(result.records)
        # Stored with the arrival times the listeners are told, so read models refilled from the store after a
        # restart judge the records as the live ones did. Each part carries the log's state after all of them:
        # the commit writes the parts in order, so the last state stays.
        for records, arrived_at in arrivals:
            pending.add(LogAppend(device_id=device_id, records=records, state=result.state,
                                  leaves=[leaf_hash(rec.raw) for rec in records], arrived_at=arrived_at))
        size = len(self.tree) + pending.leaves
        for rec in result.records:
            if rec.kind == "key" and rec.seq > 0 and rec.body is not None and not self._taking_back:
                self._decide(Decision(action="rotate", device_id=device_id, from_seq=rec.seq,
                                      key=rec.body["pubkey"]))
        problem, status = None, 200
        if result.fork is not None:
            self._flush()  # the evidence names a record the store must hold
            self.store.put_fork(device_id, result.fork.to_cbor())
            self.store.put_device(device.with_status("forked"))
            self._pending.bump("forks")
            error = result.fork.error()
            problem, status = error.to_dict(), error.http
        elif result.problem is not None:
            code = "revoked" if isinstance(result.problem, RevokedKey) else "invalid"
            self._pending.bump(f"refused_{code}", len(raws) - len(result.records) - result.duplicates)
            problem, status = result.problem.to_dict(), result.problem.http
        self._pending.bump("duplicates", result.duplicates)
        return IngestResult(device=device_id.hex(), accepted=len(result.records), duplicates=result.duplicates,
                            length=result.state.length, size=size, problem=problem,
                            fork=result.fork is not None, http=status), arrivals

    # checkpoints and proofs ---------------------------------------------------------------------------------
    def checkpoint(self, *, force: bool = False) -> Checkpoint | None:
        """Sign the log's size and root if it grew (or with `force`); None when it did not, or while signing is
        stopped (`witness` found the store older than a checkpoint this hub signed)."""
        with self._lock:
            if self.signing_stopped is not None:
                return None
            size = len(self.tree)
            latest = self.latest_checkpoint()
            if latest is not None and latest.tree_size == size and not force:
                return None
            cp = sign_checkpoint(self.signer, tree_size=size, root=self.tree.root(size), time=self.clock(),
                                 authority=self.authority.head)
            self.store.put_checkpoint(cp.tree_size, cp.time, cp.raw)
            self._checkpoints.append(cp)
            if self._last_signed is not None:
                try:
                    self._last_signed.keep(cp)
                except OSError as exc:  # signed and stored: a restore of an older store goes unnoticed until the next
                    log.error("the checkpoint of size %d is signed but could not be kept in %s (%s); a restore of "
                              "an older store is not caught until one is", cp.tree_size, self._last_signed.path, exc)
        for listener in self.listeners.on_checkpoint:
            try:
                listener(cp)
            except Exception:
                log.exception("checkpoint listener failed")
        return cp

    def witness(self, presented: bytes) -> tuple[Checkpoint, list[bytes]]:
        """Answer an edge that presents the checkpoint of this hub it holds (FORMAT.md §10.2; empty: none): the
        checkpoint it should hold from now on, no smaller than its own, and the consistency proof from its own
        to that one. A checkpoint this hub signed whose size and root its log does not hold shows the log was
        restored from an older copy (the whole data_dir, so the check at start passed): signing stops, said
        once CRITICAL, and the edge is answered HUB_STORE_OLDER; records are still taken."""
        with self._lock:
            latest = self.latest_checkpoint()
            if not presented:
                if self.signing_stopped is not None:  # its log is not the one it signed for: show none of it
                    raise self.signing_stopped
                if latest is None:
                    raise NotFound("no checkpoint signed yet", hint="ask again after the hub's next checkpoint")
                return latest, []
            cp = decode_checkpoint(presented)
            try:
                cp.verify(self.signer.public_key)
            except BadCheckpoint as exc:
                raise BadCheckpoint(f"the presented checkpoint is not this hub's: {exc.message}",
                                    hint="an edge presents only checkpoints of the hub it is enrolled with") from None
            if not holds(self.tree, cp):
                lost = self._last_signed.lost_entry(cp) if self._last_signed is not None else None
                if lost is not None:  # accepted as lost by the operator: said to the edge, signing goes on
                    assert self._last_signed is not None
                    raise self._last_signed.lost_answer(self.tree, cp, lost)
                raise self._older_store(cp)
            if latest is None or latest.tree_size < cp.tree_size:
                return cp, []  # signed before the restore and held again, in the same order: nothing to prove
            return latest, self.tree.consistency_proof(cp.tree_size, latest.tree_size)

    def _older_store(self, cp: Checkpoint) -> OlderStore:
        if self.signing_stopped is not None:
            return self.signing_stopped  # said once
        if self._last_signed is not None:
            err = self._last_signed.presented(self.tree, cp, self.latest_checkpoint())
            if self._last_signed.accept_older:  # the operator started this hub knowing: signing goes on
                if not self._older_told:
                    self._older_told = True
                    log.warning("%s; this hub was started with --accept-older-store, so it goes on signing; edges "
                                "holding a checkpoint of the old log are answered HUB_STORE_OLDER", err.message)
                return err
        else:
            err = OlderStore(f"an edge presented a checkpoint of this hub of size {cp.tree_size} that its log of "
                             f"{len(self.tree)} records does not hold: the store was restored from an older copy",
                             where="store")
        self.signing_stopped = err
        log.critical("signing stopped: %s; records are still accepted; fix: %s", err.message, err.hint,
                     extra={"fields": {"code": err.code, "presented": cp.to_json(), "size": len(self.tree)}})
        return err

    def latest_checkpoint(self) -> Checkpoint | None:
        return self._checkpoints[-1] if self._checkpoints else None

    def take_back(self, lost: Checkpoint, tail: Sequence[tuple[bytes, bytes]], *, dry_run: bool = False
                  ) -> Checkpoint:
        """Make the log whole again after a restore from an older copy: append `tail`, the `(device id, record)`
        pairs of the leaves from this log's size to `lost.tree_size` in the lost log's order (from audit bundles
        exported before the loss, hub/restore.py), after checking that with them the tree's root at that size is
        the root of `lost`, a checkpoint this hub signed. Every record is verified again as it is merged, through
        the acceptance path: a device's against its log, the hub's own (approvals, revocations, attestations)
        against the hub's key, and each decision taken back takes effect again (`_stand`). `lost` is then the
        latest checkpoint signed, and signing goes on where it stood. Nothing is written when the root differs
        (TailRefused), nor with `dry_run`, which stops once the root is checked."""
        with self._lock:
            lost.verify(self.signer.public_key)
            size = len(self.tree)
            if holds(self.tree, lost):
                return self._held_again(lost)
            if size + len(tail) != lost.tree_size:
                raise TailRefused(f"the lost checkpoint is of {lost.tree_size} records and this log holds {size}: "
                                  f"{lost.tree_size - size} are missing, {len(tail)} were offered",
                                  hint="offer the records from this log's size to the checkpoint's")
            for i, (device_id, raw) in enumerate(tail):
                if (of := decode_record(raw).device_id) != device_id:
                    raise TailRefused(f"the record at leaf {size + i} is of device {of.hex()}, offered as device "
                                      f"{device_id.hex()}", hint="offer each record with its own device id")
            scratch = log_tree(self.store)
            for _device, raw in tail:
                scratch.append_hash(leaf_hash(raw))
            if scratch.root() != lost.root:
                raise TailRefused(f"with the {len(tail)} records offered, this log's root at size {lost.tree_size} "
                                  f"is {scratch.root().hex()[:16]}..., not the lost checkpoint's "
                                  f"{lost.root.hex()[:16]}...: they are not its records, or not in its order",
                                  hint="take the tail from bundles this hub exported, which give its log's order")
            if dry_run:
                return lost
            ranges = [(device_id, [raw for _device, raw in group])
                      for device_id, group in itertools.groupby(tail, key=lambda pair: pair[0])]
            self._taking_back = True  # a device's key record brings no new decision: the tail holds the one made
            try:
                batch: list[tuple[bytes, list[bytes]]] = []  # devices' ranges, committed together: not a fsync each
                held = 0
                for device_id, raws in ranges:
                    if device_id != self.hub_id:
                        batch.append((device_id, raws))
                        held += len(raws)
                    if batch and (device_id == self.hub_id or held >= TAKE_BACK_BATCH):
                        self._take_back_devices(batch)
                        batch, held = [], 0
                    if device_id == self.hub_id:
                        self._take_back_own(raws)
                if batch:
                    self._take_back_devices(batch)
            finally:
                self._taking_back = False
            assert holds(self.tree, lost)
            return self._held_again(lost)

    def _take_back_devices(self, ranges: Sequence[tuple[bytes, list[bytes]]]) -> None:
        """Merge devices' ranges of a lost tail in order and commit them together, each taken whole."""
        for (device_id, raws), result in zip(ranges, self.ingest_many(ranges, whole=True), strict=False):
            taken, problem = ((0, f"{result.code}: {result.message}") if isinstance(result, LedgerError)
                              else (result.accepted, result.problem))
            if taken != len(raws):
                raise TailRefused(f"device {device_id.hex()} took {taken} of the {len(raws)} records of the lost "
                                  f"log offered for it ({problem})",
                                  hint="the log now holds the records before them; see the problem")

    def _take_back_own(self, raws: list[bytes]) -> None:
        """Merge a range of the hub's own log from a lost tail: verified with the hub's key as the next records of
        its log, committed, and its decisions in force again."""
        state = self.store.chain_state(self.hub_id) or ChainState.empty(self.hub_id)
        result = accept(state, raws, check=self.check)
        if len(result.records) != len(raws):
            raise TailRefused(f"the hub's own log took {len(result.records)} of the {len(raws)} records of it "
                              f"offered ({result.problem})",
                              hint="the log now holds the records before them; see the problem")
        try:
            for rec in result.records:
                self._own.follow(rec)
            self._append_own(self._own, result.records)
        except Exception:
            self._own = self._open_own_log()
            raise
        self._stand(result.records)
        self._notify(list(self.listeners.on_records), result.records, self.clock())

    def _stand(self, records: Sequence[Record]) -> None:
        """Store the standing the decisions among `records` (the hub's own, taken back) give their devices: an
        approval admits the device (made from the decision, without its name, where the store lost its
        enrollment), a revocation or withdrawal refuses it from its point. A forked device stays forked."""
        changed: dict[bytes, DeviceInfo] = {}
        for rec in records:
            if rec.kind != "authority":
                continue
            decision = Decision.of(rec)
            if decision.action == "rotate":
                continue
            device = changed.get(decision.device_id) or self.store.get_device(decision.device_id)
            if device is None:
                standing = self.authority.devices.get(decision.device_id)
                if standing is None or standing.key is None:
                    continue
                device = DeviceInfo(device_id=decision.device_id, pubkey=standing.key, site=standing.site or "",
                                    role=standing.role or "", enrolled_at=rec.time)
            if device.status == "forked":
                continue
            point = self.authority.revoked_from(decision.device_id)
            changed[decision.device_id] = device.with_status("active" if point is None else "revoked",
                                                             revoked_from=point)
        if changed:
            self._set(*changed.values())

    def _held_again(self, cp: Checkpoint) -> Checkpoint:
        """`cp`, a checkpoint of this log signed before a restore, is the latest signed again."""
        latest = self.latest_checkpoint()
        if latest is None or latest.tree_size < cp.tree_size:
            self.store.put_checkpoint(cp.tree_size, cp.time, cp.raw)
            self._checkpoints.append(cp)
            if self._last_signed is not None:
                self._last_signed.keep(cp)
        return self.latest_checkpoint() or cp

    def checkpoints(self) -> list[Checkpoint]:
        return list(self._checkpoints)

    def receipt(self, record_id: bytes, checkpoint: Checkpoint | None = None) -> tuple[int, bytes]:
        """A COSE Receipt proving the record is in the log under the latest checkpoint that covers it."""
        index = self.store.locate(record_id)
        if index is None:
            raise NotFound(f"record {record_id.hex()} is not in this hub's log")
        self.store.entries(index, index + 1)  # a damaged record gets no proof either: DamagedRecord
        cp = checkpoint or self.latest_checkpoint()
        if cp is None or cp.tree_size <= index:
            raise NotFound(f"record {record_id.hex()[:16]}... is not covered by a checkpoint yet",
                           hint="wait for the next checkpoint or ask the hub to sign one")
        return index, make_receipt(cp, index, self.tree.inclusion_proof(index, cp.tree_size))

    def consistency(self, first: int, second: int) -> list[bytes]:
        """The RFC 9162 consistency proof from tree size `first` to `second`: a size past the log is one it does
        not have yet (NotFound), sizes the wrong way round a request that names no proof (HubError)."""
        size = len(self.tree)
        if first > second:
            raise HubError(f"a consistency proof goes from a smaller tree size to a larger one, got {first} to "
                           f"{second}", hint="ask with from <= to")
        if second > size:
            raise NotFound(f"tree size {second} is larger than the log ({size} records)",
                           hint="ask up to the size of the latest checkpoint (GET /api/checkpoints/latest)")
        return self.tree.consistency_proof(first, second)

    # export -------------------------------------------------------------------------------------------------
    def export(self, *, devices: Sequence[bytes] | None = None, site: str | None = None,
               since: int | None = None, until: int | None = None, description: str = "") -> bytes:
        """The audit bundle `export_to` writes, as bytes (for small hubs and tests)."""
        out = io.BytesIO()
        self.export_to(out, devices=devices, site=site, since=since, until=until, description=description)
        return out.getvalue()

    def export_to(self, out: BinaryIO, *, devices: Sequence[bytes] | None = None, site: str | None = None,
                  since: int | None = None, until: int | None = None, description: str = "") -> None:
        """Write a self-contained audit bundle (FORMAT.md §12) to the seekable `out`: the hub's own log, key
        records, records, checkpoints, a receipt for every record and consistency proofs. Signs a checkpoint
        first if the log grew, so that everything exported is covered. Written a log at a time: the hub holds
        one log and the exported record ids in memory, never the bundle."""
        with self._lock:
            if self.signing_stopped is not None:
                raise self.signing_stopped
            cp = self.checkpoint() or self.latest_checkpoint()
            if cp is None or cp.authority is None:  # a store from before checkpoints named the hub log's head
                cp = self.checkpoint(force=True)
            assert cp is not None
            # Only checkpoints that name the head of the hub's own log go in a bundle (FORMAT.md §12.1).
            signed = [c for c in self._checkpoints if c.authority is not None]
            held = [(d.device_id, state) for d in self.store.devices()
                    if (devices is None or d.device_id in devices) and (site is None or d.site == site)
                    and d.device_id != self.hub_id and (state := self.store.chain_state(d.device_id)) is not None]
            own = self.own_log()
            ids = [rec.id for rec in own]  # in receipt order: the hub's own log, then each log's records
            base = out.tell()
            encoder = BundleEncoder(description=description)
            out.write(encoder.start(len(held)))
            for device_id, state in held:
                raws = self.store.log_range(device_id, 0, state.length)
                if len(raws) < state.length:  # an audit bundle never leaves out a damaged record silently
                    raise refuse_damaged(self.store, device_id, len(raws))
                recs = [decode_record(r) for r in raws]
                # From a device's revocation point on its records stay in the hub's log but not in a bundle: past
                # it they would fail as REVOKED_KEY, and an auditor could not tell the hub's own decision from
                # tampering. The decision is in the bundle's hub log, so the report says where the range ends.
                revoked = self.authority.revoked_from(device_id)
                kept = recs if revoked is None else recs[:revoked]
                picked = _contiguous([r for r in kept if (since is None or r.time >= since)
                                      and (until is None or r.time < until)])
                keys = [r.raw for r in recs if r.kind == "key" and (not picked or r.seq <= picked[-1].seq)]
                ids.extend(rec.id for rec in picked)
                out.write(encoder.log(LogExport(device_id=device_id, keys=keys, records=[r.raw for r in picked])))
                del raws, recs, picked
            # Only the exported devices' forks: evidence past genesis needs the device's key list, which a
            # bundle holds only for its logs (FORMAT.md §8), so another device's fork made it UNKNOWN_KEY.
            exported = {device_id for device_id, _ in held}
            forks = [ev for device_id, ev in self.store.forks() if device_id in exported]
            out.write(encoder.fields(forks=forks, created=self.clock(),
                                     hub_key=self.signer.public_key, hub_log=[r.raw for r in own]))
            out.write(encoder.receipts(len(ids)))
            for record_id in ids:
                out.write(encoder.receipt(record_id, self._receipt_at(cp, record_id)))
            out.write(encoder.tail(checkpoints=[c.raw for c in signed], consistency=[
                (c.tree_size, cp.tree_size, self.tree.consistency_proof(c.tree_size, cp.tree_size))
                for c in signed if 0 < c.tree_size < cp.tree_size]))
            seal = encoder.seal(self.signer)
        end = out.tell()
        out.seek(base + encoder.seal_at)
        out.write(seal)
        out.seek(end)

    def _receipt_at(self, cp: Checkpoint, record_id: bytes) -> bytes:
        index = self.store.locate(record_id)
        assert index is not None and index < cp.tree_size  # exported under the lock, after a checkpoint
        return make_receipt(cp, index, self.tree.inclusion_proof(index, cp.tree_size))

    def status(self) -> dict[str, Any]:
        cp = self.latest_checkpoint()
        return {"hub": self.hub_id.hex(), "pubkey": self.signer.public_key.hex(), "size": len(self.tree),
                "own_log": len(self._own.authority.records),
                "devices": self.store.device_count(), "checkpoint": cp.to_json() if cp else None,
                "counters": self.store.counters(), "forks": len(self.store.forks()),
                "damaged": {d.hex(): seqs for d, seqs in self.store.damaged().items()},
                "signing_stopped": self.signing_stopped.to_dict() if self.signing_stopped else None,
                "lost_checkpoints": list(self._last_signed.lost) if self._last_signed is not None else []}


@dataclass(frozen=True, slots=True)
class _HeldLog:
    """The hub's copy of one device's log, as the acceptance path asks for it: what the store holds, then the
    records verified earlier in the same commit (`pending`, contiguous, after the stored ones)."""

    store: HubStore
    device_id: bytes
    pending: Sequence[Record] = ()

    def raw_at(self, seq: int) -> bytes | None:
        if self.pending and seq >= self.pending[0].seq:
            return self.pending[seq - self.pending[0].seq].raw
        return self.store.get_raw(self.device_id, seq)

    def id_at(self, seq: int) -> bytes | None:
        if self.pending and seq >= self.pending[0].seq:
            return self.pending[seq - self.pending[0].seq].id
        return self.store.record_id(self.device_id, seq)  # hashed once, by the check that the copy is intact

    def key_at(self, seq: int) -> bytes | None:
        # The hub keeps no index of key records: walk the log up to `seq`. Only a record that lands on a
        # held seq with another id (a fork candidate) asks, and it freezes the device once proven.
        key = None
        stored = min(seq, self.pending[0].seq) if self.pending else seq
        for start in range(0, stored, 4096):
            for raw in self.store.log_range(self.device_id, start, min(start + 4096, stored)):
                rec = decode_record(raw)
                if rec.kind == "key" and rec.body is not None:
                    key = rec.body["pubkey"]
        for rec in self.pending:
            if rec.seq >= seq:
                break
            if rec.kind == "key" and rec.body is not None:
                key = rec.body["pubkey"]
        return key


def _contiguous(records: list[Record]) -> list[Record]:
    """The first contiguous run of `records` (a time window can skip records whose clock was off)."""
    out: list[Record] = []
    for rec in records:
        if out and rec.seq != out[-1].seq + 1:
            break
        out.append(rec)
    return out
