"""Seed 1's POST /api/log_scan on the edge: its own curl example and a JSON client from its README work
unchanged, bad input gets seed 1's 400 {"error"} and stores nothing, and the check-in page in Chromium."""

from __future__ import annotations

import asyncio
import json
import subprocess
import urllib.error
import urllib.request

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from ledger import verify_chain
from ledger.legacy import LEGACY_STATUS

from ..dashboard.harness import browser
from .conftest import own_records


def url(daemon, path: str = "/api/log_scan") -> str:
    return f"http://127.0.0.1:{daemon.http_port}{path}"


async def test_seed1_curl_example_is_recorded_as_a_signed_scan(edge):
    before = len(own_records(edge))
    # Seed 1 README's curl line, byte for byte apart from the address.
    proc = await asyncio.to_thread(subprocess.run, [
        "curl", "-s", "-w", "\n%{http_code}", "-X", "POST", url(edge), "-H", "Content-Type: application/json",
        "-d", '{"nfc_tag_id": "NFC_TAG_ALPHA", "status_scan": "makanan_keluar"}'],
        capture_output=True, text=True, timeout=20)
    body, _, code = proc.stdout.rpartition("\n")
    assert code == "201", proc.stdout
    answer = json.loads(body)
    assert answer["message"] == "Scan berhasil dicatat di gateway lokal"
    records = own_records(edge)
    assert len(records) == before + 1
    rec = records[-1]
    assert rec.id.hex() == answer["id"] and rec.seq == answer["seq"]
    assert rec.kind == "scan"
    assert rec.body["event"] == "departed" and rec.body["tags"] == ["NFC_TAG_ALPHA"]
    assert rec.body["source"] == "legacy-http" and rec.body["site"] == "sppg-test"
    # A record of the edge, signed with the edge's key: the whole own log verifies from genesis.
    state = verify_chain([r.raw for r in records])
    assert state.device_id == edge.key.device_id and state.length == len(records)


def seed1_client(endpoint: str, tag: str, status: str) -> tuple[int, dict]:
    """A client written from seed 1's README: JSON {nfc_tag_id, status_scan}, 201 on success."""
    req = urllib.request.Request(endpoint, data=json.dumps({"nfc_tag_id": tag, "status_scan": status}).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.mark.parametrize("status", sorted(LEGACY_STATUS))
async def test_every_seed1_status_maps_to_its_scan_event(edge, status):
    code, answer = await asyncio.to_thread(seed1_client, url(edge), "OMPRENG-0007", status)
    assert code == 201, answer
    rec = own_records(edge)[-1]
    assert rec.body["event"] == LEGACY_STATUS[status] == answer["event"]
    assert rec.body["tags"] == ["OMPRENG-0007"]


def raw_post(endpoint: str, data: bytes, content_type: str = "application/json") -> tuple[int, dict]:
    req = urllib.request.Request(endpoint, data=data, headers={"Content-Type": content_type}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


BAD_INPUTS = [
    (b'{"nfc_tag_id": "NFC_TAG_ALPHA"}', "application/json", "Data tidak lengkap"),
    (b'{"status_scan": "makanan_keluar"}', "application/json", "Data tidak lengkap"),
    (b'{"nfc_tag_id": "NFC_TAG_ALPHA", "status_scan": "makanan_hilang_entah"}', "application/json", "unknown"),
    (b'{"nfc_tag_id": 12345, "status_scan": "makanan_keluar"}', "application/json", "must be text"),
    (b'{"nfc_tag_id": "bad tag with spaces", "status_scan": "makanan_keluar"}', "application/json", "expected"),
    (b'{"nfc_tag_id": "A", "status_scan": "makanan_keluar", "admin": true}', "application/json", "unexpected"),
    (b'{"nfc_tag_id": "A", "status_scan": ', "application/json", "JSON"),
    (b'["NFC_TAG_ALPHA", "makanan_keluar"]', "application/json", "Data tidak lengkap"),
    (b'nfc_tag_id=A&status_scan=makanan_keluar', "application/x-www-form-urlencoded", "application/json"),
]


@pytest.mark.parametrize(("data", "ctype", "says"), BAD_INPUTS)
async def test_bad_input_gets_seed1_400_and_stores_nothing(edge, data, ctype, says):
    before = len(own_records(edge))
    code, answer = await asyncio.to_thread(raw_post, url(edge), data, ctype)
    assert code == 400
    assert set(answer) == {"error"} and says in answer["error"]
    assert len(own_records(edge)) == before


async def test_checkin_page_in_headless_chromium_records_a_signed_scan(edge):
    before = len(own_records(edge))

    def use_page() -> str:
        driver, close = browser(420, 800)
        try:
            driver.get(url(edge, "/checkin"))
            assert "sppg-test" in driver.find_element(By.ID, "site").text
            driver.find_element(By.ID, "tag").send_keys("OMPRENG-PHONE-1")
            Select(driver.find_element(By.ID, "status")).select_by_value("makanan_diterima")
            driver.find_element(By.ID, "send").click()
            WebDriverWait(driver, 15).until(lambda d: "ok" in d.find_element(By.ID, "feedback").get_attribute("class"))
            return driver.find_element(By.ID, "feedback").text
        finally:
            close()

    feedback = await asyncio.to_thread(use_page)
    assert "OMPRENG-PHONE-1" in feedback and "received" in feedback
    records = own_records(edge)
    assert len(records) == before + 1
    rec = records[-1]
    assert rec.kind == "scan" and rec.body["tags"] == ["OMPRENG-PHONE-1"]
    assert rec.body["event"] == "received" and rec.body["source"] == "checkin-page"
    assert rec.body["checkpoint"] == "phone"
    assert f"#{rec.seq}" in feedback
    verify_chain([r.raw for r in records])


async def test_checkin_page_keeps_scans_while_the_edge_is_unreachable(edge):
    """Offline: a scan entered while the edge is down waits on the phone and is sent when it is back."""
    before = len(own_records(edge))

    def use_page() -> tuple[str, str]:
        driver, close = browser(420, 800)
        try:
            driver.get(url(edge, "/checkin"))
            driver.set_network_conditions(offline=True, latency=0, download_throughput=0, upload_throughput=0)
            driver.find_element(By.ID, "tag").send_keys("OMPRENG-OFFLINE-1")
            driver.find_element(By.ID, "send").click()
            WebDriverWait(driver, 15).until(
                lambda d: "wait" in d.find_element(By.ID, "feedback").get_attribute("class"))
            waiting = driver.find_element(By.ID, "queue").text
            driver.set_network_conditions(offline=False, latency=0, download_throughput=-1, upload_throughput=-1)
            driver.execute_script("window.dispatchEvent(new Event('online'))")
            WebDriverWait(driver, 15).until(lambda d: d.find_element(By.ID, "queue").text == "")
            return waiting, driver.execute_script("return localStorage.getItem('jejak-checkin-queue')")
        finally:
            close()

    waiting, left = await asyncio.to_thread(use_page)
    assert waiting.startswith("1 ")
    assert json.loads(left) == []
    records = own_records(edge)
    assert len(records) == before + 1
    assert records[-1].body["tags"] == ["OMPRENG-OFFLINE-1"] and records[-1].body["event"] == "departed"
