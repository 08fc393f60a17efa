"""The verifier page as an auditor uses it: served at /verify, written by `jejak export --with-verifier`, a file
dropped on it, the verdict and steps in Indonesian and English."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import aiohttp
from selenium import webdriver
from selenium.webdriver.common.by import By

from hub.app import start_hub
from hub.auth import hash_token
from hub.config import HubConfig
from hub.webverify import standalone_page
from tests.dashboard.harness import browser
from tests.hub.conftest import enroll, new_device
from tools import cli

from .conftest import load, wait_for
from .tamper import EXAMPLE, OLDER


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
