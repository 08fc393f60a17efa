"""`jejak-verify --lang`: the report in Indonesian or English, in the verifier page's words (one words file)."""

from __future__ import annotations

import ast
import builtins
import contextlib
import importlib
import io
import itertools
import json
import re
import tempfile
from pathlib import Path

import pytest

from ledger import MalformedRecord, errors
from tests.webverify.tamper import EXAMPLE, Case, device_tamperings, tamper_set
from tools import verify
from tools.pagewords import WORDS_FILE, Speaker, WordsFileError, page_words, parse_object

# English words no Indonesian line holds, as the page's own test has them (tests/webverify/test_words.py).
ENGLISH = re.compile(r"\b(the|is|not|does|of|with|and|has|its|by|from|to|record|records|signature|key|bundle|device|"
                     r"checked|verified|failed|exit code)\b", re.IGNORECASE)
# What reads the same in both: hex ids, the command's options, quoted names ('hub_log', 'jejak-bundle/2').
DATA = re.compile(r"\b[0-9a-f]{16,}\b|--[a-z-]+|'[\w./-]+'")


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
    problem = MalformedRecord("record: a check this file has no words for",
                              where="device 38e4d4dff6603b0a5f7c6ed4145e5fb9 seq 2")
    assert verify.failed(Speaker("id"), problem).splitlines() == [
        "GAGAL: MALFORMED (kode keluar 11)",
        "Bita yang bukan struktur Jejak yang utuh dan deterministik. [perangkat 38e4d4dff6603b0a5f7c6ed4145e5fb9 seq 2]",
        Speaker("id")("cli.english")]
    assert verify.failed(Speaker("en"), problem).splitlines() == [
        "FAILED: MALFORMED (exit code 11)",
        "Bytes that are not a well-formed, deterministic Jejak structure. [device 38e4d4dff6603b0a5f7c6ed4145e5fb9 "
        "seq 2] record: a check this file has no words for"]
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


# Every problem a bundle can make jejak-verify report, read from the source of the code that checks a bundle
# (tools/verify.py: verify_bundle_from, compare_bundles_from): each coded error it makes, raised or listed.
ROOT = Path(__file__).parents[2]
VERIFYING = ("ledger/acceptance.py", "ledger/authority.py", "ledger/bodies.py", "ledger/bundle.py", "ledger/cbor.py",
             "ledger/chain.py", "ledger/checkpoint.py", "ledger/cose.py", "ledger/merkle.py", "ledger/record.py",
             "tools/verify.py")
# Coded errors in them that a bundle's check never makes: (file, function or class, the message's start, why).
# Errors of other types (ValueError: a caller's misuse, as of the hub's BundleEncoder or a signer's seed) are not
# what jejak-verify reports, and are not read.
NOT_VERIFYING = (
    ("ledger/acceptance.py", "accept", "the log is at its quota", "a replica's quota: a bundle's check sets none"),
    ("ledger/acceptance.py", "accept", "unusable record", "Python's own words for a fault of the checks"),
    ("ledger/chain.py", "ChainState.from_cbor", "", "a chain state the hub stores, never in a bundle"),
    ("ledger/chain.py", "ChainBuilder", "", "building a log, which edges and the hub do"),
    ("ledger/record.py", "encode_record", "", "signing a record, which edges and the hub do"),
    ("ledger/cbor.py", "_head", "", "the heads the hub's bundle encoder writes"),
    ("ledger/merkle.py", "MerkleTree", "", "the hub's tree and its store, which make proofs; a bundle's proofs are "
                                           "checked by root_from_inclusion and verify_consistency"),
)
CODED = {name for name, value in vars(errors).items()
         if isinstance(value, type) and issubclass(value, errors.LedgerError)}
VALUE = "7"  # a value only known when the check runs: data, which reads the same in both languages


def _left_out(path: str, qual: str, messages: list[str]) -> set[tuple[str, str, str, str]]:
    """The entries of NOT_VERIFYING that leave out an error of `qual` in `path` whose message can be `messages`."""
    return {e for e in NOT_VERIFYING if path == e[0] and (qual == e[1] or qual.startswith(e[1] + "."))
            and all(m.startswith(e[2]) for m in messages)}


