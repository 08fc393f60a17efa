"""The verifier page's words: every line it shows in the auditor's language, Indonesian or English, from one home
(static/verify/i18n.js), and every sentence the checks can name has words in both."""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path

import cbor2
from selenium import webdriver
from selenium.webdriver.common.by import By

from tools import verify
from tools.pagewords import page_words

from .conftest import ROOT
from .tamper import EXAMPLE, device_tamperings, public, stranger
from .test_page import check_file

SCRIPTS = ROOT / "hub" / "static" / "verify"
# The scripts that check a bundle (noble.js is the vendored cryptography, which names no sentence).
CHECKS = ("cbor.js", "record.js", "chain.js", "merkle.js", "checkpoint.js", "bundle.js")
# Words that are the same in both languages: names of the format's own things.
SAME = {"what.checkpoint", "what.log", "at.checkpoint", "at.checkpoints", "cli.n.checkpoint.one", "what.cbor.array",
        "what.cbor.map"}
PLACEHOLDER = re.compile(r"\{(\w+)\}")
# English words no Indonesian line of the page holds (hex ids, site names and the format's field names aside).
ENGLISH = re.compile(r"\b(the|is|not|does|of|with|and|has|its|by|from|to|record|records|signature|key|bundle|device|"
                     r"checked|verified|failed|exit code)\b", re.IGNORECASE)


def words(page: webdriver.Chrome) -> dict[str, dict[str, object]]:
    return page.execute_script("return Jejak.i18n.T")  # type: ignore[no-any-return]


def test_jejak_verify_reads_the_words_the_page_shows(page: webdriver.Chrome) -> None:
    """jejak-verify's reader of i18n.js gives the very object the browser builds from it, in both languages."""
    assert page_words() == words(page)


def test_every_sentence_the_checks_name_has_words_in_both_languages(page: webdriver.Chrome) -> None:
    """A sentence key, failure code or stopped code that a check or the page can name, without words in Indonesian
    and English (with the same placeholders), fails here: a new one cannot ship untranslated."""
    t = words(page)
    en, id_ = t["en"], t["id"]
    assert sorted(en) == sorted(id_)
    differ = [k for k, v in en.items() if isinstance(v, str)
              and sorted(PLACEHOLDER.findall(v)) != sorted(PLACEHOLDER.findall(str(id_[k])))]
    assert differ == [], "placeholders differ between the languages"
    untranslated = [k for k, v in en.items() if isinstance(v, str) and v == id_[k] and k not in SAME]
    assert untranslated == []
    exit_codes = page.execute_script("return Object.keys(Jejak.EXIT)")
    assert sorted(exit_codes) == sorted(en["codes"]) == sorted(id_["codes"])  # type: ignore[call-overload]
    # Each sentence a check names: a dotted literal in the checks' sources ("chain.revoked", at("device.seq")).
    named = set()
    for name in CHECKS:
        named |= set(re.findall(r'"([a-z0-9]+(?:\.[a-z0-9]+)+)"', (SCRIPTS / name).read_text()))
    assert len(named) > 100
    missing = sorted(n for n in named if not {n, "why." + n, "at." + n} & set(en))
    assert missing == [], "sentences without words"
    stopped = set(re.findall(r'"(BROWSER_[A-Z_]+)"', (SCRIPTS / "ui.js").read_text()))
    assert stopped and all(f"stopped.{c}" in en and f"stopped.{c}" in id_ for c in stopped)
    # A sentence a check names is said in English by the checks themselves: one without words is refused.
    assert page.execute_script("""
        try { Jejak.fail("MALFORMED", "no.such.sentence"); } catch (e) { return String(e.message); }""") == \
        "no words for why.no.such.sentence"


def shown(page: webdriver.Chrome) -> list[str]:
    """Every line of the result the page shows: verdict, meaning, what was verified, the key to compare, notes,
    and each step with the reason it fails."""
    lines = [page.find_element(By.ID, i).text for i in ("verdict", "meaning", "what", "compare")]
    lines += [li.text for li in page.find_elements(By.CSS_SELECTOR, "#notes li, #steps li")]
    return [line for line in lines if line]


