"""A device.key lost beside a store its device claimed: every start path refuses it (WRONG_DEVICE, exit 38) before
a new key is made, as the hub does with HUB_KEY_MISMATCH; a first start on an empty data dir still makes the key."""

from __future__ import annotations

import asyncio
import hashlib
import json
import stat
import subprocess
import sys
from pathlib import Path

from edge import restore
from edge.cli import main as edge_main
from edge.store import LmdbLogStore
from tests.ports import free_udp

from .common import edge_config, running, write_config

REPO = Path(__file__).resolve().parents[2]


def claimed_store(data: Path) -> str:
    """A data dir whose store a device claimed (its genesis signed) under the key it made; its device id."""

    async def start_once() -> str:
        async with running(edge_config(data)) as (daemon, client):
            await client.submit("note", {"text": "before the key was lost"})
            assert daemon.key is not None
            return daemon.key.device_id.hex()

    return asyncio.run(start_once())


def no_key_left(data: Path) -> bool:
    return not (data / "device.key").exists() and not (data / "device.key.new").exists()


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_run_refuses_a_lost_key_over_a_claimed_store_and_makes_none(tmp_path):
    data = tmp_path / "data"
    device = claimed_store(data)
    key = (data / "device.key").read_bytes()
    (data / "device.key").unlink()
    before = digest(data / "store" / "data.mdb")
    config = write_config(tmp_path / "edge.toml", data, free_udp())
    for attempt in range(2):  # the second start finds the same: nothing the first one left looks like a key
        out = subprocess.run([sys.executable, "-m", "edge.cli", "run", "--config", str(config)], cwd=REPO,
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 38, (attempt, out.stderr[-2000:])
        error = json.loads(out.stderr.strip().splitlines()[-1])["error"]
        assert error["code"] == "WRONG_DEVICE" and error["where"] == "data_dir"
        assert error["message"] == (f"key file {data / 'device.key'} is missing, but the store at {data / 'store'} "
                                    f"belongs to device {device}; no key was made")
        assert "put back the device.key" in error["hint"] and "empty data_dir" in error["hint"]
        assert no_key_left(data)
    assert digest(data / "store" / "data.mdb") == before
    store = LmdbLogStore(data / "store", readonly=True)
    try:
        assert store.own_device() == bytes.fromhex(device) and store.log_length(bytes.fromhex(device)) == 2
    finally:
        store.close()

    # The key put back from the backup: the device starts again on its own log.
    (data / "device.key").write_bytes(key)
    (data / "device.key").chmod(0o600)

    async def start_again() -> None:
        async with running(edge_config(data)) as (daemon, _):
            assert daemon.key is not None and daemon.key.device_id.hex() == device
            assert daemon.store is not None and daemon.store.log_length(daemon.key.device_id) == 2

    asyncio.run(start_again())


def test_edge_id_refuses_a_lost_key_over_a_claimed_store(tmp_path, capsys):
    data = tmp_path / "data"
    device = claimed_store(data)
    (data / "device.key").unlink()
    cfg = tmp_path / "edge.toml"
    cfg.write_text(f'data_dir = "{data}"\n')
    assert edge_main(["id", "--config", str(cfg)]) == 38
    err = capsys.readouterr().err
    assert "WRONG_DEVICE" in err and f"belongs to device {device}" in err and "is missing" in err
    assert no_key_left(data)


def test_restore_never_makes_a_key(tmp_path, capsys):
    data = tmp_path / "data"
    claimed_store(data)
    (data / "device.key").unlink()
    cfg = tmp_path / "edge.toml"
    cfg.write_text(f'data_dir = "{data}"\nsensors = []\n[sync]\nmdns = false\n')
    source = f"coap://127.0.0.1:{free_udp()}"
    # With the store still there, and with it moved aside as the restore's own hint says: no key either way.
    for _ in range(2):
        assert restore.main(["--config", str(cfg), "--from", source]) == 32
        error = json.loads(capsys.readouterr().err.strip().splitlines()[-1])["error"]
        assert error["code"] == "KEY_FILE" and "never makes one" in error["message"]
        assert no_key_left(data)
        if (data / "store").exists():
            (data / "store").rename(data / "store.corrupt")
    assert not (data / "store").exists()


def test_a_fresh_data_dir_still_makes_its_key(tmp_path, capsys):
    # `jejak edge id` on an empty data dir makes the key, as before.
    data = tmp_path / "fresh"
    cfg = tmp_path / "edge.toml"
    cfg.write_text(f'data_dir = "{data}"\n')
    assert edge_main(["id", "--config", str(cfg)]) == 0
    ident = json.loads(capsys.readouterr().out)
    assert stat.S_IMODE((data / "device.key").stat().st_mode) == 0o600

    async def first_start(where: Path) -> str:
        async with running(edge_config(where)) as (daemon, _):
            assert daemon.key is not None
            return daemon.key.device_id.hex()

    # The daemon's first start on that data dir uses that key and claims the store for it.
    assert asyncio.run(first_start(data)) == ident["device"]
    # A daemon's first start on an empty data dir, and on a store that no device has claimed yet (opened, never
    # signed on), makes a key of its own.
    empty = tmp_path / "empty"
    assert len(asyncio.run(first_start(empty))) == 32 and (empty / "device.key").exists()
    unclaimed = tmp_path / "unclaimed"
    LmdbLogStore(unclaimed / "store").close()
    device = asyncio.run(first_start(unclaimed))
    assert stat.S_IMODE((unclaimed / "device.key").stat().st_mode) == 0o600
    store = LmdbLogStore(unclaimed / "store", readonly=True)
    try:
        assert store.own_device() == bytes.fromhex(device)
    finally:
        store.close()
