"""A hub whose store was restored from an older copy than its last signed checkpoint refuses to start (it would
sign other roots for sizes it already signed), unless started knowingly with --accept-older-store."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.app import load_or_create_key
from hub.lastsigned import FILE_NAME, LOST_FILE, LastCheckpointFileError, LastSigned, OlderStore
from hub.pg import PgHubStore
from hub.service import Hub
from hub.store import HubStore, LmdbHubStore
from ledger import Ed25519Signer, decode_checkpoint, sign_checkpoint
from tests.pg import PG_DSN
from tests.ports import free_coap, free_tcp
from tests.wait import wait_until

from .conftest import Clock, enroll, new_device

ROOT = Path(__file__).resolve().parents[2]


def _grow(store: HubStore, data: Path, signer: Ed25519Signer, clock: Clock, notes: int) -> int:
    """Open a hub over `store` as `jejak hub run` does, add a device's `notes` records, sign; the signed size."""
    hub = _open(store, data, signer, clock)
    try:
        device_signer, builder = new_device(clock)
        device_id = enroll(hub, device_signer, clock)
        raws = [builder.genesis().raw] + [builder.append("note", {"text": f"n{i}"}).raw for i in range(notes)]
        assert hub.ingest(device_id, raws).accepted == notes + 1
        clock.advance(60)
        cp = hub.checkpoint()
        assert cp is not None
        return cp.tree_size
    finally:
        store.close()


def _signed_size(data: Path) -> int:
    return int(json.loads((data / FILE_NAME).read_text())["tree_size"])


class _Run:
    """`jejak hub run` on the config, its output kept; `up()` waits for /api/status or the process's exit."""

    def __init__(self, tmp: Path, data: Path, *args: str) -> None:
        self.http = free_tcp()
        config = tmp / "hub.toml"
        config.write_text(f'data_dir = "{data}"\nhttp_port = {self.http}\ncoap_port = {free_coap()}\n'
                          'mdns = false\n[bridges]\nenabled = false\n')
        self.out = tmp / f"hub-{uuid.uuid4().hex[:6]}.log"
        with self.out.open("wb") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "tools.cli", "hub", "run", "--config", str(config),
                                          *args], stdout=subprocess.DEVNULL, stderr=out,
                                         env={**os.environ, "PYTHONPATH": str(ROOT)})

    def _answers(self) -> bool:
        if self.proc.poll() is not None:
            return True
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http}/api/status", timeout=5):
            return True

    def up(self) -> bool:
        wait_until(self._answers, timeout=120, what="the hub to answer or exit", tolerate=(OSError,))
        return self.proc.poll() is None

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(60)

    def error(self) -> dict[str, str]:
        return dict(json.loads(self.out.read_text().splitlines()[-1])["error"])


def test_lmdb_store_restored_from_older_copy_is_refused(tmp_path: Path) -> None:
    data, clock = tmp_path / "hub", Clock()
    signer = load_or_create_key(data / "hub.key")
    old_size = _grow(LmdbHubStore(data / "store"), data, signer, clock, 5)
    shutil.copytree(data / "store", tmp_path / "monday")  # DEPLOY's LMDB backup: the store directory copied
    new_size = _grow(LmdbHubStore(data / "store"), data, signer, clock, 8)
    assert _signed_size(data) == new_size > old_size

    current = _Run(tmp_path, data)  # a restart on the current store is not refused
    assert current.up(), current.out.read_text()[-2000:]
    assert current.stop() == 0

    shutil.rmtree(data / "store")
    shutil.copytree(tmp_path / "monday", data / "store")
    refused = _Run(tmp_path, data)
    assert not refused.up()
    assert refused.proc.returncode == OlderStore.exit_code == 89, refused.out.read_text()[-2000:]
    error = refused.error()
    assert error["code"] == "HUB_STORE_OLDER"
    assert f"holds {old_size} records" in error["message"] and f"checkpoint of {new_size} records" in error["message"]
    assert "restored from an older copy" in error["message"] and "split view" in error["message"]
    assert "--accept-older-store" in error["hint"]
    assert _signed_size(data) == new_size  # the evidence stays for the next start

    accepted = _Run(tmp_path, data, "--accept-older-store")
    assert accepted.up(), accepted.out.read_text()[-2000:]
    assert accepted.stop() == 0
    critical = [json.loads(line) for line in accepted.out.read_text().splitlines() if '"CRITICAL"' in line]
    assert len(critical) == 1 and "--accept-older-store" in critical[0]["msg"], accepted.out.read_text()[-2000:]
    assert [p.name for p in data.glob(FILE_NAME + ".set-aside-*")] != []
    assert _signed_size(data) == old_size  # from now on, the store's log is the one this hub stands by


