"""The web page and `jejak-verify` agree: every vector, and verdict, code and every problem listed on a seeded tamper
set of the examples."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver

from ledger import cbor
from ledger.errors import LedgerError
from ledger.record import decode_record

from .probes import cbor_probes, record_probes
from .reference import python_verdict
from .tamper import FLIPS_PER_BUNDLE, VECTORS, Case, tamper_set

BATCH = 150
VALID = {"valid/chain-basic.json": "chain", "valid/chain-rotation.json": "chain",
         "valid/chain-detached.json": "chain", "valid/records.json": "records",
         "valid/checkpoints.json": "checkpoints", "rfc6962-transparency-dev.json": "rfc6962",
         "valid/bundle.json": "bundle", "valid/limits.json": "limits"}
# §6.1 enrollment messages pass between a device and its hub; a bundle never carries them. keys.json holds
# the test keys (the tamper set signs with its stranger).
# Split-view evidence passes between hubs (a national hub following a region); a bundle never carries it either.
NOT_APPLICABLE = {"valid/enrollment.json", "keys.json", "valid/split-view.json"}


def vector_files() -> list[str]:
    return [f for f in json.loads((VECTORS / "index.json").read_text())["files"] if f.endswith(".json")]


def test_every_vector_file_is_covered() -> None:
    files = set(vector_files()) | {"rfc6962-transparency-dev.json"}
    invalid = {f for f in files if f.startswith("invalid/")}
    assert files - invalid - set(VALID) - NOT_APPLICABLE == set()


@pytest.mark.parametrize("name", sorted(VALID))
def test_valid_vector(page: webdriver.Chrome, name: str) -> None:
    vector = json.loads((VECTORS / name).read_text())
    if "file" in vector:  # the bundle vector names its CBOR files
        vector["bundle"] = (VECTORS / "valid" / vector["file"]).read_bytes().hex()
        vector["older"] = (VECTORS / "valid" / vector["older_file"]).read_bytes().hex()
    mismatches = page.execute_script("return Jejak.runValid(arguments[0], arguments[1])", VALID[name], vector)
    assert mismatches == [], f"{name}: {mismatches}"


def test_invalid_vectors(page: webdriver.Chrome) -> None:
    names = sorted(f for f in vector_files() if f.startswith("invalid/"))
    vectors = [json.loads((VECTORS / n).read_text()) for n in names]
    got = page.execute_script("return arguments[0].map((v) => Jejak.runVector(v.check, v.input))", vectors)
    wrong = [f"{n}: expected {v['code']}, page says {g}" for n, v, g in zip(names, vectors, got, strict=True)
             if g != v["code"]]
    assert len(names) >= 60
    assert wrong == []


# exit, code, first message, every problem's code sorted, [note, size] of each note
PageVerdict = tuple[int, str | None, str, list[str], list[list[Any]]]


def page_verdicts(page: webdriver.Chrome, cases: list[Case]) -> list[PageVerdict]:
    script = """
      const bytes = (h) => (h === null ? null : Jejak.fromHex(h));
      return arguments[0].map(([bundle, against, hubKey]) => {
        const r = Jejak.verifyBundle(Jejak.fromHex(bundle), {against: bytes(against), hubKey: bytes(hubKey)});
        const problems = Jejak.summary(r).problems;
        const notes = Jejak.summary(r).notes.map((n) => [n.note, n.size]);
        return [r.exit, r.code, problems.length ? problems[0].message : "", problems.map((p) => p.code).sort(), notes];
      });"""
    out: list[PageVerdict] = []
    for at in range(0, len(cases), BATCH):
        batch = [[c.bundle.hex(), None if c.against is None else c.against.hex(),
                  None if c.hub_key is None else c.hub_key.hex()] for c in cases[at:at + BATCH]]
        out += [tuple(r) for r in page.execute_script(script, batch)]  # type: ignore[misc]
    return out


def test_tamper_set_agrees(page: webdriver.Chrome, tmp_path: Path) -> None:
    cases = tamper_set()
    assert len(cases) >= 2 * FLIPS_PER_BUNDLE + 300
    web = page_verdicts(page, cases)
    disagreements = []
    codes: Counter[str] = Counter()
    verified = []
    noted = 0
    for case, (exit_code, code, message, listed, notes) in zip(cases, web, strict=True):
        py = python_verdict(case, tmp_path)
        codes[code or "VERIFIED"] += 1
        if (exit_code, code) != (py.exit, py.code):
            disagreements.append(f"{case.name}: jejak-verify {py.exit} {py.code} ({py.message}) | "
                                 f"page {exit_code} {code} ({message})")
        # Past the verdict, each lists the same problems (FORMAT.md §12.3: each step reports its problems),
        # the consequences a step leaves out included: a receipt past a verified prefix is not checked.
        elif tuple(listed) != py.codes:
            disagreements.append(f"{case.name}: jejak-verify lists {list(py.codes)} | page lists {listed}")
        # Notes, which no verdict depends on, are the same too (FORMAT.md §12.3, notes).
        elif py.notes is not None and tuple((n, size) for n, size in notes) != py.notes:
            disagreements.append(f"{case.name}: jejak-verify notes {list(py.notes)} | page notes {notes}")
        noted += bool(py.notes)
        if exit_code == 0 and case.name.startswith(("example bit", "example-older bit")):
            verified.append(case.name)
    print(f"{len(cases)} cases, {len(cases) - len(disagreements)} agree; page codes {dict(codes)}")
    print(f"single-bit flips that verify in both: {len(verified)}: {verified[:20]}")
    assert noted >= 5  # checkpoints dropped or re-signed leave others untied
    assert disagreements == [], "\n".join(disagreements[:50])


def _python_code(decode: Any, data: bytes) -> str | None:
    try:
        decode(data)
    except LedgerError as exc:
        return exc.code
    return None


@pytest.mark.parametrize(("kind", "probes", "decode", "js"), [
    ("record", record_probes, decode_record, "Jejak.decodeRecord"),
    ("cbor", cbor_probes, lambda b: cbor.decode(b, what="probe"), "Jejak.decode"),
])
def test_decoder_probes_agree(page: webdriver.Chrome, kind: str, probes: Any, decode: Any, js: str) -> None:
    items = probes()
    got = page.execute_script(f"""return arguments[0].map((h) => {{
        try {{ {js}(Jejak.fromHex(h)); return null; }} catch (e) {{ return e.code || String(e); }} }})""",
                              [b.hex() for b in items.values()])
    wrong = [f"{kind} {name}: jejak-verify {py}, page {web}" for (name, data), web in zip(items.items(), got, strict=True)
             if (py := _python_code(decode, data)) != web]
    assert wrong == []
