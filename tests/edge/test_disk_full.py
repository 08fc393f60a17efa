"""A full file system under the edge answers STORE_FULL with its hint, not STORE_ERROR "Input/output error";
a card that refuses writes with room left answers STORE_FAILING; nothing acknowledged is lost."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from coap_server.client import CoapError
from ledger import verify_chain

from .common import edge_config, running


@pytest.fixture
def small_fs(tmp_path):
    """A real 3 MB file system (tmpfs), mounted for this test only."""
    mount = tmp_path / "fs"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


async def test_full_file_system_is_store_full_and_loses_nothing(small_fs):
    ballast = small_fs / "ballast"
    ballast.write_bytes(b"\0" * (1 << 20))  # what an operator can delete to make room
    config = edge_config(small_fs / "edge")
    acked = []
    async with running(config) as (daemon, client):
        refused = None
        for i in range(2000):
            try:
                acked.extend(await client.submit_many([("note", {"text": f"{i}.{j} " + "f" * 200})
                                                       for j in range(20)]))
            except CoapError as exc:
                refused = exc
                break
        assert refused is not None, "the 3 MB file system never filled"
        assert refused.code == "STORE_FULL" and refused.coap_code.startswith("5.03"), refused
        assert "free space" in refused.hint and "Input/output" not in refused.message
        status = await client.status()
        assert status["errors"].get("STORE_FULL", 0) >= 1 and "STORE_ERROR" not in status["errors"]
        own = daemon.key.device_id
        assert len(await client.range(own, 0, 10**6)) == len(acked) + 1  # reads go on: genesis and every ack
        ballast.unlink()
        room = await client.submit("note", {"text": "room again"})
        assert room.seq == len(acked) + 1
        acked.append(room)
    async with running(config) as (daemon, client):
        raws = await client.range(daemon.key.device_id, 0, 10**6)
        assert verify_chain(raws).length >= len(acked) + 1
        assert all(hashlib.sha256(raws[a.seq]).digest() == a.id for a in acked)


FAILING_CARD = """
import json, resource, signal, sys
from edge.store import LmdbLogStore
from edge.errors import StoreError
from tests.edge.common import peer_log
path = sys.argv[1]
_, records = peer_log(81, 3000)
store = LmdbLogStore(path)
store.receive(records[0].device_id, [records[0].raw])
# Writes past the current file size fail: a card that stops taking writes while the file system has room.
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
size = (__import__("os").stat(path + "/data.mdb").st_size)
resource.setrlimit(resource.RLIMIT_FSIZE, (size, resource.RLIM_INFINITY))
start = 1
try:
    while start < len(records):
        out = store.receive(records[0].device_id, [r.raw for r in records[start - 1:start + 200]])
        start = out["length"]
    print(json.dumps({"code": None}))
except StoreError as exc:
    print(json.dumps({"code": exc.code, "message": exc.message, "hint": exc.hint, "stored": start}))
"""


def test_a_card_refusing_writes_with_room_left_is_store_failing(tmp_path):
    out = subprocess.run([sys.executable, "-c", FAILING_CARD, str(tmp_path / "store")], capture_output=True,
                         text=True, timeout=120, cwd=Path(__file__).resolve().parents[2])
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["code"] == "STORE_FAILING", result
    assert "replace the card" in result["hint"] and "not full" in result["message"]
