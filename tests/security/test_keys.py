"""Key files are private and checked at start (edge device key, hub key, OSCORE secrets); secrets stay out of
repr, status and error messages."""

from __future__ import annotations

import os

import pytest

from coap_server.security import SecurityError, open_context
from edge import keys as keyfile
from edge.errors import KeyFileError
from hub.app import KeyFileError as HubKeyFileError
from hub.app import load_or_create_key

from .common import edge, edge_config, enroll_edge, secure_hub


def test_edge_key_file_open_to_others_or_truncated_is_refused(tmp_path):
    path = tmp_path / "device.key"
    key = keyfile.load_or_create(path)
    assert path.stat().st_mode & 0o777 == 0o600
    os.chmod(path, 0o644)
    with pytest.raises(KeyFileError, match="expected mode 0600, found 0644"):
        keyfile.load_or_create(path)
    os.chmod(path, 0o600)
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(KeyFileError, match="expected 32 bytes"):
        keyfile.load_or_create(path)
    assert key.seed().hex() not in repr(key)


def test_hub_key_file_open_to_others_or_tampered_is_refused(tmp_path):
    path = tmp_path / "hub.key"
    signer = load_or_create_key(path)
    assert path.stat().st_mode & 0o777 == 0o600
    os.chmod(path, 0o640)
    with pytest.raises(HubKeyFileError, match="expected 0600"):
        load_or_create_key(path)
    os.chmod(path, 0o600)
    path.write_bytes(signer.seed() + b"x")
    with pytest.raises(HubKeyFileError, match="expected 32 bytes"):
        load_or_create_key(path)


async def test_oscore_secret_open_to_others_refused_and_secrets_not_in_status(tmp_path):
    async with secure_hub(tmp_path / "hub") as hub:
        key = await enroll_edge(tmp_path / "edge", hub)
        async with edge(edge_config(tmp_path / "edge", hub=hub.coap_url)) as daemon:
            status = repr(daemon.status())
        secret = (tmp_path / "edge" / "oscore" / "hub" / "secret.json").read_text()
        master = secret.split('"secret_hex": "')[1][:32]
        assert master not in status and key.seed().hex() not in status
        os.chmod(tmp_path / "edge" / "oscore" / "hub" / "secret.json", 0o644)
        with pytest.raises(SecurityError) as info:
            open_context(tmp_path / "edge" / "oscore" / "hub", "hub:x")
        assert info.value.code == "BAD_KEY" and master not in str(info.value)
        with pytest.raises(SecurityError):
            async with edge(edge_config(tmp_path / "edge", hub=hub.coap_url)):
                pass


async def test_submitted_scan_with_unknown_staff_card_refused(tmp_path):
    (tmp_path / "edge").mkdir()
    async with edge(edge_config(tmp_path / "edge")) as daemon:
        with pytest.raises(SecurityError) as info:
            await daemon.submit([("scan", {"staff": "deadbeef", "event": "departed"})])
        assert info.value.code == "STAFF_NOT_ALLOWED"
        assert "not on this checkpoint's allow-list" in str(info.value)
        with pytest.raises(SecurityError) as info:  # a scan naming no card is told so, not that its card is unknown
            await daemon.submit([("scan", {"event": "departed"})])
        assert info.value.code == "STAFF_NOT_ALLOWED" and "names no staff card" in str(info.value)
        assert daemon.store.state(daemon.key.device_id).length == 1  # the genesis only


def test_hub_key_behind_a_symlink_is_refused(tmp_path):
    load_or_create_key(tmp_path / "real.key")
    (tmp_path / "hub.key").symlink_to(tmp_path / "real.key")
    with pytest.raises(HubKeyFileError, match="regular file"):
        load_or_create_key(tmp_path / "hub.key")


def test_a_hub_started_with_another_key_than_its_store_was_written_with_refuses_and_keeps_the_store(tmp_path):
    """A lost hub.key: the store still names the first hub. A new key would begin a second, empty own log and drop
    the first one's decisions (here a revocation): refused, with its code and exit code, before a new key is made,
    and the store is left as it was."""
    import json
    import subprocess
    import sys

    from hub.service import Hub
    from hub.store import LmdbHubStore
    from ledger import ChainBuilder, Ed25519Signer
    from ledger.authority import Decision
    from ledger.enroll import make_enroll_request

    data = tmp_path / "var"
    signer = load_or_create_key(data / "hub.key")
    hub = Hub(LmdbHubStore(str(data / "store")), signer, clock=lambda: 1_763_900_000)
    device = Ed25519Signer.from_seed(b"\x05" * 32)
    req = make_enroll_request(device, site="sppg-01", role="kitchen_exit", name="d", time=0, hub_id=hub.hub_id)
    device_id = hub.enroll(req).device_id
    hub.approve(device_id)
    builder = ChainBuilder(device, clock=lambda: 1_763_900_000, boot=1)
    assert hub.ingest(device_id, [builder.genesis().raw]).accepted == 1
    hub._decide(Decision(action="revoke", device_id=device_id, from_seq=1))
    cp = hub.checkpoint(force=True)
    hub.store.close()

    (data / "hub.key").unlink()  # lost: the next start makes a new one
    toml = tmp_path / "hub.toml"
    toml.write_text(f'data_dir = "{data}"\nhttp_port = 0\ncoap_port = 0\nmdns = false\n[bridges]\nenabled = false\n')
    proc = subprocess.run([sys.executable, "-m", "tools.cli", "hub", "run", "--config", str(toml)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 87, proc.stderr[-2000:]
    error = json.loads(proc.stderr.splitlines()[-1])["error"]
    assert error["code"] == "HUB_KEY_MISMATCH" and hub.hub_id.hex() in error["message"]
    assert error["where"] == "data_dir" and "missing" in error["message"]
    assert not (data / "hub.key").exists()  # no new key made over the store: putting the old one back is all

    (data / "hub.key").write_bytes(signer.seed())
    os.chmod(data / "hub.key", 0o600)
    again = Hub(LmdbHubStore(str(data / "store")), load_or_create_key(data / "hub.key"), clock=lambda: 1_763_900_000)
    try:
        assert again.hub_id == hub.hub_id and len(again.tree) == cp.tree_size  # nothing was added under the new key
        assert again.authority.revoked_from(device_id) == 1
    finally:
        again.store.close()