class _Source:
    """The files' syntax trees, each node with the file, function (qualified name) and function node it is in."""

    def __init__(self) -> None:
        self.trees = {path: ast.parse((ROOT / path).read_text(encoding="utf-8")) for path in VERIFYING}
        self.modules = {path: importlib.import_module(path.removesuffix(".py").replace("/", ".")) for path in VERIFYING}
        self.inside: dict[ast.AST, tuple[str, str, ast.FunctionDef | None]] = {}
        for path, tree in self.trees.items():
            self._index(path, tree, "", None)

    def _index(self, path: str, node: ast.AST, qual: str, func: ast.FunctionDef | None) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.ClassDef):
                name = f"{qual}.{child.name}" if qual else child.name
                self.inside[child] = (path, name, child if isinstance(child, ast.FunctionDef) else func)
                self._index(path, child, name, child if isinstance(child, ast.FunctionDef) else func)
            else:
                self.inside[child] = (path, qual, func)
                self._index(path, child, qual, func)

    def texts(self, expr: ast.expr | None, at: ast.AST, depth: int = 0) -> list[str]:
        """What the text `expr` (in the code of `at`) can be: literal text as it is; a name bound to text (a local,
        or a parameter, as its callers in these files give it) as that text; a value of the module alone (its
        constants, "{MAX_DEPTH}", "{sorted(KINDS)}") as it is; any other value as VALUE."""
        path, _, func = self.inside[at]
        if expr is None or depth > 6:
            return [VALUE]
        if isinstance(expr, ast.Constant):
            return [expr.value] if isinstance(expr.value, str) else [VALUE]
        if isinstance(expr, ast.JoinedStr):
            parts = [self.texts(v, at, depth + 1) if isinstance(v, ast.Constant) else self._formatted(v, at, depth)
                     for v in expr.values if isinstance(v, ast.Constant | ast.FormattedValue)]
            return ["".join(p) for p in itertools.islice(itertools.product(*parts), 500)]
        if (value := self._constant(expr, at)) is not None:
            return [value if isinstance(value, str) else str(value)]
        if isinstance(expr, ast.Name) and func is not None:
            for node in ast.walk(func):  # a local given text
                if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == [expr.id]:
                    return self.texts(node.value, node, depth + 1)
            if expr.id in [a.arg for a in func.args.args + func.args.kwonlyargs]:
                return self._given(func, expr.id, depth + 1)
        if isinstance(expr, ast.Call) and isinstance(expr.func, ast.Name):  # a function of the file that says a text
            said = [t for node in self.inside if isinstance(node, ast.FunctionDef) and node.name == expr.func.id
                    and self.inside[node][0] == path
                    for r in ast.walk(node) if isinstance(r, ast.Return) for t in self.texts(r.value, r, depth + 1)]
            return said or [VALUE]
        return [VALUE]

    def _constant(self, expr: ast.expr, at: ast.AST) -> object | None:
        """The value of an expression of the module's own names alone ("MAX_DEPTH", "sorted(KINDS)"), else None."""
        path, _, func = self.inside[at]
        names = {n.id for n in ast.walk(expr) if isinstance(n, ast.Name)}
        module = vars(self.modules[path])
        if names & _locals(func) or not names <= module.keys() | set(dir(builtins)):
            return None
        try:
            return eval(compile(ast.Expression(expr), path, "eval"), dict(module))  # our own source, its constants
        except Exception:
            return None

    def _formatted(self, value: ast.FormattedValue, at: ast.AST, depth: int) -> list[str]:
        """A "{...}" of an f-string: its texts, converted (!r) and formatted as it says."""
        spec = "".join(self.texts(value.format_spec, at, depth + 1)) if value.format_spec else ""
        convert = {ord("r"): repr, ord("a"): ascii}.get(value.conversion, lambda x: x)
        if (constant := self._constant(value.value, at)) is not None:
            return [format(convert(constant), spec)]
        texts = self.texts(value.value, at, depth + 1)
        return [VALUE if t == VALUE else format(convert(t), spec) for t in texts]

    def _given(self, func: ast.FunctionDef, param: str, depth: int) -> list[str]:
        """What the calls in these files give `func`'s parameter `param` (its default where a call leaves it out)."""
        path, qual, _ = self.inside[func]
        method = "." in qual and func.args.args and func.args.args[0].arg in ("self", "cls")
        positional = [a.arg for a in func.args.args][1 if method else 0:]
        defaults = dict(zip([a.arg for a in func.args.args][::-1], func.args.defaults[::-1], strict=False))
        defaults |= {a.arg: d for a, d in zip(func.args.kwonlyargs, func.args.kw_defaults, strict=True) if d}
        out: list[str] = []
        for node, (at_path, at_qual, _) in self.inside.items():
            if not isinstance(node, ast.Call) or _left_out(at_path, at_qual, [""]):
                continue
            f = node.func
            if method:  # self.key(...), src.key(...)
                calls = isinstance(f, ast.Attribute) and f.attr == func.name
            else:  # decode(...) in its own file, cbor.decode(...) in another
                calls = (isinstance(f, ast.Name) and f.id == func.name) or (
                    isinstance(f, ast.Attribute) and f.attr == func.name and isinstance(f.value, ast.Name)
                    and path.endswith(f"/{f.value.id}.py"))
            if not calls:
                continue
            given = next((k.value for k in node.keywords if k.arg == param), None)
            if given is None and param in positional and positional.index(param) < len(node.args):
                given = node.args[positional.index(param)]
            if given is not None:
                out += self.texts(given, node, depth)
            elif param in defaults:
                out += self.texts(defaults[param], func.args, depth)
        return list(dict.fromkeys(out)) or [VALUE]


