"""What one LAN host can do to the places of a running `jejak hub run` that wait for an operator: enrollment
requests and seed-2 registrations are anyone's to send, so one host sending them with made-up keys (from one
address, or from many addresses of its network) must hold a few places, not all of them, and what nobody approves
must give its place back by itself, with no decision signed into the hub's log.

Sources are real: a request sent from 127.0.0.2 is a peer the hub sees as 127.0.0.2; one sent through the proxy
the hub trusts (127.0.0.1 in `http_proxies`) comes from the address in its X-Forwarded-For.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from ledger import Ed25519Signer
from ledger.enroll import make_enroll_request, read_revocations
from tests.wait import wait_until

from .test_fuzz_routes import OPERATOR, ROOT, _get, running_hub

PER_ADDRESS, PER_NETWORK = 4, 6


def _post(url: str, path: str, body: bytes, *, source: str = "127.0.0.1", forwarded: str | None = None,
          content_type: str = "application/cose") -> tuple[int, dict[str, Any], dict[str, str]]:
    """POST `body` from the local address `source` (a peer of its own on loopback), through the trusted proxy's
    X-Forwarded-For if `forwarded`; the status, JSON answer and headers."""
    where = urlsplit(url)
    conn = http.client.HTTPConnection(where.hostname, where.port, timeout=30, source_address=(source, 0))
    headers = {"Content-Type": content_type, **({"X-Forwarded-For": forwarded} if forwarded else {})}
    try:
        conn.request("POST", path, body=body, headers=headers)
        answer = conn.getresponse()
        data = answer.read()
        return answer.status, (json.loads(data) if answer.getheader("Content-Type", "").startswith(
            "application/json") else {}), dict(answer.getheaders())
    finally:
        conn.close()


def _request(hub_id: bytes) -> bytes:
    return make_enroll_request(Ed25519Signer.generate(), site="sppg-01", role="kitchen_exit", name="dapur", time=0,
                               hub_id=hub_id)


def _enroll(url: str, hub_id: bytes, path: str = "/api/enroll/grant", **where: Any) -> tuple[int, str, str]:
    """Enroll a new key; (status, error code or "", error message or "")."""
    status, answer, _ = _post(url, path, _request(hub_id), **where)
    error = answer.get("error", {})
    return status, error.get("code", ""), error.get("message", "")


def _register(url: str, device: str, **where: Any) -> tuple[int, str]:
    body = json.dumps({"market_id": "pasar-senen", "device_id": device, "role": "sensor"}).encode()
    status, answer, _ = _post(url, "/api/auth/device/register", body, content_type="application/json", **where)
    return status, answer.get("code", "")


def _pending(url: str, *, public: bool = False) -> list[dict[str, Any]]:
    where = f"{url}/api/devices?limit=1000"
    if public:
        with urllib.request.urlopen(where, timeout=10) as answer:
            devices = json.loads(answer.read())["devices"]
    else:
        devices = _get(where)["devices"]
    return [d for d in devices if d["status"] == "pending"]


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    limits = f"pending_per_address = {PER_ADDRESS}\npending_per_network = {PER_NETWORK}\n"
    with running_hub(tmp_path, f"pending_devices = 100\n{limits}", limits) as (url, _, proc):
        yield url, tmp_path
        assert proc.poll() is None, "the hub exited under the flood"
        assert "Traceback" not in (tmp_path / "hub.log").read_text()


def test_one_host_holds_a_few_enrollment_places_not_all_of_them(hub):
    url, tmp_path = hub
    hub_id = bytes.fromhex(_get(f"{url}/api/status")["hub"])
    # One address: its PER_ADDRESS requests wait, the next ones are refused naming the setting (one host took
    # all pending_devices places before, and no device could enroll until an operator revoked them one by one).
    assert [_enroll(url, hub_id, source="127.0.0.2")[0] for _ in range(PER_ADDRESS)] == [201] * PER_ADDRESS
    status, code, message = _enroll(url, hub_id, source="127.0.0.2")
    assert (status, code) == (429, "TOO_MANY_PENDING_FROM_SOURCE")
    assert "127.0.0.2" in message and "pending_per_address" in message
    assert _enroll(url, hub_id, path="/api/enroll", source="127.0.0.2")[:2] == (429, "TOO_MANY_PENDING_FROM_SOURCE")
    _, answer, headers = _post(url, "/api/enroll/grant", _request(hub_id), source="127.0.0.2")
    assert headers["Retry-After"] == "600" and "pending_per_address" in answer["error"]["hint"]
    # Other addresses of its network: together they hold PER_NETWORK places.
    assert [_enroll(url, hub_id, source="127.0.0.3")[0] for _ in range(PER_NETWORK - PER_ADDRESS)] == [201, 201]
    status, code, message = _enroll(url, hub_id, source="127.0.0.4")
    assert (status, code) == (429, "TOO_MANY_PENDING_FROM_SOURCE")
    assert "127.0.0.0/24" in message and "pending_per_network" in message
    # A kitchen's device elsewhere still enrolls (behind the hub's proxy: the address the proxy forwards).
    assert _enroll(url, hub_id, forwarded="10.20.30.40")[0] == 201
    # An IPv6 host takes any address of its /64: its addresses count together.
    assert [_enroll(url, hub_id, forwarded=f"2001:db8:0:7::{n:x}")[0] for n in range(PER_NETWORK)] == [201] * 6
    assert _enroll(url, hub_id, forwarded="2001:db8:0:7:ffff::1")[:2] == (429, "TOO_MANY_PENDING_FROM_SOURCE")
    assert _enroll(url, hub_id, forwarded="2001:db8:0:8::1")[0] == 201
    # The operator sees where each request came from, in the API and in `jejak devices list`; the public does not.
    waiting = _pending(url)
    assert len(waiting) == PER_NETWORK + 1 + PER_NETWORK + 1
    sources = [d["source"] for d in waiting]
    assert sources.count("127.0.0.2") == PER_ADDRESS and {"127.0.0.3", "10.20.30.40", "2001:db8:0:8::1"} < set(sources)
    assert all("source" not in d for d in _pending(url, public=True))
    token_file = tmp_path / "operator.token"
    token_file.write_text(OPERATOR)
    token_file.chmod(0o600)
    listed = subprocess.run([sys.executable, "-m", "tools.cli", "devices", "list", "--hub-url", url,
                             "--token-file", str(token_file)], cwd=ROOT, capture_output=True, text=True, timeout=60,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.count("(sent from 127.0.0.2)") == PER_ADDRESS
    assert "sent from 127.0.0.2: 4" in listed.stderr
    # Approving one of that host's requests gives it a place back.
    approved = _post(url, f"/api/devices/{waiting[0]['device']}/approve", b"")
    assert approved[0] in (401, 403)  # without a token: refused
    first = next(d for d in waiting if d["source"] == "127.0.0.2")
    conn = http.client.HTTPConnection(urlsplit(url).hostname, urlsplit(url).port, timeout=30)
    conn.request("POST", f"/api/devices/{first['device']}/approve", headers={"Authorization": f"Bearer {OPERATOR}"})
    assert conn.getresponse().status == 200
    conn.close()
    wait_until(lambda: _enroll(url, hub_id, source="127.0.0.5")[0] == 201, what="the network's place back")


def _revocations(url: str, hub_id: bytes) -> dict[bytes, int]:
    """The devices the hub's signed revocation list names, with their points."""
    with urllib.request.urlopen(f"{url}/api/revocations", timeout=10) as answer:
        return read_revocations(answer.read(), bytes.fromhex(_get(f"{url}/api/status")["pubkey"])).points