def jejak_verify_where(bundle: Path) -> str:
    """Where jejak-verify places the first problem of a device."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        verify.main(["--json", str(bundle)])
    report = json.loads(out.getvalue())
    return str(next(p for d in report["devices"] for p in d["problems"])["where"])


def test_page_says_every_line_in_the_chosen_language(page: webdriver.Chrome, tmp_path: Path) -> None:
    """A good bundle and one whose revoked device signs past its revocation point, in Indonesian and in English:
    in Indonesian no line holds English (the reason a record fails and where included), in English the place is
    jejak-verify's word for word, and switching the language says the same result again."""
    revoked = next(c for c in device_tamperings(EXAMPLE.read_bytes())
                   if c.name == "the gate signs a record past its revocation point (resealed)")
    bad = tmp_path / "revoked.jejak"
    bad.write_bytes(revoked.bundle)
    gate = next(lg for lg in cbor2.loads(revoked.bundle)["logs"] if len(lg["records"]) == 7)["device"].hex()
    page.find_element(By.ID, "hubkey").clear()
    for bundle in (EXAMPLE, bad):
        page.find_element(By.CSS_SELECTOR, "[data-lang=id]").click()
        check_file(page, bundle)
        lines = shown(page)
        assert len(lines) >= 10
        english = [line for line in lines if ENGLISH.search(re.sub(r"'[a-z_]+'|\b[0-9a-f]{16,}\b", "", line))]
        assert english == [], english
        page.find_element(By.CSS_SELECTOR, "[data-lang=en]").click()
        assert len(shown(page)) == len(lines) and shown(page) != lines
    assert jejak_verify_where(bad) == f"device {gate} seq 6"
    assert page.find_element(By.ID, "meaning").text == (
        f"A record at or past its key's revocation point. [device {gate} seq 6] "
        "seq 6: the device key is revoked from seq 6")
    assert page.find_element(By.CSS_SELECTOR, "#steps li.fail .why").text == (
        "REVOKED_KEY: seq 6: the device key is revoked from seq 6")
    size = bad.stat().st_size
    assert size > 10000
    # Sizes in bytes with their thousands grouped as each language writes them.
    assert page.find_element(By.ID, "bundle-name").text == f"revoked.jejak ({size:,} bytes)"
    assert page.find_element(By.CSS_SELECTOR, "[data-step='bundle.parse']").text.startswith(f"✔ Bundle read: {size:,} bytes")
    page.find_element(By.CSS_SELECTOR, "[data-lang=id]").click()
    assert page.find_element(By.ID, "bundle-name").text == f"revoked.jejak ({size:,} bita)".replace(",", ".")
    assert page.find_element(By.CSS_SELECTOR, "[data-step='bundle.parse']").text.startswith(
        f"✔ Bundel dibaca: {size:,} bita".replace(",", "."))
    assert page.find_element(By.ID, "meaning").text == (
        f"Catatan pada atau setelah titik pencabutan kuncinya. [perangkat {gate} seq 6] "
        "seq 6: kunci perangkat dicabut mulai seq 6")
    assert page.find_element(By.CSS_SELECTOR, "#steps li.fail .why").text == (
        "REVOKED_KEY: seq 6: kunci perangkat dicabut mulai seq 6")
    # jejak-verify gives the same reason from the same words: what the code means and where, then its own why
    # (its own wording of this problem, in Indonesian from the same file).
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert verify.main([str(bad), "--lang", "id"]) == 19
    lines = out.getvalue().splitlines()
    reason = lines[lines.index("GAGAL: REVOKED_KEY (kode keluar 19), 1 masalah: 17 catatan, 3 checkpoint, "
                               "23 tanda terima") + 1]
    assert reason == (f"Catatan pada atau setelah titik pencabutan kuncinya. [perangkat {gate} seq 6] "
                      "kunci perangkat dicabut mulai seq 6")
    assert page.find_element(By.ID, "meaning").text.startswith(reason.partition("] ")[0] + "] ")


def test_the_file_pickers_speak_the_page_language(page: webdriver.Chrome) -> None:
    """The browser's own file picker says "Choose File" and "No file chosen" in the browser's language, whatever
    the page's: it is not shown, and a label in the page's language opens it."""
    for lang, choose in (("id", "Pilih berkas…"), ("en", "Choose a file…")):
        page.find_element(By.CSS_SELECTOR, f"[data-lang={lang}]").click()
        for slot in ("bundle", "older"):
            assert not page.find_element(By.ID, f"{slot}-file").is_displayed()
            assert page.find_element(By.CSS_SELECTOR, f"label.pick[for={slot}-file]").text == choose


def test_a_bundle_from_another_hub_is_said_in_both_languages(page: webdriver.Chrome) -> None:
    """The auditor pins the key of the hub they trust and is given another hub's bundle: the page says so in the
    auditor's language, at the hub key, as jejak-verify does (INVALID_CHECKPOINT, exit 17)."""
    other = public(stranger()).hex()
    page.find_element(By.ID, "hubkey").clear()
    page.find_element(By.ID, "hubkey").send_keys(other)
    try:
        page.find_element(By.CSS_SELECTOR, "[data-lang=id]").click()
        assert check_file(page, EXAMPLE)[1:] == ("INVALID_CHECKPOINT", "17")
        assert page.find_element(By.ID, "meaning").text.endswith(
            "[kunci hub] bundel menyebut kunci hub lain daripada yang dipatok")
        whys = [e.text for e in page.find_elements(By.CSS_SELECTOR, "#steps li.fail .why")]
        assert "INVALID_CHECKPOINT: ditandatangani hub" in whys[1], whys
        page.find_element(By.CSS_SELECTOR, "[data-lang=en]").click()
        assert page.find_element(By.ID, "meaning").text.endswith(
            "[hub key] bundle names another hub key than the one pinned")
    finally:
        page.find_element(By.ID, "hubkey").clear()
