"""The verifier page as an auditor uses it: served at /verify, written by `jejak export --with-verifier`, a file
dropped on it, the verdict and steps in Indonesian and English."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import re
from pathlib import Path
from typing import Any

import aiohttp
import cbor2
from selenium import webdriver
from selenium.webdriver.common.by import By

from hub.app import start_hub
from hub.auth import hash_token
from hub.config import HubConfig
from hub.webverify import standalone_page
from ledger import BundleWriter, ChainBuilder, Ed25519Signer
from tests.dashboard.harness import browser
from tests.hub.conftest import enroll, new_device
from tools import cli, verify

from .conftest import load, wait_for
from .tamper import EXAMPLE, OLDER, checkpoint_of_size_0, device_tamperings, edited, example_hub


def check_file(driver: webdriver.Chrome, bundle: Path, older: Path | None = None) -> tuple[str, str, str]:
    driver.execute_script("document.getElementById('result').hidden = true")
    driver.find_element(By.ID, "bundle-file").send_keys(str(bundle))
    if older is not None:
        driver.find_element(By.ID, "older-file").send_keys(str(older))
    driver.find_element(By.ID, "run").click()
    wait_for(driver, "return !document.getElementById('result').hidden")
    verdict = driver.find_element(By.ID, "verdict")
    return verdict.text, verdict.get_attribute("data-code") or "", verdict.get_attribute("data-exit") or ""


def test_standalone_page_from_file(tmp_path: Path) -> None:
    page = tmp_path / "jejak-verify.html"
    page.write_text(standalone_page(), encoding="utf-8")
    assert "<script src=" not in page.read_text()
    flipped = tmp_path / "flipped.jejak"
    data = bytearray(EXAMPLE.read_bytes())
    data[len(data) // 3] ^= 0x04
    flipped.write_bytes(bytes(data))
    driver, close = browser()
    try:
        load(driver, page.as_uri())
        driver.find_element(By.CSS_SELECTOR, "[data-lang=id]").click()
        text, code, exit_code = check_file(driver, EXAMPLE, OLDER)
        assert (text.split()[0], code, exit_code) == ("TERVERIFIKASI", "", "0")
        steps = [li.get_attribute("data-step") for li in driver.find_elements(By.CSS_SELECTOR, "#steps li")]
        assert steps[:2] == ["bundle.parse", "bundle.hubkey"]
        assert steps.count("log.records") == 3 and steps.count("checkpoint") == 3 and steps[-1] == "against"
        listed = driver.find_element(By.ID, "steps").text
        assert "Log tumbuh secara konsisten dari ukuran 18 ke 23" in listed
        # Checkpoint times read as dates, not as the Unix seconds the hub signs.
        assert re.search(r"waktu \d{4}-\d\d-\d\d \d\d:\d\d UTC, kepala log hub", listed), listed
        # The hub's decisions from its own log, each in its own step.
        assert steps.count("decision.approve") == 3 and steps.count("decision.rotate") == 1
        assert steps.count("decision.revoke") == 1 and steps[-2] == "seal"
        assert "Keputusan hub #5: mencabut kunci perangkat da3acae69a9a7e36fd45f480dae089e6" in listed
        assert "menyetujui perangkat 38e4d4dff6603b0a5f7c6ed4145e5fb9 (lokasi sppg-bandung-01, peran edge" in listed
        driver.find_element(By.CSS_SELECTOR, "[data-lang=en]").click()
        listed = driver.find_element(By.ID, "steps").text
        assert "Hub decision #5: revokes the key of device da3acae69a9a7e36fd45f480dae089e6; its records from seq 6" in listed
        assert "Hub decision #4: accepts the key rotation of device 9f19382780d143201e9c8c7107c9c2f0 at seq 3" in listed
        driver.find_element(By.CSS_SELECTOR, "[data-lang=id]").click()

        text, code, exit_code = check_file(driver, flipped)
        assert text.startswith("GAGAL") and code and exit_code not in ("", "0")
        driver.find_element(By.CSS_SELECTOR, "[data-lang=en]").click()
        verdict = driver.find_element(By.ID, "verdict").text
        assert verdict == f"FAILED: {code} (exit code {exit_code})"
        assert driver.find_element(By.CSS_SELECTOR, "#steps li.fail").text
        assert driver.find_element(By.ID, "meaning").text
        # Offline: the page made no request but for itself.
        requests = driver.execute_script("return performance.getEntriesByType('resource').map((e) => e.name)")
        assert requests == []
    finally:
        close()


async def test_hub_serves_verify_and_export_writes_it(tmp_path: Path, hub, clock) -> None:
    running = await start_hub(HubConfig(data_dir=str(tmp_path / "hub"), http_port=0, coap_port=0, mdns=False,
                                        auditor_tokens=(hash_token("auditor-token"),)), hub=hub)
    signer, builder = new_device(clock)
    enroll(hub, signer, clock)
    records = [builder.genesis()] + [builder.append("note", {"text": f"catatan {i}"}) for i in range(3)]
    hub.ingest(records[0].device_id, [r.raw for r in records])
    assert hub.checkpoint(force=True) is not None
    out = tmp_path / "audit" / "audit.jejak"
    out.parent.mkdir()
    try:
        async with aiohttp.ClientSession(running.http_url) as http:
            async with http.get("/verify") as resp:
                assert resp.status == 200
                assert resp.content_type == "text/html"
                served = await resp.text()
            async with http.get("/") as resp:
                assert 'href="/verify"' in await resp.text(), "the dashboard links to the verifier"
        assert served == standalone_page()
        code = await asyncio.to_thread(cli.main, ["export", "--hub-url", running.http_url, "--out", str(out),
                                                  "--token", "auditor-token", "--with-verifier"])
        assert code == 0
    finally:
        await running.close()
    written = out.with_name(cli.VERIFIER_PAGE)
    assert written.read_text(encoding="utf-8") == served
    driver, close = browser()
    try:
        load(driver, written.as_uri())
        driver.find_element(By.CSS_SELECTOR, "[data-lang=en]").click()
        text, code, exit_code = check_file(driver, out)
        assert (text, code, exit_code) == ("VERIFIED (exit code 0)", "", "0")
    finally:
        close()


def test_page_says_what_was_verified_and_what_to_compare(page: webdriver.Chrome) -> None:
    """The same records, devices, device-time span, checkpoint and hub key as `jejak-verify` prints, and the
    advice to compare the key out of band (or, pinned, that it was)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert verify.main([str(EXAMPLE), "--lang", "en"]) == 0
    cli_what, cli_key = out.getvalue().splitlines()[-2:]
    key = cbor2.loads(EXAMPLE.read_bytes())["hub_key"].hex()
    page.find_element(By.CSS_SELECTOR, "[data-lang=en]").click()
    page.find_element(By.ID, "hubkey").clear()
    assert check_file(page, EXAMPLE)[0] == "VERIFIED (exit code 0)"
    what, compare = page.find_element(By.ID, "what").text, page.find_element(By.ID, "compare").text
    assert what == ("Verified: 17 records of 3 devices, device time 2025-11-23 04:00 UTC to 2025-11-23 07:30 UTC, "
                    "under checkpoint size 23 of 2025-11-23 08:00 UTC.")
    assert cli_what == what
    assert compare.startswith(f"Hub key {key} (hub id 99bcd326b3d06b98cfd4ccdf1903bcac): compare it with the key")
    # The page says to pin it in its hub key field, jejak-verify with --hub-key.
    assert cli_key.startswith(compare.partition(", or pin it")[0] + ", or pin it with --hub-key")
    page.find_element(By.CSS_SELECTOR, "[data-lang=id]").click()
    assert page.find_element(By.ID, "what").text.startswith("Terverifikasi: 17 catatan dari 3 perangkat, waktu perangkat "
                                                            "2025-11-23 04:00 UTC sampai 2025-11-23 07:30 UTC")
    assert "cocokkan dengan kunci yang diumumkan operator hub" in page.find_element(By.ID, "compare").text
    page.find_element(By.ID, "hubkey").send_keys(key)
    check_file(page, EXAMPLE)
    assert page.find_element(By.ID, "compare").text == f"Kunci hub {key} (id hub 99bcd326b3d06b98cfd4ccdf1903bcac): dipatok oleh Anda."
    page.find_element(By.ID, "hubkey").clear()



