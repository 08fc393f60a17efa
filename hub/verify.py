"""Signature checks spread over worker processes, for ranges large enough to pay for it."""

from __future__ import annotations

import functools
import logging
import multiprocessing
import os
import select
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from itertools import compress

from ledger import LedgerError, Record, check_signatures, decode_record
from ledger.acceptance import SignatureCheck
from ledger.cose import verify_signature, verify_signed_message
from ledger.record import signature_parts, signed_message

log = logging.getLogger("jejak.hub")
BROKEN_POOLS = 3  # pools in a row that break as they start before the hub checks every signature itself
# The GIL switch interval while signature workers run (`CrossLogVerifier.start`): 0.5 ms against the default 5 ms
# left the cores idle 3-4 % of a two-core ingest instead of about 6 %.
POOL_SWITCH_S = 0.0005
IN_FLIGHT = 2  # tasks sent to a worker and not yet answered: one it checks, one waiting in its pipe


def worker_pool(workers: int) -> ProcessPoolExecutor:
    """Worker processes started from a fork server, never forked from the hub itself: a fork would copy the
    hub's listening sockets and open store into each worker, and a worker of a hub killed with SIGKILL (the
    OOM killer, say) would hold its ports for as long as it lived, so the restarted hub could not bind them.
    Each worker exits as soon as the hub is gone (`_exit_with`)."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["hub.verify"])  # the workers' code, imported once in the fork server
    return ProcessPoolExecutor(workers, mp_context=context, initializer=_exit_with, initargs=(os.getpid(),))


def _exit_with(hub: int) -> None:
    """Runs in each worker as it starts: a thread that ends the worker when process `hub` ends. A worker
    waiting for work would not notice on its own: it holds both ends of its queue, and the fork server's
    liveness pipe too, so neither ever reads as closed."""
    try:
        handle = os.pidfd_open(hub)
    except (AttributeError, OSError):  # no pidfd (not Linux 5.3+): look every few seconds instead
        threading.Thread(target=_poll_alive, args=(hub,), daemon=True, name="exit-with-hub").start()
        return
    threading.Thread(target=_wait_readable, args=(handle,), daemon=True, name="exit-with-hub").start()


def _wait_readable(handle: int) -> None:
    select.select([handle], [], [])  # readable once the process has ended
    os._exit(0)


def _poll_alive(hub: int) -> None:
    while True:
        time.sleep(2)
        try:
            os.kill(hub, 0)
        except ProcessLookupError:
            os._exit(0)
        except PermissionError:  # the process exists (under another user): still alive
            pass


def _confirmed(key: bytes, raws: Iterable[bytes]) -> Iterator[tuple[bytes, bytes] | None]:
    """Per record: its signature and signed bytes if the signature verifies with `key`, else None."""
    for raw in raws:
        parts = signature_parts(raw)
        if parts is not None:
            try:
                verify_signature(key, *parts)
            except LedgerError:
                parts = None
        yield parts


def _verified(key: bytes, raws: list[bytes]) -> bytes:
    """A byte per record: 1 if its signature verifies with `key`, else 0. Runs in a worker process, which gets
    raw bytes and gives back a byte each: little to pickle either way, and no decode (the sequencer does it,
    so the signed bytes are cut from the envelope by position: a record it accepts was cut right)."""
    marks = bytearray(len(raws))
    for i, raw in enumerate(raws):
        message = signed_message(raw)
        if message is not None:
            try:
                verify_signed_message(key, message)
            except LedgerError:
                continue
            marks[i] = 1
    return bytes(marks)


def _verified_many(jobs: list[tuple[bytes, list[bytes]]]) -> bytes:
    """`_verified` for several (key, raws) pieces in one task: short logs share a task instead of paying one
    round trip to a worker each."""
    return b"".join(_verified(key, raws) for key, raws in jobs)


class _Task:
    """Signature checks for the workers as one task (`jobs`: (key, raws) pieces). It waits in the verifier's
    queue until a worker has room for it (`future` set then), unless the writer takes it first (`marks`)."""

    __slots__ = ("future", "jobs", "marks")

    def __init__(self, jobs: list[tuple[bytes, list[bytes]]]) -> None:
        self.jobs = jobs
        self.future: Future[bytes] | None = None  # once sent to a worker
        self.marks: bytes | None = None  # once checked by the writer

    @property
    def finished(self) -> bool:
        return self.marks is not None or (self.future is not None and self.future.done())

    def result(self) -> bytes:
        """Its marks, waiting for the worker that checks it. Raises when it never will: the pool broke or closed
        before it was sent or while it ran (its records are then checked by the merge)."""
        if self.marks is not None:
            return self.marks
        if self.future is None:
            raise LookupError("signature task dropped before it was sent")
        return self.future.result()


class _Ahead:
    """The `check` for one log's range whose signatures were sent ahead to the workers: it waits for them and
    checks in-process only what they did not confirm with the key the chain says (a rotation, a bad record).
    While it would wait, the writer checks tasks not yet sent to a worker, the newest first (`help`)."""

    __slots__ = ("_help", "_key", "_parts", "_raws")

    def __init__(self, key: bytes, raws: Sequence[bytes], parts: list[tuple[int, _Task, int, int]],
                 help: Callable[[], bool]) -> None:
        self._key = key
        self._raws = raws
        self._parts = parts  # (first record of the piece, its task, where its marks start there, how many)
        self._help = help

    def __add__(self, other: object) -> _Ahead:
        """Ranges merged in one go: their confirmations together. One checked with another key, or in-process,
        adds nothing (its records are checked by the merge as always)."""
        if not isinstance(other, _Ahead) or other._key != self._key:
            return self
        shift = len(self._raws)
        return _Ahead(self._key, [*self._raws, *other._raws],
                      self._parts + [(start + shift, task, at, count) for start, task, at, count in other._parts],
                      self._help)

    def __call__(self, pairs: Sequence[tuple[Record, bytes]]) -> None:
        # Confirmed records are known by the identity of their raw bytes: a record decoded from the very object
        # a worker checked (this range's, kept alive here, so no other object has its id) holds those bytes.
        # Equal bytes in another object are checked here again: that costs time, never acceptance.
        ok: set[int] = set()
        for start, task, at, count in self._parts:
            while not task.finished and self._help():
                pass  # the writer would wait for the workers: it checks a task of theirs meanwhile
            try:
                marks = task.result()[at:at + count]
            except Exception:  # a worker died, or the pool closed: its records are checked here instead
                continue
            raws = self._raws[start:start + count]
            if len(marks) != len(raws):
                raise ValueError(f"signature marks: expected {len(raws)}, got {len(marks)}")
            ok.update(map(id, compress(raws, marks)))
        check_signatures([(rec, key) for rec, key in pairs if key != self._key or id(rec.raw) not in ok])


class CrossLogVerifier:
    """Signature checks for many logs' ranges at once, spread over worker processes, ahead of ingest.

    A pull or a burst of pushes brings many ranges; `ahead` sends every record's raw bytes, in chunks, to the
    workers with the key its log is expected to be signed with (the held key, or a new log's genesis key) and
    returns at once a `check` per range for Hub.ingest_many, which decodes and links the first range while the
    workers verify the next ones. The single sequencer still decides every record: a signature not confirmed
    with the key the chain says (after a rotation, a guess that was wrong) is checked in-process, so a wrong
    guess costs time, never acceptance.
    """

    def __init__(self, workers: int | None = None, *, chunk: int = 256) -> None:
        # A worker on every core, though the writer has one too: on a machine shared with other work, a core
        # fewer gave the hub a smaller share of the cores (about 0.8 of the rate with one other busy process on
        # two cores), and on idle cores the rate was the same. The writer checks the tasks that wait whenever it
        # would wait for the workers (`_help`). On one core, none: the writer checks every signature itself.
        cores = os.cpu_count() or 1
        self.workers = (cores if cores > 1 else 0) if workers is None else workers
        self.chunk = chunk
        self._pool: ProcessPoolExecutor | None = None
        self._broken = 0  # pools in a row whose workers died before answering their first task
        # Tasks wait here, oldest first, until a worker has room (at most IN_FLIGHT tasks a worker sent and not
        # yet answered): whatever is still here when the writer would wait, it may take and check itself.
        self._queued: deque[_Task] = deque()
        self._in_flight = 0
        self._pool_broken = False  # a task could not be sent: the pool is replaced at the next call
        self._queue_lock = threading.Lock()
        self.taken = 0  # records whose signatures were meant for the workers and checked by the writer instead

    def start(self) -> None:
        """Start the worker processes now (else at the first range that needs them).

        The pool's threads in this process (the one that hands tasks to the workers, the one that writes them
        into the workers' pipe a part at a time, the one that takes their answers) each wait for the GIL while
        the writer runs Python, up to the interpreter's switch interval (5 ms by default) at every step; a worker
        meanwhile waits for its next task, idle. The interval is lowered to POOL_SWITCH_S for the process."""
        if self._pool is None:
            if sys.getswitchinterval() > POOL_SWITCH_S:
                sys.setswitchinterval(POOL_SWITCH_S)
            self._pool = worker_pool(self.workers)
            try:
                for future in [self._pool.submit(_verified, bytes(32), []) for _ in range(self.workers)]:
                    future.result()
            except BrokenProcessPool:
                self._broken += 1
                if self._broken >= BROKEN_POOLS:  # workers that cannot start at all: stop paying for new ones
                    log.error("signature workers died %d times in a row as they started; signatures are checked "
                              "in the hub's own process from now on (a program embedding the hub must guard its "
                              "main module with `if __name__ == \"__main__\":`, as the workers import it)",
                              self._broken)
                    self.workers = 0
                raise
            self._broken = 0

    def ahead(self, items: Sequence[tuple[bytes, Sequence[bytes]]],
              keys: dict[bytes, bytes], *, tasks_per_worker: int = 4) -> list[SignatureCheck]:
        """`items`: (device id, raw records) as offered; `keys`: each held log's current key (new logs: none),
        to which the key each new log's genesis names is added, for the ranges of a call after this one.
        `tasks_per_worker`: how many tasks the records are cut into, per worker (see _submit)."""
        if self.workers < 1 or sum(len(raws) for _, raws in items) < 64:  # no workers, or none start
            return [check_signatures] * len(items)
        try:
            if self._pool_broken:
                self.close()
            self.start()
            assert self._pool is not None
            return self._submit(self._pool, items, keys, tasks_per_worker)
        except BrokenProcessPool:  # a worker was killed: the writer checks this call, a new pool the next
            self.close()
            return [check_signatures] * len(items)

    def pushed(self, device_id: bytes, raws: Sequence[bytes], key: bytes) -> AheadCheck | _Ahead:
        """The check for one pushed range while it waits for its turn: its signatures go to the workers when
        it is large enough (the writer then links records while other cores verify them, with no GIL between
        the two), else they are checked on the calling thread (AheadCheck). `key`: the log's current key, or
        for a new log the enrolled one; empty when unknown."""
        # One task per worker: the range waits for the ones before it anyway, and each task costs the hub's
        # process a pickling and a result to take in (a pusher's ranges in flight keep every worker busy).
        check = self.ahead([(device_id, raws)], {device_id: key} if key else {}, tasks_per_worker=1)[0]
        return check if isinstance(check, _Ahead) else AheadCheck.of(raws, key)

    def _submit(self, pool: ProcessPoolExecutor, items: Sequence[tuple[bytes, Sequence[bytes]]],
                keys: dict[bytes, bytes], tasks_per_worker: int) -> list[SignatureCheck]:
        # Tasks of about `size` records, short logs packed together: a few per worker, so the writer can start
        # on the first range while the workers check the rest, and no task is a round trip for a handful.
        total = sum(len(raws) for _, raws in items)
        size = max(16, min(self.chunk, total // (tasks_per_worker * self.workers)))
        jobs: list[tuple[bytes, list[bytes]]] = []
        waiting: list[tuple[list[tuple[int, _Task, int, int]], int, int, int]] = []
        held = 0
        tasks: list[_Task] = []

        def flush() -> None:
            nonlocal jobs, waiting, held
            if jobs:
                tasks.append(_Task(jobs))
                for parts, start, at, count in waiting:
                    parts.append((start, tasks[-1], at, count))
            jobs, waiting, held = [], [], 0

        checks: list[SignatureCheck] = []
        for device_id, raws in items:
            key = keys.get(device_id) or _genesis_key(raws)
            if key:
                keys[device_id] = key  # a new log's later ranges, in this call or the next
            if not key or not raws:
                checks.append(check_signatures)
                continue
            parts: list[tuple[int, _Task, int, int]] = []
            i = 0
            while i < len(raws):
                piece = list(raws[i:i + size - held])
                jobs.append((key, piece))
                waiting.append((parts, i, held, len(piece)))
                held += len(piece)
                i += len(piece)
                if held >= size:
                    flush()
            checks.append(_Ahead(key, raws, parts, self._help))
        flush()
        with self._queue_lock:
            self._queued.extend(tasks)
        self._send(pool)
        return checks

    def _send(self, pool: ProcessPoolExecutor) -> None:
        """Send the oldest tasks waiting to the workers, as far as they have room. Runs on the thread that
        queued them and, as each answer comes, on the pool's thread that takes it in (`_answered`)."""
        sent = []
        with self._queue_lock:
            while self._queued and self._in_flight < IN_FLIGHT * self.workers:
                task = self._queued.popleft()
                try:
                    task.future = pool.submit(_verified_many, task.jobs)
                except (BrokenProcessPool, RuntimeError):  # broken or shut down: the writer checks what waits,
                    self._queued.appendleft(task)  # and the next call starts a new pool
                    self._pool_broken = pool is self._pool
                    break
                task.jobs = []
                self._in_flight += 1
                sent.append(task.future)
        for future in sent:  # outside the lock: a future done already calls back at once
            future.add_done_callback(functools.partial(self._answered, pool))

    def _answered(self, pool: ProcessPoolExecutor, _: Future[bytes]) -> None:
        with self._queue_lock:
            if pool is not self._pool:  # a closed pool's task, cancelled or ended: not counted any more
                return
            self._in_flight -= 1
        self._send(pool)

    def _help(self) -> bool:
        """Check here the newest task that no worker has yet (the writer would wait for the workers otherwise);
        False when there is none. The workers are sent the oldest first, so what the writer takes is what they
        would come to last."""
        with self._queue_lock:
            if not self._queued:
                return False
            task = self._queued.pop()
        task.marks, task.jobs = _verified_many(task.jobs), []
        with self._queue_lock:
            self.taken += len(task.marks)
        return True

    def cpu_seconds(self) -> float:
        """CPU time the worker processes have used so far (Linux /proc; 0 elsewhere): for the benchmark's
        account of where a record's time goes."""
        total = 0.0
        for pid in list(getattr(self._pool, "_processes", None) or {}):
            try:
                with open(f"/proc/{pid}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return total

    def close(self) -> None:
        with self._queue_lock:
            pool, self._pool = self._pool, None
            self._queued.clear()  # their ranges' records are checked by the merge
            self._in_flight = 0
            self._pool_broken = False
        if pool is not None:
            pool.shutdown(cancel_futures=True)


def _genesis_key(raws: Sequence[bytes]) -> bytes | None:
    """The key a new log's genesis names (its first record), if it is one."""
    try:
        rec = decode_record(raws[0]) if raws else None
    except LedgerError:
        return None
    if rec is None or rec.seq or rec.kind != "key" or rec.body is None:
        return None
    key = rec.body.get("pubkey")
    return key if isinstance(key, bytes) else None


class AheadCheck:
    """Signatures of an offered range checked against `key` (its log's current key) before the range's turn
    to be merged: a `check` for Hub.ingest that skips those. A pushed range waits for the ranges before it;
    its signatures, checked meanwhile on another thread (the Ed25519 call runs without the GIL), then cost
    the merge nothing. Records signed with another key (after a rotation) or not checked here are checked by
    the merge as always: this decides nothing. Checks of ranges merged in one go add up (`a + b`)."""

    def __init__(self, key: bytes, done: set[tuple[bytes, bytes]]) -> None:
        self.key, self.done = key, done

    @classmethod
    def of(cls, raws: Sequence[bytes], key: bytes) -> AheadCheck:
        done: set[tuple[bytes, bytes]] = set()
        if len(key) == 32:
            for parts in _confirmed(key, raws):
                if parts is None:
                    break  # the merge finds it, with where it is, and stops there
                done.add(parts)
        return cls(key, done)

    def __add__(self, other: object) -> AheadCheck:
        if not isinstance(other, AheadCheck) or other.key != self.key:
            return self
        return AheadCheck(self.key, self.done | other.done)

    def __call__(self, pairs: Iterable[tuple[Record, bytes]]) -> int:
        return check_signatures([(rec, k) for rec, k in pairs
                                 if k != self.key or (rec.signature, rec.signed_bytes) not in self.done])
