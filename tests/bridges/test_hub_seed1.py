"""Seed 1's gateway sync on the hub: a batch becomes hub-attested scans that MBG reads as attested; a bad
batch gets seed 1's 400 {"error"} and nothing is stored."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from hub.auth import hash_token
from ledger import verify_chain

from .conftest import GATEWAY, OPERATOR, close_hub, make_hub

NOW = datetime.now(UTC).replace(tzinfo=None)


def batch(*tags: str, status: str = "makanan_diterima") -> list[dict]:
    # What seed 1's gateway sends: naive UTC isoformat timestamps and its own gateway id.
    return [{"nfc_tag_id": t, "timestamp": NOW.isoformat(), "status_scan": status,
             "gateway_id": "RASPBERRY_PI_SEKOLAH_A"} for t in tags]


async def test_gateway_batch_becomes_attested_scans(hubenv):
    before = hubenv.attest_length()
    code, answer = await hubenv.post("/api/sync_gateway_data", json=batch("NFC_TAG_ALPHA", "NFC_TAG_BETA"))
    assert code == 201, answer
    assert answer["message"] == "Berhasil menerima 2 data"
    assert answer["trust"] == "attested" and answer["attested_by"] == hubenv.hub.hub_id.hex()
    attested = hubenv.attested()
    assert hubenv.attest_length() == before + 2
    last = attested[-2:]
    assert [r.id.hex() for r in last] == answer["records"]
    for rec, tag in zip(last, ("NFC_TAG_ALPHA", "NFC_TAG_BETA"), strict=True):
        assert rec.kind == "attest" and rec.device_id == hubenv.hub.hub_id
        body = rec.body
        assert body["path"] == "http:/api/sync_gateway_data" and body["kind"] == "scan"
        assert "127.0.0.1" in body["sender"]
        assert body["data"]["nfc_tag_id"] == tag and body["data"]["event"] == "received"
        assert body["data"]["gateway_id"] == "RASPBERRY_PI_SEKOLAH_A"
        assert abs(body["received_at"] - int(datetime.now(UTC).timestamp())) < 60
    # The hub's attestation log is a chain signed with the hub's key, verifiable from genesis.
    raws = hubenv.hub.store.log_range(hubenv.hub.hub_id, 0, hubenv.attest_length())
    verify_chain(raws)
    # MBG reads them as scans, marked as attested rather than as a device's own.
    scans = [s for s in hubenv.views.mbg.scans if s.tags[0] in ("NFC_TAG_ALPHA", "NFC_TAG_BETA")]
    assert len(scans) == 2
    assert {s.source for s in scans} == {"attested:http:/api/sync_gateway_data"}
    assert {s.event for s in scans} == {"received"}
    code, summary = await hubenv.get("/api/dashboard/summary")
    assert code == 200 and summary["scans_today"]["received"] >= 2
    code, status = await hubenv.get("/api/bridges/status", headers={"Authorization": f"Bearer {OPERATOR}"})
    assert status["attested"]["http:/api/sync_gateway_data"] == 2


BAD_BATCHES = [
    ({"nfc_tag_id": "A"}, "list/array"),
    ([{"nfc_tag_id": "A", "status_scan": "makanan_keluar", "gateway_id": "G"}], "tidak lengkap"),
    ([*batch("NFC_TAG_OK"), {**batch("X")[0], "status_scan": "makan_siang"}], "item 1"),
    ([*batch("NFC_TAG_OK"), {**batch("X")[0], "timestamp": "kemarin"}], "ISO 8601"),
    ([*batch("NFC_TAG_OK"), {**batch("X")[0], "extra": 1}], "unexpected"),
]


@pytest.mark.parametrize(("payload", "says"), BAD_BATCHES)
async def test_bad_batch_refused_whole_with_seed1_error(hubenv, payload, says):
    before = hubenv.attest_length()
    code, answer = await hubenv.post("/api/sync_gateway_data", json=payload)
    assert code == 400
    assert set(answer) == {"error", "code"} and says in answer["error"] and answer["code"] == "BRIDGE_INPUT"
    assert hubenv.attest_length() == before


async def test_malformed_json_batch_refused(hubenv):
    before = hubenv.attest_length()
    code, answer = await hubenv.post("/api/sync_gateway_data", data=b"[{", headers={"Content-Type": "application/json"})
    assert code == 400 and "error" in answer
    assert hubenv.attest_length() == before


async def test_empty_batch_is_accepted_and_stores_nothing(hubenv):
    before = hubenv.attest_length()
    code, answer = await hubenv.post("/api/sync_gateway_data", data=json.dumps([]),
                                     headers={"Content-Type": "application/json"})
    assert code == 201 and answer["message"] == "Berhasil menerima 0 data"
    assert hubenv.attest_length() == before


async def test_a_gateway_token_bound_to_its_gateways_cannot_send_for_another(tmp_path):
    # One gateway's token sent scans for any gateway_id, so for any site: bound by [bridges] gateway_ids.
    env = await make_hub(tmp_path, gateway_ids={hash_token(GATEWAY): ("RASPBERRY_PI_SEKOLAH_A",)})
    try:
        before = env.attest_length()
        other = [{**item, "gateway_id": "RASPBERRY_PI_SEKOLAH_B"} for item in batch("NFC_TAG_GAMMA")]
        code, answer = await env.post("/api/sync_gateway_data", json=[*batch("NFC_TAG_OK"), *other])
        assert code == 403 and set(answer) == {"error", "code"} and "item 1" in answer["error"], answer
        assert answer["code"] == "FORBIDDEN"
        assert env.attest_length() == before  # the whole batch refused
        code, answer = await env.post("/api/sync_gateway_data", json=batch("NFC_TAG_OK"))
        assert code == 201 and env.attest_length() == before + 1
    finally:
        await close_hub(env)


async def test_a_gateway_clock_off_is_named_by_the_gateway_not_the_hub(hubenv):
    # A gateway whose clock reset to 1970 after a power cut: its scans are kept, timed by their arrival, and
    # the clock finding names that gateway; another gateway's scans in the same minutes are not flagged.
    reset = [{**item, "timestamp": "1970-01-01T00:05:00"} for item in batch("NFC_TAG_RESET")]
    right = [{**item, "gateway_id": "RASPBERRY_PI_SEKOLAH_B"} for item in batch("NFC_TAG_RIGHT")]
    for sent in (reset, right, reset):
        code, answer = await hubenv.post("/api/sync_gateway_data", json=sent)
        assert code == 201, answer
    mbg = hubenv.views.mbg
    with hubenv.views.fresh():
        now = int(datetime.now(UTC).timestamp())
        skews = [f for f in mbg.findings(now, mbg.today(now)) if f.code in ("clock_skew", "clock_went_back")]
        scans = {s.tags[0]: s for s in mbg.scans if s.tags[0] in ("NFC_TAG_RESET", "NFC_TAG_RIGHT")}
    assert [(f.code, f.subject) for f in skews] == [("clock_skew", "gateway:RASPBERRY_PI_SEKOLAH_A")]
    assert scans["NFC_TAG_RIGHT"].device == "gateway:RASPBERRY_PI_SEKOLAH_B"
    assert skews[0].measured < -50 * 365 * 86400  # the gateway's clock, about 56 years behind
