"""`jejak edge pair` as a technician runs it on a Pi with `jejak[hw]`: a QR code in the terminal that a phone's camera
reads, the address it carries, and the pairing code to type instead; the same code every time until `--new`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from edge.pairing import load_or_create_secret, pairing_url

from .common import write_config

ROOT = Path(__file__).resolve().parents[2]


def _pair(config: Path, *extra: str) -> list[str]:
    done = subprocess.run([sys.executable, "-m", "edge.cli", "pair", "--config", str(config),
                           "--url", "http://10.20.0.5:8081", *extra],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, check=True)
    assert "install qrcode" not in done.stderr, done.stderr  # jejak[hw] brings it
    return done.stdout.splitlines()


def test_pair_prints_a_qr_code_its_address_and_the_code_and_new_replaces_it(tmp_path):
    import qrcode  # the terminal's code must be the one that carries the address

    config = write_config(tmp_path / "edge.toml", tmp_path / "data", 0)
    lines = _pair(config)
    secret = load_or_create_secret(tmp_path / "data")
    url = pairing_url("http://10.20.0.5:8081", secret)
    assert lines[-2:] == [url, f"pairing code: {secret}"]
    drawn = lines[:-2]
    qr = qrcode.QRCode(border=1)
    qr.add_data(url)
    qr.make(fit=True)
    assert len(drawn) == (qr.modules_count + 2 + 1) // 2  # two rows of modules a line, with the border
    assert all(set(line) <= set(" \xa0█▀▄") for line in drawn) and any("█" in line for line in drawn)
    assert _pair(config)[-1] == f"pairing code: {secret}", "the same code until --new"
    renewed = _pair(config, "--new")[-1].removeprefix("pairing code: ")
    assert renewed != secret and renewed == load_or_create_secret(tmp_path / "data")