def test_a_failed_verdict_says_nothing_verified(page: webdriver.Chrome, tmp_path: Path) -> None:
    """Under a FAILED verdict the page, as jejak-verify, has no "Verified: ..." line that reads as a second verdict,
    in either language; the hub key to compare stays."""
    revoked = next(c for c in device_tamperings(EXAMPLE.read_bytes())
                   if c.name == "the gate signs a record past its revocation point (resealed)")
    bad = tmp_path / "revoked.jejak"
    bad.write_bytes(revoked.bundle)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert verify.main([str(bad), "--lang", "en"]) == 19
    assert not any(line.startswith("Verified") for line in out.getvalue().splitlines())
    page.find_element(By.ID, "hubkey").clear()
    for lang in ("en", "id"):
        page.find_element(By.CSS_SELECTOR, f"[data-lang={lang}]").click()
        assert check_file(page, bad)[1] == "REVOKED_KEY"
        assert page.find_element(By.ID, "what").text == ""
        assert page.find_element(By.ID, "compare").text.startswith(("Hub key ", "Kunci hub "))
    # The language switched after the check says it again, without the line too.
    page.find_element(By.CSS_SELECTOR, "[data-lang=en]").click()
    assert page.find_element(By.ID, "what").text == ""
    check_file(page, EXAMPLE)
    assert page.find_element(By.ID, "what").text.startswith("Verified: 17 records of 3 devices")