def _reject(url: str, token_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tools.cli", "devices", "reject", *args, "--hub-url", url,
                           "--token-file", str(token_file)], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_an_operator_rejects_a_hosts_flood_in_one_go_signing_nothing(hub):
    """The flood's places come back at once, not after pending_expire_s, and the hub's own log and revocation list
    stay as they were: revoking each made-up key would have signed it into both for good."""
    url, tmp_path = hub
    hub_id = bytes.fromhex(_get(f"{url}/api/status")["hub"])
    assert [_enroll(url, hub_id, source="127.0.0.2")[0] for _ in range(PER_ADDRESS)] == [201] * PER_ADDRESS
    assert _enroll(url, hub_id, source="127.0.0.3")[0] == 201
    assert _enroll(url, hub_id, forwarded="10.20.30.40")[0] == 201
    assert _enroll(url, hub_id, forwarded="10.20.31.7")[0] == 201
    assert [_register(url, f"flood-{n}", source="127.0.0.2")[0] for n in range(2)] == [200, 200]
    assert _register(url, "pasar-1", source="127.0.0.3")[0] == 200
    own_log, revocations = _get(f"{url}/api/status")["size"], _revocations(url, hub_id)
    token_file = tmp_path / "operator.token"
    token_file.write_text(OPERATOR)
    token_file.chmod(0o600)
    done = _reject(url, token_file, "--source", "127.0.0.2")
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("(sent from 127.0.0.2)") == PER_ADDRESS and "(seed 2, sent from 127.0.0.2)" in done.stdout
    assert "4 enrollment requests and 2 seed-2 registrations rejected" in done.stderr
    legacy = _get(f"{url}/api/bridges/status")["legacy_devices"]
    assert [(d["device_id"], d["source"]) for d in legacy] == [("pasar-1", "127.0.0.3")]
    assert _register(url, "flood-0", source="127.0.0.2")[0] == 200  # its name and place are free again
    assert sorted(d["source"] for d in _pending(url)) == ["10.20.30.40", "10.20.31.7", "127.0.0.3"]
    assert _enroll(url, hub_id, source="127.0.0.2")[0] == 201  # its places are free again at once
    # A network in CIDR form takes every address of it, and nothing outside it.
    assert _reject(url, token_file, "--source", "10.20.30.0/24").returncode == 0
    assert sorted(d["source"] for d in _pending(url)) == ["10.20.31.7", "127.0.0.2", "127.0.0.3"]
    # One device by its id; a device that is not waiting is NOT_PENDING (an approved one is revoked instead).
    one = next(d["device"] for d in _pending(url) if d["source"] == "127.0.0.3")
    assert _reject(url, token_file, one).returncode == 0
    assert one not in {d["device"] for d in _pending(url)}
    gone = _reject(url, token_file, one)
    assert gone.returncode != 0 and "is not enrolled at this hub" in gone.stderr
    assert _get(f"{url}/api/status")["size"] == own_log and _revocations(url, hub_id) == revocations
    kept = next(d["device"] for d in _pending(url) if d["source"] == "10.20.31.7")
    conn = http.client.HTTPConnection(urlsplit(url).hostname, urlsplit(url).port, timeout=30)
    for path in (f"/api/devices/{kept}/approve", f"/api/devices/{kept}/reject"):
        conn.request("POST", path, headers={"Authorization": f"Bearer {OPERATOR}"})
        answer = conn.getresponse()
        body = json.loads(answer.read())
    conn.close()
    assert (answer.status, body["error"]["code"]) == (409, "NOT_PENDING")  # approved: revoked, not rejected
    # What is not an address or network, and a request without a token, are refused and drop nothing.
    bad = _reject(url, token_file, "--source", "kitchen-7")
    assert bad.returncode != 0 and "10.1.2.0/24" in bad.stderr
    assert _post(url, "/api/devices/reject?source=127.0.0.2", b"")[0] in (401, 403)
    assert [d["source"] for d in _pending(url)] == ["127.0.0.2"]


