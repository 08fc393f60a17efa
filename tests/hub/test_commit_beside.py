"""A stream's commits run beside the writer (Hub.ingest_stream): the next call is merged while the server holds
a commit back, a failed commit fails its own call and leaves store and tree as they were, and a kill between
a commit and the next loses no acknowledged record."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import uuid

import cbor2
import psycopg
import pytest

from hub.pg import PgHubStore
from hub.service import Hub, log_tree
from hub.store import LmdbHubStore, StoreFull
from ledger import Ed25519Signer, MerkleTree, check_signatures
from tests.contract.test_hub_store import _pg_store
from tests.pg import PG_DSN

from .conftest import Clock, enroll, new_device

HUB_KEY = b"\x5b" * 32


def _log(clock: Clock, n: int, text: str = "n") -> tuple[Ed25519Signer, list[bytes]]:
    signer, builder = new_device(clock)
    return signer, [builder.genesis().raw] + [builder.append("note", {"text": f"{text}{i}"}).raw
                                              for i in range(n - 1)]


def _reopened_root(hub: Hub) -> bytes:
    return Hub(hub.store, Ed25519Signer.from_seed(HUB_KEY), clock=Clock()).tree.root()


def test_the_next_call_is_merged_while_the_server_holds_a_commit_back(clock):
    """While PostgreSQL holds a call's commit back (a lock on the log states' table that reads pass), the writer
    merges the next call, and nothing of the first is in the store or the tree; once let go, both calls are
    kept as each call alone keeps them."""
    store = _pg_store()
    blocker = psycopg.connect(PG_DSN, autocommit=False)
    next_merged = threading.Event()

    def check(pairs):
        check_signatures(pairs)
        if any(rec.seq >= 100 for rec, _ in pairs):
            next_merged.set()

    try:
        hub = Hub(store, Ed25519Signer.from_seed(HUB_KEY), clock=clock, check=check)
        signer, raws = _log(clock, 200)
        device_id = enroll(hub, signer, clock)
        before = store.size()
        results: list = []
        with blocker.transaction():
            blocker.execute(f"LOCK TABLE {store.schema}.states IN EXCLUSIVE MODE")
            stream = hub.ingest_stream([[(device_id, raws[:100])], [(device_id, raws[100:])]])
            runner = threading.Thread(target=lambda: results.extend(stream))
            runner.start()
            assert next_merged.wait(60), "the next call was merged only after the commit before it"
            assert store.size() == len(hub.tree) == before and not results
        runner.join(60)
        assert not runner.is_alive()
        assert [[r.to_json() for r in rs] for rs in results] == [
            [{"device": device_id.hex(), "accepted": 100, "duplicates": 0, "length": 100, "size": before + 100,
              "problem": None, "fork": False}],
            [{"device": device_id.hex(), "accepted": 100, "duplicates": 0, "length": 200, "size": before + 200,
              "problem": None, "fork": False}]]
        assert len(hub.tree) == store.size() == before + 200
        assert _reopened_root(hub) == hub.tree.root()
    finally:
        blocker.close()
        store.drop()
        store.close()


@pytest.fixture(params=["lmdb", "postgres"])
def failing(request, tmp_path):
    """A store whose commit of a big call fails: LMDB's map is full; PostgreSQL refuses the device's first state
    (a trigger), as a server that refuses a write. Gives the store, how to make a device's commit fail, and the
    error the stream raises."""
    if request.param == "lmdb":
        store = LmdbHubStore(tmp_path / "hub", map_size=1 << 20)
        yield store, lambda device_id: None, StoreFull
        store.close()
        return
    store = _pg_store()

    def refuse(device_id: bytes) -> None:
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f"CREATE FUNCTION {store.schema}.refuse() RETURNS trigger LANGUAGE plpgsql AS "
                         "$$ BEGIN RAISE EXCEPTION 'refused'; END $$")
            conn.execute(f"CREATE TRIGGER refuse BEFORE INSERT ON {store.schema}.states FOR EACH ROW "
                         f"WHEN (NEW.device_id = '\\x{device_id.hex()}'::bytea) EXECUTE FUNCTION {store.schema}.refuse()")

    yield store, refuse, psycopg.errors.RaiseException
    store.drop()
    store.close()


def test_a_failed_commit_in_a_stream_fails_its_call_and_the_next_goes_on(failing, clock):
    """The third call is merged on top of the second while the second commits; the second's commit fails: the
    stream raises the store's error after the first call's results, the store and the tree hold the first call
    only, and the third call, merged on records that were never stored, was dropped with them: sent again it is
    accepted whole, not taken for duplicates."""
    store, refuse, error = failing
    hub = Hub(store, Ed25519Signer.from_seed(HUB_KEY), clock=clock)
    small, small_raws = _log(clock, 120)
    big, big_raws = _log(clock, 1000, "x" * 400)
    small_id, big_id = enroll(hub, small, clock), enroll(hub, big, clock)
    refuse(big_id)
    before = store.size()
    results = []
    with pytest.raises(error):
        for result in hub.ingest_stream([[(small_id, small_raws[:100])], [(big_id, big_raws)],
                                         [(small_id, small_raws[100:])]]):
            results.append(result)
    assert [[r.accepted for r in rs] for rs in results] == [[100]]
    assert store.size() == len(hub.tree) == before + 100
    assert store.chain_state(small_id).length == 100 and store.chain_state(big_id) is None
    assert _reopened_root(hub) == hub.tree.root()
    again = hub.ingest(small_id, small_raws[100:])
    assert (again.accepted, again.duplicates, again.length) == (20, 0, 120)
    assert store.size() == len(hub.tree) == before + 120
    assert _reopened_root(hub) == hub.tree.root()


_STREAM = """
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
calls = ([(device_id, raws[i:i + 50])] for i in range(0, len(raws), 50))
for results in hub.ingest_stream(calls):
    print(results[0].length, flush=True)
"""


@pytest.mark.parametrize("kind", ["lmdb", "postgres"])
def test_a_kill_between_a_commit_and_the_next_loses_no_acknowledged_record(kind, tmp_path, clock):
    """A hub process that streams calls is killed right after a call's results came out (the next call being
    merged or committed): every record of the acknowledged calls is in the store, the next call is there whole
    or not at all, the tree reopened is the tree of what the store holds, and the rest goes in after."""
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
        proc = subprocess.Popen([sys.executable, "-c", _STREAM.replace("{key}", HUB_KEY.hex()), kind, where,
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
