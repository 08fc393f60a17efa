"""A hub process killed right after it acknowledged a push (the next push being merged or committed) loses no
acknowledged record, and the tree it reopens is the tree of what its store holds."""

from __future__ import annotations

import signal
import subprocess
import sys
import uuid

import cbor2
import pytest

from hub.pg import PgHubStore
from hub.service import Hub, log_tree
from hub.store import LmdbHubStore
from ledger import Ed25519Signer, MerkleTree
from tests.pg import PG_DSN

from .conftest import Clock, enroll, new_device

HUB_KEY = b"\x5b" * 32


def _log(clock: Clock, n: int, text: str = "n") -> tuple[Ed25519Signer, list[bytes]]:
    signer, builder = new_device(clock)
    return signer, [builder.genesis().raw] + [builder.append("note", {"text": f"{text}{i}"}).raw
                                              for i in range(n - 1)]


def _reopened_root(hub: Hub) -> bytes:
    return Hub(hub.store, Ed25519Signer.from_seed(HUB_KEY), clock=Clock()).tree.root()


_PUSHES = """
import sys, uuid
import cbor2
from hub.pg import PgHubStore
from hub.service import Hub
from hub.store import LmdbHubStore
from ledger import Ed25519Signer
kind, where, path = sys.argv[1:]
device_id, raws = cbor2.loads(open(path, "rb").read())
store = LmdbHubStore(where) if kind == "lmdb" else PgHubStore(where.split(" ")[0], schema=where.split(" ")[1])
hub = Hub(store, Ed25519Signer.from_seed(bytes.fromhex("{key}")), clock=lambda: 1_763_900_000)
for i in range(0, len(raws), 50):
    print(hub.ingest(device_id, raws[i:i + 50]).length, flush=True)
"""


@pytest.mark.parametrize("kind", ["lmdb", "postgres"])
def test_a_kill_between_a_commit_and_the_next_loses_no_acknowledged_record(kind, tmp_path, clock):
    """A hub process taking pushes is killed right after one was acknowledged (the next being merged or
    committed): every record of the acknowledged pushes is in the store, the next push is there whole or not at
    all, the tree reopened is the tree of what the store holds, and the rest goes in after."""
    signer, raws = _log(clock, 2000)
    if kind == "lmdb":
        where = str(tmp_path / "hub")
        store = LmdbHubStore(where)
    else:
        schema = f"t_{uuid.uuid4().hex[:12]}"
        where = f"{PG_DSN} {schema}"
        store = PgHubStore(PG_DSN, schema=schema)
    try:
        hub = Hub(store, Ed25519Signer.from_seed(HUB_KEY), clock=clock)
        device_id = enroll(hub, signer, clock)
        store.close()
        (tmp_path / "raws").write_bytes(cbor2.dumps([device_id, raws]))
        proc = subprocess.Popen([sys.executable, "-c", _PUSHES.replace("{key}", HUB_KEY.hex()), kind, where,
                                 str(tmp_path / "raws")], stdout=subprocess.PIPE, text=True)
        try:
            acked = [int(proc.stdout.readline()) for _ in range(5)]
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert acked == [50, 100, 150, 200, 250]
        store = LmdbHubStore(where) if kind == "lmdb" else PgHubStore(PG_DSN, schema=schema)
        length = store.chain_state(device_id).length
        assert length >= 250 and length % 50 == 0, f"acknowledged 250 records, the store holds {length}"
        assert store.log_range(device_id, 0, length) == raws[:length]
        assert log_tree(store).root() == MerkleTree(store.leaf_hashes()).root()
        hub = Hub(store, Ed25519Signer.from_seed(HUB_KEY), clock=clock)
        assert hub.ingest(device_id, raws[length:]).length == len(raws)
        assert len(hub.tree) == store.size() and _reopened_root(hub) == hub.tree.root()
    finally:
        if kind == "postgres":
            store.drop()
        store.close()