def test_one_host_holds_a_few_seed2_registrations_not_all_of_them(hub):
    url, _ = hub
    assert [_register(url, f"flood-{n}", source="127.0.0.2") for n in range(PER_ADDRESS)] == [(200, "")] * 4
    assert _register(url, "flood-x", source="127.0.0.2") == (429, "TOO_MANY_PENDING_FROM_SOURCE")
    assert _register(url, "pasar-1", source="127.0.0.3")[0] == 200
    assert _register(url, "pasar-2", forwarded="10.20.30.40")[0] == 200
    listed = _get(f"{url}/api/bridges/status")["legacy_devices"]
    assert sorted(d["source"] for d in listed) == ["10.20.30.40", "127.0.0.2", "127.0.0.2", "127.0.0.2",
                                                   "127.0.0.2", "127.0.0.3"]


def test_requests_nobody_approves_expire_without_a_decision(tmp_path):
    """A request that waited past pending_expire_s is dropped and its place is free again, with no operator: it
    was never a decision (FORMAT.md §6.2), so the hub's own log is left as it was."""
    expiry = "pending_expire_s = 3\n"
    with running_hub(tmp_path, f"pending_devices = 2\n{expiry}", f"pending_devices = 1\n{expiry}") as (url, _, proc):
        status = _get(f"{url}/api/status")
        hub_id = bytes.fromhex(status["hub"])
        assert [_enroll(url, hub_id)[0] for _ in range(2)] == [201, 201]
        assert _enroll(url, hub_id)[:2] == (503, "TOO_MANY_PENDING")
        assert _register(url, "pasar-1") == (200, "")
        assert _register(url, "pasar-2") == (503, "TOO_MANY_PENDING")
        waiting = [d["device"] for d in _pending(url)]
        contexts = tmp_path / "hub" / "oscore"
        assert all((contexts / device).is_dir() for device in waiting)
        own_log = _get(f"{url}/api/status")["size"]
        wait_until(lambda: not _pending(url), what="the requests to expire")
        wait_until(lambda: not _get(f"{url}/api/bridges/status")["legacy_devices"], what="the registration")
        assert _get(f"{url}/api/status")["size"] == own_log  # no decision signed for a request dropped
        assert not any((contexts / device).exists() for device in waiting)  # their OSCORE contexts go with them
        assert _enroll(url, hub_id)[0] == 201
        assert _register(url, "pasar-2") == (200, "")
        log = (tmp_path / "hub.log").read_text()
        assert "2 enrollment requests dropped, nobody approved within 3 s" in log
        assert proc.poll() is None
