"""What a LAN client without any credential can make a running `jejak hub run` keep or do: enrollment requests
and seed-2 registrations (anyone may ask), pushes of device ids nobody enrolled, refused CoAP requests, and
full passes over the store. Each must cost the hub a bounded amount of store, memory, log and time, whatever
the number of requests: the requests are refused with a stable code once past their bound, the log says how
many there were, not one line each, and a pass over the store answers the asks that follow it for a while.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import aiocoap
import pytest
import requests

from ledger import Ed25519Signer
from ledger.enroll import make_enroll_request
from ledger.sync import encode_records

from .test_fuzz_routes import OPERATOR, _get, running_hub
from .test_hostile_transport import running_edge

PENDING = 3  # the hub's pending_devices and [bridges] pending_devices here
FLOOD = 200  # requests of each kind; before the bounds, each was a log line (or a stored device)


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[tuple[str, str, Path]]:
    """A hub process that lets PENDING devices wait for approval; its URLs and its log file."""
    log = tmp_path / "hub.log"
    with running_hub(tmp_path, f"pending_devices = {PENDING}\n", f"pending_devices = {PENDING}\n") as (url, coap, proc):
        yield url, coap, log
        assert proc.poll() is None, "the hub exited under the flood"
        assert "Traceback" not in log.read_text()


def _enroll(url: str, hub_id: bytes, **fields: str) -> requests.Response:
    text = {"site": "sppg-01", "role": "kitchen_exit", "name": "dapur", **fields}
    body = make_enroll_request(Ed25519Signer.generate(), time=0, hub_id=hub_id, **text)
    return requests.post(f"{url}/api/enroll/grant", data=body, timeout=30)


def _code(answer: requests.Response) -> tuple[int, str]:
    return answer.status_code, answer.json()["error"]["code"]


def _lines(log: Path, text: str) -> list[str]:
    return [line for line in log.read_text().splitlines() if text in line]


def test_enrollment_requests_are_bounded_in_number_and_size(hub):
    url, _, log = hub
    hub_id = bytes.fromhex(_get(f"{url}/api/status")["hub"])
    # One request used to store (and list to the public, and log) a 1 MB name; a line break forged log lines.
    assert _code(_enroll(url, hub_id, name="n" * 1_000_000)) == (400, "HUB_ERROR")
    assert _code(_enroll(url, hub_id, role="kitchen_exit\nFORGED LOG LINE")) == (400, "HUB_ERROR")
    assert [_enroll(url, hub_id).status_code for _ in range(PENDING)] == [201] * PENDING
    flood = [_enroll(url, hub_id) for _ in range(FLOOD)]
    assert {_code(a) for a in flood} == {(503, "TOO_MANY_PENDING")}
    assert flood[0].headers["Retry-After"] == "600"
    devices = _get(f"{url}/api/devices?limit=1000")["devices"]
    waiting = [d["device"] for d in devices if d["status"] == "pending"]
    assert len(waiting) == PENDING and len(devices) == PENDING + 1  # and the hub's own attestation log
    assert not _lines(log, "FORGED LOG LINE") and not _lines(log, "n" * 1000)
    # The operator approves one: one more request may wait.
    approved = requests.post(f"{url}/api/devices/{waiting[0]}/approve", timeout=30,
                             headers={"Authorization": f"Bearer {OPERATOR}"})
    assert approved.status_code == 200
    assert _enroll(url, hub_id).status_code == 201
    assert _code(_enroll(url, hub_id)) == (503, "TOO_MANY_PENDING")


def test_seed2_registrations_are_bounded_in_number(hub):
    url, _, _ = hub

    def register(n: int) -> requests.Response:
        return requests.post(f"{url}/api/auth/device/register", timeout=30,
                             json={"market_id": "pasar-senen", "device_id": f"flood-{n}", "role": "sensor"})

    operator = {"Authorization": f"Bearer {OPERATOR}"}
    registered = [register(n) for n in range(PENDING)]
    assert [a.status_code for a in registered] == [200] * PENDING
    refused = [register(PENDING + n) for n in range(20)]
    assert {(a.status_code, a.json()["code"]) for a in refused} == {(503, "TOO_MANY_PENDING")}  # seed 2's shape
    listed = requests.get(f"{url}/api/bridges/status", headers=operator, timeout=30)
    assert len(listed.json()["legacy_devices"]) == PENDING
    # The operator revokes a registration (there was no way to): it frees its place, and its token stays refused
    # once approved or not.
    revoked = requests.post(f"{url}/api/bridges/devices/flood-0/revoke", headers=operator, timeout=30)
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
    assert requests.post(f"{url}/api/bridges/devices/flood-0/revoke", timeout=30).status_code == 403
    assert register(PENDING + 100).status_code == 200
    token = {"Authorization": f"Bearer {registered[0].json()['token']}"}
    assert requests.post(f"{url}/ingest", json={}, headers=token, timeout=30).status_code == 403


def test_pushes_of_made_up_device_ids_are_refused_without_a_log_line_each(hub):
    url, _, log = hub
    session = requests.Session()
    for _ in range(FLOOD):
        device = os.urandom(16)
        answer = session.post(f"{url}/api/ingest/{device.hex()}", data=encode_records(device, 0, []), timeout=30)
        assert _code(answer) == (403, "UNKNOWN_DEVICE")
    assert len(_lines(log, "keeps sending records")) == 1  # was one per made-up id


async def test_refused_coap_requests_are_counted_in_the_log_not_written_one_by_one(hub):
    _, coap, log = hub
    ctx = await aiocoap.Context.create_client_context()
    try:
        for _ in range(FLOOD // 50):
            answers = await asyncio.wait_for(asyncio.gather(*(
                ctx.request(aiocoap.Message(code=aiocoap.GET, uri=f"{coap}/no/rule/here")).response
                for _ in range(50))), 60)
            assert {str(a.code) for a in answers} == {"4.03 Forbidden"}
    finally:
        await ctx.shutdown()
    said = _lines(log, "CoAP requests")
    assert len(said) == 1 and "refused 1 CoAP requests since the start" in said[0], said  # was one per request
    assert not _lines(log, "refused GET /no/rule/here")


def test_integrity_checks_asked_back_to_back_share_one_pass_over_the_store(hub):
    url, _, _ = hub
    first = _get(f"{url}/api/blockchain/integrity/check")
    assert first["ok"] and first["jejak"]["full"]
    # The store grows (an approval is a record of the hub's own log); the asks that follow still share the pass
    # that answered the first: each ask read the whole store again (0.8 s a 100,000 records), so anyone could
    # keep a core on it.
    hub_id = bytes.fromhex(_get(f"{url}/api/status")["hub"])
    assert _enroll(url, hub_id).status_code == 201
    waiting = [d["device"] for d in _get(f"{url}/api/devices")["devices"] if d["status"] == "pending"]
    assert requests.post(f"{url}/api/devices/{waiting[0]}/approve", timeout=30,
                         headers={"Authorization": f"Bearer {OPERATOR}"}).status_code == 200
    assert _get(f"{url}/api/status")["size"] > first["length"]
    for answer in [_get(f"{url}/api/blockchain/integrity/check") for _ in range(5)]:
        assert answer["length"] == first["length"] and answer["checked_at"] == first["checked_at"]


async def _coap_get(url: str, path: tuple[str, ...]) -> str:
    """The answer code to a GET of `path` (segments as sent, whatever characters they hold)."""
    ctx = await aiocoap.Context.create_client_context()
    try:
        msg = aiocoap.Message(code=aiocoap.GET, uri=f"{url}/x")
        msg.opt.uri_path = path
        return str((await asyncio.wait_for(ctx.request(msg).response, 10)).code)
    finally:
        await ctx.shutdown()


def test_a_line_break_a_request_sends_does_not_forge_a_line_of_the_edges_text_log(tmp_path):
    with running_edge(tmp_path, '[log]\nformat = "text"\n') as (url, log):
        assert asyncio.run(_coap_get(url, ("x\nWARNING jejak.edge: FORGED by a LAN client",))) == "4.03 Forbidden"
        refused = _lines(log, "CoAP requests")
        assert len(refused) == 1 and "x\\nWARNING jejak.edge: FORGED" in refused[0], refused
        assert not any(line.startswith("WARNING jejak.edge: FORGED") for line in log.read_text().splitlines())