def test_a_device_clock_ahead_of_the_hub_is_said_by_both(page: webdriver.Chrome, tmp_path: Path) -> None:
    """A device whose clock runs a day ahead: its records verify (a device's time is its own word), and both
    jejak-verify and the page say that the device time runs past the latest checkpoint, which no record can
    truly follow; it read 'device time 2025-11-24 04:00 UTC to 04:03 UTC, under checkpoint of 2025-11-23' alone."""
    clock = {"now": 1_763_870_400}
    writer = BundleWriter(Ed25519Signer.from_seed(bytes(32)), clock=lambda: clock["now"])
    ahead = ChainBuilder(Ed25519Signer.from_seed(b"\x07" * 32), clock=lambda: clock["now"] + 86400, boot=1)
    writer.accept(ahead.genesis())
    for i in range(3):
        clock["now"] += 60
        writer.accept(ahead.append("note", {"text": f"catatan {i}"}), decide=False)
    writer.checkpoint(clock["now"])
    bundle = tmp_path / "ahead.jejak"
    bundle.write_bytes(writer.bundle(created=clock["now"] + 60).encode())
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert verify.main([str(bundle), "--lang", "en"]) == 0
    said = ("Device time runs to 2025-11-24 04:03 UTC, after the latest checkpoint (2025-11-23 04:03 UTC): a device's "
            "clock ran ahead of the hub's; device times are the devices' own word.")
    assert said in out.getvalue().splitlines()
    page.find_element(By.ID, "hubkey").clear()
    page.find_element(By.CSS_SELECTOR, "[data-lang=en]").click()
    assert check_file(page, bundle)[0] == "VERIFIED (exit code 0)"
    assert page.find_element(By.ID, "what").text.endswith(" " + said)
    page.find_element(By.CSS_SELECTOR, "[data-lang=id]").click()
    assert page.find_element(By.ID, "what").text.endswith(
        " Waktu perangkat sampai 2025-11-24 04:03 UTC, setelah checkpoint terakhir (2025-11-23 04:03 UTC): jam sebuah "
        "perangkat lebih cepat dari jam hub; waktu perangkat adalah pernyataan perangkat itu sendiri.")
    check_file(page, EXAMPLE)
    assert "checkpoint terakhir" not in page.find_element(By.ID, "what").text
    # Compared with another hub's bundle: the step that fails says what it checks, not "from size none to none".
    try:
        assert check_file(page, EXAMPLE, bundle)[1] == "INVALID_CHECKPOINT"
        assert page.find_element(By.CSS_SELECTOR, "#steps li.fail").text.startswith(
            "✘ Tidak terpenuhi: Log bundel ini melanjutkan log bundel lama dari hub yang sama.\n"
            "INVALID_CHECKPOINT: kedua bundel")
    finally:  # the next check on this page compares with nothing
        page.execute_script("const o = document.getElementById('older-file'); o.value = '';"
                            "o.dispatchEvent(new Event('change'));")


