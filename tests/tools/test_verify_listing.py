"""`jejak-verify` on hostile and telling bundles: a million-problem bundle is said in a few lines and little memory, a
failing device says how many records it holds and how many verified, --against notes a device revoked since the
older bundle and tells a log that shrank from swapped files, and --json names the verdict's own problem."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from ledger import decode_bundle
from ledger.bundle import MAX_LISTED
from tests.ledger.hostile_bundles import failing_device, many_bad_checkpoints, revoked_since, shrunk

from .test_verify_cli import EXAMPLE, run
from .test_verify_memory import verify

N = 200_000


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("hostile") / "cps.jejak"
    path.write_bytes(many_bad_checkpoints(N))
    return path


@pytest.fixture(autouse=True)
def english_locale(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LC_ALL", "LC_MESSAGES", "LANG"):
        monkeypatch.delenv(name, raising=False)


def test_a_bundle_of_many_bad_checkpoints_is_said_in_a_few_lines(hostile: Path) -> None:
    code, out = run(str(hostile), "--json")
    report = json.loads(out)
    assert (code, report["code"]) == (11, "MALFORMED")
    assert len(report["problems"]) == MAX_LISTED and report["more"] == {"checkpoints": N - MAX_LISTED}
    assert report["problem"] == report["problems"][0]
    assert len(out) < 20_000
    code, out = run(str(hostile), "--lang", "en")
    assert code == 11 and len(out.splitlines()) < 60
    assert f"… and {N - MAX_LISTED:,} more problems with checkpoints like these" in out
    assert f"FAILED: MALFORMED (exit code 11), {N} problems" in out
    code, out = run(str(hostile), "--lang", "id")
    assert f"… dan {N - MAX_LISTED:,} masalah checkpoint lagi".replace(",", ".") in out


def test_a_bundle_of_many_bad_checkpoints_takes_little_memory(hostile: Path) -> None:
    """Measured: 200,000 bad entries took 461 MB more than the example when every problem was kept; now a few MB."""
    _, _, small = verify(str(EXAMPLE), "--json")
    code, out, peak = verify(str(hostile), "--json")
    assert code == 11 and json.loads(out)["more"] == {"checkpoints": N - MAX_LISTED}
    assert peak - small < 40 << 10, (small, peak)


def test_a_failing_device_says_records_held_and_verified(tmp_path: Path) -> None:
    path = tmp_path / "device.jejak"
    path.write_bytes(failing_device(records=10, bad=6))
    code, out = run(str(path), "--lang", "en")
    assert code == 13
    assert ": 10 records in the bundle, 6 verified (seq 0..5) — " in out
    path.write_bytes(failing_device(records=10, bad=0))
    _, out = run(str(path), "--lang", "en")
    assert ": 10 records in the bundle, none verified — " in out
    _, out = run(str(path), "--lang", "id")
    assert ": 10 catatan dalam bundel, tidak satu pun terverifikasi — " in out


def test_json_names_the_problem_the_verdict_comes_from(tmp_path: Path) -> None:
    """A device's problem first, then some of no device (a receipt for the spoiled record's old id, the seal the
    edit broke): `problems` lists only the latter, `problem` is the former."""
    spoiled = decode_bundle(failing_device(records=10, bad=6))
    path = tmp_path / "unsealed.jejak"
    path.write_bytes(replace(spoiled, description="edited").encode())
    code, out = run(str(path), "--json")
    report = json.loads(out)
    assert code == 13 == report["exit_code"]
    assert "seq 6" in report["problem"]["where"]
    assert report["problem"] == report["devices"][0]["problems"][0]
    assert report["problems"][0] != report["problem"]
    assert report["problems"][-1]["where"].startswith("bundle seal")


def test_against_notes_a_device_revoked_since_the_older_bundle(tmp_path: Path) -> None:
    older, newer = revoked_since(records=10, revoked=4)
    (tmp_path / "older.jejak").write_bytes(older)
    (tmp_path / "newer.jejak").write_bytes(newer)
    args = (str(tmp_path / "newer.jejak"), "--against", str(tmp_path / "older.jejak"))
    code, out = run(*args, "--lang", "en")
    assert code == 0
    assert "was revoked from seq 4 since the older bundle, which verified it up to seq 9: 6 records it vouched " \
           "for are no longer accepted" in out
    code, out = run(*args, "--json")
    [note] = json.loads(out)["consistency"]["notes"]
    assert (code, note["note"], note["revoked_from"], note["verified_to"], note["records"]) == (0, "revoked", 4, 9, 6)
    _, out = run(*args, "--lang", "id")
    assert "dicabut mulai seq 4 sejak bundel lama" in out


@pytest.mark.parametrize(("later", "said"), [
    (True, "the hub's log shrank since the older bundle"), (False, "the older bundle's log (6 records) is larger"),
])
def test_a_log_that_shrank_is_not_called_swapped_files(tmp_path: Path, later: bool, said: str) -> None:
    older, newer = shrunk(newer_created_later=later)
    (tmp_path / "older.jejak").write_bytes(older)
    (tmp_path / "newer.jejak").write_bytes(newer)
    code, out = run(str(tmp_path / "newer.jejak"), "--against", str(tmp_path / "older.jejak"), "--json")
    report = json.loads(out)
    assert (code, report["code"]) == (17, "INVALID_CHECKPOINT")
    assert report["problem"]["message"].startswith(said)
