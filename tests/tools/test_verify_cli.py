"""`jejak-verify` on the shipped example bundle: it verifies, and every kind of tampering gets its exit code."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import cbor2
import pytest

import ledger
from ledger import cbor
from tools import example
from tools import verify as jejak_verify

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "docs" / "examples" / example.NEWER
OLDER = ROOT / "docs" / "examples" / example.OLDER
HUB = example.example_signer("hub-jawa-barat")


@pytest.fixture(autouse=True)
def english_locale(monkeypatch: pytest.MonkeyPatch) -> None:
    """The report in English whatever the machine's locale (an Indonesian one makes Indonesian the default)."""
    for name in ("LC_ALL", "LC_MESSAGES", "LANG"):
        monkeypatch.delenv(name, raising=False)


def run(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = jejak_verify.main(list(args))
    return code, out.getvalue()


def bundle_map() -> dict[str, Any]:
    item = cbor.decode(EXAMPLE.read_bytes())
    assert isinstance(item, dict)
    return item


def write(tmp_path: Path, item: dict[str, Any] | bytes, name: str = "tampered.jejak") -> str:
    path = tmp_path / name
    path.write_bytes(item if isinstance(item, bytes) else cbor.encode(item))
    return str(path)


def test_committed_examples_are_what_the_generator_makes() -> None:
    newer, older = example.build()
    assert EXAMPLE.read_bytes() == newer
    assert OLDER.read_bytes() == older


def test_example_main_writes_both_bundles(tmp_path: Path) -> None:
    lines: list[str] = []
    assert example.main(["--dir", str(tmp_path)], out=lines.append) == 0
    assert (tmp_path / example.NEWER).read_bytes() == EXAMPLE.read_bytes()
    assert (tmp_path / example.OLDER).read_bytes() == OLDER.read_bytes()
    assert any("jejak-verify" in line for line in lines)


def test_example_content() -> None:
    bundle = ledger.decode_bundle(EXAMPLE.read_bytes())
    assert len(bundle.logs) == 3
    kinds = {ledger.decode_record(r).kind for log in bundle.logs for r in log.records}
    assert {"key", "scan", "reading", "price", "stock", "note"} <= kinds
    assert any(len(log.keys) == 2 for log in bundle.logs)  # one key rotation
    assert any(log.bodies for log in bundle.logs)  # one detached body
    assert len(bundle.checkpoints) == 3 and len(bundle.consistency) == 2
    assert len(bundle.receipts) == sum(len(log.records) for log in bundle.logs) + len(bundle.hub_log)
    decisions = [ledger.decode_record(r).body for r in bundle.hub_log[1:]]
    assert [d["action"] for d in decisions if d] == ["approve", "approve", "approve", "rotate", "revoke"]


def test_example_verifies_human_output_via_console_script() -> None:
    # The tree under test ahead of the installed copy, which an editable install may take from another checkout.
    out = subprocess.run([str(Path(sys.executable).with_name("jejak-verify")), str(EXAMPLE), "--lang", "en"],
                         capture_output=True, text=True, check=False, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("\u2714 Device ") == 3
    assert "\u2714 The hub's own log (hub id 99bcd326b3d06b98cfd4ccdf1903bcac): 6 records verified, 5 decisions " \
           "among them." in out.stdout
    assert "revocation point from the hub's decisions (6) and signatures." in out.stdout
    assert "VERIFIED: 17 records, 3 checkpoints, 23 receipts" in out.stdout


def test_example_verifies_json_output() -> None:
    code, out = run(str(EXAMPLE), "--json")
    assert code == 0
    report = json.loads(out)
    assert report["ok"] is True
    assert [d["ok"] for d in report["devices"]] == [True, True, True]
    assert [c["tree_size"] for c in report["checkpoints"]] == [12, 18, 23]
    assert report["receipts_checked"] == 23
    assert report["problems"] == []


def test_report_says_what_was_verified_and_what_to_compare() -> None:
    """The records, devices and device-time span that verified, the checkpoint, and the hub key to compare out
    of band (example.py: the kitchen starts at 04:00 UTC, the gate's last return is at 07:30 UTC)."""
    key = HUB.public_key.hex()
    hub_id = ledger.device_id_for(HUB.public_key).hex()
    code, out = run(str(EXAMPLE), "--lang", "en")
    assert code == 0
    assert out.splitlines()[-2:] == [
        "Verified: 17 records of 3 devices, device time 2025-11-23 04:00 UTC to 2025-11-23 07:30 UTC, "
        "under checkpoint size 23 of 2025-11-23 08:00 UTC.",
        f"Hub key {key} (hub id {hub_id}): compare it with the key the hub's operator published through another "
        "channel (an official letter, a website), or pin it with --hub-key."]
    code, out = run(str(EXAMPLE), "--hub-key", key, "--lang", "en")
    assert code == 0
    assert out.splitlines()[-1] == f"Hub key {key} (hub id {hub_id}): pinned by you."
    report = json.loads(run(str(EXAMPLE), "--json")[1])
    assert (report["hub_key"], report["hub_id"], report["hub_key_pinned"]) == (key, hub_id, False)
    spans = [(d["first_time"], d["last_time"]) for d in report["devices"]]
    assert min(a for a, _ in spans) == example.T0 and max(b for _, b in spans) == example.T0 + 12_600


def test_notes_on_checkpoints_are_said_and_the_bundle_still_verifies(tmp_path: Path) -> None:
    # FORMAT.md §12.3, notes: checkpoint 12 with its consistency entry dropped, and a size-0 checkpoint over a
    # root that is not MTH({}), both signed by the hub and sealed: exit 0, and the auditor reads both notes.
    bundle = ledger.decode_bundle(EXAMPLE.read_bytes())
    false = ledger.sign_checkpoint(HUB, tree_size=0, root=bytes(32), time=example.T0, authority=(0, bytes(32)))
    noted = dataclasses.replace(bundle, checkpoints=[false.raw, *bundle.checkpoints],
                                consistency=[c for c in bundle.consistency if c[0] != 12]).sealed(HUB)
    path = write(tmp_path, noted.encode())
    code, out = run(path, "--lang", "en")
    assert code == 0, out
    notes = [line for line in out.splitlines() if line.startswith("\u26a0 ")]
    assert notes == [
        "\u26a0 Note: checkpoint of size 0 names a root that is not the empty tree's: the hub signed a false "
        "statement. This is not a failure by the format, but worth reporting.",
        "\u26a0 Note: checkpoint of size 12 is not tied to checkpoint of size 23 by a consistency proof: the bundle "
        "does not show that the larger log extends it. This is not a failure; ask the hub for the consistency proof."]
    assert "VERIFIED: 17 records, 4 checkpoints, 23 receipts" in out
    code, out = run(path, "--json")
    report = json.loads(out)
    assert (code, report["ok"], report["problems"]) == (0, True, [])
    assert [(n["note"], n["size"], n["largest"]) for n in report["notes"]] == [("empty_root", 0, 23),
                                                                               ("untied", 12, 23)]
    assert json.loads(run(str(EXAMPLE), "--json")[1])["notes"] == []


def test_pinned_hub_key(tmp_path: Path) -> None:
    assert run(str(EXAMPLE), "--hub-key", HUB.public_key.hex())[0] == 0
    other = example.example_signer("another hub").public_key.hex()
    code, out = run(str(EXAMPLE), "--hub-key", other, "--json")
    assert code == ledger.BadCheckpoint.exit_code
    assert json.loads(out)["ok"] is False


def _log(item: dict[str, Any], index: int = 2) -> dict[str, Any]:
    log: dict[str, Any] = item["logs"][index]
    return log


def test_bit_flip_in_a_record_signature(tmp_path: Path) -> None:
    item = bundle_map()
    raw = bytearray(_log(item)["records"][2])
    raw[-3] ^= 0x04
    _log(item)["records"][2] = bytes(raw)
    code, out = run(write(tmp_path, item), "--json")
    assert code == ledger.BadSignature.exit_code == 13
    report = json.loads(out)
    bad = [d for d in report["devices"] if not d["ok"]]
    assert len(bad) == 1 and bad[0]["problems"][0]["code"] == "INVALID_SIGNATURE"
    assert "seq 2" in bad[0]["problems"][0]["where"]


def test_bit_flip_in_a_record_payload(tmp_path: Path) -> None:
    item = bundle_map()
    raw = bytearray(_log(item)["records"][1])
    raw[40] ^= 0x01  # inside the payload: either no longer canonical, or no longer what was signed
    _log(item)["records"][1] = bytes(raw)
    code, _ = run(write(tmp_path, item))
    assert code in (ledger.MalformedRecord.exit_code, ledger.BadSignature.exit_code)


def test_deleted_record(tmp_path: Path) -> None:
    item = bundle_map()
    del _log(item)["records"][2]
    code, out = run(write(tmp_path, item))
    assert code == ledger.BrokenChain.exit_code == 14
    assert "expected seq 2, got 3" in out


def test_reordered_records(tmp_path: Path) -> None:
    item = bundle_map()
    recs = _log(item)["records"]
    recs[2], recs[3] = recs[3], recs[2]
    code, out = run(write(tmp_path, item), "--json")
    assert code == ledger.BrokenChain.exit_code
    assert "BROKEN_CHAIN" in out


def test_truncated_file(tmp_path: Path) -> None:
    data = EXAMPLE.read_bytes()
    code, out = run(write(tmp_path, data[: len(data) // 2]))
    assert code == ledger.MalformedRecord.exit_code == 11
    assert "MALFORMED" in out


def test_truncated_log_is_caught_by_the_receipts(tmp_path: Path) -> None:
    item = bundle_map()
    _log(item)["records"] = _log(item)["records"][:-2]
    code, out = run(write(tmp_path, item), "--json")
    assert code != 0
    problems = json.loads(out)["problems"]
    assert any("receipt" in p["message"] for p in problems)


def test_rewritten_checkpoint(tmp_path: Path) -> None:
    item = bundle_map()
    tagged = cbor2.loads(item["checkpoints"][1])
    parts = list(tagged.value)
    parts[2] = bytes(32)  # a different root under the old signature
    item["checkpoints"][1] = cbor2.dumps(cbor2.CBORTag(18, parts))
    code, out = run(write(tmp_path, item))
    assert code == ledger.BadCheckpoint.exit_code == 17
    assert "INVALID_CHECKPOINT" in out


def test_inconsistent_checkpoint_pair(tmp_path: Path) -> None:
    """The hub signs a checkpoint over a log whose leaf 3 it rewrote: both signatures hold, the pair does not."""
    item = bundle_map()
    leaves = [ledger.leaf_hash(r) for r in _all_leaves()]
    leaves[3] = ledger.leaf_hash(b"a record the hub swapped in")
    tree = ledger.MerkleTree(leaves)
    head = ledger.decode_checkpoint(item["checkpoints"][2]).authority
    forged = ledger.sign_checkpoint(HUB, tree_size=23, root=tree.root(), time=1_763_890_000, authority=head)
    item["checkpoints"][2] = forged.raw
    item["consistency"] = [[a, b, tree.consistency_proof(a, b)] for a, b, _ in item["consistency"]]
    code, out = run(write(tmp_path, item), "--json")
    # FORMAT.md §10: a consistency proof between two signed checkpoints that fails is INVALID_PROOF.
    assert code == ledger.BadProof.exit_code
    assert any("consistency" in p["message"] for p in json.loads(out)["problems"])


def _all_leaves() -> list[bytes]:
    hub, _ = example._story()
    return [r.raw for r in hub.writer.leaves]


def test_forged_receipt(tmp_path: Path) -> None:
    item = bundle_map()
    rid, receipt = item["receipts"][5]
    tagged = cbor2.loads(receipt)
    protected, unprotected, payload, sig = tagged.value
    size, index, path = cbor2.loads(unprotected[396][-1][0])
    path = list(path)
    path[0] = bytes(31) + b"\x01"
    unprotected = {396: {-1: [cbor.encode([size, index, path])]}}
    item["receipts"][5] = [rid, cbor.encode([protected, unprotected, payload, sig], tag=18)]
    code, out = run(write(tmp_path, item), "--json")
    assert code == ledger.BadProof.exit_code == 16
    assert "INVALID_PROOF" in out


def test_every_tamper_class_has_a_distinct_meaning() -> None:
    codes = {c.exit_code for c in (ledger.MalformedRecord, ledger.BadSignature, ledger.BrokenChain,
                                   ledger.ForkDetected, ledger.BadProof, ledger.BadCheckpoint,
                                   ledger.UnknownKey, ledger.RevokedKey)}
    assert len(codes) == 8 and 0 not in codes and 2 not in codes


def test_against_older_bundle() -> None:
    code, out = run(str(EXAMPLE), "--against", str(OLDER), "--lang", "en")
    assert code == 0
    assert "\u2714 The log grew consistently from size 18 to 23 (compared with the older bundle)." in out
    code, out = run(str(EXAMPLE), "--against", str(OLDER), "--json")
    assert json.loads(out)["consistency"] == {"from": 18, "to": 23, "notes": []}  # no device revoked since


def test_against_a_rewritten_log_fails(tmp_path: Path) -> None:
    """The older bundle the auditor kept shows a different history than the hub's newer bundle extends."""
    older = cbor.decode(OLDER.read_bytes())
    assert isinstance(older, dict)
    leaves = [ledger.leaf_hash(r) for r in _all_leaves()[:18]]
    leaves[0] = ledger.leaf_hash(b"the history the auditor saw")
    head = ledger.decode_checkpoint(older["checkpoints"][-1]).authority
    rewritten = ledger.sign_checkpoint(HUB, tree_size=18, root=ledger.MerkleTree(leaves).root(), time=1_763_877_600,
                                       authority=head)
    older["checkpoints"][-1] = rewritten.raw
    code, out = run(str(EXAMPLE), "--against", write(tmp_path, older, "older.jejak"))
    # The older bundle must verify on its own first (FORMAT.md §12.4): its own proofs no longer lead there.
    assert code == ledger.BadProof.exit_code
    assert "INVALID_PROOF" in out or "consistency" in out


@pytest.mark.parametrize("args", [["/nonexistent.jejak"], [str(EXAMPLE), "--hub-key", "zz"]])
def test_usage_errors_exit_2(args: list[str]) -> None:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert run(*args)[0] == jejak_verify.EXIT_USAGE
    assert json.loads(err.getvalue())["error"]["code"] == "USAGE"


def test_a_file_larger_than_any_bundle_is_refused_unread(tmp_path: Path) -> None:
    """A file over FORMAT.md §12's 2^30 bytes is MALFORMED without being read: jejak-verify, held to 768 MB of
    address space, answers it (as bundle and as --against) where reading it would run out of memory."""
    huge = tmp_path / "huge.jejak"
    with huge.open("wb") as fh:  # sparse: no disk used
        fh.truncate(ledger.bundle.MAX_BUNDLE_BYTES + 1)
    limit = "import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (768 << 20, 768 << 20)); "
    for args in ([str(huge)], [str(EXAMPLE), "--against", str(huge)]):
        out = subprocess.run([sys.executable, "-c", limit + "from tools.verify import main; sys.exit(main(sys.argv[1:]))",
                              *args, "--json"], capture_output=True, text=True, check=False, cwd=ROOT)
        assert out.returncode == ledger.MalformedRecord.exit_code, out.stdout + out.stderr
        problem = json.loads(out.stdout)["problems"][0]
        assert problem["code"] == "MALFORMED" and f"larger than {2**30} bytes" in problem["message"]


def _resealed_older(tmp_path: Path) -> str:
    """The older example with its `created` changed after the hub sealed it: its seal no longer holds."""
    older = cbor.decode(OLDER.read_bytes())
    assert isinstance(older, dict)
    older["created"] += 1
    return write(tmp_path, older, "older-edited.jejak")


def test_a_broken_older_bundle_is_said_to_be_the_older(tmp_path: Path) -> None:
    """An older bundle (--against) that is empty or whose seal fails: the problem says it is the older bundle's,
    with the path given, in the text and in --json, so that the auditor does not take the new export for damaged;
    the exit code is the problem's own."""
    empty = write(tmp_path, b"", "older-empty.jejak")
    resealed = _resealed_older(tmp_path)
    for older, error in ((empty, ledger.MalformedRecord), (resealed, ledger.BadSignature)):
        code, out = run(str(EXAMPLE), "--against", older, "--lang", "en")
        assert code == error.exit_code, out
        verdict, reason = out.splitlines()
        assert verdict == f"FAILED: {error.code} (exit code {error.exit_code})"
        assert f" [older bundle (--against {older})] " in reason
        code, out = run(str(EXAMPLE), "--against", older, "--json")
        report = json.loads(out)
        assert code == error.exit_code and report["code"] == error.code and report["exit_code"] == code
        [problem] = report["problems"]
        assert problem["message"].startswith("older bundle: ")
        assert problem["where"].startswith(f"older bundle (--against {older})")
    assert json.loads(run(str(EXAMPLE), "--against", empty, "--json")[1])["problems"][0]["message"] == \
        "older bundle: cut short: it ends after 0 bytes, before its map does"
    # A problem of the comparison names both bundles itself and is not put on the older one.
    code, out = run(str(OLDER), "--against", str(EXAMPLE), "--json")
    assert code == ledger.BadCheckpoint.exit_code
    assert "older bundle (--against" not in out


def test_a_failed_report_says_nothing_verified(tmp_path: Path) -> None:
    """Under a FAILED verdict no line reads "Verified: ..." as a second verdict; the hub key to compare stays."""
    item = bundle_map()
    raw = bytearray(_log(item)["records"][2])
    raw[-3] ^= 0x04
    _log(item)["records"][2] = bytes(raw)
    code, out = run(write(tmp_path, item), "--lang", "en")
    assert code == ledger.BadSignature.exit_code
    assert [line for line in out.splitlines() if "Verified" in line or "VERIFIED" in line] == []
    assert out.splitlines()[-1].startswith(f"Hub key {HUB.public_key.hex()} ")
    assert run(str(EXAMPLE), "--lang", "en")[1].splitlines()[-2].startswith("Verified: 17 records of 3 devices, ")


def test_json_gives_the_verdict_code_and_exit_code(tmp_path: Path) -> None:
    """--json's `code` is the verdict's (the first problem in FORMAT.md §12.3 order, null when all holds) and
    `exit_code` is what the command exits with: on a good bundle, a report with problems, a bundle the checks
    stop on, and --against."""
    item = bundle_map()
    raw = bytearray(_log(item)["records"][2])
    raw[-3] ^= 0x04
    _log(item)["records"][2] = bytes(raw)
    data = EXAMPLE.read_bytes()
    cases = [([str(EXAMPLE)], None, 0), ([str(EXAMPLE), "--against", str(OLDER)], None, 0),
             ([write(tmp_path, item)], "INVALID_SIGNATURE", 13),
             ([write(tmp_path, data[: len(data) // 2], "cut.jejak")], "MALFORMED", 11),
             ([str(EXAMPLE), "--hub-key", example.example_signer("another hub").public_key.hex()],
              "INVALID_CHECKPOINT", 17)]
    for args, verdict, exit_code in cases:
        code, out = run(*args, "--json")
        report = json.loads(out)
        assert (code, report["ok"], report["code"], report["exit_code"]) == (exit_code, verdict is None, verdict,
                                                                             exit_code), args
        assert list(report)[:3] == ["ok", "code", "exit_code"]


def usage_error(*args: str) -> tuple[int, dict[str, str]]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = run(*args)[0]
    error: dict[str, str] = json.loads(err.getvalue())["error"]
    return code, error


def test_usage_errors_name_the_argument_in_plain_words(tmp_path: Path) -> None:
    """A missing file, a directory, a key that is not 64 hex digits: exit 2 with what is wrong with which argument,
    and no Python exception text ("[Errno 2]", "fromhex()"); in Indonesian with --lang id, English with --json."""
    missing = str(tmp_path / "nothere.jejak")
    cases = [
        (["--lang", "en", missing], "bundle", f"the bundle file does not exist: {missing}"),
        (["--lang", "id", missing], "bundle", f"berkas bundel tidak ada: {missing}"),
        (["--lang", "id", "--json", missing], "bundle", f"the bundle file does not exist: {missing}"),
        (["--lang", "en", str(EXAMPLE), "--against", missing], "--against",
         f"the older bundle file (--against) does not exist: {missing}"),
        (["--lang", "id", str(EXAMPLE), "--against", missing], "--against",
         f"berkas bundel lama (--against) tidak ada: {missing}"),
        (["--lang", "en", str(tmp_path)], "bundle", f"the bundle file is a directory, not a file: {tmp_path}"),
        (["--lang", "id", str(tmp_path)], "bundle", f"berkas bundel adalah direktori, bukan berkas: {tmp_path}"),
        (["--lang", "en", str(EXAMPLE), "--hub-key", "zz"], "--hub-key",
         "--hub-key must be the hub's Ed25519 public key as 64 hex digits, got 'zz'"),
        (["--lang", "id", str(EXAMPLE), "--hub-key", "zz"], "--hub-key",
         "--hub-key harus kunci publik Ed25519 hub dalam 64 digit hex, didapat 'zz'"),
        # Hex, but not a key: refused as the page's hub key field refuses it, not checked as one.
        (["--lang", "en", str(EXAMPLE), "--hub-key", "abcd"], "--hub-key",
         "--hub-key must be the hub's Ed25519 public key as 64 hex digits, got 'abcd'"),
    ]
    for args, where, message in cases:
        code, error = usage_error(*args)
        assert (code, error["code"], error["where"], error["message"]) == (2, "USAGE", where, message), args
        assert "Errno" not in error["hint"] and error["hint"]
    assert usage_error("--lang", "id", missing)[1]["hint"] == \
        "berikan jalur berkas bundel (.jejak) yang ada dan dapat dibaca pengguna ini"
