"""Device keys: created once with mode 0600, refused when others can read them, never shown; boot counter."""

from __future__ import annotations

import logging
import os
import stat

import pytest

from edge.errors import KeyFileError
from edge.keys import load_or_create, next_boot
from ledger import device_id_for


def test_key_created_private_and_stable(tmp_path):
    path = tmp_path / "d" / "device.key"
    key = load_or_create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert key.device_id == device_id_for(key.public_key)
    again = load_or_create(path)
    assert again.device_id == key.device_id and again.public_key == key.public_key


def test_world_readable_key_refused(tmp_path):
    path = tmp_path / "device.key"
    load_or_create(path)
    os.chmod(path, 0o644)
    with pytest.raises(KeyFileError, match="expected mode 0600, found 0644") as info:
        load_or_create(path)
    assert "chmod 600" in info.value.hint


def test_truncated_key_refused(tmp_path):
    path = tmp_path / "device.key"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"short")
    os.close(fd)
    with pytest.raises(KeyFileError, match="expected 32 bytes of Ed25519 seed, found 5"):
        load_or_create(path)


def test_key_never_shown(tmp_path, caplog):
    path = tmp_path / "device.key"
    key = load_or_create(path)
    seed = path.read_bytes()
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("jejak.test").info("key %s %r", key, key)
    for text in (repr(key), str(key), caplog.text):
        assert seed.hex() not in text and seed.hex()[:16] not in text
    assert key.device_id.hex() in repr(key)


def test_boot_counter_increments_and_never_goes_back(tmp_path):
    path = tmp_path / "boot"
    assert next_boot(path) == 1
    assert next_boot(path) == 2
    assert next_boot(path, at_least=10) == 10
    assert next_boot(path) == 11
    path.write_text("garbage")
    with pytest.raises(KeyFileError, match="expected a non-negative integer"):
        next_boot(path)