def test_page_shows_notes_on_checkpoints_under_a_verdict_they_do_not_change(page: webdriver.Chrome,
                                                                              tmp_path: Path) -> None:
    """A checkpoint no proof ties to the largest, and one of size 0 over a false root: the bundle verifies, and
    the page says both notes in either language, as `jejak-verify` does (FORMAT.md §12.3, notes)."""
    def edit(b: dict[str, Any]) -> None:
        b["consistency"] = [c for c in b["consistency"] if c[0] != 12]
        b["checkpoints"].insert(0, checkpoint_of_size_0(b["checkpoints"][0], bytes(32), example_hub()))
    noted = tmp_path / "noted.jejak"
    noted.write_bytes(edited(EXAMPLE.read_bytes(), "noted", edit, resealed=True).bundle)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert verify.main([str(noted), "--lang", "en"]) == 0
    cli = [line for line in out.getvalue().splitlines() if line.startswith("\u26a0 ")]
    page.find_element(By.CSS_SELECTOR, "[data-lang=en]").click()
    page.find_element(By.ID, "hubkey").clear()
    assert check_file(page, noted)[0] == "VERIFIED (exit code 0)"
    items = page.find_elements(By.CSS_SELECTOR, "#notes li")
    assert [li.get_attribute("data-note") for li in items] == ["empty_root", "untied"]
    assert items[1].text == ("⚠ Note: checkpoint of size 12 is not tied to checkpoint of size 23 by a consistency "
                             "proof: the bundle does not show that the larger log extends it. This is not a failure; "
                             "ask the hub for the consistency proof.")
    assert cli == [li.text for li in items]
    page.find_element(By.CSS_SELECTOR, "[data-lang=id]").click()
    assert page.find_elements(By.CSS_SELECTOR, "#notes li")[0].text.startswith(
        "⚠ Catatan: checkpoint berukuran 0 menyebut akar yang bukan akar pohon kosong")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert verify.main([str(noted), "--lang", "id"]) == 0
    assert [line for line in out.getvalue().splitlines() if line.startswith("\u26a0 ")] == [
        li.text for li in page.find_elements(By.CSS_SELECTOR, "#notes li")]
    check_file(page, EXAMPLE)
    assert page.find_elements(By.CSS_SELECTOR, "#notes li") == []


def large_bundle(records: int) -> bytes:
    """A bundle of `records` notes over four devices, made with ledger alone."""
    clock = {"now": 1_763_870_400}
    writer = BundleWriter(Ed25519Signer.from_seed(bytes(32)), clock=lambda: clock["now"])
    builders = [ChainBuilder(Ed25519Signer.from_seed(bytes([i + 1]) * 32), clock=lambda: clock["now"], boot=1)
                for i in range(4)]
    writer.accept(*(b.genesis() for b in builders))
    for i in range(records):
        clock["now"] += 1
        writer.accept(builders[i % 4].append("note", {"text": f"catatan {i}"}), decide=False)
    writer.checkpoint(clock["now"])
    return writer.bundle(created=clock["now"] + 60).encode()


def test_page_answers_while_it_checks_a_large_bundle(tmp_path: Path) -> None:
    """The one-file page checks in a worker: while a bundle of thousands of records is being checked (seconds in
    a browser), the page answers a script at once, says it is checking, and then shows the same verdict."""
    page = tmp_path / "jejak-verify.html"
    page.write_text(standalone_page(), encoding="utf-8")
    bundle = tmp_path / "large.jejak"
    bundle.write_bytes(large_bundle(3000))
    driver, close = browser()
    try:
        load(driver, page.as_uri())
        driver.find_element(By.CSS_SELECTOR, "[data-lang=en]").click()
        driver.find_element(By.ID, "bundle-file").send_keys(str(bundle))
        driver.find_element(By.ID, "run").click()
        busy, disabled, hidden = driver.execute_script(
            "return [document.getElementById('busy').textContent, document.getElementById('run').disabled,"
            " document.getElementById('result').hidden]")
        assert (busy.startswith(f"Checking {bundle.stat().st_size:,} bytes"), disabled, hidden) == (True, True, True)
        wait_for(driver, "return !document.getElementById('result').hidden", timeout=300)
        assert driver.find_element(By.ID, "verdict").text == "VERIFIED (exit code 0)"
        assert driver.find_element(By.ID, "what").text.startswith("Verified: 3004 records of 4 devices")
        assert driver.find_element(By.ID, "busy").text == ""
        assert driver.find_element(By.ID, "run").is_enabled()
    finally:
        close()