def test_postgres_store_restored_from_older_dump_is_refused(tmp_path: Path) -> None:
    schema = f"t_{uuid.uuid4().hex[:12]}"
    data, clock = tmp_path / "hub", Clock()
    signer = load_or_create_key(data / "hub.key")
    dump = tmp_path / "monday.dump"
    try:
        old_size = _grow(PgHubStore(PG_DSN, schema=schema), data, signer, clock, 5)
        subprocess.run(["pg_dump", "-Fc", "-n", schema, "-f", str(dump), PG_DSN], check=True)
        new_size = _grow(PgHubStore(PG_DSN, schema=schema), data, signer, clock, 8)
        PgHubStore(PG_DSN, schema=schema).drop()
        subprocess.run(["pg_restore", "-d", PG_DSN, str(dump)], check=True)  # DEPLOY's restore of Monday's dump
        store = PgHubStore(PG_DSN, schema=schema)
        with pytest.raises(OlderStore) as refused:
            _open(store, data, signer, clock)
        assert f"holds {old_size} records" in refused.value.message and str(new_size) in refused.value.message
        assert store.size() == old_size  # nothing written: not even a boot of the hub's own log
        hub = _open(store, data, signer, clock, accept_older=True)
        assert len(hub.tree) == old_size and _signed_size(data) == old_size
        store.close()
    finally:
        PgHubStore(PG_DSN, schema=schema).drop()


def _signed(tmp_path: Path, notes: int) -> tuple[Path, Ed25519Signer, Clock, int]:
    """A hub's data_dir with an LMDB store of a device's `notes` records, signed: (data_dir, key, clock, size)."""
    data, clock = tmp_path / "hub", Clock()
    signer = load_or_create_key(data / "hub.key")
    return data, signer, clock, _grow(LmdbHubStore(data / "store"), data, signer, clock, notes)


@contextlib.contextmanager
def _store(data: Path) -> Iterator[LmdbHubStore]:
    store = LmdbHubStore(data / "store")
    try:
        yield store
    finally:
        store.close()


def _open(store: HubStore, data: Path, signer: Ed25519Signer, clock: Clock, *, accept_older: bool = False) -> Hub:
    """The hub over `store` as `jejak hub run` opens it, with the data_dir's last checkpoint file."""
    return Hub(store, signer, clock=clock, last_signed=LastSigned(data, signer.public_key, accept_older=accept_older))


def test_same_size_another_root_is_refused(tmp_path: Path) -> None:
    data, signer, clock, size = _signed(tmp_path, 5)
    LastSigned(data, signer.public_key).keep(sign_checkpoint(signer, tree_size=size, root=b"\x01" * 32, time=clock()))
    with _store(data) as store, pytest.raises(OlderStore, match="holds another log"):
        _open(store, data, signer, clock)


def test_missing_file_is_written_from_the_store(tmp_path: Path) -> None:
    """A hub from before the file was kept starts, and the file names the store's latest checkpoint at once."""
    data, signer, clock, size = _signed(tmp_path, 5)
    (data / FILE_NAME).unlink()
    with _store(data) as store:
        assert len(_open(store, data, signer, clock).tree) == size and _signed_size(data) == size


@pytest.mark.parametrize("content", [b"", b"{not json", b'{"cose": "zz"}', "another key", "fields disagree"])
def test_junk_file_is_a_typed_error(tmp_path: Path, content: bytes | str) -> None:
    data, signer, clock, size = _signed(tmp_path, 3)
    path = data / FILE_NAME
    if content == "another key":
        other = Ed25519Signer.from_seed(b"\x42" * 32)
        LastSigned(data, other.public_key).keep(sign_checkpoint(other, tree_size=size + 9, root=b"\x02" * 32,
                                                                time=clock()))
    elif content == "fields disagree":
        fields = json.loads(path.read_text())
        path.write_text(json.dumps({**fields, "tree_size": 1}))
    else:
        assert isinstance(content, bytes)
        path.write_bytes(content)
    with _store(data) as store:
        with pytest.raises(LastCheckpointFileError) as bad:
            _open(store, data, signer, clock)
        assert bad.value.code == "LAST_CHECKPOINT_FILE" and str(path) in bad.value.message
        hub = _open(store, data, signer, clock, accept_older=True)
        assert len(hub.tree) == size and _signed_size(data) == size  # set aside, the store's latest kept instead


