"""`jejak hub verify`, `jejak hub archive` and `jejak enroll qr` read an existing hub: where there is none (a data_dir
with a typo, one no hub has started in, a store whose hub.key is lost) they stop with KEY_FILE or STORE_ERROR and
leave data_dir as it was, byte for byte, never making a key (a new key is a new hub) or a store."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from hub.app import load_or_create_key, start_hub
from hub.config import HubConfig
from tests.ports import free_tcp

from .test_command_errors import jejak, one_line

COMMANDS = {
    "verify": ("hub", "verify"),
    "archive": ("hub", "archive", "--before", "2026-01-01", "--to", "{tmp}/archive"),
    "qr": ("enroll", "qr", "--png", "{tmp}/qr.png"),
}


def snapshot(root: Path) -> dict[str, tuple[int, bytes]]:
    """Every path under `root` with its mode and, for a file, its bytes."""
    return {str(p.relative_to(root)): (p.stat().st_mode, p.read_bytes() if p.is_file() else b"")
            for p in sorted(root.rglob("*"))}


def run(tmp_path: Path, command: str, data_dir: Path) -> dict[str, str]:
    """`jejak <command>` with a config naming `data_dir` (a PostgreSQL store for archive: nothing listens at its
    DSN, so a command that got as far as the store would fail there, with another code)."""
    config = tmp_path / "hub.toml"
    text = f'data_dir = "{data_dir}"\nmdns = false\n'
    if command == "archive":
        text += f'[store]\nbackend = "postgres"\ndsn = "postgresql://jejak@127.0.0.1:{free_tcp()}/jejak"\n'
    config.write_text(text)
    args = [arg.format(tmp=tmp_path) for arg in COMMANDS[command]]
    return one_line(jejak(*args, "--config", str(config), cwd=tmp_path), "KEY_FILE", 32)


def hub_that_ran(data_dir: Path) -> None:
    """A hub started and stopped in `data_dir`: its key, its LMDB store with a signed checkpoint, its other files."""
    async def start_and_stop() -> None:
        running = await start_hub(HubConfig(data_dir=str(data_dir), http_port=0, coap_port=0, mdns=False))
        await running.close()  # its last checkpoint is signed at the stop
    asyncio.run(start_and_stop())


@pytest.mark.parametrize("command", COMMANDS)
def test_a_data_dir_with_a_typo_is_named_and_not_made(tmp_path: Path, command: str) -> None:
    error = run(tmp_path, command, tmp_path / "hbu")
    assert error["where"] == "data_dir" and f"data_dir {tmp_path / 'hbu'} does not exist" in error["message"]
    assert "typo" in error["hint"] and "jejak hub run" in error["hint"]
    assert not (tmp_path / "hbu").exists()


@pytest.mark.parametrize("command", COMMANDS)
def test_a_data_dir_no_hub_has_started_in_says_start_the_hub_first(tmp_path: Path, command: str) -> None:
    data = tmp_path / "hub"
    data.mkdir()
    (data / "NOTES").write_text("the operator's own file\n")
    before = snapshot(data)
    error = run(tmp_path, command, data)
    assert error["where"] == "data_dir" and str(data / "hub.key") in error["message"]
    assert error["hint"].startswith("start the hub first (jejak hub run")
    assert snapshot(data) == before


@pytest.mark.parametrize("command", ["verify", "qr"])
def test_a_store_whose_key_is_lost_is_left_as_it_was(tmp_path: Path, command: str) -> None:
    data = tmp_path / "hub"
    hub_that_ran(data)
    (data / "hub.key").unlink()  # a restore without the key
    before = snapshot(data)
    assert "store/data.mdb" in before
    error = run(tmp_path, command, data)
    assert f"the store at {data / 'store'} is there without it" in error["message"]
    assert "put back the hub.key this store was written with" in error["hint"]
    assert snapshot(data) == before
    assert not (tmp_path / "qr.png").exists()


def test_verify_of_a_key_without_its_store_makes_no_store(tmp_path: Path) -> None:
    data = tmp_path / "hub"
    load_or_create_key(data / "hub.key")
    config = tmp_path / "hub.toml"
    config.write_text(f'data_dir = "{data}"\n[store]\npath = "{tmp_path / "stroe"}"\n')
    error = one_line(jejak("hub", "verify", "--config", str(config), cwd=tmp_path), "STORE_ERROR", 33)
    assert error["where"] == "store.path" and str(tmp_path / "stroe") in error["message"]
    assert not (tmp_path / "stroe").exists() and [p.name for p in data.iterdir()] == ["hub.key"]


def test_verify_and_qr_read_the_hub_that_ran(tmp_path: Path) -> None:
    data = tmp_path / "hub"
    hub_that_ran(data)
    hub_key = load_or_create_key(data / "hub.key").public_key
    config = tmp_path / "hub.toml"
    config.write_text(f'data_dir = "{data}"\n')
    verified = jejak("hub", "verify", "--config", str(config), "--json", cwd=tmp_path)
    assert verified.returncode == 0 and json.loads(verified.stdout)["ok"], verified.stderr
    qr = jejak("enroll", "qr", "--config", str(config), cwd=tmp_path)
    assert qr.returncode == 0 and f"key={hub_key.hex()}" in qr.stdout, qr.stderr


def test_archive_of_an_lmdb_hub_is_refused_before_a_store_is_made(tmp_path: Path) -> None:
    config = tmp_path / "hub.toml"
    config.write_text(f'data_dir = "{tmp_path / "hbu"}"\n')
    error = one_line(jejak("hub", "archive", "--config", str(config), "--before", "2026-01-01", "--to",
                           str(tmp_path / "archive"), cwd=tmp_path), "CONFIG", 31)
    assert error["where"] == "store.backend"
    assert not (tmp_path / "hbu").exists() and not (tmp_path / "archive").exists()