def test_page_refuses_a_file_larger_than_any_bundle_unread(tmp_path: Path) -> None:
    """A 3 GiB file (sparse), as the bundle and as the older bundle, is MALFORMED as jejak-verify says, without the
    browser reading it (it cannot hold it)."""
    page = tmp_path / "jejak-verify.html"
    page.write_text(standalone_page(), encoding="utf-8")
    huge = tmp_path / "huge.jejak"
    with huge.open("wb") as fh:
        fh.truncate(3 << 30)
    driver, close = browser()
    try:
        load(driver, page.as_uri())
        driver.find_element(By.CSS_SELECTOR, "[data-lang=en]").click()
        assert check_file(driver, huge) == ("FAILED: MALFORMED (exit code 11)", "MALFORMED", "11")
        assert "bundle larger than 1073741824 bytes" in driver.find_element(By.ID, "meaning").text
        driver.get(page.as_uri())
        load(driver, page.as_uri())
        driver.find_element(By.CSS_SELECTOR, "[data-lang=en]").click()
        assert check_file(driver, EXAMPLE, huge) == ("FAILED: MALFORMED (exit code 11)", "MALFORMED", "11")
    finally:
        close()


def test_page_shows_progress_and_the_verdict_of_a_mid_size_bundle(tmp_path: Path) -> None:
    """A bundle of a few MB: while it is checked the page says how many of its records and receipts are done, in
    increasing steps up to all of them, and then gives the verdict."""
    page = tmp_path / "jejak-verify.html"
    page.write_text(standalone_page(), encoding="utf-8")
    bundle = tmp_path / "mid.jejak"
    bundle.write_bytes(large_bundle(5000))
    held = cbor2.loads(bundle.read_bytes())
    total = len(held["hub_log"]) + sum(len(log["records"]) for log in held["logs"]) + len(held["receipts"])
    driver, close = browser()
    try:
        load(driver, page.as_uri())
        driver.find_element(By.CSS_SELECTOR, "[data-lang=en]").click()
        driver.execute_script(
            "const busy = document.getElementById('busy'); window.said = [];"
            "new MutationObserver(() => said.push(busy.textContent)).observe(busy, {childList: true, subtree: true, characterData: true});")
        driver.find_element(By.ID, "bundle-file").send_keys(str(bundle))
        driver.find_element(By.ID, "run").click()
        wait_for(driver, "return !document.getElementById('result').hidden", timeout=600)
        assert driver.find_element(By.ID, "verdict").text == "VERIFIED (exit code 0)"
        assert driver.find_element(By.ID, "what").text.startswith("Verified: 5004 records of 4 devices")
        said = driver.execute_script("return window.said")
        progress = [re.fullmatch(rf"Checking {bundle.stat().st_size:,} bytes… (\d+) of (\d+) records and receipts "
                                 r"checked \((\d+)%\)\.", text) for text in said]
        steps = [(int(m[1]), int(m[2]), int(m[3])) for m in progress if m]
        assert len(steps) >= 2, said
        assert all(t == total for _, t, _ in steps), (steps, total)
        assert [d for d, _, _ in steps] == sorted({d for d, _, _ in steps}), steps
        assert steps[-1] == (total, total, 100), steps
        assert said[-1] == "" and driver.find_element(By.ID, "error").text == ""
        # With --against, the older bundle's check is shown as its own.
        driver.execute_script("window.said.length = 0")
        assert check_file(driver, EXAMPLE, OLDER)[0] == "VERIFIED (exit code 0)"
        older = cbor2.loads(OLDER.read_bytes())
        n = len(older["hub_log"]) + sum(len(log["records"]) for log in older["logs"]) + len(older["receipts"])
        assert f"Checking the older bundle… {n} of {n} records and receipts checked (100%)." in driver.execute_script(
            "return window.said"), driver.execute_script("return window.said")
    finally:
        close()