def test_a_store_grown_past_the_file_is_not_refused(tmp_path: Path) -> None:
    """Records committed after the last checkpoint (a hub killed before its next one) extend the signed log."""
    data, signer, clock, size = _signed(tmp_path, 70)
    with _store(data) as store:
        hub = _open(store, data, signer, clock)
        device_signer, builder = new_device(clock)
        assert hub.ingest(enroll(hub, device_signer, clock), [builder.genesis().raw]).accepted == 1
    with _store(data) as store:  # no checkpoint since
        assert len(_open(store, data, signer, clock).tree) > size and _signed_size(data) == size


def _ingest_one(hub: Hub, clock: Clock) -> None:
    device_signer, builder = new_device(clock)
    assert hub.ingest(enroll(hub, device_signer, clock), [builder.genesis().raw]).accepted == 1
    clock.advance(60)


def test_an_accepted_loss_is_kept_and_only_that_checkpoint_is_answered_later(tmp_path: Path) -> None:
    """The operator's --accept-older-store is recorded with the checkpoints it accepted as lost: a later start
    without the flag answers them (the edge sets its own aside) and goes on signing; another checkpoint the log
    does not hold still stops the signing."""
    data, signer, clock, old_size = _signed(tmp_path, 5)
    shutil.copytree(data / "store", tmp_path / "monday")
    _grow(LmdbHubStore(data / "store"), data, signer, clock, 4)
    middle = LastSigned(data, signer.public_key).read()  # held by an edge offline since
    _grow(LmdbHubStore(data / "store"), data, signer, clock, 4)
    latest = LastSigned(data, signer.public_key).read()
    assert middle is not None and latest is not None and old_size < middle.tree_size < latest.tree_size
    shutil.rmtree(data / "store")
    shutil.copytree(tmp_path / "monday", data / "store")

    with _store(data) as store:
        hub = _open(store, data, signer, clock, accept_older=True)
        assert [e["lost"]["tree_size"] for e in hub.status()["lost_checkpoints"]] == [latest.tree_size]
        with pytest.raises(OlderStore):  # presented while the flag is on: recorded as lost too
            hub.witness(middle.raw)
        assert hub.signing_stopped is None
    with _store(data) as store:
        hub = _open(store, data, signer, clock)  # restarted later, without the flag
        for cp in (latest, middle):
            with pytest.raises(OlderStore, match="accepted those records as lost") as answered:
                hub.witness(cp.raw)
            assert answered.value.code == "HUB_STORE_OLDER"
        assert hub.signing_stopped is None
        _ingest_one(hub, clock)
        assert hub.checkpoint() is not None  # still signing
        status = hub.status()
        assert status["signing_stopped"] is None
        lost = status["lost_checkpoints"]
        assert [(e["lost"]["tree_size"], e["lost"]["root"]) for e in lost] == [
            (latest.tree_size, latest.root.hex()), (middle.tree_size, middle.root.hex())]
        assert lost[0]["kept"]["tree_size"] == old_size and lost[0]["store_size"] == old_size
        for entry in lost:  # the evidence is the hub's own signatures
            decode_checkpoint(bytes.fromhex(entry["lost"]["cose"])).verify(signer.public_key)
            decode_checkpoint(bytes.fromhex(entry["kept"]["cose"])).verify(signer.public_key)

        unknown = sign_checkpoint(signer, tree_size=latest.tree_size + 3, root=b"\x07" * 32, time=clock())
        with pytest.raises(OlderStore, match="an edge presented it at run time"):
            hub.witness(unknown.raw)
        assert hub.signing_stopped is not None
        _ingest_one(hub, clock)
        assert hub.checkpoint() is None


@pytest.mark.parametrize("content", [b"{not json", b'{"lost": [{"lost": {"cose": "00"}}]}'])
def test_a_junk_lost_checkpoints_file_is_a_typed_error(tmp_path: Path, content: bytes) -> None:
    data, signer, clock, _ = _signed(tmp_path, 3)
    path = data / LOST_FILE
    path.write_bytes(content)
    with _store(data) as store:
        with pytest.raises(LastCheckpointFileError) as bad:
            _open(store, data, signer, clock)
        assert str(path) in bad.value.message
        hub = _open(store, data, signer, clock, accept_older=True)
        assert hub.status()["lost_checkpoints"] == [] and not path.exists()
