"""`jejak-verify` reads a bundle in pieces: its peak memory does not follow the bundle's size, and a bundle cut
short or corrupted in its middle gets the coded error it always got."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ledger import decode_bundle
from tests.harness.big_bundle import BYTES_PER_RECORD, write_bundle
from tests.wait import PATIENCE

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "docs" / "examples" / "example.jejak"
# Measured for a 27.7 MB bundle (19,401 records) against the example bundle: the peak rose by 7 MB; reading
# the bundle whole, as jejak-verify did before, it rose by 158 MB.
MAX_GROWTH_KIB = 50 << 10


def verify(*args: str) -> tuple[int, str, int]:
    """Exit code, output and peak resident memory (KiB) of jejak-verify run in a process of its own."""
    script = ("import resource, sys; from tools.verify import main; code = main(sys.argv[1:]); "
              "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(code)")
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, check=False,
                         cwd=ROOT, env=env, timeout=300 * PATIENCE)
    *lines, peak = out.stdout.splitlines()
    return out.returncode, "\n".join(lines), int(peak)


def bundle_of(path: Path, megabytes: float) -> Path:
    with path.open("w+b") as out:
        write_bundle(out, int(megabytes * 1e6 / BYTES_PER_RECORD))
    return path


def test_peak_memory_does_not_follow_the_bundle(tmp_path: Path) -> None:
    big = bundle_of(tmp_path / "big.jejak", 28)
    code, _, small_peak = verify(str(EXAMPLE))
    assert code == 0
    code, out, big_peak = verify(str(big), "--against", str(big))
    records = int(28e6 / BYTES_PER_RECORD) + 4  # and the four devices' genesis records
    assert code == 0 and f"VERIFIED: {records} records" in out, out
    assert big.stat().st_size > 25e6
    assert big_peak - small_peak < MAX_GROWTH_KIB, (small_peak, big_peak)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A bundle of some 3 MB: the verifier reads it in 64 kB pieces, so a fault in its middle is read in one."""
    return bundle_of(tmp_path_factory.mktemp("bundle") / "b.jejak", 3).read_bytes()


def problem(tmp_path: Path, data: bytes) -> tuple[int, dict[str, str]]:
    """jejak-verify's exit code (the code of the first problem, FORMAT.md §12.3) and the problem with that
    code, the bundle's own or a device's."""
    path = tmp_path / "faulty.jejak"
    path.write_bytes(data)
    code, out, _ = verify(str(path), "--json")
    report = json.loads(out)
    problems = report["problems"] + [p for d in report.get("devices", []) for p in d["problems"]]
    codes = {"MALFORMED": 11, "INVALID_SIGNATURE": 13, "INVALID_PROOF": 16}
    return code, next(p for p in problems if codes.get(p["code"]) == code)


def flip(data: bytes, at: int) -> bytes:
    faulty = bytearray(data)
    faulty[at] ^= 0x01
    return bytes(faulty)


def test_a_bundle_cut_short_is_malformed(tmp_path: Path, bundle: bytes) -> None:
    for cut in (len(bundle) // 2, len(bundle) - 1):
        code, first = problem(tmp_path, bundle[:cut])
        assert (code, first["code"]) == (11, "MALFORMED"), first
        assert first["message"] == f"bundle: cut short: it ends after {cut} bytes, before its map does"


def test_a_bundle_corrupted_in_its_middle_gets_its_code(tmp_path: Path, bundle: bytes) -> None:
    decoded = decode_bundle(bundle)
    log = decoded.logs[2]
    record = log.records[len(log.records) // 2]
    signature_end = bundle.index(record) + len(record) - 1
    code, first = problem(tmp_path, flip(bundle, signature_end))
    assert (code, first["code"]) == (13, "INVALID_SIGNATURE"), first
    receipt = decoded.receipts[len(decoded.receipts) // 2][1]
    # The receipt ends with the inclusion path's last hash, nil (the detached payload) and the 64-byte signature.
    path_hash = bundle.index(receipt) + len(receipt) - 64 - 3 - 16
    code, first = problem(tmp_path, flip(bundle, path_hash))
    assert (code, first["code"]) == (16, "INVALID_PROOF"), first
    # A record's length one longer: the items after it are read out of step.
    head = bundle.index(record) - 2
    assert bundle[head - 1] == 0x59 and int.from_bytes(bundle[head:head + 2], "big") == len(record)
    code, first = problem(tmp_path, bundle[:head] + (len(record) + 1).to_bytes(2, "big") + bundle[head + 2:])
    assert (code, first["code"]) == (11, "MALFORMED"), first
