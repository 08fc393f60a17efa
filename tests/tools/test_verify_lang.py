"""`jejak-verify --lang`: the report in Indonesian or English, in the verifier page's words (one words file)."""

from __future__ import annotations

import contextlib
import io
import json
import re
import tempfile
from pathlib import Path

import pytest

from ledger import MalformedRecord
from tests.webverify.tamper import EXAMPLE, Case, device_tamperings, tamper_set
from tools import verify
from tools.pagewords import WORDS_FILE, Speaker, WordsFileError, page_words, parse_object

# English words no Indonesian line holds, as the page's own test has them (tests/webverify/test_words.py).
ENGLISH = re.compile(r"\b(the|is|not|does|of|with|and|has|its|by|from|to|record|records|signature|key|bundle|device|"
                     r"checked|verified|failed|exit code)\b", re.IGNORECASE)
# What reads the same in both: hex ids, the command's options, quoted field names.
DATA = re.compile(r"\b[0-9a-f]{16,}\b|--[a-z-]+|'[a-z_]+'")


@pytest.fixture(autouse=True)
def no_locale(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LC_ALL", "LC_MESSAGES", "LANG"):
        monkeypatch.delenv(name, raising=False)


def run(*args: str) -> tuple[int, list[str]]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = verify.main(list(args))
    return code, out.getvalue().splitlines()


@pytest.fixture(scope="module")
def revoked(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example with the revoked gate signing a record past its revocation point, resealed: REVOKED_KEY."""
    case = next(c for c in device_tamperings(EXAMPLE.read_bytes())
                if c.name == "the gate signs a record past its revocation point (resealed)")
    path = tmp_path_factory.mktemp("lang") / "revoked.jejak"
    path.write_bytes(case.bundle)
    return path


def python_problems(case: Case) -> list[str]:
    """The message of every problem jejak-verify lists for a tamper case (its --json)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bundle.jejak"
        path.write_bytes(case.bundle)
        argv = ["--json", str(path)]
        if case.against is not None:
            (Path(tmp) / "older.jejak").write_bytes(case.against)
            argv += ["--against", str(Path(tmp) / "older.jejak")]
        if case.hub_key is not None:
            argv += ["--hub-key", case.hub_key.hex()]
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
            verify.main(argv)
    report = json.loads(out.getvalue())
    return [p["message"] for p in report.get("problems", []) + [p for d in report.get("devices", []) for p in d["problems"]]]


def english_in(lines: list[str]) -> list[str]:
    return [line for line in lines if ENGLISH.search(DATA.sub("", line))]


def test_indonesian_report_holds_no_english(revoked: Path, tmp_path: Path) -> None:
    """A good bundle, one that fails at a device and one cut short: in Indonesian no line holds English, every line
    differs from the English report's, and both exit alike."""
    cut = tmp_path / "cut.jejak"
    cut.write_bytes(EXAMPLE.read_bytes()[:2000])
    for bundle, exit_code in ((EXAMPLE, 0), (revoked, 19), (cut, 11)):
        code_id, id_ = run("--lang", "id", str(bundle))
        code_en, en = run("--lang", "en", str(bundle))
        assert (code_id, code_en) == (exit_code, exit_code)
        assert len(id_) >= 2 and english_in(id_) == [], english_in(id_)
        assert english_in(en) != []  # the check finds English where there is some
        assert len(id_) == len(en) and not set(id_) & set(en)
    _, good = run("--lang", "id", str(EXAMPLE))
    assert good[0].startswith("\u2714 Log hub sendiri (id hub 99bcd326b3d06b98cfd4ccdf1903bcac): 6 catatan terverifikasi")
    assert "TERVERIFIKASI: 17 catatan, 3 checkpoint, 23 tanda terima" in good
    assert good[-2].startswith("Terverifikasi: 17 catatan dari 3 perangkat, waktu perangkat 2025-11-23 04:00 UTC")
    _, bad = run("--lang", "id", str(revoked))
    assert "GAGAL: REVOKED_KEY (kode keluar 19), 1 masalah: 17 catatan, 3 checkpoint, 23 tanda terima" in bad
    assert "    REVOKED_KEY: [perangkat da3acae69a9a7e36fd45f480dae089e6 seq 6] kunci perangkat dicabut mulai seq 6" in bad
    _, short = run("--lang", "id", str(cut))
    assert short == ["GAGAL: MALFORMED (kode keluar 11)", "Bita yang bukan struktur Jejak yang utuh dan deterministik. "
                     "bundel: terpotong: berakhir setelah 2000 bita, sebelum map-nya selesai"]


def test_a_problem_without_indonesian_words_is_said_by_its_code() -> None:
    """A problem the words file has no Indonesian for: what its code means, and a line saying where its own words
    are; in English, its own words."""
    problem = MalformedRecord("record: envelope is not in its canonical form",
                              where="device 38e4d4dff6603b0a5f7c6ed4145e5fb9 seq 2")
    assert verify.failed(Speaker("id"), problem).splitlines() == [
        "GAGAL: MALFORMED (kode keluar 11)",
        "Bita yang bukan struktur Jejak yang utuh dan deterministik. [perangkat 38e4d4dff6603b0a5f7c6ed4145e5fb9 seq 2]",
        Speaker("id")("cli.english")]
    assert verify.failed(Speaker("en"), problem).splitlines() == [
        "FAILED: MALFORMED (exit code 11)",
        "Bytes that are not a well-formed, deterministic Jejak structure. [device 38e4d4dff6603b0a5f7c6ed4145e5fb9 "
        "seq 2] record: envelope is not in its canonical form"]
    # The checks' own words for the thing and the sentence after it: said in Indonesian in full.
    worded = MalformedRecord("record payload: not in deterministic CBOR encoding (RFC 8949 \u00a74.2.1)",
                             where="device 38e4d4dff6603b0a5f7c6ed4145e5fb9 seq 2")
    assert verify.failed(Speaker("id"), worded).splitlines() == [
        "GAGAL: MALFORMED (kode keluar 11)",
        "Bita yang bukan struktur Jejak yang utuh dan deterministik. [perangkat 38e4d4dff6603b0a5f7c6ed4145e5fb9 seq 2] "
        "payload catatan: bukan pengodean CBOR deterministik (RFC 8949 \u00a74.2.1)"]


def test_the_failure_reason_is_the_pages_words_for_its_code(revoked: Path) -> None:
    """The line after a failed verdict begins with what the page says the code means, in either language, read
    from the page's words file, then where the problem is, as the page places it."""
    gate = "da3acae69a9a7e36fd45f480dae089e6"
    for lang, at in (("en", f"device {gate} seq 6"), ("id", f"perangkat {gate} seq 6")):
        _, lines = run("--lang", lang, str(revoked))
        verdict = next(i for i, line in enumerate(lines) if "REVOKED_KEY" in line and "19" in line)
        codes = page_words()[lang]["codes"]
        assert isinstance(codes, dict)
        assert lines[verdict + 1].startswith(f"{codes['REVOKED_KEY']} [{at}]")
    _, en = run("--lang", "en", str(revoked))
    assert "A record at or past its key's revocation point. [device da3acae69a9a7e36fd45f480dae089e6 seq 6] " \
           "device key revoked from seq 6" in en


def test_the_locale_chooses_the_language_and_lang_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LANG", "id_ID.UTF-8")
    assert run(str(EXAMPLE))[1] == run("--lang", "id", str(EXAMPLE))[1]
    assert run("--lang", "en", str(EXAMPLE))[1][-3] == "VERIFIED: 17 records, 3 checkpoints, 23 receipts"
    monkeypatch.setenv("LC_ALL", "C.UTF-8")  # LC_ALL overrides LANG, as for every program
    assert run(str(EXAMPLE))[1][-3] == "VERIFIED: 17 records, 3 checkpoints, 23 receipts"
    monkeypatch.setenv("LC_ALL", "id_ID.UTF-8")
    assert run(str(EXAMPLE))[1][-3] == "TERVERIFIKASI: 17 catatan, 3 checkpoint, 23 tanda terima"


def test_json_is_the_same_in_every_language(revoked: Path) -> None:
    for bundle in (EXAMPLE, revoked):
        code_en, en = run("--json", "--lang", "en", str(bundle))
        code_id, id_ = run("--json", "--lang", "id", str(bundle))
        assert (code_en, en) == (code_id, id_)
    assert "device key revoked from seq 6" in "\n".join(id_)


def test_an_unknown_language_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        verify.main(["--lang", "xx", str(EXAMPLE)])
    assert stopped.value.code == verify.EXIT_USAGE
    assert "argument --lang: invalid choice: 'xx' (choose from 'id', 'en')" in capsys.readouterr().err


def test_the_words_file_reads_as_the_browser_reads_it() -> None:
    """Both languages with the same keys, each key's words a string or (codes) an object of strings; the
    browser's own reading of the file is compared in tests/webverify/test_words.py."""
    words = page_words()
    assert sorted(words) == ["en", "id"] and sorted(words["en"]) == sorted(words["id"])
    assert len(words["en"]) > 200
    assert words["en"]["why.record.protected"] == "protected header is not exactly {1: -8}"
    assert words["id"]["summary.pinned"] == "Kunci hub {key} (id hub {id}): dipatok oleh Anda."


def test_the_reader_takes_a_literal_and_refuses_code() -> None:
    text = """const T = {
      a: "one \\"two\\" \\u00e9\\n", // a comment
      'b.c': 'it\\'s', /* another */
      "d": { X: "x", },
    };"""
    words, end = parse_object(text, text.index("{"))
    assert words == {"a": 'one "two" \u00e9\n', "b.c": "it's", "d": {"X": "x"}}
    assert text[end:] == ";"
    for bad, line in (('{\n a: "x" + "y" }', 2), ("{ a: f() }", 1), ('{ a: "x", a: "y" }', 1), ("{ a: 1 }", 1)):
        with pytest.raises(WordsFileError, match=f"{WORDS_FILE.name} line {line}: expected"):
            parse_object(bad, 0)


def test_a_sentence_is_said_again_only_when_the_page_says_it() -> None:
    say = Speaker("id")
    assert say.again("seq 6: the device key is revoked from seq 6") == "seq 6: kunci perangkat dicabut mulai seq 6"
    assert say.again("older bundle: the two bundles come from different hubs") == \
        "bundel lama: kedua bundel berasal dari hub yang berbeda"
    # A placeholder takes data or a sentence the page has; English words in it are no match.
    assert say.again("checkpoint size 12", ("at.",)) is None
    assert say.again("checkpoint size 12", ("at.", "cli.at.")) == "checkpoint berukuran 12"
    assert say.again("device key revoked from seq 6") is None
    assert Speaker("en").again("anything at all") == "anything at all"


def test_each_problem_wording_of_jejak_verify_in_the_words_file_is_one_it_gives() -> None:
    """The words file holds jejak-verify's own wording of its commonest problems ("cli.why." keys, where the page
    words them otherwise): each is said by the checks on the seeded tamper set, so a reworded message fails here
    rather than falling back unseen; and most problems of that set are said in Indonesian in their own words."""
    say = Speaker("id")
    keys = {k for k in page_words()["en"] if k.startswith("cli.why.")}
    used: set[str] = set()
    said = unsaid = 0
    for case in tamper_set(flips=60):
        for problem in python_problems(case):
            for key in keys - used:  # said by the key, alone or after the name of the thing it is about
                if say.again(problem, (key,)) is not None or (say.again(problem, ("why.", key)) is not None
                                                              and say.again(problem, ("why.",)) is None):
                    used.add(key)
            if say.again(problem, ("why.", "cli.why.")) is None:
                unsaid += 1
            else:
                said += 1
    assert sorted(keys - used) == []
    print(f"said in Indonesian: {said} of {said + unsaid} problems")
    assert said >= 0.99 * (said + unsaid)


def test_counts_in_the_summary_take_their_number() -> None:
    tiny = Path(__file__).parents[2] / "docs" / "examples" / "tiny.jejak"
    code, lines = run(str(tiny), "--lang", "en")
    assert code == 0 and any(line.startswith("Verified: 2 records of 1 device, ") for line in lines), lines
    code, lines = run(str(tiny), "--lang", "id")
    assert code == 0 and any(line.startswith("Terverifikasi: 2 catatan dari 1 perangkat, ") for line in lines), lines
