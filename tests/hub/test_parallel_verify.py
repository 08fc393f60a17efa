"""Signature checks over a process pool keep exactly the good prefix, as the in-process path does."""

from __future__ import annotations

import contextlib
import os
import threading
from concurrent.futures import ProcessPoolExecutor

import hub.verify
from hub.service import Hub
from hub.store import LmdbHubStore
from hub.verify import BROKEN_POOLS, CrossLogVerifier
from ledger import Ed25519Signer
from tests.wait import wait_until

from .conftest import enroll, new_device


def _forged_at_400(hub: Hub, clock) -> tuple[bytes, list[bytes], bytes]:
    signer, builder = new_device(clock)
    device_id = enroll(hub, signer, clock)
    raws = [builder.genesis().raw] + [builder.append("note", {"text": str(i)}).raw for i in range(599)]
    forged = bytearray(raws[400])
    forged[-5] ^= 0x10
    return device_id, raws, bytes(forged)


def _keeps_the_good_prefix(hub: Hub, verifier: CrossLogVerifier, clock) -> None:
    device_id, raws, forged = _forged_at_400(hub, clock)
    [result] = hub.ingest_many([(device_id, [*raws[:400], forged, *raws[401:]])], verifier=verifier)
    assert not isinstance(result, Exception)
    assert result.accepted == 400
    assert result.problem is not None and result.problem["code"] == "INVALID_SIGNATURE"
    assert "seq 400" in result.problem["where"]
    assert hub.store.chain_state(device_id).length == 400
    [rest] = hub.ingest_many([(device_id, raws[400:])], verifier=verifier)
    assert not isinstance(rest, Exception) and rest.accepted == 200 and rest.problem is None


def test_pool_keeps_good_prefix_and_names_the_forgery(tmp_path, clock):
    verifier = CrossLogVerifier(workers=2, chunk=64)
    store = LmdbHubStore(tmp_path / "hub")
    hub = Hub(store, Ed25519Signer.from_seed(b"\x51" * 32), clock=clock)
    try:
        _keeps_the_good_prefix(hub, verifier, clock)
        assert verifier._pool is not None  # the workers did check them
    finally:
        verifier.close()
        store.close()


def test_workers_that_die_as_they_start_leave_the_checks_to_the_hub_after_a_few_pools(tmp_path, clock, monkeypatch,
                                                                                   caplog):
    """A worker that cannot start (a program embedding the hub whose main module, which each worker imports, exits
    or fails) breaks every pool at once: the hub checks those ranges itself, stops starting pools after
    BROKEN_POOLS of them, says why once, and accepts and refuses exactly what it would with workers."""
    pools: list[ProcessPoolExecutor] = []

    def dying(workers: int) -> ProcessPoolExecutor:
        pools.append(ProcessPoolExecutor(workers, initializer=os._exit, initargs=(3,)))
        return pools[-1]

    monkeypatch.setattr(hub.verify, "worker_pool", dying)
    verifier = CrossLogVerifier(workers=2, chunk=64)
    store = LmdbHubStore(tmp_path / "hub")
    hub_ = Hub(store, Ed25519Signer.from_seed(b"\x52" * 32), clock=clock)
    try:
        for _ in range(BROKEN_POOLS + 2):
            _keeps_the_good_prefix(hub_, verifier, clock)
        assert len(pools) == BROKEN_POOLS and verifier.workers == 0
        assert [r.levelname for r in caplog.records if "signature workers died" in r.getMessage()] == ["ERROR"]
    finally:
        verifier.close()
        store.close()


def test_the_writer_checks_the_tasks_not_sent_to_a_worker_instead_of_waiting(tmp_path, clock):
    """The one worker held busy: the writer takes every task of the range that was not sent to the worker and
    checks it itself (a forgery in them refused as always), and waits only for the tasks the worker has."""
    fifo = tmp_path / "hold"
    os.mkfifo(fifo)
    verifier = CrossLogVerifier(workers=1, chunk=64)
    store = LmdbHubStore(tmp_path / "hub")
    hub_ = Hub(store, Ed25519Signer.from_seed(b"\x53" * 32), clock=clock)
    results: list = []
    held = None
    try:
        verifier.start()
        held = verifier._pool.submit(fifo.read_bytes)  # the worker waits until the FIFO is opened for writing
        device_id, raws, forged = _forged_at_400(hub_, clock)
        offered = [*raws[:400], forged, *raws[401:]]
        checks = hub_.checks_ahead([(device_id, offered)], verifier)  # 10 tasks of at most 64 records
        merge = threading.Thread(target=lambda: results.extend(hub_.ingest_many([(device_id, offered)],
                                                                                checks=checks)), daemon=True)
        merge.start()
        # Two tasks are sent to the one worker at a time (hub.verify.IN_FLIGHT); the writer takes the rest.
        wait_until(lambda: verifier.taken >= 600 - 2 * 64 - 64, 120, what="the writer to take the tasks back")
        assert merge.is_alive() and not held.done()  # it waits for the worker's, which wait behind the held one
        with open(fifo, "wb"):
            pass
        merge.join(120)
        assert not merge.is_alive()
        [result] = results
        assert result.accepted == 400 and result.problem["code"] == "INVALID_SIGNATURE"
        assert "seq 400" in result.problem["where"]
        assert verifier.taken < 600  # the tasks sent to the worker were left to it
    finally:
        if held is not None and not held.done():
            with contextlib.suppress(OSError):  # no reader (the worker is gone): nothing to let go
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        verifier.close()
        store.close()