# Scripts the one-file page builds its worker from (the <script data-src> elements); one more, added after the
# page loaded, runs only in the worker and replaces the checks there with a failure the browser could give.
HOOKS = {
    # What a browser throws when it cannot allocate a bundle's buffers.
    "BROWSER_OUT_OF_MEMORY": ("Jejak.verifyBundle = () => { throw new RangeError('Array buffer allocation failed'); };",
                              "(RangeError: Array buffer allocation failed)"),
    # A worker whose script fails: the browser's error event.
    "BROWSER_FAILED": ("throw new Error('worker script failed');", "worker script failed"),
    # A worker that stops reporting (as one stopped by the browser does): the page's watchdog.
    "BROWSER_STALLED": ("Jejak.verifyBundle = () => { for (;;) {} };", "no progress for 3 seconds"),
}


def test_page_says_when_the_browser_stops_the_check(tmp_path: Path) -> None:
    """A worker that fails, errors or stops reporting ends in no verdict, with a stable code and a message in the
    auditor's language that says what happened and to use jejak-verify; the page is ready for the next file."""
    page = tmp_path / "jejak-verify.html"
    page.write_text(standalone_page(), encoding="utf-8")
    driver, close = browser()
    try:
        for code, (hook, why) in HOOKS.items():
            load(driver, page.as_uri())
            driver.find_element(By.CSS_SELECTOR, "[data-lang=en]").click()
            driver.execute_script(
                "const s = document.createElement('script'); s.type = 'text/plain'; s.dataset.src = 'verify/hook.js';"
                "s.textContent = arguments[0]; document.body.appendChild(s); Jejak.ui.stallMs = 3000;", hook)
            driver.find_element(By.ID, "bundle-file").send_keys(str(EXAMPLE))
            driver.find_element(By.ID, "run").click()
            wait_for(driver, "return document.getElementById('error').dataset.code", timeout=120)
            error = driver.find_element(By.ID, "error")
            assert error.get_attribute("data-code") == code
            assert error.text.startswith(f"NO VERDICT ({code}): "), error.text
            assert error.text.endswith("Check it with jejak-verify.") or "Check it with jejak-verify, or" in error.text
            assert "neither verified nor failed" in error.text and why in error.text, error.text
            assert driver.find_element(By.ID, "result").is_displayed() is False
            assert driver.find_element(By.ID, "busy").text == ""
            assert driver.find_element(By.ID, "run").is_enabled()
            assert driver.execute_script("return Jejak.ui.worker") is None, "the worker is ended"
            driver.find_element(By.CSS_SELECTOR, "[data-lang=id]").click()
            assert error.text.startswith(f"TANPA HASIL ({code}): ") and "Periksa dengan jejak-verify" in error.text
    finally:
        close()


def test_a_file_that_is_no_bundle_or_is_cut_short_is_said_as_jejak_verify_says_it(page: webdriver.Chrome,
                                                                                   tmp_path: Path) -> None:
    """An auditor given an empty file, a download cut short, some other file, or a bundle with bytes after it: the
    page's reason is jejak-verify's, word for word, where it said the decoder's "truncated CBOR (length 288)",
    "tag 7 is not allowed" (a random file's first byte) or "reserved additional information 28" (an HTML page),
    and the browser logs no error."""
    example = EXAMPLE.read_bytes()
    cases = {"empty": b"", "cut": example[: len(example) // 2], "cut-last-byte": example[:-1],
             "text": b"hello auditor\n", "html": b"<!doctype html><title>x</title>\n", "random": bytes([0xC7]) + b"\x01" * 64,
             "trailing": example + b"\x00"}
    page.find_element(By.CSS_SELECTOR, "[data-lang=en]").click()
    page.get_log("browser")
    for name, data in cases.items():
        bundle = tmp_path / f"{name}.jejak"
        bundle.write_bytes(data)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert verify.main(["--json", str(bundle)]) == 11
        [problem] = json.loads(out.getvalue())["problems"]
        assert check_file(page, bundle) == ("FAILED: MALFORMED (exit code 11)", "MALFORMED", "11"), name
        meaning = page.find_element(By.ID, "meaning").text
        said = problem["message"].removeprefix("bundle: ")
        if name == "trailing":  # jejak-verify names the rule (deterministic CBOR) the bytes break
            assert said.endswith("bytes after the bundle's map") and meaning.endswith(
                "[bundle] bytes after the bundle's map (1), where a bundle ends"), meaning
        else:
            assert meaning.endswith(f"[bundle] {said}"), (name, meaning, said)
    assert [e for e in page.get_log("browser") if e["level"] == "SEVERE"] == []