def _locals(func: ast.FunctionDef | None) -> set[str]:
    if func is None:
        return set()
    args = func.args
    return ({a.arg for a in args.args + args.kwonlyargs + args.posonlyargs}
            | {a.arg for a in (args.vararg, args.kwarg) if a is not None}
            | {n.id for n in ast.walk(func) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)})


def bundle_problems() -> tuple[list[tuple[str, list[str], list[str]]], set[tuple[str, str, str, str]]]:
    """(file:line, what its message can be, where it can be) of each coded error a bundle's check makes, and the
    entries of NOT_VERIFYING that left one out."""
    src = _Source()
    found, used = [], set()
    for node, (path, qual, _) in src.inside.items():
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in CODED and node.args):
            continue
        messages = src.texts(node.args[0], node)
        left_out = _left_out(path, qual, messages)
        if left_out:
            used.update(left_out)
            continue
        where = next((k.value for k in node.keywords if k.arg == "where"), None)
        places = [] if where is None else [p for p in src.texts(where, node) if p != VALUE]
        found.append((f"{path}:{node.lineno}", messages, places))
    return sorted(found), used


def test_every_problem_a_bundle_can_have_is_said_in_indonesian() -> None:
    """Each coded error the checks of a bundle can make, in each form its message can take (values known only
    when it runs stand as data), is said in Indonesian with no English left, and so is where it is: a new
    problem, or a reworded one, cannot reach an auditor in English."""
    found, used = bundle_problems()
    assert len(found) > 130
    assert used == set(NOT_VERIFYING)  # each leaves out a problem that is still there
    messages = {m for _, ms, _ in found for m in ms}
    # The reader follows a text through names and calls to the words an auditor reads.
    assert {"record protected header: empty input", "bundle: log bodies must name each seq once",
            "bundle: expected format 'jejak-bundle/2', got 7", "7 body field 7: expected 7, got 7",
            "checkpoint: expected an array of 4 items, got an array of 7 items"} <= messages
    say = Speaker("id")
    unsaid, english = [], []
    for at, ms, places in found:
        for text, prefixes, shown in ([(m, ("why.", "cli.why."), "{}") for m in ms]
                                      + [(p, ("at.", "cli.at."), "[{}]") for p in places]):
            said = say.again(text, prefixes)
            if said is None:
                unsaid.append(f"{at}: {shown.format(text)}")
            elif english_in([said]):
                english.append(f"{at}: {shown.format(said)}")
    assert unsaid == [], "\n".join(["without Indonesian words:", *unsaid])
    assert english == [], "\n".join(["English left:", *english])


def test_a_broken_older_bundle_is_said_to_be_the_older_in_indonesian(tmp_path: Path) -> None:
    """An empty older bundle (--against): the reason says it is the older bundle, in Indonesian too."""
    older = tmp_path / "lama.jejak"
    older.write_bytes(b"")
    code, lines = run(str(EXAMPLE), "--against", str(older), "--lang", "id")
    assert code == MalformedRecord.exit_code
    assert lines == ["GAGAL: MALFORMED (kode keluar 11)",
                     f"Bita yang bukan struktur Jejak yang utuh dan deterministik. [bundel lama (--against {older})] "
                     "bundel: terpotong: berakhir setelah 0 bita, sebelum map-nya selesai"]
    assert english_in([line.replace(str(older), "") for line in lines]) == []  # the path is the auditor's


def test_a_failed_report_in_indonesian_says_nothing_verified(revoked: Path) -> None:
    code, lines = run(str(revoked), "--lang", "id")
    assert code == 19
    assert [line for line in lines if line.lower().startswith("terverifikasi")] == []
    assert run(str(EXAMPLE), "--lang", "id")[1][-2].startswith("Terverifikasi: 17 catatan dari 3 perangkat, ")