def test_short_logs_packed_into_shared_tasks_keep_each_record_to_its_own_mark():
    """Many short logs share worker tasks; a record's mark must be its own: a forged record anywhere (first,
    last, across a task's edge) is refused, and every genuine one passes."""
    import pytest

    from hub.verify import CrossLogVerifier
    from ledger import BadSignature, ChainBuilder, decode_record

    verifier = CrossLogVerifier(workers=2, chunk=16)
    try:
        items, keys = [], {}
        for d in range(40):
            builder = ChainBuilder(Ed25519Signer.from_seed((7 << 40 | d).to_bytes(32, "big")),
                                   clock=lambda: 1_763_900_000, boot=1)
            raws = [builder.genesis().raw] + [builder.append("note", {"text": f"{d}-{i}"}).raw for i in range(6)]
            items.append((builder.device_id, raws))
        forged_at = {(0, 0), (3, 6), (9, 2), (39, 6)}  # (log, seq), some on a 16-record task's edge
        for d, seq in forged_at:
            raw = bytearray(items[d][1][seq])
            raw[-3] ^= 0x01
            items[d][1][seq] = bytes(raw)
        checks = verifier.ahead(items, keys)
        assert len(checks) == len(items)
        for d, ((_, raws), check) in enumerate(zip(items, checks, strict=True)):
            key = decode_record(raws[0]).body["pubkey"]
            for seq, raw in enumerate(raws):
                rec = decode_record(raw)
                if (d, seq) in forged_at:
                    with pytest.raises(BadSignature):
                        check([(rec, key)])
                else:
                    check([(rec, key)])
    finally:
        verifier.close()


def test_pushed_ranges_merged_in_one_go_keep_both_ranges_confirmations(monkeypatch):
    """Two pushed ranges checked on the workers and taken together (`a + b`): the merge checks in-process only
    the record the workers did not confirm, the forged one in the second range, and refuses it."""
    import pytest

    import hub.verify
    from hub.verify import CrossLogVerifier, _Ahead
    from ledger import BadSignature, ChainBuilder, decode_record

    signer = Ed25519Signer.from_seed((8 << 40).to_bytes(32, "big"))
    builder = ChainBuilder(signer, clock=lambda: 1_763_900_000, boot=1)
    raws = [builder.genesis().raw] + [builder.append("note", {"text": str(i)}).raw for i in range(199)]
    forged = bytearray(raws[150])
    forged[-3] ^= 0x01
    raws[150] = bytes(forged)
    verifier = CrossLogVerifier(workers=2, chunk=32)
    seen: list[int] = []
    real = hub.verify.check_signatures

    def counted(pairs):
        seen.extend(rec.seq for rec, _ in pairs)
        return real(pairs)

    monkeypatch.setattr(hub.verify, "check_signatures", counted)
    try:
        first = verifier.pushed(builder.device_id, raws[:100], signer.public_key)
        second = verifier.pushed(builder.device_id, raws[100:], signer.public_key)
        assert isinstance(first, _Ahead) and isinstance(second, _Ahead)
        both = first + second
        pairs = [(decode_record(raw), signer.public_key) for raw in raws]
        with pytest.raises(BadSignature):
            both(pairs)
        assert seen == [150]
        seen.clear()
        both(pairs[:150])  # every one of them confirmed by the workers
        assert seen == []
        # A range too short for the workers is checked on the calling thread, and adds nothing to a pooled one.
        short = verifier.pushed(builder.device_id, raws[:10], signer.public_key)
        assert not isinstance(short, _Ahead)
        assert first + short is first
    finally:
        verifier.close()


_HOLDER = """
import os, socket, sys
from hub.verify import CrossLogVerifier
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", 0))
server.listen()
verifier = CrossLogVerifier(workers=2)
verifier.start()
workers = [p.pid for p in verifier._pool._processes.values()]
print(server.getsockname()[1], *workers, flush=True)
sys.stdin.read()
"""


def test_the_workers_of_a_hub_killed_with_sigkill_exit_and_hold_none_of_its_ports(tmp_path):
    """A hub killed outright (the OOM killer) is started again on the same ports: its signature workers must not
    have copies of its listening sockets, and must not outlive it."""
    import os
    import signal
    import socket
    import subprocess
    import sys

    from tests.wait import wait_until

    proc = subprocess.Popen([sys.executable, "-c", _HOLDER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, cwd=os.getcwd())
    try:
        port, *workers = map(int, proc.stdout.readline().split())
        assert len(workers) == 2
        for pid in workers:  # the workers hold no copy of the hub's listening socket
            inodes = set()
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    inodes.add(os.readlink(f"/proc/{pid}/fd/{fd}"))
                except FileNotFoundError:  # closed since it was listed (a worker's own short-lived file)
                    pass
            hub_socket = os.readlink(f"/proc/{proc.pid}/fd/{_fd_of_port(proc.pid, port)}")
            assert hub_socket not in inodes
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(60)

    def gone() -> bool:
        return not any(os.path.exists(f"/proc/{pid}") and _state(pid) != "Z" for pid in workers)

    wait_until(gone, 60, what="the killed hub's workers to exit")
    with socket.socket() as again:  # the restarted hub binds the port at once
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("127.0.0.1", port))
        again.listen()


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


def _fd_of_port(pid: int, port: int) -> str:
    """The fd of the socket listening on `port` in process `pid` (from /proc/net/tcp's inode)."""
    import os

    inode = None
    with open("/proc/net/tcp") as fh:
        for line in fh.readlines()[1:]:
            parts = line.split()
            if int(parts[1].split(":")[1], 16) == port and parts[3] == "0A":
                inode = parts[9]
    assert inode is not None
    for fd in os.listdir(f"/proc/{pid}/fd"):
        if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]":
            return fd
    raise AssertionError(f"no fd of process {pid} is the socket on port {port}")
