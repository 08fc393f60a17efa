"""Hostile requests to the HTTP routes of a running `jejak hub run` that its OpenAPI-driven fuzzing does not
make: bodies nested without end or past a route's size, a CSV that is not one, and what caches may keep of an
answer to a token. Each is refused with a JSON {error: {code}} (never a 500 or a traceback in the log), and
the hub goes on answering."""

from __future__ import annotations

import socket
import time
from typing import Any
from urllib.parse import urlsplit

import requests

from coap_server.httpd import HEAD_S
from hub.http import EXPORTS_KEPT

from .test_fuzz_routes import AUDITOR, OPERATOR, _get, hub_process

__all__ = ["hub_process"]  # a fixture, used by name


def _post(url: str, body: bytes, token: str = OPERATOR) -> tuple[int, str]:
    answer = requests.post(url, data=body, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    return answer.status_code, answer.json()["error"]["code"]


def test_operator_decisions_nested_too_deep_or_too_large_are_refused(hub_process, tmp_path):
    url, _, proc = hub_process
    decide = f"{url}/api/markets/quarantine/x/decide"
    assert _post(decide, b"[" * 10_000) == (400, "BAD_REQUEST")  # was a RecursionError: 500 INTERNAL
    assert _post(decide, b'{"action": "release", "by": "a", "why": "' + b"w" * 40_000 + b'"}') == (413, "TOO_LARGE")
    assert _post(decide, b"\xff\xfe") == (400, "BAD_REQUEST")
    assert _post(decide, b'{"action": "release", "by": "Ani", "why": "checked"}') == (404, "NOT_FOUND")
    assert proc.poll() is None and _get(f"{url}/api/status")["hub"]
    assert "Traceback" not in (tmp_path / "hub.log").read_text()


def test_an_import_that_is_not_a_utf8_csv_is_refused_with_its_line(hub_process, tmp_path):
    url, _, proc = hub_process
    imports = f"{url}/api/markets/import?market=pasar-x"
    long_cell = b"tanggal,komoditas,harga\n2026-11-01,beras,12000\n2026-11-02,\"" + b"x" * 200_000 + b"\",1\n"
    assert _post(imports, long_cell) == (422, "BAD_INPUT_FILE")  # csv's field limit: was 500 INTERNAL
    assert _post(imports, b"tanggal,komoditas,harga\n2026-11-01,beras,12000\n\xff\xfe\xfa,1,2\n") == \
        (422, "BAD_INPUT_FILE")
    answer = requests.post(imports, data=long_cell, headers={"Authorization": f"Bearer {OPERATOR}"}, timeout=30)
    assert "line 2" in answer.json()["error"]["message"]
    assert str(tmp_path) not in answer.text  # the spooled upload's path on the hub is not shown
    assert proc.poll() is None and "Traceback" not in (tmp_path / "hub.log").read_text()


def test_an_answer_to_a_token_is_kept_by_no_cache_and_public_ones_vary_by_token(hub_process):
    url, _, _ = hub_process
    device = _get(f"{url}/api/heads")["heads"][0]["device"]
    for path in (f"/api/devices/{device}/records", "/api/export", "/api/forks", "/api/status"):
        answer = requests.get(f"{url}{path}", headers={"Authorization": f"Bearer {AUDITOR}"}, timeout=30)
        assert answer.status_code == 200, path
        assert answer.headers["Cache-Control"] == "no-store", path
        assert "Authorization" in answer.headers["Vary"], path
    refused = requests.get(f"{url}/api/markets/webhooks", headers={"Authorization": "Bearer stolen"}, timeout=30)
    assert refused.status_code == 401 and refused.headers["Cache-Control"] == "no-store"
    for path in ("/api/forks", "/api/status", "/"):
        answer = requests.get(f"{url}{path}", timeout=30)
        assert "Cache-Control" not in answer.headers and "Authorization" in answer.headers["Vary"], path


def test_a_request_line_or_header_over_the_limit_is_refused_in_json_without_a_traceback(hub_process, tmp_path):
    url, _, proc = hub_process
    for headers, path in (({"X-Padding": "a" * 20_000}, "/api/status"), ({}, "/api/" + "b" * 20_000)):
        answer = requests.get(f"{url}{path}", headers=headers, timeout=30)
        assert answer.status_code == 400 and answer.json()["error"]["code"] == "BAD_REQUEST"
    with socket.create_connection(_address(url), timeout=10) as sock:
        sock.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not HTTP at all\r\n\r\n")  # TLS to a plain port
        assert b'"BAD_REQUEST"' in sock.recv(65536)
    assert proc.poll() is None and _get(f"{url}/api/status")["hub"]
    assert "Traceback" not in (tmp_path / "hub.log").read_text()


def _address(url: str) -> tuple[str, int]:
    host, port = urlsplit(url).netloc.rsplit(":", 1)
    return host, int(port)


def test_a_connection_that_never_finishes_its_first_request_head_is_closed(hub_process):
    """Slowloris: connections that send a request line and then a header line now and then. Each is closed
    once its head is HEAD_S late, while other clients are answered all along."""
    url, _, proc = hub_process
    held = []
    for _ in range(200):
        sock = socket.create_connection(_address(url), timeout=10)
        sock.sendall(b"GET /api/status HTTP/1.1\r\nHost: hub\r\n")
        sock.settimeout(0.01)
        held.append(sock)
    started = time.monotonic()
    try:
        while held:
            assert time.monotonic() - started < 3 * HEAD_S, f"{len(held)} connections still open"
            for sock in list(held):
                try:
                    sock.sendall(b"X-Trickle: 1\r\n")
                    closed = sock.recv(1) == b""
                except TimeoutError:
                    closed = False
                except OSError:
                    closed = True
                if closed:
                    held.remove(sock)
                    sock.close()
            assert _get(f"{url}/api/status")["hub"]  # another client, answered while they are held
        assert time.monotonic() - started >= HEAD_S * 0.9  # closed by the deadline, not at once
    finally:
        for sock in held:
            sock.close()
    assert proc.poll() is None


def test_a_malformed_query_value_is_a_bad_request_not_a_missing_thing(hub_process):
    url, _, _ = hub_process
    for path in ("/api/markets/quarantine?state=zz", "/api/markets/history/beras?since_day=zz",
                 "/api/markets/history/beras?until_day=1e3"):
        answer = requests.get(f"{url}{path}", timeout=30)
        assert (answer.status_code, answer.json()["error"]["code"]) == (400, "BAD_REQUEST"), path  # was 404


def _first_event(url: str, query: str = "", then: Any = None) -> tuple[str, str]:
    """(id, event name) of the first event the live stream sends, after `then()` is called on it opening."""
    with requests.get(f"{url}/api/events{query}", stream=True, timeout=30) as stream:
        lines = stream.iter_lines(decode_unicode=True)
        assert next(lines).startswith("retry:")
        if then is not None:
            then()
        event_id = ""
        for line in lines:
            if line.startswith("id: "):
                event_id = line[4:]
            elif line.startswith("event: "):
                return event_id, line[7:]
    raise AssertionError("the stream ended without an event")


def test_a_live_stream_asked_to_resume_from_an_id_that_is_no_count_says_resync(hub_process):
    url, _, proc = hub_process
    sign = lambda: requests.post(f"{url}/api/checkpoints", headers={"Authorization": f"Bearer {OPERATOR}"},  # noqa: E731
                                 timeout=30).raise_for_status()
    event_id, name = _first_event(url, then=sign)
    boot = event_id.split("-")[0]
    assert name == "checkpoint" and boot
    for bad in ("%C2%B2", "9" * 5000, "-1"):  # "²" is a digit to str.isdigit(); int() refuses it and 5,000 digits
        assert _first_event(url, f"?last_id={boot}-{bad}")[1] == "resync", bad  # the stream ended at once
    assert proc.poll() is None


def test_a_readers_exports_keep_a_bounded_number_of_bundles_on_the_hubs_disk(hub_process, tmp_path):
    url, _, _ = hub_process
    reader = {"Authorization": f"Bearer {AUDITOR}"}
    names = []
    for n in range(EXPORTS_KEPT + 4):  # another description is another bundle, as large as the logs it holds
        answer = requests.get(f"{url}/api/export", params={"description": f"copy {n}"}, headers=reader, timeout=60)
        assert answer.status_code == 200
        names.append(answer.headers["X-Jejak-Export"])
    assert len(set(names)) == len(names)
    assert len(list((tmp_path / "hub" / "exports").glob("*.jejak"))) == EXPORTS_KEPT  # was one per export
    resumed = requests.get(f"{url}/api/export/files/{names[-1]}", headers={**reader, "Range": "bytes=0-9"},
                           timeout=60)
    assert resumed.status_code == 206 and len(resumed.content) == 10


def test_a_number_past_a_floats_range_is_refused_as_bad_input_not_a_500(hub_process, tmp_path):
    """JSON holds integers of any size: 10**400 is a Python int that float() and math.isfinite() refuse with
    OverflowError, which seed 2's price check answered 500 INTERNAL to anyone, and /ingest to a device."""
    url, _, proc = hub_process
    huge = "1" + "0" * 400
    check = requests.post(f"{url}/api/validation/price/check", timeout=30,
                          data=f'{{"commodity": "beras", "market_id": "pasar-senen", "price": {huge}}}')
    assert check.status_code == 400, check.text  # was 500 INTERNAL
    assert "expected 1 to 1000000000" in check.json()["detail"] and huge not in check.text
    requests.post(f"{url}/api/auth/device/register", timeout=30,
                  json={"market_id": "pasar-senen", "device_id": "big-numbers", "role": "sensor"})
    token = requests.post(f"{url}/api/auth/token", json={"device_id": "big-numbers"}, timeout=30,
                          headers={"Authorization": f"Bearer {OPERATOR}"}).json()["token"]
    approve = requests.post(f"{url}/api/bridges/devices/big-numbers/approve", timeout=30,
                            headers={"Authorization": f"Bearer {OPERATOR}"})
    assert approve.status_code == 200
    device = {"Authorization": f"Bearer {token}"}
    for body in (f'{{"market_id": "pasar-senen", "prices": {{"beras": 12000}}, "crowd": {huge}}}',
                 f'{{"market_id": "pasar-senen", "prices": {{"beras": 12000}}, "temperature": -{huge}}}',
                 f'{{"market_id": "pasar-senen", "prices": {{"beras": {huge}}}}}'):
        ingest = requests.post(f"{url}/ingest", data=body, headers=device, timeout=30)
        assert ingest.status_code == 400 and "expected" in ingest.json()["detail"], ingest.text  # was 500
    assert proc.poll() is None and "Traceback" not in (tmp_path / "hub.log").read_text()


def test_a_post_a_browser_sends_from_another_sites_page_is_refused_before_anything_is_done(hub_process):
    """The hub answers no CORS preflight, so a page of another site can still send "simple" POSTs (text/plain, no
    header of its own) that it never reads the answer of: any page a kitchen's browser opened registered seed 2
    devices, or enrolled keys, from the kitchen's address, filling its network's pending places."""
    url, _, proc = hub_process
    register = f"{url}/api/auth/device/register"
    body = b'{"market_id": "pasar-senen", "device_id": "from-a-page", "role": "sensor"}'
    plain = {"Content-Type": "text/plain"}
    for origin in ("http://evil.example", "null", f"http://127.0.0.2:{url.rsplit(':', 1)[1]}"):
        answer = requests.post(register, data=body, headers={**plain, "Origin": origin}, timeout=30)
        assert (answer.status_code, answer.json()["code"]) == (403, "CROSS_ORIGIN"), answer.text  # was 200
    for path, headers in (("/api/enroll/grant", {}), ("/api/devices/" + "00" * 16 + "/approve",
                                                       {"Authorization": f"Bearer {OPERATOR}"})):
        answer = requests.post(f"{url}{path}", data=b"x", headers={**headers, "Origin": "http://evil.example"},
                               timeout=30)
        assert (answer.status_code, answer.json()["error"]["code"]) == (403, "CROSS_ORIGIN"), path
    # reading is not changing: a page may GET (it cannot read the answer), and the hub's own pages may POST
    assert requests.get(f"{url}/api/status", headers={"Origin": "http://evil.example"}, timeout=30).ok
    same = requests.post(register, data=body, headers={**plain, "Origin": url}, timeout=30)
    assert same.status_code == 200 and same.json()["device_id"] == "from-a-page"  # nothing stored before
    assert proc.poll() is None


def test_a_seed2_device_approved_again_after_its_revocation_does_not_take_its_old_token_back(hub_process):
    """A revoked seed 2 device approved again has no token: the token it was revoked for (one that leaked)
    worked again. An operator gives it a new one."""
    url, _, _ = hub_process
    operator = {"Authorization": f"Bearer {OPERATOR}"}
    old = requests.post(f"{url}/api/auth/device/register", timeout=30,
                        json={"market_id": "pasar-senen", "device_id": "leaked-token", "role": "sensor"}).json()["token"]
    price = {"market_id": "pasar-senen", "prices": {"beras": 12000}}

    def ingest(token: str) -> int:
        return requests.post(f"{url}/ingest", json=price, headers={"Authorization": f"Bearer {token}"},
                             timeout=30).status_code
    decide = f"{url}/api/bridges/devices/leaked-token"
    assert requests.post(f"{decide}/approve", headers=operator, timeout=30).json()["status"] == "active"
    assert ingest(old) == 200
    assert requests.post(f"{decide}/revoke", headers=operator, timeout=30).json()["status"] == "revoked"
    assert ingest(old) == 403  # "device leaked-token is revoked"
    assert requests.post(f"{decide}/approve", headers=operator, timeout=30).json()["status"] == "active"
    assert ingest(old) == 401  # was 200
    new = requests.post(f"{url}/api/auth/token", json={"device_id": "leaked-token"}, headers=operator,
                        timeout=30).json()["token"]
    assert ingest(new) == 200
