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

from edge.config import CheckpointConfig, HttpConfig, SecurityConfig
from edge.pairing import load_or_create_secret
from ledger import verify_chain
from ledger.legacy import LEGACY_STATUS

from ..dashboard.harness import browser
from ..edge.common import edge_config, running
from .conftest import own_records


def url(daemon, path: str = "/api/log_scan") -> str:
    return f"http://127.0.0.1:{daemon.http_port}{path}"


def secret(daemon) -> str:
    """The edge's pairing secret, as `jejak edge pair` shows it and a paired phone sends it."""
    return load_or_create_secret(daemon.config.data_path)


async def test_seed1_curl_example_is_recorded_as_a_signed_scan(edge):
    before = len(own_records(edge))
    # Seed 1 README's curl line, byte for byte apart from the address.
    proc = await asyncio.to_thread(subprocess.run, [
        "curl", "-s", "-w", "\n%{http_code}", "-X", "POST", url(edge), "-H", "Content-Type: application/json",
        "-H", f"Authorization: Bearer {secret(edge)}", "-d", '{"nfc_tag_id": "NFC_TAG_ALPHA", "status_scan": "makanan_keluar"}'],
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


def seed1_client(endpoint: str, tag: str, status: str, pairing: str) -> tuple[int, dict]:
    """A client written from seed 1's README: JSON {nfc_tag_id, status_scan}, 201 on success; paired once
    with the edge (its secret in the Authorization header)."""
    req = urllib.request.Request(endpoint, data=json.dumps({"nfc_tag_id": tag, "status_scan": status}).encode(),
                                 headers={"Content-Type": "application/json",
                                          "Authorization": f"Bearer {pairing}"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.mark.parametrize("status", sorted(LEGACY_STATUS))
async def test_every_seed1_status_maps_to_its_scan_event(edge, status):
    code, answer = await asyncio.to_thread(seed1_client, url(edge), "OMPRENG-0007", status,
                                           secret(edge))
    assert code == 201, answer
    rec = own_records(edge)[-1]
    assert rec.body["event"] == LEGACY_STATUS[status] == answer["event"]
    assert rec.body["tags"] == ["OMPRENG-0007"]


def raw_post(endpoint: str, data: bytes, content_type: str = "application/json",
             pairing: str = "") -> tuple[int, dict]:
    headers = {"Content-Type": content_type, **({"Authorization": f"Bearer {pairing}"} if pairing else {})}
    req = urllib.request.Request(endpoint, data=data, headers=headers, method="POST")
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
    (b'[' * 2000 + b']' * 2000, "application/json", "nested deeper"),
    (b'["NFC_TAG_ALPHA", "makanan_keluar"]', "application/json", "Data tidak lengkap"),
    (b'nfc_tag_id=A&status_scan=makanan_keluar', "application/x-www-form-urlencoded", "application/json"),
]


@pytest.mark.parametrize(("data", "ctype", "says"), BAD_INPUTS)
async def test_bad_input_gets_seed1_400_and_stores_nothing(edge, data, ctype, says):
    before = len(own_records(edge))
    code, answer = await asyncio.to_thread(raw_post, url(edge), data, ctype, secret(edge))
    assert code == 400
    assert set(answer) == {"error", "code"} and says in answer["error"]
    assert answer["code"] in ("LEGACY_INPUT", "BAD_REQUEST"), answer
    assert len(own_records(edge)) == before


async def test_checkin_page_in_headless_chromium_records_a_signed_scan(edge):
    before = len(own_records(edge))

    def use_page() -> str:
        driver, close = browser(420, 800)
        try:
            driver.get(url(edge, "/checkin") + f"#pair={secret(edge)}")  # what the pairing QR code opens
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
            driver.get(url(edge, "/checkin") + f"#pair={secret(edge)}")
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


async def test_unpaired_requests_get_401_and_store_nothing(edge):
    before = len(own_records(edge))
    body = b'{"nfc_tag_id": "NFC_TAG_ALPHA", "status_scan": "makanan_keluar"}'
    for pairing in ("", "wrong-secret-0123456789"):
        code, answer = await asyncio.to_thread(raw_post, url(edge), body, "application/json", pairing)
        assert code == 401 and answer["code"] == "PAIRING_REQUIRED", answer
    for path in ("/status", "/metrics"):
        try:
            await asyncio.to_thread(urllib.request.urlopen, url(edge, path), timeout=5)
            raise AssertionError(f"{path} answered without the pairing secret")
        except urllib.error.HTTPError as exc:
            assert exc.code == 401
    # The secret under the scheme's name in another case (RFC 9110) is the secret all the same.
    req = urllib.request.Request(url(edge, "/metrics"), headers={"Authorization": f"bearer {secret(edge)}"})
    with await asyncio.to_thread(urllib.request.urlopen, req, timeout=5) as resp:
        assert resp.status == 200
    # The page itself is open: it is how a phone gets to enter the secret; it holds no data.
    with await asyncio.to_thread(urllib.request.urlopen, url(edge, "/checkin"), timeout=5) as resp:
        assert resp.status == 200
    assert len(own_records(edge)) == before


async def test_guessing_the_pairing_secret_is_slowed_down(edge):
    body = b'{"nfc_tag_id": "NFC_TAG_ALPHA", "status_scan": "makanan_keluar"}'
    codes = [(await asyncio.to_thread(raw_post, url(edge), body, "application/json", f"guess-{n:020d}"))[0]
             for n in range(12)]
    assert codes[:10] == [401] * 10 and codes[10:] == [429, 429]
    # Even the right secret waits now, from that address: the limit is per client, not per guess.
    code, answer = await asyncio.to_thread(raw_post, url(edge), body, "application/json", secret(edge))
    assert code == 429 and answer["code"] == "RATE_LIMITED"


async def test_unpaired_checkin_page_keeps_the_scan_and_asks_for_the_code(edge):
    before = len(own_records(edge))

    def use_page() -> tuple[bool, str]:
        driver, close = browser(420, 800)
        try:
            driver.get(url(edge, "/checkin"))
            assert driver.find_element(By.ID, "pairing").is_displayed()
            driver.find_element(By.ID, "tag").send_keys("OMPRENG-UNPAIRED")
            driver.find_element(By.ID, "send").click()
            WebDriverWait(driver, 15).until(
                lambda d: "wait" in d.find_element(By.ID, "feedback").get_attribute("class"))
            queued = driver.execute_script("return localStorage.getItem('jejak-checkin-queue')")
            driver.find_element(By.ID, "pair").send_keys(secret(edge))  # typed once, from `jejak edge pair`
            driver.find_element(By.ID, "pairsave").click()
            WebDriverWait(driver, 15).until(lambda d: d.find_element(By.ID, "queue").text == "")
            return "OMPRENG-UNPAIRED" in queued, driver.execute_script("return localStorage.getItem('jejak-checkin-pair')")
        finally:
            close()

    queued, kept = await asyncio.to_thread(use_page)
    assert queued and kept == secret(edge)
    records = own_records(edge)
    assert len(records) == before + 1 and records[-1].body["tags"] == ["OMPRENG-UNPAIRED"]


async def test_a_body_split_across_packets_is_read_whole(edge):
    """A client whose body reaches the edge in pieces (a phone on weak Wi-Fi) is answered from the whole body,
    not from the piece that came first."""
    before = len(own_records(edge))
    body = b'{"nfc_tag_id": "NFC_TAG_SPLIT", "status_scan": "makanan_keluar"}'
    reader, writer = await asyncio.open_connection("127.0.0.1", edge.http_port)
    try:
        writer.write(b"POST /api/log_scan HTTP/1.1\r\nHost: edge\r\nContent-Type: application/json\r\n"
                     + f"Authorization: Bearer {secret(edge)}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                     + body[:1])
        await writer.drain()
        await asyncio.sleep(0.3)  # the first byte travels alone, as a packet of its own would
        writer.write(body[1:])
        await writer.drain()
        status = await asyncio.wait_for(reader.readline(), 30)
    finally:
        writer.close()
    assert status.split()[1] == b"201", status
    assert own_records(edge)[-1].body["tags"] == ["NFC_TAG_SPLIT"] and len(own_records(edge)) == before + 1


@pytest.fixture
async def staffed_edge(tmp_path):
    """An edge whose checkpoint takes scans only from the staff cards on its allow-list, as deploy/edge.toml's."""
    config = edge_config(tmp_path / "edge", http=HttpConfig(enabled=True, host="127.0.0.1", port=0),
                         checkpoint=CheckpointConfig(role="kitchen_exit", staff=("a1b2c3d4",)),
                         security=SecurityConfig(oscore=True))
    async with running(config) as (daemon, _client):
        yield daemon


async def test_a_staffed_checkpoint_takes_a_scan_that_names_its_staff_card(staffed_edge):
    before = len(own_records(staffed_edge))
    scan = {"nfc_tag_id": "OMPRENG-0009", "status_scan": "makanan_keluar"}
    code, answer = await asyncio.to_thread(raw_post, url(staffed_edge), json.dumps(scan).encode(),
                                           pairing=secret(staffed_edge))
    assert code == 403 and answer["code"] == "STAFF_NOT_ALLOWED", answer  # seed 1's two keys alone name no one
    for staff, status in (("FFFF0000", 403), ("A1B2C3D4", 201)):  # the card's uid in either case
        code, answer = await asyncio.to_thread(raw_post, url(staffed_edge),
                                               json.dumps({**scan, "staff": staff}).encode(),
                                               pairing=secret(staffed_edge))
        assert code == status, answer
    records = own_records(staffed_edge)
    assert len(records) == before + 1 and records[-1].body["staff"] == "a1b2c3d4"
    code, answer = await asyncio.to_thread(raw_post, url(staffed_edge),
                                           json.dumps({**scan, "staff": "not a uid"}).encode(),
                                           pairing=secret(staffed_edge))
    assert code == 400 and answer["code"] == "LEGACY_INPUT" and '"staff"' in answer["error"]


async def test_the_checkin_page_sends_the_staff_card_it_keeps(staffed_edge):
    before = len(own_records(staffed_edge))

    def use_page() -> tuple[str, str]:
        driver, close = browser(420, 800)
        try:
            driver.get(url(staffed_edge, "/checkin") + f"#pair={secret(staffed_edge)}")
            wait = WebDriverWait(driver, 15)
            driver.find_element(By.ID, "tag").send_keys("OMPRENG-PHONE-2")
            driver.find_element(By.ID, "send").click()
            wait.until(lambda d: "err" in d.find_element(By.ID, "feedback").get_attribute("class"))
            refused = driver.find_element(By.ID, "feedback").text
            driver.find_element(By.ID, "staff").send_keys("a1b2c3d4")
            driver.find_element(By.ID, "tag").send_keys("OMPRENG-PHONE-2")
            driver.find_element(By.ID, "send").click()
            wait.until(lambda d: "ok" in d.find_element(By.ID, "feedback").get_attribute("class"))
            driver.refresh()  # the phone keeps the card for the next scans
            wait.until(lambda d: d.find_element(By.ID, "staff").get_attribute("value") == "a1b2c3d4")
            return refused, driver.find_element(By.ID, "staff").get_attribute("value")
        finally:
            close()

    refused, kept = await asyncio.to_thread(use_page)
    assert "staff card" in refused and kept == "a1b2c3d4"
    records = own_records(staffed_edge)
    assert len(records) == before + 1
    assert records[-1].body["staff"] == "a1b2c3d4" and records[-1].body["source"] == "checkin-page"
