"""Hostile requests to the HTTP routes of a running `jejak hub run` that its OpenAPI-driven fuzzing does not
make: bodies nested without end or past a route's size, a CSV that is not one, and what caches may keep of an
answer to a token. Each is refused with a JSON {error: {code}} (never a 500 or a traceback in the log), and
the hub goes on answering."""

from __future__ import annotations

import requests

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
