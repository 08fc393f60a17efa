"""`jejak enroll request --data-dir` pins the hub key from the QR code and refuses a hub that cannot prove it."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from coap_server.security import SecurityError
from edge.security import enroll, load_pin
from ledger import Ed25519Signer
from ledger.enroll import make_grant
from tools.cli import enroll_uri, main

from .common import qr_text, secure_hub


async def test_cli_enrolls_and_pins_the_hub(tmp_path, capsys):
    async with secure_hub(tmp_path / "hub") as hub:
        key = tmp_path / "edge" / "device.key"
        code = await asyncio.to_thread(main, ["enroll", "request", qr_text(hub), "--key", str(key), "--site",
                                              "sppg-01", "--role", "kitchen_exit", "--data-dir", str(tmp_path / "edge")])
        assert code == 0
        out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert out["hub"] == hub.hub.hub_id.hex() and out["status"] == "active"
        assert load_pin(tmp_path / "edge")["key"] == hub.hub.signer.public_key.hex()
        assert (tmp_path / "hub" / "oscore" / out["device"] / "secret.json").exists()


# A program that enrolls through edge.security alone, with nothing else having loaded urllib.request.
ENROLL_ALONE = """import json, sys
from pathlib import Path
from edge.keys import load_or_create
from edge.security import enroll
data = Path(sys.argv[2])
print(json.dumps(enroll(sys.argv[1], load_or_create(data / "device.key"), data, site="s", role="kitchen_exit",
                        name="s")))
"""


async def test_enrollment_reaches_the_hub_from_a_program_that_loads_only_the_edge(tmp_path):
    async with secure_hub(tmp_path / "hub") as hub:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", ENROLL_ALONE, qr_text(hub), str(tmp_path / "edge"),
            cwd=Path(__file__).resolve().parents[2], stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()
        assert json.loads(out)["status"] == "active"
        assert load_pin(tmp_path / "edge")["key"] == hub.hub.signer.public_key.hex()


async def test_qr_code_of_another_hub_key_is_refused_nothing_pinned(tmp_path):
    async with secure_hub(tmp_path / "hub") as hub:
        # An attacker's QR code: the real hub's address, the attacker's key. The real hub's grant does not verify.
        impostor = Ed25519Signer.generate()
        uri = enroll_uri(hub.http_url, impostor.public_key)
        from edge import keys as keyfile

        (tmp_path / "edge").mkdir()
        key = keyfile.load_or_create(tmp_path / "edge" / "device.key")
        with pytest.raises(SecurityError) as info:
            await asyncio.to_thread(enroll, uri, key, tmp_path / "edge", site="s", role="kitchen_exit", name="s")
        assert info.value.code == "ENROLL_REFUSED" and "HUB_ERROR" in info.value.message
        assert load_pin(tmp_path / "edge") is None
        assert not (tmp_path / "edge" / "oscore").exists()


def test_a_host_answering_for_the_hub_cannot_forge_the_grant(tmp_path):
    from edge import keys as keyfile
    from edge.security import UntrustedHub

    real = Ed25519Signer.generate()
    impostor = Ed25519Signer.generate()
    key = keyfile.load_or_create(tmp_path / "edge" / "device.key")

    def fake_answer(url: str, request: bytes) -> bytes:  # a LAN host impersonating the hub's address
        return make_grant(impostor, request, "active")

    with pytest.raises(UntrustedHub, match="not signed by the hub in the QR code"):
        enroll(enroll_uri("http://192.0.2.1:8470", real.public_key), key, tmp_path / "edge", site="s",
               role="kitchen_exit", name="s", post=fake_answer)
    assert load_pin(tmp_path / "edge") is None


def _enroll_cli(uri: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict]:
    code = main(["enroll", "request", uri, "--key", str(tmp_path / "edge" / "device.key"), "--site", "sppg-01",
                 "--role", "kitchen_exit", "--data-dir", str(tmp_path / "edge")])
    return code, json.loads(capsys.readouterr().err.strip().splitlines()[-1])["error"]


def test_a_hub_address_the_device_cannot_reach_is_named(tmp_path, capsys):
    """A QR code made without --hub-url behind a proxy names an address the edge cannot reach: the error says which."""
    from tests.ports import free_tcp

    url = f"http://127.0.0.1:{free_tcp()}"
    code, error = _enroll_cli(enroll_uri(url, Ed25519Signer.generate().public_key), tmp_path, capsys)
    assert code == 82 and error["code"] == "UNREACHABLE"
    assert url in error["message"] and "--hub-url" in error["hint"]
    assert load_pin(tmp_path / "edge") is None


@pytest.mark.parametrize("text", ["jejak-enroll:?hub=http://hub.example.org",  # unquoted: the shell cut it at &
                                  "jejak-enroll:?hub=...&id=...&key=...",  # the guide's placeholder
                                  "https://hub.example.org"])
def test_a_qr_text_cut_short_or_not_pasted_says_how_to_paste_it(tmp_path, capsys, text):
    code, error = _enroll_cli(text, tmp_path, capsys)
    assert code == 74 and error["code"] == "UNTRUSTED_HUB"
    assert "single quotes" in error["hint"], error
    assert load_pin(tmp_path / "edge") is None
